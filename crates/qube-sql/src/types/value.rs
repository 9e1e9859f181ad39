//! SQL values: what expressions compute, rows hold and results return.
//!
//! A `Value` carries its own type tag; a column's declared type is kept by
//! the plan, and values are coerced to it on the way into a table
//! (`cast::assign`). Integers keep their width (`smallint` arithmetic
//! overflows at 16 bits, as in PostgreSQL); `numeric` is PostgreSQL's
//! arbitrary-precision decimal with NaN and ±Infinity (`types::numeric`);
//! text is UTF-8.

use std::cmp::Ordering;
use std::fmt;

use qube_common::types::DataType;

use super::datetime::{self, Interval};
use super::jsonb::Jsonb;
use super::numeric::Numeric;

/// One SQL value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int2(i16),
    Int4(i32),
    Int8(i64),
    Float4(f32),
    Float8(f64),
    Numeric(Numeric),
    Text(String),
    Bytea(Vec<u8>),
    // Date/time (see `datetime`): days / µs since 2000-01-01, µs since midnight.
    Date(i32),
    Time(i64),
    Timestamp(i64),
    TimestampTz(i64),
    Interval(Interval),
    // uuid, json, jsonb, arrays (keep these last; see types::jsonb, types::array).
    Uuid([u8; 16]),
    /// json: the text as given (validated).
    Json(String),
    Jsonb(Box<Jsonb>),
    /// A one-dimensional array's elements (lower bound 1).
    Array(Vec<Value>),
    /// An anonymous record's fields (`DataType::Record` names them).
    Record(Vec<Value>),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// True for a value that owns no heap memory (a number that is not a
    /// big numeric, a date/time, a uuid, NULL), whose drop does nothing:
    /// `forget_plain` then skips the out-of-line drop call.
    /// Listed by what it accepts, so that a variant added later counts as
    /// owning memory (a value forgotten wrongly would leak it).
    #[inline]
    pub fn is_plain(&self) -> bool {
        matches!(
            self,
            Value::Null
                | Value::Bool(_)
                | Value::Int2(_)
                | Value::Int4(_)
                | Value::Int8(_)
                | Value::Float4(_)
                | Value::Float8(_)
                | Value::Numeric(
                    Numeric::Small(_) | Numeric::NaN | Numeric::PosInf | Numeric::NegInf
                )
                | Value::Date(_)
                | Value::Time(_)
                | Value::Timestamp(_)
                | Value::TimestampTz(_)
                | Value::Interval(_)
                | Value::Uuid(_)
        )
    }

    /// True for a value a reused row may keep (`FetchBufs::spare`): a
    /// plain one, or a short text or bytea whose buffer the next row's
    /// value of the column is decoded into.
    #[inline]
    pub fn is_small(&self) -> bool {
        match self {
            Value::Text(s) => s.capacity() <= SMALL_BUFFER,
            Value::Bytea(b) => b.capacity() <= SMALL_BUFFER,
            v => v.is_plain(),
        }
    }

    /// Drops `self`, inline for a plain value (`is_plain`): a recycled
    /// row's values are mostly plain, and `drop_in_place::<Value>` is a
    /// call per value.
    #[inline]
    pub fn forget_plain(self) {
        if self.is_plain() {
            std::mem::forget(self);
        }
    }
}

/// The longest buffer of a value `Value::is_small` accepts.
const SMALL_BUFFER: usize = 64;

/// `*slot = v`, the old value dropped inline if it is plain
/// (`Value::forget_plain`): a reused row's slots mostly hold NULLs and
/// numbers.
#[inline]
pub fn set_value(slot: &mut Value, v: Value) {
    std::mem::replace(slot, v).forget_plain();
}

/// `row.truncate(n)`, the values cut off dropped as `set_value` drops
/// them.
#[inline]
pub fn truncate_row(row: &mut Vec<Value>, n: usize) {
    while row.len() > n {
        if let Some(v) = row.pop() {
            v.forget_plain();
        }
    }
}

