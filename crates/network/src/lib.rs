//! rkube's pod network, as flannel (with the bridge and host-local CNI
//! plugins it drives) builds it: a bridge per node whose address is the
//! first of the node's podCIDR, a veth pair per pod, addresses handed out
//! from the podCIDR and persisted on disk, and routes to the other nodes'
//! podCIDRs over VXLAN or plain routes (host-gw).
//!
//! Upstream counterparts: flannel (`pkg/backend/vxlan`, `hostgw`,
//! `pkg/ip`), the CNI `bridge` and `host-local` plugins.
//!
//! The kubelet sees only the narrow [`PodNetwork`] trait; every side
//! effect on the machine goes through the [`cmd::Ip`] trait so that the
//! logic is testable with a recording fake. In CNI mode ([`cni`]) the
//! standard CNI plugins attach pods instead, through
//! [`cni::Invoke`].

pub mod bridge;
pub mod cmd;
pub mod cni;
pub mod ipam;
pub mod node;
pub mod preflight;
pub mod routes;

use std::net::IpAddr;
use std::path::Path;

pub use bridge::BridgeNetwork;

/// The pod a network attachment is for.
#[derive(Debug, Clone)]
pub struct PodRef<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
}

/// The addresses a pod got (status.podIPs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodIps {
    pub ips: Vec<IpAddr>,
}

/// What the kubelet calls to give a pod sandbox its network (upstream's
/// CNI ADD/DEL as the kubelet's network plugin issues them). Both calls
/// are idempotent: a retried attach returns the address already given,
/// a detach of an unknown pod succeeds.
pub trait PodNetwork: Send + Sync + std::fmt::Debug {
    fn attach(&self, pod: &PodRef<'_>, netns: &Path) -> Result<PodIps, Error>;
    fn detach(&self, pod: &PodRef<'_>) -> Result<(), Error>;

    /// Whether pods can be attached now; the error is the network
    /// plugin's own message, which the kubelet reports in the Node's
    /// Ready condition (upstream: the runtime's NetworkReady status,
    /// e.g. "cni plugin not initialized" while no CNI config exists).
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }

    /// Whether the pod's attachment is still as attach left it (CNI
    /// CHECK); the kubelet asks when it re-adopts a running pod. A
    /// network with nothing to verify says yes.
    fn check(&self, pod: &PodRef<'_>) -> Result<(), Error> {
        let _ = pod;
        Ok(())
    }
}

/// Errors of the pod network.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the node has no podCIDR yet")]
    NoPodCidr,
    #[error(transparent)]
    Ipam(#[from] ipam::Error),
    #[error(transparent)]
    Cmd(#[from] cmd::Error),
    #[error(transparent)]
    Cni(#[from] cni::Error),
}

/// The CNI mode's pod network (`--network-backend cni`): the plugins
/// own the node's side too, so no bridge, routes or rules of ours.
pub fn start_cni(cfg: &cni::CniConfig) -> std::sync::Arc<dyn PodNetwork> {
    let net = cni::CniNetwork::from_config(cfg);
    match net.network() {
        Ok(l) => {
            tracing::info!(network = %l.name, config = %l.source.display(), "cni: pods attach to this network")
        }
        // Operators often drop the config in after the agent started;
        // pods wait with an event until it is there.
        Err(e) => tracing::warn!(error = %e, "cni: no network yet"),
    }
    std::sync::Arc::new(net)
}

/// Starts the node's pod network: the bridge once the node has a
/// podCIDR, the routes to other nodes in the background; returns what
/// the kubelet attaches pods through.
pub fn start(
    client: kube::Client,
    cfg: node::NodeConfig,
    ipam_dir: &Path,
) -> std::sync::Arc<dyn PodNetwork> {
    let ip: std::sync::Arc<dyn cmd::Ip> = std::sync::Arc::new(cmd::System);
    let net = std::sync::Arc::new(BridgeNetwork::new(ip.clone(), ipam_dir, cfg.backend.mtu()));
    let n = net.clone();
    tokio::spawn(async move {
        if let Err(e) = node::run(client, cfg, n, ip).await {
            tracing::error!(error = %e, "pod network stopped");
        }
    });
    net
}
