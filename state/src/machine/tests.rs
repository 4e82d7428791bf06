//! The lifecycle table: every transition, and the rules around it.

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
        resolution: None,
        fiat: None,
        checkout_token: None,
        checkout_url: None,
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
        account_id: None,
        assignment: None,
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
