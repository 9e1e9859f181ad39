//! `qubedb serve` as a process: settings from flags, environment and a
//! TOML file (and their precedence), and a graceful stop on SIGTERM with
//! a client connected: exit status 0, committed data there after a
//! restart, uncommitted data not.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use crate::qubedb;

/// Runs `qubedb serve ARGS --print-config` with extra environment.
fn print_config(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qubedb"));
    cmd.arg("serve").args(args).arg("--print-config");
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("QUBEDB_")) {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn settings_come_from_flag_then_environment_then_file_then_default() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("qubedb.toml");
    std::fs::write(
        &file,
        "pg_addr = \"127.0.0.1:7000\"\nhttp_addr = \"127.0.0.1:7100\"\nwork_mem = \"8MB\"\nstatement_timeout = 5000\nauth = \"scram-sha-256\"\nlog_format = \"json\"\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let (code, out, err) = print_config(&["--config", f], &[]);
    assert_eq!(code, 0, "{err}");
    for line in [
        "pg_addr = \"127.0.0.1:7000\"",
        "http_addr = \"127.0.0.1:7100\"",
        "work_mem = \"8MB\"",
        "statement_timeout = \"5000\"",
        "auth = \"scram-sha-256\"",
        "log_format = \"json\"",
        // Not in the file: the default.
        "max_connections = 100",
    ] {
        assert!(out.lines().any(|l| l == line), "{line} in\n{out}");
    }
    // The environment beats the file, a flag beats both.
    let env = [("QUBEDB_PG_ADDR", "127.0.0.1:7001"), ("QUBEDB_WORK_MEM", "16MB")];
    let (_, out, _) = print_config(&["--config", f], &env);
    assert!(
        out.contains("pg_addr = \"127.0.0.1:7001\"") && out.contains("work_mem = \"16MB\""),
        "{out}"
    );
    let (_, out, _) = print_config(&["--config", f, "--pg-addr", "127.0.0.1:7002"], &env);
    assert!(out.contains("pg_addr = \"127.0.0.1:7002\""), "{out}");
    // The config file itself may come from the environment.
    let (_, out, _) = print_config(&[], &[("QUBEDB_CONFIG", f)]);
    assert!(out.contains("pg_addr = \"127.0.0.1:7000\""), "{out}");
    // Without a file: defaults.
    let (_, out, _) = print_config(&[], &[]);
    assert!(
        out.contains("pg_addr = \"127.0.0.1:5433\"") && out.contains("auth = \"trust\""),
        "{out}"
    );
}

#[test]
fn bad_settings_are_errors_that_name_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "pg_addr = \"127.0.0.1:7000\"\nbogus_key = 1\n").unwrap();
    let (code, _, err) = print_config(&["--config", file.to_str().unwrap()], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("bogus_key"), "{err}");
    std::fs::write(&file, "max_connections = \"many\"\n").unwrap();
    let (code, _, err) = print_config(&["--config", file.to_str().unwrap()], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("max_connections"), "{err}");
    let (code, _, err) = print_config(&["--config", "/nonexistent/q.toml"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/q.toml"), "{err}");
    let (code, _, err) = print_config(&["--auth", "md5"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("md5"), "{err}");
    let (code, _, err) = print_config(&["--tls-cert", "a.pem"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("tls_key"), "{err}");
    // Values the engine checks: when the server starts.
    let (code, _, err) = qubedb(&[
        "serve",
        "--memory",
        "--pg-addr",
        "127.0.0.1:0",
        "--http-addr",
        "127.0.0.1:0",
        "--work-mem",
        "1kB",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("work_mem"), "{err}");
    let (code, _, err) = qubedb(&[
        "serve",
        "--memory",
        "--pg-addr",
        "127.0.0.1:0",
        "--http-addr",
        "127.0.0.1:0",
        "--tls-cert",
        "/nonexistent/c.pem",
        "--tls-key",
        "/nonexistent/k.pem",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/c.pem"), "{err}");
}

/// A started server: the child and the PostgreSQL port it printed. Its
/// standard error is drained by a thread (into the returned handle).
fn start(data: &std::path::Path) -> (Child, u16, std::thread::JoinHandle<String>) {
    start_with(data, &[])
}

/// `start` with more flags.
fn start_with(
    data: &std::path::Path,
    extra: &[&str],
) -> (Child, u16, std::thread::JoinHandle<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_qubedb"))
        .args(["serve", "--data"])
        .arg(data)
        .args(["--pg-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-level", "info"])
        .args(extra)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    let port = loop {
        let Some(Ok(line)) = lines.next() else {
            panic!("the server stopped before listening:\n{seen}");
        };
        seen.push_str(&line);
        seen.push('\n');
        if let Some(rest) = line.split("PostgreSQL protocol on ").nth(1) {
            let addr = rest.split(',').next().unwrap();
            break addr.rsplit(':').next().unwrap().parse::<u16>().unwrap();
        }
    };
    let drain = std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            seen.push_str(&l);
            seen.push('\n');
        }
        seen
    });
    (child, port, drain)
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(ok.success());
}

async fn connect(port: u16) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=qubedb dbname=qubedb"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_cleanly_and_committed_data_survives() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, port, drain) = start(dir.path());
    let c = connect(port).await;
    c.batch_execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2), (3)")
        .await
        .unwrap();
    // An open transaction that never commits.
    c.batch_execute("BEGIN; INSERT INTO t VALUES (99)").await.unwrap();
    // A statement running while the signal comes: it finishes, or is
    // ended with 57P01; either way the server exits cleanly.
    let busy = connect(port).await;
    let running = tokio::spawn(async move {
        busy.query_one("SELECT count(*) FROM generate_series(1, 2000000)", &[]).await
    });
    sigterm(&child);
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    let log = drain.join().unwrap();
    assert!(status.success(), "exit status {status:?}\n{log}");
    assert!(log.contains("stopped"), "{log}");
    match running.await.unwrap() {
        Ok(r) => assert_eq!(r.get::<_, i64>(0), 2_000_000),
        Err(e) => {
            let code = e.as_db_error().map(|d| d.code().code().to_string());
            assert!(code.as_deref() == Some("57P01") || e.is_closed(), "{e}");
        }
    }
    // The connected client learns that the server went away.
    assert!(c.query_one("SELECT 1", &[]).await.is_err());

    let (mut child, port, drain) = start(dir.path());
    let c = connect(port).await;
    let rows = c.query("SELECT id FROM t ORDER BY id", &[]).await.unwrap();
    let ids: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, [1, 2, 3]);
    sigterm(&child);
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    let log = drain.join().unwrap();
    assert!(status.success(), "{log}");
}

