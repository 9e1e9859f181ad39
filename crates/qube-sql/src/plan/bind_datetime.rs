//! The binder's date/time rules (a child module of `bind`): PostgreSQL's
//! operator table for date, time, timestamp, timestamptz and interval,
//! the date/time functions' signatures, `INTERVAL '…' unit`, EXTRACT and
//! AT TIME ZONE. Values are computed in `exec::datetime`.

use qube_common::Result;
use qube_common::types::DataType;
use sqlparser::ast;

use super::{B, Binder, coerce, coerce_b, err, is_numeric, no_operator, op_name, unsupported};
use crate::plan::{BinOp, Expr, Func};
use crate::types::Value;
use crate::types::datetime::{self as dt, Unit};

pub fn is_datetime(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Date
            | DataType::Time
            | DataType::Timestamp
            | DataType::TimestampTz
            | DataType::Interval
    )
}

/// The common type of two date/time types, if they have one
/// (date < timestamp < timestamptz; time → interval).
pub fn common(a: &DataType, b: &DataType) -> Option<DataType> {
    use DataType::*;
    if a == b && is_datetime(a) {
        return Some(a.clone());
    }
    let rank = |t: &DataType| match t {
        Date => Some(0),
        Timestamp => Some(1),
        TimestampTz => Some(2),
        _ => None,
    };
    match (rank(a), rank(b)) {
        (Some(x), Some(y)) => Some(if x >= y { a.clone() } else { b.clone() }),
        _ => match (a, b) {
            (Time, Interval) | (Interval, Time) => Some(Interval),
            _ => None,
        },
    }
}

/// Assignment casts among the date/time types.
pub fn assignable(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    matches!(
        (from, to),
        (Date | Timestamp | TimestampTz, Date | Timestamp | TimestampTz)
            | (Timestamp | TimestampTz | Interval, Time)
            | (Time, Interval)
    )
}

/// The date/time types of sqlparser's AST, with a fractional-seconds
/// precision if one was given.
pub fn data_type(t: &ast::DataType) -> Option<Result<(DataType, Option<u64>)>> {
    use ast::DataType as T;
    use ast::TimezoneInfo as Z;
    Some(Ok(match t {
        T::Date => (DataType::Date, None),
        T::Time(p, Z::None | Z::WithoutTimeZone) => (DataType::Time, *p),
        T::Time(_, _) => return Some(Err(unsupported("type time with time zone"))),
        T::Timestamp(p, Z::None | Z::WithoutTimeZone) | T::Datetime(p) => (DataType::Timestamp, *p),
        T::Timestamp(p, Z::WithTimeZone | Z::Tz) => (DataType::TimestampTz, *p),
        T::TimestampNtz(p) => (DataType::Timestamp, *p),
        T::Interval { .. } => (DataType::Interval, None),
        T::Custom(name, mods) => {
            let n = name.0.last().map(|p| p.to_string().to_ascii_lowercase()).unwrap_or_default();
            let p = mods.first().and_then(|m| m.to_string().parse().ok());
            match n.as_str() {
                "timestamptz" => (DataType::TimestampTz, p),
                "timetz" => return Some(Err(unsupported("type time with time zone"))),
                _ => return None,
            }
        }
        _ => return None,
    }))
}

/// Checks a `(p)` precision: 0..=6 (PostgreSQL caps larger ones at 6 with
/// a warning; we do the same silently).
pub fn check_precision(p: Option<u64>) -> Option<u64> {
    p.filter(|p| *p < 6)
}

fn unit_of_field(f: &ast::DateTimeField) -> Option<Unit> {
    dt::unit_of(&f.to_string().to_ascii_lowercase())
}

