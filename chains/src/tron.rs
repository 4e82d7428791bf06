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

use paywatch_state::amount::from_base_units;
use paywatch_state::{Asset, BlockRef, ChainTip, Observation};
use serde_json::{Value, json};

use crate::address::AddressError;
use crate::http::{Endpoints, Verdict, redact_url};
use crate::source::{BoxFuture, ChainSource, ScanBatch, ScanRequest, WatchSet};
use crate::walk::{BlockReader, Linked, walk};
use crate::watch::WatchCache;
use crate::{ChainError, Network, Secret};

/// keccak256("Transfer(address,address,uint256)"), as Tron logs show it (no 0x).
const TRANSFER_TOPIC: &str = "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";

/// USDT on Tron.
pub const USDT_TRC20_CONTRACT: &str = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t";

/// Parses a Tron address in base58 (`T...`) or hex (`41...`, `0x...`) form;
/// returns the 20-byte account and the canonical base58 form.
pub fn parse_tron_address(text: &str) -> Result<([u8; 20], String), AddressError> {
    let t = text.trim();
    let invalid = || AddressError::Invalid(text.to_string(), "Tron");
    let account: [u8; 20] = if t.starts_with('T') {
        let data = bs58::decode(t)
            .with_check(Some(0x41))
            .into_vec()
            .map_err(|_| invalid())?;
        data.get(1..).and_then(|a| a.try_into().ok()).ok_or_else(invalid)?
    } else {
        let hex_part = t
            .strip_prefix("0x")
            .or_else(|| t.strip_prefix("41").filter(|h| h.len() == 40))
            .ok_or_else(invalid)?;
        hex::decode(hex_part)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(invalid)?
    };
    Ok((account, base58_of(&account)))
}

/// The base58 form of a 20-byte account.
pub fn base58_of(account: &[u8; 20]) -> String {
    let mut payload = vec![0x41];
    payload.extend_from_slice(account);
    bs58::encode(payload).with_check().into_string()
}

pub struct TronSource {
    endpoints: Endpoints,
    api_key: Option<Secret>,
    contract: [u8; 20],
    network: Network,
    max_blocks_per_poll: u64,
    watch_cache: WatchCache<TronWatch>,
}

/// Watched accounts, by their 20 bytes, to their canonical address.
type TronWatch = HashMap<[u8; 20], String>;

/// The genesis block IDs of Tron's public networks: mainnet, then the Nile
/// and Shasta testnets. A private network (`regtest`) has its own.
const MAINNET_GENESIS: &str = "00000000000000001ebf88508a03865c71d452e25f4d51194196a1d22b6653dc";
const TESTNET_GENESES: [&str; 2] = [
    "0000000000000000d698d4192c56cb6be724a558448e2684802de4d6cd8690dc",
    "0000000000000000de1aa88295e1fcf982742f773e0419c5a9c134c994a9059e",
];

/// A block by number, read from `getblockbynum` / `getnowblock`.
pub struct TronBlock {
    number: u64,
    id: String,
    parent: String,
    /// The ids of its transactions (`transactions[].txID`; absent when none).
    txids: Vec<String>,
}

fn parse_block(v: &Value) -> Option<TronBlock> {
    let raw = v.get("block_header")?.get("raw_data")?;
    let txids = match v.get("transactions") {
        None => Vec::new(),
        Some(list) => list
            .as_array()?
            .iter()
            .map(|tx| tx.get("txID").and_then(Value::as_str).map(str::to_string))
            .collect::<Option<Vec<_>>>()?,
    };
    Some(TronBlock {
        number: raw.get("number").and_then(Value::as_u64).unwrap_or(0),
        id: v.get("blockID")?.as_str()?.to_string(),
        parent: raw
            .get("parentHash")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        txids,
    })
}

