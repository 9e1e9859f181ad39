//! redb: one file, default `Durability::Immediate` (durable when `commit` returns),
//! cache set with `Builder::set_cache_size`.

use std::path::Path;

use anyhow::Result;
use redb::{Builder, Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::store::Store;
use crate::{Key, VAL_LEN, Val};

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");

pub struct RedbStore {
    db: Database,
}

impl RedbStore {
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self> {
        let db =
            Builder::new().set_cache_size(cache_bytes as usize).create(dir.join("data.redb"))?;
        Ok(RedbStore { db })
    }
}

impl Store for RedbStore {
    fn insert_batch(&mut self, pairs: &[(Key, Val)]) -> Result<()> {
        let tx = self.db.begin_write()?;
        {
            let mut table = tx.open_table(TABLE)?;
            for (k, v) in pairs {
                table.insert(k.as_slice(), v.as_slice())?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn read_batch(&mut self, keys: &[Key]) -> Result<u64> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(TABLE)?;
        let mut found = 0;
        for k in keys {
            if let Some(v) = table.get(k.as_slice())? {
                found += u64::from(v.value().len() == VAL_LEN);
            }
        }
        Ok(found)
    }

    fn scan_all(&mut self) -> Result<(u64, u64)> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(TABLE)?;
        let (mut pairs, mut bytes) = (0, 0);
        for item in table.iter()? {
            let (k, v) = item?;
            pairs += 1;
            bytes += (k.value().len() + v.value().len()) as u64;
        }
        Ok((pairs, bytes))
    }

    fn commit_one(&mut self, key: &Key, value: &Val) -> Result<()> {
        self.insert_batch(&[(*key, *value)])
    }

    fn close(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}
