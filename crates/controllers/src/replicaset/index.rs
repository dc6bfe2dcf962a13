//! The pods of each owner, and the creations and deletions a controller
//! still waits to see.
//!
//! Upstream counterpart: the pod informer's event handlers in
//! `pkg/controller/replicaset/replica_set.go` (`addPod`, `updatePod`,
//! `deletePod`) and `pkg/controller/controller_utils.go`
//! (`ControllerExpectations`, `UIDTrackingControllerExpectations`).
//!
//! The shared informer hands every changed pod to [`PodIndex::observe`],
//! which keeps an owner → pods index (so a sync reads its own pods, not
//! every pod in the cluster) and lowers expectations the way upstream's
//! handlers do: a pod seen for the first time is a creation observed for
//! its controller, a pod that gets a deletionTimestamp or leaves the cache
//! is a deletion observed. Expectations stop a sync from acting on a cache
//! that has not yet caught up with its own last writes, which would create
//! or delete pods twice.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::pods;

/// After this long an unmet expectation is given up (upstream's
/// `ExpectationsTimeout`): a watch event was lost, act on the cache.
const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct Expectation {
    adds: i64,
    /// Names of pods whose deletion was asked for and not yet seen.
    deletes: HashSet<String>,
    since: Instant,
}

/// What the index remembers of one pod.
#[derive(Clone, Debug)]
struct Seen {
    uid: String,
    owner: Option<String>,
    deleting: bool,
}

#[derive(Default)]
struct Inner {
    /// Controller uid → its pods.
    by_owner: HashMap<String, HashSet<ObjectRef<Pod>>>,
    /// Namespace → pods without a controller (adoption candidates).
    orphans: HashMap<String, HashSet<ObjectRef<Pod>>>,
    pods: HashMap<ObjectRef<Pod>, Seen>,
    /// Controller uid → expectations.
    expect: HashMap<String, Expectation>,
}

/// The owner index and expectations of one controller.
pub struct PodIndex {
    store: Store<Pod>,
    inner: Mutex<Inner>,
}

/// What [`PodIndex::observe`] learnt: the controllers to sync.
#[derive(Debug, Default, PartialEq)]
pub struct Touched {
    /// Controller uids (current and previous) with their names.
    pub owners: Vec<(String, String)>,
    /// The pod has no controller (an adoption candidate).
    pub orphan: bool,
}

