//! Our types on the wire: PostgreSQL type OIDs, the text and binary forms
//! of result values, and decoding of Bind parameters.
//!
//! Text output is the engine's own rendering (`Value`'s `Display`, which
//! prints PostgreSQL's text forms, timestamptz in the zone of the
//! statement that produced it). Binary output follows PostgreSQL's
//! `*send` functions: big-endian integers, IEEE floats, numeric in base
//! 10000 digits, date/time as days or microseconds since 2000-01-01 (the
//! engine's own representation), arrays with a header of dimensions.

use bytes::{BufMut, BytesMut};
use qube_common::types::DataType;
use qube_common::{Error, Result};
use qube_sql::Value;
use qube_sql::types::datetime::Interval;
use qube_sql::types::numeric::Numeric;

// The OID mapping lives in qube-common, shared with the SQL engine's
// pg_type and format_type (see qube_sql::system).
pub use qube_common::types::{TEXT_OID, from_oid, oid, type_modifier, type_size};

/// Appends a value's text form (not NULL).
pub fn write_text(v: &Value, out: &mut BytesMut) {
    use std::fmt::Write;
    match v {
        Value::Text(s) | Value::Json(s) => out.put_slice(s.as_bytes()),
        Value::Int2(n) => write_int(i64::from(*n), out),
        Value::Int4(n) => write_int(i64::from(*n), out),
        Value::Int8(n) => write_int(*n, out),
        // Writing to a BytesMut cannot fail.
        v => {
            let _ = write!(out, "{v}");
        }
    }
}

/// Appends an integer in decimal, as its `Display` does, without going
/// through the formatter.
fn write_int(n: i64, out: &mut BytesMut) {
    if n < 0 {
        out.put_u8(b'-');
    }
    out.put_slice(qube_common::decimal_digits(n.unsigned_abs(), &mut [0u8; 20]));
}

/// Appends an int2vector's text form: the numbers separated by spaces.
pub fn write_int2vector_text(items: &[Value], out: &mut BytesMut) {
    use std::fmt::Write;
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            out.put_u8(b' ');
        }
        let _ = write!(out, "{v}");
    }
}

fn out_of_range(t: &DataType) -> Error {
    Error::user("22003", format!("value out of range for type {}", t.sql_name()))
}

/// Appends a value's binary form as type `t` (not NULL). A value whose
/// kind differs from the column's (never expected) is cast first.
pub fn write_binary(v: &Value, t: &DataType, out: &mut BytesMut) -> Result<()> {
    match (t, v) {
        (DataType::Boolean, Value::Bool(b)) => out.put_u8(*b as u8),
        (DataType::SmallInt, v) if v.as_i64().is_some() => {
            let i = v.as_i64().unwrap_or_default();
            out.put_i16(i16::try_from(i).map_err(|_| out_of_range(t))?)
        }
        (DataType::Integer, v) if v.as_i64().is_some() => {
            let i = v.as_i64().unwrap_or_default();
            out.put_i32(i32::try_from(i).map_err(|_| out_of_range(t))?)
        }
        (DataType::BigInt, v) if v.as_i64().is_some() => out.put_i64(v.as_i64().unwrap_or(0)),
        (DataType::Real, Value::Float4(f)) => out.put_f32(*f),
        (DataType::Double, Value::Float8(f)) => out.put_f64(*f),
        (DataType::Numeric(_), Value::Numeric(d)) => write_numeric(d, out),
        (DataType::Text | DataType::Varchar(_) | DataType::Char(_), Value::Text(s))
        | (DataType::Json, Value::Json(s)) => out.put_slice(s.as_bytes()),
        (DataType::Jsonb, Value::Jsonb(j)) => {
            out.put_u8(1);
            use std::fmt::Write;
            let _ = write!(out, "{j}");
        }
        (DataType::Bytea, Value::Bytea(b)) => out.put_slice(b),
        (DataType::Date, Value::Date(d)) => out.put_i32(*d),
        (DataType::Time, Value::Time(t)) => out.put_i64(*t),
        (DataType::Timestamp, Value::Timestamp(t))
        | (DataType::TimestampTz, Value::TimestampTz(t)) => out.put_i64(*t),
        (DataType::Interval, Value::Interval(i)) => {
            out.put_i64(i.micros);
            out.put_i32(i.days);
            out.put_i32(i.months);
        }
        (DataType::Uuid, Value::Uuid(u)) => out.put_slice(u),
        (DataType::Array(e), Value::Array(items)) => write_array(items, e, 1, out)?,
        // int2vector_send is array_send of a smallint array indexed from 0.
        (DataType::Int2Vector, Value::Array(items)) => {
            write_array(items, &DataType::SmallInt, 0, out)?
        }
        // record_send: the field count, then each field's type OID,
        // length (-1 for NULL) and binary form.
        (DataType::Record(fields), Value::Record(items)) => {
            out.put_i32(i32::try_from(items.len()).map_err(|_| out_of_range(t))?);
            for (v, (_, ft)) in items.iter().zip(fields) {
                out.put_u32(oid(ft));
                if v.is_null() {
                    out.put_i32(-1);
                    continue;
                }
                let at = out.len();
                out.put_i32(0);
                write_binary(v, ft, out)?;
                let len = (out.len() - at - 4) as i32;
                out[at..at + 4].copy_from_slice(&len.to_be_bytes());
            }
        }
        (t, v) => {
            let cast = qube_sql::types::cast::cast(v.clone(), t)?;
            if std::mem::discriminant(&cast) == std::mem::discriminant(v) {
                return Err(Error::Internal(format!(
                    "no binary form of {v:?} as {}",
                    t.sql_name()
                )));
            }
            return write_binary(&cast, t, out);
        }
    }
    Ok(())
}

