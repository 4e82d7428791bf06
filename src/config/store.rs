//! `store` and `[cluster]`: where state lives (the embedded file in
//! `state_dir`, or PostgreSQL shared by several instances) and how the
//! instances share the work (docs/high-availability.md).

use std::path::PathBuf;
use std::time::Duration;

use paywatch_state::PgOptions;
use serde::Deserialize;

use super::defaults;
use super::values::{ConfigError, duration_or, err, read_secret};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    instance: Option<String>,
    lease_ttl: Option<String>,
}

/// Where the state lives.
#[derive(Clone, Debug)]
pub enum StoreConfig {
    /// `paywatch.redb` in `state_dir`: one instance.
    Embedded,
    /// A PostgreSQL database several instances may share.
    Postgres(Box<PgOptions>),
}

/// How instances on one database share the scanning and the deliveries.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// This instance's name in leases, status and metrics.
    pub instance: String,
    /// How long a lease lasts unrenewed: a dead leader's work is taken over
    /// within about this long.
    pub lease_ttl: Duration,
}

pub(crate) fn parse_store(
    url: Option<String>,
    password_file: Option<PathBuf>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<StoreConfig, ConfigError> {
    let Some(url) = url else {
        if password_file.is_some() {
            return Err(err(
                "store_password_file",
                "is only used with store = \"postgres://...\"",
            ));
        }
        return Ok(StoreConfig::Embedded);
    };
    if !is_postgres_url(&url) {
        return Err(err(
            "store",
            "must be a postgres:// URL; leave it out for the embedded store in state_dir",
        ));
    }
    let password = match (&password_file, env("PAYWATCH_STORE_PASSWORD")) {
        (Some(file), _) => Some(read_secret("store_password_file", file)?.expose().to_string()),
        (None, Some(p)) if !p.is_empty() => Some(p),
        _ => None,
    };
    PgOptions::parse(&url, password)
        .map(|options| StoreConfig::Postgres(Box::new(options)))
        .map_err(|message| err("store", message))
}

pub(super) fn parse_cluster(
    raw: RawCluster,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<ClusterConfig, ConfigError> {
    let instance = match raw.instance {
        Some(name) => name,
        None => env("HOSTNAME")
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "paywatch".into()),
    };
    if instance.is_empty()
        || instance.len() > 64
        || !instance.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(err(
            "cluster.instance",
            "must be 1 to 64 letters, digits, '-', '_' or '.'",
        ));
    }
    let lease_ttl = duration_or("cluster.lease_ttl", raw.lease_ttl.as_deref(), defaults::LEASE_TTL)?;
    if lease_ttl < Duration::from_secs(2) || lease_ttl > Duration::from_secs(300) {
        return Err(err("cluster.lease_ttl", "must be between 2s and 5m"));
    }
    Ok(ClusterConfig { instance, lease_ttl })
}

/// Whether `location` names a PostgreSQL store (else a state directory).
pub(crate) fn is_postgres_url(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}
