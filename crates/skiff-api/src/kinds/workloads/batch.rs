//! Validation of batch/v1 Jobs and CronJobs.

use serde_json::Value;

use super::apps::{selector_of, validate_label_selector};
use super::containers::nonnegative;
use super::json::{at, has, int_of, semantic_eq, str_of};
use super::podspec::validate_template;
use super::render;
use crate::cron::check_schedule;
use crate::field::{BadValue, Error, ErrorList, Path};
use crate::go_quote;

/// Upstream's cap on the parallelism of Indexed Jobs.
const MAX_PARALLELISM_INDEXED: i64 = 100_000;

/// Upstream's `validateGeneratedSelector`: unless `manualSelector` is set,
/// the pod template carries the generated labels and the selector picks
/// them.
fn validate_generated_selector(obj: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    let null = Value::Null;
    let spec = obj.get("spec").unwrap_or(&null);
    if spec.get("manualSelector").and_then(Value::as_bool) == Some(true) {
        return errs;
    }
    let Some(sel) = spec.get("selector").filter(|v| !v.is_null()) else {
        return errs;
    };
    let uid = at(obj, &["metadata", "uid"])
        .and_then(Value::as_str)
        .unwrap_or("");
    let name = at(obj, &["metadata", "name"])
        .and_then(Value::as_str)
        .unwrap_or("");
    if uid.is_empty() {
        errs.push(Error::required(&Path::new("metadata").child("uid"), ""));
    }
    let labels = at(spec, &["template", "metadata", "labels"]);
    let label_path = Path::new("spec")
        .child("template")
        .child("metadata")
        .child("labels");
    let mut expected = serde_json::Map::new();
    for (key, want) in [
        ("batch.kubernetes.io/controller-uid", uid),
        ("batch.kubernetes.io/job-name", name),
    ] {
        match labels.and_then(|l| l.get(key)).and_then(Value::as_str) {
            None => errs.push(Error::required(
                &label_path.key(key),
                &format!("must be '{want}'"),
            )),
            Some(v) if v != want => errs.push(Error::invalid(
                &label_path.key(key),
                BadValue::Raw(render::go_string_map(labels)),
                &format!("must be '{want}'"),
            )),
            Some(_) => {}
        }
        expected.insert(key.to_owned(), Value::String(want.to_owned()));
    }
    if let Some(selector) = selector_of(Some(sel))
        && !selector.matches(&expected)
    {
        errs.push(Error::invalid(
            &Path::new("spec").child("selector"),
            BadValue::Raw(render::label_selector(Some(sel))),
            "`selector` not auto-generated",
        ));
    }
    errs
}

/// `ValidateJob` (without metadata).
pub(super) fn validate_job(obj: &Value) -> ErrorList {
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    let path = Path::new("spec");
    let mut errs = validate_generated_selector(obj);
    errs.extend(validate_job_spec(&spec, &path));
    let sel = spec.get("selector").filter(|v| !v.is_null());
    match sel {
        None => errs.push(Error::required(&path.child("selector"), "")),
        Some(s) => errs.extend(validate_label_selector(s, &path.child("selector"))),
    }
    if let Some(selector) = selector_of(sel) {
        let labels = at(&spec, &["template", "metadata", "labels"]);
        let map = labels
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if !selector.matches(&map) {
            errs.push(Error::invalid(
                &path.child("template").child("metadata").child("labels"),
                BadValue::Raw(render::go_string_map(labels)),
                "`selector` does not match template `labels`",
            ));
        }
    }
    let indexed = str_of(&spec, "completionMode") == "Indexed";
    if let Some(completions) = int_of(&spec, "completions").filter(|c| indexed && *c > 0) {
        let name = at(obj, &["metadata", "name"])
            .and_then(Value::as_str)
            .unwrap_or("");
        let hostname = format!("{name}-{}", completions - 1);
        if !crate::validation::is_dns1123_label(&hostname).is_empty() {
            errs.push(Error::invalid(
                &Path::new("metadata").child("name"),
                name,
                &format!("will not able to create pod with invalid DNS label: {hostname}"),
            ));
        }
    }
    errs
}

