//! A JSON-RPC proxy in front of a node that behaves the way real providers
//! behave: it caps `eth_getLogs` ranges with a provider's error
//! text, or refuses `eth_getLogs` altogether; and like a load balancer whose
//! nodes lag each other: every other HTTP request is answered as a node
//! `lag` blocks behind would (head, headers, logs cut at its head, no error).
//! Batches are answered per call, by one "node" for the whole batch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::extract::State;
use serde_json::{Value, json};

struct Shared {
    upstream: String,
    http: reqwest::Client,
    cap: u64,
    refuse: AtomicBool,
    rejected: AtomicU64,
    /// Blocks the lagging node is behind (0: no lagging node).
    lag: AtomicU64,
    requests: AtomicU64,
    /// Lag on every request, not every other one.
    always: AtomicBool,
    /// The upstream is Bitcoin/Litecoin Core (else an EVM node).
    core: AtomicBool,
    /// Each call of a batch goes to a node of its own (gateways that split
    /// batches across their upstreams).
    split: AtomicBool,
    /// Only `eth_getLogs` lags (a provider whose log index trails its nodes).
    logs_only: AtomicBool,
    /// Added to every answer (a slow, distant provider).
    delay_ms: AtomicU64,
    /// Block 0 is answered as Bitcoin's regtest genesis: a Litecoin Core
    /// regtest node dressed as a Bitcoin Core one (no bitcoind runs here;
    /// the chains' formats are the same).
    as_bitcoin: AtomicBool,
}

/// Bitcoin's regtest genesis block hash.
const BITCOIN_REGTEST_GENESIS: &str = "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206";

pub struct RpcProxy {
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::AbortHandle,
}

impl RpcProxy {
    /// `cap`: most blocks one `eth_getLogs` may span.
    pub async fn start(upstream: String, cap: u64) -> RpcProxy {
        super::install_tls();
        let shared = Arc::new(Shared {
            upstream,
            http: reqwest::Client::new(),
            cap,
            refuse: false.into(),
            rejected: 0.into(),
            lag: 0.into(),
            requests: 0.into(),
            always: false.into(),
            core: false.into(),
            split: false.into(),
            logs_only: false.into(),
            delay_ms: 0.into(),
            as_bitcoin: false.into(),
        });
        let app = axum::Router::new()
            .route("/", axum::routing::post(forward))
            .with_state(shared.clone());
        let (url, task) = super::serve_loopback(app).await;
        RpcProxy { url, shared, task }
    }

    pub fn refuse_get_logs(&self, refuse: bool) {
        self.shared.refuse.store(refuse, Ordering::SeqCst);
    }

    /// About every other request is answered by a node `lag` blocks behind.
    pub fn lag_every_other_request(&self, lag: u64) {
        self.shared.lag.store(lag, Ordering::SeqCst);
    }

    /// Every answer takes `ms` longer.
    pub fn delay(&self, ms: u64) {
        self.shared.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Batches are split: each call is answered by a node of its own.
    pub fn split_batches(&self) {
        self.shared.split.store(true, Ordering::SeqCst);
    }

    /// `eth_getLogs` is always answered `lag` blocks behind, everything else
    /// by an up-to-date node, batches split (a provider whose log index
    /// trails its nodes).
    pub fn lag_logs_only(&self, lag: u64) {
        self.shared.logs_only.store(true, Ordering::SeqCst);
        self.shared.always.store(true, Ordering::SeqCst);
        self.shared.split.store(true, Ordering::SeqCst);
        self.shared.lag.store(lag, Ordering::SeqCst);
    }

    /// A Core node that stays `lag` blocks behind its upstream (a backup
    /// behind the primary).
    pub fn lag_core_always(&self, lag: u64) {
        self.shared.core.store(true, Ordering::SeqCst);
        self.shared.always.store(true, Ordering::SeqCst);
        self.shared.lag.store(lag, Ordering::SeqCst);
    }

    /// A Litecoin Core regtest node, dressed as a Bitcoin Core one.
    pub async fn bitcoin_over(litecoind_url: String) -> RpcProxy {
        let proxy = RpcProxy::start(litecoind_url, u64::MAX).await;
        proxy.shared.as_bitcoin.store(true, Ordering::SeqCst);
        proxy
    }

    pub fn port(&self) -> u16 {
        self.url.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0)
    }

    pub fn rejected(&self) -> u64 {
        self.shared.rejected.load(Ordering::SeqCst)
    }
}

impl Drop for RpcProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn quantity(v: &Value) -> u64 {
    v.as_str()
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .unwrap_or(0)
}

async fn forward(
    State(s): State<Arc<Shared>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::Json<Value> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let auth = auth.as_deref();
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let delay = s.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    let head = lagging_head(&s, auth).await;
    match request {
        Value::Array(calls) => {
            let mut answers = Vec::new();
            for c in calls {
                let head = if s.logs_only.load(Ordering::SeqCst) && c["method"] != "eth_getLogs" {
                    None
                } else if s.split.load(Ordering::SeqCst) {
                    lagging_head(&s, auth).await
                } else {
                    head
                };
                answers.push(answer(&s, c, head, auth).await);
            }
            axum::Json(Value::Array(answers))
        }
        single if s.logs_only.load(Ordering::SeqCst) && single["method"] != "eth_getLogs" => {
            axum::Json(answer(&s, single, None, auth).await)
        }
        single => axum::Json(answer(&s, single, head, auth).await),
    }
}

