//! `qubedb sql --url` and `qubedb shell --url` against a `qubedb serve`
//! started here on loopback ports, and `/metrics` counting the statements
//! that arrive over the PostgreSQL protocol.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};

use crate::qubedb;

/// A `qubedb serve` child on free loopback ports, stopped when dropped.
pub struct Server {
    child: Child,
    pub pg: u16,
    pub http: u16,
}

impl Server {
    /// Starts `qubedb serve ARGS` (ports 0) and reads the ports it logs.
    pub fn start(args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_qubedb"))
            .arg("serve")
            .args(args)
            .args(["--pg-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-level", "info"])
            .env_remove("QUBEDB_CONFIG")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut seen = String::new();
        let port = |line: &str, after: &str| -> Option<u16> {
            let rest = line.split(after).nth(1)?;
            let addr = rest.split([',', ' ']).next()?;
            addr.rsplit(':').next()?.parse().ok()
        };
        let (pg, http) = loop {
            let Some(Ok(line)) = lines.next() else {
                panic!("the server stopped before listening:\n{seen}");
            };
            seen.push_str(&line);
            seen.push('\n');
            if let (Some(pg), Some(http)) =
                (port(&line, "PostgreSQL protocol on "), port(&line, "HTTP on "))
            {
                break (pg, http);
            }
        };
        // Keep draining the log so the server never blocks on its stderr.
        std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
        Server { child, pg, http }
    }

    pub fn url(&self) -> String {
        format!("postgres://qubedb@127.0.0.1:{}/qubedb", self.pg)
    }

    /// `GET /metrics`: the exposition text.
    pub fn metrics(&self) -> String {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.http)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(!head.to_ascii_lowercase().contains("chunked"), "{head}");
        body.to_string()
    }
}

impl Server {
    /// Kills the server at once (SIGKILL), as a crash would.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

/// Runs `qubedb ARGS` with extra environment (and no QUBEDB_/PG settings
/// of the caller's), feeding `stdin`.
fn run(args: &[&str], env: &[(&str, &str)], stdin: &str) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qubedb"));
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("QUBEDB_") || k.starts_with("PG"))
    {
        cmd.env_remove(k);
    }
    // The shell's history goes to a scratch directory.
    let home = tempfile::tempdir().unwrap();
    cmd.env("HOME", home.path());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The value of the exposition line that starts with `series `.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} missing in\n{text}"))
        .parse()
        .unwrap()
}

const SCRIPT: &str = "\
CREATE TABLE t (id int PRIMARY KEY, name text, price numeric, ok boolean);
INSERT INTO t VALUES (1, 'alice', 1.5, true), (10, NULL, -20.25, false);
-- a comment; with a semicolon
SELECT id, name, price, ok FROM t ORDER BY id; SELECT count(*) AS n,
  max(name) FROM t;
UPDATE t SET name = 'bob' WHERE id = 10;
DROP TABLE IF EXISTS nope;
SELECT 'a' || chr(10) || 'b' AS two_lines, NULL::int AS nothing;
DELETE FROM t WHERE id = 1;
";

#[test]
fn sql_url_prints_what_the_embedded_path_prints() {
    let srv = Server::start(&["--memory"]);
    let url = srv.url();
    let (code, remote, remote_err) = run(&["sql", "--url", &url, "-c", SCRIPT], &[], "");
    assert_eq!(code, 0, "{remote}{remote_err}");
    let (code, embedded, embedded_err) = run(&["sql", "--memory", "-c", SCRIPT], &[], "");
    assert_eq!(code, 0, "{embedded}{embedded_err}");
    assert_eq!(remote, embedded);
    assert_eq!(remote_err, embedded_err);
    assert!(
        remote.starts_with(
            "CREATE TABLE\nINSERT 0 2\n id | name  | price  | ok \n----+-------+--------+----\n  \
             1 | alice |    1.5 | t\n 10 |       | -20.25 | f\n(2 rows)\n\n n |  max  \n---+-------\n \
             2 | alice\n(1 row)\n\nUPDATE 1\nDROP TABLE\n"
        ),
        "{remote}"
    );
    assert!(remote.ends_with("DELETE 1\n"), "{remote}");
    assert!(
        remote_err.contains("NOTICE:  00000: table \"nope\" does not exist, skipping"),
        "{remote_err}"
    );
    // -f, and the data is on the server.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("q.sql");
    std::fs::write(&f, "SELECT id, name FROM t;\n").unwrap();
    let (code, out, err) = run(&["sql", "--url", &url, "-f", f.to_str().unwrap()], &[], "");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, " id | name \n----+------\n 10 | bob\n(1 row)\n\n");
    // The URL from QUBEDB_URL, the script from standard input, timing.
    let (code, out, err) =
        run(&["sql", "-f", "-", "--timing"], &[("QUBEDB_URL", &url)], "SELECT 1 AS one;");
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(" one \n-----\n   1\n(1 row)\n\nTime: "), "{out}");
    // libpq's key=value form.
    let conninfo = format!("host=127.0.0.1 port={} user=qubedb dbname=qubedb", srv.pg);
    let (code, out, err) = run(&["sql", "--url", &conninfo, "-c", "SELECT 2 AS two"], &[], "");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, " two \n-----\n   2\n(1 row)\n\n");
}

