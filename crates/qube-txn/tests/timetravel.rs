//! Time travel (`Mode::AsOf`), retention, read-only transactions,
//! savepoints, rollback by drop, and the commit timestamp across a reopen.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use qube_common::Error;
use qube_storage::{BTreeEngine, Direction, Durability, Engine, KeyRange, MemoryEngine, Options};
use qube_txn::{Isolation, Mode, Mvcc, MvccOptions, Transaction, Ts};

mod common;
use common::PausingEngine;

type State = BTreeMap<Vec<u8>, Vec<u8>>;

/// No background GC; a lock wait that would hang fails instead.
fn quiet() -> MvccOptions {
    MvccOptions {
        gc_interval: None,
        lock_timeout: Some(Duration::from_secs(5)),
        ..MvccOptions::default()
    }
}

fn rw() -> Mode {
    Mode::ReadWrite(Isolation::RepeatableRead)
}

fn all(t: &mut Transaction) -> State {
    t.scan(KeyRange::all(), Direction::Forward).unwrap().into_iter().collect()
}

fn current(mvcc: &Mvcc) -> State {
    all(&mut mvcc.begin(Mode::ReadOnly(Isolation::RepeatableRead)).unwrap())
}

fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as u64
}

fn snapshot_too_old(e: &Error) -> bool {
    matches!(e, Error::InvalidInput(m) if m.contains("snapshot too old")) && e.sqlstate() == "22023"
}

/// Commit `i` of a small deterministic history: sets, overwrites, deletes.
fn commit_step(mvcc: &Mvcc, i: usize) -> Ts {
    let mut t = mvcc.begin(rw()).unwrap();
    t.set(format!("k{}", i % 7).as_bytes(), format!("v{i}").as_bytes()).unwrap();
    if i.is_multiple_of(3) {
        t.delete(format!("k{}", (i + 2) % 7).as_bytes()).unwrap();
    }
    if i % 4 == 1 {
        t.set(format!("k{i:02}x").as_bytes(), b"extra").unwrap();
    }
    t.commit().unwrap()
}

/// Runs 20 commits; returns the state right after each, by timestamp.
fn history(mvcc: &Mvcc) -> Vec<(Ts, State)> {
    let mut out = vec![(mvcc.visible(), current(mvcc))];
    for i in 0..20 {
        let ts = commit_step(mvcc, i);
        assert_eq!(ts, out.last().unwrap().0 + 1);
        out.push((ts, current(mvcc)));
    }
    out
}

fn check_as_of(mvcc: &Mvcc, ts: Ts, want: &State) {
    let mut t = mvcc.begin(Mode::AsOf(ts)).unwrap();
    assert_eq!(t.read_ts(), ts);
    assert_eq!(&all(&mut t), want, "AsOf({ts})");
    let mut rev = t.scan(KeyRange::all(), Direction::Reverse).unwrap();
    rev.reverse();
    assert_eq!(rev, want.clone().into_iter().collect::<Vec<_>>(), "AsOf({ts}) reverse");
    for k in ["k0", "k3", "k6", "k01x", "nope"] {
        assert_eq!(t.get(k.as_bytes()).unwrap().as_ref(), want.get(k.as_bytes()), "AsOf({ts}) {k}");
    }
    let prefix: State = want.iter().filter(|(k, _)| k.starts_with(b"k0")).map(clone2).collect();
    let got: State =
        t.scan(KeyRange::prefix(b"k0"), Direction::Forward).unwrap().into_iter().collect();
    assert_eq!(got, prefix, "AsOf({ts}) prefix scan");
    t.commit().unwrap();
}

fn clone2((k, v): (&Vec<u8>, &Vec<u8>)) -> (Vec<u8>, Vec<u8>) {
    (k.clone(), v.clone())
}

#[test]
fn as_of_sees_exactly_the_state_after_each_commit() {
    let mvcc = Mvcc::open(Arc::new(MemoryEngine::new()), quiet()).unwrap();
    let h = history(&mvcc);
    for (ts, state) in &h {
        check_as_of(&mvcc, *ts, state);
    }
    // The future does not exist yet.
    let e = mvcc.begin(Mode::AsOf(mvcc.visible() + 1)).err().unwrap();
    assert!(matches!(&e, Error::InvalidInput(m) if m.contains("does not exist yet")), "{e}");
    // An AsOf snapshot does not move with later commits.
    let (ts, state) = &h[10];
    let mut t = mvcc.begin(Mode::AsOf(*ts)).unwrap();
    commit_step(&mvcc, 99);
    t.new_statement();
    assert_eq!(&all(&mut t), state);
}

