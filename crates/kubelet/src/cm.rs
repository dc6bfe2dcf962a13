//! Pod-level cgroups: the `kubepods` hierarchy under the node's cgroup
//! root, one QoS level each for Burstable and BestEffort, and one
//! `pod<uid>` cgroup per pod (Guaranteed pods directly in `kubepods`)
//! holding the pod-wide limits; the runtime puts each container's cgroup
//! below its pod's. Cgroups of pods that are gone are removed.
//!
//! Upstream counterpart: `pkg/kubelet/cm` with the cgroupfs driver —
//! `node_container_manager_linux.go` (kubepods = node allocatable),
//! `qos_container_manager_linux.go` (burstable/besteffort shares),
//! `pod_container_manager_linux.go` (pod cgroups, orphan cleanup) and
//! `helpers_linux.go` (`ResourceConfigForPod`, shares and quota math).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};
use rkube_containers::runtime::cgroup::{self, Cgroup, Layout};
use rkube_containers::runtime::Resources;

use crate::quantity;
use crate::spec;

/// The smallest and largest cpu.shares the kernel takes (upstream's
/// MinShares/MaxShares).
const MIN_SHARES: u64 = 2;
const MAX_SHARES: u64 = 262_144;
/// CFS period the kubelet uses (100 ms) and the smallest quota.
const CFS_PERIOD: u64 = 100_000;
const MIN_QUOTA: i64 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("pod cgroup {name}: {source}")]
    Cgroup {
        name: String,
        #[source]
        source: cgroup::Error,
    },
    #[error("remove cgroup {path}: {source}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Where the pod hierarchy lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Mount point of the hierarchies (`/sys/fs/cgroup`).
    pub mount: PathBuf,
    /// The node's cgroup root inside each hierarchy (upstream's
    /// `--cgroup-root`, `/` by default); `kubepods` is made below it.
    pub root: PathBuf,
    /// pids.max of every pod cgroup (upstream's `podPidsLimit`).
    pub pod_pids_limit: Option<i64>,
}

/// The QoS levels' and pods' cgroups of one node.
#[derive(Debug, Clone)]
pub struct PodCgroups {
    layout: Layout,
    settings: Settings,
}

/// Shares from millicores, clamped as the kernel wants them.
pub fn milli_cpu_to_shares(milli: i64) -> u64 {
    if milli <= 0 {
        return MIN_SHARES;
    }
    ((milli as u64 * 1024) / 1000).clamp(MIN_SHARES, MAX_SHARES)
}

fn milli_cpu_to_quota(milli: i64) -> i64 {
    (milli * CFS_PERIOD as i64 / 1000).max(MIN_QUOTA)
}

fn amount(c: &Container, limits: bool, name: &str) -> Option<i64> {
    let r = c.resources.as_ref()?;
    let m = if limits { &r.limits } else { &r.requests };
    let q = m.as_ref()?.get(name)?;
    if name == "cpu" {
        quantity::milli_cpu(&q.0)
    } else {
        quantity::bytes(&q.0)
    }
}

/// A pod's total of one resource as the scheduler counts it: the app
/// containers and sidecars together, or the largest regular init
/// container if that is more (upstream's `PodRequests`/`PodLimits`).
/// A request defaults to the limit.
pub fn pod_total(pod: &Pod, limits: bool, name: &str) -> i64 {
    let Some(spec) = &pod.spec else { return 0 };
    let of = |c: &Container| {
        let v = amount(c, limits, name);
        if limits {
            v
        } else {
            v.or_else(|| amount(c, true, name))
        }
        .unwrap_or(0)
    };
    let inits = spec.init_containers.iter().flatten();
    let sidecars: i64 = inits
        .clone()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"))
        .map(of)
        .sum();
    let apps: i64 = spec.containers.iter().map(of).sum::<i64>() + sidecars;
    let init_max = inits
        .filter(|c| c.restart_policy.as_deref() != Some("Always"))
        .map(of)
        .max()
        .unwrap_or(0);
    apps.max(init_max)
}

/// Whether every container states a limit for `name`.
fn all_limited(pod: &Pod, name: &str) -> bool {
    let Some(spec) = &pod.spec else { return false };
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .all(|c| amount(c, true, name).is_some_and(|v| v > 0))
}

/// The pod cgroup's settings (upstream's `ResourceConfigForPod`):
/// shares from the requests; quota and memory limit only when every
/// container has that limit (else the pod is unbounded there);
/// BestEffort pods get the minimum shares and nothing else.
pub fn pod_resources(pod: &Pod, pids_limit: Option<i64>) -> Resources {
    let qos = spec::qos_class(pod);
    let mut r = Resources {
        cpu_shares: Some(MIN_SHARES),
        pids_limit: pids_limit.filter(|p| *p > 0),
        ..Default::default()
    };
    if qos == "BestEffort" {
        return r;
    }
    r.cpu_shares = Some(milli_cpu_to_shares(pod_total(pod, false, "cpu")));
    if qos == "Guaranteed" || all_limited(pod, "cpu") {
        r.cpu_quota = Some(milli_cpu_to_quota(pod_total(pod, true, "cpu")));
        r.cpu_period = Some(CFS_PERIOD);
    }
    if qos == "Guaranteed" || all_limited(pod, "memory") {
        r.memory_limit = Some(pod_total(pod, true, "memory"));
    }
    r
}

