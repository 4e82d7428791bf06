//! The engine: the one place that applies chain data and API requests to the
//! store, and tells the rest of the daemon (event feed waiters, the webhook
//! dispatcher, metrics, status) what changed.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use paywatch_chains::http::EndpointStatus;
use paywatch_chains::poller::SinkError;
use paywatch_chains::source::{BoxFuture, next_watch_version};
use paywatch_chains::{Clock, PollReport, ScanSink, WatchSet};
use paywatch_state::{
    Applied, Asset, AssetPolicy, BlockRef, CancelOutcome, CreateError, CreateOutcome, Event, EventType, NewIntent,
    ScanUpdate, Store, StoreError,
};
use tokio::sync::{Notify, watch};

use crate::metrics::Metrics;

/// What `/v1/status` shows per asset; kept in memory, rebuilt by the first poll.
#[derive(Clone, Debug, Default)]
pub struct AssetHealth {
    pub backend: &'static str,
    pub polled_ok_once: bool,
    pub healthy: bool,
    pub tip_height: Option<u64>,
    pub scanned_height: Option<u64>,
    pub last_poll_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub warnings: Vec<String>,
    pub endpoints: Vec<EndpointStatus>,
    /// Start of the last round that reached the tip without error.
    pub synced_at: Option<DateTime<Utc>>,
    /// When the tip height last changed, as paywatch saw it (head age).
    pub tip_changed_at: Option<DateTime<Utc>>,
}

/// One configured asset, as the engine needs it.
pub struct AssetSetup {
    pub policy: AssetPolicy,
    pub backend: &'static str,
    pub max_lag: Duration,
    pub refuse_when_lagging: bool,
}

/// How far an asset is behind its chain.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Lag {
    pub blocks: Option<u64>,
    /// Seconds since the last round that reached the tip (since start if none).
    pub scan_seconds: i64,
    /// Seconds since the tip last moved.
    pub head_age_seconds: Option<i64>,
    pub lagging: bool,
}

/// How often the hot subset of a watch set is rebuilt from the open intents.
const HOT_REFRESH: Duration = Duration::from_secs(600);

/// One asset's watch set and when its hot subset was last rebuilt.
struct Watch {
    set: Arc<WatchSet>,
    hot_built: Instant,
}

pub struct Engine {
    pub store: Arc<Store>,
    creates: std::sync::mpsc::Sender<CreateJob>,
    policies: HashMap<Asset, AssetPolicy>,
    lag_policies: HashMap<Asset, (Duration, bool)>,
    watch_sets: HashMap<Asset, RwLock<Watch>>,
    health: HashMap<Asset, Mutex<AssetHealth>>,
    /// Newest event seq, for long-polling feed readers.
    last_seq: watch::Sender<u64>,
    /// Per asset, creates held back while a poller applies a step (`Fences`).
    create_fences: Fences,
    /// Wakes the webhook dispatcher when events were appended.
    pub webhook_wake: Arc<Notify>,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    pub started_at: DateTime<Utc>,
}

