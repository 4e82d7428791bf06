//! The one poller loop every chain shares.
//!
//! `run` ticks on an interval (missed ticks skipped), wakes early on "poll
//! now", and stops on cancellation; its body is `poll_once`, the unit under
//! test. A poll is a *round*: scan steps from the cursor until the tip, each
//! applied atomically by the sink; only the step that reaches the tip carries
//! the round's start time, which is what lets intents expire. Errors back off
//! exponentially with jitter and never skip anything: the cursor only moves
//! through `ScanSink::apply`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use paywatch_state::{Asset, BlockRef, ChainTip, ScanUpdate};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::ChainError;
use crate::source::{BoxFuture, ChainSource, ScanRequest, WatchSet, batch_cursor};

/// Where scan results go: the daemon's engine (the store) in production, a
/// recorder in tests.
pub trait ScanSink: Send + Sync + 'static {
    /// The durably applied cursor, `None` before the first poll.
    fn cursor(&self) -> Result<Option<BlockRef>, String>;
    /// The stored hash of an applied block, for reorg detection.
    fn known_hash(&self, height: u64) -> Option<String>;
    fn watch(&self) -> Arc<WatchSet>;
    /// Applies one step atomically.
    fn apply(&self, update: ScanUpdate) -> BoxFuture<'_, Result<(), String>>;
    /// Told after every round, successful or not (health and metrics).
    fn report(&self, report: &PollReport);
}

/// Wall-clock source, injectable for tests.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

#[derive(Clone, Debug)]
pub struct PollerConfig {
    pub interval: Duration,
    /// Upper bound on one whole round step (tip, mempool, one scan batch).
    pub step_timeout: Duration,
    pub max_blocks_per_step: u64,
    pub mempool: bool,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
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
}

/// Why a round stopped early.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("store: {0}")]
    Sink(String),
    #[error("cancelled")]
    Cancelled,
}

impl PollError {
    fn kind(&self) -> &'static str {
        match self {
            PollError::Chain(e) => e.kind(),
            PollError::Sink(_) => "store",
            PollError::Cancelled => "cancelled",
        }
    }

    fn is_transient(&self) -> bool {
        match self {
            PollError::Chain(e) => e.is_transient(),
            PollError::Sink(_) | PollError::Cancelled => true,
        }
    }
}

pub struct Poller {
    /// Set once the source's preflight checks passed.
    preflight_ok: std::sync::atomic::AtomicBool,
    asset: Asset,
    source: Arc<dyn ChainSource>,
    sink: Arc<dyn ScanSink>,
    clock: Arc<dyn Clock>,
    config: PollerConfig,
}

impl Poller {
    pub fn new(
        asset: Asset,
        source: Arc<dyn ChainSource>,
        sink: Arc<dyn ScanSink>,
        clock: Arc<dyn Clock>,
        config: PollerConfig,
    ) -> Poller {
        Poller {
            preflight_ok: false.into(),
            asset,
            source,
            sink,
            clock,
            config,
        }
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

    /// Exponential backoff with full jitter; errors that need an operator
    /// wait the maximum.
    fn backoff(&self, failures: u32, transient: bool) -> Duration {
        let max = self.config.backoff_max;
        if !transient {
            return max;
        }
        let exp = self
            .config
            .backoff_initial
            .saturating_mul(1u32 << failures.min(16).saturating_sub(1));
        let capped = exp.min(max);
        let mut b = [0u8; 4];
        let jitter = if getrandom::fill(&mut b).is_ok() {
            f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX)
        } else {
            0.5
        };
        // Half fixed, half random: never zero, never above the cap.
        capped.mul_f64(0.5 + jitter / 2.0)
    }

    /// One round: scan steps until the tip. Reports the outcome to the sink.
    pub async fn poll_once(&self, cancel: &CancellationToken) -> Result<PollReport, PollError> {
        let started_at = self.clock.now();
        let t0 = Instant::now();
        let mut report = PollReport {
            asset: self.asset,
            started_at,
            duration: Duration::ZERO,
            tip: None,
            scanned: None,
            error: None,
            warnings: Vec::new(),
        };
        let result = self.round(started_at, cancel, &mut report).await;
        report.duration = t0.elapsed();
        report.warnings = self.source.warnings();
        if let Err(e) = &result {
            if matches!(e, PollError::Cancelled) {
                return Err(PollError::Cancelled);
            }
            report.error = Some((e.kind(), e.to_string()));
        }
        self.sink.report(&report);
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
        let watch = self.sink.watch();
        // The tip is read once per round, and again only near it: catching
        // up over many steps needs no fresh tip per step.
        let mut tip = self.step(cancel, "tip", self.source.tip()).await?;
        let mut tip_fresh = true;
        loop {
            let cursor = self.sink.cursor().map_err(PollError::Sink)?;
            report.tip = Some(tip.clone());
            let Some(from) = cursor else {
                // First poll ever: start at the tip. No intent exists yet
                // (creation waits for this), so nothing older can be owed.
                let mempool = self.mempool(cancel, &watch).await?;
                let here = BlockRef {
                    height: tip.height,
                    hash: tip.hash.clone(),
                };
                self.apply(ScanUpdate {
                    asset: self.asset,
                    from: None,
                    rollback_to: None,
                    blocks: vec![here.clone()],
                    observations: vec![],
                    mempool,
                    tip,
                    cursor: here.clone(),
                    round_started_at: Some(started_at),
                })
                .await?;
                report.scanned = Some(here.height);
                return Ok(());
            };
            // Near the tip, read the mempool *before* the tip and its blocks:
            // a transaction then missing from both is really gone.
            let near = tip.height.saturating_sub(from.height) <= self.config.max_blocks_per_step;
            let mut mempool = None;
            if near && self.config.mempool {
                mempool = self.mempool(cancel, &watch).await?;
                tip = self.step(cancel, "tip", self.source.tip()).await?;
            } else if near && !tip_fresh {
                tip = self.step(cancel, "tip", self.source.tip()).await?;
            }
            tip_fresh = false;
            report.tip = Some(tip.clone());
            let to = tip.height.min(from.height + self.config.max_blocks_per_step);
            let known = |h: u64| self.sink.known_hash(h);
            let batch = self
                .step(
                    cancel,
                    "scan",
                    self.source.scan(ScanRequest {
                        from: &from,
                        to,
                        watch: &watch,
                        known_hash: &known,
                    }),
                )
                .await?;
            let cursor = batch_cursor(&batch, &from);
            let reached_tip = cursor.height >= tip.height;
            report.scanned = Some(cursor.height);
            self.apply(ScanUpdate {
                asset: self.asset,
                from: Some(from),
                rollback_to: batch.rollback_to,
                blocks: batch.blocks,
                observations: batch.observations,
                mempool: if reached_tip { mempool } else { None },
                tip: tip.clone(),
                cursor,
                round_started_at: reached_tip.then_some(started_at),
            })
            .await?;
            if reached_tip {
                return Ok(());
            }
        }
    }

    async fn mempool(
        &self,
        cancel: &CancellationToken,
        watch: &WatchSet,
    ) -> Result<Option<Vec<paywatch_state::Observation>>, PollError> {
        if !self.config.mempool {
            return Ok(None);
        }
        self.step(cancel, "mempool", self.source.mempool(watch)).await
    }

    async fn apply(&self, update: ScanUpdate) -> Result<(), PollError> {
        // Not raced with cancellation: a started write finishes (it is one
        // atomic commit either way, but finishing avoids redoing it).
        self.sink.apply(update).await.map_err(PollError::Sink)
    }
}