#[test]
fn gc_without_retention_makes_older_snapshots_too_old() {
    let mvcc = Mvcc::open(Arc::new(MemoryEngine::new()), quiet()).unwrap();
    let h = history(&mvcc);
    // An open AsOf transaction holds the horizon at its snapshot.
    let (held_ts, held_state) = h[5].clone();
    let mut held = mvcc.begin(Mode::AsOf(held_ts)).unwrap();
    assert!(mvcc.gc().unwrap() > 0);
    assert_eq!(mvcc.status().gc_horizon, held_ts);
    assert_eq!(all(&mut held), held_state, "GC kept what the open snapshot sees");
    for (ts, state) in &h[5..] {
        check_as_of(&mvcc, *ts, state);
    }
    let e = mvcc.begin(Mode::AsOf(held_ts - 1)).err().expect("behind the horizon");
    assert!(snapshot_too_old(&e), "{e}");
    drop(held);

    // Nobody holds anything: the horizon is the last commit.
    mvcc.gc().unwrap();
    let last = mvcc.visible();
    assert_eq!(mvcc.status().gc_horizon, last);
    check_as_of(&mvcc, last, &h.last().unwrap().1);
    for (ts, _) in &h[..h.len() - 1] {
        let e = mvcc.begin(Mode::AsOf(*ts)).err().expect("behind the horizon");
        assert!(snapshot_too_old(&e), "AsOf({ts}): {e}");
    }
    // The horizon never goes back, even for a new reader.
    let _r = mvcc.begin(Mode::ReadOnly(Isolation::RepeatableRead)).unwrap();
    mvcc.gc().unwrap();
    assert_eq!(mvcc.status().gc_horizon, last);
}

#[test]
fn retention_keeps_old_snapshots_readable() {
    let opts = MvccOptions { retention: Duration::from_secs(10), ..quiet() };
    let mvcc = Mvcc::open(Arc::new(MemoryEngine::new()), opts).unwrap();
    let h = history(&mvcc);
    assert_eq!(mvcc.gc().unwrap(), 0, "everything is inside the retention window");
    assert_eq!(mvcc.status().gc_horizon, 0);
    for (ts, state) in &h {
        check_as_of(&mvcc, *ts, state);
    }
}

/// With a short window: commits older than it become unreadable after a
/// GC pass, the newest commit older than it and everything after stay.
#[test]
fn retention_window_moves_the_horizon() {
    let opts = MvccOptions { retention: Duration::from_millis(300), ..quiet() };
    let mvcc = Mvcc::open(Arc::new(MemoryEngine::new()), opts).unwrap();
    let mut states = vec![(0, State::new())];
    // Commit times are recorded at most every 10 ms: space them out.
    for i in 0..3 {
        states.push((commit_step(&mvcc, i), current(&mvcc)));
        std::thread::sleep(Duration::from_millis(15));
    }
    let old = states.last().unwrap().0;
    std::thread::sleep(Duration::from_millis(400));
    for i in 3..6 {
        states.push((commit_step(&mvcc, i), current(&mvcc)));
    }
    mvcc.gc().unwrap();
    assert_eq!(mvcc.status().gc_horizon, old, "the newest commit older than the window");
    for (ts, state) in &states {
        if *ts >= old {
            check_as_of(&mvcc, *ts, state);
        } else {
            let e = mvcc.begin(Mode::AsOf(*ts)).err().expect("outside the window");
            assert!(snapshot_too_old(&e), "AsOf({ts}): {e}");
        }
    }
}

