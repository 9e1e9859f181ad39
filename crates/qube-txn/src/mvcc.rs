//! Multi-version concurrency control over any [`Engine`].
//!
//! # Versions and snapshots
//!
//! Every commit gets the next commit timestamp `ts` and writes all its
//! changes as versions `(key, ts)` in one atomic engine batch (see
//! `keys.rs` for the layout). A transaction reads at a snapshot `read_ts`:
//! for each key it sees the newest version with `ts ≤ read_ts`.
//!
//! ```text
//! key x:   v@3 ── v@7 ── tombstone@9          (newest first on disk)
//! reader at read_ts 5 sees v@3; at 8 sees v@7; at 9 or later: no x
//! ```
//!
//! `visible` is the newest timestamp whose commit (and every earlier one)
//! is durable and readable in the engine; a transaction begins with
//! `read_ts = visible`, so it never sees a commit that a crash could lose,
//! and never waits for anything to take its snapshot.
//!
//! # Writes
//!
//! A transaction buffers its writes in memory (its *write set*: keys and
//! values in one arena, kept sorted in runs as bulk loads write them, see
//! `writeset.rs`) and takes the row lock of each key it writes
//! (`locks.rs`), as PostgreSQL does: a
//! second writer of a key waits for the first to finish. At REPEATABLE READ
//! and SERIALIZABLE, a writer that finds a version newer than its snapshot
//! (written by a transaction that committed meanwhile) fails with
//! `Error::Serialization` (40001): first committer wins. READ COMMITTED
//! takes a new snapshot for every statement (`Transaction::new_statement`)
//! and writes over newer versions.
//!
//! Commit: under the commit mutex, take `ts = last + 1`, run the SSI check
//! (SERIALIZABLE), and hand the batch to `Engine::write_nowait`, which
//! orders it in the log; release the mutex; wait for durability
//! (`Engine::wait_durable`, group commit: concurrent committers share one
//! fsync); raise `visible`. Row locks are released right after the batch
//! is ordered in the log, before the fsync (early lock release; not at
//! SERIALIZABLE, which releases them at the end): the next writer of a
//! hot row builds on the newest version (`Engine::seek_latest`), and its
//! commit, later in the log, is durable only if this one is, so the two
//! can share one fsync. Since nothing is written
//! before commit, a crash leaves no trace of an unfinished transaction:
//! recovery needs nothing from this layer but the last timestamp.
//!
//! # Time travel and garbage collection
//!
//! Each commit also records its wall-clock time. `Mode::AsOf(ts)` reads at
//! an old snapshot, as long as `ts` is not older than the garbage
//! collector's horizon: the oldest snapshot still needed, which is the
//! oldest running transaction's, or the newest commit older than the
//! retention window, whichever is older. The collector (`gc`) keeps, for
//! each key, every version newer than the horizon and the one version the
//! horizon sees (dropped too if it is a tombstone), and deletes the rest. It
//! visits the keys rewritten or deleted since its last pass (a key written
//! for the first time has a single version and is not visited), and every
//! key once after opening.
//!
//! # Not built yet
//!
//! A write set lives in memory (no
//! spilling of huge transactions); row locks taken after a savepoint are
//! kept when rolling back to it; lock waits have no queue fairness.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::{Condvar, Mutex};
use qube_common::{Error, Result};
use qube_storage::{
    Direction, Engine, KeyRange, SeekHint, WriteBatch, prefix_successor, prefix_successor_in_place,
};

use crate::keys::{self, Key, Ts};
use crate::locks::{Held, LockTable, TxnId, key_hash};
use crate::ssi::Ssi;
use crate::writeset::{self, WriteSet};

/// Isolation levels with PostgreSQL's meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    ReadCommitted,
    RepeatableRead,
    Serializable,
}

/// How a transaction begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    ReadWrite(Isolation),
    ReadOnly(Isolation),
    /// Read-only, at the snapshot of an earlier commit (time travel).
    AsOf(Ts),
}

/// Configuration of the MVCC layer.
#[derive(Debug, Clone)]
pub struct MvccOptions {
    /// How long old versions stay readable for `Mode::AsOf`.
    pub retention: Duration,
    /// Longest wait for a row lock (None: wait until it is free or a
    /// deadlock is found, as PostgreSQL's default `lock_timeout = 0`).
    pub lock_timeout: Option<Duration>,
    /// How often the background garbage collector runs (None: only on demand).
    pub gc_interval: Option<Duration>,
}

impl Default for MvccOptions {
    fn default() -> Self {
        MvccOptions {
            retention: Duration::from_secs(0),
            lock_timeout: None,
            gc_interval: Some(Duration::from_secs(1)),
        }
    }
}

/// Counters of the MVCC layer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MvccStatus {
    pub last_commit: Ts,
    pub visible: Ts,
    pub active_transactions: u64,
    pub row_locks: u64,
    pub serializable_tracked: u64,
    pub gc_runs: u64,
    pub gc_horizon: Ts,
    pub gc_versions_removed: u64,
    pub commits: u64,
    pub rollbacks: u64,
    pub serialization_failures: u64,
}

struct CommitState {
    last: Ts,
    /// Wall time of the last commit-time record written.
    last_time_record: u64,
}

/// Bytes a write adds to its commit's batch beyond its version key and
/// value: the op's tag and lengths (9) and the value's tag (1). Counted
/// exactly, so that the batch is allocated once at its full size: a
/// million-row batch grown by doubling was copied whole at each step (and
/// an allocator that reallocates by copying, not by moving the mapping as
/// glibc does for large blocks, faults in fresh memory each time).
const BATCH_OVERHEAD: usize = 10;

/// Deletions per garbage-collection batch (see `gc_pass`).
const GC_BATCH: usize = 128;

/// Commit-time records are written at most this often (µs): `AS OF` a wall
/// time resolves to this precision, without a key per commit.
const COMMIT_TIME_EVERY_MICROS: u64 = 10_000;

struct Shared {
    engine: Arc<dyn Engine>,
    opts: MvccOptions,
    next_txn: AtomicU64,
    commit: Mutex<CommitState>,
    visible: AtomicU64,
    /// Running transactions and their snapshots (GC horizon, SSI pruning).
    active: Mutex<ActiveMap>,
    locks: LockTable,
    ssi: Ssi,
    /// User keys given a new version since the last GC pass.
    gc_keys: Mutex<GcKeys>,
    gc_horizon: AtomicU64,
    gc_running: Mutex<()>,
    /// Commit timestamp of the newest transaction that changed the catalog
    /// (`Transaction::mark_ddl`): caches of catalog reads check it.
    ddl_version: AtomicU64,
    gc_runs: AtomicU64,
    gc_removed: AtomicU64,
    commits: AtomicU64,
    rollbacks: AtomicU64,
    serialization_failures: AtomicU64,
}

#[derive(Default)]
struct GcKeys {
    keys: HashSet<Vec<u8>>,
    /// Visit every key on the next pass (after opening).
    full: bool,
}

/// Tells the GC thread to stop: a flag and a condvar to wake it.
type StopSignal = (Mutex<bool>, Condvar);

/// The MVCC layer over one engine. Cheap to share: clone the `Arc`.
pub struct Mvcc {
    shared: Arc<Shared>,
    gc_thread: Option<(Arc<StopSignal>, std::thread::JoinHandle<()>)>,
}

fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

fn be_u64(v: &[u8]) -> Result<u64> {
    let b: [u8; 8] = v.try_into().map_err(|_| Error::Internal("malformed MVCC metadata".into()))?;
    Ok(u64::from_be_bytes(b))
}

impl Mvcc {
    /// Opens the MVCC layer on an engine. Recovery needs only the last
    /// commit timestamp: unfinished transactions never wrote anything.
    pub fn open(engine: Arc<dyn Engine>, opts: MvccOptions) -> Result<Mvcc> {
        let last = match engine.get(&Key::LastCommit.encode())? {
            Some(v) => be_u64(&v)?,
            None => 0,
        };
        let shared = Arc::new(Shared {
            engine,
            opts,
            next_txn: AtomicU64::new(1),
            commit: Mutex::new(CommitState { last, last_time_record: 0 }),
            visible: AtomicU64::new(last),
            active: Mutex::new(ActiveMap::default()),
            locks: LockTable::default(),
            ssi: Ssi::default(),
            gc_keys: Mutex::new(GcKeys { keys: HashSet::new(), full: true }),
            gc_horizon: AtomicU64::new(0),
            gc_running: Mutex::new(()),
            ddl_version: AtomicU64::new(last),
            gc_runs: AtomicU64::new(0),
            gc_removed: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            rollbacks: AtomicU64::new(0),
            serialization_failures: AtomicU64::new(0),
        });
        let gc_thread = match shared.opts.gc_interval {
            Some(every) => {
                let stop = Arc::new((Mutex::new(false), Condvar::new()));
                let (weak, s2) = (Arc::downgrade(&shared), stop.clone());
                let handle = std::thread::Builder::new()
                    .name("qubedb-mvcc-gc".into())
                    .spawn(move || gc_loop(weak, s2, every))
                    .map_err(|e| Error::io("starting the GC thread", e))?;
                Some((stop, handle))
            }
            None => None,
        };
        Ok(Mvcc { shared, gc_thread })
    }

