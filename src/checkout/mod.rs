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

/// Requests per client in the current minute, for at most `MAX_CLIENTS`
/// clients at once.
#[derive(Default)]
pub struct RateLimiter {
    state: Mutex<Windows>,
}

#[derive(Default)]
struct Windows {
    by_client: HashMap<IpAddr, (Instant, u32)>,
    last_sweep: Option<Instant>,
}

/// Clients tracked at once; beyond, new clients wait for the next sweep.
const MAX_CLIENTS: usize = 50_000;
const WINDOW: Duration = Duration::from_secs(60);

impl RateLimiter {
    /// Whether `client` may make one more request (at most `per_minute`).
    fn allow(&self, client: IpAddr, per_minute: u32) -> bool {
        let now = Instant::now();
        let mut windows = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Windows { by_client, last_sweep } = &mut *windows;
        if by_client.len() >= MAX_CLIENTS
            && last_sweep.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(10))
        {
            // Forget the windows that are over, at most every 10 s.
            by_client.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
            *last_sweep = Some(now);
        }
        if by_client.len() >= MAX_CLIENTS && !by_client.contains_key(&client) {
            // A flood of clients (a large IPv6 range, say): new ones are let
            // through untracked rather than shut out; the pages are cheap reads.
            return true;
        }
        let (start, count) = by_client.entry(client).or_insert((now, 0));
        if now.duration_since(*start) >= WINDOW {
            *start = now;
            *count = 0;
        }
        *count += 1;
        *count <= per_minute
    }
}

/// The client a request counts against: the peer, or (behind a trusted
/// proxy) the address the proxy appended last to `X-Forwarded-For`. IPv6
/// clients count by their /64, which one customer usually has whole.
fn client(headers: &HeaderMap, peer: Option<SocketAddr>, config: &CheckoutConfig) -> IpAddr {
    let forwarded = || {
        headers
            .get_all("x-forwarded-for")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .map(str::trim)
            .and_then(|ip| {
                // `1.2.3.4`, `2001:db8::1`, or with a port: `1.2.3.4:5678`, `[2001:db8::1]:5678`.
                ip.parse::<IpAddr>()
                    .ok()
                    .or_else(|| ip.parse::<SocketAddr>().ok().map(|a| a.ip()))
            })
    };
    let ip = match (config.trust_forwarded_for, forwarded()) {
        (true, Some(ip)) => ip,
        // No peer address (never over TCP): one shared bucket, not a free pass.
        _ => peer
            .map(|p| p.ip())
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
    };
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let mut segments = v6.segments();
            segments[4..].fill(0);
            IpAddr::V6(segments.into())
        }
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Public pages: off without `[checkout]` (404, as any unknown path),
/// rate limited, and always with the security headers.
pub async fn guard(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let mut response = match &app.checkout {
        None => (
            StatusCode::NOT_FOUND,
            [(header::HeaderName::from_static("x-paywatch-error"), "checkout_disabled")],
            html(page::message(TEXT, TEXT.not_found)),
        )
            .into_response(),
        Some(config)
            if !app
                .checkout_limiter
                .allow(client(request.headers(), peer, config), config.requests_per_minute) =>
        {
            (StatusCode::TOO_MANY_REQUESTS, html(page::message(TEXT, TEXT.too_many))).into_response()
        }
        Some(_) => next.run(request).await,
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
        Ok(found) => Ok(found.map(|intent| {
            let policy = app.engine.policy(intent.asset);
            CustomerView::of(&intent, policy, TEXT, show_order, app.engine.clock.now())
        })),
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
        assert_eq!(client(&headers, Some(peer), &config), peer.ip());
        config.trust_forwarded_for = true;
        assert_eq!(
            client(&headers, Some(peer), &config),
            "2.2.2.2".parse::<IpAddr>().expect("ip")
        );
        // A client's own header comes first; the proxy's line is the last.
        headers.append("x-forwarded-for", HeaderValue::from_static("3.3.3.3:4444"));
        assert_eq!(
            client(&headers, Some(peer), &config),
            "3.3.3.3".parse::<IpAddr>().expect("ip")
        );
        let v6: SocketAddr = "[2001:db8:1:2:aaaa:bbbb:cccc:dddd]:5000".parse().expect("addr");
        config.trust_forwarded_for = false;
        assert_eq!(
            client(&HeaderMap::new(), Some(v6), &config),
            "2001:db8:1:2::".parse::<IpAddr>().expect("ip")
        );
    }
}
