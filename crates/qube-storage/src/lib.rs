//! QubeDB storage: an ordered byte key-value store behind one small trait.
//!
//! ```text
//!            Engine (trait)
//!           /              \
//!   MemoryEngine        BTreeEngine ── WAL (qube-wal): logical batches, group commit
//!   (BTreeMap, oracle)      │
//!                        BufferPool ── PageFile: 8 KiB pages, pread/pwrite, checksums
//! ```
//!
//! Everything above storage (MVCC, catalog, SQL) sees only [`Engine`]: point
//! reads, atomic write batches, forward and reverse range scans through a
//! [`Cursor`], `flush`, `checkpoint` and a [`Status`]. The B+Tree engine is
//! described in [`btree`]; the byte layouts are drawn in `ARCHITECTURE.md`.
//!
//! Limits, enforced the same way by every engine so the memory engine is a
//! faithful oracle: keys up to [`MAX_KEY_LEN`] bytes (the empty key is a
//! valid key), values up to [`MAX_VALUE_LEN`] bytes, a batch up to
//! [`MAX_BATCH_BYTES`].

pub mod batch;
pub mod btree;
pub mod memory;

use std::ops::Bound;

pub use batch::{Op, WriteBatch};
pub use btree::{BTreeEngine, Options};
pub use memory::MemoryEngine;
pub use qube_common::{Error, Result};
pub use qube_wal::SyncMode as Durability;

/// Longest key any engine accepts.
pub const MAX_KEY_LEN: usize = 2048;
/// Longest value any engine accepts (larger than a page: stored on overflow pages).
pub const MAX_VALUE_LEN: usize = 64 << 20;
/// Largest encoded write batch: one batch is one WAL record.
pub const MAX_BATCH_BYTES: usize = qube_wal::MAX_RECORD_BYTES;

/// Where an `Engine::seek_latest_hinted` ended, for the next one (opaque;
/// `Default` is an empty hint). It holds no lock and keeps nothing from
/// being freed: it is only used while the tree is still the one it was
/// made in.
#[derive(Default)]
pub struct SeekHint {
    leaf: Option<btree::LeafMemo>,
}

/// Scan direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Reverse,
}

/// A key range with inclusive/exclusive/unbounded ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    pub start: Bound<Vec<u8>>,
    pub end: Bound<Vec<u8>>,
}

impl KeyRange {
    /// Every key.
    pub fn all() -> Self {
        KeyRange { start: Bound::Unbounded, end: Bound::Unbounded }
    }

    /// Keys in `[start, end)`.
    pub fn between(start: &[u8], end: &[u8]) -> Self {
        KeyRange { start: Bound::Included(start.to_vec()), end: Bound::Excluded(end.to_vec()) }
    }

    /// Every key that starts with `prefix`.
    pub fn prefix(prefix: &[u8]) -> Self {
        let end = match prefix_successor(prefix) {
            Some(s) => Bound::Excluded(s),
            None => Bound::Unbounded,
        };
        KeyRange { start: Bound::Included(prefix.to_vec()), end }
    }

    /// True if `key` lies inside the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        let after_start = match &self.start {
            Bound::Included(s) => key >= s.as_slice(),
            Bound::Excluded(s) => key > s.as_slice(),
            Bound::Unbounded => true,
        };
        after_start && self.before_end(key)
    }

    /// True if `key` is not past the end of the range.
    pub fn before_end(&self, key: &[u8]) -> bool {
        match &self.end {
            Bound::Included(e) => key <= e.as_slice(),
            Bound::Excluded(e) => key < e.as_slice(),
            Bound::Unbounded => true,
        }
    }

    /// True if `key` is not before the start of the range.
    pub fn after_start(&self, key: &[u8]) -> bool {
        match &self.start {
            Bound::Included(s) => key >= s.as_slice(),
            Bound::Excluded(s) => key > s.as_slice(),
            Bound::Unbounded => true,
        }
    }
}

