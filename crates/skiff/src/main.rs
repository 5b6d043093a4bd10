//! `skiff`: Kubernetes in one binary. The binary is thin: it parses the
//! command line and hands over to the component crates.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    Server(ServerArgs),
    /// Run a node agent that joins a server.
    Agent(AgentArgs),
}

#[derive(Debug, clap::Args)]
struct ServerArgs {
    /// Directory for the embedded store, certificates and agent state.
    #[arg(long, default_value = "/var/lib/skiff")]
    data_dir: PathBuf,
    /// etcd client URLs (comma-separated); absent means the embedded store.
    #[arg(long, value_delimiter = ',')]
    datastore_endpoint: Vec<String>,
    /// Address the API server listens on.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: String,
    /// Port of the API server.
    #[arg(long, default_value_t = 6443)]
    https_listen_port: u16,
    /// Where to write the admin kubeconfig.
    #[arg(long, default_value = "/etc/skiff/skiff.yaml")]
    write_kubeconfig: PathBuf,
    /// Run only the control plane.
    #[arg(long)]
    disable_agent: bool,
}

#[derive(Debug, clap::Args)]
struct AgentArgs {
    /// URL of the server to join, e.g. https://10.0.0.1:6443.
    #[arg(long)]
    server: String,
    /// Join token.
    #[arg(long)]
    token: String,
    /// Directory for agent state.
    #[arg(long, default_value = "/var/lib/skiff")]
    data_dir: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let name = match cli.command {
        Command::Server(_) => "server",
        Command::Agent(_) => "agent",
    };
    eprintln!(
        "skiff {name}: not yet implemented in this version ({}); only the storage layer exists so far",
        env!("CARGO_PKG_VERSION")
    );
    ExitCode::from(2)
}
