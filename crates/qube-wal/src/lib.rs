//! QubeDB's write-ahead log. (API contract; the implementation is being written.)
//!
//! Records are opaque byte payloads (the storage engine puts logical
//! key-value batches in them). Each record gets a log sequence number (LSN):
//! 1, 2, 3, … with no gaps, continuing across segments and restarts.

use std::path::Path;
use std::time::Duration;

use qube_common::Result;

/// Log sequence number of a record. 0 means "no record".
pub type Lsn = u64;

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
    pub sync: SyncMode,
    /// A segment is closed and a new one started once it exceeds this size.
    pub segment_bytes: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions { sync: SyncMode::Always, segment_bytes: 64 << 20 }
    }
}

/// The write-ahead log of one data directory.
pub struct Wal {}

impl Wal {
    /// Opens (or creates) the WAL in `dir`. `next_lsn_at_least` is one past the
    /// LSN covered by the last checkpoint, so numbering continues when every
    /// segment was recycled. Stops at a torn or corrupt tail and truncates it.
    pub fn open(_dir: &Path, _opts: WalOptions, _next_lsn_at_least: Lsn) -> Result<Wal> {
        unimplemented!()
    }
    /// Calls `f` for every record with LSN > `after`, in order.
    pub fn replay(&self, _after: Lsn, _f: &mut dyn FnMut(Lsn, &[u8]) -> Result<()>) -> Result<()> {
        unimplemented!()
    }
    /// Appends a record (not yet durable) and returns its LSN.
    pub fn append(&self, _payload: &[u8]) -> Result<Lsn> {
        unimplemented!()
    }
    /// Returns once every record up to `lsn` is durable as the sync mode defines.
    pub fn wait_durable(&self, _lsn: Lsn) -> Result<()> {
        unimplemented!()
    }
    /// Writes and fsyncs everything appended so far, whatever the sync mode.
    pub fn sync(&self) -> Result<()> {
        unimplemented!()
    }
    /// Every record ≤ `upto` is covered by a checkpoint: recycle whole segments below it.
    pub fn recycle(&self, _upto: Lsn) -> Result<()> {
        unimplemented!()
    }
    /// LSN of the last appended record (0 if none ever).
    pub fn last_lsn(&self) -> Lsn {
        unimplemented!()
    }
    /// Bytes of WAL currently on disk (all live segments).
    pub fn disk_bytes(&self) -> u64 {
        unimplemented!()
    }
}
