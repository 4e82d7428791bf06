//! Tron: base58check addresses (prefix 0x41) and the `tron-http` backend,
//! scanning blocks through the full-node HTTP API that both TronGrid and an
//! own java-tron node serve.
//!
//! - The cursor is the last processed block number with its block ID. Each
//!   step reads the head (`/wallet/getnowblock`) and the solidified head
//!   (`/walletsolidity/getnowblock`), then for every new block its ID
//!   (`/wallet/getblockbynum`, parent checked) and its transaction infos
//!   (`/wallet/gettransactioninfobyblocknum`).
//! - Only `Transfer` logs emitted by the configured contract, to a watched
//!   address, in transactions whose `receipt.result` is `SUCCESS`, with a
//!   non-zero value, credit; never by token name or symbol. Several logs in
//!   one transaction are keyed by their position.
//! - Confirmed at or below the solidified block. A changed block ID at a
//!   stored height is a fork: rolled back, transfers reverted.
//! - `{}` ("not found") and `{"Error": ...}` bodies with HTTP 200, 429 and
//!   403 rate limits are retried with backoff; the cursor never passes a
//!   block that was not read.

use std::collections::HashMap;

use paywatch_state::{Asset, ChainTip};
use serde_json::{Value, json};

use crate::http::{Endpoints, Verdict, redact_url};
use crate::source::{BoxFuture, ChainSource, ScanBatch, ScanRequest, WatchSet};
use crate::walk::{BlockReader, Linked, walk};
use crate::watch::WatchCache;
use crate::{ChainError, Network, Secret};

mod address;
mod transfers;

pub use self::address::{base58_of, parse_tron_address};
pub use self::transfers::TronBlock;
use self::transfers::{check_infos_belong, parse_block};

/// USDT on Tron.
pub const USDT_TRC20_CONTRACT: &str = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t";

pub struct TronSource {
    endpoints: Endpoints,
    api_key: Option<Secret>,
    contract: [u8; 20],
    network: Network,
    max_blocks_per_poll: u64,
    watch_cache: WatchCache<TronWatch>,
}

/// Watched accounts, by their 20 bytes, to their canonical address.
pub(super) type TronWatch = HashMap<[u8; 20], String>;

/// The genesis block IDs of Tron's public networks: mainnet, then the Nile
/// and Shasta testnets. A private network (`regtest`) has its own.
const MAINNET_GENESIS: &str = "00000000000000001ebf88508a03865c71d452e25f4d51194196a1d22b6653dc";
const TESTNET_GENESES: [&str; 2] = [
    "0000000000000000d698d4192c56cb6be724a558448e2684802de4d6cd8690dc",
    "0000000000000000de1aa88295e1fcf982742f773e0419c5a9c134c994a9059e",
];

impl TronSource {
    pub fn new(
        endpoints: Endpoints,
        api_key: Option<Secret>,
        contract: &str,
        network: Network,
        max_blocks_per_poll: u64,
    ) -> Result<TronSource, ChainError> {
        let (contract, _) = parse_tron_address(contract).map_err(|e| ChainError::Config(e.to_string()))?;
        Ok(TronSource {
            endpoints,
            api_key,
            contract,
            network,
            max_blocks_per_poll: max_blocks_per_poll.max(1),
            watch_cache: WatchCache::default(),
        })
    }

    fn watch_map(&self, watch: &WatchSet) -> std::sync::Arc<TronWatch> {
        self.watch_cache.get(watch, |w| {
            w.addresses.iter().filter_map(|a| parse_tron_address(a).ok()).collect()
        })
    }

