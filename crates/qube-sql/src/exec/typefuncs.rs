//! Functions and operators of uuid, json, jsonb and arrays, with
//! PostgreSQL's NULL rules (most are strict; the constructors, the
//! concatenations and `= ANY` are not) and error messages.
//!
//! json values are text: their operators parse it and return slices of it
//! verbatim, as PostgreSQL does; jsonb values are `types::jsonb::Jsonb`
//! trees.

use std::cmp::Ordering;

use qube_common::types::DataType;
use qube_common::{Error, Result};

use super::Row;
use super::eval::eval;
use crate::plan::{Expr, Func, SetFunc};
use crate::types::Value;
use crate::types::cast;
use crate::types::jsonb::{self, JNum, JsonParts, Jsonb, escape_into, normalize_pairs};
use crate::types::value::{format_float, format_uuid};

fn invalid(msg: impl Into<String>) -> Error {
    Error::user("22023", msg)
}

fn internal(func: Func) -> Error {
    Error::Internal(format!("bad arguments for {func:?}"))
}

fn jb(j: Jsonb) -> Value {
    Value::Jsonb(Box::new(j))
}

pub fn call(func: Func, mut args: Vec<Value>) -> Result<Value> {
    // Non-strict functions first.
    match func {
        Func::SetReturning(f) => {
            return Err(Error::user(
                "0A000",
                format!(
                    "set-returning function {} is only supported as a whole select-list item or in FROM",
                    f.name()
                ),
            ));
        }
        Func::GenRandomUuid => return Ok(Value::Uuid(random_uuid())),
        Func::ArrayCtor => return Ok(Value::Array(args)),
        Func::RowCtor => return Ok(Value::Record(args)),
        Func::RowToJson => {
            let mut s = String::from("{");
            for (i, pair) in args.chunks(2).enumerate() {
                if i > 0 {
                    s.push(',');
                }
                if let [Value::Text(name), v] = pair {
                    escape_into(name, &mut s);
                    s.push(':');
                    json_text(v, &mut s);
                }
            }
            s.push('}');
            return Ok(Value::Json(s));
        }
        Func::JsonbBuildObject | Func::JsonBuildObject => {
            return build_object(args, func == Func::JsonbBuildObject);
        }
        Func::JsonbBuildArray => {
            let items = args.into_iter().map(to_jsonb).collect::<Result<_>>()?;
            return Ok(jb(Jsonb::Array(items)));
        }
        Func::JsonBuildArray => {
            let mut s = String::from("[");
            for (i, a) in args.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                json_text(a, &mut s);
            }
            s.push(']');
            return Ok(Value::Json(s));
        }
        Func::ArrayAny { op, all } => {
            let arr = args.pop().unwrap_or(Value::Null);
            let v = args.pop().unwrap_or(Value::Null);
            let Value::Array(items) = arr else { return Ok(Value::Null) };
            if items.is_empty() {
                return Ok(Value::Bool(all));
            }
            let mut result = Some(all);
            for x in &items {
                match super::eval::compare(op, &v, x) {
                    Value::Bool(b) if b != all => return Ok(Value::Bool(b)),
                    Value::Null => result = None,
                    _ => {}
                }
            }
            return Ok(result.map_or(Value::Null, Value::Bool));
        }
        Func::ArrayCat => {
            let b = args.pop().unwrap_or(Value::Null);
            let a = args.pop().unwrap_or(Value::Null);
            return Ok(match (a, b) {
                (Value::Array(mut x), Value::Array(y)) => {
                    x.extend(y);
                    Value::Array(x)
                }
                (Value::Null, y) => y,
                (x, _) => x,
            });
        }
        Func::ArrayAppend => {
            let e = args.pop().unwrap_or(Value::Null);
            let a = args.pop().unwrap_or(Value::Null);
            let mut items = match a {
                Value::Array(x) => x,
                _ => Vec::new(),
            };
            items.push(e);
            return Ok(Value::Array(items));
        }
        Func::ArrayPrepend => {
            let a = args.pop().unwrap_or(Value::Null);
            let e = args.pop().unwrap_or(Value::Null);
            let mut items = vec![e];
            if let Value::Array(x) = a {
                items.extend(x);
            }
            return Ok(Value::Array(items));
        }
        Func::ArrayPosition | Func::ArrayRemove => {
            let start = if args.len() == 3 { args.pop() } else { None };
            let e = args.pop().unwrap_or(Value::Null);
            let Some(Value::Array(items)) = args.pop() else { return Ok(Value::Null) };
            let same = |x: &Value| match (x.is_null(), e.is_null()) {
                (true, true) => true,
                (false, false) => x.sql_cmp(&e) == Some(Ordering::Equal),
                _ => false,
            };
            if func == Func::ArrayRemove {
                return Ok(Value::Array(items.into_iter().filter(|x| !same(x)).collect()));
            }
            let from = match start {
                Some(Value::Null) => return Ok(Value::Null),
                Some(v) => v.as_i64().unwrap_or(1).max(1) as usize,
                None => 1,
            };
            return Ok(items
                .iter()
                .enumerate()
                .skip(from - 1)
                .find(|(_, x)| same(x))
                .map_or(Value::Null, |(i, _)| Value::Int4(i as i32 + 1)));
        }
        Func::ArrayToString => {
            let null_str = if args.len() == 3 { args.pop() } else { None };
            let d = args.pop().unwrap_or(Value::Null);
            let a = args.pop().unwrap_or(Value::Null);
            let (Value::Array(items), Value::Text(d)) = (a, d) else { return Ok(Value::Null) };
            let null_str = match null_str {
                Some(Value::Text(s)) => Some(s),
                _ => None,
            };
            let mut parts = Vec::new();
            for x in items {
                if x.is_null() {
                    if let Some(n) = &null_str {
                        parts.push(n.clone());
                    }
                } else {
                    parts.push(cast::to_text(x));
                }
            }
            return Ok(Value::Text(parts.join(&d)));
        }
        Func::StringToArray => {
            let null_str = if args.len() == 3 { args.pop() } else { None };
            let d = args.pop().unwrap_or(Value::Null);
            let Some(Value::Text(s)) = args.pop() else { return Ok(Value::Null) };
            let null_str = match null_str {
                Some(Value::Text(n)) => Some(n),
                _ => None,
            };
            let parts: Vec<String> = if s.is_empty() {
                Vec::new()
            } else {
                match d {
                    Value::Text(d) if d.is_empty() => vec![s],
                    Value::Text(d) => s.split(d.as_str()).map(str::to_string).collect(),
                    _ => s.chars().map(|c| c.to_string()).collect(),
                }
            };
            return Ok(Value::Array(
                parts
                    .into_iter()
                    .map(
                        |p| {
                            if null_str.as_ref() == Some(&p) { Value::Null } else { Value::Text(p) }
                        },
                    )
                    .collect(),
            ));
        }
        _ => {}
    }
    if args.iter().any(Value::is_null) {
        return Ok(Value::Null);
    }
    let mut it = args.into_iter();
    let mut next = || it.next().ok_or_else(|| internal(func));
    Ok(match func {
        Func::JsonGet | Func::JsonGetText => {
            let (v, k) = (next()?, next()?);
            let text = func == Func::JsonGetText;
            match v {
                Value::Jsonb(j) => {
                    let hit = match &k {
                        Value::Text(key) => j.get(key),
                        i => j.index(i.as_i64().unwrap_or(i64::MAX)),
                    };
                    jsonb_result(hit, text)
                }
                Value::Json(s) => json_result(json_step(&s, &k), text),
                _ => return Err(internal(func)),
            }
        }
        Func::JsonPath | Func::JsonPathText => {
            let (v, p) = (next()?, next()?);
            let text = func == Func::JsonPathText;
            let Value::Array(path) = p else { return Err(internal(func)) };
            if path.iter().any(Value::is_null) {
                return Ok(Value::Null);
            }
            match v {
                Value::Jsonb(j) => {
                    let mut cur: Option<&Jsonb> = Some(&j);
                    for step in &path {
                        let key = cast::to_text(step.clone());
                        cur = cur.and_then(|c| match c {
                            Jsonb::Object(_) => c.get(&key),
                            Jsonb::Array(_) => {
                                key.trim().parse::<i64>().ok().and_then(|i| c.index(i))
                            }
                            _ => None,
                        });
                    }
                    jsonb_result(cur, text)
                }
                Value::Json(s) => {
                    let mut cur: Option<String> = Some(s.trim().to_string());
                    for step in &path {
                        let key = Value::Text(cast::to_text(step.clone()));
                        cur = cur.and_then(|c| {
                            let is_array = c.starts_with('[');
                            let k = if is_array {
                                match &key {
                                    Value::Text(t) => Value::Int8(t.trim().parse().ok()?),
                                    _ => return None,
                                }
                            } else {
                                key.clone()
                            };
                            json_step(&c, &k)
                        });
                    }
                    json_result(cur, text)
                }
                _ => return Err(internal(func)),
            }
        }
        Func::Contains => {
            match (next()?, next()?) {
                (Value::Jsonb(a), Value::Jsonb(b)) => Value::Bool(a.contains(&b, true)),
                (Value::Array(a), Value::Array(b)) => Value::Bool(b.iter().all(|y| {
                    !y.is_null() && a.iter().any(|x| x.sql_cmp(y) == Some(Ordering::Equal))
                })),
                _ => return Err(internal(func)),
            }
        }
        Func::Overlap => {
            match (next()?, next()?) {
                (Value::Array(a), Value::Array(b)) => Value::Bool(b.iter().any(|y| {
                    !y.is_null() && a.iter().any(|x| x.sql_cmp(y) == Some(Ordering::Equal))
                })),
                _ => return Err(internal(func)),
            }
        }
        Func::JsonExists | Func::JsonExistsAny | Func::JsonExistsAll => {
            let (v, k) = (next()?, next()?);
            let Value::Jsonb(j) = v else { return Err(internal(func)) };
            let has = |key: &str| match &*j {
                Jsonb::Object(_) => j.get(key).is_some(),
                Jsonb::Array(items) => {
                    items.iter().any(|i| matches!(i, Jsonb::String(s) if s == key))
                }
                Jsonb::String(s) => s == key,
                _ => false,
            };
            match (func, k) {
                (Func::JsonExists, Value::Text(key)) => Value::Bool(has(&key)),
                (_, Value::Array(keys)) => {
                    let keys: Vec<String> =
                        keys.into_iter().filter(|k| !k.is_null()).map(cast::to_text).collect();
                    Value::Bool(if func == Func::JsonExistsAny {
                        keys.iter().any(|k| has(k))
                    } else {
                        keys.iter().all(|k| has(k))
                    })
                }
                _ => return Err(internal(func)),
            }
        }
        Func::JsonbConcat => match (next()?, next()?) {
            (Value::Jsonb(a), Value::Jsonb(b)) => jb(concat(*a, *b)),
            _ => return Err(internal(func)),
        },
        Func::JsonbDelete => {
            let (v, k) = (next()?, next()?);
            let Value::Jsonb(j) = v else { return Err(internal(func)) };
            jb(delete(*j, k)?)
        }
        Func::JsonbDeletePath => {
            let (v, p) = (next()?, next()?);
            let (Value::Jsonb(j), Value::Array(path)) = (v, p) else {
                return Err(internal(func));
            };
            if !matches!(*j, Jsonb::Array(_) | Jsonb::Object(_)) {
                return Err(invalid("cannot delete path in scalar"));
            }
            if path.iter().any(Value::is_null) {
                return Err(invalid("path element at position 1 is null"));
            }
            let path: Vec<String> = path.into_iter().map(cast::to_text).collect();
            let mut j = *j;
            delete_path(&mut j, &path, 0)?;
            jb(j)
        }
        Func::JsonTypeof => match next()? {
            Value::Jsonb(j) => Value::Text(j.type_name().into()),
            Value::Json(s) => Value::Text(jsonb::parse_json(&s)?.type_name().into()),
            _ => return Err(internal(func)),
        },
        Func::JsonArrayLength => {
            let j = match next()? {
                Value::Jsonb(j) => *j,
                Value::Json(s) => jsonb::parse_json(&s)?,
                _ => return Err(internal(func)),
            };
            match j {
                Jsonb::Array(items) => Value::Int4(items.len() as i32),
                Jsonb::Object(_) => return Err(invalid("cannot get array length of a non-array")),
                _ => return Err(invalid("cannot get array length of a scalar")),
            }
        }
        Func::ToJsonb => jb(to_jsonb(next()?)?),
        Func::ToJson => {
            let mut s = String::new();
            json_text(&next()?, &mut s);
            Value::Json(s)
        }
        Func::JsonbPretty => match next()? {
            Value::Jsonb(j) => {
                let mut s = String::new();
                j.pretty(0, &mut s);
                Value::Text(s)
            }
            _ => return Err(internal(func)),
        },
        Func::JsonObject | Func::JsonbObject => {
            let first = next()?;
            object_from_arrays(first, next().ok(), func == Func::JsonbObject)?
        }
        Func::JsonbStripNulls => match next()? {
            Value::Jsonb(j) => jb(j.strip_nulls()),
            _ => return Err(internal(func)),
        },
        Func::JsonbSet | Func::JsonbInsert => {
            let (t, p, new) = (next()?, next()?, next()?);
            // jsonb_set's create_if_missing (default true), jsonb_insert's
            // insert_after (default false).
            let flag = match next() {
                Ok(v) => v == Value::Bool(true),
                Err(_) => func == Func::JsonbSet,
            };
            let (Value::Jsonb(t), Value::Array(path), Value::Jsonb(new)) = (t, p, new) else {
                return Err(internal(func));
            };
            if let Some(i) = path.iter().position(Value::is_null) {
                return Err(Error::user(
                    "22004",
                    format!("path element at position {} is null", i + 1),
                ));
            }
            let path: Vec<String> = path.into_iter().map(cast::to_text).collect();
            if matches!(*t, Jsonb::Array(_) | Jsonb::Object(_)) {
                let mut t = *t;
                if func == Func::JsonbSet {
                    set_path(&mut t, &path, 0, *new, flag)?;
                } else {
                    insert_path(&mut t, &path, 0, *new, flag)?;
                }
                jb(t)
            } else if path.is_empty() {
                Value::Jsonb(t)
            } else {
                return Err(invalid("cannot set path in scalar"));
            }
        }
        Func::RecordField(k) => {
            let Value::Record(fields) = next()? else { return Err(internal(func)) };
            fields.into_iter().nth(k).unwrap_or(Value::Null)
        }
        Func::Subscript => {
            let (a, i) = (next()?, next()?);
            let Value::Array(items) = a else { return Err(internal(func)) };
            let i = i.as_i64().unwrap_or(0);
            if i < 1 {
                return Ok(Value::Null);
            }
            items.into_iter().nth((i - 1) as usize).unwrap_or(Value::Null)
        }
        Func::Slice => {
            let (a, lo, hi) = (next()?, next()?, next()?);
            let Value::Array(items) = a else { return Err(internal(func)) };
            let n = items.len() as i64;
            let lo = lo.as_i64().unwrap_or(1).max(1);
            let hi = hi.as_i64().unwrap_or(n).min(n);
            if lo > hi {
                return Ok(Value::Array(Vec::new()));
            }
            Value::Array(items[(lo - 1) as usize..hi as usize].to_vec())
        }
        Func::ArrayLength => {
            let (a, d) = (next()?, next()?);
            let Value::Array(items) = a else { return Err(internal(func)) };
            if d.as_i64() == Some(1) && !items.is_empty() {
                Value::Int4(items.len() as i32)
            } else {
                Value::Null
            }
        }
        Func::ArrayLower | Func::ArrayUpper => {
            let (a, d) = (next()?, next()?);
            let Value::Array(items) = a else { return Err(internal(func)) };
            if d.as_i64() != Some(1) || items.is_empty() {
                return Ok(Value::Null);
            }
            Value::Int4(if func == Func::ArrayLower { 1 } else { items.len() as i32 })
        }
        Func::Cardinality => match next()? {
            Value::Array(items) => Value::Int4(items.len() as i32),
            _ => return Err(internal(func)),
        },
        _ => return Err(internal(func)),
    })
}

