//! `GET /v1/events` (with long-poll) and `GET /v1/transfers`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use paywatch_state::store::TransferFilter;
use serde_json::json;

use super::{ApiError, ApiResult, App, Caller, MAX_WAIT_SECONDS, int_param, only_params, param, query_pairs};

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
pub async fn transfers(State(app): State<Arc<App>>, headers: HeaderMap, RawQuery(raw): RawQuery) -> ApiResult {
    let pairs = query_pairs(raw.as_deref());
    only_params(
        &pairs,
        &["unmatched", "asset", "limit", "after", "format", "from", "to"],
    )?;
    let csv = super::export::wants_csv(&headers, &pairs)?;
    let range = super::export::date_range(&pairs, csv)?;
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
    if csv {
        super::export::refuse_params(&pairs, &["limit", "after"])?;
        return super::export::transfers(&app, range, super::asset_param(&app, &pairs)?, unmatched);
    }
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

/// The event a receiver knows by its `Paywatch-Event-Id` (or by `seq`).
fn find_event(app: &App, id: &str) -> Result<paywatch_state::Event, ApiError> {
    let found = match id.parse::<u64>() {
        Ok(seq) => app.engine.store.event(seq),
        Err(_) => app.engine.store.event_by_id(id),
    }
    .map_err(ApiError::internal)?;
    found.ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "event_not_found", format!("no event {id:?}")))
}

/// `GET /v1/events/{id}`: one event, by id or seq.
pub async fn event(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    Ok(Json(find_event(&app, &id)?).into_response())
}

/// `GET /v1/events/{id}/deliveries`: every webhook attempt for the event,
/// and whether it is still queued or was given up.
pub async fn deliveries(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    let event = find_event(&app, &id)?;
    let store = &app.engine.store;
    let attempts = store.delivery_attempts(event.seq).map_err(ApiError::internal)?;
    let state = store.delivery_state(event.seq).map_err(ApiError::internal)?;
    Ok(Json(json!({"event_id": event.id, "seq": event.seq, "state": state, "attempts": attempts})).into_response())
}

/// `POST /v1/events/{id}/redeliver`: queue the event for webhook delivery
/// again (a receiver that lost it, or one given up after `max_age`).
pub async fn redeliver(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult {
    let event = find_event(&app, &id)?;
    tracing::info!(caller = %caller.name, event = %id, "redelivery requested");
    if app.webhooks_disabled {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "webhooks_disabled",
            "no [webhook] is configured",
        ));
    }
    let queued = app
        .engine
        .store
        .redeliver(event.seq, app.engine.clock.now())
        .map_err(ApiError::internal)?;
    app.engine.webhook_wake.notify_one();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"event_id": event.id, "seq": event.seq, "queued": queued})),
    )
        .into_response())
}
