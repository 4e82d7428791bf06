//! Zero-copy decoding of raw Bitcoin and Litecoin blocks and transactions.
//!
//! The `bitcoin` crate cannot read Litecoin blocks after MWEB activation: the
//! last transaction (the HogEx) sets serialization flag 0x08, and the MWEB
//! block data follows the transactions. This decoder reads only what a
//! watcher needs (outputs, and the bytes that make the txid) straight from
//! the buffer, without allocating scripts, and:
//!
//! - accepts flag 0x01 (witness) and 0x08 (MWEB); in a block, a 0x08
//!   transaction must carry a null MWEB part (that is the HogEx: Litecoin
//!   strips the MWEB part of every other transaction when it is mined);
//! - stops after the transactions when the last one is a HogEx (the MWEB
//!   extension data is not needed and never fails the decode);
//! - computes the txid from the stripped serialization (version, inputs,
//!   outputs, lock time), which is the txid of both chains.

use bitcoin::hashes::{Hash, HashEngine, sha256d};
use bitcoin::{BlockHash, Txid};

/// Coinbase outputs are spendable after 100 blocks (Bitcoin and Litecoin consensus).
pub const COINBASE_MATURITY: u32 = 100;
/// Litecoin MWEB peg-outs (outputs of the HogEx) mature after 6 blocks.
pub const PEGOUT_MATURITY: u32 = 6;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("data ends early (at byte {0})")]
    Truncated(usize),
    #[error("unknown transaction flags {flags:#04x} at byte {at}")]
    UnknownFlags { flags: u8, at: usize },
    #[error("a mined transaction carries MWEB data at byte {0}; only the HogEx may set the MWEB flag")]
    MwebDataInBlock(usize),
    #[error("{0} unexpected bytes after the last transaction")]
    TrailingBytes(usize),
    #[error("a count of {count} at byte {at} cannot fit in the remaining data")]
    ImpossibleCount { count: u64, at: usize },
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(DecodeError::Truncated(self.pos))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn peek(&self, offset: usize) -> Option<u8> {
        self.bytes.get(self.pos + offset).copied()
    }

    /// Bitcoin's CompactSize.
    fn compact(&mut self) -> Result<u64, DecodeError> {
        let first = self.u8()?;
        let le = |b: &[u8]| b.iter().rev().fold(0u64, |acc, x| (acc << 8) | u64::from(*x));
        Ok(match first {
            0xfd => le(self.take(2)?),
            0xfe => le(self.take(4)?),
            0xff => le(self.take(8)?),
            n => u64::from(n),
        })
    }

    /// A count of items each at least `min_size` bytes long.
    fn count(&mut self, min_size: usize) -> Result<usize, DecodeError> {
        let at = self.pos;
        let count = self.compact()?;
        let remaining = (self.bytes.len() - self.pos) as u64;
        if count.saturating_mul(min_size as u64) > remaining {
            return Err(DecodeError::ImpossibleCount { count, at });
        }
        Ok(count as usize)
    }

    fn skip_var_bytes(&mut self) -> Result<(), DecodeError> {
        let n = self.count(1)?;
        self.take(n).map(|_| ())
    }
}

/// An output being spent, as serialized in a transaction: the txid (internal
/// byte order) and the output index (little-endian).
pub type Outpoint = [u8; 36];

/// An outpoint from its `txid` (display hex) and output index.
pub fn outpoint(txid: &str, vout: u32) -> Option<Outpoint> {
    let mut bytes = hex::decode(txid).ok()?;
    if bytes.len() != 32 {
        return None;
    }
    bytes.reverse();
    bytes.extend_from_slice(&vout.to_le_bytes());
    bytes.try_into().ok()
}

/// The `txid` (display hex) and output index of an outpoint.
pub fn outpoint_parts(outpoint: &Outpoint) -> (String, u32) {
    let mut txid = outpoint[..32].to_vec();
    txid.reverse();
    let vout = u32::from_le_bytes([outpoint[32], outpoint[33], outpoint[34], outpoint[35]]);
    (hex::encode(txid), vout)
}

