//! The engine's side of the scan path: the plain data a poller puts in a
//! scan request (cursor, stored tip, watch set), and applying what the
//! source returned in one atomic store write.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use paywatch_chains::WatchSet;
use paywatch_chains::watch::next_watch_version;
use paywatch_state::{Applied, Asset, AssetPolicy, BlockRef, Fence, ScanUpdate, Store, StoreError};

use super::Engine;

/// How often the hot subset of a watch set is rebuilt from the open intents.
const HOT_REFRESH: Duration = Duration::from_secs(600);

/// One asset's watch set and when its hot subset was last rebuilt.
pub(super) struct Watch {
    pub(super) set: Arc<WatchSet>,
    pub(super) hot_built: Instant,
}

/// The longest creates are held back on other instances, should the
/// holder die before it releases them.
const CREATES_HELD_AT_MOST: Duration = Duration::from_secs(30);

/// Creates of an asset held back (`Engine::fence_creates`) until dropped.
pub struct CreatesHeld {
    _local: tokio::sync::OwnedMutexGuard<()>,
    /// The fence of the `creates/<ASSET>` lease, with a shared store.
    shared: Option<u64>,
    store: Arc<Store>,
    holder: String,
    asset: Asset,
}

impl CreatesHeld {
    fn lease(&self) -> String {
        format!("creates/{}", self.asset)
    }

    /// Takes or renews the hold on the other instances (a shared store),
    /// for another `CREATES_HELD_AT_MOST`.
    pub async fn renew(&mut self) {
        if !self.store.is_shared() {
            return;
        }
        let (store, lease, holder) = (self.store.clone(), self.lease(), self.holder.clone());
        match tokio::task::spawn_blocking(move || store.acquire_lease(&lease, &holder, CREATES_HELD_AT_MOST)).await {
            Ok(Ok(Some(fence))) => self.shared = Some(fence),
            // Held by another instance's scanner still (a former holder's
            // hold lapses on its own): creates are held back all the same.
            Ok(Ok(None)) => {}
            _ => tracing::warn!(asset = %self.asset, "cannot hold creates on the other instances; holding this one's"),
        }
    }
}

impl Drop for CreatesHeld {
    fn drop(&mut self) {
        if let Some(fence) = self.shared
            && let Err(e) = self.store.release_lease(&self.lease(), &self.holder, fence)
        {
            tracing::warn!(asset = %self.asset, error = %e, "cannot release the creates held on the other instances; they resume when the hold lapses");
        }
    }
}

/// Why a scan update was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Addresses were watched after the update was computed: the poller
    /// redoes the step for them and applies again.
    #[error("the watch set changed")]
    WatchChanged,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0} is not configured")]
    NotConfigured(Asset),
    #[error("the apply task failed: {0}")]
    Task(String),
}

impl Engine {
    /// The durably applied cursor, `None` before the first poll.
    pub fn cursor(&self, asset: Asset) -> Result<Option<BlockRef>, StoreError> {
        Ok(self.store.chain_state(asset)?.map(|c| c.cursor))
    }

    /// The highest tip height stored with the cursor, and when it rose.
    pub fn stored_tip(&self, asset: Asset) -> Option<(u64, Option<DateTime<Utc>>)> {
        let state = self.store.chain_state(asset).ok().flatten()?;
        Some((state.tip.height, state.tip_rose_at))
    }

    /// Holds back intent creation of `asset` until the guard is dropped:
    /// the last resort when creates keep changing the watch set faster than
    /// even a one-block step can be redone.
    ///
    /// With a shared store, creates on the other instances are held back
    /// too, under the lease `creates/<ASSET>` (the database's clock; it
    /// lapses after `CREATES_HELD_AT_MOST` should this instance die), which
    /// `CreatesHeld::renew` keeps while the redos go on.
    pub async fn fence_creates(&self, asset: Asset) -> Option<CreatesHeld> {
        let fence = self.create_fences.get(&asset)?.clone();
        let local = fence.lock_owned().await;
        let mut held = CreatesHeld {
            _local: local,
            shared: None,
            store: self.store.clone(),
            holder: self.creates_holder.clone(),
            asset,
        };
        held.renew().await;
        Some(held)
    }

