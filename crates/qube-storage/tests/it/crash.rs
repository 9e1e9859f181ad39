//! Crash tests: a child process commits batches and reports each one
//! acknowledged; the parent kills it with SIGKILL at a random moment,
//! reopens the directory, and checks that every acknowledged batch is there
//! and that no batch is half applied.
//!
//! Rounds: `QUBE_CRASH_ROUNDS` (default 20). The child is this same test
//! binary running the ignored test `crash::child_writer`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::Rng;
use qube_storage::{BTreeEngine, Direction, Durability, Engine, KeyRange, Options, WriteBatch};

const KEYS_PER_BATCH: u32 = 8;

fn child_opts() -> Options {
    Options {
        pool_bytes: 512 << 10,
        durability: Durability::Always,
        // Frequent checkpoints, so that kills land inside them too.
        checkpoint_wal_bytes: 256 << 10,
        checkpoint_interval: Some(Duration::from_millis(50)),
        wal_segment_bytes: 128 << 10,
        checkpoint_on_close: false,
    }
}

/// Batch `n` of writer `t`: keys t/n/j, each value "t:n:j" padded; plus it
/// overwrites the writer's "last" key with n, and deletes batch n-5's
/// first key (so deletes are crash-tested too).
fn batch(t: u32, n: u32) -> WriteBatch {
    let mut b = WriteBatch::new();
    for j in 0..KEYS_PER_BATCH {
        let size =
            if j == 0 && n.is_multiple_of(7) { 9000 } else { 40 + (n * 13 + j) as usize % 300 };
        let mut v = format!("{t}:{n}:{j}:").into_bytes();
        v.resize(size, b'.');
        b.set(format!("w{t}/{n:08}/{j}").as_bytes(), &v);
    }
    b.set(format!("last/{t}").as_bytes(), &n.to_le_bytes());
    if n >= 5 {
        b.delete(format!("w{t}/{:08}/0", n - 5).as_bytes());
    }
    b
}

#[test]
#[ignore = "run by crash tests as a child process"]
fn child_writer() {
    let Ok(dir) = std::env::var("QUBE_CRASH_DIR") else { return };
    let e = std::sync::Arc::new(BTreeEngine::open(&dir, child_opts()).unwrap());
    let threads: Vec<_> = (0..2u32)
        .map(|t| {
            let e = e.clone();
            std::thread::spawn(move || {
                let start: u32 =
                    std::env::var(format!("QUBE_CRASH_START_{t}")).unwrap().parse().unwrap();
                for n in start.. {
                    e.write(batch(t, n)).unwrap();
                    // One line per acknowledged batch; println! locks stdout.
                    println!("ack {t} {n}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn sigkill_never_loses_an_acknowledged_batch() {
    let rounds: u32 =
        std::env::var("QUBE_CRASH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = Rng(0xC0FF_EE00 ^ rounds as u64);
    // Highest batch number acknowledged so far, per writer.
    let mut acked: HashMap<u32, u32> = HashMap::new();
    // Next batch number per writer (one past what the last recovery found).
    let mut next_start = [0u32; 2];
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash::child_writer",
                "--include-ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("QUBE_CRASH_DIR", dir.path())
            .env("QUBE_CRASH_START_0", next_start[0].to_string())
            .env("QUBE_CRASH_START_1", next_start[1].to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let parts: Vec<&str> = line.split_whitespace().collect();
                if parts.len() == 3 && parts[0] == "ack" {
                    let _ = tx
                        .send((parts[1].parse::<u32>().unwrap(), parts[2].parse::<u32>().unwrap()));
                }
            }
        });
        // Let it write for a random while (after its first acknowledgement).
        let wait = Duration::from_millis(50 + rng.next() % 400);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut started = None;
        loop {
            match rx.recv_timeout(Duration::from_millis(5)) {
                Ok((t, n)) => {
                    let e = acked.entry(t).or_insert(n);
                    *e = (*e).max(n);
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
        while let Ok((t, n)) = rx.try_recv() {
            let e = acked.entry(t).or_insert(n);
            *e = (*e).max(n);
        }

        let e = BTreeEngine::open(dir.path(), child_opts()).unwrap();
        let mut present: HashMap<(u32, u32), u32> = HashMap::new();
        let mut cur = e.scan_prefix(b"w", Direction::Forward).unwrap();
        while cur.advance().unwrap() {
            let key = String::from_utf8(cur.key().to_vec()).unwrap();
            let parts: Vec<&str> = key[1..].split('/').collect();
            let (t, n, j): (u32, u32, u32) =
                (parts[0].parse().unwrap(), parts[1].parse().unwrap(), parts[2].parse().unwrap());
            let want = format!("{t}:{n}:{j}:");
            assert!(
                cur.value().starts_with(want.as_bytes()),
                "round {round}: wrong value at {key}"
            );
            *present.entry((t, n)).or_default() += 1;
        }
        drop(cur);
        for t in 0..2u32 {
            let last: Option<u32> = e
                .get(format!("last/{t}").as_bytes())
                .unwrap()
                .map(|v| u32::from_le_bytes(v[..4].try_into().unwrap()));
            if let Some(&a) = acked.get(&t) {
                let last = last
                    .unwrap_or_else(|| panic!("round {round}: writer {t} acked {a}, found none"));
                assert!(last >= a, "round {round}: writer {t} acked {a}, found only {last}");
            }
            let Some(last) = last else { continue };
            for n in 0..=last {
                let count = present.get(&(t, n)).copied().unwrap_or(0);
                // Key j=0 of a batch is deleted by batch n+5.
                let expect = if n + 5 <= last { KEYS_PER_BATCH - 1 } else { KEYS_PER_BATCH };
                assert_eq!(count, expect, "round {round}: writer {t} batch {n} has {count} keys");
            }
            assert!(!present.contains_key(&(t, last + 1)), "round {round}: batch past 'last'");
            next_start[t as usize] = last + 1;
        }
        e.verify().unwrap_or_else(|err| panic!("round {round}: {err}"));
        drop(e);
    }
    let e = BTreeEngine::open(dir.path(), child_opts()).unwrap();
    let all = e.scan(KeyRange::all(), Direction::Forward).unwrap().collect_pairs().unwrap();
    assert!(!all.is_empty());
}

#[test]
#[ignore = "run by lock tests as a child process"]
fn child_open_probe() {
    let Ok(dir) = std::env::var("QUBE_PROBE_DIR") else { return };
    match BTreeEngine::open(&dir, child_opts()) {
        Ok(_) => println!("probe: opened"),
        Err(e) => println!("probe: {e}"),
    }
}

fn probe(dir: &std::path::Path) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash::child_open_probe",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("QUBE_PROBE_DIR", dir)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    // libtest prints "test name ... " before the child's own line.
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    stdout.lines().filter_map(|l| l.find("probe: ").map(|i| l[i..].to_string())).collect()
}

#[test]
fn a_second_process_is_refused_while_the_directory_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let e = BTreeEngine::open(dir.path(), child_opts()).unwrap();
    e.set(b"k", b"v").unwrap();
    let seen = probe(dir.path());
    assert!(
        seen.contains("refused") && seen.contains("in use by another QubeDB process"),
        "{seen}"
    );
    assert_eq!(e.get(b"k").unwrap(), Some(b"v".to_vec()), "the refused open changed nothing");
    drop(e);
    assert_eq!(probe(dir.path()), "probe: opened");
}
