//! The real `paywatch` binary, run with a config file like an operator would.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::{free_port, wait_for};

pub const TOKEN: &str = "test-token-0123456789";
pub const WEBHOOK_SECRET: &str = "whsec-test-secret";

pub struct Paywatch {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub api_port: u16,
    http: reqwest::Client,
    config_body: String,
}

/// paywatch watching `pool` fresh addresses of `node` for LTC, reaching the
/// node at `url` (the node itself, or a proxy in front of it); `extra` adds
/// lines to the asset's table.
pub async fn start_ltc(
    node: &super::litecoind::Litecoind,
    url: &str,
    pool: usize,
    confirmations: u32,
    extra: &str,
    webhook: Option<&str>,
) -> (Vec<String>, Paywatch) {
    let addresses = node.new_addresses(pool).await;
    let pw = Paywatch::start(
        |dir| {
            format!(
                "{}{extra}\n",
                super::configs::core_rpc(dir, "LTC", url, &addresses, confirmations)
            )
        },
        webhook,
    )
    .await;
    (addresses, pw)
}

impl Paywatch {
    /// Starts paywatch with `assets` (TOML asset tables) and, when given, a
    /// webhook URL; waits until it is ready.
    pub async fn start(assets: impl FnOnce(&std::path::Path) -> String, webhook: Option<&str>) -> Paywatch {
        // With PAYWATCH_TEST_STORE=postgres, the same test runs on a fresh
        // PostgreSQL database instead of the embedded store.
        let top = if super::postgres::selected() {
            format!("store = \"{}\"\n", super::postgres::server().fresh_database())
        } else {
            String::new()
        };
        Paywatch::start_with(assets, webhook, top, None).await
    }

    /// On the embedded store in `state_dir` (whatever the test run's store).
    pub async fn start_embedded_in(
        assets: impl FnOnce(&std::path::Path) -> String,
        state_dir: &std::path::Path,
    ) -> Paywatch {
        Paywatch::start_with(assets, None, String::new(), Some(state_dir.to_path_buf())).await
    }

    /// One of several instances on the PostgreSQL store at `store_url`,
    /// named `instance`, with leases of `lease_ttl`.
    pub async fn start_shared(
        assets: impl FnOnce(&std::path::Path) -> String,
        webhook: Option<&str>,
        store_url: &str,
        instance: &str,
        lease_ttl: &str,
    ) -> Paywatch {
        let top =
            format!("store = \"{store_url}\"\n\n[cluster]\ninstance = \"{instance}\"\nlease_ttl = \"{lease_ttl}\"\n\n");
        Paywatch::start_with(assets, webhook, top, None).await
    }

    /// `start` with `top` (top-level keys and tables) first in the config.
    async fn start_with(
        assets: impl FnOnce(&std::path::Path) -> String,
        webhook: Option<&str>,
        top: String,
        state_dir: Option<PathBuf>,
    ) -> Paywatch {
        super::install_tls();
        let dir = tempfile::tempdir().unwrap();
        let api_port = free_port();
        std::fs::write(dir.path().join("api-token-file"), TOKEN).unwrap();
        std::fs::write(dir.path().join("webhook-secret"), WEBHOOK_SECRET).unwrap();
        let (top, sections) = match top.find("\n[") {
            Some(at) => top.split_at(at + 1),
            None => (top.as_str(), ""),
        };
        let mut config = format!(
            "{top}state_dir = \"{}\"\n\n{sections}[api]\nlisten = \"127.0.0.1:{api_port}\"\ntoken_file = \"{}\"\n\n",
            state_dir.unwrap_or_else(|| dir.path().join("state")).display(),
            dir.path().join("api-token-file").display()
        );
        if let Some(url) = webhook {
            config.push_str(&format!(
                "[webhook]\nurl = \"{url}\"\nsecret_file = \"{}\"\ntimeout = \"2s\"\nretry_initial = \"200ms\"\nretry_max = \"1s\"\n\n",
                dir.path().join("webhook-secret").display()
            ));
        }
        config.push_str(&assets(dir.path()));
        let mut pw = Paywatch {
            child: None,
            dir,
            api_port,
            http: reqwest::Client::new(),
            config_body: config,
        };
        std::fs::write(pw.config_path(), &pw.config_body).unwrap();
        pw.spawn();
        pw.wait_ready().await;
        pw
    }

    /// The config file's text.
    pub fn config_text(&self) -> String {
        self.config_body.clone()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("paywatch.toml")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("paywatch.log")
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_paywatch"))
            .args(["run", "--config"])
            .arg(self.config_path())
            .env("RUST_LOG", "info,paywatch=debug")
            .env_remove("PAYWATCH_API_TOKEN")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("failed to start paywatch");
        self.child = Some(child);
    }