/// A v4 (random) UUID.
fn random_uuid() -> [u8; 16] {
    let mut u: [u8; 16] = rand::random();
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    u
}

fn jsonb_result(hit: Option<&Jsonb>, text: bool) -> Value {
    match hit {
        None => Value::Null,
        Some(j) if text => j.as_text().map_or(Value::Null, Value::Text),
        Some(j) => jb(j.clone()),
    }
}

/// One step into json text: an object's member (the last of duplicates)
/// or an array's element; the raw text of the result.
fn json_step(s: &str, k: &Value) -> Option<String> {
    match (jsonb::json_members(s)?, k) {
        (JsonParts::Object(members), Value::Text(key)) => {
            members.iter().rev().find(|(mk, _)| mk == key).map(|(_, v)| v.to_string())
        }
        (JsonParts::Array(items), k) => {
            let i = k.as_i64()?;
            let n = items.len() as i64;
            let i = if i < 0 { n + i } else { i };
            if i < 0 { None } else { items.get(i as usize).map(|v| v.to_string()) }
        }
        _ => None,
    }
}

fn json_result(raw: Option<String>, text: bool) -> Value {
    match raw {
        None => Value::Null,
        Some(r) if text => json_raw_text(&r),
        Some(r) => Value::Json(r),
    }
}

