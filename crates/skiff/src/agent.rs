//! The node agent: the built-in runtime (unless `--container-runtime-endpoint`
//! names another CRI runtime) served on a unix socket, and the kubelet
//! speaking CRI to it. `skiff server` runs it in-process; `skiff agent` runs
//! it against a remote server.

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use skiff_kubelet::KubeletConfig;
use skiff_kubelet::cri::Cri;
use skiff_kubelet::routes::PodRoutesConfig;
use skiff_runtime::PodNetwork;
use skiff_runtime::cri::api::image_service_server::ImageServiceServer;
use skiff_runtime::cri::api::runtime_service_server::RuntimeServiceServer;
use skiff_runtime::cri::{CriImageService, CriRuntimeService, serve_unix};
use skiff_runtime::network::cni::{CniConfig, CniNetwork};
use skiff_runtime::network::{Ipv4Cidr, NodePodNetwork};
use skiff_runtime::stream::server::StreamingServer;
use skiff_runtime::{ImageStore, RegistryConfig, Runtime, RuntimeConfig, RuntimeDeps};
use skiff_sys::net::LinuxNetOps;
use tokio::sync::watch;

/// Flags shared by `skiff server` (its agent) and `skiff agent`.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentFlags {
    /// The Node's name (default: the host name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// The node's address other nodes reach it at (default: from the host name).
    #[arg(long)]
    pub node_ip: Option<IpAddr>,
    /// A CRI runtime's socket (e.g. unix:///run/containerd/containerd.sock)
    /// to use instead of the built-in runtime.
    #[arg(long)]
    pub container_runtime_endpoint: Option<PathBuf>,
    /// IPv4 range of pod addresses; each node gets a /24 from it.
    #[arg(long, default_value = "10.42.0.0/16")]
    pub cluster_cidr: String,
    /// The cluster DNS server's address (pods' nameserver; default: for
    /// `skiff server` the .10 of --service-cidr, else 10.43.0.10).
    #[arg(long)]
    pub cluster_dns: Option<IpAddr>,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Port of the kubelet's server.
    #[arg(long, default_value_t = 10250)]
    pub kubelet_port: u16,
    /// Where container logs go.
    #[arg(long, default_value = "/var/log/pods")]
    pub pod_log_dir: PathBuf,
    /// CA certificates (PEM) of the clients the kubelet's log server accepts
    /// (the API server's kubelet client); `skiff server` uses its own.
    #[arg(long)]
    pub client_ca_file: Option<PathBuf>,
    /// Rotate a container's log once it reaches this size (a quantity, e.g.
    /// 10Mi; negative turns rotation off).
    #[arg(long, default_value = skiff_kubelet::logrotate::DEFAULT_CONTAINER_LOG_MAX_SIZE,
          value_parser = parse_container_log_max_size, allow_negative_numbers = true)]
    pub container_log_max_size: ContainerLogMaxSize,
    /// Log files kept per container, the live one included (at least 2).
    #[arg(long, default_value_t = skiff_kubelet::logrotate::DEFAULT_CONTAINER_LOG_MAX_FILES,
          value_parser = parse_container_log_max_files)]
    pub container_log_max_files: usize,
    /// Image filesystem usage (percent) at which image garbage collection
    /// runs; 100 turns it off.
    #[arg(long, default_value_t = skiff_kubelet::images_gc::DEFAULT_IMAGE_GC_HIGH_THRESHOLD_PERCENT,
          allow_negative_numbers = true)]
    pub image_gc_high_threshold: i32,
    /// Image filesystem usage (percent) image garbage collection frees down to.
    #[arg(long, default_value_t = skiff_kubelet::images_gc::DEFAULT_IMAGE_GC_LOW_THRESHOLD_PERCENT,
          allow_negative_numbers = true)]
    pub image_gc_low_threshold: i32,
    /// The built-in pod network's bridge (tests run several agents on one host).
    #[arg(long, default_value = skiff_runtime::network::DEFAULT_BRIDGE, hide = true)]
    pub pod_bridge: String,
    /// The nftables table of the built-in network's masquerade rule.
    #[arg(long, default_value = skiff_runtime::network::DEFAULT_NAT_TABLE, hide = true)]
    pub pod_nat_table: String,
    /// Do not run the Service proxy (ClusterIP/NodePort rules in nftables).
    #[arg(long)]
    pub disable_kube_proxy: bool,
    /// The Service proxy's nftables table (tests run several agents on one host).
    #[arg(long, default_value = skiff_proxy::DEFAULT_TABLE, hide = true)]
    pub proxy_table: String,
    /// Do not enforce NetworkPolicies (nftables rules for this node's pods).
    #[arg(long)]
    pub disable_network_policy: bool,
    /// The NetworkPolicy enforcer's nftables table (tests run several agents on one host).
    #[arg(long, default_value = skiff_proxy::netpol::DEFAULT_TABLE, hide = true)]
    pub network_policy_table: String,
    /// Where the Service proxy's and the NetworkPolicy enforcer's metrics
    /// are served over plain HTTP (`/metrics`, `/healthz`), as kube-proxy's
    /// `--metrics-bind-address`; empty turns it off.
    #[arg(long, default_value = "127.0.0.1:10249", value_parser = parse_metrics_address)]
    pub proxy_metrics_bind_address: MetricsAddress,
    /// Directory of CNI network configurations: pods are connected by the
    /// plugin chain of its first .conf/.conflist instead of the built-in bridge.
    #[arg(long)]
    pub cni_conf_dir: Option<PathBuf>,
    /// Directories (comma-separated) of CNI plugin binaries, e.g. /usr/lib/cni;
    /// giving it also selects CNI.
    #[arg(long, value_delimiter = ',')]
    pub cni_bin_dir: Vec<PathBuf>,
    /// Put pods in cgroups by QoS class under a `kubepods` cgroup limited to
    /// the node's allocatable resources (`--cgroups-per-qos=false` turns it off).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub cgroups_per_qos: bool,
    /// The cgroup the `kubepods` hierarchy goes under.
    #[arg(long, default_value = "/")]
    pub cgroup_root: String,
    /// Maximum processes in each pod's cgroup; -1 for no limit.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub pod_max_pids: i64,
    /// Event creations a second the kubelet makes at most; 0 for no limit.
    #[arg(long, default_value = "50", allow_negative_numbers = true,
          value_parser = |v: &str| parse_event_limit(v, "eventRecordQPS (--event-qps)"))]
    pub event_qps: u32,
    /// Event creations the kubelet may burst to above --event-qps.
    #[arg(long, default_value = "100", allow_negative_numbers = true,
          value_parser = |v: &str| parse_event_limit(v, "eventBurst (--event-burst)"))]
    pub event_burst: u32,
}

