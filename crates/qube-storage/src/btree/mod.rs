//! The B+Tree engine: a copy-on-write B+Tree on 8 KiB pages, a buffer pool,
//! and a logical WAL.
//!
//! # Data directory
//!
//! ```text
//! DIR/LOCK       held with an exclusive file lock while open (one process only)
//! DIR/data.qdb   the page file: pages 0 and 1 are the two meta copies, then tree,
//!                overflow and free-list pages (formats in `page.rs`)
//! DIR/wal/       WAL segments (qube-wal): one record per committed batch
//! ```
//!
//! # Versions and durability
//!
//! Every committed batch makes a new immutable *version* of the tree (a root
//! page id): the batch shadows every page it changes (see `write.rs`). So:
//!
//! * readers take the current version (`ArcSwap`, no lock) and read without
//!   locks, concurrently with the one writer;
//! * a **checkpoint** fsyncs the WAL, writes every dirty page in the pool
//!   (the newest version's, and older ones' that readers may still hold),
//!   then the free list, fsyncs, and switches the root atomically by writing
//!   the other meta page and fsyncing again (the valid copy with the higher
//!   sequence wins). The
//!   pages of the previous checkpoint are never overwritten before that
//!   switch, so a crash at any point leaves one consistent tree on disk;
//! * a dirty page can be written to its place at any moment (eviction,
//!   spilling), since no checkpoint references pages allocated after it;
//! * **recovery** opens the newest valid checkpoint and replays the WAL
//!   records after its LSN through the same code path as live writes.
//!
//! Commit protocol (`write`): under the writer lock apply the batch to
//! private pages and install the new version as the writer's head, then
//! append the WAL record (a failed append poisons the engine, since the head
//! now holds a batch the log does not); release the lock; wait for the WAL
//! to be durable (group commit: other writers proceed and share the fsync);
//! then publish every version up to this one to readers. A reader never
//! sees a batch before it is durable, except through `seek_latest`, which
//! MVCC's row-lock holders use to build on the newest applied batch.
//!
//! # Garbage
//!
//! Pages a batch replaced stay readable while any reader holds an older
//! version. Each version holds an `Arc<GarbageBag>`; bag *n* holds the
//! pages that commit *n+1* replaced and an `Arc` to bag *n+1*, so bag *n*
//! drops exactly when no version ≤ *n* is held any more, and then hands its
//! pages to the allocator (`alloc.rs` says when they are reused).
//!
//! # Not built yet
//!
//! Checkpoints hold the writer lock while they write (readers continue);
//! separators are whole keys (no prefix truncation); freed space at the end
//! of the file is returned to the file system only when it is a free tail.

mod alloc;
mod file;
mod page;
mod pool;
mod read;
mod verify;
mod write;

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use parking_lot::{Condvar, Mutex};
use qube_common::{Error, Result};
use qube_wal::{Wal, WalOptions};

use crate::{Cursor, Direction, Durability, Engine, KeyRange, Op, Status, WriteBatch};
use alloc::{Allocator, Released};
use file::PageFile;
use page::*;
use pool::BufferPool;
use write::{Buffers, Txn};

pub(crate) use read::LeafMemo;
pub use verify::VerifyReport;

/// Compaction runs only on files of at least this many pages, and moves
/// at most this many pages per checkpoint (32 MiB of copying).
const COMPACT_MIN_PAGES: u64 = 64;
const COMPACT_MAX_PAGES: usize = 4096;

/// Longest a committer waits for a concurrent writer to reach the log
/// before syncing (see `Inner::wait_durable`).
const GROUP_COMMIT_WAIT: Duration = Duration::from_micros(100);
/// Longest a committer waits for writers that are only expected
/// (`Engine::expect_writers`): shorter, as they may be waiting on a client.
const GROUP_COMMIT_EXPECT_WAIT: Duration = Duration::from_micros(50);

/// Name of the page file inside a data directory.
pub const DATA_FILE: &str = "data.qdb";
const LOCK_FILE: &str = "LOCK";
const WAL_DIR: &str = "wal";

/// Configuration of a [`BTreeEngine`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Buffer pool capacity in bytes (at least 24 pages; an eighth of it,
    /// at least 8 pages, is the writer's share for pages a batch changes).
    pub pool_bytes: usize,
    /// When a commit is acknowledged.
    pub durability: Durability,
    /// Take a checkpoint once this much WAL was written since the last one.
    pub checkpoint_wal_bytes: u64,
    /// Take a checkpoint at least this often while there are writes (None: only by size).
    pub checkpoint_interval: Option<Duration>,
    /// WAL segment size.
    pub wal_segment_bytes: u64,
    /// Take a checkpoint when the engine is dropped (clean shutdown).
    pub checkpoint_on_close: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            pool_bytes: 64 << 20,
            durability: Durability::Always,
            checkpoint_wal_bytes: 64 << 20,
            checkpoint_interval: Some(Duration::from_secs(60)),
            wal_segment_bytes: 64 << 20,
            checkpoint_on_close: true,
        }
    }
}

