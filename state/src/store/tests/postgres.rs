//! What only the PostgreSQL store has: leases and their fences, and ranges
//! read a page at a time. These always run on PostgreSQL.

use std::collections::BTreeMap;
use std::time::Duration as StdDuration;

use super::*;
use crate::store::kv::{Str, TableDef, U64};

const LEASE: &str = "scan/LTC";

fn fence(token: u64) -> Fence {
    Fence {
        lease: LEASE.into(),
        token,
    }
}

#[test]
fn a_holder_fenced_out_cannot_apply_even_a_step_the_cursor_would_take() {
    let policy = AssetPolicy::defaults(crate::Asset::Ltc, vec!["A1".into()]);
    let store = Place::postgres().open();
    store.set_webhooks_enabled(true).unwrap();
    let mut chain = Chain::new(policy.clone());
    let ttl = StdDuration::from_millis(400);

    let a = store
        .acquire_lease(LEASE, "a", ttl)
        .unwrap()
        .expect("a free lease is taken");
    assert_eq!(store.acquire_lease(LEASE, "b", ttl).unwrap(), None, "held by a");
    assert_eq!(
        store.acquire_lease(LEASE, "a", ttl).unwrap(),
        Some(a),
        "renewing keeps the fence"
    );
    store
        .apply_scan_fenced(
            &policy,
            &chain.update(vec![], Some(vec![]), Some(t(0))),
            t(0),
            Some(&fence(a)),
        )
        .unwrap();
    let intent = created(store.create_intent(&policy, new_intent(crate::Asset::Ltc, "1.5"), t(1)));

    // a computes a step, then stalls past its lease; b takes over.
    chain.height += 1;
    let stale = chain.update(
        vec![obs("tx1", "A1", "1.5", Some(chain.height))],
        Some(vec![]),
        Some(t(2)),
    );
    std::thread::sleep(ttl + StdDuration::from_millis(200));
    let b = store
        .acquire_lease(LEASE, "b", ttl)
        .unwrap()
        .expect("the lapsed lease passes on");
    assert!(b > a, "a new holder gets a higher fence");

    // The step would fit the cursor, but a no longer holds the lease.
    let events_before = store.events_after(0, 1000).unwrap();
    let cursor_before = store.chain_state(crate::Asset::Ltc).unwrap().unwrap().cursor;
    let refused = store.apply_scan_fenced(&policy, &stale, t(2), Some(&fence(a)));
    assert!(
        matches!(&refused, Err(StoreError::Fenced { held, current, .. }) if *held == a && *current == Some(b)),
        "{refused:?}"
    );
    assert_eq!(store.events_after(0, 1000).unwrap(), events_before, "nothing applied");
    assert_eq!(
        store.chain_state(crate::Asset::Ltc).unwrap().unwrap().cursor,
        cursor_before
    );
    assert_eq!(
        store.intent(&intent.id).unwrap().unwrap().status,
        IntentStatus::Awaiting
    );

    // The holder applies the same step.
    let applied = store.apply_scan_fenced(&policy, &stale, t(2), Some(&fence(b))).unwrap();
    assert_eq!(kinds(&applied.events), [EventType::IntentDetected]);

    // Its webhook bookkeeping is refused the same way.
    let attempt = DeliveryAttempt {
        seq: 1,
        attempt: 1,
        at: t(3),
        http_status: Some(200),
        error: None,
        duration_ms: 1,
        outcome: "delivered".into(),
    };
    assert!(matches!(
        store.outbox_delivered(1, &attempt, Some(&fence(a))),
        Err(StoreError::Fenced { .. })
    ));
    assert_eq!(
        store.outbox_stats().unwrap().backlog,
        1,
        "the entry stays for the holder"
    );

    // a is back: it cannot take a live lease; a released one at once.
    assert_eq!(store.acquire_lease(LEASE, "a", ttl).unwrap(), None);
    let shown = store.leases().unwrap();
    assert_eq!(shown.len(), 1);
    assert_eq!(
        (shown[0].holder.as_str(), shown[0].fence, shown[0].live),
        ("b", b, true)
    );
    store.release_lease(LEASE, "b", b).unwrap();
    let again = store
        .acquire_lease(LEASE, "a", ttl)
        .unwrap()
        .expect("a released lease is free");
    assert!(again > b);
    // A holder whose own lease lapsed comes back under a new fence: what
    // it started under the old one is refused too.
    std::thread::sleep(ttl + StdDuration::from_millis(200));
    let renewed = store.acquire_lease(LEASE, "a", ttl).unwrap().unwrap();
    assert!(renewed > again);
    chain.height += 1;
    let next = chain.update(vec![], Some(vec![]), Some(t(4)));
    assert!(matches!(
        store.apply_scan_fenced(&policy, &next, t(4), Some(&fence(again))),
        Err(StoreError::Fenced { .. })
    ));
    store
        .apply_scan_fenced(&policy, &next, t(4), Some(&fence(renewed)))
        .unwrap();
}

/// A table no migration made: every statement on it fails.
const MISSING: TableDef<Str, U64> = TableDef::new("no_such_table");

