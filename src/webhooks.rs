//! Webhook delivery from the persistent outbox (docs/delivery.md).
//!
//! At-least-once, in `seq` order per intent, surviving restarts: an event's
//! outbox entry is written in the same commit as the event, and leaves the
//! outbox only after a 2xx. A failed delivery holds back only the later
//! events of the same intent (or transfer) for its backoff; the others go
//! on. Only when the receiver does not answer at all several times in a row
//! (it is down) does the whole dispatcher pause. Every attempt is recorded.
//! An entry older than `max_age` is given up, marked failed, and no longer
//! holds back its intent's later events; it can be redelivered on request.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use paywatch_state::{DeliveryAttempt, Fence, OutboxEntry, Store, StoreError};
use sha2::Sha256;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::WebhookConfig;
use crate::metrics::Metrics;

/// How many deliveries one pass makes before it looks at the outbox again.
const PASS_SIZE: usize = 500;
/// Outbox entries read at a time.
const PAGE: usize = 500;
/// Attempts in a row that got no answer at all: the receiver is down, and
/// the dispatcher pauses rather than try every intent's event in turn.
const DOWN_AFTER: u32 = 3;
/// Idle re-check even without a wake-up (catches entries whose backoff ended).
const IDLE_RECHECK: Duration = Duration::from_secs(30);

