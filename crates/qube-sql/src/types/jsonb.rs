//! `json` and `jsonb`: parsing, PostgreSQL's text output, ordering, and
//! jsonb's binary encoding.
//!
//! `json` is kept as the text given (validated by the same parser), as
//! PostgreSQL does; its operators re-parse the text and return slices of
//! it verbatim. `jsonb` is a normalized tree: object keys unique (the last
//! duplicate wins) and sorted as PostgreSQL sorts them (shorter keys first,
//! then bytewise), numbers exact (`JNum`: decimal digits and an exponent,
//! with the display scale of the input, so `1.50` prints as `1.50` and
//! equals `1.5`).
//!
//! # Row encoding (`encode` / `decode`)
//!
//! ```text
//! node := 0 null | 1 false | 2 true
//!       | 3 number   len:varint  canonical numeric text (ASCII)
//!       | 4 string   len:varint  UTF-8
//!       | 5 array    count:varint  size:varint  node*           (size = bytes of the nodes)
//!       | 6 object   count:varint  size:varint  (klen:varint key)* node*
//! ```
//!
//! Keys are stored in their sorted order, ahead of the values, and every
//! container carries its byte size, so a reader can find a key or skip a
//! subtree without decoding it.
//!
//! # Order (`key` encoding, `cmp`)
//!
//! PostgreSQL's btree order (`compareJsonbContainers`) walks both values as
//! token streams: a container token compares first by type (object >
//! array > boolean > number > string > null), then by element/pair count;
//! a top-level scalar is a one-element "raw scalar" array that sorts before
//! a real one-element array. `key` writes that token stream memcomparably
//! (counts as big-endian u32, strings escaped and terminated, numbers in
//! the numeric key form), so byte order is PostgreSQL's order and equal
//! values have equal keys (GROUP BY, DISTINCT, unique indexes).

use std::cmp::Ordering;
use std::fmt::{self, Write as _};

use qube_common::{Error, Result};

use super::encoding::put_varint;

/// Deepest nesting accepted (54001 beyond): every walk of a value is
/// recursive, and must fit a 2 MiB thread stack in a debug build.
pub const MAX_DEPTH: usize = 500;

/// A jsonb value.
#[derive(Debug, Clone, PartialEq)]
pub enum Jsonb {
    Null,
    Bool(bool),
    Number(JNum),
    String(String),
    Array(Vec<Jsonb>),
    /// Keys unique and in `key_order`.
    Object(Vec<(String, Jsonb)>),
}

/// An exact decimal number: `0.DIGITS × 10^exp`, digits without leading
/// or trailing zeros (none for zero), printed with `dscale` decimals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JNum {
    pub neg: bool,
    pub digits: String,
    pub exp: i32,
    pub dscale: u32,
}

pub fn syntax_error(type_name: &str) -> Error {
    Error::user("22P02", format!("invalid input syntax for type {type_name}"))
}

/// PostgreSQL's jsonb key order: shorter first, then bytewise.
pub fn key_order(a: &str, b: &str) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

