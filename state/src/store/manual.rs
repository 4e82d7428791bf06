//! Manual actions (docs/reconciliation.md): a person attaches an unmatched
//! or late transfer to an intent, or settles an intent by decision. Each is
//! one write holding the change, its audit record and its events.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::settle::transition;
use super::tables::*;
use super::tx::{Extras, Tx, render_intent};
use super::{Store, StoreError};
use crate::ids::new_id;
use crate::machine::{self, ChainView, transfer_confirmed};
use crate::model::*;

/// Who acts and why.
#[derive(Clone, Debug)]
pub struct ManualAction {
    /// The API token's name.
    pub actor: String,
    pub reason: String,
}

/// Why a manual action was refused; each maps to one API error code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no transfer {0:?}")]
    TransferNotFound(String),
    #[error("no intent {0:?}")]
    IntentNotFound(String),
    #[error("transfer {0} already counts toward intent {1}; only unmatched and late transfers can be assigned")]
    TransferMatched(String, String),
    #[error("transfer {0} is a deposit to account {1}")]
    TransferIsDeposit(String, String),
    #[error("transfer {0} is below the asset's min_amount (dust) and is never a payment")]
    TransferIsDust(String),
    #[error("transfer {0} was assigned before (audit record {1}); an assignment is final")]
    AlreadyAssigned(String, String),
    #[error("transfer {0} is late money on intent {1}, which a person resolved (audit record {2}); it stays there")]
    OnResolvedIntent(String, String, String),
    #[error("transfer {0} was reverted: it is no longer on the chain")]
    TransferReverted(String),
    #[error("transfer {0} is {1} and intent {2} is {3}: the assets differ")]
    AssetMismatch(String, Asset, String, Asset),
    #[error(
        "intent {0} is {1}: a transfer can only be assigned to an awaiting or detected intent; settle an ended one with POST /v1/intents/{0}/resolve"
    )]
    IntentNotOpen(String, &'static str),
    #[error("intent {0} was resolved by hand before (audit record {1}); a resolution is final")]
    AlreadyResolved(String, String),
    #[error("intent {0} is {1} already")]
    NoChange(String, &'static str),
    #[error("an intent can be resolved as confirmed or expired, not {0}")]
    BadResolution(&'static str),
}

/// What a manual action changed.
#[derive(Clone, Debug, PartialEq)]
pub struct ManualOutcome {
    pub intent: IntentView,
    pub audit: AuditRecord,
    pub events: Vec<Event>,
}

use crate::Asset;

impl Store {
    /// Attaches an unmatched or late transfer to an open intent. The intent's
    /// lifecycle runs as if the transfer had matched it: it may become
    /// detected, or confirmed once the transfer meets its confirmation rule.
    pub fn assign_transfer(
        &self,
        key: &TransferKey,
        intent_id: &str,
        action: &ManualAction,
        now: DateTime<Utc>,
    ) -> Result<Result<ManualOutcome, Refusal>, StoreError> {
        self.write(|tx| {
            let transfer_id = key.id();
            let Some(mut t) = tx.transfer(&key.encode())? else {
                return Ok(Err(Refusal::TransferNotFound(transfer_id)));
            };
            let Some(mut intent) = tx.intent(intent_id)? else {
                return Ok(Err(Refusal::IntentNotFound(intent_id.to_string())));
            };
            if let Some(audit) = &t.assignment {
                return Ok(Err(Refusal::AlreadyAssigned(transfer_id, audit.clone())));
            }
            if let Some(account) = &t.account_id {
                return Ok(Err(Refusal::TransferIsDeposit(transfer_id, account.clone())));
            }
            if t.dust {
                return Ok(Err(Refusal::TransferIsDust(transfer_id)));
            }
            if let (Some(holder), false) = (&t.intent_id, t.late) {
                return Ok(Err(Refusal::TransferMatched(transfer_id, holder.clone())));
            }
            if t.status == TransferStatus::Reverted {
                return Ok(Err(Refusal::TransferReverted(transfer_id)));
            }
            if intent.asset != key.asset {
                return Ok(Err(Refusal::AssetMismatch(
                    transfer_id,
                    key.asset,
                    intent.id.clone(),
                    intent.asset,
                )));
            }
            if !intent.status.is_open() {
                return Ok(Err(Refusal::IntentNotOpen(intent.id.clone(), intent.status.as_str())));
            }
            // Late money on an intent a person settled may be what they
            // settled it on: it stays there.
            let previous = match t.intent_id.as_deref() {
                Some(id) => tx.intent(id)?,
                None => None,
            };
            if let Some(old) = &previous
                && let Some(resolution) = &old.resolution
            {
                return Ok(Err(Refusal::OnResolvedIntent(
                    transfer_id,
                    old.id.clone(),
                    resolution.audit_id.clone(),
                )));
            }
            let scanned = tx.scanned_height(key.asset)?;
            let mut before = json!({
                "transfer": t.view(scanned),
                "intent": tx.intent_view(&intent)?,
            });
            let mut previous_after = None;
            // Late money leaves the ended intent it was recorded on (its
            // `received` drops; both sides are in the record).
            if let Some(mut old) = previous {
                before["previous_intent"] = json!(tx.intent_view(&old)?);
                old.payments.retain(|p| p != &t.key);
                tx.put_intent(&old)?;
                previous_after = Some(old);
            }
            // Confirmed under the asset's rule as unmatched money; the intent
            // may ask for more: judged again by the next scan if so.
            let chain = ChainView {
                scanned_height: scanned,
                finalized: tx.chain_state(key.asset)?.and_then(|c| c.tip.finalized),
            };
            if t.status == TransferStatus::Confirmed && !transfer_confirmed(&t, intent.confirmations_required, &chain) {
                t.status = TransferStatus::Pending;
                tx.mark(UNSETTLED, &key.encode())?;
            }
            let audit_seq = tx.next_counter("next_audit")?;
            let audit_id = new_id("aud_", now);
            t.intent_id = Some(intent.id.clone());
            t.late = false;
            t.assignment = Some(audit_id.clone());
            intent.payments.push(t.key.clone());
            tx.put_transfer(&t)?;
            tx.put_intent(&intent)?;

            // The record shows where the lifecycle takes the intent; the
            // transitions below are the same steps, emitted after it.
            let payments = tx.payments_of(&intent)?;
            let mut settled = intent.clone();
            machine::settle(&mut settled, &payments, now, None);
            let mut after = json!({
                "transfer": t.view(scanned),
                "intent": render_intent(&settled, &payments, scanned),
            });
            if let Some(old) = &previous_after {
                after["previous_intent"] = json!(tx.intent_view(old)?);
            }
            let audit = AuditRecord {
                id: audit_id,
                seq: audit_seq,
                at: now,
                actor: action.actor.clone(),
                action: AuditAction::TransferAssign,
                intent_id: intent.id.clone(),
                transfer_id: Some(transfer_id),
                reason: action.reason.clone(),
                before,
                after,
            };
            put_audit(tx, &audit)?;
            let extras = Extras {
                account: None,
                audit: Some(audit.clone()),
            };
            tx.emit_with(EventType::TransferAssigned, Some(&intent), Some(&t), extras, now)?;
            transition(tx, &intent.id, Some(&t), now, None)?;
            let view = match tx.intent(&intent.id)? {
                Some(i) => tx.intent_view(&i)?,
                None => tx.intent_view(&intent)?,
            };
            Ok(Ok(ManualOutcome {
                intent: view,
                audit,
                events: std::mem::take(&mut tx.events),
            }))
        })
    }

    /// Settles an intent by a person's decision, as `confirmed` or
    /// `expired`: final, recorded, announced as `intent.resolved`.
    pub fn resolve_intent(
        &self,
        intent_id: &str,
        status: IntentStatus,
        action: &ManualAction,
        now: DateTime<Utc>,
    ) -> Result<Result<ManualOutcome, Refusal>, StoreError> {
        if !matches!(status, IntentStatus::Confirmed | IntentStatus::Expired) {
            return Ok(Err(Refusal::BadResolution(status.as_str())));
        }
        self.write(|tx| {
            let Some(mut intent) = tx.intent(intent_id)? else {
                return Ok(Err(Refusal::IntentNotFound(intent_id.to_string())));
            };
            if let Some(resolution) = &intent.resolution {
                return Ok(Err(Refusal::AlreadyResolved(
                    intent.id.clone(),
                    resolution.audit_id.clone(),
                )));
            }
            if intent.status == status {
                return Ok(Err(Refusal::NoChange(intent.id.clone(), status.as_str())));
            }
            let before_status = intent.status;
            let before = json!({"intent": tx.intent_view(&intent)?});
            let audit_seq = tx.next_counter("next_audit")?;
            let audit_id = new_id("aud_", now);
            intent.status = status;
            // `confirmed_at` says when it became confirmed, by chain or hand.
            intent.confirmed_at = (status == IntentStatus::Confirmed).then_some(now);
            // The late window runs from the first end; an open intent ends now.
            intent.ended_at = intent.ended_at.or(Some(now));
            intent.resolution = Some(Resolution {
                status,
                reason: action.reason.clone(),
                by: action.actor.clone(),
                at: now,
                audit_id: audit_id.clone(),
            });
            tx.put_transitioned(&intent, before_status)?;
            let audit = AuditRecord {
                id: audit_id,
                seq: audit_seq,
                at: now,
                actor: action.actor.clone(),
                action: AuditAction::IntentResolve,
                intent_id: intent.id.clone(),
                transfer_id: None,
                reason: action.reason.clone(),
                before,
                after: json!({"intent": tx.intent_view(&intent)?}),
            };
            put_audit(tx, &audit)?;
            let extras = Extras {
                account: None,
                audit: Some(audit.clone()),
            };
            tx.emit_with(EventType::IntentResolved, Some(&intent), None, extras, now)?;
            Ok(Ok(ManualOutcome {
                intent: tx.intent_view(&intent)?,
                audit,
                events: std::mem::take(&mut tx.events),
            }))
        })
    }

    /// Audit records newest first, `limit` at most, with `seq < before`;
    /// and the `next` cursor.
    pub fn audit_records(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<AuditRecord>, Option<u64>), StoreError> {
        let r = self.read()?;
        let t = r.open_table(AUDIT)?;
        let mut page: Vec<AuditRecord> = Vec::new();
        for entry in t.range(..before.unwrap_or(u64::MAX))?.rev() {
            let (k, v) = entry?;
            if page.len() == limit.max(1) {
                return Ok((page.clone(), page.last().map(|a| a.seq)));
            }
            page.push(decode("audit", &k.value().to_string(), v.value())?);
        }
        Ok((page, None))
    }
}

/// Writes an audit record; the store has no call that rewrites one.
fn put_audit(tx: &mut Tx<'_>, audit: &AuditRecord) -> Result<(), StoreError> {
    tx.require_schema(SCHEMA_ACCOUNTS)?;
    let mut t = tx.txn().open_table(AUDIT)?;
    if t.get(audit.seq)?.is_some() {
        return Err(StoreError::Corrupt {
            table: "audit".into(),
            key: audit.seq.to_string(),
            source: serde::de::Error::custom("an audit record with this seq exists; records are never rewritten"),
        });
    }
    t.insert(audit.seq, encode(audit).as_slice())?;
    Ok(())
}
