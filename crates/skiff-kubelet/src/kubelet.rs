//! The kubelet's top level: registers the Node, keeps its Lease and status
//! fresh, watches the pods bound to it, relists the runtime every second
//! (upstream's PLEG) and runs one [`PodWorker`](crate::worker) per pod.
//! Pods the runtime holds but the API no longer has are stopped and
//! removed; running containers of known pods are adopted, never restarted.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_cri::v1 as api;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ContainerImage, Node, Pod, Service};
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use skiff_client::events::EventRecorder;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::backoff::Backoff;
use crate::cri::Cri;
use crate::node::host::HostCapacity;
use crate::node::{self, NodeHealth, NodeIdentity};
use crate::volumes::{ApiObjectSource, ObjectSource, VolumeManager};
use crate::worker::snapshot::{PodSnapshot, RelistCache, relist};
use crate::worker::{PodWorker, Snapshot, WorkerInputs};

/// How often the runtime is relisted without a request.
const RELIST_PERIOD: Duration = Duration::from_secs(1);

/// Kubelet settings.
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    /// The Node's name.
    pub node_name: String,
    /// The node's address (InternalIP).
    pub node_ip: IpAddr,
    /// State: `<root>/pods/<uid>/...` (volumes, termination logs, /etc/hosts).
    pub root_dir: PathBuf,
    /// Container logs: `<pod_log_root>/<ns>_<name>_<uid>/<container>/<n>.log`.
    pub pod_log_root: PathBuf,
    /// Cluster DNS servers for ClusterFirst pods.
    pub cluster_dns: Vec<IpAddr>,
    /// Cluster domain (`cluster.local`).
    pub cluster_domain: String,
    /// The kubelet server's port, reported on the Node.
    pub kubelet_port: u16,
    /// `pods` capacity.
    pub max_pods: u32,
    /// Extra Node labels.
    pub node_labels: std::collections::BTreeMap<String, String>,
    /// PEM client CA certificates the log server trusts (the API server's
    /// kubelet client certificate is signed by one); `None` serves no logs.
    pub client_ca: Option<Vec<u8>>,
    /// Address the log server binds (its port is `kubelet_port`).
    pub server_bind: IpAddr,
    /// Rotate a container's log once it has this many bytes
    /// (`--container-log-max-size`); `None` turns rotation off.
    pub container_log_max_size: Option<u64>,
    /// Log files kept per container, the live one included
    /// (`--container-log-max-files`, at least 2).
    pub container_log_max_files: usize,
    /// Image filesystem usage (percent) at which image GC runs
    /// (`--image-gc-high-threshold`, default 85); 100 turns GC off.
    pub image_gc_high_threshold_percent: i32,
    /// Usage (percent) image GC frees down to (`--image-gc-low-threshold`,
    /// default 80).
    pub image_gc_low_threshold_percent: i32,
    /// Images detected more recently are never collected
    /// (`imageMinimumGCAge`, default 2m).
    pub image_minimum_gc_age: Duration,
    /// Pods go in a cgroup hierarchy by QoS class under `kubepods`
    /// (`--cgroups-per-qos`, default true); off, sandboxes get no
    /// `cgroup_parent`.
    pub cgroups_per_qos: bool,
    /// The cgroup `kubepods` goes under (`--cgroup-root`, default `/`).
    pub cgroup_root: String,
    /// Each pod cgroup's process limit (`--pod-max-pids`); `None` for none.
    pub pod_pids_limit: Option<i64>,
    /// Event writes a second (`--event-qps`, upstream's default 50); zero
    /// for no limit.
    pub event_qps: u32,
    /// Event writes allowed at once above `event_qps` (`--event-burst`,
    /// upstream's default 100).
    pub event_burst: u32,
}

