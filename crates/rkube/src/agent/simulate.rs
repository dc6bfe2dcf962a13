//! `rkube agent --simulate N`: N simulated nodes served by this process
//! (rkube-simulator; kwok upstream). Flags in, a client and a
//! [`rkube_simulator::Config`] out.

use anyhow::Context;

use super::AgentArgs;

pub async fn run(args: AgentArgs, nodes: u32) -> anyhow::Result<()> {
    let client = client(&args).await?;
    let mut cfg = rkube_simulator::Config::new(&args.simulate_prefix, nodes);
    for (key, value) in [
        ("cpu", &args.simulate_cpu),
        ("memory", &args.simulate_memory),
        ("pods", &args.simulate_pods),
        ("ephemeral-storage", &args.simulate_ephemeral_storage),
    ] {
        if let Some(v) = value {
            cfg.capacity.insert(key.into(), v.clone());
        }
    }
    for label in args.simulate_labels.iter().flat_map(|l| l.split(',')) {
        let (k, v) = label
            .split_once('=')
            .with_context(|| format!("--simulate-labels {label:?}: expected KEY=VALUE"))?;
        cfg.labels.insert(k.trim().into(), v.trim().into());
    }
    for taint in args.simulate_taints.iter().flat_map(|t| t.split(',')) {
        cfg.taints
            .push(rkube_simulator::node::parse_taint(taint).with_context(|| {
                format!("--simulate-taints {taint:?}: expected KEY[=VALUE]:EFFECT")
            })?);
    }
    if let Some(d) = &args.simulate_termination_delay {
        cfg.termination_delay = rkube_simulator::pod::spec::parse_duration(d)
            .with_context(|| format!("--simulate-termination-delay {d:?}: expected e.g. 1s"))?;
    }
    cfg.max_in_flight = args.simulate_max_in_flight;
    // Local-path volumes of simulated nodes have no directory: Released
    // ones are only deleted.
    tokio::spawn(rkube_kubelet::localpath::run(
        client.clone(),
        rkube_kubelet::localpath::Config {
            nodes: (0..nodes)
                .map(|i| format!("{}-{i}", args.simulate_prefix))
                .collect(),
            base: rkube_controllers::localpath::plan::DEFAULT_BASE.into(),
            disk: std::sync::Arc::new(rkube_kubelet::localpath::NoDisk),
            publish: None,
        },
    ));
    tokio::select! {
        r = rkube_simulator::run(client, cfg) => Ok(r?),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// The API client: from --kubeconfig, or by joining with --server and
/// --token as a real agent does (one identity, `<prefix>-simulator`, for
/// all the simulated nodes; its credentials are kept in the data dir).
async fn client(args: &AgentArgs) -> anyhow::Result<kube::Client> {
    let path = match (&args.kubeconfig, &args.server, &args.token) {
        (Some(path), _, _) => path.clone(),
        (None, Some(server), Some(token)) => {
            let name = format!("{}-simulator", args.simulate_prefix);
            let ip = args.node_ip.unwrap_or([127, 0, 0, 1].into());
            let root = args.data_dir.join("simulator");
            super::join::join(server, token, &root, &name, ip)
                .await?
                .kubeconfig
        }
        _ => anyhow::bail!("--simulate needs --server and --token to join, or --kubeconfig"),
    };
    let kubeconfig = kube::config::Kubeconfig::read_from(&path)
        .with_context(|| format!("reading kubeconfig {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .with_context(|| format!("kubeconfig {}", path.display()))?;
    Ok(kube::Client::try_from(config)?)
}
