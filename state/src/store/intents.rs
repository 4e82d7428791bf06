//! Creating, cancelling, reading and listing intents.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

use super::accounts::{AccountOutcome, NewAccount, create_account_in};
use super::apply::{Holder, key_holder};
use super::tables::*;
use super::tx::{Tx, pool_free_at_ms, render_intent};
use super::{Store, StoreError};
use crate::ids::{new_id, random_u32};
use crate::machine::{self, NotCancellable, holds_match_key};
use crate::matcher::{match_key, pay_amount_candidates};
use crate::model::{AccountStatus, FiatPrice, Intent, IntentStatus, IntentView};
use crate::uri::payment_uri;
use crate::{Asset, AssetPolicy, MatchMode};

/// A validated create request. Addresses are already canonical (the daemon
/// validates them with the chain crate's parsers).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NewIntent {
    pub asset: Asset,
    pub amount: Decimal,
    pub external_id: Option<String>,
    pub metadata: serde_json::Value,
    /// Seconds; the asset's `expires_in` when absent.
    pub expires_in: Option<u64>,
    pub confirmations: Option<u32>,
    pub address: Option<String>,
    pub tag: Option<u32>,
    /// Priced in fiat: `amount` was computed from it (left out of the
    /// fingerprint when absent, so older intents' retries still match).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fiat: Option<FiatPrice>,
}

impl NewIntent {
    /// Canonical text of the request, to compare retries with the same
    /// `external_id` (amounts are at asset scale, JSON object keys sorted).
    /// A fiat-priced request is the fiat price asked for: its amount and
    /// rate (which move between a create and its retry) are left out.
    fn fingerprint(&self) -> String {
        let mut canonical = self.clone();
        if let Some(fiat) = &mut canonical.fiat {
            canonical.amount = Decimal::ZERO;
            fiat.rate = Decimal::ZERO;
            fiat.rate_source.clear();
            fiat.rate_at = DateTime::UNIX_EPOCH;
        }
        serde_json::to_string(&canonical).unwrap_or_default()
    }
}

/// What `cancel_intent` did.
#[derive(Clone, Debug, PartialEq)]
pub enum CancelOutcome {
    NotFound,
    Refused(NotCancellable),
    /// The cancelled intent and the `intent.cancelled` event.
    Cancelled(Box<IntentView>, Vec<crate::Event>),
}

/// One create of a group commit.
#[derive(Clone, Debug, PartialEq)]
pub enum NewRecord {
    Intent(NewIntent),
    Account(NewAccount),
}

