//! Due times, requeue delays, the Job template and history selection.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use serde_json::json;

use super::schedule::parse_standard;
use super::utils::*;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn cronjob(schedule: &str, last: Option<&str>, deadline: Option<i64>) -> CronJob {
    serde_json::from_value(json!({
        "metadata": {"name": "cj", "namespace": "ns", "uid": "u-1",
                     "creationTimestamp": "2024-01-01T10:30:00Z"},
        "spec": {"schedule": schedule, "startingDeadlineSeconds": deadline,
                 "jobTemplate": {"spec": {"template": {"spec": {"containers": []}}}}},
        "status": {"lastScheduleTime": last},
    }))
    .unwrap()
}

/// (schedule, lastScheduleTime, deadline, with deadline, now, most recent,
/// missed).
type MostRecentCase<'a> = (
    &'a str,
    Option<&'a str>,
    Option<i64>,
    bool,
    &'a str,
    Option<&'a str>,
    MissedSchedules,
);

/// (lastScheduleTime, now, due, requeue after, too many).
type DueCase<'a> = (
    Option<&'a str>,
    &'a str,
    Option<&'a str>,
    SignedDuration,
    bool,
);

#[test]
fn most_recent_unmet_time() {
    use MissedSchedules::{Few, Many, None as NoMiss};
    // (schedule, lastScheduleTime, deadline, with deadline, now, most recent, missed)
    let cases: &[MostRecentCase] = &[
        (
            "0 * * * *",
            None,
            None,
            true,
            "2024-01-01T10:59:00Z",
            None,
            NoMiss,
        ),
        (
            "0 * * * *",
            None,
            None,
            true,
            "2024-01-01T11:00:30Z",
            Some("2024-01-01T11:00:00Z"),
            NoMiss,
        ),
        (
            "0 * * * *",
            None,
            None,
            true,
            "2024-01-01T13:10:00Z",
            Some("2024-01-01T13:00:00Z"),
            Few,
        ),
        // 200 hours since creation: too many.
        (
            "0 * * * *",
            None,
            None,
            true,
            "2024-01-09T18:45:00Z",
            Some("2024-01-09T18:00:00Z"),
            Many,
        ),
        (
            "0 * * * *",
            Some("2024-01-01T12:00:00Z"),
            None,
            true,
            "2024-01-01T12:30:00Z",
            None,
            NoMiss,
        ),
        (
            "0 * * * *",
            Some("2024-01-01T12:00:00Z"),
            None,
            true,
            "2024-01-01T13:00:01Z",
            Some("2024-01-01T13:00:00Z"),
            NoMiss,
        ),
        // The deadline moves the window's start forward when asked to.
        (
            "0 * * * *",
            None,
            Some(600),
            true,
            "2024-01-01T13:20:00Z",
            None,
            NoMiss,
        ),
        (
            "0 * * * *",
            None,
            Some(600),
            false,
            "2024-01-01T13:20:00Z",
            Some("2024-01-01T13:00:00Z"),
            Few,
        ),
        (
            "0 * * * *",
            None,
            Some(3600),
            true,
            "2024-01-01T13:20:00Z",
            Some("2024-01-01T13:00:00Z"),
            NoMiss,
        ),
        // Irregular schedules still find the right most recent time.
        (
            "30 6-16/4 * * 1-5",
            None,
            None,
            true,
            "2024-01-03T15:00:00Z",
            Some("2024-01-03T14:30:00Z"),
            Few,
        ),
        (
            "*/1 * * * *",
            None,
            None,
            true,
            "2024-01-01T10:31:05Z",
            Some("2024-01-01T10:31:00Z"),
            NoMiss,
        ),
    ];
    for (spec, last, deadline, with, now, want, missed) in cases {
        let cj = cronjob(spec, *last, *deadline);
        let sched = parse_standard(spec, &TimeZone::UTC).unwrap();
        let got = most_recent_schedule_time(&cj, ts(now), &sched, *with).unwrap();
        assert_eq!(
            got.most_recent,
            want.map(ts),
            "{spec} {last:?} {deadline:?} at {now}"
        );
        assert_eq!(got.missed, *missed, "{spec} {last:?} {deadline:?} at {now}");
    }
    let never = cronjob("0 0 30 2 *", None, None);
    let sched = parse_standard("0 0 30 2 *", &TimeZone::UTC).unwrap();
    assert_eq!(
        most_recent_schedule_time(&never, ts("2024-05-01T00:00:00Z"), &sched, true).unwrap_err(),
        "time difference between two schedules is less than 1 second"
    );
}

