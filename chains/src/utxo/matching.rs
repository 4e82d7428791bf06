//! Finding watched outputs: the script-to-address map a scan looks up, and
//! the matching of raw blocks (the hot path of a catch-up) and of mempool
//! transactions.

use std::collections::HashMap;

use bitcoin::{Script, ScriptBuf, Txid};
use paywatch_state::amount::from_base_units;
use paywatch_state::{Asset, BlockRef, Observation};

use super::address::{UtxoAddress, parse_btc, parse_ltc};
use super::block::{RawBlock, decode_block};
use crate::address::AddressError;
use crate::{ChainError, Network};

/// Scripts watched, mapped to their canonical address text.
pub type WatchMap = HashMap<ScriptBuf, String>;

/// Parses a BTC or LTC address for `network`.
pub fn parse_utxo_address(asset: Asset, network: Network, text: &str) -> Result<UtxoAddress, AddressError> {
    match asset {
        Asset::Ltc => parse_ltc(network, text),
        _ => parse_btc(network, text),
    }
}

/// Builds the script -> address map for a set of canonical addresses.
pub fn watch_map(asset: Asset, network: Network, addresses: impl IntoIterator<Item = impl AsRef<str>>) -> WatchMap {
    addresses
        .into_iter()
        .filter_map(|a| parse_utxo_address(asset, network, a.as_ref()).ok())
        .map(|a| (a.script, a.canonical))
        .collect()
}

/// Groups the watched outputs of one transaction per script (several outputs
/// to one address are one transfer, keyed by the first output index).
pub(super) fn collect_matches<'s>(
    asset: Asset,
    txid: impl FnOnce() -> Txid,
    maturity: u32,
    outputs: impl Iterator<Item = (u32, u64, &'s [u8])>,
    watch: &WatchMap,
    block: Option<&BlockRef>,
    out: &mut Vec<Observation>,
) -> Result<(), ChainError> {
    let mut hits: Vec<(u32, &String, u64)> = Vec::new();
    for (vout, sats, script) in outputs {
        if let Some(address) = watch.get(Script::from_bytes(script)) {
            match hits.iter_mut().find(|(_, a, _)| *a == address) {
                Some(hit) => hit.2 = hit.2.saturating_add(sats),
                None => hits.push((vout, address, sats)),
            }
        }
    }
    if hits.is_empty() {
        return Ok(());
    }
    let txid = txid().to_string();
    for (vout, address, sats) in hits {
        out.push(Observation {
            txid: txid.clone(),
            index: vout,
            address: address.clone(),
            tag: None,
            amount: from_base_units(asset, u128::from(sats)).map_err(|e| ChainError::garbage("output value", e))?,
            block: block.cloned(),
            maturity,
        });
    }
    Ok(())
}

/// Every watched transfer in one raw block (the hot path of a scan).
pub fn match_block(
    asset: Asset,
    bytes: &[u8],
    here: &BlockRef,
    watch: &WatchMap,
) -> Result<Vec<Observation>, ChainError> {
    let block = decode_block(bytes).map_err(|e| ChainError::garbage(format!("block {}", here.hash), e))?;
    Ok(match_decoded(asset, &block, here, watch)?.0)
}

/// `match_block` over a decoded block; also the indices of the transactions
/// that paid a watched address.
pub(super) fn match_decoded(
    asset: Asset,
    block: &RawBlock<'_>,
    here: &BlockRef,
    watch: &WatchMap,
) -> Result<(Vec<Observation>, Vec<usize>), ChainError> {
    let mut found = Vec::new();
    let mut paying = Vec::new();
    for (i, tx) in block.txs.iter().enumerate() {
        let before = found.len();
        collect_matches(
            asset,
            || tx.txid(),
            block.maturity(i),
            tx.outputs(),
            watch,
            Some(here),
            &mut found,
        )?;
        if found.len() > before {
            paying.push(i);
        }
    }
    Ok((found, paying))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_outputs_to_one_address_are_one_transfer() {
        use bitcoin::hashes::Hash;
        let program = bitcoin::WitnessProgram::new(bitcoin::WitnessVersion::V0, &[7u8; 20]).expect("program");
        let watched = ScriptBuf::new_witness_program(&program);
        let other = ScriptBuf::new_p2sh(&bitcoin::ScriptHash::all_zeros());
        let watch: WatchMap = [(watched.clone(), "rltc1q-watched".to_string())].into_iter().collect();
        let outputs = [
            (0u32, 5u64, other.as_bytes()),
            (1, 100_000, watched.as_bytes()),
            (2, 23, watched.as_bytes()),
        ];
        let mut out = Vec::new();
        collect_matches(
            Asset::Ltc,
            Txid::all_zeros,
            0,
            outputs.into_iter(),
            &watch,
            None,
            &mut out,
        )
        .expect("collect");
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].index, out[0].amount.to_string()), (1, "0.00100023".to_string()));
        assert_eq!(out[0].address, "rltc1q-watched");
    }

    #[test]
    fn peg_out_in_a_recorded_block_is_found_with_its_maturity() {
        let path = format!("{}/testdata/ltc_regtest_mweb_block3.hex", env!("CARGO_MANIFEST_DIR"));
        let bytes = hex::decode(std::fs::read_to_string(path).expect("fixture").trim()).expect("hex");
        // The peg-out went to this regtest address (see testdata/README.md).
        let address = "rltc1qyl4mea0knx3ac9pcvgn6cxy40s63lf8hgpdekv";
        let watch = watch_map(Asset::Ltc, Network::Regtest, [address]);
        let block = decode_block(&bytes).expect("decodes");
        let here = BlockRef {
            height: 437,
            hash: block.hash().to_string(),
        };
        let found = match_block(Asset::Ltc, &bytes, &here, &watch).expect("matches");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].amount.to_string(), "0.70000000");
        assert_eq!(found[0].maturity, super::super::block::PEGOUT_MATURITY);
        assert_eq!(found[0].txid, block.txs.last().expect("hogex").txid().to_string());
    }
}
