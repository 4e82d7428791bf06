//! What lives in the state directory: the store and the generated API token.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use paywatch_chains::Secret;
use paywatch_state::{PgOptions, Store};

use crate::config::{ApiToken, Config, StoreConfig};

pub const STORE_FILE: &str = "paywatch.redb";
pub const TOKEN_FILE: &str = "api-token";

/// Opens the configured store: PostgreSQL, or the embedded file in
/// `state_dir` (created if missing).
pub fn open_store(config: &Config) -> anyhow::Result<Arc<Store>> {
    match &config.store {
        StoreConfig::Embedded => open_embedded(&config.state_dir),
        StoreConfig::Postgres(options) => open_postgres(options),
    }
}

pub fn open_postgres(options: &PgOptions) -> anyhow::Result<Arc<Store>> {
    let store = Store::open_postgres(options.clone())
        .with_context(|| format!("failed to open the PostgreSQL store {}", options.display))?;
    Ok(Arc::new(store))
}

/// Refuses a state directory without a store: opening it would make a
/// new, empty one (a copy or a backup of nothing).
pub fn require_store(state_dir: &Path) -> anyhow::Result<()> {
    let path = state_dir.join(STORE_FILE);
    if !path.exists() {
        anyhow::bail!(
            "there is no store at {} (is the state directory right?)",
            path.display()
        );
    }
    Ok(())
}

pub fn open_embedded(state_dir: &Path) -> anyhow::Result<Arc<Store>> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .with_context(|| format!("failed to create state_dir {}", state_dir.display()))?;
    let path = state_dir.join(STORE_FILE);
    let store = Store::open(&path).with_context(|| {
        format!(
            "failed to open the store {} (is another paywatch running on this state_dir?)",
            path.display()
        )
    })?;
    // Every record is in it: the owner's alone, whatever the umask.
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .with_context(|| format!("failed to make {} private", path.display()))?;
    Ok(Arc::new(store))
}

/// The API's tokens: the named ones of `api.tokens_file`, else the one
/// token (configured, or generated) as `default` with every scope.
pub fn api_tokens(config: &Config) -> anyhow::Result<Vec<ApiToken>> {
    if !config.api.tokens.is_empty() {
        return Ok(config.api.tokens.clone());
    }
    Ok(vec![ApiToken::default_token(api_token(config)?)])
}

/// The configured token, or `<state_dir>/api-token`, generated (mode 0600)
/// at first start.
pub fn api_token(config: &Config) -> anyhow::Result<Secret> {
    if let Some(t) = &config.api.token {
        return Ok(t.clone());
    }
    let path = config.state_dir.join(TOKEN_FILE);
    if let Ok(text) = std::fs::read_to_string(&path)
        && !text.trim().is_empty()
    {
        return Ok(Secret::new(text.trim()));
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("failed to generate an API token: {e}"))?;
    let token = hex::encode(bytes);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("failed to create {}", path.display()))?;
    file.write_all(token.as_bytes())?;
    file.sync_all()?;
    tracing::info!(path = %path.display(), "generated an API token");
    Ok(Secret::new(token))
}
