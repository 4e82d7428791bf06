//! Table definitions and key formats. Keys are strings with fixed-width
//! numbers so that byte order is the order the code needs.

use serde::de::DeserializeOwned;

pub use super::kv::{Bytes, KeyKind, Kind, ReadTxn, Str, TableDef, U64, Unit};

use super::StoreError;

/// Bumped when a stored format changes incompatibly: the newest format
/// this build reads and writes.
pub const SCHEMA_VERSION: u64 = 2;
/// The format a new store starts at; raised only once a record needs more.
pub const SCHEMA_BASE: u64 = 1;
/// Deposit accounts and audit records: a build before them would hand an
/// account's address to an intent and could not decode their events, so
/// the first of them raises the store to this and such a build refuses it.
pub const SCHEMA_ACCOUNTS: u64 = 2;

/// Counters and settings: `schema_version`, `store_id`, `next_seq`,
/// `next_listing`.
pub const META: TableDef<Str, U64> = TableDef::new("meta");
/// `meta` key of the store's identity: random, made when the store is, and
/// kept by every copy of it.
pub const STORE_ID: &str = "store_id";
/// `meta` key set (to 1) on a store `store copy` copied elsewhere: it may
/// be a stale twin of the copy, which goes on.
pub const SUPERSEDED: &str = "superseded";
/// `meta` key set (to 1) on a store restored without knowing how far the
/// store it replaced had got (its floors were the operator's estimates);
/// kept by its copies.
pub const RESTORED_ON_ESTIMATES: &str = "restored_on_estimates";
/// Intent id -> JSON `Intent`. Ids sort by creation time.
pub const INTENTS: TableDef<Str, Bytes> = TableDef::new("intents");
/// external_id -> intent id.
pub const EXTERNAL_IDS: TableDef<Str, Str> = TableDef::new("external_ids");
/// `ASSET/expires_at_ms/id` for every open intent: the expiry scan.
pub const OPEN_BY_EXPIRY: TableDef<Str, Unit> = TableDef::new("open_by_expiry");
/// Match key -> intent id holding (or last holding) it.
pub const MATCH_KEYS: TableDef<Str, Str> = TableDef::new("match_keys");
/// `ASSET/address/tag`: tags ever handed out; never reused.
pub const USED_TAGS: TableDef<Str, Unit> = TableDef::new("used_tags");
/// `ASSET/address`: every address an intent ever used; watched for good, so
/// money sent to an old address is still recorded.
pub const WATCHED: TableDef<Str, Unit> = TableDef::new("watched");
/// `ASSET/generation` -> address: the order in which addresses became
/// watched, so the daemon's watch set is refreshed by what is new since the
/// generation it holds (`meta` `watch_gen/ASSET` is the newest).
pub const WATCH_LOG: TableDef<Str, Str> = TableDef::new("watch_log");
/// Transfer key -> JSON `Transfer`.
pub const TRANSFERS: TableDef<Str, Bytes> = TableDef::new("transfers");
/// Transfer keys still `pending`: re-judged on every scan.
pub const UNSETTLED: TableDef<Str, Unit> = TableDef::new("unsettled");
/// `ASSET/height/transfer key`: what a block contributed, for rollbacks.
pub const BLOCK_TRANSFERS: TableDef<Str, Unit> = TableDef::new("block_transfers");
/// `ASSET/height` -> block hash of every applied block still kept.
pub const BLOCKS: TableDef<Str, Str> = TableDef::new("blocks");
/// Listing order -> transfer key, every transfer.
pub const TRANSFER_LIST: TableDef<U64, Str> = TableDef::new("transfer_list");
/// Listing order -> transfer key, unmatched and late transfers only.
pub const UNMATCHED_LIST: TableDef<U64, Str> = TableDef::new("unmatched_list");
/// `ASSET/status` -> number of intents.
pub const COUNTS: TableDef<Str, U64> = TableDef::new("counts");
/// seq -> JSON `Event`.
pub const EVENTS: TableDef<U64, Bytes> = TableDef::new("events");
/// seq -> JSON `OutboxEntry`: events not yet delivered to the webhook.
pub const OUTBOX: TableDef<U64, Bytes> = TableDef::new("outbox");
/// seq -> JSON `OutboxEntry`: deliveries given up after `max_age`.
pub const WEBHOOK_FAILED: TableDef<U64, Bytes> = TableDef::new("webhook_failed");
/// `seq/attempt` (fixed width) -> JSON `DeliveryAttempt`: every webhook
/// delivery attempt, for `GET /v1/events/{id}/deliveries`.
pub const DELIVERIES: TableDef<Str, Bytes> = TableDef::new("deliveries");
/// Event id -> seq, to find an event by the id receivers see.
pub const EVENT_IDS: TableDef<Str, U64> = TableDef::new("event_ids");
/// asset code -> JSON `ChainState`.
pub const CHAINS: TableDef<Str, Bytes> = TableDef::new("chains");

