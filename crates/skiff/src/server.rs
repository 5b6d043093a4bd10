//! `skiff server`: the control plane on one machine.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use skiff_apiserver::{ApiServer, ApiServerConfig};
use skiff_store::AnyStore;

/// Flags of `skiff server` (k3s's names where they exist).
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Directory for the embedded store, certificates and agent state.
    #[arg(long, default_value = "/var/lib/skiff")]
    data_dir: PathBuf,
    /// etcd client URLs (comma-separated); absent means the embedded store.
    #[arg(long, value_delimiter = ',')]
    datastore_endpoint: Vec<String>,
    /// Address the API server listens on.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: IpAddr,
    /// Port of the API server.
    #[arg(long, default_value_t = 6443)]
    https_listen_port: u16,
    /// Where to write the admin kubeconfig.
    #[arg(long, default_value = "/etc/skiff/skiff.yaml")]
    write_kubeconfig: PathBuf,
    /// Static bearer tokens (CSV: token,user,uid,"group1,group2").
    #[arg(long)]
    token_auth_file: Option<PathBuf>,
    /// Extra names or IPs for the serving certificate.
    #[arg(long, value_delimiter = ',')]
    tls_san: Vec<String>,
    /// IPv4 range for Service ClusterIPs (the first address is the
    /// `kubernetes` Service's).
    #[arg(long, default_value = "10.43.0.0/16")]
    service_cidr: String,
    /// Run only the control plane.
    #[arg(long)]
    disable_agent: bool,
    /// Do not run the scheduler in this server.
    #[arg(long)]
    disable_scheduler: bool,
    /// Do not run the controller manager in this server.
    #[arg(long)]
    disable_controller_manager: bool,
    /// Do not run cluster DNS in this server.
    #[arg(long)]
    disable_dns: bool,
    /// Where cluster DNS listens, UDP and TCP (IP or IP:PORT; default: the
    /// node IP, port 53). The `kube-system/kube-dns` Service points here.
    #[arg(long, value_parser = parse_dns_listen_address)]
    dns_listen_address: Option<SocketAddr>,
    /// A resolv.conf whose nameservers cluster DNS forwards names outside
    /// the cluster to (default: the host's /etc/resolv.conf); one without
    /// nameservers forwards nothing.
    #[arg(long)]
    dns_resolv_conf: Option<PathBuf>,
    /// Networks (comma-separated CIDRs) whose clients get names outside the
    /// cluster resolved by cluster DNS (default: --cluster-cidr,
    /// --service-cidr and the node IP; loopback always). Others get
    /// REFUSED for such names, so cluster DNS is no open resolver.
    #[arg(long, value_delimiter = ',')]
    dns_recursion_cidrs: Vec<skiff_proxy::Cidr>,
    /// A KubeSchedulerConfiguration file for the in-process scheduler.
    #[arg(long)]
    scheduler_config: Option<PathBuf>,
    /// Read-only requests (get, list) served at once before the next gets
    /// 429 Too Many Requests; 0 means no limit.
    #[arg(long, default_value_t = skiff_apiserver::limits::DEFAULT_MAX_REQUESTS_INFLIGHT)]
    max_requests_inflight: usize,
    /// Mutating requests served at once before the next gets 429 Too Many
    /// Requests; 0 means no limit.
    #[arg(long, default_value_t = skiff_apiserver::limits::DEFAULT_MAX_MUTATING_REQUESTS_INFLIGHT)]
    max_mutating_requests_inflight: usize,
    /// Longest a request other than a watch may take (a Go duration: 60s,
    /// 1m30s) before it gets 504 Timeout.
    #[arg(long, default_value = "1m0s", value_parser = parse_positive_duration)]
    request_timeout: Duration,
    /// How long an event is kept after its last write (a Go duration).
    #[arg(long, default_value = "1h0m0s", value_parser = parse_positive_duration)]
    event_ttl: Duration,
    #[command(flatten)]
    agent: crate::agent::AgentFlags,
}

