//! The accounting export (docs/api.md): `GET /v1/intents` and
//! `GET /v1/transfers` as `text/csv` (an `Accept: text/csv` header or
//! `format=csv`), over a date range, streamed page by page, every amount
//! exactly as stored.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use paywatch_state::ids::id_floor;
use paywatch_state::{Asset, IntentStatus, IntentView, TransferView};

use super::{ApiError, ApiResult, App, param};

/// Rows read per store read; each page is one short read transaction.
const PAGE: usize = 500;
/// Pages buffered ahead of a slow client.
const PAGES_AHEAD: usize = 4;

/// Whether the caller asked for CSV: `format=csv`, or `Accept: text/csv`
/// (`format=json` wins over the header).
pub fn wants_csv(headers: &HeaderMap, pairs: &[(String, String)]) -> Result<bool, ApiError> {
    match param(pairs, "format") {
        Some("csv") => Ok(true),
        Some("json") => Ok(false),
        None | Some("") => Ok(headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().starts_with("text/csv")))),
        Some(other) => Err(ApiError::bad_request(
            "invalid_parameter",
            format!("format {other:?} is not json or csv"),
        )),
    }
}

/// Refuses the JSON list's paging parameters, which the export ignores.
pub fn refuse_params(pairs: &[(String, String)], names: &[&str]) -> Result<(), ApiError> {
    match names
        .iter()
        .find(|name| param(pairs, name).is_some_and(|v| !v.is_empty()))
    {
        Some(name) => Err(ApiError::bad_request(
            "invalid_parameter",
            format!("{name} does not apply to the CSV export (it streams every row from..to)"),
        )),
        None => Ok(()),
    }
}

/// `from` (inclusive) and `to` (exclusive) of the export; either may be open.
pub type DateRange = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// `from` (inclusive) and `to` (exclusive), RFC 3339; refused outside the
/// export, where they would be silently meaningless.
pub fn date_range(pairs: &[(String, String)], csv: bool) -> Result<DateRange, ApiError> {
    let read = |name: &str| -> Result<Option<DateTime<Utc>>, ApiError> {
        match param(pairs, name) {
            None | Some("") => Ok(None),
            Some(_) if !csv => Err(ApiError::bad_request(
                "invalid_parameter",
                format!("{name} applies to the CSV export (format=csv); JSON lists page with after"),
            )),
            Some(text) => DateTime::parse_from_rfc3339(text)
                .map(|t| Some(t.with_timezone(&Utc)))
                .map_err(|_| {
                    ApiError::bad_request(
                        "invalid_parameter",
                        format!("{name} must be an RFC 3339 time such as 2026-12-01T00:00:00Z"),
                    )
                }),
        }
    };
    let (from, to) = (read("from")?, read("to")?);
    if let (Some(f), Some(t)) = (from, to)
        && f >= t
    {
        return Err(ApiError::bad_request("invalid_parameter", "from must be before to"));
    }
    Ok((from, to))
}

const INTENT_COLUMNS: [&str; 20] = [
    "id",
    "asset",
    "status",
    "amount",
    "pay_amount",
    "received",
    "flags",
    "address",
    "tag",
    "external_id",
    "created_at",
    "expires_at",
    "detected_at",
    "confirmed_at",
    "resolved_by",
    "resolved_reason",
    "payments",
    "fiat_amount",
    "fiat_currency",
    "rate",
];

const TRANSFER_COLUMNS: [&str; 16] = [
    "id",
    "asset",
    "txid",
    "index",
    "address",
    "tag",
    "amount",
    "status",
    "confirmations",
    "block_height",
    "intent_id",
    "account_id",
    "late",
    "dust",
    "assignment",
    "seen_at",
];

/// How far past `to` the transfers export reads before it stops: the
/// listing follows the order paywatch saw transfers in, and `seen_at` comes
/// from a clock that may have stepped back a little.
const CLOCK_SLACK: chrono::Duration = chrono::Duration::hours(1);

