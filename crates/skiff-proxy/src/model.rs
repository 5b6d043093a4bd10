//! What the proxy needs from Services and EndpointSlices, extracted once:
//! one [`ServicePortInfo`] per Service port, carrying its endpoints resolved
//! from the EndpointSlices' ports (named targetPorts resolve per slice, so
//! two endpoints of one port may listen on different numbers).
//!
//! Nothing here fails: objects the proxy cannot use (headless and
//! ExternalName Services, unknown protocols, IPv6, malformed addresses,
//! slice ports no Service port names) are skipped, as upstream's change
//! trackers skip them, so one bad object never fails a sync.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label tying an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Services carrying this label belong to another proxy (upstream's
/// `service.kubernetes.io/service-proxy-name`).
pub const SERVICE_PROXY_NAME_LABEL: &str = "service.kubernetes.io/service-proxy-name";
/// Upstream's default `sessionAffinityConfig.clientIP.timeoutSeconds`.
pub const DEFAULT_AFFINITY_TIMEOUT_SECONDS: u32 = 10_800;

/// A Service's namespace and name, cheap to clone; ordered as upstream
/// orders Services (namespace, then name).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey(Arc<(String, String)>);

impl ServiceKey {
    /// The key of `namespace/name`.
    pub fn new(namespace: &str, name: &str) -> Self {
        Self(Arc::new((namespace.to_string(), name.to_string())))
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.0.0
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.0.1
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.0.0, self.0.1)
    }
}

/// Transport protocols a Service port may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP (the default).
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// From the API's spelling (`TCP`, `UDP`, `SCTP`; absent means TCP).
    pub fn parse(value: Option<&str>) -> Option<Self> {
        match value.unwrap_or("TCP") {
            "TCP" => Some(Self::Tcp),
            "UDP" => Some(Self::Udp),
            "SCTP" => Some(Self::Sctp),
            _ => None,
        }
    }

    /// The nftables keyword (`tcp`, `udp`, `sctp`).
    pub fn nft(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Sctp => "sctp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.nft())
    }
}

/// `externalTrafficPolicy` / `internalTrafficPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrafficPolicy {
    /// Any ready endpoint in the cluster.
    Cluster,
    /// Only endpoints on this node.
    Local,
}

impl TrafficPolicy {
    fn parse(value: Option<&str>) -> Self {
        match value {
            Some("Local") => Self::Local,
            _ => Self::Cluster,
        }
    }
}

/// One endpoint of one Service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointInfo {
    /// Pod (or other) address.
    pub ip: Ipv4Addr,
    /// The target port number from the slice.
    pub port: u16,
    /// `conditions.ready` (absent means ready).
    pub ready: bool,
    /// `conditions.serving` (absent means the same as ready).
    pub serving: bool,
    /// `conditions.terminating` (absent means not terminating).
    pub terminating: bool,
    /// Whether the endpoint runs on this node (`nodeName`).
    pub local: bool,
    /// Whether it runs on another node (`nodeName` set, and not this
    /// node's); neither this nor `local` when the slice does not say.
    pub remote: bool,
}

/// One port of one Service, with everything its rules need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePortInfo {
    /// Namespace of the Service.
    pub namespace: String,
    /// Name of the Service.
    pub name: String,
    /// The port's name (may be empty for a single-port Service).
    pub port_name: String,
    /// Protocol.
    pub protocol: Protocol,
    /// The Service port.
    pub port: u16,
    /// IPv4 ClusterIPs.
    pub cluster_ips: Vec<Ipv4Addr>,
    /// NodePort, when the Service has one.
    pub node_port: Option<u16>,
    /// `spec.externalIPs` (IPv4).
    pub external_ips: Vec<Ipv4Addr>,
    /// `status.loadBalancer.ingress[].ip` (IPv4, not `ipMode: Proxy`).
    pub load_balancer_ips: Vec<Ipv4Addr>,
    /// `sessionAffinity: ClientIP` timeout, in seconds.
    pub affinity_timeout: Option<u32>,
    /// `externalTrafficPolicy`.
    pub external_policy: TrafficPolicy,
    /// `internalTrafficPolicy`.
    pub internal_policy: TrafficPolicy,
    /// Endpoints from every slice of the Service, deduplicated by address
    /// and port, sorted.
    pub endpoints: Vec<EndpointInfo>,
}

impl ServicePortInfo {
    /// `namespace/name/protocol/port`: unique per Service port and a valid
    /// part of an nftables identifier.
    pub fn id(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.namespace, self.name, self.protocol, self.port
        )
    }

    /// Whether traffic reaches it from outside the cluster (NodePort,
    /// externalIPs or load balancer addresses).
    pub fn externally_accessible(&self) -> bool {
        self.node_port.is_some()
            || !self.external_ips.is_empty()
            || !self.load_balancer_ips.is_empty()
    }
}

fn port_u16(value: i32) -> Option<u16> {
    u16::try_from(value).ok().filter(|p| *p != 0)
}

fn ipv4s<'a>(values: impl IntoIterator<Item = &'a String>) -> Vec<Ipv4Addr> {
    let mut out: Vec<Ipv4Addr> = values.into_iter().filter_map(|s| s.parse().ok()).collect();
    out.sort();
    out.dedup();
    out
}

