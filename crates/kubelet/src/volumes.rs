//! Pod volumes on the node: emptyDir (disk or tmpfs), hostPath with its
//! type checks, configMap, secret, downwardAPI, projected (with
//! serviceAccountToken refreshed at 80% of its lifetime), and claims bound
//! to hostPath/local PVs; then each container's volumeMounts (subPath,
//! readOnly) as runtime bind mounts. With `fsGroup`, the kubelet's own
//! volumes (not hostPath or claims) get the group ([`crate::ownership`]).
//!
//! Upstream counterpart: the volume manager and the plugins under
//! `pkg/volume/` (emptydir, hostpath, configmap, secret, downwardapi,
//! projected, local), laid out as the kubelet lays them out under
//! `pods/<uid>/volumes/<plugin>/<name>`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, DownwardAPIVolumeFile, KeyToPath, Pod, Volume};
use rkube_containers::runtime::{Mount, Propagation};

use crate::atomic::{self, File};
use crate::env::{field_value, resource_value, NodeFacts};
use crate::lookup::{Lookup, TokenAsk};
use crate::ownership::{self, FsGroup};

const DEFAULT_MODE: i32 = 0o644;

/// A volume as containers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mounted {
    pub path: PathBuf,
    /// Plugins whose content the kubelet owns are always read-only.
    pub read_only: bool,
}

struct Token {
    token: String,
    issued: Instant,
    ttl: Duration,
}

/// Past this age a token is renewed whatever its lifetime.
const TOKEN_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

impl Token {
    /// The kubelet's token manager rule: renew once 80% of the lifetime
    /// has passed or the token is older than 24 hours. `now` is a
    /// parameter so the rule is tested without waiting.
    fn stale(&self, now: Instant) -> bool {
        let age = now.saturating_duration_since(self.issued);
        age >= self.ttl.mul_f64(0.8) || age > TOKEN_MAX_AGE
    }
}

/// Where token ages are read from (the real clock but in tests).
pub type Clock = std::sync::Arc<dyn Fn() -> Instant + Send + Sync>;

/// One pod's volumes.
pub struct PodVolumes {
    dir: PathBuf,
    clock: Clock,
    pub mounted: HashMap<String, Mounted>,
    tokens: HashMap<TokenAsk, Token>,
    /// Volumes whose fsGroup ownership is applied (once for emptyDir,
    /// again on every content change of the kubelet-written ones).
    owned: HashSet<String>,
}

impl PodVolumes {
    /// `pod_dir` is `<root>/pods/<uid>`.
    pub fn new(pod_dir: &Path) -> PodVolumes {
        Self::with_clock(pod_dir, std::sync::Arc::new(Instant::now))
    }

    /// [`PodVolumes::new`] reading token ages from `clock`.
    pub fn with_clock(pod_dir: &Path, clock: Clock) -> PodVolumes {
        PodVolumes {
            dir: pod_dir.join("volumes"),
            clock,
            mounted: HashMap::new(),
            tokens: HashMap::new(),
            owned: HashSet::new(),
        }
    }

    /// Sets up every volume, or refreshes the content of those the
    /// kubelet writes. Idempotent.
    pub async fn setup(
        &mut self,
        pod: &Pod,
        lookup: &dyn Lookup,
        node: &NodeFacts,
    ) -> Result<(), String> {
        let spec = pod.spec.as_ref().ok_or("pod has no spec")?;
        for v in spec.volumes.iter().flatten() {
            let m = self
                .volume(pod, v, lookup, node)
                .await
                .map_err(|e| format!("MountVolume.SetUp failed for volume \"{}\" : {e}", v.name))?;
            self.mounted.insert(v.name.clone(), m);
        }
        Ok(())
    }

    fn plugin_dir(&self, plugin: &str, name: &str) -> PathBuf {
        self.dir.join(plugin).join(name)
    }

