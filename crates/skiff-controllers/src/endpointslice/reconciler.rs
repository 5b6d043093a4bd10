//! The EndpointSlice reconciler (pure; upstream's `endpointslice`
//! reconciler): from a Service, its pods and its current slices, which
//! slices to create, update and delete. Per address family and distinct
//! port set it keeps slices whose endpoints are unchanged, updates changed
//! ones in place, fills partly full ones, creates new ones for the rest,
//! and deletes emptied or stale ones; a Service with no endpoints keeps one
//! empty placeholder slice.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{ObjectReference, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::util::{
    LABEL_HEADLESS, LABEL_MANAGED_BY, LABEL_SERVICE_NAME, find_port, is_service_ip_set, pod_ips,
    publish_not_ready, should_pod_be_in_endpoints, should_set_hostname,
};
use crate::cached_pod::CachedPod;
use crate::podutil::is_pod_ready;

/// What a sync writes.
#[derive(Debug, Default, Clone)]
pub struct Plan {
    /// New slices (generateName set).
    pub create: Vec<EndpointSlice>,
    /// Existing slices with their new content (resourceVersion kept).
    pub update: Vec<EndpointSlice>,
    /// Slices to delete.
    pub delete: Vec<EndpointSlice>,
    /// Pods skipped (their Node is unknown): the sync is retried.
    pub errors: Vec<String>,
}

/// An endpoint's identity (upstream's endpoint hash): addresses, hostname
/// and target.
pub(crate) type EndpointKey = (Vec<String>, String, String, String);

/// A port set's identity.
pub(crate) type PortsKey = Vec<(String, i32, String, Option<String>)>;

pub(crate) fn endpoint_key(ep: &Endpoint) -> EndpointKey {
    let mut addrs = ep.addresses.clone();
    addrs.sort();
    let t = ep.target_ref.as_ref();
    (
        addrs,
        ep.hostname.clone().unwrap_or_default(),
        t.and_then(|t| t.namespace.clone()).unwrap_or_default(),
        t.and_then(|t| t.name.clone()).unwrap_or_default(),
    )
}

pub(crate) fn ports_key(ports: &[EndpointPort]) -> PortsKey {
    let mut k: PortsKey = ports
        .iter()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.port.unwrap_or_default(),
                p.protocol.clone().unwrap_or_else(|| "TCP".to_owned()),
                p.app_protocol.clone(),
            )
        })
        .collect();
    k.sort();
    k
}

/// Equal in everything (upstream's `EndpointsEqualBeyondHash` and the hash).
pub(crate) fn endpoints_equal(a: &Endpoint, b: &Endpoint) -> bool {
    let mut a = a.clone();
    let mut b = b.clone();
    a.addresses.sort();
    b.addresses.sort();
    a == b
}

/// The slice address types a Service needs: its ipFamilies, else its
/// cluster IP's family, else IPv4.
pub fn address_types(svc: &Service) -> Vec<String> {
    let spec = svc.spec.as_ref();
    let families: Vec<String> = spec
        .and_then(|s| s.ip_families.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f == "IPv4" || f == "IPv6")
        .collect();
    if !families.is_empty() {
        return families;
    }
    let v6 = spec
        .and_then(|s| s.cluster_ip.as_deref())
        .and_then(|ip| ip.parse::<IpAddr>().ok())
        .is_some_and(|ip| ip.is_ipv6());
    vec![if v6 { "IPv6" } else { "IPv4" }.to_owned()]
}

