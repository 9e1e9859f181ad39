//! COPY's data formats (PostgreSQL's text and CSV) and its two
//! directions, both streaming.
//!
//! **FROM** (`Loader`): bytes arrive in chunks whose boundaries mean
//! nothing (a line may be split anywhere, also inside a CSV quoted field).
//! A chunk is cut into records; a record's bytes are decoded into one
//! reused buffer with a span per field, each field becomes a value of its
//! column's type, and the row goes through the same checks and writes as
//! an INSERT's row (defaults, casts, NOT NULL, CHECK, foreign keys, unique
//! and other indexes: `dml::Target`). Only an incomplete last record is
//! kept between chunks.
//!
//! ```text
//! chunk: "1\tab\\tc\n2\t\\N\n3\tx"      pending after it: "3\tx"
//!   record "1\tab\\tc"  → decoded "1" "ab\tc"  → [Int4(1), Text("ab\tc")]
//!   record "2\t\\N"     → decoded "2" NULL     → [Int4(2), Null]
//! ```
//!
//! Text format, as PostgreSQL: fields split at the delimiter (tab), the
//! NULL string (`\N`) compared with the raw field before de-escaping;
//! `\b \f \n \r \t \v`, `\ooo` (octal, 1–3 digits), `\xhh` (hex, 1–2
//! digits), and a backslash before any other character is that character;
//! a line `\.` ends the data; lines end in `\n` or, if the first one does,
//! `\r\n`. CSV: RFC 4180 with PostgreSQL's QUOTE, ESCAPE, NULL (an
//! unquoted field equal to it; FORCE_NOT_NULL / FORCE_NULL change that) and
//! HEADER (skipped, or checked with HEADER MATCH). Errors carry PostgreSQL's
//! context line (`COPY t, line 3, column a: "x"`); a wrong number of fields
//! is 22P04. BINARY is not built (0A000).
//!
//! **Two threads for a large COPY FROM.** Parsing (`Parser`: records,
//! fields, escapes, UTF-8, numbers) needs no transaction; inserting
//! (`Loader`: defaults, checks, indexes, the write set) does. Once a COPY
//! has parsed 1 MiB on the statement's thread, and the machine has a
//! second core, the parser moves to a thread of its own (`Pipe`):
//!
//! ```text
//! statement thread: write(chunk) ──chunks (≤ 4 waiting)──▶ parser thread
//!                   inserts rows ◀──batches of 256 rows── parses records
//!                   emptied batches ──────spare──────────▶ refilled in place
//! ```
//!
//! Batches come back in the order of the data and carry each row's line
//! number, so the rows are inserted, and their errors met, exactly as on
//! one thread: a parse error reaches the statement's thread in the batch
//! after the rows before it, and an insert error in an earlier row comes
//! first. Emptied batches go back to the parser with their values, so a
//! text column's strings are overwritten rather than allocated per row.
//! Dropping the `Loader` (an error, a cancel, a lost client) drops the
//! channel, and the parser's thread ends at its next chunk.
//!
//! **TO** (`copy_out`): the table's columns (or the query) run as a
//! streaming query; each row is encoded into one reused line buffer and
//! handed to the caller, so the table is never held in memory.

use std::fmt::Write as _;
use std::sync::Arc;

use qube_common::types::DataType;
use qube_common::{Error, Result};
use qube_txn::Transaction;

use super::Ctx;
use super::dml::Target;
use crate::names::SearchPath;
use crate::plan::bind::Binder;
use crate::session::Shared;
use crate::types::Value;
use crate::types::cast;
use crate::utility::{Columns, CopyFormat, CopyOptions, CopySource, CopyStmt};

/// How many rowids a COPY takes from the table's counter at a time.
const ROWID_BATCH: u64 = 1024;

/// One decoded field: a span of `Loader::decoded`, or NULL.
#[derive(Clone, Copy)]
enum Field {
    Null,
    /// Start and end in the decoded buffer.
    Value(usize, usize),
}

/// The parsing half of a COPY FROM: bytes to rows of values, with no
/// transaction, so that it can run on a thread of its own (`Pipe`).
struct Parser {
    opts: CopyOptions,
    /// The column each field goes to.
    targets: Vec<usize>,
    /// Every column's type and name (the row is the table's width).
    types: Vec<DataType>,
    names: Vec<String>,
    table: String,
    /// Per field: FORCE_NOT_NULL, FORCE_NULL.
    force_not_null: Vec<bool>,
    force_null: Vec<bool>,
    /// An incomplete last record, and the CSV quote state at its end.
    pending: Vec<u8>,
    pending_in_quote: bool,
    /// The number of the record being read (1-based; the header counts).
    line: u64,
    /// Lines end in `\r\n` (decided by the first line, text format).
    crlf: Option<bool>,
    /// `\.` was seen: the rest is ignored.
    ended: bool,
    decoded: Vec<u8>,
    fields: Vec<Field>,
}

/// A COPY FROM in progress (see the module doc).
pub struct Loader {
    shared: Arc<Shared>,
    path: Arc<SearchPath>,
    t: Target,
    /// The parser, while it runs on the statement's thread.
    parser: Option<Box<Parser>>,
    /// The parser's thread, once the data proved large (`PIPE_AFTER`).
    pipe: Option<Pipe>,
    /// Bytes parsed on the statement's thread so far.
    fed: usize,
    /// The row being inserted, reused from row to row.
    row: Vec<Value>,
    /// Per column: a field of each line goes to it (else its default).
    given: Vec<bool>,
    buf: Vec<u8>,
    /// Rowids taken and not yet used: next, and how many are left.
    next_rowid: u64,
    rowids_left: u64,
    /// Rows inserted.
    pub count: u64,
}

