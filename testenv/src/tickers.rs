//! A fake of four public price tickers (Kraken, Coinbase, Binance,
//! CoinGecko) on one loopback server, answering in the shapes of the
//! recorded fixtures (`tests/fixtures/rates/`) with prices the test sets,
//! and misbehaving on demand: a provider that fails, or whose prices are old.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

const KRAKEN: &str = include_str!("../../tests/fixtures/rates/kraken_ticker.json");
const KRAKEN_ERROR: &str = include_str!("../../tests/fixtures/rates/kraken_error.json");
const COINBASE: &str = include_str!("../../tests/fixtures/rates/coinbase_spot.json");
const BINANCE: &str = include_str!("../../tests/fixtures/rates/binance_ticker_price.json");
const BINANCE_ERROR: &str = include_str!("../../tests/fixtures/rates/binance_error.json");

#[derive(Default)]
struct Shared {
    /// (provider, COIN, CURRENCY) -> price text.
    prices: Mutex<HashMap<(String, String, String), String>>,
    failing: Mutex<Vec<String>>,
    /// CoinGecko's `last_updated_at`, seconds before now.
    coingecko_age_secs: Mutex<i64>,
    requests: Mutex<Vec<String>>,
}

pub struct FakeTickers {
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::AbortHandle,
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture")
}

impl FakeTickers {
    pub async fn start() -> FakeTickers {
        let shared = Arc::new(Shared::default());
        let app = axum::Router::new()
            .route("/0/public/Ticker", axum::routing::get(kraken))
            .route("/v2/prices/{pair}/spot", axum::routing::get(coinbase))
            .route("/api/v3/ticker/price", axum::routing::get(binance))
            .route("/api/v3/simple/price", axum::routing::get(coingecko))
            .with_state(shared.clone());
        let (url, task) = super::serve_loopback(app).await;
        FakeTickers { url, shared, task }
    }

    /// `provider` (kraken, coinbase, binance, coingecko) quotes `coin` in
    /// `currency` at `price`.
    pub fn set_price(&self, provider: &str, coin: &str, currency: &str, price: &str) {
        self.shared
            .prices
            .lock()
            .unwrap()
            .insert((provider.into(), coin.into(), currency.into()), price.into());
    }

    /// While failing, `provider` answers HTTP 500 with its error body.
    pub fn set_failing(&self, provider: &str, failing: bool) {
        let mut list = self.shared.failing.lock().unwrap();
        list.retain(|p| p != provider);
        if failing {
            list.push(provider.into());
        }
    }

    /// CoinGecko says its prices were last updated this long ago.
    pub fn set_coingecko_age(&self, secs: i64) {
        *self.shared.coingecko_age_secs.lock().unwrap() = secs;
    }

    /// How many requests each path prefix got.
    pub fn requests_to(&self, provider_path: &str) -> usize {
        self.shared
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.starts_with(provider_path))
            .count()
    }
}

impl Drop for FakeTickers {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Shared {
    fn price(&self, provider: &str, coin: &str, currency: &str) -> Option<String> {
        self.prices
            .lock()
            .unwrap()
            .get(&(provider.to_string(), coin.to_string(), currency.to_string()))
            .cloned()
    }

    fn failing(&self, provider: &str) -> bool {
        self.failing.lock().unwrap().iter().any(|p| p == provider)
    }

    fn log(&self, request: String) {
        self.requests.lock().unwrap().push(request);
    }
}

fn answer(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

async fn kraken(State(s): State<Arc<Shared>>, Query(q): Query<HashMap<String, String>>) -> Response {
    s.log("/0/public/Ticker".into());
    let pair = q.get("pair").cloned().unwrap_or_default();
    let (asset, currency) = pair.split_at(pair.len().saturating_sub(3));
    let coin = if asset == "XBT" { "BTC" } else { asset };
    match s.price("kraken", coin, currency) {
        Some(price) if !s.failing("kraken") => {
            let mut body = json(KRAKEN);
            let mut ticker = body["result"]["XXBTZUSD"].take();
            for field in ["a", "b", "c"] {
                ticker[field][0] = json!(price);
            }
            // Kraken's own pair names: XXBTZUSD, XLTCZEUR, USDTZUSD.
            let name = if asset.len() == 3 {
                format!("X{asset}Z{currency}")
            } else {
                format!("{asset}Z{currency}")
            };
            body["result"] = json!({ name: ticker });
            answer(StatusCode::OK, body)
        }
        _ if s.failing("kraken") => answer(StatusCode::INTERNAL_SERVER_ERROR, json(KRAKEN_ERROR)),
        _ => answer(StatusCode::OK, json(KRAKEN_ERROR)),
    }
}

async fn coinbase(State(s): State<Arc<Shared>>, Path(pair): Path<String>) -> Response {
    s.log("/v2/prices".into());
    let (coin, currency) = pair.split_once('-').unwrap_or(("", ""));
    match s.price("coinbase", coin, currency) {
        Some(price) if !s.failing("coinbase") => {
            let mut body = json(COINBASE);
            body["data"] = json!({"amount": price, "base": coin, "currency": currency});
            answer(StatusCode::OK, body)
        }
        _ => answer(
            StatusCode::NOT_FOUND,
            json!({"errors": [{"id": "not_found", "message": "Invalid currency"}]}),
        ),
    }
}

async fn binance(State(s): State<Arc<Shared>>, Query(q): Query<HashMap<String, String>>) -> Response {
    s.log("/api/v3/ticker/price".into());
    let symbol = q.get("symbol").cloned().unwrap_or_default();
    let (coin, currency) = symbol.split_at(symbol.len().saturating_sub(3));
    match s.price("binance", coin, currency) {
        Some(price) if !s.failing("binance") => {
            let mut body = json(BINANCE);
            body["symbol"] = json!(symbol);
            body["price"] = json!(price);
            answer(StatusCode::OK, body)
        }
        _ => answer(StatusCode::BAD_REQUEST, json(BINANCE_ERROR)),
    }
}

async fn coingecko(State(s): State<Arc<Shared>>, Query(q): Query<HashMap<String, String>>) -> Response {
    s.log("/api/v3/simple/price".into());
    if s.failing("coingecko") {
        return answer(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"status": {"error_code": 429, "error_message": "You've exceeded the Rate Limit."}}),
        );
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let updated = now - *s.coingecko_age_secs.lock().unwrap();
    // The shape of `coingecko_simple_price.json`: {id: {vs: number, ...,
    // last_updated_at: seconds}}, only the ids and currencies asked for.
    let mut body = serde_json::Map::new();
    for id in q.get("ids").map(String::as_str).unwrap_or("").split(',') {
        let coin = match id {
            "bitcoin" => "BTC",
            "litecoin" => "LTC",
            "ripple" => "XRP",
            "tether" => "USDT",
            _ => continue,
        };
        let mut entry = serde_json::Map::new();
        for vs in q.get("vs_currencies").map(String::as_str).unwrap_or("").split(',') {
            if let Some(price) = s.price("coingecko", coin, &vs.to_uppercase()) {
                // A JSON number, as CoinGecko sends it.
                entry.insert(vs.to_string(), serde_json::from_str(&price).expect("a number"));
            }
        }
        if !entry.is_empty() {
            entry.insert("last_updated_at".into(), json!(updated));
            body.insert(id.to_string(), Value::Object(entry));
        }
    }
    answer(StatusCode::OK, Value::Object(body))
}