fn write_array(items: &[Value], elem: &DataType, lower: i32, out: &mut BytesMut) -> Result<()> {
    let has_null = items.iter().any(Value::is_null);
    out.put_i32(if items.is_empty() { 0 } else { 1 });
    out.put_i32(has_null as i32);
    out.put_u32(oid(elem));
    if !items.is_empty() {
        out.put_i32(i32::try_from(items.len()).map_err(|_| out_of_range(elem))?);
        out.put_i32(lower);
    }
    for v in items {
        if v.is_null() {
            out.put_i32(-1);
            continue;
        }
        let at = out.len();
        out.put_i32(0);
        write_binary(v, elem, out)?;
        let len = (out.len() - at - 4) as i32;
        out[at..at + 4].copy_from_slice(&len.to_be_bytes());
    }
    Ok(())
}

/// PostgreSQL's numeric_send: digit count, weight (of the first base-10000
/// digit), sign (0xC000 NaN, 0xD000 Infinity, 0xF000 -Infinity), display
/// scale, then the base-10000 digits.
fn write_numeric(d: &Numeric, out: &mut BytesMut) {
    let mut b = Vec::with_capacity(16);
    d.to_pg_binary(&mut b);
    out.extend_from_slice(&b);
}

fn bad_binary(t: &DataType) -> Error {
    Error::user(
        "22P03",
        format!("incorrect binary data format in bind parameter of type {}", t.sql_name()),
    )
}

fn exact<const N: usize>(b: &[u8], t: &DataType) -> Result<[u8; N]> {
    b.try_into().map_err(|_| bad_binary(t))
}

fn utf8(b: &[u8]) -> Result<String> {
    utf8_str(b).map(str::to_owned)
}

/// `b` as UTF-8, or PostgreSQL's error naming the bad sequence as it
/// does: the bytes a character starting there would take (by its first
/// byte, at most those left), `invalid byte sequence for encoding "UTF8":
/// 0xe2 0x28 0xa1`.
pub(crate) fn utf8_str(b: &[u8]) -> Result<&str> {
    std::str::from_utf8(b).map_err(|e| {
        let bad = &b[e.valid_up_to()..];
        let len = match bad.first().copied().unwrap_or(0) {
            c if c & 0xe0 == 0xc0 => 2,
            c if c & 0xf0 == 0xe0 => 3,
            c if c & 0xf8 == 0xf0 => 4,
            _ => 1,
        };
        let bytes: Vec<String> = bad.iter().take(len).map(|c| format!("0x{c:02x}")).collect();
        Error::user(
            "22021",
            format!("invalid byte sequence for encoding \"UTF8\": {}", bytes.join(" ")),
        )
    })
}

