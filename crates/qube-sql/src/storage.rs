//! How tables and indexes live in the MVCC keyspace.
//!
//! ```text
//! 0x10 table_id:u64 BE rowid:u64 BE                    → row (types::encoding)
//! 0x11 index_id:u64 BE key-encoded columns [rowid BE]   → rowid:u64 BE
//! ```
//!
//! Every row has a rowid, unique in its table. A unique index's key is its
//! columns alone, so a second row with the same key finds the first
//! (`get_for_update` locks the key, so two concurrent inserts serialize
//! and the second sees the first's commit); a key with a NULL column, and
//! every key of a non-unique index, carries the rowid too.
//!
//! # Two kinds of rowid
//!
//! **Counter rowids** (every table without an integer primary key): handed
//! out by the database's in-memory counters (`RowIds`, initialised from
//! the largest rowid in the table at first use after open; never reused
//! while the process runs). The primary key, if any, is an ordinary unique
//! index with entries of its own, so a lookup by key descends twice (the
//! entry, then the row).
//!
//! **Key rowids** (SQLite's rowid alias): a table whose primary key is one
//! column of type smallint, integer or bigint, and whose definition says so
//! (`TableDef::rowid_key`), keys its rows by that column's value:
//!
//! ```text
//! rowid = (value as i64 as u64) ^ (1 << 63)      (order-preserving: i64::MIN → 0)
//! ```
//!
//! so rowid order is key order, and a lookup by key is one descent to the
//! row. The primary-key index stays in the catalog (pg_index, EXPLAIN's
//! `Index Scan using t_pkey`, ON CONFLICT ON CONSTRAINT) but has no
//! entries: the executor turns every lookup on it into a lookup of row
//! keys (`RowidKey` names the index and column, `rowid_key` finds it):
//!
//! - equality, IN lists and ranges on the key, ORDER BY the key, joins
//!   probing by the key, and foreign keys that reference it read
//!   `0x10 table rowid` directly (`exec::stream::lookup`);
//! - INSERT and COPY take no counter rowid: the unique check is
//!   `get_for_update` of the row key itself (23505 as for any unique
//!   index), which also locks it, so two concurrent inserts of one key
//!   serialize and the second one's secondary entries (which carry the
//!   rowid) cannot meet the first's;
//! - an UPDATE that changes the key moves the row: the old row key is
//!   deleted, the new one checked and written, and every secondary entry
//!   rewritten (each stores or ends with the rowid);
//! - the foreign-key check of a referencing row locks the parent's row
//!   key (the counter layout locks the parent's index entry): a
//!   concurrent UPDATE of the parent row waits for it, where PostgreSQL's
//!   FOR KEY SHARE would let a non-key update through;
//! - secondary indexes are unchanged: their entries hold the rowid.
//!
//! The flag is set by CREATE TABLE when the primary key qualifies, and by
//! ALTER TABLE ADD PRIMARY KEY, which then moves the existing rows to
//! their key rowids and rebuilds the table's other indexes (so that a
//! table loaded first and keyed after, as `pgbench -i` does, gets the
//! layout too). It is cleared, leaving every row where it is, when the
//! key stops qualifying: DROP CONSTRAINT of the key, DROP COLUMN of its
//! column, ALTER COLUMN TYPE to a non-integer type (the key index then
//! gets its entries built). A key rowid is a valid counter rowid, so the
//! rows need not move; the counters continue after the largest. ALTER
//! COLUMN TYPE between integer types keeps the flag and moves the rows
//! whose value changed (a USING expression). TRUNCATE keeps it. CREATE
//! TABLE AS makes no primary key. Definitions written before the flag
//! existed read as false (serde default), so existing data directories
//! keep the counter layout and need no conversion.

use std::collections::HashMap;
use std::ops::Bound;

use parking_lot::Mutex;
use qube_catalog::{ConstraintKind, TableDef};
use qube_common::types::DataType;
use qube_common::{Error, Result};
use qube_storage::{Direction, KeyRange};
use qube_txn::Transaction;

use crate::types::Value;
use crate::types::encoding::{decode_row, encode_key, encode_row};

const TABLE: u8 = 0x10;
const INDEX: u8 = 0x11;

