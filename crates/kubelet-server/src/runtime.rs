//! What the kubelet API needs from the kubelet: the `PodRuntime` trait.
//!
//! Upstream counterpart: the `HostInterface` and `streaming.Runtime`
//! interfaces the kubelet server (`pkg/kubelet/server/server.go`) is built
//! over, and the `StatsProvider` behind `/stats/summary`.
//!
//! # For the kubelet (K1): how to implement it
//!
//! - [`PodRuntime::pods`]: the pods this node runs, as the pod manager
//!   holds them (with their last status); `/pods` lists them.
//! - [`PodRuntime::container`]: resolve `(namespace, pod, container)` to
//!   the runtime's container id and its CRI log file
//!   (`rkube_containers::runtime::logs` format; rotated files are
//!   `<path>.1`, `<path>.2`, ...). With `previous` the last *terminated*
//!   instance (the one `restartCount` counts past). Errors are the
//!   [`LookupError`] variants; their messages are upstream's and reach
//!   kubectl users verbatim.
//! - [`PodRuntime::exec`]: one call of `Runtime::exec_resizable` on a
//!   blocking thread. `ExecIo` holds pipe ends this crate created and
//!   pumps; return the exit code. `resize` carries the client's terminal
//!   sizes, for the runtime to set on the exec's terminal.
//! - [`PodRuntime::attach`]: `Runtime::attach`, the container's attach
//!   connection (`rkube_containers::runtime::attach`), made non-blocking
//!   for tokio; `Ok(None)` when there is none, and the server then
//!   follows the log instead.
//! - [`PodRuntime::network`]: where port-forward dials: the pod sandbox's
//!   network namespace file (e.g. `/proc/<sandbox pid>/ns/net`), or
//!   [`PodNetwork::Host`] for hostNetwork pods.
//! - [`PodRuntime::pod_stats`]: `Runtime::stats` of every running
//!   container, grouped by pod.

use std::path::PathBuf;
use std::time::SystemTime;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use rkube_containers::runtime::{ExecConfig, ExecIo, Stats};
use tokio::sync::mpsc;

/// A container as the runtime knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerInfo {
    /// The runtime's container id (what `Runtime::exec` takes).
    pub id: String,
    /// The live CRI log file; rotated ones are `<path>.1`, `<path>.2`, ...
    pub log_path: PathBuf,
    /// Whether the container's process is running now. Follows (`logs
    /// -f`, attach) end once it is not and the log is drained.
    pub running: bool,
}

/// Why a container could not be resolved; each message is upstream's.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum LookupError {
    #[error("pod {namespace}/{pod} not found")]
    PodNotFound { namespace: String, pod: String },
    #[error("container {container} is not valid for pod {pod}")]
    ContainerNotFound { pod: String, container: String },
    #[error("previous terminated container \"{container}\" in pod \"{pod}\" not found")]
    NoPrevious { pod: String, container: String },
    #[error("container \"{container}\" in pod \"{pod}\" is waiting to start: {reason}")]
    NotStarted {
        pod: String,
        container: String,
        reason: String,
    },
}

/// A terminal size from the resize channel (`{"Width":80,"Height":24}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct TermSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

/// Where a pod's ports are reachable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodNetwork {
    /// hostNetwork: the node's own namespace.
    Host,
    /// A network namespace file to `setns` into before dialing
    /// 127.0.0.1:PORT.
    Namespace(PathBuf),
}

/// Usage of one container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerStats {
    pub name: String,
    pub start_time: Option<SystemTime>,
    pub stats: Stats,
}

/// Usage of one pod's running containers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodStats {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub start_time: Option<SystemTime>,
    pub containers: Vec<ContainerStats>,
}

/// Usage of the whole node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Cumulative CPU time of all processes, in nanoseconds.
    pub cpu_usage_ns: u64,
    pub memory_total: u64,
    pub memory_available: u64,
    /// Total minus available (what upstream's node working set means).
    pub memory_working_set: u64,
}

/// The kubelet, as its API server sees it. All methods may be called
/// concurrently from many requests.
#[async_trait]
pub trait PodRuntime: Send + Sync + 'static {
    /// The pods bound to this node that the kubelet runs.
    async fn pods(&self) -> Vec<Pod>;

    /// Resolves a container of a pod; `previous` asks for the last
    /// terminated instance instead of the current one.
    async fn container(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Result<ContainerInfo, LookupError>;

    /// Runs `config.cmd` in container `id`; returns its exit code, or the
    /// reason it could not run (shown to the user).
    async fn exec(
        &self,
        id: &str,
        config: ExecConfig,
        io: ExecIo,
        resize: mpsc::Receiver<TermSize>,
    ) -> Result<i32, String>;

    /// A live connection to container `id`'s main process, for attach;
    /// `Ok(None)` when the runtime has none (the output is then followed
    /// from the log, and stdin goes nowhere).
    async fn attach(&self, id: &str) -> Result<Option<tokio::net::UnixStream>, String> {
        let _ = id;
        Ok(None)
    }

    /// Where port-forward connects for this pod.
    async fn network(&self, namespace: &str, pod: &str) -> Result<PodNetwork, LookupError>;

    /// Current usage of every pod's running containers.
    async fn pod_stats(&self) -> Vec<PodStats>;

    /// Current usage of the node; by default read from /proc.
    async fn node_stats(&self) -> NodeStats {
        tokio::task::spawn_blocking(crate::stats::read_proc_node_stats)
            .await
            .unwrap_or_default()
    }
}
