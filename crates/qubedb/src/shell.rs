//! `qubedb shell` and `qubedb sql`: SQL on an embedded database with
//! psql's aligned output.

use std::io::Write;
use std::time::Instant;

use qube_sql::{Column, DataType, Session, Value};

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

fn right_aligned(t: &DataType) -> bool {
    matches!(
        t,
        DataType::SmallInt
            | DataType::Integer
            | DataType::BigInt
            | DataType::Real
            | DataType::Double
            | DataType::Numeric(_)
    )
}

/// A result as psql prints it (aligned format): centred headers, a
/// separator line, numbers right-aligned, NULL empty, then `(N rows)`.
pub fn format_table(columns: &[Column], rows: &[Vec<String>], out: &mut String) {
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
        for (i, cell) in row.iter().enumerate() {
            let w = widths[i];
            let pad = w - width(cell);
            if i > 0 {
                out.push('|');
            }
            out.push(' ');
            if right_aligned(&columns[i].data_type) {
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
        if out.ends_with(' ') && n > 0 && right_aligned(&columns[n - 1].data_type) {
            out.pop();
        }
        out.push('\n');
    }
    let count = rows.len();
    out.push_str(&format!("({count} {})\n", if count == 1 { "row" } else { "rows" }));
}

/// An error as psql prints it with the SQLSTATE (VERBOSITY verbose
/// style), with the LINE and caret when the error has a position.
pub fn format_error(e: &qube_sql::Error, sql: &str) -> String {
    let mut s = format!("ERROR:  {}: {}\n", e.sqlstate(), e);
    if let Some(pos) = e.position() {
        let pos = pos as usize;
        let mut seen = 0;
        for (n, line) in sql.split('\n').enumerate() {
            let len = line.chars().count() + 1;
            if pos <= seen + len {
                let prefix = format!("LINE {}: ", n + 1);
                let col = pos - seen - 1;
                s.push_str(&format!("{prefix}{line}\n"));
                s.push_str(&" ".repeat(prefix.len() + col));
                s.push_str("^\n");
                break;
            }
            seen += len;
        }
    }
    s
}

/// Runs one statement and renders its result (a table, or the command
/// tag). Values are rendered in the row callback, where the statement's
/// time zone is in effect.
pub fn run_statement(session: &mut Session, sql: &str) -> Result<String, qube_sql::Error> {
    let prepared = session.prepare(sql)?;
    let mut out = String::new();
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
        )?;
        rows.extend(r.rows.iter().map(|row| row.iter().map(text).collect()));
        let columns = cols.unwrap_or(r.columns);
        if columns.is_empty() {
            out.push_str(&r.tag);
            out.push('\n');
        } else {
            format_table(&columns, &rows, &mut out);
            out.push('\n');
        }
    }
    Ok(out)
}

/// Runs a script statement by statement; stops at the first error
/// (psql's ON_ERROR_STOP), printing it to stderr. True if all succeeded.
pub fn run_script(session: &mut Session, sql: &str, timing: bool) -> bool {
    let (mut stmts, rest) = split(sql);
    if !rest.trim().is_empty() {
        stmts.push(rest.trim().to_string());
    }
    let stdout = std::io::stdout();
    for s in stmts {
        let start = Instant::now();
        match run_statement(session, &s) {
            Ok(text) => {
                let mut o = stdout.lock();
                let _ = o.write_all(text.as_bytes());
                if timing {
                    let _ = writeln!(o, "Time: {:.3} ms", start.elapsed().as_secs_f64() * 1e3);
                }
            }
            Err(e) => {
                let _ = std::io::stdout().flush();
                eprint!("{}", format_error(&e, &s));
                return false;
            }
        }
    }
    true
}

const HELP: &str = "\
General
  \\q                 quit
  \\?                 this help
  \\timing [on|off]   toggle timing of statements

Statements end with ';' and may span lines. History is kept in
~/.qubedb_history.
";

/// The interactive shell.
pub fn repl(session: &mut Session, target: &str) -> bool {
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
    loop {
        let prompt = if buf.is_empty() { "qubedb=> " } else { "qubedb-> " };
        let line = match rl.readline(prompt) {
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
            let start = Instant::now();
            match run_statement(session, &s) {
                Ok(text) => {
                    print!("{text}");
                    if timing {
                        println!("Time: {:.3} ms", start.elapsed().as_secs_f64() * 1e3);
                    }
                }
                Err(e) => eprint!("{}", format_error(&e, &s)),
            }
        }
        buf = rest.trim_start().to_string();
    }
    if let Some(h) = &history {
        let _ = rl.save_history(h);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let cols = vec![Column::new("id", DataType::Integer), Column::new("name", DataType::Text)];
        let mut out = String::new();
        format_table(
            &cols,
            &[vec!["1".into(), "alice".into()], vec!["10".into(), "".into()]],
            &mut out,
        );
        assert_eq!(out, " id | name  \n----+-------\n  1 | alice\n 10 | \n(2 rows)\n");
    }
}
