//! Deposit accounts (docs/accounts.md): a permanent deposit target per
//! customer and asset, every transfer to it recorded as a deposit.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::Asset;

/// Prefix of account ids; a match key held by an id with it is held by an
/// account (for good), not by an intent.
pub const ACCOUNT_ID_PREFIX: &str = "acct_";

pub fn is_account_id(id: &str) -> bool {
    id.starts_with(ACCOUNT_ID_PREFIX)
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    /// Handed out: the shop shows it to its customer.
    Open,
    /// No longer handed out; deposits that still arrive are recorded.
    Closed,
}

impl AccountStatus {
    pub const ALL: [AccountStatus; 2] = [AccountStatus::Open, AccountStatus::Closed];

    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Open => "open",
            AccountStatus::Closed => "closed",
        }
    }
}

/// A deposit account as stored. Its address (and tag) stay its own for
/// good, open or closed: no intent or other account ever gets them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub id: String,
    pub asset: Asset,
    pub status: AccountStatus,
    pub address: String,
    pub tag: Option<u32>,
    pub payment_uri: String,
    /// The merchant's customer id; one account per customer and asset.
    pub external_id: String,
    pub metadata: serde_json::Value,
    /// The asset's confirmation rule when the account was created.
    pub confirmations_required: u32,
    pub created_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    /// The creating request in canonical form (retry or conflict).
    pub request_fingerprint: String,
}

/// An account as the API and events show it, with its totals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccountView {
    pub id: String,
    pub asset: Asset,
    pub status: AccountStatus,
    pub address: String,
    pub tag: Option<u32>,
    pub payment_uri: String,
    pub external_id: String,
    pub metadata: serde_json::Value,
    pub confirmations_required: u32,
    /// Sum of confirmed deposits.
    pub confirmed_total: Decimal,
    /// Sum of deposits seen but not yet confirmed (reverted ones count nowhere).
    pub pending_total: Decimal,
    /// Deposits recorded, reverted ones included.
    pub deposits: u64,
    pub created_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
}
