//! One client connection: startup, then the simple and extended query
//! protocols over the connection's `Session`, and COPY inside either (see
//! `emit` for how COPY's data crosses between the socket and the
//! statement's thread).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use pgwire::messages::data::{NoData, ParameterDescription};
use pgwire::messages::extendedquery::{
    Close, CloseComplete, Parse, ParseComplete, PortalSuspended,
};
use pgwire::messages::response::EmptyQueryResponse;
use pgwire::messages::startup::{
    Authentication, BackendKeyData, NegotiateProtocolVersion, ParameterStatus, SecretKey, Startup,
};
use pgwire::messages::{
    DecodeContext, Message, PgWireBackendMessage as B, PgWireFrontendMessage as F, ProtocolVersion,
};
use qube_common::types::DataType;
use qube_common::wait;
use qube_common::{Error, Result};
use qube_sql::{Column, CopyKind, CopyOut, Prepared, QueryResult, Session, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use crate::emit::{self, CopyChunk, CopyEnd, Emitter, Outgoing, put};
use crate::hot::{self, BindMsg, Hot};
use crate::portal::{Portal, Portals};
use crate::tls::Stream;
use crate::{Auth, SERVER_VERSION, Server, types};

const SSL_REQUEST: i32 = 80877103;
const GSSENC_REQUEST: i32 = 80877104;
const CANCEL_REQUEST: i32 = 80877102;
/// How long a client may take from connecting to a completed startup.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// A statement that computed for less than this runs inline next time
/// (`Conn::run`).
const SHORT: Duration = Duration::from_millis(1);
/// Statement texts longer than this always run on a blocking thread.
const INLINE_TEXT: usize = 16 * 1024;
/// Shapes of statement texts remembered per connection (`Conn::shapes`).
const SHAPES: usize = 512;

/// The wait hook for statements run inline on a runtime thread: tokio
/// moves the thread's other tasks to another thread while it waits.
fn block_in_place(f: &mut dyn FnMut()) {
    tokio::task::block_in_place(f)
}

/// A parsed statement (Parse).
struct Stmt {
    prepared: Prepared,
    /// Each parameter's type: declared by the client, else inferred.
    params: Vec<Option<DataType>>,
    /// What ParameterDescription reports.
    param_oids: Vec<u32>,
    columns: Vec<Column>,
    /// Whether its last Execute was short (`Conn::run`).
    short: AtomicBool,
    /// The last RowDescription sent for it, encoded, with its formats
    /// (libpq describes the portal before every execution).
    described: std::sync::Mutex<Option<(Vec<i16>, bytes::Bytes)>>,
}

impl Stmt {
    /// RowDescription of its columns in `formats`, encoded.
    fn row_description(&self, formats: &[i16]) -> bytes::Bytes {
        let mut cached = self.described.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((f, bytes)) = cached.as_ref()
            && f == formats
        {
            return bytes.clone();
        }
        let mut out = BytesMut::new();
        emit::row_description(&mut out, &self.columns, formats);
        let bytes = out.freeze();
        *cached = Some((formats.to_vec(), bytes.clone()));
        bytes
    }
}

/// The hasher of the maps of statement and portal names: FNV-1a, much
/// cheaper than the default SipHash for names of a few bytes that are
/// looked up several times per execution. The names come from the
/// connection's own client, so a flood of colliding names slows only
/// that connection.
#[derive(Default, Clone, Copy)]
pub(crate) struct Names;

impl std::hash::BuildHasher for Names {
    type Hasher = Fnv;
    fn build_hasher(&self) -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

pub(crate) struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

struct Conn<'a> {
    server: &'a Server,
    stream: Stream,
    inbuf: BytesMut,
    out: BytesMut,
    /// Out of the struct while a statement runs on a blocking thread.
    session: Option<Box<Session>>,
    stmts: HashMap<String, Arc<Stmt>, Names>,
    portals: Portals<Stmt>,
    /// After an error in the extended protocol: discard until Sync.
    skip_to_sync: bool,
    /// Where we are after a COPY FROM STDIN that failed before copy-in
    /// started, in the extended protocol (see `StrayCopy`).
    stray_copy: StrayCopy,
    zone_reported: String,
    /// Woken when another session terminates this one
    /// (`pg_terminate_backend`, `Session::on_terminate`).
    terminate: Arc<tokio::sync::Notify>,
    /// Statements may run inline: the runtime has several worker threads
    /// (`tokio::task::block_in_place` needs that).
    inline_ok: bool,
    /// Whether the last simple query or Parse of each text shape (`shape`)
    /// was short.
    shapes: HashMap<u64, bool>,
}

/// tokio-postgres and a COPY FROM STDIN that fails before copy-in starts
/// (`COPY nosuchtable FROM STDIN` through `Client::copy_in`): it sends
/// Bind, Execute, Sync; the server answers BindComplete, ErrorResponse,
/// ReadyForQuery, as PostgreSQL does. Its copy sink, dropped with the
/// error, then sends CopyFail and a second Sync, whose ReadyForQuery it
/// does not expect: it closes the connection as "unexpected message"
/// (also against PostgreSQL 15 itself). So after such a failure, copy
/// messages arriving outside copy mode and then a Sync get no
/// ReadyForQuery: the client's copy ends as if the server had been in
/// copy-in mode (where Sync is ignored), and the connection stays usable.
/// Any other message in between ends this, and Syncs answer as usual.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StrayCopy {
    No,
    /// The COPY failed; its Sync has not come yet.
    Failed,
    /// Its Sync came (and was answered); copy messages may follow.
    Synced,
    /// A copy message came: the next Sync is the copy's and is not answered.
    Swallow,
}

/// The waits that end an idle connection (`Conn::next_frame`), kept
/// across messages: a pending future stays registered with its channel.
/// Either one finishing ends the connection, so neither is polled after.
struct Ends<'a> {
    /// The server shuts down.
    stopped: Pin<Box<dyn Future<Output = ()> + Send + 'a>>,
    /// Another session terminated this one (`Conn::terminate`).
    terminated: Pin<Box<tokio::sync::futures::Notified<'a>>>,
}

/// What ends a connection without a protocol reply beyond a final error.
enum End {
    /// The client closed the socket (or sent Terminate).
    Closed,
    /// Tell the client, then close.
    Fatal(Error),
    /// A message refused while the client may still be sending it (too
    /// large, or a length that cannot be): tell the client, then read and
    /// discard what it still sends for up to [`LINGER`] before closing.
    /// Closing a socket with unread bytes makes the kernel send a reset,
    /// and a reset can reach the client before it has read the error.
    Refused(Error),
    Io(io::Error),
}

/// How long a refused client may go on sending before the socket closes
/// (less if the server is stopping).
const LINGER: Duration = Duration::from_secs(2);

impl From<io::Error> for End {
    fn from(e: io::Error) -> End {
        End::Io(e)
    }
}

type Step<T = ()> = std::result::Result<T, End>;

fn fatal(code: &'static str, msg: impl Into<String>) -> End {
    End::Fatal(Error::user(code, msg))
}

