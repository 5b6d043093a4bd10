//! The query of `GET /containerLogs/...`: upstream's `PodLogOptions` as URL
//! parameters, decoded and validated as the kubelet does.

use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use super::crilog::LogOptions;
pub(crate) use skiff_api::query::{percent_decode, query_pairs};

/// The log parameters of one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// `follow`.
    pub follow: bool,
    /// `previous`: the previous instance of the container.
    pub previous: bool,
    /// `timestamps`.
    pub timestamps: bool,
    /// `tailLines` (or the legacy `tail`, where `all` means unset).
    pub tail_lines: Option<i64>,
    /// `sinceSeconds`.
    pub since_seconds: Option<i64>,
    /// `sinceTime` (RFC 3339).
    pub since_time: Option<OffsetDateTime>,
    /// `limitBytes`.
    pub limit_bytes: Option<i64>,
}

/// Why a query was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryError {
    /// A parameter does not decode (400 upstream).
    Decode,
    /// The values break `PodLogOptions` validation (422 upstream).
    Invalid,
}

impl LogQuery {
    /// Decodes a raw query string.
    pub fn parse(query: Option<&str>) -> Result<LogQuery, QueryError> {
        let mut q = LogQuery::default();
        let mut tail = None;
        for (k, v) in query_pairs(query) {
            match k.as_str() {
                "follow" => q.follow = parse_bool(&v)?,
                "previous" => q.previous = parse_bool(&v)?,
                "timestamps" => q.timestamps = parse_bool(&v)?,
                "tailLines" => q.tail_lines = parse_int(&v)?,
                "tail" => tail = Some(v),
                "sinceSeconds" => q.since_seconds = parse_int(&v)?,
                "limitBytes" => q.limit_bytes = parse_int(&v)?,
                "sinceTime" if !v.is_empty() => {
                    q.since_time =
                        Some(OffsetDateTime::parse(&v, &Rfc3339).map_err(|_| QueryError::Decode)?);
                }
                _ => {}
            }
        }
        // The legacy `tail` overrides `tailLines`; `all` means every line.
        match tail.as_deref() {
            Some("all") => q.tail_lines = None,
            Some(t) if !t.is_empty() => q.tail_lines = parse_int(t)?,
            _ => {}
        }
        q.validate()?;
        Ok(q)
    }

    /// Upstream's `ValidatePodLogOptions`.
    fn validate(&self) -> Result<(), QueryError> {
        let bad = self.tail_lines.is_some_and(|t| t < 0)
            || self.limit_bytes.is_some_and(|l| l < 1)
            || (self.since_seconds.is_some() && self.since_time.is_some())
            || self.since_seconds.is_some_and(|s| s < 1);
        if bad {
            Err(QueryError::Invalid)
        } else {
            Ok(())
        }
    }

    /// The reading options at `now` (sinceSeconds counts back from it).
    pub fn options(&self, now: OffsetDateTime) -> LogOptions {
        let from_seconds = self
            .since_seconds
            .map(|s| now - Duration::seconds(s.max(0)));
        let since = match (from_seconds, self.since_time) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        LogOptions {
            tail_lines: self.tail_lines.and_then(|t| u64::try_from(t).ok()),
            since,
            timestamps: self.timestamps,
            limit_bytes: self.limit_bytes.and_then(|l| u64::try_from(l).ok()),
            follow: self.follow,
        }
    }
}

/// Go's `strconv.ParseBool`; an empty value is false.
fn parse_bool(v: &str) -> Result<bool, QueryError> {
    match v {
        "" | "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        _ => Err(QueryError::Decode),
    }
}

fn parse_int(v: &str) -> Result<Option<i64>, QueryError> {
    if v.is_empty() {
        return Ok(None);
    }
    v.parse().map(Some).map_err(|_| QueryError::Decode)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_validates_as_the_kubelet() {
        let t = |s: &str| OffsetDateTime::parse(s, &Rfc3339).unwrap();
        let ok: &[(&str, LogQuery)] = &[
            ("", LogQuery::default()),
            (
                "follow=true&previous=1&timestamps=True&tailLines=5&limitBytes=10",
                LogQuery {
                    follow: true,
                    previous: true,
                    timestamps: true,
                    tail_lines: Some(5),
                    limit_bytes: Some(10),
                    ..Default::default()
                },
            ),
            (
                "sinceTime=2026-11-29T22%3A33%3A12Z",
                LogQuery {
                    since_time: Some(t("2026-11-29T22:33:12Z")),
                    ..Default::default()
                },
            ),
            (
                "tailLines=3&tail=7",
                LogQuery {
                    tail_lines: Some(7),
                    ..Default::default()
                },
            ),
            ("tailLines=3&tail=all", LogQuery::default()),
            (
                "sinceSeconds=5&follow=false",
                LogQuery {
                    since_seconds: Some(5),
                    ..Default::default()
                },
            ),
        ];
        for (q, want) in ok {
            assert_eq!(LogQuery::parse(Some(q)).as_ref(), Ok(want), "{q}");
        }
        for (q, want) in [
            ("follow=yes", QueryError::Decode),
            ("tailLines=x", QueryError::Decode),
            ("sinceTime=yesterday", QueryError::Decode),
            ("tailLines=-1", QueryError::Invalid),
            ("limitBytes=0", QueryError::Invalid),
            ("sinceSeconds=0", QueryError::Invalid),
            (
                "sinceSeconds=5&sinceTime=2026-11-29T22:33:12Z",
                QueryError::Invalid,
            ),
        ] {
            assert_eq!(LogQuery::parse(Some(q)), Err(want), "{q}");
        }
    }

    #[test]
    fn since_seconds_counts_back_from_now() {
        let now = OffsetDateTime::parse("2026-11-29T22:33:12Z", &Rfc3339).unwrap();
        let q = LogQuery {
            since_seconds: Some(5),
            tail_lines: Some(2),
            ..Default::default()
        };
        let opts = q.options(now);
        assert_eq!(opts.since, Some(now - Duration::seconds(5)));
        assert_eq!(opts.tail_lines, Some(2));
    }

    #[test]
    fn percent_decoding() {
        for (raw, want) in [
            ("a%3Ab", "a:b"),
            ("a+b", "a b"),
            ("%zz", "%zz"),
            ("%4", "%4"),
        ] {
            assert_eq!(percent_decode(raw), want);
        }
    }
}
