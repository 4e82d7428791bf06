//! The `esplora` backend: Esplora REST (Blockstream, mempool.space,
//! litecoinspace, an own electrs). Raw blocks by height
//! (`/block-height/:h`, `/block/:hash/raw`), amounts in satoshis, and the
//! mempool per watched address (`/address/:a/txs/mempool`), only for the
//! addresses that can currently receive: public Esplora servers cannot serve
//! the whole mempool to every client.

use std::sync::Arc;

use bitcoin::{ScriptBuf, Txid};
use paywatch_state::Asset;
use serde::Deserialize;

use super::block::{Outpoint, outpoint, outpoint_parts};
use super::source::{MempoolOutput, MempoolTx as MempoolEntry, MempoolTxs, UtxoBackend};
use crate::ChainError;
use crate::http::{Endpoints, Verdict, status_error};
use crate::source::{BoxFuture, WatchSet};

/// Esplora returns at most this many mempool transactions per address.
const MEMPOOL_PAGE: usize = 50;

pub struct Esplora {
    endpoints: Endpoints,
    asset: Asset,
}

#[derive(Deserialize)]
struct BlockInfo {
    height: u64,
    /// The header's time, seconds since 1970.
    #[serde(default)]
    timestamp: Option<i64>,
}

#[derive(Deserialize)]
struct MempoolTx {
    txid: String,
    /// What it spends (absent from some servers' answers: then only "unknown
    /// by id" proves a transaction gone).
    #[serde(default)]
    vin: Vec<MempoolVin>,
    vout: Vec<MempoolVout>,
}

#[derive(Deserialize)]
struct MempoolVin {
    txid: String,
    vout: u32,
}

#[derive(Deserialize)]
struct MempoolVout {
    scriptpubkey: String,
    /// Satoshis, an integer.
    value: u64,
}

impl Esplora {
    pub fn new(endpoints: Endpoints, asset: Asset) -> Esplora {
        Esplora { endpoints, asset }
    }

    /// GET `path`; `None` on 404 (a height above the tip, an unknown block).
    async fn get(&self, call: &str, path: &str) -> Result<Option<Vec<u8>>, ChainError> {
        self.endpoints
            .send(
                call,
                |http, base| http.get(format!("{base}{path}")),
                |url, answer| match answer.status {
                    200..=299 => Verdict::Done(Some(answer.body)),
                    404 => Verdict::Done(None),
                    status => status_error(url, status),
                },
            )
            .await
    }

    async fn get_text(&self, call: &str, path: &str) -> Result<Option<String>, ChainError> {
        match self.get(call, path).await? {
            None => Ok(None),
            Some(body) => {
                let text = String::from_utf8(body).map_err(|e| ChainError::garbage(call, e))?;
                Ok(Some(text.trim().to_string()))
            }
        }
    }

    /// `/block/:hash`; `None` when this endpoint does not know the block.
    async fn block_info(&self, hash: &str) -> Result<Option<BlockInfo>, ChainError> {
        match self.get("block", &format!("/block/{hash}")).await? {
            None => Ok(None),
            Some(body) => serde_json::from_slice(&body)
                .map(Some)
                .map_err(|e| ChainError::garbage("/block", e)),
        }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, call: &str, path: &str) -> Result<T, ChainError> {
        let body = self
            .get(call, path)
            .await?
            .ok_or_else(|| ChainError::garbage(call, "not found"))?;
        serde_json::from_slice(&body).map_err(|e| ChainError::garbage(call, e))
    }
}

