//! A local Esplora REST server backed by a real litecoind: the endpoints
//! paywatch's `esplora` backend uses, in Esplora's shapes (text hashes, raw
//! binary blocks, JSON with satoshi integers), plus fault injection (429
//! rate limits, garbage bodies).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::litecoind::to_sats;

struct Shared {
    node_url: String,
    http: reqwest::Client,
    rate_limited: AtomicU32,
    garbage: AtomicU32,
    pub requests: AtomicU64,
    /// Most mempool transactions one address listing returns.
    mempool_page: std::sync::atomic::AtomicUsize,
}

pub struct FakeEsplora {
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::AbortHandle,
}

impl FakeEsplora {
    pub async fn start(node_url: String) -> FakeEsplora {
        super::install_tls();
        let shared = Arc::new(Shared {
            node_url,
            http: reqwest::Client::new(),
            rate_limited: AtomicU32::new(0),
            garbage: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            mempool_page: 50.into(),
        });
        let app = axum::Router::new()
            .route("/blocks/tip/hash", get(tip_hash))
            .route("/block/{hash}", get(block))
            .route("/block/{hash}/raw", get(block_raw))
            .route("/block/{hash}/status", get(block_status))
            .route("/tx/{txid}/status", get(tx_status))
            .route("/tx/{txid}", get(tx_status))
            .route("/tx/{txid}/outspend/{vout}", get(outspend))
            .route("/block-height/{height}", get(block_height))
            .route("/address/{address}/txs/mempool", get(address_mempool))
            .with_state(shared.clone());
        let (url, task) = super::serve_loopback(app).await;
        FakeEsplora { url, shared, task }
    }

    /// The next `n` requests get HTTP 429.
    pub fn rate_limit_next(&self, n: u32) {
        self.shared.rate_limited.store(n, Ordering::SeqCst);
    }

    /// The next `n` requests get a 200 with an HTML error page.
    pub fn garbage_next(&self, n: u32) {
        self.shared.garbage.store(n, Ordering::SeqCst);
    }

    /// Address mempool listings return at most `n` transactions.
    pub fn set_mempool_page(&self, n: usize) {
        self.shared.mempool_page.store(n, Ordering::SeqCst);
    }

    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }
}

impl Drop for FakeEsplora {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Injected faults, if any are due.
fn fault(s: &Shared) -> Option<Response> {
    s.requests.fetch_add(1, Ordering::SeqCst);
    if super::take(&s.rate_limited) {
        return Some((StatusCode::TOO_MANY_REQUESTS, "Too Many Requests").into_response());
    }
    if super::take(&s.garbage) {
        return Some((StatusCode::OK, "<html><body>502 Bad Gateway</body></html>").into_response());
    }
    None
}

async fn rpc(s: &Shared, method: &str, params: Value) -> Result<Value, Value> {
    let body = json!({"jsonrpc": "1.0", "id": "esplora", "method": method, "params": params});
    let v: Value = s
        .http
        .post(&s.node_url)
        .basic_auth("u", Some(super::litecoind::RPC_PASSWORD))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    if v["error"].is_null() {
        Ok(v["result"].clone())
    } else {
        Err(v["error"].clone())
    }
}

async fn tip_hash(State(s): State<Arc<Shared>>) -> Response {
    if let Some(f) = fault(&s) {
        return f;
    }
    let hash = rpc(&s, "getbestblockhash", json!([])).await.unwrap();
    hash.as_str().unwrap().to_string().into_response()
}

async fn block(State(s): State<Arc<Shared>>, Path(hash): Path<String>) -> Response {
    if let Some(f) = fault(&s) {
        return f;
    }
    match rpc(&s, "getblockheader", json!([hash, true])).await {
        Ok(h) => axum::Json(
            json!({"id": h["hash"], "height": h["height"], "previousblockhash": h["previousblockhash"],
                "timestamp": h["time"]}),
        )
        .into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "Block not found").into_response(),
    }
}