/// The smallest key greater than every key with this prefix, if one exists
/// (there is none when the prefix is all 0xFF bytes or empty).
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut s = Vec::with_capacity(prefix.len());
    prefix_successor_into(prefix, &mut s).then_some(s)
}

/// `prefix_successor` into a reused buffer (cleared first); false (and
/// `out` empty) if there is none.
pub fn prefix_successor_into(prefix: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    out.extend_from_slice(prefix);
    prefix_successor_in_place(out)
}

/// `prefix_successor` of the bytes `b` holds, in place; false (and `b`
/// empty) if there is none.
pub fn prefix_successor_in_place(b: &mut Vec<u8>) -> bool {
    while let Some(last) = b.pop() {
        if last < 0xFF {
            b.push(last + 1);
            return true;
        }
    }
    false
}

/// A positioned iterator over key-value pairs that lends its current pair,
/// so that scans need no allocation per row.
///
/// ```text
/// let mut c = engine.scan(KeyRange::all(), Direction::Forward)?;
/// while c.advance()? { use(c.key(), c.value()); }
/// ```
pub trait Cursor: Send {
    /// Moves to the next pair in the scan's direction; false at the end.
    fn advance(&mut self) -> Result<bool>;
    /// The current key. Only valid after `advance` returned true.
    fn key(&self) -> &[u8];
    /// The current value. Only valid after `advance` returned true.
    fn value(&self) -> &[u8];

    /// The key the next `advance` would move to, if the cursor can tell
    /// without moving (a B+Tree cursor: the next entry of its leaf);
    /// `None` if it cannot, or there is none. Whether that key is within
    /// the range is not checked. Only meaningful after `advance` returned
    /// true.
    fn peek_key(&self) -> Option<&[u8]> {
        None
    }

    /// Collects the remaining pairs (for tests and small results).
    fn collect_pairs(&mut self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        while self.advance()? {
            out.push((self.key().to_vec(), self.value().to_vec()));
        }
        Ok(out)
    }
}

/// Advances a cursor and copies its pair into reused buffers; false at the end.
pub fn copy_next(c: &mut dyn Cursor, key: &mut Vec<u8>, value: &mut Vec<u8>) -> Result<bool> {
    if !c.advance()? {
        return Ok(false);
    }
    key.clear();
    key.extend_from_slice(c.key());
    value.clear();
    value.extend_from_slice(c.value());
    Ok(true)
}

/// Counters an engine reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// Live keys.
    pub keys: u64,
    /// Bytes the engine occupies on disk (data file and WAL).
    pub disk_bytes: u64,
    /// Pages in the data file (0 for the memory engine).
    pub pages: u64,
    /// Pages on the free list, ready for reuse.
    pub free_pages: u64,
    /// Buffer pool hits, misses and evictions.
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_evictions: u64,
    /// Bytes the buffer pool holds now, and its configured capacity.
    pub cache_bytes: u64,
    pub cache_capacity: u64,
    /// Checkpoints taken since open, and the LSN the last one covers.
    pub checkpoints: u64,
    pub checkpoint_lsn: u64,
    /// LSN of the last committed batch.
    pub last_lsn: u64,
    /// Bytes of WAL on disk.
    pub wal_bytes: u64,
    /// WAL fsyncs since open: with `last_lsn`, how well group commit batches.
    pub wal_fsyncs: u64,
    /// Pages moved by compaction (to let a checkpoint cut the file's free
    /// tail) since open.
    pub pages_relocated: u64,
}

/// Point seeks over one snapshot of an engine (`Engine::seeker`), for a
/// caller with many of them at once (MVCC's batched row fetch): each
/// `seek` finds the first pair at or after `start` whose key begins with
/// `start[..plen]` (the newest version of a key at a snapshot), and lends
/// its value until the next call. An engine may keep where the last seek
/// ended (the B+Tree keeps its path from the root), so seeks whose starts
/// ascend cost less than separate `Engine::seek`s; any order gives the
/// same answers.
pub trait Seeker {
    fn seek(&mut self, start: &[u8], plen: usize) -> Result<Option<&[u8]>>;
}

