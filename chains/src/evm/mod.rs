//! The `evm` backend: an ERC-20/BEP-20 token on any Ethereum JSON-RPC chain
//! (USDT on BNB Smart Chain by default; the contract is configuration).
//!
//! - Transfers are `Transfer(address,address,uint256)` logs of the configured
//!   contract only (a look-alike token never matches), to a watched address,
//!   with a non-zero value, keyed by `(transaction hash, log index)`.
//! - `eth_getLogs` covers block ranges from the cursor to the tip. A range the
//!   provider refuses as too large (the wording varies by provider) is halved
//!   and retried down to one block; a range that errored is never skipped.
//!   The working range size is remembered and grows back on success.
//! - Confirmation needs the log's block at or below the `finalized` block
//!   (plus the depth floor); reorgs are found by block hash like every chain.
//! - `decimals()` is read at start and must equal the configured decimals.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use alloy_primitives::{Address, U256};
use alloy_sol_types::{SolEvent, sol};
use paywatch_state::{Asset, ChainTip};
use serde_json::{Value, json};

use crate::ChainError;
use crate::address::AddressError;
use crate::rpc::RpcClient;
use crate::source::{BoxFuture, ChainSource, ScanBatch, ScanRequest, WatchSet};
use crate::walk::{find_fork, unknown_block_status};

mod logs;

use self::logs::RpcHeader;
use crate::watch::WatchCache;

sol! {
    /// The ERC-20 transfer event.
    event Transfer(address indexed from, address indexed to, uint256 value);
}

/// Above this many watched addresses the `to` topic filter is dropped and
/// logs are filtered here (providers limit filter sizes).
const MAX_TOPIC_ADDRESSES: usize = 100;

/// Parses an EVM address: `0x` + 40 hex digits; mixed case must be a valid
/// EIP-55 checksum. Returns the checksummed form.
pub fn parse_evm_address(text: &str) -> Result<String, AddressError> {
    let t = text.trim();
    let invalid = || AddressError::Invalid(text.to_string(), "EVM");
    let hex_part = t.strip_prefix("0x").ok_or_else(invalid)?;
    if hex_part.len() != 40 || !hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid());
    }
    let address: Address = t.parse().map_err(|_| invalid())?;
    let checksummed = address.to_checksum(None);
    let mixed = hex_part.bytes().any(|b| b.is_ascii_lowercase()) && hex_part.bytes().any(|b| b.is_ascii_uppercase());
    if mixed && t != checksummed {
        return Err(AddressError::BadChecksum(text.to_string()));
    }
    Ok(checksummed)
}

fn quantity(text: &str) -> Result<u64, ChainError> {
    u64::from_str_radix(text.trim_start_matches("0x"), 16).map_err(|e| ChainError::garbage("quantity", e))
}

/// Watched accounts to their checksummed address.
type EvmWatch = HashMap<Address, String>;

pub struct EvmSource {
    asset: Asset,
    rpc: RpcClient,
    contract: Address,
    decimals: u8,
    chain_id: u64,
    /// Blocks per `eth_getLogs` that the provider accepted last.
    range: AtomicU64,
    max_blocks_per_poll: u64,
    watch_cache: WatchCache<EvmWatch>,
    /// The provider takes JSON-RPC batches (until it refuses one).
    batches: std::sync::atomic::AtomicBool,
    /// When batches were last refused: tried again after `BATCH_RETRY`.
    batches_refused_at: Mutex<Option<std::time::Instant>>,
}

impl EvmSource {
    pub fn new(
        asset: Asset,
        rpc: RpcClient,
        contract: &str,
        decimals: u8,
        chain_id: u64,
        max_blocks_per_poll: u64,
    ) -> Result<EvmSource, ChainError> {
        let contract: Address = contract
            .parse()
            .map_err(|_| ChainError::Config(format!("contract {contract:?} is not an address")))?;
        let max_blocks_per_poll = max_blocks_per_poll.max(1);
        Ok(EvmSource {
            asset,
            rpc,
            contract,
            decimals,
            chain_id,
            range: AtomicU64::new(max_blocks_per_poll),
            max_blocks_per_poll,
            watch_cache: WatchCache::default(),
            batches: true.into(),
            batches_refused_at: Mutex::new(None),
        })
    }

