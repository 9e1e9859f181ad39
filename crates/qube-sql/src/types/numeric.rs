//! PostgreSQL's `numeric`: exact decimals of (almost) any size, plus
//! `NaN`, `Infinity` and `-Infinity`.
//!
//! # Representation
//!
//! ```text
//! Numeric := Small(Decimal)      finite, fits rust_decimal (|mantissa| < 2^96, scale ≤ 28)
//!          | Big(Box<BigDec>)       finite, does not fit Small: mantissa BigInt, scale u32
//!          | NaN | PosInf | NegInf
//! ```
//!
//! A finite value is `mantissa / 10^scale`; the scale is PostgreSQL's
//! *display scale* (dscale): `1.500` keeps scale 3 and prints as `1.500`.
//!
//! Invariants (every constructor goes through `from_parts`/`small`):
//! - a finite value is `Small` whenever it fits one, so most values (money
//!   amounts, counts, averages) never allocate; `Big` is only for more than
//!   28 digits or a scale above 28;
//! - no negative zero (`-0.0` is `0.0`, as PostgreSQL prints it);
//! - PostgreSQL's limits hold: at most 131072 digits before the point and
//!   a scale of at most 16383 (`MAX_DSCALE`); a result beyond them is
//!   22003 "value overflows numeric format", checked before anything huge
//!   is built (`1e100000000` and `power(10, 1e9)` are refused at once).
//!
//! Equality and order are by value (`1.0 = 1.00`); `NaN` equals itself
//! and sorts above every other value, `Infinity` above every finite one,
//! `-Infinity` below (PostgreSQL's rule). The key encoding
//! (`encode_key`) strips trailing zeros so equal values give equal keys:
//! GROUP BY, DISTINCT, hash joins and unique indexes see one value.
//!
//! Arithmetic follows PostgreSQL's numeric.c: `+ - *` are exact (result
//! scale max(s1, s2), s1 + s2); `/` rounds half away from zero to
//! `select_div_scale`'s scale; `%` is exact with scale max(s1, s2); the
//! special values follow PostgreSQL 15's tables (Infinity - Infinity is
//! NaN, x / 0 is 22012 even for Infinity, NaN / 0 is NaN).

use std::cmp::Ordering;
use std::fmt;

use num_bigint::{BigInt, BigUint, Sign};
use num_integer::Integer;
use num_traits::{One, Signed, ToPrimitive, Zero};
use qube_common::{Error, Result};
use rust_decimal::Decimal;

/// The largest display scale a value may have (PostgreSQL's NUMERIC_DSCALE_MAX).
pub const MAX_DSCALE: u32 = 16383;
/// The most digits before the point (PostgreSQL: weight ≤ 32767 in base 10000).
pub const MAX_INT_DIGITS: i64 = 131072;
/// The largest scale a computed result gets (NUMERIC_MAX_DISPLAY_SCALE).
pub const MAX_DISPLAY_SCALE: i32 = 1000;
/// Significant digits a division or square root gives at least.
const MIN_SIG_DIGITS: i32 = 16;
/// log10(e) as PostgreSQL writes it (its rounding decides result scales).
#[allow(clippy::approx_constant)]
const PG_LOG10_E: f64 = 0.434294481903252;
/// The largest scale `round(x, n)` pads to (NUMERIC_MAX_RESULT_SCALE).
pub const MAX_RESULT_SCALE: i64 = 2000;

/// A `numeric` value (see the module doc).
#[derive(Clone, Debug)]
pub enum Numeric {
    Small(Decimal),
    Big(Box<BigDec>),
    NaN,
    PosInf,
    NegInf,
}

/// A finite value that does not fit `Small`: `m / 10^scale`.
#[derive(Clone, Debug)]
pub struct BigDec {
    pub m: BigInt,
    pub scale: u32,
}

pub fn overflow() -> Error {
    Error::user("22003", "value overflows numeric format")
}

pub fn div_zero() -> Error {
    Error::user("22012", "division by zero")
}

fn pow10(n: u32) -> BigInt {
    num_traits::pow(BigInt::from(10u8), n as usize)
}

fn pow10_i128(n: u32) -> Option<i128> {
    10i128.checked_pow(n)
}

/// Decimal digits of a magnitude (0 has none).
fn ndigits(m: &BigUint) -> u64 {
    if m.is_zero() {
        return 0;
    }
    if let Some(u) = m.to_u128() {
        return u.ilog10() as u64 + 1;
    }
    let bits = m.bits();
    const L: f64 = std::f64::consts::LOG10_2;
    let lo = ((bits - 1) as f64 * L).floor() as u64 + 1;
    let hi = (bits as f64 * L).floor() as u64 + 1;
    if lo == hi {
        return lo;
    }
    // 10^(hi-1) ≤ m means hi digits.
    if *m >= num_traits::pow(BigUint::from(10u8), (hi - 1) as usize) { hi } else { lo }
}

/// A Decimal without negative zero.
#[inline]
fn small(mut d: Decimal) -> Numeric {
    if d.is_sign_negative() && d.is_zero() {
        d.set_sign_positive(true);
    }
    Numeric::Small(d)
}

/// Rounds `q` (the truncated quotient of `n / d`, remainder `r`) half away
/// from zero.
fn round_quot(q: BigInt, r: &BigInt, d: &BigInt) -> BigInt {
    if (r.magnitude() << 1u32) >= *d.magnitude() {
        if (r.sign() == Sign::Minus) != (d.sign() == Sign::Minus) { q - 1 } else { q + 1 }
    } else {
        q
    }
}

fn round_quot_i128(n: i128, d: i128) -> Option<i128> {
    let q = n / d;
    let r = n % d;
    if r.unsigned_abs().checked_mul(2)? >= d.unsigned_abs() {
        Some(if (r < 0) != (d < 0) { q - 1 } else { q + 1 })
    } else {
        Some(q)
    }
}

impl Numeric {
    pub const ZERO: Numeric = Numeric::Small(Decimal::ZERO);
    pub const ONE: Numeric = Numeric::Small(Decimal::ONE);

    /// The value `m / 10^scale`, checked against PostgreSQL's limits.
    pub fn from_parts(m: BigInt, scale: u32) -> Result<Numeric> {
        if scale > MAX_DSCALE {
            return Err(overflow());
        }
        if let Some(i) = m.to_i128()
            && scale <= 28
            && i.unsigned_abs() < (1u128 << 96)
        {
            return Ok(small(Decimal::from_i128_with_scale(i, scale)));
        }
        if !m.is_zero() && ndigits(m.magnitude()) as i64 - scale as i64 > MAX_INT_DIGITS {
            return Err(overflow());
        }
        Ok(Numeric::Big(Box::new(BigDec { m, scale })))
    }

    pub fn from_i128_scale(i: i128, scale: u32) -> Result<Numeric> {
        if scale <= 28 && i.unsigned_abs() < (1u128 << 96) {
            Ok(small(Decimal::from_i128_with_scale(i, scale)))
        } else {
            Numeric::from_parts(BigInt::from(i), scale)
        }
    }

    pub fn from_i64(i: i64) -> Numeric {
        Numeric::Small(Decimal::from(i))
    }

    pub fn from_decimal(d: Decimal) -> Numeric {
        small(d)
    }

    pub fn is_nan(&self) -> bool {
        matches!(self, Numeric::NaN)
    }

    pub fn is_finite(&self) -> bool {
        matches!(self, Numeric::Small(_) | Numeric::Big(_))
    }

    pub fn is_special(&self) -> bool {
        !self.is_finite()
    }

