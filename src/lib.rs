//! paywatch: watches chains for incoming payments to a merchant's own
//! addresses and reports them through webhooks, an event feed, a local HTTP
//! API and Prometheus metrics.
//!
//! The daemon is a library: `run(config, listener, shutdown)` starts it on a
//! bound listener and stops when `shutdown` resolves, so tests run it
//! in-process; the binary (`main.rs`) is the command line over it.
//!
//! Layout:
//! - `daemon` — `run`: the store, the engine, one poller per asset, the
//!   webhook dispatcher and the API as named critical tasks
//! - `poller` — the scan loop: asks a chain source, has the engine apply
//! - `engine` — applies scan updates and API requests to the store
//! - `backends` — one chain source per configured asset
//! - `api` — the HTTP API; `webhooks` — signed delivery from the outbox
//! - `cluster` — instances sharing a PostgreSQL store: leases, wakeups
//! - `config` — the configuration file; `cli` — the command line
//! - `doctor` — the configuration checked against the live backends
//! - `backup` — snapshots of the store while it runs
//! - `metrics`, `signals`, `state_dir`, `backoff`, `clock` — small pieces

pub mod api;
mod backends;
pub mod backoff;
pub mod backup;
pub mod checkout;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
mod daemon;
pub mod doctor;
pub mod engine;
pub mod metrics;
pub mod poller;
pub mod rates;
mod signals;
pub mod state_dir;
pub mod webhooks;

pub use config::Config;
pub use daemon::run;
