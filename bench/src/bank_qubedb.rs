//! Bank transfers through QubeDB's transaction layer: `qube_txn::Mvcc` over
//! `BTreeEngine` with `Durability::Always` (fsync per commit, group commit).
//!
//! Account `id` is the key `b"acct/"` + id as u64 big-endian (so key order is
//! id order); its balance is an i64, little-endian.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use qube_storage::{BTreeEngine, Direction, Durability, Engine, Error, KeyRange, Options};
use qube_txn::{Isolation, Mode, Mvcc, MvccOptions};

use crate::bank::{Audit, Bank, INITIAL_BALANCE, LOAD_BATCH, Retry, Worker};

const PREFIX: &[u8] = b"acct/";
/// Loading and audits use REPEATABLE READ; transfers use `--isolation`.
const RW: Mode = Mode::ReadWrite(Isolation::RepeatableRead);

/// `--isolation` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IsolationArg {
    ReadCommitted,
    RepeatableRead,
    Serializable,
}

impl IsolationArg {
    pub fn name(self) -> &'static str {
        match self {
            IsolationArg::ReadCommitted => "read-committed",
            IsolationArg::RepeatableRead => "repeatable-read",
            IsolationArg::Serializable => "serializable",
        }
    }
}

static TRANSFER_ISOLATION: std::sync::OnceLock<Isolation> = std::sync::OnceLock::new();

/// Sets the transfers' isolation level (once, in the child process).
pub fn set_isolation(arg: IsolationArg) {
    let _ = TRANSFER_ISOLATION.set(match arg {
        IsolationArg::ReadCommitted => Isolation::ReadCommitted,
        IsolationArg::RepeatableRead => Isolation::RepeatableRead,
        IsolationArg::Serializable => Isolation::Serializable,
    });
}

fn transfer_mode() -> Mode {
    Mode::ReadWrite(*TRANSFER_ISOLATION.get().unwrap_or(&Isolation::ReadCommitted))
}

fn key(id: u64) -> [u8; 13] {
    let mut k = [0; 13];
    k[..5].copy_from_slice(PREFIX);
    k[5..].copy_from_slice(&id.to_be_bytes());
    k
}

fn balance(id: u64, v: Option<Vec<u8>>) -> Result<i64> {
    let v = v.with_context(|| format!("account {id} is missing"))?;
    let b: [u8; 8] = v
        .as_slice()
        .try_into()
        .map_err(|_| anyhow!("account {id}: balance of {} bytes", v.len()))?;
    Ok(i64::from_le_bytes(b))
}

pub struct QubeBank {
    /// Declared first: dropped (GC thread stopped) before the engine is closed.
    mvcc: Mvcc,
    engine: Arc<BTreeEngine>,
}

impl QubeBank {
    fn open_at(dir: &Path, cache_bytes: u64) -> Result<Self> {
        let opts = Options {
            pool_bytes: cache_bytes as usize,
            durability: Durability::Always,
            ..Options::default()
        };
        let engine = Arc::new(BTreeEngine::open(dir, opts)?);
        let mvcc = Mvcc::open(
            engine.clone(),
            MvccOptions { gc_interval: Some(Duration::from_secs(1)), ..Default::default() },
        )?;
        Ok(QubeBank { mvcc, engine })
    }
}

impl Bank for QubeBank {
    fn create(dir: &Path, n: u64, cache_bytes: u64) -> Result<Self> {
        let bank = Self::open_at(dir, cache_bytes)?;
        let value = INITIAL_BALANCE.to_le_bytes();
        let mut id = 0;
        while id < n {
            let mut txn = bank.mvcc.begin(RW)?;
            for i in id..(id + LOAD_BATCH).min(n) {
                txn.set(&key(i), &value)?;
            }
            txn.commit()?;
            id += LOAD_BATCH;
        }
        bank.engine.checkpoint()?;
        Ok(bank)
    }

    fn open(dir: &Path, cache_bytes: u64) -> Result<Self> {
        Self::open_at(dir, cache_bytes)
    }

    fn worker(&self) -> Result<Box<dyn Worker + '_>> {
        Ok(Box::new(QubeWorker { mvcc: &self.mvcc }))
    }

    fn audit(&self) -> Result<Audit> {
        let mut txn = self.mvcc.begin(Mode::ReadOnly(Isolation::RepeatableRead))?;
        let rows = txn.scan(KeyRange::prefix(PREFIX), Direction::Forward)?;
        txn.commit()?;
        let mut audit = Audit::default();
        for (k, v) in rows {
            let id: [u8; 8] = k[PREFIX.len()..]
                .try_into()
                .map_err(|_| anyhow!("scan returned the key {k:?}, not an account"))?;
            let id = u64::from_be_bytes(id);
            audit.push(id, balance(id, Some(v))?);
        }
        Ok(audit)
    }

    fn log_status(&self, prefix: &str) {
        let s = self.mvcc.status();
        eprintln!(
            "{prefix}: MVCC: {} commits, {} rollbacks, {} serialization failures, {} GC runs removed {} versions",
            s.commits, s.rollbacks, s.serialization_failures, s.gc_runs, s.gc_versions_removed
        );
        if let Ok(e) = self.engine.status() {
            eprintln!(
                "{prefix}: engine: {} WAL fsyncs for {} batches since open ({:.2} batches per fsync)",
                e.wal_fsyncs,
                e.last_lsn,
                e.last_lsn as f64 / e.wal_fsyncs.max(1) as f64
            );
        }
    }

    fn close(self) -> Result<()> {
        let QubeBank { mvcc, engine } = self;
        drop(mvcc);
        let engine = Arc::try_unwrap(engine)
            .map_err(|_| anyhow!("the engine is still shared after the MVCC layer closed"))?;
        engine.checkpoint()?;
        engine.close()?;
        Ok(())
    }
}

struct QubeWorker<'a> {
    mvcc: &'a Mvcc,
}

impl QubeWorker<'_> {
    /// Locks both accounts in key order (so two transfers never deadlock),
    /// reads both balances, writes both, commits.
    fn try_transfer(&self, from: u64, to: u64, amount: i64) -> Result<()> {
        ensure!(from != to, "transfer to the same account");
        let mut txn = self.mvcc.begin(transfer_mode())?;
        let (first, second) = (from.min(to), from.max(to));
        let b_first = balance(first, txn.get_for_update(&key(first))?)?;
        let b_second = balance(second, txn.get_for_update(&key(second))?)?;
        let (b_from, b_to) = if from == first { (b_first, b_second) } else { (b_second, b_first) };
        txn.set(&key(from), &(b_from - amount).to_le_bytes())?;
        txn.set(&key(to), &(b_to + amount).to_le_bytes())?;
        txn.commit()?;
        Ok(())
    }
}

impl Worker for QubeWorker<'_> {
    fn transfer(&mut self, from: u64, to: u64, amount: i64) -> Result<Option<Retry>> {
        match self.try_transfer(from, to, amount) {
            Ok(()) => Ok(None),
            Err(e) => match e.downcast_ref::<Error>() {
                Some(Error::Deadlock(_)) => Ok(Some(Retry::Deadlock)),
                Some(qe) if qe.is_retryable() => Ok(Some(Retry::Serialization)),
                _ => Err(e.context(format!("transfer of {amount} from account {from} to {to}"))),
            },
        }
    }
}