/// Why the kubelet stopped.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    /// The runtime did not answer.
    #[error("container runtime: {0}")]
    Runtime(#[from] tonic::Status),
    /// The API server refused something essential.
    #[error("API server: {0}")]
    Api(#[from] kube::Error),
}

/// What every pod worker shares.
pub(crate) struct Shared {
    pub(crate) config: KubeletConfig,
    pub(crate) client: kube::Client,
    pub(crate) cri: Cri,
    /// `<runtime>` of container IDs (`<runtime>://<id>`).
    pub(crate) runtime_name: String,
    pub(crate) events: EventRecorder,
    pub(crate) volumes: VolumeManager,
    pub(crate) objects: Arc<dyn ObjectSource>,
    pub(crate) host_ips: Vec<String>,
    /// Exec probes and hooks run through the runtime.
    pub(crate) exec: Arc<dyn crate::prober::ExecRunner>,
    /// The node's resolver config (ClusterFirst pods search its domains too).
    pub(crate) host_dns: k8s_cri::v1::DnsConfig,
    /// The node's /etc/hosts (host-network pods get a copy).
    pub(crate) host_etc_hosts: String,
    /// Machine memory in bytes (Burstable OOM scores).
    pub(crate) memory_capacity: i64,
    /// The pod cgroups, with `cgroups_per_qos`.
    pub(crate) pod_cgroups: Option<Arc<crate::cm::PodCgroups>>,
    restart_backoff: Mutex<Backoff>,
    image_backoff: Mutex<Backoff>,
    /// Generation of the newest relist started.
    relist_started: AtomicU64,
    relist_now: Notify,
    /// Every Service, for the pods' service environment variables.
    pub(crate) services: kube::runtime::reflector::Store<Service>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("node", &self.config.node_name)
            .finish_non_exhaustive()
    }
}

fn lock(m: &Mutex<Backoff>) -> MutexGuard<'_, Backoff> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn lock_restart_backoff(&self) -> MutexGuard<'_, Backoff> {
        lock(&self.restart_backoff)
    }

    pub(crate) fn lock_image_backoff(&self) -> MutexGuard<'_, Backoff> {
        lock(&self.image_backoff)
    }

    /// Asks for a relist now; returns the generation that relist will have,
    /// noted in `wants` first so its result is sure to wake the asker.
    pub(crate) fn request_relist(&self, wants: &AtomicU64) -> u64 {
        let next = self.relist_started.load(Ordering::SeqCst) + 1;
        wants.fetch_max(next, Ordering::SeqCst);
        self.relist_now.notify_one();
        next
    }

    /// `<root>/pods/<uid>`.
    pub(crate) fn pod_dir(&self, uid: &str) -> PathBuf {
        self.config.root_dir.join("pods").join(uid)
    }

    /// `/var/log/pods/<ns>_<name>_<uid>`.
    pub(crate) fn pod_log_dir(&self, pod: &Pod) -> PathBuf {
        crate::config::pod_logs_directory(&self.config.pod_log_root, pod)
    }

    /// The CRI sandbox config of the pod's `attempt`-th sandbox.
    pub(crate) fn sandbox_config(
        &self,
        pod: &Pod,
        attempt: u32,
    ) -> Result<k8s_cri::v1::PodSandboxConfig, crate::config::ConfigError> {
        crate::config::sandbox_config_with_host_dns(
            pod,
            attempt,
            &crate::config::SandboxPaths {
                log_directory: self.pod_log_dir(pod),
                cgroup_parent: self
                    .pod_cgroups
                    .as_ref()
                    .and_then(|c| c.pod_cgroup(pod))
                    .unwrap_or_default(),
            },
            &self.config.cluster_dns,
            &self.config.cluster_domain,
            &self.host_dns,
        )
    }
}

/// The runtime's readiness, version and images for the Node's status.
async fn runtime_health(cri: &mut Cri) -> NodeHealth {
    let mut health = NodeHealth {
        runtime_ready: Ok(()),
        ..NodeHealth::default()
    };
    match cri
        .runtime
        .version(api::VersionRequest {
            version: "v1".to_owned(),
        })
        .await
    {
        Ok(v) => {
            let v = v.into_inner();
            health.runtime_version = format!("{}://{}", v.runtime_name, v.runtime_version);
        }
        Err(e) => health.runtime_ready = Err(format!("container runtime is down: {}", e.message())),
    }
    match cri
        .runtime
        .status(api::StatusRequest { verbose: false })
        .await
    {
        Ok(s) => {
            for c in s
                .into_inner()
                .status
                .map(|s| s.conditions)
                .unwrap_or_default()
            {
                if !c.status && health.runtime_ready.is_ok() {
                    health.runtime_ready = Err(format!(
                        "{}=false reason:{} message:{}",
                        c.r#type, c.reason, c.message
                    ));
                }
            }
        }
        Err(e) if health.runtime_ready.is_ok() => {
            health.runtime_ready = Err(format!(
                "container runtime status check failed: {}",
                e.message()
            ));
        }
        Err(_) => {}
    }
    if let Ok(images) = cri
        .images
        .list_images(api::ListImagesRequest { filter: None })
        .await
    {
        health.images = images
            .into_inner()
            .images
            .into_iter()
            .map(|i| ContainerImage {
                names: Some(i.repo_digests.into_iter().chain(i.repo_tags).collect()),
                size_bytes: i64::try_from(i.size).ok(),
            })
            .collect();
    }
    health
}

