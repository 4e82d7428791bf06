//! The BTC/LTC chain source, generic over how blocks are fetched (node
//! JSON-RPC or Esplora REST): its identity check, the block walk over raw
//! blocks, and the mempool (`mempool.rs`); matching is in `matching.rs`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bitcoin::{ScriptBuf, Txid};
use chrono::{DateTime, Utc};
use paywatch_state::{Asset, ChainTip, MempoolView};

use super::block::{Outpoint, decode_block, header_link};
use super::matching::{WatchMap, match_decoded, watch_map};
use super::mempool::{SpendsOf, note_spends};
use crate::source::{BoxFuture, ChainSource, ScanBatch, ScanRequest, WatchSet};
use crate::walk::{BlockReader, Linked, walk};
use crate::watch::WatchCache;
use crate::{ChainError, Network};

/// An output of a mempool transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MempoolOutput {
    pub vout: u32,
    pub script: ScriptBuf,
    pub sats: u64,
}

/// A mempool transaction: its outputs, and the outpoints it spends, by
/// which a replacement or double spend is recognised.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MempoolTx {
    pub outputs: Vec<MempoolOutput>,
    pub spends: Vec<Outpoint>,
}

/// Mempool transactions.
pub type MempoolTxs = Vec<(Txid, Arc<MempoolTx>)>;

/// What differs between the node-RPC and Esplora backends.
pub trait UtxoBackend: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Best block height and hash.
    fn tip(&self) -> BoxFuture<'_, Result<(u64, String), ChainError>>;
    /// The hash at `height` on the best chain; `None` above the tip.
    fn block_hash(&self, height: u64) -> BoxFuture<'_, Result<Option<String>, ChainError>>;
    fn raw_block<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<Vec<u8>, ChainError>>;
    /// The block's header time; `None` when the backend does not know it.
    fn block_time<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<Option<DateTime<Utc>>, ChainError>>;
    /// See `ChainSource::endpoints`.
    fn endpoints(&self) -> &crate::http::Endpoints;
    /// Whether the block is on the backend's best chain; `None` when the
    /// backend does not know the block at all.
    fn on_best_chain<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<Option<bool>, ChainError>>;
    /// Mempool transactions with their outputs; at least every one paying a
    /// hot address (a backend may return more, or only part: a listing's
    /// absence proves nothing).
    fn mempool<'a>(&'a self, watch: &'a WatchSet) -> BoxFuture<'a, Result<MempoolTxs, ChainError>>;
    /// Whether the backend knows the transaction (in its mempool, or where it
    /// can look it up, in a block): asked by id, the evidence for "gone".
    fn knows_transaction<'a>(&'a self, txid: &'a str) -> BoxFuture<'a, Result<bool, ChainError>>;
    /// The transaction that spends `outpoint`, where the backend can say (a
    /// conflict proves a replacement or double spend).
    fn spender_of<'a>(&'a self, _outpoint: &'a Outpoint) -> BoxFuture<'a, Result<Option<String>, ChainError>> {
        Box::pin(async { Ok(None) })
    }
}

/// Genesis block hash of the configured chain, to refuse a backend of the
/// wrong chain or network (asked of every backend as its block 0). Litecoin's were read from Litecoin Core 0.21.2.1.
fn genesis(asset: Asset, network: Network) -> String {
    let litecoin = match network {
        Network::Mainnet => "12a765e31ffd4059bada1e25190f6e98c99d9714d334efa41a195a7e7e04bfe2",
        Network::Testnet => "4966625a4b2851d9fdee139e56211a0d88575f59ed816ff5e6a63deb4e3e29a0",
        Network::Regtest => "530827f38f93b43ed12af0b3ad25a288dc02ed74d6d7857862df51fc56c416f9",
    };
    if asset == Asset::Ltc {
        return litecoin.to_string();
    }
    let bitcoin_network = match network {
        Network::Mainnet => bitcoin::Network::Bitcoin,
        Network::Testnet => bitcoin::Network::Testnet,
        Network::Regtest => bitcoin::Network::Regtest,
    };
    bitcoin::constants::genesis_block(bitcoin_network)
        .block_hash()
        .to_string()
}

