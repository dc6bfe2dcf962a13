//! `rkube agent`: the real kubelet on this machine. Assembly only: the
//! API client (from `--kubeconfig`), the image service (importing the
//! archives dropped into `<data-dir>/agent/images` first, for air-gapped
//! installs), the built-in runtime, then `rkube_kubelet::run`.

use std::sync::Arc;

use anyhow::Context;
use rkube_containers::image::{ImageService, RegistriesConfig};
use rkube_containers::runtime::{LocalRuntime, RuntimeOptions};
use rkube_kubelet::images::LocalImages;

use super::AgentArgs;

pub async fn run(mut args: AgentArgs) -> anyhow::Result<()> {
    network_preflight(&args)?;
    let client = match (&args.kubeconfig, &args.server, &args.token) {
        (Some(path), _, _) => client_from(path).await?,
        (None, Some(server), Some(token)) => {
            let node = node_name(&args);
            let ip = node_ip(&args);
            let root = args.data_dir.join("agent");
            let joined = super::join::join(server, token, &root, &node, ip).await?;
            args.joined = Some((joined.serving, joined.client_ca_pem));
            client_from(&joined.kubeconfig).await?
        }
        _ => anyhow::bail!("give --server and --token to join, or --kubeconfig"),
    };
    run_with(client, args).await
}

fn node_name(args: &AgentArgs) -> String {
    args.node_name
        .clone()
        .unwrap_or_else(rkube_kubelet::sysinfo::hostname)
}

fn node_ip(args: &AgentArgs) -> std::net::IpAddr {
    args.node_ip
        .unwrap_or_else(rkube_kubelet::sysinfo::default_route_ip)
}

/// `rkube server`'s embedded agent: the same path with the server's own
/// node credentials. Flags not given keep `rkube agent`'s defaults.
pub async fn embedded(client: kube::Client, flags: &[String]) -> anyhow::Result<()> {
    use clap::Parser;
    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        agent: AgentArgs,
    }
    let args =
        Wrap::try_parse_from(std::iter::once("agent".to_string()).chain(flags.iter().cloned()))?;
    network_preflight(&args.agent)?;
    run_with(client, args.agent).await
}

/// Refuses to start, in words, where the chosen pod network cannot be
/// built (not root, no vxlan driver), before anything else is set up.
fn network_preflight(args: &AgentArgs) -> anyhow::Result<()> {
    if args.simulate.is_some() {
        return Ok(());
    }
    rkube_network::preflight::check(
        &rkube_network::cmd::System,
        args.network_backend,
        rkube_network::preflight::effective_uid(),
    )?;
    Ok(())
}

async fn run_with(client: kube::Client, args: AgentArgs) -> anyhow::Result<()> {
    let root = args.data_dir.join("agent");
    let node_name = node_name(&args);
    let node_ip = node_ip(&args);

    let registries = if args.registries.exists() {
        RegistriesConfig::load(&args.registries)
            .with_context(|| format!("load {}", args.registries.display()))?
    } else {
        RegistriesConfig::default()
    };
    // Archives sit beside the store's own subdirectories in one directory,
    // the same one `rkube ctr` uses by default.
    let images_dir = root.join("images");
    std::fs::create_dir_all(&images_dir)
        .with_context(|| format!("create {}", images_dir.display()))?;
    let images = Arc::new(
        ImageService::open(&images_dir, registries)
            .with_context(|| format!("open image store {}", images_dir.display()))?,
    );
    // The import future is not Send (borrows inside the image service), so
    // it runs on a blocking thread of this runtime.
    let (svc, dir, handle) = (
        images.clone(),
        images_dir.clone(),
        tokio::runtime::Handle::current(),
    );
    let imported =
        tokio::task::spawn_blocking(move || handle.block_on(svc.import_dir(&dir))).await??;
    for (path, result) in imported {
        if let Ok(imported) = result {
            for i in imported {
                tracing::info!(archive = %path.display(), image = %i.name, "imported image");
            }
        }
    }
    let mut options = RuntimeOptions::new(&root.join("containers"));
    options.cgroup_parent = args.cgroup_parent.clone();
    let runtime =
        Arc::new(LocalRuntime::new(options, images.clone()).context("open the container runtime")?);

    let mut config = rkube_kubelet::Config::new(&node_name, node_ip, root);
    config.kubelet_port = args.kubelet_port;
    config.cluster_dns = args.cluster_dns.iter().map(|ip| ip.to_string()).collect();
    config.cluster_domain = args.cluster_domain.clone();
    config.eviction_hard = rkube_kubelet::eviction::Thresholds::parse(&args.eviction_hard)
        .map_err(|e| anyhow::anyhow!("--eviction-hard: {e}"))?;
    config.image_gc = args.image_gc()?;
    config.eviction_soft = args.eviction_soft()?;
    config.eviction_minimum_reclaim =
        rkube_kubelet::eviction::Thresholds::parse_min_reclaim(&args.eviction_minimum_reclaim)
            .map_err(|e| anyhow::anyhow!("--eviction-minimum-reclaim: {e}"))?;
    config.cgroups = Some(rkube_kubelet::cm::Settings {
        mount: "/sys/fs/cgroup".into(),
        root: args.cgroup_parent.clone(),
        pod_pids_limit: Some(args.pod_max_pids).filter(|p| *p > 0),
    });
    use rkube_network::node::Backend;
    if args.network_backend == Backend::Cni {
        config.network = Some(rkube_network::start_cni(&rkube_network::cni::CniConfig {
            bin_dirs: args.cni_bin_dir.clone(),
            conf_dir: args.cni_conf_dir.clone(),
            cache_dir: config.root.join("cni"),
        }));
        // Pods' routes are the plugins' business; Service addresses must
        // still never leave the node by its default route.
        let system = rkube_network::cmd::System;
        if let Err(e) = rkube_network::routes::unreachable(&system, &[args.service_cidr]) {
            tracing::warn!(error = %e, "no unreachable route for the service CIDR");
        }
        match node_ip {
            std::net::IpAddr::V4(ipv4) => start_services(&client, &args, &node_name, ipv4).await,
            ip => tracing::warn!(%ip, "no service proxy or cluster DNS without an IPv4 node IP"),
        }
    } else if args.network_backend != Backend::None {
        let std::net::IpAddr::V4(ipv4) = node_ip else {
            anyhow::bail!("the pod network needs an IPv4 --node-ip, not {node_ip}");
        };
        let cfg = rkube_network::node::NodeConfig {
            node_name: node_name.clone(),
            node_ip: ipv4,
            backend: args.network_backend,
            cluster_cidr: args.cluster_cidr,
            service_cidr: args.service_cidr,
        };
        config.network = Some(rkube_network::start(
            client.clone(),
            cfg,
            &config.root.join("ipam"),
        ));
        // Services and cluster DNS ride on the pod network: no pods, no
        // rules in the node's tables.
        start_services(&client, &args, &node_name, ipv4).await;
    }
    let serving = match (&args.joined, &args.client_ca_file) {
        (Some((serving, client_ca_pem)), _) => Some(rkube_kubelet::ApiServing {
            serving: serving.clone(),
            client_ca_pem: client_ca_pem.clone(),
        }),
        (None, Some(path)) => Some(rkube_kubelet::ApiServing {
            serving: super::tls::self_signed_serving(
                &config.root.join("tls"),
                &node_name,
                node_ip,
            )?,
            client_ca_pem: std::fs::read_to_string(path)
                .with_context(|| format!("read {}", path.display()))?,
        }),
        (None, None) => {
            tracing::warn!("no --client-ca-file: the kubelet API (logs, exec) is off");
            None
        }
    };
    // The node's half of local-path volumes (the provisioner's is in the
    // controller manager): their directories under this node's own dir.
    let storage = args
        .default_local_storage_path
        .clone()
        .unwrap_or_else(|| args.data_dir.join("storage"));
    tokio::spawn(rkube_kubelet::localpath::run(
        client.clone(),
        rkube_kubelet::localpath::Config {
            nodes: [node_name.clone()].into(),
            base: std::path::absolute(&storage).unwrap_or(storage),
            disk: Arc::new(rkube_kubelet::localpath::HostDisk),
            publish: Some(node_name.clone()),
        },
    ));
    tracing::info!(node = %node_name, ip = %node_ip, "starting kubelet");
    rkube_kubelet::run(
        client,
        config,
        runtime,
        Arc::new(LocalImages(images)),
        serving,
    )
    .await
    .context("kubelet")?;
    Ok(())
}

