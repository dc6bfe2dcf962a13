//! CNI mode (`--network-backend cni`): pods are attached by standard CNI
//! plugins instead of rkube's own bridge. ADD runs the configured chain
//! in order, each plugin getting the previous one's result; DEL runs it
//! in reverse with the cached result; CHECK verifies an attachment; the
//! plugins' VERSION answers are checked against the config's version
//! before a first ADD. Each attachment (container id, netns, config,
//! result) is cached under the agent's data dir, so a retried attach or
//! an agent restart re-adopts a pod without a second ADD, and a DEL gets
//! what the ADD got even if the config directory changed since.
//!
//! Upstream counterpart: libcni (`api.go`: `AddNetworkList`,
//! `DelNetworkList`, `CheckNetworkList`, the result cache under
//! /var/lib/cni/results) as the kubelet's dockershim and containerd's CRI
//! plugin drive it.

pub mod config;
pub mod exec;
mod result;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::Value;

pub use config::NetworkList;
pub use exec::{Exec, Invoke, Op, Request};
pub use result::ips_of;

use crate::{PodIps, PodNetwork, PodRef};

/// The interface the pod sees, as the kubelet names it.
pub const IFNAME: &str = "eth0";

/// Errors of CNI mode.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no CNI network config in {} (.conflist, .conf or .json)", .0.display())]
    NoConfig(PathBuf),
    #[error("CNI config {}: {reason}", path.display())]
    Config { path: PathBuf, reason: String },
    #[error("CNI plugin type {0:?} is not a file name")]
    BadType(String),
    #[error("CNI plugin {plugin:?} not found in {dirs}")]
    PluginNotFound { plugin: String, dirs: String },
    #[error("run CNI plugin {plugin:?}: {source}")]
    Spawn {
        plugin: String,
        #[source]
        source: std::io::Error,
    },
    #[error("plugin type={plugin:?} failed ({op}): code {code}: {msg}")]
    Plugin {
        plugin: String,
        op: &'static str,
        code: u32,
        msg: String,
    },
    #[error("plugin type={plugin:?} failed ({op}): {status}: {stderr}")]
    Failed {
        plugin: String,
        op: &'static str,
        status: String,
        stderr: String,
    },
    #[error(
        "plugin type={plugin:?} does not support CNI version {version} (it supports {supported})"
    )]
    Unsupported {
        plugin: String,
        version: String,
        supported: String,
    },
    #[error("plugin type={plugin:?} ({op}) printed no valid result: {reason}")]
    BadResult {
        plugin: String,
        op: &'static str,
        reason: String,
    },
    #[error("the CNI result of network {0:?} has no IP address for the pod")]
    NoAddress(String),
    #[error("cni cache {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where the CNI mode finds its plugins and configs (`--cni-bin-dir`,
/// `--cni-conf-dir`) and keeps its attachments.
#[derive(Debug, Clone)]
pub struct CniConfig {
    pub bin_dirs: Vec<PathBuf>,
    pub conf_dir: PathBuf,
    /// `<data-dir>/agent/cni`.
    pub cache_dir: PathBuf,
}

/// One pod's attachment as ADD left it (libcni's cached result).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Attachment {
    container_id: String,
    netns: String,
    ifname: String,
    args: String,
    network: Value,
    result: Value,
}

/// Pods attached by CNI plugins.
#[derive(Debug)]
pub struct CniNetwork {
    invoke: Arc<dyn Invoke>,
    conf_dir: PathBuf,
    cache_dir: PathBuf,
    /// (plugin, version) pairs whose VERSION answer was checked.
    versions_ok: Mutex<HashSet<(String, String)>>,
}

impl CniNetwork {
    pub fn new(invoke: Arc<dyn Invoke>, conf_dir: &Path, cache_dir: &Path) -> CniNetwork {
        CniNetwork {
            invoke,
            conf_dir: conf_dir.to_path_buf(),
            cache_dir: cache_dir.to_path_buf(),
            versions_ok: Mutex::new(HashSet::new()),
        }
    }

    /// The real plugins of `cfg.bin_dirs`.
    pub fn from_config(cfg: &CniConfig) -> CniNetwork {
        let exec = Arc::new(Exec {
            dirs: cfg.bin_dirs.clone(),
        });
        CniNetwork::new(exec, &cfg.conf_dir, &cfg.cache_dir)
    }

    /// The network pods would be attached to now (for start-up checks).
    pub fn network(&self) -> Result<NetworkList, Error> {
        config::load(&self.conf_dir)
    }

    fn cache_path(&self, uid: &str) -> PathBuf {
        self.cache_dir.join(format!("{uid}.json"))
    }

