//! What is stored: intents, transfers, events and per-asset chain cursors,
//! plus the JSON views the API and the webhooks show (docs/openapi.json, docs/api.md).
//!
//! Stored records keep only facts; what can be derived (received, flags,
//! confirmations) is computed when a view is rendered, so it can never drift.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::Asset;

mod accounts;
mod audit;

pub use accounts::{ACCOUNT_ID_PREFIX, Account, AccountStatus, AccountView, is_account_id};
pub use audit::{AuditAction, AuditRecord, Resolution};

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntentStatus {
    Awaiting,
    Detected,
    Confirmed,
    Expired,
    Cancelled,
}

impl IntentStatus {
    pub const ALL: [IntentStatus; 5] = [
        IntentStatus::Awaiting,
        IntentStatus::Detected,
        IntentStatus::Confirmed,
        IntentStatus::Expired,
        IntentStatus::Cancelled,
    ];

    /// Awaiting or detected: the intent can still receive on time.
    pub fn is_open(self) -> bool {
        matches!(self, IntentStatus::Awaiting | IntentStatus::Detected)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            IntentStatus::Awaiting => "awaiting",
            IntentStatus::Detected => "detected",
            IntentStatus::Confirmed => "confirmed",
            IntentStatus::Expired => "expired",
            IntentStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<IntentStatus> {
        IntentStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flag {
    Underpaid,
    Overpaid,
    PaidLate,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferStatus {
    Pending,
    Confirmed,
    Reverted,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "intent.detected")]
    IntentDetected,
    #[serde(rename = "intent.confirmed")]
    IntentConfirmed,
    #[serde(rename = "intent.expired")]
    IntentExpired,
    #[serde(rename = "intent.cancelled")]
    IntentCancelled,
    #[serde(rename = "intent.reverted")]
    IntentReverted,
    #[serde(rename = "intent.paid_late")]
    IntentPaidLate,
    #[serde(rename = "transfer.unmatched")]
    TransferUnmatched,
    /// A transfer that counts toward no open intent (unmatched, late, or on
    /// an intent that has ended) reached its confirmation rule.
    #[serde(rename = "transfer.confirmed")]
    TransferConfirmed,
    /// Such a transfer left the chain (its block was orphaned, it was
    /// replaced or double-spent, the node no longer knows it).
    #[serde(rename = "transfer.reverted")]
    TransferReverted,
    /// A transfer to a deposit account was seen (mempool or block), or seen
    /// again after a revert.
    #[serde(rename = "deposit.detected")]
    DepositDetected,
    /// A deposit reached the account's confirmation rule.
    #[serde(rename = "deposit.confirmed")]
    DepositConfirmed,
    /// A deposit left the chain.
    #[serde(rename = "deposit.reverted")]
    DepositReverted,
    /// A deposit account is no longer handed out.
    #[serde(rename = "account.closed")]
    AccountClosed,
    /// A person attached an unmatched or late transfer to an intent.
    #[serde(rename = "transfer.assigned")]
    TransferAssigned,
    /// A person settled an intent as confirmed or expired.
    #[serde(rename = "intent.resolved")]
    IntentResolved,
}

impl EventType {
    pub const ALL: [EventType; 15] = [
        EventType::IntentDetected,
        EventType::IntentConfirmed,
        EventType::IntentExpired,
        EventType::IntentCancelled,
        EventType::IntentReverted,
        EventType::IntentPaidLate,
        EventType::TransferUnmatched,
        EventType::TransferConfirmed,
        EventType::TransferReverted,
        EventType::DepositDetected,
        EventType::DepositConfirmed,
        EventType::DepositReverted,
        EventType::AccountClosed,
        EventType::TransferAssigned,
        EventType::IntentResolved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::IntentDetected => "intent.detected",
            EventType::IntentConfirmed => "intent.confirmed",
            EventType::IntentExpired => "intent.expired",
            EventType::IntentCancelled => "intent.cancelled",
            EventType::IntentReverted => "intent.reverted",
            EventType::IntentPaidLate => "intent.paid_late",
            EventType::TransferUnmatched => "transfer.unmatched",
            EventType::TransferConfirmed => "transfer.confirmed",
            EventType::TransferReverted => "transfer.reverted",
            EventType::DepositDetected => "deposit.detected",
            EventType::DepositConfirmed => "deposit.confirmed",
            EventType::DepositReverted => "deposit.reverted",
            EventType::AccountClosed => "account.closed",
            EventType::TransferAssigned => "transfer.assigned",
            EventType::IntentResolved => "intent.resolved",
        }
    }
}

/// A transfer's unique key on its chain: `txid:vout`, `txhash:logindex`, or
/// the XRP transaction hash with index 0. A re-scan that sees the same key
/// again never counts it twice.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TransferKey {
    pub asset: Asset,
    pub txid: String,
    pub index: u32,
}

