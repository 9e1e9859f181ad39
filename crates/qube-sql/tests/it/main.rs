//! Integration tests of the SQL engine, built as one test binary:
//! `cargo test -p qube-sql --test it`.
//!
//! - `slt`: our own feature tests, `tests/slt/*.slt` (sqllogictest-rs format,
//!   expectations checked against PostgreSQL 15), one `#[test]` per file.
//! - `sqlite_corpus`: SQLite's classic sqllogictest corpus from
//!   `../shared/conformance/sqlite` (`sqlite_t0` always, `sqlite_t1` ignored).

mod copy;
mod roles;
mod slt;
mod sqlite_corpus;

#[test]
fn deep_expressions_are_errors_not_stack_overflows() {
    let db = qube_sql::Database::memory().unwrap();
    let mut s = db.session().unwrap();
    s.execute("CREATE TABLE t(a int); INSERT INTO t VALUES (1), (5000), (20000)").unwrap();
    // A 10,000-term OR works (AND/OR chains are balanced, not nested).
    let ors: Vec<String> = (0..10_000).map(|i| format!("a = {i}")).collect();
    let r = s.execute(&format!("SELECT count(*) FROM t WHERE {}", ors.join(" OR "))).unwrap();
    assert_eq!(r[0].rows[0][0], qube_sql::Value::Int8(2));
    // 1,000-deep nesting and a 5,000-term sum are clear errors (54001).
    let nest = format!("SELECT {}1{}", "(".repeat(1000), ")".repeat(1000));
    assert_eq!(s.execute(&nest).unwrap_err().sqlstate(), "54001");
    let sum = vec!["1"; 5000].join("+");
    assert_eq!(s.execute(&format!("SELECT {sum}")).unwrap_err().sqlstate(), "54001");
    let neg = format!("SELECT {}1", "- ".repeat(1000));
    assert_eq!(s.execute(&neg).unwrap_err().sqlstate(), "54001");
    // A moderately deep expression still works.
    let sum = vec!["1"; 150].join("+");
    assert_eq!(
        s.execute(&format!("SELECT {sum}")).unwrap()[0].rows[0][0],
        qube_sql::Value::Int4(150)
    );
}

/// The README's example, as written there (on a temporary directory), and
/// the data surviving a reopen.
#[test]
fn readme_example_runs_and_data_survives_reopen() {
    use qube_sql::{Database, Value};
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::open(dir.path()).unwrap();
        let mut s = db.session().unwrap();
        s.execute("CREATE TABLE t (id serial PRIMARY KEY, name text NOT NULL)").unwrap();
        s.execute("INSERT INTO t (name) VALUES ('ada'), ('grace')").unwrap();
        let r = s
            .execute_with("SELECT id, name FROM t WHERE name = $1", &[Value::Text("ada".into())])
            .unwrap();
        assert_eq!(r[0].rows, vec![vec![Value::Int4(1), Value::Text("ada".into())]]);
        assert_eq!(r[0].columns[0].name, "id");
        s.execute("BEGIN; UPDATE t SET name = upper(name); ROLLBACK").unwrap();
        let e = s.execute("INSERT INTO t (id, name) VALUES (1, 'dup')").unwrap_err();
        assert_eq!(e.sqlstate(), "23505");
    }
    let db = Database::open(dir.path()).unwrap();
    let mut s = db.session().unwrap();
    let r = s.execute("SELECT name FROM t ORDER BY id").unwrap();
    assert_eq!(r[0].rows, vec![vec![Value::Text("ada".into())], vec![Value::Text("grace".into())]]);
    // Rowids continue after a reopen: no collision with existing rows.
    s.execute("INSERT INTO t (name) VALUES ('edsger')").unwrap();
    let r = s.execute("SELECT count(*), max(id) FROM t").unwrap();
    assert_eq!(r[0].rows, vec![vec![Value::Int8(3), Value::Int4(3)]]);
}

/// Equalities on indexed columns use the index (EXPLAIN shows it), for
/// queries, correlated subqueries, UPDATE and DELETE, and give the same
/// rows a scan gives; values the column cannot hold match nothing.
#[test]
fn indexes_are_used_and_agree_with_scans() {
    use qube_sql::Value;
    let db = qube_sql::Database::memory().unwrap();
    let mut s = db.session().unwrap();
    s.execute("CREATE TABLE t (a int PRIMARY KEY, b int, c text); CREATE INDEX t_b ON t (b)")
        .unwrap();
    let values: Vec<String> = (0..500).map(|i| format!("({i}, {}, 'v{}')", i % 7, i % 3)).collect();
    s.execute(&format!("INSERT INTO t VALUES {}", values.join(", "))).unwrap();
    let plan = |s: &mut qube_sql::Session, q: &str| -> String {
        let r = s.execute(&format!("EXPLAIN {q}")).unwrap();
        r[0].rows.iter().map(|r| r[0].to_string()).collect::<Vec<_>>().join("\n")
    };
    assert!(plan(&mut s, "SELECT * FROM t WHERE a = 42").contains("Index Scan on t"));
    assert!(plan(&mut s, "SELECT * FROM t WHERE b = 3 AND c = 'v1'").contains("Index Scan on t"));
    assert!(plan(&mut s, "SELECT * FROM t WHERE c = 'v1'").contains("Seq Scan on t"));
    assert!(plan(&mut s, "SELECT * FROM t WHERE a BETWEEN 5 AND 9").contains("a in range"));
    assert!(plan(&mut s, "SELECT * FROM t WHERE 100 > a").contains("a in range"));
    let n = |s: &mut qube_sql::Session, q: &str| s.execute(q).unwrap().remove(0).rows[0][0].clone();
    assert_eq!(n(&mut s, "SELECT count(*) FROM t WHERE a BETWEEN 5 AND 9"), Value::Int8(5));
    assert_eq!(n(&mut s, "SELECT count(*) FROM t WHERE a > 5 AND a < 9"), Value::Int8(3));
    assert_eq!(n(&mut s, "SELECT count(*) FROM t WHERE a >= 495"), Value::Int8(5));
    assert_eq!(n(&mut s, "SELECT count(*) FROM t WHERE 100 > a"), Value::Int8(100));
    assert_eq!(n(&mut s, "SELECT count(*) FROM t WHERE a > 4.5 AND a <= 6.5"), Value::Int8(2));
    assert_eq!(n(&mut s, "SELECT count(*) FROM t WHERE a > NULL"), Value::Int8(0));
    assert_eq!(n(&mut s, "SELECT count(*) FROM t WHERE a > -5 AND a < 0"), Value::Int8(0));
    let count = |s: &mut qube_sql::Session, q: &str| -> Vec<Vec<Value>> {
        s.execute(q).unwrap().remove(0).rows
    };
    assert_eq!(count(&mut s, "SELECT c FROM t WHERE a = 42"), vec![vec![Value::Text("v0".into())]]);
    assert_eq!(count(&mut s, "SELECT count(*) FROM t WHERE b = 3"), vec![vec![Value::Int8(71)]]);
    assert_eq!(
        count(&mut s, "SELECT count(*) FROM t WHERE b + 0 = 3"),
        vec![vec![Value::Int8(71)]]
    );
    assert_eq!(count(&mut s, "SELECT count(*) FROM t WHERE a = 4.5"), vec![vec![Value::Int8(0)]]);
    assert_eq!(count(&mut s, "SELECT count(*) FROM t WHERE a = 4.0"), vec![vec![Value::Int8(1)]]);
    assert_eq!(count(&mut s, "SELECT count(*) FROM t WHERE a = NULL"), vec![vec![Value::Int8(0)]]);
    let r = s.execute_with("SELECT b FROM t WHERE a = $1", &[Value::Int8(10)]).unwrap();
    assert_eq!(r[0].rows, vec![vec![Value::Int4(3)]]);
    // Correlated: each outer row looks up its successor by primary key.
    assert_eq!(
        count(
            &mut s,
            "SELECT count(*) FROM t WHERE (SELECT u.b FROM t AS u WHERE u.a = t.a + 1) = 0"
        ),
        vec![vec![Value::Int8(71)]]
    );
    // UPDATE and DELETE through the index keep the indexes right.
    s.execute("UPDATE t SET b = 100 WHERE a = 10").unwrap();
    assert_eq!(count(&mut s, "SELECT a FROM t WHERE b = 100"), vec![vec![Value::Int4(10)]]);
    assert_eq!(count(&mut s, "SELECT count(*) FROM t WHERE b = 3"), vec![vec![Value::Int8(70)]]);
    s.execute("DELETE FROM t WHERE b = 100").unwrap();
    assert_eq!(count(&mut s, "SELECT count(*) FROM t WHERE a = 10"), vec![vec![Value::Int8(0)]]);
    s.execute("INSERT INTO t VALUES (10, 3, 'again')").unwrap();
    assert_eq!(
        count(&mut s, "SELECT c FROM t WHERE a = 10"),
        vec![vec![Value::Text("again".into())]]
    );
    assert_eq!(s.execute("UPDATE t SET a = 11 WHERE a = 10").unwrap_err().sqlstate(), "23505");
}

/// A runaway join fails with 53200 instead of exhausting memory, and the
/// session goes on.
#[test]
fn a_runaway_join_is_53200_not_a_crash() {
    let db = qube_sql::Database::memory().unwrap();
    db.set_query_value_limit(1_000_000);
    let mut s = db.session().unwrap();
    let e = s
        .execute("SELECT count(*) FROM generate_series(1, 4000) a, generate_series(1, 4000) b")
        .unwrap_err();
    assert_eq!(e.sqlstate(), "53200", "{e}");
    let r = s
        .execute("SELECT count(*) FROM generate_series(1, 100) a, generate_series(1, 100) b")
        .unwrap();
    assert_eq!(r[0].rows[0][0], qube_sql::Value::Int8(10_000));
}

/// A prepared query keeps its plan until DDL changes the catalog, then
/// binds again (a dropped index is not used, a renamed column is 42703).
#[test]
fn prepared_plans_follow_ddl() {
    use qube_sql::Value;
    let db = qube_sql::Database::memory().unwrap();
    let mut s = db.session().unwrap();
    s.execute("CREATE TABLE t (a int PRIMARY KEY, b int); CREATE INDEX t_b ON t (b); INSERT INTO t VALUES (1, 10), (2, 20)")
        .unwrap();
    let p = s.prepare("SELECT a FROM t WHERE b = $1").unwrap();
    for _ in 0..3 {
        let r = s.execute_prepared(&p, &[Value::Int4(20)]).unwrap();
        assert_eq!(r[0].rows, vec![vec![Value::Int4(2)]]);
    }
    s.execute("DROP INDEX t_b; INSERT INTO t VALUES (3, 20)").unwrap();
    let r = s.execute_prepared(&p, &[Value::Int4(20)]).unwrap();
    assert_eq!(r[0].rows.len(), 2);
    s.execute("ALTER TABLE t RENAME COLUMN b TO c").unwrap();
    assert_eq!(s.execute_prepared(&p, &[Value::Int4(20)]).unwrap_err().sqlstate(), "42703");
    // Inside a transaction that changes the catalog, nothing is reused.
    s.execute("BEGIN; ALTER TABLE t RENAME COLUMN c TO b").unwrap();
    assert_eq!(s.execute_prepared(&p, &[Value::Int4(20)]).unwrap()[0].rows.len(), 2);
    s.execute("ROLLBACK").unwrap();
    assert_eq!(s.execute_prepared(&p, &[Value::Int4(20)]).unwrap_err().sqlstate(), "42703");
}

/// A WITH query read twice is run once per execution (EXPLAIN shows its
/// CTE Scan): a prepared statement computes its rows anew with each
/// execution's parameters; a WITH query read once stays inlined.
#[test]
fn materialized_with_queries_run_once_per_execution() {
    use qube_sql::Value;
    let db = qube_sql::Database::memory().unwrap();
    let mut s = db.session().unwrap();
    s.execute("CREATE TABLE t (a int PRIMARY KEY, b int); INSERT INTO t SELECT i, i % 7 FROM generate_series(1, 100) i")
        .unwrap();
    let p = s
        .prepare("WITH w AS (SELECT a FROM t WHERE a >= $1) SELECT count(*) FROM w, w w2")
        .unwrap();
    for (from, n) in [(1, 10_000), (91, 100), (100, 1), (101, 0)] {
        let r = s.execute_prepared(&p, &[Value::Int4(from)]).unwrap();
        assert_eq!(r[0].rows, vec![vec![Value::Int8(n)]], "from {from}");
    }
    let text = |s: &mut qube_sql::Session, q: &str| -> String {
        let r = s.execute(&format!("EXPLAIN {q}")).unwrap();
        r[0].rows.iter().map(|row| format!("{:?}\n", row[0])).collect()
    };
    let twice = text(&mut s, "WITH w AS (SELECT a FROM t) SELECT * FROM w, w w2");
    assert!(twice.contains("CTE Scan on w"), "{twice}");
    let once = text(&mut s, "WITH w AS (SELECT a, b FROM t) SELECT b FROM w WHERE a = 5");
    assert!(!once.contains("CTE Scan"), "{once}");
    let forced =
        text(&mut s, "WITH w AS MATERIALIZED (SELECT a, b FROM t) SELECT b FROM w WHERE a = 5");
    assert!(forced.contains("CTE Scan on w"), "{forced}");
}

/// EXPLAIN ANALYZE runs the query and reports actual rows per operator.
#[test]
fn explain_analyze_reports_actual_rows() {
    let db = qube_sql::Database::memory().unwrap();
    let mut s = db.session().unwrap();
    s.execute("CREATE TABLE t (a int PRIMARY KEY, b int); INSERT INTO t SELECT g, g % 10 FROM generate_series(1, 1000) g")
        .unwrap();
    let r = s
        .execute(
            "EXPLAIN ANALYZE SELECT b, count(*) FROM t WHERE a > 100 GROUP BY b ORDER BY b LIMIT 3",
        )
        .unwrap();
    let text: Vec<String> = r[0].rows.iter().map(|r| r[0].to_string()).collect();
    assert!(text[0].starts_with("Limit") && text[0].contains("rows=3 loops=1"), "{text:?}");
    assert!(
        text.iter().any(|l| l.contains("Index Scan on t") && l.contains("rows=901")),
        "{text:?}"
    );
    assert!(text.iter().any(|l| l.contains("Sort") && l.contains("rows=3")), "{text:?}");
    assert!(text.last().is_some_and(|l| l.starts_with("Execution Time:")), "{text:?}");
    assert!(text.iter().all(|l| !l.contains("never executed")), "{text:?}");
}

#[test]
fn databases_are_separate_and_sessions_choose_one() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = qube_sql::Database::open(dir.path()).unwrap();
        let mut s = db.session().unwrap();
        s.execute("CREATE DATABASE app; CREATE TABLE t(a int); INSERT INTO t VALUES (1)").unwrap();
        let mut a = db.session_in("app").unwrap();
        // The same name in another database is another table.
        a.execute("CREATE TABLE t(a int); INSERT INTO t VALUES (2), (3)").unwrap();
        let r = a.execute("SELECT count(*) FROM t").unwrap();
        assert_eq!(r[0].rows[0][0], qube_sql::Value::Int8(2));
        assert_eq!(a.execute("DROP DATABASE app").unwrap_err().sqlstate(), "55006");
        assert_eq!(db.session_in("nosuch").err().unwrap().sqlstate(), "3D000");
        let e = s.execute("SELECT * FROM app.public.t").unwrap_err();
        assert_eq!(e.sqlstate(), "0A000", "{e}");
        // Sequences keep counting across a restart without repeating.
        s.execute("CREATE SEQUENCE q").unwrap();
        for _ in 0..5 {
            s.execute("SELECT nextval('q')").unwrap();
        }
    }
    let db = qube_sql::Database::open(dir.path()).unwrap();
    let mut a = db.session_in("app").unwrap();
    let r = a.execute("SELECT sum(a) FROM t").unwrap();
    assert_eq!(r[0].rows[0][0], qube_sql::Value::Int8(5));
    let mut s = db.session().unwrap();
    let r = s.execute("SELECT nextval('q')").unwrap();
    assert!(matches!(r[0].rows[0][0], qube_sql::Value::Int8(v) if v > 5));
    s.execute("DROP DATABASE app").unwrap();
    assert_eq!(db.session_in("app").err().unwrap().sqlstate(), "3D000");
}

/// Errors carry PostgreSQL's position field (the values PostgreSQL 15
/// reports for the same statements).
#[test]
fn errors_point_into_the_query_text() {
    let db = qube_sql::Database::memory().unwrap();
    let mut s = db.session().unwrap();
    s.execute("CREATE TABLE t(a int, b int)").unwrap();
    for (sql, pos) in [
        ("SELECT nosuch FROM t", 8),
        ("SELECT a FROM nosuch", 15),
        ("SELECT * FROM t WHERE b = 1 AND zz > 2", 33),
        ("SELECT foo(a) FROM t", 8),
        ("SELECT (1 FROM t", 11),
        ("SELECT a,\n b FROM t WHERE c = 'x'", 27),
        ("UPDATE t SET qq = 1", 14),
        ("SELECT 1; SELECT zz FROM t", 18),
    ] {
        let e = s.execute(sql).unwrap_err();
        assert_eq!(e.position(), Some(pos), "{sql}: {e}");
    }
    let p = s.prepare("SELECT a FROM t WHERE nope = $1").unwrap();
    let e = s.execute_prepared(&p, &[qube_sql::Value::Int4(1)]).unwrap_err();
    assert_eq!(e.position(), Some(23));
}

/// Date/time values keep their exact values across a reopen, a timestamp
/// index serves range queries, now() is the transaction's start, and the
/// session's zone (set by name, as drivers do at startup) shapes text I/O.
#[test]
fn datetime_values_survive_reopen_and_use_indexes() {
    use qube_sql::{Database, Value};
    let dir = tempfile::tempdir().unwrap();
    let all = "SELECT d, t, ts, tz, iv FROM ev ORDER BY ts";
    let expected = {
        let db = Database::open(dir.path()).unwrap();
        let mut s = db.session().unwrap();
        s.execute(
            "CREATE TABLE ev (id int PRIMARY KEY, d date, t time, ts timestamp(6), \
             tz timestamptz, iv interval); CREATE INDEX ev_ts ON ev (ts)",
        )
        .unwrap();
        let rows: Vec<String> = (0..200)
            .map(|i| {
                format!(
                    "({i}, DATE '2024-01-01' + {i}, TIME '00:00:01.5' + {i} * INTERVAL '1 min', \
                     TIMESTAMP '2023-12-31 23:59:59.999999' + {i} * INTERVAL '7 hours', \
                     TIMESTAMPTZ '0044-03-15 12:00+00 BC' + {i} * INTERVAL '1 year', \
                     INTERVAL '-1 mon 2 days -03:04:05.000006' * {i})"
                )
            })
            .collect();
        s.execute(&format!("INSERT INTO ev VALUES {}", rows.join(", "))).unwrap();
        s.execute(all).unwrap().remove(0).rows
    };
    let db = Database::open(dir.path()).unwrap();
    let mut s = db.session().unwrap();
    assert_eq!(s.execute(all).unwrap().remove(0).rows, expected);
    let q = "SELECT count(*) FROM ev WHERE ts >= '2024-01-02' AND ts < DATE '2024-01-03'";
    let plan = s.execute(&format!("EXPLAIN {q}")).unwrap().remove(0).rows;
    let plan: Vec<String> = plan.iter().map(|r| r[0].to_string()).collect();
    assert!(plan.join("\n").contains("ts in range"), "{plan:?}");
    assert_eq!(s.execute(q).unwrap()[0].rows[0][0], Value::Int8(3));
    let scan = "SELECT count(*) FROM ev WHERE ts + INTERVAL '0 s' >= '2024-01-02' \
                AND ts + INTERVAL '0 s' < '2024-01-03'";
    assert_eq!(s.execute(scan).unwrap()[0].rows[0][0], Value::Int8(3));
    // now() stays put within a transaction.
    s.execute("CREATE TABLE n (at timestamptz)").unwrap();
    s.execute("BEGIN; INSERT INTO n SELECT now(); INSERT INTO n SELECT now(); COMMIT").unwrap();
    s.execute("INSERT INTO n SELECT now()").unwrap();
    let r = s.execute("SELECT count(DISTINCT at) FROM n").unwrap();
    assert_eq!(r[0].rows[0][0], Value::Int8(2));
    // The zone a driver sends at startup; bad names are 22023.
    s.set_time_zone("Etc/GMT-3").unwrap();
    let r = s
        .execute("SELECT TIMESTAMPTZ '2024-01-01 00:00+00', '2024-06-01 12:00'::timestamptz::text");
    let r = r.unwrap().remove(0).rows.remove(0);
    assert_eq!(r[0].to_string(), "2024-01-01 03:00:00+03");
    assert_eq!(r[1], Value::Text("2024-06-01 12:00:00+03".into()));
    assert_eq!(s.set_time_zone("Nowhere/Special").unwrap_err().sqlstate(), "22023");
    s.set_time_zone("europe/berlin").unwrap();
    let r = s.execute("SHOW timezone").unwrap();
    assert_eq!(r[0].rows[0][0], Value::Text("Europe/Berlin".into()));
}

