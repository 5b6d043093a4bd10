//! The kubelet's Node: registration, the Lease heartbeat in
//! `kube-node-lease` every 10 s, and status updates (conditions, capacity,
//! images, addresses) when they change or every 5 minutes, as upstream's
//! `kubelet_node_status.go` and `nodelease` controller do.

pub mod host;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    ContainerImage, DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints,
    NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};

use host::HostCapacity;

/// Namespace of node Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// The Lease's duration (upstream's default `nodeLeaseDurationSeconds`).
pub const LEASE_DURATION_SECONDS: i32 = 40;
/// How often the Lease is renewed.
pub const LEASE_RENEW_INTERVAL: Duration = Duration::from_secs(10);
/// How often node status is computed.
pub const STATUS_UPDATE_INTERVAL: Duration = Duration::from_secs(10);
/// The longest the kubelet goes without writing status even when nothing changed.
pub const STATUS_REPORT_INTERVAL: Duration = Duration::from_secs(300);
/// Images listed in `status.images` at most (upstream's `nodeStatusMaxImages`).
pub const MAX_IMAGES: usize = 50;

/// The kubelet version the Node reports (the API we serve).
pub const KUBELET_VERSION: &str = "v1.33.0";

/// How the Node is described.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    /// The Node's name.
    pub name: String,
    /// The address other nodes and the API server reach it at.
    pub internal_ip: IpAddr,
    /// The kubelet server's port (`status.daemonEndpoints`).
    pub kubelet_port: u16,
    /// `pods` capacity.
    pub max_pods: u32,
    /// Extra labels (`--node-labels`).
    pub labels: BTreeMap<String, String>,
}

/// What varies between status updates.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeHealth {
    /// `Err(message)` when the runtime or its network is not ready.
    pub runtime_ready: Result<(), String>,
    /// The runtime's `name://version`.
    pub runtime_version: String,
    /// Images the runtime holds (names, size).
    pub images: Vec<ContainerImage>,
    /// Memory / disk / PID pressure.
    pub memory_pressure: bool,
    /// Disk pressure.
    pub disk_pressure: bool,
    /// PID pressure.
    pub pid_pressure: bool,
}

impl Default for NodeHealth {
    fn default() -> Self {
        Self {
            runtime_ready: Ok(()),
            runtime_version: String::new(),
            images: Vec::new(),
            memory_pressure: false,
            disk_pressure: false,
            pid_pressure: false,
        }
    }
}

/// The labels every kubelet sets on its Node.
pub fn default_labels(name: &str) -> BTreeMap<String, String> {
    let arch = host::go_arch();
    [
        ("kubernetes.io/hostname", name),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", arch),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", arch),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn condition(
    type_: &str,
    ok: bool,
    reasons: (&str, &str, &str, &str),
    now: &Time,
) -> NodeCondition {
    // `ok` means the healthy status: Ready=True, or pressure=False.
    let (status, reason, message) = if ok {
        (
            if type_ == "Ready" { "True" } else { "False" },
            reasons.0,
            reasons.1,
        )
    } else {
        (
            if type_ == "Ready" { "False" } else { "True" },
            reasons.2,
            reasons.3,
        )
    };
    NodeCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    }
}

/// The node's conditions, carrying transition times over from `old` when a
/// condition's status did not change.
pub fn conditions(health: &NodeHealth, old: &[NodeCondition], now: &Time) -> Vec<NodeCondition> {
    let ready_message;
    let ready_reasons = match &health.runtime_ready {
        Ok(()) => ("KubeletReady", "kubelet is posting ready status", "", ""),
        Err(m) => {
            ready_message = format!("container runtime network not ready: {m}");
            ("", "", "KubeletNotReady", ready_message.as_str())
        }
    };
    let mut out = vec![
        condition(
            "MemoryPressure",
            !health.memory_pressure,
            (
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
            ),
            now,
        ),
        condition(
            "DiskPressure",
            !health.disk_pressure,
            (
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
                "KubeletHasDiskPressure",
                "kubelet has disk pressure",
            ),
            now,
        ),
        condition(
            "PIDPressure",
            !health.pid_pressure,
            (
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
                "KubeletHasInsufficientPID",
                "kubelet has insufficient PID available",
            ),
            now,
        ),
        condition("Ready", health.runtime_ready.is_ok(), ready_reasons, now),
    ];
    for c in &mut out {
        if let Some(o) = old.iter().find(|o| o.type_ == c.type_)
            && o.status == c.status
            && o.last_transition_time.is_some()
        {
            c.last_transition_time = o.last_transition_time.clone();
        }
    }
    out
}

