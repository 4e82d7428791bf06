//! paywatch-chains: what the chains say.
//!
//! Chain sources read a node or API and return plain data: a `ScanRequest`
//! (cursor, stored hashes below it, watch set) in, a `ScanBatch`
//! (observations with block height and hash, rollback point, next cursor)
//! out. They never touch paywatch's state; the daemon's poller applies what
//! they return.
//!
//! Layout:
//! - `source` — the `ChainSource` trait and scan types
//! - `walk` — the one block walk (fork search, prefetch, parent links)
//! - `watch` — the watch set and the one cache sources derive from it
//! - `http` — URL failover, timeouts, error kinds for every backend
//! - `rpc` — JSON-RPC client over it
//! - `utxo` — BTC and LTC: addresses, raw blocks, xpub, `core-rpc` and `esplora`
//! - `evm` — ERC-20 transfers over Ethereum JSON-RPC (USDT on BSC)
//! - `xrpl` — XRP: addresses, X-addresses, the `rippled` backend
//! - `tron` — USDT on Tron: addresses, the `tron-http` backend
//! - `address` — address validation for every asset, one entry point
//! - `account_key` — exclusive USDT addresses derived from an account xpub
//! - `error`, `network`, `secret` — shared small types

pub mod account_key;
pub mod address;
mod error;
pub mod evm;
pub mod http;
mod network;
pub mod rpc;
mod secret;
pub mod source;
pub mod tron;
pub mod utxo;
pub mod walk;
pub mod watch;
pub mod xrpl;

#[cfg(test)]
mod fuzz_tests;

pub use address::canonical_address;
pub use error::ChainError;
pub use network::Network;
pub use secret::Secret;
pub use source::{ChainSource, RecentBlocks, ScanBatch, ScanRequest};
pub use watch::WatchSet;
