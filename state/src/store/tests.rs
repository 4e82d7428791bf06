//! Store scenarios and property tests: random sequences of create / observe /
//! revert / mine / expire / cancel / restart never break the invariants.

#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use rust_decimal::Decimal;

use super::*;
use crate::model::*;
use crate::scan::{AssetPolicy, MempoolView, Observation, ScanUpdate};
use crate::{CancelOutcome, CreateOutcome, MatchMode, NewIntent};

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

fn setup(policy: &AssetPolicy) -> (tempfile::TempDir, Store, Chain) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
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
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    assert!(matches!(
        store.create_intent(&policy, new_intent(crate::Asset::Ltc, "1"), t(1)),
        Err(CreateError::AssetNotReady(_))
    ));
}

// --- property test -----------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Create {
        amount: u8,
    },
    /// Pay the n-th intent ever created (modulo), `parts` tenths of its amount.
    Pay {
        nth: u8,
        tenths: u8,
        mempool: bool,
    },
    /// Pay an address no intent owns.
    Stray,
    Mine {
        blocks: u8,
    },
    /// Drop a random mempool transaction (evicted / replaced).
    Evict {
        nth: u8,
    },
    /// Reorg the last `depth` blocks away; their transfers are not re-mined.
    Reorg {
        depth: u8,
    },
    Cancel {
        nth: u8,
    },
    /// Let time pass and complete a round (may expire intents).
    Advance {
        minutes: u8,
    },
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u8..5).prop_map(|amount| Op::Create { amount }),
        4 => (any::<u8>(), 1u8..15, any::<bool>()).prop_map(|(nth, tenths, mempool)| Op::Pay { nth, tenths, mempool }),
        1 => Just(Op::Stray),
        3 => (1u8..4).prop_map(|blocks| Op::Mine { blocks }),
        1 => any::<u8>().prop_map(|nth| Op::Evict { nth }),
        1 => (1u8..3).prop_map(|depth| Op::Reorg { depth }),
        1 => any::<u8>().prop_map(|nth| Op::Cancel { nth }),
        2 => (1u8..40).prop_map(|minutes| Op::Advance { minutes }),
        1 => Just(Op::Restart),
    ]
}

/// The "chain": transactions with the height they were mined at (None: mempool).
struct Sim {
    reported: HashSet<String>,
    txs: Vec<(Observation, Option<u64>)>,
    height: u64,
    cursor: BlockRef,
    now: DateTime<Utc>,
    intents: Vec<String>,
    next_tx: u32,
}

impl Sim {
    fn update(&mut self, rollback_to: Option<u64>, round: bool) -> ScanUpdate {
        let from = self.cursor.clone();
        let start = rollback_to.map(|r| r + 1).unwrap_or(from.height + 1);
        let observations = self
            .txs
            .iter()
            .filter(|(_, h)| h.is_some_and(|h| h >= start && h <= self.height))
            .map(|(o, h)| Observation {
                block: Some(block(h.unwrap())),
                ..o.clone()
            })
            .collect();
        let mempool = self
            .txs
            .iter()
            .filter(|(_, h)| h.is_none())
            .map(|(o, _)| o.clone())
            .collect();
        let everywhere: Vec<Observation> = self.txs.iter().map(|(o, _)| o.clone()).collect();
        let mempool = mempool_view(&mut self.reported, mempool, &everywhere);
        let to = block(self.height);
        self.cursor = to.clone();
        ScanUpdate {
            asset: crate::Asset::Ltc,
            from: Some(from),
            rollback_to,
            blocks: (start..=self.height).map(block).collect(),
            observations,
            mempool: Some(mempool),
            watch_generation: None,
            tip: ChainTip {
                height: to.height,
                hash: to.hash.clone(),
                finalized: None,
            },
            cursor: to,
            round_started_at: round.then_some(self.now),
        }
    }
}

