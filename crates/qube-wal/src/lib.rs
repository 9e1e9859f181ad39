//! QubeDB's write-ahead log.
//!
//! Records are opaque byte payloads (the storage engine puts logical
//! key-value batches in them). Each record gets a log sequence number (LSN):
//! 1, 2, 3, … with no gaps, continuing across segments and restarts.
//!
//! # Files
//!
//! The WAL directory holds segment files named `{first_lsn:020}.wal`, where
//! `first_lsn` is the LSN of the segment's first record (a segment may hold
//! no record yet). Other file names are ignored. Records are appended to the
//! newest segment; once appending a record would push it past
//! `WalOptions::segment_bytes`, a new segment is started (a record larger
//! than that still goes into a segment of its own). The LSNs of all live
//! segments form one gapless sequence: segment *n + 1* starts right after the
//! last record of segment *n*.
//!
//! Records are written with positioned writes, and the segment being
//! appended to is kept zero-filled up to the next multiple of 256 KiB ahead
//! of its end: an fsync then flushes data only, where an append that grows
//! the file would also commit the new size to the file system's journal on
//! every fsync. A segment is cut back to its last record when it is closed
//! (rotation, clean close); recovery treats zeros from a stopping point to
//! the end of a file as the file's end, not as damage.
//!
//! # Byte layout (all integers little-endian)
//!
//! Segment header, at offset 0 of every segment:
//!
//! | offset | size | field      | meaning                                         |
//! |-------:|-----:|------------|-------------------------------------------------|
//! | 0      | 4    | magic      | `b"QWAL"`                                       |
//! | 4      | 4    | version    | format version, `1` (a higher one is refused)   |
//! | 8      | 8    | first_lsn  | LSN of the first record; equals the file name   |
//! | 16     | 4    | crc        | CRC32C of bytes 0..16                           |
//!
//! These 20 bytes keep this layout in every future format version, so a
//! newer file is recognised (good CRC, higher version → `Error::Refused`)
//! rather than mistaken for damage.
//!
//! Record frame, repeated from offset 20 to the end of the segment:
//!
//! | offset | size | field   | meaning                                            |
//! |-------:|-----:|---------|----------------------------------------------------|
//! | 0      | 4    | len     | payload length (≤ [`MAX_RECORD_BYTES`])            |
//! | 4      | 8    | lsn     | the record's LSN                                   |
//! | 12     | 4    | crc     | CRC32C of `len`, `lsn` (bytes 0..12) and payload   |
//! | 16     | len  | payload | the caller's bytes                                 |
//!
//! The CRC covers the length and the LSN, so a damaged length cannot make a
//! reader resynchronise on garbage, and a stale record left behind in a
//! reused file cannot pass for the expected one.
//!
//! # Appending and group commit
//!
//! Three locks, always taken in this order when nested:
//!
//! * `state` (the *append lock*): assigns LSNs and encodes frames into an
//!   in-memory buffer. Held only for a memcpy, never across I/O other than
//!   creating a file when rotating.
//! * `io`: serialises handing buffered bytes to the OS (`write`). Whoever
//!   holds it swaps the buffer out under the append lock (double buffering:
//!   no allocation in steady state), releases the append lock and writes, so
//!   appenders keep going during the write. It records which files were
//!   written since their last fsync.
//! * `sync` + a condvar: the group-commit protocol. A committer in
//!   `wait_durable(lsn)` (mode `Always`) returns at once if `durable_lsn ≥
//!   lsn`. Otherwise, if no sync is in progress, it becomes the *leader*: it
//!   marks a sync in progress, drops the sync mutex, writes everything
//!   buffered so far (under `io`), then fsyncs (`sync_data`) every file
//!   written since the last round, plus the directory if a segment was
//!   created, holding **no** lock during the fsyncs. It then raises
//!   `durable_lsn` to the last LSN it wrote and wakes every waiter. A
//!   committer that finds a sync in progress is a *follower*: it waits on
//!   the condvar; when woken, it returns if its LSN is now durable, or else
//!   becomes the next leader. While one fsync runs, the next batch of
//!   commits accumulates and is covered by a single fsync.
//!
//! `Periodic(d)`: `wait_durable` only makes sure the bytes reached the OS; a
//! background thread runs a sync round every `d` and stops (and is joined)
//! when the `Wal` is dropped. `Never`: bytes reach the OS, no fsync. `sync()`
//! runs a sync round in any mode. Dropping the `Wal` writes what is still
//! buffered (and fsyncs it unless the mode is `Never`).
//!
//! # Recovery (`Wal::open`)
//!
//! 1. If any segment has a good header with a newer format version, the
//!    directory is refused before anything is changed.
//! 2. Segments entirely covered by the checkpoint (their successor starts at
//!    or before `next_lsn_at_least`) are deleted, as `recycle` would have.
//!    If the oldest remaining segment starts after `next_lsn_at_least`,
//!    records are missing: that is a corruption error.
//! 3. The remaining segments are read forward. The scan stops at the first
//!    record that is torn or wrong: too few bytes left, an absurd length, a
//!    CRC mismatch, an LSN other than the expected next one, or a segment
//!    that does not start where the previous one ended. A segment whose
//!    header is short or all zeros (created but never written) counts as
//!    torn; a non-zero header with a wrong magic or CRC is a corruption
//!    error. The segment is truncated at the stop point (or deleted if the
//!    stop is in its header) and every later segment is deleted: after a
//!    break in the sequence nothing was acknowledged, so nothing later can
//!    be trusted. What was cut is described by [`Wal::recovery_report`].
//! 4. If every surviving record is older than `next_lsn_at_least`, the
//!    segments are deleted and a fresh segment starts at
//!    `next_lsn_at_least`, so LSNs inside a segment never have a gap.
//! 5. Surviving segments are fsynced (a crashed process may have left them
//!    in the page cache only), as is the directory if it changed.
//!
//! Nothing read from disk can cause a panic: every length is checked against
//! the bytes left in the file before use and every integer is decoded with
//! checked accessors.
//!
//! # Poisoning
//!
//! If a write or an fsync fails, the WAL is *poisoned*: that call and every
//! later `append`, `wait_durable`, `sync` and `recycle` return
//! `Error::Poisoned`. An fsync is never retried: after a failed fsync the
//! kernel may already have dropped the dirty pages and marked them clean, so
//! a second fsync can "succeed" without the data being on disk (PostgreSQL's
//! "fsyncgate"). The only safe way on is to reopen, which re-reads what
//! really is in the files.