/// The addresses of each asset's configured pool (`address` mode without
/// an xpub): `CODE/ADDRESS`.
pub const POOL_MEMBERS: TableDef<Str, Unit> = TableDef::new("pool_members");
/// Pool addresses that can be handed out, by when they become free:
/// `CODE/FREE_AT_MS/ORDER/ADDRESS` (never used ones at 0, in config order;
/// released ones at their intent's end plus its late window). An entry is a
/// candidate, checked against the match key before it is handed out.
pub const POOL_FREE: TableDef<Str, Unit> = TableDef::new("pool_free");

/// `meta` keys of the derivation counters: the next index to derive, per
/// asset and key (`derive_next/ASSET/KEY ID`).
pub const DERIVE_PREFIX: &str = "derive_next/";

pub fn derive_counter_key(asset: crate::Asset, deriver: &crate::Deriver) -> String {
    format!("{DERIVE_PREFIX}{}/{}", asset.code(), deriver.0.id())
}

pub fn pool_member_key(asset: &str, address: &str) -> String {
    format!("{asset}/{address}")
}

pub fn pool_free_key(asset: &str, free_at_ms: u64, order: u64, address: &str) -> String {
    format!("{asset}/{free_at_ms:020}/{order:010}/{address}")
}

/// Account id -> JSON `Account`. Ids sort by creation time.
pub const ACCOUNTS: TableDef<Str, Bytes> = TableDef::new("accounts");
/// `ASSET/external_id` -> account id: one account per customer and asset.
pub const ACCOUNT_EXTERNAL_IDS: TableDef<Str, Str> = TableDef::new("account_external_ids");
/// `account id/listing order` -> transfer key: every deposit of an account.
pub const ACCOUNT_DEPOSITS: TableDef<Str, Str> = TableDef::new("account_deposits");
/// Account id -> JSON `DepositTotals`: confirmed and pending sums and the
/// number of deposits, kept by every write of a deposit.
pub const ACCOUNT_TOTALS: TableDef<Str, Bytes> = TableDef::new("account_totals");
/// `ASSET/address` -> `own` (an account's address of its own) or `tagged`
/// (the shared address that accounts' tags are on): addresses intents must
/// not be given in a mode that would take the accounts' deposits.
pub const ACCOUNT_ADDRESSES: TableDef<Str, Str> = TableDef::new("account_addresses");
/// Checkout token -> intent id: the public page finds its intent.
pub const CHECKOUT_TOKENS: TableDef<Str, Str> = TableDef::new("checkout_tokens");
/// seq -> JSON `AuditRecord`: every manual action, never rewritten.
pub const AUDIT: TableDef<U64, Bytes> = TableDef::new("audit");

pub fn account_external_key(asset: &str, external_id: &str) -> String {
    format!("{asset}/{external_id}")
}

pub fn deposit_key(account_id: &str, list_no: u64) -> String {
    format!("{account_id}/{list_no:020}")
}

/// `COUNTS` keys of accounts by status and of deposits, per asset (the
/// intent counts are `ASSET/status`; these never parse as a status).
pub fn account_count_key(asset: &str, status: crate::model::AccountStatus) -> String {
    format!("{asset}/account.{}", status.as_str())
}

pub fn deposit_count_key(asset: &str) -> String {
    format!("{asset}/deposits")
}

/// How many applied block hashes are kept per asset for reorg detection.
pub const BLOCKS_KEPT: u64 = 2_000;

pub fn expiry_key(asset: &str, expires_at_ms: i64, id: &str) -> String {
    format!("{asset}/{:020}/{id}", expires_at_ms.max(0))
}

/// The `meta` counter of an asset's newest watch generation.
pub fn watch_generation_key(asset: crate::Asset) -> String {
    format!("watch_gen/{}", asset.code())
}

pub fn watch_log_key(asset: &str, generation: u64) -> String {
    format!("{asset}/{generation:020}")
}

pub fn delivery_key(seq: u64, attempt: u32) -> String {
    format!("{seq:020}/{attempt:010}")
}

pub fn height_key(asset: &str, height: u64) -> String {
    format!("{asset}/{height:020}")
}

