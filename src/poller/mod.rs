//! The one poller loop every chain shares: it asks a chain source for data
//! and has the engine apply it. Control runs one way: the source never calls
//! back, and never sees the store.
//!
//! `run` ticks on an interval (missed ticks skipped), wakes early on "poll
//! now" (SIGUSR1), and stops on cancellation; its body is `poll_once`, the
//! unit under test. A poll is a *round*: scan steps from the cursor until
//! the tip, each applied atomically by the engine; only the step that
//! reaches the tip carries the round's start time, which is what lets
//! intents expire. Errors back off exponentially with jitter and never skip
//! anything: the cursor only moves through `Engine::apply_scan`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use paywatch_chains::http::EndpointStatus;
use paywatch_chains::source::{ChainSource, RecentBlocks, ScanBatch, ScanRequest};
use paywatch_chains::{ChainError, WatchSet};
use paywatch_state::{Asset, BLOCKS_KEPT, BlockRef, ChainTip, Fence, MempoolView, ScanUpdate, StoreError};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::engine::{ApplyError, Engine};

#[derive(Clone, Debug)]
pub struct PollerConfig {
    pub interval: Duration,
    /// Upper bound on one whole round step (tip, mempool, one scan batch).
    pub step_timeout: Duration,
    pub max_blocks_per_poll: u64,
    pub mempool: bool,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// A round counts for expiry only while the chain's tip moved within
    /// this long: a backend stuck at its last block proves nothing about
    /// what the chain holds after it.
    pub max_head_age: Duration,
}

/// Times a step is redone for addresses watched meanwhile before creates of
/// the asset are held back for one last redo (so creates cannot starve it).
const MAX_REDOS: u32 = 3;

/// The stored tip and when it rose: where the poller's best tip and head
/// age start after a restart.
fn head_seen(engine: &Engine, asset: Asset, clock: &dyn Clock) -> (u64, Instant) {
    let (height, rose_at) = engine.stored_tip(asset).unwrap_or((0, None));
    let age = rose_at
        .and_then(|rose| (clock.now() - rose).to_std().ok())
        .unwrap_or_default();
    (height, Instant::now().checked_sub(age).unwrap_or_else(Instant::now))
}

/// Mirrors in `known` what applying a step stored: hashes above a rollback
/// point removed, the step's blocks added, those beyond the store's window
/// dropped.
fn keep_in_step(known: &mut RecentBlocks, (rollback_to, blocks, cursor): (Option<u64>, Vec<BlockRef>, u64)) {
    if let Some(fork) = rollback_to {
        known.split_off(&(fork + 1));
    }
    known.extend(blocks.into_iter().map(|b| (b.height, b.hash)));
    *known = known.split_off(&cursor.saturating_sub(BLOCKS_KEPT));
}

/// The outcome of one round.
#[derive(Clone, Debug)]
pub struct PollReport {
    pub asset: Asset,
    pub started_at: DateTime<Utc>,
    pub duration: Duration,
    pub tip: Option<ChainTip>,
    pub scanned: Option<u64>,
    /// Error kind (bounded label) and message.
    pub error: Option<(&'static str, String)>,
    /// The source's operator warnings.
    pub warnings: Vec<String>,
    /// Each endpoint's health.
    pub endpoints: Vec<EndpointStatus>,
}

/// Why a round stopped early.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("store: {0}")]
    Apply(ApplyError),
    #[error("cancelled")]
    Cancelled,
}

impl PollError {
    fn kind(&self) -> &'static str {
        match self {
            PollError::Chain(e) => e.kind(),
            PollError::Store(_) | PollError::Apply(_) => "store",
            PollError::Cancelled => "cancelled",
        }
    }

    fn is_transient(&self) -> bool {
        match self {
            PollError::Chain(e) => e.is_transient(),
            PollError::Store(_) | PollError::Apply(_) | PollError::Cancelled => true,
        }
    }
}

pub struct Poller {
    /// Set once the source's preflight checks passed.
    preflight_ok: std::sync::atomic::AtomicBool,
    /// The highest tip any backend reported (or the store kept), and when
    /// it was first seen: a round whose tip is below it, or whose head has
    /// not risen for `max_head_age`, does not count for expiry.
    best_tip: std::sync::Mutex<(u64, Instant)>,
    asset: Asset,
    source: Arc<dyn ChainSource>,
    engine: Arc<Engine>,
    config: PollerConfig,
    /// The scan lease this poller runs under (a shared store): every step
    /// it applies carries it, and is refused once the lease moved on.
    fence: Option<Fence>,
}

