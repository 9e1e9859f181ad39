//! The binder's rules for PostgreSQL's common string, math and system
//! functions (a child module of `bind`): their signatures and result
//! types. Values are computed in `exec::morefuncs`.

use qube_common::Result;
use qube_common::types::DataType;

use super::{B, coerce, err, finish_unknown, is_numeric};
use crate::plan::{Expr, Func, SetFunc};
use crate::types::Value;

/// Binds `name(args)` if it is one of these functions (`None` leaves the
/// arguments untouched for the next group of functions).
pub fn function(name: &str, args: &mut Vec<B>) -> Result<Option<B>> {
    let n = args.len();
    let text = DataType::Text;
    let dbl = DataType::Double;
    let call =
        |func: Func, args: Vec<Expr>, ty: DataType| Ok(Some(B::new(Expr::Func { func, args }, ty)));
    // Text parameters take an untyped literal or a string type only, as in
    // PostgreSQL (`initcap(5)` does not exist).
    let texts = |args: &mut Vec<B>| -> Result<Vec<Expr>> {
        if args.iter().any(|b| !b.unknown && !super::is_text(&b.ty)) {
            return Err(super::no_function(name, args));
        }
        std::mem::take(args).into_iter().map(|b| coerce(b, &DataType::Text)).collect()
    };
    let doubles = |args: &mut Vec<B>| -> Result<Vec<Expr>> {
        std::mem::take(args).into_iter().map(|b| coerce(b, &DataType::Double)).collect()
    };
    match (name, n) {
        ("split_part", 3) => {
            let k = coerce(args.pop().unwrap_or_else(null), &DataType::Integer)?;
            let mut a = texts(args)?;
            a.push(k);
            call(Func::SplitPart, a, text)
        }
        ("lpad" | "rpad", 2 | 3) => {
            let fill =
                if n == 3 { Some(coerce(args.pop().unwrap_or_else(null), &text)?) } else { None };
            let len = coerce(args.pop().unwrap_or_else(null), &DataType::Integer)?;
            let mut a = texts(args)?;
            a.push(len);
            a.extend(fill);
            call(if name == "lpad" { Func::Lpad } else { Func::Rpad }, a, text)
        }
        ("concat_ws", n) if n >= 1 => {
            let mut a = Vec::with_capacity(n);
            for b in std::mem::take(args) {
                a.push(finish_unknown(b)?);
            }
            call(Func::ConcatWs, a, text)
        }
        ("initcap", 1) => call(Func::Initcap, texts(args)?, text),
        ("like_escape", 2) => call(Func::LikeEscape, texts(args)?, text),
        ("regexp_replace", 3..=6) => {
            // (s, p, r [, flags]) or (s, p, r, start [, n [, flags]]): a
            // typed integer fourth argument is a start.
            let int4 = n > 3 && !args[3].unknown && is_integer(&args[3].ty);
            let a = if n == 3 || (n == 4 && !int4) {
                let mut a = regexp_args(name, args, "TTTT", &["", "", "", ""])?;
                let flags = a.pop().unwrap_or(Expr::Const(Value::Text(String::new())));
                let no_n = Expr::Const(Value::Int4(i32::MIN));
                a.extend([Expr::Const(Value::Int4(1)), no_n, flags]);
                a
            } else {
                regexp_args(name, args, "TTTIIT", &["", "", "", "1", "-2147483648", ""])?
            };
            call(Func::RegexpReplace, a, text)
        }
        ("regexp_split_to_array", 2 | 3) => {
            let a = regexp_args(name, args, "TTT", &["", "", ""])?;
            call(Func::RegexpSplitToArray, a, DataType::Array(Box::new(text)))
        }
        ("regexp_matches" | "regexp_split_to_table", 2 | 3) => {
            let (set, a, ty) = regexp_set(name, args)?;
            call(Func::SetReturning(set), a, ty)
        }
        ("regexp_match", 2 | 3) => {
            let a = regexp_args(name, args, "TTT", &["", "", ""])?;
            call(Func::RegexpMatch, a, DataType::Array(Box::new(text)))
        }
        ("regexp_like", 2 | 3) => call(
            Func::RegexpLike,
            regexp_args(name, args, "TTT", &["", "", ""])?,
            DataType::Boolean,
        ),
        ("regexp_count", 2..=4) => {
            let a = regexp_args(name, args, "TTIT", &["", "", "1", ""])?;
            call(Func::RegexpCount, a, DataType::Integer)
        }
        ("regexp_instr", 2..=7) => {
            let a = regexp_args(name, args, "TTIIITI", &["", "", "1", "1", "0", "", "0"])?;
            call(Func::RegexpInstr, a, DataType::Integer)
        }
        ("regexp_substr", 2..=6) => {
            let a = regexp_args(name, args, "TTIITI", &["", "", "1", "1", "", "0"])?;
            call(Func::RegexpSubstr, a, text)
        }
        ("md5", 1) => {
            let e = if args[0].ty == DataType::Bytea && !args[0].unknown {
                args.remove(0).expr
            } else {
                texts(args)?.remove(0)
            };
            call(Func::Md5, vec![e], text)
        }
        ("ascii", 1) => call(Func::Ascii, texts(args)?, DataType::Integer),
        ("chr", 1) => call(Func::Chr, vec![coerce(args.remove(0), &DataType::Integer)?], text),
        ("translate", 3) => call(Func::Translate, texts(args)?, text),
        ("starts_with", 2) => call(Func::StartsWith, texts(args)?, DataType::Boolean),
        ("format", n) if n >= 1 => {
            let mut a = Vec::with_capacity(n);
            let mut it = std::mem::take(args).into_iter();
            if let Some(f) = it.next() {
                a.push(coerce(f, &text)?);
            }
            for b in it {
                a.push(finish_unknown(b)?);
            }
            call(Func::Format, a, text)
        }
        ("to_hex", 1) => {
            let b = args.remove(0);
            let ty = if b.ty == DataType::BigInt { DataType::BigInt } else { DataType::Integer };
            call(Func::ToHex, vec![coerce(b, &ty)?], text)
        }
        ("octet_length" | "bit_length", 1) => {
            let b = args.remove(0);
            let e = if b.ty == DataType::Bytea && !b.unknown { b.expr } else { coerce(b, &text)? };
            let f = if name == "octet_length" { Func::OctetLength } else { Func::BitLength };
            call(f, vec![e], DataType::Integer)
        }
        (
            "ln" | "log10" | "exp" | "cbrt" | "degrees" | "radians" | "sin" | "cos" | "tan"
            | "asin" | "acos" | "atan" | "cot" | "sinh" | "cosh" | "tanh",
            1,
        )
        | ("log", 1) => {
            let b = args.remove(0);
            if !b.unknown && !is_numeric(&b.ty) {
                return Err(err(
                    "42883",
                    format!("function {name}({}) does not exist", b.ty.sql_name()),
                ));
            }
            // numeric in, numeric out: ln, log and exp with PostgreSQL's
            // digits (Math1 | 0x80); the others computed in double precision.
            let numeric = matches!(b.ty, DataType::Numeric(_)) && !b.unknown;
            if numeric && matches!(name, "ln" | "log10" | "log" | "exp") {
                let f = Expr::Func { func: Func::Math1(math1(name) | 0x80), args: vec![b.expr] };
                return Ok(Some(B::new(f, DataType::Numeric(None))));
            }
            let e = coerce(b, &dbl)?;
            let f = Expr::Func { func: Func::Math1(math1(name)), args: vec![e] };
            Ok(Some(if numeric {
                let to = DataType::Numeric(None);
                B::new(Expr::Cast { expr: Box::new(f), to: to.clone() }, to)
            } else {
                B::new(f, dbl)
            }))
        }
        ("log" | "atan2", 2) => {
            // PostgreSQL has only log(numeric, numeric).
            let numeric = name == "log";
            if numeric {
                let a = std::mem::take(args)
                    .into_iter()
                    .map(|b| coerce(b, &DataType::Numeric(None)))
                    .collect::<Result<Vec<_>>>()?;
                return call(Func::LogBase, a, DataType::Numeric(None));
            }
            let func = Func::Atan2;
            let f = Expr::Func { func, args: doubles(args)? };
            Ok(Some(if numeric {
                let to = DataType::Numeric(None);
                B::new(Expr::Cast { expr: Box::new(f), to: to.clone() }, to)
            } else {
                B::new(f, dbl)
            }))
        }
        ("scale" | "min_scale" | "trim_scale", 1) => {
            // Numeric's own functions (Math1 | 0x80, codes 3..=5).
            let e = coerce(args.remove(0), &DataType::Numeric(None))?;
            let (code, ty) = match name {
                "scale" => (3, DataType::Integer),
                "min_scale" => (4, DataType::Integer),
                _ => (5, DataType::Numeric(None)),
            };
            Ok(Some(B::new(Expr::Func { func: Func::Math1(0x80 | code), args: vec![e] }, ty)))
        }
        ("pi", 0) => Ok(Some(B::new(Expr::Const(Value::Float8(std::f64::consts::PI)), dbl))),
        ("div", 2) => {
            let a = std::mem::take(args)
                .into_iter()
                .map(|b| coerce(b, &DataType::Numeric(None)))
                .collect::<Result<Vec<_>>>()?;
            call(Func::Div, a, DataType::Numeric(None))
        }
        ("gcd" | "lcm", 2) => {
            let ty = if args.iter().any(|b| b.ty == DataType::BigInt) {
                DataType::BigInt
            } else {
                DataType::Integer
            };
            let a = std::mem::take(args)
                .into_iter()
                .map(|b| coerce(b, &ty))
                .collect::<Result<Vec<_>>>()?;
            call(if name == "gcd" { Func::Gcd } else { Func::Lcm }, a, ty)
        }
        ("factorial", 1) => call(
            Func::Factorial,
            vec![coerce(args.remove(0), &DataType::BigInt)?],
            DataType::Numeric(None),
        ),
        ("width_bucket", 4) => {
            let count = coerce(args.pop().unwrap_or_else(null), &DataType::Integer)?;
            let mut a = doubles(args)?;
            a.push(count);
            call(Func::WidthBucket, a, DataType::Integer)
        }
        ("quote_ident", 1) => call(Func::QuoteIdent, texts(args)?, text),
        ("quote_literal" | "quote_nullable", 1) => {
            // These take any type (PostgreSQL's anyelement forms).
            let f = if name == "quote_literal" { Func::QuoteLiteral } else { Func::QuoteNullable };
            call(f, vec![coerce(args.remove(0), &text)?], text)
        }
        ("encode", 2) => {
            let data = coerce(args.remove(0), &DataType::Bytea)?;
            let fmt = coerce(args.remove(0), &text)?;
            call(Func::Encode, vec![data, fmt], text)
        }
        ("decode", 2) => call(Func::Decode, texts(args)?, DataType::Bytea),
        ("version", 0) => Ok(Some(B::new(Expr::Const(Value::Text(version())), text))),
        ("pg_typeof", 1) => {
            let b = args.remove(0);
            let t = if b.unknown { "unknown".to_string() } else { b.ty.sql_name() };
            Ok(Some(B::new(Expr::Const(Value::Text(t)), DataType::Text)))
        }
        ("num_nulls" | "num_nonnulls", n) if n >= 1 => {
            let mut a = Vec::with_capacity(n);
            for b in std::mem::take(args) {
                a.push(finish_unknown(b)?);
            }
            let f = if name == "num_nulls" { Func::NumNulls } else { Func::NumNonnulls };
            call(f, a, DataType::Integer)
        }
        ("overlay", 3 | 4) => {
            let s = coerce(args.remove(0), &text)?;
            let w = coerce(args.remove(0), &text)?;
            let mut a = vec![s, w];
            for b in std::mem::take(args) {
                a.push(coerce(b, &DataType::Integer)?);
            }
            call(Func::Overlay, a, text)
        }
        ("current_database" | "current_catalog", 0) => call(Func::CurrentDatabase, vec![], text),
        ("current_schema", 0) => call(Func::CurrentSchema, vec![], text),
        ("current_user" | "session_user" | "user" | "current_role", 0) => {
            call(Func::CurrentUser, vec![], text)
        }
        _ => Ok(None),
    }
}

