//! The process half of the built-in runtime: pod sandboxes (shared net,
//! IPC and UTS namespaces), containers (own mount and PID namespaces over
//! an overlayfs root), cgroup v1/v2 resources, CRI-format logs, exec, and
//! on-disk state that outlives the agent process.
//!
//! Upstream counterpart: containerd's CRI plugin + its shim + runc, as k3s
//! embeds them. Design, in short (why it is not libcontainer is in
//! `local.rs`):
//!
//! - `start` double-forks a *shim* (a forked copy of the caller, never
//!   re-executed, so start costs three forks and no exec of a big binary).
//!   The shim joins the sandbox namespaces, unshares a PID namespace and
//!   forks the container init, which builds its mounts, pivots, drops
//!   privileges and execs. The shim then copies stdout/stderr into the
//!   CRI log file and to clients of its attach socket (which also feed
//!   the process's stdin and resize its terminal: `attach`), reaps the
//!   init and writes `exit.json`.
//! - The shim is re-parented away from the agent, so containers survive
//!   the agent; all state is files under the runtime root, so a new
//!   `LocalRuntime` (or another process, e.g. `rkube ctr ps`) sees the same
//!   containers. Processes are identified by pid *and* start time.
//!
//! Not there yet: seccomp and AppArmor profiles, device-cgroup rules,
//! and a /sys/fs/cgroup mount inside containers.

pub mod attach;
pub mod caps;
pub mod cgroup;
pub mod config;
mod exec;
mod init;
mod local;
pub mod logs;
mod relay;
mod sandbox;
mod shim;
mod state;
mod sys;
pub mod user;

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::time::Duration;

pub use attach::WindowSize;
pub use config::{
    Capabilities, ContainerConfig, DnsConfig, HostEntry, Mount, NetworkMode, Propagation,
    Resources, SandboxConfig, UserSpec,
};
pub use exec::{ExecConfig, ExecIo};
pub use local::{ImageSource, LocalRuntime, RuntimeOptions};
pub use state::{ContainerState, ContainerStatus, SandboxStatus};

/// Errors from runtime operations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{op}: {source}")]
    Sys {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    #[error("container {id} is {state}, {wanted}")]
    WrongState {
        id: String,
        state: ContainerState,
        wanted: &'static str,
    },
    #[error("image {image}: {message}")]
    Image { image: String, message: String },
    #[error("start container {id}: {message}")]
    StartFailed { id: String, message: String },
    #[error("exec in {id}: {message}")]
    ExecFailed { id: String, message: String },
    #[error("create sandbox {name}: {message}")]
    SandboxFailed { name: String, message: String },
    #[error("state file {path}: {source}")]
    State {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Cgroup(#[from] cgroup::Error),
}

/// Per-container CPU and memory usage (what cAdvisor / CRI
/// `ContainerStats` report).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Cumulative CPU time in nanoseconds.
    pub cpu_usage_ns: u64,
    /// Memory usage minus inactive file cache, in bytes (the kubelet's
    /// eviction signal).
    pub memory_working_set: u64,
    pub memory_usage: u64,
}

/// The narrow interface the kubelet drives. All calls block; async
/// callers use `spawn_blocking`. Ids are opaque strings.
pub trait Runtime: Send + Sync {
    fn create_sandbox(&self, config: &SandboxConfig) -> Result<String, Error>;
    fn remove_sandbox(&self, id: &str) -> Result<(), Error>;
    fn sandbox_status(&self, id: &str) -> Result<SandboxStatus, Error>;
    /// Replaces the extra /etc/hosts entries of a sandbox: the pod's own
    /// address is known only once the network is attached to it.
    fn set_sandbox_hosts(&self, id: &str, hosts: &[HostEntry]) -> Result<(), Error>;
    fn create_container(&self, sandbox: &str, config: &ContainerConfig) -> Result<String, Error>;
    fn start(&self, id: &str) -> Result<(), Error>;
    /// SIGTERM (or the image's stop signal), `grace`, then SIGKILL.
    fn stop(&self, id: &str, grace: Duration) -> Result<(), Error>;
    fn remove(&self, id: &str) -> Result<(), Error>;
    fn status(&self, id: &str) -> Result<ContainerStatus, Error>;
    /// Blocks until the container exits or `timeout` passes; returns the
    /// status either way.
    fn wait(&self, id: &str, timeout: Option<Duration>) -> Result<ContainerStatus, Error>;
    fn exec(&self, id: &str, config: &ExecConfig, io: ExecIo) -> Result<i32, Error>;
    /// `exec` whose terminal (with `config.tty`) takes the window sizes
    /// sent on `sizes` until the sender is dropped.
    fn exec_resizable(
        &self,
        id: &str,
        config: &ExecConfig,
        io: ExecIo,
        sizes: Receiver<WindowSize>,
    ) -> Result<i32, Error> {
        drop(sizes);
        self.exec(id, config, io)
    }
    /// Connects to a running container's main process ([`attach`]).
    fn attach(&self, id: &str) -> Result<UnixStream, Error> {
        Err(Error::NotFound {
            kind: "attach socket of container",
            id: id.to_string(),
        })
    }
    fn stats(&self, id: &str) -> Result<Stats, Error>;
    fn list(&self) -> Result<Vec<ContainerStatus>, Error>;
    /// After an agent restart: re-reads every container from disk and
    /// settles the ones whose processes died meanwhile.
    fn recover(&self) -> Result<Vec<ContainerStatus>, Error>;
    /// The directory holding the container's writable layer (what the
    /// kubelet counts against ephemeral-storage); `None` if unknown.
    fn writable_layer(&self, id: &str) -> Option<PathBuf> {
        let _ = id;
        None
    }
}

pub(crate) fn io_err(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { op, path, source }
}
