//! Go's time text forms: RFC 3339 as `metav1.Time` and `metav1.MicroTime`
//! print and parse it, and `time.Duration`'s `String` and `ParseDuration`.

/// Unix seconds of Go's zero `time.Time` (January 1 of year 1, UTC), which
/// `metav1.Time` prints as `null`.
pub(crate) const GO_ZERO_UNIX: i64 = -62_135_596_800;

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// Civil date of a day count since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // month is in 1..=12 and day in 1..=31 by construction.
    (year, month as u32, day as u32)
}

/// Days since 1970-01-01 of a civil date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Formats Unix seconds (plus microseconds, for `MicroTime`) in UTC as Go's
/// `time.RFC3339` (or `RFC3339Micro`) layout does, years outside 0..=9999
/// included.
pub(crate) fn format_rfc3339(secs: i64, micros: Option<u32>) -> String {
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let (h, m, s) = (sod / 3600, sod / 60 % 60, sod % 60);
    let year = if year < 0 {
        format!("-{:04}", year.unsigned_abs())
    } else {
        format!("{year:04}")
    };
    let frac = micros.map(|u| format!(".{u:06}")).unwrap_or_default();
    format!("{year}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}{frac}Z")
}

/// Unix seconds and nanoseconds normalised as Go's `time.Unix` does.
pub(crate) fn normalize(secs: i64, nanos: i64) -> Option<(i64, i64)> {
    let secs = secs.checked_add(nanos.div_euclid(NANOS_PER_SEC))?;
    Some((secs, nanos.rem_euclid(NANOS_PER_SEC)))
}

fn digits(s: &[u8], at: usize, n: usize) -> Result<u32, String> {
    let part = s.get(at..at + n).ok_or("too short")?;
    part.iter().try_fold(0u32, |acc, c| {
        c.is_ascii_digit()
            .then(|| acc * 10 + u32::from(c - b'0'))
            .ok_or_else(|| format!("expected a digit at offset {at}"))
    })
}

fn expect(s: &[u8], at: usize, c: u8) -> Result<(), String> {
    (s.get(at) == Some(&c))
        .then_some(())
        .ok_or_else(|| format!("expected {:?} at offset {at}", c as char))
}

/// Parses Go's `time.RFC3339` form (fractional seconds allowed, as Go's
/// parser allows them) into Unix seconds and nanoseconds.
pub(crate) fn parse_rfc3339(text: &str) -> Result<(i64, u32), String> {
    let s = text.as_bytes();
    let bad = |why: String| format!("parsing time {text:?} as RFC 3339: {why}");
    let year = digits(s, 0, 4).map_err(bad)?;
    expect(s, 4, b'-').map_err(bad)?;
    let month = digits(s, 5, 2).map_err(bad)?;
    expect(s, 7, b'-').map_err(bad)?;
    let day = digits(s, 8, 2).map_err(bad)?;
    expect(s, 10, b'T').map_err(bad)?;
    let hour = digits(s, 11, 2).map_err(bad)?;
    expect(s, 13, b':').map_err(bad)?;
    let minute = digits(s, 14, 2).map_err(bad)?;
    expect(s, 16, b':').map_err(bad)?;
    let second = digits(s, 17, 2).map_err(bad)?;
    let mut at = 19;
    let mut nanos = 0u32;
    if matches!(s.get(at), Some(b'.' | b',')) {
        at += 1;
        let start = at;
        while s.get(at).is_some_and(u8::is_ascii_digit) {
            if at - start < 9 {
                nanos = nanos * 10 + u32::from(s[at] - b'0');
            }
            at += 1;
        }
        if at == start {
            return Err(bad("no digits after the decimal point".into()));
        }
        for _ in (at - start)..9 {
            nanos *= 10;
        }
    }
    let offset: i64 = match s.get(at) {
        Some(b'Z') if at + 1 == s.len() => 0,
        Some(sign @ (b'+' | b'-')) if at + 6 == s.len() => {
            let oh = digits(s, at + 1, 2).map_err(bad)?;
            expect(s, at + 3, b':').map_err(bad)?;
            let om = digits(s, at + 4, 2).map_err(bad)?;
            if oh > 23 || om > 59 {
                return Err(bad("time zone offset out of range".into()));
            }
            let off = i64::from(oh * 3600 + om * 60);
            if *sign == b'-' { -off } else { off }
        }
        _ => return Err(bad("expected Z or a ±hh:mm offset at the end".into())),
    };
    let year = i64::from(year);
    if !(1..=12).contains(&month) {
        return Err(bad("month out of range".into()));
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err(bad("day out of range".into()));
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(bad("time of day out of range".into()));
    }
    let secs = days_from_civil(year, month, day) * 86_400
        + i64::from(hour * 3600 + minute * 60 + second)
        - offset;
    Ok((secs, nanos))
}

