//! Services: defaults, ClusterIP allocation from the service CIDR and
//! NodePort allocation from 30000-32767.
//!
//! Every allocation is a key in the store (`/registry/allocations/...`)
//! created with create-if-absent, so two writers (even two servers on one
//! etcd) can never hand out the same IP or port, and the allocations
//! survive restarts with the Services they belong to. Deleting a Service
//! releases its keys; [`repair`] at start releases keys whose Service is
//! gone and re-records IPs and ports of Services that lost theirs.

use std::net::Ipv4Addr;

use bytes::Bytes;
use serde_json::{Value, json};
use skiff_api::field::{Error as FieldError, ErrorList, Path};
use skiff_api::resources::ResourceInfo;
use skiff_api::status::ApiError;
use skiff_store::{AnyStore, ListOptions, Store, StoreError};

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

impl Default for ServiceCidr {
    fn default() -> Self {
        ServiceCidr {
            base: u32::from(Ipv4Addr::new(10, 43, 0, 0)),
            prefix: 16,
        }
    }
}

/// Allocates the ClusterIP and NodePorts a new Service needs (recording each
/// in the store) and writes them into the object. On error nothing stays
/// allocated.
pub async fn allocate(
    store: &AnyStore,
    info: &ResourceInfo,
    cidr: ServiceCidr,
    svc: &mut Value,
) -> Result<(), ApiError> {
    let owner = owner_of(svc);
    let name = svc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let ty = svc
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_owned();
    let mut taken: Vec<String> = Vec::new();
    let result = async {
        if ty != "ExternalName" {
            let requested = svc.pointer("/spec/clusterIP").and_then(Value::as_str).unwrap_or_default().to_owned();
            if requested != "None" {
                let ip = if requested.is_empty() {
                    allocate_ip(store, cidr, &owner).await?
                } else {
                    let ip: Ipv4Addr = requested.parse().map_err(|_| {
                        invalid(info, &name, "spec.clusterIPs[0]", &requested, "must be a valid IP address")
                    })?;
                    if !cidr.contains(ip) {
                        return Err(invalid(info, &name, "spec.clusterIPs[0]", &requested,
                            &format!("failed to allocate IP {requested}: the provided IP ({requested}) is not in the valid range. The range of valid IPs is {}/{}", Ipv4Addr::from(cidr.base), cidr.prefix)));
                    }
                    if !claim(store, &format!("{CLUSTER_IP_PREFIX}{ip}"), &owner).await? {
                        return Err(invalid(info, &name, "spec.clusterIPs[0]", &requested,
                            &format!("failed to allocate IP {requested}: provided IP is already allocated")));
                    }
                    ip
                };
                taken.push(format!("{CLUSTER_IP_PREFIX}{ip}"));
                svc["spec"]["clusterIP"] = json!(ip.to_string());
                svc["spec"]["clusterIPs"] = json!([ip.to_string()]);
            } else {
                svc["spec"]["clusterIPs"] = json!(["None"]);
            }
        }
        if matches!(ty.as_str(), "NodePort" | "LoadBalancer") {
            let count = svc.pointer("/spec/ports").and_then(Value::as_array).map_or(0, Vec::len);
            for i in 0..count {
                let requested = svc["spec"]["ports"][i].get("nodePort").and_then(Value::as_u64).unwrap_or(0);
                let port = if requested == 0 {
                    allocate_port(store, &owner).await?
                } else {
                    let field = format!("spec.ports[{i}].nodePort");
                    let port = u16::try_from(requested).ok().filter(|p| NODE_PORTS.contains(p)).ok_or_else(|| {
                        invalid(info, &name, &field, &requested.to_string(),
                            &format!("provided port is not in the valid range. The range of valid ports is {}-{}", NODE_PORTS.start(), NODE_PORTS.end()))
                    })?;
                    if !claim(store, &format!("{NODE_PORT_PREFIX}{port}"), &owner).await? {
                        return Err(invalid(info, &name, &field, &requested.to_string(), "provided port is already allocated"));
                    }
                    port
                };
                taken.push(format!("{NODE_PORT_PREFIX}{port}"));
                svc["spec"]["ports"][i]["nodePort"] = json!(port);
            }
        }
        Ok(())
    }
    .await;
    if result.is_err() {
        for key in &taken {
            release(store, key).await;
        }
    }
    result
}

