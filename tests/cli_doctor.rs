//! `paywatch doctor` against a real Litecoin Core regtest node: a good
//! configuration passes with the tip shown; a wrong password, a wrong
//! network and an unreachable endpoint each fail with a verdict that says
//! which, and a dead endpoint before a good one is pointed out.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Output};

use common::litecoind::{Litecoind, RPC_PASSWORD};

fn doctor(config: &str) -> (Output, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("paywatch.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_paywatch"))
        .args(["doctor", "--config"])
        .arg(&path)
        .env("PAYWATCH_API_TOKEN", "x")
        .output()
        .unwrap();
    let text = common::paywatch::said(&out);
    (out, text)
}

fn ltc(dir: &std::path::Path, urls: &str, password: &str, network: &str, addresses: &[String]) -> String {
    let file = dir.join("rpc-password");
    std::fs::write(&file, password).unwrap();
    let list: Vec<String> = addresses.iter().map(|a| format!("{a:?}")).collect();
    format!(
        "[assets.LTC]\nbackend = \"core-rpc\"\nurl = {urls}\nrpc_user = \"u\"\nrpc_password_file = \"{}\"\nnetwork = \"{network}\"\naddresses = [{}]\ntimeout = \"2s\"\n",
        file.display(),
        list.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_backend_gets_a_verdict_that_says_what_is_wrong() {
    let node = Litecoind::start().await;
    let addresses = node.new_addresses(1).await;
    let height = node.height().await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{:?}", node.url());

    let (out, text) = doctor(&ltc(dir.path(), &url, RPC_PASSWORD, "regtest", &addresses));
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("LTC (core-rpc, regtest): ok"), "{text}");
    assert!(text.contains(&format!("tip: {height} (")), "{text}");
    assert!(
        text.contains("endpoint 0 ") && text.contains(": answers, height"),
        "{text}"
    );
    assert!(text.contains("all 1 asset(s) ok"), "{text}");
    assert!(text.contains("synced: the newest block was made "), "{text}");

    // A node whose newest block is older than max_lag: here the chain cut
    // back to its genesis block (2011), as a node early in its sync would
    // answer. On regtest, where blocks come only when asked, a warning (the
    // failure elsewhere is the unit tests').
    let first_block = node.rpc("getblockhash", serde_json::json!([1])).await;
    node.rpc("invalidateblock", serde_json::json!([first_block])).await;
    let (out, text) = doctor(&ltc(dir.path(), &url, RPC_PASSWORD, "regtest", &addresses));
    node.rpc("reconsiderblock", serde_json::json!([first_block])).await;
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("LTC (core-rpc, regtest): ok, with warnings")
            && text.contains("tip: 0 (")
            && text.contains("synced: the newest block was made ")
            && text.contains("more than max_lag (30m 0s); a regtest chain makes blocks only when asked"),
        "{text}"
    );
    assert_eq!(node.height().await, height, "the chain is back");

    let (out, text) = doctor(&ltc(dir.path(), &url, "not-the-password", "regtest", &addresses));
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("LTC (core-rpc, regtest): FAILED"), "{text}");
    assert!(
        !text.contains("not-the-password"),
        "the password is never printed: {text}"
    );

    let (out, text) = doctor(&ltc(dir.path(), &url, RPC_PASSWORD, "testnet", &[]));
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("wrong chain or network"), "{text}");

    let dead = format!("\"http://127.0.0.1:{}\"", common::free_port());
    let (out, text) = doctor(&ltc(dir.path(), &dead, RPC_PASSWORD, "regtest", &addresses));
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAILED") && text.contains("endpoint 0 ") && text.contains("fails"),
        "{text}"
    );

    // A dead endpoint first, a good one second: fine, and the dead one named.
    let both = format!("[{dead}, {url}]");
    let (out, text) = doctor(&ltc(dir.path(), &both, RPC_PASSWORD, "regtest", &addresses));
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("endpoint 1 ") && text.contains("answers"), "{text}");
    let first = text
        .lines()
        .find(|l| l.trim_start().starts_with("endpoint 0 "))
        .unwrap();
    assert!(first.contains("fails"), "{text}");
    println!("{text}");

    // A configuration the daemon refuses is exit code 2, as at start.
    let (out, text) = doctor("[assets.DOGE]\nbackend = \"core-rpc\"\nurl = \"http://x\"\n");
    assert_eq!(out.status.code(), Some(2), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evm_node_is_checked_for_its_token_logs_and_freshness() {
    let node = common::anvil::Anvil::start().await;
    let token = node.deploy_token(18).await;
    let config = common::configs::usdt_bsc(&node.url(), &token, std::slice::from_ref(&node.accounts[1]));
    let (out, text) = doctor(&config);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("USDT_BSC (evm, mainnet): ok")
            && text.contains("with 18 decimals; eth_getLogs served")
            && text.contains("synced: the newest block was made "),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_xrp_server_is_checked_for_its_network_require_dest_and_freshness() {
    let server = common::rippled::FakeRippled::start(32_600).await;
    let config = common::configs::xrp(&server.url, &["r9cZA1mLK5R5Am25ArfXFmqgNwjZgnfk59".to_string()]);
    let (out, text) = doctor(&config);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("XRP (rippled, mainnet): ok")
            && text.contains("tip: 32600 (")
            && text.contains("synced: the newest block was made "),
        "{text}"
    );
}