impl PodCgroups {
    pub fn new(settings: Settings) -> PodCgroups {
        PodCgroups {
            layout: Layout::detect(&settings.mount),
            settings,
        }
    }

    fn kubepods(&self) -> PathBuf {
        let root = &self.settings.root;
        root.strip_prefix("/").unwrap_or(root).join("kubepods")
    }

    /// The QoS level's cgroup a pod of this class lives in.
    fn qos_parent(&self, qos: &str) -> PathBuf {
        match qos {
            "Burstable" => self.kubepods().join("burstable"),
            "BestEffort" => self.kubepods().join("besteffort"),
            _ => self.kubepods(),
        }
    }

    /// The pod's cgroup, relative to each hierarchy (what the sandbox
    /// gets as its cgroup parent).
    pub fn pod_path(&self, pod: &Pod) -> PathBuf {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        self.qos_parent(spec::qos_class(pod))
            .join(format!("pod{uid}"))
    }

    /// `kubepods` sized to the node (cpu shares of all its cores, its
    /// memory, its pids), then the two QoS levels below it.
    pub fn ensure_top_level(&self, milli_cpu: i64, memory: i64, pids: i64) -> Result<(), Error> {
        let err = |name: &str| {
            let name = name.to_string();
            move |source| Error::Cgroup { name, source }
        };
        let top = self.kubepods();
        let (parent, name) = (top.parent().unwrap_or(Path::new("")), "kubepods");
        let res = Resources {
            cpu_shares: Some(milli_cpu_to_shares(milli_cpu)),
            memory_limit: Some(memory).filter(|m| *m > 0),
            pids_limit: Some(pids).filter(|p| *p > 0),
            ..Default::default()
        };
        Cgroup::new(self.layout.clone(), parent, name)
            .create(&res)
            .map_err(err(name))?;
        for qos in ["burstable", "besteffort"] {
            let res = Resources {
                cpu_shares: Some(MIN_SHARES),
                ..Default::default()
            };
            Cgroup::new(self.layout.clone(), &top, qos)
                .create(&res)
                .map_err(err(qos))?;
        }
        Ok(())
    }

    /// Burstable's shares follow the requests of the Burstable pods, so
    /// it competes with Guaranteed pods by what its pods asked for.
    pub fn update_burstable(&self, pods: &[&Pod]) -> Result<(), Error> {
        let milli: i64 = pods
            .iter()
            .filter(|p| spec::qos_class(p) == "Burstable")
            .map(|p| pod_total(p, false, "cpu"))
            .sum();
        let res = Resources {
            cpu_shares: Some(milli_cpu_to_shares(milli)),
            ..Default::default()
        };
        Cgroup::new(self.layout.clone(), &self.kubepods(), "burstable")
            .create(&res)
            .map_err(|source| Error::Cgroup {
                name: "burstable".into(),
                source,
            })
    }

    /// Makes (or updates) the pod's cgroup; returns its path for the
    /// sandbox.
    pub fn ensure_pod(&self, pod: &Pod) -> Result<PathBuf, Error> {
        let path = self.pod_path(pod);
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let parent = path.parent().unwrap_or(Path::new(""));
        let res = pod_resources(pod, self.settings.pod_pids_limit);
        Cgroup::new(self.layout.clone(), parent, &name)
            .create(&res)
            .map_err(|source| Error::Cgroup {
                name: name.to_string(),
                source,
            })?;
        Ok(path)
    }

    /// The pod's cgroup directories, one per hierarchy, at whatever QoS
    /// level it is.
    pub fn pod_dirs(&self, uid: &str) -> Vec<PathBuf> {
        let name = format!("pod{uid}");
        ["Guaranteed", "Burstable", "BestEffort"]
            .iter()
            .flat_map(|q| Cgroup::hierarchy_dirs(&self.layout, &self.qos_parent(q).join(&name)))
            .filter(|d| d.is_dir())
            .collect()
    }

