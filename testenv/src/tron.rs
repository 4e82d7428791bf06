//! A fake Tron full node (HTTP API) driven by the test: the test adds USDT
//! transfers, produces blocks, moves the solidified head and forks; the
//! server answers in the recorded shapes (`blockID`, `block_header.raw_data`,
//! transaction infos with `receipt.result` and `log[]`, `{}` for "not
//! found"), and can inject `{"Error": ...}` bodies, 429s and 403 penalties.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

const TRANSFER_TOPIC: &str = "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";
/// USDT on Tron, hex without the 0x41 prefix (as logs show it).
pub const USDT_HEX: &str = "a614f803b6fd780986a42c78ec9c7f77e6ded13c";
pub const FAKE_USDT_HEX: &str = "b614f803b6fd780986a42c78ec9c7f77e6ded13c";
const SENDER_HEX: &str = "60e6e92e57d61a9d68b5d95275cc9667d9e6c7c9";

struct Block {
    number: u64,
    id: String,
    parent: String,
    infos: Vec<Value>,
}

struct Chain {
    blocks: Vec<Block>,
    pending: Vec<Value>,
    /// Transactions of blocks a fork removed, to mine again on request.
    orphaned: Vec<Value>,
    solidified: u64,
    seed: u64,
    api_keys: Vec<String>,
}

struct Shared {
    chain: Mutex<Chain>,
    /// Answers to `gettransactioninfobyblocknum` served as `[]`: the node
    /// behind a load balancer that does not have the block yet.
    missing_infos: AtomicU32,
    /// `decimals()` of the token, as `triggerconstantcontract` answers.
    decimals: AtomicU32,
    error_bodies: AtomicU32,
    too_many: AtomicU32,
    penalties: AtomicU32,
}

pub struct FakeTron {
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::AbortHandle,
}

fn block_id(number: u64, seed: u64) -> String {
    format!(
        "{number:016x}{:048x}",
        seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) as u128 | 1
    )
}

fn block_json(b: &Block) -> Value {
    let mut v = json!({
        "blockID": b.id,
        "block_header": {"raw_data": {"number": b.number, "txTrieRoot": "f8156964cc3e5793a368f938a18ea45c02bd48fe3a412f7091ce8d9ef56df174",
            "witness_address": "41e7860196ad5b5718c1d6326babab039b70b8c1cd", "parentHash": b.parent, "version": 34,
            "timestamp": 1_777_445_307_000u64 + b.number * 3000},
            "witness_signature": "55a29981b2ba121613788de5d1b6bd87579ef63479f4fbb7bc99b1c721769487"},
    });
    // As java-tron: the list is absent from a block without transactions.
    if !b.infos.is_empty() {
        v["transactions"] = b
            .infos
            .iter()
            .map(|i| json!({"txID": i["id"], "raw_data": {}, "ret": [{"contractRet": "SUCCESS"}]}))
            .collect();
    }
    v
}

