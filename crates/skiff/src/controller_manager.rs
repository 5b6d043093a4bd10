//! `skiff controller-manager`: the controller manager alone, talking to an
//! API server through a kubeconfig; also the in-process one of
//! `skiff server`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use std::process::ExitCode;

use skiff_controllers::ControllerManagerOptions;

/// Flags of `skiff controller-manager` (kube-controller-manager's names).
#[derive(Debug, clap::Args)]
pub struct ControllerManagerArgs {
    /// kubeconfig of the API server to manage.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Elect a leader through the Lease kube-system/kube-controller-manager
    /// before running controllers.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "true")]
    leader_elect: bool,
    /// Controllers to run: `*` for the defaults, `foo` to enable, `-foo` to
    /// disable.
    #[arg(long, value_delimiter = ',', default_value = "*")]
    controllers: Vec<String>,
    /// Workers of the ReplicaSet controller.
    #[arg(long, default_value_t = skiff_controllers::replicaset::DEFAULT_WORKERS)]
    concurrent_replicaset_syncs: usize,
    /// Workers of the ReplicationController controller.
    #[arg(long, default_value_t = skiff_controllers::replicaset::DEFAULT_WORKERS)]
    concurrent_rc_syncs: usize,
    /// Workers of each garbage collector queue.
    #[arg(long, default_value_t = skiff_controllers::garbagecollector::DEFAULT_WORKERS)]
    concurrent_gc_syncs: usize,
    /// Workers of the Deployment controller.
    #[arg(long, default_value_t = skiff_controllers::deployment::DEFAULT_WORKERS)]
    concurrent_deployment_syncs: usize,
    /// Workers of the Job controller.
    #[arg(long, default_value_t = skiff_controllers::job::DEFAULT_WORKERS)]
    concurrent_job_syncs: usize,
    /// Workers of the TTL-after-finished controller.
    #[arg(long, default_value_t = skiff_controllers::ttlafterfinished::DEFAULT_WORKERS)]
    concurrent_ttl_after_finished_syncs: usize,
    /// Workers of the DaemonSet controller.
    #[arg(long, default_value_t = skiff_controllers::daemon::DEFAULT_WORKERS)]
    concurrent_daemonset_syncs: usize,
    /// Workers of the StatefulSet controller.
    #[arg(long, default_value_t = skiff_controllers::statefulset::DEFAULT_WORKERS)]
    concurrent_statefulset_syncs: usize,
    /// Workers of the resource quota controller.
    #[arg(long, default_value_t = skiff_controllers::resourcequota::DEFAULT_WORKERS)]
    concurrent_resource_quota_syncs: usize,
    /// Workers of the Endpoints controller.
    #[arg(long, default_value_t = skiff_controllers::endpoint::DEFAULT_WORKERS)]
    concurrent_endpoint_syncs: usize,
    /// Workers of the EndpointSlice controller.
    #[arg(long, default_value_t = skiff_controllers::endpointslice::DEFAULT_WORKERS)]
    concurrent_service_endpoint_syncs: usize,
    /// Most endpoints in one EndpointSlice (1 to 1000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1000))]
    max_endpoints_per_slice: u64,
    /// Workers of the EndpointSlice mirroring controller.
    #[arg(long, default_value_t = skiff_controllers::endpointslicemirroring::DEFAULT_WORKERS)]
    mirroring_concurrent_service_endpoint_syncs: usize,
    /// Most addresses of one Endpoints subset mirrored (1 to 1000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1000))]
    mirroring_max_endpoints_per_subset: u64,
    /// Workers of the CronJob controller.
    #[arg(long, default_value_t = skiff_controllers::cronjob::DEFAULT_WORKERS)]
    concurrent_cron_job_syncs: usize,
    /// Workers of the namespace controller.
    #[arg(long, default_value_t = skiff_controllers::namespace::DEFAULT_WORKERS)]
    concurrent_namespace_syncs: usize,
    /// How often the PersistentVolume binder syncs every claim and volume
    /// again (a Go duration).
    #[arg(long, default_value = "15s", value_parser = crate::server::parse_positive_duration)]
    pvclaimbinder_sync_period: std::time::Duration,
    /// CA bundle (PEM) published to every namespace as kube-root-ca.crt;
    /// the kubeconfig's CA when not given.
    #[arg(long)]
    root_ca_file: Option<PathBuf>,
    /// Where to serve `/metrics` and `/healthz` over plain HTTP (port 0
    /// turns the listener off).
    #[arg(long, default_value = "127.0.0.1:10252")]
    metrics_bind_address: SocketAddr,
}

