//! Deposit accounts and reconciliation end to end, through the binary: an
//! account per asset (litecoind for LTC and BTC from xpubs, anvil for
//! USDT_BSC from an account xpub, the fake rippled and Tron servers), every
//! deposit reported, one reverted by a reorg; an unmatched transfer assigned
//! to an intent that then confirms; a resolve by hand; the audit log; and the
//! CSV export parsed back and summed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::anvil::{Anvil, usdt};
use common::litecoind::{Litecoind, TPUB};
use common::paywatch::{Paywatch, TOKEN};
use common::rippled::{FakeRippled, MERCHANT};
use common::rpc_proxy::RpcProxy;
use common::tron::{FakeTron, USDT_HEX};
use common::wait_for;
use paywatch_chains::Network;
use paywatch_chains::tron::parse_tron_address;
use paywatch_chains::utxo::address::{parse_btc, script_address};
use paywatch_state::Asset;
use rust_decimal::Decimal;
use serde_json::{Value, json};

/// Waits for a `kind` event about transfer `txid` and returns it.
async fn wait_deposit(pw: &Paywatch, kind: &str, txid: &str) -> Value {
    wait_for(&format!("{kind} for {txid}"), Duration::from_secs(30), || async {
        pw.events()
            .await
            .into_iter()
            .find(|e| e["type"] == kind && e["transfer"]["txid"] == txid)
    })
    .await
}

async fn open_account(pw: &Paywatch, asset: &str, customer: &str) -> Value {
    let body = json!({"asset": asset, "external_id": customer, "metadata": {"plan": "basic"}});
    wait_for(&format!("a {asset} account"), Duration::from_secs(30), || async {
        let (status, v) = pw.post("/v1/accounts", body.clone()).await;
        assert!(status == 201 || status == 503, "{status} {v}");
        (status == 201).then_some(v)
    })
    .await
}

fn decimal(v: &Value) -> Decimal {
    v.as_str().expect("an amount string").parse().expect("a decimal")
}

