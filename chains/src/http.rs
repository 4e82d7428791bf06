//! Shared HTTP plumbing for every backend: several base URLs failed over in
//! order (the one that answered last is tried first), per-call timeouts, and
//! errors that tell "slow", "down", "rate-limited" and "garbage" apart.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

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

pub struct Endpoints {
    pub http: reqwest::Client,
    urls: Vec<String>,
    preferred: AtomicUsize,
    timeout: Duration,
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
            .map_err(|e| ChainError::Config(format!("cannot build HTTP client: {e}")))?;
        let urls = urls.into_iter().map(|u| u.trim_end_matches('/').to_string()).collect();
        Ok(Endpoints {
            http,
            urls,
            preferred: AtomicUsize::new(0),
            timeout,
        })
    }

    /// Sends the request `build` makes for each base URL in turn until
    /// `judge` accepts an answer or gives up.
    pub async fn send<T>(
        &self,
        call: &str,
        build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
        judge: impl Fn(&str, Answer) -> Verdict<T>,
    ) -> Result<T, ChainError> {
        let start = self.preferred.load(Ordering::Relaxed);
        let mut last_error = None;
        for offset in 0..self.urls.len() {
            let i = (start + offset) % self.urls.len();
            let base = &self.urls[i];
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
                    self.preferred.store(i, Ordering::Relaxed);
                    return Ok(v);
                }
                Ok(Verdict::Fail(e)) => return Err(e),
                Ok(Verdict::TryNext(e)) | Err(e) => e,
            };
            tracing::debug!(call, error = %failure, "backend call failed; trying the next URL");
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
                message: error_chain(&e),
            }
        }
    }
}

/// The usual verdict on a non-2xx status: rate limits and server errors may
/// go better elsewhere; the rest (401, 403, 404, ...) would not.
pub fn status_error<T>(url: &str, status: u16) -> Verdict<T> {
    let e = ChainError::Http {
        url: redact_url(url),
        status,
    };
    if status == 429 || status >= 500 {
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

fn error_chain(e: &dyn std::error::Error) -> String {
    // reqwest prints the URL, which may carry credentials.
    let mut out = redact_url(&e.to_string());
    let mut source = e.source();
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