/// The head of the node this request (or call) reaches: `Some` when it is
/// the lagging one.
async fn lagging_head(s: &Shared, auth: Option<&str>) -> Option<u64> {
    let nth = s.requests.fetch_add(1, Ordering::SeqCst);
    // About every other request, in no fixed pattern (a load balancer's
    // choice does not line up with the client's calls).
    let coin = nth.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 63 == 1;
    let lagging = s.lag.load(Ordering::SeqCst) > 0 && (s.always.load(Ordering::SeqCst) || coin);
    if !lagging {
        return None;
    }
    let core = s.core.load(Ordering::SeqCst);
    let method = if core { "getblockcount" } else { "eth_blockNumber" };
    let latest = call(
        s,
        json!({"jsonrpc": "2.0", "id": 0, "method": method, "params": []}),
        auth,
    )
    .await;
    let height = if core {
        latest["result"].as_u64().unwrap_or(0)
    } else {
        quantity(&latest["result"])
    };
    Some(height.saturating_sub(s.lag.load(Ordering::SeqCst)))
}

async fn call(s: &Shared, request: Value, auth: Option<&str>) -> Value {
    let mut req = s
        .http
        .post(&s.upstream)
        .header("content-type", "application/json")
        .body(request.to_string());
    if let Some(auth) = auth {
        req = req.header("authorization", auth);
    }
    req.send().await.unwrap().json().await.unwrap_or(Value::Null)
}

/// What a Core node `head` high answers where that differs from upstream.
async fn core_behind(s: &Shared, request: &Value, head: u64, auth: Option<&str>) -> Option<Value> {
    let id = request["id"].clone();
    let not_found = |code: i64, message: &str| json!({"jsonrpc": "2.0", "id": id, "result": null, "error": {"code": code, "message": message}});
    match request["method"].as_str().unwrap_or_default() {
        "getblockchaininfo" => {
            let mut info = call(s, request.clone(), auth).await;
            let hash = call(
                s,
                json!({"jsonrpc": "2.0", "id": 0, "method": "getblockhash", "params": [head]}),
                auth,
            )
            .await;
            info["result"]["blocks"] = json!(head);
            info["result"]["headers"] = json!(head);
            info["result"]["bestblockhash"] = hash["result"].clone();
            Some(info)
        }
        "getblockhash" if request["params"][0].as_u64().unwrap_or(0) > head => {
            Some(not_found(-8, "Block height out of range"))
        }
        "getblockheader" | "getblock" => {
            let header = call(
                s,
                json!({"jsonrpc": "2.0", "id": 0, "method": "getblockheader", "params": [request["params"][0], true]}),
                auth,
            )
            .await;
            (header["result"]["height"].as_u64().unwrap_or(0) > head).then(|| not_found(-5, "Block not found"))
        }
        _ => None,
    }
}

async fn answer(s: &Shared, mut request: Value, head: Option<u64>, auth: Option<&str>) -> Value {
    if s.as_bitcoin.load(Ordering::SeqCst) && request["method"] == "getblockhash" && request["params"][0] == 0 {
        return json!({"jsonrpc": "2.0", "id": request["id"], "result": BITCOIN_REGTEST_GENESIS});
    }
    if let Some(head) = head
        && s.core.load(Ordering::SeqCst)
    {
        return match core_behind(s, &request, head, auth).await {
            Some(answer) => answer,
            None => call(s, request, auth).await,
        };
    }
    let id = request["id"].clone();
    let method = request["method"].as_str().unwrap_or_default().to_string();
    if method == "eth_getLogs" {
        if s.refuse.load(Ordering::SeqCst) {
            let error = json!({"code": -32601, "message": "the method eth_getLogs does not exist/is not available"});
            return json!({"jsonrpc": "2.0", "id": id, "error": error});
        }
        let filter = &request["params"][0];
        let span = quantity(&filter["toBlock"]).saturating_sub(quantity(&filter["fromBlock"])) + 1;
        if span > s.cap {
            s.rejected.fetch_add(1, Ordering::SeqCst);
            let error =
                json!({"code": -32005, "message": format!("eth_getLogs range is too large, max is {} blocks", s.cap)});
            return json!({"jsonrpc": "2.0", "id": id, "error": error});
        }
    }
    if let Some(head) = head {
        match method.as_str() {
            "eth_blockNumber" => return json!({"jsonrpc": "2.0", "id": id, "result": format!("{head:#x}")}),
            "eth_getBlockByNumber" => {
                let which = &request["params"][0];
                let n = match which.as_str() {
                    Some("latest" | "finalized" | "safe") => head,
                    _ => quantity(which),
                };
                if n > head {
                    return json!({"jsonrpc": "2.0", "id": id, "result": null});
                }
                request["params"][0] = json!(format!("{n:#x}"));
            }
            "eth_getLogs" if request["params"][0]["blockHash"].is_string() => {
                let block = call(
                    s,
                    json!({"jsonrpc": "2.0", "id": 0, "method": "eth_getBlockByHash", "params": [request["params"][0]["blockHash"], false]}),
                    auth,
                )
                .await;
                if quantity(&block["result"]["number"]) > head {
                    return json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32000, "message": "unknown block"}});
                }
            }
            // Partial logs, no error: what a node behind `toBlock` answers.
            "eth_getLogs" if quantity(&request["params"][0]["toBlock"]) > head => {
                request["params"][0]["toBlock"] = json!(format!("{head:#x}"));
                if quantity(&request["params"][0]["fromBlock"]) > head {
                    return json!({"jsonrpc": "2.0", "id": id, "result": []});
                }
            }
            _ => {}
        }
    }
    call(s, request, auth).await
}
