//! Operators that spill to temporary files beyond `work_mem`: the sort
//! (external merge sort) and the hash aggregate (partitioned by group).
//!
//! # Memory accounting
//!
//! `work_mem` (a session setting, 4 MB by default as in PostgreSQL) bounds
//! the bytes one sort or one hash aggregate holds. Sizes are estimates
//! (`row_size`: the `Value`s themselves plus their heap payloads), counted
//! as rows arrive, so an operator never holds much more than `work_mem`.
//! The other materialising operators (joins, set operations, window
//! partitions, DISTINCT) are bounded by the query's value limit instead
//! (`Ctx::charge`, 53200).
//!
//! # Temporary files
//!
//! A file per sorted run or aggregate partition, in the database
//! directory's `tmp/` (the system's temporary directory for a database in
//! memory), created unnamed (`O_TMPFILE` where the OS has it) so that
//! nothing is left behind when the statement ends or the process dies.
//! Records are rows in the table row format (`types::encoding`), each
//! preceded by its length as a varint:
//!
//! ```text
//! file   := record*
//! record := len:varint row          (row := 0x01 ncols:varint value*)
//! ```
//!
//! # External sort
//!
//! Rows are buffered with their evaluated sort keys; when the buffer
//! passes `work_mem` it is sorted and written out as a run (keys first,
//! then the row, in one record). At the end, with no run written, the
//! buffer is sorted in memory; otherwise the last buffer becomes a run too
//! and the runs are merged through a binary heap, at most `FAN_IN` at a
//! time (more runs are first merged into longer ones). Ties keep input
//! order (runs are merged in the order they were written, and each is
//! sorted stably), so the sort is stable as the in-memory one is.
//!
//! With a LIMIT (top-N) the buffer is cut back to the best `n` rows each
//! time it reaches `2n`, so it holds O(n) rows whatever the input's size.
//!
//! # Hash aggregate
//!
//! `exec::aggregate` keeps one entry per group. Once its groups pass
//! `work_mem`, a row of a group not yet in memory is written to one of
//! `PARTITIONS` files chosen by a hash of its group key; the groups in
//! memory finish as usual. Each partition file is then aggregated the same
//! way (its groups are disjoint from every other's), with the hash salted
//! by the depth so that a partition that is still too large splits again.

use std::cell::{Cell, RefCell};
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use qube_common::{Error, Result};

use super::eval::eval;
use super::stream::Stream;
use super::{Ctx, Row, cmp_sort_keys};
use crate::plan::SortKey;
use crate::types::Value;
use crate::types::encoding::{decode_row, encode_row_parts, get_varint, put_varint};

/// PostgreSQL's default `work_mem`: 4 MB.
pub const DEFAULT_WORK_MEM: usize = 4 << 20;
/// Runs merged at once (each holds a read buffer).
const FAN_IN: usize = 64;
/// Files a hash aggregate's overflow is split into.
pub const PARTITIONS: usize = 16;

/// Temporary files created and bytes written to them since the process
/// started (for monitoring and tests).
static FILES: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

/// (files, bytes) spilled since the process started.
pub fn spilled() -> (u64, u64) {
    (FILES.load(Relaxed), BYTES.load(Relaxed))
}

thread_local! {
    static WORK_MEM: Cell<usize> = const { Cell::new(DEFAULT_WORK_MEM) };
    static TEMP_DIR: RefCell<Option<Arc<Path>>> = const { RefCell::new(None) };
}

/// Sets the statement's `work_mem` (bytes) and where its temporary files
/// go (None: the system's temporary directory). Statements run
/// synchronously on the calling thread, so a session sets these before
/// each one.
pub fn set_env(work_mem: usize, temp_dir: Option<&Arc<Path>>) {
    WORK_MEM.with(|w| w.set(work_mem));
    TEMP_DIR.with(|t| {
        let mut t = t.borrow_mut();
        if t.as_ref() != temp_dir {
            *t = temp_dir.cloned();
        }
    });
}

