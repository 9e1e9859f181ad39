//! Sessions as others see them (pg_stat_activity, pg_cancel_backend,
//! pg_terminate_backend), and what a statement says besides its result
//! (NOTICE / WARNING messages, DETAIL and HINT of errors).

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::error::DbError;
use tokio_postgres::{AsyncMessage, Client, NoTls};

use crate::{TestServer, raw, simple_rows};

/// A client whose notices arrive on the returned channel.
async fn connect_with_notices(
    srv: &TestServer,
    app: &str,
) -> (Client, mpsc::UnboundedReceiver<DbError>) {
    let (client, mut conn) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user=qubedb dbname=qubedb application_name={app}",
            srv.addr.port()
        ),
        NoTls,
    )
    .await
    .expect("connect");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notice(n))) => {
                    let _ = tx.send(n);
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            }
        }
    });
    (client, rx)
}

/// Polls `sql` (one row, one text column) until it gives `want`.
async fn wait_for(c: &Client, sql: &str, want: &str) {
    for _ in 0..500 {
        let rows = simple_rows(c, sql).await;
        if rows.first().and_then(|r| r[0].as_deref()) == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{sql} never gave {want:?}");
}

/// The notices received so far.
fn drain(rx: &mut mpsc::UnboundedReceiver<DbError>) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    while let Ok(n) = rx.try_recv() {
        out.push((n.severity().to_string(), n.code().code().to_string(), n.message().to_string()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_stat_activity_shows_every_session_and_signals_reach_them() {
    let srv = TestServer::start().await;
    let (worker, _) = connect_with_notices(&srv, "worker").await;
    let (watcher, mut notices) = connect_with_notices(&srv, "watcher").await;
    let pid: i32 = worker.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    let own: i32 = watcher.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    assert_ne!(pid, own);

    // Both sessions, with who and where they are.
    let rows = simple_rows(
        &watcher,
        "SELECT pid, datname, usename, application_name, client_addr, client_port > 0, \
         backend_type, state, backend_start <= now() FROM pg_stat_activity ORDER BY pid",
    )
    .await;
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        rows,
        vec![
            vec![
                s(&pid.min(own).to_string()),
                s("qubedb"),
                s("qubedb"),
                s(if pid < own { "worker" } else { "watcher" }),
                s("127.0.0.1"),
                s("t"),
                s("client backend"),
                s(if pid < own { "idle" } else { "active" }),
                s("t"),
            ],
            vec![
                s(&pid.max(own).to_string()),
                s("qubedb"),
                s("qubedb"),
                s(if pid < own { "watcher" } else { "worker" }),
                s("127.0.0.1"),
                s("t"),
                s("client backend"),
                s(if pid < own { "active" } else { "idle" }),
                s("t"),
            ],
        ]
    );
    // The worker's last query stays visible while it is idle.
    let of_worker = format!("SELECT state || ':' || query FROM pg_stat_activity WHERE pid = {pid}");
    assert_eq!(
        simple_rows(&watcher, &of_worker).await,
        vec![vec![s("idle:SELECT pg_backend_pid()")]]
    );

    // A running query is seen with its text, then cancelled (57014).
    let sleeper = tokio::spawn(async move {
        let r = worker.simple_query("SELECT pg_sleep(60)").await;
        (worker, r)
    });
    wait_for(&watcher, &of_worker, "active:SELECT pg_sleep(60)").await;
    let times = simple_rows(
        &watcher,
        &format!(
            "SELECT xact_start IS NOT NULL, query_start >= backend_start, \
             state_change >= query_start FROM pg_stat_activity WHERE pid = {pid}"
        ),
    )
    .await;
    assert_eq!(times, vec![vec![s("t"), s("t"), s("t")]]);
    let ok: bool = watcher.query_one("SELECT pg_cancel_backend($1)", &[&pid]).await.unwrap().get(0);
    assert!(ok);
    let (worker, r) = sleeper.await.unwrap();
    let e = r.expect_err("cancelled");
    assert_eq!(e.code().map(|c| c.code()), Some("57014"), "{e:?}");
    wait_for(&watcher, &of_worker, "idle:SELECT pg_sleep(60)").await;

    // Transaction states.
    worker.batch_execute("BEGIN; SELECT 1").await.unwrap();
    wait_for(&watcher, &of_worker, "idle in transaction:BEGIN; SELECT 1").await;
    let xact =
        format!("SELECT (xact_start IS NOT NULL)::text FROM pg_stat_activity WHERE pid = {pid}");
    assert_eq!(simple_rows(&watcher, &xact).await, vec![vec![s("true")]]);
    assert!(worker.batch_execute("SELECT 1/0").await.is_err());
    wait_for(&watcher, &of_worker, "idle in transaction (aborted):SELECT 1/0").await;
    worker.batch_execute("ROLLBACK").await.unwrap();
    wait_for(&watcher, &of_worker, "idle:ROLLBACK").await;
    assert_eq!(simple_rows(&watcher, &xact).await, vec![vec![s("false")]]);

    // An unknown pid: false and PostgreSQL's WARNING.
    drain(&mut notices);
    for f in ["pg_cancel_backend", "pg_terminate_backend"] {
        let ok: bool = watcher.query_one(&format!("SELECT {f}(999999)"), &[]).await.unwrap().get(0);
        assert!(!ok);
        assert_eq!(
            drain(&mut notices),
            [(
                "WARNING".to_string(),
                "01000".to_string(),
                "PID 999999 is not a PostgreSQL backend process".to_string()
            )]
        );
    }

    // Terminating a running query's session: FATAL 57P01, the connection
    // closes and the session leaves pg_stat_activity.
    let sleeper = tokio::spawn(async move {
        let r = worker.simple_query("SELECT pg_sleep(60)").await;
        (worker, r)
    });
    wait_for(&watcher, &of_worker, "active:SELECT pg_sleep(60)").await;
    let ok: bool =
        watcher.query_one("SELECT pg_terminate_backend($1)", &[&pid]).await.unwrap().get(0);
    assert!(ok);
    let (worker, r) = sleeper.await.unwrap();
    let e = r.expect_err("terminated");
    let db = e.as_db_error().expect("a server error");
    assert_eq!((db.code().code(), db.severity()), ("57P01", "FATAL"), "{e:?}");
    assert_eq!(db.message(), "terminating connection due to administrator command");
    let count = format!("SELECT count(*)::text FROM pg_stat_activity WHERE pid = {pid}");
    wait_for(&watcher, &count, "0").await;
    for _ in 0..500 {
        if worker.is_closed() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(worker.is_closed());

    // An idle session is closed too.
    let idle = srv.connect().await;
    let idle_pid: i32 = idle.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    let ok: bool =
        watcher.query_one("SELECT pg_terminate_backend($1)", &[&idle_pid]).await.unwrap().get(0);
    assert!(ok);
    for _ in 0..500 {
        if idle.is_closed() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(idle.is_closed());
    wait_for(&watcher, "SELECT count(*)::text FROM pg_stat_activity", "1").await;
    drop(watcher);
    srv.stop().await;
}

/// The process ids of BackendKeyData, pg_backend_pid() and
/// pg_stat_activity are one id space, so a CancelRequest and
/// pg_cancel_backend name the same session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_key_pid_is_the_session_pid() {
    let srv = TestServer::start().await;
    let mut r = raw::Raw::connect(srv.addr).await;
    let key = r.key_data.clone().expect("BackendKeyData");
    let pid = i32::from_be_bytes([key[0], key[1], key[2], key[3]]);
    let m = r.query("SELECT pg_backend_pid()").await;
    assert_eq!(raw::data_rows(&m), vec![vec![Some(pid.to_string())]]);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_warnings_and_error_details() {
    let srv = TestServer::start().await;
    let (c, mut notices) = connect_with_notices(&srv, "notices").await;
    let n = |sev: &str, code: &str, msg: &str| (sev.to_string(), code.to_string(), msg.to_string());
    c.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, v text NOT NULL, CONSTRAINT t_id_check CHECK (id > 0))",
    )
        .await
        .unwrap();
    type Seen = Vec<(String, String, String)>;
    let cases: Vec<(&str, Seen)> = vec![
        (
            "DROP TABLE IF EXISTS missing",
            vec![n("NOTICE", "00000", "table \"missing\" does not exist, skipping")],
        ),
        (
            "DROP TABLE IF EXISTS missing, missing2",
            vec![
                n("NOTICE", "00000", "table \"missing\" does not exist, skipping"),
                n("NOTICE", "00000", "table \"missing2\" does not exist, skipping"),
            ],
        ),
        (
            "DROP VIEW IF EXISTS missing",
            vec![n("NOTICE", "00000", "view \"missing\" does not exist, skipping")],
        ),
        (
            "DROP INDEX IF EXISTS missing",
            vec![n("NOTICE", "00000", "index \"missing\" does not exist, skipping")],
        ),
        (
            "DROP SEQUENCE IF EXISTS missing",
            vec![n("NOTICE", "00000", "sequence \"missing\" does not exist, skipping")],
        ),
        (
            "DROP SCHEMA IF EXISTS missing",
            vec![n("NOTICE", "00000", "schema \"missing\" does not exist, skipping")],
        ),
        (
            "DROP DATABASE IF EXISTS missing",
            vec![n("NOTICE", "00000", "database \"missing\" does not exist, skipping")],
        ),
        (
            "CREATE TABLE IF NOT EXISTS t (id int)",
            vec![n("NOTICE", "42P07", "relation \"t\" already exists, skipping")],
        ),
        (
            "CREATE TABLE IF NOT EXISTS t AS SELECT 1",
            vec![n("NOTICE", "42P07", "relation \"t\" already exists, skipping")],
        ),
        (
            "CREATE SCHEMA IF NOT EXISTS public",
            vec![n("NOTICE", "42P06", "schema \"public\" already exists, skipping")],
        ),
        (
            "CREATE INDEX IF NOT EXISTS t_pkey ON t (id)",
            vec![n("NOTICE", "42P07", "relation \"t_pkey\" already exists, skipping")],
        ),
        ("CREATE SEQUENCE s", vec![]),
        (
            "CREATE SEQUENCE IF NOT EXISTS s",
            vec![n("NOTICE", "42P07", "relation \"s\" already exists, skipping")],
        ),
        (
            "ALTER TABLE IF EXISTS missing ADD COLUMN x int",
            vec![n("NOTICE", "00000", "relation \"missing\" does not exist, skipping")],
        ),
        (
            "ALTER TABLE t ADD COLUMN IF NOT EXISTS v text",
            vec![n("NOTICE", "42701", "column \"v\" of relation \"t\" already exists, skipping")],
        ),
        (
            "ALTER TABLE t DROP COLUMN IF EXISTS zz",
            vec![n("NOTICE", "00000", "column \"zz\" of relation \"t\" does not exist, skipping")],
        ),
        (
            "ALTER TABLE t DROP CONSTRAINT IF EXISTS zz",
            vec![n(
                "NOTICE",
                "00000",
                "constraint \"zz\" of relation \"t\" does not exist, skipping",
            )],
        ),
        ("COMMIT", vec![n("WARNING", "25P01", "there is no transaction in progress")]),
        ("ROLLBACK", vec![n("WARNING", "25P01", "there is no transaction in progress")]),
        ("BEGIN", vec![]),
        ("BEGIN", vec![n("WARNING", "25001", "there is already a transaction in progress")]),
        ("COMMIT", vec![]),
        (
            "SET LOCAL TIME ZONE 'UTC'",
            vec![n("WARNING", "25P01", "SET LOCAL can only be used in transaction blocks")],
        ),
        (
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            vec![n("WARNING", "25P01", "SET TRANSACTION can only be used in transaction blocks")],
        ),
        ("SELECT 1", vec![]),
    ];
    for (sql, want) in cases {
        c.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        // The notices arrive before the query's completion, so they are
        // on the channel once the next query has answered.
        c.batch_execute("SELECT 1").await.unwrap();
        assert_eq!(drain(&mut notices), want, "{sql}");
    }

    // Errors with PostgreSQL's DETAIL.
    c.batch_execute("INSERT INTO t VALUES (1, 'a'); CREATE TABLE c (x int REFERENCES t)")
        .await
        .unwrap();
    let errors = [
        (
            "INSERT INTO t VALUES (1, 'a')",
            "23505",
            "duplicate key value violates unique constraint \"t_pkey\"",
            "Key (id)=(1) already exists.",
        ),
        (
            "INSERT INTO t VALUES (2, NULL)",
            "23502",
            "null value in column \"v\" of relation \"t\" violates not-null constraint",
            "Failing row contains (2, null).",
        ),
        (
            "INSERT INTO t VALUES (-1, 'x')",
            "23514",
            "new row for relation \"t\" violates check constraint \"t_id_check\"",
            "Failing row contains (-1, x).",
        ),
        (
            "INSERT INTO c VALUES (5)",
            "23503",
            "insert or update on table \"c\" violates foreign key constraint \"c_x_fkey\"",
            "Key (x)=(5) is not present in table \"t\".",
        ),
        (
            "INSERT INTO c VALUES (1); DELETE FROM t",
            "23503",
            "update or delete on table \"t\" violates foreign key constraint \"c_x_fkey\" on table \"c\"",
            "Key (id)=(1) is still referenced from table \"c\".",
        ),
        (
            "CREATE TABLE d (a int, b int); INSERT INTO d VALUES (1, 1), (1, 1); \
             CREATE UNIQUE INDEX d_a ON d (a, b)",
            "23505",
            "could not create unique index \"d_a\"",
            "Key (a, b)=(1, 1) is duplicated.",
        ),
    ];
    for (sql, code, message, detail) in errors {
        let e = c.batch_execute(sql).await.expect_err(sql);
        let db = e.as_db_error().unwrap_or_else(|| panic!("{sql}: {e:?}"));
        assert_eq!(
            (db.code().code(), db.message(), db.detail()),
            (code, message, Some(detail)),
            "{sql}"
        );
    }
    // The same through the extended protocol (Bind/Execute).
    let e = c.execute("INSERT INTO t VALUES ($1, 'b')", &[&1i32]).await.expect_err("duplicate");
    assert_eq!(e.as_db_error().and_then(|d| d.detail()), Some("Key (id)=(1) already exists."));

    // On the wire: NoticeResponse comes before the statement's
    // CommandComplete; an ErrorResponse carries D next to C and M.
    let mut r = raw::Raw::connect(srv.addr).await;
    let m = r.query("DROP TABLE IF EXISTS nothing_here; SELECT 1").await;
    let kinds: Vec<u8> = m.iter().map(|m| m.0).collect();
    assert_eq!(kinds, [b'N', b'C', b'T', b'D', b'C', b'Z']);
    let m = r.query("INSERT INTO t VALUES (1, 'a')").await;
    assert_eq!(raw::error_field(&m, b'D').as_deref(), Some("Key (id)=(1) already exists."));
    drop(c);
    srv.stop().await;
}
