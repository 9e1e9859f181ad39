//! `qubedb shell` and `qubedb sql`: SQL on an embedded database or on a
//! running server, with psql's aligned output.
//!
//! ```text
//! lines ──► split() at top-level ';' ──► one statement at a time
//!                                         │
//!            Backend::run(sql, out, notices)
//!            ├── Embedded: Session::prepare + execute_prepared_nth_streaming,
//!            │             values rendered with Value's Display
//!            └── Remote (crate::remote): one simple Query message per
//!                          statement, values as the server's text
//!                                         │
//!            format_table / command tag ──► stdout
//!            format_report (errors, notices, SQLSTATE) ──► stderr
//! ```
//!
//! Statements are split on the client, as psql does, so each gets its own
//! result, timing and error, and a transaction block spans statements and
//! lines because the backend keeps the session between them.

use std::io::Write;
use std::time::Instant;

use qube_sql::{Column, Session, Value};

/// Splits SQL text into statements at top-level semicolons (outside
/// quotes, comments and dollar quotes). Each statement keeps its text
/// without the semicolon; the second value is the unterminated rest.
pub fn split(sql: &str) -> (Vec<String>, String) {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\'' | b'"' => {
                let q = b[i];
                i += 1;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 1;
                i += 2;
                while i < b.len() && depth > 0 {
                    if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 1;
                    } else if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 1;
                    }
                    i += 1;
                }
                continue;
            }
            b'$' => {
                // $tag$ … $tag$ (a tag is empty or an identifier).
                let tag_end = b[i + 1..]
                    .iter()
                    .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
                    .map(|p| i + 1 + p);
                if let Some(e) = tag_end
                    && b[e] == b'$'
                    && !b[i + 1..e].first().is_some_and(u8::is_ascii_digit)
                {
                    let tag = &sql[i..=e];
                    match sql[e + 1..].find(tag) {
                        Some(p) => i = e + 1 + p + tag.len() - 1,
                        None => i = b.len(),
                    }
                }
            }
            b';' => {
                let s = sql[start..i].trim();
                if !s.is_empty() {
                    out.push(s.to_string());
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    let rest = if start < b.len() { sql[start..].to_string() } else { String::new() };
    (out, rest)
}

/// A result column as the shell prints it: its name, and whether its
/// values are numbers (right-aligned, as psql aligns them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Col {
    pub name: String,
    pub right: bool,
}

impl Col {
    /// A column of an embedded result.
    pub fn of(c: &Column) -> Col {
        let right = qube_sql::plan::bind::is_numeric(&c.data_type);
        Col { name: c.name.clone(), right }
    }
}

/// A result as psql prints it (aligned format): centred headers, a
/// separator line, numbers right-aligned, NULL empty, then `(N rows)`.
pub fn format_table(columns: &[Col], rows: &[Vec<String>], out: &mut String) {
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = columns.iter().map(|c| width(&c.name)).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.lines().map(width).max().unwrap_or(0));
        }
    }
    let n = columns.len();
    // Header.
    for (i, c) in columns.iter().enumerate() {
        let w = widths[i];
        let pad = w - width(&c.name);
        let left = pad / 2;
        if i > 0 {
            out.push('|');
        }
        out.push(' ');
        out.push_str(&" ".repeat(left));
        out.push_str(&c.name);
        out.push_str(&" ".repeat(pad - left));
        out.push(' ');
    }
    // psql pads the header's last column too (data rows it does not).
    out.push('\n');
    for (i, w) in widths.iter().enumerate() {
        if i > 0 {
            out.push('+');
        }
        out.push_str(&"-".repeat(w + 2));
    }
    out.push('\n');
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(n) {
            let w = widths[i];
            let pad = w.saturating_sub(width(cell));
            if i > 0 {
                out.push('|');
            }
            out.push(' ');
            if columns[i].right {
                out.push_str(&" ".repeat(pad));
                out.push_str(cell);
                out.push(' ');
            } else {
                out.push_str(cell);
                if i + 1 < n {
                    out.push_str(&" ".repeat(pad));
                    out.push(' ');
                }
            }
        }
        // A right-aligned last column ends with its blank; psql drops it.
        if out.ends_with(' ') && n > 0 && columns[n - 1].right {
            out.pop();
        }
        out.push('\n');
    }
    let count = rows.len();
    out.push_str(&format!("({count} {})\n", if count == 1 { "row" } else { "rows" }));
}

/// An error or a notice, from either backend: PostgreSQL's fields S, C,
/// M, D, H, P and W.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub severity: String,
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    /// 1-based character offset into the statement's text.
    pub position: Option<u32>,
    pub context: Option<String>,
}

impl Report {
    /// An embedded session's error.
    pub fn of_error(e: &qube_sql::Error) -> Report {
        Report {
            severity: "ERROR".into(),
            code: e.sqlstate().into(),
            message: e.to_string(),
            detail: e.detail().map(str::to_string),
            hint: e.hint().map(str::to_string),
            position: e.position(),
            context: e.context().map(str::to_string),
        }
    }