fn check_invariants(store: &Store, events: &[Event], now: DateTime<Utc>) {
    let (all, _) = store
        .list_intents(&crate::IntentFilter {
            limit: 10_000,
            ..Default::default()
        })
        .unwrap();
    // 1. No two intents that can still receive share a match key.
    let mut keys = HashMap::new();
    for v in &all {
        let ended_recently = matches!(
            v.status,
            IntentStatus::Expired | IntentStatus::Cancelled | IntentStatus::Confirmed
        );
        let _ = ended_recently;
        if let Some(prev) = keys.insert((v.address.clone(), v.tag), v.id.clone()) {
            // Address mode: the same address may only come back after the
            // previous holder's late window (24 h here, longer than any run).
            panic!("address {} held by both {prev} and {}", v.address, v.id);
        }
    }
    // 2. received is the sum of payments not reverted; flags follow from it.
    for v in &all {
        let sum: Decimal = v
            .payments
            .iter()
            .filter(|p| p.status != TransferStatus::Reverted)
            .map(|p| p.amount)
            .sum();
        assert_eq!(v.received, sum, "{}", v.id);
        assert_eq!(
            v.flags.contains(&Flag::Underpaid),
            sum > Decimal::ZERO && sum < v.pay_amount
        );
        if v.status == IntentStatus::Confirmed {
            assert!(v.confirmed_at.is_some());
        }
        if v.status == IntentStatus::Awaiting {
            assert!(
                v.payments
                    .iter()
                    .all(|p| p.status == TransferStatus::Reverted || p.late)
            );
        }
    }
    // 3. The event log: seq strictly increasing with no gap; per intent,
    //    transitions alternate legally and terminal ones happen once.
    let mut per_intent: HashMap<String, Vec<EventType>> = HashMap::new();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1);
        if let Some(v) = &e.intent {
            per_intent.entry(v.id.clone()).or_default().push(e.kind);
        }
    }
    for (id, seq) in per_intent {
        let mut status = IntentStatus::Awaiting;
        for kind in seq {
            status = match (status, kind) {
                (IntentStatus::Awaiting, EventType::IntentDetected) => IntentStatus::Detected,
                (IntentStatus::Detected, EventType::IntentReverted) => IntentStatus::Awaiting,
                (IntentStatus::Detected, EventType::IntentConfirmed) => IntentStatus::Confirmed,
                (IntentStatus::Awaiting | IntentStatus::Detected, EventType::IntentExpired) => IntentStatus::Expired,
                (IntentStatus::Awaiting, EventType::IntentCancelled) => IntentStatus::Cancelled,
                (s, EventType::IntentPaidLate | EventType::TransferConfirmed | EventType::TransferReverted)
                    if !s.is_open() =>
                {
                    s
                }
                (s, k) => panic!("{id}: illegal {k:?} while {s:?}"),
            };
        }
        let stored = all.iter().find(|v| v.id == id).unwrap().status;
        assert_eq!(stored, status, "{id}: events and state agree");
    }
    let counts = store.intent_counts().unwrap();
    for st in IntentStatus::ALL {
        let n = counts
            .iter()
            .filter(|(_, s, _)| *s == st)
            .map(|(_, _, n)| *n)
            .sum::<u64>();
        assert_eq!(
            n,
            all.iter().filter(|v| v.status == st).count() as u64,
            "count of {st:?}"
        );
    }
    let _ = now;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]
    #[test]
    fn random_histories_keep_the_invariants(ops in proptest::collection::vec(op(), 1..60)) {
        let addresses: Vec<String> = (0..6).map(|i| format!("A{i}")).collect();
        let mut policy = AssetPolicy::defaults(crate::Asset::Ltc, addresses);
        policy.confirmations = 2;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut store = Store::open(&path).unwrap();
        store.set_webhooks_enabled(true).unwrap();
        let mut sim = Sim { reported: HashSet::new(), txs: vec![], height: 100, cursor: block(100), now: t(0), intents: vec![], next_tx: 0 };
        let first = ScanUpdate { from: None, ..sim.update(None, true) };
        store.apply_scan(&policy, &first, sim.now).unwrap();
        for op in ops {
            sim.now += Duration::seconds(10);
            match op {
                Op::Create { amount } => {
                    if let Ok(CreateOutcome::Created(v)) = store.create_intent(&policy, new_intent(crate::Asset::Ltc, &amount.to_string()), sim.now) {
                        sim.intents.push(v.id);
                    }
                }
                Op::Pay { nth, tenths, mempool } => {
                    if sim.intents.is_empty() { continue; }
                    let id = &sim.intents[nth as usize % sim.intents.len()];
                    let v = store.intent(id).unwrap().unwrap();
                    sim.next_tx += 1;
                    let amount = v.pay_amount * Decimal::from(tenths) / Decimal::from(10);
                    let o = Observation { amount: crate::amount::at_asset_scale(crate::Asset::Ltc, amount).round_dp(8), ..obs(&format!("tx{}", sim.next_tx), &v.address, "1", None) };
                    let h = if mempool { None } else { sim.height += 1; Some(sim.height) };
                    sim.txs.push((o, h));
                }
                Op::Stray => {
                    sim.next_tx += 1;
                    sim.txs.push((obs(&format!("tx{}", sim.next_tx), "Z", "1", None), None));
                }
                Op::Mine { blocks } => {
                    sim.height += u64::from(blocks);
                    let h = sim.height;
                    for (_, mined) in sim.txs.iter_mut().filter(|(_, m)| m.is_none()) { *mined = Some(h); }
                }
                Op::Evict { nth } => {
                    let pending: Vec<usize> = sim.txs.iter().enumerate().filter(|(_, (_, h))| h.is_none()).map(|(i, _)| i).collect();
                    if !pending.is_empty() { sim.txs.remove(pending[nth as usize % pending.len()]); }
                }
                Op::Reorg { depth } => {
                    let fork = sim.height.saturating_sub(u64::from(depth)).max(101);
                    if fork >= sim.height { continue; }
                    sim.txs.retain(|(_, h)| h.is_none_or(|h| h <= fork));
                    sim.height += 1; // the new branch is one block longer, empty
                    let u = sim.update(Some(fork), false);
                    store.apply_scan(&policy, &u, sim.now).unwrap();
                    continue;
                }
                Op::Cancel { nth } => {
                    if sim.intents.is_empty() { continue; }
                    let id = sim.intents[nth as usize % sim.intents.len()].clone();
                    store.cancel_intent(&id, sim.now).unwrap();
                }
                Op::Advance { minutes } => {
                    sim.now += Duration::minutes(i64::from(minutes));
                }
                Op::Restart => {
                    drop(store);
                    store = Store::open(&path).unwrap();
                }
            }
            let u = sim.update(None, true);
            store.apply_scan(&policy, &u, sim.now).unwrap();
            let events = store.events_after(0, 100_000).unwrap();
            check_invariants(&store, &events, sim.now);
        }
        let backlog = store.outbox_stats().unwrap().backlog;
        prop_assert_eq!(backlog, store.last_seq().unwrap(), "every event has its outbox entry");
    }
}

