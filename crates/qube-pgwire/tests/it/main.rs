//! The PostgreSQL protocol server, end to end: an in-process server on a
//! free loopback port, driven by tokio-postgres (which uses the extended
//! protocol and binary formats) and by a raw socket for what a driver
//! would never send.

mod auth;
mod bad_input;
mod compat;
mod copy;
mod drivers;
mod inline;
mod psql;
mod raw;
mod sessions;
mod slt_wire;

use std::net::SocketAddr;
use std::sync::Arc;

use qube_pgwire::{Config, Server};
use qube_sql::Database;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

pub struct TestServer {
    pub addr: SocketAddr,
    pub server: Arc<Server>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(Config::default()).await
    }

    pub async fn start_with(config: Config) -> TestServer {
        let db = Database::memory().expect("memory database");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = Server::new(db, config);
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(server.clone().serve(listener, stopped));
        TestServer { addr, server, stop, task: Some(task) }
    }

    pub async fn connect(&self) -> Client {
        self.connect_to("qubedb").await.expect("connect")
    }

    pub async fn connect_to(&self, db: &str) -> Result<Client, tokio_postgres::Error> {
        let (client, conn) = tokio_postgres::connect(
            &format!("host=127.0.0.1 port={} user=qubedb dbname={db}", self.addr.port()),
            NoTls,
        )
        .await?;
        tokio::spawn(conn);
        Ok(client)
    }

    /// A fresh client still gets answers.
    pub async fn assert_serving(&self) {
        let c = self.connect().await;
        let r = c.query_one("SELECT 40 + 2", &[]).await.expect("query after bad input");
        assert_eq!(r.get::<_, i32>(0), 42);
    }

    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            t.await.expect("server task").expect("server result");
        }
    }
}

/// Rows of a simple query, as text.
async fn simple_rows(c: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    c.simple_query(sql)
        .await
        .expect(sql)
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_query_several_statements_and_tags() {
    let srv = TestServer::start().await;
    let mut c = raw::Raw::connect(srv.addr).await;
    let msgs = c
        .query(
            "CREATE TABLE t (id int PRIMARY KEY, v text); \
             INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, NULL); \
             UPDATE t SET v = 'z' WHERE id >= 2; DELETE FROM t WHERE id = 3; \
             SELECT id, v FROM t ORDER BY id; BEGIN; SELECT 1 WHERE false; COMMIT",
        )
        .await;
    assert_eq!(
        raw::tags(&msgs),
        [
            "CREATE TABLE",
            "INSERT 0 3",
            "UPDATE 2",
            "DELETE 1",
            "SELECT 2",
            "BEGIN",
            "SELECT 0",
            "COMMIT"
        ]
    );
    // Two row descriptions: the SELECT with rows and the one without.
    assert_eq!(msgs.iter().filter(|m| m.0 == b'T').count(), 2);
    assert_eq!(
        raw::data_rows(&msgs),
        vec![vec![Some("1".into()), Some("a".into())], vec![Some("2".into()), Some("z".into())]]
    );
    assert_eq!(msgs.last().map(|m| (m.0, m.1.clone())), Some((b'Z', b"I".to_vec())));
    // An empty query and a query of only a semicolon.
    for q in ["", " ; "] {
        let msgs = c.query(q).await;
        assert_eq!(msgs.iter().map(|m| m.0).collect::<Vec<_>>(), [b'I', b'Z']);
    }
    // An error stops the rest of the message.
    let msgs = c.query("SELECT 1; SELECT 1/0; SELECT 3").await;
    assert_eq!(raw::tags(&msgs), ["SELECT 1"]);
    assert_eq!(raw::error_field(&msgs, b'C').as_deref(), Some("22012"));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_parameters_and_unknown_database() {
    let srv = TestServer::start().await;
    let c = raw::Raw::connect(srv.addr).await;
    let p = |n: &str| c.params.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    assert_eq!(p("server_version").as_deref(), Some("16.0"));
    assert_eq!(p("server_encoding").as_deref(), Some("UTF8"));
    assert_eq!(p("client_encoding").as_deref(), Some("UTF8"));
    assert_eq!(p("DateStyle").as_deref(), Some("ISO, MDY"));
    assert_eq!(p("TimeZone").as_deref(), Some("UTC"));
    assert_eq!(p("integer_datetimes").as_deref(), Some("on"));
    assert_eq!(p("standard_conforming_strings").as_deref(), Some("on"));
    assert!(c.key_data.is_some());
    let err = srv.connect_to("nosuch").await.expect_err("unknown database");
    assert_eq!(err.code().map(|c| c.code()), Some("3D000"));
    // SET TimeZone is reported back.
    let pg = srv.connect().await;
    pg.batch_execute("SET TimeZone = 'Europe/Berlin'").await.unwrap();
    let r = simple_rows(&pg, "SELECT '2024-01-01 12:00+00'::timestamptz").await;
    assert_eq!(r[0][0].as_deref(), Some("2024-01-01 13:00:00+01"));
    srv.stop().await;
}

/// Settings in the startup packet apply to the session, as in PostgreSQL:
/// a parameter of their own name (libpq sends PGTZ as `timezone`) or in
/// `options` (`-c name=value`, `--name=value`, backslash-escaped spaces);
/// a bad one refuses the connection with SET's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_settings_apply_to_the_session() {
    let srv = TestServer::start().await;
    let mut c = raw::Raw::connect_with(
        srv.addr,
        &[
            ("timezone", "Asia/Tokyo"),
            ("search_path", "s1, public"),
            ("options", "-c statement_timeout=7s --work-mem=8MB -c application_name=my\\ app"),
        ],
    )
    .await
    .expect("startup");
    let p = |n: &str| c.params.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    assert_eq!(p("TimeZone").as_deref(), Some("Asia/Tokyo"));
    let msgs = c
        .query(
            "SELECT current_setting('statement_timeout'), current_setting('work_mem'), \
             current_setting('search_path'), current_setting('application_name'), \
             current_setting('TimeZone')",
        )
        .await;
    assert_eq!(
        raw::data_rows(&msgs),
        vec![vec![
            Some("7s".into()),
            Some("8MB".into()),
            Some("s1, public".into()),
            Some("my app".into()),
            Some("Asia/Tokyo".into()),
        ]]
    );
    // tokio-postgres sends `options` as libpq does.
    let (pg, conn) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user=qubedb dbname=qubedb options='-c statement_timeout=1500'",
            srv.addr.port()
        ),
        NoTls,
    )
    .await
    .expect("connect with options");
    tokio::spawn(conn);
    let r = simple_rows(&pg, "SHOW statement_timeout").await;
    assert_eq!(r[0][0].as_deref(), Some("1500ms"));
    // Bad settings are refused with SET's code, and the server goes on.
    for (extra, code) in [
        (("options", "-c statement_timeout=soon"), "22023"),
        (("options", "statement_timeout=5s"), "42601"),
        (("options", "-c statement_timeout"), "42601"),
        (("options", "-c"), "42601"),
        (("timezone", "Mars/Olympus"), "22023"),
        (("shared_buffers", "1GB"), "55P02"),
        (("work_mem", "1kB"), "22023"),
        (("bad name!", "1"), "42704"),
    ] {
        let body = raw::Raw::connect_with(srv.addr, &[extra])
            .await
            .err()
            .unwrap_or_else(|| panic!("{extra:?} was accepted"));
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains(&format!("C{code}\0")), "{extra:?}: {text}");
        assert!(text.contains("SFATAL\0"), "{extra:?}: {text}");
    }
    srv.assert_serving().await;
    srv.stop().await;
}

