//! The registry strategies' `PrepareForCreate` and `PrepareForUpdate`.

use serde_json::{Value, json};

use super::json::{at, at_mut, list_of, object_entry, semantic_eq};
use super::pod::qos_class;
use super::pod_spec_path;

/// The annotation apps/v1 carries a DaemonSet's template generation in.
const TEMPLATE_GENERATION: &str = "deprecated.daemonset.template.generation";

/// Pod-level `spec.resources` is behind the PodLevelResources feature gate,
/// alpha (off) in v1.33: upstream drops it unless the old object used it.
fn drop_pod_level_resources(kind: &str, new: &mut Value, old: Option<&Value>) {
    let Some(path) = pod_spec_path(kind) else {
        return;
    };
    let in_use = old
        .and_then(|o| at(o, &path))
        .is_some_and(|spec| spec.get("resources").is_some_and(|r| !r.is_null()));
    if in_use {
        return;
    }
    if let Some(spec) = at_mut(new, &path).and_then(Value::as_object_mut) {
        spec.remove("resources");
    }
}

pub(super) fn prepare_create(kind: &str, obj: &mut Value) {
    drop_pod_level_resources(kind, obj, None);
    let status = match kind {
        "Pod" => pod_status(obj),
        "ReplicationController" | "ReplicaSet" => json!({"replicas": 0}),
        "StatefulSet" => json!({"replicas": 0, "availableReplicas": 0}),
        "DaemonSet" => json!({
            "currentNumberScheduled": 0,
            "numberMisscheduled": 0,
            "desiredNumberScheduled": 0,
            "numberReady": 0,
        }),
        "Deployment" | "Job" | "CronJob" => json!({}),
        _ => return,
    };
    if let Some(root) = obj.as_object_mut() {
        root.insert("status".into(), status);
    }
    match kind {
        "DaemonSet" => set_template_generation(obj, 1),
        "Job" => generate_job_selector(obj),
        _ => {}
    }
}

/// A new pod's status: `Pending`, its QoS class, and the `PodScheduled`
/// condition when scheduling gates hold it back.
fn pod_status(pod: &Value) -> Value {
    let mut status = json!({"phase": "Pending", "qosClass": qos_class(pod)});
    let gated = pod
        .get("spec")
        .is_some_and(|s| !list_of(s, "schedulingGates").is_empty());
    if gated {
        status["conditions"] = json!([{
            "type": "PodScheduled",
            "status": "False",
            "reason": "SchedulingGated",
            "message": "Scheduling is blocked due to non-empty scheduling gates",
            "lastProbeTime": null,
            "lastTransitionTime": null,
        }]);
    }
    status
}

fn set_template_generation(obj: &mut Value, generation: i64) {
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    if let Some(meta) = object_entry(root, "metadata")
        && let Some(annotations) = object_entry(meta, "annotations")
    {
        annotations.insert(TEMPLATE_GENERATION.into(), json!(generation.to_string()));
    }
}

fn template_generation(obj: &Value) -> i64 {
    at(obj, &["metadata", "annotations", TEMPLATE_GENERATION])
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The Job strategy's generated selector: unless `manualSelector` is true,
/// the pods carry the job's name and UID as labels and the selector picks
/// the UID label. Needs `metadata.uid`, so it runs after the server set it.
fn generate_job_selector(obj: &mut Value) {
    let manual = at(obj, &["spec", "manualSelector"]).and_then(Value::as_bool) == Some(true);
    let uid = at(obj, &["metadata", "uid"])
        .and_then(Value::as_str)
        .unwrap_or("");
    if manual || uid.is_empty() {
        return;
    }
    let uid = uid.to_owned();
    let name = at(obj, &["metadata", "name"])
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(template) = object_entry(spec, "template")
        && let Some(meta) = object_entry(template, "metadata")
        && let Some(labels) = object_entry(meta, "labels")
    {
        for (key, value) in [
            ("batch.kubernetes.io/controller-uid", &uid),
            ("batch.kubernetes.io/job-name", &name),
            ("controller-uid", &uid),
            ("job-name", &name),
        ] {
            labels.entry(key).or_insert_with(|| json!(value));
        }
    }
    if let Some(selector) = object_entry(spec, "selector")
        && let Some(match_labels) = object_entry(selector, "matchLabels")
    {
        match_labels
            .entry("batch.kubernetes.io/controller-uid")
            .or_insert_with(|| json!(uid));
    }
}

pub(super) fn prepare_update(kind: &str, new: &mut Value, old: &Value) {
    drop_pod_level_resources(kind, new, Some(old));
    match kind {
        "DaemonSet" => {
            let old_generation = template_generation(old);
            let changed = !semantic_eq(
                at(new, &["spec", "template"]),
                at(old, &["spec", "template"]),
            );
            if changed || old_generation > 0 {
                set_template_generation(new, old_generation + i64::from(changed));
            }
        }
        "Deployment" => {
            // Annotations are copied to replica sets, so changing them is a
            // new generation too (the server bumps it for spec changes).
            let spec_same = semantic_eq(new.get("spec"), old.get("spec"));
            let annotations_changed = !semantic_eq(
                at(new, &["metadata", "annotations"]),
                at(old, &["metadata", "annotations"]),
            );
            if spec_same && annotations_changed {
                let generation = at(old, &["metadata", "generation"])
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                if let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.insert("generation".into(), json!(generation + 1));
                }
            }
        }
        _ => {}
    }
}
