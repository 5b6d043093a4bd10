//! The CronJob controller's pure parts (upstream's `cronjob/utils.go`):
//! which schedule time is due, when to sync next, the Job made from the
//! template, finished-Job predicates and history-limit selection.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::schedule::{Schedule, load_location, parse_standard};
use crate::controllerref::{controller_ref, object_reference};

/// Padding added to each requeue so the sync lands after the schedule time
/// even with a little clock skew.
pub const NEXT_SCHEDULE_DELTA: SignedDuration = SignedDuration::from_millis(100);

/// More missed times than this since the last one is "too many".
const MANY_MISSED: i64 = 100;

/// The annotation with the scheduled time of a Job (RFC 3339, in the
/// CronJob's zone).
pub const SCHEDULED_TIMESTAMP_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// How many schedule times passed unmet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissedSchedules {
    /// None.
    None,
    /// Some (at most 100).
    Few,
    /// More than 100.
    Many,
}

/// What [`most_recent_schedule_time`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MostRecent {
    /// The last schedule time, or the creation time (or the deadline's
    /// start when later and asked for).
    pub earliest: Timestamp,
    /// The latest schedule time not after now, after `earliest`.
    pub most_recent: Option<Timestamp>,
    /// How many schedule times passed.
    pub missed: MissedSchedules,
}

/// The CronJob's spec (empty when absent).
pub fn spec(cj: &CronJob) -> CronJobSpec {
    cj.spec.clone().unwrap_or_default()
}

/// Whether the schedule names a zone itself (`TZ=`/`CRON_TZ=`), which
/// upstream allows but does not support officially.
pub fn schedule_has_tz(cj: &CronJob) -> bool {
    spec(cj).schedule.contains("TZ")
}

/// The schedule with spec.timeZone applied (upstream's `formatSchedule`),
/// parsed; zone-less schedules are in `local`.
pub fn parse_schedule(cj: &CronJob, local: &TimeZone) -> Result<Schedule, String> {
    let s = spec(cj);
    let text = match &s.time_zone {
        Some(tz) if !schedule_has_tz(cj) && load_location(tz).is_ok() => {
            format!("TZ={tz} {}", s.schedule)
        }
        _ => s.schedule.clone(),
    };
    parse_standard(&text, local)
}

fn creation(cj: &CronJob) -> Timestamp {
    cj.metadata
        .creation_timestamp
        .as_ref()
        .map_or(Timestamp::UNIX_EPOCH, |t| t.0)
}

/// The last schedule time or the creation time; with
/// `include_starting_deadline`, no earlier than now minus the deadline.
/// Then the most recent schedule time after it and not after now, and how
/// many were missed. The error is for schedules that never fire twice a
/// second apart (e.g. February 31st).
pub fn most_recent_schedule_time(
    cj: &CronJob,
    now: Timestamp,
    sched: &Schedule,
    include_starting_deadline: bool,
) -> Result<MostRecent, String> {
    let mut earliest = cj
        .status
        .as_ref()
        .and_then(|s| s.last_schedule_time.as_ref())
        .map_or_else(|| creation(cj), |t| t.0);
    if include_starting_deadline && let Some(secs) = spec(cj).starting_deadline_seconds {
        let deadline = now.checked_sub(SignedDuration::from_secs(secs));
        if let Ok(deadline) = deadline
            && deadline > earliest
        {
            earliest = deadline;
        }
    }
    let none = |missed| MostRecent {
        earliest,
        most_recent: None,
        missed,
    };
    let too_close = || "time difference between two schedules is less than 1 second".to_owned();
    let t1 = sched.next(earliest).ok_or_else(too_close)?;
    if now < t1 {
        return Ok(none(MissedSchedules::None));
    }
    let t2 = sched.next(t1).ok_or_else(too_close)?;
    if now < t2 {
        return Ok(MostRecent {
            earliest,
            most_recent: Some(t1),
            missed: MissedSchedules::None,
        });
    }
    let between = t2.duration_since(t1).round(jiff::Unit::Second).ok();
    let between = between.map_or(0, |d| d.as_secs());
    if between < 1 {
        return Err(too_close());
    }
    // Estimate how many intervals fit since t1, jump to just before the
    // last of them and walk forward with the schedule itself (irregular
    // schedules make the estimate inexact).
    let elapsed = now.duration_since(t1).as_secs();
    let missed = elapsed / between + 1;
    let potential_earliest = t1.checked_add(SignedDuration::from_secs((missed - 2) * between));
    let mut most_recent = None;
    let mut t = potential_earliest.ok().and_then(|p| sched.next(p));
    while let Some(cur) = t.filter(|cur| *cur <= now) {
        most_recent = Some(cur);
        t = sched.next(cur);
    }
    let missed = if missed > MANY_MISSED {
        MissedSchedules::Many
    } else if missed > 0 {
        MissedSchedules::Few
    } else {
        MissedSchedules::None
    };
    Ok(MostRecent {
        earliest,
        most_recent,
        missed,
    })
}