/// Upstream's `validateJobSpec`: everything but the selector.
fn validate_job_spec(spec: &Value, path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    for key in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
        "backoffLimitPerIndex",
        "maxFailedIndexes",
    ] {
        nonnegative(spec, key, path, &mut errs);
    }
    let mode = str_of(spec, "completionMode");
    if has(spec, "completionMode") && mode != "NonIndexed" && mode != "Indexed" {
        errs.push(Error::not_supported(
            &path.child("completionMode"),
            mode,
            &["NonIndexed", "Indexed"],
        ));
    }
    if mode == "Indexed" {
        if !has(spec, "completions") {
            errs.push(Error::required(
                &path.child("completions"),
                "when completion mode is Indexed",
            ));
        }
        if let Some(p) = int_of(spec, "parallelism")
            && p > MAX_PARALLELISM_INDEXED
        {
            errs.push(Error::invalid(
                &path.child("parallelism"),
                p,
                "must be less than or equal to 100000 when completion mode is Indexed",
            ));
        }
    } else if has(spec, "backoffLimitPerIndex") {
        errs.push(Error::forbidden(
            &path.child("backoffLimitPerIndex"),
            "requires indexed completion mode",
        ));
    }
    let replacement = str_of(spec, "podReplacementPolicy");
    if has(spec, "podReplacementPolicy")
        && replacement != "TerminatingOrFailed"
        && replacement != "Failed"
    {
        errs.push(Error::not_supported(
            &path.child("podReplacementPolicy"),
            replacement,
            &["TerminatingOrFailed", "Failed"],
        ));
    }
    let template = spec.get("template");
    let tp = path.child("template");
    errs.extend(validate_template(template, &tp));
    let policy = template
        .and_then(|t| at(t, &["spec", "restartPolicy"]))
        .and_then(Value::as_str)
        .unwrap_or("");
    if policy != "OnFailure" && policy != "Never" {
        errs.push(Error::not_supported(
            &tp.child("spec").child("restartPolicy"),
            policy,
            &["OnFailure", "Never"],
        ));
    } else if policy == "OnFailure" && has(spec, "podFailurePolicy") {
        errs.push(Error::invalid(
            &tp.child("spec").child("restartPolicy"),
            policy,
            "only \"Never\" is supported when podFailurePolicy is specified",
        ));
    }
    errs
}

fn immutable(new: &Value, old: &Value, key: &str, path: &Path, errs: &mut ErrorList) {
    let (n, o) = (new.get(key), old.get(key));
    if !semantic_eq(n, o) {
        let shown = match n {
            Some(Value::String(s)) => go_quote(s),
            Some(v) => v.to_string(),
            None => "null".to_owned(),
        };
        errs.push(Error::invalid(
            &path.child(key),
            BadValue::Raw(shown),
            "field is immutable",
        ));
    }
}

/// `ValidateJobUpdate` (without metadata).
pub(super) fn validate_job_update(new: &Value, old: &Value) -> ErrorList {
    let mut errs = validate_job(new);
    let ns = new.get("spec").cloned().unwrap_or(Value::Null);
    let os = old.get("spec").cloned().unwrap_or(Value::Null);
    let path = Path::new("spec");
    // Elastic Indexed Jobs may change completions together with parallelism.
    let indexed = str_of(&ns, "completionMode") == "Indexed";
    if !indexed {
        immutable(&ns, &os, "completions", &path, &mut errs);
    } else if !semantic_eq(ns.get("completions"), os.get("completions"))
        && let Some(c) = int_of(&ns, "completions")
        && Some(c) != int_of(&ns, "parallelism")
    {
        errs.push(Error::invalid(
            &path.child("completions"),
            c,
            "can only be modified in tandem with spec.parallelism",
        ));
    }
    if !semantic_eq(ns.get("selector"), os.get("selector")) {
        errs.push(Error::invalid(
            &path.child("selector"),
            BadValue::Raw(render::label_selector(ns.get("selector"))),
            "field is immutable",
        ));
    }
    errs.extend(validate_template_update(new, old, &ns, &os, &path));
    for key in [
        "completionMode",
        "podFailurePolicy",
        "backoffLimitPerIndex",
        "managedBy",
        "successPolicy",
    ] {
        immutable(&ns, &os, key, &path, &mut errs);
    }
    errs
}

/// The template is immutable, except that a suspended Job that never
/// started may change its scheduling directives.
fn validate_template_update(
    new: &Value,
    old: &Value,
    ns: &Value,
    os: &Value,
    path: &Path,
) -> ErrorList {
    let mut errs = ErrorList::new();
    let (nt, ot) = (ns.get("template"), os.get("template"));
    let suspended = at(new, &["spec", "suspend"]).and_then(Value::as_bool) == Some(true);
    let not_started = at(old, &["status", "startTime"]).is_none_or(Value::is_null);
    let mut old_template = ot.cloned().unwrap_or(Value::Null);
    if suspended && not_started {
        let new_template = nt.cloned().unwrap_or(Value::Null);
        for (outer, key) in [
            ("spec", "nodeSelector"),
            ("spec", "tolerations"),
            ("spec", "schedulingGates"),
            ("metadata", "annotations"),
            ("metadata", "labels"),
        ] {
            let value = at(&new_template, &[outer, key]).cloned();
            if let Some(section) = old_template.get_mut(outer).and_then(Value::as_object_mut) {
                match value {
                    Some(v) => {
                        section.insert(key.to_owned(), v);
                    }
                    None => {
                        section.remove(key);
                    }
                }
            }
        }
        let node_affinity = at(&new_template, &["spec", "affinity", "nodeAffinity"]).cloned();
        if let Some(affinity) = old_template
            .get_mut("spec")
            .and_then(|s| s.get_mut("affinity"))
            .and_then(Value::as_object_mut)
        {
            match node_affinity {
                Some(v) => {
                    affinity.insert("nodeAffinity".into(), v);
                }
                None => {
                    affinity.remove("nodeAffinity");
                }
            }
        } else if let Some(v) = node_affinity
            && let Some(spec) = old_template.get_mut("spec").and_then(Value::as_object_mut)
        {
            spec.insert("affinity".into(), serde_json::json!({"nodeAffinity": v}));
        }
    }
    if !semantic_eq(nt, Some(&old_template)) {
        errs.push(Error::invalid(
            &path.child("template"),
            BadValue::Raw(nt.map_or_else(|| "null".to_owned(), Value::to_string)),
            "field is immutable",
        ));
    }
    errs
}

