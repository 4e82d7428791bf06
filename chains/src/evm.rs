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

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use alloy_primitives::{Address, B256, Bloom, BloomInput, U256};
use alloy_sol_types::{SolEvent, sol};
use paywatch_state::amount::from_base_units;
use paywatch_state::{Asset, BlockRef, ChainTip, Observation};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::ChainError;
use crate::address::AddressError;
use crate::rpc::RpcClient;
use crate::source::{BoxFuture, ChainSource, ScanBatch, ScanRequest, WatchSet};
use crate::walk::{find_fork, unknown_block_status};
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RpcLog {
    address: String,
    topics: Vec<B256>,
    data: String,
    block_number: Option<String>,
    block_hash: Option<B256>,
    transaction_hash: Option<B256>,
    log_index: Option<String>,
    #[serde(default)]
    removed: bool,
}

/// A block header as `eth_getBlockByNumber` answers it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RpcHeader {
    number: String,
    hash: B256,
    /// Absent from some answers: then the block is re-read by hash.
    #[serde(default)]
    logs_bloom: Option<Bloom>,
}

impl RpcHeader {
    /// The header of block `height` from an answer; a node without that
    /// block (`null`) is behind.
    fn of_block(height: u64, answer: Value) -> Result<RpcHeader, ChainError> {
        if answer.is_null() {
            return Err(ChainError::Behind(format!(
                "the node that answered has no block {height}"
            )));
        }
        let header: RpcHeader =
            serde_json::from_value(answer).map_err(|e| ChainError::garbage("eth_getBlockByNumber", e))?;
        if quantity(&header.number)? != height {
            return Err(ChainError::garbage(
                "eth_getBlockByNumber",
                format!("asked for block {height}, got {}", header.number),
            ));
        }
        Ok(header)
    }
}

/// How long after a provider refused a batch it is offered one again (a
/// refusal may be a passing limit, and batches bind answers to one node).
const BATCH_RETRY: std::time::Duration = std::time::Duration::from_secs(600);

/// Blocks at the end of each range whose headers' bloom filters are checked
/// against the logs returned (a node behind the head lacks only the last few).
const VERIFY_WINDOW: u64 = 64;

/// An `eth_getLogs` error saying the `blockHash` filter is not supported (as
/// opposed to a node that does not have the block).
fn refuses_block_hash_filter(code: i64, message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    !m.contains("unknown block")
        && !m.contains("not found")
        && (code == -32602 || m.contains("not supported") || m.contains("unsupported") || m.contains("invalid"))
}

