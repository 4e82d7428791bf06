//! USDT on BNB Smart Chain end to end against a real anvil node (chain id
//! 56): the `evm` backend, `amount` matching, finality, reorgs, look-alike
//! tokens, range-capping providers and start-up checks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::anvil::{Anvil, usdt};
use common::paywatch::Paywatch;
use common::rpc_proxy::RpcProxy;
use common::{types_for, wait_for};
use serde_json::{Value, json};

fn usdt_asset(url: &str, token: &str, addresses: &[&str], extra: &str) -> String {
    let list: Vec<String> = addresses.iter().map(|a| format!("{a:?}")).collect();
    format!(
        "[assets.USDT_BSC]\nbackend = \"evm\"\nurl = \"{url}\"\ncontract = \"{token}\"\naddresses = [{}]\n\
         poll_interval = \"250ms\"\ntimeout = \"2s\"\nretry_max = \"1s\"\n{extra}\n",
        list.join(", ")
    )
}

async fn setup(extra: &str) -> (Anvil, String, Paywatch) {
    let node = Anvil::start().await;
    let token = node.deploy_token(18).await;
    let (url, merchant) = (node.url(), node.accounts[1].clone());
    let pw = Paywatch::start(|_| usdt_asset(&url, &token, &[&merchant], extra), None).await;
    (node, token, pw)
}

