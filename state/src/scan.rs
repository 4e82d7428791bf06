//! What a chain source hands the store: plain data, no store access. The
//! store applies one `ScanUpdate` in one atomic write (bdk's pattern: the
//! backend returns an update, the state crate applies it).

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::model::{BlockRef, ChainTip};
use crate::{Asset, MatchMode};

/// A transfer to a watched address, as a chain reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    pub txid: String,
    /// Output index, log index, or 0 where the transaction is the key (XRP).
    pub index: u32,
    /// Canonical address form, as the chain crate's address parser gives it.
    pub address: String,
    pub tag: Option<u32>,
    pub amount: Decimal,
    /// `None` while in the mempool.
    pub block: Option<BlockRef>,
    /// Minimum depth set by the chain (coinbase 100, MWEB peg-out 6), else 0.
    pub maturity: u32,
}

/// What a source saw of the mempool in one step.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MempoolView {
    /// Watched transfers the source saw in the mempool. May be a partial
    /// view (per-address pages): absence from it proves nothing.
    pub transfers: Vec<Observation>,
    /// Transaction ids of earlier mempool transfers that the source showed
    /// gone by evidence: the node no longer knows the transaction (asked for
    /// it by id), or another transaction spent its inputs. Only these are
    /// reverted, and only if no block holds them.
    pub gone: Vec<String>,
}

/// One step of a scan, applied atomically.
///
/// Contract for sources: `observations` are every watched transfer in the
/// blocks after `from` up to `cursor`, in order; after a `rollback_to` the
/// update also carries the new branch up to `cursor`, so a transfer that is
/// not seen again is known to be gone.
#[derive(Clone, Debug, PartialEq)]
pub struct ScanUpdate {
    pub asset: Asset,
    /// The cursor the scan started from. If the stored cursor differs, the
    /// update is refused (someone else applied in between).
    pub from: Option<BlockRef>,
    /// Blocks above this height left the best chain: roll back what they added.
    pub rollback_to: Option<u64>,
    /// Every block scanned, in order, so reorgs can be found by hash later.
    pub blocks: Vec<BlockRef>,
    pub observations: Vec<Observation>,
    /// The mempool as the source saw it, when it watched the mempool in this
    /// step (see `MempoolView`: only proven disappearances revert).
    pub mempool: Option<MempoolView>,
    pub tip: ChainTip,
    pub cursor: BlockRef,
    /// Set on the update that completes a scan round up to the tip: the time
    /// that round began. Only such an update may expire intents.
    pub round_started_at: Option<DateTime<Utc>>,
    /// The watch generation the source scanned with. If addresses were
    /// watched since (an intent was created meanwhile), the update is refused
    /// with `WatchChanged` and redone for the new addresses: no address
    /// handed out is ever scanned past unwatched. `None` skips the check
    /// (tests of the store alone).
    pub watch_generation: Option<u64>,
}

/// An intent's lifetime when neither the request nor the config sets one.
pub const DEFAULT_EXPIRES_IN_MINUTES: i64 = 30;
/// How long after its end an intent still receives (late) payments.
pub const DEFAULT_LATE_WINDOW_HOURS: i64 = 24;
/// How many `amount_step`s above the amount `amount` mode may go.
pub const DEFAULT_MAX_AMOUNT_OFFSETS: u32 = 100;

/// Per-asset rules from the config that the store applies.
#[derive(Clone, Debug, PartialEq)]
pub struct AssetPolicy {
    pub asset: Asset,
    pub match_mode: MatchMode,
    /// Receive addresses in canonical form: the pool in `address` mode, the
    /// shared addresses in `tag` and `amount` modes.
    pub addresses: Vec<String>,
    pub confirmations: u32,
    pub expires_in: chrono::Duration,
    pub late_window: chrono::Duration,
    pub amount_step: Decimal,
    pub max_amount_offsets: u32,
    /// Whether the source watches a mempool. Without one, a transfer whose
    /// block was rolled back and not seen again is reverted at once.
    pub mempool: bool,
    /// Transfers below this are dust: recorded, never a payment, no event.
    pub min_amount: Decimal,
    /// Token contract, for the EIP-681 payment URI.
    pub contract: Option<String>,
    /// EVM chain id, for the EIP-681 payment URI.
    pub chain_id: Option<u64>,
    /// In `address` mode: derive a fresh address per intent (xpub) instead
    /// of taking one from the pool.
    pub deriver: Option<Deriver>,
}

/// Derives receive addresses from a watch-only key (BIP32 xpub).
pub trait AddressDeriver: Send + Sync {
    /// The canonical receive address at `index`.
    fn derive(&self, index: u32) -> Result<String, String>;
    /// A stable identity of the key and path: numbering is kept per identity,
    /// so a different key in the config starts at its own index 0.
    fn id(&self) -> String;
}

/// Shared handle to a deriver; compared and printed by its identity.
#[derive(Clone)]
pub struct Deriver(pub Arc<dyn AddressDeriver>);

impl fmt::Debug for Deriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Deriver({})", self.0.id())
    }
}

impl PartialEq for Deriver {
    fn eq(&self, other: &Self) -> bool {
        self.0.id() == other.0.id()
    }
}

impl AssetPolicy {
    /// The defaults of docs/assets.md and docs/config.md for `asset`, with the given addresses.
    pub fn defaults(asset: Asset, addresses: Vec<String>) -> AssetPolicy {
        AssetPolicy {
            asset,
            match_mode: asset.default_match(),
            addresses,
            confirmations: asset.default_confirmations(),
            expires_in: chrono::Duration::minutes(DEFAULT_EXPIRES_IN_MINUTES),
            late_window: chrono::Duration::hours(DEFAULT_LATE_WINDOW_HOURS),
            amount_step: asset.default_amount_step(),
            max_amount_offsets: DEFAULT_MAX_AMOUNT_OFFSETS,
            mempool: asset.has_mempool(),
            min_amount: asset.default_min_amount(),
            contract: None,
            chain_id: None,
            deriver: None,
        }
    }
}
