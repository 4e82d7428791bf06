//! `run`: the daemon's architecture in one function. Open the store, build
//! the engine, check each backend, start one poller per asset, the webhook
//! dispatcher, the API, SIGUSR1 "poll now" and the systemd watchdog as named
//! critical tasks; tell systemd we are ready; wait for `shutdown` or a
//! failed task; cancel; join every task and the intent writer thread.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::{api, backends, cluster, engine, metrics, rates, signals, state_dir, webhooks};

/// How long shutdown waits for tasks to finish in-flight work before it
/// aborts them.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Runs the daemon on `listener` until `shutdown` resolves (Ok) or a
/// critical task fails (Err naming it).
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let store = state_dir::open_store(&config)?;
    let tokens = state_dir::api_tokens(&config)?;
    if !config.api.tokens.is_empty() && config.api.token.is_some() {
        tracing::warn!("PAYWATCH_API_TOKEN is set but api.tokens_file names the tokens: the variable is not accepted");
    }
    let metrics = Arc::new(metrics::Metrics::new().context("failed to build metrics")?);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let assets = config
        .assets
        .iter()
        .map(|a| engine::AssetSetup {
            policy: a.policy.clone(),
            backend: a.backend.name(),
            max_lag: a.max_lag,
            refuse_when_lagging: a.refuse_when_lagging,
            reads_mempool_per_address: a.backend.reads_mempool_per_address(),
        })
        .collect();
    let engine = Arc::new(engine::Engine::new(
        store.clone(),
        assets,
        metrics.clone(),
        clock.clone(),
    )?);
    if store.is_shared() {
        let fingerprint = config.webhook.as_ref().map(webhooks::config_fingerprint);
        let before = store
            .adopt_webhook_config(fingerprint)
            .context("failed to write the store")?;
        match fingerprint {
            Some(mine) if before != 0 && before != mine => tracing::warn!(
                "this instance's [webhook] differs from the one the store delivered with: it is the one in force now, and instances still running with the other stop delivering"
            ),
            None if before != 0 => tracing::warn!(
                "no [webhook] here, but the store's instances deliver webhooks: events are queued for the instances that have it"
            ),
            _ => {}
        }
    } else {
        store
            .set_webhooks_enabled(config.webhook.is_some())
            .context("failed to write the store")?;
    }
    store.set_checkout_base(config.checkout.as_ref().map(|c| c.base_url.clone()));

    let mut sources = Vec::new();
    for asset in &config.assets {
        sources.push((asset, backends::source(asset)?));
    }
    if let Err(e) = backends::preflight(&sources).await {
        let _ = engine.stop_writer(SHUTDOWN_GRACE).await;
        return Err(e);
    }

    let cancel = CancellationToken::new();
    let mut tasks = CriticalTasks::default();
    let cluster = Arc::new(cluster::Cluster::new(store.clone(), &config.cluster, metrics.clone()));
    let mut wakes = Vec::new();
    for (asset, source) in sources {
        let (asset, engine, wake) = (asset.clone(), engine.clone(), Arc::new(Notify::new()));
        wakes.push(wake.clone());
        let lease = format!("scan/{}", asset.asset);
        tasks.spawn(
            format!("poller {}", asset.asset),
            cluster.clone().hold(lease, cancel.clone(), move |fence, term| {
                // A new poller per term: nothing it knew in an earlier term
                // (the tip, stored blocks) is trusted after another
                // instance scanned meanwhile.
                let poller = backends::poller(&asset, source.clone(), &engine).under_lease(fence);
                let (engine, wake, code) = (engine.clone(), wake.clone(), asset.asset);
                async move {
                    engine.set_scanning_here(code, true);
                    poller.run(term, wake).await;
                    engine.set_scanning_here(code, false);
                }
            }),
        );
    }
    tasks.spawn("poll-now signal", signals::poll_now_on_sigusr1(wakes, cancel.clone()));
    tasks.spawn("intent writer", engine.clone().watch_writer(cancel.clone()));
    tasks.spawn(
        "wakeups from other instances",
        cluster::follow_other_instances(engine.clone(), cancel.clone()),
    );
    if let Some(webhook) = &config.webhook {
        // Built once here, so a bad webhook config stops the start.
        let first = webhooks::Dispatcher::new(
            store.clone(),
            webhook.clone(),
            engine.webhook_wake.clone(),
            metrics.clone(),
        )?;
        let mut first = Some(first);
        let (store, webhook, wake, metrics) = (
            store.clone(),
            webhook.clone(),
            engine.webhook_wake.clone(),
            metrics.clone(),
        );
        tasks.spawn(
            "webhook dispatcher",
            cluster
                .clone()
                .hold("webhooks".into(), cancel.clone(), move |fence, term| {
                    let dispatcher = match first.take() {
                        Some(d) => Ok(d),
                        None => {
                            webhooks::Dispatcher::new(store.clone(), webhook.clone(), wake.clone(), metrics.clone())
                        }
                    };
                    async move {
                        match dispatcher {
                            Ok(d) => d.under_lease(fence).run(term).await,
                            Err(e) => tracing::error!(error = %e, "cannot build the webhook dispatcher"),
                        }
                    }
                }),
        );
    }
    let rates = config.rates.clone().map(|rates| {
        let configured: Vec<_> = config.assets.iter().map(|a| a.asset).collect();
        Arc::new(rates::RateBook::new(rates, &configured))
    });
    if let Some(book) = &rates {
        tasks.spawn(
            "rate fetcher",
            rates::run(book.clone(), clock.clone(), metrics.clone(), cancel.clone()),
        );
    }
    let listen = listener.local_addr().ok();
    let app = Arc::new(api::App {
        engine: engine.clone(),
        tokens,
        networks: config.assets.iter().map(|a| (a.asset, a.network)).collect(),
        webhooks_disabled: config.webhook.is_none(),
        rates,
        checkout: config.checkout.clone(),
        checkout_limiter: Default::default(),
        cluster: cluster.clone(),
        state_dir: config.state_dir.clone(),
        backup_running: Default::default(),
    });
    let api_shutdown = cancel.clone().cancelled_owned();
    tasks.spawn("HTTP API", async move {
        api::run(listener, app, api_shutdown).await.context("serving failed")
    });
    if let Some(period) = sd_notify::watchdog_enabled() {
        tasks.spawn(
            "systemd watchdog",
            signals::watchdog(engine.clone(), period / 2, cancel.clone()),
        );
    }
    let (backend, location) = store.describe();
    tracing::info!(listen = ?listen, store = backend, location, instance = cluster.holder(), assets = config.assets.len(), "paywatch started");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);

    let outcome = tokio::select! {
        _ = shutdown => {
            tracing::info!("stopping");
            Ok(())
        }
        failed = tasks.first_to_end() => Err(failed),
    };
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    cancel.cancel();
    tasks.join_all(SHUTDOWN_GRACE).await;
    let _ = engine.stop_writer(SHUTDOWN_GRACE).await;
    outcome
}

