//! Date/time operators and functions, by PostgreSQL's names and results.
//! The representations, calendar, zones and text formats are in
//! `types::datetime`; the binder has already typed and coerced the
//! arguments (`plan/bind_datetime.rs`).

use qube_common::{Error, Result};
use rust_decimal::Decimal;

use super::morefuncs::{int, text};
use crate::plan::{BinOp, Func};
use crate::types::Value;
use crate::types::cast::date_to_ts;
use crate::types::datetime::{
    self as dt, Interval, Tm, USECS_PER_DAY, USECS_PER_HOUR, USECS_PER_MINUTE, USECS_PER_SEC, Unit,
    Zone,
};
use crate::types::value::date_ts;

/// `l op r` when either side is a date/time value; `None` if neither is.
pub fn arith(op: BinOp, l: &Value, r: &Value) -> Option<Result<Value>> {
    use Value::*;
    let is_dt =
        |v: &Value| matches!(v, Date(_) | Time(_) | Timestamp(_) | TimestampTz(_) | Interval(_));
    if !is_dt(l) && !is_dt(r) {
        return None;
    }
    Some(arith_inner(op, l, r))
}

fn neg(iv: Interval) -> Result<Interval> {
    iv.checked_neg()
}

fn arith_inner(op: BinOp, l: &Value, r: &Value) -> Result<Value> {
    use Value::*;
    let zone = || Some(dt::zone());
    Ok(match (op, l, r) {
        (BinOp::Add, Date(d), i) | (BinOp::Add, i, Date(d)) if i.as_i64().is_some() => {
            Date(date_plus(*d, i.as_i64().unwrap_or(0))?)
        }
        (BinOp::Sub, Date(d), i) if i.as_i64().is_some() => {
            Date(date_plus(*d, -i.as_i64().unwrap_or(0))?)
        }
        (BinOp::Sub, Date(a), Date(b)) => {
            if !dt::is_finite_date(*a) || !dt::is_finite_date(*b) {
                return Err(Error::user("22008", "cannot subtract infinite dates"));
            }
            Int4(a - b)
        }
        (BinOp::Add, Date(d), Interval(iv)) | (BinOp::Add, Interval(iv), Date(d)) => {
            Timestamp(dt::add_interval(date_to_ts(*d)?, *iv, None)?)
        }
        (BinOp::Sub, Date(d), Interval(iv)) => {
            Timestamp(dt::add_interval(date_to_ts(*d)?, neg(*iv)?, None)?)
        }
        (BinOp::Add, Date(d), Time(t)) | (BinOp::Add, Time(t), Date(d)) => {
            let base = date_to_ts(*d)?;
            Timestamp(if dt::is_finite_ts(base) { dt::check_ts(base + t)? } else { base })
        }
        (BinOp::Add, Timestamp(t), Interval(iv)) | (BinOp::Add, Interval(iv), Timestamp(t)) => {
            Timestamp(dt::add_interval(*t, *iv, None)?)
        }
        (BinOp::Sub, Timestamp(t), Interval(iv)) => {
            Timestamp(dt::add_interval(*t, neg(*iv)?, None)?)
        }
        (BinOp::Add, TimestampTz(t), Interval(iv)) | (BinOp::Add, Interval(iv), TimestampTz(t)) => {
            TimestampTz(dt::add_interval(*t, *iv, zone())?)
        }
        (BinOp::Sub, TimestampTz(t), Interval(iv)) => {
            TimestampTz(dt::add_interval(*t, neg(*iv)?, zone())?)
        }
        (BinOp::Sub, Timestamp(a), Timestamp(b)) | (BinOp::Sub, TimestampTz(a), TimestampTz(b)) => {
            Interval(dt::ts_diff(*a, *b)?)
        }
        (BinOp::Sub, Date(a), Timestamp(b)) => Interval(dt::ts_diff(date_ts(*a), *b)?),
        (BinOp::Sub, Timestamp(a), Date(b)) => Interval(dt::ts_diff(*a, date_ts(*b))?),
        (BinOp::Add, Time(t), Interval(iv)) | (BinOp::Add, Interval(iv), Time(t)) => {
            Time((t + iv.micros % USECS_PER_DAY).rem_euclid(USECS_PER_DAY))
        }
        (BinOp::Sub, Time(t), Interval(iv)) => {
            Time((t - iv.micros % USECS_PER_DAY).rem_euclid(USECS_PER_DAY))
        }
        (BinOp::Sub, Time(a), Time(b)) => Interval(dt::Interval::new(0, 0, a - b)),
        (BinOp::Add, Interval(a), Interval(b)) => Interval(a.checked_add(*b)?),
        (BinOp::Sub, Interval(a), Interval(b)) => Interval(a.checked_sub(*b)?),
        (BinOp::Mul, Interval(iv), n) | (BinOp::Mul, n, Interval(iv)) if n.as_f64().is_some() => {
            Interval(iv.mul_f64(n.as_f64().unwrap_or(0.0))?)
        }
        (BinOp::Div, Interval(iv), n) if n.as_f64().is_some() => {
            Interval(iv.div_f64(n.as_f64().unwrap_or(0.0))?)
        }
        _ => {
            return Err(Error::Internal(format!("{op:?} on {l:?} and {r:?}")));
        }
    })
}

fn date_plus(d: i32, n: i64) -> Result<i32> {
    if !dt::is_finite_date(d) {
        return Ok(d);
    }
    dt::check_date((d as i64).checked_add(n).ok_or_else(dt::date_out_of_range)?)
}

/// A field name argument (extract, date_part, date_trunc) in lower case.
fn field_name(v: &Value) -> String {
    match v {
        Value::Text(s) => s.trim().to_ascii_lowercase(),
        other => other.to_string().to_ascii_lowercase(),
    }
}

fn zone_arg(v: &Value) -> Result<Zone> {
    match v {
        Value::Interval(iv) => {
            if iv.months != 0 || iv.days != 0 {
                return Err(Error::user(
                    "22023",
                    format!(
                        "interval time zone \"{}\" must not include months or days",
                        Value::Interval(*iv)
                    ),
                ));
            }
            Ok(Zone::Fixed((iv.micros / USECS_PER_SEC) as i32))
        }
        other => {
            let name = text(other);
            dt::parse_zone(&name)
                .ok_or_else(|| Error::user("22023", format!("time zone \"{name}\" not recognized")))
        }
    }
}

