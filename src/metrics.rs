//! Prometheus metrics (docs/metrics.md). One struct of handles; the `paywatch_`
//! prefix is applied here only; labels are bounded (asset, status, type,
//! kind, outcome), never an address, txid, intent id or URL.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

const PREFIX: &str = "paywatch";

pub struct Metrics {
    registry: Registry,
    pub build_info: IntGaugeVec,
    pub tip_height: IntGaugeVec,
    pub scanned_height: IntGaugeVec,
    pub lag_blocks: IntGaugeVec,
    pub poll_duration: HistogramVec,
    pub poll_errors: IntCounterVec,
    /// Refreshed from the store at scrape time.
    pub intents: IntGaugeVec,
    /// Deposit accounts by status; refreshed from the store at scrape time.
    pub accounts: IntGaugeVec,
    /// Deposits recorded to accounts; refreshed from the store at scrape time.
    pub deposits: IntGaugeVec,
    pub transitions: IntCounterVec,
    pub transfers: IntCounterVec,
    pub detection_to_confirmation: HistogramVec,
    pub webhook_deliveries: IntCounterVec,
    /// Refreshed from the store at scrape time.
    pub webhook_backlog: IntGauge,
    pub webhook_failed: IntGauge,
    pub webhook_delivery_seconds: Histogram,
    pub dust_transfers: IntCounterVec,
    /// Seconds since the asset's last successful poll.
    pub last_success_age: IntGaugeVec,
    /// 1 while the asset is lagging beyond `max_lag`.
    pub lagging: IntGaugeVec,
    /// Seconds since the tip last moved.
    pub head_age: IntGaugeVec,
    pub endpoint_up: IntGaugeVec,
    pub endpoint_height: IntGaugeVec,
    pub endpoint_requests: IntCounterVec,
    /// 1 while a rate source's last read answered every pair, with a fresh
    /// answer among them.
    pub rate_source_up: IntGaugeVec,
    /// Age of each source's answer per pair; refreshed at scrape time.
    pub rate_age: IntGaugeVec,
    pub rate_errors: IntCounterVec,
    /// 1 while this instance holds the lease (a shared store).
    pub lease_held: IntGaugeVec,
    /// Terms this instance began under each lease: takeovers.
    pub lease_terms: IntCounterVec,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace(PREFIX)
}