impl JNum {
    /// Parses a JSON number (also accepts a leading '+' and surrounding
    /// forms that `numeric` accepts when `lenient`).
    pub fn parse(s: &str) -> Option<JNum> {
        let b = s.as_bytes();
        let mut i = 0;
        let neg = b.first() == Some(&b'-');
        if neg {
            i += 1;
        }
        let int_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let int = &s[int_start..i];
        let mut frac = "";
        if i < b.len() && b[i] == b'.' {
            i += 1;
            let f = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            frac = &s[f..i];
        }
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let mut e: i64 = 0;
        if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
            i += 1;
            let eneg = match b.get(i) {
                Some(b'-') => {
                    i += 1;
                    true
                }
                Some(b'+') => {
                    i += 1;
                    false
                }
                _ => false,
            };
            let es = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
                if i - es > 6 {
                    return None;
                }
            }
            if es == i {
                return None;
            }
            e = s[es..i].parse().ok()?;
            if eneg {
                e = -e;
            }
        }
        if i != b.len() || e.abs() > 1000 {
            return None;
        }
        let dscale = (frac.len() as i64 - e).max(0) as u32;
        let all = format!("{int}{frac}");
        let lead = all.len() - all.trim_start_matches('0').len();
        let digits = all.trim_start_matches('0').trim_end_matches('0').to_string();
        if digits.is_empty() {
            return Some(JNum { neg: false, digits, exp: 0, dscale });
        }
        let exp = (int.len() as i64 - lead as i64 + e) as i32;
        Some(JNum { neg, digits, exp, dscale })
    }

    pub fn from_i64(i: i64) -> JNum {
        JNum::parse(&i.to_string()).unwrap_or(JNum::zero())
    }

    pub fn zero() -> JNum {
        JNum { neg: false, digits: String::new(), exp: 0, dscale: 0 }
    }

    pub fn is_zero(&self) -> bool {
        self.digits.is_empty()
    }

    /// Numeric comparison (the display scale does not matter).
    pub fn cmp_value(&self, other: &JNum) -> Ordering {
        let sign = |n: &JNum| {
            if n.is_zero() {
                1
            } else if n.neg {
                0
            } else {
                2
            }
        };
        let (sa, sb) = (sign(self), sign(other));
        if sa != sb || sa == 1 {
            return sa.cmp(&sb);
        }
        let mag = self.exp.cmp(&other.exp).then_with(|| self.digits.cmp(&other.digits));
        if self.neg { mag.reverse() } else { mag }
    }

    /// The value as an integer, if it is one.
    pub fn to_i64(&self) -> Option<i64> {
        self.to_string().parse().ok()
    }

    fn key(&self, out: &mut Vec<u8>) {
        if self.is_zero() {
            out.push(1);
            return;
        }
        out.push(if self.neg { 0 } else { 2 });
        let start = out.len();
        out.extend_from_slice(&((self.exp as u32) ^ 0x8000_0000).to_be_bytes());
        out.extend_from_slice(self.digits.as_bytes());
        out.push(0);
        if self.neg {
            for b in &mut out[start..] {
                *b = !*b;
            }
        }
    }
}

impl fmt::Display for JNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.digits.as_bytes();
        let mut s = String::new();
        if self.neg && !self.is_zero() {
            s.push('-');
        }
        if self.exp <= 0 || d.is_empty() {
            s.push('0');
        } else {
            for k in 0..self.exp as usize {
                s.push(*d.get(k).unwrap_or(&b'0') as char);
            }
        }
        if self.dscale > 0 {
            s.push('.');
            for k in 0..self.dscale as i64 {
                // Digit at position exp + k (0-based into `digits`).
                let pos = self.exp as i64 + k;
                let c = if pos >= 0 { *d.get(pos as usize).unwrap_or(&b'0') } else { b'0' };
                s.push(c as char);
            }
        }
        f.write_str(&s)
    }
}

// ---------------------------------------------------------------- parsing

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    pos: usize,
    depth: usize,
    /// jsonb: dedupe and sort object keys; json: keep them as given.
    normalize: bool,
}

impl<'a> Parser<'a> {
    fn ws(&mut self) {
        while self.pos < self.b.len() && matches!(self.b[self.pos], b' ' | b'\t' | b'\n' | b'\r') {
            self.pos += 1;
        }
    }

