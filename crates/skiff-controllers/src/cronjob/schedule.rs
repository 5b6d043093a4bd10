//! Cron schedules as the CronJob controller evaluates them: the standard
//! syntax of `robfig/cron/v3`'s `ParseStandard` (five fields or an `@`
//! descriptor, optionally after `TZ=`/`CRON_TZ=`) and its `Next`, including
//! its day-of-month/day-of-week OR rule and its behaviour around daylight
//! saving transitions (a skipped hour never fires; a repeated hour fires
//! twice).
//!
//! The API server checks schedules with its own checker (same messages);
//! this module parses them into something that can be evaluated.

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Span, Timestamp, Zoned};

/// Set on a field written `*` or `?` (with no step above 1): a day-of-month
/// or day-of-week field with it does not take part in the OR rule.
const STAR_BIT: u64 = 1 << 63;

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [&'static str],
    first_name: u32,
}

const SECONDS: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
    first_name: 0,
};
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

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// Field bit sets (robfig's `SpecSchedule`).
    Spec(SpecSchedule),
    /// `@every <duration>`: fires every `delay` after the given time.
    ConstantDelay(SignedDuration),
}

/// One bit per allowed value of each field, plus [`STAR_BIT`].
#[derive(Debug, Clone, PartialEq)]
pub struct SpecSchedule {
    second: u64,
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
    location: TimeZone,
}

/// Loads a zone as Go's `time.LoadLocation` does (`""` and `UTC` are UTC);
/// the error is Go's message.
pub fn load_location(name: &str) -> Result<TimeZone, String> {
    if name.is_empty() || name == "UTC" {
        return Ok(TimeZone::UTC);
    }
    if name == "Local" {
        return Ok(TimeZone::system());
    }
    jiff::tz::db()
        .get(name)
        .map_err(|_| format!("unknown time zone {name}"))
}

/// Parses `spec` as `ParseStandard` does; schedules without a `TZ=` prefix
/// are evaluated in `local` (upstream: the controller manager's zone).
pub fn parse_standard(spec: &str, local: &TimeZone) -> Result<Schedule, String> {
    if spec.is_empty() {
        return Err("empty spec string".into());
    }
    let mut spec = spec;
    let mut location = local.clone();
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        let eq = spec.find('=').unwrap_or(0);
        let space = spec.find(' ').unwrap_or(spec.len());
        let zone = spec.get(eq + 1..space).unwrap_or("");
        location = load_location(zone).map_err(|e| format!("provided bad location {zone}: {e}"))?;
        spec = spec[space..].trim();
    }
    if spec.starts_with('@') {
        return parse_descriptor(spec, location);
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    Ok(Schedule::Spec(SpecSchedule {
        second: 1 << SECONDS.min,
        minute: get_field(fields[0], &MINUTES)?,
        hour: get_field(fields[1], &HOURS)?,
        dom: get_field(fields[2], &DOM)?,
        month: get_field(fields[3], &MONTHS)?,
        dow: get_field(fields[4], &DOW)?,
        location,
    }))
}

fn parse_descriptor(d: &str, location: TimeZone) -> Result<Schedule, String> {
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
            return Ok(Schedule::every(delay));
        }
    };
    Ok(Schedule::Spec(SpecSchedule {
        second: one(&SECONDS),
        minute,
        hour,
        dom,
        month,
        dow,
        location,
    }))
}

fn all(b: &Bounds) -> u64 {
    bits(b.min, b.max, 1) | STAR_BIT
}

fn bits(min: u32, max: u32, step: u32) -> u64 {
    (min..=max)
        .step_by(step.max(1) as usize)
        .fold(0, |acc, v| acc | 1 << v)
}

fn get_field(field: &str, b: &Bounds) -> Result<u64, String> {
    let mut out = 0;
    for expr in field.split(',') {
        out |= get_range(expr, b)?;
    }
    Ok(out)
}

fn parse_int(expr: &str) -> Result<u32, String> {
    let n: i64 = expr.parse().map_err(|e: std::num::ParseIntError| {
        let why = match e.kind() {
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                "value out of range"
            }
            _ => "invalid syntax",
        };
        format!("failed to parse int from {expr}: strconv.Atoi: parsing \"{expr}\": {why}")
    })?;
    if n < 0 {
        return Err(format!("negative number ({n}) not allowed: {expr}"));
    }
    // Anything this large is out of every field's range.
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

fn parse_int_or_name(expr: &str, b: &Bounds) -> Result<u32, String> {
    let lower = expr.to_lowercase();
    match b.names.iter().position(|n| *n == lower) {
        Some(i) => Ok(b.first_name + i as u32),
        None => parse_int(expr),
    }
}

