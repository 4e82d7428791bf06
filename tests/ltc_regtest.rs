//! paywatch end to end against a real Litecoin Core regtest node: the binary,
//! its config file, its HTTP API and its webhooks, like a shop uses them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::litecoind::Litecoind;
use common::paywatch::{Paywatch, WEBHOOK_SECRET, start_ltc};
use common::proxy::Proxy;
use common::receiver::{Receiver, signature_valid};
use common::{types_for, wait_for};
use serde_json::{Value, json};

/// A node, `pool` fresh receive addresses, and paywatch watching them.
async fn setup(pool: usize, confirmations: u32, webhook: Option<&str>) -> (Litecoind, Vec<String>, Paywatch) {
    let node = Litecoind::start().await;
    let (addresses, pw) = start_ltc(&node, &node.url(), pool, confirmations, "", webhook).await;
    (node, addresses, pw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_payment_is_detected_in_the_mempool_then_confirmed() {
    let (node, addresses, pw) = setup(2, 2, None).await;
    let intent = pw.ltc_intent("0.5").await;
    let id = intent["id"].as_str().unwrap();
    assert!(id.starts_with("pi_"));
    assert_eq!(intent["status"], "awaiting");
    assert_eq!(intent["amount"], "0.50000000");
    assert_eq!(intent["pay_amount"], "0.50000000");
    assert_eq!(intent["confirmations_required"], 2);
    let address = intent["address"].as_str().unwrap();
    assert!(addresses.contains(&address.to_string()), "address comes from the pool");
    assert_eq!(intent["payment_uri"], format!("litecoin:{address}?amount=0.5"));

    let txid = node.send(address, "0.5").await;
    let detected = pw.wait_event("intent.detected", Some(id)).await;
    assert_eq!(detected["intent"]["status"], "detected");
    assert_eq!(detected["transfer"]["txid"], txid.as_str());
    assert_eq!(detected["transfer"]["block_height"], Value::Null, "seen in the mempool");
    assert_eq!(detected["intent"]["received"], "0.50000000");

    node.mine(1).await;
    let one = wait_for("1 confirmation", Duration::from_secs(20), || async {
        let v = pw.intent(id).await;
        (v["confirmations"] == 1).then_some(v)
    })
    .await;
    assert_eq!(one["status"], "detected", "1 of 2 confirmations is not enough");

    node.mine(1).await;
    let confirmed = pw.wait_event("intent.confirmed", Some(id)).await;
    assert_eq!(confirmed["intent"]["status"], "confirmed");
    assert_eq!(confirmed["intent"]["confirmations"], 2);
    assert_eq!(confirmed["intent"]["payments"][0]["status"], "confirmed");
    assert_eq!(confirmed["intent"]["flags"], json!([]));

    let events = pw.events().await;
    assert_eq!(types_for(&events, id), ["intent.detected", "intent.confirmed"]);
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "seq has no gap");

    // Status and metrics reflect the run.
    let status = pw.get("/v1/status").await;
    assert_eq!(status["assets"]["LTC"]["backend"], "core-rpc");
    assert_eq!(status["assets"]["LTC"]["healthy"], true);
    assert_eq!(status["intents"]["confirmed"], 1);
    let tip = node.height().await;
    pw.wait_scanned("LTC", tip).await;
    let (code, _) = pw.request("GET", "/metrics", None, None).await;
    assert_eq!(code, 200);
    let metrics = pw.metrics().await;
    for name in [
        "paywatch_build_info",
        "paywatch_chain_tip_height{asset=\"LTC\"}",
        "paywatch_chain_scanned_height{asset=\"LTC\"}",
        "paywatch_chain_lag_blocks{asset=\"LTC\"}",
        "paywatch_poll_duration_seconds_bucket{asset=\"LTC\"",
        "paywatch_intents{asset=\"LTC\",status=\"confirmed\"} 1",
        "paywatch_transitions_total{asset=\"LTC\",type=\"intent.confirmed\"} 1",
        "paywatch_transfers_total{asset=\"LTC\",matched=\"true\"} 1",
        "paywatch_detection_to_confirmation_seconds_count{asset=\"LTC\"} 1",
    ] {
        assert!(metrics.contains(name), "metrics lack {name}:\n{metrics}");
    }
    let _ = addresses;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn underpaid_intent_detects_then_confirms_after_a_top_up() {
    let (node, _addresses, pw) = setup(1, 1, None).await;
    let intent = pw.ltc_intent("1").await;
    let (id, address) = (intent["id"].as_str().unwrap(), intent["address"].as_str().unwrap());
    node.send(address, "0.4").await;
    let detected = pw.wait_event("intent.detected", Some(id)).await;
    assert_eq!(detected["intent"]["flags"], json!(["underpaid"]));
    node.mine(2).await;
    wait_for("first payment confirmed", Duration::from_secs(20), || async {
        let v = pw.intent(id).await;
        (v["payments"][0]["status"] == "confirmed").then_some(())
    })
    .await;
    assert_eq!(pw.intent(id).await["status"], "detected", "underpaid never confirms");

    node.send(address, "0.6").await;
    wait_for("top-up seen", Duration::from_secs(20), || async {
        (pw.intent(id).await["received"] == "1.00000000").then_some(())
    })
    .await;
    node.mine(1).await;
    let confirmed = pw.wait_event("intent.confirmed", Some(id)).await;
    assert_eq!(confirmed["intent"]["flags"], json!([]));
    assert_eq!(confirmed["intent"]["payments"].as_array().unwrap().len(), 2);
    assert_eq!(
        types_for(&pw.events().await, id),
        ["intent.detected", "intent.confirmed"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overpaid_intent_confirms_with_the_overpaid_flag() {
    let (node, _addresses, pw) = setup(1, 1, None).await;
    let intent = pw.ltc_intent("1").await;
    let id = intent["id"].as_str().unwrap();
    node.send(intent["address"].as_str().unwrap(), "1.25").await;
    node.mine(1).await;
    let confirmed = pw.wait_event("intent.confirmed", Some(id)).await;
    assert_eq!(confirmed["intent"]["received"], "1.25000000");
    assert_eq!(confirmed["intent"]["flags"], json!(["overpaid"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intents_expire_only_after_a_successful_poll_past_expires_at() {
    let node = Litecoind::start().await;
    let proxy = Proxy::start(node.rpc_port).await;
    let (_addresses, pw) = start_ltc(&node, &proxy.url(), 2, 1, "", None).await;
    let paid = pw
        .create(json!({"asset": "LTC", "amount": "0.3", "expires_in": 2}))
        .await;
    let unpaid = pw
        .create(json!({"asset": "LTC", "amount": "0.3", "expires_in": 2}))
        .await;
    let (paid_id, unpaid_id) = (paid["id"].as_str().unwrap(), unpaid["id"].as_str().unwrap());

    // The backend goes away before the deadline.
    proxy.set_up(false);
    wait_for("status to show the outage", Duration::from_secs(20), || async {
        let s = pw.get("/v1/status").await;
        (s["assets"]["LTC"]["healthy"] == false).then_some(())
    })
    .await;
    // The customer pays in time; it is even mined, but paywatch cannot see it.
    node.send(paid["address"].as_str().unwrap(), "0.3").await;
    node.mine(1).await;
    // Well past expires_at, nothing has expired: no poll has succeeded.
    let deadline: chrono::DateTime<chrono::Utc> = paid["expires_at"].as_str().unwrap().parse().unwrap();
    wait_for("the deadline to pass", Duration::from_secs(10), || async {
        (chrono::Utc::now() > deadline + chrono::Duration::seconds(2)).then_some(())
    })
    .await;
    assert_eq!(pw.intent(paid_id).await["status"], "awaiting");
    assert_eq!(pw.intent(unpaid_id).await["status"], "awaiting");
    let status = pw.get("/v1/status").await;
    assert!(
        status["assets"]["LTC"]["last_error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{status}"
    );

    proxy.set_up(true);
    let confirmed = pw.wait_event("intent.confirmed", Some(paid_id)).await;
    assert_eq!(
        confirmed["intent"]["status"], "confirmed",
        "paid in time, seen late: confirms normally"
    );
    let expired = pw.wait_event("intent.expired", Some(unpaid_id)).await;
    assert_eq!(expired["intent"]["received"], "0.00000000");
    assert_eq!(
        types_for(&pw.events().await, paid_id),
        ["intent.detected", "intent.confirmed"]
    );
    let metrics = pw.metrics().await;
    assert!(
        metrics.contains("paywatch_poll_errors_total{asset=\"LTC\",kind=\"transport\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn underpaid_intent_expires_with_received_kept() {
    let (node, _addresses, pw) = setup(1, 1, None).await;
    let intent = pw.create(json!({"asset": "LTC", "amount": "1", "expires_in": 2})).await;
    let id = intent["id"].as_str().unwrap();
    node.send(intent["address"].as_str().unwrap(), "0.25").await;
    pw.wait_event("intent.detected", Some(id)).await;
    let expired = pw.wait_event("intent.expired", Some(id)).await;
    assert_eq!(expired["intent"]["received"], "0.25000000");
    assert_eq!(expired["intent"]["flags"], json!(["underpaid"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_and_expired_intents_record_late_payments() {
    let (node, _addresses, pw) = setup(2, 1, None).await;
    // Cancel.
    let a = pw.ltc_intent("0.2").await;
    let a_id = a["id"].as_str().unwrap();
    let (code, cancelled) = pw.post(&format!("/v1/intents/{a_id}/cancel"), json!({})).await;
    assert_eq!((code, cancelled["status"].as_str()), (200, Some("cancelled")));
    let (code, again) = pw.post(&format!("/v1/intents/{a_id}/cancel"), json!({})).await;
    assert_eq!((code, again["error"]["code"].as_str()), (409, Some("not_cancellable")));
    pw.wait_event("intent.cancelled", Some(a_id)).await;
    // Expire.
    let b = pw
        .create(json!({"asset": "LTC", "amount": "0.2", "expires_in": 1}))
        .await;
    let b_id = b["id"].as_str().unwrap();
    pw.wait_event("intent.expired", Some(b_id)).await;
    // The pool is exhausted: both addresses stay reserved for the late window.
    let (code, full) = pw.post("/v1/intents", json!({"asset": "LTC", "amount": "1"})).await;
    assert_eq!((code, full["error"]["code"].as_str()), (409, Some("no_free_address")));

    // Late payments to both are recorded on them; their status stays.
    let late_a = node.send(a["address"].as_str().unwrap(), "0.2").await;
    node.send(b["address"].as_str().unwrap(), "0.2").await;
    let ev = pw.wait_event("intent.paid_late", Some(a_id)).await;
    assert_eq!(ev["intent"]["status"], "cancelled");
    assert_eq!(ev["intent"]["flags"], json!(["paid_late"]));
    assert_eq!(ev["transfer"]["late"], true);
    assert_eq!(ev["transfer"]["txid"], late_a.as_str());
    let ev = pw.wait_event("intent.paid_late", Some(b_id)).await;
    assert_eq!(ev["intent"]["status"], "expired");
    let listed = pw.get("/v1/transfers?unmatched=true&asset=LTC").await;
    let late: Vec<&Value> = listed["transfers"].as_array().unwrap().iter().collect();
    assert_eq!(late.len(), 2);
    assert!(late.iter().all(|t| t["late"] == true && t["intent_id"].is_string()));
    node.mine(1).await;
    wait_for("late payments confirmed", Duration::from_secs(20), || async {
        let v = pw.intent(a_id).await;
        (v["payments"][0]["status"] == "confirmed").then_some(())
    })
    .await;
    assert_eq!(
        pw.intent(a_id).await["status"],
        "cancelled",
        "a late payment never changes the status"
    );
    // The late money's fate is reported too.
    let a_events = wait_for(
        "the late payment's confirmation event",
        Duration::from_secs(20),
        || async {
            let kinds = types_for(&pw.events().await, a_id);
            (kinds.len() == 3).then_some(kinds)
        },
    )
    .await;
    assert_eq!(a_events, ["intent.cancelled", "intent.paid_late", "transfer.confirmed"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_matching_no_intent_is_recorded_unmatched() {
    let (node, addresses, pw) = setup(2, 1, None).await;
    let txid = node.send(&addresses[1], "0.7").await;
    let ev = pw.wait_event("transfer.unmatched", None).await;
    assert_eq!(ev["intent"], Value::Null);
    assert_eq!(ev["transfer"]["txid"], txid.as_str());
    assert_eq!(ev["transfer"]["amount"], "0.70000000");
    assert_eq!(ev["transfer"]["address"], addresses[1].as_str());
    assert_eq!(ev["transfer"]["intent_id"], Value::Null);
    let listed = pw.get("/v1/transfers?unmatched=true").await;
    assert_eq!(listed["transfers"][0]["txid"], txid.as_str());
    node.mine(1).await;
    wait_for("unmatched transfer confirmed", Duration::from_secs(20), || async {
        let l = pw.get("/v1/transfers?unmatched=true").await;
        (l["transfers"][0]["status"] == "confirmed").then_some(())
    })
    .await;
    let metrics = pw.metrics().await;
    assert!(
        metrics.contains("paywatch_transfers_total{asset=\"LTC\",matched=\"false\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_is_idempotent_by_external_id() {
    let (_node, _addresses, pw) = setup(3, 1, None).await;
    let body = json!({"asset": "LTC", "amount": "0.1", "external_id": "order-42", "metadata": {"cart": [1, 2]}});
    let first = pw.create(body.clone()).await;
    let (code, again) = pw.post("/v1/intents", body.clone()).await;
    assert_eq!(code, 200, "same request again: the existing intent");
    assert_eq!(again["id"], first["id"]);
    let (code, conflict) = pw
        .post(
            "/v1/intents",
            json!({"asset": "LTC", "amount": "0.2", "external_id": "order-42"}),
        )
        .await;
    assert_eq!(
        (code, conflict["error"]["code"].as_str()),
        (409, Some("external_id_conflict"))
    );
    let listed = pw.get("/v1/intents?external_id=order-42").await;
    assert_eq!(listed["intents"].as_array().unwrap().len(), 1);
    assert_eq!(listed["intents"][0]["metadata"], json!({"cart": [1, 2]}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_ordered_and_retried_until_accepted() {
    let receiver = Receiver::start().await;
    receiver.set_failing(true);
    let (node, _addresses, pw) = setup(2, 1, Some(&receiver.url)).await;
    let intent = pw.ltc_intent("0.5").await;
    let id = intent["id"].as_str().unwrap();
    node.send(intent["address"].as_str().unwrap(), "0.5").await;
    pw.wait_event("intent.detected", Some(id)).await;
    node.mine(1).await;
    pw.wait_event("intent.confirmed", Some(id)).await;
    // The receiver refuses: paywatch keeps retrying the first event and holds
    // the second back (per-intent order).
    wait_for("several refused attempts", Duration::from_secs(20), || async {
        (receiver.deliveries().len() >= 3).then_some(())
    })
    .await;
    assert!(
        receiver.deliveries().iter().all(|d| d.event_type == "intent.detected"),
        "confirmed is held back behind detected"
    );
    let backlog = pw.get("/v1/status").await["webhooks"]["backlog"].as_u64().unwrap();
    assert_eq!(backlog, 2);

    receiver.set_failing(false);
    wait_for("both delivered", Duration::from_secs(20), || async {
        (receiver.accepted_unique().len() == 2).then_some(())
    })
    .await;
    let accepted = receiver.accepted_unique();
    assert_eq!(
        accepted.iter().map(|d| d.event_type.as_str()).collect::<Vec<_>>(),
        ["intent.detected", "intent.confirmed"]
    );
    for d in receiver.deliveries() {
        assert!(
            signature_valid(WEBHOOK_SECRET, &d.signature, &d.body),
            "bad signature on {}",
            d.event_id
        );
        let body = d.json();
        assert_eq!(body["id"], d.event_id.as_str());
        assert_eq!(body["type"], d.event_type.as_str());
        assert_eq!(body["intent"]["id"], id);
    }
    assert!(!signature_valid(
        "wrong-secret",
        &accepted[0].signature,
        &accepted[0].body
    ));
    wait_for("backlog drained", Duration::from_secs(10), || async {
        (pw.get("/v1/status").await["webhooks"]["backlog"] == 0).then_some(())
    })
    .await;
    let metrics = pw.metrics().await;
    assert!(
        metrics.contains("paywatch_webhook_deliveries_total{outcome=\"delivered\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("paywatch_webhook_deliveries_total{outcome=\"retry\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_restart_lose_nothing_and_duplicate_nothing() {
    let receiver = Receiver::start().await;
    let (node, _addresses, mut pw) = setup(6, 2, Some(&receiver.url)).await;
    let mut ids = Vec::new();
    for i in 0..6 {
        let intent = pw.ltc_intent(&format!("0.{}", i + 1)).await;
        ids.push((
            intent["id"].as_str().unwrap().to_string(),
            intent["address"].as_str().unwrap().to_string(),
            format!("0.{}", i + 1),
        ));
        if i % 2 == 0 {
            // Killed right after an acknowledged create: the intent must survive.
            pw.restart().await;
        }
    }
    for (n, (_, address, amount)) in ids.iter().enumerate() {
        node.send(address, amount).await;
        // Kill at varying moments: before, during and after the scan sees it.
        tokio::time::sleep(Duration::from_millis(50 * n as u64)).await;
        pw.restart().await;
        if n % 2 == 1 {
            node.mine(1).await;
        }
    }
    node.mine(2).await;
    pw.restart().await;
    for (id, _, _) in &ids {
        pw.wait_status(id, "confirmed").await;
    }
    let events = pw.events().await;
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "no gap, no duplicate"
    );
    for (id, _, _) in &ids {
        assert_eq!(types_for(&events, id), ["intent.detected", "intent.confirmed"], "{id}");
    }
    let ids_in_log: HashSet<String> = events.iter().map(|e| e["id"].as_str().unwrap().to_string()).collect();
    wait_for("every event delivered", Duration::from_secs(30), || async {
        let got: HashSet<String> = receiver.accepted_unique().into_iter().map(|d| d.event_id).collect();
        (got == ids_in_log).then_some(())
    })
    .await;
    // Per intent, deliveries arrived in seq order (first acceptance of each).
    let mut last_seq: HashMap<String, u64> = HashMap::new();
    for d in receiver.accepted_unique() {
        let body = d.json();
        let (intent, seq) = (
            body["intent"]["id"].as_str().unwrap().to_string(),
            body["seq"].as_u64().unwrap(),
        );
        assert!(
            last_seq.insert(intent.clone(), seq).is_none_or(|prev| prev < seq),
            "out of order for {intent}"
        );
    }
    assert_eq!(pw.terminate().code(), Some(0), "SIGTERM exits 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_polls_every_asset_now() {
    let node = Litecoind::start().await;
    let address = node.new_address().await;
    let url = node.url();
    let pw = Paywatch::start(
        |dir| {
            std::fs::write(dir.join("ltc-rpc-password"), common::litecoind::RPC_PASSWORD).unwrap();
            format!(
                "[assets.LTC]\nbackend = \"core-rpc\"\nurl = \"{url}\"\nrpc_user = \"u\"\nrpc_password_file = \"{}\"\n\
                 network = \"regtest\"\naddresses = [\"{address}\"]\nconfirmations = 1\nmempool = false\npoll_interval = \"1h\"\n",
                dir.join("ltc-rpc-password").display()
            )
        },
        None,
    )
    .await;
    let intent = pw.ltc_intent("0.5").await;
    let id = intent["id"].as_str().unwrap();
    node.send(&address, "0.5").await;
    node.mine(1).await;
    // The next poll is an hour away: nothing is seen on its own.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(pw.intent(id).await["status"], "awaiting");
    let signalled = std::process::Command::new("kill")
        .args(["-USR1", &pw.pid().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    pw.wait_event("intent.confirmed", Some(id)).await;
}
