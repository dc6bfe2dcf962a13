//! rkube's kubelet: registers the Node and renews its Lease, runs the
//! pods bound to it on the built-in runtime (sandbox, volumes, init
//! containers, app containers, restarts with CrashLoopBackOff, probes,
//! hooks, graceful termination) and writes their status and events.
//!
//! Upstream counterpart: `pkg/kubelet` (kubelet.go's sync loop,
//! pod_workers.go, kuberuntime_manager.go, status_manager.go,
//! nodestatus, nodelease). Like every component it reaches the cluster
//! only through the API (kube-rs), and the runtime only through the
//! narrow [`rkube_containers::runtime::Runtime`] trait.

pub mod api;
pub mod atomic;
pub mod cm;
pub mod env;
pub mod events;
pub mod eviction;
pub mod image_gc;
pub mod images;
pub mod localpath;
pub mod lookup;
mod manager;
pub mod node;
pub mod ownership;
pub mod probes;
pub mod quantity;
pub mod reviews;
pub mod spec;
pub mod static_pods;
pub mod status;
pub mod sysinfo;
pub mod table;
pub mod volumes;
mod worker;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rkube_containers::runtime::Runtime;

pub use manager::PodManager;

/// The kubelet version reported in nodeInfo (the API types' version).
pub const KUBELET_VERSION: &str = "v1.33.0";

