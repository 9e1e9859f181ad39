//! COPY through the embedded API (`Session::copy_in` / `copy_out`): the
//! same rows whatever the chunk boundaries, PostgreSQL's escapes and
//! CSV rules, errors with their context, transactions.

use qube_sql::{CopyKind, CopyOut, Database, Session, Value};

fn load(s: &mut Session, sql: &str, chunks: &[&[u8]]) -> qube_sql::Result<String> {
    let p = s.prepare(sql)?;
    assert_eq!(p.copy_kind(0), Some(CopyKind::In));
    let mut c = s.copy_in(&p, 0)?;
    for ch in chunks {
        c.write(ch)?;
    }
    Ok(c.finish()?.tag)
}

fn dump(s: &mut Session, sql: &str) -> String {
    let p = s.prepare(sql).unwrap();
    assert_eq!(p.copy_kind(0), Some(CopyKind::Out));
    let mut out = Vec::new();
    let mut cols = 0;
    s.copy_out(&p, 0, &[], &mut |ev| {
        match ev {
            CopyOut::Start { columns } => cols = columns,
            CopyOut::Line(l) => out.extend_from_slice(l),
        }
        Ok(())
    })
    .unwrap();
    assert!(cols > 0);
    String::from_utf8(out).unwrap()
}

#[test]
fn copy_in_is_the_same_for_every_chunking() {
    let data: &[u8] = b"1\tplain\t\\N\n2\ttab\\there\\\\\t3.5\n3\t\\101\\x42\\u\t-1\r\n";
    let text = "1\tplain\t\\N\n2\ttab\\there\\\\\t3.5\n3\tABu\t-1\n";
    let csv: &[u8] = b"a,b,c\n1,\"multi\nline, \"\"q\"\"\",\n2,,7\n";
    let db = Database::memory().unwrap();
    let mut s = db.session().unwrap();
    s.execute("CREATE TABLE t (a int PRIMARY KEY, b text, c numeric)").unwrap();
    // The CRLF line at the end: text mode takes its line ending from the
    // first line, so here \r is data and rejected.
    let e = load(&mut s, "COPY t FROM STDIN", &[data]).unwrap_err();
    assert_eq!(e.sqlstate(), "22P04");
    assert_eq!(e.context(), Some("COPY t, line 3"));
    let data = &data[..data.len() - 2];
    for size in [1, 2, 3, 5, 7, 64] {
        s.execute("TRUNCATE t").unwrap();
        let chunks: Vec<&[u8]> = data.chunks(size).collect();
        assert_eq!(load(&mut s, "COPY t FROM STDIN", &chunks).unwrap(), "COPY 3");
        assert_eq!(dump(&mut s, "COPY t TO STDOUT"), text, "chunks of {size}");
        s.execute("TRUNCATE t").unwrap();
        let chunks: Vec<&[u8]> = csv.chunks(size).collect();
        assert_eq!(
            load(&mut s, "COPY t FROM STDIN (FORMAT csv, HEADER true)", &chunks).unwrap(),
            "COPY 2"
        );
        let r = s.execute("SELECT b, c FROM t ORDER BY a").unwrap();
        assert_eq!(r[0].rows[0][0], Value::Text("multi\nline, \"q\"".into()), "chunks of {size}");
        assert_eq!(r[0].rows[0][1], Value::Null);
        assert_eq!(r[0].rows[1][0], Value::Null);
    }
    assert_eq!(
        dump(&mut s, "COPY t (a, b) TO STDOUT WITH (FORMAT csv, HEADER, FORCE_QUOTE (a))"),
        "a,b\n\"1\",\"multi\nline, \"\"q\"\"\"\n\"2\",\n"
    );
}