/// Where QubeDB deliberately differs from PostgreSQL (so these are not in
/// the PostgreSQL-verified .slt files): multi-dimensional arrays and
/// set-returning functions inside expressions are 0A000; a deep jsonb is 54001.
#[test]
fn unsupported_array_and_json_forms_are_clear_errors() {
    let db = qube_sql::Database::memory().unwrap();
    let mut s = db.session().unwrap();
    for sql in [
        "SELECT '{{1,2},{3,4}}'::int[]",
        "SELECT ARRAY[ARRAY[1], ARRAY[2]]",
        "SELECT '[1:2]={1,2}'::int[]",
        "SELECT unnest(ARRAY[1, 2]) + 1",
        "SELECT 1 WHERE 1 = unnest(ARRAY[1])",
        "SELECT count(unnest(ARRAY[1]))",
        "SELECT jsonb_each('{}')",
        "SELECT array_agg(a) FROM (SELECT ARRAY[1] AS a) s",
        "SELECT ARRAY(SELECT ARRAY[1])",
    ] {
        assert_eq!(s.execute(sql).unwrap_err().sqlstate(), "0A000", "{sql}");
    }
    let deep = format!("SELECT '{}{}'::jsonb", "[".repeat(5000), "]".repeat(5000));
    assert_eq!(s.execute(&deep).unwrap_err().sqlstate(), "54001");
    let ok = format!("{}{}", "[".repeat(499), "]".repeat(499));
    s.execute("CREATE TABLE deep (j jsonb, t json)").unwrap();
    s.execute(&format!("INSERT INTO deep VALUES ('{ok}', '{ok}')")).unwrap();
    let r = s.execute("SELECT j, t, j = t::jsonb, jsonb_typeof(j) FROM deep ORDER BY j").unwrap();
    assert_eq!(r[0].rows[0][0].to_string().len(), 998);
    assert_eq!(r[0].rows[0][2], qube_sql::Value::Bool(true));
    // int[][] is int[], as in PostgreSQL.
    s.execute("CREATE TABLE m (a int[][])").unwrap();
    s.execute("INSERT INTO m VALUES ('{1,2}')").unwrap();
    let r = s.execute("SELECT a FROM m").unwrap();
    assert_eq!(r[0].rows[0][0].to_string(), "{1,2}");
}

/// A read-only session default (SET SESSION CHARACTERISTICS AS
/// TRANSACTION READ ONLY) holds for prepared writes too, also when they
/// would change no row.
#[test]
fn read_only_default_covers_prepared_writes() {
    let db = qube_sql::Database::memory().unwrap();
    let mut s = db.session().unwrap();
    s.execute("CREATE TABLE r (a int PRIMARY KEY)").unwrap();
    let ins = s.prepare("INSERT INTO r VALUES ($1)").unwrap();
    let del = s.prepare("DELETE FROM r WHERE a = $1").unwrap();
    s.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY").unwrap();
    for (st, v) in [(&ins, 1), (&del, 1)] {
        let e = s.execute_prepared(st, &[qube_sql::Value::Int4(v)]).unwrap_err();
        assert_eq!(e.sqlstate(), "25006", "{e}");
    }
    s.execute("SET default_transaction_read_only = off").unwrap();
    s.execute_prepared(&ins, &[qube_sql::Value::Int4(1)]).unwrap();
    let r = s.execute("SELECT count(*) FROM r").unwrap();
    assert_eq!(r[0].rows[0][0].to_string(), "1");
}

/// Table inheritance and partitioning are refused, not ignored: a plain
/// table in their place would lack inherited columns or take rows that no
/// partition accepts.
#[test]
fn inheritance_and_partitioning_are_clear_errors() {
    let db = qube_sql::Database::memory().unwrap();
    let mut s = db.session().unwrap();
    s.execute("CREATE TABLE parent (a int)").unwrap();
    for sql in [
        "CREATE TABLE child (b int) INHERITS (parent)",
        "CREATE TABLE m (a int, b int) PARTITION BY RANGE (a)",
        "CREATE TABLE l (a int) PARTITION BY LIST (a)",
        "CREATE TABLE p1 PARTITION OF parent FOR VALUES FROM (1) TO (10)",
    ] {
        assert_eq!(s.execute(sql).unwrap_err().sqlstate(), "0A000", "{sql}");
    }
    for t in ["child", "m", "l", "p1"] {
        let e = s.execute(&format!("SELECT * FROM {t}")).unwrap_err();
        assert_eq!(e.sqlstate(), "42P01", "{t} was created");
    }
}

/// extract() of a growing field of an infinite date or timestamp is
/// numeric Infinity in PostgreSQL, which our numeric cannot hold: a clear
/// error rather than a finite stand-in (date_part and the other fields
/// match PostgreSQL, see datetime.slt).
#[test]
fn extract_of_infinity_is_a_clear_error() {
    let db = qube_sql::Database::memory().unwrap();
    let mut s = db.session().unwrap();
    for sql in [
        "SELECT extract(year FROM DATE 'infinity')",
        "SELECT extract(century FROM DATE '-infinity')",
        "SELECT extract(epoch FROM TIMESTAMP 'infinity')",
        "SELECT extract(julian FROM TIMESTAMPTZ '-infinity')",
    ] {
        let e = s.execute(sql).unwrap_err();
        assert_eq!(e.sqlstate(), "0A000", "{sql}");
        assert!(e.to_string().contains("Infinity"), "{sql}: {e}");
    }
    let r = s
        .execute("SELECT extract(day FROM DATE 'infinity'), extract(year FROM DATE '2024-05-01')")
        .unwrap();
    assert_eq!(r[0].rows[0][0], qube_sql::Value::Null);
    assert_eq!(r[0].rows[0][1].to_string(), "2024");
}

/// ORDER BY over an index's columns reads the index in order (reverse for
/// DESC) instead of sorting, when NULL placement and directions match.
#[test]
fn ordered_index_scans() {
    use qube_sql::Value;
    let db = qube_sql::Database::memory().unwrap();
    let mut s = db.session().unwrap();
    s.execute(
        "CREATE TABLE t (a int PRIMARY KEY, b int, c text, d int); CREATE INDEX t_b ON t (b); \
         CREATE INDEX t_cd ON t (c, d)",
    )
    .unwrap();
    let values: Vec<String> =
        (0..2000).map(|i| format!("({i}, {}, 'v{}', {})", (i * 7919) % 2000, i % 3, i)).collect();
    s.execute(&format!("INSERT INTO t VALUES {}", values.join(", "))).unwrap();
    let plan = |s: &mut qube_sql::Session, q: &str| -> String {
        let r = s.execute(&format!("EXPLAIN {q}")).unwrap();
        r[0].rows.iter().map(|r| r[0].to_string()).collect::<Vec<_>>().join("\n")
    };
    let p = plan(&mut s, "SELECT a, b, d FROM t ORDER BY b DESC LIMIT 10");
    assert!(p.contains("Index Scan Backward on t") && !p.contains("Sort"), "{p}");
    let p = plan(&mut s, "SELECT a, b, d FROM t ORDER BY b LIMIT 10");
    assert!(p.contains("Index Scan on t") && !p.contains("Sort"), "{p}");
    // (`a` is the key rowid, which every index entry holds: index-only.)
    let p = plan(&mut s, "SELECT a, b FROM t ORDER BY b DESC LIMIT 10");
    assert!(p.contains("Index Only Scan Backward on t") && !p.contains("Sort"), "{p}");
    // (Reading only the index's columns: index-only, see index_only_scans.)
    let p = plan(&mut s, "SELECT a FROM t ORDER BY a DESC LIMIT 3");
    assert!(p.contains("Index Only Scan Backward on t") && !p.contains("Sort"), "{p}");
    // A filter stays on top of the ordered scan.
    let p = plan(&mut s, "SELECT a FROM t WHERE d > 5 ORDER BY b DESC LIMIT 3");
    assert!(p.contains("Filter") && p.contains("Backward") && !p.contains("Sort"), "{p}");
    // Equalities on leading columns, order on the next.
    let p = plan(&mut s, "SELECT d FROM t WHERE c = 'v1' ORDER BY d DESC");
    assert!(p.contains("Index Only Scan Backward on t") && !p.contains("Sort"), "{p}");
    // NULL placement, mixed directions, expressions or no LIMIT: a sort.
    for q in [
        "SELECT a FROM t ORDER BY b NULLS FIRST LIMIT 3",
        "SELECT a FROM t ORDER BY b DESC NULLS LAST LIMIT 3",
        "SELECT c, d FROM t ORDER BY c, d DESC LIMIT 3",
        "SELECT a FROM t ORDER BY b + 1 LIMIT 3",
        "SELECT a FROM t ORDER BY b",
        "SELECT a FROM t ORDER BY d LIMIT 3",
    ] {
        assert!(plan(&mut s, q).contains("Sort"), "{q}: {}", plan(&mut s, q));
    }
    let rows = |s: &mut qube_sql::Session, q: &str| s.execute(q).unwrap().remove(0).rows;
    let top: Vec<Vec<Value>> = (0..5).map(|i| vec![Value::Int4(1999 - i)]).collect();
    assert_eq!(rows(&mut s, "SELECT b FROM t ORDER BY b DESC LIMIT 5"), top);
    assert_eq!(rows(&mut s, "SELECT b FROM t ORDER BY b DESC NULLS FIRST LIMIT 5"), top);
    assert_eq!(rows(&mut s, "SELECT b FROM t ORDER BY b DESC NULLS LAST LIMIT 5"), top);
    let r = rows(&mut s, "SELECT b FROM t WHERE b % 2 = 0 ORDER BY b LIMIT 3 OFFSET 500");
    assert_eq!(r, vec![vec![Value::Int4(1000)], vec![Value::Int4(1002)], vec![Value::Int4(1004)]]);
    let r = rows(&mut s, "SELECT d FROM t WHERE c = 'v2' ORDER BY c DESC, d DESC LIMIT 2");
    assert_eq!(r, vec![vec![Value::Int4(1997)], vec![Value::Int4(1994)]]);
    // Prepared with parameters: the plan is cached and reused.
    let st = s.prepare("SELECT a FROM t WHERE b < $1 ORDER BY b DESC LIMIT $2").unwrap();
    for (lim, below) in [(3i64, 10i64), (1, 1000), (0, 5)] {
        let r = s.execute_prepared(&st, &[Value::Int8(below), Value::Int8(lim)]).unwrap();
        assert_eq!(r[0].rows.len(), lim as usize);
    }
}

/// A query that reads only an index's columns is answered from the index
/// entries (EXPLAIN: Index Only Scan), with the rows a full read gives:
/// index entries are MVCC keys with their own versions, so the snapshot and
/// the transaction's own uncommitted writes decide visibility as for rows.
#[test]
fn index_only_scans() {
    use qube_sql::Value;
    let db = qube_sql::Database::memory().unwrap();
    let mut s = db.session().unwrap();
    s.execute(
        "CREATE TABLE t (a int PRIMARY KEY, b int, c text, d double precision); \
         CREATE INDEX t_b ON t (b); CREATE INDEX t_cb ON t (c, b); CREATE INDEX t_d ON t (d)",
    )
    .unwrap();
    let values: Vec<String> = (0..300)
        .map(|i| {
            let c = if i % 10 == 0 { "NULL".to_string() } else { format!("'c{}'", i % 4) };
            format!("({i}, {}, {c}, {i}.5)", (i * 7) % 300)
        })
        .collect();
    s.execute(&format!("INSERT INTO t VALUES {}", values.join(", "))).unwrap();
    let plan = |s: &mut qube_sql::Session, q: &str| -> String {
        let r = s.execute(&format!("EXPLAIN {q}")).unwrap();
        r[0].rows.iter().map(|r| r[0].to_string()).collect::<Vec<_>>().join("\n")
    };
    let rows = |s: &mut qube_sql::Session, q: &str| s.execute(q).unwrap().remove(0).rows;
    // Each query against the same rows read with a column the index lacks
    // (a plain index scan or a sequential scan), then that column dropped.
    let check = |s: &mut qube_sql::Session, only: &str, full: &str| {
        let p = plan(s, only);
        assert!(p.contains("Index Only Scan"), "{only}: {p}");
        let p = plan(s, full);
        assert!(!p.contains("Index Only Scan"), "{full}: {p}");
        let want: Vec<Vec<Value>> = rows(s, full)
            .into_iter()
            .map(|mut r| {
                r.pop();
                r
            })
            .collect();
        assert_eq!(rows(s, only), want, "{only}");
    };
    let cases = [
        (
            "SELECT b FROM t WHERE b BETWEEN 10 AND 40",
            "SELECT b, d FROM t WHERE b BETWEEN 10 AND 40",
        ),
        ("SELECT b FROM t ORDER BY b DESC LIMIT 7", "SELECT b, d FROM t ORDER BY b DESC LIMIT 7"),
        ("SELECT a FROM t WHERE a = 42", "SELECT a, d FROM t WHERE a = 42"),
        ("SELECT a FROM t WHERE a = 4200", "SELECT a, d FROM t WHERE a = 4200"),
        (
            "SELECT c, b FROM t WHERE c = 'c1' AND b > 100 ORDER BY b",
            "SELECT c, b, d FROM t WHERE c = 'c1' AND b > 100 ORDER BY b",
        ),
        (
            "SELECT b + 1, upper(c) FROM t WHERE c = 'c3' ORDER BY b DESC LIMIT 5",
            "SELECT b + 1, upper(c), d FROM t WHERE c = 'c3' ORDER BY b DESC LIMIT 5",
        ),
        // Plain columns in table order: decoded straight into the output
        // row (`KeyCols::select`), a key column left out dropped, the key
        // rowid read from the entry, the index's column order undone.
        (
            "SELECT a, b FROM t ORDER BY b DESC LIMIT 7",
            "SELECT a, b, d FROM t ORDER BY b DESC LIMIT 7",
        ),
        (
            "SELECT a, c FROM t WHERE c = 'c1' ORDER BY b LIMIT 9",
            "SELECT a, c, d FROM t WHERE c = 'c1' ORDER BY b LIMIT 9",
        ),
        (
            "SELECT a FROM t WHERE c = 'c2' ORDER BY b DESC LIMIT 6",
            "SELECT a, d FROM t WHERE c = 'c2' ORDER BY b DESC LIMIT 6",
        ),
        (
            "SELECT b, c FROM t WHERE c = 'c3' ORDER BY b",
            "SELECT b, c, d FROM t WHERE c = 'c3' ORDER BY b",
        ),
        ("SELECT a, b FROM t WHERE b < 30", "SELECT a, b, d FROM t WHERE b < 30"),
    ];
    for (only, full) in cases {
        check(&mut s, only, full);
    }
    // NULLs in an index column come back as NULL.
    let r = rows(&mut s, "SELECT b FROM t WHERE c IS NULL AND b < 80 ORDER BY b");
    let r2 = rows(&mut s, "SELECT b FROM t WHERE d > -1 AND c IS NULL AND b < 80 ORDER BY b");
    assert_eq!(r, r2);
    // Not index-only: a column outside the index, a float index (its key
    // folds -0 and NaNs), a subquery, SELECT *.
    for q in [
        "SELECT b, c FROM t WHERE b < 5",
        "SELECT d FROM t ORDER BY d LIMIT 3",
        "SELECT b, (SELECT count(*) FROM t t2 WHERE t2.a = t.d) FROM t WHERE b < 5",
        "SELECT * FROM t WHERE a = 3",
    ] {
        assert!(!plan(&mut s, q).contains("Index Only"), "{q}: {}", plan(&mut s, q));
    }
    // Own uncommitted writes are seen, another session's are not, until
    // they commit; an UPDATE of the indexed column moves the entry.
    let mut other = db.session().unwrap();
    let q = "SELECT b FROM t WHERE b BETWEEN 1000 AND 1010 ORDER BY b";
    assert!(plan(&mut s, q).contains("Index Only Scan"));
    s.execute("BEGIN").unwrap();
    s.execute("INSERT INTO t VALUES (1000, 1003, 'x', 0), (1001, 1001, 'y', 0)").unwrap();
    s.execute("UPDATE t SET b = 1005 WHERE a = 3").unwrap();
    s.execute("DELETE FROM t WHERE a = 1001").unwrap();
    let ints = |v: &[i32]| v.iter().map(|&i| vec![Value::Int4(i)]).collect::<Vec<_>>();
    assert_eq!(rows(&mut s, q), ints(&[1003, 1005]));
    assert_eq!(rows(&mut other, q), ints(&[]));
    assert_eq!(rows(&mut other, "SELECT b FROM t WHERE b = 21"), ints(&[21]));
    s.execute("COMMIT").unwrap();
    assert_eq!(rows(&mut other, q), ints(&[1003, 1005]));
    assert_eq!(rows(&mut other, "SELECT b FROM t WHERE b = 21"), ints(&[]));
    // A prepared index-only query with parameters.
    let st = s.prepare("SELECT b FROM t WHERE b >= $1 ORDER BY b LIMIT $2").unwrap();
    let r = s.execute_prepared(&st, &[Value::Int8(1004), Value::Int8(5)]).unwrap();
    assert_eq!(r[0].rows, ints(&[1005]));
}

/// An index-only scan whose index and key rowid give every output column
/// reuses the rows handed back to it without setting them to NULL first:
/// each value is overwritten, so texts of every length (longer and
/// shorter than the one before, past the length reused buffers keep),
/// NULLs and integers at their extremes come back as a full read gives
/// them, forwards and backwards, across the growing batches.
#[test]
fn index_only_rows_reused_whole_read_as_fresh_ones() {
    use qube_sql::Value;
    let db = qube_sql::Database::memory().unwrap();
    let mut s = db.session().unwrap();
    s.execute(
        "CREATE TABLE u (id bigint PRIMARY KEY, s text, n int, x float8); \
         CREATE INDEX u_s ON u (s, n)",
    )
    .unwrap();
    let values: Vec<String> = (0..700i64)
        .map(|i| {
            let s = match i % 7 {
                0 => "NULL".to_string(),
                k => format!("'{}{i}'", "y".repeat(((i * 37) % 150) as usize / k as usize)),
            };
            let n = match i % 5 {
                0 => "NULL".to_string(),
                1 => (i32::MIN + i as i32).to_string(),
                2 => (i32::MAX - i as i32).to_string(),
                _ => i.to_string(),
            };
            let id = if i % 3 == 0 { i64::MIN + i } else { i * 1000 };
            format!("({id}, {s}, {n}, 0.5)")
        })
        .collect();
    s.execute(&format!("INSERT INTO u VALUES {}", values.join(", "))).unwrap();
    for (only, full) in [
        (
            "SELECT id, s, n FROM u ORDER BY s, n LIMIT 690",
            "SELECT id, s, n, x FROM u ORDER BY s, n LIMIT 690",
        ),
        (
            "SELECT id, s, n FROM u ORDER BY s DESC, n DESC LIMIT 690",
            "SELECT id, s, n, x FROM u ORDER BY s DESC, n DESC LIMIT 690",
        ),
        (
            "SELECT s, n FROM u WHERE s > 'y' ORDER BY s DESC, n DESC LIMIT 400",
            "SELECT s, n, x FROM u WHERE s > 'y' ORDER BY s DESC, n DESC LIMIT 400",
        ),
        (
            "SELECT n, id FROM u ORDER BY s, n LIMIT 690",
            "SELECT n, id, x FROM u ORDER BY s, n LIMIT 690",
        ),
    ] {
        let plan = s.execute(&format!("EXPLAIN {only}")).unwrap().remove(0).rows;
        let plan = plan.iter().map(|r| r[0].to_string()).collect::<Vec<_>>().join("\n");
        assert!(plan.contains("Index Only Scan"), "{only}: {plan}");
        let want: Vec<Vec<Value>> = s
            .execute(full)
            .unwrap()
            .remove(0)
            .rows
            .into_iter()
            .map(|mut r| {
                assert_eq!(r.pop(), Some(Value::Float8(0.5)));
                r
            })
            .collect();
        assert!(want.len() >= 400, "{full}");
        assert_eq!(s.execute(only).unwrap().remove(0).rows, want, "{only}");
    }
}