#[test]
fn commit_at_or_before_maps_wall_time_to_commits() {
    let mvcc = Mvcc::open(Arc::new(MemoryEngine::new()), quiet()).unwrap();
    let before = now_micros();
    assert_eq!(mvcc.commit_at_or_before(before).unwrap(), None);
    let mut points = Vec::new();
    for i in 0..4 {
        let ts = commit_step(&mvcc, i);
        points.push((ts, now_micros()));
        // Commit times are recorded at most every 10 ms.
        std::thread::sleep(Duration::from_millis(15));
    }
    assert_eq!(mvcc.commit_at_or_before(before.saturating_sub(1)).unwrap(), None);
    for (ts, after) in points {
        assert_eq!(mvcc.commit_at_or_before(after).unwrap(), Some(ts));
    }
}

#[test]
fn writes_in_read_only_and_as_of_transactions_fail() {
    let mvcc = Mvcc::open(Arc::new(MemoryEngine::new()), quiet()).unwrap();
    let ts = commit_step(&mvcc, 0);
    let state = current(&mvcc);
    let modes = [
        Mode::ReadOnly(Isolation::ReadCommitted),
        Mode::ReadOnly(Isolation::RepeatableRead),
        Mode::ReadOnly(Isolation::Serializable),
        Mode::AsOf(ts),
    ];
    for mode in modes {
        let mut t = mvcc.begin(mode).unwrap();
        let errs = [
            t.set(b"k0", b"x").unwrap_err(),
            t.delete(b"k0").unwrap_err(),
            t.get_for_update(b"k0").unwrap_err(),
            t.set(b"new", b"x").unwrap_err(),
        ];
        for e in errs {
            assert!(matches!(e, Error::ReadOnly(_)), "{mode:?}: {e}");
            assert_eq!(e.sqlstate(), "25006");
            assert!(!e.is_retryable());
        }
        // Still usable for reading, and it committed nothing.
        assert_eq!(all(&mut t), state, "{mode:?}");
        assert_eq!(t.commit().unwrap(), ts, "{mode:?}");
    }
    let st = mvcc.status();
    assert_eq!((st.last_commit, st.row_locks, st.active_transactions), (ts, 0, 0));
    assert_eq!(current(&mvcc), state);
}

#[test]
fn savepoints() {
    let mvcc = Mvcc::open(Arc::new(MemoryEngine::new()), quiet()).unwrap();
    let mut t = mvcc.begin(rw()).unwrap();
    t.set(b"a", b"0").unwrap();
    t.set(b"b", b"0").unwrap();
    t.commit().unwrap();

    for iso in [Isolation::ReadCommitted, Isolation::RepeatableRead, Isolation::Serializable] {
        let mut t = mvcc.begin(Mode::ReadWrite(iso)).unwrap();
        let get = |t: &mut Transaction, k: &[u8]| t.get(k).unwrap();
        t.set(b"a", b"1").unwrap(); // before any savepoint
        t.savepoint("s1");
        t.set(b"a", b"2").unwrap();
        t.delete(b"b").unwrap();
        t.set(b"c", b"2").unwrap();
        assert_eq!(all(&mut t).len(), 2);
        // Rolling back to s1 restores the transaction's own earlier write.
        t.rollback_to("s1").unwrap();
        assert_eq!(get(&mut t, b"a"), Some(b"1".to_vec()), "{iso:?}");
        assert_eq!(get(&mut t, b"b"), Some(b"0".to_vec()));
        assert_eq!(get(&mut t, b"c"), None);
        // s1 is still there: write again and roll back to it again.
        t.set(b"c", b"3").unwrap();
        t.rollback_to("s1").unwrap();
        assert_eq!(get(&mut t, b"c"), None);

        // Nested: s2 inside s1, s3 inside s2.
        t.set(b"d", b"1").unwrap();
        t.savepoint("s2");
        t.set(b"d", b"2").unwrap();
        t.savepoint("s3");
        t.set(b"d", b"3").unwrap();
        t.set(b"e", b"3").unwrap();
        t.rollback_to("s2").unwrap(); // also removes s3
        assert_eq!(get(&mut t, b"d"), Some(b"1".to_vec()));
        assert_eq!(get(&mut t, b"e"), None);
        let e = t.rollback_to("s3").unwrap_err();
        assert!(matches!(e, Error::InvalidInput(_)) && e.to_string().contains("s3"), "{e}");

        // Release keeps the writes and forgets the savepoint (and later ones).
        t.set(b"d", b"4").unwrap();
        t.savepoint("s4");
        t.set(b"f", b"4").unwrap();
        t.release("s2").unwrap();
        assert_eq!(get(&mut t, b"d"), Some(b"4".to_vec()));
        assert_eq!(get(&mut t, b"f"), Some(b"4".to_vec()));
        assert!(t.rollback_to("s2").is_err());
        assert!(t.rollback_to("s4").is_err());
        assert!(t.release("s4").is_err());
        // s1 still holds: rolling back to it undoes everything after it,
        // including what was written under the released savepoints.
        t.savepoint("s5");
        t.rollback_to("s1").unwrap();
        assert_eq!(get(&mut t, b"d"), None);
        assert_eq!(get(&mut t, b"f"), None);

        // A name used twice: the newest one counts.
        t.set(b"g", b"1").unwrap();
        t.savepoint("dup");
        t.set(b"g", b"2").unwrap();
        t.savepoint("dup");
        t.set(b"g", b"3").unwrap();
        t.rollback_to("dup").unwrap();
        assert_eq!(get(&mut t, b"g"), Some(b"2".to_vec()));
        t.release("dup").unwrap();
        t.rollback_to("dup").unwrap();
        assert_eq!(get(&mut t, b"g"), Some(b"1".to_vec()));

        // Released everything, then more writes: nothing left to undo them.
        t.release("s1").unwrap();
        t.set(b"h", b"1").unwrap();
        assert!(t.rollback_to("s1").is_err());
        let want: State = [("a", "1"), ("b", "0"), ("g", "1"), ("h", "1")]
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        assert_eq!(all(&mut t), want, "{iso:?}");
        t.commit().unwrap();
        assert_eq!(current(&mvcc), want, "{iso:?}: committed");

        // Reset for the next level.
        let mut t = mvcc.begin(rw()).unwrap();
        for k in [b"c", b"d", b"e", b"f", b"g", b"h"] {
            t.delete(k).unwrap();
        }
        t.set(b"a", b"0").unwrap();
        t.commit().unwrap();
    }
}