/// Data parsed on the statement's thread before the rest goes to a
/// parser thread of its own: a COPY this small is over before a thread
/// would pay for itself.
const PIPE_AFTER: usize = 1 << 20;
/// Rows per batch handed from the parser's thread to the statement's.
const BATCH_ROWS: usize = 256;
/// Chunks that may wait for the parser's thread (each up to the wire's
/// 256 KiB): the bound on the memory a fast client can make it hold.
const PIPE_CHUNKS: usize = 4;
/// The largest chunk sent to the parser's thread (a larger write is cut).
const PIPE_PIECE: usize = 256 << 10;

/// What the statement's thread sends the parser's.
enum ToParser {
    Chunk(Vec<u8>),
    /// The end of the data: parse the last line, then stop.
    Finish,
}

/// Parsed rows, `n` of them, each `width` values wide in `rows`, with
/// their line numbers. `end`: the parser stopped after these rows, at the
/// end of the data (`Ok`) or at a record it could not parse (`Err`).
/// Emptied batches go back to the parser with their values, so that text
/// values keep their buffers.
struct Batch {
    rows: Vec<Value>,
    lines: Vec<u64>,
    n: usize,
    end: Option<Result<()>>,
}

/// The parser's thread and its channels. Rows come back in the order of
/// the data, so the statement's thread inserts them, and meets their
/// errors, exactly as if it had parsed them itself; it meets a parse error
/// after the rows before it, as it would have.
struct Pipe {
    chunks: Option<std::sync::mpsc::SyncSender<ToParser>>,
    batches: std::sync::mpsc::Receiver<Batch>,
    spare: std::sync::mpsc::Sender<Batch>,
    /// Emptied chunk buffers, back from the parser's thread.
    spare_chunks: std::sync::mpsc::Receiver<Vec<u8>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Pipe {
    fn drop(&mut self) {
        // Without its sender the parser's thread ends at its next chunk.
        self.chunks = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn bad_data(msg: impl Into<String>) -> Error {
    Error::user("22P04", msg)
}

/// A name part quoted for SQL text.
fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn object_name(parts: &[String]) -> sqlparser::ast::ObjectName {
    sqlparser::ast::ObjectName::from(
        parts.iter().map(|p| sqlparser::ast::Ident::with_quote('"', p.clone())).collect::<Vec<_>>(),
    )
}

/// Positions of the named columns (all, in order, when none are named).
fn column_positions(t: &Target, cols: Option<&Vec<String>>) -> Result<Vec<usize>> {
    let Some(cols) = cols else { return Ok((0..t.types.len()).collect()) };
    let mut out = Vec::with_capacity(cols.len());
    for c in cols {
        let pos = t.table.def.columns.iter().position(|col| &col.name == c).ok_or_else(|| {
            Error::user(
                "42703",
                format!("column \"{c}\" of relation \"{}\" does not exist", t.table.name),
            )
        })?;
        if out.contains(&pos) {
            return Err(Error::user("42701", format!("column \"{c}\" specified more than once")));
        }
        out.push(pos);
    }
    Ok(out)
}

/// Per field, whether a FORCE_* option names its column.
fn force_flags(
    which: &Columns,
    option: &str,
    names: &[String],
    targets: &[usize],
    t: &Target,
) -> Result<Vec<bool>> {
    match which {
        Columns::None => Ok(vec![false; targets.len()]),
        Columns::All => Ok(vec![true; targets.len()]),
        Columns::Some(cols) => {
            let mut flags = vec![false; targets.len()];
            for c in cols {
                let Some(k) = targets.iter().position(|&p| &names[p] == c) else {
                    let exists = t.table.def.columns.iter().any(|col| &col.name == c);
                    return Err(if exists {
                        Error::user(
                            "42P10",
                            format!("{option} column \"{c}\" not referenced by COPY"),
                        )
                    } else {
                        Error::user("42703", format!("column \"{c}\" does not exist"))
                    });
                };
                flags[k] = true;
            }
            Ok(flags)
        }
    }
}

impl Loader {
    /// Binds the target table of a COPY FROM.
    pub fn new(
        shared: Arc<Shared>,
        txn: &mut Transaction,
        path: Arc<SearchPath>,
        stmt: &CopyStmt,
    ) -> Result<Loader> {
        let CopySource::Table { name, columns } = &stmt.source else {
            return Err(Error::user("42601", "COPY (query) FROM is not allowed"));
        };
        if stmt.options.format == CopyFormat::Binary {
            return Err(Error::user("0A000", "COPY FROM in BINARY format is not supported"));
        }
        let mut b = Binder::new(&shared.catalog, txn, &path);
        let t = super::dml::target(&mut b, &object_name(name))?;
        drop(b);
        let targets = column_positions(&t, columns.as_ref())?;
        let names: Vec<String> = t.table.def.columns.iter().map(|c| c.name.clone()).collect();
        let force_not_null =
            force_flags(&stmt.options.force_not_null, "FORCE_NOT_NULL", &names, &targets, &t)?;
        let force_null = force_flags(&stmt.options.force_null, "FORCE_NULL", &names, &targets, &t)?;
        let ncols = t.types.len();
        let mut given = vec![false; ncols];
        for &c in &targets {
            given[c] = true;
        }
        let parser = Parser {
            opts: stmt.options.clone(),
            targets,
            types: t.types.to_vec(),
            names,
            table: t.table.name.clone(),
            force_not_null,
            force_null,
            pending: Vec::new(),
            pending_in_quote: false,
            line: 0,
            crlf: None,
            ended: false,
            decoded: Vec::new(),
            fields: Vec::new(),
        };
        Ok(Loader {
            shared,
            path,
            t,
            parser: Some(Box::new(parser)),
            pipe: None,
            fed: 0,
            row: vec![Value::Null; ncols],
            given,
            buf: Vec::new(),
            next_rowid: 0,
            rowids_left: 0,
            count: 0,
        })
    }

    /// How many columns each line carries.
    pub fn columns(&self) -> usize {
        self.given.iter().filter(|g| **g).count()
    }

    /// Takes a chunk of the data; the complete records in it are inserted
    /// now, or, once a parser thread runs, as soon as it has parsed them.
    pub fn write(&mut self, txn: &mut Transaction, params: &[Value], data: &[u8]) -> Result<()> {
        let shared = self.shared.clone();
        let path = self.path.clone();
        let mut ctx = Ctx::new(txn, params).with_env(&shared.catalog, &path);
        // In pieces, so that one large write also reaches the switch to the
        // parser's thread, and the chunks it is sent stay small.
        for piece in data.chunks(PIPE_PIECE) {
            self.write_piece(&mut ctx, piece)?;
        }
        Ok(())
    }

    fn write_piece(&mut self, ctx: &mut Ctx, data: &[u8]) -> Result<()> {
        if self.pipe.is_none() && self.fed >= PIPE_AFTER {
            self.start_pipe();
        }
        if let Some(pipe) = &self.pipe {
            let mut chunk = pipe.spare_chunks.try_recv().unwrap_or_default();
            chunk.clear();
            chunk.extend_from_slice(data);
            let sent = pipe.chunks.as_ref().is_some_and(|c| c.send(ToParser::Chunk(chunk)).is_ok());
            if !sent {
                // The parser stopped at an error: its last batch says which.
                return Err(self.drain_pipe(ctx).err().unwrap_or_else(|| self.pipe_lost()));
            }
            // The rows parsed meanwhile; the rest come with the next chunk.
            while let Some(Ok(batch)) = self.pipe.as_ref().map(|p| p.batches.try_recv()) {
                self.insert_batch(ctx, batch)?;
            }
            return Ok(());
        }
        self.fed += data.len();
        let Some(mut parser) = self.parser.take() else {
            return Err(Error::Internal("COPY parser missing".into()));
        };
        let r = parser.feed(data, &mut |p, rec| self.parse_and_insert(ctx, p, rec));
        self.parser = Some(parser);
        r
    }

    /// The end of the data: a last line without a newline is a record.
    pub fn finish(&mut self, txn: &mut Transaction, params: &[Value]) -> Result<u64> {
        let shared = self.shared.clone();
        let path = self.path.clone();
        let mut ctx = Ctx::new(txn, params).with_env(&shared.catalog, &path);
        if let Some(pipe) = &self.pipe {
            // If the parser already stopped at an error, the send fails and
            // its last batch says which.
            if let Some(c) = &pipe.chunks {
                let _ = c.send(ToParser::Finish);
            }
            return self.drain_pipe(&mut ctx).map(|()| self.count);
        }
        let Some(mut parser) = self.parser.take() else {
            return Err(Error::Internal("COPY parser missing".into()));
        };
        let r = parser.finish(&mut |p, rec| self.parse_and_insert(&mut ctx, p, rec));
        self.parser = Some(parser);
        r.map(|()| self.count)
    }

    /// One record parsed into the row and, if it is a data line, inserted.
    fn parse_and_insert(&mut self, ctx: &mut Ctx, p: &mut Parser, rec: &[u8]) -> Result<()> {
        if p.record(rec, &mut self.row)? {
            self.write_row(ctx).map_err(|e| e.with_context(p.context()))?;
        }
        Ok(())
    }

    /// Moves the parser to a thread of its own, if the machine has a
    /// second core and a thread can be had; else parsing stays here.
    fn start_pipe(&mut self) {
        if std::thread::available_parallelism().map_or(true, |n| n.get() < 2) {
            self.fed = 0;
            return;
        }
        let Some(parser) = self.parser.take() else { return };
        let (chunks_tx, chunks_rx) = std::sync::mpsc::sync_channel(PIPE_CHUNKS);
        let (batches_tx, batches_rx) = std::sync::mpsc::channel();
        let (spare_tx, spare_rx) = std::sync::mpsc::channel();
        let (spare_chunks_tx, spare_chunks_rx) = std::sync::mpsc::channel();
        let width = self.row.len();
        // `Builder::spawn` drops its closure if the thread cannot start:
        // the parser goes through a slot, so it stays here in that case.
        let slot = Arc::new(parking_lot::Mutex::new(Some(parser)));
        let theirs = slot.clone();
        let spawned = std::thread::Builder::new().name("qube-copy-parse".into()).spawn(move || {
            let Some(parser) = theirs.lock().take() else { return };
            parse_thread(parser, width, chunks_rx, batches_tx, spare_rx, spare_chunks_tx);
        });
        match spawned {
            Ok(thread) => {
                self.pipe = Some(Pipe {
                    chunks: Some(chunks_tx),
                    batches: batches_rx,
                    spare: spare_tx,
                    spare_chunks: spare_chunks_rx,
                    thread: Some(thread),
                });
            }
            Err(_) => {
                self.parser = slot.lock().take();
                self.fed = 0;
            }
        }
    }

    /// Inserts every batch still to come, up to the parser's last one:
    /// Ok at the end of the data, else the error that stopped it.
    fn drain_pipe(&mut self, ctx: &mut Ctx) -> Result<()> {
        loop {
            let batch = match self.pipe.as_ref().map(|p| p.batches.recv()) {
                Some(Ok(b)) => b,
                _ => return Err(self.pipe_lost()),
            };
            if self.insert_batch(ctx, batch)? {
                return Ok(());
            }
        }
    }

    /// The parser's thread ended without a batch that says why.
    fn pipe_lost(&mut self) -> Error {
        self.pipe = None;
        Error::Internal("the COPY parser thread stopped".into())
    }

    /// Inserts a batch's rows in order, then meets the error that stopped
    /// the parser after them, if any; true if the batch was the last.
    fn insert_batch(&mut self, ctx: &mut Ctx, mut batch: Batch) -> Result<bool> {
        let width = self.row.len();
        for k in 0..batch.n {
            // Swapped, not copied: the batch gets this row's values back,
            // and their buffers, for the parser to overwrite.
            self.row.swap_with_slice(&mut batch.rows[k * width..(k + 1) * width]);
            let line = batch.lines[k];
            self.write_row(ctx)
                .map_err(|e| e.with_context(line_context(&self.t.table.name, line)))?;
        }
        let end = batch.end.take();
        batch.n = 0;
        batch.lines.clear();
        if let Some(p) = &self.pipe {
            let _ = p.spare.send(batch);
        }
        match end {
            None => Ok(false),
            Some(Ok(())) => Ok(true),
            Some(Err(e)) => Err(e),
        }
    }

    fn write_row(&mut self, ctx: &mut Ctx) -> Result<()> {
        for c in 0..self.given.len() {
            if !self.given[c] {
                self.row[c] = self.t.default_value(ctx, &self.shared.catalog, c)?;
            }
        }
        self.t.check(ctx, &mut self.row)?;
        let rowid = match self.t.key_rowid(&self.row)? {
            Some(rowid) => rowid,
            None => {
                if self.rowids_left == 0 {
                    self.next_rowid =
                        self.shared.rowids.take(ctx.txn, self.t.table.id, ROWID_BATCH)?;
                    self.rowids_left = ROWID_BATCH;
                }
                self.next_rowid += 1;
                self.rowids_left -= 1;
                self.next_rowid - 1
            }
        };
        self.t.check_out_fks(ctx.txn, &self.row, None)?;
        self.t.add_entries(ctx.txn, rowid, &self.row, None, true, &mut self.buf)?;
        self.t.insert_at(ctx.txn, rowid, &self.row, &mut self.buf)?;
        self.count += 1;
        ctx.tick()?;
        Ok(())
    }
}

/// The parser's thread: chunks in, batches of rows out, until the end of
/// the data, an error, or the statement's thread letting go of the pipe.
fn parse_thread(
    mut parser: Box<Parser>,
    width: usize,
    chunks: std::sync::mpsc::Receiver<ToParser>,
    batches: std::sync::mpsc::Sender<Batch>,
    spare: std::sync::mpsc::Receiver<Batch>,
    spare_chunks: std::sync::mpsc::Sender<Vec<u8>>,
) {
    let mut batch = Batch::new(width);
    while let Ok(msg) = chunks.recv() {
        // A parsed record goes straight into its slot of the batch, and a
        // full batch is sent at once.
        let mut each = |p: &mut Parser, rec: &[u8]| -> Result<()> {
            let k = batch.n;
            if batch.rows.len() < (k + 1) * width {
                batch.rows.resize((k + 1) * width, Value::Null);
            }
            if p.record(rec, &mut batch.rows[k * width..(k + 1) * width])? {
                batch.lines.push(p.line);
                batch.n += 1;
                if batch.n == BATCH_ROWS {
                    let next = spare.try_recv().unwrap_or_else(|_| Batch::new(width));
                    if batches.send(std::mem::replace(&mut batch, next)).is_err() {
                        return Err(Error::Internal("the COPY statement ended".into()));
                    }
                }
            }
            Ok(())
        };
        let (r, last) = match msg {
            ToParser::Chunk(data) => {
                let r = parser.feed(&data, &mut each);
                let _ = spare_chunks.send(data);
                (r, false)
            }
            ToParser::Finish => (parser.finish(&mut each), true),
        };
        if r.is_err() || last {
            batch.end = Some(r);
            let _ = batches.send(batch);
            return;
        }
    }
}

impl Batch {
    fn new(width: usize) -> Batch {
        Batch {
            rows: Vec::with_capacity(BATCH_ROWS * width),
            lines: Vec::with_capacity(BATCH_ROWS),
            n: 0,
            end: None,
        }
    }
}

/// PostgreSQL's context line of a COPY error.
fn line_context(table: &str, line: u64) -> String {
    format!("COPY {table}, line {line}")
}

impl Parser {
    fn context(&self) -> String {
        line_context(&self.table, self.line)
    }

    /// Hands each complete record of `data` (without its `\n`) to `each`;
    /// an incomplete last one waits for the next chunk.
    fn feed(
        &mut self,
        mut data: &[u8],
        each: &mut dyn FnMut(&mut Parser, &[u8]) -> Result<()>,
    ) -> Result<()> {
        if self.ended {
            return Ok(());
        }
        if !self.pending.is_empty() || self.pending_in_quote {
            match self.record_end(data, self.pending_in_quote) {
                (Some(end), _) => {
                    let mut rec = std::mem::take(&mut self.pending);
                    rec.extend_from_slice(&data[..end]);
                    self.pending_in_quote = false;
                    let r = each(self, &rec);
                    rec.clear();
                    self.pending = rec;
                    r?;
                    data = &data[end + 1..];
                }
                (None, q) => {
                    self.pending.extend_from_slice(data);
                    self.pending_in_quote = q;
                    return Ok(());
                }
            }
        }
        while !data.is_empty() && !self.ended {
            match self.record_end(data, false) {
                (Some(end), _) => {
                    each(self, &data[..end])?;
                    data = &data[end + 1..];
                }
                (None, q) => {
                    self.pending.extend_from_slice(data);
                    self.pending_in_quote = q;
                    break;
                }
            }
        }
        Ok(())
    }

    /// The end of the data: a last line without a newline is a record.
    fn finish(&mut self, each: &mut dyn FnMut(&mut Parser, &[u8]) -> Result<()>) -> Result<()> {
        if !self.ended && (!self.pending.is_empty() || self.pending_in_quote) {
            if self.pending_in_quote {
                self.line += 1;
                return Err(bad_data("unterminated CSV quoted field").with_context(self.context()));
            }
            let rec = std::mem::take(&mut self.pending);
            return each(self, &rec);
        }
        Ok(())
    }

    /// Where the record starting at `data[0]` ends (its `\n`), given the
    /// CSV quote state at `data[0]`; else the state at the end.
    fn record_end(&self, data: &[u8], mut in_quote: bool) -> (Option<usize>, bool) {
        if self.opts.format != CopyFormat::Csv {
            return (memchr::memchr(b'\n', data), false);
        }
        let (q, e) = (self.opts.quote, self.opts.escape);
        let mut i = 0;
        while i < data.len() {
            let c = data[i];
            if in_quote {
                if c == e && e != q && matches!(data.get(i + 1), Some(&n) if n == q || n == e) {
                    i += 2;
                    continue;
                }
                if c == q {
                    in_quote = false;
                }
            } else if c == q {
                in_quote = true;
            } else if c == b'\n' {
                return (Some(i), false);
            }
            i += 1;
        }
        (None, in_quote)
    }

    /// One record (without its `\n`) into `row` (the target columns'
    /// values; the others are left as they are): true for a line of data,
    /// false for the header and the end marker.
    fn record(&mut self, rec: &[u8], row: &mut [Value]) -> Result<bool> {
        self.line += 1;
        let mut rec = rec;
        let csv = self.opts.format == CopyFormat::Csv;
        if rec.last() == Some(&b'\r') {
            let crlf = *self.crlf.get_or_insert(true);
            if crlf || csv {
                rec = &rec[..rec.len() - 1];
            }
        } else if self.crlf.is_none() {
            self.crlf = Some(false);
        } else if self.crlf == Some(true) && !csv {
            return Err(bad_data("literal newline found in data").with_context(self.context()));
        }
        if rec == b"\\." {
            self.ended = true;
            return Ok(false);
        }
        let split = if csv {
            self.split_csv(rec)
        } else {
            let (delim, null) = (self.opts.delimiter, self.opts.null.as_bytes());
            split_text(rec, delim, null, &mut self.decoded, &mut self.fields)
        };
        split.map_err(|e| e.with_context(self.context()))?;
        if self.line == 1 && self.opts.header {
            self.header_line().map_err(|e| e.with_context(self.context()))?;
            return Ok(false);
        }
        self.values(row)?;
        Ok(true)
    }

    fn split_csv(&mut self, rec: &[u8]) -> Result<()> {
        self.decoded.clear();
        self.fields.clear();
        let (delim, q, e) = (self.opts.delimiter, self.opts.quote, self.opts.escape);
        let mut i = 0;
        loop {
            let start = self.decoded.len();
            let (mut in_quote, mut saw_quote) = (false, false);
            loop {
                let Some(&c) = rec.get(i) else {
                    if in_quote {
                        return Err(bad_data("unterminated CSV quoted field"));
                    }
                    break;
                };
                if in_quote {
                    if c == e && matches!(rec.get(i + 1), Some(&n) if n == q || n == e) {
                        self.decoded.push(rec[i + 1]);
                        i += 2;
                        continue;
                    }
                    if c == q {
                        in_quote = false;
                    } else {
                        self.decoded.push(c);
                    }
                    i += 1;
                    continue;
                }
                if c == delim {
                    break;
                }
                if c == q {
                    in_quote = true;
                    saw_quote = true;
                } else {
                    self.decoded.push(c);
                }
                i += 1;
            }
            let k = self.fields.len();
            let text = &self.decoded[start..];
            let matches_null = text == self.opts.null.as_bytes();
            let force_nn = self.force_not_null.get(k).copied().unwrap_or(false);
            let force_null = self.force_null.get(k).copied().unwrap_or(false);
            if matches_null && ((!saw_quote && !force_nn) || (saw_quote && force_null)) {
                self.decoded.truncate(start);
                self.fields.push(Field::Null);
            } else {
                self.fields.push(Field::Value(start, self.decoded.len()));
            }
            if i >= rec.len() {
                return Ok(());
            }
            i += 1; // the delimiter
        }
    }

    /// HEADER: skipped; HEADER MATCH: the names must be the columns'.
    fn header_line(&self) -> Result<()> {
        if !self.opts.header_match {
            return Ok(());
        }
        if self.fields.len() != self.targets.len() {
            return Err(bad_data(format!(
                "wrong number of fields in header line: got {}, expected {}",
                self.fields.len(),
                self.targets.len()
            )));
        }
        for (k, f) in self.fields.iter().enumerate() {
            let want = &self.names[self.targets[k]];
            let got = match f {
                Field::Null => None,
                Field::Value(a, b) => std::str::from_utf8(&self.decoded[*a..*b]).ok(),
            };
            if got != Some(want.as_str()) {
                return Err(bad_data(format!(
                    "column name mismatch in header line field {}: got \"{}\", expected \"{want}\"",
                    k + 1,
                    got.unwrap_or("null")
                )));
            }
        }
        Ok(())
    }

    /// The decoded fields as the target columns' values of `row`,
    /// overwritten in place: a text column keeps its string's buffer.
    fn values(&mut self, row: &mut [Value]) -> Result<()> {
        let n = self.targets.len();
        if self.fields.len() > n {
            return Err(
                bad_data("extra data after last expected column").with_context(self.context())
            );
        }
        if self.fields.len() < n {
            let col = &self.names[self.targets[self.fields.len()]];
            return Err(
                bad_data(format!("missing data for column \"{col}\"")).with_context(self.context())
            );
        }
        // One UTF-8 check for the whole record; a field is then valid when
        // it starts and ends on character boundaries (an escape such as
        // `\xc3` can end a field in the middle of a character).
        let all = std::str::from_utf8(&self.decoded).ok();
        for k in 0..n {
            let col = self.targets[k];
            let Field::Value(a, b) = self.fields[k] else {
                row[col] = Value::Null;
                continue;
            };
            let text = match all.and_then(|all| all.get(a..b)) {
                Some(s) => Ok(s),
                None => std::str::from_utf8(&self.decoded[a..b]).map_err(|_| {
                    Error::user("22021", "invalid byte sequence for encoding \"UTF8\"")
                }),
            };
            let v = text.and_then(|s| text_value_into(s, &self.types[col], &mut row[col]));
            if let Err(e) = v {
                let shown = String::from_utf8_lossy(&self.decoded[a..b]);
                let name = &self.names[col];
                return Err(
                    e.with_context(format!("{}, column {name}: \"{shown}\"", self.context()))
                );
            }
        }
        Ok(())
    }
}

/// Splits a text-format record (without its line end) into fields,
/// de-escaped into `decoded` with one span per field.
fn split_text(
    rec: &[u8],
    delim: u8,
    null: &[u8],
    decoded: &mut Vec<u8>,
    fields: &mut Vec<Field>,
) -> Result<()> {
    decoded.clear();
    fields.clear();
    let mut raw_start = 0;
    let mut start = 0;
    let mut i = 0;
    // Every delimiter, backslash and carriage return of the record, in
    // one pass; the plain bytes between them are copied in one go.
    // Positions inside an escape already consumed are skipped.
    let mut specials = memchr::memchr3_iter(delim, b'\\', b'\r', rec);
    loop {
        let next = loop {
            match specials.next() {
                Some(p) if p < i => continue,
                Some(p) => break p,
                None => break rec.len(),
            }
        };
        decoded.extend_from_slice(&rec[i..next]);
        i = next;
        if i == rec.len() || rec[i] == delim {
            if &rec[raw_start..i] == null {
                decoded.truncate(start);
                fields.push(Field::Null);
            } else {
                fields.push(Field::Value(start, decoded.len()));
            }
            if i == rec.len() {
                return Ok(());
            }
            i += 1;
            raw_start = i;
            start = decoded.len();
            continue;
        }
        // A backslash or a carriage return.
        let c = rec[i];
        i += 1;
        if c == b'\r' {
            return Err(bad_data("literal carriage return found in data"));
        }
        let Some(&n) = rec.get(i) else {
            // A backslash at the end of the line stays.
            decoded.push(b'\\');
            continue;
        };
        i += 1;
        let out = match n {
            b'0'..=b'7' => {
                let mut v = u32::from(n - b'0');
                for _ in 0..2 {
                    match rec.get(i) {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                (v & 0xff) as u8
            }
            b'x' if rec.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                let mut v = 0u32;
                for _ in 0..2 {
                    match rec.get(i).and_then(|d| (*d as char).to_digit(16)) {
                        Some(d) => {
                            v = v * 16 + d;
                            i += 1;
                        }
                        None => break,
                    }
                }
                v as u8
            }
            b'b' => 8,
            b'f' => 12,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'v' => 11,
            other => other,
        };
        decoded.push(out);
    }
}

/// A field's text as a value of type `ty` (as a cast from text would
/// make it), stored into `slot`: numbers without an allocation, and text
/// into the string `slot` already holds.
fn text_value_into(s: &str, ty: &DataType, slot: &mut Value) -> Result<()> {
    let v = match ty {
        DataType::SmallInt => s.parse::<i16>().ok().map(Value::Int2),
        DataType::Integer => s.parse::<i32>().ok().map(Value::Int4),
        DataType::BigInt => s.parse::<i64>().ok().map(Value::Int8),
        // The cast's own parser (NaN, Infinity, range), on the borrowed text.
        DataType::Double => Some(Value::Float8(cast::parse_float(s, "double precision")?)),
        DataType::Text => {
            if let Value::Text(t) = slot {
                t.clear();
                t.push_str(s);
            } else {
                *slot = Value::Text(s.to_string());
            }
            return Ok(());
        }
        _ => None,
    };
    *slot = match v {
        Some(v) => v,
        // Whatever the fast paths refused goes through the cast, which
        // gives the error or the value PostgreSQL's input function would.
        None => cast::cast(Value::Text(s.to_string()), ty)?,
    };
    Ok(())
}

/// What `copy_out` hands its caller.
pub enum CopyOut<'a> {
    /// Before any data: the number of columns per line.
    Start { columns: usize },
    /// One encoded line, with its `\n`.
    Line(&'a [u8]),
}

/// Runs a COPY … TO, handing each encoded line to `on`; the number of rows.
pub fn copy_out(
    shared: &Shared,
    txn: &mut Transaction,
    path: &SearchPath,
    stmt: &CopyStmt,
    params: &[Value],
    on: &mut dyn FnMut(CopyOut<'_>) -> Result<()>,
) -> Result<u64> {
    let opts = &stmt.options;
    if opts.format == CopyFormat::Binary {
        return Err(Error::user("0A000", "COPY TO in BINARY format is not supported"));
    }
    let sql = match &stmt.source {
        CopySource::Query(q) => q.clone(),
        CopySource::Table { name, columns } => {
            // Checked like COPY FROM's target, then read as a query.
            let mut b = Binder::new(&shared.catalog, txn, path);
            let t = super::dml::target(&mut b, &object_name(name))?;
            drop(b);
            let cols = column_positions(&t, columns.as_ref())?;
            let list: Vec<String> =
                cols.iter().map(|&c| quote_ident(&t.table.def.columns[c].name)).collect();
            let table: Vec<String> = name.iter().map(|p| quote_ident(p)).collect();
            format!("SELECT {} FROM {}", list.join(", "), table.join("."))
        }
    };
    let stmts = crate::session::parse(&sql)?;
    let [sqlparser::ast::Statement::Query(q)] = stmts.as_slice() else {
        return Err(Error::user(
            "42601",
            "COPY (query) needs exactly one SELECT, VALUES or WITH query",
        ));
    };
    let mut b = Binder::new(&shared.catalog, txn, path);
    let bound = b.query(q)?;
    drop(b);
    let names: Vec<String> = bound.columns.iter().map(|c| c.0.clone()).collect();
    let force_quote: Vec<bool> = match &opts.force_quote {
        Columns::None => vec![false; names.len()],
        Columns::All => vec![true; names.len()],
        Columns::Some(cols) => {
            let mut f = vec![false; names.len()];
            for c in cols {
                let k = names.iter().position(|n| n == c).ok_or_else(|| {
                    Error::user(
                        "42P10",
                        format!("FORCE_QUOTE column \"{c}\" not referenced by COPY"),
                    )
                })?;
                f[k] = true;
            }
            f
        }
    };
    on(CopyOut::Start { columns: names.len() })?;
    let mut line = Vec::with_capacity(256);
    let mut text = String::new();
    let csv = opts.format == CopyFormat::Csv;
    if opts.header {
        for (k, n) in names.iter().enumerate() {
            if k > 0 {
                line.push(opts.delimiter);
            }
            if csv {
                csv_field(&mut line, n, opts, false, names.len() == 1);
            } else {
                text_field(&mut line, n, opts.delimiter);
            }
        }
        line.push(b'\n');
        on(CopyOut::Line(&line))?;
    }
    let limit = shared.value_limit.load(std::sync::atomic::Ordering::Relaxed);
    let mut ctx = Ctx::new(txn, params).with_limit(limit).with_env(&shared.catalog, path);
    let mut rows = super::stream::open(&mut ctx, &bound.plan, None)?;
    let mut n = 0u64;
    while let Some(r) = rows.next(&mut ctx)? {
        line.clear();
        for (k, v) in r.iter().enumerate() {
            if k > 0 {
                line.push(opts.delimiter);
            }
            if v.is_null() {
                line.extend_from_slice(opts.null.as_bytes());
                continue;
            }
            text.clear();
            match v {
                Value::Text(s) => text.push_str(s),
                v => {
                    let _ = write!(text, "{v}");
                }
            }
            if csv {
                csv_field(&mut line, &text, opts, force_quote[k], r.len() == 1);
            } else {
                text_field(&mut line, &text, opts.delimiter);
            }
        }
        line.push(b'\n');
        on(CopyOut::Line(&line))?;
        n += 1;
    }
    Ok(n)
}

/// A value in the text format: backslash, control characters and the
/// delimiter escaped.
fn text_field(out: &mut Vec<u8>, s: &str, delim: u8) {
    for &c in s.as_bytes() {
        let esc = match c {
            b'\\' => b'\\',
            8 => b'b',
            12 => b'f',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            11 => b'v',
            c if c == delim => c,
            _ => {
                out.push(c);
                continue;
            }
        };
        out.push(b'\\');
        out.push(esc);
    }
}

/// A value in CSV: quoted when it must be (delimiter, quote, CR/LF, equal
/// to the NULL string, `\.` alone) or FORCE_QUOTE asks.
fn csv_field(out: &mut Vec<u8>, s: &str, opts: &CopyOptions, force: bool, single: bool) {
    let b = s.as_bytes();
    let (q, e, d) = (opts.quote, opts.escape, opts.delimiter);
    let must = force
        || s == opts.null
        || (single && s == "\\.")
        || b.iter().any(|&c| c == d || c == q || c == b'\n' || c == b'\r');
    if !must {
        out.extend_from_slice(b);
        return;
    }
    out.push(q);
    for &c in b {
        if c == q || c == e {
            out.push(e);
        }
        out.push(c);
    }
    out.push(q);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PostgreSQL's text-format rules one byte at a time, as the reference
    /// for `split_text`, which jumps between special bytes.
    fn split_reference(rec: &[u8], delim: u8, null: &[u8]) -> Option<Vec<Option<Vec<u8>>>> {
        let mut fields = Vec::new();
        let (mut cur, mut raw_start, mut i) = (Vec::new(), 0, 0);
        loop {
            if i == rec.len() || rec[i] == delim {
                let f = std::mem::take(&mut cur);
                fields.push((&rec[raw_start..i] != null).then_some(f));
                if i == rec.len() {
                    return Some(fields);
                }
                i += 1;
                raw_start = i;
                continue;
            }
            let c = rec[i];
            i += 1;
            match c {
                b'\r' => return None,
                b'\\' if i == rec.len() => cur.push(b'\\'),
                b'\\' => {
                    let n = rec[i];
                    i += 1;
                    cur.push(match n {
                        b'0'..=b'7' => {
                            let (mut v, mut digits) = (u32::from(n - b'0'), 1);
                            while digits < 3 && i < rec.len() && (b'0'..=b'7').contains(&rec[i]) {
                                v = v * 8 + u32::from(rec[i] - b'0');
                                i += 1;
                                digits += 1;
                            }
                            (v & 0xff) as u8
                        }
                        b'x' if i < rec.len() && rec[i].is_ascii_hexdigit() => {
                            let mut v = 0u32;
                            let end = (i + 2).min(rec.len());
                            while i < end && rec[i].is_ascii_hexdigit() {
                                v = v * 16 + (rec[i] as char).to_digit(16).unwrap();
                                i += 1;
                            }
                            v as u8
                        }
                        b'b' => 8,
                        b'f' => 12,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'v' => 11,
                        other => other,
                    });
                }
                c => cur.push(c),
            }
        }
    }

    #[test]
    fn text_records_split_as_byte_at_a_time() {
        // Records from an alphabet dense in delimiters, escapes, octal and
        // hex digits, carriage returns and NULL markers, up to 80 bytes
        // (past the 32-byte steps of the vector search).
        const ALPHABET: &[u8] = b"\t\t\\\\\\\\\rN|01789xXaAfF bnrtv\xc3\xa9";
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let (mut decoded, mut fields) = (Vec::new(), Vec::new());
        for round in 0..20_000 {
            let len = (next() % 81) as usize;
            let rec: Vec<u8> =
                (0..len).map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize]).collect();
            let (delim, null): (u8, &[u8]) =
                if round % 3 == 0 { (b'|', b"N") } else { (b'\t', b"\\N") };
            let got = split_text(&rec, delim, null, &mut decoded, &mut fields).ok().map(|()| {
                fields
                    .iter()
                    .map(|f| match *f {
                        Field::Null => None,
                        Field::Value(a, b) => Some(decoded[a..b].to_vec()),
                    })
                    .collect::<Vec<_>>()
            });
            let want = split_reference(&rec, delim, null);
            assert_eq!(got, want, "record {:?}", String::from_utf8_lossy(&rec));
        }
    }

    #[test]
    fn text_escapes_round_trip() {
        let mut out = Vec::new();
        text_field(&mut out, "a\tb\\c\nd\u{8}|", b'|');
        assert_eq!(out, b"a\\tb\\\\c\\nd\\b\\|");
    }

    #[test]
    fn csv_quoting() {
        let opts = CopyOptions {
            format: CopyFormat::Csv,
            freeze: false,
            delimiter: b',',
            null: String::new(),
            header: false,
            header_match: false,
            quote: b'"',
            escape: b'"',
            force_quote: Columns::None,
            force_not_null: Columns::None,
            force_null: Columns::None,
        };
        let f = |s: &str, force: bool| {
            let mut out = Vec::new();
            csv_field(&mut out, s, &opts, force, false);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(f("plain", false), "plain");
        assert_eq!(f("a,b", false), "\"a,b\"");
        assert_eq!(f("say \"hi\"", false), "\"say \"\"hi\"\"\"");
        assert_eq!(f("", false), "\"\"");
        assert_eq!(f("x", true), "\"x\"");
    }
}
