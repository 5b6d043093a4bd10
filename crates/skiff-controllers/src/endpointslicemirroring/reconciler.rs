//! The mirroring reconciler (pure; upstream's `endpointslicemirroring`
//! reconciler): an Endpoints object's subsets, repacked, become one slice
//! per (port set, address type), each holding at most
//! `max_endpoints_per_subset` addresses.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{EndpointAddress, Endpoints};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::endpoint::subsets::repack_subsets;
use crate::endpointslice::reconciler::{
    EndpointKey, Plan, PortsKey, endpoint_key, endpoints_equal, ports_key,
};
use crate::endpointslice::util::{
    ANNOTATION_LAST_CHANGE_TRIGGER_TIME, LABEL_MANAGED_BY, LABEL_SERVICE_NAME,
};

/// kubectl's last-applied annotation, not mirrored.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A mirroring sync's plan and what it had to leave out.
#[derive(Debug, Default, Clone)]
pub struct MirrorPlan {
    /// The writes.
    pub plan: Plan,
    /// Addresses that are not IPs.
    pub invalid: usize,
    /// Addresses left out: invalid ones and those over the per-subset cap.
    pub skipped: usize,
}

fn address_type(ip: &str) -> Option<&'static str> {
    match ip.parse::<IpAddr>().ok()? {
        IpAddr::V4(_) => Some("IPv4"),
        IpAddr::V6(_) => Some("IPv6"),
    }
}

fn address_to_endpoint(a: &EndpointAddress, ready: bool) -> Endpoint {
    Endpoint {
        addresses: vec![a.ip.clone()],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            ..EndpointConditions::default()
        }),
        target_ref: a.target_ref.clone(),
        node_name: a.node_name.clone(),
        hostname: a.hostname.clone().filter(|h| !h.is_empty()),
        ..Endpoint::default()
    }
}

/// The slice labels and annotations mirrored from `ep`.
fn mirrored_meta(
    ep: &Endpoints,
    controller: &str,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let mut labels = ep.metadata.labels.clone().unwrap_or_default();
    labels.insert(
        LABEL_SERVICE_NAME.to_owned(),
        ep.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(LABEL_MANAGED_BY.to_owned(), controller.to_owned());
    let mut annotations = ep.metadata.annotations.clone().unwrap_or_default();
    annotations.remove(ANNOTATION_LAST_CHANGE_TRIGGER_TIME);
    annotations.remove(LAST_APPLIED);
    (labels, annotations)
}

fn new_slice(
    ep: &Endpoints,
    ports: &[EndpointPort],
    address_type: &str,
    name: Option<&EndpointSlice>,
    controller: &str,
) -> EndpointSlice {
    let (labels, annotations) = mirrored_meta(ep, controller);
    let ep_name = ep.metadata.name.clone().unwrap_or_default();
    EndpointSlice {
        metadata: ObjectMeta {
            name: name.and_then(|s| s.metadata.name.clone()),
            generate_name: name.is_none().then(|| format!("{ep_name}-")),
            resource_version: name.and_then(|s| s.metadata.resource_version.clone()),
            namespace: ep.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".to_owned(),
                kind: "Endpoints".to_owned(),
                name: ep_name,
                uid: ep.metadata.uid.clone().unwrap_or_default(),
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

/// Computes the writes that mirror `ep` into `existing` (its mirrored
/// slices, sorted by name).
pub fn reconcile(
    ep: &Endpoints,
    existing: &[&EndpointSlice],
    max_per_subset: usize,
    controller: &str,
) -> MirrorPlan {
    let mut out = MirrorPlan::default();
    type Desired =
        BTreeMap<(PortsKey, String), (Vec<EndpointPort>, BTreeMap<EndpointKey, Endpoint>)>;
    let mut desired: Desired = BTreeMap::new();
    for subset in repack_subsets(ep.subsets.as_deref().unwrap_or_default()) {
        let ports: Vec<EndpointPort> = subset
            .ports
            .iter()
            .flatten()
            .map(|p| EndpointPort {
                name: Some(p.name.clone().unwrap_or_default()),
                port: Some(p.port),
                protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".to_owned())),
                app_protocol: p.app_protocol.clone(),
            })
            .collect();
        let pk = ports_key(&ports);
        let ready = subset.addresses.iter().flatten().map(|a| (a, true));
        let not_ready = subset
            .not_ready_addresses
            .iter()
            .flatten()
            .map(|a| (a, false));
        let mut added = 0;
        let mut total = 0;
        for (a, is_ready) in ready.chain(not_ready) {
            total += 1;
            if added >= max_per_subset {
                continue;
            }
            let Some(t) = address_type(&a.ip) else {
                out.invalid += 1;
                continue;
            };
            let e = address_to_endpoint(a, is_ready);
            desired
                .entry((pk.clone(), t.to_owned()))
                .or_insert_with(|| (ports.clone(), BTreeMap::new()))
                .1
                .insert(endpoint_key(&e), e);
            added += 1;
        }
        out.skipped += total - added;
    }
    let mut existing_by_key: BTreeMap<(PortsKey, String), Vec<&EndpointSlice>> = BTreeMap::new();
    for s in existing {
        let k = (
            ports_key(s.ports.as_deref().unwrap_or_default()),
            s.address_type.clone(),
        );
        existing_by_key.entry(k).or_default().push(s);
    }
    let (labels, annotations) = mirrored_meta(ep, controller);
    for (k, (ports, eps)) in &desired {
        let slices = existing_by_key.get(k).map(Vec::as_slice).unwrap_or(&[]);
        let Some((first, rest)) = slices.split_first() else {
            let mut s = new_slice(ep, ports, &k.1, None, controller);
            s.endpoints = eps.values().take(max_per_subset).cloned().collect();
            out.plan.create.push(s);
            continue;
        };
        out.plan.delete.extend(rest.iter().map(|s| (*s).clone()));
        let same_endpoints = first.endpoints.len() == eps.len()
            && first.endpoints.iter().all(|e| {
                eps.get(&endpoint_key(e))
                    .is_some_and(|want| endpoints_equal(want, e))
            });
        let same_meta = first.metadata.labels.as_ref() == Some(&labels)
            && first.metadata.annotations.clone().unwrap_or_default() == annotations;
        if same_endpoints && same_meta {
            continue;
        }
        let mut s = new_slice(ep, ports, &k.1, Some(first), controller);
        s.endpoints = eps.values().take(max_per_subset).cloned().collect();
        out.plan.update.push(s);
    }
    for (k, slices) in &existing_by_key {
        if !desired.contains_key(k) {
            out.plan.delete.extend(slices.iter().map(|s| (*s).clone()));
        }
    }
    recycle(&mut out.plan);
    if ep.metadata.deletion_timestamp.is_some() {
        out.plan.create.clear();
    }
    out
}

/// Upstream's `recycleSlices`: a create becomes an update of a slice of the
/// same address type that would otherwise be deleted.
fn recycle(plan: &mut Plan) {
    let mut creates = std::mem::take(&mut plan.create);
    let mut kept = Vec::new();
    for mut c in creates.drain(..) {
        match plan
            .delete
            .iter()
            .rposition(|d| d.address_type == c.address_type)
        {
            Some(i) => {
                let d = plan.delete.remove(i);
                c.metadata.name = d.metadata.name;
                c.metadata.generate_name = None;
                c.metadata.resource_version = d.metadata.resource_version;
                plan.update.push(c);
            }
            None => kept.push(c),
        }
    }
    plan.create = kept;
}