/// One immutable state of the tree.
pub(crate) struct Version {
    root: PageId,
    /// The root page itself, pinned: every lookup starts here, so readers
    /// skip the buffer pool (and its shard lock) for it.
    root_page: Option<Arc<Page>>,
    lsn: u64,
    keys: u64,
    bag: Arc<GarbageBag>,
}

/// Pages the next commit replaced; see the module docs.
struct GarbageBag {
    pages: Mutex<Vec<Released>>,
    next: OnceLock<Arc<GarbageBag>>,
    sink: Arc<Mutex<Vec<Released>>>,
}

impl GarbageBag {
    fn new(sink: Arc<Mutex<Vec<Released>>>) -> Arc<GarbageBag> {
        Arc::new(GarbageBag { pages: Mutex::new(Vec::new()), next: OnceLock::new(), sink })
    }
}

impl Drop for GarbageBag {
    fn drop(&mut self) {
        // Unlink the chain iteratively: a reader that held a version during
        // a million commits must not make this drop recurse a million deep.
        let mut released = std::mem::take(&mut *self.pages.lock());
        let mut next = self.next.take();
        while let Some(arc) = next {
            match Arc::try_unwrap(arc) {
                Ok(mut bag) => {
                    released.append(&mut bag.pages.lock());
                    next = bag.next.take();
                }
                Err(_) => break,
            }
        }
        if !released.is_empty() {
            self.sink.lock().append(&mut released);
        }
    }
}

/// State only the writer touches (under `Inner::writer`).
struct Writer {
    head: Arc<Version>,
    alloc: Allocator,
    meta: Meta,
    bufs: Buffers,
    discard: Vec<PageId>,
    /// Checkpoint bookkeeping for the background thread.
    wal_bytes_at_checkpoint: u64,
    last_checkpoint: Instant,
}

struct Inner {
    dir: PathBuf,
    file: Arc<PageFile>,
    pool: BufferPool,
    wal: Wal,
    opts: Options,
    current: ArcSwap<Version>,
    writer: Mutex<Writer>,
    /// Versions committed but not yet durable, oldest first.
    pending: Mutex<VecDeque<Arc<Version>>>,
    poison: Mutex<Option<String>>,
    /// Writers between entering `write_nowait` and appending to the WAL:
    /// a committer about to sync waits briefly for them, so that one fsync
    /// covers them too (group commit that batches).
    applying: AtomicU64,
    /// Writers announced by `Engine::expect_writers` that have not yet
    /// reached `write_nowait`.
    expected: AtomicI64,
    /// Batches applied and seen by `seek_latest` (`Engine::applied_batches`):
    /// raised after the version is in `pending`.
    applied_batches: AtomicU64,
    private_limit: usize,
    checkpoints: AtomicU64,
    /// Pages moved by compaction since open.
    relocated: AtomicU64,
    /// Test hook, see `BTreeEngine::before_meta_write`.
    #[allow(clippy::type_complexity)]
    before_meta: Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
    checkpoint_lsn: AtomicU64,
    _lock: File,
}

/// Tells the checkpoint thread to stop: a flag and a condvar to wake it.
type StopSignal = (Mutex<bool>, Condvar);

/// The B+Tree [`Engine`]. See the module docs.
pub struct BTreeEngine {
    inner: Arc<Inner>,
    background: Option<(Arc<StopSignal>, JoinHandle<()>)>,
}

impl BTreeEngine {
    /// `Engine::seek` in version `v`. Most seeks end in the first leaf they
    /// reach; one whose first pair lies in a later leaf walks there with a
    /// cursor, which holds the version `owned` gives it.
    /// The newest applied version: the newest not yet published, if any,
    /// else the current one (`publish` moves versions from `pending` to
    /// `current` under the same lock, so one of the two is the newest
    /// applied batch). Its pages are immutable: a later batch shadows what
    /// it changes.
    fn latest(&self) -> Arc<Version> {
        let pending = self.inner.pending.lock();
        match pending.back() {
            Some(v) => v.clone(),
            None => self.inner.current.load_full(),
        }
    }

    fn seek_in(
        &self,
        v: &Version,
        owned: impl FnOnce() -> Arc<Version>,
        range: &KeyRange,
        key: &mut Vec<u8>,
        value: &mut Vec<u8>,
    ) -> Result<bool> {
        let fast = read::seek(&self.inner.pool, v, range, key, value)
            .map_err(|e| locate(e, self.inner.file.path()))?;
        if let Some(found) = fast {
            return Ok(found);
        }
        let mut c = read::BTreeCursor::new(
            &self.inner.pool,
            owned(),
            Cow::Borrowed(range),
            Direction::Forward,
        );
        crate::copy_next(&mut c, key, value)
    }

    /// Opens a data directory, creating it if it does not exist or is empty.
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Self> {
        let inner = Arc::new(Inner::open(dir.as_ref(), opts)?);
        let background = if inner.opts.checkpoint_interval.is_some()
            || inner.opts.checkpoint_wal_bytes < u64::MAX
        {
            let stop = Arc::new((Mutex::new(false), Condvar::new()));
            let weak = Arc::downgrade(&inner);
            let s2 = stop.clone();
            let handle = std::thread::Builder::new()
                .name("qubedb-checkpoint".into())
                .spawn(move || checkpoint_loop(weak, s2))
                .map_err(|e| Error::io("starting the checkpoint thread", e))?;
            Some((stop, handle))
        } else {
            None
        };
        Ok(BTreeEngine { inner, background })
    }

