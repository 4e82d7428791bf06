//! The embedded store: one redb file, one atomic, durable write per batch.
//!
//! Nothing outside this module sees redb. Every operation that changes state
//! (create, cancel, apply a scan, an outbox delivery result) is one write
//! transaction that commits with `Durability::Immediate`, so when a call
//! returns `Ok` the change, its events and its outbox entries are on disk
//! together, and a kill -9 at any moment leaves either all or none of them.
//!
//! Layout:
//! - `tables` — table definitions and key formats
//! - `tx` — `Tx`, typed helpers over one write transaction
//! - `intents` — create, cancel, read and list intents
//! - `accounts` — deposit accounts: create, close, read, deposits
//! - `manual` — assign, resolve, and the audit log
//! - `apply` — apply a chain `ScanUpdate`
//! - `feed` — the event log, transfers listing, webhook outbox

mod accounts;
mod apply;
mod feed;
mod intents;
mod manual;
mod settle;
mod tables;
mod tx;

use std::collections::BTreeMap;
use std::path::Path;

use redb::{Database, ReadableDatabase};

pub use accounts::{AccountOutcome, CloseOutcome, NewAccount};
pub use apply::Applied;
pub use feed::{DeliveryAttempt, OutboxEntry, OutboxStats, TransferFilter};
pub use intents::{CancelOutcome, Counts, CreateError, CreateOutcome, Created, IntentFilter, NewIntent, NewRecord};
pub use manual::{ManualAction, ManualOutcome, Refusal};
pub use tables::BLOCKS_KEPT;

use crate::Asset;
use crate::model::ChainState;

/// Failures of the store itself (disk, corruption, a record that does not
/// decode). Callers treat these as fatal for the operation, never as bad input.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] redb::Error),
    #[error("record {key:?} in table {table} does not decode: {source}")]
    Corrupt {
        table: String,
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("the {asset} cursor moved while the scan ran (expected {expected:?}, found {found:?})")]
    CursorMoved {
        asset: Asset,
        expected: Option<u64>,
        found: Option<u64>,
    },
    /// Addresses were watched after the scan was computed: redo it for them.
    #[error("the {asset} watch set changed while the scan ran (generation {expected}, now {found})")]
    WatchChanged { asset: Asset, expected: u64, found: u64 },
    #[error("the state directory was written by a newer paywatch (schema {found}, this build knows {known})")]
    SchemaTooNew { found: u64, known: u64 },
}

fn db_err<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError::Db(e.into())
}

/// redb's page cache. Its default (1 GiB) would let memory grow with the
/// store; hot data (open intents, recent events) fits in far less.
pub const CACHE_BYTES: usize = 128 * 1024 * 1024;

/// Handle to the open store; cheap to share behind an `Arc`.
pub struct Store {
    db: Database,
    /// Assets whose pool index was brought in line with the configured
    /// pool by this process (see `intents::sync_pool`).
    pools_synced: std::sync::Mutex<std::collections::HashSet<Asset>>,
    /// Where intents' checkout pages are served (`https://shop/pay`), if
    /// anywhere: new intents get `checkout_url` = this + `/` + their token.
    checkout_base: std::sync::RwLock<Option<String>>,
}

impl Store {
    /// Opens (or creates) the store at `path` and makes sure every table exists.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(db_err)?;
        let store = Store {
            db,
            pools_synced: std::sync::Mutex::default(),
            checkout_base: std::sync::RwLock::default(),
        };
        store.write(|tx| tx.init_schema())?;
        Ok(store)
    }

    /// Sets the checkout base URL for intents created from now on.
    pub fn set_checkout_base(&self, base: Option<String>) {
        *self.checkout_base.write().unwrap_or_else(|p| p.into_inner()) = base;
    }

    /// Runs `f` in one write transaction and commits it durably.
    fn write<T>(&self, f: impl FnOnce(&mut tx::Tx<'_>) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        let out = {
            let mut tx = tx::Tx::new(&txn);
            f(&mut tx)?
        };
        txn.commit().map_err(db_err)?;
        Ok(out)
    }

    fn read(&self) -> Result<redb::ReadTransaction, StoreError> {
        self.db.begin_read().map_err(db_err)
    }

    /// The hash stored for an applied block of `asset`, if still kept.
    pub fn block_hash(&self, asset: Asset, height: u64) -> Result<Option<String>, StoreError> {
        let r = self.read()?;
        let t = r.open_table(tables::BLOCKS).map_err(db_err)?;
        Ok(t.get(tables::height_key(asset.code(), height).as_str())
            .map_err(db_err)?
            .map(|v| v.value().to_string()))
    }

    /// Every block hash still kept for `asset` at or below `height`, by
    /// height: what a scan request carries for fork checks.
    pub fn recent_blocks(&self, asset: Asset, height: u64) -> Result<BTreeMap<u64, String>, StoreError> {
        let r = self.read()?;
        let t = r.open_table(tables::BLOCKS).map_err(db_err)?;
        let (low, high) = (
            tables::height_key(asset.code(), 0),
            tables::height_key(asset.code(), height),
        );
        let mut out = BTreeMap::new();
        for entry in t.range(low.as_str()..=high.as_str()).map_err(db_err)? {
            let (key, hash) = entry.map_err(db_err)?;
            // Keys are `height_key`s: the height is the last segment.
            if let Some(at) = key.value().rsplit('/').next().and_then(|h| h.parse::<u64>().ok()) {
                out.insert(at, hash.value().to_string());
            }
        }
        Ok(out)
    }

    /// The chain position of `asset`, if it was ever polled.
    pub fn chain_state(&self, asset: Asset) -> Result<Option<ChainState>, StoreError> {
        let r = self.read()?;
        tables::get_json(&r, tables::CHAINS, asset.code())
    }
}

#[cfg(test)]
mod tests;
