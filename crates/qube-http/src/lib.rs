//! QubeDB's HTTP API (axum), next to the PostgreSQL wire server and over
//! the same `Database`.
//!
//! | route | answer |
//! |---|---|
//! | `POST /v1/query` | `{"sql": "...", "params": [...], "database": "qubedb"}` → `{"results": [{"columns": [{"name","type"}], "rows": [[...]], "tag": "SELECT 2"}, ...]}` |
//! | `GET /health` | `{"status":"ok"}` |
//! | `GET /metrics` | Prometheus text format (see `metrics`) |
//! | `GET /openapi.json` | OpenAPI 3.1 document of these routes (`openapi`) |
//!
//! - **One result per statement**, always in `results` (also for one
//!   statement), in order. Values are converted as `json` describes
//!   (bigint and numeric as strings, json/jsonb embedded).
//! - **Each request is a fresh session** on the blocking pool: several
//!   statements share one implicit transaction, as a PostgreSQL simple
//!   query does (BEGIN … COMMIT inside work as usual); a
//!   transaction left open at the end is rolled back. The first failing
//!   statement stops the request: the answer is the error alone, and the
//!   statements before it stay committed (`error.statement` says which
//!   one failed, 0-based).
//! - **Errors** are `{"error": {"code": SQLSTATE, "message": …,
//!   "detail": …, "hint": … (PostgreSQL's DETAIL and HINT, if any),
//!   "position": 1-based character offset in sql (if known), "statement":
//!   index}}`. HTTP status: 400 for errors in the request (SQL errors,
//!   malformed JSON: code 08P01), 409 for serialization failures and
//!   deadlocks (40001, 40P01: retry), 413 for a body over
//!   `Config::max_body_bytes` (54000), 404 for unknown routes, 500 for
//!   internal errors (SQLSTATE classes XX and 58).

mod json;
pub mod metrics;
mod openapi;

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use qube_common::Error;
use qube_sql::{Column, Database};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub use json::{param, write_value};
pub use metrics::Metrics;

/// Server settings.
#[derive(Clone)]
pub struct Config {
    /// The largest request body accepted (bytes); larger ones get 413.
    pub max_body_bytes: usize,
    /// Reports the PostgreSQL wire connections open, for `/metrics`.
    pub pg_connections: Option<Arc<dyn Fn() -> u64 + Send + Sync>>,
}

impl Default for Config {
    fn default() -> Config {
        Config { max_body_bytes: 16 << 20, pg_connections: None }
    }
}

struct AppState {
    db: Database,
    config: Config,
    metrics: Arc<Metrics>,
}

type Shared = Arc<AppState>;

/// The routes, over `db`; `metrics` is where they count.
pub fn router(db: Database, config: Config, metrics: Arc<Metrics>) -> Router {
    let limit = config.max_body_bytes;
    Router::new()
        .route("/v1/query", post(query))
        .route("/health", get(health))
        .route("/metrics", get(render_metrics))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(Arc::new(AppState { db, config, metrics }))
}

/// Serves HTTP on `listener` until `shutdown` becomes true; then stops
/// accepting, lets requests in flight finish and returns.
pub async fn serve(
    listener: TcpListener,
    db: Database,
    config: Config,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let app = router(db, config, metrics.clone());
    let listener = Counted { inner: listener, metrics };
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await
}

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `{"error": {...}}` with the status its SQLSTATE calls for.
fn error_response(e: &Error, statement: Option<usize>) -> Response {
    let code = e.sqlstate();
    let status = match code {
        c if c.starts_with("XX") || c.starts_with("58") => StatusCode::INTERNAL_SERVER_ERROR,
        "40001" | "40P01" => StatusCode::CONFLICT,
        _ => StatusCode::BAD_REQUEST,
    };
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!("HTTP query failed: {e}");
    }
    let mut body = format!("{{\"error\":{{\"code\":\"{code}\",\"message\":");
    json::escape(&e.to_string(), &mut body);
    if let Some(d) = e.detail() {
        body.push_str(",\"detail\":");
        json::escape(d, &mut body);
    }
    if let Some(h) = e.hint() {
        body.push_str(",\"hint\":");
        json::escape(h, &mut body);
    }
    if let Some(p) = e.position() {
        body.push_str(&format!(",\"position\":{p}"));
    }
    if let Some(i) = statement {
        body.push_str(&format!(",\"statement\":{i}"));
    }
    body.push_str("}}");
    json_response(status, body)
}

fn plain_error(status: StatusCode, code: &'static str, message: String) -> Response {
    let mut r = error_response(&Error::user(code, message), None);
    *r.status_mut() = status;
    r
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryRequest {
    sql: String,
    #[serde(default)]
    params: Vec<serde_json::Value>,
    database: Option<String>,
}

async fn query(State(st): State<Shared>, body: Result<Bytes, BytesRejection>) -> Response {
    st.metrics.http_requests_total.fetch_add(1, Relaxed);
    let body = match body {
        Ok(b) => b,
        Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return plain_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "54000",
                format!(
                    "request body is larger than the limit of {} bytes",
                    st.config.max_body_bytes
                ),
            );
        }
        Err(r) => {
            return plain_error(r.status(), "08P01", format!("cannot read the request body: {r}"));
        }
    };
    let req: QueryRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return plain_error(
                StatusCode::BAD_REQUEST,
                "08P01",
                format!(
                    "invalid JSON request body: {e} (expected {{\"sql\": string, \"params\": \
                     array, \"database\": string}})"
                ),
            );
        }
    };
    let st2 = st.clone();
    match tokio::task::spawn_blocking(move || run(&st2, &req)).await {
        Ok(Ok(body)) => json_response(StatusCode::OK, body),
        Ok(Err((e, i))) => error_response(&e, i),
        Err(e) => {
            tracing::error!("an HTTP query panicked: {e}");
            error_response(&Error::Internal("the query failed unexpectedly".into()), None)
        }
    }
}

