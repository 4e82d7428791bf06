//! `paywatch doctor`: the configuration against the live backends, before
//! the first payment finds a wrong URL (docs/cli.md). Each asset's backend
//! is asked what the daemon asks at start (the chain and network, the token
//! contract and its decimals, `eth_getLogs`, XRP's `RequireDest`, the API
//! key), for its tip and the tip's time (synced: made within `max_lag`),
//! through every configured endpoint; nothing is written anywhere.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use paywatch_chains::ChainError;
use paywatch_chains::http::redact_url;
use paywatch_chains::source::ChainSource;

use crate::backends;
use crate::config::{AssetConfig, Config};

/// What was found for one asset.
pub struct Verdict {
    pub failed: bool,
    pub warned: bool,
    /// A heading line and the findings under it, ready to print.
    pub text: String,
}

/// Checks every asset, all at once; verdicts in config order.
pub async fn check(config: &Config) -> Vec<Verdict> {
    let mut checks = tokio::task::JoinSet::new();
    for (index, asset) in config.assets.iter().enumerate() {
        let asset = asset.clone();
        checks.spawn(async move { (index, check_asset(&asset).await) });
    }
    let mut verdicts = Vec::new();
    while let Some(joined) = checks.join_next().await {
        match joined {
            Ok(found) => verdicts.push(found),
            Err(e) => verdicts.push((
                usize::MAX,
                Verdict {
                    failed: true,
                    warned: false,
                    text: format!("a check failed to run: {e}\n"),
                },
            )),
        }
    }
    verdicts.sort_by_key(|(index, _)| *index);
    verdicts.into_iter().map(|(_, v)| v).collect()
}

/// A check's time limit: a few calls, each within the asset's `timeout`.
const CALLS: u32 = 4;

async fn check_asset(asset: &AssetConfig) -> Verdict {
    let mut findings = Vec::new();
    let mut failed = false;
    let limit = asset.call_timeout * CALLS;
    let source: Arc<dyn ChainSource> = match backends::source(asset) {
        Ok(source) => source,
        Err(e) => {
            return verdict(asset, true, false, vec![format!("cannot build the backend: {e:#}")]);
        }
    };
    match tokio::time::timeout(limit, source.preflight()).await {
        Ok(Ok(())) => findings.push(format!(
            "right chain and network ({}){}",
            asset.network,
            match &asset.backend {
                crate::config::BackendConfig::Evm(token) => format!(
                    "; token {} with {} decimals; eth_getLogs served",
                    token.contract, token.decimals
                ),
                crate::config::BackendConfig::TronHttp(token) => format!("; token {}", token.contract),
                _ => String::new(),
            }
        )),
        Ok(Err(e)) => {
            failed = true;
            findings.push(explain(&e));
        }
        Err(_) => {
            failed = true;
            findings.push(format!("no answer to the start-up checks within {}s", limit.as_secs()));
        }
    }
    match tokio::time::timeout(limit, source.tip()).await {
        Ok(Ok(tip)) => {
            findings.push(format!(
                "tip: {} ({}){}",
                tip.height,
                tip.hash,
                tip.finalized.map(|f| format!(", finalized {f}")).unwrap_or_default()
            ));
            let (line, synced) = judge_sync(asset, tokio::time::timeout(limit, source.tip_time(&tip)).await);
            failed |= synced == Some(false);
            findings.push(line);
        }
        Ok(Err(e)) => {
            failed = true;
            findings.push(format!("cannot read the tip: {}", explain(&e)));
        }
        Err(_) => {
            failed = true;
            findings.push(format!("no tip within {}s", limit.as_secs()));
        }
    }
    let statuses = source.endpoints().statuses();
    let best = statuses.iter().filter_map(|s| s.height).max();
    for (status, url) in statuses.iter().zip(&asset.urls) {
        let mut line = format!("endpoint {} {}: ", status.index, redact_url(url));
        match (status.healthy, &status.last_error) {
            (Some(true), _) => line.push_str("answers"),
            (_, Some(error)) => {
                let _ = write!(line, "fails: {error}");
            }
            (None, None) => line.push_str("not called (another endpoint answered first)"),
            (Some(false), None) => line.push_str("fails"),
        }
        if let Some(height) = status.height {
            let _ = write!(line, ", height {height}");
            if let Some(best) = best
                && best > height + ENDPOINT_BEHIND
            {
                let _ = write!(line, " ({} behind the best endpoint)", best - height);
            }
        }
        findings.push(line);
    }
    let warnings = source.warnings();
    let warned = !warnings.is_empty();
    findings.extend(warnings.into_iter().map(|w| format!("warning: {w}")));
    verdict(asset, failed, warned, findings)
}

/// Whether the tip is recent: made within the asset's `max_lag`, the
/// longest the daemon lets an asset go without reaching a moving tip. A
/// node still syncing answers with a tip from the past; endpoints compared
/// with each other cannot show that when all of them are behind.
fn judge_sync(
    asset: &AssetConfig,
    made: Result<Result<Option<chrono::DateTime<chrono::Utc>>, ChainError>, tokio::time::error::Elapsed>,
) -> (String, Option<bool>) {
    let made = match made {
        Ok(Ok(Some(made))) => made,
        Ok(Ok(None)) => {
            return (
                "synced: unknown (the tip's block was not found to read its time)".into(),
                None,
            );
        }
        Ok(Err(e)) => {
            return (
                format!("synced: unknown (cannot read the tip's time: {})", explain(&e)),
                None,
            );
        }
        Err(_) => return ("synced: unknown (no answer for the tip's time)".into(), None),
    };
    let age = (chrono::Utc::now() - made).to_std().unwrap_or_default();
    if age > asset.max_lag {
        (
            format!(
                "NOT synced: the newest block was made {} ago ({made}), more than max_lag ({}): the node is still syncing, or stuck",
                span(age),
                span(asset.max_lag)
            ),
            Some(false),
        )
    } else {
        (
            format!("synced: the newest block was made {} ago", span(age)),
            Some(true),
        )
    }
}

/// `45s`, `12m 5s`, `3h 20m`.
fn span(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, s % 3600 / 60),
    }
}

/// Blocks an endpoint may trail the best one before it is pointed out.
const ENDPOINT_BEHIND: u64 = 3;

fn explain(e: &ChainError) -> String {
    match e {
        ChainError::Config(message) => format!("configuration: {message}"),
        ChainError::WrongChain(message) => format!("wrong chain or network: {message}"),
        other => format!("{} ({})", other, other.kind()),
    }
}

fn verdict(asset: &AssetConfig, failed: bool, warned: bool, findings: Vec<String>) -> Verdict {
    let word = if failed {
        "FAILED"
    } else if warned {
        "ok, with warnings"
    } else {
        "ok"
    };
    let mut text = format!(
        "{} ({}, {}): {word}\n",
        asset.asset,
        asset.backend.name(),
        asset.network
    );
    for finding in findings {
        let _ = writeln!(text, "  {finding}");
    }
    Verdict { failed, warned, text }
}

/// How long `doctor` waits in all, whatever the assets' timeouts.
pub const OVERALL_LIMIT: Duration = Duration::from_secs(120);
