//! The engine: the one place that applies chain data and API requests to the
//! store, and tells the rest of the daemon (event feed waiters, the webhook
//! dispatcher, metrics, status) what changed.
//!
//! - `scan` — the poller's side: the data a scan request carries, applying
//!   a scan update
//! - `writer` — the intent writer thread (group commit, create fences)
//! - `health` — per-asset health, lag, poll metrics

mod health;
mod scan;
mod writer;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use paywatch_chains::WatchSet;
use paywatch_chains::watch::next_watch_version;
use paywatch_state::{
    AccountOutcome, Asset, AssetPolicy, CancelOutcome, CloseOutcome, CreateError, CreateOutcome, Created, Event,
    EventType, IntentStatus, ManualAction, ManualOutcome, NewAccount, NewIntent, NewRecord, Refusal, Store,
    TransferKey,
};
use tokio::sync::{Notify, watch};

pub use self::health::{AssetHealth, Lag};
pub use self::scan::{ApplyError, CreatesHeld};
use self::writer::{CreateJob, Fences, Writer, spawn_create_writer};
use crate::clock::Clock;
use crate::metrics::Metrics;

/// One configured asset, as the engine needs it.
pub struct AssetSetup {
    pub policy: AssetPolicy,
    pub backend: &'static str,
    pub max_lag: Duration,
    pub refuse_when_lagging: bool,
    /// The backend reads the mempool per address (only those that can
    /// still receive, the hot subset of the watch set, are asked for).
    pub reads_mempool_per_address: bool,
}

