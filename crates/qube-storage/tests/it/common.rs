use std::path::Path;

use qube_storage::{BTreeEngine, Durability, Options};

/// Options for tests: small pool, no background checkpoints, no automatic
/// checkpoint on close (tests say when they want one).
pub fn opts(pool_bytes: usize) -> Options {
    Options {
        pool_bytes,
        durability: Durability::Always,
        checkpoint_wal_bytes: u64::MAX,
        checkpoint_interval: None,
        wal_segment_bytes: 1 << 20,
        checkpoint_on_close: false,
    }
}

pub fn open(dir: &Path, pool_bytes: usize) -> BTreeEngine {
    BTreeEngine::open(dir, opts(pool_bytes)).expect("open")
}

/// xorshift64: a small deterministic generator for seed-fixed tests.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
