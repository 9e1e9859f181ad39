//! QubeDB's PostgreSQL wire protocol (v3.0) server: the adapter between
//! sockets and the SQL engine's `Session`s. Nothing below this crate knows
//! that a network exists.
//!
//! # Design
//!
//! ```text
//! Server::serve ── accept loop (tokio) ── one task per connection (conn.rs)
//!                                            │ frames read into a buffer; Query,
//!                                            │ Bind, Describe, Execute, Sync read
//!                                            │ in place (hot.rs), the rest decoded
//!                                            │ by pgwire's message types
//!                                            ▼
//!                         startup → simple query / extended query state machine
//!                                            │ every statement and Parse (Conn::run)
//!                                            ▼
//!        ran short last time?  ── yes ── inline on the connection task, output into
//!                 │                      its buffer; waits (row locks, fsync,
//!                 no                     pg_sleep) through qube_common::wait →
//!                 ▼                      tokio::task::block_in_place
//!                  tokio::task::spawn_blocking(Session + Emitter)   (emit.rs)
//!                    rows are encoded on the blocking thread as the executor
//!                    produces them and sent to the connection task in 64 KiB
//!                    chunks over a bounded channel, which writes them out
//! ```
//!
//! - **Sessions are synchronous.** The connection task owns its `Session`.
//!   A statement (a prepared statement, or the literal-masked shape of a
//!   simple query or Parse text) that computed for under 1 ms the last
//!   time runs inline on the task, on a multi-thread runtime only: two
//!   thread hand-offs per statement would cost more than a point select.
//!   Its waits go through `qube_common::wait`, which the task hooks to
//!   `block_in_place`, so a waiting statement never holds a runtime thread.
//!   Every other statement (first runs, COPY, long ones) moves the session
//!   into a blocking-pool thread, so a long query holds a thread of the
//!   blocking pool, never the network runtime: idle connections cost a task
//!   and a buffer, and other sessions keep working. The bounded channel
//!   gives backpressure: a slow client slows its own query; a client gone
//!   makes the row callback fail, which stops the statement. Output goes
//!   out in one write per Sync (or per 64 KiB).
//! - **Framing is ours, message decoding is pgwire's.** pgwire 0.42's
//!   decoders read past a message's declared length and panic on short
//!   bodies (`Buf::get_*`), so each frame is cut from the stream by its
//!   length first, decoded on its own under `catch_unwind`, and must be
//!   consumed exactly; anything else is a protocol violation (08P01, FATAL),
//!   never a panic that takes more than this connection down. The messages
//!   every execution sends (Query; Bind, Describe, Execute, Sync) are read
//!   in place instead, after the same layout check (`hot.rs`): names and
//!   values borrowed from the frame, no copies. Backend messages are
//!   pgwire's types, except those every statement sends, which are encoded
//!   in place: `DataRow` (one per row, no intermediate buffer),
//!   `RowDescription`, `CommandComplete`, `BindComplete`, `ReadyForQuery`.
//! - **pgwire's handler layer is not used.** Its `SimpleQueryHandler` /
//!   `ExtendedQueryHandler` API is async and owns the portal store; our
//!   engine is synchronous, decides ReadyForQuery's status itself
//!   (`Session::transaction_status`), and streams rows from a callback, so
//!   the state machine here is a small direct one.
//! - **Types.** `types.rs` maps `DataType` to OIDs, writes text (the
//!   engine's own PostgreSQL text forms) and binary (PostgreSQL's `*send`
//!   formats) and decodes binary parameters. Text parameters of an integer
//!   type are read at Bind, as PostgreSQL reads every parameter there
//!   (`types::decode_param`); other text goes to the engine as text, which
//!   casts it where the statement gives it a type. The unnamed portal has
//!   its own slot and reuses its parameter list (`portal.rs`).
//!   Parameter types come from `Session::describe` (the binder notes the
//!   type each `$n` is coerced to) or from the types the client declared.
//! - **DEALLOCATE.** Named statements belong to the connection, not the
//!   engine, so a simple query that is exactly `DEALLOCATE [PREPARE]
//!   name | ALL` is answered here (drivers send it after DDL).
//! - **Portals with a row limit** run to completion at their first
//!   Execute and keep the encoded rows; later Executes hand out the rest
//!   (PortalSuspended between). Without a limit rows stream.
//! - **Transactions.** A dropped connection drops its `Session`, which
//!   rolls back an open transaction. The statements of one simple Query
//!   share an implicit transaction (`Session::begin_implicit`), as in
//!   PostgreSQL: an error rolls back the whole message unless BEGIN made
//!   the block explicit.
//! - **Shutdown.** `serve` stops accepting when told to; each connection
//!   finishes the statement it is running, then gets 57P01 (FATAL) when it
//!   next waits for a message; `serve` returns once all have closed.
//! - **Authentication** (`Config::auth`): trust, for loopback peers only
//!   unless `Config::trust_remote` (others get 28000), or SCRAM-SHA-256
//!   for every peer (`Conn::scram`, verifiers from the catalog, see
//!   `qube_catalog::scram`). Either way the role must exist and have
//!   LOGIN (28000), as in PostgreSQL; the session runs as that role.
//! - **TLS** (`tls.rs`): with `Config::tls` an SSLRequest is answered 'S'
//!   and rustls takes over the socket; without it 'N'. GSSENCRequest is
//!   always 'N'. `Config::require_tls` refuses plain-text peers that are
//!   not on loopback. COPY is not implemented yet.
//! - **Cancel and limits.** Each session's `Canceller` is registered under
//!   its pid and a random secret (BackendKeyData); a CancelRequest with
//!   both cancels the running statement (57014). The pid comes from the
//!   database's session registry (`Database::next_pid`), so it is also
//!   the session's `pg_backend_pid()` and `pg_stat_activity.pid`.
//!   `pg_terminate_backend` marks a session terminated and wakes its
//!   connection (`Session::on_terminate` → a `Notify` the serve loop
//!   selects on); after a statement of a terminated session the
//!   connection ends with FATAL 57P01. Beyond `Config::max_connections` a
//!   new connection gets 53300 after its startup packet. A session idle
//!   inside a transaction longer than its
//!   `idle_in_transaction_session_timeout` is closed with 25P03. A message
//!   longer than `Config::max_message_bytes` (64 MiB by default) ends the
//!   connection with 54000 as soon as its length is read.
//! - **Notices.** After each statement the notices it raised
//!   (`Session::take_notices`) go out as NoticeResponse messages before its
//!   CommandComplete or ErrorResponse; errors carry DETAIL and HINT fields.

