//! Byte encodings of values: rows (compact, self-describing) and keys
//! (order-preserving, for primary keys and indexes).
//!
//! # Row format
//!
//! ```text
//! row   := 0x01 (version) ncols:varint value*
//! value := tag:u8 payload
//!   0 NULL | 1 false | 2 true
//!   3 int2 (2 B LE) | 4 int4 (4 B LE) | 5 int8 (8 B LE)
//!   6 float4 (4 B LE) | 7 float8 (8 B LE)
//!   8 numeric that fits rust_decimal (its 16-byte serialization)
//!   9 text (len:varint, UTF-8) | 10 bytea (len:varint, bytes)
//!   11 date (i32 LE days since 2000-01-01) | 12 time (i64 LE µs since midnight)
//!   13 timestamp | 14 timestamptz (i64 LE µs since 2000-01-01 [UTC])
//!   15 interval (months i32 LE, days i32 LE, µs i64 LE)
//!   16 uuid (16 B) | 17 json (len:varint, its text)
//!   18 jsonb (types::jsonb's binary node encoding)
//!   19 array (count:varint, then each element as a value; one level)
//!   20 record (as an array: its fields; only in spilled query rows,
//!      never in a table: no column has the record type)
//!   21 any other numeric (len:varint, `Numeric::encode_payload`: NaN,
//!      ±Infinity, or mantissa and scale of a value beyond rust_decimal)
//!   22–24 int4 in 1–3 bytes | 25–31 int8 in 1–7 bytes | 32 int2 in 1 byte
//!      (LE, the low bytes of the two's complement, sign-extended when read)
//! ```
//!
//! An integer is written in the fewest bytes that hold it (tags 22–32),
//! its type kept by the tag; the full widths (3, 4, 5) remain for the
//! values that need them, and rows written before the short tags existed
//! read as they did. A row of small integers is smaller by up to three
//! bytes per int4 column and seven per int8 (`bench sql`'s rows: ~4 of
//! ~31 bytes).
//!
//! A row shorter than the table (written before `ADD COLUMN`) reads its
//! missing trailing columns as NULL.
//!
//! # Key format
//!
//! Memcomparable: comparing two encodings byte-wise orders them as
//! `Value::total_cmp` orders the values, column after column.
//!
//! ```text
//! key   := part*
//! part  := 0x02 (NULL, after every value: PostgreSQL's NULLS LAST)
//!        | 0x01 body
//! body  := bool: 0|1
//!        | any integer: its bits with the sign bit flipped, as an `OrdU64`
//!          (a tag, then its significant bytes: 1–4 bytes for small values)
//!        | float: f64 bits, sign flipped if positive, all bits if negative
//!        | numeric: sign (0 neg, 1 zero, 2 pos), then for non-zero values
//!          exponent (i16 BE, sign flipped; beyond ±32766 an escape 0xFFFF or
//!          0x0000 then i32 BE, sign flipped) and digits ('0'..'9', no
//!          trailing zeros) ended by 0x00; all complemented when negative;
//!          -Infinity is 0x00 then six 0x00, Infinity 0x03, NaN 0x04
//!          (PostgreSQL's order: NaN above everything)
//!        | text, bytea: bytes with 0x00 escaped as 0x00 0xFF, ended by 0x00 0x00
//!        | date, time, timestamp(tz): as an integer (days, µs)
//!        | interval: its 30-day-month length in µs, i128 BE with the sign
//!          bit flipped (so '1 mon' and '30 days' are one key, as they are
//!          equal in PostgreSQL)
//!        | uuid: its 16 bytes
//!        | jsonb: types::jsonb's token-stream key (PostgreSQL's jsonb order)
//!        | array: each element's part (0x01 body | 0x02), then 0x00 — so a
//!          shorter array sorts first and NULL elements after values
//!        | record: as an array, field by field
//! ```
//!
//! Integers of different widths share one encoding so that an index on an
//! `integer` column can be searched with a `bigint` constant.

use qube_common::{Error, Result};
use rust_decimal::Decimal;

use super::numeric::Numeric;

use super::datetime::Interval;
use super::value::{Value, clear_row, set_value, truncate_row};

fn corrupt(what: &str) -> Error {
    Error::Internal(format!("undecodable row: {what}"))
}

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn get_varint(b: &[u8], pos: &mut usize) -> Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos).ok_or_else(|| corrupt("varint"))?;
        *pos += 1;
        v |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(corrupt("varint too long"))
}

/// Appends the row encoding of `values` to `out`.
pub fn encode_row(values: &[Value], out: &mut Vec<u8>) {
    out.push(1);
    put_varint(out, values.len() as u64);
    for v in values {
        encode_value(v, out);
    }
}

/// Encodes the values of `a` then those of `b` as one row.
pub fn encode_row_parts(a: &[Value], b: &[Value], out: &mut Vec<u8>) {
    out.push(1);
    put_varint(out, (a.len() + b.len()) as u64);
    for v in a.iter().chain(b) {
        encode_value(v, out);
    }
}

/// The first tag of int4 in 1–3 bytes (22, 23, 24).
const SHORT_INT4: u8 = 22;
/// The first tag of int8 in 1–7 bytes (25 … 31).
const SHORT_INT8: u8 = 25;
/// int2 in one byte.
const SHORT_INT2: u8 = 32;

/// The fewest bytes that hold `i` as a two's complement (1–8).
#[inline(always)]
fn int_width(i: i64) -> usize {
    // Bits without the sign's repetitions, plus the sign bit.
    let bits = 65 - (i ^ (i >> 63)).leading_zeros() as usize;
    bits.div_ceil(8)
}

/// A short integer's type and width by its tag (22–32).
#[inline(always)]
fn short_int(tag: u8) -> Option<(u8, usize)> {
    match tag {
        22..=24 => Some((4, (tag - SHORT_INT4 + 1) as usize)),
        25..=31 => Some((5, (tag - SHORT_INT8 + 1) as usize)),
        SHORT_INT2 => Some((3, 1)),
        _ => None,
    }
}

/// The `k` little-endian low bytes `b` of a two's complement, sign-extended.
#[inline(always)]
fn sign_extend(b: &[u8]) -> i64 {
    let mut x = [0u8; 8];
    x[..b.len()].copy_from_slice(b);
    let shift = 64 - 8 * b.len() as u32;
    (i64::from_le_bytes(x) << shift) >> shift
}

/// A short integer's value of type `ty` (3, 4, 5: int2, int4, int8).
fn short_value(ty: u8, i: i64) -> Value {
    match ty {
        3 => Value::Int2(i as i16),
        4 => Value::Int4(i as i32),
        _ => Value::Int8(i),
    }
}

