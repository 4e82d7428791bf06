//! Shared HTTP plumbing for every backend: several base URLs failed over in
//! order (the one that answered last is tried first), per-call timeouts, and
//! errors that tell "slow", "down", "rate-limited" and "garbage" apart.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::ChainError;

/// A raw answer: status and body.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// What a caller makes of an answer.
pub enum Verdict<T> {
    Done(T),
    /// Another URL may do better (5xx, 429, garbage): try it.
    TryNext(ChainError),
    /// Any URL would say the same (a node's own error answer).
    Fail(ChainError),
}

/// One endpoint's health as status and metrics show it. Endpoints are named
/// by their position in the configured list, never by URL (URLs can carry
/// credentials, and positions keep metric labels bounded).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct EndpointStatus {
    /// Position in the configured `url` list, from 0.
    pub index: usize,
    /// `None` until it was first called.
    pub healthy: Option<bool>,
    /// It answered 429 (or Tron's 403 penalty) and is being left alone.
    pub rate_limited: bool,
    /// It answered without data another endpoint had or the chain must have
    /// (behind, a block it lacks): left alone while another can serve.
    pub behind: bool,
    pub last_error: Option<String>,
    /// The best block (ledger) height it last reported.
    pub height: Option<u64>,
    pub last_ok_at: Option<chrono::DateTime<chrono::Utc>>,
    pub requests: u64,
    pub failures: u64,
    pub rate_limits: u64,
}

/// How long an endpoint that failed to answer is skipped while another one
/// can serve (it is retried first when none can).
const DOWN_BACKOFF: Duration = Duration::from_secs(10);
/// How long an endpoint that rate-limited us is left alone while another can
/// serve. The poller's own backoff (up to `retry_max`) spaces the retries.
const RATE_LIMIT_COOLDOWN: Duration = Duration::from_secs(1);

struct Endpoint {
    base: String,
    state: Mutex<EndpointState>,
}

#[derive(Default)]
struct EndpointState {
    status: EndpointStatus,
    /// Skipped until then (down, or cooling down after a rate limit).
    skip_until: Option<Instant>,
    /// The next request slot under `max_rps`.
    next_slot: Option<Instant>,
}

pub struct Endpoints {
    pub http: reqwest::Client,
    endpoints: Vec<Endpoint>,
    /// The endpoint that answered last (whose tip a source notes).
    last_answered: AtomicUsize,
    timeout: Duration,
    /// At most this many requests per second to each endpoint (0: no limit),
    /// so paywatch never earns its own 429s.
    min_interval: Option<Duration>,
}

impl Endpoints {
    pub fn new(urls: Vec<String>, timeout: Duration) -> Result<Endpoints, ChainError> {
        if urls.is_empty() {
            return Err(ChainError::Config("no backend URL configured".into()));
        }
        // reqwest panics without a TLS provider; make sure there is one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .tcp_nodelay(true)
            .user_agent(concat!("paywatch/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                // Most often: no CA certificates on the system (Debian's
                // ca-certificates package provides them).
                ChainError::Config(format!("cannot build HTTP client: {}", error_text(e)))
            })?;
        let endpoints = urls
            .into_iter()
            .enumerate()
            .map(|(index, u)| Endpoint {
                base: u.trim_end_matches('/').to_string(),
                state: Mutex::new(EndpointState {
                    status: EndpointStatus {
                        index,
                        ..EndpointStatus::default()
                    },
                    ..EndpointState::default()
                }),
            })
            .collect();
        Ok(Endpoints {
            http,
            endpoints,
            last_answered: AtomicUsize::new(0),
            timeout,
            min_interval: None,
        })
    }

    /// Limits each endpoint to `max_rps` requests per second (0: no limit).
    pub fn with_max_rps(mut self, max_rps: f64) -> Endpoints {
        self.min_interval = (max_rps > 0.0).then(|| Duration::from_secs_f64(1.0 / max_rps));
        self
    }

    /// Every endpoint's health, in configured order.
    pub fn statuses(&self) -> Vec<EndpointStatus> {
        self.endpoints.iter().map(|e| lock(&e.state).status.clone()).collect()
    }

    /// Records the best height the endpoint that answered last reported.
    pub fn note_height(&self, height: u64) {
        if let Some(e) = self.endpoints.get(self.last_answered.load(Ordering::Relaxed)) {
            lock(&e.state).status.height = Some(height);
        }
    }

    /// The endpoint that answered last lacked data it should have had (it is
    /// behind, or another node behind its load balancer answered): try the
    /// others first for a while.
    pub fn demote_last(&self, reason: &str) {
        if self.endpoints.len() < 2 {
            return;
        }
        let i = self.last_answered.load(Ordering::Relaxed);
        if let Some(e) = self.endpoints.get(i) {
            let mut st = lock(&e.state);
            st.status.behind = true;
            st.status.last_error = Some(reason.to_string());
            st.skip_until = Some(Instant::now() + DOWN_BACKOFF);
        }
    }

