//! Expression evaluation with SQL's three-valued logic. Arithmetic keeps
//! PostgreSQL's types: integer operations overflow with 22003 (never wrap)
//! and integer division truncates; division by zero is 22012.

use std::cmp::Ordering;

use qube_common::types::DataType;
use qube_common::{Error, Result};

use super::Ctx;
use crate::plan::{BinOp, Expr, Func, UnOp};
use crate::types::Value;
use crate::types::cast::{self, out_of_range};

fn div_zero() -> Error {
    Error::user("22012", "division by zero")
}

/// `cast::cast(p.clone(), to)` for the usual parameter types, or None.
fn cast_param(p: &Value, to: &DataType) -> Option<Result<Value>> {
    Some(match (p, to) {
        (Value::Int8(x), DataType::BigInt) => Ok(Value::Int8(*x)),
        (Value::Int8(x), DataType::Integer) => {
            i32::try_from(*x).map(Value::Int4).map_err(|_| out_of_range("integer"))
        }
        (Value::Int8(x), DataType::SmallInt) => {
            i16::try_from(*x).map(Value::Int2).map_err(|_| out_of_range("smallint"))
        }
        (Value::Int4(x), DataType::Integer) => Ok(Value::Int4(*x)),
        (Value::Int4(x), DataType::BigInt) => Ok(Value::Int8(i64::from(*x))),
        (Value::Text(s), DataType::Text) => Ok(Value::Text(s.clone())),
        _ => return None,
    })
}