/// Intents created in the range, oldest first.
pub fn intents(app: &Arc<App>, range: DateRange, asset: Option<Asset>, status: Option<IntentStatus>) -> ApiResult {
    let from = range.0.map(|t| id_floor("pi_", t)).unwrap_or_else(|| "pi_".into());
    let to = range.1.map(|t| id_floor("pi_", t)).unwrap_or_else(|| "pi`".into()); // '`' sorts after '_'
    let store = app.engine.store.clone();
    let mut after: Option<String> = None;
    stream(INTENT_COLUMNS.as_slice(), move || {
        let page = store.intents_ascending(&from, &to, after.as_deref(), PAGE)?;
        let last = page.len() < PAGE;
        after = page.last().map(|i| i.id.clone());
        let rows = page
            .iter()
            .filter(|i| asset.is_none_or(|a| a == i.asset) && status.is_none_or(|s| s == i.status))
            .map(intent_row)
            .collect();
        Ok((rows, last))
    })
}

/// Transfers first seen in the range, oldest first.
pub fn transfers(app: &Arc<App>, range: DateRange, asset: Option<Asset>, unmatched: bool) -> ApiResult {
    let store = app.engine.store.clone();
    let mut after = 0u64;
    stream(TRANSFER_COLUMNS.as_slice(), move || {
        let (page, last_read) = store.transfers_ascending(after, PAGE)?;
        let Some(last_read) = last_read else {
            return Ok((Vec::new(), true));
        };
        after = last_read;
        // Listed in the order seen: well past `to`, nothing in range follows.
        let past_range = range
            .1
            .is_some_and(|to| page.first().is_some_and(|(_, t)| t.seen_at >= to + CLOCK_SLACK));
        let rows = page
            .iter()
            .map(|(_, t)| t)
            .filter(|t| range.0.is_none_or(|f| t.seen_at >= f) && range.1.is_none_or(|to| t.seen_at < to))
            .filter(|t| asset.is_none_or(|a| a == t.asset))
            // As the JSON `unmatched=true`: unmatched and late money, never
            // dust or deposits.
            .filter(|t| !unmatched || t.is_unmatched_or_late())
            .map(transfer_row)
            .collect();
        Ok((rows, past_range))
    })
}

fn intent_row(i: &IntentView) -> Vec<String> {
    let flags: Vec<&str> = i
        .flags
        .iter()
        .map(|f| match f {
            paywatch_state::Flag::Underpaid => "underpaid",
            paywatch_state::Flag::Overpaid => "overpaid",
            paywatch_state::Flag::PaidLate => "paid_late",
        })
        .collect();
    vec![
        i.id.clone(),
        i.asset.code().into(),
        i.status.as_str().into(),
        i.amount.to_string(),
        i.pay_amount.to_string(),
        i.received.to_string(),
        flags.join(";"),
        i.address.clone(),
        opt(i.tag),
        text(i.external_id.as_deref().unwrap_or("")),
        time(Some(i.created_at)),
        time(Some(i.expires_at)),
        time(i.detected_at),
        time(i.confirmed_at),
        text(i.resolution.as_ref().map(|r| r.by.as_str()).unwrap_or("")),
        text(i.resolution.as_ref().map(|r| r.reason.as_str()).unwrap_or("")),
        i.payments.len().to_string(),
        opt(i.fiat.as_ref().map(|f| f.fiat_amount)),
        i.fiat.as_ref().map(|f| f.fiat_currency.clone()).unwrap_or_default(),
        opt(i.fiat.as_ref().map(|f| f.rate)),
    ]
}

