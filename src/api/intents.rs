//! `POST /v1/intents`, `GET /v1/intents[/{id}]`, `POST /v1/intents/{id}/cancel`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use paywatch_chains::xrpl::parse_xrp_address;
use paywatch_chains::{Network, canonical_address};
use paywatch_state::amount::{amount_for_price, parse_amount, parse_plain_decimal};
use paywatch_state::{
    Asset, CancelOutcome, CreateError, CreateOutcome, FiatPrice, IntentFilter, IntentStatus, MatchMode, NewIntent,
};
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

use super::{ApiError, ApiResult, App, Caller, MAX_BODY_BYTES, int_param, only_params, param, query_pairs};
use crate::rates::{Coin, RateError};

pub const MAX_EXTERNAL_ID_CHARS: usize = 128;
pub const MAX_METADATA_BYTES: usize = 4096;
/// Longest `expires_in` a request may ask for: 30 days.
pub const MAX_EXPIRES_IN_SECONDS: u64 = 30 * 86_400;
pub const MAX_CONFIRMATIONS: u64 = 10_000;
const LIST_DEFAULT: u64 = 50;
const LIST_MAX: u64 = 500;

const CREATE_FIELDS: [&str; 10] = [
    "asset",
    "amount",
    "fiat_amount",
    "fiat_currency",
    "external_id",
    "metadata",
    "expires_in",
    "confirmations",
    "address",
    "tag",
];

pub async fn create(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let bytes = read_body(&headers, body).await?;
    let mut req = parse_create(&app.networks, &bytes)?;
    tracing::debug!(caller = %caller.name, asset = %req.asset, "create requested");
    super::refuse_if_lagging(&app, req.asset, "intents")?;
    if let Err(e) = price_in_fiat(&app, &mut req) {
        // A retry of a create that went through needs no rate.
        return match app.engine.store.earlier_create(&req) {
            Ok(Some(view)) => Ok((StatusCode::OK, Json(view)).into_response()),
            Ok(None) => Err(e),
            Err(refused) => Err(create_error(refused)),
        };
    }
    match app.engine.create_intent(req).await {
        Ok(CreateOutcome::Created(view)) => Ok((StatusCode::CREATED, Json(view)).into_response()),
        Ok(CreateOutcome::Existing(view)) => Ok((StatusCode::OK, Json(view)).into_response()),
        Err(e) => Err(create_error(e)),
    }
}

pub fn create_error(e: CreateError) -> ApiError {
    let message = e.to_string();
    match e {
        CreateError::ExternalIdConflict(_) => ApiError::new(StatusCode::CONFLICT, "external_id_conflict", message),
        CreateError::NoFreeAddress(_) => ApiError::new(StatusCode::CONFLICT, "no_free_address", message),
        CreateError::NoFreeAmount { .. } => ApiError::new(StatusCode::CONFLICT, "no_free_amount", message),
        CreateError::AddressInUse(_) => ApiError::new(StatusCode::CONFLICT, "address_in_use", message),
        CreateError::TagUsed(_) => ApiError::new(StatusCode::CONFLICT, "tag_in_use", message),
        CreateError::AddressNotConfigured(..) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "address_not_configured", message)
        }
        CreateError::NotAllowed(_) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "not_allowed", message),
        CreateError::BelowMinimum { .. } => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "amount_below_minimum", message)
        }
        CreateError::AssetNotReady(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "asset_not_ready", message),
        CreateError::Store(e) => ApiError::internal(e),
        CreateError::Failed(e) => ApiError::internal(e),
    }
}

/// Reads a JSON body of at most `MAX_BODY_BYTES`.
pub async fn read_body(headers: &HeaderMap, body: Body) -> Result<axum::body::Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request bodies are limited to {MAX_BODY_BYTES} bytes"),
        )
    };
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && len > MAX_BODY_BYTES
    {
        return Err(too_large());
    }
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| too_large())
}

