//! Shared by the scheduler's integration tests: the real API server on
//! 127.0.0.1, the scheduler with the default plugins and profile, hollow
//! nodes in-process, and small helpers to create pods and wait for them.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::{Value, json};
use skiff_apiserver::metrics::SharedCollector;
use skiff_apiserver::{ApiServer, ApiServerConfig};
use skiff_scheduler::config::KubeSchedulerConfiguration;
use skiff_scheduler::metrics::SchedulerMetrics;
use skiff_scheduler::{SchedulerOptions, run};
use skiff_sim::{HollowNodeConfig, HollowNodes};
use skiff_store::AnyStore;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The zone label hollow nodes carry.
pub const ZONE: &str = "topology.kubernetes.io/zone";
/// The hostname label.
pub const HOSTNAME: &str = "kubernetes.io/hostname";

/// Scheduler options: the real registry and default profile.
pub fn options(identity: &str, leader_elect: bool) -> SchedulerOptions {
    let registry = skiff_scheduler::plugins::registry();
    let names = registry.iter().map(|(n, _)| *n).collect();
    let yaml = format!(
        "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n\
         leaderElection:\n  leaderElect: {leader_elect}\n"
    );
    SchedulerOptions {
        config: KubeSchedulerConfiguration::parse(&yaml, &names).unwrap(),
        registry,
        identity: identity.to_owned(),
        metrics: skiff_scheduler::metrics::SchedulerMetrics::new(),
    }
}

/// A server (with a client) and, once started, a scheduler and hollow
/// nodes.
pub struct Cluster {
    pub server: ApiServer,
    pub client: kube::Client,
    scheduler: Option<(watch::Sender<bool>, JoinHandle<()>)>,
    hollow: Vec<HollowNodes>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts the API server on an ephemeral port.
    pub async fn start() -> Cluster {
        Cluster::start_with_collectors(Vec::new()).await
    }