/// `--proxy-metrics-bind-address`: `None` when empty (off). (A newtype: clap
/// reads a bare `Option` as "the flag may be absent".)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsAddress(pub Option<std::net::SocketAddr>);

fn parse_metrics_address(s: &str) -> Result<MetricsAddress, String> {
    if s.trim().is_empty() {
        return Ok(MetricsAddress(None));
    }
    s.parse()
        .map(|a| MetricsAddress(Some(a)))
        .map_err(|_| format!("{s:?} is not an address:port (e.g. 127.0.0.1:10249), nor empty"))
}

/// `--cluster-dns` of an agent that is not told (the .10 of the default
/// service range).
pub const DEFAULT_CLUSTER_DNS: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 43, 0, 10));

/// Where CNI looks when only one of the two flags is given (upstream's defaults).
const DEFAULT_CNI_CONF_DIR: &str = "/etc/cni/net.d";
const DEFAULT_CNI_BIN_DIR: &str = "/opt/cni/bin";

/// `--container-log-max-size` in bytes; `None` turns rotation off. (A
/// newtype: clap reads a bare `Option` as "the flag may be absent".)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerLogMaxSize(pub Option<u64>);

fn parse_container_log_max_size(value: &str) -> Result<ContainerLogMaxSize, String> {
    skiff_kubelet::logrotate::parse_max_size(value).map(ContainerLogMaxSize)
}

