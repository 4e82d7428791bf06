//! Backups and restores (docs/operations.md, "Backups"): a snapshot of the
//! whole store written to a new embedded store file while the daemon runs,
//! and the adjustments a snapshot needs before it becomes the store again.
//!
//! A snapshot is older than the store it replaces. What happened since is
//! either still on chain (payments, which the daemon finds again by
//! rescanning from the snapshot's cursors) or known only to the lost store:
//! the numbering the shop has already seen (`seq`, listing numbers) and the
//! addresses handed out since (derived from an xpub). Restoring raises the
//! counters past what the shop saw and watches the addresses that may have
//! been handed out, so payments to them are recorded (as unmatched) rather
//! than never seen.

use std::collections::BTreeMap;
use std::path::Path;

use super::tables::{
    DERIVE_PREFIX, EVENTS, META, RESTORED_ON_ESTIMATES, STORE_ID, SUPERSEDED, decode, derive_counter_key, read_meta,
};
use super::{Store, StoreError, TableCount};
use crate::Asset;
use crate::model::{Event, EventType};
use crate::scan::AssetPolicy;

/// The counters of `meta` a shop or an operator sees numbers of: events'
/// `seq`, transfers' listing order, audit records. After a restore they
/// continue above the highest the replaced store reached.
const PUBLIC_COUNTERS: [&str; 3] = ["next_seq", "next_listing", "next_audit"];

/// What the replaced store had reached, as far as it is known.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreFloors {
    /// `meta` key -> the value the replaced store had reached (public
    /// counters, derivation counters, and its `restored_on_estimates`
    /// mark). Empty when that store is lost.
    pub counters: BTreeMap<String, u64>,
    /// The lowest `seq` the next event may have (the operator's word when
    /// the replaced store is lost: one above the highest the shop has seen).
    pub next_seq_at_least: Option<u64>,
    /// With no derivation counter known: how many addresses past the
    /// snapshot's to watch and skip, per xpub.
    pub derive_ahead: u32,
}

/// What a restore prepared, for the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreReport {
    /// The seq of the first event after the restore.
    pub next_seq: u64,
    /// The snapshot's seq of its newest event.
    pub snapshot_seq: u64,
    /// Per asset ever scanned: the height the daemon rescans from.
    pub cursors: Vec<(Asset, u64)>,
    /// Per asset with an xpub: addresses past the snapshot's that are now
    /// watched and never handed out again.
    pub addresses_watched: Vec<(Asset, u64)>,
}

impl Store {
    /// Writes a consistent snapshot of this store (one read transaction)
    /// into a new embedded store file at `path`, which must not exist, and
    /// checks it entry by entry against the snapshot.
    pub fn snapshot_to(&self, path: &Path) -> Result<Vec<TableCount>, StoreError> {
        // Made private before the first record goes in (redb would use the
        // umask); `create_new`: never into an existing file.
        std::os::unix::fs::OpenOptionsExt::mode(std::fs::OpenOptions::new().write(true).create_new(true), 0o600)
            .open(path)
            .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", path.display())))?;
        let target = Store::open(path)?;
        self.copy_into(&target)
    }

    /// The store's identity (`tables::STORE_ID`), shared by its copies.
    pub fn store_id(&self) -> Result<u64, StoreError> {
        self.meta_value(STORE_ID)
    }

    /// Whether `store copy` copied this store elsewhere (`tables::SUPERSEDED`).
    pub fn superseded(&self) -> Result<bool, StoreError> {
        Ok(self.meta_value(SUPERSEDED)? == 1)
    }

    /// Marks this store as copied elsewhere (`copied`), or as the one that
    /// goes on (a copy's target): a restore does not take a copied store
    /// for the latest state of its backups.
    pub fn mark_superseded(&self, copied: bool) -> Result<(), StoreError> {
        self.write(|tx| tx.set_meta(SUPERSEDED, u64::from(copied)))
    }

    fn meta_value(&self, name: &str) -> Result<u64, StoreError> {
        read_meta(&self.read()?, name)
    }

