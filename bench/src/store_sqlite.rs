//! SQLite (bundled): WAL mode, `synchronous=FULL` (the WAL is fsynced at every
//! commit), page cache set with `PRAGMA cache_size = -KiB`, one connection,
//! prepared (cached) statements.

use std::path::Path;

use anyhow::{Result, ensure};
use rusqlite::Connection;

use crate::store::Store;
use crate::{Key, VAL_LEN, Val};

const INSERT: &str = "INSERT INTO kv(k, v) VALUES (?1, ?2)";
const SELECT: &str = "SELECT v FROM kv WHERE k = ?1";
const SCAN: &str = "SELECT k, v FROM kv ORDER BY k";

pub struct SqliteStore {
    conn: Connection,
}

impl SqliteStore {
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self> {
        let conn = Connection::open(dir.join("data.sqlite"))?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        ensure!(mode.eq_ignore_ascii_case("wal"), "SQLite refused WAL mode ({mode})");
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "cache_size", -((cache_bytes / 1024).max(1) as i64))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS kv(k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID",
        )?;
        Ok(SqliteStore { conn })
    }
}

impl Store for SqliteStore {
    fn insert_batch(&mut self, pairs: &[(Key, Val)]) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut st = tx.prepare_cached(INSERT)?;
            for (k, v) in pairs {
                st.execute((&k[..], &v[..]))?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn read_batch(&mut self, keys: &[Key]) -> Result<u64> {
        self.conn.execute_batch("BEGIN")?;
        let mut found = 0;
        {
            let mut st = self.conn.prepare_cached(SELECT)?;
            for k in keys {
                let mut rows = st.query([&k[..]])?;
                if let Some(row) = rows.next()? {
                    found += u64::from(row.get_ref(0)?.as_blob()?.len() == VAL_LEN);
                }
            }
        }
        self.conn.execute_batch("COMMIT")?;
        Ok(found)
    }

    fn scan_all(&mut self) -> Result<(u64, u64)> {
        let mut st = self.conn.prepare_cached(SCAN)?;
        let mut rows = st.query([])?;
        let (mut pairs, mut bytes) = (0, 0);
        while let Some(row) = rows.next()? {
            pairs += 1;
            bytes += (row.get_ref(0)?.as_blob()?.len() + row.get_ref(1)?.as_blob()?.len()) as u64;
        }
        Ok((pairs, bytes))
    }

    fn commit_one(&mut self, key: &Key, value: &Val) -> Result<()> {
        // Autocommit: the statement is its own transaction.
        self.conn.prepare_cached(INSERT)?.execute((&key[..], &value[..]))?;
        Ok(())
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        self.conn.close().map_err(|(_, e)| e)?;
        Ok(())
    }
}