#[test]
fn sql_url_stops_at_the_first_error_with_its_sqlstate() {
    let srv = Server::start(&["--memory"]);
    let url = srv.url();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("s.sql");
    std::fs::write(
        &script,
        "CREATE TABLE a (x int);\nINSERT INTO a VALUES (1);\nSELECT *\n  FROM nope;\n\
         INSERT INTO a VALUES (2);\n",
    )
    .unwrap();
    let (code, out, err) = run(&["sql", "--url", &url, "-f", script.to_str().unwrap()], &[], "");
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(out, "CREATE TABLE\nINSERT 0 1\n");
    assert!(err.starts_with("ERROR:  42P01: relation \"nope\" does not exist"), "{err}");
    assert!(err.contains("LINE 2:   FROM nope\n"), "{err}");
    let (code, out, _) = run(&["sql", "--url", &url, "-c", "SELECT count(*) FROM a"], &[], "");
    assert_eq!(code, 0);
    assert!(out.contains("     1\n(1 row)"), "{out}");
    // A syntax error, and an error with a DETAIL.
    let (code, _, err) = run(&["sql", "--url", &url, "-c", "SELEC 1"], &[], "");
    assert_eq!(code, 1);
    assert!(err.starts_with("ERROR:  42601: syntax error"), "{err}");
    let (code, _, err) = run(
        &[
            "sql",
            "--url",
            &url,
            "-c",
            "CREATE TABLE k (id int PRIMARY KEY); INSERT INTO k VALUES (1), (1)",
        ],
        &[],
        "",
    );
    assert_eq!(code, 1);
    assert!(err.starts_with("ERROR:  23505: "), "{err}");
    assert!(err.contains("DETAIL:  Key (id)=(1) already exists."), "{err}");
}

#[test]
fn transactions_span_statements_over_the_wire() {
    let srv = Server::start(&["--memory"]);
    let url = srv.url();
    let ok = |sql: &str| {
        let (code, out, err) = run(&["sql", "--url", &url, "-c", sql], &[], "");
        assert_eq!(code, 0, "{sql}: {out}{err}");
        out
    };
    ok("CREATE TABLE acct (id int PRIMARY KEY, bal int)");
    let out = ok("BEGIN; INSERT INTO acct VALUES (1, 100); SELECT count(*) FROM acct; ROLLBACK; \
                  SELECT count(*) FROM acct");
    assert_eq!(
        out,
        "BEGIN\nINSERT 0 1\n count \n-------\n     1\n(1 row)\n\nROLLBACK\n count \n-------\n     0\n(1 row)\n\n"
    );
    ok("BEGIN; INSERT INTO acct VALUES (1, 100); INSERT INTO acct VALUES (2, 50); COMMIT");
    // An error inside a block stops the script; the block never commits.
    let (code, out, err) = run(
        &["sql", "--url", &url, "-c", "BEGIN; UPDATE acct SET bal = 0; SELECT 1/0; COMMIT"],
        &[],
        "",
    );
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(out, "BEGIN\nUPDATE 2\n");
    assert!(err.starts_with("ERROR:  22012: division by zero"), "{err}");
    assert!(ok("SELECT sum(bal) AS s FROM acct").contains(" 150\n"));
}

#[test]
fn the_interactive_shell_reads_statements_across_lines() {
    let srv = Server::start(&["--memory"]);
    let url = srv.url();
    let input = "CREATE TABLE s (a int);\nBEGIN;\nINSERT INTO s\n  VALUES (1), (2);\n\
                 SELECT sum(a)\n  AS total FROM s; COMMIT;\nSELECT nope;\n\\timing on\n\
                 SELECT 1 AS x;\n\\q\n";
    for target in [vec!["--url", url.as_str()], vec!["--memory"]] {
        let mut args = vec!["shell"];
        args.extend(&target);
        let (code, out, err) = run(&args, &[], input);
        assert_eq!(code, 0, "{target:?}: {out}{err}");
        for piece in [
            "CREATE TABLE\n",
            "BEGIN\n",
            "INSERT 0 2\n",
            " total \n-------\n     3\n(1 row)\n",
            "COMMIT\n",
            "Timing is on.\n",
            " x \n---\n 1\n(1 row)\n\nTime: ",
        ] {
            assert!(out.contains(piece), "{target:?}: {piece:?} in\n{out}");
        }
        // The shell goes on after an error.
        assert!(err.contains("ERROR:  42703: column \"nope\" does not exist"), "{target:?}: {err}");
    }
}