    /// Walks the whole tree and the free list, checking checksums, order,
    /// links, fill and page accounting. Takes a checkpoint first so that
    /// what is checked is what is on disk.
    pub fn verify(&self) -> Result<VerifyReport> {
        self.inner.checkpoint()?;
        let w = self.inner.writer.lock();
        verify::verify(&self.inner.file, &w.meta, &w.alloc)
    }

    /// Closes the engine, taking a final checkpoint; reports its error.
    pub fn close(mut self) -> Result<()> {
        self.stop_background();
        if self.inner.opts.checkpoint_on_close && self.inner.poison.lock().is_none() {
            self.inner.checkpoint()?;
        }
        Ok(())
    }

    fn stop_background(&mut self) {
        if let Some((stop, handle)) = self.background.take() {
            *stop.0.lock() = true;
            stop.1.notify_all();
            let _ = handle.join();
        }
    }

    /// Test hook: the next fsync of the data file fails.
    #[doc(hidden)]
    pub fn fail_next_data_sync(&self) {
        self.inner.file.fail_next_sync();
    }

    /// Test hook: `f` runs just before every meta page write (the pages of
    /// the checkpoint are synced, the old meta is still the durable one):
    /// crash tests copy the directory there.
    #[doc(hidden)]
    pub fn before_meta_write(&self, f: impl Fn() + Send + Sync + 'static) {
        *self.inner.before_meta.lock() = Some(Box::new(f));
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }
}

impl Drop for BTreeEngine {
    fn drop(&mut self) {
        self.stop_background();
        if self.inner.opts.checkpoint_on_close && self.inner.poison.lock().is_none() {
            let _ = self.inner.checkpoint();
        }
    }
}

fn checkpoint_loop(inner: Weak<Inner>, stop: Arc<StopSignal>) {
    loop {
        {
            let mut stopped = stop.0.lock();
            if *stopped {
                return;
            }
            stop.1.wait_for(&mut stopped, Duration::from_millis(100));
            if *stopped {
                return;
            }
        }
        let Some(inner) = inner.upgrade() else { return };
        if inner.poison.lock().is_some() {
            continue;
        }
        let due = {
            let w = inner.writer.lock();
            let written = inner.wal.disk_bytes().saturating_sub(w.wal_bytes_at_checkpoint);
            let dirty = w.head.lsn > w.meta.checkpoint_lsn;
            dirty
                && (written >= inner.opts.checkpoint_wal_bytes
                    || inner
                        .opts
                        .checkpoint_interval
                        .is_some_and(|i| w.last_checkpoint.elapsed() >= i))
        };
        if due {
            // A failure poisons the engine; writers will report it.
            let _ = inner.checkpoint();
        }
    }
}