    fn value(&mut self) -> Result<Jsonb> {
        self.ws();
        let bad = || syntax_error("json");
        if self.depth >= MAX_DEPTH {
            return Err(Error::user(
                "54001",
                format!("stack depth limit exceeded: json nests more than {MAX_DEPTH} deep"),
            ));
        }
        let c = *self.b.get(self.pos).ok_or_else(bad)?;
        Ok(match c {
            b'{' => {
                self.pos += 1;
                self.depth += 1;
                let mut pairs: Vec<(String, Jsonb)> = Vec::new();
                self.ws();
                if self.b.get(self.pos) == Some(&b'}') {
                    self.pos += 1;
                } else {
                    loop {
                        self.ws();
                        if self.b.get(self.pos) != Some(&b'"') {
                            return Err(bad());
                        }
                        let k = self.string()?;
                        self.ws();
                        if self.b.get(self.pos) != Some(&b':') {
                            return Err(bad());
                        }
                        self.pos += 1;
                        let v = self.value()?;
                        pairs.push((k, v));
                        self.ws();
                        match self.b.get(self.pos) {
                            Some(b',') => self.pos += 1,
                            Some(b'}') => {
                                self.pos += 1;
                                break;
                            }
                            _ => return Err(bad()),
                        }
                    }
                }
                self.depth -= 1;
                if self.normalize {
                    normalize_pairs(&mut pairs);
                }
                Jsonb::Object(pairs)
            }
            b'[' => {
                self.pos += 1;
                self.depth += 1;
                let mut items = Vec::new();
                self.ws();
                if self.b.get(self.pos) == Some(&b']') {
                    self.pos += 1;
                } else {
                    loop {
                        items.push(self.value()?);
                        self.ws();
                        match self.b.get(self.pos) {
                            Some(b',') => self.pos += 1,
                            Some(b']') => {
                                self.pos += 1;
                                break;
                            }
                            _ => return Err(bad()),
                        }
                    }
                }
                self.depth -= 1;
                Jsonb::Array(items)
            }
            b'"' => Jsonb::String(self.string()?),
            b'-' | b'0'..=b'9' => {
                let start = self.pos;
                self.pos += 1;
                while self.pos < self.b.len()
                    && matches!(self.b[self.pos], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    self.pos += 1;
                }
                let t = &self.s[start..self.pos];
                // JSON's grammar: no leading zeros, digits around the point.
                let body = t.strip_prefix('-').unwrap_or(t);
                let int_len = body.bytes().take_while(u8::is_ascii_digit).count();
                let rest = &body[int_len..];
                let leading_zero = int_len > 1 && body.starts_with('0');
                let empty_fraction =
                    rest.starts_with(".e") || rest.starts_with(".E") || body.ends_with('.');
                if int_len == 0 || leading_zero || empty_fraction {
                    return Err(bad());
                }
                Jsonb::Number(JNum::parse(t).ok_or_else(bad)?)
            }
            _ => {
                let rest = &self.b[self.pos..];
                let word = rest.iter().take_while(|c| c.is_ascii_alphanumeric()).count();
                let w = &rest[..word];
                self.pos += word;
                match w {
                    b"true" => Jsonb::Bool(true),
                    b"false" => Jsonb::Bool(false),
                    b"null" => Jsonb::Null,
                    _ => return Err(bad()),
                }
            }
        })
    }

