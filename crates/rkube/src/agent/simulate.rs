//! `rkube agent --simulate N`: N simulated nodes served by this process
//! (rkube-simulator; kwok upstream). Flags in, a client and a
//! [`rkube_simulator::Config`] out.

use std::time::Duration;

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
    if let Some(d) = &args.simulate_termination_delay {
        cfg.termination_delay = rkube_simulator::pod::spec::parse_duration(d)
            .with_context(|| format!("--simulate-termination-delay {d:?}: expected e.g. 1s"))?;
    }
    cfg.max_in_flight = args.simulate_max_in_flight;
    cfg.renew_interval = Duration::from_secs(10);
    tokio::select! {
        r = rkube_simulator::run(client, cfg) => Ok(r?),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// The API client: from --kubeconfig (joining with --server/--token is
/// the real kubelet's path and not offered here yet).
async fn client(args: &AgentArgs) -> anyhow::Result<kube::Client> {
    let Some(path) = &args.kubeconfig else {
        anyhow::bail!("--simulate needs --kubeconfig (joining with --server/--token is not supported for simulated nodes yet)");
    };
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading kubeconfig {}", path.display()))?;
    let mut config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .with_context(|| format!("kubeconfig {}", path.display()))?;
    if let Some(server) = &args.server {
        config.cluster_url = server.parse().context("--server")?;
    }
    Ok(kube::Client::try_from(config)?)
}