impl TransferKey {
    /// The store key; `asset/txid/index` with a fixed-width index so keys of
    /// one transaction sort together.
    pub fn encode(&self) -> String {
        format!("{}/{}/{:010}", self.asset.code(), self.txid, self.index)
    }

    /// The id the API shows and takes: `ASSET:txid:index`.
    pub fn id(&self) -> String {
        format!("{}:{}:{}", self.asset.code(), self.txid, self.index)
    }

    /// Reads an id made by `id`; `None` when it is not one.
    pub fn parse_id(id: &str) -> Option<TransferKey> {
        let (asset, rest) = id.split_once(':')?;
        let (txid, index) = rest.rsplit_once(':')?;
        if txid.is_empty() || txid.len() > 200 {
            return None;
        }
        Some(TransferKey {
            asset: asset.parse::<Asset>().ok()?,
            txid: txid.to_string(),
            index: index.parse().ok()?,
        })
    }
}

/// A payment intent as stored. See `IntentView` for what users see.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Intent {
    pub id: String,
    pub asset: Asset,
    pub status: IntentStatus,
    pub amount: Decimal,
    pub pay_amount: Decimal,
    pub address: String,
    pub tag: Option<u32>,
    pub payment_uri: String,
    pub confirmations_required: u32,
    pub external_id: Option<String>,
    pub metadata: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub detected_at: Option<DateTime<Utc>>,
    pub confirmed_at: Option<DateTime<Utc>>,
    /// When the intent stopped receiving on time (confirmed, expired, cancelled).
    pub ended_at: Option<DateTime<Utc>>,
    /// Late payments are recorded on it until `ended_at + late_window`, and
    /// its match key stays reserved until then. Fixed at creation.
    pub late_window_secs: u64,
    /// Transfers matched to it, in the order they were first seen.
    pub payments: Vec<TransferKey>,
    /// The creating request in canonical form, to tell a retried create from
    /// a conflicting one with the same `external_id`.
    pub request_fingerprint: String,
    /// Settled by a person (`POST /v1/intents/{id}/resolve`): final.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
    /// Priced in fiat: the price and the rate fixed at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fiat: Option<FiatPrice>,
    /// The unguessable token of its public checkout page (docs/checkout.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkout_token: Option<String>,
    /// The page's URL, when a checkout base URL was configured at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkout_url: Option<String>,
}

/// A fiat price and the exchange rate that turned it into `amount`
/// (docs/pricing.md): fixed when the intent was created, never updated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FiatPrice {
    pub fiat_amount: Decimal,
    /// ISO 4217, upper case (`USD`, `EUR`).
    pub fiat_currency: String,
    /// Fiat per one coin.
    pub rate: Decimal,
    /// Where the rate came from: `median of coinbase, kraken`, `fixed`, ...
    pub rate_source: String,
    /// The age of the oldest quote the rate was made of.
    pub rate_at: DateTime<Utc>,
}

