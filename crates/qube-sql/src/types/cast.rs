//! Casts between types, by PostgreSQL's rules.
//!
//! `cast` is an explicit `CAST(x AS t)` / `x::t`; `assign` is the coercion
//! of a value stored into a column of type `t` (it differs for
//! `varchar(n)`/`char(n)`: an explicit cast truncates, an assignment of a
//! longer string is an error). Out-of-range results are errors (22003),
//! text that does not parse is 22P02, never a wrap or a silent zero.

use super::numeric::Numeric;
use qube_common::types::DataType;
use qube_common::{Error, Result};

use super::datetime;
use super::value::{Value, format_float};

pub fn out_of_range(what: &str) -> Error {
    Error::user("22003", format!("{what} out of range"))
}

fn invalid_text(type_name: &str, text: &str) -> Error {
    Error::user("22P02", format!("invalid input syntax for type {type_name}: \"{text}\""))
}

/// Explicit cast.
pub fn cast(v: Value, to: &DataType) -> Result<Value> {
    convert(v, to, true)
}

/// Assignment to a column of type `to`.
pub fn assign(v: Value, to: &DataType) -> Result<Value> {
    convert(v, to, false)
}

fn convert(v: Value, to: &DataType, explicit: bool) -> Result<Value> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    if let Value::Jsonb(j) = &v
        && matches!(
            to,
            DataType::SmallInt
                | DataType::Integer
                | DataType::BigInt
                | DataType::Real
                | DataType::Double
                | DataType::Numeric(_)
                | DataType::Boolean
        )
    {
        return jsonb_to_scalar(j, to);
    }
    // Integer text: PostgreSQL's int2in/int4in/int8in (`parse_int`).
    if let Value::Text(s) = &v
        && let Some(r) = parse_int(s, to)
    {
        return r;
    }
    Ok(match to {
        DataType::SmallInt => Value::Int2(
            i16::try_from(to_i64(v, "smallint")?).map_err(|_| out_of_range("smallint"))?,
        ),
        DataType::Integer => {
            Value::Int4(i32::try_from(to_i64(v, "integer")?).map_err(|_| out_of_range("integer"))?)
        }
        DataType::BigInt => Value::Int8(to_i64(v, "bigint")?),
        DataType::Real => {
            // Text out of real's range names the text, as PostgreSQL's
            // float4in; a double out of it is an overflow or underflow.
            let (f, text) = match v {
                Value::Text(s) => (parse_float(&s, "real")?, Some(s)),
                other => (to_f64(other, "real")?, None),
            };
            let r = f as f32;
            let over = r.is_infinite() && f.is_finite();
            let under = r == 0.0 && f != 0.0;
            if over || under {
                return Err(match text {
                    Some(t) => Error::user(
                        "22003",
                        format!("\"{}\" is out of range for type real", t.trim()),
                    ),
                    None if over => Error::user("22003", "value out of range: overflow"),
                    None => Error::user("22003", "value out of range: underflow"),
                });
            }
            Value::Float4(r)
        }
        DataType::Double => Value::Float8(to_f64(v, "double precision")?),
        DataType::Numeric(typmod) => {
            let d = to_numeric(v)?;
            Value::Numeric(apply_numeric_typmod(d, *typmod)?)
        }
        DataType::Boolean => Value::Bool(match v {
            Value::Bool(b) => b,
            Value::Int4(i) => i != 0,
            Value::Text(s) => parse_bool(&s)?,
            other => return Err(cannot_cast(&other, to)),
        }),
        DataType::Text => Value::Text(cast_text(v)),
        DataType::Varchar(n) => {
            let s = cast_text(v);
            Value::Text(match n {
                Some(n) => limit_length(s, *n as usize, explicit, "character varying")?,
                None => s,
            })
        }
        DataType::Char(n) => {
            let s = limit_length(cast_text(v), *n as usize, explicit, "character")?;
            let len = s.chars().count();
            Value::Text(if len < *n as usize {
                format!("{s}{}", " ".repeat(*n as usize - len))
            } else {
                s
            })
        }
        DataType::Bytea => match v {
            Value::Bytea(b) => Value::Bytea(b),
            Value::Text(s) => Value::Bytea(parse_bytea(&s)?),
            other => return Err(cannot_cast(&other, to)),
        },
        DataType::Date
        | DataType::Time
        | DataType::Timestamp
        | DataType::TimestampTz
        | DataType::Interval => to_datetime(v, to)?,
        DataType::Uuid => match v {
            Value::Uuid(u) => Value::Uuid(u),
            Value::Text(s) => {
                Value::Uuid(super::value::parse_uuid(&s).ok_or_else(|| invalid_text("uuid", &s))?)
            }
            other => return Err(cannot_cast(&other, to)),
        },
        DataType::Json => match v {
            Value::Json(s) => Value::Json(s),
            Value::Text(s) => {
                super::jsonb::validate_json(&s)?;
                Value::Json(s)
            }
            Value::Jsonb(j) => Value::Json(j.to_string()),
            other => return Err(cannot_cast(&other, to)),
        },
        DataType::Jsonb => match v {
            Value::Jsonb(j) => Value::Jsonb(j),
            Value::Text(s) | Value::Json(s) => Value::Jsonb(Box::new(super::jsonb::parse(&s)?)),
            other => return Err(cannot_cast(&other, to)),
        },
        DataType::Array(elem) => match v {
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for i in items {
                    out.push(convert(i, elem, explicit)?);
                }
                Value::Array(out)
            }
            Value::Text(s) => Value::Array(super::array::parse(&s, elem)?),
            other => return Err(cannot_cast(&other, to)),
        },
        // int2vector's text form is the numbers separated by spaces.
        DataType::Int2Vector => match v {
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for i in items {
                    out.push(convert(i, &DataType::SmallInt, explicit)?);
                }
                Value::Array(out)
            }
            Value::Text(s) => {
                let mut out = Vec::new();
                for w in s.split_ascii_whitespace() {
                    out.push(convert(Value::Text(w.to_string()), &DataType::SmallInt, explicit)?);
                }
                Value::Array(out)
            }
            other => return Err(cannot_cast(&other, to)),
        },
        DataType::Record(fields) => match v {
            Value::Record(items) if items.len() == fields.len() => {
                let mut out = Vec::with_capacity(items.len());
                for (i, (_, t)) in items.into_iter().zip(fields) {
                    out.push(convert(i, t, explicit)?);
                }
                Value::Record(out)
            }
            other => return Err(cannot_cast(&other, to)),
        },
    })
}

