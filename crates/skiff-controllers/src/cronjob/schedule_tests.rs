//! The schedule evaluator against robfig/cron v3's results.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::schedule::{load_location, parse_standard};

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

#[test]
fn next_activation_times() {
    // (schedule, zone for zone-less schedules, from, expected next).
    let cases: &[(&str, &str, &str, Option<&str>)] = &[
        (
            "*/15 * * * *",
            "UTC",
            "2024-01-01T00:07:30Z",
            Some("2024-01-01T00:15:00Z"),
        ),
        (
            "*/15 * * * *",
            "UTC",
            "2024-01-01T00:15:00Z",
            Some("2024-01-01T00:30:00Z"),
        ),
        (
            "5/20 * * * *",
            "UTC",
            "2024-01-01T00:26:00Z",
            Some("2024-01-01T00:45:00Z"),
        ),
        (
            "0,30 8-10 * * *",
            "UTC",
            "2024-01-01T10:30:00Z",
            Some("2024-01-02T08:00:00Z"),
        ),
        // Feb 29 only exists in leap years.
        (
            "0 0 29 2 *",
            "UTC",
            "2023-03-01T00:00:00Z",
            Some("2024-02-29T00:00:00Z"),
        ),
        (
            "0 0 29 2 *",
            "UTC",
            "2024-02-29T00:00:00Z",
            Some("2028-02-29T00:00:00Z"),
        ),
        // Both day fields restricted: the 13th OR any Friday.
        (
            "0 0 13 * 5",
            "UTC",
            "2024-09-01T00:00:00Z",
            Some("2024-09-06T00:00:00Z"),
        ),
        (
            "0 0 13 * 5",
            "UTC",
            "2024-09-06T00:00:00Z",
            Some("2024-09-13T00:00:00Z"),
        ),
        (
            "0 0 13 * 5",
            "UTC",
            "2024-09-13T00:00:00Z",
            Some("2024-09-20T00:00:00Z"),
        ),
        // A starred day of month: day of week alone decides.
        (
            "0 0 * * 1",
            "UTC",
            "2024-09-01T00:00:00Z",
            Some("2024-09-02T00:00:00Z"),
        ),
        // "*/1" still counts as a star; "1-31" does not (then it is OR).
        (
            "0 0 */1 * 1",
            "UTC",
            "2024-09-02T12:00:00Z",
            Some("2024-09-09T00:00:00Z"),
        ),
        (
            "0 0 1-31 * 1",
            "UTC",
            "2024-09-02T12:00:00Z",
            Some("2024-09-03T00:00:00Z"),
        ),
        (
            "0 0 ? * MON",
            "UTC",
            "2024-09-02T12:00:00Z",
            Some("2024-09-09T00:00:00Z"),
        ),
        (
            "0 9 * jan-mar mon-fri",
            "UTC",
            "2024-03-29T09:00:00Z",
            Some("2025-01-01T09:00:00Z"),
        ),
        // Descriptors.
        (
            "@hourly",
            "UTC",
            "2024-01-01T10:59:59Z",
            Some("2024-01-01T11:00:00Z"),
        ),
        (
            "@hourly",
            "UTC",
            "2024-01-01T11:00:00Z",
            Some("2024-01-01T12:00:00Z"),
        ),
        (
            "@daily",
            "UTC",
            "2024-01-01T10:00:00Z",
            Some("2024-01-02T00:00:00Z"),
        ),
        (
            "@midnight",
            "UTC",
            "2024-01-01T10:00:00Z",
            Some("2024-01-02T00:00:00Z"),
        ),
        (
            "@weekly",
            "UTC",
            "2024-09-03T10:00:00Z",
            Some("2024-09-08T00:00:00Z"),
        ),
        (
            "@monthly",
            "UTC",
            "2024-09-03T10:00:00Z",
            Some("2024-10-01T00:00:00Z"),
        ),
        (
            "@yearly",
            "UTC",
            "2024-09-03T10:00:00Z",
            Some("2025-01-01T00:00:00Z"),
        ),
        (
            "@annually",
            "UTC",
            "2024-09-03T10:00:00Z",
            Some("2025-01-01T00:00:00Z"),
        ),
        (
            "@every 90m",
            "UTC",
            "2024-01-01T10:00:00.5Z",
            Some("2024-01-01T11:30:00Z"),
        ),
        (
            "@every 1.5s",
            "UTC",
            "2024-01-01T10:00:00Z",
            Some("2024-01-01T10:00:01Z"),
        ),
        // A zone-less schedule runs in the given local zone.
        (
            "0 9 * * *",
            "Asia/Tokyo",
            "2024-01-01T00:00:00Z",
            Some("2024-01-02T00:00:00Z"),
        ),
        (
            "TZ=Asia/Tokyo 0 9 * * *",
            "UTC",
            "2023-12-31T23:00:00Z",
            Some("2024-01-01T00:00:00Z"),
        ),
        (
            "CRON_TZ=UTC 0 9 * * *",
            "Asia/Tokyo",
            "2024-01-01T00:00:00Z",
            Some("2024-01-01T09:00:00Z"),
        ),
        // New York springs forward at 02:00 on 2024-03-10: 02:30 does not
        // exist that day, so it is skipped.
        (
            "30 2 * * *",
            "America/New_York",
            "2024-03-09T17:00:00Z",
            Some("2024-03-11T06:30:00Z"),
        ),
        (
            "0 * * * *",
            "America/New_York",
            "2024-03-10T06:30:00Z",
            Some("2024-03-10T07:00:00Z"),
        ),
        (
            "0 3 * * *",
            "America/New_York",
            "2024-03-10T05:00:00Z",
            Some("2024-03-10T07:00:00Z"),
        ),
        // ... and falls back at 02:00 on 2024-11-03: 01:30 happens twice.
        (
            "30 1 * * *",
            "America/New_York",
            "2024-11-03T04:00:00Z",
            Some("2024-11-03T05:30:00Z"),
        ),
        (
            "30 1 * * *",
            "America/New_York",
            "2024-11-03T05:30:00Z",
            Some("2024-11-03T06:30:00Z"),
        ),
        (
            "30 1 * * *",
            "America/New_York",
            "2024-11-03T06:30:00Z",
            Some("2024-11-04T06:30:00Z"),
        ),
        (
            "0 12 * * *",
            "America/New_York",
            "2024-11-03T04:00:00Z",
            Some("2024-11-03T17:00:00Z"),
        ),
        // Never: February 30th.
        ("0 0 30 2 *", "UTC", "2024-01-01T00:00:00Z", None),
    ];
    for (spec, zone, from, want) in cases {
        let local = load_location(zone).unwrap();
        let sched = parse_standard(spec, &local).unwrap();
        let got = sched.next(ts(from));
        assert_eq!(got, want.map(ts), "{spec} in {zone} after {from}");
    }
}

/// The parser's own messages are checked in `skiff_api::cron`; here, that
/// they come through and that `TZ=` zones resolve through the zone
/// database.
#[test]
fn parse_errors_come_from_the_shared_parser_and_the_zone_database() {
    let cases = [
        ("* * *", "expected exactly 5 fields, found 3: [* * *]"),
        (
            "TZ=Nowhere/Special * * * * *",
            "provided bad location Nowhere/Special: unknown time zone Nowhere/Special",
        ),
    ];
    for (spec, want) in cases {
        assert_eq!(
            parse_standard(spec, &TimeZone::UTC).unwrap_err(),
            want,
            "{spec}"
        );
    }
}

#[test]
fn zones_load_like_go() {
    assert_eq!(load_location("").unwrap(), TimeZone::UTC);
    assert_eq!(load_location("UTC").unwrap(), TimeZone::UTC);
    assert!(load_location("Europe/Berlin").is_ok());
    assert_eq!(
        load_location("Mars/Olympus").unwrap_err(),
        "unknown time zone Mars/Olympus"
    );
}
