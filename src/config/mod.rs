//! The configuration file (docs/config.md): one TOML file, unknown keys are
//! errors, durations are strings (`"30s"`, `"15m"`, `"24h"`), secrets come
//! from files or the environment and never from the command line.
//!
//! `Config::load` reads and validates everything (secret files included) and
//! has no other side effect; every error names the key it is about.
//!
//! - `asset` — an `[assets.CODE]` table: the keys every backend shares
//! - `backend` — each backend's own keys, typed, in `BackendConfig`
//! - `defaults` — every default, named, in one place
//! - `rates` — fiat exchange-rate sources
//! - `store` — the embedded store or PostgreSQL, and `[cluster]`
//! - `tokens` — named API tokens with scopes
//! - `values` — durations, secret files, the error naming its key

mod asset;
mod backend;
pub mod defaults;
mod rates;
mod store;
mod tokens;
mod values;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use paywatch_chains::Secret;
use paywatch_state::Asset;
use serde::Deserialize;

pub use self::asset::AssetConfig;
pub use self::backend::{BackendConfig, EvmToken, TronToken};
pub use self::rates::{Provider, RateSource, RatesConfig};
pub use self::store::{ClusterConfig, StoreConfig};
pub(crate) use self::store::{is_postgres_url, parse_store};
pub use self::tokens::{ApiToken, Scope};
pub use self::values::{ConfigError, parse_duration};
use self::values::{duration_or, err, http_url, read_secret, toml_message};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    state_dir: Option<PathBuf>,
    store: Option<String>,
    store_password_file: Option<PathBuf>,
    #[serde(default)]
    cluster: store::RawCluster,
    #[serde(default)]
    api: RawApi,
    webhook: Option<RawWebhook>,
    #[serde(default)]
    log: RawLog,
    rates: Option<rates::RawRates>,
    checkout: Option<RawCheckout>,
    #[serde(default)]
    assets: BTreeMap<String, toml::Table>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheckout {
    base_url: Option<String>,
    enabled: Option<bool>,
    show_external_id: Option<bool>,
    requests_per_minute: Option<u32>,
    trust_forwarded_for: Option<bool>,
}

/// `[checkout]`: the customer's payment page (docs/checkout.md).
#[derive(Clone, Debug, PartialEq)]
pub struct CheckoutConfig {
    /// The public URL paywatch's `/pay` is reached at (`https://shop.example/pay`).
    pub base_url: String,
    pub show_external_id: bool,
    /// Requests to the public pages per client and minute.
    pub requests_per_minute: u32,
    /// Take the client from the last `X-Forwarded-For` entry (behind a proxy).
    pub trust_forwarded_for: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    listen: Option<String>,
    token_file: Option<PathBuf>,
    tokens_file: Option<PathBuf>,
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

#[derive(Clone, Debug)]
pub struct Config {
    pub state_dir: PathBuf,
    /// `store`: the embedded file in `state_dir`, or PostgreSQL.
    pub store: StoreConfig,
    pub cluster: ClusterConfig,
    pub api: ApiConfig,
    pub webhook: Option<WebhookConfig>,
    pub log: LogConfig,
    /// `[rates]`: needed to price intents in fiat.
    pub rates: Option<RatesConfig>,
    /// `[checkout]`, unless absent or `enabled = false`.
    pub checkout: Option<CheckoutConfig>,
    pub assets: Vec<AssetConfig>,
}

#[derive(Clone, Debug)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    /// From `api.token_file` or `PAYWATCH_API_TOKEN`; when `None` the daemon
    /// generates `<state_dir>/api-token` at first start.
    pub token: Option<Secret>,
    /// From `api.tokens_file`: named tokens with scopes. When given, they
    /// are the only tokens (`token` is not used).
    pub tokens: Vec<ApiToken>,
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
            .unwrap_or_else(|| PathBuf::from(defaults::STATE_DIR));