/// Keeps the Lease and the Node's status fresh and passes the node's
/// podCIDR to the runtime.
async fn node_loop(
    client: kube::Client,
    mut cri: Cri,
    id: NodeIdentity,
    capacity: HostCapacity,
    mut node: Node,
    mut shutdown: watch::Receiver<bool>,
) {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client, node::LEASE_NAMESPACE);
    let mut pod_cidr_sent: Option<String> = None;
    let mut last_report = Instant::now();
    let mut lease_tick = tokio::time::interval(node::LEASE_RENEW_INTERVAL);
    let mut status_tick = tokio::time::interval(node::STATUS_UPDATE_INTERVAL);
    loop {
        let cidr = node.spec.as_ref().and_then(|s| s.pod_cidr.clone());
        if let Some(cidr) = cidr
            && pod_cidr_sent.as_ref() != Some(&cidr)
        {
            let req = api::UpdateRuntimeConfigRequest {
                runtime_config: Some(api::RuntimeConfig {
                    network_config: Some(api::NetworkConfig {
                        pod_cidr: cidr.clone(),
                    }),
                }),
            };
            match cri.runtime.update_runtime_config(req).await {
                Ok(_) => pod_cidr_sent = Some(cidr),
                Err(e) => {
                    tracing::warn!(error = %e.message(), "cannot pass podCIDR to the runtime")
                }
            }
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = lease_tick.tick() => {
                let uid = node.metadata.uid.as_deref();
                if let Err(e) = node::renew_lease(&leases, &id.name, uid).await {
                    tracing::warn!(error = %e, "cannot renew node lease");
                }
            }
            _ = status_tick.tick() => {
                let health = runtime_health(&mut cri).await;
                let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::now(),
                );
                let status = node::node_status(&id, &capacity, &health, node.status.as_ref(), &now);
                let changed = node.status.as_ref().is_none_or(|old| node::status_changed(old, &status));
                if changed || last_report.elapsed() >= node::STATUS_REPORT_INTERVAL {
                    match node::patch_status(&nodes, &id.name, Some(&status)).await {
                        Ok(n) => {
                            node = n;
                            last_report = Instant::now();
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot update node status"),
                    }
                } else if let Ok(n) = nodes.get(&id.name).await {
                    // The spec (podCIDR, taints) may have changed meanwhile.
                    node.spec = n.spec;
                    node.metadata = n.metadata;
                }
            }
        }
    }
}

struct WorkerHandle {
    pod: watch::Sender<Option<Arc<Pod>>>,
    snapshot: watch::Sender<Snapshot>,
    /// The relist generation the worker waits for (0: none).
    wants: Arc<AtomicU64>,
}

