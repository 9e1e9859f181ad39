//! The HTTP API in-process on a loopback port, spoken to with a minimal
//! HTTP/1.1 client over a `TcpStream` (one request per connection).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use serde_json::{Value as J, json};

struct Server {
    addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    runtime: Option<tokio::runtime::Runtime>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    fn start() -> Server {
        Self::start_with(qube_http::Config { max_body_bytes: 1 << 20, ..Default::default() })
    }

    fn start_with(config: qube_http::Config) -> Server {
        Self::start_on(qube_sql::Database::memory().unwrap(), config)
    }

    /// A server over `db`, which the test may also use directly.
    fn start_on(db: qube_sql::Database, config: qube_http::Config) -> Server {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let (addr, task) = runtime.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            (addr, tokio::spawn(qube_http::serve(l, db, config, stopped)))
        });
        Server { addr, stop, runtime: Some(runtime), task: Some(task) }
    }

    /// Sends a request; the status and the body.
    fn request(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        let mut s = TcpStream::connect(self.addr).unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        // A server may answer (413) before reading all of a large body.
        let _ = s.write_all(body);
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        let text = String::from_utf8(raw).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").expect("a response");
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            unchunk(body)
        } else {
            body.to_string()
        };
        (status, body)
    }

    fn query(&self, body: J) -> (u16, J) {
        let (status, text) = self.request("POST", "/v1/query", body.to_string().as_bytes());
        (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")))
    }

    fn ok(&self, sql: &str, params: J) -> J {
        let (status, body) = self.query(json!({"sql": sql, "params": params}));
        assert_eq!(status, 200, "{sql}: {body}");
        body
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        let rt = self.runtime.take().unwrap();
        let task = self.task.take().unwrap();
        rt.block_on(async { task.await.unwrap().unwrap() });
    }
}

fn unchunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let (len, rest) = s.split_once("\r\n").unwrap();
        let n = usize::from_str_radix(len.trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
}

#[test]
fn health() {
    let srv = Server::start();
    let (status, body) = srv.request("GET", "/health", b"");
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<J>(&body).unwrap(), json!({"status": "ok"}));
}

#[test]
fn query_with_params_of_several_types() {
    let srv = Server::start();
    srv.ok(
        "CREATE TABLE t (id integer PRIMARY KEY, big bigint, name text, ok boolean, \
         price numeric(10,2), score double precision, doc jsonb, tags text[], raw bytea, \
         at timestamptz, born date)",
        json!([]),
    );
    let r = srv.ok(
        "INSERT INTO t VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        json!([
            1,
            "9007199254740993",
            "ann \"quoted\"\n",
            true,
            12.5,
            0.25,
            {"a": [1, 2], "b": null},
            ["x", "y"],
            "\\x01ff",
            "2024-05-06 07:08:09+00",
            "2024-02-29"
        ]),
    );
    assert_eq!(r["results"][0]["tag"], "INSERT 0 1");
    srv.ok("INSERT INTO t (id, name) VALUES ($1, $2)", json!([2, null]));
    let r = srv.ok("SELECT * FROM t WHERE id >= $1 ORDER BY id", json!([1]));
    let res = &r["results"][0];
    assert_eq!(res["tag"], "SELECT 2");
    let types: Vec<_> =
        res["columns"].as_array().unwrap().iter().map(|c| c["type"].clone()).collect();
    assert_eq!(
        types,
        [
            "integer",
            "bigint",
            "text",
            "boolean",
            "numeric(10,2)",
            "double precision",
            "jsonb",
            "text[]",
            "bytea",
            "timestamp with time zone",
            "date"
        ]
    );
    assert_eq!(res["columns"][0]["name"], "id");
    assert_eq!(
        res["rows"][0],
        json!([
            1,
            "9007199254740993",
            "ann \"quoted\"\n",
            true,
            "12.50",
            0.25,
            {"a": [1, 2], "b": null},
            ["x", "y"],
            "\\x01ff",
            "2024-05-06 07:08:09+00",
            "2024-02-29"
        ])
    );
    assert_eq!(
        res["rows"][1],
        json!([2, null, null, null, null, null, null, null, null, null, null])
    );
    // Numbers and strings mean the same for a typed parameter.
    let r = srv.ok("SELECT count(*) AS n FROM t WHERE id = $1", json!(["1"]));
    assert_eq!(r["results"][0]["rows"], json!([["1"]]), "count is bigint: a string");
    // Integers, floats, arrays out.
    let r = srv.ok(
        "SELECT 2::smallint, 3, 1.5::real, 'NaN'::float8, ARRAY[1,2,NULL], '-9223372036854775808'::bigint",
        json!([]),
    );
    assert_eq!(
        r["results"][0]["rows"][0],
        json!([2, 3, 1.5, "NaN", [1, 2, null], "-9223372036854775808"])
    );
}