/// The pod's ports for the Service (upstream's `getEndpointPorts`): one
/// per Service port the pod has, by number or by named container port.
pub fn endpoint_ports(svc: &Service, pod: &CachedPod) -> Vec<EndpointPort> {
    let Some(ports) = svc.spec.as_ref().and_then(|s| s.ports.as_ref()) else {
        return Vec::new();
    };
    ports
        .iter()
        .filter_map(|sp| {
            let num = find_port(pod, sp)?;
            Some(EndpointPort {
                name: Some(sp.name.clone().unwrap_or_default()),
                port: Some(num),
                protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".to_owned())),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect()
}

/// Upstream's `podToEndpoint`: serving = Ready; ready = serving and not
/// terminating (always, with publishNotReadyAddresses).
pub fn pod_to_endpoint(
    pod: &CachedPod,
    zone: Option<String>,
    svc: &Service,
    address_type: &str,
) -> Endpoint {
    let serving = is_pod_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let ready = publish_not_ready(svc) || (serving && !terminating);
    let addresses = pod_ips(pod)
        .into_iter()
        .filter(|ip| {
            ip.parse::<IpAddr>()
                .is_ok_and(|a| a.is_ipv6() == (address_type == "IPv6"))
        })
        .collect();
    let spec = pod.spec.as_ref();
    Endpoint {
        addresses,
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        node_name: spec
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty()),
        zone: zone.filter(|z| !z.is_empty()),
        hostname: should_set_hostname(pod, svc)
            .then(|| spec.and_then(|s| s.hostname.clone()))
            .flatten(),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".to_owned()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..ObjectReference::default()
        }),
        ..Endpoint::default()
    }
}

/// A slice's labels: the Service's (minus the reserved keys), the headless
/// label for headless Services, the service-name and managed-by labels.
pub fn desired_labels(svc: &Service, controller: &str) -> BTreeMap<String, String> {
    let reserved = [LABEL_SERVICE_NAME, LABEL_MANAGED_BY, LABEL_HEADLESS];
    let mut labels: BTreeMap<String, String> = svc
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| !reserved.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !is_service_ip_set(svc) {
        labels.insert(LABEL_HEADLESS.to_owned(), String::new());
    }
    labels.insert(
        LABEL_SERVICE_NAME.to_owned(),
        svc.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(LABEL_MANAGED_BY.to_owned(), controller.to_owned());
    labels
}

/// Whether the slice's controller owner is this Service.
pub fn owned_by(slice: &EndpointSlice, svc: &Service) -> bool {
    slice.metadata.owner_references.iter().flatten().any(|r| {
        r.kind == "Service" && r.api_version == "v1" && Some(&r.uid) == svc.metadata.uid.as_ref()
    })
}

fn new_slice(
    svc: &Service,
    ports: &[EndpointPort],
    address_type: &str,
    controller: &str,
) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", svc.metadata.name.as_deref().unwrap_or(""))),
            namespace: svc.metadata.namespace.clone(),
            labels: Some(desired_labels(svc, controller)),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".to_owned(),
                kind: "Service".to_owned(),
                name: svc.metadata.name.clone().unwrap_or_default(),
                uid: svc.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        address_type: address_type.to_owned(),
        endpoints: Vec::new(),
        ports: Some(ports.to_vec()),
    }
}

/// Looks a Node up by name: `None` if unknown, else its zone label.
pub type NodeZone<'a> = &'a dyn Fn(&str) -> Option<Option<String>>;

/// The reconciler's settings.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    /// `--max-endpoints-per-slice`.
    pub max_endpoints_per_slice: usize,
    /// The managed-by label value.
    pub controller: &'a str,
}

/// Computes the writes that bring `existing` (the Service's slices managed
/// by this controller, none pending deletion) to what `pods` need.
pub fn reconcile(
    svc: &Service,
    pods: &[&CachedPod],
    existing: &[&EndpointSlice],
    nodes: NodeZone<'_>,
    settings: Settings<'_>,
) -> Plan {
    let types = address_types(svc);
    let mut plan = Plan::default();
    let mut by_type: BTreeMap<&str, Vec<&EndpointSlice>> = BTreeMap::new();
    for s in existing {
        if types.contains(&s.address_type) && owned_by(s, svc) {
            by_type.entry(s.address_type.as_str()).or_default().push(s);
        } else {
            plan.delete.push((*s).clone());
        }
    }
    for t in &types {
        let slices = by_type.remove(t.as_str()).unwrap_or_default();
        by_address_type(svc, pods, &slices, t, nodes, settings, &mut plan);
    }
    finalize(svc, &mut plan);
    plan
}

