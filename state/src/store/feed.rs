//! The event log, the transfers listing, and the webhook outbox.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::tables::*;
use super::{Fence, Store, StoreError};
use crate::Asset;
use crate::model::{Event, Transfer, TransferView};

/// One event waiting for webhook delivery.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub seq: u64,
    pub event_id: String,
    pub event_type: String,
    /// Deliveries with the same key go out in `seq` order (the intent id).
    pub ordering_key: String,
    pub created_at: DateTime<Utc>,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
}

impl OutboxEntry {
    pub fn new(event: &Event, ordering_key: String) -> OutboxEntry {
        OutboxEntry {
            seq: event.seq,
            event_id: event.id.clone(),
            event_type: event.kind.as_str().to_string(),
            ordering_key,
            created_at: event.created_at,
            attempts: 0,
            next_attempt_at: event.created_at,
            last_error: None,
        }
    }
}

/// One webhook delivery attempt, as `GET /v1/events/{id}/deliveries` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    pub seq: u64,
    pub attempt: u32,
    pub at: DateTime<Utc>,
    /// The receiver's HTTP status, when it answered.
    pub http_status: Option<u16>,
    /// Why it failed, when it did (no answer, a non-2xx, ...).
    pub error: Option<String>,
    pub duration_ms: u64,
    /// `delivered` or `failed`.
    pub outcome: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutboxStats {
    pub backlog: u64,
    pub failed: u64,
}

/// Transfers with their listing positions, and the last position read.
pub type TransferPage = (Vec<(u64, TransferView)>, Option<u64>);

/// Filters of `GET /v1/transfers`.
#[derive(Clone, Debug, Default)]
pub struct TransferFilter {
    /// Only unmatched and late transfers.
    pub unmatched: bool,
    pub asset: Option<Asset>,
    /// Only transfers listed before this position (the previous page's `next`).
    pub before: Option<u64>,
    pub limit: usize,
}

/// Deliveries with the same key go out in `seq` order: the intent's id, else
/// the account's id, else the transfer's key, else the event's own id (nothing to order it with).
pub fn ordering_key_of(event: &Event) -> String {
    match (&event.intent, &event.account, &event.transfer) {
        (Some(i), _, _) => i.id.clone(),
        (None, Some(a), _) => a.id.clone(),
        (None, None, Some(t)) => format!("transfer:{}/{}/{:010}", t.asset.code(), t.txid, t.index),
        (None, None, None) => event.id.clone(),
    }
}

fn record_attempt(tx: &mut super::tx::Tx<'_>, attempt: &DeliveryAttempt) -> Result<(), StoreError> {
    let mut t = tx.txn().open_table(DELIVERIES)?;
    t.insert(
        delivery_key(attempt.seq, attempt.attempt).as_str(),
        encode(attempt).as_slice(),
    )?;
    Ok(())
}

impl Store {
    /// Turns webhook outbox entries on or off for events appended from now on.
    pub fn set_webhooks_enabled(&self, enabled: bool) -> Result<(), StoreError> {
        self.write(|tx| tx.set_meta("webhooks_enabled", u64::from(enabled)))
    }

    /// With a shared store: takes `fingerprint` (naming a webhook URL and
    /// secret) as the one every instance delivers with, and turns the
    /// outbox on; the newest configuration started wins (a rolling change
    /// of URL or secret), and a dispatcher whose configuration is no longer
    /// the stored one stops delivering (`webhook_config`). An instance
    /// without webhooks (`None`) changes nothing: it could otherwise turn
    /// delivery off for the instances that have them. Returns the
    /// fingerprint that was stored before.
    pub fn adopt_webhook_config(&self, fingerprint: Option<u64>) -> Result<u64, StoreError> {
        self.write(|tx| {
            let before = tx.meta("webhook_config")?;
            if let Some(fingerprint) = fingerprint {
                tx.set_meta("webhook_config", fingerprint)?;
                tx.set_meta("webhooks_enabled", 1)?;
            }
            Ok(before)
        })
    }

    /// The webhook configuration deliveries are made with (0: none yet).
    pub fn webhook_config(&self) -> Result<u64, StoreError> {
        read_meta(&self.read()?, "webhook_config")
    }

