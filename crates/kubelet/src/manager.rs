//! The pods bound to this node, from one watch (fieldSelector
//! spec.nodeName=<node>), each handed to its own worker task; pods that
//! vanished while the agent was down are cleaned up after the first
//! complete list.
//!
//! Upstream counterpart: the kubelet's config source for the API server
//! (`pkg/kubelet/config/apiserver.go`), `syncLoopIteration`'s dispatch
//! and `HandlePodCleanups`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::static_pods;
use crate::worker::{self, Worker};
use crate::{Error, Shared};

/// How often the manifest directory is re-read (upstream's
/// fileCheckFrequency).
const STATIC_SCAN: std::time::Duration = std::time::Duration::from_secs(20);

struct Handle {
    tx: watch::Sender<Option<Arc<Pod>>>,
    task: JoinHandle<()>,
}

pub struct PodManager {
    shared: Arc<Shared>,
    workers: HashMap<String, Handle>,
    /// Uids of static pods (from files), which the API never lists.
    statics: HashMap<String, Arc<Pod>>,
}

impl PodManager {
    pub fn new(shared: Arc<Shared>) -> PodManager {
        PodManager {
            shared,
            workers: HashMap::new(),
            statics: HashMap::new(),
        }
    }

    /// Settles containers that died while no agent watched them.
    pub async fn start(self) -> Result<PodManager, Error> {
        let rt = self.shared.runtime.clone();
        let list = tokio::task::spawn_blocking(move || rt.recover())
            .await
            .expect("recover does not panic")
            .map_err(Error::Recover)?;
        tracing::info!(containers = list.len(), "runtime state recovered");
        Ok(self)
    }

    fn apply(&mut self, pod: Pod) {
        // Mirror pods only show static pods; the file is what runs.
        if static_pods::is_mirror(&pod) {
            return;
        }
        self.apply_arc(Arc::new(pod));
    }

    fn apply_arc(&mut self, pod: Arc<Pod>) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        if let Some(h) = self.workers.get(&uid) {
            if !h.task.is_finished() {
                h.tx.send_replace(Some(pod));
            }
            return;
        }
        let (tx, rx) = watch::channel(Some(pod));
        let worker = Worker::new(self.shared.clone(), uid.clone(), rx);
        let task = tokio::spawn(worker.run());
        self.workers.insert(uid, Handle { tx, task });
    }

    fn remove(&mut self, uid: &str) {
        if let Some(h) = self.workers.remove(uid) {
            // The worker tears the pod down on its own time.
            h.tx.send_replace(None);
        }
    }

    /// A fresh read of the manifest directory.
    fn statics(&mut self, found: HashMap<String, Pod>) {
        let gone: Vec<String> = self
            .statics
            .keys()
            .filter(|u| !found.contains_key(*u))
            .cloned()
            .collect();
        for uid in gone {
            if let Some(pod) = self.statics.remove(&uid) {
                self.remove(&uid);
                let client = self.shared.client.clone();
                tokio::spawn(async move {
                    let api: Api<Pod> = Api::namespaced(
                        client,
                        pod.metadata.namespace.as_deref().unwrap_or("default"),
                    );
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    let _ = api.delete(&name, &Default::default()).await;
                });
            }
        }
        for (uid, pod) in found {
            let pod = Arc::new(pod);
            if !self.statics.contains_key(&uid) {
                self.apply_arc(pod.clone());
                self.statics.insert(uid, pod.clone());
            }
            let (client, node) = (
                self.shared.client.clone(),
                self.shared.config.node_name.clone(),
            );
            tokio::spawn(async move {
                if let Err(e) = static_pods::ensure_mirror(&client, &pod, &node).await {
                    tracing::warn!(error = %e, "cannot create mirror pod");
                }
            });
        }
    }

    /// Watches this node's pods until the process ends.
    pub async fn run(mut self) {
        let (tx, mut static_rx) = tokio::sync::mpsc::channel(1);
        let (dir, node) = (
            self.shared.config.manifests_dir(),
            self.shared.config.node_name.clone(),
        );
        // The first read happens before the API's pods are listed, so the
        // orphan cleanup after that list knows the static pods.
        let (d, n) = (dir.clone(), node.clone());
        let first = tokio::task::spawn_blocking(move || static_pods::scan(&d, &n))
            .await
            .unwrap_or_default();
        self.statics(first);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(STATIC_SCAN).await;
                let (d, n) = (dir.clone(), node.clone());
                let found = tokio::task::spawn_blocking(move || static_pods::scan(&d, &n))
                    .await
                    .unwrap_or_default();
                if tx.send(found).await.is_err() {
                    return;
                }
            }
        });
        let api: Api<Pod> = Api::all(self.shared.client.clone());
        let selector = format!("spec.nodeName={}", self.shared.config.node_name);
        let stream =
            watcher::watcher(api, watcher::Config::default().fields(&selector)).default_backoff();
        futures::pin_mut!(stream);
        let mut listing: Option<HashSet<String>> = None;
        let mut first_list = true;
        loop {
            let ev = tokio::select! {
                found = static_rx.recv() => {
                    if let Some(found) = found {
                        self.statics(found);
                    }
                    continue;
                }
                ev = stream.next() => match ev {
                    Some(ev) => ev,
                    None => break,
                },
            };
            let ev = match ev {
                Ok(ev) => ev,
                Err(e) => {
                    tracing::warn!(error = %e, "pod watch");
                    continue;
                }
            };
            match ev {
                Event::Apply(pod) => self.apply(pod),
                Event::Delete(pod) => {
                    if let Some(uid) = pod.metadata.uid.as_deref() {
                        self.remove(uid);
                    }
                }
                Event::Init => listing = Some(HashSet::new()),
                Event::InitApply(pod) => {
                    if let (Some(seen), Some(uid)) = (listing.as_mut(), pod.metadata.uid.clone()) {
                        seen.insert(uid);
                    }
                    self.apply(pod);
                }
                Event::InitDone => {
                    let seen = listing.take().unwrap_or_default();
                    let gone: Vec<String> = self
                        .workers
                        .keys()
                        .filter(|u| !seen.contains(*u) && !self.statics.contains_key(*u))
                        .cloned()
                        .collect();
                    for uid in gone {
                        self.remove(&uid);
                    }
                    if first_list {
                        first_list = false;
                        self.orphans(&seen);
                    }
                }
            }
            self.workers.retain(|_, h| !h.task.is_finished());
        }
    }

    /// Pod directories of pods the API no longer has.
    fn orphans(&self, seen: &HashSet<String>) {
        let dir = self.shared.config.pods_dir();
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let uid = e.file_name().to_string_lossy().into_owned();
            if !seen.contains(&uid)
                && !self.workers.contains_key(&uid)
                && !self.statics.contains_key(&uid)
            {
                tracing::info!(%uid, "cleaning up pod that is gone");
                tokio::spawn(worker::cleanup_orphan(self.shared.clone(), uid));
            }
        }
        // Pod cgroups left without a pod directory (cleanup_orphan takes
        // the others).
        if let Some(cm) = self.shared.cgroups.clone() {
            let gone: Vec<String> = cm
                .pod_uids()
                .into_iter()
                .filter(|u| {
                    !seen.contains(u)
                        && !self.workers.contains_key(u)
                        && !self.statics.contains_key(u)
                        && !dir.join(u).exists()
                })
                .collect();
            tokio::task::spawn_blocking(move || {
                for uid in gone {
                    if let Err(e) = cm.remove_pod(&uid) {
                        tracing::warn!(%uid, error = %e, "cannot remove pod cgroup");
                    }
                }
            });
        }
    }
}
