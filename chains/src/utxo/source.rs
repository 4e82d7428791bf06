//! The BTC/LTC chain source, generic over how blocks are fetched (node
//! JSON-RPC or Esplora REST): the scan in order, reorg detection by block
//! hash, and matching watched scripts in raw blocks and the mempool.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bitcoin::{Script, ScriptBuf, Txid};
use paywatch_state::amount::from_base_units;
use paywatch_state::{Asset, BlockRef, ChainTip, MempoolView, Observation};

use super::address::{UtxoAddress, parse_btc, parse_ltc};
use super::block::{Outpoint, RawBlock, decode_block, header_link};
use crate::address::AddressError;
use crate::source::{BoxFuture, ChainSource, ScanBatch, ScanRequest, WatchSet};
use crate::walk::{BlockReader, Linked, walk};
use crate::watch::WatchCache;
use crate::{ChainError, Network};

/// How long a pending transaction must stay unknown to the backend, with no
/// conflicting spend seen, before it is reported gone (evicted): long enough
/// that a failover to a node that never saw it, or a node reloading its
/// mempool, does not revert a payment that is still on its way.
const GONE_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

/// Scripts watched, mapped to their canonical address text.
pub type WatchMap = HashMap<ScriptBuf, String>;

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
    /// Best block height and hash; checks the backend serves `network`.
    fn tip(&self) -> BoxFuture<'_, Result<(u64, String), ChainError>>;
    /// The hash at `height` on the best chain; `None` above the tip.
    fn block_hash(&self, height: u64) -> BoxFuture<'_, Result<Option<String>, ChainError>>;
    fn raw_block<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<Vec<u8>, ChainError>>;
    /// Each endpoint's health.
    fn endpoints(&self) -> Vec<crate::http::EndpointStatus>;
    /// See `ChainSource::demote_endpoint`.
    fn demote_endpoint(&self, reason: &str);
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

/// Parses a BTC or LTC address for `network`.
pub fn parse_utxo_address(asset: Asset, network: Network, text: &str) -> Result<UtxoAddress, AddressError> {
    match asset {
        Asset::Ltc => parse_ltc(network, text),
        _ => parse_btc(network, text),
    }
}

/// Builds the script -> address map for a set of canonical addresses.
pub fn watch_map(asset: Asset, network: Network, addresses: impl IntoIterator<Item = impl AsRef<str>>) -> WatchMap {
    addresses
        .into_iter()
        .filter_map(|a| parse_utxo_address(asset, network, a.as_ref()).ok())
        .map(|a| (a.script, a.canonical))
        .collect()
}

pub struct UtxoSource<B> {
    asset: Asset,
    network: Network,
    backend: B,
    max_blocks_per_poll: u64,
    watch_cache: WatchCache<WatchMap>,
    /// Pending txids the backend did not know, since when: one is gone only
    /// once it has stayed unknown for `GONE_AFTER` (reads milliseconds apart
    /// in one round, or a failover to a node that never saw it, prove
    /// nothing).
    unknown_since: Mutex<HashMap<String, std::time::Instant>>,
    /// What each transaction paying a watched address spends (seen in the
    /// mempool or in a block): another transaction spending the same
    /// outpoint proves it replaced or double-spent, even after a reorg.
    spends_of: Mutex<SpendsOf>,
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

    fn watch_map(&self, watch: &WatchSet) -> Arc<WatchMap> {
        self.watch_cache
            .get(watch, |w| watch_map(self.asset, self.network, &w.addresses))
    }
}

/// Most transactions whose inputs are remembered (a few hundred bytes each).
const SPENDS_KEPT: usize = 50_000;

/// The inputs of transactions that paid watched addresses, oldest forgotten
/// first.
#[derive(Default)]
struct SpendsOf {
    by_txid: HashMap<String, Vec<Outpoint>>,
    /// Outpoint -> the remembered transaction spending it.
    by_outpoint: HashMap<Outpoint, String>,
    order: std::collections::VecDeque<String>,
    /// Remembered transactions whose inputs another transaction spent in a
    /// scanned block: proof they are gone, unless seen since.
    conflicted: std::collections::HashSet<String>,
}