    /// An embedded session's notice or warning.
    pub fn of_notice(n: &qube_sql::Notice) -> Report {
        Report {
            severity: n.severity.as_str().into(),
            code: n.sqlstate.into(),
            message: n.message.clone(),
            detail: n.detail.clone(),
            hint: n.hint.clone(),
            ..Report::default()
        }
    }
}

/// An error or notice as psql prints it with the SQLSTATE (VERBOSITY
/// verbose style): the LINE and caret when it has a position, then
/// DETAIL, HINT and CONTEXT.
pub fn format_report(r: &Report, sql: &str) -> String {
    let mut s = format!("{}:  {}: {}\n", r.severity, r.code, r.message);
    if let Some(pos) = r.position {
        let pos = pos as usize;
        let mut seen = 0;
        for (n, line) in sql.split('\n').enumerate() {
            let len = line.chars().count() + 1;
            if pos <= seen + len {
                let prefix = format!("LINE {}: ", n + 1);
                let col = pos.saturating_sub(seen + 1);
                s.push_str(&format!("{prefix}{line}\n"));
                s.push_str(&" ".repeat(prefix.len() + col));
                s.push_str("^\n");
                break;
            }
            seen += len;
        }
    }
    for (label, text) in [("DETAIL", &r.detail), ("HINT", &r.hint), ("CONTEXT", &r.context)] {
        if let Some(t) = text {
            s.push_str(&format!("{label}:  {t}\n"));
        }
    }
    s
}

/// Why a statement did not complete.
#[derive(Debug)]
pub enum Failure {
    /// The statement failed; the session goes on.
    Sql(Box<Report>),
    /// The connection to the server is gone; nothing more can run.
    Lost(String),
}

/// Where the shell's transaction stands, for the prompt (psql's `%x`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnStatus {
    Idle,
    InBlock,
    Failed,
}

/// What runs the shell's statements: an embedded session or a server
/// over the PostgreSQL protocol (`crate::remote`). Both render results
/// the same way (`format_table`, command tags) so the output does not
/// depend on where the database is.
pub trait Backend {
    /// Runs one statement's text, appending its rendered result (a table
    /// and a blank line, or the command tag) to `out` and any notices it
    /// raised to `notices`.
    fn run(
        &mut self,
        sql: &str,
        out: &mut String,
        notices: &mut Vec<Report>,
    ) -> Result<(), Failure>;

    /// The transaction state after the last statement.
    fn status(&self) -> TxnStatus;
}

/// An embedded database's session.
pub struct Embedded {
    pub session: Session,
}

impl Backend for Embedded {
    /// Values are rendered in the row callback, where the statement's time
    /// zone is in effect.
    fn run(
        &mut self,
        sql: &str,
        out: &mut String,
        notices: &mut Vec<Report>,
    ) -> Result<(), Failure> {
        let session = &mut self.session;
        let prepared =
            session.prepare(sql).map_err(|e| Failure::Sql(Box::new(Report::of_error(&e))))?;
        for i in 0..prepared.len() {
            let mut cols: Option<Vec<Column>> = None;
            let mut rows: Vec<Vec<String>> = Vec::new();
            let text = |v: &Value| if v.is_null() { String::new() } else { v.to_string() };
            let r = session.execute_prepared_nth_streaming(
                &prepared,
                i,
                &[],
                &mut |columns: &[Column], row| {
                    if cols.is_none() {
                        cols = Some(columns.to_vec());
                    }
                    rows.push(row.iter().map(text).collect());
                    Ok(())
                },
            );
            notices.extend(session.take_notices().iter().map(Report::of_notice));
            let r = r.map_err(|e| Failure::Sql(Box::new(Report::of_error(&e))))?;
            rows.extend(r.rows.iter().map(|row| row.iter().map(text).collect()));
            let columns = cols.unwrap_or_else(|| r.columns.to_vec());
            if columns.is_empty() {
                out.push_str(&r.tag);
                out.push('\n');
            } else {
                let columns: Vec<Col> = columns.iter().map(Col::of).collect();
                format_table(&columns, &rows, out);
                out.push('\n');
            }
        }
        Ok(())
    }

    fn status(&self) -> TxnStatus {
        match self.session.transaction_status() {
            (false, _) => TxnStatus::Idle,
            (true, false) => TxnStatus::InBlock,
            (true, true) => TxnStatus::Failed,
        }
    }
}

/// Runs one statement and prints its result to stdout, its notices and
/// error to stderr (after flushing stdout, so they interleave in order),
/// and its time if `timing`.
fn run_and_print(
    backend: &mut dyn Backend,
    sql: &str,
    timing: bool,
    out: &mut String,
    notices: &mut Vec<Report>,
) -> Result<(), Failure> {
    out.clear();
    notices.clear();
    let start = Instant::now();
    let r = backend.run(sql, out, notices);
    let elapsed = start.elapsed();
    let stdout = std::io::stdout();
    let mut o = stdout.lock();
    if !notices.is_empty() {
        let _ = o.flush();
        for n in notices.iter() {
            eprint!("{}", format_report(n, sql));
        }
    }
    let _ = o.write_all(out.as_bytes());
    match &r {
        Ok(()) => {
            if timing {
                let _ = writeln!(o, "Time: {:.3} ms", elapsed.as_secs_f64() * 1e3);
            }
        }
        Err(Failure::Sql(e)) => {
            let _ = o.flush();
            eprint!("{}", format_report(e, sql));
        }
        Err(Failure::Lost(why)) => {
            let _ = o.flush();
            eprintln!("qubedb: the connection to the server was lost: {why}");
        }
    }
    let _ = o.flush();
    r
}

