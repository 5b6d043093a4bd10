//! Shared by the controller integration tests: the real API server on
//! 127.0.0.1, hollow nodes (pods bound to them become Running and Ready),
//! the controller manager in-process, and helpers.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde::de::DeserializeOwned;
use serde_json::Value;
use skiff_apiserver::metrics::SharedCollector;
use skiff_apiserver::{ApiServer, ApiServerConfig};
use skiff_controllers::ControllerManagerOptions;
use skiff_scheduler::SchedulerOptions;
use skiff_sim::{HollowNodeConfig, HollowNodes};
use skiff_store::AnyStore;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The hollow node pods are pinned to in templates.
pub const NODE: &str = "hollow-0";

/// A server, hollow nodes and a controller manager.
pub struct Cluster {
    pub server: ApiServer,
    pub client: kube::Client,
    pub kubeconfig: PathBuf,
    managers: Vec<(watch::Sender<bool>, JoinHandle<()>)>,
    schedulers: Vec<(watch::Sender<bool>, JoinHandle<()>)>,
    hollow: Option<HollowNodes>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts the API server on an ephemeral port, `nodes` hollow nodes and
    /// a controller manager without leader election.
    pub async fn start(nodes: usize) -> Cluster {
        let mut c = Cluster::start_bare(nodes).await;
        c.start_manager("test", false);
        c
    }

    /// Like [`Cluster::start`] but with no controller manager yet.
    pub async fn start_bare(nodes: usize) -> Cluster {
        Cluster::start_bare_with(HollowNodeConfig {
            count: nodes,
            ..HollowNodeConfig::default()
        })
        .await
    }

    /// The API server and hollow nodes as `nodes` says; no controller
    /// manager yet.
    pub async fn start_bare_with(nodes: HollowNodeConfig) -> Cluster {
        Cluster::start_serving_with(nodes, Vec::new()).await
    }

    /// The API server (also serving `collectors` on `/metrics`, as `skiff
    /// server` serves its components' metrics) and `nodes` hollow nodes; no
    /// controller manager.
    pub async fn start_serving(nodes: usize, collectors: Vec<SharedCollector>) -> Cluster {
        let nodes = HollowNodeConfig {
            count: nodes,
            ..HollowNodeConfig::default()
        };
        Cluster::start_serving_with(nodes, collectors).await
    }

    async fn start_serving_with(
        nodes: HollowNodeConfig,
        collectors: Vec<SharedCollector>,
    ) -> Cluster {
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
        let hollow = if nodes.count > 0 {
            Some(HollowNodes::start(client.clone(), nodes).await.unwrap())
        } else {
            None
        };
        Cluster {
            server,
            client,
            kubeconfig,
            managers: Vec::new(),
            schedulers: Vec::new(),
            hollow,
            _dir: dir,
        }
    }

    /// Starts another controller manager.
    pub fn start_manager(&mut self, identity: &str, leader_elect: bool) {
        let mut opts = ControllerManagerOptions::new(identity.to_owned());
        opts.leader_elect = leader_elect;
        self.start_manager_with(opts);
    }

    /// Starts another controller manager with `opts`.
    pub fn start_manager_with(&mut self, opts: ControllerManagerOptions) {
        let (tx, rx) = watch::channel(false);
        let client = self.client.clone();
        let task = tokio::spawn(async move {
            skiff_controllers::run(opts, client, rx).await.unwrap();
        });
        self.managers.push((tx, task));
    }

    /// Starts a scheduler without leader election, for tests whose pods
    /// are bound by it rather than pinned to [`NODE`].
    pub fn start_scheduler(&mut self, identity: &str) {
        let mut opts = SchedulerOptions::new();
        opts.config.leader_election.leader_elect = false;
        opts.identity = identity.to_owned();
        let (tx, rx) = watch::channel(false);
        let client = self.client.clone();
        let task = tokio::spawn(async move {
            skiff_scheduler::run(opts, client, rx).await.unwrap();
        });
        self.schedulers.push((tx, task));
    }

    /// The hollow nodes, if any were started.
    pub fn hollow(&self) -> Option<&HollowNodes> {
        self.hollow.as_ref()
    }

    /// Runs the real kubectl against the cluster.
    pub async fn kubectl_output(&self, args: &[&str]) -> std::process::Output {
        tokio::process::Command::new("/usr/bin/kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .await
            .unwrap()
    }

    /// Runs the real kubectl against the cluster: whether it succeeded,
    /// and its stdout then stderr.
    pub async fn kubectl(&self, args: &[&str]) -> (bool, String) {
        let out = self.kubectl_output(args).await;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// Stops everything.
    pub async fn stop(mut self) {
        for (tx, task) in self.schedulers.drain(..).chain(self.managers.drain(..)) {
            tx.send_replace(true);
            task.await.unwrap();
        }
        if let Some(h) = self.hollow.take() {
            h.shutdown().await;
        }
        self.server.shutdown().await;
    }

    /// Pods in `ns`.
    pub fn pods(&self, ns: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Active (not terminating) pods in `ns` matching `selector`.
    pub async fn active_pods(&self, ns: &str, selector: &str) -> Vec<Pod> {
        self.pods(ns)
            .list(&ListParams::default().labels(selector))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect()
    }

    /// Events in `ns` with `reason`.
    pub async fn events(&self, ns: &str, reason: &str) -> Vec<Event> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), ns);
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .collect()
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

/// Patches `name`, retrying on 409: the server can answer a patch racing a
/// status write with a conflict (upstream retries internally).
pub async fn patch_retrying<K>(api: &Api<K>, name: &str, patch: &Patch<Value>)
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    for _ in 0..10 {
        match api.patch(name, &PatchParams::default(), patch).await {
            Err(kube::Error::Api(s)) if s.code == 409 => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            r => {
                r.unwrap();
                return;
            }
        }
    }
    panic!("patch of {name} kept conflicting");
}

/// Polls `f` every 50 ms until it returns `Some`, for up to 30 s.
pub async fn wait_for<T, F: AsyncFnMut() -> Option<T>>(what: &str, mut f: F) -> T {
    for _ in 0..600 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

impl Cluster {
    /// Stops the `i`th manager started (counting those still running).
    pub async fn stop_manager(&mut self, i: usize) {
        let (tx, task) = self.managers.remove(i);
        tx.send_replace(true);
        task.await.unwrap();
    }
}
