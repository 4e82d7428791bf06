//! USDT on Tron under production conditions, against the fake Tron node made
//! to misbehave the way TronGrid does: a load balancer whose nodes lack a
//! block another one served, forks that drop a transfer which is mined again
//! after its intent ended, unmatched money followed to its end, dust, a token
//! with other decimals, and a webhook receiver that rejects one order.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::paywatch::Paywatch;
use common::receiver::Receiver;
use common::tron::{FakeTron, USDT_HEX};
use common::{types_for, wait_for};
use paywatch_chains::tron::parse_tron_address;
use serde_json::json;

const MERCHANT_HEX: &str = "cdae4e9a6287333a3f7df432b050af7b17e79e63";

fn merchant() -> String {
    parse_tron_address(&format!("41{MERCHANT_HEX}")).unwrap().1
}

fn asset_table(tron: &FakeTron, extra: &str) -> String {
    format!(
        "[assets.USDT_TRC20]\nbackend = \"tron-http\"\nurl = \"{}\"\naddresses = [\"{}\"]\n\
         poll_interval = \"200ms\"\ntimeout = \"2s\"\nretry_max = \"500ms\"\n{extra}\n",
        tron.url,
        merchant()
    )
}

async fn start(tron: &FakeTron, extra: &str, webhook: Option<&str>) -> Paywatch {
    let table = asset_table(tron, extra);
    Paywatch::start(move |_| table, webhook).await
}