/// Empties `row`, keeping its capacity (`truncate_row` to 0).
#[inline]
pub fn clear_row(row: &mut Vec<Value>) {
    truncate_row(row, 0);
}

/// Sets every value of `row` to NULL (`set_value`).
#[inline]
pub fn null_row(row: &mut [Value]) {
    for v in row {
        set_value(v, Value::Null);
    }
}

impl Value {
    /// The type of a non-null value (`None` for NULL, whose type comes
    /// from its context).
    pub fn data_type(&self) -> Option<DataType> {
        Some(match self {
            Value::Null => return None,
            Value::Bool(_) => DataType::Boolean,
            Value::Int2(_) => DataType::SmallInt,
            Value::Int4(_) => DataType::Integer,
            Value::Int8(_) => DataType::BigInt,
            Value::Float4(_) => DataType::Real,
            Value::Float8(_) => DataType::Double,
            Value::Numeric(_) => DataType::Numeric(None),
            Value::Text(_) => DataType::Text,
            Value::Bytea(_) => DataType::Bytea,
            Value::Date(_) => DataType::Date,
            Value::Time(_) => DataType::Time,
            Value::Timestamp(_) => DataType::Timestamp,
            Value::TimestampTz(_) => DataType::TimestampTz,
            Value::Interval(_) => DataType::Interval,
            Value::Uuid(_) => DataType::Uuid,
            Value::Json(_) => DataType::Json,
            Value::Jsonb(_) => DataType::Jsonb,
            Value::Array(items) => DataType::Array(Box::new(
                items.iter().find_map(Value::data_type).unwrap_or(DataType::Text),
            )),
            Value::Record(fields) => DataType::Record(
                fields
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (format!("f{}", i + 1), v.data_type().unwrap_or(DataType::Text)))
                    .collect(),
            ),
        })
    }

    /// The integer value of any integer type.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int2(v) => Some(*v as i64),
            Value::Int4(v) => Some(*v as i64),
            Value::Int8(v) => Some(*v),
            _ => None,
        }
    }

    /// The value as a double, for any numeric type.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int2(v) => Some(*v as f64),
            Value::Int4(v) => Some(*v as f64),
            Value::Int8(v) => Some(*v as f64),
            Value::Float4(v) => Some(*v as f64),
            Value::Float8(v) => Some(*v),
            Value::Numeric(d) => Some(d.to_f64()),
            _ => None,
        }
    }

    /// Total order used by ORDER BY, DISTINCT, GROUP BY and indexes:
    /// NULL sorts after every value (PostgreSQL's default for ASC); values
    /// of different numeric types compare by value; NaN sorts after every
    /// other number and equals itself, as in PostgreSQL.
    pub fn total_cmp(&self, other: &Value) -> Ordering {
        match (self, other) {
            (Value::Null, Value::Null) => Ordering::Equal,
            (Value::Null, _) => Ordering::Greater,
            (_, Value::Null) => Ordering::Less,
            _ => self.sql_cmp(other).unwrap_or_else(|| rank(self).cmp(&rank(other))),
        }
    }

    /// SQL comparison of two non-null values of comparable types; `None`
    /// if either is NULL or the types do not compare.
    pub fn sql_cmp(&self, other: &Value) -> Option<Ordering> {
        use Value::*;
        Some(match (self, other) {
            (Null, _) | (_, Null) => return None,
            (Bool(a), Bool(b)) => a.cmp(b),
            (Text(a), Text(b)) => a.cmp(b),
            (Bytea(a), Bytea(b)) => a.cmp(b),
            (Numeric(a), Numeric(b)) => a.cmp(b),
            (Date(a), Date(b)) => a.cmp(b),
            (Time(a), Time(b)) => a.cmp(b),
            (Timestamp(a), Timestamp(b)) | (TimestampTz(a), TimestampTz(b)) => a.cmp(b),
            (Interval(a), Interval(b)) => a.cmp_span(b),
            // A date is its midnight (same as PostgreSQL's date ↔ timestamp operators).
            (Date(a), Timestamp(b)) => date_ts(*a).cmp(b),
            (Timestamp(a), Date(b)) => a.cmp(&date_ts(*b)),
            (Date(_) | Time(_) | Timestamp(_) | TimestampTz(_) | Interval(_), _)
            | (_, Date(_) | Time(_) | Timestamp(_) | TimestampTz(_) | Interval(_)) => return None,
            (Uuid(a), Uuid(b)) => a.cmp(b),
            (Jsonb(a), Jsonb(b)) => a.btree_cmp(b),
            (Array(a), Array(b)) | (Record(a), Record(b)) => return super::array::cmp(a, b),
            (Json(_), _) | (_, Json(_)) => return None,
            (a, b) => {
                if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
                    return Some(x.cmp(&y));
                }
                match (a, b) {
                    (Float4(_) | Float8(_), _) | (_, Float4(_) | Float8(_)) => {
                        let (x, y) = (a.as_f64()?, b.as_f64()?);
                        float_cmp(x, y)
                    }
                    (Numeric(d), i) => d.cmp(&super::numeric::Numeric::from_i64(i.as_i64()?)),
                    (i, Numeric(d)) => super::numeric::Numeric::from_i64(i.as_i64()?).cmp(d),
                    _ => return None,
                }
            }
        })
    }
}