/// Runs a request's statements in a new session (on a blocking thread);
/// the response body, or the error and the failing statement's index.
fn run(st: &AppState, req: &QueryRequest) -> Result<String, (Error, Option<usize>)> {
    let mut session = st
        .db
        .open_session(qube_sql::SessionOptions {
            database: req.database.clone().unwrap_or_else(|| "qubedb".into()),
            interface: qube_sql::metrics::Interface::Http,
            ..qube_sql::SessionOptions::default()
        })
        .map_err(|e| (e, None))?;
    let prepared = session.prepare(&req.sql).map_err(|e| (e, None))?;
    let params: Vec<_> = req.params.iter().map(param).collect();
    let mut out = String::from("{\"results\":[");
    // Several statements share an implicit transaction, as a simple Query
    // message does in PostgreSQL: an error rolls all of them back.
    let implicit = prepared.len() > 1;
    if implicit {
        session.begin_implicit();
    }
    for i in 0..prepared.len() {
        if i > 0 {
            out.push(',');
        }
        // Rows are written as the executor produces them, on this thread
        // (timestamptz text depends on the statement's zone).
        let mut rows = String::new();
        let mut count = 0u64;
        let mut cols: Option<Vec<Column>> = None;
        let r = session.execute_prepared_nth_streaming(
            &prepared,
            i,
            &params,
            &mut |columns: &[Column], row| {
                if cols.is_none() {
                    cols = Some(columns.to_vec());
                }
                write_row(row, count > 0, &mut rows);
                count += 1;
                Ok(())
            },
        );
        // The session counts the statement (`qube_sql::metrics`).
        let result = match r {
            Ok(r) => r,
            Err(e) => {
                if implicit {
                    let _ = session.end_implicit(false);
                }
                return Err((e, Some(i)));
            }
        };
        // A non-streamed result (a command) may still carry rows.
        let columns = cols.unwrap_or_else(|| result.columns.to_vec());
        for row in &result.rows {
            write_row(row, count > 0, &mut rows);
            count += 1;
        }
        out.push_str("{\"columns\":[");
        for (j, c) in columns.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            out.push_str("{\"name\":");
            json::escape(&c.name, &mut out);
            out.push_str(",\"type\":");
            json::escape(&c.data_type.sql_name(), &mut out);
            out.push('}');
        }
        out.push_str("],\"rows\":[");
        out.push_str(&rows);
        out.push_str("],\"tag\":");
        json::escape(&result.tag, &mut out);
        out.push('}');
    }
    out.push_str("]}");
    if implicit {
        session.end_implicit(true).map_err(|e| (e, None))?;
    }
    // Dropping the session rolls back a transaction left open.
    drop(session);
    Ok(out)
}

/// One row as a JSON array, after a comma if it is not the first.
fn write_row(row: &[qube_sql::Value], comma: bool, out: &mut String) {
    if comma {
        out.push(',');
    }
    out.push('[');
    for (j, v) in row.iter().enumerate() {
        if j > 0 {
            out.push(',');
        }
        write_value(v, out);
    }
    out.push(']');
}

async fn health() -> Response {
    json_response(StatusCode::OK, "{\"status\":\"ok\"}".into())
}

async fn render_metrics(State(st): State<Shared>) -> Response {
    let pg = st.config.pg_connections.as_ref().map(|f| f());
    let st2 = st.clone();
    match tokio::task::spawn_blocking(move || st2.metrics.render(&st2.db, pg)).await {
        Ok(text) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
            text,
        )
            .into_response(),
        Err(e) => error_response(&Error::Internal(format!("metrics failed: {e}")), None),
    }
}

async fn openapi() -> Response {
    json_response(StatusCode::OK, openapi::document())
}

async fn not_found() -> Response {
    plain_error(StatusCode::NOT_FOUND, "08P01", "no such route".into())
}

/// The listener, counting connections for `/metrics`.
struct Counted {
    inner: TcpListener,
    metrics: Arc<Metrics>,
}

/// A connection that counts itself out when dropped.
struct CountedStream {
    inner: TcpStream,
    metrics: Arc<Metrics>,
}

impl Drop for CountedStream {
    fn drop(&mut self) {
        self.metrics.http_connections_open.fetch_sub(1, Relaxed);
    }
}

impl axum::serve::Listener for Counted {
    type Io = CountedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (CountedStream, SocketAddr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    self.metrics.http_connections_open.fetch_add(1, Relaxed);
                    self.metrics.http_connections_total.fetch_add(1, Relaxed);
                    return (CountedStream { inner: stream, metrics: self.metrics.clone() }, addr);
                }
                // Out of file descriptors and the like: wait, go on.
                Err(e) => {
                    tracing::warn!("HTTP accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

impl AsyncRead for CountedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