impl SpendsOf {
    fn remember(&mut self, txid: String, spends: Vec<Outpoint>) {
        for outpoint in &spends {
            self.by_outpoint.insert(*outpoint, txid.clone());
        }
        if self.by_txid.insert(txid.clone(), spends).is_none() {
            self.order.push_back(txid);
        }
        while self.order.len() > SPENDS_KEPT {
            if let Some(old) = self.order.pop_front() {
                for outpoint in self.by_txid.remove(&old).into_iter().flatten() {
                    // Only if still ours: a replacement may own it now.
                    if self.by_outpoint.get(&outpoint) == Some(&old) {
                        self.by_outpoint.remove(&outpoint);
                    }
                }
                self.conflicted.remove(&old);
            }
        }
    }

    /// The remembered transaction, other than `spender`, whose input
    /// `outpoint` is: the one `spender` replaces or double-spends.
    fn conflict_of(&self, spender: &str, outpoint: &Outpoint) -> Option<&String> {
        self.by_outpoint.get(outpoint).filter(|owner| *owner != spender)
    }

    /// Notes an input a mined transaction spends: a remembered transaction
    /// whose input another one spent in the chain is conflicted for good.
    fn saw_spend(&mut self, spender: &str, outpoint: &Outpoint) {
        if let Some(owner) = self.conflict_of(spender, outpoint).cloned() {
            self.conflicted.insert(owner);
        }
    }
}

/// Remembers the inputs of this block's transactions that paid watched
/// addresses (`paying`, by index), and notes remembered transactions whose
/// inputs another of its transactions spends (double-spent or replaced in
/// the chain). Only those transactions' ids are hashed.
fn note_spends(block: &RawBlock<'_>, paying: &[usize], spends: &mut SpendsOf) {
    for tx in &block.txs {
        if spends.by_outpoint.is_empty() {
            break;
        }
        let hits: Vec<Outpoint> = tx
            .spends()
            .into_iter()
            .filter(|o| spends.by_outpoint.contains_key(o))
            .collect();
        if hits.is_empty() {
            continue;
        }
        let txid = tx.txid().to_string();
        for outpoint in &hits {
            spends.saw_spend(&txid, outpoint);
        }
    }
    // Mined here: remembered with their inputs, and no longer in doubt.
    for tx in paying.iter().filter_map(|&i| block.txs.get(i)) {
        let txid = tx.txid().to_string();
        spends.conflicted.remove(&txid);
        spends.remember(txid, tx.spends());
    }
}

/// Groups the watched outputs of one transaction per script (several outputs
/// to one address are one transfer, keyed by the first output index).
fn collect_matches<'s>(
    asset: Asset,
    txid: impl FnOnce() -> Txid,
    maturity: u32,
    outputs: impl Iterator<Item = (u32, u64, &'s [u8])>,
    watch: &WatchMap,
    block: Option<&BlockRef>,
    out: &mut Vec<Observation>,
) -> Result<(), ChainError> {
    let mut hits: Vec<(u32, &String, u64)> = Vec::new();
    for (vout, sats, script) in outputs {
        if let Some(address) = watch.get(Script::from_bytes(script)) {
            match hits.iter_mut().find(|(_, a, _)| *a == address) {
                Some(hit) => hit.2 = hit.2.saturating_add(sats),
                None => hits.push((vout, address, sats)),
            }
        }
    }
    if hits.is_empty() {
        return Ok(());
    }
    let txid = txid().to_string();
    for (vout, address, sats) in hits {
        out.push(Observation {
            txid: txid.clone(),
            index: vout,
            address: address.clone(),
            tag: None,
            amount: from_base_units(asset, u128::from(sats)).map_err(|e| ChainError::garbage("output value", e))?,
            block: block.cloned(),
            maturity,
        });
    }
    Ok(())
}

