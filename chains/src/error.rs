//! What can go wrong talking to a chain, named by what failed.

/// A failed call to a chain backend. The poller asks `is_transient()` to
/// choose a short backoff (outages, rate limits, garbage) or a long one
/// (configuration problems that need an operator).
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("cannot reach {url}: {message}")]
    Transport { url: String, message: String },
    #[error("{call} timed out after {seconds}s")]
    Timeout { call: String, seconds: u64 },
    #[error("{url} answered HTTP {status}")]
    Http { url: String, status: u16 },
    #[error("node error in {method}: {code} {message}")]
    Rpc { method: String, code: i64, message: String },
    #[error("unusable response to {what}: {detail}")]
    Garbage { what: String, detail: String },
    /// The backend asks us to slow down (HTTP 429, or Tron's 403 penalty).
    #[error("{url} is rate-limiting us (HTTP {status}): {message}")]
    RateLimited { url: String, status: u16, message: String },
    /// The backend lacks data paywatch needs (a ledger range it does not
    /// hold): the cursor waits until it is served.
    #[error("{0}")]
    History(String),
    /// The endpoint that answered lacks data another one had or that the
    /// chain must have (a block above its head, transaction infos missing
    /// for a block with transactions, a range it did not cover): it is
    /// behind. Never evidence of anything: retried, the endpoint left alone
    /// for a while, never applied.
    #[error("the endpoint is behind: {0}")]
    Behind(String),
    /// Answers that do not fit together (the chain moved between two calls,
    /// two endpoints disagree): retried, never applied.
    #[error("not available consistently: {0}")]
    Unavailable(String),
    /// The backend serves another chain or network than the configured
    /// one (genesis, chain id, network id). The asset stops and retries at
    /// the longest backoff, reported in status; the other assets go on (a
    /// load balancer may route to a wrong node for a while).
    #[error("the backend serves another chain: {0}")]
    WrongChain(String),
    /// The configuration contradicts what the chain says (a contract's
    /// decimals, a backend lacking a required call): at start, this stops
    /// the daemon with exit code 2.
    #[error("{0}")]
    Config(String),
}

impl ChainError {
    pub fn is_transient(&self) -> bool {
        match self {
            ChainError::Transport { .. }
            | ChainError::Timeout { .. }
            | ChainError::Garbage { .. }
            | ChainError::History(_)
            | ChainError::Unavailable(_)
            | ChainError::Behind(_)
            | ChainError::RateLimited { .. } => true,
            // 401/403 are credentials, 404 a wrong URL: an operator must act.
            ChainError::Http { status, .. } => !matches!(status, 401 | 403 | 404),
            // -28: node warming up; -5/-8: data raced away between calls.
            ChainError::Rpc { code, .. } => matches!(code, -28 | -5 | -8),
            ChainError::Config(_) | ChainError::WrongChain(_) => false,
        }
    }

    /// Bounded metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            ChainError::Transport { .. } => "transport",
            ChainError::Timeout { .. } => "timeout",
            ChainError::Http { .. } => "http",
            ChainError::Rpc { .. } => "rpc",
            ChainError::Garbage { .. } => "decode",
            ChainError::History(_) => "history",
            ChainError::Unavailable(_) => "unavailable",
            ChainError::Behind(_) => "behind",
            ChainError::RateLimited { .. } => "rate_limit",
            ChainError::Config(_) => "config",
            ChainError::WrongChain(_) => "wrong_chain",
        }
    }

    pub fn garbage(what: impl Into<String>, detail: impl ToString) -> ChainError {
        ChainError::Garbage {
            what: what.into(),
            detail: detail.to_string(),
        }
    }
}