fn parse_container_log_max_files(value: &str) -> Result<usize, String> {
    let n: usize = value
        .parse()
        .map_err(|e| format!("invalid configuration: containerLogMaxFiles {value:?}: {e}"))?;
    skiff_kubelet::logrotate::validate_max_files(n)
}

/// `--event-qps` / `--event-burst`: an int32 that must not be negative, with
/// upstream's kubelet configuration message.
fn parse_event_limit(value: &str, field: &str) -> Result<u32, String> {
    let n: i32 = value
        .parse()
        .map_err(|e| format!("invalid configuration: {field} {value:?}: {e}"))?;
    u32::try_from(n)
        .map_err(|_| format!("invalid configuration: {field} {n} must not be a negative number"))
}

impl AgentFlags {
    /// The cluster CIDR, parsed.
    pub fn cluster_cidr(&self) -> anyhow::Result<Ipv4Cidr> {
        self.cluster_cidr
            .parse()
            .map_err(|e| anyhow::anyhow!("--cluster-cidr {:?}: {e}", self.cluster_cidr))
    }

    /// The CNI settings, when `--cni-conf-dir` or `--cni-bin-dir` selects CNI.
    fn cni(&self, state_dir: &Path) -> Option<CniConfig> {
        if self.cni_conf_dir.is_none() && self.cni_bin_dir.is_empty() {
            return None;
        }
        Some(CniConfig {
            conf_dir: self
                .cni_conf_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_CNI_CONF_DIR)),
            bin_dirs: if self.cni_bin_dir.is_empty() {
                vec![PathBuf::from(DEFAULT_CNI_BIN_DIR)]
            } else {
                self.cni_bin_dir.clone()
            },
            state_dir: state_dir.to_path_buf(),
            ifname: skiff_runtime::network::POD_IFNAME.to_owned(),
        })
    }

    /// The image GC policy from the flags, validated as upstream's kubelet
    /// validates its configuration.
    pub fn image_gc_policy(&self) -> Result<skiff_kubelet::images_gc::ImageGcPolicy, String> {
        let policy = skiff_kubelet::images_gc::ImageGcPolicy {
            high_threshold_percent: self.image_gc_high_threshold,
            low_threshold_percent: self.image_gc_low_threshold,
            ..Default::default()
        };
        policy.validate().map(|()| policy)
    }
}

/// `<data-dir>/agent/run/cri.sock`: the built-in runtime's socket.
pub fn runtime_socket(data_dir: &Path) -> PathBuf {
    data_dir.join("agent").join("run").join("cri.sock")
}

/// Imports the air-gap tarballs under `<data-dir>/agent/images/`.
fn import_airgap_images(store: &ImageStore, data_dir: &Path) {
    let dir = skiff_runtime::airgap_images_dir(data_dir);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_archive = path
            .extension()
            .is_some_and(|e| e == "tar" || e == "oci" || e == "docker");
        if !is_archive {
            continue;
        }
        match store.import(&path) {
            Ok(images) => {
                // Pinned, as k3s pins them: image GC on a full disk must not
                // remove what an air-gapped node cannot pull again.
                for image in &images {
                    if let Err(e) = store.set_pinned(&image.id, true) {
                        tracing::warn!(image = %image.id, error = %e, "cannot pin an air-gap image");
                    }
                }
                tracing::info!(file = %path.display(), images = images.len(), "imported air-gap images")
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot import air-gap images")
            }
        }
    }
}

