//! `rkube cluster up|down`: a local multi-node cluster on one machine —
//! a bridge in the root namespace (`rk-<name>`, 192.168.N.1/24), and each
//! node in its own network namespace with an address on that bridge
//! (reachable from the host, so NodePorts answer there): node 0 runs the
//! server and an agent, the others an agent each, joined with the
//! server's token; pods are networked over VXLAN. `up` returns once every
//! node is Ready; `down` stops the processes and the pods' containers and
//! removes the namespaces, the bridge, the routes and the state.
//!
//! Upstream counterpart: kind / k3d (nodes as containers on one bridge);
//! here the nodes are processes in network namespaces.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

mod down;

#[derive(Args, Debug)]
pub struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Subcommand, Debug)]
enum ClusterCommand {
    /// Start a server and N-1 agents, each in its own network namespace,
    /// and wait until every node is Ready.
    Up {
        #[arg(long, default_value_t = 3)]
        nodes: u32,
        #[arg(long, default_value = "rkube")]
        name: String,
        /// Where the admin kubeconfig goes (default: <state>/kubeconfig.yaml).
        #[arg(long)]
        write_kubeconfig: Option<PathBuf>,
        /// Where the cluster's processes keep their state.
        #[arg(long, default_value = "/var/lib/rkube-cluster")]
        state_dir: PathBuf,
        /// Longest wait for every node to be Ready, in seconds.
        #[arg(long, default_value_t = 180)]
        timeout: u64,
        /// An extra flag for every agent (repeatable), e.g.
        /// `--agent-arg=--eviction-hard=nodefs.available<5%`.
        #[arg(long, allow_hyphen_values = true)]
        agent_arg: Vec<String>,
    },
    /// Stop the cluster's processes and pods, remove its namespaces,
    /// bridge, routes and state.
    Down {
        #[arg(long, default_value = "rkube")]
        name: String,
        #[arg(long, default_value = "/var/lib/rkube-cluster")]
        state_dir: PathBuf,
    },
}

/// The pod and Service ranges (the server's and agents' defaults): the
/// root namespace routes them nowhere, so nothing addressed to them
/// leaves the machine.
const UNREACHABLE: [&str; 2] = ["10.42.0.0/16", "10.43.0.0/16"];
/// Marks the unreachable routes this command added (deleted on down).
const ROUTE_METRIC: &str = "4242";

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip").args(args).output().context("run ip")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The third octet of the cluster's bridge subnet, from its name.
fn subnet(name: &str) -> u32 {
    let h = name
        .bytes()
        .fold(2166136261u32, |h, b| (h ^ b as u32).wrapping_mul(16777619));
    100 + h % 100
}

fn netns(name: &str, i: u32) -> String {
    format!("rk-{name}-{i}")
}

/// Node `i`'s name: the server's node, then agents.
fn node_name(name: &str, i: u32) -> String {
    if i == 0 {
        format!("{name}-server")
    } else {
        format!("{name}-agent-{i}")
    }
}

pub fn run(args: ClusterArgs) -> anyhow::Result<()> {
    match args.command {
        ClusterCommand::Up {
            nodes,
            name,
            write_kubeconfig,
            state_dir,
            timeout,
            agent_arg,
        } => {
            let kubeconfig = up(
                nodes,
                &name,
                write_kubeconfig,
                &state_dir.join(&name),
                &agent_arg,
            )?;
            wait_ready(&name, nodes, &kubeconfig, Duration::from_secs(timeout)).with_context(
                || {
                    format!(
                        "logs in {}; `rkube cluster down --name {name}` removes it",
                        state_dir.join(&name).display()
                    )
                },
            )?;
            println!("cluster {name}: {nodes} nodes Ready");
            Ok(())
        }
        ClusterCommand::Down { name, state_dir } => down::down(&name, &state_dir.join(&name)),
    }
}

/// Starts a process in `ns`, in its own session (so `down` can end its
/// whole group), logging to `dir/log`; its pid goes to `dir/pids`.
fn spawn(ns: &str, dir: &Path, log: &str, args: &[String]) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let log = std::fs::File::create(dir.join(log))?;
    // nsenter, not `ip netns exec`: the latter remounts /sys, which hides
    // the cgroup hierarchies the runtime needs.
    let child = Command::new("setsid")
        .arg("nsenter")
        .arg(format!("--net=/run/netns/{ns}"))
        .arg(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("start a cluster process")?;
    let pids = dir.join("pids");
    let mut all = std::fs::read_to_string(&pids).unwrap_or_default();
    all.push_str(&format!("{}\n", child.id()));
    std::fs::write(&pids, all)?;
    Ok(())
}