/// A transfer to a watched address, matched or not.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transfer {
    pub key: TransferKey,
    pub address: String,
    pub tag: Option<u32>,
    pub amount: Decimal,
    pub block_height: Option<u64>,
    pub block_hash: Option<String>,
    /// Depth the chain itself requires before the output is spendable,
    /// whatever the intent asks: 100 for coinbase, 6 for Litecoin peg-outs.
    #[serde(default)]
    pub maturity: u32,
    pub status: TransferStatus,
    pub intent_id: Option<String>,
    pub late: bool,
    /// Below the asset's `min_amount`: recorded, never matched, no event.
    #[serde(default)]
    pub dust: bool,
    /// `transfer.confirmed` was sent and no `transfer.reverted` since: a
    /// block re-mined after a shallow reorg does not announce it twice.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub confirmed_announced: bool,
    /// `transfer.reverted` was sent: its confirmation, should it come back,
    /// is announced too (even for a confirmed intent's own payment).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reverted_announced: bool,
    pub seen_at: DateTime<Utc>,
    /// The deposit account it was sent to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// The audit record of the person who assigned it to its intent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment: Option<String>,
}

/// A block (or ledger) by height and hash.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BlockRef {
    pub height: u64,
    pub hash: String,
}

/// What the node says about its chain right now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainTip {
    pub height: u64,
    pub hash: String,
    /// The chain's own finality signal (finalized block, solidified block,
    /// validated ledger); `None` on chains where depth is the only rule.
    pub finalized: Option<u64>,
}

/// Per-asset scan position: the last block (ledger) whose contents are
/// durably applied. It only moves in the same write that applies the scan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainState {
    pub cursor: BlockRef,
    pub tip: ChainTip,
    pub updated_at: DateTime<Utc>,
    /// When the stored tip height last rose: the head's age survives a
    /// restart, so a stuck backend is not trusted afresh.
    #[serde(default)]
    pub tip_rose_at: Option<DateTime<Utc>>,
    /// When the last round that reached the tip began: what other instances
    /// sharing the store judge the asset's lag by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_at: Option<DateTime<Utc>>,
}

/// Confirmations of a transfer given the height scanned so far: 0 in the
/// mempool, 1 in the newest scanned block.
pub fn confirmations_at(block_height: Option<u64>, scanned_height: u64) -> u64 {
    match block_height {
        Some(h) if scanned_height >= h => scanned_height - h + 1,
        _ => 0,
    }
}

/// One entry of an intent's `payments` array.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PaymentView {
    pub txid: String,
    pub index: u32,
    pub amount: Decimal,
    pub confirmations: u64,
    pub block_height: Option<u64>,
    pub status: TransferStatus,
    pub late: bool,
    pub seen_at: DateTime<Utc>,
}

/// An intent as the API, the event feed and webhooks show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IntentView {
    pub id: String,
    pub asset: Asset,
    pub status: IntentStatus,
    pub amount: Decimal,
    pub pay_amount: Decimal,
    pub address: String,
    pub tag: Option<u32>,
    pub payment_uri: String,
    pub received: Decimal,
    pub confirmations: u64,
    pub confirmations_required: u32,
    pub flags: Vec<Flag>,
    pub payments: Vec<PaymentView>,
    pub external_id: Option<String>,
    pub metadata: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub detected_at: Option<DateTime<Utc>>,
    pub confirmed_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
    /// `fiat_amount`, `fiat_currency`, `rate`, `rate_source`, `rate_at` when
    /// priced in fiat.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub fiat: Option<FiatPrice>,
    /// The customer's payment page (docs/checkout.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkout_url: Option<String>,
}

/// A transfer as `GET /v1/transfers` and events show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransferView {
    /// `ASSET:txid:index` (`TransferKey::id`).
    pub id: String,
    pub asset: Asset,
    pub txid: String,
    pub index: u32,
    pub address: String,
    pub tag: Option<u32>,
    pub amount: Decimal,
    pub confirmations: u64,
    pub block_height: Option<u64>,
    pub status: TransferStatus,
    pub intent_id: Option<String>,
    pub late: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dust: bool,
    pub seen_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment: Option<String>,
}