/// `->>` of json text: a string unescaped, null as SQL NULL, else verbatim.
fn json_raw_text(raw: &str) -> Value {
    match jsonb::parse_json(raw) {
        Ok(Jsonb::String(s)) => Value::Text(s),
        Ok(Jsonb::Null) => Value::Null,
        _ => Value::Text(raw.to_string()),
    }
}

/// to_jsonb: PostgreSQL's mapping of SQL values to JSON.
pub fn to_jsonb(v: Value) -> Result<Jsonb> {
    Ok(match v {
        Value::Null => Jsonb::Null,
        Value::Bool(b) => Jsonb::Bool(b),
        Value::Int2(_) | Value::Int4(_) | Value::Int8(_) => {
            Jsonb::Number(JNum::from_i64(v.as_i64().unwrap_or(0)))
        }
        Value::Float4(_) | Value::Float8(_) => {
            let t = v.to_string();
            match JNum::parse(&t) {
                Some(n) => Jsonb::Number(n),
                None => Jsonb::String(t),
            }
        }
        // JSON has no NaN or Infinity: PostgreSQL makes them strings.
        Value::Numeric(d) if !d.is_finite() => Jsonb::String(d.to_string()),
        Value::Numeric(d) => Jsonb::Number(JNum::parse(&d.to_string()).unwrap_or(JNum::zero())),
        Value::Json(s) => jsonb::parse(&s)?,
        Value::Jsonb(j) => *j,
        Value::Array(items) => {
            Jsonb::Array(items.into_iter().map(to_jsonb).collect::<Result<_>>()?)
        }
        Value::Uuid(u) => Jsonb::String(format_uuid(&u)),
        v @ (Value::Timestamp(_) | Value::TimestampTz(_)) => Jsonb::String(json_timestamp(&v)),
        other => Jsonb::String(cast::to_text(other)),
    })
}

