//! Shared informers: one watch and one in-memory cache per kind for the
//! whole controller manager.
//!
//! Upstream counterpart: client-go's `SharedInformerFactory`. Upstream's
//! controller manager starts one informer per resource and hands it to
//! every controller that needs it; without that, ten controllers watching
//! pods would hold ten copies of every pod. Here [`Informers::store`] gives
//! the shared cache and [`Informers::shared_stream`] a stream of every
//! object that changes, ready to drive a kube-rs `Controller`:
//!
//! ```ignore
//! Controller::for_shared_stream(
//!     informers.shared_stream::<ReplicaSet>(),
//!     informers.store::<ReplicaSet>(),
//! )
//! .watches_shared_stream(informers.shared_stream::<Pod>(), |pod: Arc<Pod>| ...)
//! ```
//!
//! Subscribers are handed the cache's own `Arc`, never a copy: with
//! 10,000 pods and a dozen pod subscribers, per-subscriber deep copies were
//! a burst of short-lived allocations on every change that glibc's arenas
//! kept as resident memory. A change is queued as the object's key and
//! read from the cache when the subscriber gets to it, so a subscriber sees
//! the latest state (intermediate versions it was too slow for coalesce,
//! as in a controller's work queue); queuing the object itself kept every
//! superseded version alive until the slowest subscriber had read it — up
//! to [`BUFFER`] whole pods while 10,000 pods were being updated.
//!
//! kube-rs's own shared reflector does not pass deletions on to
//! subscribers, which controllers need (a deleted pod must make its
//! ReplicaSet create another), so the fan-out is written here: every added,
//! modified or deleted object (deleted ones in their last state) goes to
//! every subscriber; a relist that finds objects gone reports them too.
//!
//! Cached objects are kept without `metadata.managedFields`, as upstream's
//! controller manager strips them with an informer transform: no controller
//! reads them, and decoded they are the largest part of a typical pod
//! (every field path a nested JSON map), so with 10,000 pods they cost more
//! memory than the rest of the cache. Pods also lose the parts of their
//! containers only the kubelet reads (environment, command, probes, mounts:
//! [`slim_pod`]), which upstream keeps; a controller that needs them must
//! read the pod from the API server.

use std::any::{Any, TypeId};
use std::collections::{HashMap, VecDeque};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{store::Writer, ObjectRef, Store};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::broadcast;

/// How many changes a slow subscriber may fall behind before it is sent
/// the whole cache again instead.
const BUFFER: usize = 8192;

/// One change as queued for subscribers.
#[derive(Clone)]
enum Change<K: Kind> {
    /// Added or modified: the cache has its current state.
    Applied(ObjectRef<K>),
    /// Deleted, in its last state (the cache no longer has it).
    Deleted(Arc<K>),
}

/// A kind an informer can watch: any built-in API type.
pub trait Kind:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
}

impl<K> Kind for K where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
}

/// The informer of one kind: its cache and its change fan-out.
struct Shared<K: Kind> {
    store: Store<K>,
    changes: broadcast::Sender<Change<K>>,
}

/// The informers of one controller manager, created on first use.
pub struct Informers {
    client: kube::Client,
    kinds: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
}

impl Informers {
    pub fn new(client: kube::Client) -> Arc<Informers> {
        Arc::new(Informers {
            client,
            kinds: Mutex::new(HashMap::new()),
        })
    }

    /// The client the informers watch with, for controllers' writes.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The cluster-wide cache of `K`. Empty until the first list is done:
    /// await `store.wait_until_ready()` before trusting an absence.
    pub fn store<K: Kind>(&self) -> Store<K> {
        self.shared::<K>().store.clone()
    }

    /// Every `K` in the cache, then every `K` that is added, modified or
    /// deleted from now on: changed ones in the cache's state when the
    /// subscriber reads them, deleted ones in their last state. Every
    /// subscriber gets the `Arc` the cache holds, not a copy. A subscriber
    /// that falls too far behind is sent the whole cache again.
    pub fn shared_stream<K: Kind>(&self) -> impl Stream<Item = Arc<K>> + Send + 'static {
        subscribe(&self.shared::<K>())
    }

    fn shared<K: Kind>(&self) -> Arc<Shared<K>> {
        let mut kinds = self.kinds.lock().expect("informers lock");
        if let Some(existing) = kinds.get(&TypeId::of::<K>()) {
            return existing
                .clone()
                .downcast::<Shared<K>>()
                .expect("informer map holds its own kind");
        }
        let writer = Writer::<K>::default();
        let (changes, _) = broadcast::channel(BUFFER);
        let shared = Arc::new(Shared {
            store: writer.as_reader(),
            changes: changes.clone(),
        });
        kinds.insert(TypeId::of::<K>(), shared.clone());
        let api = Api::<K>::all(self.client.clone());
        tokio::spawn(feed(api, writer, changes));
        shared
    }
}

