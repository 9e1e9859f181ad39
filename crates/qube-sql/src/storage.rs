//! How tables and indexes live in the MVCC keyspace.
//!
//! ```text
//! 0x10 ord(table_id) ord(rowid)                      → row (types::encoding)
//! 0x11 ord(index_id) key-encoded columns [ord(rowid)] → rowid:u64 BE
//! ```
//!
//! `ord` is an order-preserving, self-delimiting encoding of a u64 (see
//! `OrdU64`): a tag byte, then 0–8 bytes. It is short where the numbers
//! are: object ids (from 16384), counter rowids (from 1) and key rowids of
//! small integers (around 2^63, both sides). A fixed-width u64 of a small
//! number is mostly zero bytes, which the MVCC layer doubles
//! (`qube_txn::keys` escapes 0x00 as 0x00 0xFF): `bench sql`'s row key
//! (table 16384-ish, rowid of an integer key below 2^24) was 17 bytes and
//! 40 as an MVCC version key; it is 8 and 17 (19 with key layout 2's
//! escaped keys, below). With the row's value, a cell header and a slot,
//! a row took ~84 bytes of a leaf and takes ~54 (with the 4-byte cell
//! header of page format 4 and the short integers
//! of `types::encoding`'s rows), so a lookup of rows scattered over the
//! table meets a third fewer pages. Index keys encode integer columns
//! with the same `OrdU64` (`encode_key`).
//!
//! Both keyspaces are prefix-free (every part of a key delimits itself,
//! and a unique index's key without the rowid differs from one with it in
//! the NULL column's tag), which lets `qube_txn` store their keys in its
//! version keys as they are (`qube_txn::keys::PREFIX_FREE`), without its
//! escape and terminator: `bench sql`'s row version key is 17 bytes, and an
//! index-only scan reads an entry's key without unescaping it.
//!
//! Key layout 1 (fixed-width big-endian ids and rowids) was never
//! recorded; layout 2 (`OrdU64`) and 3 (unescaped in MVCC) are recorded at
//! creation, and a data directory of another layout is refused at open
//! (`check_key_layout`), not misread.
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
pub use crate::types::encoding::OrdU64;
use crate::types::encoding::{decode_row, encode_key, encode_row};

const TABLE: u8 = 0x10;
const INDEX: u8 = 0x11;

/// A table's or an index's key prefix, or a row key: at most a tag and two
/// `OrdU64`s, on the stack.
#[derive(Clone, Copy)]
pub struct KeyBytes {
    len: u8,
    buf: [u8; 19],
}

impl KeyBytes {
    fn new(tag: u8, parts: &[OrdU64]) -> KeyBytes {
        let mut k = KeyBytes { len: 1, buf: [0; 19] };
        k.buf[0] = tag;
        for p in parts {
            // All nine bytes (a fixed-size copy; the buffer has room for
            // a tag and two), of which the encoding's length counts.
            let at = k.len as usize;
            k.buf[at..at + 9].copy_from_slice(&p.buf);
            k.len += p.len;
        }
        k
    }
}

impl std::ops::Deref for KeyBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

impl AsRef<[u8]> for KeyBytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

/// The prefix of every row key of `table`.
pub fn table_prefix(table: u64) -> KeyBytes {
    KeyBytes::new(TABLE, &[OrdU64::new(table)])
}

pub fn row_key(table: u64, rowid: u64) -> KeyBytes {
    KeyBytes::new(TABLE, &[OrdU64::new(table), OrdU64::new(rowid)])
}

/// The prefix of every entry key of `index`.
pub fn index_prefix(index: u64) -> KeyBytes {
    KeyBytes::new(INDEX, &[OrdU64::new(index)])
}

/// The key layout this build writes: 3 since `qube_txn` stores the keys
/// of prefix-free keyspaces (these, 0x10 and 0x11) unescaped in its
/// version keys (`qube_txn::keys::PREFIX_FREE`); 2 since `OrdU64`; 1,
/// never recorded: fixed-width big-endian ids and rowids.
pub const KEY_LAYOUT: u32 = 3;
/// Where an instance records its key layout: outside MVCC, beside the
/// catalog's object-id counter (`qube_catalog`'s 0x03 keys).
const KEY_LAYOUT_KEY: &[u8] = b"\x03kl";

/// Called before the catalog opens: a new instance records `KEY_LAYOUT`;
/// an existing one must have recorded it. Data of another layout would be
/// misread (every row key differs), so it is refused with a clear error.
pub fn check_key_layout(engine: &dyn qube_storage::Engine) -> Result<()> {
    match engine.get(KEY_LAYOUT_KEY)? {
        Some(v) if v == KEY_LAYOUT.to_be_bytes() => Ok(()),
        Some(v) => Err(Error::user(
            "XX000",
            format!(
                "this data directory has key layout {}; this build of QubeDB reads layout \
                 {KEY_LAYOUT} only",
                <[u8; 4]>::try_from(v.as_slice()).map_or_else(
                    |_| format!("record {v:02x?}"),
                    |b| u32::from_be_bytes(b).to_string()
                )
            ),
        )),
        // The catalog's object-id counter exists once any object does: data
        // without a layout record is then of layout 1.
        None if engine.get(qube_catalog::NEXT_ID_KEY)?.is_some() => Err(Error::user(
            "XX000",
            "this data directory was written by an earlier development build of QubeDB \
             (fixed-width row keys, key layout 1); this build reads key layout 3 only, \
             and there is no upgrade path: dump it with the earlier build and reload it",
        )),
        None => engine.set(KEY_LAYOUT_KEY, &KEY_LAYOUT.to_be_bytes()),
    }
}