impl ControllerManagerArgs {
    fn options(&self) -> anyhow::Result<ControllerManagerOptions> {
        let mut opts = ControllerManagerOptions::new(skiff_client::holder_identity());
        opts.leader_elect = self.leader_elect;
        opts.controllers = self.controllers.clone();
        opts.concurrent_replicaset_syncs = self.concurrent_replicaset_syncs;
        opts.concurrent_rc_syncs = self.concurrent_rc_syncs;
        opts.concurrent_gc_syncs = self.concurrent_gc_syncs;
        opts.concurrent_deployment_syncs = self.concurrent_deployment_syncs;
        opts.concurrent_job_syncs = self.concurrent_job_syncs;
        opts.concurrent_ttl_after_finished_syncs = self.concurrent_ttl_after_finished_syncs;
        opts.concurrent_daemonset_syncs = self.concurrent_daemonset_syncs;
        opts.concurrent_statefulset_syncs = self.concurrent_statefulset_syncs;
        opts.concurrent_resource_quota_syncs = self.concurrent_resource_quota_syncs;
        opts.concurrent_endpoint_syncs = self.concurrent_endpoint_syncs;
        opts.concurrent_service_endpoint_syncs = self.concurrent_service_endpoint_syncs;
        opts.max_endpoints_per_slice = usize::try_from(self.max_endpoints_per_slice)?;
        opts.mirroring_concurrent_service_endpoint_syncs =
            self.mirroring_concurrent_service_endpoint_syncs;
        opts.mirroring_max_endpoints_per_subset =
            usize::try_from(self.mirroring_max_endpoints_per_subset)?;
        opts.concurrent_cron_job_syncs = self.concurrent_cron_job_syncs;
        opts.concurrent_namespace_syncs = self.concurrent_namespace_syncs;
        opts.pvclaimbinder_sync_period = self.pvclaimbinder_sync_period;
        if let Some(path) = &self.root_ca_file {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("reading --root-ca-file {}", path.display()))?;
            opts.root_ca = Some(pem);
        }
        opts.validate()?;
        Ok(opts)
    }
}

/// The in-process controller manager's options inside `skiff server`:
/// as k3s, it gives Nodes podCIDRs from `cluster_cidr`.
/// The root CA publisher publishes the server's CA.
pub fn server_options(cluster_cidr: &str, data_dir: &Path) -> ControllerManagerOptions {
    let mut opts = ControllerManagerOptions::new(skiff_client::holder_identity());
    let ca = skiff_apiserver::pki::tls_dir(data_dir).join("server-ca.crt");
    match std::fs::read_to_string(&ca) {
        Ok(pem) => opts.root_ca = Some(pem),
        Err(err) => tracing::warn!(path = %ca.display(), error = %err, "cannot read the server CA"),
    }
    opts.allocate_node_cidrs = true;
    opts.cluster_cidr = cluster_cidr.to_owned();
    opts
}

/// Runs until SIGINT or SIGTERM.
pub fn main(args: ControllerManagerArgs) -> ExitCode {
    crate::block_on("controller-manager", run(args))
}