impl NewRecord {
    pub fn asset(&self) -> Asset {
        match self {
            NewRecord::Intent(r) => r.asset,
            NewRecord::Account(r) => r.asset,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Created {
    Intent(Box<CreateOutcome>),
    Account(Box<AccountOutcome>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum CreateOutcome {
    Created(IntentView),
    /// The same `external_id` with the same request: the intent it created.
    Existing(IntentView),
}

/// Why a create was refused; each maps to one API error code.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("external_id {0:?} was already used with a different request")]
    ExternalIdConflict(String),
    #[error("every address of the {0} pool is held by a pending or recently ended intent")]
    NoFreeAddress(Asset),
    #[error("no free pay amount within {offsets} steps of {step} above the requested amount")]
    NoFreeAmount { offsets: u32, step: Decimal },
    #[error("address {0} is held by another pending or recently ended intent")]
    AddressInUse(String),
    #[error("tag {0} was already used on this address; tags are never reused")]
    TagUsed(u32),
    #[error("address {0} is not one of the configured {1} addresses")]
    AddressNotConfigured(String, Asset),
    #[error("{0}")]
    NotAllowed(String),
    #[error("{0} has not been polled yet; retry once the chain answered")]
    AssetNotReady(Asset),
    #[error(
        "amount {amount} is below the {asset} min_amount {min}: smaller transfers are dust and never pay an intent"
    )]
    BelowMinimum {
        asset: Asset,
        amount: Decimal,
        min: Decimal,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store failed for a whole group of creates.
    #[error("the store failed: {0}")]
    Failed(String),
}

/// The store's counters (`Store::counts`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counts {
    pub intents: Vec<(Asset, IntentStatus, u64)>,
    /// Accounts by status (`Some`), deposits (`None`).
    pub accounts: Vec<(Asset, Option<AccountStatus>, u64)>,
}

/// Filters of `GET /v1/intents`.
#[derive(Clone, Debug, Default)]
pub struct IntentFilter {
    pub status: Option<IntentStatus>,
    pub asset: Option<Asset>,
    pub external_id: Option<String>,
    /// Only intents older than this id (the previous page's `next`).
    pub after: Option<String>,
    pub limit: usize,
}

impl Store {
    /// Creates an intent durably, or returns the one a previous identical
    /// request with the same `external_id` created.
    pub fn create_intent(
        &self,
        policy: &AssetPolicy,
        req: NewIntent,
        now: DateTime<Utc>,
    ) -> Result<CreateOutcome, CreateError> {
        // Refusals are answers, not failures: they must not turn into
        // store errors.
        self.create_intents(vec![(policy, req)], now)?
            .pop()
            .unwrap_or_else(|| Err(CreateError::Failed("no answer".into())))
    }

    /// Creates several intents in one durable transaction (`create_batch`).
    pub fn create_intents(
        &self,
        requests: Vec<(&AssetPolicy, NewIntent)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<CreateOutcome, CreateError>>, StoreError> {
        let batch = requests.into_iter().map(|(p, r)| (p, NewRecord::Intent(r))).collect();
        Ok(self
            .create_batch(batch, now)?
            .into_iter()
            .map(|answer| match answer {
                Ok(Created::Intent(outcome)) => Ok(*outcome),
                Ok(Created::Account(_)) => Err(CreateError::Failed("an account for an intent".into())),
                Err(e) => Err(e),
            })
            .collect())
    }

    /// Creates a deposit account durably, or returns the one a previous
    /// identical request for the same customer and asset created.
    pub fn create_account(
        &self,
        policy: &AssetPolicy,
        req: NewAccount,
        now: DateTime<Utc>,
    ) -> Result<AccountOutcome, CreateError> {
        match self.create_batch(vec![(policy, NewRecord::Account(req))], now)?.pop() {
            Some(Ok(Created::Account(outcome))) => Ok(*outcome),
            Some(Err(e)) => Err(e),
            _ => Err(CreateError::Failed("no answer".into())),
        }
    }

    /// Creates intents and accounts in one durable transaction (group
    /// commit): one fsync for the batch, each request answered as if alone.
    /// Requests see the ones before them, so uniqueness holds within the batch.
    pub fn create_batch(
        &self,
        requests: Vec<(&AssetPolicy, NewRecord)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<Created, CreateError>>, StoreError> {
        let to_sync: Vec<&AssetPolicy> = {
            let synced = self.pools_synced.lock().unwrap_or_else(|p| p.into_inner());
            let mut seen = HashSet::new();
            requests
                .iter()
                .map(|(policy, _)| *policy)
                .filter(|p| uses_pool(p) && !synced.contains(&p.asset) && seen.insert(p.asset))
                .collect()
        };
        let checkout_base = self.checkout_base.read().unwrap_or_else(|p| p.into_inner()).clone();
        let answers = self.write(|tx| {
            for policy in &to_sync {
                sync_pool(tx, policy)?;
            }
            let mut answers = Vec::with_capacity(requests.len());
            for (policy, req) in &requests {
                let answer = match req {
                    NewRecord::Intent(req) => {
                        create_in(tx, policy, req, checkout_base.as_deref(), now).map(|o| Created::Intent(Box::new(o)))
                    }
                    NewRecord::Account(req) => {
                        create_account_in(tx, policy, req, now).map(|o| Created::Account(Box::new(o)))
                    }
                };
                match answer {
                    Err(CreateError::Store(e)) => return Err(e),
                    answer => answers.push(answer),
                }
            }
            Ok(answers)
        })?;
        let mut synced = self.pools_synced.lock().unwrap_or_else(|p| p.into_inner());
        synced.extend(to_sync.iter().map(|p| p.asset));
        Ok(answers)
    }

    /// The intent an earlier request with the same `external_id` created:
    /// `Some` when the request is the same (a retry), `ExternalIdConflict`
    /// when not, `None` when there is none. Read without creating anything.
    pub fn earlier_create(&self, req: &NewIntent) -> Result<Option<IntentView>, CreateError> {
        let Some(external_id) = &req.external_id else {
            return Ok(None);
        };
        let r = self.read()?;
        let id = {
            let ids = r.open_table(EXTERNAL_IDS)?;
            ids.get(external_id.as_str())?.map(|v| v.value().to_string())
        };
        let Some(existing) = id.map(|id| get_json::<Intent>(&r, INTENTS, &id)).transpose()?.flatten() else {
            return Ok(None);
        };
        if existing.request_fingerprint == req.fingerprint() {
            Ok(Some(view_in_read(&r, &existing)?))
        } else {
            Err(CreateError::ExternalIdConflict(external_id.clone()))
        }
    }

    /// `awaiting` -> `cancelled`; the address, tag or amount stays reserved
    /// for the late window.
    pub fn cancel_intent(&self, id: &str, now: DateTime<Utc>) -> Result<CancelOutcome, StoreError> {
        self.write(|tx| {
            let Some(mut intent) = tx.intent(id)? else {
                return Ok(CancelOutcome::NotFound);
            };
            let before = intent.status;
            let kind = match machine::cancel(&mut intent, now) {
                Ok(kind) => kind,
                Err(refused) => return Ok(CancelOutcome::Refused(refused)),
            };
            tx.put_transitioned(&intent, before)?;
            tx.emit(kind, Some(&intent), None, now)?;
            let view = tx.intent_view(&intent)?;
            Ok(CancelOutcome::Cancelled(Box::new(view), std::mem::take(&mut tx.events)))
        })
    }

    pub fn intent(&self, id: &str) -> Result<Option<IntentView>, StoreError> {
        let r = self.read()?;
        let Some(intent) = get_json::<Intent>(&r, INTENTS, id)? else {
            return Ok(None);
        };
        Ok(Some(view_in_read(&r, &intent)?))
    }

    /// Newest first; returns the page and the cursor of the next page.
    pub fn list_intents(&self, filter: &IntentFilter) -> Result<(Vec<IntentView>, Option<String>), StoreError> {
        let r = self.read()?;
        let limit = filter.limit.max(1);
        if let Some(ext) = &filter.external_id {
            let ids = r.open_table(EXTERNAL_IDS)?;
            let Some(id) = ids.get(ext.as_str())?.map(|v| v.value().to_string()) else {
                return Ok((vec![], None));
            };
            let Some(intent) = get_json::<Intent>(&r, INTENTS, &id)? else {
                return Ok((vec![], None));
            };
            let keep =
                filter.status.is_none_or(|s| s == intent.status) && filter.asset.is_none_or(|a| a == intent.asset);
            return Ok((if keep { vec![view_in_read(&r, &intent)?] } else { vec![] }, None));
        }
        let table = r.open_table(INTENTS)?;
        let range = match &filter.after {
            Some(after) => table.range(..after.as_str())?,
            None => table.range(..)?,
        };
        let mut page = Vec::new();
        let mut heights = ScannedHeights::new(&r);
        for entry in range.rev() {
            let (k, v) = entry?;
            let intent: Intent = decode("intents", k.value(), v.value())?;
            if filter.status.is_some_and(|s| s != intent.status) || filter.asset.is_some_and(|a| a != intent.asset) {
                continue;
            }
            if page.len() == limit {
                let next = page.last().map(|v: &IntentView| v.id.clone());
                return Ok((page, next));
            }
            page.push(view_with(&r, &intent, &mut heights)?);
        }
        Ok((page, None))
    }

    /// Intents with ids in `[from, to)` (ids sort by creation time) after
    /// `after`, oldest first, at most `limit`: the accounting export's pages.
    pub fn intents_ascending(
        &self,
        from: &str,
        to: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<IntentView>, StoreError> {
        let r = self.read()?;
        let table = r.open_table(INTENTS)?;
        let mut page = Vec::new();
        let range = match after {
            Some(after) if after >= from => {
                table.range((std::ops::Bound::Excluded(after), std::ops::Bound::Excluded(to)))
            }
            _ => table.range(from..to),
        }?;
        let mut heights = ScannedHeights::new(&r);
        for entry in range.take(limit) {
            let (k, v) = entry?;
            let intent: Intent = decode("intents", k.value(), v.value())?;
            page.push(view_with(&r, &intent, &mut heights)?);
        }
        Ok(page)
    }

    /// The intent whose checkout page has this token.
    pub fn intent_by_checkout_token(&self, token: &str) -> Result<Option<IntentView>, StoreError> {
        let r = self.read()?;
        let id = {
            let t = r.open_table(CHECKOUT_TOKENS)?;
            t.get(token)?.map(|v| v.value().to_string())
        };
        match id.map(|id| get_json::<Intent>(&r, INTENTS, &id)).transpose()?.flatten() {
            Some(intent) => Ok(Some(view_in_read(&r, &intent)?)),
            None => Ok(None),
        }
    }

    /// Intents per asset and status, kept exact by every transition.
    pub fn intent_counts(&self) -> Result<Vec<(Asset, IntentStatus, u64)>, StoreError> {
        Ok(self.counts()?.intents)
    }

    /// Every count the store keeps (intents, accounts, deposits), read in
    /// one pass: what `/v1/status` and `/metrics` show.
    pub fn counts(&self) -> Result<Counts, StoreError> {
        let r = self.read()?;
        let t = r.open_table(COUNTS)?;
        let mut out = Counts::default();
        for entry in t.iter()? {
            let (k, v) = entry?;
            let Some((code, what)) = k.value().split_once('/') else {
                continue;
            };
            let Ok(asset) = code.parse::<Asset>() else {
                continue;
            };
            let n = v.value();
            if let Some(status) = IntentStatus::parse(what) {
                out.intents.push((asset, status, n));
            } else if what == "deposits" {
                out.accounts.push((asset, None, n));
            } else if let Some(status) = what
                .strip_prefix("account.")
                .and_then(|s| AccountStatus::ALL.into_iter().find(|st| st.as_str() == s))
            {
                out.accounts.push((asset, Some(status), n));
            }
        }
        Ok(out)
    }

    /// Addresses of the open (awaiting, detected) intents of `asset`.
    pub fn open_intent_addresses(&self, asset: Asset) -> Result<Vec<String>, StoreError> {
        let r = self.read()?;
        let open = r.open_table(OPEN_BY_EXPIRY)?;
        let intents = r.open_table(INTENTS)?;
        let (from, to) = (format!("{}/", asset.code()), format!("{}0", asset.code()));
        let mut out = Vec::new();
        for entry in open.range(from.as_str()..to.as_str())? {
            let (key, _) = entry?;
            let Some(id) = key.value().rsplit('/').next().map(str::to_string) else {
                continue;
            };
            if let Some(bytes) = intents.get(id.as_str())? {
                let intent: Intent = decode("intents", &id, bytes.value())?;
                out.push(intent.address);
            }
        }
        Ok(out)
    }

    /// Every address of `asset` that an intent or the config ever used.
    pub fn watched_addresses(&self, asset: Asset) -> Result<Vec<String>, StoreError> {
        Ok(self.watched_snapshot(asset)?.1)
    }

    /// The asset's watch generation and every watched address, read together.
    pub fn watched_snapshot(&self, asset: Asset) -> Result<(u64, Vec<String>), StoreError> {
        let r = self.read()?;
        let generation = read_meta(&r, &watch_generation_key(asset))?;
        let t = r.open_table(WATCHED)?;
        let prefix = format!("{}/", asset.code());
        let end = format!("{}0", asset.code()); // '0' sorts right after '/'
        let mut out = Vec::new();
        for entry in t.range(prefix.as_str()..end.as_str())? {
            let (k, _) = entry?;
            out.push(k.value()[prefix.len()..].to_string());
        }
        Ok((generation, out))
    }

    /// The addresses watched after `generation`, and the newest generation,
    /// read together: what a watch set at `generation` lacks.
    pub fn watched_since(&self, asset: Asset, generation: u64) -> Result<(u64, Vec<String>), StoreError> {
        let r = self.read()?;
        let newest = read_meta(&r, &watch_generation_key(asset))?;
        if newest <= generation {
            return Ok((newest, Vec::new()));
        }
        let t = r.open_table(WATCH_LOG)?;
        let from = watch_log_key(asset.code(), generation + 1);
        let to = watch_log_key(asset.code(), newest);
        let mut out = Vec::new();
        for entry in t.range(from.as_str()..=to.as_str())? {
            let (_, address) = entry?;
            out.push(address.value().to_string());
        }
        Ok((newest, out))
    }
}

fn view_in_read(r: &ReadTxn, intent: &Intent) -> Result<IntentView, StoreError> {
    view_with(r, intent, &mut ScannedHeights::new(r))
}

/// `view_in_read` for a row of a list: each asset's height read once.
fn view_with(r: &ReadTxn, intent: &Intent, heights: &mut ScannedHeights<'_>) -> Result<IntentView, StoreError> {
    let mut payments = Vec::new();
    for key in &intent.payments {
        if let Some(t) = get_json(r, TRANSFERS, &key.encode())? {
            payments.push(t);
        }
    }
    Ok(render_intent(intent, &payments, heights.of(intent.asset)?))
}

fn create_in(
    tx: &mut Tx<'_>,
    policy: &AssetPolicy,
    req: &NewIntent,
    checkout_base: Option<&str>,
    now: DateTime<Utc>,
) -> Result<CreateOutcome, CreateError> {
    let fingerprint = req.fingerprint();
    if let Some(ext) = &req.external_id
        && let Some(id) = tx.get_str(EXTERNAL_IDS, ext)?
        && let Some(existing) = tx.intent(&id)?
    {
        return if existing.request_fingerprint == fingerprint {
            Ok(CreateOutcome::Existing(tx.intent_view(&existing)?))
        } else {
            Err(CreateError::ExternalIdConflict(ext.clone()))
        };
    }
    if req.amount < policy.min_amount {
        return Err(CreateError::BelowMinimum {
            asset: req.asset,
            amount: req.amount,
            min: policy.min_amount,
        });
    }
    // Payments before the first poll could land in blocks paywatch will never
    // scan: the first poll starts at the tip of that moment.
    if tx.chain_state(req.asset)?.is_none() {
        return Err(CreateError::AssetNotReady(req.asset));
    }
    let (address, tag, pay_amount) = allocate(tx, policy, req, now)?;
    let checkout_token = crate::ids::secret_token();
    let expires_in = req
        .expires_in
        .map(|s| Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1000)))
        .unwrap_or(policy.expires_in);
    let intent = Intent {
        id: new_id("pi_", now),
        asset: req.asset,
        status: IntentStatus::Awaiting,
        amount: req.amount,
        pay_amount,
        payment_uri: payment_uri(policy, &address, tag, pay_amount),
        address,
        tag,
        confirmations_required: req.confirmations.unwrap_or(policy.confirmations),
        external_id: req.external_id.clone(),
        metadata: req.metadata.clone(),
        created_at: now,
        expires_at: now + expires_in,
        detected_at: None,
        confirmed_at: None,
        ended_at: None,
        late_window_secs: u64::try_from(policy.late_window.num_seconds()).unwrap_or(0),
        payments: vec![],
        request_fingerprint: fingerprint,
        resolution: None,
        fiat: req.fiat.clone(),
        checkout_token: Some(checkout_token.clone()),
        checkout_url: checkout_base.map(|base| format!("{}/{checkout_token}", base.trim_end_matches('/'))),
    };
    tx.put_str(CHECKOUT_TOKENS, &checkout_token, &intent.id)?;
    let key = match_key(
        intent.asset,
        policy.match_mode,
        &intent.address,
        intent.tag,
        intent.pay_amount,
    )
    .ok_or_else(|| CreateError::NotAllowed("tag mode needs a tag".into()))?;
    tx.put_str(MATCH_KEYS, &key, &intent.id)?;
    if let Some(t) = intent.tag {
        tx.mark(USED_TAGS, &format!("{}/{}/{t}", intent.asset.code(), intent.address))?;
    }
    tx.watch_address(intent.asset, &intent.address)?;
    if let Some(ext) = &intent.external_id {
        tx.put_str(EXTERNAL_IDS, ext, &intent.id)?;
    }
    tx.mark(
        OPEN_BY_EXPIRY,
        &expiry_key(intent.asset.code(), intent.expires_at.timestamp_millis(), &intent.id),
    )?;
    tx.count_status(intent.asset, None, IntentStatus::Awaiting)?;
    tx.put_intent(&intent)?;
    Ok(CreateOutcome::Created(tx.intent_view(&intent)?))
}

/// Whether a match key is free: never held, or held by an intent whose
/// late window is over (a deposit account holds its key for good).
pub(super) fn key_free(tx: &Tx<'_>, key: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
    Ok(match key_holder(tx, key)? {
        None => true,
        Some(Holder::Intent(intent)) => !holds_match_key(&intent, now),
        Some(Holder::Account(_)) => false,
    })
}

/// How deposit accounts use an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AccountUse {
    /// An account's own: every payment to it is that account's.
    Own,
    /// The shared address accounts' tags are on.
    Tagged,
}

impl AccountUse {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            AccountUse::Own => "own",
            AccountUse::Tagged => "tagged",
        }
    }
}