/// One transaction, as slices of the buffer it was decoded from.
#[derive(Clone, Debug)]
pub struct RawTx<'a> {
    version: &'a [u8],
    /// Inputs then outputs, each with its count, exactly as serialized.
    io: &'a [u8],
    /// Where the output count starts inside `io`.
    outputs_at: usize,
    /// Empty for a mempool transaction whose MWEB part was not read.
    lock_time: &'a [u8],
    /// The Litecoin HogEx: MWEB flag with a null MWEB part.
    pub hogex: bool,
}

impl<'a> RawTx<'a> {
    /// `(index, satoshis, scriptPubKey)` of every canonical output.
    pub fn outputs(&self) -> impl Iterator<Item = (u32, u64, &'a [u8])> + 'a {
        let mut r = Reader {
            bytes: self.io,
            pos: self.outputs_at,
        };
        let n = r.compact().unwrap_or(0);
        (0..n).map_while(move |i| {
            let value = r.take(8).ok()?;
            let len = r.compact().ok()?;
            let script = r.take(usize::try_from(len).ok()?).ok()?;
            let sats = u64::from_le_bytes(value.try_into().ok()?);
            Some((i as u32, sats, script))
        })
    }

    /// The outpoints it spends, as serialized.
    pub fn spends(&self) -> Vec<Outpoint> {
        let mut r = Reader { bytes: self.io, pos: 0 };
        let n = r.compact().unwrap_or(0);
        let mut out = Vec::new();
        for _ in 0..n {
            let Some(outpoint) = r.take(36).ok().and_then(|o| Outpoint::try_from(o).ok()) else {
                break;
            };
            out.push(outpoint);
            if r.skip_var_bytes().is_err() || r.take(4).is_err() {
                break;
            }
        }
        out
    }

    /// The txid: double SHA-256 of version, inputs, outputs and lock time.
    pub fn txid(&self) -> Txid {
        let mut engine = sha256d::Hash::engine();
        engine.input(self.version);
        engine.input(self.io);
        engine.input(self.lock_time);
        Txid::from_raw_hash(sha256d::Hash::from_engine(engine))
    }
}

/// How to treat MWEB data inside a transaction.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    /// In a block only the HogEx may set the MWEB flag, with a null MWEB part.
    Block,
    /// A mempool transaction may carry an MWEB part; reading stops before it
    /// (the outputs come first; the txid is known from the node).
    Mempool,
}

fn read_tx<'a>(r: &mut Reader<'a>, context: Context) -> Result<RawTx<'a>, DecodeError> {
    let version = r.take(4)?;
    // Extended format: an empty input list (0x00) followed by non-zero flags.
    let mut flags = 0u8;
    if r.peek(0) == Some(0) && r.peek(1).is_some_and(|f| f != 0) {
        r.take(1)?;
        flags = r.u8()?;
    }
    let flags_at = r.pos;
    let io_start = r.pos;
    let inputs = r.count(41)?;
    for _ in 0..inputs {
        r.take(36)?; // previous outpoint
        r.skip_var_bytes()?; // scriptSig
        r.take(4)?; // sequence
    }
    let outputs_at = r.pos - io_start;
    let outputs = r.count(9)?;
    for _ in 0..outputs {
        r.take(8)?;
        r.skip_var_bytes()?;
    }
    let io = &r.bytes[io_start..r.pos];
    if flags & !(0x01 | 0x08) != 0 {
        return Err(DecodeError::UnknownFlags { flags, at: flags_at });
    }
    if flags & 0x01 != 0 {
        for _ in 0..inputs {
            let items = r.count(1)?;
            for _ in 0..items {
                r.skip_var_bytes()?;
            }
        }
    }
    let mut hogex = false;
    if flags & 0x08 != 0 {
        let at = r.pos;
        match r.u8()? {
            0 => hogex = outputs > 0,
            _ if context == Context::Mempool => {
                return Ok(RawTx {
                    version,
                    io,
                    outputs_at,
                    lock_time: &[],
                    hogex: false,
                });
            }
            _ => return Err(DecodeError::MwebDataInBlock(at)),
        }
    }
    let lock_time = r.take(4)?;
    Ok(RawTx {
        version,
        io,
        outputs_at,
        lock_time,
        hogex,
    })
}

