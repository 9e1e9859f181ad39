//! Date/time values: PostgreSQL's representations, calendar, time zones,
//! text input and output (DateStyle ISO, MDY; IntervalStyle postgres).
//!
//! # Representation (as PostgreSQL's)
//!
//! ```text
//! date         i32 days since 2000-01-01; i32::MIN/MAX are -infinity/infinity
//! time         i64 µs since midnight, 0 ..= 24:00:00
//! timestamp    i64 µs since 2000-01-01 00:00 (no zone);  i64::MIN/MAX are ∓infinity
//! timestamptz  i64 µs since 2000-01-01 00:00 UTC;         printed in the session zone
//! interval     months i32, days i32, µs i64 (kept apart: a month is not 30 days
//!              and a day is not 24 hours across DST, but they compare and hash as
//!              if they were, as in PostgreSQL)
//! ```
//!
//! The calendar is the proleptic Gregorian one with astronomical years
//! (1 BC is year 0), valid from 4714-11-24 BC (Julian day 0) to 5874897 AD
//! for dates and 294276 AD for timestamps; beyond is 22008.
//!
//! # The session's environment
//!
//! Time zone and transaction time are per session but needed deep inside
//! casts and operators (`'2024-01-01'::timestamptz` reads its text in the
//! session zone). The session installs them in a thread-local `Env` before
//! each statement (`set_env`); statements execute synchronously on the
//! calling thread, so everything that runs for the statement sees its
//! session's values, with no per-row cost beyond reading a `Cell`.
//! Text output of `timestamptz` (`Display`) uses the zone of the last
//! statement run on the thread; a server formatting results elsewhere
//! should use `format_timestamptz` with `Session::time_zone`.
//!
//! IANA zone names come from `chrono-tz` (compiled-in tz database);
//! `chrono` is used only for its zone rules.

use std::cell::Cell;
use std::cmp::Ordering;
use std::fmt::Write as _;

use qube_common::{Error, Result};

pub const USECS_PER_SEC: i64 = 1_000_000;
pub const USECS_PER_MINUTE: i64 = 60 * USECS_PER_SEC;
pub const USECS_PER_HOUR: i64 = 60 * USECS_PER_MINUTE;
pub const USECS_PER_DAY: i64 = 24 * USECS_PER_HOUR;
/// Days from 1970-01-01 to 2000-01-01.
pub const UNIX_EPOCH_OFFSET_DAYS: i64 = 10_957;

pub const DATE_NEG_INF: i32 = i32::MIN;
pub const DATE_POS_INF: i32 = i32::MAX;
pub const TS_NEG_INF: i64 = i64::MIN;
pub const TS_POS_INF: i64 = i64::MAX;

/// First valid date (4714-11-24 BC, Julian day 0), in days since 2000-01-01.
pub const DATE_MIN: i64 = days_from_civil(-4713, 11, 24);
/// First invalid date after the range (5874898-01-01).
pub const DATE_END: i64 = days_from_civil(5_874_898, 1, 1);
/// First invalid timestamp after the range (294277-01-01 00:00).
pub const TS_END: i64 = days_from_civil(294_277, 1, 1) * USECS_PER_DAY;
pub const TS_MIN: i64 = DATE_MIN * USECS_PER_DAY;

// ---------------------------------------------------------------- errors

pub fn bad_format(type_name: &str, text: &str) -> Error {
    Error::user("22007", format!("invalid input syntax for type {type_name}: \"{text}\""))
}

pub fn field_overflow(text: &str) -> Error {
    Error::user("22008", format!("date/time field value out of range: \"{text}\""))
}

pub fn date_out_of_range() -> Error {
    Error::user("22008", "date out of range")
}

pub fn ts_out_of_range() -> Error {
    Error::user("22008", "timestamp out of range")
}

pub fn interval_out_of_range() -> Error {
    Error::user("22008", "interval out of range")
}

// -------------------------------------------------------------- calendar

pub fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

pub fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 31,
    }
}

/// Days since 2000-01-01 of a proleptic Gregorian date (astronomical year).
pub const fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468 - UNIX_EPOCH_OFFSET_DAYS
}

/// (year, month, day) of a day number since 2000-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + UNIX_EPOCH_OFFSET_DAYS + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Day of the week, 0 = Sunday.
pub fn weekday(days: i64) -> u32 {
    // 2000-01-01 was a Saturday.
    (days + 6).rem_euclid(7) as u32
}

/// Broken-down timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tm {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub micros: u32,
}

impl Tm {
    pub fn from_us(us: i64) -> Tm {
        let days = us.div_euclid(USECS_PER_DAY);
        let t = us.rem_euclid(USECS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        Tm {
            year,
            month,
            day,
            hour: (t / USECS_PER_HOUR) as u32,
            minute: (t / USECS_PER_MINUTE % 60) as u32,
            second: (t / USECS_PER_SEC % 60) as u32,
            micros: (t % USECS_PER_SEC) as u32,
        }
    }

    /// µs since 2000-01-01; `None` when out of range.
    pub fn to_us(&self) -> Option<i64> {
        let days = days_from_civil(self.year, self.month, self.day);
        let us = (days as i128) * USECS_PER_DAY as i128
            + self.hour as i128 * USECS_PER_HOUR as i128
            + self.minute as i128 * USECS_PER_MINUTE as i128
            + self.second as i128 * USECS_PER_SEC as i128
            + self.micros as i128;
        let us = i64::try_from(us).ok()?;
        ts_in_range(us).then_some(us)
    }
}

pub fn ts_in_range(us: i64) -> bool {
    (TS_MIN..TS_END).contains(&us)
}

pub fn date_in_range(d: i64) -> bool {
    (DATE_MIN..DATE_END).contains(&d)
}

pub fn check_ts(us: i64) -> Result<i64> {
    if ts_in_range(us) { Ok(us) } else { Err(ts_out_of_range()) }
}

pub fn check_date(d: i64) -> Result<i32> {
    if date_in_range(d) { Ok(d as i32) } else { Err(date_out_of_range()) }
}

pub fn is_finite_ts(us: i64) -> bool {
    us != TS_NEG_INF && us != TS_POS_INF
}

pub fn is_finite_date(d: i32) -> bool {
    d != DATE_NEG_INF && d != DATE_POS_INF
}

// -------------------------------------------------------------- interval

/// An interval: months, days and microseconds, kept apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Interval {
    pub months: i32,
    pub days: i32,
    pub micros: i64,
}

impl Interval {
    pub const ZERO: Interval = Interval { months: 0, days: 0, micros: 0 };

    pub fn new(months: i32, days: i32, micros: i64) -> Interval {
        Interval { months, days, micros }
    }

    /// The length with 30-day months and 24-hour days: what comparison,
    /// hashing and index keys use (PostgreSQL's `interval_cmp_value`).
    pub fn span(&self) -> i128 {
        (self.months as i128 * 30 + self.days as i128) * USECS_PER_DAY as i128 + self.micros as i128
    }

    pub fn cmp_span(&self, other: &Interval) -> Ordering {
        self.span().cmp(&other.span())
    }

    pub fn checked_add(self, o: Interval) -> Result<Interval> {
        Ok(Interval {
            months: self.months.checked_add(o.months).ok_or_else(interval_out_of_range)?,
            days: self.days.checked_add(o.days).ok_or_else(interval_out_of_range)?,
            micros: self.micros.checked_add(o.micros).ok_or_else(interval_out_of_range)?,
        })
    }

    pub fn checked_neg(self) -> Result<Interval> {
        Ok(Interval {
            months: self.months.checked_neg().ok_or_else(interval_out_of_range)?,
            days: self.days.checked_neg().ok_or_else(interval_out_of_range)?,
            micros: self.micros.checked_neg().ok_or_else(interval_out_of_range)?,
        })
    }

    pub fn checked_sub(self, o: Interval) -> Result<Interval> {
        self.checked_add(o.checked_neg()?)
    }

    /// `interval * factor`, PostgreSQL's `interval_mul`: fractional months
    /// spill into days (30 a month), fractional days into time.
    pub fn mul_f64(self, factor: f64) -> Result<Interval> {
        self.scale(|x| x * factor)
    }

    /// `interval / factor`, PostgreSQL's `interval_div` (dividing each
    /// field, not multiplying by the reciprocal, as PostgreSQL does).
    pub fn div_f64(self, factor: f64) -> Result<Interval> {
        if factor == 0.0 {
            return Err(Error::user("22012", "division by zero"));
        }
        self.scale(|x| x / factor)
    }

