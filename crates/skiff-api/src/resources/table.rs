//! The data of the resource table, as a v1.33 kube-apiserver lists it in
//! discovery (`/api/v1`, `/apis/{group}/{version}`).

use super::Scope::{Cluster, Namespaced};
use super::Verb::{Create, Delete, DeleteCollection, Get, List, Patch, Update, Watch};
use super::{GroupInfo, ResourceInfo, SubresourceInfo, Verb};

/// Every verb of a generic registry store.
const ALL: &[Verb] = &[
    Create,
    Delete,
    DeleteCollection,
    Get,
    List,
    Patch,
    Update,
    Watch,
];
/// Namespaces have no `deletecollection`.
const ALL_BUT_DELETECOLLECTION: &[Verb] = &[Create, Delete, Get, List, Patch, Update, Watch];
/// Status-like subresources (`status`, `scale`, `approval`, `ephemeralcontainers`).
const GET_PATCH_UPDATE: &[Verb] = &[Get, Patch, Update];
/// Create-only subresources (`binding`, `eviction`, `token`).
const CREATE: &[Verb] = &[Create];
/// Streaming subresources served by GET and POST (`exec`, `attach`, `portforward`).
const CREATE_GET: &[Verb] = &[Create, Get];
/// Proxy subresources (GET, POST, PUT, PATCH, DELETE; HEAD/OPTIONS are not listed).
const PROXY: &[Verb] = &[Create, Delete, Get, Patch, Update];

const fn sub(name: &'static str, kind: &'static str, verbs: &'static [Verb]) -> SubresourceInfo {
    SubresourceInfo {
        name,
        kind,
        kind_group_version: None,
        verbs,
    }
}

const fn sub_gv(
    name: &'static str,
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    verbs: &'static [Verb],
) -> SubresourceInfo {
    SubresourceInfo {
        name,
        kind,
        kind_group_version: Some((group, version)),
        verbs,
    }
}

const fn status(kind: &'static str) -> SubresourceInfo {
    sub("status", kind, GET_PATCH_UPDATE)
}

const fn scale() -> SubresourceInfo {
    sub_gv("scale", "autoscaling", "v1", "Scale", GET_PATCH_UPDATE)
}

/// A resource of the common shape: every verb, no subresources, no categories.
#[allow(clippy::too_many_arguments)]
const fn res(
    group: &'static str,
    kind: &'static str,
    list_kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    short_names: &'static [&'static str],
    scope: super::Scope,
    storage_prefix: &'static str,
) -> ResourceInfo {
    ResourceInfo {
        group,
        version: "v1",
        kind,
        list_kind,
        plural,
        singular,
        short_names,
        categories: &[],
        scope,
        verbs: ALL,
        subresources: &[],
        storage_prefix,
        shares_storage_with: None,
    }
}

const ALL_CATEGORY: &[&str] = &["all"];

const POD_SUBRESOURCES: &[SubresourceInfo] = &[
    sub("attach", "PodAttachOptions", CREATE_GET),
    sub("binding", "Binding", CREATE),
    sub("ephemeralcontainers", "Pod", GET_PATCH_UPDATE),
    sub_gv("eviction", "policy", "v1", "Eviction", CREATE),
    sub("exec", "PodExecOptions", CREATE_GET),
    sub("log", "Pod", &[Get]),
    sub("portforward", "PodPortForwardOptions", CREATE_GET),
    sub("proxy", "PodProxyOptions", PROXY),
    // InPlacePodVerticalScaling is beta and on by default in v1.33.
    sub("resize", "Pod", GET_PATCH_UPDATE),
    status("Pod"),
];