/// Evaluates `e` over `row`.
pub fn eval(ctx: &mut Ctx, e: &Expr, row: &[Value]) -> Result<Value> {
    Ok(match e {
        Expr::Const(v) => v.clone(),
        Expr::Column(i) => row
            .get(*i)
            .cloned()
            .ok_or_else(|| Error::Internal(format!("column {i} out of range")))?,
        Expr::Outer { depth, index } => {
            let n = ctx.outer.len();
            let r = n
                .checked_sub(*depth)
                .and_then(|d| ctx.outer.get(d))
                .ok_or_else(|| Error::Internal("outer row missing".into()))?;
            r.get(*index)
                .cloned()
                .ok_or_else(|| Error::Internal("outer column out of range".into()))?
        }
        Expr::Param(i) => ctx.params.get(*i).cloned().ok_or_else(|| {
            Error::user("08P01", format!("no value given for parameter ${}", i + 1))
        })?,
        Expr::Unary { op, expr } => {
            let v = eval(ctx, expr, row)?;
            match (op, v) {
                (_, Value::Null) => Value::Null,
                (UnOp::Not, Value::Bool(b)) => Value::Bool(!b),
                (UnOp::Neg, Value::Int2(i)) => {
                    Value::Int2(i.checked_neg().ok_or_else(|| out_of_range("smallint"))?)
                }
                (UnOp::Neg, Value::Int4(i)) => {
                    Value::Int4(i.checked_neg().ok_or_else(|| out_of_range("integer"))?)
                }
                (UnOp::Neg, Value::Int8(i)) => {
                    Value::Int8(i.checked_neg().ok_or_else(|| out_of_range("bigint"))?)
                }
                (UnOp::Neg, Value::Float4(f)) => Value::Float4(-f),
                (UnOp::Neg, Value::Float8(f)) => Value::Float8(-f),
                (UnOp::Neg, Value::Numeric(d)) => Value::Numeric(d.neg()),
                (UnOp::Neg, Value::Interval(i)) => Value::Interval(i.checked_neg()?),
                (op, v) => return Err(Error::Internal(format!("{op:?} on {v:?}"))),
            }
        }
        Expr::Binary { op: BinOp::And, left, right } => {
            let l = eval(ctx, left, row)?;
            if l == Value::Bool(false) {
                return Ok(l);
            }
            let r = eval(ctx, right, row)?;
            match (l, r) {
                (_, Value::Bool(false)) => Value::Bool(false),
                (Value::Bool(true), Value::Bool(true)) => Value::Bool(true),
                _ => Value::Null,
            }
        }
        Expr::Binary { op: BinOp::Or, left, right } => {
            let l = eval(ctx, left, row)?;
            if l == Value::Bool(true) {
                return Ok(l);
            }
            let r = eval(ctx, right, row)?;
            match (l, r) {
                (_, Value::Bool(true)) => Value::Bool(true),
                (Value::Bool(false), Value::Bool(false)) => Value::Bool(false),
                _ => Value::Null,
            }
        }
        Expr::Binary { op, left, right } => {
            let l = eval(ctx, left, row)?;
            let r = eval(ctx, right, row)?;
            binary(*op, l, r)?
        }
        Expr::IsNull { expr, negated } => Value::Bool(eval(ctx, expr, row)?.is_null() != *negated),
        Expr::IsBool { expr, value, negated } => {
            let v = eval(ctx, expr, row)?;
            Value::Bool((v == Value::Bool(*value)) != *negated)
        }
        Expr::IsDistinct { left, right, negated } => {
            let l = eval(ctx, left, row)?;
            let r = eval(ctx, right, row)?;
            let same = match (&l, &r) {
                (Value::Null, Value::Null) => true,
                (Value::Null, _) | (_, Value::Null) => false,
                _ => l.sql_cmp(&r) == Some(Ordering::Equal),
            };
            Value::Bool(same == *negated)
        }
        Expr::InList { expr, list, negated } => {
            let v = eval(ctx, expr, row)?;
            if v.is_null() {
                return Ok(Value::Null);
            }
            let mut saw_null = false;
            for item in list {
                let x = eval(ctx, item, row)?;
                match v.sql_cmp(&x) {
                    Some(Ordering::Equal) => return Ok(Value::Bool(!*negated)),
                    None if x.is_null() => saw_null = true,
                    _ => {}
                }
            }
            if saw_null { Value::Null } else { Value::Bool(*negated) }
        }
        Expr::Between { expr, low, high, negated } => {
            let v = eval(ctx, expr, row)?;
            let lo = eval(ctx, low, row)?;
            let hi = eval(ctx, high, row)?;
            let ge = cmp3(&v, &lo, |o| o != Ordering::Less);
            let le = cmp3(&v, &hi, |o| o != Ordering::Greater);
            let r = and3(ge, le);
            match r {
                Some(b) => Value::Bool(b != *negated),
                None => Value::Null,
            }
        }
        Expr::Case { operand, whens, else_ } => {
            let op = match operand {
                Some(o) => Some(eval(ctx, o, row)?),
                None => None,
            };
            for (w, then) in whens {
                let c = eval(ctx, w, row)?;
                let hit = match &op {
                    Some(o) => o.sql_cmp(&c) == Some(Ordering::Equal),
                    None => c == Value::Bool(true),
                };
                if hit {
                    return eval(ctx, then, row);
                }
            }
            match else_ {
                Some(e) => eval(ctx, e, row)?,
                None => Value::Null,
            }
        }
        Expr::Cast { expr, to } => {
            // A parameter cast to its column's type (every value of a
            // prepared INSERT): the common cases without the clone and the
            // general conversion, with the same results and errors.
            if let Expr::Param(i) = &**expr
                && let Some(p) = ctx.params.get(*i)
                && let Some(v) = cast_param(p, to)
            {
                return v;
            }
            cast::cast(eval(ctx, expr, row)?, to)?
        }
        Expr::Func { func, args } => {
            let mut vals = Vec::with_capacity(args.len());
            match func {
                Func::Coalesce => {
                    for a in args {
                        let v = eval(ctx, a, row)?;
                        if !v.is_null() {
                            return Ok(v);
                        }
                    }
                    return Ok(Value::Null);
                }
                _ => {
                    for a in args {
                        vals.push(eval(ctx, a, row)?);
                    }
                }
            }
            match func {
                Func::Nextval | Func::Currval | Func::Setval | Func::Lastval => {
                    super::sequence::call(ctx, *func, vals)?
                }
                Func::CurrentDatabase | Func::CurrentSchema | Func::CurrentUser => {
                    session_info(ctx, *func)?
                }
                Func::Sys(f) => crate::system::call(ctx, *f, vals)?,
                _ => super::funcs::call(*func, vals)?,
            }
        }
        Expr::Like { expr, pattern, negated, case_insensitive } => {
            let v = eval(ctx, expr, row)?;
            let p = eval(ctx, pattern, row)?;
            match (v, p) {
                (Value::Text(s), Value::Text(p)) => {
                    let m = if *case_insensitive {
                        like(&s.to_lowercase(), &p.to_lowercase())
                    } else {
                        like(&s, &p)
                    };
                    Value::Bool(m != *negated)
                }
                _ => Value::Null,
            }
        }
        Expr::ScalarSubquery { plan, correlated } => {
            let rows = ctx.subquery(plan, *correlated, row)?;
            match single_row(&rows)? {
                Some(r) => r.first().cloned().unwrap_or(Value::Null),
                None => Value::Null,
            }
        }
        Expr::ArraySubquery { plan, correlated } => {
            let rows = ctx.subquery(plan, *correlated, row)?;
            Value::Array(rows.iter().map(|r| r.first().cloned().unwrap_or(Value::Null)).collect())
        }
        Expr::Exists { plan, negated, correlated } => {
            if *correlated && let Some(found) = ctx.exists_hashed(plan, row)? {
                return Ok(Value::Bool(found != *negated));
            }
            let rows = ctx.subquery(plan, *correlated, row)?;
            Value::Bool(rows.is_empty() == *negated)
        }
        Expr::InSubquery { expr, plan, negated, correlated }
            if matches!(**expr, Expr::Func { func: Func::RowCtor, .. }) =>
        {
            // A row IN the subquery's rows: a row matches if every field
            // equals its column, is unknown if none differs but some are
            // NULL; the result is true on a match, else NULL if any row
            // was unknown, else false (negated for NOT IN).
            let Value::Record(fields) = eval(ctx, expr, row)? else {
                return Err(Error::Internal("row IN (subquery) without a row".into()));
            };
            let rows = ctx.subquery(plan, *correlated, row)?;
            let mut unknown = false;
            for r in rows.iter() {
                let mut all_equal = true;
                let mut differs = false;
                for (v, x) in fields.iter().zip(r.iter()) {
                    match v.sql_cmp(x) {
                        Some(Ordering::Equal) => {}
                        Some(_) => {
                            differs = true;
                            break;
                        }
                        None => all_equal = false,
                    }
                }
                if !differs && all_equal {
                    return Ok(Value::Bool(!*negated));
                }
                unknown |= !differs;
            }
            if unknown { Value::Null } else { Value::Bool(*negated) }
        }
        Expr::InSubquery { expr, plan, negated, correlated } => {
            let v = eval(ctx, expr, row)?;
            if !*correlated
                && !v.is_null()
                && let Some(set) = ctx.in_set(plan, row)?
                && let Some(found) = set.contains(&v)
            {
                return Ok(match found {
                    Value::Bool(b) => Value::Bool(b != *negated),
                    other => other,
                });
            }
            let rows = ctx.subquery(plan, *correlated, row)?;
            if v.is_null() {
                return Ok(if rows.is_empty() { Value::Bool(*negated) } else { Value::Null });
            }
            let mut saw_null = false;
            for r in rows.iter() {
                let x = r.first().cloned().unwrap_or(Value::Null);
                match v.sql_cmp(&x) {
                    Some(Ordering::Equal) => return Ok(Value::Bool(!*negated)),
                    None if x.is_null() => saw_null = true,
                    _ => {}
                }
            }
            if saw_null { Value::Null } else { Value::Bool(*negated) }
        }
        Expr::Quantified { expr, op, all, single, plan, correlated } => {
            let is_row = matches!(**expr, Expr::Func { func: Func::RowCtor, .. });
            let v = eval(ctx, expr, row)?;
            let rows = ctx.subquery(plan, *correlated, row)?;
            let cmp = |r: &[Value]| match (&v, is_row) {
                (Value::Record(fields), true) => row_compare(*op, fields, r),
                _ => compare(*op, &v, r.first().unwrap_or(&Value::Null)),
            };
            if *single {
                return Ok(single_row(&rows)?.map_or(Value::Null, |r| cmp(r)));
            }
            // ALL: true unless one is false; ANY: false unless one is true.
            let mut result = Some(*all);
            for r in rows.iter() {
                match cmp(r) {
                    Value::Bool(b) if b != *all => return Ok(Value::Bool(b)),
                    Value::Null => result = None,
                    _ => {}
                }
            }
            result.map_or(Value::Null, Value::Bool)
        }
    })
}

