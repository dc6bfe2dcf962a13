//! The collector's watches and its sweep loop.
//!
//! Upstream counterpart: `GraphBuilder` (`graph_builder.go`) and
//! `GarbageCollector.Run`. Watch events only mark the graph dirty; the loop
//! sweeps a dirty graph at most every [`SWEEP_INTERVAL`] (and, for large
//! graphs, only after a pause proportional to the last sweep's duration),
//! so a burst of events (a deleted ReplicaSet's pods) costs one sweep, not
//! one per event.
//! Everything runs inside the returned future — no spawned tasks — so
//! dropping it (lost leadership) stops every watch with it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{BoxStream, SelectAll};
use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::discovery::ApiResource;
use kube::runtime::reflector::{self, store::Writer, Store};
use kube::runtime::{watcher, WatchStreamExt};

use super::graph::{reconcile, Graph, Node};
use super::{execute, KubeGcApi};
use crate::discovery::{self, Discovered, Served};

/// Shortest time between two sweeps.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(100);
/// How often discovery is repeated to pick up new resources.
pub const RESYNC: Duration = Duration::from_secs(30);
/// A sweep rebuilds the whole graph, so with many objects it is not cheap
/// (tens of milliseconds at 10,000 pods); after one, the collector waits
/// this many times as long as it took, keeping it under a tenth of a core
/// during bursts of changes (a pod creation burst marks the graph dirty on
/// every event).
const SWEEP_DUTY: u32 = 9;
/// Delay before retrying after failed actions.
const RETRY: Duration = Duration::from_secs(1);
/// How long sweeps wait for new watches' initial lists. A graph missing a
/// whole resource would send a live read for every reference to it;
/// upstream likewise waits (bounded) for its caches to sync.
const SYNC_GRACE: Duration = Duration::from_secs(10);

type Meta = PartialObjectMeta<DynamicObject>;
/// A resource: (group, plural).
type Key = (String, String);

/// Resources the collector ignores, as upstream does: events are many,
/// short-lived and never own anything.
fn ignored(s: &Served) -> bool {
    s.ar.plural == "events" && (s.ar.group.is_empty() || s.ar.group == "events.k8s.io")
}

struct Watched {
    /// Shared by the graph's nodes.
    ar: Arc<ApiResource>,
    store: Store<Meta>,
}

fn nodes(w: &Watched) -> impl Iterator<Item = Node> + '_ {
    w.store.state().into_iter().filter_map(move |o| {
        let m = &o.metadata;
        Some(Node {
            uid: m.uid.clone()?,
            ar: w.ar.clone(),
            namespace: m.namespace.clone(),
            name: m.name.clone()?,
            resource_version: m.resource_version.clone(),
            owners: m.owner_references.clone().unwrap_or_default(),
            finalizers: m.finalizers.clone().unwrap_or_default(),
            deleting: m.deletion_timestamp.is_some(),
        })
    })
}

/// Keep only what [`nodes`] reads (and the store keys on). managedFields
/// were most of each cached entry (every field path a nested JSON map), and
/// labels and annotations are no owner logic's business; with 10,000 pods
/// each dropped field is megabytes.
fn trim(m: &mut Meta) {
    let meta = &mut m.metadata;
    meta.managed_fields = None;
    meta.labels = None;
    meta.annotations = None;
    meta.generate_name = None;
    meta.creation_timestamp = None;
    meta.deletion_grace_period_seconds = None;
    meta.generation = None;
    meta.self_link = None;
}

/// How long to wait after a sweep that took `took` before the next one.
fn pause_after(took: Duration) -> Duration {
    took.saturating_mul(SWEEP_DUTY)
}

