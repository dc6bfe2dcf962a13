//! The node's half of local-path volumes: the directories the
//! controller manager's local-path provisioner (rkube-controllers'
//! `localpath`) puts on this node are made here, and removed here when
//! their claim is gone, because only the node can touch its disk.
//!
//! Upstream counterpart: the helper pods rancher/local-path-provisioner
//! runs on the chosen node to `mkdir -m 0777` a volume's directory and to
//! `rm -rf` it before the provisioner deletes a Released volume whose
//! reclaim policy is Delete. Here the agent watches the volumes instead:
//! those with `pv.kubernetes.io/provisioned-by: rancher.io/local-path`
//! pinned (nodeAffinity on kubernetes.io/hostname) to a node it serves.
//!
//! - A volume in use gets its directory (mode 0777, so that pods running
//!   as any user can write, as local-path's do) if the kubelet's
//!   DirectoryOrCreate has not made it first.
//! - A Released volume with reclaim policy Delete has its directory
//!   removed, then the volume object is deleted (with its uid as a
//!   precondition: a new volume of the same name is not touched).
//! - Only a direct child of this node's base directory is ever made or
//!   removed; a volume naming any other path is refused with a
//!   `VolumeFailedDelete` event and left alone. Removal does not follow a
//!   symbolic link put in the directory's place.
//!
//! The agent publishes its base directory in its Node's
//! `rkube.io/local-storage-path` annotation (and puts it back should the
//! Node be registered anew), which is where the provisioner puts this
//! node's volumes. Simulated nodes keep nothing on disk ([`NoDisk`]):
//! their Released volumes are only deleted.

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, ObjectReference, PersistentVolume};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::events::{Kind, Recorder};

/// The provisioner whose volumes these are (k3s's `local-path` class's).
pub const PROVISIONER: &str = "rancher.io/local-path";
const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// Where this node's local-path volumes live, published on its Node.
pub const PATH_ANNOTATION: &str = "rkube.io/local-storage-path";
const HOSTNAME: &str = "kubernetes.io/hostname";

/// Errors of the local-path loop.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("creating {path}: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("removing {path}: {source}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("deleting volume {volume}: {source}")]
    Delete {
        volume: String,
        #[source]
        source: kube::Error,
    },
}

/// The disk side effects, so that tests and simulated nodes need none.
pub trait Disk: Send + Sync {
    /// Make the directory `dir` (its parent is the base directory).
    fn create(&self, dir: &Path) -> io::Result<()>;
    /// Remove the directory `dir` and everything in it; gone is fine.
    fn remove(&self, dir: &Path) -> io::Result<()>;
}

/// This machine's disk.
pub struct HostDisk;

impl Disk for HostDisk {
    fn create(&self, dir: &Path) -> io::Result<()> {
        if std::fs::symlink_metadata(dir).is_ok() {
            return Ok(());
        }
        if let Some(base) = dir.parent() {
            std::fs::create_dir_all(base)?;
        }
        match std::fs::create_dir(dir) {
            Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn remove(&self, dir: &Path) -> io::Result<()> {
        match std::fs::symlink_metadata(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
            Ok(m) if m.file_type().is_symlink() => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a symbolic link, not the volume's directory",
            )),
            // remove_dir_all removes links inside, never what they name.
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(dir),
            Ok(_) => std::fs::remove_file(dir),
        }
    }
}

/// No disk: simulated nodes.
pub struct NoDisk;

impl Disk for NoDisk {
    fn create(&self, _: &Path) -> io::Result<()> {
        Ok(())
    }

    fn remove(&self, _: &Path) -> io::Result<()> {
        Ok(())
    }
}

/// What the loop is told.
pub struct Config {
    /// The kubernetes.io/hostname values of the nodes this agent serves.
    pub nodes: HashSet<String>,
    /// The directory this node's volumes live in.
    pub base: PathBuf,
    pub disk: Arc<dyn Disk>,
    /// The Node to publish `base` on (None: publish nothing, e.g. for
    /// simulated nodes, whose volumes the provisioner places by default).
    pub publish: Option<String>,
}

/// What to do with one volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Nothing,
    /// In use: make sure its directory exists.
    Create(PathBuf),
    /// Released with policy Delete: remove the directory, then the volume.
    Reclaim(PathBuf),
    /// Released with policy Delete, but its path is not ours to remove.
    Refuse(String),
}

/// The node a volume is pinned to: its kubernetes.io/hostname value.
fn pinned_to(pv: &PersistentVolume) -> Option<&str> {
    let terms = &pv
        .spec
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_expressions.iter().flatten())
        .find(|r| r.key == HOSTNAME && r.operator == "In")
        .and_then(|r| r.values.as_ref()?.first())
        .map(String::as_str)
}

/// Whether `path` is a directory directly inside `base`, by its text
/// alone: absolute, no `.` or `..`, exactly `<base>/<name>`.
pub fn inside(base: &Path, path: &Path) -> bool {
    let plain = path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    plain
        && path
            .file_name()
            .is_some_and(|name| base.join(name).as_os_str() == path.as_os_str())
}