/// The running statement's `work_mem` in bytes.
pub fn work_mem() -> usize {
    WORK_MEM.with(|w| w.get())
}

/// Parses a memory setting as PostgreSQL does: an integer (or decimal)
/// number of kB, or a number with a unit B, kB, MB, GB or TB; the result
/// in bytes, rounded to whole kB and within `min_kb ..= max_kb`
/// (22023 otherwise).
pub fn parse_memory(name: &str, value: &str, min_kb: u64, max_kb: u64) -> Result<usize> {
    let invalid = || {
        Error::user(
            "22023",
            format!(
                "invalid value for parameter \"{name}\": \"{value}\" (valid units are \
                 \"B\", \"kB\", \"MB\", \"GB\" and \"TB\")"
            ),
        )
    };
    let (n, unit) = number_and_unit(value).ok_or_else(invalid)?;
    let kb_per = match unit {
        "" | "kB" => 1.0,
        "B" => 1.0 / 1024.0,
        "MB" => 1024.0,
        "GB" => 1024.0 * 1024.0,
        "TB" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(invalid()),
    };
    let kb = (n * kb_per).round();
    if !kb.is_finite() || kb < min_kb as f64 || kb > max_kb as f64 {
        return Err(Error::user(
            "22023",
            format!(
                "{} kB is outside the valid range for parameter \"{name}\" ({min_kb} .. {max_kb})",
                kb as i64
            ),
        ));
    }
    Ok(kb as usize * 1024)
}

/// A setting's number and the unit after it (`4MB`, `1.5 s`, `100`).
pub(crate) fn number_and_unit(value: &str) -> Option<(f64, &str)> {
    let v = value.trim();
    let split = v.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'));
    let (num, unit) = match split {
        Some(i) => (&v[..i], v[i..].trim()),
        None => (v, ""),
    };
    Some((num.parse().ok()?, unit))
}

/// A memory setting as SHOW prints it: the largest unit that divides it.
pub fn format_memory(bytes: usize) -> String {
    let kb = bytes / 1024;
    for (unit, size) in [("TB", 1usize << 30), ("GB", 1 << 20), ("MB", 1 << 10)] {
        if kb >= size && kb.is_multiple_of(size) {
            return format!("{}{unit}", kb / size);
        }
    }
    format!("{kb}kB")
}

fn io_error(e: std::io::Error) -> Error {
    Error::user("58030", format!("could not use a temporary file: {e}"))
}

/// An estimate of the memory one value holds.
pub fn value_size(v: &Value) -> usize {
    std::mem::size_of::<Value>()
        + match v {
            Value::Text(s) | Value::Json(s) => s.capacity(),
            Value::Bytea(b) => b.capacity(),
            Value::Array(a) => a.iter().map(value_size).sum(),
            Value::Jsonb(j) => jsonb_size(j),
            _ => 0,
        }
}

fn jsonb_size(j: &crate::types::jsonb::Jsonb) -> usize {
    use crate::types::jsonb::Jsonb;
    std::mem::size_of::<Jsonb>()
        + match j {
            Jsonb::String(s) => s.capacity(),
            Jsonb::Array(a) => a.iter().map(jsonb_size).sum(),
            Jsonb::Object(o) => o.iter().map(|(k, v)| k.capacity() + 24 + jsonb_size(v)).sum(),
            _ => 0,
        }
}

/// An estimate of the memory one row holds.
pub fn row_size(r: &[Value]) -> usize {
    24 + r.iter().map(value_size).sum::<usize>()
}

/// A temporary file being written.
pub struct SpillWriter {
    w: BufWriter<File>,
    /// The record being written and its length prefix (reused).
    buf: Vec<u8>,
    len: Vec<u8>,
    rows: u64,
}

