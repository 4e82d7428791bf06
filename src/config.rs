//! The configuration file (SPEC §6): one TOML file, unknown keys are errors,
//! durations are strings (`"30s"`, `"15m"`, `"24h"`), secrets come from files
//! or the environment and never from the command line.
//!
//! `Config::load` reads and validates everything (secret files included) and
//! has no other side effect; every error names the key it is about.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use paywatch_chains::rpc::RpcAuth;
use paywatch_chains::utxo::xpub::XpubDeriver;
use paywatch_chains::{Network, Secret, canonical_address};
use paywatch_state::amount::parse_amount;
use paywatch_state::{AddressDeriver, Asset, AssetPolicy, Deriver, MatchMode};

use serde::Deserialize;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/paywatch/paywatch.toml";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8787";
pub const DEFAULT_STATE_DIR: &str = "./paywatch-state";
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// Per remote call; a whole scan step gets `STEP_TIMEOUT_FACTOR` times this.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(15);
pub const STEP_TIMEOUT_FACTOR: u32 = 20;
pub const DEFAULT_EXPIRES_IN: Duration = Duration::from_secs(30 * 60);
pub const DEFAULT_LATE_WINDOW: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_MAX_BLOCKS_PER_STEP: u64 = 50;
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_WEBHOOK_MAX_AGE: Duration = Duration::from_secs(72 * 3600);
pub const DEFAULT_WEBHOOK_RETRY_INITIAL: Duration = Duration::from_secs(5);
pub const DEFAULT_WEBHOOK_RETRY_MAX: Duration = Duration::from_secs(30 * 60);
pub const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// A configuration problem: which key, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

