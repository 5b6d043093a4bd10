//! Services to an nftables [`Ruleset`]: the pure core of the proxy. The
//! table is a fixed [`base`] plus one [`service`] fragment per Service, so
//! a change to one Service can be applied as a change to its fragment (see
//! [`crate::table`]).
//!
//! The layout follows kube-proxy's nftables mode (one table, verdict maps
//! keyed `ip daddr . meta l4proto . th dport`, per Service-port chains, a
//! masquerade mark), in our own words, except for how an endpoint is picked
//! (see `pick` and `balance`):
//!
//! ```text
//! nat-prerouting / nat-output ─ services ─┬ @service-ips      → pick-<proto>-<n> / service-<id> / local-<id> / external-<id>
//!                                         └ @service-nodeports → external-<id>   (daddr in @nodeport-ips)
//! pick-<proto>-<n> : (ClusterIP only, no affinity; shared) masquerade off-cluster sources,
//!                    dnat via @service-endpoints-<proto>[daddr . dport . numgen mod n]
//! service-<id>  : masquerade off-cluster sources, then the random pick:
//!                 also external  → numgen cascade of dnat rules
//!                 ClientIP affinity → affinity lookups, numgen cascade → endpoint-<id>__<ip>/<port>
//! external-<id> : masquerade (policy Cluster) or pod/host short cuts + local endpoints (policy Local)
//! endpoint-…    : (affinity only) affinity update, dnat
//! nat-postrouting ─ masquerading (hairpin: saddr . daddr in @hairpin-endpoints, or mark 0x4000 → masquerade)
//! filter-input/forward/output ─ ct state new ─ endpoints-check (@no-endpoint-*: reject or drop)
//! ```
//!
//! Cost, measured on nft 1.0.6 (kernel 6.18): every `nft -f` that adds a
//! rule or an element first dumps every chain of every table in the
//! namespace into its cache, and the kernel re-validates every chain
//! reachable from the base chains whenever a transaction adds a jump, goto
//! or verdict element. Both scale with the number of chains and rules, not
//! with the size of the change, so the layout keeps those small: no chain per
//! endpoint (upstream has one, for the hairpin mark and affinity; here
//! hairpin is one set lookup in postrouting and only Services with affinity
//! get endpoint chains), and a Service reached only by its ClusterIP has no
//! chain at all (its dispatch element points at a shared pick chain, its
//! endpoints are map elements). At 10,000 such Services with 10 endpoints
//! that is 13 chains and 21 rules (upstream: 110k chains, 310k rules). What
//! remained of a full load was nft parsing the elements (about 5 µs each)
//! and the kernel inserting them (about 1.5 µs); a large table's elements
//! are therefore encoded here and sent over netlink (see
//! [`crate::table::Staged`] and [`element_type`]). The hairpin set holds
//! only this node's endpoints.
//!
//! NetworkPolicy is not here: it has its own table (see [`crate::netpol`]).

use std::net::Ipv4Addr;

use skiff_sys::nft::{FieldType, SetData, SetType};

use crate::model::{self, EndpointInfo, Protocol, ServicePortInfo, TrafficPolicy};
use crate::ruleset::{Builder as _, Ruleset, SetKind};
use crate::table::{self, Fragment};

/// Default table name.
pub const DEFAULT_TABLE: &str = "skiff-proxy";
/// The mark bit of packets to masquerade (upstream's 0x4000).
pub const MASQUERADE_MARK: &str = "0x4000";

