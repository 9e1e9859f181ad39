//! The shell's connection to a running server over the PostgreSQL wire
//! protocol (v3), synchronous, on a `std::net::TcpStream`.
//!
//! Messages are framed and parsed by `postgres-protocol` (the protocol
//! layer of `tokio-postgres`; its SCRAM-SHA-256 client does the password
//! exchange), and the connection string is parsed by `tokio-postgres`'s
//! `Config` (URLs and libpq `key=value` conninfo alike). `tokio-postgres`'s
//! own client is not used because its simple query API drops what a shell
//! prints: the command tag (it keeps only the row count) and the column
//! types (for right-aligning numbers).
//!
//! ```text
//! connect:  StartupMessage(user, database, application_name)
//!           ◄─ Authentication{Ok | CleartextPassword | MD5Password | SASL…}
//!              (SASL: SASLInitialResponse ─► SASLContinue ◄─ SASLResponse ─►
//!               SASLFinal ◄─, SCRAM-SHA-256 without channel binding)
//!           ◄─ ParameterStatus*, BackendKeyData, ReadyForQuery
//! run:      Query(one statement)
//!           ◄─ per statement: RowDescription, DataRow*, CommandComplete
//!                             | EmptyQueryResponse | ErrorResponse
//!              NoticeResponse anywhere; CopyOut: CopyData*, CopyDone;
//!              CopyIn: answered with CopyFail (the shell sends no data)
//!           ◄─ ReadyForQuery(status I | T | E)
//! end:      Terminate
//! ```
//!
//! Not supported: TLS (a URL with `sslmode=require` is refused with a
//! clear message; `prefer`, the default, connects in plain text), Unix
//! sockets, GSS, and COPY FROM STDIN.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use postgres_protocol::message::{backend, backend::Message, frontend};
use tokio_postgres::config::{Host, SslMode};

use crate::shell::{Backend, Col, Failure, Report, TxnStatus, format_table};

/// QubeDB's default PostgreSQL port (`qubedb serve --pg-addr`).
pub const DEFAULT_PORT: u16 = 5433;

/// Where to connect and as whom, from `--url` (or `QUBEDB_URL`).
pub struct Target {
    /// Host and port pairs, tried in order.
    addrs: Vec<(String, u16)>,
    pub user: String,
    pub database: String,
    password: Option<Vec<u8>>,
    application_name: String,
    timeout: Duration,
}

impl Target {
    /// Parses a `postgres://user[:password]@host[:port]/db` URL or a
    /// `host=… port=… user=…` conninfo string. Missing parts: host
    /// 127.0.0.1, port 5433, user `qubedb`, database `default_db`, the
    /// password from `PGPASSWORD`.
    pub fn parse(url: &str, default_db: &str) -> Result<Target, String> {
        let config: tokio_postgres::Config =
            url.parse().map_err(|e| format!("invalid connection string {url:?}: {e}"))?;
        if config.get_ssl_mode() == SslMode::Require {
            return Err("sslmode=require: qubedb shell does not support TLS yet; use \
                        sslmode=disable or prefer on a server without require_tls"
                .into());
        }
        let ports = config.get_ports();
        let mut addrs = Vec::new();
        let hosts = config.get_hosts();
        for (i, h) in hosts.iter().enumerate() {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(DEFAULT_PORT);
            match h {
                Host::Tcp(name) => addrs.push((name.clone(), port)),
                #[cfg(unix)]
                Host::Unix(path) => {
                    return Err(format!(
                        "Unix socket {} is not supported: give a host name or address",
                        path.display()
                    ));
                }
            }
        }
        if addrs.is_empty() {
            addrs.push(("127.0.0.1".into(), ports.first().copied().unwrap_or(DEFAULT_PORT)));
        }
        let password = config
            .get_password()
            .map(<[u8]>::to_vec)
            .or_else(|| std::env::var_os("PGPASSWORD").map(|p| p.into_encoded_bytes()));
        Ok(Target {
            addrs,
            user: config.get_user().unwrap_or("qubedb").to_string(),
            database: config.get_dbname().unwrap_or(default_db).to_string(),
            password,
            application_name: config.get_application_name().unwrap_or("qubedb shell").to_string(),
            timeout: config.get_connect_timeout().copied().unwrap_or(Duration::from_secs(10)),
        })
    }

    /// `user@host:port/database`, for the banner and messages.
    pub fn describe(&self) -> String {
        let (h, p) = &self.addrs[0];
        format!("{}@{h}:{p}/{}", self.user, self.database)
    }
}

