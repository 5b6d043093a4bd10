//! Per-kind rules of the built-in types, as upstream's registry strategies
//! apply them: decode-time normalisation (quantities in canonical form),
//! defaulting (`SetObjectDefaults_*`), the strategy's prepare-for-create /
//! prepare-for-update, and validation (`pkg/apis/*/validation`), on JSON
//! objects of the served kinds.
//!
//! The API server calls, in this order:
//! - create: [`normalize`], [`default`], [`prepare_create`], [`validate`];
//! - update of the main resource: [`normalize`], [`default`],
//!   [`prepare_update`], [`validate_update`];
//! - update of `/status`: [`normalize`], [`default`],
//!   [`validate_status_update`].
//!
//! Metadata rules common to every kind (names, labels, annotations) live in
//! [`crate::validation`] and are checked by the server separately.
//!
//! Kinds are routed by group and kind to one file per area: `workloads`
//! (pods, pod templates, replication controllers, apps, batch), `core` (the
//! other core/v1 kinds) and `cluster` (every other group).

mod cluster;
mod core;
mod workloads;

use serde_json::Value;

use crate::field::ErrorList;

/// `hostPath.type` values, for pod volumes and PersistentVolumes alike.
const HOST_PATH_TYPES: &[&str] = &[
    "",
    "BlockDevice",
    "CharDevice",
    "Directory",
    "DirectoryOrCreate",
    "File",
    "FileOrCreate",
    "Socket",
];

/// The file that owns a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Area {
    Workloads,
    Core,
    Cluster,
}

fn area(group: &str, kind: &str) -> Area {
    match (group, kind) {
        ("", "Pod" | "PodTemplate" | "ReplicationController") | ("apps" | "batch", _) => {
            Area::Workloads
        }
        ("", _) => Area::Core,
        _ => Area::Cluster,
    }
}

/// Decode-time normalisation: what upstream's typed decoding does to a
/// JSON body, such as rewriting quantities to their canonical form
/// (`"1000m"` → `"1"`). An error is the message of a 400 BadRequest (a
/// malformed quantity fails decoding upstream).
pub fn normalize(group: &str, kind: &str, obj: &mut Value) -> Result<(), String> {
    match area(group, kind) {
        Area::Workloads => workloads::normalize(kind, obj),
        Area::Core => core::normalize(kind, obj),
        Area::Cluster => cluster::normalize(group, kind, obj),
    }
}

/// Upstream's defaulting of an object of `group`/`kind`. Idempotent.
pub fn default(group: &str, kind: &str, obj: &mut Value) {
    match area(group, kind) {
        Area::Workloads => workloads::default(kind, obj),
        Area::Core => core::default(kind, obj),
        Area::Cluster => cluster::default(group, kind, obj),
    }
}

/// The strategy's `PrepareForCreate`: fields the server owns on create
/// (a new Pod's status is `phase: Pending` with its QoS class, a new
/// Deployment's status is empty, ...).
pub fn prepare_create(group: &str, kind: &str, obj: &mut Value) {
    match area(group, kind) {
        Area::Workloads => workloads::prepare_create(kind, obj),
        Area::Core => core::prepare_create(kind, obj),
        Area::Cluster => cluster::prepare_create(group, kind, obj),
    }
}

/// The strategy's `PrepareForUpdate` of the main resource, beyond the
/// generic rules the server applies (status kept from `old`, metadata
/// carried over, generation bumped on spec changes).
pub fn prepare_update(group: &str, kind: &str, new: &mut Value, old: &Value) {
    match area(group, kind) {
        Area::Workloads => workloads::prepare_update(kind, new, old),
        Area::Core => core::prepare_update(kind, new, old),
        Area::Cluster => cluster::prepare_update(group, kind, new, old),
    }
}

/// Validation of a new object (after defaulting), without the common
/// metadata rules.
pub fn validate(group: &str, kind: &str, obj: &Value) -> ErrorList {
    match area(group, kind) {
        Area::Workloads => workloads::validate(kind, obj),
        Area::Core => core::validate(kind, obj),
        Area::Cluster => cluster::validate(group, kind, obj),
    }
}

/// Validation of an update of the main resource: the object's own rules
/// plus what may not change (immutable fields).
pub fn validate_update(group: &str, kind: &str, new: &Value, old: &Value) -> ErrorList {
    match area(group, kind) {
        Area::Workloads => workloads::validate_update(kind, new, old),
        Area::Core => core::validate_update(kind, new, old),
        Area::Cluster => cluster::validate_update(group, kind, new, old),
    }
}

/// Validation of an update through `/status`.
pub fn validate_status_update(group: &str, kind: &str, new: &Value, old: &Value) -> ErrorList {
    match area(group, kind) {
        Area::Workloads => workloads::validate_status_update(kind, new, old),
        Area::Core => core::validate_status_update(kind, new, old),
        Area::Cluster => cluster::validate_status_update(group, kind, new, old),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_route_to_their_area() {
        assert_eq!(area("", "Pod"), Area::Workloads);
        assert_eq!(area("apps", "Deployment"), Area::Workloads);
        assert_eq!(area("batch", "CronJob"), Area::Workloads);
        assert_eq!(area("", "Service"), Area::Core);
        assert_eq!(area("networking.k8s.io", "Ingress"), Area::Cluster);
    }
}