/// An interval in binary (tokio-postgres has no type of its own for it).
#[derive(Debug, PartialEq)]
struct Iv {
    micros: i64,
    days: i32,
    months: i32,
}

impl<'a> FromSql<'a> for Iv {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let a: [u8; 16] = raw.try_into()?;
        Ok(Iv {
            micros: i64::from_be_bytes(a[..8].try_into()?),
            days: i32::from_be_bytes(a[8..12].try_into()?),
            months: i32::from_be_bytes(a[12..].try_into()?),
        })
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::INTERVAL
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_query_every_type_binary_and_text() {
    use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
    use rust_decimal::Decimal;
    let srv = TestServer::start().await;
    let c = srv.connect().await;
    c.batch_execute(
        "CREATE TABLE ty (id int8 PRIMARY KEY, s int2, i int4, f4 float4, f8 float8, n numeric(12,3), \
         b bool, t text, vc varchar(10), bp char(4), by bytea, d date, tm time, ts timestamp, \
         tz timestamptz, iv interval, u uuid, j json, jb jsonb, ai int4[], at text[])",
    )
    .await
    .unwrap();
    let stmt = c
        .prepare(
            "INSERT INTO ty VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
             $15, '1 day 02:00:00', $16, $17, $18, $19, $20)",
        )
        .await
        .unwrap();
    // Parameter types come from the engine's binder.
    let want = [
        Type::INT8,
        Type::INT2,
        Type::INT4,
        Type::FLOAT4,
        Type::FLOAT8,
        Type::NUMERIC,
        // varchar(n) and char(n) parameters are typed text (their base
        // type: the length limit applies in the assignment).
        Type::BOOL,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::BYTEA,
        Type::DATE,
        Type::TIME,
        Type::TIMESTAMP,
        Type::TIMESTAMPTZ,
        Type::UUID,
        Type::JSON,
        Type::JSONB,
        Type::INT4_ARRAY,
        Type::TEXT_ARRAY,
    ];
    assert_eq!(stmt.params(), want);
    let d = NaiveDate::from_ymd_opt(2024, 2, 29).unwrap();
    let tm = NaiveTime::from_hms_micro_opt(13, 14, 15, 123456).unwrap();
    let ts = NaiveDateTime::new(d, tm);
    let tz: DateTime<Utc> = DateTime::from_naive_utc_and_offset(ts, Utc);
    let u = uuid::Uuid::parse_str("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").unwrap();
    let j = serde_json::json!({"a": [1, 2, {"b": null}]});
    let n: Decimal = "-12345.678".parse().unwrap();
    let n_rows = c
        .execute(
            &stmt,
            &[
                &1i64,
                &-7i16,
                &70000i32,
                &1.5f32,
                &-2.25e100f64,
                &n,
                &true,
                &"héllo",
                &"vc",
                &"ab",
                &vec![0u8, 1, 255],
                &d,
                &tm,
                &ts,
                &tz,
                &u,
                &j,
                &j,
                &vec![1i32, -2, 3],
                &vec![Some("x".to_string()), None, Some("y z".into())],
            ],
        )
        .await
        .unwrap();
    assert_eq!(n_rows, 1);
    let r = c.query_one("SELECT * FROM ty WHERE id = $1", &[&1i64]).await.unwrap();
    assert_eq!(r.get::<_, i64>("id"), 1);
    assert_eq!(r.get::<_, i16>("s"), -7);
    assert_eq!(r.get::<_, i32>("i"), 70000);
    assert_eq!(r.get::<_, f32>("f4"), 1.5);
    assert_eq!(r.get::<_, f64>("f8"), -2.25e100);
    assert_eq!(r.get::<_, Decimal>("n"), n);
    assert!(r.get::<_, bool>("b"));
    assert_eq!(r.get::<_, String>("t"), "héllo");
    assert_eq!(r.get::<_, String>("vc"), "vc");
    assert_eq!(r.get::<_, String>("bp"), "ab  ");
    assert_eq!(r.get::<_, Vec<u8>>("by"), vec![0u8, 1, 255]);
    assert_eq!(r.get::<_, NaiveDate>("d"), d);
    assert_eq!(r.get::<_, NaiveTime>("tm"), tm);
    assert_eq!(r.get::<_, NaiveDateTime>("ts"), ts);
    assert_eq!(r.get::<_, DateTime<Utc>>("tz"), tz);
    assert_eq!(r.get::<_, Iv>("iv"), Iv { micros: 2 * 3600 * 1_000_000, days: 1, months: 0 });
    assert_eq!(r.get::<_, uuid::Uuid>("u"), u);
    assert_eq!(r.get::<_, serde_json::Value>("j"), j);
    assert_eq!(r.get::<_, serde_json::Value>("jb"), j);
    assert_eq!(r.get::<_, Vec<i32>>("ai"), vec![1, -2, 3]);
    assert_eq!(
        r.get::<_, Vec<Option<String>>>("at"),
        vec![Some("x".to_string()), None, Some("y z".into())]
    );
    // Column types in RowDescription.
    let types: Vec<Type> = r.columns().iter().map(|c| c.type_().clone()).collect();
    assert_eq!(
        types[..6],
        [Type::INT8, Type::INT2, Type::INT4, Type::FLOAT4, Type::FLOAT8, Type::NUMERIC]
    );
    assert_eq!(
        types[16..],
        [Type::UUID, Type::JSON, Type::JSONB, Type::INT4_ARRAY, Type::TEXT_ARRAY]
    );
    // The same row in text format: PostgreSQL's text forms.
    let text = simple_rows(&c, "SELECT * FROM ty").await;
    let want = [
        "1",
        "-7",
        "70000",
        "1.5",
        "-2.25e+100",
        "-12345.678",
        "t",
        "héllo",
        "vc",
        "ab  ",
        "\\x0001ff",
        "2024-02-29",
        "13:14:15.123456",
        "2024-02-29 13:14:15.123456",
        "2024-02-29 13:14:15.123456+00",
        "1 day 02:00:00",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        r#"{"a":[1,2,{"b":null}]}"#,
        r#"{"a": [1, 2, {"b": null}]}"#,
        "{1,-2,3}",
        r#"{x,NULL,"y z"}"#,
    ];
    assert_eq!(text[0], want.iter().map(|s| Some(s.to_string())).collect::<Vec<_>>());
    // Text-format parameters (tokio-postgres sends &str as text for text types;
    // the engine casts them where the statement types them).
    let r = c.query_one("SELECT $1::int4 + 1, $2::date", &[&41i32, &d]).await.unwrap();
    assert_eq!(r.get::<_, i32>(0), 42);
    assert_eq!(r.get::<_, NaiveDate>(1), d);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nulls_arrays_and_numeric_edges() {
    use rust_decimal::Decimal;
    let srv = TestServer::start().await;
    let c = srv.connect().await;
    c.batch_execute("CREATE TABLE n (id int PRIMARY KEY, v int8, t text, a int8[], x numeric)")
        .await
        .unwrap();
    c.execute(
        "INSERT INTO n VALUES ($1, $2, $3, $4, $5)",
        &[&1i32, &None::<i64>, &None::<String>, &None::<Vec<i64>>, &None::<Decimal>],
    )
    .await
    .unwrap();
    c.execute(
        "INSERT INTO n VALUES ($1, $2, $3, $4, $5)",
        &[&2i32, &i64::MIN, &"", &vec![Some(1i64), None], &Decimal::new(1, 28)],
    )
    .await
    .unwrap();
    c.execute("INSERT INTO n VALUES (3, 0, 'x', '{}', 0.000)", &[]).await.unwrap();
    let rows = c.query("SELECT v, t, a, x FROM n ORDER BY id", &[]).await.unwrap();
    assert_eq!(rows[0].get::<_, Option<i64>>(0), None);
    assert_eq!(rows[0].get::<_, Option<String>>(1), None);
    assert_eq!(rows[0].get::<_, Option<Vec<i64>>>(2), None);
    assert_eq!(rows[0].get::<_, Option<Decimal>>(3), None);
    assert_eq!(rows[1].get::<_, i64>(0), i64::MIN);
    assert_eq!(rows[1].get::<_, String>(1), "");
    assert_eq!(rows[1].get::<_, Vec<Option<i64>>>(2), vec![Some(1), None]);
    assert_eq!(rows[1].get::<_, Decimal>(3), Decimal::new(1, 28));
    assert_eq!(rows[2].get::<_, Vec<i64>>(2), Vec::<i64>::new());
    assert_eq!(rows[2].get::<_, Decimal>(3).to_string(), "0.000");
    // A parameter compared with a column takes the column's type.
    let r = c.query("SELECT id FROM n WHERE v = $1", &[&i64::MIN]).await.unwrap();
    assert_eq!(r.len(), 1);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_ready_status_and_aborted_transaction() {
    let srv = TestServer::start().await;
    let mut raw = raw::Raw::connect(srv.addr).await;
    let status = |m: &[(u8, Vec<u8>)]| m.last().map(|m| m.1[0] as char);
    assert_eq!(status(&raw.query("CREATE TABLE t (id int PRIMARY KEY)").await), Some('I'));
    assert_eq!(status(&raw.query("BEGIN").await), Some('T'));
    assert_eq!(status(&raw.query("INSERT INTO t VALUES (1)").await), Some('T'));
    let m = raw.query("INSERT INTO t VALUES (1)").await;
    assert_eq!(raw::error_field(&m, b'C').as_deref(), Some("23505"));
    assert_eq!(status(&m), Some('E'));
    let m = raw.query("SELECT 1").await;
    assert_eq!(raw::error_field(&m, b'C').as_deref(), Some("25P02"));
    assert_eq!(status(&m), Some('E'));
    let m = raw.query("ROLLBACK").await;
    assert_eq!(raw::tags(&m), ["ROLLBACK"]);
    assert_eq!(status(&m), Some('I'));

    // The same through the extended protocol: tokio-postgres transactions.
    let mut c = srv.connect().await;
    let tx = c.transaction().await.unwrap();
    tx.execute("INSERT INTO t VALUES ($1)", &[&5i32]).await.unwrap();
    let e = tx.execute("INSERT INTO t VALUES ($1)", &[&5i32]).await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("23505"));
    let e = tx.query("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("25P02"));
    tx.rollback().await.unwrap();
    let tx = c.transaction().await.unwrap();
    tx.execute("INSERT INTO t VALUES ($1)", &[&6i32]).await.unwrap();
    tx.commit().await.unwrap();
    let ids: Vec<i32> = c
        .query("SELECT id FROM t ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, [6]);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_sqlstate_and_position() {
    let srv = TestServer::start().await;
    let c = srv.connect().await;
    c.batch_execute("CREATE TABLE t (id int)").await.unwrap();
    let e = c.query("SELECT id, nosuch FROM t", &[]).await.unwrap_err();
    let db = e.as_db_error().expect("a database error");
    assert_eq!(db.code().code(), "42703");
    assert_eq!(db.severity(), "ERROR");
    assert_eq!(db.position(), Some(&tokio_postgres::error::ErrorPosition::Original(12)));
    let e = c.simple_query("SELECT 1 FROM nosuch").await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("42P01"));
    let e = c.batch_execute("SELEC 1").await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("42601"));
    // The parameter is typed int4 by the engine, so the driver refuses a
    // string for it; a text-typed one fails in the engine's cast instead.
    c.query("SELECT 1 WHERE $1 = 1", &[&"x"]).await.unwrap_err();
    let e = c.query("SELECT $1::text::int4", &[&"x"]).await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("22P02"));
    let r = c.query_one("SELECT 1", &[]).await.unwrap();
    assert_eq!(r.get::<_, i32>(0), 1);
    srv.stop().await;
}

