//! The store: every operation that changes state (create, cancel, apply a
//! scan, an outbox delivery result) is one write transaction, so when a call
//! returns `Ok` the change, its events and its outbox entries are durable
//! together, and a kill -9 at any moment leaves either all or none of them.
//!
//! Two backends hold the same tables (`kv`): the embedded redb file (the
//! default: one machine, nothing to set up; commits with
//! `Durability::Immediate`) and PostgreSQL (`pg`: several instances on one
//! database, with leases). Nothing outside this module sees either.
//!
//! Layout:
//! - `kv` — tables and transactions over either backend
//! - `pg`, `migrations` — the PostgreSQL backend, its schema and leases
//! - `tables` — table definitions and key formats
//! - `tx` — `Tx`, typed helpers over one write transaction
//! - `intents` — create, cancel, read and list intents
//! - `accounts` — deposit accounts: create, close, read, deposits
//! - `manual` — assign, resolve, and the audit log
//! - `apply` — apply a chain `ScanUpdate`
//! - `feed` — the event log, transfers listing, webhook outbox
//! - `copy` — copying a whole store into another (export, import)
//! - `restore` — backups, and making a snapshot safe to run again

mod accounts;
mod apply;
mod copy;
mod feed;
mod intents;
mod kv;
mod manual;
mod migrations;
mod pg;
mod restore;
mod settle;
mod tables;
mod tx;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;

use redb::{Database, ReadableDatabase};

pub use accounts::{AccountOutcome, CloseOutcome, NewAccount};
pub use apply::Applied;
pub use copy::TableCount;
pub use feed::{DeliveryAttempt, OutboxEntry, OutboxStats, TransferFilter};
pub use intents::{CancelOutcome, Counts, CreateError, CreateOutcome, Created, IntentFilter, NewIntent, NewRecord};
pub use manual::{ManualAction, ManualOutcome, Refusal};
pub use pg::{Lease, ListenHandle, PgOptions};
pub use restore::{RestoreFloors, RestoreReport};
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
    #[error("the store was written by a newer paywatch (schema {found}, this build knows {known})")]
    SchemaTooNew { found: u64, known: u64 },
    #[error("PostgreSQL: {0}")]
    Postgres(String),
    #[error("store: {0}")]
    Backend(String),
    /// Another instance took the lease over: what this one computed under
    /// it is not applied.
    #[error("the lease {lease} passed to another instance (held under fence {held}, now {current:?})")]
    Fenced {
        lease: String,
        held: u64,
        current: Option<u64>,
    },
}

impl StoreError {
    /// The embedded store file is open in another process (a running daemon).
    pub fn is_in_use(&self) -> bool {
        matches!(self, StoreError::Db(redb::Error::DatabaseAlreadyOpen))
    }
}

/// A lease as held by its holder: a transaction carrying it is refused
/// once another instance has taken the lease (PostgreSQL only; the embedded
/// store has one process).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    pub lease: String,
    pub token: u64,
}

fn db_err<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError::Db(e.into())
}

enum Backend {
    Redb(Database),
    Pg(Box<pg::PgStore>),
}

/// redb's page cache. Its default (1 GiB) would let memory grow with the
/// store; hot data (open intents, recent events) fits in far less.
pub const CACHE_BYTES: usize = 128 * 1024 * 1024;

/// Handle to the open store; cheap to share behind an `Arc`.
pub struct Store {
    db: Backend,
    /// Assets whose pool index was brought in line with the configured
    /// pool by this process (see `intents::sync_pool`).
    pools_synced: std::sync::Mutex<std::collections::HashSet<Asset>>,
    /// Where intents' checkout pages are served (`https://shop/pay`), if
    /// anywhere: new intents get `checkout_url` = this + `/` + their token.
    checkout_base: std::sync::RwLock<Option<String>>,
}