/// The Service's ports in proxy terms; empty for Services that get no rules
/// (headless, ExternalName, no ClusterIP, another proxy's).
pub fn service_ports(service: &Service) -> Vec<ServicePortInfo> {
    let meta = &service.metadata;
    let (Some(namespace), Some(name), Some(spec)) = (&meta.namespace, &meta.name, &service.spec)
    else {
        return Vec::new();
    };
    if meta
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(SERVICE_PROXY_NAME_LABEL))
        || spec.type_.as_deref() == Some("ExternalName")
    {
        return Vec::new();
    }
    let cluster_ips = match (&spec.cluster_ips, &spec.cluster_ip) {
        (Some(ips), _) if !ips.is_empty() => ipv4s(ips),
        (_, Some(ip)) => ipv4s([ip]),
        _ => Vec::new(),
    };
    // Headless ("None") and IPv6-only Services parse to no address.
    if cluster_ips.is_empty() {
        return Vec::new();
    }
    let external_ips = ipv4s(spec.external_ips.iter().flatten());
    let load_balancer_ips = match spec.type_.as_deref() {
        Some("LoadBalancer") => ipv4s(
            service
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .into_iter()
                .flatten()
                .filter(|i| i.ip_mode.as_deref() != Some("Proxy"))
                .filter_map(|i| i.ip.as_ref()),
        ),
        _ => Vec::new(),
    };
    let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u32::try_from(t).ok())
            .filter(|t| *t > 0)
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT_SECONDS)
    });
    let node_ports_allowed = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
    let mut out = Vec::new();
    for port in spec.ports.iter().flatten() {
        let (Some(protocol), Some(number)) = (
            Protocol::parse(port.protocol.as_deref()),
            port_u16(port.port),
        ) else {
            continue;
        };
        out.push(ServicePortInfo {
            namespace: namespace.clone(),
            name: name.clone(),
            port_name: port.name.clone().unwrap_or_default(),
            protocol,
            port: number,
            cluster_ips: cluster_ips.clone(),
            node_port: port
                .node_port
                .and_then(port_u16)
                .filter(|_| node_ports_allowed),
            external_ips: external_ips.clone(),
            load_balancer_ips: load_balancer_ips.clone(),
            affinity_timeout,
            external_policy: TrafficPolicy::parse(spec.external_traffic_policy.as_deref()),
            internal_policy: TrafficPolicy::parse(spec.internal_traffic_policy.as_deref()),
            endpoints: Vec::new(),
        });
    }
    out
}

/// Key of a Service port's endpoints: namespace, Service, port name, protocol.
type PortKey = (String, String, String, Protocol);

/// Every Service's ports with their endpoints, sorted by id.
pub fn build(
    services: &[&Service],
    slices: &[&EndpointSlice],
    node_name: &str,
) -> Vec<ServicePortInfo> {
    let mut endpoints: HashMap<PortKey, BTreeMap<(Ipv4Addr, u16), EndpointInfo>> = HashMap::new();
    for slice in slices {
        collect_slice(slice, node_name, &mut endpoints);
    }
    let mut ports: Vec<ServicePortInfo> = services
        .iter()
        .flat_map(|s| service_ports(s))
        .map(|mut sp| {
            let key = (
                sp.namespace.clone(),
                sp.name.clone(),
                sp.port_name.clone(),
                sp.protocol,
            );
            if let Some(eps) = endpoints.get(&key) {
                sp.endpoints = eps.values().cloned().collect();
            }
            sp
        })
        .collect();
    ports.sort_by(|a, b| {
        (&a.namespace, &a.name, a.protocol, a.port).cmp(&(
            &b.namespace,
            &b.name,
            b.protocol,
            b.port,
        ))
    });
    ports
}

fn collect_slice(
    slice: &EndpointSlice,
    node_name: &str,
    out: &mut HashMap<PortKey, BTreeMap<(Ipv4Addr, u16), EndpointInfo>>,
) {
    if slice.address_type != "IPv4" {
        return;
    }
    let (Some(namespace), Some(service)) = (
        slice.metadata.namespace.as_ref(),
        slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL)),
    ) else {
        return;
    };
    for port in slice.ports.iter().flatten() {
        let (Some(protocol), Some(number)) = (
            Protocol::parse(port.protocol.as_deref()),
            port.port.and_then(port_u16),
        ) else {
            continue;
        };
        let key = (
            namespace.clone(),
            service.clone(),
            port.name.clone().unwrap_or_default(),
            protocol,
        );
        let eps = out.entry(key).or_default();
        for ep in &slice.endpoints {
            // Upstream uses the first address; the others are redundant.
            let Some(ip) = ep
                .addresses
                .first()
                .and_then(|a| a.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            let conditions = ep.conditions.as_ref();
            let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
            let info = EndpointInfo {
                ip,
                port: number,
                ready,
                serving: conditions.and_then(|c| c.serving).unwrap_or(ready),
                terminating: conditions.and_then(|c| c.terminating).unwrap_or(false),
                local: ep.node_name.as_deref() == Some(node_name),
                remote: ep.node_name.as_deref().is_some_and(|n| n != node_name),
            };
            // The same address in two slices (a slice mid-move): keep the
            // more usable record.
            eps.entry((ip, number))
                .and_modify(|old| {
                    if rank(&info) > rank(old) {
                        *old = info.clone();
                    }
                })
                .or_insert(info);
        }
    }
}

fn rank(ep: &EndpointInfo) -> u8 {
    match (ep.ready, ep.serving) {
        (true, _) => 2,
        (false, true) => 1,
        _ => 0,
    }
}

/// Endpoints traffic may go to, as upstream's `CategorizeEndpoints` (without
/// topology hints): ready ones, or when none is ready the serving and
/// terminating ones.
pub fn usable(endpoints: &[EndpointInfo], local_only: bool) -> Vec<&EndpointInfo> {
    let candidates = || endpoints.iter().filter(move |e| !local_only || e.local);
    let ready: Vec<&EndpointInfo> = candidates().filter(|e| e.ready).collect();
    if !ready.is_empty() {
        return ready;
    }
    candidates()
        .filter(|e| e.serving && e.terminating)
        .collect()
}