pub(super) fn account_use(tx: &Tx<'_>, asset: Asset, address: &str) -> Result<Option<AccountUse>, StoreError> {
    Ok(
        match tx
            .get_str(ACCOUNT_ADDRESSES, &format!("{}/{address}", asset.code()))?
            .as_deref()
        {
            Some("own") => Some(AccountUse::Own),
            Some(_) => Some(AccountUse::Tagged),
            None => None,
        },
    )
}

/// Hands out the next derived address. The index counter moves in the same
/// transaction as the intent, so no address is ever handed out twice; one
/// paywatch already watches (configured, given explicitly, or derived
/// before) is skipped.
pub(super) fn derive_fresh(
    tx: &mut Tx<'_>,
    asset: Asset,
    deriver: &crate::Deriver,
    amount: Decimal,
    now: DateTime<Utc>,
) -> Result<(String, Option<u32>, Decimal), CreateError> {
    let counter = derive_counter_key(asset, deriver);
    for _ in 0..1000 {
        let index = tx.meta(&counter)?;
        let index32 = u32::try_from(index).map_err(|_| CreateError::NoFreeAddress(asset))?;
        tx.set_meta(&counter, index + 1)?;
        let address = deriver.0.derive(index32).map_err(CreateError::NotAllowed)?;
        // An address paywatch ever watched is not fresh: a configured shared
        // address (which the account's first derived address often is), one
        // given explicitly, or one derived under another numbering. Handing
        // it out would route other payments to it to this intent.
        if tx.has(WATCHED, &format!("{}/{address}", asset.code()))? {
            continue;
        }
        let key = match_key(asset, MatchMode::Address, &address, None, amount).unwrap_or_default();
        if tx.get_str(MATCH_KEYS, &key)?.is_none() && key_free(tx, &key, now)? {
            return Ok((address, None, amount));
        }
    }
    Err(CreateError::NoFreeAddress(asset))
}