/// A date's midnight as a timestamp (infinities map to infinities).
pub fn date_ts(d: i32) -> i64 {
    match d {
        datetime::DATE_NEG_INF => datetime::TS_NEG_INF,
        datetime::DATE_POS_INF => datetime::TS_POS_INF,
        d => (d as i64).saturating_mul(datetime::USECS_PER_DAY),
    }
}

/// PostgreSQL's float order: NaN is larger than everything and equal to itself.
pub fn float_cmp(x: f64, y: f64) -> Ordering {
    match (x.is_nan(), y.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
    }
}

/// Orders values of types that do not compare (only reachable through
/// mixed-type internal sorts, never for a well-typed column).
fn rank(v: &Value) -> u8 {
    match v {
        Value::Null => 9,
        Value::Bool(_) => 0,
        Value::Int2(_) | Value::Int4(_) | Value::Int8(_) => 1,
        Value::Float4(_) | Value::Float8(_) | Value::Numeric(_) => 1,
        Value::Text(_) => 2,
        Value::Bytea(_) => 3,
        Value::Date(_) | Value::Timestamp(_) => 4,
        Value::Time(_) => 5,
        Value::TimestampTz(_) => 6,
        Value::Interval(_) => 7,
        Value::Uuid(_) => 4,
        Value::Json(_) => 5,
        Value::Jsonb(_) => 6,
        Value::Array(_) | Value::Record(_) => 7,
    }
}

/// PostgreSQL's text output format.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Bool(b) => f.write_str(if *b { "t" } else { "f" }),
            Value::Int2(v) => write!(f, "{v}"),
            Value::Int4(v) => write!(f, "{v}"),
            Value::Int8(v) => write!(f, "{v}"),
            Value::Float4(v) => f.write_str(&format_float(*v as f64, true)),
            Value::Float8(v) => f.write_str(&format_float(*v, false)),
            Value::Numeric(d) => write!(f, "{d}"),
            Value::Text(s) => f.write_str(s),
            Value::Bytea(b) => {
                f.write_str("\\x")?;
                for byte in b {
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
            Value::Date(_)
            | Value::Time(_)
            | Value::Timestamp(_)
            | Value::TimestampTz(_)
            | Value::Interval(_) => {
                let mut s = String::new();
                self.write_datetime(datetime::zone(), &mut s);
                f.write_str(&s)
            }
            Value::Uuid(u) => f.write_str(&format_uuid(u)),
            Value::Json(s) => f.write_str(s),
            Value::Jsonb(j) => write!(f, "{j}"),
            Value::Array(items) => {
                let mut s = String::new();
                super::array::write(items, &mut s);
                f.write_str(&s)
            }
            Value::Record(fields) => f.write_str(&record_text(fields)),
        }
    }
}