impl FakeTron {
    pub async fn start(first: u64) -> FakeTron {
        super::install_tls();
        let genesis = Block {
            number: first,
            id: block_id(first, 1),
            parent: "00".repeat(32),
            infos: vec![],
        };
        let shared = Arc::new(Shared {
            chain: Mutex::new(Chain {
                blocks: vec![genesis],
                pending: vec![],
                orphaned: vec![],
                solidified: first,
                seed: 2,
                api_keys: vec![],
            }),
            missing_infos: 0.into(),
            decimals: 6.into(),
            error_bodies: 0.into(),
            too_many: 0.into(),
            penalties: 0.into(),
        });
        let app = axum::Router::new()
            .route("/wallet/getnowblock", axum::routing::post(now_block))
            .route("/walletsolidity/getnowblock", axum::routing::post(solid_block))
            .route("/wallet/getblockbynum", axum::routing::post(block_by_num))
            .route(
                "/wallet/gettransactioninfobyblocknum",
                axum::routing::post(infos_by_num),
            )
            .route("/wallet/triggerconstantcontract", axum::routing::post(trigger_constant))
            .with_state(shared.clone());
        let (url, task) = super::serve_loopback(app).await;
        FakeTron { url, shared, task }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Chain) -> T) -> T {
        f(&mut self.shared.chain.lock().unwrap())
    }

    /// A TRC20 transfer of `raw` units by `contract_hex` to `to_hex`, with
    /// `result` as `receipt.result`, in the next block. Returns the txid.
    pub fn transfer(&self, contract_hex: &str, to_hex: &str, raw: u128, result: &str) -> String {
        self.with(|c| {
            c.seed += 1;
            let txid = format!("{:064x}", 0xB69C_0000_0000_0000u64 + c.seed);
            let mut info = json!({
                "id": txid, "fee": 345000, "blockTimeStamp": 1_731_235_554_000u64,
                "contractResult": ["0000000000000000000000000000000000000000000000000000000000000000"],
                "contract_address": format!("41{contract_hex}"),
                "receipt": {"energy_usage": 64285, "energy_usage_total": 64285, "net_fee": 345000, "result": result},
            });
            if result == "SUCCESS" {
                info["log"] = json!([{"address": contract_hex, "topics": [
                    TRANSFER_TOPIC, format!("{:0>64}", SENDER_HEX), format!("{:0>64}", to_hex)],
                    "data": format!("{raw:064x}")}]);
            } else {
                info["result"] = json!("FAILED");
                info["resMessage"] = json!("4e6f7420656e6f75676820656e65726779");
            }
            c.pending.push(info);
            txid
        })
    }

    /// Produces `n` blocks; the first carries the pending transactions.
    pub fn produce(&self, n: u64) {
        self.with(|c| {
            for _ in 0..n {
                c.seed += 1;
                let parent = c.blocks.last().unwrap();
                let number = parent.number + 1;
                let mut infos: Vec<Value> = std::mem::take(&mut c.pending);
                for info in &mut infos {
                    info["blockNumber"] = json!(number);
                }
                let block = Block {
                    number,
                    id: block_id(number, c.seed),
                    parent: parent.id.clone(),
                    infos,
                };
                c.blocks.push(block);
            }
        });
    }

    pub fn head(&self) -> u64 {
        self.with(|c| c.blocks.last().unwrap().number)
    }

    /// The solidified head trails the head by `lag` blocks.
    pub fn solidify_with_lag(&self, lag: u64) {
        self.with(|c| {
            c.solidified = c
                .blocks
                .last()
                .unwrap()
                .number
                .saturating_sub(lag)
                .max(c.blocks[0].number)
        });
    }

    /// Replaces every block from `number` up with `n` new, empty ones.
    pub fn fork_from(&self, number: u64, n: u64) {
        self.with(|c| {
            let (kept, dropped): (Vec<Block>, Vec<Block>) = std::mem::take(&mut c.blocks)
                .into_iter()
                .partition(|b| b.number < number);
            c.blocks = kept;
            c.orphaned.extend(dropped.into_iter().flat_map(|b| b.infos));
        });
        self.produce(n);
    }

    /// Puts a transaction a fork removed back into the next block.
    pub fn remine(&self, txid: &str) {
        self.with(|c| {
            let at = c
                .orphaned
                .iter()
                .position(|i| i["id"] == txid)
                .expect("an orphaned transaction");
            let info = c.orphaned.remove(at);
            c.pending.push(info);
        });
    }

    /// The next `n` answers to `gettransactioninfobyblocknum` are `[]`, as
    /// from a node behind a load balancer that lacks the block.
    pub fn inject_missing_infos(&self, n: u32) {
        self.shared.missing_infos.store(n, Ordering::SeqCst);
    }

    pub fn set_decimals(&self, decimals: u32) {
        self.shared.decimals.store(decimals, Ordering::SeqCst);
    }

    pub fn inject_error_bodies(&self, n: u32) {
        self.shared.error_bodies.store(n, Ordering::SeqCst);
    }

    pub fn inject_429(&self, n: u32) {
        self.shared.too_many.store(n, Ordering::SeqCst);
    }

    pub fn inject_403(&self, n: u32) {
        self.shared.penalties.store(n, Ordering::SeqCst);
    }

    pub fn api_keys_seen(&self) -> Vec<String> {
        self.with(|c| c.api_keys.clone())
    }
}