    /// Begins a transaction.
    pub fn begin(&self, mode: Mode) -> Result<Transaction> {
        let s = &self.shared;
        let id = s.next_txn.fetch_add(1, Ordering::Relaxed);
        // The snapshot is taken and registered under the `active` lock, which
        // the GC horizon also reads under: GC never passes a snapshot that is
        // taken but not yet registered.
        let (read_ts, iso, read_only);
        {
            let mut active = s.active.lock();
            (read_ts, iso, read_only) = match mode {
                Mode::ReadWrite(iso) => (s.visible.load(Ordering::Acquire), iso, false),
                Mode::ReadOnly(iso) => (s.visible.load(Ordering::Acquire), iso, true),
                Mode::AsOf(ts) => (ts, Isolation::RepeatableRead, true),
            };
            if let Mode::AsOf(ts) = mode {
                let horizon = s.gc_horizon.load(Ordering::Acquire);
                let visible = s.visible.load(Ordering::Acquire);
                if ts < horizon {
                    return Err(Error::InvalidInput(format!(
                        "snapshot too old: commit {ts} is outside the retention window (the oldest \
                         readable commit is {horizon})"
                    )));
                }
                if ts > visible {
                    return Err(Error::InvalidInput(format!(
                        "commit {ts} does not exist yet (the newest is {visible})"
                    )));
                }
            }
            active.insert(id, read_ts);
        }
        if iso == Isolation::Serializable {
            s.ssi.begin(id, read_ts);
        }
        Ok(Transaction {
            shared: s.clone(),
            id,
            mode,
            iso,
            read_only,
            read_ts,
            writes: WriteSet::default(),
            write_bytes: 0,
            undo: Vec::new(),
            savepoints: Vec::new(),
            locked: Held::default(),
            last_locked: Vec::new(),
            fresh_prefix: None,
            gc_candidates: Vec::new(),
            read_bufs: SpareBufs(Some(ReadBufs::take_spare())),
            ddl: false,
            expected: false,
            depends_on: 0,
            done: false,
        })
    }

    /// Commit timestamp of the newest committed catalog change.
    pub fn ddl_version(&self) -> Ts {
        self.shared.ddl_version.load(Ordering::Acquire)
    }

    /// The newest commit a new transaction sees.
    pub fn visible(&self) -> Ts {
        self.shared.visible.load(Ordering::Acquire)
    }

    /// Commit timestamp of the newest commit at or before a wall-clock time
    /// (unix microseconds), for `AS OF` a time.
    pub fn commit_at_or_before(&self, unix_micros: u64) -> Result<Option<Ts>> {
        let prefix = keys::commit_time_prefix();
        let mut c = self.shared.engine.scan_prefix(&prefix, Direction::Reverse)?;
        while c.advance()? {
            if be_u64(c.value())? <= unix_micros {
                let ts = be_u64(&c.key()[prefix.len()..])?;
                return Ok(Some(ts));
            }
        }
        Ok(None)
    }

    /// Runs one garbage-collection pass now.
    pub fn gc(&self) -> Result<u64> {
        gc_pass(&self.shared)
    }

    pub fn status(&self) -> MvccStatus {
        let s = &self.shared;
        MvccStatus {
            last_commit: s.commit.lock().last,
            visible: s.visible.load(Ordering::Acquire),
            active_transactions: s.active.lock().len() as u64,
            row_locks: s.locks.held() as u64,
            serializable_tracked: s.ssi.tracked() as u64,
            gc_runs: s.gc_runs.load(Ordering::Relaxed),
            gc_horizon: s.gc_horizon.load(Ordering::Relaxed),
            gc_versions_removed: s.gc_removed.load(Ordering::Relaxed),
            commits: s.commits.load(Ordering::Relaxed),
            rollbacks: s.rollbacks.load(Ordering::Relaxed),
            serialization_failures: s.serialization_failures.load(Ordering::Relaxed),
        }
    }

    /// The engine underneath.
    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.shared.engine
    }
}

impl Drop for Mvcc {
    fn drop(&mut self) {
        if let Some((stop, handle)) = self.gc_thread.take() {
            *stop.0.lock() = true;
            stop.1.notify_all();
            let _ = handle.join();
        }
    }
}

fn gc_loop(shared: Weak<Shared>, stop: Arc<StopSignal>, every: Duration) {
    loop {
        {
            let mut stopped = stop.0.lock();
            if *stopped {
                return;
            }
            stop.1.wait_for(&mut stopped, every);
            if *stopped {
                return;
            }
        }
        let Some(s) = shared.upgrade() else { return };
        // Errors (a poisoned engine) surface to writers; GC just stops.
        let _ = gc_pass(&s);
    }
}

/// The running transactions and the snapshot each reads at. A hash map
/// keeps its room when it empties, so a lone autocommit statement's begin
/// and end allocate nothing (a `BTreeMap` frees its last node and makes a
/// new one); the GC horizon takes the minimum over all of them either way.
type ActiveMap = HashMap<TxnId, Ts, BuildHasherDefault<TxnIdHasher>>;

/// Hashes a `TxnId` by one multiplication (ids are dense counters; the
/// high bits, which the table reads first, come out well mixed).
#[derive(Default)]
struct TxnIdHasher(u64);

impl Hasher for TxnIdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The oldest snapshot anyone may still read at; raises `gc_horizon` to it.
/// Both happen under the `active` lock, which `begin` also holds while it
/// takes and registers a snapshot and checks `AsOf` against the horizon.
fn horizon(s: &Shared) -> Result<Ts> {
    let mut retained = Ts::MAX;
    if !s.opts.retention.is_zero() {
        let cutoff = now_micros().saturating_sub(s.opts.retention.as_micros() as u64);
        let prefix = keys::commit_time_prefix();
        retained = 0;
        let mut c = s.engine.scan_prefix(&prefix, Direction::Reverse)?;
        while c.advance()? {
            if be_u64(c.value())? <= cutoff {
                retained = be_u64(&c.key()[prefix.len()..])?;
                break;
            }
        }
    }
    let active = s.active.lock();
    let visible = s.visible.load(Ordering::Acquire);
    let oldest_active = active.values().copied().min().unwrap_or(visible);
    let h = oldest_active.min(visible).min(retained);
    Ok(s.gc_horizon.fetch_max(h, Ordering::AcqRel).max(h))
}

