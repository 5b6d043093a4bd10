//! The cluster's Namespaces, Services and EndpointSlices as cluster DNS needs
//! them: only the fields that answers use, indexed for lookups by name and
//! (for PTR) by address. One writer (the watch loop), many readers.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label that ties an EndpointSlice to its Service.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";

/// `(namespace, name)`.
pub type Key = (String, String);

/// A named port (of a Service or an EndpointSlice), as SRV queries match it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    /// The port's name ("" when unnamed).
    pub name: String,
    /// `tcp`, `udp` or `sctp` (lowercase, as in `_tcp`).
    pub protocol: String,
    /// The port number.
    pub port: u16,
}

/// What a Service's name resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceKind {
    /// Its ClusterIPs (empty until one is allocated).
    ClusterIp(Vec<IpAddr>),
    /// `clusterIP: None`: its endpoints' addresses.
    Headless,
    /// `type: ExternalName`: a CNAME to this name.
    ExternalName(String),
}

/// The parts of a Service that DNS answers use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    /// What the name resolves to.
    pub kind: ServiceKind,
    /// The Service's ports (ClusterIP SRV records).
    pub ports: Vec<PortInfo>,
    /// `spec.publishNotReadyAddresses`: not-ready endpoints are published too.
    pub publish_not_ready: bool,
}

impl ServiceInfo {
    /// The DNS view of `svc`.
    pub fn from_service(svc: &Service) -> ServiceInfo {
        let spec = svc.spec.clone().unwrap_or_default();
        let kind = if spec.type_.as_deref() == Some("ExternalName") {
            ServiceKind::ExternalName(spec.external_name.clone().unwrap_or_default())
        } else if spec.cluster_ip.as_deref() == Some("None") {
            ServiceKind::Headless
        } else {
            let mut ips: Vec<IpAddr> = spec
                .cluster_ips
                .iter()
                .flatten()
                .filter_map(|ip| ip.parse().ok())
                .collect();
            if ips.is_empty()
                && let Some(ip) = spec.cluster_ip.as_deref().and_then(|ip| ip.parse().ok())
            {
                ips.push(ip);
            }
            ServiceKind::ClusterIp(ips)
        };
        let ports = spec
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                Some(PortInfo {
                    name: p.name.clone().unwrap_or_default(),
                    protocol: protocol(p.protocol.as_deref()),
                    port: u16::try_from(p.port).ok()?,
                })
            })
            .collect();
        ServiceInfo {
            kind,
            ports,
            publish_not_ready: spec.publish_not_ready_addresses == Some(true),
        }
    }
}

fn protocol(p: Option<&str>) -> String {
    p.unwrap_or("TCP").to_ascii_lowercase()
}

/// One endpoint of an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointInfo {
    /// Its addresses (IPs; FQDN slices are not served).
    pub addresses: Vec<IpAddr>,
    /// `hostname`, if set.
    pub hostname: Option<String>,
    /// `conditions.ready` (absent means ready, as the API documents).
    pub ready: Option<bool>,
}

/// The parts of an EndpointSlice that DNS answers use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceInfo {
    /// The Service it belongs to (its `kubernetes.io/service-name` label).
    pub service: String,
    /// Its endpoints.
    pub endpoints: Vec<EndpointInfo>,
    /// Its ports.
    pub ports: Vec<PortInfo>,
}

impl SliceInfo {
    /// The DNS view of `slice`; `None` for slices of no Service.
    pub fn from_slice(slice: &EndpointSlice) -> Option<SliceInfo> {
        let service = slice.metadata.labels.as_ref()?.get(LABEL_SERVICE_NAME)?;
        let endpoints = slice
            .endpoints
            .iter()
            .map(|e| EndpointInfo {
                addresses: e.addresses.iter().filter_map(|a| a.parse().ok()).collect(),
                hostname: e.hostname.clone().filter(|h| !h.is_empty()),
                ready: e.conditions.as_ref().and_then(|c| c.ready),
            })
            .collect();
        let ports = slice
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                Some(PortInfo {
                    name: p.name.clone().unwrap_or_default(),
                    protocol: protocol(p.protocol.as_deref()),
                    port: u16::try_from(p.port?).ok()?,
                })
            })
            .collect();
        Some(SliceInfo {
            service: service.clone(),
            endpoints,
            ports,
        })
    }
}