/// A provider that refuses JSON-RPC batches outright (one error answer for
/// the whole batch); a garbled answer is a passing fault, not a refusal.
fn refuses_batches(e: &ChainError) -> bool {
    matches!(e, ChainError::Rpc { method, .. } if method == "batch")
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

    /// A block by number or tag; `None` when the node does not have it.
    async fn block(&self, which: Value) -> Result<Option<(u64, String)>, ChainError> {
        let v = self.rpc.call_raw("eth_getBlockByNumber", json!([which, false])).await?;
        if v.is_null() {
            return Ok(None);
        }
        let b: RpcHeader = serde_json::from_value(v).map_err(|e| ChainError::garbage("eth_getBlockByNumber", e))?;
        Ok(Some((quantity(&b.number)?, format!("{:#x}", b.hash))))
    }

    async fn block_hash(&self, height: u64) -> Result<Option<String>, ChainError> {
        Ok(self.block(json!(format!("{height:#x}"))).await?.map(|(_, h)| h))
    }

    /// `eth_getLogs` over `[from, to]`, halving the range while the provider
    /// refuses it as too large. Returns the logs and the last block covered
    /// with its hash.
    ///
    /// The logs are asked in one batch with the header of the range's last
    /// block, so the node that answers the logs shows it has that block: a
    /// node whose head is below `toBlock` answers partial logs without an
    /// error, and its batch then carries no header (not available, retried).
    async fn logs(&self, from: u64, to: u64, watch: &EvmWatch) -> Result<(Vec<RpcLog>, BlockRef), ChainError> {
        let mut end = to.min(from + self.range.load(Ordering::Relaxed) - 1);
        let to_topic = self.to_topic(watch);
        loop {
            let filter = json!({
                "fromBlock": format!("{from:#x}"),
                "toBlock": format!("{end:#x}"),
                "address": self.contract,
                "topics": [Transfer::SIGNATURE_HASH, Value::Null, to_topic],
            });
            let batch = self
                .many(&[
                    ("eth_getBlockByNumber", json!([format!("{end:#x}"), false])),
                    ("eth_getLogs", json!([filter])),
                ])
                .await;
            let mut answers = match batch {
                Ok(answers) => answers.into_iter(),
                // A range too heavy to answer in time: smaller ranges do.
                Err(ChainError::Timeout { .. }) if end > from => {
                    end = from + (end - from) / 2;
                    self.range.store(end - from + 1, Ordering::Relaxed);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let (Some(header), Some(logs)) = (answers.next(), answers.next()) else {
                return Err(ChainError::garbage("batch", "two answers expected"));
            };
            match logs.and_then(|v| {
                serde_json::from_value::<Vec<RpcLog>>(v).map_err(|e| ChainError::garbage("eth_getLogs", e))
            }) {
                Ok(logs) => {
                    // The node that answered the logs has the range's end.
                    let last = BlockRef {
                        height: end,
                        hash: format!("{:#x}", RpcHeader::of_block(end, header?)?.hash),
                    };
                    let span = end - from + 1;
                    // Grow back slowly after a successful full-size range.
                    if span >= self.range.load(Ordering::Relaxed) {
                        self.range
                            .store((span * 2).min(self.max_blocks_per_poll), Ordering::Relaxed);
                    }
                    return Ok((logs, last));
                }
                Err(e) if refuses_get_logs(&e) => {
                    return Err(ChainError::Config(format!(
                        "the endpoint refuses eth_getLogs ({e}); use a provider or node that serves it"
                    )));
                }
                Err(e) if end > from && !matches!(e, ChainError::Garbage { .. }) => {
                    end = from + (end - from) / 2;
                    self.range.store(end - from + 1, Ordering::Relaxed);
                    tracing::debug!(asset = %self.asset, error = %e, blocks = end - from + 1, "eth_getLogs refused; halving the range");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Checks one range's logs against the chain, reading the headers of the
    /// blocks that hold logs, of the range's last block, and of every block
    /// in the last `VERIFY_WINDOW` of the range in one batch:
    ///
    /// - every log block must be in the range and have the hash its logs
    ///   carry, and the last block the hash the logs were asked with (else a
    ///   reorg meanwhile, or another node answered: `Unavailable`);
    /// - a block near the head whose `logsBloom` says it may hold a transfer
    ///   of the token to a watched address, but for which no log came back,
    ///   is asked again by block hash (EIP-234: a node without that block
    ///   errors instead of answering nothing). A node behind the head, or a
    ///   gateway that split the batch, cannot hide a transfer that way.
    ///
    /// Returns the logs the by-hash queries found.
    async fn verify(
        &self,
        base: u64,
        last: &BlockRef,
        logs: &[RpcLog],
        watch: &EvmWatch,
    ) -> Result<Vec<RpcLog>, ChainError> {
        // Height -> the hash the logs (or the range's end) carry, if any;
        // heights that returned logs are bloom-checked by their logs instead.
        let mut expected: BTreeMap<u64, Option<String>> = BTreeMap::new();
        let mut with_logs = std::collections::HashSet::new();
        for log in logs {
            let (Some(number), Some(hash)) = (&log.block_number, &log.block_hash) else {
                continue;
            };
            let height = quantity(number)?;
            if height > last.height || height <= base {
                return Err(ChainError::garbage(
                    "eth_getLogs",
                    format!("a log of block {height} outside the range asked"),
                ));
            }
            with_logs.insert(height);
            expected.insert(height, Some(format!("{hash:#x}")));
        }
        let window_from = (base + 1).max(last.height.saturating_sub(VERIFY_WINDOW - 1));
        for height in window_from..=last.height {
            expected.entry(height).or_insert(None);
        }
        expected.insert(last.height, Some(last.hash.clone()));
        let calls: Vec<(&str, Value)> = expected
            .keys()
            .map(|h| ("eth_getBlockByNumber", json!([format!("{h:#x}"), false])))
            .collect();
        let headers = self.many(&calls).await?;
        let mut suspicious = Vec::new();
        for ((height, want), header) in expected.iter().zip(headers) {
            let h = RpcHeader::of_block(*height, header?)?;
            let hash = format!("{:#x}", h.hash);
            if want.as_ref().is_some_and(|w| *w != hash) {
                return Err(ChainError::Unavailable(format!(
                    "block {height} differs between endpoints or changed while it was scanned; retrying"
                )));
            }
            let may_pay = h.logs_bloom.as_ref().is_none_or(|bloom| self.may_pay(bloom, watch));
            if !with_logs.contains(height) && may_pay {
                suspicious.push((*height, hash));
            }
        }
        if suspicious.is_empty() {
            return Ok(Vec::new());
        }
        let to_topic = self.to_topic(watch);
        let by_hash = |hash: &str| {
            json!([{"blockHash": hash, "address": self.contract,
                "topics": [Transfer::SIGNATURE_HASH, Value::Null, to_topic]}])
        };
        let calls: Vec<(&str, Value)> = suspicious
            .iter()
            .map(|(_, hash)| ("eth_getLogs", by_hash(hash)))
            .collect();
        let mut found = Vec::new();
        for ((height, hash), answer) in suspicious.iter().zip(self.many(&calls).await?) {
            let answer = match answer {
                // A provider without EIP-234 filters: the one-block range.
                // ("unknown block" is a node without the block: behind.)
                // The one-block range is asked with the block's header, in one
                // batch where the provider takes batches, so the node that
                // answers shows it has that very block.
                Err(ChainError::Rpc { code, message, .. }) if refuses_block_hash_filter(code, &message) => {
                    let filter = json!([{"fromBlock": format!("{height:#x}"), "toBlock": format!("{height:#x}"),
                        "address": self.contract, "topics": [Transfer::SIGNATURE_HASH, Value::Null, to_topic]}]);
                    let mut answers = self
                        .many(&[
                            ("eth_getBlockByNumber", json!([format!("{height:#x}"), false])),
                            ("eth_getLogs", filter),
                        ])
                        .await?
                        .into_iter();
                    let header = answers.next().unwrap_or(Ok(Value::Null))?;
                    if header.get("hash").and_then(Value::as_str) != Some(hash.as_str()) {
                        return Err(ChainError::Behind(format!(
                            "the node asked for the logs of block {height} does not hold it"
                        )));
                    }
                    answers.next().unwrap_or(Ok(Value::Null))
                }
                other => other,
            };
            let more: Vec<RpcLog> = match answer {
                Ok(v) => serde_json::from_value(v).map_err(|e| ChainError::garbage("eth_getLogs", e))?,
                Err(e @ (ChainError::Timeout { .. } | ChainError::RateLimited { .. })) => return Err(e),
                Err(e) => return Err(ChainError::Behind(format!("logs of block {height}: {e}"))),
            };
            // Logs of another block (a one-block range answered off-branch).
            if more
                .iter()
                .any(|l| l.block_hash.is_some_and(|h| format!("{h:#x}") != *hash))
            {
                return Err(ChainError::Unavailable(format!(
                    "block {height} changed while it was checked; retrying"
                )));
            }
            if !more.is_empty() {
                tracing::warn!(asset = %self.asset, block = %hash, logs = more.len(), "eth_getLogs missed logs its block's bloom holds; read by block");
            }
            found.extend(more);
        }
        Ok(found)
    }

    /// Whether a block's bloom filter may hold a `Transfer` of the token to
    /// a watched address (false positives happen; false negatives do not).
    fn may_pay(&self, bloom: &Bloom, watch: &EvmWatch) -> bool {
        bloom.contains_input(BloomInput::Raw(self.contract.as_slice()))
            && bloom.contains_input(BloomInput::Raw(Transfer::SIGNATURE_HASH.as_slice()))
            && watch
                .keys()
                .any(|a| bloom.contains_input(BloomInput::Raw(B256::left_padding_from(a.as_slice()).as_slice())))
    }

    /// The `to` topic filter: the watched addresses, or any when too many.
    fn to_topic(&self, watch: &EvmWatch) -> Value {
        if watch.len() <= MAX_TOPIC_ADDRESSES {
            Value::Array(
                watch
                    .keys()
                    .map(|a| json!(B256::left_padding_from(a.as_slice())))
                    .collect(),
            )
        } else {
            Value::Null
        }
    }

    /// Several calls in one JSON-RPC batch (one node's view), or one by one
    /// for a provider that refuses batches.
    async fn many(&self, calls: &[(&str, Value)]) -> Result<Vec<Result<Value, ChainError>>, ChainError> {
        let retry_batches = self
            .batches_refused_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|at| at.elapsed() >= BATCH_RETRY);
        if retry_batches {
            self.batches.store(true, Ordering::Relaxed);
        }
        if self.batches.load(Ordering::Relaxed) {
            match self.rpc.call_batch(calls).await {
                Err(e) if refuses_batches(&e) => {
                    tracing::warn!(asset = %self.asset, error = %e, "the endpoint refuses JSON-RPC batches; calling one by one (bloom checks still bind logs to blocks)");
                    self.batches.store(false, Ordering::Relaxed);
                    *self.batches_refused_at.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(std::time::Instant::now());
                }
                other => return other,
            }
        }
        let mut out = Vec::with_capacity(calls.len());
        for (method, params) in calls {
            out.push(self.rpc.call_raw(method, params.clone()).await);
        }
        Ok(out)
    }

    /// Turns raw logs into observations; anything not a real transfer of the
    /// configured contract to a watched address is dropped here.
    fn observations(
        &self,
        logs: Vec<RpcLog>,
        watch: &EvmWatch,
    ) -> Result<(Vec<Observation>, Vec<BlockRef>), ChainError> {
        let mut out = Vec::new();
        let mut blocks = BTreeMap::new();
        for log in logs {
            if log.removed || log.topics.first() != Some(&Transfer::SIGNATURE_HASH) || log.topics.len() != 3 {
                continue;
            }
            let emitter: Address = log.address.parse().map_err(|e| ChainError::garbage("log address", e))?;
            if emitter != self.contract {
                continue; // a look-alike token, whatever its name and symbol
            }
            let to = Address::from_word(log.topics[2]);
            let Some(address) = watch.get(&to) else { continue };
            let data =
                hex::decode(log.data.trim_start_matches("0x")).map_err(|e| ChainError::garbage("log data", e))?;
            if data.len() != 32 {
                continue;
            }
            let value = U256::from_be_slice(&data);
            if value.is_zero() {
                continue; // address-poisoning noise, never a payment
            }
            let raw = u128::try_from(value)
                .map_err(|_| ChainError::garbage("transfer value", format!("{value} is too large")))?;
            let amount = match from_base_units(self.asset, raw) {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(asset = %self.asset, error = %e, "transfer value beyond an exact decimal; ignored");
                    continue;
                }
            };
            let (Some(number), Some(block_hash), Some(tx), Some(index)) =
                (log.block_number, log.block_hash, log.transaction_hash, log.log_index)
            else {
                continue; // pending logs carry no position
            };
            let block = BlockRef {
                height: quantity(&number)?,
                hash: format!("{block_hash:#x}"),
            };
            blocks.insert(block.height, block.clone());
            out.push(Observation {
                txid: format!("{tx:#x}"),
                index: u32::try_from(quantity(&index)?).map_err(|e| ChainError::garbage("log index", e))?,
                address: address.clone(),
                tag: None,
                amount,
                block: Some(block),
                maturity: 0,
            });
        }
        Ok((out, blocks.into_values().collect()))
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

    fn demote_endpoint(&self, reason: &str) {
        self.rpc.endpoints().demote_last(reason);
    }

    fn endpoints(&self) -> Vec<crate::http::EndpointStatus> {
        self.rpc.endpoints().statuses()
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
