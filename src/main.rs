//! paywatch: watches chains for incoming payments to a merchant's own
//! addresses and reports them through webhooks, an event feed, a local HTTP
//! API and Prometheus metrics.
//!
//! `run` below is the architecture: load config, init logs, open the store,
//! build metrics and the engine, spawn one poller per asset, the webhook
//! dispatcher and the API, tell systemd we are ready, wait for a signal or a
//! failed task, cancel, and wait for the tasks with a timeout.

mod api;
mod cli;
mod config;
mod engine;
mod metrics;
mod sources;
mod webhooks;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use paywatch_chains::{Clock, SystemClock};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// How long shutdown waits for tasks to finish in-flight work.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    // One TLS crypto provider for every HTTPS client of the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    cli::main()
}

/// The daemon. Returns when a signal asked it to stop (Ok) or a task failed.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let store = sources::open_store(&config.state_dir)?;
    let token = sources::api_token(&config)?;
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
        })
        .collect();
    let engine = Arc::new(engine::Engine::new(
        store.clone(),
        assets,
        metrics.clone(),
        clock.clone(),
    )?);
    store
        .set_webhooks_enabled(config.webhook.is_some())
        .context("failed to write the store")?;

    let cancel = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let mut chain_sources = Vec::new();
    for asset in &config.assets {
        chain_sources.push((asset, sources::source(asset)?));
    }
    sources::preflight(&chain_sources).await?;
    for (asset, source) in chain_sources {
        let poller = sources::poller(asset, source, &engine, clock.clone());
        let (cancel, wake) = (cancel.clone(), Arc::new(tokio::sync::Notify::new()));
        tasks.spawn(async move {
            poller.run(cancel, wake).await;
            Ok(())
        });
    }
    if let Some(webhook) = &config.webhook {
        let dispatcher = webhooks::Dispatcher::new(
            store.clone(),
            webhook.clone(),
            engine.webhook_wake.clone(),
            metrics.clone(),
        )?;
        let cancel = cancel.clone();
        tasks.spawn(async move {
            dispatcher.run(cancel).await;
            Ok(())
        });
    }
    let listener = TcpListener::bind(config.api.listen)
        .await
        .with_context(|| format!("failed to listen on {} (api.listen)", config.api.listen))?;
    let app = Arc::new(api::App {
        engine: engine.clone(),
        token,
        networks: config.assets.iter().map(|a| (a.asset, a.network)).collect(),
        webhooks_disabled: config.webhook.is_none(),
    });
    let api_shutdown = cancel.clone().cancelled_owned();
    tasks.spawn(async move { api::run(listener, app, api_shutdown).await.context("HTTP API failed") });
    tracing::info!(listen = %config.api.listen, state_dir = %config.state_dir.display(), assets = config.assets.len(), "paywatch started");

    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    if let Some(period) = sd_notify::watchdog_enabled() {
        tasks.spawn(sources::watchdog(engine.clone(), period / 2, cancel.clone()));
    }

    let outcome = tokio::select! {
        signal = sources::shutdown_signal() => {
            tracing::info!(signal, "stopping");
            Ok(())
        }
        Some(ended) = tasks.join_next() => match ended {
            Ok(Ok(())) => Err(anyhow::anyhow!("a task stopped unexpectedly")),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(anyhow::anyhow!("a task panicked: {e}")),
        }
    };
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    cancel.cancel();
    if tokio::time::timeout(SHUTDOWN_GRACE, async { while tasks.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        tracing::warn!("tasks did not stop within {SHUTDOWN_GRACE:?}; exiting anyway (their work is redone at start)");
    }
    outcome
}