pub struct UtxoSource<B> {
    pub(super) asset: Asset,
    pub(super) network: Network,
    pub(super) backend: B,
    pub(super) max_blocks_per_poll: u64,
    pub(super) watch_cache: WatchCache<WatchMap>,
    /// Pending txids the backend did not know, since when: one is gone only
    /// once it has stayed unknown for `GONE_AFTER` (reads milliseconds apart
    /// in one round, or a failover to a node that never saw it, prove
    /// nothing).
    pub(super) unknown_since: Mutex<HashMap<String, std::time::Instant>>,
    /// What each transaction paying a watched address spends (seen in the
    /// mempool or in a block): another transaction spending the same
    /// outpoint proves it replaced or double-spent, even after a reorg.
    pub(super) spends_of: Mutex<SpendsOf>,
}

impl<B: UtxoBackend> UtxoSource<B> {
    pub fn new(asset: Asset, network: Network, backend: B, max_blocks_per_poll: u64) -> UtxoSource<B> {
        UtxoSource {
            asset,
            network,
            backend,
            max_blocks_per_poll: max_blocks_per_poll.max(1),
            watch_cache: WatchCache::default(),
            unknown_since: Mutex::new(HashMap::new()),
            spends_of: Mutex::new(SpendsOf::default()),
        }
    }

    pub(super) fn watch_map(&self, watch: &WatchSet) -> Arc<WatchMap> {
        self.watch_cache
            .get(watch, |w| watch_map(self.asset, self.network, &w.addresses))
    }
}

impl<B: UtxoBackend> BlockReader for UtxoSource<B> {
    type Block = Vec<u8>;

    fn asset(&self) -> Asset {
        self.asset
    }

    fn hash_at(&self, height: u64) -> BoxFuture<'_, Result<Option<String>, ChainError>> {
        self.backend.block_hash(height)
    }

    fn on_best_chain<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<Option<bool>, ChainError>> {
        self.backend.on_best_chain(hash)
    }

    fn fetch(&self, height: u64) -> BoxFuture<'_, Result<Option<Linked<Vec<u8>>>, ChainError>> {
        Box::pin(async move {
            let Some(hash) = self.backend.block_hash(height).await? else {
                return Ok(None);
            };
            let bytes = self.backend.raw_block(&hash).await?;
            let garbage = |why| ChainError::garbage(format!("block {hash}"), why);
            let (own, parent) = header_link(&bytes).ok_or_else(|| garbage("shorter than a header"))?;
            if own.to_string() != hash {
                return Err(garbage("its bytes hash to another block"));
            }
            Ok(Some(Linked {
                parent: parent.to_string(),
                hash,
                block: bytes,
            }))
        })
    }
}

impl<B: UtxoBackend> ChainSource for UtxoSource<B> {
    fn backend(&self) -> &'static str {
        self.backend.name()
    }

    fn preflight(&self) -> BoxFuture<'_, Result<(), ChainError>> {
        Box::pin(async move {
            let found = self.backend.block_hash(0).await?.unwrap_or_default();
            if found != genesis(self.asset, self.network) {
                return Err(ChainError::WrongChain(format!(
                    "the {} backend serves another chain (genesis {found}), not {} {}",
                    self.backend.name(),
                    self.asset,
                    self.network
                )));
            }
            Ok(())
        })
    }

    fn tip(&self) -> BoxFuture<'_, Result<ChainTip, ChainError>> {
        Box::pin(async move {
            let (height, hash) = self.backend.tip().await?;
            Ok(ChainTip {
                height,
                hash,
                finalized: None,
            })
        })
    }

    fn tip_time<'a>(&'a self, tip: &'a ChainTip) -> BoxFuture<'a, Result<Option<DateTime<Utc>>, ChainError>> {
        self.backend.block_time(&tip.hash)
    }

    fn scan<'a>(&'a self, req: ScanRequest<'a>) -> BoxFuture<'a, Result<ScanBatch, ChainError>> {
        Box::pin(async move {
            let watch = self.watch_map(req.watch);
            walk(self, req, self.max_blocks_per_poll, |here, bytes| {
                let block = decode_block(&bytes).map_err(|e| ChainError::garbage(format!("block {}", here.hash), e))?;
                let (found, paying) = match_decoded(self.asset, &block, here, &watch)?;
                note_spends(
                    &block,
                    &paying,
                    &mut self.spends_of.lock().unwrap_or_else(|p| p.into_inner()),
                );
                Ok(found)
            })
            .await
        })
    }

    fn mempool<'a>(
        &'a self,
        watch: &'a WatchSet,
        pending: &'a [String],
    ) -> BoxFuture<'a, Result<Option<MempoolView>, ChainError>> {
        Box::pin(async move { Ok(Some(self.read_mempool(watch, pending).await?)) })
    }

    fn endpoints(&self) -> &crate::http::Endpoints {
        self.backend.endpoints()
    }
}