pub fn table_prefix(table: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = TABLE;
    k[1..].copy_from_slice(&table.to_be_bytes());
    k
}

pub fn row_key(table: u64, rowid: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[..9].copy_from_slice(&table_prefix(table));
    k[9..].copy_from_slice(&rowid.to_be_bytes());
    k
}

pub fn index_prefix(index: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = INDEX;
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

/// The entry key of `values` in an index; `unique` keys omit the rowid
/// unless a value is NULL.
pub fn index_key(index: u64, values: &[Value], rowid: u64, unique: bool) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + 10 * values.len() + 8);
    index_key_into(index, values, rowid, unique, &mut k);
    k
}

/// As `index_key`, into `k` (cleared first).
pub fn index_key_into<'v>(
    index: u64,
    values: impl IntoIterator<Item = &'v Value>,
    rowid: u64,
    unique: bool,
    k: &mut Vec<u8>,
) {
    k.clear();
    k.extend_from_slice(&index_prefix(index));
    let mut has_null = false;
    for v in values {
        has_null |= v.is_null();
        encode_key(v, k);
    }
    if !unique || has_null {
        k.extend_from_slice(&rowid.to_be_bytes());
    }
}

/// The primary key that keys a table's rows: its index (which has no
/// entries) and its column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowidKey {
    pub index: u64,
    pub column: usize,
}

/// The key that keys `def`'s rows, if the table has key rowids (its flag
/// is set and its primary key still qualifies).
pub fn rowid_key(def: &TableDef) -> Option<RowidKey> {
    if !def.rowid_key {
        return None;
    }
    qualifying_key(def)
}

/// `def`'s primary key if it could key the rows: one column of type
/// smallint, integer or bigint (whatever the flag says).
pub fn qualifying_key(def: &TableDef) -> Option<RowidKey> {
    def.constraints.iter().find_map(|c| match &c.kind {
        ConstraintKind::PrimaryKey { columns, index } if columns.len() == 1 => {
            let column = def.columns.iter().position(|x| x.name == columns[0])?;
            is_key_type(&def.columns[column].data_type)
                .then_some(RowidKey { index: *index, column })
        }
        _ => None,
    })
}

/// The types whose values can be rowids.
pub fn is_key_type(t: &DataType) -> bool {
    matches!(t, DataType::SmallInt | DataType::Integer | DataType::BigInt)
}

/// The rowid of a primary-key value (None for NULL and non-integers):
/// order-preserving, `i64::MIN` → 0, 0 → 2^63, `i64::MAX` → `u64::MAX`.
pub fn key_rowid(v: &Value) -> Option<u64> {
    let i = match v {
        Value::Int2(x) => i64::from(*x),
        Value::Int4(x) => i64::from(*x),
        Value::Int8(x) => *x,
        _ => return None,
    };
    Some((i as u64) ^ (1 << 63))
}

/// The row key of the key rowid of `v`; an error for a value that cannot
/// be one (the caller has checked NOT NULL and the type).
pub fn key_row_key(table: u64, v: &Value) -> Result<[u8; 17]> {
    key_rowid(v)
        .map(|r| row_key(table, r))
        .ok_or_else(|| Error::Internal(format!("{v:?} is not a key rowid")))
}

pub fn rowid_of(key: &[u8]) -> Result<u64> {
    key.get(9..17)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| Error::Internal("bad row key".into()))
}

/// Every visible row of a table: (rowid, values).
pub fn scan(txn: &mut Transaction, table: u64, ncols: usize) -> Result<Vec<(u64, Vec<Value>)>> {
    let pairs = txn.scan(KeyRange::prefix(&table_prefix(table)), Direction::Forward)?;
    let mut out = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        let mut row = Vec::with_capacity(ncols);
        decode_row(&v, ncols, &mut row)?;
        out.push((rowid_of(&k)?, row));
    }
    Ok(out)
}

/// A resumable scan of a key range in either direction: each batch
/// streams the next pairs from the MVCC layer and stops after the
/// requested number, so a LIMIT or an ordered index scan reads only the
/// keys it returns (plus one batch), and a full scan holds one batch of
/// rows at a time. A batch after the first seeks past the last key seen.
pub struct RangeCursor {
    range: KeyRange,
    direction: Direction,
    last: Vec<u8>,
    done: bool,
    /// A batch ended at `last` and the range does not yet start after it:
    /// moved at the next batch, so that a LIMIT whose batch was all it
    /// wanted never pays for it.
    resume: bool,
}