pub struct Engine {
    pub store: Arc<Store>,
    writer: Writer,
    policies: HashMap<Asset, AssetPolicy>,
    lag_policies: HashMap<Asset, (Duration, bool)>,
    watch_sets: HashMap<Asset, RwLock<scan::Watch>>,
    /// Assets whose watch sets keep a hot subset (see `AssetSetup`).
    per_address_mempool: HashSet<Asset>,
    health: HashMap<Asset, Mutex<AssetHealth>>,
    /// Assets this instance scans now (see `scans_here`).
    scanning_here: Mutex<HashSet<Asset>>,
    /// Who holds creates back (`fence_creates`) in the store's leases.
    creates_holder: String,
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
        let mut per_address_mempool = HashSet::new();
        for setup in assets {
            let (policy, backend) = (setup.policy, setup.backend);
            if setup.reads_mempool_per_address {
                per_address_mempool.insert(policy.asset);
            }
            let asset = policy.asset;
            lag_policies.insert(asset, (setup.max_lag, setup.refuse_when_lagging));
            store.watch_addresses(asset, &policy.addresses)?;
            let (generation, addresses) = store.watched_snapshot(asset)?;
            let addresses: HashSet<String> = addresses.into_iter().collect();
            // Only per-address mempool queries (esplora) use the hot subset;
            // building it reads every open intent, so skip it elsewhere.
            let hot = if setup.reads_mempool_per_address {
                scan::hot_addresses(&store, &policy)?
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
                RwLock::new(scan::Watch {
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
        let writer = spawn_create_writer(store.clone(), policies.clone(), clock.clone(), create_fences.clone())?;
        Ok(Engine {
            store,
            writer,
            policies,
            lag_policies,
            create_fences,
            watch_sets,
            per_address_mempool,
            health,
            scanning_here: Mutex::default(),
            // Unique per process, as the cluster's holders are: containers
            // share process ids, and a test clock repeats times.
            creates_holder: format!("creates-hold/{:08x}", paywatch_state::ids::random_u32()),
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

    pub fn subscribe_events(&self) -> watch::Receiver<u64> {
        self.last_seq.subscribe()
    }

    /// Creates an intent durably. Concurrent creates share one commit
    /// (group commit, see `spawn_create_writer`); each answer comes only
    /// after the commit that holds it.
    pub async fn create_intent(self: &Arc<Self>, req: NewIntent) -> Result<CreateOutcome, CreateError> {
        match self.create(NewRecord::Intent(req)).await? {
            Created::Intent(outcome) => Ok(*outcome),
            Created::Account(_) => Err(CreateError::Failed("the writer answered with an account".into())),
        }
    }

    /// Creates a deposit account durably, through the same writer (and
    /// fences) as intents: its address is watched by the same commit.
    pub async fn create_account(self: &Arc<Self>, req: NewAccount) -> Result<AccountOutcome, CreateError> {
        match self.create(NewRecord::Account(req)).await? {
            Created::Account(outcome) => Ok(*outcome),
            Created::Intent(_) => Err(CreateError::Failed("the writer answered with an intent".into())),
        }
    }

    async fn create(self: &Arc<Self>, req: NewRecord) -> Result<Created, CreateError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        if !self.writer.send(CreateJob { req, reply }) {
            return Err(CreateError::Failed("the intent writer has stopped".into()));
        }
        // The address is watched by the commit itself (the store's watch
        // generation), whether or not this request is still waiting for it.
        answer
            .await
            .map_err(|_| CreateError::Failed("the intent writer has stopped".into()))?
    }

    /// Closes a deposit account; committed and announced together
    /// (`announced`).
    pub async fn close_account(self: &Arc<Self>, id: String) -> anyhow::Result<CloseOutcome> {
        self.announced(
            move |engine| engine.store.close_account(&id, engine.clock.now()),
            |outcome| match outcome {
                CloseOutcome::Closed(_, events) => events,
                _ => &[],
            },
        )
        .await
    }

    /// Assigns an unmatched or late transfer to an intent by hand.
    pub async fn assign_transfer(
        self: &Arc<Self>,
        key: TransferKey,
        intent_id: String,
        action: ManualAction,
    ) -> anyhow::Result<Result<ManualOutcome, Refusal>> {
        self.announced(
            move |engine| {
                engine
                    .store
                    .assign_transfer(&key, &intent_id, &action, engine.clock.now())
            },
            manual_events,
        )
        .await
    }

    /// Settles an intent by hand.
    pub async fn resolve_intent(
        self: &Arc<Self>,
        intent_id: String,
        status: IntentStatus,
        action: ManualAction,
    ) -> anyhow::Result<Result<ManualOutcome, Refusal>> {
        self.announced(
            move |engine| {
                engine
                    .store
                    .resolve_intent(&intent_id, status, &action, engine.clock.now())
            },
            manual_events,
        )
        .await
    }

    /// Cancels an intent; committed and announced together (`announced`).
    pub async fn cancel_intent(self: &Arc<Self>, id: String) -> anyhow::Result<CancelOutcome> {
        self.announced(
            move |engine| engine.store.cancel_intent(&id, engine.clock.now()),
            |outcome| match outcome {
                CancelOutcome::Cancelled(_, events) => events,
                _ => &[],
            },
        )
        .await
    }

    /// Runs a write and tells feed readers, webhooks and metrics about the
    /// events it committed, together on a blocking thread: a client that
    /// hangs up mid-request cannot leave a committed change unannounced.
    async fn announced<T: Send + 'static>(
        self: &Arc<Self>,
        write: impl FnOnce(&Engine) -> Result<T, paywatch_state::StoreError> + Send + 'static,
        events_of: fn(&T) -> &[Event],
    ) -> anyhow::Result<T> {
        let engine = self.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let outcome = write(&engine)?;
            engine.publish(events_of(&outcome));
            anyhow::Ok(outcome)
        })
        .await??;
        Ok(outcome)
    }

    /// Stops the intent writer once the creates queued are answered, and
    /// joins its thread, for at most `grace` (true once joined): a commit stuck on the disk
    /// must not hold the process (the join runs on a thread of its own,
    /// which the runtime does not wait for).
    pub async fn stop_writer(self: &Arc<Self>, grace: Duration) -> bool {
        let (joined, done) = tokio::sync::oneshot::channel();
        let engine = self.clone();
        let spawned = std::thread::Builder::new()
            .name("intent-writer-join".into())
            .spawn(move || {
                engine.writer.stop();
                let _ = joined.send(());
            });
        let stopped = spawned.is_ok() && matches!(tokio::time::timeout(grace, done).await, Ok(Ok(())));
        if !stopped {
            tracing::warn!("the intent writer did not stop within {grace:?}; exiting anyway");
        }
        stopped
    }

    /// Fails once the intent writer thread has ended (a panic): creates
    /// could no longer be answered, so the daemon stops and is restarted.
    pub async fn watch_writer(self: Arc<Self>, cancel: tokio_util::sync::CancellationToken) -> anyhow::Result<()> {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            if self.writer.ended() {
                anyhow::bail!("the intent writer thread ended");
            }
        }
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
        self.note_events_up_to(last.seq);
    }

    /// Wakes feed readers and the webhook dispatcher for events up to `seq`,
    /// committed here or by another instance. The feed's newest seq only
    /// rises: wakeups from several instances may arrive out of order.
    pub fn note_events_up_to(&self, seq: u64) {
        self.last_seq.send_if_modified(|newest| {
            let rises = seq > *newest;
            if rises {
                *newest = seq;
            }
            rises
        });
        self.webhook_wake.notify_one();
    }

    /// Whether this instance runs the poller of `asset` now: always with
    /// the embedded store; with a shared one, while it holds the lease.
    pub fn scans_here(&self, asset: Asset) -> bool {
        !self.store.is_shared()
            || self
                .scanning_here
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&asset)
    }

    pub fn set_scanning_here(&self, asset: Asset, scanning: bool) {
        let mut here = self.scanning_here.lock().unwrap_or_else(|p| p.into_inner());
        if scanning {
            here.insert(asset);
        } else {
            here.remove(&asset);
        }
    }
}

/// The events a manual action committed (none when it was refused).
fn manual_events(outcome: &Result<ManualOutcome, Refusal>) -> &[Event] {
    match outcome {
        Ok(done) => &done.events,
        Err(_) => &[],
    }
}