/// A timestamp as JSON holds it (PostgreSQL writes XML Schema's form):
/// `T` between date and time, and a zone offset with its minutes
/// (`2024-01-01T08:00:00+00:00`); BC and infinities as in text.
fn json_timestamp(v: &Value) -> String {
    let mut t = v.to_string();
    let Some(space) = t.find(' ').filter(|_| t.as_bytes().first().is_some_and(u8::is_ascii_digit))
    else {
        return t;
    };
    t.replace_range(space..=space, "T");
    if matches!(v, Value::TimestampTz(_)) {
        // The offset ends the time, before any " BC".
        let end = t.find(' ').unwrap_or(t.len());
        if let Some(sign) = t[space..end].rfind(['+', '-']).map(|i| i + space)
            && !t[sign..end].contains(':')
        {
            t.insert_str(end, ":00");
        }
    }
    t
}

/// to_json's text for a value (PostgreSQL's `datum_to_json`).
pub fn json_text(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int2(_) | Value::Int4(_) | Value::Int8(_) | Value::Numeric(_) => {
            out.push_str(&v.to_string())
        }
        Value::Float4(f) => float_json(*f as f64, true, out),
        Value::Float8(f) => float_json(*f, false, out),
        Value::Json(s) => out.push_str(s),
        Value::Jsonb(j) => j.write(out),
        Value::Array(items) => {
            out.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_text(x, out);
            }
            out.push(']');
        }
        v @ (Value::Timestamp(_) | Value::TimestampTz(_)) => escape_into(&json_timestamp(v), out),
        other => escape_into(&other.to_string(), out),
    }
}

fn float_json(f: f64, single: bool, out: &mut String) {
    let t = format_float(f, single);
    if f.is_finite() {
        out.push_str(&t);
    } else {
        escape_into(&t, out);
    }
}

fn key_text(k: Value, pos: usize) -> Result<String> {
    if k.is_null() {
        return Err(Error::user("22023", format!("argument {pos} cannot be null")));
    }
    Ok(cast::to_text(k))
}

