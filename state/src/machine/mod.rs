//! The intent lifecycle of docs/lifecycle.md as pure functions: no I/O, no clock, no
//! store. The store calls them inside its write transaction; the tests below
//! drive them through every transition as tables.
//!
//! ```text
//! awaiting --first counted transfer--> detected --paid in full, all confirmed--> confirmed
//!    |  ^                                 |
//!    |  +----every counted one reverted---+
//!    +--expiry scan passed, not fully paid--> expired        (detected too)
//!    +--cancel--> cancelled
//! ```

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;

use crate::model::{EventType, Flag, Intent, IntentStatus, Transfer, TransferStatus, confirmations_at};

/// What the chain says, as far as confirming a transfer needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainView {
    /// Height (ledger index) up to which the chain is durably scanned.
    pub scanned_height: u64,
    /// Finalized / solidified / validated height where the chain has one.
    pub finalized: Option<u64>,
}

/// Whether a transfer is confirmed: deep enough (a floor of 1, and the
/// chain's own maturity such as 100 for coinbase), and at or below the
/// chain's finality signal where it has one.
pub fn transfer_confirmed(transfer: &Transfer, required: u32, chain: &ChainView) -> bool {
    let Some(height) = transfer.block_height else {
        return false;
    };
    if transfer.status == TransferStatus::Reverted {
        return false;
    }
    let needed = u64::from(required.max(1).max(transfer.maturity));
    confirmations_at(Some(height), chain.scanned_height) >= needed
        && chain.finalized.is_none_or(|finalized| height <= finalized)
}

/// The derived part of an intent: what its payments add up to.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Sum of matched transfers not reverted (late ones included: the money arrived).
    pub received: Decimal,
    /// Sum of the transfers that count toward the status (not reverted, not late).
    pub counted: Decimal,
    pub counted_transfers: usize,
    pub all_counted_confirmed: bool,
    /// Confirmations of the least-confirmed transfer not reverted.
    pub confirmations: u64,
    pub flags: Vec<Flag>,
}

pub fn summarize(intent: &Intent, payments: &[Transfer], scanned_height: u64) -> Summary {
    let live = || payments.iter().filter(|t| t.status != TransferStatus::Reverted);
    let counted = || live().filter(|t| !t.late);
    let received: Decimal = live().map(|t| t.amount).sum();
    let mut flags = Vec::new();
    if received > Decimal::ZERO && received < intent.pay_amount {
        flags.push(Flag::Underpaid);
    }
    if received > intent.pay_amount {
        flags.push(Flag::Overpaid);
    }
    if live().any(|t| t.late) {
        flags.push(Flag::PaidLate);
    }
    Summary {
        received,
        counted: counted().map(|t| t.amount).sum(),
        counted_transfers: counted().count(),
        all_counted_confirmed: counted().all(|t| t.status == TransferStatus::Confirmed),
        confirmations: live()
            .map(|t| confirmations_at(t.block_height, scanned_height))
            .min()
            .unwrap_or(0),
        flags,
    }
}

/// Applies the next due transition to `intent`, if any, and names it. Call
/// until it returns `None`: one scan can take an intent from awaiting through
/// detected to confirmed, and each step gets its own event.
///
/// `expiry_scan_started` is the start of a scan that has just completed up to
/// the tip; only such a scan may expire an intent (docs/lifecycle.md: expiry is judged
/// by the chain, not by a backend outage).
pub fn step(
    intent: &mut Intent,
    payments: &[Transfer],
    now: DateTime<Utc>,
    expiry_scan_started: Option<DateTime<Utc>>,
) -> Option<EventType> {
    let summary = summarize(intent, payments, 0);
    let paid_in_full = summary.counted_transfers > 0 && summary.counted >= intent.pay_amount;
    match intent.status {
        IntentStatus::Awaiting if summary.counted_transfers > 0 => {
            intent.status = IntentStatus::Detected;
            intent.detected_at = Some(now);
            Some(EventType::IntentDetected)
        }
        IntentStatus::Detected if summary.counted_transfers == 0 => {
            intent.status = IntentStatus::Awaiting;
            intent.detected_at = None;
            Some(EventType::IntentReverted)
        }
        IntentStatus::Detected if paid_in_full && summary.all_counted_confirmed => {
            intent.status = IntentStatus::Confirmed;
            intent.confirmed_at = Some(now);
            intent.ended_at = Some(now);
            Some(EventType::IntentConfirmed)
        }
        status if status.is_open() => {
            let expiry_due = expiry_scan_started.is_some_and(|started| started >= intent.expires_at);
            // A detected intent paid in full does not expire while it confirms.
            if expiry_due && !paid_in_full {
                intent.status = IntentStatus::Expired;
                intent.ended_at = Some(now);
                Some(EventType::IntentExpired)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Applies every due transition; returns them in order.
pub fn settle(
    intent: &mut Intent,
    payments: &[Transfer],
    now: DateTime<Utc>,
    expiry_scan_started: Option<DateTime<Utc>>,
) -> Vec<EventType> {
    std::iter::from_fn(|| step(intent, payments, now, expiry_scan_started)).collect()
}

/// The intent was not awaiting, so it cannot be cancelled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("intent is {0}, only an awaiting intent can be cancelled")]
pub struct NotCancellable(pub &'static str);

pub fn cancel(intent: &mut Intent, now: DateTime<Utc>) -> Result<EventType, NotCancellable> {
    if intent.status != IntentStatus::Awaiting {
        return Err(NotCancellable(intent.status.as_str()));
    }
    intent.status = IntentStatus::Cancelled;
    intent.ended_at = Some(now);
    Ok(EventType::IntentCancelled)
}

/// How a new transfer that matched this intent's key is recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// Counts toward the intent's status.
    OnTime,
    /// Recorded on the intent with `late: true`, flag `paid_late`; status stays.
    Late,
    /// The intent's late window is over: an unmatched transfer.
    TooLate,
}

pub fn arrival(intent: &Intent, now: DateTime<Utc>) -> Arrival {
    if intent.status.is_open() {
        Arrival::OnTime
    } else if holds_match_key(intent, now) {
        Arrival::Late
    } else {
        Arrival::TooLate
    }
}

/// Whether the intent still owns its match key: while open, and for
/// `late_window` after it ended (so a late payment is never mistaken for a
/// newer order with the same address, tag or amount).
pub fn holds_match_key(intent: &Intent, now: DateTime<Utc>) -> bool {
    match intent.ended_at {
        None => true,
        Some(ended) => now < ended + late_window(intent),
    }
}

pub fn late_window(intent: &Intent) -> Duration {
    Duration::seconds(i64::try_from(intent.late_window_secs).unwrap_or(i64::MAX / 1000))
}

#[cfg(test)]
mod tests;