    fn string(&mut self) -> Result<String> {
        let bad = || syntax_error("json");
        self.pos += 1;
        let mut out = String::new();
        loop {
            let start = self.pos;
            while self.pos < self.b.len() && !matches!(self.b[self.pos], b'"' | b'\\') {
                if self.b[self.pos] < 0x20 {
                    return Err(bad());
                }
                self.pos += 1;
            }
            out.push_str(&self.s[start..self.pos]);
            match self.b.get(self.pos) {
                None => return Err(bad()),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                _ => {}
            }
            self.pos += 1;
            let c = *self.b.get(self.pos).ok_or_else(bad)?;
            self.pos += 1;
            match c {
                b'"' => out.push('"'),
                b'\\' => out.push('\\'),
                b'/' => out.push('/'),
                b'b' => out.push('\u{8}'),
                b'f' => out.push('\u{c}'),
                b'n' => out.push('\n'),
                b'r' => out.push('\r'),
                b't' => out.push('\t'),
                b'u' => {
                    let mut cp = self.hex4()?;
                    if (0xD800..0xDC00).contains(&cp) {
                        if self.b.get(self.pos) == Some(&b'\\')
                            && self.b.get(self.pos + 1) == Some(&b'u')
                        {
                            self.pos += 2;
                            let lo = self.hex4()?;
                            if !(0xDC00..0xE000).contains(&lo) {
                                return Err(bad());
                            }
                            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                        } else {
                            return Err(bad());
                        }
                    } else if (0xDC00..0xE000).contains(&cp) {
                        return Err(bad());
                    }
                    // json keeps its text, so only jsonb must refuse NUL.
                    if cp == 0 && self.normalize {
                        return Err(Error::user(
                            "22P05",
                            "unsupported Unicode escape sequence: \\u0000 cannot be converted to text",
                        ));
                    }
                    out.push(char::from_u32(cp).ok_or_else(bad)?);
                }
                _ => return Err(bad()),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32> {
        let h = self.s.get(self.pos..self.pos + 4).ok_or_else(|| syntax_error("json"))?;
        let v = u32::from_str_radix(h, 16).map_err(|_| syntax_error("json"))?;
        if !h.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(syntax_error("json"));
        }
        self.pos += 4;
        Ok(v)
    }
}

/// Sorts pairs in key order, keeping the last of duplicate keys.
pub fn normalize_pairs(pairs: &mut Vec<(String, Jsonb)>) {
    // Stable sort keeps duplicates in input order; keep the last of each run.
    pairs.sort_by(|a, b| key_order(&a.0, &b.0));
    let mut out: Vec<(String, Jsonb)> = Vec::with_capacity(pairs.len());
    for p in pairs.drain(..) {
        match out.last_mut() {
            Some(last) if last.0 == p.0 => *last = p,
            _ => out.push(p),
        }
    }
    *pairs = out;
}

fn parse_with(text: &str, normalize: bool) -> Result<Jsonb> {
    let mut p = Parser { s: text, b: text.as_bytes(), pos: 0, depth: 0, normalize };
    let v = p.value()?;
    p.ws();
    if p.pos != p.b.len() {
        return Err(syntax_error("json"));
    }
    Ok(v)
}

/// Text → jsonb.
pub fn parse(text: &str) -> Result<Jsonb> {
    parse_with(text, true)
}

/// Checks json text (the value keeps the text as given).
pub fn validate_json(text: &str) -> Result<()> {
    parse_with(text, false).map(|_| ())
}

/// json text → a tree with keys in their given order (duplicates kept).
pub fn parse_json(text: &str) -> Result<Jsonb> {
    parse_with(text, false)
}

/// The raw text of each member of a json object (key, value text) or each
/// element of a json array; `None` if the text is not that container.
pub fn json_members(text: &str) -> Option<JsonParts<'_>> {
    let mut p = Parser { s: text, b: text.as_bytes(), pos: 0, depth: 0, normalize: false };
    p.ws();
    match p.b.get(p.pos)? {
        b'{' => {
            p.pos += 1;
            let mut out = Vec::new();
            p.ws();
            if p.b.get(p.pos) == Some(&b'}') {
                return Some(JsonParts::Object(out));
            }
            loop {
                p.ws();
                let k = p.string().ok()?;
                p.ws();
                p.pos += 1; // ':'
                p.ws();
                let start = p.pos;
                p.value().ok()?;
                out.push((k, &text[start..p.pos]));
                p.ws();
                match p.b.get(p.pos)? {
                    b',' => p.pos += 1,
                    _ => return Some(JsonParts::Object(out)),
                }
            }
        }
        b'[' => {
            p.pos += 1;
            let mut out = Vec::new();
            p.ws();
            if p.b.get(p.pos) == Some(&b']') {
                return Some(JsonParts::Array(out));
            }
            loop {
                p.ws();
                let start = p.pos;
                p.value().ok()?;
                out.push(&text[start..p.pos]);
                p.ws();
                match p.b.get(p.pos)? {
                    b',' => p.pos += 1,
                    _ => return Some(JsonParts::Array(out)),
                }
            }
        }
        _ => None,
    }
}

pub enum JsonParts<'a> {
    Object(Vec<(String, &'a str)>),
    Array(Vec<&'a str>),
}

// ---------------------------------------------------------------- output

/// Appends `s` as a JSON string literal, escaped as PostgreSQL does.
pub fn escape_into(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl Jsonb {
    /// PostgreSQL's jsonb text: `{"a": 1, "b": [1, 2]}`.
    pub fn write(&self, out: &mut String) {
        match self {
            Jsonb::Null => out.push_str("null"),
            Jsonb::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Jsonb::Number(n) => {
                let _ = write!(out, "{n}");
            }
            Jsonb::String(s) => escape_into(s, out),
            Jsonb::Array(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    v.write(out);
                }
                out.push(']');
            }
            Jsonb::Object(pairs) => {
                out.push('{');
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    escape_into(k, out);
                    out.push_str(": ");
                    v.write(out);
                }
                out.push('}');
            }
        }
    }

    /// jsonb_pretty's layout: four-space indents, one member per line.
    pub fn pretty(&self, indent: usize, out: &mut String) {
        let pad = |n: usize, out: &mut String| out.push_str(&"    ".repeat(n));
        match self {
            Jsonb::Array(items) if !items.is_empty() => {
                out.push_str("[\n");
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(",\n");
                    }
                    pad(indent + 1, out);
                    v.pretty(indent + 1, out);
                }
                out.push('\n');
                pad(indent, out);
                out.push(']');
            }
            Jsonb::Object(pairs) if !pairs.is_empty() => {
                out.push_str("{\n");
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.push_str(",\n");
                    }
                    pad(indent + 1, out);
                    escape_into(k, out);
                    out.push_str(": ");
                    v.pretty(indent + 1, out);
                }
                out.push('\n');
                pad(indent, out);
                out.push('}');
            }
            Jsonb::Array(_) | Jsonb::Object(_) => {
                // PostgreSQL prints an empty container over two lines.
                let (open, close) =
                    if matches!(self, Jsonb::Array(_)) { ('[', ']') } else { ('{', '}') };
                out.push(open);
                out.push('\n');
                pad(indent, out);
                out.push(close);
            }
            other => other.write(out),
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Jsonb::Null => "null",
            Jsonb::Bool(_) => "boolean",
            Jsonb::Number(_) => "number",
            Jsonb::String(_) => "string",
            Jsonb::Array(_) => "array",
            Jsonb::Object(_) => "object",
        }
    }

    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Jsonb> {
        match self {
            Jsonb::Object(pairs) => {
                pairs.binary_search_by(|(k, _)| key_order(k, key)).ok().map(|i| &pairs[i].1)
            }
            _ => None,
        }
    }

    /// Element `i` of an array; negative counts from the end.
    pub fn index(&self, i: i64) -> Option<&Jsonb> {
        match self {
            Jsonb::Array(items) => {
                let n = items.len() as i64;
                let i = if i < 0 { n + i } else { i };
                if i < 0 { None } else { items.get(i as usize) }
            }
            _ => None,
        }
    }

    /// `->>`: a string's text, other values' jsonb text, JSON null as SQL NULL.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Jsonb::Null => None,
            Jsonb::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }

    /// `@>`: PostgreSQL's containment (arrays contain elements in any
    /// order; a top-level array contains a bare scalar it has).
    pub fn contains(&self, other: &Jsonb, top: bool) -> bool {
        match (self, other) {
            (Jsonb::Object(a), Jsonb::Object(b)) => b.iter().all(|(k, bv)| {
                a.binary_search_by(|(ak, _)| key_order(ak, k))
                    .is_ok_and(|i| a[i].1.contains(bv, false))
            }),
            (Jsonb::Array(a), Jsonb::Array(b)) => b.iter().all(|bv| match bv {
                Jsonb::Array(_) | Jsonb::Object(_) => a.iter().any(|av| av.contains(bv, false)),
                scalar => a.iter().any(|av| av == scalar || av.scalar_eq(scalar)),
            }),
            (Jsonb::Array(a), scalar) if top && !matches!(scalar, Jsonb::Object(_)) => {
                a.iter().any(|av| av.scalar_eq(scalar))
            }
            (a, b) => a.scalar_eq(b),
        }
    }

    fn scalar_eq(&self, other: &Jsonb) -> bool {
        match (self, other) {
            (Jsonb::Number(a), Jsonb::Number(b)) => a.cmp_value(b) == Ordering::Equal,
            (Jsonb::Array(_) | Jsonb::Object(_), _) => false,
            (a, b) => a == b,
        }
    }

    /// PostgreSQL's btree order: the order of `key`'s bytes, computed
    /// without building them.
    pub fn btree_cmp(&self, other: &Jsonb) -> Ordering {
        let raw = |j: &Jsonb| !matches!(j, Jsonb::Array(_) | Jsonb::Object(_));
        match (raw(self), raw(other)) {
            (true, false) => raw_vs_container(other).reverse(),
            (false, true) => raw_vs_container(self),
            _ => self.token_cmp(other),
        }
    }

    fn token_code(&self) -> u8 {
        match self {
            Jsonb::Null => 0,
            Jsonb::String(_) => 1,
            Jsonb::Number(_) => 2,
            Jsonb::Bool(_) => 3,
            Jsonb::Array(_) => 0x10,
            Jsonb::Object(_) => 0x11,
        }
    }

    fn token_cmp(&self, other: &Jsonb) -> Ordering {
        self.token_code().cmp(&other.token_code()).then_with(|| match (self, other) {
            (Jsonb::Array(x), Jsonb::Array(y)) => x.len().cmp(&y.len()).then_with(|| {
                x.iter()
                    .zip(y)
                    .map(|(p, q)| p.token_cmp(q))
                    .find(|o| o.is_ne())
                    .unwrap_or(Ordering::Equal)
            }),
            (Jsonb::Object(x), Jsonb::Object(y)) => x.len().cmp(&y.len()).then_with(|| {
                x.iter()
                    .zip(y)
                    .map(|((ka, va), (kb, vb))| {
                        ka.as_bytes().cmp(kb.as_bytes()).then_with(|| va.token_cmp(vb))
                    })
                    .find(|o| o.is_ne())
                    .unwrap_or(Ordering::Equal)
            }),
            (Jsonb::String(x), Jsonb::String(y)) => x.as_bytes().cmp(y.as_bytes()),
            (Jsonb::Number(x), Jsonb::Number(y)) => x.cmp_value(y),
            (Jsonb::Bool(x), Jsonb::Bool(y)) => x.cmp(y),
            _ => Ordering::Equal,
        })
    }

    /// The memcomparable encoding of the token stream (see the module doc).
    pub fn key(&self, out: &mut Vec<u8>) {
        match self {
            Jsonb::Array(_) | Jsonb::Object(_) => self.key_token(out),
            scalar => {
                out.push(0x10);
                out.extend_from_slice(&1u32.to_be_bytes());
                out.push(0); // raw scalar: before a real one-element array
                scalar.key_token(out);
            }
        }
    }

    fn key_token(&self, out: &mut Vec<u8>) {
        match self {
            Jsonb::Null => out.push(0),
            Jsonb::String(s) => {
                out.push(1);
                key_str(s, out);
            }
            Jsonb::Number(n) => {
                out.push(2);
                n.key(out);
            }
            Jsonb::Bool(b) => {
                out.push(3);
                out.push(*b as u8);
            }
            Jsonb::Array(items) => {
                out.push(0x10);
                out.extend_from_slice(&(items.len() as u32).to_be_bytes());
                out.push(1);
                for v in items {
                    v.key_token(out);
                }
            }
            Jsonb::Object(pairs) => {
                out.push(0x11);
                out.extend_from_slice(&(pairs.len() as u32).to_be_bytes());
                for (k, v) in pairs {
                    out.push(1);
                    key_str(k, out);
                    v.key_token(out);
                }
            }
        }
    }

    /// Drops object members whose value is null, at every depth.
    pub fn strip_nulls(self) -> Jsonb {
        match self {
            Jsonb::Object(pairs) => Jsonb::Object(
                pairs
                    .into_iter()
                    .filter(|(_, v)| *v != Jsonb::Null)
                    .map(|(k, v)| (k, v.strip_nulls()))
                    .collect(),
            ),
            Jsonb::Array(items) => {
                Jsonb::Array(items.into_iter().map(Jsonb::strip_nulls).collect())
            }
            other => other,
        }
    }
}