/// Runs the kubelet until `shutdown` turns true. Containers keep running
/// when it stops; the next start adopts them.
pub async fn run(
    config: KubeletConfig,
    client: kube::Client,
    mut cri: Cri,
    shutdown: watch::Receiver<bool>,
) -> Result<(), KubeletError> {
    // One subtree per pod in each (see `skiff_sys::dir_layout`).
    skiff_sys::dir_layout::create_parent_of_subtrees(&config.root_dir.join("pods")).map_err(
        |e| {
            KubeletError::Runtime(tonic::Status::internal(format!(
                "create {}: {e}",
                config.root_dir.display()
            )))
        },
    )?;
    if let Err(e) = skiff_sys::dir_layout::create_parent_of_subtrees(&config.pod_log_root) {
        tracing::warn!(dir = %config.pod_log_root.display(), error = %e, "cannot create the pod log root");
    }
    let version = cri
        .runtime
        .version(api::VersionRequest {
            version: "v1".to_owned(),
        })
        .await?
        .into_inner();
    let capacity = HostCapacity::read(&config.root_dir);
    let pod_cgroups = if config.cgroups_per_qos {
        let pcs = crate::cm::PodCgroups::new(
            Arc::new(skiff_sys::cgroups::LinuxCgroups::new()),
            &config.cgroup_root,
            config.pod_pids_limit,
        );
        pcs.setup_node(capacity.cpus, capacity.memory_bytes)
            .map_err(|e| {
                KubeletError::Runtime(tonic::Status::internal(format!(
                    "create the pod cgroups under {} (--cgroups-per-qos=false turns them off): {e}",
                    pcs.layout().node()
                )))
            })?;
        Some(Arc::new(pcs))
    } else {
        None
    };
    let memory_capacity = i64::try_from(capacity.memory_bytes).unwrap_or(i64::MAX);
    let allocatable = capacity
        .allocatable(config.max_pods)
        .into_iter()
        .filter_map(|(k, v)| Some((k, skiff_api::quantity::Quantity::parse(&v.0).ok()?)))
        .collect();
    let id = NodeIdentity {
        name: config.node_name.clone(),
        internal_ip: config.node_ip,
        kubelet_port: config.kubelet_port,
        max_pods: config.max_pods,
        labels: config.node_labels.clone(),
    };
    let nodes: Api<Node> = Api::all(client.clone());
    let health = runtime_health(&mut cri).await;
    let node = loop {
        match node::register(&nodes, &id, &capacity, &health).await {
            Ok(n) => break n,
            Err(e) => {
                tracing::warn!(error = %e, node = %id.name, "cannot register node; retrying");
                let mut s = shutdown.clone();
                tokio::select! {
                    _ = s.changed() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        }
    };
    tracing::info!(node = %id.name, "node registered");
    let node_task = tokio::spawn(node_loop(
        client.clone(),
        cri.clone(),
        id.clone(),
        capacity,
        node,
        shutdown.clone(),
    ));

    // Container log rotation: upstream's container log manager.
    let log_rotation = config.container_log_max_size.map(|max_size| {
        let policy = crate::logrotate::LogRotatePolicy {
            max_size,
            max_files: config.container_log_max_files,
        };
        tokio::spawn(
            crate::logrotate::ContainerLogManager::new(cri.clone(), policy).run(shutdown.clone()),
        )
    });

    // Services for the containers' environment (upstream's service informer).
    let (services, services_writer) = kube::runtime::reflector::store();
    let services_task = {
        let api: Api<Service> = Api::all(client.clone());
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let stream = kube::runtime::reflector(
                services_writer,
                watcher(api, watcher::Config::default()).default_backoff(),
            )
            .for_each(|_| futures::future::ready(()));
            tokio::select! {
                () = stream => {}
                _ = stop.wait_for(|s| *s) => {}
            }
        })
    };

    let shared = Arc::new(Shared {
        events: EventRecorder::spawn_limited(
            client.clone(),
            "kubelet",
            &config.node_name,
            skiff_client::events::DEFAULT_EVENT_QUEUE,
            // `--event-qps 0` is no limit, as the bucket takes a rate of 0.
            skiff_client::rate::TokenBucket::new(f64::from(config.event_qps), config.event_burst),
        ),
        volumes: VolumeManager::new(config.root_dir.clone(), Arc::new(skiff_sys::LinuxMounter))
            .with_node_allocatable(allocatable),
        objects: Arc::new(ApiObjectSource::new(client.clone())),
        host_ips: vec![config.node_ip.to_string()],
        exec: Arc::new(crate::worker::CriExec(cri.clone())),
        host_dns: crate::config::parse_resolv_conf(
            &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        ),
        host_etc_hosts: std::fs::read_to_string("/etc/hosts").unwrap_or_default(),
        memory_capacity,
        pod_cgroups,
        runtime_name: version.runtime_name,
        restart_backoff: Mutex::new(Backoff::default()),
        image_backoff: Mutex::new(Backoff::default()),
        relist_started: AtomicU64::new(0),
        relist_now: Notify::new(),
        services,
        config,
        client: client.clone(),
        cri: cri.clone(),
    });

    // Image garbage collection: upstream's image GC manager, every 5 minutes.
    let image_gc = tokio::spawn(
        crate::images_gc::ImageGcManager::new(
            cri.clone(),
            crate::images_gc::ImageGcPolicy {
                high_threshold_percent: shared.config.image_gc_high_threshold_percent,
                low_threshold_percent: shared.config.image_gc_low_threshold_percent,
                min_age: shared.config.image_minimum_gc_age,
            },
            Arc::new(crate::images_gc::StatvfsFs),
            Arc::new(shared.events.clone()),
            &shared.config.node_name,
        )
        .run(crate::images_gc::IMAGE_GC_PERIOD, shutdown.clone()),
    );

    let logs = crate::logs::PodLogs::default();
    let server_task = match &shared.config.client_ca {
        Some(cas) => {
            let streamer = crate::exec::CriStreamer::new(logs.clone(), shared.cri.clone());
            Some(
                start_server(
                    &shared.config,
                    cas,
                    logs.clone(),
                    streamer,
                    shutdown.clone(),
                )
                .await?,
            )
        }
        None => None,
    };
    let result = manage_pods(shared, client, logs, shutdown).await;
    node_task.abort();
    if let Some(t) = log_rotation {
        t.abort();
    }
    image_gc.abort();
    services_task.abort();
    if let Some(t) = server_task {
        let _ = t.await;
    }
    result
}