/// Tasks the daemon cannot do without, each with a name: the first one to
/// end (return, fail or panic) stops the daemon, and says which it was.
#[derive(Default)]
struct CriticalTasks {
    set: JoinSet<anyhow::Result<()>>,
    names: HashMap<tokio::task::Id, String>,
}

impl CriticalTasks {
    fn spawn(&mut self, name: impl Into<String>, task: impl Future<Output = anyhow::Result<()>> + Send + 'static) {
        let handle = self.set.spawn(task);
        self.names.insert(handle.id(), name.into());
    }

    fn name(&self, id: tokio::task::Id) -> &str {
        self.names.get(&id).map(String::as_str).unwrap_or("unnamed task")
    }

    /// Waits for the first task to end; every ending is a failure here.
    async fn first_to_end(&mut self) -> anyhow::Error {
        match self.set.join_next_with_id().await {
            None => anyhow::anyhow!("no task is running"),
            Some(Ok((id, Ok(())))) => anyhow::anyhow!("the {} stopped unexpectedly", self.name(id)),
            Some(Ok((id, Err(e)))) => e.context(format!("the {} failed", self.name(id))),
            Some(Err(e)) => anyhow::anyhow!("the {} panicked: {e}", self.name(e.id())),
        }
    }

    /// Waits for every task after cancellation; those still running after
    /// `grace` are aborted, and waited for too.
    async fn join_all(mut self, grace: Duration) {
        let drained = tokio::time::timeout(grace, async {
            while let Some(ended) = self.set.join_next_with_id().await {
                let id = match ended {
                    Ok((id, _)) => id,
                    Err(e) => {
                        if e.is_panic() {
                            tracing::error!(task = self.name(e.id()), "a task panicked while stopping");
                        }
                        e.id()
                    }
                };
                self.names.remove(&id);
            }
        })
        .await;
        if drained.is_err() {
            let late: Vec<&str> = self.names.values().map(String::as_str).collect();
            tracing::warn!(
                ?late,
                "tasks did not stop within {grace:?}; aborting them (their work is redone at start)"
            );
            self.set.shutdown().await;
        }
    }
}