/// Releases every allocation recorded for `svc`.
pub async fn release_all(store: &AnyStore, svc: &Value) {
    for key in allocation_keys(svc) {
        release(store, &key).await;
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

fn allocation_keys(svc: &Value) -> Vec<String> {
    let mut keys = Vec::new();
    if let Some(ip) = svc.pointer("/spec/clusterIP").and_then(Value::as_str)
        && ip.parse::<Ipv4Addr>().is_ok()
    {
        keys.push(format!("{CLUSTER_IP_PREFIX}{ip}"));
    }
    if let Some(ports) = svc.pointer("/spec/ports").and_then(Value::as_array) {
        for port in ports {
            if let Some(p) = port
                .get("nodePort")
                .and_then(Value::as_u64)
                .filter(|p| *p > 0)
            {
                keys.push(format!("{NODE_PORT_PREFIX}{p}"));
            }
        }
    }
    keys
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

async fn allocate_ip(
    store: &AnyStore,
    cidr: ServiceCidr,
    owner: &str,
) -> Result<Ipv4Addr, ApiError> {
    let usable = cidr.size() - 2;
    let start: u32 = rand::random();
    // Random probing first, then a full scan so a nearly full range still
    // finds its last free address.
    for i in 0..usable.min(64) {
        let ip = cidr.nth(start.wrapping_add(i.wrapping_mul(7919)));
        if ip == cidr.first() {
            continue;
        }
        if claim(store, &format!("{CLUSTER_IP_PREFIX}{ip}"), owner).await? {
            return Ok(ip);
        }
    }
    for i in 1..usable {
        let ip = cidr.nth(i);
        if claim(store, &format!("{CLUSTER_IP_PREFIX}{ip}"), owner).await? {
            return Ok(ip);
        }
    }
    Err(ApiError::InternalError(
        "failed to allocate a serviceIP: range is full".into(),
    ))
}

async fn allocate_port(store: &AnyStore, owner: &str) -> Result<u16, ApiError> {
    let span = u32::from(NODE_PORTS.end() - NODE_PORTS.start()) + 1;
    let start: u32 = rand::random();
    for i in 0..span {
        let port = NODE_PORTS.start() + ((start.wrapping_add(i)) % span) as u16;
        if claim(store, &format!("{NODE_PORT_PREFIX}{port}"), owner).await? {
            return Ok(port);
        }
    }
    Err(ApiError::InternalError(
        "failed to allocate a nodePort: range is full".into(),
    ))
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

async fn release(store: &AnyStore, key: &str) {
    if let Ok(Some(kv)) = store.get(key).await
        && let Err(e) = store.delete(key, kv.mod_revision).await
    {
        tracing::warn!(%key, error = %e, "releasing allocation failed");
    }
}

fn invalid(info: &ResourceInfo, name: &str, field: &str, value: &str, detail: &str) -> ApiError {
    let mut errors = ErrorList::new();
    let mut path = Path::new("spec");
    for part in field.trim_start_matches("spec.").split('.') {
        path = path.child(part);
    }
    errors.push(FieldError::invalid(&path, value.to_owned(), detail));
    ApiError::invalid(info, name, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(ServiceCidr::parse("10.43.0.0").is_none());
        assert!(ServiceCidr::parse("10.43.0.0/31").is_none());
        assert_eq!(
            ServiceCidr::parse("10.96.5.7/12").unwrap().first(),
            Ipv4Addr::new(10, 96, 0, 1)
        );
    }
}
