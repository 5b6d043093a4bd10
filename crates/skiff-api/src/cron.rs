//! Standard cron schedules as upstream parses them (`robfig/cron/v3`'s
//! `ParseStandard`): five fields (minute, hour, day of month, month, day of
//! week) or an `@` descriptor, optionally after `TZ=`/`CRON_TZ=`, with the
//! parser's error messages. The one parser behind the API server's CronJob
//! validation ([`check_schedule`]) and the CronJob controller, which
//! evaluates the [`Parsed`] result in the zone it resolves.

use crate::duration::{GoDuration, parse_go_duration};

/// Set on a field written `*` or `?` (with no step above 1): a day-of-month
/// or day-of-week field with it does not take part in the OR rule of the
/// two day fields.
pub const STAR_BIT: u64 = 1 << 63;

struct Bounds {
    min: u64,
    max: u64,
    names: &'static [&'static str],
    /// The value of the first name.
    first_name: u64,
}

const SECONDS: Bounds = MINUTES;
const MINUTES: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
    first_name: 0,
};
const HOURS: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
    first_name: 0,
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
    first_name: 0,
};
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
    first_name: 1,
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    first_name: 0,
};

/// One bit per allowed value of each field, plus [`STAR_BIT`] (robfig's
/// `SpecSchedule` without its location).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fields {
    /// Seconds 0-59 (always second 0 for standard schedules).
    pub second: u64,
    /// Minutes 0-59.
    pub minute: u64,
    /// Hours 0-23.
    pub hour: u64,
    /// Days of the month 1-31.
    pub dom: u64,
    /// Months 1-12.
    pub month: u64,
    /// Days of the week 0-6, Sunday first.
    pub dow: u64,
}

/// A parsed schedule; `Z` is what the caller resolves a `TZ=` zone to.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed<Z> {
    /// Fields, in the named zone (`None`: no `TZ=` prefix).
    Spec {
        /// The allowed values.
        fields: Fields,
        /// The `TZ=`/`CRON_TZ=` zone, resolved.
        zone: Option<Z>,
    },
    /// `@every <duration>`: a fixed delay in whole seconds, at least one
    /// (robfig's `Every` rounding).
    Every {
        /// The delay.
        seconds: i64,
    },
}

/// Parses `spec` as `ParseStandard` does. A `TZ=`/`CRON_TZ=` zone goes
/// through `resolve_zone` (Go's `time.LoadLocation`), whose error is
/// reported as the parser's `provided bad location <zone>: <error>`.
pub fn parse_standard<Z>(
    spec: &str,
    resolve_zone: impl FnOnce(&str) -> Result<Z, String>,
) -> Result<Parsed<Z>, String> {
    if spec.is_empty() {
        return Err("empty spec string".into());
    }
    let mut spec = spec;
    let mut zone = None;
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        let eq = spec.find('=').unwrap_or(0);
        let Some(space) = spec.find(' ') else {
            let name = &spec[eq + 1..];
            return Err(format!(
                "provided bad location {name}: unknown time zone {name}"
            ));
        };
        let name = &spec[eq + 1..space];
        zone = Some(resolve_zone(name).map_err(|e| format!("provided bad location {name}: {e}"))?);
        spec = spec[space..].trim();
    }
    if spec.starts_with('@') {
        return parse_descriptor(spec, zone);
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    Ok(Parsed::Spec {
        fields: Fields {
            second: 1 << SECONDS.min,
            minute: get_field(fields[0], &MINUTES)?,
            hour: get_field(fields[1], &HOURS)?,
            dom: get_field(fields[2], &DOM)?,
            month: get_field(fields[3], &MONTHS)?,
            dow: get_field(fields[4], &DOW)?,
        },
        zone,
    })
}

/// Checks a schedule for the API server, which has no zone database: a
/// `TZ=` zone must only look like a zone name. The error is the parser's
/// message.
pub fn check_schedule(spec: &str) -> Result<(), String> {
    parse_standard(spec, |zone| {
        if zone.is_empty() || zone.contains("..") || zone.starts_with('/') {
            Err(format!("unknown time zone {zone}"))
        } else {
            Ok(())
        }
    })
    .map(|_| ())
}

