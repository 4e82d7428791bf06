//! BTC and LTC: addresses, raw block decoding, xpub derivation, and the chain
//! source over its two backends (`core-rpc`, `esplora`).
//!
//! - `source` — the source: identity check, block walk, backend trait
//! - `matching` — watched scripts found in blocks and mempool transactions
//! - `mempool` — the mempool read and the evidence that a payment is gone

pub mod address;
pub mod block;
pub mod core_rpc;
pub mod esplora;
pub mod matching;
mod mempool;
pub mod source;
pub mod xpub;