/// An open connection (see the module doc).
pub struct Remote {
    stream: TcpStream,
    /// Bytes read and not yet parsed into messages.
    input: BytesMut,
    /// Messages being built for one write.
    output: BytesMut,
    status: TxnStatus,
}

/// A connection error: I/O or a protocol violation, as text.
fn lost(e: impl std::fmt::Display) -> Failure {
    Failure::Lost(e.to_string())
}

impl Remote {
    /// Connects and authenticates; the error says why it could not.
    pub fn connect(t: &Target) -> Result<Remote, String> {
        let mut last = String::from("no address to connect to");
        let mut stream = None;
        'hosts: for (host, port) in &t.addrs {
            let addrs = match (host.as_str(), *port).to_socket_addrs() {
                Ok(a) => a,
                Err(e) => {
                    last = format!("cannot resolve {host}: {e}");
                    continue;
                }
            };
            for a in addrs {
                match TcpStream::connect_timeout(&a, t.timeout) {
                    Ok(s) => {
                        stream = Some(s);
                        break 'hosts;
                    }
                    Err(e) => last = format!("cannot connect to {a}: {e}"),
                }
            }
        }
        let stream = stream.ok_or(last)?;
        let _ = stream.set_nodelay(true);
        let mut r = Remote {
            stream,
            input: BytesMut::new(),
            output: BytesMut::new(),
            status: TxnStatus::Idle,
        };
        r.startup(t).map_err(|f| match f {
            Failure::Sql(e) => format!("{}: {}", e.code, e.message),
            Failure::Lost(why) => format!("the server closed the connection: {why}"),
        })?;
        Ok(r)
    }

    fn startup(&mut self, t: &Target) -> Result<(), Failure> {
        let params = [
            ("user", t.user.as_str()),
            ("database", t.database.as_str()),
            ("application_name", t.application_name.as_str()),
            ("client_encoding", "UTF8"),
        ];
        frontend::startup_message(params, &mut self.output).map_err(lost)?;
        self.flush()?;
        let need_password = || {
            Failure::Lost(format!(
                "the server asks for the password of role \"{}\": give it in the URL or in \
                 PGPASSWORD",
                t.user
            ))
        };
        let mut scram: Option<ScramSha256> = None;
        loop {
            match self.read()? {
                Message::AuthenticationOk => {}
                Message::AuthenticationCleartextPassword => {
                    let pw = t.password.as_deref().ok_or_else(need_password)?;
                    frontend::password_message(pw, &mut self.output).map_err(lost)?;
                    self.flush()?;
                }
                Message::AuthenticationMd5Password(body) => {
                    let pw = t.password.as_deref().ok_or_else(need_password)?;
                    let hash = postgres_protocol::authentication::md5_hash(
                        t.user.as_bytes(),
                        pw,
                        body.salt(),
                    );
                    frontend::password_message(hash.as_bytes(), &mut self.output).map_err(lost)?;
                    self.flush()?;
                }
                Message::AuthenticationSasl(body) => {
                    let mut offered = false;
                    let mut mechs = body.mechanisms();
                    while let Some(m) = mechs.next().map_err(lost)? {
                        offered |= m == SCRAM_SHA_256;
                    }
                    if !offered {
                        return Err(lost("the server offers no SASL mechanism we support"));
                    }
                    let pw = t.password.as_deref().ok_or_else(need_password)?;
                    let s = ScramSha256::new(pw, ChannelBinding::unsupported());
                    frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), &mut self.output)
                        .map_err(lost)?;
                    self.flush()?;
                    scram = Some(s);
                }
                Message::AuthenticationSaslContinue(body) => {
                    let s = scram.as_mut().ok_or_else(|| lost("unexpected SASLContinue"))?;
                    s.update(body.data()).map_err(lost)?;
                    frontend::sasl_response(s.message(), &mut self.output).map_err(lost)?;
                    self.flush()?;
                }
                Message::AuthenticationSaslFinal(body) => {
                    let s = scram.as_mut().ok_or_else(|| lost("unexpected SASLFinal"))?;
                    s.finish(body.data()).map_err(|e| {
                        lost(format!("the server's SCRAM signature does not verify: {e}"))
                    })?;
                }
                Message::ParameterStatus(_) | Message::BackendKeyData(_) => {}
                Message::NoticeResponse(_) => {}
                Message::ErrorResponse(body) => {
                    return Err(Failure::Sql(Box::new(report(body.fields())?)));
                }
                Message::ReadyForQuery(body) => {
                    self.status = status_of(body.status());
                    return Ok(());
                }
                _ => return Err(lost("unexpected message during startup")),
            }
        }
    }

    /// Sends what `output` holds.
    fn flush(&mut self) -> Result<(), Failure> {
        self.stream.write_all(&self.output).map_err(lost)?;
        self.output.clear();
        Ok(())
    }

    /// The next message from the server.
    fn read(&mut self) -> Result<Message, Failure> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(m) = Message::parse(&mut self.input).map_err(lost)? {
                return Ok(m);
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(lost("end of stream")),
                Ok(n) => self.input.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(lost(e)),
            }
        }
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        frontend::terminate(&mut self.output);
        let _ = self.stream.write_all(&self.output);
    }
}

