//! Host-gw pod routes: every other node's podCIDR is routed via that node's
//! InternalIP, so pods reach each other across nodes with their own
//! addresses (flannel's `host-gw` backend does the same). The agent watches
//! Nodes and keeps the host's routes in step as nodes join, change and leave.
//!
//! The routes carry their own route protocol number ([`ROUTE_PROTOCOL`]), so
//! the sync can tell them from everyone else's: at start-up routes of that
//! protocol inside the cluster CIDR that no Node asks for (left by an earlier
//! run) are removed, and [`remove_routes`] takes them all away on clean-up.
//! Computing the routes is the pure [`desired_routes`]; [`reconcile`] applies
//! them through [`NetOps`].

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use skiff_sys::net::{Ipv4Cidr, NetError, NetOps, RouteSpec};
use tokio::sync::watch;

/// The route protocol (`ip route ... proto 83`) of the pod routes; not one of
/// the numbers in iproute2's `rt_protos` nor one other pod networks use.
pub const ROUTE_PROTOCOL: u8 = 83;

/// How often the routes are re-checked without any Node change, so a route
/// someone deleted by hand comes back.
const RESYNC_PERIOD: Duration = Duration::from_secs(60);
/// First and longest wait before retrying a failed sync.
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// What the route sync needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRoutesConfig {
    /// This node: it gets no route to its own podCIDR.
    pub node_name: String,
    /// The cluster's pod range: only podCIDRs inside it are routed, and only
    /// routes inside it are ever removed.
    pub cluster_cidr: Ipv4Cidr,
    /// Route protocol marking our routes (normally [`ROUTE_PROTOCOL`]).
    pub protocol: u8,
}

impl PodRoutesConfig {
    /// Routes for `node_name` inside `cluster_cidr`, with [`ROUTE_PROTOCOL`].
    pub fn new(node_name: impl Into<String>, cluster_cidr: Ipv4Cidr) -> Self {
        Self {
            node_name: node_name.into(),
            cluster_cidr,
            protocol: ROUTE_PROTOCOL,
        }
    }

    /// Whether `route` is one this sync owns.
    fn owns(&self, route: &RouteSpec) -> bool {
        route.protocol == self.protocol && self.within_cluster(route.destination)
    }

    fn within_cluster(&self, cidr: Ipv4Cidr) -> bool {
        cidr.prefix_len() >= self.cluster_cidr.prefix_len()
            && self.cluster_cidr.contains(cidr.network())
    }
}

/// The node's first IPv4 InternalIP.
fn internal_ip(node: &Node) -> Option<Ipv4Addr> {
    let addresses = node.status.as_ref()?.addresses.as_ref()?;
    addresses
        .iter()
        .filter(|a| a.type_ == "InternalIP")
        .find_map(|a| match a.address.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) => Some(ip),
            _ => None,
        })
}

/// The node's IPv4 podCIDRs: `spec.podCIDRs`, else `spec.podCIDR`.
fn pod_cidrs(node: &Node) -> Vec<Ipv4Cidr> {
    let Some(spec) = node.spec.as_ref() else {
        return Vec::new();
    };
    let listed = spec.pod_cidrs.as_deref().unwrap_or_default();
    let all: Vec<&String> = if listed.is_empty() {
        spec.pod_cidr.iter().collect()
    } else {
        listed.iter().collect()
    };
    // IPv6 podCIDRs (dual stack) fail to parse here and are left alone.
    all.into_iter().filter_map(|c| c.parse().ok()).collect()
}

/// The routes the Nodes call for: each other node's podCIDRs (inside the
/// cluster CIDR) via its InternalIP. Nodes without either get none; when two
/// nodes claim one podCIDR the first by name wins, so the answer is stable.
pub fn desired_routes<'a>(
    nodes: impl IntoIterator<Item = &'a Node>,
    config: &PodRoutesConfig,
) -> BTreeMap<Ipv4Cidr, RouteSpec> {
    let mut named: Vec<(&str, &Node)> = nodes
        .into_iter()
        .filter_map(|n| Some((n.metadata.name.as_deref()?, n)))
        .filter(|(name, _)| *name != config.node_name)
        .collect();
    named.sort_by_key(|(name, _)| *name);
    let mut routes = BTreeMap::new();
    for (name, node) in named {
        let Some(gateway) = internal_ip(node) else {
            continue;
        };
        for cidr in pod_cidrs(node) {
            if !config.within_cluster(cidr) {
                tracing::debug!(node = name, %cidr, "podCIDR outside the cluster CIDR: not routed");
                continue;
            }
            routes.entry(cidr).or_insert(RouteSpec {
                destination: cidr,
                gateway,
                protocol: config.protocol,
            });
        }
    }
    routes
}