/// shared_buffers sizes the buffer pool: flag > environment > file >
/// PostgreSQL's default of 128MB; a bad or too small size is an error at
/// start; a session can SHOW it but not SET it (55P02), and a server with
/// a small pool still loads and reads back more data than fits in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_buffers_sizes_the_buffer_pool() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("q.toml");
    std::fs::write(&file, "shared_buffers = \"256MB\"\n").unwrap();
    let f = file.to_str().unwrap();
    let (_, out, _) = print_config(&[], &[]);
    assert!(out.lines().any(|l| l == "shared_buffers = \"128MB\""), "{out}");
    let (_, out, _) = print_config(&["--config", f], &[]);
    assert!(out.lines().any(|l| l == "shared_buffers = \"256MB\""), "{out}");
    let env = [("QUBEDB_SHARED_BUFFERS", "1GB")];
    let (_, out, _) = print_config(&["--config", f], &env);
    assert!(out.lines().any(|l| l == "shared_buffers = \"1GB\""), "{out}");
    let (_, out, _) = print_config(&["--config", f, "--shared-buffers", "512kB"], &env);
    assert!(out.lines().any(|l| l == "shared_buffers = \"512kB\""), "{out}");
    for bad in ["lots", "100kB", "-1MB", "12XB"] {
        let (code, _, err) = print_config(&[&format!("--shared-buffers={bad}")], &[]);
        assert_eq!(code, 2, "{bad}: {err}");
        assert!(err.contains("shared_buffers"), "{bad}: {err}");
    }

    let data = dir.path().join("data");
    let (mut child, port, drain) = start_with(&data, &["--shared-buffers", "1MB"]);
    let c = connect(port).await;
    let shown: String = c.query_one("SHOW shared_buffers", &[]).await.unwrap().get(0);
    assert_eq!(shown, "1MB");
    let e = c.batch_execute("SET shared_buffers = '1GB'").await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("55P02"), "{e}");
    let shown: String =
        c.query_one("SELECT current_setting('shared_buffers')", &[]).await.unwrap().get(0);
    assert_eq!(shown, "1MB");
    // About 4 MB of rows through a 1 MB pool.
    c.batch_execute(
        "CREATE TABLE big (id int PRIMARY KEY, pad text); \
         INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g",
    )
    .await
    .unwrap();
    let r = c.query_one("SELECT count(*), sum(length(pad)) FROM big", &[]).await.unwrap();
    assert_eq!((r.get::<_, i64>(0), r.get::<_, i64>(1)), (20_000, 4_000_000));
    sigterm(&child);
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    let log = drain.join().unwrap();
    assert!(status.success(), "exit status {status:?}\n{log}");
}
