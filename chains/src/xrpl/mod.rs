//! The XRP Ledger: addresses (classic and X-address) and the `rippled`
//! backend (JSON-RPC, as rippled, Clio and public servers serve it).
//!
//! - The cursor is the last fully processed validated ledger. Each step pages
//!   through `account_tx` of every watched address over the next ledger range
//!   (`forward`, `marker` until absent, `api_version` sent explicitly).
//! - If the server does not hold the whole range (`complete_ledgers`, or the
//!   `ledger_index_min` it reports searching), the step fails: the cursor
//!   waits, the asset shows unhealthy with the reason, nothing is skipped.
//! - Only validated `Payment`s to a watched address, not from one, with
//!   `tesSUCCESS`, credit — and only `meta.delivered_amount` as a drops
//!   string (never `Amount`/`DeliverMax`: partial payments).
//! - Validated is final: a payment confirms on sight.

use std::collections::HashSet;
use std::sync::Mutex;

use paywatch_state::{BlockRef, ChainTip};
use serde_json::{Value, json};

use crate::rpc::RpcClient;
use crate::source::{BoxFuture, ChainSource, ScanBatch, ScanRequest};
use crate::{ChainError, Network};

mod address;
mod payments;

pub use self::address::{XrpAddress, parse_xrp_address};
use self::payments::index_of;
pub use self::payments::{covers, payment_observation};