#[test]
fn copy_options_and_defaults() {
    let db = Database::memory().unwrap();
    let mut s = db.session().unwrap();
    s.execute("CREATE TABLE t (id serial, a text NOT NULL DEFAULT 'd', b int CHECK (b > 0))")
        .unwrap();
    assert_eq!(load(&mut s, "COPY t (b) FROM STDIN", &[b"5\n6\n"]).unwrap(), "COPY 2");
    assert_eq!(
        load(&mut s, "copy t (a, b) from stdin with csv force not null a null 'x'", &[b"x,7\n"])
            .unwrap(),
        "COPY 1"
    );
    assert_eq!(
        load(&mut s, "COPY t (a, b) FROM STDIN (FORMAT csv, FORCE_NULL (b))", &[b"q,\"\"\n"])
            .unwrap(),
        "COPY 1"
    );
    let r = s.execute("SELECT id, a, b FROM t ORDER BY id").unwrap();
    let rows: Vec<String> = r[0]
        .rows
        .iter()
        .map(|r| r.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(","))
        .collect();
    assert_eq!(rows, ["1,d,5", "2,d,6", "3,x,7", "4,q,NULL"]);
    // CHECK, NOT NULL, and HEADER MATCH.
    assert_eq!(load(&mut s, "COPY t (b) FROM STDIN", &[b"0\n"]).unwrap_err().sqlstate(), "23514");
    let e = load(&mut s, "COPY t (a) FROM STDIN", &[b"\\N\n"]).unwrap_err();
    assert_eq!(e.sqlstate(), "23502");
    let e = load(&mut s, "COPY t (a, b) FROM STDIN (FORMAT csv, HEADER match)", &[b"a,c\n"])
        .unwrap_err();
    assert_eq!(e.sqlstate(), "22P04");
    assert_eq!(
        load(&mut s, "COPY t (a, b) FROM STDIN (FORMAT csv, HEADER match)", &[b"a,b\nz,9\n"])
            .unwrap(),
        "COPY 1"
    );
    // Unterminated CSV quote at the end of the data.
    let e = load(&mut s, "COPY t (a, b) FROM STDIN (FORMAT csv)", &[b"\"open,1\n"]).unwrap_err();
    assert_eq!(e.sqlstate(), "22P04");
    // Plain execute() cannot run COPY to the client; files are not built.
    assert_eq!(s.execute("COPY t FROM STDIN").unwrap_err().sqlstate(), "0A000");
    assert_eq!(s.execute("COPY t TO '/tmp/x'").unwrap_err().sqlstate(), "0A000");
    assert_eq!(s.execute("SELECT count(*) FROM t").unwrap()[0].rows[0][0], Value::Int8(5));
}

#[test]
fn copy_in_follows_the_transaction() {
    let db = Database::memory().unwrap();
    let mut s = db.session().unwrap();
    s.execute("CREATE TABLE t (a int)").unwrap();
    s.execute("BEGIN").unwrap();
    load(&mut s, "COPY t FROM STDIN", &[b"1\n2\n"]).unwrap();
    assert_eq!(s.execute("SELECT count(*) FROM t").unwrap()[0].rows[0][0], Value::Int8(2));
    s.execute("ROLLBACK").unwrap();
    assert_eq!(s.execute("SELECT count(*) FROM t").unwrap()[0].rows[0][0], Value::Int8(0));
    // Dropped unfinished (a client gone): nothing stays.
    {
        let p = s.prepare("COPY t FROM STDIN").unwrap();
        let mut c = s.copy_in(&p, 0).unwrap();
        c.write(b"1\n2\n").unwrap();
    }
    assert_eq!(s.execute("SELECT count(*) FROM t").unwrap()[0].rows[0][0], Value::Int8(0));
    let p = s.prepare("COPY t FROM STDIN").unwrap();
    let c = s.copy_in(&p, 0).unwrap();
    assert_eq!(c.abort("no").sqlstate(), "57014");
    // A big load in one transaction, in chunks of 64 KiB.
    let mut data = Vec::new();
    for i in 0..200_000 {
        data.extend_from_slice(format!("{i}\n").as_bytes());
    }
    let chunks: Vec<&[u8]> = data.chunks(65536).collect();
    assert_eq!(load(&mut s, "COPY t FROM STDIN", &chunks).unwrap(), "COPY 200000");
    assert_eq!(
        s.execute("SELECT count(*), sum(a) FROM t").unwrap()[0].rows[0],
        vec![Value::Int8(200_000), Value::Int8(19_999_900_000)]
    );
}

#[test]
fn copy_numbers_parse_as_casts_do() {
    let db = Database::memory().unwrap();
    let mut s = db.session().unwrap();
    s.execute("CREATE TABLE n (id bigint PRIMARY KEY, s smallint, d double precision)").unwrap();
    let data = b"1\t-7\t1.5\n2\t+3\tNaN\n3\t\\N\t-Infinity\n4\t0\t inf \n5\t32767\t-2.5e-3\n";
    assert_eq!(load(&mut s, "COPY n FROM STDIN", &[data]).unwrap(), "COPY 5");
    let got = s.execute("SELECT s, d FROM n ORDER BY id").unwrap();
    let want = s
        .execute(
            "SELECT s::smallint, d::float8 FROM (VALUES (1, '-7', '1.5'), (2, '+3', 'NaN'), \
             (3, NULL, '-Infinity'), (4, '0', ' inf '), (5, '32767', '-2.5e-3')) v(i, s, d) \
             ORDER BY i",
        )
        .unwrap();
    // Compared as text: NaN is not equal to itself.
    assert_eq!(format!("{:?}", got[0].rows), format!("{:?}", want[0].rows));
    assert_eq!(got[0].rows[0], [Value::Int2(-7), Value::Float8(1.5)]);
    // Out of range and malformed numbers fail as the casts do, with the
    // line and column.
    for (line, state) in [
        ("9\t32768\t1\n", "22003"),
        ("9\t1\t1e400\n", "22003"),
        ("9\tx\t1\n", "22P02"),
        ("9\t1\t1.5x\n", "22P02"),
    ] {
        let e = load(&mut s, "COPY n FROM STDIN", &[line.as_bytes()]).unwrap_err();
        assert_eq!(e.sqlstate(), state, "{line:?}: {e}");
        assert!(e.context().is_some_and(|c| c.starts_with("COPY n, line 1, column ")), "{e:?}");
    }
    assert_eq!(s.execute("SELECT count(*) FROM n").unwrap()[0].rows[0][0], Value::Int8(5));
}