fn err(key: impl Into<String>, message: impl ToString) -> ConfigError {
    ConfigError {
        key: key.into(),
        message: message.to_string(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    state_dir: Option<PathBuf>,
    #[serde(default)]
    api: RawApi,
    webhook: Option<RawWebhook>,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    assets: BTreeMap<String, RawAsset>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    listen: Option<String>,
    token_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: String,
    secret_file: Option<PathBuf>,
    timeout: Option<String>,
    max_age: Option<String>,
    retry_initial: Option<String>,
    retry_max: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    format: Option<String>,
    level: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAsset {
    backend: String,
    url: OneOrMany,
    rpc_user: Option<String>,
    rpc_password_file: Option<PathBuf>,
    rpc_cookie_file: Option<PathBuf>,
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
    contract: Option<String>,
    decimals: Option<u8>,
    chain_id: Option<u64>,
    api_version: Option<u8>,
    api_key_file: Option<PathBuf>,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub state_dir: PathBuf,
    pub api: ApiConfig,
    pub webhook: Option<WebhookConfig>,
    pub log: LogConfig,
    pub assets: Vec<AssetConfig>,
}

#[derive(Clone, Debug)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    /// From `api.token_file` or `PAYWATCH_API_TOKEN`; when `None` the daemon
    /// generates `<state_dir>/api-token` at first start.
    pub token: Option<Secret>,
}

#[derive(Clone, Debug)]
pub struct WebhookConfig {
    pub url: String,
    pub secret: Secret,
    pub timeout: Duration,
    pub max_age: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

#[derive(Clone, Debug)]
pub struct LogConfig {
    pub json: bool,
    pub level: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    CoreRpc,
    Esplora,
    Evm,
    Rippled,
    TronHttp,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::CoreRpc => "core-rpc",
            Backend::Esplora => "esplora",
            Backend::Evm => "evm",
            Backend::Rippled => "rippled",
            Backend::TronHttp => "tron-http",
        }
    }
}

/// USDT on BNB Smart Chain (BEP-20).
pub const USDT_BSC_CONTRACT: &str = "0x55d398326f99059fF775485246999027B3197955";
pub const BSC_CHAIN_ID: u64 = 56;
/// Ledgers per rippled scan step.
pub const DEFAULT_XRP_LEDGERS_PER_POLL: u64 = 1_000;
/// Blocks per `eth_getLogs` before a provider asks for less.
pub const DEFAULT_EVM_BLOCKS_PER_POLL: u64 = 2_000;

#[derive(Clone, Debug)]
pub struct TronSettings {
    pub contract: String,
    pub api_key: Option<Secret>,
}

#[derive(Clone, Debug)]
pub struct EvmToken {
    pub contract: String,
    pub decimals: u8,
    pub chain_id: u64,
}

#[derive(Clone, Debug)]
pub struct AssetConfig {
    pub asset: Asset,
    pub backend: Backend,
    pub urls: Vec<String>,
    pub auth: RpcAuth,
    pub network: Network,
    pub policy: AssetPolicy,
    pub poll_interval: Duration,
    pub call_timeout: Duration,
    pub max_blocks_per_poll: u64,
    /// EVM: the token contract (checksummed), its decimals and the chain id.
    pub evm: Option<EvmToken>,
    /// rippled: the API version sent with every call (1 or 2).
    pub api_version: u8,
    /// tron-http: the token contract (base58) and the TronGrid API key.
    pub tron: Option<TronSettings>,
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

impl Config {
    /// Reads and validates the file at `path` (and the secret files it names).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| err(path.display().to_string(), format!("cannot read: {e}")))?;
        Config::parse(&text, |var| std::env::var(var).ok())
    }

    /// Validates config text; `env` looks up environment variables.
    pub fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| err("config", toml_message(&e)))?;
        let state_dir = raw
            .state_dir
            .or_else(|| env("STATE_DIRECTORY").map(|s| PathBuf::from(s.split(':').next().unwrap_or_default())))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));

        let listen_text = raw.api.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen = listen_text
            .parse::<SocketAddr>()
            .map_err(|_| err("api.listen", format!("{listen_text:?} is not an IP:port address")))?;
        let token = match (&raw.api.token_file, env("PAYWATCH_API_TOKEN")) {
            (Some(file), _) => Some(read_secret("api.token_file", file)?),
            (None, Some(t)) if !t.trim().is_empty() => Some(Secret::new(t.trim())),
            _ => None,
        };

        let webhook = raw.webhook.map(|w| parse_webhook(w, &env)).transpose()?;

        let level = raw.log.level.unwrap_or_else(|| "info".into());
        let json = match raw.log.format.as_deref() {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => return Err(err("log.format", format!("{other:?} is not \"text\" or \"json\""))),
        };

        let mut assets = Vec::new();
        for (code, raw_asset) in raw.assets {
            let key = format!("assets.{code}");
            let asset: Asset = code.parse().map_err(|e| err(&key, e))?;
            assets.push(parse_asset(asset, &key, raw_asset)?);
        }
        if assets.is_empty() {
            return Err(err(
                "assets",
                "no asset is configured; add at least one [assets.CODE] table",
            ));
        }
        Ok(Config {
            state_dir,
            api: ApiConfig { listen, token },
            webhook,
            log: LogConfig { json, level },
            assets,
        })
    }

    pub fn asset(&self, asset: Asset) -> Option<&AssetConfig> {
        self.assets.iter().find(|a| a.asset == asset)
    }
}

/// toml's messages carry line/column and name the offending key.
fn toml_message(e: &toml::de::Error) -> String {
    e.to_string().trim().replace('\n', " ").replace("  ", " ")
}

