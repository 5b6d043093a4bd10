//! Services: defaults, ClusterIP allocation from the service CIDR and
//! NodePort allocation from 30000-32767.
//!
//! Every allocation is a key in the store (`/registry/allocations/...`)
//! created with create-if-absent, so two writers (even two servers on one
//! etcd) can never hand out the same IP or port, and the allocations
//! survive restarts with the Services they belong to. Deleting a Service
//! releases its keys; [`repair`] at start releases keys whose Service is
//! gone and re-records IPs and ports of Services that lost theirs.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use bytes::Bytes;
use serde_json::{Value, json};
use skiff_api::resources::ResourceInfo;
use skiff_api::status::ApiError;
use skiff_store::{AnyStore, ListOptions, Store, StoreError};

mod alloc;

const CLUSTER_IP_PREFIX: &str = "/registry/allocations/clusterips/";
const NODE_PORT_PREFIX: &str = "/registry/allocations/nodeports/";
/// The NodePort range (upstream's default `--service-node-port-range`).
pub const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

/// The service CIDR (IPv4) allocations come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceCidr {
    base: u32,
    prefix: u8,
}

impl ServiceCidr {
    /// Parses `a.b.c.d/n` (n between 8 and 30).
    pub fn parse(s: &str) -> Option<ServiceCidr> {
        let (ip, prefix) = s.split_once('/')?;
        let ip: Ipv4Addr = ip.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        if !(8..=30).contains(&prefix) {
            return None;
        }
        let mask = u32::MAX << (32 - prefix);
        Some(ServiceCidr {
            base: u32::from(ip) & mask,
            prefix,
        })
    }

    /// The first usable address: the ClusterIP of `default/kubernetes`.
    pub fn first(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }

    /// The address `index` places after the network address, if the range
    /// holds it as an allocatable address (index 10 is the default cluster
    /// DNS address, as k3s derives it).
    pub fn indexed(&self, index: u32) -> Option<Ipv4Addr> {
        let ip = Ipv4Addr::from(self.base.checked_add(index)?);
        self.contains(ip).then_some(ip)
    }

    fn size(&self) -> u32 {
        1u32 << (32 - self.prefix)
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        let ip = u32::from(ip);
        // Network and broadcast addresses are not allocatable.
        ip > self.base && ip < self.base + self.size() - 1
    }

    fn nth(&self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1 + offset % (self.size() - 2))
    }
}

impl std::fmt::Display for ServiceCidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

impl Default for ServiceCidr {
    fn default() -> Self {
        ServiceCidr {
            base: u32::from(Ipv4Addr::new(10, 43, 0, 0)),
            prefix: 16,
        }
    }
}

pub use alloc::{Allocation, allocate};

/// Releases every allocation recorded for `svc` (after its delete).
pub async fn release_all(store: &AnyStore, svc: &Value) {
    let owner = owner_of(svc);
    for key in allocation_keys(svc) {
        release(store, &key, &owner).await;
    }
}

/// Upstream's `patchAllocatedValues`: an update that leaves out values the
/// server allocated (a re-applied manifest without `clusterIP` or
/// `nodePort`) keeps them, as long as the type still uses them. NodePorts
/// are matched by port name, and never carried onto a port when another
/// port of the update already names that NodePort.
pub fn patch_allocated_values(old: &Value, new: &mut Value) {
    if needs_cluster_ip(old) && needs_cluster_ip(new) {
        if spec_str(new, "clusterIP").is_empty()
            && let Some(ip) = old.pointer("/spec/clusterIP").filter(|v| !v.is_null())
        {
            new["spec"]["clusterIP"] = ip.clone();
        }
        let new_ips_empty = new
            .pointer("/spec/clusterIPs")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if new_ips_empty
            && let Some(ips) = old
                .pointer("/spec/clusterIPs")
                .filter(|v| v.as_array().is_some_and(|a| !a.is_empty()))
        {
            new["spec"]["clusterIPs"] = ips.clone();
        }
    }
    if has_node_port_type(old) && has_node_port_type(new) {
        let old_ports = node_ports(old);
        let new_ports = node_ports(new);
        let used: HashSet<u64> = old_ports.intersection(&new_ports).copied().collect();
        let by_name: HashMap<String, u64> = ports(old)
            .iter()
            .map(|p| (port_name(p), node_port(p)))
            .collect();
        if let Some(ports) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
            for port in ports.iter_mut().filter(|p| p.is_object()) {
                if node_port(port) != 0 {
                    continue;
                }
                let carried = by_name.get(&port_name(port)).copied().unwrap_or(0);
                if carried != 0 && !used.contains(&carried) {
                    port["nodePort"] = json!(carried);
                }
            }
        }
    }
    if needs_health_check(old) && needs_health_check(new) && health_check_node_port(new) == 0 {
        let hc = health_check_node_port(old);
        if hc != 0 {
            new["spec"]["healthCheckNodePort"] = json!(hc);
        }
    }
}