/// A table keyed by an integer primary key (key rowids) has that column in
/// every index entry (the entry's value is the rowid): a query reading an
/// index's columns and the key is index-only, for smallint, integer and
/// bigint keys down to their extremes, and sees key changes, deletes and
/// its own uncommitted writes; without key rowids it reads the rows.
#[test]
fn index_only_scans_read_the_key_rowid_from_entries() {
    use qube_sql::Value;
    let db = qube_sql::Database::memory().unwrap();
    let mut s = db.session().unwrap();
    let plan = |s: &mut qube_sql::Session, q: &str| -> String {
        let r = s.execute(&format!("EXPLAIN {q}")).unwrap();
        r[0].rows.iter().map(|r| r[0].to_string()).collect::<Vec<_>>().join("\n")
    };
    let rows = |s: &mut qube_sql::Session, q: &str| s.execute(q).unwrap().remove(0).rows;
    for (ty, lo, hi) in [
        ("smallint", i64::from(i16::MIN), i64::from(i16::MAX)),
        ("integer", i64::from(i32::MIN), i64::from(i32::MAX)),
        ("bigint", i64::MIN, i64::MAX),
    ] {
        s.execute(&format!(
            "DROP TABLE IF EXISTS k; CREATE TABLE k (id {ty} PRIMARY KEY, v int, w text); \
             CREATE INDEX k_v ON k (v)"
        ))
        .unwrap();
        let mut ids: Vec<i64> = (-50..50).map(|i| i * 7).collect();
        ids.extend([lo, lo + 1, hi - 1, hi]);
        let values: Vec<String> =
            ids.iter().enumerate().map(|(n, id)| format!("({id}, {}, 'w{n}')", n % 17)).collect();
        s.execute(&format!("INSERT INTO k VALUES {}", values.join(", "))).unwrap();
        for (only, full) in [
            (
                "SELECT id, v FROM k ORDER BY v DESC LIMIT 9",
                "SELECT id, v, w FROM k ORDER BY v DESC LIMIT 9",
            ),
            (
                "SELECT v, id FROM k WHERE v BETWEEN 3 AND 5 ORDER BY v, id",
                "SELECT v, id, w FROM k WHERE v BETWEEN 3 AND 5 ORDER BY v, id",
            ),
            (
                "SELECT id FROM k WHERE v = 0 AND id < 0 ORDER BY id",
                "SELECT id, w FROM k WHERE v = 0 AND id < 0 ORDER BY id",
            ),
        ] {
            assert!(
                plan(&mut s, only).contains("Index Only Scan"),
                "{ty}: {only}: {}",
                plan(&mut s, only)
            );
            assert!(!plan(&mut s, full).contains("Index Only Scan"), "{ty}: {full}");
            let want: Vec<Vec<Value>> = rows(&mut s, full)
                .into_iter()
                .map(|mut r| {
                    r.pop();
                    r
                })
                .collect();
            assert!(!want.is_empty(), "{ty}: {full}");
            assert_eq!(rows(&mut s, only), want, "{ty}: {only}");
        }
        // The extremes come back exactly, typed as the column.
        let r = rows(
            &mut s,
            &format!("SELECT id FROM k WHERE v >= 0 AND id IN ({lo}, {hi}) ORDER BY v, id"),
        );
        assert_eq!(r.len(), 2, "{ty}");
        let as_i64 = |v: &Value| match v {
            Value::Int2(x) => (i64::from(*x), "smallint"),
            Value::Int4(x) => (i64::from(*x), "integer"),
            Value::Int8(x) => (*x, "bigint"),
            other => panic!("{other:?}"),
        };
        let mut got: Vec<i64> = r.iter().map(|r| as_i64(&r[0]).0).collect();
        got.sort();
        assert_eq!(got, vec![lo, hi], "{ty}");
        assert!(r.iter().all(|r| as_i64(&r[0]).1 == ty), "{ty}: {r:?}");
    }
    // Key changes, deletes and own uncommitted writes (bigint table).
    let q = "SELECT id, v FROM k WHERE v = 16 ORDER BY id";
    assert!(plan(&mut s, q).contains("Index Only Scan"));
    let before = rows(&mut s, q);
    s.execute("BEGIN").unwrap();
    s.execute("UPDATE k SET id = id + 1000000 WHERE v = 16 AND id < 0").unwrap();
    s.execute("INSERT INTO k VALUES (123456789, 16, 'new')").unwrap();
    s.execute("DELETE FROM k WHERE v = 16 AND id = 0").unwrap();
    let mut other = db.session().unwrap();
    assert_eq!(rows(&mut other, q), before);
    let mine = rows(&mut s, q);
    let full: Vec<Vec<Value>> = rows(&mut s, "SELECT id, v, w FROM k WHERE v = 16 ORDER BY id")
        .into_iter()
        .map(|mut r| {
            r.pop();
            r
        })
        .collect();
    assert_eq!(mine, full);
    assert!(mine.contains(&vec![Value::Int8(123456789), Value::Int4(16)]));
    s.execute("COMMIT").unwrap();
    assert_eq!(rows(&mut other, q), mine);
    // Without key rowids (the key dropped, or not an integer) the key
    // column is not in the entries: the rows are read.
    s.execute("ALTER TABLE k DROP CONSTRAINT k_pkey").unwrap();
    assert!(!plan(&mut s, q).contains("Index Only Scan"), "{}", plan(&mut s, q));
    assert_eq!(rows(&mut s, q), mine);
    s.execute(
        "CREATE TABLE n (id numeric PRIMARY KEY, v int); CREATE INDEX n_v ON n (v); \
               INSERT INTO n VALUES (1.5, 1), (2.5, 2)",
    )
    .unwrap();
    let q = "SELECT id, v FROM n WHERE v = 2";
    assert!(!plan(&mut s, q).contains("Index Only Scan"), "{}", plan(&mut s, q));
    assert_eq!(rows(&mut s, q).len(), 1);
}

/// Rough figures for jsonb, arrays and uuid (run with `--ignored --nocapture`).
#[test]
#[ignore = "timing figures, not a check"]
fn json_array_uuid_figures() {
    use std::time::Instant;
    let db = qube_sql::Database::memory().unwrap();
    let mut s = db.session().unwrap();
    s.execute("CREATE TABLE d (id uuid PRIMARY KEY, body jsonb, tags text[])").unwrap();
    let n = 20_000;
    let t = Instant::now();
    for chunk in 0..n / 1000 {
        let rows: Vec<String> = (0..1000)
            .map(|k| {
                let i = chunk * 1000 + k;
                format!(
                    "(gen_random_uuid(), '{{\"n\": {i}, \"tag\": \"t{}\", \"a\": [1, 2, {{\"x\": \"y\"}}]}}', '{{a{},b}}')",
                    i % 10,
                    i % 7
                )
            })
            .collect();
        s.execute(&format!("INSERT INTO d VALUES {}", rows.join(","))).unwrap();
    }
    println!("insert {n} rows (uuid pk, jsonb, text[]): {:?}", t.elapsed());
    for q in [
        "SELECT count(*) FROM d WHERE body @> '{\"tag\": \"t3\"}'",
        "SELECT body ->> 'tag', count(*) FROM d GROUP BY 1",
        "SELECT count(*) FROM d WHERE (body ->> 'n')::int > 10000",
        "SELECT body FROM d ORDER BY body LIMIT 1",
        "SELECT count(DISTINCT body -> 'a') FROM d",
        "SELECT count(*) FROM d WHERE 'a3' = ANY(tags)",
        "SELECT tags, count(*) FROM d GROUP BY tags",
        "SELECT count(*) FROM d, unnest(ARRAY[1, 2, 3]) u",
        "SELECT count(*) FROM (SELECT id FROM d ORDER BY id) s",
    ] {
        let t = Instant::now();
        let r = s.execute(q).unwrap();
        println!("{:>8.1?}  {q}  ({} rows)", t.elapsed(), r[0].rows.len());
    }
}

/// Output column names as PostgreSQL gives them (the .slt files do not check names).
#[test]
fn column_names_of_array_and_json_expressions() {
    let db = qube_sql::Database::memory().unwrap();
    let mut s = db.session().unwrap();
    let r = s
        .execute(
            "SELECT ARRAY[1], (ARRAY[1])[1], '{}'::jsonb, '{1}'::int[], \
             'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid, ARRAY(SELECT 1), t.a[1], t.a[1]::text \
             FROM (SELECT ARRAY[1] AS a) t",
        )
        .unwrap();
    let names: Vec<&str> = r[0].columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["array", "array", "jsonb", "int4", "uuid", "array", "a", "a"]);
    let r = s.execute("SELECT * FROM jsonb_each('{\"a\": 1}'), unnest(ARRAY[1]) u").unwrap();
    let names: Vec<&str> = r[0].columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["key", "value", "u"]);
}

/// Temporary tables belong to their session: others do not see them, they
/// hide a permanent table of the same name, and they are gone when the
/// session ends (and any a crash left are dropped at the next open).
#[test]
fn temporary_tables_belong_to_their_session() {
    use qube_sql::Value;
    let dir = tempfile::tempdir().unwrap();
    {
        let db = qube_sql::Database::open(dir.path()).unwrap();
        let mut a = db.session().unwrap();
        let mut b = db.session().unwrap();
        a.execute("CREATE TABLE t(x int); INSERT INTO t VALUES (1)").unwrap();
        a.execute("CREATE TEMP TABLE t(x int); INSERT INTO t VALUES (10), (20)").unwrap();
        let count =
            |s: &mut qube_sql::Session, q: &str| s.execute(q).unwrap()[0].rows[0][0].clone();
        assert_eq!(count(&mut a, "SELECT count(*) FROM t"), Value::Int8(2));
        assert_eq!(count(&mut a, "SELECT count(*) FROM public.t"), Value::Int8(1));
        assert_eq!(count(&mut b, "SELECT count(*) FROM t"), Value::Int8(1));
        b.execute("CREATE TEMP TABLE only_b(y int)").unwrap();
        assert_eq!(a.execute("SELECT * FROM only_b").unwrap_err().sqlstate(), "42P01");
        drop(a);
        // a's temporary table went with it.
        let mut c = db.session().unwrap();
        assert_eq!(count(&mut c, "SELECT count(*) FROM t"), Value::Int8(1));
        drop(b);
    }
    let db = qube_sql::Database::open(dir.path()).unwrap();
    let mut s = db.session().unwrap();
    let r = s.execute("SELECT count(*) FROM only_b");
    assert_eq!(r.unwrap_err().sqlstate(), "42P01");
}

/// EXPLAIN estimates each node's rows from the tables' sizes.
#[test]
fn explain_shows_row_estimates() {
    let db = qube_sql::Database::memory().unwrap();
    let mut s = db.session().unwrap();
    s.execute("CREATE TABLE t(id int PRIMARY KEY, g int)").unwrap();
    s.execute("INSERT INTO t SELECT i, i % 10 FROM generate_series(1, 500) i").unwrap();
    let plan = |s: &mut qube_sql::Session, q: &str| -> Vec<String> {
        let r = s.execute(&format!("EXPLAIN {q}")).unwrap();
        r[0].rows.iter().map(|r| r[0].to_string()).collect()
    };
    let p = plan(&mut s, "SELECT * FROM t");
    assert!(p.iter().all(|l| l.contains("(rows=")), "{p:?}");
    assert!(p.last().unwrap().contains("Seq Scan on t  (rows=500)"), "{p:?}");
    let p = plan(&mut s, "SELECT * FROM t WHERE id = 7");
    assert!(p.last().unwrap().ends_with("(rows=1)"), "{p:?}");
    let p = plan(&mut s, "SELECT * FROM t ORDER BY id LIMIT 3");
    assert!(p[0].starts_with("Limit") && p[0].ends_with("(rows=3)"), "{p:?}");
}

/// `execute_streaming` hands rows over as they are produced: the same
/// rows `execute` collects, columns first; an error from the receiver
/// stops the statement; other statements run as usual.
#[test]
fn results_can_be_streamed() {
    use qube_sql::{Error, Value};
    let db = qube_sql::Database::memory().unwrap();
    let mut s = db.session().unwrap();
    s.execute("CREATE TABLE t(id int PRIMARY KEY, v text)").unwrap();
    s.execute("INSERT INTO t SELECT i, 'v' || i FROM generate_series(1, 5000) i").unwrap();
    let q = "SELECT id, v FROM t WHERE id % 7 = 0 ORDER BY id";
    let collected = s.execute(q).unwrap().remove(0);
    let mut streamed = Vec::new();
    let mut names = Vec::new();
    let r = s
        .execute_streaming(q, &[], &mut |cols, row| {
            if names.is_empty() {
                names = cols.iter().map(|c| c.name.clone()).collect();
            }
            streamed.push(row.to_vec());
            Ok(())
        })
        .unwrap();
    assert_eq!(streamed, collected.rows);
    assert_eq!(names, vec!["id", "v"]);
    assert_eq!(r[0].tag, collected.tag);
    assert!(r[0].rows.is_empty());
    // A receiver that gives up after 10 rows stops the scan there.
    let mut seen = 0;
    let e = s
        .execute_streaming("SELECT * FROM t", &[], &mut |_, _| {
            seen += 1;
            if seen == 10 { Err(Error::user("57014", "client went away")) } else { Ok(()) }
        })
        .unwrap_err();
    assert_eq!((e.sqlstate(), seen), ("57014", 10));
    // Non-queries and prepared statements.
    let p = s.prepare("SELECT v FROM t WHERE id = $1").unwrap();
    let mut got = Vec::new();
    s.execute_prepared_streaming(&p, &[Value::Int4(42)], &mut |_, row| {
        got.push(row.to_vec());
        Ok(())
    })
    .unwrap();
    assert_eq!(got, vec![vec![Value::Text("v42".into())]]);
    let r =
        s.execute_streaming("UPDATE t SET v = 'x' WHERE id < 3", &[], &mut |_, _| Ok(())).unwrap();
    assert_eq!(r[0].tag, "UPDATE 2");
}

/// Rows lent to a streaming receiver are decoded into again for later
/// rows (`Stream::recycle`): what the receiver copied stays what
/// `execute` collects, through filters, projections, LIMIT and OFFSET, over
/// table scans, index scans and index-only scans, and across executions of
/// one prepared statement (whose rows come from the thread's spare ones).
#[test]
fn streamed_rows_survive_their_buffers_reuse() {
    let db = qube_sql::Database::memory().unwrap();
    let mut s = db.session().unwrap();
    s.execute("CREATE TABLE t(id int PRIMARY KEY, g int, v text, n int)").unwrap();
    s.execute("CREATE INDEX t_g ON t (g)").unwrap();
    s.execute(
        "INSERT INTO t SELECT i, i % 97, repeat('x', i % 50) || i, CASE WHEN i % 5 = 0 THEN NULL ELSE i END \
         FROM generate_series(1, 3000) i",
    )
    .unwrap();
    let queries = [
        "SELECT * FROM t WHERE n IS NULL LIMIT 40 OFFSET 7",
        "SELECT v, id FROM t WHERE id % 3 = 0 LIMIT 2000",
        "SELECT id, v FROM t WHERE g = 5 OFFSET 3",
        "SELECT g, id FROM t ORDER BY g DESC LIMIT 25 OFFSET 10",
        "SELECT g FROM t ORDER BY g LIMIT 1500",
        "SELECT id, n FROM t WHERE g BETWEEN 3 AND 9 AND n > 100 LIMIT 50",
        "SELECT * FROM t LIMIT 0",
        "SELECT * FROM t LIMIT NULL OFFSET 2990",
        "SELECT upper(v), id + 1 FROM t WHERE g < 4 LIMIT 300 OFFSET 1",
    ];
    for q in queries {
        let want = s.execute(q).unwrap().remove(0).rows;
        let p = s.prepare(q).unwrap();
        for _ in 0..3 {
            let mut got = Vec::new();
            let r = s
                .execute_prepared_streaming(&p, &[], &mut |_, row| {
                    got.push(row.to_vec());
                    Ok(())
                })
                .unwrap();
            assert_eq!(got, want, "{q}");
            assert_eq!(r[0].tag, format!("SELECT {}", want.len()), "{q}");
        }
    }
    assert_eq!(s.execute("SELECT g FROM t ORDER BY g LIMIT 1500").unwrap()[0].rows.len(), 1500);
    for (q, code) in [("SELECT * FROM t LIMIT -1", "2201W"), ("SELECT * FROM t OFFSET -1", "2201X")]
    {
        let e = s.execute_streaming(q, &[], &mut |_, _| Ok(())).unwrap_err();
        assert_eq!(e.sqlstate(), code, "{q}");
    }
}

/// A prepared INSERT binds once, and again after any DDL: new columns,
/// defaults, indexes and constraints apply to the next execution.
#[test]
fn prepared_insert_rebinds_after_ddl() {
    use qube_sql::Value;
    let db = qube_sql::Database::memory().unwrap();
    let mut s = db.session().unwrap();
    s.execute("CREATE TABLE t (a int, b text)").unwrap();
    let ins = s.prepare("INSERT INTO t VALUES ($1, $2)").unwrap();
    let run = |s: &mut qube_sql::Session, a: i64, b: &str| {
        s.execute_prepared(&ins, &[Value::Int8(a), Value::Text(b.into())])
    };
    for i in 0..3 {
        run(&mut s, i, "x").unwrap();
    }
    s.execute("ALTER TABLE t ADD COLUMN c int DEFAULT 7").unwrap();
    run(&mut s, 10, "y").unwrap();
    let r = s.execute("SELECT c FROM t WHERE a = 10").unwrap();
    assert_eq!(r[0].rows, vec![vec![Value::Int4(7)]]);
    s.execute("CREATE UNIQUE INDEX t_a ON t (a)").unwrap();
    assert_eq!(run(&mut s, 10, "z").unwrap_err().sqlstate(), "23505");
    // Inside a transaction that changes the catalog, the statement is bound afresh.
    s.execute("BEGIN").unwrap();
    s.execute("ALTER TABLE t ADD COLUMN d text DEFAULT 'dd'").unwrap();
    run(&mut s, 20, "w").unwrap();
    s.execute("COMMIT").unwrap();
    let r = s.execute("SELECT d FROM t WHERE a = 20").unwrap();
    assert_eq!(r[0].rows, vec![vec![Value::Text("dd".into())]]);
    s.execute("DROP TABLE t").unwrap();
    assert_eq!(run(&mut s, 1, "v").unwrap_err().sqlstate(), "42P01");
    s.execute("CREATE TABLE t (b text, a bigint NOT NULL DEFAULT 0)").unwrap();
    assert_eq!(run(&mut s, 1, "v").unwrap_err().sqlstate(), "22P02");
    s.execute("DROP TABLE t; CREATE TABLE t (a bigint, b text)").unwrap();
    run(&mut s, 1, "v").unwrap();
    let r = s.execute("SELECT a, b FROM t").unwrap();
    assert_eq!(r[0].rows, vec![vec![Value::Int8(1), Value::Text("v".into())]]);
}

