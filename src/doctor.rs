//! `paywatch doctor`: the configuration against the live backends, before
//! the first payment finds a wrong URL (docs/cli.md). Each asset's backend
//! is asked what the daemon asks at start (the chain and network, the token
//! contract and its decimals, `eth_getLogs`, XRP's `RequireDest`, the API
//! key), for its tip and the tip's time (synced: made within `max_lag`),
//! through every configured endpoint; nothing is written anywhere.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use paywatch_chains::http::redact_url;
use paywatch_chains::source::ChainSource;
use paywatch_chains::{ChainError, Network};
use paywatch_state::Asset;

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
    let (mut failed, mut sync_warned) = (false, false);
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
            let made = tokio::time::timeout(limit, source.tip_time(&tip)).await;
            let (line, judged) = match made {
                Ok(Ok(Some(made))) => judge_sync(made, chrono::Utc::now(), asset),
                Ok(Ok(None)) => (
                    "synced: unknown (the tip's time could not be read: the endpoint asked lacks the \
                     block, behind the one that answered the tip?)"
                        .into(),
                    Judged::Warn,
                ),
                Ok(Err(e)) => (
                    format!("synced: unknown (cannot read the tip's time: {})", explain(&e)),
                    Judged::Warn,
                ),
                Err(_) => ("synced: unknown (no answer for the tip's time)".into(), Judged::Warn),
            };
            failed |= judged == Judged::Fail;
            sync_warned = judged == Judged::Warn;
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
    let warned = !warnings.is_empty() || sync_warned;
    findings.extend(warnings.into_iter().map(|w| format!("warning: {w}")));
    verdict(asset, failed, warned, findings)
}

/// What one finding makes of the asset's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Judged {
    Ok,
    Warn,
    Fail,
}

/// Whether the tip is recent: made within the asset's `max_lag`, the
/// longest the daemon lets an asset go without reaching a moving tip. A
/// node still syncing answers with a tip from the past; endpoints compared
/// with each other cannot show that when all of them are behind. On
/// regtest, where blocks come only when asked, an old tip is a warning.
fn judge_sync(made: DateTime<Utc>, now: DateTime<Utc>, asset: &AssetConfig) -> (String, Judged) {
    // Bitcoin and Litecoin accept block times up to 2 h ahead; the others
    // stamp blocks with their producers' clocks.
    let ahead_allowed = match asset.asset {
        Asset::Btc | Asset::Ltc => Duration::from_secs(2 * 3600),
        _ => Duration::from_secs(60),
    };
    if let Ok(ahead) = (made - now).to_std()
        && ahead > ahead_allowed
    {
        return (
            format!(
                "synced: unknown (the newest block's time is {} ahead of this machine's clock: check the clock, NTP)",
                span(ahead)
            ),
            Judged::Warn,
        );
    }
    let age = (now - made).to_std().unwrap_or_default();
    if age <= asset.max_lag {
        return (
            format!("synced: the newest block was made {} ago", span(age)),
            Judged::Ok,
        );
    }
    let made_when = format!(
        "the newest block was made {} ago ({made}), more than max_lag ({})",
        span(age),
        span(asset.max_lag)
    );
    if asset.network == Network::Regtest {
        return (
            format!("synced: {made_when}; a regtest chain makes blocks only when asked"),
            Judged::Warn,
        );
    }
    (
        format!("NOT synced: {made_when}: the node is still syncing, or stuck (or this machine's clock is wrong)"),
        Judged::Fail,
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    fn asset(code: &str, keys: &str) -> AssetConfig {
        let text = format!("[assets.{code}]\nurl = \"http://127.0.0.1:1\"\n{keys}\n");
        let config = Config::parse(&text, |_| None).expect("a valid config");
        config.assets.into_iter().next().expect("one asset")
    }

    #[test]
    fn a_tip_is_synced_up_to_max_lag_and_not_a_second_more() {
        // LTC on mainnet: max_lag 30 min by default.
        let ltc = asset(
            "LTC",
            "backend = \"core-rpc\"\naddresses = [\"ltc1qkehv22jw3dzxlwdj29wvh70m5nwanc3jyajwwz\"]",
        );
        let now = Utc::now();
        let (line, judged) = judge_sync(now - chrono::Duration::minutes(30), now, &ltc);
        assert_eq!(judged, Judged::Ok, "{line}");
        assert_eq!(line, "synced: the newest block was made 30m 0s ago");
        let (line, judged) = judge_sync(now - chrono::Duration::seconds(30 * 60 + 1), now, &ltc);
        assert_eq!(judged, Judged::Fail, "{line}");
        assert!(
            line.starts_with("NOT synced: the newest block was made 30m 1s ago") && line.contains("max_lag (30m 0s)"),
            "{line}"
        );
        // Ahead of this clock within the 2 h Bitcoin-family chains allow: synced.
        let (_, judged) = judge_sync(now + chrono::Duration::minutes(90), now, &ltc);
        assert_eq!(judged, Judged::Ok);
        let (line, judged) = judge_sync(now + chrono::Duration::hours(3), now, &ltc);
        assert_eq!(judged, Judged::Warn);
        assert!(line.contains("ahead of this machine's clock"), "{line}");
    }

    #[test]
    fn on_regtest_an_old_tip_is_a_warning_and_elsewhere_the_clock_is_strict() {
        let regtest = asset("LTC", "backend = \"core-rpc\"\nnetwork = \"regtest\"");
        let now = Utc::now();
        let (line, judged) = judge_sync(now - chrono::Duration::hours(5), now, &regtest);
        assert_eq!(judged, Judged::Warn, "{line}");
        assert!(line.contains("a regtest chain makes blocks only when asked"), "{line}");
        // XRP: max_lag 2 min; a ledger 2 min ahead of this clock is the clock.
        let xrp = asset(
            "XRP",
            "backend = \"rippled\"\naddresses = [\"rPT1Sjq2YGrBMTttX4GZHjKu9dyfzbpAYe\"]",
        );
        let (_, judged) = judge_sync(now - chrono::Duration::seconds(121), now, &xrp);
        assert_eq!(judged, Judged::Fail);
        let (_, judged) = judge_sync(now + chrono::Duration::seconds(120), now, &xrp);
        assert_eq!(judged, Judged::Warn);
    }
}
