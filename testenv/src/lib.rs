//! paywatch's test environment, shared by the chain crate's tests and the
//! daemon's: real nodes (Litecoin Core regtest, anvil), fakes that serve
//! recorded real responses and misbehave the way real endpoints do (rippled,
//! Tron's HTTP API, Esplora), a webhook receiver, a TCP proxy that cuts
//! links, and a JSON-RPC proxy that lags, splits batches and caps ranges.
//!
//! A test that needs a node fails loudly when the node binary is missing
//! (run `scripts/test.sh`, which installs it).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::time::{Duration, Instant};

pub mod anvil;
pub mod chromium;
pub mod configs;
pub mod esplora;
pub mod litecoind;
pub mod postgres;
pub mod proxy;
pub mod receiver;
pub mod rippled;
pub mod rpc_proxy;
pub mod tickers;
pub mod tron;

/// Installs the process-wide TLS provider (as the daemon's `main` does);
/// reqwest clients cannot be built without one. Idempotent.
pub fn install_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Polls `check` until it returns `Some`, or panics after `timeout` with `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The event types of one intent, in feed order.
pub fn types_for(events: &[serde_json::Value], intent_id: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["intent"]["id"] == intent_id)
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect()
}

/// A free loopback port (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Serves `app` on a free loopback port: its base URL, and a handle that
/// stops it (the fakes abort theirs when dropped).
pub async fn serve_loopback(app: axum::Router) -> (String, tokio::task::AbortHandle) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })
    .abort_handle();
    (url, task)
}

/// Takes one from an injected-fault counter: true while faults are due.
pub fn take(counter: &std::sync::atomic::AtomicU32) -> bool {
    use std::sync::atomic::Ordering;
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}