/// One GC pass; returns the number of versions removed. Passes never
/// overlap (`gc_running`): two would delete and count the same versions.
fn gc_pass(s: &Shared) -> Result<u64> {
    let _running = s.gc_running.lock();
    let h = horizon(s)?;
    s.ssi.prune(s.active.lock().values().copied().min().unwrap_or(h).min(h));
    let (keys, full) = {
        let mut g = s.gc_keys.lock();
        (std::mem::take(&mut g.keys), std::mem::take(&mut g.full))
    };
    let mut removed = 0u64;
    let mut batch = WriteBatch::new();
    let mut keep_for_later = Vec::new();
    let mut visit = |user_versions: &mut Vec<(Vec<u8>, Ts, bool)>, batch: &mut WriteBatch| {
        // Newest first. Keep versions newer than h and the one h sees.
        let mut seen_visible = false;
        let mut newer_left = false;
        for (raw, ts, tombstone) in user_versions.iter() {
            if *ts > h {
                newer_left = true;
                continue;
            }
            if !seen_visible {
                seen_visible = true;
                if !*tombstone || newer_left {
                    continue;
                }
            }
            batch.delete(raw);
            removed += 1;
        }
        newer_left
    };
    // GC deletions go out in batches that do not wait for an fsync each;
    // the pass waits once, at its end, for all of them. A batch holds the
    // engine's writer lock while it is applied, so batches stay small:
    // commits wait behind at most `GC_BATCH` deletions (a thousand took
    // tens of milliseconds under pgbench's TPC-B, and showed in its p99).
    let last_lsn = std::cell::Cell::new(0u64);
    let flush = |batch: &mut WriteBatch| -> Result<()> {
        if batch.len() >= GC_BATCH {
            last_lsn.set(last_lsn.get().max(s.engine.write_nowait(std::mem::take(batch))?));
        }
        Ok(())
    };
    if full {
        let mut c = s.engine.scan(
            KeyRange {
                start: Bound::Included(keys::user_prefix(b"")),
                end: Bound::Excluded(keys::versions_end()),
            },
            Direction::Forward,
        )?;
        let mut group: Vec<(Vec<u8>, Ts, bool)> = Vec::new();
        let mut group_prefix: Vec<u8> = Vec::new();
        while c.advance()? {
            let raw = c.key();
            let p = keys::version_key_prefix(raw);
            if p != group_prefix.as_slice() {
                if visit(&mut group, &mut batch) {
                    keep_for_later.push(group_prefix.clone());
                }
                group.clear();
                group_prefix = p.to_vec();
                flush(&mut batch)?;
            }
            group.push((raw.to_vec(), keys::version_ts(raw), c.value().first() == Some(&0)));
        }
        if visit(&mut group, &mut batch) {
            keep_for_later.push(group_prefix.clone());
        }
        drop(c);
        // Keys with versions the horizon still protects come back next time;
        // otherwise later passes need only new writes.
        s.gc_keys.lock().keys.extend(keep_for_later.into_iter().filter_map(|p| {
            let mut raw = p;
            raw.extend_from_slice(&[0u8; 8]);
            keys::decode_version(&raw).ok().map(|(k, _)| k)
        }));
    } else {
        let mut vp = Vec::new();
        for key in keys {
            vp.clear();
            keys::version_prefix_into(&key, &mut vp);
            let mut group = Vec::new();
            let mut c = s.engine.scan_prefix(&vp, Direction::Forward)?;
            while c.advance()? {
                let raw = c.key();
                group.push((raw.to_vec(), keys::version_ts(raw), c.value().first() == Some(&0)));
            }
            drop(c);
            if visit(&mut group, &mut batch) {
                s.gc_keys.lock().keys.insert(key);
            }
            flush(&mut batch)?;
        }
    }
    // Commit-time records older than the horizon are no longer needed.
    let prefix = keys::commit_time_prefix();
    let mut c = s.engine.scan_prefix(&prefix, Direction::Forward)?;
    while c.advance()? {
        if be_u64(&c.key()[prefix.len()..])? >= h {
            break;
        }
        batch.delete(c.key());
        flush(&mut batch)?;
    }
    drop(c);
    if !batch.is_empty() {
        last_lsn.set(last_lsn.get().max(s.engine.write_nowait(batch)?));
    }
    s.engine.wait_durable(last_lsn.get())?;
    s.gc_runs.fetch_add(1, Ordering::Relaxed);
    s.gc_removed.fetch_add(removed, Ordering::Relaxed);
    Ok(removed)
}

/// One transaction. Commit with [`Transaction::commit`] (which consumes
/// it); dropping it without committing rolls it back.
pub struct Transaction {
    shared: Arc<Shared>,
    id: TxnId,
    mode: Mode,
    iso: Isolation,
    read_only: bool,
    read_ts: Ts,
    /// Buffered writes (`writeset.rs`).
    writes: WriteSet,
    /// About the bytes the commit's batch will take (each write counted,
    /// overwrites too): its buffer is allocated once.
    write_bytes: usize,
    /// For savepoints: how to reverse each write made since the first.
    undo: Vec<writeset::Undo>,
    savepoints: Vec<(String, usize)>,
    /// The row locks held (`locks.rs`).
    locked: Held,
    /// The key whose row lock was taken last (a write right after the
    /// unique check's `get_for_update` of the same key skips the lock table).
    last_locked: Vec<u8>,
    /// The longest prefix every key `set_fresh` wrote starts with (it
    /// takes no row lock): a key without it that this transaction wrote
    /// holds its row lock (`get_for_update`). One index's entries share
    /// their index's prefix, a table's rows its table's.
    fresh_prefix: Option<Vec<u8>>,
    /// Locked keys that had committed versions when locked: the ones a
    /// commit hands to the GC (with every key it deletes). A key written
    /// for the first time has one version after the commit, nothing to
    /// collect, so a bulk insert does not make the GC visit every new key.
    gc_candidates: Vec<Vec<u8>>,
    /// Buffers of `get_into`.
    read_bufs: SpareBufs,
    /// This transaction changed the catalog.
    ddl: bool,
    /// Counted in the engine's expected writers (`Engine::expect_writers`):
    /// from its first row lock until its commit is logged or it ends.
    expected: bool,
    /// The newest commit a locked read of this transaction built on: it
    /// may not be durable yet (early lock release, see `commit`), and this
    /// transaction's commit is not acknowledged before it is.
    depends_on: Ts,
    done: bool,
}

/// The search range and found pair of `Transaction::get_into` and of the
/// newest-version check when a row lock is taken, kept between calls, and
/// where that check's last seek ended (a bulk load's checks come in key
/// order: the next one starts in the same leaf).
#[derive(Default)]
struct ReadBufs {
    start: Vec<u8>,
    end: Vec<u8>,
    key: Vec<u8>,
    value: Vec<u8>,
    hint: SeekHint,
    /// `scan_inner`'s current version prefix, user key and value, and the
    /// version prefix the user key was decoded from
    /// (`keys::decode_version_after`; empty: none).
    scan: (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>),
    /// `scan_inner`'s range of version keys (`to_version_bound`).
    scan_start: Vec<u8>,
    scan_end: Vec<u8>,
    /// Keys the newest-version check found absent (after two, it seeks
    /// past the key, to learn the gap around it).
    misses: u32,
    gap: Gap,
}

/// User keys with no committed version at all, as `newest_version` found
/// them: every key `k` with `lo ≤ k < hi` (`hi` None: no end) while the
/// engine's `applied_batches` is still `seq`. A bulk load's unique checks
/// (keys in order past the table's end) then take one look at the engine
/// in all, not one seek each. Sound because the count was read before
/// the seek that found the gap and is unchanged: no batch became visible
/// to `seek_latest` since, so a seek now would find the same nothing. (The
/// checks also run with the key's row lock held, so a writer of the key
/// that committed before has raised the count.)
#[derive(Default)]
struct Gap {
    valid: bool,
    seq: u64,
    lo: Vec<u8>,
    hi: Option<Vec<u8>>,
}

impl Gap {
    fn covers(&self, key: &[u8], seq: Option<u64>) -> bool {
        self.valid
            && seq == Some(self.seq)
            && self.lo.as_slice() <= key
            && self.hi.as_deref().is_none_or(|h| key < h)
    }
}

/// The largest buffer `ReadBufs::put_spare` keeps for the thread's next
/// transaction; a bigger one (a large value was read) is freed.
const SPARE_BUF_MAX: usize = 64 << 10;

std::thread_local! {
    /// The read buffers of the last transaction this thread dropped: a
    /// short transaction (an autocommit point select) reuses them instead
    /// of allocating its own search range and found pair.
    static SPARE_READ_BUFS: std::cell::RefCell<Option<Box<ReadBufs>>> =
        const { std::cell::RefCell::new(None) };
}

/// A transaction's `ReadBufs`, boxed: a transaction is moved by value
/// (`Mvcc::begin` returns it, `commit` takes it), and its buffers go to the
/// thread's spare slot and back, all of which then copy a pointer, not a
/// few hundred bytes of buffers (an autocommit statement did five such
/// copies). None only once `Drop` has handed them on.
#[derive(Default)]
struct SpareBufs(Option<Box<ReadBufs>>);

impl SpareBufs {
    #[inline]
    fn get(&mut self) -> &mut ReadBufs {
        #[cold]
        fn new_bufs() -> Box<ReadBufs> {
            Box::default()
        }
        self.0.get_or_insert_with(new_bufs)
    }
}

impl ReadBufs {
    fn take_spare() -> Box<ReadBufs> {
        SPARE_READ_BUFS.try_with(|s| s.borrow_mut().take()).ok().flatten().unwrap_or_default()
    }

