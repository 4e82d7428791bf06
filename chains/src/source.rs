//! The `ChainSource` trait: what every backend (core-rpc, esplora, rippled,
//! evm, tron-http) provides. Sources return data and never touch the store.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use paywatch_state::{Asset, BlockRef, ChainTip, Observation};

use crate::ChainError;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The addresses to watch, canonical. `version` changes whenever the set
/// does, so a source can cache what it derives from it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchSet {
    pub version: u64,
    /// Every address to look for in blocks.
    pub addresses: HashSet<String>,
    /// The subset that can currently receive (configured addresses, open
    /// intents): what a per-address mempool query needs to cover.
    pub hot: HashSet<String>,
}

/// Looks up the hash paywatch stored for a height it applied, so a source can
/// find where a reorg forked.
pub type KnownHash<'a> = &'a (dyn Fn(u64) -> Option<String> + Send + Sync);

/// One step of a scan: blocks after `from` up to at most `to`.
pub struct ScanRequest<'a> {
    pub from: &'a BlockRef,
    pub to: u64,
    pub watch: &'a WatchSet,
    pub known_hash: KnownHash<'a>,
}

/// What a scan step found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScanBatch {
    /// Set when blocks above this height left the best chain.
    pub rollback_to: Option<u64>,
    pub blocks: Vec<BlockRef>,
    pub observations: Vec<Observation>,
    /// The last block this step covered (`from` itself if none).
    pub cursor: Option<BlockRef>,
}

pub trait ChainSource: Send + Sync + 'static {
    /// The backend name for status and logs (`core-rpc`, ...).
    fn backend(&self) -> &'static str;

    /// Checks made once before polling: the backend serves the configured
    /// chain and contract. A `ChainError::Config` here stops the start.
    fn preflight(&self) -> BoxFuture<'_, Result<(), ChainError>> {
        Box::pin(async { Ok(()) })
    }

    /// Operator warnings about the setup (e.g. an XRP account without
    /// `RequireDest`), shown in `/v1/status`.
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }

    /// The node's best block and, where the chain has one, its finality mark.
    fn tip(&self) -> BoxFuture<'_, Result<ChainTip, ChainError>>;

    /// Scans blocks after `req.from` up to `req.to` (fewer if the source
    /// prefers smaller steps), detecting reorgs by block hash first.
    fn scan<'a>(&'a self, req: ScanRequest<'a>) -> BoxFuture<'a, Result<ScanBatch, ChainError>>;

    /// Every watched transfer in the mempool now; `None` where the chain has
    /// no mempool to watch.
    fn mempool<'a>(&'a self, watch: &'a WatchSet) -> BoxFuture<'a, Result<Option<Vec<Observation>>, ChainError>>;
}

/// Convenience for sources: the cursor of a batch, or `from` when empty.
pub fn batch_cursor(batch: &ScanBatch, from: &BlockRef) -> BlockRef {
    batch.cursor.clone().unwrap_or_else(|| from.clone())
}

/// Shared handle used by the poller.
pub type SharedSource = Arc<dyn ChainSource>;

/// How far below the cursor a fork point is looked for.
const MAX_FORK_DEPTH: u64 = 10_000;

/// The last block both the backend and paywatch agree on, when `from` has
/// left the backend's best chain; `None` while it is still on it.
///
/// Stored hashes may be sparse (EVM scans keep the hashes of range ends and
/// of blocks with transfers): heights without one are skipped. Checking the
/// cursor's hash is enough to notice any reorg at or below it, since every
/// block commits to its parent.
pub async fn find_fork<F, Fut>(
    asset: Asset,
    from: &BlockRef,
    known: KnownHash<'_>,
    node_hash: F,
) -> Result<Option<BlockRef>, ChainError>
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Result<Option<String>, ChainError>>,
{
    if node_hash(from.height).await?.as_deref() == Some(from.hash.as_str()) {
        return Ok(None);
    }
    let lowest = from.height.saturating_sub(MAX_FORK_DEPTH);
    let mut height = from.height;
    while height > lowest {
        height -= 1;
        let Some(ours) = known(height) else { continue };
        if node_hash(height).await?.as_deref() == Some(ours.as_str()) {
            tracing::warn!(asset = %asset, fork = height, was = from.height, "reorg detected; rolling back");
            return Ok(Some(BlockRef { height, hash: ours }));
        }
    }
    Err(ChainError::Config(format!(
        "{asset}: no block in common with the backend below height {} (a reorg deeper than paywatch keeps, \
         or the wrong chain); check the backend, or re-create the state directory",
        from.height
    )))
}