    /// -1, 0 or 1 (NaN: 0; use `is_nan` first where it matters).
    pub fn signum(&self) -> i32 {
        match self {
            Numeric::Small(d) => {
                if d.is_zero() {
                    0
                } else if d.is_sign_negative() {
                    -1
                } else {
                    1
                }
            }
            Numeric::Big(b) => match b.m.sign() {
                Sign::Minus => -1,
                Sign::NoSign => 0,
                Sign::Plus => 1,
            },
            Numeric::NaN => 0,
            Numeric::PosInf => 1,
            Numeric::NegInf => -1,
        }
    }

    pub fn is_zero(&self) -> bool {
        self.is_finite() && self.signum() == 0
    }

    /// The display scale of a finite value (0 for the special ones).
    pub fn scale(&self) -> u32 {
        match self {
            Numeric::Small(d) => d.scale(),
            Numeric::Big(b) => b.scale,
            _ => 0,
        }
    }

    /// Mantissa and scale of a finite value.
    pub fn parts(&self) -> Option<(BigInt, u32)> {
        match self {
            Numeric::Small(d) => Some((BigInt::from(d.mantissa()), d.scale())),
            Numeric::Big(b) => Some((b.m.clone(), b.scale)),
            _ => None,
        }
    }

    /// The rust_decimal value, if this is one.
    pub fn as_decimal(&self) -> Option<Decimal> {
        match self {
            Numeric::Small(d) => Some(*d),
            _ => None,
        }
    }

    // ----- text -----

