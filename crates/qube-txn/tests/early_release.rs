//! Early lock release, replayed step by step on an engine whose fsync is a
//! gate the test opens.
//!
//! A commit at READ COMMITTED or REPEATABLE READ releases its row locks
//! once its batch is ordered in the log, before it is durable. These tests
//! check the three rules that make that safe:
//!
//! * the next holder of a lock reads the newest applied version (not the
//!   newest durable one), or it would lose the update;
//! * plain snapshot reads still see only durable commits;
//! * a transaction that read under a lock and writes nothing is not
//!   acknowledged before the commit it read is durable;
//!
//! and that SERIALIZABLE keeps its locks until the end.

use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use qube_common::Result;
use qube_storage::{Cursor, Direction, Engine, KeyRange, MemoryEngine, Op, Status, WriteBatch};
use qube_txn::{Isolation, Mode, Mvcc, MvccOptions};

/// Batches are applied at once to `latest` (what `seek_latest` reads) and
/// reach `published` (everything else) only when `wait_durable` or `flush`
/// gets through the gate, which the test holds closed or open.
#[derive(Default)]
struct GatedEngine {
    latest: MemoryEngine,
    published: MemoryEngine,
    /// Batches ordered but not durable yet, with their LSNs.
    queue: Mutex<Vec<(u64, WriteBatch)>>,
    next_lsn: Mutex<u64>,
    open: Mutex<bool>,
    opened: Condvar,
}

impl GatedEngine {
    fn set_open(&self, open: bool) {
        *self.open.lock().unwrap() = open;
        self.opened.notify_all();
    }

    /// Waits for the gate, then publishes every queued batch up to `lsn`.
    fn sync_through(&self, lsn: u64) -> Result<()> {
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
        drop(open);
        let mut q = self.queue.lock().unwrap();
        let (done, rest): (Vec<_>, Vec<_>) = q.drain(..).partition(|(l, _)| *l <= lsn);
        *q = rest;
        for (_, b) in done {
            self.published.write(b)?;
        }
        Ok(())
    }
}

fn copy(batch: &WriteBatch) -> WriteBatch {
    let mut b = WriteBatch::new();
    for op in batch.ops() {
        match op {
            Op::Set(k, v) => b.set(k, v),
            Op::Delete(k) => b.delete(k),
        };
    }
    b
}

impl Engine for GatedEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.published.get(key)
    }
    fn write(&self, batch: WriteBatch) -> Result<()> {
        let lsn = self.write_nowait(batch)?;
        self.wait_durable(lsn)
    }
    fn write_nowait(&self, batch: WriteBatch) -> Result<u64> {
        let mut next = self.next_lsn.lock().unwrap();
        *next += 1;
        self.latest.write(copy(&batch))?;
        self.queue.lock().unwrap().push((*next, batch));
        Ok(*next)
    }
    fn wait_durable(&self, lsn: u64) -> Result<()> {
        self.sync_through(lsn)
    }
    fn scan(&self, range: KeyRange, direction: Direction) -> Result<Box<dyn Cursor + '_>> {
        self.published.scan(range, direction)
    }
    fn seek_latest(
        &self,
        range: &KeyRange,
        key: &mut Vec<u8>,
        value: &mut Vec<u8>,
    ) -> Result<bool> {
        self.latest.seek(range, key, value)
    }
    fn flush(&self) -> Result<()> {
        self.sync_through(u64::MAX)
    }
    fn status(&self) -> Result<Status> {
        self.published.status()
    }
}

fn setup(lock_timeout: Option<Duration>) -> (Arc<GatedEngine>, Arc<Mvcc>) {
    let engine = Arc::new(GatedEngine::default());
    engine.set_open(true);
    let opts = MvccOptions { gc_interval: None, lock_timeout, ..MvccOptions::default() };
    let mvcc = Arc::new(Mvcc::open(engine.clone(), opts).unwrap());
    let mut t = mvcc.begin(Mode::ReadWrite(Isolation::ReadCommitted)).unwrap();
    t.set(b"k", b"1").unwrap();
    t.commit().unwrap();
    (engine, mvcc)
}

/// Starts a commit of `k = value` at `iso` in a thread; the gate is
/// closed, so it stays in its fsync. Returns the channel its result comes on.
fn commit_blocked(mvcc: &Arc<Mvcc>, iso: Isolation, value: &[u8]) -> mpsc::Receiver<Result<u64>> {
    let mut t = mvcc.begin(Mode::ReadWrite(iso)).unwrap();
    t.get_for_update(b"k").unwrap();
    t.set(b"k", value).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(t.commit()).unwrap());
    rx
}

