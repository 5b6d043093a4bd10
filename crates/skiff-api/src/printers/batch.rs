//! Jobs and cron jobs.

use serde_json::Value;

use super::duration::human_duration;
use super::fields::{
    age, array_at, bool_ptr, container_cells, format_label_selector, int_at, is_deleting, name,
    opt_bool, opt_int, opt_str, since, str_at, time_at,
};
use super::{AGE, CONTAINERS, Ctx, IMAGES, TableColumnDefinition, col, name_col};

/// Job columns.
pub(super) static JOB_COLUMNS: &[TableColumnDefinition] = &[
    name_col(0),
    col(
        "Status",
        "string",
        0,
        "Running, Complete, Failed, Suspended, FailureTarget or Terminating.",
    ),
    col(
        "Completions",
        "string",
        0,
        "Succeeded pods out of the completions wanted.",
    ),
    col(
        "Duration",
        "string",
        0,
        "How long the job ran (or has been running).",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    col("Selector", "string", 1, "Label selector of the job's pods."),
];

/// True when the first condition of `type_` has status `True`.
fn has_condition(job: &Value, type_: &str) -> bool {
    array_at(job, &["status", "conditions"])
        .iter()
        .find(|c| str_at(c, &["type"]) == type_)
        .is_some_and(|c| str_at(c, &["status"]) == "True")
}

fn job_status(job: &Value) -> &'static str {
    if has_condition(job, "Complete") {
        "Complete"
    } else if has_condition(job, "Failed") {
        "Failed"
    } else if is_deleting(job) {
        "Terminating"
    } else if has_condition(job, "Suspended") {
        "Suspended"
    } else if has_condition(job, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    }
}

/// `succeeded/completions`; for work queues (no completions) `succeeded/1`, or
/// `succeeded/1 of parallelism` when more than one pod runs at once.
fn completions(job: &Value) -> String {
    let succeeded = int_at(job, &["status", "succeeded"]);
    if let Some(c) = opt_int(job, &["spec", "completions"]) {
        return format!("{succeeded}/{c}");
    }
    let parallelism = int_at(job, &["spec", "parallelism"]);
    if parallelism > 1 {
        format!("{succeeded}/1 of {parallelism}")
    } else {
        format!("{succeeded}/1")
    }
}

/// The cells of one job.
pub(super) fn job_row(job: &Value, ctx: &Ctx) -> Vec<Value> {
    let start = time_at(job, &["status", "startTime"]);
    let end = time_at(job, &["status", "completionTime"]);
    let duration = match (start, end) {
        (None, _) => String::new(),
        (Some(s), None) => since(Some(s), ctx),
        (Some(s), Some(e)) => human_duration(e - s),
    };
    let (names, images) = container_cells(job, &["spec", "template", "spec", "containers"]);
    vec![
        name(job).into(),
        job_status(job).into(),
        completions(job).into(),
        duration.into(),
        age(job, ctx),
        names,
        images,
        format_label_selector(job, &["spec", "selector"]).into(),
    ]
}

/// CronJob columns.
pub(super) static CRONJOB_COLUMNS: &[TableColumnDefinition] = &[
    name_col(0),
    col("Schedule", "string", 0, "The cron schedule."),
    col(
        "Timezone",
        "string",
        0,
        "Time zone of the schedule; the controller's when unset.",
    ),
    col("Suspend", "boolean", 0, "Whether new runs are suspended."),
    col("Active", "integer", 0, "Number of jobs running now."),
    col(
        "Last Schedule",
        "string",
        0,
        "Time since a job was last scheduled.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    col("Selector", "string", 1, "Label selector of the jobs' pods."),
];

/// The cells of one cron job.
pub(super) fn cronjob_row(cj: &Value, ctx: &Ctx) -> Vec<Value> {
    let last_schedule = match time_at(cj, &["status", "lastScheduleTime"]) {
        Some(t) => since(Some(t), ctx),
        // A set but zero time prints as unknown; an absent one as none.
        None if opt_str(cj, &["status", "lastScheduleTime"]).is_some() => "<unknown>".to_owned(),
        None => "<none>".to_owned(),
    };
    let template = [
        "spec",
        "jobTemplate",
        "spec",
        "template",
        "spec",
        "containers",
    ];
    let (names, images) = container_cells(cj, &template);
    vec![
        name(cj).into(),
        str_at(cj, &["spec", "schedule"]).into(),
        opt_str(cj, &["spec", "timeZone"])
            .unwrap_or("<none>")
            .into(),
        bool_ptr(opt_bool(cj, &["spec", "suspend"])).into(),
        array_at(cj, &["status", "active"]).len().into(),
        last_schedule.into(),
        age(cj, ctx),
        names,
        images,
        format_label_selector(cj, &["spec", "jobTemplate", "spec", "selector"]).into(),
    ]
}