async fn intent(pw: &Paywatch, amount: &str) -> Value {
    pw.create(json!({"asset": "USDT_BSC", "amount": amount})).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usdt_payment_is_detected_then_confirmed_only_once_finalized() {
    let (node, token, pw) = setup("").await;
    let merchant = &node.accounts[1];
    let i = intent(&pw, "10").await;
    let id = i["id"].as_str().unwrap();
    assert_eq!(i["pay_amount"], "10.000000000000000000");
    assert_eq!(i["address"], merchant.as_str());
    assert_eq!(
        i["payment_uri"],
        format!("ethereum:{token}@56/transfer?address={merchant}&uint256=10000000000000000000")
    );
    let tx = node.transfer(&token, merchant, usdt(10, 0)).await;
    let detected = pw.wait_event("intent.detected", Some(id)).await;
    assert_eq!(detected["transfer"]["txid"], tx.as_str());
    let paid_at = detected["transfer"]["block_height"].as_u64().unwrap();
    // anvil finalizes 64 blocks behind the head: 62 more blocks are deep but not final.
    node.mine(62).await;
    wait_for("63 confirmations", Duration::from_secs(20), || async {
        (pw.intent(id).await["confirmations"] == 63).then_some(())
    })
    .await;
    assert_eq!(pw.intent(id).await["status"], "detected", "deep, but not finalized");
    node.mine(2).await;
    let confirmed = pw.wait_event("intent.confirmed", Some(id)).await;
    assert_eq!(confirmed["intent"]["received"], "10.000000000000000000");
    assert!(node.height().await >= paid_at + 64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_intents_for_the_same_amount_are_told_apart_by_pay_amount() {
    let (node, token, pw) = setup("").await;
    let merchant = node.accounts[1].clone();
    let a = intent(&pw, "10").await;
    let b = intent(&pw, "10").await;
    assert_eq!(
        (a["pay_amount"].as_str(), b["pay_amount"].as_str()),
        (Some("10.000000000000000000"), Some("10.010000000000000000"))
    );
    node.transfer(&token, &merchant, usdt(10, 1)).await;
    pw.wait_event("intent.detected", Some(b["id"].as_str().unwrap())).await;
    assert_eq!(pw.intent(a["id"].as_str().unwrap()).await["status"], "awaiting");
    node.transfer(&token, &merchant, usdt(10, 0)).await;
    pw.wait_event("intent.detected", Some(a["id"].as_str().unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn look_alike_tokens_zero_values_and_wrong_amounts_never_pay() {
    let (node, token, pw) = setup("").await;
    let merchant = node.accounts[1].clone();
    let fake = node.deploy_token(18).await; // same name, symbol and decimals
    let i = intent(&pw, "10").await;
    let id = i["id"].as_str().unwrap();
    node.transfer(&fake, &merchant, usdt(10, 0)).await;
    node.transfer(&token, &merchant, 0).await;
    let wrong = node.transfer(&token, &merchant, usdt(5, 0)).await;
    let unmatched = pw.wait_event("transfer.unmatched", None).await;
    assert_eq!(
        unmatched["transfer"]["txid"],
        wrong.as_str(),
        "an inexact amount is unmatched, never the intent's"
    );
    assert_eq!(pw.intent(id).await["status"], "awaiting");
    let right = node.transfer(&token, &merchant, usdt(10, 0)).await;
    let detected = pw.wait_event("intent.detected", Some(id)).await;
    assert_eq!(detected["transfer"]["txid"], right.as_str());
    let transfers = pw.get("/v1/transfers?asset=USDT_BSC").await;
    let txids: Vec<&str> = transfers["transfers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["txid"].as_str().unwrap())
        .collect();
    assert_eq!(
        txids.len(),
        2,
        "neither the look-alike token nor the zero transfer is recorded: {txids:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_logs_in_one_transaction_pay_several_intents() {
    let (node, token, pw) = setup("").await;
    let merchant = node.accounts[1].clone();
    let a = intent(&pw, "1").await;
    let b = intent(&pw, "2").await;
    let tx = node
        .transfer_twice(&token, &merchant, usdt(1, 0), &merchant, usdt(2, 0))
        .await;
    let da = pw.wait_event("intent.detected", Some(a["id"].as_str().unwrap())).await;
    let db = pw.wait_event("intent.detected", Some(b["id"].as_str().unwrap())).await;
    assert_eq!(
        (da["transfer"]["txid"].as_str(), db["transfer"]["txid"].as_str()),
        (Some(tx.as_str()), Some(tx.as_str()))
    );
    assert_ne!(
        da["transfer"]["index"], db["transfer"]["index"],
        "keyed by (tx hash, log index)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reorg_that_removes_a_detected_payment_reverts_it() {
    let (node, token, pw) = setup("").await;
    let merchant = node.accounts[1].clone();
    let i = intent(&pw, "10").await;
    let id = i["id"].as_str().unwrap();
    let before = node.snapshot().await;
    node.transfer(&token, &merchant, usdt(10, 0)).await;
    node.mine(1).await;
    pw.wait_event("intent.detected", Some(id)).await;
    node.revert(before).await;
    node.mine(3).await;
    let reverted = pw.wait_event("intent.reverted", Some(id)).await;
    assert_eq!(reverted["intent"]["status"], "awaiting");
    node.mine(70).await;
    let tip = node.height().await;
    pw.wait_scanned("USDT_BSC", tip).await;
    assert_eq!(pw.intent(id).await["status"], "awaiting", "never confirmed");
    assert_eq!(
        types_for(&pw.events().await, id),
        ["intent.detected", "intent.reverted"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_over_1200_blocks_through_a_provider_that_caps_ranges() {
    let node = Anvil::start().await;
    let token = node.deploy_token(18).await;
    let proxy = RpcProxy::start(node.url(), 100).await;
    let merchant = node.accounts[1].clone();
    let url = proxy.url.clone();
    let mut pw = Paywatch::start(|_| usdt_asset(&url, &token, &[&merchant], ""), None).await;
    let mut intents = Vec::new();
    for amount in ["1", "2", "3"] {
        intents.push(
            pw.create(json!({"asset": "USDT_BSC", "amount": amount, "expires_in": 3600}))
                .await,
        );
    }
    assert_eq!(pw.terminate().code(), Some(0));
    for n in 0..intents.len() {
        node.transfer(&token, &merchant, usdt(n as u128 + 1, 0)).await;
        node.mine(400).await;
    }
    node.mine(64).await;
    pw.resume().await;
    for i in &intents {
        pw.wait_status(i["id"].as_str().unwrap(), "confirmed").await;
    }
    assert!(
        proxy.rejected() > 0,
        "the provider's range cap was hit and worked around"
    );
    let tip = node.height().await;
    pw.wait_scanned("USDT_BSC", tip).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_payment_of_a_reserved_amount_goes_to_the_old_intent() {
    let (node, token, pw) = setup("").await;
    let merchant = node.accounts[1].clone();
    let old = pw
        .create(json!({"asset": "USDT_BSC", "amount": "20", "expires_in": 1}))
        .await;
    let old_id = old["id"].as_str().unwrap();
    pw.wait_event("intent.expired", Some(old_id)).await;
    let new = intent(&pw, "20").await;
    assert_eq!(
        new["pay_amount"], "20.010000000000000000",
        "20.00 stays reserved for the late window"
    );
    node.transfer(&token, &merchant, usdt(20, 0)).await;
    let late = pw.wait_event("intent.paid_late", Some(old_id)).await;
    assert_eq!(late["intent"]["status"], "expired");
    assert_eq!(late["transfer"]["late"], true);
    assert_eq!(pw.intent(new["id"].as_str().unwrap()).await["status"], "awaiting");
}

fn run_until_exit(config: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("paywatch.toml");
    let full = format!(
        "state_dir = \"{}\"\n[api]\nlisten = \"127.0.0.1:{}\"\n{config}",
        dir.path().join("state").display(),
        common::free_port()
    );
    std::fs::write(&path, full).unwrap();
    let log = dir.path().join("out.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_paywatch"))
        .args(["run", "--config"])
        .arg(&path)
        .env("PAYWATCH_API_TOKEN", "t")
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "paywatch should have refused to start:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status.code(), std::fs::read_to_string(&log).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_decimals_and_a_refused_get_logs_stop_the_start() {
    let node = Anvil::start().await;
    let six = node.deploy_token(6).await;
    let merchant = node.accounts[1].clone();
    let (code, output) = run_until_exit(&usdt_asset(&node.url(), &six, &[&merchant], ""));
    assert_eq!(code, Some(2), "{output}");
    assert!(
        output.contains("decimals() = 6") && output.contains("assets.USDT_BSC"),
        "{output}"
    );

    let token = node.deploy_token(18).await;
    let proxy = RpcProxy::start(node.url(), 1000).await;
    proxy.refuse_get_logs(true);
    let (code, output) = run_until_exit(&usdt_asset(&proxy.url, &token, &[&merchant], ""));
    assert_eq!(code, Some(2), "{output}");
    assert!(output.contains("refuses eth_getLogs"), "{output}");

    // One letter's case flipped: still mixed case, no longer the EIP-55 checksum.
    let flip = merchant
        .char_indices()
        .skip(2)
        .find(|(_, c)| c.is_ascii_alphabetic())
        .map(|(i, _)| i)
        .unwrap();
    let mut bad = merchant.clone();
    let flipped = bad[flip..=flip]
        .chars()
        .map(|c| {
            if c.is_ascii_uppercase() {
                c.to_ascii_lowercase()
            } else {
                c.to_ascii_uppercase()
            }
        })
        .collect::<String>();
    bad.replace_range(flip..=flip, &flipped);
    let (code, output) = run_until_exit(&usdt_asset(&node.url(), &token, &[&bad], ""));
    assert_eq!(code, Some(2), "{output}");
    assert!(output.contains("assets.USDT_BSC.addresses[0]"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_balanced_node_behind_the_head_never_hides_a_transfer() {
    lagging_load_balancer(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_index_behind_the_nodes_never_hides_a_transfer() {
    // eth_getLogs answers 5 blocks behind, without an error, while headers
    // come from up-to-date nodes: only the headers' bloom filters show what
    // the logs left out.
    lagging_load_balancer(true).await;
}

async fn lagging_load_balancer(logs_only: bool) {
    let node = Anvil::start().await;
    let token = node.deploy_token(18).await;
    // Every other request reaches a node 5 blocks behind, which answers
    // eth_getLogs up to its head only, without an error.
    let proxy = RpcProxy::start(node.url(), 10_000).await;
    let merchant = node.accounts[1].clone();
    let url = proxy.url.clone();
    let pw = Paywatch::start(|_| usdt_asset(&url, &token, &[&merchant], ""), None).await;
    let mut ids = Vec::new();
    for amount in ["21", "22", "23", "24"] {
        let i = intent(&pw, amount).await;
        ids.push(i["id"].as_str().unwrap().to_string());
    }
    if logs_only {
        proxy.lag_logs_only(5);
    } else {
        proxy.lag_every_other_request(5);
    }
    for n in 0..ids.len() {
        node.transfer(&token, &merchant, usdt(21 + n as u128, 0)).await;
        node.mine(1).await;
        // Several polls while the transfer sits at the head.
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    node.mine(70).await;
    for id in &ids {
        if tokio::time::timeout(Duration::from_secs(40), async {
            while pw.intent(id).await["status"] != "confirmed" {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await
        .is_err()
        {
            panic!("{id} not confirmed: {}\n{}", pw.intent(id).await, pw.logs());
        }
        assert_eq!(
            types_for(&pw.events().await, id),
            ["intent.detected", "intent.confirmed"],
            "{id}: once each, never reverted"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_addresses_derived_from_an_account_xpub_each_find_their_order() {
    let node = Anvil::start().await;
    let token = node.deploy_token(18).await;
    let url = node.url();
    let pw = Paywatch::start(|_| common::configs::usdt_bsc_derived(&url, &token), None).await;
    let first = intent(&pw, "10").await;
    let second = intent(&pw, "10").await;
    assert_eq!(first["address"], "0x9858EfFD232B4033E47d90003D41EC34EcaEda94");
    assert_ne!(first["address"], second["address"], "an address of its own per intent");
    assert_eq!(
        first["pay_amount"], "10.000000000000000000",
        "no unique-amount offset needed"
    );
    // An exchange withdrawal with its fee deducted still finds its order, by
    // address: underpaid, not unmatched.
    let (first_id, second_id) = (first["id"].as_str().unwrap(), second["id"].as_str().unwrap());
    node.transfer(&token, first["address"].as_str().unwrap(), usdt(9, 0))
        .await;
    node.transfer(&token, second["address"].as_str().unwrap(), usdt(10, 0))
        .await;
    let detected = pw.wait_event("intent.detected", Some(first_id)).await;
    assert_eq!(detected["intent"]["received"], "9.000000000000000000");
    assert!(
        detected["intent"]["flags"]
            .as_array()
            .unwrap()
            .contains(&json!("underpaid")),
        "{detected}"
    );
    pw.wait_event("intent.detected", Some(second_id)).await;
    let unmatched = pw.get("/v1/transfers?unmatched=true&asset=USDT_BSC").await;
    assert_eq!(unmatched["transfers"].as_array().map(Vec::len), Some(0), "{unmatched}");
}
