//! `Tx`: typed helpers over one write transaction (either backend), used by every
//! mutating store operation. Events appended here land in the same commit as
//! the state change that caused them.

use chrono::{DateTime, Utc};

use super::StoreError;
use super::feed::OutboxEntry;
use super::kv::WriteTxn;
use super::tables::{self, *};
use crate::Asset;
use crate::ids::new_id;
use crate::machine::summarize;
use crate::model::*;

/// What an event carries besides its intent and transfer.
#[derive(Default)]
pub struct Extras {
    pub account: Option<AccountView>,
    pub audit: Option<AuditRecord>,
}

pub struct Tx<'a> {
    txn: &'a WriteTxn,
    /// Events appended in this transaction, in order.
    pub events: Vec<Event>,
    /// New transfers recorded in this transaction: matched (on time or late), unmatched.
    pub new_transfers: (u64, u64),
    /// New dust transfers recorded in this transaction.
    pub new_dust: u64,
    /// New deposits to accounts recorded in this transaction.
    pub new_deposits: u64,
    /// `meta` `webhooks_enabled`, once read: every event asks it, and it
    /// changes only through `set_meta` here.
    webhooks_enabled: Option<bool>,
}

/// When an ended intent's pool address is free again: the end of its late
/// window, rounded up to the millisecond (the key is held until the exact
/// instant, and an entry is only taken once due).
pub fn pool_free_at_ms(intent: &Intent) -> u64 {
    let ended = intent.ended_at.unwrap_or(intent.expires_at);
    let free = ended
        .checked_add_signed(crate::machine::late_window(intent))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    let ms = free.timestamp_millis().max(0) as u64;
    if free.timestamp_subsec_nanos().is_multiple_of(1_000_000) {
        ms
    } else {
        ms + 1
    }
}