fn parse_descriptor<Z>(d: &str, zone: Option<Z>) -> Result<Parsed<Z>, String> {
    let one = |b: &Bounds| 1u64 << b.min;
    let (minute, hour, dom, month, dow) = match d {
        "@yearly" | "@annually" => (
            one(&MINUTES),
            one(&HOURS),
            one(&DOM),
            one(&MONTHS),
            all(&DOW),
        ),
        "@monthly" => (
            one(&MINUTES),
            one(&HOURS),
            one(&DOM),
            all(&MONTHS),
            all(&DOW),
        ),
        "@weekly" => (
            one(&MINUTES),
            one(&HOURS),
            all(&DOM),
            all(&MONTHS),
            one(&DOW),
        ),
        "@daily" | "@midnight" => (
            one(&MINUTES),
            one(&HOURS),
            all(&DOM),
            all(&MONTHS),
            all(&DOW),
        ),
        "@hourly" => (
            one(&MINUTES),
            all(&HOURS),
            all(&DOM),
            all(&MONTHS),
            all(&DOW),
        ),
        _ => {
            let Some(dur) = d.strip_prefix("@every ") else {
                return Err(format!("unrecognized descriptor: {d}"));
            };
            let delay =
                parse_go_duration(dur).map_err(|e| format!("failed to parse duration {d}: {e}"))?;
            // robfig's `Every`: at least a second, whole seconds.
            let seconds = match delay {
                GoDuration::Positive(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX).max(1),
                GoDuration::Negative(_) => 1,
            };
            return Ok(Parsed::Every { seconds });
        }
    };
    Ok(Parsed::Spec {
        fields: Fields {
            second: one(&SECONDS),
            minute,
            hour,
            dom,
            month,
            dow,
        },
        zone,
    })
}

fn all(b: &Bounds) -> u64 {
    bits(b.min, b.max, 1) | STAR_BIT
}

/// Bits `min..=max` by `step`; callers keep `max` within a field's bounds.
fn bits(min: u64, max: u64, step: u64) -> u64 {
    (min..=max)
        .step_by(usize::try_from(step).unwrap_or(usize::MAX).max(1))
        .fold(0, |acc, v| acc | 1 << v)
}

fn get_field(field: &str, b: &Bounds) -> Result<u64, String> {
    let mut out = 0;
    // Go's `strings.FieldsFunc`: empty ranges are skipped.
    for expr in field.split(',').filter(|e| !e.is_empty()) {
        out |= get_range(expr, b)?;
    }
    Ok(out)
}

/// Go's `strconv.Atoi` as the parser reports it.
fn parse_int(expr: &str) -> Result<u64, String> {
    let n: i64 = expr.parse().map_err(|e: std::num::ParseIntError| {
        let why = match e.kind() {
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                "value out of range"
            }
            _ => "invalid syntax",
        };
        format!(
            "failed to parse int from {expr}: strconv.Atoi: parsing {}: {why}",
            crate::go_quote(expr)
        )
    })?;
    u64::try_from(n).map_err(|_| format!("negative number ({n}) not allowed: {expr}"))
}

fn parse_int_or_name(expr: &str, b: &Bounds) -> Result<u64, String> {
    let lower = expr.to_lowercase();
    if let Some(i) = b.names.iter().position(|n| *n == lower) {
        return Ok(b.first_name + i as u64);
    }
    parse_int(expr)
}