/// Starts the built-in runtime's CRI server; returns its socket and task.
async fn start_builtin_runtime(
    data_dir: &Path,
    flags: &AgentFlags,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(PathBuf, tokio::task::JoinHandle<()>)> {
    let store = Arc::new(
        ImageStore::open(&skiff_runtime::image_store_dir(data_dir))
            .context("opening the image store")?,
    );
    import_airgap_images(&store, data_dir);
    let cluster_cidr = flags.cluster_cidr()?;
    let runtime_root = data_dir.join("agent").join("runtime");
    let network: Arc<dyn PodNetwork> = match flags.cni(&runtime_root.join("network").join("cni")) {
        Some(cni) => {
            tracing::info!(conf_dir = %cni.conf_dir.display(), "pod network: CNI plugins");
            Arc::new(CniNetwork::new(cni))
        }
        None => Arc::new(
            NodePodNetwork::new(cluster_cidr, &runtime_root.join("network"))
                .with_names(&flags.pod_bridge, &flags.pod_nat_table),
        ),
    };
    let exe = std::env::current_exe().context("locating the skiff binary for the runtime shim")?;
    let runtime = Runtime::open(
        RuntimeConfig {
            root: runtime_root,
            run_dir: data_dir.join("agent").join("run"),
            shim: vec![exe.into_os_string(), OsString::from("runtime-shim")],
            trim_supervisor_mounts: true,
        },
        RuntimeDeps {
            images: store.clone(),
            namespaces: Arc::new(skiff_sys::LinuxPodNamespaces),
            mounter: Arc::new(skiff_sys::LinuxMounter),
            network,
        },
    )
    .context("opening the built-in runtime")?;
    let runtime = Arc::new(runtime);
    // Exec/attach URLs: loopback only, the kubelet proxies to them.
    let streaming = StreamingServer::start(
        std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0)),
        runtime.clone(),
    )
    .await
    .context("starting the runtime's streaming server")?;
    let router = tonic::transport::Server::builder()
        .add_service(RuntimeServiceServer::new(
            CriRuntimeService::new(runtime.clone()).with_streaming(streaming),
        ))
        .add_service(ImageServiceServer::new(CriImageService::new(
            store,
            RegistryConfig::default(),
        )));
    let socket = runtime_socket(data_dir);
    let path = socket.clone();
    let task = tokio::spawn(async move {
        let mut stop = shutdown;
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = serve_unix(router, &path, stopped).await {
            tracing::error!(error = %e, "the built-in runtime stopped");
        }
        runtime.release_mount_roots();
    });
    Ok((socket, task))
}

/// The Service proxy's settings from the flags: NodePorts answer on the
/// node's address and on 127.0.0.1 (as upstream's iptables mode allows).
fn proxy_config(
    flags: &AgentFlags,
    node_name: &str,
    node_ip: IpAddr,
) -> anyhow::Result<skiff_proxy::ProxyConfig> {
    let cluster_cidr: skiff_proxy::Cidr = flags
        .cluster_cidr
        .parse()
        .map_err(|e| anyhow::anyhow!("--cluster-cidr: {e}"))?;
    let mut nodeport_addresses = vec![std::net::Ipv4Addr::LOCALHOST];
    if let IpAddr::V4(ip) = node_ip {
        nodeport_addresses.push(ip);
    }
    Ok(skiff_proxy::ProxyConfig {
        table: flags.proxy_table.clone(),
        node_name: node_name.to_string(),
        nodeport_addresses,
        cluster_cidr: Some(cluster_cidr),
    })
}

/// A recorder of `component`'s Events (its failed rule syncs) on this node.
fn network_events(
    client: &kube::Client,
    component: &str,
    node_name: &str,
) -> Arc<dyn skiff_client::EventSink> {
    Arc::new(skiff_client::EventRecorder::spawn(
        client.clone(),
        component,
        node_name,
        skiff_client::events::DEFAULT_EVENT_QUEUE,
    ))
}