/// The date/time functions (NULL in, NULL out, except the clock ones).
pub fn call(func: Func, args: Vec<Value>) -> Result<Value> {
    let env = dt::env();
    match func {
        Func::Now => return Ok(Value::TimestampTz(env.txn_ts)),
        Func::StatementTimestamp => return Ok(Value::TimestampTz(env.stmt_ts)),
        Func::ClockTimestamp => return Ok(Value::TimestampTz(dt::clock_now())),
        Func::CurrentDate => {
            return Ok(Value::Date(env.zone.to_local(env.txn_ts).div_euclid(USECS_PER_DAY) as i32));
        }
        Func::LocalTime => {
            return Ok(Value::Time(env.zone.to_local(env.txn_ts).rem_euclid(USECS_PER_DAY)));
        }
        Func::LocalTimestamp => return Ok(Value::Timestamp(env.zone.to_local(env.txn_ts))),
        Func::Overlaps => return Ok(overlaps(&args)),
        _ => {}
    }
    if args.iter().any(Value::is_null) {
        return Ok(Value::Null);
    }
    Ok(match func {
        Func::Extract | Func::DatePart => {
            let field = field_name(&args[0]);
            // An infinite date or timestamp, as in PostgreSQL: the fields
            // that grow with time are ±Infinity, the others NULL.
            let infinite = match &args[1] {
                Value::Date(d) if !dt::is_finite_date(*d) => Some(*d > 0),
                Value::Timestamp(t) | Value::TimestampTz(t) if !dt::is_finite_ts(*t) => {
                    Some(*t > 0)
                }
                _ => None,
            };
            match (extract(&field, &args[1])?, infinite) {
                (Part::Null, _) => Value::Null,
                (Part::Infinite, Some(up)) if func == Func::DatePart => {
                    Value::Float8(if up { f64::INFINITY } else { f64::NEG_INFINITY })
                }
                (Part::Infinite, _) => {
                    return Err(Error::user(
                        "0A000",
                        format!(
                            "extract({field} FROM {}) is {}Infinity, which numeric cannot hold \
                             here (date_part gives it as double precision)",
                            if infinite == Some(false) { "-infinity" } else { "infinity" },
                            if infinite == Some(false) { "-" } else { "" }
                        ),
                    ));
                }
                (Part::Finite(d, _), _) if func == Func::DatePart => {
                    use rust_decimal::prelude::ToPrimitive;
                    Value::Float8(d.to_f64().unwrap_or(f64::NAN))
                }
                (Part::Finite(mut d, scale), _) => {
                    d.rescale(scale);
                    Value::Numeric(crate::types::numeric::Numeric::from_decimal(d))
                }
            }
        }
        Func::DateTrunc => {
            let unit = trunc_unit(&field_name(&args[0]), &args[1])?;
            match &args[1] {
                Value::Timestamp(t) => Value::Timestamp(dt::trunc_local(unit, *t)?),
                Value::TimestampTz(t) => {
                    let z = match args.get(2) {
                        Some(z) => zone_arg(z)?,
                        None => env.zone,
                    };
                    Value::TimestampTz(trunc_tz(unit, *t, z)?)
                }
                Value::Interval(iv) => Value::Interval(trunc_interval(unit, *iv)?),
                other => return Err(Error::Internal(format!("date_trunc({other:?})"))),
            }
        }
        Func::Age => {
            let z = env.zone;
            let local = |v: &Value| -> i64 {
                match v {
                    Value::TimestampTz(t) => z.to_local(*t),
                    Value::Timestamp(t) => *t,
                    _ => 0,
                }
            };
            let (a, b) = if args.len() == 1 {
                let today = z.to_local(env.txn_ts).div_euclid(USECS_PER_DAY) * USECS_PER_DAY;
                (today, local(&args[0]))
            } else {
                (local(&args[0]), local(&args[1]))
            };
            Value::Interval(dt::age(a, b)?)
        }
        Func::MakeDate => {
            let (y, m, d) = (int(&args[0]), int(&args[1]), int(&args[2]));
            Value::Date(make_date(y, m, d)?)
        }
        Func::MakeTime => {
            let (h, m, s) = (int(&args[0]), int(&args[1]), args[2].as_f64().unwrap_or(0.0));
            Value::Time(make_time(h, m, s)?)
        }
        Func::MakeTimestamp | Func::MakeTimestampTz => {
            let d = make_date(int(&args[0]), int(&args[1]), int(&args[2]))?;
            let t = make_time(int(&args[3]), int(&args[4]), args[5].as_f64().unwrap_or(0.0))?;
            // A date past 294276 AD overflows as microseconds: saturated,
            // it stays out of range (a zone moves it by hours at most).
            let local = (d as i64).saturating_mul(USECS_PER_DAY).saturating_add(t);
            if func == Func::MakeTimestamp {
                Value::Timestamp(dt::check_ts(local)?)
            } else {
                let z = match args.get(6) {
                    Some(z) => zone_arg(z)?,
                    None => env.zone,
                };
                if local.unsigned_abs() > 2 * dt::TS_END.unsigned_abs() {
                    return Err(Error::user("22008", "timestamp out of range"));
                }
                Value::TimestampTz(dt::check_ts(z.to_utc(local))?)
            }
        }
        Func::MakeInterval => {
            let (y, mo, w, d, h, mi) = (
                int(&args[0]),
                int(&args[1]),
                int(&args[2]),
                int(&args[3]),
                int(&args[4]),
                int(&args[5]),
            );
            let secs = args[6].as_f64().unwrap_or(0.0);
            let over = dt::interval_out_of_range;
            let months = y
                .checked_mul(12)
                .and_then(|v| v.checked_add(mo))
                .and_then(|v| i32::try_from(v).ok())
                .ok_or_else(over)?;
            let days = w
                .checked_mul(7)
                .and_then(|v| v.checked_add(d))
                .and_then(|v| i32::try_from(v).ok())
                .ok_or_else(over)?;
            let micros = (h as f64 * USECS_PER_HOUR as f64
                + mi as f64 * USECS_PER_MINUTE as f64
                + secs * 1e6)
                .round();
            if !micros.is_finite() || micros.abs() >= 9.2e18 {
                return Err(over());
            }
            Value::Interval(Interval::new(months, days, micros as i64))
        }
        Func::ToTimestampEpoch => {
            let f = args[0].as_f64().unwrap_or(0.0);
            if f.is_nan() {
                return Err(Error::user("22008", "timestamp cannot be NaN"));
            }
            if f.is_infinite() {
                return Ok(Value::TimestampTz(if f > 0.0 {
                    dt::TS_POS_INF
                } else {
                    dt::TS_NEG_INF
                }));
            }
            let us = (f * 1e6).round() - (dt::UNIX_EPOCH_OFFSET_DAYS * USECS_PER_DAY) as f64;
            if !(dt::TS_MIN as f64..dt::TS_END as f64).contains(&us) {
                return Err(Error::user(
                    "22008",
                    format!(
                        "timestamp out of range: \"{}\"",
                        crate::types::value::format_float(f, false)
                    ),
                ));
            }
            Value::TimestampTz(us as i64)
        }
        Func::ToChar => {
            let fmt = text(&args[1]);
            let (local, offset, fields) = match &args[0] {
                Value::Timestamp(t) => (*t, None, None),
                Value::TimestampTz(t) => {
                    let off = env.zone.offset_at(*t);
                    (env.zone.to_local(*t), Some(off), None)
                }
                Value::Interval(iv) => (interval_as_ts(iv), None, Some(interval_fields(iv))),
                other => return Err(Error::Internal(format!("to_char({other:?})"))),
            };
            if fields.is_none() && !dt::is_finite_ts(local) {
                return Ok(Value::Null);
            }
            Value::Text(to_char(local, offset, env.zone, &fmt, fields))
        }
        Func::ToTimestampFmt | Func::ToDate => {
            let (s, fmt) = (text(&args[0]), text(&args[1]));
            let (tm, off) = parse_with_format(&s, &fmt)?;
            if func == Func::ToDate {
                let d = days_checked(tm.year, tm.month, tm.day, &s)?;
                Value::Date(dt::check_date(d)?)
            } else {
                let local = tm.to_us().ok_or_else(dt::ts_out_of_range)?;
                Value::TimestampTz(match off {
                    Some(o) => local - o as i64 * USECS_PER_SEC,
                    None => env.zone.to_utc(local),
                })
            }
        }
        Func::JustifyDays => Value::Interval(iv_arg(&args[0])?.justify_days()?),
        Func::JustifyHours => Value::Interval(iv_arg(&args[0])?.justify_hours()?),
        Func::JustifyInterval => Value::Interval(iv_arg(&args[0])?.justify_interval()?),
        Func::IsFinite => Value::Bool(match &args[0] {
            Value::Date(d) => dt::is_finite_date(*d),
            Value::Timestamp(t) | Value::TimestampTz(t) => dt::is_finite_ts(*t),
            _ => true,
        }),
        Func::AtTimeZone => {
            let z = zone_arg(&args[1])?;
            match &args[0] {
                Value::Timestamp(t) => Value::TimestampTz(z.to_utc(*t)),
                Value::TimestampTz(t) => Value::Timestamp(z.to_local(*t)),
                other => return Err(Error::Internal(format!("AT TIME ZONE on {other:?}"))),
            }
        }
        Func::DateBin => {
            let stride = iv_arg(&args[0])?;
            let (src, origin) = match (&args[1], &args[2]) {
                (Value::Timestamp(a), Value::Timestamp(b))
                | (Value::TimestampTz(a), Value::TimestampTz(b)) => (*a, *b),
                _ => return Err(Error::Internal("date_bin".into())),
            };
            if !dt::is_finite_ts(src) || !dt::is_finite_ts(origin) {
                return Err(Error::user("22008", "timestamps cannot be infinite"));
            }
            if stride.months != 0 {
                return Err(Error::user(
                    "0A000",
                    "timestamps cannot be binned into intervals containing months or years",
                ));
            }
            let stride_us = stride
                .micros
                .checked_add(stride.days as i64 * USECS_PER_DAY)
                .ok_or_else(dt::interval_out_of_range)?;
            if stride_us <= 0 {
                return Err(Error::user("22008", "stride must be greater than zero"));
            }
            let diff = src.checked_sub(origin).ok_or_else(dt::ts_out_of_range)?;
            let r = origin + (diff - diff.rem_euclid(stride_us));
            let r = dt::check_ts(r)?;
            if matches!(args[1], Value::Timestamp(_)) {
                Value::Timestamp(r)
            } else {
                Value::TimestampTz(r)
            }
        }
        Func::RoundTime => {
            let p = int(&args[1]).clamp(0, 6) as u32;
            let q = 10i64.pow(6 - p);
            let round = |t: i64| -> i64 {
                if !dt::is_finite_ts(t) {
                    return t;
                }
                let r = t.rem_euclid(q);
                if r * 2 >= q { t - r + q } else { t - r }
            };
            match &args[0] {
                Value::Timestamp(t) => Value::Timestamp(round(*t)),
                Value::TimestampTz(t) => Value::TimestampTz(round(*t)),
                Value::Time(t) => Value::Time(round(*t)),
                Value::Interval(iv) => {
                    let r = round(iv.micros.abs());
                    Value::Interval(Interval::new(
                        iv.months,
                        iv.days,
                        if iv.micros < 0 { -r } else { r },
                    ))
                }
                other => other.clone(),
            }
        }
        other => return Err(Error::Internal(format!("{other:?} is not a date/time function"))),
    })
}