/// A positive Go duration (`--request-timeout`, `--pvclaimbinder-sync-period`
/// and the `skiff sim` flags).
pub(crate) fn parse_positive_duration(value: &str) -> Result<Duration, String> {
    use skiff_api::duration::{GoDuration, parse_go_duration};
    match parse_go_duration(value)? {
        GoDuration::Positive(d) if !d.is_zero() => Ok(d),
        _ => Err("must be greater than zero".to_owned()),
    }
}

/// `--dns-listen-address`: `IP:PORT`, or an IP alone for port 53.
fn parse_dns_listen_address(value: &str) -> Result<SocketAddr, String> {
    value
        .parse::<SocketAddr>()
        .or_else(|_| value.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
        .map_err(|_| format!("{value:?} is neither IP nor IP:PORT"))
}

/// `--cluster-dns`, or (as k3s) the .10 of the service range, so a server
/// given another range gets a kube-dns ClusterIP inside it.
fn cluster_dns(
    given: Option<IpAddr>,
    service_cidr: &skiff_apiserver::registry::services::ServiceCidr,
    flag: &str,
) -> anyhow::Result<IpAddr> {
    if let Some(ip) = given {
        return Ok(ip);
    }
    let ip = service_cidr.indexed(10).with_context(|| {
        format!("--service-cidr {flag:?} has no 10th address for cluster DNS: pass --cluster-dns")
    })?;
    Ok(IpAddr::V4(ip))
}

/// Starts cluster DNS; a failure (e.g. port 53 taken) is logged and the
/// server runs on without it.
#[allow(clippy::too_many_arguments)]
async fn start_dns(
    listen: Option<SocketAddr>,
    resolv_conf: Option<&std::path::Path>,
    recursion_cidrs: &[skiff_proxy::Cidr],
    service_cidr: &str,
    agent: &crate::agent::AgentFlags,
    kubeconfig: &std::path::Path,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let client = skiff_client::kubeconfig::client_from(kubeconfig).await?;
    let node_ip = agent
        .node_ip
        .unwrap_or_else(skiff_kubelet::node::host::default_node_ip);
    let listen = listen.unwrap_or(SocketAddr::new(node_ip, 53));
    let upstreams = match resolv_conf {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading --dns-resolv-conf {}", path.display()))?;
            let ours = [listen, SocketAddr::new(node_ip, listen.port())];
            Some(skiff_proxy::dns::forward::upstreams_from_resolv_conf(
                &text, &ours,
            ))
        }
        None => None,
    };
    let config = skiff_proxy::dns::DnsConfig {
        listen,
        advertise: node_ip,
        cluster_domain: agent.cluster_domain.clone(),
        cluster_dns: agent
            .cluster_dns
            .unwrap_or(crate::agent::DEFAULT_CLUSTER_DNS),
        upstreams,
        publish_service: true,
        recursion: skiff_proxy::dns::Recursion::From(dns_recursion_networks(
            recursion_cidrs,
            &agent.cluster_cidr,
            service_cidr,
            node_ip,
        )),
    };
    match skiff_proxy::dns::DnsServer::bind(config, client).await {
        Ok(dns) => Ok(Some(tokio::spawn(dns.run(stop)))),
        Err(err) => {
            tracing::error!(error = %err, "cluster DNS is not running");
            Ok(None)
        }
    }
}

/// `--dns-recursion-cidrs`, or by default the pod and Service networks and
/// the node IP (the sources pods' and the host's queries arrive from).
fn dns_recursion_networks(
    given: &[skiff_proxy::Cidr],
    cluster_cidr: &str,
    service_cidr: &str,
    node_ip: IpAddr,
) -> Vec<skiff_proxy::Cidr> {
    if !given.is_empty() {
        return given.to_vec();
    }
    let mut networks: Vec<skiff_proxy::Cidr> = [cluster_cidr, service_cidr]
        .iter()
        .filter_map(|c| c.parse().ok())
        .collect();
    if let IpAddr::V4(ip) = node_ip {
        networks.extend(skiff_proxy::Cidr::new(ip, 32));
    }
    networks
}

