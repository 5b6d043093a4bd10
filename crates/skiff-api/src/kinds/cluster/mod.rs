//! Rules of the kinds outside the core and workload groups; see the parent
//! module for the order of calls.
//!
//! One submodule per area: `rbac`, `network` (NetworkPolicy, Ingress,
//! IngressClass), `discovery` (EndpointSlice), `scheduling` (Lease,
//! PodDisruptionBudget, PriorityClass, StorageClass) and `certificates`
//! (CertificateSigningRequest). `events.k8s.io` Events share the core
//! Event rules.

mod certificates;
mod discovery;
mod network;
mod rbac;
mod scheduling;

use serde_json::Value;

use super::core::event::{self, Api};
use crate::field::ErrorList;

pub(super) fn normalize(group: &str, kind: &str, obj: &mut Value) -> Result<(), String> {
    match (group, kind) {
        ("certificates.k8s.io", "CertificateSigningRequest") => certificates::normalize(obj),
        _ => Ok(()),
    }
}

pub(super) fn default(group: &str, kind: &str, obj: &mut Value) {
    match (group, kind) {
        ("discovery.k8s.io", "EndpointSlice") => discovery::default_endpoint_slice(obj),
        ("networking.k8s.io", "NetworkPolicy") => network::default_network_policy(obj),
        ("networking.k8s.io", "IngressClass") => network::default_ingress_class(obj),
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            rbac::default_binding(obj);
        }
        ("scheduling.k8s.io", "PriorityClass") => scheduling::default_priority_class(obj),
        ("storage.k8s.io", "StorageClass") => scheduling::default_storage_class(obj),
        ("certificates.k8s.io", "CertificateSigningRequest") => certificates::default_csr(obj),
        _ => {}
    }
}

pub(super) fn prepare_create(group: &str, kind: &str, obj: &mut Value) {
    match (group, kind) {
        ("policy", "PodDisruptionBudget") => scheduling::prepare_create_pdb(obj),
        ("discovery.k8s.io", "EndpointSlice") => discovery::prepare_create_endpoint_slice(obj),
        ("networking.k8s.io", "Ingress") => network::prepare_create_ingress(obj),
        ("certificates.k8s.io", "CertificateSigningRequest") => {
            certificates::prepare_create(obj);
        }
        _ => {}
    }
}

pub(super) fn prepare_update(group: &str, kind: &str, new: &mut Value, old: &Value) {
    match (group, kind) {
        ("certificates.k8s.io", "CertificateSigningRequest") => {
            certificates::prepare_update(new, old);
        }
        ("discovery.k8s.io", "EndpointSlice") => {
            discovery::prepare_update_endpoint_slice(new, old);
        }
        _ => {}
    }
}

pub(super) fn validate(group: &str, kind: &str, obj: &Value) -> ErrorList {
    match (group, kind) {
        ("coordination.k8s.io", "Lease") => scheduling::validate_lease(obj),
        ("discovery.k8s.io", "EndpointSlice") => discovery::validate_endpoint_slice(obj),
        ("events.k8s.io", "Event") => event::validate_event(obj, Api::EventsV1),
        ("policy", "PodDisruptionBudget") => scheduling::validate_pdb(obj),
        ("scheduling.k8s.io", "PriorityClass") => scheduling::validate_priority_class(obj),
        ("storage.k8s.io", "StorageClass") => scheduling::validate_storage_class(obj),
        ("rbac.authorization.k8s.io", "Role") => rbac::validate_role(obj, true),
        ("rbac.authorization.k8s.io", "ClusterRole") => rbac::validate_role(obj, false),
        ("rbac.authorization.k8s.io", "RoleBinding") => rbac::validate_binding(obj, true),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => rbac::validate_binding(obj, false),
        ("networking.k8s.io", "NetworkPolicy") => network::validate_network_policy(obj),
        ("networking.k8s.io", "Ingress") => network::validate_ingress_create(obj),
        ("networking.k8s.io", "IngressClass") => network::validate_ingress_class(obj),
        ("certificates.k8s.io", "CertificateSigningRequest") => certificates::validate_csr(obj),
        _ => ErrorList::new(),
    }
}

pub(super) fn validate_update(group: &str, kind: &str, new: &Value, old: &Value) -> ErrorList {
    match (group, kind) {
        ("discovery.k8s.io", "EndpointSlice") => {
            discovery::validate_endpoint_slice_update(new, old)
        }
        ("events.k8s.io", "Event") => event::validate_event_update(new, old, Api::EventsV1),
        ("scheduling.k8s.io", "PriorityClass") => {
            scheduling::validate_priority_class_update(new, old)
        }
        ("storage.k8s.io", "StorageClass") => scheduling::validate_storage_class_update(new, old),
        ("rbac.authorization.k8s.io", "RoleBinding") => {
            rbac::validate_binding_update(new, old, true)
        }
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            rbac::validate_binding_update(new, old, false)
        }
        ("networking.k8s.io", "IngressClass") => network::validate_ingress_class_update(new, old),
        ("networking.k8s.io", "Ingress") => network::validate_ingress(new),
        _ => validate(group, kind, new),
    }
}

pub(super) fn validate_status_update(
    group: &str,
    kind: &str,
    new: &Value,
    old: &Value,
) -> ErrorList {
    match (group, kind) {
        ("networking.k8s.io", "Ingress") => network::validate_ingress_status(new),
        ("certificates.k8s.io", "CertificateSigningRequest") => {
            certificates::validate_csr_status(new, old)
        }
        ("policy", "PodDisruptionBudget") => scheduling::validate_pdb_status(new),
        _ => ErrorList::new(),
    }
}