/// regexp_matches / regexp_split_to_table (2 or 3 arguments, in the select
/// list or in FROM): the function, its arguments and its column's type.
pub(super) fn regexp_set(name: &str, args: &mut Vec<B>) -> Result<(SetFunc, Vec<Expr>, DataType)> {
    let a = regexp_args(name, args, "TTT", &["", "", ""])?;
    Ok(match name {
        "regexp_matches" => (SetFunc::RegexpMatches, a, DataType::Array(Box::new(DataType::Text))),
        _ => (SetFunc::RegexpSplit, a, DataType::Text),
    })
}

/// The arguments of a regexp function by its parameter kinds (`T` text:
/// an untyped literal or a string type; `I` integer), the missing
/// trailing ones filled with their defaults.
fn regexp_args(name: &str, args: &mut Vec<B>, kinds: &str, defaults: &[&str]) -> Result<Vec<Expr>> {
    let ok = args.iter().zip(kinds.chars()).all(|(b, k)| {
        b.unknown || if k == 'T' { super::is_text(&b.ty) } else { is_integer(&b.ty) }
    });
    if !ok || args.len() > kinds.len() {
        return Err(super::no_function(name, args));
    }
    let given = args.len();
    let mut out = Vec::with_capacity(kinds.len());
    for (b, k) in std::mem::take(args).into_iter().zip(kinds.chars()) {
        let ty = if k == 'T' { DataType::Text } else { DataType::Integer };
        out.push(coerce(b, &ty)?);
    }
    for (k, d) in kinds.chars().zip(defaults).skip(given) {
        out.push(Expr::Const(if k == 'T' {
            Value::Text(d.to_string())
        } else {
            Value::Int4(d.parse().unwrap_or(0))
        }));
    }
    Ok(out)
}

fn is_integer(ty: &DataType) -> bool {
    matches!(ty, DataType::SmallInt | DataType::Integer | DataType::BigInt)
}

fn null() -> B {
    B::new(Expr::Const(Value::Null), DataType::Text)
}

/// `version()`: PostgreSQL's shape, so that drivers parse it, with QubeDB
/// named.
pub fn version() -> String {
    format!(
        "PostgreSQL 16.0 (QubeDB {}) on {}-linux, compiled by rustc, 64-bit",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH
    )
}

fn math1(name: &str) -> u8 {
    match name {
        "ln" => 0,
        "log10" | "log" => 1,
        "exp" => 2,
        "cbrt" => 3,
        "degrees" => 4,
        "radians" => 5,
        "sin" => 6,
        "cos" => 7,
        "tan" => 8,
        "asin" => 9,
        "acos" => 10,
        "atan" => 11,
        "cot" => 12,
        "sinh" => 13,
        "cosh" => 14,
        _ => 15,
    }
}