impl Engine {
    pub fn new(
        store: Arc<Store>,
        assets: Vec<AssetSetup>,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Engine> {
        let mut policies = HashMap::new();
        let mut lag_policies = HashMap::new();
        let mut watch_sets = HashMap::new();
        let mut health = HashMap::new();
        for setup in assets {
            let (policy, backend) = (setup.policy, setup.backend);
            let asset = policy.asset;
            lag_policies.insert(asset, (setup.max_lag, setup.refuse_when_lagging));
            store.watch_addresses(asset, &policy.addresses)?;
            let (generation, addresses) = store.watched_snapshot(asset)?;
            let addresses: HashSet<String> = addresses.into_iter().collect();
            // Only per-address mempool queries (esplora) use the hot subset;
            // building it reads every open intent, so skip it elsewhere.
            let hot = if backend == "esplora" {
                hot_addresses(&store, &policy)?
            } else {
                HashSet::new()
            };
            let set = Arc::new(WatchSet {
                version: next_watch_version(),
                generation,
                addresses,
                hot,
            });
            watch_sets.insert(
                asset,
                RwLock::new(Watch {
                    set,
                    hot_built: Instant::now(),
                }),
            );
            let scanned = store.chain_state(asset)?.map(|c| c.cursor.height);
            health.insert(
                asset,
                Mutex::new(AssetHealth {
                    backend,
                    scanned_height: scanned,
                    ..AssetHealth::default()
                }),
            );
            policies.insert(asset, policy);
        }
        let (last_seq, _) = watch::channel(store.last_seq()?);
        let create_fences: Fences = Arc::new(
            policies
                .keys()
                .map(|a| (*a, Arc::new(tokio::sync::Mutex::new(()))))
                .collect(),
        );
        let creates = spawn_create_writer(store.clone(), policies.clone(), clock.clone(), create_fences.clone())?;
        Ok(Engine {
            store,
            creates,
            policies,
            lag_policies,
            create_fences,
            watch_sets,
            health,
            last_seq,
            webhook_wake: Arc::new(Notify::new()),
            metrics,
            started_at: clock.now(),
            clock,
        })
    }

    pub fn policy(&self, asset: Asset) -> Option<&AssetPolicy> {
        self.policies.get(&asset)
    }

    pub fn assets(&self) -> Vec<Asset> {
        let mut a: Vec<Asset> = self.policies.keys().copied().collect();
        a.sort();
        a
    }

    /// The asset's health; `scanned_height` is the stored cursor, so a long
    /// catch-up round shows its progress while it runs.
    pub fn health(&self, asset: Asset) -> Option<AssetHealth> {
        let mut h = self
            .health
            .get(&asset)
            .map(|h| h.lock().unwrap_or_else(|p| p.into_inner()).clone())?;
        if let Ok(Some(state)) = self.store.chain_state(asset) {
            h.scanned_height = Some(state.cursor.height);
        }
        Some(h)
    }

    /// Ready once every configured chain answered a poll.
    pub fn ready(&self) -> bool {
        self.health
            .values()
            .all(|h| h.lock().unwrap_or_else(|p| p.into_inner()).polled_ok_once)
    }

    /// How far `asset` is behind its chain, now.
    pub fn lag(&self, asset: Asset) -> Option<Lag> {
        let h = self.health(asset)?;
        let (max_lag, _) = self.lag_policies.get(&asset).copied()?;
        let now = self.clock.now();
        let since = |t: DateTime<Utc>| (now - t).num_seconds().max(0);
        let scan_seconds = since(h.synced_at.unwrap_or(self.started_at));
        let head_age_seconds = h.tip_changed_at.map(since);
        let limit = i64::try_from(max_lag.as_secs()).unwrap_or(i64::MAX);
        Some(Lag {
            blocks: match (h.tip_height, h.scanned_height) {
                (Some(t), Some(s)) => Some(t.saturating_sub(s)),
                _ => None,
            },
            scan_seconds,
            head_age_seconds,
            lagging: scan_seconds > limit || head_age_seconds.is_some_and(|a| a > limit),
        })
    }

    /// Whether new intents on `asset` are refused because it lags.
    pub fn refuses_new_intents(&self, asset: Asset) -> bool {
        self.lag_policies.get(&asset).is_some_and(|(_, refuse)| *refuse) && self.lag(asset).is_some_and(|l| l.lagging)
    }

    /// Sets the lag gauges of every asset (on every poll and scrape).
    pub fn refresh_lag_metrics(&self) {
        for asset in self.assets() {
            if let Some(lag) = self.lag(asset) {
                let code = asset.code();
                self.metrics
                    .last_success_age
                    .with_label_values(&[code])
                    .set(lag.scan_seconds);
                self.metrics
                    .lagging
                    .with_label_values(&[code])
                    .set(i64::from(lag.lagging));
                if let Some(age) = lag.head_age_seconds {
                    self.metrics.head_age.with_label_values(&[code]).set(age);
                }
            }
        }
    }

    pub fn subscribe_events(&self) -> watch::Receiver<u64> {
        self.last_seq.subscribe()
    }

    /// Creates an intent durably (on a blocking thread: the commit fsyncs).
    /// Creates an intent durably. Concurrent creates share one commit
    /// (group commit, see `spawn_create_writer`); each answer comes only
    /// after the commit that holds it.
    pub async fn create_intent(self: &Arc<Self>, req: NewIntent) -> Result<CreateOutcome, CreateError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.creates
            .send(CreateJob { req, reply })
            .map_err(|_| CreateError::Failed("the intent writer has stopped".into()))?;
        // The address is watched by the commit itself (the store's watch
        // generation), whether or not this request is still waiting for it.
        answer
            .await
            .map_err(|_| CreateError::Failed("the intent writer has stopped".into()))?
    }