#![warn(missing_docs)]

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};
use qube_common::{Error, Result};

mod format;
mod recovery;
#[cfg(test)]
mod tests;

use format::{FRAME_HEADER_LEN, HEADER_LEN, HeaderCheck, MAX_LSN, Next, SegmentReader};

/// Log sequence number of a record. 0 means "no record".
pub type Lsn = u64;

/// Largest payload `append` accepts (256 MiB). Recovery treats a larger
/// length field as damage.
pub const MAX_RECORD_BYTES: usize = 256 << 20;

/// `append` hands the buffer to the OS itself once this much is buffered, so
/// memory stays bounded when nobody waits for durability.
const WRITE_BUFFER_BYTES: usize = 1 << 20;
/// A record at least this large is written from the caller's bytes rather
/// than copied into the buffer first (which would grow to its size: the
/// commit of a bulk load is a record of a hundred megabytes, copied once
/// more and its buffer's pages faulted in). Such an append hands it to the
/// OS at once, as `append` does with a buffer this full.
const DIRECT_RECORD_BYTES: usize = WRITE_BUFFER_BYTES;
/// How long a committer waiting for another's sync round spins before it
/// sleeps on the condition variable.
const FOLLOWER_SPIN: Duration = Duration::from_micros(200);

/// When `wait_durable` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// fsync before a commit is acknowledged (group commit shares one fsync).
    Always,
    /// A background thread fsyncs at this interval; commits return once written to the OS.
    Periodic(Duration),
    /// Never fsync (the OS decides); for tests and bulk loads.
    Never,
}

/// WAL configuration.
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// When `wait_durable` returns.
    pub sync: SyncMode,
    /// A segment is closed and a new one started once it exceeds this size.
    pub segment_bytes: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions { sync: SyncMode::Always, segment_bytes: 64 << 20 }
    }
}

/// Where recovery cut the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// Segment in which the first bad record (or header) was found.
    pub file: PathBuf,
    /// Offset of the first bad byte; the file was truncated there (offset 0:
    /// the segment was deleted).
    pub offset: u64,
    /// What was wrong there.
    pub reason: String,
}

/// What `Wal::open` found and what it cut.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments read by the recovery scan.
    pub segments_scanned: usize,
    /// Records in the WAL after recovery.
    pub records_recovered: u64,
    /// LSN of the first recovered record (0 if none).
    pub first_lsn: Lsn,
    /// LSN of the last recovered record (0 if none).
    pub last_lsn: Lsn,
    /// Segments deleted because the checkpoint (`next_lsn_at_least`) covers them.
    pub segments_recycled: usize,
    /// Where the log was cut, if it was.
    pub torn: Option<TornTail>,
    /// Bytes cut: the truncated tail plus every deleted later segment.
    pub bytes_dropped: u64,
    /// Segments deleted because they came after the cut.
    pub segments_dropped: usize,
    /// Intact records found in those deleted segments. Non-zero means the
    /// damage was not just a torn tail: suspect the disk.
    pub intact_records_dropped: u64,
}

impl RecoveryReport {
    /// True if recovery found nothing to cut.
    pub fn is_clean(&self) -> bool {
        self.torn.is_none()
    }
}