/// An integer of a type whose full form is `(tag, width)` and whose short
/// forms are `(first tag, widest)`: in the fewest bytes that hold it. The
/// payload is copied as all eight bytes and then truncated, a fixed-size
/// copy (a copy of a variable length is a `memcpy` call, per integer of
/// every row written).
#[inline(always)]
fn put_int(out: &mut Vec<u8>, i: i64, (tag, width): (u8, usize), (first, widest): (u8, usize)) {
    let k = int_width(i);
    let (tag, len) = if k <= widest { (first - 1 + k as u8, k) } else { (tag, width) };
    out.push(tag);
    let at = out.len();
    out.extend_from_slice(&i.to_le_bytes());
    out.truncate(at + len);
}

fn encode_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.push(0),
        Value::Bool(b) => out.push(1 + *b as u8),
        Value::Int2(i) => put_int(out, i64::from(*i), (3, 2), (SHORT_INT2, 1)),
        Value::Int4(i) => put_int(out, i64::from(*i), (4, 4), (SHORT_INT4, 3)),
        Value::Int8(i) => put_int(out, *i, (5, 8), (SHORT_INT8, 7)),
        Value::Float4(f) => {
            out.push(6);
            out.extend_from_slice(&f.to_le_bytes());
        }
        Value::Float8(f) => {
            out.push(7);
            out.extend_from_slice(&f.to_le_bytes());
        }
        Value::Numeric(Numeric::Small(d)) => {
            out.push(8);
            out.extend_from_slice(&d.serialize());
        }
        Value::Numeric(n) => {
            out.push(21);
            let mut p = Vec::new();
            n.encode_payload(&mut p);
            put_varint(out, p.len() as u64);
            out.extend_from_slice(&p);
        }
        Value::Text(s) => {
            out.push(9);
            put_varint(out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Bytea(b) => {
            out.push(10);
            put_varint(out, b.len() as u64);
            out.extend_from_slice(b);
        }
        Value::Date(d) => {
            out.push(11);
            out.extend_from_slice(&d.to_le_bytes());
        }
        Value::Time(t) => {
            out.push(12);
            out.extend_from_slice(&t.to_le_bytes());
        }
        Value::Timestamp(t) => {
            out.push(13);
            out.extend_from_slice(&t.to_le_bytes());
        }
        Value::TimestampTz(t) => {
            out.push(14);
            out.extend_from_slice(&t.to_le_bytes());
        }
        Value::Interval(i) => {
            out.push(15);
            out.extend_from_slice(&i.months.to_le_bytes());
            out.extend_from_slice(&i.days.to_le_bytes());
            out.extend_from_slice(&i.micros.to_le_bytes());
        }
        Value::Uuid(u) => {
            out.push(16);
            out.extend_from_slice(u);
        }
        Value::Json(s) => {
            out.push(17);
            put_varint(out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Jsonb(j) => {
            out.push(18);
            super::jsonb::encode(j, out);
        }
        Value::Array(items) | Value::Record(items) => {
            out.push(if matches!(v, Value::Record(_)) { 20 } else { 19 });
            put_varint(out, items.len() as u64);
            for v in items {
                encode_value(v, out);
            }
        }
    }
}

/// Decodes a row of `ncols` columns into `out` (cleared first).
pub fn decode_row(b: &[u8], ncols: usize, out: &mut Vec<Value>) -> Result<()> {
    decode_row_cols(b, ncols, None, out)
}

/// As `decode_row`; the columns that `need` (if given) marks false are
/// left NULL without being decoded (a variable-length one without being
/// copied out), and decoding stops after the last column needed: a join or
/// GROUP BY over one integer column of a wide row reads just that column.
pub fn decode_row_cols(
    b: &[u8],
    ncols: usize,
    need: Option<&[bool]>,
    out: &mut Vec<Value>,
) -> Result<()> {
    if b.first() != Some(&1) {
        return Err(corrupt("unknown row version"));
    }
    let mut pos = 1;
    let n = get_varint(b, &mut pos)? as usize;
    // Columns past `need`'s end are needed (as before: a shorter mask only
    // speaks for the columns it lists).
    let last = match need {
        Some(need) if need.len() >= ncols => {
            need[..ncols].iter().rposition(|x| *x).map_or(0, |i| i + 1)
        }
        _ => ncols,
    };
    let stored = n.min(last);
    let needed = |i: usize| need.is_none_or(|n| n.get(i).copied().unwrap_or(true));
    if out.is_empty() {
        // A fresh row: each value pushed, with no NULL slot to fill and
        // drop first.
        out.reserve(ncols);
        for i in 0..ncols {
            if i < stored {
                if needed(i) {
                    out.push(decode_plain(b, &mut pos)?);
                    continue;
                }
                if !skip_value(b, &mut pos)? {
                    decode_value(b, &mut pos, 0)?;
                }
            }
            out.push(Value::Null);
        }
        return Ok(());
    }
    // A row buffer handed back for reuse keeps its slots: a needed column
    // is overwritten, any other one only cleared if it holds something (no
    // drop and re-push of every value per row).
    if out.len() != ncols {
        clear_row(out);
        out.resize_with(ncols, || Value::Null);
    }
    for (i, slot) in out.iter_mut().enumerate() {
        if i < stored {
            if needed(i) {
                decode_plain_into(b, &mut pos, slot)?;
                continue;
            }
            if !skip_value(b, &mut pos)? {
                decode_value(b, &mut pos, 0)?;
            }
        }
        if !slot.is_null() {
            *slot = Value::Null;
        }
    }
    Ok(())
}

/// Decodes the columns `cols` of a row into `out` (cleared first), in that
/// order, and nothing else: a scan under a projection of plain columns
/// (`SELECT id, name`) builds its output row directly, without the other
/// columns' NULL slots. `cols` must be strictly ascending (the row is read
/// once, front to back); a column past the row's stored ones reads as NULL,
/// as in `decode_row_cols`.
pub fn decode_row_select(b: &[u8], cols: &[usize], out: &mut Vec<Value>) -> Result<()> {
    if b.first() != Some(&1) {
        return Err(corrupt("unknown row version"));
    }
    if !cols.is_sorted_by(|a, b| a < b) {
        return Err(Error::Internal("row columns to decode are not ascending".into()));
    }
    let mut pos = 1;
    let n = get_varint(b, &mut pos)? as usize;
    // A row handed back for reuse keeps its slots (and their text
    // buffers: `decode_plain_into`).
    truncate_row(out, cols.len());
    out.resize_with(cols.len(), || Value::Null);
    // The stored column `pos` is at.
    let mut at = 0;
    for (&c, slot) in cols.iter().zip(out.iter_mut()) {
        if c >= n {
            set_value(slot, Value::Null);
            continue;
        }
        while at < c {
            if !skip_value(b, &mut pos)? {
                decode_value(b, &mut pos, 0)?;
            }
            at += 1;
        }
        decode_plain_into(b, &mut pos, slot)?;
        at += 1;
    }
    Ok(())
}

/// `decode_value` at the top level, with the common fixed-width integers
/// and short texts decoded in line (one call per value was ~200
/// instructions on a fetched row's two columns).
#[inline(always)]
fn decode_plain(b: &[u8], pos: &mut usize) -> Result<Value> {
    let p = *pos;
    match b.get(p) {
        Some(4) => {
            if let Some(x) = b.get(p + 1..p + 5).and_then(|x| <[u8; 4]>::try_from(x).ok()) {
                *pos = p + 5;
                return Ok(Value::Int4(i32::from_le_bytes(x)));
            }
        }
        Some(5) => {
            if let Some(x) = b.get(p + 1..p + 9).and_then(|x| <[u8; 8]>::try_from(x).ok()) {
                *pos = p + 9;
                return Ok(Value::Int8(i64::from_le_bytes(x)));
            }
        }
        Some(&tag @ 22..=24) => {
            let k = (tag - SHORT_INT4 + 1) as usize;
            if let Some(x) = b.get(p + 1..p + 1 + k) {
                *pos = p + 1 + k;
                return Ok(Value::Int4(sign_extend(x) as i32));
            }
        }
        // Text shorter than 128 bytes: a one-byte length.
        Some(9) => {
            if let Some(&len) = b.get(p + 1)
                && len < 0x80
                && let Some(s) = b.get(p + 2..p + 2 + len as usize)
            {
                *pos = p + 2 + len as usize;
                let s = std::str::from_utf8(s).map_err(|_| corrupt("text not UTF-8"))?;
                return Ok(Value::Text(s.to_owned()));
            }
        }
        _ => {}
    }
    decode_value(b, pos, 0)
}

/// `decode_plain` into `slot`: a short text into the text the slot already
/// holds, when it holds one (a row handed back for reuse: its buffer is
/// refilled, not freed and allocated again); anything else replaces the
/// slot's value.
#[inline(always)]
fn decode_plain_into(b: &[u8], pos: &mut usize, slot: &mut Value) -> Result<()> {
    let p = *pos;
    if let (Some(9), Value::Text(t)) = (b.get(p), &mut *slot)
        && let Some(&len) = b.get(p + 1)
        && len < 0x80
        && let Some(s) = b.get(p + 2..p + 2 + len as usize)
    {
        let s = std::str::from_utf8(s).map_err(|_| corrupt("text not UTF-8"))?;
        *pos = p + 2 + len as usize;
        t.clear();
        t.push_str(s);
        return Ok(());
    }
    set_value(slot, decode_plain(b, pos)?);
    Ok(())
}

/// What one column of an encoded row holds, when only an integer matters
/// (`peek_int`).
#[derive(Debug, PartialEq)]
pub enum IntCell {
    /// smallint, integer or bigint.
    Int(i64),
    /// NULL, or a column past the row's stored ones (read as NULL).
    Null,
    /// Any other value.
    Other,
}

/// Column `col` of the encoded row `b`, read without decoding the row:
/// the columns before it are skipped.
pub fn peek_int(b: &[u8], col: usize) -> Result<IntCell> {
    if b.first() != Some(&1) {
        return Err(corrupt("unknown row version"));
    }
    let mut pos = 1;
    let n = get_varint(b, &mut pos)? as usize;
    if col >= n {
        return Ok(IntCell::Null);
    }
    for _ in 0..col {
        // Integers (the usual columns before a key) by their fixed widths.
        match b.get(pos) {
            Some(3) => pos += 3,
            Some(4) => pos += 5,
            Some(5) => pos += 9,
            _ => {
                if !skip_value(b, &mut pos)? {
                    decode_value(b, &mut pos, 0)?;
                }
            }
        }
    }
    let tag = *b.get(pos).ok_or_else(|| corrupt("truncated row"))?;
    let bytes =
        |len: usize| b.get(pos + 1..pos + 1 + len).ok_or_else(|| corrupt("truncated value"));
    match tag {
        0 => Ok(IntCell::Null),
        3 => Ok(IntCell::Int(i16::from_le_bytes(bytes(2)?.try_into().unwrap_or([0; 2])) as i64)),
        4 => Ok(IntCell::Int(i32::from_le_bytes(bytes(4)?.try_into().unwrap_or([0; 4])) as i64)),
        5 => Ok(IntCell::Int(i64::from_le_bytes(bytes(8)?.try_into().unwrap_or([0; 8])))),
        t => match short_int(t) {
            Some((_, k)) => Ok(IntCell::Int(sign_extend(bytes(k)?))),
            None => Ok(IntCell::Other),
        },
    }
}

/// Steps over the value at `pos` without building it, for the plain
/// types; false (and `pos` unmoved) for the nested ones (jsonb, arrays,
/// records), which the caller decodes and drops instead.
// Always inlined: `decode_row_cols` steps over every unneeded column of
// every row with it (outlined, the call cost more than the step).
#[inline(always)]
fn skip_value(b: &[u8], pos: &mut usize) -> Result<bool> {
    let tag = *b.get(*pos).ok_or_else(|| corrupt("truncated row"))?;
    let len = match tag {
        0..=2 => 0,
        3 => 2,
        4 | 6 | 11 => 4,
        5 | 7 | 12..=14 => 8,
        8 | 15 | 16 => 16,
        22..=32 => short_int(tag).map_or(0, |x| x.1),
        9 | 10 | 17 | 21 => {
            let mut p = *pos + 1;
            let len = get_varint(b, &mut p)? as usize;
            if b.len() < p + len {
                return Err(corrupt("truncated value"));
            }
            *pos = p + len;
            return Ok(true);
        }
        _ => return Ok(false),
    };
    if b.len() < *pos + 1 + len {
        return Err(corrupt("truncated value"));
    }
    *pos += 1 + len;
    Ok(true)
}

fn decode_value(b: &[u8], pos: &mut usize, depth: usize) -> Result<Value> {
    let take = |pos: &mut usize, len: usize| -> Result<&[u8]> {
        let s = b.get(*pos..*pos + len).ok_or_else(|| corrupt("truncated value"))?;
        *pos += len;
        Ok(s)
    };
    let tag = *b.get(*pos).ok_or_else(|| corrupt("truncated row"))?;
    *pos += 1;
    Ok(match tag {
        0 => Value::Null,
        1 => Value::Bool(false),
        2 => Value::Bool(true),
        3 => Value::Int2(i16::from_le_bytes(take(pos, 2)?.try_into().unwrap_or([0; 2]))),
        4 => Value::Int4(i32::from_le_bytes(take(pos, 4)?.try_into().unwrap_or([0; 4]))),
        5 => Value::Int8(i64::from_le_bytes(take(pos, 8)?.try_into().unwrap_or([0; 8]))),
        22..=32 => {
            let (ty, k) = short_int(tag).ok_or_else(|| corrupt("unknown value tag"))?;
            short_value(ty, sign_extend(take(pos, k)?))
        }
        6 => Value::Float4(f32::from_le_bytes(take(pos, 4)?.try_into().unwrap_or([0; 4]))),
        7 => Value::Float8(f64::from_le_bytes(take(pos, 8)?.try_into().unwrap_or([0; 8]))),
        8 => Value::Numeric(Numeric::from_decimal(Decimal::deserialize(
            take(pos, 16)?.try_into().unwrap_or([0; 16]),
        ))),
        21 => {
            let len = get_varint(b, pos)? as usize;
            let p = take(pos, len)?;
            Value::Numeric(Numeric::decode_payload(p).ok_or_else(|| corrupt("bad numeric"))?)
        }
        9 | 17 => {
            let len = get_varint(b, pos)? as usize;
            let s = take(pos, len)?;
            let s = String::from_utf8(s.to_vec()).map_err(|_| corrupt("text not UTF-8"))?;
            if tag == 9 { Value::Text(s) } else { Value::Json(s) }
        }
        10 => {
            let len = get_varint(b, pos)? as usize;
            Value::Bytea(take(pos, len)?.to_vec())
        }
        11 => Value::Date(i32::from_le_bytes(take(pos, 4)?.try_into().unwrap_or([0; 4]))),
        12..=14 => {
            let t = i64::from_le_bytes(take(pos, 8)?.try_into().unwrap_or([0; 8]));
            match tag {
                12 => Value::Time(t),
                13 => Value::Timestamp(t),
                _ => Value::TimestampTz(t),
            }
        }
        15 => {
            let b = take(pos, 16)?;
            Value::Interval(Interval {
                months: i32::from_le_bytes(b[..4].try_into().unwrap_or([0; 4])),
                days: i32::from_le_bytes(b[4..8].try_into().unwrap_or([0; 4])),
                micros: i64::from_le_bytes(b[8..].try_into().unwrap_or([0; 8])),
            })
        }
        16 => Value::Uuid(take(pos, 16)?.try_into().unwrap_or([0; 16])),
        18 => Value::Jsonb(Box::new(super::jsonb::decode(b, pos)?)),
        19 | 20 if depth == 0 => {
            let n = get_varint(b, pos)? as usize;
            let mut items = Vec::with_capacity(n.min(1 << 16));
            for _ in 0..n {
                items.push(decode_value(b, pos, depth + 1)?);
            }
            if tag == 20 { Value::Record(items) } else { Value::Array(items) }
        }
        _ => return Err(corrupt("unknown value tag")),
    })
}

/// Appends the memcomparable key encoding of `v`.
pub fn encode_key(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => {
            out.push(2);
            return;
        }
        _ => out.push(1),
    }
    match v {
        Value::Null => {}
        Value::Bool(b) => out.push(*b as u8),
        Value::Int2(_) | Value::Int4(_) | Value::Int8(_) => {
            put_i64_key(v.as_i64().unwrap_or(0), out)
        }
        Value::Float4(_) | Value::Float8(_) => {
            let f = v.as_f64().unwrap_or(0.0);
            let f = if f.is_nan() {
                f64::NAN
            } else if f == 0.0 {
                0.0
            } else {
                f
            };
            let bits = f.to_bits();
            let bits = if bits >> 63 == 1 { !bits } else { bits ^ (1 << 63) };
            out.extend_from_slice(&bits.to_be_bytes());
        }
        Value::Numeric(d) => d.encode_key(out),
        Value::Text(s) => encode_bytes(s.as_bytes(), out),
        Value::Bytea(b) => encode_bytes(b, out),
        Value::Date(d) => put_i64_key(*d as i64, out),
        Value::Time(t) | Value::Timestamp(t) | Value::TimestampTz(t) => put_i64_key(*t, out),
        Value::Interval(i) => {
            out.extend_from_slice(&((i.span() as u128) ^ (1 << 127)).to_be_bytes());
        }
        Value::Uuid(u) => out.extend_from_slice(u),
        // json has no order (no btree operator class): its text.
        Value::Json(s) => encode_bytes(s.as_bytes(), out),
        Value::Jsonb(j) => j.key(out),
        Value::Array(items) | Value::Record(items) => {
            for v in items {
                encode_key(v, out);
            }
            out.push(0);
        }
    }
}

/// True if `decode_key` gives back exactly the value that `encode_key`
/// encoded for a column of type `ty` (integers, booleans, text, bytea,
/// dates, times and uuids; not floats, whose -0 and NaNs are folded, nor
/// numerics, whose scale is dropped, nor intervals, json or arrays): an
/// index-only scan reads such columns from the index entry's key.
pub fn key_decodable(ty: &qube_common::types::DataType) -> bool {
    use qube_common::types::DataType as T;
    matches!(
        ty,
        T::SmallInt
            | T::Integer
            | T::BigInt
            | T::Boolean
            | T::Text
            | T::Varchar(_)
            | T::Char(_)
            | T::Bytea
            | T::Date
            | T::Time
            | T::Timestamp
            | T::TimestampTz
            | T::Uuid
    )
}

/// Decodes the key part at `pos` (advanced past it) as a value of a column
/// of type `ty`, one that `key_decodable` accepts.
pub fn decode_key(b: &[u8], pos: &mut usize, ty: &qube_common::types::DataType) -> Result<Value> {
    decode_key_as(b, pos, KeyKind::of(ty), || ty)
}

/// How a key column of a type decodes: an integer inline
/// (`decode_key_as`), anything else out of line. Worked out once per scan
/// rather than matched from the type per entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    Int2,
    Int4,
    Int8,
    Other,
}

