//! Store scenarios: the lifecycle through scans, with a tiny chain model
//! that produces updates as a source would; the property test and the
//! address scenarios are in the submodules.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;

use super::*;
use crate::model::*;
use crate::scan::{AssetPolicy, MempoolView, Observation, ScanUpdate};
use crate::{CancelOutcome, CreateOutcome, MatchMode, NewIntent};

/// Where a test's store lives: a redb file in a temporary directory, or,
/// with `PAYWATCH_TEST_STORE=postgres`, a fresh PostgreSQL database (the
/// same scenarios run against both stores). `open` opens it, again after a
/// simulated restart.
struct Place {
    dir: tempfile::TempDir,
    postgres: Option<String>,
}

impl Place {
    fn new() -> Place {
        Place {
            dir: tempfile::tempdir().unwrap(),
            postgres: paywatch_testenv::postgres::selected()
                .then(|| paywatch_testenv::postgres::server().fresh_database()),
        }
    }

    /// Always PostgreSQL: for what only that store has.
    fn postgres() -> Place {
        Place {
            dir: tempfile::tempdir().unwrap(),
            postgres: Some(paywatch_testenv::postgres::server().fresh_database()),
        }
    }

    fn open(&self) -> Store {
        match &self.postgres {
            Some(url) => Store::open_postgres(PgOptions::parse(url, None).unwrap()).unwrap(),
            None => Store::open(&self.dir.path().join("db")).unwrap(),
        }
    }
}

fn t(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
}

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn block(h: u64) -> BlockRef {
    BlockRef {
        height: h,
        hash: format!("hash{h}"),
    }
}

/// A tiny chain model that produces updates like a source would.
struct Chain {
    policy: AssetPolicy,
    height: u64,
    cursor: Option<BlockRef>,
    /// Every txid reported so far: one missing from a later mempool view
    /// (and from the blocks) is reported gone, as a node asked for it would.
    reported: HashSet<String>,
}

/// A mempool view as a source with a whole mempool reports it: every txid
/// reported before and absent now (from the mempool and the blocks) is gone.
fn mempool_view(reported: &mut HashSet<String>, mempool: Vec<Observation>, mined: &[Observation]) -> MempoolView {
    let now: HashSet<String> = mempool.iter().chain(mined).map(|o| o.txid.clone()).collect();
    let gone = reported.difference(&now).cloned().collect();
    reported.extend(now);
    MempoolView {
        transfers: mempool,
        gone,
    }
}

impl Chain {
    fn new(policy: AssetPolicy) -> Chain {
        Chain {
            policy,
            height: 100,
            cursor: None,
            reported: HashSet::new(),
        }
    }

    fn update(
        &mut self,
        observations: Vec<Observation>,
        mempool: Option<Vec<Observation>>,
        round: Option<DateTime<Utc>>,
    ) -> ScanUpdate {
        let from = self.cursor.clone();
        let to = block(self.height);
        let blocks = match &from {
            Some(f) => ((f.height + 1)..=self.height).map(block).collect(),
            None => vec![],
        };
        self.cursor = Some(to.clone());
        let mempool = mempool.map(|m| mempool_view(&mut self.reported, m, &observations));
        ScanUpdate {
            asset: self.policy.asset,
            from,
            rollback_to: None,
            blocks,
            observations,
            mempool,
            watch_generation: None,
            tip: ChainTip {
                height: to.height,
                hash: to.hash.clone(),
                finalized: None,
            },
            cursor: to,
            round_started_at: round,
        }
    }
}

fn obs(txid: &str, address: &str, amount: &str, height: Option<u64>) -> Observation {
    Observation {
        txid: txid.into(),
        index: 0,
        address: address.into(),
        tag: None,
        amount: d(amount),
        block: height.map(block),
        maturity: 0,
    }
}

fn new_intent(asset: crate::Asset, amount: &str) -> NewIntent {
    NewIntent {
        asset,
        amount: crate::amount::parse_amount(asset, amount).unwrap(),
        external_id: None,
        metadata: serde_json::json!({}),
        expires_in: None,
        confirmations: None,
        address: None,
        tag: None,
        fiat: None,
    }
}