mod conn;
mod emit;
mod hot;
mod portal;
pub mod tls;
pub mod types;

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use qube_sql::Database;
use qube_sql::exec::interrupt::Canceller;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The `server_version` reported to clients (drivers parse it).
pub const SERVER_VERSION: &str = "16.0";

/// The default largest message a client may send: 64 MiB (PostgreSQL's
/// limit is 1 GiB; a smaller default keeps one client from making the
/// server buffer that much). A longer message ends the connection with
/// FATAL 54000 as soon as its length is read, before its body is.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 << 20;

/// How clients prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// No password: loopback clients only (unless `Config::trust_remote`).
    /// The role must still exist and may log in.
    Trust,
    /// SCRAM-SHA-256 against the role's stored verifier, for every client.
    Scram,
}

impl std::str::FromStr for Auth {
    type Err = String;
    fn from_str(s: &str) -> Result<Auth, String> {
        match s.to_ascii_lowercase().as_str() {
            "trust" => Ok(Auth::Trust),
            "scram" | "scram-sha-256" => Ok(Auth::Scram),
            _ => Err(format!("unknown authentication method \"{s}\" (trust or scram-sha-256)")),
        }
    }
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The largest message a client may send (bytes); a larger one ends the
    /// connection with 54000.
    pub max_message_bytes: usize,
    /// Trust (no password) connections from any address, not only loopback.
    pub trust_remote: bool,
    /// The most client connections at once; one more gets 53300 (FATAL).
    pub max_connections: u64,
    pub auth: Auth,
    /// TLS: SSLRequest is answered 'S' when set ('N' otherwise).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Clients not on loopback must use TLS (28000 otherwise).
    pub require_tls: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            trust_remote: false,
            max_connections: 100,
            auth: Auth::Trust,
            tls: None,
            require_tls: false,
        }
    }
}

/// Resolves once `shutdown` is true (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// A PostgreSQL protocol server over one database.
pub struct Server {
    db: Database,
    config: Config,
    /// Connections open now.
    connections: AtomicU64,
    /// The running sessions' cancel keys: pid → (secret, canceller).
    cancels: parking_lot::Mutex<HashMap<i32, (i32, Canceller)>>,
    /// Keys the mock SCRAM verifiers of roles that cannot log in with a
    /// password (random per process).
    mock_secret: [u8; 32],
}

impl Server {
    pub fn new(db: Database, config: Config) -> Arc<Server> {
        Arc::new(Server {
            db,
            config,
            connections: AtomicU64::new(0),
            cancels: parking_lot::Mutex::default(),
            mock_secret: {
                use ring::rand::SecureRandom;
                let mut k = [0u8; 32];
                // Without randomness the mock salts are still per name;
                // only their unpredictability across restarts is lost.
                let _ = ring::rand::SystemRandom::new().fill(&mut k);
                k
            },
        })
    }

    /// A CancelRequest: cancels the statement session `pid` is running if
    /// `secret` is its key (else nothing, as PostgreSQL does).
    fn cancel(&self, pid: i32, secret: i32) {
        if let Some((s, c)) = self.cancels.lock().get(&pid)
            && *s == secret
        {
            c.cancel();
        }
    }

    /// How many client connections are open.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Accepts connections until `shutdown` becomes true, then waits for
    /// the open ones to finish (each ends after its running statement).
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        mut shutdown: watch::Receiver<bool>,
    ) -> io::Result<()> {
        let mut tasks = JoinSet::new();
        let stop = shutdown.clone();
        loop {
            tokio::select! {
                r = listener.accept() => match r {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        let server = self.clone();
                        let stop = stop.clone();
                        tasks.spawn(async move {
                            let n = server.connections.fetch_add(1, Ordering::Relaxed) + 1;
                            // One id space with the engine's sessions
                            // (pg_backend_pid, pg_stat_activity).
                            let pid = server.db.next_pid();
                            let full = n > server.config.max_connections;
                            if let Err(e) = conn::run(&server, stream, peer, pid, stop, full).await {
                                tracing::debug!(%peer, "connection ended: {e}");
                            }
                            server.cancels.lock().remove(&pid);
                            server.connections.fetch_sub(1, Ordering::Relaxed);
                        });
                    }
                    // Out of file descriptors and the like: wait, go on.
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
                _ = stopped(&mut shutdown) => break,
            }
            while tasks.try_join_next().is_some() {}
        }
        drop(listener);
        while let Some(r) = tasks.join_next().await {
            if let Err(e) = r {
                tracing::error!("connection task failed: {e}");
            }
        }
        Ok(())
    }
}