    /// PostgreSQL's numeric input: optional spaces and sign, digits with
    /// an optional point, an optional exponent; or NaN, Infinity, inf
    /// (any case, signed infinities).
    pub fn parse(s: &str) -> Result<Numeric> {
        let invalid =
            || Error::user("22P02", format!("invalid input syntax for type numeric: \"{s}\""));
        let t = s.trim_matches(|c: char| c.is_ascii_whitespace() || c == '\x0b');
        if t.is_empty() {
            return Err(invalid());
        }
        let b = t.as_bytes();
        let body = t.strip_prefix(['+', '-']).unwrap_or(t);
        if body.starts_with(|c: char| c.is_ascii_alphabetic()) {
            let l = t.to_ascii_lowercase();
            return match l.as_str() {
                "nan" => Ok(Numeric::NaN),
                "infinity" | "+infinity" | "inf" | "+inf" => Ok(Numeric::PosInf),
                "-infinity" | "-inf" => Ok(Numeric::NegInf),
                _ => Err(invalid()),
            };
        }
        let mut i = 0;
        let neg = match b[0] {
            b'-' => {
                i = 1;
                true
            }
            b'+' => {
                i = 1;
                false
            }
            _ => false,
        };
        let mut digits: Vec<u8> = Vec::new();
        let mut frac: i64 = 0;
        let mut seen_point = false;
        let mut any = false;
        while i < b.len() {
            match b[i] {
                c @ b'0'..=b'9' => {
                    any = true;
                    if !(digits.is_empty() && c == b'0') {
                        digits.push(c);
                    }
                    if seen_point {
                        frac += 1;
                    }
                }
                b'.' if !seen_point => seen_point = true,
                _ => break,
            }
            i += 1;
        }
        if !any {
            return Err(invalid());
        }
        let mut exp: i64 = 0;
        if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
            i += 1;
            let mut eneg = false;
            if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
                eneg = b[i] == b'-';
                i += 1;
            }
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                exp = exp.saturating_mul(10).saturating_add((b[i] - b'0') as i64);
                i += 1;
            }
            if i == start {
                return Err(invalid());
            }
            if exp >= (i32::MAX / 2) as i64 {
                return Err(overflow());
            }
            if eneg {
                exp = -exp;
            }
        }
        if i != b.len() {
            return Err(invalid());
        }
        // value = digits × 10^-(frac - exp); the display scale is never negative.
        let scale = frac - exp;
        let dscale = scale.max(0);
        if dscale > MAX_DSCALE as i64 {
            return Err(overflow());
        }
        if digits.is_empty() {
            return Numeric::from_i128_scale(0, dscale as u32);
        }
        // Digits before the point of the value.
        if digits.len() as i64 - scale > MAX_INT_DIGITS {
            return Err(overflow());
        }
        let zeros = (dscale - scale) as u32; // appended when the exponent passes the digits
        if digits.len() <= 38 {
            let mut v: i128 = 0;
            for &c in &digits {
                v = v * 10 + (c - b'0') as i128;
            }
            if let Some(v) = pow10_i128(zeros).and_then(|p| v.checked_mul(p)) {
                return Numeric::from_i128_scale(if neg { -v } else { v }, dscale as u32);
            }
        }
        let mut m = BigInt::parse_bytes(&digits, 10).ok_or_else(invalid)?;
        if zeros > 0 {
            m *= pow10(zeros);
        }
        if neg {
            m = -m;
        }
        Numeric::from_parts(m, dscale as u32)
    }

    // ----- conversions -----

    /// The nearest double (through the text, as PostgreSQL does).
    pub fn to_f64(&self) -> f64 {
        match self {
            Numeric::NaN => f64::NAN,
            Numeric::PosInf => f64::INFINITY,
            Numeric::NegInf => f64::NEG_INFINITY,
            Numeric::Small(d) if d.scale() == 0 && d.mantissa().unsigned_abs() < (1 << 53) => {
                d.mantissa() as f64
            }
            _ => self.to_string().parse().unwrap_or(f64::NAN),
        }
    }

    /// Rounded half away from zero to an integer; None for NaN and the
    /// infinities (the caller words the error), and for values beyond i128.
    pub fn to_i128_round(&self) -> Option<i128> {
        match self {
            Numeric::Small(d) => {
                let r = d.round_dp_with_strategy(
                    0,
                    rust_decimal::RoundingStrategy::MidpointAwayFromZero,
                );
                Some(r.mantissa() / 10i128.pow(r.scale()))
            }
            Numeric::Big(_) => match self.round_scale(0).ok()? {
                Numeric::Small(d) => Some(d.mantissa()),
                Numeric::Big(b) => b.m.to_i128(),
                _ => None,
            },
            _ => None,
        }
    }

    /// A cast to an integer type named `ty`: NaN and the infinities are
    /// 0A000, a value beyond `lo..=hi` is 22003 "`ty` out of range".
    pub fn to_int(&self, ty: &str, lo: i64, hi: i64) -> Result<i64> {
        match self {
            Numeric::NaN => Err(Error::user("0A000", format!("cannot convert NaN to {ty}"))),
            Numeric::PosInf | Numeric::NegInf => {
                Err(Error::user("0A000", format!("cannot convert infinity to {ty}")))
            }
            _ => self
                .to_i128_round()
                .filter(|i| (lo as i128..=hi as i128).contains(i))
                .map(|i| i as i64)
                .ok_or_else(|| Error::user("22003", format!("{ty} out of range"))),
        }
    }

    // ----- comparison -----

    fn rank(&self) -> u8 {
        match self {
            Numeric::NegInf => 0,
            Numeric::Small(_) | Numeric::Big(_) => 1,
            Numeric::PosInf => 2,
            Numeric::NaN => 3,
        }
    }

    // ----- arithmetic -----

    pub fn neg(&self) -> Numeric {
        match self {
            Numeric::Small(d) => small(-*d),
            Numeric::Big(b) => Numeric::Big(Box::new(BigDec { m: -b.m.clone(), scale: b.scale })),
            Numeric::NaN => Numeric::NaN,
            Numeric::PosInf => Numeric::NegInf,
            Numeric::NegInf => Numeric::PosInf,
        }
    }

    pub fn abs(&self) -> Numeric {
        if self.signum() < 0 { self.neg() } else { self.clone() }
    }

    /// sign(): -1, 0 or 1 (scale 0); NaN for NaN.
    pub fn sign(&self) -> Numeric {
        if self.is_nan() {
            return Numeric::NaN;
        }
        Numeric::from_i64(self.signum() as i64)
    }

    pub fn add(&self, o: &Numeric) -> Result<Numeric> {
        use Numeric::*;
        match (self, o) {
            (Small(a), Small(b)) => {
                if let Some(r) = a.checked_add(*b)
                    && r.scale() == a.scale().max(b.scale())
                {
                    return Ok(small(r));
                }
            }
            (NaN, _) | (_, NaN) => return Ok(NaN),
            (PosInf, NegInf) | (NegInf, PosInf) => return Ok(NaN),
            (PosInf, _) | (_, PosInf) => return Ok(PosInf),
            (NegInf, _) | (_, NegInf) => return Ok(NegInf),
            _ => {}
        }
        let (ma, sa) = self.parts().unwrap_or_default();
        let (mb, sb) = o.parts().unwrap_or_default();
        let s = sa.max(sb);
        Numeric::from_parts(ma * pow10(s - sa) + mb * pow10(s - sb), s)
    }

    pub fn sub(&self, o: &Numeric) -> Result<Numeric> {
        if let (Numeric::Small(a), Numeric::Small(b)) = (self, o)
            && let Some(r) = a.checked_sub(*b)
            && r.scale() == a.scale().max(b.scale())
        {
            return Ok(small(r));
        }
        self.add(&o.neg())
    }

    pub fn mul(&self, o: &Numeric) -> Result<Numeric> {
        use Numeric::*;
        match (self, o) {
            (Small(a), Small(b)) => {
                if let Some(r) = a.checked_mul(*b)
                    && r.scale() == a.scale() + b.scale()
                {
                    return Ok(small(r));
                }
            }
            (NaN, _) | (_, NaN) => return Ok(NaN),
            (PosInf | NegInf, _) | (_, PosInf | NegInf) => {
                let s = self.signum() * o.signum();
                return Ok(match s {
                    0 => NaN,
                    1 => PosInf,
                    _ => NegInf,
                });
            }
            _ => {}
        }
        let (ma, sa) = self.parts().unwrap_or_default();
        let (mb, sb) = o.parts().unwrap_or_default();
        // Refuse a product beyond the limits before building it.
        let est = |m: &BigInt, s: u32| m.bits() as i64 * 30103 / 100000 + 1 - s as i64;
        if !ma.is_zero() && !mb.is_zero() && est(&ma, sa) + est(&mb, sb) > MAX_INT_DIGITS + 2 {
            return Err(overflow());
        }
        let (m, scale) = (ma * mb, sa + sb);
        if scale > MAX_DSCALE {
            return Numeric::Big(Box::new(BigDec { m, scale })).round_scale(MAX_DSCALE as i64);
        }
        Numeric::from_parts(m, scale)
    }

    /// What `/` and div() give when either side is NaN or infinite, or the
    /// divisor is zero (22012); None for two finite values to divide.
    fn div_special(&self, o: &Numeric) -> Option<Result<Numeric>> {
        use Numeric::*;
        Some(match (self, o) {
            (NaN, _) | (_, NaN) => Ok(NaN),
            (PosInf | NegInf, PosInf | NegInf) => Ok(NaN),
            (PosInf | NegInf, _) => match o.signum() * self.signum() {
                0 => Err(div_zero()),
                1 => Ok(PosInf),
                _ => Ok(NegInf),
            },
            (_, PosInf | NegInf) => Ok(Numeric::ZERO),
            _ if o.is_zero() => Err(div_zero()),
            _ => return None,
        })
    }

    /// `/`: PostgreSQL's select_div_scale, rounded half away from zero.
    pub fn div(&self, o: &Numeric) -> Result<Numeric> {
        if let Some(r) = self.div_special(o) {
            return r;
        }
        let rscale = div_scale(self, o);
        self.div_to_scale(o, rscale)
    }

    /// Both finite, `o` non-zero: the quotient rounded to `rscale`.
    pub fn div_to_scale(&self, o: &Numeric, rscale: u32) -> Result<Numeric> {
        let (sa, sb) = (self.scale(), o.scale());
        // q = a_m × 10^(rscale + sb - sa) / b_m.
        let k = rscale as i64 + sb as i64 - sa as i64;
        if let (Small(a), Small(b)) = (self, o)
            && k >= 0
            && let Some(n) = pow10_i128(k as u32).and_then(|p| a.mantissa().checked_mul(p))
            && let Some(q) = round_quot_i128(n, b.mantissa())
        {
            return Numeric::from_i128_scale(q, rscale);
        }
        let (ma, _) = self.parts().unwrap_or_default();
        let (mb, _) = o.parts().unwrap_or_default();
        let (n, d) =
            if k >= 0 { (ma * pow10(k as u32), mb) } else { (ma, mb * pow10((-k) as u32)) };
        let (q, r) = n.div_rem(&d);
        Numeric::from_parts(round_quot(q, &r, &d), rscale)
    }

    /// `%`: the remainder of the truncated quotient (sign of the dividend),
    /// scale max(s1, s2).
    pub fn rem(&self, o: &Numeric) -> Result<Numeric> {
        use Numeric::*;
        match (self, o) {
            (NaN, _) | (_, NaN) => return Ok(NaN),
            (PosInf | NegInf, _) => {
                return if o.is_zero() { Err(div_zero()) } else { Ok(NaN) };
            }
            (_, PosInf | NegInf) => return Ok(self.clone()),
            _ => {}
        }
        if o.is_zero() {
            return Err(div_zero());
        }
        if let (Small(a), Small(b)) = (self, o) {
            let s = a.scale().max(b.scale());
            let x = pow10_i128(s - a.scale()).and_then(|p| a.mantissa().checked_mul(p));
            let y = pow10_i128(s - b.scale()).and_then(|p| b.mantissa().checked_mul(p));
            if let (Some(x), Some(y)) = (x, y) {
                return Numeric::from_i128_scale(x % y, s);
            }
        }
        let (ma, sa) = self.parts().unwrap_or_default();
        let (mb, sb) = o.parts().unwrap_or_default();
        let s = sa.max(sb);
        let (a, b) = (ma * pow10(s - sa), mb * pow10(s - sb));
        Numeric::from_parts(a % b, s)
    }

    /// div(a, b): the truncated quotient (scale 0).
    pub fn div_trunc(&self, o: &Numeric) -> Result<Numeric> {
        if let Some(r) = self.div_special(o) {
            return r;
        }
        let (ma, sa) = self.parts().unwrap_or_default();
        let (mb, sb) = o.parts().unwrap_or_default();
        let s = sa.max(sb);
        Numeric::from_parts((ma * pow10(s - sa)) / (mb * pow10(s - sb)), 0)
    }

    /// round(x, n) (`trunc` false) or trunc(x, n) (`trunc` true): to `n`
    /// places after the point (before it when negative); scale max(n, 0).
    pub fn round_to(&self, n: i64, trunc: bool) -> Result<Numeric> {
        // PostgreSQL's bounds: one digit past the largest weight, the largest dscale.
        self.round_impl(n.clamp(-(MAX_INT_DIGITS + 1), MAX_DSCALE as i64), trunc)
    }

    fn round_impl(&self, n: i64, trunc: bool) -> Result<Numeric> {
        if !self.is_finite() {
            return Ok(self.clone());
        }
        let s = self.scale() as i64;
        if n >= s {
            if let Numeric::Small(d) = self
                && n <= 28
            {
                let mut d = *d;
                d.rescale(n as u32);
                if d.scale() as i64 == n {
                    return Ok(small(d));
                }
            }
            let (m, _) = self.parts().unwrap_or_default();
            return Numeric::from_parts(m * pow10((n - s) as u32), n as u32);
        }
        // Fewer places: drop s - n digits.
        if let Numeric::Small(d) = self
            && n >= 0
        {
            let strategy = if trunc {
                rust_decimal::RoundingStrategy::ToZero
            } else {
                rust_decimal::RoundingStrategy::MidpointAwayFromZero
            };
            let mut r = d.round_dp_with_strategy(n as u32, strategy);
            r.rescale(n as u32);
            return Ok(small(r));
        }
        let (m, _) = self.parts().unwrap_or_default();
        let drop = (s - n) as u64;
        let digits = ndigits(m.magnitude());
        if drop > digits + 1 {
            return Numeric::from_i128_scale(0, n.max(0) as u32);
        }
        let d = pow10(drop as u32);
        let (q, r) = m.div_rem(&d);
        let q = if trunc { q } else { round_quot(q, &r, &d) };
        if n < 0 {
            Numeric::from_parts(q * pow10((-n) as u32), 0)
        } else {
            Numeric::from_parts(q, n as u32)
        }
    }

    /// round to a scale (rounding half away from zero).
    pub fn round_scale(&self, n: i64) -> Result<Numeric> {
        self.round_impl(n, false)
    }

    /// ceil (`up`) or floor: an integral value, scale 0.
    pub fn ceil_floor(&self, up: bool) -> Result<Numeric> {
        if !self.is_finite() {
            return Ok(self.clone());
        }
        if let Numeric::Small(d) = self {
            return Ok(small(if up { d.ceil() } else { d.floor() }));
        }
        let (m, s) = self.parts().unwrap_or_default();
        let (q, r) = m.div_mod_floor(&pow10(s));
        Numeric::from_parts(if up && !r.is_zero() { q + 1 } else { q }, 0)
    }

    /// numeric(p, s): rounded to `s` places; more than `p - s` digits before
    /// the point is 22003; Infinity does not fit, NaN does.
    pub fn apply_typmod(&self, p: u32, s: i32) -> Result<Numeric> {
        let field = || Error::user("22003", "numeric field overflow");
        match self {
            Numeric::NaN => return Ok(Numeric::NaN),
            Numeric::PosInf | Numeric::NegInf => {
                return Err(field().with_detail(format!(
                    "A field with precision {p}, scale {s} cannot hold an infinite value."
                )));
            }
            _ => {}
        }
        let r = self.round_scale(s as i64)?;
        let max = p as i64 - s as i64;
        if !r.is_zero() && r.exponent() > max {
            let (pre, n) = if max != 0 { ("10^", max) } else { ("", 1) };
            return Err(field().with_detail(format!(
                "A field with precision {p}, scale {s} must round to an absolute value less than {pre}{n}."
            )));
        }
        Ok(r)
    }

    /// For a non-zero finite value: the number of digits before the point
    /// that its leading digit implies (`123.4` → 3, `0.05` → -1).
    pub fn exponent(&self) -> i64 {
        match self {
            Numeric::Small(d) => {
                let m = d.mantissa().unsigned_abs();
                if m == 0 { 0 } else { m.ilog10() as i64 + 1 - d.scale() as i64 }
            }
            Numeric::Big(b) => ndigits(b.m.magnitude()) as i64 - b.scale as i64,
            _ => 0,
        }
    }

    /// The magnitude's decimal digits (no sign, no leading zeros) and scale.
    fn digit_string(&self) -> (String, u32) {
        match self {
            Numeric::Small(d) => {
                let m = d.mantissa().unsigned_abs();
                (if m == 0 { String::new() } else { m.to_string() }, d.scale())
            }
            Numeric::Big(b) => {
                let s = b.m.magnitude().to_string();
                (if s == "0" { String::new() } else { s }, b.scale)
            }
            _ => (String::new(), 0),
        }
    }

    /// Weight and first digit in PostgreSQL's base-10000 form (0, 0 for zero).
    fn base10000_lead(&self) -> (i64, u32) {
        if self.is_zero() || !self.is_finite() {
            return (0, 0);
        }
        let (digits, _) = self.digit_string();
        let p = self.exponent() - 1; // power of ten of the leading digit
        let w = p.div_euclid(4);
        let k = (p - 4 * w + 1) as usize; // digits of the first group (1..=4)
        let mut first = 0u32;
        for i in 0..k {
            first = first * 10 + digits.as_bytes().get(i).map_or(0, |c| (c - b'0') as u32);
        }
        (w, first)
    }

    /// Digits after trimming trailing zeros (`min_scale`).
    pub fn min_scale(&self) -> u32 {
        let (digits, scale) = self.digit_string();
        let trailing = digits.len() - digits.trim_end_matches('0').len();
        if digits.is_empty() { 0 } else { scale.saturating_sub(trailing as u32) }
    }

    /// trim_scale: the same value at `min_scale`.
    pub fn trim_scale(&self) -> Result<Numeric> {
        if !self.is_finite() {
            return Ok(self.clone());
        }
        self.round_scale(self.min_scale() as i64)
    }

    // ----- square root -----

    /// sqrt with PostgreSQL's scale; 2201F for a negative value.
    pub fn sqrt(&self) -> Result<Numeric> {
        match self {
            Numeric::NaN | Numeric::PosInf => return Ok(self.clone()),
            Numeric::NegInf => return Err(neg_sqrt()),
            _ => {}
        }
        if self.signum() < 0 {
            return Err(neg_sqrt());
        }
        // PostgreSQL: sweight = (weight + 1) * 4 / 2 - 1 in base-10000 weight.
        let (w, _) = self.base10000_lead();
        let sweight = (w + 1) * 4 / 2 - 1;
        let rscale = (MIN_SIG_DIGITS as i64 - sweight)
            .max(self.scale() as i64)
            .clamp(0, MAX_DISPLAY_SCALE as i64) as u32;
        self.sqrt_scale(rscale)
    }

    /// The square root of a non-negative finite value, rounded to `rscale`.
    pub fn sqrt_scale(&self, rscale: u32) -> Result<Numeric> {
        if self.signum() < 0 {
            return Err(neg_sqrt());
        }
        let (m, s) = self.parts().unwrap_or_default();
        // floor(sqrt(m × 10^(2(rscale+1) - s))) has rscale + 1 decimals.
        let e = 2 * (rscale as i64 + 1) - s as i64;
        let n = if e >= 0 {
            m * pow10(e as u32)
        } else {
            m / pow10((-e) as u32) // only drops digits below the last one needed
        };
        let r = n.sqrt();
        let (q, last) = r.div_rem(&BigInt::from(10u8));
        let q = if last >= BigInt::from(5u8) { q + 1 } else { q };
        Numeric::from_parts(q, rscale)
    }

    // ----- keys -----

    /// Order-preserving key bytes (see `encoding`'s key format): equal
    /// values give equal bytes whatever their scale.
    pub fn encode_key(&self, out: &mut Vec<u8>) {
        match self {
            Numeric::NaN => return out.push(4),
            Numeric::PosInf => return out.push(3),
            Numeric::NegInf => return out.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0]),
            _ => {}
        }
        let sign = self.signum();
        if sign == 0 {
            return out.push(1);
        }
        out.push(if sign < 0 { 0 } else { 2 });
        let start = out.len();
        let exp = self.exponent();
        if (-32767..=32766).contains(&exp) {
            out.extend_from_slice(&((exp as i16 as u16) ^ 0x8000).to_be_bytes());
        } else {
            out.extend_from_slice(if exp > 0 { &[0xff, 0xff] } else { &[0, 0] });
            out.extend_from_slice(&((exp as i32 as u32) ^ 0x8000_0000).to_be_bytes());
        }
        match self {
            Numeric::Small(d) => {
                let mut m = d.mantissa().unsigned_abs();
                while m % 10 == 0 {
                    m /= 10;
                }
                let mut buf = [0u8; 40];
                let mut i = buf.len();
                while m > 0 {
                    i -= 1;
                    buf[i] = b'0' + (m % 10) as u8;
                    m /= 10;
                }
                out.extend_from_slice(&buf[i..]);
            }
            _ => {
                let (digits, _) = self.digit_string();
                out.extend_from_slice(digits.trim_end_matches('0').as_bytes());
            }
        }
        out.push(0);
        if sign < 0 {
            for b in &mut out[start..] {
                *b = !*b;
            }
        }
    }

    /// PostgreSQL's binary form: ndigits, weight, sign, dscale (i16 BE
    /// each), then base-10000 digits.
    pub fn to_pg_binary(&self, out: &mut Vec<u8>) {
        let special = |out: &mut Vec<u8>, sign: u16| {
            out.extend_from_slice(&[0, 0, 0, 0]);
            out.extend_from_slice(&sign.to_be_bytes());
            out.extend_from_slice(&[0, 0]);
        };
        match self {
            Numeric::NaN => return special(out, 0xC000),
            Numeric::PosInf => return special(out, 0xD000),
            Numeric::NegInf => return special(out, 0xF000),
            _ => {}
        }
        let (digits, scale) = self.digit_string();
        let neg = self.signum() < 0;
        // Pad the integer part on the left and the fraction on the right to
        // whole groups of four.
        let int_len = digits.len() as i64 - scale as i64;
        let mut s = String::new();
        let (int_part, frac_part): (String, String) = if int_len > 0 {
            (digits[..int_len as usize].into(), digits[int_len as usize..].into())
        } else {
            (String::new(), "0".repeat((-int_len) as usize) + &digits)
        };
        let lpad = (4 - int_part.len() % 4) % 4;
        s.extend(std::iter::repeat_n('0', lpad));
        s.push_str(&int_part);
        let int_groups = s.len() / 4;
        s.push_str(&frac_part);
        s.extend(std::iter::repeat_n('0', (4 - frac_part.len() % 4) % 4));
        let mut groups: Vec<u16> = s
            .as_bytes()
            .chunks(4)
            .map(|c| c.iter().fold(0u16, |a, d| a * 10 + (d - b'0') as u16))
            .collect();
        let mut weight = int_groups as i64 - 1;
        // Strip leading and trailing zero groups.
        let lead = groups.iter().take_while(|g| **g == 0).count();
        groups.drain(..lead);
        weight -= lead as i64;
        while groups.last() == Some(&0) {
            groups.pop();
        }
        if groups.is_empty() {
            weight = 0;
        }
        out.extend_from_slice(&(groups.len() as u16).to_be_bytes());
        out.extend_from_slice(&(weight as i16).to_be_bytes());
        out.extend_from_slice(&(if neg { 0x4000u16 } else { 0 }).to_be_bytes());
        out.extend_from_slice(&(scale as u16).to_be_bytes());
        for g in groups {
            out.extend_from_slice(&g.to_be_bytes());
        }
    }

    /// Reads PostgreSQL's binary form; None if malformed.
    pub fn from_pg_binary(b: &[u8]) -> Option<Result<Numeric>> {
        let word = |i: usize| b.get(2 * i..2 * i + 2).map(|w| u16::from_be_bytes([w[0], w[1]]));
        let ndigits = word(0)? as usize;
        let weight = word(1)? as i16 as i64;
        let sign = word(2)?;
        let dscale = word(3)? as u32;
        if b.len() != 8 + 2 * ndigits {
            return None;
        }
        match sign {
            0xC000 => return Some(Ok(Numeric::NaN)),
            0xD000 => return Some(Ok(Numeric::PosInf)),
            0xF000 => return Some(Ok(Numeric::NegInf)),
            0 | 0x4000 => {}
            _ => return None,
        }
        if dscale > MAX_DSCALE {
            return None;
        }
        let mut m = BigInt::zero();
        let base = BigInt::from(10000u16);
        for i in 0..ndigits {
            let d = word(4 + i)?;
            if d >= 10000 {
                return None;
            }
            m = m * &base + BigInt::from(d);
        }
        // m × 10000^(weight - ndigits + 1), then to dscale.
        let e = 4 * (weight - ndigits as i64 + 1) + dscale as i64;
        if e > 4 * (MAX_INT_DIGITS + 4) {
            return Some(Err(overflow()));
        }
        let m = if e >= 0 { m * pow10(e as u32) } else { m / pow10((-e) as u32) };
        Some(Numeric::from_parts(if sign == 0x4000 { -m } else { m }, dscale))
    }

    // ----- row encoding (tag 21 payload) -----

    /// The payload of a value that is not `Small`: kind (0 finite, 1 NaN,
    /// 2 Infinity, 3 -Infinity); finite: scale u32 LE, sign (0/1), then the
    /// magnitude's little-endian bytes.
    pub fn encode_payload(&self, out: &mut Vec<u8>) {
        match self {
            Numeric::NaN => out.push(1),
            Numeric::PosInf => out.push(2),
            Numeric::NegInf => out.push(3),
            _ => {
                let (m, s) = self.parts().unwrap_or_default();
                out.push(0);
                out.extend_from_slice(&s.to_le_bytes());
                out.push((m.sign() == Sign::Minus) as u8);
                out.extend_from_slice(&m.magnitude().to_bytes_le());
            }
        }
    }

    pub fn decode_payload(b: &[u8]) -> Option<Numeric> {
        match *b.first()? {
            1 => Some(Numeric::NaN),
            2 => Some(Numeric::PosInf),
            3 => Some(Numeric::NegInf),
            0 => {
                let s = u32::from_le_bytes(b.get(1..5)?.try_into().ok()?);
                let neg = *b.get(5)? == 1;
                let mag = BigUint::from_bytes_le(b.get(6..)?);
                let m = BigInt::from_biguint(if neg { Sign::Minus } else { Sign::Plus }, mag);
                Numeric::from_parts(m, s).ok()
            }
            _ => None,
        }
    }
}

