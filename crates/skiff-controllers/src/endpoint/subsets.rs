//! The Endpoints a Service's pods make (pure): addresses per port, repacked
//! into canonical subsets (upstream's `RepackSubsets`), and truncation to
//! the 1000-address capacity.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, ObjectReference, Service,
};

use crate::cached_pod::CachedPod;
use crate::endpointslice::util::{
    find_port, is_service_ip_set, pod_ips, publish_not_ready, should_pod_be_in_endpoints,
    should_set_hostname,
};
use crate::podutil::is_pod_ready;

/// Most addresses one Endpoints object holds.
pub const MAX_CAPACITY: usize = 1000;

/// Upstream's `podToEndpointAddressForService`: the pod's IP of the
/// Service's family (its first ipFamily, else its cluster IP's, else the
/// pod's first IP's).
fn address_for_service(svc: &Service, pod: &CachedPod) -> Option<EndpointAddress> {
    let spec = svc.spec.as_ref();
    let ips = pod_ips(pod);
    let want_v6 = match spec
        .and_then(|s| s.ip_families.as_ref())
        .and_then(|f| f.first())
    {
        Some(f) => f == "IPv6",
        None => match spec
            .and_then(|s| s.cluster_ip.as_deref())
            .and_then(|ip| ip.parse::<IpAddr>().ok())
        {
            Some(ip) => ip.is_ipv6(),
            None => ips.first()?.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv6()),
        },
    };
    let ip = ips
        .into_iter()
        .find(|ip| ip.parse::<IpAddr>().is_ok_and(|a| a.is_ipv6()) == want_v6)?;
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    Some(EndpointAddress {
        ip,
        node_name: node.filter(|n| !n.is_empty()),
        hostname: should_set_hostname(pod, svc)
            .then(|| pod.spec.as_ref().and_then(|s| s.hostname.clone()))
            .flatten(),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".to_owned()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..ObjectReference::default()
        }),
    })
}

/// The Service's subsets from its (selected) pods, repacked.
pub fn compute_subsets(svc: &Service, pods: &[&CachedPod]) -> Vec<EndpointSubset> {
    let tolerate_unready = publish_not_ready(svc);
    let ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let headless = !is_service_ip_set(svc)
        && svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None");
    let mut subsets = Vec::new();
    for pod in pods {
        if !should_pod_be_in_endpoints(pod, tolerate_unready) {
            continue;
        }
        let Some(addr) = address_for_service(svc, pod) else {
            continue;
        };
        let ready = tolerate_unready || is_pod_ready(pod);
        let subset = |ports: Option<Vec<EndpointPort>>| {
            let (r, nr) = if ready {
                (Some(vec![addr.clone()]), None)
            } else {
                (None, Some(vec![addr.clone()]))
            };
            EndpointSubset {
                addresses: r,
                not_ready_addresses: nr,
                ports,
            }
        };
        if ports.is_empty() {
            // Headless services may have no ports.
            if headless {
                subsets.push(subset(None));
            }
            continue;
        }
        for sp in &ports {
            let Some(num) = find_port(pod, sp) else {
                continue;
            };
            subsets.push(subset(Some(vec![EndpointPort {
                name: Some(sp.name.clone().unwrap_or_default()),
                port: num,
                protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".to_owned())),
                app_protocol: sp.app_protocol.clone(),
            }])));
        }
    }
    repack_subsets(&subsets)
}

/// An address's identity: its IP and target UID.
type AddrKey = (String, String);

fn addr_key(a: &EndpointAddress) -> AddrKey {
    let uid = a
        .target_ref
        .as_ref()
        .and_then(|r| r.uid.clone())
        .unwrap_or_default();
    (a.ip.clone(), uid)
}

/// A port as a sortable key: (name, port, protocol, appProtocol); port -1
/// stands for "no ports".
type PortKey = (String, i32, String, Option<String>);

fn port_key(p: &EndpointPort) -> PortKey {
    (
        p.name.clone().unwrap_or_default(),
        p.port,
        p.protocol.clone().unwrap_or_default(),
        p.app_protocol.clone(),
    )
}