/// Text format with a delimiter and a NULL string of its own: plain bytes
/// between delimiters are copied whole, an escaped delimiter is data, a
/// field equal to the NULL string (before unescaping) is NULL, and a
/// carriage return inside a field is still rejected.
#[test]
fn copy_text_with_its_own_delimiter_and_null() {
    let db = Database::memory().unwrap();
    let mut s = db.session().unwrap();
    s.execute("CREATE TABLE t (a int PRIMARY KEY, b text, c text)").unwrap();
    let data: &[u8] = b"1|long plain field of some length|nil\n2|a\\|b\\\\|\\N\n3||x\\tz\n";
    for size in [1, 4, 100] {
        s.execute("TRUNCATE t").unwrap();
        let chunks: Vec<&[u8]> = data.chunks(size).collect();
        let sql = "COPY t FROM STDIN (DELIMITER '|', NULL 'nil')";
        assert_eq!(load(&mut s, sql, &chunks).unwrap(), "COPY 3");
        let r = s.execute("SELECT b, c FROM t ORDER BY a").unwrap();
        let rows: Vec<Vec<Value>> = r[0].rows.clone();
        assert_eq!(
            rows,
            [
                vec![Value::Text("long plain field of some length".into()), Value::Null],
                vec![Value::Text("a|b\\".into()), Value::Text("N".into())],
                vec![Value::Text("".into()), Value::Text("x\tz".into())],
            ],
            "chunks of {size}"
        );
    }
    let e = load(&mut s, "COPY t FROM STDIN (DELIMITER '|')", &[b"9|ab\rc|d\n"]).unwrap_err();
    assert_eq!(e.sqlstate(), "22P04");
}

/// UTF-8 is checked per field, as PostgreSQL does: multibyte text passes,
/// escapes may spell a character within one field, but a character whose
/// bytes an escape splits across two fields is invalid in both (even
/// though the record's bytes together are valid), and an invalid byte is
/// 22021 with the line and column. Rows overwrite the previous row's
/// values: text after a longer text, NULL after text and text after NULL
/// come out as given, and omitted columns get their defaults every row.
#[test]
fn copy_checks_utf8_per_field_and_reuses_no_stale_values() {
    let db = Database::memory().unwrap();
    let mut s = db.session().unwrap();
    s.execute(
        "CREATE TABLE u (a int PRIMARY KEY, b text, c text, d serial, e text DEFAULT 'dflt')",
    )
    .unwrap();
    let data = "1\tgrüße 東京 🦀\tx\n2\t\\xc3\\xa9t\\303\\251\tlonger text here\n3\tab\t\\N\n4\t\\N\tz\n5\t\t\n";
    assert_eq!(load(&mut s, "COPY u (a, b, c) FROM STDIN", &[data.as_bytes()]).unwrap(), "COPY 5");
    let r = s.execute("SELECT b, c, d, e FROM u ORDER BY a").unwrap();
    let t = |x: &str| Value::Text(x.into());
    assert_eq!(
        r[0].rows,
        [
            vec![t("grüße 東京 🦀"), t("x"), Value::Int4(1), t("dflt")],
            vec![t("été"), t("longer text here"), Value::Int4(2), t("dflt")],
            vec![t("ab"), Value::Null, Value::Int4(3), t("dflt")],
            vec![Value::Null, t("z"), Value::Int4(4), t("dflt")],
            vec![t(""), t(""), Value::Int4(5), t("dflt")],
        ]
    );
    for (line, column) in [
        // é's two bytes, one at the end of b and one at the start of c.
        (&b"9\tx\\xc3\t\\xa9y\n"[..], "b"),
        (&b"9\tok\t\xff\n"[..], "c"),
        (&b"9\t\xc3\tok\n"[..], "b"),
        (&b"9\tok\t\xe6\x9d\n"[..], "c"),
    ] {
        let e = load(&mut s, "COPY u (a, b, c) FROM STDIN", &[line]).unwrap_err();
        assert_eq!(e.sqlstate(), "22021", "{line:?}: {e}");
        assert!(
            e.context()
                .is_some_and(|c| c.starts_with(&format!("COPY u, line 1, column {column}: "))),
            "{line:?}: {e:?}"
        );
    }
    // Nothing of the failed loads was kept.
    assert_eq!(s.execute("SELECT count(*) FROM u").unwrap()[0].rows[0][0], Value::Int8(5));
}
