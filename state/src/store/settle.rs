//! The settling half of applying a scan: transfers confirmed once deep
//! enough, reverted ones, their own `transfer.*` announcements when they
//! count toward no open intent, and each affected intent's transitions.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::StoreError;
use super::apply::{deposit_account, unsettled_keys};
use super::tables::*;
use super::tx::Tx;
use crate::AssetPolicy;
use crate::machine::{self, ChainView, transfer_confirmed};
use crate::model::*;
use crate::scan::ScanUpdate;

/// Intents whose facts changed in this update, with the transfer that last
/// changed them (the `transfer` of the event a transition emits).
pub(super) type Affected = BTreeMap<String, Option<Transfer>>;

pub(super) fn revert(
    tx: &mut Tx<'_>,
    mut t: Transfer,
    now: DateTime<Utc>,
    affected: &mut Affected,
) -> Result<(), StoreError> {
    t.status = TransferStatus::Reverted;
    tx.unmark(UNSETTLED, &t.key.encode())?;
    if let Some(account) = deposit_account(tx, &t)? {
        t.confirmed_announced = false;
        t.reverted_announced = true;
        tx.put_transfer(&t)?;
        return tx.emit_deposit(EventType::DepositReverted, &account, Some(&t), now);
    }
    match outside_open_intent(tx, &t)? {
        Some(intent) => announce(tx, t, EventType::TransferReverted, intent.as_ref(), now),
        None => {
            tx.put_transfer(&t)?;
            note(affected, &t);
            Ok(())
        }
    }
}

/// Stores a transfer and sends its own `transfer.confirmed` or
/// `transfer.reverted`, remembering which was said last.
pub(super) fn announce(
    tx: &mut Tx<'_>,
    mut t: Transfer,
    kind: EventType,
    intent: Option<&Intent>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    t.confirmed_announced = kind == EventType::TransferConfirmed;
    t.reverted_announced = kind == EventType::TransferReverted;
    tx.put_transfer(&t)?;
    tx.emit(kind, intent, Some(&t), now)
}

/// For a transfer that counts toward no open intent (unmatched, late, or on
/// an intent that has ended), `Some` with its intent if any: such transfers
/// get `transfer.confirmed` / `transfer.reverted` of their own. `None` when
/// it counts toward an open intent, whose lifecycle reports it.
pub(super) fn outside_open_intent(tx: &Tx<'_>, t: &Transfer) -> Result<Option<Option<Intent>>, StoreError> {
    let Some(id) = &t.intent_id else {
        return Ok(Some(None));
    };
    let intent = tx.intent(id)?;
    match intent {
        Some(i) if i.status.is_open() && !t.late => Ok(None),
        other => Ok(Some(other)),
    }
}

/// Marks pending transfers confirmed once deep (and final) enough.
pub(super) fn settle_transfers(
    tx: &mut Tx<'_>,
    policy: &AssetPolicy,
    update: &ScanUpdate,
    now: DateTime<Utc>,
    affected: &mut Affected,
) -> Result<(), StoreError> {
    let chain = ChainView {
        scanned_height: update.cursor.height,
        finalized: update.tip.finalized,
    };
    for key in unsettled_keys(tx, policy.asset.code())? {
        let Some(mut t) = tx.transfer(&key)? else {
            continue;
        };
        if t.status == TransferStatus::Reverted {
            tx.unmark(UNSETTLED, &key)?; // left over by an older version
            continue;
        }
        let account = deposit_account(tx, &t)?;
        let required = match (&t.intent_id, &account) {
            (Some(id), _) => tx
                .intent(id)?
                .map(|i| i.confirmations_required)
                .unwrap_or(policy.confirmations),
            (None, Some(account)) => account.confirmations_required,
            (None, None) => policy.confirmations,
        };
        if transfer_confirmed(&t, required, &chain) {
            t.status = TransferStatus::Confirmed;
            tx.unmark(UNSETTLED, &key)?;
            if let Some(account) = account {
                // Said once; again only after a `deposit.reverted`.
                if t.confirmed_announced {
                    tx.put_transfer(&t)?;
                } else {
                    t.confirmed_announced = true;
                    t.reverted_announced = false;
                    tx.put_transfer(&t)?;
                    tx.emit_deposit(EventType::DepositConfirmed, &account, Some(&t), now)?;
                }
                continue;
            }
            match outside_open_intent(tx, &t)? {
                // Said already, or its confirmed intent said it (unless a
                // revert was announced since).
                Some(intent)
                    if t.confirmed_announced
                        || (!t.reverted_announced
                            && !t.late
                            && intent.as_ref().is_some_and(|i| i.status == IntentStatus::Confirmed)) =>
                {
                    tx.put_transfer(&t)?
                }
                Some(intent) => announce(tx, t, EventType::TransferConfirmed, intent.as_ref(), now)?,
                None => {
                    tx.put_transfer(&t)?;
                    note(affected, &t);
                }
            }
        }
    }
    Ok(())
}

/// Remembers that a transfer changed its (on-time) intent's facts.
pub(super) fn note(affected: &mut Affected, t: &Transfer) {
    if let (Some(id), false) = (&t.intent_id, t.late) {
        affected.insert(id.clone(), Some(t.clone()));
    }
}

/// Runs the lifecycle on one intent and emits an event per transition, each
/// with the snapshot right after it.
pub(super) fn transition(
    tx: &mut Tx<'_>,
    id: &str,
    cause: Option<&Transfer>,
    now: DateTime<Utc>,
    expiry_scan_started: Option<DateTime<Utc>>,
) -> Result<(), StoreError> {
    let Some(mut intent) = tx.intent(id)? else {
        return Ok(());
    };
    let payments = tx.payments_of(&intent)?;
    let before = intent.status;
    let mut kinds = Vec::new();
    while let Some(kind) = machine::step(&mut intent, &payments, now, expiry_scan_started) {
        kinds.push((kind, intent.clone()));
    }
    if kinds.is_empty() {
        return Ok(());
    }
    tx.put_transitioned(&intent, before)?;
    for (kind, snapshot) in kinds {
        let transfer = if kind == EventType::IntentExpired { None } else { cause };
        tx.emit(kind, Some(&snapshot), transfer, now)?;
    }
    Ok(())
}
