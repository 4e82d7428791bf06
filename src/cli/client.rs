//! The client commands: a minimal API client that finds the daemon's
//! address and token the way an operator would expect, and prints JSON.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{Value, json};

use super::{AccountAction, ClientArgs, EXIT_CONFIG, IntentAction, TransferAction};
use crate::config;

/// A minimal API client for the commands above.
pub(super) struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

pub(super) type ClientFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + 'a>>;

pub(super) fn client_command(args: &ClientArgs, f: impl for<'a> FnOnce(&'a Client) -> ClientFuture<'a>) -> ExitCode {
    let client = match Client::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("paywatch: {e:#}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match super::start_runtime(tokio::runtime::Builder::new_current_thread()) {
        Ok(r) => r,
        Err(code) => return code,
    };
    match runtime.block_on(f(&client)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("paywatch: {e:#}");
            ExitCode::FAILURE
        }
    }
}

impl Client {
    /// Finds the API address and token: flags, then environment, then the
    /// daemon's config file (read loosely: only api.* and state_dir).
    fn from_args(args: &ClientArgs) -> anyhow::Result<Client> {
        let file: Option<toml::Table> = std::fs::read_to_string(&args.config).ok().and_then(|t| t.parse().ok());
        let api = file.as_ref().and_then(|f| f.get("api")).and_then(|a| a.as_table());
        let base = match &args.url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => {
                let listen = api
                    .and_then(|a| a.get("listen"))
                    .and_then(|l| l.as_str())
                    .unwrap_or(config::defaults::LISTEN);
                format!("http://{listen}")
            }
        };
        let token_from = |path: &Path| -> anyhow::Result<String> {
            let t = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read the API token from {}: {e}", path.display()))?;
            Ok(t.trim().to_string())
        };
        let token = if let Some(path) = &args.token_file {
            token_from(path)?
        } else if let Ok(t) = std::env::var("PAYWATCH_API_TOKEN") {
            t.trim().to_string()
        } else if let Some(path) = api.and_then(|a| a.get("token_file")).and_then(|p| p.as_str()) {
            token_from(Path::new(path))?
        } else if api.is_some_and(|a| a.contains_key("tokens_file")) {
            anyhow::bail!(
                "the daemon uses named tokens (api.tokens_file): pass one with --token-file or PAYWATCH_API_TOKEN"
            );
        } else {
            let state_dir = file
                .as_ref()
                .and_then(|f| f.get("state_dir"))
                .and_then(|s| s.as_str())
                .map(PathBuf::from)
                .or_else(|| std::env::var("STATE_DIRECTORY").ok().map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from(config::defaults::STATE_DIR));
            token_from(&state_dir.join(crate::state_dir::TOKEN_FILE))?
        };
        let http = reqwest::Client::builder().timeout(Duration::from_secs(90)).build()?;
        Ok(Client { http, base, token })
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach paywatch at {}: {e}", self.base))?;
        if !resp.status().is_success() {
            return Err(error_of(resp).await);
        }
        Ok(resp.json().await.unwrap_or(Value::Null))
    }

    /// POSTs an empty body to `path` and hands back the response, whatever
    /// its status, for a body that is not JSON (a backup).
    pub(super) async fn post_raw(&self, path: &str, timeout: Duration) -> reqwest::Result<reqwest::Response> {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .timeout(timeout)
            .send()
            .await
    }

    pub(super) fn base(&self) -> &str {
        &self.base
    }

    pub(super) async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(format!("{}{path}", self.base))).await
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(&body))
            .await
    }
}

/// The API's error (`{"error": {"code", "message"}}`) of a failed response.
pub(super) async fn error_of(resp: reqwest::Response) -> anyhow::Error {
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    let code = body["error"]["code"].as_str().unwrap_or("error");
    let message = body["error"]["message"].as_str().unwrap_or("");
    anyhow::anyhow!("HTTP {}: {code}: {message}", status.as_u16())
}

