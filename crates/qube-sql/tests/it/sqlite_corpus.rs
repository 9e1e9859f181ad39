//! SQLite's classic sqllogictest corpus (`../shared/conformance/sqlite`),
//! run in-process against the engine.
//!
//! This is a port of `../shared/conformance/slt_runner.py` (the runner that
//! real PostgreSQL 15 passes 100% of t0 with), so that both count the same:
//! - records are separated by blank lines, `#` lines are comments;
//! - `skipif` / `onlyif` are evaluated with the engine name `postgresql`;
//!   `halt` stops the file, `hash-threshold N` sets the threshold (default 8);
//! - `statement ok|error` only checks success or failure;
//! - `query <types> <sort> [label]`: values are formatted by the type letter
//!   of the query line, not by the column's type, exactly as the Python
//!   runner's `fmt` formats the value psycopg would return (see
//!   [`format_value`]); `rowsort` / `valuesort` / `nosort`; more values than
//!   the threshold (or a label) compare as "N values hashing to <md5>" of
//!   every value followed by a newline.
//!
//! Each file runs on a fresh `Database::memory()` session. The runner is
//! self-contained (it needs only `qube_sql` and `md5`) so that a benchmark or
//! a CLI can include this file with `#[path = ...] mod sqlite_corpus;` and
//! call [`run_files`].

use std::collections::HashMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use qube_sql::{Database, QueryResult, Session, Value};
use rust_decimal::Decimal;

/// Minimum number of t0 queries that must pass: all 8,884 (PostgreSQL 15
/// passes all of them too). Never lower it to make CI pass.
pub const T0_MIN_PASSED: usize = 8_884;

/// Same for the t1 sample (`sqlite_t1`, ignored by default: ~4 minutes in
/// a release build). Ratcheted up as the engine grows; 99% of 173,441 is
/// 171,707.
pub const T1_MIN_PASSED: usize = 172_700;

/// Outcome counts, named as in `slt_runner.py`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub stmt_ok: usize,
    pub stmt_fail: usize,
    pub q_ok: usize,
    pub q_fail: usize,
    pub q_err: usize,
    pub skipped: usize,
}

impl Stats {
    pub fn add(&mut self, o: &Stats) {
        self.stmt_ok += o.stmt_ok;
        self.stmt_fail += o.stmt_fail;
        self.q_ok += o.q_ok;
        self.q_fail += o.q_fail;
        self.q_err += o.q_err;
        self.skipped += o.skipped;
    }

    /// Queries run (passed, wrong or errored).
    pub fn queries(&self) -> usize {
        self.q_ok + self.q_fail + self.q_err
    }

    /// Share of queries run that passed, in percent.
    pub fn pass_percent(&self) -> f64 {
        if self.queries() == 0 { 0.0 } else { 100.0 * self.q_ok as f64 / self.queries() as f64 }
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} passed, {} failed, {} errored queries; {} statements failed ({} ok); {} skipped",
            self.q_ok, self.q_fail, self.q_err, self.stmt_fail, self.stmt_ok, self.skipped
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum FailureKind {
    /// `statement ok` failed with this error.
    StatementFailed(String),
    /// `statement error` succeeded.
    StatementSucceeded,
    /// The query failed with this error.
    QueryError(String),
    /// The query returned another number of columns than its type string has.
    ColumnCount {
        got: usize,
        types: String,
    },
    WrongResult {
        expected: Vec<String>,
        got: Vec<String>,
    },
    /// Two queries with the same label hashed differently (not counted as a
    /// failed query, as in `slt_runner.py`).
    LabelDisagrees {
        label: String,
    },
    /// The file could not be read or the database not be created.
    Setup(String),
}

#[derive(Debug, Clone)]
pub struct Failure {
    pub file: PathBuf,
    /// 1-based line of the record's first line.
    pub line: usize,
    pub sql: String,
    pub kind: FailureKind,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file.display(), self.line)?;
        match &self.kind {
            FailureKind::StatementFailed(e) => write!(f, "statement failed: {e}")?,
            FailureKind::StatementSucceeded => write!(f, "statement succeeded unexpectedly")?,
            FailureKind::QueryError(e) => write!(f, "query error: {e}")?,
            FailureKind::ColumnCount { got, types } => {
                write!(f, "wrong column count {got} vs {types}")?
            }
            FailureKind::WrongResult { .. } => write!(f, "wrong result")?,
            FailureKind::LabelDisagrees { label } => write!(f, "label {label} disagrees")?,
            FailureKind::Setup(e) => return write!(f, "{e}"),
        }
        write!(f, "\n  sql: {}", truncate(&self.sql, 400).replace('\n', "\n       "))?;
        if let FailureKind::WrongResult { expected, got } = &self.kind {
            write!(f, "\n  expected: {}", preview(expected))?;
            write!(f, "\n  got:      {}", preview(got))?;
        }
        Ok(())
    }
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{} …", &s[..i]),
        None => s.to_string(),
    }
}

