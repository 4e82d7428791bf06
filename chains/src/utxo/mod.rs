//! BTC and LTC: addresses, raw block decoding, xpub derivation, and the chain
//! source over its two backends (`core-rpc`, `esplora`).

pub mod address;
pub mod block;
pub mod core_rpc;
pub mod esplora;
pub mod source;
pub mod xpub;
