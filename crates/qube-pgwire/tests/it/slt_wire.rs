//! Conformance through the wire protocol:
//!
//! - the engine's own `.slt` files (`crates/qube-sql/tests/slt`, which
//!   `qube-sql`'s `slt` test runs in-process) through this server with a
//!   tokio-postgres client, one fresh in-memory server per file;
//! - SQLite's corpus `t0` (`../shared/conformance/sqlite/t0`) through this
//!   server with the shared Python runner `slt_runner.py` (psycopg 3),
//!   which must pass 100%.
//!
//! Over the wire every record is one simple Query message, values arrive
//! in PostgreSQL's text format and are written as the in-process runner
//! writes them (NULL as `NULL`, the empty string as `(empty)`), errors as
//! `"<SQLSTATE>: <message>"`. The simple query protocol does not carry
//! column types to tokio-postgres (`SimpleColumn` has only a name), so
//! the column letters of `query` records are checked by count here; the
//! in-process run checks them strictly.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use sqllogictest::{DB, DBOutput, DefaultColumnType, Record, Runner};
use tokio::runtime::{Handle, Runtime};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::TestServer;

/// Records that legitimately differ over the wire: `(file, line)` of the
/// record, and why. Empty: every record passes as it does in-process.
const SKIPPED: &[(&str, usize, &str)] = &[];

#[derive(Debug)]
struct WireError {
    sqlstate: String,
    message: String,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.sqlstate, self.message)
    }
}

impl std::error::Error for WireError {}

impl From<tokio_postgres::Error> for WireError {
    fn from(e: tokio_postgres::Error) -> WireError {
        match e.as_db_error() {
            Some(db) => {
                WireError { sqlstate: db.code().code().to_string(), message: db.message().into() }
            }
            None => WireError { sqlstate: "08006".into(), message: e.to_string() },
        }
    }
}

/// One runner connection: a client of the file's server. The runner is
/// synchronous (`DB`); each query blocks on the test's runtime.
struct Wire {
    client: Client,
    rt: Handle,
}

impl Wire {
    fn connect(rt: Handle, addr: SocketAddr) -> Result<Wire, WireError> {
        let (client, conn) = rt.block_on(tokio_postgres::connect(
            &format!("host=127.0.0.1 port={} user=qubedb dbname=qubedb", addr.port()),
            NoTls,
        ))?;
        rt.spawn(conn);
        Ok(Wire { client, rt })
    }
}

impl DB for Wire {
    type Error = WireError;
    type ColumnType = DefaultColumnType;

    fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, WireError> {
        let messages = self.rt.block_on(self.client.simple_query(sql))?;
        // Like the in-process runner (and psql), several statements give
        // the last one's output.
        let mut last = DBOutput::StatementComplete(0);
        let mut columns: Option<usize> = None;
        let mut rows: Vec<Vec<String>> = Vec::new();
        for m in messages {
            match m {
                SimpleQueryMessage::RowDescription(cols) => {
                    columns = Some(cols.len());
                    rows.clear();
                }
                SimpleQueryMessage::Row(r) => rows.push(
                    (0..r.len())
                        .map(|i| match r.get(i) {
                            None => "NULL".to_string(),
                            Some("") => "(empty)".to_string(),
                            Some(v) => v.to_string(),
                        })
                        .collect(),
                ),
                SimpleQueryMessage::CommandComplete(n) => {
                    last = match columns.take() {
                        Some(k) => DBOutput::Rows {
                            types: vec![DefaultColumnType::Any; k],
                            rows: std::mem::take(&mut rows),
                        },
                        None => DBOutput::StatementComplete(n),
                    };
                }
                _ => {}
            }
        }
        Ok(last)
    }

    fn engine_name(&self) -> &str {
        "qubedb"
    }

    fn error_sql_state(err: &WireError) -> Option<String> {
        Some(err.sqlstate.clone())
    }
}

/// The simple query protocol has no column types: compare counts.
#[allow(clippy::ptr_arg)]
fn same_count(actual: &Vec<DefaultColumnType>, expected: &Vec<DefaultColumnType>) -> bool {
    actual.len() == expected.len()
}

fn slt_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../qube-sql/tests/slt")
}