fn hopts(name: &str, help: &str, buckets: Vec<f64>) -> HistogramOpts {
    HistogramOpts::new(name, help).namespace(PREFIX).buckets(buckets)
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let m = Metrics {
            build_info: IntGaugeVec::new(opts("build_info", "Build information; always 1."), &["version"])?,
            tip_height: IntGaugeVec::new(
                opts(
                    "chain_tip_height",
                    "Best block height (ledger index) the backend reports.",
                ),
                &["asset"],
            )?,
            scanned_height: IntGaugeVec::new(
                opts("chain_scanned_height", "Height durably scanned and applied."),
                &["asset"],
            )?,
            lag_blocks: IntGaugeVec::new(opts("chain_lag_blocks", "Tip height minus scanned height."), &["asset"])?,
            poll_duration: HistogramVec::new(
                hopts(
                    "poll_duration_seconds",
                    "Duration of one poll round.",
                    vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0],
                ),
                &["asset"],
            )?,
            poll_errors: IntCounterVec::new(
                opts("poll_errors_total", "Failed poll rounds by error kind."),
                &["asset", "kind"],
            )?,
            intents: IntGaugeVec::new(opts("intents", "Intents by status."), &["asset", "status"])?,
            accounts: IntGaugeVec::new(opts("accounts", "Deposit accounts by status."), &["asset", "status"])?,
            deposits: IntGaugeVec::new(
                opts("deposits", "Deposits recorded to accounts, reverted ones included."),
                &["asset"],
            )?,
            transitions: IntCounterVec::new(
                opts("transitions_total", "Events emitted, by type."),
                &["asset", "type"],
            )?,
            transfers: IntCounterVec::new(
                opts("transfers_total", "New transfers to watched addresses."),
                &["asset", "matched"],
            )?,
            detection_to_confirmation: HistogramVec::new(
                hopts(
                    "detection_to_confirmation_seconds",
                    "Time from intent.detected to intent.confirmed.",
                    vec![1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0],
                ),
                &["asset"],
            )?,
            webhook_deliveries: IntCounterVec::new(
                opts("webhook_deliveries_total", "Webhook delivery attempts by outcome."),
                &["outcome"],
            )?,
            webhook_backlog: IntGauge::with_opts(opts("webhook_backlog", "Events waiting for webhook delivery."))?,
            webhook_failed: IntGauge::with_opts(opts("webhook_failed", "Webhook deliveries given up after max_age."))?,
            webhook_delivery_seconds: Histogram::with_opts(hopts(
                "webhook_delivery_seconds",
                "Duration of one webhook POST.",
                vec![0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0],
            ))?,
            dust_transfers: IntCounterVec::new(
                opts(
                    "dust_transfers_total",
                    "Transfers below min_amount: recorded, never a payment.",
                ),
                &["asset"],
            )?,
            last_success_age: IntGaugeVec::new(
                opts(
                    "chain_last_success_age_seconds",
                    "Seconds since the asset's last successful poll (as of its last poll).",
                ),
                &["asset"],
            )?,
            lagging: IntGaugeVec::new(
                opts(
                    "chain_lagging",
                    "1 while the asset lags its chain beyond max_lag, or its backend is behind.",
                ),
                &["asset"],
            )?,
            head_age: IntGaugeVec::new(
                opts(
                    "chain_head_age_seconds",
                    "Seconds since the chain tip last moved, as paywatch saw it.",
                ),
                &["asset"],
            )?,
            endpoint_up: IntGaugeVec::new(
                opts(
                    "endpoint_up",
                    "1 if the endpoint answered its last call (endpoint: position in the url list).",
                ),
                &["asset", "endpoint"],
            )?,
            endpoint_height: IntGaugeVec::new(
                opts("endpoint_height", "The best block height the endpoint last reported."),
                &["asset", "endpoint"],
            )?,
            endpoint_requests: IntCounterVec::new(
                opts(
                    "endpoint_requests_total",
                    "Calls to each endpoint by outcome (ok, error, rate_limited).",
                ),
                &["asset", "endpoint", "outcome"],
            )?,
            rate_source_up: IntGaugeVec::new(
                opts(
                    "rate_source_up",
                    "1 if the rate source's last read answered every pair and it holds a fresh answer.",
                ),
                &["source"],
            )?,
            rate_age: IntGaugeVec::new(
                opts(
                    "rate_age_seconds",
                    "Age of the rate source's answer for a pair (COIN/CURRENCY).",
                ),
                &["source", "pair"],
            )?,
            rate_errors: IntCounterVec::new(opts("rate_errors_total", "Failed reads of a rate source."), &["source"])?,
            lease_held: IntGaugeVec::new(
                opts(
                    "lease_held",
                    "1 while this instance holds the lease (scan/ASSET, webhooks) of a shared store.",
                ),
                &["lease"],
            )?,
            lease_terms: IntCounterVec::new(
                opts("lease_terms_total", "Times this instance took the lease (takeovers)."),
                &["lease"],
            )?,
            registry,
        };
        let r = &m.registry;
        r.register(Box::new(m.build_info.clone()))?;
        r.register(Box::new(m.tip_height.clone()))?;
        r.register(Box::new(m.scanned_height.clone()))?;
        r.register(Box::new(m.lag_blocks.clone()))?;
        r.register(Box::new(m.poll_duration.clone()))?;
        r.register(Box::new(m.poll_errors.clone()))?;
        r.register(Box::new(m.intents.clone()))?;
        r.register(Box::new(m.accounts.clone()))?;
        r.register(Box::new(m.deposits.clone()))?;
        r.register(Box::new(m.transitions.clone()))?;
        r.register(Box::new(m.transfers.clone()))?;
        r.register(Box::new(m.detection_to_confirmation.clone()))?;
        r.register(Box::new(m.webhook_deliveries.clone()))?;
        r.register(Box::new(m.webhook_backlog.clone()))?;
        r.register(Box::new(m.webhook_failed.clone()))?;
        r.register(Box::new(m.webhook_delivery_seconds.clone()))?;
        r.register(Box::new(m.dust_transfers.clone()))?;
        r.register(Box::new(m.last_success_age.clone()))?;
        r.register(Box::new(m.lagging.clone()))?;
        r.register(Box::new(m.head_age.clone()))?;
        r.register(Box::new(m.endpoint_up.clone()))?;
        r.register(Box::new(m.endpoint_height.clone()))?;
        r.register(Box::new(m.endpoint_requests.clone()))?;
        r.register(Box::new(m.rate_source_up.clone()))?;
        r.register(Box::new(m.rate_age.clone()))?;
        r.register(Box::new(m.rate_errors.clone()))?;
        r.register(Box::new(m.lease_held.clone()))?;
        r.register(Box::new(m.lease_terms.clone()))?;
        m.build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        Ok(m)
    }

    /// Text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_metric_has_the_prefix() {
        let m = super::Metrics::new().expect("metrics");
        m.transitions.with_label_values(&["LTC", "intent.detected"]).inc();
        let text = m.render();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            assert!(line.starts_with("paywatch_"), "{line}");
        }
        assert!(text.contains("paywatch_build_info{version="));
        assert!(text.contains("paywatch_transitions_total{asset=\"LTC\",type=\"intent.detected\"} 1"));
    }
}