pub(super) fn print_json(v: Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

pub(super) fn intent(c: &Client, action: IntentAction) -> ClientFuture<'_> {
    Box::pin(async move {
        match action {
            IntentAction::Create {
                asset,
                amount,
                external_id,
                expires_in,
                confirmations,
                address,
                tag,
                metadata,
            } => {
                let mut body = json!({"asset": asset, "amount": amount});
                let obj = body.as_object_mut().expect("literal object");
                if let Some(v) = external_id {
                    obj.insert("external_id".into(), json!(v));
                }
                if let Some(v) = expires_in {
                    obj.insert("expires_in".into(), json!(v));
                }
                if let Some(v) = confirmations {
                    obj.insert("confirmations".into(), json!(v));
                }
                if let Some(v) = address {
                    obj.insert("address".into(), json!(v));
                }
                if let Some(v) = tag {
                    obj.insert("tag".into(), json!(v));
                }
                if let Some(m) = metadata {
                    obj.insert("metadata".into(), metadata_arg(&m)?);
                }
                print_json(c.post("/v1/intents", body).await?)
            }
            IntentAction::Show { id } => print_json(c.get(&format!("/v1/intents/{}", encode(&id))).await?),
            IntentAction::Cancel { id } => print_json(
                c.post(&format!("/v1/intents/{}/cancel", encode(&id)), json!({}))
                    .await?,
            ),
            IntentAction::Resolve { id, status, reason } => print_json(
                c.post(
                    &format!("/v1/intents/{}/resolve", encode(&id)),
                    json!({"status": status, "reason": reason}),
                )
                .await?,
            ),
            IntentAction::List {
                status,
                asset,
                limit,
                after,
            } => {
                let mut q = form_urlencoded::Serializer::new(String::new());
                for (k, v) in [
                    ("status", status),
                    ("asset", asset),
                    ("limit", limit.map(|l| l.to_string())),
                    ("after", after),
                ] {
                    if let Some(v) = v {
                        q.append_pair(k, &v);
                    }
                }
                print_json(c.get(&format!("/v1/intents?{}", q.finish())).await?)
            }
        }
    })
}

pub(super) fn account(c: &Client, action: AccountAction) -> ClientFuture<'_> {
    Box::pin(async move {
        match action {
            AccountAction::Create {
                asset,
                external_id,
                metadata,
            } => {
                let mut body = json!({"asset": asset, "external_id": external_id});
                if let Some(m) = metadata {
                    body["metadata"] = metadata_arg(&m)?;
                }
                print_json(c.post("/v1/accounts", body).await?)
            }
            AccountAction::Show { id } => print_json(c.get(&format!("/v1/accounts/{}", encode(&id))).await?),
            AccountAction::Transfers { id } => {
                print_json(c.get(&format!("/v1/accounts/{}/transfers", encode(&id))).await?)
            }
            AccountAction::Close { id } => print_json(
                c.post(&format!("/v1/accounts/{}/close", encode(&id)), json!({}))
                    .await?,
            ),
        }
    })
}

pub(super) fn transfer(c: &Client, action: TransferAction) -> ClientFuture<'_> {
    Box::pin(async move {
        match action {
            TransferAction::Assign { id, intent, reason } => print_json(
                c.post(
                    &format!("/v1/transfers/{}/assign", encode(&id)),
                    json!({"intent_id": intent, "reason": reason}),
                )
                .await?,
            ),
        }
    })
}

fn metadata_arg(text: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text).map_err(|e| anyhow::anyhow!("--metadata is not JSON: {e}"))
}

fn encode(segment: &str) -> String {
    form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}

pub(super) async fn events(c: &Client, mut after: u64, follow: bool) -> anyhow::Result<()> {
    loop {
        let wait = if follow { 30 } else { 0 };
        let page = c
            .get(&format!("/v1/events?after={after}&limit=1000&wait={wait}"))
            .await?;
        let events = page["events"].as_array().cloned().unwrap_or_default();
        for e in &events {
            println!("{}", serde_json::to_string(e)?);
        }
        after = page["last_seq"].as_u64().unwrap_or(after);
        if events.is_empty() && !follow {
            return Ok(());
        }
    }
}
