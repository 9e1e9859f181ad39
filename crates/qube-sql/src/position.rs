//! Error positions: PostgreSQL's error field P, the 1-based character
//! offset in the query text that an error points at.
//!
//! The parser reports a line and column for syntax errors. Binding errors
//! about a name (an unknown column, table or function, an ambiguous
//! column) point at the first whole-word occurrence of that name within
//! the failing statement's text (its span in the parsed AST), which is
//! where PostgreSQL points in all but contrived cases (the same name
//! written twice, one valid and one not).

use qube_common::Error;
use sqlparser::ast::{self, Spanned};

/// `err` with a position in `sql`, if one can be found.
pub fn locate(err: Error, sql: &str, stmt: Option<&ast::Statement>) -> Error {
    if err.position().is_some() {
        return err;
    }
    let Error::User { sqlstate, message, .. } = &err else {
        return err;
    };
    let pos = match *sqlstate {
        "42601" => line_col(message).and_then(|(l, c)| offset_of(sql, l, c)),
        "42703" | "42P01" | "42883" | "42702" | "42704" | "42P02" | "42712" => {
            let (start, end) = stmt.map_or((0, sql.len()), |s| byte_range(sql, s.span()));
            name_in(message)
                .and_then(|name| find_word(&sql[start..end], &name).map(|i| start + i))
                .map(|byte| sql[..byte].chars().count() as u32 + 1)
        }
        // Bad input text of a literal ('abc'::int, INSERT … VALUES ('x')
        // into a number column): PostgreSQL points at the literal, which
        // it converts while it binds; a value read at run time has no
        // position, and none is found for it unless the same text is
        // also written as a literal.
        "22P02" | "22003" | "22007" | "22008" => {
            let (start, end) = stmt.map_or((0, sql.len()), |s| byte_range(sql, s.span()));
            literal_in(message)
                .or_else(|| name_in(message))
                .and_then(|text| find_literal(&sql[start..end], &text).map(|i| start + i))
                .map(|byte| sql[..byte].chars().count() as u32 + 1)
        }
        _ => None,
    };
    match pos {
        Some(p) => err.with_position(p),
        None => err,
    }
}

/// "… at Line: 3, Column: 7" in a parser message.
fn line_col(msg: &str) -> Option<(u64, u64)> {
    let i = msg.rfind("Line: ")?;
    let rest = &msg[i + 6..];
    let (line, rest) = rest.split_once(", Column: ")?;
    let col: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((line.trim().parse().ok()?, col.parse().ok()?))
}

/// Where a 1-based line and column fall in `sql`: (byte offset,
/// character offset); the end of the text for a column just past the
/// last line's end.
fn locate_line_col(sql: &str, line: u64, col: u64) -> Option<(usize, usize)> {
    let (mut cur_line, mut cur_col) = (1, 1);
    for (chars, (byte, ch)) in sql.char_indices().enumerate() {
        if cur_line == line && cur_col == col {
            return Some((byte, chars));
        }
        if ch == '\n' {
            cur_line += 1;
            cur_col = 1;
        } else {
            cur_col += 1;
        }
    }
    (cur_line == line).then(|| (sql.len(), sql.chars().count()))
}

/// The character offset (1-based) of a 1-based line and column.
fn offset_of(sql: &str, line: u64, col: u64) -> Option<u32> {
    locate_line_col(sql, line, col).map(|(_, c)| c as u32 + 1)
}

/// The byte range of a span (its line/column locations) in `sql`; the
/// whole text when the span is empty.
fn byte_range(sql: &str, span: sqlparser::tokenizer::Span) -> (usize, usize) {
    if span.start.line == 0 {
        return (0, sql.len());
    }
    let at = |line, col| locate_line_col(sql, line, col).map(|(b, _)| b);
    let start = at(span.start.line, span.start.column).unwrap_or(0);
    let end = at(span.end.line, span.end.column).unwrap_or(sql.len()).max(start);
    (start, end.min(sql.len()))
}

/// The name an error message is about: the first quoted word, or the
/// function name of `function f(…) does not exist`, or `t.c` of
/// `column t.c does not exist`.
fn name_in(msg: &str) -> Option<String> {
    if let Some(rest) = msg.strip_prefix("function ") {
        return rest.split('(').next().map(str::to_string).filter(|s| !s.is_empty());
    }
    if let Some(i) = msg.find('"') {
        let rest = &msg[i + 1..];
        let j = rest.find('"')?;
        return Some(rest[..j].to_string()).filter(|s| !s.is_empty());
    }
    msg.strip_prefix("column ").and_then(|r| r.split_whitespace().next()).map(str::to_string)
}

