//! What credits on Tron: a block's header and transaction ids, the check
//! that transaction infos belong to the block asked for, and the `Transfer`
//! logs of the configured contract to watched addresses.

use paywatch_state::amount::from_base_units;
use paywatch_state::{Asset, BlockRef, Observation};
use serde_json::Value;

use super::{TronSource, TronWatch};
use crate::ChainError;

/// keccak256("Transfer(address,address,uint256)"), as Tron logs show it (no 0x).
const TRANSFER_TOPIC: &str = "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";

/// A block by number, read from `getblockbynum` / `getnowblock`.
pub struct TronBlock {
    pub(super) number: u64,
    pub(super) id: String,
    pub(super) parent: String,
    /// The ids of its transactions (`transactions[].txID`; absent when none).
    pub(super) txids: Vec<String>,
    /// `raw_data.timestamp`, milliseconds since 1970.
    pub(super) time: Option<chrono::DateTime<chrono::Utc>>,
}

pub(super) fn parse_block(v: &Value) -> Option<TronBlock> {
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
        time: raw
            .get("timestamp")
            .and_then(Value::as_i64)
            .and_then(chrono::DateTime::from_timestamp_millis),
    })
}

/// Binds transaction infos to the block they were asked for: one info per
/// transaction of the block, same ids. A node behind a load balancer that
/// lacks the block answers `[]` or `{}` for it, which must never read as
/// "no payments".
pub(super) fn check_infos_belong(block: &TronBlock, infos: &Value) -> Result<(), ChainError> {
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::Network;
    use crate::http::Endpoints;
    use crate::tron::{USDT_TRC20_CONTRACT, parse_tron_address};
    use std::collections::HashMap;

    fn fixture(name: &str) -> Value {
        let path = format!("{}/testdata/tron/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).expect("json")
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
}