    fn cached(&self, uid: &str) -> Result<Option<Attachment>, Error> {
        let path = self.cache_path(uid);
        match std::fs::read(&path) {
            Ok(b) => match serde_json::from_slice(&b) {
                Ok(a) => Ok(Some(a)),
                Err(e) => {
                    // A torn write (crash mid-ADD): treat as not attached;
                    // the next ADD repairs, the plugins' stores are keyed
                    // by container id.
                    tracing::warn!(path = %path.display(), error = %e, "cni: bad cache entry");
                    Ok(None)
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Io { path, source }),
        }
    }

    fn store(&self, uid: &str, a: &Attachment) -> Result<(), Error> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        std::fs::create_dir_all(&self.cache_dir).map_err(io(&self.cache_dir))?;
        let path = self.cache_path(uid);
        let tmp = path.with_extension("tmp");
        let bytes = serde_json::to_vec(a).expect("an attachment serialises");
        std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))
    }

    /// Asks each plugin of `net` (once per plugin and version) whether it
    /// speaks the config's version.
    fn check_versions(&self, net: &NetworkList) -> Result<(), Error> {
        for i in 0..net.plugins.len() {
            let plugin = net.plugin_type(i).to_string();
            let key = (plugin.clone(), net.cni_version.clone());
            if self.versions_ok.lock().unwrap().contains(&key) {
                continue;
            }
            let stdin = serde_json::to_vec(&serde_json::json!({"cniVersion": net.cni_version}))
                .expect("serialises");
            let out = self.invoke.invoke(
                &plugin,
                &Request {
                    op: Op::Version,
                    container_id: "",
                    netns: "",
                    ifname: "",
                    args: "",
                    stdin: &stdin,
                },
            )?;
            let supported = result::supported_versions(&plugin, &out)?;
            if !supported.contains(&net.cni_version) {
                return Err(Error::Unsupported {
                    plugin,
                    version: net.cni_version.clone(),
                    supported: supported.join(", "),
                });
            }
            self.versions_ok.lock().unwrap().insert(key);
        }
        Ok(())
    }

    /// Runs `op` over the chain (ADD in order, feeding each result to the
    /// next; DEL in reverse; CHECK in order); returns the last result.
    fn run_chain(
        &self,
        net: &NetworkList,
        op: Op,
        container_id: &str,
        netns: &str,
        args: &str,
        prev: Option<&Value>,
    ) -> Result<Option<Value>, Error> {
        let order: Vec<usize> = match op {
            Op::Del => (0..net.plugins.len()).rev().collect(),
            _ => (0..net.plugins.len()).collect(),
        };
        // prevResult exists from spec 0.3.0 on for ADD chaining; DEL and
        // CHECK get the cached result from 0.4.0 on.
        let with_prev = match op {
            Op::Add => config::version_at_least(&net.cni_version, (0, 3, 0)),
            _ => config::version_at_least(&net.cni_version, (0, 4, 0)),
        };
        let mut prev: Option<Value> = prev.cloned();
        for i in order {
            let plugin = net.plugin_type(i);
            let stdin = net.plugin_config(i, prev.as_ref().filter(|_| with_prev));
            let out = self.invoke.invoke(
                plugin,
                &Request {
                    op,
                    container_id,
                    netns,
                    ifname: IFNAME,
                    args,
                    stdin: &stdin,
                },
            )?;
            if op == Op::Add {
                let v: Value = serde_json::from_slice(&out).map_err(|e| Error::BadResult {
                    plugin: plugin.to_string(),
                    op: op.as_str(),
                    reason: e.to_string(),
                })?;
                prev = Some(v);
            }
        }
        Ok(prev)
    }

    /// Brings the pod's `lo` up with the `loopback` plugin, as the
    /// kubelet's CNI plugin and containerd do beside the configured
    /// network. Best effort: a node without the plugin still networks.
    fn loopback_up(&self, container_id: &str, netns: &str, args: &str) {
        let conf = br#"{"cniVersion":"0.3.1","name":"cni-loopback","type":"loopback"}"#;
        let r = self.invoke.invoke(
            "loopback",
            &Request {
                op: Op::Add,
                container_id,
                netns,
                ifname: "lo",
                args,
                stdin: conf,
            },
        );
        if let Err(e) = r {
            tracing::warn!(error = %e, "cni: pod loopback not brought up");
        }
    }

    /// CHECK: whether the pod's attachment is still as ADD made it.
    /// Succeeds without calling plugins when the config predates CHECK
    /// (spec < 0.4.0) or disables it.
    pub fn check(&self, pod: &PodRef<'_>) -> Result<(), Error> {
        let Some(a) = self.cached(pod.uid)? else {
            return Ok(());
        };
        let net = cached_network(&a, &self.cache_path(pod.uid))?;
        if net.disable_check || !config::version_at_least(&net.cni_version, (0, 4, 0)) {
            return Ok(());
        }
        self.run_chain(
            &net,
            Op::Check,
            &a.container_id,
            &a.netns,
            &a.args,
            Some(&a.result),
        )?;
        tracing::info!(pod = %format!("{}/{}", pod.namespace, pod.name), uid = %pod.uid, network = %net.name, "cni: CHECK passed");
        Ok(())
    }
}