/// Base chain of NAT for packets arriving from elsewhere.
pub const NAT_PREROUTING: &str = "nat-prerouting";
/// Base chain of NAT for packets the host sends.
pub const NAT_OUTPUT: &str = "nat-output";
/// Base chain of source NAT.
pub const NAT_POSTROUTING: &str = "nat-postrouting";
/// Base filter chain for packets to this host.
pub const FILTER_INPUT: &str = "filter-input";
/// Base filter chain for forwarded packets (pods' traffic).
pub const FILTER_FORWARD: &str = "filter-forward";
/// Base filter chain for packets the host sends.
pub const FILTER_OUTPUT: &str = "filter-output";
/// Dispatches to Service chains by destination.
pub const SERVICES: &str = "services";
/// Sets the masquerade mark.
pub const MARK_FOR_MASQUERADE: &str = "mark-for-masquerade";
/// Masquerades marked packets.
pub const MASQUERADING: &str = "masquerading";
/// Rejects new connections to Services without endpoints.
pub const SERVICE_ENDPOINTS_CHECK: &str = "service-endpoints-check";
/// The same for NodePorts.
pub const NODEPORT_ENDPOINTS_CHECK: &str = "nodeport-endpoints-check";
/// Sends the rejection (TCP reset or ICMP port unreachable).
pub const REJECT_CHAIN: &str = "reject-chain";
/// `daddr . proto . dport` → verdict for ClusterIPs, externalIPs, LB IPs.
pub const SERVICE_IPS: &str = "service-ips";
/// `proto . dport` → verdict for NodePorts.
pub const SERVICE_NODEPORTS: &str = "service-nodeports";
/// Addresses NodePorts answer on.
pub const NODEPORT_IPS: &str = "nodeport-ips";
/// Destinations of Services without (usable) endpoints.
pub const NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
/// NodePorts of Services without (usable) endpoints.
pub const NO_ENDPOINT_NODEPORTS: &str = "no-endpoint-nodeports";
/// Prefix of the maps `service-endpoints-<proto>`: `ClusterIP . port . i` →
/// `address . port` of endpoint `i`, the random pick of Services reached
/// only through their ClusterIP. One map per protocol: nft 1.0.6 cannot
/// add a rule using a map keyed `meta l4proto . th dport` once that map is
/// in the kernel ("conflicting protocols specified: tcp vs. th").
pub const SERVICE_ENDPOINTS: &str = "service-endpoints";
/// `ip . ip` of every endpoint: a DNATed packet whose source is its
/// destination is a pod reaching itself through a Service (hairpin) and is
/// masqueraded so the reply comes back through the host.
pub const HAIRPIN_ENDPOINTS: &str = "hairpin-endpoints";

/// What the rules depend on besides Services and EndpointSlices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// nftables table (family `ip`).
    pub table: String,
    /// This node's name: endpoints with this `nodeName` are local.
    pub node_name: String,
    /// Addresses NodePorts are served on (the node's addresses, and
    /// 127.0.0.1 when localhost NodePorts are wanted: that needs
    /// `route_localnet`).
    pub nodeport_addresses: Vec<Ipv4Addr>,
    /// The cluster's pod CIDR (`10.42.0.0/16`): traffic from outside it to a
    /// ClusterIP is masqueraded, and external traffic from inside it keeps
    /// its source. `None` masquerades all external traffic.
    pub cluster_cidr: Option<Cidr>,
}

/// An IPv4 CIDR, checked on construction (it is written into nft scripts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: Ipv4Addr,
    prefix_len: u8,
}

impl Cidr {
    /// `addr/prefix_len`; `None` if the prefix is longer than 32.
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Option<Self> {
        (prefix_len <= 32).then_some(Self { addr, prefix_len })
    }

    /// Whether `ip` is inside the block.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let (first, last) = self.range();
        (first..=last).contains(&u32::from(ip))
    }

    /// The first and last address of the block, as numbers.
    pub fn range(&self) -> (u32, u32) {
        let host_bits = u32::MAX
            .checked_shr(u32::from(self.prefix_len))
            .unwrap_or(0);
        let first = u32::from(self.addr) & !host_bits;
        (first, first | host_bits)
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| format!("invalid CIDR {s:?}"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| format!("invalid CIDR {s:?}"))?;
        let len: u8 = len.parse().map_err(|_| format!("invalid CIDR {s:?}"))?;
        Cidr::new(addr, len).ok_or_else(|| format!("invalid CIDR {s:?}"))
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len))
            .unwrap_or(0);
        write!(
            f,
            "{}/{}",
            Ipv4Addr::from(u32::from(self.addr) & mask),
            self.prefix_len
        )
    }
}

/// Whether `name` can be an nftables table name we write into scripts.
pub fn valid_table_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name.len() <= 64
}

/// Whether `id` may be written into an nftables identifier: Kubernetes
/// names are DNS labels/subdomains, but the objects come from the network.
pub(crate) fn valid_identifier_part(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '/' | '_'))
}

