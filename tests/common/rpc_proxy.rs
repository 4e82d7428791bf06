//! A JSON-RPC proxy in front of a node that behaves like the providers
//! CHAINS.md describes: it caps `eth_getLogs` ranges with a provider's error
//! text, or refuses `eth_getLogs` altogether.

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
}

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
        });
        let app = axum::Router::new()
            .route("/", axum::routing::post(forward))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        })
        .abort_handle();
        RpcProxy { url, shared, task }
    }

    pub fn refuse_get_logs(&self, refuse: bool) {
        self.shared.refuse.store(refuse, Ordering::SeqCst);
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

async fn forward(State(s): State<Arc<Shared>>, body: axum::body::Bytes) -> axum::Json<Value> {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if request["method"] == "eth_getLogs" {
        let id = request["id"].clone();
        if s.refuse.load(Ordering::SeqCst) {
            let error = json!({"code": -32601, "message": "the method eth_getLogs does not exist/is not available"});
            return axum::Json(json!({"jsonrpc": "2.0", "id": id, "error": error}));
        }
        let filter = &request["params"][0];
        let span = quantity(&filter["toBlock"]).saturating_sub(quantity(&filter["fromBlock"])) + 1;
        if span > s.cap {
            s.rejected.fetch_add(1, Ordering::SeqCst);
            let error =
                json!({"code": -32005, "message": format!("eth_getLogs range is too large, max is {} blocks", s.cap)});
            return axum::Json(json!({"jsonrpc": "2.0", "id": id, "error": error}));
        }
    }
    let answer = s
        .http
        .post(&s.upstream)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    axum::Json(answer.json().await.unwrap_or(Value::Null))
}
