//! What NetworkPolicy enforcement needs from Pods, Namespaces and
//! NetworkPolicies, extracted once.
//!
//! Nothing here fails: a pod without an IPv4 address, a host-network pod, a
//! finished pod are not part of the pod network and are left out; a policy
//! whose pod selector cannot be read selects nothing; a peer or port that
//! cannot be read matches nothing (the safe side: traffic it would have
//! allowed stays denied). The API server validates these fields, so this is
//! for objects that slipped past it.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use skiff_api::selector::labels::{Selector, from_label_selector};

use crate::model::Protocol;
use crate::rules::Cidr;

/// Labels of an object.
pub type Labels = BTreeMap<String, String>;

/// One pod on the pod network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: Labels,
    /// `status.podIP` (IPv4).
    pub ip: Ipv4Addr,
    /// `spec.nodeName`.
    pub node: Option<String>,
    /// Named container ports: (name, protocol, number).
    pub named_ports: Vec<(String, Protocol, u16)>,
}

impl PodInfo {
    /// The number of the container port `name` with `protocol`, if any.
    pub fn named_port(&self, name: &str, protocol: Protocol) -> Option<u16> {
        self.named_ports
            .iter()
            .find(|(n, p, _)| n == name && *p == protocol)
            .map(|(_, _, port)| *port)
    }
}

/// The pods on the pod network, sorted by namespace and name.
pub fn pods(pods: &[&Pod]) -> Vec<PodInfo> {
    let mut out: Vec<PodInfo> = pods.iter().filter_map(|p| pod(p)).collect();
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    out
}

fn pod(pod: &Pod) -> Option<PodInfo> {
    let spec = pod.spec.as_ref()?;
    if spec.host_network == Some(true) {
        return None;
    }
    let status = pod.status.as_ref()?;
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return None;
    }
    let ip: Ipv4Addr = status.pod_ip.as_deref()?.parse().ok()?;
    let mut named_ports = Vec::new();
    for container in spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
    {
        for port in container.ports.iter().flatten() {
            let (Some(name), Some(protocol), Ok(number)) = (
                port.name.as_ref(),
                Protocol::parse(port.protocol.as_deref()),
                u16::try_from(port.container_port),
            ) else {
                continue;
            };
            named_ports.push((name.clone(), protocol, number));
        }
    }
    Some(PodInfo {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        labels: pod.metadata.labels.clone().unwrap_or_default(),
        ip,
        node: spec.node_name.clone(),
        named_ports,
    })
}

/// Labels of every Namespace, by name.
pub fn namespaces(namespaces: &[&Namespace]) -> BTreeMap<String, Labels> {
    namespaces
        .iter()
        .filter_map(|ns| {
            Some((
                ns.metadata.name.clone()?,
                ns.metadata.labels.clone().unwrap_or_default(),
            ))
        })
        .collect()
}

/// Where a peer's pods may live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamespaceScope {
    /// The policy's own namespace (no `namespaceSelector`).
    Own(String),
    /// Namespaces whose labels match.
    Matching(Selector),
}

/// One `from`/`to` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// Pods matching `pods` in namespaces of `namespaces` (podSelector,
    /// namespaceSelector, or both ANDed).
    Pods {
        /// Which namespaces.
        namespaces: NamespaceScope,
        /// Which pods in them.
        pods: Selector,
    },
    /// `ipBlock`: `cidr` without the `except` ranges.
    IpBlock {
        /// The block.
        cidr: Cidr,
        /// Holes in it.
        except: Vec<Cidr>,
    },
    /// A peer that cannot be read: matches nothing.
    Nothing,
}

/// The destination port of one `ports` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortMatch {
    /// Every port of the protocol.
    Any,
    /// `port` … `end` (equal for a single port).
    Range(u16, u16),
    /// A container port name, resolved per destination pod.
    Named(String),
}

/// One `ports` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// Protocol (TCP when absent).
    pub protocol: Protocol,
    /// Which ports.
    pub port: PortMatch,
}

/// One ingress or egress rule: traffic matching any peer (all when `None`)
/// on any port (all when `None`) is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    /// Peers; `None`: every source (ingress) or destination (egress).
    pub peers: Option<Vec<Peer>>,
    /// Ports; `None`: every port and protocol. Entries that cannot be read
    /// are left out (an empty list then matches nothing).
    pub ports: Option<Vec<PortSpec>>,
}

/// One NetworkPolicy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInfo {
    /// Namespace: it selects pods there only.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `spec.podSelector`.
    pub pod_selector: Selector,
    /// Ingress rules when the policy has the Ingress type (an empty list
    /// denies all ingress), `None` otherwise.
    pub ingress: Option<Vec<RuleInfo>>,
    /// The same for egress.
    pub egress: Option<Vec<RuleInfo>>,
}

impl PolicyInfo {
    /// `namespace/name`: unique, and a valid part of an nftables name.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Whether the policy selects `pod`.
    pub fn selects(&self, pod: &PodInfo) -> bool {
        pod.namespace == self.namespace && self.pod_selector.matches(&pod.labels)
    }
}

/// The policies, sorted by namespace and name.
pub fn policies(policies: &[&NetworkPolicy]) -> Vec<PolicyInfo> {
    let mut out: Vec<PolicyInfo> = policies.iter().filter_map(|p| policy(p)).collect();
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    out
}

