//! `rkube server`: user intent from flags, then start-up in readiness order:
//! datastore, certificates, API server. The controller manager, scheduler
//! and agent join here as they land.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use std::net::SocketAddr;

use anyhow::Context;
use clap::Args;
use rkube_apiserver::ApiServer;
use rkube_pki::{first_service_ip, Pki, ServingOptions};
use rkube_storage::cache::CachedStore;
use rkube_storage::compactor::{self, CompactionPolicy};
use rkube_storage::etcd::{EtcdConfig, EtcdStore};
use rkube_storage::sqlite::SqliteStore;
use rkube_storage::Store;
use tokio::net::TcpListener;

/// The agents' join endpoint (`--server`/`--token`).
pub mod join;
/// The in-process transport of the controller manager and scheduler.
mod local;
/// The default StorageClass `local-path`.
mod local_storage;

#[derive(Args, Debug)]
pub struct ServerArgs {
    /// Directory holding all of this server's state.
    #[arg(long, default_value = "/var/lib/rkube")]
    pub data_dir: PathBuf,

    /// etcd endpoints (comma-separated URLs) to use instead of the embedded
    /// SQLite store, e.g. http://10.0.0.1:2379,http://10.0.0.2:2379.
    #[arg(long, value_delimiter = ',')]
    pub datastore_endpoint: Vec<String>,

    /// CA certificate that signed the etcd servers' certificates.
    #[arg(long)]
    pub datastore_cafile: Option<PathBuf>,

    /// Client certificate presented to etcd.
    #[arg(long)]
    pub datastore_certfile: Option<PathBuf>,

    /// Key of the client certificate presented to etcd.
    #[arg(long)]
    pub datastore_keyfile: Option<PathBuf>,

    /// How often old revisions are compacted, in seconds (0 turns it off).
    #[arg(long, default_value_t = 300)]
    pub compaction_interval: u64,

    /// How many of the newest revisions compaction keeps.
    #[arg(long, default_value_t = 1000)]
    pub compaction_retention: i64,

    /// Port of the API server's HTTPS listener.
    #[arg(long, default_value_t = 6443)]
    pub https_listen_port: u16,

    /// Address the API server listens on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: std::net::IpAddr,

    /// Extra names or IPs for the serving certificate (repeatable).
    #[arg(long = "tls-san", value_delimiter = ',')]
    pub tls_san: Vec<String>,

    /// This node's IP, added to the serving certificate.
    #[arg(long)]
    pub node_ip: Option<std::net::IpAddr>,

    /// Where the admin kubeconfig is written.
    #[arg(long, default_value = "/etc/rkube/rkube.yaml")]
    pub write_kubeconfig: PathBuf,

    /// Service IP range; its first address is the `kubernetes` Service's.
    #[arg(long, default_value = "10.43.0.0/16")]
    pub service_cluster_ip_range: String,

    /// The range nodes' podCIDRs (a /24 each) are cut from.
    #[arg(long, default_value = "10.42.0.0/16")]
    pub cluster_cidr: String,

    /// The pod network, on by default: vxlan, host-gw, cni (CNI plugins
    /// from /opt/cni/bin or /usr/lib/cni, config from /etc/cni/net.d),
    /// or none (pods get loopback only). Passed to the embedded agent
    /// (see `rkube agent --help`).
    #[arg(long, default_value = "vxlan")]
    pub network_backend: String,

    /// CNI plugin directories for --network-backend cni (comma-separated;
    /// the embedded agent's default when not given).
    #[arg(long, value_name = "DIR[,DIR...]")]
    pub cni_bin_dir: Option<String>,

    /// CNI config directory for --network-backend cni (the embedded
    /// agent's default, /etc/cni/net.d, when not given).
    #[arg(long, value_name = "DIR")]
    pub cni_conf_dir: Option<String>,

    /// Ports NodePort Services get theirs from.
    #[arg(long, default_value = "30000-32767")]
    pub service_node_port_range: String,

    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,

    /// Do not run the controller manager in this server.
    #[arg(long)]
    pub disable_controller_manager: bool,

    /// Do not run the scheduler in this server.
    #[arg(long)]
    pub disable_scheduler: bool,

    /// Do not run an agent (kubelet) in this server.
    #[arg(long)]
    pub disable_agent: bool,

    /// Do not create the default StorageClass `local-path` nor run its
    /// provisioner (k3s's --disable local-storage), e.g. to install
    /// another provisioner.
    #[arg(long)]
    pub disable_local_storage: bool,

    /// Directory of the embedded agent's local-path volumes (default
    /// `<data-dir>/storage`; other agents use their own data dir's).
    #[arg(long, value_name = "DIR")]
    pub default_local_storage_path: Option<PathBuf>,

    /// Port of the embedded agent's kubelet API.
    #[arg(long, default_value_t = 10250)]
    pub kubelet_port: u16,

