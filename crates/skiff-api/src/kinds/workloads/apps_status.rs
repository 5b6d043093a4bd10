//! ControllerRevisions and the status updates of the apps kinds.

use serde_json::Value;

use super::containers::nonnegative;
use super::json::{has, int_of, semantic_eq};
use crate::field::{BadValue, Error, ErrorList, Path};

/// `ValidateControllerRevision` (without metadata).
pub(super) fn validate_controller_revision(obj: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    if !has(obj, "data") {
        errs.push(Error::required(&Path::new("data"), "data is mandatory"));
    }
    if let Some(n) = int_of(obj, "revision")
        && n < 0
    {
        errs.push(Error::invalid(
            &Path::new("revision"),
            n,
            "must be greater than or equal to 0",
        ));
    }
    errs
}

/// A ControllerRevision's data never changes.
pub(super) fn validate_controller_revision_update(new: &Value, old: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    if !semantic_eq(new.get("data"), old.get("data")) {
        let shown = new.get("data").map_or_else(String::new, Value::to_string);
        errs.push(Error::invalid(
            &Path::new("data"),
            BadValue::Raw(format!("runtime.RawExtension{{Raw:{shown}}}")),
            "field is immutable",
        ));
    }
    errs
}

/// Status updates of the apps kinds and replication controllers: counts
/// are never negative nor above `status.replicas`.
pub(super) fn validate_replicas_status(kind: &str, obj: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    let Some(status) = obj.get("status") else {
        return errs;
    };
    let path = Path::new("status");
    let counts: &[&str] = match kind {
        "Deployment" => &[
            "observedGeneration",
            "replicas",
            "updatedReplicas",
            "readyReplicas",
            "availableReplicas",
            "unavailableReplicas",
            "collisionCount",
        ],
        "StatefulSet" => &[
            "replicas",
            "readyReplicas",
            "currentReplicas",
            "updatedReplicas",
            "availableReplicas",
            "observedGeneration",
            "collisionCount",
        ],
        "DaemonSet" => &[
            "currentNumberScheduled",
            "numberMisscheduled",
            "desiredNumberScheduled",
            "numberReady",
            "observedGeneration",
            "updatedNumberScheduled",
            "numberAvailable",
            "numberUnavailable",
            "collisionCount",
        ],
        _ => &[
            "replicas",
            "fullyLabeledReplicas",
            "readyReplicas",
            "availableReplicas",
            "observedGeneration",
        ],
    };
    for key in counts {
        nonnegative(status, key, &path, &mut errs);
    }
    if kind == "DaemonSet" {
        return errs;
    }
    let replicas = int_of(status, "replicas").unwrap_or(0);
    for key in [
        "fullyLabeledReplicas",
        "updatedReplicas",
        "readyReplicas",
        "currentReplicas",
        "availableReplicas",
    ] {
        if let Some(n) = int_of(status, key).filter(|n| *n > replicas) {
            errs.push(Error::invalid(
                &path.child(key),
                n,
                "cannot be greater than status.replicas",
            ));
        }
    }
    let available = int_of(status, "availableReplicas").unwrap_or(0);
    if available > int_of(status, "readyReplicas").unwrap_or(0) {
        let detail = if kind == "StatefulSet" {
            "cannot be greater than status.readyReplicas"
        } else {
            "cannot be greater than readyReplicas"
        };
        errs.push(Error::invalid(
            &path.child("availableReplicas"),
            available,
            detail,
        ));
    }
    errs
}