/// At start: drops allocations whose Service is gone (or is another
/// Service now), and records the IPs and ports of Services that lack them.
pub async fn repair(store: &AnyStore, services: &ResourceInfo) -> Result<(), StoreError> {
    let list = store
        .list(&services.prefix(None), ListOptions::default())
        .await?;
    let mut wanted = std::collections::HashMap::new();
    for kv in &list.kvs {
        let Ok(svc) = serde_json::from_slice::<Value>(&kv.value) else {
            continue;
        };
        for key in allocation_keys(&svc) {
            wanted.insert(key, owner_of(&svc));
        }
    }
    for prefix in [CLUSTER_IP_PREFIX, NODE_PORT_PREFIX] {
        let allocated = store.list(prefix, ListOptions::default()).await?;
        for kv in allocated.kvs {
            let owner = String::from_utf8_lossy(&kv.value).into_owned();
            match wanted.remove(&kv.key) {
                Some(w) if w == owner => {}
                Some(w) => {
                    tracing::warn!(key = %kv.key, %owner, now = %w, "allocation owner fixed");
                    let _ = store.update(&kv.key, Bytes::from(w), kv.mod_revision).await;
                }
                None => {
                    tracing::warn!(key = %kv.key, %owner, "releasing leaked allocation");
                    let _ = store.delete(&kv.key, kv.mod_revision).await;
                }
            }
        }
    }
    for (key, owner) in wanted {
        tracing::warn!(%key, %owner, "recording missing allocation");
        let _ = store.create(&key, Bytes::from(owner)).await;
    }
    Ok(())
}

/// The store keys a Service holds: its ClusterIP (unless ExternalName or
/// headless), its NodePorts and, while it needs one, its health check
/// NodePort (upstream's `releaseAllocatedResources` frees the same set).
pub(crate) fn allocation_keys(svc: &Value) -> Vec<String> {
    let mut keys = Vec::new();
    if needs_cluster_ip(svc)
        && let Ok(ip) = spec_str(svc, "clusterIP").parse::<Ipv4Addr>()
    {
        keys.push(ip_key(ip));
    }
    let mut port_keys: Vec<u64> = ports(svc)
        .iter()
        .map(node_port)
        .filter(|p| *p > 0)
        .collect();
    if needs_health_check(svc) {
        port_keys.push(health_check_node_port(svc));
    }
    for port in port_keys.into_iter().filter(|p| *p > 0) {
        let key = format!("{NODE_PORT_PREFIX}{port}");
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys
}

fn ip_key(ip: Ipv4Addr) -> String {
    format!("{CLUSTER_IP_PREFIX}{ip}")
}

fn port_key(port: u16) -> String {
    format!("{NODE_PORT_PREFIX}{port}")
}

fn spec_str<'a>(svc: &'a Value, field: &str) -> &'a str {
    svc.get("spec")
        .and_then(|s| s.get(field))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn svc_type(svc: &Value) -> &str {
    match spec_str(svc, "type") {
        "" => "ClusterIP",
        ty => ty,
    }
}

/// Every type but ExternalName has a ClusterIP (or is headless).
fn needs_cluster_ip(svc: &Value) -> bool {
    svc_type(svc) != "ExternalName"
}

/// NodePort and LoadBalancer Services carry NodePorts.
fn has_node_port_type(svc: &Value) -> bool {
    matches!(svc_type(svc), "NodePort" | "LoadBalancer")
}

/// Whether ports without a NodePort get one (a LoadBalancer may opt out
/// with `allocateLoadBalancerNodePorts: false`).
fn should_allocate_node_ports(svc: &Value) -> bool {
    match svc_type(svc) {
        "NodePort" => true,
        "LoadBalancer" => svc
            .pointer("/spec/allocateLoadBalancerNodePorts")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        _ => false,
    }
}