/// `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`.
pub fn signature_header(secret: &[u8], unix_seconds: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(unix_seconds.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={unix_seconds},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Names a webhook configuration (URL and secret) without revealing the
/// secret: the instances of a shared store must all run with the same one.
/// Never 0 (which means "no webhooks").
pub fn config_fingerprint(config: &WebhookConfig) -> u64 {
    use sha2::Digest;
    let mut hash = Sha256::new();
    hash.update(config.url.as_bytes());
    hash.update([0u8]);
    hash.update(config.secret.expose().as_bytes());
    let digest = hash.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first).max(1)
}

pub struct Dispatcher {
    store: Arc<Store>,
    config: WebhookConfig,
    http: reqwest::Client,
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
    /// The delivery lease this dispatcher runs under (a shared store):
    /// every outcome it records carries it.
    fence: Option<Fence>,
}

/// What one POST got.
struct Attempt {
    delivered: bool,
    http_status: Option<u16>,
    error: Option<String>,
    duration: Duration,
    /// Not sent: the lease term ended first.
    stopped: bool,
}

impl Dispatcher {
    pub fn new(
        store: Arc<Store>,
        config: WebhookConfig,
        wake: Arc<Notify>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Dispatcher> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .user_agent(concat!("paywatch/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Dispatcher {
            store,
            config,
            http,
            wake,
            metrics,
            fence: None,
        })
    }

    /// The dispatcher of one lease term (see `cluster`).
    pub fn under_lease(mut self, fence: Option<Fence>) -> Dispatcher {
        self.fence = fence;
        self
    }

    pub async fn run(self, cancel: CancellationToken) {
        if self.fence.is_some() && !self.config_in_force() {
            return;
        }
        if self.fence.is_some() {
            // A former holder's POST may still be on its way to the
            // receiver: the first delivery of this term waits it out, so an
            // older event does not land after a newer one sent from here.
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(self.config.timeout) => {}
            }
        }
        loop {
            if self.fence.is_some() && !self.config_in_force() {
                return;
            }
            let pause = match self.pass(&cancel).await {
                Ok(p) => p,
                Err(e) if matches!(e.downcast_ref(), Some(StoreError::Fenced { .. })) => {
                    tracing::warn!(error = %e, "another instance delivers webhooks now; stopping here");
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "webhook outbox unreadable; retrying");
                    Some(Duration::from_secs(5))
                }
            };
            match pause {
                // The receiver failed: wait out the backoff before anything else.
                Some(d) => tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(d) => {}
                },
                None => tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(IDLE_RECHECK) => {}
                },
            }
        }
    }

    /// Under a lease: whether this instance's `[webhook]` is the one the
    /// store's instances deliver with (the newest started). If not, it
    /// stops, and so gives the lease up to an instance that has it.
    fn config_in_force(&self) -> bool {
        match self.store.webhook_config() {
            Ok(stored) if stored == config_fingerprint(&self.config) => true,
            Ok(_) => {
                tracing::warn!(
                    "another instance started with a different [webhook], which is in force now: not delivering from here"
                );
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read which [webhook] is in force; not delivering until it can be read");
                false
            }
        }
    }

    /// Delivers every due entry, in order per intent. Returns how long to
    /// pause when the receiver is down, or `None` when the pass ran through.
    async fn pass(&self, cancel: &CancellationToken) -> anyhow::Result<Option<Duration>> {
        self.refresh_gauges();
        let mut held_back: HashSet<String> = HashSet::new();
        let mut earliest_wait: Option<Duration> = None;
        let mut unanswered_in_a_row = 0u32;
        let mut made = 0usize;
        let mut after = 0u64;
        loop {
            let entries = self.store.outbox_after(after, PAGE)?;
            let Some(last) = entries.last() else { break };
            after = last.seq;
            for entry in entries {
                if cancel.is_cancelled() {
                    return Ok(None);
                }
                if made >= PASS_SIZE {
                    return Ok(Some(Duration::ZERO)); // more to do: go again at once
                }
                if held_back.contains(&entry.ordering_key) {
                    continue;
                }
                let now = Utc::now();
                if age(&entry, now) > self.config.max_age {
                    let why = entry.last_error.clone().unwrap_or_else(|| "never delivered".into());
                    tracing::warn!(seq = entry.seq, event_id = %entry.event_id, error = %why, "webhook delivery given up after max_age");
                    self.store.outbox_give_up(entry, why, self.fence.as_ref())?;
                    self.metrics.webhook_deliveries.with_label_values(&["failed"]).inc();
                    continue;
                }
                if entry.next_attempt_at > now {
                    let wait = (entry.next_attempt_at - now).to_std().unwrap_or_default();
                    earliest_wait = Some(earliest_wait.map_or(wait, |w| w.min(wait)));
                    held_back.insert(entry.ordering_key.clone());
                    continue;
                }
                made += 1;
                let result = match &self.fence {
                    // Under a lease, a POST still in flight when the term
                    // ends is dropped: the next holder sends the event again
                    // (at least once), and an older event of the intent can
                    // no longer land after a newer one it sends.
                    Some(_) => tokio::select! {
                        attempt = self.attempt(&entry, Some(cancel)) => attempt,
                        _ = cancel.cancelled() => return Ok(None),
                    },
                    None => self.attempt(&entry, None).await,
                };
                if result.stopped {
                    return Ok(None);
                }
                let record = DeliveryAttempt {
                    seq: entry.seq,
                    attempt: entry.attempts + 1,
                    at: now,
                    http_status: result.http_status,
                    error: result.error.clone(),
                    duration_ms: result.duration.as_millis() as u64,
                    outcome: if result.delivered { "delivered" } else { "failed" }.into(),
                };
                if result.delivered {
                    self.store.outbox_delivered(entry.seq, &record, self.fence.as_ref())?;
                    self.metrics.webhook_deliveries.with_label_values(&["delivered"]).inc();
                    unanswered_in_a_row = 0;
                    continue;
                }
                let delay = self.backoff(entry.attempts + 1);
                let error = result.error.unwrap_or_default();
                tracing::warn!(seq = entry.seq, event_id = %entry.event_id, attempts = entry.attempts + 1, retry_in_ms = delay.as_millis() as u64, error = %error, "webhook delivery failed");
                let next = now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
                held_back.insert(entry.ordering_key.clone());
                self.store.outbox_retry(entry, next, &record, self.fence.as_ref())?;
                self.metrics.webhook_deliveries.with_label_values(&["retry"]).inc();
                earliest_wait = Some(earliest_wait.map_or(delay, |w| w.min(delay)));
                if result.http_status.is_none() {
                    unanswered_in_a_row += 1;
                    if unanswered_in_a_row >= DOWN_AFTER {
                        self.refresh_gauges();
                        return Ok(Some(delay));
                    }
                } else {
                    // It answered: the receiver is up and refused this one.
                    unanswered_in_a_row = 0;
                }
            }
        }
        self.refresh_gauges();
        // Entries waiting out a backoff: come back when the first is due.
        Ok(earliest_wait.filter(|w| *w < IDLE_RECHECK))
    }

    /// One POST of `entry`'s event. With `stop` (under a lease), nothing is
    /// sent once it is cancelled: the term is over.
    async fn attempt(&self, entry: &OutboxEntry, stop: Option<&CancellationToken>) -> Attempt {
        let failed = |error: String| Attempt {
            delivered: false,
            http_status: None,
            error: Some(error),
            duration: Duration::ZERO,
            stopped: false,
        };
        let event = match self.store.event(entry.seq) {
            Ok(Some(e)) => e,
            Ok(None) => return failed(format!("event {} missing from the log", entry.seq)),
            Err(e) => return failed(format!("cannot read event: {e}")),
        };
        let body = match serde_json::to_vec(&event) {
            Ok(b) => b,
            Err(e) => return failed(format!("cannot encode event: {e}")),
        };
        if stop.is_some_and(|c| c.is_cancelled()) {
            return Attempt {
                delivered: false,
                http_status: None,
                error: None,
                duration: Duration::ZERO,
                stopped: true,
            };
        }
        let t = Utc::now().timestamp();
        let started = Instant::now();
        let result = self
            .http
            .post(&self.config.url)
            .header("Content-Type", "application/json")
            .header("Paywatch-Event-Id", &event.id)
            .header("Paywatch-Event-Type", event.kind.as_str())
            .header(
                "Paywatch-Signature",
                signature_header(self.config.secret.expose().as_bytes(), t, &body),
            )
            .body(body)
            .send()
            .await;
        let duration = started.elapsed();
        self.metrics.webhook_delivery_seconds.observe(duration.as_secs_f64());
        let (delivered, http_status, error) = match result {
            Ok(resp) if resp.status().is_success() => (true, Some(resp.status().as_u16()), None),
            Ok(resp) => (
                false,
                Some(resp.status().as_u16()),
                Some(format!("receiver answered HTTP {}", resp.status().as_u16())),
            ),
            Err(e) if e.is_timeout() => (
                false,
                None,
                Some(format!("no answer within {}s", self.config.timeout.as_secs())),
            ),
            Err(e) => (
                false,
                None,
                Some(format!(
                    "cannot reach receiver: {}",
                    paywatch_chains::http::error_text(e)
                )),
            ),
        };
        Attempt {
            delivered,
            http_status,
            error,
            duration,
            stopped: false,
        }
    }

    /// The one backoff, from `retry_initial` up to `retry_max`, jittered so
    /// that many held-back events do not retry in lockstep.
    fn backoff(&self, attempts: u32) -> Duration {
        crate::backoff::jittered(self.config.retry_initial, self.config.retry_max, attempts)
    }

    fn refresh_gauges(&self) {
        if let Ok(stats) = self.store.outbox_stats() {
            self.metrics.webhook_backlog.set(stats.backlog as i64);
            self.metrics.webhook_failed.set(stats.failed as i64);
        }
    }
}

fn age(entry: &OutboxEntry, now: DateTime<Utc>) -> Duration {
    (now - entry.created_at).to_std().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_an_independent_hmac() {
        // printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac whsec
        let header = signature_header(b"whsec", 1_700_000_000, br#"{"a":1}"#);
        assert_eq!(
            header,
            "t=1700000000,v1=8ad37ba156048ae0e0a5533c75cdf26fee88b07f93cb57ee4c80adb053012032"
        );
    }
}
