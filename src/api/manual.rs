//! Reconciliation by hand (docs/reconciliation.md): `POST /v1/transfers/{id}/assign`,
//! `POST /v1/intents/{id}/resolve`, and the audit log `GET /v1/audit`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use paywatch_state::{IntentStatus, ManualAction, ManualOutcome, Refusal, TransferKey};
use serde_json::{Map, Value, json};

use super::intents::{intent_id, read_body};
use super::{ApiError, ApiResult, App, Caller, int_param, json_object, only_params, param, query_pairs};

/// Longest `reason` accepted.
pub const MAX_REASON_CHARS: usize = 1000;
const AUDIT_DEFAULT: u64 = 50;
const AUDIT_MAX: u64 = 500;

pub async fn assign(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let Path(id) = path.map_err(|_| ApiError::bad_request("invalid_id", "malformed transfer id"))?;
    let key = TransferKey::parse_id(&id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no transfer {id:?} (ids look like LTC:txid:index)"),
        )
    })?;
    let obj = json_object(&read_body(&headers, body).await?, &["intent_id", "reason"])?;
    let intent = match obj.get("intent_id") {
        Some(Value::String(s)) if s.starts_with("pi_") && s.len() <= 64 => s.clone(),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_intent_id",
                "intent_id must be an intent's id",
            ));
        }
        None => return Err(ApiError::bad_request("missing_field", "intent_id is required")),
    };
    let action = action(&caller, &obj)?;
    tracing::info!(caller = %caller.name, transfer = %id, intent = %intent, "assign requested");
    let outcome = app
        .engine
        .assign_transfer(key, intent, action)
        .await
        .map_err(ApiError::internal)?;
    answer(outcome)
}

pub async fn resolve(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let id = intent_id(path)?;
    let obj = json_object(&read_body(&headers, body).await?, &["status", "reason"])?;
    let status = match obj.get("status").and_then(Value::as_str).and_then(IntentStatus::parse) {
        Some(s @ (IntentStatus::Confirmed | IntentStatus::Expired)) => s,
        _ => {
            return Err(ApiError::bad_request(
                "invalid_status",
                "status must be \"confirmed\" or \"expired\"",
            ));
        }
    };
    let action = action(&caller, &obj)?;
    tracing::info!(caller = %caller.name, intent = %id, status = status.as_str(), "resolve requested");
    let outcome = app
        .engine
        .resolve_intent(id, status, action)
        .await
        .map_err(ApiError::internal)?;
    answer(outcome)
}

/// Who acts (the token's name) and why (required: it is the record).
fn action(caller: &Caller, obj: &Map<String, Value>) -> Result<ManualAction, ApiError> {
    match obj.get("reason") {
        Some(Value::String(r)) if !r.trim().is_empty() && r.chars().count() <= MAX_REASON_CHARS => Ok(ManualAction {
            actor: caller.name.clone(),
            reason: r.trim().to_string(),
        }),
        None => Err(ApiError::bad_request(
            "missing_field",
            "reason is required: it is what the audit record says",
        )),
        Some(_) => Err(ApiError::bad_request(
            "invalid_reason",
            format!("reason must be a non-empty string of at most {MAX_REASON_CHARS} characters"),
        )),
    }
}

fn answer(outcome: Result<ManualOutcome, Refusal>) -> ApiResult {
    match outcome {
        Ok(done) => Ok(Json(json!({"intent": done.intent, "audit": done.audit})).into_response()),
        Err(refusal) => {
            let (status, code) = match &refusal {
                Refusal::TransferNotFound(_) | Refusal::IntentNotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
                Refusal::TransferMatched(..) => (StatusCode::CONFLICT, "transfer_matched"),
                Refusal::TransferIsDeposit(..) => (StatusCode::CONFLICT, "transfer_is_deposit"),
                Refusal::TransferIsDust(_) => (StatusCode::CONFLICT, "transfer_is_dust"),
                Refusal::AlreadyAssigned(..) => (StatusCode::CONFLICT, "already_assigned"),
                Refusal::TransferReverted(_) => (StatusCode::CONFLICT, "transfer_reverted"),
                Refusal::OnResolvedIntent(..) => (StatusCode::CONFLICT, "on_resolved_intent"),
                Refusal::AssetMismatch(..) => (StatusCode::UNPROCESSABLE_ENTITY, "asset_mismatch"),
                Refusal::IntentNotOpen(..) => (StatusCode::CONFLICT, "intent_not_open"),
                Refusal::AlreadyResolved(..) => (StatusCode::CONFLICT, "already_resolved"),
                Refusal::NoChange(..) => (StatusCode::CONFLICT, "no_change"),
                Refusal::BadResolution(_) => (StatusCode::BAD_REQUEST, "invalid_status"),
            };
            Err(ApiError::new(status, code, refusal.to_string()))
        }
    }
}

/// Manual actions, newest first.
pub async fn audit(State(app): State<Arc<App>>, RawQuery(raw): RawQuery) -> ApiResult {
    let pairs = query_pairs(raw.as_deref());
    only_params(&pairs, &["limit", "after"])?;
    let limit = int_param(&pairs, "limit", AUDIT_DEFAULT, 1, AUDIT_MAX)? as usize;
    let before = match param(&pairs, "after") {
        None | Some("") => None,
        Some(_) => Some(int_param(&pairs, "after", 0, 1, u64::MAX)?),
    };
    let (records, next) = app
        .engine
        .store
        .audit_records(before, limit)
        .map_err(ApiError::internal)?;
    Ok(Json(json!({"audit": records, "next": next.map(|n| n.to_string())})).into_response())
}