fn preview(values: &[String]) -> String {
    const MAX: usize = 12;
    let mut s = values.iter().take(MAX).map(String::as_str).collect::<Vec<_>>().join(" | ");
    if values.len() > MAX {
        s.push_str(&format!(" | … ({} values)", values.len()));
    }
    if values.is_empty() { "(no values)".into() } else { s }
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Name that `skipif` / `onlyif` compare with.
    pub engine: String,
    /// Stop a file after this many queries (for quick runs).
    pub stop_after: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Options { engine: "postgresql".into(), stop_after: None }
    }
}

#[derive(Debug, Clone)]
pub struct FileReport {
    pub path: PathBuf,
    pub stats: Stats,
    pub failures: Vec<Failure>,
    pub elapsed: Duration,
}

impl fmt::Display for FileReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} ({:.1}s)", self.path.display(), self.stats, self.elapsed.as_secs_f64())?;
        if let Some(Failure { kind: FailureKind::Setup(e), .. }) = self.failures.first() {
            write!(f, " — {e}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub files: Vec<FileReport>,
}

impl Report {
    pub fn total(&self) -> Stats {
        let mut t = Stats::default();
        for f in &self.files {
            t.add(&f.stats);
        }
        t
    }

    pub fn failures(&self) -> impl Iterator<Item = &Failure> {
        self.files.iter().flat_map(|f| f.failures.iter())
    }
}

/// Runs each file on a fresh database; `on_file` sees each file's report as
/// soon as it is done (for progress output).
pub fn run_files(
    files: &[PathBuf],
    opts: &Options,
    mut on_file: impl FnMut(&FileReport),
) -> Report {
    let mut report = Report::default();
    for path in files {
        let file = run_file(path, opts);
        on_file(&file);
        report.files.push(file);
    }
    report
}

/// Runs one file on a fresh `Database::memory()` session.
pub fn run_file(path: &Path, opts: &Options) -> FileReport {
    let start = Instant::now();
    let mut report = FileReport {
        path: path.to_owned(),
        stats: Stats::default(),
        failures: Vec::new(),
        elapsed: Duration::ZERO,
    };
    let setup_failure = |e: String| Failure {
        file: path.to_owned(),
        line: 0,
        sql: String::new(),
        kind: FailureKind::Setup(e),
    };
    let text = match std::fs::read(path) {
        // Python's open(errors='replace') with universal newlines.
        Ok(bytes) => String::from_utf8_lossy(&bytes).replace("\r\n", "\n").replace('\r', "\n"),
        Err(e) => {
            report.failures.push(setup_failure(format!("cannot read: {e}")));
            return report;
        }
    };
    let (db, mut session) = match Database::memory().and_then(|db| Ok((db.session()?, db))) {
        Ok((session, db)) => (db, session),
        Err(e) => {
            report.failures.push(setup_failure(format!("cannot create database: {e}")));
            return report;
        }
    };
    let mut run = FileRun {
        path,
        opts,
        session: &mut session,
        threshold: 8,
        labels: HashMap::new(),
        report: &mut report,
    };
    for (line, rec) in parse(&text) {
        if !run.record(line, rec) {
            break;
        }
    }
    drop(session);
    drop(db);
    report.elapsed = start.elapsed();
    report
}

struct FileRun<'a> {
    path: &'a Path,
    opts: &'a Options,
    session: &'a mut Session,
    threshold: usize,
    labels: HashMap<String, String>,
    report: &'a mut FileReport,
}

