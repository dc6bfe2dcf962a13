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

/// jemalloc instead of the C library's malloc, for Rust and C code alike.
/// The API server builds and drops many short-lived JSON trees per
/// request from many threads; with glibc's allocator a third of the
/// server's CPU was malloc and free, and jemalloc cut the server's CPU per
/// scheduled pod by about a third at the same memory (docs/PERF.md,
/// "Scheduler", session 6).
#[cfg(all(target_os = "linux", not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