/// Candidates looked at per create before falling back to a scan of the
/// pool: an entry may be stale (its address handed out explicitly since).
const POOL_CANDIDATES: usize = 64;

/// Whether creates of `policy` take addresses from a configured pool.
pub(super) fn uses_pool(policy: &AssetPolicy) -> bool {
    policy.match_mode == MatchMode::Address && policy.deriver.is_none() && !policy.addresses.is_empty()
}

/// Brings the pool index in line with the configured addresses: new ones
/// are queued as free now, in config order; removed ones leave it (their
/// queued entries are skipped when met). Once per asset and process.
pub(super) fn sync_pool(tx: &mut Tx<'_>, policy: &AssetPolicy) -> Result<(), StoreError> {
    let code = policy.asset.code();
    let configured: HashSet<&str> = policy.addresses.iter().map(String::as_str).collect();
    for key in tx.keys_in(POOL_MEMBERS, &format!("{code}/"), &format!("{code}0"))? {
        if !configured.contains(&key[code.len() + 1..]) {
            tx.unmark(POOL_MEMBERS, &key)?;
        }
    }
    for (order, address) in policy.addresses.iter().enumerate() {
        let member = pool_member_key(code, address);
        if !tx.has(POOL_MEMBERS, &member)? {
            tx.mark(POOL_MEMBERS, &member)?;
            tx.mark(POOL_FREE, &pool_free_key(code, 0, order as u64, address))?;
        }
    }
    Ok(())
}

