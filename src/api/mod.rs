//! The local HTTP API (docs/api.md, docs/openapi.json): bearer-token auth on `/v1`, JSON bodies of
//! at most 64 KiB, one error format, and no input that yields a 5xx.
//!
//! `run(listener, app, shutdown)` takes its listener and shutdown future as
//! parameters, so tests bind port 0 and share the production path.

mod accounts;
mod auth;
mod backup;
mod export;
mod feed;
mod intents;
mod manual;
mod status;

pub use auth::{Caller, required_scope};

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use paywatch_chains::Network;
use paywatch_state::Asset;
use serde_json::json;
use tokio::net::TcpListener;

use crate::config::ApiToken;
use crate::engine::Engine;

/// Largest accepted request body (docs/api.md).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest `wait` of the event feed long-poll, in seconds.
pub const MAX_WAIT_SECONDS: u64 = 60;

/// Shared state of the handlers.
pub struct App {
    pub engine: Arc<Engine>,
    /// The API's clients (one `default` token with every scope unless
    /// `api.tokens_file` names several).
    pub tokens: Vec<ApiToken>,
    pub networks: HashMap<Asset, Network>,
    /// No `[webhook]` configured: nothing to redeliver to.
    pub webhooks_disabled: bool,
    /// `[rates]`: what prices intents given in fiat.
    pub rates: Option<Arc<crate::rates::RateBook>>,
    /// `[checkout]`: the public payment pages, when on.
    pub checkout: Option<crate::config::CheckoutConfig>,
    pub checkout_limiter: crate::checkout::RateLimiter,
    /// Which leases this instance holds (a shared store).
    pub cluster: Arc<crate::cluster::Cluster>,
    /// Where backups are written before they are streamed (the state
    /// directory).
    pub state_dir: std::path::PathBuf,
    /// Held by the one backup that may run at a time, to its download's end.
    pub backup_running: Arc<tokio::sync::Mutex<()>>,
}

/// An API error: `{"error": {"code", "message"}}` with its HTTP status.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 422 for an asset paywatch is not configured for.
    pub fn asset_not_configured(asset: Asset) -> ApiError {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "asset_not_configured",
            format!("{asset} is not configured"),
        )
    }

    /// A failure of paywatch itself (disk, store); logged, never a client's fault.
    pub fn internal(error: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %error, "request failed inside paywatch");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "paywatch could not complete the request; see its logs",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        (self.status, axum::Json(body)).into_response()
    }
}

pub type ApiResult = Result<Response, ApiError>;

/// The API's contract, served at `/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

/// Every route the daemon serves: path, whether it needs the API token, and
/// its handlers. The router is built from this list, and a test checks it
/// against `docs/openapi.json` both ways.
pub fn routes() -> Vec<(&'static str, bool, MethodRouter<Arc<App>>)> {
    vec![
        ("/v1/intents", true, post(intents::create).get(intents::list)),
        ("/v1/intents/{id}", true, get(intents::show)),
        ("/v1/intents/{id}/cancel", true, post(intents::cancel)),
        ("/v1/intents/{id}/resolve", true, post(manual::resolve)),
        ("/v1/accounts", true, post(accounts::create).get(accounts::find)),
        ("/v1/accounts/{id}", true, get(accounts::show)),
        ("/v1/accounts/{id}/transfers", true, get(accounts::transfers)),
        ("/v1/accounts/{id}/close", true, post(accounts::close)),
        ("/v1/transfers", true, get(feed::transfers)),
        ("/v1/transfers/{id}/assign", true, post(manual::assign)),
        ("/v1/audit", true, get(manual::audit)),
        ("/v1/events", true, get(feed::events)),
        ("/v1/events/{id}", true, get(feed::event)),
        ("/v1/events/{id}/deliveries", true, get(feed::deliveries)),
        ("/v1/events/{id}/redeliver", true, post(feed::redeliver)),
        ("/v1/status", true, get(status::status)),
        ("/v1/backup", true, post(backup::backup)),
        ("/v1/openapi.json", true, get(openapi)),
        ("/pay/{token}", false, get(crate::checkout::show)),
        ("/pay/{token}/status", false, get(crate::checkout::status)),
        ("/pay/assets/{file}", false, get(crate::checkout::asset)),
        ("/metrics", false, get(status::metrics)),
        ("/healthz", false, get(status::healthz)),
        ("/readyz", false, get(status::readyz)),
    ]
}

pub fn router(app: Arc<App>) -> Router {
    let (mut with_token, mut public, mut checkout) = (Router::new(), Router::new(), Router::new());
    for (path, needs_token, handlers) in routes() {
        if needs_token {
            with_token = with_token.route(path, handlers);
        } else if path.starts_with("/pay/") {
            checkout = checkout.route(path, handlers);
        } else {
            public = public.route(path, handlers);
        }
    }
    let with_token = with_token.route_layer(middleware::from_fn_with_state(app.clone(), auth::require_token));
    let checkout = checkout.route_layer(middleware::from_fn_with_state(app.clone(), crate::checkout::guard));
    Router::new()
        .merge(with_token)
        .merge(checkout)
        .merge(public)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(app)
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// Serves until `shutdown` resolves, then finishes in-flight requests.
pub async fn run(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The peer address: the checkout pages' rate limit is per client.
    axum::serve(
        listener,
        router(app).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this endpoint",
    )
}

/// Query parameters as (name, value) pairs; the handlers reject unknown names.
pub fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// 503 `asset_lagging` while the asset lags its chain and the config says
/// to refuse new `what` (intents, accounts) meanwhile.
pub fn refuse_if_lagging(app: &App, asset: Asset, what: &str) -> Result<(), ApiError> {
    if app.engine.refuses_new_intents(asset) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "asset_lagging",
            format!("{asset} is lagging behind its chain (see /v1/status); new {what} are refused until it catches up"),
        ));
    }
    Ok(())
}

/// A JSON object body with only the `allowed` fields.
pub fn json_object(bytes: &[u8], allowed: &[&str]) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("body is not valid JSON: {e}")))?;
    let serde_json::Value::Object(obj) = value else {
        return Err(ApiError::bad_request("invalid_request", "body must be a JSON object"));
    };
    if let Some(unknown) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::bad_request(
            "unknown_field",
            format!("unknown field {unknown:?}; allowed: {}", allowed.join(", ")),
        ));
    }
    Ok(obj)
}

/// Rejects any query parameter not in `allowed`.
pub fn only_params(pairs: &[(String, String)], allowed: &[&str]) -> Result<(), ApiError> {
    for (name, _) in pairs {
        if !allowed.contains(&name.as_str()) {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                format!("unknown query parameter {name:?}; allowed: {}", allowed.join(", ")),
            ));
        }
    }
    Ok(())
}

pub fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// A bounded integer query parameter.
pub fn int_param(pairs: &[(String, String)], name: &str, default: u64, min: u64, max: u64) -> Result<u64, ApiError> {
    match param(pairs, name) {
        None => Ok(default),
        Some(text) => match text.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request(
                "invalid_parameter",
                format!("{name} must be an integer from {min} to {max}"),
            )),
        },
    }
}

pub fn asset_param(app: &App, pairs: &[(String, String)]) -> Result<Option<Asset>, ApiError> {
    match param(pairs, "asset") {
        None | Some("") => Ok(None),
        Some(code) => code
            .parse::<Asset>()
            .map(Some)
            .map_err(|e| ApiError::bad_request("invalid_asset", e.to_string()))
            .and_then(|a| match a {
                Some(asset) if app.engine.policy(asset).is_none() => Err(ApiError::asset_not_configured(asset)),
                other => Ok(other),
            }),
    }
}
