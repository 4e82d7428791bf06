//! XRP with destination tags end to end, against a fake rippled that serves
//! the recorded response shapes of both API versions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::paywatch::Paywatch;
use common::rippled::{CUSTOMER, FakeRippled, MERCHANT, payment};
use common::wait_for;
use serde_json::{Value, json};

async fn start(api_version: u8) -> (FakeRippled, Paywatch) {
    let rippled = FakeRippled::start(90_000_000).await;
    let url = rippled.url.clone();
    let pw = Paywatch::start(
        |_| {
            format!(
                "[assets.XRP]\nbackend = \"rippled\"\nurl = \"{url}\"\naddresses = [\"{MERCHANT}\"]\napi_version = {api_version}\n\
                 poll_interval = \"250ms\"\ntimeout = \"2s\"\nretry_max = \"1s\"\n"
            )
        },
        None,
    )
    .await;
    (rippled, pw)
}

async fn xrp_intent(pw: &Paywatch, amount: &str) -> Value {
    pw.create(json!({"asset": "XRP", "amount": amount})).await
}

async fn scanned_to(pw: &Paywatch, ledger: u64) {
    wait_for(&format!("scan to ledger {ledger}"), Duration::from_secs(20), || async {
        (pw.get("/v1/status").await["assets"]["XRP"]["scanned_height"] == ledger).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tagged_exact_payment_confirms_on_a_validated_ledger_with_either_api_version() {
    for api in [1, 2] {
        let (rippled, pw) = start(api).await;
        let intent = xrp_intent(&pw, "12.5").await;
        let id = intent["id"].as_str().unwrap();
        let tag = intent["tag"].as_u64().expect("a destination tag");
        assert_eq!(intent["address"], MERCHANT);
        assert_eq!(intent["payment_uri"], format!("xrpl:{MERCHANT}?dt={tag}&amount=12.5"));
        let hash = rippled.pay(12_500_000, Some(tag));
        rippled.close(1);
        let confirmed = pw.wait_event("intent.confirmed", Some(id)).await;
        assert_eq!(confirmed["intent"]["received"], "12.500000", "api v{api}");
        assert_eq!(confirmed["intent"]["payments"][0]["txid"], hash.as_str());
        let events = pw.events().await;
        let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            ["intent.detected", "intent.confirmed"],
            "validated is final: confirmed on sight (api v{api})"
        );
        let status = pw.get("/v1/status").await;
        assert_eq!(status["assets"]["XRP"]["warnings"], json!([]), "RequireDest is set");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_partial_payment_exploit_never_confirms() {
    let (rippled, pw) = start(2).await;
    let intent = pw
        .create(json!({"asset": "XRP", "amount": "1000", "expires_in": 3}))
        .await;
    let (id, tag) = (intent["id"].as_str().unwrap(), intent["tag"].as_u64().unwrap());
    // Asks for 10^9 XRP with tfPartialPayment; the ledger delivered 4456 drops.
    rippled.add(payment(
        CUSTOMER,
        MERCHANT,
        Some(tag),
        json!("1000000000000000"),
        Some(json!("4456")),
        "tesSUCCESS",
        0x8002_0000,
    ));
    rippled.close(1);
    let detected = pw.wait_event("intent.detected", Some(id)).await;
    assert_eq!(detected["intent"]["received"], "0.004456");
    assert_eq!(detected["intent"]["flags"], json!(["underpaid"]));
    let expired = pw.wait_event("intent.expired", Some(id)).await;
    assert_eq!(expired["intent"]["status"], "expired");
    assert!(!pw.events().await.iter().any(|e| e["type"] == "intent.confirmed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_token_and_outgoing_payments_never_credit() {
    let (rippled, pw) = start(2).await;
    let intent = xrp_intent(&pw, "10").await;
    let (id, tag) = (intent["id"].as_str().unwrap(), intent["tag"].as_u64().unwrap());
    // tecPATH_DRY: in a validated ledger, fee charged, nothing delivered.
    rippled.add(payment(
        CUSTOMER,
        MERCHANT,
        Some(tag),
        json!("10000000"),
        None,
        "tecPATH_DRY",
        0,
    ));
    // A token with the right tag and number: not XRP.
    let usd = json!({"currency": "USD", "issuer": "rvYAfWj5gh67oV6fW32ZzP3Aw4Eubs59B", "value": "10"});
    rippled.add(payment(
        CUSTOMER,
        MERCHANT,
        Some(tag),
        usd.clone(),
        Some(usd),
        "tesSUCCESS",
        0,
    ));
    // The merchant paying someone else, with the intent's tag.
    rippled.add(payment(
        MERCHANT,
        CUSTOMER,
        Some(tag),
        json!("10000000"),
        Some(json!("10000000")),
        "tesSUCCESS",
        0,
    ));
    // "unavailable" delivered amounts (pre-2014 partial payments) never credit either.
    rippled.add(payment(
        CUSTOMER,
        MERCHANT,
        Some(tag),
        json!("10000000"),
        Some(json!("unavailable")),
        "tesSUCCESS",
        0x0002_0000,
    ));
    rippled.close(3);
    scanned_to(&pw, rippled.validated()).await;
    assert_eq!(pw.intent(id).await["status"], "awaiting");
    assert!(pw.events().await.is_empty(), "no event at all: {:?}", pw.events().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untagged_unknown_tag_and_tag_zero_payments_are_unmatched() {
    let (rippled, pw) = start(1).await;
    let intent = xrp_intent(&pw, "5").await;
    let tag = intent["tag"].as_u64().unwrap();
    let untagged = rippled.pay(5_000_000, None);
    let unknown = rippled.pay(5_000_000, Some(if tag == 999 { 998 } else { 999 }));
    let zero = rippled.pay(5_000_000, if tag == 0 { None } else { Some(0) });
    rippled.close(1);
    scanned_to(&pw, rippled.validated()).await;
    let events = pw.events().await;
    let unmatched: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "transfer.unmatched")
        .map(|e| e["transfer"]["txid"].as_str().unwrap())
        .collect();
    assert_eq!(unmatched.len(), 3, "{events:?}");
    for hash in [&untagged, &unknown, &zero] {
        assert!(unmatched.contains(&hash.as_str()));
    }
    assert_eq!(
        pw.intent(intent["id"].as_str().unwrap()).await["status"],
        "awaiting",
        "no tag is not tag 0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_above_2_31_work_and_are_never_reused() {
    let (rippled, pw) = start(2).await;
    let big = pw
        .create(json!({"asset": "XRP", "amount": "1", "tag": 3_663_729_509u64}))
        .await;
    assert_eq!(big["tag"], 3_663_729_509u64);

    rippled.pay(1_000_000, Some(3_663_729_509));
    rippled.close(1);
    pw.wait_event("intent.confirmed", Some(big["id"].as_str().unwrap()))
        .await;
    let (code, reused) = pw
        .post(
            "/v1/intents",
            json!({"asset": "XRP", "amount": "1", "tag": 3_663_729_509u64}),
        )
        .await;
    assert_eq!(
        (code, reused["error"]["code"].as_str()),
        (409, Some("tag_in_use")),
        "tags are never reused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_x_address_in_the_request_carries_the_tag() {
    let rippled = FakeRippled::start(90_000_000).await;
    // xrpl.js vectors: r9cZA1mLK5R5Am25ArfXFmqgNwjZgnfk59 with tag 11747.
    let classic = "r9cZA1mLK5R5Am25ArfXFmqgNwjZgnfk59";
    let x_address = "X7AcgcsBL6XDcUb289X4mJ8djcdyKaLFuhLRuNXPrDeJd9A";
    let url = rippled.url.clone();
    let pw = Paywatch::start(
        |_| format!("[assets.XRP]\nbackend = \"rippled\"\nurl = \"{url}\"\naddresses = [\"{classic}\"]\npoll_interval = \"250ms\"\n"),
        None,
    )
    .await;
    let intent = pw
        .create(json!({"asset": "XRP", "amount": "2", "address": x_address}))
        .await;
    assert_eq!(
        (intent["address"].as_str(), intent["tag"].as_u64()),
        (Some(classic), Some(11747))
    );
    rippled.add(payment(
        CUSTOMER,
        classic,
        Some(11747),
        json!("2000000"),
        Some(json!("2000000")),
        "tesSUCCESS",
        0,
    ));
    rippled.close(1);
    pw.wait_event("intent.confirmed", Some(intent["id"].as_str().unwrap()))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marker_pages_with_an_overlapping_entry_count_each_payment_once() {
    let (rippled, pw) = start(2).await;
    rippled.set_paging(2, true);
    let mut intents = Vec::new();
    for _ in 0..5 {
        intents.push(xrp_intent(&pw, "3").await);
    }
    for i in &intents {
        rippled.pay(3_000_000, i["tag"].as_u64());
    }
    rippled.close(2);
    for i in &intents {
        pw.wait_status(i["id"].as_str().unwrap(), "confirmed").await;
    }
    let events = pw.events().await;
    assert_eq!(events.len(), 10, "one detected and one confirmed each: {events:?}");
    for i in &intents {
        let v = pw.intent(i["id"].as_str().unwrap()).await;
        assert_eq!(
            (v["received"].as_str(), v["payments"].as_array().unwrap().len()),
            (Some("3.000000"), 1)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_gap_stops_the_cursor_until_the_history_is_served() {
    for api in [1, 2] {
        let (rippled, pw) = start(api).await;
        let start_ledger = rippled.validated();
        let intent = xrp_intent(&pw, "7").await;
        let id = intent["id"].as_str().unwrap();
        // The server loses the ledgers paywatch has yet to scan.
        rippled.set_history_from(start_ledger + 3);
        rippled.pay(7_000_000, intent["tag"].as_u64());
        rippled.close(5);
        let status = wait_for("the gap to show", Duration::from_secs(20), || async {
            let s = pw.get("/v1/status").await;
            s["assets"]["XRP"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains(&(start_ledger + 1).to_string()))
                .then_some(s)
        })
        .await;
        assert_eq!(status["assets"]["XRP"]["healthy"], false, "api v{api}");
        assert_eq!(
            status["assets"]["XRP"]["scanned_height"], start_ledger,
            "the cursor waits (api v{api})"
        );
        assert_eq!(pw.intent(id).await["status"], "awaiting");
        // History served again: nothing was skipped.
        rippled.set_history_from(32570);
        pw.wait_event("intent.confirmed", Some(id)).await;
        scanned_to(&pw, rippled.validated()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_without_require_dest_is_flagged_in_status() {
    let rippled = FakeRippled::start(90_000_000).await;
    rippled.set_require_dest(false);
    let url = rippled.url.clone();
    let pw = Paywatch::start(
        |_| format!("[assets.XRP]\nbackend = \"rippled\"\nurl = \"{url}\"\naddresses = [\"{MERCHANT}\"]\npoll_interval = \"250ms\"\n"),
        None,
    )
    .await;
    let status = pw.get("/v1/status").await;
    let warnings = status["assets"]["XRP"]["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{status}");
    assert!(warnings[0].as_str().unwrap().contains("RequireDest"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_behind_that_searched_fewer_ledgers_never_moves_the_cursor() {
    for api in [1, 2] {
        let (rippled, pw) = start(api).await;
        let start_ledger = rippled.validated();
        let intent = xrp_intent(&pw, "9").await;
        let id = intent["id"].as_str().unwrap();
        // account_tx reaches a server 3 ledgers behind the one that reported
        // the validated ledger; it answers what it searched, no error.
        rippled.set_account_tx_behind(3);
        rippled.close(1);
        rippled.pay(9_000_000, intent["tag"].as_u64());
        rippled.close(1);
        let status = wait_for("the short search to show", Duration::from_secs(20), || async {
            let s = pw.get("/v1/status").await;
            s["assets"]["XRP"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("behind"))
                .then_some(s)
        })
        .await;
        assert_eq!(
            status["assets"]["XRP"]["scanned_height"], start_ledger,
            "the cursor waits (api v{api})"
        );
        rippled.set_account_tx_behind(0);
        pw.wait_event("intent.confirmed", Some(id)).await;
        scanned_to(&pw, rippled.validated()).await;
    }
}