#[test]
fn a_failed_statement_never_lets_its_transaction_commit() {
    let store = Place::postgres().open();
    // The code ignores an error (as a careless caller could); PostgreSQL
    // has aborted the transaction, so the commit must not report success.
    let outcome = store.write(|tx| {
        let mut counts = tx.txn().open_table(PAGED)?;
        counts.insert("before", 1)?;
        let _ignored = tx.txn().open_table(MISSING)?.get("x");
        Ok(())
    });
    assert!(
        outcome.is_err(),
        "a transaction with a failed statement was reported committed"
    );
    let r = store.read().unwrap();
    let counts = r.open_table(PAGED).unwrap();
    assert!(counts.get("before").unwrap().is_none(), "nothing of it was stored");
    drop(counts);
    drop(r);
    // The connection is usable again for the next transaction.
    store
        .write(|tx| tx.txn().open_table(PAGED)?.insert("later", 3))
        .unwrap();
    let r = store.read().unwrap();
    assert_eq!(
        r.open_table(PAGED).unwrap().get("later").unwrap().map(|v| v.value()),
        Some(3)
    );
}

const PAGED: TableDef<Str, U64> = TableDef::new("counts");

#[test]
fn ranges_longer_than_a_page_read_the_same_both_ways() {
    let store = Place::postgres().open();
    let mut model = BTreeMap::new();
    store
        .write(|tx| {
            let mut t = tx.txn().open_table(PAGED)?;
            for n in 0..700u64 {
                // Keys of varying length, so byte order matters.
                let key = format!("k/{}{}/{n}", n % 37, "x".repeat((n % 5) as usize));
                t.insert(key.as_str(), n)?;
                model.insert(key, n);
            }
            Ok(())
        })
        .unwrap();
    let r = store.read().unwrap();
    let t = r.open_table(PAGED).unwrap();
    let read = |forward: bool, low: &str, high: &str| -> Vec<(String, u64)> {
        let range = t.range(low..high).unwrap();
        let pairs = range.map(|e| {
            let (k, v) = e.unwrap();
            (k.value().to_string(), v.value())
        });
        if forward {
            pairs.collect()
        } else {
            pairs.rev().collect()
        }
    };
    assert_eq!(model.len(), 700);
    for (low, high) in [("k/", "k0"), ("k/1", "k/3"), ("k/20x", "k/36xxxx"), ("a", "z")] {
        let expected: Vec<(String, u64)> = model
            .range(low.to_string()..high.to_string())
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        assert!(
            expected.len() > 256 || low == "k/20x",
            "{low}..{high} spans several pages"
        );
        assert_eq!(read(true, low, high), expected, "{low}..{high}");
        let mut backwards = expected.clone();
        backwards.reverse();
        assert_eq!(read(false, low, high), backwards, "{low}..{high} reversed");
    }
    assert_eq!(t.len().unwrap(), model.len() as u64);
    assert_eq!(
        t.last().unwrap().map(|(k, _)| k.value().to_string()),
        model.keys().last().cloned()
    );
    drop(t);
    drop(r);

    // Inclusive and exclusive bounds, inside a write transaction that
    // changed the table first, and a removed range.
    store
        .write(|tx| {
            let mut t = tx.txn().open_table(PAGED)?;
            t.remove_range("k/1".."k/2")?;
            t.insert("k/15/extra", 9_999)?;
            let inclusive: Vec<String> = t
                .range("k/0"..="k/15/extra")?
                .map(|e| e.map(|(k, _)| k.value().to_string()))
                .collect::<Result<_, _>>()?;
            let mut expected: Vec<String> = model
                .keys()
                .filter(|k| k.as_str() >= "k/0" && k.as_str() < "k/1")
                .cloned()
                .collect();
            expected.push("k/15/extra".into());
            assert_eq!(inclusive, expected);
            let after: Vec<String> = t
                .range((std::ops::Bound::Excluded("k/15/extra"), std::ops::Bound::Unbounded))?
                .rev()
                .map(|e| e.map(|(k, _)| k.value().to_string()))
                .collect::<Result<_, _>>()?;
            let mut expected: Vec<String> = model.keys().filter(|k| k.as_str() >= "k/2").cloned().collect();
            expected.reverse();
            assert_eq!(after, expected);
            Ok(())
        })
        .unwrap();
    let removed = model
        .keys()
        .filter(|k| k.as_str() >= "k/1" && k.as_str() < "k/2")
        .count() as u64;
    let r = store.read().unwrap();
    assert_eq!(r.open_table(PAGED).unwrap().len().unwrap(), 700 - removed + 1);
}

#[test]
fn a_lease_taken_by_one_instance_is_seen_live_by_another_until_released() {
    let place = Place::postgres();
    let (one, other) = (place.open(), place.open());
    assert!(!other.lease_live("creates/BTC").unwrap());
    let fence = one
        .acquire_lease("creates/BTC", "one", StdDuration::from_secs(30))
        .unwrap()
        .unwrap();
    assert!(other.lease_live("creates/BTC").unwrap());
    assert!(!other.lease_live("creates/LTC").unwrap(), "per name");
    one.release_lease("creates/BTC", "one", fence).unwrap();
    assert!(!other.lease_live("creates/BTC").unwrap());
}