    /// Events after `seq` that record decisions made off the chain
    /// (cancels, closes, assignments, resolutions): a rescan cannot bring
    /// them back, so a restore from before them undoes them.
    pub fn off_chain_events_after(&self, seq: u64) -> Result<Vec<Event>, StoreError> {
        let r = self.read()?;
        let t = r.open_table(EVENTS)?;
        let mut out = Vec::new();
        for entry in t.range(seq.saturating_add(1)..)? {
            let (k, v) = entry?;
            let event: Event = decode("events", &k.value().to_string(), v.value())?;
            if matches!(
                event.kind,
                EventType::IntentCancelled
                    | EventType::AccountClosed
                    | EventType::TransferAssigned
                    | EventType::IntentResolved
            ) {
                out.push(event);
            }
        }
        Ok(out)
    }

    /// The counters this store reached: what a restore must not go below.
    pub fn restore_floors(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let r = self.read()?;
        let t = r.open_table(META)?;
        let mut out = BTreeMap::new();
        for name in PUBLIC_COUNTERS.into_iter().chain([RESTORED_ON_ESTIMATES]) {
            if let Some(v) = t.get(name)? {
                out.insert(name.to_string(), v.value());
            }
        }
        let end = format!("{}0", DERIVE_PREFIX.trim_end_matches('/'));
        for entry in t.range(DERIVE_PREFIX..end.as_str())? {
            let (k, v) = entry?;
            out.insert(k.value().to_string(), v.value());
        }
        Ok(out)
    }

    /// Makes this store (a restored snapshot, not yet in use) safe to run
    /// after a newer store it replaces: public counters raised past the
    /// replaced store's, and every address an xpub may have handed out
    /// since the snapshot watched for good and skipped. One transaction.
    pub fn prepare_restored(
        &self,
        policies: &[AssetPolicy],
        floors: &RestoreFloors,
    ) -> Result<RestoreReport, StoreError> {
        self.write(|tx| {
            let snapshot_seq = tx.meta("next_seq")?;
            // Without the replaced store's counters, or with counters that
            // were themselves estimates, how far each key got is a guess:
            // the guessed addresses are watched on top of what is known.
            let estimated =
                floors.counters.is_empty() || floors.counters.get(RESTORED_ON_ESTIMATES).copied() == Some(1);
            if estimated {
                tx.set_meta(RESTORED_ON_ESTIMATES, 1)?;
            }
            // A snapshot of a store that had been copied carries the mark;
            // restored, it is the store that goes on.
            tx.set_meta(SUPERSEDED, 0)?;
            for name in PUBLIC_COUNTERS {
                // Counters hold the last value handed out.
                let mut floor = floors.counters.get(name).copied().unwrap_or(0);
                if name == "next_seq"
                    && let Some(at_least) = floors.next_seq_at_least
                {
                    floor = floor.max(at_least.saturating_sub(1));
                }
                if tx.meta(name)? < floor {
                    tx.set_meta(name, floor)?;
                }
            }
            let mut addresses_watched = Vec::new();
            for policy in policies {
                let Some(deriver) = &policy.deriver else { continue };
                let asset = policy.asset;
                let counter = derive_counter_key(asset, deriver);
                let from = tx.meta(&counter)?;
                let reached = floors.counters.get(&counter).copied().unwrap_or(0).max(from);
                let to = if estimated {
                    reached.max(from + u64::from(floors.derive_ahead))
                } else {
                    reached
                };
                for index in from..to {
                    let index = u32::try_from(index)
                        .map_err(|_| StoreError::Backend(format!("{asset}: derivation index {index} out of range")))?;
                    let address = deriver
                        .0
                        .derive(index)
                        .map_err(|e| StoreError::Backend(format!("{asset}: cannot derive address {index}: {e}")))?;
                    tx.watch_address(asset, &address)?;
                }
                tx.set_meta(&counter, to)?;
                addresses_watched.push((asset, to - from));
            }
            let mut cursors = Vec::new();
            for asset in Asset::ALL {
                if let Some(state) = tx.chain_state(asset)? {
                    cursors.push((asset, state.cursor.height));
                }
            }
            Ok(RestoreReport {
                next_seq: tx.meta("next_seq")? + 1,
                snapshot_seq,
                cursors,
                addresses_watched,
            })
        })
    }
}
