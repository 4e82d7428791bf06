//! The `core-rpc` backend: Bitcoin Core / Litecoin Core JSON-RPC. Raw blocks
//! by height (`getblockhash`, `getblock HASH 0`) and the whole mempool
//! (`getrawmempool`, then `getrawtransaction` for transactions not seen
//! before).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use bitcoin::{ScriptBuf, Txid};
use serde::Deserialize;
use serde_json::json;

use super::block::{Outpoint, decode_mempool_tx, outpoint_parts};
use super::source::{MempoolOutput, MempoolTx, MempoolTxs, UtxoBackend};
use crate::ChainError;
use crate::rpc::RpcClient;
use crate::source::{BoxFuture, WatchSet};

pub struct CoreRpc {
    rpc: RpcClient,
    /// Outputs of every mempool transaction seen, so each poll only fetches
    /// the new ones.
    mempool_cache: Mutex<HashMap<Txid, Arc<MempoolTx>>>,
}

#[derive(Deserialize)]
struct BlockchainInfo {
    blocks: u64,
    bestblockhash: String,
}

impl CoreRpc {
    pub fn new(rpc: RpcClient) -> CoreRpc {
        CoreRpc {
            rpc,
            mempool_cache: Mutex::new(HashMap::new()),
        }
    }
}

impl UtxoBackend for CoreRpc {
    fn name(&self) -> &'static str {
        "core-rpc"
    }

    fn tip(&self) -> BoxFuture<'_, Result<(u64, String), ChainError>> {
        Box::pin(async move {
            let info: BlockchainInfo = self.rpc.call("getblockchaininfo", json!([])).await?;
            self.rpc.endpoints().note_height(info.blocks);
            Ok((info.blocks, info.bestblockhash))
        })
    }

    fn block_hash(&self, height: u64) -> BoxFuture<'_, Result<Option<String>, ChainError>> {
        Box::pin(async move {
            match self.rpc.call::<String>("getblockhash", json!([height])).await {
                Ok(h) => Ok(Some(h)),
                Err(ChainError::Rpc { code: -8, .. }) => Ok(None), // above the tip
                Err(e) => Err(e),
            }
        })
    }

    fn raw_block<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<Vec<u8>, ChainError>> {
        Box::pin(async move {
            let hex_text: String = self.rpc.call("getblock", json!([hash, 0])).await?;
            hex::decode(hex_text.trim()).map_err(|e| ChainError::garbage("getblock", e))
        })
    }

    fn block_time<'a>(
        &'a self,
        hash: &'a str,
    ) -> BoxFuture<'a, Result<Option<chrono::DateTime<chrono::Utc>>, ChainError>> {
        Box::pin(async move {
            match self.rpc.call_raw("getblockheader", json!([hash, true])).await {
                Ok(header) => {
                    let seconds = header["time"]
                        .as_i64()
                        .ok_or_else(|| ChainError::garbage("getblockheader", "no time"))?;
                    Ok(chrono::DateTime::from_timestamp(seconds, 0))
                }
                Err(ChainError::Rpc { code: -5, .. }) => Ok(None), // not on this node
                Err(e) => Err(e),
            }
        })
    }

    fn endpoints(&self) -> &crate::http::Endpoints {
        self.rpc.endpoints()
    }

    fn on_best_chain<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<Option<bool>, ChainError>> {
        Box::pin(async move {
            // A node still syncing (headers ahead of blocks) reports headers
            // it has not validated as off its best chain: it cannot tell.
            let info = self.rpc.call_raw("getblockchaininfo", json!([])).await?;
            if info["headers"].as_u64() != info["blocks"].as_u64()
                || info["initialblockdownload"].as_bool() == Some(true)
            {
                return Ok(None);
            }
            match self.rpc.call_raw("getblockheader", json!([hash, true])).await {
                // Core: confirmations -1 for a block off the best chain.
                Ok(header) => Ok(Some(header["confirmations"].as_i64().unwrap_or(-1) >= 0)),
                Err(ChainError::Rpc { code: -5, .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    fn spender_of<'a>(&'a self, spent: &'a Outpoint) -> BoxFuture<'a, Result<Option<String>, ChainError>> {
        Box::pin(async move {
            let (txid, vout) = outpoint_parts(spent);
            // Unspent in the chain but spent counting the mempool: a mempool
            // transaction spends it, and ours is not in the mempool, so it is
            // another. Any other null (spent in a block, unknown to this
            // node) proves nothing here; blocks are checked as scanned.
            let in_chain = self.rpc.call_raw("gettxout", json!([txid, vout, false])).await?;
            if in_chain.is_null() {
                return Ok(None);
            }
            let with_mempool = self.rpc.call_raw("gettxout", json!([txid, vout, true])).await?;
            Ok(with_mempool.is_null().then(|| "a mempool transaction".to_string()))
        })
    }

    fn knows_transaction<'a>(&'a self, txid: &'a str) -> BoxFuture<'a, Result<bool, ChainError>> {
        Box::pin(async move {
            // The mempool only: `getrawtransaction` would also find, with
            // -txindex, a transaction of a block that left the chain. One
            // mined meanwhile is in the blocks this update reads next.
            // A node still loading its mempool after a restart cannot say.
            let info = self.rpc.call_raw("getmempoolinfo", json!([])).await?;
            if info["loaded"].as_bool() == Some(false) {
                return Ok(true);
            }
            match self.rpc.call_raw("getmempoolentry", json!([txid])).await {
                Ok(_) => Ok(true),
                Err(ChainError::Rpc { code: -5, .. }) => Ok(false),
                Err(e) => Err(e),
            }
        })
    }

    fn mempool<'a>(&'a self, _watch: &'a WatchSet) -> BoxFuture<'a, Result<MempoolTxs, ChainError>> {
        Box::pin(async move {
            let txids: Vec<String> = self.rpc.call("getrawmempool", json!([])).await?;
            let current: HashSet<Txid> = txids.iter().filter_map(|t| t.parse().ok()).collect();
            let known: HashSet<Txid> = {
                let mut cache = self.mempool_cache.lock().unwrap_or_else(|p| p.into_inner());
                cache.retain(|txid, _| current.contains(txid));
                cache.keys().copied().collect()
            };
            for txid in current.difference(&known) {
                let hex_text: String = match self
                    .rpc
                    .call("getrawtransaction", json!([txid.to_string(), false]))
                    .await
                {
                    Ok(h) => h,
                    Err(ChainError::Rpc { code: -5, .. }) => continue, // left the mempool meanwhile
                    Err(e) => return Err(e),
                };
                let bytes = hex::decode(hex_text.trim()).map_err(|e| ChainError::garbage("getrawtransaction", e))?;
                let tx = decode_mempool_tx(&bytes)
                    .map_err(|e| ChainError::garbage(format!("mempool transaction {txid}"), e))?;
                let outputs = tx
                    .outputs()
                    .map(|(vout, sats, script)| MempoolOutput {
                        vout,
                        script: ScriptBuf::from_bytes(script.to_vec()),
                        sats,
                    })
                    .collect();
                let entry = MempoolTx {
                    outputs,
                    spends: tx.spends(),
                };
                self.mempool_cache
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(*txid, Arc::new(entry));
            }
            let cache = self.mempool_cache.lock().unwrap_or_else(|p| p.into_inner());
            Ok(cache.iter().map(|(t, o)| (*t, o.clone())).collect())
        })
    }
}