    pub async fn cancel_intent(self: &Arc<Self>, id: String) -> anyhow::Result<CancelOutcome> {
        let engine = self.clone();
        let outcome =
            tokio::task::spawn_blocking(move || engine.store.cancel_intent(&id, engine.clock.now())).await??;
        if let CancelOutcome::Cancelled(_, events) = &outcome {
            self.publish(events);
        }
        Ok(outcome)
    }

    /// The watch set, complete up to the store's watch generation: what was
    /// watched since the set was built is read from the store and added.
    /// The hot subset is rebuilt now and then so that addresses of intents
    /// long ended stop costing per-address mempool queries.
    fn watch_set(&self, asset: Asset) -> Result<Arc<WatchSet>, paywatch_state::StoreError> {
        let Some(lock) = self.watch_sets.get(&asset) else {
            return Ok(Arc::default());
        };
        let current = lock.read().unwrap_or_else(|p| p.into_inner()).set.clone();
        let (generation, added) = self.store.watched_since(asset, current.generation)?;
        let uses_hot = self
            .health
            .get(&asset)
            .is_some_and(|h| h.lock().unwrap_or_else(|p| p.into_inner()).backend == "esplora");
        let stale = uses_hot && lock.read().unwrap_or_else(|p| p.into_inner()).hot_built.elapsed() > HOT_REFRESH;
        if added.is_empty() && !stale {
            return Ok(current);
        }
        let mut guard = lock.write().unwrap_or_else(|p| p.into_inner());
        let mut next = (*guard.set).clone();
        if generation > next.generation {
            for address in added {
                next.addresses.insert(address.clone());
                next.hot.insert(address);
            }
            next.generation = generation;
        }
        if stale && let Some(policy) = self.policies.get(&asset) {
            match hot_addresses(&self.store, policy) {
                Ok(hot) => {
                    next.hot = hot;
                    guard.hot_built = Instant::now();
                }
                Err(e) => {
                    tracing::warn!(asset = %asset, error = %e, "cannot rebuild the hot address set; keeping the old one")
                }
            }
        }
        next.version = next_watch_version();
        guard.set = Arc::new(next);
        Ok(guard.set.clone())
    }

    /// Tells feed readers, the webhook dispatcher and metrics about new events.
    fn publish(&self, events: &[Event]) {
        let Some(last) = events.last() else { return };
        for e in events {
            let asset = e.asset().map(|a| a.code()).unwrap_or("");
            self.metrics
                .transitions
                .with_label_values(&[asset, e.kind.as_str()])
                .inc();
            if e.kind == EventType::IntentConfirmed
                && let Some(intent) = &e.intent
                && let (Some(detected), Some(confirmed)) = (intent.detected_at, intent.confirmed_at)
            {
                let secs = (confirmed - detected).num_milliseconds().max(0) as f64 / 1000.0;
                self.metrics
                    .detection_to_confirmation
                    .with_label_values(&[asset])
                    .observe(secs);
            }
        }
        self.last_seq.send_replace(last.seq);
        self.webhook_wake.notify_one();
    }

