//! PostgreSQL's regular-expression functions over the `regex` crate:
//! `~`/`~*`, regexp_match, regexp_like, regexp_count, regexp_instr,
//! regexp_substr, regexp_replace (with PostgreSQL 15's start and N) and
//! regexp_split_to_array.
//!
//! PostgreSQL's advanced regular expressions and the crate's syntax agree
//! on the common cases; backreferences and lookaround do not compile
//! (2201B). Flags follow PostgreSQL's table 9.24: `i`/`c` case
//! (in)sensitive, `n` (or `m`) newline-sensitive, `p` partial and `w`
//! inverse partial newline-sensitive, `s` not newline-sensitive (the
//! default: `.` matches a newline and `^`/`$` only the string's ends),
//! `x` expanded syntax, `q` the pattern is a literal, `t`/`e` the
//! default syntax; a later flag overrides an earlier one. `g` is taken by
//! the functions that allow it. Positions, `start` and lengths count
//! characters, as in PostgreSQL.
//!
//! Compiled patterns are cached per thread: a pattern is usually a
//! constant that every row evaluates again.

use std::cell::RefCell;
use std::collections::HashMap;

use qube_common::{Error, Result};

use super::Row;
use super::morefuncs::{int, text_ref};
use crate::plan::{Func, SetFunc};
use crate::types::Value;

/// Parsed flags: how to compile, and whether `g` was given.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Options {
    case_insensitive: bool,
    /// `.` (and negated brackets) exclude a newline.
    dot_no_newline: bool,
    /// `^` and `$` match at line breaks.
    multi_line: bool,
    expanded: bool,
    literal: bool,
}

/// No flags: PostgreSQL's defaults.
const DEFAULT: Options = Options {
    case_insensitive: false,
    dot_no_newline: false,
    multi_line: false,
    expanded: false,
    literal: false,
};

fn parse_flags(flags: &str, func: &str, allow_global: bool) -> Result<(Options, bool)> {
    let mut o = DEFAULT;
    let mut global = false;
    for c in flags.chars() {
        match c {
            'g' if allow_global => global = true,
            'g' => {
                let e = Error::user(
                    "22023",
                    format!("{func}() does not support the \"global\" option"),
                );
                return Err(if func == "regexp_match" {
                    e.with_hint("Use the regexp_matches function instead.")
                } else {
                    e
                });
            }
            'i' => o.case_insensitive = true,
            'c' => o.case_insensitive = false,
            'n' | 'm' => (o.dot_no_newline, o.multi_line) = (true, true),
            'p' => (o.dot_no_newline, o.multi_line) = (true, false),
            'w' => (o.dot_no_newline, o.multi_line) = (false, true),
            's' => (o.dot_no_newline, o.multi_line) = (false, false),
            'x' => o.expanded = true,
            'q' => o.literal = true,
            't' | 'e' => {}
            other => {
                return Err(Error::user(
                    "22023",
                    format!("invalid regular expression option: \"{other}\""),
                ));
            }
        }
    }
    Ok((o, global))
}

/// The compiled pattern, from the thread's cache (looked up by the
/// borrowed pattern: a hit allocates nothing).
fn compiled<R>(pattern: &str, o: Options, f: impl FnOnce(&regex::Regex) -> R) -> Result<R> {
    thread_local! {
        static CACHE: RefCell<HashMap<String, Vec<(Options, regex::Regex)>>> =
            RefCell::new(HashMap::new());
    }
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if let Some((_, re)) = c.get(pattern).and_then(|v| v.iter().find(|(k, _)| *k == o)) {
            return Ok(f(re));
        }
        let source = if o.literal { regex::escape(pattern) } else { pattern.to_string() };
        let re = regex::RegexBuilder::new(&source)
            .case_insensitive(o.case_insensitive)
            .dot_matches_new_line(!o.dot_no_newline)
            .multi_line(o.multi_line)
            .ignore_whitespace(o.expanded && !o.literal)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| Error::user("2201B", format!("invalid regular expression: {e}")))?;
        let out = f(&re);
        if c.len() > 256 {
            c.clear();
        }
        c.entry(pattern.to_string()).or_default().push((o, re));
        Ok(out)
    })
}

