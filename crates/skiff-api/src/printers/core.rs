//! Core (`v1`) kinds other than pods, events, endpoints and replication
//! controllers: nodes, namespaces, services, config maps, secrets, service
//! accounts, pod templates, resource quotas, persistent volumes and claims.

use std::collections::BTreeSet;

use serde_json::Value;

use super::fields::{
    access_modes, age, array_at, bool_at, container_cells, format_labels, get, int_at, is_deleting,
    load_balancer_ingress, map_len, name, object_at, opt_str, quantity, str_at,
};
use super::{AGE, Ctx, TableColumnDefinition, col, name_col};

// ---- nodes ----

/// Node columns.
pub(super) static NODE_COLUMNS: &[TableColumnDefinition] = &[
    name_col(0),
    col(
        "Status",
        "string",
        0,
        "Ready or NotReady, and SchedulingDisabled when cordoned.",
    ),
    col(
        "Roles",
        "string",
        0,
        "Roles from the node's node-role.kubernetes.io/* labels.",
    ),
    AGE,
    col("Version", "string", 0, "Version of the node's kubelet."),
    col(
        "Internal-IP",
        "string",
        1,
        "The node's first InternalIP address.",
    ),
    col(
        "External-IP",
        "string",
        1,
        "The node's first ExternalIP address.",
    ),
    col(
        "OS-Image",
        "string",
        1,
        "The operating system image of the node.",
    ),
    col("Kernel-Version", "string", 1, "The node's kernel version."),
    col(
        "Container-Runtime",
        "string",
        1,
        "Name and version of the node's container runtime.",
    ),
];

const NODE_ROLE_PREFIX: &str = "node-role.kubernetes.io/";
const LEGACY_ROLE_LABEL: &str = "kubernetes.io/role";

/// Roles from `node-role.kubernetes.io/<role>` label keys and the legacy
/// `kubernetes.io/role=<role>` label, sorted and deduplicated.
fn node_roles(node: &Value) -> String {
    let mut roles = BTreeSet::new();
    for (k, v) in object_at(node, &["metadata", "labels"])
        .into_iter()
        .flatten()
    {
        if let Some(role) = k.strip_prefix(NODE_ROLE_PREFIX) {
            if !role.is_empty() {
                roles.insert(role);
            }
        } else if k == LEGACY_ROLE_LABEL
            && let Some(v) = v.as_str().filter(|v| !v.is_empty())
        {
            roles.insert(v);
        }
    }
    if roles.is_empty() {
        "<none>".to_owned()
    } else {
        roles.into_iter().collect::<Vec<_>>().join(",")
    }
}

fn node_address(node: &Value, type_: &str) -> String {
    array_at(node, &["status", "addresses"])
        .iter()
        .find(|a| str_at(a, &["type"]) == type_)
        .map_or_else(
            || "<none>".to_owned(),
            |a| str_at(a, &["address"]).to_owned(),
        )
}