/// The step for one volume, for an agent serving `nodes` whose volumes
/// live in `base`.
pub fn plan(pv: &PersistentVolume, nodes: &HashSet<String>, base: &Path) -> Step {
    let ours = pv
        .annotations()
        .get(PROVISIONED_BY)
        .is_some_and(|p| p == PROVISIONER);
    if !ours || !pinned_to(pv).is_some_and(|n| nodes.contains(n)) {
        return Step::Nothing;
    }
    let spec = pv.spec.as_ref().expect("pinned volumes have a spec");
    let Some(path) = spec.host_path.as_ref().map(|h| PathBuf::from(&h.path)) else {
        return Step::Nothing;
    };
    let phase = pv.status.as_ref().and_then(|s| s.phase.as_deref());
    let policy = spec.persistent_volume_reclaim_policy.as_deref();
    if phase == Some("Released") && policy == Some("Delete") {
        if !inside(base, &path) {
            return Step::Refuse(format!(
                "refusing to remove {}: not a directory inside this node's local storage directory {}",
                path.display(),
                base.display()
            ));
        }
        return Step::Reclaim(path);
    }
    let in_use = pv.metadata.deletion_timestamp.is_none()
        && !matches!(phase, Some("Released") | Some("Failed"));
    if in_use && inside(base, &path) {
        Step::Create(path)
    } else {
        Step::Nothing
    }
}

struct Ctx {
    client: kube::Client,
    config: Config,
    recorder: Recorder,
    /// Volumes already told they were refused (by uid).
    refused: Mutex<HashSet<String>>,
}

fn volume_ref(pv: &PersistentVolume) -> ObjectReference {
    pv.object_ref(&())
}

async fn sync(pv: Arc<PersistentVolume>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let disk = ctx.config.disk.clone();
    match plan(&pv, &ctx.config.nodes, &ctx.config.base) {
        Step::Nothing => {}
        Step::Create(path) => {
            let p = path.clone();
            tokio::task::spawn_blocking(move || disk.create(&p))
                .await
                .unwrap_or_else(|e| Err(io::Error::other(e)))
                .map_err(|source| Error::Create { path, source })?;
        }
        Step::Refuse(why) => {
            let uid = pv.uid().unwrap_or_default();
            if ctx.refused.lock().expect("refused lock").insert(uid) {
                tracing::warn!(volume = %pv.name_any(), %why, "local-path volume not removed");
                let kind = Kind::Warning;
                ctx.recorder
                    .emit(volume_ref(&pv), kind, "VolumeFailedDelete", why);
            }
        }
        Step::Reclaim(path) => {
            let p = path.clone();
            let removed = tokio::task::spawn_blocking(move || disk.remove(&p))
                .await
                .unwrap_or_else(|e| Err(io::Error::other(e)));
            if let Err(source) = removed {
                let why = format!("removing {}: {source}", path.display());
                ctx.recorder
                    .emit(volume_ref(&pv), Kind::Warning, "VolumeFailedDelete", why);
                return Err(Error::Remove { path, source });
            }
            let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: pv.uid(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match api.delete(&pv.name_any(), &params).await {
                Ok(_) => {
                    tracing::info!(volume = %pv.name_any(), path = %path.display(), "local-path volume deleted")
                }
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(source) => {
                    return Err(Error::Delete {
                        volume: pv.name_any(),
                        source,
                    })
                }
            }
        }
    }
    Ok(Action::await_change())
}

/// How often the published directory is checked once it is there: a
/// Node deleted and registered again has lost it.
const REPUBLISH: Duration = Duration::from_secs(60);

/// Publish the base directory on the Node once it exists (the kubelet
/// registers it in the meantime), and again whenever it is missing.
async fn publish(client: kube::Client, node: String, base: &Path) {
    let api: Api<Node> = Api::all(client);
    let value = base.display().to_string();
    let patch = json!({"metadata": {"annotations": {PATH_ANNOTATION: &value}}});
    loop {
        let published = match api.get_opt(&node).await {
            Ok(Some(n)) if n.annotations().get(PATH_ANNOTATION) == Some(&value) => true,
            Ok(Some(_)) => match api
                .patch(&node, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => true,
                Err(e) => {
                    tracing::debug!(%node, error = %e, "local storage path not published");
                    false
                }
            },
            // Not registered yet, or the API is away.
            Ok(None) | Err(_) => false,
        };
        let again = if published {
            REPUBLISH
        } else {
            Duration::from_secs(1)
        };
        tokio::time::sleep(again).await;
    }
}

/// Run until the volumes' watch ends.
pub async fn run(client: kube::Client, config: Config) {
    let reporter = config
        .publish
        .clone()
        .unwrap_or_else(|| "local-path".into());
    if let Some(node) = config.publish.clone() {
        let (client, base) = (client.clone(), config.base.clone());
        tokio::spawn(async move { publish(client, node, &base).await });
    }
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), &reporter),
        client: client.clone(),
        config,
        refused: Mutex::new(HashSet::new()),
    });
    Controller::new(
        Api::<PersistentVolume>::all(client),
        watcher::Config::default(),
    )
    .run(
        sync,
        |pv, err, _| {
            tracing::warn!(volume = %pv.name_any(), error = %err, "local-path volume");
            Action::requeue(Duration::from_secs(5))
        },
        ctx,
    )
    .for_each(|_| async {})
    .await;
}

#[cfg(test)]
#[path = "localpath_tests.rs"]
mod tests;