impl Binder<'_> {
    /// INTERVAL '…' [unit], EXTRACT, AT TIME ZONE; `None` for other nodes.
    pub(super) fn datetime_expr(&mut self, e: &ast::Expr) -> Result<Option<B>> {
        use ast::Expr as E;
        Ok(Some(match e {
            E::Interval(iv) => {
                let v = self.expr(&iv.value)?;
                let unit = match &iv.leading_field {
                    Some(f) => Some(
                        unit_of_field(f).ok_or_else(|| unsupported(format!("INTERVAL … {f}")))?,
                    ),
                    None => None,
                };
                let last = iv.last_field.as_ref().and_then(unit_of_field);
                match v.expr {
                    Expr::Const(Value::Text(s)) if v.unknown => {
                        let mut i =
                            dt::parse_interval(&s, if last.is_some() { None } else { unit })?;
                        // `INTERVAL '…' YEAR` keeps only the fields down to the last one.
                        if let Some(u) = last.or(unit) {
                            i = restrict(i, u);
                        }
                        B::new(Expr::Const(Value::Interval(i)), DataType::Interval)
                    }
                    _ => {
                        if unit.is_some() {
                            return Err(unsupported("INTERVAL with a unit on a non-literal"));
                        }
                        B::new(coerce(v, &DataType::Interval)?, DataType::Interval)
                    }
                }
            }
            E::Extract { field, expr, .. } => {
                let name = match field {
                    ast::DateTimeField::Custom(i) => i.value.to_ascii_lowercase(),
                    ast::DateTimeField::Microsecond | ast::DateTimeField::Microseconds => {
                        "microseconds".into()
                    }
                    ast::DateTimeField::Millisecond | ast::DateTimeField::Milliseconds => {
                        "milliseconds".into()
                    }
                    ast::DateTimeField::Week(_) => "week".into(),
                    ast::DateTimeField::Millenium => "millennium".into(),
                    other => other.to_string().to_ascii_lowercase(),
                };
                let x = self.expr(expr)?;
                let x = datetime_arg(x, "extract", &name)?;
                B::new(
                    Expr::Func {
                        func: Func::Extract,
                        args: vec![Expr::Const(Value::Text(name)), x.expr],
                    },
                    DataType::Numeric(None),
                )
            }
            E::AtTimeZone { timestamp, time_zone } => {
                let ts = self.expr(timestamp)?;
                let z = self.expr(time_zone)?;
                at_time_zone(ts, z)?
            }
            _ => return Ok(None),
        }))
    }
}

impl Binder<'_> {
    /// make_interval(years, months, weeks, days, hours, mins, secs), by
    /// position or by name (`make_interval(days => 10)`).
    pub(super) fn make_interval(&mut self, args: &[&ast::FunctionArg]) -> Result<B> {
        const NAMES: [&str; 7] = ["years", "months", "weeks", "days", "hours", "mins", "secs"];
        let mut slots: Vec<Option<B>> = vec![None; 7];
        let mut pos = 0;
        for a in args {
            let (slot, e) = match a {
                ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => {
                    pos += 1;
                    (pos - 1, e)
                }
                ast::FunctionArg::Named { name, arg: ast::FunctionArgExpr::Expr(e), .. }
                | ast::FunctionArg::ExprNamed {
                    name: ast::Expr::Identifier(name),
                    arg: ast::FunctionArgExpr::Expr(e),
                    ..
                } => {
                    let n = super::ident(name);
                    let i = NAMES.iter().position(|x| *x == n).ok_or_else(|| {
                        err(
                            "42883",
                            format!("function make_interval({n} => unknown) does not exist"),
                        )
                    })?;
                    (i, e)
                }
                other => return Err(unsupported(format!("argument {other}"))),
            };
            if slot >= 7 {
                return Err(err(
                    "42883",
                    "function make_interval with more than 7 arguments does not exist",
                ));
            }
            slots[slot] = Some(self.expr(e)?);
        }
        let mut a = Vec::with_capacity(7);
        for (i, b) in slots.into_iter().enumerate() {
            let ty = if i == 6 { DataType::Double } else { DataType::Integer };
            a.push(match b {
                Some(b) => coerce(b, &ty)?,
                None if i == 6 => Expr::Const(Value::Float8(0.0)),
                None => Expr::Const(Value::Int4(0)),
            });
        }
        Ok(B::new(Expr::Func { func: Func::MakeInterval, args: a }, DataType::Interval))
    }
}