// ----- logarithms, exp and power (PostgreSQL's scale rules; the digits
// are computed in fixed point with guard digits, then rounded) -----

/// `x` (finite) as a fixed-point integer with `w` decimals (truncated).
fn to_fixed(x: &Numeric, w: u32) -> BigInt {
    let (m, s) = x.parts().unwrap_or_default();
    if w >= s { m * pow10(w - s) } else { m / pow10(s - w) }
}

/// ln of a positive fixed-point value `f` (scale `w`), in scale `w`.
fn fixed_ln(f: &BigInt, w: u32) -> BigInt {
    let one = pow10(w);
    // ln(f) = ln(y) + k·ln(10) with y = f / 10^k in [0.1, 1].
    let digits = ndigits(f.magnitude()) as i64;
    let k = digits - w as i64;
    let y = if k >= 0 { f / pow10(k as u32) } else { f * pow10((-k) as u32) };
    let mut r = fixed_ln_reduced(&y, w, &one);
    if k != 0 {
        let tenth = pow10(w - 1);
        let ln10 = -fixed_ln_reduced(&tenth, w, &one);
        r += ln10 * k;
    }
    r
}

/// ln(y) for y (scale `w`) in [0.1, 10]: square roots bring y near 1,
/// then 2·atanh((y−1)/(y+1)).
fn fixed_ln_reduced(y: &BigInt, w: u32, one: &BigInt) -> BigInt {
    let mut y = y.clone();
    let mut doublings = 1u32;
    let near = pow10(w.saturating_sub(2)); // |y − 1| < 0.01
    while (&y - one).magnitude() > near.magnitude() {
        y = (&y * one).sqrt();
        doublings += 1;
    }
    let z = ((&y - one) * one) / (&y + one);
    let z2 = (&z * &z) / one;
    let mut term = z.clone();
    let mut sum = z;
    let mut n = 1u32;
    loop {
        term = (&term * &z2) / one;
        n += 2;
        let t = &term / n;
        if t.is_zero() {
            break;
        }
        sum += t;
    }
    sum << doublings
}

