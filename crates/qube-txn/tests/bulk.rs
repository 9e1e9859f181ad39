//! Bulk writes in one transaction (the write set's runs and loose keys,
//! the lock table's arena): reads of own writes in every order, overwrites,
//! deletes and re-inserts, savepoints over many writes, and the row-lock
//! behaviour bulk inserters rely on (a second inserter of a key waits;
//! deadlocks; lock_timeout).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use qube_common::Error;
use qube_storage::{BTreeEngine, Direction, Durability, Engine, KeyRange, MemoryEngine, Options};
use qube_txn::{Isolation, Mode, Mvcc, MvccOptions, ScanKey, Transaction};

type State = BTreeMap<Vec<u8>, Vec<u8>>;

fn open(lock_timeout: Option<Duration>) -> Mvcc {
    let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::default());
    Mvcc::open(engine, MvccOptions { gc_interval: None, lock_timeout, ..MvccOptions::default() })
        .unwrap()
}

fn rw(iso: Isolation) -> Mode {
    Mode::ReadWrite(iso)
}

/// A row key of "table" `t`: serial keys arrive in ascending order.
fn row(t: u8, i: u32) -> Vec<u8> {
    [&[0x10, t][..], &i.to_be_bytes()].concat()
}

/// An index entry on a column holding a permutation of the row numbers:
/// these arrive in random order.
fn entry(i: u32, n: u32) -> Vec<u8> {
    [&[0x20][..], &(i.wrapping_mul(7919) % n).to_be_bytes(), &i.to_be_bytes()].concat()
}

fn val(i: u32, version: u8) -> Vec<u8> {
    [&[version][..], &i.to_le_bytes(), b"payload"].concat()
}

/// Everything `t` sees, by every read path, checked against `want`.
/// Writes rows 0..n of table 1 and an index entry for each, as a bulk
/// insert does (fresh keys); returns what the transaction should read.
fn load_rows_and_entries(t: &mut Transaction, n: u32) -> State {
    let mut want = State::new();
    for i in 0..n {
        t.set_fresh(&row(1, i), &val(i, 1)).unwrap();
        t.set_fresh(&entry(i, n), b"e").unwrap();
        want.insert(row(1, i), val(i, 1));
        want.insert(entry(i, n), b"e".to_vec());
    }
    want
}

fn check_reads(t: &mut Transaction, want: &State) {
    let fwd: State = t.scan(KeyRange::all(), Direction::Forward).unwrap().into_iter().collect();
    assert_eq!(fwd.len(), want.len());
    assert!(fwd == *want, "forward scan differs");
    let mut rev = t.scan(KeyRange::all(), Direction::Reverse).unwrap();
    rev.reverse();
    assert!(rev.into_iter().collect::<State>() == *want, "reverse scan differs");
    let mut lazy = State::new();
    let mut k = Vec::new();
    t.scan_each_lazy(&KeyRange::all(), Direction::Forward, |key: ScanKey, v| {
        key.user_key_into(&mut k)?;
        lazy.insert(k.clone(), v.to_vec());
        Ok(true)
    })
    .unwrap();
    assert!(lazy == *want, "lazy scan differs");
    // A range in the middle of the index entries, both ways.
    let (lo, hi) = (vec![0x20, 0, 0, 0, 50], vec![0x20, 0, 0, 1, 0]);
    let range = || KeyRange {
        start: std::ops::Bound::Included(lo.clone()),
        end: std::ops::Bound::Excluded(hi.clone()),
    };
    let part: Vec<_> =
        want.range(lo.clone()..hi.clone()).map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(t.scan(range(), Direction::Forward).unwrap(), part);
    let mut back = t.scan(range(), Direction::Reverse).unwrap();
    back.reverse();
    assert_eq!(back, part);
    let mut out = Vec::new();
    for (key, v) in want.iter().step_by(13) {
        assert_eq!(t.get(key).unwrap().as_ref(), Some(v));
        assert!(t.get_into(key, &mut out).unwrap());
        assert_eq!(&out, v);
    }
}