impl SpillWriter {
    pub fn new() -> Result<SpillWriter> {
        let file = TEMP_DIR.with(|t| match t.borrow().as_ref() {
            Some(dir) => {
                let dir: &Path = dir;
                std::fs::create_dir_all(dir).map_err(io_error)?;
                tempfile::tempfile_in(dir).map_err(io_error)
            }
            None => tempfile::tempfile().map_err(io_error),
        })?;
        FILES.fetch_add(1, Relaxed);
        Ok(SpillWriter {
            w: BufWriter::with_capacity(io_buffer(), file),
            buf: Vec::new(),
            len: Vec::new(),
            rows: 0,
        })
    }

    /// Appends one record: the values of `a` then those of `b`.
    pub fn write(&mut self, a: &[Value], b: &[Value]) -> Result<()> {
        self.buf.clear();
        encode_row_parts(a, b, &mut self.buf);
        // The length as a varint, then the row.
        self.len.clear();
        put_varint(&mut self.len, self.buf.len() as u64);
        self.w.write_all(&self.len).map_err(io_error)?;
        self.w.write_all(&self.buf).map_err(io_error)?;
        self.rows += 1;
        BYTES.fetch_add((self.len.len() + self.buf.len()) as u64, Relaxed);
        Ok(())
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The file, written out (its buffer freed).
    pub fn finish(self) -> Result<SpillFile> {
        let file = self.w.into_inner().map_err(|e| io_error(e.into_error()))?;
        Ok(SpillFile { file, rows: self.rows })
    }
}

/// A written temporary file, waiting to be read (no buffer held).
pub struct SpillFile {
    file: File,
    rows: u64,
}

impl SpillFile {
    /// The file, rewound for reading.
    pub fn open(mut self) -> Result<SpillReader> {
        self.file.seek(SeekFrom::Start(0)).map_err(io_error)?;
        Ok(SpillReader {
            r: BufReader::with_capacity(io_buffer(), self.file),
            buf: Vec::new(),
            left: self.rows,
        })
    }
}

/// The buffer of one temporary file: `FAN_IN` of them (a merge) take
/// about half of `work_mem`, within 8 to 64 KiB each.
fn io_buffer() -> usize {
    (work_mem() / (2 * FAN_IN)).clamp(8 << 10, 64 << 10)
}

/// A temporary file being read back, record by record.
pub struct SpillReader {
    r: BufReader<File>,
    buf: Vec<u8>,
    left: u64,
}

impl SpillReader {
    /// The next record's values (all of them), or None at the end.
    pub fn next_row(&mut self) -> Result<Option<Row>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        // The length varint: at most 10 bytes.
        let mut len = 0u64;
        let mut shift = 0;
        loop {
            let mut b = [0u8; 1];
            self.r.read_exact(&mut b).map_err(io_error)?;
            len |= u64::from(b[0] & 0x7f) << shift;
            if b[0] & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 63 {
                return Err(Error::Internal("corrupt temporary file".into()));
            }
        }
        self.buf.resize(len as usize, 0);
        self.r.read_exact(&mut self.buf).map_err(io_error)?;
        let mut pos = 1;
        let n = get_varint(&self.buf, &mut pos)? as usize;
        let mut row = Vec::with_capacity(n);
        decode_row(&self.buf, n, &mut row)?;
        Ok(Some(row))
    }
}

// ---------------------------------------------------------------- sort

/// Collects rows and returns them ordered by `keys`; see the module doc.
pub struct Sorter<'k> {
    keys: &'k [SortKey],
    limit: Option<usize>,
    /// (evaluated keys, row), in input order until sorted.
    buf: Vec<(Row, Row)>,
    mem: usize,
    work_mem: usize,
    /// Written runs by level: `FAN_IN` runs of one level are merged into
    /// one of the next, so that few files are open and each row is
    /// rewritten about log_FAN_IN(runs) times.
    levels: Vec<Vec<SpillFile>>,
}

