//! The ordered key/value tables every store operation is written against,
//! over either backend: the embedded redb file or PostgreSQL (`pg`).
//!
//! The API follows redb's (open a table in a transaction; `get`, `insert`,
//! `remove`, ordered `range` in both directions), so one implementation of
//! intents, scans, accounts and the feed serves both stores and both keep
//! the same guarantees by construction: every change is one transaction,
//! and only one write transaction runs at a time (redb's single writer;
//! a transaction-scoped advisory lock in PostgreSQL).
//!
//! Keys order as bytes in both: strings by their UTF-8 bytes (what redb's
//! `&str` order is), numbers big-endian.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};

use redb::{ReadableTable, ReadableTableMetadata};

use super::pg::{PgTxn, Row};
use super::{StoreError, db_err as redb_err};

/// A type a table's keys or values have.
pub trait Kind: 'static {
    /// The type redb stores it as (its table definitions are typed).
    type Redb: redb::Value + 'static;
    /// What a read hands back.
    type Owned: 'static;
    /// What callers pass in, and what `Guard::value` lends out.
    type Ref<'a>: Copy;
    fn from_redb<'a>(v: <Self::Redb as redb::Value>::SelfType<'a>) -> Self::Owned;
    fn to_redb<'a>(r: Self::Ref<'a>) -> <Self::Redb as redb::Value>::SelfType<'a>;
    fn borrow(o: &Self::Owned) -> Self::Ref<'_>;
    /// Bytes in PostgreSQL, ordered as redb orders the type.
    fn encode(r: Self::Ref<'_>) -> Vec<u8>;
    fn decode(bytes: Vec<u8>) -> Option<Self::Owned>;
}

/// A kind tables can be keyed by.
pub trait KeyKind: Kind<Redb: redb::Key> {}

pub struct Str;
pub struct U64;
pub struct Bytes;
pub struct Unit;

impl Kind for Str {
    type Redb = &'static str;
    type Owned = String;
    type Ref<'a> = &'a str;
    fn from_redb<'a>(v: <Self::Redb as redb::Value>::SelfType<'a>) -> Self::Owned {
        v.to_string()
    }
    fn to_redb<'a>(r: Self::Ref<'a>) -> <Self::Redb as redb::Value>::SelfType<'a> {
        r
    }
    fn borrow(o: &String) -> &str {
        o
    }
    fn encode(r: &str) -> Vec<u8> {
        r.as_bytes().to_vec()
    }
    fn decode(bytes: Vec<u8>) -> Option<String> {
        String::from_utf8(bytes).ok()
    }
}
impl KeyKind for Str {}

impl Kind for U64 {
    type Redb = u64;
    type Owned = u64;
    type Ref<'a> = u64;
    fn from_redb<'a>(v: <Self::Redb as redb::Value>::SelfType<'a>) -> Self::Owned {
        v
    }
    fn to_redb<'a>(r: Self::Ref<'a>) -> <Self::Redb as redb::Value>::SelfType<'a> {
        r
    }
    fn borrow(o: &u64) -> u64 {
        *o
    }
    fn encode(r: u64) -> Vec<u8> {
        r.to_be_bytes().to_vec()
    }
    fn decode(bytes: Vec<u8>) -> Option<u64> {
        Some(u64::from_be_bytes(bytes.try_into().ok()?))
    }
}
impl KeyKind for U64 {}

impl Kind for Bytes {
    type Redb = &'static [u8];
    type Owned = Vec<u8>;
    type Ref<'a> = &'a [u8];
    fn from_redb<'a>(v: <Self::Redb as redb::Value>::SelfType<'a>) -> Self::Owned {
        v.to_vec()
    }
    fn to_redb<'a>(r: Self::Ref<'a>) -> <Self::Redb as redb::Value>::SelfType<'a> {
        r
    }
    fn borrow(o: &Vec<u8>) -> &[u8] {
        o
    }
    fn encode(r: &[u8]) -> Vec<u8> {
        r.to_vec()
    }
    fn decode(bytes: Vec<u8>) -> Option<Vec<u8>> {
        Some(bytes)
    }
}

