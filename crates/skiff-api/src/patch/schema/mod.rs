//! Patch metadata of the built-in types: for each list field its patch strategy
//! and merge key (Go struct tags `patchStrategy` / `patchMergeKey`, served in
//! OpenAPI as `x-kubernetes-patch-strategy` / `x-kubernetes-patch-merge-key`) and
//! its list type (`+listType` / `+listMapKey`, served as `x-kubernetes-list-type`
//! / `x-kubernetes-list-map-keys`).
//!
//! The facts live in a static table keyed by Go type (`core.v1.PodSpec`), with
//! edges from struct fields to their types, so a pod template means the same
//! thing in a Pod, a Deployment or a CronJob's `jobTemplate`. A [`PatchSchema`]
//! is a cursor on that graph, starting at a kind's root type.

mod core_v1;
mod def;
mod groups;

use std::collections::HashMap;
use std::sync::LazyLock;

use def::{FieldDef, TypeDef};

/// How server-side apply treats a list (`x-kubernetes-list-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListType {
    /// Replaced as a whole.
    Atomic,
    /// A set of scalars: each element owned separately.
    Set,
    /// A map keyed by the named fields of each element.
    Map {
        /// `x-kubernetes-list-map-keys`.
        keys: &'static [&'static str],
    },
}

/// The patch strategy of a field, as far as applying a strategic merge patch is
/// concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchStrategy {
    /// `merge`: lists merge element by element (by merge key, or as sets of
    /// primitives).
    Merge,
    /// `replace`: the patch value replaces the field whole.
    Replace,
}

/// What the table knows about one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldInfo {
    /// `x-kubernetes-patch-strategy`, without `retainKeys`; `None` means the
    /// default (lists are replaced, structs merged).
    pub strategy: Option<PatchStrategy>,
    /// True when the strategy includes `retainKeys`.
    pub retain_keys: bool,
    /// `x-kubernetes-patch-merge-key`.
    pub merge_key: Option<&'static str>,
    /// For lists, the list type server-side apply uses: the declared
    /// `x-kubernetes-list-type`, else what upstream's OpenAPI-to-schema
    /// conversion derives (a `merge` list with a key is a map by that key, one
    /// without is a set, anything else atomic). `None` for non-lists.
    pub list_type: Option<ListType>,
    /// The Go type of the value (of each element for lists), when the table has
    /// it (`core.v1.Container`).
    pub type_name: Option<&'static str>,
}

impl FieldInfo {
    fn of(def: &'static FieldDef) -> Self {
        FieldInfo {
            strategy: if def.strategy.merge {
                Some(PatchStrategy::Merge)
            } else if def.strategy.replace {
                Some(PatchStrategy::Replace)
            } else {
                None
            },
            retain_keys: def.strategy.retain_keys,
            merge_key: (!def.merge_key.is_empty()).then_some(def.merge_key),
            list_type: if def.list { def.list_type } else { None },
            type_name: (!def.ty.is_empty()).then_some(def.ty),
        }
    }
}

/// The patch metadata of one built-in Go type, and through it of everything
/// below it. Cheap to copy.
#[derive(Debug, Clone, Copy)]
pub struct PatchSchema {
    ty: Option<&'static TypeDef>,
}

impl PartialEq for PatchSchema {
    fn eq(&self, other: &Self) -> bool {
        self.type_name() == other.type_name()
    }
}

impl Eq for PatchSchema {}

impl PatchSchema {
    /// The schema of a served kind (`""`, `"v1"`, `"Pod"`), or `None` for kinds
    /// the table does not have (custom resources: upstream refuses strategic
    /// merge patches for those).
    pub fn for_kind(group: &str, version: &str, kind: &str) -> Option<Self> {
        // Every write asks (managedFields), so the table is indexed once.
        static BY_KIND: LazyLock<HashMap<(&str, &str, &str), PatchSchema>> = LazyLock::new(|| {
            KINDS
                .iter()
                .filter_map(|(g, v, k, ty)| Some(((*g, *v, *k), PatchSchema::for_type(ty)?)))
                .collect()
        });
        BY_KIND.get(&(group, version, kind)).copied()
    }

    /// The schema of a Go type by its table name (`core.v1.PodSpec`).
    pub fn for_type(name: &str) -> Option<Self> {
        find_type(name).map(|ty| PatchSchema { ty: Some(ty) })
    }

    /// A schema that knows nothing: every list is replaced and every map
    /// merged, as for a type without patch tags.
    pub fn opaque() -> Self {
        PatchSchema { ty: None }
    }

    /// The Go type this schema describes, if any.
    pub fn type_name(&self) -> Option<&'static str> {
        self.ty.map(|t| t.name)
    }

    /// The field `name` of this type: its metadata (default metadata when the
    /// table does not list it) and the schema of its value (of each element,
    /// for lists).
    pub fn child(&self, name: &str) -> (FieldInfo, PatchSchema) {
        match self
            .ty
            .and_then(|t| t.fields.iter().find(|f| f.name == name))
        {
            Some(def) => (
                FieldInfo::of(def),
                PatchSchema {
                    ty: find_type(def.ty),
                },
            ),
            None => (DEFAULT_FIELD, PatchSchema::opaque()),
        }
    }

    /// The metadata of the field at `path` (JSON field names from this type
    /// down; list elements are stepped through implicitly, so
    /// `["spec", "containers", "ports"]` names each container's ports). `None`
    /// when the table does not list the field: it patches with the defaults.
    pub fn field(&self, path: &[&str]) -> Option<FieldInfo> {
        let (last, parents) = path.split_last()?;
        let mut cur = *self;
        for name in parents {
            let def = cur.ty?.fields.iter().find(|f| f.name == *name)?;
            cur = PatchSchema {
                ty: find_type(def.ty),
            };
        }
        let def = cur.ty?.fields.iter().find(|f| f.name == *last)?;
        Some(FieldInfo::of(def))
    }

    /// The list type of the list at `path` (see [`FieldInfo::list_type`]).
    /// `None` when the table does not list it, which for a list means atomic.
    pub fn list_type(&self, path: &[&str]) -> Option<ListType> {
        self.field(path)?.list_type
    }
}

