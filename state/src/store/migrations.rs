//! The PostgreSQL schema, as numbered migrations applied in order at start
//! (`pg::PgStore::migrate`). A migration, once released, is never edited:
//! a change is a new step at the end.

/// The tables of the first migration. Released migrations are never
/// edited: a new table gets a new migration (`CREATE TABLE pw_<name> ...`),
/// and `every_table_has_a_migration` checks that none is forgotten.
const FIRST_TABLES: &[&str] = &[
    "meta",
    "intents",
    "external_ids",
    "open_by_expiry",
    "match_keys",
    "used_tags",
    "watched",
    "watch_log",
    "transfers",
    "unsettled",
    "block_transfers",
    "blocks",
    "transfer_list",
    "unmatched_list",
    "counts",
    "events",
    "outbox",
    "webhook_failed",
    "deliveries",
    "event_ids",
    "chains",
    "pool_members",
    "pool_free",
    "accounts",
    "account_external_ids",
    "account_deposits",
    "account_totals",
    "account_addresses",
    "checkout_tokens",
    "audit",
];

/// The migrations, in order, each a name and its SQL.
pub fn steps() -> Vec<(&'static str, String)> {
    let mut create = String::new();
    for table in FIRST_TABLES {
        create.push_str(&format!(
            "CREATE TABLE pw_{table} (k bytea PRIMARY KEY, v bytea NOT NULL);\n"
        ));
    }
    create.push_str(
        "CREATE TABLE pw_leases (
             name text PRIMARY KEY,
             holder text NOT NULL,
             fence bigint NOT NULL,
             expires_at timestamptz NOT NULL);\n",
    );
    vec![
        ("the store's tables and the leases", create),
        ("views with amounts as NUMERIC", VIEWS.to_string()),
    ]
}

/// The store tables the migrations make (`pw_<name>`).
#[cfg(test)]
fn tables_made() -> Vec<String> {
    steps()
        .iter()
        .flat_map(|(_, sql)| {
            sql.split("CREATE TABLE pw_")
                .skip(1)
                .filter_map(|rest| rest.split(' ').next().map(str::to_string))
                .collect::<Vec<_>>()
        })
        .filter(|name| name != "leases")
        .collect()
}

/// Read-only views for the merchant's own SQL (reports, reconciliation):
/// the records' fields as columns, every amount `NUMERIC` from the exact
/// decimal text paywatch stores, never a float.
const VIEWS: &str = "
CREATE VIEW paywatch_intents AS
SELECT convert_from(k, 'UTF8') AS id,
       r->>'asset' AS asset,
       r->>'status' AS status,
       (r->>'amount')::numeric AS amount,
       (r->>'pay_amount')::numeric AS pay_amount,
       r->>'address' AS address,
       (r->>'tag')::bigint AS tag,
       r->>'external_id' AS external_id,
       (r->'fiat'->>'fiat_amount')::numeric AS fiat_amount,
       r->'fiat'->>'fiat_currency' AS fiat_currency,
       (r->'fiat'->>'rate')::numeric AS rate,
       (r->>'created_at')::timestamptz AS created_at,
       (r->>'expires_at')::timestamptz AS expires_at,
       (r->>'confirmed_at')::timestamptz AS confirmed_at,
       r->'metadata' AS metadata
FROM pw_intents, LATERAL (SELECT convert_from(v, 'UTF8')::jsonb AS r) AS record;

CREATE VIEW paywatch_transfers AS
SELECT convert_from(k, 'UTF8') AS key,
       r->'key'->>'asset' AS asset,
       r->'key'->>'txid' AS txid,
       (r->'key'->>'index')::integer AS index,
       r->>'address' AS address,
       (r->>'tag')::bigint AS tag,
       (r->>'amount')::numeric AS amount,
       (r->>'block_height')::bigint AS block_height,
       r->>'status' AS status,
       r->>'intent_id' AS intent_id,
       r->>'account_id' AS account_id,
       (r->>'late')::boolean AS late,
       (r->>'dust')::boolean AS dust,
       (r->>'seen_at')::timestamptz AS seen_at
FROM pw_transfers, LATERAL (SELECT convert_from(v, 'UTF8')::jsonb AS r) AS record;

CREATE VIEW paywatch_accounts AS
SELECT convert_from(a.k, 'UTF8') AS id,
       r->>'asset' AS asset,
       r->>'status' AS status,
       r->>'address' AS address,
       (r->>'tag')::bigint AS tag,
       r->>'external_id' AS external_id,
       (t->>'confirmed')::numeric AS confirmed_total,
       (t->>'pending')::numeric AS pending_total,
       (t->>'deposits')::bigint AS deposits
FROM pw_accounts AS a
     CROSS JOIN LATERAL (SELECT convert_from(a.v, 'UTF8')::jsonb AS r) AS record
     LEFT JOIN pw_account_totals AS totals ON totals.k = a.k
     LEFT JOIN LATERAL (SELECT convert_from(totals.v, 'UTF8')::jsonb AS t) AS sums ON true;

CREATE VIEW paywatch_events AS
SELECT ('x' || encode(k, 'hex'))::bit(64)::bigint AS seq,
       r->>'id' AS id,
       r->>'type' AS type,
       (r->>'created_at')::timestamptz AS created_at,
       r AS event
FROM pw_events, LATERAL (SELECT convert_from(v, 'UTF8')::jsonb AS r) AS record;
";

#[cfg(test)]
mod tests {
    #[test]
    fn every_table_has_a_migration() {
        let made = super::tables_made();
        for table in crate::store::tables::table_names() {
            assert!(made.iter().any(|m| m == table), "no migration creates pw_{table}");
        }
    }
}