/// The one row of a subquery used as an expression: None if it has none,
/// 21000 if it has more.
fn single_row(rows: &[super::Row]) -> Result<Option<&super::Row>> {
    match rows {
        [] => Ok(None),
        [r] => Ok(Some(r)),
        _ => Err(Error::user(
            "21000",
            "more than one row returned by a subquery used as an expression",
        )),
    }
}

/// Two rows compared as PostgreSQL compares them: `=` is true if every
/// pair of fields is equal, false if any differs, else NULL (`<>` the
/// opposite); the ordering operators are decided by the first pair that is
/// not equal (NULL if that pair has a NULL), and equal rows satisfy `<=`
/// and `>=` only.
fn row_compare(op: BinOp, l: &[Value], r: &[Value]) -> Value {
    let pairs = l.iter().zip(r);
    if matches!(op, BinOp::Eq | BinOp::NotEq) {
        let mut unknown = false;
        for (a, b) in pairs {
            match a.sql_cmp(b) {
                Some(Ordering::Equal) => {}
                Some(_) => return Value::Bool(op == BinOp::NotEq),
                None => unknown = true,
            }
        }
        return if unknown { Value::Null } else { Value::Bool(op == BinOp::Eq) };
    }
    for (a, b) in pairs {
        match a.sql_cmp(b) {
            Some(Ordering::Equal) => {}
            Some(_) => return compare(op, a, b),
            None => return Value::Null,
        }
    }
    Value::Bool(matches!(op, BinOp::LtEq | BinOp::GtEq))
}