impl RangeCursor {
    pub fn new(range: KeyRange, direction: Direction) -> RangeCursor {
        RangeCursor { range, direction, last: Vec::new(), done: false, resume: false }
    }

    /// Every row of a table, in rowid order.
    pub fn table(table: u64) -> RangeCursor {
        RangeCursor::new(KeyRange::prefix(&table_prefix(table)), Direction::Forward)
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Calls `f(value)` for up to `n` (at least one) more visible pairs;
    /// returns how many. Only the last pair's key is decoded (to resume
    /// after it).
    pub fn next_batch(
        &mut self,
        txn: &mut Transaction,
        n: usize,
        mut f: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<usize> {
        if self.done {
            return Ok(0);
        }
        self.resume_after_last();
        let n = n.max(1);
        let mut count = 0;
        let last = &mut self.last;
        txn.scan_each_lazy(&self.range, self.direction, |k, v| {
            f(v)?;
            count += 1;
            if count < n {
                return Ok(true);
            }
            k.user_key_into(last)?;
            Ok(false)
        })?;
        self.done = count < n;
        self.resume = !self.done;
        Ok(count)
    }

    /// After a batch that ended at `last`: moves the bound the scan
    /// resumes from (the start forward, the end in reverse) to just past
    /// it, into the bound's own buffer.
    fn resume_after_last(&mut self) {
        if !std::mem::take(&mut self.resume) {
            return;
        }
        let bound = match self.direction {
            Direction::Forward => &mut self.range.start,
            Direction::Reverse => &mut self.range.end,
        };
        let key = match std::mem::replace(bound, Bound::Unbounded) {
            Bound::Included(mut k) | Bound::Excluded(mut k) => {
                k.clear();
                k.extend_from_slice(&self.last);
                k
            }
            Bound::Unbounded => self.last.clone(),
        };
        *bound = Bound::Excluded(key);
    }
}

impl RangeCursor {
    /// As `next_batch`, with each pair's user key: `f(key, value)`. `key`
    /// and `from` are buffers for the keys (each key is decoded from the
    /// one before, `ScanKey::user_key_after`).
    pub fn next_batch_keyed(
        &mut self,
        txn: &mut Transaction,
        n: usize,
        (key, from): (&mut Vec<u8>, &mut Vec<u8>),
        mut f: impl FnMut(&[u8], &[u8]) -> Result<()>,
    ) -> Result<usize> {
        if self.done {
            return Ok(0);
        }
        self.resume_after_last();
        from.clear();
        let n = n.max(1);
        let mut count = 0;
        let last = &mut self.last;
        txn.scan_each_lazy(&self.range, self.direction, |k, v| {
            // A key the scan has decoded already is used where it is.
            let k = match k {
                qube_txn::ScanKey::User(k) => k,
                k @ qube_txn::ScanKey::Version(_) => {
                    k.user_key_after(from, key)?;
                    key.as_slice()
                }
            };
            f(k, v)?;
            count += 1;
            if count < n {
                return Ok(true);
            }
            last.clear();
            last.extend_from_slice(k);
            Ok(false)
        })?;
        self.done = count < n;
        self.resume = !self.done;
        Ok(count)
    }
}

/// Decodes a row pair of a table scan: (rowid, values) into `row` (cleared first).
pub fn decode_pair(key: &[u8], value: &[u8], ncols: usize, row: &mut Vec<Value>) -> Result<u64> {
    row.clear();
    decode_row(value, ncols, row)?;
    rowid_of(key)
}

/// Locks the row at `rowid` for a change and reads its newest committed
/// version (`Transaction::get_for_update`): at READ COMMITTED whatever
/// committed last, after waiting for a writer that holds it; at REPEATABLE
/// READ and SERIALIZABLE the snapshot's, or 40001 if a newer one
/// committed. None if it has been deleted.
pub fn lock_row(
    txn: &mut Transaction,
    table: u64,
    rowid: u64,
    ncols: usize,
) -> Result<Option<Vec<Value>>> {
    decoded(txn.get_for_update(&row_key(table, rowid))?, ncols)
}

/// One row by rowid, if visible.
pub fn get_row(
    txn: &mut Transaction,
    table: u64,
    rowid: u64,
    ncols: usize,
) -> Result<Option<Vec<Value>>> {
    decoded(txn.get(&row_key(table, rowid))?, ncols)
}

fn decoded(stored: Option<Vec<u8>>, ncols: usize) -> Result<Option<Vec<Value>>> {
    let Some(v) = stored else { return Ok(None) };
    let mut row = Vec::with_capacity(ncols);
    decode_row(&v, ncols, &mut row)?;
    Ok(Some(row))
}

pub fn put_row(
    txn: &mut Transaction,
    table: u64,
    rowid: u64,
    row: &[Value],
    buf: &mut Vec<u8>,
) -> Result<()> {
    buf.clear();
    encode_row(row, buf);
    txn.set(&row_key(table, rowid), buf)
}

/// As `put_row`, for a rowid just taken from the counters (an INSERT):
/// no other transaction can hold its key (`Transaction::set_fresh`).
pub fn insert_row(
    txn: &mut Transaction,
    table: u64,
    rowid: u64,
    row: &[Value],
    buf: &mut Vec<u8>,
) -> Result<()> {
    buf.clear();
    encode_row(row, buf);
    txn.set_fresh(&row_key(table, rowid), buf)
}

pub fn delete_row(txn: &mut Transaction, table: u64, rowid: u64) -> Result<()> {
    txn.delete(&row_key(table, rowid))
}

/// Deletes every row and index entry of a table (DROP, TRUNCATE).
pub fn clear_prefix(txn: &mut Transaction, prefix: &[u8]) -> Result<u64> {
    let pairs = txn.scan(KeyRange::prefix(prefix), Direction::Forward)?;
    let n = pairs.len() as u64;
    for (k, _) in pairs {
        txn.delete(&k)?;
    }
    Ok(n)
}

/// Rowid counters per table.
#[derive(Default)]
pub struct RowIds {
    next: Mutex<HashMap<u64, u64>>,
}

impl RowIds {
    /// `n` fresh rowids for `table` (the first returned).
    pub fn take(&self, txn: &mut Transaction, table: u64, n: u64) -> Result<u64> {
        let mut m = self.next.lock();
        let next = match m.get(&table) {
            Some(v) => *v,
            None => {
                // The largest rowid any transaction can have written: the
                // newest version of the last key, committed or not, is not
                // visible to us, so take the last visible key and stay clear
                // of concurrent writers by never reusing a counter value in
                // this process (counters start after every visible row).
                let mut last = None;
                txn.scan_each(
                    KeyRange::prefix(&table_prefix(table)),
                    Direction::Reverse,
                    |k, _| {
                        last = Some(rowid_of(k)?);
                        Ok(false)
                    },
                )?;
                // After a table with key rowids lost its key, the largest
                // may be near u64::MAX.
                match last {
                    None => 1,
                    Some(r) => r.checked_add(1).ok_or_else(exhausted)?,
                }
            }
        };
        m.insert(table, next.checked_add(n).ok_or_else(exhausted)?);
        Ok(next)
    }

    pub fn forget(&self, table: u64) {
        self.next.lock().remove(&table);
    }
}

fn exhausted() -> Error {
    Error::user("54000", "the table's row identifiers are exhausted")
}

/// A cheap estimate of a table's rows for EXPLAIN: the span of its visible
/// rowids (counter rowids are dense from 1, key rowids as dense as the
/// keys, until rows are deleted), or 0.
pub fn estimate_rows(txn: &mut Transaction, table: u64) -> Result<u64> {
    let mut ends = [None, None];
    for (end, dir) in ends.iter_mut().zip([Direction::Forward, Direction::Reverse]) {
        txn.scan_each(KeyRange::prefix(&table_prefix(table)), dir, |k, _| {
            *end = Some(rowid_of(k)?);
            Ok(false)
        })?;
    }
    Ok(match ends {
        [Some(first), Some(last)] => last.saturating_sub(first).saturating_add(1),
        _ => 0,
    })
}