/// `(s1, e1) OVERLAPS (s2, e2)` with PostgreSQL's NULL rules
/// (`overlaps_timestamp`): each pair is put in order, a missing end is
/// unknown.
fn overlaps(args: &[Value]) -> Value {
    use std::cmp::Ordering::*;
    let get = |i: usize| args.get(i).filter(|v| !v.is_null());
    let pair = |s: Option<&Value>, e: Option<&Value>| -> Option<(Value, Option<Value>)> {
        match (s, e) {
            (None, None) => None,
            (None, Some(e)) => Some((e.clone(), None)),
            (Some(s), None) => Some((s.clone(), None)),
            (Some(s), Some(e)) => Some(if s.total_cmp(e) == Greater {
                (e.clone(), Some(s.clone()))
            } else {
                (s.clone(), Some(e.clone()))
            }),
        }
    };
    let (Some((s1, e1)), Some((s2, e2))) = (pair(get(0), get(1)), pair(get(2), get(3))) else {
        return Value::Null;
    };
    let lt = |a: &Value, b: &Value| a.total_cmp(b) == Less;
    match s1.total_cmp(&s2) {
        Greater => match (&e1, &e2) {
            (_, None) => Value::Null,
            (_, Some(e2)) if lt(&s1, e2) => Value::Bool(true),
            (None, _) => Value::Null,
            _ => Value::Bool(false),
        },
        Less => match (&e1, &e2) {
            (None, _) => Value::Null,
            (Some(e1), _) if lt(&s2, e1) => Value::Bool(true),
            (_, None) => Value::Null,
            _ => Value::Bool(false),
        },
        Equal => {
            if e1.is_none() || e2.is_none() {
                Value::Null
            } else {
                Value::Bool(true)
            }
        }
    }
}

fn iv_arg(v: &Value) -> Result<Interval> {
    match v {
        Value::Interval(i) => Ok(*i),
        other => Err(Error::Internal(format!("interval expected, got {other:?}"))),
    }
}

fn days_checked(y: i64, m: u32, d: u32, text: &str) -> Result<i64> {
    if !(1..=12).contains(&m) || d < 1 || d > dt::days_in_month(y, m) {
        return Err(dt::field_overflow(text));
    }
    Ok(dt::days_from_civil(y, m, d))
}

fn make_date(y: i64, m: i64, d: i64) -> Result<i32> {
    let bad = || Error::user("22008", format!("date field value out of range: {y}-{m:02}-{d:02}"));
    if y == 0 {
        return Err(bad());
    }
    let year = if y < 0 { y + 1 } else { y };
    if !(1..=12).contains(&m) || d < 1 || d > dt::days_in_month(year, m as u32) as i64 {
        return Err(bad());
    }
    let days = dt::days_from_civil(year, m as u32, d as u32);
    if !dt::date_in_range(days) {
        return Err(Error::user("22008", format!("date out of range: {y}-{m:02}-{d:02}")));
    }
    Ok(days as i32)
}