/// What one [`reconcile`] did.
#[derive(Debug, Default)]
pub struct RouteSync {
    /// Routes added or changed.
    pub replaced: Vec<RouteSpec>,
    /// Routes removed (stale or changed away).
    pub deleted: Vec<RouteSpec>,
    /// Routes the kernel refused, with why (e.g. a gateway not on any
    /// directly connected network); the others were still applied.
    pub failed: Vec<(RouteSpec, NetError)>,
}

/// Makes the host's routes of our protocol inside the cluster CIDR exactly
/// `desired`: stale ones deleted, missing or changed ones replaced. Routes of
/// other protocols or outside the cluster CIDR are never touched. Fails only
/// when the current routes cannot be listed; single routes that fail are
/// reported in [`RouteSync::failed`].
pub async fn reconcile<N: NetOps>(
    ops: &N,
    desired: &BTreeMap<Ipv4Cidr, RouteSpec>,
    config: &PodRoutesConfig,
) -> Result<RouteSync, NetError> {
    let current: Vec<RouteSpec> = ops
        .list_routes(config.protocol)
        .await?
        .into_iter()
        .filter(|r| config.owns(r))
        .collect();
    let mut sync = RouteSync::default();
    for route in &current {
        if desired.get(&route.destination) == Some(route) {
            continue;
        }
        // A changed gateway is replaced below; deleting first would open a
        // gap, so only routes no Node wants any more go.
        if desired.contains_key(&route.destination) {
            continue;
        }
        match ops.delete_route(route).await {
            Ok(_) => sync.deleted.push(*route),
            Err(err) => sync.failed.push((*route, err)),
        }
    }
    for route in desired.values() {
        if current.contains(route) {
            continue;
        }
        match ops.replace_route(route).await {
            Ok(()) => sync.replaced.push(*route),
            Err(err) => sync.failed.push((*route, err)),
        }
    }
    Ok(sync)
}

/// Removes every route of `config`'s protocol inside its cluster CIDR (agent
/// clean-up). Returns how many went.
pub async fn remove_routes<N: NetOps>(
    ops: &N,
    config: &PodRoutesConfig,
) -> Result<usize, NetError> {
    let sync = reconcile(ops, &BTreeMap::new(), config).await?;
    match sync.failed.into_iter().next() {
        Some((_, err)) => Err(err),
        None => Ok(sync.deleted.len()),
    }
}

/// Keeps the pod routes in step with the Nodes until `shutdown`. Routes stay
/// in place when it stops (pods keep working across an agent restart).
#[tracing::instrument(skip_all, fields(node = %config.node_name))]
pub async fn run<N: NetOps>(
    client: kube::Client,
    config: PodRoutesConfig,
    ops: N,
    mut shutdown: watch::Receiver<bool>,
) {
    let (reader, writer) = reflector::store::<Node>();
    let mut events = reflector(
        writer,
        watcher(Api::<Node>::all(client), watcher::Config::default()).default_backoff(),
    )
    .boxed();
    let mut synced = false;
    let mut dirty = false;
    let mut retry = RETRY_MIN;
    let mut next_sync = tokio::time::Instant::now() + RESYNC_PERIOD;
    // Refusals already reported, so a node that cannot be routed (e.g. its
    // address is on no connected network) warns once rather than every sync.
    let mut reported: BTreeMap<RouteSpec, String> = BTreeMap::new();
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            event = events.next() => match event {
                None => return,
                Some(Ok(watcher::Event::InitDone)) => {
                    synced = true;
                    dirty = true;
                }
                Some(Ok(_)) => dirty = true,
                Some(Err(err)) => tracing::warn!(error = %err, "watching Nodes"),
            },
            _ = tokio::time::sleep_until(next_sync) => dirty = true,
        }
        if !synced || !dirty {
            continue;
        }
        let nodes = reader.state();
        let desired = desired_routes(nodes.iter().map(|n| n.as_ref()), &config);
        match reconcile(&ops, &desired, &config).await {
            Ok(sync) => {
                dirty = false;
                for route in &sync.replaced {
                    tracing::info!(%route, "pod route set");
                }
                for route in &sync.deleted {
                    tracing::info!(%route, "pod route removed");
                }
                reported.retain(|route, _| desired.get(&route.destination) == Some(route));
                if sync.failed.is_empty() {
                    retry = RETRY_MIN;
                    next_sync = tokio::time::Instant::now() + RESYNC_PERIOD;
                } else {
                    for (route, err) in &sync.failed {
                        let message = err.to_string();
                        if reported.get(route) != Some(&message) {
                            tracing::warn!(%route, error = %message, "cannot set pod route");
                            reported.insert(*route, message);
                        }
                    }
                    next_sync = tokio::time::Instant::now() + retry;
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot list routes");
                next_sync = tokio::time::Instant::now() + retry;
                retry = (retry * 2).min(RETRY_MAX);
            }
        }
    }
}

#[cfg(test)]
mod tests;