/// Reads one length-prefixed frame (with its type byte unless `startup`)
/// into its own buffer.
async fn read_frame(
    stream: &mut Stream,
    inbuf: &mut BytesMut,
    startup: bool,
    max: usize,
) -> Step<BytesMut> {
    let head = if startup { 4 } else { 5 };
    loop {
        if inbuf.len() >= head {
            let len = i32::from_be_bytes([
                inbuf[head - 4],
                inbuf[head - 3],
                inbuf[head - 2],
                inbuf[head - 1],
            ]);
            let min = if startup { 8 } else { 4 };
            if len < min {
                return Err(End::Refused(Error::user("08P01", "invalid message length")));
            }
            let len = len as usize;
            if len > max {
                let msg = format!("message of {len} bytes is too large");
                return Err(End::Refused(Error::user("54000", msg)));
            }
            let total = len + head - 4;
            if inbuf.len() >= total {
                return Ok(inbuf.split_to(total));
            }
            inbuf.reserve((total - inbuf.len()).min(1 << 20));
        } else {
            inbuf.reserve(8192);
        }
        if stream.read_buf(inbuf).await? == 0 {
            return Err(End::Closed);
        }
    }
}

/// A Parse whose statement name or text is not UTF-8: PostgreSQL's error
/// for it (22021), given before anything runs. pgwire reads such text
/// lossily, with U+FFFD for the bad bytes, which would change a string
/// literal silently (a Query's text is checked as `hot` reads it). A body
/// too short to hold the strings is left to pgwire's decoding to refuse.
fn parse_not_utf8(body: &[u8]) -> Option<Error> {
    let mut rest = body;
    for _ in 0..2 {
        let end = rest.iter().position(|b| *b == 0)?;
        if let Err(e) = types::utf8_str(&rest[..end]) {
            return Some(e);
        }
        rest = &rest[end + 1..];
    }
    None
}

/// Decodes one frame with pgwire, which must consume it exactly. pgwire's
/// decoders index and `get_*` without bounds checks, so a malformed body
/// panics: that panic is caught and becomes a protocol violation.
/// Whether a frame's body has the layout its type needs, checked before
/// pgwire decodes it (its decoders panic on short bodies; see `decode`).
fn well_formed(kind: u8, body: &[u8]) -> bool {
    struct R<'a>(&'a [u8]);
    impl<'a> R<'a> {
        fn take(&mut self, n: usize) -> Option<&'a [u8]> {
            let b: &'a [u8] = self.0;
            (b.len() >= n).then(|| {
                let (h, t) = b.split_at(n);
                self.0 = t;
                h
            })
        }
        fn i16(&mut self) -> Option<i16> {
            self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
        }
        fn i32(&mut self) -> Option<i32> {
            self.take(4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        }
        fn cstr(&mut self) -> Option<()> {
            let n = self.0.iter().position(|b| *b == 0)?;
            self.take(n + 1).map(|_| ())
        }
        /// Counts are unsigned 16-bit on the wire (up to 65,535
        /// parameters), as PostgreSQL and pgwire read them.
        fn u16(&mut self) -> Option<usize> {
            self.i16().map(|n| usize::from(n as u16))
        }
        fn counted(&mut self, each: usize) -> Option<()> {
            let n = self.u16()?;
            self.take(n * each).map(|_| ())
        }
    }
    let mut r = R(body);
    let ok = match kind {
        b'Q' => r.cstr(),
        b'P' => r.cstr().and_then(|_| r.cstr()).and_then(|_| r.counted(4)),
        b'B' => (|| {
            r.cstr()?;
            r.cstr()?;
            r.counted(2)?;
            let n = r.u16()?;
            for _ in 0..n {
                let len = r.i32()?;
                if len >= 0 {
                    r.take(len as usize)?;
                } else if len != -1 {
                    return None;
                }
            }
            r.counted(2)
        })(),
        b'D' | b'C' => r.take(1).filter(|t| matches!(t[0], b'S' | b'P')).and_then(|_| r.cstr()),
        b'E' => r.cstr().and_then(|_| r.i32()).map(|_| ()),
        b'S' | b'H' | b'X' | b'c' => Some(()),
        b'd' => {
            r.0 = &[];
            Some(())
        }
        b'f' => r.cstr(),
        _ => return true,
    };
    ok.is_some() && r.0.is_empty()
}

/// A frame whose body does not have its type's layout.
fn malformed(kind: u8) -> End {
    fatal("08P01", format!("invalid message format (message type {})", kind as char))
}

/// A frontend message: one of the per-execution messages read in place
/// (`hot`), or any message as pgwire decodes it.
enum Msg<'a> {
    Hot(Hot<'a>),
    Other(F),
}

fn decode_message(mut frame: BytesMut) -> Step<F> {
    if frame.len() >= 5 && !well_formed(frame[0], &frame[5..]) {
        return Err(malformed(frame[0]));
    }
    let mut ctx = DecodeContext::new(ProtocolVersion::PROTOCOL3_0);
    ctx.awaiting_frontend_ssl = false;
    ctx.awaiting_frontend_startup = false;
    let kind = frame.first().copied().unwrap_or(0);
    let r = std::panic::catch_unwind(AssertUnwindSafe(|| F::decode(&mut frame, &ctx)));
    match r {
        Ok(Ok(Some(m))) if frame.is_empty() => Ok(m),
        Ok(Err(pgwire::error::PgWireError::InvalidMessageType(t))) => {
            Err(fatal("08P01", format!("invalid frontend message type {t}")))
        }
        _ => Err(fatal("08P01", format!("invalid message format (message type {})", kind as char))),
    }
}

pub async fn run(
    server: &Server,
    stream: TcpStream,
    peer: SocketAddr,
    pid: i32,
    mut shutdown: watch::Receiver<bool>,
    full: bool,
) -> io::Result<()> {
    let mut c = Conn {
        server,
        stream: Stream::Plain(stream),
        inbuf: BytesMut::with_capacity(8192),
        out: BytesMut::with_capacity(8192),
        session: None,
        stmts: HashMap::default(),
        portals: Portals::default(),
        skip_to_sync: false,
        stray_copy: StrayCopy::No,
        zone_reported: String::new(),
        terminate: Arc::default(),
        inline_ok: tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::MultiThread,
        shapes: HashMap::new(),
    };
    let started = match tokio::time::timeout(STARTUP_TIMEOUT, c.startup(peer, pid, full)).await {
        Ok(r) => r,
        Err(_) => Err(fatal("08006", "timeout during startup")),
    };
    let res = match started {
        Ok(true) => c.serve(&mut shutdown).await,
        Ok(false) => Ok(()),
        Err(e) => Err(e),
    };
    let res = match res {
        Ok(()) | Err(End::Closed) => Ok(()),
        Err(End::Io(e)) => Err(e),
        Err(End::Fatal(e)) => {
            put(&mut c.out, B::ErrorResponse(emit::error_response(&e, "FATAL")));
            let _ = c.flush().await;
            Ok(())
        }
        Err(End::Refused(e)) => {
            put(&mut c.out, B::ErrorResponse(emit::error_response(&e, "FATAL")));
            if c.flush().await.is_ok() && c.stream.shutdown().await.is_ok() {
                let mut sink = vec![0u8; 64 << 10];
                let drain =
                    async { while matches!(c.stream.read(&mut sink).await, Ok(n) if n > 0) {} };
                tokio::select! {
                    _ = tokio::time::timeout(LINGER, drain) => {}
                    _ = crate::stopped(&mut shutdown) => {}
                }
            }
            Ok(())
        }
    };
    // The session goes on a blocking thread: dropping it rolls back an
    // open transaction and drops its temporary tables.
    if let Some(s) = c.session.take() {
        let _ = tokio::task::spawn_blocking(move || drop(s)).await;
    }
    let _ = c.stream.shutdown().await;
    res
}

