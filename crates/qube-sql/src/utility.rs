//! COPY, VACUUM and ANALYZE: statements sqlparser 0.64 does not parse the
//! way PostgreSQL writes them (`vacuum analyze t`, `copy t from stdin with
//! (freeze on)`, psql's `WITH CSV HEADER`), recognised here before
//! sqlparser sees the text.
//!
//! ```text
//! "COPY t FROM STDIN; SELECT 1"
//!   mentions()   cheap check: does a statement start with COPY/VACUUM/ANALYZE?
//!   split()      top-level `;` (quotes, E'', "", $tag$, -- and /* */ respected)
//!   parse()      COPY/VACUUM/ANALYZE pieces → Utility; the others go to sqlparser
//! ```
//!
//! Grammar accepted (PostgreSQL 16's, plus the pre-9.0 option syntax that
//! psql's `\copy` and older drivers send):
//!
//! ```text
//! COPY table [(col, …)] FROM {STDIN | 'file'} [[WITH] (option [value], …) | legacy…]
//! COPY {table [(col, …)] | (query)} TO {STDOUT | 'file'} [same options]
//!   options: FORMAT text|csv|binary, FREEZE [bool], DELIMITER 'c', NULL 's',
//!            HEADER [bool|MATCH], QUOTE 'c', ESCAPE 'c', FORCE_QUOTE (cols)|*,
//!            FORCE_NOT_NULL (cols), FORCE_NULL (cols), ENCODING 'utf8'
//!   legacy:  BINARY, CSV, HEADER, DELIMITER [AS] 'c', NULL [AS] 's',
//!            QUOTE [AS] 'c', ESCAPE [AS] 'c', FORCE QUOTE cols|*, FORCE NOT NULL cols
//! VACUUM [FULL] [FREEZE] [VERBOSE] [ANALYZE] [(option [value], …)] [table [(cols)], …]
//! ANALYZE|ANALYSE [VERBOSE] [(option [value], …)] [table [(cols)], …]
//! ```
//!
//! Option values are checked here as PostgreSQL does (42601 for a
//! malformed or repeated option, 22023 for a bad value, 0A000 for what is
//! not built); the executor (`exec::copy`) gets a checked `CopyOptions`.

use qube_common::{Error, Result};

/// A statement recognised here.
#[derive(Debug, Clone, PartialEq)]
pub enum Utility {
    Copy(CopyStmt),
    /// VACUUM and/or ANALYZE of some tables (none: all of them).
    Maintenance(Maintenance),
    AlterSequence(AlterSequence),
}

/// ALTER SEQUENCE (sqlparser 0.64 has no such statement).
#[derive(Debug, Clone, PartialEq)]
pub struct AlterSequence {
    pub if_exists: bool,
    pub name: Vec<String>,
    pub action: SequenceAction,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SequenceAction {
    /// CREATE SEQUENCE's options (parsed by sqlparser from the text with
    /// RESTART taken out), and RESTART [[WITH] n] (`Some(None)`: back to
    /// the start value).
    Options {
        options: Vec<sqlparser::ast::SequenceOptions>,
        restart: Option<Option<i64>>,
    },
    RenameTo(String),
    SetSchema(String),
    OwnerTo(String),
    /// SET LOGGED / SET UNLOGGED: every sequence here is logged.
    Logged,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CopyStmt {
    pub source: CopySource,
    /// COPY … TO (else FROM).
    pub to: bool,
    pub target: CopyTarget,
    pub options: CopyOptions,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CopySource {
    /// A table (its name's parts, as written) and the columns given.
    Table { name: Vec<String>, columns: Option<Vec<String>> },
    /// `COPY (query) TO …`: the query's text.
    Query(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum CopyTarget {
    /// STDIN or STDOUT: the client's copy sub-protocol.
    Client,
    File(String),
    Program(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormat {
    Text,
    Csv,
    Binary,
}

/// Which columns a FORCE_* option names.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Columns {
    #[default]
    None,
    All,
    Some(Vec<String>),
}

/// Checked options, with PostgreSQL's defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyOptions {
    pub format: CopyFormat,
    pub freeze: bool,
    pub delimiter: u8,
    pub null: String,
    pub header: bool,
    /// HEADER MATCH: the header line must name the columns.
    pub header_match: bool,
    pub quote: u8,
    pub escape: u8,
    pub force_quote: Columns,
    pub force_not_null: Columns,
    pub force_null: Columns,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Maintenance {
    pub vacuum: bool,
    pub analyze: bool,
    pub full: bool,
    pub verbose: bool,
    /// The tables named (their names' parts); empty: every table.
    pub tables: Vec<Vec<String>>,
}

/// Whether some statement of `sql` may start with COPY, VACUUM or
/// ANALYZE (a cheap test before `split`; false positives are harmless).
pub fn mentions(sql: &str) -> bool {
    let b = sql.as_bytes();
    ["copy", "vacuum", "analyze", "analyse", "sequence"].iter().any(|w| {
        let w = w.as_bytes();
        b.windows(w.len()).enumerate().any(|(i, win)| {
            win.eq_ignore_ascii_case(w)
                && (i == 0 || !is_ident_byte(b[i - 1]))
                && b.get(i + w.len()).is_none_or(|c| !is_ident_byte(*c))
        })
    })
}

fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

/// The byte ranges of the top-level statements of `sql` (without their
/// `;`), empty ones included.
pub fn split(sql: &str) -> Vec<(usize, usize)> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    let mut depth = 0i32;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\'' => {
                let escapes = i > 0 && matches!(b[i - 1], b'e' | b'E') && {
                    let j = i - 1;
                    j == 0 || !is_ident_byte(b[j - 1])
                };
                i = skip_quoted(b, i, b'\'', escapes);
                continue;
            }
            b'"' => {
                i = skip_quoted(b, i, b'"', false);
                continue;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut nest = 1;
                i += 2;
                while i < b.len() && nest > 0 {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        nest += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        nest -= 1;
                        i += 2;
                    } else {
                        i += 1;
                    }
                }
                continue;
            }
            b'$' if i == 0 || !is_ident_byte(b[i - 1]) => {
                // $tag$ … $tag$ (not $1).
                let mut j = i + 1;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] >= 0x80)
                {
                    j += 1;
                }
                if j < b.len() && b[j] == b'$' && !b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    let tag = &b[i..=j];
                    let body = j + 1;
                    let end = b[body..]
                        .windows(tag.len())
                        .position(|w| w == tag)
                        .map_or(b.len(), |p| body + p + tag.len());
                    i = end;
                    continue;
                }
            }
            b'(' => depth += 1,
            b')' => depth -= 1,
            b';' if depth <= 0 => {
                out.push((start, i));
                start = i + 1;
                depth = 0;
            }
            _ => {}
        }
        i += 1;
    }
    out.push((start, b.len()));
    out
}