pub fn decode<T: DeserializeOwned>(table: &str, key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        table: table.to_string(),
        key: key.to_string(),
        source,
    })
}

pub fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Serializing plain data structs with string keys cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// A `meta` value as of a read transaction (0 when never set).
pub fn read_meta(r: &ReadTxn, name: &str) -> Result<u64, StoreError> {
    let t = r.open_table(META)?;
    Ok(t.get(name)?.map(|v| v.value()).unwrap_or(0))
}

/// The height `asset` is scanned to, as of a read transaction (0 before
/// its first poll): what views count confirmations against.
pub fn scanned_height_in(r: &ReadTxn, asset: crate::Asset) -> Result<u64, StoreError> {
    Ok(get_json::<crate::ChainState>(r, CHAINS, asset.code())?
        .map(|c| c.cursor.height)
        .unwrap_or(0))
}

/// `scanned_height_in` for a list of rows: each asset's height read once.
pub struct ScannedHeights<'r> {
    read: &'r ReadTxn,
    known: std::collections::HashMap<crate::Asset, u64>,
}

impl<'r> ScannedHeights<'r> {
    pub fn new(read: &'r ReadTxn) -> ScannedHeights<'r> {
        ScannedHeights {
            read,
            known: std::collections::HashMap::new(),
        }
    }

    pub fn of(&mut self, asset: crate::Asset) -> Result<u64, StoreError> {
        if let Some(height) = self.known.get(&asset) {
            return Ok(*height);
        }
        let height = scanned_height_in(self.read, asset)?;
        self.known.insert(asset, height);
        Ok(height)
    }
}

/// Reads and decodes one JSON value in a read transaction.
pub fn get_json<T: DeserializeOwned>(
    r: &ReadTxn,
    def: TableDef<Str, Bytes>,
    key: &str,
) -> Result<Option<T>, StoreError> {
    let table = r.open_table(def)?;
    match table.get(key)? {
        Some(v) => decode(def.name(), key, v.value()).map(Some),
        None => Ok(None),
    }
}

/// Something done to every table of the store, typed (`visit_tables`).
pub trait TableVisitor {
    fn visit<K: KeyKind, V: Kind>(&mut self, def: TableDef<K, V>) -> Result<(), StoreError>;
}

/// Calls `visitor` with every table of the store. A new table is added
/// here (and, for PostgreSQL, in a new migration).
pub fn visit_tables(visitor: &mut impl TableVisitor) -> Result<(), StoreError> {
    visitor.visit(META)?;
    visitor.visit(INTENTS)?;
    visitor.visit(EXTERNAL_IDS)?;
    visitor.visit(OPEN_BY_EXPIRY)?;
    visitor.visit(MATCH_KEYS)?;
    visitor.visit(USED_TAGS)?;
    visitor.visit(WATCHED)?;
    visitor.visit(WATCH_LOG)?;
    visitor.visit(TRANSFERS)?;
    visitor.visit(UNSETTLED)?;
    visitor.visit(BLOCK_TRANSFERS)?;
    visitor.visit(BLOCKS)?;
    visitor.visit(TRANSFER_LIST)?;
    visitor.visit(UNMATCHED_LIST)?;
    visitor.visit(COUNTS)?;
    visitor.visit(EVENTS)?;
    visitor.visit(OUTBOX)?;
    visitor.visit(WEBHOOK_FAILED)?;
    visitor.visit(DELIVERIES)?;
    visitor.visit(EVENT_IDS)?;
    visitor.visit(CHAINS)?;
    visitor.visit(POOL_MEMBERS)?;
    visitor.visit(POOL_FREE)?;
    visitor.visit(ACCOUNTS)?;
    visitor.visit(ACCOUNT_EXTERNAL_IDS)?;
    visitor.visit(ACCOUNT_DEPOSITS)?;
    visitor.visit(ACCOUNT_TOTALS)?;
    visitor.visit(ACCOUNT_ADDRESSES)?;
    visitor.visit(CHECKOUT_TOKENS)?;
    visitor.visit(AUDIT)
}

/// The names of every table, in `visit_tables` order.
#[cfg(test)]
pub fn table_names() -> Vec<&'static str> {
    struct Names(Vec<&'static str>);
    impl TableVisitor for Names {
        fn visit<K: KeyKind, V: Kind>(&mut self, def: TableDef<K, V>) -> Result<(), StoreError> {
            self.0.push(def.name());
            Ok(())
        }
    }
    let mut names = Names(Vec::new());
    // Collecting names cannot fail.
    let _ = visit_tables(&mut names);
    names.0
}
