//! `rkube agent`: a node. With `--simulate N` it registers N simulated
//! nodes and acts as their kubelet (kwok's job upstream); otherwise it runs
//! the real kubelet on this machine.

mod join;
pub mod kubelet;
mod simulate;
mod tls;

use std::path::PathBuf;

use clap::Args;

/// Refuses a bad `--eviction-minimum-reclaim` when the flags are read.
fn eviction_minimum_reclaim(s: &str) -> Result<String, String> {
    rkube_kubelet::eviction::Thresholds::parse_min_reclaim(s).map(|_| s.to_string())
}

/// Refuses a bad `--eviction-hard` when the flags are read.
fn eviction_hard(s: &str) -> Result<String, String> {
    rkube_kubelet::eviction::Thresholds::parse(s).map(|_| s.to_string())
}

/// A Go-style duration as upstream's flags take it ("2m0s", "90s",
/// "1h30m", "500ms", "0").
fn go_duration(s: &str) -> Result<std::time::Duration, String> {
    rkube_machinery::duration::parse_go(s)
        .ok_or_else(|| format!("invalid duration {s:?} (use e.g. 2m0s, 90s, 500ms)"))
}

/// A percentage flag, 0 to 100.
fn percent(s: &str) -> Result<u8, String> {
    match s.parse::<u8>() {
        Ok(p) if p <= 100 => Ok(p),
        _ => Err(format!("{s:?} is not a percentage from 0 to 100")),
    }
}

#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// URL of a server's API, e.g. https://10.0.0.1:6443.
    #[arg(long)]
    pub server: Option<String>,

    /// The join token the server keeps in `<data-dir>/server/token`.
    #[arg(long, env = "RKUBE_TOKEN")]
    pub token: Option<String>,

    /// Use this kubeconfig's credentials instead of joining with a token.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,

    /// Directory holding all of this agent's state.
    #[arg(long, default_value = "/var/lib/rkube")]
    pub data_dir: PathBuf,

    /// Name of this node (default: the hostname).
    #[arg(long)]
    pub node_name: Option<String>,

    /// This node's IP address.
    #[arg(long)]
    pub node_ip: Option<std::net::IpAddr>,

    /// Port of the kubelet's HTTPS API, reported in the Node's
    /// daemonEndpoints.
    #[arg(long, default_value_t = 10250)]
    pub kubelet_port: u16,

    /// Nameserver written into pods' resolv.conf (dnsPolicy ClusterFirst).
    #[arg(long, value_delimiter = ',', default_value = "10.43.0.10")]
    pub cluster_dns: Vec<std::net::IpAddr>,

    /// The cluster's DNS domain (pods' search path).
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,

    /// registries.yaml (mirrors, auth, TLS), k3s format; used if present.
    #[arg(long, default_value = "/etc/rkube/registries.yaml")]
    pub registries: std::path::PathBuf,

    /// The node's cgroup root, relative to each hierarchy (upstream's
    /// --cgroup-root): pods go to <root>/kubepods/[burstable|besteffort/]pod<uid>.
    #[arg(long, default_value = "/")]
    pub cgroup_parent: std::path::PathBuf,

    /// CA that clients of the kubelet API (the API server) present
    /// certificates from; without it (and without joining) the kubelet API
    /// is not served.
    #[arg(long)]
    pub client_ca_file: Option<std::path::PathBuf>,

    /// The pod network, on by default: vxlan (a bridge per node, VXLAN
    /// VNI 1 on UDP 8472 between nodes, as flannel), host-gw (plain
    /// routes between nodes on one L2 network), cni (standard CNI
    /// plugins from --cni-bin-dir with the first config of
    /// --cni-conf-dir), or none (pods get loopback only). vxlan and
    /// host-gw need root, vxlan the kernel's vxlan module.
    #[arg(long, default_value = "vxlan", value_name = "vxlan|host-gw|cni|none")]
    pub network_backend: rkube_network::node::Backend,

    /// Directories searched for CNI plugin binaries, in order
    /// (--network-backend cni; Debian's containernetworking-plugins
    /// installs into /usr/lib/cni).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "/opt/cni/bin,/usr/lib/cni",
        value_name = "DIR[,DIR...]"
    )]
    pub cni_bin_dir: Vec<PathBuf>,

    /// Directory of CNI network configs (--network-backend cni): the
    /// first .conflist, .conf or .json in lexical order is used.
    #[arg(long, default_value = "/etc/cni/net.d", value_name = "DIR")]
    pub cni_conf_dir: PathBuf,

    /// The cluster's pod range (unreachable outside nodes' podCIDRs;
    /// traffic leaving it is masqueraded).
    #[arg(long, default_value = "10.42.0.0/16")]
    pub cluster_cidr: ipnet::Ipv4Net,

    /// The Service range (unreachable from the node's routing table).
    #[arg(long, default_value = "10.43.0.0/16")]
    pub service_cidr: ipnet::Ipv4Net,

    /// Hard eviction thresholds (signals memory.available,
    /// nodefs.available, nodefs.inodesFree, imagefs.available,
    /// imagefs.inodesFree, pid.available; a quantity or a percentage).
    /// As upstream, a given set replaces the defaults, and 0 turns a
    /// signal off.
    #[arg(
        long,
        default_value = "memory.available<100Mi,nodefs.available<10%,nodefs.inodesFree<5%,imagefs.available<15%,imagefs.inodesFree<5%",
        value_parser = eviction_hard
    )]
    pub eviction_hard: String,

    /// Soft eviction thresholds, in --eviction-hard's syntax: a pod is
    /// evicted only once one has held for its grace period, and gets a
    /// graceful stop (upstream's --eviction-soft). None by default.
    #[arg(long, default_value = "")]
    pub eviction_soft: String,

    /// Grace period of each soft threshold, e.g.
    /// `memory.available=1m30s` (upstream's --eviction-soft-grace-period).
    #[arg(long, default_value = "")]
    pub eviction_soft_grace_period: String,

    /// The longest stop, in seconds, a pod evicted for a soft threshold
    /// gets; 0: its own terminationGracePeriodSeconds (upstream's
    /// --eviction-max-pod-grace-period).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub eviction_max_pod_grace_period: i64,

    /// How far past its threshold a signal must recover before its
    /// pressure counts as resolved, e.g. `memory.available=100Mi,
    /// nodefs.available=5%` (upstream's --eviction-minimum-reclaim).
    #[arg(long, default_value = "", value_parser = eviction_minimum_reclaim)]
    pub eviction_minimum_reclaim: String,

    /// pids.max of every pod's cgroup (upstream's --pod-max-pids); -1:
    /// no limit of the pod's own.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub pod_max_pids: i64,

    /// Percent of the image filesystem in use past which unused images are
    /// removed (upstream's --image-gc-high-threshold); 100 turns image
    /// garbage collection off.
    #[arg(long, default_value = "85", value_parser = percent)]
    pub image_gc_high_threshold: u8,

    /// Percent of the image filesystem in use that image garbage
    /// collection frees down to (upstream's --image-gc-low-threshold).
    #[arg(long, default_value = "80", value_parser = percent)]
    pub image_gc_low_threshold: u8,

    /// How long an unused image is kept after the agent first saw it
    /// (upstream's --minimum-image-ttl-duration).
    #[arg(long, default_value = "2m0s", value_parser = go_duration)]
    pub minimum_image_ttl_duration: std::time::Duration,

    /// How often image usage is checked (upstream: a fixed 5 minutes).
    #[arg(long, default_value = "5m0s", value_parser = go_duration, hide = true)]
    pub image_gc_period: std::time::Duration,

    /// Directory of this node's local-path volumes (k3s's
    /// --default-local-storage-path); default `<data-dir>/storage`.
    #[arg(long, value_name = "DIR")]
    pub default_local_storage_path: Option<PathBuf>,

    /// Set after joining: the kubelet API's serving certificate and the
    /// client CA, from the server.
    #[arg(skip)]
    pub joined: Option<(rkube_pki::CertKey, String)>,

    /// Register N simulated nodes and act as their kubelet instead of
    /// running pods for real.
    #[arg(long, value_name = "N")]
    pub simulate: Option<u32>,

    /// Name prefix of simulated nodes (`<prefix>-0`, `<prefix>-1`, ...).
    #[arg(long, default_value = "sim")]
    pub simulate_prefix: String,

    /// cpu capacity of each simulated node.
    #[arg(long, value_name = "QUANTITY")]
    pub simulate_cpu: Option<String>,

    /// memory capacity of each simulated node.
    #[arg(long, value_name = "QUANTITY")]
    pub simulate_memory: Option<String>,

    /// Pod capacity of each simulated node.
    #[arg(long, value_name = "N")]
    pub simulate_pods: Option<String>,

    /// ephemeral-storage capacity of each simulated node.
    #[arg(long, value_name = "QUANTITY")]
    pub simulate_ephemeral_storage: Option<String>,

    /// Extra labels of simulated nodes, KEY=VALUE[,KEY=VALUE...].
    #[arg(long, value_name = "LABELS")]
    pub simulate_labels: Vec<String>,

    /// Taints of simulated nodes, KEY[=VALUE]:EFFECT[,...].
    #[arg(long, value_name = "TAINTS")]
    pub simulate_taints: Vec<String>,

    /// Longest time a deleted simulated pod takes to stop (default 1s).
    #[arg(long, value_name = "DURATION")]
    pub simulate_termination_delay: Option<String>,

    /// Pod status writes and deletes in flight at once.
    #[arg(long, default_value_t = 32)]
    pub simulate_max_in_flight: usize,
}

