//! Where a workload's pods landed, read back after it ran: how evenly they
//! spread over the nodes and zones, whether any node holds more than it can
//! (cpu, memory, pod count), and whether any placement breaks the rule the
//! workload's pods ask for (zone skew, one per node, allowed zones). The
//! benchmark prints it next to the speed, so a faster scheduler that places
//! worse shows.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use skiff_api::quantity::Quantity;
use skiff_client::Lean;

use super::workloads::{INIT_NAMESPACE, MEASURED_NAMESPACE};

/// What the pods of a workload ask of their placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Nothing beyond fitting.
    Fit,
    /// Measured pods spread over `topology.kubernetes.io/zone` with at most
    /// this skew (DoNotSchedule).
    MaxZoneSkew(usize),
    /// At most one pod of the workload, init or measured, per node.
    OnePerNode,
    /// Measured pods only in these zones.
    InZones(&'static [&'static str]),
}

/// A node as the check reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeFacts {
    pub name: String,
    pub zone: String,
    pub cpu_milli: i64,
    pub memory: i64,
    pub pods: i64,
}

/// A pod as the check reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct PodFacts {
    pub node: String,
    /// A measured pod (not an init pod).
    pub measured: bool,
    pub cpu_milli: i64,
    pub memory: i64,
}

/// The summary printed in the table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// Fewest pods of the workload (init and measured) on any node.
    pub min_per_node: usize,
    /// Most pods of the workload on any node.
    pub max_per_node: usize,
    /// Measured pods per zone: most minus fewest, over every zone a node is in.
    pub zone_skew: usize,
    /// Nodes whose pods request more cpu, memory or pod slots than the node
    /// has allocatable.
    pub overcommitted_nodes: usize,
    /// Pods placed against the workload's [`Rule`]: beyond the allowed skew,
    /// beyond one per node, or outside the allowed zones.
    pub violations: usize,
    /// Pods bound to a node that is not registered.
    pub on_unknown_nodes: usize,
}

impl Placement {
    /// `ok`, or what is wrong: nodes over their allocatable, pods against
    /// the rule, pods on unregistered nodes.
    pub fn verdict(&self) -> String {
        let mut wrong = Vec::new();
        if self.overcommitted_nodes > 0 {
            wrong.push(format!("{} nodes overcommitted", self.overcommitted_nodes));
        }
        if self.violations > 0 {
            wrong.push(format!("{} pods against the rule", self.violations));
        }
        if self.on_unknown_nodes > 0 {
            wrong.push(format!("{} pods on unknown nodes", self.on_unknown_nodes));
        }
        if wrong.is_empty() {
            "ok".to_owned()
        } else {
            wrong.join(", ")
        }
    }
}

/// Summarises where `pods` sit on `nodes` under `rule`.
pub fn summarize(nodes: &[NodeFacts], pods: &[PodFacts], rule: Rule) -> Placement {
    let index: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    // Per node: pods, measured pods, cpu, memory.
    let mut load = vec![(0usize, 0usize, 0i64, 0i64); nodes.len()];
    let mut zones: BTreeMap<&str, usize> = nodes.iter().map(|n| (n.zone.as_str(), 0)).collect();
    let mut out = Placement::default();
    for p in pods {
        let Some(&i) = index.get(p.node.as_str()) else {
            out.on_unknown_nodes += 1;
            continue;
        };
        let l = &mut load[i];
        l.0 += 1;
        l.2 += p.cpu_milli;
        l.3 += p.memory;
        if p.measured {
            l.1 += 1;
            if let Some(z) = zones.get_mut(nodes[i].zone.as_str()) {
                *z += 1;
            }
        }
    }
    out.min_per_node = load.iter().map(|l| l.0).min().unwrap_or(0);
    out.max_per_node = load.iter().map(|l| l.0).max().unwrap_or(0);
    let (zmin, zmax) = zones
        .values()
        .fold((usize::MAX, 0), |(lo, hi), &c| (lo.min(c), hi.max(c)));
    out.zone_skew = zmax.saturating_sub(zmin.min(zmax));
    out.overcommitted_nodes = nodes
        .iter()
        .zip(&load)
        .filter(|(n, l)| {
            l.2 > n.cpu_milli || l.3 > n.memory || i64::try_from(l.0).unwrap_or(i64::MAX) > n.pods
        })
        .count();
    out.violations = match rule {
        Rule::Fit => 0,
        Rule::MaxZoneSkew(max) => out.zone_skew.saturating_sub(max),
        Rule::OnePerNode => load.iter().map(|l| l.0.saturating_sub(1)).sum(),
        Rule::InZones(allowed) => nodes
            .iter()
            .zip(&load)
            .filter(|(n, _)| !allowed.contains(&n.zone.as_str()))
            .map(|(_, l)| l.1)
            .sum(),
    };
    out
}

/// Reads the nodes and the workload's live pods from the API server (pages
/// of 5,000; outside the measured phase) and summarises them under `rule`.
/// Pods being deleted (preemption's victims) no longer count.
pub async fn observe(client: &kube::Client, rule: Rule) -> anyhow::Result<Placement> {
    let nodes: Vec<NodeFacts> = list_all(Api::<Lean<Node>>::all(client.clone()))
        .await
        .context("listing nodes")?
        .into_iter()
        .map(|Lean(n)| node_facts(&n))
        .collect();
    let mut pods = Vec::new();
    for (ns, measured) in [(INIT_NAMESPACE, false), (MEASURED_NAMESPACE, true)] {
        let api: Api<Lean<Pod>> = Api::namespaced(client.clone(), ns);
        for Lean(p) in list_all(api)
            .await
            .with_context(|| format!("listing pods in {ns}"))?
        {
            if p.metadata.deletion_timestamp.is_some() {
                continue;
            }
            if let Some(f) = pod_facts(&p, measured) {
                pods.push(f);
            }
        }
    }
    Ok(summarize(&nodes, &pods, rule))
}

