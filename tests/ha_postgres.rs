//! Two paywatch instances on one real PostgreSQL database, in front of one
//! Litecoin Core regtest node, while the instance that scans is killed
//! again and again, or paused past its lease: every payment is confirmed
//! exactly once, the feed has no gap, every event reaches the webhook, and
//! both instances serve the same state.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::litecoind::Litecoind;
use common::paywatch::Paywatch;
use common::receiver::Receiver;
use common::{configs, postgres, types_for, wait_for};
use serde_json::json;

const LEASE_TTL: &str = "2s";
/// A dead leader's lease lapses after `LEASE_TTL`; another instance looks
/// every third of it. Generous, for a loaded CI machine.
const TAKEOVER_LIMIT: Duration = Duration::from_secs(15);

struct Pair {
    node: Litecoind,
    receiver: Receiver,
    instances: [Paywatch; 2],
}

async fn start_pair(pool: usize) -> Pair {
    let node = Litecoind::start().await;
    let receiver = Receiver::start().await;
    let store = postgres::server().fresh_database();
    let addresses = node.new_addresses(pool).await;
    let assets = |dir: &Path| configs::core_rpc(dir, "LTC", &node.url(), &addresses, 2);
    let a = Paywatch::start_shared(assets, Some(&receiver.url), &store, "alpha", LEASE_TTL).await;
    let b = Paywatch::start_shared(assets, Some(&receiver.url), &store, "beta", LEASE_TTL).await;
    Pair {
        node,
        receiver,
        instances: [a, b],
    }
}

/// The instance name holding `lease` now, as `pw`'s status shows it.
async fn holder(pw: &Paywatch, lease: &str) -> Option<String> {
    let status = pw.get("/v1/status").await;
    status["store"]["leases"]
        .as_array()?
        .iter()
        .find(|l| l["lease"] == lease && l["live"] == true)
        .and_then(|l| l["holder"].as_str())
        .and_then(|h| h.split('/').next())
        .map(str::to_string)
}

fn event_ids(events: &[serde_json::Value]) -> HashSet<String> {
    events.iter().map(|e| e["id"].as_str().unwrap().to_string()).collect()
}

/// The ids of the events the receiver accepted.
fn delivered(receiver: &Receiver) -> HashSet<String> {
    receiver.accepted_unique().into_iter().map(|d| d.event_id).collect()
}

fn index_of(name: &str) -> usize {
    if name == "alpha" { 0 } else { 1 }
}