/// `s ~ pattern` (`~*`: case-insensitive).
pub fn matches(s: &str, pattern: &str, case_insensitive: bool) -> Result<bool> {
    compiled(pattern, Options { case_insensitive, ..DEFAULT }, |re| re.is_match(s))
}

/// The byte offset of 1-based character position `start` (past the end:
/// the string's length).
fn byte_at(s: &str, start: i64) -> usize {
    let skip = usize::try_from(start - 1).unwrap_or(0);
    s.char_indices().nth(skip).map_or(s.len(), |(b, _)| b)
}

/// The 1-based character position of byte offset `b`.
fn char_pos(s: &str, b: usize) -> i64 {
    s[..b].chars().count() as i64 + 1
}

fn positive(name: &str, v: i64, min: i64) -> Result<i64> {
    if v < min {
        return Err(Error::user("22023", format!("invalid value for parameter \"{name}\": {v}")));
    }
    Ok(v)
}

/// The matches at or after byte `from`, not overlapping, as the crate finds
/// them (an empty match moves on by one character).
fn captures_from<'s>(
    re: &regex::Regex,
    s: &'s str,
    from: usize,
) -> impl Iterator<Item = regex::Captures<'s>> {
    let mut at = from;
    let mut done = false;
    std::iter::from_fn(move || {
        if done || at > s.len() {
            return None;
        }
        let caps = re.captures_at(s, at)?;
        let m = caps.get(0)?;
        at = if m.end() > m.start() {
            m.end()
        } else {
            match s[m.end()..].chars().next() {
                Some(c) => m.end() + c.len_utf8(),
                None => {
                    done = true;
                    m.end()
                }
            }
        };
        Some(caps)
    })
}

pub fn call(func: Func, args: &[Value]) -> Result<Value> {
    if args.iter().any(Value::is_null) {
        return Ok(Value::Null);
    }
    let s = text_ref(&args[0]);
    let pattern = text_ref(&args[1]);
    Ok(match func {
        Func::RegexpMatch => {
            let (o, _) = parse_flags(&text_ref(&args[2]), "regexp_match", false)?;
            compiled(&pattern, o, |re| {
                re.captures(&s).map_or(Value::Null, |caps| Value::Array(groups(&caps)))
            })?
        }
        Func::RegexpLike => {
            let (o, _) = parse_flags(&text_ref(&args[2]), "regexp_like", false)?;
            Value::Bool(compiled(&pattern, o, |re| re.is_match(&s))?)
        }
        Func::RegexpCount => {
            let start = positive("start", int(&args[2]), 1)?;
            let (o, _) = parse_flags(&text_ref(&args[3]), "regexp_count", false)?;
            let from = byte_at(&s, start);
            let n = compiled(&pattern, o, |re| captures_from(re, &s, from).count())?;
            Value::Int4(n as i32)
        }
        Func::RegexpInstr => {
            let start = positive("start", int(&args[2]), 1)?;
            let n = positive("n", int(&args[3]), 1)?;
            let end = positive("endoption", int(&args[4]), 0)?;
            let (o, _) = parse_flags(&text_ref(&args[5]), "regexp_instr", false)?;
            let sub = positive("subexpr", int(&args[6]), 0)?;
            let from = byte_at(&s, start);
            let found = compiled(&pattern, o, |re| {
                let caps = captures_from(re, &s, from).nth((n - 1) as usize)?;
                let m = caps.get(usize::try_from(sub).ok()?)?;
                Some(if end == 0 { m.start() } else { m.end() })
            })?;
            Value::Int4(found.map_or(0, |b| char_pos(&s, b) as i32))
        }
        Func::RegexpSubstr => {
            let start = positive("start", int(&args[2]), 1)?;
            let n = positive("n", int(&args[3]), 1)?;
            let (o, _) = parse_flags(&text_ref(&args[4]), "regexp_substr", false)?;
            let sub = positive("subexpr", int(&args[5]), 0)?;
            let from = byte_at(&s, start);
            compiled(&pattern, o, |re| {
                captures_from(re, &s, from)
                    .nth((n - 1) as usize)
                    .and_then(|caps| caps.get(usize::try_from(sub).ok()?))
                    .map_or(Value::Null, |m| Value::Text(m.as_str().to_string()))
            })?
        }
        Func::RegexpReplace => {
            let replacement = pg_replacement(&text_ref(&args[2]));
            let start = positive("start", int(&args[3]), 1)?;
            // i32::MIN: N not given.
            let n = int(&args[4]);
            let given = n != i32::MIN as i64;
            if given {
                positive("n", n, 0)?;
            }
            let (o, global) = parse_flags(&text_ref(&args[5]), "regexp_replace", true)?;
            let from = byte_at(&s, start);
            compiled(&pattern, o, |re| {
                let mut out = String::with_capacity(s.len());
                let mut copied = 0;
                let all = n == 0 || (!given && global);
                let which = if n > 0 { n as usize } else { 1 };
                for (i, caps) in captures_from(re, &s, from).enumerate() {
                    if !all && i + 1 < which {
                        continue;
                    }
                    let Some(m) = caps.get(0) else { continue };
                    out.push_str(&s[copied..m.start()]);
                    caps.expand(&replacement, &mut out);
                    copied = m.end();
                    if !all {
                        break;
                    }
                }
                out.push_str(&s[copied..]);
                Value::Text(out)
            })?
        }
        Func::RegexpSplitToArray => {
            let (o, _) = parse_flags(&text_ref(&args[2]), "regexp_split_to_array", false)?;
            compiled(&pattern, o, |re| {
                Value::Array(re.split(&s).map(|p| Value::Text(p.to_string())).collect())
            })?
        }
        _ => return Err(Error::Internal(format!("{func:?} is not a regexp function"))),
    })
}