    /// Block 0's ID must be the configured network's genesis.
    async fn check_genesis(&self) -> Result<(), ChainError> {
        let genesis = self.post("/wallet/getblockbynum", json!({"num": 0})).await?;
        let id = genesis
            .as_ref()
            .and_then(|g| g.get("blockID"))
            .and_then(Value::as_str)
            .ok_or_else(|| ChainError::garbage("getblockbynum 0", "no blockID"))?;
        let expected = match self.network {
            Network::Mainnet => id == MAINNET_GENESIS,
            Network::Testnet => TESTNET_GENESES.contains(&id),
            Network::Regtest => id != MAINNET_GENESIS && !TESTNET_GENESES.contains(&id),
        };
        if !expected {
            return Err(ChainError::WrongChain(format!(
                "the tron-http backend serves another chain (genesis {id}), not Tron {}",
                self.network
            )));
        }
        Ok(())
    }

    /// POST `path` with a JSON body. `Ok(None)` is the API's `{}`: not found.
    async fn post(&self, path: &str, body: Value) -> Result<Option<Value>, ChainError> {
        self.endpoints
            .send(
                path,
                |http, base| {
                    let req = http.post(format!("{base}{path}")).json(&body);
                    match &self.api_key {
                        Some(key) => req.header("TRON-PRO-API-KEY", key.expose()),
                        None => req,
                    }
                },
                |url, answer| judge(path, url, answer.status, &answer.body),
            )
            .await
    }

    async fn block(&self, num: u64) -> Result<Option<TronBlock>, ChainError> {
        match self.post("/wallet/getblockbynum", json!({"num": num})).await? {
            None => Ok(None),
            Some(v) => parse_block(&v)
                .map(Some)
                .ok_or_else(|| ChainError::garbage("getblockbynum", "no blockID")),
        }
    }
}

/// Reads a Tron HTTP answer: rate limits (429, 403 penalties) and server
/// errors are retried, `{"Error": ...}` with HTTP 200 too, `{}` is "none".
fn judge(path: &str, url: &str, status: u16, body: &[u8]) -> Verdict<Option<Value>> {
    let text = String::from_utf8_lossy(body);
    if status == 429 || status == 403 {
        let message: String = text.chars().take(200).collect();
        return Verdict::TryNext(ChainError::RateLimited {
            url: redact_url(url),
            status,
            message,
        });
    }
    if !(200..300).contains(&status) {
        return crate::http::status_error(url, status);
    }
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Verdict::TryNext(ChainError::garbage(path, format!("not JSON ({} bytes)", body.len())));
    };
    if let Some(error) = value.get("Error") {
        return Verdict::TryNext(ChainError::garbage(
            path,
            format!("the node answered an error: {error}"),
        ));
    }
    if value.as_object().is_some_and(|o| o.is_empty()) {
        return Verdict::Done(None);
    }
    Verdict::Done(Some(value))
}

