//! The daemon's test harness: the shared test environment (nodes, fakes,
//! receiver, proxies: the `paywatch-testenv` crate) and the real `paywatch`
//! binary started on a config.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod paywatch;

pub use paywatch_testenv::*;