impl KeyKind {
    pub fn of(ty: &qube_common::types::DataType) -> KeyKind {
        use qube_common::types::DataType as T;
        match ty {
            T::SmallInt => KeyKind::Int2,
            T::Integer => KeyKind::Int4,
            T::BigInt => KeyKind::Int8,
            _ => KeyKind::Other,
        }
    }

    /// The integer `i` as a value of this kind; None if it does not fit
    /// (or the kind is not an integer's).
    #[inline(always)]
    pub fn int_value(self, i: i64) -> Option<Value> {
        match self {
            KeyKind::Int4 => i32::try_from(i).ok().map(Value::Int4),
            KeyKind::Int8 => Some(Value::Int8(i)),
            KeyKind::Int2 => i16::try_from(i).ok().map(Value::Int2),
            KeyKind::Other => None,
        }
    }
}

/// `decode_key` with the column's `KeyKind` (`KeyKind::of(ty)`) at hand.
///
/// A present integer (most index keys: an index-only scan decodes one
/// per entry) is decoded inline; anything else, and any error, by
/// `decode_key_any`, whose `Result<Value>` frame costs a call about as
/// much as the decoding.
#[inline(always)]
pub fn decode_key_as<'t>(
    b: &[u8],
    pos: &mut usize,
    kind: KeyKind,
    ty: impl FnOnce() -> &'t qube_common::types::DataType,
) -> Result<Value> {
    if kind != KeyKind::Other
        && b.get(*pos) == Some(&1)
        && let Some((i, n)) = key_int_at(b, *pos + 1)
        && let Some(v) = kind.int_value(i)
    {
        *pos += 1 + n;
        return Ok(v);
    }
    decode_key_any(b, pos, ty())
}

