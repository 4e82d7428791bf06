//! One `[assets.CODE]` table: the keys every backend shares, then the
//! backend's own (`backend.rs`).

use std::sync::Arc;
use std::time::Duration;

use paywatch_chains::account_key::AccountKeyDeriver;
use paywatch_chains::utxo::xpub::XpubDeriver;
use paywatch_chains::{Network, canonical_address};
use paywatch_state::amount::parse_amount;
use paywatch_state::{AddressDeriver, Asset, AssetPolicy, Deriver, MatchMode};
use serde::Deserialize;

use super::backend::{BackendConfig, parse_backend, split_backend};
use super::defaults;
use super::values::{ConfigError, chrono_duration, duration_or, err, http_url, toml_message};

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// The keys every backend takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SharedKeys {
    url: OneOrMany,
    network: Option<String>,
    #[serde(rename = "match")]
    match_mode: Option<String>,
    #[serde(default)]
    addresses: Vec<String>,
    xpub: Option<String>,
    confirmations: Option<u32>,
    poll_interval: Option<String>,
    timeout: Option<String>,
    expires_in: Option<String>,
    late_window: Option<String>,
    mempool: Option<bool>,
    amount_step: Option<String>,
    max_amount_offsets: Option<u32>,
    min_amount: Option<String>,
    max_blocks_per_poll: Option<u64>,
    retry_max: Option<String>,
    max_rps: Option<f64>,
    max_lag: Option<String>,
    refuse_when_lagging: Option<bool>,
}

#[derive(Clone, Debug)]
pub struct AssetConfig {
    pub asset: Asset,
    pub backend: BackendConfig,
    pub urls: Vec<String>,
    pub network: Network,
    pub policy: AssetPolicy,
    pub poll_interval: Duration,
    pub call_timeout: Duration,
    /// Blocks (ledgers) per scan step at most.
    pub max_blocks_per_poll: u64,
    /// Longest wait between retries of a failing backend.
    pub retry_max: Duration,
    /// Requests per second to each endpoint at most (0: no limit).
    pub max_rps: f64,
    /// Beyond this without reaching the chain's tip (or without the tip
    /// moving), the asset is lagging: flagged in status, metrics, `/readyz`.
    pub max_lag: Duration,
    /// Refuse new intents (503 `asset_lagging`) while the asset lags.
    pub refuse_when_lagging: bool,
}

/// Parses the table `assets.CODE` of `asset`.
pub fn parse_asset(asset: Asset, key: &str, mut table: toml::Table) -> Result<AssetConfig, ConfigError> {
    let k = |field: &str| format!("{key}.{field}");
    let (backend_name, own_keys) = split_backend(asset, key, &mut table)?;
    let raw: SharedKeys = table
        .try_into()
        .map_err(|e: toml::de::Error| err(key, toml_message(&e)))?;
    let backend = parse_backend(asset, key, &backend_name, own_keys)?;
    let urls = match &raw.url {
        OneOrMany::One(u) => vec![u.clone()],
        OneOrMany::Many(list) => list.clone(),
    };
    if urls.is_empty() {
        return Err(err(k("url"), "at least one URL is needed"));
    }
    for u in &urls {
        http_url(k("url"), u)?;
    }
    let network = match &raw.network {
        Some(n) => n.parse::<Network>().map_err(|e| err(k("network"), e))?,
        None => Network::Mainnet,
    };
    let policy = parse_policy(asset, key, network, &backend, &raw)?;
    let poll_interval = duration_or(
        &k("poll_interval"),
        raw.poll_interval.as_deref(),
        defaults::POLL_INTERVAL,
    )?;
    let call_timeout = duration_or(&k("timeout"), raw.timeout.as_deref(), defaults::CALL_TIMEOUT)?;
    let max_blocks_per_poll = raw
        .max_blocks_per_poll
        .unwrap_or(backend.default_blocks_per_poll())
        .max(1);
    let retry_max = duration_or(&k("retry_max"), raw.retry_max.as_deref(), defaults::RETRY_MAX)?;
    let max_rps = match raw.max_rps {
        Some(r) if !r.is_finite() || r < 0.0 => {
            return Err(err(
                k("max_rps"),
                "must be a number of requests per second, 0 for no limit",
            ));
        }
        Some(r) => r,
        // TronGrid's per-key limit; an own node has none.
        None if matches!(backend, BackendConfig::TronHttp(_)) && urls.iter().any(|u| u.contains("trongrid.io")) => {
            defaults::TRONGRID_MAX_RPS
        }
        None => 0.0,
    };
    let max_lag = duration_or(&k("max_lag"), raw.max_lag.as_deref(), defaults::max_lag(asset))?;
    Ok(AssetConfig {
        asset,
        backend,
        urls,
        network,
        policy,
        poll_interval,
        call_timeout,
        max_blocks_per_poll,
        retry_max,
        max_rps,
        max_lag,
        refuse_when_lagging: raw.refuse_when_lagging.unwrap_or(false),
    })
}