#[test]
fn connection_failures_are_clear_errors() {
    // A port nothing listens on.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let url = format!("postgres://qubedb@127.0.0.1:{port}/qubedb");
    for args in [vec!["sql", "--url", &url, "-c", "SELECT 1"], vec!["shell", "--url", &url]] {
        let (code, out, err) = run(&args, &[], "");
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.starts_with("qubedb: cannot connect to qubedb@127.0.0.1:"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // Not a connection string.
    let (code, _, err) =
        run(&["sql", "--url", "postgres://u@127.0.0.1:notaport/x", "-c", "SELECT 1"], &[], "");
    assert_eq!(code, 2);
    assert!(err.contains("invalid connection string"), "{err}");
    // --url with a data directory is a usage error.
    let (code, _, err) = run(&["sql", "--url", &url, "--memory", "-c", "SELECT 1"], &[], "");
    assert_eq!(code, 2);
    assert!(err.contains("--url or --data/--memory"), "{err}");
    // … but on the command line they win over QUBEDB_URL.
    let (code, out, err) =
        run(&["sql", "--memory", "-c", "SELECT 1 AS one"], &[("QUBEDB_URL", &url)], "");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("   1\n(1 row)"), "{out}");
    // TLS is refused plainly.
    let (code, _, err) =
        run(&["sql", "--url", &format!("{url}?sslmode=require"), "-c", "SELECT 1"], &[], "");
    assert_eq!(code, 2);
    assert!(err.contains("TLS"), "{err}");
    // A server that refuses the session: no such database, no such role.
    let srv = Server::start(&["--memory"]);
    let (code, _, err) = run(
        &[
            "sql",
            "--url",
            &format!("postgres://qubedb@127.0.0.1:{}/nodb", srv.pg),
            "-c",
            "SELECT 1",
        ],
        &[],
        "",
    );
    assert_eq!(code, 2);
    assert!(err.contains("3D000") && err.contains("\"nodb\""), "{err}");
    let (code, _, err) = run(
        &[
            "sql",
            "--url",
            &format!("postgres://ghost@127.0.0.1:{}/qubedb", srv.pg),
            "-c",
            "SELECT 1",
        ],
        &[],
        "",
    );
    assert_eq!(code, 2);
    assert!(err.contains("28000"), "{err}");
}

#[test]
fn a_lost_server_ends_the_shell_with_status_2() {
    let mut srv = Server::start(&["--memory"]);
    let home = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_qubedb"))
        .args(["shell", "--url", &srv.url()])
        .env("HOME", home.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    stdin.write_all(b"SELECT 41 + 1 AS answer;\n").unwrap();
    let mut seen = String::new();
    while !seen.contains("(1 row)") {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "the shell ended early: {seen}");
        seen.push_str(&line);
    }
    assert!(seen.contains("     42\n"), "{seen}");
    srv.kill();
    // The next statement finds the connection gone.
    let _ = stdin.write_all(b"SELECT 1;\n");
    drop(stdin);
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(2), "{rest}{err}");
    assert!(err.contains("the connection to the server was lost"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn passwords_from_the_url_or_pgpassword() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let (code, _, err) =
        qubedb(&["sql", "--data", data, "-c", "CREATE USER app PASSWORD 'p@ss w'"]);
    assert_eq!(code, 0, "{err}");
    let srv = Server::start(&["--data", data, "--auth", "scram-sha-256"]);
    let base = format!("127.0.0.1:{}/qubedb", srv.pg);
    let sql = ["-c", "SELECT current_user AS u"];
    // Percent-encoded in the URL.
    let url = format!("postgres://app:p%40ss%20w@{base}");
    let (code, out, err) = run(&[&["sql", "--url", &url][..], &sql].concat(), &[], "");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(" app\n(1 row)"), "{out}");
    // From PGPASSWORD.
    let url = format!("postgres://app@{base}");
    let (code, out, err) =
        run(&[&["sql", "--url", &url][..], &sql].concat(), &[("PGPASSWORD", "p@ss w")], "");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(" app\n(1 row)"), "{out}");
    // Wrong, and missing.
    let (code, _, err) =
        run(&[&["sql", "--url", &url][..], &sql].concat(), &[("PGPASSWORD", "nope")], "");
    assert_eq!(code, 2);
    assert!(err.contains("28P01"), "{err}");
    let (code, _, err) = run(&[&["sql", "--url", &url][..], &sql].concat(), &[], "");
    assert_eq!(code, 2);
    assert!(err.contains("PGPASSWORD"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_statements_of_the_wire_protocol() {
    let srv = Server::start(&["--memory"]);
    let url = srv.url();
    let before = srv.metrics();
    assert_eq!(value(&before, "qubedb_queries_total{interface=\"pg\",kind=\"select\"}"), 0.0);
    let script = "CREATE TABLE m (id int PRIMARY KEY, v int); \
                  INSERT INTO m VALUES (1, 0), (2, 0), (3, 0); SELECT * FROM m; \
                  UPDATE m SET v = 1 WHERE id < 3; DELETE FROM m WHERE id = 3; \
                  BEGIN; INSERT INTO m VALUES (9, 9); ROLLBACK; SELECT * FROM nope";
    let (code, _, _) = run(&["sql", "--url", &url, "-c", script], &[], "");
    assert_eq!(code, 1);
    // Two transactions write the same row: the second to commit its
    // update fails with 40001 (a conflict).
    let connect = || async {
        let (c, conn) = tokio_postgres::connect(
            &format!("host=127.0.0.1 port={} user=qubedb dbname=qubedb", srv.pg),
            tokio_postgres::NoTls,
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        c
    };
    let (a, b) = (connect().await, connect().await);
    a.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT * FROM m").await.unwrap();
    b.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT * FROM m").await.unwrap();
    a.batch_execute("UPDATE m SET v = 10 WHERE id = 1; COMMIT").await.unwrap();
    let e = b.batch_execute("UPDATE m SET v = 20 WHERE id = 1").await.unwrap_err();
    assert_eq!(e.as_db_error().map(|d| d.code().code()), Some("40001"), "{e}");
    b.batch_execute("ROLLBACK").await.unwrap();
    let text = srv.metrics();
    for (series, want) in [
        ("qubedb_queries_total{interface=\"pg\",kind=\"ddl\"}", 1.0),
        ("qubedb_queries_total{interface=\"pg\",kind=\"insert\"}", 2.0),
        ("qubedb_queries_total{interface=\"pg\",kind=\"update\"}", 2.0),
        ("qubedb_queries_total{interface=\"pg\",kind=\"delete\"}", 1.0),
        ("qubedb_rows_written_total{interface=\"pg\"}", 3.0 + 2.0 + 1.0 + 1.0 + 1.0),
        // The script's SELECT before the DELETE, then each client's.
        ("qubedb_rows_returned_total{interface=\"pg\"}", 3.0 + 2.0 + 2.0),
        ("qubedb_query_errors_total{interface=\"pg\"}", 2.0),
        ("qubedb_queries_total{interface=\"http\",kind=\"select\"}", 0.0),
        ("qubedb_transactions_total{outcome=\"conflicted\"}", 1.0),
    ] {
        assert_eq!(value(&text, series), want, "{series} in\n{text}");
    }
    // a and b (the script's connection may still be closing).
    assert!(value(&text, "qubedb_connections{interface=\"pg\"}") >= 2.0, "{text}");
    assert!(value(&text, "qubedb_sessions{interface=\"pg\"}") >= 2.0, "{text}");
    assert!(value(&text, "qubedb_sessions_total{interface=\"pg\"}") >= 3.0, "{text}");
    // SELECTs: the script's one and each client's one.
    assert_eq!(value(&text, "qubedb_queries_total{interface=\"pg\",kind=\"select\"}"), 3.0);
    // Every statement has a latency, failed ones too.
    let kinds: f64 = ["select", "insert", "update", "delete", "ddl", "other"]
        .iter()
        .map(|k| value(&text, &format!("qubedb_queries_total{{interface=\"pg\",kind=\"{k}\"}}")))
        .sum();
    let errors = value(&text, "qubedb_query_errors_total{interface=\"pg\"}");
    assert_eq!(
        value(&text, "qubedb_query_duration_seconds_count{interface=\"pg\"}"),
        kinds + errors
    );
    assert!(kinds >= 14.0, "{kinds}");
    assert_eq!(
        value(&text, "qubedb_query_duration_seconds_bucket{interface=\"pg\",le=\"+Inf\"}"),
        kinds + errors
    );
    let committed = value(&text, "qubedb_transactions_total{outcome=\"committed\"}");
    let before_committed = value(&before, "qubedb_transactions_total{outcome=\"committed\"}");
    // CREATE, INSERT, UPDATE, DELETE and a's block at least.
    assert!(committed >= before_committed + 5.0, "{before_committed} → {committed}");
    let rolled_back = value(&text, "qubedb_transactions_total{outcome=\"rolled_back\"}");
    assert!(
        rolled_back >= value(&before, "qubedb_transactions_total{outcome=\"rolled_back\"}") + 2.0
    );
}