impl ChainSource for TronSource {
    fn backend(&self) -> &'static str {
        "tron-http"
    }

    fn tip(&self) -> BoxFuture<'_, Result<ChainTip, ChainError>> {
        Box::pin(async move {
            let head = self.post("/wallet/getnowblock", json!({})).await?;
            let head = head
                .as_ref()
                .and_then(parse_block)
                .ok_or_else(|| ChainError::garbage("getnowblock", "no block"))?;
            let solid = self.post("/walletsolidity/getnowblock", json!({})).await?;
            let solid = solid
                .as_ref()
                .and_then(parse_block)
                .ok_or_else(|| ChainError::garbage("walletsolidity/getnowblock", "no block"))?;
            self.endpoints.note_height(head.number);
            Ok(ChainTip {
                height: head.number,
                hash: head.id,
                // A solidified head above the head comes from another node.
                finalized: Some(solid.number.min(head.number)),
            })
        })
    }

    fn tip_time<'a>(
        &'a self,
        tip: &'a ChainTip,
    ) -> BoxFuture<'a, Result<Option<chrono::DateTime<chrono::Utc>>, ChainError>> {
        Box::pin(async move { Ok(self.block(tip.height).await?.and_then(|b| b.time)) })
    }

    fn preflight(&self) -> BoxFuture<'_, Result<(), ChainError>> {
        Box::pin(async move {
            self.check_genesis().await?;
            // decimals() of the contract: the 6-vs-18 mistake is a factor 10^12.
            let contract = hex::encode(self.contract);
            let answer = self
                .post(
                    "/wallet/triggerconstantcontract",
                    json!({
                        "owner_address": format!("41{contract}"),
                        "contract_address": format!("41{contract}"),
                        "function_selector": "decimals()",
                        "parameter": "",
                    }),
                )
                .await?
                .ok_or_else(|| ChainError::Config("the node does not know the token contract".into()))?;
            let word = answer
                .get("constant_result")
                .and_then(|r| r.get(0))
                .and_then(Value::as_str)
                .and_then(|h| hex::decode(h).ok())
                .filter(|b| b.len() == 32)
                .ok_or_else(|| {
                    ChainError::Config(format!(
                        "contract {} does not answer decimals(): is it a TRC-20 token on this network?",
                        base58_of(&self.contract)
                    ))
                })?;
            let decimals = u128::from_be_bytes(word[16..].try_into().unwrap_or_default());
            let expected = u128::from(Asset::UsdtTrc20.decimals());
            if word[..16].iter().any(|b| *b != 0) || decimals != expected {
                return Err(ChainError::Config(format!(
                    "contract {} reports decimals() = {decimals}, but USDT_TRC20 amounts have {expected} decimals",
                    base58_of(&self.contract)
                )));
            }
            Ok(())
        })
    }

    fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    fn scan<'a>(&'a self, req: ScanRequest<'a>) -> BoxFuture<'a, Result<ScanBatch, ChainError>> {
        Box::pin(async move {
            let watch = self.watch_map(req.watch);
            walk(self, req, self.max_blocks_per_poll, |here, (block, infos)| {
                check_infos_belong(&block, &infos)?;
                self.transfers(&infos, here, &watch)
            })
            .await
        })
    }
}

impl BlockReader for TronSource {
    /// The block with its transaction infos (two round trips per block).
    type Block = (TronBlock, Value);

    fn asset(&self) -> Asset {
        Asset::UsdtTrc20
    }

    fn hash_at(&self, height: u64) -> BoxFuture<'_, Result<Option<String>, ChainError>> {
        Box::pin(async move { Ok(self.block(height).await?.map(|b| b.id)) })
    }

    fn fetch(&self, height: u64) -> BoxFuture<'_, Result<Option<Linked<Self::Block>>, ChainError>> {
        Box::pin(async move {
            let Some(block) = self.block(height).await? else {
                return Ok(None);
            };
            if block.number != height {
                return Err(ChainError::garbage(
                    "getblockbynum",
                    format!("asked for block {height}, got {}", block.number),
                ));
            }
            let infos = self
                .post("/wallet/gettransactioninfobyblocknum", json!({"num": height}))
                .await?;
            Ok(Some(Linked {
                hash: block.id.clone(),
                parent: block.parent.clone(),
                block: (block, infos.unwrap_or(Value::Null)),
            }))
        })
    }
}

#[cfg(test)]
pub(crate) fn judge_for_tests(path: &str, url: &str, status: u16, body: &[u8]) -> Verdict<Option<Value>> {
    judge(path, url, status, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_and_rate_limits_are_retried() {
        let retried =
            |status, body: &str| matches!(judge("/x", "http://n", status, body.as_bytes()), Verdict::TryNext(_));
        assert!(retried(
            200,
            r#"{"Error":"class org.tron.core.exception.BadItemException : block not found"}"#
        ));
        assert!(retried(429, "Too Many Requests"));
        assert!(retried(
            403,
            r#"{"success":false,"error":"The key exceeds the frequency limit(15), and the query server is suspended for 30s","statusCode":403}"#
        ));
        assert!(retried(200, "<html>"));
        assert!(matches!(judge("/x", "http://n", 200, b"{}"), Verdict::Done(None)));
    }
}
