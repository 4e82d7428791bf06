//! The `ChainSource` trait: what every backend (core-rpc, esplora, rippled,
//! evm, tron-http) provides. Sources return data and never touch the store.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use std::sync::atomic::{AtomicU64, Ordering};

use paywatch_state::{Asset, BlockRef, ChainTip, MempoolView, Observation};

use crate::ChainError;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The addresses to watch, canonical. `version` is unique to the content
/// (a source caches what it derives from the set by it); `generation` is the
/// store's watch generation the set is complete up to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchSet {
    pub version: u64,
    pub generation: u64,
    /// Every address to look for in blocks.
    pub addresses: HashSet<String>,
    /// The subset that can currently receive (configured addresses, open
    /// intents): what a per-address mempool query needs to cover.
    pub hot: HashSet<String>,
}

static WATCH_VERSIONS: AtomicU64 = AtomicU64::new(1);

/// A fresh, process-wide unique `WatchSet::version`.
pub fn next_watch_version() -> u64 {
    WATCH_VERSIONS.fetch_add(1, Ordering::Relaxed)
}

impl WatchSet {
    /// The addresses of `newer` that `self` lacks, as a set of their own:
    /// what a scan computed with `self` must be redone for.
    pub fn added_in(&self, newer: &WatchSet) -> WatchSet {
        WatchSet {
            version: next_watch_version(),
            generation: newer.generation,
            addresses: newer.addresses.difference(&self.addresses).cloned().collect(),
            hot: newer.hot.difference(&self.hot).cloned().collect(),
        }
    }
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

    /// Watched transfers in the mempool now, and which of the `pending`
    /// transaction ids (earlier mempool transfers) are provably gone; `None`
    /// where the chain has no mempool to watch.
    fn mempool<'a>(
        &'a self,
        _watch: &'a WatchSet,
        _pending: &'a [String],
    ) -> BoxFuture<'a, Result<Option<MempoolView>, ChainError>> {
        Box::pin(async { Ok(None) })
    }

    /// Each endpoint's health, for status and metrics.
    fn endpoints(&self) -> Vec<crate::http::EndpointStatus> {
        Vec::new()
    }

    /// The step failed because the endpoint that answered lacked data
    /// (`ChainError::Unavailable`): prefer the other endpoints for a while.
    fn demote_endpoint(&self, _reason: &str) {}
}

/// For `find_fork` where the backend cannot say whether it knows a block
/// off its best chain.
pub async fn unknown_block_status(_hash: String) -> Result<Option<bool>, ChainError> {
    Ok(None)
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
/// Only evidence proves a fork: a *different* hash at a height, or the
/// backend saying of the cursor's own block that it knows it and it is not
/// on its best chain (`on_best_chain` answers `Some(false)`; a reorg to a
/// shorter chain). A backend that has no block at the cursor's height and
/// does not know the cursor's block is behind (or another node behind a load
/// balancer answered): `Unavailable`, never a rollback.
///
/// Stored hashes may be sparse (EVM scans keep the hashes of range ends and
/// of blocks with transfers): heights without one are skipped. Checking the
/// cursor's hash is enough to notice any reorg at or below it, since every
/// block commits to its parent.
pub async fn find_fork<F, Fut, B, BFut>(
    asset: Asset,
    from: &BlockRef,
    known: KnownHash<'_>,
    node_hash: F,
    on_best_chain: B,
) -> Result<Option<BlockRef>, ChainError>
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Result<Option<String>, ChainError>>,
    B: FnOnce(String) -> BFut,
    BFut: Future<Output = Result<Option<bool>, ChainError>>,
{
    match node_hash(from.height).await? {
        Some(hash) if hash == from.hash => return Ok(None),
        Some(_) => {}
        None => {
            if on_best_chain(from.hash.clone()).await? != Some(false) {
                return Err(ChainError::Behind(format!(
                    "{asset}: it has no block at the scanned height {}",
                    from.height
                )));
            }
        }
    }
    let lowest = from.height.saturating_sub(MAX_FORK_DEPTH);
    let mut height = from.height;
    while height > lowest {
        height -= 1;
        let Some(ours) = known(height) else { continue };
        match node_hash(height).await? {
            Some(theirs) if theirs == ours => {
                tracing::warn!(asset = %asset, fork = height, was = from.height, "reorg detected; rolling back");
                return Ok(Some(BlockRef { height, hash: ours }));
            }
            Some(_) => {}
            // Above the backend's (shorter) best chain: look lower.
            None => {}
        }
    }
    Err(ChainError::Config(format!(
        "{asset}: the backend's block at height {} differs from the one paywatch scanned, and no block in common \
         was found among the hashes kept below it: a reorg deeper than paywatch keeps, or a backend on another \
         chain. The asset is stopped and retried; intents and transfers are kept. Check that the backend is on \
         the configured network and synced; do not delete the state directory",
        from.height
    )))
}