/// The full status the kubelet reports.
pub fn node_status(
    id: &NodeIdentity,
    capacity: &HostCapacity,
    health: &NodeHealth,
    old: Option<&NodeStatus>,
    now: &Time,
) -> NodeStatus {
    let old_conditions = old
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    NodeStatus {
        capacity: Some(capacity.capacity(id.max_pods)),
        allocatable: Some(capacity.allocatable(id.max_pods)),
        conditions: Some(conditions(health, old_conditions, now)),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".to_owned(),
                address: id.internal_ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".to_owned(),
                address: id.name.clone(),
            },
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(id.kubelet_port),
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: host::go_arch().to_owned(),
            operating_system: "linux".to_owned(),
            kubelet_version: KUBELET_VERSION.to_owned(),
            kube_proxy_version: KUBELET_VERSION.to_owned(),
            container_runtime_version: health.runtime_version.clone(),
            kernel_version: host::kernel_version(),
            os_image: std::fs::read_to_string("/etc/os-release")
                .ok()
                .and_then(|s| host::os_image(&s))
                .unwrap_or_else(|| "Linux".to_owned()),
            machine_id: host::read_trimmed("/etc/machine-id"),
            system_uuid: host::read_trimmed("/sys/class/dmi/id/product_uuid"),
            boot_id: host::read_trimmed("/proc/sys/kernel/random/boot_id"),
            ..NodeSystemInfo::default()
        }),
        images: (!health.images.is_empty()).then(|| {
            let mut images = health.images.clone();
            // Biggest first, as upstream lists them.
            images.sort_by_key(|i| std::cmp::Reverse(i.size_bytes));
            images.truncate(MAX_IMAGES);
            images
        }),
        ..NodeStatus::default()
    }
}

/// Whether `new` differs from `old` in anything but heartbeat times.
pub fn status_changed(old: &NodeStatus, new: &NodeStatus) -> bool {
    let strip = |s: &NodeStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_heartbeat_time = None;
        }
        s
    };
    strip(old) != strip(new)
}

fn now() -> Time {
    Time(Timestamp::now())
}

/// Creates the Node, or takes over an existing one (a restart, or a node
/// object made by an administrator): labels the kubelet owns are set again.
pub async fn register(
    nodes: &Api<Node>,
    id: &NodeIdentity,
    capacity: &HostCapacity,
    health: &NodeHealth,
) -> Result<Node, kube::Error> {
    let mut labels = default_labels(&id.name);
    labels.extend(id.labels.clone());
    let node = Node {
        metadata: ObjectMeta {
            name: Some(id.name.clone()),
            labels: Some(labels.clone()),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(node_status(id, capacity, health, None, &now())),
    };
    match nodes.create(&PostParams::default(), &node).await {
        Ok(created) => {
            // Status on create is dropped by the registry; write it now.
            patch_status(nodes, &id.name, node.status.as_ref()).await?;
            Ok(created)
        }
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let patch = serde_json::json!({ "metadata": { "labels": labels } });
            nodes
                .patch(&id.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            patch_status(nodes, &id.name, node.status.as_ref()).await
        }
        Err(e) => Err(e),
    }
}

/// Writes `status` with a merge patch of the status subresource.
pub async fn patch_status(
    nodes: &Api<Node>,
    name: &str,
    status: Option<&NodeStatus>,
) -> Result<Node, kube::Error> {
    let patch = serde_json::json!({ "status": status });
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
}

/// The node's Lease, owned by the Node (so it goes with it).
pub fn lease(name: &str, node_uid: Option<&str>) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(LEASE_NAMESPACE.to_owned()),
            owner_references: node_uid.map(|uid| {
                vec![OwnerReference {
                    api_version: "v1".to_owned(),
                    kind: "Node".to_owned(),
                    name: name.to_owned(),
                    uid: uid.to_owned(),
                    ..OwnerReference::default()
                }]
            }),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(name.to_owned()),
            lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
            renew_time: Some(MicroTime(Timestamp::now())),
            ..LeaseSpec::default()
        }),
    }
}