impl Kind for Unit {
    type Redb = ();
    type Owned = ();
    type Ref<'a> = ();
    fn from_redb<'a>(_: <Self::Redb as redb::Value>::SelfType<'a>) -> Self::Owned {}
    fn to_redb<'a>(_: Self::Ref<'a>) -> <Self::Redb as redb::Value>::SelfType<'a> {}
    fn borrow(_: &()) {}
    fn encode(_: ()) -> Vec<u8> {
        Vec::new()
    }
    fn decode(_: Vec<u8>) -> Option<()> {
        Some(())
    }
}

/// A table: its name and the kinds of its keys and values.
pub struct TableDef<K, V> {
    name: &'static str,
    kinds: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for TableDef<K, V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<K, V> Copy for TableDef<K, V> {}

impl<K: KeyKind, V: Kind> TableDef<K, V> {
    pub const fn new(name: &'static str) -> Self {
        TableDef {
            name,
            kinds: PhantomData,
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    fn redb(&self) -> redb::TableDefinition<'static, K::Redb, V::Redb> {
        redb::TableDefinition::new(self.name)
    }
}

/// An owned key or value read from a table.
pub struct Guard<T: Kind>(T::Owned);

impl<T: Kind> Guard<T> {
    pub fn value(&self) -> T::Ref<'_> {
        T::borrow(&self.0)
    }
}

/// A write transaction (one at a time, briefly, so its size is no
/// concern): nothing it does is seen by others until `commit`,
/// and dropping it uncommitted undoes all of it.
#[allow(clippy::large_enum_variant)]
pub enum WriteTxn {
    Redb(redb::WriteTransaction),
    Pg(RefCell<PgTxn>),
}

/// A read transaction: one consistent snapshot of the store.
pub enum ReadTxn {
    Redb(redb::ReadTransaction),
    Pg(RefCell<PgTxn>),
}

impl WriteTxn {
    pub fn open_table<K: KeyKind, V: Kind>(&self, def: TableDef<K, V>) -> Result<Table<'_, K, V>, StoreError> {
        let inner = match self {
            WriteTxn::Redb(txn) => Inner::Write(txn.open_table(def.redb()).map_err(redb_err)?),
            WriteTxn::Pg(txn) => Inner::Pg(txn),
        };
        Ok(Table { name: def.name, inner })
    }

    pub fn commit(self) -> Result<(), StoreError> {
        match self {
            WriteTxn::Redb(txn) => txn.commit().map_err(redb_err),
            WriteTxn::Pg(txn) => txn.into_inner().commit(),
        }
    }

    /// Wakes the other instances sharing the store (their feed readers and
    /// webhook dispatcher) when this commits: events or outbox entries were
    /// written. One process needs no wakeup through the store.
    pub fn notify_on_commit(&self) {
        if let WriteTxn::Pg(txn) = self {
            txn.borrow_mut().notify_on_commit();
        }
    }

    /// Refuses the transaction unless `fence` still holds its lease (see
    /// `pg::Fence`). The embedded store has one process and no leases.
    pub fn check_fence(&self, fence: Option<&super::Fence>) -> Result<(), StoreError> {
        match (self, fence) {
            (WriteTxn::Pg(txn), Some(fence)) => txn.borrow_mut().check_fence(fence),
            _ => Ok(()),
        }
    }
}

impl ReadTxn {
    pub fn open_table<K: KeyKind, V: Kind>(&self, def: TableDef<K, V>) -> Result<Table<'_, K, V>, StoreError> {
        let inner = match self {
            // Every table is created when the store is opened.
            ReadTxn::Redb(txn) => Inner::Read(txn.open_table(def.redb()).map_err(redb_err)?),
            ReadTxn::Pg(txn) => Inner::Pg(txn),
        };
        Ok(Table { name: def.name, inner })
    }
}

enum Inner<'t, K: KeyKind, V: Kind> {
    Read(redb::ReadOnlyTable<K::Redb, V::Redb>),
    Write(redb::Table<'t, K::Redb, V::Redb>),
    Pg(&'t RefCell<PgTxn>),
}

/// One table opened in a transaction.
pub struct Table<'t, K: KeyKind, V: Kind> {
    name: &'static str,
    inner: Inner<'t, K, V>,
}

