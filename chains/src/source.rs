//! The `ChainSource` trait: what every backend (core-rpc, esplora, rippled,
//! evm, tron-http) provides. Data in, data out: a source gets a
//! `ScanRequest` and returns a `ScanBatch`; the daemon applies it.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use paywatch_state::{BlockRef, ChainTip, MempoolView, Observation};

use crate::ChainError;
pub use crate::watch::WatchSet;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The block hashes paywatch stored at and below its cursor (sparse where a
/// source keeps only some), by height: what a source compares with its
/// backend's to find where a reorg forked.
pub type RecentBlocks = BTreeMap<u64, String>;

/// One step of a scan, as plain data: blocks after `from` up to at most
/// `to`, looking for `watch`, with the stored hashes below `from` for fork
/// checks. The source answers with a `ScanBatch` (or an error); it never
/// reads or writes paywatch's state.
#[derive(Clone, Copy)]
pub struct ScanRequest<'a> {
    pub from: &'a BlockRef,
    pub to: u64,
    pub watch: &'a WatchSet,
    pub known: &'a RecentBlocks,
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

    /// The chain-identity check, made before the first scan: the backend
    /// serves the configured chain and network (genesis, chain id, network
    /// id) and, for tokens, the configured contract with its decimals. A
    /// `ChainError::Config` here stops the start.
    fn preflight(&self) -> BoxFuture<'_, Result<(), ChainError>>;

    /// Operator warnings about the setup (e.g. an XRP account without
    /// `RequireDest`), shown in `/v1/status`.
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }

    /// The node's best block and, where the chain has one, its finality mark.
    fn tip(&self) -> BoxFuture<'_, Result<ChainTip, ChainError>>;

    /// When `tip` was made (its block's or ledger's own time), so that a
    /// node still syncing, or stuck, shows as behind the world and not only
    /// behind other endpoints (`paywatch doctor`). `None` when the node does
    /// not hold the block (another endpoint answered the tip).
    fn tip_time<'a>(&'a self, tip: &'a ChainTip) -> BoxFuture<'a, Result<Option<DateTime<Utc>>, ChainError>>;

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

    /// The backend's endpoints: their health for status and metrics, and
    /// the one to leave alone for a while after it answered without data it
    /// should have had (`ChainError::Behind`).
    fn endpoints(&self) -> &crate::http::Endpoints;
}