    fn record_poll(&self, report: &PollReport) {
        let asset = report.asset.code();
        let m = &self.metrics;
        m.poll_duration
            .with_label_values(&[asset])
            .observe(report.duration.as_secs_f64());
        if let Some((kind, _)) = &report.error {
            m.poll_errors.with_label_values(&[asset, kind]).inc();
        }
        let Some(lock) = self.health.get(&report.asset) else {
            return;
        };
        let mut h = lock.lock().unwrap_or_else(|p| p.into_inner());
        h.last_poll_at = Some(report.started_at);
        h.warnings = report.warnings.clone();
        for (now, before) in report
            .endpoints
            .iter()
            .zip(h.endpoints.iter().map(Some).chain(std::iter::repeat(None)))
        {
            let endpoint = now.index.to_string();
            let labels = |outcome| [asset, endpoint.as_str(), outcome];
            let prev = before.cloned().unwrap_or_default();
            let ok = now.requests.saturating_sub(now.failures + now.rate_limits);
            let ok_before = prev.requests.saturating_sub(prev.failures + prev.rate_limits);
            m.endpoint_requests
                .with_label_values(&labels("ok"))
                .inc_by(ok.saturating_sub(ok_before));
            m.endpoint_requests
                .with_label_values(&labels("error"))
                .inc_by(now.failures.saturating_sub(prev.failures));
            m.endpoint_requests
                .with_label_values(&labels("rate_limited"))
                .inc_by(now.rate_limits.saturating_sub(prev.rate_limits));
            m.endpoint_up
                .with_label_values(&[asset, endpoint.as_str()])
                .set(i64::from(now.healthy == Some(true)));
            if let Some(height) = now.height {
                m.endpoint_height
                    .with_label_values(&[asset, endpoint.as_str()])
                    .set(height as i64);
            }
        }
        h.endpoints = report.endpoints.clone();
        if let Some(tip) = &report.tip {
            if h.tip_height != Some(tip.height) || h.tip_changed_at.is_none() {
                h.tip_changed_at = Some(report.started_at);
            }
            h.tip_height = Some(tip.height);
        }
        if let Some(scanned) = report.scanned {
            h.scanned_height = Some(scanned);
        }
        match &report.error {
            None => {
                h.healthy = true;
                h.polled_ok_once = true;
                h.last_error = None;
                h.synced_at = Some(report.started_at);
            }
            Some((_, message)) => {
                h.healthy = false;
                h.last_error = Some(message.clone());
            }
        }
        if let Some(tip) = h.tip_height {
            m.tip_height.with_label_values(&[asset]).set(tip as i64);
            if let Some(scanned) = h.scanned_height {
                m.scanned_height.with_label_values(&[asset]).set(scanned as i64);
                m.lag_blocks
                    .with_label_values(&[asset])
                    .set(tip.saturating_sub(scanned) as i64);
            }
        }
    }

    /// The poller's view of one asset.
    pub fn sink(self: &Arc<Self>, asset: Asset) -> Arc<dyn ScanSink> {
        Arc::new(AssetSink {
            engine: self.clone(),
            asset,
        })
    }
}

/// Per asset: held by the intent writer while it commits intents of that
/// asset, and by its poller when a step must be applied with no create in
/// between (see `ScanSink::fence_creates`).
type Fences = Arc<HashMap<Asset, Arc<tokio::sync::Mutex<()>>>>;

/// One create request waiting for the writer.
struct CreateJob {
    req: NewIntent,
    reply: tokio::sync::oneshot::Sender<Result<CreateOutcome, CreateError>>,
}

/// Most creates one group commit carries.
const MAX_CREATE_GROUP: usize = 256;