/// The type of the base set `name`, as [`base`] declares it, to load its
/// elements over netlink; `None` for other sets.
pub fn element_type(name: &str) -> Option<SetType> {
    use FieldType::{HostU32, InetProto, InetService, Ipv4Addr as Ip};
    let (key, data) = match name {
        SERVICE_IPS | NO_ENDPOINT_SERVICES => (vec![Ip, InetProto, InetService], SetData::Verdict),
        SERVICE_NODEPORTS | NO_ENDPOINT_NODEPORTS => {
            (vec![InetProto, InetService], SetData::Verdict)
        }
        NODEPORT_IPS => (vec![Ip], SetData::None),
        HAIRPIN_ENDPOINTS => (vec![Ip, Ip], SetData::None),
        _ => {
            let proto = name.strip_prefix(SERVICE_ENDPOINTS)?.strip_prefix('-')?;
            if ![Protocol::Tcp, Protocol::Udp, Protocol::Sctp]
                .iter()
                .any(|p| p.nft() == proto)
            {
                return None;
            }
            // `typeof ip daddr . P dport . numgen … : ip daddr . P dport`
            (
                vec![Ip, InetService, HostU32],
                SetData::Value(vec![Ip, InetService]),
            )
        }
    };
    Some(SetType { key, data })
}

fn endpoint_chain(id: &str, ep: &EndpointInfo) -> String {
    format!("endpoint-{id}__{}/{}", ep.ip, ep.port)
}

fn affinity_set(id: &str, ep: &EndpointInfo) -> String {
    format!("affinity-{id}__{}/{}", ep.ip, ep.port)
}

/// The ruleset for `ports` (from [`model::build`]): the [`base`] and each
/// Service's [`service`] fragment, assembled as [`table::Table`] does.
pub fn compute(config: &ProxyConfig, ports: &[ServicePortInfo]) -> Ruleset {
    let mut rs = base(config);
    for group in ports.chunk_by(|a, b| (&a.namespace, &a.name) == (&b.namespace, &b.name)) {
        table::merge(&mut rs, service(config, group));
    }
    rs
}

/// What one Service's ports (from [`model::build`]) add to the table.
pub fn service(config: &ProxyConfig, ports: &[ServicePortInfo]) -> Fragment {
    let mut f = Fragment::default();
    for sp in ports {
        service_port(&mut f, config, sp);
    }
    f
}

/// The fixed part: base chains, dispatch, masquerading, rejection.
pub fn base(config: &ProxyConfig) -> Ruleset {
    let mut rs = Ruleset::new(&config.table);
    base_into(&mut rs, config);
    rs
}

