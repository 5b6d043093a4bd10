//! The objects a hollow node registers: its Node (as a kubelet registers
//! it) and its Lease, and the address plan (podCIDRs, node IPs).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus, NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use crate::SimError;

/// Namespace of node Leases.
pub const LEASE_NAMESPACE: &str = skiff_kubelet::node::LEASE_NAMESPACE;
/// Lease duration the kubelet writes (`nodeLeaseDurationSeconds`).
pub const LEASE_DURATION_SECONDS: i32 = skiff_kubelet::node::LEASE_DURATION_SECONDS;
/// Label every hollow node carries (`type=hollow`).
pub const HOLLOW_LABEL: (&str, &str) = ("type", "hollow");

/// An IPv4 network split into per-node blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network address.
    pub base: Ipv4Addr,
    /// Its prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`.
    pub fn parse(s: &str) -> Result<Cidr, SimError> {
        let bad = || SimError::Config(format!("{s:?} is not an IPv4 CIDR"));
        let (ip, prefix) = s.split_once('/').ok_or_else(bad)?;
        let base: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if prefix > 32 {
            return Err(bad());
        }
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        Ok(Cidr {
            base: Ipv4Addr::from(u32::from(base) & mask),
            prefix,
        })
    }

    /// How many /`node_prefix` blocks it holds.
    pub fn blocks(&self, node_prefix: u8) -> u64 {
        if node_prefix < self.prefix {
            return 0;
        }
        1u64 << (node_prefix - self.prefix)
    }

    /// The `i`th /`node_prefix` block.
    pub fn block(&self, node_prefix: u8, i: u64) -> Cidr {
        let size = 1u64 << (32 - u32::from(node_prefix));
        let start = u64::from(u32::from(self.base)) + i * size;
        Cidr {
            base: Ipv4Addr::from(u32::try_from(start).unwrap_or(u32::MAX)),
            prefix: node_prefix,
        }
    }

    /// The address `offset` after the network address.
    pub fn nth(&self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base).wrapping_add(offset))
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0);
        u32::from(ip) & mask == u32::from(self.base)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

/// Parses a taint as kubectl writes it: `key=value:Effect` or `key:Effect`.
pub fn parse_taint(s: &str) -> Result<Taint, SimError> {
    let bad = |why: &str| SimError::Config(format!("taint {s:?}: {why}"));
    let (kv, effect) = s
        .rsplit_once(':')
        .ok_or_else(|| bad("expected key=value:Effect"))?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return Err(bad(
            "effect must be one of NoSchedule, PreferNoSchedule, NoExecute",
        ));
    }
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v.to_owned())),
        None => (kv, None),
    };
    if key.is_empty() {
        return Err(bad("empty key"));
    }
    Ok(Taint {
        key: key.to_owned(),
        value,
        effect: effect.to_owned(),
        time_added: None,
    })
}

/// What every hollow node looks like.
#[derive(Debug, Clone)]
pub(crate) struct NodeTemplate {
    pub cpu: String,
    pub memory: String,
    pub pods: u32,
    pub zones: usize,
    pub taints: Vec<Taint>,
}

pub(crate) fn now() -> Time {
    Time(Timestamp::now())
}

/// A healthy node's conditions, as the real kubelet reports them.
pub(crate) fn ready_conditions(now: &Time) -> Vec<NodeCondition> {
    skiff_kubelet::node::conditions(&skiff_kubelet::node::NodeHealth::default(), &[], now)
}