/// The cells of one node.
pub(super) fn node_row(node: &Value, ctx: &Ctx) -> Vec<Value> {
    // Only the Ready condition counts; the last one of that type wins, as in
    // upstream's condition map.
    let ready = array_at(node, &["status", "conditions"])
        .iter()
        .rfind(|c| str_at(c, &["type"]) == "Ready");
    let mut status = vec![match ready {
        Some(c) if str_at(c, &["status"]) == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if bool_at(node, &["spec", "unschedulable"]) {
        status.push("SchedulingDisabled");
    }
    let info = |field: &str| {
        let v = str_at(node, &["status", "nodeInfo", field]);
        if v.is_empty() { "<unknown>" } else { v }.to_owned()
    };
    vec![
        name(node).into(),
        status.join(",").into(),
        node_roles(node).into(),
        age(node, ctx),
        str_at(node, &["status", "nodeInfo", "kubeletVersion"]).into(),
        node_address(node, "InternalIP").into(),
        node_address(node, "ExternalIP").into(),
        info("osImage").into(),
        info("kernelVersion").into(),
        info("containerRuntimeVersion").into(),
    ]
}

// ---- namespaces ----

/// Namespace columns.
pub(super) static NAMESPACE_COLUMNS: &[TableColumnDefinition] = &[
    name_col(0),
    col(
        "Status",
        "string",
        0,
        "The namespace's phase: Active or Terminating.",
    ),
    AGE,
];

/// The cells of one namespace.
pub(super) fn namespace_row(ns: &Value, ctx: &Ctx) -> Vec<Value> {
    vec![
        name(ns).into(),
        str_at(ns, &["status", "phase"]).into(),
        age(ns, ctx),
    ]
}

// ---- services ----

/// Service columns.
pub(super) static SERVICE_COLUMNS: &[TableColumnDefinition] = &[
    name_col(0),
    col(
        "Type",
        "string",
        0,
        "ClusterIP, NodePort, LoadBalancer or ExternalName.",
    ),
    col(
        "Cluster-IP",
        "string",
        0,
        "The service's primary cluster IP.",
    ),
    col(
        "External-IP",
        "string",
        0,
        "External IPs, load balancer addresses, or the external name.",
    ),
    col(
        "Port(s)",
        "string",
        0,
        "Service ports as port[:nodePort]/protocol.",
    ),
    AGE,
    col(
        "Selector",
        "string",
        1,
        "Labels of the pods the service targets.",
    ),
];

fn string_list(v: &Value, path: &[&str]) -> Vec<String> {
    array_at(v, path)
        .iter()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

/// Upstream's `getServiceExternalIP` (wide form: load balancer addresses unclipped).
fn service_external_ip(svc: &Value) -> String {
    let external_ips = string_list(svc, &["spec", "externalIPs"]);
    match str_at(svc, &["spec", "type"]) {
        "ClusterIP" | "NodePort" => {
            if external_ips.is_empty() {
                "<none>".to_owned()
            } else {
                external_ips.join(",")
            }
        }
        "LoadBalancer" => {
            let lb = load_balancer_ingress(svc, &["status", "loadBalancer", "ingress"]);
            if external_ips.is_empty() {
                if lb.is_empty() {
                    "<pending>".to_owned()
                } else {
                    lb
                }
            } else {
                let mut all: Vec<String> = Vec::new();
                if !lb.is_empty() {
                    all.extend(lb.split(',').map(str::to_owned));
                }
                all.extend(external_ips);
                all.join(",")
            }
        }
        "ExternalName" => str_at(svc, &["spec", "externalName"]).to_owned(),
        _ => "<unknown>".to_owned(),
    }
}

/// `port/protocol` or `port:nodePort/protocol`, comma-joined; `<none>`.
fn service_ports(svc: &Value) -> String {
    let pieces: Vec<String> = array_at(svc, &["spec", "ports"])
        .iter()
        .map(|p| {
            let port = int_at(p, &["port"]);
            let node_port = int_at(p, &["nodePort"]);
            // Stored services always carry the protocol; TCP is its default.
            let proto = opt_str(p, &["protocol"]).unwrap_or("TCP");
            if node_port > 0 {
                format!("{port}:{node_port}/{proto}")
            } else {
                format!("{port}/{proto}")
            }
        })
        .collect();
    if pieces.is_empty() {
        "<none>".to_owned()
    } else {
        pieces.join(",")
    }
}

/// The primary cluster IP: `spec.clusterIP`, else the first of `spec.clusterIPs`
/// (the v1 → internal conversion makes `clusterIP` authoritative).
fn cluster_ip(svc: &Value) -> String {
    let ip = str_at(svc, &["spec", "clusterIP"]);
    if !ip.is_empty() {
        return ip.to_owned();
    }
    array_at(svc, &["spec", "clusterIPs"])
        .first()
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("<none>")
        .to_owned()
}

/// The cells of one service.
pub(super) fn service_row(svc: &Value, ctx: &Ctx) -> Vec<Value> {
    vec![
        name(svc).into(),
        str_at(svc, &["spec", "type"]).into(),
        cluster_ip(svc).into(),
        service_external_ip(svc).into(),
        service_ports(svc).into(),
        age(svc, ctx),
        format_labels(svc, &["spec", "selector"]).into(),
    ]
}

// ---- config maps, secrets, service accounts ----

/// ConfigMap columns.
pub(super) static CONFIGMAP_COLUMNS: &[TableColumnDefinition] = &[
    name_col(0),
    col(
        "Data",
        "string",
        0,
        "Number of keys in data and binaryData.",
    ),
    AGE,
];

/// The cells of one config map.
pub(super) fn configmap_row(cm: &Value, ctx: &Ctx) -> Vec<Value> {
    let keys = map_len(cm, &["data"]) + map_len(cm, &["binaryData"]);
    vec![name(cm).into(), keys.into(), age(cm, ctx)]
}

/// Secret columns.
pub(super) static SECRET_COLUMNS: &[TableColumnDefinition] = &[
    name_col(0),
    col("Type", "string", 0, "The secret's type."),
    col("Data", "string", 0, "Number of keys in data."),
    AGE,
];

/// The cells of one secret.
pub(super) fn secret_row(secret: &Value, ctx: &Ctx) -> Vec<Value> {
    vec![
        name(secret).into(),
        str_at(secret, &["type"]).into(),
        map_len(secret, &["data"]).into(),
        age(secret, ctx),
    ]
}

/// ServiceAccount columns.
pub(super) static SERVICEACCOUNT_COLUMNS: &[TableColumnDefinition] = &[
    name_col(0),
    col(
        "Secrets",
        "string",
        0,
        "Number of secrets listed by the service account.",
    ),
    AGE,
];

/// The cells of one service account.
pub(super) fn serviceaccount_row(sa: &Value, ctx: &Ctx) -> Vec<Value> {
    vec![
        name(sa).into(),
        array_at(sa, &["secrets"]).len().into(),
        age(sa, ctx),
    ]
}

// ---- pod templates ----

/// PodTemplate columns (upstream prints no age for them).
pub(super) static PODTEMPLATE_COLUMNS: &[TableColumnDefinition] = &[
    name_col(0),
    col(
        "Containers",
        "string",
        0,
        "Names of the template's containers.",
    ),
    col(
        "Images",
        "string",
        0,
        "Images of the template's containers.",
    ),
    col("Pod Labels", "string", 0, "Labels of the template's pods."),
];

/// The cells of one pod template.
pub(super) fn podtemplate_row(pt: &Value, _ctx: &Ctx) -> Vec<Value> {
    let (names, images) = container_cells(pt, &["template", "spec", "containers"]);
    vec![
        name(pt).into(),
        names,
        images,
        format_labels(pt, &["template", "metadata", "labels"]).into(),
    ]
}

// ---- resource quotas ----

/// ResourceQuota columns.
pub(super) static QUOTA_COLUMNS: &[TableColumnDefinition] = &[
    name_col(0),
    col(
        "Request",
        "string",
        0,
        "Used out of hard limits for every resource other than limits.*.",
    ),
    col(
        "Limit",
        "string",
        0,
        "Used out of hard limits for the limits.* resources.",
    ),
    AGE,
];

/// The cells of one resource quota: `resource: used/hard` per resource of
/// `status.hard`, sorted by name, split into limits.* and the rest.
pub(super) fn quota_row(quota: &Value, ctx: &Ctx) -> Vec<Value> {
    let mut requests = Vec::new();
    let mut limits = Vec::new();
    let mut hard: Vec<(&String, &Value)> = object_at(quota, &["status", "hard"])
        .into_iter()
        .flatten()
        .collect();
    hard.sort_by(|a, b| a.0.cmp(b.0));
    for (resource, hard_qty) in hard {
        let used = quantity(get(quota, &["status", "used", resource.as_str()]));
        let entry = format!("{resource}: {used}/{}", quantity(Some(hard_qty)));
        let mut pieces = resource.split('.');
        let is_limit = pieces.next() == Some("limits") && pieces.next().is_some();
        if is_limit {
            limits.push(entry);
        } else {
            requests.push(entry);
        }
    }
    vec![
        name(quota).into(),
        requests.join(", ").into(),
        limits.join(", ").into(),
        age(quota, ctx),
    ]
}

// ---- persistent volumes and claims ----

/// PersistentVolume columns.
pub(super) static PV_COLUMNS: &[TableColumnDefinition] = &[
    name_col(0),
    col("Capacity", "string", 0, "The volume's storage capacity."),
    col(
        "Access Modes",
        "string",
        0,
        "Access modes: RWO, ROX, RWX, RWOP.",
    ),
    col(
        "Reclaim Policy",
        "string",
        0,
        "What happens to the volume when its claim is released.",
    ),
    col("Status", "string", 0, "The volume's phase."),
    col("Claim", "string", 0, "namespace/name of the bound claim."),
    col("StorageClass", "string", 0, "The volume's storage class."),
    col(
        "VolumeAttributesClass",
        "string",
        0,
        "The volume's attributes class.",
    ),
    col("Reason", "string", 0, "Why the volume is in its phase."),
    AGE,
    col("VolumeMode", "string", 1, "Filesystem or Block."),
];

const BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

/// The storage class of a volume or claim: the beta annotation wins over
/// `spec.storageClassName`.
fn storage_class(obj: &Value) -> &str {
    opt_str(obj, &["metadata", "annotations", BETA_STORAGE_CLASS])
        .unwrap_or_else(|| str_at(obj, &["spec", "storageClassName"]))
}

fn unset_or(v: Option<&str>) -> String {
    v.unwrap_or("<unset>").to_owned()
}

/// The cells of one persistent volume.
pub(super) fn pv_row(pv: &Value, ctx: &Ctx) -> Vec<Value> {
    let claim = match get(pv, &["spec", "claimRef"]).filter(|r| r.is_object()) {
        Some(r) => format!("{}/{}", str_at(r, &["namespace"]), str_at(r, &["name"])),
        None => String::new(),
    };
    let phase = if is_deleting(pv) {
        "Terminating"
    } else {
        str_at(pv, &["status", "phase"])
    };
    vec![
        name(pv).into(),
        quantity(get(pv, &["spec", "capacity", "storage"])).into(),
        access_modes(pv, &["spec", "accessModes"]).into(),
        str_at(pv, &["spec", "persistentVolumeReclaimPolicy"]).into(),
        phase.into(),
        claim.into(),
        storage_class(pv).into(),
        unset_or(opt_str(pv, &["spec", "volumeAttributesClassName"])).into(),
        str_at(pv, &["status", "reason"]).into(),
        age(pv, ctx),
        unset_or(opt_str(pv, &["spec", "volumeMode"])).into(),
    ]
}

/// PersistentVolumeClaim columns.
pub(super) static PVC_COLUMNS: &[TableColumnDefinition] = &[
    name_col(0),
    col("Status", "string", 0, "The claim's phase."),
    col("Volume", "string", 0, "The volume bound to the claim."),
    col(
        "Capacity",
        "string",
        0,
        "Storage capacity of the bound volume.",
    ),
    col(
        "Access Modes",
        "string",
        0,
        "Access modes of the bound volume: RWO, ROX, RWX, RWOP.",
    ),
    col("StorageClass", "string", 0, "The claim's storage class."),
    col(
        "VolumeAttributesClass",
        "string",
        0,
        "The claim's volume attributes class.",
    ),
    AGE,
    col("VolumeMode", "string", 1, "Filesystem or Block."),
];

/// The cells of one persistent volume claim.
pub(super) fn pvc_row(pvc: &Value, ctx: &Ctx) -> Vec<Value> {
    let phase = if is_deleting(pvc) {
        "Terminating"
    } else {
        str_at(pvc, &["status", "phase"])
    };
    let volume = str_at(pvc, &["spec", "volumeName"]);
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity(get(pvc, &["status", "capacity", "storage"])),
            access_modes(pvc, &["status", "accessModes"]),
        )
    };
    vec![
        name(pvc).into(),
        phase.into(),
        volume.into(),
        capacity.into(),
        modes.into(),
        storage_class(pvc).into(),
        unset_or(opt_str(pvc, &["spec", "volumeAttributesClassName"])).into(),
        age(pvc, ctx),
        unset_or(opt_str(pvc, &["spec", "volumeMode"])).into(),
    ]
}
