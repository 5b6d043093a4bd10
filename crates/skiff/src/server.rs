//! `skiff server`: the control plane on one machine.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

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
}

/// Runs the server until SIGINT or SIGTERM.
pub fn main(args: ServerArgs) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("skiff server: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("skiff server: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: ServerArgs) -> anyhow::Result<()> {
    if !args.disable_agent {
        tracing::warn!("the node agent is not implemented yet: running the control plane only");
    }
    let store = AnyStore::open(&args.datastore_endpoint, &args.data_dir)
        .await
        .context("opening the datastore")?;
    let mut config = ApiServerConfig::new(&args.data_dir);
    config.bind_address = args.bind_address;
    config.port = args.https_listen_port;
    config.write_kubeconfig = Some(args.write_kubeconfig.clone());
    config.token_auth_file = args.token_auth_file;
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
    shutdown_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
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