    async fn volume(
        &mut self,
        pod: &Pod,
        v: &Volume,
        lookup: &dyn Lookup,
        node: &NodeFacts,
    ) -> Result<Mounted, String> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let io = |e: std::io::Error| e.to_string();
        let fs_group = FsGroup::of(pod);
        if let Some(e) = &v.empty_dir {
            let dir = self.plugin_dir("kubernetes.io~empty-dir", &v.name);
            let fresh = !self.owned.contains(&v.name);
            std::fs::create_dir_all(&dir).map_err(io)?;
            if fresh {
                // Only once: fsGroup's setgid bit must survive refreshes.
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
                    .map_err(io)?;
            }
            if e.medium.as_deref() == Some("Memory") && !is_mounted(&dir) {
                let limit = e
                    .size_limit
                    .as_ref()
                    .and_then(|q| crate::quantity::bytes(&q.0));
                mount_tmpfs(
                    &dir,
                    memory_medium_size(pod, limit, node.allocatable_memory),
                )?;
            }
            if fresh {
                if let Some(g) = fs_group {
                    ownership::apply(&dir, g, false).map_err(io)?;
                }
                self.owned.insert(v.name.clone());
            }
            return Ok(Mounted {
                path: dir,
                read_only: false,
            });
        }
        if let Some(h) = &v.host_path {
            check_host_path(Path::new(&h.path), h.type_.as_deref().unwrap_or(""))?;
            return Ok(Mounted {
                path: h.path.clone().into(),
                read_only: false,
            });
        }
        if let Some(c) = &v.persistent_volume_claim {
            let claim = lookup.claim_path(ns, &c.claim_name).await?;
            if claim.local_path && !claim.path.exists() {
                // Made here when the pod gets to it before the node's
                // local-path loop does.
                std::fs::create_dir_all(&claim.path).map_err(io)?;
                std::fs::set_permissions(&claim.path, std::fs::Permissions::from_mode(0o777))
                    .map_err(io)?;
            }
            if let Some(ty) = &claim.host_path_type {
                // A hostPath PV's type applies as in a pod's hostPath
                // volume: DirectoryOrCreate (local-path's volumes) makes
                // the directory on first use.
                check_host_path(&claim.path, ty)?;
            }
            return Ok(Mounted {
                path: claim.path,
                read_only: c.read_only == Some(true),
            });
        }
        let (plugin, payload) = if let Some(c) = &v.config_map {
            let mode = c.default_mode.unwrap_or(DEFAULT_MODE);
            let payload = match lookup.config_map(ns, &c.name).await? {
                Some(cm) => {
                    let mut data: BTreeMap<String, Vec<u8>> = cm
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.into_bytes()))
                        .collect();
                    data.extend(
                        cm.binary_data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.0)),
                    );
                    project(&data, c.items.as_deref(), mode, "configmap", &c.name)?
                }
                None if c.optional == Some(true) => BTreeMap::new(),
                None => return Err(format!("configmap \"{}\" not found", c.name)),
            };
            ("kubernetes.io~configmap", payload)
        } else if let Some(s) = &v.secret {
            let name = s.secret_name.clone().unwrap_or_default();
            let mode = s.default_mode.unwrap_or(DEFAULT_MODE);
            let payload = match lookup.secret(ns, &name).await? {
                Some(sec) => {
                    let data: BTreeMap<String, Vec<u8>> = sec
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect();
                    project(&data, s.items.as_deref(), mode, "secret", &name)?
                }
                None if s.optional == Some(true) => BTreeMap::new(),
                None => return Err(format!("secret \"{name}\" not found")),
            };
            ("kubernetes.io~secret", payload)
        } else if let Some(d) = &v.downward_api {
            let mode = d.default_mode.unwrap_or(DEFAULT_MODE);
            let payload = downward(pod, d.items.as_deref().unwrap_or_default(), mode, node)?;
            ("kubernetes.io~downward-api", payload)
        } else if let Some(p) = &v.projected {
            let mode = p.default_mode.unwrap_or(DEFAULT_MODE);
            let payload = self.projected(pod, p, mode, lookup, node).await?;
            ("kubernetes.io~projected", payload)
        } else {
            return Err("unsupported volume type".into());
        };
        let dir = self.plugin_dir(plugin, &v.name);
        let changed = atomic::write(&dir, &payload).map_err(io)?;
        if changed || !self.owned.contains(&v.name) {
            if let Some(g) = fs_group {
                ownership::apply(&dir, g, true).map_err(io)?;
            }
            self.owned.insert(v.name.clone());
        }
        Ok(Mounted {
            path: dir,
            read_only: true,
        })
    }

    async fn projected(
        &mut self,
        pod: &Pod,
        p: &k8s_openapi::api::core::v1::ProjectedVolumeSource,
        mode: i32,
        lookup: &dyn Lookup,
        node: &NodeFacts,
    ) -> Result<BTreeMap<String, File>, String> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let mut out = BTreeMap::new();
        for src in p.sources.iter().flatten() {
            if let Some(c) = &src.config_map {
                match lookup.config_map(ns, &c.name).await? {
                    Some(cm) => {
                        let data: BTreeMap<String, Vec<u8>> = cm
                            .data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.into_bytes()))
                            .collect();
                        out.extend(project(
                            &data,
                            c.items.as_deref(),
                            mode,
                            "configmap",
                            &c.name,
                        )?);
                    }
                    None if c.optional == Some(true) => {}
                    None => return Err(format!("configmap \"{}\" not found", c.name)),
                }
            }
            if let Some(s) = &src.secret {
                match lookup.secret(ns, &s.name).await? {
                    Some(sec) => {
                        let data: BTreeMap<String, Vec<u8>> = sec
                            .data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.0))
                            .collect();
                        out.extend(project(&data, s.items.as_deref(), mode, "secret", &s.name)?);
                    }
                    None if s.optional == Some(true) => {}
                    None => return Err(format!("secret \"{}\" not found", s.name)),
                }
            }
            if let Some(d) = &src.downward_api {
                out.extend(downward(
                    pod,
                    d.items.as_deref().unwrap_or_default(),
                    mode,
                    node,
                )?);
            }
            if let Some(t) = &src.service_account_token {
                let spec = pod.spec.as_ref().ok_or("pod has no spec")?;
                let ask = TokenAsk {
                    namespace: ns.to_string(),
                    service_account: spec
                        .service_account_name
                        .clone()
                        .unwrap_or_else(|| "default".into()),
                    audience: t.audience.clone().filter(|a| !a.is_empty()),
                    expiration_seconds: t.expiration_seconds.unwrap_or(3600),
                    pod_name: pod.metadata.name.clone().unwrap_or_default(),
                    pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
                };
                let token = self.token(&ask, lookup).await?;
                out.insert(
                    t.path.clone(),
                    File {
                        data: token.into_bytes(),
                        mode: (mode & 0o777) as u32,
                    },
                );
            }
        }
        Ok(out)
    }

    /// A cached token, renewed when [`Token::stale`] says so.
    async fn token(&mut self, ask: &TokenAsk, lookup: &dyn Lookup) -> Result<String, String> {
        if let Some(t) = self.tokens.get(ask) {
            if !t.stale((self.clock)()) {
                return Ok(t.token.clone());
            }
        }
        let (token, ttl) = lookup.token(ask).await?;
        self.tokens.insert(
            ask.clone(),
            Token {
                token: token.clone(),
                issued: (self.clock)(),
                ttl: Duration::from_secs(ttl as u64),
            },
        );
        Ok(token)
    }

    /// Whether any volume's content is kept up to date by the kubelet
    /// (so the worker refreshes it now and then).
    pub fn refreshable(pod: &Pod) -> bool {
        pod.spec.as_ref().is_some_and(|s| {
            s.volumes.iter().flatten().any(|v| {
                v.config_map.is_some()
                    || v.secret.is_some()
                    || v.downward_api.is_some()
                    || v.projected.is_some()
            })
        })
    }

    /// A container's volumeMounts as bind mounts; `env` is the
    /// container's resolved environment, which `subPathExpr` expands.
    pub fn mounts_for(
        &self,
        c: &Container,
        env: &[(String, String)],
    ) -> Result<Vec<Mount>, String> {
        let mut out = Vec::new();
        for vm in c.volume_mounts.iter().flatten() {
            let m = self
                .mounted
                .get(&vm.name)
                .ok_or_else(|| format!("volume \"{}\" is not set up", vm.name))?;
            let mut host = m.path.clone();
            let sub = match (&vm.sub_path, &vm.sub_path_expr) {
                (Some(p), _) if !p.is_empty() => p.clone(),
                (_, Some(e)) => crate::env::expand(e, env),
                _ => String::new(),
            };
            let sub = sub.as_str();
            if !sub.is_empty() {
                if !atomic::valid_path(sub) {
                    return Err(format!("invalid subPath {sub:?}"));
                }
                host = host.join(sub);
                // A missing subPath of a writable volume is created as a
                // directory, as upstream does.
                if !host.exists() && !m.read_only {
                    std::fs::create_dir_all(&host).map_err(|e| e.to_string())?;
                    let _ = std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o777));
                }
            }
            let propagation = match vm.mount_propagation.as_deref() {
                Some("HostToContainer") => Propagation::HostToContainer,
                Some("Bidirectional") => Propagation::Bidirectional,
                _ => Propagation::Private,
            };
            out.push(Mount {
                host_path: host,
                container_path: vm.mount_path.clone(),
                read_only: m.read_only || vm.read_only == Some(true),
                propagation,
            });
        }
        Ok(out)
    }

    /// Unmounts tmpfs volumes and removes the pod's volume directories.
    pub fn cleanup(pod_dir: &Path) {
        let dir = pod_dir.join("volumes/kubernetes.io~empty-dir");
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if is_mounted(&e.path()) {
                let _ = std::process::Command::new("umount")
                    .arg("-l")
                    .arg(e.path())
                    .status();
            }
        }
        let _ = std::fs::remove_dir_all(pod_dir.join("volumes"));
    }
}