/// Serves the proxy's and the policy enforcer's metrics on `addr` until
/// `shutdown`. The address being taken is not fatal (as for kube-proxy):
/// binding is retried every 5 s.
async fn serve_network_metrics(
    addr: std::net::SocketAddr,
    metrics: skiff_proxy::metrics::NetworkMetrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut warned = false;
    let listener = loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => break listener,
            Err(err) => {
                if !std::mem::replace(&mut warned, true) {
                    tracing::warn!(%addr, error = %err, "cannot serve the proxy's metrics (--proxy-metrics-bind-address); retrying every 5 s");
                }
                tokio::select! {
                    _ = shutdown.wait_for(|s| *s) => return,
                    () = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
            }
        }
    };
    tracing::info!(%addr, "serving the proxy's metrics");
    skiff_client::metrics_listener::serve(listener, metrics, shutdown).await;
}

/// Checks nftables, sets the sysctls and starts the Service proxy.
async fn start_proxy(
    config: skiff_proxy::ProxyConfig,
    client: kube::Client,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(
    tokio::task::JoinHandle<()>,
    Arc<skiff_proxy::proxier::ProxyStats>,
)> {
    let nft = skiff_sys::nft::NftCli::new();
    skiff_proxy::proxier::preflight(&nft, &config.table)
        .await
        .context(
            "the Service proxy needs nftables (pass --disable-kube-proxy to run without it)",
        )?;
    skiff_proxy::proxier::prepare_host(&skiff_sys::net::LinuxNetOps::new(), &config)
        .await
        .context("Service proxy sysctls")?;
    let events = network_events(&client, "kube-proxy", &config.node_name);
    let proxier =
        skiff_proxy::Proxier::new(config, nft, skiff_sys::conntrack::ConntrackCli::new())?
            .with_events(events);
    let stats = proxier.stats();
    let task = tokio::spawn(async move {
        if let Err(e) = skiff_proxy::proxier::run(
            proxier,
            client,
            skiff_proxy::RunOptions::default(),
            shutdown,
        )
        .await
        {
            tracing::error!(error = %e, "the Service proxy stopped");
        }
    });
    Ok((task, stats))
}

/// Checks nftables and starts the NetworkPolicy enforcer.
async fn start_network_policy(
    config: skiff_proxy::netpol::NetpolConfig,
    client: kube::Client,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(
    tokio::task::JoinHandle<()>,
    Arc<skiff_proxy::netpol::NetpolStats>,
)> {
    let nft = skiff_sys::nft::NftCli::new();
    skiff_proxy::proxier::preflight(&nft, &config.table)
        .await
        .context(
            "NetworkPolicy enforcement needs nftables (pass --disable-network-policy to run without it)",
        )?;
    // Pods on one node talk across the bridge: the policy hooks see that
    // traffic only with bridge-nf-call-iptables (absent without br_netfilter;
    // the built-in bridge's own nf_call_iptables option then still holds).
    if let Err(err) = skiff_sys::net::NetOps::set_sysctl(
        &LinuxNetOps::new(),
        "net.bridge.bridge-nf-call-iptables",
        "1",
    )
    .await
    {
        tracing::warn!(error = %err, "cannot enable bridge-nf-call-iptables: same-node pod traffic may bypass NetworkPolicies");
    }
    let events = network_events(&client, "skiff-network-policy", &config.node_name);
    let enforcer = skiff_proxy::netpol::Enforcer::new(config, nft)?.with_events(events);
    let stats = enforcer.stats();
    let task = tokio::spawn(async move {
        if let Err(e) = skiff_proxy::netpol::run(
            enforcer,
            client,
            skiff_proxy::RunOptions::default(),
            shutdown,
        )
        .await
        {
            tracing::error!(error = %e, "the NetworkPolicy enforcer stopped");
        }
    });
    Ok((task, stats))
}

/// Removes the Service proxy's nftables table (`skiff agent --cleanup-proxy`).
pub async fn cleanup_proxy(flags: &AgentFlags) -> anyhow::Result<()> {
    skiff_proxy::proxier::cleanup(&skiff_sys::nft::NftCli::new(), &flags.proxy_table).await?;
    Ok(())
}

/// Connects to the runtime, retrying while its socket comes up.
async fn connect(socket: &Path) -> anyhow::Result<Cri> {
    let mut last = None;
    for _ in 0..100 {
        match Cri::connect(socket).await {
            Ok(cri) => return Ok(cri),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(anyhow::anyhow!(
        "cannot reach the container runtime at {}: {}",
        socket.display(),
        last.map(|e| e.to_string()).unwrap_or_default()
    ))
}

/// Runs the agent until `shutdown`: containers keep running after it stops.
pub async fn run(
    data_dir: &Path,
    flags: AgentFlags,
    client: kube::Client,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let image_gc = flags.image_gc_policy().map_err(anyhow::Error::msg)?;
    let cluster_cidr = flags.cluster_cidr()?;
    let (socket, runtime_task) = match &flags.container_runtime_endpoint {
        Some(endpoint) => (endpoint.clone(), None),
        None => {
            let (socket, task) = start_builtin_runtime(data_dir, &flags, shutdown.clone()).await?;
            (socket, Some(task))
        }
    };
    let cri = connect(&socket).await?;
    let node_name = flags
        .node_name
        .clone()
        .unwrap_or_else(skiff_kubelet::node::host::hostname);
    let node_ip = flags
        .node_ip
        .unwrap_or_else(skiff_kubelet::node::host::default_node_ip);
    let proxy_task = if flags.disable_kube_proxy {
        None
    } else {
        let config = proxy_config(&flags, &node_name, node_ip)?;
        Some(start_proxy(config, client.clone(), shutdown.clone()).await?)
    };
    let netpol_task = if flags.disable_network_policy {
        None
    } else {
        let config = skiff_proxy::netpol::NetpolConfig {
            table: flags.network_policy_table.clone(),
            node_name: node_name.clone(),
        };
        Some(start_network_policy(config, client.clone(), shutdown.clone()).await?)
    };
    let metrics = skiff_proxy::metrics::NetworkMetrics::new(
        proxy_task.as_ref().map(|(_, stats)| stats.clone()),
        netpol_task.as_ref().map(|(_, stats)| stats.clone()),
    );
    let metrics_task = match flags.proxy_metrics_bind_address.0 {
        Some(addr) if !metrics.is_empty() => Some(tokio::spawn(serve_network_metrics(
            addr,
            metrics,
            shutdown.clone(),
        ))),
        _ => None,
    };
    let config = KubeletConfig {
        node_name,
        node_ip,
        root_dir: data_dir.join("agent").join("kubelet"),
        pod_log_root: flags.pod_log_dir.clone(),
        cluster_dns: vec![flags.cluster_dns.unwrap_or(DEFAULT_CLUSTER_DNS)],
        cluster_domain: flags.cluster_domain.clone(),
        kubelet_port: flags.kubelet_port,
        max_pods: 110,
        node_labels: Default::default(),
        client_ca: match &flags.client_ca_file {
            Some(path) => Some(
                std::fs::read(path)
                    .with_context(|| format!("reading --client-ca-file {}", path.display()))?,
            ),
            None => None,
        },
        server_bind: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        container_log_max_size: flags.container_log_max_size.0,
        container_log_max_files: flags.container_log_max_files,
        image_gc_high_threshold_percent: image_gc.high_threshold_percent,
        image_gc_low_threshold_percent: image_gc.low_threshold_percent,
        image_minimum_gc_age: image_gc.min_age,
        cgroups_per_qos: flags.cgroups_per_qos,
        cgroup_root: flags.cgroup_root.clone(),
        pod_pids_limit: (flags.pod_max_pids > 0).then_some(flags.pod_max_pids),
        event_qps: flags.event_qps,
        event_burst: flags.event_burst,
    };
    // Host-gw routes to the other nodes' pods, whatever the runtime.
    let routes = tokio::spawn(skiff_kubelet::routes::run(
        client.clone(),
        PodRoutesConfig::new(config.node_name.clone(), cluster_cidr),
        LinuxNetOps::new(),
        shutdown.clone(),
    ));
    let result = skiff_kubelet::run(config, client, cri, shutdown).await;
    if let Some(task) = runtime_task {
        let _ = task.await;
    }
    if let Some((task, _)) = proxy_task {
        let _ = task.await;
    }
    if let Some((task, _)) = netpol_task {
        let _ = task.await;
    }
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    routes.abort();
    result.context("kubelet")
}

/// `skiff agent --cleanup`: removes what the agent put on the host's network
/// (the pod routes, the built-in network's bridge and masquerade table, the
/// Service proxy's and the NetworkPolicy enforcer's tables).
/// Pods still running lose their network.
pub async fn cleanup(flags: &AgentFlags) -> anyhow::Result<()> {
    let cluster_cidr = flags.cluster_cidr()?;
    let node_name = flags
        .node_name
        .clone()
        .unwrap_or_else(skiff_kubelet::node::host::hostname);
    let ops = LinuxNetOps::new();
    let removed =
        skiff_kubelet::routes::remove_routes(&ops, &PodRoutesConfig::new(node_name, cluster_cidr))
            .await
            .context("removing pod routes")?;
    tracing::info!(routes = removed, "pod routes removed");
    skiff_runtime::network::remove_host_network(
        &ops,
        &skiff_sys::nft::NftCli::new(),
        &flags.pod_bridge,
        &flags.pod_nat_table,
    )
    .await
    .context("removing the pod bridge and masquerade table")?;
    cleanup_proxy(flags)
        .await
        .context("removing the proxy table")?;
    skiff_proxy::netpol::cleanup(&skiff_sys::nft::NftCli::new(), &flags.network_policy_table)
        .await
        .context("removing the network policy table")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use clap::Parser;

    use super::AgentFlags;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        agent: AgentFlags,
    }

    fn parse(args: &[&str]) -> Result<AgentFlags, clap::Error> {
        Cli::try_parse_from(std::iter::once("skiff").chain(args.iter().copied())).map(|c| c.agent)
    }

    #[test]
    fn proxy_metrics_address_defaults_to_kube_proxys_and_can_be_turned_off() {
        let flags = parse(&[]).unwrap();
        assert_eq!(
            flags.proxy_metrics_bind_address.0,
            Some("127.0.0.1:10249".parse().unwrap())
        );
        let off = parse(&["--proxy-metrics-bind-address", ""]).unwrap();
        assert_eq!(off.proxy_metrics_bind_address.0, None);
        let any = parse(&["--proxy-metrics-bind-address=0.0.0.0:9100"]).unwrap();
        assert_eq!(any.proxy_metrics_bind_address.0.unwrap().port(), 9100);
        let err = parse(&["--proxy-metrics-bind-address", "10249"]).unwrap_err();
        assert!(err.to_string().contains("not an address:port"), "{err}");
    }

    #[test]
    fn event_limits_default_to_the_kubelets_and_reject_negatives() {
        let flags = parse(&[]).unwrap();
        assert_eq!((flags.event_qps, flags.event_burst), (50, 100));
        let flags = parse(&["--event-qps", "0", "--event-burst=7"]).unwrap();
        assert_eq!((flags.event_qps, flags.event_burst), (0, 7));
        let err = parse(&["--event-qps", "-1"]).unwrap_err().to_string();
        assert!(
            err.contains("invalid configuration: eventRecordQPS (--event-qps) -1 must not be a negative number"),
            "{err}"
        );
        let err = parse(&["--event-burst", "-5"]).unwrap_err().to_string();
        assert!(
            err.contains("eventBurst (--event-burst) -5 must not be a negative number"),
            "{err}"
        );
        assert!(parse(&["--event-qps", "many"]).is_err());
    }

    #[test]
    fn container_log_flags_default_to_upstream_and_are_validated() {
        let flags = parse(&[]).unwrap();
        assert_eq!(flags.container_log_max_size.0, Some(10 * 1024 * 1024));
        assert_eq!(flags.container_log_max_files, 5);

        let flags = parse(&[
            "--container-log-max-size",
            "64Ki",
            "--container-log-max-files=2",
        ])
        .unwrap();
        assert_eq!(flags.container_log_max_size.0, Some(65536));
        assert_eq!(flags.container_log_max_files, 2);
        let off = parse(&["--container-log-max-size", "-1"]).unwrap();
        assert_eq!(off.container_log_max_size.0, None);

        for (args, msg) in [
            (
                ["--container-log-max-files", "1"],
                "containerLogMaxFiles must be greater than 1",
            ),
            (["--container-log-max-files", "x"], "containerLogMaxFiles"),
            (
                ["--container-log-max-size", "0"],
                "must be a positive quantity",
            ),
            (["--container-log-max-size", "lots"], "failed to parse"),
        ] {
            let err = parse(&args).unwrap_err().to_string();
            assert!(err.contains(msg), "{args:?}: {err}");
        }
    }

    #[test]
    fn network_policy_is_on_by_default_in_its_own_table() {
        let flags = parse(&[]).unwrap();
        assert!(!flags.disable_network_policy);
        assert_eq!(flags.network_policy_table, "skiff-netpol");
        assert_ne!(flags.network_policy_table, flags.proxy_table);
        let flags = parse(&["--disable-network-policy", "--network-policy-table", "t2"]).unwrap();
        assert!(flags.disable_network_policy);
        assert_eq!(flags.network_policy_table, "t2");
    }

    #[test]
    fn cni_flags_select_cni_with_upstream_defaults_for_the_other() {
        let state = std::path::Path::new("/state");
        assert_eq!(parse(&[]).unwrap().cni(state), None);
        let cni = parse(&["--cni-bin-dir", "/usr/lib/cni,/opt/more"])
            .unwrap()
            .cni(state)
            .unwrap();
        assert_eq!(cni.conf_dir, std::path::Path::new("/etc/cni/net.d"));
        assert_eq!(
            cni.bin_dirs,
            [
                std::path::PathBuf::from("/usr/lib/cni"),
                std::path::PathBuf::from("/opt/more")
            ]
        );
        assert_eq!(cni.state_dir, state);
        assert_eq!(cni.ifname, "eth0");
        let cni = parse(&["--cni-conf-dir", "/x/net.d"])
            .unwrap()
            .cni(state)
            .unwrap();
        assert_eq!(cni.conf_dir, std::path::Path::new("/x/net.d"));
        assert_eq!(cni.bin_dirs, [std::path::PathBuf::from("/opt/cni/bin")]);
    }

    #[test]
    fn image_gc_flags_default_to_upstream_and_are_validated() {
        let policy = parse(&[]).unwrap().image_gc_policy().unwrap();
        assert_eq!(
            (policy.high_threshold_percent, policy.low_threshold_percent),
            (85, 80)
        );
        let policy = parse(&[
            "--image-gc-high-threshold=100",
            "--image-gc-low-threshold=90",
        ])
        .unwrap()
        .image_gc_policy()
        .unwrap();
        assert!(!policy.enabled(), "100 turns image GC off");
        for (args, msg) in [
            (
                ["--image-gc-high-threshold", "101"],
                "imageGCHighThresholdPercent (--image-gc-high-threshold) 101 must be between 0 and 100, inclusive",
            ),
            (
                ["--image-gc-low-threshold", "-5"],
                "imageGCLowThresholdPercent (--image-gc-low-threshold) -5 must be between 0 and 100, inclusive",
            ),
            (
                ["--image-gc-high-threshold", "80"],
                "imageGCLowThresholdPercent (--image-gc-low-threshold) 80 must be less than imageGCHighThresholdPercent (--image-gc-high-threshold) 80",
            ),
        ] {
            let err = parse(&args).unwrap().image_gc_policy().unwrap_err();
            assert!(err.contains(msg), "{args:?}: {err}");
        }
        assert!(parse(&["--image-gc-high-threshold", "x"]).is_err());
    }
}