    /// Controllers to run: `*` for the defaults, `name` to add, `-name` to
    /// remove (kube-controller-manager's `--controllers`).
    #[arg(long, value_delimiter = ',', default_value = "*")]
    pub controllers: Vec<String>,
}

impl ServerArgs {
    /// The embedded database file under the data dir.
    pub fn sqlite_path(&self) -> PathBuf {
        self.data_dir.join("server/db/state.db")
    }
}

/// Open the datastore the flags select.
pub async fn open_store(args: &ServerArgs) -> anyhow::Result<Arc<dyn Store>> {
    if args.datastore_endpoint.is_empty() {
        let path = args.sqlite_path();
        let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path)).await??;
        tracing::info!(path = %store.path().display(), "datastore: embedded sqlite");
        return Ok(Arc::new(store));
    }
    let config = EtcdConfig {
        endpoints: args.datastore_endpoint.clone(),
        ca_file: args.datastore_cafile.clone(),
        cert_file: args.datastore_certfile.clone(),
        key_file: args.datastore_keyfile.clone(),
    };
    let store = EtcdStore::connect(&config).await?;
    tracing::info!(endpoints = ?config.endpoints, "datastore: etcd");
    Ok(Arc::new(store))
}

/// Certificates under `<data-dir>/server/tls`, created on first start.
fn load_pki(args: &ServerArgs) -> anyhow::Result<Pki> {
    let mut sans = args.tls_san.clone();
    if let Ok(host) = hostname() {
        sans.push(host);
    }
    if let Some(ip) = args.node_ip {
        sans.push(ip.to_string());
    }
    if !args.bind_address.is_unspecified() {
        sans.push(args.bind_address.to_string());
    }
    let opts = ServingOptions {
        sans,
        service_ip: first_service_ip(&args.service_cluster_ip_range)?,
        cluster_domain: args.cluster_domain.clone(),
        ..Default::default()
    };
    let dir = args.data_dir.join("server/tls");
    Pki::load_or_create(&dir, &opts)
        .with_context(|| format!("cannot set up certificates in {}", dir.display()))
}