/// Text parameters of an integer type are read at Bind, as PostgreSQL
/// reads every parameter there: its input rules (blanks, a sign), an
/// error before anything runs, and a declared type that decides the
/// value even where the statement wants text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_parameters_of_integer_types_are_read_at_bind() {
    let srv = TestServer::start().await;
    let mut r = raw::Raw::connect(srv.addr).await;
    r.query("CREATE TABLE ti (s smallint, i int, b bigint)").await;
    r.query("INSERT INTO ti VALUES (1, 2, 3)").await;
    let row = |v: &[&str]| vec![v.iter().map(|s| Some(s.to_string())).collect::<Vec<_>>()];
    let text = |v: &'static str| Some(v.as_bytes());

    // Types inferred from the columns; PostgreSQL's blanks and signs.
    let sql = "SELECT i + $1, b + $2, s + $3 FROM ti WHERE i = $4";
    let m = r.extended(sql, &[], &[text(" 40 "), text("+7"), text("-1"), text("2")], &[]).await;
    assert_eq!(raw::data_rows(&m), row(&["42", "10", "0"]), "{m:?}");
    // NULL stays NULL.
    let m = r.extended("SELECT $1::int IS NULL", &[23], &[None], &[]).await;
    assert_eq!(raw::data_rows(&m), row(&["t"]));
    // Declared int4 where the statement wants text: the value is the int.
    let m = r.extended("SELECT $1::text", &[23], &[text("007")], &[]).await;
    assert_eq!(raw::data_rows(&m), row(&["7"]));
    // Declared text: the text as sent.
    let m = r.extended("SELECT $1::text", &[25], &[text("007")], &[]).await;
    assert_eq!(raw::data_rows(&m), row(&["007"]));

    // Bad input: an error at Bind, before the statement runs (the
    // INSERT adds nothing), then the next Sync finds the session ready.
    for (v, code, message) in [
        ("x", "22P02", "invalid input syntax for type integer: \"x\" (parameter $1)"),
        ("", "22P02", "invalid input syntax for type integer: \"\" (parameter $1)"),
        ("1.5", "22P02", "invalid input syntax for type integer: \"1.5\" (parameter $1)"),
        (
            "99999999999",
            "22003",
            "value \"99999999999\" is out of range for type integer (parameter $1)",
        ),
    ] {
        let m = r.extended("INSERT INTO ti (i) VALUES ($1)", &[], &[text(v)], &[]).await;
        assert_eq!(raw::error_field(&m, b'C').as_deref(), Some(code), "{v:?}: {m:?}");
        assert_eq!(raw::error_field(&m, b'M').as_deref(), Some(message));
        assert_eq!(m.last().map(|m| m.0), Some(b'Z'));
    }
    let m = r.extended("SELECT $1::smallint", &[21], &[text("40000")], &[]).await;
    assert_eq!(raw::error_field(&m, b'C').as_deref(), Some("22003"));
    let m = r.extended("SELECT $1::bigint", &[20], &[text("9223372036854775808")], &[]).await;
    assert_eq!(raw::error_field(&m, b'C').as_deref(), Some("22003"));
    let m = r.extended("SELECT $1::int", &[23], &[Some(b"\xff1".as_slice())], &[]).await;
    assert_eq!(raw::error_field(&m, b'C').as_deref(), Some("22021"));
    let m = r.query("SELECT count(*) FROM ti").await;
    assert_eq!(raw::data_rows(&m), row(&["1"]));
    srv.stop().await;
}

