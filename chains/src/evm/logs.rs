//! Reading transfer logs: `eth_getLogs` in ranges the provider accepts,
//! bound to their blocks (the range's end header in the same batch, bloom
//! filters of the last blocks checked, a bloom hit re-read by block hash),
//! and the logs turned into observations.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use alloy_primitives::{Address, B256, Bloom, BloomInput, U256};
use alloy_sol_types::SolEvent;
use paywatch_state::amount::from_base_units;
use paywatch_state::{BlockRef, Observation};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{EvmSource, EvmWatch, MAX_TOPIC_ADDRESSES, Transfer, quantity, refuses_get_logs};
use crate::ChainError;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RpcLog {
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
pub(super) struct RpcHeader {
    pub(super) number: String,
    pub(super) hash: B256,
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

impl EvmSource {
    /// `eth_getLogs` over `[from, to]`, halving the range while the provider
    /// refuses it as too large. Returns the logs and the last block covered
    /// with its hash.
    ///
    /// The logs are asked in one batch with the header of the range's last
    /// block, so the node that answers the logs shows it has that block: a
    /// node whose head is below `toBlock` answers partial logs without an
    /// error, and its batch then carries no header (not available, retried).
    pub(super) async fn logs(
        &self,
        from: u64,
        to: u64,
        watch: &EvmWatch,
    ) -> Result<(Vec<RpcLog>, BlockRef), ChainError> {
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
    pub(super) async fn verify(
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
    pub(super) fn observations(
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
