//! A JSON-RPC 1.0/2.0 client over the shared reqwest stack, with several URLs
//! failed over in order, per-call timeouts, and errors that tell "slow",
//! "down", "refused" and "garbage" apart.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::{ChainError, Secret};

/// How the node wants to be authenticated.
#[derive(Clone, Debug)]
pub enum RpcAuth {
    None,
    UserPassword {
        user: String,
        password: Secret,
    },
    /// Bitcoin/Litecoin Core cookie file; re-read on every call since the
    /// node rewrites it when it restarts.
    Cookie(PathBuf),
}

pub struct RpcClient {
    http: reqwest::Client,
    urls: Vec<String>,
    /// Index of the URL that answered last; tried first next time.
    preferred: AtomicUsize,
    auth: RpcAuth,
    timeout: Duration,
}

impl RpcClient {
    pub fn new(urls: Vec<String>, auth: RpcAuth, timeout: Duration) -> Result<RpcClient, ChainError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| ChainError::Config(format!("cannot build HTTP client: {e}")))?;
        if urls.is_empty() {
            return Err(ChainError::Config("no backend URL configured".into()));
        }
        Ok(RpcClient {
            http,
            urls,
            preferred: AtomicUsize::new(0),
            auth,
            timeout,
        })
    }

    /// Calls `method`; on a transport failure, 5xx or 429 the next URL is
    /// tried. A node's own error answer (`{"error": {...}}`) is returned as is.
    pub async fn call<T: DeserializeOwned>(&self, method: &str, params: Value) -> Result<T, ChainError> {
        let raw = self.call_raw(method, params).await?;
        serde_json::from_value(raw).map_err(|e| ChainError::garbage(method, e))
    }

    pub async fn call_raw(&self, method: &str, params: Value) -> Result<Value, ChainError> {
        let body = json!({"jsonrpc": "1.0", "id": "paywatch", "method": method, "params": params});
        let start = self.preferred.load(Ordering::Relaxed);
        let mut last_error = None;
        for offset in 0..self.urls.len() {
            let i = (start + offset) % self.urls.len();
            match self.call_one(&self.urls[i], method, &body).await {
                Ok(v) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(e @ ChainError::Rpc { .. }) => return Err(e),
                Err(e) => {
                    tracing::debug!(method, error = %e, "backend call failed; trying the next URL");
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| ChainError::Config("no backend URL configured".into())))
    }

    async fn call_one(&self, url: &str, method: &str, body: &Value) -> Result<Value, ChainError> {
        let mut req = self.http.post(url).json(body);
        match &self.auth {
            RpcAuth::None => {}
            RpcAuth::UserPassword { user, password } => req = req.basic_auth(user, Some(password.expose())),
            RpcAuth::Cookie(path) => {
                let cookie = std::fs::read_to_string(path)
                    .map_err(|e| ChainError::Config(format!("cannot read rpc_cookie_file {}: {e}", path.display())))?;
                let (user, password) = cookie.trim().split_once(':').ok_or_else(|| {
                    ChainError::Config(format!("rpc_cookie_file {} is not user:password", path.display()))
                })?;
                req = req.basic_auth(user, Some(password));
            }
        }
        let resp = req.send().await.map_err(|e| self.transport_error(url, method, e))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| self.transport_error(url, method, e))?;
        // Core answers node errors with HTTP 500 (or 404 for unknown methods)
        // and a JSON body: read the body before judging the status.
        let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
        if let Some(Value::Object(obj)) = &parsed {
            if let Some(err) = obj.get("error").filter(|e| !e.is_null()) {
                return Err(ChainError::Rpc {
                    method: method.to_string(),
                    code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
                    message: err
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("(no message)")
                        .to_string(),
                });
            }
            if (200..300).contains(&status)
                && let Some(result) = obj.get("result")
            {
                return Ok(result.clone());
            }
        }
        if !(200..300).contains(&status) {
            return Err(ChainError::Http {
                url: redact_url(url),
                status,
            });
        }
        Err(ChainError::garbage(
            method,
            format!("not a JSON-RPC response ({} bytes)", bytes.len()),
        ))
    }

    fn transport_error(&self, url: &str, method: &str, e: reqwest::Error) -> ChainError {
        if e.is_timeout() {
            ChainError::Timeout {
                call: method.to_string(),
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

/// A URL with any `user:password@` removed, for logs and status.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
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