    pub async fn wait_ready(&self) {
        let url = format!("http://127.0.0.1:{}/readyz", self.api_port);
        let http = self.http.clone();
        let ready = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if let Ok(r) = http.get(&url).send().await
                    && r.status().is_success()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        if ready.is_err() {
            panic!("paywatch did not become ready; log:\n{}", self.logs());
        }
    }

    /// The running daemon's process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("paywatch is running").id()
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `signal` (`STOP`, `CONT`, ...) to the running daemon.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("paywatch is running");
        let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        c.wait().unwrap()
    }

    /// Starts again after `terminate` (or `kill9`), with the same state.
    pub async fn resume(&mut self) {
        self.spawn();
        self.wait_ready().await;
    }

    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn();
        self.wait_ready().await;
    }

    /// Any request; returns status and JSON body (Null when not JSON).
    pub async fn request(&self, method: &str, path: &str, body: Option<&str>, token: Option<&str>) -> (u16, Value) {
        let url = format!("http://127.0.0.1:{}{path}", self.api_port);
        let build = || {
            let mut req = self.http.request(method.parse().unwrap(), &url);
            if let Some(t) = token {
                req = req.header("Authorization", format!("Bearer {t}"));
            }
            if let Some(b) = body {
                req = req.header("Content-Type", "application/json").body(b.to_string());
            }
            req
        };
        // A kept-alive connection the server closed (after refusing an
        // oversized body early, say) fails the next request: a GET (which
        // changes nothing) is sent again, once, on a new connection.
        let resp = match build().send().await {
            Err(e) if method == "GET" && (e.is_request() || e.is_connect()) => build().send().await,
            sent => sent,
        }
        .unwrap_or_else(|e| panic!("{method} {path}: {e}\nlog:\n{}", self.logs()));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self.request("GET", path, None, Some(TOKEN)).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.request("POST", path, Some(&body.to_string()), Some(TOKEN)).await
    }

    /// Creates an intent and asserts 201.
    pub async fn create(&self, body: Value) -> Value {
        let (status, v) = self.post("/v1/intents", body).await;
        assert_eq!(status, 201, "create: {v}");
        v
    }

    pub async fn intent(&self, id: &str) -> Value {
        self.get(&format!("/v1/intents/{id}")).await
    }

    pub async fn events(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let page = self.get(&format!("/v1/events?after={after}&limit=1000")).await;
            let events = page["events"].as_array().unwrap().clone();
            if events.is_empty() {
                return out;
            }
            after = page["last_seq"].as_u64().unwrap();
            out.extend(events);
        }
    }

    /// Waits for an event of `kind` about `intent_id` (or any transfer event
    /// when `intent_id` is None) and returns it.
    pub async fn wait_event(&self, kind: &str, intent_id: Option<&str>) -> Value {
        let found = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                for e in self.events().await {
                    let about = e["intent"]["id"].as_str();
                    if e["type"] == kind && (intent_id.is_none() || about == intent_id) {
                        return e;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("no {kind} event for {intent_id:?}; log:\n{}", self.logs()))
    }

    /// Waits until the intent has `status`.
    pub async fn wait_status(&self, id: &str, status: &str) -> Value {
        wait_for(&format!("{id} to be {status}"), Duration::from_secs(30), || async {
            let v = self.intent(id).await;
            (v["status"] == status).then_some(v)
        })
        .await
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.api_port);
        self.http.get(url).send().await.unwrap().text().await.unwrap()
    }

    /// Waits until `asset` is scanned up to `height`.
    pub async fn wait_scanned(&self, asset: &str, height: u64) {
        wait_for(
            &format!("{asset} scanned to {height}"),
            Duration::from_secs(30),
            || async { (self.get("/v1/status").await["assets"][asset]["scanned_height"] == height).then_some(()) },
        )
        .await
    }

    /// Cancels an intent and asserts 200.
    pub async fn cancel(&self, id: &str) -> Value {
        let (status, v) = self.post(&format!("/v1/intents/{id}/cancel"), json!({})).await;
        assert_eq!(status, 200, "cancel {id}: {v}");
        v
    }

    pub async fn ltc_intent(&self, amount: &str) -> Value {
        self.create(json!({"asset": "LTC", "amount": amount})).await
    }
}

impl Drop for Paywatch {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A finished command's stdout and stderr together, as an operator reads
/// them in a terminal.
pub fn said(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