/// Keys (or the listed items) of a configMap/secret as files.
fn project(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    mode: i32,
    kind: &str,
    name: &str,
) -> Result<BTreeMap<String, File>, String> {
    let mut out = BTreeMap::new();
    match items {
        None => {
            for (k, v) in data {
                out.insert(
                    k.clone(),
                    File {
                        data: v.clone(),
                        mode: (mode & 0o777) as u32,
                    },
                );
            }
        }
        Some(items) => {
            for it in items {
                let v = data.get(&it.key).ok_or_else(|| {
                    format!(
                        "configuration key {:?} not found in {kind} {name:?}",
                        it.key
                    )
                })?;
                out.insert(
                    it.path.clone(),
                    File {
                        data: v.clone(),
                        mode: (it.mode.unwrap_or(mode) & 0o777) as u32,
                    },
                );
            }
        }
    }
    Ok(out)
}

fn downward(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    mode: i32,
    node: &NodeFacts,
) -> Result<BTreeMap<String, File>, String> {
    let mut out = BTreeMap::new();
    for it in items {
        let value = if let Some(f) = &it.field_ref {
            field_value(pod, &f.field_path, node)?
        } else if let Some(r) = &it.resource_field_ref {
            let name = r.container_name.as_deref().unwrap_or("");
            let c = crate::env::all_containers(pod)
                .find(|c| c.name == name)
                .ok_or_else(|| format!("container {name:?} not found"))?;
            let divisor = r.divisor.as_ref().map(|d| d.0.as_str()).unwrap_or("1");
            resource_value(c, &r.resource, divisor, node)?
        } else {
            continue;
        };
        out.insert(
            it.path.clone(),
            File {
                data: value.into_bytes(),
                mode: (it.mode.unwrap_or(mode) & 0o777) as u32,
            },
        );
    }
    Ok(out)
}

