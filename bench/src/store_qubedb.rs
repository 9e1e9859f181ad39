//! QubeDB's B+Tree engine: `Durability::Always` (fsync per commit, group commit),
//! buffer pool of `cache_bytes`.

use std::path::Path;

use anyhow::Result;
use qube_storage::{BTreeEngine, Direction, Durability, Engine, KeyRange, Options, WriteBatch};

use crate::store::Store;
use crate::{Key, VAL_LEN, Val};

pub struct QubeStore {
    engine: BTreeEngine,
}

impl QubeStore {
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self> {
        let opts = Options {
            pool_bytes: cache_bytes as usize,
            durability: Durability::Always,
            ..Options::default()
        };
        Ok(QubeStore { engine: BTreeEngine::open(dir, opts)? })
    }
}

impl Store for QubeStore {
    fn insert_batch(&mut self, pairs: &[(Key, Val)]) -> Result<()> {
        let mut batch = WriteBatch::new();
        for (k, v) in pairs {
            batch.set(k, v);
        }
        Ok(self.engine.write(batch)?)
    }

    fn read_batch(&mut self, keys: &[Key]) -> Result<u64> {
        let mut found = 0;
        let mut v = Vec::with_capacity(VAL_LEN);
        for k in keys {
            if self.engine.get_into(k, &mut v)? {
                found += u64::from(v.len() == VAL_LEN);
            }
        }
        Ok(found)
    }

    fn scan_all(&mut self) -> Result<(u64, u64)> {
        let (mut pairs, mut bytes) = (0, 0);
        let mut c = self.engine.scan(KeyRange::all(), Direction::Forward)?;
        while c.advance()? {
            pairs += 1;
            bytes += (c.key().len() + c.value().len()) as u64;
        }
        Ok((pairs, bytes))
    }

    fn commit_one(&mut self, key: &Key, value: &Val) -> Result<()> {
        Ok(self.engine.set(key, value)?)
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.engine.checkpoint()?;
        Ok(())
    }
}