/// Errors that stop the kubelet.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("register node {node}: {source}")]
    Register {
        node: String,
        #[source]
        source: kube::Error,
    },
    #[error("recover containers: {0}")]
    Recover(#[source] rkube_containers::runtime::Error),
    #[error("kubelet API on port {port}: {source}")]
    Listen {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("create {path}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The kubelet's settings (user intent, from flags).
#[derive(Debug, Clone)]
pub struct Config {
    pub node_name: String,
    pub node_ip: IpAddr,
    pub hostname: String,
    /// `<data-dir>/agent`: pods/, logs/, pod-manifests/ live here.
    pub root: PathBuf,
    pub kubelet_port: u16,
    pub cluster_dns: Vec<String>,
    pub cluster_domain: String,
    pub max_pods: u32,
    pub labels: BTreeMap<String, String>,
    pub lease_duration_seconds: i32,
    pub lease_renew_interval: Duration,
    pub node_status_interval: Duration,
    /// Hard eviction thresholds behind MemoryPressure/DiskPressure and
    /// allocatable.
    pub eviction: node::Thresholds,
    /// Every hard eviction threshold (`--eviction-hard`) the eviction
    /// manager enforces; `eviction` is derived from it at start.
    pub eviction_hard: eviction::Thresholds,
    /// Soft thresholds with their grace periods (`--eviction-soft`).
    pub eviction_soft: eviction::soft::Soft,
    /// `--eviction-minimum-reclaim`.
    pub eviction_minimum_reclaim: eviction::threshold::MinReclaim,
    /// Where pod cgroups go; `None`: containers only get the runtime's.
    pub cgroups: Option<cm::Settings>,
    /// The pod network (issue 7); `None` leaves pods with loopback only.
    pub network: Option<Arc<dyn rkube_network::PodNetwork>>,
    /// When unused images are removed.
    pub image_gc: image_gc::Policy,
}

impl Config {
    pub fn new(node_name: &str, node_ip: IpAddr, root: PathBuf) -> Config {
        Config {
            node_name: node_name.to_string(),
            node_ip,
            hostname: node_name.to_string(),
            root,
            kubelet_port: 10250,
            cluster_dns: vec!["10.43.0.10".into()],
            cluster_domain: "cluster.local".into(),
            max_pods: 110,
            labels: BTreeMap::new(),
            lease_duration_seconds: 40,
            lease_renew_interval: Duration::from_secs(10),
            node_status_interval: Duration::from_secs(60),
            eviction: node::Thresholds::default(),
            eviction_hard: eviction::Thresholds::default(),
            eviction_soft: eviction::soft::Soft::default(),
            eviction_minimum_reclaim: Default::default(),
            cgroups: None,
            network: None,
            image_gc: image_gc::Policy::default(),
        }
    }

    pub fn pods_dir(&self) -> PathBuf {
        self.root.join("pods")
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs/pods")
    }

    pub fn manifests_dir(&self) -> PathBuf {
        self.root.join("pod-manifests")
    }
}

/// What pod workers share.
pub struct Shared {
    pub client: kube::Client,
    pub config: Config,
    pub runtime: Arc<dyn Runtime>,
    pub images: Arc<dyn images::Images>,
    pub lookup: Arc<dyn lookup::Lookup>,
    pub recorder: events::Recorder,
    pub node: std::sync::RwLock<env::NodeFacts>,
    pub table: Arc<table::PodTable>,
    /// Evictions asked of pod workers, and the node's pressure.
    pub evictions: Arc<eviction::Evictions>,
    pub cgroups: Option<cm::PodCgroups>,
    /// Image garbage collection (its loop, and the eviction manager's
    /// reclaim under disk pressure).
    pub image_gc: Arc<image_gc::Collector>,
}

/// The kubelet API's TLS identity: its serving certificate and the CA
/// that client certificates (the API server's) must chain to.
pub struct ApiServing {
    pub serving: rkube_pki::CertKey,
    pub client_ca_pem: String,
}

/// Runs the kubelet until a fatal error: node registration first, then
/// the Lease, node status and pod manager loops side by side.
pub async fn run(
    client: kube::Client,
    config: Config,
    runtime: Arc<dyn Runtime>,
    images: Arc<dyn images::Images>,
    serving: Option<ApiServing>,
) -> Result<(), Error> {
    for d in [config.pods_dir(), config.logs_dir(), config.manifests_dir()] {
        std::fs::create_dir_all(&d).map_err(|source| Error::Dir { path: d, source })?;
    }
    let mut config = config;
    let host = sysinfo::Host::default();
    let machine = host.machine(&config.root);
    config.eviction = config
        .eviction_hard
        .legacy(machine.memory_bytes, machine.disk_bytes);
    let evictions = Arc::new(eviction::Evictions::default());
    let cgroups = config.cgroups.clone().map(cm::PodCgroups::new);
    if let Some(cm) = &cgroups {
        let pids = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let (cpu, memory) = (machine.cpus as i64 * 1000, machine.memory_bytes as i64);
        if let Err(e) = cm.ensure_top_level(cpu, memory, pids) {
            tracing::warn!(error = %e, "cannot make the kubepods cgroups");
        }
    }
    let reporter = node::Reporter::new(client.clone(), config.clone(), host, images.clone())
        .with_pressure(evictions.subscribe());
    let facts = reporter.register().await?;
    let lookup: Arc<dyn lookup::Lookup> = Arc::new(lookup::ClusterLookup::start(client.clone()));
    let config_image_gc = config.image_gc;
    let shared = Arc::new(Shared {
        recorder: events::Recorder::new(client.clone(), &config.node_name),
        client: client.clone(),
        config,
        runtime,
        images,
        lookup,
        node: std::sync::RwLock::new(facts),
        table: Arc::default(),
        evictions,
        cgroups,
        image_gc: Arc::new(image_gc::Collector::new(config_image_gc)),
    });
    let observer = eviction::observe::HostObserver {
        proc_root: "/proc".into(),
        memory_cgroup: shared
            .config
            .cgroups
            .as_ref()
            .map_or("/sys/fs/cgroup".into(), |c| c.mount.clone())
            .join("memory"),
        nodefs: shared.config.root.clone(),
        imagefs: shared.config.root.join("images"),
        pods_dir: shared.config.pods_dir(),
        logs_dir: shared.config.logs_dir(),
        runtime: shared.runtime.clone(),
        cgroups: shared.cgroups.clone(),
    };
    tokio::spawn(eviction::Manager::new(shared.clone(), Arc::new(observer)).run());
    tokio::spawn(shared.image_gc.clone().run(shared.clone()));
    if let Some(tls) = serving {
        let port = shared.config.kubelet_port;
        let listener = tokio::net::TcpListener::bind(("0.0.0.0", port))
            .await
            .map_err(|source| Error::Listen { port, source })?;
        let api = Arc::new(api::KubeletApi {
            table: shared.table.clone(),
            runtime: shared.runtime.clone(),
        });
        let config = rkube_kubelet_server::Config {
            node_name: shared.config.node_name.clone(),
            serving: tls.serving,
            client_ca_pem: tls.client_ca_pem,
            auth: Arc::new(reviews::ApiReviews {
                client: shared.client.clone(),
            }),
        };
        tokio::spawn(async move {
            if let Err(e) = rkube_kubelet_server::serve(listener, config, api).await {
                tracing::error!(error = %e, "kubelet API stopped");
            }
        });
    }
    let manager = PodManager::new(shared.clone());
    let manager = manager.start().await?;
    tokio::spawn(reporter.clone().lease_loop());
    tokio::spawn(reporter.clone().network_loop());
    tokio::spawn(reporter.status_loop());
    manager.run().await;
    Ok(())
}
