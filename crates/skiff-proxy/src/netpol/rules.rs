//! NetworkPolicies to an nftables [`Ruleset`]: the pure core of the
//! enforcer.
//!
//! ```text
//! forward (filter, priority 0) ─ established/related: accept ─ jump egress ─ jump ingress
//! input   (filter, priority 0) ─ established/related: accept ─ jump egress   (pod → this host)
//! egress  : source not in @egress-isolated → return (allowed)
//!           one rule per (policy, rule, port entry): ip saddr @pods-<policy> [ip daddr @out-<policy>__<i>] [port] return
//!           drop
//! ingress : destination not in @ingress-isolated → return; the host's own addresses → return (probes)
//!           one rule per (policy, rule, port entry): ip daddr @pods-<policy> [ip saddr @in-<policy>__<i>] [port] return
//!           drop
//! ```
//!
//! Pod addresses live in sets (the pods a policy selects on this node, the
//! peers of each rule as an interval set that also holds the ipBlocks), so
//! the number of rules follows the policies, not the pods. Named ports
//! resolve per destination pod into a set of `address . protocol . port`.
//! Forwarded packets reach the hooks after the proxy's DNAT (prerouting), so
//! policies see the destination pod, not the Service address; pods on one
//! node talk over the bridge, whose traffic passes these `ip` hooks because
//! the pod network turns on bridge-nf-call-iptables (and the bridge's own
//! nf_call_iptables) — see skiff-runtime's network.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::rules::valid_identifier_part;
use crate::ruleset::{Builder as _, Ruleset, SetKind};

use super::model::{Labels, NamespaceScope, Peer, PodInfo, PolicyInfo, PortMatch, RuleInfo};

/// Default table name.
pub const DEFAULT_TABLE: &str = "skiff-netpol";
/// Base chain of forwarded packets (pod to pod, pod to elsewhere).
pub const FORWARD: &str = "forward";
/// Base chain of packets to this host (pod to host).
pub const INPUT: &str = "input";
/// Egress checks of local pods.
pub const EGRESS: &str = "egress";
/// Ingress checks of local pods.
pub const INGRESS: &str = "ingress";
/// Local pods some policy isolates for ingress.
pub const INGRESS_ISOLATED: &str = "ingress-isolated";
/// Local pods some policy isolates for egress.
pub const EGRESS_ISOLATED: &str = "egress-isolated";

/// What the rules depend on besides the API objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetpolConfig {
    /// nftables table (family `ip`).
    pub table: String,
    /// This node: policies are enforced for pods with this `nodeName`.
    pub node_name: String,
}

#[derive(Debug, Clone, Copy)]
enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    fn chain(self) -> &'static str {
        match self {
            Self::Ingress => INGRESS,
            Self::Egress => EGRESS,
        }
    }
    fn isolated(self) -> &'static str {
        match self {
            Self::Ingress => INGRESS_ISOLATED,
            Self::Egress => EGRESS_ISOLATED,
        }
    }
    /// The selected pod's address field, and the peer's.
    fn fields(self) -> (&'static str, &'static str) {
        match self {
            Self::Ingress => ("daddr", "saddr"),
            Self::Egress => ("saddr", "daddr"),
        }
    }
}

/// The set of the local pods `policy` selects.
pub fn pods_set(policy_id: &str) -> String {
    format!("pods-{policy_id}")
}

/// The peer set of rule `index` of a policy.
pub fn peers_set(ingress: bool, policy_id: &str, index: usize) -> String {
    let tag = if ingress { "in" } else { "out" };
    format!("{tag}-{policy_id}__{index}")
}

/// The named-port set of rule `index` of a policy.
pub fn named_ports_set(ingress: bool, policy_id: &str, index: usize) -> String {
    format!("{}-ports", peers_set(ingress, policy_id, index))
}