#[test]
fn several_statements() {
    let srv = Server::start();
    let r = srv.ok(
        "CREATE TABLE s (a int); INSERT INTO s VALUES (1), (2); SELECT a FROM s ORDER BY a; \
         UPDATE s SET a = a + 10; DELETE FROM s WHERE a = 11",
        json!([]),
    );
    let tags: Vec<_> =
        r["results"].as_array().unwrap().iter().map(|x| x["tag"].as_str().unwrap()).collect();
    assert_eq!(tags, ["CREATE TABLE", "INSERT 0 2", "SELECT 2", "UPDATE 2", "DELETE 1"]);
    assert_eq!(r["results"][2]["rows"], json!([[1], [2]]));
    assert_eq!(r["results"][0]["columns"], json!([]));
    // An explicit transaction inside one request, and one left open (rolled back).
    srv.ok("BEGIN; INSERT INTO s VALUES (100); COMMIT", json!([]));
    srv.ok("BEGIN; INSERT INTO s VALUES (200)", json!([]));
    let r = srv.ok("SELECT a FROM s ORDER BY a", json!([]));
    assert_eq!(r["results"][0]["rows"], json!([[12], [100]]));
}

#[test]
fn errors_with_code_and_position() {
    let srv = Server::start();
    let (status, body) = srv.query(json!({"sql": "SELECT 1; SELECT * FROM nope"}));
    assert_eq!(status, 400, "{body}");
    let e = &body["error"];
    assert_eq!(e["code"], "42P01", "{body}");
    assert!(e["message"].as_str().unwrap().contains("nope"), "{body}");
    assert_eq!(e["position"], 25, "{body}");
    assert_eq!(e["statement"], 1, "{body}");

    let (status, body) = srv.query(json!({"sql": "SELEC 1"}));
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("42601")), "{body}");

    let (status, body) = srv.query(json!({"sql": "SELECT 1", "database": "nodb"}));
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("3D000")), "{body}");

    // PostgreSQL's DETAIL comes along; no hint or position where none applies.
    srv.ok("CREATE TABLE dup (id int PRIMARY KEY); INSERT INTO dup VALUES (1)", json!([]));
    let (status, body) = srv.query(json!({"sql": "INSERT INTO dup VALUES (1)"}));
    assert_eq!(status, 400, "{body}");
    let e = &body["error"];
    assert_eq!(e["code"], "23505", "{body}");
    assert_eq!(e["message"], "duplicate key value violates unique constraint \"dup_pkey\"");
    assert_eq!(e["detail"], "Key (id)=(1) already exists.", "{body}");
    assert!(e.get("hint").is_none() && e.get("position").is_none(), "{body}");
}

#[test]
fn malformed_json_and_unknown_fields() {
    let srv = Server::start();
    for bad in [&b"{\"sql\": "[..], b"not json", b"{\"query\": \"SELECT 1\"}", b"{\"sql\": 5}"] {
        let (status, text) = srv.request("POST", "/v1/query", bad);
        assert_eq!(status, 400, "{text}");
        let body: J = serde_json::from_str(&text).unwrap();
        assert_eq!(body["error"]["code"], "08P01");
        assert!(body["error"]["message"].as_str().unwrap().contains("invalid JSON"), "{body}");
    }
}