/// Casts into the date/time types (text read in the session's zone).
fn to_datetime(v: Value, to: &DataType) -> Result<Value> {
    use datetime as dt;
    let zone = || dt::zone();
    Ok(match (to, v) {
        (DataType::Date, Value::Date(d)) => Value::Date(d),
        (DataType::Date, Value::Text(s)) => Value::Date(dt::parse_date(&s)?),
        (DataType::Date, Value::Timestamp(t)) => Value::Date(ts_date(t)),
        (DataType::Date, Value::TimestampTz(t)) => Value::Date(ts_date(zone().to_local(t))),
        (DataType::Time, Value::Time(t)) => Value::Time(t),
        (DataType::Time, Value::Text(s)) => Value::Time(dt::parse_time(&s)?),
        (DataType::Time, Value::Timestamp(t)) if dt::is_finite_ts(t) => {
            Value::Time(t.rem_euclid(dt::USECS_PER_DAY))
        }
        (DataType::Time, Value::TimestampTz(t)) if dt::is_finite_ts(t) => {
            Value::Time(zone().to_local(t).rem_euclid(dt::USECS_PER_DAY))
        }
        (DataType::Time, Value::Interval(i)) => Value::Time(i.micros.rem_euclid(dt::USECS_PER_DAY)),
        (DataType::Timestamp, Value::Timestamp(t)) => Value::Timestamp(t),
        (DataType::Timestamp, Value::Text(s)) => Value::Timestamp(dt::parse_timestamp(&s, false)?),
        (DataType::Timestamp, Value::Date(d)) => Value::Timestamp(date_to_ts(d)?),
        (DataType::Timestamp, Value::TimestampTz(t)) => Value::Timestamp(zone().to_local(t)),
        (DataType::TimestampTz, Value::TimestampTz(t)) => Value::TimestampTz(t),
        (DataType::TimestampTz, Value::Text(s)) => {
            Value::TimestampTz(dt::parse_timestamp(&s, true)?)
        }
        (DataType::TimestampTz, Value::Date(d)) => {
            Value::TimestampTz(dt::check_ts(zone().to_utc(date_to_ts(d)?))?)
        }
        (DataType::TimestampTz, Value::Timestamp(t)) => Value::TimestampTz(
            dt::check_ts(zone().to_utc(t))
                .or_else(|e| if dt::is_finite_ts(t) { Err(e) } else { Ok(t) })?,
        ),
        (DataType::Interval, Value::Interval(i)) => Value::Interval(i),
        (DataType::Interval, Value::Text(s)) => Value::Interval(dt::parse_interval(&s, None)?),
        (DataType::Interval, Value::Time(t)) => Value::Interval(dt::Interval::new(0, 0, t)),
        (_, other) => return Err(cannot_cast(&other, to)),
    })
}