impl FileRun<'_> {
    /// Runs one record; false to stop the file (`halt`, `stop_after`).
    fn record(&mut self, line: usize, mut rec: Vec<&str>) -> bool {
        let mut skip = false;
        while let Some(first) = rec.first() {
            let toks = py_split(first);
            let (kw, name) = (toks[0], toks.get(1).copied().unwrap_or(""));
            match kw {
                "skipif" if name == self.opts.engine => skip = true,
                "onlyif" if name != self.opts.engine => skip = true,
                "skipif" | "onlyif" => {}
                _ => break,
            }
            rec.remove(0);
        }
        let Some(first) = rec.first() else { return true };
        let head = py_split(first);
        match head[0] {
            "halt" => return skip,
            "hash-threshold" => {
                if let Some(n) = head.get(1).and_then(|n| n.parse().ok()) {
                    self.threshold = n;
                }
                return true;
            }
            _ if skip => {
                self.report.stats.skipped += 1;
                return true;
            }
            "statement" => self.statement(line, head.get(1) == Some(&"ok"), rec[1..].join("\n")),
            "query" => self.query(line, &head, &rec[1..]),
            _ => return true,
        }
        let st = &self.report.stats;
        self.opts.stop_after.is_none_or(|n| st.queries() < n)
    }

    fn fail(&mut self, line: usize, sql: &str, kind: FailureKind) {
        let file = self.path.to_owned();
        self.report.failures.push(Failure { file, line, sql: sql.to_string(), kind });
    }

    fn statement(&mut self, line: usize, expect_ok: bool, sql: String) {
        let outcome = execute(self.session, &sql);
        if outcome.is_ok() == expect_ok {
            self.report.stats.stmt_ok += 1;
            return;
        }
        self.report.stats.stmt_fail += 1;
        let kind = match outcome {
            Err(e) => FailureKind::StatementFailed(e),
            Ok(_) => FailureKind::StatementSucceeded,
        };
        self.fail(line, &sql, kind);
    }

    fn query(&mut self, line: usize, head: &[&str], body: &[&str]) {
        let types: Vec<char> = head.get(1).copied().unwrap_or("").chars().collect();
        let sort = head.get(2).copied().unwrap_or("nosort");
        let label = head.get(3).copied().unwrap_or("");
        let (sql, expected) = match body.iter().position(|l| *l == "----") {
            Some(k) => (body[..k].join("\n"), &body[k + 1..]),
            None => (body.join("\n"), &[][..]),
        };
        let result = match execute(self.session, &sql) {
            Ok(result) => result,
            Err(e) => {
                self.report.stats.q_err += 1;
                self.fail(line, &sql, FailureKind::QueryError(e));
                return;
            }
        };
        let (ncol, rows) = match &result {
            Some(r) if !r.columns.is_empty() => (r.columns.len(), r.rows.as_slice()),
            _ => (0, &[][..]),
        };
        if ncol != types.len() {
            self.report.stats.q_fail += 1;
            let types = types.iter().collect();
            self.fail(line, &sql, FailureKind::ColumnCount { got: ncol, types });
            return;
        }
        let mut frows: Vec<Vec<String>> = rows
            .iter()
            .map(|row| row.iter().zip(&types).map(|(v, t)| format_value(v, *t)).collect())
            .collect();
        if sort == "rowsort" {
            frows.sort();
        }
        let mut vals: Vec<String> = frows.into_iter().flatten().collect();
        if sort == "valuesort" {
            vals.sort();
        }
        let over = self.threshold > 0 && vals.len() > self.threshold;
        let got = if !label.is_empty() || over {
            let hash = md5_hex(&vals);
            if !label.is_empty() {
                match self.labels.get(label) {
                    Some(h) if *h != hash => {
                        let label = label.to_string();
                        self.fail(line, &sql, FailureKind::LabelDisagrees { label });
                    }
                    Some(_) => {}
                    None => {
                        self.labels.insert(label.to_string(), hash.clone());
                    }
                }
            }
            if over { vec![format!("{} values hashing to {hash}", vals.len())] } else { vals }
        } else {
            vals
        };
        if got.iter().eq(expected.iter()) {
            self.report.stats.q_ok += 1;
        } else {
            self.report.stats.q_fail += 1;
            let expected = expected.iter().map(|s| s.to_string()).collect();
            self.fail(line, &sql, FailureKind::WrongResult { expected, got });
        }
    }
}

