//! Which UDP conntrack entries a sync makes stale (pure).
//!
//! UDP has no connection end: a flow keeps its DNAT binding as long as
//! packets keep coming, so a client keeps talking to an endpoint that is gone.
//! As upstream does: flows to a Service address (and NodePort) that were
//! DNATed to an endpoint no longer used are deleted; and when a UDP Service
//! gets its first endpoint, flows to it that were set up while it had none
//! (and so were not DNATed) are deleted.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;

use skiff_sys::conntrack::UdpFlowFilter;

use crate::model::{self, Protocol, ServicePortInfo};

fn udp_ports(ports: &[ServicePortInfo]) -> HashMap<String, &ServicePortInfo> {
    ports
        .iter()
        .filter(|p| p.protocol == Protocol::Udp)
        .map(|p| (p.id(), p))
        .collect()
}

fn endpoint_ips(sp: &ServicePortInfo) -> BTreeSet<Ipv4Addr> {
    model::usable(&sp.endpoints, false)
        .into_iter()
        .chain(model::usable(&sp.endpoints, true))
        .map(|e| e.ip)
        .collect()
}

fn service_ips(sp: &ServicePortInfo) -> impl Iterator<Item = Ipv4Addr> + '_ {
    sp.cluster_ips
        .iter()
        .chain(&sp.external_ips)
        .chain(&sp.load_balancer_ips)
        .copied()
}

/// The UDP flows to delete after going from `previous` to `current`
/// (both from [`model::build`]), deduplicated and sorted.
pub fn stale_udp_flows(
    previous: &[ServicePortInfo],
    current: &[ServicePortInfo],
) -> Vec<UdpFlowFilter> {
    let before = udp_ports(previous);
    let after = udp_ports(current);
    let mut out = BTreeSet::new();
    for (id, old) in &before {
        let still: BTreeSet<Ipv4Addr> = after.get(id).map(|p| endpoint_ips(p)).unwrap_or_default();
        for gone in endpoint_ips(old).difference(&still) {
            for ip in service_ips(old) {
                out.insert(UdpFlowFilter {
                    orig_dst: Some(ip),
                    orig_dport: None,
                    dst_nat: Some(*gone),
                });
            }
            if let Some(node_port) = old.node_port {
                out.insert(UdpFlowFilter {
                    orig_dst: None,
                    orig_dport: Some(node_port),
                    dst_nat: Some(*gone),
                });
            }
        }
    }
    for (id, new) in &after {
        let had = before.get(id).is_some_and(|p| !endpoint_ips(p).is_empty());
        if had || endpoint_ips(new).is_empty() {
            continue;
        }
        for ip in service_ips(new) {
            out.insert(UdpFlowFilter {
                orig_dst: Some(ip),
                orig_dport: Some(new.port),
                dst_nat: None,
            });
        }
        if let Some(node_port) = new.node_port {
            out.insert(UdpFlowFilter {
                orig_dst: None,
                orig_dport: Some(node_port),
                dst_nat: None,
            });
        }
    }
    out.into_iter().collect()
}