    /// The order to try endpoints in: configured order (the primary first
    /// whenever it can serve), skipping those down or cooling down while
    /// another can serve; down ones are tried last rather than not at all.
    fn order(&self) -> Result<Vec<usize>, ChainError> {
        let now = Instant::now();
        let mut ready = Vec::new();
        let mut down = Vec::new();
        let mut cooling: Option<Duration> = None;
        for (i, e) in self.endpoints.iter().enumerate() {
            let st = lock(&e.state);
            match st.skip_until {
                Some(until) if until > now && st.status.rate_limited => {
                    let left = until - now;
                    cooling = Some(cooling.map_or(left, |c| c.min(left)));
                }
                Some(until) if until > now => down.push(i),
                _ => ready.push(i),
            }
        }
        ready.extend(down);
        if ready.is_empty() {
            return Err(ChainError::RateLimited {
                url: "every endpoint".into(),
                status: 429,
                message: format!(
                    "all endpoints are cooling down after rate limits; the first is free in {}s",
                    cooling.unwrap_or_default().as_secs().max(1)
                ),
            });
        }
        Ok(ready)
    }

    /// Waits for the endpoint's next request slot under `max_rps`.
    async fn take_slot(&self, i: usize) {
        let Some(interval) = self.min_interval else { return };
        let wait = {
            let mut st = lock(&self.endpoints[i].state);
            let now = Instant::now();
            let slot = st.next_slot.filter(|s| *s > now).unwrap_or(now);
            st.next_slot = Some(slot + interval);
            slot - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    fn record(&self, i: usize, outcome: Result<(), &ChainError>) {
        let mut st = lock(&self.endpoints[i].state);
        st.status.requests += 1;
        match outcome {
            Ok(()) => {
                st.status.healthy = Some(true);
                st.status.rate_limited = false;
                if st.skip_until.is_some_and(|until| until > Instant::now()) && st.status.behind {
                    return; // answered while demoted (no other could serve)
                }
                st.status.behind = false;
                st.status.last_ok_at = Some(chrono::Utc::now());
                st.skip_until = None;
            }
            Err(e @ ChainError::RateLimited { .. }) => {
                // Backoff, not "down": the endpoint works, we asked too fast.
                st.status.rate_limits += 1;
                st.status.rate_limited = true;
                st.status.last_error = Some(e.to_string());
                st.skip_until = Some(Instant::now() + RATE_LIMIT_COOLDOWN);
            }
            Err(e) => {
                st.status.failures += 1;
                st.status.healthy = Some(false);
                st.status.rate_limited = false;
                st.status.last_error = Some(e.to_string());
                st.skip_until = Some(Instant::now() + DOWN_BACKOFF);
            }
        }
    }

    /// Sends the request `build` makes to each endpoint in turn until
    /// `judge` accepts an answer or gives up.
    pub async fn send<T>(
        &self,
        call: &str,
        build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
        judge: impl Fn(&str, Answer) -> Verdict<T>,
    ) -> Result<T, ChainError> {
        let mut last_error = None;
        for i in self.order()? {
            self.take_slot(i).await;
            let base = &self.endpoints[i].base;
            let result = async {
                let resp = build(&self.http, base)
                    .send()
                    .await
                    .map_err(|e| self.transport_error(base, call, e))?;
                let status = resp.status().as_u16();
                let body = resp.bytes().await.map_err(|e| self.transport_error(base, call, e))?;
                Ok::<_, ChainError>(Answer {
                    status,
                    body: body.to_vec(),
                })
            }
            .await;
            let failure = match result.map(|answer| judge(base, answer)) {
                Ok(Verdict::Done(v)) => {
                    self.record(i, Ok(()));
                    self.last_answered.store(i, Ordering::Relaxed);
                    return Ok(v);
                }
                Ok(Verdict::Fail(e)) => {
                    // The endpoint answered; any would say the same.
                    self.record(i, Ok(()));
                    self.last_answered.store(i, Ordering::Relaxed);
                    return Err(e);
                }
                Ok(Verdict::TryNext(e)) | Err(e) => e,
            };
            self.record(i, Err(&failure));
            tracing::debug!(call, endpoint = i, error = %failure, "backend call failed; trying the next endpoint");
            last_error = Some(failure);
        }
        Err(last_error.unwrap_or_else(|| ChainError::Config("no backend URL configured".into())))
    }

    fn transport_error(&self, url: &str, call: &str, e: reqwest::Error) -> ChainError {
        if e.is_timeout() {
            ChainError::Timeout {
                call: call.to_string(),
                seconds: self.timeout.as_secs(),
            }
        } else {
            ChainError::Transport {
                url: redact_url(url),
                message: error_text(e),
            }
        }
    }
}

fn lock(m: &Mutex<EndpointState>) -> std::sync::MutexGuard<'_, EndpointState> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The usual verdict on a non-2xx status: rate limits and server errors may
/// go better elsewhere; the rest (401, 403, 404, ...) would not.
pub fn status_error<T>(url: &str, status: u16) -> Verdict<T> {
    if status == 429 {
        return Verdict::TryNext(ChainError::RateLimited {
            url: redact_url(url),
            status,
            message: "too many requests".into(),
        });
    }
    let e = ChainError::Http {
        url: redact_url(url),
        status,
    };
    if status >= 500 {
        Verdict::TryNext(e)
    } else {
        Verdict::Fail(e)
    }
}

/// A URL with any `user:password@` removed, for logs and status.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}{}", &url[..scheme + 3], &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// The one printer of HTTP client errors, for logs, status and delivery
/// records: the error and its causes, without the URL (which may carry
/// credentials or a receiver's secret path; callers name the endpoint
/// themselves, redacted).
pub fn error_text(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut out = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn credentials_in_urls_never_reach_logs() {
        assert_eq!(
            super::redact_url("http://user:pass@127.0.0.1:9332/"),
            "http://127.0.0.1:9332/"
        );
        assert_eq!(super::redact_url("http://127.0.0.1:9332"), "http://127.0.0.1:9332");
    }
}