impl Conn<'_> {
    async fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.out.clear();
            self.stream.flush().await?;
        }
        Ok(())
    }

    fn session(&mut self) -> Step<&mut Session> {
        self.session.as_deref_mut().ok_or_else(|| End::Fatal(Error::Internal("no session".into())))
    }

    /// The startup packet, authentication and the session. False if the
    /// connection only carried a CancelRequest.
    async fn startup(&mut self, peer: SocketAddr, pid: i32, full: bool) -> Step<bool> {
        let max = self.server.config.max_message_bytes.min(10_000);
        // Each may be asked once, before the startup packet (a second one
        // is an unknown protocol version, as in PostgreSQL).
        let (mut ssl_done, mut gss_done) = (false, false);
        let params = loop {
            let frame = read_frame(&mut self.stream, &mut self.inbuf, true, max).await?;
            let code = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
            match code {
                SSL_REQUEST if !ssl_done => {
                    ssl_done = true;
                    if !self.inbuf.is_empty() {
                        return Err(fatal("08P01", "received unencrypted data after SSL request"));
                    }
                    let Some(tls) = self.server.config.tls.clone() else {
                        self.stream.write_all(b"N").await?;
                        continue;
                    };
                    self.stream.write_all(b"S").await?;
                    let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Upgrading)
                    else {
                        return Err(End::Closed);
                    };
                    match tokio_rustls::TlsAcceptor::from(tls).accept(tcp).await {
                        Ok(t) => self.stream = Stream::Tls(Box::new(t)),
                        Err(e) => {
                            tracing::debug!(%peer, "TLS handshake failed: {e}");
                            return Err(End::Closed);
                        }
                    }
                }
                GSSENC_REQUEST if !gss_done => {
                    gss_done = true;
                    if !self.inbuf.is_empty() {
                        return Err(fatal(
                            "08P01",
                            "received unencrypted data after GSSAPI encryption request",
                        ));
                    }
                    // No GSSAPI: the client goes on without it.
                    self.stream.write_all(b"N").await?;
                }
                // pid and secret key of the session whose statement to cancel.
                CANCEL_REQUEST => {
                    if frame.len() >= 16 {
                        let pid = i32::from_be_bytes([frame[8], frame[9], frame[10], frame[11]]);
                        let key = i32::from_be_bytes([frame[12], frame[13], frame[14], frame[15]]);
                        self.server.cancel(pid, key);
                    }
                    return Ok(false);
                }
                _ if code >> 16 == 3 => {
                    let mut frame = frame;
                    let ctx = DecodeContext::new(ProtocolVersion::PROTOCOL3_0);
                    let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        Startup::decode(&mut frame, &ctx)
                    }));
                    let Ok(Ok(Some(s))) = r else {
                        return Err(fatal("08P01", "invalid startup packet layout"));
                    };
                    let unsupported: Vec<String> =
                        s.parameters.keys().filter(|k| k.starts_with("_pq_.")).cloned().collect();
                    if s.protocol_number_minor > 0 || !unsupported.is_empty() {
                        put(
                            &mut self.out,
                            B::NegotiateProtocolVersion(NegotiateProtocolVersion::new(
                                Startup::PROTOCOL_VERSION_3_0,
                                unsupported,
                            )),
                        );
                    }
                    break s.parameters;
                }
                _ => {
                    return Err(fatal(
                        "0A000",
                        format!(
                            "unsupported frontend protocol {}.{}: server supports 3.0 to 3.0",
                            code >> 16,
                            code & 0xffff
                        ),
                    ));
                }
            }
        };
        if full {
            return Err(fatal("53300", "sorry, too many clients already"));
        }
        let Some(user) = params.get("user").filter(|u| !u.is_empty()).cloned() else {
            return Err(fatal("28000", "no PostgreSQL user name specified in startup packet"));
        };
        let database =
            params.get("database").filter(|d| !d.is_empty()).cloned().unwrap_or(user.clone());
        let server = self.server;
        let cfg = &server.config;
        let remote = !peer.ip().is_loopback();
        let no_entry = (remote && cfg.auth == Auth::Trust && !cfg.trust_remote)
            || (remote && cfg.require_tls && !self.stream.is_tls());
        if no_entry {
            return Err(fatal(
                "28000",
                format!(
                    "no pg_hba.conf entry for host \"{}\", user \"{user}\", database \"{database}\", {}",
                    peer.ip(),
                    if self.stream.is_tls() { "SSL encryption" } else { "no encryption" }
                ),
            ));
        }
        let db = self.server.db.clone();
        let name = user.clone();
        let role = tokio::task::spawn_blocking(move || db.role(&name))
            .await
            .map_err(|e| End::Fatal(Error::Internal(format!("role lookup failed: {e}"))))?
            .map_err(End::Fatal)?;
        if cfg.auth == Auth::Scram {
            self.scram(&user, role.as_ref()).await?;
        }
        let Some(role) = role else {
            return Err(fatal("28000", format!("role \"{user}\" does not exist")));
        };
        if !role.login {
            return Err(fatal("28000", format!("role \"{user}\" is not permitted to log in")));
        }
        let db = self.server.db.clone();
        let settings = match startup_settings(&params) {
            Ok(s) => s,
            Err(e) => return Err(End::Fatal(e)),
        };
        // Reported back as set: `-c application_name=…` in options wins.
        let app = settings
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case("application_name"))
            .map(|(_, v)| v.clone())
            .or_else(|| params.get("application_name").cloned())
            .unwrap_or_default();
        let options = qube_sql::SessionOptions {
            database,
            user: Some(user.clone()),
            application_name: params.get("application_name").cloned().unwrap_or_default(),
            client: Some(peer),
            pid: Some(pid),
            interface: qube_sql::metrics::Interface::Pg,
        };
        let session = tokio::task::spawn_blocking(move || {
            let mut s = db.open_session(options)?;
            for (name, value) in &settings {
                s.set_parameter(name, value)?;
            }
            Ok::<_, Error>(s)
        })
        .await
        .map_err(|e| End::Fatal(Error::Internal(format!("session start failed: {e}"))))?
        .map_err(End::Fatal)?;
        self.zone_reported = session.time_zone_name().to_string();
        let wake = self.terminate.clone();
        session.on_terminate(move || wake.notify_one());
        tracing::debug!(%peer, user, pid, "session started");
        self.session = Some(Box::new(session));
        put(&mut self.out, B::Authentication(Authentication::Ok));
        for (name, value) in [
            ("server_version", SERVER_VERSION.to_string()),
            ("server_encoding", "UTF8".into()),
            ("client_encoding", "UTF8".into()),
            ("DateStyle", "ISO, MDY".into()),
            ("IntervalStyle", "postgres".into()),
            ("TimeZone", self.zone_reported.clone()),
            ("integer_datetimes", "on".into()),
            ("standard_conforming_strings", "on".into()),
            ("is_superuser", if role.superuser { "on" } else { "off" }.into()),
            ("session_authorization", user.clone()),
            ("application_name", app),
        ] {
            put(&mut self.out, B::ParameterStatus(ParameterStatus::new(name.into(), value)));
        }
        let secret = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_i32(pid);
            h.finish() as i32
        };
        if let Some(s) = &self.session {
            self.server.cancels.lock().insert(pid, (secret, s.canceller()));
        }
        put(&mut self.out, B::BackendKeyData(BackendKeyData::new(pid, SecretKey::I32(secret))));
        self.ready_for_query()?;
        self.flush().await?;
        Ok(true)
    }

    /// SCRAM-SHA-256 (see `qube_catalog::scram`): AuthenticationSASL,
    /// SASLInitialResponse, AuthenticationSASLContinue, SASLResponse,
    /// AuthenticationSASLFinal. A role that does not exist, has no
    /// password or whose password has expired gets a mock exchange that
    /// fails at the end like a wrong password (28P01), so the exchange
    /// says nothing about which roles exist.
    async fn scram(&mut self, user: &str, role: Option<&qube_catalog::RoleDef>) -> Step {
        use qube_catalog::scram::{ScramError, ServerExchange, Verifier};
        let now = now_pg_micros();
        let real = role
            .filter(|r| r.valid_until.is_none_or(|t| t > now))
            .and_then(|r| r.password.as_deref())
            .and_then(Verifier::parse);
        let mock = real.is_none();
        let verifier = real.unwrap_or_else(|| Verifier::mock(user, &self.server.mock_secret));
        let failed =
            || fatal("28P01", format!("password authentication failed for user \"{user}\""));
        put(&mut self.out, B::Authentication(Authentication::SASL(vec!["SCRAM-SHA-256".into()])));
        self.flush().await?;
        let first = self.read_password_message().await?;
        // SASLInitialResponse: mechanism, then the length of the data and the data.
        let nul = first.iter().position(|b| *b == 0).ok_or_else(malformed_sasl)?;
        if &first[..nul] != b"SCRAM-SHA-256" {
            return Err(fatal("08P01", "client selected an invalid SASL authentication mechanism"));
        }
        let rest = &first[nul + 1..];
        if rest.len() < 4 {
            return Err(malformed_sasl());
        }
        let len = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let data = &rest[4..];
        if usize::try_from(len).ok() != Some(data.len()) {
            return Err(malformed_sasl());
        }
        let (exchange, server_first) = match ServerExchange::start(verifier, data) {
            Ok(x) => x,
            Err(ScramError::Protocol(m)) => return Err(fatal("08P01", m)),
            Err(ScramError::Failed) => return Err(failed()),
        };
        put(
            &mut self.out,
            B::Authentication(Authentication::SASLContinue(server_first.into_bytes().into())),
        );
        self.flush().await?;
        let last = self.read_password_message().await?;
        match exchange.finish(&last) {
            Ok(_) if mock => Err(failed()),
            Ok(server_final) => {
                put(
                    &mut self.out,
                    B::Authentication(Authentication::SASLFinal(server_final.into_bytes().into())),
                );
                Ok(())
            }
            Err(ScramError::Protocol(m)) => Err(fatal("08P01", m)),
            Err(ScramError::Failed) => Err(failed()),
        }
    }

    /// The body of the next message, which must be a PasswordMessage
    /// ('p'); a client that closes instead (psql does, to ask for a
    /// password) ends the connection quietly.
    async fn read_password_message(&mut self) -> Step<BytesMut> {
        let mut frame = read_frame(&mut self.stream, &mut self.inbuf, false, 10_000).await?;
        if frame[0] != b'p' {
            return Err(fatal(
                "08P01",
                format!("expected SASL response, got message type {}", frame[0]),
            ));
        }
        Ok(frame.split_off(5))
    }

    fn ready_for_query(&mut self) -> Step {
        // ReadyForQuery: 'Z', length 5, the status.
        let status = match self.session()?.transaction_status() {
            (false, _) => b'I',
            (true, false) => b'T',
            (true, true) => b'E',
        };
        self.out.extend_from_slice(&[b'Z', 0, 0, 0, 5, status]);
        Ok(())
    }

    async fn serve(&mut self, shutdown: &mut watch::Receiver<bool>) -> Step {
        // What ends the connection while it waits for its client: made
        // once, so that waiting between messages does not register with
        // (and leave) the shutdown channel and the Notify every time.
        let terminate = self.terminate.clone();
        let mut ends = Ends {
            stopped: Box::pin(crate::stopped(shutdown)),
            terminated: Box::pin(terminate.notified()),
        };
        loop {
            let max = self.server.config.max_message_bytes;
            // Messages a client pipelined (Bind, Describe, Execute, Sync)
            // are taken from the buffer without setting up the wait below.
            let frame = if frame_buffered(&self.inbuf) {
                read_frame(&mut self.stream, &mut self.inbuf, false, max).await?
            } else {
                self.next_frame(&mut ends, max).await?
            };
            // Bind, Describe, Execute, Sync and Query are read in place
            // (`hot`).
            let kind = frame[0];
            let bad_parse = if kind == b'P' { parse_not_utf8(&frame[5..]) } else { None };
            let held;
            let msg = if hot::is_hot(&frame) {
                if !well_formed(kind, &frame[5..]) {
                    return Err(malformed(kind));
                }
                held = frame;
                Msg::Hot(hot::read(&held))
            } else {
                Msg::Other(decode_message(frame)?)
            };
            // Parse, Bind, Describe, Execute, Close, Flush.
            let extended = matches!(kind, b'P' | b'B' | b'D' | b'E' | b'C' | b'H');
            self.stray_copy = match (self.stray_copy, kind) {
                (StrayCopy::Failed, b'S') => StrayCopy::Failed,
                (StrayCopy::Failed, _) if extended => StrayCopy::Failed,
                (StrayCopy::Synced, b'd') => StrayCopy::Synced,
                (StrayCopy::Synced | StrayCopy::Swallow, b'c' | b'f') => StrayCopy::Swallow,
                (StrayCopy::Swallow, b'S') => {
                    // The copy's own Sync (see `StrayCopy`).
                    self.stray_copy = StrayCopy::No;
                    continue;
                }
                _ => StrayCopy::No,
            };
            if extended && self.skip_to_sync {
                continue;
            }
            let r = match msg {
                Msg::Hot(Hot::Bind(b)) => self.bind(b),
                Msg::Hot(Hot::Describe { target, name }) => self.describe(target, &name),
                Msg::Hot(Hot::Execute { portal, max_rows }) => {
                    self.execute(&portal, max_rows).await?
                }
                Msg::Hot(Hot::Sync) | Msg::Other(F::Sync(_)) => {
                    self.sync().await?;
                    Ok(())
                }
                Msg::Hot(Hot::Query(q)) => {
                    match q {
                        Ok(sql) => self.simple_query(sql.to_owned()).await?,
                        // As a statement's error in a simple query: a block
                        // it was sent in fails.
                        Err(e) => {
                            self.session()?.fail_transaction();
                            put(&mut self.out, B::ErrorResponse(emit::error_response(&e, "ERROR")));
                        }
                    }
                    self.ready_for_query()?;
                    self.flush().await?;
                    Ok(())
                }
                Msg::Other(F::Parse(p)) => match bad_parse {
                    Some(e) => Err(e),
                    None => self.parse(p).await?,
                },
                // Longer than pgwire accepts: it fails to decode them.
                Msg::Other(F::Query(_) | F::Bind(_)) => return Err(malformed(kind)),
                Msg::Other(F::Describe(d)) => {
                    self.describe(d.target_type, d.name.as_deref().unwrap_or_default())
                }
                Msg::Other(F::Execute(e)) => {
                    self.execute(e.name.as_deref().unwrap_or_default(), e.max_rows).await?
                }
                Msg::Other(F::Close(c)) => {
                    self.close(c);
                    Ok(())
                }
                Msg::Other(F::Flush(_)) => {
                    self.flush().await?;
                    Ok(())
                }
                Msg::Other(F::Terminate(_)) => return Err(End::Closed),
                // Stray COPY messages are ignored, as PostgreSQL does.
                Msg::Other(F::CopyData(_) | F::CopyDone(_) | F::CopyFail(_)) => Ok(()),
                Msg::Other(other) => {
                    return Err(fatal(
                        "08P01",
                        format!("unexpected message {}", message_name(&other)),
                    ));
                }
            };
            if let Err(e) = r {
                // An error in the extended protocol: report it, mark a
                // transaction block failed, discard until Sync.
                self.session()?.fail_transaction();
                put(&mut self.out, B::ErrorResponse(emit::error_response(&e, "ERROR")));
                self.skip_to_sync = true;
            }
            if self.out.len() >= emit::CHUNK {
                self.flush().await?;
            }
        }
    }

    /// Sync: the end of an extended-protocol message sequence.
    async fn sync(&mut self) -> Step {
        if self.stray_copy == StrayCopy::Failed {
            self.stray_copy = StrayCopy::Synced;
        }
        self.skip_to_sync = false;
        if !self.session()?.transaction_status().0 {
            // Portals live until the end of their transaction.
            self.portals.clear();
        }
        self.ready_for_query()?;
        self.flush().await?;
        Ok(())
    }

    /// Waits for the next frame, or for what ends the connection while it
    /// is idle: shutdown, pg_terminate_backend, the idle-in-transaction
    /// timeout.
    async fn next_frame(&mut self, ends: &mut Ends<'_>, max: usize) -> Step<BytesMut> {
        // Idle inside a transaction block: at most the session's
        // idle_in_transaction_session_timeout.
        let idle_limit = self
            .session
            .as_deref()
            .filter(|s| s.transaction_status().0)
            .and_then(|s| s.idle_in_transaction_timeout());
        let idle = async {
            match idle_limit {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            f = read_frame(&mut self.stream, &mut self.inbuf, false, max) => f,
            _ = &mut ends.stopped => {
                Err(fatal("57P01", "terminating connection due to administrator command"))
            }
            _ = &mut ends.terminated => {
                Err(End::Fatal(qube_sql::exec::interrupt::terminated()))
            }
            _ = idle => {
                Err(fatal("25P03", "terminating connection due to idle-in-transaction timeout"))
            }
        }
    }

    /// Runs a statement's work `f` with the session: inline, on this
    /// task's thread, if `inline` (and the runtime can move its other work
    /// away while the statement waits, see `qube_common::wait`), else on a
    /// blocking thread while the rows it emits are written to the socket.
    /// Returns f's result and whether it was short: computed for less than
    /// `SHORT` (time spent waiting for locks or fsyncs not counted), which
    /// is what `inline` should be next time for the same statement.
    ///
    /// Why: handing a point select to a blocking thread and its rows back
    /// costs two thread switches, more than the select itself. A long
    /// statement inline would hold one of the runtime's few threads, so
    /// only statements that ran short the last time run inline.
    async fn run<T: Send + 'static>(
        &mut self,
        inline: bool,
        f: impl FnOnce(&mut Session, &mut Emitter) -> T + Send + 'static,
    ) -> Step<(T, bool)> {
        if inline && self.inline_ok {
            return self.run_inline(f);
        }
        self.blocking(f).await
    }

    fn run_inline<T>(
        &mut self,
        f: impl FnOnce(&mut Session, &mut Emitter) -> T,
    ) -> Step<(T, bool)> {
        let session = self
            .session
            .as_deref_mut()
            .ok_or_else(|| End::Fatal(Error::Internal("no session".into())))?;
        let mut em = Emitter::new(
            std::mem::take(&mut self.out),
            None,
            std::mem::take(&mut self.zone_reported),
        );
        let (start, waited) = (Instant::now(), wait::waited());
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
            wait::with_hook(block_in_place, || f(session, &mut em))
        }));
        let short = start.elapsed().saturating_sub(wait::waited() - waited) < SHORT;
        self.out = em.buf;
        self.zone_reported = em.zone_reported;
        let r = r.map_err(|_| {
            tracing::error!("a statement panicked");
            End::Fatal(Error::Internal("the statement failed unexpectedly".into()))
        })?;
        if session.is_terminated() {
            return Err(End::Fatal(qube_sql::exec::interrupt::terminated()));
        }
        Ok((r, short))
    }

    /// `run` on a blocking thread.
    async fn blocking<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Session, &mut Emitter) -> T + Send + 'static,
    ) -> Step<(T, bool)> {
        let mut session =
            self.session.take().ok_or_else(|| End::Fatal(Error::Internal("no session".into())))?;
        let (tx, mut rx) = mpsc::channel::<Outgoing>(4);
        // What is not written yet goes first, in the statement's first chunk.
        let mut em = Emitter::new(
            std::mem::take(&mut self.out),
            Some(tx),
            std::mem::take(&mut self.zone_reported),
        );
        let handle = tokio::task::spawn_blocking(move || {
            let (start, waited) = (Instant::now(), wait::waited());
            let r = f(&mut session, &mut em);
            let short = start.elapsed().saturating_sub(wait::waited() - waited) < SHORT;
            (session, std::mem::take(&mut em.buf), em.zone_reported.clone(), (r, short))
        });
        let mut failed = None;
        // Set when the client went away (or broke the protocol) while a
        // COPY FROM STDIN read from it.
        let mut ended = None;
        while let Some(msg) = rx.recv().await {
            match msg {
                Outgoing::Bytes(chunk) => {
                    if failed.is_none()
                        && let Err(e) = self.stream.write_all(&chunk).await
                    {
                        failed = Some(e);
                        rx.close();
                    }
                }
                Outgoing::NeedCopyData(reply) => {
                    let chunk = if failed.is_some() || ended.is_some() {
                        CopyChunk { data: BytesMut::new(), end: Some(CopyEnd::Gone) }
                    } else {
                        self.copy_data(&mut ended).await
                    };
                    let _ = reply.send(chunk);
                }
            }
        }
        if failed.is_none()
            && let Err(e) = self.stream.flush().await
        {
            failed = Some(e);
        }
        let (session, rest, zone, r) = handle.await.map_err(|e| {
            tracing::error!("a statement panicked: {e}");
            End::Fatal(Error::Internal("the statement failed unexpectedly".into()))
        })?;
        let terminated = session.is_terminated();
        self.session = Some(session);
        self.zone_reported = zone;
        if let Some(e) = failed {
            return Err(End::Io(e));
        }
        if let Some(e) = ended {
            return Err(e);
        }
        self.out.extend_from_slice(&rest);
        if terminated {
            // pg_terminate_backend: the statement's output so far, then
            // FATAL 57P01 instead of its ERROR (see `Emitter::error`).
            return Err(End::Fatal(qube_sql::exec::interrupt::terminated()));
        }
        Ok(r)
    }

    /// Reads copy-in data for the statement's thread: CopyData frames up
    /// to `COPY_BATCH` bytes or a frame that ends the copy. It waits for
    /// the whole batch: nothing answers a CopyData, so a client cannot be
    /// waiting for the server mid-copy, and a batch per request rather
    /// than whatever the socket held (often one 8 KiB frame of psql's)
    /// saves the statement's thread thousands of hand-offs per COPY. A
    /// frame that ends the connection is kept in `ended`.
    async fn copy_data(&mut self, ended: &mut Option<End>) -> CopyChunk {
        let max = self.server.config.max_message_bytes;
        // Grown as frames come: a small COPY does not pay for a batch.
        let mut data = BytesMut::new();
        loop {
            if data.len() >= emit::COPY_BATCH {
                return CopyChunk { data, end: None };
            }
            if !frame_buffered(&self.inbuf) {
                // Room for many frames per read from the socket.
                self.inbuf.reserve(64 << 10);
            }
            let frame = match read_frame(&mut self.stream, &mut self.inbuf, false, max).await {
                Ok(f) => f,
                Err(e) => {
                    *ended = Some(e);
                    return CopyChunk { data, end: Some(CopyEnd::Gone) };
                }
            };
            let end = match frame[0] {
                b'd' => {
                    data.extend_from_slice(&frame[5..]);
                    continue;
                }
                // Flush and Sync are ignored in copy-in, as PostgreSQL
                // does for clients that send them after every Execute.
                b'H' | b'S' => continue,
                b'c' => CopyEnd::Done,
                b'f' => {
                    let body = &frame[5..];
                    let n = body.iter().position(|b| *b == 0).unwrap_or(body.len());
                    CopyEnd::Fail(String::from_utf8_lossy(&body[..n]).into_owned())
                }
                t => CopyEnd::Unexpected(t),
            };
            // The copy is over: an idle connection keeps no COPY-sized buffer.
            if self.inbuf.is_empty() && self.inbuf.capacity() > 16 << 10 {
                self.inbuf = BytesMut::with_capacity(8192);
            }
            return CopyChunk { data, end: Some(end) };
        }
    }

    async fn simple_query(&mut self, sql: String) -> Step {
        self.skip_to_sync = false;
        // A new simple query closes the unnamed portal and statement.
        self.portals.remove("");
        if let Some(target) = deallocate_target(&sql) {
            return self.deallocate(target);
        }
        // One pass over the text finds its numbers, for the engine's plan
        // reuse (`prepare_simple_text`), and gives its shape; texts the
        // engine does not read that way get ours.
        let text = qube_sql::session::SimpleText::new(sql);
        let shape = text.shape().unwrap_or_else(|| shape(text.sql()));
        let inline = self.shape_was_short(shape, text.sql());
        // The closure's result: whether it ran a COPY (which must not run
        // inline next time).
        let (copied, short) = self
            .run(inline, move |s, em| {
                let p = match s.prepare_simple_text(text) {
                    Ok(p) => p,
                    Err(e) => {
                        s.fail_transaction();
                        em.error(&e);
                        return false;
                    }
                };
                let copied = (0..p.len()).any(|i| p.copy_kind(i).is_some());
                simple_statements(s, em, &p);
                copied
            })
            .await?;
        self.remember_shape(shape, short && !copied);
        Ok(())
    }

    /// Whether statements of this shape may run inline: the last one did
    /// and took less than `SHORT`.
    fn shape_was_short(&self, shape: u64, sql: &str) -> bool {
        sql.len() <= INLINE_TEXT && self.shapes.get(&shape) == Some(&true)
    }

    fn remember_shape(&mut self, shape: u64, short: bool) {
        if self.shapes.len() >= SHAPES && !self.shapes.contains_key(&shape) {
            self.shapes.clear();
        }
        self.shapes.insert(shape, short);
    }

    async fn parse(&mut self, p: Parse) -> Step<Result<()>> {
        let name = p.name.unwrap_or_default();
        if !name.is_empty() && self.stmts.contains_key(&name) {
            return Ok(Err(Error::user(
                "42P05",
                format!("prepared statement \"{name}\" already exists"),
            )));
        }
        let declared = p.type_oids;
        let sql = p.query;
        let shape = shape(&sql);
        let inline = self.shape_was_short(shape, &sql);
        let (r, short) = self
            .run(inline, move |s, _| -> Result<Stmt> {
                let prepared = s.prepare(&sql)?;
                if prepared.len() > 1 {
                    return Err(Error::user(
                        "42601",
                        "cannot insert multiple commands into a prepared statement",
                    ));
                }
                let d = s.describe(&prepared)?;
                let n = d.params.len().max(declared.len());
                let mut params = Vec::with_capacity(n);
                let mut param_oids = Vec::with_capacity(n);
                for i in 0..n {
                    let decl = declared.get(i).copied().filter(|o| *o != 0);
                    let inferred = d.params.get(i).cloned().flatten();
                    let t = decl.and_then(types::from_oid).or(inferred);
                    param_oids.push(
                        decl.unwrap_or_else(|| t.as_ref().map_or(types::TEXT_OID, types::oid)),
                    );
                    params.push(t);
                }
                Ok(Stmt {
                    prepared,
                    params,
                    param_oids,
                    columns: d.columns,
                    short: AtomicBool::new(false),
                    described: std::sync::Mutex::new(None),
                })
            })
            .await?;
        self.remember_shape(shape, short);
        Ok(r.map(|stmt| {
            self.stmts.insert(name, Arc::new(stmt));
            put(&mut self.out, B::ParseComplete(ParseComplete::new()));
        }))
    }

    fn bind(&mut self, b: BindMsg<'_>) -> Result<()> {
        let name = b.statement.as_ref();
        let stmt = self.stmts.get(name).cloned().ok_or_else(|| {
            Error::user("26000", format!("prepared statement \"{name}\" does not exist"))
        })?;
        if !b.portal.is_empty() && self.portals.contains(b.portal.as_ref()) {
            return Err(Error::user("42P03", format!("cursor \"{}\" already exists", b.portal)));
        }
        if b.param_count() != stmt.params.len() {
            return Err(Error::user(
                "08P01",
                format!(
                    "bind message supplies {} parameters, but prepared statement \"{name}\" requires {}",
                    b.param_count(),
                    stmt.params.len()
                ),
            ));
        }
        let pf = b.param_format_count();
        if pf > 1 && pf != b.param_count() {
            return Err(Error::user(
                "08P01",
                format!(
                    "bind message has {pf} parameter formats but {} parameters",
                    b.param_count()
                ),
            ));
        }
        let rf = b.result_format_count();
        if rf > 1 && rf != stmt.columns.len() {
            return Err(Error::user(
                "08P01",
                format!(
                    "bind message has {rf} result formats but query has {} columns",
                    stmt.columns.len()
                ),
            ));
        }
        if b.all_formats().any(|f| !matches!(f, 0 | 1)) {
            return Err(Error::user("22023", "unsupported format code"));
        }
        let mut list = self.portals.params(b.param_count());
        // Fresh, or the spare that nothing else holds.
        let params =
            Arc::get_mut(&mut list).ok_or_else(|| Error::Internal("shared parameters".into()))?;
        for (i, p) in b.params().enumerate() {
            let binary = b.param_format(i) == 1;
            let v =
                types::decode_param(p, binary, stmt.params[i].as_ref()).map_err(|e| match e {
                    Error::User { sqlstate, message, .. } => {
                        Error::user(sqlstate, format!("{message} (parameter ${})", i + 1))
                    }
                    e => e,
                })?;
            params.push(v);
        }
        // All text is no codes at all (`emit::format_of`): drivers send one
        // 0, which then costs no allocation.
        let formats = if b.result_formats().all(|f| f == 0) {
            Vec::new()
        } else {
            b.result_formats().collect()
        };
        self.portals
            .insert(&b.portal, Portal { stmt, params: list, formats, pending: None, done: None });
        // BindComplete: '2', length 4.
        self.out.extend_from_slice(&[b'2', 0, 0, 0, 4]);
        Ok(())
    }

    fn describe(&mut self, target: u8, name: &str) -> Result<()> {
        let (stmt, formats): (&Stmt, &[i16]) = if target == b'S' {
            let stmt = self.stmts.get(name).ok_or_else(|| {
                Error::user("26000", format!("prepared statement \"{name}\" does not exist"))
            })?;
            put(
                &mut self.out,
                B::ParameterDescription(ParameterDescription::new(stmt.param_oids.clone())),
            );
            (stmt, &[])
        } else {
            let p = self
                .portals
                .get(name)
                .ok_or_else(|| Error::user("34000", format!("portal \"{name}\" does not exist")))?;
            (&p.stmt, &p.formats)
        };
        if stmt.columns.is_empty() {
            put(&mut self.out, B::NoData(NoData::new()));
        } else {
            self.out.extend_from_slice(&stmt.row_description(formats));
        }
        Ok(())
    }

    async fn execute(&mut self, name: &str, max_rows: i32) -> Step<Result<()>> {
        let Some(portal) = self.portals.get_mut(name) else {
            return Ok(Err(Error::user("34000", format!("portal \"{name}\" does not exist"))));
        };
        let limit = usize::try_from(max_rows).ok().filter(|n| *n > 0);
        if let Some(tag) = &portal.done {
            // Run to completion before: nothing more to return.
            emit::command_complete(&mut self.out, tag);
            return Ok(Ok(()));
        }
        if portal.pending.is_none() {
            let stmt = portal.stmt.clone();
            if stmt.prepared.is_empty() {
                put(&mut self.out, B::EmptyQueryResponse(EmptyQueryResponse::new()));
                return Ok(Ok(()));
            }
            let params = portal.params.clone();
            let formats = portal.formats.clone();
            let copy = stmt.prepared.copy_kind(0).is_some();
            let inline = !copy && stmt.short.load(Ordering::Relaxed);
            let shared = stmt.clone();
            // `early`: a COPY FROM STDIN that failed before copy-in began.
            let ((r, early), short) = self
                .run(inline, move |s, em| {
                    let mut early = false;
                    let r = (|| -> Result<(Option<Vec<BytesMut>>, String)> {
                        if let Some(kind) = stmt.prepared.copy_kind(0) {
                            em.begin(false, formats, false);
                            let r = run_copy(s, em, &stmt.prepared, 0, kind, &params, &mut early);
                            return Ok((None, em.complete(r?)?));
                        }
                        em.begin(false, formats, limit.is_some());
                        let rs =
                            s.execute_prepared_streaming(&stmt.prepared, &params, &mut |c, r| {
                                em.row(c, r)
                            });
                        em.report_zone(s);
                        em.notices(s);
                        let mut tag = String::new();
                        for r in rs? {
                            tag = em.complete(r)?;
                        }
                        Ok((em.collected.take(), tag))
                    })();
                    (r, early)
                })
                .await?;
            shared.short.store(short && !copy, Ordering::Relaxed);
            if early && r.is_err() {
                self.stray_copy = StrayCopy::Failed;
            }
            let Some(portal) = self.portals.get_mut(name) else { return Ok(Ok(())) };
            match r {
                Err(e) => return Ok(Err(e)),
                Ok((None, tag)) => {
                    portal.done = Some(tag);
                    return Ok(Ok(()));
                }
                Ok((Some(rows), tag)) => portal.pending = Some((rows.into(), tag)),
            }
        }
        let Some(portal) = self.portals.get_mut(name) else { return Ok(Ok(())) };
        if let Some((rows, tag)) = &mut portal.pending {
            let n = limit.unwrap_or(usize::MAX).min(rows.len());
            for r in rows.drain(..n) {
                self.out.extend_from_slice(&r);
            }
            if rows.is_empty() {
                emit::command_complete(&mut self.out, tag);
                portal.done = Some(std::mem::take(tag));
                portal.pending = None;
            } else {
                put(&mut self.out, B::PortalSuspended(PortalSuspended::new()));
            }
        }
        Ok(Ok(()))
    }

    /// `DEALLOCATE [PREPARE] name | ALL` as a simple query: closes this
    /// connection's named statements (drivers send it after DDL, when
    /// their statement cache may be stale) and those of SQL's PREPARE. An
    /// unknown name is 26000; in a failed transaction it is 25P02, as
    /// every other statement.
    fn deallocate(&mut self, target: Option<String>) -> Step {
        let (in_block, failed) = self.session()?.transaction_status();
        let r = if in_block && failed {
            Err(Error::user(
                "25P02",
                "current transaction is aborted, commands ignored until end of transaction block",
            ))
        } else {
            // The connection's statements first, then the session's (SQL's
            // PREPARE), which answers 26000 for a name neither has.
            match target {
                None => {
                    self.stmts.retain(|name, _| name.is_empty());
                    self.session()?.deallocate(None).map(|()| "DEALLOCATE ALL")
                }
                Some(name) => match self.stmts.remove(&name) {
                    Some(_) => Ok("DEALLOCATE"),
                    None => self.session()?.deallocate(Some(&name)).map(|()| "DEALLOCATE"),
                },
            }
        };
        match r {
            Ok(tag) => emit::command_complete(&mut self.out, tag),
            Err(e) => {
                self.session()?.fail_transaction();
                put(&mut self.out, B::ErrorResponse(emit::error_response(&e, "ERROR")));
            }
        }
        Ok(())
    }

    fn close(&mut self, c: Close) {
        let name = c.name.unwrap_or_default();
        if c.target_type == b'S' {
            self.stmts.remove(&name);
        } else {
            self.portals.remove(&name);
        }
        put(&mut self.out, B::CloseComplete(CloseComplete::new()));
    }
}