/// Runs SQL; the last statement's result, or the error's first line as
/// "<SQLSTATE>: <message>". An engine panic is an error, not the end of the run.
fn execute(session: &mut Session, sql: &str) -> Result<Option<QueryResult>, String> {
    match catch_unwind(AssertUnwindSafe(|| session.execute(sql))) {
        Ok(Ok(results)) => Ok(results.into_iter().last()),
        Ok(Err(e)) => {
            let msg = e.to_string();
            Err(format!("{}: {}", e.sqlstate(), msg.trim().lines().next().unwrap_or("")))
        }
        Err(panic) => Err(format!("engine panicked: {}", panic_message(panic.as_ref()))),
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".into()
    }
}

/// Records as (1-based first line, lines without comments), like `parse` in
/// slt_runner.py.
fn parse(text: &str) -> Vec<(usize, Vec<&str>)> {
    let lines: Vec<&str> = text.split('\n').collect();
    let (mut i, n) = (0, lines.len());
    let mut records = Vec::new();
    while i < n {
        while i < n && (py_strip(lines[i]).is_empty() || lines[i].starts_with('#')) {
            i += 1;
        }
        if i >= n {
            break;
        }
        let start = i + 1;
        let mut rec = Vec::new();
        while i < n && !py_strip(lines[i]).is_empty() {
            if !lines[i].starts_with('#') {
                rec.push(lines[i]);
            }
            i += 1;
        }
        if !rec.is_empty() {
            records.push((start, rec));
        }
    }
    records
}

/// Python's `str.isspace` for one character.
fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

fn py_strip(s: &str) -> &str {
    s.trim_matches(py_space)
}

/// Python's `str.split()`.
fn py_split(s: &str) -> Vec<&str> {
    s.split(py_space).filter(|t| !t.is_empty()).collect()
}

fn md5_hex(vals: &[String]) -> String {
    let mut md5 = Md5::new();
    for v in vals {
        md5.update(v.as_bytes());
        md5.update(b"\n");
    }
    format!("{:x}", md5.finalize())
}

/// slt_runner.py's `fmt(v, t)`, where `v` is what psycopg returns for our
/// value: `I` → integer, `R` → `%.3f`, anything else → text with `(empty)`
/// and control / non-ASCII characters as `@`; NULL → `NULL`.
pub fn format_value(v: &Value, t: char) -> String {
    match (v, t) {
        (Value::Null, _) => "NULL".into(),
        (_, 'I') => format_int(v),
        (_, 'R') => format_real(v),
        _ => {
            let s = py_str(v);
            if s.is_empty() {
                "(empty)".into()
            } else {
                s.chars().map(|c| if (' '..='~').contains(&c) { c } else { '@' }).collect()
            }
        }
    }
}

/// `I`: bool → 1/0, integers as is, float/numeric truncated toward zero like
/// Python's `int()` (NaN/infinity → 0), anything else → its leading integer
/// (after optional whitespace and sign) or 0.
fn format_int(v: &Value) -> String {
    match v {
        Value::Bool(b) => if *b { "1" } else { "0" }.into(),
        Value::Int2(i) => i.to_string(),
        Value::Int4(i) => i.to_string(),
        Value::Int8(i) => i.to_string(),
        Value::Float4(f) => py_int_of_float(*f as f64),
        Value::Float8(f) => py_int_of_float(*f),
        Value::Numeric(d) => {
            let t = d.round_to(0, true).unwrap_or(d.clone());
            if t.is_zero() { "0".into() } else { t.to_string() }
        }
        other => py_int_prefix(&py_str(other)),
    }
}