impl Value {
    /// Text output of a date/time value, timestamptz in `zone`.
    pub fn write_datetime(&self, zone: datetime::Zone, out: &mut String) {
        match self {
            Value::Date(d) => datetime::format_date(*d, out),
            Value::Time(t) => datetime::format_time(*t, out),
            Value::Timestamp(t) => datetime::format_timestamp(*t, None, out),
            Value::TimestampTz(t) => datetime::format_timestamptz(*t, zone, out),
            Value::Interval(i) => datetime::format_interval(i, out),
            _ => {}
        }
    }
}

/// PostgreSQL's `record_out`: `(a,b)`, a NULL field empty, a field that is
/// empty or holds a quote, backslash, parenthesis, comma or space quoted
/// with `"` (quotes and backslashes doubled inside).
pub fn record_text(fields: &[Value]) -> String {
    let mut s = String::from("(");
    for (i, v) in fields.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        if v.is_null() {
            continue;
        }
        let t = super::cast::to_text(v.clone());
        let quote = t.is_empty()
            || t.chars().any(|c| matches!(c, '"' | '\\' | '(' | ')' | ',') || c.is_whitespace());
        if !quote {
            s.push_str(&t);
            continue;
        }
        s.push('"');
        for c in t.chars() {
            if matches!(c, '"' | '\\') {
                s.push(c);
            }
            s.push(c);
        }
        s.push('"');
    }
    s.push(')');
    s
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, lower case.
pub fn format_uuid(u: &[u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, b) in u.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// PostgreSQL's uuid input: 32 hex digits, optionally in braces, with a
/// hyphen allowed after any group of four digits.
pub fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let b = text.as_bytes();
    let mut i = 0;
    let braces = b.first() == Some(&b'{');
    if braces {
        i += 1;
    }
    let mut out = [0u8; 16];
    for (k, byte) in out.iter_mut().enumerate() {
        let h = |c: u8| (c as char).to_digit(16);
        let (hi, lo) = (h(*b.get(i)?)?, h(*b.get(i + 1)?)?);
        *byte = (hi * 16 + lo) as u8;
        i += 2;
        if b.get(i) == Some(&b'-') && k % 2 == 1 && k < 15 {
            i += 1;
        }
    }
    if braces {
        if b.get(i) != Some(&b'}') {
            return None;
        }
        i += 1;
    }
    (i == b.len()).then_some(out)
}

