//! paywatch-chains: what the chains say.
//!
//! Chain sources read a node or API and return plain data (observations with
//! block height and hash, the tip, the next cursor); they never touch the
//! store. The one generic `Poller` drives any source and hands each scan step
//! to a `ScanSink` (the daemon's engine), which applies it atomically.
//!
//! Layout:
//! - `source` — the `ChainSource` trait and scan types
//! - `poller` — the loop: interval, poll-now, cancellation, timeouts, backoff
//! - `http` — URL failover, timeouts, error kinds for every backend
//! - `rpc` — JSON-RPC client over it
//! - `utxo` — BTC and LTC: addresses, raw blocks, xpub, `core-rpc` and `esplora`
//! - `evm` — ERC-20 transfers over Ethereum JSON-RPC (USDT on BSC)
//! - `xrpl` — XRP: addresses, X-addresses, the `rippled` backend
//! - `tron` — USDT on Tron: addresses, the `tron-http` backend
//! - `address` — address validation for every asset, one entry point
//! - `error`, `network`, `secret` — shared small types

pub mod address;
mod error;
pub mod evm;
pub mod http;
mod network;
pub mod poller;
pub mod rpc;
mod secret;
pub mod source;
pub mod tron;
pub mod utxo;
pub mod xrpl;

#[cfg(test)]
mod fuzz_tests;

pub use address::canonical_address;
pub use error::ChainError;
pub use network::Network;
pub use poller::{Clock, PollReport, Poller, PollerConfig, ScanSink, SystemClock};
pub use secret::Secret;
pub use source::{ChainSource, ScanBatch, ScanRequest, WatchSet};