fn base_into(rs: &mut Ruleset, config: &ProxyConfig) {
    let key = "type ipv4_addr . inet_proto . inet_service : verdict;";
    rs.declare_set(SERVICE_IPS, SetKind::Map, key, false);
    rs.declare_set(NO_ENDPOINT_SERVICES, SetKind::Map, key, false);
    let port_key = "type inet_proto . inet_service : verdict;";
    rs.declare_set(SERVICE_NODEPORTS, SetKind::Map, port_key, false);
    rs.declare_set(NO_ENDPOINT_NODEPORTS, SetKind::Map, port_key, false);
    rs.declare_set(NODEPORT_IPS, SetKind::Set, "type ipv4_addr;", false);
    for proto in [Protocol::Tcp, Protocol::Udp, Protocol::Sctp] {
        let p = proto.nft();
        rs.declare_set(
            &format!("{SERVICE_ENDPOINTS}-{p}"),
            SetKind::Map,
            &format!("typeof ip daddr . {p} dport . numgen random mod 1 : ip daddr . {p} dport;"),
            false,
        );
    }
    rs.declare_set(
        HAIRPIN_ENDPOINTS,
        SetKind::Set,
        "type ipv4_addr . ipv4_addr;",
        false,
    );
    for ip in &config.nodeport_addresses {
        rs.element(NODEPORT_IPS, ip.to_string(), None);
    }

    let hooks = [
        (
            NAT_PREROUTING,
            "type nat hook prerouting priority dstnat; policy accept;",
        ),
        (
            NAT_OUTPUT,
            "type nat hook output priority -100; policy accept;",
        ),
        (
            NAT_POSTROUTING,
            "type nat hook postrouting priority srcnat; policy accept;",
        ),
        // Before the usual filter priority, after DNAT: a packet still
        // addressed to a Service here found no endpoint.
        (
            FILTER_INPUT,
            "type filter hook input priority -10; policy accept;",
        ),
        (
            FILTER_FORWARD,
            "type filter hook forward priority -10; policy accept;",
        ),
        (
            FILTER_OUTPUT,
            "type filter hook output priority -10; policy accept;",
        ),
    ];
    for (name, hook) in hooks {
        rs.chain(name).hook = Some(hook.to_string());
    }
    rs.rule(NAT_PREROUTING, format!("jump {SERVICES}"));
    rs.rule(NAT_OUTPUT, format!("jump {SERVICES}"));
    rs.rule(NAT_POSTROUTING, format!("jump {MASQUERADING}"));
    if config.nodeport_addresses.iter().any(Ipv4Addr::is_loopback) {
        // route_localnet (needed for 127.0.0.1 NodePorts) would also let
        // other hosts reach the node's loopback services: as upstream, only
        // loopback itself (or a Service DNAT to a loopback endpoint) may open
        // connections to 127.0.0.0/8.
        rs.rule(
            FILTER_INPUT,
            "ip daddr 127.0.0.0/8 ip saddr != 127.0.0.0/8 ct state != { established, related } ct status & dnat == 0 drop",
        );
    }
    rs.rule(
        FILTER_INPUT,
        format!("ct state new jump {NODEPORT_ENDPOINTS_CHECK}"),
    );
    rs.rule(
        FILTER_INPUT,
        format!("ct state new jump {SERVICE_ENDPOINTS_CHECK}"),
    );
    rs.rule(
        FILTER_FORWARD,
        format!("ct state new jump {SERVICE_ENDPOINTS_CHECK}"),
    );
    rs.rule(
        FILTER_OUTPUT,
        format!("ct state new jump {NODEPORT_ENDPOINTS_CHECK}"),
    );
    rs.rule(
        FILTER_OUTPUT,
        format!("ct state new jump {SERVICE_ENDPOINTS_CHECK}"),
    );

    rs.rule(
        SERVICES,
        format!("ip daddr . meta l4proto . th dport vmap @{SERVICE_IPS}"),
    );
    rs.rule(
        SERVICES,
        format!("ip daddr @{NODEPORT_IPS} meta l4proto . th dport vmap @{SERVICE_NODEPORTS}"),
    );
    rs.rule(
        SERVICE_ENDPOINTS_CHECK,
        format!("ip daddr . meta l4proto . th dport vmap @{NO_ENDPOINT_SERVICES}"),
    );
    rs.rule(
        NODEPORT_ENDPOINTS_CHECK,
        format!("ip daddr @{NODEPORT_IPS} meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS}"),
    );
    rs.rule(REJECT_CHAIN, "meta l4proto tcp reject with tcp reset");
    rs.rule(REJECT_CHAIN, "reject with icmp type port-unreachable");
    rs.rule(
        MARK_FOR_MASQUERADE,
        format!("mark set mark or {MASQUERADE_MARK}"),
    );
    rs.rule(
        MASQUERADING,
        format!(
            "ct status dnat ip saddr . ip daddr @{HAIRPIN_ENDPOINTS} jump {MARK_FOR_MASQUERADE}"
        ),
    );
    rs.rule(
        MASQUERADING,
        format!("mark and {MASQUERADE_MARK} == 0 return"),
    );
    // Clear the bit so a packet re-entering (e.g. via a tunnel) is not
    // masqueraded again.
    rs.rule(MASQUERADING, format!("mark set mark xor {MASQUERADE_MARK}"));
    rs.rule(MASQUERADING, "masquerade fully-random");
}

/// The random pick for a Service port reached only through its ClusterIPs
/// and without affinity, the common case and the cheapest: a chain shared
/// by every such port of one protocol and endpoint count draws `numgen
/// random mod n` and DNATs to what `@service-endpoints-<proto>` holds for
/// (ClusterIP, port, draw). The dispatch map points straight at it, so such
/// a Service has no chain of its own and an endpoint change is an element
/// change (no rules, and the kernel does not re-validate the table).
/// Returns the chain's name.
fn pick(
    rs: &mut Fragment,
    config: &ProxyConfig,
    sp: &ServicePortInfo,
    endpoints: &[&EndpointInfo],
) -> String {
    let proto = sp.protocol.nft();
    let n = endpoints.len();
    let pick = format!("pick-{proto}-{n}");
    if !rs.chains.contains_key(&pick) {
        // Only ClusterIPs lead here: the host (or anything off the pod
        // network) reaching one is masqueraded so replies come back through
        // this node.
        if let Some(cidr) = config.cluster_cidr {
            rs.rule(
                &pick,
                format!("ip saddr != {cidr} jump {MARK_FOR_MASQUERADE}"),
            );
        }
        rs.rule(
            &pick,
            format!(
                "dnat ip to ip daddr . {proto} dport . numgen random mod {n} map @{SERVICE_ENDPOINTS}-{proto}"
            ),
        );
    }
    for ip in &sp.cluster_ips {
        for (i, ep) in endpoints.iter().enumerate() {
            rs.element(
                &format!("{SERVICE_ENDPOINTS}-{proto}"),
                format!("{ip} . {} . {i}", sp.port),
                Some(format!("{} . {}", ep.ip, ep.port)),
            );
        }
    }
    pick
}

