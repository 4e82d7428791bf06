//! A JSON-RPC client (Bitcoin Core style, also EVM nodes) over the shared
//! HTTP plumbing: URL failover, timeouts, and node error answers returned as
//! `ChainError::Rpc` rather than failed over.

use std::path::PathBuf;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::http::{Answer, Endpoints, Verdict, status_error};
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
    endpoints: Endpoints,
    auth: RpcAuth,
}

impl RpcClient {
    pub fn new(urls: Vec<String>, auth: RpcAuth, timeout: Duration) -> Result<RpcClient, ChainError> {
        Ok(RpcClient {
            endpoints: Endpoints::new(urls, timeout)?,
            auth,
        })
    }

    pub async fn call<T: DeserializeOwned>(&self, method: &str, params: Value) -> Result<T, ChainError> {
        let raw = self.call_raw(method, params).await?;
        serde_json::from_value(raw).map_err(|e| ChainError::garbage(method, e))
    }

    /// Calls `method`; a node's own error answer (`{"error": {...}}`) is
    /// returned as `ChainError::Rpc`, anything else unusable fails over.
    pub async fn call_raw(&self, method: &str, params: Value) -> Result<Value, ChainError> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let credentials = match &self.auth {
            RpcAuth::None => None,
            RpcAuth::UserPassword { user, password } => Some((user.clone(), password.expose().to_string())),
            RpcAuth::Cookie(path) => {
                let cookie = std::fs::read_to_string(path)
                    .map_err(|e| ChainError::Config(format!("cannot read rpc_cookie_file {}: {e}", path.display())))?;
                let (user, password) = cookie.trim().split_once(':').ok_or_else(|| {
                    ChainError::Config(format!("rpc_cookie_file {} is not user:password", path.display()))
                })?;
                Some((user.to_string(), password.to_string()))
            }
        };
        self.endpoints
            .send(
                method,
                |http, url| {
                    let req = http.post(url).json(&body);
                    match &credentials {
                        Some((user, password)) => req.basic_auth(user, Some(password)),
                        None => req,
                    }
                },
                |url, answer| judge(method, url, answer),
            )
            .await
    }
}

/// Reads a JSON-RPC answer. Core answers node errors with HTTP 500 (404 for
/// unknown methods) and a JSON body, so the body is read before the status.
fn judge(method: &str, url: &str, answer: Answer) -> Verdict<Value> {
    let parsed: Option<Value> = serde_json::from_slice(&answer.body).ok();
    if let Some(Value::Object(obj)) = &parsed {
        if let Some(err) = obj.get("error").filter(|e| !e.is_null()) {
            return Verdict::Fail(ChainError::Rpc {
                method: method.to_string(),
                code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: err
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("(no message)")
                    .to_string(),
            });
        }
        if (200..300).contains(&answer.status)
            && let Some(result) = obj.get("result")
        {
            return Verdict::Done(result.clone());
        }
    }
    if !(200..300).contains(&answer.status) {
        return status_error(url, answer.status);
    }
    Verdict::TryNext(ChainError::garbage(
        method,
        format!("not a JSON-RPC response ({} bytes)", answer.body.len()),
    ))
}

#[cfg(test)]
pub(crate) fn judge_for_tests(method: &str, url: &str, answer: Answer) -> Verdict<Value> {
    judge(method, url, answer)
}