/// The bulk load of `bench sql` line 3 (a prepared one-row INSERT into a
/// table keyed by its integer primary key, with an index on a column in
/// random order, many rows in one transaction) and what its fast paths
/// (parameters cast in place, unique checks that remember the empty key
/// range past the table's end, the write set's hash index) must still
/// refuse or undo: a duplicate of a row of the same transaction or of a
/// committed one, a key out of order, NULL in a NOT NULL column, a value
/// out of the column's range, a savepoint rolled back, a rollback, and
/// another session's row committed inside the range meanwhile.
#[test]
fn prepared_bulk_insert_keeps_every_check() {
    use qube_sql::Value;
    let dir = tempfile::tempdir().unwrap();
    let db = qube_sql::Database::open(dir.path()).unwrap();
    let mut s = db.session().unwrap();
    let mut other = db.session().unwrap();
    s.execute(
        "CREATE TABLE t (id integer PRIMARY KEY, grp integer NOT NULL, val integer NOT NULL, \
         name text, d int DEFAULT 5); CREATE INDEX t_val ON t (val); \
         INSERT INTO t VALUES (-5, 0, -5, 'before', 0)",
    )
    .unwrap();
    let ins = s.prepare("INSERT INTO t VALUES ($1, $2, $3, $4)").unwrap();
    let row = |i: i64| {
        [
            Value::Int8(i),
            Value::Int8(i % 7),
            Value::Int8((i * 7919) % 3000),
            Value::Text(format!("n{i}")),
        ]
    };
    let code =
        |r: qube_common::Result<Vec<qube_sql::QueryResult>>| r.unwrap_err().sqlstate().to_string();
    s.execute("BEGIN").unwrap();
    for i in 0..2000 {
        let r = s.execute_prepared(&ins, &row(i)).unwrap();
        assert_eq!(r[0].tag, "INSERT 0 1");
    }
    s.execute("SAVEPOINT a").unwrap();
    assert_eq!(code(s.execute_prepared(&ins, &row(1500))), "23505", "own row");
    s.execute("ROLLBACK TO SAVEPOINT a").unwrap();
    assert_eq!(code(s.execute_prepared(&ins, &row(-5))), "23505", "committed row, out of order");
    s.execute("ROLLBACK TO SAVEPOINT a").unwrap();
    let mut bad = row(2000);
    bad[2] = Value::Null;
    assert_eq!(code(s.execute_prepared(&ins, &bad)), "23502");
    s.execute("ROLLBACK TO SAVEPOINT a").unwrap();
    bad = row(2000);
    bad[1] = Value::Int8(1 << 40);
    assert_eq!(code(s.execute_prepared(&ins, &bad)), "22003");
    s.execute("ROLLBACK TO SAVEPOINT a").unwrap();
    // Rows written and rolled back under a savepoint leave no trace (their
    // row locks stay held, as PostgreSQL's do).
    for i in 5000..5100 {
        s.execute_prepared(&ins, &row(i)).unwrap();
    }
    s.execute("ROLLBACK TO SAVEPOINT a").unwrap();
    // Another session commits a row ahead of the load.
    other.execute("INSERT INTO t VALUES (2050, 1, 9999, 'other', 1)").unwrap();
    for i in 2000..2100 {
        let r = s.execute_prepared(&ins, &row(i));
        if i == 2050 {
            assert_eq!(code(r), "23505", "the other session's row");
            s.execute("ROLLBACK TO SAVEPOINT a").unwrap();
            for j in 2000..2050 {
                s.execute_prepared(&ins, &row(j)).unwrap();
            }
        } else {
            r.unwrap();
        }
    }
    s.execute("COMMIT").unwrap();
    let r = s.execute("SELECT count(*), sum(id), min(d), max(d) FROM t").unwrap();
    let n = 1 + 2000 + 99 + 1;
    let sum: i64 = (0..2100).filter(|&i| i != 2050).sum::<i64>() + 2050 - 5;
    assert_eq!(
        r[0].rows,
        vec![vec![Value::Int8(n), Value::Int8(sum), Value::Int4(0), Value::Int4(5)]]
    );
    // The index agrees with the rows.
    let r = s.execute("SELECT id FROM t WHERE val = 9999").unwrap();
    assert_eq!(r[0].rows, vec![vec![Value::Int4(2050)]]);
    let r = s.execute("SELECT count(*) FROM t WHERE val BETWEEN 0 AND 2999").unwrap();
    assert_eq!(r[0].rows, vec![vec![Value::Int8(2099)]]);
    // A rolled-back load leaves nothing; the same keys load again.
    s.execute("BEGIN").unwrap();
    for i in 3000..3500 {
        s.execute_prepared(&ins, &row(i)).unwrap();
    }
    s.execute("ROLLBACK").unwrap();
    s.execute("BEGIN").unwrap();
    for i in 3000..3500 {
        s.execute_prepared(&ins, &row(i)).unwrap();
    }
    s.execute("COMMIT").unwrap();
    let r = s.execute("SELECT count(*) FROM t WHERE id >= 3000").unwrap();
    assert_eq!(r[0].rows, vec![vec![Value::Int8(500)]]);
}

/// A prepared UPDATE or DELETE binds once, and again after any DDL: a new
/// CHECK, a new index (used, and kept up to date), a new foreign key and a
/// dropped or recreated table apply to the next execution; a search path
/// that now finds another table does too.
#[test]
fn prepared_update_and_delete_rebind_after_ddl() {
    use qube_sql::Value;
    let db = qube_sql::Database::memory().unwrap();
    let mut s = db.session().unwrap();
    s.execute("CREATE TABLE t (a int PRIMARY KEY, b int, c text); INSERT INTO t SELECT g, g * 10, 'x' FROM generate_series(1, 5) g")
        .unwrap();
    let upd = s.prepare("UPDATE t SET b = b + $2 WHERE a = $1 RETURNING b").unwrap();
    let del = s.prepare("DELETE FROM t WHERE b = $1 RETURNING a").unwrap();
    let up = |s: &mut qube_sql::Session, a: i32, d: i32| {
        s.execute_prepared(&upd, &[Value::Int4(a), Value::Int4(d)])
    };
    for _ in 0..3 {
        up(&mut s, 1, 1).unwrap();
    }
    assert_eq!(up(&mut s, 1, 1).unwrap()[0].rows, vec![vec![Value::Int4(14)]]);
    assert_eq!(up(&mut s, 99, 1).unwrap()[0].tag, "UPDATE 0");
    s.execute("ALTER TABLE t ADD CONSTRAINT small CHECK (b < 100)").unwrap();
    assert_eq!(up(&mut s, 2, 100).unwrap_err().sqlstate(), "23514");
    // An index created after the first runs is used and maintained.
    s.execute("CREATE INDEX t_b ON t (b)").unwrap();
    up(&mut s, 2, 5).unwrap();
    let r = s.execute("SELECT a FROM t WHERE b = 25").unwrap();
    assert_eq!(r[0].rows, vec![vec![Value::Int4(2)]]);
    assert_eq!(
        s.execute_prepared(&del, &[Value::Int4(25)]).unwrap()[0].rows,
        vec![vec![Value::Int4(2)]]
    );
    assert_eq!(s.execute_prepared(&del, &[Value::Int4(25)]).unwrap()[0].tag, "DELETE 0");
    // A foreign key added later restricts the DELETE.
    s.execute("CREATE TABLE child (r int REFERENCES t (a)); INSERT INTO child VALUES (3)").unwrap();
    assert_eq!(s.execute_prepared(&del, &[Value::Int4(30)]).unwrap_err().sqlstate(), "23503");
    // Inside a transaction that changes the catalog, the statement is bound afresh.
    s.execute("BEGIN; ALTER TABLE t DROP CONSTRAINT small").unwrap();
    assert_eq!(up(&mut s, 4, 500).unwrap()[0].rows, vec![vec![Value::Int4(540)]]);
    s.execute("ROLLBACK").unwrap();
    assert_eq!(up(&mut s, 4, 500).unwrap_err().sqlstate(), "23514");
    s.execute("DROP TABLE child; DROP TABLE t").unwrap();
    assert_eq!(up(&mut s, 1, 1).unwrap_err().sqlstate(), "42P01");
    assert_eq!(s.execute_prepared(&del, &[Value::Int4(1)]).unwrap_err().sqlstate(), "42P01");
    s.execute("CREATE TABLE t (a int, b int); INSERT INTO t VALUES (7, 1), (7, 2)").unwrap();
    assert_eq!(up(&mut s, 7, 1).unwrap()[0].tag, "UPDATE 2");
    s.execute("ALTER TABLE t RENAME COLUMN b TO bb").unwrap();
    assert_eq!(up(&mut s, 7, 1).unwrap_err().sqlstate(), "42703");
    // A table earlier on the search path, created later, is the target now.
    s.execute("ALTER TABLE t RENAME COLUMN bb TO b; CREATE SCHEMA s1; CREATE TABLE s1.t (a int, b int); INSERT INTO s1.t VALUES (7, 0); SET search_path TO s1, public")
        .unwrap();
    assert_eq!(up(&mut s, 7, 1).unwrap()[0].rows, vec![vec![Value::Int4(1)]]);
    let r = s.execute("SELECT b FROM public.t ORDER BY b").unwrap();
    assert_eq!(r[0].rows, vec![vec![Value::Int4(2)], vec![Value::Int4(3)]]);
}

/// The session keeps its resolved search_path between statements; a
/// schema another session creates later still joins the path.
#[test]
fn search_path_follows_other_sessions_ddl() {
    use qube_sql::Value;
    let db = qube_sql::Database::memory().unwrap();
    let mut a = db.session().unwrap();
    let mut b = db.session().unwrap();
    a.execute("CREATE TABLE t(x int); INSERT INTO t VALUES (1); SET search_path TO s1, public")
        .unwrap();
    assert_eq!(a.execute("SELECT x FROM t").unwrap()[0].rows[0][0], Value::Int4(1));
    b.execute("CREATE SCHEMA s1; CREATE TABLE s1.t(x int); INSERT INTO s1.t VALUES (2)").unwrap();
    assert_eq!(a.execute("SELECT x FROM t").unwrap()[0].rows[0][0], Value::Int4(2));
    b.execute("DROP SCHEMA s1 CASCADE").unwrap();
    assert_eq!(a.execute("SELECT x FROM t").unwrap()[0].rows[0][0], Value::Int4(1));
}

/// Beyond `work_mem`, sorts and hash aggregates spill to unnamed files in
/// the data directory's `tmp/` and give the same answers as in memory;
/// aggregate states that cannot spill are bounded by the value limit.
#[test]
fn sorts_and_aggregates_spill_beyond_work_mem() {
    let dir = tempfile::tempdir().unwrap();
    let db = qube_sql::Database::open(dir.path()).unwrap();
    let mut s = db.session().unwrap();
    s.execute(
        "CREATE TABLE t (id int PRIMARY KEY, x int, s text);
         INSERT INTO t SELECT g, (g * 7919) % 10007, 'row ' || g FROM generate_series(1, 30000) g",
    )
    .unwrap();
    let queries = [
        "SELECT id, x FROM t ORDER BY x DESC, id",
        "SELECT s FROM t ORDER BY s LIMIT 5 OFFSET 20000",
        "SELECT x % 9000 AS g, count(*), sum(id), min(s) FROM t GROUP BY 1 ORDER BY 1",
        "SELECT id % 7000 AS g, string_agg(s, ',' ORDER BY id) FROM t GROUP BY 1 ORDER BY 1",
        "SELECT count(DISTINCT x % 5000), count(*) FROM t",
        "SELECT DISTINCT x % 3 FROM t ORDER BY 1",
    ];
    let run = |s: &mut qube_sql::Session| -> Vec<Vec<Vec<qube_sql::Value>>> {
        queries.iter().map(|q| s.execute(q).unwrap().pop().unwrap().rows).collect()
    };
    let in_memory = run(&mut s);
    assert_eq!(in_memory[0].len(), 30000);
    let before = qube_sql::exec::spill::spilled();
    s.execute("SET work_mem = '64kB'").unwrap();
    assert_eq!(
        s.execute("SHOW work_mem").unwrap()[0].rows[0][0],
        qube_sql::Value::Text("64kB".into())
    );
    let spilled = run(&mut s);
    let after = qube_sql::exec::spill::spilled();
    assert!(after.0 > before.0 + 10, "expected spill files: {before:?} → {after:?}");
    for (q, (a, b)) in queries.iter().zip(in_memory.iter().zip(&spilled)) {
        assert_eq!(a, b, "{q}");
    }
    // The files are unnamed: nothing is left in tmp/.
    let tmp = dir.path().join("tmp");
    assert!(tmp.is_dir());
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
    // Streamed results come out of the merge too.
    let mut n = 0;
    let mut last = -1;
    s.execute_streaming("SELECT x FROM t ORDER BY x", &[], &mut |_, row| {
        let qube_sql::Value::Int4(x) = row[0] else { panic!("{row:?}") };
        assert!(x >= last);
        last = x;
        n += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(n, 30000);
    // Bad values are 22023 and leave the setting alone.
    for bad in ["'4mb'", "'10kB'", "'abc'", "'-1'"] {
        let e = s.execute(&format!("SET work_mem = {bad}")).unwrap_err();
        assert_eq!(e.sqlstate(), "22023", "{bad}: {e}");
    }
    assert_eq!(
        s.execute("SHOW work_mem").unwrap()[0].rows[0][0],
        qube_sql::Value::Text("64kB".into())
    );
    s.execute("RESET work_mem").unwrap();
    assert_eq!(
        s.execute("SHOW work_mem").unwrap()[0].rows[0][0],
        qube_sql::Value::Text("4MB".into())
    );
    // One group's growing state cannot spill: the value limit stops it.
    db.set_query_value_limit(10_000);
    let e = s.execute("SELECT array_agg(s) FROM t").unwrap_err();
    assert_eq!(e.sqlstate(), "53200", "{e}");
    assert!(s.execute("SELECT count(*) FROM t").is_ok());
}

/// Queries use expression indexes for conditions on their expressions, and
/// partial indexes only when the query's WHERE includes the index's; the
/// answers agree with a scan, and writes through them keep them right.
#[test]
fn expression_and_partial_indexes_are_used() {
    use qube_sql::Value;
    let db = qube_sql::Database::memory().unwrap();
    let mut s = db.session().unwrap();
    s.execute(
        "CREATE TABLE u (id int PRIMARY KEY, email text, n int, deleted boolean NOT NULL DEFAULT false);
         INSERT INTO u SELECT g, 'User' || g || '@X.org', g % 10, g % 4 = 0 FROM generate_series(1, 400) g;
         CREATE UNIQUE INDEX u_email ON u (lower(email));
         CREATE INDEX u_n2 ON u ((n * 2));
         CREATE INDEX u_live_n ON u (n) WHERE NOT deleted;",
    )
    .unwrap();
    let plan = |s: &mut qube_sql::Session, q: &str| -> String {
        let r = s.execute(&format!("EXPLAIN {q}")).unwrap();
        r[0].rows.iter().map(|r| r[0].to_string()).collect::<Vec<_>>().join("\n")
    };
    let rows = |s: &mut qube_sql::Session, q: &str| s.execute(q).unwrap().remove(0).rows;
    let q = "SELECT id FROM u WHERE lower(email) = 'user42@x.org'";
    assert!(plan(&mut s, q).contains("lower(email) = …"), "{}", plan(&mut s, q));
    assert_eq!(rows(&mut s, q), vec![vec![Value::Int4(42)]]);
    assert_eq!(
        rows(&mut s, "SELECT id FROM u WHERE 'user7@x.org' = lower(email)"),
        vec![vec![Value::Int4(7)]]
    );
    assert!(rows(&mut s, "SELECT id FROM u WHERE lower(email) = 'User7@X.org'").is_empty());
    let q = "SELECT count(*) FROM u WHERE n * 2 BETWEEN 4 AND 8";
    assert!(plan(&mut s, q).contains("in range"), "{}", plan(&mut s, q));
    assert_eq!(rows(&mut s, q), vec![vec![Value::Int8(120)]]);
    assert_eq!(
        rows(&mut s, "SELECT count(*) FROM u WHERE n * 2 > 15"),
        vec![vec![Value::Int8(80)]]
    );
    // The partial index serves only queries that imply its WHERE.
    let q = "SELECT count(*) FROM u WHERE n = 4 AND NOT deleted";
    assert!(plan(&mut s, q).contains("Index Scan"), "{}", plan(&mut s, q));
    assert_eq!(rows(&mut s, q), vec![vec![Value::Int8(20)]]);
    let q = "SELECT count(*) FROM u WHERE n = 3";
    assert!(plan(&mut s, q).contains("Seq Scan"), "{}", plan(&mut s, q));
    assert_eq!(rows(&mut s, q), vec![vec![Value::Int8(40)]]);
    assert_eq!(
        rows(&mut s, "SELECT count(*) FROM u WHERE n = 4 AND deleted"),
        vec![vec![Value::Int8(20)]]
    );
    // Writes found through the indexes keep them right.
    s.execute("UPDATE u SET email = 'moved@x.org' WHERE lower(email) = 'user42@x.org'").unwrap();
    assert!(rows(&mut s, "SELECT id FROM u WHERE lower(email) = 'user42@x.org'").is_empty());
    assert_eq!(
        rows(&mut s, "SELECT id FROM u WHERE lower(email) = 'moved@x.org'"),
        vec![vec![Value::Int4(42)]]
    );
    s.execute("UPDATE u SET deleted = true WHERE n = 4 AND NOT deleted").unwrap();
    assert_eq!(
        rows(&mut s, "SELECT count(*) FROM u WHERE n = 4 AND NOT deleted"),
        vec![vec![Value::Int8(0)]]
    );
    assert_eq!(rows(&mut s, "SELECT count(*) FROM u WHERE n = 4"), vec![vec![Value::Int8(40)]]);
    s.execute("DELETE FROM u WHERE n * 2 = 0").unwrap();
    assert_eq!(rows(&mut s, "SELECT count(*) FROM u"), vec![vec![Value::Int8(360)]]);
    let e = s.execute("INSERT INTO u (id, email) VALUES (1000, 'MOVED@x.org')").unwrap_err();
    assert_eq!(e.sqlstate(), "23505");
    // Parameters in prepared statements reach the index too.
    let p = s.prepare("SELECT id FROM u WHERE lower(email) = $1").unwrap();
    let r = s.execute_prepared(&p, &[Value::Text("user43@x.org".into())]).unwrap();
    assert_eq!(r[0].rows, vec![vec![Value::Int4(43)]]);
}

/// WHERE conditions on an outer join's preserved side, and ON conditions
/// on its nullable side, are applied below the join (reaching indexes); a
/// WHERE that rejects the nullable side's NULLs makes the join inner; and
/// equalities make it a hash join.
#[test]
fn outer_join_conditions_are_pushed_down() {
    let db = qube_sql::Database::memory().unwrap();
    let mut s = db.session().unwrap();
    s.execute(
        "CREATE TABLE a (id int PRIMARY KEY, v text);
         CREATE TABLE b (id int PRIMARY KEY, aid int, k int);
         CREATE INDEX b_k ON b (k);",
    )
    .unwrap();
    let plan = |s: &mut qube_sql::Session, q: &str| -> String {
        let r = s.execute(&format!("EXPLAIN {q}")).unwrap();
        r[0].rows.iter().map(|r| r[0].to_string()).collect::<Vec<_>>().join("\n")
    };
    let p = plan(&mut s, "SELECT * FROM a LEFT JOIN b ON a.id = b.aid WHERE a.id = 5");
    assert!(p.contains("Hash Left Join") && p.contains("Index Scan on a"), "{p}");
    let p = plan(&mut s, "SELECT * FROM a LEFT JOIN b ON a.id = b.aid AND b.k = 3");
    assert!(p.contains("Index Scan on b") && p.contains("(k = …)"), "{p}");
    let p = plan(&mut s, "SELECT * FROM a LEFT JOIN b ON a.id = b.aid WHERE b.k = 3");
    assert!(p.contains("Hash Inner Join") && p.contains("Index Scan on b"), "{p}");
    // IS NULL keeps the padded rows: the join stays outer, the filter above.
    let p = plan(&mut s, "SELECT * FROM a LEFT JOIN b ON a.id = b.aid WHERE b.k IS NULL");
    assert!(p.contains("Hash Left Join") && p.starts_with("Project"), "{p}");
    let p = plan(&mut s, "SELECT * FROM a FULL JOIN b ON a.id = b.aid WHERE a.id = 1");
    assert!(p.contains("Hash Left Join") && p.contains("Index Scan on a"), "{p}");
    let p = plan(&mut s, "SELECT * FROM a LEFT JOIN b ON a.id < b.aid");
    assert!(p.contains("Nested Loop Left Join"), "{p}");
}

/// statement_timeout and a Canceller stop a running statement with 57014;
/// the session, its transaction rules and other statements go on.
#[test]
fn statements_can_be_cancelled_and_time_out() {
    use qube_sql::Value;
    let db = qube_sql::Database::memory().unwrap();
    let mut s = db.session().unwrap();
    assert_eq!(s.execute("SHOW statement_timeout").unwrap()[0].rows[0][0], Value::Text("0".into()));
    s.execute("SET statement_timeout = '50ms'").unwrap();
    assert_eq!(
        s.execute("SHOW statement_timeout").unwrap()[0].rows[0][0],
        Value::Text("50ms".into())
    );
    s.execute("CREATE TABLE big AS SELECT g FROM generate_series(1, 3000) g").unwrap();
    let slow = "SELECT count(*) FROM big a, big b WHERE a.g + b.g = 7";
    let e = s.execute(slow).unwrap_err();
    assert_eq!(e.sqlstate(), "57014", "{e}");
    assert!(e.to_string().contains("statement timeout"), "{e}");
    // Inside a transaction block the error fails the transaction.
    s.execute("BEGIN").unwrap();
    assert_eq!(s.execute(slow).unwrap_err().sqlstate(), "57014");
    assert_eq!(s.execute("SELECT 1").unwrap_err().sqlstate(), "25P02");
    s.execute("ROLLBACK").unwrap();
    for bad in ["'5 parsecs'", "'-1'", "'abc'"] {
        assert_eq!(
            s.execute(&format!("SET statement_timeout = {bad}")).unwrap_err().sqlstate(),
            "22023",
            "{bad}"
        );
    }
    s.execute("SET statement_timeout = '1min'").unwrap();
    assert_eq!(
        s.execute("SHOW statement_timeout").unwrap()[0].rows[0][0],
        Value::Text("1min".into())
    );
    s.execute("RESET statement_timeout").unwrap();
    // A cancel from another thread stops the statement it is running.
    let c = s.canceller();
    let t = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(100));
        c.cancel();
    });
    let e = s.execute("SELECT count(*) FROM generate_series(1, 3000) a, generate_series(1, 3000) b WHERE a + b = 7").unwrap_err();
    t.join().unwrap();
    assert_eq!(e.sqlstate(), "57014", "{e}");
    assert!(e.to_string().contains("user request"), "{e}");
    // A cancel between statements does not touch the next one.
    s.canceller().cancel();
    assert_eq!(
        s.execute("SELECT count(*) FROM generate_series(1, 5000)").unwrap()[0].rows[0][0],
        Value::Int8(5000)
    );
}