/// The input text a bad-input message quotes (`…: "abc"`), empty too.
fn literal_in(msg: &str) -> Option<String> {
    let i = msg.find(": \"")?;
    let rest = msg[i + 3..].strip_suffix('"')?;
    Some(rest.to_string())
}

/// The byte offset of the string literal whose value is `text` in `sql`
/// (quotes doubled inside it), scanning literal by literal, so that the
/// empty string's `''` is not found inside `'it''s'`.
fn find_literal(sql: &str, text: &str) -> Option<usize> {
    let bytes = sql.as_bytes();
    let mut value = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\'' {
            i += 1;
            continue;
        }
        let open = i;
        value.clear();
        i += 1;
        while i < bytes.len() {
            if bytes[i] == b'\'' {
                if bytes.get(i + 1) == Some(&b'\'') {
                    value.push(b'\'');
                    i += 2;
                    continue;
                }
                break;
            }
            value.push(bytes[i]);
            i += 1;
        }
        if value == text.as_bytes() {
            return Some(open);
        }
        i += 1;
    }
    None
}

/// The byte offset of `name` as a whole word in `text`, unquoted
/// (case-insensitive) or quoted.
fn find_word(text: &str, name: &str) -> Option<usize> {
    let quoted = format!("\"{name}\"");
    if let Some(i) = text.find(&quoted) {
        return Some(i);
    }
    let lower = text.to_lowercase();
    if lower.len() != text.len() {
        // Lower-casing changed byte lengths: search the text as written.
        return whole_word(text, name);
    }
    whole_word(&lower, &name.to_lowercase())
}

fn whole_word(text: &str, name: &str) -> Option<usize> {
    let is_word = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
    let mut from = 0;
    while let Some(i) = text[from..].find(name) {
        let at = from + i;
        let before = text[..at].chars().next_back();
        let after = text[at + name.len()..].chars().next();
        if !before.is_some_and(is_word) && !after.is_some_and(is_word) && before != Some('\'') {
            return Some(at);
        }
        from = at + name.len().max(1);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions() {
        let e =
            locate(Error::user("42703", "column \"zz\" does not exist"), "SELECT zz FROM t", None);
        assert_eq!(e.position(), Some(8));
        let e = locate(
            Error::user("42P01", "relation \"nope\" does not exist"),
            "select *\nfrom NOPE",
            None,
        );
        assert_eq!(e.position(), Some(15));
        let e = locate(
            Error::user("42883", "function foo(integer) does not exist"),
            "SELECT foo(1)",
            None,
        );
        assert_eq!(e.position(), Some(8));
        // A longer word containing the name is skipped.
        let e = locate(
            Error::user("42703", "column \"a\" does not exist"),
            "SELECT aa, a FROM t",
            None,
        );
        assert_eq!(e.position(), Some(12));
        let e = locate(
            Error::user(
                "42601",
                "syntax error: Expected: an expression, found: FROM at Line: 2, Column: 3",
            ),
            "SELECT\n, FROM",
            None,
        );
        assert_eq!(e.position(), Some(10));
        let e = locate(Error::user("22012", "division by zero"), "SELECT 1/0", None);
        assert_eq!(e.position(), None);
        // A literal's bad text points at the literal, quotes doubled.
        let e = locate(
            Error::user("22P02", "invalid input syntax for type boolean: \"it's\""),
            "SELECT 'x', bool 'it''s'",
            None,
        );
        assert_eq!(e.position(), Some(18));
        let e = locate(
            Error::user("22003", "value \"100000\" is out of range for type smallint"),
            "INSERT INTO t VALUES ('100000')",
            None,
        );
        assert_eq!(e.position(), Some(23));
        // Not written as a literal: no position.
        let e = locate(
            Error::user("22P02", "invalid input syntax for type integer: \"abc\""),
            "SELECT t::int FROM x",
            None,
        );
        assert_eq!(e.position(), None);
        // The empty string, not the doubled quote inside another literal.
        let e = locate(
            Error::user("22P02", "invalid input syntax for type integer: \"\""),
            "INSERT INTO t VALUES ('it''s', '')",
            None,
        );
        assert_eq!(e.position(), Some(32));
    }
}