/// The entry key of `values` in an index; `unique` keys omit the rowid
/// unless a value is NULL.
pub fn index_key(index: u64, values: &[Value], rowid: u64, unique: bool) -> Vec<u8> {
    let mut k = Vec::with_capacity(10 + 10 * values.len() + 9);
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
        OrdU64::new(rowid).put(k);
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
pub fn key_row_key(table: u64, v: &Value) -> Result<KeyBytes> {
    key_rowid(v)
        .map(|r| row_key(table, r))
        .ok_or_else(|| Error::Internal(format!("{v:?} is not a key rowid")))
}

/// The rowid of a row key (after its tag and table id).
pub fn rowid_of(key: &[u8]) -> Result<u64> {
    let bad = || Error::Internal("bad row key".into());
    let (_, t) = key.get(1..).and_then(OrdU64::decode).ok_or_else(bad)?;
    let rest = &key[1 + t..];
    match OrdU64::decode(rest) {
        Some((rowid, n)) if n == rest.len() => Ok(rowid),
        _ => Err(bad()),
    }
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

/// The longest buffer a dropped `RangeCursor` keeps for the thread's next,
/// and how many the thread keeps.
const SPARE_KEY_MAX: usize = 256;
const SPARE_KEYS_KEPT: usize = 8;

std::thread_local! {
    /// Buffers of the bounds and last key of the `RangeCursor`s this
    /// thread dropped, emptied: a prepared query's scan is opened and
    /// dropped per execution, and would allocate its three each time.
    static SPARE_KEYS: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// An empty buffer, the thread's spare if it has one.
fn spare_key() -> Vec<u8> {
    SPARE_KEYS.try_with(|s| s.try_borrow_mut().ok()?.pop()).ok().flatten().unwrap_or_default()
}

/// Every key that starts with `prefix` (`KeyRange::prefix`), in the
/// thread's spare buffers (see `RangeCursor`'s drop).
pub fn prefix_range(prefix: &[u8]) -> KeyRange {
    let mut start = spare_key();
    start.extend_from_slice(prefix);
    let mut end = spare_key();
    let end = match qube_storage::prefix_successor_into(prefix, &mut end) {
        true => Bound::Excluded(end),
        false => Bound::Unbounded,
    };
    KeyRange { start: Bound::Included(start), end }
}

impl Drop for RangeCursor {
    fn drop(&mut self) {
        let keep = |b: Vec<u8>| {
            if b.capacity() == 0 || b.capacity() > SPARE_KEY_MAX {
                return;
            }
            let _ = SPARE_KEYS.try_with(|s| {
                if let Ok(mut s) = s.try_borrow_mut()
                    && s.len() < SPARE_KEYS_KEPT
                {
                    let mut b = b;
                    b.clear();
                    s.push(b);
                }
            });
        };
        for bound in [&mut self.range.start, &mut self.range.end] {
            if let Bound::Included(b) | Bound::Excluded(b) =
                std::mem::replace(bound, Bound::Unbounded)
            {
                keep(b);
            }
        }
        keep(std::mem::take(&mut self.last));
    }
}

impl RangeCursor {
    pub fn new(range: KeyRange, direction: Direction) -> RangeCursor {
        RangeCursor { range, direction, last: spare_key(), done: false, resume: false }
    }

    /// Every row of a table, in rowid order.
    pub fn table(table: u64) -> RangeCursor {
        RangeCursor::new(prefix_range(&table_prefix(table)), Direction::Forward)
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
            // A key the scan has decoded, or that its version key holds as
            // it is, is used where it is.
            let k = match k.borrowed() {
                Some(k) => k,
                None => {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::encoding::{HALF, QUARTER};
    use qube_storage::Engine;

    /// Numbers around every boundary of `OrdU64`'s ranges and payload
    /// lengths, and a spread of others.
    fn samples() -> Vec<u64> {
        let mut v = vec![0, 1, 2, 255, 256, 16384, 1_000_000, u64::MAX, u64::MAX - 1];
        for c in [QUARTER, HALF] {
            for d in 0..300u64 {
                v.extend([c.wrapping_sub(d), c.wrapping_add(d)]);
            }
        }
        for bits in 1..64 {
            let p = 1u64 << bits;
            for c in [p, HALF.wrapping_add(p), HALF.wrapping_sub(p)] {
                v.extend([c.wrapping_sub(1), c, c.wrapping_add(1)]);
            }
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..5000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.push(x);
            v.push(x >> (x % 64));
        }
        v.sort_unstable();
        v.dedup();
        v
    }

    #[test]
    fn ord_u64_round_trips_and_preserves_order() {
        let v = samples();
        let enc: Vec<Vec<u8>> = v.iter().map(|&n| OrdU64::new(n).as_bytes().to_vec()).collect();
        for (n, e) in v.iter().zip(&enc) {
            assert_eq!(OrdU64::decode(e), Some((*n, e.len())), "{n:#x}");
            // Self-delimiting: trailing bytes are not read.
            let mut longer = e.clone();
            longer.extend_from_slice(&[0, 0xFF, 7]);
            assert_eq!(OrdU64::decode(&longer), Some((*n, e.len())));
            // Followed by eight bytes or more (decoded by one wide load):
            // the bytes after it are still not read.
            for fill in [0u8, 0xAB, 0xFF] {
                let mut padded = e.clone();
                padded.extend_from_slice(&[fill; 9]);
                assert_eq!(OrdU64::decode(&padded), Some((*n, e.len())), "{n:#x} {fill:#x}");
            }
            // No zero bytes where the MVCC layer would escape them, for
            // the numbers keys mostly hold.
            if *n < 256 || n.abs_diff(HALF) < 256 {
                assert!(!e.contains(&0), "{n:#x} → {e:02x?}");
            }
        }
        for (w, n) in enc.windows(2).zip(v.windows(2)) {
            assert!(w[0] < w[1], "{:#x} → {:02x?} !< {:#x} → {:02x?}", n[0], w[0], n[1], w[1]);
            assert!(!w[1].starts_with(&w[0]), "{:02x?} is a prefix of {:02x?}", w[0], w[1]);
        }
        // The figures in the doc comment.
        let k = |i: i64| OrdU64::new(key_rowid(&Value::Int8(i)).unwrap()).as_bytes().to_vec();
        assert_eq!(k(0), [0x41]);
        assert_eq!(k(1), [0x42, 1]);
        assert_eq!(k(1_000_000), [0x44, 0x0F, 0x42, 0x40]);
        assert_eq!(k(-1), [0x40]);
        assert_eq!(OrdU64::new(1).as_bytes(), [0x21, 1]);
        assert_eq!(OrdU64::new(u64::MAX).as_bytes().len(), 9);
    }

    #[test]
    fn ord_u64_rejects_what_it_never_writes() {
        for bad in [&[][..], &[0x00], &[0x1F], &[0x29], &[0x37], &[0x4A], &[0xFF]] {
            assert_eq!(OrdU64::decode(bad), None, "{bad:02x?}");
        }
        // Truncated payloads.
        assert_eq!(OrdU64::decode(&[0x23, 1, 2]), None);
        assert_eq!(OrdU64::decode(&[0x3E, 1]), None);
        // Payloads outside their tag's range.
        assert_eq!(OrdU64::decode(&[0x28, 0x40, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(OrdU64::decode(&[0x49, 0x80, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(OrdU64::decode(&[0x38, 0xBF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]), None);
        // The same, with more bytes after them.
        assert_eq!(OrdU64::decode(&[0x28, 0x40, 0, 0, 0, 0, 0, 0, 0, 1, 2]), None);
        assert_eq!(OrdU64::decode(&[0x21, 0x40, 0, 0, 0, 0, 0, 0, 0, 1, 2]), Some((0x40, 2)));
    }

    #[test]
    fn row_keys_decode_and_sort_by_table_then_rowid() {
        let tables = [1u64, 255, 256, 16384, 16640, 1 << 40];
        let rowids = [1u64, 2, 256, HALF - 1, HALF, HALF + 1_000_000, u64::MAX];
        let mut keys = Vec::new();
        for &t in &tables {
            for &r in &rowids {
                let k = row_key(t, r);
                assert_eq!(rowid_of(&k).unwrap(), r);
                assert!(k.starts_with(&table_prefix(t)));
                for &o in tables.iter().filter(|&&o| o != t) {
                    assert!(!k.starts_with(&table_prefix(o)), "{t} {r} under {o}");
                }
                keys.push(k.to_vec());
            }
        }
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        assert!(rowid_of(&[TABLE, 0x21]).is_err());
        assert!(rowid_of(&[TABLE, 0x21, 5, 0x21, 1, 0]).is_err());
        let ik = index_key(16385, &[Value::Int4(7)], 9, false);
        // (An index-only scan decodes the columns after the prefix.)
        assert!(ik.starts_with(&index_prefix(16385)));
    }

    #[test]
    fn layout_is_recorded_and_checked() {
        let e = qube_storage::MemoryEngine::new();
        check_key_layout(&e).unwrap();
        check_key_layout(&e).unwrap();
        let old = qube_storage::MemoryEngine::new();
        old.set(qube_catalog::NEXT_ID_KEY, &16400u64.to_be_bytes()).unwrap();
        let err = check_key_layout(&old).unwrap_err().to_string();
        assert!(err.contains("key layout 1"), "{err}");
        let other = qube_storage::MemoryEngine::new();
        other.set(KEY_LAYOUT_KEY, &9u32.to_be_bytes()).unwrap();
        let err = check_key_layout(&other).unwrap_err().to_string();
        assert!(err.contains("has key layout 9;"), "{err}");
    }
}