        let listen_text = raw.api.listen.as_deref().unwrap_or(defaults::LISTEN);
        let listen = listen_text
            .parse::<SocketAddr>()
            .map_err(|_| err("api.listen", format!("{listen_text:?} is not an IP:port address")))?;
        let token = match (&raw.api.token_file, env("PAYWATCH_API_TOKEN")) {
            (Some(file), _) => Some(read_secret("api.token_file", file)?),
            (None, Some(t)) if !t.trim().is_empty() => Some(Secret::new(t.trim())),
            _ => None,
        };
        let tokens = match (&raw.api.tokens_file, &raw.api.token_file) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "api.tokens_file",
                    "use either api.token_file (one token) or api.tokens_file (named tokens with scopes)",
                ));
            }
            (Some(file), None) => tokens::read_tokens("api.tokens_file", file)?,
            (None, _) => Vec::new(),
        };

        let store = store::parse_store(raw.store, raw.store_password_file, &env)?;
        let cluster = store::parse_cluster(raw.cluster, &env)?;
        if matches!(store, StoreConfig::Postgres(_)) && token.is_none() && tokens.is_empty() {
            // A token generated in one instance's state_dir would not open
            // the others: every instance must accept the same tokens.
            return Err(err(
                "api.token_file",
                "instances sharing a PostgreSQL store need the same API token: set api.token_file, PAYWATCH_API_TOKEN or api.tokens_file",
            ));
        }
        let webhook = raw.webhook.map(|w| parse_webhook(w, &env)).transpose()?;
        let rates = raw.rates.map(rates::parse_rates).transpose()?;
        let checkout = match raw.checkout {
            Some(c) if c.enabled != Some(false) => Some(parse_checkout(c)?),
            _ => None,
        };

        let level = raw.log.level.unwrap_or_else(|| defaults::LOG_LEVEL.into());
        let json = match raw.log.format.as_deref() {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => return Err(err("log.format", format!("{other:?} is not \"text\" or \"json\""))),
        };

        let mut assets = Vec::new();
        for (code, raw_asset) in raw.assets {
            let key = format!("assets.{code}");
            let asset: Asset = code.parse().map_err(|e| err(&key, e))?;
            assets.push(asset::parse_asset(asset, &key, raw_asset)?);
        }
        if assets.is_empty() {
            return Err(err(
                "assets",
                "no asset is configured; add at least one [assets.CODE] table",
            ));
        }
        Ok(Config {
            state_dir,
            store,
            cluster,
            api: ApiConfig { listen, token, tokens },
            webhook,
            log: LogConfig { json, level },
            rates,
            checkout,
            assets,
        })
    }

    pub fn asset(&self, asset: Asset) -> Option<&AssetConfig> {
        self.assets.iter().find(|a| a.asset == asset)
    }
}

fn parse_checkout(c: RawCheckout) -> Result<CheckoutConfig, ConfigError> {
    let base = c.base_url.ok_or_else(|| {
        err(
            "checkout.base_url",
            "the public URL of the pages is required, such as \"https://shop.example/pay\" (proxied to paywatch's /pay)",
        )
    })?;
    let url = http_url("checkout.base_url", &base)?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(err(
            "checkout.base_url",
            "must be an http or https URL without query or fragment",
        ));
    }
    let requests_per_minute = c.requests_per_minute.unwrap_or(defaults::CHECKOUT_REQUESTS_PER_MINUTE);
    if requests_per_minute == 0 {
        return Err(err("checkout.requests_per_minute", "must be at least 1"));
    }
    Ok(CheckoutConfig {
        base_url: base.trim_end_matches('/').to_string(),
        show_external_id: c.show_external_id.unwrap_or(false),
        requests_per_minute,
        trust_forwarded_for: c.trust_forwarded_for.unwrap_or(false),
    })
}

fn parse_webhook(w: RawWebhook, env: &impl Fn(&str) -> Option<String>) -> Result<WebhookConfig, ConfigError> {
    http_url("webhook.url", &w.url)?;
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
    let timeout = duration_or("webhook.timeout", w.timeout.as_deref(), defaults::WEBHOOK_TIMEOUT)?;
    let max_age = duration_or("webhook.max_age", w.max_age.as_deref(), defaults::WEBHOOK_MAX_AGE)?;
    let retry_initial = duration_or(
        "webhook.retry_initial",
        w.retry_initial.as_deref(),
        defaults::WEBHOOK_RETRY_INITIAL,
    )?;
    let retry_max = duration_or("webhook.retry_max", w.retry_max.as_deref(), defaults::WEBHOOK_RETRY_MAX)?;
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

#[cfg(test)]
mod tests;
