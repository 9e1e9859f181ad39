//! Hermitage (Martin Kleppmann's isolation test suite,
//! github.com/ept/hermitage) as scripted stories: one anomaly per file in
//! `tests/hermitage/`, each run at the isolation levels its sections name,
//! on the memory engine and on the B+Tree engine, expecting the outcomes
//! PostgreSQL documents for that level.
//!
//! Script lines:
//!
//! ```text
//! setup 1=10 2=20            rows of the table (key = id, value = number)
//! levels rc rr ser           the following steps run at these levels
//! T1 begin                   (at the section's level)
//! T1 get 1 => 10             read a row; `none` if absent
//! T1 scan => 1=10 2=20       the whole table; `(empty)` if nothing
//! T1 scan value%3=0 => …     the rows matching a predicate
//! T1 update 1 11 => ok       UPDATE test SET value = 11 WHERE id = 1
//! T1 incr_all 10 => ok       UPDATE test SET value = value + 10
//! T1 insert 3 30 => ok
//! T1 delete_where value=20 => ok
//! T1 commit => ok            or 40001, 40P01, blocked …
//! T2 wait => ok              the result of T2's blocked step
//! check 1=12 2=22            the table as a fresh transaction sees it
//! ```
//!
//! A step that gets no answer within 300 ms is `blocked` (waiting for a row
//! lock); `wait` collects its answer later. Every statement starts a new
//! statement snapshot, which matters at READ COMMITTED.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::Duration;

use qube_storage::{BTreeEngine, Direction, Durability, Engine, KeyRange, MemoryEngine, Options};
use qube_txn::{Isolation, Mode, Mvcc, MvccOptions, Transaction};

fn level(name: &str) -> Isolation {
    match name {
        "rc" => Isolation::ReadCommitted,
        "rr" => Isolation::RepeatableRead,
        "ser" => Isolation::Serializable,
        other => panic!("unknown level {other}"),
    }
}

fn err_code(e: &qube_common::Error) -> String {
    e.sqlstate().to_string()
}

fn key(id: &str) -> Vec<u8> {
    id.as_bytes().to_vec()
}

fn num(v: &[u8]) -> i64 {
    std::str::from_utf8(v).unwrap().parse().unwrap()
}

/// `value=20` or `value%3=0`.
fn predicate(p: &str) -> impl Fn(i64) -> bool {
    let (lhs, rhs) = p.split_once('=').expect("predicate");
    let want: i64 = rhs.parse().unwrap();
    let modulo: Option<i64> = lhs.strip_prefix("value%").map(|m| m.parse().unwrap());
    move |v| match modulo {
        Some(m) => v % m == want,
        None => v == want,
    }
}

fn rows(t: &mut Transaction) -> qube_common::Result<Vec<(String, i64)>> {
    Ok(t.scan(KeyRange::all(), Direction::Forward)?
        .into_iter()
        .map(|(k, v)| (String::from_utf8(k).unwrap(), num(&v)))
        .collect())
}

fn show(rows: &[(String, i64)]) -> String {
    if rows.is_empty() {
        return "(empty)".into();
    }
    rows.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}

/// Runs one step on a transaction (in its worker thread).
fn step(t: &mut Transaction, words: &[String]) -> qube_common::Result<String> {
    t.new_statement();
    let w: Vec<&str> = words.iter().map(|s| s.as_str()).collect();
    match w.as_slice() {
        ["get", k] => Ok(t.get(&key(k))?.map_or("none".into(), |v| num(&v).to_string())),
        ["scan"] => Ok(show(&rows(t)?)),
        ["scan", p] => {
            let f = predicate(p);
            Ok(show(&rows(t)?.into_iter().filter(|(_, v)| f(*v)).collect::<Vec<_>>()))
        }
        ["update", k, v] => {
            if t.get_for_update(&key(k))?.is_some() {
                t.set(&key(k), v.as_bytes())?;
            }
            Ok("ok".into())
        }
        ["insert", k, v] => {
            t.set(&key(k), v.as_bytes())?;
            Ok("ok".into())
        }
        ["incr_all", n] => {
            let n: i64 = n.parse().unwrap();
            for (k, _) in rows(t)? {
                if let Some(cur) = t.get_for_update(&key(&k))? {
                    t.set(&key(&k), (num(&cur) + n).to_string().as_bytes())?;
                }
            }
            Ok("ok".into())
        }
        ["update_where", p, v] => {
            let f = predicate(p);
            for (k, val) in rows(t)? {
                // PostgreSQL re-checks the predicate on the row it locked.
                if f(val)
                    && let Some(cur) = t.get_for_update(&key(&k))?
                    && f(num(&cur))
                {
                    t.set(&key(&k), v.as_bytes())?;
                }
            }
            Ok("ok".into())
        }
        ["delete_where", p] => {
            let f = predicate(p);
            for (k, val) in rows(t)? {
                if f(val)
                    && let Some(cur) = t.get_for_update(&key(&k))?
                    && f(num(&cur))
                {
                    t.delete(&key(&k))?;
                }
            }
            Ok("ok".into())
        }
        other => panic!("unknown step {other:?}"),
    }
}

enum Cmd {
    Step(Vec<String>),
    Commit,
    Rollback,
}

struct Worker {
    tx: Sender<Cmd>,
    rx: Receiver<String>,
    handle: Option<JoinHandle<()>>,
}