impl AgentArgs {
    /// The soft eviction thresholds the flags set.
    pub fn eviction_soft(&self) -> anyhow::Result<rkube_kubelet::eviction::soft::Soft> {
        rkube_kubelet::eviction::soft::Soft::parse(
            &self.eviction_soft,
            &self.eviction_soft_grace_period,
            self.eviction_max_pod_grace_period,
            go_duration,
        )
        .map_err(|e| anyhow::anyhow!("--eviction-soft: {e}"))
    }

    /// The image garbage collection policy the flags set, checked as
    /// upstream's kubelet checks it at start-up.
    pub fn image_gc(&self) -> anyhow::Result<rkube_kubelet::image_gc::Policy> {
        let policy = rkube_kubelet::image_gc::Policy {
            high_percent: self.image_gc_high_threshold,
            low_percent: self.image_gc_low_threshold,
            min_age: self.minimum_image_ttl_duration,
            period: self.image_gc_period.max(std::time::Duration::from_secs(1)),
        };
        policy
            .validate()
            .map_err(|e| anyhow::anyhow!("image garbage collection: {e}"))?;
        Ok(policy)
    }
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    rkube_pki::install_crypto_provider();
    args.image_gc()?;
    args.eviction_soft()?;
    match args.simulate {
        Some(n) => simulate::run(args.clone(), n).await,
        None => kubelet::run(args).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations_read_as_upstream_flags() {
        assert_eq!(go_duration("2m0s"), Ok(Duration::from_secs(120)));
        assert_eq!(go_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(go_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(go_duration("0"), Ok(Duration::ZERO));
        assert_eq!(go_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(go_duration("").is_err());
        assert!(go_duration("5").is_err());
        assert!(go_duration("3 days").is_err());
        assert_eq!(percent("85"), Ok(85));
        assert!(percent("101").is_err());
    }
}
