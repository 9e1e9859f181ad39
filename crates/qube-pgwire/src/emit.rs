//! The backend messages a statement produces, written on the thread that
//! runs it: result rows are encoded as the executor hands them over and
//! sent to the connection task in chunks.
//!
//! COPY runs here too. TO STDOUT: CopyOutResponse, one CopyData per line
//! as the engine encodes them, CopyDone. FROM STDIN: CopyInResponse, then
//! the statement's thread asks the connection task for data
//! (`Outgoing::NeedCopyData`, answered on a oneshot channel): the task
//! reads frames from the socket only when asked, gathering CopyData into
//! one `CopyChunk` of `COPY_BATCH` bytes, or less at
//! CopyDone, CopyFail, a message not allowed in copy-in (08P01: the COPY
//! fails, the connection goes on), or the client's disconnect (the COPY
//! fails and its transaction rolls back). Since nothing is read unasked,
//! the messages after a COPY that failed early reach the ordinary loop,
//! which ignores stray CopyData/CopyDone/CopyFail as PostgreSQL does.

use bytes::{BufMut, BytesMut};
use pgwire::messages::PgWireBackendMessage as B;
use pgwire::messages::response::{EmptyQueryResponse, ErrorResponse, NoticeResponse};
use pgwire::messages::startup::ParameterStatus;
use qube_common::types::DataType;
use qube_common::{Error, Result};
use qube_sql::{Column, QueryResult, Session, Value};
use tokio::sync::{mpsc, oneshot};

use crate::types;

/// Bytes gathered before they go to the socket.
pub const CHUNK: usize = 64 * 1024;

/// CopyData bytes gathered into one chunk for the engine, at most.
pub const COPY_BATCH: usize = 256 * 1024;

/// What a statement's thread sends the connection task.
pub enum Outgoing {
    /// Bytes for the socket.
    Bytes(BytesMut),
    /// COPY FROM STDIN wants the next data from the client.
    NeedCopyData(oneshot::Sender<CopyChunk>),
}

/// How a batch of copy-in data ends.
#[derive(Debug)]
pub enum CopyEnd {
    /// CopyDone.
    Done,
    /// CopyFail with the client's message.
    Fail(String),
    /// Another message than CopyData/CopyDone/CopyFail/Flush/Sync (its
    /// type byte): a protocol violation that fails the COPY.
    Unexpected(u8),
    /// The client disconnected, or sent a frame that ends the connection.
    Gone,
}

/// Data of several CopyData messages, and what came after it, if the copy
/// ended.
#[derive(Debug)]
pub struct CopyChunk {
    pub data: BytesMut,
    pub end: Option<CopyEnd>,
}

/// Appends a backend message. Only oversized messages fail to encode
/// (pgwire's limits); error texts are cut short before, so this drops
/// nothing in practice.
pub fn put(out: &mut BytesMut, m: B) {
    if let Err(e) = m.encode(out) {
        tracing::warn!("could not encode a backend message: {e}");
    }
}

/// Appends CommandComplete with `tag`, written directly: it ends every
/// statement, and pgwire's message takes an owned copy of the tag.
pub fn command_complete(out: &mut BytesMut, tag: &str) {
    out.put_u8(b'C');
    out.put_i32((4 + tag.len() + 1) as i32);
    out.put_slice(tag.as_bytes());
    out.put_u8(0);
}

