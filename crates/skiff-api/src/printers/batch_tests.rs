//! Jobs and cron jobs: columns, default and wide rows.

use serde_json::{Value, json};

use super::testutil::{ago, default_cells, header, res, wide_cells};
use crate::cells;

fn job(spec: Value, status: Value) -> Value {
    let mut j = json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "pi", "namespace": "default", "creationTimestamp": ago(600)},
        "spec": {"parallelism": 1, "backoffLimit": 6,
            "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "8d1e"}},
            "template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "pi", "image": "perl:5.34"}]}}},
        "status": status});
    if let (Some(s), Value::Object(extra)) = (j["spec"].as_object_mut(), spec) {
        s.extend(extra);
    }
    j
}

#[test]
fn job_rows() {
    let r = res("batch", "Job");
    assert_eq!(
        header(r, true),
        [
            "NAME",
            "STATUS",
            "COMPLETIONS",
            "DURATION",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]
    );
    let cond = |t: &str, s: &str| json!({"type": t, "status": s});
    let cases: Vec<(&str, Value, [&str; 3])> = vec![
        (
            "complete",
            job(
                json!({"completions": 1}),
                json!({"succeeded": 1, "startTime": ago(600), "completionTime": ago(555),
                "conditions": [cond("SuccessCriteriaMet", "True"), cond("Complete", "True")]}),
            ),
            ["Complete", "1/1", "45s"],
        ),
        (
            "running",
            job(
                json!({"completions": 5, "parallelism": 2}),
                json!({"active": 2, "succeeded": 2, "startTime": ago(200)}),
            ),
            ["Running", "2/5", "3m20s"],
        ),
        (
            "work queue with parallelism",
            job(
                json!({"parallelism": 3}),
                json!({"active": 3, "startTime": ago(30)}),
            ),
            ["Running", "0/1 of 3", "30s"],
        ),
        (
            "failed",
            job(
                json!({"completions": 1}),
                json!({"failed": 7, "startTime": ago(600), "completionTime": ago(0),
                "conditions": [cond("FailureTarget", "True"), cond("Failed", "True")]}),
            ),
            ["Failed", "0/1", "10m"],
        ),
        (
            "failure target",
            job(
                json!({"completions": 1}),
                json!({"startTime": ago(60),
                "conditions": [cond("FailureTarget", "True")]}),
            ),
            ["FailureTarget", "0/1", "60s"],
        ),
        (
            "suspended, never started",
            job(
                json!({"completions": 2, "suspend": true}),
                json!({"conditions": [cond("Suspended", "True")]}),
            ),
            ["Suspended", "0/2", ""],
        ),
        (
            "condition not true",
            job(
                json!({"completions": 2}),
                json!({"conditions": [cond("Complete", "False")]}),
            ),
            ["Running", "0/2", ""],
        ),
    ];
    for (what, j, [status, completions, duration]) in cases {
        assert_eq!(
            default_cells(r, &j),
            cells!["pi", status, completions, duration, "10m"],
            "{what}"
        );
    }
    let mut deleting = job(json!({"completions": 1}), json!({"startTime": ago(60)}));
    deleting["metadata"]["deletionTimestamp"] = json!(ago(1));
    assert_eq!(
        wide_cells(r, &deleting),
        cells![
            "pi",
            "Terminating",
            "0/1",
            "60s",
            "10m",
            "pi",
            "perl:5.34",
            "batch.kubernetes.io/controller-uid=8d1e"
        ]
    );
}

#[test]
fn cron_job_rows() {
    let r = res("batch", "CronJob");
    assert_eq!(
        header(r, false),
        [
            "NAME",
            "SCHEDULE",
            "TIMEZONE",
            "SUSPEND",
            "ACTIVE",
            "LAST SCHEDULE",
            "AGE"
        ]
    );
    let cj = json!({"apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "backup", "creationTimestamp": ago(8 * 86400)},
        "spec": {"schedule": "*/5 * * * *", "timeZone": "Etc/UTC", "suspend": false,
            "concurrencyPolicy": "Allow",
            "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure",
                "containers": [{"name": "backup", "image": "busybox:1.36"}]}}}}},
        "status": {"active": [{"kind": "Job", "name": "backup-29100"}],
            "lastScheduleTime": ago(240)}});
    assert_eq!(
        wide_cells(r, &cj),
        cells![
            "backup",
            "*/5 * * * *",
            "Etc/UTC",
            "False",
            1,
            "4m",
            "8d",
            "backup",
            "busybox:1.36",
            "<none>"
        ]
    );
    let never = json!({"metadata": {"name": "n", "creationTimestamp": ago(10)},
        "spec": {"schedule": "@daily"}});
    assert_eq!(
        default_cells(r, &never),
        cells!["n", "@daily", "<none>", "<unset>", 0, "<none>", "10s"]
    );
}
