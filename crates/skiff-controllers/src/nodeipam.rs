//! The node IPAM controller (upstream's `node-ipam-controller` with the
//! range allocator): every Node without a `spec.podCIDR` gets the lowest
//! free block of `--node-cidr-mask-size` from `--cluster-cidr`. Blocks in
//! use are learned from every Node before the first allocation, and one
//! task allocates, so no block is handed out twice.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher;
use tokio::sync::watch;

/// The controller's name in `--controllers`.
pub const CONTROLLER_NAME: &str = "node-ipam-controller";
/// Upstream's default `--node-cidr-mask-size` for IPv4.
pub const DEFAULT_NODE_CIDR_MASK_SIZE: u8 = 24;

/// An IPv4 CIDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: u32,
    prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n` (host bits must be zero).
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (ip, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("{s:?} is not an IPv4 CIDR"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("{s:?} has an invalid prefix length"))?;
        let network = u32::from(ip);
        if network & !mask(prefix) != 0 {
            return Err(format!("{s:?} has host bits set"));
        }
        Ok(Cidr { network, prefix })
    }

    /// Number of `/size` blocks in this CIDR.
    fn blocks(self, size: u8) -> u64 {
        1u64 << (size - self.prefix)
    }

    fn block(self, size: u8, i: u64) -> Cidr {
        let step = 1u64 << (32 - u32::from(size));
        let network = u64::from(self.network) + i * step;
        Cidr {
            network: u32::try_from(network).unwrap_or(u32::MAX),
            prefix: size,
        }
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network), self.prefix)
    }
}

/// Hands out `/size` blocks of a cluster CIDR.
#[derive(Debug, Clone)]
pub struct RangeAllocator {
    cluster: Cidr,
    size: u8,
    used: BTreeSet<u64>,
}

impl RangeAllocator {
    /// Blocks of `/size` from `cluster`; `size` must not be shorter than the
    /// cluster prefix and leave at least 2 host bits... as upstream checks.
    pub fn new(cluster: Cidr, size: u8) -> Result<Self, String> {
        if size < cluster.prefix || size > 30 {
            return Err(format!(
                "node CIDR mask size {size} does not fit cluster CIDR {cluster}"
            ));
        }
        Ok(Self {
            cluster,
            size,
            used: BTreeSet::new(),
        })
    }

    fn index_of(&self, cidr: &str) -> Option<u64> {
        let c = Cidr::parse(cidr).ok()?;
        if c.prefix != self.size || (c.network & mask(self.cluster.prefix)) != self.cluster.network
        {
            return None;
        }
        Some(u64::from(c.network - self.cluster.network) >> (32 - u32::from(self.size)))
    }

    /// Marks a node's existing block as used (blocks outside the range are ignored).
    pub fn occupy(&mut self, cidr: &str) {
        if let Some(i) = self.index_of(cidr) {
            self.used.insert(i);
        }
    }

    /// Frees a deleted node's block.
    pub fn release(&mut self, cidr: &str) {
        if let Some(i) = self.index_of(cidr) {
            self.used.remove(&i);
        }
    }

    /// The lowest free block, now used; None when the range is full.
    pub fn allocate(&mut self) -> Option<String> {
        let i = (0..self.cluster.blocks(self.size)).find(|i| !self.used.contains(i))?;
        self.used.insert(i);
        Some(self.cluster.block(self.size, i).to_string())
    }
}

fn pod_cidr(node: &Node) -> Option<String> {
    node.spec.as_ref().and_then(|s| s.pod_cidr.clone())
}

/// Runs until `shutdown`: allocates podCIDRs to Nodes that have none.
pub async fn run(
    client: kube::Client,
    mut allocator: RangeAllocator,
    mut shutdown: watch::Receiver<bool>,
) {
    let nodes: Api<Node> = Api::all(client);
    let mut events = watcher(nodes.clone(), watcher::Config::default()).boxed();
    // Node name → its block, as last seen.
    let mut known: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut listing: Option<BTreeMap<String, Option<String>>> = None;
    let mut synced = false;
    let mut pending: BTreeSet<String> = BTreeSet::new();
    loop {
        let event = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            e = events.try_next() => e,
        };
        match event {
            Ok(Some(watcher::Event::Init)) => listing = Some(BTreeMap::new()),
            Ok(Some(watcher::Event::InitApply(n))) => {
                if let (Some(l), Some(name)) = (listing.as_mut(), n.metadata.name.clone()) {
                    l.insert(name, pod_cidr(&n));
                }
            }
            Ok(Some(watcher::Event::InitDone)) => {
                if let Some(l) = listing.take() {
                    for cidr in known.values().flatten() {
                        allocator.release(cidr);
                    }
                    known = l;
                    for cidr in known.values().flatten() {
                        allocator.occupy(cidr);
                    }
                    pending = known
                        .iter()
                        .filter(|(_, c)| c.is_none())
                        .map(|(n, _)| n.clone())
                        .collect();
                }
                synced = true;
            }
            Ok(Some(watcher::Event::Apply(n))) => {
                let Some(name) = n.metadata.name.clone() else {
                    continue;
                };
                let cidr = pod_cidr(&n);
                if cidr.is_none() && matches!(known.get(&name), Some(Some(_))) {
                    // An event from before our patch landed: a podCIDR,
                    // once set, never goes back to empty, so this node is
                    // served (allocating again would only meet a 422).
                    continue;
                }
                if let Some(c) = &cidr {
                    allocator.occupy(c);
                    pending.remove(&name);
                } else {
                    pending.insert(name.clone());
                }
                known.insert(name, cidr);
            }
            Ok(Some(watcher::Event::Delete(n))) => {
                let Some(name) = n.metadata.name.clone() else {
                    continue;
                };
                if let Some(Some(c)) = known.remove(&name) {
                    allocator.release(&c);
                }
                pending.remove(&name);
            }
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "node watch failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        }
        if !synced {
            continue;
        }
        for name in std::mem::take(&mut pending) {
            let Some(cidr) = allocator.allocate() else {
                tracing::warn!(node = %name, "no podCIDR left in the cluster CIDR");
                continue;
            };
            let patch = serde_json::json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
            match nodes
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    tracing::info!(node = %name, pod_cidr = %cidr, "allocated podCIDR");
                    known.insert(name, Some(cidr));
                }
                Err(e) => {
                    allocator.release(&cidr);
                    tracing::warn!(node = %name, error = %e, "cannot set podCIDR; will retry on the next change");
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn allocates_lowest_free_blocks_and_reuses_released_ones() {
        let cluster = Cidr::parse("10.42.0.0/16").unwrap();
        let mut a = RangeAllocator::new(cluster, 24).unwrap();
        a.occupy("10.42.0.0/24");
        a.occupy("10.42.2.0/24");
        a.occupy("192.168.0.0/24"); // outside: ignored
        assert_eq!(a.allocate().as_deref(), Some("10.42.1.0/24"));
        assert_eq!(a.allocate().as_deref(), Some("10.42.3.0/24"));
        a.release("10.42.0.0/24");
        assert_eq!(a.allocate().as_deref(), Some("10.42.0.0/24"));
    }

    #[test]
    fn a_full_range_and_bad_input() {
        let mut a = RangeAllocator::new(Cidr::parse("10.0.0.0/23").unwrap(), 24).unwrap();
        assert_eq!(a.allocate().as_deref(), Some("10.0.0.0/24"));
        assert_eq!(a.allocate().as_deref(), Some("10.0.1.0/24"));
        assert_eq!(a.allocate(), None);
        assert!(Cidr::parse("10.0.0.1/16").is_err());
        assert!(Cidr::parse("10.0.0.0").is_err());
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(RangeAllocator::new(Cidr::parse("10.0.0.0/24").unwrap(), 16).is_err());
    }
}