/// kube-proxy's and the cluster DNS's jobs on this node: the DNS server
/// listens on the node IP, and the proxy sends the cluster DNS Service's
/// port 53 there.
async fn start_services(
    client: &kube::Client,
    args: &AgentArgs,
    node_name: &str,
    node_ip: std::net::Ipv4Addr,
) {
    let cluster_dns = args.cluster_dns.iter().find_map(|ip| match ip {
        std::net::IpAddr::V4(v) => Some(*v),
        _ => None,
    });
    let own: Vec<std::net::IpAddr> = args.cluster_dns.clone();
    let upstreams =
        rkube_dns::upstreams_from_resolv_conf("/etc/resolv.conf", &own).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "dns: no upstream resolvers");
            Vec::new()
        });
    let resolver = rkube_dns::Resolver::new(
        rkube_dns::Zone::build(&args.cluster_domain, &[], &[]),
        upstreams,
    );
    let addr = std::net::SocketAddr::new(node_ip.into(), 53);
    match rkube_dns::serve(resolver.clone(), addr).await {
        Ok(_) => {
            tokio::spawn(rkube_dns::watch::run(
                client.clone(),
                args.cluster_domain.clone(),
                resolver,
            ));
        }
        Err(e) => tracing::warn!(error = %e, "dns: not serving"),
    }
    let node = rkube_proxy::watch::NodeProxy {
        node_name: node_name.to_string(),
        rules: rkube_proxy::Config {
            cluster_cidr: args.cluster_cidr.to_string(),
        },
        local_dns: cluster_dns.map(|dns| (dns, node_ip)),
    };
    tokio::spawn(rkube_proxy::watch::run(
        client.clone(),
        node,
        Arc::new(rkube_proxy::System::default()),
    ));
}

async fn client_from(path: &std::path::Path) -> anyhow::Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("read kubeconfig {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    Ok(kube::Client::try_from(config)?)
}

/// The embedded agent's client: a certificate for `system:node:<node>` in
/// `system:nodes`, as a joined agent gets, over loopback.
pub async fn node_client(
    pki: &rkube_pki::Pki,
    url: &str,
    node: &str,
) -> anyhow::Result<kube::Client> {
    let cert = pki.client_cert("kubelet", &format!("system:node:{node}"), &["system:nodes"])?;
    let spec = rkube_pki::KubeconfigSpec::new(
        url,
        pki.server_ca().cert_pem(),
        &cert.cert_pem,
        &cert.key_pem,
    );
    let yaml = rkube_pki::kubeconfig(&spec)?;
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&yaml)?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    Ok(kube::Client::try_from(config)?)
}
