//! What credits: an `account_tx` entry turned into an observation (only a
//! validated, successful `Payment` to a watched address, by its
//! `delivered_amount` in drops), and whether a server's history covers a
//! ledger range.

use std::collections::HashSet;

use paywatch_state::amount::from_base_units;
use paywatch_state::{Asset, BlockRef, Observation};
use serde_json::Value;

/// 10^17 drops: more XRP than exists.
const MAX_DROPS: u64 = 100_000_000_000_000_000;

/// A ledger index, a number in API v2 and a string in v1.
pub(super) fn index_of(v: &Value) -> Option<u64> {
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

#[cfg(test)]
mod tests {
    use crate::xrpl::fixture;
    use serde_json::json;

    use super::*;

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