/// Every served resource, grouped by API group in discovery order and sorted by
/// plural within a group version.
#[rustfmt::skip]
pub static RESOURCES: &[ResourceInfo] = &[
    // ---- core/v1 ----
    res("", "ConfigMap", "ConfigMapList", "configmaps", "configmap", &["cm"], Namespaced, "/registry/configmaps/"),
    res("", "Endpoints", "EndpointsList", "endpoints", "endpoints", &["ep"], Namespaced, "/registry/endpoints/"),
    res("", "Event", "EventList", "events", "event", &["ev"], Namespaced, super::EVENTS_STORAGE_PREFIX),
    res("", "LimitRange", "LimitRangeList", "limitranges", "limitrange", &["limits"], Namespaced, "/registry/limitranges/"),
    ResourceInfo {
        verbs: ALL_BUT_DELETECOLLECTION,
        subresources: &[sub("finalize", "Namespace", &[Update]), status("Namespace")],
        ..res("", "Namespace", "NamespaceList", "namespaces", "namespace", &["ns"], Cluster, "/registry/namespaces/")
    },
    ResourceInfo {
        subresources: &[sub("proxy", "NodeProxyOptions", PROXY), status("Node")],
        ..res("", "Node", "NodeList", "nodes", "node", &["no"], Cluster, "/registry/nodes/")
    },
    ResourceInfo {
        subresources: &[status("PersistentVolumeClaim")],
        ..res("", "PersistentVolumeClaim", "PersistentVolumeClaimList", "persistentvolumeclaims", "persistentvolumeclaim", &["pvc"], Namespaced, "/registry/persistentvolumeclaims/")
    },
    ResourceInfo {
        subresources: &[status("PersistentVolume")],
        ..res("", "PersistentVolume", "PersistentVolumeList", "persistentvolumes", "persistentvolume", &["pv"], Cluster, "/registry/persistentvolumes/")
    },
    ResourceInfo {
        categories: ALL_CATEGORY,
        subresources: POD_SUBRESOURCES,
        ..res("", "Pod", "PodList", "pods", "pod", &["po"], Namespaced, "/registry/pods/")
    },
    res("", "PodTemplate", "PodTemplateList", "podtemplates", "podtemplate", &[], Namespaced, "/registry/podtemplates/"),
    ResourceInfo {
        categories: ALL_CATEGORY,
        subresources: &[scale(), status("ReplicationController")],
        ..res("", "ReplicationController", "ReplicationControllerList", "replicationcontrollers", "replicationcontroller", &["rc"], Namespaced, "/registry/replicationcontrollers/")
    },
    ResourceInfo {
        subresources: &[status("ResourceQuota")],
        ..res("", "ResourceQuota", "ResourceQuotaList", "resourcequotas", "resourcequota", &["quota"], Namespaced, "/registry/resourcequotas/")
    },
    res("", "Secret", "SecretList", "secrets", "secret", &[], Namespaced, "/registry/secrets/"),
    ResourceInfo {
        subresources: &[sub_gv("token", "authentication.k8s.io", "v1", "TokenRequest", CREATE)],
        ..res("", "ServiceAccount", "ServiceAccountList", "serviceaccounts", "serviceaccount", &["sa"], Namespaced, "/registry/serviceaccounts/")
    },
    ResourceInfo {
        categories: ALL_CATEGORY,
        subresources: &[sub("proxy", "ServiceProxyOptions", PROXY), status("Service")],
        ..res("", "Service", "ServiceList", "services", "service", &["svc"], Namespaced, "/registry/services/")
    },
    // ---- apps/v1 ----
    res("apps", "ControllerRevision", "ControllerRevisionList", "controllerrevisions", "controllerrevision", &[], Namespaced, "/registry/apps/controllerrevisions/"),
    ResourceInfo {
        categories: ALL_CATEGORY,
        subresources: &[status("DaemonSet")],
        ..res("apps", "DaemonSet", "DaemonSetList", "daemonsets", "daemonset", &["ds"], Namespaced, "/registry/apps/daemonsets/")
    },
    ResourceInfo {
        categories: ALL_CATEGORY,
        subresources: &[scale(), status("Deployment")],
        ..res("apps", "Deployment", "DeploymentList", "deployments", "deployment", &["deploy"], Namespaced, "/registry/apps/deployments/")
    },
    ResourceInfo {
        categories: ALL_CATEGORY,
        subresources: &[scale(), status("ReplicaSet")],
        ..res("apps", "ReplicaSet", "ReplicaSetList", "replicasets", "replicaset", &["rs"], Namespaced, "/registry/apps/replicasets/")
    },
    ResourceInfo {
        categories: ALL_CATEGORY,
        subresources: &[scale(), status("StatefulSet")],
        ..res("apps", "StatefulSet", "StatefulSetList", "statefulsets", "statefulset", &["sts"], Namespaced, "/registry/apps/statefulsets/")
    },
    // ---- events.k8s.io/v1 ----
    ResourceInfo {
        shares_storage_with: Some(("", "events")),
        ..res("events.k8s.io", "Event", "EventList", "events", "event", &["ev"], Namespaced, super::EVENTS_STORAGE_PREFIX)
    },
    // ---- batch/v1 ----
    ResourceInfo {
        categories: ALL_CATEGORY,
        subresources: &[status("CronJob")],
        ..res("batch", "CronJob", "CronJobList", "cronjobs", "cronjob", &["cj"], Namespaced, "/registry/batch/cronjobs/")
    },
    ResourceInfo {
        categories: ALL_CATEGORY,
        subresources: &[status("Job")],
        ..res("batch", "Job", "JobList", "jobs", "job", &[], Namespaced, "/registry/batch/jobs/")
    },
    // ---- certificates.k8s.io/v1 ----
    ResourceInfo {
        subresources: &[
            sub("approval", "CertificateSigningRequest", GET_PATCH_UPDATE),
            status("CertificateSigningRequest"),
        ],
        ..res("certificates.k8s.io", "CertificateSigningRequest", "CertificateSigningRequestList", "certificatesigningrequests", "certificatesigningrequest", &["csr"], Cluster, "/registry/certificates.k8s.io/certificatesigningrequests/")
    },
    // ---- networking.k8s.io/v1 ----
    res("networking.k8s.io", "IngressClass", "IngressClassList", "ingressclasses", "ingressclass", &[], Cluster, "/registry/networking.k8s.io/ingressclasses/"),
    ResourceInfo {
        subresources: &[status("Ingress")],
        ..res("networking.k8s.io", "Ingress", "IngressList", "ingresses", "ingress", &["ing"], Namespaced, "/registry/networking.k8s.io/ingresses/")
    },
    res("networking.k8s.io", "NetworkPolicy", "NetworkPolicyList", "networkpolicies", "networkpolicy", &["netpol"], Namespaced, "/registry/networking.k8s.io/networkpolicies/"),
    // ---- policy/v1 ----
    ResourceInfo {
        subresources: &[status("PodDisruptionBudget")],
        ..res("policy", "PodDisruptionBudget", "PodDisruptionBudgetList", "poddisruptionbudgets", "poddisruptionbudget", &["pdb"], Namespaced, "/registry/policy/poddisruptionbudgets/")
    },
    // ---- rbac.authorization.k8s.io/v1 ----
    res("rbac.authorization.k8s.io", "ClusterRoleBinding", "ClusterRoleBindingList", "clusterrolebindings", "clusterrolebinding", &[], Cluster, "/registry/rbac.authorization.k8s.io/clusterrolebindings/"),
    res("rbac.authorization.k8s.io", "ClusterRole", "ClusterRoleList", "clusterroles", "clusterrole", &[], Cluster, "/registry/rbac.authorization.k8s.io/clusterroles/"),
    res("rbac.authorization.k8s.io", "RoleBinding", "RoleBindingList", "rolebindings", "rolebinding", &[], Namespaced, "/registry/rbac.authorization.k8s.io/rolebindings/"),
    res("rbac.authorization.k8s.io", "Role", "RoleList", "roles", "role", &[], Namespaced, "/registry/rbac.authorization.k8s.io/roles/"),
    // ---- storage.k8s.io/v1 ----
    res("storage.k8s.io", "StorageClass", "StorageClassList", "storageclasses", "storageclass", &["sc"], Cluster, "/registry/storage.k8s.io/storageclasses/"),
    // ---- scheduling.k8s.io/v1 ----
    res("scheduling.k8s.io", "PriorityClass", "PriorityClassList", "priorityclasses", "priorityclass", &["pc"], Cluster, "/registry/scheduling.k8s.io/priorityclasses/"),
    // ---- coordination.k8s.io/v1 ----
    res("coordination.k8s.io", "Lease", "LeaseList", "leases", "lease", &[], Namespaced, "/registry/coordination.k8s.io/leases/"),
    // ---- discovery.k8s.io/v1 ----
    res("discovery.k8s.io", "EndpointSlice", "EndpointSliceList", "endpointslices", "endpointslice", &[], Namespaced, "/registry/discovery.k8s.io/endpointslices/"),
];

