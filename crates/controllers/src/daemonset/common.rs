//! Helpers the DaemonSet, StatefulSet, Job and CronJob controllers share:
//! label selector matching, pod state predicates, controller references,
//! claiming pods by selector, revision hashing and create/delete
//! expectations.
//!
//! Upstream counterpart: `pkg/controller/controller_utils.go`
//! (`ControllerExpectations`, `IsPodReady` and friends),
//! `controller_ref_manager.go` (`ClaimPods`), `pkg/api/v1/pod/util.go`
//! (`IsPodReady`, `IsPodAvailable`) and `pkg/controller/history`
//! (`HashControllerRevision`). They live here rather than in `pods.rs`
//! because that file belongs to the ReplicaSet/Deployment controllers.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::replicaset::index::PodIndex;
use serde_json::json;

/// Whether `labels` satisfy `sel` (matchLabels and matchExpressions). An
/// empty selector selects everything, a missing one nothing — as
/// `metav1.LabelSelectorAsSelector` reads them.
pub fn selector_matches(sel: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    let Some(sel) = sel else {
        return false;
    };
    let labels_ok = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = sel.match_expressions.iter().flatten().all(|e| {
        let have = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => have.is_some_and(|v| values.contains(v)),
            "NotIn" => have.is_none_or(|v| !values.contains(v)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

/// The controller among an object's owners, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// The reference a controller puts on what it creates: controller and
/// blockOwnerDeletion set, so foreground deletion waits for the child.
pub fn controller_ref(api_version: &str, kind: &str, meta: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

pub fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

// Readiness and availability (upstream `IsPodAvailable`: ready for longer
// than minReadySeconds) are the same rules the ReplicaSet and Deployment
// controllers use.
pub use crate::pods::{is_available as is_pod_available, is_ready as is_pod_ready};

/// What to do with the namespace's pods for one controller: keep the ones
/// it controls and still selects, adopt selected orphans, release the
/// ones it controls but no longer selects (`PodControllerRefManager`).
#[derive(Debug, Default)]
pub struct Claim {
    pub owned: Vec<Arc<Pod>>,
    pub adopt: Vec<Arc<Pod>>,
    pub release: Vec<Arc<Pod>>,
}

/// Sort `pods` (already limited to the owner's namespace) for the owner
/// with `owner` metadata and `selector`. A terminating owner adopts
/// nothing, as upstream.
pub fn claim(
    owner: &ObjectMeta,
    selector: Option<&LabelSelector>,
    pods: impl IntoIterator<Item = Arc<Pod>>,
) -> Claim {
    let uid = owner.uid.as_deref().unwrap_or_default();
    let mut out = Claim::default();
    for pod in pods {
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let matches = selector_matches(selector, &labels);
        match controller_of(&pod.metadata) {
            Some(r) if r.uid == uid => {
                if matches {
                    out.owned.push(pod);
                } else if pod.metadata.deletion_timestamp.is_none() {
                    out.release.push(pod);
                }
            }
            Some(_) => {}
            None => {
                if matches
                    && owner.deletion_timestamp.is_none()
                    && pod.metadata.deletion_timestamp.is_none()
                {
                    out.adopt.push(pod);
                }
            }
        }
    }
    out
}

/// Carry out a claim's adoptions and releases; return the pods the owner
/// controls afterwards. Failures are logged and the pod left out: the
/// next sync sees it again.
pub async fn apply_claim(
    api: &Api<Pod>,
    owner_ref: &OwnerReference,
    claim: Claim,
) -> Vec<Arc<Pod>> {
    let mut owned = claim.owned;
    for pod in claim.adopt {
        let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
        refs.push(owner_ref.clone());
        // The uid in the patch makes it fail if the name was reused.
        let patch = json!({"metadata": {"ownerReferences": refs, "uid": pod.metadata.uid}});
        let name = pod.metadata.name.clone().unwrap_or_default();
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(p) => owned.push(Arc::new(p)),
            Err(e) => tracing::warn!(pod = %name, error = %e, "adopting pod failed"),
        }
    }
    for pod in claim.release {
        let refs: Vec<_> = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .filter(|r| r.uid != owner_ref.uid)
            .cloned()
            .collect();
        let patch = json!({"metadata": {"ownerReferences": refs, "uid": pod.metadata.uid}});
        let name = pod.metadata.name.clone().unwrap_or_default();
        if let Err(e) = api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::warn!(pod = %name, error = %e, "releasing pod failed");
        }
    }
    owned
}

/// An owner → pods index over the shared pod cache (the ReplicaSet
/// controller's), filled with what the cache holds now so that no sync
/// runs on an empty index before the pod stream has caught up.
pub fn pod_index(store: Store<Pod>) -> Arc<PodIndex> {
    let index = Arc::new(PodIndex::new(store.clone()));
    for pod in store.state() {
        index.observe(&pod);
    }
    index
}

/// The pods a controller with `owner` metadata looks at: the ones it
/// controls and its namespace's orphans — from the index, not a scan of
/// every pod in the cluster.
pub fn candidate_pods(index: &PodIndex, owner: &ObjectMeta) -> Vec<Arc<Pod>> {
    let mut pods = index.owned(owner.uid.as_deref().unwrap_or_default());
    pods.extend(index.orphans(owner.namespace.as_deref().unwrap_or_default()));
    pods
}

/// Which owners of kind `K` a changed pod concerns: its controller if that
/// is a `K`, or for an orphan every `K` in its namespace whose selector
/// takes it (upstream's addPod/updatePod handlers), so orphans get adopted.
/// The pod also goes into `index`.
pub fn pod_owners<K>(
    store: Store<K>,
    index: Arc<PodIndex>,
    selector: fn(&K) -> Option<&LabelSelector>,
) -> impl Fn(Arc<Pod>) -> Vec<ObjectRef<K>> + Send + Sync + 'static
where
    K: kube::Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    move |pod: Arc<Pod>| {
        index.observe(&pod);
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        match controller_of(&pod.metadata) {
            Some(r) if r.kind == K::kind(&()) => {
                vec![ObjectRef::<K>::new(&r.name).within(&ns)]
            }
            Some(_) => Vec::new(),
            None => {
                let labels = pod.metadata.labels.clone().unwrap_or_default();
                store
                    .state()
                    .iter()
                    .filter(|o| o.meta().namespace.as_deref() == Some(ns.as_str()))
                    .filter(|o| selector_matches(selector(o), &labels))
                    .map(|o| ObjectRef::from_obj(&**o))
                    .collect()
            }
        }
    }
}

/// Publish an event about `obj`; a failure is only logged (upstream's
/// recorder drops events it cannot write, too).
pub async fn event<K>(recorder: &Recorder, obj: &K, warning: bool, reason: &str, note: String)
where
    K: kube::Resource<DynamicType = ()>,
{
    let ev = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.into(),
        note: Some(note),
        action: reason.into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&ev, &obj.object_ref(&())).await {
        tracing::debug!(error = %e, reason, "event not recorded");
    }
}

/// A recorder reporting as `controller` (upstream's component name).
pub fn recorder(client: &kube::Client, controller: &str) -> Recorder {
    Recorder::new(
        client.clone(),
        Reporter {
            controller: controller.into(),
            instance: None,
        },
    )
}

/// FNV-1a, 32 bits: the hash upstream names revisions with.
pub fn fnv32a(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in data {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// A number written in the alphabet upstream's `rand.SafeEncodeString`
/// uses (no vowels, no look-alikes), so names never spell words.
pub fn safe_encode(mut n: u32) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut out = Vec::new();
    loop {
        out.push(ALPHABET[(n % ALPHABET.len() as u32) as usize]);
        n /= ALPHABET.len() as u32;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ascii alphabet")
}

/// The hash of a template (and collision count) as a revision name suffix.
pub fn revision_hash(template: &serde_json::Value, collision_count: Option<i32>) -> String {
    let mut bytes = serde_json::to_vec(template).unwrap_or_default();
    if let Some(c) = collision_count {
        bytes.extend_from_slice(&c.to_le_bytes());
    }
    safe_encode(fnv32a(&bytes))
}

/// How long a controller waits for its own writes to show in the cache
/// before it stops trusting its memory (upstream `ExpectationsTimeout`).
const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct Pending {
    creates: HashSet<String>,
    deletes: HashSet<String>,
    since: Instant,
}

/// Pods a controller created or deleted that its cache does not show yet.
/// Until it does, a sync would count from a stale cache and create twice;
/// upstream counts expected adds and deletes, this remembers the names
/// created and uids deleted, which also survives event reordering.
#[derive(Debug, Default)]
pub struct Expectations {
    pending: Mutex<HashMap<String, Pending>>,
}

impl Expectations {
    pub fn expect_creates(&self, key: &str, names: impl IntoIterator<Item = String>) {
        self.entry(key, |p| p.creates.extend(names));
    }

    pub fn expect_deletes(&self, key: &str, uids: impl IntoIterator<Item = String>) {
        self.entry(key, |p| p.deletes.extend(uids));
    }

    fn entry(&self, key: &str, f: impl FnOnce(&mut Pending)) {
        let mut pending = self.pending.lock().expect("expectations lock");
        let p = pending.entry(key.to_string()).or_insert_with(|| Pending {
            creates: HashSet::new(),
            deletes: HashSet::new(),
            since: Instant::now(),
        });
        p.since = Instant::now();
        f(p);
    }

    /// Whether the cache, seen through `pods` (the owner's pods, any
    /// state), reflects every write made for `key`.
    pub fn satisfied(&self, key: &str, pods: &[Arc<Pod>]) -> bool {
        let mut pending = self.pending.lock().expect("expectations lock");
        let Some(p) = pending.get_mut(key) else {
            return true;
        };
        let names: HashSet<&str> = pods
            .iter()
            .filter_map(|p| p.metadata.name.as_deref())
            .collect();
        p.creates.retain(|n| !names.contains(n.as_str()));
        p.deletes.retain(|uid| {
            pods.iter().any(|pod| {
                pod.metadata.uid.as_deref() == Some(uid.as_str())
                    && pod.metadata.deletion_timestamp.is_none()
            })
        });
        let done = (p.creates.is_empty() && p.deletes.is_empty())
            || p.since.elapsed() > EXPECTATIONS_TIMEOUT;
        if done {
            pending.remove(key);
        }
        done
    }
}

/// Error backoff for a controller's failed syncs: 5 ms doubling to 1000 s
/// per key as upstream's rate-limited workqueue, reset on success.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Records a failed sync of `key`; how long to wait before the next.
    pub fn failed(&self, key: &str) -> Duration {
        let mut f = self.failures.lock().expect("backoff lock");
        let n = f.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        let ms = 5u64.saturating_mul(1u64 << (*n - 1).min(30));
        Duration::from_millis(ms.min(1_000_000))
    }

    /// A sync of `key` succeeded: its next failure starts over at 5 ms.
    pub fn succeeded(&self, key: &str) {
        self.failures.lock().expect("backoff lock").remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors_match_labels_and_expressions() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "NotIn".into(),
                values: Some(vec!["db".into()]),
            }]),
        };
        assert!(selector_matches(Some(&sel), &labels(&[("app", "web")])));
        assert!(!selector_matches(
            Some(&sel),
            &labels(&[("app", "web"), ("tier", "db")])
        ));
        assert!(!selector_matches(Some(&sel), &labels(&[("app", "db")])));
        assert!(!selector_matches(None, &labels(&[("app", "web")])));
        assert!(selector_matches(
            Some(&LabelSelector::default()),
            &labels(&[])
        ));
    }

    fn pod(name: &str, uid: &str) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(uid.into()),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        })
    }

    #[test]
    fn expectations_wait_for_the_cache() {
        let e = Expectations::default();
        e.expect_creates("ns/a", ["a-1".to_string()]);
        e.expect_deletes("ns/a", ["u0".to_string()]);
        assert!(!e.satisfied("ns/a", &[pod("a-0", "u0")]));
        assert!(!e.satisfied("ns/a", &[pod("a-1", "u1"), pod("a-0", "u0")]));
        assert!(e.satisfied("ns/a", &[pod("a-1", "u1")]));
        assert!(e.satisfied("ns/other", &[]));
    }

    #[test]
    fn revision_hashes_are_stable_and_differ_by_template() {
        let a = revision_hash(&json!({"spec": {"image": "a"}}), None);
        assert_eq!(a, revision_hash(&json!({"spec": {"image": "a"}}), None));
        assert_ne!(a, revision_hash(&json!({"spec": {"image": "b"}}), None));
        assert_ne!(a, revision_hash(&json!({"spec": {"image": "a"}}), Some(1)));
        assert!(a.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    }

    #[test]
    fn backoff_doubles_and_resets() {
        let b = Backoff::default();
        assert_eq!(b.failed("k"), Duration::from_millis(5));
        assert_eq!(b.failed("k"), Duration::from_millis(10));
        b.succeeded("k");
        assert_eq!(b.failed("k"), Duration::from_millis(5));
    }
}