fn created(outcome: Result<CreateOutcome, CreateError>) -> IntentView {
    match outcome {
        Ok(CreateOutcome::Created(v)) => v,
        other => panic!("expected a new intent, got {other:?}"),
    }
}

fn kinds(events: &[Event]) -> Vec<EventType> {
    events.iter().map(|e| e.kind).collect()
}

fn setup(policy: &AssetPolicy) -> (Place, Store, Chain) {
    let dir = Place::new();
    let store = dir.open();
    store.set_webhooks_enabled(true).unwrap();
    let mut chain = Chain::new(policy.clone());
    store
        .apply_scan(policy, &chain.update(vec![], Some(vec![]), Some(t(0))), t(0))
        .unwrap();
    (dir, store, chain)
}

#[test]
fn payment_detected_in_mempool_then_confirmed() {
    let policy = AssetPolicy::defaults(crate::Asset::Ltc, vec!["A1".into(), "A2".into()]);
    let (_dir, store, mut chain) = setup(&policy);
    let intent = created(store.create_intent(&policy, new_intent(crate::Asset::Ltc, "1.5"), t(1)));
    assert_eq!(intent.address, "A1");
    let p = obs("tx1", "A1", "1.5", None);
    let ev = store
        .apply_scan(&policy, &chain.update(vec![], Some(vec![p.clone()]), Some(t(2))), t(2))
        .unwrap();
    assert_eq!(kinds(&ev), [EventType::IntentDetected]);
    assert_eq!(ev[0].intent.as_ref().unwrap().status, IntentStatus::Detected);
    assert_eq!(ev[0].transfer.as_ref().unwrap().txid, "tx1");
    chain.height = 101;
    let mined = obs("tx1", "A1", "1.5", Some(101));
    let ev = store
        .apply_scan(&policy, &chain.update(vec![mined], Some(vec![]), Some(t(3))), t(3))
        .unwrap();
    assert!(ev.is_empty(), "1 of 6 confirmations: {ev:?}");
    chain.height = 106;
    let ev = store
        .apply_scan(&policy, &chain.update(vec![], Some(vec![]), Some(t(4))), t(4))
        .unwrap();
    assert_eq!(kinds(&ev), [EventType::IntentConfirmed]);
    let v = store.intent(&intent.id).unwrap().unwrap();
    assert_eq!(
        (v.status, v.confirmations, v.received),
        (IntentStatus::Confirmed, 6, d("1.50000000"))
    );
    assert_eq!(v.payments[0].status, TransferStatus::Confirmed);
    // Replaying the same data changes nothing.
    chain.cursor = Some(block(100));
    chain.height = 106;
    let again = obs("tx1", "A1", "1.5", Some(101));
    let ev = store.apply_scan(&policy, &chain.update(vec![again], Some(vec![]), Some(t(5))), t(5));
    assert!(
        matches!(ev, Err(StoreError::CursorMoved { .. })),
        "a stale update is refused"
    );
}

#[test]
fn evicted_mempool_payment_reverts_to_awaiting() {
    let policy = AssetPolicy::defaults(crate::Asset::Ltc, vec!["A1".into()]);
    let (_dir, store, mut chain) = setup(&policy);
    let intent = created(store.create_intent(&policy, new_intent(crate::Asset::Ltc, "1"), t(1)));
    let p = obs("tx1", "A1", "1", None);
    store
        .apply_scan(&policy, &chain.update(vec![], Some(vec![p]), None), t(2))
        .unwrap();
    let ev = store
        .apply_scan(&policy, &chain.update(vec![], Some(vec![]), None), t(3))
        .unwrap();
    assert_eq!(kinds(&ev), [EventType::IntentReverted]);
    let v = store.intent(&intent.id).unwrap().unwrap();
    assert_eq!(
        (v.status, v.payments[0].status),
        (IntentStatus::Awaiting, TransferStatus::Reverted)
    );
    assert_eq!(v.received, d("0"));
}