impl<'k> Sorter<'k> {
    pub fn new(keys: &'k [SortKey], limit: Option<usize>) -> Sorter<'k> {
        Sorter { keys, limit, buf: Vec::new(), mem: 0, work_mem: work_mem(), levels: Vec::new() }
    }

    pub fn push(&mut self, ctx: &mut Ctx, row: Row) -> Result<()> {
        let mut k = Vec::with_capacity(self.keys.len());
        for key in self.keys {
            k.push(eval(ctx, &key.expr, &row)?);
        }
        self.mem += row_size(&k) + row_size(&row);
        self.buf.push((k, row));
        if let Some(n) = self.limit
            && self.buf.len() >= n.saturating_mul(2).max(64)
        {
            self.cut_to(n);
        }
        if self.mem > self.work_mem {
            self.spill_run()?;
        }
        Ok(())
    }

    /// Keeps the best `n` buffered rows (in input order among equals).
    fn cut_to(&mut self, n: usize) {
        if n >= self.buf.len() {
            return;
        }
        let keys = self.keys;
        if n == 0 {
            self.buf.clear();
        } else {
            // Stable: the input position breaks ties.
            let mut idx: Vec<usize> = (0..self.buf.len()).collect();
            let buf = &self.buf;
            let cmp =
                |a: &usize, b: &usize| cmp_sort_keys(keys, &buf[*a].0, &buf[*b].0).then(a.cmp(b));
            idx.select_nth_unstable_by(n - 1, cmp);
            let mut keep = vec![false; self.buf.len()];
            for &i in &idx[..n] {
                keep[i] = true;
            }
            let mut i = 0;
            self.buf.retain(|_| {
                i += 1;
                keep[i - 1]
            });
        }
        self.mem = self.buf.iter().map(|(k, r)| row_size(k) + row_size(r)).sum();
    }

    fn sort_buf(&mut self) {
        let keys = self.keys;
        self.buf.sort_by(|a, b| cmp_sort_keys(keys, &a.0, &b.0));
    }

    /// Writes the buffer out as one sorted run.
    fn spill_run(&mut self) -> Result<()> {
        self.sort_buf();
        if let Some(n) = self.limit {
            self.buf.truncate(n);
        }
        let mut w = SpillWriter::new()?;
        for (k, r) in self.buf.drain(..) {
            w.write(&k, &r)?;
        }
        self.mem = 0;
        let mut run = w.finish()?;
        let mut level = 0;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            self.levels[level].push(run);
            if self.levels[level].len() < FAN_IN {
                return Ok(());
            }
            run = merge_to_file(self.keys, std::mem::take(&mut self.levels[level]))?;
            level += 1;
        }
    }

    /// The rows in order.
    pub fn finish(mut self) -> Result<Sorted<'k>> {
        if self.levels.is_empty() {
            self.sort_buf();
            if let Some(n) = self.limit {
                self.buf.truncate(n);
            }
            let rows: Vec<Row> = self.buf.into_iter().map(|(_, r)| r).collect();
            return Ok(Sorted::Memory(rows.into_iter()));
        }
        if !self.buf.is_empty() {
            self.spill_run()?;
        }
        // Oldest rows first (the highest level), so that ties keep their
        // input order; merge passes until one heap can take every run.
        let mut runs: Vec<SpillFile> =
            std::mem::take(&mut self.levels).into_iter().rev().flatten().collect();
        while runs.len() > FAN_IN {
            let rest = runs.split_off(FAN_IN);
            let merged = merge_to_file(self.keys, runs)?;
            runs = std::iter::once(merged).chain(rest).collect();
        }
        Ok(Sorted::Merge(Merger::new(self.keys, runs)?, self.limit.unwrap_or(usize::MAX)))
    }
}

/// Merges sorted runs (oldest first) into one.
fn merge_to_file(keys: &[SortKey], runs: Vec<SpillFile>) -> Result<SpillFile> {
    let mut m = Merger::new(keys, runs)?;
    let mut w = SpillWriter::new()?;
    while let Some((k, r)) = m.next_keyed()? {
        w.write(&k, &r)?;
    }
    w.finish()
}

/// A sort's output.
pub enum Sorted<'k> {
    Memory(std::vec::IntoIter<Row>),
    /// Merging runs; rows left to return (the LIMIT).
    Merge(Merger<'k>, usize),
}

