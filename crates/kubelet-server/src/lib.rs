//! The kubelet's own HTTPS API (port 10250): `/healthz`, `/pods`,
//! `/metrics`, `/metrics/resource`, `/stats/summary`, and the streaming
//! endpoints the API server proxies `pods/log`, `pods/exec`,
//! `pods/attach` and `pods/portforward` to: `/containerLogs`, `/exec`,
//! `/attach` and `/portForward`, over WebSocket (`v5.channel.k8s.io`,
//! `v4.channel.k8s.io`, `channel.k8s.io`; for port-forward SPDY tunnelled
//! as `SPDY/3.1+portforward.k8s.io` and the `v4.channel.k8s.io` channel
//! pairs) and SPDY/3.1 (`v4.channel.k8s.io`, `portforward.k8s.io`).
//!
//! Requests are authenticated (client certificate or TokenReview) and
//! authorized (SubjectAccessReview) through the API server: [`auth`].
//!
//! Exec and attach carry stdin and terminal resizes both ways; attach
//! reaches the container's main process through the runtime's attach
//! connection ([`attach`]). Not here yet: the base64 channel protocols.
//!
//! Upstream counterpart: `pkg/kubelet/server` and
//! `pkg/kubelet/cri/streaming`, with the wire formats of
//! `k8s.io/apimachinery/pkg/util/httpstream/{spdy,wsstream}`. The kubelet
//! plugs in through [`PodRuntime`]; the agent starts [`serve`].

pub mod attach;
pub mod auth;
pub mod exec;
pub mod logs;
pub mod portforward;
pub mod remotecommand;
pub mod runtime;
mod server;
pub mod spdy;
pub mod stats;
pub mod transport;
pub mod ws;

pub use runtime::{
    ContainerInfo, ContainerStats, LookupError, NodeStats, PodNetwork, PodRuntime, PodStats,
    TermSize,
};
pub use server::{serve, Config, Error};

/// The kubelet API's default port.
pub const DEFAULT_PORT: u16 = 10250;