/// An open segment file. Records are written at `written` with positioned
/// writes; the file is kept zero-filled ahead of it (`allocated`) so that
/// most fsyncs flush data only, not a new file size: an append that grows
/// the file costs the journal a metadata commit on every fsync.
struct SegFile {
    path: PathBuf,
    file: File,
    written: AtomicU64,
    allocated: AtomicU64,
}

/// Bytes of zeros written ahead of the log's end at a time.
const PREALLOCATE: u64 = 256 << 10;

impl SegFile {
    fn new(path: PathBuf, file: File, len: u64) -> SegFile {
        SegFile { path, file, written: AtomicU64::new(len), allocated: AtomicU64::new(len) }
    }
}

/// A live segment.
struct SegmentInfo {
    first_lsn: Lsn,
    path: PathBuf,
    /// Size including bytes still buffered in memory.
    bytes: u64,
}

/// Protected by the append lock.
struct AppendState {
    /// LSN the next append gets.
    next_lsn: Lsn,
    /// Closed segments, oldest first.
    closed: Vec<SegmentInfo>,
    /// The segment being appended to. Never recycled.
    current: SegmentInfo,
    current_file: Arc<SegFile>,
    /// Frames for `current_file` not yet handed to the OS.
    buf: Vec<u8>,
    /// Unwritten bytes of segments closed since the last write, in order.
    sealed: Vec<(Arc<SegFile>, Vec<u8>)>,
    /// `buf` plus `sealed`.
    pending_bytes: usize,
}

/// Buffered bytes taken for writing (`Shared::take_pending`).
struct Taken {
    sealed: Vec<(Arc<SegFile>, Vec<u8>)>,
    current: Arc<SegFile>,
    out: Vec<u8>,
    /// Every record up to here is in them.
    upto: Lsn,
}

/// Protected by the io lock.
struct IoState {
    /// Every record up to here has been handed to the OS.
    written_lsn: Lsn,
    /// Files written since their last fsync, in write order.
    unsynced: Vec<Arc<SegFile>>,
    /// The other half of the double buffer.
    spare: Vec<u8>,
}

/// Protected by the sync mutex.
struct SyncState {
    /// A leader is running a sync round.
    in_progress: bool,
}

struct Shared {
    dir: PathBuf,
    opts: WalOptions,
    state: Mutex<AppendState>,
    io: Mutex<IoState>,
    sync: Mutex<SyncState>,
    /// Signalled after every sync round (success or failure).
    synced: Condvar,
    /// Mirror of `next_lsn - 1`, readable without the append lock.
    last_lsn: AtomicU64,
    /// Every record up to here is fsynced. Only raised with the sync mutex
    /// held, so a waiter cannot miss the wake-up.
    durable_lsn: AtomicU64,
    /// A segment was created since the last directory fsync.
    dir_dirty: AtomicBool,
    poisoned: AtomicBool,
    poison_reason: Mutex<String>,
    fsyncs: AtomicU64,
    /// Sync rounds finished (successful or not): followers spin on it.
    rounds: AtomicU64,
    fail_next_sync: AtomicBool,
    fail_next_write: AtomicBool,
    /// Test hook: extra latency added to every file fsync, in microseconds.
    sync_delay_micros: AtomicU64,
    /// Tells the background thread to stop.
    stop: Mutex<bool>,
    stop_cv: Condvar,
    report: RecoveryReport,
}

/// The write-ahead log of one data directory.
pub struct Wal {
    shared: Arc<Shared>,
    background: Option<JoinHandle<()>>,
}