#[test]
fn oversized_body_is_413() {
    let srv = Server::start();
    let big = format!("{{\"sql\": \"SELECT '{}'\"}}", "x".repeat(2 << 20));
    let (status, text) = srv.request("POST", "/v1/query", big.as_bytes());
    assert_eq!(status, 413, "{text}");
    let body: J = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["code"], "54000");
    // The server still serves.
    srv.ok("SELECT 1", json!([]));
}

#[test]
fn unknown_route_is_404() {
    let srv = Server::start();
    let (status, text) = srv.request("GET", "/v2/nothing", b"");
    assert_eq!(status, 404);
    assert!(text.contains("no such route"), "{text}");
    let (status, _) = srv.request("GET", "/v1/query", b"");
    assert_eq!(status, 405);
}

#[test]
fn metrics_count_queries() {
    let srv = Server::start_with(qube_http::Config {
        pg_connections: Some(std::sync::Arc::new(|| 7)),
        ..Default::default()
    });
    srv.ok("CREATE TABLE m (a int); INSERT INTO m VALUES (1), (2), (3)", json!([]));
    srv.ok("SELECT * FROM m; UPDATE m SET a = 0 WHERE a = 1; DELETE FROM m", json!([]));
    srv.query(json!({"sql": "SELECT * FROM nope"}));
    // Each request above came on its own connection; the server counts
    // one as closed when its task sees the close, which on a loaded
    // machine can come after the next request is served. Wait for it.
    let mut text = String::new();
    for _ in 0..200 {
        let (status, t) = srv.request("GET", "/metrics", b"");
        assert_eq!(status, 200);
        text = t;
        if text.contains("qubedb_connections{interface=\"http\"} 1\n") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    for line in [
        "qubedb_queries_total{interface=\"http\",kind=\"select\"} 1",
        "qubedb_queries_total{interface=\"http\",kind=\"insert\"} 1",
        "qubedb_queries_total{interface=\"http\",kind=\"update\"} 1",
        "qubedb_queries_total{interface=\"http\",kind=\"delete\"} 1",
        "qubedb_queries_total{interface=\"http\",kind=\"ddl\"} 1",
        "qubedb_query_errors_total{interface=\"http\"} 1",
        "qubedb_rows_returned_total{interface=\"http\"} 3",
        "qubedb_rows_written_total{interface=\"http\"} 7",
        "qubedb_query_duration_seconds_count{interface=\"http\"} 6",
        "qubedb_connections{interface=\"pg\"} 7",
        "qubedb_connections{interface=\"http\"} 1",
        "qubedb_http_requests_total 3",
        "# TYPE qubedb_query_duration_seconds histogram",
    ] {
        assert!(text.contains(line), "{line} missing in\n{text}");
    }
    for name in [
        "qubedb_transactions_total{outcome=\"committed\"}",
        "qubedb_transactions_total{outcome=\"conflicted\"} 0",
        "qubedb_buffer_pool_hits_total",
        "qubedb_buffer_pool_misses_total",
        "qubedb_wal_fsyncs_total",
        "qubedb_wal_bytes",
        "qubedb_http_connections_total",
    ] {
        assert!(text.contains(name), "{name} missing in\n{text}");
    }
    let committed: u64 = text
        .lines()
        .find(|l| l.starts_with("qubedb_transactions_total{outcome=\"committed\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap();
    // Each of the two requests is one implicit transaction.
    assert!(committed >= 2, "{committed}");
}

/// The value of the exposition line that starts with `series `.
fn value(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} missing in\n{text}"))
        .parse()
        .unwrap()
}

#[test]
fn metrics_count_embedded_sessions_on_the_same_database() {
    let db = qube_sql::Database::memory().unwrap();
    let srv = Server::start_on(db.clone(), qube_http::Config::default());
    let mut s = db.session().unwrap();
    s.execute("CREATE TABLE e (a int); INSERT INTO e VALUES (1), (2), (3)").unwrap();
    s.execute("SELECT * FROM e WHERE a > 1").unwrap();
    // Streamed rows count as well as collected ones.
    let mut n = 0;
    s.execute_streaming("SELECT a FROM e", &[], &mut |_, _| {
        n += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(n, 3);
    s.execute("UPDATE e SET a = a + 1; BEGIN; DELETE FROM e; ROLLBACK").unwrap();
    // A parse error (no latency) and an error while running.
    s.execute("SELEC 1").unwrap_err();
    s.execute("SELECT 1 / 0").unwrap_err();
    // A serialization failure: two blocks write the same row.
    let mut t = db.session().unwrap();
    s.execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT * FROM e").unwrap();
    t.execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT * FROM e").unwrap();
    s.execute("UPDATE e SET a = 10 WHERE a = 2; COMMIT").unwrap();
    let e = t.execute("UPDATE e SET a = 20 WHERE a = 2").unwrap_err();
    assert_eq!(e.sqlstate(), "40001", "{e}");
    t.execute("ROLLBACK").unwrap();
    srv.ok("SELECT 1", json!([]));
    let (status, text) = srv.request("GET", "/metrics", b"");
    assert_eq!(status, 200);
    let e = |name: &str| value(&text, &format!("{name}{{interface=\"embedded\"}}"));
    let kind = |k: &str| {
        value(&text, &format!("qubedb_queries_total{{interface=\"embedded\",kind=\"{k}\"}}"))
    };
    assert_eq!(kind("select"), 4);
    assert_eq!(kind("insert"), 1);
    assert_eq!(kind("update"), 2);
    assert_eq!(kind("delete"), 1);
    assert_eq!(kind("ddl"), 1);
    // BEGIN and ROLLBACK, BEGIN, COMMIT; BEGIN, ROLLBACK.
    assert_eq!(kind("other"), 6);
    assert_eq!(e("qubedb_query_errors_total"), 3);
    // 3 inserted, 3 updated, 3 deleted (rolled back), 1 updated.
    assert_eq!(e("qubedb_rows_written_total"), 10);
    // 2 + 3 by the queries, 3 + 3 by the blocks' SELECTs.
    assert_eq!(e("qubedb_rows_returned_total"), 11);
    assert_eq!(e("qubedb_sessions"), 2);
    assert_eq!(e("qubedb_sessions_total"), 2);
    // Each statement has a latency but the one that did not parse.
    assert_eq!(e("qubedb_query_duration_seconds_count"), 15 + 3 - 1);
    assert_eq!(
        value(&text, "qubedb_query_duration_seconds_bucket{interface=\"embedded\",le=\"+Inf\"}"),
        17
    );
    // The HTTP request is counted apart, its session closed.
    assert_eq!(value(&text, "qubedb_queries_total{interface=\"http\",kind=\"select\"}"), 1);
    assert_eq!(value(&text, "qubedb_sessions{interface=\"http\"}"), 0);
    assert_eq!(value(&text, "qubedb_sessions_total{interface=\"http\"}"), 1);
    assert_eq!(value(&text, "qubedb_queries_total{interface=\"pg\",kind=\"select\"}"), 0);
    assert_eq!(value(&text, "qubedb_transactions_total{outcome=\"conflicted\"}"), 1);
    drop((s, t));
    let (_, text) = srv.request("GET", "/metrics", b"");
    assert_eq!(value(&text, "qubedb_sessions{interface=\"embedded\"}"), 0);
}

#[test]
fn openapi_document() {
    let srv = Server::start();
    let (status, text) = srv.request("GET", "/openapi.json", b"");
    assert_eq!(status, 200);
    let doc: J = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for path in ["/v1/query", "/health", "/metrics", "/openapi.json"] {
        assert!(doc["paths"].get(path).is_some(), "{path}");
    }
    assert!(doc["paths"]["/v1/query"]["post"]["responses"].get("413").is_some());
}