/// A READ COMMITTED transaction holding the lock of `k`, taken once the
/// blocked commit of `k = 2` has released it (ordered, not yet durable).
fn lock_once_released(mvcc: &Mvcc) -> qube_txn::Transaction {
    loop {
        let mut t = mvcc.begin(Mode::ReadWrite(Isolation::ReadCommitted)).unwrap();
        if t.get_for_update(b"k").unwrap().as_deref() == Some(b"2".as_slice()) {
            return t;
        }
        drop(t);
        std::thread::yield_now();
    }
}

#[test]
fn the_next_lock_holder_builds_on_a_commit_that_is_not_durable_yet() {
    for iso in [Isolation::ReadCommitted, Isolation::RepeatableRead] {
        let (engine, mvcc) = setup(None);
        engine.set_open(false);
        let first = commit_blocked(&mvcc, Isolation::ReadCommitted, b"2");
        let mut t2 = lock_once_released(&mvcc);
        assert!(first.try_recv().is_err(), "the first commit is acknowledged before its fsync");
        // A snapshot still sees only what is durable.
        let mut r = mvcc.begin(Mode::ReadOnly(Isolation::RepeatableRead)).unwrap();
        assert_eq!(r.get(b"k").unwrap().as_deref(), Some(b"1".as_slice()));
        drop(r);
        // A transaction at `iso` whose snapshot predates the first commit.
        if iso == Isolation::RepeatableRead {
            let mut t3 = mvcc.begin(Mode::ReadWrite(iso)).unwrap();
            drop(t2);
            let e = t3.get_for_update(b"k").unwrap_err();
            assert_eq!(e.sqlstate(), "40001", "{e}");
            engine.set_open(true);
            first.recv().unwrap().unwrap();
            continue;
        }
        t2.set(b"k", b"3").unwrap();
        let (tx, second) = mpsc::channel();
        std::thread::spawn(move || tx.send(t2.commit()).unwrap());
        std::thread::sleep(Duration::from_millis(50));
        assert!(second.try_recv().is_err(), "the second commit is acknowledged before its fsync");
        engine.set_open(true);
        let ts1 = first.recv().unwrap().unwrap();
        let ts2 = second.recv().unwrap().unwrap();
        assert!(ts2 > ts1);
        let mut r = mvcc.begin(Mode::ReadOnly(Isolation::RepeatableRead)).unwrap();
        assert_eq!(r.get(b"k").unwrap().as_deref(), Some(b"3".as_slice()));
        assert_eq!(mvcc.status().row_locks, 0);
    }
}

#[test]
fn a_locked_read_of_a_commit_not_yet_durable_waits_for_it_at_commit() {
    let (engine, mvcc) = setup(None);
    engine.set_open(false);
    let first = commit_blocked(&mvcc, Isolation::ReadCommitted, b"2");
    let mut t2 = lock_once_released(&mvcc);
    // t2 writes nothing, but what it read must be durable before its
    // commit is acknowledged.
    let (tx, second) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = t2.get(b"other");
        tx.send(t2.commit()).unwrap()
    });
    std::thread::sleep(Duration::from_millis(50));
    assert!(second.try_recv().is_err(), "acknowledged a commit that read an undurable one");
    engine.set_open(true);
    second.recv().unwrap().unwrap();
    first.recv().unwrap().unwrap();
}

#[test]
fn serializable_keeps_its_locks_until_durable() {
    let (engine, mvcc) = setup(Some(Duration::from_millis(100)));
    engine.set_open(false);
    let first = commit_blocked(&mvcc, Isolation::Serializable, b"2");
    // Wait until the commit is in its fsync (ordered in the log).
    while engine.queue.lock().unwrap().is_empty() {
        std::thread::yield_now();
    }
    let mut t2 = mvcc.begin(Mode::ReadWrite(Isolation::ReadCommitted)).unwrap();
    let e = t2.get_for_update(b"k").unwrap_err();
    assert_eq!(e.sqlstate(), "55P03", "{e}");
    drop(t2);
    engine.set_open(true);
    first.recv().unwrap().unwrap();
    let mut t3 = mvcc.begin(Mode::ReadWrite(Isolation::ReadCommitted)).unwrap();
    assert_eq!(t3.get_for_update(b"k").unwrap().as_deref(), Some(b"2".as_slice()));
}