/// exp of a fixed-point value `x` (scale `w`), in scale `w`; the caller
/// keeps |x| below about 7000.
fn fixed_exp(x: &BigInt, w: u32) -> BigInt {
    let one = pow10(w);
    // Halve x until |x| < 0.001, sum the series, square back.
    let mut k = 0u32;
    let limit = pow10(w.saturating_sub(3));
    let mut r = x.clone();
    while r.magnitude() > limit.magnitude() {
        r /= 2;
        k += 1;
    }
    let mut term = one.clone();
    let mut sum = one.clone();
    let mut n = 0u32;
    loop {
        n += 1;
        term = (&term * &r) / &one / n;
        if term.is_zero() {
            break;
        }
        sum += &term;
    }
    for _ in 0..k {
        sum = (&sum * &sum) / &one;
    }
    sum
}

/// PostgreSQL's estimate_ln_dweight: the decimal weight of ln(x).
fn estimate_ln_dweight(x: &Numeric) -> i64 {
    if x.signum() <= 0 {
        return 0;
    }
    let lo = Numeric::Small(Decimal::new(9, 1));
    let hi = Numeric::Small(Decimal::new(11, 1));
    if *x >= lo && *x <= hi {
        let d = x.sub(&Numeric::ONE).unwrap_or(Numeric::ZERO);
        if d.is_zero() {
            return 0;
        }
        let (w, digs) = d.base10000_digits(1);
        return w * 4 + (digs[0] as f64).log10() as i64;
    }
    let (w, digs) = x.base10000_digits(2);
    let mut digits = digs[0] as f64;
    let mut dweight = w * 4;
    if digs.len() > 1 {
        digits = digits * 10000.0 + digs[1] as f64;
        dweight -= 4;
    }
    let ln = digits.ln() + dweight as f64 * std::f64::consts::LN_10;
    ln.abs().log10() as i64
}