/// Upstream's `RepackSubsets`: each address grouped with exactly the ports
/// it serves (not-ready for a port wins over ready), one subset per
/// distinct (addresses, readiness) set, everything sorted.
pub fn repack_subsets(subsets: &[EndpointSubset]) -> Vec<EndpointSubset> {
    let mut all: BTreeMap<AddrKey, EndpointAddress> = BTreeMap::new();
    let mut by_port: BTreeMap<PortKey, (Option<EndpointPort>, BTreeMap<AddrKey, bool>)> =
        BTreeMap::new();
    for ss in subsets {
        let ports: Vec<Option<&EndpointPort>> = match ss.ports.as_deref() {
            Some(p) if !p.is_empty() => p.iter().map(Some).collect(),
            _ => vec![None],
        };
        for port in ports {
            let pk = port.map_or((String::new(), -1, String::new(), None), port_key);
            let ready = ss.addresses.iter().flatten().map(|a| (a, true));
            let not_ready = ss.not_ready_addresses.iter().flatten().map(|a| (a, false));
            for (addr, is_ready) in ready.chain(not_ready) {
                let key = addr_key(addr);
                all.entry(key.clone()).or_insert_with(|| addr.clone());
                let entry = by_port
                    .entry(pk.clone())
                    .or_insert_with(|| (port.cloned(), BTreeMap::new()));
                let state = entry.1.entry(key).or_insert(is_ready);
                *state = *state && is_ready;
            }
        }
    }
    // Ports grouped by the exact address set (with readiness) serving them.
    let mut groups: BTreeMap<Vec<(AddrKey, bool)>, BTreeSet<PortKey>> = BTreeMap::new();
    let mut port_objs: BTreeMap<PortKey, EndpointPort> = BTreeMap::new();
    for (pk, (port, addrs)) in by_port {
        let set: Vec<(AddrKey, bool)> = addrs.into_iter().collect();
        let ports = groups.entry(set).or_default();
        if let Some(p) = port {
            ports.insert(pk.clone());
            port_objs.insert(pk, p);
        }
    }
    let mut out: Vec<EndpointSubset> = groups
        .into_iter()
        .map(|(addrs, ports)| {
            let mut ready = Vec::new();
            let mut not_ready = Vec::new();
            for (k, r) in addrs {
                if let Some(a) = all.get(&k) {
                    if r { &mut ready } else { &mut not_ready }.push(a.clone());
                }
            }
            let ports: Vec<EndpointPort> = ports
                .iter()
                .filter_map(|k| port_objs.get(k).cloned())
                .collect();
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect();
    out.sort_by_key(subset_sort_key);
    out
}

fn subset_sort_key(s: &EndpointSubset) -> (Vec<AddrKey>, Vec<AddrKey>, Vec<PortKey>) {
    (
        s.addresses.iter().flatten().map(addr_key).collect(),
        s.not_ready_addresses
            .iter()
            .flatten()
            .map(addr_key)
            .collect(),
        s.ports.iter().flatten().map(port_key).collect(),
    )
}

fn count(subsets: &[EndpointSubset]) -> (usize, usize) {
    subsets.iter().fold((0, 0), |(r, n), s| {
        (
            r + s.addresses.as_ref().map_or(0, Vec::len),
            n + s.not_ready_addresses.as_ref().map_or(0, Vec::len),
        )
    })
}

/// Upstream's `truncateEndpoints`: over [`MAX_CAPACITY`] addresses, keeps
/// ready ones first, spreading what fits over the subsets in proportion
/// (rounded up, the last subset getting what is left). True if it cut.
pub fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let (ready, not_ready) = count(subsets);
    if ready + not_ready <= MAX_CAPACITY {
        return false;
    }
    let truncate_ready = ready > MAX_CAPACITY;
    let (max, total) = if truncate_ready {
        (MAX_CAPACITY, ready)
    } else {
        (MAX_CAPACITY - ready, not_ready)
    };
    let mut left = max;
    for s in subsets.iter_mut() {
        let list = if truncate_ready {
            &mut s.addresses
        } else {
            &mut s.not_ready_addresses
        };
        let n = list.as_ref().map_or(0, Vec::len);
        let share = (n * max).div_ceil(total).min(left);
        if let Some(l) = list.as_mut() {
            l.truncate(share);
        }
        left -= list.as_ref().map_or(0, Vec::len);
        if truncate_ready {
            s.not_ready_addresses = None;
        }
    }
    true
}