#[test]
fn own_writes_read_back_in_ascending_and_random_order() {
    let mvcc = open(Some(Duration::from_secs(5)));
    let n = 3_000;
    // Committed rows that the transaction's writes are merged with.
    let mut setup = mvcc.begin(rw(Isolation::ReadCommitted)).unwrap();
    let mut want = State::new();
    for i in (0..n).step_by(10) {
        setup.set(&row(2, i), &val(i, 0)).unwrap();
        want.insert(row(2, i), val(i, 0));
    }
    setup.commit().unwrap();
    for iso in [Isolation::ReadCommitted, Isolation::RepeatableRead, Isolation::Serializable] {
        let mut t = mvcc.begin(rw(iso)).unwrap();
        let mut want = want.clone();
        for i in 0..n {
            // The unique check, then the row (fresh) and its index entry.
            assert_eq!(t.get_for_update(&row(1, i)).unwrap(), None);
            t.set_fresh(&row(1, i), &val(i, 1)).unwrap();
            t.set_fresh(&entry(i, n), &i.to_be_bytes()).unwrap();
            want.insert(row(1, i), val(i, 1));
            want.insert(entry(i, n), i.to_be_bytes().to_vec());
            if i % 500 == 0 {
                // Scans in the middle sort what was written so far.
                check_reads(&mut t, &want);
            }
        }
        // Keys in random order into a third table.
        for i in 0..n {
            let j = i.wrapping_mul(2_654_435_761) % n;
            t.set(&row(3, j), &val(j, 3)).unwrap();
            want.insert(row(3, j), val(j, 3));
        }
        check_reads(&mut t, &want);
        // A committed row overwritten, one deleted.
        t.set(&row(2, 10), b"changed").unwrap();
        t.delete(&row(2, 20)).unwrap();
        want.insert(row(2, 10), b"changed".to_vec());
        want.remove(&row(2, 20));
        check_reads(&mut t, &want);
        drop(t);
    }
    let mut t = mvcc.begin(rw(Isolation::RepeatableRead)).unwrap();
    check_reads(&mut t, &want);
}

#[test]
fn overwrites_deletes_and_reinserts_of_bulk_keys() {
    let mvcc = open(Some(Duration::from_secs(5)));
    let n = 2_000;
    let mut t = mvcc.begin(rw(Isolation::RepeatableRead)).unwrap();
    let mut want = load_rows_and_entries(&mut t, n);
    // Overwrite earlier keys: shorter (in place), longer (appended).
    for i in (0..n).step_by(3) {
        let v = if i % 2 == 0 { b"s".to_vec() } else { [val(i, 2), val(i, 2)].concat() };
        t.set(&row(1, i), &v).unwrap();
        want.insert(row(1, i), v);
    }
    // Delete some, then insert a few of them again.
    for i in (0..n).step_by(5) {
        t.delete(&row(1, i)).unwrap();
        t.delete(&entry(i, n)).unwrap();
        want.remove(&row(1, i));
        want.remove(&entry(i, n));
        assert_eq!(t.get(&row(1, i)).unwrap(), None);
        assert_eq!(t.get_for_update(&entry(i, n)).unwrap(), None);
    }
    for i in (0..n).step_by(10) {
        t.set(&row(1, i), &val(i, 4)).unwrap();
        want.insert(row(1, i), val(i, 4));
    }
    check_reads(&mut t, &want);
    t.commit().unwrap();
    let mut r = mvcc.begin(rw(Isolation::RepeatableRead)).unwrap();
    check_reads(&mut r, &want);
    assert_eq!(mvcc.status().row_locks, 0, "every lock released at commit");
}

