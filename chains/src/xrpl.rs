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

use paywatch_state::amount::from_base_units;
use paywatch_state::{Asset, BlockRef, ChainTip, Observation};
use serde_json::{Value, json};

use crate::address::AddressError;
use crate::rpc::RpcClient;
use crate::source::{BoxFuture, ChainSource, ScanBatch, ScanRequest};
use crate::{ChainError, Network};

/// `lsfRequireDestTag`: the account refuses payments without a tag.
const LSF_REQUIRE_DEST_TAG: u64 = 0x0002_0000;
/// 10^17 drops: more XRP than exists.
const MAX_DROPS: u64 = 100_000_000_000_000_000;
const PAGE_LIMIT: u32 = 200;

/// An XRP address: the classic form, and the tag an X-address carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XrpAddress {
    pub classic: String,
    pub tag: Option<u32>,
}

fn classic_from_account(account: &[u8]) -> String {
    let mut payload = vec![0u8];
    payload.extend_from_slice(account);
    bs58::encode(payload)
        .with_alphabet(bs58::Alphabet::RIPPLE)
        .with_check()
        .into_string()
}

/// Parses a classic (`r...`) or X-address (`X...` mainnet, `T...` test
/// networks), checksums included.
pub fn parse_xrp_address(network: Network, text: &str) -> Result<XrpAddress, AddressError> {
    let t = text.trim();
    let invalid = || AddressError::Invalid(text.to_string(), "XRP");
    let decoded = bs58::decode(t)
        .with_alphabet(bs58::Alphabet::RIPPLE)
        .with_check(None)
        .into_vec()
        .map_err(|_| invalid())?;
    match (t.chars().next(), decoded.len()) {
        (Some('r'), 21) if decoded[0] == 0 => Ok(XrpAddress {
            classic: classic_from_account(&decoded[1..]),
            tag: None,
        }),
        (Some('X' | 'T'), 31) => {
            let mainnet = match decoded[..2] {
                [0x05, 0x44] => true,
                [0x04, 0x93] => false,
                _ => return Err(invalid()),
            };
            if mainnet != (network == Network::Mainnet) {
                let found = if mainnet { "mainnet" } else { "testnet" };
                return Err(AddressError::WrongNetwork {
                    address: text.to_string(),
                    found,
                    expected: network,
                });
            }
            let tag_bytes: [u8; 4] = decoded[23..27].try_into().map_err(|_| invalid())?;
            let tag = match decoded[22] {
                0 if tag_bytes == [0; 4] => None,
                1 => Some(u32::from_le_bytes(tag_bytes)),
                _ => return Err(invalid()),
            };
            if decoded[27..] != [0; 4] {
                return Err(invalid()); // 64-bit tags are not part of the format
            }
            Ok(XrpAddress {
                classic: classic_from_account(&decoded[2..22]),
                tag,
            })
        }
        _ => Err(invalid()),
    }
}

