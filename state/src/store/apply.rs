//! Applying a chain `ScanUpdate`: rollback, new transfers, mempool
//! disappearances, confirmations, expiry and the cursor, in one write.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};

use super::tables::*;
use super::tx::Tx;
use super::{Store, StoreError};
use crate::amount::at_asset_scale;
use crate::machine::{self, Arrival, ChainView, transfer_confirmed};
use crate::matcher::candidate_keys;
use crate::model::*;
use crate::scan::{Observation, ScanUpdate};
use crate::{AssetPolicy, Event};

/// Intents whose facts changed in this update, with the transfer that last
/// changed them (the `transfer` of the event a transition emits).
type Affected = BTreeMap<String, Option<Transfer>>;

/// What one applied scan step produced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Applied {
    pub events: Vec<Event>,
    pub matched_transfers: u64,
    pub unmatched_transfers: u64,
}

impl Store {
    /// Applies one scan step atomically and returns the events it emitted.
    /// Refused with `CursorMoved` if the stored cursor is not `update.from`.
    pub fn apply_scan(
        &self,
        policy: &AssetPolicy,
        update: &ScanUpdate,
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>, StoreError> {
        self.apply_scan_counted(policy, update, now).map(|a| a.events)
    }

    /// `apply_scan`, also counting the new transfers it recorded.
    pub fn apply_scan_counted(
        &self,
        policy: &AssetPolicy,
        update: &ScanUpdate,
        now: DateTime<Utc>,
    ) -> Result<Applied, StoreError> {
        self.write(|tx| {
            apply_in(tx, policy, update, now)?;
            Ok(Applied {
                events: std::mem::take(&mut tx.events),
                matched_transfers: tx.new_transfers.0,
                unmatched_transfers: tx.new_transfers.1,
            })
        })
    }

    /// Registers configured addresses as watched (idempotent).
    pub fn watch_addresses(&self, asset: crate::Asset, addresses: &[String]) -> Result<(), StoreError> {
        self.write(|tx| {
            for a in addresses {
                tx.mark(WATCHED, &format!("{}/{a}", asset.code()))?;
            }
            Ok(())
        })
    }
}

fn apply_in(tx: &mut Tx<'_>, policy: &AssetPolicy, update: &ScanUpdate, now: DateTime<Utc>) -> Result<(), StoreError> {
    let asset = update.asset;
    let code = asset.code();
    let stored = tx.chain_state(asset)?;
    if stored.as_ref().map(|s| &s.cursor) != update.from.as_ref() {
        return Err(StoreError::CursorMoved {
            asset,
            expected: update.from.as_ref().map(|c| c.height),
            found: stored.map(|s| s.cursor.height),
        });
    }
    // The cursor moves first: views rendered for events below count
    // confirmations against the height this update reaches.
    tx.put_json(
        CHAINS,
        code,
        &ChainState {
            cursor: update.cursor.clone(),
            tip: update.tip.clone(),
            updated_at: now,
        },
    )?;

    let mut affected = Affected::new();
    let mut orphaned: HashSet<String> = HashSet::new();

    if let Some(fork) = update.rollback_to {
        roll_back(tx, policy, fork, &mut orphaned, &mut affected)?;
    }
    for obs in &update.observations {
        observe(tx, policy, obs, now, &mut orphaned, &mut affected)?;
    }
    for block in &update.blocks {
        tx.put_str(BLOCKS, &height_key(code, block.height), &block.hash)?;
    }
    prune_blocks(tx, policy, update.cursor.height)?;

    if let Some(mempool) = &update.mempool {
        let mut in_mempool = HashSet::new();
        for obs in mempool {
            in_mempool.insert(observation_key(policy, obs).encode());
            observe(tx, policy, obs, now, &mut orphaned, &mut affected)?;
        }
        // Pending without a block and not in the mempool: replaced,
        // double-spent or evicted (or orphaned by a reorg and not re-mined).
        for key in unsettled_keys(tx, code)? {
            if let Some(t) = tx.transfer(&key)?
                && t.block_height.is_none()
                && !in_mempool.contains(&key)
            {
                revert(tx, t, &mut affected)?;
            }
        }
    } else if !policy.mempool {
        // No mempool to come back to: what a rollback removed and the new
        // branch did not contain is gone.
        for key in orphaned {
            if let Some(t) = tx.transfer(&key)?
                && t.block_height.is_none()
            {
                revert(tx, t, &mut affected)?;
            }
        }
    }

    settle_transfers(tx, policy, update, &mut affected)?;

    if let Some(started) = update.round_started_at {
        let due = tx.keys_in(
            OPEN_BY_EXPIRY,
            &format!("{code}/"),
            &expiry_key(code, started.timestamp_millis() + 1, ""),
        )?;
        for key in due {
            if let Some(id) = key.rsplit('/').next() {
                affected.entry(id.to_string()).or_insert(None);
            }
        }
    }

    for (id, cause) in affected {
        transition(tx, &id, cause.as_ref(), now, update.round_started_at)?;
    }
    Ok(())
}

fn observation_key(policy: &AssetPolicy, obs: &Observation) -> TransferKey {
    TransferKey {
        asset: policy.asset,
        txid: obs.txid.clone(),
        index: obs.index,
    }
}

fn unsettled_keys(tx: &Tx<'_>, code: &str) -> Result<Vec<String>, StoreError> {
    tx.keys_in(UNSETTLED, &format!("{code}/"), &format!("{code}0"))
}

/// Records what one observation says: a new transfer (matched, late or
/// unmatched), a transfer now in a block, or one seen again after a revert.
fn observe(
    tx: &mut Tx<'_>,
    policy: &AssetPolicy,
    obs: &Observation,
    now: DateTime<Utc>,
    orphaned: &mut HashSet<String>,
    affected: &mut Affected,
) -> Result<(), StoreError> {
    if obs.amount < policy.min_amount || obs.amount <= rust_decimal::Decimal::ZERO {
        return Ok(()); // dust is never a payment
    }
    let key = observation_key(policy, obs);
    let encoded = key.encode();
    if let Some(mut t) = tx.transfer(&encoded)? {
        let mut changed = false;
        if t.status == TransferStatus::Reverted {
            // Seen again (re-mined after a reorg, back in the mempool): it counts again.
            t.status = TransferStatus::Pending;
            tx.mark(UNSETTLED, &encoded)?;
            changed = true;
        }
        if let Some(block) = &obs.block
            && t.block_height != Some(block.height)
        {
            set_block(tx, &mut t, Some(block))?;
            changed = true;
        }
        if obs.block.is_some() {
            orphaned.remove(&encoded);
        }
        if changed {
            tx.put_transfer(&t)?;
            note(affected, &t);
        }
        return Ok(());
    }

    let mut transfer = Transfer {
        key,
        address: obs.address.clone(),
        tag: obs.tag,
        amount: at_asset_scale(policy.asset, obs.amount),
        block_height: None,
        block_hash: None,
        maturity: obs.maturity,
        status: TransferStatus::Pending,
        intent_id: None,
        late: false,
        seen_at: now,
    };
    set_block(tx, &mut transfer, obs.block.as_ref())?;
    let holder = find_holder(tx, policy, obs)?;
    let arrival = holder
        .as_ref()
        .map(|i| machine::arrival(i, now))
        .unwrap_or(Arrival::TooLate);
    let list_no = tx.next_counter("next_listing")?;
    {
        let mut all = tx.txn().open_table(TRANSFER_LIST).map_err(super::db_err)?;
        all.insert(list_no, encoded.as_str()).map_err(super::db_err)?;
    }
    tx.mark(UNSETTLED, &encoded)?;
    if holder.is_some() && arrival != Arrival::TooLate {
        tx.new_transfers.0 += 1;
    } else {
        tx.new_transfers.1 += 1;
    }
    match (holder, arrival) {
        (Some(mut intent), Arrival::OnTime) => {
            transfer.intent_id = Some(intent.id.clone());
            intent.payments.push(transfer.key.clone());
            tx.put_transfer(&transfer)?;
            tx.put_intent(&intent)?;
            note(affected, &transfer);
        }
        (Some(mut intent), Arrival::Late) => {
            transfer.intent_id = Some(intent.id.clone());
            transfer.late = true;
            intent.payments.push(transfer.key.clone());
            tx.put_transfer(&transfer)?;
            tx.put_intent(&intent)?;
            list_unmatched(tx, list_no, &encoded)?;
            tx.emit(EventType::IntentPaidLate, Some(&intent), Some(&transfer), now)?;
        }
        _ => {
            tx.put_transfer(&transfer)?;
            list_unmatched(tx, list_no, &encoded)?;
            tx.emit(EventType::TransferUnmatched, None, Some(&transfer), now)?;
        }
    }
    Ok(())
}

fn list_unmatched(tx: &mut Tx<'_>, list_no: u64, key: &str) -> Result<(), StoreError> {
    let mut t = tx.txn().open_table(UNMATCHED_LIST).map_err(super::db_err)?;
    t.insert(list_no, key).map_err(super::db_err)?;
    Ok(())
}

/// The intent holding a match key this transfer could match, if any.
fn find_holder(tx: &Tx<'_>, policy: &AssetPolicy, obs: &Observation) -> Result<Option<Intent>, StoreError> {
    for key in candidate_keys(
        policy.asset,
        &obs.address,
        obs.tag,
        at_asset_scale(policy.asset, obs.amount),
    ) {
        if let Some(id) = tx.get_str(MATCH_KEYS, &key)? {
            return tx.intent(&id);
        }
    }
    Ok(None)
}

/// Moves a transfer to a block (or back to the mempool), keeping the
/// per-block index that rollbacks use.
fn set_block(tx: &mut Tx<'_>, t: &mut Transfer, block: Option<&BlockRef>) -> Result<(), StoreError> {
    let code = t.key.asset.code();
    if let Some(old) = t.block_height {
        tx.unmark(
            BLOCK_TRANSFERS,
            &format!("{}/{}", height_key(code, old), t.key.encode()),
        )?;
    }
    t.block_height = block.map(|b| b.height);
    t.block_hash = block.map(|b| b.hash.clone());
    if let Some(b) = block {
        tx.mark(
            BLOCK_TRANSFERS,
            &format!("{}/{}", height_key(code, b.height), t.key.encode()),
        )?;
    }
    Ok(())
}

/// Blocks above `fork` left the best chain: their transfers go back to
/// "no block" and are reverted unless the new branch or the mempool has them.
fn roll_back(
    tx: &mut Tx<'_>,
    policy: &AssetPolicy,
    fork: u64,
    orphaned: &mut HashSet<String>,
    affected: &mut Affected,
) -> Result<(), StoreError> {
    let code = policy.asset.code();
    let from = height_key(code, fork + 1);
    let to = format!("{code}0");
    for entry in tx.keys_in(BLOCK_TRANSFERS, &from, &to)? {
        let transfer_key = entry.splitn(3, '/').nth(2).unwrap_or_default().to_string();
        if let Some(mut t) = tx.transfer(&transfer_key)? {
            set_block(tx, &mut t, None)?;
            if t.status == TransferStatus::Confirmed {
                t.status = TransferStatus::Pending;
                tx.mark(UNSETTLED, &transfer_key)?;
            }
            tx.put_transfer(&t)?;
            orphaned.insert(transfer_key);
            note(affected, &t);
        }
    }
    let stale: Vec<String> = {
        let blocks = tx.txn().open_table(BLOCKS).map_err(super::db_err)?;
        let mut keys = Vec::new();
        for entry in redb::ReadableTable::range(&blocks, from.as_str()..to.as_str()).map_err(super::db_err)? {
            let (k, _) = entry.map_err(super::db_err)?;
            keys.push(k.value().to_string());
        }
        keys
    };
    for k in stale {
        tx.remove_str(BLOCKS, &k)?;
    }
    Ok(())
}

fn prune_blocks(tx: &mut Tx<'_>, policy: &AssetPolicy, cursor: u64) -> Result<(), StoreError> {
    let code = policy.asset.code();
    let keep_from = cursor.saturating_sub(BLOCKS_KEPT);
    if keep_from == 0 {
        return Ok(());
    }
    let mut blocks = tx.txn().open_table(BLOCKS).map_err(super::db_err)?;
    blocks
        .retain_in(
            height_key(code, 0).as_str()..height_key(code, keep_from).as_str(),
            |_, _| false,
        )
        .map_err(super::db_err)?;
    Ok(())
}

fn revert(tx: &mut Tx<'_>, mut t: Transfer, affected: &mut Affected) -> Result<(), StoreError> {
    t.status = TransferStatus::Reverted;
    tx.unmark(UNSETTLED, &t.key.encode())?;
    tx.put_transfer(&t)?;
    note(affected, &t);
    Ok(())
}

/// Marks pending transfers confirmed once deep (and final) enough.
fn settle_transfers(
    tx: &mut Tx<'_>,
    policy: &AssetPolicy,
    update: &ScanUpdate,
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
        let required = match &t.intent_id {
            Some(id) => tx
                .intent(id)?
                .map(|i| i.confirmations_required)
                .unwrap_or(policy.confirmations),
            None => policy.confirmations,
        };
        if transfer_confirmed(&t, required, &chain) {
            t.status = TransferStatus::Confirmed;
            tx.unmark(UNSETTLED, &key)?;
            tx.put_transfer(&t)?;
            note(affected, &t);
        }
    }
    Ok(())
}

/// Remembers that a transfer changed its (on-time) intent's facts.
fn note(affected: &mut Affected, t: &Transfer) {
    if let (Some(id), false) = (&t.intent_id, t.late) {
        affected.insert(id.clone(), Some(t.clone()));
    }
}

/// Runs the lifecycle on one intent and emits an event per transition, each
/// with the snapshot right after it.
fn transition(
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
    if before.is_open() && !intent.status.is_open() {
        tx.unmark(
            OPEN_BY_EXPIRY,
            &expiry_key(intent.asset.code(), intent.expires_at.timestamp_millis(), &intent.id),
        )?;
    }
    tx.count_status(intent.asset, Some(before), intent.status)?;
    tx.put_intent(&intent)?;
    for (kind, snapshot) in kinds {
        let transfer = if kind == EventType::IntentExpired { None } else { cause };
        tx.emit(kind, Some(&snapshot), transfer, now)?;
    }
    Ok(())
}
