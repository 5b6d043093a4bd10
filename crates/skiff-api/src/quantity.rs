//! Resource quantities (`resource.Quantity` of apimachinery): parsing,
//! exact comparison and arithmetic, and the canonical string form upstream
//! serialises (`"1000m"` → `"1"`, `"1024Mi"` → `"1Gi"`, `"0.1"` → `"100m"`).
//!
//! A quantity is held as `mantissa × 10^exponent` with an exponent of at
//! least -9: like upstream, values finer than a nano-unit are rounded up
//! (away from zero) to the next nano-unit, and binary-suffixed values are
//! capped at 2^63-1.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

/// The regular expression every quantity must match, as upstream quotes it.
pub const QUANTITY_REGEX: &str = "^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$";

/// Why a string is not a quantity; `Display` is upstream's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The string does not have the shape of a quantity.
    #[error("quantities must match the regular expression '{}'", QUANTITY_REGEX)]
    FormatWrong,
    /// The number cannot be represented.
    #[error("unable to parse numeric value")]
    Numeric,
    /// The suffix is not one upstream knows.
    #[error("unable to parse quantity's suffix")]
    Suffix,
}

/// How a quantity is written: the family of its suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `e3`, `E-6`: a decimal exponent.
    DecimalExponent,
    /// `Ki`, `Mi`, ... `Ei`: powers of 1024.
    BinarySi,
    /// `n`, `u`, `m`, ``, `k`, `M`, ... `E`: powers of 1000.
    DecimalSi,
}

/// A parsed resource quantity.
#[derive(Debug, Clone)]
pub struct Quantity {
    /// The value is `mantissa * 10^exponent`; `exponent >= -9`, and the
    /// mantissa carries no trailing zero unless it is zero.
    mantissa: i128,
    exponent: i32,
    format: Format,
    /// Upstream keeps the input string when it is already canonical-looking.
    original: Option<String>,
}

const NANO: i32 = -9;
/// Upstream's cap for binary-suffixed quantities (`2^63 - 1`).
const MAX_BINARY: i128 = i64::MAX as i128;

fn pow10(n: u32) -> Option<i128> {
    10i128.checked_pow(n)
}

/// Removes trailing zeros of `m` into the exponent.
fn normalise(mut m: i128, mut e: i32) -> (i128, i32) {
    if m == 0 {
        return (0, 0);
    }
    while m % 10 == 0 {
        m /= 10;
        e += 1;
    }
    (m, e)
}

struct Parts<'a> {
    negative: bool,
    num: &'a str,
    denom: &'a str,
    suffix: &'a str,
}

impl Parts<'_> {
    /// The digits without the decimal point.
    fn digits(&self) -> Cow<'_, str> {
        if self.denom.is_empty() {
            Cow::Borrowed(self.num)
        } else {
            Cow::Owned(format!("{}{}", self.num, self.denom))
        }
    }

    /// The value as `(mantissa, decimal scale)` when it is a whole number
    /// of at most 18 digits at nano precision or coarser, which needs
    /// neither big arithmetic nor rounding.
    fn whole(&self, base: u32, exp: i32) -> Option<(i128, i64)> {
        if !self.denom.is_empty() || self.num.len() > 18 {
            return None;
        }
        let n: i128 = self.num.parse().ok()?;
        match base {
            // n < 10^18 and exp <= 60, so the product fits.
            2 => Some((n << exp, 0)),
            _ if exp >= NANO => Some((n, i64::from(exp))),
            _ => None,
        }
    }

    /// The value rounded up (away from zero) to nano-units, as
    /// `(mantissa, decimal scale)`; `None` when the mantissa overflows.
    fn rounded(&self, base: u32, exp: i32) -> Result<(Option<i128>, i64), QuantityError> {
        // The exact value is `digits * 10^scale` (times `2^exp` for binary
        // suffixes, applied on the digits so rounding sees the exact value).
        let mut digits = self.digits().into_owned();
        if base == 2 {
            digits = mul_decimal(&digits, 1u64 << exp);
        }
        let digits = digits.trim_start_matches('0');
        let mut scale = -(self.denom.len() as i64);
        if base == 10 {
            scale += i64::from(exp);
        }
        // Drop the finer digits and add one when any of them was not zero.
        let mut m_digits = digits.to_owned();
        let mut round_up = false;
        if scale < i64::from(NANO) {
            let drop =
                usize::try_from(i64::from(NANO) - scale).map_err(|_| QuantityError::Numeric)?;
            if drop >= m_digits.len() {
                round_up = !m_digits.is_empty();
                m_digits.clear();
            } else {
                let cut = m_digits.len() - drop;
                round_up = m_digits[cut..].bytes().any(|c| c != b'0');
                m_digits.truncate(cut);
            }
            scale = i64::from(NANO);
        }
        let parsed: Option<i128> = if m_digits.is_empty() {
            Some(0)
        } else {
            m_digits.parse().ok()
        };
        Ok((parsed.map(|m| m + i128::from(round_up)), scale))
    }
}