/// The statements of one multi-statement string share an implicit
/// transaction, as PostgreSQL runs a simple Query message: an error rolls
/// all of them back; COMMIT ends the block; BEGIN makes it explicit.
#[test]
fn multi_statement_strings_run_in_an_implicit_transaction() {
    use qube_sql::Value;
    let db = qube_sql::Database::memory().unwrap();
    let mut s = db.session().unwrap();
    s.execute("CREATE TABLE t (x int)").unwrap();
    let count = |s: &mut qube_sql::Session| {
        s.execute("SELECT count(*) FROM t").unwrap()[0].rows[0][0].clone()
    };
    assert_eq!(s.execute("INSERT INTO t VALUES (1); SELECT 1/0").unwrap_err().sqlstate(), "22012");
    assert_eq!(count(&mut s), Value::Int8(0));
    assert_eq!(s.transaction_status(), (false, false));
    // DDL too.
    assert!(s.execute("CREATE TABLE u (y int); INSERT INTO u VALUES ('x')").is_err());
    assert_eq!(s.execute("SELECT * FROM u").unwrap_err().sqlstate(), "42P01");
    // COMMIT ends the implicit block; what follows is another.
    assert!(
        s.execute("INSERT INTO t VALUES (1); COMMIT; INSERT INTO t VALUES (2); SELECT 1/0")
            .is_err()
    );
    assert_eq!(count(&mut s), Value::Int8(1));
    // One transaction: now() is the same in every statement.
    let r = s
        .execute("SELECT now(); SELECT count(*) FROM generate_series(1, 100000); SELECT now()")
        .unwrap();
    assert_eq!(r[0].rows, r[2].rows);
    // BEGIN inside makes the block explicit: it stays open after the string.
    s.execute("INSERT INTO t VALUES (3); BEGIN; INSERT INTO t VALUES (4)").unwrap();
    assert_eq!(s.transaction_status(), (true, false));
    s.execute("ROLLBACK").unwrap();
    assert_eq!(count(&mut s), Value::Int8(1));
    // Success commits everything.
    s.execute("INSERT INTO t VALUES (5); INSERT INTO t VALUES (6)").unwrap();
    assert_eq!(count(&mut s), Value::Int8(3));
}

/// `IN (uncorrelated subquery)` is answered from a hash set and a
/// correlated `[NOT] EXISTS` with equality correlation from a hashed
/// semi-join (each built once per statement, not per row); shapes that
/// cannot be hashed still run per row with the same answers.
#[test]
fn subqueries_are_hashed_where_sound() {
    use qube_sql::Value;
    use qube_sql::exec::decorrelate::hashed_subqueries;
    let db = qube_sql::Database::memory().unwrap();
    let mut s = db.session().unwrap();
    s.execute(
        "CREATE TABLE a (id int, n numeric);
         CREATE TABLE b (aid int, k int);
         INSERT INTO a SELECT g, g FROM generate_series(1, 300) g;
         INSERT INTO b SELECT g * 2, g % 3 FROM generate_series(1, 300) g;",
    )
    .unwrap();
    let one = |s: &mut qube_sql::Session, q: &str| s.execute(q).unwrap()[0].rows[0][0].clone();
    let before = hashed_subqueries();
    assert_eq!(
        one(&mut s, "SELECT count(*) FROM a WHERE NOT EXISTS (SELECT 1 FROM b WHERE b.aid = a.id)"),
        Value::Int8(150)
    );
    assert_eq!(
        one(
            &mut s,
            "SELECT count(*) FROM a WHERE EXISTS (SELECT 1 FROM b WHERE b.aid = a.id AND b.k = 1)"
        ),
        Value::Int8(50)
    );
    assert_eq!(
        one(&mut s, "SELECT count(*) FROM a WHERE id IN (SELECT aid FROM b)"),
        Value::Int8(150)
    );
    let after = hashed_subqueries();
    // Other tests may run at the same time: at least ours were counted.
    assert!(after.1 >= before.1 + 2, "EXISTS not decorrelated: {before:?} → {after:?}");
    assert!(after.0 > before.0, "IN not hashed: {before:?} → {after:?}");
    // An OR over the correlation, and numeric keys (whose SQL equality is
    // not byte equality), fall back to running per row.
    assert_eq!(
        one(
            &mut s,
            "SELECT count(*) FROM a WHERE EXISTS (SELECT 1 FROM b WHERE b.aid = a.id OR b.k = 5)"
        ),
        Value::Int8(150)
    );
    assert_eq!(
        one(&mut s, "SELECT count(*) FROM a WHERE EXISTS (SELECT 1 FROM b WHERE b.aid = a.n)"),
        Value::Int8(150)
    );
}

/// Outer joins switch from a hash join to a merge join of externally
/// sorted inputs when the hashed side passes work_mem, and run as merge
/// joins under `enable_hashjoin = off`; the answers are the hash join's.
#[test]
fn outer_joins_merge_beyond_work_mem() {
    let dir = tempfile::tempdir().unwrap();
    let db = qube_sql::Database::open(dir.path()).unwrap();
    let mut s = db.session().unwrap();
    s.execute(
        "CREATE TABLE a (id int PRIMARY KEY, k int, pad text);
         CREATE TABLE b (id int PRIMARY KEY, k int, pad text);
         INSERT INTO a SELECT g, CASE WHEN g % 97 = 0 THEN NULL ELSE g % 5000 END, repeat('a', 50)
           FROM generate_series(1, 20000) g;
         INSERT INTO b SELECT g, CASE WHEN g % 89 = 0 THEN NULL ELSE (g * 7) % 6000 END, repeat('b', 50)
           FROM generate_series(1, 20000) g",
    )
    .unwrap();
    let queries = [
        "SELECT count(*), count(a.id), count(b.id), sum(a.id), sum(b.id) FROM a LEFT JOIN b ON a.k = b.k",
        "SELECT count(*), count(a.id), count(b.id), sum(a.id), sum(b.id) FROM a RIGHT JOIN b ON a.k = b.k",
        "SELECT count(*), count(a.id), count(b.id), sum(a.id) FROM a FULL JOIN b ON a.k = b.k AND a.id < b.id",
        "SELECT a.id, b.id FROM a FULL JOIN b ON a.k = b.k AND b.id % 3 = 0 ORDER BY 1, 2 LIMIT 50",
    ];
    let run = |s: &mut qube_sql::Session| -> Vec<Vec<Vec<qube_sql::Value>>> {
        queries.iter().map(|q| s.execute(q).unwrap().pop().unwrap().rows).collect()
    };
    let plan = |s: &mut qube_sql::Session| -> String {
        let r = s.execute("EXPLAIN SELECT * FROM a LEFT JOIN b ON a.k = b.k").unwrap();
        r[0].rows.iter().map(|r| format!("{:?}\n", r[0])).collect()
    };
    assert!(plan(&mut s).contains("Hash Left Join"), "{}", plan(&mut s));
    let hashed = run(&mut s);
    let merges = qube_sql::exec::binary_join::merge_joins();
    // Past work_mem the hash join becomes a merge join, with spilled sorts.
    s.execute("SET work_mem = '64kB'").unwrap();
    let files = qube_sql::exec::spill::spilled().0;
    assert_eq!(run(&mut s), hashed);
    assert!(qube_sql::exec::binary_join::merge_joins() >= merges + queries.len() as u64);
    assert!(qube_sql::exec::spill::spilled().0 > files, "the sorts should have spilled");
    // Forced by the planner switches, in memory.
    s.execute("RESET work_mem; SET enable_hashjoin = off").unwrap();
    assert!(plan(&mut s).contains("Merge Left Join"), "{}", plan(&mut s));
    let merges = qube_sql::exec::binary_join::merge_joins();
    assert_eq!(run(&mut s), hashed);
    assert!(qube_sql::exec::binary_join::merge_joins() >= merges + queries.len() as u64);
    // enable_mergejoin = off keeps the hash join even past work_mem.
    s.execute("RESET enable_hashjoin; SET enable_mergejoin = off; SET work_mem = '64kB'").unwrap();
    let merges = qube_sql::exec::binary_join::merge_joins();
    assert_eq!(run(&mut s), hashed);
    assert_eq!(qube_sql::exec::binary_join::merge_joins(), merges);
    assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
}

/// `col IN (…)` and `col = ANY(array)` read the index once per value
/// (an index scan, not a sequential one), including a parameter array.
#[test]
fn in_lists_use_indexes() {
    let db = qube_sql::Database::memory().unwrap();
    let mut s = db.session().unwrap();
    s.execute(
        "CREATE TABLE t (id int PRIMARY KEY, v int, w text);
         CREATE INDEX t_v ON t (v);
         INSERT INTO t SELECT g, g % 100, 'w' || g FROM generate_series(1, 5000) g",
    )
    .unwrap();
    let plan = |s: &mut qube_sql::Session, q: &str| -> String {
        let r = s.execute(&format!("EXPLAIN {q}")).unwrap();
        r[0].rows.iter().map(|r| format!("{:?}\n", r[0])).collect()
    };
    for q in ["SELECT * FROM t WHERE v IN (1, 2, 3)", "SELECT * FROM t WHERE id = ANY(ARRAY[1, 2])"]
    {
        let p = plan(&mut s, q);
        assert!(p.contains("= ANY (…)") && !p.contains("Seq Scan"), "{q}\n{p}");
    }
    let stmt = s.prepare("SELECT count(*) FROM t WHERE id = ANY($1)").unwrap();
    let arr = qube_sql::Value::Array(vec![
        qube_sql::Value::Int4(10),
        qube_sql::Value::Int4(20),
        qube_sql::Value::Null,
        qube_sql::Value::Int4(10),
    ]);
    let r = s.execute_prepared(&stmt, &[arr]).unwrap();
    assert_eq!(r[0].rows[0][0], qube_sql::Value::Int8(2));
    let r = s.execute("DELETE FROM t WHERE v IN (5, 6) AND id < 1000").unwrap();
    assert_eq!(r[0].tag, "DELETE 20");
}

/// A join whose big side has an index on the join column, with few rows
/// on the other side, looks those rows' partners up in the index instead
/// of reading the big table; the answers are the hash join's.
#[test]
fn few_rows_join_a_big_table_through_its_index() {
    let db = qube_sql::Database::memory().unwrap();
    let mut s = db.session().unwrap();
    s.execute(
        "CREATE TABLE c (id int PRIMARY KEY, name text, region int);
         CREATE TABLE o (id int PRIMARY KEY, cid int, amount int);
         CREATE INDEX o_cid ON o (cid);
         INSERT INTO c SELECT g, 'c' || g, g % 7 FROM generate_series(1, 20000) g;
         INSERT INTO o SELECT g, CASE WHEN g % 50 = 0 THEN NULL ELSE g % 20011 END, g % 100
           FROM generate_series(1, 30000) g",
    )
    .unwrap();
    let queries = [
        // One order, its customer by primary key.
        "SELECT o.id, c.name FROM o JOIN c ON c.id = o.cid WHERE o.id = 777",
        // One customer, its orders through the secondary index.
        "SELECT c.name, count(*), sum(o.amount) FROM c JOIN o ON o.cid = c.id WHERE c.id = 42 GROUP BY c.name",
        // An extra join condition and a type mix (bigint = int).
        "SELECT count(*) FROM o JOIN c ON c.id::bigint = o.cid AND c.region = o.amount % 7 WHERE o.id < 40",
        "SELECT o.id, c.id FROM o JOIN c ON c.id = o.cid WHERE o.id IN (50, 100, 101) ORDER BY 1",
    ];
    let before = qube_sql::exec::index_probe_joins();
    let probed: Vec<_> =
        queries.iter().map(|q| s.execute(q).unwrap().pop().unwrap().rows).collect();
    assert!(qube_sql::exec::index_probe_joins() >= before + 3, "index lookups expected");
    // The same answers with the lookups ruled out (a copy without indexes).
    s.execute(
        "CREATE TABLE c2 AS SELECT * FROM c; CREATE TABLE o2 AS SELECT * FROM o;
         ALTER TABLE c RENAME TO c_idx; ALTER TABLE o RENAME TO o_idx;
         ALTER TABLE c2 RENAME TO c; ALTER TABLE o2 RENAME TO o",
    )
    .unwrap();
    let before = qube_sql::exec::index_probe_joins();
    for (q, want) in queries.iter().zip(&probed) {
        assert_eq!(&s.execute(q).unwrap().pop().unwrap().rows, want, "{q}");
    }
    assert_eq!(qube_sql::exec::index_probe_joins(), before);
    assert_eq!(probed[0].len(), 1);
    // Orders 50 and 100 have a NULL cid, which joins nothing.
    assert_eq!(probed[3].len(), 1, "{:?}", probed[3]);
}

/// Concurrent upserts of the same keys (`INSERT … ON CONFLICT DO UPDATE
/// SET n = t.n + 1`) at READ COMMITTED lose nothing, as in PostgreSQL:
/// the conflicting row is locked and the update applies to its newest
/// version, not to the statement's snapshot of it. Both arbiter kinds: an
/// integer primary key (the row key) and a unique index on text.
#[test]
fn concurrent_upserts_lose_nothing() {
    let db = qube_sql::Database::memory().unwrap();
    let mut s = db.session().unwrap();
    s.execute(
        "CREATE TABLE c1 (id int PRIMARY KEY, n int NOT NULL);
         CREATE TABLE c2 (name text UNIQUE, n int NOT NULL)",
    )
    .unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut s = db.session().unwrap();
                for i in 0..150 {
                    let k = (i + t) % 3;
                    s.execute(&format!(
                        "INSERT INTO c1 VALUES ({k}, 1) ON CONFLICT (id) DO UPDATE SET n = c1.n + 1"
                    ))
                    .unwrap();
                    s.execute(&format!(
                        "INSERT INTO c2 VALUES ('k{k}', 1) ON CONFLICT (name) DO UPDATE SET n = c2.n + excluded.n"
                    ))
                    .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for table in ["c1", "c2"] {
        let rows = s.execute(&format!("SELECT sum(n), count(*) FROM {table}")).unwrap();
        assert_eq!(
            rows[0].rows[0],
            vec![qube_sql::Value::Int8(600), qube_sql::Value::Int8(3)],
            "{table}: upserts were lost"
        );
    }
}

/// ON UPDATE CASCADE racing updates of the referencing rows: the cascade
/// locks each child row and rewrites its newest version, so no increment
/// is lost and the index on the referencing column stays exact.
#[test]
fn cascades_keep_concurrent_changes_to_child_rows() {
    let db = qube_sql::Database::memory().unwrap();
    let mut s = db.session().unwrap();
    s.execute(
        "CREATE TABLE p (id int PRIMARY KEY);
         CREATE TABLE c (id int PRIMARY KEY, pid int REFERENCES p ON UPDATE CASCADE, n int NOT NULL);
         CREATE INDEX c_pid ON c (pid);
         INSERT INTO p VALUES (1);
         INSERT INTO c SELECT g, 1, 0 FROM generate_series(1, 3) g",
    )
    .unwrap();
    let flipper = {
        let db = db.clone();
        std::thread::spawn(move || {
            let mut s = db.session().unwrap();
            for _ in 0..100 {
                s.execute("UPDATE p SET id = -id").unwrap();
            }
        })
    };
    let bumpers: Vec<_> = (0..2)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut s = db.session().unwrap();
                for i in 0..150 {
                    let id = 1 + (i + t) % 3;
                    s.execute(&format!("UPDATE c SET n = n + 1 WHERE id = {id}")).unwrap();
                }
            })
        })
        .collect();
    flipper.join().unwrap();
    for b in bumpers {
        b.join().unwrap();
    }
    let r = s.execute("SELECT sum(n) FROM c").unwrap();
    assert_eq!(r[0].rows[0][0], qube_sql::Value::Int8(300), "increments were lost");
    // 100 flips: the parent is back at 1, and every child follows it, also
    // through the index.
    let r = s.execute("SELECT count(*) FROM c WHERE pid = 1").unwrap();
    assert_eq!(r[0].rows[0][0], qube_sql::Value::Int8(3));
    let r = s.execute("SELECT count(*) FROM c WHERE pid = -1").unwrap();
    assert_eq!(r[0].rows[0][0], qube_sql::Value::Int8(0));
}

