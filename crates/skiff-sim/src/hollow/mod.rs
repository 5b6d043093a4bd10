//! Hollow nodes: many fake kubelets in one process, as kwok does.
//!
//! Cost per node is kept to a few bytes of state: one shared client, one
//! Lease task renewing the nodes in slices spread over the interval, one
//! pod watch (all pods with a `spec.nodeName`) for every node, and no copy
//! of any Node kept after registration.

mod leases;
pub mod node;
mod pods;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Taint};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::SimError;
pub use node::{Cidr, parse_taint};
use node::{LEASE_NAMESPACE, NodeTemplate};
pub(crate) use pods::PodHead;

/// How to run the hollow nodes.
#[derive(Debug, Clone)]
pub struct HollowNodeConfig {
    /// How many nodes.
    pub count: usize,
    /// Node names are `<prefix><index>`.
    pub name_prefix: String,
    /// CPU capacity of each node.
    pub cpu: String,
    /// Memory capacity of each node.
    pub memory: String,
    /// Pod capacity of each node.
    pub pods: u32,
    /// Nodes go round robin into `zone-0` … `zone-<zones-1>`.
    pub zones: usize,
    /// Taints on every node.
    pub taints: Vec<Taint>,
    /// How often each node renews its Lease (the kubelet's 10 s).
    pub lease_interval: Duration,
    /// Where the nodes' podCIDRs come from.
    pub cluster_cidr: Cidr,
    /// Prefix length of each node's podCIDR.
    pub node_cidr_prefix: u8,
    /// Where the nodes' InternalIPs come from (never contacted).
    pub node_ip_range: Cidr,
    /// Requests in flight at once (registration, renewals, pod updates).
    pub concurrency: usize,
    /// Act as kubelets: renew the Leases and report bound pods Running and
    /// Ready. When off the nodes are bare objects, as in upstream's
    /// scheduler_perf: registered Ready with a Lease that is never renewed,
    /// bound pods left Pending. Graceful deletions are finished either way.
    pub kubelets: bool,
}

impl Default for HollowNodeConfig {
    fn default() -> Self {
        HollowNodeConfig {
            count: 1,
            name_prefix: "hollow-".to_owned(),
            cpu: "4".to_owned(),
            memory: "16Gi".to_owned(),
            pods: 110,
            zones: 3,
            taints: Vec::new(),
            lease_interval: Duration::from_secs(10),
            // Apart from the server's own 10.42.0.0/16, so hollow pods never
            // take the addresses of real ones; room for 32,768 nodes.
            cluster_cidr: Cidr {
                base: std::net::Ipv4Addr::new(10, 128, 0, 0),
                prefix: 9,
            },
            node_cidr_prefix: 24,
            node_ip_range: Cidr {
                base: std::net::Ipv4Addr::new(172, 16, 0, 0),
                prefix: 12,
            },
            concurrency: 64,
            kubelets: true,
        }
    }
}

/// Counters of what the hollow nodes did.
#[derive(Debug, Default)]
pub struct Stats {
    /// Lease renewals that succeeded.
    pub lease_renewals: AtomicU64,
    /// Pod status updates to Running/Ready that succeeded.
    pub pods_started: AtomicU64,
    /// Pods deleted after a graceful deletion request.
    pub pods_deleted: AtomicU64,
    /// Requests that failed.
    pub errors: AtomicU64,
}

impl Stats {
    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// State shared by the tasks; nothing in it grows with the node count
/// except the small per-node address bitmaps of the pod task.
pub(crate) struct Shared {
    pub client: kube::Client,
    pub config: HollowNodeConfig,
    pub stats: Arc<Stats>,
    /// Nodes whose heartbeats are stopped (tests of node failure).
    pub paused: std::sync::Mutex<std::collections::BTreeSet<usize>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub fn is_paused(&self, index: usize) -> bool {
        self.paused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&index)
    }

    pub fn node_name(&self, index: usize) -> String {
        format!("{}{index}", self.config.name_prefix)
    }