/// The `rltc1` form of a regtest `bcrt1` address (the same witness program):
/// the litecoind behind the BTC proxy pays it.
fn rltc(bcrt: &str) -> String {
    let script = parse_btc(Network::Regtest, bcrt).unwrap().script;
    script_address(Asset::Ltc, Network::Regtest, &script).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ltc_and_btc_accounts_from_xpubs_record_every_deposit_and_revert_a_reorged_one() {
    let node = Litecoind::start_with(&["-mempoolreplacement=1", "-walletrbf=1"]).await;
    let bitcoin = RpcProxy::bitcoin_over(node.url()).await;
    let (ltc_url, btc_url) = (node.url(), bitcoin.url.clone());
    // Two branches of one key, so the two assets never watch the same script.
    let pw = Paywatch::start(
        |dir| {
            format!(
                "{}xpub = \"wpkh({TPUB}/0/*)\"\n\n{}xpub = \"wpkh({TPUB}/1/*)\"\n",
                common::configs::core_rpc(dir, "LTC", &ltc_url, &[], 2),
                common::configs::core_rpc(dir, "BTC", &btc_url, &[], 2),
            )
        },
        None,
    )
    .await;
    let ltc = open_account(&pw, "LTC", "alice").await;
    let id = ltc["id"].as_str().unwrap().to_string();
    let address = ltc["address"].as_str().unwrap().to_string();
    assert!(address.starts_with("rltc1"), "{ltc}");
    assert_eq!(ltc["payment_uri"], format!("litecoin:{address}"));
    assert_eq!(
        (ltc["status"].as_str(), ltc["deposits"].as_u64()),
        (Some("open"), Some(0))
    );
    // Retried: the same account. Another body for the same customer: 409.
    let (status, again) = pw
        .post(
            "/v1/accounts",
            json!({"asset": "LTC", "external_id": "alice", "metadata": {"plan": "basic"}}),
        )
        .await;
    assert_eq!((status, &again["id"]), (200, &ltc["id"]));
    let (status, conflict) = pw
        .post("/v1/accounts", json!({"asset": "LTC", "external_id": "alice"}))
        .await;
    assert_eq!(
        (status, conflict["error"]["code"].as_str()),
        (409, Some("external_id_conflict"))
    );
    let found = pw.get("/v1/accounts?external_id=alice&asset=LTC").await;
    assert_eq!(found["accounts"][0]["id"], id.as_str());
    // An intent never gets the account's address.
    let intent = pw.ltc_intent("0.5").await;
    assert_ne!(intent["address"], address.as_str());

    // Deposit 1: seen in the mempool, confirmed at 2 blocks.
    let first = node.send(&address, "0.1").await;
    let detected = wait_deposit(&pw, "deposit.detected", &first).await;
    assert_eq!(detected["account"]["id"], id.as_str());
    assert_eq!(detected["account"]["pending_total"], "0.10000000");
    assert_eq!(detected["transfer"]["account_id"], id.as_str());
    node.mine(2).await;
    let confirmed = wait_deposit(&pw, "deposit.confirmed", &first).await;
    assert_eq!(confirmed["account"]["confirmed_total"], "0.10000000");

    // Deposit 2: mined, then orphaned and double-spent by a longer branch.
    let second = node.send(&address, "0.2").await;
    node.mine(1).await;
    wait_for("deposit 2 in a block", Duration::from_secs(30), || async {
        let page = pw.get(&format!("/v1/accounts/{id}/transfers")).await;
        page["transfers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["txid"] == second.as_str() && t["block_height"].is_u64())
            .then_some(())
    })
    .await;
    node.rpc("invalidateblock", json!([node.best_hash().await])).await;
    node.double_spend(&second).await;
    node.mine(2).await;
    let reverted = wait_deposit(&pw, "deposit.reverted", &second).await;
    assert_eq!(reverted["transfer"]["status"], "reverted");

    // Deposit 3, and a BTC deposit on the customer's BTC account.
    let third = node.send(&address, "0.3").await;
    let btc = open_account(&pw, "BTC", "alice").await;
    let btc_address = btc["address"].as_str().unwrap().to_string();
    assert!(btc_address.starts_with("bcrt1"), "{btc}");
    let btc_deposits = [
        node.send(&rltc(&btc_address), "0.4").await,
        node.send(&rltc(&btc_address), "0.25").await,
    ];
    node.mine(2).await;
    wait_deposit(&pw, "deposit.confirmed", &third).await;
    for txid in &btc_deposits {
        let confirmed = wait_deposit(&pw, "deposit.confirmed", txid).await;
        assert_eq!(confirmed["account"]["asset"], "BTC");
    }
    let btc_id = btc["id"].as_str().unwrap();
    assert_eq!(
        pw.get(&format!("/v1/accounts/{btc_id}")).await["confirmed_total"],
        "0.65000000"
    );

    let account = pw.get(&format!("/v1/accounts/{id}")).await;
    assert_eq!(
        (
            account["confirmed_total"].as_str(),
            account["pending_total"].as_str(),
            account["deposits"].as_u64()
        ),
        (Some("0.40000000"), Some("0.00000000"), Some(3)),
        "0.1 + 0.3 confirmed; the reverted 0.2 counts nowhere: {account}"
    );
    let deposits = pw.get(&format!("/v1/accounts/{id}/transfers")).await;
    let statuses: Vec<(&str, &str)> = deposits["transfers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["txid"].as_str().unwrap(), t["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        [
            (third.as_str(), "confirmed"),
            (second.as_str(), "reverted"),
            (first.as_str(), "confirmed")
        ]
    );

    // Closed: no longer handed out; a deposit that still arrives is recorded.
    let (status, closed) = pw.post(&format!("/v1/accounts/{id}/close"), json!({})).await;
    assert_eq!((status, closed["status"].as_str()), (200, Some("closed")));
    pw.wait_event("account.closed", None).await;
    let late = node.send(&address, "0.15").await;
    let after_close = wait_deposit(&pw, "deposit.detected", &late).await;
    assert_eq!(after_close["account"]["status"], "closed");

    let status = pw.get("/v1/status").await;
    assert_eq!(
        status["accounts"],
        json!({"open": 1, "closed": 1, "deposits": 6}),
        "{status}"
    );
    let metrics = pw.metrics().await;
    assert!(
        metrics.contains("paywatch_accounts{asset=\"LTC\",status=\"closed\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("paywatch_deposits{asset=\"LTC\"} 4"), "{metrics}");
    assert!(metrics.contains("paywatch_deposits{asset=\"BTC\"} 2"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usdt_bsc_accounts_get_derived_addresses_and_a_reorged_deposit_is_reverted() {
    let node = Anvil::start().await;
    let token = node.deploy_token(18).await;
    let url = node.url();
    let pw = Paywatch::start(|_| common::configs::usdt_bsc_derived(&url, &token), None).await;
    let account = open_account(&pw, "USDT_BSC", "bob").await;
    let id = account["id"].as_str().unwrap();
    assert_eq!(account["address"], "0x9858EfFD232B4033E47d90003D41EC34EcaEda94");
    let other = open_account(&pw, "USDT_BSC", "carol").await;
    let intent = pw.create(json!({"asset": "USDT_BSC", "amount": "5"})).await;
    assert_ne!(other["address"], account["address"]);
    assert_ne!(intent["address"], account["address"]);
    assert_ne!(intent["address"], other["address"]);
    let address = account["address"].as_str().unwrap();

    let kept = node.transfer(&token, address, usdt(25, 0)).await;
    node.mine(1).await;
    wait_deposit(&pw, "deposit.detected", &kept).await;
    let before = node.snapshot().await;
    let orphaned = node.transfer(&token, address, usdt(7, 50)).await;
    node.mine(1).await;
    wait_deposit(&pw, "deposit.detected", &orphaned).await;
    node.revert(before).await;
    node.mine(3).await;
    let reverted = wait_deposit(&pw, "deposit.reverted", &orphaned).await;
    assert_eq!(reverted["account"]["id"], id);
    // anvil finalizes 64 blocks behind its head.
    node.mine(70).await;
    let confirmed = wait_deposit(&pw, "deposit.confirmed", &kept).await;
    assert_eq!(confirmed["account"]["confirmed_total"], "25.000000000000000000");
    let v = pw.get(&format!("/v1/accounts/{id}")).await;
    assert_eq!(
        (
            v["confirmed_total"].as_str(),
            v["pending_total"].as_str(),
            v["deposits"].as_u64()
        ),
        (Some("25.000000000000000000"), Some("0.000000000000000000"), Some(2))
    );
    let kinds: Vec<String> = pw
        .events()
        .await
        .iter()
        .filter(|e| e["transfer"]["txid"] == orphaned.as_str())
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["deposit.detected", "deposit.reverted"], "never confirmed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usdt_trc20_accounts_take_pool_addresses_and_confirm_once_solidified() {
    let tron = FakeTron::start(66_000_000).await;
    let hex = ["11".repeat(20), "22".repeat(20)];
    let base58: Vec<String> = hex
        .iter()
        .map(|h| parse_tron_address(&format!("41{h}")).unwrap().1)
        .collect();
    let url = tron.url.clone();
    let pw = Paywatch::start(
        |dir| {
            format!(
                "{}match = \"address\"\n",
                common::configs::usdt_trc20(dir, &url, &base58, "test-api-key")
            )
        },
        None,
    )
    .await;
    let account = open_account(&pw, "USDT_TRC20", "dave").await;
    assert_eq!(account["address"], base58[0].as_str());
    let intent = pw.create(json!({"asset": "USDT_TRC20", "amount": "3"})).await;
    assert_eq!(intent["address"], base58[1].as_str());
    let (status, none_left) = pw
        .post("/v1/accounts", json!({"asset": "USDT_TRC20", "external_id": "erin"}))
        .await;
    assert_eq!(
        (status, none_left["error"]["code"].as_str()),
        (409, Some("no_free_address"))
    );
    let first = tron.transfer(USDT_HEX, &hex[0], 12_500_000, "SUCCESS");
    let second = tron.transfer(USDT_HEX, &hex[0], 1_000_000, "SUCCESS");
    tron.produce(3);
    wait_deposit(&pw, "deposit.detected", &first).await;
    wait_deposit(&pw, "deposit.detected", &second).await;
    tron.produce(3);
    tron.solidify_with_lag(0);
    wait_deposit(&pw, "deposit.confirmed", &first).await;
    let last = wait_deposit(&pw, "deposit.confirmed", &second).await;
    assert_eq!(last["account"]["confirmed_total"], "13.500000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xrp_accounts_reconciliation_by_hand_and_the_csv_export() {
    let rippled = FakeRippled::start(90_000_000).await;
    let url = rippled.url.clone();
    let pw = Paywatch::start(|_| common::configs::xrp(&url, &[MERCHANT.to_string()]), None).await;
    let a = open_account(&pw, "XRP", "frank").await;
    let b = open_account(&pw, "XRP", "grace").await;
    let (tag_a, tag_b) = (a["tag"].as_u64().unwrap(), b["tag"].as_u64().unwrap());
    assert_ne!(tag_a, tag_b);
    assert_eq!(
        (a["address"].as_str(), b["address"].as_str()),
        (Some(MERCHANT), Some(MERCHANT))
    );
    assert_eq!(a["payment_uri"], format!("xrpl:{MERCHANT}?dt={tag_a}"));
    let (status, refused) = pw
        .post("/v1/intents", json!({"asset": "XRP", "amount": "1", "tag": tag_a}))
        .await;
    assert_eq!((status, refused["error"]["code"].as_str()), (409, Some("tag_in_use")));
    let deposits = [
        rippled.pay(20_000_000, Some(tag_a)),
        rippled.pay(5_250_000, Some(tag_a)),
    ];
    let to_b = rippled.pay(1_000_000, Some(tag_b));
    // The customer of an order forgot the tag: unmatched money.
    let order = pw.create(json!({"asset": "XRP", "amount": "12.5"})).await;
    let order_id = order["id"].as_str().unwrap();
    let untagged = rippled.pay(12_500_000, None);
    rippled.close(1);
    for txid in &deposits {
        wait_deposit(&pw, "deposit.confirmed", txid).await;
    }
    let to_b = wait_deposit(&pw, "deposit.confirmed", &to_b).await;
    assert_eq!(to_b["account"]["confirmed_total"], "1.000000");
    assert_eq!(
        pw.get(&format!("/v1/accounts/{}", a["id"].as_str().unwrap())).await["confirmed_total"],
        "25.250000"
    );
    let unmatched = wait_deposit(&pw, "transfer.unmatched", &untagged).await;
    let transfer_id = unmatched["transfer"]["id"].as_str().unwrap().to_string();
    assert_eq!(transfer_id, format!("XRP:{untagged}:0"));

    // Assigned by hand: the order confirms with it (the ledger is validated).
    let assign = format!("/v1/transfers/{transfer_id}/assign");
    let (status, missing) = pw.post(&assign, json!({"intent_id": order_id})).await;
    assert_eq!(
        (status, missing["error"]["code"].as_str()),
        (400, Some("missing_field"))
    );
    let (status, done) = pw
        .post(
            &assign,
            json!({"intent_id": order_id, "reason": "customer forgot the tag; ticket 4411"}),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["intent"]["status"], "confirmed");
    assert_eq!(done["audit"]["actor"], "default");
    assert_eq!(done["audit"]["before"]["intent"]["status"], "awaiting");
    let (status, twice) = pw
        .post(&assign, json!({"intent_id": order_id, "reason": "again"}))
        .await;
    assert_eq!(
        (status, twice["error"]["code"].as_str()),
        (409, Some("already_assigned"))
    );
    let kinds: Vec<String> = pw
        .events()
        .await
        .iter()
        .filter(|e| e["intent"]["id"] == order_id)
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["transfer.assigned", "intent.detected", "intent.confirmed"]);
    let listed = pw.get("/v1/transfers?unmatched=true").await;
    assert_eq!(listed["transfers"].as_array().map(Vec::len), Some(0), "{listed}");

    // Resolved by hand: paid another way.
    let unpaid = pw.create(json!({"asset": "XRP", "amount": "40"})).await;
    let unpaid_id = unpaid["id"].as_str().unwrap();
    let resolve = format!("/v1/intents/{unpaid_id}/resolve");
    let (status, bad) = pw.post(&resolve, json!({"status": "detected", "reason": "x"})).await;
    assert_eq!((status, bad["error"]["code"].as_str()), (400, Some("invalid_status")));
    let (status, resolved) = pw
        .post(
            &resolve,
            json!({"status": "confirmed", "reason": "paid by bank transfer"}),
        )
        .await;
    assert_eq!(status, 200, "{resolved}");
    assert_eq!(resolved["intent"]["resolution"]["by"], "default");
    assert_eq!(
        pw.intent(unpaid_id).await["resolution"]["reason"],
        "paid by bank transfer"
    );
    let (status, again) = pw.post(&resolve, json!({"status": "expired", "reason": "no"})).await;
    assert_eq!(
        (status, again["error"]["code"].as_str()),
        (409, Some("already_resolved"))
    );
    let event = pw.wait_event("intent.resolved", Some(unpaid_id)).await;
    assert_eq!(event["audit"]["action"], "intent.resolve");
    let audit = pw.get("/v1/audit").await;
    let actions: Vec<&str> = audit["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["intent.resolve", "transfer.assign"], "newest first");

    // The accounting export: CSV parsed back, every amount exact.
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{}", pw.api_port);
    let csv_of = |path: &str, accept: bool| {
        let mut request = http.get(format!("{base}{path}")).bearer_auth(TOKEN);
        if accept {
            request = request.header("Accept", "text/csv");
        }
        async move {
            let answer = request.send().await.unwrap();
            assert_eq!(answer.status(), 200);
            assert_eq!(answer.headers()["content-type"], "text/csv; charset=utf-8");
            let text = answer.text().await.unwrap();
            let mut reader = csv::Reader::from_reader(text.as_bytes());
            let header = reader.headers().unwrap().clone();
            let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
            (header, rows)
        }
    };
    let (header, rows) = csv_of("/v1/transfers?format=csv&asset=XRP", false).await;
    let amount = header.iter().position(|h| h == "amount").unwrap();
    let sum: Decimal = rows.iter().map(|r| r[amount].parse::<Decimal>().unwrap()).sum();
    let listed = pw.get("/v1/transfers?asset=XRP&limit=500").await;
    let json_sum: Decimal = listed["transfers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| decimal(&t["amount"]))
        .sum();
    assert_eq!(rows.len(), 4);
    assert_eq!(sum, json_sum);
    assert_eq!(sum, "38.750000".parse::<Decimal>().unwrap(), "20 + 5.25 + 1 + 12.5");
    let now = chrono::Utc::now();
    let range = format!(
        "from={}&to={}",
        (now - chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        (now + chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
    .replace('+', "%2B");
    let (header, rows) = csv_of(&format!("/v1/intents?{range}"), true).await;
    let status_col = header.iter().position(|h| h == "status").unwrap();
    let by_col = header.iter().position(|h| h == "resolved_by").unwrap();
    assert_eq!(rows.len(), 2, "both intents are in the last hour");
    assert!(rows.iter().all(|r| &r[status_col] == "confirmed"));
    assert_eq!(rows.iter().filter(|r| &r[by_col] == "default").count(), 1);
    let future = (now + chrono::Duration::hours(2)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (_, none) = csv_of(&format!("/v1/intents?format=csv&from={future}"), false).await;
    assert!(none.is_empty());
    let (status, refused) = pw
        .request("GET", "/v1/intents?from=yesterday&format=csv", None, Some(TOKEN))
        .await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (400, Some("invalid_parameter"))
    );

    // The same from the command line, as an operator on the server would.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_paywatch"))
            .args(args)
            .arg("--config")
            .arg(pw.config_path())
            .env_remove("PAYWATCH_API_TOKEN")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        (
            out.status.code(),
            text,
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, text, err) = cli(&["account", "create", "--asset", "XRP", "--external-id", "henry"]);
    assert_eq!(code, Some(0), "{err}");
    let created: Value = serde_json::from_str(&text).unwrap();
    let (code, text, _) = cli(&["account", "close", created["id"].as_str().unwrap()]);
    assert_eq!(code, Some(0));
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["status"], "closed");
    let cash = pw.create(json!({"asset": "XRP", "amount": "3"})).await;
    let cash_id = cash["id"].as_str().unwrap();
    let (code, _, err) = cli(&[
        "intent",
        "resolve",
        cash_id,
        "--status",
        "expired",
        "--reason",
        "refunded in the shop",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(pw.intent(cash_id).await["resolution"]["status"], "expired");
    let (code, _, err) = cli(&["transfer", "assign", &transfer_id, "--intent", cash_id, "--reason", "x"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("already_assigned"), "{err}");
    let (code, text, _) = cli(&["audit", "--limit", "1"]);
    assert_eq!(code, Some(0));
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["audit"][0]["reason"],
        "refunded in the shop"
    );
}