/// A ledger index, a number in API v2 and a string in v1.
fn index_of(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// The credit one `account_tx` entry (either API version) makes to a watched
/// address, if any. Everything that is not a validated, successful XRP
/// payment to a watched address from elsewhere credits nothing.
pub fn payment_observation(entry: &Value, watched: &HashSet<String>) -> Option<Observation> {
    // v2: tx_json + top-level hash; v1: tx with its own hash; streams: transaction.
    let tx = entry
        .get("tx_json")
        .or_else(|| entry.get("tx"))
        .or_else(|| entry.get("transaction"))?;
    let meta = entry.get("meta").or_else(|| entry.get("metaData"))?;
    if entry.get("validated") != Some(&Value::Bool(true)) {
        return None;
    }
    if tx.get("TransactionType")?.as_str()? != "Payment" {
        return None;
    }
    let destination = tx.get("Destination")?.as_str()?;
    let account = tx.get("Account")?.as_str()?;
    if !watched.contains(destination) || watched.contains(account) {
        return None; // not to us, or our own outgoing payment
    }
    if meta.get("TransactionResult")?.as_str()? != "tesSUCCESS" {
        return None;
    }
    // delivered_amount, never Amount/DeliverMax: a partial payment delivers less.
    let drops: u64 = meta.get("delivered_amount")?.as_str()?.parse().ok()?;
    if drops == 0 || drops > MAX_DROPS {
        return None;
    }
    let tag = match tx.get("DestinationTag") {
        None | Some(Value::Null) => None,
        Some(t) => Some(u32::try_from(t.as_u64()?).ok()?),
    };
    let hash = entry
        .get("hash")
        .or_else(|| tx.get("hash"))?
        .as_str()?
        .to_ascii_uppercase();
    let ledger = entry
        .get("ledger_index")
        .or_else(|| tx.get("ledger_index"))
        .and_then(index_of)?;
    let ledger_hash = entry
        .get("ledger_hash")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Some(Observation {
        txid: hash,
        index: 0,
        address: destination.to_string(),
        tag,
        amount: from_base_units(Asset::Xrp, u128::from(drops)).ok()?,
        block: Some(BlockRef {
            height: ledger,
            hash: ledger_hash,
        }),
        maturity: 0,
    })
}

/// Whether `complete_ledgers` ("32570-6595042", "a-b,c-d", "empty") holds
/// every ledger of `[from, to]`.
pub fn covers(complete_ledgers: &str, from: u64, to: u64) -> bool {
    complete_ledgers.split(',').any(|range| {
        let mut bounds = range.trim().splitn(2, '-').map(|n| n.trim().parse::<u64>());
        match (bounds.next(), bounds.next()) {
            (Some(Ok(lo)), Some(Ok(hi))) => lo <= from && to <= hi,
            (Some(Ok(single)), None) => single == from && to == single,
            _ => false,
        }
    })
}

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
            let watched: HashSet<String> = req.watch.addresses.iter().cloned().collect();
            let mut seen = HashSet::new();
            for account in &req.watch.addresses {
                for entry in self.account_tx(account, from, to).await? {
                    if let Some(obs) = payment_observation(&entry, &watched)
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
    use super::*;

    fn fixture(name: &str) -> Value {
        let path = format!("{}/testdata/xrp/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).expect("fixture json")
    }

    #[test]
    fn x_addresses_decode_like_xrpl_js() {
        let vectors = fixture("xrpljs_xaddress_test_vectors.json");
        for row in vectors["vectors"].as_array().expect("rows") {
            let classic = row[0].as_str().expect("classic");
            let tag = row[1].as_u64().map(|t| t as u32);
            let main = parse_xrp_address(Network::Mainnet, row[2].as_str().expect("x")).expect("mainnet X-address");
            assert_eq!(
                main,
                XrpAddress {
                    classic: classic.to_string(),
                    tag
                }
            );
            let test = parse_xrp_address(Network::Testnet, row[3].as_str().expect("t")).expect("testnet X-address");
            assert_eq!(
                test,
                XrpAddress {
                    classic: classic.to_string(),
                    tag
                }
            );
            assert!(matches!(
                parse_xrp_address(Network::Mainnet, row[3].as_str().expect("t")),
                Err(AddressError::WrongNetwork { .. })
            ));
        }
        assert_eq!(
            parse_xrp_address(Network::Mainnet, "r9cZA1mLK5R5Am25ArfXFmqgNwjZgnfk59")
                .expect("classic")
                .tag,
            None
        );
        assert!(
            parse_xrp_address(Network::Mainnet, "r9cZA1mLK5R5Am25ArfXFmqgNwjZgnfk58").is_err(),
            "bad checksum"
        );
        assert!(parse_xrp_address(Network::Mainnet, "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa").is_err());
    }

    fn watched(addresses: &[&str]) -> HashSet<String> {
        addresses.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn the_partial_payment_exploit_credits_only_what_was_delivered() {
        let mut entry = fixture("xrpljs_stream_partial_payment_xrp_exploit.json");
        // The recorded stream message omits the hash that account_tx always carries.
        entry["transaction"]["hash"] = json!("E08D6E9754025BA2534A78707605E0601F03ACE063687A0CA1BDDACFCD1698C7");
        let destination = entry["transaction"]["Destination"]
            .as_str()
            .expect("destination")
            .to_string();
        let obs = payment_observation(&entry, &watched(&[&destination])).expect("a credit");
        assert_eq!(
            obs.amount.to_string(),
            "0.004456",
            "delivered_amount, not the 10^9 XRP Amount"
        );
        let v2 = fixture("xrpljs_partial_payment_xrp_v2.json");
        let mut v2 = v2.clone();
        v2["validated"] = json!(true);
        v2["ledger_index"] = json!(5);
        let dest = v2["tx_json"]["Destination"].as_str().expect("destination").to_string();
        let obs = payment_observation(&v2, &watched(&[&dest])).expect("a credit");
        assert_eq!(obs.amount.to_string(), "1.000000", "DeliverMax 2 XRP, delivered 1");
    }

    #[test]
    fn non_payments_failures_and_tokens_credit_nothing() {
        let account_tx = fixture("xrpljs_account_tx_v2_response.json");
        for entry in account_tx["result"]["transactions"].as_array().expect("entries") {
            let dest = entry["tx_json"]["Destination"]
                .as_str()
                .unwrap_or("ra5nK24KXen9AHvsdFTKHSANinZseWnPcX");
            assert_eq!(
                payment_observation(entry, &watched(&[dest])),
                None,
                "CheckCreate / DepositPreauth"
            );
        }
        let iou = fixture("xrpljs_partial_payment_iou_v2.json");
        let mut iou = iou.clone();
        iou["validated"] = json!(true);
        let dest = iou["tx_json"]["Destination"].as_str().expect("destination").to_string();
        assert_eq!(
            payment_observation(&iou, &watched(&[&dest])),
            None,
            "a token amount is not XRP"
        );
        let failed = fixture("mainnet_ledger11119604_payment_tecPATH_DRY.json");
        let entry = json!({"tx": failed.clone(), "meta": failed["metaData"], "validated": true});
        let dest = failed["Destination"].as_str().expect("destination").to_string();
        assert_eq!(
            payment_observation(&entry, &watched(&[&dest])),
            None,
            "tecPATH_DRY delivers nothing"
        );
    }

    #[test]
    fn history_ranges() {
        assert!(covers("32570-6595042", 100_000, 100_010));
        assert!(!covers("32570-6595042", 100, 40_000));
        assert!(covers("24900901-24900984,24901116-24901158", 24901120, 24901150));
        assert!(
            !covers("24900901-24900984,24901116-24901158", 24900980, 24901120),
            "the gap"
        );
        assert!(!covers("empty", 1, 1));
    }
}