impl<'a> Tx<'a> {
    pub fn new(txn: &'a WriteTxn) -> Tx<'a> {
        Tx {
            txn,
            events: Vec::new(),
            new_transfers: (0, 0),
            new_dust: 0,
            new_deposits: 0,
            webhooks_enabled: None,
        }
    }

    pub fn init_schema(&mut self) -> Result<(), StoreError> {
        // Opening a table in a write transaction creates it (in redb; the
        // PostgreSQL tables are made by the migrations).
        struct Create<'t>(&'t WriteTxn);
        impl TableVisitor for Create<'_> {
            fn visit<K: KeyKind, V: Kind>(&mut self, def: TableDef<K, V>) -> Result<(), StoreError> {
                self.0.open_table(def).map(drop)
            }
        }
        visit_tables(&mut Create(self.txn))?;
        if self.meta(STORE_ID)? == 0 {
            // Copies (backups, `store copy`) keep it: it tells a restore
            // whether the store it replaces descends from the backup.
            let id = (u64::from(crate::ids::random_u32()) << 32 | u64::from(crate::ids::random_u32())).max(1);
            self.set_meta(STORE_ID, id)?;
        }
        match self.meta("schema_version")? {
            0 => self.set_meta("schema_version", SCHEMA_BASE),
            found if found > SCHEMA_VERSION => Err(StoreError::SchemaTooNew {
                found,
                known: SCHEMA_VERSION,
            }),
            _ => Ok(()),
        }
    }

    /// Raises the store's format to `version` (never lowers it).
    pub fn require_schema(&mut self, version: u64) -> Result<(), StoreError> {
        if self.meta("schema_version")? < version {
            self.set_meta("schema_version", version)?;
        }
        Ok(())
    }

    // --- plain key/value helpers -------------------------------------------

    pub fn meta(&self, name: &str) -> Result<u64, StoreError> {
        let t = self.txn.open_table(META)?;
        Ok(t.get(name)?.map(|v| v.value()).unwrap_or(0))
    }

    pub fn set_meta(&mut self, name: &str, value: u64) -> Result<(), StoreError> {
        if name == "webhooks_enabled" {
            self.webhooks_enabled = None;
        }
        let mut t = self.txn.open_table(META)?;
        t.insert(name, value)?;
        Ok(())
    }

    /// Returns the next value of a persistent counter, starting at 1.
    pub fn next_counter(&mut self, name: &str) -> Result<u64, StoreError> {
        let next = self.meta(name)? + 1;
        self.set_meta(name, next)?;
        Ok(next)
    }

    pub fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        def: TableDef<Str, Bytes>,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let t = self.txn.open_table(def)?;
        let out = match t.get(key)? {
            Some(v) => Some(tables::decode(def.name(), key, v.value())?),
            None => None,
        };
        Ok(out)
    }

    pub fn put_json<T: serde::Serialize>(
        &mut self,
        def: TableDef<Str, Bytes>,
        key: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let mut t = self.txn.open_table(def)?;
        t.insert(key, tables::encode(value).as_slice())?;
        Ok(())
    }

    pub fn get_str(&self, def: TableDef<Str, Str>, key: &str) -> Result<Option<String>, StoreError> {
        let t = self.txn.open_table(def)?;
        Ok(t.get(key)?.map(|v| v.value().to_string()))
    }

    pub fn put_str(&mut self, def: TableDef<Str, Str>, key: &str, value: &str) -> Result<(), StoreError> {
        let mut t = self.txn.open_table(def)?;
        t.insert(key, value)?;
        Ok(())
    }

    pub fn remove_str(&mut self, def: TableDef<Str, Str>, key: &str) -> Result<(), StoreError> {
        let mut t = self.txn.open_table(def)?;
        t.remove(key)?;
        Ok(())
    }

    pub fn has(&self, def: TableDef<Str, Unit>, key: &str) -> Result<bool, StoreError> {
        let t = self.txn.open_table(def)?;
        Ok(t.get(key)?.is_some())
    }

    pub fn mark(&mut self, def: TableDef<Str, Unit>, key: &str) -> Result<(), StoreError> {
        let mut t = self.txn.open_table(def)?;
        t.insert(key, ())?;
        Ok(())
    }

    pub fn unmark(&mut self, def: TableDef<Str, Unit>, key: &str) -> Result<(), StoreError> {
        let mut t = self.txn.open_table(def)?;
        t.remove(key)?;
        Ok(())
    }

    /// At most `limit` keys of a set table in `[from, to)`, in order.
    pub fn first_keys_in(
        &self,
        def: TableDef<Str, Unit>,
        from: &str,
        to: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let t = self.txn.open_table(def)?;
        let mut out = Vec::new();
        for entry in t.range(from..to)?.take(limit) {
            let (k, _) = entry?;
            out.push(k.value().to_string());
        }
        Ok(out)
    }

    /// Whether a string table has any key in `[from, to)`.
    pub fn any_str_in(&self, def: TableDef<Str, Str>, from: &str, to: &str) -> Result<bool, StoreError> {
        let t = self.txn.open_table(def)?;
        Ok(t.range(from..to)?.next().transpose()?.is_some())
    }

    /// Keys of a set table in `[from, to)`.
    pub fn keys_in(&self, def: TableDef<Str, Unit>, from: &str, to: &str) -> Result<Vec<String>, StoreError> {
        let t = self.txn.open_table(def)?;
        let mut out = Vec::new();
        for entry in t.range(from..to)? {
            let (k, _) = entry?;
            out.push(k.value().to_string());
        }
        Ok(out)
    }

    // --- records -------------------------------------------------------------

    pub fn intent(&self, id: &str) -> Result<Option<Intent>, StoreError> {
        self.get_json(INTENTS, id)
    }

    pub fn put_intent(&mut self, intent: &Intent) -> Result<(), StoreError> {
        self.put_json(INTENTS, &intent.id, intent)
    }

    /// Stores an intent after a transition from `before`: the status
    /// counts follow, and one that left the open states leaves the expiry
    /// index (and queues its pool address for when its late window ends).
    pub fn put_transitioned(&mut self, intent: &Intent, before: IntentStatus) -> Result<(), StoreError> {
        if before.is_open() && !intent.status.is_open() {
            let code = intent.asset.code();
            self.unmark(
                OPEN_BY_EXPIRY,
                &expiry_key(code, intent.expires_at.timestamp_millis(), &intent.id),
            )?;
            // A pool address is free again once the late window has passed.
            if self.has(POOL_MEMBERS, &pool_member_key(code, &intent.address))? {
                self.mark(
                    POOL_FREE,
                    &pool_free_key(code, pool_free_at_ms(intent), 0, &intent.address),
                )?;
            }
        }
        self.count_status(intent.asset, Some(before), intent.status)?;
        self.put_intent(intent)
    }

    pub fn account(&self, id: &str) -> Result<Option<Account>, StoreError> {
        self.get_json(ACCOUNTS, id)
    }

    pub fn put_account(&mut self, account: &Account) -> Result<(), StoreError> {
        self.put_json(ACCOUNTS, &account.id, account)
    }

    /// The account with its totals.
    pub fn account_view(&self, account: &Account) -> Result<AccountView, StoreError> {
        let totals = self.get_json(ACCOUNT_TOTALS, &account.id)?.unwrap_or_default();
        Ok(render_account(account, &totals))
    }

    /// Keeps an account's totals in step with one deposit's change of
    /// status (`before` is the stored record, `None` for a new deposit).
    fn count_deposit(
        &mut self,
        account_id: &str,
        before: Option<&Transfer>,
        after: &Transfer,
    ) -> Result<(), StoreError> {
        let mut totals: DepositTotals = self.get_json(ACCOUNT_TOTALS, account_id)?.unwrap_or_default();
        match before {
            Some(old) => totals.remove(old),
            None => totals.deposits += 1,
        }
        totals.add(after);
        self.put_json(ACCOUNT_TOTALS, account_id, &totals)
    }

    /// Adds `delta` to a `COUNTS` entry.
    pub fn add_count(&mut self, key: &str, delta: i64) -> Result<(), StoreError> {
        let mut t = self.txn.open_table(COUNTS)?;
        let n = t.get(key)?.map(|v| v.value()).unwrap_or(0);
        t.insert(key, n.saturating_add_signed(delta))?;
        Ok(())
    }

    pub fn transfer(&self, key: &str) -> Result<Option<Transfer>, StoreError> {
        self.get_json(TRANSFERS, key)
    }

    /// Stores a transfer. Every change of a deposit's status passes here,
    /// so its account's totals follow in the same write.
    pub fn put_transfer(&mut self, transfer: &Transfer) -> Result<(), StoreError> {
        let encoded = transfer.key.encode();
        if let Some(account) = &transfer.account_id {
            let before = self.transfer(&encoded)?;
            self.count_deposit(account, before.as_ref(), transfer)?;
        }
        self.put_json(TRANSFERS, &encoded, transfer)
    }

    pub fn payments_of(&self, intent: &Intent) -> Result<Vec<Transfer>, StoreError> {
        let mut out = Vec::with_capacity(intent.payments.len());
        for key in &intent.payments {
            if let Some(t) = self.transfer(&key.encode())? {
                out.push(t);
            }
        }
        Ok(out)
    }

    pub fn chain_state(&self, asset: Asset) -> Result<Option<ChainState>, StoreError> {
        self.get_json(CHAINS, asset.code())
    }

    pub fn scanned_height(&self, asset: Asset) -> Result<u64, StoreError> {
        Ok(self.chain_state(asset)?.map(|c| c.cursor.height).unwrap_or(0))
    }

    /// Keeps the per-asset, per-status intent counts exact.
    pub fn count_status(
        &mut self,
        asset: Asset,
        from: Option<IntentStatus>,
        to: IntentStatus,
    ) -> Result<(), StoreError> {
        if from == Some(to) {
            return Ok(());
        }
        let mut t = self.txn.open_table(COUNTS)?;
        if let Some(from) = from {
            let key = format!("{}/{}", asset.code(), from.as_str());
            let n = t.get(key.as_str())?.map(|v| v.value()).unwrap_or(0);
            t.insert(key.as_str(), n.saturating_sub(1))?;
        }
        let key = format!("{}/{}", asset.code(), to.as_str());
        let n = t.get(key.as_str())?.map(|v| v.value()).unwrap_or(0);
        t.insert(key.as_str(), n + 1)?;
        Ok(())
    }

    // --- views and events ----------------------------------------------------

    pub fn intent_view(&self, intent: &Intent) -> Result<IntentView, StoreError> {
        let payments = self.payments_of(intent)?;
        let scanned = self.scanned_height(intent.asset)?;
        Ok(render_intent(intent, &payments, scanned))
    }

    /// Appends an event (and its webhook outbox entry) to this transaction.
    pub fn emit(
        &mut self,
        kind: EventType,
        intent: Option<&Intent>,
        transfer: Option<&Transfer>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.emit_with(kind, intent, transfer, Extras::default(), now)
    }

    /// A `deposit.*` or `account.*` event.
    pub fn emit_deposit(
        &mut self,
        kind: EventType,
        account: &Account,
        transfer: Option<&Transfer>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let extras = Extras {
            account: Some(self.account_view(account)?),
            audit: None,
        };
        self.emit_with(kind, None, transfer, extras, now)
    }

    /// `emit`, with an account or an audit record.
    pub fn emit_with(
        &mut self,
        kind: EventType,
        intent: Option<&Intent>,
        transfer: Option<&Transfer>,
        extras: Extras,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let seq = self.next_counter("next_seq")?;
        let asset = intent
            .map(|i| i.asset)
            .or(transfer.map(|t| t.key.asset))
            .or(extras.account.as_ref().map(|a| a.asset));
        let scanned = match asset {
            Some(a) => self.scanned_height(a)?,
            None => 0,
        };
        let event = Event {
            id: new_id("evt_", now),
            seq,
            kind,
            created_at: now,
            intent: intent.map(|i| self.intent_view(i)).transpose()?,
            transfer: transfer.map(|t| t.view(scanned)),
            account: extras.account,
            audit: extras.audit,
        };
        {
            let mut t = self.txn.open_table(EVENTS)?;
            t.insert(seq, tables::encode(&event).as_slice())?;
            let mut ids = self.txn.open_table(EVENT_IDS)?;
            ids.insert(event.id.as_str(), seq)?;
        }
        let webhooks_enabled = match self.webhooks_enabled {
            Some(enabled) => enabled,
            None => *self.webhooks_enabled.insert(self.meta("webhooks_enabled")? == 1),
        };
        if webhooks_enabled {
            let entry = OutboxEntry::new(&event, super::feed::ordering_key_of(&event));
            let mut t = self.txn.open_table(OUTBOX)?;
            t.insert(seq, tables::encode(&entry).as_slice())?;
        }
        self.txn.notify_on_commit();
        self.events.push(event);
        Ok(())
    }

    /// Watches `address` of `asset` for good. A new address bumps the
    /// asset's watch generation in this same transaction, so a scan computed
    /// before it cannot be applied (see `ScanUpdate::watch_generation`).
    pub fn watch_address(&mut self, asset: Asset, address: &str) -> Result<(), StoreError> {
        let key = format!("{}/{address}", asset.code());
        if self.has(WATCHED, &key)? {
            return Ok(());
        }
        self.mark(WATCHED, &key)?;
        let generation = self.next_counter(&watch_generation_key(asset))?;
        self.put_str(WATCH_LOG, &watch_log_key(asset.code(), generation), address)
    }

    pub fn txn(&self) -> &WriteTxn {
        self.txn
    }
}