async fn list_all<K>(api: Api<K>) -> anyhow::Result<Vec<K>>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut out = Vec::new();
    let mut params = ListParams::default().limit(5000);
    loop {
        let page = api.list(&params).await?;
        out.extend(page.items);
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(out),
        }
    }
}

fn quantity(
    map: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
    name: &str,
    milli: bool,
) -> i64 {
    map.and_then(|m| m.get(name))
        .and_then(|q| Quantity::parse(&q.0).ok())
        .map_or(0, |q| if milli { q.milli_value() } else { q.value() })
}

fn node_facts(n: &Node) -> NodeFacts {
    let status = n.status.as_ref();
    let alloc = status.and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()));
    NodeFacts {
        name: n.metadata.name.clone().unwrap_or_default(),
        zone: n
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("topology.kubernetes.io/zone"))
            .cloned()
            .unwrap_or_default(),
        cpu_milli: quantity(alloc, "cpu", true),
        memory: quantity(alloc, "memory", false),
        pods: quantity(alloc, "pods", false),
    }
}

/// A bound pod's facts (its containers' requests); `None` when unbound.
fn pod_facts(p: &Pod, measured: bool) -> Option<PodFacts> {
    let spec = p.spec.as_ref()?;
    let node = spec.node_name.clone().filter(|n| !n.is_empty())?;
    let (mut cpu_milli, mut memory) = (0, 0);
    for c in &spec.containers {
        let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref());
        cpu_milli += quantity(requests, "cpu", true);
        memory += quantity(requests, "memory", false);
    }
    Some(PodFacts {
        node,
        measured,
        cpu_milli,
        memory,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn nodes(n: usize, zones: usize) -> Vec<NodeFacts> {
        (0..n)
            .map(|i| NodeFacts {
                name: format!("n{i}"),
                zone: format!("zone-{}", i % zones),
                cpu_milli: 1000,
                memory: 1 << 30,
                pods: 3,
            })
            .collect()
    }

    fn pod(node: &str, measured: bool, cpu_milli: i64) -> PodFacts {
        PodFacts {
            node: node.to_owned(),
            measured,
            cpu_milli,
            memory: 1 << 20,
        }
    }

    #[test]
    fn spread_and_zone_skew_count_every_node_and_zone() {
        let ns = nodes(4, 2);
        // n0 (zone-0): 2 pods, n1 (zone-1): 1, n2 (zone-0): 1, n3 (zone-1): 0.
        let pods = [
            pod("n0", true, 100),
            pod("n0", false, 100),
            pod("n1", true, 100),
            pod("n2", true, 100),
        ];
        let p = summarize(&ns, &pods, Rule::Fit);
        assert_eq!((p.min_per_node, p.max_per_node), (0, 2));
        // Measured: zone-0 has 2 (n0, n2), zone-1 has 1.
        assert_eq!(p.zone_skew, 1);
        assert_eq!(
            (p.overcommitted_nodes, p.violations, p.on_unknown_nodes),
            (0, 0, 0)
        );
        // A zone without any measured pod counts as zero.
        let p = summarize(
            &nodes(3, 3),
            &[pod("n0", true, 1), pod("n0", true, 1)],
            Rule::Fit,
        );
        assert_eq!(p.zone_skew, 2);
    }

    #[test]
    fn overcommitted_nodes_by_cpu_memory_or_pod_count() {
        let ns = nodes(3, 1);
        let mut pods = vec![pod("n0", true, 600), pod("n0", true, 600)]; // cpu
        pods.extend((0..4).map(|_| pod("n1", true, 1))); // pod slots
        pods.push(PodFacts {
            memory: 2 << 30,
            ..pod("n2", true, 1)
        }); // memory
        let p = summarize(&ns, &pods, Rule::Fit);
        assert_eq!(p.overcommitted_nodes, 3);
        let p = summarize(&ns, &[pod("n0", true, 1000)], Rule::Fit);
        assert_eq!(p.overcommitted_nodes, 0, "a node exactly full is not over");
    }

    #[test]
    fn rules_count_the_pods_placed_against_them() {
        let ns = nodes(4, 2);
        let pods = [
            pod("n0", true, 1),
            pod("n0", false, 1),
            pod("n0", true, 1),
            pod("n2", true, 1),
            pod("n1", true, 1),
        ];
        // zone-0: 3 measured, zone-1: 1 → skew 2.
        assert_eq!(summarize(&ns, &pods, Rule::MaxZoneSkew(1)).violations, 1);
        assert_eq!(summarize(&ns, &pods, Rule::MaxZoneSkew(2)).violations, 0);
        // n0 holds three (init pods count too).
        assert_eq!(summarize(&ns, &pods, Rule::OnePerNode).violations, 2);
        // Measured pods outside zone-1: n0's two and n2's one.
        assert_eq!(
            summarize(&ns, &pods, Rule::InZones(&["zone-1"])).violations,
            3
        );
        assert_eq!(
            summarize(&ns, &pods, Rule::InZones(&["zone-0", "zone-1"])).violations,
            0
        );
        let p = summarize(&ns, &[pod("elsewhere", true, 1)], Rule::Fit);
        assert_eq!(p.on_unknown_nodes, 1);
    }
}