/// The index after a quoted token starting at `i` (unterminated: the end).
fn skip_quoted(b: &[u8], mut i: usize, q: u8, backslash: bool) -> usize {
    i += 1;
    while i < b.len() {
        if backslash && b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i] == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

/// The statement in `text` if it is one of ours (by its first word).
pub fn recognise(text: &str) -> Result<Option<Utility>> {
    let mut lx = Lexer::new(text);
    let first = match lx.peek()? {
        Some(Tok::Word(w)) => w,
        _ => return Ok(None),
    };
    match first.as_str() {
        "copy" => {
            lx.next()?;
            parse_copy(&mut lx).map(|c| Some(Utility::Copy(c)))
        }
        "vacuum" | "analyze" | "analyse" => {
            lx.next()?;
            parse_maintenance(&mut lx, first == "vacuum").map(|m| Some(Utility::Maintenance(m)))
        }
        "alter" => {
            lx.next()?;
            if !lx.eat_word("sequence")? {
                return Ok(None);
            }
            parse_alter_sequence(&mut lx, text).map(|a| Some(Utility::AlterSequence(a)))
        }
        _ => Ok(None),
    }
}

/// `ALTER SEQUENCE [IF EXISTS] name` and what follows (PostgreSQL 16's
/// grammar): options as CREATE SEQUENCE's plus RESTART [[WITH] n], or
/// RENAME TO, SET SCHEMA, OWNER TO, SET LOGGED/UNLOGGED.
fn parse_alter_sequence(lx: &mut Lexer, text: &str) -> Result<AlterSequence> {
    let if_exists = if lx.eat_word("if")? {
        if !lx.eat_word("exists")? {
            return Err(lx.unexpected());
        }
        true
    } else {
        false
    };
    let name = lx.name()?;
    let one_ident = |lx: &mut Lexer| -> Result<String> {
        let v = lx.ident()?;
        if !lx.at_end()? {
            return Err(lx.unexpected());
        }
        Ok(v)
    };
    let action = if lx.eat_word("rename")? {
        if !lx.eat_word("to")? {
            return Err(lx.unexpected());
        }
        SequenceAction::RenameTo(one_ident(lx)?)
    } else if lx.eat_word("owner")? {
        if !lx.eat_word("to")? {
            return Err(lx.unexpected());
        }
        SequenceAction::OwnerTo(one_ident(lx)?)
    } else if lx.eat_word("set")? {
        if lx.eat_word("schema")? {
            SequenceAction::SetSchema(one_ident(lx)?)
        } else if lx.eat_word("logged")? || lx.eat_word("unlogged")? {
            if !lx.at_end()? {
                return Err(lx.unexpected());
            }
            SequenceAction::Logged
        } else {
            return Err(lx.unexpected());
        }
    } else {
        // The options, RESTART cut out of the text for sqlparser.
        let mut rest = String::from("CREATE SEQUENCE s ");
        let mut restart = None;
        if lx.at_end()? {
            return Err(lx.unexpected());
        }
        while !lx.at_end()? {
            let start = lx.next_start()?;
            if lx.eat_word("restart")? {
                if restart.is_some() {
                    return Err(conflicting());
                }
                let with = lx.eat_word("with")?;
                restart = Some(match lx.peek()? {
                    Some(Tok::Number(n)) => {
                        lx.next()?;
                        Some(n.parse::<i64>().map_err(|_| {
                            Error::user("22023", format!("invalid RESTART value \"{n}\""))
                        })?)
                    }
                    _ if with => return Err(lx.unexpected()),
                    _ => None,
                });
                continue;
            }
            lx.next()?;
            let end = lx.next_start()?.min(text.len());
            rest.push_str(&text[start..end]);
            rest.push(' ');
        }
        // sqlparser's position would be in the rewritten text: dropped.
        let parsed = crate::session::parse(&rest).map_err(|e| {
            let msg = e.to_string();
            let msg = msg.split(" at Line").next().unwrap_or(&msg).to_string();
            let msg = msg.strip_prefix("42601: ").unwrap_or(&msg).to_string();
            Error::user("42601", msg)
        })?;
        let options = match parsed.into_iter().next() {
            Some(sqlparser::ast::Statement::CreateSequence { sequence_options, .. }) => {
                sequence_options
            }
            _ => return Err(Error::user("42601", "syntax error in ALTER SEQUENCE")),
        };
        SequenceAction::Options { options, restart }
    };
    Ok(AlterSequence { if_exists, name, action })
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// An unquoted word, lower-cased.
    Word(String),
    /// A "quoted" identifier, as written.
    Quoted(String),
    Str(String),
    Number(String),
    Punct(u8),
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    peeked: Option<(Option<Tok>, usize, usize)>,
}

fn syntax(msg: impl std::fmt::Display) -> Error {
    Error::user("42601", format!("syntax error at or near {msg}"))
}

impl<'a> Lexer<'a> {
    fn new(src: &'a str) -> Self {
        Lexer { src, pos: 0, peeked: None }
    }

    fn skip_space(&mut self) {
        let b = self.src.as_bytes();
        loop {
            while self.pos < b.len() && b[self.pos].is_ascii_whitespace() {
                self.pos += 1;
            }
            if b[self.pos..].starts_with(b"--") {
                while self.pos < b.len() && b[self.pos] != b'\n' {
                    self.pos += 1;
                }
            } else if b[self.pos..].starts_with(b"/*") {
                let mut nest = 0;
                while self.pos < b.len() {
                    if b[self.pos..].starts_with(b"/*") {
                        nest += 1;
                        self.pos += 2;
                    } else if b[self.pos..].starts_with(b"*/") {
                        nest -= 1;
                        self.pos += 2;
                        if nest == 0 {
                            break;
                        }
                    } else {
                        self.pos += 1;
                    }
                }
            } else {
                return;
            }
        }
    }

    /// The next token and where it starts and ends.
    fn lex(&mut self) -> Result<(Option<Tok>, usize, usize)> {
        self.skip_space();
        let b = self.src.as_bytes();
        let start = self.pos;
        let Some(&c) = b.get(self.pos) else { return Ok((None, start, start)) };
        let tok = if (c == b'e' || c == b'E') && b.get(self.pos + 1) == Some(&b'\'') {
            self.pos += 1;
            Tok::Str(self.string(true)?)
        } else if c == b'\'' {
            Tok::Str(self.string(false)?)
        } else if c == b'"' {
            let end = skip_quoted(b, self.pos, b'"', false);
            if end > b.len() || b[end - 1] != b'"' || end - self.pos < 2 {
                return Err(Error::user("42601", "unterminated quoted identifier"));
            }
            let inner = &self.src[self.pos + 1..end - 1];
            self.pos = end;
            if inner.is_empty() {
                return Err(Error::user("42601", "zero-length delimited identifier"));
            }
            Tok::Quoted(inner.replace("\"\"", "\""))
        } else if is_ident_byte(c) && !c.is_ascii_digit() && c != b'$' {
            while self.pos < b.len() && is_ident_byte(b[self.pos]) {
                self.pos += 1;
            }
            Tok::Word(self.src[start..self.pos].to_lowercase())
        } else if c.is_ascii_digit() || (c == b'-' || c == b'+') && self.pos + 1 < b.len() {
            self.pos += 1;
            while self.pos < b.len() && (b[self.pos].is_ascii_alphanumeric() || b[self.pos] == b'.')
            {
                self.pos += 1;
            }
            Tok::Number(self.src[start..self.pos].to_string())
        } else {
            self.pos += 1;
            Tok::Punct(c)
        };
        Ok((Some(tok), start, self.pos))
    }

    fn string(&mut self, escapes: bool) -> Result<String> {
        let b = self.src.as_bytes();
        let mut out = Vec::new();
        let mut i = self.pos + 1;
        loop {
            let Some(&c) = b.get(i) else {
                return Err(Error::user("42601", "unterminated quoted string"));
            };
            if c == b'\'' {
                if b.get(i + 1) == Some(&b'\'') {
                    out.push(b'\'');
                    i += 2;
                    continue;
                }
                i += 1;
                break;
            }
            if escapes && c == b'\\' {
                let Some(&n) = b.get(i + 1) else {
                    return Err(Error::user("42601", "unterminated quoted string"));
                };
                i += 2;
                match n {
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'0'..=b'7' => {
                        let mut v = u32::from(n - b'0');
                        for _ in 0..2 {
                            match b.get(i) {
                                Some(d @ b'0'..=b'7') => {
                                    v = v * 8 + u32::from(d - b'0');
                                    i += 1;
                                }
                                _ => break,
                            }
                        }
                        out.push(v as u8);
                    }
                    b'x' => {
                        let mut v = 0u32;
                        let mut k = 0;
                        while k < 2
                            && let Some(d) = b.get(i).and_then(|d| (*d as char).to_digit(16))
                        {
                            v = v * 16 + d;
                            i += 1;
                            k += 1;
                        }
                        out.push(v as u8);
                    }
                    other => out.push(other),
                }
                continue;
            }
            out.push(c);
            i += 1;
        }
        self.pos = i;
        String::from_utf8(out)
            .map_err(|_| Error::user("22021", "invalid byte sequence for encoding \"UTF8\""))
    }

    fn peek(&mut self) -> Result<Option<Tok>> {
        if self.peeked.is_none() {
            self.peeked = Some(self.lex()?);
        }
        Ok(self.peeked.as_ref().and_then(|p| p.0.clone()))
    }

    fn next(&mut self) -> Result<Option<Tok>> {
        match self.peeked.take() {
            Some((t, _, _)) => Ok(t),
            None => Ok(self.lex()?.0),
        }
    }

    /// Where the next token starts.
    fn next_start(&mut self) -> Result<usize> {
        if self.peeked.is_none() {
            self.peeked = Some(self.lex()?);
        }
        Ok(self.peeked.as_ref().map_or(self.pos, |p| p.1))
    }

    fn word_is(&mut self, w: &str) -> Result<bool> {
        Ok(matches!(self.peek()?, Some(Tok::Word(x)) if x == w))
    }

    fn eat_word(&mut self, w: &str) -> Result<bool> {
        let yes = self.word_is(w)?;
        if yes {
            self.next()?;
        }
        Ok(yes)
    }

    fn eat_punct(&mut self, p: u8) -> Result<bool> {
        let yes = self.peek()? == Some(Tok::Punct(p));
        if yes {
            self.next()?;
        }
        Ok(yes)
    }

    fn expect_punct(&mut self, p: u8) -> Result<()> {
        if self.eat_punct(p)? { Ok(()) } else { Err(self.unexpected()) }
    }

    /// A syntax error at the next token.
    fn unexpected(&mut self) -> Error {
        match self.peek() {
            Ok(Some(t)) => syntax(format!("\"{}\"", show(&t))),
            Ok(None) => Error::user("42601", "syntax error at end of input"),
            Err(e) => e,
        }
    }

    fn at_end(&mut self) -> Result<bool> {
        Ok(self.peek()?.is_none())
    }

    /// An identifier (a word or a quoted name).
    fn ident(&mut self) -> Result<String> {
        match self.peek()? {
            Some(Tok::Word(w)) => {
                self.next()?;
                Ok(w)
            }
            Some(Tok::Quoted(q)) => {
                self.next()?;
                Ok(q)
            }
            _ => Err(self.unexpected()),
        }
    }

    /// A possibly qualified name.
    fn name(&mut self) -> Result<Vec<String>> {
        let mut parts = vec![self.ident()?];
        while self.eat_punct(b'.')? {
            parts.push(self.ident()?);
        }
        Ok(parts)
    }

    fn ident_list(&mut self) -> Result<Vec<String>> {
        let mut v = vec![self.ident()?];
        while self.eat_punct(b',')? {
            v.push(self.ident()?);
        }
        Ok(v)
    }

    fn paren_idents(&mut self) -> Result<Vec<String>> {
        self.expect_punct(b'(')?;
        let v = self.ident_list()?;
        self.expect_punct(b')')?;
        Ok(v)
    }

    fn string_lit(&mut self) -> Result<String> {
        match self.peek()? {
            Some(Tok::Str(s)) => {
                self.next()?;
                Ok(s)
            }
            _ => Err(self.unexpected()),
        }
    }
}

fn show(t: &Tok) -> String {
    match t {
        Tok::Word(w) | Tok::Quoted(w) | Tok::Number(w) => w.clone(),
        Tok::Str(s) => format!("'{s}'"),
        Tok::Punct(p) => (*p as char).to_string(),
    }
}

/// A generic option value: `opt`, `opt value`, `opt (a, b)`, `opt *`.
#[derive(Debug, Clone, PartialEq)]
enum OptVal {
    None,
    Text(String),
    List(Vec<String>),
    Star,
}

fn opt_value(lx: &mut Lexer) -> Result<OptVal> {
    Ok(match lx.peek()? {
        Some(Tok::Punct(b',')) | Some(Tok::Punct(b')')) | None => OptVal::None,
        Some(Tok::Punct(b'(')) => OptVal::List(lx.paren_idents()?),
        Some(Tok::Punct(b'*')) => {
            lx.next()?;
            OptVal::Star
        }
        Some(Tok::Word(w)) | Some(Tok::Quoted(w)) | Some(Tok::Str(w)) | Some(Tok::Number(w)) => {
            lx.next()?;
            OptVal::Text(w)
        }
        Some(_) => return Err(lx.unexpected()),
    })
}

/// `(name value, …)` after the opening parenthesis was seen.
fn generic_options(lx: &mut Lexer) -> Result<Vec<(String, OptVal)>> {
    lx.expect_punct(b'(')?;
    let mut out = Vec::new();
    loop {
        let name = lx.ident()?;
        let v = opt_value(lx)?;
        out.push((name, v));
        if lx.eat_punct(b')')? {
            return Ok(out);
        }
        lx.expect_punct(b',')?;
    }
}

fn bool_opt(name: &str, v: &OptVal) -> Result<bool> {
    match v {
        OptVal::None => Ok(true),
        OptVal::Text(t) => match t.to_lowercase().as_str() {
            "true" | "on" | "1" | "yes" | "t" | "y" => Ok(true),
            "false" | "off" | "0" | "no" | "f" | "n" => Ok(false),
            _ => Err(Error::user("22023", format!("{name} requires a Boolean value"))),
        },
        _ => Err(Error::user("22023", format!("{name} requires a Boolean value"))),
    }
}

/// Options as given, before defaults and cross-checks.
#[derive(Default)]
struct RawCopyOptions {
    format: Option<CopyFormat>,
    freeze: Option<bool>,
    delimiter: Option<String>,
    null: Option<String>,
    header: Option<(bool, bool)>,
    quote: Option<String>,
    escape: Option<String>,
    force_quote: Option<Columns>,
    force_not_null: Option<Columns>,
    force_null: Option<Columns>,
    encoding: Option<String>,
}

fn conflicting() -> Error {
    Error::user("42601", "conflicting or redundant options")
}

fn set_once<T>(slot: &mut Option<T>, v: T) -> Result<()> {
    if slot.is_some() {
        return Err(conflicting());
    }
    *slot = Some(v);
    Ok(())
}

fn string_opt(name: &str, v: OptVal) -> Result<String> {
    match v {
        OptVal::Text(s) => Ok(s),
        _ => Err(Error::user("22023", format!("{name} requires a string value"))),
    }
}

fn columns_opt(name: &str, v: OptVal, star_ok: bool) -> Result<Columns> {
    match v {
        OptVal::List(l) => Ok(Columns::Some(l)),
        OptVal::Star if star_ok => Ok(Columns::All),
        _ => Err(Error::user(
            "22023",
            format!("argument to option \"{name}\" must be a list of column names"),
        )),
    }
}

fn parse_copy(lx: &mut Lexer) -> Result<CopyStmt> {
    let source = if lx.peek()? == Some(Tok::Punct(b'(')) {
        // The query's text: everything up to the matching parenthesis.
        let open = lx.next_start()?;
        lx.next()?;
        let mut depth = 1;
        let close;
        loop {
            let at = lx.next_start()?;
            match lx.next()? {
                None => return Err(Error::user("42601", "syntax error at end of input")),
                Some(Tok::Punct(b'(')) => depth += 1,
                Some(Tok::Punct(b')')) => {
                    depth -= 1;
                    if depth == 0 {
                        close = at;
                        break;
                    }
                }
                Some(_) => {}
            }
        }
        CopySource::Query(lx.src[open + 1..close].to_string())
    } else {
        let name = lx.name()?;
        let columns =
            if lx.peek()? == Some(Tok::Punct(b'(')) { Some(lx.paren_idents()?) } else { None };
        CopySource::Table { name, columns }
    };
    let to = if lx.eat_word("to")? {
        true
    } else if lx.eat_word("from")? {
        false
    } else {
        return Err(lx.unexpected());
    };
    if !to && matches!(source, CopySource::Query(_)) {
        return Err(Error::user(
            "42601",
            "syntax error at or near \"from\": COPY (query) must be COPY (query) TO",
        ));
    }
    let target = if lx.eat_word("stdin")? {
        if to {
            return Err(syntax("\"stdin\""));
        }
        CopyTarget::Client
    } else if lx.eat_word("stdout")? {
        if !to {
            return Err(syntax("\"stdout\""));
        }
        CopyTarget::Client
    } else if lx.eat_word("program")? {
        CopyTarget::Program(lx.string_lit()?)
    } else {
        CopyTarget::File(lx.string_lit()?)
    };
    let mut raw = RawCopyOptions::default();
    let with = lx.eat_word("with")?;
    if lx.peek()? == Some(Tok::Punct(b'(')) {
        for (name, v) in generic_options(lx)? {
            copy_option(&mut raw, &name, v)?;
        }
    } else {
        legacy_options(lx, &mut raw)?;
    }
    let _ = with;
    if lx.eat_word("where")? {
        return Err(Error::user("0A000", "COPY FROM … WHERE is not supported"));
    }
    if !lx.at_end()? {
        return Err(lx.unexpected());
    }
    let options = check_options(raw, to)?;
    Ok(CopyStmt { source, to, target, options })
}

fn copy_option(raw: &mut RawCopyOptions, name: &str, v: OptVal) -> Result<()> {
    match name {
        "format" => {
            let f = match string_opt(name, v)?.to_lowercase().as_str() {
                "text" => CopyFormat::Text,
                "csv" => CopyFormat::Csv,
                "binary" => CopyFormat::Binary,
                other => {
                    return Err(Error::user(
                        "22023",
                        format!("COPY format \"{other}\" not recognized"),
                    ));
                }
            };
            set_once(&mut raw.format, f)
        }
        "freeze" => set_once(&mut raw.freeze, bool_opt(name, &v)?),
        "delimiter" => set_once(&mut raw.delimiter, string_opt(name, v)?),
        "null" => set_once(&mut raw.null, string_opt(name, v)?),
        "header" => {
            let h = match &v {
                OptVal::Text(t) if t.eq_ignore_ascii_case("match") => (true, true),
                _ => (bool_opt(name, &v)?, false),
            };
            set_once(&mut raw.header, h)
        }
        "quote" => set_once(&mut raw.quote, string_opt(name, v)?),
        "escape" => set_once(&mut raw.escape, string_opt(name, v)?),
        "force_quote" => set_once(&mut raw.force_quote, columns_opt(name, v, true)?),
        "force_not_null" => set_once(&mut raw.force_not_null, columns_opt(name, v, true)?),
        "force_null" => set_once(&mut raw.force_null, columns_opt(name, v, true)?),
        "encoding" => set_once(&mut raw.encoding, string_opt(name, v)?),
        other => Err(Error::user("42601", format!("option \"{other}\" not recognized"))),
    }
}

/// The pre-9.0 syntax: `BINARY`, `DELIMITER [AS] 'c'`, `CSV HEADER QUOTE
/// [AS] 'c'`, `FORCE NOT NULL a, b`, … in any order.
fn legacy_options(lx: &mut Lexer, raw: &mut RawCopyOptions) -> Result<()> {
    loop {
        let Some(Tok::Word(w)) = lx.peek()? else { return Ok(()) };
        if w == "where" {
            return Ok(());
        }
        lx.next()?;
        match w.as_str() {
            "binary" => set_once(&mut raw.format, CopyFormat::Binary)?,
            "csv" => set_once(&mut raw.format, CopyFormat::Csv)?,
            "oids" => return Err(Error::user("0A000", "COPY with OIDS is not supported")),
            "freeze" => set_once(&mut raw.freeze, true)?,
            "header" => set_once(&mut raw.header, (true, false))?,
            "delimiter" | "null" | "quote" | "escape" | "encoding" => {
                lx.eat_word("as")?;
                let s = lx.string_lit()?;
                copy_option(raw, &w, OptVal::Text(s))?;
            }
            "force" => {
                let (name, star_ok) = if lx.eat_word("quote")? {
                    ("force_quote", true)
                } else if lx.eat_word("not")? {
                    if !lx.eat_word("null")? {
                        return Err(lx.unexpected());
                    }
                    ("force_not_null", false)
                } else if lx.eat_word("null")? {
                    ("force_null", false)
                } else {
                    return Err(lx.unexpected());
                };
                let cols = if star_ok && lx.eat_punct(b'*')? {
                    Columns::All
                } else {
                    Columns::Some(lx.ident_list()?)
                };
                let slot = match name {
                    "force_quote" => &mut raw.force_quote,
                    "force_not_null" => &mut raw.force_not_null,
                    _ => &mut raw.force_null,
                };
                set_once(slot, cols)?;
            }
            other => return Err(syntax(format!("\"{other}\""))),
        }
    }
}

/// One single-byte character, as DELIMITER, QUOTE and ESCAPE need.
fn one_byte(what: &str, s: &str) -> Result<u8> {
    match s.as_bytes() {
        [c] => Ok(*c),
        _ => Err(Error::user("0A000", format!("COPY {what} must be a single one-byte character"))),
    }
}

fn check_options(raw: RawCopyOptions, to: bool) -> Result<CopyOptions> {
    let format = raw.format.unwrap_or(CopyFormat::Text);
    let csv = format == CopyFormat::Csv;
    let binary = format == CopyFormat::Binary;
    if binary && (raw.delimiter.is_some() || raw.null.is_some()) {
        let what = if raw.delimiter.is_some() { "DELIMITER" } else { "NULL" };
        return Err(Error::user("42601", format!("cannot specify {what} in BINARY mode")));
    }
    if let Some(e) = &raw.encoding
        && !matches!(
            e.to_lowercase().replace(['-', '_'], "").as_str(),
            "utf8" | "unicode" | "sqlascii"
        )
    {
        return Err(Error::user(
            "0A000",
            format!("COPY ENCODING \"{e}\" is not supported: only UTF8"),
        ));
    }
    let delimiter = match &raw.delimiter {
        Some(d) => one_byte("delimiter", d)?,
        None if csv => b',',
        None => b'\t',
    };
    if delimiter == b'\n' || delimiter == b'\r' {
        return Err(Error::user("22023", "COPY delimiter cannot be newline or carriage return"));
    }
    let null = raw.null.clone().unwrap_or_else(|| if csv { String::new() } else { "\\N".into() });
    if null.contains(['\n', '\r']) {
        return Err(Error::user(
            "22023",
            "COPY null representation cannot use newline or carriage return",
        ));
    }
    if !csv && b"\\.abcdefghijklmnopqrstuvwxyz0123456789".contains(&delimiter) {
        return Err(Error::user(
            "22023",
            format!("COPY delimiter cannot be \"{}\"", delimiter as char),
        ));
    }
    let (header, header_match) = raw.header.unwrap_or((false, false));
    if binary && header {
        return Err(Error::user("0A000", "cannot specify HEADER in BINARY mode"));
    }
    if header_match && to {
        return Err(Error::user("0A000", "cannot use \"match\" with HEADER in COPY TO"));
    }
    if !csv {
        for (given, name) in [
            (raw.quote.is_some(), "QUOTE"),
            (raw.escape.is_some(), "ESCAPE"),
            (raw.force_quote.is_some(), "FORCE_QUOTE"),
            (raw.force_not_null.is_some(), "FORCE_NOT_NULL"),
            (raw.force_null.is_some(), "FORCE_NULL"),
        ] {
            if given {
                return Err(Error::user("0A000", format!("COPY {name} requires CSV mode")));
            }
        }
    }
    let quote = raw.quote.as_deref().map(|q| one_byte("quote", q)).transpose()?.unwrap_or(b'"');
    let escape = raw.escape.as_deref().map(|q| one_byte("escape", q)).transpose()?.unwrap_or(quote);
    if csv && quote == delimiter {
        return Err(Error::user("22023", "COPY delimiter and quote must be different"));
    }
    if csv && null.as_bytes().contains(&delimiter) {
        return Err(Error::user(
            "22023",
            "COPY delimiter must not appear in the NULL specification",
        ));
    }
    if csv && null.as_bytes().contains(&quote) {
        return Err(Error::user(
            "22023",
            "CSV quote character must not appear in the NULL specification",
        ));
    }
    if to && raw.force_not_null.is_some() {
        return Err(Error::user("0A000", "COPY FORCE_NOT_NULL cannot be used with COPY TO"));
    }
    if to && raw.force_null.is_some() {
        return Err(Error::user("0A000", "COPY FORCE_NULL cannot be used with COPY TO"));
    }
    if !to && raw.force_quote.is_some() {
        return Err(Error::user("0A000", "COPY FORCE_QUOTE cannot be used with COPY FROM"));
    }
    if to && raw.freeze == Some(true) {
        return Err(Error::user("0A000", "COPY FREEZE cannot be used with COPY TO"));
    }
    Ok(CopyOptions {
        format,
        freeze: raw.freeze.unwrap_or(false),
        delimiter,
        null,
        header,
        header_match,
        quote,
        escape,
        force_quote: raw.force_quote.unwrap_or_default(),
        force_not_null: raw.force_not_null.unwrap_or_default(),
        force_null: raw.force_null.unwrap_or_default(),
    })
}

fn parse_maintenance(lx: &mut Lexer, vacuum: bool) -> Result<Maintenance> {
    let mut m = Maintenance { vacuum, analyze: !vacuum, ..Maintenance::default() };
    // The old keyword forms: VACUUM [FULL] [FREEZE] [VERBOSE] [ANALYZE].
    while let Some(Tok::Word(w)) = lx.peek()? {
        match w.as_str() {
            "full" if vacuum && !m.full => m.full = true,
            "freeze" if vacuum => {}
            "verbose" if !m.verbose => m.verbose = true,
            "analyze" | "analyse" if vacuum && !m.analyze => m.analyze = true,
            _ => break,
        }
        lx.next()?;
    }
    if lx.peek()? == Some(Tok::Punct(b'(')) {
        for (name, v) in generic_options(lx)? {
            let on = || bool_opt(&name.to_uppercase(), &v);
            match name.as_str() {
                "verbose" => m.verbose = on()?,
                "skip_locked" | "buffer_usage_limit" => {}
                "analyze" if vacuum => m.analyze = on()?,
                "full" if vacuum => m.full = on()?,
                "freeze"
                | "disable_page_skipping"
                | "process_main"
                | "process_toast"
                | "truncate"
                | "index_cleanup"
                | "parallel"
                | "skip_database_stats"
                | "only_database_stats"
                    if vacuum => {}
                other => {
                    let what = if vacuum { "VACUUM" } else { "ANALYZE" };
                    return Err(Error::user(
                        "42601",
                        format!("unrecognized {what} option \"{other}\""),
                    ));
                }
            }
        }
    }
    if lx.at_end()? {
        return Ok(m);
    }
    loop {
        m.tables.push(lx.name()?);
        if lx.peek()? == Some(Tok::Punct(b'(')) {
            // A column list (ANALYZE's statistics columns): accepted.
            lx.paren_idents()?;
        }
        if !lx.eat_punct(b',')? {
            break;
        }
    }
    if !lx.at_end()? {
        return Err(lx.unexpected());
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(sql: &str) -> CopyStmt {
        match recognise(sql).unwrap() {
            Some(Utility::Copy(c)) => c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn copy_forms() {
        let c = copy("copy pgbench_accounts from stdin with (freeze on)");
        assert!(c.options.freeze && !c.to && c.target == CopyTarget::Client);
        let c = copy("COPY \"T\" (a, \"B\") FROM STDIN WITH CSV HEADER DELIMITER AS ';' NULL 'x'");
        assert_eq!(
            c.source,
            CopySource::Table {
                name: vec!["T".into()],
                columns: Some(vec!["a".into(), "B".into()])
            }
        );
        assert_eq!(c.options.format, CopyFormat::Csv);
        assert!(c.options.header);
        assert_eq!((c.options.delimiter, c.options.null.as_str()), (b';', "x"));
        let c = copy("copy (select 1, ')' from t where (a)) to stdout (format csv, force_quote *)");
        assert_eq!(c.source, CopySource::Query("select 1, ')' from t where (a)".into()));
        assert_eq!(c.options.force_quote, Columns::All);
        let c = copy("copy s.t to stdout delimiter E'\\t' csv force quote a, b");
        assert_eq!(c.options.force_quote, Columns::Some(vec!["a".into(), "b".into()]));
        assert_eq!(c.options.delimiter, b'\t');
    }

    #[test]
    fn copy_errors() {
        let code = |sql: &str| recognise(sql).unwrap_err().sqlstate();
        assert_eq!(code("copy t from stdin (format xml)"), "22023");
        assert_eq!(code("copy t from stdin (delimiter '||')"), "0A000");
        assert_eq!(code("copy t from stdin (quote '\"')"), "0A000");
        assert_eq!(code("copy t from stdin (format csv, format csv)"), "42601");
        assert_eq!(code("copy t from stdin (bogus)"), "42601");
        assert_eq!(code("copy (select 1) from stdin"), "42601");
        assert_eq!(code("copy t to stdin"), "42601");
        assert_eq!(code("copy t from stdin junk"), "42601");
        assert_eq!(code("copy t from stdin (format csv, delimiter '\"')"), "22023");
    }

    #[test]
    fn maintenance_forms() {
        let m = |sql: &str| match recognise(sql).unwrap() {
            Some(Utility::Maintenance(m)) => m,
            other => panic!("{other:?}"),
        };
        let v = m("vacuum analyze pgbench_branches");
        assert!(v.vacuum && v.analyze);
        assert_eq!(v.tables, vec![vec!["pgbench_branches".to_string()]]);
        let v = m("VACUUM FULL FREEZE VERBOSE ANALYZE a, s.b");
        assert!(v.full && v.verbose && v.analyze && v.tables.len() == 2);
        let v = m("vacuum (verbose, analyze off) t");
        assert!(v.verbose && !v.analyze);
        let a = m("analyse verbose t (a, b)");
        assert!(!a.vacuum && a.analyze && a.verbose);
        assert!(m("vacuum").tables.is_empty());
        assert_eq!(recognise("vacuum (bogus) t").unwrap_err().sqlstate(), "42601");
        assert_eq!(recognise("analyze t junk junk").unwrap_err().sqlstate(), "42601");
    }

    #[test]
    fn splitting() {
        let sql = "copy t from stdin; select ';' ; select $$;$$; -- ;\n select \"a;\"";
        let parts: Vec<&str> = split(sql).iter().map(|(a, b)| sql[*a..*b].trim()).collect();
        assert_eq!(
            parts,
            vec!["copy t from stdin", "select ';'", "select $$;$$", "-- ;\n select \"a;\""]
        );
        assert!(mentions("VACUUM t") && mentions("x; analyze") && !mentions("select copying"));
        assert_eq!(recognise("select 1").unwrap(), None);
    }
}
