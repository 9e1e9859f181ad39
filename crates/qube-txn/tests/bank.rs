//! Bank transfers: the classic test of a transaction layer.
//!
//! Accounts hold numbers; writer threads move random amounts between random
//! accounts (read both balances, write both), retrying whatever fails with a
//! retryable error (40001, 40P01). Whatever the interleaving:
//!
//! * the total never changes, and no balance goes negative (a transfer
//!   moves at most what the source holds);
//! * a concurrent read-only reader sees exactly the right total in every
//!   snapshot, and is never aborted;
//! * after a SIGKILL (crash variant), every acknowledged transfer is there
//!   and the balances are the initial ones plus the logged transfers.
//!
//! Also here: write skew on joint accounts (SERIALIZABLE must prevent it,
//! REPEATABLE READ allows it) and Fekete's read-only transaction anomaly.
//!
//! The crash variant re-executes this test binary as a child
//! (`bank_crash_child`, ignored when run directly); rounds:
//! `QUBE_BANK_CRASH_ROUNDS` (default 5).

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use qube_common::Result;
use qube_storage::{BTreeEngine, Direction, Durability, Engine, KeyRange, MemoryEngine, Options};
use qube_txn::{Isolation, Mode, Mvcc, MvccOptions, Transaction};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

mod common;
use common::PausingEngine;

const INITIAL: i64 = 100;

fn acct(i: usize) -> Vec<u8> {
    format!("acct/{i:04}").into_bytes()
}

fn enc(v: i64) -> Vec<u8> {
    v.to_string().into_bytes()
}

fn dec(v: &[u8]) -> i64 {
    std::str::from_utf8(v).unwrap().parse().unwrap()
}

fn engine_opts(durability: Durability) -> Options {
    Options {
        pool_bytes: 8 << 20,
        durability,
        // Background checkpoints run during the test too.
        checkpoint_wal_bytes: 2 << 20,
        checkpoint_interval: Some(Duration::from_millis(200)),
        wal_segment_bytes: 1 << 20,
        checkpoint_on_close: true,
    }
}

fn mvcc_opts() -> MvccOptions {
    // The garbage collector runs while readers and writers work.
    MvccOptions {
        retention: Duration::ZERO,
        lock_timeout: None,
        gc_interval: Some(Duration::from_millis(50)),
    }
}

/// No background GC: for the deterministic interleavings.
fn quiet_opts() -> MvccOptions {
    MvccOptions { gc_interval: None, ..MvccOptions::default() }
}

fn setup_accounts(mvcc: &Mvcc, n: usize) {
    let mut t = mvcc.begin(Mode::ReadWrite(Isolation::RepeatableRead)).unwrap();
    for i in 0..n {
        t.set(&acct(i), &enc(INITIAL)).unwrap();
    }
    t.commit().unwrap();
}

/// Every account in one snapshot.
fn balances(t: &mut Transaction) -> Vec<i64> {
    t.scan(KeyRange::prefix(b"acct/"), Direction::Forward)
        .unwrap()
        .into_iter()
        .map(|(_, v)| dec(&v))
        .collect()
}

fn read(t: &mut Transaction, key: &[u8], for_update: bool) -> Result<i64> {
    let v = if for_update { t.get_for_update(key)? } else { t.get(key)? };
    Ok(dec(&v.expect("every account exists")))
}

/// One attempt at a transfer: reads both balances, moves at most what the
/// source holds, writes both (and the log record, if given). Returns the
/// amount moved and the commit timestamp.
fn transfer(
    mvcc: &Mvcc,
    iso: Isolation,
    from: usize,
    to: usize,
    want: i64,
    for_update: bool,
    log: Option<&[u8]>,
) -> Result<(i64, u64)> {
    let mut t = mvcc.begin(Mode::ReadWrite(iso))?;
    let a = read(&mut t, &acct(from), for_update)?;
    let b = read(&mut t, &acct(to), for_update)?;
    let amount = want.min(a);
    t.set(&acct(from), &enc(a - amount))?;
    t.set(&acct(to), &enc(b + amount))?;
    if let Some(id) = log {
        t.set(id, format!("{from} {to} {amount}").as_bytes())?;
    }
    let ts = t.commit()?;
    Ok((amount, ts))
}

struct Bank {
    accounts: usize,
    threads: usize,
    iso: Isolation,
    /// Stop after this long, or after `max_transfers`, whichever first.
    duration: Duration,
    max_transfers: u64,
    seed: u64,
}

#[derive(Debug, Default)]
struct Report {
    transfers: u64,
    retries: u64,
    scans: u64,
}

