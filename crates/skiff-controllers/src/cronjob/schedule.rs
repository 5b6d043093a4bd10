//! Cron schedules as the CronJob controller evaluates them: the schedules
//! `skiff_api::cron` parses (the one parser, shared with the API server's
//! validation) in the zone they name, with `robfig/cron/v3`'s `Next`,
//! including its day-of-month/day-of-week OR rule and its behaviour around
//! daylight saving transitions (a skipped hour never fires; a repeated hour
//! fires twice).

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Span, Timestamp, Zoned};
use skiff_api::cron::{Fields, Parsed, STAR_BIT};

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// Field bit sets (robfig's `SpecSchedule`).
    Spec(SpecSchedule),
    /// `@every <duration>`: fires every `delay` after the given time.
    ConstantDelay(SignedDuration),
}

/// The allowed values of each field, in a zone.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecSchedule {
    fields: Fields,
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
    Ok(
        match skiff_api::cron::parse_standard(spec, load_location)? {
            Parsed::Spec { fields, zone } => Schedule::Spec(SpecSchedule {
                fields,
                location: zone.unwrap_or_else(|| local.clone()),
            }),
            Parsed::Every { seconds } => {
                Schedule::ConstantDelay(SignedDuration::from_secs(seconds))
            }
        },
    )
}

impl Schedule {
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
        let f = &self.fields;
        let dom = f.dom & (1 << t.day()) > 0;
        let dow = f.dow & (1 << t.weekday().to_sunday_zero_offset()) > 0;
        if f.dom & STAR_BIT > 0 || f.dow & STAR_BIT > 0 {
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
            while self.fields.month & (1 << t.month()) == 0 {
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
            while self.fields.hour & (1 << t.hour()) == 0 {
                if !added {
                    added = true;
                    t = go_date(wall(&t, t.hour(), 0)?, loc)?;
                }
                t = add(&t, SignedDuration::from_hours(1))?;
                if t.hour() == 0 {
                    continue 'wrap;
                }
            }
            while self.fields.minute & (1 << t.minute()) == 0 {
                if !added {
                    added = true;
                    t = truncate(&t, 60)?;
                }
                t = add(&t, SignedDuration::from_mins(1))?;
                if t.minute() == 0 {
                    continue 'wrap;
                }
            }
            while self.fields.second & (1 << t.second()) == 0 {
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
