//! Deposit accounts (docs/accounts.md): create (idempotent per customer and
//! asset), close, read, and list an account's deposits. Deposits themselves
//! are recorded by `apply` like any transfer.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::intents::{AccountUse, CreateError, account_use, exclusive_address, fresh_tag};
use super::tables::*;
use super::tx::{DepositTotals, Tx, render_account};
use super::{Store, StoreError};
use crate::ids::new_id;
use crate::matcher::match_key;
use crate::model::{ACCOUNT_ID_PREFIX, Account, AccountStatus, AccountView, Transfer, TransferView};
use crate::uri::deposit_uri;
use crate::{Asset, AssetPolicy, MatchMode};

/// A validated `POST /v1/accounts`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NewAccount {
    pub asset: Asset,
    pub external_id: String,
    pub metadata: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq)]
pub enum AccountOutcome {
    Created(AccountView),
    /// The same customer and asset with the same request: its account.
    Existing(AccountView),
}

/// What `close_account` did.
#[derive(Clone, Debug, PartialEq)]
pub enum CloseOutcome {
    NotFound,
    /// Closed before: closing is idempotent, nothing new is said.
    AlreadyClosed(Box<AccountView>),
    Closed(Box<AccountView>, Vec<crate::Event>),
}

impl Store {
    pub fn account(&self, id: &str) -> Result<Option<AccountView>, StoreError> {
        let r = self.read()?;
        match get_json::<Account>(&r, ACCOUNTS, id)? {
            Some(account) => view_in_read(&r, &account).map(Some),
            None => Ok(None),
        }
    }

    /// The account of a customer for an asset.
    pub fn account_by_external_id(&self, asset: Asset, external_id: &str) -> Result<Option<AccountView>, StoreError> {
        let id = {
            let r = self.read()?;
            let t = r.open_table(ACCOUNT_EXTERNAL_IDS)?;
            t.get(account_external_key(asset.code(), external_id).as_str())?
                .map(|v| v.value().to_string())
        };
        match id {
            Some(id) => self.account(&id),
            None => Ok(None),
        }
    }

    /// An account's deposits, newest first, `limit` at most, listed before
    /// position `before` (the previous page's `next`).
    pub fn account_deposits(
        &self,
        account_id: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<TransferView>, Option<u64>), StoreError> {
        let r = self.read()?;
        let mut heights = ScannedHeights::new(&r);
        let deposits = r.open_table(ACCOUNT_DEPOSITS)?;
        let from = deposit_key(account_id, 0);
        let to = deposit_key(account_id, before.unwrap_or(u64::MAX));
        let mut page = Vec::new();
        for entry in deposits.range(from.as_str()..to.as_str())?.rev() {
            let (k, key) = entry?;
            if page.len() == limit.max(1) {
                let next = k.value().rsplit('/').next().and_then(|n| n.parse::<u64>().ok());
                // `next` is exclusive: the position after the last one shown.
                return Ok((page, next.map(|n| n + 1)));
            }
            if let Some(t) = get_json::<Transfer>(&r, TRANSFERS, key.value())? {
                page.push(t.view(heights.of(t.key.asset)?));
            }
        }
        Ok((page, None))
    }

    /// The own addresses of `asset`'s open deposit accounts (the shared
    /// address of tagged ones is configured): what per-address mempool reads
    /// ask for. A closed account's deposits are still seen, in their block.
    pub fn open_account_addresses(&self, asset: Asset) -> Result<Vec<String>, StoreError> {
        let r = self.read()?;
        let t = r.open_table(ACCOUNTS)?;
        let mut out = Vec::new();
        for entry in t.iter()? {
            let (k, v) = entry?;
            let account: Account = decode("accounts", k.value(), v.value())?;
            if account.asset == asset && account.status == AccountStatus::Open && account.tag.is_none() {
                out.push(account.address);
            }
        }
        Ok(out)
    }

    /// Accounts per asset and status (`Some`), and deposits per asset
    /// (`None`), as counted so far (assets never counted are absent).
    pub fn account_counts(&self) -> Result<Vec<(Asset, Option<AccountStatus>, u64)>, StoreError> {
        Ok(self.counts()?.accounts)
    }