/// Concurrent `UPDATE … SET n = n + 1` at READ COMMITTED loses nothing:
/// an UPDATE whose row another transaction changed since its snapshot
/// waits for it and applies itself to the newest version (re-checking its
/// WHERE), as PostgreSQL does; DELETE skips rows that no longer match.
#[test]
fn concurrent_read_committed_updates_lose_nothing() {
    let db = qube_sql::Database::memory().unwrap();
    let mut s = db.session().unwrap();
    s.execute(
        "CREATE TABLE acc (id int PRIMARY KEY, n int, k int);
         INSERT INTO acc SELECT g, 0, g % 2 FROM generate_series(1, 4) g",
    )
    .unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut s = db.session().unwrap();
                let mut applied = 0i64;
                for i in 0..150 {
                    let id = 1 + (i + t) % 4;
                    if i % 3 == 0 {
                        // An explicit block touching two rows; a deadlock
                        // between the two rolls it back as a whole.
                        let other = 1 + (id % 4);
                        match s.execute(&format!(
                            "BEGIN; UPDATE acc SET n = n + 1 WHERE id = {id};
                             UPDATE acc SET n = n + 1 WHERE id = {other}; COMMIT"
                        )) {
                            Ok(_) => applied += 2,
                            Err(e) => {
                                assert_eq!(e.sqlstate(), "40P01", "{e}");
                                s.execute("ROLLBACK").unwrap();
                            }
                        }
                    } else {
                        s.execute(&format!("UPDATE acc SET n = n + 1 WHERE id = {id}")).unwrap();
                        applied += 1;
                    }
                }
                applied
            })
        })
        .collect();
    let applied: i64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let rows = s.execute("SELECT sum(n) FROM acc").unwrap().pop().unwrap().rows;
    assert_eq!(rows[0][0], qube_sql::Value::Int8(applied), "updates were lost");
    assert!(applied >= 400);
    // The WHERE is checked again on the newest version.
    let mut a = db.session().unwrap();
    let mut b = db.session().unwrap();
    a.execute("BEGIN; UPDATE acc SET k = 5 WHERE id = 1").unwrap();
    let h = std::thread::spawn(move || {
        let r = b.execute("UPDATE acc SET n = -1 WHERE k = 1 AND id = 1").unwrap();
        r[0].tag.clone()
    });
    std::thread::sleep(std::time::Duration::from_millis(100));
    a.execute("COMMIT").unwrap();
    assert_eq!(h.join().unwrap(), "UPDATE 0");
}

/// Simple-protocol texts that differ only in their numbers share one
/// parsed statement (`Session::prepare_simple`), negative numbers too (as
/// pgbench writes `abalance + -2637`): each text computes what it would
/// alone, including a negative number whose class differs from the one
/// the shared statement was made with (`-2147483648` is an integer,
/// `-2147483649` a bigint).
#[test]
fn simple_texts_with_negative_numbers_compute_as_written() {
    use qube_sql::Value;
    let db = qube_sql::Database::memory().unwrap();
    let mut s = db.session().unwrap();
    s.execute("CREATE TABLE acc (id int PRIMARY KEY, n bigint NOT NULL, d numeric)").unwrap();
    s.execute("INSERT INTO acc VALUES (-1, 0, 0), (1, 0, 0), (2, 0, 0)").unwrap();
    let simple = |s: &mut qube_sql::Session, sql: &str| -> Result<Vec<Vec<Value>>, String> {
        let p = s.prepare_simple(sql).map_err(|e| e.sqlstate().to_string())?;
        let mut r = s.execute_prepared(&p, &[]).map_err(|e| e.sqlstate().to_string())?;
        Ok(r.pop().map(|r| r.rows).unwrap_or_default())
    };
    for (delta, id) in [(5, 1), (-7, 1), (-2147483648i64, 2), (-2147483649, 2), (3, -1), (-4, -1)] {
        simple(
            &mut s,
            &format!("UPDATE acc SET n = n + {delta}, d = d - -{} WHERE id = {id}", delta.abs()),
        )
        .unwrap();
    }
    let r = s.execute("SELECT id, n, d FROM acc ORDER BY id").unwrap();
    let got: Vec<String> =
        r[0].rows.iter().map(|r| format!("{}:{}:{}", r[0], r[1], r[2])).collect();
    assert_eq!(got, ["-1:-1:7", "1:-2:12", "2:-4294967297:4294967297"]);
    // The same text shapes as a query: the negative int4 bound and the
    // int8 one, each as written.
    for (bound, want) in [("-2147483648", 1), ("-2147483649", 1), ("-1.5", 2), ("-1", 2), ("-0", 3)]
    {
        let rows = simple(&mut s, &format!("SELECT count(*) FROM acc WHERE n < {bound}")).unwrap();
        let alone = s.execute(&format!("SELECT count(*) FROM acc WHERE n < {bound}")).unwrap();
        assert_eq!(rows, alone[0].rows, "{bound}");
        assert_eq!(rows[0][0], Value::Int8(want), "{bound}");
    }
    // An int4 column compared with a negative number out of its range.
    assert_eq!(simple(&mut s, "SELECT id FROM acc WHERE id = -1").unwrap(), [[Value::Int4(-1)]]);
    assert_eq!(simple(&mut s, "SELECT id FROM acc WHERE id = -3000000000").unwrap().len(), 0);
    // Errors stay errors: -2147483648 * 2 overflows an integer, as alone.
    let e = simple(&mut s, "SELECT 1 FROM acc WHERE id = -2147483648 * 2").unwrap_err();
    assert_eq!(
        e,
        s.execute("SELECT 1 FROM acc WHERE id = -2147483648 * 2").unwrap_err().sqlstate()
    );
}

/// The tag of one statement, or its SQLSTATE if it fails.
fn outcome(s: &mut qube_sql::Session, sql: &str) -> String {
    match s.execute(sql) {
        Ok(mut r) => r.pop().map(|r| r.tag).unwrap_or_default(),
        Err(e) => e.sqlstate().to_string(),
    }
}

/// UPDATE and DELETE by primary key at REPEATABLE READ and SERIALIZABLE,
/// as in PostgreSQL: a row unchanged since the snapshot is changed; one a
/// later commit updated or deleted is 40001 (also when the WHERE is true
/// of the snapshot's version only); a row inserted after the snapshot
/// stays invisible (0 rows, no error, no lock kept), also when a row with
/// that key was deleted before the snapshot; a row whose snapshot
/// version fails the WHERE is left alone, unlocked, whatever committed
/// since. (These statements read the row and take its lock in one look
/// when nothing committed since the snapshot: `Targeted::at_key`.)
#[test]
fn key_updates_at_snapshot_levels_follow_postgres() {
    for level in ["REPEATABLE READ", "SERIALIZABLE"] {
        let db = qube_sql::Database::memory().unwrap();
        let mut a = db.session().unwrap();
        let mut b = db.session().unwrap();
        a.execute(
            "CREATE TABLE acc (id int PRIMARY KEY, n int NOT NULL);
             INSERT INTO acc SELECT g, 0 FROM generate_series(1, 9) g;
             DELETE FROM acc WHERE id = 9",
        )
        .unwrap();
        let locks = |db: &qube_sql::Database| db.mvcc_status().row_locks;
        // (b's statement, a's change after b's snapshot, b's outcome, locks b holds after)
        let cases: &[(&str, &str, &str, u64)] = &[
            (
                "UPDATE acc SET n = n + 1 WHERE id = 1",
                "UPDATE acc SET n = 1 WHERE id = 2",
                "UPDATE 1",
                1,
            ),
            ("DELETE FROM acc WHERE id = 1", "UPDATE acc SET n = 1 WHERE id = 2", "DELETE 1", 1),
            (
                "UPDATE acc SET n = n + 1 WHERE id = 3",
                "UPDATE acc SET n = 5 WHERE id = 3",
                "40001",
                1,
            ),
            (
                "UPDATE acc SET n = n + 1 WHERE id = 4 AND n = 0",
                "UPDATE acc SET n = 5 WHERE id = 4",
                "40001",
                1,
            ),
            (
                "UPDATE acc SET n = n + 1 WHERE id = 5 AND n = 5",
                "UPDATE acc SET n = 5 WHERE id = 5",
                "UPDATE 0",
                0,
            ),
            ("DELETE FROM acc WHERE id = 6", "DELETE FROM acc WHERE id = 6", "40001", 1),
            ("UPDATE acc SET n = 1 WHERE id = 20", "INSERT INTO acc VALUES (20, 0)", "UPDATE 0", 0),
            ("DELETE FROM acc WHERE id = 21", "INSERT INTO acc VALUES (21, 0)", "DELETE 0", 0),
            ("UPDATE acc SET n = 1 WHERE id = 9", "INSERT INTO acc VALUES (9, 0)", "UPDATE 0", 0),
            (
                "UPDATE acc SET n = 1 WHERE id = 7 AND n = 3",
                "UPDATE acc SET n = 1 WHERE id = 2",
                "UPDATE 0",
                0,
            ),
            (
                "UPDATE acc SET n = 1 WHERE id = 30",
                "UPDATE acc SET n = 1 WHERE id = 2",
                "UPDATE 0",
                0,
            ),
        ];
        for (stmt, change, want, held) in cases {
            b.execute(&format!("BEGIN ISOLATION LEVEL {level}; SELECT count(*) FROM acc")).unwrap();
            a.execute(change).unwrap();
            assert_eq!(outcome(&mut b, stmt), *want, "{level}: {stmt} after {change}");
            assert_eq!(locks(&db), *held, "{level}: locks held after {stmt}");
            b.execute("ROLLBACK").unwrap();
        }
        // Nothing b did stayed; a's changes did.
        let r = a.execute("SELECT id, n FROM acc ORDER BY id").unwrap();
        let got: Vec<String> = r[0].rows.iter().map(|r| format!("{}={}", r[0], r[1])).collect();
        assert_eq!(got.join(" "), "1=0 2=1 3=5 4=5 5=5 7=0 8=0 9=0 20=0 21=0", "{level}");
    }
}

/// The same statements at READ COMMITTED, where a row's newest version
/// counts: a row inserted by a transaction still open is not seen (and
/// not waited for); a row locked by another writer is waited for, then
/// its newest version is checked against the WHERE again; a row whose
/// WHERE fails is left unlocked.
#[test]
fn key_updates_at_read_committed_follow_postgres() {
    let db = qube_sql::Database::memory().unwrap();
    let mut a = db.session().unwrap();
    let mut b = db.session().unwrap();
    a.execute(
        "CREATE TABLE acc (id int PRIMARY KEY, n int NOT NULL);
         INSERT INTO acc SELECT g, 0 FROM generate_series(1, 4) g",
    )
    .unwrap();
    // Not matching: no lock kept, in or out of a block.
    assert_eq!(outcome(&mut b, "UPDATE acc SET n = 1 WHERE id = 1 AND n = 7"), "UPDATE 0");
    assert_eq!(db.mvcc_status().row_locks, 0);
    b.execute("BEGIN").unwrap();
    assert_eq!(outcome(&mut b, "DELETE FROM acc WHERE id = 1 AND n = 7"), "DELETE 0");
    assert_eq!(db.mvcc_status().row_locks, 0);
    assert_eq!(outcome(&mut b, "UPDATE acc SET n = n + 1 WHERE id = 4"), "UPDATE 1");
    assert_eq!(db.mvcc_status().row_locks, 1);
    // An error in the WHERE gives the lock back too (the one just taken,
    // not the one held before).
    assert_eq!(outcome(&mut b, "UPDATE acc SET n = 1 WHERE id = 1 AND n / 0 = 1"), "22012");
    assert_eq!(db.mvcc_status().row_locks, 1);
    b.execute("ROLLBACK").unwrap();
    assert_eq!(db.mvcc_status().row_locks, 0);
    // Inserted by an open transaction: invisible, and not waited for.
    a.execute("BEGIN; INSERT INTO acc VALUES (10, 0)").unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        let r = outcome(&mut b, "UPDATE acc SET n = 1 WHERE id = 10");
        tx.send(r).unwrap();
        b
    });
    let got = rx.recv_timeout(std::time::Duration::from_secs(60));
    a.execute("COMMIT").unwrap();
    assert_eq!(got.as_deref(), Ok("UPDATE 0"));
    let mut b = h.join().unwrap();
    // Locked by a writer: b waits, then applies itself to the newest
    // version if it still matches.
    a.execute(
        "BEGIN; UPDATE acc SET n = n + 1 WHERE id = 2; UPDATE acc SET n = n + 1 WHERE id = 3",
    )
    .unwrap();
    let mut c = db.session().unwrap();
    let hb = std::thread::spawn(move || outcome(&mut b, "UPDATE acc SET n = n + 10 WHERE id = 2"));
    let hc = std::thread::spawn(move || {
        outcome(&mut c, "UPDATE acc SET n = n + 10 WHERE id = 3 AND n = 0")
    });
    std::thread::sleep(std::time::Duration::from_millis(100));
    a.execute("COMMIT").unwrap();
    assert_eq!(hb.join().unwrap(), "UPDATE 1");
    assert_eq!(hc.join().unwrap(), "UPDATE 0");
    let r = a.execute("SELECT id, n FROM acc ORDER BY id").unwrap();
    let got: Vec<String> = r[0].rows.iter().map(|r| format!("{}={}", r[0], r[1])).collect();
    assert_eq!(got.join(" "), "1=0 2=11 3=1 4=0 10=0");
    assert_eq!(db.mvcc_status().row_locks, 0);
}

/// Embedded sessions of one `Database` see each other in
/// pg_stat_activity, with distinct pids, and leave it when dropped.
#[test]
fn sessions_are_registered_and_signalled() {
    use qube_sql::{SessionOptions, Value};
    let db = qube_sql::Database::memory().unwrap();
    let mut a = db.session().unwrap();
    // A role that does not exist cannot have a session.
    let e = db
        .open_session(SessionOptions {
            database: "qubedb".into(),
            user: Some("alice".into()),
            ..SessionOptions::default()
        })
        .err()
        .unwrap();
    assert_eq!(e.sqlstate(), "28000", "{e}");
    // No database and no role named: `qubedb` and `qubedb`.
    let mut d = db.open_session(SessionOptions::default()).unwrap();
    let r = d.execute("SELECT current_database(), current_user").unwrap();
    assert_eq!(r[0].rows, vec![vec![Value::Text("qubedb".into()), Value::Text("qubedb".into())]]);
    drop(d);
    a.execute("CREATE ROLE alice LOGIN").unwrap();
    let mut b = db
        .open_session(SessionOptions {
            database: "qubedb".into(),
            user: Some("alice".into()),
            application_name: "app-b".into(),
            ..SessionOptions::default()
        })
        .unwrap();
    assert_ne!(a.pid(), b.pid());
    a.execute("SELECT 1").unwrap();
    let r = b
        .execute(
            "SELECT pid, usename, application_name, state, query, client_addr, client_port \
             FROM pg_stat_activity ORDER BY pid",
        )
        .unwrap();
    let rows = &r[0].rows;
    assert_eq!(rows.len(), 2);
    let text = |s: &str| Value::Text(s.into());
    assert_eq!(
        rows[0],
        vec![
            Value::Int4(a.pid()),
            text("qubedb"),
            text(""),
            text("idle"),
            text("SELECT 1"),
            Value::Null,
            Value::Int4(-1)
        ]
    );
    assert_eq!(rows[1][..4], [Value::Int4(b.pid()), text("alice"), text("app-b"), text("active")]);
    let own = b.execute("SELECT pg_backend_pid()").unwrap();
    assert_eq!(own[0].rows[0][0], Value::Int4(b.pid()));
    // Terminating a: its next statement fails with 57P01.
    let r = b.execute(&format!("SELECT pg_terminate_backend({})", a.pid())).unwrap();
    assert_eq!(r[0].rows[0][0], Value::Bool(true));
    assert!(a.is_terminated());
    assert_eq!(a.execute("SELECT 1").unwrap_err().sqlstate(), "57P01");
    drop(a);
    assert_eq!(db.sessions().len(), 1);
    let r = b.execute("SELECT count(*) FROM pg_stat_activity").unwrap();
    assert_eq!(r[0].rows[0][0], Value::Int8(1));
    // An unknown pid: false and a WARNING.
    let r = b.execute("SELECT pg_cancel_backend(-5)").unwrap();
    assert_eq!(r[0].rows[0][0], Value::Bool(false));
    let n = b.take_notices();
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].message, "PID -5 is not a PostgreSQL backend process");
    assert!(b.take_notices().is_empty(), "taken");
}

/// A statement sees its own session's pid and settings (published per
/// thread and left in place between statements, `published`): sessions
/// taking turns on one thread each see their own, and a statement of
/// another session run inside a row callback sees its session, after which
/// the outer statement goes on seeing its own.
#[test]
fn statements_see_their_own_session_even_nested_in_another() {
    use qube_sql::Value;
    let db = qube_sql::Database::memory().unwrap();
    let (mut a, mut b) = (db.session().unwrap(), db.session().unwrap());
    b.execute("SET work_mem = '7MB'").unwrap();
    let who = "SELECT pg_backend_pid(), current_setting('work_mem')";
    let me = |pid: i32, mem: &str| vec![Value::Int4(pid), Value::Text(mem.into())];
    for _ in 0..3 {
        assert_eq!(a.execute(who).unwrap()[0].rows[0], me(a.pid(), "4MB"));
        assert_eq!(b.execute(who).unwrap()[0].rows[0], me(b.pid(), "7MB"));
    }
    let pa = a.prepare(who).unwrap();
    let pb = b.prepare(who).unwrap();
    for _ in 0..3 {
        assert_eq!(a.execute_prepared(&pa, &[]).unwrap()[0].rows[0], me(a.pid(), "4MB"));
        assert_eq!(b.execute_prepared(&pb, &[]).unwrap()[0].rows[0], me(b.pid(), "7MB"));
    }
    let (a_pid, b_pid) = (a.pid(), b.pid());
    let mut inner = Vec::new();
    let mut outer = Vec::new();
    a.execute_streaming(
        "SELECT pg_backend_pid(), current_setting('work_mem'), g FROM generate_series(1, 4) g",
        &[],
        &mut |_, row| {
            outer.push(row[..2].to_vec());
            if outer.len() <= 2 {
                inner.push(b.execute(who).unwrap()[0].rows[0].clone());
            }
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(outer, vec![me(a_pid, "4MB"); 4]);
    assert_eq!(inner, vec![me(b_pid, "7MB"); 2]);
    assert_eq!(a.execute(who).unwrap()[0].rows[0], me(a_pid, "4MB"));
}

/// pg_stat_activity shows each session's state with its times consistent,
/// while that session runs statements as fast as it can on another thread
/// (its times are written without a lock, under a sequence count).
#[test]
fn activity_is_read_consistently_while_the_session_runs() {
    use qube_sql::Value;
    let db = qube_sql::Database::memory().unwrap();
    let mut a = db.session().unwrap();
    let mut b = db.session().unwrap();
    let pid = a.pid();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let worker = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let p = a.prepare("SELECT 1").unwrap();
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                a.execute("BEGIN").unwrap();
                a.execute_prepared(&p, &[]).unwrap();
                a.execute("COMMIT").unwrap();
                n += 1;
            }
            n
        })
    };
    let q = format!(
        "SELECT state, xact_start IS NULL, query_start <= state_change, query \
         FROM pg_stat_activity WHERE pid = {pid}"
    );
    let mut states = std::collections::BTreeSet::new();
    for _ in 0..400 {
        let r = b.execute(&q).unwrap().remove(0).rows.remove(0);
        if r[3] == Value::Text(String::new()) {
            continue; // no statement yet
        }
        let Value::Text(state) = &r[0] else { panic!("{r:?}") };
        let no_xact = r[1] == Value::Bool(true);
        match state.as_str() {
            "idle" => assert!(no_xact, "idle with a transaction start: {r:?}"),
            "idle in transaction" | "active" => assert!(!no_xact, "{r:?}"),
            other => panic!("state {other}: {r:?}"),
        }
        assert_eq!(r[2], Value::Bool(true), "query_start after state_change: {r:?}");
        let Value::Text(query) = &r[3] else { panic!("{r:?}") };
        assert!(["BEGIN", "SELECT 1", "COMMIT"].contains(&query.as_str()), "{r:?}");
        states.insert(state.clone());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(worker.join().unwrap() > 0);
    assert!(states.len() >= 2, "saw only {states:?}");
}