/// Every watched transfer in one raw block (the hot path of a scan).
pub fn match_block(
    asset: Asset,
    bytes: &[u8],
    here: &BlockRef,
    watch: &WatchMap,
) -> Result<Vec<Observation>, ChainError> {
    let block = decode_block(bytes).map_err(|e| ChainError::garbage(format!("block {}", here.hash), e))?;
    Ok(match_decoded(asset, &block, here, watch)?.0)
}

/// `match_block` over a decoded block; also the indices of the transactions
/// that paid a watched address.
fn match_decoded(
    asset: Asset,
    block: &RawBlock<'_>,
    here: &BlockRef,
    watch: &WatchMap,
) -> Result<(Vec<Observation>, Vec<usize>), ChainError> {
    let mut found = Vec::new();
    let mut paying = Vec::new();
    for (i, tx) in block.txs.iter().enumerate() {
        let before = found.len();
        collect_matches(
            asset,
            || tx.txid(),
            block.maturity(i),
            tx.outputs(),
            watch,
            Some(here),
            &mut found,
        )?;
        if found.len() > before {
            paying.push(i);
        }
    }
    Ok((found, paying))
}

/// What a pending transaction missing from a mempool listing is.
enum Unlisted {
    /// Proven gone: another transaction spends its inputs.
    Gone,
    /// The backend knows it (a partial listing, or it arrived meanwhile).
    Known,
    /// The backend does not know it, and no conflict is seen.
    Unknown,
}

impl<B: UtxoBackend> UtxoSource<B> {
    /// Judges one pending transaction the listing left out: `conflicted`
    /// when a listed or mined transaction was seen spending its inputs.
    async fn judge_unlisted(&self, txid: &str, inputs: &[Outpoint], conflicted: bool) -> Result<Unlisted, ChainError> {
        if conflicted {
            return Ok(Unlisted::Gone);
        }
        if self.backend.knows_transaction(txid).await? {
            return Ok(Unlisted::Known);
        }
        // Unknown: another spender of its inputs, where the backend can name
        // one, is proof at once (a replacement paying elsewhere), once it is
        // asked again by id (one that arrived meanwhile, or that another node
        // answered for the first time, is its own spender).
        for outpoint in inputs {
            if self.backend.spender_of(outpoint).await?.is_some_and(|s| s != txid) {
                return Ok(if self.backend.knows_transaction(txid).await? {
                    Unlisted::Known
                } else {
                    Unlisted::Gone
                });
            }
        }
        Ok(Unlisted::Unknown)
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
        Box::pin(async move {
            let map = self.watch_map(watch);
            let txs = self.backend.mempool(watch).await?;
            let mut found = Vec::new();
            let mut listed = std::collections::HashSet::new();
            let (spends_of, conflicted) = {
                let mut all = self.spends_of.lock().unwrap_or_else(|p| p.into_inner());
                // A listed transaction spending a remembered one's input
                // replaced or double-spent it: this read's evidence, judged
                // before the listed ones are remembered (a replacement paying
                // us takes over the inputs it shares).
                let mut conflicted = all.conflicted.clone();
                for (txid, tx) in &txs {
                    let txid_text = txid.to_string();
                    conflicted.extend(tx.spends.iter().filter_map(|o| all.conflict_of(&txid_text, o)).cloned());
                }
                for (txid, tx) in &txs {
                    let txid_text = txid.to_string();
                    let outs = tx.outputs.iter().map(|o| (o.vout, o.sats, o.script.as_bytes()));
                    let before = found.len();
                    collect_matches(self.asset, || *txid, 0, outs, &map, None, &mut found)?;
                    if found.len() > before {
                        all.remember(txid_text.clone(), tx.spends.clone());
                    }
                    listed.insert(txid_text);
                }
                // Listed: in the mempool, whatever a block said before.
                for txid in &listed {
                    all.conflicted.remove(txid);
                }
                let spends_of: HashMap<String, Vec<Outpoint>> = pending
                    .iter()
                    .filter_map(|t| all.by_txid.get(t).map(|s| (t.clone(), s.clone())))
                    .collect();
                (spends_of, conflicted)
            };
            // Unlisted is not gone (a listing may be partial). Gone is:
            // another transaction spends its inputs, or the backend, asked by
            // id, has not known it for `GONE_AFTER`.
            let since = self.unknown_since.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let mut gone = Vec::new();
            let mut unknown = HashMap::new();
            for txid in pending.iter().filter(|t| !listed.contains(t.as_str())) {
                let inputs = spends_of.get(txid).map(Vec::as_slice).unwrap_or_default();
                match self.judge_unlisted(txid, inputs, conflicted.contains(txid)).await? {
                    Unlisted::Gone => gone.push(txid.clone()),
                    Unlisted::Known => {}
                    Unlisted::Unknown => {
                        let first = since.get(txid).copied().unwrap_or_else(std::time::Instant::now);
                        if first.elapsed() >= GONE_AFTER {
                            gone.push(txid.clone());
                        }
                        unknown.insert(txid.clone(), first);
                    }
                }
            }
            // A read that judged nothing (a redo's, for new addresses only)
            // leaves the clocks running.
            if !pending.is_empty() {
                *self.unknown_since.lock().unwrap_or_else(|p| p.into_inner()) = unknown;
            }
            Ok(Some(MempoolView { transfers: found, gone }))
        })
    }