    /// Stops handing the account out. Its address and tag stay its own, and
    /// deposits that still arrive are recorded and announced.
    pub fn close_account(&self, id: &str, now: DateTime<Utc>) -> Result<CloseOutcome, StoreError> {
        self.write(|tx| {
            let Some(mut account) = tx.account(id)? else {
                return Ok(CloseOutcome::NotFound);
            };
            if account.status == AccountStatus::Closed {
                return Ok(CloseOutcome::AlreadyClosed(Box::new(tx.account_view(&account)?)));
            }
            account.status = AccountStatus::Closed;
            account.closed_at = Some(now);
            let code = account.asset.code();
            tx.add_count(&account_count_key(code, AccountStatus::Open), -1)?;
            tx.add_count(&account_count_key(code, AccountStatus::Closed), 1)?;
            tx.put_account(&account)?;
            tx.emit_deposit(crate::EventType::AccountClosed, &account, None, now)?;
            let view = tx.account_view(&account)?;
            Ok(CloseOutcome::Closed(Box::new(view), std::mem::take(&mut tx.events)))
        })
    }
}

fn view_in_read(r: &ReadTxn, account: &Account) -> Result<AccountView, StoreError> {
    let totals = get_json::<DepositTotals>(r, ACCOUNT_TOTALS, &account.id)?.unwrap_or_default();
    Ok(render_account(account, &totals))
}

/// Creates an account in `tx`, or answers with the one a previous identical
/// request made.
pub(super) fn create_account_in(
    tx: &mut Tx<'_>,
    policy: &AssetPolicy,
    req: &NewAccount,
    now: DateTime<Utc>,
) -> Result<AccountOutcome, CreateError> {
    let asset = req.asset;
    let code = asset.code();
    let fingerprint = serde_json::to_string(req).unwrap_or_default();
    let external_key = account_external_key(code, &req.external_id);
    if let Some(id) = tx.get_str(ACCOUNT_EXTERNAL_IDS, &external_key)?
        && let Some(existing) = tx.account(&id)?
    {
        return if existing.request_fingerprint == fingerprint {
            Ok(AccountOutcome::Existing(tx.account_view(&existing)?))
        } else {
            Err(CreateError::ExternalIdConflict(req.external_id.clone()))
        };
    }
    if tx.chain_state(asset)?.is_none() {
        return Err(CreateError::AssetNotReady(asset));
    }
    let (address, tag) = match policy.match_mode {
        MatchMode::Tag => {
            let address = policy
                .addresses
                .first()
                .cloned()
                .ok_or_else(|| CreateError::NotAllowed(format!("no {asset} address is configured")))?;
            if account_use(tx, asset, &address)? == Some(AccountUse::Own) {
                return Err(CreateError::AddressInUse(address));
            }
            let tag = fresh_tag(tx, asset, &address)?;
            (address, Some(tag))
        }
        MatchMode::Address => (exclusive_address(tx, policy, true, now)?, None),
        MatchMode::Amount => {
            return Err(CreateError::NotAllowed(format!(
                "deposit accounts need an address or a tag of their own: {asset} uses match = \"amount\"; \
                 use match = \"address\" (with an xpub or a pool) or \"tag\""
            )));
        }
    };
    let account = Account {
        id: new_id(ACCOUNT_ID_PREFIX, now),
        asset,
        status: AccountStatus::Open,
        payment_uri: deposit_uri(policy, &address, tag),
        address,
        tag,
        external_id: req.external_id.clone(),
        metadata: req.metadata.clone(),
        confirmations_required: policy.confirmations,
        created_at: now,
        closed_at: None,
        request_fingerprint: fingerprint,
    };
    let mode = if tag.is_some() {
        MatchMode::Tag
    } else {
        MatchMode::Address
    };
    let key = match_key(asset, mode, &account.address, account.tag, rust_decimal::Decimal::ZERO)
        .ok_or_else(|| CreateError::NotAllowed("tag mode needs a tag".into()))?;
    tx.require_schema(SCHEMA_ACCOUNTS)?;
    tx.put_str(MATCH_KEYS, &key, &account.id)?;
    if let Some(t) = account.tag {
        tx.mark(USED_TAGS, &format!("{code}/{}/{t}", account.address))?;
    }
    tx.watch_address(asset, &account.address)?;
    let used = if account.tag.is_some() {
        AccountUse::Tagged
    } else {
        AccountUse::Own
    };
    tx.put_str(ACCOUNT_ADDRESSES, &format!("{code}/{}", account.address), used.as_str())?;
    tx.put_str(ACCOUNT_EXTERNAL_IDS, &external_key, &account.id)?;
    tx.add_count(&account_count_key(code, AccountStatus::Open), 1)?;
    tx.put_account(&account)?;
    Ok(AccountOutcome::Created(render_account(
        &account,
        &DepositTotals::default(),
    )))
}