fn by_address_type(
    svc: &Service,
    pods: &[&CachedPod],
    existing: &[&EndpointSlice],
    address_type: &str,
    nodes: NodeZone<'_>,
    settings: Settings<'_>,
    plan: &mut Plan,
) {
    let mut existing_by_ports: BTreeMap<PortsKey, Vec<&EndpointSlice>> = BTreeMap::new();
    for s in existing {
        let k = ports_key(s.ports.as_deref().unwrap_or_default());
        existing_by_ports.entry(k).or_default().push(s);
    }
    let mut desired: BTreeMap<PortsKey, (Vec<EndpointPort>, BTreeMap<EndpointKey, Endpoint>)> =
        BTreeMap::new();
    for pod in pods {
        if !should_pod_be_in_endpoints(pod, true) {
            continue;
        }
        let ports = endpoint_ports(svc, pod);
        let entry = desired
            .entry(ports_key(&ports))
            .or_insert_with(|| (ports, BTreeMap::new()));
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or("");
        let zone = match nodes(node) {
            Some(zone) => zone,
            // A pod on an unknown Node is left out (and the sync retried)
            // unless the Service publishes every address.
            None if publish_not_ready(svc) => None,
            None => {
                plan.errors.push(format!(
                    "skipping Pod {} for Service {}/{}: Node {node} Not Found",
                    pod.metadata.name.as_deref().unwrap_or(""),
                    svc.metadata.namespace.as_deref().unwrap_or(""),
                    svc.metadata.name.as_deref().unwrap_or(""),
                ));
                continue;
            }
        };
        let ep = pod_to_endpoint(pod, zone, svc, address_type);
        if !ep.addresses.is_empty() {
            entry.1.insert(endpoint_key(&ep), ep);
        }
    }
    let (mut create, mut update, mut delete) = (Vec::new(), Vec::new(), Vec::new());
    for (k, (ports, eps)) in &desired {
        let slices = existing_by_ports.get(k).map(Vec::as_slice).unwrap_or(&[]);
        let (c, u, d) = by_port_mapping(svc, slices, eps.clone(), ports, address_type, settings);
        create.extend(c);
        update.extend(u);
        delete.extend(d);
    }
    for (k, slices) in &existing_by_ports {
        if !desired.contains_key(k) {
            delete.extend(slices.iter().map(|s| (*s).clone()));
        }
    }
    if existing.len() == delete.len() && create.is_empty() {
        // No endpoints: keep (or make) one empty placeholder slice.
        let placeholder = new_slice(svc, &[], address_type, settings.controller);
        if delete.len() == 1 && is_placeholder(&delete[0], &placeholder) {
            delete.clear();
        } else {
            create.push(placeholder);
        }
    }
    plan.create.extend(create);
    plan.update.extend(update);
    plan.delete.extend(delete);
}

fn is_placeholder(s: &EndpointSlice, placeholder: &EndpointSlice) -> bool {
    s.endpoints.is_empty()
        && s.ports.as_deref().unwrap_or_default().is_empty()
        && s.address_type == placeholder.address_type
        && s.metadata.labels == placeholder.metadata.labels
}