#[test]
fn rollback_reverts_what_the_new_branch_lacks_and_keeps_what_it_has() {
    let mut policy = AssetPolicy::defaults(crate::Asset::UsdtTrc20, vec!["T1".into()]);
    policy.mempool = false;
    policy.confirmations = 5;
    let (_dir, store, mut chain) = setup(&policy);
    let a = created(store.create_intent(&policy, new_intent(crate::Asset::UsdtTrc20, "10"), t(1)));
    let b = created(store.create_intent(&policy, new_intent(crate::Asset::UsdtTrc20, "10"), t(1)));
    assert_eq!(
        (a.pay_amount, b.pay_amount),
        (d("10.000000"), d("10.010000")),
        "unique pay amounts"
    );
    chain.height = 102;
    let ev = store
        .apply_scan(
            &policy,
            &chain.update(
                vec![obs("x", "T1", "10", Some(101)), obs("y", "T1", "10.01", Some(102))],
                None,
                None,
            ),
            t(2),
        )
        .unwrap();
    assert_eq!(kinds(&ev), [EventType::IntentDetected, EventType::IntentDetected]);
    // Reorg: blocks 101.. replaced; only y is in the new branch (at 101).
    let mut u = chain.update(vec![obs("y", "T1", "10.01", Some(101))], None, None);
    u.rollback_to = Some(100);
    let ev = store.apply_scan(&policy, &u, t(3)).unwrap();
    assert_eq!(kinds(&ev), [EventType::IntentReverted]);
    assert_eq!(ev[0].intent.as_ref().unwrap().id, a.id);
    let bv = store.intent(&b.id).unwrap().unwrap();
    assert_eq!(
        (bv.status, bv.payments[0].block_height),
        (IntentStatus::Detected, Some(101))
    );
}

#[test]
fn expiry_needs_a_completed_scan_after_the_deadline() {
    let policy = AssetPolicy::defaults(crate::Asset::Ltc, vec!["A1".into()]);
    let (_dir, store, mut chain) = setup(&policy);
    let intent = created(store.create_intent(&policy, new_intent(crate::Asset::Ltc, "1"), t(1)));
    let deadline = intent.expires_at;
    // Time passes but no round completes (backend down): nothing expires.
    let ev = store
        .apply_scan(
            &policy,
            &chain.update(vec![], None, None),
            deadline + Duration::hours(5),
        )
        .unwrap();
    assert!(ev.is_empty());
    // A round that began before the deadline does not expire it either.
    let ev = store
        .apply_scan(
            &policy,
            &chain.update(vec![], Some(vec![]), Some(deadline - Duration::seconds(1))),
            deadline + Duration::hours(5),
        )
        .unwrap();
    assert!(ev.is_empty());
    // The payment made in time shows up in the first round after the outage.
    chain.height = 110;
    let late_seen = obs("tx1", "A1", "0.4", Some(103));
    let ev = store
        .apply_scan(
            &policy,
            &chain.update(vec![late_seen], Some(vec![]), Some(deadline + Duration::hours(5))),
            deadline + Duration::hours(5),
        )
        .unwrap();
    assert_eq!(
        kinds(&ev),
        [EventType::IntentDetected, EventType::IntentExpired],
        "underpaid: detected, then expired"
    );
    let v = store.intent(&intent.id).unwrap().unwrap();
    assert_eq!(
        (v.status, v.received.to_string(), v.flags.clone()),
        (IntentStatus::Expired, "0.40000000".into(), vec![Flag::Underpaid])
    );
}

