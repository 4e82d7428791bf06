//! Named API tokens with scopes, from `api.tokens_file`: several clients
//! (the shop, a dashboard, an operator) each with its own token, name and
//! rights. Without the file, the one token of `api.token_file` (or
//! `PAYWATCH_API_TOKEN`, or the generated one) is named `default` and has
//! every scope.

use std::collections::BTreeSet;
use std::path::Path;

use paywatch_chains::Secret;
use serde::Deserialize;

use super::values::{ConfigError, err};

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Read intents, transfers, events, deliveries, status.
    Read,
    /// Create and cancel intents.
    Write,
    /// Manual actions on the record (redelivering an event).
    Manual,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Write, Scope::Manual];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Manual => "manual",
        }
    }

    fn parse(text: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// One API client: its name (shown in logs and audit records, never the
/// secret), its token and its scopes.
#[derive(Clone, Debug)]
pub struct ApiToken {
    pub name: String,
    pub secret: Secret,
    pub scopes: BTreeSet<Scope>,
}

impl ApiToken {
    /// The single-token setup: every scope.
    pub fn default_token(secret: Secret) -> ApiToken {
        ApiToken {
            name: "default".into(),
            secret,
            scopes: Scope::ALL.into_iter().collect(),
        }
    }
}

/// A token sent as `Authorization: Bearer ...`: long enough not to be
/// guessed.
const MIN_TOKEN_CHARS: usize = 24;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    token: Vec<RawToken>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    name: String,
    /// Read as any value, so that a mistyped one (a bare number) is refused
    /// without its value in the message.
    token: toml::Value,
    scopes: Vec<String>,
}

/// A parser message with the values it quotes between backticks left out
/// (an invalid value may be a token); field names stay.
fn without_quoted(message: &str) -> String {
    if !message.starts_with("invalid") {
        return message.to_string();
    }
    message
        .split('`')
        .enumerate()
        .map(|(i, part)| if i % 2 == 1 { "…" } else { part })
        .collect::<Vec<_>>()
        .join("`")
}

/// Reads and checks the tokens file: `[[token]]` tables with `name`,
/// `token` and `scopes`; names and tokens unique, at least one token.
pub fn read_tokens(key: &str, path: &Path) -> Result<Vec<ApiToken>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| err(key, format!("cannot read {}: {e}", path.display())))?;
    let file: TokensFile = toml::from_str(&text).map_err(|e| {
        // toml's message may quote the offending line, a secret: keep only
        // where it is.
        let at = e.span().map(|s| format!(" at byte {}", s.start)).unwrap_or_default();
        err(
            key,
            format!(
                "{} is not a tokens file{at}: {}",
                path.display(),
                without_quoted(e.message())
            ),
        )
    })?;
    if file.token.is_empty() {
        return Err(err(key, format!("{} lists no [[token]]", path.display())));
    }
    let mut tokens: Vec<ApiToken> = Vec::new();
    for (i, raw) in file.token.into_iter().enumerate() {
        let entry = format!("{key} token[{i}]");
        let name = raw.name.trim().to_string();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) {
            return Err(err(
                entry,
                format!("name {name:?} must be letters, digits, '_', '.' or '-'"),
            ));
        }
        let Some(secret) = raw.token.as_str().map(|t| t.trim().to_string()) else {
            return Err(err(entry, format!("the token of {name:?} must be a quoted string")));
        };
        if secret.len() < MIN_TOKEN_CHARS || !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(err(
                entry,
                format!(
                    "the token of {name:?} must be at least {MIN_TOKEN_CHARS} visible ASCII characters, without spaces"
                ),
            ));
        }
        let mut scopes = BTreeSet::new();
        for s in &raw.scopes {
            let scope = Scope::parse(s).ok_or_else(|| {
                err(
                    &entry,
                    format!("{s:?} is not a scope; use \"read\", \"write\" or \"manual\""),
                )
            })?;
            scopes.insert(scope);
        }
        if scopes.is_empty() {
            return Err(err(entry, format!("{name:?} has no scope")));
        }
        if tokens.iter().any(|t| t.name == name) {
            return Err(err(entry, format!("the name {name:?} is used twice")));
        }
        if tokens.iter().any(|t| t.secret.expose() == secret) {
            return Err(err(entry, format!("{name:?} has the same token as another entry")));
        }
        tokens.push(ApiToken {
            name,
            secret: Secret::new(secret),
            scopes,
        });
    }
    Ok(tokens)
}