#[test]
fn due_time_and_requeue_delay() {
    let sched = parse_standard("0 * * * *", &TimeZone::UTC).unwrap();
    let ms = SignedDuration::from_millis;
    // (lastScheduleTime, now, due, requeue after, too many)
    let cases: &[DueCase] = &[
        (
            None,
            "2024-01-01T10:45:00Z",
            None,
            ms(15 * 60_000 + 100),
            false,
        ),
        (
            None,
            "2024-01-01T13:10:00Z",
            Some("2024-01-01T13:00:00Z"),
            ms(50 * 60_000 + 100),
            false,
        ),
        (
            Some("2024-01-01T13:00:00Z"),
            "2024-01-01T13:00:10Z",
            None,
            ms(3_590_000 + 100),
            false,
        ),
        (
            None,
            "2024-01-09T18:45:00Z",
            Some("2024-01-09T18:00:00Z"),
            ms(15 * 60_000 + 100),
            true,
        ),
    ];
    for (last, now, due, delay, many) in cases {
        let cj = cronjob("0 * * * *", *last, None);
        let (t, too_many) = next_schedule_time(&cj, ts(now), &sched).unwrap();
        assert_eq!(t, due.map(ts), "{last:?} at {now}");
        assert_eq!(too_many, *many, "{last:?} at {now}");
        assert_eq!(
            next_schedule_time_duration(&cj, ts(now), &sched),
            *delay,
            "{last:?} at {now}"
        );
    }
}

#[test]
fn job_from_template_names_labels_and_owns() {
    let mut cj: CronJob = serde_json::from_value(json!({
        "metadata": {"name": "backup", "namespace": "ns", "uid": "u-1"},
        "spec": {"schedule": "*/1 * * * *", "timeZone": "America/New_York",
                 "jobTemplate": {
                     "metadata": {"labels": {"app": "b"}, "annotations": {"a": "1"}},
                     "spec": {"backoffLimit": 2, "template": {"spec": {"containers": []}}}}},
    }))
    .unwrap();
    let at = ts("2024-01-01T15:04:00Z");
    let job = job_from_template(&cj, at).unwrap();
    // 2024-01-01T00:00Z is 1704067200 s = 28401120 min; plus 15 h 4 min.
    assert_eq!(job.metadata.name.as_deref(), Some("backup-28402024"));
    assert_eq!(job.metadata.labels.unwrap()["app"], "b");
    let ann = job.metadata.annotations.unwrap();
    assert_eq!(ann["a"], "1");
    assert_eq!(
        ann[SCHEDULED_TIMESTAMP_ANNOTATION],
        "2024-01-01T10:04:00-05:00"
    );
    let owner = &job.metadata.owner_references.unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
        ("CronJob", "backup", "u-1")
    );
    assert_eq!(
        (owner.controller, owner.block_owner_deletion),
        (Some(true), Some(true))
    );
    assert_eq!(job.spec.unwrap().backoff_limit, Some(2));
    cj.spec.as_mut().unwrap().time_zone = None;
    let ann = job_from_template(&cj, at)
        .unwrap()
        .metadata
        .annotations
        .unwrap();
    assert_eq!(ann[SCHEDULED_TIMESTAMP_ANNOTATION], "2024-01-01T15:04:00Z");
}

fn finished_job(name: &str, start: Option<&str>, cond: &str) -> Arc<Job> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "status": {"startTime": start,
                       "conditions": [{"type": cond, "status": "True"}]},
        }))
        .unwrap(),
    )
}

#[test]
fn history_limit_deletes_oldest_first() {
    let jobs = [
        finished_job("c", Some("2024-01-01T03:00:00Z"), "Complete"),
        finished_job("a", Some("2024-01-01T01:00:00Z"), "Complete"),
        finished_job("z", None, "Complete"),
        finished_job("b", Some("2024-01-01T01:00:00Z"), "Complete"),
    ];
    let names = |limit| -> Vec<String> {
        jobs_over_limit(&jobs, limit)
            .iter()
            .map(|j| j.metadata.name.clone().unwrap())
            .collect()
    };
    assert_eq!(names(0), ["a", "b", "c", "z"]);
    assert_eq!(names(1), ["a", "b", "c"]);
    assert_eq!(names(3), ["a"]);
    assert!(names(4).is_empty() && names(10).is_empty());
    assert_eq!(finished_condition(&jobs[0]), Some("Complete"));
    assert!(is_job_succeeded(&jobs[0]));
    let failed = finished_job("f", None, "Failed");
    assert!(is_job_finished(&failed) && !is_job_succeeded(&failed));
    let running = finished_job("r", None, "Suspended");
    assert!(!is_job_finished(&running));
}