/// Shortest text that reads back as the same float (PostgreSQL 12+'s
/// `extra_float_digits = 1` default), with PostgreSQL's spellings of the
/// special values and its switch to exponent notation.
pub fn format_float(v: f64, single: bool) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    let s = if single { format!("{:e}", v as f32) } else { format!("{v:e}") };
    // Rust's `{:e}` is the shortest round-trip digits: "1.2345e3".
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (neg, digits) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m.replace('.', "")),
        None => (false, mantissa.replace('.', "")),
    };
    let sign = if neg { "-" } else { "" };
    let max_exp = if single { 6 } else { 15 };
    if exp < -4 || exp >= max_exp {
        let (first, rest) = digits.split_at(1);
        let rest = if rest.is_empty() { String::new() } else { format!(".{rest}") };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{rest}e{esign}{:02}", exp.abs());
    }
    if exp >= 0 {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            format!("{sign}{digits}{}", "0".repeat(int_len - digits.len()))
        } else {
            format!("{sign}{}.{}", &digits[..int_len], &digits[int_len..])
        }
    } else {
        format!("{sign}0.{}{digits}", "0".repeat((-exp - 1) as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_values_own_nothing_and_small_ones_only_short_buffers() {
        let big = Numeric::parse("1234567890123456789012345678901234567890.5").unwrap();
        assert!(matches!(big, Numeric::Big(_)));
        let owning = [
            Value::Numeric(big),
            Value::Text("a".into()),
            Value::Bytea(vec![1]),
            Value::Json("{}".into()),
            Value::Array(vec![Value::Int4(1)]),
            Value::Record(vec![]),
        ];
        for v in &owning {
            assert!(!v.is_plain(), "{v:?}");
        }
        let plain = [
            Value::Null,
            Value::Bool(true),
            Value::Int2(1),
            Value::Int4(1),
            Value::Int8(1),
            Value::Float4(1.0),
            Value::Float8(1.0),
            Value::Numeric(Numeric::parse("1.5").unwrap()),
            Value::Date(1),
            Value::Time(1),
            Value::Timestamp(1),
            Value::TimestampTz(1),
            Value::Interval(Interval { months: 1, days: 2, micros: 3 }),
            Value::Uuid([7; 16]),
        ];
        for v in &plain {
            assert!(v.is_plain() && v.is_small(), "{v:?}");
        }
        assert!(Value::Text("short".into()).is_small());
        assert!(!Value::Text("x".repeat(SMALL_BUFFER + 1)).is_small());
        assert!(!Value::Json("{}".into()).is_small());
        let mut row = owning.to_vec();
        row.extend(plain);
        let n = row.len();
        truncate_row(&mut row, n + 1);
        assert_eq!(row.len(), n);
        truncate_row(&mut row, 3);
        assert_eq!(row, owning[..3]);
        // A slot's old value, plain or owning, is replaced.
        set_value(&mut row[0], Value::Int8(i64::MIN));
        set_value(&mut row[1], Value::Text("y".repeat(40)));
        set_value(&mut row[1], Value::Null);
        assert_eq!(row, [Value::Int8(i64::MIN), Value::Null, owning[2].clone()]);
        null_row(&mut row);
        assert!(row.iter().all(Value::is_null));
        clear_row(&mut row);
        assert!(row.is_empty());
    }

    #[test]
    fn floats_print_as_postgresql_does() {
        assert_eq!(format_float(1.0, false), "1");
        assert_eq!(format_float(0.1, false), "0.1");
        assert_eq!(format_float(123.456, false), "123.456");
        assert_eq!(format_float(1e15, false), "1e+15");
        assert_eq!(format_float(123456789012345.0, false), "123456789012345");
        assert_eq!(format_float(0.0001, false), "0.0001");
        assert_eq!(format_float(0.00001, false), "1e-05");
        assert_eq!(format_float(-2.5, false), "-2.5");
        assert_eq!(format_float(f64::NAN, false), "NaN");
        assert_eq!(format_float(f64::NEG_INFINITY, false), "-Infinity");
        assert_eq!(format_float(1.1f32 as f64, true), "1.1");
        assert_eq!(format_float(1234567.0, true), "1.234567e+06");
    }

    #[test]
    fn mixed_numeric_comparison_and_null_order() {
        assert_eq!(Value::Int2(3).sql_cmp(&Value::Int8(3)), Some(Ordering::Equal));
        assert_eq!(Value::Int4(3).sql_cmp(&Value::Float8(3.5)), Some(Ordering::Less));
        let d = Value::Numeric(Numeric::from_decimal(rust_decimal::Decimal::new(25, 1)));
        assert_eq!(Value::Int4(3).sql_cmp(&d), Some(Ordering::Greater));
        assert_eq!(Value::Null.sql_cmp(&Value::Int4(1)), None);
        assert_eq!(Value::Null.total_cmp(&Value::Int4(1)), Ordering::Greater);
        assert_eq!(Value::Float8(f64::NAN).total_cmp(&Value::Float8(1e300)), Ordering::Greater);
    }
}
