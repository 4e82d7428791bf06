//! A JSON-RPC client (Bitcoin Core style, also EVM nodes) over the shared
//! HTTP plumbing: URL failover, timeouts, and node error answers returned as
//! `ChainError::Rpc` rather than failed over.

use std::path::PathBuf;

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
    pub fn new(endpoints: Endpoints, auth: RpcAuth) -> RpcClient {
        RpcClient { endpoints, auth }
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    pub async fn call<T: DeserializeOwned>(&self, method: &str, params: Value) -> Result<T, ChainError> {
        let raw = self.call_raw(method, params).await?;
        serde_json::from_value(raw).map_err(|e| ChainError::garbage(method, e))
    }

    /// Sends several calls in one JSON-RPC batch: one HTTP request, so one
    /// node behind a load balancer answers them all (their answers describe
    /// one view of the chain). Each answer in call order, a node's error
    /// answer as `ChainError::Rpc`.
    pub async fn call_batch(&self, calls: &[(&str, Value)]) -> Result<Vec<Result<Value, ChainError>>, ChainError> {
        let body: Vec<Value> = calls
            .iter()
            .enumerate()
            .map(|(id, (method, params))| json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .collect();
        self.post(&body, "batch", |url, answer| judge_batch(calls, url, answer))
            .await
    }

    /// Calls `method`; a node's own error answer (`{"error": {...}}`) is
    /// returned as `ChainError::Rpc`, anything else unusable fails over.
    pub async fn call_raw(&self, method: &str, params: Value) -> Result<Value, ChainError> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        self.post(&body, method, |url, answer| judge(method, url, answer)).await
    }

    /// POSTs `body` with the node's credentials to each endpoint in turn.
    async fn post<T>(
        &self,
        body: &impl serde::Serialize,
        call: &str,
        judge: impl Fn(&str, Answer) -> Verdict<T>,
    ) -> Result<T, ChainError> {
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
                call,
                |http, url| {
                    let req = http.post(url).json(body);
                    match &credentials {
                        Some((user, password)) => req.basic_auth(user, Some(password)),
                        None => req,
                    }
                },
                judge,
            )
            .await
    }
}

/// One answer object's outcome: its `result`, or the node's error; `None`
/// when it carries neither.
fn answer_of(method: &str, obj: &serde_json::Map<String, Value>) -> Option<Result<Value, ChainError>> {
    if let Some(err) = obj.get("error").filter(|e| !e.is_null()) {
        return Some(Err(node_error(method, err)));
    }
    obj.get("result").map(|r| Ok(r.clone()))
}

/// Reads a batch answer: every call's outcome, matched by id.
fn judge_batch(calls: &[(&str, Value)], url: &str, answer: Answer) -> Verdict<Vec<Result<Value, ChainError>>> {
    // Rate limits and server errors first: passing, not a refusal.
    if answer.status == 429 || answer.status >= 500 {
        return status_error(url, answer.status);
    }
    let items = match serde_json::from_slice::<Value>(&answer.body) {
        Ok(Value::Array(items)) => items,
        // One answer object for the whole batch: the node refuses batches
        // (or ignores them).
        Ok(Value::Object(obj)) => {
            let refusal = json!({"code": 0, "message": "a single answer to a batch"});
            let error = obj.get("error").filter(|e| !e.is_null()).unwrap_or(&refusal);
            return Verdict::Fail(node_error("batch", error));
        }
        _ if !(200..300).contains(&answer.status) => return status_error(url, answer.status),
        _ => return Verdict::TryNext(ChainError::garbage("batch", "not a JSON-RPC batch answer")),
    };
    let mut out: Vec<Option<Result<Value, ChainError>>> = (0..calls.len()).map(|_| None).collect();
    for item in &items {
        let Some(id) = item.get("id").and_then(Value::as_u64).map(|id| id as usize) else {
            continue;
        };
        if let (Some(slot), Some((method, _)), Some(obj)) = (out.get_mut(id), calls.get(id), item.as_object()) {
            *slot = answer_of(method, obj);
        }
    }
    match out.into_iter().collect::<Option<Vec<_>>>() {
        Some(all) => Verdict::Done(all),
        None => Verdict::TryNext(ChainError::garbage("batch", "an answer is missing from the batch")),
    }
}

/// A node's own `{"error": {"code", "message"}}`.
fn node_error(method: &str, err: &Value) -> ChainError {
    ChainError::Rpc {
        method: method.to_string(),
        code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
        message: err
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("(no message)")
            .to_string(),
    }
}

/// Reads a JSON-RPC answer. Core answers node errors with HTTP 500 (404 for
/// unknown methods) and a JSON body, so the body is read before the status.
fn judge(method: &str, url: &str, answer: Answer) -> Verdict<Value> {
    let parsed: Option<Value> = serde_json::from_slice(&answer.body).ok();
    if let Some(Value::Object(obj)) = &parsed {
        match answer_of(method, obj) {
            Some(Err(e)) => return Verdict::Fail(e),
            Some(Ok(result)) if (200..300).contains(&answer.status) => return Verdict::Done(result),
            _ => {}
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