/// The rows of regexp_matches and regexp_split_to_table: (string,
/// pattern, flags), none of them NULL (a NULL gives no rows).
pub fn set_rows(func: SetFunc, args: &[Value]) -> Result<Vec<Row>> {
    if args.len() < 3 || args.iter().any(Value::is_null) {
        return Ok(Vec::new());
    }
    let s = text_ref(&args[0]);
    let pattern = text_ref(&args[1]);
    match func {
        SetFunc::RegexpMatches => {
            let (o, global) = parse_flags(&text_ref(&args[2]), "regexp_matches", true)?;
            compiled(&pattern, o, |re| {
                captures_from(re, &s, 0)
                    .take(if global { usize::MAX } else { 1 })
                    .map(|caps| vec![Value::Array(groups(&caps))])
                    .collect()
            })
        }
        SetFunc::RegexpSplit => {
            let (o, _) = parse_flags(&text_ref(&args[2]), "regexp_split_to_table", false)?;
            compiled(&pattern, o, |re| re.split(&s).map(|p| vec![Value::Text(p.into())]).collect())
        }
        _ => Err(Error::Internal(format!("{func:?} is not a regexp function"))),
    }
}

/// A match's parenthesized groups as text (NULL where a group took no
/// part), or the whole match when the pattern has none: what
/// regexp_match and regexp_matches return.
fn groups(caps: &regex::Captures) -> Vec<Value> {
    let text_of =
        |m: Option<regex::Match>| m.map_or(Value::Null, |m| Value::Text(m.as_str().into()));
    if caps.len() == 1 {
        vec![text_of(caps.get(0))]
    } else {
        (1..caps.len()).map(|i| text_of(caps.get(i))).collect()
    }
}

/// PostgreSQL's `\1` … `\9` and `\&` in a replacement, as the regex
/// crate's `${1}`; a literal `$` is escaped.
fn pg_replacement(r: &str) -> String {
    let mut out = String::with_capacity(r.len());
    let mut chars = r.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(d @ '1'..='9') => out.push_str(&format!("${{{d}}}")),
                Some('&') => out.push_str("${0}"),
                Some(other) => out.push(other),
                None => out.push('\\'),
            },
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out
}