#[test]
fn a_dropped_transaction_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let before;
    {
        let (e, mvcc) = open(dir.path());
        commit_step(&mvcc, 0);
        before = (mvcc.visible(), current(&mvcc));
        let raw_before = raw(&*e);
        let rollbacks = mvcc.status().rollbacks;
        for iso in [Isolation::ReadCommitted, Isolation::RepeatableRead, Isolation::Serializable] {
            let mut t = mvcc.begin(Mode::ReadWrite(iso)).unwrap();
            t.set(b"k0", b"dropped").unwrap();
            t.set(b"zz", b"dropped").unwrap();
            t.delete(b"k1").unwrap();
            t.savepoint("s");
            t.set(b"yy", b"dropped").unwrap();
            assert_eq!(mvcc.status().row_locks, 4);
            drop(t);
        }
        let mut t = mvcc.begin(rw()).unwrap();
        t.set(b"zz", b"rolled back").unwrap();
        t.rollback();
        let st = mvcc.status();
        assert_eq!(st.rollbacks - rollbacks, 4, "{st:?}");
        assert_eq!((st.row_locks, st.active_transactions), (0, 0), "{st:?}");
        assert_eq!(st.last_commit, before.0);
        assert_eq!(current(&mvcc), before.1);
        assert_eq!(raw(&*e), raw_before, "nothing reached the engine");
        // The keys are free: a new writer takes them at once.
        let mut t = mvcc.begin(Mode::ReadWrite(Isolation::Serializable)).unwrap();
        t.set(b"zz", b"new").unwrap();
        t.rollback();
    }
    let (_e, mvcc) = open(dir.path());
    assert_eq!(mvcc.visible(), before.0);
    assert_eq!(current(&mvcc), before.1, "nothing after a reopen either");
}

fn engine_opts() -> Options {
    Options {
        pool_bytes: 1 << 20,
        durability: Durability::Always,
        checkpoint_wal_bytes: u64::MAX,
        checkpoint_interval: None,
        wal_segment_bytes: 1 << 20,
        checkpoint_on_close: true,
    }
}