/// Runs every record of one file on a fresh server; the failures.
fn run_file(rt: &Runtime, path: &Path) -> (usize, Vec<String>) {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
    let records = match sqllogictest::parse_file::<DefaultColumnType>(path) {
        Ok(r) => r,
        Err(e) => return (0, vec![format!("{name}: cannot parse: {e}")]),
    };
    let srv = rt.block_on(TestServer::start());
    let addr = srv.addr;
    let handle = rt.handle().clone();
    let mut runner = Runner::new(move || {
        let h = handle.clone();
        async move { Wire::connect(h, addr) }
    });
    runner.with_column_validator(same_count);
    let (mut run, mut failures) = (0, Vec::new());
    for record in records {
        let line = match &record {
            Record::Statement { loc, .. } | Record::Query { loc, .. } => Some(loc.line() as usize),
            _ => None,
        };
        if let Some(line) = line {
            if SKIPPED.iter().any(|(f, l, _)| *f == name && *l == line) {
                continue;
            }
            run += 1;
        }
        if let Record::Halt { .. } = record {
            break;
        }
        if let Err(e) = runner.run(record) {
            failures.push(e.display(false).to_string());
        }
    }
    drop(runner);
    rt.block_on(srv.stop());
    (run, failures)
}

#[test]
fn project_slt_files_through_the_wire() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut files: Vec<PathBuf> = std::fs::read_dir(slt_dir())
        .expect("crates/qube-sql/tests/slt")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "slt files: {files:?}");
    let started = std::time::Instant::now();
    let (mut total, mut failed) = (0, Vec::new());
    for f in &files {
        let (run, failures) = run_file(&rt, f);
        assert!(run > 0 || !failures.is_empty(), "{} has no records", f.display());
        total += run;
        failed.extend(failures);
    }
    eprintln!(
        "{} records of {} files through the wire in {:.1?}",
        total,
        files.len(),
        started.elapsed()
    );
    assert!(
        failed.is_empty(),
        "{} of {total} records failed:\n\n{}",
        failed.len(),
        failed.join("\n")
    );
}

/// `../shared/conformance` above the crate (or `$QUBE_CONFORMANCE_DIR`).
fn conformance_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("QUBE_CONFORMANCE_DIR") {
        return Some(dir.into());
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("shared").join("conformance"))
        .find(|c| c.join("sqlite").join("t0").is_dir())
}

/// A Python that can import psycopg: the driver tests' venv (which
/// `tests/clients/setup.sh`, run by `.ci/run`, fills with a pinned
/// psycopg), else `python3` on the PATH, else the system's
/// `/usr/bin/python3` (where Debian's python3-psycopg goes; a PATH that
/// leads to another Python, such as pyenv's, does not see it).
fn python_with_psycopg() -> Option<PathBuf> {
    let venv = std::env::var_os("QUBEDB_CLIENTS_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ci-cache/clients"))
        .join("venv/bin/python");
    [venv, PathBuf::from("python3"), PathBuf::from("/usr/bin/python3")].into_iter().find(|py| {
        std::process::Command::new(py)
            .args(["-c", "import psycopg"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Skips (or fails in CI) when something the test needs is missing.
fn missing(what: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{what} missing (CI is set)");
    }
    eprintln!("skipped: {what} missing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_t0_through_the_wire_with_slt_runner_py() {
    let Some(dir) = conformance_dir() else {
        return missing("../shared/conformance (the SQLite corpus)");
    };
    let Some(python) = python_with_psycopg() else {
        return missing("python3 with psycopg");
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("sqlite").join("t0"))
        .expect("t0")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "test"))
        .collect();
    files.sort();
    let srv = TestServer::start().await;
    let fail_log = std::env::temp_dir().join(format!("qube-t0-wire-{}.txt", std::process::id()));
    let mut cmd = std::process::Command::new(&python);
    cmd.arg(dir.join("slt_runner.py"))
        .arg("--dsn")
        .arg(format!("host=127.0.0.1 port={} user=qubedb dbname=qubedb", srv.addr.port()))
        .arg("--fail-log")
        .arg(&fail_log)
        .args(&files);
    let started = std::time::Instant::now();
    let out = tokio::task::spawn_blocking(move || cmd.output()).await.unwrap().expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let failures = std::fs::read_to_string(&fail_log).unwrap_or_default();
    let _ = std::fs::remove_file(&fail_log);
    eprintln!("{stdout}t0 through the wire in {:.1?}", started.elapsed());
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    // The last line: "N passed, M failed  (queries; …)".
    let last = stdout.lines().last().unwrap_or_default();
    let count = |word: &str| -> Option<usize> {
        let before = last.split(word).next()?;
        before.split([' ', ',']).rfind(|s| !s.is_empty())?.parse().ok()
    };
    let (passed, failed) = (count(" passed"), count(" failed"));
    assert_eq!(failed, Some(0), "{last}\n{}", &failures[..failures.len().min(4000)]);
    assert_eq!(passed, Some(8_884), "{last}");
    assert!(failures.is_empty(), "{failures}");
    srv.stop().await;
}