/// Binds transaction infos to the block they were asked for: one info per
/// transaction of the block, same ids. A node behind a load balancer that
/// lacks the block answers `[]` or `{}` for it, which must never read as
/// "no payments".
fn check_infos_belong(block: &TronBlock, infos: &Value) -> Result<(), ChainError> {
    let ids: std::collections::HashSet<&str> = match infos {
        Value::Array(list) => list
            .iter()
            .map(|i| i.get("id").and_then(Value::as_str).unwrap_or_default())
            .collect(),
        Value::Null => std::collections::HashSet::new(),
        _ => return Err(ChainError::garbage("gettransactioninfobyblocknum", "not a list")),
    };
    let expected: std::collections::HashSet<&str> = block.txids.iter().map(String::as_str).collect();
    if ids != expected {
        return Err(ChainError::Behind(format!(
            "block {} has {} transactions but the node answered {} transaction infos for it",
            block.number,
            expected.len(),
            ids.len()
        )));
    }
    Ok(())
}

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

    /// The watched transfers in one block's transaction infos.
    pub fn transfers(
        &self,
        infos: &Value,
        block: &BlockRef,
        watch: &TronWatch,
    ) -> Result<Vec<Observation>, ChainError> {
        let Some(infos) = infos.as_array() else {
            return Ok(Vec::new()); // `{}`: a block without transactions
        };
        let mut out = Vec::new();
        for info in infos {
            // receipt.result, not the top-level `result` (absent on success)
            // and not contractResult (seen false on a successful transfer).
            if info
                .get("receipt")
                .and_then(|r| r.get("result"))
                .and_then(Value::as_str)
                != Some("SUCCESS")
            {
                continue;
            }
            if info
                .get("blockNumber")
                .and_then(Value::as_u64)
                .is_some_and(|n| n != block.height)
            {
                return Err(ChainError::garbage(
                    "gettransactioninfobyblocknum",
                    "a transaction of another block",
                ));
            }
            let Some(txid) = info.get("id").and_then(Value::as_str) else {
                continue;
            };
            let logs = info.get("log").and_then(Value::as_array).cloned().unwrap_or_default();
            for (position, log) in logs.iter().enumerate() {
                let emitter = log
                    .get("address")
                    .and_then(Value::as_str)
                    .and_then(|a| hex::decode(a).ok());
                if emitter.as_deref() != Some(&self.contract[..]) {
                    continue; // a look-alike token
                }
                let topics: Vec<&str> = log
                    .get("topics")
                    .and_then(Value::as_array)
                    .map(|t| t.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                if topics.len() != 3 || topics[0] != TRANSFER_TOPIC {
                    continue;
                }
                let Some(to) = hex::decode(topics[2])
                    .ok()
                    .and_then(|b| b.get(12..32).and_then(|a| <[u8; 20]>::try_from(a).ok()))
                else {
                    continue;
                };
                let Some(address) = watch.get(&to) else { continue };
                let data = log
                    .get("data")
                    .and_then(Value::as_str)
                    .and_then(|d| hex::decode(d).ok())
                    .unwrap_or_default();
                if data.len() != 32 || data[..16].iter().any(|b| *b != 0) {
                    continue; // not a uint256 we can hold exactly
                }
                let value = u128::from_be_bytes(data[16..].try_into().unwrap_or_default());
                if value == 0 {
                    continue; // address-poisoning noise
                }
                let Ok(amount) = from_base_units(Asset::UsdtTrc20, value) else {
                    continue;
                };
                out.push(Observation {
                    txid: txid.to_string(),
                    index: position as u32,
                    address: address.clone(),
                    tag: None,
                    amount,
                    block: Some(block.clone()),
                    maturity: 0,
                });
            }
        }
        Ok(out)
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

    fn fixture(name: &str) -> Value {
        let path = format!("{}/testdata/tron/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).expect("json")
    }

    #[test]
    fn usdt_contract_base58_and_hex_are_one_address() {
        let (bytes, canonical) = parse_tron_address(USDT_TRC20_CONTRACT).expect("base58");
        assert_eq!(hex::encode(bytes), "a614f803b6fd780986a42c78ec9c7f77e6ded13c");
        assert_eq!(canonical, USDT_TRC20_CONTRACT);
        for form in [
            "41a614f803b6fd780986a42c78ec9c7f77e6ded13c",
            "0xa614f803b6fd780986a42c78ec9c7f77e6ded13c",
        ] {
            assert_eq!(parse_tron_address(form).expect("hex").1, USDT_TRC20_CONTRACT);
        }
        for bad in [
            "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6u",
            "41a614f803b6fd780986a42c78ec9c7f77e6ded1",
            "bc1qxyz",
            "",
        ] {
            assert!(parse_tron_address(bad).is_err(), "{bad}");
        }
    }

    fn source() -> TronSource {
        let endpoints =
            Endpoints::new(vec!["http://127.0.0.1:1".into()], std::time::Duration::from_secs(1)).expect("endpoints");
        TronSource::new(endpoints, None, USDT_TRC20_CONTRACT, Network::Mainnet, 10).expect("source")
    }

    #[test]
    fn a_real_successful_usdt_transfer_credits_3_5() {
        let info = fixture("mainnet_usdt_transfer_SUCCESS_txinfo.json");
        let (to, canonical) = parse_tron_address("41cdae4e9a6287333a3f7df432b050af7b17e79e63").expect("recipient");
        let watch = HashMap::from([(to, canonical.clone())]);
        let block = BlockRef {
            height: 66861993,
            hash: "b".into(),
        };
        let found = source().transfers(&json!([info]), &block, &watch).expect("parse");
        assert_eq!(found.len(), 1);
        assert_eq!(
            (found[0].amount.to_string().as_str(), found[0].address.as_str()),
            ("3.500000", canonical.as_str())
        );
        assert_eq!(
            found[0].txid,
            "b69c51db8f9d974e6a38c76852c8ce1adcb682dbacb25ad8ad4f6876121fe9dc"
        );
    }

    #[test]
    fn out_of_energy_and_other_contracts_credit_nothing() {
        let failed = fixture("mainnet_usdt_transfer_OUT_OF_ENERGY_txinfo.json");
        let mut fake = fixture("mainnet_usdt_transfer_SUCCESS_txinfo.json");
        fake["log"][0]["address"] = json!("b614f803b6fd780986a42c78ec9c7f77e6ded13c");
        let mut zero = fixture("mainnet_usdt_transfer_SUCCESS_txinfo.json");
        zero["log"][0]["data"] = json!("0".repeat(64));
        let (to, canonical) = parse_tron_address("41cdae4e9a6287333a3f7df432b050af7b17e79e63").expect("recipient");
        let watch = HashMap::from([(to, canonical)]);
        for (what, info) in [
            ("out of energy", failed),
            ("look-alike contract", fake),
            ("zero value", zero),
        ] {
            let block = BlockRef {
                height: info["blockNumber"].as_u64().unwrap_or(0),
                hash: "b".into(),
            };
            assert!(
                source()
                    .transfers(&json!([info]), &block, &watch)
                    .expect("parse")
                    .is_empty(),
                "{what}"
            );
        }
    }

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