/// Binds the log server on `kubelet_port` with a self-signed serving
/// certificate (the API server does not verify kubelets' certificates by
/// default, as upstream) and client certificates checked against `cas`.
async fn start_server(
    config: &KubeletConfig,
    ca_pem: &[u8],
    logs: crate::logs::PodLogs,
    streamer: crate::exec::CriStreamer,
    shutdown: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, KubeletError> {
    let internal = |m: String| KubeletError::Runtime(tonic::Status::internal(m));
    let mut params = rcgen::CertificateParams::new(vec![config.node_name.clone()])
        .map_err(|e| internal(format!("kubelet serving certificate: {e}")))?;
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress(config.node_ip));
    let key = rcgen::KeyPair::generate().map_err(|e| internal(format!("kubelet key: {e}")))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| internal(format!("kubelet serving certificate: {e}")))?;
    use rustls::pki_types::pem::PemObject;
    let cas: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| internal(format!("client CA: {e}")))?;
    if cas.is_empty() {
        return Err(internal("client CA: no certificate in the file".to_owned()));
    }
    let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let tls = crate::server::tls_config(&cas, vec![cert.der().clone()], key_der)
        .map_err(|e| internal(format!("kubelet server TLS: {e}")))?;
    let server = crate::server::KubeletServer::bind(crate::server::KubeletServerConfig {
        bind: std::net::SocketAddr::new(config.server_bind, config.kubelet_port),
        tls,
    })
    .await
    .map_err(|e| internal(format!("kubelet server: {e}")))?;
    Ok(tokio::spawn(async move {
        let mut stop = shutdown;
        server
            .serve(Arc::new(logs), Some(Arc::new(streamer)), async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
    }))
}

/// The relist loop: every second, or at once when a worker asks.
async fn relist_loop(
    shared: Arc<Shared>,
    out: watch::Sender<Arc<(u64, HashMap<String, PodSnapshot>)>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut cri = shared.cri.clone();
    let mut cache = RelistCache::default();
    loop {
        let generation = shared.relist_started.fetch_add(1, Ordering::SeqCst) + 1;
        match relist(&mut cri, &mut cache).await {
            Ok(pods) => {
                let _ = out.send(Arc::new((generation, pods)));
            }
            Err(e) => tracing::warn!(error = %e.message(), "relist failed"),
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = shared.relist_now.notified() => {}
            _ = tokio::time::sleep(RELIST_PERIOD) => {}
        }
    }
}

