//! Tests of the workloads kinds: defaults, validation and updates.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod defaults;
mod updates;
mod validation;

use serde_json::{Value, json};

use crate::field::ErrorList;

/// Runs the create pipeline of the parent module on `obj`: normalize,
/// default, prepare_create; returns the object and its validation errors.
pub(super) fn create(kind: &str, mut obj: Value) -> (Value, ErrorList) {
    super::normalize(kind, &mut obj).unwrap();
    super::default(kind, &mut obj);
    super::prepare_create(kind, &mut obj);
    let errs = super::validate(kind, &obj);
    (obj, errs)
}

/// The update pipeline: normalize, default, prepare_update, validate_update.
pub(super) fn update(kind: &str, mut new: Value, old: &Value) -> (Value, ErrorList) {
    super::normalize(kind, &mut new).unwrap();
    super::default(kind, &mut new);
    super::prepare_update(kind, &mut new, old);
    let errs = super::validate_update(kind, &new, old);
    (new, errs)
}

/// The rendered messages of an error list.
pub(super) fn messages(errs: &ErrorList) -> Vec<String> {
    errs.iter().map(ToString::to_string).collect()
}

/// A minimal pod as `kubectl run nginx --image=nginx` sends it.
pub(super) fn nginx_pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "nginx", "namespace": "default", "labels": {"run": "nginx"}},
        "spec": {"containers": [{"name": "nginx", "image": "nginx", "resources": {}}],
                 "restartPolicy": "Always", "dnsPolicy": "ClusterFirst"},
        "status": {}
    })
}