/// A decoded block: its header and its canonical transactions.
#[derive(Clone, Debug)]
pub struct RawBlock<'a> {
    header: &'a [u8],
    pub txs: Vec<RawTx<'a>>,
}

impl RawBlock<'_> {
    pub fn hash(&self) -> BlockHash {
        BlockHash::from_raw_hash(sha256d::Hash::hash(self.header))
    }

    pub fn prev_hash(&self) -> BlockHash {
        let mut prev = [0u8; 32];
        prev.copy_from_slice(&self.header[4..36]);
        BlockHash::from_byte_array(prev)
    }

    /// Minimum depth the chain imposes on the outputs of transaction `i`.
    pub fn maturity(&self, i: usize) -> u32 {
        if i == 0 {
            COINBASE_MATURITY
        } else if self.txs[i].hogex {
            PEGOUT_MATURITY
        } else {
            0
        }
    }
}

/// A serialized block's own hash and its parent's, read from its 80-byte
/// header alone (the walk links blocks before they are decoded).
pub fn header_link(bytes: &[u8]) -> Option<(BlockHash, BlockHash)> {
    let header = bytes.get(..80)?;
    let mut prev = [0u8; 32];
    prev.copy_from_slice(&header[4..36]);
    Some((
        BlockHash::from_raw_hash(sha256d::Hash::hash(header)),
        BlockHash::from_byte_array(prev),
    ))
}

pub fn decode_block(bytes: &[u8]) -> Result<RawBlock<'_>, DecodeError> {
    let mut r = Reader { bytes, pos: 0 };
    let header = r.take(80)?;
    let n = r.count(10)?;
    let mut txs = Vec::with_capacity(n);
    for _ in 0..n {
        txs.push(read_tx(&mut r, Context::Block)?);
    }
    let rest = bytes.len() - r.pos;
    // After a HogEx comes the MWEB block: not needed, never an error.
    if rest > 0 && !txs.last().is_some_and(|t| t.hogex) {
        return Err(DecodeError::TrailingBytes(rest));
    }
    Ok(RawBlock { header, txs })
}

