//! Applying a chain `ScanUpdate`: rollback, new transfers, mempool
//! disappearances, confirmations, expiry and the cursor, in one write.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use super::settle::{Affected, note, revert, settle_transfers, transition};
use super::tables::*;
use super::tx::Tx;
use super::{Fence, Store, StoreError};
use crate::amount::at_asset_scale;
use crate::machine::{self, Arrival};
use crate::matcher::candidate_keys;
use crate::model::*;
use crate::scan::{Observation, ScanUpdate};
use crate::{AssetPolicy, Event};

/// What one applied scan step produced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Applied {
    pub events: Vec<Event>,
    pub matched_transfers: u64,
    pub unmatched_transfers: u64,
    /// New transfers below `min_amount`: recorded, never matched.
    pub dust_transfers: u64,
    /// New deposits to accounts.
    pub deposits: u64,
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
        self.apply_scan_fenced(policy, update, now, None)
    }

    /// `apply_scan_counted` by the holder of `fence`, the asset's scan
    /// lease: refused with `Fenced` once another instance took the lease,
    /// whatever the cursor says.
    pub fn apply_scan_fenced(
        &self,
        policy: &AssetPolicy,
        update: &ScanUpdate,
        now: DateTime<Utc>,
        fence: Option<&Fence>,
    ) -> Result<Applied, StoreError> {
        self.write_fenced(fence, |tx| {
            apply_in(tx, policy, update, now)?;
            Ok(Applied {
                events: std::mem::take(&mut tx.events),
                matched_transfers: tx.new_transfers.0,
                unmatched_transfers: tx.new_transfers.1,
                dust_transfers: tx.new_dust,
                deposits: tx.new_deposits,
            })
        })
    }

    /// Transaction ids of `asset`'s pending transfers that no block holds:
    /// what a source must account for in its next mempool read.
    pub fn pending_mempool_txids(&self, asset: crate::Asset) -> Result<Vec<String>, StoreError> {
        let r = self.read()?;
        let unsettled = r.open_table(UNSETTLED)?;
        let code = asset.code();
        let (from, to) = (format!("{code}/"), format!("{code}0"));
        let mut out = Vec::new();
        for entry in unsettled.range(from.as_str()..to.as_str())? {
            let (key, _) = entry?;
            let key = key.value().to_string();
            if let Some(t) = get_json::<Transfer>(&r, TRANSFERS, &key)?
                && t.block_height.is_none()
                && !out.contains(&t.key.txid)
            {
                out.push(t.key.txid);
            }
        }
        Ok(out)
    }

    /// Registers configured addresses as watched (idempotent).
    pub fn watch_addresses(&self, asset: crate::Asset, addresses: &[String]) -> Result<(), StoreError> {
        self.write(|tx| {
            for a in addresses {
                tx.watch_address(asset, a)?;
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
    if let Some(expected) = update.watch_generation {
        let found = tx.meta(&watch_generation_key(asset))?;
        if found != expected {
            return Err(StoreError::WatchChanged { asset, expected, found });
        }
    }
    // The cursor moves first: views rendered for events below count
    // confirmations against the height this update reaches.
    tx.put_json(
        CHAINS,
        code,
        &ChainState {
            cursor: update.cursor.clone(),
            // A backend behind the stored tip does not lower it (the best
            // tip seen, and when it rose, are what head age is judged by).
            tip: match &stored {
                Some(s) if s.tip.height > update.tip.height => s.tip.clone(),
                _ => update.tip.clone(),
            },
            updated_at: now,
            tip_rose_at: match &stored {
                Some(s) if s.tip.height >= update.tip.height => s.tip_rose_at.or(Some(now)),
                _ => Some(now),
            },
            synced_at: update
                .round_started_at
                .or_else(|| stored.as_ref().and_then(|s| s.synced_at)),
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
        // Reverts first, so a replacement reads as "the old one reverted,
        // the new one seen". Only proven disappearances revert, and only
        // for transfers no block holds (one mined meanwhile is in this
        // update's blocks, read after the mempool).
        let gone: HashSet<&str> = mempool.gone.iter().map(String::as_str).collect();
        for key in unsettled_keys(tx, code)? {
            if let Some(t) = tx.transfer(&key)?
                && t.block_height.is_none()
                && gone.contains(t.key.txid.as_str())
            {
                revert(tx, t, now, &mut affected)?;
            }
        }
        for obs in &mempool.transfers {
            observe(tx, policy, obs, now, &mut orphaned, &mut affected)?;
        }
    } else if !policy.mempool {
        // No mempool to come back to: what a rollback removed and the new
        // branch did not contain is gone.
        for key in orphaned {
            if let Some(t) = tx.transfer(&key)?
                && t.block_height.is_none()
            {
                revert(tx, t, now, &mut affected)?;
            }
        }
    }
    // With a mempool, an orphaned transfer not in the new branch stays
    // pending without a block: the next mempool read asks the node for it
    // and reverts it only if the node no longer knows it.

    settle_transfers(tx, policy, update, now, &mut affected)?;

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

pub(super) fn unsettled_keys(tx: &Tx<'_>, code: &str) -> Result<Vec<String>, StoreError> {
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
    if obs.amount <= rust_decimal::Decimal::ZERO {
        return Ok(());
    }
    let key = observation_key(policy, obs);
    let encoded = key.encode();
    if let Some(mut t) = tx.transfer(&encoded)? {
        if t.dust {
            return Ok(());
        }
        let mut changed = false;
        let mut reappeared = false;
        if t.status == TransferStatus::Reverted {
            // Seen again (re-mined after a reorg, back in the mempool).
            t.status = TransferStatus::Pending;
            tx.mark(UNSETTLED, &encoded)?;
            changed = true;
            reappeared = true;
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
        if reappeared {
            reappear(tx, t, now, affected)?;
        } else if changed {
            tx.put_transfer(&t)?;
            note(affected, &t);
        }
        return Ok(());
    }
    let holder = find_holder(tx, policy, obs)?;
    let (holder, account) = match holder {
        Some(Holder::Intent(intent)) => (Some(*intent), None),
        Some(Holder::Account(account)) => (None, Some(account)),
        None => (None, None),
    };
    // Dust, unless it pays an intent made for less than today's `min_amount`
    // (created before the minimum was raised) that still holds its key: its
    // payments, and top-ups of them, are below the minimum by design.
    // (A payment in full, or a top-up of one already made: a poisoning
    // fraction sent to a fresh small intent stays dust.)
    let pays_small_intent = holder.as_ref().is_some_and(|i| {
        i.pay_amount < policy.min_amount
            && machine::arrival(i, now) != Arrival::TooLate
            && (obs.amount >= i.pay_amount || !i.payments.is_empty())
    });
    let dust = obs.amount < policy.min_amount && !pays_small_intent;

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
        dust,
        confirmed_announced: false,
        reverted_announced: false,
        seen_at: now,
        account_id: None,
        assignment: None,
    };
    let list_no = tx.next_counter("next_listing")?;
    {
        let mut all = tx.txn().open_table(TRANSFER_LIST)?;
        all.insert(list_no, encoded.as_str())?;
    }
    if dust {
        // Listed and counted; never matched, followed up, rolled back or
        // announced (dust and address poisoning are noise).
        transfer.block_height = obs.block.as_ref().map(|b| b.height);
        transfer.block_hash = obs.block.as_ref().map(|b| b.hash.clone());
        tx.put_transfer(&transfer)?;
        tx.new_dust += 1;
        return Ok(());
    }
    set_block(tx, &mut transfer, obs.block.as_ref())?;
    if let Some(account) = account {
        // A deposit: every transfer to the account counts, open or closed.
        tx.mark(UNSETTLED, &encoded)?;
        transfer.account_id = Some(account.id.clone());
        tx.put_transfer(&transfer)?;
        tx.put_str(ACCOUNT_DEPOSITS, &deposit_key(&account.id, list_no), &encoded)?;
        tx.add_count(&deposit_count_key(code_of(policy)), 1)?;
        tx.new_deposits += 1;
        return tx.emit_deposit(EventType::DepositDetected, &account, Some(&transfer), now);
    }
    let arrival = holder
        .as_ref()
        .map(|i| machine::arrival(i, now))
        .unwrap_or(Arrival::TooLate);
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

/// A reverted transfer is back. On an open intent it counts again; on an
/// ended one it is late money (`intent.paid_late`); unmatched money that
/// comes back is announced again (`transfer.unmatched`).
fn reappear(tx: &mut Tx<'_>, mut t: Transfer, now: DateTime<Utc>, affected: &mut Affected) -> Result<(), StoreError> {
    if let Some(account) = deposit_account(tx, &t)? {
        tx.put_transfer(&t)?;
        return tx.emit_deposit(EventType::DepositDetected, &account, Some(&t), now);
    }
    let intent = match &t.intent_id {
        Some(id) => tx.intent(id)?,
        None => None,
    };
    match intent {
        Some(intent) if intent.status.is_open() && !t.late => {
            tx.put_transfer(&t)?;
            note(affected, &t);
        }
        // A payment that counted toward a confirmed intent is back: it is
        // that payment again, not late money.
        Some(intent) if intent.status == IntentStatus::Confirmed && !t.late => {
            tx.put_transfer(&t)?;
        }
        Some(intent) => {
            if !t.late {
                t.late = true;
                // One assigned by hand is listed since it was unmatched.
                if t.assignment.is_none() {
                    let list_no = tx.next_counter("next_listing")?;
                    list_unmatched(tx, list_no, &t.key.encode())?;
                }
            }
            tx.put_transfer(&t)?;
            tx.emit(EventType::IntentPaidLate, Some(&intent), Some(&t), now)?;
        }
        None => {
            tx.put_transfer(&t)?;
            tx.emit(EventType::TransferUnmatched, None, Some(&t), now)?;
        }
    }
    Ok(())
}

fn list_unmatched(tx: &mut Tx<'_>, list_no: u64, key: &str) -> Result<(), StoreError> {
    let mut t = tx.txn().open_table(UNMATCHED_LIST)?;
    t.insert(list_no, key)?;
    Ok(())
}

fn code_of(policy: &AssetPolicy) -> &'static str {
    policy.asset.code()
}

/// Who holds a match key: an intent (for its life and late window) or a
/// deposit account (for good).
pub(super) enum Holder {
    Intent(Box<Intent>),
    Account(Account),
}

/// The holder of one match key, if any.
pub(super) fn key_holder(tx: &Tx<'_>, key: &str) -> Result<Option<Holder>, StoreError> {
    let Some(id) = tx.get_str(MATCH_KEYS, key)? else {
        return Ok(None);
    };
    Ok(if is_account_id(&id) {
        tx.account(&id)?.map(Holder::Account)
    } else {
        tx.intent(&id)?.map(|i| Holder::Intent(Box::new(i)))
    })
}

/// The holder of a match key this transfer could match, if any.
fn find_holder(tx: &Tx<'_>, policy: &AssetPolicy, obs: &Observation) -> Result<Option<Holder>, StoreError> {
    for key in candidate_keys(
        policy.asset,
        &obs.address,
        obs.tag,
        at_asset_scale(policy.asset, obs.amount),
    ) {
        if let Some(holder) = key_holder(tx, &key)? {
            return Ok(Some(holder));
        }
    }
    Ok(None)
}

/// The account a transfer is a deposit to, if it is one.
pub(super) fn deposit_account(tx: &Tx<'_>, t: &Transfer) -> Result<Option<Account>, StoreError> {
    match &t.account_id {
        Some(id) => tx.account(id),
        None => Ok(None),
    }
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
        let blocks = tx.txn().open_table(BLOCKS)?;
        let mut keys = Vec::new();
        for entry in blocks.range(from.as_str()..to.as_str())? {
            let (k, _) = entry?;
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
    let mut blocks = tx.txn().open_table(BLOCKS)?;
    blocks.remove_range(height_key(code, 0).as_str()..height_key(code, keep_from).as_str())
}