/// The ruleset for `policies` over `pods` (every pod of the cluster: peers
/// may live on other nodes) and the `namespaces`' labels.
pub fn compute(
    config: &NetpolConfig,
    policies: &[PolicyInfo],
    pods: &[PodInfo],
    namespaces: &BTreeMap<String, Labels>,
) -> Ruleset {
    let mut rs = Ruleset::new(&config.table);
    base(&mut rs);
    let local: Vec<&PodInfo> = pods
        .iter()
        .filter(|p| p.node.as_deref() == Some(config.node_name.as_str()))
        .collect();
    for policy in policies {
        let id = policy.id();
        if !valid_identifier_part(&id) {
            tracing::warn!(policy = %id, "NetworkPolicy name unusable in nftables; skipped");
            continue;
        }
        let targets: Vec<&PodInfo> = local
            .iter()
            .copied()
            .filter(|p| policy.selects(p))
            .collect();
        if targets.is_empty() {
            continue;
        }
        let set = pods_set(&id);
        rs.declare_set(&set, SetKind::Set, "type ipv4_addr;", false);
        for pod in &targets {
            rs.element(&set, pod.ip.to_string(), None);
        }
        for (direction, rules) in [
            (Direction::Ingress, &policy.ingress),
            (Direction::Egress, &policy.egress),
        ] {
            let Some(rules) = rules else { continue };
            for pod in &targets {
                rs.element(direction.isolated(), pod.ip.to_string(), None);
            }
            for (index, rule) in rules.iter().enumerate() {
                let ctx = RuleContext {
                    direction,
                    id: &id,
                    index,
                    targets: &targets,
                    pods,
                    namespaces,
                };
                ctx.add(&mut rs, rule);
            }
        }
    }
    rs.rule(EGRESS, "drop");
    rs.rule(INGRESS, "drop");
    rs
}

fn base(rs: &mut Ruleset) {
    rs.declare_set(INGRESS_ISOLATED, SetKind::Set, "type ipv4_addr;", false);
    rs.declare_set(EGRESS_ISOLATED, SetKind::Set, "type ipv4_addr;", false);
    // Priority 0: after the proxy's DNAT (prerouting) and its endpoint
    // checks (-10), so the destination is the pod.
    rs.chain(FORWARD).hook = Some("type filter hook forward priority 0; policy accept;".into());
    rs.chain(INPUT).hook = Some("type filter hook input priority 0; policy accept;".into());
    for chain in [FORWARD, INPUT] {
        rs.rule(chain, "ct state established,related accept");
        rs.rule(chain, format!("jump {EGRESS}"));
    }
    rs.rule(FORWARD, format!("jump {INGRESS}"));
    rs.rule(EGRESS, format!("ip saddr != @{EGRESS_ISOLATED} return"));
    rs.rule(INGRESS, format!("ip daddr != @{INGRESS_ISOLATED} return"));
    // The node itself may always reach its pods (kubelet probes), as
    // upstream's policy plugins allow.
    rs.rule(INGRESS, "fib saddr type local return");
}

struct RuleContext<'a> {
    direction: Direction,
    id: &'a str,
    index: usize,
    /// Local pods the policy selects.
    targets: &'a [&'a PodInfo],
    pods: &'a [PodInfo],
    namespaces: &'a BTreeMap<String, Labels>,
}

