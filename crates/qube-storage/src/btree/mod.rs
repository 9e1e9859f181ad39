//! The B+Tree engine (being written).

use std::path::Path;
use std::time::Duration;

use qube_common::Result;

use crate::{Cursor, Direction, Durability, Engine, KeyRange, Status, WriteBatch};

/// Configuration of a [`BTreeEngine`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Buffer pool capacity in bytes.
    pub pool_bytes: usize,
    /// When a commit is acknowledged.
    pub durability: Durability,
    /// Take a checkpoint once this much WAL was written since the last one.
    pub checkpoint_wal_bytes: u64,
    /// Take a checkpoint at least this often while there are writes (None: only by size).
    pub checkpoint_interval: Option<Duration>,
    /// WAL segment size.
    pub wal_segment_bytes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            pool_bytes: 64 << 20,
            durability: Durability::Always,
            checkpoint_wal_bytes: 64 << 20,
            checkpoint_interval: Some(Duration::from_secs(60)),
            wal_segment_bytes: 64 << 20,
        }
    }
}

/// The B+Tree engine.
pub struct BTreeEngine {}

impl BTreeEngine {
    /// Opens or creates a data directory.
    pub fn open(_dir: impl AsRef<Path>, _opts: Options) -> Result<Self> {
        unimplemented!()
    }
}

impl Engine for BTreeEngine {
    fn get(&self, _key: &[u8]) -> Result<Option<Vec<u8>>> {
        unimplemented!()
    }
    fn write(&self, _batch: WriteBatch) -> Result<()> {
        unimplemented!()
    }
    fn scan(&self, _range: KeyRange, _direction: Direction) -> Result<Box<dyn Cursor + '_>> {
        unimplemented!()
    }
    fn flush(&self) -> Result<()> {
        unimplemented!()
    }
    fn status(&self) -> Result<Status> {
        unimplemented!()
    }
}
