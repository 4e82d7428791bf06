//! A fake rippled JSON-RPC server driven by the test: the test adds
//! transactions and validates ledgers; the server answers `server_info`,
//! `ledger`, `account_tx` (with marker paging) and `account_info` in the
//! recorded shapes of API v1 (`tx`, `Amount`, string ledger indexes) and v2
//! (`tx_json`, `DeliverMax`, top-level `hash`), following the request's
//! `api_version`.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use serde_json::{Value, json};

/// One transaction on the fake ledger.
#[derive(Clone)]
pub struct FakeTx {
    pub hash: String,
    pub ledger: u64,
    pub tx_type: &'static str,
    pub account: String,
    pub destination: String,
    pub tag: Option<u64>,
    /// What the sender asked to deliver (`Amount` / `DeliverMax`).
    pub deliver_max: Value,
    /// What the ledger delivered (`meta.delivered_amount`); absent on failures.
    pub delivered: Option<Value>,
    pub result: &'static str,
    pub flags: u64,
}

struct Ledger {
    validated: u64,
    txs: Vec<FakeTx>,
    /// Lowest ledger the server holds.
    history_from: u64,
    page_size: usize,
    /// Repeat the last entry of a page at the start of the next one.
    overlap: bool,
    require_dest: bool,
    next_hash: u64,
    /// `account_tx` is served by a server this many ledgers behind (a
    /// cluster whose members lag each other): it searches, and says it
    /// searched, only up to its own validated ledger.
    account_tx_behind: u64,
}

pub struct FakeRippled {
    pub url: String,
    state: Arc<Mutex<Ledger>>,
    task: tokio::task::AbortHandle,
}

pub const MERCHANT: &str = "rPT1Sjq2YGrBMTttX4GZHjKu9dyfzbpAYe";
pub const CUSTOMER: &str = "rrvV6w5Jho4RYpcdH8x1subhYzK89DZDW";

