//! Start-up helpers for `run`: the store, the API token, one chain source and
//! poller per configured asset, signals and the systemd watchdog.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use paywatch_chains::evm::EvmSource;
use paywatch_chains::http::Endpoints;
use paywatch_chains::rpc::{RpcAuth, RpcClient};
use paywatch_chains::tron::TronSource;
use paywatch_chains::utxo::core_rpc::CoreRpc;
use paywatch_chains::utxo::esplora::Esplora;
use paywatch_chains::utxo::source::UtxoSource;
use paywatch_chains::xrpl::RippledSource;
use paywatch_chains::{ChainError, ChainSource, Clock, Poller, PollerConfig, Secret};
use paywatch_state::Store;
use tokio_util::sync::CancellationToken;

use crate::config::{self, AssetConfig, Backend, Config};
use crate::engine::Engine;

pub const STORE_FILE: &str = "paywatch.redb";
pub const TOKEN_FILE: &str = "api-token";

pub fn open_store(state_dir: &Path) -> anyhow::Result<Arc<Store>> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .with_context(|| format!("failed to create state_dir {}", state_dir.display()))?;
    let path = state_dir.join(STORE_FILE);
    let store = Store::open(&path).with_context(|| {
        format!(
            "failed to open the store {} (is another paywatch running on this state_dir?)",
            path.display()
        )
    })?;
    Ok(Arc::new(store))
}

/// The configured token, or `<state_dir>/api-token`, generated (mode 0600)
/// at first start.
pub fn api_token(config: &Config) -> anyhow::Result<Secret> {
    if let Some(t) = &config.api.token {
        return Ok(t.clone());
    }
    let path = config.state_dir.join(TOKEN_FILE);
    if let Ok(text) = std::fs::read_to_string(&path)
        && !text.trim().is_empty()
    {
        return Ok(Secret::new(text.trim()));
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("failed to generate an API token: {e}"))?;
    let token = hex::encode(bytes);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("failed to create {}", path.display()))?;
    file.write_all(token.as_bytes())?;
    file.sync_all()?;
    tracing::info!(path = %path.display(), "generated an API token");
    Ok(Secret::new(token))
}

pub fn source(asset: &AssetConfig) -> anyhow::Result<Arc<dyn ChainSource>> {
    Ok(match asset.backend {
        Backend::CoreRpc => {
            let rpc =
                RpcClient::new(asset.urls.clone(), asset.auth.clone(), asset.call_timeout)?.with_max_rps(asset.max_rps);
            let backend = CoreRpc::new(rpc, asset.network);
            Arc::new(UtxoSource::new(
                asset.asset,
                asset.network,
                backend,
                asset.max_blocks_per_poll,
            ))
        }
        Backend::Evm => {
            let token = asset
                .evm
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("evm settings missing"))?;
            let rpc =
                RpcClient::new(asset.urls.clone(), RpcAuth::None, asset.call_timeout)?.with_max_rps(asset.max_rps);
            Arc::new(EvmSource::new(
                asset.asset,
                rpc,
                &token.contract,
                token.decimals,
                token.chain_id,
                asset.max_blocks_per_poll,
            )?)
        }
        Backend::Rippled => {
            let rpc =
                RpcClient::new(asset.urls.clone(), RpcAuth::None, asset.call_timeout)?.with_max_rps(asset.max_rps);
            Arc::new(RippledSource::new(
                rpc,
                asset.api_version,
                asset.max_blocks_per_poll,
                asset.policy.addresses.clone(),
            ))
        }
        Backend::TronHttp => {
            let tron = asset
                .tron
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("tron settings missing"))?;
            let endpoints = Endpoints::new(asset.urls.clone(), asset.call_timeout)?.with_max_rps(asset.max_rps);
            Arc::new(TronSource::new(
                endpoints,
                tron.api_key.clone(),
                &tron.contract,
                asset.max_blocks_per_poll,
            )?)
        }
        Backend::Esplora => {
            let backend = Esplora::new(asset.urls.clone(), asset.asset, asset.network, asset.call_timeout)?
                .with_max_rps(asset.max_rps);
            Arc::new(UtxoSource::new(
                asset.asset,
                asset.network,
                backend,
                asset.max_blocks_per_poll,
            ))
        }
    })
}

/// Runs every source's start-up checks (chain, contract, decimals). A
/// definite answer that the configuration is wrong stops the start as a
/// configuration error; a backend that does not answer does not: its poller
/// repeats the checks before its first scan.
pub async fn preflight(sources: &[(&AssetConfig, Arc<dyn ChainSource>)]) -> anyhow::Result<()> {
    for (asset, source) in sources {
        match tokio::time::timeout(asset.call_timeout * 2, source.preflight()).await {
            Ok(Ok(())) => {}
            Ok(Err(ChainError::Config(message))) => {
                return Err(config::ConfigError {
                    key: format!("assets.{}", asset.asset),
                    message,
                }
                .into());
            }
            Ok(Err(e)) => {
                tracing::warn!(asset = %asset.asset, error = %e, "start-up checks not possible yet; the poller retries them")
            }
            Err(_) => tracing::warn!(asset = %asset.asset, "start-up checks timed out; the poller retries them"),
        }
    }
    Ok(())
}

pub fn poller(
    asset: &AssetConfig,
    source: Arc<dyn ChainSource>,
    engine: &Arc<Engine>,
    clock: Arc<dyn Clock>,
) -> Poller {
    let config = PollerConfig {
        interval: asset.poll_interval,
        step_timeout: asset.call_timeout * config::STEP_TIMEOUT_FACTOR,
        max_blocks_per_step: asset.max_blocks_per_poll,
        mempool: asset.policy.mempool,
        backoff_initial: config::BACKOFF_INITIAL.min(asset.poll_interval),
        backoff_max: asset.retry_max.max(asset.poll_interval),
        max_head_age: asset.max_lag.min(config::max_head_age(asset.asset)),
    };
    Poller::new(asset.asset, source, engine.sink(asset.asset), clock, config)
}

/// Resolves on SIGTERM or SIGINT with the signal's name.
pub async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        _ => {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

/// Pings the systemd watchdog while the store still answers, so a wedged
/// daemon gets restarted.
pub async fn watchdog(engine: Arc<Engine>, period: Duration, cancel: CancellationToken) -> anyhow::Result<()> {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(period) => {}
        }
        let store = engine.store.clone();
        let alive = tokio::task::spawn_blocking(move || store.last_seq().is_ok())
            .await
            .unwrap_or(false);
        if alive {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
        } else {
            tracing::error!("store unreadable; withholding the watchdog ping");
        }
    }
}