/// The status a hollow node reports.
pub(crate) fn node_status(t: &NodeTemplate, name: &str, ip: Ipv4Addr) -> NodeStatus {
    let resources: BTreeMap<String, Quantity> = [
        ("cpu", t.cpu.clone()),
        ("memory", t.memory.clone()),
        ("pods", t.pods.to_string()),
        ("ephemeral-storage", "100Gi".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), Quantity(v)))
    .collect();
    let now = now();
    NodeStatus {
        capacity: Some(resources.clone()),
        allocatable: Some(resources),
        conditions: Some(ready_conditions(&now)),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".to_owned(),
                address: ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".to_owned(),
                address: name.to_owned(),
            },
        ]),
        node_info: Some(NodeSystemInfo {
            architecture: "amd64".to_owned(),
            operating_system: "linux".to_owned(),
            kubelet_version: "v1.33.0".to_owned(),
            kube_proxy_version: "v1.33.0".to_owned(),
            container_runtime_version: "skiff-sim://0.1.0".to_owned(),
            kernel_version: "hollow".to_owned(),
            os_image: "hollow node (skiff-sim)".to_owned(),
            machine_id: name.to_owned(),
            system_uuid: name.to_owned(),
            boot_id: name.to_owned(),
            ..NodeSystemInfo::default()
        }),
        ..NodeStatus::default()
    }
}

/// The Node hollow node number `index` registers.
pub(crate) fn node(
    t: &NodeTemplate,
    name: &str,
    index: usize,
    pod_cidr: Cidr,
    ip: Ipv4Addr,
) -> Node {
    let zone = format!("zone-{}", index % t.zones.max(1));
    let labels: BTreeMap<String, String> = [
        ("kubernetes.io/hostname", name),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", "amd64"),
        ("topology.kubernetes.io/zone", zone.as_str()),
        HOLLOW_LABEL,
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: Some(pod_cidr.to_string()),
            pod_cidrs: Some(vec![pod_cidr.to_string()]),
            taints: (!t.taints.is_empty()).then(|| t.taints.clone()),
            ..NodeSpec::default()
        }),
        status: Some(node_status(t, name, ip)),
    }
}

/// The node's Lease, owned by the Node (so it goes with it), as the real
/// kubelet makes it.
pub(crate) fn lease(name: &str, node_uid: &str) -> Lease {
    skiff_kubelet::node::lease(name, (!node_uid.is_empty()).then_some(node_uid))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn cidr_blocks() {
        let c = Cidr::parse("10.42.7.9/16").unwrap();
        assert_eq!(c.to_string(), "10.42.0.0/16");
        assert_eq!(c.blocks(24), 256);
        assert_eq!(c.block(24, 0).to_string(), "10.42.0.0/24");
        assert_eq!(c.block(24, 255).to_string(), "10.42.255.0/24");
        let b = c.block(24, 3);
        assert!(b.contains("10.42.3.200".parse().unwrap()));
        assert!(!b.contains("10.42.4.1".parse().unwrap()));
        assert_eq!(b.nth(2).to_string(), "10.42.3.2");
        for bad in ["10.42.0.0", "10.42.0.0/33", "x/8"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn taints_parse_as_kubectl_writes_them() {
        let t = parse_taint("dedicated=gpu:NoSchedule").unwrap();
        assert_eq!(
            (t.key.as_str(), t.value.as_deref(), t.effect.as_str()),
            ("dedicated", Some("gpu"), "NoSchedule")
        );
        let t = parse_taint("spot:PreferNoSchedule").unwrap();
        assert_eq!(
            (t.key.as_str(), t.value, t.effect.as_str()),
            ("spot", None, "PreferNoSchedule")
        );
        for bad in ["k=v", "k=v:Sometimes", "=v:NoSchedule"] {
            assert!(parse_taint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn nodes_spread_over_zones() {
        let t = NodeTemplate {
            cpu: "4".into(),
            memory: "16Gi".into(),
            pods: 110,
            zones: 3,
            taints: vec![],
        };
        let cidr = Cidr::parse("10.42.0.0/24").unwrap();
        let zones: Vec<String> = (0..4)
            .map(|i| {
                let n = node(&t, "n", i, cidr, Ipv4Addr::LOCALHOST);
                n.metadata.labels.unwrap()["topology.kubernetes.io/zone"].clone()
            })
            .collect();
        assert_eq!(zones, ["zone-0", "zone-1", "zone-2", "zone-0"]);
        let n = node(&t, "n", 0, cidr, Ipv4Addr::LOCALHOST);
        let cap = n.status.unwrap().capacity.unwrap();
        assert_eq!(cap["pods"].0, "110");
        assert_eq!(cap["memory"].0, "16Gi");
    }
}
