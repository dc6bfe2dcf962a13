//! Pods by namespace or by node, and the pod and selector predicates that
//! the service, node, disruption and quota controllers share, and their
//! event helper.
//!
//! Upstream counterpart: the namespace index of client-go's pod informer
//! (`cache.NamespaceIndex`) that `podLister.Pods(ns).List(selector)` reads,
//! and `pkg/api/v1/pod.IsPodReady`. The shared informer cache holds every
//! pod once; a controller that needs "the pods of namespace X" (or of
//! node X) keeps only their names here, so a Service sync looks at its
//! namespace's pods instead of every pod in the cluster.
//!
//! The index is fed from the controller's own pod mapper: the informer
//! updates its cache before it fans a change out, so when the mapper sees
//! a pod the cache already says whether it still exists — and the
//! reconcile the mapper triggers runs after the index has it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;

/// A pod's key in the index: its namespace, or its node.
type KeyFn = fn(&Pod) -> Option<String>;

/// The cached pods grouped by a key (namespace or node), as names only.
pub(crate) struct PodIndex {
    store: Store<Pod>,
    key_of: KeyFn,
    inner: Mutex<Groups>,
}

#[derive(Default)]
struct Groups {
    /// key -> (namespace, name) of its pods.
    by_key: HashMap<String, BTreeSet<(String, String)>>,
    /// (namespace, name) -> its current key.
    key: HashMap<(String, String), String>,
}

impl PodIndex {
    /// Pods by namespace.
    pub(crate) fn new(store: Store<Pod>) -> Arc<PodIndex> {
        Self::with_key(store, |p| p.metadata.namespace.clone())
    }

    /// Pods by the node they are bound to (unbound pods are not indexed).
    pub(crate) fn by_node(store: Store<Pod>) -> Arc<PodIndex> {
        Self::with_key(store, |p| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .filter(|n| !n.is_empty())
        })
    }

    fn with_key(store: Store<Pod>, key_of: KeyFn) -> Arc<PodIndex> {
        Arc::new(PodIndex {
            store,
            key_of,
            inner: Mutex::new(Groups::default()),
        })
    }

    /// Record what the cache now says about `pod`: there (added or
    /// changed, perhaps under another key) or gone.
    pub(crate) fn observe(&self, pod: &Pod) {
        let ns = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        let cached = self.store.get(&ObjectRef::new(&name).within(&ns));
        let new_key = cached.as_deref().and_then(self.key_of);
        let id = (ns, name);
        let mut g = self.inner.lock().expect("pod index lock");
        let old_key = g.key.get(&id).cloned();
        if old_key == new_key {
            return;
        }
        if let Some(old) = old_key {
            g.key.remove(&id);
            if let Some(set) = g.by_key.get_mut(&old) {
                set.remove(&id);
                if set.is_empty() {
                    g.by_key.remove(&old);
                }
            }
        }
        if let Some(new) = new_key {
            g.key.insert(id.clone(), new.clone());
            g.by_key.entry(new).or_default().insert(id);
        }
    }

    /// The cached pods under `key`.
    pub(crate) fn pods(&self, key: &str) -> Vec<Arc<Pod>> {
        let ids: Vec<(String, String)> = {
            let g = self.inner.lock().expect("pod index lock");
            match g.by_key.get(key) {
                Some(ids) => ids.iter().cloned().collect(),
                None => return Vec::new(),
            }
        };
        ids.iter()
            .filter_map(|(ns, n)| self.store.get(&ObjectRef::new(n).within(ns)))
            .collect()
    }

    /// The cache the index reads through.
    pub(crate) fn store(&self) -> &Store<Pod> {
        &self.store
    }
}

