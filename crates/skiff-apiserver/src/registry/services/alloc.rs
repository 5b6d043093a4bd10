//! One allocation path for Service creates and updates (upstream's
//! `allocateCreate` / `allocateUpdate`): what the written object needs and
//! the old one did not hold is claimed before the write; what the old one
//! held and the written one no longer does is released only once the
//! write is stored; a failed write releases what its attempt claimed.

use std::net::Ipv4Addr;

use serde_json::{Value, json};
use skiff_api::field::{BadValue, Error as FieldError, ErrorList, Path};
use skiff_api::resources::ResourceInfo;
use skiff_api::status::ApiError;
use skiff_store::AnyStore;

use super::{
    NODE_PORTS, ServiceCidr, allocate_ip, allocate_port, allocation_keys, claim,
    has_node_port_type, health_check_node_port, ip_key, needs_cluster_ip, needs_health_check,
    node_port, owner_of, port_key, ports, release, should_allocate_node_ports, spec_str,
};

/// The allocator's error for a taken port.
const PORT_ALLOCATED: &str = "provided port is already allocated";

/// What one write of a Service claimed, and what it gives back once the
/// write is stored. Either [`Allocation::commit`] or
/// [`Allocation::revert`] ends it.
#[derive(Debug, Default)]
#[must_use = "an allocation is either committed or reverted"]
pub struct Allocation {
    owner: String,
    claimed: Vec<String>,
    released: Vec<String>,
}

impl Allocation {
    /// The write was stored: frees what the old object held and the new one
    /// does not.
    pub async fn commit(self, store: &AnyStore) {
        for key in &self.released {
            release(store, key, &self.owner).await;
        }
    }

    /// The write failed or was not made: frees what this attempt claimed
    /// (and keeps what the old object held).
    pub async fn revert(self, store: &AnyStore) {
        for key in &self.claimed {
            release(store, key, &self.owner).await;
        }
    }

    /// The store keys this attempt claimed.
    pub fn claimed(&self) -> &[String] {
        &self.claimed
    }

    /// The store keys a commit releases.
    pub fn released(&self) -> &[String] {
        &self.released
    }
}

/// Claims what `svc` needs that `old` (the stored object of an update; `None`
/// on create) does not hold: its ClusterIP (the requested one, or the next
/// free one), its NodePorts and its health check NodePort, writing the
/// values picked into `svc`. On error nothing this call claimed stays
/// claimed.
pub async fn allocate(
    store: &AnyStore,
    info: &ResourceInfo,
    cidr: ServiceCidr,
    old: Option<&Value>,
    svc: &mut Value,
) -> Result<Allocation, ApiError> {
    let mut txn = Allocation {
        owner: owner_of(svc),
        ..Allocation::default()
    };
    let held = old.map(allocation_keys).unwrap_or_default();
    let mut attempt = Attempt {
        store,
        info,
        held: &held,
        txn: &mut txn,
    };
    let result = async {
        attempt.cluster_ip(cidr, old, svc).await?;
        attempt.node_ports(old.is_none(), svc).await?;
        attempt.health_check_node_port(svc).await
    }
    .await;
    if let Err(e) = result {
        txn.revert(store).await;
        return Err(e);
    }
    let kept = allocation_keys(svc);
    txn.released = held.into_iter().filter(|k| !kept.contains(k)).collect();
    Ok(txn)
}

/// One allocation attempt in progress.
struct Attempt<'a> {
    store: &'a AnyStore,
    info: &'a ResourceInfo,
    /// Keys the old object holds: asking for them again claims nothing.
    held: &'a [String],
    txn: &'a mut Allocation,
}