#[test]
fn savepoint_rollback_after_bulk_writes() {
    let mvcc = open(Some(Duration::from_secs(5)));
    let n = 2_000;
    let mut t = mvcc.begin(rw(Isolation::RepeatableRead)).unwrap();
    let mut want = load_rows_and_entries(&mut t, n);
    t.savepoint("a");
    let at_a = want.clone();
    // Under the savepoint: more rows, overwrites, deletes, re-inserts.
    for i in n..2 * n {
        t.set_fresh(&row(1, i), &val(i, 2)).unwrap();
        t.set_fresh(&entry(i, 2 * n), b"f").unwrap();
        want.insert(row(1, i), val(i, 2));
        want.insert(entry(i, 2 * n), b"f".to_vec());
    }
    for i in (0..n).step_by(4) {
        t.set(&row(1, i), b"x").unwrap();
        t.delete(&entry(i, n)).unwrap();
        want.insert(row(1, i), b"x".to_vec());
        want.remove(&entry(i, n));
    }
    t.savepoint("b");
    let at_b = want.clone();
    for i in (0..n).step_by(8) {
        t.set(&entry(i, n), b"back").unwrap();
        t.set(&row(1, i), &[val(i, 5), val(i, 5)].concat()).unwrap();
    }
    check_reads(&mut t, &{
        let mut w = want.clone();
        for i in (0..n).step_by(8) {
            w.insert(entry(i, n), b"back".to_vec());
            w.insert(row(1, i), [val(i, 5), val(i, 5)].concat());
        }
        w
    });
    t.rollback_to("b").unwrap();
    check_reads(&mut t, &at_b);
    t.rollback_to("a").unwrap();
    check_reads(&mut t, &at_a);
    // Writes after rolling back, then commit.
    t.set(&row(1, 7), b"after").unwrap();
    let mut want = at_a;
    want.insert(row(1, 7), b"after".to_vec());
    t.commit().unwrap();
    let mut r = mvcc.begin(rw(Isolation::RepeatableRead)).unwrap();
    check_reads(&mut r, &want);
}

#[test]
fn a_second_inserter_of_a_key_waits_then_sees_the_first_ones_outcome() {
    let mvcc = Arc::new(open(Some(Duration::from_secs(10))));
    for commit_first in [true, false] {
        let key = row(9, u32::from(commit_first));
        let mut a = mvcc.begin(rw(Isolation::ReadCommitted)).unwrap();
        for i in 0..1_000 {
            a.get_for_update(&row(8, i + 1_000 * u32::from(commit_first))).unwrap();
        }
        assert_eq!(a.get_for_update(&key).unwrap(), None);
        a.set(&key, b"first").unwrap();
        let m = mvcc.clone();
        let k2 = key.clone();
        let b = std::thread::spawn(move || {
            let mut b = m.begin(rw(Isolation::ReadCommitted)).unwrap();
            // The unique check: waits for `a`.
            let seen = b.get_for_update(&k2).unwrap();
            if seen.is_none() {
                b.set(&k2, b"second").unwrap();
                b.commit().unwrap();
            }
            seen
        });
        std::thread::sleep(Duration::from_millis(50));
        if commit_first {
            a.commit().unwrap();
            // A duplicate (the SQL layer's 23505).
            assert_eq!(b.join().unwrap(), Some(b"first".to_vec()));
        } else {
            a.rollback();
            assert_eq!(b.join().unwrap(), None);
        }
        let mut r = mvcc.begin(rw(Isolation::RepeatableRead)).unwrap();
        let want: &[u8] = if commit_first { b"first" } else { b"second" };
        assert_eq!(r.get(&key).unwrap().as_deref(), Some(want));
    }
    assert_eq!(mvcc.status().row_locks, 0);
}

#[test]
fn deadlock_between_bulk_writers_is_detected() {
    let mvcc = Arc::new(open(None));
    let mut a = mvcc.begin(rw(Isolation::ReadCommitted)).unwrap();
    let mut b = mvcc.begin(rw(Isolation::ReadCommitted)).unwrap();
    for i in 0..500 {
        a.set(&row(1, i), b"a").unwrap();
        b.set(&row(2, i), b"b").unwrap();
    }
    let waiter = std::thread::spawn(move || {
        // Waits for b's lock.
        let r = a.set(&row(2, 7), b"a");
        (r, a)
    });
    std::thread::sleep(Duration::from_millis(50));
    let err = b.set(&row(1, 7), b"b").unwrap_err();
    assert!(matches!(err, Error::Deadlock(_)), "{err}");
    assert_eq!(err.sqlstate(), "40P01");
    b.rollback();
    let (r, a) = waiter.join().unwrap();
    r.unwrap();
    a.commit().unwrap();
    let mut r = mvcc.begin(rw(Isolation::RepeatableRead)).unwrap();
    assert_eq!(r.get(&row(2, 7)).unwrap().as_deref(), Some(&b"a"[..]));
    assert_eq!(r.get(&row(2, 8)).unwrap(), None, "b's writes are gone");
}