/// Whether `inbuf` holds a whole frame.
fn frame_buffered(inbuf: &BytesMut) -> bool {
    inbuf.len() >= 5 && {
        let len = i32::from_be_bytes([inbuf[1], inbuf[2], inbuf[3], inbuf[4]]);
        len >= 4 && inbuf.len() > len as usize
    }
}

/// Runs a COPY from or to the client on the statement's thread.
fn run_copy(
    s: &mut Session,
    em: &mut Emitter,
    p: &Prepared,
    index: usize,
    kind: CopyKind,
    params: &[Value],
    early: &mut bool,
) -> Result<QueryResult> {
    match kind {
        CopyKind::Out => {
            let r = s.copy_out(p, index, params, &mut |ev| match ev {
                CopyOut::Start { columns } => {
                    em.copy_out_start(columns);
                    Ok(())
                }
                CopyOut::Line(line) => em.copy_data(line),
            })?;
            em.copy_done();
            Ok(r)
        }
        CopyKind::In => {
            let mut c = s.copy_in(p, index).inspect_err(|_| *early = true)?;
            em.copy_in_start(c.columns())?;
            loop {
                let chunk = em.copy_in_next();
                if !chunk.data.is_empty() {
                    c.write(&chunk.data)?;
                }
                match chunk.end {
                    None => {}
                    Some(CopyEnd::Done) => return c.finish(),
                    Some(CopyEnd::Fail(m)) => return Err(c.abort(&m)),
                    Some(CopyEnd::Unexpected(t)) => {
                        drop(c);
                        return Err(Error::user(
                            "08P01",
                            format!("unexpected message type 0x{t:02X} during COPY from stdin"),
                        ));
                    }
                    Some(CopyEnd::Gone) => {
                        drop(c);
                        return Err(Error::user("08006", "connection lost during COPY from stdin"));
                    }
                }
            }
        }
    }
}

