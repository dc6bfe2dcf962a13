//! `rkube cluster up|down`: a local multi-node cluster on one machine —
//! a bridge in the root namespace (`rk-<name>`, 192.168.N.1/24), the
//! server and each agent in its own network namespace with an address on
//! that bridge (reachable from the host), pods networked over VXLAN.
//!
//! Upstream counterpart: kind / k3d (nodes as containers on one bridge);
//! here the nodes are processes in network namespaces.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Subcommand, Debug)]
enum ClusterCommand {
    /// Start a server and N-1 agents, each in its own network namespace.
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
    },
    /// Stop the cluster's processes and remove its namespaces and bridge.
    Down {
        #[arg(long, default_value = "rkube")]
        name: String,
        #[arg(long, default_value = "/var/lib/rkube-cluster")]
        state_dir: PathBuf,
    },
}

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

pub fn run(args: ClusterArgs) -> anyhow::Result<()> {
    match args.command {
        ClusterCommand::Up {
            nodes,
            name,
            write_kubeconfig,
            state_dir,
        } => up(nodes, &name, write_kubeconfig, &state_dir.join(&name)),
        ClusterCommand::Down { name, state_dir } => down(&name, &state_dir.join(&name)),
    }
}

fn spawn(ns: &str, dir: &Path, log: &str, args: &[String]) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let log = std::fs::File::create(dir.join(log))?;
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

fn up(nodes: u32, name: &str, kubeconfig: Option<PathBuf>, dir: &Path) -> anyhow::Result<()> {
    if nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    if name.len() > 8 || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
        bail!("--name must be 1-8 letters or digits (it names network interfaces)");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let third = format!("192.168.{}", subnet(name));
    let bridge = format!("rk-{name}");
    ip(&["link", "add", &bridge, "type", "bridge"]).context("the cluster exists already?")?;
    ip(&["addr", "add", &format!("{third}.1/24"), "dev", &bridge])?;
    ip(&["link", "set", &bridge, "up"])?;
    for i in 0..nodes {
        let ns = netns(name, i);
        ip(&["netns", "add", &ns])?;
        let host = format!("rk-{name}-h{i}");
        ip(&[
            "link", "add", &host, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ])?;
        ip(&["link", "set", &host, "master", &bridge, "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{third}.{}/24", 10 + i),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        ip(&[
            "-n",
            &ns,
            "route",
            "add",
            "default",
            "via",
            &format!("{third}.1"),
        ])?;
    }
    let server_ip = format!("{third}.10");
    let kubeconfig = kubeconfig.unwrap_or_else(|| dir.join("kubeconfig.yaml"));
    let s = |v: &str| v.to_string();
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
            s("--network-backend=vxlan"),
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
    for i in 1..nodes {
        let node_ip = format!("{third}.{}", 10 + i);
        spawn(
            &netns(name, i),
            dir,
            &format!("agent-{i}.log"),
            &[
                s("agent"),
                s("--server"),
                format!("https://{server_ip}:6443"),
                s("--token"),
                token.clone(),
                s("--data-dir"),
                dir.join(format!("agent-{i}")).display().to_string(),
                s("--node-name"),
                format!("{name}-agent-{i}"),
                s("--node-ip"),
                node_ip,
                s("--network-backend"),
                s("vxlan"),
                s("--cgroup-parent"),
                format!("rkube-{name}-{i}"),
            ],
        )?;
    }
    println!(
        "cluster {name} up: server https://{server_ip}:6443, kubeconfig {}",
        kubeconfig.display()
    );
    Ok(())
}

fn down(name: &str, dir: &Path) -> anyhow::Result<()> {
    let pids = std::fs::read_to_string(dir.join("pids")).unwrap_or_default();
    for pid in pids.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        // setsid made each its own process group: end the whole group.
        let _ = Command::new("kill")
            .args(["--", &format!("-{pid}")])
            .status();
    }
    let _ = std::fs::remove_file(dir.join("pids"));
    for i in 0.. {
        let ns = netns(name, i);
        if !Path::new("/run/netns").join(&ns).exists() {
            break;
        }
        ip(&["netns", "del", &ns])?;
    }
    let _ = ip(&["link", "del", &format!("rk-{name}")]);
    println!("cluster {name} down");
    Ok(())
}