fn py_int_of_float(f: f64) -> String {
    if !f.is_finite() {
        return "0".into();
    }
    let t = f.trunc();
    // `{:.0}` prints the exact integer value of the double, as Python's int() has it.
    if t == 0.0 { "0".into() } else { format!("{t:.0}") }
}

/// `str(int(re.match(r'\s*[-+]?\d+', s).group(0)))`, or "0" without a match.
/// (Only ASCII digits count; Python would also take other Unicode digits.)
fn py_int_prefix(s: &str) -> String {
    let s = s.trim_start_matches(py_space);
    let (neg, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let digits: &str = &rest[..rest.bytes().take_while(u8::is_ascii_digit).count()];
    if digits.is_empty() {
        return "0".into();
    }
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        "0".into()
    } else if neg {
        format!("-{digits}")
    } else {
        digits.into()
    }
}

/// `R`: `'%.3f' % float(v)`, or `0.000` if Python's `float()` refuses it.
fn format_real(v: &Value) -> String {
    let f = match v {
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::Int2(i) => Some(*i as f64),
        Value::Int4(i) => Some(*i as f64),
        Value::Int8(i) => Some(*i as f64),
        Value::Float4(f) => Some(*f as f64),
        Value::Float8(f) => Some(*f),
        // float(Decimal) is correctly rounded; so is parsing its text.
        Value::Numeric(d) => d.to_string().parse().ok(),
        Value::Bytea(b) => std::str::from_utf8(b).ok().and_then(py_float),
        other => py_float(&py_str(other)),
    };
    match f {
        None => "0.000".into(),
        Some(f) if f.is_nan() => "nan".into(),
        Some(f) if f.is_infinite() => if f > 0.0 { "inf" } else { "-inf" }.into(),
        Some(f) => format!("{f:.3}"),
    }
}

/// Python's `float(str)` (without its `_` digit separators).
fn py_float(s: &str) -> Option<f64> {
    py_strip(s).parse().ok()
}