impl Drop for FakeTron {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Records the API key and returns an injected fault, if one is due.
fn fault(s: &Shared, headers: &HeaderMap) -> Option<Response> {
    if let Some(key) = headers.get("TRON-PRO-API-KEY").and_then(|v| v.to_str().ok()) {
        s.chain.lock().unwrap().api_keys.push(key.to_string());
    }
    if super::take(&s.too_many) {
        return Some((StatusCode::TOO_MANY_REQUESTS, "Too Many Requests").into_response());
    }
    if super::take(&s.penalties) {
        let body = json!({"success": false, "error": "The key exceeds the frequency limit(15), and the query server is suspended for 30s", "statusCode": 403});
        return Some((StatusCode::FORBIDDEN, axum::Json(body)).into_response());
    }
    if super::take(&s.error_bodies) {
        let body = json!({"Error": "class org.tron.core.exception.BadItemException : block not found"});
        return Some((StatusCode::OK, axum::Json(body)).into_response());
    }
    None
}

fn num(body: &[u8]) -> u64 {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["num"].as_u64())
        .unwrap_or(0)
}

async fn now_block(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(f) = fault(&s, &headers) {
        return f;
    }
    let c = s.chain.lock().unwrap();
    axum::Json(block_json(c.blocks.last().unwrap())).into_response()
}

async fn solid_block(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(f) = fault(&s, &headers) {
        return f;
    }
    let c = s.chain.lock().unwrap();
    let b = c.blocks.iter().find(|b| b.number == c.solidified).unwrap();
    axum::Json(block_json(b)).into_response()
}

async fn block_by_num(State(s): State<Arc<Shared>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if let Some(f) = fault(&s, &headers) {
        return f;
    }
    let n = num(&body);
    let c = s.chain.lock().unwrap();
    match c.blocks.iter().find(|b| b.number == n) {
        Some(b) => axum::Json(block_json(b)).into_response(),
        // Block 0 as mainnet serves it: its header's raw_data has no number.
        None if n == 0 => axum::Json(json!({
            "blockID": MAINNET_GENESIS,
            "block_header": {"raw_data": {"parentHash": "957dc2d350daecc7bb6a38f3938ebde0a0c1cedafe15f0edae4256a2907449f6"}}
        }))
        .into_response(),
        None => axum::Json(json!({})).into_response(),
    }
}

/// Tron mainnet's genesis block ID, as TronGrid serves it.
const MAINNET_GENESIS: &str = "00000000000000001ebf88508a03865c71d452e25f4d51194196a1d22b6653dc";

async fn infos_by_num(State(s): State<Arc<Shared>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if let Some(f) = fault(&s, &headers) {
        return f;
    }
    if super::take(&s.missing_infos) {
        return axum::Json(json!([])).into_response();
    }
    let n = num(&body);
    let c = s.chain.lock().unwrap();
    match c.blocks.iter().find(|b| b.number == n) {
        Some(b) if !b.infos.is_empty() => axum::Json(Value::Array(b.infos.clone())).into_response(),
        _ => axum::Json(json!({})).into_response(),
    }
}

/// `decimals()` of the token, in the shape java-tron answers constant calls.
async fn trigger_constant(State(s): State<Arc<Shared>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if let Some(f) = fault(&s, &headers) {
        return f;
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if request["function_selector"] != "decimals()" || request["contract_address"] != format!("41{USDT_HEX}") {
        return axum::Json(json!({"result": {"code": "CONTRACT_VALIDATE_ERROR", "message": "unknown"}}))
            .into_response();
    }
    let decimals = s.decimals.load(Ordering::SeqCst);
    axum::Json(json!({
        "result": {"result": true},
        "energy_used": 230,
        "constant_result": [format!("{decimals:064x}")],
        "transaction": {"ret": [{}], "visible": false, "txID": "00"},
    }))
    .into_response()
}
