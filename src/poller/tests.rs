//! A poller's rounds against a scripted source and a real store, under
//! paused time: what it applies, and when a round may expire intents.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use paywatch_chains::http::Endpoints;
use paywatch_chains::source::{BoxFuture, ChainSource, ScanBatch, ScanRequest};
use paywatch_chains::{ChainError, RecentBlocks};
use paywatch_state::{Asset, AssetPolicy, BlockRef, ChainTip, CreateOutcome, IntentStatus, NewIntent, Store};
use tokio_util::sync::CancellationToken;

use super::{PollError, Poller, PollerConfig};
use crate::clock::Clock;
use crate::engine::{AssetSetup, Engine};

/// A chain the test moves by hand: blocks by height, and the tip the
/// backend reports (which may lag the blocks it has).
struct ScriptedChain {
    blocks: Mutex<BTreeMap<u64, String>>,
    tip: Mutex<u64>,
    /// The `known` hashes of the last scan request.
    last_known: Mutex<RecentBlocks>,
    /// Scans from this height on fail (a connection lost mid-round).
    fail_scans_from: Mutex<Option<u64>>,
    /// Never called: the scripted chain answers by itself.
    endpoints: Endpoints,
}

impl ScriptedChain {
    fn new() -> ScriptedChain {
        ScriptedChain {
            blocks: Mutex::default(),
            tip: Mutex::default(),
            last_known: Mutex::default(),
            fail_scans_from: Mutex::default(),
            endpoints: Endpoints::new(vec!["http://127.0.0.1:1".into()], std::time::Duration::from_secs(1))
                .expect("endpoints"),
        }
    }

    fn grow_to(&self, height: u64) {
        let mut blocks = self.blocks.lock().unwrap_or_else(|p| p.into_inner());
        for h in 0..=height {
            blocks.entry(h).or_insert_with(|| format!("{h:064x}"));
        }
        *self.tip.lock().unwrap_or_else(|p| p.into_inner()) = height;
    }

    fn report_tip(&self, height: u64) {
        *self.tip.lock().unwrap_or_else(|p| p.into_inner()) = height;
    }

    fn hash(&self, height: u64) -> String {
        self.blocks.lock().unwrap_or_else(|p| p.into_inner())[&height].clone()
    }
}

impl ChainSource for ScriptedChain {
    fn backend(&self) -> &'static str {
        "scripted"
    }

    fn preflight(&self) -> BoxFuture<'_, Result<(), ChainError>> {
        Box::pin(async { Ok(()) })
    }

    fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    fn tip_time<'a>(
        &'a self,
        _tip: &'a ChainTip,
    ) -> BoxFuture<'a, Result<Option<chrono::DateTime<chrono::Utc>>, ChainError>> {
        Box::pin(async { Ok(None) })
    }

    fn tip(&self) -> BoxFuture<'_, Result<ChainTip, ChainError>> {
        Box::pin(async move {
            let height = *self.tip.lock().unwrap_or_else(|p| p.into_inner());
            Ok(ChainTip {
                height,
                hash: self.hash(height),
                finalized: None,
            })
        })
    }

    fn scan<'a>(&'a self, req: ScanRequest<'a>) -> BoxFuture<'a, Result<ScanBatch, ChainError>> {
        Box::pin(async move {
            *self.last_known.lock().unwrap_or_else(|p| p.into_inner()) = req.known.clone();
            let failing = *self.fail_scans_from.lock().unwrap_or_else(|p| p.into_inner());
            if failing.is_some_and(|from| req.from.height >= from) {
                return Err(ChainError::Transport {
                    url: "scripted".into(),
                    message: "connection reset".into(),
                });
            }
            let blocks: Vec<BlockRef> = (req.from.height + 1..=req.to)
                .map(|height| BlockRef {
                    height,
                    hash: self.hash(height),
                })
                .collect();
            Ok(ScanBatch {
                rollback_to: None,
                cursor: blocks.last().cloned().or_else(|| Some(req.from.clone())),
                blocks,
                observations: Vec::new(),
            })
        })
    }
}

/// A wall clock the test sets.
struct SetClock(Mutex<DateTime<Utc>>);

impl Clock for SetClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl SetClock {
    fn advance(&self, seconds: i64) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) += chrono::Duration::seconds(seconds);
    }
}

struct World {
    chain: std::sync::Arc<ScriptedChain>,
    clock: std::sync::Arc<SetClock>,
    engine: std::sync::Arc<Engine>,
    _dir: tempfile::TempDir,
}

const MAX_HEAD_AGE: std::time::Duration = std::time::Duration::from_secs(60);

fn world() -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = std::sync::Arc::new(Store::open(&dir.path().join("s.redb")).expect("store"));
    let clock = std::sync::Arc::new(SetClock(Mutex::new(Utc::now())));
    let mut policy = AssetPolicy::defaults(Asset::Ltc, vec!["POOL1".into()]);
    policy.mempool = false;
    policy.confirmations = 1;
    let setup = AssetSetup {
        policy,
        backend: "scripted",
        max_lag: std::time::Duration::from_secs(600),
        refuse_when_lagging: false,
        reads_mempool_per_address: false,
    };
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::new().expect("metrics"));
    let engine = Engine::new(store, vec![setup], metrics, clock.clone()).expect("engine");
    World {
        chain: std::sync::Arc::new(ScriptedChain::new()),
        clock,
        engine: std::sync::Arc::new(engine),
        _dir: dir,
    }
}

