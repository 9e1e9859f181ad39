//! Authentication and TLS: SCRAM-SHA-256 logins with tokio-postgres and
//! psql (PGPASSWORD), trust that still checks the role, the errors
//! PostgreSQL gives (28P01, 28000) and that the connection closes after
//! them; TLS with a self-signed certificate made here (rcgen) through
//! psql `sslmode=require`, and the bad inputs around SSLRequest.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use qube_pgwire::{Auth, Config, Server};
use qube_sql::Database;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_postgres::NoTls;

/// A server over `db` (which the test prepared), stopped when dropped.
struct Srv {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Srv {
    async fn start(db: Database, config: Config) -> Srv {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(Server::new(db, config).serve(listener, stopped));
        Srv { addr, stop, task }
    }

    async fn login(
        &self,
        user: &str,
        password: Option<&str>,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let mut conf =
            format!("host=127.0.0.1 port={} user={user} dbname=qubedb", self.addr.port());
        if let Some(p) = password {
            conf.push_str(&format!(" password='{p}'"));
        }
        let (client, conn) = tokio_postgres::connect(&conf, NoTls).await?;
        tokio::spawn(conn);
        Ok(client)
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        self.task.await.expect("server task").expect("server result");
    }
}

/// The SQLSTATE and message of a failed login.
fn failure(r: Result<tokio_postgres::Client, tokio_postgres::Error>) -> (String, String) {
    let Err(e) = r else { panic!("the login should fail") };
    let db = e.as_db_error().unwrap_or_else(|| panic!("not a server error: {e}"));
    (db.code().code().to_string(), db.message().to_string())
}

fn roles_db() -> Database {
    let db = Database::memory().unwrap();
    let mut s = db.session().unwrap();
    s.execute(
        "ALTER ROLE qubedb PASSWORD 'rootpw';
         CREATE ROLE alice LOGIN PASSWORD 'wonder land';
         CREATE ROLE nolog NOLOGIN PASSWORD 'x';
         CREATE ROLE nopw LOGIN;
         CREATE ROLE expired LOGIN PASSWORD 'x' VALID UNTIL '2001-01-01'",
    )
    .unwrap();
    drop(s);
    db
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_logins_and_their_failures() {
    let srv = Srv::start(roles_db(), Config { auth: Auth::Scram, ..Config::default() }).await;
    let c = srv.login("alice", Some("wonder land")).await.expect("alice logs in");
    let r = c.query_one("SELECT current_user, session_user", &[]).await.unwrap();
    assert_eq!((r.get::<_, String>(0), r.get::<_, String>(1)), ("alice".into(), "alice".into()));
    let failed =
        |u: &str| ("28P01".to_string(), format!("password authentication failed for user \"{u}\""));
    assert_eq!(failure(srv.login("alice", Some("wrong")).await), failed("alice"));
    // A role that does not exist, has no password or an expired one: the
    // same answer as a wrong password.
    assert_eq!(failure(srv.login("ghost", Some("x")).await), failed("ghost"));
    assert_eq!(failure(srv.login("nopw", Some("x")).await), failed("nopw"));
    assert_eq!(failure(srv.login("expired", Some("x")).await), failed("expired"));
    // The right password of a NOLOGIN role.
    assert_eq!(
        failure(srv.login("nolog", Some("x")).await),
        ("28000".to_string(), "role \"nolog\" is not permitted to log in".to_string())
    );
    // A password changed over the wire works at the next login.
    let root = srv.login("qubedb", Some("rootpw")).await.expect("superuser logs in");
    root.batch_execute("ALTER ROLE alice PASSWORD 'new'").await.unwrap();
    assert_eq!(failure(srv.login("alice", Some("wonder land")).await), failed("alice"));
    srv.login("alice", Some("new")).await.expect("new password");
    // The earlier session goes on.
    c.query_one("SELECT 1", &[]).await.unwrap();
    drop((c, root));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_still_checks_the_role() {
    let srv = Srv::start(roles_db(), Config::default()).await;
    let c = srv.login("alice", None).await.expect("trust");
    let r = c.query_one("SELECT current_user", &[]).await.unwrap();
    assert_eq!(r.get::<_, String>(0), "alice");
    assert_eq!(
        failure(srv.login("ghost", None).await),
        ("28000".to_string(), "role \"ghost\" does not exist".to_string())
    );
    assert_eq!(
        failure(srv.login("nolog", None).await),
        ("28000".to_string(), "role \"nolog\" is not permitted to log in".to_string())
    );
    // alice is no superuser: role attributes hold over the wire.
    let e = c.batch_execute("CREATE ROLE x").await.unwrap_err();
    assert_eq!(e.as_db_error().unwrap().code().code(), "42501");
    drop(c);
    srv.stop().await;
}

/// A protocol 3.0 StartupMessage for `user` in database `qubedb`.
fn startup_packet(user: &str) -> Vec<u8> {
    crate::bad_input::startup_packet(3, 0, &[("user", user), ("database", "qubedb")])
}

fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// Everything the server sends until it closes the connection.
async fn read_to_end(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Reads one backend message.
async fn read_msg(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let kind = s.read_u8().await.expect("kind");
    let len = s.read_i32().await.expect("len");
    let mut body = vec![0; (len - 4) as usize];
    s.read_exact(&mut body).await.expect("body");
    (kind, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_sasl_messages_close_the_connection() {
    let srv = Srv::start(roles_db(), Config { auth: Auth::Scram, ..Config::default() }).await;
    let mut sasl_initial = b"SCRAM-SHA-256\0".to_vec();
    let client_first = b"n,,n=,r=abcdefgh";
    sasl_initial.extend_from_slice(&(client_first.len() as i32).to_be_bytes());
    sasl_initial.extend_from_slice(client_first);
    let mut wrong_len = b"SCRAM-SHA-256\0".to_vec();
    wrong_len.extend_from_slice(&100i32.to_be_bytes());
    wrong_len.extend_from_slice(client_first);
    let cases: Vec<(&str, Vec<Vec<u8>>, &str)> = vec![
        (
            "other mechanism",
            vec![frame(b'p', b"PLAIN\0\0\0\0\x01x")],
            "invalid SASL authentication mechanism",
        ),
        ("not a password message", vec![frame(b'Q', b"SELECT 1\0")], "expected SASL response"),
        ("length mismatch", vec![frame(b'p', &wrong_len)], "malformed SASL message"),
        ("no mechanism", vec![frame(b'p', b"SCRAM")], "malformed SASL message"),
        (
            "garbage client-first",
            vec![frame(b'p', b"SCRAM-SHA-256\0\0\0\0\x03x,y")],
            "malformed SCRAM message",
        ),
        (
            "garbage client-final",
            vec![frame(b'p', &sasl_initial), frame(b'p', b"c=biws,r=zzz,p=AAAA")],
            "nonce mismatch",
        ),
    ];
    for (what, msgs, expect) in cases {
        let mut s = TcpStream::connect(srv.addr).await.unwrap();
        s.write_all(&startup_packet("alice")).await.unwrap();
        let (kind, body) = read_msg(&mut s).await;
        assert_eq!(kind, b'R', "{what}");
        assert_eq!(&body[..4], &10i32.to_be_bytes(), "{what}: AuthenticationSASL");
        assert!(contains(&body, "SCRAM-SHA-256"), "{what}");
        for m in &msgs {
            s.write_all(m).await.unwrap();
        }
        let rest = read_to_end(&mut s).await;
        assert!(
            contains(&rest, "08P01") && contains(&rest, expect),
            "{what}: {}",
            String::from_utf8_lossy(&rest)
        );
    }
    // A client that hangs up at the password prompt (as psql does).
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(&startup_packet("alice")).await.unwrap();
    read_msg(&mut s).await;
    drop(s);
    srv.login("alice", Some("wonder land")).await.expect("still serving");
    srv.stop().await;
}

const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
const GSSENC_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_request_bad_inputs() {
    let srv = Srv::start(roles_db(), Config::default()).await;
    // Without TLS: 'N', and a second SSLRequest is an unknown protocol.
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(&SSL_REQUEST).await.unwrap();
    assert_eq!(s.read_u8().await.unwrap(), b'N');
    s.write_all(&SSL_REQUEST).await.unwrap();
    let rest = read_to_end(&mut s).await;
    assert!(
        contains(&rest, "0A000") && contains(&rest, "unsupported frontend protocol 1234.5679"),
        "{}",
        String::from_utf8_lossy(&rest)
    );
    // Data sent right behind SSLRequest is refused.
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    let mut m = SSL_REQUEST.to_vec();
    m.extend_from_slice(&startup_packet("qubedb"));
    s.write_all(&m).await.unwrap();
    let rest = read_to_end(&mut s).await;
    assert!(
        contains(&rest, "08P01") && contains(&rest, "unencrypted data after SSL request"),
        "{}",
        String::from_utf8_lossy(&rest)
    );
    // GSSENCRequest: 'N', then a normal startup works.
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(&GSSENC_REQUEST).await.unwrap();
    assert_eq!(s.read_u8().await.unwrap(), b'N');
    s.write_all(&startup_packet("qubedb")).await.unwrap();
    assert_eq!(read_msg(&mut s).await, (b'R', vec![0, 0, 0, 0]));
    drop(s);
    srv.login("qubedb", None).await.expect("still serving");
    srv.stop().await;
}

/// A self-signed certificate for 127.0.0.1 and its key, as PEM files.
fn self_signed(dir: &std::path::Path) -> (PathBuf, PathBuf) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

/// psql with a connection string and PGPASSWORD: (success, stdout, stderr).
fn psql(
    bin: &PathBuf,
    conninfo: &str,
    password: Option<&str>,
    command: &str,
) -> (bool, String, String) {
    let mut cmd = Command::new(bin);
    cmd.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", command, conninfo]);
    cmd.env_remove("PGPASSWORD").env("PGCONNECT_TIMEOUT", "20");
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    let out = cmd.output().expect("psql runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn psql_or_skip(test: &str) -> Option<PathBuf> {
    let found = crate::psql::find_psql();
    if found.is_none() {
        assert!(std::env::var_os("CI").is_none(), "psql is missing in CI");
        eprintln!("skipped: psql missing ({test})");
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_over_tls_with_scram() {
    let Some(bin) = psql_or_skip("psql_over_tls_with_scram") else { return };
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let tls = qube_pgwire::tls::load_config(&cert, &key).expect("certificate loads");
    let srv =
        Srv::start(roles_db(), Config { auth: Auth::Scram, tls: Some(tls), ..Config::default() })
            .await;
    let port = srv.addr.port();
    let conn = |user: &str, mode: &str| {
        format!("host=127.0.0.1 port={port} user={user} dbname=qubedb sslmode={mode}")
    };
    let bin2 = bin.clone();
    let c = conn("alice", "require");
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        psql(&bin2, &c, Some("wonder land"), "SELECT current_user")
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "alice");
    // \conninfo names the TLS protocol.
    let bin2 = bin.clone();
    let c = conn("alice", "require");
    let (ok, out, err) =
        tokio::task::spawn_blocking(move || psql(&bin2, &c, Some("wonder land"), "\\conninfo"))
            .await
            .unwrap();
    assert!(ok && out.contains("SSL connection (protocol: TLSv1."), "{out}{err}");
    // \du lists the catalog's roles with their attributes.
    let bin2 = bin.clone();
    let c = conn("qubedb", "require");
    let (ok, out, err) =
        tokio::task::spawn_blocking(move || psql(&bin2, &c, Some("rootpw"), "\\du")).await.unwrap();
    assert!(ok, "{err}");
    for line in ["alice|", "nolog|Cannot login", "qubedb|Superuser, Create role, Create DB"] {
        assert!(out.lines().any(|l| l.starts_with(line)), "{line} in\n{out}");
    }
    // Wrong password over TLS, and plain text still allowed from loopback.
    let bin2 = bin.clone();
    let c = conn("alice", "require");
    let (ok, _, err) =
        tokio::task::spawn_blocking(move || psql(&bin2, &c, Some("nope"), "SELECT 1"))
            .await
            .unwrap();
    assert!(!ok && err.contains("password authentication failed for user \"alice\""), "{err}");
    let bin2 = bin.clone();
    let c = conn("alice", "disable");
    let (ok, out, err) =
        tokio::task::spawn_blocking(move || psql(&bin2, &c, Some("wonder land"), "SELECT 7"))
            .await
            .unwrap();
    assert!(ok && out.trim() == "7", "{err}");
    srv.stop().await;

    // Without a certificate sslmode=require fails: the server said 'N'.
    let srv = Srv::start(roles_db(), Config::default()).await;
    let c = format!(
        "host=127.0.0.1 port={} user=qubedb dbname=qubedb sslmode=require",
        srv.addr.port()
    );
    let (ok, _, err) =
        tokio::task::spawn_blocking(move || psql(&bin, &c, None, "SELECT 1")).await.unwrap();
    assert!(!ok && err.contains("server does not support SSL"), "{err}");
    srv.stop().await;
}

#[test]
fn tls_files_that_do_not_load_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let missing = dir.path().join("missing.pem");
    let e = qube_pgwire::tls::load_config(&missing, &key).unwrap_err();
    assert!(e.contains("missing.pem"), "{e}");
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a pem file").unwrap();
    assert!(qube_pgwire::tls::load_config(&junk, &key).is_err());
    assert!(qube_pgwire::tls::load_config(&cert, &junk).is_err());
    // A key that is not the certificate's.
    let other = rcgen::generate_simple_self_signed(vec!["x".into()]).unwrap();
    let k2 = dir.path().join("k2.pem");
    std::fs::write(&k2, other.signing_key.serialize_pem()).unwrap();
    let e = qube_pgwire::tls::load_config(&cert, &k2).unwrap_err();
    assert!(e.contains("do not fit"), "{e}");
}