/// The list type of the list at `path` in a served kind; see
/// [`PatchSchema::list_type`].
pub fn list_type(group: &str, version: &str, kind: &str, path: &[&str]) -> Option<ListType> {
    PatchSchema::for_kind(group, version, kind)?.list_type(path)
}

const DEFAULT_FIELD: FieldInfo = FieldInfo {
    strategy: None,
    retain_keys: false,
    merge_key: None,
    list_type: None,
    type_name: None,
};

fn find_type(name: &str) -> Option<&'static TypeDef> {
    if name.is_empty() {
        return None;
    }
    let table = if name.starts_with("core.v1.") {
        core_v1::TYPES
    } else {
        groups::TYPES
    };
    table
        .binary_search_by(|t| t.name.cmp(name))
        .ok()
        .map(|i| &table[i])
}

/// Served kinds and their root Go types.
static KINDS: &[(&str, &str, &str, &str)] = &[
    ("", "v1", "Binding", "core.v1.Binding"),
    ("", "v1", "ConfigMap", "core.v1.ConfigMap"),
    ("", "v1", "Endpoints", "core.v1.Endpoints"),
    ("", "v1", "Event", "core.v1.Event"),
    ("", "v1", "LimitRange", "core.v1.LimitRange"),
    ("", "v1", "Namespace", "core.v1.Namespace"),
    ("", "v1", "Node", "core.v1.Node"),
    ("", "v1", "PersistentVolume", "core.v1.PersistentVolume"),
    (
        "",
        "v1",
        "PersistentVolumeClaim",
        "core.v1.PersistentVolumeClaim",
    ),
    ("", "v1", "Pod", "core.v1.Pod"),
    ("", "v1", "PodTemplate", "core.v1.PodTemplate"),
    (
        "",
        "v1",
        "ReplicationController",
        "core.v1.ReplicationController",
    ),
    ("", "v1", "ResourceQuota", "core.v1.ResourceQuota"),
    ("", "v1", "Secret", "core.v1.Secret"),
    ("", "v1", "Service", "core.v1.Service"),
    ("", "v1", "ServiceAccount", "core.v1.ServiceAccount"),
    (
        "apps",
        "v1",
        "ControllerRevision",
        "apps.v1.ControllerRevision",
    ),
    ("apps", "v1", "DaemonSet", "apps.v1.DaemonSet"),
    ("apps", "v1", "Deployment", "apps.v1.Deployment"),
    ("apps", "v1", "ReplicaSet", "apps.v1.ReplicaSet"),
    ("apps", "v1", "StatefulSet", "apps.v1.StatefulSet"),
    ("autoscaling", "v1", "Scale", "autoscaling.v1.Scale"),
    ("batch", "v1", "CronJob", "batch.v1.CronJob"),
    ("batch", "v1", "Job", "batch.v1.Job"),
    (
        "certificates.k8s.io",
        "v1",
        "CertificateSigningRequest",
        "certificates.v1.CertificateSigningRequest",
    ),
    (
        "coordination.k8s.io",
        "v1",
        "Lease",
        "coordination.v1.Lease",
    ),
    (
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "discovery.v1.EndpointSlice",
    ),
    ("events.k8s.io", "v1", "Event", "events.v1.Event"),
    (
        "networking.k8s.io",
        "v1",
        "IPAddress",
        "networking.v1.IPAddress",
    ),
    (
        "networking.k8s.io",
        "v1",
        "Ingress",
        "networking.v1.Ingress",
    ),
    (
        "networking.k8s.io",
        "v1",
        "IngressClass",
        "networking.v1.IngressClass",
    ),
    (
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networking.v1.NetworkPolicy",
    ),
    (
        "networking.k8s.io",
        "v1",
        "ServiceCIDR",
        "networking.v1.ServiceCIDR",
    ),
    ("policy", "v1", "Eviction", "policy.v1.Eviction"),
    (
        "policy",
        "v1",
        "PodDisruptionBudget",
        "policy.v1.PodDisruptionBudget",
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "rbac.v1.ClusterRole",
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "rbac.v1.ClusterRoleBinding",
    ),
    ("rbac.authorization.k8s.io", "v1", "Role", "rbac.v1.Role"),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rbac.v1.RoleBinding",
    ),
    (
        "scheduling.k8s.io",
        "v1",
        "PriorityClass",
        "scheduling.v1.PriorityClass",
    ),
    ("storage.k8s.io", "v1", "CSIDriver", "storage.v1.CSIDriver"),
    ("storage.k8s.io", "v1", "CSINode", "storage.v1.CSINode"),
    (
        "storage.k8s.io",
        "v1",
        "CSIStorageCapacity",
        "storage.v1.CSIStorageCapacity",
    ),
    (
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "storage.v1.StorageClass",
    ),
    (
        "storage.k8s.io",
        "v1",
        "VolumeAttachment",
        "storage.v1.VolumeAttachment",
    ),
];

#[cfg(test)]
pub(crate) fn table_for_tests() -> impl Iterator<Item = &'static TypeDef> {
    core_v1::TYPES.iter().chain(groups::TYPES.iter())
}

#[cfg(test)]
pub(crate) fn kinds_for_tests()
-> &'static [(&'static str, &'static str, &'static str, &'static str)] {
    KINDS
}
