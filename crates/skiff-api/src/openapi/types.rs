//! Which k8s-openapi Rust type describes each served kind: the seed of schema
//! generation. schemars names each type as upstream does
//! (`io.k8s.api.core.v1.Pod`), so the definitions come out with upstream's
//! names and descriptions.

use k8s_openapi::api::{
    apps::v1 as apps, authentication::v1 as authentication, autoscaling::v1 as autoscaling,
    batch::v1 as batch, certificates::v1 as certificates, coordination::v1 as coordination,
    core::v1 as core, discovery::v1 as discovery, events::v1 as events,
    networking::v1 as networking, policy::v1 as policy, rbac::v1 as rbac,
    scheduling::v1 as scheduling, storage::v1 as storage,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::SchemaGenerator;

/// Adds the schema of `kind` of `group` (and everything it references) to
/// `generator`; returns its definition name, or `None` for kinds without a
/// Rust type (the `*Options` kinds of connect subresources).
pub(super) fn add_kind(generator: &mut SchemaGenerator, group: &str, kind: &str) -> Option<String> {
    macro_rules! kinds {
        ($($g:literal, $k:literal => $t:ty;)*) => {
            match (group, kind) {
                $(($g, $k) => {
                    generator.subschema_for::<$t>();
                    Some(<$t as schemars::JsonSchema>::schema_name().into_owned())
                })*
                _ => None,
            }
        };
    }
    kinds! {
        "", "Binding" => core::Binding;
        "", "ConfigMap" => core::ConfigMap;
        "", "Endpoints" => core::Endpoints;
        "", "Event" => core::Event;
        "", "LimitRange" => core::LimitRange;
        "", "Namespace" => core::Namespace;
        "", "Node" => core::Node;
        "", "PersistentVolume" => core::PersistentVolume;
        "", "PersistentVolumeClaim" => core::PersistentVolumeClaim;
        "", "Pod" => core::Pod;
        "", "PodTemplate" => core::PodTemplate;
        "", "ReplicationController" => core::ReplicationController;
        "", "ResourceQuota" => core::ResourceQuota;
        "", "Secret" => core::Secret;
        "", "Service" => core::Service;
        "", "ServiceAccount" => core::ServiceAccount;
        "apps", "ControllerRevision" => apps::ControllerRevision;
        "apps", "DaemonSet" => apps::DaemonSet;
        "apps", "Deployment" => apps::Deployment;
        "apps", "ReplicaSet" => apps::ReplicaSet;
        "apps", "StatefulSet" => apps::StatefulSet;
        "authentication.k8s.io", "TokenRequest" => authentication::TokenRequest;
        "autoscaling", "Scale" => autoscaling::Scale;
        "batch", "CronJob" => batch::CronJob;
        "batch", "Job" => batch::Job;
        "certificates.k8s.io", "CertificateSigningRequest" => certificates::CertificateSigningRequest;
        "coordination.k8s.io", "Lease" => coordination::Lease;
        "discovery.k8s.io", "EndpointSlice" => discovery::EndpointSlice;
        "events.k8s.io", "Event" => events::Event;
        "networking.k8s.io", "Ingress" => networking::Ingress;
        "networking.k8s.io", "IngressClass" => networking::IngressClass;
        "networking.k8s.io", "NetworkPolicy" => networking::NetworkPolicy;
        "policy", "Eviction" => policy::Eviction;
        "policy", "PodDisruptionBudget" => policy::PodDisruptionBudget;
        "rbac.authorization.k8s.io", "ClusterRole" => rbac::ClusterRole;
        "rbac.authorization.k8s.io", "ClusterRoleBinding" => rbac::ClusterRoleBinding;
        "rbac.authorization.k8s.io", "Role" => rbac::Role;
        "rbac.authorization.k8s.io", "RoleBinding" => rbac::RoleBinding;
        "scheduling.k8s.io", "PriorityClass" => scheduling::PriorityClass;
        "storage.k8s.io", "StorageClass" => storage::StorageClass;
    }
}

/// Adds the meta/v1 types every group-version document references from its
/// operations (request and response bodies).
pub(super) fn add_common(generator: &mut SchemaGenerator) {
    generator.subschema_for::<meta::DeleteOptions>();
    generator.subschema_for::<meta::ListMeta>();
    generator.subschema_for::<meta::Patch>();
    generator.subschema_for::<meta::Status>();
    generator
        .subschema_for::<meta::WatchEvent<k8s_openapi::apimachinery::pkg::runtime::RawExtension>>();
}

/// The definition name of a type upstream names `io.k8s.api.{package}.{version}.{Type}`
/// for a group (`rbac.authorization.k8s.io` → `rbac`), used for list kinds,
/// which have no Rust type of their own.
pub(super) fn definition_name(group: &str, version: &str, kind: &str) -> String {
    let package = match group {
        "" => "core",
        g => g.split('.').next().unwrap_or(g),
    };
    format!("io.k8s.api.{package}.{version}.{kind}")
}

/// The meta/v1 `ListMeta` definition name.
pub(super) const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
