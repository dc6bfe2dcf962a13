//! Per-container cgroups on cgroupfs, v1 (one directory per controller
//! hierarchy) or v2 (one unified directory): creation with limits, the
//! `cgroup.procs` files a process joins, OOM-kill and usage counters, and
//! removal including the parent directories the runtime created.
//!
//! Upstream counterpart: runc's `libcontainer/cgroups/fs` and `fs2`
//! (systemd cgroup management is not used: PID 1 here is not systemd).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::config::Resources;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("create cgroup {path}: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("set {file}: {source}")]
    Set {
        file: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("remove cgroup {path}: {source}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// v1 hierarchies a container joins.
const V1_CONTROLLERS: &[&str] = &["cpu", "cpuacct", "memory", "pids"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    V1(PathBuf),
    V2(PathBuf),
}

impl Layout {
    /// v2 only when `root` itself is the unified hierarchy; a hybrid host
    /// (v2 mounted at `root/unified` without controllers) is v1.
    pub fn detect(root: &Path) -> Layout {
        if root.join("cgroup.controllers").exists() {
            Layout::V2(root.to_path_buf())
        } else {
            Layout::V1(root.to_path_buf())
        }
    }
}

/// One container's (or pod's) cgroup: `<parent>/<name>` in every
/// hierarchy.
#[derive(Debug, Clone)]
pub struct Cgroup {
    layout: Layout,
    parent: PathBuf,
    name: String,
    /// Whether `remove` also removes empty parents: only when the runtime
    /// made them; a parent the kubelet manages (a pod's cgroup) stays.
    prune_parents: bool,
}

impl Cgroup {
    pub fn new(layout: Layout, parent: &Path, name: &str) -> Cgroup {
        Cgroup {
            layout,
            // Relative below every hierarchy: `/kubepods` must not replace
            // the hierarchy's own path when joined.
            parent: parent.strip_prefix("/").unwrap_or(parent).to_path_buf(),
            name: name.to_string(),
            prune_parents: true,
        }
    }

    /// `remove` leaves the parent directories alone.
    pub fn keep_parents(mut self) -> Cgroup {
        self.prune_parents = false;
        self
    }

    /// The hierarchy roots this layout uses (one per v1 controller).
    pub fn hierarchy_dirs(layout: &Layout, rel: &Path) -> Vec<PathBuf> {
        let rel = rel.strip_prefix("/").unwrap_or(rel);
        match layout {
            Layout::V1(r) => V1_CONTROLLERS.iter().map(|c| r.join(c).join(rel)).collect(),
            Layout::V2(r) => vec![r.join(rel)],
        }
    }

    fn roots(&self) -> Vec<PathBuf> {
        match &self.layout {
            Layout::V1(r) => V1_CONTROLLERS.iter().map(|c| r.join(c)).collect(),
            Layout::V2(r) => vec![r.clone()],
        }
    }

    /// The container's directories, one per hierarchy.
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.roots()
            .into_iter()
            .map(|r| r.join(&self.parent).join(&self.name))
            .collect()
    }

    /// The files a process writes "0" to in order to join.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs()
            .into_iter()
            .map(|d| d.join("cgroup.procs"))
            .collect()
    }

    fn dir_with(&self, controller: &str) -> PathBuf {
        match &self.layout {
            Layout::V1(r) => r.join(controller).join(&self.parent).join(&self.name),
            Layout::V2(r) => r.join(&self.parent).join(&self.name),
        }
    }

    pub fn create(&self, res: &Resources) -> Result<(), Error> {
        for d in self.dirs() {
            fs::create_dir_all(&d).map_err(|source| Error::Create {
                path: d.clone(),
                source,
            })?;
        }
        if let Layout::V2(root) = &self.layout {
            // Controllers must be enabled on every ancestor.
            let mut p = root.clone();
            for part in self.parent.components() {
                let _ = fs::write(p.join("cgroup.subtree_control"), "+cpu +memory +pids");
                p = p.join(part);
            }
            let _ = fs::write(p.join("cgroup.subtree_control"), "+cpu +memory +pids");
        }
        let set = |controller: &str, file: &str, value: String| -> Result<(), Error> {
            let path = self.dir_with(controller).join(file);
            fs::write(&path, value).map_err(|source| Error::Set { file: path, source })
        };
        let v2 = matches!(self.layout, Layout::V2(_));
        if let Some(shares) = res.cpu_shares {
            if v2 {
                // The conversion runc and the kubelet use.
                let weight = 1 + (shares.clamp(2, 262144) - 2) * 9999 / 262142;
                set("cpu", "cpu.weight", weight.to_string())?;
            } else {
                set("cpu", "cpu.shares", shares.to_string())?;
            }
        }
        if res.cpu_quota.is_some() || res.cpu_period.is_some() {
            let period = res.cpu_period.unwrap_or(100_000);
            let quota = res.cpu_quota.filter(|q| *q > 0);
            if v2 {
                let q = quota.map_or("max".to_string(), |q| q.to_string());
                set("cpu", "cpu.max", format!("{q} {period}"))?;
            } else {
                set("cpu", "cpu.cfs_period_us", period.to_string())?;
                set("cpu", "cpu.cfs_quota_us", quota.unwrap_or(-1).to_string())?;
            }
        }
        if let Some(limit) = res.memory_limit.filter(|l| *l > 0) {
            if v2 {
                set("memory", "memory.max", limit.to_string())?;
                let _ = set("memory", "memory.swap.max", "0".into());
            } else {
                set("memory", "memory.limit_in_bytes", limit.to_string())?;
                // Only present with swap accounting; then swap is capped too.
                let memsw = self.dir_with("memory").join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    set("memory", "memory.memsw.limit_in_bytes", limit.to_string())?;
                }
            }
        }
        if let Some(pids) = res.pids_limit.filter(|p| *p > 0) {
            set("pids", "pids.max", pids.to_string())?;
        }
        Ok(())
    }

    /// SIGKILLs every process left in the cgroup.
    pub fn kill_all(&self) {
        for f in self.procs_files() {
            for pid in std::fs::read_to_string(f).unwrap_or_default().lines() {
                if let Ok(pid) = pid.trim().parse::<i32>() {
                    // SAFETY: kill takes integers; these pids are members
                    // of this container's cgroup.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
    }

    /// Whether the kernel OOM-killed a process in this cgroup.
    pub fn oom_killed(&self) -> bool {
        let (file, key) = match self.layout {
            Layout::V1(_) => ("memory.oom_control", "oom_kill"),
            Layout::V2(_) => ("memory.events", "oom_kill"),
        };
        read_key(&self.dir_with("memory").join(file), key).unwrap_or(0) > 0
    }

    /// (cpu ns, memory usage, working set).
    pub fn usage(&self) -> (u64, u64, u64) {
        match self.layout {
            Layout::V1(_) => {
                let cpu = read_u64(&self.dir_with("cpuacct").join("cpuacct.usage")).unwrap_or(0);
                let mem = self.dir_with("memory");
                let usage = read_u64(&mem.join("memory.usage_in_bytes")).unwrap_or(0);
                let inactive =
                    read_key(&mem.join("memory.stat"), "total_inactive_file").unwrap_or(0);
                (cpu, usage, usage.saturating_sub(inactive))
            }
            Layout::V2(_) => {
                let d = self.dir_with("cpu");
                let cpu = read_key(&d.join("cpu.stat"), "usage_usec").unwrap_or(0) * 1000;
                let usage = read_u64(&d.join("memory.current")).unwrap_or(0);
                let inactive = read_key(&d.join("memory.stat"), "inactive_file").unwrap_or(0);
                (cpu, usage, usage.saturating_sub(inactive))
            }
        }
    }

    /// Removes the container's directories (waiting briefly for exiting
    /// tasks to leave), then any now-empty parents up to the hierarchy
    /// root: those were created by the runtime.
    pub fn remove(&self) -> Result<(), Error> {
        for (root, d) in self.roots().into_iter().zip(self.dirs()) {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match fs::remove_dir(&d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e)
                        if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline =>
                    {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(source) => return Err(Error::Remove { path: d, source }),
                }
            }
            let mut p = d
                .parent()
                .filter(|_| self.prune_parents)
                .map(Path::to_path_buf);
            while let Some(dir) = p {
                if dir == root || !dir.starts_with(&root) || fs::remove_dir(&dir).is_err() {
                    break;
                }
                p = dir.parent().map(Path::to_path_buf);
            }
        }
        Ok(())
    }
}

fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A `key value` line's value from a flat-keyed cgroup file.
fn read_key(path: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_writes_limits_under_a_fake_root() {
        let root = tempfile::tempdir().unwrap();
        let cg = Cgroup::new(Layout::detect(root.path()), Path::new("rkube/test"), "c1");
        let res = Resources {
            cpu_shares: Some(512),
            cpu_quota: Some(50_000),
            cpu_period: None,
            memory_limit: Some(1 << 20),
            pids_limit: Some(10),
        };
        cg.create(&res).unwrap();
        let r = |p: &str| fs::read_to_string(root.path().join(p)).unwrap();
        assert_eq!(r("cpu/rkube/test/c1/cpu.shares"), "512");
        assert_eq!(r("cpu/rkube/test/c1/cpu.cfs_quota_us"), "50000");
        assert_eq!(r("cpu/rkube/test/c1/cpu.cfs_period_us"), "100000");
        assert_eq!(r("memory/rkube/test/c1/memory.limit_in_bytes"), "1048576");
        assert_eq!(r("pids/rkube/test/c1/pids.max"), "10");
        fs::write(
            root.path().join("memory/rkube/test/c1/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        assert!(cg.oom_killed());
    }

    #[test]
    fn removal_prunes_only_parents_the_runtime_made() {
        let root = tempfile::tempdir().unwrap();
        let layout = Layout::V1(root.path().to_path_buf());
        let own = Cgroup::new(layout.clone(), Path::new("/rk/a"), "c1");
        own.create(&Resources::default()).unwrap();
        own.remove().unwrap();
        assert!(!root.path().join("memory/rk").exists());
        let pod = Cgroup::new(layout, Path::new("/rk/kubepods/pod1"), "c2").keep_parents();
        pod.create(&Resources::default()).unwrap();
        assert!(root.path().join("pids/rk/kubepods/pod1/c2").is_dir());
        pod.remove().unwrap();
        assert!(!root.path().join("pids/rk/kubepods/pod1/c2").exists());
        assert!(root.path().join("pids/rk/kubepods/pod1").is_dir());
    }

    #[test]
    fn v2_converts_shares_to_weight() {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("cgroup.controllers"), "cpu memory pids").unwrap();
        let cg = Cgroup::new(Layout::detect(root.path()), Path::new("rkube"), "c1");
        let res = Resources {
            cpu_shares: Some(1024),
            cpu_quota: Some(20_000),
            ..Default::default()
        };
        cg.create(&res).unwrap();
        let r = |p: &str| fs::read_to_string(root.path().join(p)).unwrap();
        assert_eq!(r("rkube/c1/cpu.weight"), "39");
        assert_eq!(r("rkube/c1/cpu.max"), "20000 100000");
        assert_eq!(r("rkube/cgroup.subtree_control"), "+cpu +memory +pids");
    }
}