/// Renews (or creates) the node's Lease once.
pub async fn renew_lease(
    leases: &Api<Lease>,
    name: &str,
    node_uid: Option<&str>,
) -> Result<(), kube::Error> {
    let patch = serde_json::json!({
        "spec": {
            "holderIdentity": name,
            "leaseDurationSeconds": LEASE_DURATION_SECONDS,
            "renewTime": MicroTime(Timestamp::now()),
        }
    });
    match leases
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => leases
            .create(&PostParams::default(), &lease(name, node_uid))
            .await
            .map(|_| ()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(ready: Result<(), String>) -> NodeHealth {
        NodeHealth {
            runtime_ready: ready,
            runtime_version: "skiff://0.1.0".into(),
            ..NodeHealth::default()
        }
    }

    #[test]
    fn conditions_report_upstream_reasons_and_keep_transition_times() {
        let t0 = Time(Timestamp::from_second(1_000).unwrap_or(Timestamp::UNIX_EPOCH));
        let t1 = Time(Timestamp::from_second(2_000).unwrap_or(Timestamp::UNIX_EPOCH));
        let first = conditions(&health(Err("no podCIDR".into())), &[], &t0);
        let ready = first
            .iter()
            .find(|c| c.type_ == "Ready")
            .cloned()
            .unwrap_or_default();
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason.as_deref(), Some("KubeletNotReady"));
        assert_eq!(
            ready.message.as_deref(),
            Some("container runtime network not ready: no podCIDR")
        );
        let mem = first
            .iter()
            .find(|c| c.type_ == "MemoryPressure")
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            (mem.status.as_str(), mem.reason.as_deref()),
            ("False", Some("KubeletHasSufficientMemory"))
        );

        // Ready flips: new transition time; pressure unchanged: old one kept.
        let second = conditions(&health(Ok(())), &first, &t1);
        let ready = second
            .iter()
            .find(|c| c.type_ == "Ready")
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("True", Some("KubeletReady"))
        );
        assert_eq!(ready.last_transition_time, Some(t1.clone()));
        let mem = second
            .iter()
            .find(|c| c.type_ == "MemoryPressure")
            .cloned()
            .unwrap_or_default();
        assert_eq!(mem.last_transition_time, Some(t0));
        assert_eq!(mem.last_heartbeat_time, Some(t1));
    }

    #[test]
    fn heartbeat_only_changes_are_not_status_changes() {
        let id = NodeIdentity {
            name: "n1".into(),
            internal_ip: "127.0.0.1"
                .parse()
                .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
            kubelet_port: 10250,
            max_pods: 110,
            labels: BTreeMap::new(),
        };
        let cap = HostCapacity {
            cpus: 2,
            memory_bytes: 1 << 30,
            ephemeral_storage_bytes: 1 << 30,
            pids: 1000,
        };
        let t0 = Time(Timestamp::from_second(1_000).unwrap_or(Timestamp::UNIX_EPOCH));
        let t1 = Time(Timestamp::from_second(1_010).unwrap_or(Timestamp::UNIX_EPOCH));
        let a = node_status(&id, &cap, &health(Ok(())), None, &t0);
        let b = node_status(&id, &cap, &health(Ok(())), Some(&a), &t1);
        assert!(!status_changed(&a, &b));
        let c = node_status(&id, &cap, &health(Err("x".into())), Some(&b), &t1);
        assert!(status_changed(&b, &c));
        assert_eq!(
            a.daemon_endpoints
                .and_then(|d| d.kubelet_endpoint)
                .map(|e| e.port),
            Some(10250)
        );
    }
}