/// The pool address free the longest, from the index: the same cost with a
/// hundred addresses or a hundred thousand. Each candidate is taken off the
/// index and checked against its match key, as any address is.
fn take_from_pool(
    tx: &mut Tx<'_>,
    policy: &AssetPolicy,
    for_account: bool,
    now: DateTime<Utc>,
) -> Result<Option<String>, StoreError> {
    let code = policy.asset.code();
    let due = pool_free_key(code, now.timestamp_millis().max(0) as u64 + 1, 0, "");
    for entry in tx.first_keys_in(POOL_FREE, &format!("{code}/"), &due, POOL_CANDIDATES)? {
        tx.unmark(POOL_FREE, &entry)?;
        let Some(address) = entry.splitn(4, '/').nth(3) else {
            continue;
        };
        if !tx.has(POOL_MEMBERS, &pool_member_key(code, address))? {
            continue; // no longer configured
        }
        if account_use(tx, policy.asset, address)?.is_some() {
            continue; // a deposit account's for good: off the queue
        }
        let key = match_key(policy.asset, MatchMode::Address, address, None, Decimal::ZERO).unwrap_or_default();
        if for_account && ever_matched(tx, policy.asset, address)? {
            // An account gets an address no intent ever had: a customer
            // paying an old order again from wallet history must not credit
            // someone else's account. Left in the queue for intents.
            tx.mark(POOL_FREE, &entry)?;
            continue;
        }
        match key_holder(tx, &key)? {
            Some(Holder::Account(_)) => {}
            Some(Holder::Intent(intent)) if holds_match_key(&intent, now) => {
                // Held by an ended intent: back in the queue for when its
                // late window ends. An open holder puts it back itself when
                // it ends (`Tx::put_transitioned`).
                if intent.ended_at.is_some() {
                    tx.mark(POOL_FREE, &pool_free_key(code, pool_free_at_ms(&intent), 0, address))?;
                }
            }
            _ => return Ok(Some(address.to_string())),
        }
    }
    Ok(None)
}

