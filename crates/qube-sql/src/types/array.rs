//! One-dimensional arrays: PostgreSQL's text form (`{1,2,"a b",NULL}`)
//! and its order.
//!
//! An array value is the list of its elements (`Value::Array`), lower
//! bound 1; the element type lives in the plan (`DataType::Array`), so an
//! empty array has none. Multi-dimensional input is 0A000.

use std::cmp::Ordering;

use qube_common::types::DataType;
use qube_common::{Error, Result};

use super::cast;
use super::value::Value;

fn malformed(text: &str, detail: &str) -> Error {
    let _ = detail;
    Error::user("22P02", format!("malformed array literal: \"{text}\""))
}

pub fn multi_dim() -> Error {
    Error::user("0A000", "multidimensional arrays are not supported yet")
}

/// Parses PostgreSQL's array text into elements of type `elem`.
pub fn parse(text: &str, elem: &DataType) -> Result<Vec<Value>> {
    let t = text.trim_matches(|c: char| c.is_ascii_whitespace());
    if t.starts_with('[') {
        return Err(Error::user("0A000", "array bounds in array input are not supported yet"));
    }
    let Some(body) = t.strip_prefix('{') else {
        return Err(malformed(text, "Array value must start with \"{\" or dimension information."));
    };
    let chars: Vec<char> = body.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    skip_ws(&mut i);
    if chars.get(i) == Some(&'}') {
        i += 1;
        skip_ws(&mut i);
        if i != chars.len() {
            return Err(malformed(text, "Junk after closing right brace."));
        }
        return Ok(out);
    }
    loop {
        skip_ws(&mut i);
        match chars.get(i) {
            None => return Err(malformed(text, "Unexpected end of input.")),
            Some('{') => return Err(multi_dim()),
            Some(',') | Some('}') => return Err(malformed(text, "Unexpected delimiter.")),
            _ => {}
        }
        let mut s = String::new();
        let mut quoted_any = false;
        // Unquoted text keeps inner spaces but loses trailing ones.
        let mut trailing_ws = 0usize;
        loop {
            let Some(&c) = chars.get(i) else {
                return Err(malformed(text, "Unexpected end of input."));
            };
            match c {
                '"' => {
                    quoted_any = true;
                    trailing_ws = 0;
                    i += 1;
                    loop {
                        match chars.get(i) {
                            None => return Err(malformed(text, "Unexpected end of input.")),
                            Some('"') => {
                                i += 1;
                                break;
                            }
                            Some('\\') => {
                                let n = chars
                                    .get(i + 1)
                                    .ok_or_else(|| malformed(text, "Unexpected end of input."))?;
                                s.push(*n);
                                i += 2;
                            }
                            Some(&c) => {
                                s.push(c);
                                i += 1;
                            }
                        }
                    }
                }
                '\\' => {
                    let n = chars.get(i + 1).ok_or_else(|| malformed(text, "Unexpected end."))?;
                    s.push(*n);
                    trailing_ws = 0;
                    quoted_any = true;
                    i += 2;
                }
                ',' | '}' => break,
                '{' => return Err(malformed(text, "Unexpected \"{\" character.")),
                c => {
                    if c.is_ascii_whitespace() {
                        trailing_ws += 1;
                    } else {
                        trailing_ws = 0;
                    }
                    s.push(c);
                    i += 1;
                }
            }
        }
        if trailing_ws > 0 {
            let keep = s.chars().count() - trailing_ws;
            s = s.chars().take(keep).collect();
        }
        let v = if !quoted_any && s.eq_ignore_ascii_case("null") {
            Value::Null
        } else {
            cast::cast(Value::Text(s), elem)?
        };
        out.push(v);
        match chars.get(i) {
            Some(',') => i += 1,
            Some('}') => {
                i += 1;
                skip_ws(&mut i);
                if i != chars.len() {
                    return Err(malformed(text, "Junk after closing right brace."));
                }
                return Ok(out);
            }
            _ => return Err(malformed(text, "Unexpected end of input.")),
        }
    }
}

/// PostgreSQL's array output: elements quoted when they need it.
pub fn write(items: &[Value], out: &mut String) {
    out.push('{');
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if v.is_null() {
            out.push_str("NULL");
            continue;
        }
        let s = v.to_string();
        let needs = s.is_empty()
            || s.eq_ignore_ascii_case("null")
            || s.chars()
                .any(|c| matches!(c, '{' | '}' | ',' | '"' | '\\') || c.is_ascii_whitespace());
        if needs {
            out.push('"');
            for c in s.chars() {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        } else {
            out.push_str(&s);
        }
    }
    out.push('}');
}

/// PostgreSQL's array order: element by element (NULL after every value),
/// then the shorter array first.
pub fn cmp(a: &[Value], b: &[Value]) -> Option<Ordering> {
    for (x, y) in a.iter().zip(b) {
        let o = match (x.is_null(), y.is_null()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            _ => x.sql_cmp(y)?,
        };
        if o != Ordering::Equal {
            return Some(o);
        }
    }
    Some(a.len().cmp(&b.len()))
}

/// Elements equal as `=` sees them (NULLs never equal anything).
pub fn elem_eq(x: &Value, y: &Value) -> bool {
    x.sql_cmp(y) == Some(Ordering::Equal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(items: &[Value]) -> String {
        let mut s = String::new();
        write(items, &mut s);
        s
    }

    #[test]
    fn parse_and_print() {
        let t = parse(r#"{a, "b c" ,NULL,"NULL",\"x,""}"#, &DataType::Text).unwrap();
        assert_eq!(show(&t), r#"{a,"b c",NULL,"NULL","\"x",""}"#);
        let i = parse(" { 1 ,2,3 } ", &DataType::Integer).unwrap();
        assert_eq!(show(&i), "{1,2,3}");
        assert!(parse("{}", &DataType::Integer).unwrap().is_empty());
        assert_eq!(parse("{{1},{2}}", &DataType::Integer).unwrap_err().sqlstate(), "0A000");
        for bad in ["1,2", "{1,2", "{1,,2}", "{1} x", "{a}"] {
            assert!(parse(bad, &DataType::Integer).is_err(), "{bad}");
        }
    }

    #[test]
    fn order() {
        let a = |v: &[i32]| v.iter().map(|i| Value::Int4(*i)).collect::<Vec<_>>();
        assert_eq!(cmp(&a(&[1, 2]), &a(&[1, 2, 0])), Some(Ordering::Less));
        assert_eq!(cmp(&a(&[2]), &a(&[1, 9])), Some(Ordering::Greater));
        assert_eq!(cmp(&[Value::Null], &a(&[5])), Some(Ordering::Greater));
    }
}
