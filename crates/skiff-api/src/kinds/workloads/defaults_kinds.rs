//! Defaulting of each workloads kind (`SetObjectDefaults_*` of core/v1,
//! apps/v1 and batch/v1), around the pod spec defaults of `defaults.rs`.

use serde_json::{Map, Value, json};

use super::defaults::{default_pod_only, default_pod_spec, default_toleration_seconds};
use super::json::{at_mut, child_mut, each_object_mut, object_entry, set_default};
use super::{normalize, template_path};

type Obj = Map<String, Value>;

/// Upstream's defaulting of an object of a workloads `kind`. Idempotent.
pub(super) fn default(kind: &str, obj: &mut Value) {
    if kind == "Pod" {
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            default_pod_spec(spec);
            default_pod_only(spec);
            default_toleration_seconds(spec);
        }
    } else if let Some(path) = template_path(kind) {
        let mut spec_path = path.to_vec();
        spec_path.push("spec");
        if let Some(spec) = at_mut(obj, &spec_path).and_then(Value::as_object_mut) {
            default_pod_spec(spec);
        }
    }
    normalize::round_up_resource_lists(kind, obj);
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    match kind {
        "ReplicationController" => default_rc(root),
        "ReplicaSet" => {
            if let Some(spec) = child_mut(root, "spec") {
                set_default(spec, "replicas", json!(1));
            }
        }
        "Deployment" => {
            if let Some(spec) = child_mut(root, "spec") {
                default_deployment(spec);
            }
        }
        "DaemonSet" => {
            if let Some(spec) = child_mut(root, "spec") {
                default_daemon_set(spec);
            }
        }
        "StatefulSet" => {
            if let Some(spec) = child_mut(root, "spec") {
                default_stateful_set(spec);
            }
        }
        "Job" => default_job(root),
        "CronJob" => {
            if let Some(spec) = child_mut(root, "spec") {
                set_default(spec, "concurrencyPolicy", json!("Allow"));
                set_default(spec, "suspend", json!(false));
                set_default(spec, "successfulJobsHistoryLimit", json!(3));
                set_default(spec, "failedJobsHistoryLimit", json!(1));
            }
        }
        _ => {}
    }
}

fn is_empty_map(v: Option<&Value>) -> bool {
    v.and_then(Value::as_object).is_none_or(Map::is_empty)
}

/// `SetDefaults_ReplicationController`: selector and labels from the
/// template's labels, one replica.
fn default_rc(root: &mut Obj) {
    let labels = root
        .get("spec")
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("metadata"))
        .and_then(|m| m.get("labels"))
        .filter(|l| l.is_object())
        .cloned();
    if let Some(labels) = labels {
        if let Some(spec) = child_mut(root, "spec")
            && is_empty_map(spec.get("selector"))
        {
            spec.insert("selector".into(), labels.clone());
        }
        if let Some(meta) = object_entry(root, "metadata")
            && is_empty_map(meta.get("labels"))
        {
            meta.insert("labels".into(), labels);
        }
    }
    if let Some(spec) = child_mut(root, "spec") {
        set_default(spec, "replicas", json!(1));
    }
}

fn default_deployment(spec: &mut Obj) {
    set_default(spec, "replicas", json!(1));
    if let Some(strategy) = object_entry(spec, "strategy") {
        set_default(strategy, "type", json!("RollingUpdate"));
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
            && let Some(ru) = object_entry(strategy, "rollingUpdate")
        {
            set_default(ru, "maxUnavailable", json!("25%"));
            set_default(ru, "maxSurge", json!("25%"));
        }
    }
    set_default(spec, "revisionHistoryLimit", json!(10));
    set_default(spec, "progressDeadlineSeconds", json!(600));
}

fn default_daemon_set(spec: &mut Obj) {
    if let Some(strategy) = object_entry(spec, "updateStrategy") {
        set_default(strategy, "type", json!("RollingUpdate"));
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
            && let Some(ru) = object_entry(strategy, "rollingUpdate")
        {
            set_default(ru, "maxUnavailable", json!(1));
            set_default(ru, "maxSurge", json!(0));
        }
    }
    set_default(spec, "revisionHistoryLimit", json!(10));
}

fn default_stateful_set(spec: &mut Obj) {
    set_default(spec, "podManagementPolicy", json!("OrderedReady"));
    if let Some(strategy) = object_entry(spec, "updateStrategy") {
        if strategy.get("type").is_none_or(|t| t.is_null() || t == "") {
            strategy.insert("type".into(), json!("RollingUpdate"));
            set_default(strategy, "rollingUpdate", json!({}));
        }
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
            && let Some(ru) = child_mut(strategy, "rollingUpdate")
        {
            set_default(ru, "partition", json!(0));
        }
    }
    if let Some(policy) = object_entry(spec, "persistentVolumeClaimRetentionPolicy") {
        set_default(policy, "whenDeleted", json!("Retain"));
        set_default(policy, "whenScaled", json!("Retain"));
    }
    set_default(spec, "replicas", json!(1));
    set_default(spec, "revisionHistoryLimit", json!(10));
    each_object_mut(spec, "volumeClaimTemplates", |pvc| {
        if let Some(s) = child_mut(pvc, "spec") {
            set_default(s, "volumeMode", json!("Filesystem"));
        }
        if let Some(status) = object_entry(pvc, "status") {
            set_default(status, "phase", json!("Pending"));
        }
    });
}

/// `SetDefaults_Job`.
fn default_job(root: &mut Obj) {
    let template_labels = root
        .get("spec")
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("metadata"))
        .and_then(|m| m.get("labels"))
        .filter(|l| l.is_object())
        .cloned();
    let Some(spec) = child_mut(root, "spec") else {
        return;
    };
    let unset = |s: &Obj, k: &str| s.get(k).is_none_or(Value::is_null);
    if unset(spec, "completions") && unset(spec, "parallelism") {
        spec.insert("completions".into(), json!(1));
        spec.insert("parallelism".into(), json!(1));
    }
    set_default(spec, "parallelism", json!(1));
    if unset(spec, "backoffLimit") {
        let limit = if unset(spec, "backoffLimitPerIndex") {
            6
        } else {
            i64::from(i32::MAX)
        };
        spec.insert("backoffLimit".into(), json!(limit));
    }
    set_default(spec, "completionMode", json!("NonIndexed"));
    set_default(spec, "suspend", json!(false));
    let has_failure_policy = !unset(spec, "podFailurePolicy");
    if let Some(policy) = child_mut(spec, "podFailurePolicy") {
        each_object_mut(policy, "rules", |rule| {
            each_object_mut(rule, "onPodConditions", |pattern| {
                if pattern.get("status").is_none_or(|s| s.is_null() || s == "") {
                    pattern.insert("status".into(), json!("True"));
                }
            });
        });
    }
    let replacement = if has_failure_policy {
        "Failed"
    } else {
        "TerminatingOrFailed"
    };
    set_default(spec, "podReplacementPolicy", json!(replacement));
    if let Some(labels) = template_labels
        && let Some(meta) = object_entry(root, "metadata")
        && is_empty_map(meta.get("labels"))
    {
        meta.insert("labels".into(), labels);
    }
}