fn decoded<T: Kind>(table: &str, bytes: Vec<u8>) -> Result<Guard<T>, StoreError> {
    T::decode(bytes)
        .map(Guard)
        .ok_or_else(|| StoreError::Backend(format!("a key or value in table {table} has the wrong shape")))
}

impl<'t, K: KeyKind, V: Kind> Table<'t, K, V> {
    pub fn get(&self, key: K::Ref<'_>) -> Result<Option<Guard<V>>, StoreError> {
        match &self.inner {
            Inner::Read(t) => Ok(t
                .get(K::to_redb(key))
                .map_err(redb_err)?
                .map(|v| Guard(V::from_redb(v.value())))),
            Inner::Write(t) => Ok(t
                .get(K::to_redb(key))
                .map_err(redb_err)?
                .map(|v| Guard(V::from_redb(v.value())))),
            Inner::Pg(txn) => match txn.borrow_mut().get(self.name, &K::encode(key))? {
                Some(bytes) => decoded(self.name, bytes).map(Some),
                None => Ok(None),
            },
        }
    }

    pub fn insert(&mut self, key: K::Ref<'_>, value: V::Ref<'_>) -> Result<(), StoreError> {
        match &mut self.inner {
            Inner::Write(t) => {
                t.insert(K::to_redb(key), V::to_redb(value)).map_err(redb_err)?;
                Ok(())
            }
            Inner::Pg(txn) => txn.borrow_mut().put(self.name, &K::encode(key), &V::encode(value)),
            Inner::Read(_) => Err(read_only(self.name)),
        }
    }

    pub fn remove(&mut self, key: K::Ref<'_>) -> Result<(), StoreError> {
        match &mut self.inner {
            Inner::Write(t) => {
                t.remove(K::to_redb(key)).map_err(redb_err)?;
                Ok(())
            }
            Inner::Pg(txn) => txn.borrow_mut().delete(self.name, &K::encode(key)),
            Inner::Read(_) => Err(read_only(self.name)),
        }
    }

    /// Removes every entry with a key in `range`.
    pub fn remove_range<'k>(&mut self, range: impl RangeBounds<K::Ref<'k>>) -> Result<(), StoreError> {
        let (low, high) = (range.start_bound().cloned(), range.end_bound().cloned());
        match &mut self.inner {
            Inner::Write(t) => t
                .retain_in::<<K::Redb as redb::Value>::SelfType<'k>, _>(
                    (low.map(K::to_redb), high.map(K::to_redb)),
                    |_, _| false,
                )
                .map_err(redb_err),
            Inner::Pg(txn) => txn
                .borrow_mut()
                .delete_range(self.name, encode_bound::<K>(low), encode_bound::<K>(high)),
            Inner::Read(_) => Err(read_only(self.name)),
        }
    }

    /// The entries with keys in `range`, in key order; `.rev()` walks it
    /// from the end.
    pub fn range<'k>(&self, range: impl RangeBounds<K::Ref<'k>>) -> Result<Range<'_, K, V>, StoreError> {
        let (low, high) = (range.start_bound().cloned(), range.end_bound().cloned());
        let inner = match &self.inner {
            Inner::Read(t) => RangeInner::Redb(
                t.range::<<K::Redb as redb::Value>::SelfType<'k>>((low.map(K::to_redb), high.map(K::to_redb)))
                    .map_err(redb_err)?,
            ),
            Inner::Write(t) => RangeInner::Redb(
                t.range::<<K::Redb as redb::Value>::SelfType<'k>>((low.map(K::to_redb), high.map(K::to_redb)))
                    .map_err(redb_err)?,
            ),
            Inner::Pg(txn) => RangeInner::Pg(PgRange {
                txn,
                table: self.name,
                low: encode_bound::<K>(low),
                high: encode_bound::<K>(high),
                page: std::collections::VecDeque::new(),
                done: false,
                reverse: None,
                page_rows: FIRST_PAGE_ROWS,
            }),
        };
        Ok(Range {
            table: self.name,
            inner,
            kinds: PhantomData,
        })
    }

    pub fn iter(&self) -> Result<Range<'_, K, V>, StoreError> {
        self.range(..)
    }

    pub fn last(&self) -> Result<Option<Pair<K, V>>, StoreError> {
        self.iter()?.next_back().transpose()
    }

    pub fn len(&self) -> Result<u64, StoreError> {
        match &self.inner {
            Inner::Read(t) => t.len().map_err(redb_err),
            Inner::Write(t) => t.len().map_err(redb_err),
            Inner::Pg(txn) => txn.borrow_mut().count(self.name),
        }
    }
}