impl Wal {
    /// Opens (or creates) the WAL in `dir`. `next_lsn_at_least` is one past the
    /// LSN covered by the last checkpoint, so numbering continues when every
    /// segment was recycled. Stops at a torn or corrupt tail and truncates it.
    pub fn open(dir: &Path, opts: WalOptions, next_lsn_at_least: Lsn) -> Result<Wal> {
        let next_lsn_at_least = next_lsn_at_least.max(1);
        if next_lsn_at_least >= MAX_LSN {
            return Err(Error::InvalidInput(format!(
                "next_lsn_at_least {next_lsn_at_least} is implausibly large"
            )));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating WAL directory {}", dir.display()), e))?;
        let rec = recovery::recover(dir, next_lsn_at_least)?;
        let mut closed: Vec<SegmentInfo> = rec
            .segments
            .into_iter()
            .map(|k| SegmentInfo { first_lsn: k.first_lsn, path: k.path, bytes: k.bytes })
            .collect();
        let Some(current) = closed.pop() else {
            return Err(Error::Internal("WAL recovery left no segment".into()));
        };
        let file = OpenOptions::new()
            .write(true)
            .open(&current.path)
            .map_err(|e| Error::io(format!("opening WAL segment {}", current.path.display()), e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io(format!("opening WAL segment {}", current.path.display()), e))?
            .len();
        let current_file = Arc::new(SegFile::new(current.path.clone(), file, len));
        let last = rec.next_lsn - 1;
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            opts: opts.clone(),
            state: Mutex::new(AppendState {
                next_lsn: rec.next_lsn,
                closed,
                current,
                current_file,
                buf: Vec::new(),
                sealed: Vec::new(),
                pending_bytes: 0,
            }),
            io: Mutex::new(IoState { written_lsn: last, unsynced: Vec::new(), spare: Vec::new() }),
            sync: Mutex::new(SyncState { in_progress: false }),
            synced: Condvar::new(),
            last_lsn: AtomicU64::new(last),
            durable_lsn: AtomicU64::new(last),
            dir_dirty: AtomicBool::new(false),
            poisoned: AtomicBool::new(false),
            poison_reason: Mutex::new(String::new()),
            fsyncs: AtomicU64::new(rec.fsyncs),
            rounds: AtomicU64::new(0),
            fail_next_sync: AtomicBool::new(false),
            fail_next_write: AtomicBool::new(false),
            sync_delay_micros: AtomicU64::new(0),
            stop: Mutex::new(false),
            stop_cv: Condvar::new(),
            report: rec.report,
        });
        let background = match opts.sync {
            SyncMode::Periodic(every) => {
                let shared = Arc::clone(&shared);
                let every = every.max(Duration::from_millis(1));
                let handle = std::thread::Builder::new()
                    .name("qube-wal-sync".into())
                    .spawn(move || shared.periodic_sync(every))
                    .map_err(|e| Error::io("starting the WAL sync thread", e))?;
                Some(handle)
            }
            SyncMode::Always | SyncMode::Never => None,
        };
        Ok(Wal { shared, background })
    }

    /// Calls `f` for every record with LSN > `after`, in order.
    ///
    /// Every record appended before the call is included (buffered ones are
    /// written to the OS first). Records older than the oldest live segment
    /// were recycled and are skipped. `f` gets a slice of one reused buffer.
    /// A record that fails its checks is a corruption error naming the file
    /// and offset: `open` already cut torn tails, so this means the files
    /// changed underneath. Recycling concurrently with a replay can make
    /// the replay fail with an I/O error.
    pub fn replay(&self, after: Lsn, f: &mut dyn FnMut(Lsn, &[u8]) -> Result<()>) -> Result<()> {
        self.shared.replay(after, f)
    }

    /// Appends a record (not yet durable) and returns its LSN.
    pub fn append(&self, payload: &[u8]) -> Result<Lsn> {
        self.shared.append(payload)
    }

    /// Returns once every record up to `lsn` is durable as the sync mode defines.
    ///
    /// `Always`: fsynced (group commit). `Periodic`/`Never`: handed to the OS.
    /// Waiting for an LSN that was not appended yet is `InvalidInput`.
    pub fn wait_durable(&self, lsn: Lsn) -> Result<()> {
        self.shared.wait_durable(lsn)
    }

    /// Writes and fsyncs everything appended so far, whatever the sync mode.
    pub fn sync(&self) -> Result<()> {
        let s = &self.shared;
        s.group_sync(s.last_lsn.load(Ordering::Acquire))
    }

    /// Every record ≤ `upto` is covered by a checkpoint: recycle whole segments below it.
    ///
    /// Deletes every closed segment whose successor starts at or before
    /// `upto + 1`; the segment being appended to is never deleted.
    pub fn recycle(&self, upto: Lsn) -> Result<()> {
        self.shared.recycle(upto)
    }

    /// LSN of the last appended record (0 if none ever). After reopening a
    /// WAL with no records this is `next_lsn_at_least - 1`.
    pub fn last_lsn(&self) -> Lsn {
        self.shared.last_lsn.load(Ordering::Acquire)
    }

    /// Bytes of WAL currently on disk (all live segments).
    ///
    /// Includes bytes appended but still buffered for the next write.
    pub fn disk_bytes(&self) -> u64 {
        let st = self.shared.state.lock();
        st.closed.iter().map(|s| s.bytes).sum::<u64>() + st.current.bytes
    }

    /// Every record up to this LSN has been fsynced.
    pub fn durable_lsn(&self) -> Lsn {
        self.shared.durable_lsn.load(Ordering::Acquire)
    }

    /// True once a write or fsync failed; the WAL must be reopened.
    pub fn is_poisoned(&self) -> bool {
        self.shared.poisoned.load(Ordering::Acquire)
    }