/// Decodes a mempool transaction far enough to read its outputs.
pub fn decode_mempool_tx(bytes: &[u8]) -> Result<RawTx<'_>, DecodeError> {
    read_tx(&mut Reader { bytes, pos: 0 }, Context::Mempool)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn fixture(name: &str) -> String {
        let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn check_against_node(name: &str) {
        let bytes = hex::decode(fixture(&format!("{name}.hex")).trim()).expect("hex");
        let want: Value = serde_json::from_str(&fixture(&format!("{name}.json"))).expect("json");
        let block = decode_block(&bytes).expect("decodes");
        assert_eq!(
            block.hash().to_string(),
            want["hash"].as_str().expect("hash"),
            "{name}: block hash"
        );
        assert_eq!(
            block.prev_hash().to_string(),
            want["previousblockhash"].as_str().expect("prev"),
            "{name}: prev"
        );
        let txs = want["tx"].as_array().expect("txs");
        assert_eq!(block.txs.len(), txs.len(), "{name}: canonical transaction count");
        for (tx, want_tx) in block.txs.iter().zip(txs) {
            assert_eq!(
                tx.txid().to_string(),
                want_tx["txid"].as_str().expect("txid"),
                "{name}: txid"
            );
            let outs: Vec<(u32, u64, String)> = tx
                .outputs()
                .map(|(n, sats, script)| (n, sats, hex::encode(script)))
                .collect();
            let want_outs: Vec<(u32, u64, String)> = want_tx["vout"]
                .as_array()
                .expect("vout")
                .iter()
                .map(|o| {
                    let value: rust_decimal::Decimal = o["value"].as_str().expect("value").parse().expect("decimal");
                    let sats = (value * rust_decimal::Decimal::from(100_000_000u64)).trunc();
                    (
                        o["n"].as_u64().expect("n") as u32,
                        sats.to_string().parse().expect("sats"),
                        o["script"].as_str().expect("script").to_string(),
                    )
                })
                .collect();
            assert_eq!(outs, want_outs, "{name}: outputs of {}", want_tx["txid"]);
        }
    }

    #[test]
    fn mweb_activation_block_decodes_like_the_node_says() {
        check_against_node("ltc_regtest_mweb_block1");
    }

    #[test]
    fn block_with_a_peg_in_and_hogex_decodes() {
        check_against_node("ltc_regtest_mweb_block2");
        let bytes = hex::decode(fixture("ltc_regtest_mweb_block2.hex").trim()).expect("hex");
        let block = decode_block(&bytes).expect("decodes");
        assert!(block.txs.last().expect("txs").hogex);
        assert!(!block.txs[0].hogex);
        assert_eq!(block.maturity(0), COINBASE_MATURITY);
        assert_eq!(block.maturity(1), 0);
        assert_eq!(block.maturity(block.txs.len() - 1), PEGOUT_MATURITY);
    }

    #[test]
    fn peg_out_is_a_hogex_output() {
        check_against_node("ltc_regtest_mweb_block3");
        let bytes = hex::decode(fixture("ltc_regtest_mweb_block3.hex").trim()).expect("hex");
        let block = decode_block(&bytes).expect("decodes");
        let hogex = block.txs.last().expect("txs");
        let pegout: Vec<_> = hogex.outputs().filter(|(_, sats, _)| *sats == 70_000_000).collect();
        assert_eq!(pegout.len(), 1);
    }

    #[test]
    fn pre_mweb_blocks_decode_and_match_the_bitcoin_crate() {
        let bytes = hex::decode(fixture("ltc_regtest_block300.hex").trim()).expect("hex");
        let ours = decode_block(&bytes).expect("decodes");
        let theirs: bitcoin::Block = bitcoin::consensus::deserialize(&bytes).expect("bitcoin crate decodes it");
        assert_eq!(ours.hash(), theirs.block_hash());
        assert_eq!(ours.txs.len(), theirs.txdata.len());
        for (a, b) in ours.txs.iter().zip(&theirs.txdata) {
            assert_eq!(a.txid(), b.compute_txid());
            let outs: Vec<(u64, Vec<u8>)> = a.outputs().map(|(_, s, script)| (s, script.to_vec())).collect();
            let want: Vec<(u64, Vec<u8>)> = b
                .output
                .iter()
                .map(|o| (o.value.to_sat(), o.script_pubkey.to_bytes()))
                .collect();
            assert_eq!(outs, want);
            let spends: Vec<String> = b.input.iter().map(|i| i.previous_output.to_string()).collect();
            let ours: Vec<String> = a
                .spends()
                .iter()
                .map(|o| {
                    let (txid, vout) = outpoint_parts(o);
                    format!("{txid}:{vout}")
                })
                .collect();
            assert_eq!(ours, spends, "outpoints spent");
            for o in a.spends() {
                let (txid, vout) = outpoint_parts(&o);
                assert_eq!(outpoint(&txid, vout), Some(o), "round trip");
            }
        }
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        let bytes = hex::decode(fixture("ltc_regtest_mweb_block2.hex").trim()).expect("hex");
        // Every truncation fails cleanly.
        for cut in (0..bytes.len()).step_by(7) {
            let _ = decode_block(&bytes[..cut]);
        }
        assert!(decode_block(&bytes[..100]).is_err());
        // Flipping bytes never panics.
        let mut mutated = bytes.clone();
        for i in (0..mutated.len()).step_by(13) {
            mutated[i] ^= 0xa5;
            let _ = decode_block(&mutated);
        }
        // Absurd counts are refused without allocating.
        let mut huge = bytes[..80].to_vec();
        huge.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
        assert!(matches!(decode_block(&huge), Err(DecodeError::ImpossibleCount { .. })));
        // Bytes after a block without HogEx are garbage.
        let plain = hex::decode(fixture("ltc_regtest_block300.hex").trim()).expect("hex");
        let mut extra = plain.clone();
        extra.push(0);
        assert_eq!(decode_block(&extra).err(), Some(DecodeError::TrailingBytes(1)));
    }
}
