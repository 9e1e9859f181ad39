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

/// A COPY FROM in progress (see the module doc).
pub struct Loader {
    shared: Arc<Shared>,
    path: Arc<SearchPath>,
    t: Target,
    /// The column each field goes to.
    targets: Vec<usize>,
    /// Per field: FORCE_NOT_NULL, FORCE_NULL.
    force_not_null: Vec<bool>,
    force_null: Vec<bool>,
    opts: CopyOptions,
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
    row: Vec<Value>,
    given: Vec<bool>,
    buf: Vec<u8>,
    /// Rowids taken and not yet used: next, and how many are left.
    next_rowid: u64,
    rowids_left: u64,
    /// Rows inserted.
    pub count: u64,
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
        Ok(Loader {
            shared,
            path,
            t,
            targets,
            force_not_null,
            force_null,
            opts: stmt.options.clone(),
            pending: Vec::new(),
            pending_in_quote: false,
            line: 0,
            crlf: None,
            ended: false,
            decoded: Vec::new(),
            fields: Vec::new(),
            row: Vec::with_capacity(ncols),
            given: vec![false; ncols],
            buf: Vec::new(),
            next_rowid: 0,
            rowids_left: 0,
            count: 0,
        })
    }

    /// How many columns each line carries.
    pub fn columns(&self) -> usize {
        self.targets.len()
    }

    /// Takes a chunk of the data; complete records are inserted now.
    pub fn write(&mut self, txn: &mut Transaction, params: &[Value], data: &[u8]) -> Result<()> {
        let shared = self.shared.clone();
        let path = self.path.clone();
        let mut ctx = Ctx::new(txn, params).with_env(&shared.catalog, &path);
        let mut data = data;
        if self.ended {
            return Ok(());
        }
        if !self.pending.is_empty() || self.pending_in_quote {
            match self.record_end(data, self.pending_in_quote) {
                (Some(end), _) => {
                    let mut rec = std::mem::take(&mut self.pending);
                    rec.extend_from_slice(&data[..end]);
                    self.pending_in_quote = false;
                    let r = self.record(&mut ctx, &rec);
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
                    self.record(&mut ctx, &data[..end])?;
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
    pub fn finish(&mut self, txn: &mut Transaction, params: &[Value]) -> Result<u64> {
        if !self.ended && (!self.pending.is_empty() || self.pending_in_quote) {
            if self.pending_in_quote {
                self.line += 1;
                return Err(bad_data("unterminated CSV quoted field")
                    .with_context(format!("COPY {}, line {}", self.t.table.name, self.line)));
            }
            let shared = self.shared.clone();
            let path = self.path.clone();
            let mut ctx = Ctx::new(txn, params).with_env(&shared.catalog, &path);
            let rec = std::mem::take(&mut self.pending);
            self.record(&mut ctx, &rec)?;
        }
        Ok(self.count)
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

    fn context(&self) -> String {
        format!("COPY {}, line {}", self.t.table.name, self.line)
    }

    /// One record (without its `\n`).
    fn record(&mut self, ctx: &mut Ctx, rec: &[u8]) -> Result<()> {
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
            return Ok(());
        }
        let split = if csv { self.split_csv(rec) } else { self.split_text(rec) };
        split.map_err(|e| e.with_context(self.context()))?;
        if self.line == 1 && self.opts.header {
            return self.header_line().map_err(|e| e.with_context(self.context()));
        }
        self.insert(ctx)
    }

    fn split_text(&mut self, rec: &[u8]) -> Result<()> {
        let (delim, null) = (self.opts.delimiter, self.opts.null.as_bytes());
        split_text(rec, delim, null, &mut self.decoded, &mut self.fields)
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
            let want = &self.t.table.def.columns[self.targets[k]].name;
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

    /// The decoded fields as a row of the table, checked and written.
    fn insert(&mut self, ctx: &mut Ctx) -> Result<()> {
        let n = self.targets.len();
        if self.fields.len() > n {
            return Err(
                bad_data("extra data after last expected column").with_context(self.context())
            );
        }
        if self.fields.len() < n {
            let col = &self.t.table.def.columns[self.targets[self.fields.len()]].name;
            return Err(
                bad_data(format!("missing data for column \"{col}\"")).with_context(self.context())
            );
        }
        let ncols = self.t.types.len();
        // The row of the previous record is overwritten in place: a text
        // column keeps its string's buffer from row to row.
        self.row.resize(ncols, Value::Null);
        self.given.fill(false);
        // One UTF-8 check for the whole record; a field is then valid when
        // it starts and ends on character boundaries (an escape such as
        // `\xc3` can end a field in the middle of a character).
        let all = std::str::from_utf8(&self.decoded).ok();
        for k in 0..n {
            let col = self.targets[k];
            self.given[col] = true;
            let Field::Value(a, b) = self.fields[k] else {
                self.row[col] = Value::Null;
                continue;
            };
            let ty = &self.t.types[col];
            let text = match all.and_then(|all| all.get(a..b)) {
                Some(s) => Ok(s),
                None => std::str::from_utf8(&self.decoded[a..b]).map_err(|_| {
                    Error::user("22021", "invalid byte sequence for encoding \"UTF8\"")
                }),
            };
            let v = text.and_then(|s| text_value_into(s, ty, &mut self.row[col]));
            if let Err(e) = v {
                let shown = String::from_utf8_lossy(&self.decoded[a..b]);
                let name = &self.t.table.def.columns[col].name;
                return Err(
                    e.with_context(format!("{}, column {name}: \"{shown}\"", self.context()))
                );
            }
        }
        let r = self.write_row(ctx);
        r.map_err(|e| e.with_context(self.context()))
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