/// A Query or Parse whose text is not UTF-8 is refused with 22021 before
/// anything runs (it used to be read lossily, a string literal's bad
/// bytes becoming U+FFFD): nothing is inserted, a block it is sent in
/// fails, the session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_text_that_is_not_utf8_is_refused() {
    use tokio::io::AsyncWriteExt;
    let srv = TestServer::start().await;
    let mut r = raw::Raw::connect(srv.addr).await;
    r.query("CREATE TABLE tu (id int, t text)").await;
    let status = |m: &[raw::Msg]| m.last().filter(|m| m.0 == b'Z').map(|m| m.1[0]);

    // Simple query: an error, then ReadyForQuery, idle.
    let bad = b"INSERT INTO tu VALUES (1, 'a\xffb')\0";
    r.send(b'Q', bad).await;
    let m = r.until_ready().await;
    assert_eq!(raw::error_field(&m, b'C').as_deref(), Some("22021"), "{m:?}");
    assert_eq!(status(&m), Some(b'I'));
    // The message names the bad sequence as PostgreSQL 15 does (checked
    // against it): the bytes its first byte calls for, at most those left.
    for (text, bytes) in [
        (&b"INSERT INTO tu VALUES (1, 'a\xffb')\0"[..], "0xff"),
        (b"SELECT 'caf\xc3'\0", "0xc3 0x27"),
        (b"SELECT 'x\xe2\x28\xa1'\0", "0xe2 0x28 0xa1"),
        (b"SELECT 1 -- \xfe\0", "0xfe"),
        (b"SELECT 'ab\xf0\x9f'\0", "0xf0 0x9f 0x27"),
    ] {
        r.send(b'Q', text).await;
        let m = r.until_ready().await;
        assert_eq!(raw::error_field(&m, b'C').as_deref(), Some("22021"), "{m:?}");
        let want = format!("invalid byte sequence for encoding \"UTF8\": {bytes}");
        assert_eq!(raw::error_field(&m, b'M'), Some(want));
    }

    // Inside a block, the block fails, as after any statement's error.
    r.query("BEGIN").await;
    r.send(b'Q', bad).await;
    let m = r.until_ready().await;
    assert_eq!(raw::error_field(&m, b'C').as_deref(), Some("22021"));
    assert_eq!(status(&m), Some(b'E'));
    let m = r.query("ROLLBACK").await;
    assert_eq!(status(&m), Some(b'I'));

    // Parse: the error, the rest skipped until Sync, which is answered.
    let mut parse = Vec::new();
    raw::cstr(&mut parse, "");
    parse.extend_from_slice(b"INSERT INTO tu VALUES (2, '\x80')\0");
    parse.extend_from_slice(&[0, 0]);
    let mut bind = Vec::new();
    raw::cstr(&mut bind, "");
    raw::cstr(&mut bind, "");
    bind.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut execute = Vec::new();
    raw::cstr(&mut execute, "");
    execute.extend_from_slice(&0i32.to_be_bytes());
    let all = [
        raw::frame(b'P', &parse),
        raw::frame(b'B', &bind),
        raw::frame(b'E', &execute),
        raw::frame(b'S', &[]),
    ]
    .concat();
    r.stream.write_all(&all).await.unwrap();
    let m = r.until_ready().await;
    assert_eq!(raw::error_field(&m, b'C').as_deref(), Some("22021"), "{m:?}");
    assert_eq!(m.iter().filter(|m| m.0 == b'E').count(), 1, "{m:?}");
    assert_eq!(status(&m), Some(b'I'));
    // A bad statement name is refused the same way.
    let mut parse = Vec::new();
    parse.extend_from_slice(b"s\xff\0SELECT 1\0");
    parse.extend_from_slice(&[0, 0]);
    r.stream.write_all(&[raw::frame(b'P', &parse), raw::frame(b'S', &[])].concat()).await.unwrap();
    let m = r.until_ready().await;
    assert_eq!(raw::error_field(&m, b'C').as_deref(), Some("22021"), "{m:?}");

    // Nothing was inserted; valid UTF-8 beyond ASCII goes through.
    r.query("INSERT INTO tu VALUES (3, 'café ✓')").await;
    let m = r.query("SELECT id, t FROM tu").await;
    let row = vec![Some("3".to_string()), Some("café ✓".to_string())];
    assert_eq!(raw::data_rows(&m), vec![row], "{m:?}");
    srv.stop().await;
}