/// The thread that writes intents: it takes the first waiting create, adds
/// every other one already queued, commits them in one durable transaction,
/// and answers each. Under load one fsync serves many creates; alone, a
/// create is committed at once.
fn spawn_create_writer(
    store: Arc<Store>,
    policies: HashMap<Asset, AssetPolicy>,
    clock: Arc<dyn Clock>,
    fences: Fences,
) -> std::io::Result<std::sync::mpsc::Sender<CreateJob>> {
    let (sender, jobs) = std::sync::mpsc::channel::<CreateJob>();
    std::thread::Builder::new()
        .name("intent-writer".into())
        .spawn(move || {
            // Creates of an asset whose poller holds its fence wait here, in
            // order, while other assets' creates go on.
            let mut parked: Vec<CreateJob> = Vec::new();
            loop {
                let next = if parked.is_empty() {
                    jobs.recv().ok()
                } else {
                    match jobs.recv_timeout(PARKED_RETRY) {
                        Ok(job) => Some(job),
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => None,
                    }
                };
                if next.is_none() && parked.is_empty() {
                    return; // the engine is gone
                }
                let mut group = std::mem::take(&mut parked);
                group.extend(next);
                while group.len() < MAX_CREATE_GROUP {
                    match jobs.try_recv() {
                        Ok(job) => group.push(job),
                        Err(_) => break,
                    }
                }
                // Fences free now, taken in a fixed order; the rest wait.
                let mut assets: Vec<Asset> = group.iter().map(|j| j.req.asset).collect();
                assets.sort();
                assets.dedup();
                let mut held = Vec::new();
                let mut open = HashSet::new();
                for asset in assets {
                    match fences.get(&asset).map(|f| f.try_lock()) {
                        Some(Ok(guard)) => {
                            held.push(guard);
                            open.insert(asset);
                        }
                        Some(Err(_)) => {}
                        None => {
                            open.insert(asset);
                        }
                    }
                }
                let mut batch = Vec::with_capacity(group.len());
                let mut replies = Vec::with_capacity(group.len());
                for job in group {
                    if !open.contains(&job.req.asset) {
                        parked.push(job);
                        continue;
                    }
                    match policies.get(&job.req.asset) {
                        Some(policy) => {
                            batch.push((policy, job.req));
                            replies.push(job.reply);
                        }
                        None => {
                            let _ = job.reply.send(Err(CreateError::NotAllowed(format!(
                                "{} is not configured",
                                job.req.asset
                            ))));
                        }
                    }
                }
                if batch.is_empty() {
                    continue;
                }
                let result = store.create_intents(batch, clock.now());
                drop(held);
                match result {
                    Ok(answers) => {
                        for (reply, answer) in replies.into_iter().zip(answers) {
                            let _ = reply.send(answer);
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot write intents");
                        for reply in replies {
                            let _ = reply.send(Err(CreateError::Failed(e.to_string())));
                        }
                    }
                }
            }
        })?;
    Ok(sender)
}

/// How often creates waiting for a fenced asset are tried again.
const PARKED_RETRY: Duration = Duration::from_millis(20);

/// Configured addresses plus those of open intents.
fn hot_addresses(store: &Store, policy: &AssetPolicy) -> Result<HashSet<String>, paywatch_state::StoreError> {
    let mut hot: HashSet<String> = policy.addresses.iter().cloned().collect();
    hot.extend(store.open_intent_addresses(policy.asset)?);
    Ok(hot)
}

struct AssetSink {
    engine: Arc<Engine>,
    asset: Asset,
}

impl ScanSink for AssetSink {
    fn cursor(&self) -> Result<Option<BlockRef>, String> {
        self.engine
            .store
            .chain_state(self.asset)
            .map(|c| c.map(|c| c.cursor))
            .map_err(|e| e.to_string())
    }

    fn stored_tip(&self) -> Option<(u64, Option<DateTime<Utc>>)> {
        let state = self.engine.store.chain_state(self.asset).ok().flatten()?;
        Some((state.tip.height, state.tip_rose_at))
    }

    fn known_hash(&self, height: u64) -> Option<String> {
        self.engine.store.block_hash(self.asset, height).ok().flatten()
    }

    fn watch(&self) -> Result<Arc<WatchSet>, String> {
        self.engine.watch_set(self.asset).map_err(|e| e.to_string())
    }

    fn pending_mempool(&self) -> Result<Vec<String>, String> {
        self.engine
            .store
            .pending_mempool_txids(self.asset)
            .map_err(|e| e.to_string())
    }

    fn fence_creates(&self) -> BoxFuture<'_, Box<dyn Send>> {
        Box::pin(async move {
            match self.engine.create_fences.get(&self.asset) {
                Some(fence) => Box::new(fence.clone().lock_owned().await) as Box<dyn Send>,
                None => Box::new(()) as Box<dyn Send>,
            }
        })
    }

    fn apply(&self, update: ScanUpdate) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            let engine = self.engine.clone();
            let asset = self.asset;
            let applied: Applied = tokio::task::spawn_blocking(move || {
                let policy = engine
                    .policies
                    .get(&asset)
                    .ok_or_else(|| SinkError::Failed("asset not configured".into()))?;
                engine
                    .store
                    .apply_scan_counted(policy, &update, engine.clock.now())
                    .map_err(|e| match e {
                        StoreError::WatchChanged { .. } => SinkError::WatchChanged,
                        other => SinkError::Failed(other.to_string()),
                    })
            })
            .await
            .map_err(|e| SinkError::Failed(format!("apply task failed: {e}")))??;
            let code = self.asset.code();
            let m = &self.engine.metrics;
            m.transfers
                .with_label_values(&[code, "true"])
                .inc_by(applied.matched_transfers);
            m.transfers
                .with_label_values(&[code, "false"])
                .inc_by(applied.unmatched_transfers);
            m.dust_transfers
                .with_label_values(&[code])
                .inc_by(applied.dust_transfers);
            for e in &applied.events {
                tracing::info!(
                    asset = code,
                    seq = e.seq,
                    event = e.kind.as_str(),
                    intent = e.intent.as_ref().map(|i| i.id.as_str()).unwrap_or("-"),
                    "event"
                );
            }
            self.engine.publish(&applied.events);
            Ok(())
        })
    }

    fn report(&self, report: &PollReport) {
        self.engine.record_poll(report);
        self.engine.refresh_lag_metrics();
    }
}