    /// Each field scaled by `f`, the fractions cascading down as
    /// PostgreSQL's interval_mul and interval_div do.
    fn scale(self, f: impl Fn(f64) -> f64) -> Result<Interval> {
        let m = f(self.months as f64);
        let d = f(self.days as f64);
        if !m.is_finite()
            || !d.is_finite()
            || m.abs() > i32::MAX as f64
            || d.abs() > i32::MAX as f64
        {
            return Err(interval_out_of_range());
        }
        let months = m as i32;
        let mut days = d as i32;
        let month_rem_days = tsround((m - months as f64) * 30.0);
        let mut sec_rem =
            tsround((d - days as f64 + month_rem_days - month_rem_days.trunc()) * 86_400.0);
        if sec_rem.abs() >= 86_400.0 {
            let extra = (sec_rem / 86_400.0).trunc();
            days = days.checked_add(extra as i32).ok_or_else(interval_out_of_range)?;
            sec_rem -= extra * 86_400.0;
        }
        days = days.checked_add(month_rem_days as i32).ok_or_else(interval_out_of_range)?;
        let t = (f(self.micros as f64) + sec_rem * 1e6).round_ties_even();
        if !t.is_finite() || t.abs() >= 9.2e18 {
            return Err(interval_out_of_range());
        }
        Ok(Interval { months, days, micros: t as i64 })
    }

    /// justify_hours: whole 24 hours of time become days.
    pub fn justify_hours(self) -> Result<Interval> {
        let mut r = self;
        let whole = r.micros / USECS_PER_DAY;
        r.micros -= whole * USECS_PER_DAY;
        r.days = i32::try_from(r.days as i64 + whole).map_err(|_| interval_out_of_range())?;
        if r.days > 0 && r.micros < 0 {
            r.micros += USECS_PER_DAY;
            r.days -= 1;
        } else if r.days < 0 && r.micros > 0 {
            r.micros -= USECS_PER_DAY;
            r.days += 1;
        }
        Ok(r)
    }

    /// justify_days: whole 30 days become months.
    pub fn justify_days(self) -> Result<Interval> {
        let mut r = self;
        let whole = r.days / 30;
        r.days -= whole * 30;
        r.months = r.months.checked_add(whole).ok_or_else(interval_out_of_range)?;
        if r.months > 0 && r.days < 0 {
            r.days += 30;
            r.months -= 1;
        } else if r.months < 0 && r.days > 0 {
            r.days -= 30;
            r.months += 1;
        }
        Ok(r)
    }

    /// justify_interval: both, with the signs made consistent.
    pub fn justify_interval(self) -> Result<Interval> {
        let mut r = self;
        let whole = r.micros / USECS_PER_DAY;
        r.micros -= whole * USECS_PER_DAY;
        r.days = i32::try_from(r.days as i64 + whole).map_err(|_| interval_out_of_range())?;
        let whole = r.days / 30;
        r.days -= whole * 30;
        r.months = r.months.checked_add(whole).ok_or_else(interval_out_of_range)?;
        if r.months > 0 && (r.days < 0 || (r.days == 0 && r.micros < 0)) {
            r.days += 30;
            r.months -= 1;
        } else if r.months < 0 && (r.days > 0 || (r.days == 0 && r.micros > 0)) {
            r.days -= 30;
            r.months += 1;
        }
        if r.days > 0 && r.micros < 0 {
            r.micros += USECS_PER_DAY;
            r.days -= 1;
        } else if r.days < 0 && r.micros > 0 {
            r.micros -= USECS_PER_DAY;
            r.days += 1;
        }
        Ok(r)
    }
}

/// Rounds to microsecond precision (PostgreSQL's TSROUND).
fn tsround(x: f64) -> f64 {
    (x * 1e6).round_ties_even() / 1e6
}

// ------------------------------------------------------------ time zones

/// A session or conversion time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// A fixed offset, seconds east of UTC.
    Fixed(i32),
    Named(chrono_tz::Tz),
}

impl Zone {
    pub const UTC: Zone = Zone::Fixed(0);

    /// Seconds east of UTC at the instant `utc_us`.
    pub fn offset_at(&self, utc_us: i64) -> i32 {
        match self {
            Zone::Fixed(s) => *s,
            Zone::Named(tz) => {
                use chrono::{Offset, TimeZone};
                tz.offset_from_utc_datetime(&naive(fold_future(utc_us))).fix().local_minus_utc()
            }
        }
    }

    /// The UTC instant of a local wall-clock time. In a DST gap the offset
    /// before the transition applies; an ambiguous time is the later
    /// instant (standard time), as in PostgreSQL.
    pub fn to_utc(&self, local_us: i64) -> i64 {
        if !is_finite_ts(local_us) {
            return local_us;
        }
        let off = match self {
            Zone::Fixed(s) => *s,
            Zone::Named(tz) => {
                use chrono::{LocalResult, Offset, TimeZone};
                match tz.offset_from_local_datetime(&naive(fold_future(local_us))) {
                    LocalResult::Single(o) => o.fix().local_minus_utc(),
                    LocalResult::Ambiguous(a, b) => {
                        a.fix().local_minus_utc().min(b.fix().local_minus_utc())
                    }
                    LocalResult::None => self.offset_at(local_us.saturating_sub(USECS_PER_DAY)),
                }
            }
        };
        local_us.saturating_sub(off as i64 * USECS_PER_SEC)
    }

    /// The wall-clock time in this zone of a UTC instant.
    pub fn to_local(&self, utc_us: i64) -> i64 {
        if !is_finite_ts(utc_us) {
            return utc_us;
        }
        utc_us.saturating_add(self.offset_at(utc_us) as i64 * USECS_PER_SEC)
    }
}

