//! What drivers read from RowDescription and ParameterDescription: each
//! result field's source table OID and column number (tokio-postgres's
//! `Column::table_oid`/`column_id`), checked against pg_class and
//! pg_attribute, and the types inferred for parameters inside ARRAY[…]
//! (the same answers PostgreSQL 15 gives for these statements).

use tokio_postgres::Client;
use tokio_postgres::types::Type;

use crate::TestServer;

/// `table.column` for each field of `sql` (looked up in the catalog by
/// the field's table OID and column number), or `-` for a field from no
/// table column.
async fn origins(c: &Client, sql: &str) -> Vec<String> {
    let stmt = c.prepare(sql).await.expect(sql);
    let mut out = Vec::new();
    for col in stmt.columns() {
        match (col.table_oid(), col.column_id()) {
            (Some(oid), Some(num)) => {
                let row = c
                    .query_one(
                        "SELECT c.relname || '.' || a.attname FROM pg_class c \
                         JOIN pg_attribute a ON a.attrelid = c.oid \
                         WHERE c.oid = $1::int8 AND a.attnum = $2",
                        &[&i64::from(oid), &num],
                    )
                    .await
                    .expect("the origin is in the catalog");
                out.push(row.get(0));
            }
            (None, None) => out.push("-".to_string()),
            other => panic!("{sql}: half an origin {other:?}"),
        }
    }
    // The same fields come with the rows of a simple query.
    let rows = c.simple_query(sql).await.expect(sql);
    assert!(!rows.is_empty(), "{sql}: a command tag at least");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_description_names_the_source_column() {
    let srv = TestServer::start().await;
    let c = srv.connect().await;
    c.batch_execute(
        "CREATE TABLE ro_t (a integer, b text, c integer); \
         CREATE TABLE ro_u (a integer, d text); \
         CREATE VIEW ro_v AS SELECT c, a FROM ro_t; \
         INSERT INTO ro_t VALUES (1, 'x', 2)",
    )
    .await
    .expect("schema");
    let cases: &[(&str, &[&str])] = &[
        // Plain references, aliases and casts to the column's own type
        // keep the origin; expressions and other casts have none.
        (
            "SELECT a, b, a + 1, c AS x, (a), a::integer, a::bigint FROM ro_t",
            &["ro_t.a", "ro_t.b", "-", "ro_t.c", "ro_t.a", "ro_t.a", "-"],
        ),
        ("SELECT * FROM ro_t", &["ro_t.a", "ro_t.b", "ro_t.c"]),
        ("SELECT t.* FROM ro_t t", &["ro_t.a", "ro_t.b", "ro_t.c"]),
        // A view's columns are the view's (PostgreSQL reports the view).
        ("SELECT * FROM ro_v", &["ro_v.c", "ro_v.a"]),
        // Through subqueries and CTEs to the table.
        ("SELECT s.b FROM (SELECT b, a FROM ro_t) s", &["ro_t.b"]),
        ("WITH w AS (SELECT c FROM ro_t) SELECT c FROM w", &["ro_t.c"]),
        // Joins: each side's table; USING's merged column is the left one
        // (none for FULL, where it is a COALESCE).
        ("SELECT t.a, u.d FROM ro_t t JOIN ro_u u ON u.a = t.a", &["ro_t.a", "ro_u.d"]),
        ("SELECT a, d FROM ro_t JOIN ro_u USING (a)", &["ro_t.a", "ro_u.d"]),
        ("SELECT a FROM ro_t FULL JOIN ro_u USING (a)", &["-"]),
        // Grouping keeps a key's origin; aggregates and set operations
        // have none.
        ("SELECT a, count(*), max(c) FROM ro_t GROUP BY a", &["ro_t.a", "-", "-"]),
        ("SELECT a FROM ro_t UNION SELECT c FROM ro_t", &["-"]),
        ("SELECT DISTINCT b FROM ro_t ORDER BY b", &["ro_t.b"]),
        ("SELECT 1, 'x'", &["-", "-"]),
        // System relations too.
        ("SELECT relname, oid FROM pg_class LIMIT 1", &["pg_class.relname", "pg_class.oid"]),
    ];
    for (sql, want) in cases {
        assert_eq!(origins(&c, sql).await, *want, "{sql}");
    }
    // RETURNING and statements without rows carry no origins.
    let stmt = c.prepare("INSERT INTO ro_t VALUES (2, 'y', 3) RETURNING a").await.expect("ins");
    assert_eq!(stmt.columns()[0].table_oid(), None);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_inside_array_constructors() {
    let srv = TestServer::start().await;
    let c = srv.connect().await;
    let cases: &[(&str, &[Type])] = &[
        ("SELECT ARRAY[$1, $2]", &[Type::TEXT, Type::TEXT]),
        ("SELECT $1 = ANY(ARRAY[$2])", &[Type::TEXT, Type::TEXT]),
        // A cast of the constructor gives its elements the element type.
        ("SELECT ARRAY[$1]::int[]", &[Type::INT4]),
        ("SELECT CAST(ARRAY[$1, $2] AS bigint[])", &[Type::INT8, Type::INT8]),
        ("SELECT ARRAY[$1, 2]", &[Type::INT4]),
        ("SELECT ARRAY[$1::int8, $2]", &[Type::INT8, Type::INT8]),
        ("SELECT ARRAY[$1, 2.5]", &[Type::NUMERIC]),
        ("SELECT ARRAY[$1, 'a']", &[Type::TEXT]),
    ];
    for (sql, want) in cases {
        let stmt = c.prepare(sql).await.expect(sql);
        assert_eq!(stmt.params(), *want, "{sql}");
    }
    // And the values convert as those types.
    let row = c.query_one("SELECT ARRAY[$1]::int[]", &[&7i32]).await.expect("int[]");
    assert_eq!(row.get::<_, Vec<i32>>(0), vec![7]);
    let row = c
        .query_one("SELECT CAST(ARRAY[$1, $2] AS bigint[])", &[&1i64, &2i64])
        .await
        .expect("bigint[]");
    assert_eq!(row.get::<_, Vec<i64>>(0), vec![1, 2]);
    // As in PostgreSQL, an untyped ARRAY[$1] compared with integers is
    // text[], and there is no integer = text operator.
    let e = c.prepare("SELECT 1 = ANY(ARRAY[$1])").await.expect_err("int = text");
    assert_eq!(e.as_db_error().map(|d| d.code().code()), Some("42883"));
    srv.stop().await;
}