/// The date of a timestamp (infinities stay infinite).
fn ts_date(t: i64) -> i32 {
    match t {
        datetime::TS_NEG_INF => datetime::DATE_NEG_INF,
        datetime::TS_POS_INF => datetime::DATE_POS_INF,
        t => t.div_euclid(datetime::USECS_PER_DAY) as i32,
    }
}

/// A date's midnight; 22008 past timestamp's range.
pub fn date_to_ts(d: i32) -> Result<i64> {
    let t = super::value::date_ts(d);
    if datetime::is_finite_date(d)
        && (d as i64).checked_mul(datetime::USECS_PER_DAY).is_none_or(|t| !datetime::ts_in_range(t))
    {
        return Err(Error::user("22008", "date out of range for timestamp"));
    }
    Ok(t)
}

/// jsonb → numeric types and boolean (PostgreSQL 11+): only from a jsonb
/// number (or boolean), else 22023.
fn jsonb_to_scalar(j: &super::jsonb::Jsonb, to: &DataType) -> Result<Value> {
    use super::jsonb::Jsonb;
    let target = match to {
        DataType::Boolean => "boolean",
        DataType::SmallInt => "smallint",
        DataType::Integer => "integer",
        DataType::BigInt => "bigint",
        DataType::Real => "real",
        DataType::Double => "double precision",
        _ => "numeric",
    };
    match (j, to) {
        (Jsonb::Bool(b), DataType::Boolean) => Ok(Value::Bool(*b)),
        (Jsonb::Number(n), t) if *t != DataType::Boolean => {
            convert(Value::Numeric(parse_numeric(&n.to_string())?), to, true)
        }
        (other, _) => {
            let what = match other {
                Jsonb::Array(_) => "array",
                Jsonb::Object(_) => "object",
                Jsonb::Null => "null",
                Jsonb::String(_) => "string",
                Jsonb::Bool(_) => "boolean",
                Jsonb::Number(_) => "numeric",
            };
            Err(Error::user("22023", format!("cannot cast jsonb {what} to type {target}")))
        }
    }
}

fn cannot_cast(v: &Value, to: &DataType) -> Error {
    let from = v.data_type().map_or("unknown".to_string(), |t| t.sql_name());
    Error::user("42846", format!("cannot cast type {from} to {}", to.sql_name()))
}