/// Statement counters: each session counts into its own, which a snapshot
/// adds to the closed sessions' totals, so that a statement is counted as
/// soon as it ends and once, also after its session closed.
#[test]
fn metrics_count_each_statement_once_across_open_and_closed_sessions() {
    use qube_sql::metrics::Interface;
    let db = qube_sql::Database::memory().unwrap();
    let base = db.metrics().snapshot(Interface::Embedded);
    let mut a = db.session().unwrap();
    let mut b = db.session().unwrap();
    a.execute("CREATE TABLE m(x int)").unwrap();
    a.execute("INSERT INTO m VALUES (1), (2), (3)").unwrap();
    b.execute("SELECT * FROM m").unwrap();
    assert!(b.execute("SELECT 1/0").is_err());
    let open = db.metrics().snapshot(Interface::Embedded);
    let sel = |s: &qube_sql::metrics::Snapshot| s.queries[0];
    assert_eq!(sel(&open) - sel(&base), 1);
    assert_eq!(open.rows_written - base.rows_written, 3);
    assert_eq!(open.rows_returned - base.rows_returned, 3);
    assert_eq!(open.errors - base.errors, 1);
    assert_eq!(open.sessions_open - base.sessions_open, 2);
    assert_eq!(open.latency_cumulative[12] - base.latency_cumulative[12], 4);
    drop(a);
    let one = db.metrics().snapshot(Interface::Embedded);
    assert_eq!(qube_sql::metrics::Snapshot { sessions_open: open.sessions_open, ..one }, open);
    drop(b);
    let none = db.metrics().snapshot(Interface::Embedded);
    assert_eq!(none.sessions_open, base.sessions_open);
    assert_eq!(none.queries, open.queries);
    assert_eq!(none.latency_cumulative, open.latency_cumulative);
}

/// Notices of the last execute call, in order, with PostgreSQL's texts.
#[test]
fn notices_are_collected_per_call() {
    use qube_sql::notice::Severity;
    let db = qube_sql::Database::memory().unwrap();
    let mut s = db.session().unwrap();
    s.execute(
        "DROP TABLE IF EXISTS nope; CREATE TABLE t (a int); CREATE TABLE IF NOT EXISTS t (b int)",
    )
    .unwrap();
    let n = s.take_notices();
    let got: Vec<(Severity, &str, &str)> =
        n.iter().map(|n| (n.severity, n.sqlstate, n.message.as_str())).collect();
    assert_eq!(
        got,
        [
            (Severity::Notice, "00000", "table \"nope\" does not exist, skipping"),
            (Severity::Notice, "42P07", "relation \"t\" already exists, skipping"),
        ]
    );
    s.execute("COMMIT").unwrap();
    s.execute("SELECT 1").unwrap();
    assert!(s.take_notices().is_empty(), "a later call starts afresh");
    s.execute("ROLLBACK").unwrap();
    let n = s.take_notices();
    assert_eq!((n[0].severity, n[0].sqlstate), (Severity::Warning, "25P01"));
    // Errors carry PostgreSQL's DETAIL.
    s.execute("CREATE TABLE k (id int PRIMARY KEY); INSERT INTO k VALUES (1)").unwrap();
    let e = s.execute("INSERT INTO k VALUES (1)").unwrap_err();
    assert_eq!(e.to_string(), "duplicate key value violates unique constraint \"k_pkey\"");
    assert_eq!(e.detail(), Some("Key (id)=(1) already exists."));
    // 42703 hints as PostgreSQL 15 gives them (checked there).
    s.execute("CREATE TABLE h (id int, v text); CREATE TABLE h2 (ix int)").unwrap();
    for (sql, hint) in [
        ("SELECT vv FROM h", Some("Perhaps you meant to reference the column \"h.v\".")),
        ("SELECT idd FROM h", Some("Perhaps you meant to reference the column \"h.id\".")),
        ("SELECT h.idd FROM h", Some("Perhaps you meant to reference the column \"h.id\".")),
        ("SELECT zzzz FROM h", None),
        (
            "SELECT iy FROM h, h2",
            Some("Perhaps you meant to reference the column \"h.id\" or the column \"h2.ix\"."),
        ),
    ] {
        let e = s.execute(sql).unwrap_err();
        assert_eq!((e.sqlstate(), e.hint()), ("42703", hint), "{sql}");
    }
}

/// Tables keyed by a primary key of one integer column (key rowids, see
/// `storage`): PostgreSQL's messages and details, COPY, ADD PRIMARY KEY
/// on loaded rows, and every row found again — by key, by range, by a
/// secondary index — in a crash image (the directory copied while the
/// database is open, so its reopen recovers from the WAL) and after a
/// clean reopen.
#[test]
fn integer_keys_key_the_rows_and_survive_a_crash() {
    use qube_sql::{CopyKind, Database, Value};
    fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                copy_dir(&e.path(), &to.join(e.file_name()));
            } else {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let crashed = tempfile::tempdir().unwrap();
    let check = |s: &mut qube_sql::Session| {
        let one =
            |s: &mut qube_sql::Session, sql: &str| s.execute(sql).unwrap().pop().unwrap().rows;
        assert_eq!(
            one(s, "SELECT v FROM t WHERE id = -9223372036854775808"),
            vec![vec![Value::Text("min".into())]]
        );
        assert_eq!(
            one(s, "SELECT v FROM t WHERE id = 9223372036854775807"),
            vec![vec![Value::Text("max".into())]]
        );
        assert_eq!(one(s, "SELECT id FROM t WHERE n = 7"), vec![vec![Value::Int8(-7)]]);
        assert_eq!(
            one(s, "SELECT count(*), min(id), max(id) FROM t WHERE id BETWEEN -1000 AND 1000"),
            vec![vec![Value::Int8(2001), Value::Int8(-1000), Value::Int8(1000)]]
        );
        assert_eq!(one(s, "SELECT v FROM c WHERE id = 2"), vec![vec![Value::Text("two".into())]]);
        assert_eq!(one(s, "SELECT v FROM l WHERE id = 30"), vec![vec![Value::Text("c".into())]]);
        assert_eq!(one(s, "SELECT id FROM l WHERE v = 'a'"), vec![vec![Value::Int4(10)]]);
        let e = s.execute("INSERT INTO t VALUES (0, 'again', 0)").unwrap_err();
        assert_eq!(e.sqlstate(), "23505");
    };
    {
        let db = Database::open(dir.path()).unwrap();
        let mut s = db.session().unwrap();
        s.execute(
            "CREATE TABLE t (id bigint PRIMARY KEY, v text, n int);
             CREATE INDEX t_n ON t (n);
             INSERT INTO t SELECT g, 'r' || g, -g FROM generate_series(-1000, 1000) g;
             INSERT INTO t VALUES (-9223372036854775808, 'min', 1), (9223372036854775807, 'max', 2)",
        )
        .unwrap();
        // A key that moves, and back.
        s.execute("UPDATE t SET id = 5000 WHERE id = 1").unwrap();
        s.execute("UPDATE t SET id = 1 WHERE id = 5000").unwrap();
        // The messages and details PostgreSQL gives.
        let e = s.execute("INSERT INTO t VALUES (7, 'dup', 0)").unwrap_err();
        assert_eq!(e.sqlstate(), "23505");
        assert_eq!(e.to_string(), "duplicate key value violates unique constraint \"t_pkey\"");
        assert_eq!(e.detail(), Some("Key (id)=(7) already exists."));
        let e = s.execute("UPDATE t SET id = 8 WHERE id = 9").unwrap_err();
        assert_eq!(e.detail(), Some("Key (id)=(8) already exists."));
        let e = s.execute("INSERT INTO t (v) VALUES ('no key')").unwrap_err();
        assert_eq!(e.sqlstate(), "23502");
        s.execute("CREATE TABLE r (id int PRIMARY KEY, t_id bigint REFERENCES t)").unwrap();
        let e = s.execute("INSERT INTO r VALUES (1, 1001)").unwrap_err();
        assert_eq!(e.sqlstate(), "23503");
        assert_eq!(e.detail(), Some("Key (t_id)=(1001) is not present in table \"t\"."));
        let e = s.execute("DELETE FROM t WHERE id = 3").map(|_| ());
        assert!(e.is_ok());
        s.execute("INSERT INTO r VALUES (1, 4)").unwrap();
        let e = s.execute("DELETE FROM t WHERE id = 4").unwrap_err();
        assert_eq!(e.detail(), Some("Key (id)=(4) is still referenced from table \"r\"."));
        s.execute("DROP TABLE r; INSERT INTO t VALUES (3, 'r3', -3)").unwrap();
        // COPY into a keyed table, with a duplicate refused.
        s.execute("CREATE TABLE c (id int PRIMARY KEY, v text)").unwrap();
        let p = s.prepare("COPY c FROM STDIN").unwrap();
        assert_eq!(p.copy_kind(0), Some(CopyKind::In));
        let mut w = s.copy_in(&p, 0).unwrap();
        w.write(b"2\ttwo\n1\tone\n").unwrap();
        assert_eq!(w.finish().unwrap().tag, "COPY 2");
        let mut w = s.copy_in(&p, 0).unwrap();
        let e = w.write(b"3\tthree\n1\tagain\n").and_then(|_| w.finish()).unwrap_err();
        assert_eq!(e.sqlstate(), "23505");
        // EXPLAIN names the key's index, which has no entries of its own.
        let plan = s.execute("EXPLAIN SELECT v FROM c WHERE id = 1").unwrap();
        let text: Vec<String> = plan[0].rows.iter().map(|r| r[0].to_string()).collect();
        assert!(
            text.iter().any(|l| l.contains("Index Scan on c using c_pkey (unique)")),
            "{text:?}"
        );
        // ADD PRIMARY KEY on loaded rows, then a USING that moves them.
        s.execute(
            "CREATE TABLE l (id int, v text); CREATE INDEX l_v ON l (v);
             INSERT INTO l VALUES (3, 'c'), (1, 'a'), (2, 'b');
             ALTER TABLE l ADD PRIMARY KEY (id);
             ALTER TABLE l ALTER COLUMN id TYPE int USING id * 10",
        )
        .unwrap();
        check(&mut s);
        // A crash image: the files as they are while the database is open
        // (every commit is in the WAL; no checkpoint or clean close since).
        copy_dir(dir.path(), crashed.path());
    }
    {
        let db = Database::open(crashed.path()).unwrap();
        let mut s = db.session().unwrap();
        check(&mut s);
    }
    {
        let db = Database::open(dir.path()).unwrap();
        let mut s = db.session().unwrap();
        check(&mut s);
        s.execute("INSERT INTO c VALUES (4, 'four')").unwrap();
    }
    let db = Database::open(dir.path()).unwrap();
    let mut s = db.session().unwrap();
    check(&mut s);
    let r = s.execute("SELECT id FROM c ORDER BY id DESC").unwrap().pop().unwrap().rows;
    assert_eq!(r, vec![vec![Value::Int4(4)], vec![Value::Int4(2)], vec![Value::Int4(1)]]);
}

