//! Upstream's `k8s.io/apimachinery/pkg/util/duration`: short human-readable
//! durations for AGE-like columns.

/// Nanoseconds per second, minute, hour.
const SECOND: i64 = 1_000_000_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;

/// The duration in nanoseconds, saturated to Go's `time.Duration` range (which is
/// what `time.Since` returns for instants centuries apart).
fn go_nanos(d: time::Duration) -> i64 {
    let nanos = d.whole_nanoseconds();
    i64::try_from(nanos).unwrap_or(if nanos < 0 { i64::MIN } else { i64::MAX })
}

/// Go's `int(d.Seconds())`: whole seconds, truncated toward zero.
fn whole_seconds(nanos: i64) -> i64 {
    nanos / SECOND
}

/// Upstream's `duration.HumanDuration`: about two significant figures, e.g.
/// `45s`, `2m10s`, `25m`, `3h2m`, `20h`, `2d5h`, `45d`, `3y45d`, `12y`.
///
/// Seconds below two minutes; minutes and seconds below 10 minutes; minutes below
/// 3 hours; hours and minutes below 8 hours; hours below 2 days; days and hours
/// below 8 days; days below 2 years; years and days below 8 years; then years.
/// Up to a second in the future counts as `0s` (clock skew), further is
/// `<invalid>`.
pub fn human_duration(d: time::Duration) -> String {
    let nanos = go_nanos(d);
    let seconds = whole_seconds(nanos);
    if seconds < -1 {
        return "<invalid>".to_owned();
    }
    if seconds < 0 {
        return "0s".to_owned();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = nanos / MINUTE;
    if minutes < 10 {
        let s = (nanos / SECOND) % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = nanos / HOUR;
    if hours < 8 {
        let m = (nanos / MINUTE) % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// Upstream's `duration.ShortHumanDuration`: one unit only (`45s`, `12m`, `5h`,
/// `3d`, `2y`), with the same tolerance for clock skew as [`human_duration`].
pub fn short_human_duration(d: time::Duration) -> String {
    let nanos = go_nanos(d);
    let seconds = whole_seconds(nanos);
    if seconds < -1 {
        "<invalid>".to_owned()
    } else if seconds < 0 {
        "0s".to_owned()
    } else if seconds < 60 {
        format!("{seconds}s")
    } else if nanos / MINUTE < 60 {
        format!("{}m", nanos / MINUTE)
    } else if nanos / HOUR < 24 {
        format!("{}h", nanos / HOUR)
    } else if nanos / HOUR < 24 * 365 {
        format!("{}d", nanos / HOUR / 24)
    } else {
        format!("{}y", nanos / HOUR / 24 / 365)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: i64) -> time::Duration {
        time::Duration::seconds(s)
    }

    #[test]
    fn human_duration_boundaries() {
        const M: i64 = 60;
        const H: i64 = 3600;
        const D: i64 = 24 * H;
        const Y: i64 = 365 * D;
        let cases: &[(time::Duration, &str)] = &[
            (time::Duration::milliseconds(-2500), "<invalid>"),
            (secs(-2), "<invalid>"),
            (time::Duration::milliseconds(-1999), "0s"),
            (secs(-1), "0s"),
            (time::Duration::milliseconds(-500), "0s"),
            (secs(0), "0s"),
            (time::Duration::milliseconds(999), "0s"),
            (secs(1), "1s"),
            (secs(45), "45s"),
            (secs(60), "60s"),
            (secs(119), "119s"),
            (time::Duration::milliseconds(119_999), "119s"),
            (secs(120), "2m"),
            (secs(130), "2m10s"),
            (secs(9 * M + 59), "9m59s"),
            (secs(10 * M), "10m"),
            (secs(10 * M + 30), "10m"),
            (secs(179 * M + 59), "179m"),
            (secs(3 * H), "3h"),
            (secs(3 * H + 2 * M), "3h2m"),
            (secs(3 * H + 2 * M + 59), "3h2m"),
            (secs(7 * H + 59 * M), "7h59m"),
            (secs(8 * H), "8h"),
            (secs(8 * H + 30 * M), "8h"),
            (secs(47 * H + 59 * M), "47h"),
            (secs(48 * H), "2d"),
            (secs(2 * D + 5 * H), "2d5h"),
            (secs(7 * D + 23 * H), "7d23h"),
            (secs(8 * D), "8d"),
            (secs(8 * D + 5 * H), "8d"),
            (secs(45 * D), "45d"),
            (secs(2 * Y - 1), "729d"),
            (secs(2 * Y), "2y"),
            (secs(3 * Y + 45 * D), "3y45d"),
            (secs(8 * Y - 1), "7y364d"),
            (secs(8 * Y), "8y"),
            (secs(8 * Y + 100 * D), "8y"),
            (secs(100 * Y), "100y"),
            // Beyond Go's Duration range: saturated like time.Since.
            (secs(1000 * Y), "292y"),
            (secs(-1000 * Y), "<invalid>"),
        ];
        for (d, want) in cases {
            assert_eq!(human_duration(*d), *want, "{d:?}");
        }
    }

    #[test]
    fn short_human_duration_boundaries() {
        let cases: &[(i64, &str)] = &[
            (-2, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (59, "59s"),
            (60, "1m"),
            (3599, "59m"),
            (3600, "1h"),
            (86399, "23h"),
            (86400, "1d"),
            (365 * 86400 - 1, "364d"),
            (365 * 86400, "1y"),
            (3 * 365 * 86400, "3y"),
        ];
        for (s, want) in cases {
            assert_eq!(short_human_duration(secs(*s)), *want, "{s}s");
        }
    }
}