/// varchar(n)/char(n): an explicit cast truncates; an assignment of a
/// longer string fails unless the excess is spaces (PostgreSQL's rule).
fn limit_length(s: String, n: usize, explicit: bool, name: &str) -> Result<String> {
    let len = s.chars().count();
    if len <= n {
        return Ok(s);
    }
    let cut: String = s.chars().take(n).collect();
    if explicit || s.chars().skip(n).all(|c| c == ' ') {
        return Ok(cut);
    }
    Err(Error::user("22001", format!("value too long for type {name}({n})")))
}

/// The cast to text (and varchar, char): as the output function, except
/// for boolean, whose cast gives `true`/`false` where its output function
/// gives `t`/`f` (PostgreSQL's `booltext`).
pub fn cast_text(v: Value) -> String {
    match v {
        Value::Bool(b) => if b { "true" } else { "false" }.to_string(),
        other => to_text(other),
    }
}

/// A value's text output (PostgreSQL's output function).
pub fn to_text(v: Value) -> String {
    match v {
        Value::Text(s) => s,
        other => other.to_string(),
    }
}

fn to_i64(v: Value, type_name: &str) -> Result<i64> {
    match v {
        Value::Int2(i) => Ok(i as i64),
        Value::Int4(i) => Ok(i as i64),
        Value::Int8(i) => Ok(i),
        Value::Float4(f) => float_to_i64(f as f64, type_name),
        Value::Float8(f) => float_to_i64(f, type_name),
        Value::Numeric(d) => d.to_int(type_name, i64::MIN, i64::MAX),
        Value::Bool(b) if type_name == "integer" => Ok(b as i64),
        Value::Text(s) => text_to_i64(&s, type_name),
        other => Err(cannot_cast(&other, &DataType::BigInt)),
    }
}

fn text_to_i64(s: &str, type_name: &str) -> Result<i64> {
    let t = s.trim();
    t.parse::<i64>().map_err(|e| match e.kind() {
        std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
            Error::user("22003", format!("value \"{s}\" is out of range for type {type_name}"))
        }
        _ => invalid_text(type_name, s),
    })
}

/// Text input of an integer type: what `cast(Value::Text(text), to)`
/// gives for `to` smallint, integer or bigint, without owning the text
/// (a Bind's text parameter of an integer type is read with it). None
/// for any other `to`.
pub fn parse_int(text: &str, to: &DataType) -> Option<Result<Value>> {
    // Text past the type's range names the text as given, blanks and
    // all, as PostgreSQL's int2in and int4in do (`value " 99999" is out
    // of range for type smallint`).
    let past = |name: &str| {
        Error::user("22003", format!("value \"{text}\" is out of range for type {name}"))
    };
    Some(match to {
        DataType::SmallInt => text_to_i64(text, "smallint")
            .and_then(|i| i16::try_from(i).map(Value::Int2).map_err(|_| past("smallint"))),
        DataType::Integer => text_to_i64(text, "integer")
            .and_then(|i| i32::try_from(i).map(Value::Int4).map_err(|_| past("integer"))),
        DataType::BigInt => text_to_i64(text, "bigint").map(Value::Int8),
        _ => return None,
    })
}

fn float_to_i64(f: f64, type_name: &str) -> Result<i64> {
    let r = f.round_ties_even();
    if !r.is_finite() || r < i64::MIN as f64 || r >= i64::MAX as f64 {
        return Err(out_of_range(type_name));
    }
    Ok(r as i64)
}

fn to_f64(v: Value, type_name: &str) -> Result<f64> {
    match v {
        Value::Text(s) => parse_float(&s, type_name),
        Value::Bool(_) | Value::Bytea(_) => Err(cannot_cast(&v, &DataType::Double)),
        other => other.as_f64().ok_or_else(|| cannot_cast(&other, &DataType::Double)),
    }
}