/// Checks what the whole run must show, on both instances.
async fn check_outcome(pair: &Pair, paid: &[String], unpaid: &[String]) {
    let [a, b] = &pair.instances;
    let events = a.events().await;
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "the feed has a gap or a duplicate"
    );
    assert_eq!(b.events().await, events, "both instances serve the same feed");
    for id in paid {
        assert_eq!(
            types_for(&events, id),
            ["intent.detected", "intent.confirmed"],
            "{id} confirmed exactly once"
        );
    }
    for id in unpaid {
        assert!(
            types_for(&events, id).iter().all(|t| t != "intent.confirmed"),
            "{id} was never paid"
        );
    }
    let ids = event_ids(&events);
    wait_for("every event delivered", Duration::from_secs(60), || async {
        (delivered(&pair.receiver) == ids).then_some(())
    })
    .await;
    // Per intent, the first acceptance of each event came in seq order.
    let mut last: HashMap<String, u64> = HashMap::new();
    for d in pair.receiver.accepted_unique() {
        let body = d.json();
        if let Some(intent) = body["intent"]["id"].as_str() {
            let seq = body["seq"].as_u64().unwrap();
            assert!(
                last.insert(intent.to_string(), seq).is_none_or(|prev| prev < seq),
                "deliveries out of order for {intent}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scanning_instance_killed_again_and_again_loses_and_duplicates_nothing() {
    let mut pair = start_pair(16).await;
    let mut paid = Vec::new();
    let mut unpaid = Vec::new();
    let mut takeovers = 0;
    for round in 0..5 {
        // A mixed workload on both instances: creates, a cancel, payments.
        for i in 0..3 {
            let pw = &pair.instances[(round + i) % 2];
            let amount = format!("0.{}{}", round + 1, i + 1);
            let intent = pw.ltc_intent(&amount).await;
            let id = intent["id"].as_str().unwrap().to_string();
            if i == 2 && round % 2 == 0 {
                let (status, _) = pw.post(&format!("/v1/intents/{id}/cancel"), json!({})).await;
                assert_eq!(status, 200);
                unpaid.push(id);
                continue;
            }
            pair.node.send(intent["address"].as_str().unwrap(), &amount).await;
            paid.push(id);
        }
        // Kill whichever instance scans, at a varying moment.
        tokio::time::sleep(Duration::from_millis(150 * round as u64)).await;
        let leader = wait_for("a scan lease holder", TAKEOVER_LIMIT, || async {
            holder(&pair.instances[0], "scan/LTC").await
        })
        .await;
        let dead = index_of(&leader);
        pair.instances[dead].kill9();
        let killed_at = Instant::now();
        pair.node.mine(1).await;
        let survivor = &pair.instances[1 - dead];
        wait_for("the other instance to take the scan lease", TAKEOVER_LIMIT, || async {
            (holder(survivor, "scan/LTC").await.as_deref() == Some(if dead == 0 { "beta" } else { "alpha" }))
                .then_some(())
        })
        .await;
        assert!(killed_at.elapsed() < TAKEOVER_LIMIT);
        takeovers += 1;
        pair.instances[dead].resume().await;
    }
    assert_eq!(takeovers, 5);
    pair.node.mine(2).await;
    for id in &paid {
        pair.instances[0].wait_status(id, "confirmed").await;
    }
    check_outcome(&pair, &paid, &unpaid).await;
    // Metrics show which instance holds what.
    let held: i64 = {
        let mut sum = 0;
        for pw in &pair.instances {
            let text = pw.metrics().await;
            let line = text
                .lines()
                .find(|l| l.starts_with("paywatch_lease_held{lease=\"scan/LTC\"}"))
                .unwrap_or_else(|| panic!("no lease metric:\n{text}"));
            sum += line.rsplit(' ').next().unwrap().parse::<i64>().unwrap();
        }
        sum
    };
    assert_eq!(held, 1, "exactly one instance holds the scan lease");
    for pw in &mut pair.instances {
        assert_eq!(pw.terminate().code(), Some(0), "SIGTERM exits 0");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_paused_past_its_lease_resumes_stopped_and_the_state_stays_exact() {
    let pair = start_pair(8).await;
    let mut paid = Vec::new();
    for i in 0..3 {
        let amount = format!("0.0{}", i + 1);
        let intent = pair.instances[i % 2].ltc_intent(&amount).await;
        pair.node.send(intent["address"].as_str().unwrap(), &amount).await;
        paid.push(intent["id"].as_str().unwrap().to_string());
    }
    let leader = wait_for("a scan lease holder", TAKEOVER_LIMIT, || async {
        holder(&pair.instances[0], "scan/LTC").await
    })
    .await;
    let paused = index_of(&leader);
    let other = 1 - paused;
    // Paused mid-work (a GC pause, a frozen VM): the lease lapses and the
    // other instance scans on, blocks and all.
    pair.instances[paused].signal("STOP");
    wait_for("the other instance to take over", TAKEOVER_LIMIT, || async {
        (holder(&pair.instances[other], "scan/LTC").await.as_deref() == Some(["alpha", "beta"][other])).then_some(())
    })
    .await;
    pair.node.mine(1).await;
    let height = pair.node.height().await;
    pair.instances[other].wait_scanned("LTC", height).await;
    let more = pair.instances[other].ltc_intent("0.09").await;
    pair.node.send(more["address"].as_str().unwrap(), "0.09").await;
    paid.push(more["id"].as_str().unwrap().to_string());
    // Back: it finds its lease gone and stops working under it (a step it
    // had computed before the pause is refused by its fence, shown exactly
    // in state/src/store/tests/postgres.rs).
    pair.instances[paused].signal("CONT");
    wait_for(
        "the resumed instance to notice it lost the lease",
        TAKEOVER_LIMIT,
        || async {
            let logs = pair.instances[paused].logs();
            (logs.contains("lost the lease") || logs.contains("passed to another instance")).then_some(())
        },
    )
    .await;
    pair.node.mine(2).await;
    for id in &paid {
        pair.instances[paused].wait_status(id, "confirmed").await;
    }
    check_outcome(&pair, &paid, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_reader_on_one_instance_wakes_for_events_committed_on_the_other() {
    let pair = start_pair(4).await;
    let [a, b] = &pair.instances;
    let intent = a.ltc_intent("0.5").await;
    let after = b.get("/v1/events?after=0&limit=1000").await["last_seq"]
        .as_u64()
        .unwrap();
    // b waits; a commits (a cancel): b's answer carries it long before
    // its wait is over, woken by the database, not by its own writes.
    let waiting = {
        let path = format!("/v1/events?after={after}&wait=25");
        let b = &pair.instances[1];
        async move {
            let started = Instant::now();
            let page = b.get(&path).await;
            (page, started.elapsed())
        }
    };
    let cancel = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (status, _) = a
            .post(
                &format!("/v1/intents/{}/cancel", intent["id"].as_str().unwrap()),
                json!({}),
            )
            .await;
        assert_eq!(status, 200);
    };
    let ((page, waited), ()) = tokio::join!(waiting, cancel);
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "woken with the event: {page}");
    assert_eq!(events[0]["type"], "intent.cancelled");
    assert!(
        waited < Duration::from_secs(20),
        "answered when the event came, not at the end of the wait"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_without_webhooks_joining_never_turns_delivery_off() {
    let pair = start_pair(4).await;
    // A third instance with the same config but no [webhook] (an API-only
    // instance, or a config rollout gone half way): delivery goes on.
    let text = pair.instances[0].config_text();
    let assets = text[text.find("[assets.").unwrap()..].to_string();
    let store = text
        .lines()
        .find(|l| l.starts_with("store = "))
        .unwrap()
        .trim_start_matches("store = ")
        .trim_matches('"')
        .to_string();
    let third = Paywatch::start_shared(|_| assets.clone(), None, &store, "gamma", LEASE_TTL).await;
    assert!(
        third
            .logs()
            .contains("events are queued for the instances that have it"),
        "{}",
        third.logs()
    );
    let intent = third.ltc_intent("0.3").await;
    let (status, _) = third
        .post(
            &format!("/v1/intents/{}/cancel", intent["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let events = third.events().await;
    let ids = event_ids(&events);
    wait_for("the cancel delivered", Duration::from_secs(30), || async {
        ids.is_subset(&delivered(&pair.receiver)).then_some(())
    })
    .await;
}