/// A Bind parameter: text of an integer type is read as that type now,
/// as PostgreSQL reads every text parameter at Bind (the engine's own
/// input rules, `cast::parse_int`); other text is handed to the engine as
/// text (it casts it where the statement gives the parameter a type);
/// binary is decoded as type `t`.
pub fn decode_param(data: Option<&[u8]>, binary: bool, t: Option<&DataType>) -> Result<Value> {
    let Some(b) = data else { return Ok(Value::Null) };
    if !binary {
        let text = utf8_str(b)?;
        if let Some(t) = t
            && let Some(v) = qube_sql::types::cast::parse_int(text, t)
        {
            return v;
        }
        return Ok(Value::Text(text.to_owned()));
    }
    let Some(t) = t else {
        return Err(Error::user(
            "08P01",
            "binary parameter of unknown type (declare its type in Parse)",
        ));
    };
    decode_binary(b, t)
}

fn decode_binary(b: &[u8], t: &DataType) -> Result<Value> {
    Ok(match t {
        DataType::Boolean => match b {
            [0] => Value::Bool(false),
            [1] => Value::Bool(true),
            _ => return Err(bad_binary(t)),
        },
        DataType::SmallInt => Value::Int2(i16::from_be_bytes(exact(b, t)?)),
        DataType::Integer => Value::Int4(i32::from_be_bytes(exact(b, t)?)),
        DataType::BigInt => Value::Int8(i64::from_be_bytes(exact(b, t)?)),
        DataType::Real => Value::Float4(f32::from_be_bytes(exact(b, t)?)),
        DataType::Double => Value::Float8(f64::from_be_bytes(exact(b, t)?)),
        DataType::Numeric(_) => Value::Numeric(read_numeric(b)?),
        // The engine parses json/jsonb text where the parameter is cast.
        DataType::Text | DataType::Varchar(_) | DataType::Char(_) | DataType::Json => {
            Value::Text(utf8(b)?)
        }
        DataType::Jsonb => match b.split_first() {
            Some((1, rest)) => Value::Text(utf8(rest)?),
            _ => return Err(Error::user("22P03", "unsupported jsonb version number")),
        },
        DataType::Bytea => Value::Bytea(b.to_vec()),
        DataType::Date => Value::Date(i32::from_be_bytes(exact(b, t)?)),
        DataType::Time => Value::Time(i64::from_be_bytes(exact(b, t)?)),
        DataType::Timestamp => Value::Timestamp(i64::from_be_bytes(exact(b, t)?)),
        DataType::TimestampTz => Value::TimestampTz(i64::from_be_bytes(exact(b, t)?)),
        DataType::Interval => {
            let a: [u8; 16] = exact(b, t)?;
            Value::Interval(Interval {
                micros: i64::from_be_bytes(a[0..8].try_into().map_err(|_| bad_binary(t))?),
                days: i32::from_be_bytes(a[8..12].try_into().map_err(|_| bad_binary(t))?),
                months: i32::from_be_bytes(a[12..16].try_into().map_err(|_| bad_binary(t))?),
            })
        }
        DataType::Uuid => Value::Uuid(exact(b, t)?),
        DataType::Array(e) => Value::Array(read_array(b, e)?),
        DataType::Int2Vector => Value::Array(read_array(b, &DataType::SmallInt)?),
        // No parameter is declared a record (`from_oid` has no OID for it).
        DataType::Record(_) => {
            return Err(Error::user("0A000", "record parameters are not supported"));
        }
    })
}

/// A big-endian reader that reports short input as 22P03.
struct Reader<'a> {
    b: &'a [u8],
    t: &'a DataType,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.b.len() < n {
            return Err(bad_binary(self.t));
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }
    fn i32(&mut self) -> Result<i32> {
        let t = self.t;
        Ok(i32::from_be_bytes(exact(self.take(4)?, t)?))
    }
}