#[inline(never)]
fn decode_key_any(b: &[u8], pos: &mut usize, ty: &qube_common::types::DataType) -> Result<Value> {
    use qube_common::types::DataType as T;
    let bad = || Error::Internal("undecodable index key".into());
    let tag = *b.get(*pos).ok_or_else(bad)?;
    *pos += 1;
    match tag {
        2 => return Ok(Value::Null),
        1 => {}
        _ => return Err(bad()),
    }
    let take = |pos: &mut usize, n: usize| -> Result<&[u8]> {
        let s = b.get(*pos..*pos + n).ok_or_else(bad)?;
        *pos += n;
        Ok(s)
    };
    let int = |pos: &mut usize| -> Result<i64> {
        let (i, n) = key_int_at(b, *pos).ok_or_else(bad)?;
        *pos += n;
        Ok(i)
    };
    Ok(match ty {
        T::SmallInt => Value::Int2(i16::try_from(int(pos)?).map_err(|_| bad())?),
        T::Integer => Value::Int4(i32::try_from(int(pos)?).map_err(|_| bad())?),
        T::BigInt => Value::Int8(int(pos)?),
        T::Date => Value::Date(i32::try_from(int(pos)?).map_err(|_| bad())?),
        T::Time => Value::Time(int(pos)?),
        T::Timestamp => Value::Timestamp(int(pos)?),
        T::TimestampTz => Value::TimestampTz(int(pos)?),
        T::Boolean => Value::Bool(take(pos, 1)?[0] != 0),
        T::Uuid => Value::Uuid(take(pos, 16)?.try_into().map_err(|_| bad())?),
        T::Text | T::Varchar(_) | T::Char(_) | T::Bytea => {
            // Bytes with 0x00 escaped as 0x00 0xFF, ended by 0x00 0x00.
            let mut out = Vec::new();
            loop {
                let rest = b.get(*pos..).ok_or_else(bad)?;
                let z = rest.iter().position(|&c| c == 0).ok_or_else(bad)?;
                out.extend_from_slice(&rest[..z]);
                match rest.get(z + 1) {
                    Some(0xFF) => {
                        out.push(0);
                        *pos += z + 2;
                    }
                    Some(0) => {
                        *pos += z + 2;
                        break;
                    }
                    _ => return Err(bad()),
                }
            }
            if matches!(ty, T::Bytea) {
                Value::Bytea(out)
            } else {
                Value::Text(String::from_utf8(out).map_err(|_| bad())?)
            }
        }
        _ => return Err(bad()),
    })
}

