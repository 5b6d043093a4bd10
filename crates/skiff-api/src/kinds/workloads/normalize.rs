//! Decode-time canonicalisation of the quantities of the workloads kinds.

use serde_json::Value;

use super::{json, pod_spec_path};
use crate::quantity;

/// `ResourceList`s of a pod spec, relative to the spec: upstream's
/// defaulting also rounds these up to milli-units.
pub(super) const POD_SPEC_RESOURCE_LISTS: &[&[&str]] = &[
    &["containers", "*", "resources", "limits", "{}"],
    &["containers", "*", "resources", "requests", "{}"],
    &["initContainers", "*", "resources", "limits", "{}"],
    &["initContainers", "*", "resources", "requests", "{}"],
    &["ephemeralContainers", "*", "resources", "limits", "{}"],
    &["ephemeralContainers", "*", "resources", "requests", "{}"],
    &["overhead", "{}"],
    &["resources", "limits", "{}"],
    &["resources", "requests", "{}"],
    &[
        "volumes",
        "*",
        "ephemeral",
        "volumeClaimTemplate",
        "spec",
        "resources",
        "requests",
        "{}",
    ],
    &[
        "volumes",
        "*",
        "ephemeral",
        "volumeClaimTemplate",
        "spec",
        "resources",
        "limits",
        "{}",
    ],
];

/// Single quantities of a pod spec (not lists, so not rounded).
const POD_SPEC_QUANTITIES: &[&[&str]] = &[&["volumes", "*", "emptyDir", "sizeLimit"]];

/// `ResourceList`s of a StatefulSet outside its pod template.
pub(super) const STATEFUL_SET_RESOURCE_LISTS: &[&[&str]] = &[
    &[
        "spec",
        "volumeClaimTemplates",
        "*",
        "spec",
        "resources",
        "requests",
        "{}",
    ],
    &[
        "spec",
        "volumeClaimTemplates",
        "*",
        "spec",
        "resources",
        "limits",
        "{}",
    ],
    &[
        "spec",
        "volumeClaimTemplates",
        "*",
        "status",
        "capacity",
        "{}",
    ],
    &[
        "spec",
        "volumeClaimTemplates",
        "*",
        "status",
        "allocatedResources",
        "{}",
    ],
];

pub(super) fn normalize(kind: &str, obj: &mut Value) -> Result<(), String> {
    if let Some(path) = pod_spec_path(kind)
        && let Some(spec) = json::at_mut(obj, &path)
    {
        quantity::canonicalize_at(spec, POD_SPEC_RESOURCE_LISTS)?;
        quantity::canonicalize_at(spec, POD_SPEC_QUANTITIES)?;
    }
    if kind == "StatefulSet" {
        quantity::canonicalize_at(obj, STATEFUL_SET_RESOURCE_LISTS)?;
    }
    Ok(())
}

/// Upstream's `SetDefaults_ResourceList` on every resource list of `kind`.
pub(super) fn round_up_resource_lists(kind: &str, obj: &mut Value) {
    if let Some(path) = pod_spec_path(kind)
        && let Some(spec) = json::at_mut(obj, &path)
    {
        quantity::round_up_milli_at(spec, POD_SPEC_RESOURCE_LISTS);
    }
    if kind == "StatefulSet" {
        quantity::round_up_milli_at(obj, STATEFUL_SET_RESOURCE_LISTS);
    }
}