impl Inner {
    fn open(dir: &Path, opts: Options) -> Result<Inner> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating data directory {}", dir.display()), e))?;
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LOCK_FILE))
            .map_err(|e| Error::io(format!("opening {}", dir.join(LOCK_FILE).display()), e))?;
        // A child process forked by any thread of this process shares the
        // lock until it execs (then the close-on-exec descriptor closes):
        // retry briefly before calling the directory busy.
        let deadline = Instant::now() + Duration::from_millis(500);
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(Error::Refused(format!(
                        "data directory {} is in use by another QubeDB process",
                        dir.display()
                    )));
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(Error::io(format!("locking {}", dir.display()), e));
                }
            }
        }
        let data_path = dir.join(DATA_FILE);
        // An empty data file is what a crash during creation leaves.
        let empty = std::fs::metadata(&data_path).is_ok_and(|m| m.len() == 0);
        let created = if !data_path.exists() || empty {
            let foreign: Vec<String> = std::fs::read_dir(dir)
                .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != LOCK_FILE && !(empty && (n == DATA_FILE || n == WAL_DIR)))
                .collect();
            if !foreign.is_empty() {
                return Err(Error::Refused(format!(
                    "{} is not a QubeDB data directory (it holds {} but no {DATA_FILE}); \
                     use an empty or new directory",
                    dir.display(),
                    foreign.join(", ")
                )));
            }
            create_data_file(&data_path)?;
            sync_dir(dir)?;
            true
        } else {
            false
        };
        let file = Arc::new(PageFile::open(&data_path, false)?);
        let meta = read_meta(&file)?;
        let (free, freelist_pages) = load_freelist(&file, &meta)?;
        let capacity_pages = (opts.pool_bytes / PAGE_SIZE).max(24);
        let private_limit = (capacity_pages / 8).max(8);
        let pool = BufferPool::new(file.clone(), capacity_pages - private_limit);
        let wal_dir = dir.join(WAL_DIR);
        std::fs::create_dir_all(&wal_dir)
            .map_err(|e| Error::io(format!("creating {}", wal_dir.display()), e))?;
        if created {
            sync_dir(dir)?;
        }
        let wal = Wal::open(
            &wal_dir,
            WalOptions { sync: opts.durability, segment_bytes: opts.wal_segment_bytes },
            meta.checkpoint_lsn + 1,
        )?;
        let sink = Arc::new(Mutex::new(Vec::new()));
        let root_page = if meta.root == 0 { None } else { Some(pool.get(meta.root)?) };
        let version = Arc::new(Version {
            root: meta.root,
            root_page,
            lsn: meta.checkpoint_lsn,
            keys: meta.keys,
            bag: GarbageBag::new(sink.clone()),
        });
        let alloc = Allocator {
            page_count: meta.page_count,
            free,
            since_checkpoint: IdSet::default(),
            deferred: Vec::new(),
            limbo: IdSet::default(),
            freelist_pages,
            checkpoint_seq: meta.seq,
            released: sink,
        };
        let writer = Writer {
            head: version.clone(),
            alloc,
            meta,
            bufs: Buffers::default(),
            discard: Vec::new(),
            wal_bytes_at_checkpoint: 0,
            last_checkpoint: Instant::now(),
        };
        let inner = Inner {
            dir: dir.to_path_buf(),
            file,
            pool,
            wal,
            opts,
            current: ArcSwap::new(version),
            writer: Mutex::new(writer),
            pending: Mutex::new(VecDeque::new()),
            poison: Mutex::new(None),
            applying: AtomicU64::new(0),
            expected: AtomicI64::new(0),
            applied_batches: AtomicU64::new(0),
            private_limit,
            checkpoints: AtomicU64::new(0),
            relocated: AtomicU64::new(0),
            before_meta: Mutex::new(None),
            checkpoint_lsn: AtomicU64::new(meta.checkpoint_lsn),
            _lock: lock,
        };
        inner.replay()?;
        inner.writer.lock().wal_bytes_at_checkpoint = inner.wal.disk_bytes();
        Ok(inner)
    }

    /// Applies the WAL records after the checkpoint, as if committed again.
    fn replay(&self) -> Result<()> {
        let mut w = self.writer.lock();
        let start = w.head.lsn;
        let mut expected = start + 1;
        let wal_path = self.dir.join(WAL_DIR);
        self.wal
            .replay(start, &mut |lsn, payload| {
                if lsn != expected {
                    return Err(Error::corrupt_at(
                        &wal_path,
                        0,
                        format!("WAL record {lsn} follows {} (records are missing)", expected - 1),
                    ));
                }
                expected += 1;
                let batch = WriteBatch::decode(payload).map_err(|d| {
                    Error::corrupt_at(&wal_path, 0, format!("WAL record {lsn}: {d}"))
                })?;
                let version = self.apply(&mut w, &batch, lsn)?;
                self.current.store(version);
                Ok(())
            })
            .map_err(|e| locate(e, self.file.path()))
    }

    /// Applies a batch to private pages and installs the new head version.
    /// On error nothing changes (the batch's pages go back to the free set).
    fn apply(&self, w: &mut Writer, batch: &WriteBatch, lsn: u64) -> Result<Arc<Version>> {
        let Writer { head, alloc, bufs, discard, .. } = w;
        discard.clear();
        alloc.drain_released(discard);
        for id in discard.drain(..) {
            self.pool.discard(id);
        }
        let mut txn = Txn::new(
            &self.pool,
            &self.file,
            alloc,
            bufs,
            self.private_limit,
            head.root,
            head.keys,
            lsn,
        );
        let res = (|| {
            let mut ops = batch.ops();
            while let Some(op) = ops.next() {
                match op {
                    Op::Set(k, v) => {
                        txn.insert(k, v)?;
                        txn.append_following(k, &mut ops)?;
                    }
                    Op::Delete(k) => txn.delete(k)?,
                }
            }
            Ok(())
        })();
        if let Err(e) = res {
            txn.abandon();
            return Err(e);
        }
        let Txn { private, garbage, root, keys, spilled, .. } = txn;
        drop(spilled);
        self.install(head, alloc, private, garbage, root, keys, lsn)
    }

    /// Makes a batch's private pages the new head version (see `apply`).
    #[allow(clippy::too_many_arguments)]
    fn install(
        &self,
        head: &mut Arc<Version>,
        alloc: &mut alloc::Allocator,
        private: IdMap<Arc<Page>>,
        garbage: Vec<alloc::Released>,
        root: PageId,
        keys: u64,
        lsn: u64,
    ) -> Result<Arc<Version>> {
        let mut root_page = None;
        for (id, mut page) in private {
            set_lsn(Arc::make_mut(&mut page), lsn);
            if id == root {
                root_page = Some(page.clone());
            }
            self.pool.insert_dirty(id, page)?;
        }
        if root_page.is_none() && root != 0 {
            root_page =
                if root == head.root { head.root_page.clone() } else { Some(self.pool.get(root)?) };
        }
        alloc.limbo.extend(garbage.iter().map(|g| g.0));
        head.bag.pages.lock().extend(garbage);
        let bag = GarbageBag::new(alloc.released.clone());
        let _ = head.bag.next.set(bag.clone());
        let version = Arc::new(Version { root, root_page, lsn, keys, bag });
        *head = version.clone();
        Ok(version)
    }

    /// Compaction, under the writer lock at a checkpoint, once every
    /// version is published: when more than a quarter of the file is free,
    /// moves the tree pages lying beyond what a packed file would need into
    /// free pages below that line (a batch with no logical change, at the
    /// head's LSN, published at once). The checkpoint that follows cuts the
    /// free tail; pages a reader still holds are cut by a later one.
    fn compact_locked(&self, w: &mut Writer) -> Result<bool> {
        let Writer { head, alloc, bufs, discard, .. } = w;
        discard.clear();
        alloc.drain_released(discard);
        for id in discard.drain(..) {
            self.pool.discard(id);
        }
        let Some(used) = compaction_due(alloc) else {
            return Ok(false);
        };
        let limit = used + used / 16 + 2;
        let lsn = head.lsn;
        let mut txn = Txn::new(
            &self.pool,
            &self.file,
            alloc,
            bufs,
            self.private_limit,
            head.root,
            head.keys,
            lsn,
        );
        let moved = match txn.relocate(limit, COMPACT_MAX_PAGES) {
            Ok(n) => n,
            Err(e) => {
                txn.abandon();
                return Err(e);
            }
        };
        if moved == 0 {
            return Ok(false);
        }
        let Txn { private, garbage, root, keys, .. } = txn;
        let version = self.install(head, alloc, private, garbage, root, keys, lsn)?;
        self.current.store(version);
        self.relocated.fetch_add(moved as u64, Ordering::Relaxed);
        Ok(true)
    }

    fn check_writable(&self) -> Result<()> {
        if let Some(why) = self.poison.lock().as_ref() {
            return Err(Error::Poisoned(why.clone()));
        }
        Ok(())
    }

    fn poison_with(&self, e: &Error) {
        let mut p = self.poison.lock();
        if p.is_none() {
            *p = Some(e.to_string());
        }
    }

    fn write(&self, batch: &mut WriteBatch) -> Result<()> {
        let lsn = self.write_nowait(batch)?;
        self.wait_durable(lsn)
    }

    /// Applies and logs a batch; returns its LSN (0 for an empty batch)
    /// without waiting for the log to be durable. See `Engine::write_nowait`.
    fn write_nowait(&self, batch: &mut WriteBatch) -> Result<u64> {
        batch.validate()?;
        if batch.is_empty() {
            return Ok(0);
        }
        self.applying.fetch_add(1, Ordering::AcqRel);
        let res = self.write_nowait_counted(batch);
        self.applying.fetch_sub(1, Ordering::AcqRel);
        res
    }

    fn write_nowait_counted(&self, batch: &mut WriteBatch) -> Result<u64> {
        self.check_writable()?;
        let lsn = {
            let mut w = self.writer.lock();
            self.check_writable()?;
            let w = &mut *w;
            let lsn = self.wal.last_lsn() + 1;
            let version = match self.apply(w, batch, lsn) {
                Ok(v) => v,
                Err(e) => {
                    if matches!(e, Error::Io { .. } | Error::Poisoned(_)) {
                        self.poison_with(&e);
                    }
                    return Err(e);
                }
            };
            match self.wal.append(batch.payload()) {
                Ok(l) if l == lsn => {}
                Ok(l) => {
                    let e = Error::Internal(format!("WAL assigned LSN {l}, expected {lsn}"));
                    self.poison_with(&e);
                    return Err(e);
                }
                Err(e) => {
                    // The head now holds a batch the log does not: refuse
                    // all further writes rather than diverge.
                    self.poison_with(&e);
                    return Err(e);
                }
            }
            self.pending.lock().push_back(version);
            // After the push: whoever read the count before seeking and
            // finds it unchanged after did not miss this batch.
            self.applied_batches.fetch_add(1, Ordering::Release);
            lsn
        };
        Ok(lsn)
    }

    /// Waits until the batch at `lsn` (and all before it) is durable, then
    /// makes it visible to readers.
    fn wait_durable(&self, lsn: u64) -> Result<()> {
        if lsn == 0 {
            return Ok(());
        }
        // Another writer is applying its batch right now, or is expected
        // to soon: give it a moment to reach the log, so that the coming
        // fsync covers both. Bounded, and free when writers are alone.
        if self.opts.durability == Durability::Always {
            let start = Instant::now();
            loop {
                let waited = start.elapsed();
                let applying = self.applying.load(Ordering::Acquire) > 0;
                let expected = self.expected.load(Ordering::Acquire) > 0;
                if !(applying && waited < GROUP_COMMIT_WAIT
                    || expected && waited < GROUP_COMMIT_EXPECT_WAIT)
                {
                    break;
                }
                std::thread::yield_now();
            }
        }
        if let Err(e) = self.wal.wait_durable(lsn) {
            self.poison_with(&e);
            return Err(e);
        }
        self.publish(lsn);
        Ok(())
    }

    /// Makes every pending version up to `lsn` visible to readers.
    fn publish(&self, lsn: u64) {
        let mut pending = self.pending.lock();
        let mut newest = None;
        while pending.front().is_some_and(|v| v.lsn <= lsn) {
            newest = pending.pop_front();
        }
        if let Some(v) = newest
            && v.lsn > self.current.load().lsn
        {
            self.current.store(v);
        }
    }

    fn checkpoint(&self) -> Result<()> {
        let mut w = self.writer.lock();
        self.check_writable()?;
        let res = self.checkpoint_locked(&mut w).map_err(|e| locate(e, self.file.path()));
        if let Err(e) = &res {
            self.poison_with(e);
        }
        res
    }

    /// A checkpoint, and a second one if compaction moved pages or is
    /// still due: the first makes the moved tree durable, which frees the
    /// pages the old checkpoint held, so the second can move the rest below
    /// them and cut the tail they leave.
    fn checkpoint_locked(&self, w: &mut Writer) -> Result<()> {
        if self.checkpoint_once(w)? || compaction_due(&w.alloc).is_some() {
            self.checkpoint_once(w)?;
        }
        Ok(())
    }

    /// One checkpoint; true if compaction moved pages.
    fn checkpoint_once(&self, w: &mut Writer) -> Result<bool> {
        let head = w.head.clone();
        if head.lsn == w.meta.checkpoint_lsn && compaction_due(&w.alloc).is_none() {
            return Ok(false);
        }
        // The tree written must not hold a batch the log could lose.
        self.wal.sync()?;
        self.publish(head.lsn);
        // Every version is published: compaction may replace the head.
        drop(head);
        let compacted = self.compact_locked(w)?;
        let head = w.head.clone();

        let mut discard = std::mem::take(&mut w.discard);
        discard.clear();
        w.alloc.drain_released(&mut discard);
        for id in discard.drain(..) {
            self.pool.discard(id);
        }
        w.discard = discard;

        for (id, page) in self.pool.dirty_pages() {
            self.file.write_page(id, &page)?;
            self.pool.mark_clean(id, &page);
        }

        // The free list as it will be after a restart, minus the pages the
        // list itself needs, minus a free tail that is cut off the file.
        // The tail may include pages the old checkpoint uses (deferred, old
        // free-list pages): the file is cut only once the new meta is durable.
        let a = &mut w.alloc;
        let mut free = a.free_after_restart();
        let mut page_count = a.page_count;
        let mut tail_cut = Vec::new();
        while page_count > 2
            && (a.free.contains(page_count - 1)
                || a.deferred.contains(&(page_count - 1))
                || a.freelist_pages.contains(&(page_count - 1)))
        {
            page_count -= 1;
            free.remove(&page_count);
            tail_cut.push(page_count);
        }
        let mut list_pages: Vec<PageId> = Vec::new();
        while list_pages.len() * FREELIST_IDS < free.len() {
            // List pages must be free now (not used by the old checkpoint).
            let id = match a.free.iter().find(|id| *id < page_count && free.contains(id)) {
                Some(id) => id,
                None => match tail_cut.iter().copied().filter(|&id| a.free.contains(id)).min() {
                    // Nothing fits below the cut: cut less, up to the
                    // lowest page of the tail that is free now, and use it.
                    Some(id) => {
                        tail_cut.retain(|&t| t > id);
                        free.extend(page_count..id);
                        page_count = id + 1;
                        id
                    }
                    // Nothing in the tail either: keep the file's length
                    // and append the list page.
                    None => {
                        for id in tail_cut.drain(..) {
                            free.insert(id);
                        }
                        let id = a.page_count;
                        a.page_count += 1;
                        page_count = a.page_count;
                        id
                    }
                },
            };
            a.free.remove(id);
            free.remove(&id);
            list_pages.push(id);
        }
        let ids: Vec<PageId> = free.iter().copied().collect();
        let mut buf = [0u8; PAGE_SIZE];
        for (i, &lp) in list_pages.iter().enumerate() {
            init_page(&mut buf, lp, PageType::FreeList);
            let chunk = ids.chunks(FREELIST_IDS).nth(i).unwrap_or(&[]);
            put_u64(&mut buf, 32, list_pages.get(i + 1).copied().unwrap_or(0));
            put_u32(&mut buf, 40, chunk.len() as u32);
            for (j, id) in chunk.iter().enumerate() {
                put_u64(&mut buf, 48 + 8 * j, *id);
            }
            set_lsn(&mut buf, head.lsn);
            self.pool.discard(lp);
            self.file.write_page(lp, &buf)?;
        }
        self.file.sync()?;

        let meta = Meta {
            seq: w.meta.seq + 1,
            root: head.root,
            freelist: list_pages.first().copied().unwrap_or(0),
            page_count,
            checkpoint_lsn: head.lsn,
            keys: head.keys,
            free_pages: ids.len() as u64,
        };
        let mut mbuf = [0u8; PAGE_SIZE];
        meta.encode(&mut mbuf);
        if let Some(hook) = &*self.before_meta.lock() {
            hook();
        }
        self.file.write(meta.seq % 2, &mbuf)?;
        self.file.sync()?;

        // The new checkpoint is durable: what the old one needed is free.
        let a = &mut w.alloc;
        let old_list = std::mem::replace(&mut a.freelist_pages, list_pages);
        for id in a.deferred.drain(..).chain(old_list) {
            a.free.insert(id);
        }
        a.since_checkpoint.clear();
        a.checkpoint_seq = meta.seq;
        if !tail_cut.is_empty() && page_count < a.page_count {
            for id in &tail_cut {
                a.free.remove(*id);
                a.since_checkpoint.remove(id);
                self.pool.discard(*id);
            }
            a.page_count = page_count;
            self.file.set_len_pages(page_count)?;
        }
        w.meta = meta;
        self.wal.recycle(head.lsn)?;
        w.wal_bytes_at_checkpoint = self.wal.disk_bytes();
        w.last_checkpoint = Instant::now();
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
        self.checkpoint_lsn.store(head.lsn, Ordering::Relaxed);
        Ok(compacted)
    }
}