/// Creates the bridge, namespaces and processes; returns the kubeconfig.
fn up(
    nodes: u32,
    name: &str,
    kubeconfig: Option<PathBuf>,
    dir: &Path,
    agent_args: &[String],
) -> anyhow::Result<PathBuf> {
    if nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    if name.is_empty() || name.len() > 8 || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
        bail!("--name must be 1-8 letters or digits (it names network interfaces)");
    }
    let bridge = format!("rk-{name}");
    if Path::new("/sys/class/net").join(&bridge).exists() {
        bail!("cluster {name} exists already (`rkube cluster down --name {name}` removes it)");
    }
    let third = format!("192.168.{}", subnet(name));
    let routes = Command::new("ip")
        .args(["route", "show", &format!("{third}.0/24")])
        .output()
        .context("run ip")?;
    if !routes.stdout.is_empty() {
        bail!("{third}.0/24 is in use on this machine; choose another --name");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    ip(&["link", "add", &bridge, "type", "bridge"])?;
    ip(&["addr", "add", &format!("{third}.1/24"), "dev", &bridge])?;
    ip(&["link", "set", &bridge, "up"])?;
    for cidr in UNREACHABLE {
        // Already there (another cluster, or a node on this machine): fine.
        let _ = ip(&["route", "add", "unreachable", cidr, "metric", ROUTE_METRIC]);
    }
    for i in 0..nodes {
        let ns = netns(name, i);
        ip(&["netns", "add", &ns])?;
        let host = format!("rk-{name}-h{i}");
        ip(&[
            "link", "add", &host, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ])?;
        ip(&["link", "set", &host, "master", &bridge, "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        let addr = format!("{third}.{}/24", 10 + i);
        ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        let gw = format!("{third}.1");
        ip(&["-n", &ns, "route", "add", "default", "via", &gw])?;
    }
    let server_ip = format!("{third}.10");
    let kubeconfig = kubeconfig.unwrap_or_else(|| dir.join("kubeconfig.yaml"));
    let _ = std::fs::remove_file(&kubeconfig);
    let s = |v: &str| v.to_string();
    // The server's own node is an agent beside it, as the other nodes:
    // the embedded one would share the machine's node name and cgroups.
    spawn(
        &netns(name, 0),
        dir,
        "server.log",
        &[
            s("server"),
            s("--data-dir"),
            dir.join("server").display().to_string(),
            s("--bind-address"),
            server_ip.clone(),
            s("--node-ip"),
            server_ip.clone(),
            s("--write-kubeconfig"),
            kubeconfig.display().to_string(),
            s("--disable-agent"),
        ],
    )?;
    let token_path = dir.join("server/server/token");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(token_path.exists() && kubeconfig.exists()) {
        if Instant::now() > deadline {
            bail!(
                "server not up in 60s; see {}",
                dir.join("server.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let token = std::fs::read_to_string(&token_path)?.trim().to_string();
    for i in 0..nodes {
        let mut args = vec![
            s("agent"),
            s("--server"),
            format!("https://{server_ip}:6443"),
            s("--token"),
            token.clone(),
            s("--data-dir"),
            dir.join(format!("node-{i}")).display().to_string(),
            s("--node-name"),
            node_name(name, i),
            s("--node-ip"),
            format!("{third}.{}", 10 + i),
            s("--network-backend"),
            s("vxlan"),
            s("--cgroup-parent"),
            format!("rkube-{name}/node-{i}"),
        ];
        args.extend(agent_args.iter().cloned());
        spawn(&netns(name, i), dir, &format!("node-{i}.log"), &args)?;
    }
    println!(
        "cluster {name}: server https://{server_ip}:6443, kubeconfig {}",
        kubeconfig.display()
    );
    Ok(kubeconfig)
}

/// Polls the Nodes until all `nodes` are registered and Ready.
fn wait_ready(name: &str, nodes: u32, kubeconfig: &Path, timeout: Duration) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Node;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
        let api = kube::Api::<Node>::all(kube::Client::try_from(config)?);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let listed = api.list(&Default::default()).await;
            let mut missing = Vec::new();
            for i in 0..nodes {
                let want = node_name(name, i);
                let node = listed.as_ref().ok().and_then(|l| {
                    l.items
                        .iter()
                        .find(|n| n.metadata.name == Some(want.clone()))
                });
                match node.map(ready) {
                    Some(Ok(())) => {}
                    Some(Err(why)) => missing.push(format!("{want} ({why})")),
                    None => missing.push(format!("{want} (not registered)")),
                }
            }
            if missing.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                let err = listed.err().map(|e| format!("; last list: {e}"));
                bail!(
                    "not Ready after {}s: {}{}",
                    timeout.as_secs(),
                    missing.join(", "),
                    err.unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

/// Ok if the Node's Ready condition is True, else what it says.
fn ready(node: &k8s_openapi::api::core::v1::Node) -> Result<(), String> {
    let cond = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    match cond {
        Some(c) if c.status == "True" => Ok(()),
        Some(c) => Err(format!(
            "Ready={} {}",
            c.status,
            c.message.clone().unwrap_or_default()
        )),
        None => Err("no Ready condition yet".into()),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeStatus};

    use super::*;

    fn node(ready: Option<(&str, &str)>) -> Node {
        Node {
            status: Some(NodeStatus {
                conditions: ready.map(|(status, message)| {
                    vec![NodeCondition {
                        type_: "Ready".into(),
                        status: status.into(),
                        message: Some(message.into()),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn ready_reads_the_ready_condition() {
        assert_eq!(ready(&node(Some(("True", "")))), Ok(()));
        assert_eq!(
            ready(&node(Some(("False", "PLEG is not healthy")))),
            Err("Ready=False PLEG is not healthy".into())
        );
        assert_eq!(ready(&node(None)), Err("no Ready condition yet".into()));
    }

    #[test]
    fn names_and_subnets() {
        assert_eq!(node_name("dev", 0), "dev-server");
        assert_eq!(node_name("dev", 2), "dev-agent-2");
        assert_eq!(netns("dev", 1), "rk-dev-1");
        for name in ["a", "dev", "rkube", "zzzzzzzz"] {
            assert!((100..200).contains(&subnet(name)), "{name}");
        }
        assert_eq!(subnet("dev"), subnet("dev"));
    }
}
