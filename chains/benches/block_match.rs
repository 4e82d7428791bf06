//! Decoding and matching one mainnet-sized block (3,000 transactions, 8,000
//! outputs) against 100,000 watched scripts: the hot path of a scan.
//! Target: under 10 ms per block. Run: `cargo bench -p paywatch-chains`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use bitcoin::absolute::LockTime;
use bitcoin::hashes::Hash;
use bitcoin::transaction::Version;
use bitcoin::{
    Amount, Block, BlockHash, CompactTarget, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxMerkleNode, TxOut,
    Txid, WPubkeyHash, Witness, block,
};
use criterion::{Criterion, criterion_group, criterion_main};
use paywatch_chains::utxo::matching::{WatchMap, match_block};
use paywatch_state::{Asset, BlockRef};

/// Deterministic pseudo-random bytes (xorshift), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes20(&mut self) -> [u8; 20] {
        let mut out = [0u8; 20];
        for chunk in out.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        out
    }
}

fn p2wpkh(rng: &mut Rng) -> ScriptBuf {
    ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array(rng.bytes20()))
}

/// A block shaped like a busy mainnet block: segwit spends with witnesses,
/// 3,000 transactions, about 8,000 outputs, 20 of which pay watched scripts.
fn mainnet_sized_block(rng: &mut Rng, watched: &[ScriptBuf]) -> Vec<u8> {
    let mut txdata = Vec::with_capacity(3_000);
    let mut outputs_total = 0;
    for i in 0..3_000 {
        let inputs = 1 + (rng.next() % 2) as usize;
        let input = (0..inputs)
            .map(|_| TxIn {
                previous_output: OutPoint {
                    txid: Txid::from_byte_array([(rng.next() % 255) as u8; 32]),
                    vout: 0,
                },
                script_sig: ScriptBuf::new(),
                sequence: Sequence::MAX,
                witness: Witness::from_slice(&[vec![0x30; 72], vec![0x02; 33]]),
            })
            .collect();
        let n_out = if i % 3 == 0 { 4 } else { 2 };
        let output = (0..n_out)
            .map(|_| {
                outputs_total += 1;
                let script = if outputs_total % 400 == 0 {
                    watched[(rng.next() as usize) % watched.len()].clone()
                } else {
                    p2wpkh(rng)
                };
                TxOut {
                    value: Amount::from_sat(rng.next() % 100_000_000),
                    script_pubkey: script,
                }
            })
            .collect();
        txdata.push(Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input,
            output,
        });
    }
    let block = Block {
        header: block::Header {
            version: block::Version::TWO,
            prev_blockhash: BlockHash::all_zeros(),
            merkle_root: TxMerkleNode::all_zeros(),
            time: 0,
            bits: CompactTarget::from_consensus(0),
            nonce: 0,
        },
        txdata,
    };
    bitcoin::consensus::serialize(&block)
}

fn bench(c: &mut Criterion) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let watched: Vec<ScriptBuf> = (0..100_000).map(|_| p2wpkh(&mut rng)).collect();
    let watch: WatchMap = watched
        .iter()
        .enumerate()
        .map(|(i, s)| (s.clone(), format!("addr{i}")))
        .collect();
    let bytes = mainnet_sized_block(&mut rng, &watched);
    let here = BlockRef {
        height: 1,
        hash: "bench".into(),
    };
    let found = match_block(Asset::Btc, &bytes, &here, &watch).unwrap();
    assert!(found.len() >= 15, "the block pays watched scripts: {}", found.len());
    println!("block: {} bytes, {} watched outputs found", bytes.len(), found.len());
    c.bench_function("decode and match a 3,000-tx block against 100,000 scripts", |b| {
        b.iter(|| match_block(Asset::Btc, black_box(&bytes), &here, &watch).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