/// Compaction is due when a file of some size is more than a quarter
/// unused; returns the pages in use.
fn compaction_due(a: &alloc::Allocator) -> Option<u64> {
    let unused = (a.free.len() + a.deferred.len() + a.limbo.len() + a.freelist_pages.len()) as u64;
    (a.page_count >= COMPACT_MIN_PAGES && unused * 4 >= a.page_count)
        .then(|| a.page_count.saturating_sub(unused))
}

/// Page accessors name the data file by its bare name; errors leaving the
/// engine name it by its full path.
fn locate(e: Error, file: &Path) -> Error {
    match e {
        Error::Corruption { mut location, detail } if location.file.as_os_str() == DATA_FILE => {
            location.file = file.to_path_buf();
            Error::Corruption { location, detail }
        }
        e => e,
    }
}

fn create_data_file(path: &Path) -> Result<()> {
    let file = PageFile::open(path, true)?;
    let mut buf = [0u8; PAGE_SIZE];
    Meta { seq: 1, page_count: 2, ..Meta::default() }.encode(&mut buf);
    file.write(1, &buf)?;
    Meta { seq: 0, page_count: 2, ..Meta::default() }.encode(&mut buf);
    file.write(0, &buf)?;
    file.sync()
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing directory {}", dir.display()), e))
}