impl Store {
    /// Opens (or creates) the embedded store at `path` and makes sure every
    /// table exists.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(db_err)?;
        Store::with_backend(Backend::Redb(db))
    }

    /// Connects to the PostgreSQL store, applying the schema migrations it
    /// lacks.
    pub fn open_postgres(options: PgOptions) -> Result<Store, StoreError> {
        let pg = pg::PgStore::open(options)?;
        Store::with_backend(Backend::Pg(Box::new(pg)))
    }

    fn with_backend(db: Backend) -> Result<Store, StoreError> {
        let store = Store {
            db,
            pools_synced: std::sync::Mutex::default(),
            checkout_base: std::sync::RwLock::default(),
        };
        store.write(|tx| tx.init_schema())?;
        Ok(store)
    }

    /// `redb` or `postgres`, and where.
    pub fn describe(&self) -> (&'static str, String) {
        match &self.db {
            Backend::Redb(_) => ("redb", String::new()),
            Backend::Pg(pg) => ("postgres", pg.display().to_string()),
        }
    }

    /// Whether other instances may share this store (and leases apply).
    pub fn is_shared(&self) -> bool {
        matches!(self.db, Backend::Pg(_))
    }

    fn pg(&self) -> Result<&pg::PgStore, StoreError> {
        match &self.db {
            Backend::Pg(pg) => Ok(pg),
            Backend::Redb(_) => Err(StoreError::Backend("leases exist only in a PostgreSQL store".into())),
        }
    }

    /// See `pg::PgStore::acquire_lease`.
    pub fn acquire_lease(&self, name: &str, holder: &str, ttl: std::time::Duration) -> Result<Option<u64>, StoreError> {
        self.pg()?.acquire_lease(name, holder, ttl)
    }

    /// See `pg::PgStore::release_lease`.
    pub fn release_lease(&self, name: &str, holder: &str, fence: u64) -> Result<(), StoreError> {
        self.pg()?.release_lease(name, holder, fence)
    }

    /// Whether the lease `name` is in force (by the database's clock).
    pub fn lease_live(&self, name: &str) -> Result<bool, StoreError> {
        match &self.db {
            Backend::Pg(pg) => pg.lease_live(name),
            Backend::Redb(_) => Ok(false),
        }
    }

    /// Every lease, with its holder; none in the embedded store.
    pub fn leases(&self) -> Result<Vec<Lease>, StoreError> {
        match &self.db {
            Backend::Pg(pg) => pg.leases(),
            Backend::Redb(_) => Ok(Vec::new()),
        }
    }

    /// Calls `wake` when another instance commits events (PostgreSQL); the
    /// embedded store has no other writer, and returns `None`.
    pub fn listen(&self, wake: std::sync::Arc<dyn Fn() + Send + Sync>) -> Option<ListenHandle> {
        match &self.db {
            Backend::Pg(pg) => Some(pg.listen(wake)),
            Backend::Redb(_) => None,
        }
    }

    /// Sets the checkout base URL for intents created from now on.
    pub fn set_checkout_base(&self, base: Option<String>) {
        *self.checkout_base.write().unwrap_or_else(|p| p.into_inner()) = base;
    }

    /// Runs `f` in one write transaction and commits it durably.
    fn write<T>(&self, f: impl FnOnce(&mut tx::Tx<'_>) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let txn = match &self.db {
            Backend::Redb(db) => kv::WriteTxn::Redb(db.begin_write().map_err(db_err)?),
            Backend::Pg(pg) => kv::WriteTxn::Pg(RefCell::new(pg.begin_write()?)),
        };
        let out = {
            let mut tx = tx::Tx::new(&txn);
            f(&mut tx)?
        };
        txn.commit()?;
        Ok(out)
    }

    /// `write`, refused with `Fenced` unless `fence` still holds its lease
    /// (checked first, under a lock a takeover waits for).
    fn write_fenced<T>(
        &self,
        fence: Option<&Fence>,
        f: impl FnOnce(&mut tx::Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.write(|tx| {
            tx.txn().check_fence(fence)?;
            f(tx)
        })
    }

    fn read(&self) -> Result<kv::ReadTxn, StoreError> {
        Ok(match &self.db {
            Backend::Redb(db) => kv::ReadTxn::Redb(db.begin_read().map_err(db_err)?),
            Backend::Pg(pg) => kv::ReadTxn::Pg(RefCell::new(pg.begin_read()?)),
        })
    }

    /// The hash stored for an applied block of `asset`, if still kept.
    pub fn block_hash(&self, asset: Asset, height: u64) -> Result<Option<String>, StoreError> {
        let r = self.read()?;
        let t = r.open_table(tables::BLOCKS)?;
        Ok(t.get(tables::height_key(asset.code(), height).as_str())?
            .map(|v| v.value().to_string()))
    }

    /// Every block hash still kept for `asset` at or below `height`, by
    /// height: what a scan request carries for fork checks.
    pub fn recent_blocks(&self, asset: Asset, height: u64) -> Result<BTreeMap<u64, String>, StoreError> {
        let r = self.read()?;
        let t = r.open_table(tables::BLOCKS)?;
        let (low, high) = (
            tables::height_key(asset.code(), 0),
            tables::height_key(asset.code(), height),
        );
        let mut out = BTreeMap::new();
        for entry in t.range(low.as_str()..=high.as_str())? {
            let (key, hash) = entry?;
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