pub fn parse_float(s: &str, type_name: &str) -> Result<f64> {
    let t = s.trim();
    // Compared without lowercasing into a new string (COPY parses every
    // field through here).
    const WORDS: [(&str, f64); 7] = [
        ("nan", f64::NAN),
        ("infinity", f64::INFINITY),
        ("+infinity", f64::INFINITY),
        ("inf", f64::INFINITY),
        ("+inf", f64::INFINITY),
        ("-infinity", f64::NEG_INFINITY),
        ("-inf", f64::NEG_INFINITY),
    ];
    let word = !t.as_bytes().first().is_some_and(|c| c.is_ascii_digit() || *c == b'.');
    if word && let Some((_, v)) = WORDS.iter().find(|(w, _)| t.eq_ignore_ascii_case(w)) {
        return Ok(*v);
    }
    let f: f64 = t.parse().map_err(|_| invalid_text(type_name, s))?;
    // Too large, or too small to be told from zero (1e-400; a subnormal
    // such as 1e-310 is kept), as PostgreSQL's strtod check.
    let underflow = f == 0.0
        && t.split(['e', 'E'])
            .next()
            .is_some_and(|m| m.bytes().any(|b| (b'1'..=b'9').contains(&b)));
    if f.is_infinite() || underflow {
        return Err(Error::user("22003", format!("\"{t}\" is out of range for type {type_name}")));
    }
    Ok(f)
}

pub fn to_numeric(v: Value) -> Result<Numeric> {
    match v {
        Value::Int2(i) => Ok(Numeric::from_i64(i as i64)),
        Value::Int4(i) => Ok(Numeric::from_i64(i as i64)),
        Value::Int8(i) => Ok(Numeric::from_i64(i)),
        Value::Float4(f) => float_to_numeric(f as f64, true),
        Value::Float8(f) => float_to_numeric(f, false),
        Value::Numeric(d) => Ok(d),
        Value::Text(s) => parse_numeric(&s),
        other => Err(cannot_cast(&other, &DataType::Numeric(None))),
    }
}

/// Through the float's shortest text (`single`: real's), as PostgreSQL does.
fn float_to_numeric(f: f64, single: bool) -> Result<Numeric> {
    if f.is_nan() {
        return Ok(Numeric::NaN);
    }
    if f.is_infinite() {
        return Ok(if f > 0.0 { Numeric::PosInf } else { Numeric::NegInf });
    }
    // Through the shortest text, as PostgreSQL does (0.1::float8::numeric = 0.1).
    parse_numeric(&format_float(f, single))
}

pub fn parse_numeric(s: &str) -> Result<Numeric> {
    Numeric::parse(s)
}

/// numeric(p, s): round to `s` digits after the point; more than `p - s`
/// digits before it is 22003 (see `Numeric::apply_typmod`).
pub fn apply_numeric_typmod(d: Numeric, typmod: Option<(u32, i32)>) -> Result<Numeric> {
    match typmod {
        None => Ok(d),
        Some((p, s)) => d.apply_typmod(p, s),
    }
}

pub fn parse_bool(s: &str) -> Result<bool> {
    let t = s.trim().to_ascii_lowercase();
    let matches = |full: &str| !t.is_empty() && full.starts_with(t.as_str());
    if t == "1" || matches("true") || matches("yes") || t == "on" {
        return Ok(true);
    }
    if t == "0" || matches("false") || matches("no") || t == "off" || t == "of" {
        return Ok(false);
    }
    Err(invalid_text("boolean", s))
}

fn parse_bytea(s: &str) -> Result<Vec<u8>> {
    if let Some(hex) = s.strip_prefix("\\x") {
        let hex: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        if !hex.len().is_multiple_of(2) {
            return Err(invalid_text("bytea", s));
        }
        return hex
            .chunks(2)
            .map(|c| {
                std::str::from_utf8(c)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| invalid_text("bytea", s))
            })
            .collect();
    }
    // Escape format: backslash escapes as \\ and \nnn (octal).
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
        } else if b.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else if i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(u8::try_from(v).map_err(|_| invalid_text("bytea", s))?);
            i += 4;
        } else {
            return Err(invalid_text("bytea", s));
        }
    }
    Ok(out)
}