/// The `Seeker` of an engine without one of its own: one `Engine::seek`
/// per call, the range's end the successor of the prefix.
pub struct EngineSeeker<'a, E: ?Sized> {
    engine: &'a E,
    key: Vec<u8>,
    value: Vec<u8>,
}

impl<'a, E: Engine + ?Sized> EngineSeeker<'a, E> {
    pub fn new(engine: &'a E) -> Self {
        EngineSeeker { engine, key: Vec::new(), value: Vec::new() }
    }
}

impl<E: Engine + ?Sized> Seeker for EngineSeeker<'_, E> {
    fn seek(&mut self, start: &[u8], plen: usize) -> Result<Option<&[u8]>> {
        let Some(prefix) = start.get(..plen) else {
            return Err(Error::Internal("seek prefix longer than its start".into()));
        };
        let end = match prefix_successor(prefix) {
            Some(e) => Bound::Excluded(e),
            None => Bound::Unbounded,
        };
        let range = KeyRange { start: Bound::Included(start.to_vec()), end };
        Ok(self.engine.seek(&range, &mut self.key, &mut self.value)?.then_some(&self.value[..]))
    }
}

/// An ordered byte key-value store with atomic write batches.
///
/// All methods take `&self`: engines are shared between threads. A batch is
/// atomic (all of it or none of it survives a crash) and, with the default
/// durability, durable when `write` returns. Readers never see a batch
/// partially, and never see one before it is durable (but for
/// `seek_latest`, which lock holders use).
pub trait Engine: Send + Sync {
    /// Reads one key.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Reads one key into `out` (cleared first; untouched if absent), so that
    /// a loop of reads reuses one buffer. Returns whether the key exists.
    fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        match self.get(key)? {
            Some(v) => {
                out.clear();
                out.extend_from_slice(&v);
                Ok(true)
            }
            None => Ok(false),
        }
    }
    /// Applies a batch atomically.
    fn write(&self, batch: WriteBatch) -> Result<()>;
    /// The first half of `write`, for callers that must order batches under
    /// their own lock but should not hold it while the log syncs (MVCC
    /// commit): applies and logs the batch and returns its LSN (0 for an
    /// empty batch). The batch is not visible to readers, nor durable, until
    /// `wait_durable(lsn)` returns; batches become visible in LSN order.
    fn write_nowait(&self, batch: WriteBatch) -> Result<u64> {
        self.write(batch)?;
        Ok(0)
    }
    /// The second half of `write_nowait`.
    fn wait_durable(&self, lsn: u64) -> Result<()> {
        let _ = lsn;
        Ok(())
    }
    /// A hint for group commit: `delta` more (or, negative, fewer) writers
    /// are expected to call `write_nowait` soon (MVCC counts its running
    /// read-write transactions). A committer about to sync the log waits a
    /// few tens of microseconds while any are expected, so that one sync
    /// covers them too. Engines that do not batch syncs ignore it.
    fn expect_writers(&self, delta: i64) {
        let _ = delta;
    }
    /// Scans a range in either direction over a consistent snapshot.
    fn scan(&self, range: KeyRange, direction: Direction) -> Result<Box<dyn Cursor + '_>>;
    /// `scan` of a range the caller keeps while the cursor lives: an
    /// engine whose cursor can read the bounds where they are borrows them
    /// (the caller reuses their buffers from scan to scan); by default
    /// they are copied.
    fn scan_ref<'a>(
        &'a self,
        range: &'a KeyRange,
        direction: Direction,
    ) -> Result<Box<dyn Cursor + 'a>> {
        self.scan(range.clone(), direction)
    }
    /// Runs `f` on a cursor over `range` (as `scan_ref`'s), one that an
    /// engine may build where it is rather than box (a scan per
    /// statement: the box was an allocation each).
    fn with_cursor(
        &self,
        range: &KeyRange,
        direction: Direction,
        f: &mut dyn FnMut(&mut dyn Cursor) -> Result<()>,
    ) -> Result<()> {
        let mut c = self.scan_ref(range, direction)?;
        f(&mut *c)
    }
    /// The first pair of a range (forward), copied into `key` and `value`
    /// (cleared first); false if the range is empty. A point lookup for
    /// callers that know a prefix, not a key (MVCC's newest version of a
    /// key), without the cost of a cursor.
    fn seek(&self, range: &KeyRange, key: &mut Vec<u8>, value: &mut Vec<u8>) -> Result<bool> {
        copy_next(&mut *self.scan(range.clone(), Direction::Forward)?, key, value)
    }
    /// `seek` over the newest applied batch, durable or not: the batches
    /// `write_nowait` has ordered in the log but `wait_durable` has not yet
    /// published are included. Only for a caller that holds a lock which
    /// orders its own later batch after those (MVCC's row-lock holders,
    /// which write over the newest version): whatever it writes is durable
    /// only if they are. Engines that publish at once need not override it.
    fn seek_latest(
        &self,
        range: &KeyRange,
        key: &mut Vec<u8>,
        value: &mut Vec<u8>,
    ) -> Result<bool> {
        self.seek(range, key, value)
    }
    /// `seek_latest` for a caller that seeks again and again near where it
    /// sought last (a bulk load's unique checks, in key order): `hint`
    /// remembers where this seek ended, for the next one to start there if
    /// the tree has not changed meanwhile. Same result as `seek_latest`;
    /// engines without such a shortcut ignore the hint.
    fn seek_latest_hinted(
        &self,
        range: &KeyRange,
        key: &mut Vec<u8>,
        value: &mut Vec<u8>,
        hint: &mut SeekHint,
    ) -> Result<bool> {
        let _ = hint;
        self.seek_latest(range, key, value)
    }
    /// A `Seeker` over the current snapshot (as `seek` sees it), for many
    /// point seeks in a row. The default seeks one by one.
    fn seeker(&self) -> Result<Box<dyn Seeker + '_>> {
        Ok(Box::new(EngineSeeker::new(self)))
    }
    /// A count of the batches applied so far, which grows (by the time
    /// `seek_latest` can see a batch, never before) with every batch:
    /// while it stays the same, what `seek_latest` found is still so, and
    /// a caller may remember it (MVCC remembers a key range it found
    /// empty, so a bulk load's unique checks need not seek). Read it
    /// before the seek whose result it vouches for. `None` (the default):
    /// the engine does not count, and nothing may be remembered.
    fn applied_batches(&self) -> Option<u64> {
        None
    }
    /// Makes every acknowledged write durable now, whatever the durability setting.
    fn flush(&self) -> Result<()>;
    /// Writes a consistent tree to disk and recycles the WAL before it (no-op in memory).
    fn checkpoint(&self) -> Result<()> {
        Ok(())
    }
    /// Counters.
    fn status(&self) -> Result<Status>;

    /// Sets one key (a batch of one).
    fn set(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut b = WriteBatch::new();
        b.set(key, value);
        self.write(b)
    }
    /// Deletes one key (a batch of one). Deleting a missing key is not an error.
    fn delete(&self, key: &[u8]) -> Result<()> {
        let mut b = WriteBatch::new();
        b.delete(key);
        self.write(b)
    }
    /// Scans every key with `prefix`.
    fn scan_prefix(&self, prefix: &[u8], direction: Direction) -> Result<Box<dyn Cursor + '_>> {
        self.scan(KeyRange::prefix(prefix), direction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_successor(b"\xff\xff"), None);
        assert_eq!(prefix_successor(b""), None);
        let mut b = b"a\xff\xff".to_vec();
        assert!(prefix_successor_in_place(&mut b));
        assert_eq!(b, b"b");
        let mut b = b"\xff".to_vec();
        assert!(!prefix_successor_in_place(&mut b));
        assert!(b.is_empty());
        let r = KeyRange::prefix(b"ab");
        assert!(r.contains(b"ab"));
        assert!(r.contains(b"ab\xff\xff"));
        assert!(!r.contains(b"ac"));
        assert!(!r.contains(b"aa\xff"));
    }
}