impl RuleContext<'_> {
    fn add(&self, rs: &mut Ruleset, rule: &RuleInfo) {
        let ingress = matches!(self.direction, Direction::Ingress);
        let (own, other) = self.direction.fields();
        let chain = self.direction.chain();
        let mut prefix = format!("ip {own} @{}", pods_set(self.id));
        if let Some(peers) = &rule.peers {
            let set = peers_set(ingress, self.id, self.index);
            rs.declare_set(&set, SetKind::Set, "type ipv4_addr; flags interval;", false);
            for (first, last) in self.peer_ranges(peers) {
                rs.element(&set, range_element(first, last), None);
            }
            prefix.push_str(&format!(" ip {other} @{set}"));
        }
        let Some(ports) = &rule.ports else {
            rs.rule(chain, format!("{prefix} return"));
            return;
        };
        let mut named = Vec::new();
        for spec in ports {
            let proto = spec.protocol.nft();
            match &spec.port {
                PortMatch::Any => rs.rule(chain, format!("{prefix} meta l4proto {proto} return")),
                PortMatch::Range(first, last) if first == last => rs.rule(
                    chain,
                    format!("{prefix} meta l4proto {proto} th dport {first} return"),
                ),
                PortMatch::Range(first, last) => rs.rule(
                    chain,
                    format!("{prefix} meta l4proto {proto} th dport {first}-{last} return"),
                ),
                PortMatch::Named(name) => named.push((name.as_str(), spec.protocol)),
            }
        }
        if named.is_empty() {
            return;
        }
        // A named port means whatever number the destination pod gives it.
        let set = named_ports_set(ingress, self.id, self.index);
        rs.declare_set(
            &set,
            SetKind::Set,
            "type ipv4_addr . inet_proto . inet_service;",
            false,
        );
        let destinations: Box<dyn Iterator<Item = &PodInfo>> = match self.direction {
            Direction::Ingress => Box::new(self.targets.iter().copied()),
            Direction::Egress => Box::new(self.pods.iter()),
        };
        for pod in destinations {
            for (name, protocol) in &named {
                if let Some(number) = pod.named_port(name, *protocol) {
                    rs.element(&set, format!("{} . {protocol} . {number}", pod.ip), None);
                }
            }
        }
        rs.rule(
            chain,
            format!("{prefix} ip daddr . meta l4proto . th dport @{set} return"),
        );
    }

    /// The peers' addresses as sorted, disjoint, non-adjacent ranges.
    fn peer_ranges(&self, peers: &[Peer]) -> Vec<(u32, u32)> {
        let mut ranges = Vec::new();
        for peer in peers {
            match peer {
                Peer::Pods { namespaces, pods } => {
                    for pod in self.pods {
                        let in_scope = match namespaces {
                            NamespaceScope::Own(ns) => pod.namespace == *ns,
                            NamespaceScope::Matching(selector) => self
                                .namespaces
                                .get(&pod.namespace)
                                .is_some_and(|labels| selector.matches(labels)),
                        };
                        if in_scope && pods.matches(&pod.labels) {
                            let ip = u32::from(pod.ip);
                            ranges.push((ip, ip));
                        }
                    }
                }
                Peer::IpBlock { cidr, except } => {
                    let holes: Vec<(u32, u32)> = except.iter().map(|c| c.range()).collect();
                    ranges.extend(subtract(cidr.range(), &holes));
                }
                Peer::Nothing => {}
            }
        }
        merge(ranges)
    }
}

/// `range` without `holes`.
fn subtract(range: (u32, u32), holes: &[(u32, u32)]) -> Vec<(u32, u32)> {
    let mut out = vec![range];
    for &(hole_first, hole_last) in holes {
        let mut next = Vec::with_capacity(out.len() + 1);
        for (first, last) in out {
            if hole_last < first || hole_first > last {
                next.push((first, last));
                continue;
            }
            if hole_first > first {
                next.push((first, hole_first - 1));
            }
            if hole_last < last {
                next.push((hole_last + 1, last));
            }
        }
        out = next;
    }
    out
}

/// Sorted, with overlapping and adjacent ranges joined (nft refuses
/// overlapping elements in an interval set).
fn merge(mut ranges: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    ranges.sort_unstable();
    let mut out: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
    for (first, last) in ranges {
        match out.last_mut() {
            Some(prev) if first <= prev.1.saturating_add(1) => prev.1 = prev.1.max(last),
            _ => out.push((first, last)),
        }
    }
    out
}

fn range_element(first: u32, last: u32) -> String {
    if first == last {
        Ipv4Addr::from(first).to_string()
    } else {
        format!("{}-{}", Ipv4Addr::from(first), Ipv4Addr::from(last))
    }
}
