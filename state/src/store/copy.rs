//! Copying a whole store into another, between backends: from the embedded
//! file into PostgreSQL, and back. The source is read in one snapshot; the
//! target is written in one transaction and must hold nothing yet; then
//! both are read again and compared entry by entry.

use super::kv::{KeyKind, Kind, ReadTxn, TableDef, WriteTxn};
use super::tables::{TableVisitor, visit_tables};
use super::{Store, StoreError};

/// How many entries a table held, as copied and as verified.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TableCount {
    pub table: &'static str,
    pub entries: u64,
}

impl Store {
    /// Copies every table of this store into `target`, which must be empty
    /// (a new state directory, or a database with no records), and checks
    /// that the target then holds exactly what the source held.
    pub fn copy_into(&self, target: &Store) -> Result<Vec<TableCount>, StoreError> {
        let source = self.read()?;
        let mut counts = Vec::new();
        target.write(|tx| {
            visit_tables(&mut Emptiness(tx.txn()))?;
            visit_tables(&mut Copy {
                from: &source,
                to: tx.txn(),
                counts: &mut counts,
            })
        })?;
        let written = target.read()?;
        visit_tables(&mut Compare {
            left: &source,
            right: &written,
        })?;
        Ok(counts)
    }
}

/// Refuses a target that already holds records: a copy never merges.
struct Emptiness<'t>(&'t WriteTxn);

impl TableVisitor for Emptiness<'_> {
    fn visit<K: KeyKind, V: Kind>(&mut self, def: TableDef<K, V>) -> Result<(), StoreError> {
        // `meta` holds the schema version of a freshly opened store.
        if def.name() == "meta" {
            return Ok(());
        }
        // One entry is enough to refuse; a count would read them all.
        if self.0.open_table(def)?.iter()?.next().transpose()?.is_some() {
            return Err(StoreError::Backend(format!(
                "the target store is not empty (table {} has entries); copy only into a new store",
                def.name()
            )));
        }
        Ok(())
    }
}

struct Copy<'a> {
    from: &'a ReadTxn,
    to: &'a WriteTxn,
    counts: &'a mut Vec<TableCount>,
}

impl TableVisitor for Copy<'_> {
    fn visit<K: KeyKind, V: Kind>(&mut self, def: TableDef<K, V>) -> Result<(), StoreError> {
        let from = self.from.open_table(def)?;
        let mut to = self.to.open_table(def)?;
        let mut entries = 0;
        for entry in from.iter()? {
            let (k, v) = entry?;
            to.insert(k.value(), v.value())?;
            entries += 1;
        }
        self.counts.push(TableCount {
            table: def.name(),
            entries,
        });
        Ok(())
    }
}

struct Compare<'a> {
    left: &'a ReadTxn,
    right: &'a ReadTxn,
}

impl TableVisitor for Compare<'_> {
    fn visit<K: KeyKind, V: Kind>(&mut self, def: TableDef<K, V>) -> Result<(), StoreError> {
        let (left, right) = (self.left.open_table(def)?, self.right.open_table(def)?);
        let mut right_entries = right.iter()?;
        for entry in left.iter()? {
            let (k, v) = entry?;
            let same = match right_entries.next().transpose()? {
                Some((rk, rv)) => {
                    K::encode(k.value()) == K::encode(rk.value()) && V::encode(v.value()) == V::encode(rv.value())
                }
                None => false,
            };
            if !same {
                return Err(mismatch(def.name()));
            }
        }
        if right_entries.next().transpose()?.is_some() {
            return Err(mismatch(def.name()));
        }
        Ok(())
    }
}

fn mismatch(table: &str) -> StoreError {
    StoreError::Backend(format!(
        "verification failed: table {table} differs between source and target"
    ))
}