    /// The index of the hollow node called `name`, if it is one of ours.
    pub fn node_index(&self, name: &str) -> Option<usize> {
        let digits = name.strip_prefix(&self.config.name_prefix)?;
        let index: usize = digits.parse().ok()?;
        // "hollow-01" is not node 1.
        (index < self.config.count && index.to_string() == digits).then_some(index)
    }

    pub fn pod_cidr(&self, index: usize) -> Cidr {
        self.config
            .cluster_cidr
            .block(self.config.node_cidr_prefix, index as u64)
    }

    pub fn node_ip(&self, index: usize) -> std::net::Ipv4Addr {
        // Skip the network address.
        self.config
            .node_ip_range
            .nth(u32::try_from(index + 1).unwrap_or(u32::MAX))
    }
}

/// Running hollow nodes. Stop them with [`HollowNodes::shutdown`] (nodes
/// stay registered) or [`HollowNodes::cleanup`] (nodes and Leases deleted).
#[derive(Debug)]
pub struct HollowNodes {
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl HollowNodes {
    /// Registers the nodes and their Leases, then starts renewing the
    /// Leases and serving pods bound to the nodes.
    #[tracing::instrument(skip_all, fields(count = config.count))]
    pub async fn start(
        client: kube::Client,
        config: HollowNodeConfig,
    ) -> Result<HollowNodes, SimError> {
        validate(&config)?;
        let template = NodeTemplate {
            cpu: config.cpu.clone(),
            memory: config.memory.clone(),
            pods: config.pods,
            zones: config.zones,
            taints: config.taints.clone(),
        };
        let shared = Arc::new(Shared {
            client,
            config,
            stats: Arc::new(Stats::default()),
            paused: Default::default(),
        });
        let concurrency = shared.config.concurrency.max(1);
        futures::stream::iter(0..shared.config.count)
            .map(|i| register(&shared, &template, i))
            .buffer_unordered(concurrency)
            .try_collect::<Vec<()>>()
            .await?;
        tracing::info!(nodes = shared.config.count, "hollow nodes registered");
        let (shutdown, rx) = watch::channel(false);
        let mut tasks = vec![tokio::spawn(pods::run(shared.clone(), rx.clone()))];
        if shared.config.kubelets {
            tasks.push(tokio::spawn(leases::run(shared.clone(), rx)));
        }
        Ok(HollowNodes {
            shared,
            shutdown,
            tasks,
        })
    }

    /// How many nodes.
    pub fn count(&self) -> usize {
        self.shared.config.count
    }

    /// The name of node `index`.
    pub fn node_name(&self, index: usize) -> String {
        self.shared.node_name(index)
    }

    /// The podCIDR of node `index`.
    pub fn pod_cidr(&self, index: usize) -> Cidr {
        self.shared.pod_cidr(index)
    }

    /// Stops renewing node `index`'s Lease, as if its kubelet went away
    /// (its pods are still served).
    pub fn stop_heartbeats(&self, index: usize) {
        self.shared
            .paused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(index);
    }

    /// Resumes node `index`'s heartbeats: renews its Lease and, as a
    /// kubelet finding its status changed under it, posts healthy
    /// conditions.
    pub async fn resume_heartbeats(&self, index: usize) -> Result<(), SimError> {
        self.shared
            .paused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&index);
        let name = self.shared.node_name(index);
        let nodes: Api<Node> = Api::all(self.shared.client.clone());
        let status =
            serde_json::json!({"status": {"conditions": node::ready_conditions(&node::now())}});
        nodes
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .map_err(|source| SimError::Api {
                what: format!("posting the status of node {name}"),
                source,
            })?;
        let leases: Api<Lease> = Api::namespaced(self.shared.client.clone(), LEASE_NAMESPACE);
        leases::renew(&leases, &name)
            .await
            .map_err(|source| SimError::Api {
                what: format!("renewing the lease of {name}"),
                source,
            })
    }

    /// What the nodes did so far.
    pub fn stats(&self) -> Arc<Stats> {
        self.shared.stats.clone()
    }

    /// Stops renewing Leases and serving pods; the nodes stay registered.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }

    /// [`HollowNodes::shutdown`], then deletes the nodes and their Leases.
    pub async fn cleanup(self) -> Result<(), SimError> {
        let shared = self.shared.clone();
        self.shutdown().await;
        let nodes: Api<Node> = Api::all(shared.client.clone());
        let leases: Api<Lease> = Api::namespaced(shared.client.clone(), LEASE_NAMESPACE);
        futures::stream::iter(0..shared.config.count)
            .map(|i| {
                let (nodes, leases, name) = (&nodes, &leases, shared.node_name(i));
                async move {
                    ignore_not_found(
                        nodes
                            .delete(&name, &DeleteParams::default())
                            .await
                            .map(|_| ()),
                    )
                    .map_err(|source| SimError::Api {
                        what: format!("deleting node {name}"),
                        source,
                    })?;
                    ignore_not_found(
                        leases
                            .delete(&name, &DeleteParams::default())
                            .await
                            .map(|_| ()),
                    )
                    .map_err(|source| SimError::Api {
                        what: format!("deleting lease {name}"),
                        source,
                    })
                }
            })
            .buffer_unordered(shared.config.concurrency.max(1))
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }
}

impl Drop for HollowNodes {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

fn validate(c: &HollowNodeConfig) -> Result<(), SimError> {
    if c.count == 0 {
        return Err(SimError::Config("--count must be at least 1".into()));
    }
    if c.zones == 0 {
        return Err(SimError::Config("--zones must be at least 1".into()));
    }
    if !(16..=30).contains(&c.node_cidr_prefix) {
        return Err(SimError::Config(
            "node CIDR prefix must be between /16 and /30".into(),
        ));
    }
    if c.cluster_cidr.blocks(c.node_cidr_prefix) < c.count as u64 {
        return Err(SimError::Config(format!(
            "cluster CIDR {} has room for {} /{} podCIDRs, not {}",
            c.cluster_cidr,
            c.cluster_cidr.blocks(c.node_cidr_prefix),
            c.node_cidr_prefix,
            c.count
        )));
    }
    if c.node_ip_range.blocks(32) < c.count as u64 + 2 {
        return Err(SimError::Config(format!(
            "node IP range {} is too small for {} nodes",
            c.node_ip_range, c.count
        )));
    }
    if c.lease_interval.is_zero() {
        return Err(SimError::Config("--lease-interval must be positive".into()));
    }
    for (flag, q) in [("--cpu", &c.cpu), ("--memory", &c.memory)] {
        skiff_api::quantity::Quantity::parse(q)
            .map_err(|e| SimError::Config(format!("{flag} {q:?}: {e}")))?;
    }
    Ok(())
}

pub(crate) fn ignore_not_found(r: Result<(), kube::Error>) -> Result<(), kube::Error> {
    match r {
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        other => other,
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// Registers node `index` (re-using a Node left by an earlier run) and
/// creates its Lease.
async fn register(shared: &Shared, template: &NodeTemplate, index: usize) -> Result<(), SimError> {
    let name = shared.node_name(index);
    let nodes: Api<Node> = Api::all(shared.client.clone());
    let node = node::node(
        template,
        &name,
        index,
        shared.pod_cidr(index),
        shared.node_ip(index),
    );
    let api_err = |what: &str| {
        let what = format!("{what} {name}");
        move |source| SimError::Api { what, source }
    };
    let uid = match nodes.create(&PostParams::default(), &node).await {
        Ok(created) => created.metadata.uid,
        Err(e) if is_conflict(&e) => {
            let status = serde_json::json!({"status": node.status});
            nodes
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await
                .map_err(api_err("updating the status of node"))?
                .metadata
                .uid
        }
        Err(e) => return Err(api_err("registering node")(e)),
    };
    let leases: Api<Lease> = Api::namespaced(shared.client.clone(), LEASE_NAMESPACE);
    let lease = node::lease(&name, uid.as_deref().unwrap_or_default());
    match leases.create(&PostParams::default(), &lease).await {
        Ok(_) => Ok(()),
        Err(e) if is_conflict(&e) => leases::renew(&leases, &name)
            .await
            .map_err(api_err("renewing the lease of")),
        Err(e) => Err(api_err("creating the lease of")(e)),
    }
}