/// A recorded rippled answer from `testdata/xrp/`.
#[cfg(test)]
fn fixture(name: &str) -> Value {
    let path = format!("{}/testdata/xrp/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).expect("fixture json")
}

/// Seconds from 1970 to the Ripple epoch (2000-01-01T00:00:00Z), which
/// `close_time` counts from.
const RIPPLE_EPOCH: i64 = 946_684_800;

/// When a `ledger` answer's ledger closed: `ledger.close_time` (seconds
/// since the Ripple epoch), else `ledger.close_time_iso` (API v2).
fn close_time(answer: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
    let ledger = answer.get("ledger")?;
    if let Some(seconds) = ledger.get("close_time").and_then(Value::as_i64) {
        return chrono::DateTime::from_timestamp(seconds.checked_add(RIPPLE_EPOCH)?, 0);
    }
    let iso = ledger.get("close_time_iso")?.as_str()?;
    chrono::DateTime::parse_from_rfc3339(iso)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// `lsfRequireDestTag`: the account refuses payments without a tag.
const LSF_REQUIRE_DEST_TAG: u64 = 0x0002_0000;
const PAGE_LIMIT: u32 = 200;

pub struct RippledSource {
    rpc: RpcClient,
    network: Network,
    api_version: u8,
    max_blocks_per_poll: u64,
    /// Configured addresses, checked for `RequireDest` at start.
    addresses: Vec<String>,
    warnings: Mutex<Vec<String>>,
}

impl RippledSource {
    pub fn new(
        rpc: RpcClient,
        network: Network,
        api_version: u8,
        max_blocks_per_poll: u64,
        addresses: Vec<String>,
    ) -> RippledSource {
        RippledSource {
            rpc,
            network,
            api_version,
            max_blocks_per_poll: max_blocks_per_poll.max(1),
            addresses,
            warnings: Mutex::new(Vec::new()),
        }
    }

    /// One rippled call; rippled reports errors inside `result`.
    async fn call(&self, method: &str, mut params: Value) -> Result<Value, ChainError> {
        params["api_version"] = json!(self.api_version);
        let result = self.rpc.call_raw(method, json!([params])).await?;
        if result.get("status").and_then(Value::as_str) == Some("error") {
            let error = result
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("error")
                .to_string();
            let message = result.get("error_message").and_then(Value::as_str).unwrap_or_default();
            return Err(ChainError::Rpc {
                method: method.to_string(),
                code: 0,
                message: format!("{error}: {message}"),
            });
        }
        Ok(result)
    }

    /// The server's `network_id`, where it reports one (mainnet 0, testnet
    /// 1, devnet 2), must be the configured network's; a standalone server
    /// (`regtest`) may have any.
    async fn check_network(&self) -> Result<(), ChainError> {
        let info = self.call("server_info", json!({})).await?;
        let Some(id) = info["info"].get("network_id").and_then(Value::as_u64) else {
            return Ok(());
        };
        let fits = match self.network {
            Network::Mainnet => id == 0,
            Network::Testnet => matches!(id, 1 | 2),
            Network::Regtest => true,
        };
        if !fits {
            return Err(ChainError::WrongChain(format!(
                "the rippled server is on network_id {id}, not XRP {}",
                self.network
            )));
        }
        Ok(())
    }

    async fn complete_ledgers(&self) -> Result<String, ChainError> {
        let info = self.call("server_info", json!({})).await?;
        Ok(info["info"]["complete_ledgers"].as_str().unwrap_or("empty").to_string())
    }

    async fn ledger_hash(&self, index: u64) -> Result<String, ChainError> {
        let ledger = match self.call("ledger", json!({"ledger_index": index})).await {
            Err(ChainError::Rpc { message, .. }) if message.starts_with("lgrNotFound") => {
                return Err(ChainError::Behind(format!("the server does not have ledger {index}")));
            }
            other => other?,
        };
        ledger["ledger_hash"]
            .as_str()
            .or_else(|| ledger["ledger"]["ledger_hash"].as_str())
            .map(str::to_string)
            .ok_or_else(|| ChainError::garbage("ledger", "no ledger_hash"))
    }

    /// Every `account_tx` entry of `account` over `[from, to]`, all pages.
    async fn account_tx(&self, account: &str, from: u64, to: u64) -> Result<Vec<Value>, ChainError> {
        let mut entries = Vec::new();
        let mut marker: Option<Value> = None;
        loop {
            let mut params = json!({
                "account": account, "ledger_index_min": from, "ledger_index_max": to,
                "forward": true, "binary": false, "limit": PAGE_LIMIT,
            });
            if let Some(m) = &marker {
                params["marker"] = m.clone();
            }
            let page = match self.call("account_tx", params).await {
                Err(ChainError::Rpc { message, .. })
                    if message.starts_with("lgrIdxMalformed") || message.starts_with("lgrIdxsInvalid") =>
                {
                    return Err(ChainError::History(format!(
                        "the server cannot search ledgers {from}-{to} for {account}: {message}"
                    )));
                }
                Err(ChainError::Rpc { message, .. }) if message.starts_with("actNotFound") => return Ok(entries),
                other => other?,
            };
            // The range the server says it searched must be the one asked:
            // API v1 silently clamps to what it holds (a later start is a
            // gap; an earlier end is a server behind, or another server
            // behind a load balancer). v1 always states it; v2 may omit it
            // (then it refuses ranges it lacks with lgrIdxMalformed).
            let searched = (
                page.get("ledger_index_min").and_then(index_of),
                page.get("ledger_index_max").and_then(index_of),
            );
            match searched {
                (Some(min), _) if min > from => {
                    return Err(ChainError::History(format!(
                        "the server searched from ledger {min}, not {from}: its history has a gap"
                    )));
                }
                (_, Some(max)) if max < to => {
                    return Err(ChainError::Behind(format!(
                        "the server searched up to ledger {max}, not {to}"
                    )));
                }
                (None, _) | (_, None) if self.api_version == 1 => {
                    return Err(ChainError::garbage(
                        "account_tx",
                        "API v1 answer without the ledger range it searched",
                    ));
                }
                _ => {}
            }
            let transactions = page["transactions"]
                .as_array()
                .ok_or_else(|| ChainError::garbage("account_tx", "no transactions"))?;
            entries.extend(transactions.iter().cloned());
            match page.get("marker") {
                Some(m) if !m.is_null() => marker = Some(m.clone()),
                _ => return Ok(entries),
            }
        }
    }
}

impl ChainSource for RippledSource {
    fn backend(&self) -> &'static str {
        "rippled"
    }

    fn preflight(&self) -> BoxFuture<'_, Result<(), ChainError>> {
        Box::pin(async move {
            self.check_network().await?;
            let mut warnings = Vec::new();
            for address in &self.addresses {
                match self
                    .call("account_info", json!({"account": address, "ledger_index": "validated"}))
                    .await
                {
                    Ok(info) => {
                        let flags = info["account_data"]["Flags"].as_u64().unwrap_or(0);
                        if flags & LSF_REQUIRE_DEST_TAG == 0 {
                            warnings.push(format!(
                                "{address} does not have RequireDest set: payments without a destination tag can reach it \
                                 (they are recorded as unmatched); set asfRequireDest on the account"
                            ));
                        }
                    }
                    Err(ChainError::Rpc { message, .. }) if message.starts_with("actNotFound") => {
                        warnings.push(format!("{address} is not funded on the ledger yet"));
                    }
                    Err(e) => return Err(e),
                }
            }
            *self.warnings.lock().unwrap_or_else(|p| p.into_inner()) = warnings;
            Ok(())
        })
    }

    fn warnings(&self) -> Vec<String> {
        self.warnings.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn endpoints(&self) -> &crate::http::Endpoints {
        self.rpc.endpoints()
    }

    fn tip(&self) -> BoxFuture<'_, Result<ChainTip, ChainError>> {
        Box::pin(async move {
            let ledger = self.call("ledger", json!({"ledger_index": "validated"})).await?;
            let index = ledger
                .get("ledger_index")
                .and_then(index_of)
                .ok_or_else(|| ChainError::garbage("ledger", "no ledger_index"))?;
            let hash = ledger["ledger_hash"]
                .as_str()
                .ok_or_else(|| ChainError::garbage("ledger", "no ledger_hash"))?
                .to_string();
            self.rpc.endpoints().note_height(index);
            Ok(ChainTip {
                height: index,
                hash,
                finalized: Some(index),
            })
        })
    }

    fn tip_time<'a>(
        &'a self,
        tip: &'a ChainTip,
    ) -> BoxFuture<'a, Result<Option<chrono::DateTime<chrono::Utc>>, ChainError>> {
        Box::pin(async move {
            match self.call("ledger", json!({"ledger_index": tip.height})).await {
                Ok(answer) => Ok(close_time(&answer)),
                Err(ChainError::Rpc { message, .. }) if message.starts_with("lgrNotFound") => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    fn scan<'a>(&'a self, req: ScanRequest<'a>) -> BoxFuture<'a, Result<ScanBatch, ChainError>> {
        Box::pin(async move {
            let from = req.from.height + 1;
            let to = req.to.min(req.from.height + self.max_blocks_per_poll);
            let mut batch = ScanBatch {
                cursor: Some(req.from.clone()),
                ..ScanBatch::default()
            };
            if to < from {
                return Ok(batch);
            }
            let complete = self.complete_ledgers().await?;
            if !covers(&complete, from, to) {
                return Err(ChainError::History(format!(
                    "the server holds ledgers {complete:?}, not all of {from}-{to}; waiting for a server with that history"
                )));
            }
            let mut seen = HashSet::new();
            for account in &req.watch.addresses {
                for entry in self.account_tx(account, from, to).await? {
                    if let Some(obs) = payment_observation(&entry, &req.watch.addresses)
                        && obs.block.as_ref().is_some_and(|b| (from..=to).contains(&b.height))
                        && seen.insert(obs.txid.clone())
                    {
                        batch.observations.push(obs);
                    }
                }
            }
            batch.observations.sort_by_key(|o| o.block.as_ref().map(|b| b.height));
            let cursor = BlockRef {
                height: to,
                hash: self.ledger_hash(to).await?,
            };
            batch.blocks = vec![cursor.clone()];
            batch.cursor = Some(cursor);
            Ok(batch)
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn a_ledger_close_time_counts_from_the_ripple_epoch() {
        // The shape `ledger` answers in (docs: ledger.close_time, and
        // close_time_iso in API v2): 2020-07-16T20:53:40Z both ways.
        let seconds = json!({"ledger": {"close_time": 648_248_020, "ledger_index": "56865245"}});
        let iso = json!({"ledger": {"close_time_iso": "2020-07-16T20:53:40Z"}});
        let expected = chrono::DateTime::parse_from_rfc3339("2020-07-16T20:53:40Z").expect("a valid time");
        assert_eq!(super::close_time(&seconds), Some(expected.into()));
        assert_eq!(super::close_time(&iso), Some(expected.into()));
        assert_eq!(super::close_time(&json!({"ledger": {}})), None);
    }
}
