//! Go's `time.ParseDuration`, which upstream uses for durations in
//! request parameters (`?timeout=`) and cron `@every` schedules, with its
//! error messages.

use std::time::Duration;

use crate::go_quote;

/// A Go `time.Duration`'s sign and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoDuration {
    /// Zero or more.
    Positive(Duration),
    /// Less than zero.
    Negative(Duration),
}

/// Parses a duration as Go's `time.ParseDuration` does (`300ms`, `1.5h`,
/// `2h45m`, `-1s`), with its error messages.
pub fn parse_go_duration(input: &str) -> Result<GoDuration, String> {
    let quoted = go_quote(input);
    let invalid = || format!("time: invalid duration {quoted}");
    let mut s = input;
    let negative = match s.as_bytes().first() {
        Some(b'-') => {
            s = &s[1..];
            true
        }
        Some(b'+') => {
            s = &s[1..];
            false
        }
        _ => false,
    };
    if s == "0" {
        return Ok(GoDuration::Positive(Duration::ZERO));
    }
    if s.is_empty() {
        return Err(invalid());
    }
    // Nanoseconds, with room to detect overflow past Go's int64.
    let mut total: u128 = 0;
    while !s.is_empty() {
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, rest) = s.split_at(int_len);
        let (frac_part, rest) = match rest.strip_prefix('.') {
            Some(after) => {
                let frac_len = after.bytes().take_while(u8::is_ascii_digit).count();
                after.split_at(frac_len)
            }
            None => ("", rest),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(rest.len(), |(i, _)| i);
        let (unit, rest) = rest.split_at(unit_len);
        if unit.is_empty() {
            return Err(format!("time: missing unit in duration {quoted}"));
        }
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(format!(
                    "time: unknown unit {} in duration {quoted}",
                    go_quote(unit)
                ));
            }
        };
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| invalid())?
        };
        let mut nanos = whole.checked_mul(scale).ok_or_else(invalid)?;
        // The fraction, digit by digit, truncated as Go truncates it.
        let mut place = scale;
        for digit in frac_part.bytes() {
            place /= 10;
            if place == 0 {
                break;
            }
            nanos += u128::from(digit - b'0') * place;
        }
        total = total.checked_add(nanos).ok_or_else(invalid)?;
        if total > i64::MAX as u128 + u128::from(negative) {
            return Err(invalid());
        }
        s = rest;
    }
    let nanos = u64::try_from(total).map_err(|_| invalid())?;
    let duration = Duration::from_nanos(nanos);
    Ok(if negative && nanos > 0 {
        GoDuration::Negative(duration)
    } else {
        GoDuration::Positive(duration)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn ok(s: &str) -> GoDuration {
        parse_go_duration(s).unwrap()
    }

    #[test]
    fn go_durations_parse_as_go_parses_them() {
        let pos = |nanos: u64| GoDuration::Positive(Duration::from_nanos(nanos));
        assert_eq!(ok("0"), pos(0));
        assert_eq!(ok("+0"), pos(0));
        assert_eq!(ok("-0"), pos(0));
        assert_eq!(ok("300ms"), pos(300_000_000));
        assert_eq!(ok("1.5h"), pos(5_400_000_000_000));
        assert_eq!(ok("2h45m"), pos(9_900_000_000_000));
        assert_eq!(ok("1h2m3s4ms5us6ns"), pos(3_723_004_005_006));
        assert_eq!(ok("5µs"), pos(5_000));
        assert_eq!(ok("5μs"), pos(5_000));
        assert_eq!(ok(".5s"), pos(500_000_000));
        assert_eq!(ok("1.s"), pos(1_000_000_000));
        assert_eq!(ok("1.0000000019s"), pos(1_000_000_001));
        assert_eq!(
            ok("-1.5s"),
            GoDuration::Negative(Duration::from_millis(1500))
        );
    }

    #[test]
    fn go_duration_errors_carry_go_messages() {
        let err = |s: &str| parse_go_duration(s).unwrap_err();
        assert_eq!(err(""), r#"time: invalid duration """#);
        assert_eq!(err("abc"), r#"time: invalid duration "abc""#);
        assert_eq!(err("-"), r#"time: invalid duration "-""#);
        assert_eq!(err(".s"), r#"time: invalid duration ".s""#);
        assert_eq!(err("5"), r#"time: missing unit in duration "5""#);
        assert_eq!(err("1s5"), r#"time: missing unit in duration "1s5""#);
        assert_eq!(err("5x"), r#"time: unknown unit "x" in duration "5x""#);
        assert_eq!(err("3000000h"), r#"time: invalid duration "3000000h""#);
    }
}
