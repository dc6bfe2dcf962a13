//! Watches of pods, nodes and PriorityClasses, turned into events for the
//! scheduling loop.
//!
//! Upstream counterpart: the scheduler's informer event handlers
//! (`pkg/scheduler/eventhandlers.go`). Pods are parsed into [`PodInfo`]
//! here, on the watch tasks, so the scheduling loop never decodes a Pod;
//! PriorityClasses are only kept as a name -> value table that the pod
//! watch uses to resolve priorities the API server left unset. After a
//! watch restarts (a relist), `Resynced` carries the full set of names so
//! the loop can drop what disappeared meanwhile. Namespace and
//! PodDisruptionBudget changes only wake waiting pods
//! ([`ClusterEvent::NamespacesChanged`], [`ClusterEvent::BudgetsChanged`]);
//! their tables are kept by [`crate::watched`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::Api;
use tokio::sync::mpsc::UnboundedSender;

use crate::podinfo::PodInfo;

/// What the loop learns from the watches.
#[derive(Debug)]
pub enum ClusterEvent {
    Pod(Arc<PodInfo>),
    PodDeleted(Arc<PodInfo>),
    /// A relist finished: these pod uids exist.
    PodsResynced(HashSet<String>),
    Node(Box<Node>),
    NodeDeleted(String),
    /// A relist finished: these node names exist.
    NodesResynced(HashSet<String>),
    /// A namespace's labels changed, or a namespace came or went: pods
    /// rejected by an affinity term's namespaceSelector may fit now.
    NamespacesChanged,
    /// A PodDisruptionBudget changed what preemption weighs.
    BudgetsChanged,
    /// A PersistentVolumeClaim, PersistentVolume or StorageClass changed:
    /// pods VolumeBinding rejected may fit now.
    VolumesChanged,
}

/// The plugins a namespace change can help (upstream: InterPodAffinity is
/// the only plugin registering Namespace events).
pub const NAMESPACE_CHANGE_HELPS: &[&str] = &[crate::plugins::inter_pod_affinity::NAME];

/// PriorityClass values by name; "" holds the globalDefault, if any.
#[derive(Clone, Default)]
pub struct PriorityClasses(Arc<RwLock<HashMap<String, i32>>>);

impl PriorityClasses {
    pub fn get(&self, name: &str) -> Option<i32> {
        self.0
            .read()
            .expect("priority classes lock")
            .get(name)
            .copied()
    }

    fn apply(&self, pc: &PriorityClass) {
        let name = pc.metadata.name.clone().unwrap_or_default();
        let mut map = self.0.write().expect("priority classes lock");
        map.insert(name, pc.value);
        if pc.global_default == Some(true) {
            map.insert(String::new(), pc.value);
        }
    }

    fn delete(&self, pc: &PriorityClass) {
        let name = pc.metadata.name.clone().unwrap_or_default();
        let mut map = self.0.write().expect("priority classes lock");
        map.remove(&name);
        if pc.global_default == Some(true) {
            map.remove("");
        }
    }
}

/// Keep `classes` up to date; `listed` fires once the first list is in,
/// so pods are not parsed before their classes are known. Never returns.
pub async fn watch_priority_classes(
    client: kube::Client,
    classes: PriorityClasses,
    listed: tokio::sync::oneshot::Sender<()>,
) {
    let mut listed = Some(listed);
    let api: Api<PriorityClass> = Api::all(client);
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(Event::Apply(pc)) | Ok(Event::InitApply(pc)) => classes.apply(&pc),
            Ok(Event::Delete(pc)) => classes.delete(&pc),
            Ok(Event::InitDone) => {
                if let Some(tx) = listed.take() {
                    let _ = tx.send(());
                }
            }
            Ok(Event::Init) => {}
            Err(e) => tracing::warn!(error = %e, "priorityclass watch failed"),
        }
    }
}

/// Send pod events to `tx` until the loop goes away.
pub async fn watch_pods(
    client: kube::Client,
    classes: PriorityClasses,
    listers: crate::podinfo::Listers,
    tx: UnboundedSender<ClusterEvent>,
) {
    let api: Api<Pod> = Api::all(client);
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut listing: HashSet<String> = HashSet::new();
    let info = |p: &Pod| Arc::new(PodInfo::with_listers(p, |c| classes.get(c), &listers));
    while let Some(ev) = stream.next().await {
        let out = match ev {
            Ok(Event::Init) => {
                listing.clear();
                continue;
            }
            Ok(Event::InitApply(p)) => {
                let i = info(&p);
                listing.insert(i.uid.clone());
                ClusterEvent::Pod(i)
            }
            Ok(Event::InitDone) => ClusterEvent::PodsResynced(std::mem::take(&mut listing)),
            Ok(Event::Apply(p)) => ClusterEvent::Pod(info(&p)),
            Ok(Event::Delete(p)) => ClusterEvent::PodDeleted(info(&p)),
            Err(e) => {
                tracing::warn!(error = %e, "pod watch failed");
                continue;
            }
        };
        if tx.send(out).is_err() {
            return;
        }
    }
}

/// Send node events to `tx` until the loop goes away.
pub async fn watch_nodes(client: kube::Client, tx: UnboundedSender<ClusterEvent>) {
    let api: Api<Node> = Api::all(client);
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut listing: HashSet<String> = HashSet::new();
    while let Some(ev) = stream.next().await {
        let out = match ev {
            Ok(Event::Init) => {
                listing.clear();
                continue;
            }
            Ok(Event::InitApply(n)) => {
                listing.insert(n.metadata.name.clone().unwrap_or_default());
                ClusterEvent::Node(Box::new(n))
            }
            Ok(Event::InitDone) => ClusterEvent::NodesResynced(std::mem::take(&mut listing)),
            Ok(Event::Apply(n)) => ClusterEvent::Node(Box::new(n)),
            Ok(Event::Delete(n)) => ClusterEvent::NodeDeleted(n.metadata.name.unwrap_or_default()),
            Err(e) => {
                tracing::warn!(error = %e, "node watch failed");
                continue;
            }
        };
        if tx.send(out).is_err() {
            return;
        }
    }
}