/// Whether a Service-style selector (a plain map) selects `labels`. An
/// empty map selects nothing here: Services without a selector are not
/// the controllers' business.
pub(crate) fn map_selects(
    selector: &BTreeMap<String, String>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    if selector.is_empty() {
        return false;
    }
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Whether a `LabelSelector` selects `labels`, as
/// `metav1.LabelSelectorAsSelector` then `Matches`: the empty selector
/// selects everything; an operator it does not know selects nothing.
pub(crate) fn label_selector_selects(
    selector: &LabelSelector,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    let by_map = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    by_map
        && selector.match_expressions.iter().flatten().all(|req| {
            let values = req.values.as_deref().unwrap_or_default();
            let value = labels.get(&req.key);
            match req.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// Whether the pod's Ready condition is True (`podutil.IsPodReady`).
pub(crate) fn is_pod_ready(pod: &Pod) -> bool {
    condition_status(pod, "Ready") == Some("True")
}

/// The status of the pod's condition `type_`, if it has one.
pub(crate) fn condition_status<'a>(pod: &'a Pod, type_: &str) -> Option<&'a str> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.as_str())
}

/// The pod's phase, "" when it has none yet.
pub(crate) fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Whether the pod has finished for good: Succeeded or Failed.
pub(crate) fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// A recorder for events through the events API, reporting as
/// `controller` (upstream's component name for the controller).
pub(crate) fn recorder(client: &kube::Client, controller: &str) -> Recorder {
    Recorder::new(
        client.clone(),
        Reporter {
            controller: controller.into(),
            instance: None,
        },
    )
}

/// The object reference to a pod that endpoints carry as `targetRef`.
pub(crate) fn pod_reference(pod: &Pod) -> k8s_openapi::api::core::v1::ObjectReference {
    k8s_openapi::api::core::v1::ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.namespace(),
        name: Some(pod.name_any()),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn pod(name: &str, node: Option<&str>) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": node, "containers": []}
        }))
        .unwrap()
    }

    #[test]
    fn the_index_follows_binding_and_deletion_through_the_cache() {
        use kube::runtime::watcher::Event;
        let mut writer = kube::runtime::reflector::store::Writer::<Pod>::default();
        let index = PodIndex::by_node(writer.as_reader());
        let names =
            |node: &str| -> Vec<String> { index.pods(node).iter().map(|p| p.name_any()).collect() };
        // Unbound: not indexed. Bound: under its node.
        let unbound = pod("a", None);
        writer.apply_watcher_event(&Event::Apply(unbound.clone()));
        index.observe(&unbound);
        assert!(names("n1").is_empty());
        let bound = pod("a", Some("n1"));
        writer.apply_watcher_event(&Event::Apply(bound.clone()));
        index.observe(&bound);
        assert_eq!(names("n1"), ["a"]);
        // A change the cache already shows is what counts, not the event.
        let moved = pod("a", Some("n2"));
        writer.apply_watcher_event(&Event::Apply(moved));
        index.observe(&bound);
        assert!(names("n1").is_empty());
        assert_eq!(names("n2"), ["a"]);
        writer.apply_watcher_event(&Event::Delete(bound.clone()));
        index.observe(&bound);
        assert!(names("n2").is_empty());
        let by_ns = PodIndex::new(writer.as_reader());
        by_ns.observe(&bound);
        assert!(by_ns.pods("default").is_empty());
    }

    #[test]
    fn map_selectors_need_every_pair_and_select_nothing_when_empty() {
        let sel = labels(&[("app", "web")]);
        assert!(map_selects(
            &sel,
            Some(&labels(&[("app", "web"), ("x", "y")]))
        ));
        assert!(!map_selects(&sel, Some(&labels(&[("app", "db")]))));
        assert!(!map_selects(&sel, None));
        assert!(!map_selects(&BTreeMap::new(), Some(&labels(&[("a", "b")]))));
    }

    #[test]
    fn label_selectors_with_expressions() {
        let req = |key: &str, op: &str, values: &[&str]| LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        };
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![
                req("tier", "In", &["front", "edge"]),
                req("canary", "DoesNotExist", &[]),
                req("zone", "NotIn", &["b"]),
            ]),
        };
        let ok = labels(&[("app", "web"), ("tier", "edge")]);
        assert!(label_selector_selects(&sel, Some(&ok)));
        let canary = labels(&[("app", "web"), ("tier", "edge"), ("canary", "1")]);
        assert!(!label_selector_selects(&sel, Some(&canary)));
        let zone_b = labels(&[("app", "web"), ("tier", "edge"), ("zone", "b")]);
        assert!(!label_selector_selects(&sel, Some(&zone_b)));
        assert!(label_selector_selects(&LabelSelector::default(), None));
        let bad = LabelSelector {
            match_expressions: Some(vec![req("a", "Like", &[])]),
            ..LabelSelector::default()
        };
        assert!(!label_selector_selects(&bad, None));
    }
}