fn read_only(table: &str) -> StoreError {
    StoreError::Backend(format!("table {table} was opened for reading and cannot be written"))
}

fn encode_bound<K: Kind>(bound: Bound<K::Ref<'_>>) -> Bound<Vec<u8>> {
    bound.map(K::encode)
}

enum RangeInner<'t, K: KeyKind, V: Kind> {
    Redb(redb::Range<'t, K::Redb, V::Redb>),
    Pg(PgRange<'t>),
}

/// Entries of a range, read lazily a page at a time from PostgreSQL.
pub struct Range<'t, K: KeyKind, V: Kind> {
    table: &'static str,
    inner: RangeInner<'t, K, V>,
    kinds: PhantomData<fn() -> (K, V)>,
}

/// A key and its value, read.
pub type Pair<K, V> = (Guard<K>, Guard<V>);
type Entry<K, V> = Result<Pair<K, V>, StoreError>;

impl<K: KeyKind, V: Kind> Range<'_, K, V> {
    fn next_at(&mut self, back: bool) -> Option<Entry<K, V>> {
        match &mut self.inner {
            RangeInner::Redb(r) => {
                let item = if back { r.next_back()? } else { r.next()? };
                Some(
                    item.map(|(k, v)| (Guard(K::from_redb(k.value())), Guard(V::from_redb(v.value()))))
                        .map_err(redb_err),
                )
            }
            RangeInner::Pg(r) => match r.next(back)? {
                Ok((k, v)) => Some(decoded::<K>(self.table, k).and_then(|k| Ok((k, decoded::<V>(self.table, v)?)))),
                Err(e) => Some(Err(e)),
            },
        }
    }
}

impl<K: KeyKind, V: Kind> Iterator for Range<'_, K, V> {
    type Item = Entry<K, V>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_at(false)
    }
}

impl<K: KeyKind, V: Kind> DoubleEndedIterator for Range<'_, K, V> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.next_at(true)
    }
}

/// How many rows a PostgreSQL range reads in its first round trip, and at
/// most in one: pages double from the first, so a caller that wants one
/// entry (the newest event) reads few, and a long walk takes few trips.
const FIRST_PAGE_ROWS: i64 = 8;
const PAGE_ROWS: i64 = 256;

/// A range over a PostgreSQL table, walked in one direction (the first
/// call decides which): each page starts past the last key handed out.
struct PgRange<'t> {
    txn: &'t RefCell<PgTxn>,
    table: &'static str,
    low: Bound<Vec<u8>>,
    high: Bound<Vec<u8>>,
    page: std::collections::VecDeque<Row>,
    done: bool,
    reverse: Option<bool>,
    /// Rows the next page asks for.
    page_rows: i64,
}

impl PgRange<'_> {
    fn next(&mut self, back: bool) -> Option<Result<Row, StoreError>> {
        match self.reverse {
            None => self.reverse = Some(back),
            Some(direction) if direction != back => {
                return Some(Err(StoreError::Backend(
                    "a range was walked from both ends; paywatch never does this".into(),
                )));
            }
            Some(_) => {}
        }
        if self.page.is_empty() && !self.done {
            let rows = self
                .txn
                .borrow_mut()
                .range(self.table, &self.low, &self.high, back, self.page_rows);
            match rows {
                Ok(rows) => {
                    self.done = (rows.len() as i64) < self.page_rows;
                    self.page_rows = (self.page_rows * 2).min(PAGE_ROWS);
                    if let Some((last, _)) = rows.last() {
                        if back {
                            self.high = Bound::Excluded(last.clone());
                        } else {
                            self.low = Bound::Excluded(last.clone());
                        }
                    }
                    self.page = rows.into();
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        self.page.pop_front().map(Ok)
    }
}