#[test]
fn late_and_unmatched_payments_are_recorded() {
    let policy = AssetPolicy::defaults(crate::Asset::Ltc, vec!["A1".into()]);
    let (_dir, store, mut chain) = setup(&policy);
    let intent = created(store.create_intent(&policy, new_intent(crate::Asset::Ltc, "1"), t(1)));
    let CancelOutcome::Cancelled(_, events) = store.cancel_intent(&intent.id, t(2)).unwrap() else {
        panic!()
    };
    assert_eq!(kinds(&events), [EventType::IntentCancelled]);
    // The address stays reserved for the late window.
    assert!(matches!(
        store.create_intent(&policy, new_intent(crate::Asset::Ltc, "1"), t(3)),
        Err(CreateError::NoFreeAddress(_))
    ));
    let ev = store
        .apply_scan(
            &policy,
            &chain.update(vec![], Some(vec![obs("late", "A1", "1", None)]), None),
            t(4),
        )
        .unwrap();
    assert_eq!(kinds(&ev), [EventType::IntentPaidLate]);
    let v = ev[0].intent.as_ref().unwrap();
    assert_eq!(
        (v.status, v.flags.clone()),
        (IntentStatus::Cancelled, vec![Flag::PaidLate])
    );
    assert!(v.payments[0].late);
    let ev = store
        .apply_scan(
            &policy,
            &chain.update(
                vec![],
                Some(vec![obs("late", "A1", "1", None), obs("stray", "A9", "2", None)]),
                None,
            ),
            t(5),
        )
        .unwrap();
    assert_eq!(kinds(&ev), [EventType::TransferUnmatched]);
    assert_eq!(ev[0].transfer.as_ref().unwrap().intent_id, None);
    let (listed, _) = store
        .list_transfers(&TransferFilter {
            unmatched: true,
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        listed.iter().map(|t| t.txid.as_str()).collect::<Vec<_>>(),
        ["stray", "late"]
    );
    // After the late window the address is free again and payments to it no longer go to the old intent.
    let after = t(2) + Duration::hours(24) + Duration::seconds(1);
    let fresh = created(store.create_intent(&policy, new_intent(crate::Asset::Ltc, "1"), after));
    assert_eq!(fresh.address, "A1");
}

#[test]
fn idempotent_create_by_external_id() {
    let policy = AssetPolicy::defaults(crate::Asset::Ltc, vec!["A1".into(), "A2".into()]);
    let (_dir, store, _chain) = setup(&policy);
    let mut req = new_intent(crate::Asset::Ltc, "1");
    req.external_id = Some("order-1".into());
    let first = created(store.create_intent(&policy, req.clone(), t(1)));
    match store.create_intent(&policy, req.clone(), t(2)) {
        Ok(CreateOutcome::Existing(v)) => assert_eq!(v.id, first.id),
        other => panic!("{other:?}"),
    }
    req.amount = d("2.00000000");
    assert!(matches!(
        store.create_intent(&policy, req, t(3)),
        Err(CreateError::ExternalIdConflict(_))
    ));
}

#[test]
fn tags_are_never_reused() {
    let mut policy = AssetPolicy::defaults(crate::Asset::Xrp, vec!["rM".into()]);
    policy.match_mode = MatchMode::Tag;
    let (_dir, store, _chain) = setup(&policy);
    let mut req = new_intent(crate::Asset::Xrp, "5");
    req.tag = Some(4_000_000_000);
    let a = created(store.create_intent(&policy, req.clone(), t(1)));
    assert_eq!(a.tag, Some(4_000_000_000));
    assert!(matches!(
        store.cancel_intent(&a.id, t(2)).unwrap(),
        CancelOutcome::Cancelled(..)
    ));
    let much_later = t(2) + Duration::days(30);
    assert!(matches!(
        store.create_intent(&policy, req, much_later),
        Err(CreateError::TagUsed(_))
    ));
    let tags: HashSet<Option<u32>> = (0..50)
        .map(|_| created(store.create_intent(&policy, new_intent(crate::Asset::Xrp, "5"), t(3))).tag)
        .collect();
    assert_eq!(tags.len(), 50);
}

#[test]
fn nothing_is_ready_before_the_first_poll() {
    let policy = AssetPolicy::defaults(crate::Asset::Ltc, vec!["A1".into()]);
    let dir = Place::new();
    let store = dir.open();
    assert!(matches!(
        store.create_intent(&policy, new_intent(crate::Asset::Ltc, "1"), t(1)),
        Err(CreateError::AssetNotReady(_))
    ));
}

mod accounts;
mod postgres;
mod properties;
mod watching;
