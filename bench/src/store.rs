//! What the benchmark needs from an engine, and how to open each one.

use std::path::Path;

use anyhow::Result;
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use crate::{Key, Val};

/// The engines the benchmark knows. The order here is the column order of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    Redb,
    Sqlite,
    Qubedb,
}

impl EngineKind {
    pub const ALL: [EngineKind; 3] = [EngineKind::Redb, EngineKind::Sqlite, EngineKind::Qubedb];

    /// The name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Redb => "redb",
            EngineKind::Sqlite => "sqlite",
            EngineKind::Qubedb => "qubedb",
        }
    }

    /// The name used in the report.
    pub fn label(self) -> &'static str {
        match self {
            EngineKind::Redb => "redb",
            EngineKind::Sqlite => "SQLite",
            EngineKind::Qubedb => "QubeDB",
        }
    }
}

/// One open engine. Every write method is one durable commit.
pub trait Store {
    /// Inserts all pairs in one transaction / commit.
    fn insert_batch(&mut self, pairs: &[(Key, Val)]) -> Result<()>;
    /// Looks up every key (in one read transaction where the engine has them);
    /// returns how many were found with a value of the expected length.
    fn read_batch(&mut self, keys: &[Key]) -> Result<u64>;
    /// Scans every pair in key order; returns (pairs, key bytes + value bytes).
    fn scan_all(&mut self) -> Result<(u64, u64)>;
    /// Inserts one pair in its own durable commit.
    fn commit_one(&mut self, key: &Key, value: &Val) -> Result<()>;
    /// Leaves everything in the data files (checkpoint) and closes.
    fn close(self: Box<Self>) -> Result<()>;
}

/// Opens (or creates) `kind` in `dir` with an engine cache of `cache_bytes`.
pub fn open(kind: EngineKind, dir: &Path, cache_bytes: u64) -> Result<Box<dyn Store>> {
    std::fs::create_dir_all(dir)?;
    Ok(match kind {
        EngineKind::Redb => Box::new(crate::store_redb::RedbStore::open(dir, cache_bytes)?),
        EngineKind::Sqlite => Box::new(crate::store_sqlite::SqliteStore::open(dir, cache_bytes)?),
        EngineKind::Qubedb => Box::new(crate::store_qubedb::QubeStore::open(dir, cache_bytes)?),
    })
}
