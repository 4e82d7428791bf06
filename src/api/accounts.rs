//! Deposit accounts (docs/accounts.md): `POST /v1/accounts`,
//! `GET /v1/accounts[?external_id=&asset=]`, `GET /v1/accounts/{id}`,
//! `GET /v1/accounts/{id}/transfers`, `POST /v1/accounts/{id}/close`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use paywatch_state::{AccountOutcome, CloseOutcome, NewAccount};
use serde_json::{Map, Value, json};

use super::intents::{asset_field, create_error, external_id_field, parse_metadata, read_body};
use super::{ApiError, ApiResult, App, Caller, int_param, json_object, only_params, param, query_pairs};

const CREATE_FIELDS: [&str; 3] = ["asset", "external_id", "metadata"];
const DEPOSITS_DEFAULT: u64 = 50;
const DEPOSITS_MAX: u64 = 500;

pub async fn create(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let bytes = read_body(&headers, body).await?;
    let obj = json_object(&bytes, &CREATE_FIELDS)?;
    let req = parse_create(&app, &obj)?;
    tracing::info!(caller = %caller.name, asset = %req.asset, "account requested");
    super::refuse_if_lagging(&app, req.asset, "accounts")?;
    match app.engine.create_account(req).await {
        Ok(AccountOutcome::Created(view)) => Ok((StatusCode::CREATED, Json(view)).into_response()),
        Ok(AccountOutcome::Existing(view)) => Ok((StatusCode::OK, Json(view)).into_response()),
        Err(e) => Err(create_error(e)),
    }
}

fn parse_create(app: &App, obj: &Map<String, Value>) -> Result<NewAccount, ApiError> {
    let asset = asset_field(obj)?;
    if app.engine.policy(asset).is_none() {
        return Err(ApiError::asset_not_configured(asset));
    }
    let external_id = external_id_field(obj)?.ok_or_else(|| {
        ApiError::bad_request(
            "missing_field",
            "external_id (the customer's id in the shop) is required",
        )
    })?;
    Ok(NewAccount {
        asset,
        external_id,
        metadata: parse_metadata(obj)?,
    })
}

fn account_id(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(id) = path.map_err(|_| ApiError::bad_request("invalid_id", "malformed account id"))?;
    if !paywatch_state::model::is_account_id(&id) || id.len() > 64 {
        return Err(not_found(&id));
    }
    Ok(id)
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no account {id:?}"))
}

pub async fn show(State(app): State<Arc<App>>, path: Result<Path<String>, PathRejection>) -> ApiResult {
    let id = account_id(path)?;
    match app.engine.store.account(&id).map_err(ApiError::internal)? {
        Some(view) => Ok(Json(view).into_response()),
        None => Err(not_found(&id)),
    }
}

/// The account of one customer for one asset (both are required).
pub async fn find(State(app): State<Arc<App>>, RawQuery(raw): RawQuery) -> ApiResult {
    let pairs = query_pairs(raw.as_deref());
    only_params(&pairs, &["external_id", "asset"])?;
    let (Some(external_id), Some(asset)) = (
        param(&pairs, "external_id").filter(|s| !s.is_empty()),
        super::asset_param(&app, &pairs)?,
    ) else {
        return Err(ApiError::bad_request(
            "missing_parameter",
            "give external_id and asset: accounts are found by the customer and the asset",
        ));
    };
    let found = app
        .engine
        .store
        .account_by_external_id(asset, external_id)
        .map_err(ApiError::internal)?;
    Ok(Json(json!({"accounts": found.into_iter().collect::<Vec<_>>()})).into_response())
}

/// The account's deposits, newest first.
pub async fn transfers(
    State(app): State<Arc<App>>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let id = account_id(path)?;
    let pairs = query_pairs(raw.as_deref());
    only_params(&pairs, &["limit", "after"])?;
    let limit = int_param(&pairs, "limit", DEPOSITS_DEFAULT, 1, DEPOSITS_MAX)? as usize;
    let after = match param(&pairs, "after") {
        None | Some("") => None,
        Some(_) => Some(int_param(&pairs, "after", 0, 1, u64::MAX)?),
    };
    if app.engine.store.account(&id).map_err(ApiError::internal)?.is_none() {
        return Err(not_found(&id));
    }
    let (transfers, next) = app
        .engine
        .store
        .account_deposits(&id, after, limit)
        .map_err(ApiError::internal)?;
    Ok(Json(json!({"transfers": transfers, "next": next.map(|n| n.to_string())})).into_response())
}

/// Stops handing the account out; idempotent.
pub async fn close(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let id = account_id(path)?;
    tracing::info!(caller = %caller.name, account = %id, "close requested");
    match app.engine.close_account(id.clone()).await.map_err(ApiError::internal)? {
        CloseOutcome::NotFound => Err(not_found(&id)),
        CloseOutcome::AlreadyClosed(view) | CloseOutcome::Closed(view, _) => Ok(Json(view).into_response()),
    }
}
