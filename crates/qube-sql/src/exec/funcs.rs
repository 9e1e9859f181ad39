//! Scalar functions, by PostgreSQL's names and semantics. Arguments arrive
//! already coerced by the binder; a NULL argument gives NULL except where
//! PostgreSQL says otherwise (`concat`, `greatest`/`least`).

use std::cmp::Ordering;

use qube_common::{Error, Result};

use super::morefuncs::{int, text, text_ref};
use crate::plan::{BinOp, Func};
use crate::types::Value;
use crate::types::cast::{self, out_of_range};

pub fn call(func: Func, mut args: Vec<Value>) -> Result<Value> {
    if func.is_datetime() {
        return super::datetime::call(func, args);
    }
    if func.is_typed() {
        return super::typefuncs::call(func, args);
    }
    if func.is_more() {
        return super::morefuncs::call(func, args);
    }
    match func {
        Func::Concat => {
            let mut s = String::new();
            for a in args {
                if !a.is_null() {
                    s.push_str(&cast::to_text(a));
                }
            }
            return Ok(Value::Text(s));
        }
        Func::Greatest | Func::Least => {
            let mut best: Option<Value> = None;
            for a in args.into_iter().filter(|a| !a.is_null()) {
                best = Some(match best {
                    None => a,
                    Some(b) => {
                        let o = a.total_cmp(&b);
                        let take = if func == Func::Greatest {
                            o == Ordering::Greater
                        } else {
                            o == Ordering::Less
                        };
                        if take { a } else { b }
                    }
                });
            }
            return Ok(best.unwrap_or(Value::Null));
        }
        Func::NullIf => {
            let b = args.pop().unwrap_or(Value::Null);
            let a = args.pop().unwrap_or(Value::Null);
            return Ok(if a.sql_cmp(&b) == Some(Ordering::Equal) { Value::Null } else { a });
        }
        Func::Random => return Ok(Value::Float8(random())),
        _ => {}
    }
    if args.iter().any(Value::is_null) {
        return Ok(Value::Null);
    }
    Ok(match func {
        Func::Abs => match &args[0] {
            Value::Int2(i) => Value::Int2(i.checked_abs().ok_or_else(|| out_of_range("smallint"))?),
            Value::Int4(i) => Value::Int4(i.checked_abs().ok_or_else(|| out_of_range("integer"))?),
            Value::Int8(i) => Value::Int8(i.checked_abs().ok_or_else(|| out_of_range("bigint"))?),
            Value::Float4(f) => Value::Float4(f.abs()),
            Value::Float8(f) => Value::Float8(f.abs()),
            Value::Numeric(d) => Value::Numeric(d.abs()),
            other => return Err(Error::Internal(format!("abs({other:?})"))),
        },
        Func::Sign => match &args[0] {
            Value::Numeric(d) => Value::Numeric(d.sign()),
            v => {
                let f = v.as_f64().unwrap_or(0.0);
                Value::Float8(if f > 0.0 {
                    1.0
                } else if f < 0.0 {
                    -1.0
                } else {
                    0.0
                })
            }
        },
        Func::Sqrt => match &args[0] {
            Value::Numeric(d) => Value::Numeric(d.sqrt()?),
            v => {
                let f = v.as_f64().unwrap_or(0.0);
                if f < 0.0 {
                    return Err(Error::user(
                        "2201F",
                        "cannot take square root of a negative number",
                    ));
                }
                Value::Float8(f.sqrt())
            }
        },
        Func::Ceil | Func::Floor => match &args[0] {
            Value::Numeric(d) => Value::Numeric(d.ceil_floor(func == Func::Ceil)?),
            v => {
                let f = v.as_f64().unwrap_or(0.0);
                Value::Float8(if func == Func::Ceil { f.ceil() } else { f.floor() })
            }
        },
        Func::Round | Func::Trunc => {
            let places = args.get(1).map(int);
            match (&args[0], places) {
                (Value::Numeric(_), _) | (_, Some(_)) => {
                    let d = cast::to_numeric(args[0].clone())?;
                    Value::Numeric(d.round_to(places.unwrap_or(0), func == Func::Trunc)?)
                }
                (v, None) => {
                    let f = v.as_f64().unwrap_or(0.0);
                    Value::Float8(if func == Func::Round { f.round_ties_even() } else { f.trunc() })
                }
            }
        }
        Func::Power if matches!(args[0], Value::Numeric(_)) => {
            let (a, b) = (cast::to_numeric(args[0].clone())?, cast::to_numeric(args[1].clone())?);
            Value::Numeric(a.power(&b)?)
        }
        Func::Power => {
            let (a, b) = (args[0].as_f64().unwrap_or(0.0), args[1].as_f64().unwrap_or(0.0));
            if a == 0.0 && b < 0.0 {
                return Err(Error::user("2201F", "zero raised to a negative power is undefined"));
            }
            if a < 0.0 && b.fract() != 0.0 {
                return Err(Error::user(
                    "2201F",
                    "a negative number raised to a non-integer power yields a complex result",
                ));
            }
            let r = a.powf(b);
            if r.is_infinite() {
                return Err(Error::user("22003", "value out of range: overflow"));
            }
            Value::Float8(r)
        }
        Func::Mod => {
            let b = args.pop().unwrap_or(Value::Null);
            let a = args.pop().unwrap_or(Value::Null);
            super::eval::binary(BinOp::Mod, a, b)?
        }
        Func::Lower => Value::Text(text(&args[0]).to_lowercase()),
        Func::Upper => Value::Text(text(&args[0]).to_uppercase()),
        Func::Reverse => Value::Text(text(&args[0]).chars().rev().collect()),
        Func::Length => Value::Int4(text(&args[0]).chars().count() as i32),
        Func::Substr => {
            let start = int(&args[1]);
            let len = args.get(2).map(int);
            if len.is_some_and(|l| l < 0) {
                return Err(Error::user("22011", "negative substring length not allowed"));
            }
            // Positions count from 1; before 1 they shorten the length.
            let span = |n: usize| {
                let to = len.map_or(i64::MAX, |l| start.saturating_add(l));
                let from = (start.max(1) - 1) as usize;
                let to = ((to.max(1) - 1) as usize).min(n);
                (from, to)
            };
            if let Value::Bytea(b) = &args[0] {
                let (from, to) = span(b.len());
                return Ok(Value::Bytea(if from >= to {
                    Vec::new()
                } else {
                    b[from..to].to_vec()
                }));
            }
            let s: Vec<char> = text(&args[0]).chars().collect();
            let (from, to) = span(s.len());
            Value::Text(if from >= to { String::new() } else { s[from..to].iter().collect() })
        }
        Func::Trim | Func::Ltrim | Func::Rtrim if matches!(args[0], Value::Bytea(_)) => {
            let (Value::Bytea(b), Some(Value::Bytea(set))) = (&args[0], args.get(1)) else {
                return Err(Error::Internal("bytea trim without a bytea set".into()));
            };
            let keep = |x: &u8| !set.contains(x);
            let from = match func {
                Func::Rtrim => 0,
                _ => b.iter().position(keep).unwrap_or(b.len()),
            };
            let to = match func {
                Func::Ltrim => b.len(),
                _ => b.iter().rposition(keep).map_or(from, |i| i + 1),
            };
            Value::Bytea(b[from..to.max(from)].to_vec())
        }
        Func::Trim | Func::Ltrim | Func::Rtrim => {
            let s = text(&args[0]);
            let chars: Vec<char> = match args.get(1) {
                Some(c) => text(c).chars().collect(),
                None => vec![' '],
            };
            let f = |c: char| chars.contains(&c);
            Value::Text(match func {
                Func::Ltrim => s.trim_start_matches(f).to_string(),
                Func::Rtrim => s.trim_end_matches(f).to_string(),
                _ => s.trim_matches(f).to_string(),
            })
        }
        Func::Replace => {
            let (s, from, to) = (text(&args[0]), text(&args[1]), text(&args[2]));
            Value::Text(if from.is_empty() { s } else { s.replace(&from, &to) })
        }
        Func::Position | Func::StrposFn => {
            // position(sub IN s) has (sub, s); strpos(s, sub).
            let (sub, s) = if func == Func::Position {
                (text(&args[0]), text(&args[1]))
            } else {
                (text(&args[1]), text(&args[0]))
            };
            Value::Int4(match s.find(&sub) {
                Some(b) => s[..b].chars().count() as i32 + 1,
                None => 0,
            })
        }
        Func::Left | Func::Right => {
            let s: Vec<char> = text(&args[0]).chars().collect();
            let n = int(&args[1]);
            let len = s.len() as i64;
            let k = if n >= 0 { n.min(len) } else { (len + n).max(0) } as usize;
            Value::Text(if func == Func::Left {
                s[..k].iter().collect()
            } else {
                s[s.len() - k..].iter().collect()
            })
        }
        Func::Repeat => {
            let n = int(&args[1]).max(0) as usize;
            let s = text(&args[0]);
            if s.len().saturating_mul(n) > 1 << 30 {
                return Err(Error::user("54000", "requested length too large"));
            }
            Value::Text(s.repeat(n))
        }
        Func::RegexMatch | Func::RegexIMatch => Value::Bool(super::regexp::matches(
            &text_ref(&args[0]),
            &text_ref(&args[1]),
            func == Func::RegexIMatch,
        )?),
        _ => return Err(Error::Internal("handled above".into())),
    })
}

/// A xorshift generator seeded from the clock (random(); not for secrets).
fn random() -> f64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64 | 1)
                .unwrap_or(0x9e37_79b9_7f4a_7c15),
        );
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}
