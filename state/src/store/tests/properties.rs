//! The property test: random sequences of create / observe / revert / mine
//! / expire / cancel / restart never break the invariants.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use rust_decimal::Decimal;

use super::*;

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
        let dir = Place::new();
        let mut store = dir.open();
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
                    store = dir.open();
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
