//! The one block walk every block-based source (BTC/LTC, Tron) uses, and the
//! fork search every source with stored block hashes (those and EVM) uses.
//!
//! A walk step: find whether the cursor's block left the backend's best
//! chain (and where the chains meet again), then fetch the next blocks a few
//! ahead while taking them strictly in order, each one's parent checked
//! against the block before it. A parent that does not link stops the step
//! where it is: the chain changed between calls, and the next step finds the
//! fork. The cursor never passes a block that was not read.

use std::future::Future;

use futures_util::StreamExt;
use paywatch_state::{Asset, BlockRef, Observation};

use crate::ChainError;
use crate::source::{BoxFuture, RecentBlocks, ScanBatch, ScanRequest};

/// Blocks fetched ahead of the one being taken: a node's answers carry a
/// fixed latency that concurrency hides.
const PREFETCH_BLOCKS: usize = 4;

/// How far below the cursor a fork point is looked for.
const MAX_FORK_DEPTH: u64 = 10_000;

/// A fetched block with its own hash and its parent's, as the backend
/// served them (verified against the block's content where it has one).
pub struct Linked<B> {
    pub hash: String,
    pub parent: String,
    pub block: B,
}

/// What a block-based backend serves the walk.
pub trait BlockReader: Send + Sync {
    /// A block as fetched, before its transfers are read.
    type Block: Send;

    fn asset(&self) -> Asset;

    /// The hash of the best-chain block at `height`; `None` above the tip.
    fn hash_at(&self, height: u64) -> BoxFuture<'_, Result<Option<String>, ChainError>>;

    /// Whether the backend knows the block and it is on its best chain;
    /// `None` when it cannot tell (see `find_fork`).
    fn on_best_chain<'a>(&'a self, _hash: &'a str) -> BoxFuture<'a, Result<Option<bool>, ChainError>> {
        Box::pin(async { Ok(None) })
    }

    /// The best-chain block at `height`; `None` above the tip.
    fn fetch(&self, height: u64) -> BoxFuture<'_, Result<Option<Linked<Self::Block>>, ChainError>>;
}

/// One walk step over `req`, at most `max_blocks_per_poll` blocks past the cursor (or
/// the fork point): `read` turns each block, in order, into its watched
/// transfers.
pub async fn walk<R: BlockReader>(
    reader: &R,
    req: ScanRequest<'_>,
    max_blocks_per_poll: u64,
    mut read: impl FnMut(&BlockRef, R::Block) -> Result<Vec<Observation>, ChainError>,
) -> Result<ScanBatch, ChainError> {
    let fork = find_fork(
        reader.asset(),
        req.from,
        req.known,
        |height| reader.hash_at(height),
        |hash| async move { reader.on_best_chain(&hash).await },
    )
    .await?;
    let mut batch = ScanBatch {
        rollback_to: fork.as_ref().map(|f| f.height),
        ..ScanBatch::default()
    };
    let mut prev = fork.unwrap_or_else(|| req.from.clone());
    let last = req.to.min(prev.height + max_blocks_per_poll.max(1));
    let mut fetches = futures_util::stream::iter(prev.height + 1..=last)
        .map(|height| reader.fetch(height))
        .buffered(PREFETCH_BLOCKS);
    let mut height = prev.height;
    while let Some(fetched) = fetches.next().await {
        let Some(linked) = fetched? else { break };
        if linked.parent != prev.hash {
            break;
        }
        height += 1;
        let here = BlockRef {
            height,
            hash: linked.hash,
        };
        batch.observations.extend(read(&here, linked.block)?);
        batch.blocks.push(here.clone());
        prev = here;
    }
    batch.cursor = Some(prev);
    Ok(batch)
}

/// For `find_fork` where the backend cannot say whether it knows a block
/// off its best chain.
pub async fn unknown_block_status(_hash: String) -> Result<Option<bool>, ChainError> {
    Ok(None)
}

/// The last block both the backend and paywatch agree on, when `from` has
/// left the backend's best chain; `None` while it is still on it.
///
/// Only evidence proves a fork: a *different* hash at a height, or the
/// backend saying of the cursor's own block that it knows it and it is not
/// on its best chain (`on_best_chain` answers `Some(false)`; a reorg to a
/// shorter chain). A backend that has no block at the cursor's height and
/// does not know the cursor's block is behind (or another node behind a load
/// balancer answered): `Behind`, never a rollback.
///
/// Stored hashes may be sparse (EVM scans keep the hashes of range ends and
/// of blocks with transfers): heights without one are skipped. Checking the
/// cursor's hash is enough to notice any reorg at or below it, since every
/// block commits to its parent.
pub async fn find_fork<F, Fut, B, BFut>(
    asset: Asset,
    from: &BlockRef,
    known: &RecentBlocks,
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
    for (&height, ours) in known.range(lowest..from.height).rev() {
        match node_hash(height).await? {
            Some(theirs) if theirs == *ours => {
                tracing::warn!(asset = %asset, fork = height, was = from.height, "reorg detected; rolling back");
                return Ok(Some(BlockRef {
                    height,
                    hash: ours.clone(),
                }));
            }
            // A different block, or above the backend's (shorter) best
            // chain: look lower.
            Some(_) | None => {}
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
