//! Simulated nodes: registers N Nodes that run nothing, keeps their Leases
//! fresh, and acts as their kubelet — pods bound to them become Running
//! and Ready with pod IPs, containers whose command plainly ends
//! (`true`, `false`, `sh -c "exit 3"`, `sleep 5`) end with that code, and
//! deleted pods go away after their (shortened) grace period.
//!
//! Upstream counterpart: kwok (`sigs.k8s.io/kwok`), the kubelet's node
//! registration (`pkg/kubelet/kubelet_node_status.go`) and its node lease
//! controller (`pkg/kubelet/nodelease`). Like kwok, one process serves all
//! nodes through one pod watch and one node watch, so 1,000 nodes cost a
//! handful of tasks, not 1,000 kubelets; every timer of every pod sits in
//! one heap (see [`pod`]).

pub mod ipam;
pub mod lease;
pub mod node;
pub mod pod;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use ipam::Cidr;

/// Errors of the simulator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Node(#[from] node::Error),
    #[error("simulated {0} stopped")]
    Stopped(&'static str),
}

/// What the user asked for.
#[derive(Clone, Debug)]
pub struct Config {
    /// Nodes are named `<prefix>-0` .. `<prefix>-(count-1)`.
    pub prefix: String,
    pub count: u32,
    /// capacity (and allocatable) of every node: cpu, memory, pods,
    /// ephemeral-storage.
    pub capacity: BTreeMap<String, String>,
    /// Labels added to the standard ones.
    pub labels: BTreeMap<String, String>,
    /// Taints every node is registered with (e.g. to keep pods that do
    /// not tolerate simulation off these nodes, as kwok suggests).
    pub taints: Vec<k8s_openapi::api::core::v1::Taint>,
    /// Node i's InternalIP is this address plus i.
    pub node_ip_start: Ipv4Addr,
    /// Node i gets the i-th subnet of this range as podCIDR.
    pub pod_cidr: Cidr,
    pub node_cidr_prefix: u8,
    /// Lease duration written into each node's Lease (upstream 40 s).
    pub lease_duration: Duration,
    /// How often each Lease is renewed (upstream: a quarter of the
    /// duration, 10 s).
    pub renew_interval: Duration,
    /// How often node status is posted when nothing changed (upstream
    /// nodeStatusReportFrequency, 5 min).
    pub status_report_interval: Duration,
    /// The longest a deleted pod takes to stop, whatever its grace period.
    pub termination_delay: Duration,
    /// Status writes and deletes in flight at once.
    pub max_in_flight: usize,
}

impl Config {
    pub fn new(prefix: &str, count: u32) -> Config {
        let capacity = [
            ("cpu", "32"),
            ("memory", "256Gi"),
            ("pods", "110"),
            ("ephemeral-storage", "1Ti"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Config {
            prefix: prefix.into(),
            count,
            capacity,
            labels: BTreeMap::new(),
            taints: Vec::new(),
            node_ip_start: Ipv4Addr::new(172, 16, 0, 2),
            pod_cidr: Cidr::parse("10.64.0.0/10").expect("valid"),
            node_cidr_prefix: 24,
            lease_duration: Duration::from_secs(40),
            renew_interval: Duration::from_secs(10),
            status_report_interval: Duration::from_secs(300),
            termination_delay: Duration::from_secs(1),
            max_in_flight: 32,
        }
    }
}

/// Registers the nodes and runs them until an unrecoverable error.
pub async fn run(client: kube::Client, config: Config) -> Result<(), Error> {
    let config = Arc::new(config);
    let nodes = Arc::new(node::Nodes::new(&config));
    node::register_all(&client, &config, &nodes).await?;
    tracing::info!(nodes = config.count, prefix = %config.prefix, "simulated nodes registered");
    let lease = tokio::spawn(lease::run(client.clone(), config.clone(), nodes.clone()));
    let watch = tokio::spawn(node::run(client.clone(), config.clone(), nodes.clone()));
    let pods = tokio::spawn(pod::run(client, config, nodes));
    tokio::select! {
        _ = lease => Err(Error::Stopped("lease renewal")),
        _ = watch => Err(Error::Stopped("node status")),
        _ = pods => Err(Error::Stopped("kubelet")),
    }
}