struct FakeDeriver;

impl crate::AddressDeriver for FakeDeriver {
    fn derive(&self, index: u32) -> Result<String, String> {
        Ok(format!("D{index}"))
    }
    fn id(&self) -> String {
        "fake".into()
    }
}

#[test]
fn derived_addresses_are_never_handed_out_twice() {
    let mut policy = AssetPolicy::defaults(crate::Asset::Btc, vec!["POOL".into()]);
    policy.deriver = Some(crate::Deriver(std::sync::Arc::new(FakeDeriver)));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut chain = Chain::new(policy.clone());
    {
        let store = Store::open(&path).unwrap();
        store
            .apply_scan(&policy, &chain.update(vec![], Some(vec![]), None), t(0))
            .unwrap();
        let a = created(store.create_intent(&policy, new_intent(crate::Asset::Btc, "1"), t(1)));
        let b = created(store.create_intent(&policy, new_intent(crate::Asset::Btc, "1"), t(1)));
        assert_eq!((a.address.as_str(), b.address.as_str()), ("D0", "D1"));
        // An intent given D3 explicitly: derivation skips it later.
        let mut explicit = new_intent(crate::Asset::Btc, "1");
        explicit.address = Some("D3".into());
        created(store.create_intent(&policy, explicit, t(1)));
        // Cancelled long ago: still never reused.
        store.cancel_intent(&a.id, t(2)).unwrap();
    }
    let store = Store::open(&path).unwrap();
    let later = t(2) + Duration::days(10);
    let next: Vec<String> = (0..3)
        .map(|_| created(store.create_intent(&policy, new_intent(crate::Asset::Btc, "1"), later)).address)
        .collect();
    assert_eq!(next, ["D2", "D4", "D5"]);
    assert!(
        store
            .watched_addresses(crate::Asset::Btc)
            .unwrap()
            .contains(&"D5".to_string())
    );
}