/// How a script ended, as psql's exit status: 0 all statements ran, 1 a
/// statement failed (the script stopped there, as with ON_ERROR_STOP),
/// 2 the connection to the server was lost.
pub fn run_script(backend: &mut dyn Backend, sql: &str, timing: bool) -> u8 {
    let (mut stmts, rest) = split(sql);
    if !rest.trim().is_empty() {
        stmts.push(rest.trim().to_string());
    }
    let (mut out, mut notices) = (String::new(), Vec::new());
    for s in stmts {
        match run_and_print(backend, &s, timing, &mut out, &mut notices) {
            Ok(()) => {}
            Err(Failure::Sql(_)) => return 1,
            Err(Failure::Lost(_)) => return 2,
        }
    }
    0
}

const HELP: &str = "\
General
  \\q                 quit
  \\?                 this help
  \\timing [on|off]   toggle timing of statements

Statements end with ';' and may span lines. History is kept in
~/.qubedb_history.
";

/// The interactive shell on `backend`; `target` names it in the banner,
/// `database` in the prompt. True unless the line editor failed or the
/// connection was lost.
pub fn repl(backend: &mut dyn Backend, target: &str, database: &str) -> bool {
    use rustyline::error::ReadlineError;
    let mut rl = match rustyline::DefaultEditor::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("qubedb shell: cannot start the line editor: {e}");
            return false;
        }
    };
    let history =
        std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".qubedb_history"));
    if let Some(h) = &history {
        let _ = rl.load_history(h);
    }
    println!(
        "qubedb shell {} on {target}. Type \\? for help, \\q to quit.",
        env!("CARGO_PKG_VERSION")
    );
    let mut timing = false;
    let mut buf = String::new();
    let (mut out, mut notices) = (String::new(), Vec::new());
    let mut ok = true;
    'lines: loop {
        // psql's prompts: `db=>`, `db=*>` in a transaction block, `db=!>`
        // in a failed one, `db->` on a continuation line.
        let prompt = if buf.is_empty() {
            let mark = match backend.status() {
                TxnStatus::Idle => "",
                TxnStatus::InBlock => "*",
                TxnStatus::Failed => "!",
            };
            format!("{database}={mark}> ")
        } else {
            format!("{database}-> ")
        };
        let line = match rl.readline(&prompt) {
            Ok(l) => l,
            Err(ReadlineError::Interrupted) => {
                buf.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                eprintln!("qubedb shell: {e}");
                break;
            }
        };
        let trimmed = line.trim();
        if buf.is_empty() && trimmed.starts_with('\\') {
            let _ = rl.add_history_entry(trimmed);
            let mut words = trimmed.split_whitespace();
            match words.next().unwrap_or("") {
                "\\q" => break,
                "\\?" => print!("{HELP}"),
                "\\timing" => {
                    timing = match words.next() {
                        Some("on") => true,
                        Some("off") => false,
                        _ => !timing,
                    };
                    println!("Timing is {}.", if timing { "on" } else { "off" });
                }
                other => eprintln!("invalid command {other}\nTry \\? for help."),
            }
            continue;
        }
        if !buf.is_empty() {
            buf.push('\n');
        }
        buf.push_str(&line);
        let (stmts, rest) = split(&buf);
        if stmts.is_empty() {
            if buf.trim().is_empty() {
                buf.clear();
            }
            continue;
        }
        let _ = rl.add_history_entry(buf.trim());
        for s in stmts {
            if let Err(Failure::Lost(_)) =
                run_and_print(backend, &s, timing, &mut out, &mut notices)
            {
                ok = false;
                break 'lines;
            }
        }
        buf = rest.trim_start().to_string();
    }
    if let Some(h) = &history {
        let _ = rl.save_history(h);
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use qube_sql::DataType;

    #[test]
    fn splits_at_top_level_semicolons() {
        let (s, rest) = split("select ';' ; select $$a;b$$; -- x;\nselect /* ; */ 1; sel");
        assert_eq!(s, ["select ';'", "select $$a;b$$", "-- x;\nselect /* ; */ 1"]);
        assert_eq!(rest, " sel");
        let (s, rest) = split("select $1;");
        assert_eq!(s, ["select $1"]);
        assert_eq!(rest, "");
    }

    #[test]
    fn formats_like_psql() {
        let cols = vec![
            Col::of(&Column::new("id", DataType::Integer)),
            Col::of(&Column::new("name", DataType::Text)),
        ];
        let mut out = String::new();
        format_table(
            &cols,
            &[vec!["1".into(), "alice".into()], vec!["10".into(), "".into()]],
            &mut out,
        );
        assert_eq!(out, " id | name  \n----+-------\n  1 | alice\n 10 | \n(2 rows)\n");
    }
}