    fn watch_map(&self, watch: &WatchSet) -> Arc<EvmWatch> {
        self.watch_cache.get(watch, |w| {
            w.addresses
                .iter()
                .filter_map(|a| a.parse::<Address>().ok().map(|addr| (addr, addr.to_checksum(None))))
                .collect()
        })
    }

    /// `eth_getBlockByNumber` as it answers; `None` when the node lacks the
    /// block.
    async fn block_json(&self, which: Value) -> Result<Option<Value>, ChainError> {
        let v = self.rpc.call_raw("eth_getBlockByNumber", json!([which, false])).await?;
        Ok((!v.is_null()).then_some(v))
    }

    /// A block by number or tag; `None` when the node does not have it.
    async fn block(&self, which: Value) -> Result<Option<(u64, String)>, ChainError> {
        let Some(v) = self.block_json(which).await? else {
            return Ok(None);
        };
        let b: RpcHeader = serde_json::from_value(v).map_err(|e| ChainError::garbage("eth_getBlockByNumber", e))?;
        Ok(Some((quantity(&b.number)?, format!("{:#x}", b.hash))))
    }

    async fn block_hash(&self, height: u64) -> Result<Option<String>, ChainError> {
        Ok(self.block(json!(format!("{height:#x}"))).await?.map(|(_, h)| h))
    }
}

/// Providers say "method not found" or "disabled" in many words.
fn refuses_get_logs(e: &ChainError) -> bool {
    match e {
        ChainError::Rpc { code, message, .. } => {
            let m = message.to_ascii_lowercase();
            *code == -32601
                || m.contains("not supported")
                || m.contains("disabled")
                || m.contains("does not exist")
                || m.contains("not available")
        }
        ChainError::Http { status, .. } => *status == 403 || *status == 405,
        _ => false,
    }
}

