//! `rkube`: Kubernetes in one binary. Commands and assembly only; every
//! component lives in its own crate (see shared/DESIGN.md).

mod agent;
mod cluster;
mod ctr;
mod server;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "rkube", version, about = "Kubernetes in one binary")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a server: datastore, API server and control plane.
    Server(Box<server::ServerArgs>),
    /// Run a node: the kubelet (or simulated nodes) joined to a server.
    /// Server and agent are boxed: their many flags dwarf the others.
    Agent(Box<agent::AgentArgs>),
    /// Run and inspect containers with the built-in runtime.
    Ctr(ctr::CtrArgs),
    /// A local multi-node cluster in network namespaces (up/down).
    Cluster(cluster::ClusterArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Server(args) => runtime.block_on(server::run(*args)),
        Command::Agent(args) => runtime.block_on(agent::run(*args)),
        Command::Ctr(args) => runtime.block_on(ctr::run(args)),
        Command::Cluster(args) => cluster::run(args),
    }
}