    /// What `open` found and what it cut.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.shared.report
    }

    /// Number of fsyncs (files and directory) issued since open, including
    /// those of recovery. For metrics and tests.
    pub fn fsync_count(&self) -> u64 {
        self.shared.fsyncs.load(Ordering::Relaxed)
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Test hook: the next fsync fails as if the disk reported an error.
    #[doc(hidden)]
    pub fn fail_next_sync_for_test(&self) {
        self.shared.fail_next_sync.store(true, Ordering::Release);
    }

    /// Test hook: every later file fsync takes at least this long, as on a
    /// slow disk (makes group-commit tests independent of the file system).
    #[doc(hidden)]
    pub fn set_sync_delay_for_test(&self, delay: Duration) {
        let micros = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.shared.sync_delay_micros.store(micros, Ordering::Release);
    }

    /// Test hook: the next write to a segment file fails.
    #[doc(hidden)]
    pub fn fail_next_write_for_test(&self) {
        self.shared.fail_next_write.store(true, Ordering::Release);
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        *self.shared.stop.lock() = true;
        self.shared.stop_cv.notify_all();
        if let Some(handle) = self.background.take() {
            // The thread never panics on its own; nothing to do if it did.
            let _ = handle.join();
        }
        // Best effort on a clean close: errors poison a handle that is going away.
        let s = &self.shared;
        if !s.poisoned.load(Ordering::Acquire) {
            let last = s.last_lsn.load(Ordering::Acquire);
            let _ = match s.opts.sync {
                SyncMode::Never => s.ensure_written(last),
                SyncMode::Always | SyncMode::Periodic(_) => s.group_sync(last),
            };
            // A clean close leaves no zeros written ahead: the file ends at
            // its last record (recovery would cut them anyway).
            let io = s.io.lock();
            let f = Arc::clone(&s.state.lock().current_file);
            drop(io);
            let _ = f.file.set_len(f.written.load(Ordering::Acquire));
        }
    }
}

