//! Creates per second taking addresses from a configured pool, at pool
//! sizes 1,000, 20,000 and 100,000, with half of each pool held by open
//! intents (so a create cannot find its address at the pool's start).
//! `cargo bench -p paywatch-state --bench pool`. Prints the figures.
//!
//! Creates are measured one per durable commit (what a lone API create
//! costs) and in groups of 100 per commit (the intent writer under load).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use chrono::{DateTime, Utc};
use paywatch_state::{Asset, AssetPolicy, BlockRef, ChainTip, CreateOutcome, NewIntent, ScanUpdate, Store};

fn request() -> NewIntent {
    NewIntent {
        asset: Asset::Ltc,
        amount: "0.1".parse().unwrap(),
        external_id: None,
        metadata: serde_json::Value::Null,
        expires_in: None,
        confirmations: None,
        address: None,
        tag: None,
        fiat: None,
    }
}

/// A store whose LTC pool has `size` addresses, the first half held.
fn prepared(size: usize, dir: &std::path::Path, now: DateTime<Utc>) -> (Store, AssetPolicy) {
    let store = Store::open(&dir.join("bench.redb")).unwrap();
    let pool = (0..size).map(|i| format!("ltc1qpool{i:08}")).collect();
    let policy = AssetPolicy::defaults(Asset::Ltc, pool);
    let tip = BlockRef {
        height: 100,
        hash: "h100".into(),
    };
    let first = ScanUpdate {
        asset: Asset::Ltc,
        from: None,
        rollback_to: None,
        blocks: vec![tip.clone()],
        observations: vec![],
        mempool: None,
        tip: ChainTip {
            height: 100,
            hash: tip.hash.clone(),
            finalized: None,
        },
        cursor: tip,
        round_started_at: Some(now),
        watch_generation: None,
    };
    store.apply_scan(&policy, &first, now).unwrap();
    let mut held = 0;
    while held < size / 2 {
        let group = (size / 2 - held).min(1_000);
        let answers = store
            .create_intents((0..group).map(|_| (&policy, request())).collect(), now)
            .unwrap();
        assert!(answers.iter().all(|a| matches!(a, Ok(CreateOutcome::Created(_)))));
        held += group;
    }
    (store, policy)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("pool: a benchmark; run it with `cargo bench -p paywatch-state --bench pool`");
        return;
    }
    let now = Utc::now();
    // POOL_SIZES=1000,20000 to measure only some.
    let sizes: Vec<usize> = std::env::var("POOL_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 20_000, 100_000]);
    for size in sizes {
        let dir = tempfile::tempdir().unwrap();
        let (store, policy) = prepared(size, dir.path(), now);
        let lone = 100;
        let t = Instant::now();
        for _ in 0..lone {
            assert!(matches!(
                store.create_intent(&policy, request(), now),
                Ok(CreateOutcome::Created(_))
            ));
        }
        let one_per_commit = lone as f64 / t.elapsed().as_secs_f64();
        let (groups, group) = (3, 100);
        let t = Instant::now();
        for _ in 0..groups {
            let answers = store
                .create_intents((0..group).map(|_| (&policy, request())).collect(), now)
                .unwrap();
            assert!(answers.iter().all(|a| matches!(a, Ok(CreateOutcome::Created(_)))));
        }
        let in_groups = (groups * group) as f64 / t.elapsed().as_secs_f64();
        println!(
            "pool of {size}: {one_per_commit:.0} creates/s one per commit, {in_groups:.0} creates/s in groups of {group} (half the pool held)"
        );
    }
}