fn parse_webhook(w: RawWebhook, env: &impl Fn(&str) -> Option<String>) -> Result<WebhookConfig, ConfigError> {
    let url = reqwest::Url::parse(&w.url).map_err(|e| err("webhook.url", format!("{:?} is not a URL: {e}", w.url)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(err("webhook.url", "must be an http or https URL"));
    }
    let secret = match (&w.secret_file, env("PAYWATCH_WEBHOOK_SECRET")) {
        (Some(file), _) => read_secret("webhook.secret_file", file)?,
        (None, Some(s)) if !s.trim().is_empty() => Secret::new(s.trim()),
        _ => {
            return Err(err(
                "webhook.secret_file",
                "webhooks need a signing secret: set secret_file or PAYWATCH_WEBHOOK_SECRET",
            ));
        }
    };
    let timeout = duration_or("webhook.timeout", w.timeout.as_deref(), DEFAULT_WEBHOOK_TIMEOUT)?;
    let max_age = duration_or("webhook.max_age", w.max_age.as_deref(), DEFAULT_WEBHOOK_MAX_AGE)?;
    let retry_initial = duration_or(
        "webhook.retry_initial",
        w.retry_initial.as_deref(),
        DEFAULT_WEBHOOK_RETRY_INITIAL,
    )?;
    let retry_max = duration_or("webhook.retry_max", w.retry_max.as_deref(), DEFAULT_WEBHOOK_RETRY_MAX)?;
    if retry_max < retry_initial {
        return Err(err("webhook.retry_max", "must not be shorter than retry_initial"));
    }
    Ok(WebhookConfig {
        url: w.url,
        secret,
        timeout,
        max_age,
        retry_initial,
        retry_max,
    })
}

fn parse_asset(asset: Asset, key: &str, raw: RawAsset) -> Result<AssetConfig, ConfigError> {
    let k = |field: &str| format!("{key}.{field}");
    let backend = match (asset, raw.backend.as_str()) {
        (Asset::Btc | Asset::Ltc, "core-rpc") => Backend::CoreRpc,
        (Asset::Btc | Asset::Ltc, "esplora") => Backend::Esplora,
        (Asset::UsdtBsc, "evm") => Backend::Evm,
        (Asset::Xrp, "rippled") => Backend::Rippled,
        (Asset::UsdtTrc20, "tron-http") => Backend::TronHttp,
        (_, other) => return Err(err(k("backend"), format!("{other:?} is not a backend for {asset}"))),
    };
    let urls = match raw.url {
        OneOrMany::One(u) => vec![u],
        OneOrMany::Many(list) => list,
    };
    if urls.is_empty() {
        return Err(err(k("url"), "at least one URL is needed"));
    }
    for u in &urls {
        let parsed = reqwest::Url::parse(u).map_err(|e| err(k("url"), format!("{u:?} is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(err(k("url"), format!("{u:?} must be http or https")));
        }
    }
    let auth = match (&raw.rpc_user, &raw.rpc_password_file, &raw.rpc_cookie_file) {
        (Some(_), _, Some(_)) => {
            return Err(err(
                k("rpc_cookie_file"),
                "use either rpc_user + rpc_password_file or rpc_cookie_file",
            ));
        }
        (Some(user), Some(file), None) => RpcAuth::UserPassword {
            user: user.clone(),
            password: read_secret(&k("rpc_password_file"), file)?,
        },
        (Some(_), None, None) => return Err(err(k("rpc_password_file"), "rpc_user needs rpc_password_file")),
        (None, Some(_), None) => return Err(err(k("rpc_user"), "rpc_password_file needs rpc_user")),
        (None, _, Some(cookie)) => RpcAuth::Cookie(cookie.clone()),
        (None, None, None) => RpcAuth::None,
    };
    if backend == Backend::Esplora
        && let Some(field) = [
            ("rpc_user", raw.rpc_user.is_some()),
            ("rpc_password_file", raw.rpc_password_file.is_some()),
            ("rpc_cookie_file", raw.rpc_cookie_file.is_some()),
        ]
        .into_iter()
        .find_map(|(name, set)| set.then_some(name))
    {
        return Err(err(
            k(field),
            "node credentials are for backend \"core-rpc\"; an Esplora URL needs none",
        ));
    }
    let network = match &raw.network {
        Some(n) => n.parse::<Network>().map_err(|e| err(k("network"), e))?,
        None => Network::Mainnet,
    };
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
        if !matches!(asset, Asset::Btc | Asset::Ltc) {
            return Err(err(
                k("xpub"),
                format!("{asset} does not derive addresses from an xpub"),
            ));
        }
        if match_mode != MatchMode::Address {
            return Err(err(
                k("xpub"),
                "xpub needs match = \"address\" (one derived address per intent)",
            ));
        }
        let deriver = XpubDeriver::parse(asset, network, xpub).map_err(|e| err(k("xpub"), e))?;
        deriver.derive(0).map_err(|e| err(k("xpub"), e))?;
        policy.deriver = Some(Deriver(Arc::new(deriver)));
    }
    if let Some(c) = raw.confirmations {
        if c == 0 || c > 10_000 {
            return Err(err(k("confirmations"), "must be between 1 and 10000"));
        }
        policy.confirmations = c;
    }
    policy.expires_in = chrono_duration(duration_or(
        &k("expires_in"),
        raw.expires_in.as_deref(),
        DEFAULT_EXPIRES_IN,
    )?);
    policy.late_window = chrono_duration(duration_or(
        &k("late_window"),
        raw.late_window.as_deref(),
        DEFAULT_LATE_WINDOW,
    )?);
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
    let poll_interval = duration_or(&k("poll_interval"), raw.poll_interval.as_deref(), DEFAULT_POLL_INTERVAL)?;
    let call_timeout = duration_or(&k("timeout"), raw.timeout.as_deref(), DEFAULT_CALL_TIMEOUT)?;
    let default_blocks = match backend {
        Backend::Evm => DEFAULT_EVM_BLOCKS_PER_POLL,
        Backend::Rippled => DEFAULT_XRP_LEDGERS_PER_POLL,
        _ => DEFAULT_MAX_BLOCKS_PER_STEP,
    };
    let api_version = match (backend, raw.api_version) {
        (Backend::Rippled, None) => 2,
        (Backend::Rippled, Some(v @ (1 | 2))) => v,
        (Backend::Rippled, Some(v)) => {
            return Err(err(
                k("api_version"),
                format!("{v} is not a rippled API version (1 or 2)"),
            ));
        }
        (_, Some(_)) => return Err(err(k("api_version"), "api_version is for backend \"rippled\"")),
        (_, None) => 0,
    };
    let max_blocks_per_poll = raw.max_blocks_per_poll.unwrap_or(default_blocks).max(1);
    let evm = match backend {
        Backend::Evm => {
            let contract = raw.contract.as_deref().unwrap_or(USDT_BSC_CONTRACT);
            let contract = paywatch_chains::evm::parse_evm_address(contract).map_err(|e| err(k("contract"), e))?;
            let decimals = raw.decimals.unwrap_or(asset.decimals() as u8);
            if u32::from(decimals) != asset.decimals() {
                return Err(err(
                    k("decimals"),
                    format!(
                        "{asset} amounts have {} decimals; a token with {decimals} is another asset",
                        asset.decimals()
                    ),
                ));
            }
            let chain_id = raw.chain_id.unwrap_or(BSC_CHAIN_ID);
            policy.contract = Some(contract.clone());
            policy.chain_id = Some(chain_id);
            Some(EvmToken {
                contract,
                decimals,
                chain_id,
            })
        }
        _ => {
            let contract_here = raw.contract.is_some() && backend != Backend::TronHttp;
            for (field, set) in [
                ("contract", contract_here),
                ("decimals", raw.decimals.is_some()),
                ("chain_id", raw.chain_id.is_some()),
            ] {
                if set {
                    return Err(err(k(field), format!("{field} is for backend \"evm\"")));
                }
            }
            None
        }
    };
    let retry_max = duration_or(&k("retry_max"), raw.retry_max.as_deref(), BACKOFF_MAX)?;
    let max_rps = match raw.max_rps {
        Some(r) if !r.is_finite() || r < 0.0 => {
            return Err(err(
                k("max_rps"),
                "must be a number of requests per second, 0 for no limit",
            ));
        }
        Some(r) => r,
        // TronGrid's per-key limit; an own node has none.
        None if backend == Backend::TronHttp && urls.iter().any(|u| u.contains("trongrid.io")) => {
            DEFAULT_TRONGRID_MAX_RPS
        }
        None => 0.0,
    };
    let max_lag = duration_or(&k("max_lag"), raw.max_lag.as_deref(), default_max_lag(asset))?;
    if max_lag.is_zero() {
        return Err(err(k("max_lag"), "must be longer than zero"));
    }
    let tron = match backend {
        Backend::TronHttp => {
            let contract = raw
                .contract
                .as_deref()
                .unwrap_or(paywatch_chains::tron::USDT_TRC20_CONTRACT);
            let (_, contract) =
                paywatch_chains::tron::parse_tron_address(contract).map_err(|e| err(k("contract"), e))?;
            let api_key = raw
                .api_key_file
                .as_deref()
                .map(|f| read_secret(&k("api_key_file"), f))
                .transpose()?;
            policy.contract = Some(contract.clone());
            Some(TronSettings { contract, api_key })
        }
        _ if raw.api_key_file.is_some() => {
            return Err(err(k("api_key_file"), "api_key_file is for backend \"tron-http\""));
        }
        _ => None,
    };
    Ok(AssetConfig {
        asset,
        backend,
        urls,
        auth,
        network,
        policy,
        poll_interval,
        call_timeout,
        max_blocks_per_poll,
        evm,
        api_version,
        tron,
        retry_max,
        max_rps,
        max_lag,
        refuse_when_lagging: raw.refuse_when_lagging.unwrap_or(false),
    })
}

/// How long a chain's tip may stand still before rounds stop counting for
/// expiry: ten usual block intervals, at least 30 s (a stuck backend's
/// "tip" proves nothing about what came after it).
pub fn max_head_age(asset: Asset) -> Duration {
    let block = match asset {
        Asset::Btc => 600,
        Asset::Ltc => 150,
        Asset::Xrp => 4,
        Asset::UsdtBsc => 1,
        Asset::UsdtTrc20 => 3,
    };
    Duration::from_secs((block * 10).max(30))
}

/// TronGrid allows about 15 requests per second per key: stay under it.
pub const DEFAULT_TRONGRID_MAX_RPS: f64 = 12.0;

/// How long an asset may go without reaching a moving tip before it is
/// flagged as lagging: a few times the chain's usual block interval (BTC
/// blocks often take an hour).
fn default_max_lag(asset: Asset) -> Duration {
    Duration::from_secs(match asset {
        Asset::Btc => 90 * 60,
        Asset::Ltc => 30 * 60,
        Asset::Xrp | Asset::UsdtBsc | Asset::UsdtTrc20 => 2 * 60,
    })
}

fn read_secret(key: &str, path: &Path) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| err(key, format!("cannot read {}: {e}", path.display())))?;
    let value = text.trim();
    if value.is_empty() {
        return Err(err(key, format!("{} is empty", path.display())));
    }
    Ok(Secret::new(value))
}