fn clamp_rscale(r: i64) -> u32 {
    r.clamp(0, MAX_DISPLAY_SCALE as i64) as u32
}

/// ln(x) of a positive finite value, rounded to `rscale`.
fn ln_to(x: &Numeric, rscale: u32) -> Result<Numeric> {
    let w = rscale + 12 + (ndigits(&BigUint::from(x.exponent().unsigned_abs() + 1)) as u32);
    let f = to_fixed(x, w + 8);
    let l = fixed_ln(&f, w + 8);
    Numeric::from_parts(l, w + 8)?.round_scale(rscale as i64)
}

fn log_error(x: &Numeric) -> Option<Error> {
    match x.signum() {
        0 if x.is_finite() => Some(Error::user("2201E", "cannot take logarithm of zero")),
        s if s < 0 => Some(Error::user("2201E", "cannot take logarithm of a negative number")),
        _ => None,
    }
}

impl Numeric {
    /// The first `n` base-10000 digits (fewer if the value has fewer) and
    /// the weight of the first, as PostgreSQL stores them.
    fn base10000_digits(&self, n: usize) -> (i64, Vec<u32>) {
        let (digits, _) = self.digit_string();
        if digits.is_empty() {
            return (0, vec![0]);
        }
        let p = self.exponent() - 1;
        let w = p.div_euclid(4);
        let lead = (p - 4 * w + 1) as usize; // digits in the first group
        let padded = format!("{}{}", "0".repeat(4 - lead), digits.trim_end_matches('0'));
        let groups: Vec<u32> = padded
            .as_bytes()
            .chunks(4)
            .take(n)
            .map(|c| {
                let mut g = 0u32;
                for i in 0..4 {
                    g = g * 10 + c.get(i).map_or(0, |d| (d - b'0') as u32);
                }
                g
            })
            .collect();
        (w, groups)
    }

    /// ln(x) with PostgreSQL's scale.
    pub fn ln(&self) -> Result<Numeric> {
        match self {
            Numeric::NaN | Numeric::PosInf => return Ok(self.clone()),
            Numeric::NegInf => return Err(log_error(self).unwrap_or_else(overflow)),
            _ => {}
        }
        if let Some(e) = log_error(self) {
            return Err(e);
        }
        let rscale = clamp_rscale(
            (MIN_SIG_DIGITS as i64 - estimate_ln_dweight(self)).max(self.scale() as i64),
        );
        ln_to(self, rscale)
    }

    /// log(base, x) with PostgreSQL's scale (log_var); log(x) is log(10, x).
    pub fn log(base: &Numeric, x: &Numeric) -> Result<Numeric> {
        if base.is_nan() || x.is_nan() {
            return Ok(Numeric::NaN);
        }
        if let Some(e) = log_error(base).or_else(|| log_error(x)) {
            return Err(e);
        }
        if !base.is_finite() || !x.is_finite() {
            // PostgreSQL 15: log(Inf, Inf) is NaN, log(Inf, x) is 0, log(b, Inf) is Inf.
            return Ok(match (base.is_finite(), x.is_finite()) {
                (false, false) => Numeric::NaN,
                (false, true) => Numeric::ZERO,
                _ => {
                    if *base < Numeric::ONE {
                        Numeric::NegInf
                    } else {
                        Numeric::PosInf
                    }
                }
            });
        }
        if *base == Numeric::ONE {
            return Err(div_zero());
        }
        let db = estimate_ln_dweight(base);
        let dx = estimate_ln_dweight(x);
        let result_dweight = dx - db;
        let rscale = clamp_rscale(
            (MIN_SIG_DIGITS as i64 - result_dweight).max(base.scale() as i64).max(x.scale() as i64),
        );
        let w = rscale as i64 + result_dweight.max(0) + 20;
        let w = w.max(20) as u32 + (db.unsigned_abs() as u32).min(2000);
        let lb = fixed_ln(&to_fixed(base, w), w);
        let lx = fixed_ln(&to_fixed(x, w), w);
        let lb = Numeric::from_parts(lb, w)?;
        let lx = Numeric::from_parts(lx, w)?;
        lx.div_to_scale(&lb, rscale)
    }

