//! Deposit accounts and manual actions: targets held for good, every
//! deposit reported at each step, assignments and resolutions on the record.

use super::*;
use crate::store::{AccountOutcome, CloseOutcome, ManualAction, NewAccount, Refusal};

fn new_account(asset: crate::Asset, customer: &str) -> NewAccount {
    NewAccount {
        asset,
        external_id: customer.into(),
        metadata: serde_json::json!({}),
    }
}

fn opened(outcome: Result<AccountOutcome, CreateError>) -> AccountView {
    match outcome {
        Ok(AccountOutcome::Created(v)) => v,
        other => panic!("expected a new account, got {other:?}"),
    }
}

/// USDT_TRC20 in amount mode on `T1`, no mempool.
fn trc20_setup() -> (AssetPolicy, Place, Store, Chain) {
    let mut policy = AssetPolicy::defaults(crate::Asset::UsdtTrc20, vec!["T1".into()]);
    policy.mempool = false;
    let (dir, store, chain) = setup(&policy);
    (policy, dir, store, chain)
}

fn trc20_key(txid: &str) -> TransferKey {
    TransferKey {
        asset: crate::Asset::UsdtTrc20,
        txid: txid.into(),
        index: 0,
    }
}

fn by_hand(reason: &str) -> ManualAction {
    ManualAction {
        actor: "ops".into(),
        reason: reason.into(),
    }
}

