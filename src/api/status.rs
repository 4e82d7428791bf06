//! `GET /v1/status`, `/metrics`, `/healthz`, `/readyz`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use paywatch_state::{AccountStatus, Asset, IntentStatus};
use serde_json::{Value, json};

use super::{ApiError, ApiResult, App};
use crate::engine::AssetHealth;

pub async fn status(State(app): State<Arc<App>>) -> ApiResult {
    let engine = &app.engine;
    let mut assets = serde_json::Map::new();
    for asset in engine.assets() {
        let h = engine.health(asset).unwrap_or_default();
        let lag_detail = engine.lag_of(asset, &h);
        let lag = lag_detail.as_ref().and_then(|l| l.blocks);
        assets.insert(
            asset.code().to_string(),
            json!({
                "backend": h.backend,
                "scanned_here": engine.scans_here(asset),
                "healthy": h.healthy,
                "tip_height": h.tip_height,
                "scanned_height": h.scanned_height,
                "lag": lag,
                "last_poll_at": h.last_poll_at,
                "last_synced_at": h.synced_at,
                "lagging": lag_detail.as_ref().is_some_and(|l| l.lagging),
                "scan_lag_seconds": lag_detail.as_ref().map(|l| l.scan_seconds),
                "head_age_seconds": lag_detail.as_ref().and_then(|l| l.head_age_seconds),
                "last_error": h.last_error,
                "warnings": h.warnings,
                "endpoints": h.endpoints,
            }),
        );
    }
    let counts = engine.store.counts().map_err(ApiError::internal)?;
    let mut intents: BTreeMap<&'static str, u64> = IntentStatus::ALL.iter().map(|s| (s.as_str(), 0)).collect();
    for (_, status, n) in counts.intents {
        *intents.entry(status.as_str()).or_default() += n;
    }
    let mut accounts = json!({"open": 0u64, "closed": 0u64, "deposits": 0u64});
    for (_, status, n) in counts.accounts {
        let field = status.map(|s| s.as_str()).unwrap_or("deposits");
        accounts[field] = json!(accounts[field].as_u64().unwrap_or(0) + n);
    }
    let webhooks = engine.store.outbox_stats().map_err(ApiError::internal)?;
    let uptime = (engine.clock.now() - engine.started_at).num_seconds().max(0);
    let rates = app.rates.as_ref().map(|book| book.status(engine.clock.now()));
    let (backend, location) = engine.store.describe();
    let leases: Vec<Value> = engine
        .store
        .leases()
        .map_err(ApiError::internal)?
        .into_iter()
        .map(|l| {
            json!({
                "lease": l.name,
                "holder": l.holder,
                "fence": l.fence,
                "live": l.live,
                "held_here": l.live && l.holder == app.cluster.holder(),
                "expires_at": chrono::DateTime::from_timestamp_millis(l.expires_at_ms),
            })
        })
        .collect();
    Ok(Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": uptime,
        "assets": Value::Object(assets),
        "intents": intents,
        "accounts": accounts,
        "rates": rates,
        "webhooks": {"backlog": webhooks.backlog, "failed": webhooks.failed},
        "store": {
            "backend": backend,
            "location": if location.is_empty() { Value::Null } else { json!(location) },
            "instance": app.cluster.holder(),
            "leases": leases,
        },
    }))
    .into_response())
}

pub async fn metrics(State(app): State<Arc<App>>) -> ApiResult {
    let engine = &app.engine;
    let m = &engine.metrics;
    let counts = engine.store.counts().map_err(ApiError::internal)?;
    for (asset, status, n) in counts.intents {
        m.intents
            .with_label_values(&[asset.code(), status.as_str()])
            .set(n as i64);
    }
    // Every configured asset has its series (0 until counted); each is set
    // once, so a concurrent scrape never reads a passing 0.
    let counted: HashMap<(Asset, Option<AccountStatus>), u64> =
        counts.accounts.into_iter().map(|(a, s, n)| ((a, s), n)).collect();
    let mut assets = engine.assets();
    assets.extend(counted.keys().map(|(a, _)| *a));
    assets.sort();
    assets.dedup();
    for asset in assets {
        let n = |status| counted.get(&(asset, status)).copied().unwrap_or(0) as i64;
        for status in AccountStatus::ALL {
            m.accounts
                .with_label_values(&[asset.code(), status.as_str()])
                .set(n(Some(status)));
        }
        m.deposits.with_label_values(&[asset.code()]).set(n(None));
    }
    if let Some(book) = &app.rates {
        book.refresh_metrics(m, engine.clock.now());
    }
    if let Ok(stats) = engine.store.outbox_stats() {
        m.webhook_backlog.set(stats.backlog as i64);
        m.webhook_failed.set(stats.failed as i64);
    }
    engine.refresh_lag_metrics();
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        m.render(),
    )
        .into_response())
}

pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

pub async fn readyz(State(app): State<Arc<App>>) -> impl IntoResponse {
    let engine = &app.engine;
    // Ready once every configured chain answered a poll (here, or on the
    // instance that scans it); each asset's health read once.
    let health: Vec<(Asset, Option<AssetHealth>)> =
        engine.assets().into_iter().map(|a| (a, engine.health(a))).collect();
    if !health.iter().all(|(_, h)| h.as_ref().is_some_and(|h| h.polled_ok_once)) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "reason": "not every chain has been polled yet"})),
        );
    }
    let lagging: Vec<&str> = health
        .iter()
        .filter(|(a, h)| h.as_ref().and_then(|h| engine.lag_of(*a, h)).is_some_and(|l| l.lagging))
        .map(|(a, _)| a.code())
        .collect();
    if lagging.is_empty() {
        (StatusCode::OK, Json(json!({"status": "ready"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({"status": "lagging", "reason": "assets lag behind their chains beyond max_lag", "lagging": lagging}),
            ),
        )
    }
}