fn poller(w: &World) -> Poller {
    let config = PollerConfig {
        interval: std::time::Duration::from_secs(1),
        step_timeout: std::time::Duration::from_secs(30),
        max_blocks_per_poll: 10,
        mempool: false,
        backoff_initial: std::time::Duration::from_secs(1),
        backoff_max: std::time::Duration::from_secs(5),
        max_head_age: MAX_HEAD_AGE,
    };
    Poller::new(Asset::Ltc, w.chain.clone(), w.engine.clone(), config)
}

async fn create(w: &World, expires_in: u64) -> String {
    let request = NewIntent {
        asset: Asset::Ltc,
        amount: "0.1".parse().expect("amount"),
        external_id: None,
        metadata: serde_json::Value::Null,
        expires_in: Some(expires_in),
        confirmations: None,
        address: None,
        tag: None,
        fiat: None,
    };
    match w.engine.create_intent(request).await.expect("created") {
        CreateOutcome::Created(view) | CreateOutcome::Existing(view) => view.id,
    }
}

fn status(w: &World, id: &str) -> IntentStatus {
    w.engine.store.intent(id).expect("read").expect("the intent").status
}

#[tokio::test(start_paused = true)]
async fn a_catch_up_applies_every_step_with_the_stored_hashes_below_its_cursor() {
    let w = world();
    let poller = poller(&w);
    let cancel = CancellationToken::new();
    w.chain.grow_to(100);
    poller.poll_once(&cancel).await.expect("first round");
    assert_eq!(
        w.engine.cursor(Asset::Ltc).expect("cursor").map(|c| c.height),
        Some(100)
    );
    w.chain.grow_to(125);
    let report = poller.poll_once(&cancel).await.expect("catch-up");
    assert_eq!(report.scanned, Some(125));
    let cursor = w.engine.cursor(Asset::Ltc).expect("cursor").expect("a cursor");
    assert_eq!((cursor.height, cursor.hash.clone()), (125, w.chain.hash(125)));
    // The last step (120 to 125) was asked with what the store kept
    // at and below its cursor, the steps before it included.
    let known = w.chain.last_known.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(known.keys().next_back(), Some(&120));
    assert!(known.contains_key(&110) && known.contains_key(&100), "{known:?}");
    assert_eq!(known[&115], w.chain.hash(115));
}

/// A poller anchored at block 100, and an intent expiring in a minute.
async fn anchored_with_an_intent() -> (World, Poller, CancellationToken, String) {
    let w = world();
    let poller = poller(&w);
    let cancel = CancellationToken::new();
    w.chain.grow_to(100);
    poller.poll_once(&cancel).await.expect("first round");
    let id = create(&w, 60).await;
    (w, poller, cancel, id)
}

/// Stops the intent writer, checking that it is joined (its time limit is
/// real time, not the paused clock).
async fn stopped(w: &World) {
    tokio::time::resume();
    assert!(
        w.engine.stop_writer(std::time::Duration::from_secs(5)).await,
        "the intent writer is joined"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stuck_head_expires_nothing_until_the_chain_moves_again() {
    let (w, poller, cancel, id) = anchored_with_an_intent().await;
    // Past the expiry, on a backend whose head has not moved for longer
    // than a head may: the round proves nothing about blocks after it.
    w.clock.advance(120);
    tokio::time::advance(MAX_HEAD_AGE * 2).await;
    poller.poll_once(&cancel).await.expect("a round at a stuck head");
    assert_eq!(status(&w, &id), IntentStatus::Awaiting);
    // A backend below what was scanned is behind: an error, no expiry.
    w.chain.report_tip(99);
    let behind = poller.poll_once(&cancel).await.expect_err("behind");
    assert!(matches!(behind, PollError::Chain(ChainError::Behind(_))), "{behind}");
    assert_eq!(status(&w, &id), IntentStatus::Awaiting);
    assert_eq!(
        w.engine.cursor(Asset::Ltc).expect("cursor").map(|c| c.height),
        Some(100)
    );
    // The chain moves: that round counts, and the intent expires.
    w.chain.grow_to(101);
    poller.poll_once(&cancel).await.expect("a round at a new head");
    assert_eq!(status(&w, &id), IntentStatus::Expired);
    stopped(&w).await;
}

#[tokio::test(start_paused = true)]
async fn a_backend_behind_the_best_tip_seen_expires_nothing() {
    let (w, poller, cancel, id) = anchored_with_an_intent().await;
    w.clock.advance(120);
    // A round sees the head at 130, applies one step and loses its backend.
    w.chain.grow_to(130);
    *w.chain.fail_scans_from.lock().unwrap_or_else(|p| p.into_inner()) = Some(110);
    poller.poll_once(&cancel).await.expect_err("cut off mid-round");
    assert_eq!(
        w.engine.cursor(Asset::Ltc).expect("cursor").map(|c| c.height),
        Some(110)
    );
    *w.chain.fail_scans_from.lock().unwrap_or_else(|p| p.into_inner()) = None;
    // A backup at 115 is ahead of the cursor but behind the head seen: its
    // blocks are applied, its round proves nothing about expiry.
    w.chain.report_tip(115);
    let behind = poller.poll_once(&cancel).await.expect_err("behind the best tip");
    assert!(matches!(behind, PollError::Chain(ChainError::Behind(_))), "{behind}");
    assert_eq!(
        w.engine.cursor(Asset::Ltc).expect("cursor").map(|c| c.height),
        Some(115)
    );
    assert_eq!(status(&w, &id), IntentStatus::Awaiting);
    // Back at the head: the round counts.
    w.chain.report_tip(130);
    poller.poll_once(&cancel).await.expect("a round at the head");
    assert_eq!(status(&w, &id), IntentStatus::Expired);
    stopped(&w).await;
}