    /// Applies one scan step atomically, then tells feed readers, webhooks
    /// and metrics.
    /// With a shared store, `fence` is the asset's scan lease as this
    /// instance holds it: once another instance took it over, the update is
    /// refused (`StoreError::Fenced`).
    pub async fn apply_scan(
        self: &Arc<Self>,
        asset: Asset,
        update: ScanUpdate,
        fence: Option<Fence>,
    ) -> Result<(), ApplyError> {
        let engine = self.clone();
        let applied: Applied = tokio::task::spawn_blocking(move || {
            let policy = engine.policies.get(&asset).ok_or(ApplyError::NotConfigured(asset))?;
            engine
                .store
                .apply_scan_fenced(policy, &update, engine.clock.now(), fence.as_ref())
                .map_err(|e| match e {
                    StoreError::WatchChanged { .. } => ApplyError::WatchChanged,
                    other => ApplyError::Store(other),
                })
        })
        .await
        .map_err(|e| ApplyError::Task(e.to_string()))??;
        let code = asset.code();
        let m = &self.metrics;
        m.transfers
            .with_label_values(&[code, "true"])
            .inc_by(applied.matched_transfers + applied.deposits);
        m.transfers
            .with_label_values(&[code, "false"])
            .inc_by(applied.unmatched_transfers);
        m.dust_transfers
            .with_label_values(&[code])
            .inc_by(applied.dust_transfers);
        for e in &applied.events {
            tracing::info!(
                asset = code,
                seq = e.seq,
                event = e.kind.as_str(),
                intent = e.intent.as_ref().map(|i| i.id.as_str()).unwrap_or("-"),
                "event"
            );
        }
        self.publish(&applied.events);
        Ok(())
    }

    /// The watch set, complete up to the store's watch generation: what was
    /// watched since the set was built is read from the store and added.
    /// The hot subset is rebuilt now and then so that addresses of intents
    /// long ended stop costing per-address mempool queries.
    pub fn watch_set(&self, asset: Asset) -> Result<Arc<WatchSet>, StoreError> {
        let Some(lock) = self.watch_sets.get(&asset) else {
            return Ok(Arc::default());
        };
        let current = lock.read().unwrap_or_else(|p| p.into_inner()).set.clone();
        let (generation, added) = self.store.watched_since(asset, current.generation)?;
        let uses_hot = self.per_address_mempool.contains(&asset);
        let stale = uses_hot && lock.read().unwrap_or_else(|p| p.into_inner()).hot_built.elapsed() > HOT_REFRESH;
        if added.is_empty() && !stale {
            return Ok(current);
        }
        let mut guard = lock.write().unwrap_or_else(|p| p.into_inner());
        let mut next = (*guard.set).clone();
        if generation > next.generation {
            for address in added {
                next.addresses.insert(address.clone());
                next.hot.insert(address);
            }
            next.generation = generation;
        }
        if stale && let Some(policy) = self.policies.get(&asset) {
            match hot_addresses(&self.store, policy) {
                Ok(hot) => {
                    next.hot = hot;
                    guard.hot_built = Instant::now();
                }
                Err(e) => {
                    tracing::warn!(asset = %asset, error = %e, "cannot rebuild the hot address set; keeping the old one")
                }
            }
        }
        next.version = next_watch_version();
        guard.set = Arc::new(next);
        Ok(guard.set.clone())
    }
}

/// Configured addresses, and those of open intents and open deposit accounts.
pub(super) fn hot_addresses(store: &Store, policy: &AssetPolicy) -> Result<HashSet<String>, StoreError> {
    let mut hot: HashSet<String> = policy.addresses.iter().cloned().collect();
    hot.extend(store.open_intent_addresses(policy.asset)?);
    hot.extend(store.open_account_addresses(policy.asset)?);
    Ok(hot)
}