async fn run(args: ControllerManagerArgs) -> anyhow::Result<()> {
    let mut opts = args.options()?;
    if opts.root_ca.is_none() {
        // As upstream: the CA the controller manager trusts the API server by.
        let cfg = skiff_client::kubeconfig::config_from(&args.kubeconfig).await?;
        opts.root_ca = skiff_controllers::rootcacertpublisher::root_ca_from_config(&cfg);
    }
    let client = skiff_client::kubeconfig::client_from(&args.kubeconfig).await?;
    let listener = if args.metrics_bind_address.port() == 0 {
        None
    } else {
        let listener = tokio::net::TcpListener::bind(args.metrics_bind_address)
            .await
            .with_context(|| format!("--metrics-bind-address {}", args.metrics_bind_address))?;
        tracing::info!(addr = %args.metrics_bind_address, "serving controller manager metrics");
        Some(listener)
    };
    let metrics = opts.metrics.clone();
    crate::until_signal("controller manager", |stop_rx| {
        if let Some(listener) = listener {
            // Stops with the same signal as the controllers.
            tokio::spawn(skiff_client::metrics_listener::serve(
                listener,
                metrics,
                stop_rx.clone(),
            ));
        }
        skiff_controllers::run(opts, client, stop_rx)
    })
    .await
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: ControllerManagerArgs,
    }

    fn parse(a: &[&str]) -> Result<ControllerManagerArgs, clap::Error> {
        Cli::try_parse_from(["skiff", "--kubeconfig", "k"].iter().chain(a.iter())).map(|c| c.args)
    }

    #[test]
    fn flags_default_to_upstream() {
        let a = parse(&[]).unwrap();
        assert!(a.leader_elect);
        assert_eq!(a.controllers, ["*"]);
        assert_eq!(
            (
                a.concurrent_replicaset_syncs,
                a.concurrent_rc_syncs,
                a.concurrent_deployment_syncs
            ),
            (5, 5, 5)
        );
        assert_eq!(a.concurrent_daemonset_syncs, 2);
        assert_eq!(a.concurrent_resource_quota_syncs, 5);
        let a = parse(&["--concurrent-daemonset-syncs", "7"]).unwrap();
        assert_eq!(a.options().unwrap().concurrent_daemonset_syncs, 7);
        assert_eq!(a.concurrent_statefulset_syncs, 5);
        let a = parse(&["--concurrent-statefulset-syncs", "3"]).unwrap();
        assert_eq!(a.options().unwrap().concurrent_statefulset_syncs, 3);
        let o = a.options().unwrap();
        assert_eq!(
            (
                o.concurrent_endpoint_syncs,
                o.concurrent_service_endpoint_syncs,
                o.max_endpoints_per_slice,
                o.mirroring_concurrent_service_endpoint_syncs,
                o.mirroring_max_endpoints_per_subset
            ),
            (5, 5, 100, 5, 1000)
        );
        assert!(parse(&["--max-endpoints-per-slice=0"]).is_err());
        assert!(parse(&["--max-endpoints-per-slice=1001"]).is_err());
        assert_eq!(
            parse(&["--max-endpoints-per-slice=1000"])
                .unwrap()
                .max_endpoints_per_slice,
            1000
        );
        assert!(!parse(&["--leader-elect=false"]).unwrap().leader_elect);
        assert!(parse(&["--leader-elect"]).unwrap().leader_elect);
        assert_eq!(a.concurrent_namespace_syncs, 10);
        assert!(a.options().unwrap().root_ca.is_none());
        assert_eq!(a.metrics_bind_address.to_string(), "127.0.0.1:10252");
        let a = parse(&["--metrics-bind-address", "0.0.0.0:0"]).unwrap();
        assert_eq!(a.metrics_bind_address.port(), 0);
        assert!(parse(&["--metrics-bind-address", "nowhere"]).is_err());
    }

    #[test]
    fn pv_binder_sync_period_is_a_go_duration() {
        let a = parse(&[]).unwrap();
        assert_eq!(
            a.options().unwrap().pvclaimbinder_sync_period,
            std::time::Duration::from_secs(15)
        );
        let a = parse(&["--pvclaimbinder-sync-period", "1m30s"]).unwrap();
        assert_eq!(
            a.options().unwrap().pvclaimbinder_sync_period,
            std::time::Duration::from_secs(90)
        );
        assert!(parse(&["--pvclaimbinder-sync-period", "0s"]).is_err());
        assert!(parse(&["--pvclaimbinder-sync-period", "15"]).is_err());
    }

    #[test]
    fn root_ca_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.crt");
        std::fs::write(&path, "PEM").unwrap();
        let a = parse(&["--root-ca-file", path.to_str().unwrap()]).unwrap();
        assert_eq!(a.options().unwrap().root_ca.as_deref(), Some("PEM"));
        let a = parse(&["--root-ca-file", "/nonexistent/ca.crt"]).unwrap();
        assert!(a.options().is_err());
    }

    #[test]
    fn controllers_list_is_checked() {
        let a = parse(&["--controllers", "*,-replicationcontroller"]).unwrap();
        let o = a.options().unwrap();
        assert!(o.is_enabled("replicaset") && !o.is_enabled("replicationcontroller"));
        let a = parse(&["--controllers=replicaset,cronjob-ish"]).unwrap();
        let err = format!("{:#}", a.options().unwrap_err());
        assert_eq!(
            err,
            "\"cronjob-ish\" is not in the list of known controllers"
        );
    }
}
