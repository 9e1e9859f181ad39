//! Integration tests of the SQL engine, built as one test binary:
//! `cargo test -p qube-sql --test it`.
//!
//! - `slt`: our own feature tests, `tests/slt/*.slt` (sqllogictest-rs format,
//!   expectations checked against PostgreSQL 15), one `#[test]` per file.
//! - `sqlite_corpus`: SQLite's classic sqllogictest corpus from
//!   `../shared/conformance/sqlite` (`sqlite_t0` always, `sqlite_t1` ignored).

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