impl Binder<'_> {
    /// `(s1, e1) OVERLAPS (s2, e2)`; an end may be an interval (the period's
    /// length). The four points take their common date/time type.
    pub(super) fn overlaps(&mut self, l: &ast::Expr, r: &ast::Expr) -> Result<B> {
        let pair = |e: &ast::Expr| -> Result<(ast::Expr, ast::Expr)> {
            match e {
                ast::Expr::Tuple(v) if v.len() == 2 => Ok((v[0].clone(), v[1].clone())),
                _ => Err(err(
                    "42601",
                    "wrong number of parameters on left side of OVERLAPS expression",
                )),
            }
        };
        let (a, b) = pair(l)?;
        let (c, d) = pair(r)?;
        let mut bs = vec![self.expr(&a)?, self.expr(&b)?, self.expr(&c)?, self.expr(&d)?];
        let mut ty: Option<DataType> = None;
        for b in &bs {
            if !b.unknown && b.ty != DataType::Interval {
                ty = Some(match ty {
                    None => b.ty.clone(),
                    Some(t) => common(&t, &b.ty).ok_or_else(|| {
                        err(
                            "42883",
                            format!(
                                "function pg_catalog.overlaps({}, {}) does not exist",
                                t.sql_name(),
                                b.ty.sql_name()
                            ),
                        )
                    })?,
                });
            }
        }
        let Some(ty) = ty else {
            return Err(err(
                "42725",
                "function pg_catalog.overlaps(unknown, unknown, unknown, unknown) is not unique",
            ));
        };
        let ty = match ty {
            DataType::Date => DataType::TimestampTz,
            t => t,
        };
        let mut args = Vec::with_capacity(4);
        for (i, b) in bs.drain(..).enumerate() {
            if i % 2 == 1 && !b.unknown && b.ty == DataType::Interval {
                // The end is the start plus the interval.
                let start = args.last().cloned().unwrap_or(Expr::Const(Value::Null));
                args.push(Expr::Binary {
                    op: BinOp::Add,
                    left: Box::new(start),
                    right: b.expr.boxed(),
                });
            } else {
                args.push(coerce(b, &ty)?);
            }
        }
        Ok(B::new(Expr::Func { func: Func::Overlaps, args }, DataType::Boolean))
    }
}

/// Keeps the fields of `i` down to `unit` (`INTERVAL '1 day 2 hours' DAY`).
fn restrict(i: dt::Interval, unit: Unit) -> dt::Interval {
    let t = i.micros;
    match unit {
        Unit::Year | Unit::Decade | Unit::Century | Unit::Millennium => {
            dt::Interval::new(i.months / 12 * 12, 0, 0)
        }
        Unit::Month | Unit::Quarter => dt::Interval::new(i.months, 0, 0),
        Unit::Day | Unit::Week => dt::Interval::new(i.months, i.days, 0),
        Unit::Hour => dt::Interval::new(i.months, i.days, t - t % dt::USECS_PER_HOUR),
        Unit::Minute => dt::Interval::new(i.months, i.days, t - t % dt::USECS_PER_MINUTE),
        _ => i,
    }
}

/// An argument that must be a date/time value (an untyped literal has
/// several candidates: 42725, as in PostgreSQL).
fn datetime_arg(b: B, fname: &str, _field: &str) -> Result<B> {
    if b.unknown {
        let fname = if fname == "extract" { "pg_catalog.extract" } else { fname };
        return Err(err("42725", format!("function {fname}(unknown, unknown) is not unique")));
    }
    if !is_datetime(&b.ty) {
        return Err(err(
            "42883",
            format!("function {fname}(unknown, {}) does not exist", b.ty.sql_name()),
        ));
    }
    Ok(b)
}

fn at_time_zone(ts: B, z: B) -> Result<B> {
    let z = if z.unknown || !matches!(z.ty, DataType::Interval) {
        coerce(z, &DataType::Text)?
    } else {
        z.expr
    };
    let ts = if ts.unknown { coerce_b(ts, &DataType::TimestampTz)? } else { ts };
    let (ts, ty) = match ts.ty {
        DataType::Timestamp => (ts.expr, DataType::TimestampTz),
        DataType::TimestampTz => (ts.expr, DataType::Timestamp),
        DataType::Date => {
            (Expr::Cast { expr: ts.expr.boxed(), to: DataType::TimestampTz }, DataType::Timestamp)
        }
        ref other => {
            return Err(err(
                "42883",
                format!("function timezone(text, {}) does not exist", other.sql_name()),
            ));
        }
    };
    Ok(B::new(Expr::Func { func: Func::AtTimeZone, args: vec![ts, z] }, ty))
}