/// Past 2099 the compiled-in zone tables end, while PostgreSQL goes on
/// applying each zone's last rules: a time in a later year is looked up in
/// an earlier year with the same calendar (leap year, weekday of Jan 1),
/// where the same rules give the same offset.
fn fold_future(us: i64) -> i64 {
    let days = us.div_euclid(USECS_PER_DAY);
    let tod = us.rem_euclid(USECS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    if y <= 2099 {
        return us;
    }
    let leap = is_leap(y);
    let wd = weekday(days_from_civil(y, 1, 1));
    for y2 in (2072..=2099).rev() {
        if is_leap(y2) == leap && weekday(days_from_civil(y2, 1, 1)) == wd {
            return days_from_civil(y2, m, d) * USECS_PER_DAY + tod;
        }
    }
    us
}

/// The chrono instant zone rules are looked up at for `us` (see `fold_future`).
pub fn chrono_instant(us: i64) -> chrono::NaiveDateTime {
    naive(fold_future(us))
}

/// chrono's view of an instant (µs since 2000), shifted by whole 400-year
/// cycles into chrono's range (the calendar and zone rules repeat).
fn naive(us: i64) -> chrono::NaiveDateTime {
    const CYCLE: i64 = 146_097 * USECS_PER_DAY;
    const LIMIT: i64 = 200_000 * 365 * USECS_PER_DAY;
    let mut us = us;
    if us > LIMIT {
        us -= ((us - LIMIT) / CYCLE + 1) * CYCLE;
    } else if us < -LIMIT {
        us = -LIMIT;
    }
    let unix = us + UNIX_EPOCH_OFFSET_DAYS * USECS_PER_DAY;
    chrono::DateTime::from_timestamp_micros(unix).map(|d| d.naive_utc()).unwrap_or_default()
}

/// An IANA zone by name, case-insensitively.
pub fn named_zone(name: &str) -> Option<chrono_tz::Tz> {
    use std::collections::HashMap;
    use std::sync::OnceLock;
    static MAP: OnceLock<HashMap<String, chrono_tz::Tz>> = OnceLock::new();
    if let Ok(tz) = name.parse::<chrono_tz::Tz>() {
        return Some(tz);
    }
    let map = MAP.get_or_init(|| {
        chrono_tz::TZ_VARIANTS.iter().map(|tz| (tz.name().to_ascii_lowercase(), *tz)).collect()
    });
    map.get(&name.to_ascii_lowercase()).copied()
}

/// A zone as `SET TIME ZONE`, `AT TIME ZONE` and friends read it: an IANA
/// name, or a POSIX-style offset (`'+05:30'` and `'UTC+3'` are *west* of
/// Greenwich, as in POSIX and PostgreSQL).
pub fn parse_zone(name: &str) -> Option<Zone> {
    let t = name.trim();
    let lower = t.to_ascii_lowercase();
    if matches!(lower.as_str(), "utc" | "gmt" | "z" | "zulu" | "etc/utc" | "universal") {
        return Some(Zone::UTC);
    }
    if let Some(tz) = named_zone(t) {
        return Some(Zone::Named(tz));
    }
    let rest = lower.strip_prefix("utc").or_else(|| lower.strip_prefix("gmt")).unwrap_or(&lower);
    let secs = parse_offset(rest, MAX_ZONE_OFFSET_HOURS)?;
    Some(Zone::Fixed(-secs))
}

/// A time zone set as an offset (`SET TIME ZONE 5`, `INTERVAL '5 hours'`,
/// `'+05'`, `'UTC+5'`) must lie strictly within a week of UTC, as in
/// PostgreSQL (`pg_tzset_offset`); an offset inside date/time text is held
/// to 15:59:59 (`parse_offset_text`).
pub const MAX_ZONE_OFFSET_HOURS: i32 = 167;

/// Whether a zone offset of `secs` (either sign) is one PostgreSQL accepts.
pub fn zone_offset_in_range(secs: f64) -> bool {
    secs.is_finite() && secs.abs() < f64::from((MAX_ZONE_OFFSET_HOURS + 1) * 3600)
}

/// Common zone abbreviations in date/time text (a subset of PostgreSQL's
/// default `timezone_abbreviations`), seconds east.
fn zone_abbrev(w: &str) -> Option<i32> {
    Some(match w {
        "pst" => -8 * 3600,
        "pdt" | "mst" => -7 * 3600,
        "mdt" | "cst" => -6 * 3600,
        "cdt" | "est" => -5 * 3600,
        "edt" => -4 * 3600,
        "akst" => -9 * 3600,
        "akdt" => -8 * 3600,
        "hst" => -10 * 3600,
        "wet" => 0,
        "west" | "bst" | "cet" => 3600,
        "cest" | "eet" => 2 * 3600,
        "eest" | "msk" => 3 * 3600,
        "jst" | "kst" => 9 * 3600,
        "aest" => 10 * 3600,
        "aedt" => 11 * 3600,
        "nzst" => 12 * 3600,
        "nzdt" => 13 * 3600,
        _ => return None,
    })
}

/// `[+-]hh[:mm[:ss]]` or `[+-]hhmm` → seconds (sign as written), hours at
/// most 15 (a displacement in date/time text).
fn parse_offset_text(s: &str) -> Option<i32> {
    parse_offset(s, 15)
}

/// As `parse_offset_text`, with hours (one to three digits) up to `max_hours`.
fn parse_offset(s: &str, max_hours: i32) -> Option<i32> {
    let (neg, body) = match s.as_bytes().first()? {
        b'+' => (false, &s[1..]),
        b'-' => (true, &s[1..]),
        b'0'..=b'9' => (false, s),
        _ => return None,
    };
    let parts: Vec<&str> = body.split(':').collect();
    let digits = |p: &str, most: usize| -> Option<i32> {
        if p.is_empty() || p.len() > most || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        p.parse().ok()
    };
    let num = |p: &str| digits(p, 2);
    let (h, m, sec) = match parts.as_slice() {
        [hm] if hm.len() == 4 && hm.bytes().all(|b| b.is_ascii_digit()) => {
            (hm[..2].parse().ok()?, hm[2..].parse().ok()?, 0)
        }
        [h] => (digits(h, 3)?, 0, 0),
        [h, m] => (digits(h, 3)?, num(m)?, 0),
        [h, m, s] => (digits(h, 3)?, num(m)?, num(s)?),
        _ => return None,
    };
    if h > max_hours || m > 59 || sec > 59 {
        return None;
    }
    let v = h * 3600 + m * 60 + sec;
    Some(if neg { -v } else { v })
}

/// The name `SHOW timezone` gives for an offset set as a number or
/// interval (`SET TIME ZONE 5` → `<+05>-05`).
pub fn offset_zone_name(east_secs: i32) -> String {
    let mut s = String::from("<");
    push_offset(&mut s, east_secs);
    s.push('>');
    push_offset(&mut s, -east_secs);
    s
}

// ----------------------------------------------------------- environment

/// What a statement's date/time evaluation needs from its session.
#[derive(Debug, Clone, Copy)]
pub struct Env {
    pub zone: Zone,
    /// Start of the transaction (`now()`), µs since 2000.
    pub txn_ts: i64,
    /// Start of the statement.
    pub stmt_ts: i64,
}

thread_local! {
    static ENV: Cell<Env> = const {
        Cell::new(Env { zone: Zone::UTC, txn_ts: 0, stmt_ts: 0 })
    };
}

pub fn set_env(env: Env) {
    ENV.with(|e| e.set(env));
}

pub fn env() -> Env {
    ENV.with(|e| e.get())
}

pub fn zone() -> Zone {
    env().zone
}

/// The wall clock now, µs since 2000-01-01 UTC.
pub fn clock_now() -> i64 {
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    unix - UNIX_EPOCH_OFFSET_DAYS * USECS_PER_DAY
}

// ---------------------------------------------------------------- output

fn push_year(out: &mut String, year: i64) -> bool {
    let (y, bc) = if year <= 0 { (1 - year, true) } else { (year, false) };
    let _ = write!(out, "{y:04}");
    bc
}

pub fn format_date(d: i32, out: &mut String) {
    match d {
        DATE_NEG_INF => out.push_str("-infinity"),
        DATE_POS_INF => out.push_str("infinity"),
        _ => {
            let (y, m, day) = civil_from_days(d as i64);
            let bc = push_year(out, y);
            let _ = write!(out, "-{m:02}-{day:02}");
            if bc {
                out.push_str(" BC");
            }
        }
    }
}

fn push_secs(out: &mut String, sec: u32, micros: u32) {
    let _ = write!(out, "{sec:02}");
    if micros != 0 {
        let f = format!("{micros:06}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
}

pub fn format_time(us: i64, out: &mut String) {
    let h = us / USECS_PER_HOUR;
    let m = us / USECS_PER_MINUTE % 60;
    let _ = write!(out, "{h:02}:{m:02}:");
    push_secs(out, (us / USECS_PER_SEC % 60) as u32, (us % USECS_PER_SEC) as u32);
}

fn push_offset(out: &mut String, east: i32) {
    let sign = if east < 0 { '-' } else { '+' };
    let a = east.unsigned_abs();
    let _ = write!(out, "{sign}{:02}", a / 3600);
    if !a.is_multiple_of(3600) {
        let _ = write!(out, ":{:02}", a / 60 % 60);
        if !a.is_multiple_of(60) {
            let _ = write!(out, ":{:02}", a % 60);
        }
    }
}

/// A timestamp (local wall-clock µs), with an offset for timestamptz.
pub fn format_timestamp(us: i64, offset: Option<i32>, out: &mut String) {
    match us {
        TS_NEG_INF => out.push_str("-infinity"),
        TS_POS_INF => out.push_str("infinity"),
        _ => {
            let tm = Tm::from_us(us);
            let bc = push_year(out, tm.year);
            let _ = write!(out, "-{:02}-{:02} {:02}:{:02}:", tm.month, tm.day, tm.hour, tm.minute);
            push_secs(out, tm.second, tm.micros);
            if let Some(off) = offset {
                push_offset(out, off);
            }
            if bc {
                out.push_str(" BC");
            }
        }
    }
}

/// A timestamptz as printed in `zone`.
pub fn format_timestamptz(us: i64, zone: Zone, out: &mut String) {
    if !is_finite_ts(us) {
        return format_timestamp(us, None, out);
    }
    let off = zone.offset_at(us);
    format_timestamp(us + off as i64 * USECS_PER_SEC, Some(off), out)
}

/// IntervalStyle postgres: `1 year 2 mons 3 days 04:05:06`, `-1 days +02:00:00`.
pub fn format_interval(iv: &Interval, out: &mut String) {
    let year = iv.months / 12;
    let mon = iv.months % 12;
    let mut is_zero = true;
    let mut is_before = false;
    let mut part = |out: &mut String, v: i64, unit: &str| {
        if v == 0 {
            return;
        }
        let _ = write!(
            out,
            "{}{}{v} {unit}{}",
            if is_zero { "" } else { " " },
            if is_before && v > 0 { "+" } else { "" },
            if v != 1 { "s" } else { "" }
        );
        is_before = v < 0;
        is_zero = false;
    };
    part(out, year as i64, "year");
    part(out, mon as i64, "mon");
    part(out, iv.days as i64, "day");
    let t = iv.micros;
    if is_zero || t != 0 {
        let minus = t < 0;
        let a = t.unsigned_abs();
        let h = a / USECS_PER_HOUR as u64;
        let m = a / USECS_PER_MINUTE as u64 % 60;
        let s = (a / USECS_PER_SEC as u64 % 60) as u32;
        let f = (a % USECS_PER_SEC as u64) as u32;
        let _ = write!(
            out,
            "{}{}{h:02}:{m:02}:",
            if is_zero { "" } else { " " },
            if minus {
                "-"
            } else if is_before {
                "+"
            } else {
                ""
            }
        );
        push_secs(out, s, f);
    }
}

// ----------------------------------------------------------------- input

/// What a date/time text held.
#[derive(Debug, Default)]
struct Parsed {
    year: Option<i64>,
    /// The year was written with two digits (MDY's 70/69 rule applies).
    year2: bool,
    month: Option<u32>,
    day: Option<u32>,
    hour: Option<u32>,
    minute: u32,
    second: u32,
    micros: u32,
    /// AM/PM: Some(false) am, Some(true) pm.
    pm: Option<bool>,
    bc: bool,
    /// Explicit zone: seconds east, or a named zone.
    offset: Option<i32>,
    named: Option<Zone>,
    /// Numbers without a place yet (for "Jan 8 1999", "8 Jan 1999").
    loose: Vec<(u32, usize)>,
    /// Time fields from an ISO basic "hhmmss", which are not range-checked.
    lenient: bool,
}

enum Special {
    Epoch,
    PosInf,
    NegInf,
    Now,
    Today,
    Tomorrow,
    Yesterday,
    Allballs,
}

fn special(s: &str) -> Option<Special> {
    Some(match s.trim().to_ascii_lowercase().as_str() {
        "epoch" => Special::Epoch,
        "infinity" | "+infinity" => Special::PosInf,
        "-infinity" => Special::NegInf,
        "now" => Special::Now,
        "today" => Special::Today,
        "tomorrow" => Special::Tomorrow,
        "yesterday" => Special::Yesterday,
        "allballs" => Special::Allballs,
        _ => return None,
    })
}

fn month_name(w: &str) -> Option<u32> {
    const NAMES: [&str; 12] = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    if w.len() < 3 {
        return None;
    }
    if w == "sept" {
        return Some(9);
    }
    NAMES.iter().position(|n| *n == w || (w.len() == 3 && n.starts_with(w))).map(|i| i as u32 + 1)
}

fn day_name(w: &str) -> bool {
    const NAMES: [&str; 7] =
        ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"];
    w.len() >= 3 && NAMES.iter().any(|n| *n == w || (w.len() == 3 && n.starts_with(w)))
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Splits date/time text into fields (a subset of PostgreSQL's
/// ParseDateTime/DecodeDateTime: ISO dates, MDY with `/`, month names,
/// `T` separators, times with fractions, AM/PM, BC/AD, zones as offsets,
/// `Z`/`UTC`/`GMT` or IANA names). `Err(true)` is a field out of range
/// (22008), `Err(false)` bad syntax (22007).
fn parse_fields(text: &str, time_ctx: bool) -> std::result::Result<Parsed, bool> {
    let lower = text.trim().to_ascii_lowercase();
    let mut p = Parsed::default();
    // Break "2024-01-01t10:00" at the T (only after a numeric date, as
    // PostgreSQL does), and turn commas into spaces.
    let mut norm = String::with_capacity(lower.len() + 4);
    let bytes = lower.as_bytes();
    let mut letters_in_token = false;
    for (i, &c) in bytes.iter().enumerate() {
        let t_sep = c == b't'
            && !letters_in_token
            && i > 0
            && bytes[i - 1].is_ascii_digit()
            && bytes.get(i + 1).is_some_and(|b| b.is_ascii_digit());
        if c.is_ascii_whitespace() || c == b',' {
            letters_in_token = false;
        } else if c.is_ascii_alphabetic() && !t_sep {
            letters_in_token = true;
        }
        if t_sep || c == b',' {
            norm.push(' ');
        } else {
            norm.push(c as char);
        }
    }
    let mut toks: Vec<&str> = Vec::new();
    for t in norm.split_whitespace() {
        // A lone "t" between date and time.
        if t == "t" {
            continue;
        }
        // A keyword followed by "+": two tokens ("pm+05"), as PostgreSQL's
        // lexer splits them; with "-" the whole is a POSIX zone ("am-08").
        if let Some(k) = t.find('+')
            && matches!(&t[..k], "am" | "pm" | "ad" | "bc" | "z" | "t")
        {
            toks.push(&t[..k]);
            toks.push(&t[k..]);
            continue;
        }
        toks.push(t);
    }
    if toks.is_empty() {
        return Err(false);
    }
    let mut i = 0;
    while i < toks.len() {
        let mut tok = toks[i];
        i += 1;
        // ISO's "T10:00" without a date.
        if tok.len() > 1 && tok.starts_with('t') && tok.as_bytes()[1].is_ascii_digit() {
            tok = &tok[1..];
        }
        let first = tok.as_bytes()[0];
        // A 4- or 6-digit number is a time once the date is complete (or
        // in a time without a date).
        let date_done = (p.year.is_some() && p.month.is_some() && p.day.is_some())
            || (p.month.is_some() && p.loose.len() >= 2)
            || (time_ctx && p.year.is_none() && p.month.is_none() && p.loose.is_empty());
        if first.is_ascii_digit()
            && p.hour.is_none()
            && date_done
            && let Some((hms, zone)) = compact_time(tok)
        {
            // hhmm[ss[.frac]] (ISO basic), maybe with a zone offset.
            let n = hms.split('.').next().unwrap_or("");
            p.hour = Some(n[..2].parse().map_err(|_| false)?);
            p.minute = n[2..4].parse().map_err(|_| false)?;
            if n.len() == 6 {
                let mut q = Parsed::default();
                parse_time_fields(&format!("0:0:{}", &hms[4..]), &mut q)?;
                p.second = q.second;
                p.micros = q.micros;
            }
            if let Some(z) = zone {
                p.offset = Some(parse_offset_text(z).ok_or(false)?);
            }
            // PostgreSQL does not range-check these fields: 251423 rolls over.
            p.lenient = true;
        } else if first.is_ascii_digit() {
            if tok.contains(':') {
                // A time, maybe with a zone offset or Z attached.
                let (time, zone) = split_time_zone(tok);
                parse_time_fields(time, &mut p)?;
                if let Some(z) = zone {
                    if z == "z" {
                        p.offset = Some(0);
                    } else {
                        p.offset = Some(parse_offset_text(z).ok_or(false)?);
                    }
                }
            } else if tok.contains('-') || tok.contains('/') || tok.contains('.') {
                parse_date_token(tok, &mut p)?;
            } else if digits(tok) && tok.len() == 8 && p.year.is_none() {
                p.year = Some(tok[..4].parse().map_err(|_| false)?);
                p.month = Some(tok[4..6].parse().map_err(|_| false)?);
                p.day = Some(tok[6..].parse().map_err(|_| false)?);
            } else if digits(tok) && tok.len() == 6 && p.year.is_none() && p.month.is_none() {
                // YYMMDD.
                p.year = Some(tok[..2].parse().map_err(|_| false)?);
                p.year2 = true;
                p.month = Some(tok[2..4].parse().map_err(|_| false)?);
                p.day = Some(tok[4..].parse().map_err(|_| false)?);
            } else if digits(tok) {
                let v: u32 = tok.parse().map_err(|_| true)?;
                p.loose.push((v, tok.len()));
            } else {
                return Err(false);
            }
        } else if first == b'+' || first == b'-' {
            p.offset = Some(parse_offset_text(tok).ok_or(false)?);
        } else {
            match tok {
                "am" | "a.m." => p.pm = Some(false),
                "pm" | "p.m." => p.pm = Some(true),
                "bc" | "b.c." => p.bc = true,
                "ad" | "a.d." => {}
                "z" | "zulu" | "utc" | "gmt" | "ut" => p.offset = Some(0),
                "allballs" => {
                    p.hour = Some(0);
                }
                "at" | "on" => {}
                w => {
                    if let Some(m) = month_name(w) {
                        if p.month.is_some() {
                            return Err(false);
                        }
                        p.month = Some(m);
                    } else if day_name(w) {
                    } else if let Some(off) = zone_abbrev(w) {
                        p.offset = Some(off);
                    } else if let Some(tz) = named_zone(w) {
                        p.named = Some(Zone::Named(tz));
                    } else if let Some(k) = w.find(['+', '-'])
                        && k > 0
                        && w[..k].bytes().all(|b| b.is_ascii_alphabetic())
                    {
                        // A POSIX zone ("UTC+3", even "am-08:00"): west-positive.
                        p.offset = Some(-parse_offset_text(&w[k..]).ok_or(false)?);
                    } else {
                        return Err(false);
                    }
                }
            }
        }
    }
    // Loose numbers: with a month name, the day then the year.
    for (v, len) in std::mem::take(&mut p.loose) {
        if p.day.is_none() && len <= 2 && p.month.is_some() {
            p.day = Some(v);
        } else if p.year.is_none() {
            p.year = Some(v as i64);
            p.year2 = len <= 2;
        } else {
            return Err(false);
        }
    }
    Ok(p)
}

/// `hhmm`, `hhmmss`, `hhmmss.frac`, each maybe followed by `+hh[mm]`.
fn compact_time(tok: &str) -> Option<(&str, Option<&str>)> {
    if let Some(body) = tok.strip_suffix('z') {
        return compact_time(body).filter(|(_, z)| z.is_none()).map(|(b, _)| (b, Some("+00")));
    }
    let (body, zone) = match tok.find(['+', '-']) {
        // "-08:00" after digits reads as a date part in PostgreSQL: not a zone.
        Some(k) if tok[k..].starts_with('-') && tok[k..].contains(':') => return None,
        Some(k) => (&tok[..k], Some(&tok[k..])),
        None => (tok, None),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let ok = digits(int)
        && (int.len() == 6 || (int.len() == 4 && frac.is_empty()))
        && (frac.is_empty() || digits(frac));
    ok.then_some((body, zone))
}

fn split_time_zone(tok: &str) -> (&str, Option<&str>) {
    if let Some(t) = tok.strip_suffix('z') {
        return (t, Some("z"));
    }
    match tok.find(['+', '-']) {
        Some(i) => (&tok[..i], Some(&tok[i..])),
        None => (tok, None),
    }
}

fn parse_time_fields(s: &str, p: &mut Parsed) -> std::result::Result<(), bool> {
    if p.hour.is_some() {
        return Err(false);
    }
    let parts: Vec<&str> = s.split(':').collect();
    if !(2..=3).contains(&parts.len()) || parts.iter().any(|x| x.is_empty()) {
        return Err(false);
    }
    let int = |x: &str| -> std::result::Result<u32, bool> {
        if !digits(x) {
            return Err(false);
        }
        x.parse().map_err(|_| true)
    };
    p.hour = Some(int(parts[0])?);
    p.minute = int(parts[1])?;
    if let Some(sec) = parts.get(2) {
        let (whole, frac) = sec.split_once('.').unwrap_or((sec, ""));
        p.second = int(whole)?;
        if !frac.is_empty() {
            if !digits(frac) {
                return Err(false);
            }
            // Round to microseconds.
            let mut f: String = frac.chars().take(7).collect();
            while f.len() < 7 {
                f.push('0');
            }
            let v: u32 = f.parse().map_err(|_| false)?;
            p.micros = (v + 5) / 10;
        }
    }
    // Minutes and seconds are checked as the field is read (so that a
    // later bad word does not hide the overflow, as in PostgreSQL).
    if p.minute > 59 || p.second > 60 {
        return Err(true);
    }
    Ok(())
}

fn parse_date_token(tok: &str, p: &mut Parsed) -> std::result::Result<(), bool> {
    if p.year.is_some() || p.month.is_some() {
        return Err(false);
    }
    let sep = if tok.contains('-') {
        '-'
    } else if tok.contains('/') {
        '/'
    } else {
        '.'
    };
    let parts: Vec<&str> = tok.split(sep).collect();
    if parts.len() != 3 {
        return Err(false);
    }
    let num = |x: &str| -> std::result::Result<u32, bool> {
        if !digits(x) {
            return Err(false);
        }
        x.parse().map_err(|_| true)
    };
    if parts[0].len() >= 3 {
        // Y-M-D.
        p.year = Some(num(parts[0])? as i64);
        p.month = Some(match month_name(parts[1]) {
            Some(m) => m,
            None => num(parts[1])?,
        });
        p.day = Some(num(parts[2])?);
    } else if let Some(m) = month_name(parts[1]) {
        // D-Mon-Y.
        p.day = Some(num(parts[0])?);
        p.month = Some(m);
        p.year = Some(num(parts[2])? as i64);
        p.year2 = parts[2].len() <= 2;
    } else if sep == '-' && parts[0].len() <= 2 && parts[2].len() <= 2 {
        // "99-01-08": ambiguous in MDY; PostgreSQL reads it as M-D-Y and fails.
        p.month = Some(num(parts[0])?);
        p.day = Some(num(parts[1])?);
        p.year = Some(num(parts[2])? as i64);
        p.year2 = true;
    } else {
        // MDY.
        p.month = Some(num(parts[0])?);
        p.day = Some(num(parts[1])?);
        p.year = Some(num(parts[2])? as i64);
        p.year2 = parts[2].len() <= 2;
    }
    Ok(())
}

/// Validated (year, month, day) of parsed fields.
fn ymd(p: &Parsed, text: &str) -> Result<(i64, u32, u32)> {
    let (Some(mut y), Some(m), Some(d)) = (p.year, p.month, p.day) else {
        return Err(Error::Internal(String::new()));
    };
    if p.year2 && !p.bc {
        y += if y < 70 {
            2000
        } else if y < 100 {
            1900
        } else {
            0
        };
    }
    if y == 0 && !p.year2 {
        return Err(field_overflow(text));
    }
    if !(1..=12).contains(&m) {
        return Err(field_overflow(text));
    }
    if p.bc {
        y = 1 - y;
    }
    if d < 1 || d > days_in_month(y, m) {
        return Err(field_overflow(text));
    }
    Ok((y, m, d))
}

fn hms(p: &Parsed, text: &str) -> Result<i64> {
    let mut h = p.hour.unwrap_or(0);
    if let Some(pm) = p.pm {
        if h > 12 {
            return Err(field_overflow(text));
        }
        if h == 12 {
            h = 0;
        }
        if pm {
            h += 12;
        }
    }
    if p.lenient && p.pm.is_none() {
        return Ok(h as i64 * USECS_PER_HOUR
            + p.minute as i64 * USECS_PER_MINUTE
            + p.second as i64 * USECS_PER_SEC
            + p.micros as i64);
    }
    if h > 24 || p.minute > 59 || p.second > 60 {
        return Err(field_overflow(text));
    }
    let t = h as i64 * USECS_PER_HOUR
        + p.minute as i64 * USECS_PER_MINUTE
        + p.second as i64 * USECS_PER_SEC
        + p.micros as i64;
    if h > 24 || t > USECS_PER_DAY {
        return Err(field_overflow(text));
    }
    Ok(t)
}

fn fields_err(e: bool, type_name: &str, text: &str) -> Error {
    if e { field_overflow(text) } else { bad_format(type_name, text) }
}

/// Today's date in the session zone.
fn today() -> i64 {
    let e = env();
    e.zone.to_local(e.txn_ts).div_euclid(USECS_PER_DAY)
}

pub fn parse_date(text: &str) -> Result<i32> {
    match special(text) {
        Some(Special::Epoch) => return Ok(-(UNIX_EPOCH_OFFSET_DAYS as i32)),
        Some(Special::PosInf) => return Ok(DATE_POS_INF),
        Some(Special::NegInf) => return Ok(DATE_NEG_INF),
        Some(Special::Now | Special::Today) => return Ok(today() as i32),
        Some(Special::Tomorrow) => return Ok(today() as i32 + 1),
        Some(Special::Yesterday) => return Ok(today() as i32 - 1),
        Some(Special::Allballs) => return Err(bad_format("date", text)),
        None => {}
    }
    let p = parse_fields(text, false).map_err(|e| fields_err(e, "date", text))?;
    let (y, m, d) = ymd(&p, text).map_err(|e| match e {
        Error::Internal(_) => bad_format("date", text),
        e => e,
    })?;
    if p.hour.is_some() {
        hms(&p, text)?;
    }
    let days = days_from_civil(y, m, d);
    if !date_in_range(days) {
        return Err(Error::user("22008", format!("date out of range: \"{text}\"")));
    }
    Ok(days as i32)
}

pub fn parse_time(text: &str) -> Result<i64> {
    match special(text) {
        Some(Special::Allballs) => return Ok(0),
        Some(Special::Now) => {
            let e = env();
            return Ok(e.zone.to_local(e.txn_ts).rem_euclid(USECS_PER_DAY));
        }
        Some(_) => return Err(bad_format("time", text)),
        None => {}
    }
    let p = parse_fields(text, true).map_err(|e| fields_err(e, "time", text))?;
    if p.hour.is_none() || p.named.is_some() {
        return Err(bad_format("time", text));
    }
    if p.year.is_some() || p.month.is_some() || p.day.is_some() {
        ymd(&p, text).map_err(|e| match e {
            Error::Internal(_) => bad_format("time", text),
            e => e,
        })?;
    }
    hms(&p, text)
}

/// Text → timestamp (`tz` false: a zone in the text is ignored) or
/// timestamptz (`tz` true: read in the text's zone or the session's).
pub fn parse_timestamp(text: &str, tz: bool) -> Result<i64> {
    let type_name = if tz { "timestamp with time zone" } else { "timestamp" };
    let e = env();
    let local_midnight = |days: i64| -> i64 {
        let local = days * USECS_PER_DAY;
        if tz { e.zone.to_utc(local) } else { local }
    };
    match special(text) {
        Some(Special::Epoch) => {
            return Ok(-UNIX_EPOCH_OFFSET_DAYS * USECS_PER_DAY);
        }
        Some(Special::PosInf) => return Ok(TS_POS_INF),
        Some(Special::NegInf) => return Ok(TS_NEG_INF),
        Some(Special::Now) => {
            return Ok(if tz { e.txn_ts } else { e.zone.to_local(e.txn_ts) });
        }
        Some(Special::Today) => return Ok(local_midnight(today())),
        Some(Special::Tomorrow) => return Ok(local_midnight(today() + 1)),
        Some(Special::Yesterday) => return Ok(local_midnight(today() - 1)),
        Some(Special::Allballs) => return Err(bad_format(type_name, text)),
        None => {}
    }
    let p = parse_fields(text, false).map_err(|e| fields_err(e, type_name, text))?;
    let (y, m, d) = ymd(&p, text).map_err(|e| match e {
        Error::Internal(_) => bad_format(type_name, text),
        e => e,
    })?;
    let t = hms(&p, text)?;
    let days = days_from_civil(y, m, d);
    let out_of_range = || Error::user("22008", format!("timestamp out of range: \"{text}\""));
    // A date may lie far past the last timestamp (5874897 AD against
    // 294276 AD): such a day would overflow as microseconds. A day or two
    // of slack lets a zone's offset bring an edge value back in range.
    if !date_in_range(days)
        || !(TS_MIN / USECS_PER_DAY - 2..=TS_END / USECS_PER_DAY + 2).contains(&days)
    {
        return Err(out_of_range());
    }
    let local = days * USECS_PER_DAY + t;
    let us = if !tz {
        local
    } else if let Some(off) = p.offset {
        local - off as i64 * USECS_PER_SEC
    } else if let Some(z) = p.named {
        z.to_utc(local)
    } else {
        e.zone.to_utc(local)
    };
    if !ts_in_range(us) {
        return Err(out_of_range());
    }
    Ok(us)
}

/// Interval units of the text format.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Unit {
    Microsecond,
    Millisecond,
    Second,
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Quarter,
    Year,
    Decade,
    Century,
    Millennium,
}

pub fn unit_of(w: &str) -> Option<Unit> {
    Some(match w {
        "microsecond" | "microseconds" | "us" | "usec" | "usecs" | "useconds" | "usecond" => {
            Unit::Microsecond
        }
        "millisecond" | "milliseconds" | "ms" | "msec" | "msecs" | "mseconds" | "msecond" => {
            Unit::Millisecond
        }
        "second" | "seconds" | "s" | "sec" | "secs" => Unit::Second,
        "minute" | "minutes" | "m" | "min" | "mins" => Unit::Minute,
        "hour" | "hours" | "h" | "hr" | "hrs" => Unit::Hour,
        "day" | "days" | "d" => Unit::Day,
        "week" | "weeks" | "w" => Unit::Week,
        "month" | "months" | "mon" | "mons" => Unit::Month,
        "quarter" | "quarters" | "qtr" => Unit::Quarter,
        "year" | "years" | "y" | "yr" | "yrs" => Unit::Year,
        "decade" | "decades" | "dec" | "decs" => Unit::Decade,
        "century" | "centuries" | "c" | "cent" => Unit::Century,
        "millennium" | "millennia" | "mil" | "mils" => Unit::Millennium,
        _ => return None,
    })
}

/// Accumulates interval fields in wide integers, checking at the end.
#[derive(Default)]
struct IvAcc {
    months: i128,
    days: i128,
    micros: i128,
}

impl IvAcc {
    /// Adds `whole + frac` of `unit`, spilling fractions into smaller
    /// fields exactly as PostgreSQL's DecodeInterval does (AdjustFract*).
    fn add(&mut self, whole: i64, frac: f64, unit: Unit) {
        let whole = whole as i128;
        match unit {
            Unit::Microsecond => self.micro_part(whole, frac, 1),
            Unit::Millisecond => self.micro_part(whole, frac, 1000),
            Unit::Second => self.micro_part(whole, frac, USECS_PER_SEC),
            Unit::Minute => self.micro_part(whole, frac, USECS_PER_MINUTE),
            Unit::Hour => self.micro_part(whole, frac, USECS_PER_HOUR),
            Unit::Day => {
                self.days += whole;
                self.fract_micros(frac, USECS_PER_DAY);
            }
            Unit::Week => {
                self.days += whole * 7;
                self.fract_days(frac, 7);
            }
            Unit::Month => {
                self.months += whole;
                self.fract_days(frac, 30);
            }
            Unit::Quarter => {
                self.months += whole * 3;
                self.fract_days(frac, 90);
            }
            Unit::Year => self.years(whole, frac, 1),
            Unit::Decade => self.years(whole, frac, 10),
            Unit::Century => self.years(whole, frac, 100),
            Unit::Millennium => self.years(whole, frac, 1000),
        }
    }

    fn years(&mut self, whole: i128, frac: f64, scale: i128) {
        self.months += whole * scale * 12 + (frac * scale as f64 * 12.0).round_ties_even() as i128;
    }

    fn micro_part(&mut self, whole: i128, frac: f64, scale: i64) {
        self.micros += whole * scale as i128;
        self.fract_micros(frac, scale);
    }

    fn fract_micros(&mut self, frac: f64, scale: i64) {
        if frac == 0.0 {
            return;
        }
        let f = frac * scale as f64;
        let mut us = f as i128;
        let rest = f - us as f64;
        if rest > 0.5 {
            us += 1;
        } else if rest < -0.5 {
            us -= 1;
        }
        self.micros += us;
    }

    fn fract_days(&mut self, frac: f64, scale: i64) {
        if frac == 0.0 {
            return;
        }
        let f = frac * scale as f64;
        let extra = f as i128;
        self.days += extra;
        self.fract_micros(f - extra as f64, USECS_PER_DAY);
    }

    fn finish(self, text: &str) -> Result<Interval> {
        let over =
            || Error::user("22015", format!("interval field value out of range: \"{text}\""));
        Ok(Interval {
            months: i32::try_from(self.months).map_err(|_| interval_out_of_range())?,
            days: i32::try_from(self.days).map_err(|_| over())?,
            micros: i64::try_from(self.micros).map_err(|_| over())?,
        })
    }
}

/// Text → interval (PostgreSQL's postgres/verbose formats, `@` and `ago`,
/// `[-]h:m[:s]` times, `Y-M` year-month, a bare number in `default_unit`
/// (seconds unless `INTERVAL '1' DAY`), ISO 8601 `P…T…`).
pub fn parse_interval(text: &str, default_unit: Option<Unit>) -> Result<Interval> {
    let bad = || bad_format("interval", text);
    let lower = text.trim().to_ascii_lowercase();
    if let Some(iso) = lower.strip_prefix('p') {
        return parse_iso_interval(iso, text);
    }
    let mut toks: Vec<&str> = lower.split_whitespace().collect();
    if toks.first() == Some(&"@") {
        toks.remove(0);
    } else if let Some(t) = toks.first_mut()
        && let Some(rest) = t.strip_prefix('@')
    {
        *t = rest;
    }
    let mut ago = false;
    if toks.last() == Some(&"ago") {
        toks.pop();
        ago = true;
    }
    if toks.is_empty() {
        return Err(bad());
    }
    let mut acc = IvAcc::default();
    let mut i = 0;
    let mut any = false;
    // Each field may be given once (PostgreSQL's fmask): a bit per unit,
    // a time "h:m:s" takes hour, minute and the seconds.
    let mut seen = 0u32;
    let mut mark = |bits: u32| -> Result<()> {
        if seen & bits != 0 {
            return Err(bad_format("interval", text));
        }
        seen |= bits;
        Ok(())
    };
    let unit_bit = |u: Unit| 1u32 << (u as u32);
    let time_bits = unit_bit(Unit::Hour)
        | unit_bit(Unit::Minute)
        | unit_bit(Unit::Second)
        | unit_bit(Unit::Millisecond)
        | unit_bit(Unit::Microsecond);
    while i < toks.len() {
        let tok = toks[i];
        i += 1;
        any = true;
        if tok.contains(':') {
            let (neg, body) = match tok.as_bytes()[0] {
                b'-' => (true, &tok[1..]),
                b'+' => (false, &tok[1..]),
                _ => (false, tok),
            };
            let parts: Vec<&str> = body.split(':').collect();
            if parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
                return Err(bad());
            }
            let int = |x: &str| -> Result<i128> {
                if !digits(x) {
                    return Err(bad());
                }
                x.parse().map_err(|_| bad())
            };
            let h = int(parts[0])?;
            let m = int(parts[1])?;
            let mut us = h * USECS_PER_HOUR as i128 + m * USECS_PER_MINUTE as i128;
            if let Some(sec) = parts.get(2) {
                let s: f64 = sec.parse().map_err(|_| bad())?;
                if !sec.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                    return Err(bad());
                }
                us += (s * 1e6).round() as i128;
            }
            if m > 59 {
                return Err(field_overflow(text));
            }
            mark(time_bits)?;
            acc.micros += if neg { -us } else { us };
            continue;
        }
        let b = tok.as_bytes();
        let numeric_start = b[0].is_ascii_digit() || b[0] == b'.' || b[0] == b'-' || b[0] == b'+';
        if !numeric_start {
            return Err(bad());
        }
        // Year-month "1-2".
        if let Some((y, m)) = tok.rsplit_once('-')
            && !y.is_empty()
            && y.trim_start_matches(['-', '+']).bytes().all(|c| c.is_ascii_digit())
            && !y.trim_start_matches(['-', '+']).is_empty()
            && digits(m)
        {
            let y: i128 = y.parse().map_err(|_| bad())?;
            let m: i128 = m.parse().map_err(|_| bad())?;
            let total = y.abs() * 12 + m;
            mark(unit_bit(Unit::Year) | unit_bit(Unit::Month))?;
            acc.months += if y < 0 || tok.starts_with('-') { -total } else { total };
            continue;
        }
        // A number, with its unit attached ("10d") or as the next token.
        let split = tok
            .char_indices()
            .find(|(k, c)| *k > 0 && c.is_ascii_alphabetic())
            .map(|(k, _)| k)
            .unwrap_or(tok.len());
        let (num, attached) = tok.split_at(split);
        let v: f64 = num.parse().map_err(|_| bad())?;
        if !v.is_finite() {
            return Err(bad());
        }
        // The fraction as written (".72", not 2268.72 - 2268), signed like the number.
        let (whole, frac) = split_number(num, v);
        let unit = if !attached.is_empty() {
            unit_of(attached).ok_or_else(bad)?
        } else if let Some(u) = toks.get(i).and_then(|w| unit_of(w)) {
            i += 1;
            u
        } else if toks.get(i).is_some_and(|w| w.contains(':')) {
            Unit::Day
        } else if i < toks.len() {
            return Err(bad());
        } else {
            default_unit.unwrap_or(Unit::Second)
        };
        if v.abs() >= 1e18 {
            return Err(Error::user(
                "22015",
                format!("interval field value out of range: \"{text}\""),
            ));
        }
        // Fractional seconds count as milli- and microseconds too.
        if unit == Unit::Second && frac != 0.0 {
            mark(
                unit_bit(Unit::Second) | unit_bit(Unit::Millisecond) | unit_bit(Unit::Microsecond),
            )?;
        } else {
            mark(unit_bit(unit))?;
        }
        acc.add(whole, frac, unit);
    }
    if !any {
        return Err(bad());
    }
    if ago {
        acc.months = -acc.months;
        acc.days = -acc.days;
        acc.micros = -acc.micros;
    }
    acc.finish(text)
}

/// A decimal number's integer part and its fraction parsed on its own.
fn split_number(num: &str, v: f64) -> (i64, f64) {
    if num.contains(['e', 'E']) {
        return (v.trunc() as i64, v - v.trunc());
    }
    let neg = num.starts_with('-');
    let body = num.trim_start_matches(['-', '+']);
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let int: i64 = if int.is_empty() { 0 } else { int.parse().unwrap_or(v.abs().trunc() as i64) };
    let frac: f64 = if frac.is_empty() { 0.0 } else { format!("0.{frac}").parse().unwrap_or(0.0) };
    if neg { (int.saturating_neg(), -frac) } else { (int, frac) }
}

fn parse_iso_interval(s: &str, text: &str) -> Result<Interval> {
    let bad = || bad_format("interval", text);
    let mut acc = IvAcc::default();
    let mut in_time = false;
    let mut num = String::new();
    if s.is_empty() {
        return Err(bad());
    }
    for c in s.chars() {
        match c {
            't' => in_time = true,
            '0'..='9' | '.' | '-' | '+' => num.push(c),
            _ => {
                let v: f64 = num.parse().map_err(|_| bad())?;
                if !v.is_finite() || v.abs() >= 1e18 {
                    return Err(Error::user(
                        "22015",
                        format!("interval field value out of range: \"{text}\""),
                    ));
                }
                let (whole, frac) = split_number(&num, v);
                num.clear();
                let unit = match (c, in_time) {
                    ('y', false) => Unit::Year,
                    ('m', false) => Unit::Month,
                    ('w', false) => Unit::Week,
                    ('d', false) => Unit::Day,
                    ('h', true) => Unit::Hour,
                    ('m', true) => Unit::Minute,
                    ('s', true) => Unit::Second,
                    _ => return Err(bad()),
                };
                acc.add(whole, frac, unit);
            }
        }
    }
    if !num.is_empty() {
        return Err(bad());
    }
    acc.finish(text)
}

// ------------------------------------------------------------ arithmetic

/// Adds an interval to a timestamp: months and days on the wall clock
/// (in `zone` for timestamptz), then the time part as elapsed time.
pub fn add_interval(ts: i64, iv: Interval, zone: Option<Zone>) -> Result<i64> {
    if !is_finite_ts(ts) {
        return Ok(ts);
    }
    let mut ts = ts;
    if iv.months != 0 || iv.days != 0 {
        let local = match zone {
            Some(z) => z.to_local(ts),
            None => ts,
        };
        let mut tm = Tm::from_us(local);
        if iv.months != 0 {
            let total = tm.year * 12 + (tm.month as i64 - 1) + iv.months as i64;
            tm.year = total.div_euclid(12);
            tm.month = (total.rem_euclid(12) + 1) as u32;
            tm.day = tm.day.min(days_in_month(tm.year, tm.month));
        }
        let base = tm.to_us().ok_or_else(ts_out_of_range)?;
        let local = base
            .checked_add(iv.days as i64 * USECS_PER_DAY)
            .filter(|v| ts_in_range(*v))
            .ok_or_else(ts_out_of_range)?;
        ts = match zone {
            Some(z) => z.to_utc(local),
            None => local,
        };
    }
    let r = ts.checked_add(iv.micros).ok_or_else(ts_out_of_range)?;
    check_ts(r)
}

/// `timestamp - timestamp`: the difference as days and time.
pub fn ts_diff(a: i64, b: i64) -> Result<Interval> {
    if !is_finite_ts(a) || !is_finite_ts(b) {
        return Err(Error::user("22008", "cannot subtract infinite timestamps"));
    }
    let micros = a.checked_sub(b).ok_or_else(interval_out_of_range)?;
    Interval::new(0, 0, micros).justify_hours()
}

/// `age(a, b)`: the difference in years, months and days of the
/// broken-down times (PostgreSQL's `timestamp_age`).
pub fn age(a: i64, b: i64) -> Result<Interval> {
    if !is_finite_ts(a) || !is_finite_ts(b) {
        return Err(Error::user("22008", "cannot subtract infinite timestamps"));
    }
    let t1 = Tm::from_us(a);
    let t2 = Tm::from_us(b);
    let mut fsec = t1.micros as i64 - t2.micros as i64;
    let mut sec = t1.second as i64 - t2.second as i64;
    let mut min = t1.minute as i64 - t2.minute as i64;
    let mut hour = t1.hour as i64 - t2.hour as i64;
    let mut mday = t1.day as i64 - t2.day as i64;
    let mut mon = t1.month as i64 - t2.month as i64;
    let mut year = t1.year - t2.year;
    let flip = a < b;
    if flip {
        fsec = -fsec;
        sec = -sec;
        min = -min;
        hour = -hour;
        mday = -mday;
        mon = -mon;
        year = -year;
    }
    while fsec < 0 {
        fsec += USECS_PER_SEC;
        sec -= 1;
    }
    while sec < 0 {
        sec += 60;
        min -= 1;
    }
    while min < 0 {
        min += 60;
        hour -= 1;
    }
    while hour < 0 {
        hour += 24;
        mday -= 1;
    }
    while mday < 0 {
        let (y, m) = if flip { (t1.year, t1.month) } else { (t2.year, t2.month) };
        mday += days_in_month(y, m) as i64;
        mon -= 1;
    }
    while mon < 0 {
        mon += 12;
        year -= 1;
    }
    if flip {
        fsec = -fsec;
        sec = -sec;
        min = -min;
        hour = -hour;
        mday = -mday;
        mon = -mon;
        year = -year;
    }
    let months = i32::try_from(year * 12 + mon).map_err(|_| interval_out_of_range())?;
    let micros = ((hour * 60 + min) * 60 + sec) * USECS_PER_SEC + fsec;
    Ok(Interval::new(months, mday as i32, micros))
}

/// Truncation units of date_trunc.
pub fn trunc_local(unit: Unit, local: i64) -> Result<i64> {
    if !is_finite_ts(local) {
        return Ok(local);
    }
    let mut tm = Tm::from_us(local);
    match unit {
        Unit::Microsecond => return Ok(local),
        Unit::Millisecond => tm.micros -= tm.micros % 1000,
        Unit::Second => tm.micros = 0,
        Unit::Minute => (tm.second, tm.micros) = (0, 0),
        Unit::Hour => (tm.minute, tm.second, tm.micros) = (0, 0, 0),
        _ => {
            (tm.hour, tm.minute, tm.second, tm.micros) = (0, 0, 0, 0);
            match unit {
                Unit::Day => {}
                Unit::Week => {
                    let days = days_from_civil(tm.year, tm.month, tm.day);
                    let dow = (weekday(days) + 6) % 7; // Monday = 0
                    let (y, m, d) = civil_from_days(days - dow as i64);
                    (tm.year, tm.month, tm.day) = (y, m, d);
                }
                Unit::Month => tm.day = 1,
                Unit::Quarter => {
                    tm.month = (tm.month - 1) / 3 * 3 + 1;
                    tm.day = 1;
                }
                Unit::Year => (tm.month, tm.day) = (1, 1),
                Unit::Decade => {
                    tm.year = if tm.year > 0 {
                        tm.year.div_euclid(10) * 10
                    } else {
                        -((8 - (tm.year - 1)) / 10) * 10
                    };
                    (tm.month, tm.day) = (1, 1);
                }
                Unit::Century => {
                    tm.year = if tm.year > 0 {
                        ((tm.year + 99) / 100 - 1) * 100 + 1
                    } else {
                        -((99 - (tm.year - 1)) / 100 - 1) * 100 + 1
                    };
                    (tm.month, tm.day) = (1, 1);
                }
                Unit::Millennium => {
                    tm.year = if tm.year > 0 {
                        ((tm.year + 999) / 1000 - 1) * 1000 + 1
                    } else {
                        -((999 - (tm.year - 1)) / 1000 - 1) * 1000 + 1
                    };
                    (tm.month, tm.day) = (1, 1);
                }
                _ => {}
            }
        }
    }
    tm.to_us().ok_or_else(ts_out_of_range)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(s: &str) -> String {
        let mut o = String::new();
        format_interval(&parse_interval(s, None).unwrap(), &mut o);
        o
    }

    #[test]
    fn calendar_round_trips() {
        assert_eq!(days_from_civil(2000, 1, 1), 0);
        assert_eq!(days_from_civil(1970, 1, 1), -UNIX_EPOCH_OFFSET_DAYS);
        assert_eq!(days_from_civil(-4713, 11, 24), DATE_MIN);
        assert_eq!(days_from_civil(5_874_898, 1, 1), DATE_END);
        assert_eq!(days_from_civil(294_277, 1, 1) * USECS_PER_DAY, TS_END);
        for d in [-800_000, -1, 0, 59, 60, 365, 1_000_000] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
        assert_eq!(weekday(0), 6);
    }

    /// Mangled inputs are errors, never panics.
    #[test]
    fn bad_input_never_panics() {
        let seeds = [
            "2024-01-01 10:00:00.123+05:30",
            "1 year 2 mons -3 days 04:05:06.7 ago",
            "P1Y2M3DT4H5M6.5S",
            "January 8, 1999 BC 10:00 PM Europe/Berlin",
            "99-1-8 t10:00z",
            "1999010 100000",
            "é 2024-01-01 ü",
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let alphabet: Vec<char> = "0123456789-+:./ tTzZé@,APMpmbcBC".chars().collect();
        for seed in seeds {
            for _ in 0..2000 {
                let mut chars: Vec<char> = seed.chars().collect();
                for _ in 0..3 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let pos = (x % (chars.len() as u64 + 1)) as usize;
                    let c = alphabet[(x >> 20) as usize % alphabet.len()];
                    match x % 3 {
                        0 if pos < chars.len() => {
                            chars.remove(pos);
                        }
                        1 if pos < chars.len() => chars[pos] = c,
                        _ => chars.insert(pos, c),
                    }
                }
                let t: String = chars.into_iter().collect();
                let _ = parse_date(&t);
                let _ = parse_time(&t);
                let _ = parse_timestamp(&t, true);
                let _ = parse_timestamp(&t, false);
                let _ = parse_interval(&t, None);
                let _ = parse_zone(&t);
            }
        }
        for big in ["999999999999999999 years", "-99999999999999999999 days", "1e300 hours"] {
            assert!(parse_interval(big, None).is_err(), "{big}");
        }
    }

    #[test]
    fn text_formats() {
        let mut s = String::new();
        format_date(parse_date("0044-03-15 BC").unwrap(), &mut s);
        assert_eq!(s, "0044-03-15 BC");
        assert_eq!(iv("1 year 2 mons 3 days 04:05:06"), "1 year 2 mons 3 days 04:05:06");
        assert_eq!(iv("-1 day 2 hours"), "-1 days +02:00:00");
        assert_eq!(iv("1 day -2 hours"), "1 day -02:00:00");
        assert_eq!(iv("1.5 years"), "1 year 6 mons");
        assert_eq!(iv("1.5 months"), "1 mon 15 days");
        assert_eq!(iv("@ 1 day ago"), "-1 days");
        assert_eq!(iv("5"), "00:00:05");
        assert_eq!(iv("1 2:03:04"), "1 day 02:03:04");
        assert_eq!(iv("P1Y2M3DT4H5M6S"), "1 year 2 mons 3 days 04:05:06");
        let i = parse_interval("1 mon", None).unwrap();
        let mut o = String::new();
        format_interval(&i.div_f64(7.0).unwrap(), &mut o);
        assert_eq!(o, "4 days 06:51:25.6896");
    }
}
