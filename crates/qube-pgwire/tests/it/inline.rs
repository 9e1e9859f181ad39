//! Statements that ran short run inline on the server's runtime threads
//! (conn.rs, `Conn::run`). What must hold: a statement that then waits —
//! for a row lock, in pg_sleep — does not hold a runtime thread, so more
//! waiting statements than the runtime has threads never stop the server;
//! and a statement whose shape ran short before but runs long now still
//! gives the right answer.
//!
//! The tests run on a runtime of two worker threads, as the server's
//! connections share it with the test's clients.

use std::time::Duration;

use tokio_postgres::Client;

use crate::{TestServer, simple_rows};

/// Long enough for any hang to be a hang, never reached when it works.
const PATIENCE: Duration = Duration::from_secs(120);

async fn active_like(c: &Client, pattern: &str) -> i64 {
    c.query_one(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE $1",
        &[&pattern],
    )
    .await
    .expect("pg_stat_activity")
    .get(0)
}

/// Waits until `n` sessions run a statement like `pattern`.
async fn until_active(c: &Client, pattern: &str, n: i64) {
    for _ in 0..2000 {
        if active_like(c, pattern).await >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{n} sessions never ran {pattern}");
}

/// Cancels the statements like `pattern` of the other sessions.
async fn cancel_like(c: &Client, pattern: &str) {
    c.execute(
        "SELECT pg_cancel_backend(pid) FROM pg_stat_activity
         WHERE query LIKE $1 AND pid <> pg_backend_pid()",
        &[&pattern],
    )
    .await
    .expect("pg_cancel_backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_statements_waiting_for_a_lock_than_runtime_threads() {
    let srv = TestServer::start().await;
    let holder = srv.connect().await;
    holder
        .batch_execute(
            "CREATE TABLE acct (id int PRIMARY KEY, v int NOT NULL);
             INSERT INTO acct VALUES (1, 0), (2, 0);",
        )
        .await
        .unwrap();
    holder.batch_execute("BEGIN").await.unwrap();
    holder.batch_execute("UPDATE acct SET v = v + 1 WHERE id = 1").await.unwrap();
    let mut waiters = Vec::new();
    for _ in 0..4 {
        let c = srv.connect().await;
        let st = c.prepare("UPDATE acct SET v = v + 1 WHERE id = $1").await.unwrap();
        // Short runs on the free row: the statement runs inline from now.
        for _ in 0..3 {
            c.execute(&st, &[&2i32]).await.unwrap();
        }
        waiters.push(tokio::spawn(async move { c.execute(&st, &[&1i32]).await }));
    }
    // Four statements wait for the holder's row lock on a server with two
    // runtime threads; the holder's COMMIT must still get through.
    let watcher = srv.connect().await;
    until_active(&watcher, "UPDATE acct%", 4).await;
    tokio::time::timeout(PATIENCE, holder.batch_execute("COMMIT"))
        .await
        .expect("the lock holder's COMMIT was never served")
        .unwrap();
    let mut done = 0;
    for w in waiters {
        let r = tokio::time::timeout(PATIENCE, w).await.expect("a waiter hung").unwrap();
        match r {
            Ok(n) => {
                assert_eq!(n, 1);
                done += 1;
            }
            Err(e) => assert_eq!(e.code().map(|c| c.code()), Some("40001"), "{e}"),
        }
    }
    let rows = simple_rows(&watcher, "SELECT id, v FROM acct ORDER BY id").await;
    assert_eq!(rows[0][1].as_deref(), Some((1 + done).to_string().as_str()));
    assert_eq!(rows[1][1].as_deref(), Some("12"));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleeping_statements_that_ran_short_before_leave_the_server_serving() {
    let srv = TestServer::start().await;
    let mut sleepers = Vec::new();
    for i in 0..4 {
        let c = srv.connect().await;
        if i % 2 == 0 {
            // Extended protocol: the same prepared statement.
            let st = c.prepare("SELECT pg_sleep($1)").await.unwrap();
            for _ in 0..3 {
                c.query(&st, &[&0.0f64]).await.unwrap();
            }
            sleepers
                .push(tokio::spawn(async move { c.query(&st, &[&600.0f64]).await.map(|_| ()) }));
        } else {
            // Simple protocol: texts of one shape.
            for _ in 0..3 {
                c.simple_query("SELECT pg_sleep(0)").await.unwrap();
            }
            sleepers.push(tokio::spawn(async move {
                c.simple_query("SELECT pg_sleep(600)").await.map(|_| ())
            }));
        }
    }
    let other = srv.connect().await;
    until_active(&other, "SELECT pg_sleep%", 4).await;
    // Four sleep on a server with two runtime threads: others are served,
    // and cancelling the sleepers reaches them.
    for _ in 0..20 {
        let r = tokio::time::timeout(PATIENCE, other.query_one("SELECT 40 + 2", &[]))
            .await
            .expect("the server stopped serving while statements slept")
            .unwrap();
        assert_eq!(r.get::<_, i32>(0), 42);
    }
    cancel_like(&other, "SELECT pg_sleep%").await;
    for s in sleepers {
        let r = tokio::time::timeout(PATIENCE, s).await.expect("a sleeper hung").unwrap();
        let e = r.expect_err("pg_sleep(600) was cancelled");
        assert_eq!(e.code().map(|c| c.code()), Some("57014"), "{e}");
    }
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_of_a_short_shape_that_run_long_give_full_answers() {
    let srv = TestServer::start().await;
    let c = srv.connect().await;
    c.batch_execute(
        "CREATE TABLE big (id int PRIMARY KEY, pad text);
         INSERT INTO big SELECT g, repeat('x', 100) FROM generate_series(1, 50000) g;",
    )
    .await
    .unwrap();
    // Short texts of one shape, then one of the same shape that reads and
    // returns 50,000 rows (more than the server buffers before writing).
    for i in 1..4 {
        let rows = simple_rows(&c, &format!("SELECT id, pad FROM big WHERE id <= {i}")).await;
        assert_eq!(rows.len(), i);
    }
    let rows = simple_rows(&c, "SELECT id, pad FROM big WHERE id <= 50000").await;
    assert_eq!(rows.len(), 50000);
    assert_eq!(rows[49999][0].as_deref(), Some("50000"));
    // The same through one prepared statement.
    let st = c.prepare("SELECT count(*) FROM big WHERE id <= $1").await.unwrap();
    for i in 1..4 {
        assert_eq!(c.query_one(&st, &[&i]).await.unwrap().get::<_, i64>(0), i64::from(i));
    }
    assert_eq!(c.query_one(&st, &[&50000i32]).await.unwrap().get::<_, i64>(0), 50000);
    // An error in a statement that runs inline fails it like any other.
    let bad = c.prepare("SELECT 1 / $1").await.unwrap();
    for _ in 0..3 {
        c.query(&bad, &[&1i32]).await.unwrap();
    }
    let e = c.query(&bad, &[&0i32]).await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("22012"));
    assert_eq!(c.query_one(&bad, &[&1i32]).await.unwrap().get::<_, i32>(0), 1);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn texts_of_one_shape_report_their_own_text_and_error_positions() {
    let srv = TestServer::start().await;
    let c = srv.connect().await;
    let watcher = srv.connect().await;
    c.batch_execute("CREATE TABLE sh (id int PRIMARY KEY, v int)").await.unwrap();
    // Error positions: the name is found in the text that was sent, also
    // when its shape was parsed from another text.
    for (sql, at) in [
        ("SELECT nosuch FROM sh WHERE id = 1", 8),
        ("SELECT nosuch FROM sh WHERE id = 123456789", 8),
        ("SELECT v FROM sh WHERE id = 123456789 AND nosuch = 5", 43),
        ("SELECT v FROM sh WHERE id = 1 AND nosuch = 5", 35),
    ] {
        let e = c.simple_query(sql).await.unwrap_err();
        let db = e.as_db_error().expect("a database error");
        assert_eq!(db.code().code(), "42703", "{sql}");
        match db.position() {
            Some(tokio_postgres::error::ErrorPosition::Original(p)) => {
                assert_eq!(*p, at, "{sql}")
            }
            other => panic!("{sql}: position {other:?}"),
        }
    }
    // pg_stat_activity shows the text that runs, not the one its shape
    // was parsed from.
    c.batch_execute("INSERT INTO sh VALUES (1, 0), (2, 600)").await.unwrap();
    let sleep = |id: i32| format!("SELECT id, pg_sleep(v) FROM sh WHERE id = {id}");
    assert_eq!(simple_rows(&c, &sleep(1)).await[0][0].as_deref(), Some("1"));
    let text = sleep(2);
    let sleeper = tokio::spawn(async move {
        let r = c.simple_query(&text).await;
        (c, r)
    });
    until_active(&watcher, &sleep(2), 1).await;
    cancel_like(&watcher, "SELECT id, pg_sleep%").await;
    let (_c, r) = tokio::time::timeout(PATIENCE, sleeper).await.expect("sleeper hung").unwrap();
    assert_eq!(r.unwrap_err().code().map(|c| c.code()), Some("57014"));
    srv.stop().await;
}