/// Splits a quantity string the way upstream's `parseQuantityString` does.
fn split(s: &str) -> Result<Parts<'_>, QuantityError> {
    let b = s.as_bytes();
    let mut pos = 0;
    let mut negative = false;
    match b.first() {
        Some(b'-') => {
            negative = true;
            pos = 1;
        }
        Some(b'+') => pos = 1,
        _ => {}
    }
    while pos < b.len() && b[pos] == b'0' {
        pos += 1;
    }
    let num_start = pos;
    while pos < b.len() && b[pos].is_ascii_digit() {
        pos += 1;
    }
    let mut num = &s[num_start..pos];
    if num.is_empty() {
        num = "0";
    }
    let mut denom = "";
    if pos < b.len() && b[pos] == b'.' {
        pos += 1;
        let start = pos;
        while pos < b.len() && b[pos].is_ascii_digit() {
            pos += 1;
        }
        denom = &s[start..pos];
    }
    let suffix_start = pos;
    while pos < b.len() && b"eEinumkKMGTP".contains(&b[pos]) {
        pos += 1;
    }
    if pos < b.len() && matches!(b[pos], b'-' | b'+') {
        pos += 1;
    }
    while pos < b.len() && b[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos < b.len() {
        return Err(QuantityError::FormatWrong);
    }
    Ok(Parts {
        negative,
        num,
        denom,
        suffix: &s[suffix_start..],
    })
}

/// Interprets a suffix as (base, exponent, format).
fn interpret(suffix: &str) -> Result<(u32, i32, Format), QuantityError> {
    let dec = match suffix {
        "n" => Some(-9),
        "u" => Some(-6),
        "m" => Some(-3),
        "" => Some(0),
        "k" => Some(3),
        "M" => Some(6),
        "G" => Some(9),
        "T" => Some(12),
        "P" => Some(15),
        "E" => Some(18),
        _ => None,
    };
    if let Some(e) = dec {
        return Ok((10, e, Format::DecimalSi));
    }
    let bin = match suffix {
        "Ki" => Some(10),
        "Mi" => Some(20),
        "Gi" => Some(30),
        "Ti" => Some(40),
        "Pi" => Some(50),
        "Ei" => Some(60),
        _ => None,
    };
    if let Some(e) = bin {
        return Ok((2, e, Format::BinarySi));
    }
    if suffix.len() > 1 && (suffix.starts_with('e') || suffix.starts_with('E')) {
        let e: i32 = suffix[1..].parse().map_err(|_| QuantityError::Suffix)?;
        return Ok((10, e, Format::DecimalExponent));
    }
    Err(QuantityError::Suffix)
}

