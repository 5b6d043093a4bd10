//! `skiff`: Kubernetes in one binary. The binary is thin: it parses the
//! command line, sets up logging and hands over to the component crates.

mod agent;
mod controller_manager;
mod images;
mod scheduler;
mod server;
mod sim;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc for every component: thread-local free lists, where glibc's
/// malloc took a fifth of the API server's CPU under write load (arena
/// locks, chunk coalescing). It also gives freed pages back to the OS by
/// itself (about a second after they fall free), which glibc did only
/// when asked (`malloc_trim`), so an idle component keeps only what it
/// uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Kubernetes in one binary.
#[derive(Debug, Parser)]
#[command(name = "skiff", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the control plane (and, unless --disable-agent, a node agent).
    Server(Box<server::ServerArgs>),
    /// Run a node agent that joins a server.
    Agent(Box<AgentArgs>),
    /// Run the scheduler alone against an API server.
    Scheduler(scheduler::SchedulerArgs),
    /// Run the controller manager alone against an API server.
    ControllerManager(controller_manager::ControllerManagerArgs),
    /// Manage the built-in runtime's images.
    #[command(subcommand)]
    Images(images::ImagesCommand),
    /// Hollow nodes and benchmarks for scale tests.
    #[command(subcommand)]
    Sim(sim::SimCommand),
    /// The built-in runtime's per-container supervisor (started by the runtime).
    #[command(hide = true)]
    RuntimeShim {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Debug, clap::Args)]
struct AgentArgs {
    /// URL of the server to join, e.g. https://10.0.0.1:6443.
    #[arg(long)]
    server: Option<String>,
    /// Join token.
    #[arg(long)]
    token: Option<String>,
    /// A kubeconfig to reach the API server with (instead of joining).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Directory for agent state.
    #[arg(long, default_value = "/var/lib/skiff")]
    data_dir: PathBuf,
    /// Remove what the agent set up on the host's network (pod routes, the
    /// built-in bridge and its masquerade table, the Service proxy's and the
    /// NetworkPolicy enforcer's tables), then exit.
    #[arg(long)]
    cleanup: bool,
    /// Remove only the Service proxy's nftables table, then exit.
    #[arg(long)]
    cleanup_proxy: bool,
    #[command(flatten)]
    flags: agent::AgentFlags,
}

async fn run_agent(args: AgentArgs) -> anyhow::Result<()> {
    if args.cleanup {
        return agent::cleanup(&args.flags).await;
    }
    if args.cleanup_proxy {
        return agent::cleanup_proxy(&args.flags).await;
    }
    let Some(kubeconfig) = args.kubeconfig else {
        anyhow::bail!(
            "joining with --server/--token is not supported yet (server {:?}, token given: {}); pass --kubeconfig",
            args.server.unwrap_or_default(),
            args.token.is_some()
        );
    };
    let client = skiff_client::kubeconfig::client_from(&kubeconfig).await?;
    let data_dir = args.data_dir;
    let flags = args.flags;
    until_signal("agent", move |stop| async move {
        agent::run(&data_dir, flags, client, stop)
            .await
            .map_err(|e| std::io::Error::other(format!("{e:#}")))
    })
    .await
}

/// The built-in runtime's supervisor. Its stdio may be the container's
/// (an exec's): no log lines may go there, so no subscriber is installed.
fn run_shim(args: &[String]) -> ExitCode {
    ExitCode::from(u8::try_from(skiff_runtime::shim::main(args)).unwrap_or(1))
}

/// Runs `work` on a multi-threaded tokio runtime; a failure is printed as
/// `skiff WHAT: error` and exits 1.
fn block_on(what: &str, work: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    run_on(what, tokio::runtime::Runtime::new(), work)
}

/// [`block_on`] on the given runtime (or the error of building it).
fn run_on(
    what: &str,
    runtime: std::io::Result<tokio::runtime::Runtime>,
    work: impl std::future::Future<Output = anyhow::Result<()>>,
) -> ExitCode {
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("skiff {what}: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("skiff {what}: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a component started by `start` (given its stop signal) until
/// SIGINT or SIGTERM, then stops it and waits for it to finish.
async fn until_signal<F, E>(
    what: &str,
    start: impl FnOnce(tokio::sync::watch::Receiver<bool>) -> F,
) -> anyhow::Result<()>
where
    F: std::future::Future<Output = Result<(), E>> + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    use anyhow::Context;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(start(stop_rx));
    server::shutdown_signal().await;
    stop_tx.send_replace(true);
    task.await.with_context(|| format!("{what} task"))??;
    Ok(())
}

fn main() -> ExitCode {
    // The runtime starts a supervisor per container: skip building the whole
    // command line parser for it (the subcommand stays declared below, hidden).
    let mut argv = std::env::args_os().skip(1);
    if argv.next().is_some_and(|a| a == "runtime-shim") {
        let args: Vec<String> = argv.map(|a| a.to_string_lossy().into_owned()).collect();
        return run_shim(&args);
    }
    let cli = Cli::parse();
    if let Command::RuntimeShim { args } = &cli.command {
        return run_shim(args);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Server(args) => server::main(*args),
        Command::Scheduler(args) => scheduler::main(args),
        Command::ControllerManager(args) => controller_manager::main(args),
        Command::Sim(command) => sim::main(command),
        Command::Images(command) => images::main(command),
        Command::RuntimeShim { .. } => ExitCode::SUCCESS,
        Command::Agent(args) => block_on("agent", run_agent(*args)),
    }
}