/// An ErrorResponse's fields for an engine error.
pub fn error_response(e: &Error, severity: &str) -> ErrorResponse {
    let mut message = e.to_string();
    if message.len() > 8000 {
        let mut end = 8000;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    let mut fields = vec![
        (b'S', severity.to_string()),
        (b'V', severity.to_string()),
        (b'C', e.sqlstate().to_string()),
        (b'M', message),
    ];
    if let Some(d) = e.detail() {
        fields.push((b'D', d.to_string()));
    }
    if let Some(h) = e.hint() {
        fields.push((b'H', h.to_string()));
    }
    if let Some(p) = e.position() {
        fields.push((b'P', p.to_string()));
    }
    if let Some(c) = e.context() {
        fields.push((b'W', c.to_string()));
    }
    ErrorResponse::new(fields)
}

/// A NoticeResponse's fields for an engine notice.
pub fn notice_response(n: &qube_sql::Notice) -> NoticeResponse {
    let severity = n.severity.as_str();
    let mut fields = vec![
        (b'S', severity.to_string()),
        (b'V', severity.to_string()),
        (b'C', n.sqlstate.to_string()),
        (b'M', n.message.clone()),
    ];
    if let Some(d) = &n.detail {
        fields.push((b'D', d.clone()));
    }
    if let Some(h) = &n.hint {
        fields.push((b'H', h.clone()));
    }
    NoticeResponse::new(fields)
}

/// Appends RowDescription: one field per column, each in its format.
/// Written directly (pgwire's message would take a copy of every name):
/// the count, then per field its name, table oid, column number, type
/// oid, size, modifier and format code.
pub fn row_description(out: &mut BytesMut, cols: &[Column], formats: &[i16]) {
    let len = 4 + 2 + cols.iter().map(|c| c.name.len() + 1 + 18).sum::<usize>();
    let Ok(len) = i32::try_from(len) else {
        tracing::warn!("could not encode a backend message: RowDescription of {len} bytes");
        return;
    };
    out.reserve(len as usize + 1);
    out.put_u8(b'T');
    out.put_i32(len);
    out.put_i16(cols.len() as i16);
    for (i, c) in cols.iter().enumerate() {
        out.put_slice(c.name.as_bytes());
        out.put_u8(0);
        out.put_i32(c.table_oid as i32);
        out.put_i16(c.column_id);
        out.put_u32(types::oid(&c.data_type));
        out.put_i16(types::type_size(&c.data_type));
        out.put_i32(types::type_modifier(&c.data_type));
        out.put_i16(format_of(formats, i));
    }
}

/// Bind's result format codes: none (all text), one for all, or one each.
pub fn format_of(formats: &[i16], i: usize) -> i16 {
    match formats {
        [] => 0,
        [f] => *f,
        fs => fs.get(i).copied().unwrap_or(0),
    }
}

/// Writes one statement's messages; lives on the statement's thread.
/// Without a channel (a statement run inline on the connection's task,
/// see conn.rs) everything stays in `buf` for the task to write.
pub struct Emitter {
    pub buf: BytesMut,
    tx: Option<mpsc::Sender<Outgoing>>,
    /// The TimeZone the client was last told (ParameterStatus).
    pub zone_reported: String,
    /// Send RowDescription before the first row (simple query).
    describe: bool,
    described: bool,
    formats: Vec<i16>,
    /// Rows kept for a portal with a row limit, one DataRow each.
    pub collected: Option<Vec<BytesMut>>,
    pub rows: u64,
}

impl Emitter {
    /// An emitter appending to `buf` (what the connection had not
    /// written yet, so that it goes out first); `tx` None for a statement
    /// run inline.
    pub fn new(
        mut buf: BytesMut,
        tx: Option<mpsc::Sender<Outgoing>>,
        zone_reported: String,
    ) -> Emitter {
        if tx.is_some() {
            buf.reserve(CHUNK + 8192);
        }
        Emitter {
            buf,
            tx,
            zone_reported,
            describe: false,
            described: false,
            formats: Vec::new(),
            collected: None,
            rows: 0,
        }
    }

    /// Starts a statement's output.
    pub fn begin(&mut self, describe: bool, formats: Vec<i16>, collect: bool) {
        self.describe = describe;
        self.described = false;
        self.formats = formats;
        self.collected = collect.then(Vec::new);
        self.rows = 0;
    }

    pub fn put(&mut self, m: B) {
        put(&mut self.buf, m);
    }

    /// Sends what is gathered if it is a chunk's worth; fails when the
    /// client is gone.
    fn maybe_send(&mut self) -> Result<()> {
        if self.buf.len() >= CHUNK && self.tx.is_some() {
            self.send()?;
        }
        Ok(())
    }

    /// Sends what is gathered now (inline: keeps it).
    fn send(&mut self) -> Result<()> {
        let Some(tx) = &self.tx else { return Ok(()) };
        let chunk = self.buf.split();
        tx.blocking_send(Outgoing::Bytes(chunk))
            .map_err(|_| Error::user("08006", "connection to client lost"))
    }

    /// CopyInResponse or CopyOutResponse (`kind` G or H): text format,
    /// `columns` text columns.
    fn copy_response(&mut self, kind: u8, columns: usize) {
        let n = columns.min(i16::MAX as usize);
        self.buf.put_u8(kind);
        self.buf.put_i32((4 + 1 + 2 + 2 * n) as i32);
        self.buf.put_i8(0);
        self.buf.put_i16(n as i16);
        for _ in 0..n {
            self.buf.put_i16(0);
        }
    }

    /// Starts COPY TO STDOUT.
    pub fn copy_out_start(&mut self, columns: usize) {
        self.copy_response(b'H', columns);
    }

    /// One CopyData message of COPY TO STDOUT.
    pub fn copy_data(&mut self, line: &[u8]) -> Result<()> {
        let len =
            i32::try_from(line.len() + 4).map_err(|_| Error::user("54000", "row too large"))?;
        self.buf.put_u8(b'd');
        self.buf.put_i32(len);
        self.buf.extend_from_slice(line);
        self.rows += 1;
        self.maybe_send()
    }

    /// The end of COPY TO STDOUT's data.
    pub fn copy_done(&mut self) {
        self.buf.put_u8(b'c');
        self.buf.put_i32(4);
    }

    /// Starts COPY FROM STDIN: CopyInResponse goes out now.
    pub fn copy_in_start(&mut self, columns: usize) -> Result<()> {
        self.copy_response(b'G', columns);
        self.send()
    }

    /// The next data of COPY FROM STDIN, read from the client when asked.
    pub fn copy_in_next(&mut self) -> CopyChunk {
        let gone = || CopyChunk { data: BytesMut::new(), end: Some(CopyEnd::Gone) };
        if !self.buf.is_empty() && self.send().is_err() {
            return gone();
        }
        // Inline statements never copy (conn.rs runs COPY on a blocking
        // thread): without a channel there is no client to read from.
        let Some(out) = &self.tx else { return gone() };
        let (tx, rx) = oneshot::channel();
        if out.blocking_send(Outgoing::NeedCopyData(tx)).is_err() {
            return gone();
        }
        rx.blocking_recv().unwrap_or_else(|_| gone())
    }

    /// One result row.
    pub fn row(&mut self, cols: &[Column], row: &[Value]) -> Result<()> {
        if self.describe && !self.described {
            self.described = true;
            row_description(&mut self.buf, cols, &self.formats);
        }
        match &mut self.collected {
            Some(c) => {
                let mut b = BytesMut::new();
                encode_row(&mut b, cols, row, &self.formats)?;
                c.push(b);
            }
            None => encode_row(&mut self.buf, cols, row, &self.formats)?,
        }
        self.rows += 1;
        self.maybe_send()
    }

    /// The end of a statement: its rows that were not streamed (RETURNING),
    /// its description if no row carried it, and CommandComplete (unless
    /// the rows are collected for a portal: the caller completes then).
    pub fn complete(&mut self, r: QueryResult) -> Result<String> {
        let QueryResult { columns, rows, tag } = r;
        if self.describe && !self.described && !columns.is_empty() {
            self.described = true;
            row_description(&mut self.buf, &columns, &self.formats);
        }
        for row in &rows {
            self.row(&columns, row)?;
        }
        if self.collected.is_none() {
            command_complete(&mut self.buf, &tag);
        }
        Ok(tag)
    }

    pub fn error(&mut self, e: &Error) {
        if matches!(e, Error::Internal(_) | Error::Corruption { .. } | Error::Io { .. }) {
            tracing::warn!("statement failed: {e}");
        }
        if e.sqlstate() == "57P01" {
            // The session was terminated: the connection ends with this
            // error as FATAL (conn.rs), not as an ERROR first.
            return;
        }
        self.put(B::ErrorResponse(error_response(e, "ERROR")));
    }

    /// NoticeResponse for each notice the statement raised, before its
    /// CommandComplete or ErrorResponse.
    pub fn notices(&mut self, s: &mut Session) {
        for n in s.take_notices() {
            self.put(B::NoticeResponse(notice_response(&n)));
        }
    }

    pub fn empty_query(&mut self) {
        self.put(B::EmptyQueryResponse(EmptyQueryResponse::new()));
    }

    /// ParameterStatus for a TimeZone the statement changed.
    pub fn report_zone(&mut self, s: &Session) {
        if s.time_zone_name() != self.zone_reported {
            self.zone_reported = s.time_zone_name().to_string();
            let z = self.zone_reported.clone();
            self.put(B::ParameterStatus(ParameterStatus::new("TimeZone".into(), z)));
        }
    }
}

/// Appends one DataRow message.
fn encode_row(out: &mut BytesMut, cols: &[Column], row: &[Value], formats: &[i16]) -> Result<()> {
    let start = out.len();
    out.put_u8(b'D');
    out.put_i32(0);
    out.put_i16(row.len() as i16);
    for (i, v) in row.iter().enumerate() {
        if v.is_null() {
            out.put_i32(-1);
            continue;
        }
        let at = out.len();
        out.put_i32(0);
        if format_of(formats, i) == 1 {
            let t = cols.get(i).map(|c| &c.data_type).ok_or_else(|| {
                Error::Internal(format!("row of {} values for {} columns", row.len(), cols.len()))
            })?;
            if let Err(e) = types::write_binary(v, t, out) {
                out.truncate(start);
                return Err(e);
            }
        } else if let (Some(DataType::Int2Vector), Value::Array(items)) =
            (cols.get(i).map(|c| &c.data_type), v)
        {
            types::write_int2vector_text(items, out);
        } else {
            types::write_text(v, out);
        }
        let len = out.len() - at - 4;
        let len = i32::try_from(len).map_err(|_| Error::user("54000", "value too large"))?;
        out[at..at + 4].copy_from_slice(&len.to_be_bytes());
    }
    let len =
        i32::try_from(out.len() - start - 1).map_err(|_| Error::user("54000", "row too large"))?;
    out[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
    Ok(())
}
