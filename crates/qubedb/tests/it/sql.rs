//! `qubedb sql -c` and `-f` on a temporary data directory.

use crate::qubedb;

#[test]
fn sql_c_prints_aligned_tables_and_tags() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (code, out, err) = qubedb(&[
        "sql",
        "--data",
        d,
        "-c",
        "CREATE TABLE t (id int, name text); INSERT INTO t VALUES (1, 'alice'), (10, NULL)",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, "CREATE TABLE\nINSERT 0 2\n");
    // The data persists in the directory.
    let (code, out, err) =
        qubedb(&["sql", "--data", d, "-c", "SELECT id, name FROM t ORDER BY id"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, " id | name  \n----+-------\n  1 | alice\n 10 | \n(2 rows)\n\n");
    let (code, out, _) = qubedb(&["sql", "--memory", "-c", "SELECT 1 AS one"]);
    assert_eq!(code, 0);
    assert_eq!(out, " one \n-----\n   1\n(1 row)\n\n");
}

#[test]
fn sql_f_stops_at_the_first_error() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("s.sql");
    std::fs::write(
        &script,
        "CREATE TABLE a (x int);\n-- a comment; with a semicolon\nINSERT INTO a VALUES (1);\n\
         SELECT *\n  FROM nope;\nINSERT INTO a VALUES (2);\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let (code, out, err) = qubedb(&[
        "sql",
        "--data",
        data.to_str().unwrap(),
        "-v",
        "ON_ERROR_STOP=1",
        "-f",
        script.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(out, "CREATE TABLE\nINSERT 0 1\n");
    assert!(err.starts_with("ERROR:  42P01: relation \"nope\" does not exist"), "{err}");
    assert!(err.contains("LINE 2:   FROM nope\n"), "{err}");
    // The statement after the error did not run.
    let (code, out, _) =
        qubedb(&["sql", "--data", data.to_str().unwrap(), "-c", "SELECT count(*) FROM a"]);
    assert_eq!(code, 0);
    assert!(out.contains("     1\n(1 row)"), "{out}");
}

#[test]
fn sql_errors_and_usage() {
    let (code, _, err) = qubedb(&["sql", "--memory", "-c", "SELEC 1"]);
    assert_eq!(code, 1);
    assert!(err.starts_with("ERROR:  42601: syntax error"), "{err}");
    let (code, _, err) = qubedb(&["sql", "--memory"]);
    assert_eq!(code, 2);
    assert!(err.contains("-c"), "{err}");
    let (code, _, err) = qubedb(&["sql", "--memory", "-f", "/nonexistent/x.sql"]);
    assert_eq!(code, 2);
    assert!(err.contains("x.sql"), "{err}");
}
