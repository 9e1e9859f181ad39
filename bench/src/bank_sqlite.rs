//! Bank transfers in SQLite (bundled): WAL mode, `synchronous=FULL` (the WAL
//! is fsynced at every commit), `BEGIN IMMEDIATE` transactions, one
//! connection per thread, and a busy timeout so that a second writer waits
//! for the first instead of failing.
//!
//! Schema: `accounts(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use rusqlite::{Connection, ErrorCode, TransactionBehavior};

use crate::bank::{Audit, Bank, INITIAL_BALANCE, LOAD_BATCH, Retry, Worker};

const SELECT: &str = "SELECT balance FROM accounts WHERE id = ?1";
const UPDATE: &str = "UPDATE accounts SET balance = ?2 WHERE id = ?1";
const INSERT: &str = "INSERT INTO accounts(id, balance) VALUES (?1, ?2)";
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct SqliteBank {
    path: PathBuf,
    cache_bytes: u64,
    /// For the load, the audits and the final checkpoint; idle during the run.
    conn: Mutex<Connection>,
}

/// Opens a connection with the benchmark's settings (`synchronous`,
/// `cache_size` and the busy timeout are per connection).
fn connect(path: &Path, cache_bytes: u64) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    ensure!(mode.eq_ignore_ascii_case("wal"), "SQLite refused WAL mode ({mode})");
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "cache_size", -((cache_bytes / 1024).max(1) as i64))?;
    Ok(conn)
}

impl Bank for SqliteBank {
    fn create(dir: &Path, n: u64, cache_bytes: u64) -> Result<Self> {
        let bank = Self::open(dir, cache_bytes)?;
        {
            let mut conn = bank.conn.lock().unwrap_or_else(|p| p.into_inner());
            conn.execute_batch(
                "CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)",
            )?;
            let mut id = 0;
            while id < n {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                {
                    let mut st = tx.prepare_cached(INSERT)?;
                    for i in id..(id + LOAD_BATCH).min(n) {
                        st.execute((i as i64, INITIAL_BALANCE))?;
                    }
                }
                tx.commit()?;
                id += LOAD_BATCH;
            }
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        }
        Ok(bank)
    }

    fn open(dir: &Path, cache_bytes: u64) -> Result<Self> {
        let path = dir.join("bank.sqlite");
        let conn = connect(&path, cache_bytes)?;
        Ok(SqliteBank { path, cache_bytes, conn: Mutex::new(conn) })
    }

    fn worker(&self) -> Result<Box<dyn Worker + '_>> {
        Ok(Box::new(SqliteWorker { conn: connect(&self.path, self.cache_bytes)? }))
    }

    fn audit(&self) -> Result<Audit> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction()?;
        let mut audit = Audit::default();
        {
            let mut st = tx.prepare("SELECT id, balance FROM accounts ORDER BY id")?;
            let mut rows = st.query([])?;
            while let Some(row) = rows.next()? {
                let (id, balance): (i64, i64) = (row.get(0)?, row.get(1)?);
                audit.push(id as u64, balance);
            }
        }
        tx.commit()?;
        Ok(audit)
    }

    fn close(self) -> Result<()> {
        let conn = self.conn.into_inner().unwrap_or_else(|p| p.into_inner());
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        conn.close().map_err(|(_, e)| e)?;
        Ok(())
    }
}

struct SqliteWorker {
    conn: Connection,
}

impl SqliteWorker {
    fn try_transfer(&mut self, from: u64, to: u64, amount: i64) -> rusqlite::Result<()> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut select = tx.prepare_cached(SELECT)?;
            let b_from: i64 = select.query_row([from as i64], |r| r.get(0))?;
            let b_to: i64 = select.query_row([to as i64], |r| r.get(0))?;
            let mut update = tx.prepare_cached(UPDATE)?;
            update.execute((from as i64, b_from - amount))?;
            update.execute((to as i64, b_to + amount))?;
        }
        tx.commit()
    }
}

impl Worker for SqliteWorker {
    fn transfer(&mut self, from: u64, to: u64, amount: i64) -> Result<Option<Retry>> {
        match self.try_transfer(from, to, amount) {
            Ok(()) => Ok(None),
            Err(e) if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy) => {
                Ok(Some(Retry::Busy))
            }
            Err(e) => {
                Err(e).with_context(|| format!("transfer of {amount} from account {from} to {to}"))
            }
        }
    }
}