/// Load balancing over `endpoints` in `chain`: affinity lookups first, then
/// a random pick. Empty `endpoints` adds nothing.
fn balance(
    rs: &mut Fragment,
    chain: &str,
    id: &str,
    sp: &ServicePortInfo,
    endpoints: &[&EndpointInfo],
) {
    if endpoints.is_empty() {
        return;
    }
    let proto = sp.protocol.nft();
    let n = endpoints.len();
    // With affinity the pick goes through the endpoint chains (they record
    // the client); without, it DNATs right here.
    let action = |ep: &EndpointInfo| match sp.affinity_timeout {
        Some(_) => format!("goto {}", endpoint_chain(id, ep)),
        None => dnat(proto, ep),
    };
    if sp.affinity_timeout.is_some() {
        for ep in endpoints {
            rs.rule(
                chain,
                format!(
                    "ip saddr @{} goto {}",
                    affinity_set(id, ep),
                    endpoint_chain(id, ep)
                ),
            );
        }
    }
    // Otherwise a uniform pick as a cascade: endpoint i of n is taken with
    // probability 1/(n-i) when none before it was, i.e. 1/n overall. Not
    // `numgen random mod n vmap { … }` as upstream writes it: every inline
    // map is an anonymous set, and adding thousands of them to one table
    // costs quadratic time in the kernel (1,000 Services: seconds; 10,000:
    // minutes).
    for (i, ep) in endpoints.iter().enumerate() {
        let target = action(ep);
        if i + 1 == n {
            rs.rule(chain, target);
        } else {
            rs.rule(chain, format!("numgen random mod {} == 0 {target}", n - i));
        }
    }
}

/// Marks `endpoints` for the hairpin masquerade. Only endpoints on this
/// node (or whose node is unknown) can reach themselves through this node's
/// rules: a pod's packets are translated on its own node.
fn hairpin(rs: &mut Fragment, endpoints: &[&EndpointInfo]) {
    for ep in endpoints.iter().filter(|e| !e.remote) {
        rs.element(HAIRPIN_ENDPOINTS, format!("{} . {}", ep.ip, ep.ip), None);
    }
}

/// The verdict for a destination without usable endpoints: with no
/// endpoint at all reject; with endpoints elsewhere only (a Local policy)
/// drop (upstream: the client should try another node).
fn no_endpoints(cluster: &[&EndpointInfo]) -> String {
    if cluster.is_empty() {
        format!("goto {REJECT_CHAIN}")
    } else {
        "drop".to_string()
    }
}

fn dnat(proto: &str, ep: &EndpointInfo) -> String {
    format!("meta l4proto {proto} dnat to {}:{}", ep.ip, ep.port)
}