fn spawn(mvcc: &Arc<Mvcc>, iso: Isolation) -> Worker {
    let (tx, cmd_rx) = channel::<Cmd>();
    let (res_tx, rx) = channel::<String>();
    let mvcc = mvcc.clone();
    let handle = std::thread::spawn(move || {
        let mut txn = Some(mvcc.begin(Mode::ReadWrite(iso)).unwrap());
        for cmd in cmd_rx {
            let out = match cmd {
                Cmd::Step(words) => match txn.as_mut() {
                    Some(t) => step(t, &words).unwrap_or_else(|e| err_code(&e)),
                    None => "no transaction".into(),
                },
                Cmd::Commit => match txn.take() {
                    Some(t) => {
                        t.commit().map(|_| "ok".to_string()).unwrap_or_else(|e| err_code(&e))
                    }
                    None => "no transaction".into(),
                },
                Cmd::Rollback => {
                    if let Some(t) = txn.take() {
                        t.rollback();
                    }
                    "ok".into()
                }
            };
            if res_tx.send(out).is_err() {
                break;
            }
        }
    });
    Worker { tx, rx, handle: Some(handle) }
}

fn answer(rx: &Receiver<String>, wait: Duration) -> Option<String> {
    match rx.recv_timeout(wait) {
        Ok(s) => Some(s),
        Err(RecvTimeoutError::Timeout) => None,
        Err(RecvTimeoutError::Disconnected) => Some("worker died".into()),
    }
}

fn table(mvcc: &Mvcc) -> String {
    let mut t = mvcc.begin(Mode::ReadOnly(Isolation::RepeatableRead)).unwrap();
    show(&rows(&mut t).unwrap())
}

/// Runs one section of a script at one level; returns the failures.
fn run_section(
    file: &str,
    setup: &[(String, String)],
    steps: &[String],
    iso: Isolation,
    engine: Arc<dyn Engine>,
) -> Vec<String> {
    let opts = MvccOptions { gc_interval: None, ..MvccOptions::default() };
    let mvcc = Arc::new(Mvcc::open(engine, opts).unwrap());
    {
        let mut t = mvcc.begin(Mode::ReadWrite(Isolation::ReadCommitted)).unwrap();
        for (k, v) in setup {
            t.set(k.as_bytes(), v.as_bytes()).unwrap();
        }
        t.commit().unwrap();
    }
    let mut workers: HashMap<String, Worker> = HashMap::new();
    let mut failures = Vec::new();
    for (n, line) in steps.iter().enumerate() {
        let (lhs, expected) = match line.split_once("=>") {
            Some((l, e)) => (l.trim(), Some(e.trim().to_string())),
            None => (line.trim(), None),
        };
        let words: Vec<String> = lhs.split_whitespace().map(String::from).collect();
        let got = if words[0] == "check" {
            let want = words[1..].join(" ");
            let have = table(&mvcc);
            if have != want {
                failures
                    .push(format!("{file} [{iso:?}] step {}: `{line}`: table is {have}", n + 1));
            }
            continue;
        } else {
            let name = words[0].clone();
            match words[1].as_str() {
                "begin" => {
                    workers.insert(name, spawn(&mvcc, iso));
                    continue;
                }
                "wait" => answer(&workers[&name].rx, Duration::from_secs(10))
                    .unwrap_or("still blocked".into()),
                op => {
                    let w = &workers[&name];
                    let cmd = match op {
                        "commit" => Cmd::Commit,
                        "rollback" => Cmd::Rollback,
                        _ => Cmd::Step(words[1..].to_vec()),
                    };
                    w.tx.send(cmd).unwrap();
                    answer(&w.rx, Duration::from_millis(300)).unwrap_or("blocked".into())
                }
            }
        };
        if let Some(want) = expected
            && got != want
        {
            failures.push(format!("{file} [{iso:?}] step {}: `{line}`: got `{got}`", n + 1));
        }
    }
    for (_, mut w) in workers {
        drop(w.tx);
        if let Some(h) = w.handle.take() {
            let _ = h.join();
        }
    }
    failures
}

fn engines() -> Vec<(&'static str, Arc<dyn Engine>, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let opts =
        Options { durability: Durability::Never, checkpoint_interval: None, ..Options::default() };
    let btree: Arc<dyn Engine> = Arc::new(BTreeEngine::open(dir.path(), opts).unwrap());
    vec![("memory", Arc::new(MemoryEngine::new()), None), ("btree", btree, Some(dir))]
}

#[test]
fn hermitage() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hermitage");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 11, "expected the Hermitage scripts in {}", dir.display());
    let mut failures = Vec::new();
    let mut runs = 0;
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut setup = Vec::new();
        let mut sections: Vec<(Vec<Isolation>, Vec<String>)> = Vec::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            if let Some(rest) = line.strip_prefix("setup ") {
                setup = rest
                    .split_whitespace()
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').unwrap();
                        (k.to_string(), v.to_string())
                    })
                    .collect();
            } else if let Some(rest) = line.strip_prefix("levels ") {
                sections.push((rest.split_whitespace().map(level).collect(), Vec::new()));
            } else {
                sections.last_mut().expect("steps before `levels`").1.push(line.to_string());
            }
        }
        for (levels, steps) in &sections {
            for &iso in levels {
                for (ename, engine, _dir) in engines() {
                    runs += 1;
                    let f = run_section(&format!("{name} on {ename}"), &setup, steps, iso, engine);
                    failures.extend(f);
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures in {runs} runs:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