/// Whether values of type `from` convert to `to` implicitly (in
/// assignments and mixed expressions), per PostgreSQL's cast catalog for
/// the types we have: numeric widening, anything to text in assignment.
pub fn implicit(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    let rank = |t: &DataType| match t {
        SmallInt => Some(0),
        Integer => Some(1),
        BigInt => Some(2),
        Numeric(_) => Some(3),
        Real => Some(4),
        Double => Some(5),
        _ => None,
    };
    if from == to {
        return true;
    }
    if matches!(
        (from, to),
        (Date, Timestamp | TimestampTz) | (Timestamp, TimestampTz) | (Time, Interval)
    ) {
        return true;
    }
    if let (Array(a), Array(b)) = (from, to) {
        return implicit(a, b);
    }
    match (rank(from), rank(to)) {
        (Some(a), Some(b)) => a <= b,
        _ => matches!((from, to), (Text | Varchar(_) | Char(_), Text | Varchar(_) | Char(_))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_casts_check_ranges_and_round() {
        assert_eq!(cast(Value::Int8(40000), &DataType::SmallInt).unwrap_err().sqlstate(), "22003");
        assert_eq!(cast(Value::Float8(2.5), &DataType::Integer).unwrap(), Value::Int4(2));
        assert_eq!(cast(Value::Float8(3.5), &DataType::Integer).unwrap(), Value::Int4(4));
        assert_eq!(cast(Value::Text(" 42 ".into()), &DataType::Integer).unwrap(), Value::Int4(42));
        assert_eq!(
            cast(Value::Text("4x".into()), &DataType::Integer).unwrap_err().sqlstate(),
            "22P02"
        );
        assert_eq!(
            cast(Value::Text("99999999999".into()), &DataType::Integer).unwrap_err().sqlstate(),
            "22003"
        );
        let n = Value::Numeric(Numeric::parse("-2.5").unwrap());
        assert_eq!(cast(n, &DataType::Integer).unwrap(), Value::Int4(-3));
    }

    #[test]
    fn strings_and_numerics() {
        let v = DataType::Varchar(Some(3));
        assert_eq!(cast(Value::Text("abcd".into()), &v).unwrap(), Value::Text("abc".into()));
        assert_eq!(assign(Value::Text("abcd".into()), &v).unwrap_err().sqlstate(), "22001");
        assert_eq!(assign(Value::Text("ab  ".into()), &v).unwrap(), Value::Text("ab ".into()));
        assert_eq!(
            assign(Value::Text("a".into()), &DataType::Char(3)).unwrap(),
            Value::Text("a  ".into())
        );
        let n = DataType::Numeric(Some((5, 2)));
        assert_eq!(assign(Value::Text("1.005".into()), &n).unwrap().to_string(), "1.01");
        assert_eq!(assign(Value::Int4(1000), &n).unwrap_err().sqlstate(), "22003");
        assert_eq!(assign(Value::Int4(7), &n).unwrap().to_string(), "7.00");
        assert_eq!(cast(Value::Float8(0.1), &DataType::Numeric(None)).unwrap().to_string(), "0.1");
    }

    #[test]
    fn booleans_and_bytea() {
        for t in ["t", "TRUE", "yes", "on", "1", " y "] {
            assert!(parse_bool(t).unwrap(), "{t}");
        }
        for t in ["f", "false", "no", "off", "0"] {
            assert!(!parse_bool(t).unwrap(), "{t}");
        }
        assert_eq!(parse_bool("maybe").unwrap_err().sqlstate(), "22P02");
        assert_eq!(parse_bytea("\\x0aff").unwrap(), vec![10, 255]);
        assert_eq!(parse_bytea("a\\\\b\\001").unwrap(), b"a\\b\x01".to_vec());
        assert!(parse_bytea("\\x0").is_err());
    }
}