/// json_object(text[]) and json_object(keys text[], values text[]), and
/// their jsonb forms: every value a JSON string (or null); a NULL key is
/// 22004, a bad shape 2202E, as in PostgreSQL.
fn object_from_arrays(first: Value, values: Option<Value>, binary: bool) -> Result<Value> {
    let subscript = |msg: &str| Error::user("2202E", msg);
    let items = |v: Value| match v {
        Value::Array(items) => Ok(items),
        _ => Err(Error::Internal("json_object of a non-array".into())),
    };
    let pairs: Vec<(Value, Value)> = match (first, values) {
        (flat, None) => {
            let flat = items(flat)?;
            if !flat.len().is_multiple_of(2) {
                return Err(subscript("array must have even number of elements"));
            }
            let mut it = flat.into_iter();
            std::iter::from_fn(|| Some((it.next()?, it.next()?))).collect()
        }
        (keys, Some(values)) => {
            let (keys, values) = (items(keys)?, items(values)?);
            if keys.len() != values.len() {
                return Err(subscript("mismatched array dimensions"));
            }
            keys.into_iter().zip(values).collect()
        }
    };
    let mut out = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        if k.is_null() {
            return Err(Error::user("22004", "null value not allowed for object key"));
        }
        out.push((cast::to_text(k), (!v.is_null()).then(|| cast::to_text(v))));
    }
    if binary {
        let mut pairs: Vec<(String, Jsonb)> =
            out.into_iter().map(|(k, v)| (k, v.map_or(Jsonb::Null, Jsonb::String))).collect();
        normalize_pairs(&mut pairs);
        return Ok(jb(Jsonb::Object(pairs)));
    }
    let mut s = String::from("{");
    for (i, (k, v)) in out.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        escape_into(k, &mut s);
        s.push_str(" : ");
        match v {
            Some(v) => escape_into(v, &mut s),
            None => s.push_str("null"),
        }
    }
    s.push('}');
    Ok(Value::Json(s))
}

fn build_object(args: Vec<Value>, binary: bool) -> Result<Value> {
    if !args.len().is_multiple_of(2) {
        return Err(invalid("argument list must have even number of elements"));
    }
    let mut it = args.into_iter();
    let mut pos = 1;
    if binary {
        let mut pairs = Vec::new();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            pairs.push((key_text(k, pos)?, to_jsonb(v)?));
            pos += 2;
        }
        normalize_pairs(&mut pairs);
        return Ok(jb(Jsonb::Object(pairs)));
    }
    let mut s = String::from("{");
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        if pos > 1 {
            s.push_str(", ");
        }
        escape_into(&key_text(k, pos)?, &mut s);
        s.push_str(" : ");
        json_text(&v, &mut s);
        pos += 2;
    }
    s.push('}');
    Ok(Value::Json(s))
}

/// jsonb `||`: objects merge (the right side's keys win); anything else
/// concatenates as arrays, a non-array operand being one element.
fn concat(a: Jsonb, b: Jsonb) -> Jsonb {
    match (a, b) {
        (Jsonb::Object(mut x), Jsonb::Object(y)) => {
            x.extend(y);
            normalize_pairs(&mut x);
            Jsonb::Object(x)
        }
        (a, b) => {
            let mut items = match a {
                Jsonb::Array(x) => x,
                other => vec![other],
            };
            match b {
                Jsonb::Array(y) => items.extend(y),
                other => items.push(other),
            }
            Jsonb::Array(items)
        }
    }
}

/// jsonb `-`: a key (or a string element of an array), an index, or every
/// key of a text[].
fn delete(j: Jsonb, k: Value) -> Result<Jsonb> {
    if !matches!(j, Jsonb::Array(_) | Jsonb::Object(_)) {
        return Err(invalid("cannot delete from scalar"));
    }
    Ok(match k {
        Value::Text(key) => remove_key(j, &key),
        Value::Array(keys) => {
            let mut j = j;
            for k in keys.into_iter().filter(|k| !k.is_null()) {
                j = remove_key(j, &cast::to_text(k));
            }
            j
        }
        i => match j {
            Jsonb::Object(_) => {
                return Err(invalid("cannot delete from object using integer index"));
            }
            Jsonb::Array(mut items) => {
                let n = items.len() as i64;
                let i = i.as_i64().unwrap_or(0);
                let i = if i < 0 { n + i } else { i };
                if i >= 0 && i < n {
                    items.remove(i as usize);
                }
                Jsonb::Array(items)
            }
            other => other,
        },
    })
}

fn remove_key(j: Jsonb, key: &str) -> Jsonb {
    match j {
        Jsonb::Object(pairs) => {
            Jsonb::Object(pairs.into_iter().filter(|(k, _)| k != key).collect())
        }
        Jsonb::Array(items) => Jsonb::Array(
            items.into_iter().filter(|i| !matches!(i, Jsonb::String(s) if s == key)).collect(),
        ),
        other => other,
    }
}