/// Two sessions inserting the same integer key: the second waits for the
/// first (the row key is locked by the unique check) and gets 23505 once
/// it commits, or inserts once it rolls back.
#[test]
fn concurrent_inserts_of_one_integer_key_serialize() {
    let db = qube_sql::Database::memory().unwrap();
    let mut a = db.session().unwrap();
    a.execute("CREATE TABLE t (id int PRIMARY KEY, v text); CREATE INDEX t_v ON t (v)").unwrap();
    for commit in [true, false] {
        a.execute("TRUNCATE t").unwrap();
        a.execute("BEGIN; INSERT INTO t VALUES (1, 'a')").unwrap();
        let db2 = db.clone();
        let h = std::thread::spawn(move || {
            let mut b = db2.session().unwrap();
            b.execute("INSERT INTO t VALUES (1, 'b')")
                .map(|_| ())
                .map_err(|e| e.sqlstate().to_string())
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        a.execute(if commit { "COMMIT" } else { "ROLLBACK" }).unwrap();
        let got = h.join().unwrap();
        let rows = a.execute("SELECT v FROM t WHERE id = 1").unwrap().pop().unwrap().rows;
        let by_v = a.execute("SELECT count(*) FROM t WHERE v IN ('a', 'b')").unwrap();
        assert_eq!(by_v[0].rows[0][0], qube_sql::Value::Int8(1));
        if commit {
            assert_eq!(got, Err("23505".to_string()));
            assert_eq!(rows, vec![vec![qube_sql::Value::Text("a".into())]]);
        } else {
            assert_eq!(got, Ok(()));
            assert_eq!(rows, vec![vec![qube_sql::Value::Text("b".into())]]);
        }
    }
}

/// A prepared statement run again sees every change of the settings made
/// between its runs (statements share one settings snapshot until a
/// setting changes): SET, SET LOCAL and its end, SET inside a block that
/// is rolled back, RESET, and the zone.
#[test]
fn current_setting_follows_set_between_prepared_runs() {
    let db = qube_sql::Database::memory().unwrap();
    let mut s = db.session().unwrap();
    let p = s
        .prepare(
            "SELECT current_setting('work_mem'), current_setting('TimeZone'), \
             current_setting('application_name'), current_setting('statement_timeout')",
        )
        .unwrap();
    let get = |s: &mut qube_sql::Session| -> Vec<String> {
        s.execute_prepared(&p, &[]).unwrap()[0].rows[0]
            .iter()
            .map(|v| match v {
                qube_sql::Value::Text(t) => t.clone(),
                other => panic!("not text: {other:?}"),
            })
            .collect()
    };
    let first = get(&mut s);
    assert_eq!(get(&mut s), first, "unchanged settings read the same");
    s.execute("SET work_mem = '8MB'").unwrap();
    assert_eq!(get(&mut s)[0], "8MB");
    s.execute("SET application_name = 'a1'").unwrap();
    assert_eq!(get(&mut s)[2], "a1");
    s.execute("SET application_name = 'a2'").unwrap();
    assert_eq!(get(&mut s)[2], "a2");
    s.execute("SET TimeZone = 'UTC'").unwrap();
    assert_eq!(get(&mut s)[1], "UTC");
    s.execute("BEGIN").unwrap();
    s.execute("SET LOCAL TimeZone = 'Europe/Paris'").unwrap();
    s.execute("SET statement_timeout = '5s'").unwrap();
    let inside = get(&mut s);
    assert_eq!((inside[1].as_str(), inside[3].as_str()), ("Europe/Paris", "5s"));
    s.execute("COMMIT").unwrap();
    // The zone set with LOCAL reverts at COMMIT; the other stays.
    let after = get(&mut s);
    assert_eq!((after[1].as_str(), after[3].as_str()), ("UTC", "5s"));
    s.execute("BEGIN; SET TimeZone = 'Asia/Tokyo'").unwrap();
    assert_eq!(get(&mut s)[1], "Asia/Tokyo");
    s.execute("ROLLBACK").unwrap();
    assert_eq!(get(&mut s)[1], "UTC");
    s.execute("RESET ALL").unwrap();
    assert_eq!(get(&mut s)[0], first[0]);
    // An unknown name is still an error.
    let e = s.execute("SELECT current_setting('no_such.setting')").unwrap_err();
    assert_eq!(e.sqlstate(), "42704");
}

/// A point lookup by an integer primary key needs no Filter above its
/// Index Scan (the key decides), and finds exactly what the comparison
/// would: nothing for NULL, for a fraction or for a value out of the
/// column's range; other conditions on the row stay as filters.
#[test]
fn integer_key_lookup_has_no_redundant_filter() {
    use qube_sql::Value;
    let db = qube_sql::Database::memory().unwrap();
    let mut s = db.session().unwrap();
    s.execute("CREATE TABLE k (id integer PRIMARY KEY, v text)").unwrap();
    s.execute("INSERT INTO k VALUES (1, 'one'), (2, 'two'), (3, 'three')").unwrap();
    let plan = |s: &mut qube_sql::Session, q: &str| -> String {
        let r = s.execute(&format!("EXPLAIN {q}")).unwrap();
        r[0].rows.iter().map(|r| r[0].to_string()).collect::<Vec<_>>().join("\n")
    };
    let p = plan(&mut s, "SELECT v FROM k WHERE id = 2");
    assert!(p.contains("Index Scan") && !p.contains("Filter"), "{p}");
    let p = plan(&mut s, "SELECT v FROM k WHERE id = 2 AND v = 'x'");
    assert!(p.contains("Index Scan") && p.contains("Filter"), "{p}");
    let p = plan(&mut s, "SELECT v FROM k WHERE id = $1");
    assert!(p.contains("Index Scan") && !p.contains("Filter"), "{p}");
    let st = s.prepare("SELECT v FROM k WHERE id = $1").unwrap();
    let run = |s: &mut qube_sql::Session, v: Value| {
        s.execute_prepared(&st, &[v]).unwrap()[0].rows.clone()
    };
    assert_eq!(run(&mut s, Value::Int8(2)), vec![vec![Value::Text("two".into())]]);
    assert!(run(&mut s, Value::Int8(7)).is_empty());
    assert!(run(&mut s, Value::Null).is_empty());
    // A parameter the column's type cannot hold is an error, as the
    // comparison with the parameter cast to that type is.
    let e = s.execute_prepared(&st, &[Value::Int8(1 << 40)]).unwrap_err();
    assert_eq!(e.sqlstate(), "22003");
    let q = |s: &mut qube_sql::Session, sql: &str| s.execute(sql).unwrap()[0].rows.len();
    assert_eq!(q(&mut s, "SELECT v FROM k WHERE id = 2.5"), 0);
    assert_eq!(q(&mut s, "SELECT v FROM k WHERE id = 1099511627778"), 0);
    assert_eq!(q(&mut s, "SELECT v FROM k WHERE id = 2.0"), 1);
    assert_eq!(q(&mut s, "SELECT v FROM k WHERE 3 = id"), 1);
    assert_eq!(q(&mut s, "SELECT v FROM k WHERE id = 1 AND id = 2"), 0);
    assert_eq!(q(&mut s, "SELECT v FROM k WHERE id = 2 AND v = 'two'"), 1);
    assert_eq!(q(&mut s, "SELECT v FROM k WHERE id = 2 AND v = 'one'"), 0);
    // The key's row seen after an update in the same transaction.
    s.execute("BEGIN; UPDATE k SET v = 'deux' WHERE id = 2").unwrap();
    assert_eq!(run(&mut s, Value::Int4(2)), vec![vec![Value::Text("deux".into())]]);
    s.execute("ROLLBACK").unwrap();
}

/// An index range on an integer column that states the whole condition
/// (`BETWEEN`, `>=`, `<=` with constants the column can hold or parameters
/// cast to its type) needs no Filter above it; bounds the column cannot
/// hold, `<` and `>` keep it. Every edge gives PostgreSQL's rows.
#[test]
fn integer_index_ranges_have_no_redundant_filter() {
    use qube_sql::Value;
    let db = qube_sql::Database::memory().unwrap();
    let mut s = db.session().unwrap();
    s.execute(
        "CREATE TABLE r (id int PRIMARY KEY, v int, w text); CREATE INDEX r_v ON r (v);
         INSERT INTO r SELECT g, g % 100, 'x' FROM generate_series(1, 1000) g",
    )
    .unwrap();
    let plan = |s: &mut qube_sql::Session, q: &str| -> String {
        let r = s.execute(&format!("EXPLAIN {q}")).unwrap();
        r[0].rows.iter().map(|r| r[0].to_string()).collect::<Vec<_>>().join("\n")
    };
    for q in [
        "SELECT w FROM r WHERE v BETWEEN 3 AND 5",
        "SELECT w FROM r WHERE v >= 98",
        "SELECT w FROM r WHERE v <= 1",
        "SELECT w FROM r WHERE v BETWEEN $1 AND $2",
        "SELECT w FROM r WHERE id BETWEEN 3 AND 5",
    ] {
        let p = plan(&mut s, q);
        assert!(p.contains("Index") && !p.contains("Filter"), "{q}: {p}");
    }
    for q in [
        "SELECT w FROM r WHERE v > 98",
        "SELECT w FROM r WHERE v BETWEEN 3 AND 5000000000",
        "SELECT w FROM r WHERE v BETWEEN 3 AND 4.5",
        "SELECT w FROM r WHERE v BETWEEN 3 AND 5 AND w = 'y'",
    ] {
        let p = plan(&mut s, q);
        assert!(p.contains("Filter"), "{q}: {p}");
    }
    let n = |s: &mut qube_sql::Session, q: &str| match &s.execute(q).unwrap()[0].rows[0][0] {
        Value::Int8(n) => *n,
        other => panic!("{other:?}"),
    };
    assert_eq!(n(&mut s, "SELECT count(*) FROM r WHERE v BETWEEN 3 AND 5"), 30);
    assert_eq!(n(&mut s, "SELECT count(*) FROM r WHERE v BETWEEN 5 AND 3"), 0);
    assert_eq!(n(&mut s, "SELECT count(*) FROM r WHERE v BETWEEN NULL AND 5"), 0);
    assert_eq!(n(&mut s, "SELECT count(*) FROM r WHERE v >= 98"), 20);
    assert_eq!(n(&mut s, "SELECT count(*) FROM r WHERE v <= 1"), 20);
    assert_eq!(n(&mut s, "SELECT count(*) FROM r WHERE v BETWEEN 3 AND 5000000000"), 970);
    assert_eq!(n(&mut s, "SELECT count(*) FROM r WHERE v BETWEEN -5000000000 AND 2"), 30);
    assert_eq!(n(&mut s, "SELECT count(*) FROM r WHERE v BETWEEN 3 AND 4.5"), 20);
    assert_eq!(n(&mut s, "SELECT count(*) FROM r WHERE id BETWEEN 998 AND 5000000000"), 3);
    let st = s.prepare("SELECT count(*) FROM r WHERE v BETWEEN $1 AND $2").unwrap();
    let mut run = |a: Value, b: Value| s.execute_prepared(&st, &[a, b]);
    assert_eq!(run(Value::Int4(3), Value::Int4(5)).unwrap()[0].rows[0][0], Value::Int8(30));
    assert_eq!(run(Value::Int8(99), Value::Int8(99)).unwrap()[0].rows[0][0], Value::Int8(10));
    assert_eq!(run(Value::Null, Value::Int4(5)).unwrap()[0].rows[0][0], Value::Int8(0));
    assert_eq!(run(Value::Int4(5), Value::Int4(3)).unwrap()[0].rows[0][0], Value::Int8(0));
    // A parameter the column cannot hold: 22003, as its cast to int is.
    assert_eq!(run(Value::Int4(3), Value::Int8(1 << 40)).unwrap_err().sqlstate(), "22003");
}

/// Projections of plain columns over scans and index scans, with the
/// shapes the executor moves within the row (ascending, at least half the
/// row) and those it does not (descending, repeated, a minority of a wide
/// row, expressions): every one gives the columns asked for, also when the
/// output is then sorted, joined or read in several batches, and when the
/// columns skipped hold text that is never decoded.
#[test]
fn column_projections_give_the_columns_asked_for() {
    let db = qube_sql::Database::memory().unwrap();
    let mut s = db.session().unwrap();
    s.execute(
        "CREATE TABLE p (a int PRIMARY KEY, b text, c int, d text, e int, f int, g int, h int);
         CREATE INDEX p_c ON p (c);
         INSERT INTO p SELECT i, 'b' || i, i * 10, 'd' || i, -i, i % 3, i % 5, i % 7
           FROM generate_series(1, 3000) i",
    )
    .unwrap();
    let rows = |s: &mut qube_sql::Session, q: &str| -> Vec<String> {
        let r = s.execute(q).unwrap();
        r.last()
            .unwrap()
            .rows
            .iter()
            .map(|r| r.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(","))
            .collect()
    };
    let want = |i: i64, cols: &str| -> String {
        cols.chars()
            .map(|c| match c {
                'a' => i.to_string(),
                'b' => format!("b{i}"),
                'c' => (i * 10).to_string(),
                'd' => format!("d{i}"),
                'e' => (-i).to_string(),
                'f' => (i % 3).to_string(),
                'g' => (i % 5).to_string(),
                'h' => (i % 7).to_string(),
                _ => unreachable!(),
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    for cols in
        ["abcd", "ad", "bd", "dcba", "da", "aa", "a", "h", "abcdefgh", "hgfedcba", "bdfh", "cb"]
    {
        let list: Vec<String> = cols.chars().map(|c| c.to_string()).collect();
        let list = list.join(", ");
        let all: Vec<String> = (1..=3000).map(|i| want(i, cols)).collect();
        // Sequential scan, in several batches.
        assert_eq!(rows(&mut s, &format!("SELECT {list} FROM p ORDER BY a")), all, "{cols}");
        // Index range, and a filter below the projection.
        let got = rows(&mut s, &format!("SELECT {list} FROM p WHERE c BETWEEN 100 AND 200"));
        assert_eq!(got, (10..=20).map(|i| want(i, cols)).collect::<Vec<_>>(), "{cols}");
        let got = rows(&mut s, &format!("SELECT {list} FROM p WHERE g = 0 AND a <= 20 ORDER BY a"));
        assert_eq!(got, [5, 10, 15, 20].map(|i| want(i, cols)), "{cols}");
        // Sorted by another column than the ones kept, and a self-join.
        let got = rows(&mut s, &format!("SELECT {list} FROM p ORDER BY e LIMIT 2"));
        assert_eq!(got, [3000, 2999].map(|i| want(i, cols)), "{cols}");
        let got = rows(
            &mut s,
            &format!(
                "SELECT {} FROM p x JOIN p y ON x.a = y.c / 10 WHERE y.a = 7",
                cols.chars().map(|c| format!("x.{c}")).collect::<Vec<_>>().join(", ")
            ),
        );
        assert_eq!(got, [want(7, cols)], "{cols}");
    }
    // Expressions mixed with columns.
    assert_eq!(rows(&mut s, "SELECT a, c + 1, d FROM p WHERE a = 2"), ["2,21,d2"]);
}

/// Index range scans (rowid fetch per entry, batched: `Fetch::rows`) and
/// index-only scans, forward and reverse, over more entries than one scan
/// batch, with several versions per key (updates), deleted rows and the
/// transaction's own uncommitted writes, give the rows a full scan gives
/// (`v + 0` keeps the index out), in the same order where the index decides
/// it; in memory and on disk (the B+Tree's seeker).
#[test]
fn index_scans_agree_with_full_scans() {
    index_scans_agree(qube_sql::Database::memory().unwrap());
    let dir = tempfile::tempdir().unwrap();
    index_scans_agree(qube_sql::Database::open(dir.path()).unwrap());
}

fn index_scans_agree(db: qube_sql::Database) {
    let mut s = db.session().unwrap();
    s.execute(
        "CREATE TABLE r (id int PRIMARY KEY, v int NOT NULL, w text); CREATE INDEX r_v ON r (v);
         INSERT INTO r SELECT g, (g * 7919) % 3000, 'w' || g FROM generate_series(0, 2999) g;
         UPDATE r SET w = w || '!' WHERE id % 3 = 0;
         UPDATE r SET v = v + 1 WHERE id % 5 = 0;
         DELETE FROM r WHERE id % 7 = 0",
    )
    .unwrap();
    check_index_scans(&mut s);
    // The transaction's own writes merged into the scans and fetches.
    s.execute("BEGIN").unwrap();
    s.execute(
        "UPDATE r SET w = 'mine' WHERE id % 11 = 0;
         DELETE FROM r WHERE id % 13 = 0;
         INSERT INTO r SELECT g, g % 3000, 'new' FROM generate_series(3000, 3400) g",
    )
    .unwrap();
    check_index_scans(&mut s);
    s.execute("ROLLBACK").unwrap();
    check_index_scans(&mut s);
}

fn scan_rows(s: &mut qube_sql::Session, q: &str) -> Vec<Vec<qube_sql::Value>> {
    s.execute(q).unwrap().pop().unwrap().rows
}

fn plan_of(s: &mut qube_sql::Session, q: &str) -> String {
    let r = s.execute(&format!("EXPLAIN {q}")).unwrap();
    r[0].rows.iter().map(|r| r[0].to_string()).collect::<Vec<_>>().join("\n")
}

/// `q` (which must use an index on `r.v`) against the same query with
/// `WHERE v + 0` (a full scan): the same rows in the same order.
fn agrees_with_full_scan(s: &mut qube_sql::Session, q: &str) -> Vec<Vec<qube_sql::Value>> {
    let full = q.replace("WHERE v ", "WHERE v + 0 ");
    assert!(plan_of(s, q).contains("Index"), "{q}: {}", plan_of(s, q));
    assert!(!plan_of(s, &full).contains("Index"), "{full}");
    let got = scan_rows(s, q);
    assert_eq!(got, scan_rows(s, &full), "{q}");
    got
}

/// The queries of `index_scans_agree` on table `r`.
fn check_index_scans(s: &mut qube_sql::Session) {
    let rows = scan_rows;
    for (lo, hi) in [(0, 2999), (100, 1400), (5, 5), (2990, 4000), (-10, 3), (7, 2)] {
        for q in [
            format!("SELECT id, w FROM r WHERE v BETWEEN {lo} AND {hi} ORDER BY v, id"),
            format!("SELECT v, id FROM r WHERE v BETWEEN {lo} AND {hi} ORDER BY v DESC, id DESC"),
            format!("SELECT count(*), sum(id), max(w) FROM r WHERE v BETWEEN {lo} AND {hi}"),
            format!("SELECT v + 1, id FROM r WHERE v >= {lo} ORDER BY v DESC, id DESC LIMIT 1500"),
            format!("SELECT id, w FROM r WHERE v >= {lo} ORDER BY v DESC, id DESC LIMIT 7"),
            format!("SELECT w, id FROM r WHERE v <= {hi} ORDER BY v DESC, id DESC LIMIT 1100"),
        ] {
            agrees_with_full_scan(s, &q);
        }
    }
    // A key set (IN list): one fetch for all its entries, forward and reverse.
    let list = "(2999, 5, 1500, 17, 2, 2998, 640, 1)";
    agrees_with_full_scan(s, &format!("SELECT id, w FROM r WHERE v IN {list} ORDER BY v, id"));
    agrees_with_full_scan(
        s,
        &format!("SELECT id, w FROM r WHERE v IN {list} ORDER BY v DESC, id DESC"),
    );
    // Unordered: the same rows, in index order.
    let q = "SELECT id, v, w FROM r WHERE v BETWEEN 200 AND 1800";
    let got = rows(s, q);
    let mut want = rows(s, &q.replace("WHERE v ", "WHERE v + 0 "));
    want.sort_by(|a, b| a[1].total_cmp(&b[1]).then(a[0].total_cmp(&b[0])));
    assert_eq!(got, want);
    // Index-only, reverse, LIMIT: the largest values first.
    let top = rows(s, "SELECT id, v FROM r ORDER BY v DESC LIMIT 10");
    let mut all = rows(s, "SELECT id, v FROM r WHERE v + 0 >= 0");
    all.sort_by(|a, b| b[1].total_cmp(&a[1]).then(b[0].total_cmp(&a[0])));
    assert_eq!(
        top.iter().map(|r| r[1].clone()).collect::<Vec<_>>(),
        all[..10].iter().map(|r| r[1].clone()).collect::<Vec<_>>()
    );
}

/// Index scans whose rows are fetched in batches see their transaction's
/// snapshot: a REPEATABLE READ transaction keeps seeing the rows as they
/// were while another session updates, deletes and inserts rows in the
/// range and commits (and its index scans still agree with its full
/// scans); READ COMMITTED sees the commit at its next statement.
#[test]
fn batched_row_fetches_see_their_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let db = qube_sql::Database::open(dir.path()).unwrap();
    let mut a = db.session().unwrap();
    let mut b = db.session().unwrap();
    a.execute(
        "CREATE TABLE r (id int PRIMARY KEY, v int NOT NULL, w text); CREATE INDEX r_v ON r (v);
         INSERT INTO r SELECT g, (g * 7919) % 3000, 'w' || g FROM generate_series(0, 2999) g",
    )
    .unwrap();
    let queries = [
        "SELECT id, w FROM r WHERE v BETWEEN 0 AND 2999 ORDER BY v, id",
        "SELECT id, w FROM r WHERE v BETWEEN 100 AND 220 ORDER BY v DESC, id DESC",
        "SELECT id, w FROM r WHERE v >= 40 ORDER BY v DESC, id DESC LIMIT 1200",
        "SELECT id, w FROM r WHERE v IN (3, 2000, 2999, 4) ORDER BY v, id",
    ];
    let snapshot = |s: &mut qube_sql::Session| -> Vec<Vec<Vec<qube_sql::Value>>> {
        queries.iter().map(|q| agrees_with_full_scan(s, q)).collect()
    };
    a.execute("BEGIN ISOLATION LEVEL REPEATABLE READ").unwrap();
    let before = snapshot(&mut a);
    b.execute(
        "UPDATE r SET w = 'changed' WHERE id % 4 = 0;
         UPDATE r SET v = 3000 - v WHERE id % 9 = 0;
         DELETE FROM r WHERE id % 10 = 3;
         INSERT INTO r SELECT g, g % 3000, 'inserted' FROM generate_series(3000, 3500) g",
    )
    .unwrap();
    assert_eq!(snapshot(&mut a), before);
    a.execute("COMMIT").unwrap();
    let after = snapshot(&mut a);
    assert_ne!(after, before);
    assert_eq!(after, snapshot(&mut b));
    // READ COMMITTED, inside one transaction: the next statement sees a commit.
    a.execute("BEGIN ISOLATION LEVEL READ COMMITTED").unwrap();
    assert_eq!(snapshot(&mut a), after);
    b.execute("DELETE FROM r WHERE v BETWEEN 100 AND 220").unwrap();
    let now = snapshot(&mut a);
    assert_ne!(now, after);
    assert!(now[1].is_empty());
    a.execute("COMMIT").unwrap();
}

/// Index entries of every key encoding, scanned in index order both ways
/// and by range after updates and deletes, come back as a sort of the
/// same rows without the index does: the MVCC layer stores these keys
/// without escaping them (`qube_txn::keys::PREFIX_FREE`), which is only
/// sound if no entry's key is a proper prefix of another's.
#[test]
fn every_key_encoding_scans_in_index_order() {
    let db = qube_sql::Database::memory().unwrap();
    let mut s = db.session().unwrap();
    s.execute(
        "CREATE TABLE t (id int PRIMARY KEY, n numeric, b bytea, j jsonb, f float8, a int[], x text);
         INSERT INTO t SELECT i,
           CASE i % 11 WHEN 0 THEN 'NaN' WHEN 1 THEN 'Infinity' WHEN 2 THEN '-Infinity'
                       WHEN 3 THEN NULL WHEN 4 THEN 1e100 WHEN 5 THEN -1e-100
                       ELSE (i - 300) / 7.0 END,
           CASE WHEN i % 13 = 0 THEN NULL
                ELSE decode(repeat('00', i % 5) || lpad(to_hex(i % 256), 2, '0') || repeat('ff', i % 3), 'hex') END,
           CASE i % 5 WHEN 0 THEN to_jsonb(i - 300) WHEN 1 THEN to_jsonb('s' || (i % 17))
                      WHEN 2 THEN jsonb_build_array(i % 4, 's') WHEN 3 THEN jsonb_build_object('k', i % 6)
                      ELSE 'null'::jsonb END,
           CASE i % 9 WHEN 0 THEN NULL WHEN 1 THEN -0.0 WHEN 2 THEN 'Infinity' ELSE (i - 300) * 1.5e10 END,
           CASE i % 4 WHEN 0 THEN ARRAY[i % 3] WHEN 1 THEN ARRAY[i % 3, i % 5] WHEN 2 THEN '{}'
                      ELSE ARRAY[i % 3, NULL] END,
           CASE WHEN i % 10 = 0 THEN NULL ELSE repeat('a', i % 4) || (i % 7) END
         FROM generate_series(1, 600) i;
         CREATE TABLE u AS SELECT * FROM t;",
    )
    .unwrap();
    let cols = ["n", "b", "j", "f", "a", "x"];
    for c in cols {
        s.execute(&format!("CREATE INDEX t_{c} ON t ({c}, id)")).unwrap();
    }
    s.execute("CREATE UNIQUE INDEX t_xu ON t (x, n, id)").unwrap();
    // Later versions of some entries, some gone.
    for t in ["t", "u"] {
        s.execute(&format!(
            "UPDATE {t} SET n = n * 2, x = x || 'z', j = '[]' WHERE id % 7 = 0;
             DELETE FROM {t} WHERE id % 19 = 0"
        ))
        .unwrap();
    }
    let text = |s: &mut qube_sql::Session, q: &str| -> Vec<String> {
        s.execute(q).unwrap().remove(0).rows.iter().map(|r| format!("{r:?}")).collect()
    };
    // Every value's entries, through the index (jsonb and arrays have no
    // index order here, only lookups).
    for (c, ty) in [
        ("n", "numeric"),
        ("b", "bytea"),
        ("j", "jsonb"),
        ("f", "float8"),
        ("a", "int[]"),
        ("x", "text"),
    ] {
        let values = s.execute(&format!("SELECT DISTINCT {c}::text FROM u WHERE {c} IS NOT NULL"));
        let values = values.unwrap().remove(0).rows;
        assert!(values.len() > 10, "{c}: {values:?}");
        for v in values {
            let qube_sql::Value::Text(v) = &v[0] else { panic!("{v:?}") };
            let q = |t: &str| format!("SELECT id FROM {t} WHERE {c} = '{v}'::{ty} ORDER BY id");
            let plan = text(&mut s, &format!("EXPLAIN {}", q("t")));
            assert!(plan.iter().any(|l| l.contains(&format!("using t_{c}"))), "{plan:?}");
            let found = text(&mut s, &q("t"));
            assert!(!found.is_empty(), "{}", q("t"));
            assert_eq!(found, text(&mut s, &q("u")), "{}", q("t"));
        }
    }
    for c in ["n", "b", "f", "x"] {
        // (A LIMIT makes the index's order win over a sort.)
        for (order, limit) in
            [("", " LIMIT 9999"), (" DESC", " LIMIT 50"), (" DESC", " LIMIT 9999")]
        {
            let q =
                |t: &str| format!("SELECT {c}, id FROM {t} ORDER BY {c}{order}, id{order}{limit}");
            let plan = text(&mut s, &format!("EXPLAIN {}", q("t")));
            assert!(plan.iter().any(|l| l.contains(&format!("using t_{c}"))), "{plan:?}");
            assert_eq!(text(&mut s, &q("t")), text(&mut s, &q("u")), "{}", q("t"));
        }
        // A range from the 100th value up.
        let mid =
            format!("(SELECT {c} FROM u WHERE {c} IS NOT NULL ORDER BY {c} LIMIT 1 OFFSET 100)");
        let q = |t: &str| format!("SELECT {c}, id FROM {t} WHERE {c} >= {mid} ORDER BY {c}, id");
        assert_eq!(text(&mut s, &q("t")), text(&mut s, &q("u")), "{}", q("t"));
        let q = |t: &str| {
            format!("SELECT {c}, id FROM {t} WHERE {c} < {mid} ORDER BY {c} DESC, id DESC")
        };
        assert_eq!(text(&mut s, &q("t")), text(&mut s, &q("u")), "{}", q("t"));
    }
    let q =
        |t: &str| format!("SELECT x, n, id FROM {t} ORDER BY x DESC, n DESC, id DESC LIMIT 9999");
    assert!(text(&mut s, &format!("EXPLAIN {}", q("t"))).iter().any(|l| l.contains("using t_xu")));
    assert_eq!(text(&mut s, &q("t")), text(&mut s, &q("u")));
}