    /// [`Cluster::start`], the server also serving `collectors` on
    /// `/metrics`.
    pub async fn start_with_collectors(collectors: Vec<SharedCollector>) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let store = AnyStore::open(&[], dir.path()).await.unwrap();
        let mut config = ApiServerConfig::new(dir.path());
        config.metrics_collectors = collectors;
        config.bind_address = IpAddr::V4(Ipv4Addr::LOCALHOST);
        config.port = 0;
        let kubeconfig = dir.path().join("kubeconfig.yaml");
        config.write_kubeconfig = Some(kubeconfig.clone());
        let server = ApiServer::start(config, store).await.unwrap();
        let client = client(&kubeconfig).await;
        Cluster {
            server,
            client,
            scheduler: None,
            hollow: Vec::new(),
            _dir: dir,
        }
    }

    /// [`Cluster::start`], then the scheduler (no leader election).
    pub async fn with_scheduler() -> Cluster {
        Cluster::with_scheduler_serving_metrics().await.0
    }

    /// [`Cluster::with_scheduler`], the scheduler's metrics served on the
    /// API server's `/metrics` as in `skiff server`.
    pub async fn with_scheduler_serving_metrics() -> (Cluster, SchedulerMetrics) {
        let opts = options("test", false);
        let metrics = opts.metrics.clone();
        let collector = SharedCollector(Arc::new(metrics.clone()));
        let mut c = Cluster::start_with_collectors(vec![collector]).await;
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn({
            let client = c.client.clone();
            async move { run(opts, client, rx).await.unwrap() }
        });
        c.scheduler = Some((tx, task));
        (c, metrics)
    }

    /// The API server's `/metrics` text.
    pub async fn metrics_text(&self) -> String {
        let req = http::Request::get("/metrics").body(Vec::new()).unwrap();
        self.client.request_text(req).await.unwrap()
    }

    /// Registers `count` hollow nodes `<prefix>0..` with `cpu` cores each,
    /// round robin over zone-0..zone-2, and the given taints.
    pub async fn hollow_nodes(&mut self, prefix: &str, count: usize, cpu: &str, taints: &[&str]) {
        let nodes = HollowNodes::start(
            self.client.clone(),
            HollowNodeConfig {
                count,
                name_prefix: prefix.to_owned(),
                cpu: cpu.to_owned(),
                taints: taints
                    .iter()
                    .map(|t| skiff_sim::hollow::parse_taint(t).unwrap())
                    .collect(),
                // A second group must not reuse the first group's podCIDRs.
                cluster_cidr: skiff_sim::hollow::Cidr {
                    base: Ipv4Addr::new(10, 128 + self.hollow.len() as u8, 0, 0),
                    prefix: 16,
                },
                ..HollowNodeConfig::default()
            },
        )
        .await
        .unwrap();
        self.hollow.push(nodes);
    }

    /// Stops the scheduler, the hollow nodes and the server.
    pub async fn stop(mut self) {
        if let Some((tx, task)) = self.scheduler.take() {
            tx.send_replace(true);
            task.await.unwrap();
        }
        for h in self.hollow.drain(..) {
            h.shutdown().await;
        }
        self.server.shutdown().await;
    }

    /// Pods in `ns`.
    pub fn pods(&self, ns: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Creates a pod in `ns` from `spec` (containers default to one
    /// busybox requesting `cpu` when `spec` has none).
    pub async fn create_pod(&self, ns: &str, name: &str, labels: Value, spec: Value) {
        let mut spec = spec;
        if spec.get("containers").is_none() {
            spec["containers"] = json!([{"name": "c", "image": "busybox"}]);
        }
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": spec,
        }))
        .unwrap();
        self.pods(ns)
            .create(&PostParams::default(), &pod)
            .await
            .unwrap();
    }

    /// The node `ns/pod` is bound to, once it is.
    pub async fn bound_node(&self, ns: &str, pod: &str) -> String {
        let pods = self.pods(ns);
        wait_for(&format!("{ns}/{pod} to be bound"), async || {
            pods.get(pod).await.ok()?.spec?.node_name
        })
        .await
    }

    /// The message of `ns/pod`'s PodScheduled=False condition, once set.
    pub async fn unschedulable_message(&self, ns: &str, pod: &str) -> String {
        let pods = self.pods(ns);
        wait_for(&format!("{ns}/{pod}'s PodScheduled=False"), async || {
            let p = pods.get(pod).await.ok()?;
            let c = p
                .status?
                .conditions?
                .into_iter()
                .find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
            assert_eq!(c.reason.as_deref(), Some("Unschedulable"));
            c.message
        })
        .await
    }

    /// The first event with `reason` about `ns/pod`.
    pub async fn event(&self, ns: &str, pod: &str, reason: &str) -> Event {
        let events: Api<Event> = Api::namespaced(self.client.clone(), ns);
        wait_for(&format!("{reason} event for {pod}"), async || {
            events
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|e| {
                    e.reason.as_deref() == Some(reason)
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(pod)
                })
        })
        .await
    }

    /// Every node's labels by name.
    pub async fn node_labels(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        nodes
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|n| {
                (
                    n.metadata.name.unwrap_or_default(),
                    n.metadata.labels.unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Waits until every pod in `names` is bound; their nodes' values of
    /// the node label `key`, in order.
    pub async fn bound_label_values(&self, ns: &str, names: &[String], key: &str) -> Vec<String> {
        let labels = self.node_labels().await;
        let mut out = Vec::new();
        for n in names {
            let node = self.bound_node(ns, n).await;
            out.push(labels[&node][key].clone());
        }
        out
    }
}

/// A kube-rs client from a kubeconfig file.
pub async fn client(path: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(path).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(cfg).unwrap()
}

/// Polls `f` every 50 ms until it returns `Some`, for up to 20 s.
pub async fn wait_for<T, F: AsyncFnMut() -> Option<T>>(what: &str, mut f: F) -> T {
    for _ in 0..400 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Requests of one container.
pub fn cpu_request(cpu: &str) -> Value {
    json!([{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}])
}
