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

/// A line of the large loads below: escapes, NULLs and multibyte text,
/// so the parser's thread sees all of them.
fn big_line(i: u64) -> String {
    let b = match i % 5 {
        0 => "\\N".to_string(),
        1 => format!("tab\\there {i}"),
        2 => format!("été-{i}"),
        3 => format!("back\\\\slash {i}"),
        _ => format!("plain text number {i} with some length to it"),
    };
    format!("{i}\t{b}\t{}\n", i % 1000)
}

fn big_data(rows: u64) -> Vec<u8> {
    (1..=rows).flat_map(|i| big_line(i).into_bytes()).collect()
}

/// Loads far past the point where COPY moves its parsing to a thread of
/// its own (1 MiB): every row arrives, in order, with its defaults, and
/// an error anywhere — a bad field, a duplicate key, or both in one batch
/// — is the one the first bad line gives, with that line's number, and
/// keeps nothing.
#[test]
fn large_copies_parse_on_a_thread_of_their_own_with_the_same_results() {
    let db = Database::memory().unwrap();
    let mut s = db.session().unwrap();
    s.execute(
        "CREATE TABLE big (a bigint PRIMARY KEY, b text, c integer, d serial, e text DEFAULT 'e')",
    )
    .unwrap();
    const ROWS: u64 = 60_000;
    let data = big_data(ROWS);
    assert!(data.len() > (3 << 20) / 2, "{} bytes", data.len());
    for chunk in [65_536, 262_144, 1_000_003, usize::MAX] {
        s.execute("TRUNCATE big").unwrap();
        let chunks: Vec<&[u8]> = data.chunks(chunk).collect();
        let tag = load(&mut s, "COPY big (a, b, c) FROM STDIN", &chunks).unwrap();
        assert_eq!(tag, format!("COPY {ROWS}"));
        let r = s
            .execute("SELECT count(*), sum(a), sum(c), count(b), count(DISTINCT d), min(e), max(e) FROM big")
            .unwrap();
        let sum_c: i64 = (1..=ROWS as i64).map(|i| i % 1000).sum();
        assert_eq!(
            r[0].rows[0],
            [
                Value::Int8(ROWS as i64),
                Value::Numeric((ROWS * (ROWS + 1) / 2).into()),
                Value::Int8(sum_c),
                Value::Int8((ROWS - ROWS / 5) as i64),
                Value::Int8(ROWS as i64),
                Value::Text("e".into()),
                Value::Text("e".into()),
            ],
            "chunks of {chunk}"
        );
        let r = s
            .execute("SELECT a, b, c FROM big WHERE a IN (1, 2, 3, 4, 5, 59999, 60000) ORDER BY a")
            .unwrap();
        let t = |x: &str| Value::Text(x.into());
        assert_eq!(
            r[0].rows,
            [
                vec![Value::Int8(1), t("tab\there 1"), Value::Int4(1)],
                vec![Value::Int8(2), t("été-2"), Value::Int4(2)],
                vec![Value::Int8(3), t("back\\slash 3"), Value::Int4(3)],
                vec![
                    Value::Int8(4),
                    t("plain text number 4 with some length to it"),
                    Value::Int4(4)
                ],
                vec![Value::Int8(5), Value::Null, Value::Int4(5)],
                vec![
                    Value::Int8(59999),
                    t("plain text number 59999 with some length to it"),
                    Value::Int4(999)
                ],
                vec![Value::Int8(60000), Value::Null, Value::Int4(0)],
            ],
            "chunks of {chunk}"
        );
    }
    s.execute("TRUNCATE big").unwrap();

    // Errors past the first MiB, found by the parser's thread or by the
    // inserts behind it; the earliest bad line wins either way.
    let with = |edits: &[(u64, String)]| -> Vec<u8> {
        (1..=ROWS)
            .flat_map(|i| {
                edits
                    .iter()
                    .find(|(l, _)| *l == i)
                    .map_or_else(|| big_line(i), |(_, t)| t.clone())
                    .into_bytes()
            })
            .collect()
    };
    // (the replaced lines, the SQLSTATE, the error's context)
    type Case = (Vec<(u64, String)>, &'static str, String);
    let cases: Vec<Case> = vec![
        (
            vec![(50_000, "50000\tx\tnot a number\n".into())],
            "22P02",
            "COPY big, line 50000, column c: \"not a number\"".into(),
        ),
        (vec![(50_000, "7\tdup\t1\n".into())], "23505", "COPY big, line 50000".into()),
        (
            vec![(50_001, "7\tdup\t1\n".into()), (50_003, "50003\tx\n".into())],
            "23505",
            "COPY big, line 50001".into(),
        ),
        (
            vec![(50_001, "50001\tx\n".into()), (50_003, "7\tdup\t1\n".into())],
            "22P04",
            "COPY big, line 50001".into(),
        ),
        (
            vec![(59_999, "59999\t\\xff\t1\n".into())],
            "22021",
            "COPY big, line 59999, column b: \"\u{fffd}\"".into(),
        ),
    ];
    for (edits, state, context) in cases {
        let bad = with(&edits);
        let chunks: Vec<&[u8]> = bad.chunks(100_000).collect();
        let e = load(&mut s, "COPY big (a, b, c) FROM STDIN", &chunks).unwrap_err();
        assert_eq!((e.sqlstate(), e.context()), (state, Some(context.as_str())), "{edits:?}: {e}");
        assert_eq!(s.execute("SELECT count(*) FROM big").unwrap()[0].rows[0][0], Value::Int8(0));
    }

    // The end marker past the first MiB: what follows it is ignored.
    let mut ended = big_data(40_000);
    ended.extend_from_slice(b"\\.\nthis is not a row\n");
    let chunks: Vec<&[u8]> = ended.chunks(65_536).collect();
    assert_eq!(load(&mut s, "COPY big (a, b, c) FROM STDIN", &chunks).unwrap(), "COPY 40000");

    // Inside a transaction block: an error fails the block, ROLLBACK undoes
    // the COPY that succeeded before it.
    s.execute("BEGIN").unwrap();
    let more: Vec<u8> = (40_001..=90_000).flat_map(|i| big_line(i).into_bytes()).collect();
    let chunks: Vec<&[u8]> = more.chunks(262_144).collect();
    assert_eq!(load(&mut s, "COPY big (a, b, c) FROM STDIN", &chunks).unwrap(), "COPY 50000");
    let again = load(&mut s, "COPY big (a, b, c) FROM STDIN", &chunks).unwrap_err();
    assert_eq!(again.sqlstate(), "23505");
    assert_eq!(s.execute("SELECT 1").unwrap_err().sqlstate(), "25P02");
    s.execute("ROLLBACK").unwrap();
    assert_eq!(s.execute("SELECT count(*) FROM big").unwrap()[0].rows[0][0], Value::Int8(40_000));

    // CSV with a header, past the first MiB.
    s.execute("TRUNCATE big").unwrap();
    let mut csv = b"a,b,c\n".to_vec();
    for i in 1..=50_000u64 {
        csv.extend_from_slice(
            format!("{i},\"quoted, with \"\"quotes\"\" {i}\",{}\n", i % 7).as_bytes(),
        );
    }
    let chunks: Vec<&[u8]> = csv.chunks(65_536).collect();
    let sql = "COPY big (a, b, c) FROM STDIN (FORMAT csv, HEADER MATCH)";
    assert_eq!(load(&mut s, sql, &chunks).unwrap(), "COPY 50000");
    let r = s.execute("SELECT b, c FROM big WHERE a = 49999").unwrap();
    assert_eq!(r[0].rows[0], [Value::Text("quoted, with \"quotes\" 49999".into()), Value::Int4(5)]);
}