/// Arithmetic where a side is a date/time type; `None` when neither is.
pub fn arith(op: BinOp, l: B, r: B) -> Result<std::result::Result<B, (B, B)>> {
    use DataType::*;
    let known_dt = |b: &B| !b.unknown && is_datetime(&b.ty);
    if !known_dt(&l) && !known_dt(&r) {
        return Ok(Err((l, r)));
    }
    // An unknown literal takes the type PostgreSQL's resolution gives it.
    let (l, r) = match (l.unknown, r.unknown) {
        (true, false) => {
            let t = match (op, &r.ty) {
                (BinOp::Add, Timestamp | TimestampTz | Date | Time) => Interval,
                (BinOp::Mul, Interval) => Double,
                _ => r.ty.clone(),
            };
            (coerce_b(l, &t)?, r)
        }
        (false, false) if op == BinOp::Add && l.ty == Time && r.ty == Time => {
            return Err(err(
                "42725",
                "operator is not unique: time without time zone + time without time zone",
            ));
        }
        (false, true) => {
            let t = match (op, &l.ty) {
                (BinOp::Add, Date) => {
                    return Err(err("42725", "operator is not unique: date + unknown".to_string()));
                }
                (BinOp::Add, Timestamp | TimestampTz | Time) => Interval,
                (BinOp::Mul | BinOp::Div, Interval) => Double,
                _ => l.ty.clone(),
            };
            let r = coerce_b(r, &t)?;
            (l, r)
        }
        _ => (l, r),
    };
    let int = |t: &DataType| matches!(t, SmallInt | Integer);
    let result = match (op, &l.ty, &r.ty) {
        (BinOp::Add, Date, t) | (BinOp::Add, t, Date) if int(t) => Date,
        (BinOp::Sub, Date, t) if int(t) => Date,
        (BinOp::Sub, Date, Date) => Integer,
        (BinOp::Add, Date, Interval) | (BinOp::Add, Interval, Date) => Timestamp,
        (BinOp::Sub, Date, Interval) => Timestamp,
        (BinOp::Add, Date, Time) | (BinOp::Add, Time, Date) => Timestamp,
        (BinOp::Add, Timestamp, Interval) | (BinOp::Add, Interval, Timestamp) => Timestamp,
        (BinOp::Sub, Timestamp, Interval) => Timestamp,
        (BinOp::Add, TimestampTz, Interval) | (BinOp::Add, Interval, TimestampTz) => TimestampTz,
        (BinOp::Sub, TimestampTz, Interval) => TimestampTz,
        (BinOp::Add, Time, Interval) | (BinOp::Add, Interval, Time) => Time,
        (BinOp::Sub, Time, Interval) => Time,
        (BinOp::Sub, Time, Time) => Interval,
        (BinOp::Add | BinOp::Sub, Interval, Interval) => Interval,
        (BinOp::Mul, Interval, t) | (BinOp::Mul, t, Interval) if is_numeric(t) => Interval,
        (BinOp::Div, Interval, t) if is_numeric(t) => Interval,
        (
            BinOp::Sub,
            a @ (Date | Timestamp | TimestampTz),
            b @ (Date | Timestamp | TimestampTz),
        ) => {
            // Mixed: both to the wider type, then timestamp - timestamp.
            let t = common(a, b).unwrap_or(TimestampTz);
            let l = coerce(l, &t)?;
            let r = coerce(r, &t)?;
            return Ok(Ok(B::new(
                Expr::Binary { op, left: l.boxed(), right: r.boxed() },
                Interval,
            )));
        }
        _ => return Err(no_operator(op_name(op), Some(&l.ty), &r.ty)),
    };
    Ok(Ok(B::new(Expr::Binary { op, left: l.expr.boxed(), right: r.expr.boxed() }, result)))
}

/// Whether `name` is one of the date/time functions bound here.
pub fn is_function(name: &str) -> bool {
    matches!(
        name,
        "now"
            | "current_timestamp"
            | "transaction_timestamp"
            | "statement_timestamp"
            | "clock_timestamp"
            | "current_date"
            | "current_time"
            | "localtime"
            | "localtimestamp"
            | "date_part"
            | "date_trunc"
            | "age"
            | "make_date"
            | "make_time"
            | "make_timestamp"
            | "make_timestamptz"
            | "make_interval"
            | "to_timestamp"
            | "to_date"
            | "to_char"
            | "justify_days"
            | "justify_hours"
            | "justify_interval"
            | "isfinite"
            | "timezone"
            | "date_bin"
    )
}