/// The integer whose key body (`put_i64_key`) starts at `b[at]`, and the
/// bytes it took (`OrdU64::decode_at`).
#[inline(always)]
fn key_int_at(b: &[u8], at: usize) -> Option<(i64, usize)> {
    OrdU64::decode_at(b, at).map(|(u, n)| ((u ^ HALF) as i64, n))
}

/// An integer's key body: `OrdU64` of its bits with the sign flipped
/// (order-preserving; small values of either sign take 1–4 bytes).
fn put_i64_key(i: i64, out: &mut Vec<u8>) {
    OrdU64::new((i as u64) ^ HALF).put(out);
}

/// `ord(n)`: the order-preserving, self-delimiting encoding of a u64
/// that the table and index keys use for ids and rowids, and index keys
/// for integers, dates and times (`encode_key`). Three ranges,
/// each with its own tags, so that numbers near 0 and near 2^63 (either
/// side) are short:
///
/// ```text
/// n < 2^62         0x20+len   n             (len = bytes of n without leading zeros, 0–8)
/// 2^62 ≤ n < 2^63  0x40-len   !d, d = 2^63-1-n   (len bytes of d; the complement keeps order)
/// n ≥ 2^63         0x41+len   e, e = n-2^63
/// ```
///
/// Tags run 0x20–0x28, 0x38–0x40, 0x41–0x49: a range's tags sort below
/// the next range's, a longer payload in a range means a number further
/// from its centre, and within one tag the big-endian payload sorts as the
/// number does. So byte order is numeric order, and no encoding is a
/// prefix of another. Key rowids (`key_rowid`) of 0, 1, 1,000,000 and -1
/// are `41`, `42 01`, `44 0F 42 40` and `40`; counter rowid 1 is `21 01`.
#[derive(Clone, Copy)]
pub struct OrdU64 {
    pub(crate) len: u8,
    pub(crate) buf: [u8; 9],
}

pub(crate) const QUARTER: u64 = 1 << 62;
pub(crate) const HALF: u64 = 1 << 63;

/// Bytes of `x` without leading zero bytes (0 for 0).
fn sig_bytes(x: u64) -> usize {
    (64 - x.leading_zeros() as usize).div_ceil(8)
}

impl OrdU64 {
    pub fn new(n: u64) -> OrdU64 {
        let (tag, payload, len) = if n < QUARTER {
            let len = sig_bytes(n);
            (0x20 + len as u8, n, len)
        } else if n < HALF {
            let d = HALF - 1 - n;
            let len = sig_bytes(d);
            (0x40 - len as u8, !d, len)
        } else {
            let e = n - HALF;
            let len = sig_bytes(e);
            (0x41 + len as u8, e, len)
        };
        // The payload's `len` low bytes first, then zeros: a fixed-size
        // store (a copy of `len` bytes would be a `memcpy` call, per key
        // of every hash join and GROUP BY over integers).
        let mut buf = [0u8; 9];
        buf[0] = tag;
        let shifted = payload.checked_shl(8 * (8 - len as u32)).unwrap_or(0);
        buf[1..].copy_from_slice(&shifted.to_be_bytes());
        OrdU64 { len: 1 + len as u8, buf }
    }