#[test]
fn a_group_commit_keeps_every_answer_as_if_alone() {
    let mut policy = AssetPolicy::defaults(crate::Asset::UsdtTrc20, vec!["T1".into()]);
    policy.match_mode = MatchMode::Amount;
    let (_dir, store, _chain) = setup(&policy);
    let mut with_ext = new_intent(crate::Asset::UsdtTrc20, "5");
    with_ext.external_id = Some("order-7".into());
    let mut conflicting = with_ext.clone();
    conflicting.amount = d("6.000000");
    let batch = vec![
        (&policy, new_intent(crate::Asset::UsdtTrc20, "10")),
        (&policy, new_intent(crate::Asset::UsdtTrc20, "10")),
        (&policy, with_ext.clone()),
        (&policy, with_ext),
        (&policy, conflicting),
    ];
    let answers = store.create_intents(batch, t(1)).unwrap();
    let created: Vec<IntentView> = answers[..3]
        .iter()
        .map(|a| match a {
            Ok(CreateOutcome::Created(v)) => v.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        (created[0].pay_amount, created[1].pay_amount),
        (d("10.000000"), d("10.010000")),
        "unique within the batch"
    );
    assert!(
        matches!(&answers[3], Ok(CreateOutcome::Existing(v)) if v.id == created[2].id),
        "idempotent within the batch"
    );
    assert!(matches!(&answers[4], Err(CreateError::ExternalIdConflict(_))));
    assert_eq!(store.intent_counts().unwrap().iter().map(|(_, _, n)| n).sum::<u64>(), 3);
}

#[test]
fn a_scan_computed_before_an_address_was_watched_is_refused() {
    let mut policy = AssetPolicy::defaults(crate::Asset::Btc, vec!["POOL".into()]);
    policy.deriver = Some(crate::Deriver(std::sync::Arc::new(FakeDeriver)));
    let (_dir, store, mut chain) = setup(&policy);
    store.watch_addresses(crate::Asset::Btc, &policy.addresses).unwrap();
    let (generation, watched) = store.watched_snapshot(crate::Asset::Btc).unwrap();
    assert_eq!(watched, ["POOL"]);
    let intent = created(store.create_intent(&policy, new_intent(crate::Asset::Btc, "1"), t(1)));
    let (newer, added) = store.watched_since(crate::Asset::Btc, generation).unwrap();
    assert_eq!((newer, added), (generation + 1, vec![intent.address.clone()]));
    chain.height += 1;
    let mut stale = chain.update(vec![obs("tx1", &intent.address, "1", Some(chain.height))], None, None);
    stale.watch_generation = Some(generation);
    assert!(matches!(
        store.apply_scan(&policy, &stale, t(2)),
        Err(StoreError::WatchChanged { expected, found, .. }) if expected == generation && found == newer
    ));
    stale.watch_generation = Some(newer);
    let events = store.apply_scan(&policy, &stale, t(2)).unwrap();
    assert_eq!(kinds(&events), [EventType::IntentDetected]);
}

#[test]
fn dust_is_recorded_unmatched_and_silent_but_an_older_small_intent_still_gets_paid() {
    let mut policy = AssetPolicy::defaults(crate::Asset::UsdtTrc20, vec!["T1".into()]);
    policy.mempool = false;
    let (_dir, store, mut chain) = setup(&policy);
    // Created while the minimum was lower (before an upgrade raised it).
    policy.min_amount = d("0.01");
    let small = created(store.create_intent(&policy, new_intent(crate::Asset::UsdtTrc20, "0.05"), t(1)));
    policy.min_amount = d("0.1");
    chain.height += 1;
    let h = chain.height;
    let ev = store
        .apply_scan(
            &policy,
            &chain.update(
                vec![
                    obs("dust", "T1", "0.000001", Some(h)),
                    obs("pay", "T1", "0.05", Some(h)),
                ],
                None,
                None,
            ),
            t(2),
        )
        .unwrap();
    assert_eq!(kinds(&ev), [EventType::IntentDetected, EventType::IntentConfirmed]);
    assert_eq!(
        store.intent(&small.id).unwrap().unwrap().status,
        IntentStatus::Confirmed
    );
    let (all, _) = store
        .list_transfers(&TransferFilter {
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    let dust = all.iter().find(|t| t.txid == "dust").unwrap();
    assert!(dust.dust && dust.intent_id.is_none());
}

#[test]
fn a_confirmed_payment_reverted_by_a_deep_reorg_and_mined_again_is_announced_both_ways() {
    let mut policy = AssetPolicy::defaults(crate::Asset::UsdtTrc20, vec!["T1".into()]);
    policy.mempool = false;
    let (_dir, store, mut chain) = setup(&policy);
    let intent = created(store.create_intent(&policy, new_intent(crate::Asset::UsdtTrc20, "10"), t(1)));
    chain.height = 101;
    let ev = store
        .apply_scan(
            &policy,
            &chain.update(vec![obs("x", "T1", "10", Some(101))], None, None),
            t(2),
        )
        .unwrap();
    assert_eq!(kinds(&ev), [EventType::IntentDetected, EventType::IntentConfirmed]);
    // A reorg deeper than its depth removes it: the money left.
    chain.height = 102;
    let mut u = chain.update(vec![], None, None);
    u.rollback_to = Some(100);
    let ev = store.apply_scan(&policy, &u, t(3)).unwrap();
    assert_eq!(kinds(&ev), [EventType::TransferReverted]);
    assert_eq!(ev[0].intent.as_ref().unwrap().id, intent.id);
    // Mined again: it is that payment, back and confirmed, said once.
    chain.height = 103;
    let ev = store
        .apply_scan(
            &policy,
            &chain.update(vec![obs("x", "T1", "10", Some(103))], None, None),
            t(4),
        )
        .unwrap();
    assert_eq!(kinds(&ev), [EventType::TransferConfirmed]);
    chain.height = 104;
    let ev = store
        .apply_scan(&policy, &chain.update(vec![], None, None), t(5))
        .unwrap();
    assert!(ev.is_empty(), "announced once");
    let v = store.intent(&intent.id).unwrap().unwrap();
    assert_eq!(
        (v.status, v.payments[0].status, v.payments[0].late),
        (IntentStatus::Confirmed, TransferStatus::Confirmed, false)
    );
}