/// Runs the server until SIGINT or SIGTERM.
pub fn main(args: ServerArgs) -> ExitCode {
    crate::block_on("server", run(args))
}

async fn run(mut args: ServerArgs) -> anyhow::Result<()> {
    // A bad scheduler config stops start-up before anything listens.
    let scheduler_opts = if args.disable_scheduler {
        None
    } else {
        Some(crate::scheduler::options(
            args.scheduler_config.as_deref(),
            None,
        )?)
    };
    let store = AnyStore::open(&args.datastore_endpoint, &args.data_dir)
        .await
        .context("opening the datastore")?;
    let mut config = ApiServerConfig::new(&args.data_dir);
    // Start-up's temporary allocations go back to the OS once the OpenAPI
    // documents (the biggest of them) are built, not at the allocator's
    // next delayed purge.
    config.after_warm_up = Some(skiff_sys::memory::release_free_memory);
    config.bind_address = args.bind_address;
    config.port = args.https_listen_port;
    config.write_kubeconfig = Some(args.write_kubeconfig.clone());
    config.token_auth_file = args.token_auth_file;
    config.max_requests_inflight = args.max_requests_inflight;
    config.max_mutating_requests_inflight = args.max_mutating_requests_inflight;
    config.request_timeout = args.request_timeout;
    config.event_ttl = args.event_ttl;
    // The in-process scheduler's and controller manager's metrics appear
    // on the API server's /metrics.
    if let Some(opts) = &scheduler_opts {
        config
            .metrics_collectors
            .push(skiff_apiserver::metrics::SharedCollector(
                std::sync::Arc::new(opts.metrics.clone()),
            ));
    }
    let controller_metrics = skiff_controllers::ControllerMetrics::new();
    if !args.disable_controller_manager {
        config
            .metrics_collectors
            .push(skiff_apiserver::metrics::SharedCollector(
                std::sync::Arc::new(controller_metrics.clone()),
            ));
    }
    config.sans.extra_sans = args.tls_san;
    config.service_cidr = skiff_apiserver::registry::services::ServiceCidr::parse(
        &args.service_cidr,
    )
    .with_context(|| {
        format!(
            "--service-cidr {:?} is not an IPv4 CIDR between /8 and /30",
            args.service_cidr
        )
    })?;
    config.sans.api_service_ip = std::net::IpAddr::V4(config.service_cidr.first());
    if !(args.disable_dns && args.disable_agent) {
        args.agent.cluster_dns = Some(cluster_dns(
            args.agent.cluster_dns,
            &config.service_cidr,
            &args.service_cidr,
        )?);
    }
    if let Ok(name) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let name = name.trim();
        if !name.is_empty() {
            config.sans.hostnames.push(name.to_owned());
        }
    }
    let server = ApiServer::start(config, store)
        .await
        .context("starting the API server")?;
    tracing::info!(
        addr = %server.local_addr(),
        kubeconfig = %args.write_kubeconfig.display(),
        "skiff server is up"
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let scheduler = match scheduler_opts {
        Some(opts) => {
            // The scheduler is a client of the API like any other, as the
            // admin user; its requests enter the API server in-process.
            Some(spawn_scheduler(
                opts,
                server.in_process_admin(),
                stop_rx.clone(),
            )?)
        }
        None => None,
    };
    let controller_manager = if args.disable_controller_manager {
        None
    } else {
        let client = kube::Client::new(server.in_process_admin(), "default");
        let mut opts =
            crate::controller_manager::server_options(&args.agent.cluster_cidr, &args.data_dir);
        opts.metrics = controller_metrics;
        Some(tokio::spawn(skiff_controllers::run(
            opts,
            client,
            stop_rx.clone(),
        )))
    };
    let dns = if args.disable_dns {
        None
    } else {
        start_dns(
            args.dns_listen_address,
            args.dns_resolv_conf.as_deref(),
            &args.dns_recursion_cidrs,
            &args.service_cidr,
            &args.agent,
            &args.write_kubeconfig,
            stop_rx.clone(),
        )
        .await?
    };
    let agent = if args.disable_agent {
        None
    } else {
        let client = skiff_client::kubeconfig::client_from(&args.write_kubeconfig).await?;
        let data_dir = args.data_dir.clone();
        let mut flags = args.agent.clone();
        if flags.client_ca_file.is_none() {
            // The API server's kubelet client certificate comes from this CA.
            flags.client_ca_file = Some(skiff_apiserver::pki::client_ca_file(&data_dir));
        }
        let stop = stop_rx.clone();
        Some(tokio::spawn(async move {
            crate::agent::run(&data_dir, flags, client, stop).await
        }))
    };
    shutdown_signal().await;
    tracing::info!("shutting down");
    stop_tx.send_replace(true);
    if let Some(thread) = scheduler {
        match tokio::task::spawn_blocking(move || thread.join()).await {
            Ok(Ok(Err(err))) => tracing::warn!(error = %err, "scheduler stopped with an error"),
            Ok(Err(_)) | Err(_) => tracing::warn!("scheduler thread failed"),
            Ok(Ok(Ok(()))) => {}
        }
    }
    if let Some(task) = controller_manager {
        match task.await {
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "controller manager stopped with an error")
            }
            Err(err) => tracing::warn!(error = %err, "controller manager task failed"),
            Ok(Ok(())) => {}
        }
    }
    if let Some(task) = dns
        && let Err(err) = task.await
    {
        tracing::warn!(error = %err, "cluster DNS task failed");
    }
    if let Some(task) = agent {
        match task.await {
            Ok(Err(err)) => {
                tracing::warn!(error = %format!("{err:#}"), "agent stopped with an error")
            }
            Err(err) => tracing::warn!(error = %err, "agent task failed"),
            Ok(Ok(())) => {}
        }
    }
    server.shutdown().await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(err) => {
            tracing::warn!(error = %err, "cannot listen for SIGTERM; stop with Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// The in-process scheduler on its own thread and tokio runtime (two
/// workers), as upstream runs kube-scheduler as a process of its own: its
/// scheduling cycles and its watches' decoding do not take turns with the
/// API server's requests on the server's workers. Its client is built
/// there, so the client's tasks live on that runtime too, and its requests
/// are served there in-process (see `skiff_apiserver::in_process`).
///
/// One worker was tried on two cores: SchedulingBasic about 5,700 against
/// 5,000 pods/s and 270 against 330 µs of server CPU a pod, but Preemption
/// at half the rate (about 300 against 620 pods/s; after 4c0313e about 450
/// against 780), its cycles and its informer taking turns on one thread,
/// and create→bound latency higher. On one thread the informer reaches
/// deletions in batches, so preemptors are moved by other victims'
/// deletions while their own victim still terminates: 591 extra failed
/// attempts for 500 preemptors, against 2 with two workers.
fn spawn_scheduler(
    opts: skiff_scheduler::SchedulerOptions,
    api: skiff_apiserver::in_process::InProcess,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<()>>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("skiff-scheduler")
        .enable_all()
        .build()
        .context("scheduler runtime")?;
    let thread = std::thread::Builder::new()
        .name("skiff-scheduler".into())
        .spawn(move || {
            runtime.block_on(async move {
                let client = kube::Client::new(api, "default");
                skiff_scheduler::run(opts, client, stop).await?;
                Ok(())
            })
        })
        .context("scheduler thread")?;
    Ok(thread)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    use super::ServerArgs;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        server: ServerArgs,
    }

    fn parse(args: &[&str]) -> Result<ServerArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("skiff").chain(args.iter().copied())).map(|c| c.server)
    }

    #[test]
    fn limit_flags_default_to_upstream() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.max_requests_inflight, 400);
        assert_eq!(args.max_mutating_requests_inflight, 200);
        assert_eq!(args.request_timeout, Duration::from_secs(60));
        assert_eq!(args.event_ttl, Duration::from_secs(3600));
    }

    #[test]
    fn cluster_dns_defaults_to_the_tenth_service_address() {
        use skiff_apiserver::registry::services::ServiceCidr;
        let default = ServiceCidr::parse("10.43.0.0/16").unwrap();
        assert_eq!(
            super::cluster_dns(None, &default, "10.43.0.0/16").unwrap(),
            crate::agent::DEFAULT_CLUSTER_DNS
        );
        let other = ServiceCidr::parse("10.96.0.0/12").unwrap();
        assert_eq!(
            super::cluster_dns(None, &other, "10.96.0.0/12").unwrap(),
            "10.96.0.10".parse::<std::net::IpAddr>().unwrap()
        );
        let given = "10.96.0.53".parse().unwrap();
        assert_eq!(
            super::cluster_dns(Some(given), &other, "10.96.0.0/12").unwrap(),
            given
        );
        let small = ServiceCidr::parse("10.96.0.0/29").unwrap();
        let err = super::cluster_dns(None, &small, "10.96.0.0/29").unwrap_err();
        assert!(err.to_string().contains("pass --cluster-dns"), "{err}");
    }

    #[test]
    fn dns_flags() {
        let args = parse(&[]).unwrap();
        assert!(!args.disable_dns);
        assert_eq!(args.dns_listen_address, None);
        let args = parse(&["--disable-dns", "--dns-listen-address", "127.0.0.1"]).unwrap();
        assert!(args.disable_dns);
        assert_eq!(
            args.dns_listen_address,
            Some("127.0.0.1:53".parse().unwrap())
        );
        assert_eq!(args.dns_resolv_conf, None);
        let args = parse(&["--dns-resolv-conf", "/run/r.conf"]).unwrap();
        assert_eq!(args.dns_resolv_conf, Some("/run/r.conf".into()));
        let args = parse(&["--dns-listen-address", "[::1]:5353"]).unwrap();
        assert_eq!(args.dns_listen_address, Some("[::1]:5353".parse().unwrap()));
        assert!(parse(&["--dns-listen-address", "localhost"]).is_err());
    }

    #[test]
    fn limit_flags_parse() {
        let args = parse(&[
            "--max-requests-inflight",
            "10",
            "--max-mutating-requests-inflight=0",
            "--request-timeout",
            "1m30s",
            "--event-ttl=10m",
        ])
        .unwrap();
        assert_eq!(args.max_requests_inflight, 10);
        assert_eq!(args.max_mutating_requests_inflight, 0);
        assert_eq!(args.request_timeout, Duration::from_secs(90));
        assert_eq!(args.event_ttl, Duration::from_secs(600));
        for bad in ["0s", "-1s", "90", "soon"] {
            assert!(parse(&["--request-timeout", bad]).is_err(), "{bad}");
            assert!(parse(&["--event-ttl", bad]).is_err(), "{bad}");
        }
        assert!(parse(&["--max-requests-inflight", "-1"]).is_err());
    }

    #[test]
    fn dns_recursion_defaults_to_the_cluster_networks_and_the_node_ip() {
        let args = parse(&[]).unwrap();
        let nets = super::dns_recursion_networks(
            &args.dns_recursion_cidrs,
            &args.agent.cluster_cidr,
            &args.service_cidr,
            "192.168.5.4".parse().unwrap(),
        );
        let shown: Vec<String> = nets.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["10.42.0.0/16", "10.43.0.0/16", "192.168.5.4/32"]);
        let args = parse(&["--dns-recursion-cidrs", "10.0.0.0/8,172.16.0.0/12"]).unwrap();
        let nets = super::dns_recursion_networks(
            &args.dns_recursion_cidrs,
            &args.agent.cluster_cidr,
            &args.service_cidr,
            "192.168.5.4".parse().unwrap(),
        );
        assert_eq!(nets.len(), 2);
        assert!(parse(&["--dns-recursion-cidrs", "10.0.0.0/33"]).is_err());
        assert!(parse(&["--dns-recursion-cidrs", "nope"]).is_err());
    }
}
