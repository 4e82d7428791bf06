//! Applying deposits to one deposit account as it grows: each deposit's
//! event carries the account's totals, so their cost must not grow with
//! the deposits already recorded. Scan steps of 100 new deposits (each a
//! `deposit.detected`, then a `deposit.confirmed` a step later) into an
//! account holding 0, 10,000 and 50,000 deposits (`ACCOUNT_SIZES`).
//! `cargo bench -p paywatch-state --bench deposits`. Prints the figures.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use chrono::Utc;
use paywatch_state::{
    AccountOutcome, Asset, AssetPolicy, BlockRef, ChainTip, MatchMode, NewAccount, Observation, ScanUpdate, Store,
};

const STEP: usize = 100;

struct Chain {
    policy: AssetPolicy,
    cursor: Option<BlockRef>,
    seed: u64,
}

impl Chain {
    fn block(h: u64) -> BlockRef {
        BlockRef {
            height: h,
            hash: format!("h{h}"),
        }
    }

    /// One block with `n` deposits to `address`; confirmations 1, so the
    /// deposits of a step confirm as they are seen.
    fn step(&mut self, address: &str, n: usize) -> ScanUpdate {
        let height = self.cursor.as_ref().map(|c| c.height + 1).unwrap_or(100);
        let to = Chain::block(height);
        let observations = (0..n)
            .map(|_| {
                self.seed += 1;
                Observation {
                    txid: format!("{:064x}", self.seed),
                    index: 0,
                    address: address.to_string(),
                    tag: None,
                    amount: "0.01".parse().unwrap(),
                    block: Some(to.clone()),
                    maturity: 0,
                }
            })
            .collect();
        let update = ScanUpdate {
            asset: self.policy.asset,
            from: self.cursor.clone(),
            rollback_to: None,
            blocks: vec![to.clone()],
            observations,
            mempool: None,
            tip: ChainTip {
                height,
                hash: to.hash.clone(),
                finalized: None,
            },
            cursor: to.clone(),
            round_started_at: None,
            watch_generation: None,
        };
        self.cursor = Some(to);
        update
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("deposits: a benchmark; run it with `cargo bench -p paywatch-state --bench deposits`");
        return;
    }
    let now = Utc::now();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("bench.redb")).unwrap();
    let mut policy = AssetPolicy::defaults(Asset::Ltc, vec!["ltc1qaccount".into()]);
    policy.match_mode = MatchMode::Address;
    policy.confirmations = 1;
    policy.mempool = false;
    let mut chain = Chain {
        policy: policy.clone(),
        cursor: None,
        seed: 0,
    };
    store.apply_scan(&policy, &chain.step("none", 0), now).unwrap();
    let account = match store
        .create_account(
            &policy,
            NewAccount {
                asset: Asset::Ltc,
                external_id: "customer".into(),
                metadata: serde_json::json!({}),
            },
            now,
        )
        .unwrap()
    {
        AccountOutcome::Created(a) => a,
        other => panic!("{other:?}"),
    };
    let mut recorded = 0;
    // ACCOUNT_SIZES=0,2000 to measure only some.
    let sizes: Vec<usize> = std::env::var("ACCOUNT_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![0, 10_000, 50_000]);
    for target in sizes {
        while recorded < target {
            store
                .apply_scan(&policy, &chain.step(&account.address, 1_000), now)
                .unwrap();
            recorded += 1_000;
        }
        let steps = 10;
        let t = Instant::now();
        let mut events = 0;
        for _ in 0..steps {
            events += store
                .apply_scan(&policy, &chain.step(&account.address, STEP), now)
                .unwrap()
                .len();
        }
        let elapsed = t.elapsed().as_secs_f64();
        recorded += steps * STEP;
        assert_eq!(events, 2 * steps * STEP, "a detected and a confirmed per deposit");
        println!(
            "account holding {target}: {:.1} ms per step of {STEP} deposits ({:.0} deposits/s, {events} events)",
            elapsed * 1000.0 / steps as f64,
            (steps * STEP) as f64 / elapsed
        );
    }
    let view = store.account(&account.id).unwrap().unwrap();
    assert_eq!(view.deposits, recorded as u64);
}
