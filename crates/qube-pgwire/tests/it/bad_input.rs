//! Inputs at the protocol's limits: protocol versions, oversized
//! messages, the most parameters a Bind can carry, and clients that leave
//! in the middle of a result. After each case the server still serves
//! another session.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{TestServer, raw, simple_rows};

/// A StartupMessage of protocol `major.minor` with `params`.
pub fn startup_packet(major: u16, minor: u16, params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&major.to_be_bytes());
    body.extend_from_slice(&minor.to_be_bytes());
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut m = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    m.extend_from_slice(&body);
    m
}

/// Reads messages until the server closes the connection (or 10 s).
async fn read_all(s: &mut TcpStream) -> Vec<raw::Msg> {
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    let mut out = Vec::new();
    let mut at = 0;
    while at + 5 <= buf.len() {
        let len = i32::from_be_bytes([buf[at + 1], buf[at + 2], buf[at + 3], buf[at + 4]]) as usize;
        if len < 4 || at + 1 + len > buf.len() {
            break;
        }
        out.push((buf[at], buf[at + 5..at + 1 + len].to_vec()));
        at += 1 + len;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_versions_are_refused_or_negotiated() {
    let srv = TestServer::start().await;
    // 4.0 (and 2.0): FATAL 0A000, as PostgreSQL.
    for major in [4u16, 2] {
        let mut s = TcpStream::connect(srv.addr).await.unwrap();
        s.write_all(&startup_packet(major, 0, &[("user", "qubedb")])).await.unwrap();
        let m = read_all(&mut s).await;
        assert_eq!(m.len(), 1, "{m:?}");
        assert_eq!(raw::error_field(&m, b'S').as_deref(), Some("FATAL"));
        assert_eq!(raw::error_field(&m, b'C').as_deref(), Some("0A000"));
        let text = raw::error_field(&m, b'M').unwrap_or_default();
        assert!(text.contains(&format!("unsupported frontend protocol {major}.0")), "{text}");
        srv.assert_serving().await;
    }
    // 3.5 with an unknown protocol option: NegotiateProtocolVersion (the
    // newest version, 3.0, as PostgreSQL encodes it, and the option
    // named), then the session goes on at 3.0.
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    let packet = startup_packet(3, 5, &[("user", "qubedb"), ("_pq_.future", "on")]);
    s.write_all(&packet).await.unwrap();
    let mut r = raw::Raw { stream: s, params: Vec::new(), key_data: None };
    let m = r.until_ready().await;
    let v = m.iter().find(|m| m.0 == b'v').expect("NegotiateProtocolVersion");
    assert_eq!(&v.1[..8], &[0, 3, 0, 0, 0, 0, 0, 1], "3.0, one option");
    assert_eq!(&v.1[8..], b"_pq_.future\0");
    assert_eq!(m.last().map(|m| m.0), Some(b'Z'));
    let m = r.query("SELECT 3").await;
    assert_eq!(raw::data_rows(&m), vec![vec![Some("3".to_string())]]);
    srv.assert_serving().await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_query_is_refused_with_54000() {
    let srv = TestServer::start().await;
    const SIZE: usize = 100 << 20;
    const { assert!(SIZE > qube_pgwire::DEFAULT_MAX_MESSAGE_BYTES) };
    // Announced: the server answers as soon as it reads the length.
    let mut r = raw::Raw::connect(srv.addr).await;
    let mut head = vec![b'Q'];
    head.extend_from_slice(&((SIZE + 4) as i32).to_be_bytes());
    r.stream.write_all(&head).await.unwrap();
    let m = read_all(&mut r.stream).await;
    assert_eq!(raw::error_field(&m, b'S').as_deref(), Some("FATAL"), "{m:?}");
    assert_eq!(raw::error_field(&m, b'C').as_deref(), Some("54000"));
    srv.assert_serving().await;

    // Sent whole: the connection ends (the error, or a reset if the
    // server closed before the client finished writing), and the server
    // neither buffers it nor stops serving.
    let mut r = raw::Raw::connect(srv.addr).await;
    let mut msg = head.clone();
    msg.extend_from_slice(b"SELECT '");
    msg.resize(SIZE + 5 - 2, b'x');
    msg.extend_from_slice(b"'\0");
    let (mut rd, mut wr) = r.stream.split();
    let write = async {
        let _ = wr.write_all(&msg).await;
    };
    let read = async {
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(30), rd.read_to_end(&mut buf)).await;
        buf
    };
    let (_, got) = tokio::join!(write, read);
    if !got.is_empty() {
        assert_eq!(got[0], b'E', "only an error can come back");
        assert!(String::from_utf8_lossy(&got).contains("54000"));
    }
    drop(msg);
    srv.assert_serving().await;

    // A smaller limit is a setting; messages under it run.
    let small = TestServer::start_with(qube_pgwire::Config {
        max_message_bytes: 1 << 20,
        ..qube_pgwire::Config::default()
    })
    .await;
    let c = small.connect().await;
    let q = format!("SELECT length('{}')", "y".repeat(500_000));
    assert_eq!(simple_rows(&c, &q).await, vec![vec![Some("500000".into())]]);
    let q = format!("SELECT length('{}')", "y".repeat(2 << 20));
    let e = c.simple_query(&q).await.expect_err("over the limit");
    assert_eq!(e.code().map(|c| c.code()), Some("54000"), "{e:?}");
    small.assert_serving().await;
    small.stop().await;
    srv.stop().await;
}

/// Parse + Bind with `n` int4 parameters given as text `1..=n`, Execute,
/// Sync; `extra` more values than the count field says.
fn bind_many(sql: &str, n: usize, extra: usize) -> Vec<u8> {
    let frame = |kind: u8, body: &[u8]| {
        let mut m = vec![kind];
        m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        m.extend_from_slice(body);
        m
    };
    let mut p = vec![0];
    p.extend_from_slice(sql.as_bytes());
    p.push(0);
    p.extend_from_slice(&(n as u16).to_be_bytes());
    for _ in 0..n {
        p.extend_from_slice(&23u32.to_be_bytes());
    }
    let mut b = vec![0, 0, 0, 0];
    b.extend_from_slice(&(n as u16).to_be_bytes());
    for i in 1..=n + extra {
        let v = i.to_string();
        b.extend_from_slice(&(v.len() as i32).to_be_bytes());
        b.extend_from_slice(v.as_bytes());
    }
    b.extend_from_slice(&0u16.to_be_bytes());
    let mut out = frame(b'P', &p);
    out.extend(frame(b'B', &b));
    out.extend(frame(b'E', &[0, 0, 0, 0, 0]));
    out.extend(frame(b'S', &[]));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_carries_up_to_65535_parameters() {
    let srv = TestServer::start().await;
    const MAX: usize = 65_535;
    let list: Vec<String> = (1..=MAX).map(|i| format!("${i}")).collect();
    let sql = format!("SELECT sum(x::int) FROM unnest(ARRAY[{}]) AS u(x)", list.join(","));
    // All 65,535 arrive (their sum proves it), as in PostgreSQL.
    let mut r = raw::Raw::connect(srv.addr).await;
    r.stream.write_all(&bind_many(&sql, MAX, 0)).await.unwrap();
    let m = r.until_ready().await;
    assert_eq!(raw::error_field(&m, b'M'), None);
    let sum = (MAX * (MAX + 1) / 2).to_string();
    assert_eq!(raw::data_rows(&m), vec![vec![Some(sum)]]);
    let m = r.query("SELECT 1").await;
    assert_eq!(raw::data_rows(&m), vec![vec![Some("1".into())]]);

    // A 65,536th value cannot be counted: the Bind is malformed (08P01).
    let mut r = raw::Raw::connect(srv.addr).await;
    r.stream.write_all(&bind_many(&sql, MAX, 1)).await.unwrap();
    let m = read_all(&mut r.stream).await;
    assert_eq!(raw::error_field(&m, b'C').as_deref(), Some("08P01"), "{m:?}");
    srv.assert_serving().await;

    // A statement that names $65536 cannot be bound at all (42P02, as
    // PostgreSQL's "there is no parameter $65536").
    let c = srv.connect().await;
    let e = c.simple_query("SELECT $65536::int").await.expect_err("$65536");
    assert_eq!(e.code().map(|c| c.code()), Some("42P02"), "{e:?}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_in_the_middle_of_a_large_result() {
    let srv = TestServer::start().await;
    let watcher = srv.connect().await;
    for extended in [false, true] {
        let mut r = raw::Raw::connect(srv.addr).await;
        let sql = "SELECT i, repeat('x', 200) FROM generate_series(1, 5000000) AS s(i)";
        if extended {
            let mut p = vec![0];
            p.extend_from_slice(sql.as_bytes());
            p.extend_from_slice(&[0, 0, 0]);
            let mut all = vec![b'P'];
            all.extend_from_slice(&((p.len() + 4) as i32).to_be_bytes());
            all.extend_from_slice(&p);
            all.extend_from_slice(&[b'B', 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0]);
            all.extend_from_slice(&[b'E', 0, 0, 0, 9, 0, 0, 0, 0, 0]);
            all.extend_from_slice(&[b'S', 0, 0, 0, 4]);
            r.stream.write_all(&all).await.unwrap();
        } else {
            let mut q = sql.as_bytes().to_vec();
            q.push(0);
            let mut all = vec![b'Q'];
            all.extend_from_slice(&((q.len() + 4) as i32).to_be_bytes());
            all.extend_from_slice(&q);
            r.stream.write_all(&all).await.unwrap();
        }
        let mut rows = 0;
        while rows < 1000 {
            match r.read_msg().await {
                Some((b'D', _)) => rows += 1,
                Some(_) => {}
                None => panic!("the result ended early"),
            }
        }
        drop(r);
        // The statement stops and the session goes away.
        let mut gone = false;
        for _ in 0..1000 {
            let n = simple_rows(&watcher, "SELECT count(*) FROM pg_stat_activity").await;
            if n == vec![vec![Some("1".to_string())]] {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(gone, "the session of a client that left stays");
        srv.assert_serving().await;
    }
    drop(watcher);
    srv.stop().await;
}

/// One frontend message: type, length, body.
fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_or_oversized_execution_messages_are_protocol_violations() {
    let srv = TestServer::start().await;
    let long_name = [vec![b'p'; 10_001], vec![0, 0, 0, 0, 0]].concat();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("Describe of neither S nor P", message(b'D', b"Xname\0")),
        ("Execute without its row limit", message(b'E', b"\0")),
        ("Execute longer than 10,000 bytes", message(b'E', &long_name)),
        ("Query without its terminator", message(b'Q', b"SELECT 1")),
        ("Query with bytes after the terminator", message(b'Q', b"SELECT 1\0x")),
        ("Sync with a body", message(b'S', b"x")),
        ("Bind cut short", message(b'B', b"\0\0\0\x01")),
    ];
    for (what, bytes) in cases {
        let mut r = raw::Raw::connect(srv.addr).await;
        r.stream.write_all(&bytes).await.unwrap();
        let m = read_all(&mut r.stream).await;
        assert_eq!(raw::error_field(&m, b'C').as_deref(), Some("08P01"), "{what}: {m:?}");
        assert_eq!(raw::error_field(&m, b'S').as_deref(), Some("FATAL"), "{what}: {m:?}");
        let text = raw::error_field(&m, b'M').unwrap_or_default();
        assert!(text.starts_with("invalid message format"), "{what}: {text}");
        srv.assert_serving().await;
    }
    // Well-formed, they are answered.
    let mut r = raw::Raw::connect(srv.addr).await;
    let m = r.query("SELECT 41 + 1").await;
    assert_eq!(raw::data_rows(&m), vec![vec![Some("42".into())]]);
    srv.stop().await;
}
