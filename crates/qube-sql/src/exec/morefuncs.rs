//! PostgreSQL's common string, math and encoding functions (bound in
//! `plan::bind_funcs`): split_part, lpad/rpad, concat_ws, initcap,
//! regexp_replace, md5, format, trigonometry, gcd/lcm, encode/decode, ….

use crate::types::numeric::Numeric;
use md5::Digest;
use qube_common::{Error, Result};

use crate::plan::Func;
use crate::types::Value;

/// A text argument (any other value as its text form).
pub(super) fn text(v: &Value) -> String {
    match v {
        Value::Text(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A text argument without copying it when it is text already (the
/// binder coerced it), for functions that only read it.
pub(super) fn text_ref(v: &Value) -> std::borrow::Cow<'_, str> {
    match v {
        Value::Text(s) => std::borrow::Cow::Borrowed(s),
        other => std::borrow::Cow::Owned(other.to_string()),
    }
}

/// An integer argument (0 if it is not one; the binder coerced it).
pub(super) fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn float(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// Functions that return NULL when any argument is NULL ("strict").
fn strict(func: Func) -> bool {
    !matches!(func, Func::ConcatWs | Func::Format | Func::NumNulls | Func::NumNonnulls)
        && !matches!(func, Func::QuoteNullable)
}

pub fn call(func: Func, args: Vec<Value>) -> Result<Value> {
    if strict(func) && args.iter().any(Value::is_null) {
        return Ok(Value::Null);
    }
    Ok(match func {
        Func::SplitPart => {
            let (s, d, k) = (text(&args[0]), text(&args[1]), int(&args[2]));
            if k == 0 {
                return Err(Error::user("22023", "field position must not be zero"));
            }
            let parts: Vec<&str> =
                if d.is_empty() { vec![s.as_str()] } else { s.split(&d).collect() };
            let idx = if k > 0 { k - 1 } else { parts.len() as i64 + k };
            Value::Text(
                usize::try_from(idx).ok().and_then(|i| parts.get(i)).unwrap_or(&"").to_string(),
            )
        }
        Func::Lpad | Func::Rpad => {
            let s: Vec<char> = text(&args[0]).chars().collect();
            let len = int(&args[1]).max(0) as usize;
            if len > 10_000_000 {
                return Err(Error::user("54000", "requested length too large"));
            }
            let fill: Vec<char> = args.get(2).map_or(" ".into(), text).chars().collect();
            if s.len() >= len || fill.is_empty() {
                return Ok(Value::Text(s.into_iter().take(len).collect()));
            }
            let pad: String = fill.iter().cycle().take(len - s.len()).collect();
            let s: String = s.into_iter().collect();
            Value::Text(if func == Func::Lpad { pad + &s } else { s + &pad })
        }
        Func::ConcatWs => {
            if args[0].is_null() {
                return Ok(Value::Null);
            }
            let sep = text(&args[0]);
            let parts: Vec<String> = args[1..].iter().filter(|v| !v.is_null()).map(text).collect();
            Value::Text(parts.join(&sep))
        }
        Func::LikeEscape => Value::Text(like_escape(&text(&args[0]), &text(&args[1]))?),
        Func::Initcap => {
            let mut out = String::new();
            let mut word_start = true;
            for c in text(&args[0]).chars() {
                if c.is_alphanumeric() {
                    if word_start {
                        out.extend(c.to_uppercase());
                    } else {
                        out.extend(c.to_lowercase());
                    }
                    word_start = false;
                } else {
                    out.push(c);
                    word_start = true;
                }
            }
            Value::Text(out)
        }
        Func::RegexpReplace
        | Func::RegexpSplitToArray
        | Func::RegexpMatch
        | Func::RegexpLike
        | Func::RegexpCount
        | Func::RegexpInstr
        | Func::RegexpSubstr => return super::regexp::call(func, &args),
        Func::Md5 => {
            let bytes = match &args[0] {
                Value::Bytea(b) => b.clone(),
                v => text(v).into_bytes(),
            };
            let d = md5::Md5::digest(&bytes);
            Value::Text(d.iter().map(|b| format!("{b:02x}")).collect())
        }
        Func::Ascii => Value::Int4(text(&args[0]).chars().next().map_or(0, |c| c as i32)),
        Func::Chr => {
            let c = int(&args[0]);
            match u32::try_from(c).ok().and_then(char::from_u32) {
                Some('\0') => return Err(Error::user("54000", "null character not permitted")),
                Some(ch) => Value::Text(ch.to_string()),
                None => {
                    return Err(Error::user(
                        "54000",
                        format!("requested character too large for encoding: {c}"),
                    ));
                }
            }
        }
        Func::Translate => {
            let from: Vec<char> = text(&args[1]).chars().collect();
            let to: Vec<char> = text(&args[2]).chars().collect();
            let out: String = text(&args[0])
                .chars()
                .filter_map(|c| match from.iter().position(|&f| f == c) {
                    Some(i) => to.get(i).copied(),
                    None => Some(c),
                })
                .collect();
            Value::Text(out)
        }
        Func::StartsWith => Value::Bool(text(&args[0]).starts_with(&text(&args[1]))),
        Func::Format => format(&args)?,
        Func::ToHex => match &args[0] {
            Value::Int8(v) => Value::Text(format!("{:x}", *v as u64)),
            v => Value::Text(format!("{:x}", int(v) as i32 as u32)),
        },
        Func::OctetLength | Func::BitLength => {
            let n = match &args[0] {
                Value::Bytea(b) => b.len(),
                v => text(v).len(),
            } as i32;
            Value::Int4(if func == Func::BitLength { n * 8 } else { n })
        }
        Func::Math1(k) if k & 0x80 != 0 => {
            let x = dec(&args[0])?;
            Value::Numeric(match k & 0x7f {
                // scale and min_scale of NaN/Infinity are NULL.
                3 | 4 if !x.is_finite() => return Ok(Value::Null),
                3 => return Ok(Value::Int4(x.scale() as i32)),
                4 => return Ok(Value::Int4(x.min_scale() as i32)),
                5 => x.trim_scale()?,
                0 => x.ln()?,
                1 => Numeric::log(&Numeric::from_i64(10), &x)?,
                2 => x.exp()?,
                k => return Err(Error::Internal(format!("numeric function {k}"))),
            })
        }
        Func::Math1(k) => {
            let x = float(&args[0]);
            let r = match k {
                0 | 1 if x == 0.0 => {
                    return Err(Error::user("2201E", "cannot take logarithm of zero"));
                }
                0 | 1 if x < 0.0 => {
                    return Err(Error::user("2201E", "cannot take logarithm of a negative number"));
                }
                0 => x.ln(),
                1 => x.log10(),
                2 => x.exp(),
                3 => x.cbrt(),
                4 => x.to_degrees(),
                5 => x.to_radians(),
                6 => x.sin(),
                7 => x.cos(),
                8 => x.tan(),
                9 | 10 if !(-1.0..=1.0).contains(&x) => {
                    return Err(Error::user("22003", "input is out of range"));
                }
                9 => x.asin(),
                10 => x.acos(),
                11 => x.atan(),
                12 => 1.0 / x.tan(),
                13 => x.sinh(),
                14 => x.cosh(),
                _ => x.tanh(),
            };
            if r.is_infinite() && x.is_finite() {
                return Err(Error::user("22003", "value out of range: overflow"));
            }
            Value::Float8(r)
        }
        Func::LogBase => Value::Numeric(Numeric::log(&dec(&args[0])?, &dec(&args[1])?)?),
        Func::Atan2 => Value::Float8(float(&args[0]).atan2(float(&args[1]))),
        Func::Div => {
            let (a, b) = (dec(&args[0])?, dec(&args[1])?);
            Value::Numeric(a.div_trunc(&b)?)
        }
        Func::BitAnd | Func::BitOr | Func::BitXor | Func::ShiftLeft | Func::ShiftRight => {
            let (a, b) = (int(&args[0]), int(&args[1]));
            let r = match func {
                Func::BitAnd => a & b,
                Func::BitOr => a | b,
                Func::BitXor => a ^ b,
                // Shifts wrap in the argument's width, as PostgreSQL's C
                // shifts do (the count taken modulo the width).
                Func::ShiftLeft => match &args[0] {
                    Value::Int2(x) => x.wrapping_shl(b as u32) as i64,
                    Value::Int4(x) => x.wrapping_shl(b as u32) as i64,
                    _ => a.wrapping_shl(b as u32),
                },
                _ => match &args[0] {
                    Value::Int2(x) => x.wrapping_shr(b as u32) as i64,
                    Value::Int4(x) => x.wrapping_shr(b as u32) as i64,
                    _ => a.wrapping_shr(b as u32),
                },
            };
            // Results of and/or/xor fit the arguments' width; shifts wrapped.
            match &args[0] {
                Value::Int2(_) => Value::Int2(r as i16),
                Value::Int4(_) => Value::Int4(r as i32),
                _ => Value::Int8(r),
            }
        }
        Func::BitNot => match &args[0] {
            Value::Int2(x) => Value::Int2(!x),
            Value::Int4(x) => Value::Int4(!x),
            v => Value::Int8(!int(v)),
        },
        Func::Gcd | Func::Lcm => {
            let (a, b) = (int(&args[0]) as i128, int(&args[1]) as i128);
            let g = gcd(a.abs(), b.abs());
            let r = if func == Func::Gcd {
                g
            } else if a == 0 || b == 0 {
                0
            } else {
                (a / g * b).abs()
            };
            match &args[0] {
                Value::Int8(_) => Value::Int8(
                    i64::try_from(r).map_err(|_| Error::user("22003", "bigint out of range"))?,
                ),
                _ => Value::Int4(
                    i32::try_from(r).map_err(|_| Error::user("22003", "integer out of range"))?,
                ),
            }
        }
        Func::Factorial => {
            let n = int(&args[0]);
            if n < 0 {
                return Err(Error::user("2201F", "factorial of a negative number is undefined"));
            }
            // PostgreSQL's bound: 32177! is the largest that fits numeric.
            if n > 32177 {
                return Err(crate::types::numeric::overflow());
            }
            let mut acc = num_bigint::BigInt::from(1u8);
            for i in 2..=n {
                acc *= i;
            }
            Value::Numeric(Numeric::from_parts(acc, 0)?)
        }
        Func::WidthBucket => {
            let (x, lo, hi, count) =
                (float(&args[0]), float(&args[1]), float(&args[2]), int(&args[3]));
            if count <= 0 {
                return Err(Error::user("2201G", "count must be greater than zero"));
            }
            if x.is_nan() || lo.is_nan() || hi.is_nan() {
                return Err(Error::user(
                    "2201G",
                    "operand, lower bound, and upper bound cannot be NaN",
                ));
            }
            if lo.is_infinite() || hi.is_infinite() {
                return Err(Error::user("2201G", "lower and upper bounds must be finite"));
            }
            if lo == hi {
                return Err(Error::user("2201G", "lower bound cannot equal upper bound"));
            }
            let b = if lo < hi {
                if x < lo {
                    0
                } else if x >= hi {
                    count + 1
                } else {
                    ((x - lo) / (hi - lo) * count as f64) as i64 + 1
                }
            } else if x > lo {
                0
            } else if x <= hi {
                count + 1
            } else {
                ((lo - x) / (lo - hi) * count as f64) as i64 + 1
            };
            Value::Int4(b as i32)
        }
        Func::QuoteIdent => Value::Text(quote_ident(&text(&args[0]))),
        Func::QuoteLiteral => Value::Text(quote_literal(&text(&args[0]))),
        Func::QuoteNullable => match &args[0] {
            Value::Null => Value::Text("NULL".into()),
            v => Value::Text(quote_literal(&text(v))),
        },
        Func::Encode => {
            let Value::Bytea(b) = &args[0] else { return Ok(Value::Null) };
            match text(&args[1]).to_lowercase().as_str() {
                "hex" => Value::Text(b.iter().map(|x| format!("{x:02x}")).collect()),
                "base64" => Value::Text(base64_encode(b)),
                "escape" => Value::Text(
                    b.iter()
                        .map(|&x| match x {
                            b'\\' => "\\\\".to_string(),
                            0 | 0x80..=0xff => format!("\\{x:03o}"),
                            _ => (x as char).to_string(),
                        })
                        .collect(),
                ),
                f => {
                    return Err(Error::user("22023", format!("unrecognized encoding: \"{f}\"")));
                }
            }
        }
        Func::Decode => {
            let s = text(&args[0]);
            match text(&args[1]).to_lowercase().as_str() {
                "hex" => Value::Bytea(hex_decode(&s)?),
                "base64" => Value::Bytea(base64_decode(&s)?),
                "escape" => {
                    crate::types::cast::cast(Value::Text(s), &qube_common::types::DataType::Bytea)?
                }
                f => {
                    return Err(Error::user("22023", format!("unrecognized encoding: \"{f}\"")));
                }
            }
        }
        Func::NumNulls => Value::Int4(args.iter().filter(|v| v.is_null()).count() as i32),
        Func::NumNonnulls => Value::Int4(args.iter().filter(|v| !v.is_null()).count() as i32),
        Func::Overlay => {
            let s: Vec<char> = text(&args[0]).chars().collect();
            let w: Vec<char> = text(&args[1]).chars().collect();
            let from = int(&args[2]);
            let count = args.get(3).map_or(w.len() as i64, int);
            if from < 1 || count < 0 {
                return Err(Error::user("22011", "negative substring length not allowed"));
            }
            let start = ((from - 1) as usize).min(s.len());
            let end = (start + count as usize).min(s.len());
            let out: String = s[..start].iter().chain(&w).chain(&s[end..]).collect();
            Value::Text(out)
        }
        other => return Err(Error::Internal(format!("{other:?} is not evaluated here"))),
    })
}

fn dec(v: &Value) -> Result<Numeric> {
    crate::types::cast::to_numeric(v.clone())
}

fn gcd(mut a: i128, mut b: i128) -> i128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

pub fn quote_ident(s: &str) -> String {
    let plain = s.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain { s.to_string() } else { format!("\"{}\"", s.replace('"', "\"\"")) }
}

fn quote_literal(s: &str) -> String {
    if s.contains('\\') {
        format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

/// `format(fmt, args…)`: `%s`, `%I`, `%L`, `%%`, with `n$` positions.
fn format(args: &[Value]) -> Result<Value> {
    let Some(fmt) = args.first() else { return Ok(Value::Null) };
    if fmt.is_null() {
        return Ok(Value::Null);
    }
    let fmt = text(fmt);
    let mut out = String::new();
    let mut next = 1;
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut digits = String::new();
        while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
            digits.push(d);
            chars.next();
        }
        let mut idx = next;
        if !digits.is_empty() {
            if chars.peek() == Some(&'$') {
                chars.next();
                idx = digits.parse().unwrap_or(0);
            } else {
                return Err(Error::user("22023", "unsupported format specifier"));
            }
        }
        let spec = chars
            .next()
            .ok_or_else(|| Error::user("22023", "unterminated format() type specifier"))?;
        if spec == '%' {
            out.push('%');
            continue;
        }
        let v =
            args.get(idx).ok_or_else(|| Error::user("22023", "too few arguments for format()"))?;
        next = idx + 1;
        match spec {
            's' => {
                if !v.is_null() {
                    out.push_str(&text(v));
                }
            }
            'I' => {
                if v.is_null() {
                    return Err(Error::user(
                        "22004",
                        "null values cannot be formatted as an SQL identifier",
                    ));
                }
                out.push_str(&quote_ident(&text(v)));
            }
            'L' => match v {
                Value::Null => out.push_str("NULL"),
                v => out.push_str(&quote_literal(&text(v))),
            },
            other => {
                return Err(Error::user(
                    "22023",
                    format!("unrecognized format() type specifier \"{other}\""),
                ));
            }
        }
    }
    Ok(Value::Text(out))
}

fn hex_decode(s: &str) -> Result<Vec<u8>> {
    let s: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !s.len().is_multiple_of(2) {
        return Err(Error::user("22023", "invalid hexadecimal data: odd number of digits"));
    }
    s.chunks(2)
        .map(|p| {
            std::str::from_utf8(p)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| Error::user("22023", "invalid hexadecimal digit"))
        })
        .collect()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for (i, chunk) in b.chunks(3).enumerate() {
        if i > 0 && i % 19 == 0 {
            out.push('\n');
        }
        let n = chunk.len();
        let v = (chunk[0] as u32) << 16
            | (chunk.get(1).copied().unwrap_or(0) as u32) << 8
            | chunk.get(2).copied().unwrap_or(0) as u32;
        for k in 0..4 {
            if k <= n {
                out.push(B64[((v >> (18 - 6 * k)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(s: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace()) {
        if c == b'=' {
            break;
        }
        let v = B64.iter().position(|&x| x == c).ok_or_else(|| {
            Error::user(
                "22023",
                format!("invalid symbol \"{}\" found while decoding base64 sequence", c as char),
            )
        })?;
        acc = acc << 6 | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Ok(out)
}

/// PostgreSQL's like_escape: rewrites a LIKE pattern whose escape
/// character is `esc` (none when empty) into one escaped with `\\`, the
/// form `exec::eval::like` reads. An escape of more than one character is
/// 22025, as in PostgreSQL; a trailing escape character stays a trailing
/// `\\` (like PostgreSQL's like_escape).
pub fn like_escape(pattern: &str, esc: &str) -> Result<String> {
    let mut e = esc.chars();
    let esc = match (e.next(), e.next()) {
        (None, _) => None,
        (Some(c), None) => Some(c),
        _ => return Err(Error::user("22025", "invalid escape string")),
    };
    let mut out = String::with_capacity(pattern.len() + 2);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if Some(c) == esc {
            out.push('\\');
            out.extend(chars.next());
        } else if c == '\\' {
            // A backslash that is not the escape is an ordinary character.
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
    Ok(out)
}