fn cached_network(a: &Attachment, path: &Path) -> Result<NetworkList, Error> {
    let bytes = serde_json::to_vec(&a.network).expect("serialises");
    NetworkList::parse(&bytes, true, path)
}

/// `CNI_ARGS` as the kubelet sets them (plugins ignore what they do not
/// know only with IgnoreUnknown).
fn cni_args(pod: &PodRef<'_>) -> String {
    format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
        pod.namespace, pod.name, pod.uid, pod.uid
    )
}

/// What the runtime reports while no network config is loadable (the
/// text containerd's CRI plugin gives the kubelet).
pub const NOT_INITIALIZED: &str = "cni plugin not initialized";

impl PodNetwork for CniNetwork {
    fn ready(&self) -> Result<(), String> {
        // Loaded afresh each time: operators drop a config in (or fix
        // one) while the agent runs, and the node turns Ready then.
        match config::load(&self.conf_dir) {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::debug!(error = %e, "cni: network not ready");
                Err(NOT_INITIALIZED.to_string())
            }
        }
    }

    fn check(&self, pod: &PodRef<'_>) -> Result<(), crate::Error> {
        CniNetwork::check(self, pod).map_err(Into::into)
    }

    fn attach(&self, pod: &PodRef<'_>, netns: &Path) -> Result<PodIps, crate::Error> {
        let netns_s = netns.to_string_lossy().into_owned();
        if let Some(a) = self.cached(pod.uid)? {
            if a.netns == netns_s {
                // A retry, or the agent restarted: the pod keeps what the
                // plugins gave it; a second ADD would allocate again.
                let net = cached_network(&a, &self.cache_path(pod.uid))?;
                return Ok(PodIps {
                    ips: ips_of(&a.result).ok_or(Error::NoAddress(net.name))?,
                });
            }
            // A new sandbox: release the old one's attachment first.
            self.detach(pod)?;
        }
        let net = config::load(&self.conf_dir)?;
        self.check_versions(&net)?;
        let args = cni_args(pod);
        self.loopback_up(pod.uid, &netns_s, &args);
        let added = self.run_chain(&net, Op::Add, pod.uid, &netns_s, &args, None);
        let result = match added {
            Ok(Some(r)) => r,
            Ok(None) => unreachable!("a network has at least one plugin"),
            Err(e) => {
                // Undo what the first plugins of the chain did (addresses
                // taken), as the kubelet tears a failed sandbox down.
                if let Err(d) = self.run_chain(&net, Op::Del, pod.uid, &netns_s, &args, None) {
                    tracing::warn!(error = %d, "cni: DEL after a failed ADD");
                }
                return Err(e.into());
            }
        };
        let Some(ips) = ips_of(&result) else {
            let _ = self.run_chain(&net, Op::Del, pod.uid, &netns_s, &args, Some(&result));
            return Err(Error::NoAddress(net.name).into());
        };
        self.store(
            pod.uid,
            &Attachment {
                container_id: pod.uid.to_string(),
                netns: netns_s,
                ifname: IFNAME.to_string(),
                args,
                network: net.to_json(),
                result,
            },
        )?;
        tracing::info!(pod = %format!("{}/{}", pod.namespace, pod.name), network = %net.name, ips = ?ips, "pod attached by CNI");
        Ok(PodIps { ips })
    }

    fn detach(&self, pod: &PodRef<'_>) -> Result<(), crate::Error> {
        let Some(a) = self.cached(pod.uid)? else {
            return Ok(());
        };
        let path = self.cache_path(pod.uid);
        let net = cached_network(&a, &path)?;
        // The spec lets DEL run without the namespace once it is gone;
        // plugins then release what they hold outside it (addresses).
        let netns = if Path::new(&a.netns).exists() {
            a.netns.as_str()
        } else {
            ""
        };
        self.run_chain(
            &net,
            Op::Del,
            &a.container_id,
            netns,
            &a.args,
            Some(&a.result),
        )?;
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::Io { path, source: e }.into())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