#[test]
fn lock_timeout_is_55p03_and_leaves_the_holder_alone() {
    let mvcc = open(Some(Duration::from_millis(30)));
    let mut a = mvcc.begin(rw(Isolation::ReadCommitted)).unwrap();
    for i in 0..1_000 {
        a.set(&row(1, i), b"a").unwrap();
    }
    let mut b = mvcc.begin(rw(Isolation::ReadCommitted)).unwrap();
    let err = b.get_for_update(&row(1, 999)).unwrap_err();
    assert_eq!(err.sqlstate(), "55P03", "{err}");
    let err = b.set(&row(1, 0), b"b").unwrap_err();
    assert_eq!(err.sqlstate(), "55P03", "{err}");
    // A free key is still taken at once.
    b.set(&row(1, 5_000), b"b").unwrap();
    b.rollback();
    a.commit().unwrap();
    assert_eq!(mvcc.status().row_locks, 0);
}

/// On the B+Tree engine, a bulk inserter's unique checks start at the leaf
/// of the previous one (`Engine::seek_latest_hinted`): a key another
/// transaction committed meanwhile — near the keys just checked, in the
/// leaf the hint remembers — must still be found (a duplicate at READ
/// COMMITTED, a serialization failure at REPEATABLE READ), and the keys of
/// earlier commits between the checked ones too.
#[test]
fn unique_checks_in_key_order_see_commits_made_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let opts =
        Options { durability: Durability::Never, checkpoint_interval: None, ..Options::default() };
    let engine: Arc<dyn Engine> = Arc::new(BTreeEngine::open(dir.path(), opts).unwrap());
    let mvcc =
        Mvcc::open(engine, MvccOptions { gc_interval: None, ..MvccOptions::default() }).unwrap();
    // Every tenth row exists already.
    let mut t = mvcc.begin(rw(Isolation::ReadCommitted)).unwrap();
    for i in (0..20_000).step_by(10) {
        t.set(&row(1, i), &val(i, 0)).unwrap();
    }
    t.commit().unwrap();
    for iso in [Isolation::ReadCommitted, Isolation::RepeatableRead] {
        let base = if iso == Isolation::ReadCommitted { 0 } else { 10_000 };
        let mut a = mvcc.begin(rw(iso)).unwrap();
        for i in base..base + 5_000 {
            let seen = a.get_for_update(&row(1, i)).unwrap();
            assert_eq!(seen.is_some(), i % 10 == 0, "row {i}");
            if seen.is_none() {
                a.set(&row(1, i), &val(i, 1)).unwrap();
            }
        }
        // Another transaction commits the next keys but one (5,000 exists).
        let mut b = mvcc.begin(rw(Isolation::ReadCommitted)).unwrap();
        for i in [base + 5_001, base + 5_003] {
            assert_eq!(b.get_for_update(&row(1, i)).unwrap(), None);
            b.set(&row(1, i), &val(i, 2)).unwrap();
        }
        b.commit().unwrap();
        match iso {
            Isolation::ReadCommitted => {
                assert_eq!(
                    a.get_for_update(&row(1, base + 5_000)).unwrap(),
                    Some(val(base + 5_000, 0))
                );
                assert_eq!(
                    a.get_for_update(&row(1, base + 5_001)).unwrap(),
                    Some(val(base + 5_001, 2))
                );
                assert_eq!(a.get_for_update(&row(1, base + 5_002)).unwrap(), None);
                assert_eq!(
                    a.get_for_update(&row(1, base + 5_003)).unwrap(),
                    Some(val(base + 5_003, 2))
                );
                a.commit().unwrap();
            }
            _ => {
                let err = a.get_for_update(&row(1, base + 5_001)).unwrap_err();
                assert_eq!(err.sqlstate(), "40001", "{err}");
                a.rollback();
            }
        }
    }
    let mut r = mvcc.begin(rw(Isolation::RepeatableRead)).unwrap();
    assert_eq!(r.get(&row(1, 4_999)).unwrap(), Some(val(4_999, 1)));
    assert_eq!(r.get(&row(1, 5_001)).unwrap(), Some(val(5_001, 2)));
    assert_eq!(r.get(&row(1, 14_999)).unwrap(), None, "rolled back");
    assert_eq!(r.get(&row(1, 15_003)).unwrap(), Some(val(15_003, 2)));
    assert_eq!(mvcc.status().row_locks, 0);
}