fn get_range(expr: &str, b: &Bounds) -> Result<u64, String> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single = low_high.len() == 1;
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
            if single {
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

/// Go's `time.ParseDuration`, to whole nanoseconds.
fn parse_go_duration(s: &str) -> Result<SignedDuration, String> {
    let invalid = || format!("time: invalid duration \"{s}\"");
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Ok(SignedDuration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let number = &rest[..n];
        rest = &rest[n..];
        let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && frac.is_empty()) || frac.contains('.') {
            return Err(invalid());
        }
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..u];
        rest = &rest[u..];
        let nanos: i128 = match unit {
            "" => return Err(format!("time: missing unit in duration \"{s}\"")),
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(format!("time: unknown unit \"{unit}\" in duration \"{s}\"")),
        };
        let whole: i128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| invalid())?
        };
        let mut part = whole.checked_mul(nanos).ok_or_else(invalid)?;
        let mut scale = nanos;
        for d in frac.bytes().take(20) {
            scale /= 10;
            part += i128::from(d - b'0') * scale;
        }
        total = total.checked_add(part).ok_or_else(invalid)?;
        if total > i128::from(i64::MAX) {
            return Err(invalid());
        }
    }
    let total = if neg { -total } else { total };
    let secs = i64::try_from(total / 1_000_000_000).map_err(|_| invalid())?;
    let nanos = i32::try_from(total % 1_000_000_000).map_err(|_| invalid())?;
    Ok(SignedDuration::new(secs, nanos))
}

impl Schedule {
    /// `@every`: the delay is at least a second and whole seconds.
    fn every(d: SignedDuration) -> Schedule {
        let secs = d.as_secs().max(1);
        Schedule::ConstantDelay(SignedDuration::from_secs(secs))
    }

    /// The first activation strictly after `t`, or `None` when there is
    /// none within five years (robfig returns the zero time then).
    pub fn next(&self, t: Timestamp) -> Option<Timestamp> {
        match self {
            Schedule::ConstantDelay(d) => {
                let whole = Timestamp::from_second(t.as_second()).ok()?;
                whole.checked_add(*d).ok()
            }
            Schedule::Spec(s) => s.next(t),
        }
    }
}

/// `time.Date` in `tz`; a wall time in a gap or a fold resolves to the
/// earlier instant, as Go's does.
fn go_date(dt: DateTime, tz: &TimeZone) -> Option<Zoned> {
    tz.to_ambiguous_zoned(dt).earlier().ok()
}

fn wall(z: &Zoned, h: i8, m: i8) -> Option<DateTime> {
    DateTime::new(z.year(), z.month(), z.day(), h, m, 0, 0).ok()
}

fn add(z: &Zoned, d: SignedDuration) -> Option<Zoned> {
    z.checked_add(d).ok()
}

impl SpecSchedule {
    fn day_matches(&self, t: &Zoned) -> bool {
        let dom = self.dom & (1 << t.day()) > 0;
        let dow = self.dow & (1 << t.weekday().to_sunday_zero_offset()) > 0;
        if self.dom & STAR_BIT > 0 || self.dow & STAR_BIT > 0 {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// robfig's `SpecSchedule.Next`: walks month, day, hour, minute, second
    /// forward until all match, restarting from the month after a wrap.
    fn next(&self, t: Timestamp) -> Option<Timestamp> {
        let loc = &self.location;
        // The upcoming whole second.
        let start = Timestamp::from_second(t.as_second().checked_add(1)?).ok()?;
        let mut t = start.to_zoned(loc.clone());
        let mut added = false;
        let year_limit = t.year() + 5;
        'wrap: loop {
            if t.year() > year_limit {
                return None;
            }
            while self.month & (1 << t.month()) == 0 {
                if !added {
                    added = true;
                    t = go_date(wall(&t, 0, 0)?.with().day(1).build().ok()?, loc)?;
                }
                let dt = t.datetime().checked_add(Span::new().months(1)).ok()?;
                t = go_date(dt, loc)?;
                if t.month() == 1 {
                    continue 'wrap;
                }
            }
            while !self.day_matches(&t) {
                if !added {
                    added = true;
                    t = go_date(wall(&t, 0, 0)?, loc)?;
                }
                let dt = t.datetime().checked_add(Span::new().days(1)).ok()?;
                t = go_date(dt, loc)?;
                // Where DST moves midnight, get back to the day's start.
                let h = i64::from(t.hour());
                if h != 0 {
                    let shift = if h > 12 { 24 - h } else { -h };
                    t = add(&t, SignedDuration::from_hours(shift))?;
                }
                if t.day() == 1 {
                    continue 'wrap;
                }
            }
            while self.hour & (1 << t.hour()) == 0 {
                if !added {
                    added = true;
                    t = go_date(wall(&t, t.hour(), 0)?, loc)?;
                }
                t = add(&t, SignedDuration::from_hours(1))?;
                if t.hour() == 0 {
                    continue 'wrap;
                }
            }
            while self.minute & (1 << t.minute()) == 0 {
                if !added {
                    added = true;
                    t = truncate(&t, 60)?;
                }
                t = add(&t, SignedDuration::from_mins(1))?;
                if t.minute() == 0 {
                    continue 'wrap;
                }
            }
            while self.second & (1 << t.second()) == 0 {
                if !added {
                    added = true;
                    t = truncate(&t, 1)?;
                }
                t = add(&t, SignedDuration::from_secs(1))?;
                if t.second() == 0 {
                    continue 'wrap;
                }
            }
            return Some(t.timestamp());
        }
    }
}

/// Go's `Time.Truncate`: on absolute time, not wall time.
fn truncate(t: &Zoned, secs: i64) -> Option<Zoned> {
    let s = t.timestamp().as_second();
    let ts = Timestamp::from_second(s - s.rem_euclid(secs)).ok()?;
    Some(ts.to_zoned(t.time_zone().clone()))
}
