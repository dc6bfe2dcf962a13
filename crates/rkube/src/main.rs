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

/// Caps glibc's malloc arenas at the number of cores unless the user set
/// `MALLOC_ARENA_MAX`. glibc's default (8 per core) lets each of the many
/// threads that once allocated keep an arena of freed but unreturned
/// memory; with 10,000 pods the server settled about 50 MiB lower with 2
/// arenas on 2 cores (docs/PERF.md, "Memory"), and the threads of a
/// tokio runtime sized to the cores gain little from more.
#[cfg(target_env = "gnu")]
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let arenas = libc::c_int::try_from(cores.max(2)).unwrap_or(libc::c_int::MAX);
    // SAFETY: mallopt only adjusts allocator tuning; it is called before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
}

/// Other C libraries have no arenas to cap.
#[cfg(not(target_env = "gnu"))]
fn limit_malloc_arenas() {}

fn main() -> anyhow::Result<()> {
    limit_malloc_arenas();
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
