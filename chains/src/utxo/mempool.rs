//! Reading the mempool: watched transfers in it, and the evidence that a
//! pending transfer is gone (another transaction spends its inputs, or the
//! backend asked by id has not known it for `GONE_AFTER`). A listing's
//! absence alone proves nothing.

use std::collections::HashMap;

use paywatch_state::MempoolView;

use super::block::{Outpoint, RawBlock};
use super::matching::collect_matches;
use super::source::{UtxoBackend, UtxoSource};
use crate::ChainError;
use crate::source::WatchSet;

/// How long a pending transaction must stay unknown to the backend, with no
/// conflicting spend seen, before it is reported gone (evicted): long enough
/// that a failover to a node that never saw it, or a node reloading its
/// mempool, does not revert a payment that is still on its way.
const GONE_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

/// Most transactions whose inputs are remembered (a few hundred bytes each).
const SPENDS_KEPT: usize = 50_000;

/// The inputs of transactions that paid watched addresses, oldest forgotten
/// first.
#[derive(Default)]
pub(super) struct SpendsOf {
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
pub(super) fn note_spends(block: &RawBlock<'_>, paying: &[usize], spends: &mut SpendsOf) {
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

    /// Watched transfers in the mempool, and which `pending` transactions
    /// are proven gone.
    pub(super) async fn read_mempool(&self, watch: &WatchSet, pending: &[String]) -> Result<MempoolView, ChainError> {
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
        Ok(MempoolView { transfers: found, gone })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use bitcoin::{ScriptBuf, Txid};
    use paywatch_state::Asset;

    use super::*;
    use crate::Network;
    use crate::source::{BoxFuture, ChainSource};
    use crate::utxo::source::{MempoolOutput, MempoolTx, MempoolTxs};

    /// A backend whose mempool is whatever the test set, that knows no
    /// transaction by id and cannot name spenders: only the listing itself
    /// can prove a replacement.
    struct ListingOnly {
        listing: Mutex<MempoolTxs>,
        endpoints: crate::http::Endpoints,
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
        fn block_time<'a>(
            &'a self,
            _hash: &'a str,
        ) -> BoxFuture<'a, Result<Option<chrono::DateTime<chrono::Utc>>, ChainError>> {
            Box::pin(async { Ok(None) })
        }
        fn endpoints(&self) -> &crate::http::Endpoints {
            &self.endpoints
        }
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
            endpoints: crate::http::Endpoints::new(
                vec!["http://127.0.0.1:1".into()],
                std::time::Duration::from_secs(1),
            )
            .expect("endpoints"),
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
}