    fn put_spare(mut self: Box<Self>) {
        self.hint = SeekHint::default();
        self.misses = 0;
        self.gap.valid = false;
        let (a, b, c, d) = &self.scan;
        let (e, f) = (&self.scan_start, &self.scan_end);
        let caps = [&self.start, &self.end, &self.key, &self.value, a, b, c, d, e, f]
            .map(|b| b.capacity());
        if caps.iter().all(|&c| c <= SPARE_BUF_MAX) {
            let _ = SPARE_READ_BUFS.try_with(|s| *s.borrow_mut() = Some(self));
        }
    }
}

/// What `Transaction::scan_each` calls per pair.
type Visit<'f> = dyn FnMut(ScanKey, &[u8]) -> Result<bool> + 'f;

/// The key of a pair `Transaction::scan_each_lazy` visits: the user key,
/// or the encoded version key it was read from, decoded only if asked
/// (`user_key_into`), so that a scan that reads values only does not
/// unescape every key.
#[derive(Clone, Copy)]
pub enum ScanKey<'a> {
    User(&'a [u8]),
    Version(&'a [u8]),
}

impl<'a> ScanKey<'a> {
    /// The user key where it can be read without decoding: a decoded one,
    /// or a version key of a prefix-free keyspace (`keys::PREFIX_FREE`),
    /// whose user key it holds as it is.
    #[inline]
    pub fn borrowed(&self) -> Option<&'a [u8]> {
        match *self {
            ScanKey::User(k) => Some(k),
            ScanKey::Version(raw) => keys::user_key_of(raw),
        }
    }

    /// The user key, into `out` (cleared first).
    pub fn user_key_into(&self, out: &mut Vec<u8>) -> Result<()> {
        match self {
            ScanKey::User(k) => {
                out.clear();
                out.extend_from_slice(k);
            }
            ScanKey::Version(raw) => {
                keys::decode_version_into(raw, out)?;
            }
        }
        Ok(())
    }

    /// As `user_key_into`, where `out` holds the user key decoded from the
    /// version prefix `from` (empty: none), which is then this key's:
    /// the bytes the two keys share are not unescaped again
    /// (`keys::decode_version_after`). The keys of a scan share most.
    pub fn user_key_after(&self, from: &mut Vec<u8>, out: &mut Vec<u8>) -> Result<()> {
        match self {
            ScanKey::User(k) => {
                from.clear();
                out.clear();
                out.extend_from_slice(k);
            }
            ScanKey::Version(raw) => {
                // `from` and `out` agree again only once this decodes.
                if let Err(e) = keys::decode_version_after(from, raw, out) {
                    from.clear();
                    return Err(e);
                }
                from.clear();
                from.extend_from_slice(keys::version_key_prefix(raw));
            }
        }
        Ok(())
    }
}

/// Newest committed version of `key` visible at `read_ts`, plus the
/// timestamps of versions newer than it (for SSI).
fn read_version(
    engine: &dyn Engine,
    key: &[u8],
    read_ts: Ts,
    newer: Option<&mut Vec<Ts>>,
) -> Result<Option<Vec<u8>>> {
    let mut vp = Vec::with_capacity(key.len() + 16);
    keys::version_prefix_into(key, &mut vp);
    let mut found = None;
    match newer {
        Some(newer) => {
            let mut c = engine.scan_prefix(&vp, Direction::Forward)?;
            while c.advance()? {
                let ts = keys::version_ts(c.key());
                if ts > read_ts {
                    newer.push(ts);
                    continue;
                }
                found = keys::decode_value(c.value())?.map(|v| v.to_vec());
                break;
            }
        }
        None => {
            // The version key (key, read_ts) is the prefix and the inverted timestamp.
            let mut start = Vec::with_capacity(vp.len() + 8);
            start.extend_from_slice(&vp);
            start.extend_from_slice(&(!read_ts).to_be_bytes());
            let end = prefix_successor(&vp).unwrap_or_else(keys::versions_end);
            let range = KeyRange { start: Bound::Included(start), end: Bound::Excluded(end) };
            let (mut k, mut v) = (Vec::new(), Vec::new());
            if engine.seek(&range, &mut k, &mut v)? {
                found = keys::decode_value(&v)?.map(|v| v.to_vec());
            }
        }
    }
    Ok(found)
}

/// The bounds of every version of `key`, into reused buffers: `start` its
/// version prefix, `end` the prefix's successor.
fn version_bounds_into(key: &[u8], start: &mut Vec<u8>, end: &mut Vec<u8>) {
    start.clear();
    keys::version_prefix_into(key, start);
    keys::version_prefix_end_into(start, end);
}

/// The newest committed version of `key`: its timestamp (0 if none) and
/// value (`None`: absent or deleted). Committed means ordered in the log:
/// a commit that released its row locks before its fsync (see `commit`)
/// counts, since only a lock holder asks.
///
/// After two keys found absent, the seek runs on past the key's versions
/// to the next key the engine holds, and the gap between them is
/// remembered (`Gap`): later keys inside it, while no batch was applied,
/// are absent without a seek.
fn newest_version(
    engine: &dyn Engine,
    key: &[u8],
    bufs: &mut ReadBufs,
) -> Result<(Ts, Option<Vec<u8>>)> {
    // Read before the seek it stamps (see `Engine::applied_batches`).
    let seq = engine.applied_batches();
    if bufs.gap.covers(key, seq) {
        return Ok((0, None));
    }
    let wide = seq.is_some() && bufs.misses >= 2;
    let (mut start, mut end) = (std::mem::take(&mut bufs.start), std::mem::take(&mut bufs.end));
    version_bounds_into(key, &mut start, &mut end);
    if wide {
        end.clear();
        end.extend_from_slice(&keys::versions_end());
    }
    let range = KeyRange { start: Bound::Included(start), end: Bound::Excluded(end) };
    let found = engine.seek_latest_hinted(&range, &mut bufs.key, &mut bufs.value, &mut bufs.hint);
    if let KeyRange { start: Bound::Included(s), end: Bound::Excluded(e) } = range {
        (bufs.start, bufs.end) = (s, e);
    }
    let found = found?;
    // A version of `key`: its version prefix and 8 bytes of timestamp.
    let own = found && bufs.key.len() == bufs.start.len() + 8 && bufs.key.starts_with(&bufs.start);
    // Misses in a row: a key that exists ends the run (random keys do not
    // take the wider seek for good after two misses).
    if own {
        bufs.misses = 0;
    }
    if !own {
        bufs.misses = bufs.misses.saturating_add(1);
        if let (true, Some(seq)) = (wide, seq) {
            let gap = &mut bufs.gap;
            gap.valid = false;
            gap.hi = match found {
                // The next key there is: its user key bounds the gap.
                true => {
                    let mut hi = gap.hi.take().unwrap_or_default();
                    if keys::decode_version_into(&bufs.key, &mut hi).is_err() {
                        return Ok((0, None));
                    }
                    Some(hi)
                }
                false => None,
            };
            gap.lo.clear();
            gap.lo.extend_from_slice(key);
            gap.seq = seq;
            gap.valid = true;
        }
        return Ok((0, None));
    }
    Ok((keys::version_ts(&bufs.key), keys::decode_value(&bufs.value)?.map(|v| v.to_vec())))
}

/// True if no key can lie in the range.
fn range_is_empty(r: &KeyRange) -> bool {
    match (&r.start, &r.end) {
        (Bound::Included(a), Bound::Included(b)) => a > b,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => {
            a >= b
        }
        _ => false,
    }
}

/// The bound of version keys that `b`, a bound of user keys, stands for,
/// built in `buf` (cleared first): a scan passes its reused buffers, and
/// takes them back from the range after it (`bound_buf`).
fn to_version_bound(b: &Bound<Vec<u8>>, is_start: bool, mut buf: Vec<u8>) -> Bound<Vec<u8>> {
    buf.clear();
    // The first key after every key that starts with `buf`'s, in place.
    let successor = |buf: &mut Vec<u8>| {
        if !prefix_successor_in_place(buf) {
            keys::versions_end_into(buf);
        }
    };
    match (b, is_start) {
        (Bound::Unbounded, true) => {
            keys::user_prefix_into(b"", &mut buf);
            Bound::Included(buf)
        }
        (Bound::Unbounded, false) => {
            keys::versions_end_into(&mut buf);
            Bound::Excluded(buf)
        }
        (Bound::Included(k), true) => {
            keys::version_prefix_into(k, &mut buf);
            Bound::Included(buf)
        }
        (Bound::Excluded(k), true) => {
            keys::version_prefix_into(k, &mut buf);
            successor(&mut buf);
            Bound::Included(buf)
        }
        (Bound::Included(k), false) => {
            keys::version_prefix_into(k, &mut buf);
            successor(&mut buf);
            Bound::Excluded(buf)
        }
        (Bound::Excluded(k), false) => {
            keys::version_prefix_into(k, &mut buf);
            Bound::Excluded(buf)
        }
    }
}