fn read_meta(file: &PageFile) -> Result<Meta> {
    let mut best: Option<Meta> = None;
    let mut problems = Vec::new();
    let mut foreign = 0;
    for slot in 0..2u64 {
        let mut buf = [0u8; PAGE_SIZE];
        if let Err(e) = file.read_raw(slot, &mut buf) {
            if e.is_corruption() {
                foreign += 1;
                continue;
            }
            return Err(e);
        }
        match Meta::decode(&buf) {
            MetaRead::Valid(m) => {
                if best.is_none_or(|b| m.seq > b.seq) {
                    best = Some(m);
                }
            }
            MetaRead::Damaged(why) => problems.push(format!("meta page {slot}: {why}")),
            MetaRead::Foreign => foreign += 1,
            MetaRead::Older(v) => {
                return Err(Error::Refused(format!(
                    "{} uses file format {v}, which this build cannot read (it reads format \
                     {FILE_FORMAT_VERSION}); there is no upgrade path from that development format",
                    file.path().display()
                )));
            }
            MetaRead::Newer(v) => {
                return Err(Error::Refused(format!(
                    "{} was written by a newer QubeDB (file format {v}; this build reads format \
                     {FILE_FORMAT_VERSION})",
                    file.path().display()
                )));
            }
        }
    }
    if let Some(m) = best {
        let len = file.len_bytes();
        if m.page_count > len / PAGE_SIZE as u64 {
            return Err(Error::corrupt_page(
                file.path(),
                m.page_count.saturating_sub(1),
                format!("file is {len} bytes, shorter than its {} pages", m.page_count),
            ));
        }
        return Ok(m);
    }
    if foreign == 2 {
        return Err(Error::Refused(format!(
            "{} is not a QubeDB data file (no QubeDB header)",
            file.path().display()
        )));
    }
    Err(Error::corrupt_page(file.path(), 0, problems.join("; ")))
}