/// Whether any intent (or account) ever held a match key on `address`, in
/// any mode: an address for a new account must be one nobody was ever asked
/// to pay (and that no intent of an older `match` mode still holds).
fn ever_matched(tx: &Tx<'_>, asset: Asset, address: &str) -> Result<bool, StoreError> {
    let key = match_key(asset, MatchMode::Address, address, None, Decimal::ZERO).unwrap_or_default();
    if tx.get_str(MATCH_KEYS, &key)?.is_some() {
        return Ok(true);
    }
    let code = asset.code();
    for mode in ["tag", "amount"] {
        // `match_key` writes `CODE/MODE/ADDRESS/...`; '0' sorts right after '/'.
        let (from, to) = (format!("{code}/{mode}/{address}/"), format!("{code}/{mode}/{address}0"));
        if tx.any_str_in(MATCH_KEYS, &from, &to)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// An address of its own for an intent or account in `address` mode:
/// derived from the xpub (never watched before), or the pool address free
/// the longest (for an account, one no intent ever had).
pub(super) fn exclusive_address(
    tx: &mut Tx<'_>,
    policy: &AssetPolicy,
    for_account: bool,
    now: DateTime<Utc>,
) -> Result<String, CreateError> {
    let asset = policy.asset;
    if let Some(deriver) = &policy.deriver {
        return derive_fresh(tx, asset, deriver, Decimal::ZERO, now).map(|(address, _, _)| address);
    }
    if let Some(a) = take_from_pool(tx, policy, for_account, now)? {
        return Ok(a);
    }
    // The index had nothing free; a pool address may still be free that it
    // does not list (held by an intent that ended before this version kept
    // the index): look at each, as before.
    for a in &policy.addresses {
        let key = match_key(asset, MatchMode::Address, a, None, Decimal::ZERO).unwrap_or_default();
        let usable = if for_account {
            !ever_matched(tx, asset, a)?
        } else {
            key_free(tx, &key, now)?
        };
        if usable && account_use(tx, asset, a)?.is_none() {
            return Ok(a.clone());
        }
    }
    Err(CreateError::NoFreeAddress(asset))
}

/// A destination tag never handed out on `address`, drawn at random.
pub(super) fn fresh_tag(tx: &Tx<'_>, asset: Asset, address: &str) -> Result<u32, CreateError> {
    // 2^32 tags: a handful of draws finds a free one unless the space is nearly spent.
    for _ in 0..64 {
        let t = random_u32();
        if !tx.has(USED_TAGS, &format!("{}/{address}/{t}", asset.code()))? {
            return Ok(t);
        }
    }
    Err(CreateError::NotAllowed("no unused destination tag found".into()))
}

/// Picks the address, tag and pay amount so that the match-key invariant holds.
fn allocate(
    tx: &mut Tx<'_>,
    policy: &AssetPolicy,
    req: &NewIntent,
    now: DateTime<Utc>,
) -> Result<(String, Option<u32>, Decimal), CreateError> {
    let asset = req.asset;
    if req.tag.is_some() && policy.match_mode != MatchMode::Tag {
        return Err(CreateError::NotAllowed(format!(
            "tag is only accepted when {asset} uses match = \"tag\""
        )));
    }
    if policy.match_mode != MatchMode::Address
        && let Some(a) = &req.address
        && !policy.addresses.contains(a)
    {
        return Err(CreateError::AddressNotConfigured(a.clone(), asset));
    }
    let shared = || -> Result<String, CreateError> {
        req.address
            .clone()
            .or_else(|| policy.addresses.first().cloned())
            .ok_or_else(|| CreateError::NotAllowed(format!("no {asset} address is configured")))
    };
    match policy.match_mode {
        MatchMode::Address => {
            if let Some(a) = &req.address {
                let key = match_key(asset, MatchMode::Address, a, None, req.amount).unwrap_or_default();
                // The shared address of accounts' tags is not anyone's own.
                return if key_free(tx, &key, now)? && account_use(tx, asset, a)?.is_none() {
                    Ok((a.clone(), None, req.amount))
                } else {
                    Err(CreateError::AddressInUse(a.clone()))
                };
            }
            Ok((exclusive_address(tx, policy, false, now)?, None, req.amount))
        }
        MatchMode::Tag => {
            let address = shared()?;
            if account_use(tx, asset, &address)? == Some(AccountUse::Own) {
                return Err(CreateError::AddressInUse(address));
            }
            if let Some(t) = req.tag {
                return if tx.has(USED_TAGS, &format!("{}/{address}/{t}", asset.code()))? {
                    Err(CreateError::TagUsed(t))
                } else {
                    Ok((address, Some(t), req.amount))
                };
            }
            Ok((address.clone(), Some(fresh_tag(tx, asset, &address)?), req.amount))
        }
        MatchMode::Amount => {
            let addresses: Vec<String> = match &req.address {
                Some(a) => vec![a.clone()],
                None => policy.addresses.clone(),
            };
            if addresses.is_empty() {
                return Err(CreateError::NotAllowed(format!("no {asset} address is configured")));
            }
            // An address a deposit account owns takes no unique amounts:
            // every payment to it is the account's.
            let mut open_addresses = Vec::with_capacity(addresses.len());
            for a in addresses {
                if account_use(tx, asset, &a)? != Some(AccountUse::Own) {
                    open_addresses.push(a);
                }
            }
            for candidate in pay_amount_candidates(asset, req.amount, policy.amount_step, policy.max_amount_offsets) {
                for a in &open_addresses {
                    let key = match_key(asset, MatchMode::Amount, a, None, candidate).unwrap_or_default();
                    if key_free(tx, &key, now)? {
                        return Ok((a.clone(), None, candidate));
                    }
                }
            }
            Err(CreateError::NoFreeAmount {
                offsets: policy.max_amount_offsets,
                step: policy.amount_step,
            })
        }
    }
}