impl Shared {
    fn check_poisoned(&self) -> Result<()> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned(self.poison_reason.lock().clone()));
        }
        Ok(())
    }

    /// Marks the WAL poisoned (keeping the first reason) and returns the error
    /// for the failing call.
    fn poison(&self, reason: String) -> Error {
        {
            let mut r = self.poison_reason.lock();
            if r.is_empty() {
                *r = reason;
            }
            self.poisoned.store(true, Ordering::Release);
        }
        Error::Poisoned(self.poison_reason.lock().clone())
    }

    fn append(&self, payload: &[u8]) -> Result<Lsn> {
        if payload.len() > MAX_RECORD_BYTES {
            return Err(Error::InvalidInput(format!(
                "WAL record of {} bytes exceeds the maximum of {MAX_RECORD_BYTES}",
                payload.len()
            )));
        }
        self.check_poisoned()?;
        if payload.len() >= DIRECT_RECORD_BYTES {
            return self.append_direct(payload);
        }
        let frame_len = FRAME_HEADER_LEN + payload.len() as u64;
        let (lsn, flush) = {
            let mut st = self.state.lock();
            if st.current.bytes > HEADER_LEN
                && st.current.bytes.saturating_add(frame_len) > self.opts.segment_bytes
            {
                self.rotate(&mut st)?;
            }
            let lsn = st.next_lsn;
            format::encode_frame(&mut st.buf, lsn, payload);
            st.next_lsn += 1;
            st.current.bytes += frame_len;
            st.pending_bytes += frame_len as usize;
            self.last_lsn.store(lsn, Ordering::Release);
            (lsn, st.pending_bytes >= WRITE_BUFFER_BYTES)
        };
        if flush {
            self.ensure_written(lsn)?;
        }
        Ok(lsn)
    }

    /// `append` of a large record: under the io lock, the record's header
    /// goes into the buffer after the frames before it, the buffer is taken
    /// (in the same hold of the state lock, so no later frame gets in
    /// between), and the buffer and then the payload are written. Appends
    /// after it buffer their frames meanwhile; whoever writes them next
    /// takes the io lock, so they follow the payload in the file.
    fn append_direct(&self, payload: &[u8]) -> Result<Lsn> {
        let frame_len = FRAME_HEADER_LEN + payload.len() as u64;
        let mut io = self.io.lock();
        self.check_poisoned()?;
        let (lsn, taken) = {
            let mut st = self.state.lock();
            if st.current.bytes > HEADER_LEN
                && st.current.bytes.saturating_add(frame_len) > self.opts.segment_bytes
            {
                self.rotate(&mut st)?;
            }
            let lsn = st.next_lsn;
            st.buf.extend_from_slice(&format::frame_header(lsn, payload));
            st.next_lsn += 1;
            st.current.bytes += frame_len;
            self.last_lsn.store(lsn, Ordering::Release);
            (lsn, Self::take_pending(&mut st, &mut io))
        };
        self.write_taken(&mut io, taken, payload)?;
        Ok(lsn)
    }

    /// Closes the current segment and starts one at `next_lsn`. Only creates
    /// the file; its header goes into the buffer and is written, fsynced and
    /// made visible (directory fsync) by the next sync round, before any of
    /// its records can count as durable. A failure changes nothing.
    fn rotate(&self, st: &mut AppendState) -> Result<()> {
        let first_lsn = st.next_lsn;
        let path = self.dir.join(format::segment_file_name(first_lsn));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io(format!("creating WAL segment {}", path.display()), e))?;
        let new_file = Arc::new(SegFile::new(path.clone(), file, 0));
        let old_file = std::mem::replace(&mut st.current_file, new_file);
        let old =
            std::mem::replace(&mut st.current, SegmentInfo { first_lsn, path, bytes: HEADER_LEN });
        st.closed.push(old);
        // Even with nothing left to write, the closed file goes through
        // `write_pending`, which trims the zeros written ahead of its end.
        let old_bytes = std::mem::take(&mut st.buf);
        st.sealed.push((old_file, old_bytes));
        st.buf.extend_from_slice(&format::encode_header(first_lsn));
        st.pending_bytes += HEADER_LEN as usize;
        self.dir_dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Hands every buffered byte to the OS. Caller holds the io lock.
    fn write_pending(&self, io: &mut IoState) -> Result<()> {
        let taken = Self::take_pending(&mut self.state.lock(), io);
        self.write_taken(io, taken, &[])
    }

    /// Takes every buffered byte (the buffer swapped with the io state's
    /// spare) for `write_taken`.
    fn take_pending(st: &mut AppendState, io: &mut IoState) -> Taken {
        let mut out = std::mem::take(&mut io.spare);
        std::mem::swap(&mut st.buf, &mut out);
        st.pending_bytes = 0;
        Taken {
            sealed: std::mem::take(&mut st.sealed),
            current: Arc::clone(&st.current_file),
            out,
            upto: st.next_lsn - 1,
        }
    }

    /// Writes what `take_pending` took, then `tail` (the payload of a
    /// record whose header ends the buffer) to the current segment.
    fn write_taken(&self, io: &mut IoState, taken: Taken, tail: &[u8]) -> Result<()> {
        let Taken { sealed, current, mut out, upto } = taken;
        for (file, bytes) in &sealed {
            self.write_file(io, file, bytes)?;
            // A closed segment ends at its last record: cut the zeros written
            // ahead, so that readers meet the file's end, not a zero frame.
            let end = file.written.load(Ordering::Acquire);
            file.file.set_len(end).map_err(|e| {
                self.poison(format!("trimming {} failed: {e}", file.path.display()))
            })?;
        }
        if !out.is_empty() {
            self.write_file(io, &current, &out)?;
        }
        if !tail.is_empty() {
            self.write_file(io, &current, tail)?;
        }
        out.clear();
        io.spare = out;
        io.written_lsn = io.written_lsn.max(upto);
        Ok(())
    }

    fn write_file(&self, io: &mut IoState, f: &Arc<SegFile>, bytes: &[u8]) -> Result<()> {
        let at = f.written.load(Ordering::Acquire);
        let end = at + bytes.len() as u64;
        let result = if self.fail_next_write.swap(false, Ordering::AcqRel) {
            Err(std::io::Error::other("injected write failure (test)"))
        } else {
            let mut res = Ok(());
            let allocated = f.allocated.load(Ordering::Acquire);
            if end > allocated {
                let target = end.div_ceil(PREALLOCATE) * PREALLOCATE;
                res = write_zeros(&f.file, allocated, target);
                if res.is_ok() {
                    f.allocated.store(target, Ordering::Release);
                }
            }
            res.and_then(|()| f.file.write_all_at(bytes, at))
        };
        // A partial write leaves a torn frame in the file; only a reopen
        // (which cuts it) can continue from there.
        result.map_err(|e| self.poison(format!("write to {} failed: {e}", f.path.display())))?;
        f.written.store(end, Ordering::Release);
        if !io.unsynced.iter().any(|u| Arc::ptr_eq(u, f)) {
            io.unsynced.push(Arc::clone(f));
        }
        Ok(())
    }

    /// Makes sure every record up to `lsn` was handed to the OS.
    fn ensure_written(&self, lsn: Lsn) -> Result<()> {
        let mut io = self.io.lock();
        if io.written_lsn >= lsn {
            return Ok(());
        }
        self.check_poisoned()?;
        self.write_pending(&mut io)
    }

    fn fsync_file(&self, f: &SegFile) -> Result<()> {
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        let delay = self.sync_delay_micros.load(Ordering::Acquire);
        if delay > 0 {
            std::thread::sleep(Duration::from_micros(delay));
        }
        let result = if self.fail_next_sync.swap(false, Ordering::AcqRel) {
            Err(std::io::Error::other("injected fsync failure (test)"))
        } else {
            f.file.sync_data()
        };
        result.map_err(|e| self.poison(format!("fsync of {} failed: {e}", f.path.display())))
    }

    fn fsync_dir(&self) -> Result<()> {
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        let result = if self.fail_next_sync.swap(false, Ordering::AcqRel) {
            Err(std::io::Error::other("injected fsync failure (test)"))
        } else {
            File::open(&self.dir).and_then(|d| d.sync_all())
        };
        result.map_err(|e| {
            self.poison(format!("fsync of WAL directory {} failed: {e}", self.dir.display()))
        })
    }

    /// One sync round, run by the group-commit leader only (the
    /// `in_progress` flag guarantees there is one at a time). Returns the LSN
    /// now durable. No lock is held during the fsyncs.
    fn sync_round(&self) -> Result<Lsn> {
        let (target, files) = {
            let mut io = self.io.lock();
            self.check_poisoned()?;
            self.write_pending(&mut io)?;
            (io.written_lsn, std::mem::take(&mut io.unsynced))
        };
        // Bytes written by others after we took the list are not covered;
        // they stay in (or re-enter) `unsynced` for the next round.
        for f in &files {
            self.fsync_file(f)?;
        }
        // The rotation that set the flag happened under the append lock
        // before `write_pending` took the buffer, so a segment holding
        // records ≤ target is always seen here.
        if self.dir_dirty.swap(false, Ordering::AcqRel) {
            self.fsync_dir()?;
        }
        Ok(target)
    }

    /// Group commit: returns once `durable_lsn ≥ lsn`, leading sync rounds
    /// or following someone else's.
    fn group_sync(&self, lsn: Lsn) -> Result<()> {
        self.check_poisoned()?;
        if self.durable_lsn.load(Ordering::Acquire) >= lsn {
            return Ok(());
        }
        let mut s = self.sync.lock();
        loop {
            self.check_poisoned()?;
            if self.durable_lsn.load(Ordering::Acquire) >= lsn {
                return Ok(());
            }
            if s.in_progress {
                // Spin (yielding) for a while before sleeping: a round takes
                // tens of microseconds, and waking from the condition
                // variable can cost as much again on a small VM.
                let round = self.rounds.load(Ordering::Acquire);
                let ended = MutexGuard::unlocked(&mut s, || {
                    let start = Instant::now();
                    while start.elapsed() < FOLLOWER_SPIN {
                        if self.rounds.load(Ordering::Acquire) != round {
                            return true;
                        }
                        std::thread::yield_now();
                    }
                    false
                });
                if !ended && s.in_progress && self.rounds.load(Ordering::Acquire) == round {
                    self.synced.wait(&mut s);
                }
                continue;
            }
            s.in_progress = true;
            let round = MutexGuard::unlocked(&mut s, || self.sync_round());
            s.in_progress = false;
            if let Ok(target) = round {
                self.durable_lsn.fetch_max(target, Ordering::AcqRel);
            }
            self.rounds.fetch_add(1, Ordering::AcqRel);
            self.synced.notify_all();
            round?;
        }
    }

    fn wait_durable(&self, lsn: Lsn) -> Result<()> {
        self.check_poisoned()?;
        let last = self.last_lsn.load(Ordering::Acquire);
        if lsn > last {
            return Err(Error::InvalidInput(format!(
                "wait_durable({lsn}): the last appended record is {last}"
            )));
        }
        match self.opts.sync {
            // A wait for the fsync (ours or another committer's): through
            // the thread's wait hook, unless there is nothing to wait for.
            SyncMode::Always if self.durable_lsn.load(Ordering::Acquire) >= lsn => Ok(()),
            SyncMode::Always => qube_common::wait::wait(|| self.group_sync(lsn)),
            SyncMode::Periodic(_) | SyncMode::Never => self.ensure_written(lsn),
        }
    }

    /// Body of the `Periodic` background thread. Holds an `Arc<Shared>`;
    /// `Wal::drop` sets `stop` and joins it.
    fn periodic_sync(&self, every: Duration) {
        let mut stop = self.stop.lock();
        while !*stop {
            self.stop_cv.wait_for(&mut stop, every);
            if *stop {
                break;
            }
            let last = self.last_lsn.load(Ordering::Acquire);
            if !self.poisoned.load(Ordering::Acquire)
                && self.durable_lsn.load(Ordering::Acquire) < last
            {
                // A failure poisons the WAL; committers see it on their next call.
                let _ = MutexGuard::unlocked(&mut stop, || self.group_sync(last));
            }
        }
    }

    fn recycle(&self, upto: Lsn) -> Result<()> {
        self.check_poisoned()?;
        let victims: Vec<SegmentInfo> = {
            let mut st = self.state.lock();
            let bound = upto.saturating_add(1);
            // Everything is covered: start a fresh segment so the current
            // one can go too, and a checkpointed WAL takes no disk space.
            if bound >= st.next_lsn && st.current.bytes > HEADER_LEN {
                self.rotate(&mut st)?;
            }
            let mut n = 0;
            while n < st.closed.len() {
                let next_first = st.closed.get(n + 1).map_or(st.current.first_lsn, |s| s.first_lsn);
                if next_first > bound {
                    break;
                }
                n += 1;
            }
            st.closed.drain(..n).collect()
        };
        if victims.is_empty() {
            return Ok(());
        }
        // Oldest first. A file that cannot be deleted is only garbage the
        // next `open` removes (the checkpoint covers it); keep going.
        let mut first_err = None;
        for v in &victims {
            if let Err(e) = std::fs::remove_file(&v.path)
                && e.kind() != std::io::ErrorKind::NotFound
                && first_err.is_none()
            {
                first_err =
                    Some(Error::io(format!("deleting WAL segment {}", v.path.display()), e));
            }
        }
        self.fsync_dir()?;
        first_err.map_or(Ok(()), Err)
    }

    fn replay(&self, after: Lsn, f: &mut dyn FnMut(Lsn, &[u8]) -> Result<()>) -> Result<()> {
        // Snapshot: everything up to `bound` is in the files listed.
        let (bound, segments) = {
            let mut io = self.io.lock();
            if !self.poisoned.load(Ordering::Acquire) {
                self.write_pending(&mut io)?;
            }
            let st = self.state.lock();
            let segs: Vec<(Lsn, PathBuf)> = st
                .closed
                .iter()
                .chain(std::iter::once(&st.current))
                .map(|s| (s.first_lsn, s.path.clone()))
                .collect();
            (io.written_lsn, segs)
        };
        if bound <= after {
            return Ok(());
        }
        // Start at the last segment that begins at or before `after + 1`.
        let start = segments.iter().rposition(|(first, _)| *first <= after + 1).unwrap_or(0);
        let mut buf = Vec::new();
        let mut expected = None;
        let mut last_path = None;
        for (first_lsn, path) in segments.iter().skip(start) {
            let first_lsn = *first_lsn;
            if *expected.get_or_insert(first_lsn) != first_lsn {
                return Err(Error::corrupt_at(
                    path,
                    0,
                    format!(
                        "segment starts at LSN {first_lsn}, but LSN {} is next",
                        expected.unwrap_or_default()
                    ),
                ));
            }
            let next = replay_segment(path, first_lsn, after, bound, &mut buf, f)?;
            if next > bound {
                return Ok(());
            }
            expected = Some(next);
            last_path = Some(path);
        }
        let missing = expected.unwrap_or(after + 1);
        Err(Error::corrupt_at(
            last_path.map_or(self.dir.as_path(), |p| p.as_path()),
            0,
            format!("WAL ends before record {missing}, but records up to {bound} were written"),
        ))
    }
}