/// Run the garbage collector until dropped.
pub async fn run(client: kube::Client) {
    let mut watched: BTreeMap<Key, Watched> = BTreeMap::new();
    // Each watch event, carrying the resource's key once its initial list
    // is complete.
    let mut events: SelectAll<BoxStream<'static, Option<Key>>> = SelectAll::new();
    let mut unsynced: BTreeSet<Key> = BTreeSet::new();
    let mut sync_deadline = tokio::time::Instant::now();
    let mut served = Discovered::default();
    let mut next_discovery = tokio::time::Instant::now();
    let mut dirty = false;
    let mut retry_at: Option<tokio::time::Instant> = None;
    let mut next_sweep = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if tokio::time::Instant::now() >= next_discovery {
            next_discovery = tokio::time::Instant::now() + RESYNC;
            match discovery::discover(&client).await {
                Ok(found) => {
                    for s in found.resources.iter() {
                        if ignored(s) || !discovery::is_list_watch(s) {
                            continue;
                        }
                        let key = (s.ar.group.clone(), s.ar.plural.clone());
                        if watched.contains_key(&key) {
                            continue;
                        }
                        let writer: Writer<Meta> = Writer::new(s.ar.clone());
                        let store = writer.as_reader();
                        // Metadata-only responses (kube asks for them for
                        // `Api<PartialObjectMeta>`), cut to what a graph
                        // node reads.
                        let api: Api<Meta> = Api::all_with(client.clone(), &s.ar);
                        let stream = reflector::reflector(
                            writer,
                            watcher(api, watcher::Config::default())
                                .default_backoff()
                                .modify(trim),
                        )
                        .map({
                            let key = key.clone();
                            move |ev| {
                                matches!(ev, Ok(watcher::Event::InitDone)).then(|| key.clone())
                            }
                        })
                        .boxed();
                        events.push(stream);
                        unsynced.insert(key.clone());
                        sync_deadline = tokio::time::Instant::now() + SYNC_GRACE;
                        watched.insert(
                            key,
                            Watched {
                                ar: Arc::new(s.ar.clone()),
                                store,
                            },
                        );
                    }
                    served = found;
                    dirty = true;
                }
                Err(e) => tracing::warn!(error = %e, "garbage collector discovery failed"),
            }
        }
        tokio::select! {
            Some(synced) = events.next() => {
                if let Some(key) = synced {
                    unsynced.remove(&key);
                }
                dirty = true;
            }
            _ = tick.tick() => {
                if retry_at.is_some_and(|t| tokio::time::Instant::now() >= t) {
                    retry_at = None;
                    dirty = true;
                }
                let synced = unsynced.is_empty() || tokio::time::Instant::now() >= sync_deadline;
                if dirty && synced && tokio::time::Instant::now() >= next_sweep {
                    dirty = false;
                    let started = std::time::Instant::now();
                    let graph = Graph::new(watched.values().flat_map(nodes));
                    let plan = reconcile(&graph);
                    drop(graph);
                    next_sweep = tokio::time::Instant::now() + pause_after(started.elapsed());
                    if !plan.is_empty() {
                        let api = KubeGcApi::new(client.clone(), served.clone());
                        if execute(&api, plan).await > 0 {
                            retry_at = Some(tokio::time::Instant::now() + RETRY);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
        ManagedFieldsEntry, ObjectMeta, OwnerReference, Time,
    };

    use super::*;

    #[test]
    fn sweeps_pause_in_proportion_to_their_cost() {
        assert_eq!(pause_after(Duration::ZERO), Duration::ZERO);
        assert_eq!(
            pause_after(Duration::from_millis(40)),
            Duration::from_millis(360)
        );
    }

    #[test]
    fn trim_keeps_what_graph_nodes_read() {
        let owner = OwnerReference {
            uid: "rs-1".into(),
            ..Default::default()
        };
        let mut m = Meta {
            types: None,
            metadata: ObjectMeta {
                name: Some("web-1".into()),
                namespace: Some("default".into()),
                uid: Some("pod-1".into()),
                resource_version: Some("9".into()),
                owner_references: Some(vec![owner.clone()]),
                finalizers: Some(vec!["foregroundDeletion".into()]),
                deletion_timestamp: Some(Time(Default::default())),
                labels: Some([("app".to_string(), "web".to_string())].into()),
                annotations: Some([("a".to_string(), "b".to_string())].into()),
                managed_fields: Some(vec![ManagedFieldsEntry::default()]),
                ..Default::default()
            },
            _phantom: Default::default(),
        };
        trim(&mut m);
        let t = &m.metadata;
        assert_eq!(t.labels, None);
        assert_eq!(t.annotations, None);
        assert_eq!(t.managed_fields, None);
        assert_eq!(t.name.as_deref(), Some("web-1"));
        assert_eq!(t.namespace.as_deref(), Some("default"));
        assert_eq!(t.uid.as_deref(), Some("pod-1"));
        assert_eq!(t.resource_version.as_deref(), Some("9"));
        assert_eq!(t.owner_references, Some(vec![owner]));
        assert_eq!(t.finalizers, Some(vec!["foregroundDeletion".to_string()]));
        assert!(t.deletion_timestamp.is_some());
    }
}
