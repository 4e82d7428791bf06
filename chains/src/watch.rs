//! What a scan looks for: the watch set the daemon hands every request, and
//! the one cache a source keeps of what it derives from it (scripts,
//! 20-byte accounts), rebuilt only when the set changes.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The addresses to watch, canonical. `version` is unique to the content
/// (a source caches what it derives from the set by it); `generation` is the
/// store's watch generation the set is complete up to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchSet {
    pub version: u64,
    pub generation: u64,
    /// Every address to look for in blocks.
    pub addresses: HashSet<String>,
    /// The subset that can currently receive (configured addresses, open
    /// intents): what a per-address mempool query needs to cover.
    pub hot: HashSet<String>,
}

static WATCH_VERSIONS: AtomicU64 = AtomicU64::new(1);

/// A fresh, process-wide unique `WatchSet::version`.
pub fn next_watch_version() -> u64 {
    WATCH_VERSIONS.fetch_add(1, Ordering::Relaxed)
}

impl WatchSet {
    /// The addresses of `newer` that `self` lacks, as a set of their own:
    /// what a scan computed with `self` must be redone for.
    pub fn added_in(&self, newer: &WatchSet) -> WatchSet {
        WatchSet {
            version: next_watch_version(),
            generation: newer.generation,
            addresses: newer.addresses.difference(&self.addresses).cloned().collect(),
            hot: newer.hot.difference(&self.hot).cloned().collect(),
        }
    }
}

/// A source's lookup table built from a watch set, kept while the set's
/// version stays the same (a catch-up reuses it for every step).
pub struct WatchCache<T> {
    built: Mutex<Option<(u64, Arc<T>)>>,
}

impl<T> Default for WatchCache<T> {
    fn default() -> Self {
        WatchCache {
            built: Mutex::new(None),
        }
    }
}

impl<T> WatchCache<T> {
    /// The table for `watch`, built by `build` when the set changed.
    pub fn get(&self, watch: &WatchSet, build: impl FnOnce(&WatchSet) -> T) -> Arc<T> {
        let mut built = self.built.lock().unwrap_or_else(|p| p.into_inner());
        match &*built {
            Some((version, table)) if *version == watch.version => table.clone(),
            _ => {
                let table = Arc::new(build(watch));
                *built = Some((watch.version, table.clone()));
                table
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_is_rebuilt_only_for_a_new_version() {
        let cache = WatchCache::<usize>::default();
        let mut watch = WatchSet {
            version: next_watch_version(),
            addresses: ["a".to_string()].into(),
            ..WatchSet::default()
        };
        let mut builds = 0;
        for _ in 0..3 {
            cache.get(&watch, |w| {
                builds += 1;
                w.addresses.len()
            });
        }
        assert_eq!(builds, 1);
        watch.addresses.insert("b".into());
        watch.version = next_watch_version();
        assert_eq!(*cache.get(&watch, |w| w.addresses.len()), 2);
    }
}