fn make_time(h: i64, m: i64, s: f64) -> Result<i64> {
    let us = (s * 1e6).round();
    let t = h as f64 * USECS_PER_HOUR as f64 + m as f64 * USECS_PER_MINUTE as f64 + us;
    if !((0..=23).contains(&h) || h == 24 && m == 0 && s == 0.0)
        || !(0..=59).contains(&m)
        || !(0.0..60.0).contains(&s)
        || t > USECS_PER_DAY as f64
    {
        return Err(Error::user(
            "22008",
            format!("time field value out of range: {h}:{m:02}:{}", {
                let f = crate::types::value::format_float(s, false);
                if s.fract() == 0.0 && (0.0..10.0).contains(&s) { format!("0{f}") } else { f }
            }),
        ));
    }
    Ok(t as i64)
}

fn unit_for(field: &str) -> Option<Unit> {
    dt::unit_of(field).or(match field {
        "millennia" => Some(Unit::Millennium),
        _ => None,
    })
}

fn trunc_unit(field: &str, v: &Value) -> Result<Unit> {
    let type_name = v.data_type().map(|t| t.sql_name()).unwrap_or_default();
    match unit_for(field) {
        Some(u) => Ok(u),
        None => Err(Error::user(
            "22023",
            format!("unit \"{field}\" not recognized for type {type_name}"),
        )),
    }
}

/// date_trunc on a timestamptz: on the zone's wall clock; for units of a
/// day or more the offset is determined again for the truncated time.
fn trunc_tz(unit: Unit, t: i64, z: Zone) -> Result<i64> {
    if !dt::is_finite_ts(t) {
        return Ok(t);
    }
    let off = z.offset_at(t) as i64 * USECS_PER_SEC;
    let local = dt::trunc_local(unit, t + off)?;
    Ok(match unit {
        Unit::Microsecond | Unit::Millisecond | Unit::Second | Unit::Minute | Unit::Hour => {
            local - off
        }
        _ => z.to_utc(local),
    })
}

fn trunc_interval(unit: Unit, iv: Interval) -> Result<Interval> {
    let mut r = iv;
    let t = iv.micros;
    match unit {
        Unit::Microsecond => {}
        Unit::Millisecond => r.micros = t - t % 1000,
        Unit::Second => r.micros = t - t % USECS_PER_SEC,
        Unit::Minute => r.micros = t - t % USECS_PER_MINUTE,
        Unit::Hour => r.micros = t - t % USECS_PER_HOUR,
        Unit::Day => r.micros = 0,
        Unit::Month => (r.days, r.micros) = (0, 0),
        Unit::Quarter => (r.months, r.days, r.micros) = (iv.months / 3 * 3, 0, 0),
        Unit::Year => (r.months, r.days, r.micros) = (iv.months / 12 * 12, 0, 0),
        Unit::Decade => (r.months, r.days, r.micros) = (iv.months / 120 * 120, 0, 0),
        Unit::Century => (r.months, r.days, r.micros) = (iv.months / 1200 * 1200, 0, 0),
        Unit::Millennium => (r.months, r.days, r.micros) = (iv.months / 12000 * 12000, 0, 0),
        Unit::Week => {
            return Err(Error::user("0A000", "unit \"week\" not supported for type interval"));
        }
    }
    Ok(r)
}

fn dec(i: i64) -> Decimal {
    Decimal::from(i)
}

/// `µs` as seconds with 6 decimals.
/// The fields of `t` µs read as a clock (a time of day, or an interval's
/// time part): microseconds to hour, with the result's scale.
fn clock_field(t: i64, field: &str) -> Option<(Decimal, u32)> {
    Some(match field {
        "microseconds" => (dec(t % USECS_PER_MINUTE), 0),
        "milliseconds" => (Decimal::from_i128_with_scale((t % USECS_PER_MINUTE) as i128, 3), 3),
        "second" => (secs((t % USECS_PER_MINUTE) as i128), 6),
        "minute" => (dec(t / USECS_PER_MINUTE % 60), 0),
        "hour" => (dec(t / USECS_PER_HOUR), 0),
        _ => return None,
    })
}

fn secs(us: i128) -> Decimal {
    Decimal::from_i128_with_scale(us, 6)
}

/// What extract/date_part give for a field.
enum Part {
    /// The value and PostgreSQL's numeric scale.
    Finite(Decimal, u32),
    /// ±Infinity (the sign is the infinite input's): a field that grows
    /// with time of an infinite date or timestamp.
    Infinite,
    /// NULL: any other field of an infinite date or timestamp.
    Null,
}

/// The fields of an infinite date or timestamp that are ±Infinity (the
/// others are NULL), as in PostgreSQL.
fn grows_with_time(field: &str) -> bool {
    matches!(field, "epoch" | "year" | "decade" | "century" | "millennium" | "julian" | "isoyear")
}

/// extract/date_part of a field.
fn extract(field: &str, v: &Value) -> Result<Part> {
    let type_name = v.data_type().map(|t| t.sql_name()).unwrap_or_default();
    let unsupported =
        || Error::user("0A000", format!("unit \"{field}\" not supported for type {type_name}"));
    let unknown =
        || Error::user("22023", format!("unit \"{field}\" not recognized for type {type_name}"));
    let field = match field {
        "epoch" | "dow" | "isodow" | "doy" | "julian" | "isoyear" | "timezone"
        | "timezone_hour" | "timezone_minute" => field,
        f => match unit_for(f) {
            Some(Unit::Microsecond) => "microseconds",
            Some(Unit::Millisecond) => "milliseconds",
            Some(Unit::Second) => "second",
            Some(Unit::Minute) => "minute",
            Some(Unit::Hour) => "hour",
            Some(Unit::Day) => "day",
            Some(Unit::Week) => "week",
            Some(Unit::Month) => "month",
            Some(Unit::Quarter) => "quarter",
            Some(Unit::Year) => "year",
            Some(Unit::Decade) => "decade",
            Some(Unit::Century) => "century",
            Some(Unit::Millennium) => "millennium",
            None => return Err(unknown()),
        },
    };
    let finite = |r: (Decimal, u32)| Part::Finite(r.0, r.1);
    match v {
        Value::Interval(iv) => {
            let t = iv.micros;
            let years = iv.months as i64 / 12;
            if let Some(r) = clock_field(t, field) {
                return Ok(finite(r));
            }
            Ok(finite(match field {
                "day" => (dec(iv.days as i64), 0),
                "month" => (dec(iv.months as i64 % 12), 0),
                "quarter" => (dec(iv.months as i64 % 12 / 3 + 1), 0),
                "year" => (dec(years), 0),
                "decade" => (dec(years / 10), 0),
                "century" => (dec(years / 100), 0),
                "millennium" => (dec(years / 1000), 0),
                "epoch" => {
                    let days_secs = (iv.months as i128 / 12) * 31_557_600
                        + (iv.months as i128 % 12) * 2_592_000
                        + iv.days as i128 * 86_400;
                    let us = days_secs * 1_000_000 + t as i128;
                    (Decimal::from_i128_with_scale(us, 6), 6)
                }
                _ => return Err(unsupported()),
            }))
        }
        Value::Time(t) => {
            let t = *t;
            if let Some(r) = clock_field(t, field) {
                return Ok(finite(r));
            }
            Ok(finite(match field {
                "epoch" => (secs(t as i128), 6),
                _ => return Err(unsupported()),
            }))
        }
        Value::Date(d) => match field {
            "hour" | "minute" | "second" | "milliseconds" | "microseconds" | "timezone"
            | "timezone_hour" | "timezone_minute" => Err(unsupported()),
            _ if !dt::is_finite_date(*d) => {
                Ok(if grows_with_time(field) { Part::Infinite } else { Part::Null })
            }
            "epoch" => Ok(finite((dec((*d as i64 + dt::UNIX_EPOCH_OFFSET_DAYS) * 86_400), 0))),
            "julian" => Ok(finite((dec(*d as i64 + 2_451_545), 0))),
            _ => day_field(field, *d as i64, 0, None).map(|(d, _)| Part::Finite(d, 0)),
        },
        // Every known field, also one a finite timestamp does not have
        // (PostgreSQL gives NULL for timezone of timestamp 'infinity').
        Value::Timestamp(t) | Value::TimestampTz(t) if !dt::is_finite_ts(*t) => {
            Ok(if grows_with_time(field) { Part::Infinite } else { Part::Null })
        }
        Value::Timestamp(t) => ts_field(field, *t, None).map(finite),
        Value::TimestampTz(t) => {
            let z = dt::zone();
            let off = z.offset_at(*t);
            match field {
                "epoch" => ts_field(field, *t, None),
                _ => ts_field(field, z.to_local(*t), Some(off)),
            }
            .map(finite)
        }
        _ => Err(unsupported()),
    }
}

