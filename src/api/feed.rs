//! `GET /v1/events` (with long-poll) and `GET /v1/transfers`.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::response::IntoResponse;
use paywatch_state::store::TransferFilter;
use serde_json::json;

use super::{ApiError, ApiResult, App, MAX_WAIT_SECONDS, int_param, only_params, param, query_pairs};

const EVENTS_DEFAULT: u64 = 100;
const EVENTS_MAX: u64 = 1000;
const TRANSFERS_DEFAULT: u64 = 50;
const TRANSFERS_MAX: u64 = 500;

/// Events with `seq > after`, ascending. With `wait`, an empty answer waits up
/// to that many seconds for the next event. `last_seq` is the seq of the last
/// event returned (or `after` when none): pass it as the next `after`.
pub async fn events(State(app): State<Arc<App>>, RawQuery(raw): RawQuery) -> ApiResult {
    let pairs = query_pairs(raw.as_deref());
    only_params(&pairs, &["after", "limit", "wait"])?;
    let after = int_param(&pairs, "after", 0, 0, u64::MAX)?;
    let limit = int_param(&pairs, "limit", EVENTS_DEFAULT, 1, EVENTS_MAX)? as usize;
    let wait = int_param(&pairs, "wait", 0, 0, MAX_WAIT_SECONDS)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    let mut changes = app.engine.subscribe_events();
    loop {
        changes.borrow_and_update();
        let events = app
            .engine
            .store
            .events_after(after, limit)
            .map_err(ApiError::internal)?;
        if !events.is_empty() || tokio::time::Instant::now() >= deadline {
            let last_seq = events.last().map(|e| e.seq).unwrap_or(after);
            return Ok(Json(json!({"events": events, "last_seq": last_seq})).into_response());
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return Err(ApiError::internal("event channel closed")) },
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// Transfers newest first; `unmatched=true` lists unmatched and late ones.
pub async fn transfers(State(app): State<Arc<App>>, RawQuery(raw): RawQuery) -> ApiResult {
    let pairs = query_pairs(raw.as_deref());
    only_params(&pairs, &["unmatched", "asset", "limit", "after"])?;
    let unmatched = match param(&pairs, "unmatched") {
        None | Some("") | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                "unmatched must be true or false",
            ));
        }
    };
    let before = match param(&pairs, "after") {
        None | Some("") => None,
        Some(_) => Some(int_param(&pairs, "after", 0, 0, u64::MAX)?),
    };
    let filter = TransferFilter {
        unmatched,
        asset: super::asset_param(&app, &pairs)?,
        before,
        limit: int_param(&pairs, "limit", TRANSFERS_DEFAULT, 1, TRANSFERS_MAX)? as usize,
    };
    let (transfers, next) = app.engine.store.list_transfers(&filter).map_err(ApiError::internal)?;
    Ok(Json(json!({"transfers": transfers, "next": next.map(|n| n.to_string())})).into_response())
}