/// `str(v)` of the Python object psycopg returns for the value.
fn py_str(v: &Value) -> String {
    #[allow(unreachable_patterns)]
    match v {
        Value::Null => "None".into(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        Value::Int2(i) => i.to_string(),
        Value::Int4(i) => i.to_string(),
        Value::Int8(i) => i.to_string(),
        Value::Float4(f) => py_float_repr(*f as f64),
        Value::Float8(f) => py_float_repr(*f),
        Value::Numeric(d) => match d.as_decimal() {
            Some(d) => py_decimal_str(&d),
            None => d.to_string(),
        },
        Value::Text(s) => s.clone(),
        Value::Bytea(b) => py_bytes_repr(b),
        // Types added later (dates, …): psycopg's objects mostly print as
        // PostgreSQL's text does.
        other => other.to_string(),
    }
}

/// Python's `repr(float)`: shortest round-trip digits, exponent form below
/// 1e-4 and from 1e16 on, ".0" on integral values.
fn py_float_repr(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // Rust's `{:e}` has the shortest round-trip digits: "-1.2345e3".
    let s = format!("{v:e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits = mantissa.replace('.', "");
    if !(-4..16).contains(&exp) {
        let frac = if digits.len() > 1 { format!(".{}", &digits[1..]) } else { String::new() };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{}{frac}e{esign}{:02}", &digits[..1], exp.abs())
    } else if exp >= 0 {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            format!("{sign}{digits}{}.0", "0".repeat(int_len - digits.len()))
        } else {
            format!("{sign}{}.{}", &digits[..int_len], &digits[int_len..])
        }
    } else {
        format!("{sign}0.{}{digits}", "0".repeat((-exp - 1) as usize))
    }
}

/// Python's `str(Decimal)` of the numeric's text (`to_sci_string`): plain
/// notation unless the adjusted exponent is below -6 (`1E-7`).
fn py_decimal_str(d: &Decimal) -> String {
    let sign = if d.mantissa() < 0 { "-" } else { "" };
    let coeff = d.mantissa().unsigned_abs().to_string();
    let exp = -(d.scale() as i64);
    let left = exp + coeff.len() as i64;
    let dot = if left > -6 { left } else { 1 };
    let (int_part, frac_part) = if dot <= 0 {
        ("0".to_string(), format!(".{}{coeff}", "0".repeat((-dot) as usize)))
    } else if dot as usize >= coeff.len() {
        (format!("{coeff}{}", "0".repeat(dot as usize - coeff.len())), String::new())
    } else {
        (coeff[..dot as usize].to_string(), format!(".{}", &coeff[dot as usize..]))
    };
    let e = if left == dot { String::new() } else { format!("E{:+}", left - dot) };
    format!("{sign}{int_part}{frac_part}{e}")
}

/// Python's `repr(bytes)`: `b'..'` with escapes.
fn py_bytes_repr(b: &[u8]) -> String {
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') { '"' } else { '\'' };
    let mut s = format!("b{quote}");
    for &c in b {
        match c {
            b'\\' => s.push_str("\\\\"),
            b'\t' => s.push_str("\\t"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            c if c as char == quote => {
                s.push('\\');
                s.push(quote);
            }
            0x20..=0x7e => s.push(c as char),
            c => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s.push(quote);
    s
}

/// `shared/conformance` of the checkout: `$QUBE_CONFORMANCE_DIR`, or the first
/// ancestor of this crate with `shared/conformance/sqlite/t0`.
pub fn conformance_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("QUBE_CONFORMANCE_DIR") {
        return Some(dir.into());
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("shared").join("conformance"))
        .find(|c| c.join("sqlite").join("t0").is_dir())
}

fn sqlite_dir() -> PathBuf {
    conformance_dir()
        .expect(
            "SQLite corpus not found: expected shared/conformance/sqlite/t0 above the crate \
             (or set QUBE_CONFORMANCE_DIR)",
        )
        .join("sqlite")
}

/// Sorted entries of `dir` that `keep` accepts (empty if unreadable).
fn entries(dir: &Path, keep: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| keep(p))
        .collect();
    v.sort();
    v
}

/// `t0/*.test`.
pub fn t0_files() -> Vec<PathBuf> {
    entries(&sqlite_dir().join("t0"), |p| p.extension().is_some_and(|e| e == "test"))
}

/// `t1/index/*/*/slt_good_0.test` and `t1/random/*/slt_good_0.test`.
pub fn t1_files() -> Vec<PathBuf> {
    let t1 = sqlite_dir().join("t1");
    let first = |dir: &Path| Some(dir.join("slt_good_0.test")).filter(|f| f.is_file());
    let mut files = Vec::new();
    for kind in entries(&t1.join("index"), Path::is_dir) {
        files.extend(entries(&kind, Path::is_dir).iter().filter_map(|d| first(d)));
    }
    files.extend(entries(&t1.join("random"), Path::is_dir).iter().filter_map(|d| first(d)));
    files
}

/// Runs a corpus, prints one line per file and the first failures, writes
/// every failure to a file in the temp directory, and checks the minimum.
fn run_corpus(name: &str, files: &[PathBuf], min_passed: usize) {
    assert!(!files.is_empty(), "no {name} files found under {}", sqlite_dir().display());
    let report = run_files(files, &Options::default(), |f| println!("{f}"));
    let total = report.total();

    let log = std::env::temp_dir().join(format!("qubedb-sqlite-{name}-failures.txt"));
    let text: String = report.failures().map(|f| format!("{f}\n")).collect();
    match std::fs::write(&log, text) {
        Ok(()) => eprintln!("{name}: all failures written to {}", log.display()),
        Err(e) => eprintln!("{name}: cannot write {}: {e}", log.display()),
    }
    for f in report.failures().take(20) {
        println!("{f}");
    }
    println!(
        "{name} TOTAL: {total}\n{name}: {} of {} queries passed ({:.2}%), {} files",
        total.q_ok,
        total.queries(),
        total.pass_percent(),
        report.files.len()
    );
    assert!(
        total.q_ok >= min_passed,
        "{name}: {} queries passed, fewer than the minimum {min_passed}",
        total.q_ok
    );
}

#[test]
fn sqlite_t0() {
    run_corpus("t0", &t0_files(), T0_MIN_PASSED);
}

#[test]
#[ignore = "about 190,000 queries; run with --ignored"]
fn sqlite_t1() {
    run_corpus("t1", &t1_files(), T1_MIN_PASSED);
}

#[test]
fn formats_like_slt_runner_py() {
    let d = |s: &str| Value::Numeric(s.parse().unwrap());
    // I
    assert_eq!(format_value(&Value::Bool(true), 'I'), "1");
    assert_eq!(format_value(&Value::Int8(-42), 'I'), "-42");
    assert_eq!(format_value(&Value::Float8(-2.9), 'I'), "-2");
    assert_eq!(format_value(&Value::Float8(-0.5), 'I'), "0");
    assert_eq!(format_value(&Value::Float8(1e20), 'I'), "100000000000000000000");
    assert_eq!(format_value(&Value::Float8(f64::NAN), 'I'), "0");
    assert_eq!(format_value(&d("-7.99"), 'I'), "-7");
    assert_eq!(format_value(&d("-0.99"), 'I'), "0");
    assert_eq!(format_value(&Value::Text(" +007abc".into()), 'I'), "7");
    assert_eq!(format_value(&Value::Text("-0".into()), 'I'), "0");
    assert_eq!(format_value(&Value::Text("abc".into()), 'I'), "0");
    assert_eq!(format_value(&Value::Null, 'I'), "NULL");
    // R
    assert_eq!(format_value(&Value::Int4(3), 'R'), "3.000");
    assert_eq!(format_value(&Value::Float8(0.0625), 'R'), "0.062");
    assert_eq!(format_value(&Value::Float8(-0.0001), 'R'), "-0.000");
    assert_eq!(format_value(&d("2.0005"), 'R'), "2.001");
    assert_eq!(format_value(&Value::Text(" 1.5 ".into()), 'R'), "1.500");
    assert_eq!(format_value(&Value::Text("x".into()), 'R'), "0.000");
    assert_eq!(format_value(&Value::Float8(f64::INFINITY), 'R'), "inf");
    assert_eq!(format_value(&Value::Bool(false), 'R'), "0.000");
    // T
    assert_eq!(format_value(&Value::Text(String::new()), 'T'), "(empty)");
    assert_eq!(format_value(&Value::Text("a\tb é".into()), 'T'), "a@b @");
    assert_eq!(format_value(&Value::Int2(5), 'T'), "5");
    assert_eq!(format_value(&Value::Bool(true), 'T'), "True");
    assert_eq!(format_value(&Value::Float8(1.0), 'T'), "1.0");
    assert_eq!(format_value(&Value::Float8(1e16), 'T'), "1e+16");
    assert_eq!(format_value(&Value::Float8(1e15), 'T'), "1000000000000000.0");
    assert_eq!(format_value(&Value::Float8(1.5e-5), 'T'), "1.5e-05");
    assert_eq!(format_value(&Value::Float8(0.0001), 'T'), "0.0001");
    assert_eq!(format_value(&Value::Float4(0.1), 'T'), "0.10000000149011612");
    assert_eq!(format_value(&d("1.50"), 'T'), "1.50");
    assert_eq!(format_value(&d("-120"), 'T'), "-120");
    assert_eq!(format_value(&d("0.0000001"), 'T'), "1E-7");
    assert_eq!(format_value(&d("0.00000012"), 'T'), "1.2E-7");
    assert_eq!(format_value(&d("0.000001"), 'T'), "0.000001");
    assert_eq!(format_value(&Value::Bytea(b"a'\x01".to_vec()), 'T'), "b\"a'\\x01\"");
}

#[test]
fn parses_and_hashes_like_slt_runner_py() {
    let text = "# c\nstatement ok\nCREATE TABLE t(a int)\n\nquery I nosort\n# inner\nSELECT 1\n----\n1\n\n\n";
    let recs = parse(text);
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0], (2, vec!["statement ok", "CREATE TABLE t(a int)"]));
    assert_eq!(recs[1], (5, vec!["query I nosort", "SELECT 1", "----", "1"]));
    // `printf '1\n2\n' | md5sum`
    assert_eq!(md5_hex(&["1".into(), "2".into()]), "6ddb4095eb719e2a9f0a3f95677d24e0");
}