fn open(dir: &Path) -> (Arc<dyn Engine>, Mvcc) {
    let e: Arc<dyn Engine> = Arc::new(BTreeEngine::open(dir, engine_opts()).unwrap());
    let mvcc = Mvcc::open(e.clone(), quiet()).unwrap();
    (e, mvcc)
}

fn raw(e: &dyn Engine) -> Vec<(Vec<u8>, Vec<u8>)> {
    e.scan(KeyRange::all(), Direction::Forward).unwrap().collect_pairs().unwrap()
}

#[test]
fn reopening_keeps_the_last_commit_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let h = {
        let (_e, mvcc) = open(dir.path());
        history(&mvcc)
    };
    let last = h.last().unwrap().0;
    for round in 0..2 {
        let (e, mvcc) = open(dir.path());
        let st = mvcc.status();
        assert_eq!((st.last_commit, st.visible), (last + round, last + round), "{st:?}");
        // Old snapshots are still there (no GC ran).
        for (ts, state) in &h {
            check_as_of(&mvcc, *ts, state);
        }
        // A new commit follows the last one; one that writes nothing
        // returns its snapshot and takes no timestamp.
        let t = mvcc.begin(rw()).unwrap();
        assert_eq!(t.commit().unwrap(), last + round);
        let mut t = mvcc.begin(rw()).unwrap();
        t.set(format!("reopen{round}").as_bytes(), b"1").unwrap();
        assert_eq!(t.commit().unwrap(), last + round + 1);
        drop(mvcc);
        drop(e);
    }
    // Also after a crash-like stop: no checkpoint on close, recovery from the log.
    {
        let opts = Options { checkpoint_on_close: false, ..engine_opts() };
        let e: Arc<dyn Engine> = Arc::new(BTreeEngine::open(dir.path(), opts).unwrap());
        let mvcc = Mvcc::open(e.clone(), quiet()).unwrap();
        let mut t = mvcc.begin(rw()).unwrap();
        t.set(b"after", b"1").unwrap();
        assert_eq!(t.commit().unwrap(), last + 3);
    }
    let (_e, mvcc) = open(dir.path());
    assert_eq!(mvcc.status().last_commit, last + 3);
    let mut t = mvcc.begin(rw()).unwrap();
    t.set(b"after", b"2").unwrap();
    assert_eq!(t.commit().unwrap(), last + 4);
}

/// A snapshot taken while a GC pass is deciding its horizon must be either
/// refused ("snapshot too old") or kept: here the pass is paused while it
/// reads the commit-time records (retention) and an `AsOf` transaction
/// begins at a commit that the pass's horizon leaves behind.
#[test]
fn a_snapshot_taken_during_a_gc_pass_keeps_its_versions() {
    let engine = Arc::new(PausingEngine::default());
    let opts = MvccOptions { retention: Duration::from_millis(100), ..quiet() };
    let mvcc = Arc::new(Mvcc::open(engine.clone(), opts).unwrap());
    let set = |v: &[u8]| {
        let mut t = mvcc.begin(rw()).unwrap();
        t.set(b"k", v).unwrap();
        let ts = t.commit().unwrap();
        // Commit times are recorded at most every 10 ms.
        std::thread::sleep(Duration::from_millis(15));
        ts
    };
    let c1 = set(b"1");
    set(b"2");
    std::thread::sleep(Duration::from_millis(200));
    set(b"3");
    // c1 and c2 are now older than the window: the pass's horizon is c2,
    // and k@c1 is garbage to it.
    let (paused, resume) = engine.arm(vec![0x01, b't']);
    let gc = {
        let mvcc = mvcc.clone();
        std::thread::spawn(move || mvcc.gc().unwrap())
    };
    paused.recv_timeout(Duration::from_secs(10)).expect("the GC pass reads commit times");
    let mut t = match mvcc.begin(Mode::AsOf(c1)) {
        Ok(t) => t,
        Err(e) => {
            // Refusing is fine too.
            assert!(snapshot_too_old(&e), "{e}");
            resume.send(()).unwrap();
            gc.join().unwrap();
            return;
        }
    };
    resume.send(()).unwrap();
    gc.join().unwrap();
    assert_eq!(t.get(b"k").unwrap(), Some(b"1".to_vec()), "AsOf({c1}) lost its version");
}