impl Sorted<'_> {
    pub fn next_row(&mut self) -> Result<Option<Row>> {
        match self {
            Sorted::Memory(it) => Ok(it.next()),
            Sorted::Merge(m, left) => {
                if *left == 0 {
                    return Ok(None);
                }
                *left -= 1;
                Ok(m.next_keyed()?.map(|(_, r)| r))
            }
        }
    }
}

struct Head<'k> {
    keys: &'k [SortKey],
    key: Row,
    row: Row,
    run: usize,
}

impl PartialEq for Head<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Head<'_> {}
impl PartialOrd for Head<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Head<'_> {
    /// Reversed, for BinaryHeap (a max-heap): the smallest key on top,
    /// the earlier run first among equals.
    fn cmp(&self, other: &Self) -> Ordering {
        cmp_sort_keys(self.keys, &self.key, &other.key).then(self.run.cmp(&other.run)).reverse()
    }
}

/// A k-way merge of sorted runs.
pub struct Merger<'k> {
    keys: &'k [SortKey],
    runs: Vec<SpillReader>,
    heap: BinaryHeap<Head<'k>>,
}

impl<'k> Merger<'k> {
    fn new(keys: &'k [SortKey], files: Vec<SpillFile>) -> Result<Merger<'k>> {
        let mut runs = files.into_iter().map(SpillFile::open).collect::<Result<Vec<_>>>()?;
        let mut heap = BinaryHeap::with_capacity(runs.len());
        for (run, r) in runs.iter_mut().enumerate() {
            if let Some(rec) = r.next_row()? {
                let (key, row) = split_record(rec, keys.len());
                heap.push(Head { keys, key, row, run });
            }
        }
        Ok(Merger { keys, runs, heap })
    }

    fn next_keyed(&mut self) -> Result<Option<(Row, Row)>> {
        let Some(top) = self.heap.pop() else { return Ok(None) };
        if let Some(rec) = self.runs[top.run].next_row()? {
            let (key, row) = split_record(rec, self.keys.len());
            self.heap.push(Head { keys: self.keys, key, row, run: top.run });
        }
        Ok(Some((top.key, top.row)))
    }
}

fn split_record(mut rec: Row, nkeys: usize) -> (Row, Row) {
    let row = rec.split_off(nkeys.min(rec.len()));
    (rec, row)
}

/// Sorts the rows of `input` by `keys`, keeping the first `limit`.
pub fn sort_stream<'k>(
    ctx: &mut Ctx,
    mut input: Stream,
    keys: &'k [SortKey],
    limit: Option<usize>,
) -> Result<Sorted<'k>> {
    let mut s = Sorter::new(keys, limit);
    while let Some(r) = input.next(ctx)? {
        s.push(ctx, r)?;
    }
    s.finish()
}

// ---------------------------------------------------------------- aggregate

/// Rows of groups that did not fit in memory, split by a hash of the key.
pub struct Partitions {
    files: Vec<Option<SpillWriter>>,
    salt: u64,
}

impl Partitions {
    /// `depth`: how many times these rows have been split already.
    pub fn new(depth: u64) -> Partitions {
        Partitions { files: (0..PARTITIONS).map(|_| None).collect(), salt: depth }
    }

    /// Writes `row`, whose group key encodes as `key`.
    pub fn write(&mut self, key: &[u8], row: &[Value]) -> Result<()> {
        use std::hash::Hasher;
        // The executor's hasher, salted by depth so that a partition that
        // is still too big splits differently next time.
        let mut f = super::FastHasher::default();
        f.write_u64(self.salt);
        f.write(key);
        let p = (f.finish() % PARTITIONS as u64) as usize;
        let w = match &mut self.files[p] {
            Some(w) => w,
            slot => slot.insert(SpillWriter::new()?),
        };
        w.write(row, &[])
    }

    /// The non-empty partitions.
    pub fn finish(self) -> Result<Vec<SpillFile>> {
        self.files.into_iter().flatten().map(SpillWriter::finish).collect()
    }
}