/// A field of a (local) timestamp.
fn ts_field(field: &str, t: i64, offset: Option<i32>) -> Result<(Decimal, u32)> {
    if !dt::is_finite_ts(t) {
        return Err(Error::user("0A000", "infinite timestamps have no fields"));
    }
    day_field(field, t.div_euclid(USECS_PER_DAY), t.rem_euclid(USECS_PER_DAY), offset)
}

/// A field of a local time given as a day number and µs into the day.
fn day_field(field: &str, days: i64, tod: i64, offset: Option<i32>) -> Result<(Decimal, u32)> {
    let (year, month, day) = dt::civil_from_days(days);
    let tm = Tm {
        year,
        month,
        day,
        hour: (tod / USECS_PER_HOUR) as u32,
        minute: (tod / USECS_PER_MINUTE % 60) as u32,
        second: (tod / USECS_PER_SEC % 60) as u32,
        micros: (tod % USECS_PER_SEC) as u32,
    };
    let t = days as i128 * USECS_PER_DAY as i128 + tod as i128;
    let year_ad = |y: i64| if y <= 0 { y - 1 } else { y };
    let in_min = tm.second as i64 * USECS_PER_SEC + tm.micros as i64;
    Ok(match field {
        "microseconds" => (dec(in_min), 0),
        "milliseconds" => (Decimal::from_i128_with_scale(in_min as i128, 3), 3),
        "second" => (secs(in_min as i128), 6),
        "minute" => (dec(tm.minute as i64), 0),
        "hour" => (dec(tm.hour as i64), 0),
        "day" => (dec(tm.day as i64), 0),
        "month" => (dec(tm.month as i64), 0),
        "quarter" => (dec((tm.month as i64 - 1) / 3 + 1), 0),
        "year" => (dec(year_ad(tm.year)), 0),
        "decade" => (dec(tm.year.div_euclid(10)), 0),
        "century" => {
            (dec(if tm.year > 0 { (tm.year + 99) / 100 } else { -((99 - (tm.year - 1)) / 100) }), 0)
        }
        "millennium" => (
            dec(if tm.year > 0 { (tm.year + 999) / 1000 } else { -((999 - (tm.year - 1)) / 1000) }),
            0,
        ),
        "dow" => (dec(dt::weekday(days) as i64), 0),
        "isodow" => {
            let w = dt::weekday(days) as i64;
            (dec(if w == 0 { 7 } else { w }), 0)
        }
        "doy" => (dec(days - dt::days_from_civil(tm.year, 1, 1) + 1), 0),
        "week" => (dec(iso_week(days).1), 0),
        "isoyear" => (dec(year_ad(iso_week(days).0)), 0),
        "epoch" => (secs(t + (dt::UNIX_EPOCH_OFFSET_DAYS * USECS_PER_DAY) as i128), 6),
        "julian" => {
            let us = (days + 2_451_545) as i128 * USECS_PER_DAY as i128 + tod as i128;
            let d = Decimal::from_i128_with_scale(us, 0) / Decimal::from(USECS_PER_DAY);
            (d, d.scale())
        }
        "timezone" | "timezone_hour" | "timezone_minute" => {
            let Some(off) = offset else {
                return Err(Error::user(
                    "0A000",
                    format!("unit \"{field}\" not supported for type timestamp without time zone"),
                ));
            };
            let off = off as i64;
            match field {
                "timezone" => (dec(off), 0),
                "timezone_hour" => (dec(off / 3600), 0),
                _ => (dec(off / 60 % 60), 0),
            }
        }
        _ => return Err(Error::Internal(format!("field {field}"))),
    })
}

/// (ISO year, ISO week) of a day.
fn iso_week(days: i64) -> (i64, i64) {
    let isodow = |d: i64| (dt::weekday(d) as i64 + 6) % 7; // Monday = 0
    let thursday = days - isodow(days) + 3;
    let (y, _, _) = dt::civil_from_days(thursday);
    let week = (thursday - dt::days_from_civil(y, 1, 1)) / 7 + 1;
    (y, week)
}

/// An interval's fields as to_char prints them: years, months, days and
/// hours as they are (HH24 of '25 hours' is 25), not as a date.
fn interval_fields(iv: &Interval) -> Tm {
    let t = iv.micros.unsigned_abs();
    Tm {
        year: iv.months as i64 / 12,
        month: (iv.months % 12).unsigned_abs(),
        day: iv.days.unsigned_abs(),
        hour: (t / USECS_PER_HOUR as u64).min(u32::MAX as u64) as u32,
        minute: (t / USECS_PER_MINUTE as u64 % 60) as u32,
        second: (t / USECS_PER_SEC as u64 % 60) as u32,
        micros: (t % USECS_PER_SEC as u64) as u32,
    }
}

/// An interval laid out as a timestamp for to_char's day-based fields.
fn interval_as_ts(iv: &Interval) -> i64 {
    // to_char(interval) prints fields, not a date; approximate with the
    // time of day and the day count.
    (iv.days as i64)
        .saturating_mul(USECS_PER_DAY)
        .saturating_add(iv.micros.rem_euclid(USECS_PER_DAY))
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] =
    ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