    /// Events with `seq > after`, ascending, at most `limit`.
    pub fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let r = self.read()?;
        let t = r.open_table(EVENTS)?;
        let mut out = Vec::new();
        for entry in t.range(after.saturating_add(1)..)?.take(limit) {
            let (k, v) = entry?;
            out.push(decode("events", &k.value().to_string(), v.value())?);
        }
        Ok(out)
    }

    pub fn event(&self, seq: u64) -> Result<Option<Event>, StoreError> {
        event_in(&self.read()?, seq)
    }

    /// The newest event's seq (0 when none).
    pub fn last_seq(&self) -> Result<u64, StoreError> {
        let r = self.read()?;
        let t = r.open_table(EVENTS)?;
        Ok(t.last()?.map(|(k, _)| k.value()).unwrap_or(0))
    }

    /// Transfers newest first, and the `next` cursor.
    pub fn list_transfers(&self, filter: &TransferFilter) -> Result<(Vec<TransferView>, Option<u64>), StoreError> {
        let r = self.read()?;
        let mut heights = ScannedHeights::new(&r);
        let list = r.open_table(if filter.unmatched {
            UNMATCHED_LIST
        } else {
            TRANSFER_LIST
        })?;
        let transfers = r.open_table(TRANSFERS)?;
        let range = match filter.before {
            Some(b) => list.range(..b)?,
            None => list.range(..)?,
        };
        let limit = filter.limit.max(1);
        let mut page: Vec<TransferView> = Vec::new();
        let mut last_pos = None;
        for entry in range.rev() {
            let (pos, key) = entry?;
            let key = key.value().to_string();
            let Some(bytes) = transfers.get(key.as_str())? else {
                continue;
            };
            let t: Transfer = decode("transfers", &key, bytes.value())?;
            if filter.asset.is_some_and(|a| a != t.key.asset) {
                continue;
            }
            let view = t.view(heights.of(t.key.asset)?);
            // Listed as unmatched or late when seen; assigned to an intent
            // by hand since (and not late again on it).
            if filter.unmatched && !view.is_unmatched_or_late() {
                continue;
            }
            if page.len() == limit {
                return Ok((page, last_pos));
            }
            page.push(view);
            last_pos = Some(pos.value());
        }
        Ok((page, None))
    }

    /// Transfers listed after position `after`, oldest first, at most
    /// `limit` list entries: the accounting export's pages. Returns the
    /// transfers with their positions, and the last position read (`None`
    /// once the list is exhausted).
    pub fn transfers_ascending(&self, after: u64, limit: usize) -> Result<TransferPage, StoreError> {
        let r = self.read()?;
        let mut heights = ScannedHeights::new(&r);
        let list = r.open_table(TRANSFER_LIST)?;
        let transfers = r.open_table(TRANSFERS)?;
        let mut page = Vec::new();
        let mut last = None;
        for entry in list.range(after.saturating_add(1)..)?.take(limit) {
            let (pos, key) = entry?;
            last = Some(pos.value());
            let Some(bytes) = transfers.get(key.value())? else {
                continue;
            };
            let t: Transfer = decode("transfers", key.value(), bytes.value())?;
            page.push((pos.value(), t.view(heights.of(t.key.asset)?)));
        }
        Ok((page, last))
    }

    /// Outbox entries with `seq > after`, in `seq` order (at most `limit`).
    pub fn outbox_after(&self, after: u64, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        let r = self.read()?;
        let t = r.open_table(OUTBOX)?;
        let mut out = Vec::new();
        for entry in t.range(after.saturating_add(1)..)?.take(limit) {
            let (k, v) = entry?;
            out.push(decode("outbox", &k.value().to_string(), v.value())?);
        }
        Ok(out)
    }

    /// The delivery of `seq` succeeded: it leaves the outbox, and the attempt
    /// is recorded.
    pub fn outbox_delivered(
        &self,
        seq: u64,
        attempt: &DeliveryAttempt,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        self.write_fenced(fence, |tx| {
            record_attempt(tx, attempt)?;
            let mut t = tx.txn().open_table(OUTBOX)?;
            t.remove(seq)?;
            Ok(())
        })
    }

    /// The delivery failed; try again at `next_attempt_at`.
    pub fn outbox_retry(
        &self,
        mut entry: OutboxEntry,
        next_attempt_at: DateTime<Utc>,
        attempt: &DeliveryAttempt,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        self.write_fenced(fence, |tx| {
            record_attempt(tx, attempt)?;
            entry.attempts += 1;
            entry.next_attempt_at = next_attempt_at;
            entry.last_error = attempt.error.clone();
            let mut t = tx.txn().open_table(OUTBOX)?;
            t.insert(entry.seq, encode(&entry).as_slice())?;
            Ok(())
        })
    }

    /// Every recorded delivery attempt of event `seq`, oldest first.
    pub fn delivery_attempts(&self, seq: u64) -> Result<Vec<DeliveryAttempt>, StoreError> {
        let r = self.read()?;
        let t = r.open_table(DELIVERIES)?;
        let (from, to) = (delivery_key(seq, 0), delivery_key(seq, u32::MAX));
        let mut out = Vec::new();
        for entry in t.range(from.as_str()..=to.as_str())? {
            let (k, v) = entry?;
            out.push(decode("deliveries", k.value(), v.value())?);
        }
        Ok(out)
    }

    /// Where event `seq`'s webhook delivery stands: `queued` (in the outbox),
    /// `failed` (given up), `delivered` (a 2xx recorded), or `none` (no
    /// webhook was configured when it happened).
    pub fn delivery_state(&self, seq: u64) -> Result<&'static str, StoreError> {
        let r = self.read()?;
        if r.open_table(OUTBOX)?.get(seq)?.is_some() {
            return Ok("queued");
        }
        if r.open_table(WEBHOOK_FAILED)?.get(seq)?.is_some() {
            return Ok("failed");
        }
        drop(r);
        let delivered = self.delivery_attempts(seq)?.iter().any(|a| a.outcome == "delivered");
        Ok(if delivered { "delivered" } else { "none" })
    }

    /// The event a receiver knows by its id.
    pub fn event_by_id(&self, id: &str) -> Result<Option<Event>, StoreError> {
        // One read transaction: one snapshot, one round trip less.
        let r = self.read()?;
        let seq = r.open_table(EVENT_IDS)?.get(id)?.map(|v| v.value());
        match seq {
            Some(seq) => event_in(&r, seq),
            None => Ok(None),
        }
    }

    /// Queues event `seq` for delivery again (on request): back into the
    /// outbox with a fresh age, out of the failed table. `false` when it is
    /// still waiting in the outbox (nothing to do).
    pub fn redeliver(&self, seq: u64, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let Some(event) = self.event(seq)? else {
            return Ok(false);
        };
        self.write(|tx| {
            let mut outbox = tx.txn().open_table(OUTBOX)?;
            if outbox.get(seq)?.is_some() {
                return Ok(false);
            }
            let mut entry = OutboxEntry::new(&event, ordering_key_of(&event));
            entry.created_at = now;
            entry.next_attempt_at = now;
            outbox.insert(seq, encode(&entry).as_slice())?;
            let mut failed = tx.txn().open_table(WEBHOOK_FAILED)?;
            failed.remove(seq)?;
            // The dispatcher may run on another instance.
            tx.txn().notify_on_commit();
            Ok(true)
        })
    }

    /// Gave up on `entry` after `max_age`: it moves to the failed table,
    /// visible in status and metrics, and stops holding back its intent's
    /// later events.
    pub fn outbox_give_up(
        &self,
        mut entry: OutboxEntry,
        error: String,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        self.write_fenced(fence, |tx| {
            entry.attempts += 1;
            entry.last_error = Some(error);
            {
                let mut t = tx.txn().open_table(OUTBOX)?;
                t.remove(entry.seq)?;
            }
            let mut failed = tx.txn().open_table(WEBHOOK_FAILED)?;
            failed.insert(entry.seq, encode(&entry).as_slice())?;
            Ok(())
        })
    }

    pub fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        let r = self.read()?;
        let backlog = r.open_table(OUTBOX)?.len()?;
        let failed = r.open_table(WEBHOOK_FAILED)?.len()?;
        Ok(OutboxStats { backlog, failed })
    }

    /// Deliveries given up, newest first.
    pub fn failed_deliveries(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        let r = self.read()?;
        let t = r.open_table(WEBHOOK_FAILED)?;
        let mut out = Vec::new();
        for entry in t.iter()?.rev().take(limit) {
            let (k, v) = entry?;
            out.push(decode("webhook_failed", &k.value().to_string(), v.value())?);
        }
        Ok(out)
    }
}

fn event_in(r: &ReadTxn, seq: u64) -> Result<Option<Event>, StoreError> {
    match r.open_table(EVENTS)?.get(seq)? {
        Some(v) => decode("events", &seq.to_string(), v.value()).map(Some),
        None => Ok(None),
    }
}