/// Validates a create request body field by field.
pub fn parse_create(networks: &HashMap<Asset, Network>, bytes: &[u8]) -> Result<NewIntent, ApiError> {
    let obj = super::json_object(bytes, &CREATE_FIELDS)?;
    let asset = asset_field(&obj)?;
    let Some(network) = networks.get(&asset).copied() else {
        return Err(ApiError::asset_not_configured(asset));
    };
    let fiat = parse_fiat(&obj)?;
    // `amount: null` beside a fiat price is no amount; alone it is not a decimal string.
    let amount = match obj.get("amount").filter(|v| !(v.is_null() && fiat.is_some())) {
        Some(_) if fiat.is_some() => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "give amount or fiat_amount with fiat_currency, not both",
            ));
        }
        // Priced from the rate when the request is served (`price_in_fiat`).
        None if fiat.is_some() => Decimal::ZERO,
        Some(Value::String(text)) => {
            parse_amount(asset, text).map_err(|e| ApiError::bad_request("invalid_amount", e.to_string()))?
        }
        Some(Value::Number(_)) => {
            return Err(ApiError::bad_request(
                "invalid_amount",
                "amount must be a JSON string such as \"0.084215\", never a number",
            ));
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_amount",
                "amount must be a decimal string",
            ));
        }
        None => {
            return Err(ApiError::bad_request(
                "missing_field",
                "amount (or fiat_amount with fiat_currency) is required",
            ));
        }
    };
    let external_id = external_id_field(&obj)?;
    let metadata = parse_metadata(&obj)?;
    let expires_in = optional_int(&obj, "expires_in", "invalid_expires_in", 1, MAX_EXPIRES_IN_SECONDS)?;
    let confirmations =
        optional_int(&obj, "confirmations", "invalid_confirmations", 1, MAX_CONFIRMATIONS)?.map(|c| c as u32);
    let mut x_address_tag = None;
    let address = match obj.get("address") {
        None | Some(Value::Null) => None,
        // An X-address carries the tag: decoded to the classic address + tag.
        Some(Value::String(a)) if asset == Asset::Xrp => {
            let parsed =
                parse_xrp_address(network, a).map_err(|e| ApiError::bad_request("invalid_address", e.to_string()))?;
            x_address_tag = parsed.tag;
            Some(parsed.classic)
        }
        Some(Value::String(a)) => Some(
            canonical_address(asset, network, a)
                .map_err(|e| ApiError::bad_request("invalid_address", e.to_string()))?,
        ),
        Some(_) => return Err(ApiError::bad_request("invalid_address", "address must be a string")),
    };
    let mut tag = optional_int(&obj, "tag", "invalid_tag", 0, u64::from(u32::MAX))?.map(|t| t as u32);
    if let Some(from_address) = x_address_tag {
        if tag.is_some_and(|t| t != from_address) {
            return Err(ApiError::bad_request(
                "invalid_tag",
                "tag differs from the tag in the X-address",
            ));
        }
        tag = Some(from_address);
    }
    Ok(NewIntent {
        asset,
        amount,
        external_id,
        metadata,
        expires_in,
        confirmations,
        address,
        tag,
        fiat,
    })
}

/// Most decimals a fiat price may have.
const MAX_FIAT_DECIMALS: u32 = 8;

/// `fiat_amount` and `fiat_currency`, both or neither. The rate is filled
/// in by `price_in_fiat`.
fn parse_fiat(obj: &Map<String, Value>) -> Result<Option<FiatPrice>, ApiError> {
    let (amount, currency) = match (obj.get("fiat_amount"), obj.get("fiat_currency")) {
        (None | Some(Value::Null), None | Some(Value::Null)) => return Ok(None),
        (Some(amount), Some(currency)) => (amount, currency),
        _ => {
            return Err(ApiError::bad_request(
                "missing_field",
                "fiat_amount and fiat_currency go together",
            ));
        }
    };
    let invalid_amount = || {
        ApiError::bad_request(
            "invalid_fiat_amount",
            format!(
                "fiat_amount must be a positive decimal string such as \"49.99\", at most {MAX_FIAT_DECIMALS} decimals"
            ),
        )
    };
    let Value::String(text) = amount else {
        return Err(invalid_amount());
    };
    let fiat_amount = parse_plain_decimal(text)
        .filter(|d| *d > Decimal::ZERO && d.scale() <= MAX_FIAT_DECIMALS)
        .ok_or_else(invalid_amount)?;
    let fiat_currency = match currency {
        Value::String(c) if c.len() == 3 && c.bytes().all(|b| b.is_ascii_alphabetic()) => c.to_ascii_uppercase(),
        _ => {
            return Err(ApiError::bad_request(
                "invalid_fiat_currency",
                "fiat_currency must be an ISO 4217 code such as \"USD\"",
            ));
        }
    };
    Ok(Some(FiatPrice {
        fiat_amount,
        fiat_currency,
        rate: Decimal::ZERO,
        rate_source: String::new(),
        rate_at: chrono::DateTime::UNIX_EPOCH,
    }))
}