    /// Appends the encoding to `out`: all nine bytes, then truncated to its
    /// length, so that the copy has a fixed size.
    #[inline(always)]
    pub fn put(&self, out: &mut Vec<u8>) {
        let at = out.len();
        out.extend_from_slice(&self.buf);
        out.truncate(at + self.len as usize);
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }

    /// Decodes the encoding at the start of `b`: (number, bytes it took);
    /// None if `b` does not start with a valid one.
    #[inline(always)]
    pub fn decode(b: &[u8]) -> Option<(u64, usize)> {
        OrdU64::decode_at(b, 0)
    }

    /// `decode(&b[at..])`, where the bytes before `at` may be read too
    /// (and are ignored).
    #[inline(always)]
    pub fn decode_at(b: &[u8], at: usize) -> Option<(u64, usize)> {
        let tag = *b.get(at)?;
        let len = match tag {
            0x20..=0x28 => tag - 0x20,
            0x38..=0x40 => 0x40 - tag,
            0x41..=0x49 => tag - 0x41,
            _ => return None,
        } as usize;
        let end = at + 1 + len;
        let x = match b.get(at + 1..at + 9) {
            // Eight bytes at hand (the part is not the key's last): one
            // load, the payload's `len` bytes shifted down.
            Some(eight) if len > 0 => {
                let all = u64::from_be_bytes(eight.try_into().ok()?);
                all >> (8 * (8 - len))
            }
            // The key's last part, eight bytes into it: one load of the
            // eight bytes that end with the payload, masked to it.
            _ if len > 0 && end >= 8 => {
                let all = u64::from_be_bytes(b.get(end - 8..end)?.try_into().ok()?);
                all & (u64::MAX >> (8 * (8 - len)))
            }
            _ => {
                let mut x = 0u64;
                for &byte in b.get(at + 1..end)? {
                    x = x << 8 | u64::from(byte);
                }
                x
            }
        };
        let n = match tag {
            0x20..=0x28 => Some(x).filter(|&n| n < QUARTER),
            // The payload is the complement of d's `len` bytes.
            0x38..=0x40 => {
                let mask = if len == 8 { u64::MAX } else { (1u64 << (8 * len)) - 1 };
                let d = !x & mask;
                (d < QUARTER).then(|| HALF - 1 - d)
            }
            _ => (x < HALF).then(|| HALF + x),
        }?;
        Some((n, 1 + len))
    }
}