/// Replays one segment: calls `f` for records in `(after, bound]`. Returns
/// the LSN after the last record read (so `> bound` means done).
fn replay_segment(
    path: &Path,
    first_lsn: Lsn,
    after: Lsn,
    bound: Lsn,
    buf: &mut Vec<u8>,
    f: &mut dyn FnMut(Lsn, &[u8]) -> Result<()>,
) -> Result<Lsn> {
    let read_err =
        |e: std::io::Error| Error::io(format!("reading WAL segment {}", path.display()), e);
    let mut r = SegmentReader::open(path).map_err(read_err)?;
    match r.read_header().map_err(read_err)? {
        HeaderCheck::Valid(first) if first == first_lsn => {}
        HeaderCheck::Valid(first) => {
            let why = format!("header says the first LSN is {first}, the file name {first_lsn}");
            return Err(Error::corrupt_at(path, 0, why));
        }
        HeaderCheck::Torn(why) | HeaderCheck::Corrupt(why) => {
            return Err(Error::corrupt_at(path, 0, why));
        }
        HeaderCheck::Newer(v) => {
            return Err(Error::Refused(format!(
                "WAL segment {} has format version {v}, newer than this build",
                path.display()
            )));
        }
    }
    let mut expected = first_lsn;
    while expected <= bound {
        let frame = match r.next_frame().map_err(read_err)? {
            Next::End => return Ok(expected),
            Next::Bad { offset, why } => return Err(Error::corrupt_at(path, offset, why)),
            Next::Frame(frame) => frame,
        };
        if frame.lsn != expected {
            let why = format!("record has LSN {}, expected {expected}", frame.lsn);
            return Err(Error::corrupt_at(path, frame.offset, why));
        }
        if frame.lsn <= after {
            r.skip_payload(&frame).map_err(read_err)?;
        } else {
            if !r.read_payload(&frame, buf).map_err(read_err)? {
                let why = format!("record {} fails its checksum", frame.lsn);
                return Err(Error::corrupt_at(path, frame.offset, why));
            }
            f(frame.lsn, buf)?;
        }
        expected += 1;
    }
    Ok(expected)
}

/// Fills `[from, to)` of a file with zeros.
fn write_zeros(file: &File, from: u64, to: u64) -> std::io::Result<()> {
    static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
    let mut at = from;
    while at < to {
        let n = (to - at).min(ZEROS.len() as u64) as usize;
        file.write_all_at(&ZEROS[..n], at)?;
        at += n as u64;
    }
    Ok(())
}