fn duration_or(key: &str, text: Option<&str>, default: Duration) -> Result<Duration, ConfigError> {
    match text {
        None => Ok(default),
        Some(t) => parse_duration(t).map_err(|m| err(key, m)),
    }
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// `"500ms"`, `"30s"`, `"15m"`, `"24h"`, `"7d"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like \"30s\", \"15m\" or \"24h\""))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        "d" => Duration::from_secs(n.saturating_mul(86_400)),
        _ => return Err(format!("{text:?} has no unit; use ms, s, m, h or d")),
    };
    if d.is_zero() {
        return Err(format!("{text:?} must be longer than zero"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, |_| None)
    }

    fn valid_ltc_mainnet() -> &'static str {
        "ltc1qkehv22jw3dzxlwdj29wvh70m5nwanc3jyajwwz"
    }

    #[test]
    fn a_minimal_config_gets_the_spec_defaults() {
        let c = parse(&format!(
            "[assets.LTC]\nbackend = \"core-rpc\"\nurl = \"http://127.0.0.1:9332\"\naddresses = [\"{}\"]\n",
            valid_ltc_mainnet()
        ))
        .expect("valid");
        assert_eq!(c.api.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
        let ltc = &c.assets[0];
        assert_eq!(
            (ltc.asset, ltc.network, ltc.policy.match_mode, ltc.policy.confirmations),
            (Asset::Ltc, Network::Mainnet, MatchMode::Address, 6)
        );
        assert_eq!(ltc.policy.late_window, chrono::Duration::hours(24));
        assert!(ltc.policy.mempool);
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (
                "[assets.LTC]\nbackend = \"core-rpc\"\nurl = \"http://x\"\nbogus = 1\n",
                "bogus",
            ),
            (
                "[api]\nlisten = \"nope\"\n[assets.LTC]\nbackend = \"core-rpc\"\nurl = \"http://x\"\n",
                "api.listen",
            ),
            (
                "[assets.DOGE]\nbackend = \"core-rpc\"\nurl = \"http://x\"\n",
                "assets.DOGE",
            ),
            (
                "[assets.LTC]\nbackend = \"esplora2\"\nurl = \"http://x\"\n",
                "assets.LTC.backend",
            ),
            (
                "[assets.LTC]\nbackend = \"core-rpc\"\nurl = \"http://x\"\nnetwork = \"regtest\"\naddresses = [\"ltc1qkehv22jw3dzxlwdj29wvh70m5nwanc3jyajwwz\"]\n",
                "assets.LTC.addresses[0]",
            ),
            (
                "[assets.LTC]\nbackend = \"core-rpc\"\nurl = \"http://x\"\naddresses = [\"ltc1qkehv22jw3dzxlwdj29wvh70m5nwanc3jyajwwy\"]\n",
                "assets.LTC.addresses[0]",
            ),
            (
                "[assets.LTC]\nbackend = \"core-rpc\"\nurl = \"http://x\"\npoll_interval = \"5\"\n",
                "assets.LTC.poll_interval",
            ),
            (
                "[assets.LTC]\nbackend = \"core-rpc\"\nurl = \"http://x\"\nmatch = \"tag\"\n",
                "assets.LTC.match",
            ),
            (
                "[assets.LTC]\nbackend = \"core-rpc\"\nurl = \"http://x\"\nrpc_user = \"u\"\n",
                "assets.LTC.rpc_password_file",
            ),
            (
                "[webhook]\nurl = \"http://x\"\n[assets.LTC]\nbackend = \"core-rpc\"\nurl = \"http://x\"\n",
                "webhook.secret_file",
            ),
            ("", "assets"),
        ];
        for (text, key) in cases {
            let e = parse(text).expect_err(key);
            let shown = e.to_string();
            assert!(shown.contains(key), "{key}: {shown}");
        }
    }

    #[test]
    fn wrong_network_is_explained() {
        let e = parse(&format!(
            "[assets.LTC]\nbackend = \"core-rpc\"\nurl = \"http://x\"\nnetwork = \"regtest\"\naddresses = [\"{}\"]\n",
            valid_ltc_mainnet()
        ))
        .expect_err("mainnet address on regtest");
        assert!(e.to_string().contains("mainnet"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in ["", "5", "s", "-5s", "1.5h", "0s", "5 weeks"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_come_from_files_and_never_print() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret_path = dir.path().join("pw");
        std::fs::write(&secret_path, "s3cret-password\n").expect("write");
        let c = parse(&format!(
            "[assets.LTC]\nbackend = \"core-rpc\"\nurl = \"http://x\"\nrpc_user = \"u\"\nrpc_password_file = \"{}\"\n",
            secret_path.display()
        ))
        .expect("valid");
        let debug = format!("{c:?}");
        assert!(!debug.contains("s3cret-password"), "Debug leaks the secret: {debug}");
        match &c.assets[0].auth {
            RpcAuth::UserPassword { password, .. } => assert_eq!(password.expose(), "s3cret-password"),
            other => panic!("{other:?}"),
        }
    }
}