/// A published endpoint address of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The address.
    pub ip: IpAddr,
    /// Its DNS label: `hostname`, else the address with `.`/`:` as `-`
    /// (CoreDNS's endpoint names).
    pub label: String,
    /// The ports of its slice (empty: a port-less headless Service).
    pub ports: Vec<PortInfo>,
}

/// The DNS label of an endpoint address without a hostname, as CoreDNS
/// names it: `10-42-0-5`, or the IPv6 text with `:` as `-`.
pub fn dashed(ip: IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

/// What a PTR answer names: a Service (its ClusterIP) or one of its endpoints.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PtrTarget {
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub service: String,
    /// The endpoint's label; `None` for the ClusterIP.
    pub endpoint: Option<String>,
}

/// The cluster as DNS sees it.
#[derive(Debug, Default)]
pub struct ClusterData {
    namespaces: HashSet<String>,
    services: HashMap<Key, ServiceInfo>,
    slices: HashMap<Key, SliceInfo>,
    slices_of: HashMap<Key, BTreeSet<String>>,
    ptr: HashMap<IpAddr, BTreeSet<PtrTarget>>,
    ptr_of: HashMap<Key, Vec<(IpAddr, PtrTarget)>>,
    serial: u32,
}

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<Key> {
    Some((meta.namespace.clone()?, meta.name.clone()?))
}

impl ClusterData {
    /// The SOA serial: when the data last changed (unix seconds, as CoreDNS).
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// Sets the SOA serial.
    pub fn set_serial(&mut self, serial: u32) {
        self.serial = serial;
    }

    /// Whether namespace `ns` exists.
    pub fn has_namespace(&self, ns: &str) -> bool {
        self.namespaces.contains(ns)
    }

    /// Namespace `name` exists.
    pub fn add_namespace(&mut self, name: &str) {
        self.namespaces.insert(name.to_owned());
    }

    /// Namespace `name` is gone.
    pub fn remove_namespace(&mut self, name: &str) {
        self.namespaces.remove(name);
    }