fn policy(policy: &NetworkPolicy) -> Option<PolicyInfo> {
    let namespace = policy.metadata.namespace.clone()?;
    let name = policy.metadata.name.clone()?;
    // An absent spec defaults as an empty one: deny all ingress.
    let empty = NetworkPolicySpec::default();
    let spec = policy.spec.as_ref().unwrap_or(&empty);
    // Absent is the empty selector: every pod of the namespace.
    let everything = LabelSelector::default();
    let pod_selector =
        match from_label_selector(Some(spec.pod_selector.as_ref().unwrap_or(&everything))) {
            Ok(selector) => selector,
            Err(err) => {
                tracing::warn!(policy = %format!("{namespace}/{name}"), error = %err,
                "NetworkPolicy podSelector unreadable: the policy selects nothing");
                Selector::nothing()
            }
        };
    let egress_rules = spec.egress.as_deref().unwrap_or(&[]);
    // Upstream's defaults: Ingress always, Egress when there are egress rules.
    let (ingress_type, egress_type) = match &spec.policy_types {
        Some(types) => (
            types.iter().any(|t| t == "Ingress"),
            types.iter().any(|t| t == "Egress"),
        ),
        None => (true, !egress_rules.is_empty()),
    };
    let rules = |rules: &[NetworkPolicyRuleRef<'_>]| -> Vec<RuleInfo> {
        rules
            .iter()
            .map(|r| RuleInfo {
                peers: r
                    .peers
                    .filter(|p| !p.is_empty())
                    .map(|peers| peers.iter().map(|p| peer(p, &namespace)).collect()),
                ports: r
                    .ports
                    .filter(|p| !p.is_empty())
                    .map(|ports| ports.iter().filter_map(port).collect()),
            })
            .collect()
    };
    let ingress: Vec<NetworkPolicyRuleRef<'_>> = spec
        .ingress
        .iter()
        .flatten()
        .map(|r| NetworkPolicyRuleRef {
            peers: r.from.as_deref(),
            ports: r.ports.as_deref(),
        })
        .collect();
    let egress: Vec<NetworkPolicyRuleRef<'_>> = egress_rules
        .iter()
        .map(|r| NetworkPolicyRuleRef {
            peers: r.to.as_deref(),
            ports: r.ports.as_deref(),
        })
        .collect();
    Some(PolicyInfo {
        ingress: ingress_type.then(|| rules(&ingress)),
        egress: egress_type.then(|| rules(&egress)),
        namespace,
        name,
        pod_selector,
    })
}

/// An ingress or egress rule seen the same way.
struct NetworkPolicyRuleRef<'a> {
    peers: Option<&'a [NetworkPolicyPeer]>,
    ports: Option<&'a [NetworkPolicyPort]>,
}

fn selector(selector: &LabelSelector) -> Option<Selector> {
    from_label_selector(Some(selector)).ok()
}

fn peer(peer: &NetworkPolicyPeer, namespace: &str) -> Peer {
    if let Some(block) = &peer.ip_block {
        if peer.pod_selector.is_some() || peer.namespace_selector.is_some() {
            return Peer::Nothing;
        }
        let Ok(cidr) = block.cidr.parse::<Cidr>() else {
            return Peer::Nothing;
        };
        let mut except = Vec::new();
        for hole in block.except.iter().flatten() {
            match hole.parse::<Cidr>() {
                Ok(hole) => except.push(hole),
                // An unreadable hole could be anything: allow nothing.
                Err(_) => return Peer::Nothing,
            }
        }
        return Peer::IpBlock { cidr, except };
    }
    let namespaces = match &peer.namespace_selector {
        None => NamespaceScope::Own(namespace.to_string()),
        Some(sel) => match selector(sel) {
            Some(sel) => NamespaceScope::Matching(sel),
            None => return Peer::Nothing,
        },
    };
    let pods = match &peer.pod_selector {
        None if matches!(namespaces, NamespaceScope::Own(_)) => return Peer::Nothing,
        None => Selector::everything(),
        Some(sel) => match selector(sel) {
            Some(sel) => sel,
            None => return Peer::Nothing,
        },
    };
    Peer::Pods { namespaces, pods }
}

fn port(port: &NetworkPolicyPort) -> Option<PortSpec> {
    let protocol = Protocol::parse(port.protocol.as_deref())?;
    let port = match &port.port {
        None => PortMatch::Any,
        Some(IntOrString::Int(n)) => {
            let start = u16::try_from(*n).ok().filter(|n| *n > 0)?;
            let end = match port.end_port {
                Some(end) => u16::try_from(end).ok().filter(|e| *e >= start)?,
                None => start,
            };
            PortMatch::Range(start, end)
        }
        Some(IntOrString::String(name)) => match name.parse::<u16>() {
            // "80" as a string is a number to the API's validation too.
            Ok(n) if n > 0 => PortMatch::Range(n, n),
            _ if valid_port_name(name) => PortMatch::Named(name.clone()),
            _ => return None,
        },
    };
    Some(PortSpec { protocol, port })
}

/// An IANA service name as container ports use them (written into nft
/// scripts only as resolved numbers, but checked all the same).
fn valid_port_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}