/// An engine that counts the newest-version seeks MVCC makes (and passes
/// everything else through), to see when the unique checks skip them.
struct CountingEngine {
    inner: Arc<dyn Engine>,
    seeks: std::sync::atomic::AtomicU64,
}

impl CountingEngine {
    fn seeks(&self) -> u64 {
        self.seeks.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Engine for CountingEngine {
    fn get(&self, key: &[u8]) -> qube_common::Result<Option<Vec<u8>>> {
        self.inner.get(key)
    }
    fn write(&self, batch: qube_storage::WriteBatch) -> qube_common::Result<()> {
        self.inner.write(batch)
    }
    fn write_nowait(&self, batch: qube_storage::WriteBatch) -> qube_common::Result<u64> {
        self.inner.write_nowait(batch)
    }
    fn wait_durable(&self, lsn: u64) -> qube_common::Result<()> {
        self.inner.wait_durable(lsn)
    }
    fn scan(
        &self,
        range: KeyRange,
        direction: Direction,
    ) -> qube_common::Result<Box<dyn qube_storage::Cursor + '_>> {
        self.inner.scan(range, direction)
    }
    fn seek(
        &self,
        range: &KeyRange,
        key: &mut Vec<u8>,
        value: &mut Vec<u8>,
    ) -> qube_common::Result<bool> {
        self.inner.seek(range, key, value)
    }
    fn seek_latest_hinted(
        &self,
        range: &KeyRange,
        key: &mut Vec<u8>,
        value: &mut Vec<u8>,
        hint: &mut qube_storage::SeekHint,
    ) -> qube_common::Result<bool> {
        self.seeks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.seek_latest_hinted(range, key, value, hint)
    }
    fn applied_batches(&self) -> Option<u64> {
        self.inner.applied_batches()
    }
    fn flush(&self) -> qube_common::Result<()> {
        self.inner.flush()
    }
    fn status(&self) -> qube_common::Result<qube_storage::Status> {
        self.inner.status()
    }
}

/// A bulk load's unique checks past the end of everything committed take
/// one look at the engine for the whole gap, not a seek per key: but a
/// commit made meanwhile (any batch) makes the next check seek again and
/// find the keys it wrote, a key below the gap seeks, an own write is
/// found first, and a rollback leaves nothing behind. Both engines.
#[test]
fn unique_checks_past_the_end_remember_the_gap_until_a_commit() {
    let dir = tempfile::tempdir().unwrap();
    let opts =
        Options { durability: Durability::Never, checkpoint_interval: None, ..Options::default() };
    let engines: [Arc<dyn Engine>; 2] =
        [Arc::new(MemoryEngine::default()), Arc::new(BTreeEngine::open(dir.path(), opts).unwrap())];
    for inner in engines {
        let counting =
            Arc::new(CountingEngine { inner, seeks: std::sync::atomic::AtomicU64::new(0) });
        let engine: Arc<dyn Engine> = counting.clone();
        let mvcc = Mvcc::open(engine, MvccOptions { gc_interval: None, ..MvccOptions::default() })
            .unwrap();
        // Committed already: a row of table 1 below the load, and table 2.
        let mut t = mvcc.begin(rw(Isolation::ReadCommitted)).unwrap();
        t.set(&row(1, 5), &val(5, 0)).unwrap();
        t.set(&row(2, 0), &val(0, 0)).unwrap();
        t.commit().unwrap();

        let mut a = mvcc.begin(rw(Isolation::ReadCommitted)).unwrap();
        let before = counting.seeks();
        for i in 100..1_100 {
            assert_eq!(a.get_for_update(&row(1, i)).unwrap(), None, "row {i}");
            a.set(&row(1, i), &val(i, 1)).unwrap();
        }
        let seeks = counting.seeks() - before;
        assert!(seeks <= 4, "1,000 checks in a gap took {seeks} seeks");
        // Its own write comes first.
        assert_eq!(a.get_for_update(&row(1, 500)).unwrap(), Some(val(500, 1)));
        // Below the gap: the engine is asked, and has the row.
        let before = counting.seeks();
        assert_eq!(a.get_for_update(&row(1, 5)).unwrap(), Some(val(5, 0)));
        assert!(counting.seeks() > before, "a key below the gap must seek");

        // Another transaction commits keys ahead of the load.
        let mut b = mvcc.begin(rw(Isolation::ReadCommitted)).unwrap();
        for i in [1_101, 1_500] {
            assert_eq!(b.get_for_update(&row(1, i)).unwrap(), None);
            b.set(&row(1, i), &val(i, 2)).unwrap();
        }
        b.commit().unwrap();
        for i in 1_100..1_600 {
            let seen = a.get_for_update(&row(1, i)).unwrap();
            let want = [1_101, 1_500].contains(&i).then(|| val(i, 2));
            assert_eq!(seen, want, "row {i} after the other commit");
            if seen.is_none() {
                a.set(&row(1, i), &val(i, 1)).unwrap();
            }
        }
        // The next table's row bounds the gap.
        assert_eq!(a.get_for_update(&row(2, 0)).unwrap(), Some(val(0, 0)));
        a.rollback();

        // After the rollback the same load finds only what was committed.
        let mut c = mvcc.begin(rw(Isolation::RepeatableRead)).unwrap();
        for i in 100..1_600 {
            let seen = c.get_for_update(&row(1, i)).unwrap();
            assert_eq!(seen.is_some(), [1_101, 1_500].contains(&i), "row {i} after rollback");
        }
        c.commit().unwrap();
        assert_eq!(mvcc.status().row_locks, 0);
    }
}

#[test]
fn locked_reads_find_own_writes_whether_locked_or_fresh() {
    // `get_for_update` skips the write set when it takes a key's lock
    // anew outside the span of `set_fresh`'s keys: every other own write
    // holds its lock. Each way a key gets into the write set is read back.
    let mvcc = open(Some(Duration::from_secs(5)));
    let mut c = mvcc.begin(rw(Isolation::ReadCommitted)).unwrap();
    for i in 0..100 {
        c.set(&row(1, i), b"committed").unwrap();
    }
    c.commit().unwrap();
    for iso in [Isolation::ReadCommitted, Isolation::RepeatableRead, Isolation::Serializable] {
        let n = 1_000;
        let mut t = mvcc.begin(rw(iso)).unwrap();
        // A bulk INSERT: the unique check, the row, its index entry.
        for i in 100..n {
            assert_eq!(t.get_for_update(&row(1, i)).unwrap(), None, "{i}");
            t.set(&row(1, i), &val(i, 1)).unwrap();
            t.set_fresh(&entry(i, n), b"e").unwrap();
        }
        for i in (100..n).step_by(7) {
            assert_eq!(t.get_for_update(&row(1, i)).unwrap(), Some(val(i, 1)), "{i}");
            assert_eq!(t.get_for_update(&entry(i, n)).unwrap(), Some(b"e".to_vec()), "{i}");
        }
        // Fresh rows of another table (a rowid table), then locked reads.
        for i in 0..300 {
            t.set_fresh(&row(2, i), &val(i, 2)).unwrap();
        }
        for i in (0..300).step_by(11) {
            assert_eq!(t.get_for_update(&row(2, i)).unwrap(), Some(val(i, 2)), "{i}");
        }
        assert_eq!(t.get_for_update(&row(2, 300)).unwrap(), None);
        // Own overwrite and deletion of committed rows.
        t.set(&row(1, 3), b"mine").unwrap();
        t.delete(&row(1, 4)).unwrap();
        assert_eq!(t.get_for_update(&row(1, 3)).unwrap(), Some(b"mine".to_vec()));
        assert_eq!(t.get_for_update(&row(1, 4)).unwrap(), None);
        // Rolled back under a savepoint: the lock stays, the write goes.
        t.savepoint("s");
        t.set(&row(1, 5), b"undone").unwrap();
        assert_eq!(t.get_for_update(&row(3, 1)).unwrap(), None);
        t.set(&row(3, 1), b"undone").unwrap();
        t.set_fresh(&row(4, 1), b"undone").unwrap();
        t.rollback_to("s").unwrap();
        assert_eq!(t.get_for_update(&row(1, 5)).unwrap(), Some(b"committed".to_vec()));
        assert_eq!(t.get_for_update(&row(3, 1)).unwrap(), None);
        assert_eq!(t.get_for_update(&row(4, 1)).unwrap(), None);
        t.rollback();
    }
    assert_eq!(mvcc.status().row_locks, 0);
}

/// A bulk INSERT into a table keyed by its primary key: each row's unique
/// check (`get_for_update`), its index entry (`set_fresh`), then the row
/// (`set`). The rows' keys are written by `set`, so their prefix is not
/// the entries': the write set takes the entries without a lookup and
/// hashes them only when something looks one up.
fn insert_keyed(t: &mut Transaction, i: u32, n: u32, v: &[u8], want: &mut State) {
    assert_eq!(t.get_for_update(&row(1, i)).unwrap(), None, "row {i} is new");
    t.set_fresh(&entry(i, n), v).unwrap();
    t.set(&row(1, i), &val(i, 1)).unwrap();
    want.insert(entry(i, n), v.to_vec());
    want.insert(row(1, i), val(i, 1));
}

#[test]
fn keyed_rows_deleted_and_inserted_again_in_a_bulk_load() {
    let mvcc = open(Some(Duration::from_secs(5)));
    let n = 3_000;
    let mut t = mvcc.begin(rw(Isolation::ReadCommitted)).unwrap();
    let mut want = State::new();
    for i in 0..n {
        insert_keyed(&mut t, i, n, b"e", &mut want);
    }
    // A duplicate is found (the row's own write), entries untouched.
    assert!(t.get_for_update(&row(1, 17)).unwrap().is_some());
    // DELETE of some rows (row and entry), then INSERT of them again: the
    // entry's key is written by `set_fresh` a second time, after the
    // deletion's `delete`, and must replace the tombstone.
    for i in (0..n).step_by(7) {
        assert!(t.get_for_update(&row(1, i)).unwrap().is_some());
        t.delete(&entry(i, n)).unwrap();
        t.delete(&row(1, i)).unwrap();
        want.remove(&entry(i, n));
        want.remove(&row(1, i));
    }
    check_reads(&mut t, &want);
    for i in (0..n).step_by(14) {
        insert_keyed(&mut t, i, n, b"again", &mut want);
    }
    // More new rows after the deletions.
    for i in n..n + 500 {
        insert_keyed(&mut t, i, 2 * n, b"more", &mut want);
    }
    check_reads(&mut t, &want);
    t.commit().unwrap();
    let mut r = mvcc.begin(rw(Isolation::RepeatableRead)).unwrap();
    check_reads(&mut r, &want);
}

#[test]
fn savepoint_rollback_in_the_middle_of_a_keyed_bulk_load() {
    let mvcc = open(Some(Duration::from_secs(5)));
    let n = 4_000;
    let mut t = mvcc.begin(rw(Isolation::RepeatableRead)).unwrap();
    let mut want = State::new();
    for i in 0..n / 2 {
        insert_keyed(&mut t, i, n, b"e", &mut want);
    }
    t.savepoint("s");
    let at_s = want.clone();
    for i in n / 2..n {
        insert_keyed(&mut t, i, n, b"under", &mut want);
    }
    // A lookup of an entry written under the savepoint, then the rollback.
    assert_eq!(t.get(&entry(n - 1, n)).unwrap(), Some(b"under".to_vec()));
    t.rollback_to("s").unwrap();
    check_reads(&mut t, &at_s);
    // The same rows again (their locks are still held), then commit.
    let mut want = at_s;
    for i in n / 2..n {
        insert_keyed(&mut t, i, n, b"after", &mut want);
    }
    t.commit().unwrap();
    let mut r = mvcc.begin(rw(Isolation::RepeatableRead)).unwrap();
    check_reads(&mut r, &want);
}
