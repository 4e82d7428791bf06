//! Who may call what: the bearer token names the caller, and each route
//! needs a scope (reading; creating and cancelling; manual actions). A
//! missing or unknown token is 401, a known one without the scope 403
//! `insufficient_scope`.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::{ApiError, App};
use crate::config::Scope;

/// The authenticated caller, for the handlers (logged with every change).
#[derive(Clone, Debug)]
pub struct Caller {
    pub name: String,
}

/// Routes that change state, with the scope each needs. A route that
/// changes state and is not listed here is refused to every token (fail
/// closed): a new route gets its scope here or it does not answer.
const CHANGES: [(&str, Scope); 8] = [
    ("/v1/intents", Scope::Write),
    ("/v1/intents/{id}/cancel", Scope::Write),
    ("/v1/accounts", Scope::Write),
    ("/v1/accounts/{id}/close", Scope::Write),
    ("/v1/intents/{id}/resolve", Scope::Manual),
    ("/v1/transfers/{id}/assign", Scope::Manual),
    ("/v1/events/{id}/redeliver", Scope::Manual),
    // It changes nothing, but it hands out every record at once.
    ("/v1/backup", Scope::Manual),
];

/// The scope a route needs: `read` for reads, the listed scope for
/// changes; `None` for a change nobody may make.
pub fn required_scope(method: &Method, route: &str) -> Option<Scope> {
    if method == Method::GET || method == Method::HEAD {
        return Some(Scope::Read);
    }
    CHANGES.iter().find(|(r, _)| *r == route).map(|(_, scope)| *scope)
}

pub(super) async fn require_token(State(app): State<Arc<App>>, mut request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(presented) = presented else {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send Authorization: Bearer <token>",
        )
        .into_response();
    };
    // Every token is compared, so the time taken says nothing of which
    // (or whether one) matched.
    let mut caller = None;
    for token in &app.tokens {
        if tokens_equal(presented, token.secret.expose()) {
            caller = Some(token);
        }
    }
    let Some(token) = caller else {
        return ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "wrong API token").into_response();
    };
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let Some(needed) = required_scope(request.method(), &route) else {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!("no scope allows {} {route}", request.method()),
        )
        .into_response();
    };
    if !token.scopes.contains(&needed) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!(
                "the token {:?} lacks the scope {:?} that {} {route} needs",
                token.name,
                needed.as_str(),
                request.method()
            ),
        )
        .into_response();
    }
    request.extensions_mut().insert(Caller {
        name: token.name.clone(),
    });
    next.run(request).await
}

/// Compares in time independent of where the tokens differ (and of their
/// lengths): both are hashed first, then every byte is compared.
fn tokens_equal(a: &str, b: &str) -> bool {
    let (ha, hb) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    ha.iter().zip(hb.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(tokens_equal("abc", "abc"));
        assert!(!tokens_equal("abc", "abd"));
        assert!(!tokens_equal("abc", "abcd"));
        assert!(!tokens_equal("", "abc"));
    }

    #[test]
    fn reads_changes_and_manual_actions_need_their_scopes() {
        assert_eq!(required_scope(&Method::GET, "/v1/intents"), Some(Scope::Read));
        assert_eq!(required_scope(&Method::POST, "/v1/intents"), Some(Scope::Write));
        assert_eq!(
            required_scope(&Method::POST, "/v1/intents/{id}/cancel"),
            Some(Scope::Write)
        );
        assert_eq!(
            required_scope(&Method::POST, "/v1/events/{id}/redeliver"),
            Some(Scope::Manual)
        );
        assert_eq!(required_scope(&Method::POST, "/v1/accounts"), Some(Scope::Write));
        assert_eq!(
            required_scope(&Method::POST, "/v1/transfers/{id}/assign"),
            Some(Scope::Manual)
        );
        assert_eq!(
            required_scope(&Method::POST, "/v1/intents/{id}/resolve"),
            Some(Scope::Manual)
        );
        assert_eq!(
            required_scope(&Method::POST, "/v1/intents/{id}/mark-paid"),
            None,
            "unlisted: refused"
        );
        assert_eq!(required_scope(&Method::POST, ""), None, "no matched route: refused");
    }
}