fn usdt(whole: u128, cents: u128) -> u128 {
    whole * 1_000_000 + cents * 10_000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_lacks_a_block_never_makes_paywatch_skip_it() {
    let tron = FakeTron::start(66_000_000).await;
    let pw = start(&tron, "", None).await;
    let intent = pw.create(json!({"asset": "USDT_TRC20", "amount": "10"})).await;
    let id = intent["id"].as_str().unwrap();
    // The node that answers the transaction infos does not have the block
    // yet and says `[]`, while the block itself lists the transfer.
    tron.inject_missing_infos(3);
    let txid = tron.transfer(USDT_HEX, MERCHANT_HEX, usdt(10, 0), "SUCCESS");
    tron.produce(2);
    let detected = pw.wait_event("intent.detected", Some(id)).await;
    assert_eq!(detected["transfer"]["txid"], txid.as_str());
    let metrics = pw.metrics().await;
    assert!(
        metrics.contains("kind=\"behind\""),
        "the missing data was seen and counted: {metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_forked_out_and_mined_again_after_expiry_is_paid_late() {
    let tron = FakeTron::start(66_000_000).await;
    let pw = start(&tron, "", None).await;
    let intent = pw
        .create(json!({"asset": "USDT_TRC20", "amount": "7", "expires_in": 2}))
        .await;
    let id = intent["id"].as_str().unwrap();
    let forked_at = tron.head() + 1;
    let txid = tron.transfer(USDT_HEX, MERCHANT_HEX, usdt(7, 0), "SUCCESS");
    tron.produce(2);
    pw.wait_event("intent.detected", Some(id)).await;
    tron.fork_from(forked_at, 3);
    pw.wait_event("intent.reverted", Some(id)).await;
    pw.wait_status(id, "expired").await;
    tron.remine(&txid);
    tron.produce(2);
    let late = pw.wait_event("intent.paid_late", Some(id)).await;
    assert_eq!(late["transfer"]["txid"], txid.as_str());
    assert_eq!(late["transfer"]["late"], true);
    let shown = pw.intent(id).await;
    assert_eq!(shown["status"], "expired");
    assert!(
        shown["flags"].as_array().unwrap().contains(&json!("paid_late")),
        "{shown}"
    );
    tron.solidify_with_lag(0);
    let confirmed = pw.wait_event("transfer.confirmed", Some(id)).await;
    assert_eq!(confirmed["transfer"]["txid"], txid.as_str());
    assert_eq!(
        types_for(&pw.events().await, id),
        [
            "intent.detected",
            "intent.reverted",
            "intent.expired",
            "intent.paid_late",
            "transfer.confirmed"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_money_is_followed_until_it_confirms_or_vanishes() {
    let tron = FakeTron::start(66_000_000).await;
    let pw = start(&tron, "", None).await;
    let stays = tron.transfer(USDT_HEX, MERCHANT_HEX, usdt(3, 33), "SUCCESS");
    tron.produce(2);
    let forked_at = tron.head() + 1;
    let vanishes = tron.transfer(USDT_HEX, MERCHANT_HEX, usdt(4, 44), "SUCCESS");
    tron.produce(1);
    wait_for("two unmatched transfers", Duration::from_secs(20), || async {
        let events = pw.events().await;
        (events.iter().filter(|e| e["type"] == "transfer.unmatched").count() == 2).then_some(())
    })
    .await;
    tron.fork_from(forked_at, 3);
    let reverted = pw.wait_event("transfer.reverted", None).await;
    assert_eq!(reverted["transfer"]["txid"], vanishes.as_str());
    tron.solidify_with_lag(0);
    let confirmed = pw.wait_event("transfer.confirmed", None).await;
    assert_eq!(confirmed["transfer"]["txid"], stays.as_str());
    let kinds: Vec<(String, String)> = pw
        .events()
        .await
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_string(),
                e["transfer"]["txid"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for txid in [&stays, &vanishes] {
        let of_it: Vec<&str> = kinds
            .iter()
            .filter(|(_, t)| t == txid)
            .map(|(k, _)| k.as_str())
            .collect();
        let expected = if txid == &stays {
            ["transfer.unmatched", "transfer.confirmed"]
        } else {
            ["transfer.unmatched", "transfer.reverted"]
        };
        assert_eq!(of_it, expected, "{txid}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dust_is_recorded_but_never_pays_or_notifies() {
    let tron = FakeTron::start(66_000_000).await;
    let pw = start(&tron, "", None).await;
    let (status, body) = pw
        .post("/v1/intents", json!({"asset": "USDT_TRC20", "amount": "0.05"}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("amount_below_minimum"))
    );
    let intent = pw.create(json!({"asset": "USDT_TRC20", "amount": "10"})).await;
    let id = intent["id"].as_str().unwrap();
    // Address poisoning: a fraction of a cent to the merchant's address.
    let dust = tron.transfer(USDT_HEX, MERCHANT_HEX, 1_000, "SUCCESS");
    tron.produce(2);
    let head = tron.head();
    pw.wait_scanned("USDT_TRC20", head).await;
    assert!(pw.events().await.is_empty(), "no event for dust");
    assert_eq!(pw.intent(id).await["status"], "awaiting");
    let listed = pw.get("/v1/transfers").await;
    let record = &listed["transfers"][0];
    assert_eq!(
        (
            record["txid"].as_str(),
            record["dust"].as_bool(),
            record["amount"].as_str()
        ),
        (Some(dust.as_str()), Some(true), Some("0.001000"))
    );
    assert!(
        pw.metrics()
            .await
            .contains("paywatch_dust_transfers_total{asset=\"USDT_TRC20\"} 1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_with_other_decimals_stops_the_start() {
    let tron = FakeTron::start(66_000_000).await;
    tron.set_decimals(18);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("paywatch.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{}\"\n[api]\nlisten = \"127.0.0.1:{}\"\n{}",
            dir.path().join("state").display(),
            common::free_port(),
            asset_table(&tron, "")
        ),
    )
    .unwrap();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_paywatch"))
            .args(["run", "--config"])
            .arg(&config)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("decimals() = 18"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_rejecting_one_order_holds_back_only_that_order() {
    let tron = FakeTron::start(66_000_000).await;
    let receiver = Receiver::start().await;
    let pw = start(&tron, "", Some(&receiver.url)).await;
    let rejected = pw.create(json!({"asset": "USDT_TRC20", "amount": "5"})).await;
    let rejected_id = rejected["id"].as_str().unwrap().to_string();
    receiver.reject_containing(Some(&rejected_id));
    tron.transfer(USDT_HEX, MERCHANT_HEX, usdt(5, 0), "SUCCESS");
    tron.produce(1);
    pw.wait_event("intent.detected", Some(&rejected_id)).await;
    // Other orders go through while the rejected one keeps failing.
    let mut others = Vec::new();
    for amount in ["6", "7", "8"] {
        let other = pw.create(json!({"asset": "USDT_TRC20", "amount": amount})).await;
        others.push(other["id"].as_str().unwrap().to_string());
    }
    for cents in [600u128, 700, 800] {
        tron.transfer(USDT_HEX, MERCHANT_HEX, usdt(cents / 100, 0), "SUCCESS");
    }
    tron.produce(1);
    tron.solidify_with_lag(0);
    wait_for("the other orders' webhooks", Duration::from_secs(20), || async {
        let got: Vec<String> = receiver
            .accepted_unique()
            .iter()
            .filter(|d| d.event_type == "intent.confirmed")
            .map(|d| d.json()["intent"]["id"].as_str().unwrap().to_string())
            .collect();
        others.iter().all(|o| got.contains(o)).then_some(())
    })
    .await;
    assert!(
        receiver
            .accepted_unique()
            .iter()
            .all(|d| !String::from_utf8_lossy(&d.body).contains(&rejected_id)),
        "nothing of the rejected order was accepted"
    );
    // Every attempt is on record, with the receiver's answer.
    let detected = pw.wait_event("intent.detected", Some(&rejected_id)).await;
    let event_id = detected["id"].as_str().unwrap();
    let record = wait_for("recorded attempts", Duration::from_secs(20), || async {
        let r = pw.get(&format!("/v1/events/{event_id}/deliveries")).await;
        (r["attempts"].as_array().is_some_and(|a| a.len() >= 2)).then_some(r)
    })
    .await;
    assert_eq!(record["state"], "queued");
    assert_eq!(record["attempts"][0]["http_status"], 400);
    assert_eq!(record["attempts"][0]["outcome"], "failed");
    // The shop fixes its handler: the held order arrives, in order.
    receiver.reject_containing(None);
    wait_for("the held order's webhooks", Duration::from_secs(20), || async {
        let kinds: Vec<String> = receiver
            .accepted_unique()
            .iter()
            .filter(|d| String::from_utf8_lossy(&d.body).contains(&rejected_id))
            .map(|d| d.event_type.clone())
            .collect();
        (kinds == ["intent.detected", "intent.confirmed"]).then_some(())
    })
    .await;
    let record = pw.get(&format!("/v1/events/{event_id}/deliveries")).await;
    assert_eq!(record["state"], "delivered");
    // Redelivery on request: the receiver gets the event once more.
    let before = receiver.deliveries().iter().filter(|d| d.event_id == event_id).count();
    let (status, answer) = pw.post(&format!("/v1/events/{event_id}/redeliver"), json!({})).await;
    assert_eq!((status, answer["queued"].as_bool()), (202, Some(true)));
    wait_for("the redelivery", Duration::from_secs(20), || async {
        (receiver.deliveries().iter().filter(|d| d.event_id == event_id).count() > before).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_asset_is_flagged_and_optionally_refuses_new_intents() {
    let tron = FakeTron::start(66_000_000).await;
    let pw = start(&tron, "max_lag = \"2s\"\nrefuse_when_lagging = true", None).await;
    let (status, _) = pw
        .post("/v1/intents", json!({"asset": "USDT_TRC20", "amount": "5"}))
        .await;
    assert_eq!(status, 201, "not lagging yet");
    // The chain's tip stops moving (a stuck node): past max_lag it lags.
    let lagging = wait_for("the asset to be flagged", Duration::from_secs(20), || async {
        let (code, body) = pw.request("GET", "/readyz", None, None).await;
        (code == 503).then_some(body)
    })
    .await;
    assert_eq!(lagging["lagging"], json!(["USDT_TRC20"]), "{lagging}");
    let status = pw.get("/v1/status").await;
    let asset = &status["assets"]["USDT_TRC20"];
    assert_eq!(asset["lagging"], true, "{status}");
    assert!(asset["head_age_seconds"].as_i64() >= Some(2), "{status}");
    assert!(
        pw.metrics()
            .await
            .contains("paywatch_chain_lagging{asset=\"USDT_TRC20\"} 1")
    );
    let (code, refused) = pw
        .post("/v1/intents", json!({"asset": "USDT_TRC20", "amount": "6"}))
        .await;
    assert_eq!((code, refused["error"]["code"].as_str()), (503, Some("asset_lagging")));
    // Blocks again: caught up, ready, creates accepted.
    tron.produce(1);
    wait_for("ready again", Duration::from_secs(20), || async {
        let (code, _) = pw.request("GET", "/readyz", None, None).await;
        (code == 200).then_some(())
    })
    .await;
    let (code, _) = pw
        .post("/v1/intents", json!({"asset": "USDT_TRC20", "amount": "6"}))
        .await;
    assert_eq!(code, 201);
}