/// The statements of a simple query, each answered before the next runs.
fn simple_statements(s: &mut Session, em: &mut Emitter, p: &Prepared) {
    if p.is_empty() {
        return em.empty_query();
    }
    // Several statements share an implicit transaction, as in
    // PostgreSQL: an error rolls back what the message did.
    let implicit = p.len() > 1;
    if implicit {
        s.begin_implicit();
    }
    for i in 0..p.len() {
        em.begin(true, Vec::new(), false);
        let r = match p.copy_kind(i) {
            Some(kind) => run_copy(s, em, p, i, kind, &[], &mut false),
            None => s.execute_prepared_nth_streaming(p, i, &[], &mut |c, r| em.row(c, r)),
        };
        em.report_zone(s);
        em.notices(s);
        if let Err(e) = r.and_then(|r| em.complete(r)) {
            if implicit {
                let _ = s.end_implicit(false);
            }
            return em.error(&e);
        }
    }
    if implicit && let Err(e) = s.end_implicit(true) {
        em.error(&e);
    }
    em.notices(s);
}

/// A hash of a statement's text with its numbers and quoted strings left
/// out: texts that differ only in their literals (pgbench's simple
/// protocol, an ORM that inlines values) share a shape, and with it
/// whether they ran short (`Conn::run`). A simple query takes the
/// engine's shape instead when it has one (`SimpleText::shape`: the text
/// has numbers and no strings), which comes from the scan the engine
/// needs anyway; Parse texts, and simple ones without, take this.
fn shape(sql: &str) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let b = sql.as_bytes();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut mix = |c: u8| h = (h ^ u64::from(c)).wrapping_mul(PRIME);
    let mut i = 0;
    // Inside a word, digits are part of a name (t1), not a number.
    let mut in_word = false;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_digit() && !in_word {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.' || b[i] == b'_') {
                i += 1;
            }
            mix(b'0');
            continue;
        }
        if c == b'\'' {
            i += 1;
            while i < b.len() {
                if b[i] == b'\'' {
                    if b.get(i + 1) == Some(&b'\'') {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            i += 1;
            mix(b'\'');
            in_word = false;
            continue;
        }
        mix(c);
        in_word = c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80;
        i += 1;
    }
    h
}

/// If `sql` is one `DEALLOCATE [PREPARE] { name | ALL }` statement: the
/// statement it names (`None` for ALL). The engine knows nothing of the
/// protocol's named statements, so the connection answers it itself.
fn deallocate_target(sql: &str) -> Option<Option<String>> {
    /// The first word of `s` and the rest after it.
    fn word(s: &str) -> (&str, &str) {
        let s = s.trim_start();
        let end = s.find(|c: char| c.is_ascii_whitespace()).unwrap_or(s.len());
        (&s[..end], &s[end..])
    }
    // Most texts are not: their first letter says so.
    let start = sql.trim_start().as_bytes().first();
    if !start.is_some_and(|b| b.eq_ignore_ascii_case(&b'd')) {
        return None;
    }
    let body = sql.trim().trim_end_matches(';').trim_end();
    let (first, rest) = word(body);
    if !first.eq_ignore_ascii_case("deallocate") {
        return None;
    }
    let (second, after) = word(rest);
    let name = if second.eq_ignore_ascii_case("prepare") { after.trim() } else { rest.trim() };
    if name.eq_ignore_ascii_case("all") {
        return Some(None);
    }
    // A quoted name keeps its case ("" inside is a quote); a bare one is
    // folded to lower case and must be a plain identifier.
    if let Some(q) = name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        let ok = !q.is_empty() && !q.replace("\"\"", "").contains('"');
        return ok.then(|| Some(q.replace("\"\"", "\"")));
    }
    let plain = !name.is_empty()
        && name.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '$')
        && !name.starts_with(|c: char| c.is_ascii_digit() || c == '$');
    plain.then(|| Some(name.to_lowercase()))
}