fn status_of(b: u8) -> TxnStatus {
    match b {
        b'T' => TxnStatus::InBlock,
        b'E' => TxnStatus::Failed,
        _ => TxnStatus::Idle,
    }
}

/// psql right-aligns these types: int2, int4, int8, float4, float8,
/// numeric, oid, xid, cid, money.
fn numeric_oid(oid: u32) -> bool {
    matches!(oid, 20 | 21 | 23 | 26 | 28 | 29 | 700 | 701 | 790 | 1700)
}

/// An ErrorResponse's or NoticeResponse's fields.
fn report(mut fields: backend::ErrorFields<'_>) -> Result<Report, Failure> {
    let mut r = Report::default();
    while let Some(f) = fields.next().map_err(lost)? {
        let v = || String::from_utf8_lossy(f.value_bytes()).into_owned();
        match f.type_() {
            // V (not localised) wins over S.
            b'V' => r.severity = v(),
            b'S' if r.severity.is_empty() => r.severity = v(),
            b'C' => r.code = v(),
            b'M' => r.message = v(),
            b'D' => r.detail = Some(v()),
            b'H' => r.hint = Some(v()),
            b'P' => r.position = v().parse().ok(),
            b'W' => r.context = Some(v()),
            _ => {}
        }
    }
    Ok(r)
}

impl Backend for Remote {
    /// Sends `sql` as one simple Query and reads every result up to
    /// ReadyForQuery (a text with several statements gives several).
    fn run(
        &mut self,
        sql: &str,
        out: &mut String,
        notices: &mut Vec<Report>,
    ) -> Result<(), Failure> {
        frontend::query(sql, &mut self.output).map_err(lost)?;
        self.flush()?;
        let mut cols: Vec<Col> = Vec::new();
        let mut rows: Vec<Vec<String>> = Vec::new();
        let mut error = None;
        loop {
            match self.read()? {
                Message::RowDescription(body) => {
                    cols.clear();
                    rows.clear();
                    let mut fields = body.fields();
                    while let Some(f) = fields.next().map_err(lost)? {
                        cols.push(Col {
                            name: f.name().to_string(),
                            right: numeric_oid(f.type_oid()),
                        });
                    }
                }
                Message::DataRow(body) => {
                    let buf = body.buffer();
                    let mut row = Vec::with_capacity(cols.len());
                    let mut ranges = body.ranges();
                    while let Some(range) = ranges.next().map_err(lost)? {
                        row.push(match range {
                            Some(r) => String::from_utf8_lossy(&buf[r]).into_owned(),
                            None => String::new(),
                        });
                    }
                    rows.push(row);
                }
                Message::CommandComplete(body) => {
                    if cols.is_empty() {
                        out.push_str(body.tag().map_err(lost)?);
                        out.push('\n');
                    } else {
                        format_table(&cols, &rows, out);
                        out.push('\n');
                        cols.clear();
                        rows.clear();
                    }
                }
                Message::EmptyQueryResponse => {}
                Message::ErrorResponse(body) => error = Some(report(body.fields())?),
                Message::NoticeResponse(body) => notices.push(report(body.fields())?),
                Message::CopyOutResponse(_) | Message::CopyDone => {}
                Message::CopyData(body) => {
                    out.push_str(&String::from_utf8_lossy(body.data()));
                }
                Message::CopyInResponse(_) => {
                    frontend::copy_fail(
                        "qubedb shell does not send COPY FROM STDIN data",
                        &mut self.output,
                    )
                    .map_err(lost)?;
                    self.flush()?;
                }
                Message::ParameterStatus(_) | Message::NotificationResponse(_) => {}
                Message::ReadyForQuery(body) => {
                    self.status = status_of(body.status());
                    return match error {
                        Some(e) => Err(Failure::Sql(Box::new(e))),
                        None => Ok(()),
                    };
                }
                _ => return Err(lost("unexpected message from the server")),
            }
        }
    }

    fn status(&self) -> TxnStatus {
        self.status
    }
}