/// The buffer of a bound `to_version_bound` built, for the next one.
fn bound_buf(b: Bound<Vec<u8>>) -> Vec<u8> {
    match b {
        Bound::Included(v) | Bound::Excluded(v) => v,
        Bound::Unbounded => Vec::new(),
    }
}

impl Transaction {
    pub fn id(&self) -> TxnId {
        self.id
    }

    /// The snapshot this transaction (or, at READ COMMITTED, its current
    /// statement) reads at.
    pub fn read_ts(&self) -> Ts {
        self.read_ts
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn isolation(&self) -> Isolation {
        self.iso
    }

    /// Marks the transaction as changing the catalog: when it commits,
    /// `Mvcc::ddl_version` moves to its commit timestamp.
    pub fn mark_ddl(&mut self) {
        self.ddl = true;
    }

    /// True if this transaction changed the catalog.
    pub fn has_ddl(&self) -> bool {
        self.ddl
    }

    /// Starts a new statement: at READ COMMITTED, takes a fresh snapshot.
    pub fn new_statement(&mut self) {
        if self.iso == Isolation::ReadCommitted && !matches!(self.mode, Mode::AsOf(_)) {
            let mut active = self.shared.active.lock();
            let ts = self.shared.visible.load(Ordering::Acquire);
            self.read_ts = ts;
            active.insert(self.id, ts);
        }
    }

    /// SERIALIZABLE, read-only or not: tracked by SSI.
    fn serializable(&self) -> bool {
        self.iso == Isolation::Serializable
    }

    fn fail(&mut self, e: Error) -> Error {
        if matches!(e, Error::Serialization(_)) {
            self.shared.serialization_failures.fetch_add(1, Ordering::Relaxed);
        }
        e
    }

    /// Reads a key: this transaction's own write, else the snapshot.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(w) = self.writes.get(key, || key_hash(key)) {
            return Ok(w.map(<[u8]>::to_vec));
        }
        let engine = &*self.shared.engine;
        if self.serializable() {
            // Order matters. The mark comes first, so a writer that commits
            // later finds it. Then the lock: a writer that still holds it
            // (it releases it only once its commit is visible) is an edge.
            // Then the versions: a writer that already released its lock is
            // visible there, as a version newer than the snapshot.
            let ssi = &self.shared.ssi;
            ssi.mark_read(self.id, key);
            let owners: Vec<TxnId> =
                self.shared.locks.owner(key).filter(|o| *o != self.id).into_iter().collect();
            if let Err(e) = ssi.on_locked_by(self.id, &owners) {
                return Err(self.fail(e));
            }
            let mut newer = Vec::new();
            let v = read_version(engine, key, self.read_ts, Some(&mut newer))?;
            if let Err(e) = ssi.on_newer(self.id, &newer) {
                return Err(self.fail(e));
            }
            return Ok(v);
        }
        read_version(engine, key, self.read_ts, None)
    }

    /// As `get`, into `out` (cleared first; true if the key is visible),
    /// with the search buffers reused from one call to the next: a point
    /// read allocates nothing once the buffers have grown.
    pub fn get_into(&mut self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        if self.serializable() || self.writes.contains(key, || key_hash(key)) {
            out.clear();
            return Ok(match self.get(key)? {
                Some(v) => {
                    out.extend_from_slice(&v);
                    true
                }
                None => false,
            });
        }
        let bufs = self.read_bufs.get();
        let (mut start, mut end) = (std::mem::take(&mut bufs.start), std::mem::take(&mut bufs.end));
        // (key, read_ts) up to the first version of the next user key.
        version_bounds_into(key, &mut start, &mut end);
        start.extend_from_slice(&(!self.read_ts).to_be_bytes());
        let range = KeyRange { start: Bound::Included(start), end: Bound::Excluded(end) };
        let found = self.shared.engine.seek(&range, &mut bufs.key, out);
        if let KeyRange { start: Bound::Included(s), end: Bound::Excluded(e) } = range {
            (bufs.start, bufs.end) = (s, e);
        }
        if !found? {
            out.clear();
            return Ok(false);
        }
        match keys::decode_value(out)? {
            Some(_) => {
                out.remove(0);
                Ok(true)
            }
            None => {
                out.clear();
                Ok(false)
            }
        }
    }

    /// As `get_into`, into the transaction's own read buffer, which the
    /// thread's next transaction reuses (`ReadBufs`): `f` gets the value,
    /// if the key is visible. A point read allocates no buffer of its own.
    pub fn get_with<R>(
        &mut self,
        key: &[u8],
        f: impl FnOnce(&[u8]) -> Result<R>,
    ) -> Result<Option<R>> {
        let mut value = std::mem::take(&mut self.read_bufs.get().value);
        let res = match self.get_into(key, &mut value) {
            Ok(true) => f(&value).map(Some),
            Ok(false) => Ok(None),
            Err(e) => Err(e),
        };
        self.read_bufs.get().value = value;
        res
    }

    /// Reads many keys that share a prefix, `prefix ‖ keys[i]`, each as
    /// `get` reads it (this transaction's own write, else the snapshot):
    /// calls `f(i, value)` for each one that is visible, in the order
    /// given. The snapshot's versions are found by one `Engine::seeker`,
    /// which keeps where the last seek ended: keys in ascending order (a
    /// batch of rowids, sorted) share most of their descents. The prefix
    /// is escaped once. SERIALIZABLE reads key by key through `get`, which
    /// records each read for SSI.
    pub fn get_each<K: AsRef<[u8]>>(
        &mut self,
        prefix: &[u8],
        keys: &[K],
        mut f: impl FnMut(usize, &[u8]) -> Result<()>,
    ) -> Result<()> {
        /// `prefix ‖ key`, into `full`.
        fn whole<'b>(full: &'b mut Vec<u8>, prefix: &[u8], key: &[u8]) -> &'b [u8] {
            full.clear();
            full.extend_from_slice(prefix);
            full.extend_from_slice(key);
            full
        }
        let mut full = Vec::new();
        if self.serializable() {
            for (i, k) in keys.iter().enumerate() {
                if let Some(v) = self.get(whole(&mut full, prefix, k.as_ref()))? {
                    f(i, &v)?;
                }
            }
            return Ok(());
        }
        let suffix = (!self.read_ts).to_be_bytes();
        let writes = &mut self.writes;
        // `start` is 0x02 escape(prefix), then per key escape(key) 0x00
        // 0x00 !read_ts (`keys::version_prefix_into`, escaping byte-wise);
        // in a prefix-free keyspace the prefix and key as they are.
        let start = &mut self.read_bufs.get().start;
        start.clear();
        keys::user_prefix_into(prefix, start);
        let base = start.len();
        let mut seeker = self.shared.engine.seeker()?;
        for (i, k) in keys.iter().enumerate() {
            let k = k.as_ref();
            if !writes.is_empty() {
                let key = whole(&mut full, prefix, k);
                if let Some(w) = writes.get(key, || key_hash(key)) {
                    if let Some(v) = w {
                        f(i, v)?;
                    }
                    continue;
                }
            }
            // (key, read_ts): the first version there, if it is one of
            // this key's, is the one the snapshot sees.
            start.truncate(base);
            keys::key_after_prefix_into(prefix, k, start);
            let plen = start.len();
            start.extend_from_slice(&suffix);
            if let Some(v) = seeker.seek(start, plen)?
                && let Some(v) = keys::decode_value(v)?
            {
                f(i, v)?;
            }
        }
        Ok(())
    }

    /// Scans a range of user keys in either direction: the snapshot merged
    /// with this transaction's own writes.
    pub fn scan(
        &mut self,
        range: KeyRange,
        direction: Direction,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        self.scan_each(range, direction, |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            Ok(true)
        })?;
        Ok(out)
    }

    /// Streams a range of user keys in either direction, the snapshot
    /// merged with this transaction's own writes: calls `f(key, value)` for
    /// each visible pair in order until it returns false. Nothing is
    /// materialised, so a caller that needs only the first rows of a range
    /// (LIMIT, an ordered index scan) pays only for those; a caller that
    /// wants the rest resumes with a range that starts after the last key.
    ///
    /// Forward, the first version of each key at or below the snapshot is
    /// the visible one (versions sort newest first). Reverse, a key's
    /// versions arrive oldest first, so the visible one is the last at or
    /// below the snapshot before the key changes.
    pub fn scan_each(
        &mut self,
        range: KeyRange,
        direction: Direction,
        mut f: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let mut key = Vec::new();
        self.scan_inner(&range, direction, false, &mut |k, v| match k {
            ScanKey::User(k) => f(k, v),
            ScanKey::Version(raw) => {
                keys::decode_version_into(raw, &mut key)?;
                f(&key, v)
            }
        })
    }

    /// As `scan_each`, but a pair read from the snapshot comes with its
    /// encoded version key (`ScanKey::Version`), for the caller to decode
    /// only where it needs the key; pairs from this transaction's own writes
    /// (and every pair, if it has writes in the range) come as
    /// `ScanKey::User`.
    pub fn scan_each_lazy(
        &mut self,
        range: &KeyRange,
        direction: Direction,
        mut f: impl FnMut(ScanKey, &[u8]) -> Result<bool>,
    ) -> Result<()> {
        self.scan_inner(range, direction, true, &mut f)
    }

    fn scan_inner(
        &mut self,
        range: &KeyRange,
        direction: Direction,
        lazy: bool,
        f: &mut Visit,
    ) -> Result<()> {
        let ser = self.serializable();
        if ser {
            // As in `get`: the range mark, then the writers holding locks
            // in it, then the versions.
            let ssi = &self.shared.ssi;
            ssi.on_scan(self.id, range.start.clone(), range.end.clone());
            let owners = self.shared.locks.owners_in(self.id, &range.start, &range.end);
            if let Err(e) = ssi.on_locked_by(self.id, &owners) {
                return Err(self.fail(e));
            }
        }
        // Reused from scan to scan (a scan that fails drops them).
        let rb = self.read_bufs.get();
        let mut bufs = std::mem::take(&mut rb.scan);
        let vrange = KeyRange {
            start: to_version_bound(&range.start, true, std::mem::take(&mut rb.scan_start)),
            end: to_version_bound(&range.end, false, std::mem::take(&mut rb.scan_end)),
        };
        let reverse = direction == Direction::Reverse;
        let read_ts = self.read_ts;
        let mut newer = Vec::new();
        bufs.0.clear();
        bufs.3.clear();
        {
            // The write set's entries in the range, in scan order.
            let mine = (!range_is_empty(range) && !self.writes.is_empty())
                .then(|| self.writes.range(&range.start, &range.end, reverse));
            let mut mine = mine.into_iter().flatten().peekable();
            // Without own writes to merge, keys need not be decoded to be
            // compared with them.
            let alone = mine.peek().is_none();
            let lazy = lazy && alone;
            // Emits a snapshot pair, after the own writes that come before
            // it; an own write of the same key replaces it.
            let mut emit = |k: &[u8], v: &[u8], f: &mut Visit| {
                while let Some((wk, wv)) = mine.peek() {
                    let before = if reverse { *wk > k } else { *wk < k };
                    if before {
                        if let Some(wv) = wv
                            && !f(ScanKey::User(wk), wv)?
                        {
                            return Ok(false);
                        }
                        mine.next();
                    } else if *wk == k {
                        let w = *wv;
                        mine.next();
                        return match w {
                            Some(wv) => f(ScanKey::User(k), wv),
                            None => Ok(true),
                        };
                    } else {
                        break;
                    }
                }
                f(ScanKey::User(k), v)
            };
            let (current, key, val, from) = (&mut bufs.0, &mut bufs.1, &mut bufs.2, &mut bufs.3);
            let mut stopped = false;
            // The cursor borrows the bounds, which go back to the buffers.
            self.shared.engine.with_cursor(&vrange, direction, &mut |c| {
                // The user key of `raw` into `key`, from the key decoded last
                // (`from`): neighbours share most of their bytes.
                let decode = |raw: &[u8], key: &mut Vec<u8>, from: &mut Vec<u8>| -> Result<()> {
                    keys::decode_version_after(from, raw, key)?;
                    from.clear();
                    from.extend_from_slice(keys::version_key_prefix(raw));
                    Ok(())
                };
                if !reverse {
                    let mut done_key = false;
                    while c.advance()? {
                        let raw = c.key();
                        let p = keys::version_key_prefix(raw);
                        if !keys::same_prefix(p, current) {
                            current.clear();
                            current.extend_from_slice(p);
                            done_key = false;
                        }
                        if done_key {
                            continue;
                        }
                        let ts = keys::version_ts(raw);
                        if ts > read_ts {
                            if ser {
                                newer.push(ts);
                            }
                            continue;
                        }
                        done_key = true;
                        if let Some(v) = keys::decode_value(c.value())? {
                            let more = if lazy {
                                f(ScanKey::Version(raw), v)?
                            } else {
                                decode(raw, key, from)?;
                                emit(key, v, f)?
                            };
                            if !more {
                                stopped = true;
                                break;
                            }
                        }
                    }
                } else {
                    // The candidate of the current key: (seen, tombstone, value).
                    // Versions of a key come oldest first, so the newest
                    // visible one is known only when the next entry is another
                    // key's or too new. Where the cursor can tell the next key
                    // without moving (`Cursor::peek_key`: within a leaf), that
                    // version is passed on where it lies; else it is copied
                    // (`val`, with its prefix in `current`) and passed on when
                    // the key changes.
                    let (mut seen, mut tomb) = (false, false);
                    // Whether `key` holds the user key of `current` (else of
                    // `from`, as `decode` left it): at the next key, `current`
                    // then becomes `from` by a swap rather than a copy.
                    let mut decoded = false;
                    // Whether `current` holds the user key as it is (a
                    // prefix-free keyspace's): then it is not decoded.
                    let mut raw_key = false;
                    // (Without own writes, straight to `f`: `emit` is a call.)
                    let mut out = |k: &[u8], v: &[u8], f: &mut Visit| match alone {
                        true => f(ScanKey::User(k), v),
                        false => emit(k, v, f),
                    };
                    loop {
                        let more = c.advance()?;
                        if seen {
                            let p =
                                if more { Some(keys::version_key_prefix(c.key())) } else { None };
                            if !p.is_some_and(|p| keys::same_prefix(p, current)) {
                                seen = false;
                                let user_key = match raw_key {
                                    true => keys::prefix_user_key(current).unwrap_or_default(),
                                    false => key.as_slice(),
                                };
                                if !tomb && !out(user_key, val, f)? {
                                    stopped = true;
                                    break;
                                }
                            }
                        }
                        if !more {
                            break;
                        }
                        let raw = c.key();
                        let ts = keys::version_ts(raw);
                        if ts > read_ts {
                            if ser {
                                newer.push(ts);
                            }
                            continue;
                        }
                        let p = keys::version_key_prefix(raw);
                        if let Some(user_key) = keys::prefix_user_key(p)
                            && let Some(next) = c.peek_key()
                        {
                            if keys::same_prefix(keys::version_key_prefix(next), p)
                                && keys::version_ts(next) <= read_ts
                            {
                                // A newer visible version of the key follows.
                                continue;
                            }
                            // The newest visible version (a pending older one
                            // of the key is superseded).
                            seen = false;
                            if let Some(v) = keys::decode_value(c.value())?
                                && !out(user_key, v, f)?
                            {
                                stopped = true;
                                break;
                            }
                            continue;
                        }
                        if !seen {
                            if std::mem::take(&mut decoded) {
                                std::mem::swap(current, from);
                            }
                            current.clear();
                            current.extend_from_slice(p);
                            raw_key = keys::prefix_user_key(current).is_some();
                            if !raw_key {
                                keys::decode_version_after(from, raw, key)?;
                                decoded = true;
                            }
                            seen = true;
                        }
                        match keys::decode_value(c.value())? {
                            None => tomb = true,
                            Some(v) => {
                                tomb = false;
                                val.clear();
                                val.extend_from_slice(v);
                            }
                        }
                    }
                }
                Ok(())
            })?;
            if !stopped {
                for (wk, wv) in mine {
                    if let Some(wv) = wv
                        && !f(ScanKey::User(wk), wv)?
                    {
                        break;
                    }
                }
            }
        }
        let rb = self.read_bufs.get();
        rb.scan = bufs;
        rb.scan_start = bound_buf(vrange.start);
        rb.scan_end = bound_buf(vrange.end);
        if ser && let Err(e) = self.shared.ssi.on_newer(self.id, &newer) {
            return Err(self.fail(e));
        }
        Ok(())
    }

    /// Sets a key.
    pub fn set(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.write(key, Some(value))
    }

    /// Sets a key that no other transaction can have written or be
    /// writing, because this one made it up (a key holding a rowid fresh
    /// from the database's counters): no row lock and no look for a newer
    /// version, which such a key cannot have. At SERIALIZABLE it is an
    /// ordinary `set`, so that SSI sees the write through the lock table as
    /// usual.
    ///
    /// The caller sets each such key at most once, unless this transaction
    /// wrote it (`set`, `delete`) since: the rowid is new to the table (a
    /// counter's, or a key rowid whose row key the unique check found
    /// absent), so only a deletion of the row, which deletes its index
    /// entries too, frees it again. The write set then skips its lookup for
    /// a key that `set` and `delete` never wrote (`WriteSet::put_fresh`).
    pub fn set_fresh(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        if self.serializable() {
            return self.set(key, value);
        }
        self.check_write(key, value.len())?;
        if !self.expected {
            self.expected = true;
            self.shared.engine.expect_writers(1);
        }
        match &mut self.fresh_prefix {
            None => self.fresh_prefix = Some(key.to_vec()),
            Some(p) if !key.starts_with(p) => p.truncate(writeset::common_prefix(p, key)),
            Some(_) => {}
        }
        self.put(key, key_hash(key), Some(value), true)
    }

    /// Whether `set_fresh` may have written `key` (it has the prefix all
    /// its keys share).
    fn maybe_fresh(&self, key: &[u8]) -> bool {
        self.fresh_prefix.as_ref().is_some_and(|p| key.starts_with(p))
    }

    /// Puts a write into the write set (the key is locked, or fresh).
    /// `fresh`: from `set_fresh` (see there).
    fn put(&mut self, key: &[u8], hash: u64, value: Option<&[u8]>, fresh: bool) -> Result<()> {
        let keep_old = !self.savepoints.is_empty();
        let undo = if fresh {
            self.writes.put_fresh(key, hash, value, keep_old)?
        } else {
            self.writes.put(key, hash, value, keep_old)?
        };
        self.write_bytes +=
            BATCH_OVERHEAD + keys::version_key_len(key) + value.map_or(0, <[u8]>::len);
        if keep_old {
            self.undo.push(undo);
        }
        Ok(())
    }

    /// The limits every write obeys: not read-only, key and value sizes.
    fn check_write(&self, key: &[u8], value_len: usize) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly(format!(
                "transaction {} is read-only (a write to a key was attempted)",
                self.id
            )));
        }
        if crate::MAX_KEY_LEN < key.len() {
            return Err(Error::InvalidInput(format!(
                "key of {} bytes exceeds the limit of {} bytes",
                key.len(),
                crate::MAX_KEY_LEN
            )));
        }
        if value_len > qube_storage::MAX_VALUE_LEN - 1 {
            return Err(Error::InvalidInput(format!(
                "value of {} bytes exceeds the limit of {} bytes",
                value_len,
                qube_storage::MAX_VALUE_LEN - 1
            )));
        }
        Ok(())
    }

    /// Deletes a key (deleting a missing key is not an error).
    pub fn delete(&mut self, key: &[u8]) -> Result<()> {
        self.write(key, None)
    }

    /// Takes the row lock of `key` and returns its newest committed value:
    /// at READ COMMITTED whatever committed last (PostgreSQL re-reads the
    /// row after waiting), at REPEATABLE READ and SERIALIZABLE the snapshot's
    /// value, or a serialization error if a newer one committed.
    pub fn get_for_update(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if self.serializable() {
            // A locked read is still a read: a writer of this key after we
            // commit is an rw-dependency.
            self.shared.ssi.mark_read(self.id, key);
        }
        let hash = key_hash(key);
        let fresh = self.lock_key(key, hash)?;
        // Our own write comes first. Every key `write` wrote holds its row
        // lock (taken before the write, kept to the end: a savepoint's
        // rollback keeps it too), so a lock just taken means no own write
        // of the key, unless `set_fresh` (which takes none) wrote it: then
        // the write set need not be searched. A bulk INSERT's unique
        // checks of new keys skip it so (and their rows then take no slot
        // in its hash index, `writeset.rs`).
        if (fresh.is_none() || self.maybe_fresh(key))
            && let Some(w) = self.writes.get(key, || hash)
        {
            return Ok(w.map(<[u8]>::to_vec));
        }
        self.writes.note_absent(key);
        if let Some(newest) = fresh {
            // Just locked: the newest version is the one to return (at
            // snapshot levels `lock_key` checked it is not past the snapshot).
            return Ok(newest);
        }
        if self.iso == Isolation::ReadCommitted {
            // What we write over: the newest version, even one whose commit
            // released its locks early and is not durable yet.
            return Ok(self.newest_locked(key)?.1);
        }
        read_version(&*self.shared.engine, key, self.read_ts, None)
    }

    /// The row lock of an UPDATE or DELETE by key, taken before the row is
    /// read, so that one look at the key serves both: if the lock is free
    /// (no waiting), this transaction neither holds nor wrote the key, and
    /// it is not SERIALIZABLE or read-only, the lock is taken
    /// *tentatively* and the newest committed version is returned with its
    /// timestamp (0 if none). It is the snapshot's version too if that
    /// timestamp is not past `read_ts`. The caller then does what reading
    /// the snapshot and `get_for_update` would have done: where that way
    /// would not have locked the row (absent from the snapshot, or failing
    /// the statement's conditions there), it gives the lock back
    /// (`unlock_tentative`); else it keeps it (`keep_lock`, which at
    /// REPEATABLE READ fails with 40001 if a commit changed the key since
    /// the snapshot). Otherwise (`None`) nothing is taken: the usual way.
    pub fn lock_if_free(&mut self, key: &[u8]) -> Result<Option<(Ts, Option<Vec<u8>>)>> {
        if self.serializable() || self.read_only || crate::MAX_KEY_LEN < key.len() {
            return Ok(None);
        }
        let hash = key_hash(key);
        if self.writes.contains(key, || hash) {
            return Ok(None);
        }
        let s = &*self.shared;
        if !s.locks.try_lock(self.id, key, hash, &mut self.locked) {
            return Ok(None);
        }
        match newest_version(&*s.engine, key, self.read_bufs.get()) {
            Ok(found) => Ok(Some(found)),
            Err(e) => {
                s.locks.unlock(self.id, key, hash, &mut self.locked);
                Err(e)
            }
        }
    }

    /// Keeps the lock `lock_if_free` took tentatively; `latest` is the
    /// timestamp it returned. As `get_for_update` at REPEATABLE READ, a
    /// newer commit than the snapshot is a serialization failure (the lock
    /// stays held, as it does there).
    pub fn keep_lock(&mut self, key: &[u8], latest: Ts) -> Result<()> {
        if !self.expected {
            self.expected = true;
            self.shared.engine.expect_writers(1);
        }
        self.writes.note_absent(key);
        self.newly_locked(key, latest)
    }

    /// What taking `key`'s lock anew entails, once its newest version
    /// (committed at `latest`) is read: the key is the last locked, a GC
    /// candidate if it has versions, a commit this one depends on (which
    /// may have released its locks before it was durable), and at
    /// REPEATABLE READ and SERIALIZABLE a serialization failure if that
    /// commit is newer than the snapshot (the lock stays held).
    fn newly_locked(&mut self, key: &[u8], latest: Ts) -> Result<()> {
        self.last_locked.clear();
        self.last_locked.extend_from_slice(key);
        if latest > 0 {
            self.gc_candidates.push(key.to_vec());
        }
        self.depends_on = self.depends_on.max(latest);
        if self.iso != Isolation::ReadCommitted && latest > self.read_ts {
            return Err(self.changed_since_snapshot(latest));
        }
        Ok(())
    }

    /// Gives back a lock `lock_if_free` took tentatively (not kept).
    pub fn unlock_tentative(&mut self, key: &[u8]) {
        self.shared.locks.unlock(self.id, key, key_hash(key), &mut self.locked);
    }

    /// The serialization failure of a write to a key that a commit newer
    /// than the snapshot changed.
    fn changed_since_snapshot(&mut self, latest: Ts) -> Error {
        let e = Error::Serialization(format!(
            "could not serialize access due to concurrent update (key written by commit \
             {latest}, after this transaction's snapshot {})",
            self.read_ts
        ));
        self.fail(e)
    }

    /// The newest committed version of `key`, whose lock this transaction
    /// holds (`newest_version`); noted in `depends_on`, since that commit
    /// may have released its locks before it was durable.
    fn newest_locked(&mut self, key: &[u8]) -> Result<(Ts, Option<Vec<u8>>)> {
        let found = newest_version(&*self.shared.engine, key, self.read_bufs.get())?;
        self.depends_on = self.depends_on.max(found.0);
        Ok(found)
    }

    /// Takes the row lock; if it was not held yet, returns the newest
    /// committed value of the key (checked against the snapshot at
    /// REPEATABLE READ and SERIALIZABLE).
    fn lock_key(&mut self, key: &[u8], hash: u64) -> Result<Option<Option<Vec<u8>>>> {
        if self.read_only {
            return Err(Error::ReadOnly(format!(
                "transaction {} is read-only (a write to a key was attempted)",
                self.id
            )));
        }
        if crate::MAX_KEY_LEN < key.len() {
            return Err(Error::InvalidInput(format!(
                "key of {} bytes exceeds the limit of {} bytes",
                key.len(),
                crate::MAX_KEY_LEN
            )));
        }
        if !self.expected {
            self.expected = true;
            self.shared.engine.expect_writers(1);
        }
        let engine = &*self.shared.engine;
        let blocked = |b: bool| engine.expect_writers(if b { -1 } else { 1 });
        let ser = self.serializable();
        let (locks, timeout) = (&self.shared.locks, self.shared.opts.lock_timeout);
        if locks.lock(self.id, key, hash, ser, &mut self.locked, timeout, blocked)? {
            let (latest, newest) = newest_version(&*self.shared.engine, key, self.read_bufs.get())?;
            self.newly_locked(key, latest)?;
            if self.serializable()
                && let Err(e) = self.shared.ssi.on_write(self.id, key)
            {
                return Err(self.fail(e));
            }
            return Ok(Some(newest));
        }
        Ok(None)
    }

    fn write(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        if let Some(v) = value
            && v.len() > qube_storage::MAX_VALUE_LEN - 1
        {
            return Err(Error::InvalidInput(format!(
                "value of {} bytes exceeds the limit of {} bytes",
                v.len(),
                qube_storage::MAX_VALUE_LEN - 1
            )));
        }
        // The key locked last (a unique check's `get_for_update` just
        // before this write) is held: `lock_key` would find it so in the
        // lock table and do nothing else.
        let hash = key_hash(key);
        if self.locked.is_empty() || self.last_locked != key {
            self.lock_key(key, hash)?;
        }
        self.put(key, hash, value, false)
    }

    /// SAVEPOINT name.
    pub fn savepoint(&mut self, name: &str) {
        self.savepoints.push((name.to_string(), self.undo.len()));
    }

    /// ROLLBACK TO SAVEPOINT name: undoes the writes made after it (the
    /// savepoint stays, as in PostgreSQL).
    pub fn rollback_to(&mut self, name: &str) -> Result<()> {
        let Some(i) = self.savepoints.iter().rposition(|(n, _)| n == name) else {
            return Err(Error::InvalidInput(format!("savepoint \"{name}\" does not exist")));
        };
        let mark = self.savepoints[i].1;
        self.savepoints.truncate(i + 1);
        while self.undo.len() > mark {
            if let Some(u) = self.undo.pop() {
                self.writes.undo(u);
            }
        }
        Ok(())
    }

    /// RELEASE SAVEPOINT name: forgets it and every later savepoint.
    pub fn release(&mut self, name: &str) -> Result<()> {
        let Some(i) = self.savepoints.iter().rposition(|(n, _)| n == name) else {
            return Err(Error::InvalidInput(format!("savepoint \"{name}\" does not exist")));
        };
        self.savepoints.truncate(i);
        if self.savepoints.is_empty() {
            self.undo.clear();
        }
        Ok(())
    }

    /// Commits; durable when it returns. Returns the commit timestamp (the
    /// snapshot timestamp for a transaction that wrote nothing).
    pub fn commit(mut self) -> Result<Ts> {
        let res = self.commit_inner();
        self.finish(res.is_ok());
        res
    }

    fn commit_inner(&mut self) -> Result<Ts> {
        if self.writes.is_empty() {
            if self.serializable() {
                // A pivot with nothing written cannot break serializability
                // by committing, but a doomed T_in must still go.
                if let Err(e) = self.shared.ssi.commit(self.id, self.read_ts, std::iter::empty()) {
                    return Err(self.fail(e));
                }
            }
            if self.depends_on > self.shared.visible.load(Ordering::Acquire) {
                // A locked read saw a commit that is not durable yet: this
                // commit, which writes nothing to order after it, waits
                // for it by making the log durable.
                self.shared.engine.flush()?;
            }
            return Ok(self.read_ts);
        }
        let s = self.shared.clone();
        let (ts, lsn) = {
            let mut c = s.commit.lock();
            let ts = c.last + 1;
            if self.serializable()
                && let Err(e) = s.ssi.commit(self.id, ts, self.writes.keys())
            {
                return Err(self.fail(e));
            }
            let mut batch = WriteBatch::with_capacity(self.write_bytes + 64);
            let mut k = Vec::new();
            let mut prev = None;
            for (key, value) in self.writes.sorted() {
                if keys::version_key_after(prev, key, ts, &mut k) {
                    // Two entries of one key: a `set_fresh` caller broke
                    // its contract (see there). Refused, not committed
                    // with either value.
                    return Err(Error::Internal(format!(
                        "the write set holds key {key:02x?} twice"
                    )));
                }
                prev = Some(key);
                let (tag, rest) = keys::value_tag(value);
                batch.set_tagged(&k, tag, rest);
            }
            batch.set(&Key::LastCommit.encode(), &ts.to_be_bytes());
            let now = now_micros();
            if now.saturating_sub(c.last_time_record) >= COMMIT_TIME_EVERY_MICROS {
                batch.set(&Key::CommitTime(ts).encode(), &now.to_be_bytes());
                c.last_time_record = now;
            }
            let lsn = s.engine.write_nowait(batch)?;
            c.last = ts;
            (ts, lsn)
        };
        self.stop_expecting();
        if !self.serializable() {
            // Early lock release: the batch is ordered in the log, so a
            // writer that now takes one of these locks and builds on this
            // commit's versions commits after it in the log, and can only
            // be durable (and acknowledged) if this commit is. Waiting
            // writers go on during the fsync instead of after it, and their
            // commits can share the next one (a hot row no longer costs a
            // sync per update). Readers still see the commit only once it
            // is durable (`visible`). SERIALIZABLE keeps its locks until
            // the end, for the SSI checks that look at lock owners.
            s.locks.release(self.id, &mut self.locked);
        }
        s.engine.wait_durable(lsn)?;
        // Before `visible`: whoever sees this commit sees its DDL version.
        if self.ddl {
            s.ddl_version.fetch_max(ts, Ordering::AcqRel);
        }
        // Every commit up to `ts` is durable and visible in the engine now
        // (batches become visible in log order).
        s.visible.fetch_max(ts, Ordering::AcqRel);
        let deleted = self.writes.deleted().map(<[u8]>::to_vec);
        let mut g = s.gc_keys.lock();
        if !g.full {
            g.keys.extend(deleted);
            g.keys.extend(std::mem::take(&mut self.gc_candidates));
        }
        Ok(ts)
    }

    /// Rolls back (also what dropping an unfinished transaction does).
    pub fn rollback(mut self) {
        self.finish(false);
    }

    fn stop_expecting(&mut self) {
        if self.expected {
            self.expected = false;
            self.shared.engine.expect_writers(-1);
        }
    }

    fn finish(&mut self, committed: bool) {
        if self.done {
            return;
        }
        self.done = true;
        self.stop_expecting();
        let s = &self.shared;
        s.locks.release(self.id, &mut self.locked);
        if self.serializable() && !committed {
            s.ssi.abort(self.id);
        }
        s.active.lock().remove(&self.id);
        if committed {
            s.commits.fetch_add(1, Ordering::Relaxed);
        } else {
            s.rollbacks.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        self.finish(false);
        if let Some(b) = self.read_bufs.0.take() {
            b.put_spare();
        }
    }
}