    /// Exactly these namespaces exist (after a relist).
    pub fn replace_namespaces<'a>(&mut self, names: impl IntoIterator<Item = &'a str>) {
        self.namespaces = names.into_iter().map(str::to_owned).collect();
    }

    /// The Service `ns/name`.
    pub fn service(&self, ns: &str, name: &str) -> Option<&ServiceInfo> {
        self.services.get(&(ns.to_owned(), name.to_owned()))
    }

    /// `svc` was added or changed.
    pub fn apply_service(&mut self, svc: &Service) {
        let Some(key) = key_of(&svc.metadata) else {
            return;
        };
        self.services
            .insert(key.clone(), ServiceInfo::from_service(svc));
        self.refresh_ptr(&key);
    }

    /// The Service `ns/name` is gone.
    pub fn remove_service(&mut self, ns: &str, name: &str) {
        let key = (ns.to_owned(), name.to_owned());
        self.services.remove(&key);
        self.refresh_ptr(&key);
    }

    /// Exactly these Services exist (after a relist).
    pub fn replace_services(&mut self, services: &[Service]) {
        let old: Vec<Key> = self.services.keys().cloned().collect();
        self.services = services
            .iter()
            .filter_map(|s| Some((key_of(&s.metadata)?, ServiceInfo::from_service(s))))
            .collect();
        let keys: BTreeSet<Key> = old
            .into_iter()
            .chain(self.services.keys().cloned())
            .collect();
        for key in keys {
            self.refresh_ptr(&key);
        }
    }

    /// `slice` was added or changed.
    pub fn apply_slice(&mut self, slice: &EndpointSlice) {
        let Some(key) = key_of(&slice.metadata) else {
            return;
        };
        let old = self.unlink_slice(&key);
        let new = SliceInfo::from_slice(slice).map(|info| {
            let svc = (key.0.clone(), info.service.clone());
            self.slices_of
                .entry(svc.clone())
                .or_default()
                .insert(key.1.clone());
            self.slices.insert(key.clone(), info);
            svc
        });
        for svc in old.into_iter().chain(new) {
            self.refresh_ptr(&svc);
        }
    }

    /// The EndpointSlice `ns/name` is gone.
    pub fn remove_slice(&mut self, ns: &str, name: &str) {
        if let Some(svc) = self.unlink_slice(&(ns.to_owned(), name.to_owned())) {
            self.refresh_ptr(&svc);
        }
    }

    /// Exactly these EndpointSlices exist (after a relist).
    pub fn replace_slices(&mut self, slices: &[EndpointSlice]) {
        let mut touched: BTreeSet<Key> = self.slices_of.keys().cloned().collect();
        self.slices.clear();
        self.slices_of.clear();
        for slice in slices {
            let Some(key) = key_of(&slice.metadata) else {
                continue;
            };
            let Some(info) = SliceInfo::from_slice(slice) else {
                continue;
            };
            let svc = (key.0.clone(), info.service.clone());
            self.slices_of
                .entry(svc.clone())
                .or_default()
                .insert(key.1.clone());
            self.slices.insert(key, info);
            touched.insert(svc);
        }
        for svc in touched {
            self.refresh_ptr(&svc);
        }
    }

    /// Forgets slice `key`; returns the Service it belonged to.
    fn unlink_slice(&mut self, key: &Key) -> Option<Key> {
        let info = self.slices.remove(key)?;
        let svc = (key.0.clone(), info.service);
        if let Some(names) = self.slices_of.get_mut(&svc) {
            names.remove(&key.1);
            if names.is_empty() {
                self.slices_of.remove(&svc);
            }
        }
        Some(svc)
    }

    /// The published endpoints of Service `ns/name`: ready ones (or all
    /// with `publishNotReadyAddresses`), each address once per label.
    pub fn endpoints(&self, ns: &str, name: &str) -> Vec<Endpoint> {
        let key = (ns.to_owned(), name.to_owned());
        let publish_all = self.services.get(&key).is_some_and(|s| s.publish_not_ready);
        let mut out: Vec<Endpoint> = Vec::new();
        let mut seen: HashMap<(IpAddr, String), usize> = HashMap::new();
        for slice_name in self.slices_of.get(&key).into_iter().flatten() {
            let Some(slice) = self.slices.get(&(ns.to_owned(), slice_name.clone())) else {
                continue;
            };
            for ep in &slice.endpoints {
                if !publish_all && ep.ready == Some(false) {
                    continue;
                }
                for &ip in &ep.addresses {
                    let label = ep.hostname.clone().unwrap_or_else(|| dashed(ip));
                    match seen.get(&(ip, label.clone())).and_then(|&i| out.get_mut(i)) {
                        Some(existing) => {
                            for p in &slice.ports {
                                if !existing.ports.contains(p) {
                                    existing.ports.push(p.clone());
                                }
                            }
                        }
                        None => {
                            seen.insert((ip, label.clone()), out.len());
                            out.push(Endpoint {
                                ip,
                                label,
                                ports: slice.ports.clone(),
                            });
                        }
                    }
                }
            }
        }
        out
    }

    /// What `ip` is the address of.
    pub fn ptr(&self, ip: IpAddr) -> impl Iterator<Item = &PtrTarget> {
        self.ptr.get(&ip).into_iter().flatten()
    }

    /// Recomputes the reverse entries Service `key` contributes.
    fn refresh_ptr(&mut self, key: &Key) {
        for (ip, target) in self.ptr_of.remove(key).into_iter().flatten() {
            if let Some(set) = self.ptr.get_mut(&ip) {
                set.remove(&target);
                if set.is_empty() {
                    self.ptr.remove(&ip);
                }
            }
        }
        let Some(svc) = self.services.get(key) else {
            return;
        };
        let target = |endpoint: Option<String>| PtrTarget {
            namespace: key.0.clone(),
            service: key.1.clone(),
            endpoint,
        };
        let mut entries: Vec<(IpAddr, PtrTarget)> = Vec::new();
        if let ServiceKind::ClusterIp(ips) = &svc.kind {
            entries.extend(ips.iter().map(|&ip| (ip, target(None))));
        }
        if !matches!(svc.kind, ServiceKind::ExternalName(_)) {
            for ep in self.endpoints(&key.0, &key.1) {
                entries.push((ep.ip, target(Some(ep.label))));
            }
        }
        for (ip, t) in &entries {
            self.ptr.entry(*ip).or_default().insert(t.clone());
        }
        if !entries.is_empty() {
            self.ptr_of.insert(key.clone(), entries);
        }
    }
}