impl PodIndex {
    pub fn new(store: Store<Pod>) -> PodIndex {
        PodIndex {
            store,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Take in one changed pod from the informer (deleted ones arrive in
    /// their last state and are no longer in the store).
    pub fn observe(&self, pod: &Pod) -> Touched {
        // Keyed by namespace and name only (what the store's keys compare
        // on), without copying the resourceVersion and uid into the key.
        let key = ObjectRef::<Pod>::new(pod.metadata.name.as_deref().unwrap_or(""))
            .within(pod.metadata.namespace.as_deref().unwrap_or(""));
        let uid = pod.metadata.uid.as_deref().unwrap_or("");
        let present = self
            .store
            .get(&key)
            .is_some_and(|p| p.metadata.uid.as_deref() == Some(uid));
        let owner_ref = pods::controller_of(&pod.metadata);
        let mut touched = Touched {
            owners: owner_ref
                .map(|r| (r.uid.clone(), r.name.clone()))
                .into_iter()
                .collect(),
            orphan: owner_ref.is_none(),
        };
        let deleting = pod.metadata.deletion_timestamp.is_some();
        let mut inner = self.inner.lock().expect("pod index lock");
        // Most events (bindings, status writes) change nothing the index
        // keeps: answer them without rebuilding its entries.
        if present
            && inner.pods.get(&key).is_some_and(|s| {
                s.uid == uid
                    && s.owner.as_deref() == owner_ref.map(|r| r.uid.as_str())
                    && s.deleting == deleting
            })
        {
            return touched;
        }
        let uid = uid.to_string();
        let owner = owner_ref.map(|r| r.uid.clone());
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let before = inner.pods.get(&key).cloned().filter(|s| s.uid == uid);
        if let Some(prev) = &before {
            if prev.owner != owner {
                inner.unindex(&key, prev.owner.as_deref(), &ns);
                if let Some(o) = &prev.owner {
                    touched.owners.push((o.clone(), String::new()));
                }
            }
        }
        if !present {
            inner.pods.remove(&key);
            inner.unindex(&key, owner.as_deref(), &ns);
            if let Some(o) = &owner {
                // Created and gone before this event got here: both count.
                if before.is_none() {
                    inner.creation_observed(o);
                }
                if !before.as_ref().is_some_and(|b| b.deleting) {
                    inner.deletion_observed(o, &name);
                }
            }
            return touched;
        }
        if before.is_none() {
            if let Some(o) = &owner {
                inner.creation_observed(o);
            }
        }
        if deleting && !before.as_ref().is_some_and(|b| b.deleting) {
            if let Some(o) = &owner {
                inner.deletion_observed(o, &name);
            }
        }
        match &owner {
            Some(o) => inner
                .by_owner
                .entry(o.clone())
                .or_default()
                .insert(key.clone()),
            None => inner.orphans.entry(ns).or_default().insert(key.clone()),
        };
        inner.pods.insert(
            key,
            Seen {
                uid,
                owner,
                deleting,
            },
        );
        touched
    }

    /// The cached pods whose controller is `owner_uid`.
    pub fn owned(&self, owner_uid: &str) -> Vec<Arc<Pod>> {
        // Looked up under the index lock rather than copying the keys out
        // first: a sync of a thousand-pod owner cloned a thousand
        // references (four strings each) for nothing. The store's lock is
        // only ever taken inside this one, never the other way round.
        let inner = self.inner.lock().expect("pod index lock");
        let Some(keys) = inner.by_owner.get(owner_uid) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(keys.len());
        out.extend(
            keys.iter()
                .filter_map(|k| self.store.get(k))
                .filter(|p| pods::controller_of(&p.metadata).is_some_and(|r| r.uid == owner_uid)),
        );
        out
    }

    /// The cached pods in `namespace` without a controller.
    pub fn orphans(&self, namespace: &str) -> Vec<Arc<Pod>> {
        let inner = self.inner.lock().expect("pod index lock");
        let Some(keys) = inner.orphans.get(namespace) else {
            return Vec::new();
        };
        keys.iter()
            .filter_map(|k| self.store.get(k))
            .filter(|p| pods::controller_of(&p.metadata).is_none())
            .collect()
    }

    /// Whether the cache has caught up with this controller's writes (or
    /// waited long enough), upstream's `SatisfiedExpectations`.
    pub fn satisfied(&self, owner_uid: &str) -> bool {
        let inner = self.inner.lock().expect("pod index lock");
        match inner.expect.get(owner_uid) {
            None => true,
            Some(e) => {
                (e.adds <= 0 && e.deletes.is_empty()) || e.since.elapsed() > EXPECTATIONS_TIMEOUT
            }
        }
    }

    /// About to create `n` pods.
    pub fn expect_creations(&self, owner_uid: &str, n: usize) {
        let mut inner = self.inner.lock().expect("pod index lock");
        inner.expect.insert(
            owner_uid.to_string(),
            Expectation {
                adds: n as i64,
                deletes: HashSet::new(),
                since: Instant::now(),
            },
        );
    }

    /// About to delete these pods.
    pub fn expect_deletions(&self, owner_uid: &str, names: &[String]) {
        let mut inner = self.inner.lock().expect("pod index lock");
        inner.expect.insert(
            owner_uid.to_string(),
            Expectation {
                adds: 0,
                deletes: names.iter().cloned().collect(),
                since: Instant::now(),
            },
        );
    }

    /// A creation that failed or was skipped will never be observed.
    pub fn creation_observed(&self, owner_uid: &str) {
        self.inner
            .lock()
            .expect("pod index lock")
            .creation_observed(owner_uid);
    }

    /// A deletion that failed will never be observed.
    pub fn deletion_observed(&self, owner_uid: &str, name: &str) {
        self.inner
            .lock()
            .expect("pod index lock")
            .deletion_observed(owner_uid, name);
    }

    /// The controller is gone: forget what it waited for.
    pub fn forget(&self, owner_uid: &str) {
        self.inner
            .lock()
            .expect("pod index lock")
            .expect
            .remove(owner_uid);
    }
}

impl Inner {
    fn unindex(&mut self, key: &ObjectRef<Pod>, owner: Option<&str>, ns: &str) {
        let set = match owner {
            Some(o) => self.by_owner.get_mut(o),
            None => self.orphans.get_mut(ns),
        };
        if let Some(set) = set {
            set.remove(key);
            if set.is_empty() {
                match owner {
                    Some(o) => self.by_owner.remove(o),
                    None => self.orphans.remove(ns),
                };
            }
        }
    }

    fn creation_observed(&mut self, owner: &str) {
        if let Some(e) = self.expect.get_mut(owner) {
            e.adds -= 1;
        }
    }

    fn deletion_observed(&mut self, owner: &str, name: &str) {
        if let Some(e) = self.expect.get_mut(owner) {
            e.deletes.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher::Event;

    fn pod(name: &str, owner: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("uid-{name}")),
                owner_references: owner.map(|o| {
                    vec![OwnerReference {
                        uid: o.into(),
                        name: format!("name-{o}"),
                        controller: Some(true),
                        ..OwnerReference::default()
                    }]
                }),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    fn setup() -> (Writer<Pod>, PodIndex) {
        let writer = Writer::<Pod>::default();
        let index = PodIndex::new(writer.as_reader());
        (writer, index)
    }

    #[test]
    fn creations_are_observed_when_pods_first_appear() {
        let (mut w, index) = setup();
        index.expect_creations("rs", 2);
        assert!(!index.satisfied("rs"));
        let a = pod("a", Some("rs"));
        w.apply_watcher_event(&Event::Apply(a.clone()));
        let touched = index.observe(&a);
        assert_eq!(touched.owners, [("rs".to_string(), "name-rs".to_string())]);
        // Seeing the same pod again (an update) is no second creation.
        index.observe(&a);
        assert!(!index.satisfied("rs"));
        let b = pod("b", Some("rs"));
        w.apply_watcher_event(&Event::Apply(b.clone()));
        index.observe(&b);
        assert!(index.satisfied("rs"));
        let mut names: Vec<_> = index
            .owned("rs")
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn deletions_are_observed_at_the_deletion_timestamp_or_removal() {
        let (mut w, index) = setup();
        let a = pod("a", Some("rs"));
        let b = pod("b", Some("rs"));
        for p in [&a, &b] {
            w.apply_watcher_event(&Event::Apply(p.clone()));
            index.observe(p);
        }
        index.expect_deletions("rs", &["a".into(), "b".into()]);
        let mut deleting = a.clone();
        deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        w.apply_watcher_event(&Event::Apply(deleting.clone()));
        index.observe(&deleting);
        assert!(!index.satisfied("rs"));
        w.apply_watcher_event(&Event::Delete(b.clone()));
        index.observe(&b);
        assert!(index.satisfied("rs"));
        assert_eq!(index.owned("rs").len(), 1);
    }

    #[test]
    fn orphans_are_indexed_by_namespace_and_move_when_adopted() {
        let (mut w, index) = setup();
        let o = pod("o", None);
        w.apply_watcher_event(&Event::Apply(o.clone()));
        assert!(index.observe(&o).orphan);
        assert_eq!(index.orphans("ns").len(), 1);
        let adopted = pod("o", Some("rs"));
        w.apply_watcher_event(&Event::Apply(adopted.clone()));
        index.observe(&adopted);
        assert!(index.orphans("ns").is_empty());
        assert_eq!(index.owned("rs").len(), 1);
    }
}
