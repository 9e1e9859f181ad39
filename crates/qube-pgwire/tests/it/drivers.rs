//! Real PostgreSQL drivers against the server: psycopg 3, SQLAlchemy 2
//! (over psycopg), node-postgres and pgjdbc. Each client is a program under
//! `tests/clients/` at the repository root that checks its own results and
//! exits non-zero, printing what differed, on any mismatch; this test
//! starts a server on a temporary data directory and a free loopback port,
//! runs the client as a subprocess with the port in `QUBEDB_TEST_PORT`, and
//! asserts that it succeeded.
//!
//! The clients are ordinary programs: run one by hand against PostgreSQL
//! with `QUBEDB_TEST_PORT`, `QUBEDB_TEST_USER` and `QUBEDB_TEST_DB` set
//! (they pass against PostgreSQL 15 unchanged).
//!
//! Their tools come from `tests/clients/setup.sh` (which `.ci/run` runs):
//! a Python venv with psycopg and SQLAlchemy and an npm prefix with `pg`
//! under `.ci-cache/clients` (or `$QUBEDB_CLIENTS_CACHE`), Java and
//! Debian's pgjdbc jar. A missing tool fails the test when `CI` is set and
//! is reported as skipped otherwise.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use qube_pgwire::{Config, Server};
use qube_sql::Database;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The pgjdbc jar Debian's libpostgresql-jdbc-java installs.
const PGJDBC_JAR: &str = "/usr/share/java/postgresql.jar";
/// A client that runs longer than this is killed and fails the test (a
/// guard against a hang, not a timing assertion).
const CLIENT_LIMIT: Duration = Duration::from_secs(600);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn clients_dir() -> PathBuf {
    repo_root().join("tests/clients")
}

fn cache_dir() -> PathBuf {
    std::env::var_os("QUBEDB_CLIENTS_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".ci-cache/clients"))
}

/// Whether `cmd args…` runs and exits 0.
fn runs(cmd: &Path, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A missing tool: a failure under CI, else a skip (returns false).
fn missing(test: &str, what: &str) -> bool {
    if std::env::var_os("CI").is_some() {
        panic!("{test}: {what} is missing (run tests/clients/setup.sh)");
    }
    eprintln!("skipped: {test}: {what} missing (run tests/clients/setup.sh)");
    false
}

/// The venv's python with psycopg and SQLAlchemy, if set up.
fn python(test: &str) -> Option<PathBuf> {
    let py = cache_dir().join("venv/bin/python");
    if runs(&py, &["-c", "import psycopg, sqlalchemy"]) {
        Some(py)
    } else {
        missing(test, "python with psycopg and sqlalchemy");
        None
    }
}

/// A server on a temporary data directory and a free port, for one client.
struct DiskServer {
    port: u16,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl DiskServer {
    async fn start() -> DiskServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Database::open(dir.path()).expect("open data directory");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(Server::new(db, Config::default()).serve(listener, stopped));
        DiskServer { port, stop, task, _dir: dir }
    }

    /// Runs `cmd` (a client) with the server's address in its environment
    /// and fails the test, showing its output, unless it exits 0.
    async fn run_client(&self, name: &str, mut cmd: Command) {
        cmd.env("QUBEDB_TEST_HOST", "127.0.0.1")
            .env("QUBEDB_TEST_PORT", self.port.to_string())
            .env("QUBEDB_TEST_USER", "qubedb")
            .env("QUBEDB_TEST_DB", "qubedb")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let name = name.to_string();
        let out = tokio::task::spawn_blocking(move || {
            let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{name}: cannot start: {e}"));
            let start = Instant::now();
            while child.try_wait().expect("wait").is_none() {
                if start.elapsed() > CLIENT_LIMIT {
                    let _ = child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            (name, child.wait_with_output().expect("client output"))
        })
        .await
        .expect("client thread");
        let (name, out) = out;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{name} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            out.status
        );
        println!("{stdout}");
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        self.task.await.expect("server task").expect("server result");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_psycopg() {
    let Some(py) = python("driver_psycopg") else { return };
    let srv = DiskServer::start().await;
    let mut cmd = Command::new(py);
    cmd.arg("test_psycopg.py").current_dir(clients_dir().join("python"));
    srv.run_client("psycopg", cmd).await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_sqlalchemy() {
    let Some(py) = python("driver_sqlalchemy") else { return };
    let srv = DiskServer::start().await;
    let mut cmd = Command::new(py);
    cmd.arg("test_sqlalchemy.py").current_dir(clients_dir().join("python"));
    srv.run_client("sqlalchemy", cmd).await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_node_postgres() {
    let modules = cache_dir().join("node/node_modules");
    if !runs(Path::new("node"), &["--version"]) || !modules.join("pg").is_dir() {
        missing("driver_node_postgres", "node with the pg package");
        return;
    }
    let srv = DiskServer::start().await;
    let mut cmd = Command::new("node");
    cmd.arg("test_pg.js").env("NODE_PATH", modules).current_dir(clients_dir().join("node"));
    srv.run_client("node-postgres", cmd).await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_pgjdbc() {
    if !runs(Path::new("java"), &["-version"])
        || !runs(Path::new("javac"), &["-version"])
        || !Path::new(PGJDBC_JAR).is_file()
    {
        missing("driver_pgjdbc", "a JDK (java, javac) or pgjdbc (libpostgresql-jdbc-java)");
        return;
    }
    let srv = DiskServer::start().await;
    let mut cmd = Command::new("java");
    // No known gaps (QUBEDB_TEST_KNOWN_GAPS) at the moment: DatabaseMetaData's
    // getPrimaryKeys, getIndexInfo, getImportedKeys/getExportedKeys and
    // ResultSetMetaData's table names all work.
    cmd.args(["-cp", PGJDBC_JAR, "DriverTest.java"]).current_dir(clients_dir().join("java"));
    srv.run_client("pgjdbc", cmd).await;
    srv.stop().await;
}
