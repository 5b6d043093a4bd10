//! Rules of the core kinds other than pods, pod templates and replication
//! controllers; see the parent module for the order of calls.
//!
//! One submodule per area: `config` (ConfigMap, Secret, ServiceAccount),
//! `service`, `service_ips` and `service_fields` (Service), `endpoints`,
//! `node` (Node, Namespace), `event` (core and `events.k8s.io` Events),
//! `quota` (LimitRange), `resource_quota`, `storage` (PersistentVolume)
//! and `claims` (PersistentVolumeClaim). `util` holds the validators the
//! cluster kinds share.
//!
//! Quantity-valued fields are only syntax-checked here, and compared as
//! approximate numbers; their canonical form and exact arithmetic belong
//! to the Quantity type, which `normalize` is to apply.

mod claims;
pub(super) mod config;
mod endpoints;
pub(super) mod event;
mod node;
mod quota;
mod resource_quota;
mod service;
mod service_fields;
mod service_ips;
mod storage;
pub(super) mod util;

use serde_json::Value;

use crate::field::ErrorList;

pub(super) fn normalize(kind: &str, obj: &mut Value) -> Result<(), String> {
    // Quantities (Node capacity, PV capacity, PVC requests, quota and limit
    // range values) in canonical form.
    crate::quantity::canonicalize_at(obj, crate::quantity::core_quantity_paths(kind))?;
    match kind {
        "Secret" => config::normalize_secret(obj),
        "ConfigMap" => config::normalize_config_map(obj),
        "Node" => {
            node::normalize_node(obj);
            Ok(())
        }
        _ => Ok(()),
    }
}

pub(super) fn default(kind: &str, obj: &mut Value) {
    // Upstream's SetDefaults_ResourceList: quantities rounded up to milli.
    crate::quantity::round_up_milli_at(obj, crate::quantity::core_quantity_paths(kind));
    match kind {
        "Secret" => config::default_secret(obj),
        "Service" => service::default_service(obj),
        "Endpoints" => endpoints::default_endpoints(obj),
        "Node" => node::default_node(obj),
        "LimitRange" => quota::default_limit_range(obj),
        "PersistentVolume" => storage::default_pv(obj),
        "PersistentVolumeClaim" => claims::default_pvc(obj),
        _ => {}
    }
}

pub(super) fn prepare_create(kind: &str, obj: &mut Value) {
    match kind {
        "ServiceAccount" => config::clean_secret_references(obj),
        "Service" => service::prepare_create(obj),
        "ResourceQuota" => resource_quota::prepare_create_quota(obj),
        "PersistentVolume" => storage::prepare_create_pv(obj),
        "PersistentVolumeClaim" => claims::prepare_create_pvc(obj),
        _ => {}
    }
}

pub(super) fn prepare_update(kind: &str, new: &mut Value, old: &Value) {
    match kind {
        "Service" => service::prepare_update(new, old),
        "ServiceAccount" => config::clean_secret_references(new),
        _ => {}
    }
}

pub(super) fn validate(kind: &str, obj: &Value) -> ErrorList {
    match kind {
        "ConfigMap" => config::validate_config_map(obj),
        "Secret" => config::validate_secret(obj),
        "Service" => service::validate_service(obj),
        "Endpoints" => endpoints::validate_endpoints(obj),
        "Node" => node::validate_node(obj),
        "Namespace" => node::validate_namespace(obj),
        "Event" => event::validate_event(obj, event::Api::CoreV1),
        "LimitRange" => quota::validate_limit_range(obj),
        "ResourceQuota" => resource_quota::validate_resource_quota(obj),
        "PersistentVolume" => storage::validate_pv(obj),
        "PersistentVolumeClaim" => claims::validate_pvc(obj),
        // ServiceAccount: only the common metadata rules apply.
        _ => ErrorList::new(),
    }
}

pub(super) fn validate_update(kind: &str, new: &Value, old: &Value) -> ErrorList {
    match kind {
        "ConfigMap" => config::validate_config_map_update(new, old),
        "Secret" => config::validate_secret_update(new, old),
        "Service" => service::validate_service_update(new, old),
        "Node" => node::validate_node_update(new, old),
        "Event" => event::validate_event_update(new, old, event::Api::CoreV1),
        "PersistentVolume" => storage::validate_pv_update(new, old),
        "ResourceQuota" => resource_quota::validate_resource_quota_update(new, old),
        "PersistentVolumeClaim" => claims::validate_pvc_update(new, old),
        _ => validate(kind, new),
    }
}

pub(super) fn validate_status_update(kind: &str, new: &Value, old: &Value) -> ErrorList {
    match kind {
        "Service" => service_fields::validate_service_status(new),
        "Node" => node::validate_node_update(new, old),
        "ResourceQuota" => resource_quota::validate_resource_quota_status(new),
        "Namespace" => node::validate_namespace_status(new),
        "PersistentVolume" => storage::validate_pv_status(new),
        "PersistentVolumeClaim" => claims::validate_pvc_status(new),
        _ => ErrorList::new(),
    }
}

#[cfg(test)]
#[path = "robustness_tests.rs"]
mod robustness_tests;