impl TransferView {
    /// Money that counts toward no intent on time: unmatched, or late on an
    /// ended intent (never dust, never a deposit): what `unmatched=true`
    /// lists.
    pub fn is_unmatched_or_late(&self) -> bool {
        !self.dust && self.account_id.is_none() && (self.intent_id.is_none() || self.late)
    }
}

impl Transfer {
    pub fn view(&self, scanned_height: u64) -> TransferView {
        TransferView {
            id: self.key.id(),
            asset: self.key.asset,
            txid: self.key.txid.clone(),
            index: self.key.index,
            address: self.address.clone(),
            tag: self.tag,
            amount: self.amount,
            confirmations: confirmations_at(self.block_height, scanned_height),
            block_height: self.block_height,
            status: self.status,
            intent_id: self.intent_id.clone(),
            late: self.late,
            dust: self.dust,
            seen_at: self.seen_at,
            account_id: self.account_id.clone(),
            assignment: self.assignment.clone(),
        }
    }

    pub fn payment_view(&self, scanned_height: u64) -> PaymentView {
        PaymentView {
            txid: self.key.txid.clone(),
            index: self.key.index,
            amount: self.amount,
            confirmations: confirmations_at(self.block_height, scanned_height),
            block_height: self.block_height,
            status: self.status,
            late: self.late,
            seen_at: self.seen_at,
        }
    }
}

/// One entry of the durable event log (docs/durability.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    pub seq: u64,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub created_at: DateTime<Utc>,
    pub intent: Option<IntentView>,
    pub transfer: Option<TransferView>,
    /// The deposit account of `deposit.*` and `account.*` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<AccountView>,
    /// The manual action of `transfer.assigned` and `intent.resolved`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditRecord>,
}

impl Event {
    pub fn asset(&self) -> Option<Asset> {
        self.intent
            .as_ref()
            .map(|i| i.asset)
            .or(self.transfer.as_ref().map(|t| t.asset))
            .or(self.account.as_ref().map(|a| a.asset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmations_count_the_containing_block() {
        assert_eq!(confirmations_at(None, 100), 0);
        assert_eq!(confirmations_at(Some(100), 100), 1);
        assert_eq!(confirmations_at(Some(95), 100), 6);
        assert_eq!(confirmations_at(Some(101), 100), 0, "not scanned yet");
    }

    #[test]
    fn status_and_event_names_are_the_spec_names() {
        for s in IntentStatus::ALL {
            assert_eq!(serde_json::to_value(s).expect("json"), serde_json::json!(s.as_str()));
            assert_eq!(IntentStatus::parse(s.as_str()), Some(s));
        }
        for e in EventType::ALL {
            assert_eq!(serde_json::to_value(e).expect("json"), serde_json::json!(e.as_str()));
        }
        assert_eq!(
            serde_json::to_value(Flag::PaidLate).expect("json"),
            serde_json::json!("paid_late")
        );
    }

    #[test]
    fn transfer_ids_read_back() {
        let key = TransferKey {
            asset: Asset::Ltc,
            txid: "ab:cd".into(),
            index: 7,
        };
        assert_eq!(key.id(), "LTC:ab:cd:7");
        assert_eq!(TransferKey::parse_id(&key.id()), Some(key));
        for bad in ["", "LTC", "LTC:x", "DOGE:x:1", "LTC::1", "LTC:x:-1", "LTC:x:a"] {
            assert_eq!(TransferKey::parse_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn amounts_are_json_strings() {
        let v = serde_json::to_value(PaymentView {
            txid: "t".into(),
            index: 0,
            amount: "0.08421500".parse().expect("decimal"),
            confirmations: 0,
            block_height: None,
            status: TransferStatus::Pending,
            late: false,
            seen_at: DateTime::UNIX_EPOCH,
        })
        .expect("json");
        assert_eq!(v["amount"], serde_json::json!("0.08421500"));
    }
}