/// Binds a date/time function call.
pub fn function(name: &str, mut args: Vec<B>) -> Result<B> {
    use DataType::*;
    let n = args.len();
    let sig = |args: &[B]| super::no_function(name, args);
    let call = |func: Func, args: Vec<Expr>, ty: DataType| B::new(Expr::Func { func, args }, ty);
    let to = |b: B, t: &DataType| coerce(b, t);
    Ok(match (name, n) {
        ("now" | "current_timestamp" | "transaction_timestamp", 0) => {
            call(Func::Now, vec![], TimestampTz)
        }
        ("statement_timestamp", 0) => call(Func::StatementTimestamp, vec![], TimestampTz),
        ("clock_timestamp", 0) => call(Func::ClockTimestamp, vec![], TimestampTz),
        ("current_date", 0) => call(Func::CurrentDate, vec![], Date),
        ("current_time" | "localtime", 0) => call(Func::LocalTime, vec![], Time),
        ("localtimestamp", 0) => call(Func::LocalTimestamp, vec![], Timestamp),
        ("date_part", 2) => {
            let x = args.pop().ok_or_else(|| sig(&[]))?;
            let f = to(args.remove(0), &Text)?;
            let x = datetime_arg(x, name, "")?;
            // date_part(text, date) is date_part(text, timestamp) in PostgreSQL.
            let x = if x.ty == Date { to(x, &Timestamp)? } else { x.expr };
            call(Func::DatePart, vec![f, x], Double)
        }
        ("date_trunc", 2 | 3) => {
            let z =
                if n == 3 { Some(to(args.pop().ok_or_else(|| sig(&[]))?, &Text)?) } else { None };
            let x = args.pop().ok_or_else(|| sig(&[]))?;
            let f = to(args.remove(0), &Text)?;
            let x = datetime_arg(x, name, "")?;
            let (x, ty) = match (&x.ty, &z) {
                (Timestamp, None) => (x.expr, Timestamp),
                (Interval, None) => (x.expr, Interval),
                (Date | TimestampTz, _) | (Timestamp, Some(_)) => {
                    (to(x, &TimestampTz)?, TimestampTz)
                }
                _ => return Err(sig(&[x])),
            };
            let mut a = vec![f, x];
            a.extend(z);
            call(Func::DateTrunc, a, ty)
        }
        ("age", 1 | 2) => {
            let mut tys = Vec::new();
            for b in &args {
                if !b.unknown {
                    tys.push(b.ty.clone());
                }
            }
            let t = if tys.iter().all(|t| matches!(t, Timestamp | Date)) && !tys.is_empty() {
                Timestamp
            } else {
                TimestampTz
            };
            let a = args.into_iter().map(|b| to(b, &t)).collect::<Result<Vec<_>>>()?;
            call(Func::Age, a, Interval)
        }
        ("make_date", 3) => {
            let a = args.into_iter().map(|b| to(b, &Integer)).collect::<Result<Vec<_>>>()?;
            call(Func::MakeDate, a, Date)
        }
        ("make_time", 3) => {
            let s = to(args.pop().ok_or_else(|| sig(&[]))?, &Double)?;
            let mut a = args.into_iter().map(|b| to(b, &Integer)).collect::<Result<Vec<_>>>()?;
            a.push(s);
            call(Func::MakeTime, a, Time)
        }
        ("make_timestamp", 6) | ("make_timestamptz", 6 | 7) => {
            let z =
                if n == 7 { Some(to(args.pop().ok_or_else(|| sig(&[]))?, &Text)?) } else { None };
            let s = to(args.pop().ok_or_else(|| sig(&[]))?, &Double)?;
            let mut a = args.into_iter().map(|b| to(b, &Integer)).collect::<Result<Vec<_>>>()?;
            a.push(s);
            a.extend(z);
            if name == "make_timestamp" {
                call(Func::MakeTimestamp, a, Timestamp)
            } else {
                call(Func::MakeTimestampTz, a, TimestampTz)
            }
        }
        ("make_interval", 0..=7) => {
            let mut a = Vec::new();
            for (i, b) in args.into_iter().enumerate() {
                a.push(to(b, if i == 6 { &Double } else { &Integer })?);
            }
            while a.len() < 6 {
                a.push(Expr::Const(Value::Int4(0)));
            }
            if a.len() < 7 {
                a.push(Expr::Const(Value::Float8(0.0)));
            }
            call(Func::MakeInterval, a, Interval)
        }
        ("to_timestamp", 1) => {
            let x = to(args.remove(0), &Double)?;
            call(Func::ToTimestampEpoch, vec![x], TimestampTz)
        }
        ("to_timestamp" | "to_date", 2) => {
            let a = args.into_iter().map(|b| to(b, &Text)).collect::<Result<Vec<_>>>()?;
            if name == "to_date" {
                call(Func::ToDate, a, Date)
            } else {
                call(Func::ToTimestampFmt, a, TimestampTz)
            }
        }
        ("to_char", 2) if !args[0].unknown && is_datetime(&args[0].ty) => {
            let f = to(args.pop().ok_or_else(|| sig(&[]))?, &Text)?;
            let x = args.remove(0);
            let x = match x.ty {
                Date => to(x, &Timestamp)?,
                Time => to(x, &Interval)?,
                _ => x.expr,
            };
            call(Func::ToChar, vec![x, f], Text)
        }
        ("justify_days" | "justify_hours" | "justify_interval", 1) => {
            let x = to(args.remove(0), &Interval)?;
            let func = match name {
                "justify_days" => Func::JustifyDays,
                "justify_hours" => Func::JustifyHours,
                _ => Func::JustifyInterval,
            };
            call(func, vec![x], Interval)
        }
        ("isfinite", 1) => {
            let x = args.remove(0);
            if x.unknown {
                return Err(err("42725", "function isfinite(unknown) is not unique"));
            }
            if !is_datetime(&x.ty) || x.ty == Time {
                return Err(sig(&[x]));
            }
            call(Func::IsFinite, vec![x.expr], Boolean)
        }
        ("timezone", 2) => {
            let ts = args.pop().ok_or_else(|| sig(&[]))?;
            let z = args.remove(0);
            at_time_zone(ts, z)?
        }
        ("date_bin", 3) => {
            let origin = args.pop().ok_or_else(|| sig(&[]))?;
            let src = args.pop().ok_or_else(|| sig(&[]))?;
            let stride = to(args.remove(0), &Interval)?;
            let t = match (src.unknown, &src.ty, origin.unknown, &origin.ty) {
                (false, Timestamp, _, _) | (true, _, false, Timestamp) => Timestamp,
                _ => TimestampTz,
            };
            let src = to(src, &t)?;
            let origin = to(origin, &t)?;
            call(Func::DateBin, vec![stride, src, origin], t)
        }
        _ => return Err(sig(&args)),
    })
}