/// Prices a fiat request at the rate of now: `amount` is the fiat amount
/// over the rate, rounded up to the asset's precision (docs/pricing.md).
fn price_in_fiat(app: &App, req: &mut NewIntent) -> Result<(), ApiError> {
    let Some(fiat) = &mut req.fiat else {
        return Ok(());
    };
    let Some(book) = &app.rates else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "fiat_not_configured",
            "intents priced in fiat need a [rates] section in the configuration",
        ));
    };
    let quote = book
        .quote(Coin::of(req.asset), &fiat.fiat_currency, app.engine.clock.now())
        .map_err(|e| match e {
            RateError::UnknownCurrency(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "currency_not_configured",
                e.to_string(),
            ),
            RateError::Unavailable { .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "rate_unavailable", e.to_string())
            }
        })?;
    // Unique amounts step in `amount_step` (cents for USDT): an amount
    // finer than that could not be told from its neighbours by what
    // customers send, so it is rounded up to the step's decimals.
    let decimals = match app.engine.policy(req.asset) {
        Some(policy) if policy.match_mode == MatchMode::Amount => policy.amount_step.normalize().scale(),
        _ => req.asset.decimals(),
    };
    req.amount = amount_for_price(req.asset, fiat.fiat_amount, quote.rate, decimals).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_allowed",
            format!(
                "{} {} at {} is out of range for {}",
                fiat.fiat_amount, fiat.fiat_currency, quote.rate, req.asset
            ),
        )
    })?;
    fiat.rate = quote.rate;
    fiat.rate_source = quote.source;
    fiat.rate_at = quote.at;
    Ok(())
}

/// The optional `external_id` of a create request.
pub fn external_id_field(obj: &Map<String, Value>) -> Result<Option<String>, ApiError> {
    match obj.get("external_id") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= MAX_EXTERNAL_ID_CHARS => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::bad_request(
            "invalid_external_id",
            format!("external_id must be a non-empty string of at most {MAX_EXTERNAL_ID_CHARS} characters"),
        )),
    }
}

/// The required `asset` of a create request.
pub fn asset_field(obj: &Map<String, Value>) -> Result<Asset, ApiError> {
    match obj.get("asset") {
        Some(Value::String(code)) => code
            .parse::<Asset>()
            .map_err(|e| ApiError::bad_request("invalid_asset", e.to_string())),
        Some(_) => Err(ApiError::bad_request(
            "invalid_asset",
            "asset must be a string such as \"LTC\"",
        )),
        None => Err(ApiError::bad_request("missing_field", "asset is required")),
    }
}

/// The optional `metadata` object of a create request.
pub fn parse_metadata(obj: &Map<String, Value>) -> Result<Value, ApiError> {
    match obj.get("metadata") {
        None | Some(Value::Null) => Ok(Value::Object(Map::new())),
        Some(Value::Object(m)) => {
            let v = Value::Object(m.clone());
            if serde_json::to_vec(&v).map(|b| b.len()).unwrap_or(usize::MAX) > MAX_METADATA_BYTES {
                return Err(ApiError::bad_request(
                    "invalid_metadata",
                    format!("metadata is limited to {MAX_METADATA_BYTES} bytes of JSON"),
                ));
            }
            Ok(v)
        }
        Some(_) => Err(ApiError::bad_request(
            "invalid_metadata",
            "metadata must be a JSON object",
        )),
    }
}

fn optional_int(
    obj: &Map<String, Value>,
    field: &str,
    code: &'static str,
    min: u64,
    max: u64,
) -> Result<Option<u64>, ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) if (min..=max).contains(&v) => Ok(Some(v)),
            _ => Err(ApiError::bad_request(
                code,
                format!("{field} must be an integer from {min} to {max}"),
            )),
        },
        Some(_) => Err(ApiError::bad_request(
            code,
            format!("{field} must be an integer from {min} to {max}"),
        )),
    }
}

pub fn intent_id(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(id) = path.map_err(|_| ApiError::bad_request("invalid_id", "malformed intent id"))?;
    if !id.starts_with("pi_") || id.len() > 64 {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no intent {id:?}"),
        ));
    }
    Ok(id)
}

