//! Rules of the workloads kinds — Pod, PodTemplate, ReplicationController,
//! apps/v1 and batch/v1 — see the parent module for the order of calls.
//!
//! - [`normalize`]: quantities canonicalised (`normalize.rs`);
//! - [`default`]: upstream's `SetObjectDefaults_*` (`defaults.rs` for pod
//!   specs, `defaults_kinds.rs` for the owners of pod templates);
//! - [`prepare_create`] / [`prepare_update`]: the strategies (`strategy.rs`);
//! - validation: `containers.rs` (with `env.rs` and `resources.rs`) and
//!   `podspec.rs` for pod specs, `pod.rs` for pods and their updates,
//!   `apps.rs` (with `rolling.rs` and `apps_status.rs`), `batch.rs` (schedules
//!   through [`crate::cron`]); `render.rs` prints values the way upstream's messages do.

mod apps;
mod apps_status;
mod batch;
mod containers;
mod defaults;
mod defaults_kinds;
mod env;
mod json;
mod normalize;
mod pod;
mod podspec;
mod render;
mod resources;
mod rolling;
mod strategy;
#[cfg(test)]
mod tests;
mod volumes;

use serde_json::Value;

use crate::field::{ErrorList, Path};

/// Where the pod template of a kind lives, as JSON pointer steps.
fn template_path(kind: &str) -> Option<&'static [&'static str]> {
    match kind {
        "PodTemplate" => Some(&["template"]),
        "ReplicationController"
        | "ReplicaSet"
        | "Deployment"
        | "DaemonSet"
        | "StatefulSet"
        | "Job" => Some(&["spec", "template"]),
        "CronJob" => Some(&["spec", "jobTemplate", "spec", "template"]),
        _ => None,
    }
}

/// The pod spec of an object of `kind` (the pod's own, or its template's).
fn pod_spec_path(kind: &str) -> Option<Vec<&'static str>> {
    if kind == "Pod" {
        return Some(vec!["spec"]);
    }
    template_path(kind).map(|t| {
        let mut p = t.to_vec();
        p.push("spec");
        p
    })
}

pub(super) fn normalize(kind: &str, obj: &mut Value) -> Result<(), String> {
    normalize::normalize(kind, obj)
}

pub(super) fn default(kind: &str, obj: &mut Value) {
    defaults_kinds::default(kind, obj);
}

pub(super) fn prepare_create(kind: &str, obj: &mut Value) {
    strategy::prepare_create(kind, obj);
}

pub(super) fn prepare_update(kind: &str, new: &mut Value, old: &Value) {
    strategy::prepare_update(kind, new, old);
}

pub(super) fn validate(kind: &str, obj: &Value) -> ErrorList {
    match kind {
        "Pod" => pod::validate_create(obj),
        "PodTemplate" => podspec::validate_template(obj.get("template"), &Path::new("template")),
        "ReplicationController" => apps::validate_rc(obj),
        "ReplicaSet" => apps::validate_replica_set(obj),
        "Deployment" => apps::validate_deployment(obj),
        "DaemonSet" => apps::validate_daemon_set(obj),
        "StatefulSet" => apps::validate_stateful_set(obj),
        "ControllerRevision" => apps_status::validate_controller_revision(obj),
        "Job" => batch::validate_job(obj),
        "CronJob" => batch::validate_cron_job(obj, None),
        _ => ErrorList::new(),
    }
}

pub(super) fn validate_update(kind: &str, new: &Value, old: &Value) -> ErrorList {
    match kind {
        "Pod" => pod::validate_update(new, old),
        "Deployment" | "ReplicaSet" | "DaemonSet" => {
            let mut errs = validate(kind, new);
            errs.extend(apps::validate_selector_immutable(new, old));
            errs
        }
        "StatefulSet" => {
            let mut errs = validate(kind, new);
            errs.extend(apps::validate_stateful_set_update(new, old));
            errs
        }
        "ControllerRevision" => {
            let mut errs = validate(kind, new);
            errs.extend(apps_status::validate_controller_revision_update(new, old));
            errs
        }
        "Job" => batch::validate_job_update(new, old),
        "CronJob" => batch::validate_cron_job(new, Some(old)),
        _ => validate(kind, new),
    }
}

pub(super) fn validate_status_update(kind: &str, new: &Value, old: &Value) -> ErrorList {
    match kind {
        "Pod" => pod::validate_status(new, old),
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "ReplicationController" => {
            apps_status::validate_replicas_status(kind, new)
        }
        "Job" => batch::validate_job_status(new),
        _ => ErrorList::new(),
    }
}
