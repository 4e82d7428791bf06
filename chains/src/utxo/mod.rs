//! BTC and LTC: addresses and the node-RPC backend.

pub mod address;
pub mod block;
pub mod core_rpc;
pub mod xpub;
