//! The collector's watches and its sweep loop.
//!
//! Upstream counterpart: `GraphBuilder` (`graph_builder.go`) and
//! `GarbageCollector.Run`. Watch events update one [`Graph`] in place and
//! mark the objects whose decision they may change (the object, its owners,
//! its dependents), as upstream's graph builder queues them; the loop
//! decides about the marked objects at most every [`SWEEP_INTERVAL`], so a
//! burst of events costs one pass over what it touched, not a rebuild of
//! the graph per burst. A whole-graph sweep runs after each discovery
//! (every [`RESYNC`], upstream's resync) and after failed actions, and is
//! followed by a pause proportional to its duration.
//! Everything runs inside the returned future — no spawned tasks — so
//! dropping it (lost leadership) stops every watch with it.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{BoxStream, SelectAll};
use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::discovery::ApiResource;
use kube::runtime::{watcher, WatchStreamExt};

use super::graph::{reconcile, reconcile_some, Graph, Node};
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

/// One change to the graph, from one resource's watch.
enum Change {
    Upsert(Node),
    Remove(String),
    /// The resource's (re)list is complete: its objects are exactly these.
    Listed(Key, Vec<Node>),
}

/// The graph's view of one object.
fn node(ar: &Arc<ApiResource>, o: &Meta) -> Option<Node> {
    let m = &o.metadata;
    Some(Node {
        uid: m.uid.clone()?,
        ar: ar.clone(),
        namespace: m.namespace.clone(),
        name: m.name.clone()?,
        resource_version: m.resource_version.clone(),
        owners: m.owner_references.clone().unwrap_or_default(),
        finalizers: m.finalizers.clone().unwrap_or_default(),
        deleting: m.deletion_timestamp.is_some(),
    })
}

/// The changes of one resource's watch; a (re)list is gathered until it
/// completes, as a reflector's store would.
fn changes(api: Api<Meta>, key: Key, ar: Arc<ApiResource>) -> BoxStream<'static, Change> {
    let mut listing: Vec<Node> = Vec::new();
    watcher(api, watcher::Config::default())
        .default_backoff()
        .filter_map(move |ev| {
            let change = match ev {
                Ok(watcher::Event::Apply(o)) => node(&ar, &o).map(Change::Upsert),
                Ok(watcher::Event::Delete(o)) => o.metadata.uid.clone().map(Change::Remove),
                Ok(watcher::Event::Init) => {
                    listing.clear();
                    None
                }
                Ok(watcher::Event::InitApply(o)) => {
                    listing.extend(node(&ar, &o));
                    None
                }
                Ok(watcher::Event::InitDone) => {
                    Some(Change::Listed(key.clone(), std::mem::take(&mut listing)))
                }
                Err(_) => None,
            };
            futures::future::ready(change)
        })
        .boxed()
}

/// How long to wait after a sweep that took `took` before the next one.
fn pause_after(took: Duration) -> Duration {
    took.saturating_mul(SWEEP_DUTY)
}

/// Run the garbage collector until dropped.
pub async fn run(client: kube::Client) {
    let mut graph = Graph::default();
    let mut watched: BTreeSet<Key> = BTreeSet::new();
    let mut events: SelectAll<BoxStream<'static, Change>> = SelectAll::new();
    let mut unsynced: BTreeSet<Key> = BTreeSet::new();
    let mut sync_deadline = tokio::time::Instant::now();
    let mut served = Discovered::default();
    let mut next_discovery = tokio::time::Instant::now();
    // What the next pass looks at: everything, or the touched objects.
    let mut full = false;
    let mut touched: HashSet<String> = HashSet::new();
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
                        if !watched.insert(key.clone()) {
                            continue;
                        }
                        // Metadata-only responses (kube asks for them for
                        // `Api<PartialObjectMeta>`).
                        let api: Api<Meta> = Api::all_with(client.clone(), &s.ar);
                        events.push(changes(api, key.clone(), Arc::new(s.ar.clone())));
                        unsynced.insert(key);
                        sync_deadline = tokio::time::Instant::now() + SYNC_GRACE;
                    }
                    served = found;
                    full = true;
                }
                Err(e) => tracing::warn!(error = %e, "garbage collector discovery failed"),
            }
        }
        tokio::select! {
            Some(change) = events.next() => match change {
                Change::Upsert(n) => touched.extend(graph.upsert(n)),
                Change::Remove(uid) => touched.extend(graph.remove(&uid)),
                Change::Listed(key, nodes) => {
                    // Objects deleted while the watch was down get no
                    // event: drop what the list no longer has.
                    let listed: HashSet<&str> = nodes.iter().map(|n| n.uid.as_str()).collect();
                    for uid in graph.uids_of(&key.0, &key.1) {
                        if !listed.contains(uid.as_str()) {
                            graph.remove(&uid);
                        }
                    }
                    for n in nodes {
                        graph.upsert(n);
                    }
                    unsynced.remove(&key);
                    full = true;
                }
            },
            _ = tick.tick() => {
                if retry_at.is_some_and(|t| tokio::time::Instant::now() >= t) {
                    retry_at = None;
                    full = true;
                }
                let synced = unsynced.is_empty() || tokio::time::Instant::now() >= sync_deadline;
                let due = full || !touched.is_empty();
                if due && synced && tokio::time::Instant::now() >= next_sweep {
                    let started = std::time::Instant::now();
                    let plan = if full {
                        reconcile(&graph)
                    } else {
                        reconcile_some(&graph, touched.iter().map(String::as_str))
                    };
                    touched.clear();
                    if full {
                        next_sweep = tokio::time::Instant::now() + pause_after(started.elapsed());
                    }
                    full = false;
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
    fn a_node_keeps_what_decisions_read() {
        let owner = OwnerReference {
            uid: "rs-1".into(),
            ..Default::default()
        };
        let m = Meta {
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
                managed_fields: Some(vec![ManagedFieldsEntry::default()]),
                ..Default::default()
            },
            _phantom: Default::default(),
        };
        let ar = Arc::new(ApiResource::erase::<k8s_openapi::api::core::v1::Pod>(&()));
        let n = node(&ar, &m).expect("a node");
        assert_eq!(n.name, "web-1");
        assert_eq!(n.namespace.as_deref(), Some("default"));
        assert_eq!(n.uid, "pod-1");
        assert_eq!(n.resource_version.as_deref(), Some("9"));
        assert_eq!(n.owners, vec![owner]);
        assert_eq!(n.finalizers, vec!["foregroundDeletion".to_string()]);
        assert!(n.deleting);
        // Without a uid or name there is nothing to collect.
        let mut nameless = m.clone();
        nameless.metadata.name = None;
        assert!(node(&ar, &nameless).is_none());
    }
}
