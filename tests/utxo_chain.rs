//! BTC and LTC chain behaviour end to end on real Litecoin Core regtest
//! nodes: RBF, reorgs and double spends, MWEB activation and peg-outs,
//! coinbase maturity, xpub derivation, catch-up, outages, and the BTC asset
//! over the same JSON-RPC.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::litecoind::{Litecoind, TPUB};
use common::paywatch::{Paywatch, start_ltc};
use common::proxy::Proxy;
use common::rpc_proxy::RpcProxy;
use common::{types_for, wait_for};
use paywatch_chains::Network;
use paywatch_chains::utxo::address::{parse_ltc, script_address};
use paywatch_chains::utxo::xpub::XpubDeriver;
use paywatch_state::{AddressDeriver, Asset};
use serde_json::{Value, json};

async fn start(node: &Litecoind, pool: usize, confirmations: u32, extra: &str) -> (Vec<String>, Paywatch) {
    start_ltc(node, &node.url(), pool, confirmations, extra, None).await
}

async fn wait_payments(pw: &Paywatch, id: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    wait_for(what, Duration::from_secs(30), || async {
        let v = pw.intent(id).await;
        check(&v).then_some(v)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbf_replacement_reverts_the_original_and_counts_the_replacement_once() {
    let node = Litecoind::start_with(&["-mempoolreplacement=1", "-walletrbf=1"]).await;
    let (_pool, pw) = start(&node, 1, 1, "").await;
    let intent = pw.ltc_intent("0.5").await;
    let id = intent["id"].as_str().unwrap();
    let original = node.send(intent["address"].as_str().unwrap(), "0.5").await;
    pw.wait_event("intent.detected", Some(id)).await;
    let bumped = node.rpc("bumpfee", json!([original])).await["txid"]
        .as_str()
        .unwrap()
        .to_string();
    let v = wait_payments(&pw, id, "the replacement", |v| {
        v["payments"].as_array().unwrap().len() == 2
    })
    .await;
    let status_of = |v: &Value, txid: &str| {
        v["payments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["txid"] == txid)
            .map(|p| p["status"].clone())
            .unwrap()
    };
    assert_eq!(status_of(&v, &original), "reverted");
    assert_eq!(status_of(&v, &bumped), "pending");
    assert_eq!(v["status"], "detected", "the replacement still pays it");
    assert_eq!(v["received"], "0.50000000", "counted once");
    node.mine(1).await;
    let confirmed = pw.wait_event("intent.confirmed", Some(id)).await;
    assert_eq!(confirmed["intent"]["received"], "0.50000000");
    assert_eq!(
        types_for(&pw.events().await, id),
        ["intent.detected", "intent.confirmed"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorg_with_the_payment_double_spent_reverts_it_and_never_confirms() {
    let node = Litecoind::start_with(&["-mempoolreplacement=1", "-walletrbf=1"]).await;
    let (_pool, pw) = start(&node, 1, 3, "").await;
    let intent = pw.ltc_intent("0.5").await;
    let id = intent["id"].as_str().unwrap();
    let payment = node.send(intent["address"].as_str().unwrap(), "0.5").await;
    node.mine(1).await;
    wait_payments(&pw, id, "1 confirmation", |v| v["confirmations"] == 1).await;

    // The block is orphaned, the payment double-spent, the new branch longer.
    node.rpc("invalidateblock", json!([node.best_hash().await])).await;
    let double_spend = node.double_spend(&payment).await;
    node.mine(2).await;
    let reverted = pw.wait_event("intent.reverted", Some(id)).await;
    assert_eq!(reverted["intent"]["status"], "awaiting");
    assert_eq!(reverted["transfer"]["txid"], payment.as_str());
    assert_eq!(reverted["transfer"]["status"], "reverted");
    node.mine(3).await;
    let tip = node.height().await;
    pw.wait_scanned("LTC", tip).await;
    let v = pw.intent(id).await;
    assert_eq!(v["status"], "awaiting", "never confirmed");
    assert_eq!(v["received"], "0.00000000");
    assert_eq!(v["payments"][0]["status"], "reverted");
    assert_eq!(
        types_for(&pw.events().await, id),
        ["intent.detected", "intent.reverted"]
    );
    assert_ne!(double_spend, payment);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorg_where_the_payment_survives_counts_it_once() {
    let node = Litecoind::start().await;
    let (_pool, pw) = start(&node, 1, 2, "").await;
    let intent = pw.ltc_intent("0.5").await;
    let id = intent["id"].as_str().unwrap();
    node.send(intent["address"].as_str().unwrap(), "0.5").await;
    node.mine(1).await;
    wait_payments(&pw, id, "1 confirmation", |v| v["confirmations"] == 1).await;
    node.rpc("invalidateblock", json!([node.best_hash().await])).await;
    // paywatch rolls the block back: the payment is back in the mempool.
    wait_payments(&pw, id, "the rollback", |v| v["payments"][0]["block_height"].is_null()).await;
    node.mine(2).await;
    let confirmed = pw.wait_event("intent.confirmed", Some(id)).await;
    assert_eq!(confirmed["intent"]["received"], "0.50000000");
    assert_eq!(confirmed["intent"]["payments"].as_array().unwrap().len(), 1);
    assert_eq!(
        types_for(&pw.events().await, id),
        ["intent.detected", "intent.confirmed"],
        "no revert, no double count"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_before_and_after_mweb_activation_and_a_peg_out_are_seen() {
    let node = Litecoind::start().await;
    let (_pool, pw) = start(&node, 3, 1, "").await;
    // A wallet with canonical coins only, so its payments never peg out.
    node.rpc("createwallet", json!(["canonical"])).await;
    let c_addr = node
        .wallet_rpc("canonical", "getnewaddress", json!(["", "bech32"]))
        .await;
    node.send(c_addr.as_str().unwrap(), "20").await;

    let before = pw.ltc_intent("0.3").await;
    node.send(before["address"].as_str().unwrap(), "0.3").await;
    node.mine(1).await;
    pw.wait_event("intent.confirmed", Some(before["id"].as_str().unwrap()))
        .await;

    // Regtest activates MWEB at height 432; the activation block needs a
    // peg-in waiting in the mempool (made at height 431).
    let height = node.height().await;
    node.mine(431 - height).await;
    let mweb_address = node.rpc("getnewaddress", json!(["", "mweb"])).await;
    node.send(mweb_address.as_str().unwrap(), "10").await;
    node.mine(1).await;
    assert_eq!(node.height().await, 432);
    let block = node.rpc("getblock", json!([node.best_hash().await, 1])).await;
    assert!(block["mweb"].is_object(), "block 432 carries MWEB data");

    let after = pw.ltc_intent("0.4").await;
    node.wallet_rpc("canonical", "sendtoaddress", json!([after["address"], 0.4]))
        .await;
    node.mine(1).await;
    pw.wait_event("intent.confirmed", Some(after["id"].as_str().unwrap()))
        .await;

    // A peg-out: MWEB-only coins paid to the intent's canonical address
    // arrive as an output of the block's HogEx, maturing after 6 blocks.
    node.rpc("createwallet", json!(["mwebonly"])).await;
    let m_addr = node.wallet_rpc("mwebonly", "getnewaddress", json!(["", "mweb"])).await;
    node.send(m_addr.as_str().unwrap(), "3").await;
    node.mine(1).await;
    let pegout = pw.ltc_intent("0.7").await;
    let pegout_id = pegout["id"].as_str().unwrap();
    node.wallet_rpc("mwebonly", "sendtoaddress", json!([pegout["address"], 0.7]))
        .await;
    node.mine(1).await;
    let detected = pw.wait_event("intent.detected", Some(pegout_id)).await;
    assert!(
        detected["transfer"]["block_height"].is_u64(),
        "peg-outs are never seen in the mempool"
    );
    let hogex_txid = detected["transfer"]["txid"].as_str().unwrap();
    let block = node.rpc("getblock", json!([node.best_hash().await, 1])).await;
    assert_eq!(
        block["tx"].as_array().unwrap().last().unwrap(),
        hogex_txid,
        "credited from the HogEx"
    );
    node.mine(4).await;
    wait_payments(&pw, pegout_id, "5 confirmations", |v| v["confirmations"] == 5).await;
    assert_eq!(
        pw.intent(pegout_id).await["status"],
        "detected",
        "peg-outs need 6 confirmations"
    );
    node.mine(1).await;
    pw.wait_event("intent.confirmed", Some(pegout_id)).await;
    assert!(
        !pw.logs().contains("poll failed"),
        "no scan error across MWEB: {}",
        pw.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coinbase_payments_confirm_only_after_100_blocks() {
    let node = Litecoind::start().await;
    let (_pool, pw) = start(&node, 1, 1, "").await;
    let intent = pw.ltc_intent("1").await;
    let id = intent["id"].as_str().unwrap();
    node.rpc("generatetoaddress", json!([1, intent["address"]])).await;
    let detected = pw.wait_event("intent.detected", Some(id)).await;
    assert_eq!(detected["intent"]["flags"], json!(["overpaid"]), "a whole block reward");
    node.mine(98).await;
    wait_payments(&pw, id, "99 confirmations", |v| v["confirmations"] == 99).await;
    assert_eq!(pw.intent(id).await["status"], "detected");
    node.mine(1).await;
    pw.wait_event("intent.confirmed", Some(id)).await;
}

async fn core_derive(node: &Litecoind, descriptor: &str, count: u32) -> Vec<String> {
    let info = node.rpc("getdescriptorinfo", json!([descriptor])).await;
    let with_checksum = format!("{descriptor}#{}", info["checksum"].as_str().unwrap());
    serde_json::from_value(
        node.rpc("deriveaddresses", json!([with_checksum, [0, count - 1]]))
            .await,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xpub_derived_addresses_equal_core_deriveaddresses() {
    let node = Litecoind::start().await;
    for descriptor in [
        format!("wpkh({TPUB}/0/*)"),
        format!("sh(wpkh({TPUB}/0/*))"),
        format!("pkh({TPUB}/1/*)"),
    ] {
        let ours = XpubDeriver::parse(Asset::Ltc, Network::Regtest, &descriptor).unwrap();
        let core = core_derive(&node, &descriptor, 5).await;
        let mine: Vec<String> = (0..5).map(|i| ours.derive(i).unwrap()).collect();
        assert_eq!(mine, core, "{descriptor}");
    }
    let descriptor = format!("wpkh({TPUB}/0/*)");
    let extra = format!("xpub = \"{descriptor}\"");
    let (_pool, pw) = start(&node, 0, 1, &extra).await;
    let mut handed_out = Vec::new();
    for _ in 0..4 {
        handed_out.push(pw.ltc_intent("0.1").await);
    }
    let addresses: Vec<String> = handed_out
        .iter()
        .map(|i| i["address"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        addresses,
        core_derive(&node, &descriptor, 4).await,
        "intent addresses are Core's, in order"
    );
    // A payment to a derived address is watched like any other.
    let id = handed_out[2]["id"].as_str().unwrap();
    node.send(&addresses[2], "0.1").await;
    node.mine(1).await;
    pw.wait_event("intent.confirmed", Some(id)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_after_being_down_for_120_blocks_finds_every_payment() {
    let node = Litecoind::start().await;
    let (pool, mut pw) = start(&node, 4, 1, "").await;
    let mut intents = Vec::new();
    for amount in ["0.11", "0.12", "0.13"] {
        intents.push(
            pw.create(json!({"asset": "LTC", "amount": amount, "expires_in": 3600}))
                .await,
        );
    }
    assert_eq!(pw.terminate().code(), Some(0));
    node.send(intents[0]["address"].as_str().unwrap(), "0.11").await;
    node.mine(40).await;
    node.send(intents[1]["address"].as_str().unwrap(), "0.12").await;
    let stray = node.send(&pool[3], "0.5").await;
    node.mine(40).await;
    node.send(intents[2]["address"].as_str().unwrap(), "0.13").await;
    node.mine(40).await;
    pw.resume().await;
    for intent in &intents {
        pw.wait_status(intent["id"].as_str().unwrap(), "confirmed").await;
    }
    let events = pw.events().await;
    for intent in &intents {
        assert_eq!(
            types_for(&events, intent["id"].as_str().unwrap()),
            ["intent.detected", "intent.confirmed"]
        );
    }
    let unmatched: Vec<&Value> = events.iter().filter(|e| e["type"] == "transfer.unmatched").collect();
    assert_eq!(unmatched.len(), 1);
    assert_eq!(unmatched[0]["transfer"]["txid"], stray.as_str());
    let status = pw.get("/v1/status").await;
    assert_eq!(status["assets"]["LTC"]["scanned_height"], node.height().await);
    assert_eq!(status["assets"]["LTC"]["lag"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_node_delays_but_skips_nothing() {
    let node = Litecoind::start().await;
    let proxy = Proxy::start(node.rpc_port).await;
    let (_addresses, pw) = start_ltc(&node, &proxy.url(), 3, 2, "", None).await;
    let mut intents = Vec::new();
    for _ in 0..3 {
        intents.push(pw.ltc_intent("0.2").await);
    }
    proxy.set_up(false);
    for intent in &intents {
        node.send(intent["address"].as_str().unwrap(), "0.2").await;
        node.mine(3).await;
    }
    node.mine(5).await;
    wait_for("the outage to show", Duration::from_secs(20), || async {
        (pw.get("/v1/status").await["assets"]["LTC"]["healthy"] == false).then_some(())
    })
    .await;
    for intent in &intents {
        assert_eq!(pw.intent(intent["id"].as_str().unwrap()).await["status"], "awaiting");
    }
    proxy.set_up(true);
    for intent in &intents {
        pw.wait_status(intent["id"].as_str().unwrap(), "confirmed").await;
    }
    let status = pw.get("/v1/status").await;
    assert_eq!(status["assets"]["LTC"]["healthy"], true);
    assert_eq!(status["assets"]["LTC"]["last_error"], Value::Null);
}

/// The `bcrt1` form of a regtest `rltc1` address: the same witness program.
fn bcrt(rltc: &str) -> String {
    let script = parse_ltc(Network::Regtest, rltc).unwrap().script;
    script_address(Asset::Btc, Network::Regtest, &script).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn btc_asset_end_to_end_over_a_core_rpc_node() {
    let node = Litecoind::start().await;
    let rltc = [node.new_address().await, node.new_address().await];
    let btc: Vec<String> = rltc.iter().map(|a| bcrt(a)).collect();
    assert!(btc.iter().all(|a| a.starts_with("bcrt1q")));
    let bitcoin = RpcProxy::bitcoin_over(node.url()).await;
    let url = bitcoin.url.clone();
    let list: Vec<String> = btc.iter().map(|a| format!("{a:?}")).collect();
    let pw = Paywatch::start(
        |dir| {
            std::fs::write(dir.join("btc-rpc-password"), common::litecoind::RPC_PASSWORD).unwrap();
            format!(
                "[assets.BTC]\nbackend = \"core-rpc\"\nurl = \"{url}\"\nrpc_user = \"u\"\nrpc_password_file = \"{}\"\n\
                 network = \"regtest\"\naddresses = [{}]\nmin_amount = \"0.001\"\npoll_interval = \"250ms\"\n",
                dir.join("btc-rpc-password").display(),
                list.join(", ")
            )
        },
        None,
    )
    .await;
    let intent = pw.create(json!({"asset": "BTC", "amount": "0.3"})).await;
    let id = intent["id"].as_str().unwrap();
    assert_eq!(intent["address"], btc[0].as_str());
    assert_eq!(intent["confirmations_required"], 2, "BTC default");
    assert_eq!(intent["payment_uri"], format!("bitcoin:{}?amount=0.3", btc[0]));
    node.send(&rltc[0], "0.3").await;
    pw.wait_event("intent.detected", Some(id)).await;
    node.mine(2).await;
    let confirmed = pw.wait_event("intent.confirmed", Some(id)).await;
    assert_eq!(confirmed["intent"]["address"], btc[0].as_str());
    // Dust below min_amount is ignored; a real stray payment is recorded.
    node.send(&rltc[1], "0.0005").await;
    let stray = node.send(&rltc[1], "0.002").await;
    node.mine(1).await;
    let unmatched = pw.wait_event("transfer.unmatched", None).await;
    assert_eq!(unmatched["transfer"]["txid"], stray.as_str());
    assert_eq!(unmatched["transfer"]["address"], btc[1].as_str());
    let listed = pw.get("/v1/transfers?unmatched=true&asset=BTC").await;
    assert_eq!(
        listed["transfers"].as_array().unwrap().len(),
        1,
        "the dust is not a transfer"
    );
}

/// paywatch deriving LTC addresses from an xpub, reaching `node` through a
/// slow provider (`delay_ms` a call) behind a link that can be cut, in steps
/// of `blocks`.
async fn behind_a_slow_link(
    node: &Litecoind,
    delay_ms: u64,
    blocks: u64,
) -> (common::rpc_proxy::RpcProxy, Proxy, Paywatch) {
    let slow = common::rpc_proxy::RpcProxy::start(node.url(), 1).await;
    slow.delay(delay_ms);
    let proxy = Proxy::start(slow.url.rsplit(':').next().unwrap().parse().unwrap()).await;
    let extra = format!("xpub = \"wpkh({TPUB}/0/*)\"\nmax_blocks_per_poll = {blocks}");
    let (_pool, pw) = start_ltc(node, &proxy.url(), 0, 1, &extra, None).await;
    (slow, proxy, pw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intents_created_during_a_long_catch_up_are_watched_in_the_same_round() {
    let node = Litecoind::start().await;
    let (_slow, proxy, pw) = behind_a_slow_link(&node, 30, 1).await;
    // Down while 280 blocks are mined (below MWEB activation): the round that follows
    // takes one block per step.
    proxy.set_up(false);
    node.mine(280).await;
    let before = pw.get("/v1/status").await["assets"]["LTC"]["scanned_height"]
        .as_u64()
        .unwrap();
    proxy.set_up(true);
    wait_for("the catch-up round to start", Duration::from_secs(20), || async {
        let scanned = pw.get("/v1/status").await["assets"]["LTC"]["scanned_height"].as_u64();
        scanned.is_some_and(|s| s > before).then_some(())
    })
    .await;
    // Addresses handed out mid-round (derived, new to the watch set), paid
    // and mined while the round is still catching up.
    let mut intents = Vec::new();
    for _ in 0..3 {
        let i = pw.ltc_intent("0.15").await;
        node.send(i["address"].as_str().unwrap(), "0.15").await;
        intents.push(i);
    }
    node.mine(1).await;
    let scanned = pw.get("/v1/status").await["assets"]["LTC"]["scanned_height"]
        .as_u64()
        .unwrap();
    assert!(
        scanned + 1 < node.height().await,
        "the payments were mined while the round was still behind ({scanned})"
    );
    for i in &intents {
        pw.wait_status(i["id"].as_str().unwrap(), "confirmed").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catch_up_under_a_steady_stream_of_creates_still_reaches_the_tip() {
    let node = Litecoind::start().await;
    // Slow enough that every step can be overtaken by new addresses.
    let (_slow, proxy, pw) = behind_a_slow_link(&node, 20, 20).await;
    proxy.set_up(false);
    node.mine(200).await;
    proxy.set_up(true);
    // Derived addresses, one every 30 ms, for the whole catch-up.
    let creating = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (flag, url, http) = (
        creating.clone(),
        format!("http://127.0.0.1:{}", pw.api_port),
        reqwest::Client::new(),
    );
    let creator = tokio::spawn(async move {
        let mut made = 0u32;
        while flag.load(std::sync::atomic::Ordering::SeqCst) {
            let answer = http
                .post(format!("{url}/v1/intents"))
                .bearer_auth(common::paywatch::TOKEN)
                .json(&json!({"asset": "LTC", "amount": "0.01"}))
                .send()
                .await;
            if answer.is_ok_and(|r| r.status().is_success()) {
                made += 1;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        made
    });
    let tip = node.height().await;
    let reached = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let scanned = pw.get("/v1/status").await["assets"]["LTC"]["scanned_height"].as_u64();
            if scanned >= Some(tip) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(
        reached.is_ok(),
        "the catch-up never reached the tip; log:\n{}",
        pw.logs()
    );
    creating.store(false, std::sync::atomic::Ordering::SeqCst);
    let made = creator.await.unwrap();
    assert!(made > 20, "creates went on during the catch-up ({made})");
    // And an address handed out at the end is watched.
    let last = pw.ltc_intent("0.2").await;
    node.send(last["address"].as_str().unwrap(), "0.2").await;
    node.mine(1).await;
    pw.wait_status(last["id"].as_str().unwrap(), "confirmed").await;
}
