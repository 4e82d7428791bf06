//! BTC and LTC: addresses and the node-RPC backend.

pub mod address;
pub mod core_rpc;