    /// exp(x) with PostgreSQL's scale; 22003 beyond numeric's range.
    pub fn exp(&self) -> Result<Numeric> {
        match self {
            Numeric::NaN | Numeric::PosInf => return Ok(self.clone()),
            Numeric::NegInf => return Ok(Numeric::ZERO),
            _ => {}
        }
        let val = self.to_f64();
        let dweight = (val * PG_LOG10_E).clamp(-(MAX_RESULT_SCALE as f64), MAX_RESULT_SCALE as f64);
        let rscale =
            clamp_rscale((MIN_SIG_DIGITS as i64 - dweight as i64).max(self.scale() as i64));
        self.exp_to(rscale)
    }

    fn exp_to(&self, rscale: u32) -> Result<Numeric> {
        let val = self.to_f64();
        if val.abs() >= (MAX_RESULT_SCALE * 3) as f64 {
            if val > 0.0 {
                return Err(overflow());
            }
            return Numeric::from_i128_scale(0, rscale);
        }
        let dweight = (val * PG_LOG10_E) as i64;
        let w = (rscale as i64 + dweight.max(0) + 30) as u32;
        if val >= 0.0 {
            let e = fixed_exp(&to_fixed(self, w), w);
            Numeric::from_parts(e, w)?.round_scale(rscale as i64)
        } else {
            // exp(−|x|) = 1 / exp(|x|), divided at the final scale.
            let w = w + (-dweight) as u32;
            let e = fixed_exp(&to_fixed(&self.neg(), w), w);
            let e = Numeric::from_parts(e, w)?;
            Numeric::ONE.div_to_scale(&e, rscale)
        }
    }

    /// power(x, y) / `x ^ y` with PostgreSQL 15's special cases and scales.
    pub fn power(&self, y: &Numeric) -> Result<Numeric> {
        use Numeric::*;
        let x = self;
        // NaN: 1 ^ NaN and NaN ^ 0 are 1.
        if x.is_nan() || y.is_nan() {
            if x.is_nan() {
                return Ok(if y.is_zero() { Numeric::ONE } else { NaN });
            }
            return Ok(if *x == Numeric::ONE { Numeric::ONE } else { NaN });
        }
        let is_int = |v: &Numeric| v.is_finite() && v.min_scale() == 0;
        if x.is_zero() && y.signum() < 0 {
            return Err(Error::user("2201F", "zero raised to a negative power is undefined"));
        }
        if x.signum() < 0 && y.is_finite() && !is_int(y) {
            return Err(Error::user(
                "2201F",
                "a negative number raised to a non-integer power yields a complex result",
            ));
        }
        if !x.is_finite() || !y.is_finite() {
            if y.is_zero() {
                return Ok(Numeric::ONE);
            }
            if *x == Numeric::ONE {
                return Ok(Numeric::ONE);
            }
            if !y.is_finite() {
                // |x| vs 1 decides.
                let ax = x.abs();
                let cmp1 = ax.cmp(&Numeric::ONE);
                if x.is_finite() && x.is_zero() {
                    return Ok(if y.signum() > 0 { Numeric::ZERO } else { PosInf });
                }
                return Ok(match (cmp1, y.signum() > 0) {
                    (Ordering::Equal, _) => Numeric::ONE,
                    (Ordering::Greater, true) | (Ordering::Less, false) => PosInf,
                    _ => Numeric::ZERO,
                });
            }
            // x is ±Infinity, y finite non-zero.
            if y.signum() < 0 {
                return Ok(Numeric::ZERO);
            }
            if matches!(x, PosInf) {
                return Ok(PosInf);
            }
            // -Infinity ^ y: sign by y's parity (y must be an integer to be odd).
            let odd =
                is_int(y) && y.rem(&Numeric::from_i64(2)).map(|r| !r.is_zero()).unwrap_or(false);
            return Ok(if odd { NegInf } else { PosInf });
        }
        // Integer exponent fitting i32: exact power, rounded to
        // max(16, x's scale) (power_var_int).
        if is_int(y)
            && let Some(e) = y.to_i128_round()
            && (i32::MIN as i128..=i32::MAX as i128).contains(&e)
        {
            let rscale = clamp_rscale((MIN_SIG_DIGITS as i64).max(x.scale() as i64));
            return x.power_int(e as i64, rscale);
        }
        if x.is_zero() {
            return Numeric::from_i128_scale(0, MIN_SIG_DIGITS as u32);
        }
        // ln/exp route.
        let ln_dweight = estimate_ln_dweight(x);
        let lnx = ln_to(x, clamp_rscale(8 - ln_dweight))?;
        let val = lnx.mul(y)?.to_f64();
        if val.abs() > MAX_RESULT_SCALE as f64 * 3.01 {
            if val > 0.0 {
                return Err(overflow());
            }
            return Numeric::from_i128_scale(0, MAX_DISPLAY_SCALE as u32);
        }
        let val = val * PG_LOG10_E;
        let rscale = clamp_rscale(
            (MIN_SIG_DIGITS as i64 - val as i64).max(x.scale() as i64).max(y.scale() as i64),
        );
        let sig = (rscale as i64 + val as i64).max(0);
        let lscale = clamp_rscale(sig - ln_dweight + 20).max(20) + 10;
        let lnx = Numeric::from_parts(fixed_ln(&to_fixed(x, lscale), lscale), lscale)?;
        let prod = lnx.mul(y)?.round_scale(lscale as i64)?;
        prod.exp_to(rscale)
    }

    /// x ^ e for an integer e, rounded to `rscale`.
    fn power_int(&self, e: i64, rscale: u32) -> Result<Numeric> {
        match e {
            0 => return Numeric::ONE.round_scale(rscale as i64),
            1 => return self.round_scale(rscale as i64),
            -1 => return Numeric::ONE.div_to_scale(self, rscale),
            _ => {}
        }
        if self.is_zero() {
            if e < 0 {
                return Err(div_zero());
            }
            return Numeric::from_i128_scale(0, rscale);
        }
        // log10 of the result, to refuse huge results before building them.
        let (w, digs) = self.base10000_digits(4);
        let mut f = 0f64;
        let mut p = w * 4;
        for (i, d) in digs.iter().enumerate() {
            f = f * 10000.0 + *d as f64;
            if i > 0 {
                p -= 4;
            }
        }
        let lg = e as f64 * (f.log10() + p as f64);
        if lg > (3 * 32767 * 4) as f64 {
            return Err(overflow());
        }
        if lg + 1.0 < -(rscale as f64) || lg + 1.0 < -(MAX_DISPLAY_SCALE as f64) {
            return Numeric::from_i128_scale(0, rscale);
        }
        let (m, s) = self.parts().unwrap_or_default();
        let n = e.unsigned_abs();
        // Exact when the exact digits stay reasonable; else fixed point.
        let exact_digits = ndigits(m.magnitude()) as f64 * n as f64;
        if exact_digits < 400_000.0 && (s as u64) * n < 400_000 {
            let pm = num_traits::pow(m, n as usize);
            let ps = (s as u64 * n) as u32;
            let r = Numeric::Big(Box::new(BigDec { m: pm, scale: ps }));
            if e > 0 {
                return r.round_impl(rscale as i64, false);
            }
            return Numeric::ONE.div_to_scale(&r, rscale);
        }
        // Too many exact digits: exp(e·ln|x|) with guard digits.
        let lscale = (rscale as i64 + lg.max(0.0) as i64 + 20 + (n as f64).log10() as i64)
            .clamp(20, 4000) as u32;
        let ax = self.abs();
        let lnx = Numeric::from_parts(fixed_ln(&to_fixed(&ax, lscale), lscale), lscale)?;
        let r = lnx.mul(&Numeric::from_i64(e))?.round_scale(lscale as i64)?.exp_to(rscale)?;
        Ok(if self.signum() < 0 && n % 2 == 1 { r.neg() } else { r })
    }
}