impl ChainSource for EvmSource {
    fn backend(&self) -> &'static str {
        "evm"
    }

    fn preflight(&self) -> BoxFuture<'_, Result<(), ChainError>> {
        Box::pin(async move {
            let chain: String = self.rpc.call("eth_chainId", json!([])).await?;
            let chain = quantity(&chain)?;
            if chain != self.chain_id {
                return Err(ChainError::WrongChain(format!(
                    "the endpoint is on chain id {chain}, but {} expects {}",
                    self.asset, self.chain_id
                )));
            }
            // decimals(): the 6-vs-18 mistake is a factor of 10^12.
            let call = json!({"to": self.contract, "data": "0x313ce567"});
            let answer: String = self.rpc.call("eth_call", json!([call, "latest"])).await?;
            let bytes =
                hex::decode(answer.trim_start_matches("0x")).map_err(|e| ChainError::garbage("decimals()", e))?;
            if bytes.len() != 32 {
                return Err(ChainError::Config(format!(
                    "contract {} does not answer decimals(): is it a token on this chain?",
                    self.contract.to_checksum(None)
                )));
            }
            let decimals = U256::from_be_slice(&bytes);
            if decimals != U256::from(self.decimals) {
                return Err(ChainError::Config(format!(
                    "contract {} reports decimals() = {decimals}, but {} is configured with {} decimals",
                    self.contract.to_checksum(None),
                    self.asset,
                    self.decimals
                )));
            }
            // A provider that refuses eth_getLogs is a configuration problem.
            let latest: String = self.rpc.call("eth_blockNumber", json!([])).await?;
            let filter = json!({"fromBlock": latest, "toBlock": latest, "address": self.contract, "topics": [Transfer::SIGNATURE_HASH]});
            match self.rpc.call_raw("eth_getLogs", json!([filter])).await {
                Err(e) if refuses_get_logs(&e) => Err(ChainError::Config(format!(
                    "the endpoint refuses eth_getLogs ({e}); use a provider or node that serves it"
                ))),
                Err(e) => Err(e),
                Ok(_) => Ok(()),
            }
        })
    }

    fn warnings(&self) -> Vec<String> {
        if self.batches.load(Ordering::Relaxed) {
            Vec::new()
        } else {
            vec![
                "the endpoint refuses JSON-RPC batches: logs and headers are read in separate calls (bloom checks still \
                 bind logs to blocks near the head); a provider that takes batches is more robust"
                    .into(),
            ]
        }
    }

    fn endpoints(&self) -> &crate::http::Endpoints {
        self.rpc.endpoints()
    }

    fn tip(&self) -> BoxFuture<'_, Result<ChainTip, ChainError>> {
        Box::pin(async move {
            let (height, hash) = self
                .block(json!("latest"))
                .await?
                .ok_or_else(|| ChainError::garbage("latest block", "null"))?;
            let (finalized, _) = self
                .block(json!("finalized"))
                .await?
                .ok_or_else(|| ChainError::Config("the endpoint does not report a finalized block".into()))?;
            self.rpc.endpoints().note_height(height);
            Ok(ChainTip {
                height,
                hash,
                // A finalized block above the head comes from another node.
                finalized: Some(finalized.min(height)),
            })
        })
    }

    fn tip_time<'a>(
        &'a self,
        tip: &'a ChainTip,
    ) -> BoxFuture<'a, Result<Option<chrono::DateTime<chrono::Utc>>, ChainError>> {
        Box::pin(async move {
            let Some(v) = self.block_json(json!(format!("{:#x}", tip.height))).await? else {
                return Ok(None); // not on this node
            };
            // Seconds since 1970, as a quantity (read here only: scans need
            // no time).
            let seconds = quantity(
                v["timestamp"]
                    .as_str()
                    .ok_or_else(|| ChainError::garbage("eth_getBlockByNumber", "no timestamp"))?,
            )?;
            let seconds = i64::try_from(seconds).map_err(|e| ChainError::garbage("block timestamp", e))?;
            Ok(chrono::DateTime::from_timestamp(seconds, 0))
        })
    }

    fn scan<'a>(&'a self, req: ScanRequest<'a>) -> BoxFuture<'a, Result<ScanBatch, ChainError>> {
        Box::pin(async move {
            let watch = self.watch_map(req.watch);
            let fork = find_fork(
                self.asset,
                req.from,
                req.known,
                |h| self.block_hash(h),
                unknown_block_status,
            )
            .await?;
            let base = fork.clone().unwrap_or_else(|| req.from.clone());
            let mut batch = ScanBatch {
                rollback_to: fork.map(|f| f.height),
                cursor: Some(base.clone()),
                ..ScanBatch::default()
            };
            if req.to <= base.height {
                return Ok(batch);
            }
            let (mut logs, cursor) = self.logs(base.height + 1, req.to, &watch).await?;
            match self.verify(base.height, &cursor, &logs, &watch).await {
                Ok(more) => logs.extend(more),
                Err(e @ ChainError::Timeout { .. }) => {
                    // Too many headers to check in time: smaller ranges next.
                    let range = self.range.load(Ordering::Relaxed);
                    self.range.store((range / 2).max(1), Ordering::Relaxed);
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
            let end = cursor.height;
            let (observations, mut blocks) = self.observations(logs, &watch)?;
            if blocks.last().is_none_or(|b| b.height != end) {
                blocks.push(cursor.clone());
            }
            batch.observations = observations;
            batch.blocks = blocks;
            batch.cursor = Some(cursor);
            Ok(batch)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eip55_checksums_are_validated() {
        // EIP-55 test vectors.
        for good in [
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        ] {
            assert_eq!(parse_evm_address(good).as_deref(), Ok(good));
        }
        // All lower case carries no checksum: accepted, canonicalised.
        assert_eq!(
            parse_evm_address("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed").as_deref(),
            Ok("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed")
        );
        assert!(matches!(
            parse_evm_address("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD"),
            Err(AddressError::BadChecksum(_))
        ));
        for bad in [
            "5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeA",
            "0xZZAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        ] {
            assert!(
                matches!(parse_evm_address(bad), Err(AddressError::Invalid(..))),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_transfer_topic_is_the_erc20_one() {
        assert_eq!(
            format!("{:#x}", Transfer::SIGNATURE_HASH),
            "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
        );
    }

    #[test]
    fn refusals_are_told_from_range_errors() {
        let rpc = |code, message: &str| ChainError::Rpc {
            method: "eth_getLogs".into(),
            code,
            message: message.into(),
        };
        assert!(refuses_get_logs(&rpc(
            -32601,
            "the method eth_getLogs does not exist/is not available"
        )));
        assert!(refuses_get_logs(&rpc(
            -32000,
            "eth_getLogs is disabled on this endpoint"
        )));
        for range_error in [
            "query exceeds max block range 100000",
            "eth_getLogs range is too large, max is 1k blocks",
            "limited to 1024 block range",
            "query exceeds max results 20000, retry with the range 1-2",
        ] {
            assert!(!refuses_get_logs(&rpc(-32005, range_error)), "{range_error}");
        }
    }
}
