//! What the eviction manager measures: the node's signals (memory from
//! the root memory cgroup's working set, the data directory's and the
//! image store's filesystems, the kernel's pid limit against its tasks)
//! and each pod's usage (working set, processes, writable layers, logs
//! and disk-backed emptyDirs, measured by walking them as `du` does).
//!
//! Upstream counterpart: the summary stats provider the eviction manager
//! reads (`pkg/kubelet/stats`, cAdvisor's fs and cgroup stats, and
//! `pkg/kubelet/eviction/helpers.go`'s `makeSignalObservations`).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use rkube_containers::runtime::{ContainerState, Runtime};

use super::local::StorageUsage;
use super::threshold::{Observation, Signal};
use crate::cm::PodCgroups;

/// The node's signals, each `None` when it could not be read.
pub type NodeObservations = HashMap<Signal, Observation>;

/// One pod's usage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodUsage {
    /// Working set per running container, bytes.
    pub memory: HashMap<String, i64>,
    pub processes: i64,
    pub storage: StorageUsage,
}

/// The measuring side effects, so the manager's decisions can be tested
/// with made-up numbers.
pub trait Observer: Send + Sync {
    fn node(&self) -> NodeObservations;
    /// `containers`: runtime ids of each spec container, oldest first.
    fn pod(&self, pod: &Pod, containers: &HashMap<String, Vec<String>>) -> PodUsage;
}

/// Measures this machine.
pub struct HostObserver {
    pub proc_root: PathBuf,
    /// The memory hierarchy's root (`/sys/fs/cgroup/memory` on v1).
    pub memory_cgroup: PathBuf,
    /// Holds nodefs: the kubelet's data directory.
    pub nodefs: PathBuf,
    /// Holds imagefs: the image store.
    pub imagefs: PathBuf,
    pub pods_dir: PathBuf,
    pub logs_dir: PathBuf,
    pub runtime: Arc<dyn Runtime>,
    pub cgroups: Option<PodCgroups>,
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn key(text: &str, name: &str) -> Option<i64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next()?.trim_end_matches(':') == name).then(|| it.next()?.parse().ok())?
    })
}

/// Bytes allocated and inodes used below `dir` on its own filesystem.
pub fn dir_usage(dir: &Path) -> (i64, i64) {
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return (0, 0);
    };
    let dev = meta.dev();
    let (mut bytes, mut inodes) = (meta.blocks() as i64 * 512, 1);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.dev() != dev {
                continue;
            }
            bytes += m.blocks() as i64 * 512;
            inodes += 1;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    (bytes, inodes)
}

fn fs_observations(path: &Path) -> Option<(Observation, Observation)> {
    let s = rustix::fs::statvfs(path).ok()?;
    let bytes = Observation {
        available: (s.f_bavail * s.f_frsize) as i64,
        capacity: (s.f_blocks * s.f_frsize) as i64,
    };
    let inodes = Observation {
        available: s.f_favail as i64,
        capacity: s.f_files as i64,
    };
    Some((bytes, inodes))
}

impl HostObserver {
    /// memory.available: capacity minus the root cgroup's working set
    /// (usage less inactive file pages), as upstream computes it; the
    /// kernel's MemAvailable when the cgroup cannot be read.
    fn memory(&self) -> Option<Observation> {
        let meminfo = read(&self.proc_root.join("meminfo"));
        let capacity = key(&meminfo, "MemTotal")? * 1024;
        let usage = read(&self.memory_cgroup.join("memory.usage_in_bytes"))
            .trim()
            .parse::<i64>()
            .ok();
        let available = match usage {
            Some(u) if u > 0 => {
                let stat = read(&self.memory_cgroup.join("memory.stat"));
                let inactive = key(&stat, "total_inactive_file").unwrap_or(0);
                capacity - (u - inactive).max(0)
            }
            _ => key(&meminfo, "MemAvailable")? * 1024,
        };
        Some(Observation {
            available,
            capacity,
        })
    }

    /// pid.available: the smaller of pid_max and threads-max, less the
    /// tasks that exist now.
    fn pids(&self) -> Option<Observation> {
        let num = |p: &str| read(&self.proc_root.join(p)).trim().parse::<i64>().ok();
        let max = match (num("sys/kernel/pid_max"), num("sys/kernel/threads-max")) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        let loadavg = read(&self.proc_root.join("loadavg"));
        let tasks: i64 = loadavg
            .split_whitespace()
            .nth(3)?
            .split_once('/')?
            .1
            .parse()
            .ok()?;
        Some(Observation {
            available: max - tasks,
            capacity: max,
        })
    }
}

impl Observer for HostObserver {
    fn node(&self) -> NodeObservations {
        let mut out = HashMap::new();
        if let Some(m) = self.memory() {
            out.insert(Signal::MemoryAvailable, m);
        }
        if let Some((bytes, inodes)) = fs_observations(&self.nodefs) {
            out.insert(Signal::NodeFsAvailable, bytes);
            out.insert(Signal::NodeFsInodesFree, inodes);
        }
        if let Some((bytes, inodes)) = fs_observations(&self.imagefs) {
            out.insert(Signal::ImageFsAvailable, bytes);
            out.insert(Signal::ImageFsInodesFree, inodes);
        }
        if let Some(p) = self.pids() {
            out.insert(Signal::PidAvailable, p);
        }
        out
    }

    fn pod(&self, pod: &Pod, containers: &HashMap<String, Vec<String>>) -> PodUsage {
        let mut usage = PodUsage::default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let logs = self.logs_dir.join(crate::spec::pod_log_dir_name(pod));
        for (name, ids) in containers {
            // Every attempt's writable layer and logs still take disk.
            let mut disk = dir_usage(&logs.join(name)).0;
            for id in ids {
                if let Some(upper) = self.runtime.writable_layer(id) {
                    disk += dir_usage(&upper).0;
                }
            }
            usage.storage.containers.insert(name.clone(), disk);
            let Some(id) = ids.last() else { continue };
            let running = self
                .runtime
                .status(id)
                .is_ok_and(|s| s.state == ContainerState::Running);
            if running {
                if let Ok(st) = self.runtime.stats(id) {
                    usage
                        .memory
                        .insert(name.clone(), st.memory_working_set as i64);
                }
            }
        }
        let volumes = self
            .pods_dir
            .join(&uid)
            .join("volumes/kubernetes.io~empty-dir");
        for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            let disk = v
                .empty_dir
                .as_ref()
                .is_some_and(|e| e.medium.as_deref() != Some("Memory"));
            if disk {
                let used = dir_usage(&volumes.join(&v.name)).0;
                usage.storage.volumes.insert(v.name.clone(), used);
            }
        }
        if let Some(cm) = &self.cgroups {
            usage.processes = cm.pod_processes(&uid);
        }
        usage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn du_counts_blocks_and_inodes() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/f"), vec![1u8; 64 * 1024]).unwrap();
        let (bytes, inodes) = dir_usage(d.path());
        assert!(bytes >= 64 * 1024, "{bytes}");
        assert_eq!(inodes, 3);
        assert_eq!(dir_usage(&d.path().join("missing")), (0, 0));
    }

    #[test]
    fn flat_keys() {
        let meminfo = "MemTotal:  2048 kB\nMemAvailable: 1024 kB\n";
        assert_eq!(key(meminfo, "MemTotal"), Some(2048));
        assert_eq!(
            key("total_inactive_file 42\n", "total_inactive_file"),
            Some(42)
        );
        assert_eq!(key("x 1\n", "y"), None);
    }
}
