//! `skiff controller-manager`: the controller manager alone, talking to an
//! API server through a kubeconfig; also the in-process one of
//! `skiff server`.

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
    /// Workers of the namespace controller.
    #[arg(long, default_value_t = skiff_controllers::namespace::DEFAULT_WORKERS)]
    concurrent_namespace_syncs: usize,
    /// CA bundle (PEM) published to every namespace as kube-root-ca.crt;
    /// the kubeconfig's CA when not given.
    #[arg(long)]
    root_ca_file: Option<PathBuf>,
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
        opts.concurrent_namespace_syncs = self.concurrent_namespace_syncs;
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
        let kc = kube::config::Kubeconfig::read_from(&args.kubeconfig)
            .with_context(|| format!("reading kubeconfig {}", args.kubeconfig.display()))?;
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .context("loading kubeconfig")?;
        opts.root_ca = skiff_controllers::rootcacertpublisher::root_ca_from_config(&cfg);
    }
    let client = crate::scheduler::client_from_kubeconfig(&args.kubeconfig).await?;
    crate::until_signal("controller manager", |stop_rx| {
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
        assert!(!parse(&["--leader-elect=false"]).unwrap().leader_elect);
        assert!(parse(&["--leader-elect"]).unwrap().leader_elect);
        assert_eq!(a.concurrent_namespace_syncs, 10);
        assert!(a.options().unwrap().root_ca.is_none());
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