/// Runs the writers and a read-only reader until the time or count is up;
/// checks the total in every snapshot the reader takes and at the end.
fn run_bank(mvcc: &Arc<Mvcc>, cfg: &Bank) -> Report {
    let total = cfg.accounts as i64 * INITIAL;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let retries = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + cfg.duration;

    let reader = {
        let (mvcc, stop, accounts, iso) = (mvcc.clone(), stop.clone(), cfg.accounts, cfg.iso);
        std::thread::spawn(move || {
            let mut scans = 0u64;
            // At least a few scans, however slow the machine.
            while !stop.load(Ordering::Relaxed) || scans < 5 {
                let mut t = mvcc.begin(Mode::ReadOnly(iso)).expect("a reader never fails");
                let b = balances(&mut t);
                assert_eq!(b.len(), accounts, "scan {scans}: accounts missing: {b:?}");
                assert_eq!(b.iter().sum::<i64>(), total, "scan {scans}: wrong total: {b:?}");
                assert!(b.iter().all(|&x| x >= 0), "scan {scans}: negative balance: {b:?}");
                // The same snapshot, read backwards and key by key.
                let mut rev: Vec<i64> = t
                    .scan(KeyRange::prefix(b"acct/"), Direction::Reverse)
                    .unwrap()
                    .into_iter()
                    .map(|(_, v)| dec(&v))
                    .collect();
                rev.reverse();
                assert_eq!(rev, b, "scan {scans}: a reverse scan of the same snapshot differs");
                let i = scans as usize % accounts;
                assert_eq!(t.get(&acct(i)).unwrap().map(|v| dec(&v)), Some(b[i]));
                t.commit().expect("a read-only transaction is never aborted");
                scans += 1;
            }
            scans
        })
    };

    let writers: Vec<_> = (0..cfg.threads)
        .map(|w| {
            let (mvcc, stop, done, retries) =
                (mvcc.clone(), stop.clone(), done.clone(), retries.clone());
            let (accounts, iso, max) = (cfg.accounts, cfg.iso, cfg.max_transfers);
            let mut rng = StdRng::seed_from_u64(cfg.seed * 1000 + w as u64);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    if done.fetch_add(1, Ordering::Relaxed) >= max {
                        break;
                    }
                    let from = rng.random_range(0..accounts);
                    let to = (from + rng.random_range(1..accounts)) % accounts;
                    let want = rng.random_range(1..=30);
                    // READ COMMITTED must lock what it reads, or it loses
                    // updates (as in PostgreSQL).
                    let for_update = iso == Isolation::ReadCommitted || rng.random_bool(0.5);
                    loop {
                        match transfer(&mvcc, iso, from, to, want, for_update, None) {
                            Ok(_) => break,
                            Err(e) if e.is_retryable() => {
                                assert!(matches!(e.sqlstate(), "40001" | "40P01"), "{e}");
                                retries.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => panic!("transfer failed with a non-retryable error: {e}"),
                        }
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer thread");
    }
    stop.store(true, Ordering::Relaxed);
    let scans = reader.join().expect("reader thread");

    let mut t = mvcc.begin(Mode::ReadOnly(Isolation::RepeatableRead)).unwrap();
    let b = balances(&mut t);
    drop(t);
    assert_eq!(b.len(), cfg.accounts);
    assert_eq!(b.iter().sum::<i64>(), total, "final total: {b:?}");
    assert!(b.iter().all(|&x| x >= 0), "final balances: {b:?}");
    let st = mvcc.status();
    assert_eq!(st.active_transactions, 0, "{st:?}");
    assert_eq!(st.row_locks, 0, "row locks leaked: {st:?}");
    let transfers = done.load(Ordering::Relaxed).min(cfg.max_transfers);
    Report { transfers, retries: retries.load(Ordering::Relaxed), scans }
}

fn open_btree(dir: &Path, durability: Durability) -> (Arc<BTreeEngine>, Arc<Mvcc>) {
    let e = Arc::new(BTreeEngine::open(dir, engine_opts(durability)).unwrap());
    let mvcc = Arc::new(Mvcc::open(e.clone() as Arc<dyn Engine>, mvcc_opts()).unwrap());
    (e, mvcc)
}

fn bank_on_btree(iso: Isolation, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let (_e, mvcc) = open_btree(dir.path(), Durability::Never);
    setup_accounts(&mvcc, 100);
    let cfg = Bank {
        accounts: 100,
        threads: 4,
        iso,
        duration: Duration::from_secs(2),
        max_transfers: 200_000,
        seed,
    };
    let r = run_bank(&mvcc, &cfg);
    assert!(r.transfers >= 100, "too little progress: {r:?}");
    assert!(r.scans >= 5, "{r:?}");
    assert!(mvcc.status().gc_runs > 0, "the GC ran meanwhile");
    eprintln!("{iso:?} on btree: {r:?}");
}

#[test]
fn bank_repeatable_read_btree() {
    bank_on_btree(Isolation::RepeatableRead, 1);
}

#[test]
fn bank_serializable_btree() {
    bank_on_btree(Isolation::Serializable, 2);
}

/// Three accounts, four writers: nearly every transfer conflicts, and
/// opposite transfers deadlock (a→b against b→a with `get_for_update`).
#[test]
fn bank_contended_three_accounts() {
    for (iso, seed) in [(Isolation::RepeatableRead, 3), (Isolation::Serializable, 4)] {
        let dir = tempfile::tempdir().unwrap();
        let (_e, mvcc) = open_btree(dir.path(), Durability::Never);
        setup_accounts(&mvcc, 3);
        let cfg = Bank {
            accounts: 3,
            threads: 4,
            iso,
            duration: Duration::from_millis(1000),
            max_transfers: 50_000,
            seed,
        };
        let r = run_bank(&mvcc, &cfg);
        assert!(r.transfers >= 20, "too little progress: {r:?}");
        assert!(r.retries > 0, "three hot accounts and no conflict at all? {r:?}");
        let st = mvcc.status();
        assert!(st.serialization_failures > 0, "{st:?}");
        eprintln!("{iso:?}, 3 accounts: {r:?}");
    }
}

/// READ COMMITTED with locked reads, fsync on every commit, three hot
/// accounts: a commit releases its row locks before its fsync, so the next
/// transfer of an account reads a version that is not durable (nor visible
/// to snapshots) yet. It must still read that version, or the total drifts.
#[test]
fn bank_read_committed_hot_accounts_durable() {
    let dir = tempfile::tempdir().unwrap();
    let (_e, mvcc) = open_btree(dir.path(), Durability::Always);
    setup_accounts(&mvcc, 3);
    let cfg = Bank {
        accounts: 3,
        threads: 4,
        iso: Isolation::ReadCommitted,
        duration: Duration::from_millis(1500),
        max_transfers: 20_000,
        seed: 6,
    };
    let r = run_bank(&mvcc, &cfg);
    assert!(r.transfers >= 20, "too little progress: {r:?}");
    eprintln!("ReadCommitted, 3 accounts, durable: {r:?}");
}

/// With fsync on every commit; then the engine is closed and reopened and
/// holds exactly the balances it had.
#[test]
fn bank_durable_then_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let (e, mvcc) = open_btree(dir.path(), Durability::Always);
        setup_accounts(&mvcc, 100);
        let cfg = Bank {
            accounts: 100,
            threads: 4,
            iso: Isolation::Serializable,
            duration: Duration::from_millis(1500),
            max_transfers: 5_000,
            seed: 5,
        };
        let r = run_bank(&mvcc, &cfg);
        assert!(r.transfers >= 20, "{r:?}");
        let mut t = mvcc.begin(Mode::ReadOnly(Isolation::RepeatableRead)).unwrap();
        let b = balances(&mut t);
        drop(t);
        let last = mvcc.status().last_commit;
        drop(mvcc);
        Arc::try_unwrap(e).ok().expect("sole owner").close().unwrap();
        (b, last)
    };
    let (_e, mvcc) = open_btree(dir.path(), Durability::Always);
    assert_eq!(mvcc.status().last_commit, before.1);
    let mut t = mvcc.begin(Mode::ReadOnly(Isolation::RepeatableRead)).unwrap();
    assert_eq!(balances(&mut t), before.0);
}

/// Withdraws `amount` from account `which` (0 or 1) of a joint pair if the
/// pair's sum covers it: reads both, writes one.
fn withdraw(t: &mut Transaction, pair: usize, which: usize, amount: i64) -> Result<()> {
    let a = read(t, &acct(2 * pair), false)?;
    let b = read(t, &acct(2 * pair + 1), false)?;
    if a + b >= amount {
        let cur = if which == 0 { a } else { b };
        t.set(&acct(2 * pair + which), &enc(cur - amount))?;
    }
    Ok(())
}

/// Write skew on joint accounts, deterministic interleavings: a withdrawal from one account of a pair
/// is allowed while the pair's sum covers it. Each withdrawal reads both
/// accounts and writes one, so two concurrent withdrawals from the two
/// accounts of a pair write different keys: REPEATABLE READ lets both
/// commit (shown deterministically first), SERIALIZABLE must not.
#[test]
fn joint_accounts_write_skew() {
    // Deterministic: two interleaved withdrawals of 150 from a pair of 100+100.
    for iso in [Isolation::RepeatableRead, Isolation::Serializable] {
        let mvcc = Mvcc::open(Arc::new(MemoryEngine::new()), quiet_opts()).unwrap();
        setup_accounts(&mvcc, 2);
        let mut t1 = mvcc.begin(Mode::ReadWrite(iso)).unwrap();
        let mut t2 = mvcc.begin(Mode::ReadWrite(iso)).unwrap();
        withdraw(&mut t1, 0, 0, 150).unwrap();
        withdraw(&mut t2, 0, 1, 150).unwrap();
        t1.commit().unwrap();
        let second = t2.commit();
        let mut t = mvcc.begin(Mode::ReadOnly(Isolation::RepeatableRead)).unwrap();
        let sum: i64 = balances(&mut t).iter().sum();
        match iso {
            Isolation::Serializable => {
                let e = second.expect_err("SERIALIZABLE must refuse the second withdrawal");
                assert_eq!(e.sqlstate(), "40001", "{e}");
                assert_eq!(sum, 50);
            }
            _ => {
                second.expect("REPEATABLE READ allows write skew");
                assert_eq!(sum, -100, "the anomaly happened");
            }
        }
    }

    // The same after a commit: the second withdrawal sees the first.
    let mvcc = Mvcc::open(Arc::new(MemoryEngine::new()), quiet_opts()).unwrap();
    setup_accounts(&mvcc, 2);
    let ser = Mode::ReadWrite(Isolation::Serializable);
    let mut t1 = mvcc.begin(ser).unwrap();
    let mut t2 = mvcc.begin(ser).unwrap();
    withdraw(&mut t1, 0, 0, 150).unwrap();
    t1.commit().unwrap();
    let e = withdraw(&mut t2, 0, 1, 150).and_then(|_| t2.commit()).map(|_| ());
    let e = e.expect_err("T2 read a version T1 committed after T2's snapshot: rolled back");
    assert_eq!(e.sqlstate(), "40001", "{e}");
}

/// Write skew where T2's read of account a races T1's commit of a new a:
///
/// ```text
/// T1: read a, b; a -= 150 (holds a's row lock)
/// T2: read a … engine snapshot taken (old a) … paused
/// T1: commit (SSI check: nobody has read a yet); row lock released
/// T2: … resumed: a's lock has no owner, no newer version in its
///     snapshot: no rw edge T2 → T1 is recorded
/// T2: read b; b -= 150; commit
/// ```
///
/// Both withdrawals commit and the pair is overdrawn (-100): the history
/// T1 ⇄ T2 is not serializable. `scan`: T2 reads the pair with one scan.
fn commit_racing_a_read(scan: bool) -> (Result<u64>, i64) {
    let engine = Arc::new(PausingEngine::default());
    let mvcc = Arc::new(Mvcc::open(engine.clone(), quiet_opts()).unwrap());
    setup_accounts(&mvcc, 2);
    let ser = Mode::ReadWrite(Isolation::Serializable);
    let mut t1 = mvcc.begin(ser).unwrap();
    let mut t2 = mvcc.begin(ser).unwrap();
    withdraw(&mut t1, 0, 0, 150).unwrap();
    let prefix = if scan {
        qube_txn::keys::user_prefix(b"acct/")
    } else {
        let mut vp = Vec::new();
        qube_txn::keys::version_prefix_into(&acct(0), &mut vp);
        vp
    };
    let (paused, resume) = engine.arm(prefix);
    let reader = std::thread::spawn(move || {
        let res = if scan {
            t2.scan(KeyRange::prefix(b"acct/"), Direction::Forward).and_then(|rows| {
                let sum: i64 = rows.iter().map(|(_, v)| dec(v)).sum();
                assert_eq!(sum, 200, "T2's snapshot");
                if sum >= 150 {
                    let b = dec(&rows[1].1);
                    t2.set(&acct(1), &enc(b - 150))?;
                }
                Ok(())
            })
        } else {
            withdraw(&mut t2, 0, 1, 150)
        };
        res.and_then(|_| t2.commit())
    });
    paused.recv_timeout(Duration::from_secs(10)).expect("T2 reached the engine");
    t1.commit().unwrap();
    resume.send(()).unwrap();
    let t2_res = reader.join().unwrap();
    let mut t = mvcc.begin(Mode::ReadOnly(Isolation::RepeatableRead)).unwrap();
    let sum = balances(&mut t).iter().sum();
    (t2_res, sum)
}

#[test]
fn write_skew_when_a_commit_races_a_get() {
    let (t2, sum) = commit_racing_a_read(false);
    let e = t2.expect_err(&format!("T2 must be rolled back (the pair now sums to {sum})"));
    assert_eq!(e.sqlstate(), "40001", "{e}");
    assert_eq!(sum, 50);
}

#[test]
fn write_skew_when_a_commit_races_a_scan() {
    let (t2, sum) = commit_racing_a_read(true);
    let e = t2.expect_err(&format!("T2 must be rolled back (the pair now sums to {sum})"));
    assert_eq!(e.sqlstate(), "40001", "{e}");
    assert_eq!(sum, 50);
}

/// Concurrent write skew on joint accounts at SERIALIZABLE: 5 pairs, 4
/// threads withdrawing and depositing at random for a second; every
/// snapshot and the end keep each pair's sum >= 0.
#[test]
fn joint_accounts_write_skew_concurrent() {
    let dir = tempfile::tempdir().unwrap();
    let (_e, mvcc) = open_btree(dir.path(), Durability::Never);
    let pairs = 5;
    setup_accounts(&mvcc, 2 * pairs);
    let stop = Arc::new(AtomicBool::new(false));
    let check = move |b: &[i64], when: &str| {
        for p in 0..pairs {
            assert!(b[2 * p] + b[2 * p + 1] >= 0, "{when}: pair {p} overdrawn: {b:?}");
        }
    };
    let reader = {
        let (mvcc, stop) = (mvcc.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut scans = 0;
            while !stop.load(Ordering::Relaxed) || scans < 5 {
                // As in PostgreSQL, a read-only SERIALIZABLE transaction can be
                // rolled back (it would have seen the read-only anomaly): what
                // it read counts only if it commits.
                let mut t = mvcc.begin(Mode::ReadOnly(Isolation::Serializable)).unwrap();
                let b: Vec<i64> = match t.scan(KeyRange::prefix(b"acct/"), Direction::Forward) {
                    Ok(rows) => rows.into_iter().map(|(_, v)| dec(&v)).collect(),
                    Err(e) if e.is_retryable() => continue,
                    Err(e) => panic!("{e}"),
                };
                match t.commit() {
                    Ok(_) => {}
                    Err(e) if e.is_retryable() => continue,
                    Err(e) => panic!("{e}"),
                }
                assert_eq!(b.len(), 2 * pairs);
                check(&b, &format!("scan {scans}"));
                scans += 1;
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(1);
    let stats: Vec<_> = (0..4u64)
        .map(|w| {
            let mvcc = mvcc.clone();
            let mut rng = StdRng::seed_from_u64(600 + w);
            std::thread::spawn(move || {
                let (mut commits, mut failures) = (0u64, 0u64);
                while Instant::now() < deadline {
                    let pair = rng.random_range(0..pairs);
                    let which = rng.random_range(0..2);
                    let deposit = rng.random_bool(0.3);
                    let amount = rng.random_range(10..=120);
                    loop {
                        let mut t = mvcc.begin(Mode::ReadWrite(Isolation::Serializable)).unwrap();
                        let res = if deposit {
                            let k = acct(2 * pair + which);
                            read(&mut t, &k, false).and_then(|v| t.set(&k, &enc(v + amount)))
                        } else {
                            withdraw(&mut t, pair, which, amount)
                        };
                        match res.and_then(|_| t.commit()) {
                            Ok(_) => {
                                commits += 1;
                                break;
                            }
                            Err(e) if e.is_retryable() => failures += 1,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
                (commits, failures)
            })
        })
        .collect();
    let (mut commits, mut failures) = (0, 0);
    for s in stats {
        let (c, f) = s.join().unwrap();
        commits += c;
        failures += f;
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    let mut t = mvcc.begin(Mode::ReadOnly(Isolation::RepeatableRead)).unwrap();
    check(&balances(&mut t), "end");
    assert!(commits >= 20, "{commits} commits");
    eprintln!("joint accounts: {commits} commits, {failures} retries");
}

/// Fekete, O'Neil and O'Neil's read-only transaction anomaly (SIGMOD
/// Record 2004), as in PostgreSQL's `read-only-anomaly` isolation test:
/// checking X = 0, savings Y = 0.
///
/// ```text
/// T2: read X, Y                       (withdrawal of 10 from savings)
/// T1: read X; X = 20; commit          (deposit to checking)
/// T3: read X, Y => 20, 0; commit      (the report: "deposit, no withdrawal")
/// T2: Y = -11 (saw X + Y = 0 < 10: overdraft fee of 1); commit
/// ```
///
/// Every committed state alone is consistent, but the report saw T1's
/// deposit and not T2's withdrawal, while T2 charged the fee because it ran
/// before the deposit: T3 → T2 → T1 → T3 is a cycle. SERIALIZABLE must roll
/// back one of them (PostgreSQL: T2's commit fails, T1 having committed first
/// out of the T3 → T2 → T1 structure). Returns the outcomes of T3 and T2.
fn read_only_anomaly(report_mode: Mode) -> (Result<()>, Result<u64>) {
    let mvcc = Mvcc::open(
        Arc::new(MemoryEngine::new()),
        MvccOptions { gc_interval: None, ..MvccOptions::default() },
    )
    .unwrap();
    let ser = Mode::ReadWrite(Isolation::Serializable);
    {
        let mut t = mvcc.begin(ser).unwrap();
        t.set(b"x", &enc(0)).unwrap();
        t.set(b"y", &enc(0)).unwrap();
        t.commit().unwrap();
    }
    let mut t2 = mvcc.begin(ser).unwrap();
    let x2 = dec(&t2.get(b"x").unwrap().unwrap());
    let y2 = dec(&t2.get(b"y").unwrap().unwrap());

    let mut t1 = mvcc.begin(ser).unwrap();
    let x1 = dec(&t1.get(b"x").unwrap().unwrap());
    t1.set(b"x", &enc(x1 + 20)).unwrap();
    t1.commit().unwrap();

    let mut t3 = mvcc.begin(report_mode).unwrap();
    let t3_res = (|| {
        let x = dec(&t3.get(b"x")?.unwrap());
        let y = dec(&t3.get(b"y")?.unwrap());
        assert_eq!((x, y), (20, 0), "T3's snapshot");
        Ok(())
    })();
    let t3_res = t3_res.and_then(|_| t3.commit().map(|_| ()));

    let fee = if x2 + y2 < 10 { 1 } else { 0 };
    let t2_res = t2.set(b"y", &enc(y2 - 10 - fee)).and_then(|_| t2.commit());
    (t3_res, t2_res)
}

/// The reading order above, but T2 commits before T3 reads Y: then T3 is
/// the only one left that can roll back. Returns T3's outcome.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Between {
    Nothing,
    /// A SERIALIZABLE transaction that writes nothing commits.
    EmptyCommit,
    /// A garbage-collection pass runs.
    Gc,
}

fn read_only_anomaly_late_reader(report_mode: Mode, between: Between) -> Result<()> {
    let mvcc = Mvcc::open(
        Arc::new(MemoryEngine::new()),
        MvccOptions { gc_interval: None, ..MvccOptions::default() },
    )
    .unwrap();
    let ser = Mode::ReadWrite(Isolation::Serializable);
    {
        let mut t = mvcc.begin(ser).unwrap();
        t.set(b"x", &enc(0)).unwrap();
        t.set(b"y", &enc(0)).unwrap();
        t.commit().unwrap();
    }
    let mut t2 = mvcc.begin(ser).unwrap();
    let x2 = dec(&t2.get(b"x").unwrap().unwrap());
    let y2 = dec(&t2.get(b"y").unwrap().unwrap());
    let mut t1 = mvcc.begin(ser).unwrap();
    let x1 = dec(&t1.get(b"x").unwrap().unwrap());
    t1.set(b"x", &enc(x1 + 20)).unwrap();
    t1.commit().unwrap();
    // The report starts after the deposit and before the withdrawal commits.
    let mut t3 = mvcc.begin(report_mode).unwrap();
    let fee = if x2 + y2 < 10 { 1 } else { 0 };
    t2.set(b"y", &enc(y2 - 10 - fee)).unwrap();
    t2.commit().expect("T2 has no incoming edge yet: it commits");
    match between {
        Between::Nothing => {}
        Between::EmptyCommit => {
            mvcc.begin(ser).unwrap().commit().unwrap();
        }
        Between::Gc => {
            mvcc.gc().unwrap();
        }
    }
    let x = dec(&t3.get(b"x")?.unwrap());
    let y = dec(&t3.get(b"y")?.unwrap());
    assert_eq!((x, y), (20, 0), "T3's snapshot");
    t3.commit().map(|_| ())
}

#[test]
fn read_only_anomaly_is_prevented_for_read_write_serializable_reports() {
    // The report is a SERIALIZABLE read-write transaction that only reads:
    // T2 is a pivot with T1 committed first, so its commit fails.
    let (t3, t2) = read_only_anomaly(Mode::ReadWrite(Isolation::Serializable));
    t3.expect("the report commits");
    let e = t2.expect_err("T2 must be rolled back");
    assert_eq!(e.sqlstate(), "40001", "{e}");
    // T2 committed first: T3 is T_in of a complete structure, its read fails.
    let e =
        read_only_anomaly_late_reader(Mode::ReadWrite(Isolation::Serializable), Between::Nothing)
            .expect_err("T3 must be rolled back");
    assert_eq!(e.sqlstate(), "40001", "{e}");
    // At REPEATABLE READ the anomaly is allowed (the control).
    let (t3, t2) = read_only_anomaly(Mode::ReadWrite(Isolation::RepeatableRead));
    t3.unwrap();
    t2.unwrap();
}

#[test]
fn read_only_anomaly_with_an_empty_serializable_commit_in_between() {
    // Same as the late-reader case above, plus one SERIALIZABLE transaction
    // that commits without writing, after T2's commit: the rw edge T3 → T2
    // is then attributed to the empty transaction and T3 commits.
    let e = read_only_anomaly_late_reader(
        Mode::ReadWrite(Isolation::Serializable),
        Between::EmptyCommit,
    )
    .expect_err("T3 must be rolled back (it is T_in of T3 → T2 → T1, T1 first)");
    assert_eq!(e.sqlstate(), "40001", "{e}");
}

#[test]
fn read_only_anomaly_with_a_gc_pass_in_between() {
    let e = read_only_anomaly_late_reader(Mode::ReadWrite(Isolation::Serializable), Between::Gc)
        .expect_err("T3 must be rolled back (it is T_in of T3 → T2 → T1, T1 first)");
    assert_eq!(e.sqlstate(), "40001", "{e}");
}

#[test]
fn read_only_anomaly_is_prevented_for_read_only_serializable_reports() {
    let (t3, t2) = read_only_anomaly(Mode::ReadOnly(Isolation::Serializable));
    assert!(t3.is_err() || t2.is_err(), "the report and T2 both committed: not serializable");
    let e =
        read_only_anomaly_late_reader(Mode::ReadOnly(Isolation::Serializable), Between::Nothing)
            .expect_err("T3 must be rolled back");
    assert_eq!(e.sqlstate(), "40001", "{e}");
}

// ---------------------------------------------------------------- crash

const CRASH_ACCOUNTS: usize = 20;

fn crash_engine_opts() -> Options {
    Options {
        pool_bytes: 1 << 20,
        durability: Durability::Always,
        // Frequent checkpoints, so that kills land inside them too.
        checkpoint_wal_bytes: 256 << 10,
        checkpoint_interval: Some(Duration::from_millis(50)),
        wal_segment_bytes: 128 << 10,
        checkpoint_on_close: false,
    }
}

fn log_key(round: u32, thread: u32, n: u32) -> Vec<u8> {
    format!("log/{round:03}/{thread}/{n:08}").into_bytes()
}

#[test]
#[ignore = "run by bank_survives_sigkill as a child process"]
fn bank_crash_child() {
    let Ok(dir) = std::env::var("QUBE_BANK_CRASH_DIR") else { return };
    let round: u32 = std::env::var("QUBE_BANK_CRASH_ROUND").unwrap().parse().unwrap();
    let e: Arc<dyn Engine> = Arc::new(BTreeEngine::open(&dir, crash_engine_opts()).unwrap());
    let mvcc = Arc::new(Mvcc::open(e, mvcc_opts()).unwrap());
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let mvcc = mvcc.clone();
            std::thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(u64::from(round) * 10 + u64::from(t));
                // READ COMMITTED releases row locks before its fsync: the
                // next transfer of an account builds on a commit that is
                // not durable yet, and must not be acknowledged without it.
                let iso = match t {
                    0 => Isolation::RepeatableRead,
                    3 => Isolation::ReadCommitted,
                    _ => Isolation::Serializable,
                };
                for n in 0.. {
                    let from = rng.random_range(0..CRASH_ACCOUNTS);
                    let to = (from + rng.random_range(1..CRASH_ACCOUNTS)) % CRASH_ACCOUNTS;
                    let want = rng.random_range(1..=50);
                    let id = log_key(round, t, n);
                    // READ COMMITTED must lock what it reads, or it loses updates.
                    let for_update = n % 2 == 0 || iso == Isolation::ReadCommitted;
                    let ts = loop {
                        match transfer(&mvcc, iso, from, to, want, for_update, Some(&id)) {
                            Ok((_, ts)) => break ts,
                            Err(e) if e.is_retryable() => continue,
                            Err(e) => panic!("{e}"),
                        }
                    };
                    // One line per acknowledged transfer; println! locks stdout.
                    println!("ack {t} {n} {ts}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn bank_survives_sigkill() {
    let rounds: u32 =
        std::env::var("QUBE_BANK_CRASH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    {
        let e: Arc<dyn Engine> =
            Arc::new(BTreeEngine::open(dir.path(), crash_engine_opts()).unwrap());
        let mvcc = Mvcc::open(e, mvcc_opts()).unwrap();
        setup_accounts(&mvcc, CRASH_ACCOUNTS);
    }
    let exe = std::env::current_exe().unwrap();
    let mut rng = StdRng::seed_from_u64(0xBA4C);
    let mut last_ts = 0u64;
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "bank_crash_child",
                "--include-ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("QUBE_BANK_CRASH_DIR", dir.path())
            .env("QUBE_BANK_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest may print "test bank_crash_child ... " before it.
                let Some(i) = line.find("ack ") else { continue };
                let p: Vec<u64> =
                    line[i + 4..].split_whitespace().map(|s| s.parse().unwrap()).collect();
                let _ = tx.send((p[0] as u32, p[1] as u32, p[2]));
            }
        });
        let mut acked: Vec<(u32, u32, u64)> = Vec::new();
        let wait = Duration::from_millis(100 + rng.random_range(0..500));
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut started = None;
        loop {
            match rx.recv_timeout(Duration::from_millis(5)) {
                Ok(a) => {
                    acked.push(a);
                    started.get_or_insert_with(Instant::now);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!("child exited early"),
            }
            if started.is_some_and(|s| s.elapsed() >= wait) {
                break;
            }
            assert!(Instant::now() < deadline, "child made no progress");
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        acked.extend(rx.try_iter());
        assert!(!acked.is_empty());

        // Recover and check.
        let e = Arc::new(BTreeEngine::open(dir.path(), crash_engine_opts()).unwrap());
        let mvcc = Mvcc::open(
            e.clone() as Arc<dyn Engine>,
            MvccOptions { gc_interval: None, ..MvccOptions::default() },
        )
        .unwrap();
        let max_acked = acked.iter().map(|a| a.2).max().unwrap();
        let st = mvcc.status();
        assert!(st.last_commit >= max_acked, "round {round}: {st:?}, acked up to {max_acked}");
        assert_eq!(st.visible, st.last_commit);
        assert!(st.last_commit > last_ts, "round {round}: no commit survived?");

        let mut t = mvcc.begin(Mode::ReadOnly(Isolation::RepeatableRead)).unwrap();
        let mut expect = vec![INITIAL; CRASH_ACCOUNTS];
        let mut logged: HashSet<(u32, u32, u32)> = HashSet::new();
        for (k, v) in t.scan(KeyRange::prefix(b"log/"), Direction::Forward).unwrap() {
            let k = String::from_utf8(k).unwrap();
            let p: Vec<u32> = k[4..].split('/').map(|s| s.parse().unwrap()).collect();
            logged.insert((p[0], p[1], p[2]));
            let v = String::from_utf8(v).unwrap();
            let f: Vec<i64> = v.split(' ').map(|s| s.parse().unwrap()).collect();
            expect[f[0] as usize] -= f[2];
            expect[f[1] as usize] += f[2];
        }
        for &(th, n, ts) in &acked {
            assert!(
                logged.contains(&(round, th, n)),
                "round {round}: acknowledged transfer {th}/{n} (commit {ts}) lost"
            );
        }
        // A thread's transfers are sequential: the logged ones have no gaps.
        let mut per_thread: BTreeMap<(u32, u32), Vec<u32>> = BTreeMap::new();
        for &(r, th, n) in &logged {
            per_thread.entry((r, th)).or_default().push(n);
        }
        for ((r, th), mut ns) in per_thread {
            ns.sort();
            let max = *ns.last().unwrap();
            assert_eq!(ns.len() as u32, max + 1, "round {r} thread {th}: gaps in the log");
        }
        let b = balances(&mut t);
        drop(t);
        assert_eq!(b.iter().sum::<i64>(), CRASH_ACCOUNTS as i64 * INITIAL, "round {round}");
        assert_eq!(b, expect, "round {round}: balances differ from initial + logged transfers");

        // New commits get larger timestamps than anything before the crash.
        let mut t = mvcc.begin(Mode::ReadWrite(Isolation::Serializable)).unwrap();
        t.set(format!("reopen/{round}").as_bytes(), b"1").unwrap();
        let ts = t.commit().unwrap();
        assert_eq!(ts, st.last_commit + 1);
        last_ts = ts;
        drop(mvcc);
        e.verify().unwrap_or_else(|err| panic!("round {round}: {err}"));
        drop(e);
        eprintln!(
            "round {round}: {} acked, {} logged, last commit {ts}",
            acked.len(),
            logged.len()
        );
    }
}