/// A container against a top-level scalar (a one-element raw array): an
/// object is greater; an array by its length, and at length 1 greater.
fn raw_vs_container(c: &Jsonb) -> Ordering {
    match c {
        Jsonb::Array(items) => items.len().cmp(&1).then(Ordering::Greater),
        _ => Ordering::Greater,
    }
}

fn key_str(s: &str, out: &mut Vec<u8>) {
    for &byte in s.as_bytes() {
        out.push(byte);
        if byte == 0 {
            out.push(0xff);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

impl fmt::Display for Jsonb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        self.write(&mut s);
        f.write_str(&s)
    }
}

// ---------------------------------------------------------------- binary

/// Appends the row encoding of `v` (see the module doc).
pub fn encode(v: &Jsonb, out: &mut Vec<u8>) {
    match v {
        Jsonb::Null => out.push(0),
        Jsonb::Bool(b) => out.push(1 + *b as u8),
        Jsonb::Number(n) => {
            out.push(3);
            let t = n.to_string();
            put_varint(out, t.len() as u64);
            out.extend_from_slice(t.as_bytes());
        }
        Jsonb::String(s) => {
            out.push(4);
            put_varint(out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        Jsonb::Array(items) => {
            out.push(5);
            put_varint(out, items.len() as u64);
            let mut body = Vec::new();
            for i in items {
                encode(i, &mut body);
            }
            put_varint(out, body.len() as u64);
            out.extend_from_slice(&body);
        }
        Jsonb::Object(pairs) => {
            out.push(6);
            put_varint(out, pairs.len() as u64);
            let mut body = Vec::new();
            for (k, _) in pairs {
                put_varint(&mut body, k.len() as u64);
                body.extend_from_slice(k.as_bytes());
            }
            for (_, v) in pairs {
                encode(v, &mut body);
            }
            put_varint(out, body.len() as u64);
            out.extend_from_slice(&body);
        }
    }
}

fn corrupt() -> Error {
    Error::Internal("undecodable jsonb".into())
}

/// Decodes one node at `pos`.
pub fn decode(b: &[u8], pos: &mut usize) -> Result<Jsonb> {
    let tag = *b.get(*pos).ok_or_else(corrupt)?;
    *pos += 1;
    let varint = |pos: &mut usize| super::encoding::get_varint(b, pos);
    let take = |pos: &mut usize, n: usize| -> Result<&[u8]> {
        let s = b.get(*pos..*pos + n).ok_or_else(corrupt)?;
        *pos += n;
        Ok(s)
    };
    let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).map_err(|_| corrupt());
    Ok(match tag {
        0 => Jsonb::Null,
        1 => Jsonb::Bool(false),
        2 => Jsonb::Bool(true),
        3 => {
            let n = varint(pos)? as usize;
            let t = text(take(pos, n)?)?;
            Jsonb::Number(JNum::parse(&t).ok_or_else(corrupt)?)
        }
        4 => {
            let n = varint(pos)? as usize;
            Jsonb::String(text(take(pos, n)?)?)
        }
        5 => {
            let n = varint(pos)? as usize;
            let _size = varint(pos)?;
            let mut items = Vec::with_capacity(n.min(1 << 16));
            for _ in 0..n {
                items.push(decode(b, pos)?);
            }
            Jsonb::Array(items)
        }
        6 => {
            let n = varint(pos)? as usize;
            let _size = varint(pos)?;
            let mut keys = Vec::with_capacity(n.min(1 << 16));
            for _ in 0..n {
                let l = varint(pos)? as usize;
                keys.push(text(take(pos, l)?)?);
            }
            let mut pairs = Vec::with_capacity(keys.len());
            for k in keys {
                pairs.push((k, decode(b, pos)?));
            }
            Jsonb::Object(pairs)
        }
        _ => return Err(corrupt()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(s: &str) -> Jsonb {
        parse(s).unwrap()
    }

    #[test]
    fn normalizes_and_prints_like_postgresql() {
        assert_eq!(j(r#"{"b":1,"a":[1, 2.50],"b":2}"#).to_string(), r#"{"a": [1, 2.50], "b": 2}"#);
        assert_eq!(j(r#"{"aa":1,"b":2}"#).to_string(), r#"{"b": 2, "aa": 1}"#);
        assert_eq!(j("1e2").to_string(), "100");
        assert_eq!(j("1.5e-3").to_string(), "0.0015");
        assert_eq!(j("-0").to_string(), "0");
        assert_eq!(j("0.00").to_string(), "0.00");
        assert_eq!(j(r#""a\u00e9\n""#).to_string(), "\"aé\\n\"");
        for bad in ["", "{", "[1,]", "01", "1.", ".5", "tru", "{\"a\" 1}", "\"\u{1}\"", "1 2"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn order_and_encoding() {
        let vals = ["[]", "null", "\"a\"", "\"b\"", "-1", "0", "1.5", "false", "true", "[1]", "{}"];
        for w in vals.windows(2) {
            assert_eq!(j(w[0]).btree_cmp(&j(w[1])), Ordering::Less, "{w:?}");
        }
        assert_eq!(j("1.0").btree_cmp(&j("1")), Ordering::Equal);
        // The comparison agrees with the key bytes everywhere.
        let all = [
            "[]",
            "{}",
            "null",
            "1",
            "1.0",
            "-2",
            "\"\"",
            "\"a\\u0001\"",
            "\"ab\"",
            "true",
            "[1]",
            "[[1]]",
            "[1, 2]",
            "[\"a\"]",
            "{\"a\": 1}",
            "{\"b\": 1}",
            "{\"a\": 2}",
            "{\"aa\": 1}",
            "{\"a\": 1, \"b\": 2}",
            "[{}]",
            "[null, 1]",
            "[1, null]",
            "false",
        ];
        for a in all {
            for b in all {
                let (mut ka, mut kb) = (Vec::new(), Vec::new());
                j(a).key(&mut ka);
                j(b).key(&mut kb);
                assert_eq!(j(a).btree_cmp(&j(b)), ka.cmp(&kb), "{a} vs {b}");
            }
        }
        assert_eq!(j("[]").btree_cmp(&j("1")), Ordering::Less);
        for s in [r#"{"a": [1, {"b": null}], "c": "x"}"#, "1.50", "\"\"", "[]"] {
            let mut buf = Vec::new();
            encode(&j(s), &mut buf);
            let mut pos = 0;
            assert_eq!(decode(&buf, &mut pos).unwrap(), j(s));
            assert_eq!(pos, buf.len());
        }
    }

    #[test]
    fn containment() {
        assert!(j(r#"{"a": 1, "b": [1, 2]}"#).contains(&j(r#"{"b": [2]}"#), true));
        assert!(!j(r#"{"a": 1}"#).contains(&j(r#"{"a": 2}"#), true));
        assert!(j("[1, 2, 3]").contains(&j("2"), true));
        assert!(j("[1, [2]]").contains(&j("[[2]]"), true));
    }
}