/// A subscriber's stream: see [`Informers::shared_stream`].
fn subscribe<K: Kind>(shared: &Shared<K>) -> impl Stream<Item = Arc<K>> + Send + 'static {
    // Subscribe before taking the snapshot so nothing falls between.
    let rx = shared.changes.subscribe();
    let pending: VecDeque<Arc<K>> = shared.store.state().into();
    let store = shared.store.clone();
    futures::stream::unfold(
        (rx, pending, store),
        |(mut rx, mut pending, store)| async move {
            loop {
                if let Some(obj) = pending.pop_front() {
                    return Some((obj, (rx, pending, store)));
                }
                match rx.recv().await {
                    Ok(Change::Applied(key)) => {
                        // Gone since: its deletion is queued behind.
                        if let Some(obj) = store.get(&key) {
                            return Some((obj, (rx, pending, store)));
                        }
                    }
                    Ok(Change::Deleted(obj)) => return Some((obj, (rx, pending, store))),
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        pending = store.state().into();
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        },
    )
}

/// Drop what no controller reads before an object is cached or sent on.
fn strip<K: Kind>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
    if let Some(pod) = (obj as &mut dyn Any).downcast_mut::<Pod>() {
        slim_pod(pod);
    }
}

/// A cached pod keeps what controllers read of its containers — names,
/// images, ports (named Service targetPorts), resources (quota) and
/// restartPolicy (sidecars) — and loses how the kubelet runs them:
/// environment, command, probes, lifecycle hooks, mounts; of its volumes it
/// keeps the claims. No controller
/// writes a cached pod back (they patch), so nothing is lost on the
/// server; with 10,000 pods these fields were most of the pod cache.
fn slim_pod(pod: &mut Pod) {
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    let containers = spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten());
    for c in containers {
        c.env = None;
        c.env_from = None;
        c.command = None;
        c.args = None;
        c.liveness_probe = None;
        c.readiness_probe = None;
        c.startup_probe = None;
        c.lifecycle = None;
        c.volume_mounts = None;
        c.volume_devices = None;
    }
    // Ephemeral (debug) containers hold no resources and no ports.
    spec.ephemeral_containers = None;
    // Controllers read a pod's volumes only for the claims it uses (PVC
    // protection, the PV binder): a claim or a generic ephemeral volume,
    // whose claim is named after the volume. The others (configMap,
    // secret, projected service-account tokens: nearly every pod has one)
    // are the kubelet's, and decoded each is over 3 KB however small,
    // every volume source being an inline field.
    if let Some(volumes) = spec.volumes.as_mut() {
        volumes.retain(|v| v.persistent_volume_claim.is_some() || v.ephemeral.is_some());
        volumes.shrink_to_fit();
    }
}