#[test]
fn an_account_keeps_its_pool_address_for_good_and_reports_every_deposit() {
    let policy = AssetPolicy::defaults(crate::Asset::Ltc, vec!["P1".into(), "P2".into()]);
    let (_dir, store, mut chain) = setup(&policy);
    let account = opened(store.create_account(&policy, new_account(crate::Asset::Ltc, "cust-1"), t(1)));
    assert_eq!((account.address.as_str(), account.tag), ("P1", None));
    assert_eq!(account.payment_uri, "litecoin:P1", "no amount on a deposit target");
    // A retry is the same account; another body for the customer is a conflict.
    assert_eq!(
        store
            .create_account(&policy, new_account(crate::Asset::Ltc, "cust-1"), t(2))
            .unwrap(),
        AccountOutcome::Existing(account.clone())
    );
    let mut other = new_account(crate::Asset::Ltc, "cust-1");
    other.metadata = serde_json::json!({"tier": "gold"});
    assert!(matches!(
        store.create_account(&policy, other, t(2)),
        Err(CreateError::ExternalIdConflict(_))
    ));
    // Intents never get the account's address, not from the pool, not by asking.
    let intent = created(store.create_intent(&policy, new_intent(crate::Asset::Ltc, "1"), t(3)));
    assert_eq!(intent.address, "P2");
    assert!(matches!(
        store.create_intent(&policy, new_intent(crate::Asset::Ltc, "1"), t(3)),
        Err(CreateError::NoFreeAddress(_))
    ));
    let mut explicit = new_intent(crate::Asset::Ltc, "1");
    explicit.address = Some("P1".into());
    assert!(matches!(
        store.create_intent(&policy, explicit, t(3)),
        Err(CreateError::AddressInUse(_))
    ));

    // A deposit in the mempool, then mined and confirmed.
    let ev = store
        .apply_scan(
            &policy,
            &chain.update(vec![], Some(vec![obs("d1", "P1", "0.5", None)]), None),
            t(4),
        )
        .unwrap();
    assert_eq!(kinds(&ev), [EventType::DepositDetected]);
    let seen = ev[0].account.as_ref().unwrap();
    assert_eq!((seen.id.as_str(), seen.pending_total), (account.id.as_str(), d("0.5")));
    assert_eq!(
        ev[0].transfer.as_ref().unwrap().account_id.as_deref(),
        Some(account.id.as_str())
    );
    chain.height = 106;
    let ev = store
        .apply_scan(
            &policy,
            &chain.update(vec![obs("d1", "P1", "0.5", Some(101))], Some(vec![]), None),
            t(5),
        )
        .unwrap();
    assert_eq!(kinds(&ev), [EventType::DepositConfirmed]);
    assert_eq!(ev[0].account.as_ref().unwrap().confirmed_total, d("0.5"));

    // A second deposit, mined, then orphaned and gone from the node.
    chain.height = 107;
    let ev = store
        .apply_scan(
            &policy,
            &chain.update(vec![obs("d2", "P1", "0.25", Some(107))], Some(vec![]), None),
            t(6),
        )
        .unwrap();
    assert_eq!(kinds(&ev), [EventType::DepositDetected]);
    let mut reorg = chain.update(vec![], None, None);
    reorg.rollback_to = Some(106);
    let ev = store.apply_scan(&policy, &reorg, t(7)).unwrap();
    assert!(ev.is_empty(), "orphaned but maybe still in the mempool: {ev:?}");
    let ev = store
        .apply_scan(&policy, &chain.update(vec![], Some(vec![]), None), t(8))
        .unwrap();
    assert_eq!(kinds(&ev), [EventType::DepositReverted]);
    assert_eq!(ev[0].transfer.as_ref().unwrap().txid, "d2");
    let totals = store.account(&account.id).unwrap().unwrap();
    assert_eq!(
        (totals.confirmed_total, totals.pending_total, totals.deposits),
        (d("0.5"), d("0"), 2)
    );

    // Closed: no longer handed out, and what still arrives is recorded.
    let CloseOutcome::Closed(closed, ev) = store.close_account(&account.id, t(9)).unwrap() else {
        panic!("closes")
    };
    assert_eq!(
        (closed.status, kinds(&ev)),
        (AccountStatus::Closed, vec![EventType::AccountClosed])
    );
    assert!(matches!(
        store.close_account(&account.id, t(10)).unwrap(),
        CloseOutcome::AlreadyClosed(_)
    ));
    let ev = store
        .apply_scan(
            &policy,
            &chain.update(vec![], Some(vec![obs("d3", "P1", "1", None)]), None),
            t(11),
        )
        .unwrap();
    assert_eq!(kinds(&ev), [EventType::DepositDetected]);
    let (deposits, _) = store.account_deposits(&account.id, None, 10).unwrap();
    assert_eq!(
        deposits.iter().map(|t| t.txid.as_str()).collect::<Vec<_>>(),
        ["d3", "d2", "d1"]
    );
    let (page, next) = store.account_deposits(&account.id, None, 2).unwrap();
    assert_eq!(page.len(), 2);
    let (rest, end) = store.account_deposits(&account.id, next, 2).unwrap();
    assert_eq!((rest[0].txid.as_str(), end), ("d1", None));
    // Deposits are neither unmatched nor someone's payment.
    let (unmatched, _) = store
        .list_transfers(&TransferFilter {
            unmatched: true,
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert!(unmatched.is_empty());
    // The running totals equal the sums of the deposits as listed.
    let view = store.account(&account.id).unwrap().unwrap();
    let sum =
        |status: TransferStatus| -> Decimal { deposits.iter().filter(|t| t.status == status).map(|t| t.amount).sum() };
    assert_eq!(
        (view.confirmed_total, view.pending_total, view.deposits),
        (
            sum(TransferStatus::Confirmed),
            sum(TransferStatus::Pending),
            deposits.len() as u64
        )
    );
    assert_eq!((view.confirmed_total, view.pending_total), (d("0.5"), d("1")));
    let counts = store.account_counts().unwrap();
    assert!(counts.contains(&(crate::Asset::Ltc, Some(AccountStatus::Closed), 1)));
    assert!(counts.contains(&(crate::Asset::Ltc, Some(AccountStatus::Open), 0)));
    assert!(counts.contains(&(crate::Asset::Ltc, None, 3)));
}

#[test]
fn xrp_accounts_get_tags_no_intent_ever_gets() {
    let mut policy = AssetPolicy::defaults(crate::Asset::Xrp, vec!["rShared".into()]);
    policy.match_mode = MatchMode::Tag;
    policy.mempool = false;
    let (_dir, store, mut chain) = setup(&policy);
    let a = opened(store.create_account(&policy, new_account(crate::Asset::Xrp, "c1"), t(1)));
    let b = opened(store.create_account(&policy, new_account(crate::Asset::Xrp, "c2"), t(1)));
    assert_eq!((a.address.as_str(), b.address.as_str()), ("rShared", "rShared"));
    assert_ne!(a.tag, b.tag);
    let tag = a.tag.unwrap();
    assert_eq!(a.payment_uri, format!("xrpl:rShared?dt={tag}"));
    let mut same_tag = new_intent(crate::Asset::Xrp, "5");
    same_tag.tag = Some(tag);
    assert!(matches!(
        store.create_intent(&policy, same_tag, t(2)),
        Err(CreateError::TagUsed(_))
    ));
    chain.height = 101;
    let mut deposit = obs("x1", "rShared", "5", Some(101));
    deposit.tag = Some(tag);
    let untagged = obs("x2", "rShared", "5", Some(101));
    let ev = store
        .apply_scan(&policy, &chain.update(vec![deposit, untagged], None, None), t(3))
        .unwrap();
    assert_eq!(
        kinds(&ev),
        [
            EventType::DepositDetected,
            EventType::TransferUnmatched,
            EventType::DepositConfirmed,
            EventType::TransferConfirmed
        ]
    );
    assert_eq!(store.account(&a.id).unwrap().unwrap().confirmed_total, d("5"));
    assert_eq!(store.account(&b.id).unwrap().unwrap().deposits, 0);
    // Dust to an account is recorded, never credited, never announced.
    chain.height = 102;
    let mut dust = obs("x3", "rShared", "0.000001", Some(102));
    dust.tag = Some(tag);
    let ev = store
        .apply_scan(&policy, &chain.update(vec![dust], None, None), t(4))
        .unwrap();
    assert!(ev.is_empty(), "{ev:?}");
    assert_eq!(store.account(&a.id).unwrap().unwrap().deposits, 1);
    // A ledger rolled back without the deposit reverts it at once (no mempool).
    let mut reorg = chain.update(vec![], None, None);
    reorg.rollback_to = Some(100);
    let ev = store.apply_scan(&policy, &reorg, t(5)).unwrap();
    assert!(kinds(&ev).contains(&EventType::DepositReverted), "{ev:?}");
    let after = store.account(&a.id).unwrap().unwrap();
    assert_eq!((after.confirmed_total, after.pending_total), (d("0"), d("0")));
}

#[test]
fn accounts_need_a_target_of_their_own() {
    let policy = AssetPolicy::defaults(crate::Asset::UsdtTrc20, vec!["T1".into()]);
    assert_eq!(policy.match_mode, MatchMode::Amount);
    let (_dir, store, _chain) = setup(&policy);
    assert!(matches!(
        store.create_account(&policy, new_account(crate::Asset::UsdtTrc20, "c1"), t(1)),
        Err(CreateError::NotAllowed(_))
    ));
}

#[test]
fn an_unmatched_transfer_assigned_by_hand_runs_the_intents_lifecycle() {
    let mut policy = AssetPolicy::defaults(crate::Asset::UsdtTrc20, vec!["T1".into()]);
    policy.mempool = false;
    policy.confirmations = 3;
    let (_dir, store, mut chain) = setup(&policy);
    let intent = created(store.create_intent(&policy, new_intent(crate::Asset::UsdtTrc20, "10"), t(1)));
    // An exchange withdrawal that deducted its fee: matches no amount.
    chain.height = 101;
    let ev = store
        .apply_scan(
            &policy,
            &chain.update(vec![obs("w", "T1", "9.5", Some(101))], None, None),
            t(2),
        )
        .unwrap();
    assert_eq!(kinds(&ev), [EventType::TransferUnmatched]);
    let key = trc20_key("w");
    let done = store
        .assign_transfer(&key, &intent.id, &by_hand("customer's exchange took a fee"), t(3))
        .unwrap()
        .unwrap();
    assert_eq!(
        kinds(&done.events),
        [EventType::TransferAssigned, EventType::IntentDetected]
    );
    let audit = done.events[0].audit.as_ref().unwrap();
    assert_eq!(
        (audit.actor.as_str(), audit.action),
        ("ops", AuditAction::TransferAssign)
    );
    assert_eq!(audit.before["intent"]["status"], "awaiting");
    assert_eq!(audit.after["intent"]["status"], "detected");
    assert_eq!(audit.after["transfer"]["intent_id"], intent.id.as_str());
    // Underpaid by the fee: the intent confirms only once topped up.
    chain.height = 103;
    let ev = store
        .apply_scan(&policy, &chain.update(vec![], None, None), t(4))
        .unwrap();
    assert!(ev.is_empty(), "underpaid: {ev:?}");
    assert_eq!(store.intent(&intent.id).unwrap().unwrap().flags, vec![Flag::Underpaid]);
    // Assigned once, and never to a second intent.
    let other = created(store.create_intent(&policy, new_intent(crate::Asset::UsdtTrc20, "9.5"), t(5)));
    assert!(matches!(
        store.assign_transfer(&key, &other.id, &by_hand("again"), t(5)).unwrap(),
        Err(Refusal::AlreadyAssigned(..))
    ));
    // No longer listed as unmatched.
    let (unmatched, _) = store
        .list_transfers(&TransferFilter {
            unmatched: true,
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert!(unmatched.is_empty(), "{unmatched:?}");
    // The top-up matches nothing either (its amount is not the pay amount):
    // assigned too, the intent is paid in full and confirms with it.
    chain.height = 104;
    store
        .apply_scan(
            &policy,
            &chain.update(vec![obs("top", "T1", "0.5", Some(104))], None, None),
            t(6),
        )
        .unwrap();
    let topup = trc20_key("top");
    let done = store
        .assign_transfer(&topup, &intent.id, &by_hand("top-up"), t(7))
        .unwrap()
        .unwrap();
    assert_eq!(kinds(&done.events), [EventType::TransferAssigned]);
    assert_eq!(
        done.audit.after["intent"]["status"], "detected",
        "the top-up is 1 of 3 deep"
    );
    chain.height = 106;
    let ev = store
        .apply_scan(&policy, &chain.update(vec![], None, None), t(8))
        .unwrap();
    assert_eq!(kinds(&ev), [EventType::IntentConfirmed]);
    // A reorg that drops the assigned transfer goes through the intent as usual.
    let mut reorg = chain.update(vec![obs("top", "T1", "0.5", Some(104))], None, None);
    reorg.rollback_to = Some(100);
    let ev = store.apply_scan(&policy, &reorg, t(9)).unwrap();
    assert_eq!(kinds(&ev), [EventType::TransferReverted]);
    assert_eq!(ev[0].transfer.as_ref().unwrap().txid, "w");
}

#[test]
fn a_confirmed_transfer_assigned_to_a_stricter_intent_waits_for_its_rule() {
    let mut policy = AssetPolicy::defaults(crate::Asset::UsdtTrc20, vec!["T1".into()]);
    policy.mempool = false;
    policy.confirmations = 1;
    let (_dir, store, mut chain) = setup(&policy);
    let mut strict = new_intent(crate::Asset::UsdtTrc20, "10");
    strict.confirmations = Some(5);
    let intent = created(store.create_intent(&policy, strict, t(1)));
    chain.height = 101;
    let ev = store
        .apply_scan(
            &policy,
            &chain.update(vec![obs("w", "T1", "10.5", Some(101))], None, None),
            t(2),
        )
        .unwrap();
    assert_eq!(kinds(&ev), [EventType::TransferUnmatched, EventType::TransferConfirmed]);
    let key = trc20_key("w");
    let done = store
        .assign_transfer(&key, &intent.id, &by_hand("wrong amount"), t(3))
        .unwrap()
        .unwrap();
    assert_eq!(
        kinds(&done.events),
        [EventType::TransferAssigned, EventType::IntentDetected]
    );
    chain.height = 104;
    let ev = store
        .apply_scan(&policy, &chain.update(vec![], None, None), t(4))
        .unwrap();
    assert!(ev.is_empty(), "4 of 5: {ev:?}");
    chain.height = 105;
    let ev = store
        .apply_scan(&policy, &chain.update(vec![], None, None), t(5))
        .unwrap();
    assert_eq!(kinds(&ev), [EventType::IntentConfirmed]);
}

#[test]
fn what_cannot_be_assigned_is_refused_and_changes_nothing() {
    let (policy, _dir, store, mut chain) = trc20_setup();
    let paid = created(store.create_intent(&policy, new_intent(crate::Asset::UsdtTrc20, "10"), t(1)));
    let open = created(store.create_intent(&policy, new_intent(crate::Asset::UsdtTrc20, "20"), t(1)));
    chain.height = 101;
    store
        .apply_scan(
            &policy,
            &chain.update(
                vec![obs("m", "T1", "10", Some(101)), obs("dust", "T1", "0.0001", Some(101))],
                None,
                None,
            ),
            t(2),
        )
        .unwrap();
    let key = trc20_key;
    let before = store.last_seq().unwrap();
    let refuse = |k: TransferKey, id: &str| store.assign_transfer(&k, id, &by_hand("x"), t(3)).unwrap().unwrap_err();
    assert!(matches!(refuse(key("m"), &open.id), Refusal::TransferMatched(..)));
    assert!(matches!(refuse(key("dust"), &open.id), Refusal::TransferIsDust(..)));
    assert!(matches!(refuse(key("nope"), &open.id), Refusal::TransferNotFound(..)));
    assert!(matches!(refuse(key("m"), "pi_nope"), Refusal::IntentNotFound(..)));
    assert_eq!(store.last_seq().unwrap(), before, "refusals emit nothing");
    assert_eq!(
        store.audit_records(None, 10).unwrap().0.len(),
        0,
        "nor are they recorded"
    );
    let _ = paid;
}

#[test]
fn a_resolution_is_final_recorded_and_announced() {
    let policy = AssetPolicy::defaults(crate::Asset::Ltc, vec!["A1".into(), "A2".into()]);
    let (_dir, store, mut chain) = setup(&policy);
    let intent = created(store.create_intent(&policy, new_intent(crate::Asset::Ltc, "1"), t(1)));
    let done = store
        .resolve_intent(
            &intent.id,
            IntentStatus::Confirmed,
            &by_hand("paid by bank transfer"),
            t(2),
        )
        .unwrap()
        .unwrap();
    assert_eq!(kinds(&done.events), [EventType::IntentResolved]);
    let resolution = done.intent.resolution.clone().unwrap();
    assert_eq!(
        (done.intent.status, resolution.by.as_str(), resolution.reason.as_str()),
        (IntentStatus::Confirmed, "ops", "paid by bank transfer")
    );
    assert_eq!(done.audit.before["intent"]["status"], "awaiting");
    assert_eq!(done.audit.after["intent"]["status"], "confirmed");
    assert!(matches!(
        store
            .resolve_intent(&intent.id, IntentStatus::Expired, &by_hand("no"), t(3))
            .unwrap(),
        Err(Refusal::AlreadyResolved(..))
    ));
    // Not expired by the chain later, and the counts moved.
    let ev = store
        .apply_scan(&policy, &chain.update(vec![], Some(vec![]), Some(t(7200))), t(7200))
        .unwrap();
    assert!(ev.is_empty(), "{ev:?}");
    let counts = store.intent_counts().unwrap();
    assert!(counts.contains(&(crate::Asset::Ltc, IntentStatus::Confirmed, 1)));
    assert!(counts.contains(&(crate::Asset::Ltc, IntentStatus::Awaiting, 0)));
    // An intent the chain expired can be settled as paid; the same status is no change.
    let other = created(store.create_intent(&policy, new_intent(crate::Asset::Ltc, "2"), t(7200)));
    let ev = store
        .apply_scan(&policy, &chain.update(vec![], Some(vec![]), Some(t(20_000))), t(20_000))
        .unwrap();
    assert_eq!(kinds(&ev), [EventType::IntentExpired]);
    assert!(matches!(
        store
            .resolve_intent(&other.id, IntentStatus::Expired, &by_hand("x"), t(20_001))
            .unwrap(),
        Err(Refusal::NoChange(..))
    ));
    assert!(matches!(
        store
            .resolve_intent(&other.id, IntentStatus::Awaiting, &by_hand("x"), t(20_001))
            .unwrap(),
        Err(Refusal::BadResolution(..))
    ));
    store
        .resolve_intent(&other.id, IntentStatus::Confirmed, &by_hand("paid in cash"), t(20_002))
        .unwrap()
        .unwrap();
    let (records, next) = store.audit_records(None, 1).unwrap();
    assert_eq!((records[0].reason.as_str(), records[0].seq), ("paid in cash", 2));
    let (older, end) = store.audit_records(next, 10).unwrap();
    assert_eq!((older[0].reason.as_str(), end), ("paid by bank transfer", None));
}

#[test]
fn an_account_from_the_pool_gets_an_address_no_intent_ever_had() {
    let policy = AssetPolicy::defaults(crate::Asset::Ltc, vec!["P1".into(), "P2".into()]);
    let (_dir, store, _chain) = setup(&policy);
    let intent = created(store.create_intent(&policy, new_intent(crate::Asset::Ltc, "1"), t(1)));
    assert_eq!(intent.address, "P1");
    store.cancel_intent(&intent.id, t(2)).unwrap();
    // Long after the late window P1 is free for intents, never for an account.
    let later = t(3) + Duration::days(3);
    let account = opened(store.create_account(&policy, new_account(crate::Asset::Ltc, "c"), later));
    assert_eq!(account.address, "P2");
    assert!(matches!(
        store.create_account(&policy, new_account(crate::Asset::Ltc, "d"), later),
        Err(CreateError::NoFreeAddress(_))
    ));
    let next = created(store.create_intent(&policy, new_intent(crate::Asset::Ltc, "1"), later));
    assert_eq!(next.address, "P1", "left in the queue for intents");
}

#[test]
fn the_shared_address_of_tagged_accounts_is_never_an_intents_own() {
    let mut policy = AssetPolicy::defaults(crate::Asset::Xrp, vec!["rShared".into(), "rOther".into()]);
    policy.match_mode = MatchMode::Tag;
    let (_dir, store, _chain) = setup(&policy);
    opened(store.create_account(&policy, new_account(crate::Asset::Xrp, "c1"), t(1)));
    // The config switches to address mode: rShared would take every tagged deposit.
    policy.match_mode = MatchMode::Address;
    let mut explicit = new_intent(crate::Asset::Xrp, "5");
    explicit.address = Some("rShared".into());
    assert!(matches!(
        store.create_intent(&policy, explicit, t(2)),
        Err(CreateError::AddressInUse(_))
    ));
    let pooled = created(store.create_intent(&policy, new_intent(crate::Asset::Xrp, "5"), t(2)));
    assert_eq!(pooled.address, "rOther");
}

#[test]
fn late_money_on_an_intent_settled_by_hand_stays_there() {
    let (policy, _dir, store, mut chain) = trc20_setup();
    let first = created(store.create_intent(&policy, new_intent(crate::Asset::UsdtTrc20, "10"), t(1)));
    store.cancel_intent(&first.id, t(2)).unwrap();
    chain.height = 101;
    let ev = store
        .apply_scan(
            &policy,
            &chain.update(vec![obs("late", "T1", "10", Some(101))], None, None),
            t(3),
        )
        .unwrap();
    assert_eq!(kinds(&ev), [EventType::IntentPaidLate, EventType::TransferConfirmed]);
    let key = trc20_key("late");
    // Before any resolution the late money can move; both sides are recorded.
    let second = created(store.create_intent(&policy, new_intent(crate::Asset::UsdtTrc20, "10"), t(4)));
    let third = created(store.create_intent(&policy, new_intent(crate::Asset::UsdtTrc20, "10"), t(4)));
    store
        .resolve_intent(
            &first.id,
            IntentStatus::Confirmed,
            &by_hand("the late payment settles it"),
            t(5),
        )
        .unwrap()
        .unwrap();
    assert!(matches!(
        store.assign_transfer(&key, &second.id, &by_hand("x"), t(6)).unwrap(),
        Err(Refusal::OnResolvedIntent(..))
    ));
    let _ = third;
}

#[test]
fn late_money_moved_to_an_open_intent_leaves_the_old_one_on_the_record() {
    let (policy, _dir, store, mut chain) = trc20_setup();
    let first = created(store.create_intent(&policy, new_intent(crate::Asset::UsdtTrc20, "10"), t(1)));
    store.cancel_intent(&first.id, t(2)).unwrap();
    chain.height = 101;
    store
        .apply_scan(
            &policy,
            &chain.update(vec![obs("late", "T1", "10", Some(101))], None, None),
            t(3),
        )
        .unwrap();
    let second = created(store.create_intent(&policy, new_intent(crate::Asset::UsdtTrc20, "10"), t(4)));
    let key = trc20_key("late");
    let done = store
        .assign_transfer(&key, &second.id, &by_hand("the customer's reorder"), t(5))
        .unwrap()
        .unwrap();
    // The old intent still holds 10.000000 for its late window: the new one
    // asks 10.010000, so the 10 it is given leaves it underpaid.
    assert_eq!(
        kinds(&done.events),
        [EventType::TransferAssigned, EventType::IntentDetected]
    );
    assert_eq!(done.audit.before["previous_intent"]["received"], "10.000000");
    assert_eq!(done.audit.after["previous_intent"]["received"], "0.000000");
    assert_eq!(store.intent(&first.id).unwrap().unwrap().payments.len(), 0);
    assert_eq!(
        (done.intent.status, done.intent.flags.clone()),
        (IntentStatus::Detected, vec![Flag::Underpaid])
    );
}

#[test]
fn an_account_never_takes_an_address_an_amount_mode_intent_was_given() {
    let mut policy = AssetPolicy::defaults(crate::Asset::UsdtTrc20, vec!["T1".into(), "T2".into()]);
    assert_eq!(policy.match_mode, MatchMode::Amount);
    let (_dir, store, _chain) = setup(&policy);
    let intent = created(store.create_intent(&policy, new_intent(crate::Asset::UsdtTrc20, "10"), t(1)));
    assert_eq!(intent.address, "T1");
    // The config switches to address mode: the open intent still holds T1 by amount.
    policy.match_mode = MatchMode::Address;
    let account = opened(store.create_account(&policy, new_account(crate::Asset::UsdtTrc20, "c"), t(2)));
    assert_eq!(account.address, "T2");
}

#[test]
fn the_first_account_raises_the_store_format_so_an_older_build_refuses_it() {
    let policy = AssetPolicy::defaults(crate::Asset::Ltc, vec!["P1".into()]);
    let (_dir, store, _chain) = setup(&policy);
    let format = |store: &Store| {
        let r = store.read().unwrap();
        let meta = r.open_table(tables::META).unwrap();
        meta.get("schema_version").unwrap().unwrap().value()
    };
    assert_eq!(
        format(&store),
        tables::SCHEMA_BASE,
        "an older build still opens a store without accounts"
    );
    opened(store.create_account(&policy, new_account(crate::Asset::Ltc, "c"), t(1)));
    assert_eq!(format(&store), tables::SCHEMA_ACCOUNTS);
}

#[test]
fn an_assigned_transfer_back_after_its_intent_ended_is_listed_once_as_late() {
    let (policy, _dir, store, mut chain) = trc20_setup();
    let intent = created(store.create_intent(&policy, new_intent(crate::Asset::UsdtTrc20, "10"), t(1)));
    chain.height = 101;
    store
        .apply_scan(
            &policy,
            &chain.update(vec![obs("w", "T1", "9", Some(101))], None, None),
            t(2),
        )
        .unwrap();
    let key = trc20_key("w");
    store
        .assign_transfer(&key, &intent.id, &by_hand("fee"), t(3))
        .unwrap()
        .unwrap();
    // Reorged out, the underpaid intent expires, then the transfer is mined again.
    let mut reorg = chain.update(vec![], None, None);
    reorg.rollback_to = Some(100);
    let ev = store.apply_scan(&policy, &reorg, t(4)).unwrap();
    assert_eq!(kinds(&ev), [EventType::IntentReverted]);
    let ev = store
        .apply_scan(&policy, &chain.update(vec![], None, Some(t(7200))), t(7200))
        .unwrap();
    assert_eq!(kinds(&ev), [EventType::IntentExpired]);
    chain.height = 102;
    let ev = store
        .apply_scan(
            &policy,
            &chain.update(vec![obs("w", "T1", "9", Some(102))], None, None),
            t(7201),
        )
        .unwrap();
    assert!(kinds(&ev).contains(&EventType::IntentPaidLate), "{ev:?}");
    let (listed, _) = store
        .list_transfers(&TransferFilter {
            unmatched: true,
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(listed[0].late);
}