fn load_freelist(file: &PageFile, meta: &Meta) -> Result<(alloc::FreeSet, Vec<PageId>)> {
    let mut free = alloc::FreeSet::default();
    let mut pages = Vec::new();
    let mut id = meta.freelist;
    let max_pages = meta.page_count;
    while id != 0 {
        if id < 2 || id >= meta.page_count || pages.len() as u64 > max_pages {
            return Err(Error::corrupt_page(file.path(), id, "free-list chain leaves the file"));
        }
        let p = file.read(id)?;
        if page_type(&p) != Some(PageType::FreeList) {
            return Err(Error::corrupt_page(file.path(), id, "expected a free-list page"));
        }
        let n = get_u32(&p[..], 40) as usize;
        if n > FREELIST_IDS {
            return Err(Error::corrupt_page(file.path(), id, "free-list count too large"));
        }
        for j in 0..n {
            let f = get_u64(&p[..], 48 + 8 * j);
            if f < 2 || f >= meta.page_count || f == meta.root || !free.insert(f) {
                return Err(Error::corrupt_page(file.path(), id, format!("bad free page id {f}")));
            }
        }
        pages.push(id);
        id = get_u64(&p[..], 32);
    }
    if let Some(&bad) = pages.iter().find(|&&p| free.contains(p)) {
        return Err(Error::corrupt_page(file.path(), bad, "free-list page lists itself as free"));
    }
    if free.len() as u64 != meta.free_pages {
        return Err(Error::corrupt_page(
            file.path(),
            meta.freelist,
            format!("free list holds {} pages, meta says {}", free.len(), meta.free_pages),
        ));
    }
    Ok((free, pages))
}

