//! The hosted checkout page (docs/checkout.md): `GET /pay/{token}` for the
//! customer, `GET /pay/{token}/status` for its live state, and the page's
//! own script and style. Public (no API token), found by an unguessable
//! token (never the intent id), rate limited per client, with strict
//! security headers; off unless `[checkout]` is configured.
//!
//! - `page` — the HTML, the customer's view of an intent, the QR code
//! - `text` — every word of the page, in one place

pub mod page;
pub mod text;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api::App;
use crate::config::CheckoutConfig;

use self::page::CustomerView;
use self::text::{EN, Text};

/// The words of the page.
const TEXT: &Text = &EN;

const SCRIPT: &str = include_str!("checkout.js");
const STYLE: &str = include_str!("checkout.css");

/// Headers on every public response: no framing, no third-party anything,
/// no caching of a page that shows live state, nothing in the referrer.
const SECURITY_HEADERS: [(&str, &str); 6] = [
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
    ("permissions-policy", "camera=(), microphone=(), geolocation=()"),
];

/// Requests per client in the current minute.
#[derive(Default)]
pub struct RateLimiter {
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl RateLimiter {
    /// Whether `client` may make one more request (at most `per_minute`).
    fn allow(&self, client: IpAddr, per_minute: u32) -> bool {
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() > 100_000 {
            // Many clients: forget the windows that are over.
            windows.retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(60));
        }
        let (start, count) = windows.entry(client).or_insert((now, 0));
        if now.duration_since(*start) >= Duration::from_secs(60) {
            *start = now;
            *count = 0;
        }
        *count += 1;
        *count <= per_minute
    }
}

/// The client a request counts against: the peer, or (behind a trusted
/// proxy) the last address the proxy appended to `X-Forwarded-For`.
fn client(headers: &HeaderMap, peer: Option<SocketAddr>, config: &CheckoutConfig) -> Option<IpAddr> {
    if config.trust_forwarded_for
        && let Some(forwarded) = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|ip| ip.trim().parse().ok())
    {
        return Some(forwarded);
    }
    peer.map(|p| p.ip())
}

/// Public pages: off without `[checkout]` (404, as any unknown path),
/// rate limited, and always with the security headers.
pub async fn guard(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let Some(config) = &app.checkout else {
        return crate::api::ApiError::new(
            StatusCode::NOT_FOUND,
            "checkout_disabled",
            "the checkout pages are off: [checkout] is not configured",
        )
        .into_response();
    };
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let mut response = match client(request.headers(), peer, config) {
        Some(ip) if !app.checkout_limiter.allow(ip, config.requests_per_minute) => {
            (StatusCode::TOO_MANY_REQUESTS, html(page::message(TEXT, TEXT.too_many))).into_response()
        }
        _ => next.run(request).await,
    };
    for (name, value) in SECURITY_HEADERS {
        response.headers_mut().insert(name, HeaderValue::from_static(value));
    }
    response
}

fn html(body: String) -> ([(header::HeaderName, &'static str); 1], String) {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body)
}

/// Tokens are 32 base32 digits; anything else is not looked up.
fn valid_token(token: &str) -> bool {
    token.len() == 32 && token.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn customer_view(app: &App, token: &str) -> Result<Option<CustomerView>, crate::api::ApiError> {
    if !valid_token(token) {
        return Ok(None);
    }
    let show_order = app.checkout.as_ref().is_some_and(|c| c.show_external_id);
    match app.engine.store.intent_by_checkout_token(token) {
        Ok(found) => Ok(found.map(|intent| CustomerView::of(&intent, TEXT, show_order))),
        Err(e) => Err(crate::api::ApiError::internal(e)),
    }
}

/// `GET /pay/{token}`: the page.
pub async fn show(State(app): State<Arc<App>>, Path(token): Path<String>) -> Response {
    match customer_view(&app, &token) {
        Ok(Some(view)) => html(page::render(&view, &token, TEXT)).into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, html(page::message(TEXT, TEXT.not_found))).into_response(),
        Err(failed) => failed.into_response(),
    }
}

/// `GET /pay/{token}/status`: the page's live state, for its script.
pub async fn status(State(app): State<Arc<App>>, Path(token): Path<String>) -> Response {
    match customer_view(&app, &token) {
        Ok(Some(view)) => axum::Json(view).into_response(),
        Ok(None) => crate::api::ApiError::new(StatusCode::NOT_FOUND, "not_found", TEXT.not_found).into_response(),
        Err(failed) => failed.into_response(),
    }
}

/// `GET /pay/assets/{file}`: the page's script and style, from the binary.
pub async fn asset(Path(file): Path<String>) -> Response {
    match file.as_str() {
        "checkout.js" => ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], SCRIPT).into_response(),
        "checkout.css" => ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response(),
        _ => (StatusCode::NOT_FOUND, html(page::message(TEXT, TEXT.not_found))).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_requests_per_minute_and_no_more() {
        let limiter = RateLimiter::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().expect("ip"), "10.0.0.2".parse().expect("ip"));
        assert!((0..3).all(|_| limiter.allow(a, 3)));
        assert!(!limiter.allow(a, 3));
        assert!(limiter.allow(b, 3), "per client");
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let mut config = CheckoutConfig {
            base_url: "https://shop/pay".into(),
            show_external_id: false,
            requests_per_minute: 10,
            trust_forwarded_for: false,
        };
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("1.1.1.1, 2.2.2.2"));
        let peer: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        assert_eq!(client(&headers, Some(peer), &config), Some(peer.ip()));
        config.trust_forwarded_for = true;
        assert_eq!(client(&headers, Some(peer), &config), "2.2.2.2".parse().ok());
    }
}
