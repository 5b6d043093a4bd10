//! `skiff scheduler`: the scheduler alone, talking to an API server through
//! a kubeconfig; also the in-process scheduler of `skiff server`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use skiff_scheduler::SchedulerOptions;
use skiff_scheduler::config::KubeSchedulerConfiguration;

/// Flags of `skiff scheduler` (kube-scheduler's names).
#[derive(Debug, clap::Args)]
pub struct SchedulerArgs {
    /// kubeconfig of the API server to schedule for.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// A KubeSchedulerConfiguration (kubescheduler.config.k8s.io/v1) file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Elect a leader through the Lease kube-system/kube-scheduler before
    /// scheduling (overrides the config file's leaderElection.leaderElect).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    leader_elect: Option<bool>,
    /// Where to serve `/metrics` and `/healthz` over plain HTTP (port 0
    /// turns the listener off).
    #[arg(long, default_value = "127.0.0.1:10251")]
    metrics_bind_address: SocketAddr,
}

/// The scheduler options from `--config` (or the defaults).
pub fn options(
    config: Option<&Path>,
    leader_elect: Option<bool>,
) -> anyhow::Result<SchedulerOptions> {
    let mut opts = SchedulerOptions::new();
    if let Some(path) = config {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading scheduler config {}", path.display()))?;
        opts.config = KubeSchedulerConfiguration::parse(&text, &opts.registered())
            .with_context(|| format!("invalid scheduler config {}", path.display()))?;
    }
    if let Some(le) = leader_elect {
        opts.config.leader_election.leader_elect = le;
    }
    Ok(opts)
}

/// Runs until SIGINT or SIGTERM.
pub fn main(args: SchedulerArgs) -> ExitCode {
    crate::block_on("scheduler", run(args))
}

async fn run(args: SchedulerArgs) -> anyhow::Result<()> {
    let opts = options(args.config.as_deref(), args.leader_elect)?;
    let client = skiff_client::kubeconfig::client_from(&args.kubeconfig).await?;
    let listener = if args.metrics_bind_address.port() == 0 {
        None
    } else {
        let listener = tokio::net::TcpListener::bind(args.metrics_bind_address)
            .await
            .with_context(|| format!("--metrics-bind-address {}", args.metrics_bind_address))?;
        tracing::info!(addr = %args.metrics_bind_address, "serving scheduler metrics");
        Some(listener)
    };
    let metrics = opts.metrics.clone();
    crate::until_signal("scheduler", |stop_rx| {
        if let Some(listener) = listener {
            // Stops with the same signal as the scheduler.
            tokio::spawn(skiff_client::metrics_listener::serve(
                listener,
                metrics,
                stop_rx.clone(),
            ));
        }
        skiff_scheduler::run(opts, client, stop_rx)
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
        args: SchedulerArgs,
    }

    #[test]
    fn leader_elect_flag_forms() {
        let p = |a: &[&str]| {
            Cli::try_parse_from(["skiff", "--kubeconfig", "k"].iter().chain(a.iter()))
                .map(|c| c.args.leader_elect)
        };
        assert_eq!(p(&[]).unwrap(), None);
        assert_eq!(p(&["--leader-elect"]).unwrap(), Some(true));
        assert_eq!(p(&["--leader-elect=false"]).unwrap(), Some(false));
        let addr = |a: &[&str]| {
            Cli::try_parse_from(["skiff", "--kubeconfig", "k"].iter().chain(a.iter()))
                .map(|c| c.args.metrics_bind_address.to_string())
        };
        assert_eq!(addr(&[]).unwrap(), "127.0.0.1:10251");
        assert_eq!(
            addr(&["--metrics-bind-address", "0.0.0.0:0"]).unwrap(),
            "0.0.0.0:0"
        );
        assert!(addr(&["--metrics-bind-address", "nowhere"]).is_err());
        assert!(p(&["--leader-elect=maybe"]).is_err());
    }

    #[test]
    fn bad_config_stops_start_up_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n\
             profiles:\n- plugins:\n    score:\n      enabled:\n      - name: Foo\n",
        )
        .unwrap();
        let err = format!("{:#}", options(Some(&path), None).unwrap_err());
        assert!(
            err.contains(
                "profiles[0].plugins.score.enabled[0].name: Invalid value: \"Foo\": not a registered plugin"
            ),
            "{err}"
        );
        let opts = options(None, Some(false)).unwrap();
        assert!(!opts.config.leader_election.leader_elect);
        assert_eq!(opts.config.profiles[0].scheduler_name, "default-scheduler");
    }
}