/// The served groups in upstream's discovery order (descending group priority
/// from the aggregator's built-in APIService priorities; core first).
#[rustfmt::skip]
pub static GROUPS: &[GroupInfo] = &[
    GroupInfo { name: "", versions: &["v1"], priority: 18000 },
    GroupInfo { name: "apps", versions: &["v1"], priority: 17800 },
    GroupInfo { name: "events.k8s.io", versions: &["v1"], priority: 17750 },
    GroupInfo { name: "batch", versions: &["v1"], priority: 17400 },
    GroupInfo { name: "certificates.k8s.io", versions: &["v1"], priority: 17300 },
    GroupInfo { name: "networking.k8s.io", versions: &["v1"], priority: 17200 },
    GroupInfo { name: "policy", versions: &["v1"], priority: 17100 },
    GroupInfo { name: "rbac.authorization.k8s.io", versions: &["v1"], priority: 17000 },
    GroupInfo { name: "storage.k8s.io", versions: &["v1"], priority: 16800 },
    GroupInfo { name: "scheduling.k8s.io", versions: &["v1"], priority: 16600 },
    GroupInfo { name: "coordination.k8s.io", versions: &["v1"], priority: 16500 },
    GroupInfo { name: "discovery.k8s.io", versions: &["v1"], priority: 16200 },
];
