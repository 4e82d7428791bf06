//! `paywatch store copy`: a merchant's state moved from the embedded store
//! into PostgreSQL and back, through the binary, with a daemon running on
//! each copy in turn against a real Litecoin Core regtest node: nothing is
//! lost, renumbered or paid twice on the way.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::litecoind::Litecoind;
use common::paywatch::Paywatch;
use common::{configs, postgres};
use serde_json::Value;

fn copy(from: &str, to: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_paywatch"))
        .args(["store", "copy", "--from", from, "--to", to])
        .env_remove("PAYWATCH_STORE_PASSWORD")
        .output()
        .unwrap()
}

use common::paywatch::said as text;

/// Intents as listed, oldest first.
async fn intents(pw: &Paywatch) -> Vec<Value> {
    let mut list = pw.get("/v1/intents?limit=100").await["intents"]
        .as_array()
        .unwrap()
        .clone();
    list.reverse();
    list
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_moves_to_postgres_and_back_with_nothing_lost() {
    let node = Litecoind::start().await;
    let addresses = node.new_addresses(4).await;
    let assets = |dir: &Path| configs::core_rpc(dir, "LTC", &node.url(), &addresses, 1);
    let first_dir = tempfile::tempdir().unwrap();

    // On the embedded store: two intents paid and confirmed, one awaiting.
    let mut embedded = Paywatch::start_embedded_in(assets, first_dir.path()).await;
    let mut ids = Vec::new();
    for amount in ["0.11", "0.12", "0.13"] {
        let intent = embedded.ltc_intent(amount).await;
        ids.push((
            intent["id"].as_str().unwrap().to_string(),
            intent["address"].as_str().unwrap().to_string(),
        ));
    }
    for (n, amount) in ["0.11", "0.12"].iter().enumerate() {
        node.send(&ids[n].1, amount).await;
    }
    node.mine(1).await;
    for (id, _) in &ids[..2] {
        embedded.wait_status(id, "confirmed").await;
    }
    let events_before = embedded.events().await;
    let intents_before = intents(&embedded).await;
    // Not while the daemon runs on it.
    let database = postgres::server().fresh_database();
    let first_dir_text = first_dir.path().to_str().unwrap();
    let busy = copy(first_dir_text, &database);
    assert!(!busy.status.success());
    assert!(text(&busy).contains("another paywatch running"), "{}", text(&busy));
    assert_eq!(embedded.terminate().code(), Some(0));

    // Into a new database: copied, verified, and refused a second time.
    let out = copy(first_dir_text, &database);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("copied and verified"), "{}", text(&out));
    let again = copy(first_dir_text, &database);
    assert!(!again.status.success());
    assert!(text(&again).contains("not empty"), "{}", text(&again));

    // A daemon on PostgreSQL serves the same state and goes on from it.
    let mut shared = Paywatch::start_shared(assets, None, &database, "moved", "10s").await;
    assert_eq!(shared.events().await, events_before, "the same feed, seq for seq");
    let after_copy = intents(&shared).await;
    assert_eq!(after_copy.len(), intents_before.len());
    for (moved, before) in after_copy.iter().zip(&intents_before) {
        assert_eq!(moved["id"], before["id"]);
        assert_eq!(moved["status"], before["status"]);
        assert_eq!(moved["received"], before["received"]);
    }
    node.send(&ids[2].1, "0.13").await;
    node.mine(1).await;
    shared.wait_status(&ids[2].0, "confirmed").await;
    let events_on_postgres = shared.events().await;
    assert_eq!(events_on_postgres[..events_before.len()], events_before[..]);
    assert_eq!(shared.terminate().code(), Some(0));

    // And back into a new state directory.
    let back_dir = tempfile::tempdir().unwrap();
    let out = copy(&database, back_dir.path().to_str().unwrap());
    assert!(out.status.success(), "{}", text(&out));
    let back = Paywatch::start_embedded_in(assets, back_dir.path()).await;
    assert_eq!(back.events().await, events_on_postgres);
    let confirmed: Vec<String> = intents(&back)
        .await
        .iter()
        .map(|i| i["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(confirmed, ["confirmed", "confirmed", "confirmed"]);
    // Not one payment was counted twice on the way.
    for (id, _) in &ids {
        let detected = events_on_postgres
            .iter()
            .filter(|e| e["intent"]["id"] == id.as_str() && e["type"] == "intent.confirmed")
            .count();
        assert_eq!(detected, 1, "{id}");
    }
}

#[test]
fn a_missing_store_or_a_password_in_the_url_is_refused_clearly() {
    let out = copy(
        "/nonexistent/dir/that/cannot/be/made",
        "postgres://nobody@127.0.0.1:1/none",
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("cannot open the source store"), "{}", text(&out));
    let database = postgres::server().fresh_database();
    let with_password = database.replacen("postgres@", "postgres:secret@", 1);
    let out = copy(&database, &with_password);
    assert!(!out.status.success());
    let said = text(&out);
    assert!(said.contains("PAYWATCH_STORE_PASSWORD"), "{said}");
    assert!(!said.contains("secret"), "the password is never printed: {said}");
}