/// How long until the next schedule time (plus [`NEXT_SCHEDULE_DELTA`]);
/// negative when it has passed.
pub fn next_schedule_time_duration(
    cj: &CronJob,
    now: Timestamp,
    sched: &Schedule,
) -> SignedDuration {
    let from = match most_recent_schedule_time(cj, now, sched, false) {
        Err(_) => now,
        Ok(MostRecent {
            most_recent: Some(t),
            ..
        }) => t,
        Ok(MostRecent {
            earliest,
            missed: MissedSchedules::None,
            ..
        }) => earliest,
        Ok(_) => now,
    };
    match sched.next(from) {
        Some(next) => next.duration_since(now).saturating_add(NEXT_SCHEDULE_DELTA),
        // Never again: Go's zero time, long past.
        None => SignedDuration::MIN,
    }
}

/// The schedule time due now, honouring startingDeadlineSeconds, and
/// whether more than 100 were missed.
pub fn next_schedule_time(
    cj: &CronJob,
    now: Timestamp,
    sched: &Schedule,
) -> Result<(Option<Timestamp>, bool), String> {
    let r = most_recent_schedule_time(cj, now, sched, true)?;
    match r.most_recent {
        Some(t) if t <= now => Ok((Some(t), r.missed == MissedSchedules::Many)),
        _ => Ok((None, false)),
    }
}

/// `<cronjob>-<scheduled time in minutes since the epoch>`.
pub fn job_name(cj: &CronJob, scheduled: Timestamp) -> String {
    format!(
        "{}-{}",
        cj.metadata.name.as_deref().unwrap_or(""),
        scheduled.as_second() / 60
    )
}

/// Go's RFC 3339 layout: `Z` for a zero offset, else `±hh:mm`.
pub fn format_rfc3339(t: Timestamp, tz: &TimeZone) -> String {
    let z = t.to_zoned(tz.clone());
    if z.offset().seconds() == 0 {
        z.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

/// The Job for the run at `scheduled` (upstream's `getJobFromTemplate2`):
/// the template's labels, annotations and spec, the scheduled-timestamp
/// annotation in the CronJob's zone, and the controller reference.
pub fn job_from_template(cj: &CronJob, scheduled: Timestamp) -> Result<Job, String> {
    let s = spec(cj);
    let template = s.job_template;
    let meta = template.metadata.unwrap_or_default();
    let tz = load_location(s.time_zone.as_deref().unwrap_or(""))?;
    let mut annotations: BTreeMap<String, String> = meta.annotations.unwrap_or_default();
    annotations.insert(
        SCHEDULED_TIMESTAMP_ANNOTATION.to_owned(),
        format_rfc3339(scheduled, &tz),
    );
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(job_name(cj, scheduled)),
            namespace: cj.metadata.namespace.clone(),
            labels: Some(meta.labels.unwrap_or_default()),
            annotations: Some(annotations),
            owner_references: Some(vec![controller_ref(cj)]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    })
}

/// A reference to a Job for status.active.
pub fn job_ref(job: &Job) -> ObjectReference {
    object_reference(job)
}

/// `Complete` or `Failed` when that condition is True.
pub fn finished_condition(job: &Job) -> Option<&'static str> {
    let conds = job.status.as_ref()?.conditions.as_ref()?;
    conds
        .iter()
        .find_map(|c| match (c.type_.as_str(), c.status.as_str()) {
            ("Complete", "True") => Some("Complete"),
            ("Failed", "True") => Some("Failed"),
            _ => None,
        })
}

/// Complete=True or Failed=True.
pub fn is_job_finished(job: &Job) -> bool {
    finished_condition(job).is_some()
}

/// Complete=True.
pub fn is_job_succeeded(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "Complete" && c.status == "True")
        })
}

/// Whether status.active holds this UID.
pub fn in_active_list(cj: &CronJob, uid: Option<&str>) -> bool {
    active(cj).iter().any(|r| r.uid.as_deref() == uid)
}

/// status.active (empty when absent).
pub fn active(cj: &CronJob) -> Vec<ObjectReference> {
    cj.status
        .as_ref()
        .and_then(|s| s.active.clone())
        .unwrap_or_default()
}

/// Drops the UID from status.active.
pub fn delete_from_active_list(cj: &mut CronJob, uid: Option<&str>) {
    if let Some(list) = cj.status.as_mut().and_then(|s| s.active.as_mut()) {
        list.retain(|r| r.uid.as_deref() != uid);
    }
}

/// The oldest of `finished` beyond `limit` to delete: by start time (Jobs
/// without one last), then by name.
pub fn jobs_over_limit(finished: &[Arc<Job>], limit: i32) -> Vec<Arc<Job>> {
    let keep = usize::try_from(limit).unwrap_or(0);
    if finished.len() <= keep {
        return Vec::new();
    }
    let mut sorted = finished.to_vec();
    sorted.sort_by(|a, b| {
        let key = |j: &Job| {
            let start = j
                .status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map(|t| t.0);
            (start.is_none(), start, j.metadata.name.clone())
        };
        key(a).cmp(&key(b))
    });
    sorted.truncate(finished.len() - keep);
    sorted
}