impl Attempt<'_> {
    fn owns(&self, key: &str) -> bool {
        self.held.iter().any(|k| k == key) || self.txn.claimed.iter().any(|k| k == key)
    }

    async fn claim(&mut self, key: String) -> Result<bool, ApiError> {
        let taken = claim(self.store, &key, &self.txn.owner).await?;
        if taken {
            self.txn.claimed.push(key);
        }
        Ok(taken)
    }

    fn invalid(
        &self,
        svc: &Value,
        path: &Path,
        value: impl Into<BadValue>,
        detail: &str,
    ) -> ApiError {
        let mut errors = ErrorList::new();
        errors.push(FieldError::invalid(path, value, detail));
        let name = svc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        ApiError::invalid(self.info, name, errors)
    }

    /// A Service of a type with a ClusterIP gets the one it asks for (in
    /// range and free) or the next free one; headless ones get none.
    async fn cluster_ip(
        &mut self,
        cidr: ServiceCidr,
        old: Option<&Value>,
        svc: &mut Value,
    ) -> Result<(), ApiError> {
        if !needs_cluster_ip(svc) {
            return Ok(());
        }
        let newly_typed = old.is_none_or(|o| !needs_cluster_ip(o));
        let requested = spec_str(svc, "clusterIP").to_owned();
        if requested == "None" {
            if newly_typed {
                svc["spec"]["clusterIPs"] = json!(["None"]);
            }
            return Ok(());
        }
        let ip = if requested.is_empty() {
            let Some(ip) = allocate_ip(self.store, cidr, &self.txn.owner).await? else {
                return Err(ApiError::InternalError(
                    "failed to allocate a serviceIP: range is full".into(),
                ));
            };
            self.txn.claimed.push(ip_key(ip));
            ip
        } else {
            let listed: Vec<String> =
                match svc.pointer("/spec/clusterIPs").and_then(Value::as_array) {
                    Some(ips) if !ips.is_empty() => ips
                        .iter()
                        .map(|ip| ip.as_str().unwrap_or_default().to_owned())
                        .collect(),
                    _ => vec![requested.clone()],
                };
            let path = Path::new("spec").child("clusterIPs");
            let Ok(ip) = requested.parse::<Ipv4Addr>() else {
                return Err(self.invalid(svc, &path, listed, "must be a valid IP address"));
            };
            let key = ip_key(ip);
            if !self.owns(&key) {
                if !cidr.contains(ip) {
                    let detail = format!(
                        "failed to allocate IP {requested}: the provided IP ({requested}) is not in the valid range. The range of valid IPs is {cidr}"
                    );
                    return Err(self.invalid(svc, &path, listed, &detail));
                }
                if !self.claim(key).await? {
                    let detail = format!(
                        "failed to allocate IP {requested}: provided IP is already allocated"
                    );
                    return Err(self.invalid(svc, &path, listed, &detail));
                }
            }
            ip
        };
        svc["spec"]["clusterIP"] = json!(ip.to_string());
        let listed_empty = svc
            .pointer("/spec/clusterIPs")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if newly_typed || listed_empty {
            svc["spec"]["clusterIPs"] = json!([ip.to_string()]);
        }
        Ok(())
    }

    /// NodePort and LoadBalancer Services: requested NodePorts are claimed
    /// first (so a picked one never takes one asked for), then the ports
    /// without one get one. On create, ports with the same number (TCP and
    /// UDP of one port) share their NodePort, as upstream's `initNodePorts`.
    async fn node_ports(&mut self, creating: bool, svc: &mut Value) -> Result<(), ApiError> {
        if !has_node_port_type(svc) {
            return Ok(());
        }
        let count = ports(svc).len();
        for i in 0..count {
            let requested = node_port(&ports(svc)[i]);
            if requested == 0 {
                continue;
            }
            let port = u16::try_from(requested)
                .ok()
                .filter(|p| NODE_PORTS.contains(p));
            if port.is_some_and(|p| self.owns(&port_key(p))) {
                continue;
            }
            let path = Path::new("spec").child("ports").index(i).child("nodePort");
            let value = i64::try_from(requested).unwrap_or(i64::MAX);
            let Some(port) = port else {
                let detail = format!(
                    "provided port is not in the valid range. The range of valid ports is {}-{}",
                    NODE_PORTS.start(),
                    NODE_PORTS.end()
                );
                return Err(self.invalid(svc, &path, value, &detail));
            };
            if !self.claim(port_key(port)).await? {
                return Err(self.invalid(svc, &path, value, PORT_ALLOCATED));
            }
        }
        if !should_allocate_node_ports(svc) {
            return Ok(());
        }
        for i in 0..count {
            if node_port(&ports(svc)[i]) != 0 {
                continue;
            }
            let number = ports(svc)[i].get("port").cloned();
            let shared = if creating {
                ports(svc)
                    .iter()
                    .find(|p| p.get("port") == number.as_ref() && node_port(p) != 0)
                    .map(node_port)
            } else {
                None
            };
            let picked = match shared {
                Some(port) => port,
                None => {
                    let Some(port) = allocate_port(self.store, &self.txn.owner).await? else {
                        return Err(ApiError::InternalError(
                            "failed to allocate a nodePort: range is full".into(),
                        ));
                    };
                    self.txn.claimed.push(port_key(port));
                    u64::from(port)
                }
            };
            svc["spec"]["ports"][i]["nodePort"] = json!(picked);
        }
        Ok(())
    }

    /// A LoadBalancer with `externalTrafficPolicy: Local` gets the health
    /// check NodePort it asks for, or the next free one (upstream answers
    /// failures here with 500, not 422).
    async fn health_check_node_port(&mut self, svc: &mut Value) -> Result<(), ApiError> {
        if !needs_health_check(svc) {
            return Ok(());
        }
        let requested = health_check_node_port(svc);
        if requested == 0 {
            let Some(port) = allocate_port(self.store, &self.txn.owner).await? else {
                return Err(ApiError::InternalError(
                    "failed to allocate a HealthCheck NodePort 0: range is full".into(),
                ));
            };
            self.txn.claimed.push(port_key(port));
            svc["spec"]["healthCheckNodePort"] = json!(port);
            return Ok(());
        }
        let port = u16::try_from(requested)
            .ok()
            .filter(|p| NODE_PORTS.contains(p));
        if port.is_some_and(|p| self.owns(&port_key(p))) {
            return Ok(());
        }
        let failed = |why: String| {
            ApiError::InternalError(format!(
                "failed to allocate requested HealthCheck NodePort {requested}: {why}"
            ))
        };
        let Some(port) = port else {
            return Err(failed(format!(
                "provided port is not in the valid range. The range of valid ports is {}-{}",
                NODE_PORTS.start(),
                NODE_PORTS.end()
            )));
        };
        if !self.claim(port_key(port)).await? {
            return Err(failed(PORT_ALLOCATED.into()));
        }
        Ok(())
    }
}