pub async fn show(State(app): State<Arc<App>>, path: Result<Path<String>, PathRejection>) -> ApiResult {
    let id = intent_id(path)?;
    match app.engine.store.intent(&id).map_err(ApiError::internal)? {
        Some(view) => Ok(Json(view).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no intent {id:?}"),
        )),
    }
}

pub async fn cancel(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let id = intent_id(path)?;
    tracing::info!(caller = %caller.name, intent = %id, "cancel requested");
    match app.engine.cancel_intent(id.clone()).await.map_err(ApiError::internal)? {
        CancelOutcome::NotFound => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no intent {id:?}"),
        )),
        CancelOutcome::Refused(refused) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_cancellable",
            refused.to_string(),
        )),
        CancelOutcome::Cancelled(view, _) => Ok(Json(view).into_response()),
    }
}

pub async fn list(State(app): State<Arc<App>>, headers: HeaderMap, RawQuery(raw): RawQuery) -> ApiResult {
    let pairs = query_pairs(raw.as_deref());
    only_params(
        &pairs,
        &[
            "status",
            "asset",
            "external_id",
            "limit",
            "after",
            "format",
            "from",
            "to",
        ],
    )?;
    let csv = super::export::wants_csv(&headers, &pairs)?;
    let range = super::export::date_range(&pairs, csv)?;
    let status = match param(&pairs, "status") {
        None | Some("") => None,
        Some(s) => Some(IntentStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_parameter",
                format!("status {s:?} is not awaiting, detected, confirmed, expired or cancelled"),
            )
        })?),
    };
    if csv {
        super::export::refuse_params(&pairs, &["external_id", "limit", "after"])?;
        return super::export::intents(&app, range, super::asset_param(&app, &pairs)?, status);
    }
    let filter = IntentFilter {
        status,
        asset: super::asset_param(&app, &pairs)?,
        external_id: param(&pairs, "external_id")
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        after: param(&pairs, "after").filter(|s| !s.is_empty()).map(str::to_string),
        limit: int_param(&pairs, "limit", LIST_DEFAULT, 1, LIST_MAX)? as usize,
    };
    let (intents, next) = app.engine.store.list_intents(&filter).map_err(ApiError::internal)?;
    Ok(Json(json!({"intents": intents, "next": next})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn networks() -> HashMap<Asset, Network> {
        Asset::ALL.into_iter().map(|a| (a, Network::Regtest)).collect()
    }

    /// JSON built from the request's own field names and plausible values,
    /// so the fuzzer reaches deep into the validation.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|f| json!(f)),
            prop::sample::select(vec![
                "LTC",
                "BTC",
                "XRP",
                "USDT_BSC",
                "USDT_TRC20",
                "DOGE",
                "1.5",
                "0",
                "-1",
                "1e9",
                "0.000000001",
                "99999999999999999999999999999",
                "",
                "rltc1qrl3keavzu7pe2n7jqxznhax745qttrlqglga2z",
                "X7AcgcsBL6XDcUb289X4mJ8djcdyKaLFuhLRuNXPrDeJd9A",
                "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
            ])
            .prop_map(|s| json!(s)),
            ".{0,40}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            // The request's own fields, and one it does not know.
            let key = prop::sample::select(CREATE_FIELDS.iter().copied().chain(["x"]).collect::<Vec<_>>());
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(key, inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, .. ProptestConfig::default() })]

        #[test]
        fn any_json_body_is_accepted_or_refused_with_a_client_error(body in json_value()) {
            let bytes = serde_json::to_vec(&body).expect("serializable");
            if let Err(e) = parse_create(&networks(), &bytes) {
                prop_assert!(e.status.is_client_error(), "{} {}", e.status, e.code);
                prop_assert!(!e.message.is_empty());
            }
        }

        #[test]
        fn any_bytes_are_refused_with_a_client_error(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            if let Err(e) = parse_create(&networks(), &bytes) {
                prop_assert!(e.status.is_client_error());
            }
        }
    }

    #[test]
    fn a_valid_request_parses_to_exact_amounts() {
        let req = parse_create(
            &networks(),
            br#"{"asset":"LTC","amount":"0.1","external_id":"o-1","tag":null}"#,
        )
        .expect("valid");
        assert_eq!(
            (req.amount.to_string(), req.external_id.as_deref()),
            ("0.10000000".into(), Some("o-1"))
        );
    }
}