fn cased(s: &str, upper: bool, lower: bool) -> String {
    if upper {
        s.to_uppercase()
    } else if lower {
        s.to_lowercase()
    } else {
        s.to_string()
    }
}

/// to_char's template patterns (the common ones; FM fill mode and TH
/// suffixes included).
fn to_char(local: i64, offset: Option<i32>, zone: Zone, fmt: &str, fields: Option<Tm>) -> String {
    let is_interval = fields.is_some();
    let tm = fields.unwrap_or_else(|| Tm::from_us(local));
    let days = local.div_euclid(USECS_PER_DAY);
    let year = if is_interval {
        tm.year.abs()
    } else if tm.year <= 0 {
        1 - tm.year
    } else {
        tm.year
    };
    let mut out = String::new();
    let f = fmt.as_bytes();
    let mut i = 0;
    let starts = |i: usize, p: &str| f.len() >= i + p.len() && &f[i..i + p.len()] == p.as_bytes();
    let starts_ci = |i: usize, p: &str| {
        f.len() >= i + p.len() && f[i..i + p.len()].eq_ignore_ascii_case(p.as_bytes())
    };
    while i < f.len() {
        if f[i] == b'"' {
            i += 1;
            while i < f.len() && f[i] != b'"' {
                if f[i] == b'\\' && i + 1 < f.len() {
                    i += 1;
                }
                let c = fmt[i..].chars().next().unwrap_or(' ');
                out.push(c);
                i += c.len_utf8();
            }
            i += 1;
            continue;
        }
        let mut fm = false;
        if starts_ci(i, "FM") {
            fm = true;
            i += 2;
        }
        let num = |out: &mut String, v: i64, width: usize| {
            if fm {
                out.push_str(&v.to_string());
            } else {
                out.push_str(&format!("{v:0width$}"));
            }
        };
        let word = |out: &mut String, s: String, width: usize| {
            if fm {
                out.push_str(&s);
            } else {
                out.push_str(&format!("{s:width$}"));
            }
        };
        let hour12 = if tm.hour.is_multiple_of(12) { 12 } else { tm.hour % 12 } as i64;
        let pm = tm.hour >= 12;
        let (len, done) = if starts_ci(i, "HH24") {
            num(&mut out, tm.hour as i64, 2);
            (4, true)
        } else if starts_ci(i, "HH12") {
            num(&mut out, hour12, 2);
            (4, true)
        } else if starts_ci(i, "HH") {
            num(&mut out, hour12, 2);
            (2, true)
        } else if starts_ci(i, "MI") {
            num(&mut out, tm.minute as i64, 2);
            (2, true)
        } else if starts_ci(i, "SSSS") {
            num(&mut out, local.rem_euclid(USECS_PER_DAY) / USECS_PER_SEC, 1);
            (4, true)
        } else if starts_ci(i, "SS") {
            num(&mut out, tm.second as i64, 2);
            (2, true)
        } else if starts_ci(i, "MS") {
            num(&mut out, tm.micros as i64 / 1000, 3);
            (2, true)
        } else if starts_ci(i, "US") {
            num(&mut out, tm.micros as i64, 6);
            (2, true)
        } else if starts(i, "AM") || starts(i, "PM") {
            out.push_str(if pm { "PM" } else { "AM" });
            (2, true)
        } else if starts(i, "am") || starts(i, "pm") {
            out.push_str(if pm { "pm" } else { "am" });
            (2, true)
        } else if starts(i, "A.M.") || starts(i, "P.M.") {
            out.push_str(if pm { "P.M." } else { "A.M." });
            (4, true)
        } else if starts(i, "a.m.") || starts(i, "p.m.") {
            out.push_str(if pm { "p.m." } else { "a.m." });
            (4, true)
        } else if starts_ci(i, "YYYY") {
            num(&mut out, year, 4);
            (4, true)
        } else if starts_ci(i, "Y,YYY") {
            out.push_str(&format!("{},{:03}", year / 1000, year % 1000));
            (5, true)
        } else if starts_ci(i, "YYY") {
            num(&mut out, year % 1000, 3);
            (3, true)
        } else if starts_ci(i, "YY") {
            num(&mut out, year % 100, 2);
            (2, true)
        } else if starts_ci(i, "IYYY") {
            num(&mut out, iso_week(days).0, 4);
            (4, true)
        } else if starts_ci(i, "IW") {
            num(&mut out, iso_week(days).1, 2);
            (2, true)
        } else if starts_ci(i, "Y") {
            num(&mut out, year % 10, 1);
            (1, true)
        } else if starts(i, "BC") || starts(i, "AD") {
            out.push_str(if tm.year <= 0 { "BC" } else { "AD" });
            (2, true)
        } else if starts(i, "bc") || starts(i, "ad") {
            out.push_str(if tm.year <= 0 { "bc" } else { "ad" });
            (2, true)
        } else if starts_ci(i, "MONTH") {
            let name = MONTHS.get((tm.month as usize).wrapping_sub(1)).copied().unwrap_or("");
            let p = &fmt[i..i + 5];
            word(&mut out, cased(name, p == "MONTH", p == "month"), 9);
            (5, true)
        } else if starts_ci(i, "MON") {
            let name = MONTHS.get((tm.month as usize).wrapping_sub(1)).map_or("", |m| &m[..3]);
            let p = &fmt[i..i + 3];
            out.push_str(&cased(name, p == "MON", p == "mon"));
            (3, true)
        } else if starts_ci(i, "MM") {
            num(&mut out, tm.month as i64, 2);
            (2, true)
        } else if starts_ci(i, "DAY") {
            let name = DAYS[dt::weekday(days) as usize];
            let p = &fmt[i..i + 3];
            word(&mut out, cased(name, p == "DAY", p == "day"), 9);
            (3, true)
        } else if starts_ci(i, "DY") {
            let name = &DAYS[dt::weekday(days) as usize][..3];
            let p = &fmt[i..i + 2];
            out.push_str(&cased(name, p == "DY", p == "dy"));
            (2, true)
        } else if starts_ci(i, "DDD") {
            num(&mut out, days - dt::days_from_civil(tm.year, 1, 1) + 1, 3);
            (3, true)
        } else if starts_ci(i, "DD") {
            num(&mut out, tm.day as i64, 2);
            (2, true)
        } else if starts_ci(i, "D") {
            num(&mut out, dt::weekday(days) as i64 + 1, 1);
            (1, true)
        } else if starts_ci(i, "ID") {
            let w = dt::weekday(days) as i64;
            num(&mut out, if w == 0 { 7 } else { w }, 1);
            (2, true)
        } else if starts_ci(i, "WW") {
            num(&mut out, (days - dt::days_from_civil(tm.year, 1, 1)) / 7 + 1, 2);
            (2, true)
        } else if starts_ci(i, "Q") {
            num(&mut out, (tm.month as i64 - 1) / 3 + 1, 1);
            (1, true)
        } else if starts_ci(i, "CC") {
            let c = if tm.year > 0 { (tm.year + 99) / 100 } else { -((99 - (tm.year - 1)) / 100) };
            num(&mut out, c, 2);
            (2, true)
        } else if starts_ci(i, "J") {
            num(&mut out, days + 2_451_545, 1);
            (1, true)
        } else if starts_ci(i, "TZH") {
            if let Some(o) = offset {
                let sign = if o < 0 { '-' } else { '+' };
                out.push_str(&format!("{sign}{:02}", o.abs() / 3600));
            }
            (3, true)
        } else if starts_ci(i, "TZM") {
            if let Some(o) = offset {
                out.push_str(&format!("{:02}", o.abs() / 60 % 60));
            }
            (3, true)
        } else if starts_ci(i, "TZ") {
            if let Some(o) = offset {
                let abbr = zone_abbrev(zone, local - o as i64 * USECS_PER_SEC, o);
                let p = &fmt[i..i + 2];
                out.push_str(&if p == "tz" { abbr.to_lowercase() } else { abbr });
            }
            (2, true)
        } else if starts_ci(i, "OF") {
            if let Some(o) = offset.or(Some(0)) {
                let sign = if o < 0 { '-' } else { '+' };
                out.push_str(&format!("{sign}{:02}", o.abs() / 3600));
                if o.abs() % 3600 != 0 {
                    out.push_str(&format!(":{:02}", o.abs() / 60 % 60));
                }
            }
            (2, true)
        } else {
            (0, false)
        };
        if done {
            i += len;
            // TH / th ordinal suffix.
            if starts_ci(i, "TH") {
                let n: i64 = out
                    .chars()
                    .rev()
                    .take_while(|c| c.is_ascii_digit())
                    .collect::<String>()
                    .chars()
                    .rev()
                    .collect::<String>()
                    .parse()
                    .unwrap_or(0);
                let suf = match (n % 100, n % 10) {
                    (11..=13, _) => "th",
                    (_, 1) => "st",
                    (_, 2) => "nd",
                    (_, 3) => "rd",
                    _ => "th",
                };
                let suf = if starts(i, "TH") { suf.to_uppercase() } else { suf.to_string() };
                out.push_str(&suf);
                i += 2;
            }
        } else {
            let c = fmt[i..].chars().next().unwrap_or(' ');
            if c == '\\' && i + 1 < f.len() {
                let n = fmt[i + 1..].chars().next().unwrap_or(' ');
                out.push(n);
                i += 1 + n.len_utf8();
            } else {
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    out
}

/// The zone abbreviation to_char's TZ prints (the offset where the zone
/// has no abbreviation, as PostgreSQL does).
fn zone_abbrev(zone: Zone, utc: i64, offset: i32) -> String {
    let numeric = |o: i32| {
        let sign = if o < 0 { '-' } else { '+' };
        let mut s = format!("{sign}{:02}", o.abs() / 3600);
        if o.abs() % 3600 != 0 {
            s.push_str(&format!(":{:02}", o.abs() / 60 % 60));
        }
        s
    };
    match zone {
        Zone::Fixed(0) => "UTC".into(),
        Zone::Fixed(o) => numeric(o),
        Zone::Named(tz) => {
            use chrono::TimeZone;
            use chrono_tz::OffsetName;
            let at = dt::chrono_instant(utc);
            match tz.offset_from_utc_datetime(&at).abbreviation() {
                Some(a) => a.to_string(),
                // tzdata's numeric abbreviations: "+03", "+1030".
                None => numeric(offset).replace(':', ""),
            }
        }
    }
}

/// to_timestamp(text, format) / to_date: the common template patterns;
/// separators in the input are skipped loosely, as PostgreSQL does.
fn parse_with_format(s: &str, fmt: &str) -> Result<(Tm, Option<i32>)> {
    let bad = |what: &str| Error::user("22007", what.to_string());
    // Without a year PostgreSQL gives year 1 BC (astronomical 0).
    let mut tm = Tm { year: 0, month: 1, day: 1, ..Tm::default() };
    let mut doy: Option<i64> = None;
    let mut pm: Option<bool> = None;
    let mut hour12 = false;
    let mut bc = false;
    let mut offset: Option<i32> = None;
    let sb = s.as_bytes();
    let f = fmt.as_bytes();
    let (mut i, mut j) = (0usize, 0usize);
    let starts_ci = |i: usize, p: &str| {
        f.len() >= i + p.len() && f[i..i + p.len()].eq_ignore_ascii_case(p.as_bytes())
    };
    // Reads up to `max` digits (a sign only where `signed`).
    let read_signed = |j: &mut usize, max: usize, signed: bool| -> Result<i64> {
        while *j < sb.len() && sb[*j] == b' ' {
            *j += 1;
        }
        let start = *j;
        if signed && *j < sb.len() && (sb[*j] == b'-' || sb[*j] == b'+') {
            *j += 1;
        }
        while *j < sb.len() && sb[*j].is_ascii_digit() && *j - start < max {
            *j += 1;
        }
        s.get(start..*j).and_then(|t| t.parse::<i64>().ok()).ok_or_else(|| {
            Error::user(
                "22007",
                format!(
                    "invalid value \"{}\" for the format",
                    s.get(start..).unwrap_or("").chars().take(max).collect::<String>()
                ),
            )
        })
    };
    let read_num = |j: &mut usize, max: usize| read_signed(j, max, false);
    while i < f.len() {
        if starts_ci(i, "FM") {
            i += 2;
            continue;
        }
        if f[i] == b'"' {
            // Quoted text: skip as many input characters.
            i += 1;
            while i < f.len() && f[i] != b'"' {
                let c = fmt[i..].chars().next().map_or(1, char::len_utf8);
                i += c;
                if j < sb.len() {
                    j += s[j..].chars().next().map_or(1, char::len_utf8);
                }
            }
            i += 1;
            continue;
        }
        if starts_ci(i, "DDD") {
            doy = Some(read_num(&mut j, 3)?);
            i += 3;
            continue;
        }
        let pats: [(&str, usize); 16] = [
            ("YYYY", 4),
            ("HH24", 4),
            ("HH12", 4),
            ("MONTH", 5),
            ("MON", 3),
            ("YYY", 3),
            ("HH", 2),
            ("MI", 2),
            ("SS", 2),
            ("MS", 2),
            ("US", 2),
            ("MM", 2),
            ("DD", 2),
            ("YY", 2),
            ("AM", 2),
            ("PM", 2),
        ];
        let found = pats.iter().find(|(p, _)| starts_ci(i, p)).copied();
        match found {
            Some((p, len)) => {
                match p {
                    "YYYY" => {
                        // Greedy unless another field follows without a separator.
                        let next_field = f.get(i + 4).is_some_and(|c| c.is_ascii_alphanumeric());
                        tm.year = read_signed(&mut j, if next_field { 4 } else { 9 }, true)?;
                    }
                    "YYY" => tm.year = 2000 + read_num(&mut j, 3)? % 1000,
                    "YY" => {
                        let y = read_num(&mut j, 2)?;
                        tm.year = if y < 70 { 2000 + y } else { 1900 + y };
                    }
                    "HH24" => tm.hour = read_num(&mut j, 2)? as u32,
                    "HH12" | "HH" => {
                        tm.hour = read_num(&mut j, 2)? as u32;
                        hour12 = true;
                    }
                    "MI" => tm.minute = read_num(&mut j, 2)? as u32,
                    "SS" => tm.second = read_num(&mut j, 2)? as u32,
                    "MS" => tm.micros = read_num(&mut j, 3)? as u32 * 1000,
                    "US" => tm.micros = read_num(&mut j, 6)? as u32,
                    "MM" => tm.month = read_num(&mut j, 2)? as u32,
                    "DD" => tm.day = read_num(&mut j, 2)? as u32,
                    "MONTH" | "MON" => {
                        while j < sb.len() && sb[j] == b' ' {
                            j += 1;
                        }
                        let rest = s.get(j..).unwrap_or("").to_ascii_lowercase();
                        let m = MONTHS.iter().position(|m| {
                            let m = m.to_ascii_lowercase();
                            if p == "MONTH" {
                                rest.starts_with(&m)
                            } else {
                                rest.starts_with(&m[..3])
                            }
                        });
                        let Some(m) = m else {
                            return Err(bad(&format!(
                                "invalid value \"{}\" for \"{}\"",
                                s.get(j..).unwrap_or("").chars().take(3).collect::<String>(),
                                &fmt[i..i + len]
                            )));
                        };
                        tm.month = m as u32 + 1;
                        j += if p == "MONTH" { MONTHS[m].len() } else { 3 };
                    }
                    _ => {
                        // AM / PM
                        let rest = s.get(j..j + 2).unwrap_or("").to_ascii_lowercase();
                        pm = Some(match rest.as_str() {
                            "am" => false,
                            "pm" => true,
                            _ => return Err(bad("invalid value for AM/PM")),
                        });
                        j += 2;
                    }
                }
                i += len;
            }
            None => {
                if starts_ci(i, "BC") || starts_ci(i, "AD") {
                    let rest = s.get(j..j + 2).unwrap_or("").to_ascii_lowercase();
                    bc = rest == "bc";
                    if rest == "bc" || rest == "ad" {
                        j += 2;
                    }
                    i += 2;
                    continue;
                }
                if starts_ci(i, "TZH") {
                    let h = read_signed(&mut j, 2, true)?;
                    offset = Some(h as i32 * 3600);
                    i += 3;
                    continue;
                }
                if starts_ci(i, "TZM") {
                    let m = read_num(&mut j, 2)? as i32;
                    offset = Some(
                        offset.map_or(m * 60, |o| if o < 0 { o - m * 60 } else { o + m * 60 }),
                    );
                    i += 3;
                    continue;
                }
                // A separator: skip one character of the input if it is not a digit or letter.
                if j < sb.len() && !sb[j].is_ascii_alphanumeric() {
                    j += s[j..].chars().next().map_or(1, char::len_utf8);
                }
                i += 1;
            }
        }
    }
    if let Some(pm) = pm {
        if tm.hour > 12 || tm.hour == 0 {
            return Err(Error::user(
                "22007",
                format!("hour \"{}\" is invalid for the 12-hour clock", tm.hour),
            ));
        }
        tm.hour %= 12;
        if pm {
            tm.hour += 12;
        }
    } else if hour12 && (tm.hour > 12 || tm.hour == 0) {
        return Err(Error::user(
            "22007",
            format!("hour \"{}\" is invalid for the 12-hour clock", tm.hour),
        ));
    }
    if bc {
        tm.year = 1 - tm.year;
    }
    if let Some(d) = doy {
        if !(1..=366).contains(&d) {
            return Err(dt::field_overflow(s));
        }
        let days = dt::days_from_civil(tm.year, 1, 1) + d - 1;
        (tm.year, tm.month, tm.day) = dt::civil_from_days(days);
    }
    if tm.month < 1 || tm.month > 12 || tm.day < 1 || tm.day > dt::days_in_month(tm.year, tm.month)
    {
        return Err(dt::field_overflow(s));
    }
    if tm.hour > 23 || tm.minute > 59 || tm.second > 59 {
        return Err(dt::field_overflow(s));
    }
    Ok((tm, offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Odd templates and inputs are errors or text, never panics.
    #[test]
    fn formats_never_panic() {
        let fmts = [
            "YYYY-MM-DD HH24:MI:SS.US TZ",
            "FMDay, FMMonth DDth YYYY BC \"quoted é\" \\x",
            "HH12:MI AM Y,YYY IYYY-IW J Q CC TZH:TZM OF",
            "é\"",
            "",
        ];
        let inputs = ["2024-03-05 14:07:09", "é 05 Mar", "-5 -5", "13:00 PM", "bc", ""];
        for f in fmts {
            for t in [0, -1, i64::MAX - 1, dt::TS_MIN, dt::TS_END - 1] {
                let _ = call(Func::ToChar, vec![Value::Timestamp(t), Value::Text(f.into())]);
                let _ = call(Func::ToChar, vec![Value::TimestampTz(t), Value::Text(f.into())]);
                let iv = Interval::new(t as i32, (t >> 32) as i32, t);
                let _ = call(Func::ToChar, vec![Value::Interval(iv), Value::Text(f.into())]);
            }
            for s in inputs {
                let _ =
                    call(Func::ToTimestampFmt, vec![Value::Text(s.into()), Value::Text(f.into())]);
                let _ = call(Func::ToDate, vec![Value::Text(s.into()), Value::Text(f.into())]);
            }
        }
        for f in ["epoch", "julian", "second", "century", "timezone"] {
            for v in [
                Value::Timestamp(dt::TS_END - 1),
                Value::TimestampTz(dt::TS_MIN),
                Value::Date(dt::DATE_END as i32 - 1),
                Value::Interval(Interval::new(i32::MIN, i32::MIN, i64::MIN)),
                Value::Time(dt::USECS_PER_DAY),
            ] {
                let _ = call(Func::Extract, vec![Value::Text(f.into()), v.clone()]);
                let _ = call(Func::DateTrunc, vec![Value::Text(f.into()), v]);
            }
        }
        let big = Value::Interval(Interval::new(i32::MAX, i32::MAX, i64::MAX));
        assert!(arith(BinOp::Add, &Value::Timestamp(0), &big).is_some_and(|r| r.is_err()));
        assert!(arith(BinOp::Mul, &big, &Value::Float8(1e300)).is_some_and(|r| r.is_err()));
        assert!(
            arith(BinOp::Add, &Value::Date(dt::DATE_END as i32 - 1), &Value::Int8(i64::MAX))
                .is_some_and(|r| r.is_err())
        );
        let d = Value::Date(dt::DATE_END as i32 - 1);
        assert!(crate::types::cast::cast(d, &qube_common::types::DataType::Timestamp).is_err());
    }
}
