//! `skiff sim`: hollow nodes, the scheduler benchmark and the pod startup
//! benchmark.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use skiff_sim::bench::{self, BenchConfig};
use skiff_sim::hollow::{Cidr, parse_taint};
use skiff_sim::{HollowNodeConfig, HollowNodes};

/// `skiff sim` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum SimCommand {
    /// Register hollow nodes (fake kubelets) and serve them until Ctrl-C.
    Nodes(NodesArgs),
    /// Measure the scheduler with scheduler_perf-style workloads.
    BenchScheduler(BenchArgs),
    /// Measure pod startup on one real node (root, busybox-static).
    BenchPods(BenchPodsArgs),
    /// Measure the controller manager: a Deployment wave, a rolling
    /// update and a namespace deletion on hollow nodes.
    BenchControllers(BenchControllersArgs),
}

/// Flags of `skiff sim nodes`.
#[derive(Debug, clap::Args)]
pub struct NodesArgs {
    /// How many nodes.
    #[arg(long)]
    count: usize,
    /// Kubeconfig of the cluster.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Node names are <prefix><index>.
    #[arg(long, default_value = "hollow-")]
    name_prefix: String,
    /// CPU capacity per node.
    #[arg(long, default_value = "4")]
    cpu: String,
    /// Memory capacity per node.
    #[arg(long, default_value = "16Gi")]
    memory: String,
    /// Pod capacity per node.
    #[arg(long, default_value_t = 110)]
    pods: u32,
    /// Zones the nodes go into, round robin (zone-0 …).
    #[arg(long, default_value_t = 3)]
    zones: usize,
    /// A taint on every node (key=value:Effect); repeatable.
    #[arg(long = "taint")]
    taints: Vec<String>,
    /// How often each node renews its Lease (a Go duration).
    #[arg(long, default_value = "10s", value_parser = crate::server::parse_positive_duration)]
    lease_interval: Duration,
    /// Where the nodes' podCIDRs (/24 each) come from.
    #[arg(long, default_value = "10.128.0.0/9")]
    cluster_cidr: String,
    /// Delete the nodes and their Leases on exit.
    #[arg(long)]
    cleanup: bool,
}

/// Flags of `skiff sim bench-scheduler`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Nodes of SchedulingBasic (other workloads scale from it).
    #[arg(long, default_value_t = 5_000)]
    nodes: usize,
    /// Measured pods of SchedulingBasic.
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Run only this workload (repeatable): SchedulingBasic, NodeAffinity,
    /// TopologySpreading, PodAntiAffinity, Preemption.
    #[arg(long = "workload")]
    workloads: Vec<String>,
    /// Pod creations in flight at once: enough that pods wait for the
    /// scheduler rather than the scheduler for pods, so that pods/s is the
    /// scheduler's. On two cores SchedulingBasic's pods/s rises with every
    /// creation added up to about 256 in flight and not beyond (64: 4,900;
    /// 128: 5,500; 192: 5,650; 256 and 384: 5,950, medians of 2 to 4
    /// runs): with fewer, the scheduler's queue keeps running empty and
    /// pods/s measures the create round trip. Latency grows with the
    /// queue: p50 is about 70 ms at 128 and 180 ms at 256.
    #[arg(long, default_value_t = 256)]
    clients: usize,
    /// Give up on a workload when no pod gets bound for this long.
    #[arg(long, default_value = "30s", value_parser = crate::server::parse_positive_duration)]
    stall_timeout: Duration,
    /// Hollow nodes act as kubelets: renew their Leases every 10 s and
    /// report bound pods Running. Off by default: upstream's scheduler_perf
    /// registers bare Node objects and runs no kubelet, so the server sees
    /// only the pods' creations and bindings.
    #[arg(long)]
    hollow_kubelets: bool,
    /// The skiff binary to run as the server (default: this one).
    #[arg(long)]
    skiff_bin: Option<PathBuf>,
}

/// Flags of `skiff sim bench-pods`.
#[derive(Debug, clap::Args)]
pub struct BenchPodsArgs {
    /// Pods to start on the node.
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// Pod creations in flight at once (burst phase).
    #[arg(long, default_value_t = 10)]
    clients: usize,
    /// Pods per second in the paced phase (0 skips it).
    #[arg(long, default_value_t = 10.0)]
    paced_rate: f64,
    /// Containers created, started, stopped and removed directly over CRI.
    #[arg(long, default_value_t = 50)]
    cri_containers: usize,
    /// Give up waiting for the pods to run (or to go) after this long.
    #[arg(long, default_value = "180s", value_parser = crate::server::parse_positive_duration)]
    timeout: Duration,
    /// The skiff binary to run as the server (default: this one).
    #[arg(long)]
    skiff_bin: Option<PathBuf>,
}