/// Go's `time.Duration.String`: `1h2m3.5s`, `1.5ms`, `0s`.
pub(crate) fn format_duration(d: i64) -> String {
    let mut u = d.unsigned_abs();
    let mut out: Vec<u8> = Vec::with_capacity(32);
    // Built back to front, like Go's.
    if u < 1_000_000_000 {
        let prec;
        out.push(b's');
        match u {
            0 => return "0s".into(),
            1..=999 => {
                prec = 0;
                out.push(b'n');
            }
            1_000..=999_999 => {
                prec = 3;
                out.extend("µ".bytes().rev());
            }
            _ => {
                prec = 6;
                out.push(b'm');
            }
        }
        u = push_frac(&mut out, u, prec);
        push_int(&mut out, u);
    } else {
        out.push(b's');
        u = push_frac(&mut out, u, 9);
        push_int(&mut out, u % 60);
        u /= 60;
        if u > 0 {
            out.push(b'm');
            push_int(&mut out, u % 60);
            u /= 60;
            if u > 0 {
                out.push(b'h');
                push_int(&mut out, u);
            }
        }
    }
    if d < 0 {
        out.push(b'-');
    }
    out.reverse();
    String::from_utf8_lossy(&out).into_owned()
}

/// Pushes (reversed) the fraction of `v / 10^prec` without trailing zeros.
fn push_frac(out: &mut Vec<u8>, mut v: u64, prec: u32) -> u64 {
    let mut print = false;
    for _ in 0..prec {
        let digit = (v % 10) as u8;
        print = print || digit != 0;
        if print {
            out.push(b'0' + digit);
        }
        v /= 10;
    }
    if print {
        out.push(b'.');
    }
    v
}

/// Pushes (reversed) the decimal digits of `v`.
fn push_int(out: &mut Vec<u8>, mut v: u64) {
    loop {
        out.push(b'0' + (v % 10) as u8);
        v /= 10;
        if v == 0 {
            break;
        }
    }
}

/// Go's `time.ParseDuration`, overflow checks and all.
pub(crate) fn parse_duration(text: &str) -> Result<i64, String> {
    const LIMIT: u64 = 1 << 63;
    let invalid = || format!("time: invalid duration {text:?}");
    let mut s = text.as_bytes();
    let mut neg = false;
    if let Some((&c, rest)) = s.split_first()
        && (c == b'-' || c == b'+')
    {
        neg = c == b'-';
        s = rest;
    }
    if s == b"0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        if !(s[0] == b'.' || s[0].is_ascii_digit()) {
            return Err(invalid());
        }
        let int_len = s.iter().take_while(|c| c.is_ascii_digit()).count();
        let mut v: u64 = 0;
        for &c in &s[..int_len] {
            if v > LIMIT / 10 {
                return Err(invalid());
            }
            v = v * 10 + u64::from(c - b'0');
            if v > LIMIT {
                return Err(invalid());
            }
        }
        s = &s[int_len..];
        let (mut f, mut scale, mut post) = (0u64, 1f64, false);
        if s.first() == Some(&b'.') {
            s = &s[1..];
            let frac_len = s.iter().take_while(|c| c.is_ascii_digit()).count();
            let mut overflow = false;
            for &c in &s[..frac_len] {
                if overflow {
                    continue;
                }
                if f > (LIMIT - 1) / 10 {
                    overflow = true;
                    continue;
                }
                let y = f * 10 + u64::from(c - b'0');
                if y > LIMIT {
                    overflow = true;
                    continue;
                }
                f = y;
                scale *= 10.0;
            }
            post = frac_len > 0;
            s = &s[frac_len..];
        }
        if int_len == 0 && !post {
            return Err(invalid());
        }
        let unit_len = s
            .iter()
            .take_while(|c| **c != b'.' && !c.is_ascii_digit())
            .count();
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration {text:?}"));
        }
        let unit: u64 = match &s[..unit_len] {
            b"ns" => 1,
            b"us" => 1_000,
            u if u == "µs".as_bytes() || u == "μs".as_bytes() => 1_000,
            b"ms" => 1_000_000,
            b"s" => 1_000_000_000,
            b"m" => 60_000_000_000,
            b"h" => 3_600_000_000_000,
            u => {
                let u = String::from_utf8_lossy(u);
                return Err(format!("time: unknown unit {u:?} in duration {text:?}"));
            }
        };
        s = &s[unit_len..];
        if v > LIMIT / unit {
            return Err(invalid());
        }
        v *= unit;
        if f > 0 {
            // Go computes the fraction in float64 too (nanosecond-exact for hours).
            v += (f as f64 * (unit as f64 / scale)) as u64;
            if v > LIMIT {
                return Err(invalid());
            }
        }
        total = total.checked_add(v).ok_or_else(invalid)?;
        if total > LIMIT {
            return Err(invalid());
        }
    }
    if neg {
        // total <= 2^63, so the negation fits.
        return Ok(0i64.wrapping_sub_unsigned(total));
    }
    i64::try_from(total).map_err(|_| invalid())
}