async fn block_status(State(s): State<Arc<Shared>>, Path(hash): Path<String>) -> Response {
    if let Some(f) = fault(&s) {
        return f;
    }
    match rpc(&s, "getblockheader", json!([hash, true])).await {
        Ok(h) => {
            axum::Json(json!({"in_best_chain": h["confirmations"].as_i64().unwrap_or(-1) >= 0, "height": h["height"]}))
                .into_response()
        }
        Err(_) => (StatusCode::NOT_FOUND, "Block not found").into_response(),
    }
}

/// Who spends an output, among mempool transactions (enough for the tests'
/// replacements); `{"spent": false}` otherwise.
async fn outspend(State(s): State<Arc<Shared>>, Path((txid, vout)): Path<(String, u32)>) -> Response {
    if let Some(f) = fault(&s) {
        return f;
    }
    let mempool = rpc(&s, "getrawmempool", json!([])).await.unwrap_or(Value::Null);
    for candidate in mempool.as_array().cloned().unwrap_or_default() {
        let Ok(tx) = rpc(&s, "getrawtransaction", json!([candidate, true])).await else {
            continue;
        };
        let spends = tx["vin"]
            .as_array()
            .is_some_and(|vin| vin.iter().any(|i| i["txid"] == txid.as_str() && i["vout"] == vout));
        if spends {
            return axum::Json(json!({"spent": true, "txid": tx["txid"], "status": {"confirmed": false}}))
                .into_response();
        }
    }
    axum::Json(json!({"spent": false})).into_response()
}

async fn tx_status(State(s): State<Arc<Shared>>, Path(txid): Path<String>) -> Response {
    if let Some(f) = fault(&s) {
        return f;
    }
    match rpc(&s, "getrawtransaction", json!([txid, true])).await {
        Ok(tx) if tx["blockhash"].is_string() => {
            axum::Json(json!({"confirmed": true, "block_hash": tx["blockhash"]})).into_response()
        }
        Ok(_) => axum::Json(json!({"confirmed": false})).into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "Transaction not found").into_response(),
    }
}

async fn block_raw(State(s): State<Arc<Shared>>, Path(hash): Path<String>) -> Response {
    if let Some(f) = fault(&s) {
        return f;
    }
    match rpc(&s, "getblock", json!([hash, 0])).await {
        Ok(hex_text) => hex::decode(hex_text.as_str().unwrap()).unwrap().into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "Block not found").into_response(),
    }
}

async fn block_height(State(s): State<Arc<Shared>>, Path(height): Path<u64>) -> Response {
    if let Some(f) = fault(&s) {
        return f;
    }
    match rpc(&s, "getblockhash", json!([height])).await {
        Ok(hash) => hash.as_str().unwrap().to_string().into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "Block not found").into_response(),
    }
}

async fn address_mempool(State(s): State<Arc<Shared>>, Path(address): Path<String>) -> Response {
    if let Some(f) = fault(&s) {
        return f;
    }
    let txids = rpc(&s, "getrawmempool", json!([])).await.unwrap();
    let mut out = Vec::new();
    for txid in txids.as_array().unwrap() {
        let Ok(tx) = rpc(&s, "getrawtransaction", json!([txid, true])).await else {
            continue;
        };
        let vout = tx["vout"].as_array().cloned().unwrap_or_default();
        let pays = vout.iter().any(|o| {
            o["scriptPubKey"]["addresses"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == address.as_str()))
        });
        if pays {
            let outputs: Vec<Value> = vout
                .iter()
                .map(|o| json!({"scriptpubkey": o["scriptPubKey"]["hex"], "value": to_sats(&o["value"].to_string())}))
                .collect();
            let inputs: Vec<Value> = tx["vin"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|i| json!({"txid": i["txid"], "vout": i["vout"]}))
                .collect();
            out.push(json!({"txid": tx["txid"], "vin": inputs, "vout": outputs, "status": {"confirmed": false}}));
        }
    }
    // Esplora answers one page (newest first): with more transactions than
    // a page holds, some are simply not listed.
    out.reverse();
    out.truncate(s.mempool_page.load(std::sync::atomic::Ordering::SeqCst));
    axum::Json(out).into_response()
}