/// hostPath's `type` checks.
fn check_host_path(path: &Path, ty: &str) -> Result<(), String> {
    let meta = std::fs::metadata(path);
    let fail = |what: &str| {
        Err(format!(
            "hostPath type check failed: {} is not a {what}",
            path.display()
        ))
    };
    match ty {
        "" => Ok(()),
        "DirectoryOrCreate" => {
            if meta.is_err() {
                std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
                    .map_err(|e| e.to_string())?;
                return Ok(());
            }
            if meta.map(|m| m.is_dir()).unwrap_or(false) {
                Ok(())
            } else {
                fail("directory")
            }
        }
        "FileOrCreate" => {
            if meta.is_err() {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
                }
                std::fs::write(path, b"").map_err(|e| e.to_string())?;
                return Ok(());
            }
            if meta.map(|m| m.is_file()).unwrap_or(false) {
                Ok(())
            } else {
                fail("file")
            }
        }
        "Directory" => match meta {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => fail("directory"),
            Err(_) => Err(format!(
                "hostPath type check failed: {} is not a directory",
                path.display()
            )),
        },
        "File" => match meta {
            Ok(m) if m.is_file() => Ok(()),
            _ => fail("file"),
        },
        "Socket" => match meta {
            Ok(m) if m.file_type().is_socket() => Ok(()),
            _ => fail("socket file"),
        },
        "CharDevice" => match meta {
            Ok(m) if m.file_type().is_char_device() => Ok(()),
            _ => fail("character device"),
        },
        "BlockDevice" => match meta {
            Ok(m) if m.file_type().is_block_device() => Ok(()),
            _ => fail("block device"),
        },
        other => Err(format!("unknown hostPath type {other:?}")),
    }
}