fn cmp3(a: &Value, b: &Value, f: impl Fn(Ordering) -> bool) -> Option<bool> {
    a.sql_cmp(b).map(f)
}

fn and3(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (Some(true), Some(true)) => Some(true),
        _ => None,
    }
}

/// Whether a predicate's value passes a filter (only TRUE does).
pub fn truthy(v: &Value) -> bool {
    matches!(v, Value::Bool(true))
}

pub fn compare(op: BinOp, l: &Value, r: &Value) -> Value {
    match l.sql_cmp(r) {
        None => Value::Null,
        Some(o) => Value::Bool(match op {
            BinOp::Eq => o == Ordering::Equal,
            BinOp::NotEq => o != Ordering::Equal,
            BinOp::Lt => o == Ordering::Less,
            BinOp::LtEq => o != Ordering::Greater,
            BinOp::Gt => o == Ordering::Greater,
            BinOp::GtEq => o != Ordering::Less,
            _ => return Value::Null,
        }),
    }
}

pub fn binary(op: BinOp, l: Value, r: Value) -> Result<Value> {
    if l.is_null() || r.is_null() {
        return Ok(Value::Null);
    }
    if op.is_comparison() {
        return Ok(compare(op, &l, &r));
    }
    if op == BinOp::Concat {
        // `text || anynonarray` casts the other side to text (PostgreSQL's
        // textanycat), so a boolean reads `true` there.
        return Ok(Value::Text(format!("{}{}", cast::cast_text(l), cast::cast_text(r))));
    }
    if let Some(v) = super::datetime::arith(op, &l, &r) {
        return v;
    }
    arith(op, l, r)
}

fn width(v: &Value) -> u8 {
    match v {
        Value::Int2(_) => 2,
        Value::Int4(_) => 4,
        _ => 8,
    }
}

fn arith(op: BinOp, l: Value, r: Value) -> Result<Value> {
    use Value::*;
    // Integers of any widths: the wider width.
    if let (Some(a), Some(b)) = (l.as_i64(), r.as_i64()) {
        let w = width(&l).max(width(&r));
        let (name, min, max) = match w {
            2 => ("smallint", i16::MIN as i64, i16::MAX as i64),
            4 => ("integer", i32::MIN as i64, i32::MAX as i64),
            _ => ("bigint", i64::MIN, i64::MAX),
        };
        let v = match op {
            BinOp::Add => a.checked_add(b),
            BinOp::Sub => a.checked_sub(b),
            BinOp::Mul => a.checked_mul(b),
            BinOp::Div => {
                if b == 0 {
                    return Err(div_zero());
                }
                a.checked_div(b)
            }
            BinOp::Mod => {
                if b == 0 {
                    return Err(div_zero());
                }
                Some(a.checked_rem(b).unwrap_or(0))
            }
            _ => return Err(Error::Internal(format!("{op:?} on integers"))),
        };
        let v = v.filter(|v| *v >= min && *v <= max).ok_or_else(|| out_of_range(name))?;
        return Ok(match w {
            2 => Int2(v as i16),
            4 => Int4(v as i32),
            _ => Int8(v),
        });
    }
    let floats = matches!(l, Float4(_) | Float8(_)) || matches!(r, Float4(_) | Float8(_));
    if floats {
        let single = matches!((&l, &r), (Float4(_), Float4(_)));
        let (a, b) = (l.as_f64().unwrap_or(0.0), r.as_f64().unwrap_or(0.0));
        let v = match op {
            BinOp::Add => a + b,
            BinOp::Sub => a - b,
            BinOp::Mul => a * b,
            BinOp::Div => {
                if b == 0.0 {
                    return Err(div_zero());
                }
                a / b
            }
            BinOp::Mod => {
                return Err(Error::user(
                    "42883",
                    "operator does not exist: double precision % double precision",
                ));
            }
            _ => return Err(Error::Internal(format!("{op:?} on floats"))),
        };
        if v.is_infinite() && a.is_finite() && b.is_finite() {
            return Err(Error::user("22003", "value out of range: overflow"));
        }
        return Ok(if single { Float4(v as f32) } else { Float8(v) });
    }
    let a = cast::to_numeric(l)?;
    let b = cast::to_numeric(r)?;
    Ok(Numeric(match op {
        BinOp::Add => a.add(&b)?,
        BinOp::Sub => a.sub(&b)?,
        BinOp::Mul => a.mul(&b)?,
        BinOp::Div => a.div(&b)?,
        BinOp::Mod => a.rem(&b)?,
        _ => return Err(Error::Internal(format!("{op:?} on numerics"))),
    }))
}

