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
mod tests {
    use super::*;
    use crate::Asset;
    use crate::model::TransferKey;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).expect("valid time")
    }

    fn mins(m: i64) -> DateTime<Utc> {
        t0() + Duration::minutes(m)
    }

    fn intent(pay: &str) -> Intent {
        Intent {
            id: "pi_test".into(),
            asset: Asset::Ltc,
            status: IntentStatus::Awaiting,
            amount: pay.parse().expect("decimal"),
            pay_amount: pay.parse().expect("decimal"),
            address: "rltc1qtest".into(),
            tag: None,
            payment_uri: String::new(),
            confirmations_required: 2,
            external_id: None,
            metadata: serde_json::Value::Null,
            created_at: t0(),
            expires_at: mins(30),
            detected_at: None,
            confirmed_at: None,
            ended_at: None,
            late_window_secs: 24 * 3600,
            payments: vec![],
            request_fingerprint: String::new(),
        }
    }

    fn transfer(n: u32, amount: &str, status: TransferStatus) -> Transfer {
        Transfer {
            key: TransferKey {
                asset: Asset::Ltc,
                txid: format!("tx{n}"),
                index: 0,
            },
            address: "rltc1qtest".into(),
            tag: None,
            amount: amount.parse().expect("decimal"),
            block_height: (status == TransferStatus::Confirmed).then_some(100),
            block_hash: None,
            maturity: 0,
            status,
            intent_id: Some("pi_test".into()),
            late: false,
            dust: false,
            confirmed_announced: false,
            reverted_announced: false,
            seen_at: t0(),
        }
    }

    use TransferStatus::{Confirmed as C, Pending as P, Reverted as R};

    /// (case, pay_amount, status before, payments, expiry scan started at, transitions, status after)
    #[allow(clippy::type_complexity)]
    const CASES: &[(
        &str,
        &str,
        IntentStatus,
        &[(&str, TransferStatus)],
        Option<i64>,
        &[EventType],
        IntentStatus,
    )] = &[
        (
            "nothing seen, nothing happens",
            "1",
            IntentStatus::Awaiting,
            &[],
            None,
            &[],
            IntentStatus::Awaiting,
        ),
        (
            "mempool payment detects",
            "1",
            IntentStatus::Awaiting,
            &[("1", P)],
            None,
            &[EventType::IntentDetected],
            IntentStatus::Detected,
        ),
        (
            "underpayment still detects",
            "1",
            IntentStatus::Awaiting,
            &[("0.4", P)],
            None,
            &[EventType::IntentDetected],
            IntentStatus::Detected,
        ),
        (
            "payment seen already confirmed goes through both",
            "1",
            IntentStatus::Awaiting,
            &[("1", C)],
            None,
            &[EventType::IntentDetected, EventType::IntentConfirmed],
            IntentStatus::Confirmed,
        ),
        (
            "confirmed exact payment confirms",
            "1",
            IntentStatus::Detected,
            &[("1", C)],
            None,
            &[EventType::IntentConfirmed],
            IntentStatus::Confirmed,
        ),
        (
            "overpayment confirms",
            "1",
            IntentStatus::Detected,
            &[("1.5", C)],
            None,
            &[EventType::IntentConfirmed],
            IntentStatus::Confirmed,
        ),
        (
            "underpayment never confirms",
            "1",
            IntentStatus::Detected,
            &[("0.9", C)],
            None,
            &[],
            IntentStatus::Detected,
        ),
        (
            "top-up confirms once both are confirmed",
            "1",
            IntentStatus::Detected,
            &[("0.4", C), ("0.6", C)],
            None,
            &[EventType::IntentConfirmed],
            IntentStatus::Confirmed,
        ),
        (
            "top-up still pending waits",
            "1",
            IntentStatus::Detected,
            &[("0.4", C), ("0.6", P)],
            None,
            &[],
            IntentStatus::Detected,
        ),
        (
            "all reverted goes back to awaiting",
            "1",
            IntentStatus::Detected,
            &[("1", R)],
            None,
            &[EventType::IntentReverted],
            IntentStatus::Awaiting,
        ),
        (
            "one of two reverted stays detected",
            "1",
            IntentStatus::Detected,
            &[("1", R), ("0.5", P)],
            None,
            &[],
            IntentStatus::Detected,
        ),
        (
            "reverted payment does not count toward confirmation",
            "1",
            IntentStatus::Detected,
            &[("1", R), ("0.5", C)],
            None,
            &[],
            IntentStatus::Detected,
        ),
        (
            "expiry before the deadline does nothing",
            "1",
            IntentStatus::Awaiting,
            &[],
            Some(29),
            &[],
            IntentStatus::Awaiting,
        ),
        (
            "expiry scan after the deadline expires",
            "1",
            IntentStatus::Awaiting,
            &[],
            Some(30),
            &[EventType::IntentExpired],
            IntentStatus::Expired,
        ),
        (
            "underpaid intent expires",
            "1",
            IntentStatus::Detected,
            &[("0.5", C)],
            Some(31),
            &[EventType::IntentExpired],
            IntentStatus::Expired,
        ),
        (
            "fully paid detected intent does not expire",
            "1",
            IntentStatus::Detected,
            &[("1", P)],
            Some(31),
            &[],
            IntentStatus::Detected,
        ),
        (
            "payment seen in the expiry scan counts first",
            "1",
            IntentStatus::Awaiting,
            &[("1", P)],
            Some(31),
            &[EventType::IntentDetected],
            IntentStatus::Detected,
        ),
        (
            "underpayment seen in the expiry scan detects then expires",
            "1",
            IntentStatus::Awaiting,
            &[("0.5", P)],
            Some(31),
            &[EventType::IntentDetected, EventType::IntentExpired],
            IntentStatus::Expired,
        ),
        (
            "reverted after the deadline expires via awaiting",
            "1",
            IntentStatus::Detected,
            &[("1", R)],
            Some(31),
            &[EventType::IntentReverted, EventType::IntentExpired],
            IntentStatus::Expired,
        ),
        (
            "confirmed is final",
            "1",
            IntentStatus::Confirmed,
            &[("1", R)],
            Some(31),
            &[],
            IntentStatus::Confirmed,
        ),
        (
            "expired is final",
            "1",
            IntentStatus::Expired,
            &[("1", C)],
            None,
            &[],
            IntentStatus::Expired,
        ),
        (
            "cancelled is final",
            "1",
            IntentStatus::Cancelled,
            &[("1", C)],
            Some(31),
            &[],
            IntentStatus::Cancelled,
        ),
    ];

    #[test]
    fn lifecycle_table() {
        for (case, pay, before, payments, expiry, want_events, want_status) in CASES {
            let mut i = intent(pay);
            i.status = *before;
            let payments: Vec<Transfer> = payments
                .iter()
                .enumerate()
                .map(|(n, (amount, status))| transfer(n as u32, amount, *status))
                .collect();
            let events = settle(&mut i, &payments, mins(40), expiry.map(mins));
            assert_eq!(&events, want_events, "{case}");
            assert_eq!(i.status, *want_status, "{case}");
            // Exactly once: settling again with the same facts changes nothing.
            assert_eq!(
                settle(&mut i, &payments, mins(41), expiry.map(mins)),
                vec![],
                "{case}: second settle"
            );
        }
    }

    #[test]
    fn timestamps_follow_transitions() {
        let mut i = intent("1");
        settle(&mut i, &[transfer(0, "1", P)], mins(1), None);
        assert_eq!(i.detected_at, Some(mins(1)));
        settle(&mut i, &[transfer(0, "1", C)], mins(2), None);
        assert_eq!((i.confirmed_at, i.ended_at), (Some(mins(2)), Some(mins(2))));
        assert_eq!(i.detected_at, Some(mins(1)), "detected_at is kept");

        let mut r = intent("1");
        settle(&mut r, &[transfer(0, "1", P)], mins(1), None);
        settle(&mut r, &[transfer(0, "1", R)], mins(2), None);
        assert_eq!((r.status, r.detected_at), (IntentStatus::Awaiting, None));
    }

    #[test]
    fn summary_flags() {
        let i = intent("1");
        let flags = |p: &[Transfer]| summarize(&i, p, 100).flags;
        assert_eq!(flags(&[]), vec![]);
        assert_eq!(flags(&[transfer(0, "0.5", P)]), vec![Flag::Underpaid]);
        assert_eq!(flags(&[transfer(0, "1", P)]), vec![]);
        assert_eq!(
            flags(&[transfer(0, "1", P), transfer(1, "0.1", P)]),
            vec![Flag::Overpaid]
        );
        assert_eq!(
            flags(&[transfer(0, "0.5", R)]),
            vec![],
            "reverted money was not received"
        );
        let mut late = transfer(2, "1", P);
        late.late = true;
        assert_eq!(flags(&[late.clone()]), vec![Flag::PaidLate]);
        let s = summarize(&i, &[transfer(0, "0.5", C), late], 100);
        assert_eq!(
            (s.received, s.counted),
            ("1.5".parse().expect("d"), "0.5".parse().expect("d"))
        );
        assert_eq!(s.confirmations, 0, "least-confirmed transfer is in the mempool");
    }

    #[test]
    fn cancel_only_from_awaiting() {
        let mut i = intent("1");
        assert_eq!(cancel(&mut i, mins(1)), Ok(EventType::IntentCancelled));
        assert_eq!((i.status, i.ended_at), (IntentStatus::Cancelled, Some(mins(1))));
        for status in [
            IntentStatus::Detected,
            IntentStatus::Confirmed,
            IntentStatus::Expired,
            IntentStatus::Cancelled,
        ] {
            let mut i = intent("1");
            i.status = status;
            assert_eq!(cancel(&mut i, mins(1)), Err(NotCancellable(status.as_str())));
            assert_eq!(i.status, status);
        }
    }

    #[test]
    fn arrivals_after_the_end_are_late_then_unmatched() {
        let mut i = intent("1");
        assert_eq!(
            arrival(&i, mins(1000)),
            Arrival::OnTime,
            "open intents receive on time, whatever the clock"
        );
        i.status = IntentStatus::Expired;
        i.ended_at = Some(mins(30));
        assert_eq!(arrival(&i, mins(31)), Arrival::Late);
        assert_eq!(arrival(&i, mins(30 + 24 * 60 - 1)), Arrival::Late);
        assert_eq!(arrival(&i, mins(30 + 24 * 60)), Arrival::TooLate);
    }

    #[test]
    fn confirmation_rules() {
        let chain = ChainView {
            scanned_height: 101,
            finalized: None,
        };
        let mut t = transfer(0, "1", P);
        t.block_height = Some(100);
        assert!(transfer_confirmed(&t, 2, &chain));
        assert!(!transfer_confirmed(&t, 3, &chain));
        assert!(transfer_confirmed(&t, 0, &chain), "zero means one: in a block");
        t.block_height = None;
        assert!(!transfer_confirmed(&t, 0, &chain), "mempool is never confirmed");
        t.block_height = Some(100);
        t.maturity = 100;
        assert!(!transfer_confirmed(&t, 2, &chain), "coinbase needs 100");
        assert!(transfer_confirmed(
            &t,
            2,
            &ChainView {
                scanned_height: 199,
                finalized: None
            }
        ));
        t.maturity = 0;
        let finality = ChainView {
            scanned_height: 200,
            finalized: Some(99),
        };
        assert!(!transfer_confirmed(&t, 1, &finality), "deep but not final");
        assert!(transfer_confirmed(
            &t,
            1,
            &ChainView {
                finalized: Some(100),
                ..finality
            }
        ));
        t.status = TransferStatus::Reverted;
        assert!(!transfer_confirmed(&t, 1, &chain));
    }
}