fn neg_sqrt() -> Error {
    Error::user("2201F", "cannot take square root of a negative number")
}

/// PostgreSQL's select_div_scale.
pub fn div_scale(a: &Numeric, b: &Numeric) -> u32 {
    let (w1, f1) = a.base10000_lead();
    let (w2, f2) = b.base10000_lead();
    let mut qweight = w1 - w2;
    if f1 <= f2 {
        qweight -= 1;
    }
    (MIN_SIG_DIGITS as i64 - qweight * 4)
        .max(a.scale() as i64)
        .max(b.scale() as i64)
        .clamp(0, MAX_DISPLAY_SCALE as i64) as u32
}

use Numeric::Small;

impl PartialEq for Numeric {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Numeric {}

impl PartialOrd for Numeric {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Numeric {
    fn cmp(&self, other: &Self) -> Ordering {
        if let (Small(a), Small(b)) = (self, other) {
            return a.cmp(b);
        }
        let (ra, rb) = (self.rank(), other.rank());
        if ra != rb || ra != 1 {
            return ra.cmp(&rb);
        }
        let (sa, sb) = (self.signum(), other.signum());
        if sa != sb {
            return sa.cmp(&sb);
        }
        let (ma, xa) = self.parts().unwrap_or_default();
        let (mb, xb) = other.parts().unwrap_or_default();
        let s = xa.max(xb);
        (ma * pow10(s - xa)).cmp(&(mb * pow10(s - xb)))
    }
}

impl From<i64> for Numeric {
    fn from(i: i64) -> Numeric {
        Numeric::from_i64(i)
    }
}

impl From<u64> for Numeric {
    fn from(i: u64) -> Numeric {
        Numeric::Small(Decimal::from(i))
    }
}

impl From<i32> for Numeric {
    fn from(i: i32) -> Numeric {
        Numeric::from_i64(i as i64)
    }
}

impl std::str::FromStr for Numeric {
    type Err = Error;
    fn from_str(s: &str) -> Result<Numeric> {
        Numeric::parse(s)
    }
}

impl From<Decimal> for Numeric {
    fn from(d: Decimal) -> Numeric {
        small(d)
    }
}

/// PostgreSQL's text output: all `scale` decimals, no exponent.
impl fmt::Display for Numeric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Numeric::Small(d) => fmt::Display::fmt(d, f),
            Numeric::NaN => f.write_str("NaN"),
            Numeric::PosInf => f.write_str("Infinity"),
            Numeric::NegInf => f.write_str("-Infinity"),
            Numeric::Big(b) => {
                let digits = b.m.magnitude().to_string();
                let scale = b.scale as usize;
                let mut s = String::with_capacity(digits.len() + scale + 3);
                if b.m.is_negative() {
                    s.push('-');
                }
                if scale == 0 {
                    s.push_str(&digits);
                } else {
                    let padded = if digits.len() <= scale {
                        "0".repeat(scale + 1 - digits.len()) + &digits
                    } else {
                        digits
                    };
                    let (i, fr) = padded.split_at(padded.len() - scale);
                    s.push_str(i);
                    s.push('.');
                    s.push_str(fr);
                }
                f.write_str(&s)
            }
        }
    }
}

/// One of the integer-valued results (`BigInt`) as a numeric of scale 0.
pub fn from_bigint(m: BigInt) -> Result<Numeric> {
    Numeric::from_parts(m, 0)
}

/// `1` as a BigInt, for callers building products.
pub fn big_one() -> BigInt {
    BigInt::one()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Numeric {
        Numeric::parse(s).unwrap()
    }

    #[test]
    fn parse_and_print_keep_the_scale() {
        for s in
            ["0", "1.500", "-2.25", "0.00001", "123456789012345678901234567890.123456789012345678"]
        {
            assert_eq!(n(s).to_string(), s);
        }
        assert_eq!(n("1e5").to_string(), "100000");
        assert_eq!(n("-0.0").to_string(), "0.0");
        assert_eq!(n(" -INF ").to_string(), "-Infinity");
        assert_eq!(n("nan").to_string(), "NaN");
        assert_eq!(n("1.5e-30").to_string(), "0.0000000000000000000000000000015");
        assert!(matches!(n("1.5e-30"), Numeric::Big(_)));
        assert!(matches!(n("1.50"), Numeric::Small(_)));
        for bad in ["", "abc", "1e", "1.2.3", "--1", "1 2", "."] {
            assert!(Numeric::parse(bad).is_err(), "{bad}");
        }
        assert!(Numeric::parse("1e100000000").is_err());
        assert!(Numeric::parse("1e-20000").is_err());
    }

    #[test]
    fn order_and_equality_by_value() {
        assert_eq!(n("1.0"), n("1.00"));
        assert_eq!(n("1e-30").cmp(&n("1e-31")), Ordering::Greater);
        let mut v = [n("nan"), n("inf"), n("-inf"), n("1e40"), n("-1e40"), n("0"), n("1.5")];
        v.sort();
        let s: Vec<String> = v.iter().map(|x| x.to_string()).collect();
        assert_eq!(s[0], "-Infinity");
        assert_eq!(s[6], "NaN");
        assert_eq!(s[5], "Infinity");
    }

    #[test]
    fn arithmetic_scales() {
        assert_eq!(n("1").div(&n("3")).unwrap().to_string(), "0.33333333333333333333");
        assert_eq!(n("1.10").add(&n("2.2")).unwrap().to_string(), "3.30");
        let big = n("99999999999999999999999999999");
        assert_eq!(big.add(&n("1")).unwrap().to_string(), "100000000000000000000000000000");
        assert_eq!(n("inf").sub(&n("inf")).unwrap().to_string(), "NaN");
        assert!(n("1").div(&n("0")).is_err());
        assert_eq!(n("2").sqrt().unwrap().to_string(), "1.414213562373095");
        assert_eq!(n("12.345").round_to(-1, false).unwrap().to_string(), "10");
        assert_eq!(n("-7.5").rem(&n("2")).unwrap().to_string(), "-1.5");
    }

    #[test]
    fn keys_ignore_trailing_zeros_and_keep_order() {
        let key = |x: &Numeric| {
            let mut k = Vec::new();
            x.encode_key(&mut k);
            k
        };
        assert_eq!(key(&n("1.0")), key(&n("1.00000000000000000000000000000000")));
        let vals = [
            "-inf", "-1e40000", "-1e40", "-1", "-1e-40", "0", "1e-40", "1", "1.5", "1e40",
            "1e40000", "inf", "nan",
        ];
        for w in vals.windows(2) {
            assert!(key(&n(w[0])) < key(&n(w[1])), "{} < {}", w[0], w[1]);
        }
    }

    #[test]
    fn value_stays_small() {
        // Numeric (24 bytes) must not grow Value, which rows hold by the million.
        assert!(std::mem::size_of::<crate::types::Value>() <= 32);
        assert!(std::mem::size_of::<Numeric>() <= 24);
    }

    #[test]
    fn binary_round_trip() {
        for s in [
            "0",
            "1.500",
            "-12345.6789",
            "0.00001",
            "1e40",
            "nan",
            "inf",
            "-inf",
            "123456789012345678901234567890.123456789012345678",
        ] {
            let mut b = Vec::new();
            n(s).to_pg_binary(&mut b);
            let back = Numeric::from_pg_binary(&b).unwrap().unwrap();
            assert_eq!(back.to_string(), n(s).to_string());
        }
    }
}