/// `ValidateCronJobCreate` / `ValidateCronJobUpdate` (without metadata).
pub(super) fn validate_cron_job(obj: &Value, old: Option<&Value>) -> ErrorList {
    let mut errs = ErrorList::new();
    let path = Path::new("spec");
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    let old_spec = old.and_then(|o| o.get("spec"));
    if old.is_none() {
        let name = at(obj, &["metadata", "name"])
            .and_then(Value::as_str)
            .unwrap_or("");
        if name.len() > 52 {
            errs.push(Error::invalid(
                &Path::new("metadata").child("name"),
                name,
                "must be no more than 52 characters",
            ));
        }
    }
    let schedule = str_of(&spec, "schedule");
    let sp = path.child("schedule");
    if schedule.is_empty() {
        errs.push(Error::required(&sp, ""));
    } else {
        if let Err(e) = check_schedule(schedule) {
            errs.push(Error::invalid(&sp, schedule, &e));
        }
        let allow_tz = old_spec.is_some_and(|o| str_of(o, "schedule").contains("TZ"));
        if allow_tz && schedule.contains("TZ") && has(&spec, "timeZone") {
            errs.push(Error::invalid(
                &sp,
                schedule,
                "cannot use both timeZone field and TZ or CRON_TZ in schedule",
            ));
        } else if !allow_tz && schedule.contains("TZ") {
            errs.push(Error::invalid(
                &sp,
                schedule,
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            ));
        }
    }
    nonnegative(&spec, "startingDeadlineSeconds", &path, &mut errs);
    if old_spec.is_none_or(|o| o.get("timeZone") != spec.get("timeZone"))
        && let Some(tz) = spec.get("timeZone").and_then(Value::as_str)
        && let Some(msg) = time_zone_error(tz)
    {
        errs.push(Error::invalid(&path.child("timeZone"), tz, &msg));
    }
    match str_of(&spec, "concurrencyPolicy") {
        "Allow" | "Forbid" | "Replace" => {}
        "" => errs.push(Error::required(&path.child("concurrencyPolicy"), "")),
        other => errs.push(Error::not_supported(
            &path.child("concurrencyPolicy"),
            other,
            &["Allow", "Forbid", "Replace"],
        )),
    }
    let jt = spec.get("jobTemplate").cloned().unwrap_or(Value::Null);
    let jp = path.child("jobTemplate").child("spec");
    let job_spec = jt.get("spec").cloned().unwrap_or(Value::Null);
    errs.extend(validate_job_spec(&job_spec, &jp));
    if let Some(sel) = job_spec.get("selector").filter(|v| !v.is_null()) {
        errs.push(Error::invalid(
            &jp.child("selector"),
            BadValue::Raw(render::label_selector(Some(sel))),
            "`selector` will be auto-generated",
        ));
    }
    if job_spec.get("manualSelector").and_then(Value::as_bool) == Some(true) {
        errs.push(Error::not_supported(
            &jp.child("manualSelector"),
            BadValue::Raw("true".into()),
            &["nil", "false"],
        ));
    }
    nonnegative(&spec, "successfulJobsHistoryLimit", &path, &mut errs);
    nonnegative(&spec, "failedJobsHistoryLimit", &path, &mut errs);
    errs
}

/// The syntax checks of upstream's `validateTimeZone` (the zone database
/// itself is not consulted here).
fn time_zone_error(tz: &str) -> Option<String> {
    if tz.is_empty() {
        return Some("timeZone must be nil or non-empty string".into());
    }
    let bad_part = tz.split('/').any(|part| {
        part == "."
            || part == ".."
            || part.starts_with('-')
            || part.is_empty()
            || part.len() > 14
            || !part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'+'))
    });
    if bad_part {
        return Some(format!("unknown time zone {tz}"));
    }
    if tz.eq_ignore_ascii_case("local") {
        return Some(
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"
                .into(),
        );
    }
    None
}

/// Status updates of Jobs: the pod counts are never negative.
pub(super) fn validate_job_status(obj: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    if let Some(status) = obj.get("status") {
        let path = Path::new("status");
        for key in ["active", "succeeded", "failed", "ready", "terminating"] {
            nonnegative(status, key, &path, &mut errs);
        }
    }
    errs
}