    fn endpoints(&self) -> Vec<crate::http::EndpointStatus> {
        self.backend.endpoints()
    }

    fn demote_endpoint(&self, reason: &str) {
        self.backend.demote_endpoint(reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backend whose mempool is whatever the test set, that knows no
    /// transaction by id and cannot name spenders: only the listing itself
    /// can prove a replacement.
    struct ListingOnly {
        listing: Mutex<MempoolTxs>,
    }

    impl UtxoBackend for ListingOnly {
        fn name(&self) -> &'static str {
            "listing-only"
        }
        fn tip(&self) -> BoxFuture<'_, Result<(u64, String), ChainError>> {
            Box::pin(async { Err(ChainError::Config("unused".into())) })
        }
        fn block_hash(&self, _height: u64) -> BoxFuture<'_, Result<Option<String>, ChainError>> {
            Box::pin(async { Ok(None) })
        }
        fn raw_block<'a>(&'a self, _hash: &'a str) -> BoxFuture<'a, Result<Vec<u8>, ChainError>> {
            Box::pin(async { Err(ChainError::Config("unused".into())) })
        }
        fn endpoints(&self) -> Vec<crate::http::EndpointStatus> {
            Vec::new()
        }
        fn demote_endpoint(&self, _reason: &str) {}
        fn on_best_chain<'a>(&'a self, _hash: &'a str) -> BoxFuture<'a, Result<Option<bool>, ChainError>> {
            Box::pin(async { Ok(None) })
        }
        fn mempool<'a>(&'a self, _watch: &'a WatchSet) -> BoxFuture<'a, Result<MempoolTxs, ChainError>> {
            Box::pin(async { Ok(self.listing.lock().unwrap_or_else(|p| p.into_inner()).clone()) })
        }
        fn knows_transaction<'a>(&'a self, _txid: &'a str) -> BoxFuture<'a, Result<bool, ChainError>> {
            Box::pin(async { Ok(false) })
        }
    }

    #[tokio::test]
    async fn a_listed_replacement_that_pays_us_too_proves_the_original_gone_at_once() {
        use bitcoin::hashes::Hash;
        let program = bitcoin::WitnessProgram::new(bitcoin::WitnessVersion::V0, &[9u8; 20]).expect("program");
        let script = ScriptBuf::new_witness_program(&program);
        let address = super::super::address::script_address(Asset::Ltc, Network::Regtest, &script).expect("an address");
        let paying = |sats, input: u8| {
            Arc::new(MempoolTx {
                outputs: vec![MempoolOutput {
                    vout: 0,
                    script: script.clone(),
                    sats,
                }],
                spends: vec![[input; 36]],
            })
        };
        let (a, b) = (Txid::from_byte_array([1; 32]), Txid::from_byte_array([2; 32]));
        let backend = ListingOnly {
            listing: Mutex::new(vec![(a, paying(50_000, 7))]),
        };
        let source = UtxoSource::new(Asset::Ltc, Network::Regtest, backend, 10);
        let watch = WatchSet {
            version: crate::watch::next_watch_version(),
            addresses: [address.clone()].into(),
            hot: [address].into(),
            ..WatchSet::default()
        };
        let first = source.mempool(&watch, &[]).await.expect("read").expect("view");
        assert_eq!(first.transfers.len(), 1);
        // A fee bump: B spends A's input and pays the same address.
        *source.backend.listing.lock().unwrap_or_else(|p| p.into_inner()) = vec![(b, paying(49_000, 7))];
        let second = source
            .mempool(&watch, &[a.to_string()])
            .await
            .expect("read")
            .expect("view");
        assert_eq!(
            second.gone,
            [a.to_string()],
            "A is replaced, proven by the listing alone"
        );
        assert_eq!(second.transfers[0].txid, b.to_string());
        // A later read without B lists nothing: no conflict is left over.
        *source.backend.listing.lock().unwrap_or_else(|p| p.into_inner()) = vec![];
        let third = source
            .mempool(&watch, &[a.to_string()])
            .await
            .expect("read")
            .expect("view");
        assert!(third.gone.is_empty(), "a mempool conflict counts for its read only");
    }

    #[test]
    fn several_outputs_to_one_address_are_one_transfer() {
        use bitcoin::hashes::Hash;
        let program = bitcoin::WitnessProgram::new(bitcoin::WitnessVersion::V0, &[7u8; 20]).expect("program");
        let watched = ScriptBuf::new_witness_program(&program);
        let other = ScriptBuf::new_p2sh(&bitcoin::ScriptHash::all_zeros());
        let watch: WatchMap = [(watched.clone(), "rltc1q-watched".to_string())].into_iter().collect();
        let outputs = [
            (0u32, 5u64, other.as_bytes()),
            (1, 100_000, watched.as_bytes()),
            (2, 23, watched.as_bytes()),
        ];
        let mut out = Vec::new();
        collect_matches(
            Asset::Ltc,
            Txid::all_zeros,
            0,
            outputs.into_iter(),
            &watch,
            None,
            &mut out,
        )
        .expect("collect");
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].index, out[0].amount.to_string()), (1, "0.00100023".to_string()));
        assert_eq!(out[0].address, "rltc1q-watched");
    }

    #[test]
    fn peg_out_in_a_recorded_block_is_found_with_its_maturity() {
        let path = format!("{}/testdata/ltc_regtest_mweb_block3.hex", env!("CARGO_MANIFEST_DIR"));
        let bytes = hex::decode(std::fs::read_to_string(path).expect("fixture").trim()).expect("hex");
        // The peg-out went to this regtest address (see testdata/README.md).
        let address = "rltc1qyl4mea0knx3ac9pcvgn6cxy40s63lf8hgpdekv";
        let watch = watch_map(Asset::Ltc, Network::Regtest, [address]);
        let block = decode_block(&bytes).expect("decodes");
        let here = BlockRef {
            height: 437,
            hash: block.hash().to_string(),
        };
        let found = match_block(Asset::Ltc, &bytes, &here, &watch).expect("matches");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].amount.to_string(), "0.70000000");
        assert_eq!(found[0].maturity, super::super::block::PEGOUT_MATURITY);
        assert_eq!(found[0].txid, block.txs.last().expect("hogex").txid().to_string());
    }
}
