//! What the engine knows of each asset's polling: health for `/v1/status`
//! and `/readyz`, lag, and the poll metrics.

use chrono::{DateTime, Utc};
use paywatch_chains::http::EndpointStatus;
use paywatch_state::Asset;

use super::Engine;
use crate::poller::PollReport;

/// What `/v1/status` shows per asset; kept in memory, rebuilt by the first poll.
#[derive(Clone, Debug, Default)]
pub struct AssetHealth {
    pub backend: &'static str,
    pub polled_ok_once: bool,
    pub healthy: bool,
    pub tip_height: Option<u64>,
    pub scanned_height: Option<u64>,
    pub last_poll_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub warnings: Vec<String>,
    pub endpoints: Vec<EndpointStatus>,
    /// Start of the last round that reached the tip without error.
    pub synced_at: Option<DateTime<Utc>>,
    /// When the tip height last changed, as paywatch saw it (head age).
    pub tip_changed_at: Option<DateTime<Utc>>,
}

/// How far an asset is behind its chain.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Lag {
    pub blocks: Option<u64>,
    /// Seconds since the last round that reached the tip (since start if none).
    pub scan_seconds: i64,
    /// Seconds since the tip last moved.
    pub head_age_seconds: Option<i64>,
    pub lagging: bool,
}

impl Engine {
    /// The asset's health; `scanned_height` is the stored cursor, so a long
    /// catch-up round shows its progress while it runs.
    pub fn health(&self, asset: Asset) -> Option<AssetHealth> {
        let mut h = self
            .health
            .get(&asset)
            .map(|h| h.lock().unwrap_or_else(|p| p.into_inner()).clone())?;
        if let Ok(Some(state)) = self.store.chain_state(asset) {
            h.scanned_height = Some(state.cursor.height);
            if !self.scans_here(asset) {
                // Another instance scans it (a shared store): what that one
                // stored with the cursor is what is known here. The lag is
                // judged by the start of its last round that reached the tip,
                // so a scanner that fails, lags or stops shows here too.
                h.tip_height = Some(state.tip.height);
                h.last_poll_at = Some(state.updated_at);
                h.synced_at = state.synced_at;
                h.tip_changed_at = state.tip_rose_at;
                h.polled_ok_once = state.synced_at.is_some();
                h.healthy = state.synced_at.is_some();
                h.last_error = None;
                h.warnings.clear();
                h.endpoints.clear();
            }
        }
        Some(h)
    }

    /// How far `asset` is behind its chain, now.
    pub fn lag(&self, asset: Asset) -> Option<Lag> {
        self.lag_of(asset, &self.health(asset)?)
    }

    /// `lag` from a health already read.
    pub fn lag_of(&self, asset: Asset, h: &AssetHealth) -> Option<Lag> {
        let (max_lag, _) = self.lag_policies.get(&asset).copied()?;
        let now = self.clock.now();
        let since = |t: DateTime<Utc>| (now - t).num_seconds().max(0);
        let scan_seconds = since(h.synced_at.unwrap_or(self.started_at));
        let head_age_seconds = h.tip_changed_at.map(since);
        let limit = i64::try_from(max_lag.as_secs()).unwrap_or(i64::MAX);
        Some(Lag {
            blocks: match (h.tip_height, h.scanned_height) {
                (Some(t), Some(s)) => Some(t.saturating_sub(s)),
                _ => None,
            },
            scan_seconds,
            head_age_seconds,
            lagging: scan_seconds > limit || head_age_seconds.is_some_and(|a| a > limit),
        })
    }

    /// Whether new intents on `asset` are refused because it lags.
    pub fn refuses_new_intents(&self, asset: Asset) -> bool {
        self.lag_policies.get(&asset).is_some_and(|(_, refuse)| *refuse) && self.lag(asset).is_some_and(|l| l.lagging)
    }

    /// Sets the lag gauges of every asset (on every poll and scrape).
    pub fn refresh_lag_metrics(&self) {
        for asset in self.assets() {
            if let Some(lag) = self.lag(asset) {
                let code = asset.code();
                self.metrics
                    .last_success_age
                    .with_label_values(&[code])
                    .set(lag.scan_seconds);
                self.metrics
                    .lagging
                    .with_label_values(&[code])
                    .set(i64::from(lag.lagging));
                if let Some(age) = lag.head_age_seconds {
                    self.metrics.head_age.with_label_values(&[code]).set(age);
                }
            }
        }
    }

    /// Records a round's outcome (health, endpoint and poll metrics).
    pub fn record_poll(&self, report: &PollReport) {
        let asset = report.asset.code();
        let m = &self.metrics;
        m.poll_duration
            .with_label_values(&[asset])
            .observe(report.duration.as_secs_f64());
        if let Some((kind, _)) = &report.error {
            m.poll_errors.with_label_values(&[asset, kind]).inc();
        }
        let Some(lock) = self.health.get(&report.asset) else {
            return;
        };
        let mut h = lock.lock().unwrap_or_else(|p| p.into_inner());
        h.last_poll_at = Some(report.started_at);
        h.warnings = report.warnings.clone();
        for (now, before) in report
            .endpoints
            .iter()
            .zip(h.endpoints.iter().map(Some).chain(std::iter::repeat(None)))
        {
            let endpoint = now.index.to_string();
            let labels = |outcome| [asset, endpoint.as_str(), outcome];
            let prev = before.cloned().unwrap_or_default();
            let ok = now.requests.saturating_sub(now.failures + now.rate_limits);
            let ok_before = prev.requests.saturating_sub(prev.failures + prev.rate_limits);
            m.endpoint_requests
                .with_label_values(&labels("ok"))
                .inc_by(ok.saturating_sub(ok_before));
            m.endpoint_requests
                .with_label_values(&labels("error"))
                .inc_by(now.failures.saturating_sub(prev.failures));
            m.endpoint_requests
                .with_label_values(&labels("rate_limited"))
                .inc_by(now.rate_limits.saturating_sub(prev.rate_limits));
            m.endpoint_up
                .with_label_values(&[asset, endpoint.as_str()])
                .set(i64::from(now.healthy == Some(true)));
            if let Some(height) = now.height {
                m.endpoint_height
                    .with_label_values(&[asset, endpoint.as_str()])
                    .set(height as i64);
            }
        }
        h.endpoints = report.endpoints.clone();
        if let Some(tip) = &report.tip {
            if h.tip_height != Some(tip.height) || h.tip_changed_at.is_none() {
                h.tip_changed_at = Some(report.started_at);
            }
            h.tip_height = Some(tip.height);
        }
        if let Some(scanned) = report.scanned {
            h.scanned_height = Some(scanned);
        }
        match &report.error {
            None => {
                h.healthy = true;
                h.polled_ok_once = true;
                h.last_error = None;
                h.synced_at = Some(report.started_at);
            }
            Some((_, message)) => {
                h.healthy = false;
                h.last_error = Some(message.clone());
            }
        }
        if let Some(tip) = h.tip_height {
            m.tip_height.with_label_values(&[asset]).set(tip as i64);
            if let Some(scanned) = h.scanned_height {
                m.scanned_height.with_label_values(&[asset]).set(scanned as i64);
                m.lag_blocks
                    .with_label_values(&[asset])
                    .set(tip.saturating_sub(scanned) as i64);
            }
        }
        drop(h);
        self.refresh_lag_metrics();
    }
}
