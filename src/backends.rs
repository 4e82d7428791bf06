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

use crate::config::{self, AssetConfig, Backend};
use crate::engine::Engine;
use crate::poller::{Poller, PollerConfig};

pub fn source(asset: &AssetConfig) -> anyhow::Result<Arc<dyn ChainSource>> {
    Ok(match asset.backend {
        Backend::CoreRpc => {
            let rpc =
                RpcClient::new(asset.urls.clone(), asset.auth.clone(), asset.call_timeout)?.with_max_rps(asset.max_rps);
            let backend = CoreRpc::new(rpc);
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
                asset.network,
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
                asset.network,
                asset.max_blocks_per_poll,
            )?)
        }
        Backend::Esplora => {
            let backend =
                Esplora::new(asset.urls.clone(), asset.asset, asset.call_timeout)?.with_max_rps(asset.max_rps);
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
        step_timeout: asset.call_timeout * config::STEP_TIMEOUT_FACTOR,
        max_blocks_per_poll: asset.max_blocks_per_poll,
        mempool: asset.policy.mempool,
        backoff_initial: config::BACKOFF_INITIAL.min(asset.poll_interval),
        backoff_max: asset.retry_max.max(asset.poll_interval),
        max_head_age: asset.max_lag.min(config::max_head_age(asset.asset)),
    };
    Poller::new(asset.asset, source, engine.clone(), config)
}