fn get_range(expr: &str, b: &Bounds) -> Result<u64, String> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_high: Vec<&str> = range_and_step[0].split('-').collect();
    let (start, mut end, mut extra) = if low_high[0] == "*" || low_high[0] == "?" {
        (b.min, b.max, STAR_BIT)
    } else {
        let start = parse_int_or_name(low_high[0], b)?;
        match low_high.len() {
            1 => (start, start, 0),
            2 => (start, parse_int_or_name(low_high[1], b)?, 0),
            _ => return Err(format!("too many hyphens: {expr}")),
        }
    };
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = parse_int(range_and_step[1])?;
            // "N/step" means "N-max/step".
            if low_high.len() == 1 {
                end = b.max;
            }
            if step > 1 {
                extra = 0;
            }
            step
        }
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < b.min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            b.min
        ));
    }
    if end > b.max {
        return Err(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            b.max
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    Ok(bits(start, end, step) | extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_are_checked_like_robfig_cron() {
        for ok in [
            "* * * * *",
            "*/5 * * * *",
            "0 0 1 jan-dec MON-FRI",
            "0,30 8-18 * * 1-5",
            "5/10 * * * *",
            "@hourly",
            "@every 1h30m",
            "CRON_TZ=UTC 0 * * * *",
        ] {
            assert_eq!(check_schedule(ok), Ok(()), "{ok}");
        }
        for (bad, want) in [
            ("", "empty spec string"),
            ("* * *", "expected exactly 5 fields, found 3: [* * *]"),
            ("60 * * * *", "end of range (60) above maximum (59): 60"),
            ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
            (
                "5-1 * * * *",
                "beginning of range (5) beyond end of range (1): 5-1",
            ),
            (
                "*/0 * * * *",
                "step of range should be a positive number: */0",
            ),
            (
                "x * * * *",
                "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax",
            ),
            ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
            ("1/2/3 * * * *", "too many slashes: 1/2/3"),
            ("@sometimes", "unrecognized descriptor: @sometimes"),
            (
                "@every 5x",
                "failed to parse duration @every 5x: time: unknown unit \"x\" in duration \"5x\"",
            ),
            ("* * * * 7", "end of range (7) above maximum (6): 7"),
            ("TZ=UTC", "provided bad location UTC: unknown time zone UTC"),
            (
                "TZ=../etc * * * * *",
                "provided bad location ../etc: unknown time zone ../etc",
            ),
        ] {
            assert_eq!(check_schedule(bad), Err(want.to_owned()), "{bad}");
        }
    }

    #[test]
    fn fields_become_bits() {
        let Ok(Parsed::Spec { fields, zone }) = parse_standard("*/20 8-9 1,15 feb sun", |_| Ok(()))
        else {
            panic!("parses");
        };
        assert_eq!(zone, None);
        assert_eq!(fields.second, 1);
        assert_eq!(fields.minute, 1 | 1 << 20 | 1 << 40);
        assert_eq!(fields.hour, 1 << 8 | 1 << 9);
        assert_eq!(fields.dom, 1 << 1 | 1 << 15);
        assert_eq!(fields.month, 1 << 2);
        assert_eq!(fields.dow, 1);
        // A star keeps its mark unless a step above 1 thins it out.
        let Ok(Parsed::Spec { fields, .. }) = parse_standard("* * * * */1", |_| Ok(())) else {
            panic!("parses");
        };
        assert_eq!(fields.dom, bits(1, 31, 1) | STAR_BIT);
        assert_eq!(fields.dow, bits(0, 6, 1) | STAR_BIT);
        let Ok(Parsed::Spec { fields, .. }) = parse_standard("* * */2 * *", |_| Ok(())) else {
            panic!("parses");
        };
        assert_eq!(fields.dom & STAR_BIT, 0);
    }

    #[test]
    fn zones_go_through_the_resolver() {
        let parsed = parse_standard("CRON_TZ=Europe/Berlin @daily", |z| Ok(z.to_owned()));
        assert!(matches!(parsed, Ok(Parsed::Spec { zone: Some(z), .. }) if z == "Europe/Berlin"));
        assert_eq!(
            parse_standard("TZ=Mars/Olympus * * * * *", |z| Err::<(), _>(format!(
                "unknown time zone {z}"
            ))),
            Err("provided bad location Mars/Olympus: unknown time zone Mars/Olympus".to_owned())
        );
    }

    #[test]
    fn every_rounds_to_whole_seconds_of_at_least_one() {
        let every = |d: &str| match parse_standard(&format!("@every {d}"), |_| Ok(())) {
            Ok(Parsed::Every { seconds }) => Ok(seconds),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e),
        };
        assert_eq!(every("1h30m"), Ok(5400));
        assert_eq!(every("1.9s"), Ok(1));
        assert_eq!(every("2.5s"), Ok(2));
        assert_eq!(every("10ms"), Ok(1));
        assert_eq!(every("-5m"), Ok(1));
        assert_eq!(every(".5m"), Ok(30));
        assert_eq!(
            every("1.2.3s"),
            Err(
                "failed to parse duration @every 1.2.3s: time: missing unit in duration \"1.2.3s\""
                    .into()
            )
        );
        assert_eq!(
            every("s"),
            Err("failed to parse duration @every s: time: invalid duration \"s\"".into())
        );
        assert_eq!(
            every("3000000h"),
            Err(
                "failed to parse duration @every 3000000h: time: invalid duration \"3000000h\""
                    .into()
            )
        );
    }
}