/// A LoadBalancer with `externalTrafficPolicy: Local` has a health check
/// NodePort.
fn needs_health_check(svc: &Value) -> bool {
    svc_type(svc) == "LoadBalancer" && spec_str(svc, "externalTrafficPolicy") == "Local"
}

fn health_check_node_port(svc: &Value) -> u64 {
    svc.pointer("/spec/healthCheckNodePort")
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

fn ports(svc: &Value) -> &[Value] {
    svc.pointer("/spec/ports")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn node_port(port: &Value) -> u64 {
    port.get("nodePort").and_then(Value::as_u64).unwrap_or(0)
}

fn port_name(port: &Value) -> String {
    port.get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn node_ports(svc: &Value) -> HashSet<u64> {
    ports(svc)
        .iter()
        .map(node_port)
        .filter(|p| *p != 0)
        .collect()
}

fn owner_of(svc: &Value) -> String {
    let m = |f: &str| {
        svc.pointer(&format!("/metadata/{f}"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    format!("{}/{}/{}", m("namespace"), m("name"), m("uid"))
}

/// Claims a free address of `cidr` for `owner` (never the first, the
/// `kubernetes` Service's); `None` when the range is full.
async fn allocate_ip(
    store: &AnyStore,
    cidr: ServiceCidr,
    owner: &str,
) -> Result<Option<Ipv4Addr>, ApiError> {
    let usable = cidr.size() - 2;
    let start: u32 = rand::random();
    // Random probing first, then a full scan so a nearly full range still
    // finds its last free address.
    for i in 0..usable.min(64) {
        let ip = cidr.nth(start.wrapping_add(i.wrapping_mul(7919)));
        if ip == cidr.first() {
            continue;
        }
        if claim(store, &ip_key(ip), owner).await? {
            return Ok(Some(ip));
        }
    }
    for i in 1..usable {
        let ip = cidr.nth(i);
        if claim(store, &ip_key(ip), owner).await? {
            return Ok(Some(ip));
        }
    }
    Ok(None)
}

/// Claims a free NodePort for `owner`; `None` when the range is full.
async fn allocate_port(store: &AnyStore, owner: &str) -> Result<Option<u16>, ApiError> {
    let span = u32::from(NODE_PORTS.end() - NODE_PORTS.start()) + 1;
    let start: u32 = rand::random();
    for i in 0..span {
        let offset = u16::try_from(start.wrapping_add(i) % span).unwrap_or(0);
        let port = NODE_PORTS.start() + offset;
        if claim(store, &port_key(port), owner).await? {
            return Ok(Some(port));
        }
    }
    Ok(None)
}

/// Records `key` for `owner` if nobody holds it; false when taken.
async fn claim(store: &AnyStore, key: &str, owner: &str) -> Result<bool, ApiError> {
    match store.create(key, Bytes::from(owner.to_owned())).await {
        Ok(_) => Ok(true),
        Err(StoreError::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(ApiError::InternalError(format!(
            "recording allocation {key}: {e}"
        ))),
    }
}

/// Deletes `key` if `owner` holds it: a key another Service holds (after
/// a repair, say) is never freed on this one's behalf.
async fn release(store: &AnyStore, key: &str, owner: &str) {
    match store.get(key).await {
        Ok(Some(kv)) if kv.value.as_ref() == owner.as_bytes() => {
            if let Err(e) = store.delete(key, kv.mod_revision).await {
                tracing::warn!(%key, error = %e, "releasing allocation failed");
            }
        }
        Ok(Some(kv)) => {
            tracing::warn!(%key, holder = %String::from_utf8_lossy(&kv.value), %owner, "not releasing an allocation held by another Service");
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(%key, error = %e, "releasing allocation failed"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn spec(spec: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "default", "uid": "u1"}, "spec": spec})
    }

    #[test]
    fn allocated_values_are_carried_as_upstream() {
        let np = |name: &str, port: u64, node: u64| json!({"name": name, "port": port, "nodePort": node});
        let bare = |name: &str, port: u64| json!({"name": name, "port": port});
        let lb_local = |hc: u64| {
            json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "healthCheckNodePort": hc,
                   "clusterIP": "10.43.0.9", "clusterIPs": ["10.43.0.9"], "ports": []})
        };
        let cases: Vec<(&str, Value, Value, Value)> = vec![
            (
                "the IP is carried between types that have one",
                json!({"type": "ClusterIP", "clusterIP": "10.43.0.9", "clusterIPs": ["10.43.0.9"]}),
                json!({"type": "NodePort"}),
                json!({"type": "NodePort", "clusterIP": "10.43.0.9", "clusterIPs": ["10.43.0.9"]}),
            ),
            (
                "never onto ExternalName",
                json!({"type": "ClusterIP", "clusterIP": "10.43.0.9", "clusterIPs": ["10.43.0.9"]}),
                json!({"type": "ExternalName"}),
                json!({"type": "ExternalName"}),
            ),
            (
                "NodePorts by port name, not by position",
                json!({"type": "NodePort", "ports": [np("a", 80, 30001), np("b", 81, 30002)]}),
                json!({"type": "NodePort", "ports": [bare("b", 81), bare("a", 80), bare("c", 82)]}),
                json!({"type": "NodePort", "ports": [np("b", 81, 30002), np("a", 80, 30001), bare("c", 82)]}),
            ),
            (
                "not a NodePort another port of the update names",
                json!({"type": "NodePort", "ports": [np("a", 80, 30001)]}),
                json!({"type": "NodePort", "ports": [np("b", 81, 30001), bare("a", 80)]}),
                json!({"type": "NodePort", "ports": [np("b", 81, 30001), bare("a", 80)]}),
            ),
            (
                "not onto a type without NodePorts",
                json!({"type": "NodePort", "ports": [np("a", 80, 30001)]}),
                json!({"type": "ClusterIP", "ports": [bare("a", 80)]}),
                json!({"type": "ClusterIP", "ports": [bare("a", 80)]}),
            ),
            (
                "the health check port while both need one",
                lb_local(31000),
                lb_local(0),
                lb_local(31000),
            ),
        ];
        for (what, old, new, want) in cases {
            let mut new = spec(new);
            patch_allocated_values(&spec(old), &mut new);
            assert_eq!(new, spec(want), "{what}");
        }
    }

    #[test]
    fn allocation_keys_cover_ips_node_ports_and_health_checks() {
        let cases = [
            (
                json!({"clusterIP": "10.43.0.9"}),
                vec!["clusterips/10.43.0.9"],
            ),
            (json!({"clusterIP": "None"}), vec![]),
            (
                json!({"type": "ExternalName", "clusterIP": "10.43.0.9"}),
                vec![],
            ),
            (
                json!({"type": "NodePort", "clusterIP": "10.43.0.9",
                       "ports": [{"port": 53, "protocol": "TCP", "nodePort": 30053},
                                 {"port": 53, "protocol": "UDP", "nodePort": 30053}]}),
                vec!["clusterips/10.43.0.9", "nodeports/30053"],
            ),
            (
                json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "healthCheckNodePort": 31000,
                       "ports": [{"port": 80, "nodePort": 30080}]}),
                vec!["nodeports/30080", "nodeports/31000"],
            ),
            (
                json!({"type": "LoadBalancer", "externalTrafficPolicy": "Cluster", "healthCheckNodePort": 31000}),
                vec![],
            ),
        ];
        for (svc, want) in cases {
            let want: Vec<String> = want
                .iter()
                .map(|k| format!("/registry/allocations/{k}"))
                .collect();
            assert_eq!(allocation_keys(&spec(svc.clone())), want, "{svc}");
        }
    }

    async fn held(store: &AnyStore) -> Vec<(String, String)> {
        let mut all = Vec::new();
        for prefix in [CLUSTER_IP_PREFIX, NODE_PORT_PREFIX] {
            for kv in store
                .list(prefix, ListOptions::default())
                .await
                .unwrap()
                .kvs
            {
                all.push((
                    kv.key.clone(),
                    String::from_utf8_lossy(&kv.value).into_owned(),
                ));
            }
        }
        all
    }

    #[tokio::test]
    async fn updates_claim_what_is_new_and_release_what_is_gone_on_commit_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = AnyStore::open(&[], dir.path()).await.unwrap();
        let info = skiff_api::resources::by_gvr("", "v1", "services").unwrap();
        let cidr = ServiceCidr::parse("10.96.0.0/29").unwrap();
        let owner = "default/web/u1".to_owned();

        let mut created = spec(json!({"type": "NodePort", "ports": [
            {"name": "dns", "port": 53, "protocol": "TCP"}, {"name": "dns-udp", "port": 53, "protocol": "UDP"}]}));
        let txn = allocate(&store, info, cidr, None, &mut created)
            .await
            .unwrap();
        let np = created["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
        assert_eq!(
            created["spec"]["ports"][1]["nodePort"], np,
            "TCP and UDP of a port share a NodePort on create"
        );
        assert_eq!(txn.claimed().len(), 2, "{:?}", txn.claimed());
        txn.commit(&store).await;
        assert_eq!(held(&store).await.len(), 2);

        // To LoadBalancer/Local with one more port: the IP and the ports kept
        // claim nothing; the new port and the health check port are claimed.
        let mut updated = created.clone();
        updated["spec"]["type"] = json!("LoadBalancer");
        updated["spec"]["externalTrafficPolicy"] = json!("Local");
        updated["spec"]["ports"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "web", "port": 80}));
        let txn = allocate(&store, info, cidr, Some(&created), &mut updated)
            .await
            .unwrap();
        assert_eq!(txn.claimed().len(), 2, "{:?}", txn.claimed());
        assert!(txn.released().is_empty());
        // A failed write gives the claims back and keeps the old ones.
        txn.revert(&store).await;
        assert_eq!(held(&store).await.len(), 2);

        // To ExternalName: nothing claimed, everything released on commit.
        let mut external = created.clone();
        external["spec"] = json!({"type": "ExternalName", "externalName": "db.example.com",
                                  "ports": [{"name": "dns", "port": 53}]});
        let txn = allocate(&store, info, cidr, Some(&created), &mut external)
            .await
            .unwrap();
        assert!(txn.claimed().is_empty());
        assert_eq!(txn.released().len(), 2);
        assert_eq!(
            held(&store).await.len(),
            2,
            "nothing released before the commit"
        );
        txn.commit(&store).await;
        assert!(held(&store).await.is_empty());

        // Another Service's key is never released on this one's behalf.
        claim(&store, &port_key(30999), "default/other/u2")
            .await
            .unwrap();
        release(&store, &port_key(30999), &owner).await;
        assert_eq!(
            held(&store).await,
            [(port_key(30999), "default/other/u2".to_owned())]
        );

        // Requested values: a taken port is 422 and the attempt's earlier
        // claims are given back.
        let mut asks = spec(
            json!({"type": "NodePort", "clusterIP": "10.96.0.3", "ports": [
            {"name": "a", "port": 80, "nodePort": 30500}, {"name": "b", "port": 81, "nodePort": 30999}]}),
        );
        let err = allocate(&store, info, cidr, None, &mut asks)
            .await
            .unwrap_err();
        assert_eq!(err.code(), 422);
        assert_eq!(
            held(&store).await.len(),
            1,
            "10.96.0.3 and 30500 given back"
        );
        let mut outside = spec(json!({"clusterIP": "10.43.0.3"}));
        let err = allocate(&store, info, cidr, None, &mut outside)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("failed to allocate IP 10.43.0.3: the provided IP (10.43.0.3) is not in the valid range. The range of valid IPs is 10.96.0.0/29"),
            "{err:?}"
        );
    }

    #[test]
    fn cidrs() {
        let c = ServiceCidr::parse("10.43.0.0/16").unwrap();
        assert_eq!(c, ServiceCidr::default());
        assert_eq!(c.first(), Ipv4Addr::new(10, 43, 0, 1));
        assert!(c.contains(Ipv4Addr::new(10, 43, 255, 254)));
        assert!(!c.contains(Ipv4Addr::new(10, 43, 255, 255)));
        assert!(!c.contains(Ipv4Addr::new(10, 43, 0, 0)));
        assert!(!c.contains(Ipv4Addr::new(10, 44, 0, 1)));
        for i in 0..100_000 {
            assert!(c.contains(c.nth(i)));
        }
        assert_eq!(c.indexed(10), Some(Ipv4Addr::new(10, 43, 0, 10)));
        assert_eq!(
            ServiceCidr::parse("10.242.0.0/16").unwrap().indexed(10),
            Some(Ipv4Addr::new(10, 242, 0, 10))
        );
        // A /29 holds .1 to .6 only.
        let small = ServiceCidr::parse("10.96.0.0/29").unwrap();
        assert_eq!(small.indexed(6), Some(Ipv4Addr::new(10, 96, 0, 6)));
        assert_eq!(small.indexed(7), None);
        assert_eq!(small.indexed(10), None);
        assert!(ServiceCidr::parse("10.43.0.0").is_none());
        assert!(ServiceCidr::parse("10.43.0.0/31").is_none());
        assert_eq!(
            ServiceCidr::parse("10.96.5.7/12").unwrap().first(),
            Ipv4Addr::new(10, 96, 0, 1)
        );
    }
}