/// Upstream's `reconcileByPortMapping` for one port set.
fn by_port_mapping(
    svc: &Service,
    existing: &[&EndpointSlice],
    mut desired: BTreeMap<EndpointKey, Endpoint>,
    ports: &[EndpointPort],
    address_type: &str,
    settings: Settings<'_>,
) -> (Vec<EndpointSlice>, Vec<EndpointSlice>, Vec<EndpointSlice>) {
    let max = settings.max_endpoints_per_slice.max(1);
    let labels = desired_labels(svc, settings.controller);
    let mut by_name: BTreeMap<String, EndpointSlice> = BTreeMap::new();
    let mut unchanged: BTreeSet<String> = BTreeSet::new();
    let mut to_update: BTreeSet<String> = BTreeSet::new();
    let mut to_delete: BTreeSet<String> = BTreeSet::new();

    // 1. Drop endpoints no longer desired, refresh changed ones.
    for s in existing {
        let name = s.metadata.name.clone().unwrap_or_default();
        let mut kept = Vec::new();
        let mut changed = false;
        for ep in &s.endpoints {
            if let Some(want) = desired.remove(&endpoint_key(ep)) {
                changed |= !endpoints_equal(&want, ep);
                kept.push(want);
            }
        }
        let labels_changed = s.metadata.labels.as_ref() != Some(&labels);
        if changed || kept.len() != s.endpoints.len() {
            if kept.is_empty() {
                to_delete.insert(name.clone());
                by_name.insert(name, (*s).clone());
            } else {
                let mut s = (*s).clone();
                s.endpoints = kept;
                s.metadata.labels = Some(labels.clone());
                to_update.insert(name.clone());
                by_name.insert(name, s);
            }
        } else {
            let mut s = (*s).clone();
            if labels_changed {
                s.metadata.labels = Some(labels.clone());
                to_update.insert(name.clone());
            } else {
                unchanged.insert(name.clone());
            }
            by_name.insert(name, s);
        }
    }

    // 2. Fill the slices being updated anyway, fullest first.
    if !desired.is_empty() && !to_update.is_empty() {
        let mut names: Vec<&String> = to_update.iter().collect();
        names.sort_by_key(|n| std::cmp::Reverse(by_name.get(*n).map_or(0, |s| s.endpoints.len())));
        for n in names {
            if let Some(s) = by_name.get_mut(n) {
                fill(s, &mut desired, max);
            }
        }
    }

    // 3. The rest into the unchanged slice it fits best, else new slices.
    let mut create = Vec::new();
    while !desired.is_empty() {
        let target = if desired.len() < max {
            slice_to_fill(&unchanged, &by_name, desired.len(), max)
        } else {
            None
        };
        match target {
            Some(name) => {
                if let Some(s) = by_name.get_mut(&name) {
                    fill(s, &mut desired, max);
                }
                unchanged.remove(&name);
                to_update.insert(name);
            }
            None => {
                let mut s = new_slice(svc, ports, address_type, settings.controller);
                fill(&mut s, &mut desired, max);
                create.push(s);
            }
        }
    }
    let pick = |names: &BTreeSet<String>| -> Vec<EndpointSlice> {
        names
            .iter()
            .filter_map(|n| by_name.get(n).cloned())
            .collect()
    };
    (create, pick(&to_update), pick(&to_delete))
}

fn fill(s: &mut EndpointSlice, desired: &mut BTreeMap<EndpointKey, Endpoint>, max: usize) {
    while s.endpoints.len() < max {
        let Some((_, ep)) = desired.pop_first() else {
            return;
        };
        s.endpoints.push(ep);
    }
}

/// Upstream's `getSliceToFill`: the unchanged slice that `n` more
/// endpoints leave closest to full without overflowing.
fn slice_to_fill(
    unchanged: &BTreeSet<String>,
    by_name: &BTreeMap<String, EndpointSlice>,
    n: usize,
    max: usize,
) -> Option<String> {
    let mut best: Option<(usize, &String)> = None;
    for name in unchanged {
        let Some(s) = by_name.get(name) else {
            continue;
        };
        let Some(diff) = max.checked_sub(n + s.endpoints.len()) else {
            continue;
        };
        if best.is_none_or(|(d, _)| diff < d) {
            best = Some((diff, name));
            if diff == 0 {
                break;
            }
        }
    }
    best.map(|(_, n)| n.clone())
}

/// Upstream's `finalize` planning: creates become updates of slices that
/// would be deleted (same Service, same address type); nothing is created
/// for a Service being deleted.
fn finalize(svc: &Service, plan: &mut Plan) {
    let mut i = 0;
    while i < plan.delete.len() && !plan.create.is_empty() {
        let del = &plan.delete[i];
        let same = plan
            .create
            .last()
            .is_some_and(|c| c.address_type == del.address_type);
        if same && owned_by(del, svc) {
            let del = plan.delete.remove(i);
            if let Some(mut c) = plan.create.pop() {
                c.metadata.name = del.metadata.name;
                c.metadata.generate_name = None;
                c.metadata.resource_version = del.metadata.resource_version;
                plan.update.push(c);
            }
        } else {
            i += 1;
        }
    }
    if svc.metadata.deletion_timestamp.is_some() {
        plan.create.clear();
    }
}
