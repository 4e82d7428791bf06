//! Value parsers shared by every section: durations, secret files, and the
//! error that names its key.

use std::path::Path;
use std::time::Duration;

use paywatch_chains::Secret;

/// A configuration problem: which key, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

pub fn err(key: impl Into<String>, message: impl ToString) -> ConfigError {
    ConfigError {
        key: key.into(),
        message: message.to_string(),
    }
}

/// A secret from a file: trimmed, never empty.
pub fn read_secret(key: &str, path: &Path) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| err(key, format!("cannot read {}: {e}", path.display())))?;
    let value = text.trim();
    if value.is_empty() {
        return Err(err(key, format!("{} is empty", path.display())));
    }
    Ok(Secret::new(value))
}

/// An http or https URL, the error naming `key`.
pub fn http_url(key: impl Into<String>, text: &str) -> Result<reqwest::Url, ConfigError> {
    let key = key.into();
    let url = reqwest::Url::parse(text).map_err(|e| err(&key, format!("{text:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(err(key, format!("{text:?} must be an http or https URL")));
    }
    Ok(url)
}

pub fn duration_or(key: &str, text: Option<&str>, default: Duration) -> Result<Duration, ConfigError> {
    match text {
        None => Ok(default),
        Some(t) => parse_duration(t).map_err(|m| err(key, m)),
    }
}

pub fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// `"500ms"`, `"30s"`, `"15m"`, `"24h"`, `"7d"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like \"30s\", \"15m\" or \"24h\""))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        "d" => Duration::from_secs(n.saturating_mul(86_400)),
        _ => return Err(format!("{text:?} has no unit; use ms, s, m, h or d")),
    };
    if d.is_zero() {
        return Err(format!("{text:?} must be longer than zero"));
    }
    Ok(d)
}

/// toml's messages carry line/column and name the offending key.
pub fn toml_message(e: &toml::de::Error) -> String {
    e.to_string().trim().replace('\n', " ").replace("  ", " ")
}