/// Whether upstream's fast path would keep the input string as the
/// serialised form.
/// A decimal digit string multiplied by `k`.
fn mul_decimal(digits: &str, k: u64) -> String {
    let mut out = Vec::with_capacity(digits.len() + 20);
    let mut carry: u128 = 0;
    for d in digits.bytes().rev() {
        let x = u128::from(d - b'0') * u128::from(k) + carry;
        out.push(b'0' + (x % 10) as u8);
        carry = x / 10;
    }
    while carry > 0 {
        out.push(b'0' + (carry % 10) as u8);
        carry /= 10;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

fn keeps_original(p: &Parts<'_>, base: u32, exp: i32, format: Format) -> bool {
    let digits = p.num.len() + p.denom.len();
    let shifted = p.digits();
    if format == Format::BinarySi {
        if !p.denom.is_empty() || base != 2 {
            return false;
        }
        let precision = 15 - p.num.len() as i64 - i64::from(exp) * 3 / 10 - 1;
        let Ok(value) = shifted.parse::<i64>() else {
            return false;
        };
        precision >= 0 && value.checked_mul(1i64 << exp).is_some() && value & 7 != 0
    } else {
        let scale = i64::from(exp) - p.denom.len() as i64;
        digits <= 18
            && scale >= i64::from(NANO)
            && scale % 3 == 0
            && !shifted.ends_with("000")
            && !shifted.starts_with('0')
    }
}

impl Quantity {
    /// Parses a quantity as upstream's `ParseQuantity` (surrounding
    /// whitespace is trimmed, as its JSON decoding does).
    pub fn parse(s: &str) -> Result<Self, QuantityError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(QuantityError::FormatWrong);
        }
        let parts = split(s)?;
        let (base, exp, format) = interpret(parts.suffix)?;
        let original = keeps_original(&parts, base, exp, format).then(|| s.to_owned());
        let (parsed, scale) = match parts.whole(base, exp) {
            // The common case (`500m`, `128Mi`, `2`): no rounding to do.
            Some((exact, scale)) => (Some(exact), scale),
            None => parts.rounded(base, exp)?,
        };
        let mut scale = i32::try_from(scale).map_err(|_| QuantityError::Numeric)?;
        let mut mantissa = match parsed {
            Some(m) => m,
            // Binary values are capped below; decimal ones this large are
            // beyond what this representation holds.
            None if base == 2 => MAX_BINARY + 1,
            None => return Err(QuantityError::Numeric),
        };
        let mut format = format;
        if base == 2 {
            if Quantity::raw(mantissa, scale).cmp_abs_int(MAX_BINARY) == Ordering::Greater {
                mantissa = MAX_BINARY;
                scale = 0;
            }
            if Quantity::raw(mantissa, scale).cmp_abs_int(1) == Ordering::Less {
                format = Format::DecimalSi;
            }
        }
        let (mut m, e) = normalise(mantissa, scale);
        if parts.negative {
            m = -m;
        }
        Ok(Quantity {
            mantissa: m,
            exponent: e,
            format,
            original,
        })
    }

    fn raw(mantissa: i128, exponent: i32) -> Self {
        let (mantissa, exponent) = normalise(mantissa, exponent);
        Quantity {
            mantissa,
            exponent,
            format: Format::DecimalSi,
            original: None,
        }
    }

    /// A quantity of `value` whole units in decimal SI form.
    pub fn from_int(value: i64) -> Self {
        Self::raw(i128::from(value), 0)
    }

    /// A quantity of `value` milli-units in decimal SI form.
    pub fn from_milli(value: i64) -> Self {
        Self::raw(i128::from(value), -3)
    }

    fn cmp_abs_int(&self, n: i128) -> Ordering {
        self.abs_cmp(&Quantity::raw(n, 0))
    }

    /// The suffix family of the quantity as written.
    pub fn format(&self) -> Format {
        self.format
    }

    /// True when the value is zero.
    pub fn is_zero(&self) -> bool {
        self.mantissa == 0
    }

    /// True when the value is below zero.
    pub fn is_negative(&self) -> bool {
        self.mantissa < 0
    }

    /// The value in units of `10^scale`, rounded up (toward +∞), saturating
    /// at the bounds of `i64` as upstream's `ScaledValue`.
    pub fn scaled_value(&self, scale: i32) -> i64 {
        let shift = i64::from(self.exponent) - i64::from(scale);
        let v: Option<i128> = if shift >= 0 {
            u32::try_from(shift)
                .ok()
                .and_then(pow10)
                .and_then(|p| self.mantissa.checked_mul(p))
        } else {
            u32::try_from(-shift)
                .ok()
                .and_then(pow10)
                .map_or(Some(0), |p| {
                    let q = self.mantissa / p;
                    Some(if self.mantissa % p > 0 { q + 1 } else { q })
                })
        };
        match v {
            Some(v) => i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX }),
            None if self.mantissa < 0 => i64::MIN,
            None => i64::MAX,
        }
    }

    /// The value in whole units, rounded up.
    pub fn value(&self) -> i64 {
        self.scaled_value(0)
    }

    /// The value in milli-units, rounded up.
    pub fn milli_value(&self) -> i64 {
        self.scaled_value(-3)
    }

    /// This quantity rounded up (away from zero) to a multiple of
    /// `10^scale`, as upstream's `RoundUp`; an exact value keeps its form.
    #[must_use]
    pub fn round_up(&self, scale: i32) -> Quantity {
        if self.exponent >= scale {
            return self.clone();
        }
        let drop = u32::try_from(scale - self.exponent).ok().and_then(pow10);
        let Some(p) = drop else {
            // Far below one unit of the scale: the next unit away from zero.
            return Quantity {
                mantissa: self.mantissa.signum(),
                exponent: scale,
                format: self.format,
                original: None,
            };
        };
        let mut m = self.mantissa / p;
        if self.mantissa % p != 0 {
            m += self.mantissa.signum();
        }
        let (mantissa, exponent) = normalise(m, scale);
        Quantity {
            mantissa,
            exponent,
            format: self.format,
            original: None,
        }
    }

    /// Sum of two quantities (in this quantity's format), or `None` when it
    /// does not fit.
    pub fn checked_add(&self, other: &Quantity) -> Option<Quantity> {
        let e = self.exponent.min(other.exponent);
        let a = self
            .mantissa
            .checked_mul(pow10(u32::try_from(self.exponent - e).ok()?)?)?;
        let b = other
            .mantissa
            .checked_mul(pow10(u32::try_from(other.exponent - e).ok()?)?)?;
        let (mantissa, exponent) = normalise(a.checked_add(b)?, e);
        Some(Quantity {
            mantissa,
            exponent,
            format: self.format,
            original: None,
        })
    }

    /// Compares magnitudes, ignoring signs.
    fn abs_cmp(&self, other: &Quantity) -> Ordering {
        let (a, b) = (self.mantissa.unsigned_abs(), other.mantissa.unsigned_abs());
        match (a == 0, b == 0) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            _ => {}
        }
        let (la, lb) = (decimal_digits(a), decimal_digits(b));
        // Position of the leading digit decides first.
        let ma = i64::from(la) + i64::from(self.exponent);
        let mb = i64::from(lb) + i64::from(other.exponent);
        if ma != mb {
            return ma.cmp(&mb);
        }
        // Same leading position: compare the digits, the shorter padded
        // with zeros on the right.
        let scale = |v: u128, from: u32, to: u32| {
            10u128.checked_pow(to - from).and_then(|p| v.checked_mul(p))
        };
        let width = la.max(lb);
        match (scale(a, la, width), scale(b, lb, width)) {
            (Some(x), Some(y)) => x.cmp(&y),
            // Past u128 (39 digits): compare as text.
            _ => {
                let width = width as usize;
                format!("{a:0<width$}").cmp(&format!("{b:0<width$}"))
            }
        }
    }

    /// Upstream's canonical string (`CanonicalizeBytes`).
    fn canonical(&self) -> String {
        if self.is_zero() {
            return "0".to_owned();
        }
        let mut format = self.format;
        if format == Format::BinarySi
            && (self.cmp_abs_int(1024) == Ordering::Less || self.exponent < 0)
        {
            format = Format::DecimalSi;
        }
        if format == Format::BinarySi {
            // An integer ≥ 1024 in magnitude, at most 2^63-1: fits in i128.
            let mut v = self.mantissa;
            if let Some(p) = u32::try_from(self.exponent).ok().and_then(pow10) {
                v = v.saturating_mul(p);
            }
            let mut exp = 0;
            while v % 1024 == 0 && exp < 6 {
                v /= 1024;
                exp += 1;
            }
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
            return format!("{v}{}", suffix.get(exp).copied().unwrap_or(""));
        }
        let (mut m, mut e) = (self.mantissa, self.exponent);
        let down = e.rem_euclid(3);
        if let Some(scaled) = pow10(down.unsigned_abs()).and_then(|p| m.checked_mul(p)) {
            m = scaled;
            e -= down;
        }
        let si = match e {
            -9 => Some("n"),
            -6 => Some("u"),
            -3 => Some("m"),
            0 => Some(""),
            3 => Some("k"),
            6 => Some("M"),
            9 => Some("G"),
            12 => Some("T"),
            15 => Some("P"),
            18 => Some("E"),
            _ => None,
        };
        match (format, si) {
            (_, _) if e == 0 => format!("{m}"),
            (Format::DecimalSi, Some(s)) => format!("{m}{s}"),
            _ => format!("{m}e{e}"),
        }
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        let (sa, sb) = (self.mantissa.signum(), other.mantissa.signum());
        if sa != sb {
            return sa.cmp(&sb);
        }
        let abs = self.abs_cmp(other);
        if sa < 0 { abs.reverse() } else { abs }
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.original {
            Some(s) => f.write_str(s),
            None => f.write_str(&self.canonical()),
        }
    }
}

impl std::str::FromStr for Quantity {
    type Err = QuantityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Quantity::parse(s)
    }
}

#[path = "quantity_json.rs"]
mod json;

#[allow(unused_imports, reason = "for kinds::core, whose owner wires it in")]
pub(crate) use json::core_quantity_paths;
pub(crate) use json::{canonicalize_at, round_up_milli_at};
pub use json::{canonicalize_map, canonicalize_value, from_json};

/// How many decimal digits `v` has (1 for zero).
fn decimal_digits(v: u128) -> u32 {
    v.checked_ilog10().map_or(1, |d| d + 1)
}

#[cfg(test)]
#[path = "quantity_tests.rs"]
mod tests;