/// Builds the user-facing view of an intent from its record and payments.
pub fn render_intent(intent: &Intent, payments: &[Transfer], scanned_height: u64) -> IntentView {
    let summary = summarize(intent, payments, scanned_height);
    IntentView {
        id: intent.id.clone(),
        asset: intent.asset,
        status: intent.status,
        amount: intent.amount,
        pay_amount: intent.pay_amount,
        address: intent.address.clone(),
        tag: intent.tag,
        payment_uri: intent.payment_uri.clone(),
        received: crate::amount::at_asset_scale(intent.asset, summary.received),
        confirmations: summary.confirmations,
        confirmations_required: intent.confirmations_required,
        flags: summary.flags,
        payments: payments.iter().map(|t| t.payment_view(scanned_height)).collect(),
        external_id: intent.external_id.clone(),
        metadata: intent.metadata.clone(),
        created_at: intent.created_at,
        expires_at: intent.expires_at,
        detected_at: intent.detected_at,
        confirmed_at: intent.confirmed_at,
        resolution: intent.resolution.clone(),
        fiat: intent.fiat.clone(),
        checkout_url: intent.checkout_url.clone(),
    }
}

/// An account's running totals (`ACCOUNT_TOTALS`), kept by `put_transfer`:
/// reading them costs the same with ten deposits or a million.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DepositTotals {
    pub confirmed: rust_decimal::Decimal,
    pub pending: rust_decimal::Decimal,
    pub deposits: u64,
}