fn transfer_row(t: &TransferView) -> Vec<String> {
    vec![
        t.id.clone(),
        t.asset.code().into(),
        t.txid.clone(),
        t.index.to_string(),
        t.address.clone(),
        opt(t.tag),
        t.amount.to_string(),
        serde_json::to_value(t.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        t.confirmations.to_string(),
        opt(t.block_height),
        t.intent_id.clone().unwrap_or_default(),
        t.account_id.clone().unwrap_or_default(),
        t.late.to_string(),
        t.dust.to_string(),
        t.assignment.clone().unwrap_or_default(),
        time(Some(t.seen_at)),
    ]
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// Text a person typed (an external id, a reason): a leading `=`, `+`,
/// `-`, `@` would make a spreadsheet run it as a formula, so it is quoted
/// with a leading `'` (OWASP's CSV injection advice).
fn text(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    }
}

/// A client that reads nothing for this long loses its export (and its
/// place among the `MAX_EXPORTS`).
const STALLED_CLIENT: std::time::Duration = std::time::Duration::from_secs(60);

/// Exports running at once: each holds a blocking thread only while it
/// reads a page, but a crowd of them would still crowd out the scans.
const MAX_EXPORTS: usize = 4;
static EXPORTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_EXPORTS);

/// Page reader of an export: the rows of the next page, and whether it was
/// the last. Called on the blocking pool, one page at a time.
type NextPage = Box<dyn FnMut() -> Result<(Vec<Vec<String>>, bool), paywatch_state::StoreError> + Send>;

/// Streams a header row and then the pages `next_page` reads. Each page is
/// one short read on the blocking pool; waiting for a slow client holds no
/// thread. A client that hangs up stops the reads; a store failure mid-way
/// cuts the response off (never a short file that looks complete).
fn stream(
    columns: &'static [&'static str],
    next_page: impl FnMut() -> Result<(Vec<Vec<String>>, bool), paywatch_state::StoreError> + Send + 'static,
) -> ApiResult {
    let Ok(permit) = EXPORTS.try_acquire() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "export_busy",
            format!("{MAX_EXPORTS} exports are running; retry when one has finished"),
        ));
    };
    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(PAGES_AHEAD);
    // Set only after the last page was queued: a body that ends without it
    // was cut off (store failure, stalled client), and says so.
    let complete = Arc::new(AtomicBool::new(false));
    let mut next_page: Option<NextPage> = Some(Box::new(next_page));
    let producer_complete = complete.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let mut header = true;
        while let Some(mut read) = next_page.take() {
            if sender.is_closed() {
                return; // the client hung up
            }
            let (rows, last) = match tokio::task::spawn_blocking(move || (read(), read)).await {
                Ok((Ok(page), read)) => {
                    next_page = Some(read);
                    page
                }
                Ok((Err(e), _)) => {
                    tracing::error!(error = %e, "the CSV export failed mid-way");
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "the CSV export's read panicked");
                    return;
                }
            };
            let mut out = csv::Writer::from_writer(Vec::new());
            if std::mem::take(&mut header) {
                let _ = out.write_record(columns);
            }
            for row in &rows {
                let _ = out.write_record(row);
            }
            let chunk = out.into_inner().unwrap_or_default();
            if !chunk.is_empty() {
                match tokio::time::timeout(STALLED_CLIENT, sender.send(Bytes::from(chunk))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return, // the client hung up
                    Err(_) => {
                        tracing::warn!("a CSV export's client read nothing for {STALLED_CLIENT:?}; cut off");
                        return;
                    }
                }
            }
            if last {
                producer_complete.store(true, Ordering::Release);
                return;
            }
        }
    });
    let body = futures_util::stream::unfold(Some(receiver), move |receiver| {
        let complete = complete.clone();
        async move {
            let mut receiver = receiver?;
            match receiver.recv().await {
                Some(chunk) => Some((Ok(chunk), Some(receiver))),
                None if complete.load(Ordering::Acquire) => None,
                None => Some((Err(std::io::Error::other("the export was cut off")), None)),
            }
        }
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/csv; charset=utf-8")
        .body(Body::from_stream(body))
        .map_err(ApiError::internal)?
        .into_response())
}