fn malformed_sasl() -> End {
    fatal("08P01", "malformed SASL message")
}

/// Now, in µs since 2000-01-01 UTC (the engine's timestamptz).
fn now_pg_micros() -> i64 {
    const PG_EPOCH_UNIX_SECS: i64 = 946_684_800;
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    unix - PG_EPOCH_UNIX_SECS * 1_000_000
}

fn message_name(m: &F) -> &'static str {
    match m {
        F::SslNegotiation(_) => "SSLRequest",
        F::Startup(_) => "StartupMessage",
        F::CancelRequest(_) => "CancelRequest",
        F::PasswordMessageFamily(_) => "PasswordMessage",
        F::PortalSuspended(_) => "PortalSuspended",
        _ => "in this state",
    }
}

/// The settings a startup packet asks for, in order: every parameter that
/// is not part of the connection itself (`TimeZone`, `statement_timeout`,
/// `search_path`, …, as PostgreSQL applies any setting given there), then
/// those of `options` (`-c name=value` or `--name=value`, separated by
/// spaces, a backslash escaping the next character, as libpq's PGOPTIONS
/// sends them). `client_encoding` (always UTF8 here) and the styles of
/// date and interval output (only ISO and postgres exist) are not applied.
fn startup_settings(
    params: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, Error> {
    let skip = |k: &str| {
        matches!(
            k.to_ascii_lowercase().as_str(),
            "user"
                | "database"
                | "options"
                | "replication"
                | "application_name"
                | "client_encoding"
                | "datestyle"
                | "intervalstyle"
        ) || k.starts_with("_pq_.")
    };
    let mut out: Vec<(String, String)> =
        params.iter().filter(|(k, _)| !skip(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    let Some(options) = params.get("options") else { return Ok(out) };
    // Split on unescaped whitespace; a backslash takes the next byte as is.
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => word.extend(chars.next()),
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let bad = |w: &str| {
        Error::user("42601", format!("invalid command-line argument for server process: {w}"))
            .with_hint("Try \"-c name=value\" or \"--name=value\".")
    };
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        let setting = if w == "-c" {
            it.next().ok_or_else(|| bad(&w))?
        } else if let Some(rest) = w.strip_prefix("-c") {
            rest.to_string()
        } else if let Some(rest) = w.strip_prefix("--") {
            rest.to_string()
        } else {
            return Err(bad(&w));
        };
        let Some((name, value)) = setting.split_once('=') else {
            return Err(Error::user("42601", format!("-c {setting} requires a value")));
        };
        // `--statement-timeout=5s` is `statement_timeout`, as in PostgreSQL.
        let name = name.replace('-', "_");
        if skip(&name) && !name.eq_ignore_ascii_case("application_name") {
            continue;
        }
        out.push((name, value.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deallocate_is_recognised_whatever_its_case_and_spacing() {
        assert_eq!(deallocate_target("DEALLOCATE ALL"), Some(None));
        assert_eq!(deallocate_target("  \n deallocate prepare s1;"), Some(Some("s1".into())));
        assert_eq!(deallocate_target("Deallocate \"Q\"\"x\""), Some(Some("Q\"x".into())));
        assert_eq!(deallocate_target("drop table t"), None);
        assert_eq!(deallocate_target("select 1"), None);
        assert_eq!(deallocate_target(""), None);
        assert_eq!(deallocate_target("   "), None);
        assert_eq!(deallocate_target("deallocate 1x"), None);
    }

    #[test]
    fn name_maps_find_what_was_put_in() {
        let mut m: HashMap<String, u32, Names> = HashMap::default();
        for i in 0..1000u32 {
            m.insert(format!("P0_{i}"), i);
        }
        m.insert(String::new(), 7);
        assert_eq!(m.len(), 1001);
        assert!((0..1000u32).all(|i| m.get(format!("P0_{i}").as_str()) == Some(&i)));
        assert_eq!(m.get(""), Some(&7));
        assert_eq!(m.get("P0_1000"), None);
    }
}