impl Poller {
    pub fn new(asset: Asset, source: Arc<dyn ChainSource>, engine: Arc<Engine>, config: PollerConfig) -> Poller {
        Poller {
            preflight_ok: false.into(),
            best_tip: std::sync::Mutex::new(head_seen(&engine, asset, engine.clock.as_ref())),
            asset,
            source,
            engine,
            config,
            fence: None,
        }
    }

    /// The poller of one lease term (see `cluster`).
    pub fn under_lease(mut self, fence: Option<Fence>) -> Poller {
        self.fence = fence;
        self
    }

    /// Polls until `cancel` fires. `poll_now` wakes it early (single flight:
    /// a wake during a round is served right after it).
    pub async fn run(self, cancel: CancellationToken, poll_now: Arc<Notify>) {
        let mut interval = tokio::time::interval(self.config.interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut failures: u32 = 0;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = interval.tick() => {}
                _ = poll_now.notified() => {}
            }
            match self.poll_once(&cancel).await {
                Ok(_) => failures = 0,
                Err(PollError::Cancelled) => return,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let delay = self.backoff(failures, e.is_transient());
                    tracing::warn!(asset = %self.asset, error = %e, kind = e.kind(), retry_in_ms = delay.as_millis() as u64, "poll failed; retrying");
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    interval.reset();
                }
            }
        }
    }

    /// The one backoff, jittered; errors that need an operator wait the
    /// maximum.
    fn backoff(&self, failures: u32, transient: bool) -> Duration {
        if !transient {
            return self.config.backoff_max;
        }
        crate::backoff::jittered(self.config.backoff_initial, self.config.backoff_max, failures)
    }

    /// One round: scan steps until the tip. Reports the outcome to the engine.
    pub async fn poll_once(&self, cancel: &CancellationToken) -> Result<PollReport, PollError> {
        let started_at = self.engine.clock.now();
        let t0 = Instant::now();
        let mut report = PollReport {
            asset: self.asset,
            started_at,
            duration: Duration::ZERO,
            tip: None,
            scanned: None,
            error: None,
            warnings: Vec::new(),
            endpoints: Vec::new(),
        };
        let result = self.round(started_at, cancel, &mut report).await;
        report.duration = t0.elapsed();
        report.warnings = self.source.warnings();
        report.endpoints = self.source.endpoints().statuses();
        if let Err(e) = &result {
            if matches!(e, PollError::Cancelled) {
                return Err(PollError::Cancelled);
            }
            if let PollError::Chain(ChainError::Behind(reason)) = e {
                self.source.endpoints().demote_last(reason);
            }
            report.error = Some((e.kind(), e.to_string()));
        }
        self.engine.record_poll(&report);
        result.map(|_| report)
    }

    async fn step<T>(
        &self,
        cancel: &CancellationToken,
        what: &str,
        fut: impl Future<Output = Result<T, ChainError>>,
    ) -> Result<T, PollError> {
        tokio::select! {
            _ = cancel.cancelled() => Err(PollError::Cancelled),
            r = tokio::time::timeout(self.config.step_timeout, fut) => match r {
                Ok(inner) => inner.map_err(PollError::from),
                Err(_) => Err(ChainError::Timeout { call: what.to_string(), seconds: self.config.step_timeout.as_secs() }.into()),
            }
        }
    }

    async fn round(
        &self,
        started_at: DateTime<Utc>,
        cancel: &CancellationToken,
        report: &mut PollReport,
    ) -> Result<(), PollError> {
        if !self.preflight_ok.load(std::sync::atomic::Ordering::Relaxed) {
            self.step(cancel, "preflight", self.source.preflight()).await?;
            self.preflight_ok.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        // The tip is read once per round, and again only near it: catching
        // up over many steps needs no fresh tip per step.
        let mut tip = self.step(cancel, "tip", self.source.tip()).await?;
        let mut tip_fresh = true;
        // The stored block hashes below the cursor, read once a round and
        // kept in step with what each applied step stores.
        let mut known: Option<RecentBlocks> = None;
        loop {
            // Per step, not per round: an intent created during a long
            // catch-up is watched from the next step on (and the store
            // refuses a step computed before it, see `apply`).
            let watch = self.engine.watch_set(self.asset)?;
            let cursor = self.engine.cursor(self.asset)?;
            report.tip = Some(tip.clone());
            let Some(from) = cursor else {
                // First poll ever: start at the tip. No intent exists yet
                // (creation waits for this), so nothing older can be owed.
                // The anchor is for good: the chain identity is checked
                // again now, and the tip read after it (another endpoint
                // may have answered the tip than the checks).
                self.step(cancel, "preflight", self.source.preflight()).await?;
                tip = self.step(cancel, "tip", self.source.tip()).await?;
                report.tip = Some(tip.clone());
                let mempool = self.mempool(cancel, &watch, &[]).await?;
                let here = BlockRef {
                    height: tip.height,
                    hash: tip.hash.clone(),
                };
                let update = ScanUpdate {
                    asset: self.asset,
                    from: None,
                    rollback_to: None,
                    blocks: vec![here.clone()],
                    observations: vec![],
                    mempool,
                    tip: tip.clone(),
                    cursor: here.clone(),
                    round_started_at: Some(started_at),
                    watch_generation: Some(watch.generation),
                };
                self.apply(cancel, update, watch, None).await?;
                // The head seen now is where its age starts: a backend stuck
                // here from now on must not pass for a rising chain.
                self.raise_best_tip(tip.height);
                report.scanned = Some(here.height);
                return Ok(());
            };
            // Near the tip, read the mempool *before* the tip and its blocks:
            // a transaction then missing from both is really gone.
            let near = tip.height.saturating_sub(from.height) <= self.config.max_blocks_per_poll;
            let mut mempool = None;
            if near && self.config.mempool {
                let pending = self.engine.store.pending_mempool_txids(self.asset)?;
                mempool = self.mempool(cancel, &watch, &pending).await?;
                tip = self.step(cancel, "tip", self.source.tip()).await?;
            } else if near && !tip_fresh {
                tip = self.step(cancel, "tip", self.source.tip()).await?;
            }
            tip_fresh = false;
            report.tip = Some(tip.clone());
            let (best_seen, head_age) = self.head(tip.height);
            let behind_seen = tip.height < best_seen;
            let head_stale = head_age > self.config.max_head_age;
            let to = tip.height.min(from.height + self.config.max_blocks_per_poll);
            let known = match &mut known {
                Some(known) => known,
                None => known.insert(self.engine.store.recent_blocks(self.asset, from.height)?),
            };
            let batch = self.scan(cancel, &from, to, &watch, known).await?;
            // A backend below what paywatch already scanned is behind (a
            // lagging backup, another node behind a load balancer) unless it
            // proved a reorg to a shorter chain: nothing it says can move the
            // cursor, backwards least of all.
            if tip.height < from.height && batch.rollback_to.is_none() {
                report.scanned = Some(from.height);
                return Err(ChainError::Behind(format!(
                    "its best block {} is below the scanned height {}",
                    tip.height, from.height
                ))
                .into());
            }
            let cursor = batch.cursor.clone().unwrap_or_else(|| from.clone());
            let reached_tip = cursor.height >= tip.height;
            report.scanned = Some(cursor.height);
            if behind_seen && let Some(view) = &mut mempool {
                // A backend behind what paywatch has seen may lack the block
                // that mined a transaction: its "unknown" proves nothing.
                view.gone.clear();
            }
            let update = ScanUpdate {
                asset: self.asset,
                from: Some(from.clone()),
                rollback_to: batch.rollback_to,
                blocks: batch.blocks,
                observations: batch.observations,
                mempool: if reached_tip { mempool } else { None },
                tip: tip.clone(),
                cursor,
                // A round counts for expiry only if its tip is the best one
                // paywatch has seen: a lagging backend proves nothing about
                // what the chain holds after its head.
                round_started_at: (reached_tip && !behind_seen && !head_stale).then_some(started_at),
                watch_generation: Some(watch.generation),
            };
            let stored = (update.rollback_to, update.blocks.clone(), update.cursor.height);
            self.apply(cancel, update, watch, Some((&from, known))).await?;
            keep_in_step(known, stored);
            self.raise_best_tip(tip.height);
            if reached_tip {
                if behind_seen {
                    return Err(ChainError::Behind(format!(
                        "its best block {} is below block {best_seen} seen before; intents do not expire on its word",
                        tip.height
                    ))
                    .into());
                }
                return Ok(());
            }
        }
    }

    /// The best tip height seen before, and the head's age with `height`
    /// (zero when it is higher).
    fn head(&self, height: u64) -> (u64, Duration) {
        let best = self.best_tip.lock().unwrap_or_else(|p| p.into_inner());
        let age = if height > best.0 {
            Duration::ZERO
        } else {
            best.1.elapsed()
        };
        (best.0, age)
    }

    /// Records a tip once a step up to it was applied.
    fn raise_best_tip(&self, height: u64) {
        let mut best = self.best_tip.lock().unwrap_or_else(|p| p.into_inner());
        if height > best.0 {
            *best = (height, Instant::now());
        }
    }

    async fn scan(
        &self,
        cancel: &CancellationToken,
        from: &BlockRef,
        to: u64,
        watch: &WatchSet,
        known: &RecentBlocks,
    ) -> Result<ScanBatch, PollError> {
        let request = ScanRequest { from, to, watch, known };
        self.step(cancel, "scan", self.source.scan(request)).await
    }

    /// Applies an update; if addresses were watched after it was computed,
    /// scans the same step again for just those and applies the whole. When
    /// addresses keep coming faster than the step can be redone, creates of
    /// this asset are held back for its last redo, so it always lands.
    async fn apply(
        &self,
        cancel: &CancellationToken,
        mut update: ScanUpdate,
        mut watch: Arc<WatchSet>,
        step: Option<(&BlockRef, &RecentBlocks)>,
    ) -> Result<(), PollError> {
        let mut redos = 0;
        let mut creates_held: Option<Option<crate::engine::CreatesHeld>> = None;
        loop {
            // Not raced with cancellation: a started write finishes (it is
            // one atomic commit either way, but finishing avoids redoing it).
            match self
                .engine
                .apply_scan(self.asset, update.clone(), self.fence.clone())
                .await
            {
                Ok(()) => return Ok(()),
                Err(ApplyError::WatchChanged) => {}
                Err(e) => return Err(PollError::Apply(e)),
            }
            if cancel.is_cancelled() {
                return Err(PollError::Cancelled);
            }
            redos += 1;
            if let Some(Some(held)) = &mut creates_held {
                // Held for the whole of the redos, however long they take.
                held.renew().await;
            }
            if redos > MAX_REDOS && creates_held.is_none() {
                tracing::info!(asset = %self.asset, redos, "intents keep being created during the step; holding creates back for its last redo");
                creates_held = Some(self.engine.fence_creates(self.asset).await);
            }
            let newer = self.engine.watch_set(self.asset)?;
            let added = watch.added_in(&newer);
            tracing::debug!(asset = %self.asset, addresses = added.addresses.len(), "addresses watched during the scan; scanning the step for them");
            if let Some((from, known)) = step
                && !added.addresses.is_empty()
            {
                let extra = self.scan(cancel, from, update.cursor.height, &added, known).await?;
                if extra.rollback_to != update.rollback_to
                    || extra.cursor.clone().unwrap_or_else(|| from.clone()) != update.cursor
                {
                    return Err(ChainError::Unavailable(
                        "the chain moved while the step was redone for new addresses".into(),
                    )
                    .into());
                }
                update.observations.extend(extra.observations);
            }
            if let Some(mempool) = &mut update.mempool
                && let Some(view) = self.mempool(cancel, &added, &[]).await?
            {
                // Transfers only: a disappearance seen now, after the tip was
                // read, may be a transaction mined in a block this update
                // does not hold.
                mempool.transfers.extend(view.transfers);
            }
            update.watch_generation = Some(newer.generation);
            watch = newer;
        }
    }

    async fn mempool(
        &self,
        cancel: &CancellationToken,
        watch: &WatchSet,
        pending: &[String],
    ) -> Result<Option<MempoolView>, PollError> {
        if !self.config.mempool {
            return Ok(None);
        }
        self.step(cancel, "mempool", self.source.mempool(watch, pending)).await
    }
}

#[cfg(test)]
mod tests;