async fn manage_pods(
    shared: Arc<Shared>,
    client: kube::Client,
    logs: crate::logs::PodLogs,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), KubeletError> {
    let pods: Api<Pod> = Api::all(client);
    let selector = format!("spec.nodeName={}", shared.config.node_name);
    let mut events = watcher(pods, watcher::Config::default().fields(&selector)).boxed();
    let (relist_tx, mut relist_rx) = watch::channel(Arc::new((0u64, HashMap::new())));
    let relister = tokio::spawn(relist_loop(shared.clone(), relist_tx, shutdown.clone()));

    let mut workers: HashMap<String, WorkerHandle> = HashMap::new();
    let mut tasks: JoinSet<String> = JoinSet::new();
    // UIDs seen in the current watch (re)list, to find pods deleted meanwhile.
    let mut listing: Option<Vec<String>> = None;
    // Orphans are only judged after the first complete list.
    let mut synced = false;
    // Pod cgroups of pods neither the API nor the runtime has are removed
    // once, after the first relist that follows the first complete list.
    let mut orphan_cgroups_checked = shared.pod_cgroups.is_none();

    let worker_shutdown = shutdown.clone();
    let spawn = |uid: &str,
                 pod: Option<Arc<Pod>>,
                 snapshot: PodSnapshot,
                 generation: u64,
                 workers: &mut HashMap<String, WorkerHandle>,
                 tasks: &mut JoinSet<String>| {
        let (pod_tx, pod_rx) = watch::channel(pod);
        let (snap_tx, snap_rx) = watch::channel(Snapshot {
            generation,
            pod: snapshot,
        });
        let wants = Arc::new(AtomicU64::new(0));
        let worker = PodWorker::new(
            shared.clone(),
            uid.to_owned(),
            WorkerInputs {
                pod: pod_rx,
                snapshot: snap_rx,
                shutdown: worker_shutdown.clone(),
                wants: wants.clone(),
            },
        );
        let uid_owned = uid.to_owned();
        tasks.spawn(async move {
            worker.run().await;
            uid_owned
        });
        workers.insert(
            uid.to_owned(),
            WorkerHandle {
                pod: pod_tx,
                snapshot: snap_tx,
                wants,
            },
        );
    };

    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            Some(done) = tasks.join_next() => {
                if let Ok(uid) = done {
                    workers.remove(&uid);
                    logs.remove_uid(&uid);
                }
            }
            changed = relist_rx.changed() => {
                if changed.is_err() {
                    break;
                }
                let latest = relist_rx.borrow_and_update().clone();
                let (generation, pods) = (&latest.0, &latest.1);
                logs.set_snapshots(pods);
                // Wake a worker when its pod's runtime objects changed or
                // when this is the relist it waits for; an idle pod is not
                // synced every second, nor every time another pod acts.
                for (uid, w) in &workers {
                    let wants = w.wants.load(Ordering::SeqCst);
                    let due = wants != 0 && *generation >= wants;
                    if due {
                        // A newer wish made meanwhile stays.
                        let _ = w.wants.compare_exchange(wants, 0, Ordering::SeqCst, Ordering::SeqCst);
                    }
                    let snap = pods.get(uid).cloned().unwrap_or_default();
                    w.snapshot.send_if_modified(|s| {
                        let changed = s.pod != snap;
                        s.generation = *generation;
                        s.pod = snap;
                        changed || due
                    });
                }
                if synced {
                    // Runtime pods the API does not have: stop and remove them.
                    for (uid, snap) in pods {
                        if !workers.contains_key(uid) {
                            tracing::info!(pod = %uid, "removing pod unknown to the API server");
                            spawn(uid, None, snap.clone(), *generation, &mut workers, &mut tasks);
                        }
                    }
                    if !orphan_cgroups_checked
                        && let Some(pcs) = shared.pod_cgroups.clone()
                    {
                        orphan_cgroups_checked = true;
                        let known: std::collections::HashSet<String> =
                            workers.keys().cloned().collect();
                        tokio::spawn(async move {
                            for uid in pcs.remove_orphans(&known).await {
                                tracing::info!(pod = %uid, "removed the cgroup of a pod no longer known");
                            }
                        });
                    }
                }
            }
            event = events.try_next() => {
                let event = match event {
                    Ok(Some(e)) => e,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "pod watch failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                let current = relist_rx.borrow().clone();
                match event {
                    watcher::Event::Init => listing = Some(Vec::new()),
                    watcher::Event::InitApply(pod) | watcher::Event::Apply(pod) => {
                        let Some(uid) = pod.metadata.uid.clone() else { continue };
                        let containers = pod
                            .spec
                            .iter()
                            .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers))
                            .map(|c| c.name.clone())
                            .collect();
                        logs.set_pod(
                            pod.metadata.namespace.as_deref().unwrap_or_default(),
                            pod.metadata.name.as_deref().unwrap_or_default(),
                            &uid,
                            shared.pod_log_dir(&pod),
                            containers,
                        );
                        if let Some(l) = listing.as_mut() {
                            l.push(uid.clone());
                        }
                        let pod = Arc::new(pod);
                        match workers.get(&uid) {
                            Some(w) => {
                                let _ = w.pod.send(Some(pod));
                            }
                            None => {
                                tracing::debug!(pod = %uid, name = ?pod.metadata.name, "pod worker started");
                                let snap = current.1.get(&uid).cloned().unwrap_or_default();
                                spawn(&uid, Some(pod), snap, current.0, &mut workers, &mut tasks);
                            }
                        }
                    }
                    watcher::Event::Delete(pod) => {
                        if let Some(w) = pod.metadata.uid.as_ref().and_then(|u| workers.get(u)) {
                            let _ = w.pod.send(None);
                        }
                    }
                    watcher::Event::InitDone => {
                        if let Some(seen) = listing.take() {
                            for (uid, w) in &workers {
                                if !seen.contains(uid) {
                                    let _ = w.pod.send(None);
                                }
                            }
                        }
                        synced = true;
                    }
                }
            }
        }
    }
    relister.abort();
    // Workers see the shutdown signal and return without touching containers.
    while tasks.join_next().await.is_some() {}
    Ok(())
}