/// Bind to the unnamed portal again before a Sync replaces it; a named
/// portal lives beside it; in a transaction block the unnamed portal
/// outlives Sync, outside one it does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_binds_replace_the_unnamed_portal() {
    use tokio::io::AsyncWriteExt;
    let srv = TestServer::start().await;
    let mut r = raw::Raw::connect(srv.addr).await;
    r.parse_named("s", "SELECT $1::int * 10").await;
    let bind = |portal: &str, v: &str| {
        let mut b = Vec::new();
        raw::cstr(&mut b, portal);
        raw::cstr(&mut b, "s");
        b.extend_from_slice(&[0, 0, 0, 1]);
        b.extend_from_slice(&(v.len() as i32).to_be_bytes());
        b.extend_from_slice(v.as_bytes());
        b.extend_from_slice(&[0, 0]);
        raw::frame(b'B', &b)
    };
    let execute = |portal: &str| {
        let mut e = Vec::new();
        raw::cstr(&mut e, portal);
        e.extend_from_slice(&0i32.to_be_bytes());
        raw::frame(b'E', &e)
    };
    let sync = raw::frame(b'S', &[]);
    let all = [
        bind("", "1"),
        execute(""),
        bind("", "2"),
        bind("c", "3"),
        execute(""),
        execute("c"),
        sync.clone(),
    ]
    .concat();
    r.stream.write_all(&all).await.unwrap();
    let m = r.until_ready().await;
    let got: Vec<_> = raw::data_rows(&m).into_iter().flatten().flatten().collect();
    assert_eq!(got, ["10", "20", "30"], "{m:?}");

    // Outside a block, Sync closed both.
    for p in ["", "c"] {
        r.stream.write_all(&[execute(p), sync.clone()].concat()).await.unwrap();
        let m = r.until_ready().await;
        assert_eq!(raw::error_field(&m, b'C').as_deref(), Some("34000"), "{p:?}: {m:?}");
    }
    // Inside one, the unnamed portal outlives Sync until COMMIT.
    r.query("BEGIN").await;
    r.stream.write_all(&[bind("", "4"), sync.clone()].concat()).await.unwrap();
    r.until_ready().await;
    r.stream.write_all(&[execute(""), sync.clone()].concat()).await.unwrap();
    let m = r.until_ready().await;
    assert_eq!(raw::data_rows(&m), vec![vec![Some("40".to_string())]], "{m:?}");
    r.query("COMMIT").await;
    r.stream.write_all(&[execute(""), sync.clone()].concat()).await.unwrap();
    let m = r.until_ready().await;
    assert_eq!(raw::error_field(&m, b'C').as_deref(), Some("34000"), "{m:?}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_row_limit_suspends() {
    let srv = TestServer::start().await;
    let mut c = srv.connect().await;
    c.batch_execute("CREATE TABLE g AS SELECT i FROM generate_series(1, 10) AS s(i)")
        .await
        .unwrap();
    let tx = c.transaction().await.unwrap();
    let stmt = tx.prepare("SELECT i FROM g WHERE i > $1 ORDER BY i").await.unwrap();
    let portal = tx.bind(&stmt, &[&2i32]).await.unwrap();
    let mut got = Vec::new();
    let mut batches = 0;
    loop {
        let rows = tx.query_portal(&portal, 3).await.unwrap();
        if rows.is_empty() {
            break;
        }
        batches += 1;
        assert!(rows.len() <= 3);
        got.extend(rows.iter().map(|r| r.get::<_, i32>(0)));
    }
    assert_eq!(got, (3..=10).collect::<Vec<_>>());
    assert_eq!(batches, 3);
    tx.commit().await.unwrap();
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_mid_transaction_rolls_back() {
    let srv = TestServer::start().await;
    let c = srv.connect().await;
    c.batch_execute("CREATE TABLE t (id int PRIMARY KEY)").await.unwrap();
    let mut raw = raw::Raw::connect(srv.addr).await;
    raw.query("BEGIN; INSERT INTO t VALUES (1), (2)").await;
    drop(raw);
    // The server notices the close, drops the session: rolled back.
    let mut n = -1;
    for _ in 0..100 {
        n = c.query_one("SELECT count(*) FROM t", &[]).await.unwrap().get::<_, i64>(0);
        if n == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(n, 0);
    // And the rows are not locked: they can be inserted again.
    c.execute("INSERT INTO t VALUES (1)", &[]).await.unwrap();
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_never_harms_the_server() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let srv = TestServer::start().await;
    let bystander = srv.connect().await;
    bystander
        .batch_execute("BEGIN; CREATE TABLE keep (x int); INSERT INTO keep VALUES (1)")
        .await
        .unwrap();

    // Raw byte sequences before startup.
    let cases: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        vec![0xff; 64],
        vec![0, 0, 0, 3],                         // length below the minimum
        vec![0, 0, 0, 8, 0, 9, 0, 0],             // unknown protocol version 9.0
        vec![0, 0, 0, 8, 0, 2, 0, 0],             // protocol 2.0
        vec![0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0], // huge length
        vec![0, 0, 0, 20, 0, 3, 0, 0, b'u'],      // truncated startup, then close
        vec![0, 0, 0, 9, 0, 3, 0, 0, 0],          // startup without a user
    ];
    for bytes in cases {
        let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
        let _ = s.write_all(&bytes).await;
        let _ = s.shutdown().await;
        let mut buf = Vec::new();
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        srv.assert_serving().await;
    }
    // The unknown protocol version gets PostgreSQL's error.
    let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(&[0, 0, 0, 8, 0, 9, 0, 0]).await.unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    assert_eq!(buf.first(), Some(&b'E'));
    assert!(String::from_utf8_lossy(&buf).contains("0A000"));

    // Bad messages after a good startup.
    let bad: Vec<Vec<u8>> = vec![
        vec![b'Q', 0, 0, 0, 2],                      // length below 4
        vec![b'Q', 0, 0, 0, 9, b'S', b'E'],          // truncated, then close
        vec![b'Q', 0, 0, 0, 6, b'x', b'y'],          // no terminating NUL
        vec![b'B', 0, 0, 0, 6, 0, 0],                // Bind with a short body
        vec![b'P', 0, 0, 0, 5, 0],                   // Parse with a short body
        vec![b'?', 0, 0, 0, 4],                      // unknown message type
        vec![b'E', 0, 0, 0, 4],                      // Execute without a body
        vec![b'D', 0, 0, 0, 4, b'S', 0],             // Describe of a missing statement
        vec![b'p', 0, 0, 0, 8, b'a', b'b', b'c', 0], // password message unasked
        (0..=255u8).cycle().take(4096).collect(),    // noise
    ];
    for bytes in bad {
        let mut r = raw::Raw::connect(srv.addr).await;
        let _ = r.stream.write_all(&bytes).await;
        let _ = r.stream.write_all(b"S\0\0\0\x04").await;
        let mut buf = Vec::new();
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(5), r.stream.read_to_end(&mut buf))
                .await;
        srv.assert_serving().await;
    }
    // A Bind of binary garbage for an int parameter: an error, then Sync works.
    let mut r = raw::Raw::connect(srv.addr).await;
    let m = r.extended("SELECT $1::int4", &[23], &[Some(b"abc".as_slice())], &[1]).await;
    assert_eq!(raw::error_field(&m, b'C').as_deref(), Some("22P03"));
    assert_eq!(m.last().map(|m| m.0), Some(b'Z'));
    let m = r.query("SELECT 7").await;
    assert_eq!(raw::data_rows(&m), vec![vec![Some("7".to_string())]]);

    // The bystander's transaction was never disturbed.
    bystander.batch_execute("COMMIT").await.unwrap();
    let n: i64 = bystander.query_one("SELECT count(*) FROM keep", &[]).await.unwrap().get(0);
    assert_eq!(n, 1);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_statements_in_one_query() {
    let srv = TestServer::start().await;
    let c = srv.connect().await;
    let mut sql = String::from("CREATE TABLE m (i int PRIMARY KEY);");
    for i in 0..2000 {
        sql.push_str(&format!("INSERT INTO m VALUES ({i});"));
    }
    sql.push_str("SELECT count(*), sum(i) FROM m");
    let msgs = c.simple_query(&sql).await.unwrap();
    let completes =
        msgs.iter().filter(|m| matches!(m, SimpleQueryMessage::CommandComplete(_))).count();
    assert_eq!(completes, 2002);
    let r = simple_rows(&c, "SELECT count(*), sum(i) FROM m").await;
    assert_eq!(r, vec![vec![Some("2000".into()), Some("1999000".into())]]);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_results_stream_and_a_long_query_does_not_stall_others() {
    let srv = TestServer::start().await;
    let c = srv.connect().await;
    let rows = c
        .query("SELECT i, repeat('x', 100) FROM generate_series(1, 50000) AS s(i)", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 50000);
    assert_eq!(rows[49999].get::<_, i32>(0), 50000);
    // A long query on one connection while another answers quickly.
    let slow = srv.connect().await;
    let long = tokio::spawn(async move {
        slow.query_one("SELECT count(*) FROM generate_series(1, 3000000)", &[])
            .await
            .map(|r| r.get::<_, i64>(0))
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let start = std::time::Instant::now();
    let quick = srv.connect().await;
    quick.query_one("SELECT 1", &[]).await.unwrap();
    let quick_took = start.elapsed();
    let n = long.await.unwrap().unwrap();
    assert_eq!(n, 3_000_000);
    eprintln!("a quick query took {quick_took:?} while a long one ran");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_connections() {
    let srv = TestServer::start().await;
    let c = srv.connect().await;
    c.query_one("SELECT 1", &[]).await.unwrap();
    assert_eq!(srv.server.connections(), 1);
    srv.stop().await;
    assert!(c.query_one("SELECT 1", &[]).await.is_err());
}

/// A CancelRequest with the session's key stops its running statement
/// (57014); a wrong key does nothing; the session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_stops_the_running_statement() {
    let srv = TestServer::start().await;
    let c = srv.connect().await;
    c.batch_execute("CREATE TABLE big AS SELECT g FROM generate_series(1, 4000) g").await.unwrap();
    let token = c.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        token.cancel_query(NoTls).await
    });
    let started = std::time::Instant::now();
    let e = c
        .simple_query("SELECT count(*) FROM big a, big b WHERE a.g * b.g = -1")
        .await
        .expect_err("cancelled");
    canceller.await.unwrap().unwrap();
    assert_eq!(e.code().map(|c| c.code()), Some("57014"), "{e:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    // The same connection keeps working.
    assert_eq!(simple_rows(&c, "SELECT 1").await, vec![vec![Some("1".into())]]);
    // A CancelRequest with a wrong key is ignored.
    let mut raw = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    use tokio::io::AsyncWriteExt;
    let mut msg = Vec::new();
    msg.extend_from_slice(&16i32.to_be_bytes());
    msg.extend_from_slice(&80877102i32.to_be_bytes());
    msg.extend_from_slice(&1i32.to_be_bytes());
    msg.extend_from_slice(&12345i32.to_be_bytes());
    raw.write_all(&msg).await.unwrap();
    drop(raw);
    assert_eq!(simple_rows(&c, "SELECT count(*) FROM big").await, vec![vec![Some("4000".into())]]);
    drop(c);
    srv.stop().await;
}

/// Beyond max_connections a client gets 53300; a slot freed is usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_is_enforced() {
    let srv = TestServer::start_with(Config { max_connections: 2, ..Config::default() }).await;
    let a = srv.connect().await;
    let b = srv.connect().await;
    let e = srv.connect_to("qubedb").await.expect_err("third connection");
    assert_eq!(e.code().map(|c| c.code()), Some("53300"), "{e:?}");
    drop(b);
    // The freed slot: retry until the server has seen the close.
    let mut ok = false;
    for _ in 0..50 {
        if srv.connect_to("qubedb").await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(ok, "a slot should free up");
    drop(a);
    srv.stop().await;
}

/// A session idle inside a transaction longer than its
/// idle_in_transaction_session_timeout is closed (25P03) and rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_in_transaction_sessions_are_closed() {
    let srv = TestServer::start().await;
    let c = srv.connect().await;
    c.batch_execute("CREATE TABLE t (x int)").await.unwrap();
    c.batch_execute("SET idle_in_transaction_session_timeout = '150ms'").await.unwrap();
    assert_eq!(
        simple_rows(&c, "SHOW idle_in_transaction_session_timeout").await,
        vec![vec![Some("150ms".into())]]
    );
    // Idle outside a transaction: nothing happens.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    c.batch_execute("BEGIN; INSERT INTO t VALUES (1)").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let e = c.batch_execute("COMMIT").await.expect_err("closed");
    assert!(c.is_closed() || e.code().is_some(), "{e:?}");
    let d = srv.connect().await;
    assert_eq!(simple_rows(&d, "SELECT count(*) FROM t").await, vec![vec![Some("0".into())]]);
    drop(d);
    srv.stop().await;
}

/// The statements of one simple Query share an implicit transaction: an
/// error rolls back the whole message, as in PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simple_query_message_is_one_implicit_transaction() {
    let srv = TestServer::start().await;
    let c = srv.connect().await;
    c.batch_execute("CREATE TABLE t (x int)").await.unwrap();
    let e = c.batch_execute("INSERT INTO t VALUES (1); INSERT INTO t VALUES (2); SELECT 1/0").await;
    assert_eq!(e.unwrap_err().code().map(|c| c.code()), Some("22012"));
    assert_eq!(simple_rows(&c, "SELECT count(*) FROM t").await, vec![vec![Some("0".into())]]);
    c.batch_execute("INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)").await.unwrap();
    assert_eq!(simple_rows(&c, "SELECT count(*) FROM t").await, vec![vec![Some("2".into())]]);
    // BEGIN inside makes the block explicit, with what came before it (as
    // PostgreSQL 15 does): it stays open after the message, and ROLLBACK
    // undoes both inserts.
    c.batch_execute("INSERT INTO t VALUES (3); BEGIN; INSERT INTO t VALUES (4)").await.unwrap();
    c.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(simple_rows(&c, "SELECT count(*) FROM t").await, vec![vec![Some("2".into())]]);
    drop(c);
    srv.stop().await;
}

/// psycopg sends `DEALLOCATE ALL` after DDL and `DEALLOCATE name` when its
/// statement cache evicts one: they close the connection's named
/// statements; an unknown name is 26000, and the connection goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deallocate_closes_named_statements() {
    let srv = TestServer::start().await;
    let mut c = raw::Raw::connect(srv.addr).await;
    let code = |m: &[raw::Msg]| raw::error_field(m, b'C');
    for (name, sql) in [("a", "SELECT 1"), ("B b", "SELECT 2"), ("c", "SELECT 3")] {
        assert_eq!(code(&c.parse_named(name, sql).await), None, "parse {name}");
    }
    assert_eq!(raw::tags(&c.query("DEALLOCATE a").await), ["DEALLOCATE"]);
    assert_eq!(code(&c.execute_named("a").await).as_deref(), Some("26000"));
    assert_eq!(raw::data_rows(&c.execute_named("B b").await), [[Some("2".to_string())]]);
    assert_eq!(raw::tags(&c.query("DEALLOCATE PREPARE \"B b\";").await), ["DEALLOCATE"]);
    assert_eq!(code(&c.execute_named("B b").await).as_deref(), Some("26000"));
    assert_eq!(code(&c.query("DEALLOCATE nope").await).as_deref(), Some("26000"));
    assert_eq!(raw::tags(&c.query("deallocate all").await), ["DEALLOCATE ALL"]);
    assert_eq!(code(&c.execute_named("c").await).as_deref(), Some("26000"));
    // In a failed transaction it is refused like any other statement.
    c.query("BEGIN").await;
    assert_eq!(code(&c.query("SELECT 1/0").await).as_deref(), Some("22012"));
    assert_eq!(code(&c.query("DEALLOCATE ALL").await).as_deref(), Some("25P02"));
    c.query("ROLLBACK").await;
    assert_eq!(raw::data_rows(&c.query("SELECT 4").await), [[Some("4".to_string())]]);
    srv.stop().await;
}

/// `pg_index.indkey` is an int2vector on the wire (OID 22, text `1 2`,
/// binary an array from subscript 0), as drivers expect, and an array in SQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn int2vector_on_the_wire() {
    let srv = TestServer::start().await;
    let c = srv.connect().await;
    c.batch_execute("CREATE TABLE iv (a int, b int, c int, PRIMARY KEY (c, a))")
        .await
        .expect("ddl");
    let sql = "SELECT indkey FROM pg_index WHERE indrelid = 'iv'::regclass";
    assert_eq!(simple_rows(&c, sql).await, vec![vec![Some("3 1".to_string())]]);
    let row = c.query_one(sql, &[]).await.expect("binary");
    assert_eq!(row.columns()[0].type_(), &Type::INT2_VECTOR);
    assert_eq!(row.get::<_, Vec<i16>>(0), vec![3, 1]);
    let names = simple_rows(
        &c,
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid \
         AND a.attnum = ANY(i.indkey) WHERE i.indrelid = 'iv'::regclass ORDER BY a.attnum",
    )
    .await;
    assert_eq!(names, vec![vec![Some("a".to_string())], vec![Some("c".to_string())]]);
    srv.stop().await;
}