fn is_hash(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

impl UtxoBackend for Esplora {
    fn name(&self) -> &'static str {
        "esplora"
    }

    fn tip(&self) -> BoxFuture<'_, Result<(u64, String), ChainError>> {
        Box::pin(async move {
            // Hash first, then its height: one consistent pair.
            let hash = self.get_text("tip hash", "/blocks/tip/hash").await?.unwrap_or_default();
            if !is_hash(&hash) {
                return Err(ChainError::garbage(
                    "/blocks/tip/hash",
                    format!("{hash:?} is not a block hash"),
                ));
            }
            let info = self
                .block_info(&hash)
                .await?
                .ok_or_else(|| ChainError::garbage("tip block", "not found"))?;
            self.endpoints.note_height(info.height);
            Ok((info.height, hash))
        })
    }

    fn block_hash(&self, height: u64) -> BoxFuture<'_, Result<Option<String>, ChainError>> {
        Box::pin(async move {
            match self
                .get_text("block-height", &format!("/block-height/{height}"))
                .await?
            {
                Some(hash) if is_hash(&hash) => Ok(Some(hash)),
                Some(other) => Err(ChainError::garbage(
                    "/block-height",
                    format!("{other:?} is not a block hash"),
                )),
                None => Ok(None),
            }
        })
    }

    fn raw_block<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<Vec<u8>, ChainError>> {
        Box::pin(async move {
            self.get("block raw", &format!("/block/{hash}/raw"))
                .await?
                .ok_or_else(|| ChainError::Behind(format!("block {hash} is unknown to this endpoint")))
        })
    }

    fn block_time<'a>(
        &'a self,
        hash: &'a str,
    ) -> BoxFuture<'a, Result<Option<chrono::DateTime<chrono::Utc>>, ChainError>> {
        Box::pin(async move {
            let Some(info) = self.block_info(hash).await? else {
                return Ok(None); // not on this endpoint
            };
            let seconds = info
                .timestamp
                .ok_or_else(|| ChainError::garbage("/block", "no timestamp"))?;
            Ok(chrono::DateTime::from_timestamp(seconds, 0))
        })
    }

    fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    fn on_best_chain<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<Option<bool>, ChainError>> {
        Box::pin(async move {
            // `/block/:hash/status` answers `in_best_chain: false` for a block
            // the server never saw too: only a block it serves is known.
            if self.get("block", &format!("/block/{hash}")).await?.is_none() {
                return Ok(None);
            }
            let Some(body) = self.get("block status", &format!("/block/{hash}/status")).await? else {
                return Ok(None);
            };
            let status: serde_json::Value =
                serde_json::from_slice(&body).map_err(|e| ChainError::garbage("/block/status", e))?;
            status["in_best_chain"]
                .as_bool()
                .map(Some)
                .ok_or_else(|| ChainError::garbage("/block/status", "no in_best_chain"))
        })
    }

    fn spender_of<'a>(&'a self, spent: &'a Outpoint) -> BoxFuture<'a, Result<Option<String>, ChainError>> {
        Box::pin(async move {
            let (txid, vout) = outpoint_parts(spent);
            let Some(body) = self.get("outspend", &format!("/tx/{txid}/outspend/{vout}")).await? else {
                return Ok(None);
            };
            let answer: serde_json::Value =
                serde_json::from_slice(&body).map_err(|e| ChainError::garbage("/tx/outspend", e))?;
            Ok(answer["txid"].as_str().map(str::to_string))
        })
    }

    fn knows_transaction<'a>(&'a self, txid: &'a str) -> BoxFuture<'a, Result<bool, ChainError>> {
        // `/tx/:txid/status` answers 200 even for an unknown transaction;
        // `/tx/:txid` answers 404 for it.
        Box::pin(async move { Ok(self.get("tx", &format!("/tx/{txid}")).await?.is_some()) })
    }

    fn mempool<'a>(&'a self, watch: &'a WatchSet) -> BoxFuture<'a, Result<MempoolTxs, ChainError>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for address in &watch.hot {
                let txs: Vec<MempoolTx> = self
                    .get_json("address mempool", &format!("/address/{address}/txs/mempool"))
                    .await?;
                if txs.len() >= MEMPOOL_PAGE {
                    tracing::warn!(asset = %self.asset, address = %address, "50+ mempool transactions to one address; some may be seen only once mined (none is reverted for being unlisted)");
                }
                for tx in txs {
                    let txid: Txid = tx.txid.parse().map_err(|e| ChainError::garbage("mempool txid", e))?;
                    let outputs = tx
                        .vout
                        .into_iter()
                        .enumerate()
                        .map(|(i, o)| {
                            let script =
                                hex::decode(&o.scriptpubkey).map_err(|e| ChainError::garbage("scriptpubkey", e))?;
                            Ok(MempoolOutput {
                                vout: i as u32,
                                script: ScriptBuf::from_bytes(script),
                                sats: o.value,
                            })
                        })
                        .collect::<Result<Vec<_>, ChainError>>()?;
                    let spends = tx.vin.iter().filter_map(|i| outpoint(&i.txid, i.vout)).collect();
                    out.push((txid, Arc::new(MempoolEntry { outputs, spends })));
                }
            }
            Ok(out)
        })
    }
}