/// SQL LIKE with `%` and `_`, and `\` escaping the next character.
pub fn like(s: &str, p: &str) -> bool {
    let s: Vec<char> = s.chars().collect();
    let p: Vec<char> = p.chars().collect();
    let (mut si, mut pi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() {
            match p[pi] {
                '%' => {
                    star = Some((pi, si));
                    pi += 1;
                    continue;
                }
                '_' => {
                    si += 1;
                    pi += 1;
                    continue;
                }
                '\\' if pi + 1 < p.len() && p[pi + 1] == s[si] => {
                    si += 1;
                    pi += 2;
                    continue;
                }
                '\\' if pi + 1 < p.len() => {}
                c if c == s[si] => {
                    si += 1;
                    pi += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, ss)) => {
                pi = sp + 1;
                si = ss + 1;
                star = Some((sp, ss + 1));
            }
            None => return false,
        }
    }
    while pi < p.len() && p[pi] == '%' {
        pi += 1;
    }
    pi == p.len()
}

/// current_database(), current_schema(), current_user.
fn session_info(ctx: &mut Ctx, func: Func) -> Result<Value> {
    let Some(env) = ctx.env else {
        return Ok(Value::Null);
    };
    Ok(match func {
        Func::CurrentDatabase => Value::Text(env.path.db_name.clone()),
        Func::CurrentUser => Value::Text(env.path.user.clone()),
        _ => match env.path.schemas.first() {
            Some(&id) => match env.catalog.get(ctx.txn, id)? {
                Some(o) => Value::Text(o.name.clone()),
                None => Value::Null,
            },
            None => Value::Null,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns() {
        assert!(like("abc", "a%"));
        assert!(like("abc", "%c"));
        assert!(like("abc", "_b_"));
        assert!(!like("abc", "_b"));
        assert!(like("", "%"));
        assert!(like("a%c", "a\\%c"));
        assert!(!like("abc", "a\\%c"));
        assert!(like("aXbXc", "a%b%c"));
    }

    #[test]
    fn integer_arithmetic_is_checked() {
        assert_eq!(arith(BinOp::Div, Value::Int4(7), Value::Int4(2)).unwrap(), Value::Int4(3));
        assert_eq!(arith(BinOp::Div, Value::Int4(-7), Value::Int4(2)).unwrap(), Value::Int4(-3));
        assert_eq!(arith(BinOp::Mod, Value::Int4(-7), Value::Int4(2)).unwrap(), Value::Int4(-1));
        assert_eq!(
            arith(BinOp::Div, Value::Int4(1), Value::Int4(0)).unwrap_err().sqlstate(),
            "22012"
        );
        let e = arith(BinOp::Add, Value::Int4(i32::MAX), Value::Int4(1)).unwrap_err();
        assert_eq!(e.sqlstate(), "22003");
        assert_eq!(
            arith(BinOp::Mul, Value::Int2(200), Value::Int2(200)).unwrap_err().sqlstate(),
            "22003"
        );
        assert_eq!(
            arith(BinOp::Add, Value::Int4(i32::MAX), Value::Int8(1)).unwrap(),
            Value::Int8(1 << 31)
        );
        assert_eq!(
            arith(BinOp::Div, Value::Int8(i64::MIN), Value::Int8(-1)).unwrap_err().sqlstate(),
            "22003"
        );
    }

    #[test]
    fn numeric_division_has_postgresql_scale() {
        let d = |s: &str| cast::parse_numeric(s).unwrap();
        assert_eq!(d("1").div(&d("3")).unwrap().to_string(), "0.33333333333333333333");
        assert_eq!(d("10").div(&d("4")).unwrap().to_string(), "2.5000000000000000");
        assert_eq!(d("2").div(&d("1")).unwrap().to_string(), "2.0000000000000000");
    }
}
