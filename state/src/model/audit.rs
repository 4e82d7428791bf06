//! Manual actions on the record (docs/reconciliation.md): who did what,
//! when, why, and what it changed. Written once, never edited.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::IntentStatus;

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AuditAction {
    /// An unmatched or late transfer attached to an intent by hand.
    #[serde(rename = "transfer.assign")]
    TransferAssign,
    /// An intent settled by a person's decision.
    #[serde(rename = "intent.resolve")]
    IntentResolve,
}

/// One manual action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub id: String,
    /// Order of the audit log (1, 2, ...).
    pub seq: u64,
    pub at: DateTime<Utc>,
    /// The API token's name.
    pub actor: String,
    pub action: AuditAction,
    pub intent_id: String,
    /// The transfer's id, for an assignment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_id: Option<String>,
    pub reason: String,
    /// The records it changed, as views, right before and right after.
    pub before: serde_json::Value,
    pub after: serde_json::Value,
}

/// How an intent was settled by hand (shown on the intent).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Resolution {
    pub status: IntentStatus,
    pub reason: String,
    pub by: String,
    pub at: DateTime<Utc>,
    pub audit_id: String,
}