fn read_array(b: &[u8], elem: &DataType) -> Result<Vec<Value>> {
    let t = DataType::Array(Box::new(elem.clone()));
    let mut r = Reader { b, t: &t };
    let ndim = r.i32()?;
    let _has_null = r.i32()?;
    let _elem_oid = r.i32()?;
    if ndim == 0 {
        return Ok(Vec::new());
    }
    if ndim != 1 {
        return Err(Error::user("0A000", "only one-dimensional arrays are supported"));
    }
    let len = r.i32()?;
    let _lower = r.i32()?;
    if len < 0 || len as usize > r.b.len() / 4 {
        return Err(bad_binary(&t));
    }
    let mut out = Vec::with_capacity(len as usize);
    for _ in 0..len {
        let n = r.i32()?;
        if n < 0 {
            out.push(Value::Null);
        } else {
            out.push(decode_binary(r.take(n as usize)?, elem)?);
        }
    }
    if !r.b.is_empty() {
        return Err(bad_binary(&t));
    }
    Ok(out)
}

/// PostgreSQL's numeric_recv: digits hidden by the display scale are
/// truncated away; a malformed value is 22P03.
fn read_numeric(b: &[u8]) -> Result<Numeric> {
    Numeric::from_pg_binary(b).ok_or_else(|| bad_binary(&DataType::Numeric(None)))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_round_trip(s: &str) {
        let d = Numeric::parse(s).unwrap();
        let mut b = BytesMut::new();
        write_numeric(&d, &mut b);
        let back = read_numeric(&b).unwrap();
        assert_eq!(back.to_string(), d.to_string(), "{s}");
    }

    #[test]
    fn integers_are_written_as_display_writes_them() {
        let values = [
            Value::Int2(i16::MIN),
            Value::Int2(0),
            Value::Int4(-7),
            Value::Int4(i32::MAX),
            Value::Int8(i64::MIN),
            Value::Int8(i64::MAX),
            Value::Int8(10),
            Value::Int8(-100),
        ];
        for v in values {
            let mut b = BytesMut::new();
            write_text(&v, &mut b);
            assert_eq!(std::str::from_utf8(&b).unwrap(), v.to_string());
        }
    }

    #[test]
    fn numeric_binary_round_trips() {
        for s in ["0", "0.00", "1", "-1", "12345.678", "0.0001", "-0.00012", "10000", "1e10"] {
            numeric_round_trip(s);
        }
        numeric_round_trip("79228162514264337593543950335");
        numeric_round_trip("0.0000000000000000000000000001");
        numeric_round_trip("100000000.5");
        numeric_round_trip("123456789012345678901234567890.123456789012345678");
        numeric_round_trip("1e-40");
        numeric_round_trip("-1e200");
        for s in ["NaN", "Infinity", "-Infinity"] {
            numeric_round_trip(s);
        }
    }

    #[test]
    fn numeric_binary_matches_postgresql() {
        // numeric_send of 12345.678: 3 digits, weight 1, dscale 3: 1 2345 6780.
        let mut b = BytesMut::new();
        write_numeric(&Numeric::parse("12345.678").unwrap(), &mut b);
        assert_eq!(&b[..], &[0, 3, 0, 1, 0, 0, 0, 3, 0, 1, 0x09, 0x29, 0x1a, 0x7c]);
        // PostgreSQL 15's special values: no digits, the sign word says which.
        for (s, sign) in [("NaN", 0xC0u8), ("Infinity", 0xD0), ("-Infinity", 0xF0)] {
            let mut b = BytesMut::new();
            write_numeric(&Numeric::parse(s).unwrap(), &mut b);
            assert_eq!(&b[..], &[0, 0, 0, 0, sign, 0, 0, 0], "{s}");
        }
        // Digits beyond the display scale are truncated, as numeric_recv does.
        let v = read_numeric(&[0, 2, 0, 0, 0, 0, 0, 1, 0, 1, 0x17, 0x70]).unwrap();
        assert_eq!(v.to_string(), "1.6");
        assert!(read_numeric(&[0, 1, 0, 0, 0x12, 0, 0, 0, 0, 1]).is_err());
    }
}