fn hostname() -> std::io::Result<String> {
    Ok(std::fs::read_to_string("/proc/sys/kernel/hostname")?
        .trim()
        .to_string())
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    rkube_pki::install_crypto_provider();
    let store = open_store(&args)
        .await
        .context("cannot open the datastore")?;
    let revision = store.current_revision().await?;
    tracing::info!(backend = store.backend(), revision, "datastore ready");
    let policy = CompactionPolicy {
        interval: Duration::from_secs(args.compaction_interval),
        retain: args.compaction_retention,
    };
    let _compactor = compactor::spawn(store.clone(), policy);

    let warm = tokio::task::spawn_blocking(rkube_apiserver::warm_up);
    let pki = load_pki(&args)?;
    let tls = rkube_pki::tls::server_config(pki.serving(), &[pki.client_ca().cert_pem()])?;
    // The API server reads through the watch cache; compaction and the
    // cache itself talk to the store directly.
    let cached: Arc<dyn Store> = Arc::new(CachedStore::new(store.clone()));
    let sa_key = rkube_pki::SaKey::from_pem(pki.service_account_key().key_pem())?;
    let config = rkube_apiserver::Config {
        service_cidr: args.service_cluster_ip_range.clone(),
        node_ports: parse_port_range(&args.service_node_port_range)?,
    };
    let api = ApiServer::new(cached, &config).map_err(anyhow::Error::msg)?;
    // The API server's identity towards kubelets (logs, exec, port-forward,
    // metrics), as kube-apiserver's --kubelet-client-certificate.
    let kubelet_cert = pki.client_cert(
        "kube-apiserver-kubelet-client",
        "kube-apiserver-kubelet-client",
        &[rkube_pki::MASTERS_GROUP],
    )?;
    let kubelet = rkube_apiserver::proxy::KubeletClient::new(&kubelet_cert, None)?;
    let api = Arc::new(
        api.with_service_account_key(sa_key)
            .with_kubelet_client(kubelet),
    );
    api.bootstrap()
        .await
        .map_err(|e| anyhow::anyhow!("cannot create system namespaces: {}", e.status().message))?;
    let addr = SocketAddr::new(args.bind_address, args.https_listen_port);
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    // The address behind the kubernetes Service (kube-apiserver's
    // --advertise-address default: the node IP, else the default route's).
    let advertise = args.node_ip.unwrap_or_else(|| {
        if args.bind_address.is_unspecified() {
            rkube_kubelet::sysinfo::default_route_ip()
        } else {
            args.bind_address
        }
    });
    api.publish_endpoints(&advertise.to_string(), local.port())
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot publish the kubernetes endpoints: {}",
                e.status().message
            )
        })?;
    let host = if args.bind_address.is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        args.bind_address.to_string()
    };
    let url = format!("https://{host}:{}", local.port());
    pki.write_admin_kubeconfig(&args.write_kubeconfig, &url)
        .with_context(|| {
            format!(
                "cannot write kubeconfig {}",
                args.write_kubeconfig.display()
            )
        })?;
    tracing::info!(%local, kubeconfig = %args.write_kubeconfig.display(), "API server listening");
    warm.await?;
    // Join routes first; everything else falls through to the API.
    let router = join::router(
        &args.data_dir.join("server/tls"),
        &args.data_dir.join("server/token"),
    )
    .context("cannot set up the join endpoint")?
    .merge(rkube_apiserver::router(api.clone()));
    let server = tokio::spawn(rkube_apiserver::serve(listener, Arc::new(tls), router));
    // The components' own clients skip the listener: see `local`.
    let component_client = |name: &str| {
        let user = rkube_apiserver::User {
            name: name.to_string(),
            groups: Vec::new(),
        };
        local::client(rkube_apiserver::router(api.clone()), user, &url)
    };

    let components = if args.disable_controller_manager {
        None
    } else {
        let client = component_client("system:kube-controller-manager")?;
        let mut controllers = args.controllers.clone();
        if args.disable_local_storage {
            controllers.push("-local-path-provisioner".into());
        }
        let opts = rkube_controllers::Options {
            controllers,
            leader_elect: true,
            identity: format!(
                "{}_{}",
                hostname().unwrap_or_else(|_| "rkube".into()),
                std::process::id()
            ),
            root_ca_pem: pki.server_ca().cert_pem().to_string(),
            cluster_cidr: args.cluster_cidr.clone(),
        };
        // It returns only on failure, e.g. lost leadership: stand for
        // election again rather than leave the cluster without controllers.
        Some(tokio::spawn(async move {
            loop {
                if let Err(err) = rkube_controllers::run(client.clone(), opts.clone()).await {
                    tracing::error!(%err, "controller manager stopped; restarting");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }))
    };

    if !args.disable_local_storage {
        let client = component_client("system:rkube-local-storage")?;
        tokio::spawn(local_storage::ensure_class(client));
    }

    let scheduler = if args.disable_scheduler {
        None
    } else {
        let client = component_client("system:kube-scheduler")?;
        let opts = rkube_scheduler::Options {
            leader_elect: true,
            identity: format!(
                "{}_{}",
                hostname().unwrap_or_else(|_| "rkube".into()),
                std::process::id()
            ),
        };
        // Like the controller manager: on failure, stand for election again.
        Some(tokio::spawn(async move {
            loop {
                if let Err(err) = rkube_scheduler::run(client.clone(), opts.clone()).await {
                    tracing::error!(%err, "scheduler stopped; restarting");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }))
    };

    let agent = if args.disable_agent {
        None
    } else {
        let node = hostname().unwrap_or_else(|_| "rkube".into()).to_lowercase();
        let client = crate::agent::kubelet::node_client(&pki, &url, &node).await?;
        let mut flags = vec![
            "--data-dir".to_string(),
            args.data_dir.display().to_string(),
            "--node-name".to_string(),
            node,
            "--kubelet-port".to_string(),
            args.kubelet_port.to_string(),
            "--cluster-domain".to_string(),
            args.cluster_domain.clone(),
            "--client-ca-file".to_string(),
            pki.dir().join("client-ca.crt").display().to_string(),
        ];
        flags.extend([
            format!("--network-backend={}", args.network_backend),
            format!("--cluster-cidr={}", args.cluster_cidr),
            format!("--service-cidr={}", args.service_cluster_ip_range),
        ]);
        if let Some(dirs) = &args.cni_bin_dir {
            flags.push(format!("--cni-bin-dir={dirs}"));
        }
        if let Some(dir) = &args.cni_conf_dir {
            flags.push(format!("--cni-conf-dir={dir}"));
        }
        if let Some(ip) = args.node_ip {
            flags.extend(["--node-ip".to_string(), ip.to_string()]);
        }
        if let Some(dir) = &args.default_local_storage_path {
            flags.push(format!("--default-local-storage-path={}", dir.display()));
        }
        Some(tokio::spawn(async move {
            if let Err(err) = crate::agent::kubelet::embedded(client, &flags).await {
                tracing::error!(err = format!("{err:#}"), "agent stopped");
            }
        }))
    };

    shutdown_signal().await?;
    for task in [components, scheduler, agent].into_iter().flatten() {
        task.abort();
    }
    tracing::info!("shutting down");
    server.abort();
    Ok(())
}

/// `30000-32767` as a range.
fn parse_port_range(s: &str) -> anyhow::Result<std::ops::RangeInclusive<u16>> {
    let (lo, hi) = s
        .split_once('-')
        .ok_or_else(|| anyhow::anyhow!("--service-node-port-range {s:?}: expected FROM-TO"))?;
    let (lo, hi): (u16, u16) = (lo.trim().parse()?, hi.trim().parse()?);
    anyhow::ensure!(
        lo <= hi,
        "--service-node-port-range {s:?}: FROM is above TO"
    );
    Ok(lo..=hi)
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}
