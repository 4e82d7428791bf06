//! Load generator for the API benchmarks (`scripts/bench-api.sh`).
//!
//! `load URL TOKEN MODE CONCURRENCY COUNT`, MODE one of:
//! - `create`: `COUNT` intent creates (LTC, unique amounts), prints rate and
//!   latency percentiles, and writes one created id to `last-intent-id`;
//! - `create-fiat`: the same priced in USD (`fiat_amount`), for a config
//!   with a fixed LTC/USD rate of 1 (so amounts stay unique);
//! - `status`: `COUNT` `GET /v1/status`;
//! - `intent:ID`: `COUNT` `GET /v1/intents/ID`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, token, mode, concurrency, count] = args.as_slice() else {
        eprintln!("usage: load URL TOKEN MODE CONCURRENCY COUNT");
        std::process::exit(2);
    };
    let concurrency: usize = concurrency.parse().unwrap_or(16);
    let count: u64 = count.parse().unwrap_or(1000);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let next = Arc::new(AtomicU64::new(0));
    // A different integer part per run keeps amounts unique across runs.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() % 1_000_000)
        .unwrap_or(0) as u64;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (http, next, url, token, mode) = (http.clone(), next.clone(), url.clone(), token.clone(), mode.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut last_id = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return (latencies, last_id);
                }
                let t = Instant::now();
                let req = if mode.starts_with("create") {
                    // Unique amounts: amount mode never runs out of pay amounts.
                    let amount = format!("{}.{:08}", 1 + run, i + 1);
                    let body = if mode == "create-fiat" {
                        serde_json::json!({"asset": "LTC", "fiat_amount": amount, "fiat_currency": "USD", "expires_in": 86_400})
                    } else {
                        serde_json::json!({"asset": "LTC", "amount": amount, "expires_in": 86_400})
                    };
                    http.post(format!("{url}/v1/intents")).json(&body)
                } else if mode == "status" {
                    http.get(format!("{url}/v1/status"))
                } else {
                    http.get(format!("{url}/v1/intents/{}", mode.trim_start_matches("intent:")))
                };
                let resp = req.bearer_auth(&token).send().await.expect("request");
                let ok = resp.status().is_success();
                let body: serde_json::Value = resp.json().await.unwrap_or_default();
                assert!(ok, "request failed: {body}");
                latencies.push(t.elapsed());
                if let Some(id) = body["id"].as_str() {
                    last_id = Some(id.to_string());
                }
            }
        }));
    }
    let mut all = Vec::new();
    let mut last_id = None;
    for t in tasks {
        let (l, id) = t.await.expect("task");
        all.extend(l);
        last_id = last_id.or(id);
    }
    let elapsed = started.elapsed();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "{mode}: {} requests in {:.2} s = {:.0}/s; p50 {:.2} ms, p99 {:.2} ms (concurrency {concurrency})",
        all.len(),
        elapsed.as_secs_f64(),
        all.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0
    );
    if let Some(id) = last_id {
        let _ = std::fs::write("last-intent-id", id);
    }
}