/// Flags of `skiff sim bench-controllers`.
#[derive(Debug, clap::Args)]
pub struct BenchControllersArgs {
    /// Hollow nodes.
    #[arg(long, default_value_t = 1_000)]
    nodes: usize,
    /// Deployments in the wave.
    #[arg(long, default_value_t = 1_000)]
    deployments: usize,
    /// Replicas of each Deployment.
    #[arg(long, default_value_t = 10)]
    replicas: i32,
    /// Creations and patches in flight at once.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Give up on a phase when nothing progresses for this long.
    #[arg(long, default_value = "60s", value_parser = crate::server::parse_positive_duration)]
    stall_timeout: Duration,
    /// The skiff binary to run as server and controller manager (default:
    /// this one).
    #[arg(long)]
    skiff_bin: Option<PathBuf>,
}

/// Runs a `skiff sim` subcommand.
pub fn main(command: SimCommand) -> ExitCode {
    if let SimCommand::BenchPods(_) = &command
        && let Err(why) = bench::pods::preflight()
    {
        eprintln!("skiff sim bench-pods: {why}");
        return ExitCode::from(2);
    }
    let runtime = match &command {
        // The scheduler benchmark's driver shares the machine with the
        // server it measures: on one thread it takes at most one core from
        // it, and its requests and watches make no hops between threads.
        // On a runtime with a worker per core, its threads and the
        // server's outnumbered two cores and SchedulingBasic ran about a
        // quarter slower (3,100 against 4,200 pods/s).
        SimCommand::BenchScheduler(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        _ => tokio::runtime::Runtime::new(),
    };
    crate::run_on("sim", runtime, async {
        match command {
            SimCommand::Nodes(args) => nodes(args).await,
            SimCommand::BenchScheduler(args) => bench_scheduler(args).await,
            SimCommand::BenchPods(args) => bench_pods(args).await,
            SimCommand::BenchControllers(args) => bench_controllers(args).await,
        }
    })
}

async fn nodes(args: NodesArgs) -> anyhow::Result<()> {
    let taints = args
        .taints
        .iter()
        .map(|t| parse_taint(t))
        .collect::<Result<Vec<_>, _>>()?;
    let config = HollowNodeConfig {
        count: args.count,
        name_prefix: args.name_prefix,
        cpu: args.cpu,
        memory: args.memory,
        pods: args.pods,
        zones: args.zones,
        taints,
        lease_interval: args.lease_interval,
        cluster_cidr: Cidr::parse(&args.cluster_cidr)?,
        ..HollowNodeConfig::default()
    };
    let client = bench::client_from(&args.kubeconfig).await?;
    let hollow = HollowNodes::start(client, config)
        .await
        .context("starting the hollow nodes")?;
    tracing::info!(
        count = hollow.count(),
        "hollow nodes running; Ctrl-C to stop"
    );
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    if args.cleanup {
        tracing::info!("deleting the hollow nodes");
        hollow.cleanup().await?;
    } else {
        hollow.shutdown().await;
    }
    Ok(())
}

async fn bench_scheduler(args: BenchArgs) -> anyhow::Result<()> {
    let skiff_bin = match args.skiff_bin {
        Some(bin) => bin,
        None => std::env::current_exe().context("locating the skiff binary")?,
    };
    let cfg = BenchConfig {
        skiff_bin,
        nodes: args.nodes,
        pods: args.pods,
        only: args.workloads,
        clients: args.clients,
        stall_timeout: args.stall_timeout,
        kubelets: args.hollow_kubelets,
    };
    let rows = bench::run(&cfg).await?;
    print!("{}", bench::format_table(&rows));
    println!("pod creations in flight: {}", cfg.clients);
    println!(
        "hollow nodes: {}",
        if cfg.kubelets {
            "hollow kubelets renewed Leases and reported bound pods Running"
        } else {
            "bare, as in scheduler_perf: no Lease renewals, bound pods left Pending \
             (--hollow-kubelets for both)"
        }
    );
    Ok(())
}

async fn bench_pods(args: BenchPodsArgs) -> anyhow::Result<()> {
    let skiff_bin = match args.skiff_bin {
        Some(bin) => bin,
        None => std::env::current_exe().context("locating the skiff binary")?,
    };
    let cfg = bench::pods::PodBenchConfig {
        skiff_bin,
        pods: args.pods,
        clients: args.clients,
        paced_rate: (args.paced_rate > 0.0).then_some(args.paced_rate),
        cri_containers: args.cri_containers,
        timeout: args.timeout,
    };
    let report = bench::pods::run(&cfg).await?;
    print!("{}", bench::pods::format_table(&report));
    Ok(())
}

async fn bench_controllers(args: BenchControllersArgs) -> anyhow::Result<()> {
    let skiff_bin = match args.skiff_bin {
        Some(bin) => bin,
        None => std::env::current_exe().context("locating the skiff binary")?,
    };
    let cfg = bench::controllers::ControllerBenchConfig {
        skiff_bin,
        nodes: args.nodes,
        deployments: args.deployments,
        replicas: args.replicas,
        clients: args.clients,
        stall_timeout: args.stall_timeout,
    };
    let report = bench::controllers::run(&cfg).await?;
    print!("{}", bench::controllers::format_table(&report));
    Ok(())
}