    /// Uids of the pods that have a cgroup here.
    pub fn pod_uids(&self) -> Vec<String> {
        let mut out = Vec::new();
        for q in ["Guaranteed", "Burstable", "BestEffort"] {
            let Some(dir) = Cgroup::hierarchy_dirs(&self.layout, &self.qos_parent(q))
                .into_iter()
                .next()
            else {
                continue;
            };
            for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(uid) = name.strip_prefix("pod") {
                    if e.path().is_dir() && !out.iter().any(|u| u == uid) {
                        out.push(uid.to_string());
                    }
                }
            }
        }
        out
    }

    /// Tasks in the pod's cgroup (its pids.current).
    pub fn pod_processes(&self, uid: &str) -> i64 {
        self.pod_dirs(uid)
            .iter()
            .find_map(|d| {
                fs::read_to_string(d.join("pids.current"))
                    .ok()?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    }

    /// Kills whatever still runs in the pod's cgroup and removes it with
    /// every cgroup below it (upstream kills before it removes, too).
    pub fn remove_pod(&self, uid: &str) -> Result<(), Error> {
        for dir in self.pod_dirs(uid) {
            remove_tree(&dir)?;
        }
        Ok(())
    }
}

/// Depth first: children, then the directory; tasks still exiting keep
/// a cgroup busy for a moment.
fn remove_tree(dir: &Path) -> Result<(), Error> {
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&e.path())?;
        } else {
            // Only a plain directory standing in for a hierarchy (tests)
            // has files to remove; cgroupfs refuses, and needs none gone.
            let _ = fs::remove_file(e.path());
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        for pid in fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse::<i32>().ok())
        {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(16) && Instant::now() < deadline => {
                // EBUSY: tasks are still leaving.
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(source) => {
                return Err(Error::Remove {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(uid: &str, containers: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "uid": uid},
            "spec": {"containers": containers}
        }))
        .unwrap()
    }

    fn c(requests: serde_json::Value, limits: serde_json::Value) -> serde_json::Value {
        json!({"name": "c", "resources": {"requests": requests, "limits": limits}})
    }

    #[test]
    fn pod_resources_follow_qos() {
        let g = pod(
            "g",
            json!([
                c(json!({}), json!({"cpu": "500m", "memory": "64Mi"})),
                c(json!({}), json!({"cpu": "250m", "memory": "32Mi"}))
            ]),
        );
        let r = pod_resources(&g, Some(100));
        assert_eq!(r.cpu_shares, Some(768));
        assert_eq!(r.cpu_quota, Some(75_000));
        assert_eq!(r.cpu_period, Some(100_000));
        assert_eq!(r.memory_limit, Some(96 << 20));
        assert_eq!(r.pids_limit, Some(100));
        // One container without a memory limit: no pod memory limit.
        let b = pod(
            "b",
            json!([
                c(
                    json!({"cpu": "100m"}),
                    json!({"cpu": "200m", "memory": "64Mi"})
                ),
                c(json!({"cpu": "100m"}), json!({"cpu": "100m"}))
            ]),
        );
        let r = pod_resources(&b, None);
        assert_eq!(r.cpu_shares, Some(204));
        assert_eq!(r.cpu_quota, Some(30_000));
        assert_eq!(r.memory_limit, None);
        assert_eq!(r.pids_limit, None);
        let be = pod("e", json!([{"name": "c"}]));
        assert_eq!(
            pod_resources(&be, None),
            Resources {
                cpu_shares: Some(2),
                ..Default::default()
            }
        );
    }

    #[test]
    fn hierarchy_on_a_fake_root() {
        let mount = tempfile::tempdir().unwrap();
        let cm = PodCgroups::new(Settings {
            mount: mount.path().to_path_buf(),
            root: PathBuf::from("/node1"),
            pod_pids_limit: None,
        });
        cm.ensure_top_level(2000, 1 << 30, 4096).unwrap();
        let r = |p: &str| fs::read_to_string(mount.path().join(p)).unwrap();
        assert_eq!(r("cpu/node1/kubepods/cpu.shares"), "2048");
        assert_eq!(
            r("memory/node1/kubepods/memory.limit_in_bytes"),
            "1073741824"
        );
        assert_eq!(r("pids/node1/kubepods/pids.max"), "4096");
        assert_eq!(r("cpu/node1/kubepods/besteffort/cpu.shares"), "2");
        let g = pod(
            "u1",
            json!([c(json!({}), json!({"cpu": "1", "memory": "8Mi"}))]),
        );
        let b = pod("u2", json!([c(json!({"cpu": "300m"}), json!({}))]));
        let e = pod("u3", json!([{"name": "c"}]));
        assert_eq!(
            cm.ensure_pod(&g).unwrap(),
            Path::new("node1/kubepods/podu1")
        );
        assert_eq!(
            cm.ensure_pod(&b).unwrap(),
            Path::new("node1/kubepods/burstable/podu2")
        );
        cm.ensure_pod(&e).unwrap();
        assert_eq!(
            r("memory/node1/kubepods/podu1/memory.limit_in_bytes"),
            "8388608"
        );
        assert_eq!(r("cpu/node1/kubepods/burstable/podu2/cpu.shares"), "307");
        cm.update_burstable(&[&g, &b, &e]).unwrap();
        assert_eq!(r("cpu/node1/kubepods/burstable/cpu.shares"), "307");
        let mut uids = cm.pod_uids();
        uids.sort();
        assert_eq!(uids, ["u1", "u2", "u3"]);
        // A container cgroup left below the pod goes with it.
        fs::create_dir_all(
            mount
                .path()
                .join("memory/node1/kubepods/besteffort/podu3/c1"),
        )
        .unwrap();
        cm.remove_pod("u3").unwrap();
        assert!(!mount
            .path()
            .join("memory/node1/kubepods/besteffort/podu3")
            .exists());
        assert!(mount
            .path()
            .join("memory/node1/kubepods/besteffort")
            .is_dir());
        assert_eq!(cm.pod_uids().len(), 2);
    }
}
