//! Catch-up ratio for the EVM (anvil), XRP (fake rippled) and Tron (fake
//! full node) backends: paywatch's scan time over a backlog, divided by the
//! time a plain loop needs to fetch the same data with the same calls.
//! `cargo bench --bench catchup` (BTC/LTC: `scripts/bench-catchup.sh`).
//!
//! paywatch's scan time is its restart time with the backlog minus its
//! restart time without one (readiness comes after the first complete
//! round), so process start-up is not counted against it.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::anvil::{Anvil, usdt};
use common::configs;
use common::paywatch::Paywatch;
use common::rippled::{FakeRippled, MERCHANT};
use common::tron::{FakeTron, USDT_HEX};
use serde_json::{Value, json};

const TRON_MERCHANT_HEX: &str = "cdae4e9a6287333a3f7df432b050af7b17e79e63";

async fn post(http: &reqwest::Client, url: &str, body: Value) -> Value {
    http.post(url).json(&body).send().await.unwrap().json().await.unwrap()
}

/// Restart time with the backlog, then without: their difference is the scan.
async fn paywatch_scan_time(pw: &mut Paywatch) -> Duration {
    let t = Instant::now();
    pw.resume().await;
    let with_backlog = t.elapsed();
    pw.terminate();
    let t = Instant::now();
    pw.resume().await;
    let without = t.elapsed();
    with_backlog.saturating_sub(without)
}

fn report(asset: &str, what: &str, plain: Duration, scan: Duration) {
    println!(
        "{asset}: {what}: plain fetch {:.3} s, paywatch scan {:.3} s, ratio {:.2} (target <= 1.2)",
        plain.as_secs_f64(),
        scan.as_secs_f64(),
        scan.as_secs_f64() / plain.as_secs_f64()
    );
}

async fn evm(blocks: u64) {
    let node = Anvil::start().await;
    let token = node.deploy_token(18).await;
    let merchant = node.accounts[1].clone();
    let url = node.url();
    let mut pw = Paywatch::start(
        |_| configs::usdt_bsc(&url, &token, std::slice::from_ref(&merchant)),
        None,
    )
    .await;
    pw.terminate();
    let from = node.height().await + 1;
    for i in 0..10u128 {
        node.transfer(&token, &merchant, usdt(i + 1, 0)).await;
        node.mine(blocks / 10).await;
    }
    let to = node.height().await;
    let http = reqwest::Client::new();
    let t = Instant::now();
    let mut start = from;
    while start <= to {
        let end = (start + 1999).min(to);
        let filter = json!({"fromBlock": format!("{start:#x}"), "toBlock": format!("{end:#x}"), "address": token});
        post(
            &http,
            &url,
            json!({"jsonrpc": "2.0", "id": 1, "method": "eth_getLogs", "params": [filter]}),
        )
        .await;
        post(&http, &url, json!({"jsonrpc": "2.0", "id": 1, "method": "eth_getBlockByNumber", "params": [format!("{end:#x}"), false]})).await;
        start = end + 1;
    }
    let plain = t.elapsed();
    report(
        "USDT_BSC",
        &format!("{} blocks, 10 transfers", to - from + 1),
        plain,
        paywatch_scan_time(&mut pw).await,
    );
}

async fn xrp(ledgers: u64) {
    let rippled = FakeRippled::start(90_000_000).await;
    let url = rippled.url.clone();
    let mut pw = Paywatch::start(|_| configs::xrp(&url, &[MERCHANT.to_string()]), None).await;
    pw.terminate();
    let from = rippled.validated() + 1;
    for i in 0..ledgers {
        if i % 10 == 0 {
            rippled.pay(1_000_000 + i, Some(i));
        }
        rippled.close(1);
    }
    let to = rippled.validated();
    let http = reqwest::Client::new();
    let t = Instant::now();
    let mut start = from;
    while start <= to {
        let end = (start + 999).min(to);
        post(
            &http,
            &url,
            json!({"method": "server_info", "params": [{"api_version": 2}]}),
        )
        .await;
        let mut marker = Value::Null;
        loop {
            let mut params = json!({"account": MERCHANT, "ledger_index_min": start, "ledger_index_max": end, "forward": true, "limit": 200, "api_version": 2});
            if !marker.is_null() {
                params["marker"] = marker.clone();
            }
            let page = post(&http, &url, json!({"method": "account_tx", "params": [params]})).await;
            marker = page["result"]["marker"].clone();
            if marker.is_null() {
                break;
            }
        }
        post(
            &http,
            &url,
            json!({"method": "ledger", "params": [{"ledger_index": end, "api_version": 2}]}),
        )
        .await;
        start = end + 1;
    }
    let plain = t.elapsed();
    report(
        "XRP",
        &format!("{} ledgers, {} payments", to - from + 1, ledgers / 10),
        plain,
        paywatch_scan_time(&mut pw).await,
    );
}

async fn tron(blocks: u64) {
    let tron = FakeTron::start(66_000_000).await;
    let url = tron.url.clone();
    let merchant = paywatch_chains::tron::parse_tron_address(&format!("41{TRON_MERCHANT_HEX}"))
        .unwrap()
        .1;
    let mut pw = Paywatch::start(
        |dir| configs::usdt_trc20(dir, &url, std::slice::from_ref(&merchant), "bench-key"),
        None,
    )
    .await;
    pw.terminate();
    let from = tron.head() + 1;
    for i in 0..blocks {
        if i % 10 == 0 {
            tron.transfer(USDT_HEX, TRON_MERCHANT_HEX, 1_000_000 + u128::from(i), "SUCCESS");
        }
        tron.produce(1);
    }
    tron.solidify_with_lag(0);
    let to = tron.head();
    let http = reqwest::Client::new();
    let t = Instant::now();
    for n in from..=to {
        post(&http, &format!("{url}/wallet/getblockbynum"), json!({"num": n})).await;
        post(
            &http,
            &format!("{url}/wallet/gettransactioninfobyblocknum"),
            json!({"num": n}),
        )
        .await;
    }
    let plain = t.elapsed();
    report(
        "USDT_TRC20",
        &format!("{} blocks, {} transfers", to - from + 1, blocks / 10),
        plain,
        paywatch_scan_time(&mut pw).await,
    );
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("catchup: a benchmark; run it with `cargo bench --bench catchup`");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        evm(5_000).await;
        xrp(5_000).await;
        tron(2_000).await;
    });
}
