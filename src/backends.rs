//! One chain source and poller per configured asset, and their start-up
//! checks.

use std::sync::Arc;

use paywatch_chains::evm::EvmSource;
use paywatch_chains::http::Endpoints;
use paywatch_chains::rpc::{RpcAuth, RpcClient};
use paywatch_chains::tron::TronSource;
use paywatch_chains::utxo::core_rpc::CoreRpc;
use paywatch_chains::utxo::esplora::Esplora;
use paywatch_chains::utxo::source::UtxoSource;
use paywatch_chains::xrpl::RippledSource;
use paywatch_chains::{ChainError, ChainSource};

use crate::config::defaults::{self, STEP_TIMEOUT_FACTOR};
use crate::config::{AssetConfig, BackendConfig, ConfigError};
use crate::engine::Engine;
use crate::poller::{Poller, PollerConfig};

pub fn source(asset: &AssetConfig) -> anyhow::Result<Arc<dyn ChainSource>> {
    let endpoints = || Endpoints::new(asset.urls.clone(), asset.call_timeout).map(|e| e.with_max_rps(asset.max_rps));
    let rpc = |auth: RpcAuth| anyhow::Ok(RpcClient::new(endpoints()?, auth));
    let blocks = asset.max_blocks_per_poll;
    Ok(match &asset.backend {
        BackendConfig::CoreRpc { auth } => {
            let backend = CoreRpc::new(rpc(auth.clone())?);
            Arc::new(UtxoSource::new(asset.asset, asset.network, backend, blocks))
        }
        BackendConfig::Esplora => {
            let backend = Esplora::new(endpoints()?, asset.asset);
            Arc::new(UtxoSource::new(asset.asset, asset.network, backend, blocks))
        }
        BackendConfig::Evm(token) => Arc::new(EvmSource::new(
            asset.asset,
            rpc(RpcAuth::None)?,
            &token.contract,
            token.decimals,
            token.chain_id,
            blocks,
        )?),
        BackendConfig::Rippled { api_version } => Arc::new(RippledSource::new(
            rpc(RpcAuth::None)?,
            asset.network,
            *api_version,
            blocks,
            asset.policy.addresses.clone(),
        )),
        BackendConfig::TronHttp(token) => Arc::new(TronSource::new(
            endpoints()?,
            token.api_key.clone(),
            &token.contract,
            asset.network,
            blocks,
        )?),
    })
}

/// Calls a start-up check may make in turn (genesis, then a contract's
/// decimals, each with a failover): its time limit in call timeouts.
const PREFLIGHT_CALLS: u32 = 4;

/// Runs every source's start-up checks (chain, contract, decimals), all at
/// once so that the start stays within systemd's limit. A definite answer
/// that the configuration is wrong stops the start as a configuration
/// error; a backend on another chain stops only its asset; a backend that
/// does not answer does not stop anything: its poller repeats the checks
/// before its first scan.
pub async fn preflight(sources: &[(&AssetConfig, Arc<dyn ChainSource>)]) -> anyhow::Result<()> {
    let mut checks = tokio::task::JoinSet::new();
    for (index, (asset, source)) in sources.iter().enumerate() {
        let (source, limit) = (source.clone(), asset.call_timeout * PREFLIGHT_CALLS);
        checks.spawn(async move { (index, tokio::time::timeout(limit, source.preflight()).await) });
    }
    let mut outcomes = Vec::new();
    while let Some(joined) = checks.join_next().await {
        match joined {
            Ok(outcome) => outcomes.push(outcome),
            Err(e) => tracing::error!(error = %e, "a start-up check failed to run; its poller repeats it"),
        }
    }
    outcomes.sort_by_key(|(index, _)| *index);
    for (index, outcome) in outcomes {
        let asset = sources[index].0;
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(ChainError::Config(message))) => {
                return Err(ConfigError {
                    key: format!("assets.{}", asset.asset),
                    message,
                }
                .into());
            }
            Ok(Err(e @ ChainError::WrongChain(_))) => {
                tracing::error!(asset = %asset.asset, error = %e, "the backend serves another chain; this asset waits for it, the others go on")
            }
            Ok(Err(e)) => {
                tracing::warn!(asset = %asset.asset, error = %e, "start-up checks not possible yet; the poller retries them")
            }
            Err(_) => tracing::warn!(asset = %asset.asset, "start-up checks timed out; the poller retries them"),
        }
    }
    Ok(())
}

pub fn poller(asset: &AssetConfig, source: Arc<dyn ChainSource>, engine: &Arc<Engine>) -> Poller {
    let config = PollerConfig {
        interval: asset.poll_interval,
        step_timeout: asset.call_timeout * STEP_TIMEOUT_FACTOR,
        max_blocks_per_poll: asset.max_blocks_per_poll,
        mempool: asset.policy.mempool,
        backoff_initial: defaults::RETRY_INITIAL.min(asset.poll_interval),
        backoff_max: asset.retry_max.max(asset.poll_interval),
        max_head_age: asset.max_lag.min(defaults::max_head_age(asset.asset)),
    };
    Poller::new(asset.asset, source, engine.clone(), config)
}