/// A cast to `timestamp(p)`, `time(p)`, `interval(p)`: round the value.
pub fn round_to_precision(e: Expr, ty: &DataType, p: Option<u64>) -> Expr {
    match check_precision(p) {
        Some(p) if is_datetime(ty) && *ty != DataType::Date => {
            Expr::Func { func: Func::RoundTime, args: vec![e, Expr::Const(Value::Int4(p as i32))] }
        }
        _ => e,
    }
}

/// generate_series over timestamps: (start, stop, step) typed.
pub fn series_args(bound: Vec<B>) -> Result<Option<(Vec<Expr>, DataType)>> {
    let ty = bound
        .iter()
        .take(2)
        .find(|b| {
            !b.unknown
                && matches!(b.ty, DataType::Timestamp | DataType::TimestampTz | DataType::Date)
        })
        .map(|b| b.ty.clone());
    let Some(ty) = ty else { return Ok(None) };
    let ty = if ty == DataType::Date { DataType::TimestampTz } else { ty };
    if bound.len() != 3 {
        return Err(err(
            "42883",
            format!(
                "function generate_series({}, {}) does not exist",
                ty.sql_name(),
                ty.sql_name()
            ),
        ));
    }
    let mut out = Vec::new();
    for (i, b) in bound.into_iter().enumerate() {
        out.push(coerce(b, if i == 2 { &DataType::Interval } else { &ty })?);
    }
    Ok(Some((out, ty)))
}