impl DepositTotals {
    fn slot(&mut self, status: TransferStatus) -> Option<&mut rust_decimal::Decimal> {
        match status {
            TransferStatus::Confirmed => Some(&mut self.confirmed),
            TransferStatus::Pending => Some(&mut self.pending),
            TransferStatus::Reverted => None,
        }
    }

    fn add(&mut self, t: &Transfer) {
        if let Some(total) = self.slot(t.status) {
            *total += t.amount;
        }
    }

    fn remove(&mut self, t: &Transfer) {
        if let Some(total) = self.slot(t.status) {
            *total -= t.amount;
        }
    }
}

/// Builds the user-facing view of an account from its record and totals.
pub fn render_account(account: &Account, totals: &DepositTotals) -> AccountView {
    AccountView {
        id: account.id.clone(),
        asset: account.asset,
        status: account.status,
        address: account.address.clone(),
        tag: account.tag,
        payment_uri: account.payment_uri.clone(),
        external_id: account.external_id.clone(),
        metadata: account.metadata.clone(),
        confirmations_required: account.confirmations_required,
        confirmed_total: crate::amount::at_asset_scale(account.asset, totals.confirmed),
        pending_total: crate::amount::at_asset_scale(account.asset, totals.pending),
        deposits: totals.deposits,
        created_at: account.created_at,
        closed_at: account.closed_at,
    }
}