fn ledger_hash(index: u64) -> String {
    format!("{:064X}", index.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

impl FakeRippled {
    pub async fn start(first_validated: u64) -> FakeRippled {
        super::install_tls();
        let state = Arc::new(Mutex::new(Ledger {
            validated: first_validated,
            txs: Vec::new(),
            history_from: 32570,
            page_size: 200,
            overlap: false,
            require_dest: true,
            next_hash: 1,
            account_tx_behind: 0,
        }));
        let app = axum::Router::new()
            .route("/", axum::routing::post(handle))
            .with_state(state.clone());
        let (url, task) = super::serve_loopback(app).await;
        FakeRippled { url, state, task }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Ledger) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// Adds a transaction to the next ledger; returns its hash.
    pub fn add(&self, mut tx: FakeTx) -> String {
        self.with(|l| {
            tx.hash = format!("{:064X}", 0xABCD_0000_0000_0000u64 + l.next_hash);
            l.next_hash += 1;
            tx.ledger = l.validated + 1;
            let hash = tx.hash.clone();
            l.txs.push(tx);
            hash
        })
    }

    /// A successful XRP payment of `drops` to the merchant.
    pub fn pay(&self, drops: u64, tag: Option<u64>) -> String {
        self.add(payment(
            CUSTOMER,
            MERCHANT,
            tag,
            json!(drops.to_string()),
            Some(json!(drops.to_string())),
            "tesSUCCESS",
            0,
        ))
    }

    /// Validates the next `n` ledgers.
    pub fn close(&self, n: u64) {
        self.with(|l| l.validated += n);
    }

    pub fn validated(&self) -> u64 {
        self.with(|l| l.validated)
    }

    pub fn set_history_from(&self, from: u64) {
        self.with(|l| l.history_from = from);
    }

    pub fn set_paging(&self, page_size: usize, overlap: bool) {
        self.with(|l| {
            l.page_size = page_size;
            l.overlap = overlap;
        });
    }

    pub fn set_account_tx_behind(&self, ledgers: u64) {
        self.with(|l| l.account_tx_behind = ledgers);
    }

    pub fn set_require_dest(&self, on: bool) {
        self.with(|l| l.require_dest = on);
    }
}

impl Drop for FakeRippled {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn payment(
    account: &str,
    destination: &str,
    tag: Option<u64>,
    deliver_max: Value,
    delivered: Option<Value>,
    result: &'static str,
    flags: u64,
) -> FakeTx {
    FakeTx {
        hash: String::new(),
        ledger: 0,
        tx_type: "Payment",
        account: account.into(),
        destination: destination.into(),
        tag,
        deliver_max,
        delivered,
        result,
        flags,
    }
}

/// One `account_tx` entry in the shape of `api_version`.
fn entry(tx: &FakeTx, api_version: u64) -> Value {
    let mut body = json!({
        "Account": tx.account, "Destination": tx.destination, "Fee": "12", "Flags": tx.flags,
        "Sequence": 21659588, "SigningPubKey": "02A6FD99488B3D45E231D18E8FACEE627880F77E1EB529A523ADAA18289F6B984B",
        "TransactionType": tx.tx_type, "TxnSignature": "3045022100D5748F", "date": 811446652,
    });
    if let Some(tag) = tx.tag {
        body["DestinationTag"] = json!(tag);
    }
    let mut meta = json!({"AffectedNodes": [], "TransactionIndex": 0, "TransactionResult": tx.result});
    if let Some(d) = &tx.delivered {
        meta["delivered_amount"] = d.clone();
    }
    if api_version >= 2 {
        body["DeliverMax"] = tx.deliver_max.clone();
        body["ledger_index"] = json!(tx.ledger);
        json!({
            "meta": meta, "tx_json": body, "hash": tx.hash, "ledger_index": tx.ledger,
            "ledger_hash": ledger_hash(tx.ledger), "close_time_iso": "2025-09-17T17:50:52Z", "validated": true,
        })
    } else {
        body["Amount"] = tx.deliver_max.clone();
        body["hash"] = json!(tx.hash);
        body["ledger_index"] = json!(tx.ledger);
        body["inLedger"] = json!(tx.ledger);
        json!({"meta": meta, "tx": body, "validated": true})
    }
}

fn error(code: &str, message: &str, request: &Value) -> Value {
    json!({"result": {"error": code, "error_message": message, "status": "error", "request": request}})
}

async fn handle(State(state): State<Arc<Mutex<Ledger>>>, body: axum::body::Bytes) -> axum::Json<Value> {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let params = request["params"][0].clone();
    let api = params["api_version"].as_u64().unwrap_or(1);
    let l = state.lock().unwrap();
    let index = |n: u64| if api >= 2 { json!(n) } else { json!(n.to_string()) };
    let answer = match request["method"].as_str().unwrap_or("") {
        "server_info" => json!({"result": {"info": {
            "build_version": "2.3.0", "complete_ledgers": format!("{}-{}", l.history_from, l.validated),
            "server_state": "full", "validated_ledger": {"age": 2, "hash": ledger_hash(l.validated), "seq": l.validated},
        }, "status": "success"}}),
        "ledger" => {
            let n = match &params["ledger_index"] {
                Value::String(s) if s == "validated" => l.validated,
                v => v
                    .as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                    .unwrap_or(0),
            };
            if n > l.validated || n < l.history_from {
                error("lgrNotFound", "ledgerNotFound", &params)
            } else {
                // The validated ledger closed now, each before it 4 s
                // earlier: the fake keeps up with the world.
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                const RIPPLE_EPOCH: u64 = 946_684_800; // 2000-01-01, what close_time counts from
                let close_time = now.saturating_sub(RIPPLE_EPOCH + 4 * (l.validated - n));
                json!({"result": {"ledger": {"ledger_index": index(n), "ledger_hash": ledger_hash(n), "closed": true,
                        "close_time": close_time},
                    "ledger_hash": ledger_hash(n), "ledger_index": n, "validated": true, "status": "success"}})
            }
        }
        "account_info" => {
            let flags = if l.require_dest { 0x0002_0000u64 } else { 0 };
            json!({"result": {"account_data": {"Account": params["account"], "Balance": "1000000000", "Flags": flags},
                "validated": true, "status": "success"}})
        }
        "account_tx" => {
            let account = params["account"].as_str().unwrap_or("");
            let min = params["ledger_index_min"].as_u64().unwrap_or(0);
            let max = params["ledger_index_max"]
                .as_u64()
                .unwrap_or(u64::MAX)
                .min(l.validated - l.account_tx_behind);
            if api >= 2 && min < l.history_from {
                error("lgrIdxMalformed", "Ledger index malformed.", &params)
            } else {
                // v1 silently clamps to the history it has.
                let searched_min = min.max(l.history_from);
                let all: Vec<&FakeTx> = l
                    .txs
                    .iter()
                    .filter(|t| {
                        (t.account == account || t.destination == account)
                            && t.ledger >= searched_min
                            && t.ledger <= max
                    })
                    .collect();
                let start = params["marker"]["seq"].as_u64().unwrap_or(0) as usize;
                let from = if l.overlap && start > 0 { start - 1 } else { start };
                let end = (start + l.page_size).min(all.len());
                let page: Vec<Value> = all[from.min(end)..end].iter().map(|t| entry(t, api)).collect();
                let mut result = json!({
                    "account": account, "ledger_index_min": searched_min, "ledger_index_max": max,
                    "limit": params["limit"], "transactions": page, "validated": true, "status": "success",
                });
                if end < all.len() {
                    result["marker"] = json!({"ledger": all[end].ledger, "seq": end});
                }
                json!({"result": result})
            }
        }
        other => error("unknownCmd", &format!("Unknown method {other}"), &params),
    };
    axum::Json(answer)
}