/// Keep one kind's cache current and tell subscribers what changed.
async fn feed<K: Kind>(api: Api<K>, mut writer: Writer<K>, changes: broadcast::Sender<Change<K>>) {
    let events = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(strip);
    futures::pin_mut!(events);
    // Objects cached before a relist began, to find the ones it dropped.
    let mut before: HashMap<ObjectRef<K>, Arc<K>> = HashMap::new();
    let cache = writer.as_reader();
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(err) => {
                tracing::warn!(kind = %K::kind(&()), %err, "informer watch failed; retrying");
                continue;
            }
        };
        writer.apply_watcher_event(&event);
        match event {
            Event::Apply(obj) => {
                let _ = changes.send(Change::Applied(ObjectRef::from_obj(&obj)));
            }
            Event::Delete(obj) => {
                let _ = changes.send(Change::Deleted(Arc::new(obj)));
            }
            Event::Init => {
                before = cache
                    .state()
                    .into_iter()
                    .map(|o| (ObjectRef::from_obj(&*o), o))
                    .collect();
            }
            Event::InitApply(_) => {}
            Event::InitDone => {
                let now = cache.state();
                for obj in &now {
                    let key = ObjectRef::from_obj(&**obj);
                    before.remove(&key);
                    let _ = changes.send(Change::Applied(key));
                }
                for (_, gone) in before.drain() {
                    let _ = changes.send(Change::Deleted(gone));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;

    use super::*;

    fn pod(name: &str, rv: &str) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some(name.into());
        pod.metadata.namespace = Some("default".into());
        pod.metadata.resource_version = Some(rv.into());
        pod
    }

    /// Feed `event` to the cache and its subscribers, as [`feed`] does.
    fn publish(writer: &mut Writer<Pod>, shared: &Shared<Pod>, event: Event<Pod>) {
        writer.apply_watcher_event(&event);
        let change = match event {
            Event::Apply(p) => Change::Applied(ObjectRef::from_obj(&p)),
            Event::Delete(p) => Change::Deleted(Arc::new(p)),
            _ => unreachable!("only changes are published here"),
        };
        let _ = shared.changes.send(change);
    }

    #[tokio::test]
    async fn subscribers_read_changes_in_the_caches_latest_state_and_deletions_in_their_last() {
        let mut writer = Writer::<Pod>::default();
        let shared = Shared {
            store: writer.as_reader(),
            changes: broadcast::channel(BUFFER).0,
        };
        publish(&mut writer, &shared, Event::Apply(pod("old", "1")));
        let stream = subscribe(&shared);
        futures::pin_mut!(stream);
        publish(&mut writer, &shared, Event::Apply(pod("web", "2")));
        publish(&mut writer, &shared, Event::Apply(pod("web", "3")));
        publish(&mut writer, &shared, Event::Apply(pod("gone", "4")));
        publish(&mut writer, &shared, Event::Delete(pod("gone", "5")));
        let mut seen = Vec::new();
        while let Some(Some(p)) = stream.next().now_or_never() {
            seen.push(format!(
                "{}@{}",
                p.metadata.name.as_deref().unwrap_or_default(),
                p.metadata.resource_version.as_deref().unwrap_or_default()
            ));
        }
        // The cache's content first; both changes of web in its latest
        // state (the first version is not kept alive for the subscriber);
        // the pod deleted before it was read only as its deletion.
        assert_eq!(seen, ["old@1", "web@3", "web@3", "gone@5"]);
    }

    #[test]
    fn strip_drops_managed_fields_only() {
        let mut pod = Pod::default();
        pod.metadata.name = Some("web".into());
        pod.metadata.resource_version = Some("7".into());
        pod.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
            manager: Some("kubectl".into()),
            ..Default::default()
        }]);
        strip(&mut pod);
        assert_eq!(pod.metadata.managed_fields, None);
        assert_eq!(pod.metadata.name.as_deref(), Some("web"));
        assert_eq!(pod.metadata.resource_version.as_deref(), Some("7"));
    }

    #[test]
    fn cached_pods_keep_what_controllers_read_of_containers() {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "annotations": {"a": "b"}},
            "spec": {
                "nodeName": "n1",
                "containers": [{
                    "name": "web", "image": "web:1",
                    "command": ["/srv"], "args": ["--port=80"],
                    "env": [{"name": "K", "value": "V"}],
                    "ports": [{"name": "http", "containerPort": 80}],
                    "resources": {"requests": {"cpu": "100m"}},
                    "readinessProbe": {"httpGet": {"path": "/", "port": 80}},
                    "volumeMounts": [{"name": "v", "mountPath": "/v"}],
                }],
                "initContainers": [{
                    "name": "sidecar", "restartPolicy": "Always",
                    "env": [{"name": "K", "value": "V"}],
                }],
                "volumes": [
                    {"name": "v", "emptyDir": {}},
                    {"name": "data", "persistentVolumeClaim": {"claimName": "data-0"}},
                    {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {
                        "spec": {"accessModes": ["ReadWriteOnce"]},
                    }}},
                    {"name": "token", "projected": {"sources": []}},
                ],
            },
            "status": {"phase": "Running", "podIP": "10.0.0.1"},
        }))
        .unwrap();
        strip(&mut pod);
        let spec = pod.spec.as_ref().unwrap();
        let c = &spec.containers[0];
        assert_eq!(
            (c.name.as_str(), c.image.as_deref()),
            ("web", Some("web:1"))
        );
        assert_eq!(c.ports.as_ref().unwrap()[0].container_port, 80);
        assert!(c.resources.as_ref().unwrap().requests.is_some());
        assert!(c.env.is_none() && c.command.is_none() && c.args.is_none());
        assert!(c.readiness_probe.is_none() && c.volume_mounts.is_none());
        let init = &spec.init_containers.as_ref().unwrap()[0];
        assert_eq!(init.restart_policy.as_deref(), Some("Always"));
        assert!(init.env.is_none());
        assert_eq!(spec.node_name.as_deref(), Some("n1"));
        let volumes: Vec<&str> = spec
            .volumes
            .iter()
            .flatten()
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(volumes, ["data", "scratch"]);
        assert_eq!(pod.status.unwrap().pod_ip.as_deref(), Some("10.0.0.1"));
        assert!(pod.metadata.annotations.is_some());
    }

    #[test]
    fn other_kinds_keep_their_pod_templates_whole() {
        let mut d: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web"},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [{
                    "name": "web", "env": [{"name": "K", "value": "V"}],
                }]}},
            },
        }))
        .unwrap();
        strip(&mut d);
        let template = d.spec.unwrap().template.spec.unwrap();
        assert!(template.containers[0].env.is_some());
    }
}
