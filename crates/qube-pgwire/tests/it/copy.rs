//! COPY through the wire protocol: tokio-postgres's `copy_in`/`copy_out`
//! (extended protocol), raw simple-query COPY for CopyFail, protocol
//! violations and disconnects, and psql's `\copy` in both directions.

use std::pin::pin;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio_postgres::Client;

use crate::TestServer;
use crate::raw::{Raw, error_field, tags};

async fn copy_in(c: &Client, sql: &str, chunks: &[&str]) -> Result<u64, tokio_postgres::Error> {
    let sink = c.copy_in::<_, Bytes>(sql).await?;
    let mut sink = pin!(sink);
    for chunk in chunks {
        sink.send(Bytes::from(chunk.to_string())).await?;
    }
    sink.as_mut().finish().await
}

async fn copy_out(c: &Client, sql: &str) -> String {
    let stream = c.copy_out(sql).await.expect(sql);
    let mut stream = pin!(stream);
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.expect("copy data"));
    }
    String::from_utf8(out).expect("utf8")
}

async fn count(c: &Client, table: &str) -> i64 {
    c.query_one(&format!("SELECT count(*) FROM {table}"), &[]).await.expect("count").get(0)
}

fn code(e: &tokio_postgres::Error) -> String {
    e.as_db_error().map(|d| d.code().code().to_string()).unwrap_or_else(|| format!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_and_out_in_text_and_csv() {
    let srv = TestServer::start().await;
    let c = srv.connect().await;
    c.batch_execute(
        "CREATE TABLE t (id integer PRIMARY KEY, name text, n numeric, d date, tag text DEFAULT 'dflt')",
    )
    .await
    .expect("create");
    // Lines split at odd places across CopyData messages; escapes, NULL.
    let n = copy_in(
        &c,
        "COPY t (id, name, n, d) FROM STDIN",
        &[
            "1\ta\\tb\\\\c\t1.5\t2024-01-02\n2\t\\N\t",
            "\\N\t\\N\n3\tline\\nbreak\\x41\\101\t-2\t2000-02-29\n4\tlast\t0\t1999-12-31",
        ],
    )
    .await
    .expect("copy in");
    assert_eq!(n, 4);
    let rows = c.query("SELECT id, name, tag FROM t ORDER BY id", &[]).await.expect("select");
    let got: Vec<(i32, Option<String>, String)> =
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert_eq!(got[0], (1, Some("a\tb\\c".into()), "dflt".into()));
    assert_eq!(got[1], (2, None, "dflt".into()));
    assert_eq!(got[2].1.as_deref(), Some("line\nbreakAA"));
    let text = copy_out(&c, "COPY t (id, name, d) TO STDOUT").await;
    assert_eq!(
        text,
        "1\ta\\tb\\\\c\t2024-01-02\n2\t\\N\t\\N\n3\tline\\nbreakAA\t2000-02-29\n4\tlast\t1999-12-31\n"
    );
    let csv = copy_out(
        &c,
        "COPY (SELECT id, name FROM t WHERE id <= 2 ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)",
    )
    .await;
    // Tabs and backslashes need no quotes in CSV (as in PostgreSQL).
    assert_eq!(csv, "id,name\n1,a\tb\\c\n2,\n");
    // CSV in: quotes, embedded newline and delimiter, empty vs NULL, header.
    c.batch_execute("CREATE TABLE c (a integer, b text, e text)").await.expect("create c");
    let n = copy_in(
        &c,
        "COPY c FROM STDIN WITH CSV HEADER",
        &["a,b,e\n1,\"x,\"\"y\"\"\n", "z\",\"\"\n2,,plain\r\n"],
    )
    .await
    .expect("csv in");
    assert_eq!(n, 2);
    let rows = c.query("SELECT b, e FROM c ORDER BY a", &[]).await.expect("c rows");
    assert_eq!(rows[0].get::<_, Option<String>>(0).as_deref(), Some("x,\"y\"\nz"));
    assert_eq!(rows[0].get::<_, Option<String>>(1).as_deref(), Some(""));
    assert_eq!(rows[1].get::<_, Option<String>>(0), None);
    // Options in the old syntax and with a different delimiter and NULL.
    let n = copy_in(&c, "COPY c FROM STDIN DELIMITER '|' NULL 'nil'", &["3|nil|q\n\\.\nignored"])
        .await
        .expect("legacy options");
    assert_eq!(n, 1);
    assert_eq!(count(&c, "c").await, 3);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_errors_roll_back_and_name_the_line() {
    let srv = TestServer::start().await;
    let c = srv.connect().await;
    c.batch_execute("CREATE TABLE t (a integer PRIMARY KEY, b text NOT NULL)")
        .await
        .expect("create");
    let cases: &[(&str, &str, &str)] = &[
        ("1\tx\nzz\ty\n", "22P02", "COPY t, line 2, column a: \"zz\""),
        ("1\tx\n2\ty\tz\n", "22P04", "COPY t, line 2"),
        ("1\tx\n2\n", "22P04", "COPY t, line 2"),
        ("1\tx\n1\ty\n", "23505", "COPY t, line 2"),
        ("1\t\\N\n", "23502", "COPY t, line 1"),
    ];
    for (data, want, context) in cases {
        let e = copy_in(&c, "COPY t FROM STDIN", &[data]).await.expect_err(data);
        assert_eq!(code(&e), *want, "{data}: {e:?}");
        let db = e.as_db_error().expect("db error");
        assert_eq!(db.where_(), Some(*context), "{data}");
        assert_eq!(count(&c, "t").await, 0, "{data}: nothing stays");
    }
    // Errors before the copy starts: the same connection goes on (see
    // `copy_in_failing_before_it_starts_keeps_the_connection`).
    let e = copy_in(&c, "COPY t (a, b, a) FROM STDIN", &[""]).await.expect_err("dup column");
    assert_eq!(code(&e), "42701");
    let e = copy_in(&c, "COPY t FROM STDIN (FORMAT binary)", &[""]).await.expect_err("binary");
    assert_eq!(code(&e), "0A000");
    let mut r = Raw::connect(srv.addr).await;
    assert_eq!(error_field(&r.query("COPY nope FROM STDIN").await, b'C').as_deref(), Some("42P01"));
    assert_eq!(tags(&r.query("SELECT 1").await), vec!["SELECT 1"]);
    // Inside a transaction block: the COPY's rows go with the block.
    c.batch_execute("BEGIN").await.expect("begin");
    copy_in(&c, "COPY t FROM STDIN", &["7\tseven\n"]).await.expect("copy in block");
    c.batch_execute("ROLLBACK").await.expect("rollback");
    assert_eq!(count(&c, "t").await, 0);
    c.batch_execute("BEGIN").await.expect("begin");
    let e = copy_in(&c, "COPY t FROM STDIN", &["x\ty\n"]).await.expect_err("bad in block");
    assert_eq!(code(&e), "22P02");
    let e = c.simple_query("SELECT 1").await.expect_err("block failed");
    assert_eq!(code(&e), "25P02");
    c.batch_execute("ROLLBACK").await.expect("rollback");
    copy_in(&c, "COPY t FROM STDIN", &["8\teight\n"]).await.expect("after rollback");
    assert_eq!(count(&c, "t").await, 1);
    srv.stop().await;
}

/// tokio-postgres's `copy_in` of a COPY that fails before copy-in starts:
/// the error arrives at once (as from PostgreSQL), then the dropped sink
/// sends CopyFail and Sync, whose ReadyForQuery the client does not
/// expect; the server leaves that Sync unanswered, so the connection stays
/// usable (against PostgreSQL 15 tokio-postgres loses it here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_failing_before_it_starts_keeps_the_connection() {
    let srv = TestServer::start().await;
    let c = srv.connect().await;
    c.batch_execute("CREATE TABLE t (a integer, b text)").await.expect("create");
    for (sql, want) in [
        ("COPY nosuchtable FROM STDIN", "42P01"),
        ("COPY t (nope) FROM STDIN", "42703"),
        ("COPY t FROM STDIN (FORMAT binary)", "0A000"),
    ] {
        let e = c.copy_in::<_, Bytes>(sql).await.err().expect(sql);
        assert_eq!(code(&e), want, "{sql}");
        assert_eq!(count(&c, "t").await, 0, "{sql}: the connection answers");
    }
    // Twice in a row, then a good COPY and a query on the same client.
    for _ in 0..2 {
        let e = c.copy_in::<_, Bytes>("COPY nosuchtable FROM STDIN").await.err().expect("fails");
        assert_eq!(code(&e), "42P01");
    }
    assert_eq!(copy_in(&c, "COPY t FROM STDIN", &["1\tone\n"]).await.expect("copy"), 1);
    assert_eq!(count(&c, "t").await, 1);
    // In a transaction block the failure aborts it, as usual.
    c.batch_execute("BEGIN").await.expect("begin");
    let e = c.copy_in::<_, Bytes>("COPY nosuchtable FROM STDIN").await.err().expect("fails");
    assert_eq!(code(&e), "42P01");
    let e = c.simple_query("SELECT 1").await.expect_err("block failed");
    assert_eq!(code(&e), "25P02");
    c.batch_execute("ROLLBACK").await.expect("rollback");
    assert_eq!(count(&c, "t").await, 1);

    // Over a raw socket: without stray copy messages every Sync is
    // answered; a stray CopyFail with no failed COPY before it is ignored
    // and its Sync answered, as PostgreSQL does.
    let mut r = Raw::connect(srv.addr).await;
    let msgs = r.extended("COPY nosuchtable FROM STDIN", &[], &[], &[]).await;
    assert_eq!(error_field(&msgs, b'C').as_deref(), Some("42P01"));
    r.send(b'S', b"").await;
    assert_eq!(r.until_ready().await.len(), 1, "a plain Sync is answered");
    r.send(b'f', b"stray\0").await;
    r.send(b'S', b"").await;
    assert_eq!(r.until_ready().await.len(), 1, "no failed COPY: its Sync is answered");
    assert_eq!(tags(&r.query("SELECT 1").await), vec!["SELECT 1"]);
    // After a failed COPY, CopyData then CopyDone and Sync: the Sync is the
    // copy's and gets no answer; the next query's does.
    let msgs = r.extended("COPY nosuchtable FROM STDIN", &[], &[], &[]).await;
    assert_eq!(error_field(&msgs, b'C').as_deref(), Some("42P01"));
    r.send(b'd', b"1\tx\n").await;
    r.send(b'c', b"").await;
    r.send(b'S', b"").await;
    let msgs = r.query("SELECT 2").await;
    assert_eq!(tags(&msgs), vec!["SELECT 1"]);
    assert_eq!(msgs.iter().filter(|m| m.0 == b'Z').count(), 1);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_fail_violations_and_disconnects() {
    let srv = TestServer::start().await;
    let c = srv.connect().await;
    c.batch_execute("CREATE TABLE t (a integer, b text)").await.expect("create");
    // CopyFail: 57014 and nothing inserted; the session goes on.
    let mut r = Raw::connect(srv.addr).await;
    r.send_query("COPY t FROM STDIN").await;
    assert_eq!(r.read_msg().await.expect("CopyInResponse").0, b'G');
    r.send(b'd', b"1\tone\n").await;
    r.send(b'f', b"client gave up\0").await;
    let msgs = r.until_ready().await;
    assert_eq!(error_field(&msgs, b'C').as_deref(), Some("57014"));
    assert_eq!(error_field(&msgs, b'M').as_deref(), Some("COPY from stdin failed: client gave up"));
    assert_eq!(tags(&r.query("SELECT 1").await), vec!["SELECT 1"]);
    assert_eq!(count(&c, "t").await, 0);
    // A Query in the middle of copy-in: 08P01, the copy fails, the
    // connection stays; Flush and Sync are ignored.
    r.send_query("COPY t FROM STDIN").await;
    assert_eq!(r.read_msg().await.expect("CopyInResponse").0, b'G');
    r.send(b'd', b"2\ttwo\n").await;
    r.send(b'H', b"").await;
    r.send(b'S', b"").await;
    r.send_query("SELECT 1").await;
    let msgs = r.until_ready().await;
    assert_eq!(error_field(&msgs, b'C').as_deref(), Some("08P01"));
    assert_eq!(tags(&r.query("SELECT 2").await), vec!["SELECT 1"]);
    // Stray copy messages after a failed COPY are ignored.
    r.send(b'd', b"junk\n").await;
    r.send(b'c', b"").await;
    assert_eq!(tags(&r.query("SELECT 3").await), vec!["SELECT 1"]);
    assert_eq!(count(&c, "t").await, 0);
    // A good COPY over the raw socket, split in the middle of a line.
    r.send_query("COPY t FROM STDIN").await;
    assert_eq!(r.read_msg().await.expect("CopyInResponse").0, b'G');
    r.send(b'd', b"5\tfi").await;
    r.send(b'd', b"ve\n6\tsix\n").await;
    r.send(b'c', b"").await;
    assert_eq!(tags(&r.until_ready().await), vec!["COPY 2"]);
    c.batch_execute("DELETE FROM t").await.expect("delete");
    // A client that disconnects in the middle of COPY FROM: rolled back.
    let mut r = Raw::connect(srv.addr).await;
    r.send_query("COPY t FROM STDIN").await;
    assert_eq!(r.read_msg().await.expect("CopyInResponse").0, b'G');
    r.send(b'd', b"3\tthree\n4\tfour\n").await;
    drop(r);
    srv.assert_serving().await;
    // The dropped session's rollback happens as its task ends.
    for _ in 0..100 {
        if count(&c, "t").await == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(count(&c, "t").await, 0);
    // ... and in the middle of COPY TO of a big result.
    c.batch_execute("INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 50000) g")
        .await
        .expect("fill");
    let mut r = Raw::connect(srv.addr).await;
    r.send_query("COPY t TO STDOUT").await;
    assert_eq!(r.read_msg().await.expect("CopyOutResponse").0, b'H');
    assert_eq!(r.read_msg().await.expect("CopyData").0, b'd');
    drop(r);
    srv.assert_serving().await;
    assert_eq!(count(&c, "t").await, 50000);
    // A COPY that reads the whole big table out.
    let all = copy_out(&c, "COPY t TO STDOUT (FORMAT csv)").await;
    assert_eq!(all.lines().count(), 50000);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_backslash_copy_both_ways() {
    let Some(bin) = crate::psql::find_psql() else {
        if std::env::var_os("CI").is_some() {
            panic!("psql is missing in CI");
        }
        eprintln!("skipped: psql missing (psql_backslash_copy_both_ways)");
        return;
    };
    let srv = TestServer::start().await;
    let c = srv.connect().await;
    c.batch_execute("CREATE TABLE t (a integer, b text, c boolean)").await.expect("create");
    let dir = std::env::temp_dir().join(format!("qube-copy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let input = dir.join("in.csv");
    let output = dir.join("out.csv");
    let mut data = String::from("a,b,c\n");
    for i in 1..=2000 {
        data.push_str(&format!("{i},\"row {i}, quoted\",{}\n", i % 2 == 0));
    }
    std::fs::write(&input, &data).expect("write input");
    let run = |cmd: String| {
        let out = std::process::Command::new(&bin)
            .args(["-X", "-v", "ON_ERROR_STOP=1", "-c", &cmd])
            .arg(format!("host=127.0.0.1 port={} user=qubedb dbname=qubedb", srv.addr.port()))
            .output()
            .expect("psql runs");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
    };
    let (ok, stdout, stderr) = run(format!("\\copy t from '{}' with csv header", input.display()));
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "COPY 2000");
    let (ok, _, stderr) = run(format!(
        "\\copy (select * from t order by a) to '{}' with (format csv, header)",
        output.display()
    ));
    assert!(ok, "{stderr}");
    let back = std::fs::read_to_string(&output).expect("read output");
    assert_eq!(back, data.replace(",true\n", ",t\n").replace(",false\n", ",f\n"));
    // A bad line: psql reports the error with its context; nothing stays.
    std::fs::write(&input, "1\tx\tt\nnot a number\ty\tf\n").expect("write bad input");
    let (ok, _, stderr) = run(format!("\\copy t from '{}'", input.display()));
    assert!(!ok);
    assert!(stderr.contains("invalid input syntax for type integer"), "{stderr}");
    assert!(stderr.contains("COPY t, line 2, column a"), "{stderr}");
    assert_eq!(count(&c, "t").await, 2000);
    let _ = std::fs::remove_dir_all(&dir);
    srv.stop().await;
}