impl Engine for BTreeEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let mut out = Vec::new();
        Ok(self.get_into(key, &mut out)?.then_some(out))
    }

    fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        let v = self.inner.current.load();
        read::get_into(&self.inner.pool, &v, key, out)
            .map_err(|e| locate(e, self.inner.file.path()))
    }

    fn write(&self, mut batch: WriteBatch) -> Result<()> {
        self.inner.write(&mut batch).map_err(|e| locate(e, self.inner.file.path()))
    }

    fn write_nowait(&self, mut batch: WriteBatch) -> Result<u64> {
        self.inner.write_nowait(&mut batch).map_err(|e| locate(e, self.inner.file.path()))
    }

    fn expect_writers(&self, delta: i64) {
        self.inner.expected.fetch_add(delta, Ordering::AcqRel);
    }

    fn wait_durable(&self, lsn: u64) -> Result<()> {
        self.inner.wait_durable(lsn)
    }

    fn applied_batches(&self) -> Option<u64> {
        Some(self.inner.applied_batches.load(Ordering::Acquire))
    }

    fn seek(&self, range: &KeyRange, key: &mut Vec<u8>, value: &mut Vec<u8>) -> Result<bool> {
        let current = &self.inner.current;
        self.seek_in(&current.load(), || current.load_full(), range, key, value)
    }

    fn seek_latest(
        &self,
        range: &KeyRange,
        key: &mut Vec<u8>,
        value: &mut Vec<u8>,
    ) -> Result<bool> {
        let v = self.latest();
        self.seek_in(&v, || v.clone(), range, key, value)
    }

    fn seek_latest_hinted(
        &self,
        range: &KeyRange,
        key: &mut Vec<u8>,
        value: &mut Vec<u8>,
        hint: &mut crate::SeekHint,
    ) -> Result<bool> {
        let v = self.latest();
        let pool = &self.inner.pool;
        let fast = read::seek_hinted(pool, &v, range, key, value, &mut hint.leaf)
            .map_err(|e| locate(e, self.inner.file.path()))?;
        if let Some(found) = fast {
            return Ok(found);
        }
        let mut c = read::BTreeCursor::new(pool, v, Cow::Borrowed(range), Direction::Forward);
        crate::copy_next(&mut c, key, value)
    }

    fn seeker(&self) -> Result<Box<dyn crate::Seeker + '_>> {
        let v = self.inner.current.load_full();
        Ok(Box::new(read::BTreeSeeker::new(&self.inner.pool, v)))
    }

    fn scan(&self, range: KeyRange, direction: Direction) -> Result<Box<dyn Cursor + '_>> {
        let v = self.inner.current.load_full();
        let range = Cow::Owned(range);
        Ok(Box::new(read::BTreeCursor::new(&self.inner.pool, v, range, direction)))
    }

    fn scan_ref<'a>(
        &'a self,
        range: &'a KeyRange,
        direction: Direction,
    ) -> Result<Box<dyn Cursor + 'a>> {
        let v = self.inner.current.load_full();
        let range = Cow::Borrowed(range);
        Ok(Box::new(read::BTreeCursor::new(&self.inner.pool, v, range, direction)))
    }

    fn with_cursor(
        &self,
        range: &KeyRange,
        direction: Direction,
        f: &mut dyn FnMut(&mut dyn Cursor) -> Result<()>,
    ) -> Result<()> {
        let v = self.inner.current.load_full();
        let mut c = read::BTreeCursor::new(&self.inner.pool, v, Cow::Borrowed(range), direction);
        f(&mut c)
    }

    fn flush(&self) -> Result<()> {
        self.inner.check_writable()?;
        let lsn = self.inner.writer.lock().head.lsn;
        if let Err(e) = self.inner.wal.sync() {
            self.inner.poison_with(&e);
            return Err(e);
        }
        self.inner.publish(lsn);
        Ok(())
    }

    fn checkpoint(&self) -> Result<()> {
        self.inner.checkpoint()
    }

    fn status(&self) -> Result<Status> {
        let i = &self.inner;
        let ps = i.pool.stats();
        let (pages, free_pages) = {
            let w = i.writer.lock();
            (w.alloc.page_count, w.alloc.free.len() as u64)
        };
        let wal_bytes = i.wal.disk_bytes();
        Ok(Status {
            keys: i.current.load().keys,
            disk_bytes: i.file.len_bytes() + wal_bytes,
            pages,
            free_pages,
            cache_hits: ps.hits,
            cache_misses: ps.misses,
            cache_evictions: ps.evictions,
            cache_bytes: ps.pages * PAGE_SIZE as u64,
            cache_capacity: i.pool.capacity_bytes(),
            checkpoints: i.checkpoints.load(Ordering::Relaxed),
            checkpoint_lsn: i.checkpoint_lsn.load(Ordering::Relaxed),
            last_lsn: i.current.load().lsn,
            wal_bytes,
            wal_fsyncs: i.wal.fsync_count(),
            pages_relocated: i.relocated.load(Ordering::Relaxed),
        })
    }
}