impl AsRef<[u8]> for OrdU64 {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

fn encode_bytes(b: &[u8], out: &mut Vec<u8>) {
    for &byte in b {
        out.push(byte);
        if byte == 0 {
            out.push(0xff);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(v: &Value) -> Vec<u8> {
        let mut k = Vec::new();
        encode_key(v, &mut k);
        k
    }

    /// Rows decoded into reused rows (a scan's recycled rows, whose texts
    /// are refilled in place) equal rows decoded into new ones, whatever
    /// the reused row held: texts longer or shorter, or other values, in
    /// the same or other slots, and more or fewer of them.
    #[test]
    fn decoding_into_a_reused_row_equals_decoding_into_a_new_one() {
        let long = "é".repeat(100);
        let rows = [
            vec![Value::Int4(1), Value::Text("abc".into()), Value::Null, Value::Int8(7)],
            vec![Value::Int4(2), Value::Text(long.clone()), Value::Text("x".into()), Value::Null],
            vec![
                Value::Null,
                Value::Text(String::new()),
                Value::Int4(-3),
                Value::Text("yz".into()),
            ],
            vec![Value::Int4(4), Value::Text("a much longer text".into())],
            vec![Value::Bool(true), Value::Int4(5), Value::Text(long), Value::Text("0".into())],
            every_type_row(),
        ];
        let encoded: Vec<Vec<u8>> = rows
            .iter()
            .map(|r| {
                let mut b = Vec::new();
                encode_row(r, &mut b);
                b
            })
            .collect();
        let selects: [&[usize]; 4] = [&[0, 1, 2, 3], &[1, 3], &[1], &[0, 2, 5]];
        for (i, b) in encoded.iter().enumerate() {
            let ncols = rows[i].len();
            for reused_from in &encoded {
                // decode_row_cols, every column and some.
                let need = [true, false, true, true];
                for need in [None, Some(&need[..])] {
                    let mut fresh = Vec::new();
                    decode_row_cols(b, ncols, need, &mut fresh).unwrap();
                    for width in [ncols, ncols + 1, 1] {
                        let mut reused = Vec::new();
                        decode_row_cols(reused_from, width, None, &mut reused).unwrap();
                        decode_row_cols(b, ncols, need, &mut reused).unwrap();
                        assert_eq!(reused, fresh, "row {i}, need {need:?}");
                    }
                }
                for cols in selects {
                    let mut fresh = Vec::new();
                    decode_row_select(b, cols, &mut fresh).unwrap();
                    for other in selects {
                        let mut reused = Vec::new();
                        decode_row_select(reused_from, other, &mut reused).unwrap();
                        decode_row_select(b, cols, &mut reused).unwrap();
                        assert_eq!(reused, fresh, "row {i}, columns {cols:?} after {other:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn peek_int_reads_one_column_as_decoding_would() {
        let row = every_type_row();
        let mut b = Vec::new();
        encode_row(&row, &mut b);
        for (i, v) in row.iter().enumerate() {
            let want = match v {
                Value::Null => IntCell::Null,
                Value::Int2(x) => IntCell::Int(*x as i64),
                Value::Int4(x) => IntCell::Int(*x as i64),
                Value::Int8(x) => IntCell::Int(*x),
                _ => IntCell::Other,
            };
            assert_eq!(peek_int(&b, i).unwrap(), want, "column {i}: {v:?}");
        }
        // Past the stored columns (a column added later): NULL.
        assert_eq!(peek_int(&b, row.len()).unwrap(), IntCell::Null);
        // Extremes keep their sign.
        for v in
            [Value::Int2(i16::MIN), Value::Int4(i32::MIN), Value::Int4(-1), Value::Int2(i16::MAX)]
        {
            let mut b = Vec::new();
            encode_row(std::slice::from_ref(&v), &mut b);
            assert_eq!(peek_int(&b, 0).unwrap(), IntCell::Int(v.as_i64().unwrap()));
        }
        // Truncated and foreign bytes are errors, not panics.
        let mut b = Vec::new();
        encode_row(&[Value::Text("x".into()), Value::Int8(5)], &mut b);
        assert!(peek_int(&b[..b.len() - 1], 1).is_err());
        assert!(peek_int(&b[..3], 1).is_err());
        assert!(peek_int(&[2, 1, 4], 0).is_err());
        assert!(peek_int(&[1, 1, 4, 0], 0).is_err());
    }

    /// A row with a value of every stored type (nested ones too).
    fn every_type_row() -> Vec<Value> {
        vec![
            Value::Null,
            Value::Bool(false),
            Value::Bool(true),
            Value::Int2(-3),
            Value::Int4(7),
            Value::Int8(i64::MIN),
            Value::Float4(1.5),
            Value::Float8(-0.25),
            Value::Numeric(Numeric::from_decimal(Decimal::new(-12345, 3))),
            Value::Text("héllo".into()),
            Value::Bytea(vec![0, 1, 255]),
            Value::Date(-5),
            Value::Time(1),
            Value::Timestamp(-2),
            Value::TimestampTz(3),
            Value::Interval(Interval { months: 1, days: -2, micros: 3 }),
            Value::Uuid([7; 16]),
            Value::Json("{}".into()),
            Value::Array(vec![Value::Int4(1), Value::Null]),
            Value::Int4(42),
        ]
    }

    #[test]
    fn selected_columns_decode_as_the_whole_row_does() {
        let mut row = every_type_row();
        // Texts on both sides of the one-byte length, and an ASCII one.
        row.push(Value::Text("x".repeat(127)));
        row.push(Value::Text("y".repeat(128)));
        row.push(Value::Text("name-17".into()));
        row.push(Value::Int8(-9));
        let mut b = Vec::new();
        encode_row(&row, &mut b);
        let mut whole = Vec::new();
        decode_row(&b, row.len(), &mut whole).unwrap();
        assert_eq!(whole, row);
        let n = row.len();
        // Every single column, every pair, and every column at once.
        let mut out = vec![Value::Text("left over".into())];
        for i in 0..n {
            decode_row_select(&b, &[i], &mut out).unwrap();
            assert_eq!(out, vec![row[i].clone()], "column {i}");
            for j in i + 1..n {
                decode_row_select(&b, &[i, j], &mut out).unwrap();
                assert_eq!(out, vec![row[i].clone(), row[j].clone()], "columns {i}, {j}");
            }
        }
        let all: Vec<usize> = (0..n).collect();
        decode_row_select(&b, &all, &mut out).unwrap();
        assert_eq!(out, row);
        decode_row_select(&b, &[], &mut out).unwrap();
        assert!(out.is_empty());
        // Columns past the stored ones (added later) read as NULL.
        decode_row_select(&b, &[4, n, n + 3], &mut out).unwrap();
        assert_eq!(out, vec![Value::Int4(7), Value::Null, Value::Null]);
        // Columns out of order or repeated are refused, not misread.
        assert!(decode_row_select(&b, &[4, 3], &mut out).is_err());
        assert!(decode_row_select(&b, &[4, 4], &mut out).is_err());
        // Truncated rows and bad bytes are errors, not panics: cut the row
        // anywhere and ask for its last column (every value is read or
        // stepped over on the way there).
        for cut in 0..b.len() {
            assert!(decode_row_select(&b[..cut], &[n - 1], &mut out).is_err(), "cut at {cut}");
        }
        let mut bad = Vec::new();
        encode_row(&[Value::Int4(1), Value::Text("ok".into())], &mut bad);
        let last = bad.len() - 1;
        bad[last] = 0xff;
        assert!(decode_row_select(&bad, &[1], &mut out).is_err(), "text not UTF-8");
        assert!(decode_row_select(&[2, 1, 4, 0, 0, 0, 0], &[0], &mut out).is_err());
        assert!(decode_row_select(&[1, 1, 99], &[0], &mut out).is_err());
    }

    #[test]
    fn needed_columns_decode_alone_and_the_rest_stay_null() {
        let row = every_type_row();
        let mut b = Vec::new();
        encode_row(&row, &mut b);
        let n = row.len();
        let mut out = Vec::new();
        // Each column alone, each column left out, and masks of both
        // lengths: what is needed decodes as in the full row, the rest is
        // NULL, and a mask shorter than the row needs the columns it omits.
        for i in 0..n {
            for mask in [
                (0..n).map(|j| j == i).collect::<Vec<_>>(),
                (0..n).map(|j| j != i).collect(),
                (0..i).map(|_| false).collect(),
            ] {
                decode_row_cols(&b, n + 1, Some(&mask), &mut out).unwrap();
                assert_eq!(out.len(), n + 1);
                for j in 0..n {
                    let want =
                        if mask.get(j).copied().unwrap_or(true) { &row[j] } else { &Value::Null };
                    assert_eq!(&out[j], want, "column {j}, mask {mask:?}");
                }
                assert_eq!(out[n], Value::Null);
            }
        }
        decode_row_cols(&b, n, Some(&vec![false; n]), &mut out).unwrap();
        assert!(out.iter().all(Value::is_null));
        // A truncated row is an error when a column up to its end is
        // needed, skipped or not (decoding stops after the last needed one).
        let mut last_only = vec![false; n];
        last_only[n - 1] = true;
        for mask in [last_only, vec![true; n]] {
            assert!(decode_row_cols(&b[..b.len() - 1], n, Some(&mask), &mut out).is_err());
        }
    }

    #[test]
    fn integers_take_their_fewest_bytes_and_keep_their_type() {
        // Every width boundary of each type, both signs.
        let mut row = Vec::new();
        for bits in [0u32, 7, 8, 15, 16, 23, 24, 31, 32, 39, 47, 55, 62] {
            for i in [(1i64 << bits) - 1, 1i64 << bits, -(1i64 << bits), -(1i64 << bits) - 1] {
                row.push(Value::Int8(i));
                if let Ok(x) = i32::try_from(i) {
                    row.push(Value::Int4(x));
                }
                if let Ok(x) = i16::try_from(i) {
                    row.push(Value::Int2(x));
                }
            }
        }
        row.extend([i64::MIN, i64::MAX].map(Value::Int8));
        row.extend([i32::MIN, i32::MAX].map(Value::Int4));
        row.extend([i16::MIN, i16::MAX].map(Value::Int2));
        let mut b = Vec::new();
        encode_row(&row, &mut b);
        let mut out = Vec::new();
        decode_row(&b, row.len(), &mut out).unwrap();
        assert_eq!(out, row);
        for (i, v) in row.iter().enumerate() {
            assert_eq!(peek_int(&b, i).unwrap(), IntCell::Int(v.as_i64().unwrap()), "{v:?}");
            decode_row_select(&b, &[i], &mut out).unwrap();
            assert_eq!(out, vec![v.clone()]);
            // Tag and payload: the fewest bytes, never more than the type's.
            let mut one = Vec::new();
            encode_value(v, &mut one);
            let i = v.as_i64().unwrap();
            let fits =
                |k: u32| k == 8 || (-(1i64 << (8 * k - 1))..1i64 << (8 * k - 1)).contains(&i);
            let need = (1..=8).find(|&k| fits(k)).unwrap() as usize;
            let full = match v {
                Value::Int2(_) => 2,
                Value::Int4(_) => 4,
                _ => 8,
            };
            // int2 has a one-byte form only; the others every shorter one.
            let short = if full == 2 { need == 1 } else { need < full };
            assert_eq!(one.len(), 1 + if short { need } else { full }, "{v:?}");
        }
        // Rows written with the full widths only (before the short tags)
        // read as before.
        let old = [
            1u8, 3, 3, 0xFE, 0xFF, 4, 7, 0, 0, 0, 5, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        ];
        decode_row(&old, 3, &mut out).unwrap();
        assert_eq!(out, vec![Value::Int2(-2), Value::Int4(7), Value::Int8(-1)]);
        assert_eq!(peek_int(&old, 2).unwrap(), IntCell::Int(-1));
        // A short integer cut short is an error.
        assert!(decode_row(&[1, 1, 24, 1, 2], 1, &mut out).is_err());
        assert!(peek_int(&[1, 2, 24, 1, 2, 3, 31, 1], 1).is_err());
    }

    #[test]
    fn rows_round_trip_and_short_rows_pad_with_null() {
        let row = every_type_row();
        let mut b = Vec::new();
        encode_row(&row, &mut b);
        let mut out = Vec::new();
        decode_row(&b, row.len() + 2, &mut out).unwrap();
        assert_eq!(&out[..row.len()], &row[..]);
        assert_eq!(&out[row.len()..], &[Value::Null, Value::Null]);
        assert!(decode_row(&b[..b.len() - 1], row.len(), &mut out).is_err());
    }

    #[test]
    fn decodable_keys_round_trip() {
        use qube_common::types::DataType as T;
        let cases = [
            (Value::Int2(-7), T::SmallInt),
            (Value::Int4(i32::MIN), T::Integer),
            (Value::Int8(i64::MAX), T::BigInt),
            (Value::Bool(true), T::Boolean),
            (Value::Text("a\0b\0".into()), T::Text),
            (Value::Text(String::new()), T::Varchar(Some(3))),
            (Value::Bytea(vec![0, 0xFF, 0]), T::Bytea),
            (Value::Date(-3), T::Date),
            (Value::Timestamp(1 << 40), T::Timestamp),
            (Value::Uuid([7; 16]), T::Uuid),
            (Value::Null, T::Integer),
        ];
        let mut k = Vec::new();
        for (v, _) in &cases {
            encode_key(v, &mut k);
        }
        let mut pos = 0;
        for (v, ty) in &cases {
            assert!(key_decodable(ty));
            assert_eq!(&decode_key(&k, &mut pos, ty).unwrap(), v);
        }
        assert_eq!(pos, k.len());
        let big = key(&Value::Int8(i64::MAX));
        assert!(decode_key(&big[..big.len() - 1], &mut 0, &T::BigInt).is_err());
        assert!(decode_key(&[1, b'a', 0], &mut 0, &T::Text).is_err());
        assert!(!key_decodable(&T::Double) && !key_decodable(&T::Numeric(None)));
    }

    #[test]
    fn keys_sort_like_values() {
        let vals = [
            Value::Numeric(Numeric::from_decimal(Decimal::new(-1000, 0))),
            Value::Numeric(Numeric::from_decimal(Decimal::new(-105, 1))),
            Value::Numeric(Numeric::from_decimal(Decimal::new(-1, 2))),
            Value::Numeric(Numeric::ZERO),
            Value::Numeric(Numeric::from_decimal(Decimal::new(1, 3))),
            Value::Numeric(Numeric::from_decimal(Decimal::new(99, 1))),
            Value::Numeric(Numeric::from_decimal(Decimal::new(10, 0))),
            Value::Numeric(Numeric::from_decimal(Decimal::new(1005, 2))),
            Value::Numeric(Numeric::from_decimal(Decimal::new(123456, 0))),
        ];
        for w in vals.windows(2) {
            assert!(key(&w[0]) < key(&w[1]), "{} < {}", w[0], w[1]);
        }
        // Integers at every byte boundary, both signs: in order, prefix-free
        // (a composite key's next column follows directly), decoded back,
        // and short when small (tag 0x01, OrdU64's tag, significant bytes).
        let mut ints = vec![i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX - 1, i64::MAX];
        for bits in [7u32, 8, 15, 16, 31, 32, 47, 62] {
            let p = 1i64 << bits;
            ints.extend([p - 1, p, p + 1, -p - 1, -p, -p + 1]);
        }
        ints.sort_unstable();
        ints.dedup();
        for w in ints.windows(2) {
            let (a, b) = (key(&Value::Int8(w[0])), key(&Value::Int8(w[1])));
            assert!(a < b && !b.starts_with(&a), "{} < {}", w[0], w[1]);
        }
        for i in ints {
            let k = key(&Value::Int8(i));
            let mut pos = 0;
            let ty = qube_common::types::DataType::BigInt;
            assert_eq!(decode_key(&k, &mut pos, &ty).unwrap(), Value::Int8(i));
            assert_eq!(pos, k.len());
        }
        assert_eq!(key(&Value::Int8(0)).len(), 2);
        assert_eq!(key(&Value::Int4(1_000_000)).len(), 5);
        assert_eq!(key(&Value::Int4(-300)).len(), 4);
        assert_eq!(key(&Value::Int4(5)), key(&Value::Int8(5)));
        assert_eq!(key(&Value::Int2(-5)), key(&Value::Int8(-5)));
        // A key cut inside an integer is an error, not a misread.
        let k = key(&Value::Int4(70_000));
        let ty = qube_common::types::DataType::Integer;
        assert!(decode_key(&k[..k.len() - 1], &mut 0, &ty).is_err());
        let floats = [f64::NEG_INFINITY, -2.5, -0.0, 0.0, 1e-300, 3.0, f64::INFINITY, f64::NAN];
        for w in floats.windows(2) {
            assert!(key(&Value::Float8(w[0])) <= key(&Value::Float8(w[1])), "{w:?}");
        }
        let texts = ["", "\0", "\0a", "a", "a\0", "ab", "b"];
        for w in texts.windows(2) {
            assert!(key(&Value::Text(w[0].into())) < key(&Value::Text(w[1].into())), "{w:?}");
        }
        assert!(key(&Value::Text("zzz".into())) < key(&Value::Null));
        // Composite: ("a", 2) < ("ab", 1).
        let mut a = key(&Value::Text("a".into()));
        a.extend(key(&Value::Int4(2)));
        let mut b = key(&Value::Text("ab".into()));
        b.extend(key(&Value::Int4(1)));
        assert!(a < b);
    }
}