/// Matching, confirmations, windows and amounts: the asset's policy.
fn parse_policy(
    asset: Asset,
    key: &str,
    network: Network,
    backend: &BackendConfig,
    raw: &SharedKeys,
) -> Result<AssetPolicy, ConfigError> {
    let k = |field: &str| format!("{key}.{field}");
    let match_mode = match raw.match_mode.as_deref() {
        None => asset.default_match(),
        Some("address") => MatchMode::Address,
        Some("amount") => MatchMode::Amount,
        Some("tag") if asset == Asset::Xrp => MatchMode::Tag,
        Some("tag") => {
            return Err(err(
                k("match"),
                format!("\"tag\" only applies to XRP; use \"address\" or \"amount\" for {asset}"),
            ));
        }
        Some(other) => {
            return Err(err(
                k("match"),
                format!("{other:?} is not \"address\", \"tag\" or \"amount\""),
            ));
        }
    };
    let mut addresses = Vec::new();
    for (i, a) in raw.addresses.iter().enumerate() {
        let canonical = canonical_address(asset, network, a).map_err(|e| err(format!("{key}.addresses[{i}]"), e))?;
        if addresses.contains(&canonical) {
            return Err(err(format!("{key}.addresses[{i}]"), format!("{a:?} is listed twice")));
        }
        addresses.push(canonical);
    }
    if match_mode != MatchMode::Address && addresses.is_empty() {
        return Err(err(
            k("addresses"),
            format!("match = \"{match_mode}\" needs at least one shared address"),
        ));
    }
    let mut policy = AssetPolicy::defaults(asset, addresses);
    policy.match_mode = match_mode;
    if let Some(xpub) = &raw.xpub {
        if asset == Asset::Xrp {
            return Err(err(
                k("xpub"),
                "XRP does not derive addresses from an xpub (use match = \"tag\")",
            ));
        }
        if match_mode != MatchMode::Address {
            return Err(err(
                k("xpub"),
                "xpub needs match = \"address\" (one derived address per intent)",
            ));
        }
        // BTC/LTC: an account key or descriptor; USDT: the BIP44 account key
        // of coin type 60 (BSC) or 195 (Tron).
        let deriver: Arc<dyn AddressDeriver> = match asset {
            Asset::Btc | Asset::Ltc => {
                Arc::new(XpubDeriver::parse(asset, network, xpub).map_err(|e| err(k("xpub"), e))?)
            }
            _ => Arc::new(AccountKeyDeriver::parse(asset, xpub).map_err(|e| err(k("xpub"), e))?),
        };
        deriver.derive(0).map_err(|e| err(k("xpub"), e))?;
        policy.deriver = Some(Deriver(deriver));
    }
    if let Some(c) = raw.confirmations {
        if c == 0 || c > 10_000 {
            return Err(err(k("confirmations"), "must be between 1 and 10000"));
        }
        policy.confirmations = c;
    }
    if let Some(text) = &raw.expires_in {
        policy.expires_in = chrono_duration(duration_or(&k("expires_in"), Some(text), Duration::ZERO)?);
    }
    if let Some(text) = &raw.late_window {
        policy.late_window = chrono_duration(duration_or(&k("late_window"), Some(text), Duration::ZERO)?);
    }
    if let Some(m) = raw.mempool {
        if m && !asset.has_mempool() {
            return Err(err(k("mempool"), format!("{asset} has no mempool to watch")));
        }
        policy.mempool = m;
    }
    if let Some(step) = &raw.amount_step {
        policy.amount_step = parse_amount(asset, step).map_err(|e| err(k("amount_step"), e))?;
    }
    if let Some(n) = raw.max_amount_offsets {
        policy.max_amount_offsets = n;
    }
    if let Some(m) = &raw.min_amount {
        policy.min_amount = parse_amount(asset, m).map_err(|e| err(k("min_amount"), e))?;
    }
    if let BackendConfig::Evm(token) = backend {
        policy.contract = Some(token.contract.clone());
        policy.chain_id = Some(token.chain_id);
    }
    if let BackendConfig::TronHttp(token) = backend {
        policy.contract = Some(token.contract.clone());
    }
    Ok(policy)
}
