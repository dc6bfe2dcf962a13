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

use crate::worker::{self, Worker};
use crate::{Error, Shared};

struct Handle {
    tx: watch::Sender<Option<Arc<Pod>>>,
    task: JoinHandle<()>,
}

pub struct PodManager {
    shared: Arc<Shared>,
    workers: HashMap<String, Handle>,
}

impl PodManager {
    pub fn new(shared: Arc<Shared>) -> PodManager {
        PodManager {
            shared,
            workers: HashMap::new(),
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
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let pod = Arc::new(pod);
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

    /// Watches this node's pods until the process ends.
    pub async fn run(mut self) {
        let api: Api<Pod> = Api::all(self.shared.client.clone());
        let selector = format!("spec.nodeName={}", self.shared.config.node_name);
        let stream =
            watcher::watcher(api, watcher::Config::default().fields(&selector)).default_backoff();
        futures::pin_mut!(stream);
        let mut listing: Option<HashSet<String>> = None;
        let mut first_list = true;
        while let Some(ev) = stream.next().await {
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
                        .filter(|u| !seen.contains(*u))
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
            if !seen.contains(&uid) && !self.workers.contains_key(&uid) {
                tracing::info!(%uid, "cleaning up pod that is gone");
                tokio::spawn(worker::cleanup_orphan(self.shared.clone(), uid));
            }
        }
    }
}
