//! `rkube cluster down`: ends a local cluster's processes, stops its
//! pods' containers through the runtime (they outlive their agents by
//! design), kills what is left in its cgroups, unmounts what its state
//! pins, and removes its namespaces, bridge, routes and state.
//!
//! Upstream counterpart: `kind delete cluster` / `k3d cluster delete`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::{ip, netns, ROUTE_METRIC, UNREACHABLE};

pub(super) fn down(name: &str, dir: &Path) -> anyhow::Result<()> {
    if !dir.exists()
        && !Path::new("/sys/class/net")
            .join(format!("rk-{name}"))
            .exists()
    {
        bail!("no cluster {name} ({} does not exist)", dir.display());
    }
    stop_processes(dir);
    for (i, node) in nodes_dirs(dir).iter().enumerate() {
        if let Err(e) = remove_containers(node, &format!("rkube-{name}/node-{i}")) {
            eprintln!("{}: {e:#}", node.display());
        }
    }
    remove_cgroups(&format!("rkube-{name}"));
    unmount_under(dir);
    for i in 0.. {
        let ns = netns(name, i);
        if !Path::new("/run/netns").join(&ns).exists() {
            break;
        }
        ip(&["netns", "del", &ns])?;
    }
    let _ = ip(&["link", "del", &format!("rk-{name}")]);
    // Other clusters may still rely on the unreachable routes.
    let others = std::fs::read_dir("/sys/class/net")
        .map(|d| {
            d.flatten().any(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                // Bridges only: rk-<name>, names have no dash.
                n.strip_prefix("rk-")
                    .is_some_and(|r| !r.contains('-') && r != name)
            })
        })
        .unwrap_or(false);
    if !others {
        for cidr in UNREACHABLE {
            let _ = ip(&["route", "del", "unreachable", cidr, "metric", ROUTE_METRIC]);
        }
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    println!("cluster {name} down");
    Ok(())
}

/// SIGTERM to each process group, SIGKILL to what is left after 10 s.
fn stop_processes(dir: &Path) {
    let pids: Vec<i32> = std::fs::read_to_string(dir.join("pids"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let alive = |pid: i32| Path::new(&format!("/proc/{pid}")).exists();
    let signal = |pid: i32, sig: &str| {
        let _ = Command::new("kill")
            .args([sig, "--", &format!("-{pid}")])
            .stderr(Stdio::null())
            .status();
    };
    for &pid in &pids {
        signal(pid, "-TERM");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    for &pid in &pids {
        signal(pid, "-KILL");
    }
    let _ = std::fs::remove_file(dir.join("pids"));
}

/// Every node's data dir (node-0, node-1, ...).
fn nodes_dirs(dir: &Path) -> Vec<PathBuf> {
    (0..)
        .map(|i| dir.join(format!("node-{i}")))
        .take_while(|p| p.exists())
        .collect()
}

/// Stops and removes a node's containers and their sandboxes through the
/// runtime, as the kubelet would on pod deletion (its agent is gone).
fn remove_containers(node: &Path, cgroup_parent: &str) -> anyhow::Result<()> {
    use rkube_containers::image::{ImageService, RegistriesConfig};
    use rkube_containers::runtime::{LocalRuntime, Runtime, RuntimeOptions};
    let root = node.join("agent");
    if !root.join("containers").exists() {
        return Ok(());
    }
    let images = Arc::new(ImageService::open(
        &root.join("images"),
        RegistriesConfig::default(),
    )?);
    let mut options = RuntimeOptions::new(&root.join("containers"));
    options.cgroup_parent = cgroup_parent.into();
    let rt = LocalRuntime::new(options, images)?;
    let mut sandboxes = std::collections::BTreeSet::new();
    for c in rt.list()? {
        let _ = rt.stop(&c.id, Duration::from_secs(1));
        rt.remove(&c.id)?;
        sandboxes.insert(c.sandbox);
    }
    for s in sandboxes {
        rt.remove_sandbox(&s)?;
    }
    Ok(())
}

/// Kills whatever still runs in the cluster's cgroups (in every mounted
/// hierarchy) and removes them, deepest first.
fn remove_cgroups(parent: &str) {
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let mut dirs = Vec::new();
    for h in hierarchies.flatten() {
        collect_dirs(&h.path().join(parent), &mut dirs);
    }
    if Path::new("/sys/fs/cgroup/cgroup.procs").exists() {
        collect_dirs(&Path::new("/sys/fs/cgroup").join(parent), &mut dirs);
    }
    for _ in 0..50 {
        let mut any = false;
        for d in &dirs {
            let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                any = true;
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .stderr(Stdio::null())
                    .status();
            }
        }
        if !any {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Children before parents.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in dirs {
        let _ = std::fs::remove_dir(d);
    }
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    out.push(dir.to_path_buf());
    for e in entries.flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            collect_dirs(&e.path(), out);
        }
    }
}

/// Unmounts everything mounted under `dir` (rootfs overlays, volume
/// tmpfs, pinned namespaces), deepest first, so the state can go.
fn unmount_under(dir: &Path) {
    let Ok(dir) = dir.canonicalize() else {
        return;
    };
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(&dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    for p in points {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&p)
            .stderr(Stdio::null())
            .status();
    }
}
