//! USDT on Tron end to end, against a fake Tron full node serving the
//! recorded shapes of the full-node HTTP API.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::paywatch::Paywatch;
use common::tron::{FAKE_USDT_HEX, FakeTron, USDT_HEX};
use common::{types_for, wait_for};
use paywatch_chains::tron::parse_tron_address;
use serde_json::json;

/// The recipient of the recorded mainnet transfer, as hex and base58.
const MERCHANT_HEX: &str = "cdae4e9a6287333a3f7df432b050af7b17e79e63";

fn merchant() -> String {
    parse_tron_address(&format!("41{MERCHANT_HEX}")).unwrap().1
}

async fn start(tron: &FakeTron, address_form: &str, extra: &str) -> Paywatch {
    let url = tron.url.clone();
    let address = address_form.to_string();
    let extra = extra.to_string();
    Paywatch::start(
        move |dir| {
            std::fs::write(dir.join("trongrid-key"), "test-api-key\n").unwrap();
            format!(
                "[assets.USDT_TRC20]\nbackend = \"tron-http\"\nurl = \"{url}\"\napi_key_file = \"{}\"\naddresses = [\"{address}\"]\n\
                 poll_interval = \"250ms\"\ntimeout = \"2s\"\nretry_max = \"1s\"\n{extra}\n",
                dir.join("trongrid-key").display()
            )
        },
        None,
    )
    .await
}

fn usdt(whole: u128, cents: u128) -> u128 {
    whole * 1_000_000 + cents * 10_000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_is_detected_then_confirmed_once_solidified() {
    let tron = FakeTron::start(66_000_000).await;
    // The config gives the address in hex form: normalised to base58.
    let pw = start(&tron, &format!("41{MERCHANT_HEX}"), "").await;
    let intent = pw.create(json!({"asset": "USDT_TRC20", "amount": "10"})).await;
    let id = intent["id"].as_str().unwrap();
    assert_eq!(intent["address"], merchant().as_str());
    assert_eq!(intent["pay_amount"], "10.000000");
    assert_eq!(intent["payment_uri"], format!("tron:{}?amount=10", merchant()));
    let txid = tron.transfer(USDT_HEX, MERCHANT_HEX, usdt(10, 0), "SUCCESS");
    tron.produce(5);
    let detected = pw.wait_event("intent.detected", Some(id)).await;
    assert_eq!(detected["transfer"]["txid"], txid.as_str());
    tron.produce(20);
    wait_for("the scan to pass 20 blocks", Duration::from_secs(20), || async {
        (pw.intent(id).await["confirmations"].as_u64() >= Some(20)).then_some(())
    })
    .await;
    assert_eq!(pw.intent(id).await["status"], "detected", "deep but not solidified");
    tron.solidify_with_lag(2);
    pw.wait_event("intent.confirmed", Some(id)).await;
    assert!(
        tron.api_keys_seen().iter().all(|k| k == "test-api-key") && !tron.api_keys_seen().is_empty(),
        "TRON-PRO-API-KEY sent"
    );
    assert!(
        !pw.logs().contains("test-api-key"),
        "the API key never reaches the logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_look_alike_and_zero_transfers_are_ignored() {
    let tron = FakeTron::start(66_000_000).await;
    let pw = start(&tron, &merchant(), "").await;
    let intent = pw.create(json!({"asset": "USDT_TRC20", "amount": "5"})).await;
    let id = intent["id"].as_str().unwrap();
    tron.transfer(USDT_HEX, MERCHANT_HEX, usdt(5, 0), "OUT_OF_ENERGY");
    tron.transfer(FAKE_USDT_HEX, MERCHANT_HEX, usdt(5, 0), "SUCCESS");
    tron.transfer(USDT_HEX, MERCHANT_HEX, 0, "SUCCESS");
    tron.produce(3);
    let head = tron.head();
    pw.wait_scanned("USDT_TRC20", head).await;
    assert_eq!(pw.intent(id).await["status"], "awaiting");
    assert!(pw.events().await.is_empty());
    let real = tron.transfer(USDT_HEX, MERCHANT_HEX, usdt(5, 0), "SUCCESS");
    tron.produce(1);
    let detected = pw.wait_event("intent.detected", Some(id)).await;
    assert_eq!(detected["transfer"]["txid"], real.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_replacing_an_unsolidified_block_reverts_its_transfer() {
    let tron = FakeTron::start(66_000_000).await;
    let pw = start(&tron, &merchant(), "").await;
    let intent = pw.create(json!({"asset": "USDT_TRC20", "amount": "8"})).await;
    let id = intent["id"].as_str().unwrap();
    let forked_at = tron.head() + 1;
    tron.transfer(USDT_HEX, MERCHANT_HEX, usdt(8, 0), "SUCCESS");
    tron.produce(3);
    pw.wait_event("intent.detected", Some(id)).await;
    tron.fork_from(forked_at, 5);
    let reverted = pw.wait_event("intent.reverted", Some(id)).await;
    assert_eq!(reverted["intent"]["status"], "awaiting");
    tron.solidify_with_lag(0);
    let head = tron.head();
    pw.wait_scanned("USDT_TRC20", head).await;
    assert_eq!(pw.intent(id).await["status"], "awaiting", "never confirmed");
    assert_eq!(
        types_for(&pw.events().await, id),
        ["intent.detected", "intent.reverted"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_bodies_and_rate_limits_are_retried_without_skipping() {
    let tron = FakeTron::start(66_000_000).await;
    let pw = start(&tron, &merchant(), "").await;
    let mut intents = Vec::new();
    for amount in ["1", "2", "3"] {
        intents.push(
            pw.create(json!({"asset": "USDT_TRC20", "amount": amount, "expires_in": 3600}))
                .await,
        );
    }
    tron.inject_error_bodies(4);
    tron.inject_429(4);
    tron.inject_403(2);
    for (n, _) in intents.iter().enumerate() {
        tron.transfer(USDT_HEX, MERCHANT_HEX, usdt(n as u128 + 1, 0), "SUCCESS");
        tron.produce(7);
    }
    tron.solidify_with_lag(0);
    for i in &intents {
        pw.wait_status(i["id"].as_str().unwrap(), "confirmed").await;
    }
    let metrics = pw.metrics().await;
    assert!(
        metrics.contains("kind=\"rate_limit\""),
        "rate limits were seen and counted: {metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_over_500_blocks() {
    let tron = FakeTron::start(66_000_000).await;
    let mut pw = start(&tron, &merchant(), "max_blocks_per_poll = 100").await;
    let mut intents = Vec::new();
    for amount in ["11", "12", "13"] {
        intents.push(
            pw.create(json!({"asset": "USDT_TRC20", "amount": amount, "expires_in": 3600}))
                .await,
        );
    }
    assert_eq!(pw.terminate().code(), Some(0));
    for n in 0..3u128 {
        tron.transfer(USDT_HEX, MERCHANT_HEX, usdt(11 + n, 0), "SUCCESS");
        tron.produce(180);
    }
    tron.solidify_with_lag(19);
    pw.resume().await;
    for i in &intents {
        pw.wait_status(i["id"].as_str().unwrap(), "confirmed").await;
    }
    let head = tron.head();
    pw.wait_scanned("USDT_TRC20", head).await;
}
