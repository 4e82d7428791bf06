//! The `esplora` backend end to end, against a local Esplora server backed
//! by a real litecoind (no public Esplora can be reached here).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::esplora::FakeEsplora;
use common::litecoind::Litecoind;
use common::paywatch::Paywatch;
use common::{types_for, wait_for};
use serde_json::{Value, json};

async fn start(node: &Litecoind, esplora: &FakeEsplora, pool: usize, extra: &str) -> (Vec<String>, Paywatch) {
    let mut addresses = Vec::new();
    for _ in 0..pool {
        addresses.push(node.new_address().await);
    }
    let list: Vec<String> = addresses.iter().map(|a| format!("{a:?}")).collect();
    let url = esplora.url.clone();
    let pw = Paywatch::start(
        |_| {
            format!(
                "[assets.LTC]\nbackend = \"esplora\"\nurl = \"{url}\"\nnetwork = \"regtest\"\naddresses = [{}]\n\
                 confirmations = 2\npoll_interval = \"250ms\"\ntimeout = \"2s\"\n{extra}\n",
                list.join(", ")
            )
        },
        None,
    )
    .await;
    (addresses, pw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn esplora_payment_is_detected_in_the_mempool_then_confirmed() {
    let node = Litecoind::start().await;
    let esplora = FakeEsplora::start(node.url()).await;
    let (pool, pw) = start(&node, &esplora, 2, "").await;
    let intent = pw.ltc_intent("0.5").await;
    let id = intent["id"].as_str().unwrap();
    let txid = node.send(intent["address"].as_str().unwrap(), "0.5").await;
    let detected = pw.wait_event("intent.detected", Some(id)).await;
    assert_eq!(detected["transfer"]["txid"], txid.as_str());
    assert_eq!(
        detected["transfer"]["block_height"],
        Value::Null,
        "from the address mempool endpoint"
    );
    node.mine(2).await;
    pw.wait_event("intent.confirmed", Some(id)).await;
    // A payment to a pool address with no intent is found in its block.
    let stray = node.send(&pool[1], "0.25").await;
    node.mine(1).await;
    let unmatched = pw.wait_event("transfer.unmatched", None).await;
    assert_eq!(unmatched["transfer"]["txid"], stray.as_str());
    let status = pw.get("/v1/status").await;
    assert_eq!(status["assets"]["LTC"]["backend"], "esplora");
    assert_eq!(status["assets"]["LTC"]["healthy"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn esplora_rate_limits_and_garbage_are_retried_without_skipping() {
    let node = Litecoind::start().await;
    let esplora = FakeEsplora::start(node.url()).await;
    let (_pool, pw) = start(&node, &esplora, 3, "max_blocks_per_poll = 5\nretry_max = \"1s\"").await;
    let mut intents = Vec::new();
    for _ in 0..3 {
        intents.push(
            pw.create(json!({"asset": "LTC", "amount": "0.2", "expires_in": 3600}))
                .await,
        );
    }
    esplora.rate_limit_next(8);
    esplora.garbage_next(4);
    for intent in &intents {
        node.send(intent["address"].as_str().unwrap(), "0.2").await;
        node.mine(20).await;
    }
    for intent in &intents {
        pw.wait_status(intent["id"].as_str().unwrap(), "confirmed").await;
    }
    let tip = node.height().await;
    pw.wait_scanned("LTC", tip).await;
    let metrics = pw.metrics().await;
    assert!(
        metrics.contains("paywatch_poll_errors_total{asset=\"LTC\""),
        "the faults were seen: {metrics}"
    );
    let events = pw.events().await;
    for intent in &intents {
        assert_eq!(
            types_for(&events, intent["id"].as_str().unwrap()),
            ["intent.detected", "intent.confirmed"]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn esplora_reorg_is_detected_by_block_hash() {
    let node = Litecoind::start().await;
    let esplora = FakeEsplora::start(node.url()).await;
    let (_pool, pw) = start(&node, &esplora, 1, "").await;
    let intent = pw.ltc_intent("0.5").await;
    let id = intent["id"].as_str().unwrap();
    node.send(intent["address"].as_str().unwrap(), "0.5").await;
    node.mine(1).await;
    wait_for("1 confirmation", Duration::from_secs(20), || async {
        (pw.intent(id).await["confirmations"] == 1).then_some(())
    })
    .await;
    node.rpc("invalidateblock", json!([node.best_hash().await])).await;
    wait_for("the rollback", Duration::from_secs(20), || async {
        pw.intent(id).await["payments"][0]["block_height"]
            .is_null()
            .then_some(())
    })
    .await;
    node.mine(2).await;
    let confirmed = pw.wait_event("intent.confirmed", Some(id)).await;
    assert_eq!(confirmed["intent"]["received"], "0.50000000");
    assert_eq!(
        types_for(&pw.events().await, id),
        ["intent.detected", "intent.confirmed"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn esplora_of_another_chain_is_refused() {
    let node = Litecoind::start().await;
    let esplora = FakeEsplora::start(node.url()).await;
    let url = esplora.url.clone();
    // A BTC regtest config pointed at a Litecoin Esplora: the genesis differs.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("paywatch.toml");
    let port = common::free_port();
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{}\"\n[api]\nlisten = \"127.0.0.1:{}\"\n[assets.BTC]\nbackend = \"esplora\"\nurl = \"{url}\"\nnetwork = \"regtest\"\n\
             addresses = [\"bcrt1qs758ursh4q9z627kt3pp5yysm78ddny6txaqgw\"]\npoll_interval = \"250ms\"\n",
            dir.path().join("state").display(),
            port
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_paywatch"))
        .args(["run", "--config"])
        .arg(&config)
        .env("PAYWATCH_API_TOKEN", "t")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // It keeps running (other assets must not suffer) and reports the error.
    let http = reqwest::Client::new();
    let status = wait_for("status with the chain error", Duration::from_secs(20), || async {
        let r = http
            .get(format!("http://127.0.0.1:{port}/v1/status"))
            .bearer_auth("t")
            .send()
            .await
            .ok()?;
        let v: Value = r.json().await.ok()?;
        let refused = v["assets"]["BTC"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("another chain"));
        refused.then_some(v)
    })
    .await;
    assert_eq!(status["assets"]["BTC"]["healthy"], false);
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_mempool_listing_reverts_nothing_but_a_double_spend_reverts() {
    let node = Litecoind::start_with(&["-mempoolreplacement=1", "-walletrbf=1"]).await;
    let esplora = FakeEsplora::start(node.url()).await;
    let (_pool, pw) = start(&node, &esplora, 2, "").await;
    let intent = pw.ltc_intent("0.5").await;
    let id = intent["id"].as_str().unwrap();
    let address = intent["address"].as_str().unwrap();
    node.send(address, "0.2").await;
    node.send(address, "0.3").await;
    wait_for("both payments in the mempool", Duration::from_secs(20), || async {
        (pw.intent(id).await["payments"].as_array().map(Vec::len) == Some(2)).then_some(())
    })
    .await;
    // Esplora's page now lists one of the two: the other is still in the
    // mempool, merely unlisted.
    esplora.set_mempool_page(1);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let shown = pw.intent(id).await;
    assert!(
        shown["payments"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["status"] == "pending"),
        "nothing reverted for being unlisted: {shown}"
    );
    esplora.set_mempool_page(50);
    // A double spend of an unmatched payment: the node no longer knows it.
    let other = pw.ltc_intent("0.7").await;
    let other_id = other["id"].as_str().unwrap();
    let spent = node.send(other["address"].as_str().unwrap(), "0.7").await;
    pw.wait_event("intent.detected", Some(other_id)).await;
    node.double_spend(&spent).await;
    let reverted = pw.wait_event("intent.reverted", Some(other_id)).await;
    assert_eq!(reverted["transfer"]["txid"], spent.as_str());
    node.mine(2).await;
    pw.wait_status(id, "confirmed").await;
    assert_eq!(
        types_for(&pw.events().await, id),
        ["intent.detected", "intent.confirmed"]
    );
}