fn service_port(rs: &mut Fragment, config: &ProxyConfig, sp: &ServicePortInfo) {
    let id = sp.id();
    if !valid_identifier_part(&id) {
        return;
    }
    let proto = sp.protocol.nft();
    let cluster = model::usable(&sp.endpoints, false);
    let local = model::usable(&sp.endpoints, true);
    let external_used = sp.externally_accessible();
    // Two policy chains, as upstream: all usable endpoints, and this node's.
    let cluster_chain = format!("service-{id}");
    let local_chain = format!("local-{id}");
    let (internal, internal_chain) = match sp.internal_policy {
        TrafficPolicy::Cluster => (&cluster, &cluster_chain),
        TrafficPolicy::Local => (&local, &local_chain),
    };
    let (external, external_target) = match sp.external_policy {
        TrafficPolicy::Cluster => (&cluster, &cluster_chain),
        TrafficPolicy::Local => (&local, &local_chain),
    };
    let external = if external_used {
        external.as_slice()
    } else {
        &[]
    };
    if !external_used && sp.affinity_timeout.is_none() {
        // Reached only through its ClusterIPs: the dispatch map points at
        // the shared pick chain (see `pick`).
        hairpin(rs, internal);
        let verdict = if internal.is_empty() {
            None
        } else {
            Some(format!("goto {}", pick(rs, config, sp, internal)))
        };
        for ip in &sp.cluster_ips {
            let key = format!("{ip} . {proto} . {}", sp.port);
            match &verdict {
                Some(v) => rs.element(SERVICE_IPS, key, Some(v.clone())),
                None => rs.element(NO_ENDPOINT_SERVICES, key, Some(no_endpoints(&cluster))),
            }
        }
        return;
    }
    let need_cluster_chain = !cluster.is_empty()
        && (sp.internal_policy == TrafficPolicy::Cluster || !external.is_empty());
    let need_local_chain = !local.is_empty()
        && (sp.internal_policy == TrafficPolicy::Local
            || (external_used && sp.external_policy == TrafficPolicy::Local));

    let mut used: Vec<&EndpointInfo> = Vec::new();
    if need_cluster_chain {
        used.extend(cluster.iter().copied());
    }
    if need_local_chain {
        used.extend(local.iter().copied());
    }
    used.sort_by_key(|e| (e.ip, e.port));
    used.dedup_by_key(|e| (e.ip, e.port));
    hairpin(rs, &used);
    for ep in &used {
        let Some(timeout) = sp.affinity_timeout else {
            continue;
        };
        let chain = endpoint_chain(&id, ep);
        let set = affinity_set(&id, ep);
        rs.declare_set(
            &set,
            SetKind::Set,
            &format!("type ipv4_addr; flags dynamic,timeout; timeout {timeout}s;"),
            true,
        );
        rs.rule(&chain, format!("update @{set} {{ ip saddr }}"));
        rs.rule(&chain, dnat(proto, ep));
    }
    if !internal.is_empty()
        && let Some(cidr) = config.cluster_cidr
    {
        // The host (or anything off the pod network) reaching a ClusterIP
        // is masqueraded so replies come back through this node.
        for ip in &sp.cluster_ips {
            rs.rule(
                internal_chain,
                format!(
                    "ip daddr {ip} {proto} dport {} ip saddr != {cidr} jump {MARK_FOR_MASQUERADE}",
                    sp.port
                ),
            );
        }
    }
    if need_cluster_chain {
        balance(rs, &cluster_chain, &id, sp, &cluster);
    }
    if need_local_chain {
        balance(rs, &local_chain, &id, sp, &local);
    }

    let nothing = no_endpoints(&cluster);
    for ip in &sp.cluster_ips {
        let key = format!("{ip} . {proto} . {}", sp.port);
        if internal.is_empty() {
            rs.element(NO_ENDPOINT_SERVICES, key, Some(nothing.clone()));
        } else {
            rs.element(SERVICE_IPS, key, Some(format!("goto {internal_chain}")));
        }
    }
    if !external_used {
        return;
    }

    let external_chain = format!("external-{id}");
    if !external.is_empty() {
        match (sp.external_policy, config.cluster_cidr) {
            (TrafficPolicy::Cluster, Some(cidr)) => {
                rs.rule(
                    &external_chain,
                    format!("ip saddr != {cidr} jump {MARK_FOR_MASQUERADE}"),
                );
            }
            (TrafficPolicy::Cluster, None) => {
                rs.rule(&external_chain, format!("jump {MARK_FOR_MASQUERADE}"));
            }
            (TrafficPolicy::Local, cidr) => {
                // Pods and the host itself may use any endpoint (as if they
                // had used the ClusterIP); only traffic from outside stays
                // on this node, keeping its source address.
                if let Some(cidr) = cidr {
                    rs.rule(
                        &external_chain,
                        format!("ip saddr {cidr} goto {cluster_chain}"),
                    );
                }
                rs.rule(
                    &external_chain,
                    format!("fib saddr type local jump {MARK_FOR_MASQUERADE}"),
                );
                rs.rule(
                    &external_chain,
                    format!("fib saddr type local goto {cluster_chain}"),
                );
            }
        }
        rs.rule(&external_chain, format!("goto {external_target}"));
    }
    let verdict = if external.is_empty() {
        None
    } else {
        Some(format!("goto {external_chain}"))
    };
    for ip in sp.external_ips.iter().chain(&sp.load_balancer_ips) {
        let key = format!("{ip} . {proto} . {}", sp.port);
        match &verdict {
            Some(v) => rs.element(SERVICE_IPS, key, Some(v.clone())),
            None => rs.element(NO_ENDPOINT_SERVICES, key, Some(nothing.clone())),
        };
    }
    if let Some(node_port) = sp.node_port {
        let key = format!("{proto} . {node_port}");
        match &verdict {
            Some(v) => rs.element(SERVICE_NODEPORTS, key, Some(v.clone())),
            None => rs.element(NO_ENDPOINT_NODEPORTS, key, Some(nothing.clone())),
        };
    }
}