fn is_mounted(dir: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let target = dir.to_string_lossy();
    mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(&target))
}

/// The size of a `medium: Memory` emptyDir's tmpfs (upstream's
/// SizeMemoryBackedVolumes): the node's allocatable memory, lowered to the
/// pod cgroup's memory limit when it has one, lowered again to the
/// volume's sizeLimit when that is smaller. Without the cap a pod could
/// fill the tmpfs past its own limit only to be OOM-killed for pages it
/// cannot free.
pub fn memory_medium_size(pod: &Pod, size_limit: Option<i64>, allocatable: i64) -> i64 {
    let mut size = allocatable;
    let pod_limit = crate::cm::pod_resources(pod, None).memory_limit;
    for cap in [pod_limit, size_limit].into_iter().flatten() {
        if cap > 0 && cap <= size {
            size = cap;
        }
    }
    size.max(4096)
}

/// tmpfs for `medium: Memory`.
fn mount_tmpfs(dir: &Path, size: i64) -> Result<(), String> {
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o"])
        .arg(format!("size={size},mode=0777"))
        .arg("tmpfs")
        .arg(dir)
        .status()
        .map_err(|e| format!("mount tmpfs: {e}"))?;
    if !status.success() {
        return Err(format!("mount tmpfs on {}: {status}", dir.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    /// Hands out numbered tokens and records what was asked.
    #[derive(Default)]
    struct Tokens {
        asked: Mutex<Vec<TokenAsk>>,
    }

    #[async_trait::async_trait]
    impl Lookup for Tokens {
        async fn config_map(
            &self,
            _: &str,
            _: &str,
        ) -> Result<Option<k8s_openapi::api::core::v1::ConfigMap>, String> {
            Ok(None)
        }
        async fn secret(
            &self,
            _: &str,
            _: &str,
        ) -> Result<Option<k8s_openapi::api::core::v1::Secret>, String> {
            Ok(None)
        }
        fn services(&self, _: &str) -> Vec<Arc<k8s_openapi::api::core::v1::Service>> {
            Vec::new()
        }
        async fn token(&self, req: &TokenAsk) -> Result<(String, i64), String> {
            let mut asked = self.asked.lock().unwrap();
            asked.push(req.clone());
            Ok((format!("token-{}", asked.len()), req.expiration_seconds))
        }
        async fn claim_path(
            &self,
            _: &str,
            claim: &str,
        ) -> Result<crate::lookup::ClaimPath, String> {
            Err(format!("no claim {claim}"))
        }
    }

    #[tokio::test]
    async fn projected_tokens_are_refreshed_on_the_clock() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = Instant::now();
        let offset = Arc::new(AtomicU64::new(0));
        let at = offset.clone();
        let clock: Clock = Arc::new(move || t0 + Duration::from_secs(at.load(Ordering::SeqCst)));
        let mut volumes = PodVolumes::with_clock(dir.path(), clock);
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {
                "serviceAccountName": "builder",
                "containers": [],
                "volumes": [{"name": "t", "projected": {"sources": [
                    {"serviceAccountToken": {"audience": "vault", "expirationSeconds": 600,
                                             "path": "token"}}]}}],
            },
        }))
        .unwrap();
        let lookup = Tokens::default();
        let node = NodeFacts::default();
        let file = dir.path().join("volumes/kubernetes.io~projected/t/token");
        let at_secs = |s: u64| offset.store(s, Ordering::SeqCst);
        volumes.setup(&pod, &lookup, &node).await.unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "token-1");
        // The worker refreshes every few seconds: the same token until
        // 80% of 600 s has passed, then a new one in the file.
        at_secs(479);
        volumes.setup(&pod, &lookup, &node).await.unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "token-1");
        at_secs(480);
        volumes.setup(&pod, &lookup, &node).await.unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "token-2");
        let asked = lookup.asked.lock().unwrap();
        assert_eq!(asked.len(), 2);
        assert_eq!(asked[1].audience.as_deref(), Some("vault"));
        assert_eq!(asked[1].expiration_seconds, 600);
        assert_eq!(asked[1].service_account, "builder");
        assert_eq!(
            (asked[1].pod_name.as_str(), asked[1].pod_uid.as_str()),
            ("p", "u1")
        );
    }

    #[test]
    fn sub_path_expr_expands_the_container_env() {
        let dir = tempfile::tempdir().unwrap();
        let mut volumes = PodVolumes::new(dir.path());
        let shared = dir.path().join("shared");
        std::fs::create_dir_all(&shared).unwrap();
        volumes.mounted.insert(
            "work".into(),
            Mounted {
                path: shared.clone(),
                read_only: false,
            },
        );
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "c",
            "volumeMounts": [
                {"name": "work", "mountPath": "/logs", "subPathExpr": "$(POD_NAME)/logs"},
                {"name": "work", "mountPath": "/plain", "subPath": "$(POD_NAME)"},
            ],
        }))
        .unwrap();
        let env = [("POD_NAME".to_string(), "web-0".to_string())];
        let mounts = volumes.mounts_for(&c, &env).unwrap();
        assert_eq!(mounts[0].host_path, shared.join("web-0/logs"));
        assert!(shared.join("web-0/logs").is_dir());
        // subPath is taken literally, as upstream.
        assert_eq!(mounts[1].host_path, shared.join("$(POD_NAME)"));
        let up = [("POD_NAME".to_string(), "..".to_string())];
        let err = volumes.mounts_for(&c, &up).unwrap_err();
        assert!(err.contains("invalid subPath"), "{err}");
    }

    #[test]
    fn tokens_renew_at_80_percent_or_after_a_day() {
        let t0 = Instant::now();
        let token = |ttl: u64| Token {
            token: "t".into(),
            issued: t0,
            ttl: Duration::from_secs(ttl),
        };
        // expirationSeconds 600, the minimum: fresh until 480 s.
        let short = token(600);
        assert!(!short.stale(t0));
        assert!(!short.stale(t0 + Duration::from_secs(479)));
        assert!(short.stale(t0 + Duration::from_secs(480)));
        assert!(short.stale(t0 + Duration::from_secs(601)));
        // A week-long token is still renewed once it is a day old.
        let long = token(7 * 24 * 3600);
        assert!(!long.stale(t0 + Duration::from_secs(23 * 3600)));
        assert!(long.stale(t0 + Duration::from_secs(24 * 3600 + 1)));
    }

    #[test]
    fn host_path_types() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert!(check_host_path(d, "Directory").is_ok());
        assert!(check_host_path(&d.join("f"), "File").is_err());
        assert!(check_host_path(&d.join("f"), "FileOrCreate").is_ok());
        assert!(check_host_path(&d.join("f"), "File").is_ok());
        assert!(check_host_path(&d.join("f"), "Directory")
            .unwrap_err()
            .contains("is not a directory"));
        assert!(check_host_path(&d.join("n/m"), "DirectoryOrCreate").is_ok());
        assert!(d.join("n/m").is_dir());
        assert!(check_host_path(d, "Socket").is_err());
        assert!(check_host_path(d, "Bogus").is_err());
    }

    #[test]
    fn items_pick_keys_and_modes() {
        let data: BTreeMap<String, Vec<u8>> = [
            ("a".to_string(), b"1".to_vec()),
            ("b".to_string(), b"2".to_vec()),
        ]
        .into();
        let all = project(&data, None, 0o600, "configmap", "c").unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all["a"].mode, 0o600);
        let items = [KeyToPath {
            key: "b".into(),
            path: "dir/b.txt".into(),
            mode: Some(0o400),
        }];
        let some = project(&data, Some(&items), 0o644, "configmap", "c").unwrap();
        assert_eq!(some.keys().collect::<Vec<_>>(), ["dir/b.txt"]);
        assert_eq!(some["dir/b.txt"].mode, 0o400);
        let missing = [KeyToPath {
            key: "z".into(),
            path: "z".into(),
            mode: None,
        }];
        assert!(project(&data, Some(&missing), 0o644, "configmap", "c").is_err());
    }

    fn pod_with_memory_limits(limits: &[Option<&str>]) -> Pod {
        let containers: Vec<serde_json::Value> = limits
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let mut c = serde_json::json!({"name": format!("c{i}"), "image": "busybox"});
                if let Some(l) = l {
                    c["resources"] = serde_json::json!({"limits": {"memory": l}});
                }
                c
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": containers}
        }))
        .unwrap()
    }

    #[test]
    fn memory_medium_size_is_capped_by_pod_limit_then_size_limit() {
        const GI: i64 = 1 << 30;
        const MI: i64 = 1 << 20;
        let limited = pod_with_memory_limits(&[Some("64Mi"), Some("32Mi")]);
        let partly = pod_with_memory_limits(&[Some("64Mi"), None]);
        // No cap anywhere: the node's allocatable memory.
        assert_eq!(memory_medium_size(&partly, None, 8 * GI), 8 * GI);
        // Every container limited: the pod cgroup's limit, the sum.
        assert_eq!(memory_medium_size(&limited, None, 8 * GI), 96 * MI);
        // A smaller sizeLimit wins; a larger one does not raise the cap.
        assert_eq!(memory_medium_size(&limited, Some(10 * MI), 8 * GI), 10 * MI);
        assert_eq!(memory_medium_size(&limited, Some(GI), 8 * GI), 96 * MI);
        assert_eq!(memory_medium_size(&partly, Some(GI), 8 * GI), GI);
        // A sizeLimit over the node's memory is ignored, as upstream.
        assert_eq!(memory_medium_size(&partly, Some(16 * GI), 8 * GI), 8 * GI);
    }
}
