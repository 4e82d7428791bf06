//! paywatch-state: what is owed and what was seen.
//!
//! Pure data and rules plus the embedded store; no network, no chain code.
//! Chain sources (in `paywatch-chains`) hand this crate plain `ScanUpdate`s,
//! and the store applies each in one atomic, durable write.
//!
//! Layout:
//! - `asset` — the five assets and their per-chain facts
//! - `amount` — exact decimal amounts at asset scale
//! - `model` — intents, transfers, events, cursors, and their JSON views
//! - `machine` — the intent lifecycle as pure functions
//! - `matcher` — match keys (address, tag, unique amount)
//! - `scan` — what chain sources report, and the per-asset policy
//! - `uri` — payment URIs
//! - `ids` — time-ordered opaque ids
//! - `store` — the store (embedded redb or PostgreSQL): one atomic write per
//!   batch, event log, outbox, leases

pub mod amount;
mod asset;
pub mod ids;
pub mod machine;
pub mod matcher;
pub mod model;
mod scan;
pub mod store;
pub mod uri;

pub use asset::{Asset, MatchMode, UnknownAsset};
pub use model::{
    Account, AccountStatus, AccountView, AuditAction, AuditRecord, BlockRef, ChainState, ChainTip, Event, EventType,
    FiatPrice, Flag, Intent, IntentStatus, IntentView, PaymentView, Resolution, Transfer, TransferKey, TransferStatus,
    TransferView,
};
pub use scan::{AddressDeriver, AssetPolicy, Deriver, MempoolView, Observation, ScanUpdate};
pub use store::{
    AccountOutcome, Applied, BLOCKS_KEPT, CancelOutcome, CloseOutcome, Counts, CreateError, CreateOutcome, Created,
    DeliveryAttempt, Fence, IntentFilter, Lease, ListenHandle, ManualAction, ManualOutcome, NewAccount, NewIntent,
    NewRecord, OutboxEntry, OutboxStats, PgOptions, Refusal, RestoreFloors, RestoreReport, Store, StoreError,
    TableCount, TransferFilter,
};