/// jsonb_set's walk: replaces (or, with `create`, adds as the last step)
/// the value at `path`; a missing intermediate step leaves `j` unchanged.
fn set_path(j: &mut Jsonb, path: &[String], depth: usize, new: Jsonb, create: bool) -> Result<()> {
    let Some(step) = path.get(depth) else { return Ok(()) };
    let last = depth + 1 == path.len();
    match j {
        Jsonb::Object(pairs) => {
            match pairs.iter().position(|(k, _)| k == step) {
                Some(i) => {
                    if last {
                        pairs[i].1 = new;
                    } else {
                        set_path(&mut pairs[i].1, path, depth + 1, new, create)?;
                    }
                }
                None if last && create => {
                    pairs.push((step.clone(), new));
                    normalize_pairs(pairs);
                }
                None => {}
            }
            Ok(())
        }
        Jsonb::Array(items) => {
            let n = items.len() as i64;
            let idx = path_index(step, depth, n)?;
            if idx >= 0 && idx < n {
                if last {
                    items[idx as usize] = new;
                } else {
                    set_path(&mut items[idx as usize], path, depth + 1, new, create)?;
                }
            } else if last && create {
                if idx < 0 {
                    items.insert(0, new);
                } else {
                    items.push(new);
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// jsonb_insert's walk: at the last step, inserts `new` before (or, with
/// `after`, after) the array element there, or under a key the object
/// does not have yet (22023 if it has it); a missing intermediate step
/// leaves `j` unchanged. An index past either end of an array adds at
/// that end.
fn insert_path(
    j: &mut Jsonb,
    path: &[String],
    depth: usize,
    new: Jsonb,
    after: bool,
) -> Result<()> {
    let Some(step) = path.get(depth) else { return Ok(()) };
    let last = depth + 1 == path.len();
    match j {
        Jsonb::Object(pairs) => match pairs.iter().position(|(k, _)| k == step) {
            Some(_) if last => Err(invalid("cannot replace existing key")
                .with_hint("Try using the function jsonb_set to replace key value.")),
            Some(i) => insert_path(&mut pairs[i].1, path, depth + 1, new, after),
            None if last => {
                pairs.push((step.clone(), new));
                normalize_pairs(pairs);
                Ok(())
            }
            None => Ok(()),
        },
        Jsonb::Array(items) => {
            let n = items.len() as i64;
            let idx = path_index(step, depth, n)?;
            if !last {
                if idx >= 0 && idx < n {
                    insert_path(&mut items[idx as usize], path, depth + 1, new, after)?;
                }
            } else if idx < 0 {
                items.insert(0, new);
            } else if idx >= n {
                items.push(new);
            } else {
                items.insert(idx as usize + usize::from(after), new);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A jsonb path step into an array of `n` elements: its index, counted
/// from the end when negative (22P02 if it is not an integer).
fn path_index(step: &str, depth: usize, n: i64) -> Result<i64> {
    let i: i64 = step.trim().parse().map_err(|_| {
        Error::user(
            "22P02",
            format!("path element at position {} is not an integer: \"{step}\"", depth + 1),
        )
    })?;
    Ok(if i < 0 { n + i } else { i })
}

/// `#-`: removes the value at `path` (nothing if it is missing).
fn delete_path(j: &mut Jsonb, path: &[String], depth: usize) -> Result<()> {
    let Some(step) = path.get(depth) else { return Ok(()) };
    let last = depth + 1 == path.len();
    match j {
        Jsonb::Object(pairs) => {
            if let Some(i) = pairs.iter().position(|(k, _)| k == step) {
                if last {
                    pairs.remove(i);
                } else {
                    delete_path(&mut pairs[i].1, path, depth + 1)?;
                }
            }
        }
        Jsonb::Array(items) => {
            let n = items.len() as i64;
            let idx = path_index(step, depth, n)?;
            if idx >= 0 && idx < n {
                if last {
                    items.remove(idx as usize);
                } else {
                    delete_path(&mut items[idx as usize], path, depth + 1)?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// A select list with set-returning functions (PostgreSQL 10+'s
/// ProjectSet): per input row, as many rows as the longest function
/// returns, the shorter ones padded with NULL, other items repeated.
pub fn project_set(ctx: &mut super::Ctx, rows: Vec<Row>, exprs: &[Expr]) -> Result<Vec<Row>> {
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let mut plain = Vec::with_capacity(exprs.len());
        let mut sets: Vec<Option<Vec<Row>>> = Vec::with_capacity(exprs.len());
        let mut n = 0;
        for e in exprs {
            match e {
                Expr::Func { func: Func::SetReturning(f), args } => {
                    let mut vals = Vec::with_capacity(args.len());
                    for a in args {
                        vals.push(eval(ctx, a, &r)?);
                    }
                    let mut set = set_function(*f, vals)?;
                    if let SetFunc::ExpandArray { field: None } = f {
                        // In an expression the pair is one record.
                        for row in set.iter_mut() {
                            *row = vec![Value::Record(std::mem::take(row))];
                        }
                    }
                    n = n.max(set.len());
                    sets.push(Some(set));
                    plain.push(Value::Null);
                }
                e => {
                    sets.push(None);
                    plain.push(eval(ctx, e, &r)?);
                }
            }
        }
        for i in 0..n {
            let mut o = plain.clone();
            for (k, set) in sets.iter_mut().enumerate() {
                if let Some(set) = set {
                    o[k] = set
                        .get_mut(i)
                        .map_or(Value::Null, |row| std::mem::replace(&mut row[0], Value::Null));
                }
            }
            out.push(o);
        }
    }
    Ok(out)
}

/// The rows of json(b)_to_record (`set` false: one row, of NULLs for a
/// NULL argument) and json(b)_to_recordset (a row per object of an array):
/// each column of `cols` is the object's member of its name (the last of
/// duplicates), NULL where there is none, converted as PostgreSQL's
/// populate_record converts it.
pub fn to_record(v: Value, cols: &[(String, DataType)], set: bool) -> Result<Vec<Row>> {
    let not_object = |array: bool| {
        invalid(format!(
            "cannot call populate_composite on {}",
            if array { "an array" } else { "a scalar" }
        ))
    };
    let not_array = |json: bool| {
        invalid(format!(
            "cannot call {}_to_recordset on a non-array",
            if json { "json" } else { "jsonb" }
        ))
    };
    let not_objects = |json: bool| {
        invalid(format!(
            "argument of {}_to_recordset must be an array of objects",
            if json { "json" } else { "jsonb" }
        ))
    };
    match v {
        Value::Null if set => Ok(Vec::new()),
        Value::Null => Ok(vec![vec![Value::Null; cols.len()]]),
        Value::Jsonb(j) => {
            let row = |o: &Jsonb| -> Result<Row> {
                let Jsonb::Object(pairs) = o else {
                    return Err(if set {
                        not_objects(false)
                    } else {
                        not_object(matches!(o, Jsonb::Array(_)))
                    });
                };
                cols.iter()
                    .map(|(name, ty)| match pairs.iter().rev().find(|(k, _)| k == name) {
                        Some((_, x)) => column_value(JVal::Bin(x), ty),
                        None => Ok(Value::Null),
                    })
                    .collect()
            };
            match (*j, set) {
                (Jsonb::Array(items), true) => items.iter().map(row).collect(),
                (_, true) => Err(not_array(false)),
                (o, false) => Ok(vec![row(&o)?]),
            }
        }
        Value::Json(s) => {
            let row = |members: &[(String, &str)]| -> Result<Row> {
                cols.iter()
                    .map(|(name, ty)| match members.iter().rev().find(|(k, _)| k == name) {
                        Some((_, raw)) => column_value(JVal::Raw(raw), ty),
                        None => Ok(Value::Null),
                    })
                    .collect()
            };
            match (jsonb::json_members(&s), set) {
                (Some(JsonParts::Array(items)), true) => items
                    .into_iter()
                    .map(|raw| match jsonb::json_members(raw) {
                        Some(JsonParts::Object(members)) => row(&members),
                        _ => Err(not_objects(true)),
                    })
                    .collect(),
                (_, true) => Err(not_array(true)),
                (Some(JsonParts::Object(members)), false) => Ok(vec![row(&members)?]),
                (Some(JsonParts::Array(_)), false) => Err(not_object(true)),
                (None, false) => Err(not_object(false)),
            }
        }
        _ => Err(Error::Internal("json_to_record of a non-json value".into())),
    }
}

/// A JSON value to convert into a column: a json member's raw text, or a
/// jsonb value.
#[derive(Clone, Copy)]
enum JVal<'a> {
    Raw(&'a str),
    Bin(&'a Jsonb),
}

/// One column of json(b)_to_record: JSON null is NULL; a json or jsonb
/// column takes the value as it is (json: its text as written); an array
/// column takes a JSON array element by element; anything else is the
/// value's text (a string's contents) read as the column's type, so a bad
/// one is that type's 22P02.
fn column_value(v: JVal, ty: &DataType) -> Result<Value> {
    let parsed;
    let j = match v {
        JVal::Bin(j) => j,
        JVal::Raw(raw) => {
            parsed = jsonb::parse_json(raw)?;
            &parsed
        }
    };
    // The value's JSON text, a json member's as written.
    let as_written = || match v {
        JVal::Raw(raw) => raw.to_string(),
        JVal::Bin(j) => j.to_string(),
    };
    Ok(match (j, ty) {
        (Jsonb::Null, _) => Value::Null,
        (_, DataType::Json) => Value::Json(as_written()),
        (_, DataType::Jsonb) => jb(j.clone()),
        (Jsonb::Array(items), DataType::Array(e)) => Value::Array(
            items.iter().map(|x| column_value(JVal::Bin(x), e)).collect::<Result<_>>()?,
        ),
        (Jsonb::String(s), _) => cast::cast(Value::Text(s.clone()), ty)?,
        _ => cast::cast(Value::Text(as_written()), ty)?,
    })
}

/// Whether a select list has a set-returning function to expand.
pub fn has_set_function(exprs: &[Expr]) -> bool {
    exprs.iter().any(|e| matches!(e, Expr::Func { func: Func::SetReturning(_), .. }))
}

/// Rows of a set-returning function in FROM.
pub fn set_function(func: SetFunc, args: Vec<Value>) -> Result<Vec<Row>> {
    if func == SetFunc::Series {
        let mut args = args.into_iter();
        let start = args.next().unwrap_or(Value::Null);
        let stop = args.next().unwrap_or(Value::Null);
        return super::series(start, stop, args.next().unwrap_or(Value::Int4(1)));
    }
    if matches!(func, SetFunc::RegexpMatches | SetFunc::RegexpSplit) {
        return super::regexp::set_rows(func, &args);
    }
    if let SetFunc::Subscripts { zero_based } = func {
        // Arrays here have one dimension and lower bound 1 (int2vector 0).
        let (Some(Value::Array(items)), Some(dim)) = (args.first(), args.get(1)) else {
            return Ok(Vec::new());
        };
        if dim.as_i64() != Some(1) {
            return Ok(Vec::new());
        }
        let n = items.len() as i32;
        let reverse = matches!(args.get(2), Some(Value::Bool(true)));
        let base = if zero_based { -1 } else { 0 };
        return Ok((1..=n)
            .map(|i| vec![Value::Int4(base + if reverse { n + 1 - i } else { i })])
            .collect());
    }
    let Some(v) = args.into_iter().next() else { return Ok(Vec::new()) };
    if v.is_null() {
        return Ok(Vec::new());
    }
    let name = |json: bool| {
        let n = func.name();
        if json { n.replacen("jsonb", "json", 1) } else { n.to_string() }
    };
    Ok(match (func, v) {
        (SetFunc::Unnest, Value::Array(items)) => items.into_iter().map(|x| vec![x]).collect(),
        (SetFunc::ExpandArray { field }, Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, x)| {
                let n = Value::Int4(i32::try_from(i + 1).unwrap_or(i32::MAX));
                match field {
                    Some(0) => vec![x],
                    Some(_) => vec![n],
                    None => vec![x, n],
                }
            })
            .collect(),
        (SetFunc::ArrayElements { text }, Value::Jsonb(j)) => match *j {
            Jsonb::Array(items) => items
                .into_iter()
                .map(|x| vec![if text { jsonb_result(Some(&x), true) } else { jb(x) }])
                .collect(),
            Jsonb::Object(_) => return Err(invalid("cannot extract elements from an object")),
            _ => return Err(invalid("cannot extract elements from a scalar")),
        },
        (SetFunc::ArrayElements { text }, Value::Json(s)) => match jsonb::json_members(&s) {
            Some(JsonParts::Array(items)) => items
                .into_iter()
                .map(|x| vec![if text { json_raw_text(x) } else { Value::Json(x.to_string()) }])
                .collect(),
            Some(JsonParts::Object(_)) => {
                return Err(invalid("cannot call json_array_elements on a non-array"));
            }
            None => return Err(invalid("cannot extract elements from a scalar")),
        },
        (SetFunc::Each { text }, Value::Jsonb(j)) => match *j {
            Jsonb::Object(pairs) => pairs
                .into_iter()
                .map(|(k, x)| {
                    let v = if text { jsonb_result(Some(&x), true) } else { jb(x) };
                    vec![Value::Text(k), v]
                })
                .collect(),
            _ => return Err(invalid(format!("cannot call {} on a non-object", name(false)))),
        },
        (SetFunc::Each { text }, Value::Json(s)) => match jsonb::json_members(&s) {
            Some(JsonParts::Object(members)) => members
                .into_iter()
                .map(|(k, x)| {
                    let v = if text { json_raw_text(x) } else { Value::Json(x.to_string()) };
                    vec![Value::Text(k), v]
                })
                .collect(),
            _ => return Err(invalid(format!("cannot call {} on a non-object", name(true)))),
        },
        (SetFunc::ObjectKeys, Value::Jsonb(j)) => match *j {
            Jsonb::Object(pairs) => pairs.into_iter().map(|(k, _)| vec![Value::Text(k)]).collect(),
            Jsonb::Array(_) => {
                return Err(invalid("cannot call jsonb_object_keys on an array"));
            }
            _ => return Err(invalid("cannot call jsonb_object_keys on a scalar")),
        },
        (SetFunc::ObjectKeys, Value::Json(s)) => match jsonb::json_members(&s) {
            Some(JsonParts::Object(members)) => {
                members.into_iter().map(|(k, _)| vec![Value::Text(k)]).collect()
            }
            Some(JsonParts::Array(_)) => {
                return Err(invalid("cannot call json_object_keys on an array"));
            }
            None => return Err(invalid("cannot call json_object_keys on a scalar")),
        },
        (f, v) => return Err(Error::Internal(format!("{f:?} over {v:?}"))),
    })
}

/// Aggregate results: array_agg, json(b)_agg, json(b)_object_agg.
pub fn finish_list(func: crate::plan::AggFunc, items: Vec<Value>) -> Result<Value> {
    use crate::plan::AggFunc as A;
    Ok(match func {
        A::JsonbAgg => jb(Jsonb::Array(items.into_iter().map(to_jsonb).collect::<Result<_>>()?)),
        A::JsonAgg => {
            let mut s = String::from("[");
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                json_text(x, &mut s);
            }
            s.push(']');
            Value::Json(s)
        }
        _ => Value::Array(items),
    })
}

pub fn finish_pairs(func: crate::plan::AggFunc, pairs: Vec<(Value, Value)>) -> Result<Value> {
    if func == crate::plan::AggFunc::JsonbObjectAgg {
        let mut out = Vec::with_capacity(pairs.len());
        for (k, v) in pairs {
            out.push((cast::to_text(k), to_jsonb(v)?));
        }
        normalize_pairs(&mut out);
        return Ok(jb(Jsonb::Object(out)));
    }
    let mut s = String::from("{ ");
    for (i, (k, v)) in pairs.into_iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        escape_into(&cast::to_text(k), &mut s);
        s.push_str(" : ");
        json_text(&v, &mut s);
    }
    s.push_str(" }");
    Ok(Value::Json(s))
}

/// Field name check of the object aggregates.
pub fn check_key(k: &Value) -> Result<()> {
    if k.is_null() {
        return Err(Error::user("22023", "field name must not be null"));
    }
    Ok(())
}
