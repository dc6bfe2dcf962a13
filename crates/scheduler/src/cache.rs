//! The scheduler's cache of nodes and the pods on them, assumed pods
//! included until their binding is confirmed or fails.
//!
//! Upstream counterpart: `pkg/scheduler/backend/cache` (`cacheImpl`:
//! `AssumePod`, `ForgetPod`, `AddPod` confirming an assumed pod) and the
//! nominator of `backend/queue` (pods waiting for preemption victims to
//! leave). Owned by the scheduling loop alone, so no locks and no snapshot
//! copies: the loop applies informer events between scheduling cycles.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;

use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;

struct PodState {
    node: String,
    assumed: bool,
}

/// Nodes (in a stable order, for sampling) and pod placement.
#[derive(Default)]
pub struct Cache {
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    /// Nodes that pods name but the API has not shown (yet).
    placeholders: HashMap<String, NodeInfo>,
    pods: HashMap<String, PodState>,
    /// Pods with pod (anti-)affinity terms, cluster-wide.
    pub pods_with_affinity: usize,
    /// Nominated (preemptor) pods per node.
    nominated: HashMap<String, Vec<Arc<PodInfo>>>,
    nominated_at: HashMap<String, String>,
}

impl Cache {
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|i| &self.nodes[*i])
    }

    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// The uids of every pod counted (bound or assumed).
    pub fn pod_uids(&self) -> impl Iterator<Item = &String> {
        self.pods.keys()
    }

    fn node_mut_or_placeholder(&mut self, name: &str) -> &mut NodeInfo {
        match self.index.get(name) {
            Some(i) => &mut self.nodes[*i],
            None => self
                .placeholders
                .entry(name.to_string())
                .or_insert_with(|| NodeInfo::placeholder(name)),
        }
    }

    /// Add or update a node; true when it is new or changed in a way the
    /// plugins see (labels, taints, cordon, allocatable), so that waiting
    /// pods deserve another try. Heartbeat-only updates return false.
    pub fn upsert_node(&mut self, node: &Node) -> bool {
        let name = node.metadata.name.clone().unwrap_or_default();
        if let Some(i) = self.index.get(&name) {
            let n = &mut self.nodes[*i];
            let before = (
                n.labels.clone(),
                n.taints.clone(),
                n.unschedulable,
                n.allocatable.clone(),
                n.allowed_pods,
            );
            n.set_node(node);
            return before
                != (
                    n.labels.clone(),
                    n.taints.clone(),
                    n.unschedulable,
                    n.allocatable.clone(),
                    n.allowed_pods,
                );
        }
        let mut info = self
            .placeholders
            .remove(&name)
            .unwrap_or_else(|| NodeInfo::placeholder(&name));
        info.set_node(node);
        self.index.insert(name, self.nodes.len());
        self.nodes.push(info);
        true
    }

    pub fn remove_node(&mut self, name: &str) {
        let Some(i) = self.index.remove(name) else {
            return;
        };
        let mut info = self.nodes.swap_remove(i);
        if i < self.nodes.len() {
            self.index.insert(self.nodes[i].name.clone(), i);
        }
        // Pods still bound there keep counting until they are deleted.
        if !info.pods.is_empty() {
            info.present = false;
            self.placeholders.insert(name.to_string(), info);
        }
    }

    /// The pod as counted, if it is.
    pub fn pod(&self, uid: &str) -> Option<&Arc<PodInfo>> {
        let state = self.pods.get(uid)?;
        let node = match self.index.get(&state.node) {
            Some(i) => &self.nodes[*i],
            None => self.placeholders.get(&state.node)?,
        };
        node.pods.iter().find(|p| p.uid == uid)
    }

    /// The node a pod is counted on, and whether only assumed there.
    pub fn placement(&self, uid: &str) -> Option<(&str, bool)> {
        self.pods.get(uid).map(|s| (s.node.as_str(), s.assumed))
    }

    fn place(&mut self, pod: Arc<PodInfo>, assumed: bool) {
        self.remove_pod(&pod.uid);
        let node = pod.node_name.clone();
        if pod.has_affinity() {
            self.pods_with_affinity += 1;
        }
        self.pods.insert(
            pod.uid.clone(),
            PodState {
                node: node.clone(),
                assumed,
            },
        );
        self.node_mut_or_placeholder(&node).add_pod(pod);
    }

    /// A bound pod as the API shows it (confirms an assumed one).
    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.clear_nominated(&pod.uid);
        self.place(pod, false);
    }

    /// Count `pod` on `node` while its binding is in flight.
    pub fn assume(&mut self, pod: &PodInfo, node: &str) -> Arc<PodInfo> {
        let mut assumed = pod.clone();
        assumed.node_name = node.to_string();
        let assumed = Arc::new(assumed);
        self.clear_nominated(&pod.uid);
        self.place(assumed.clone(), true);
        assumed
    }

    /// Undo [`Cache::assume`] after a failed binding.
    pub fn forget(&mut self, uid: &str) {
        if self.pods.get(uid).is_some_and(|s| s.assumed) {
            self.remove_pod(uid);
        }
    }

    pub fn remove_pod(&mut self, uid: &str) {
        let Some(state) = self.pods.remove(uid) else {
            return;
        };
        let removed = match self.index.get(&state.node) {
            Some(i) => self.nodes[*i].remove_pod(uid),
            None => {
                let p = self.placeholders.get_mut(&state.node);
                let removed = p.and_then(|n| n.remove_pod(uid));
                if self
                    .placeholders
                    .get(&state.node)
                    .is_some_and(|n| n.pods.is_empty())
                {
                    self.placeholders.remove(&state.node);
                }
                removed
            }
        };
        if removed.is_some_and(|p| p.has_affinity()) {
            self.pods_with_affinity -= 1;
        }
    }

    /// Record that `pod` waits for room on `node` (its nominatedNodeName).
    pub fn set_nominated(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.clear_nominated(&pod.uid);
        if node.is_empty() {
            return;
        }
        self.nominated_at.insert(pod.uid.clone(), node.to_string());
        self.nominated
            .entry(node.to_string())
            .or_default()
            .push(pod);
    }

    pub fn clear_nominated(&mut self, uid: &str) {
        let Some(node) = self.nominated_at.remove(uid) else {
            return;
        };
        if let Some(list) = self.nominated.get_mut(&node) {
            list.retain(|p| p.uid != uid);
            if list.is_empty() {
                self.nominated.remove(&node);
            }
        }
    }

    /// Pods nominated to `node`.
    pub fn nominated(&self, node: &str) -> &[Arc<PodInfo>] {
        self.nominated.get(node).map_or(&[], |v| v.as_slice())
    }

    pub fn has_nominated(&self) -> bool {
        !self.nominated.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node(name: &str) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn pod(uid: &str, node: &str) -> Arc<PodInfo> {
        Arc::new(PodInfo {
            uid: uid.into(),
            node_name: node.into(),
            ..Default::default()
        })
    }

    #[test]
    fn assume_confirm_forget() {
        let mut c = Cache::default();
        assert!(c.upsert_node(&node("a")));
        assert!(!c.upsert_node(&node("a")));
        c.upsert_node(&node("b"));
        let p = pod("p1", "");
        c.assume(&p, "a");
        assert_eq!(c.placement("p1"), Some(("a", true)));
        assert_eq!(c.node("a").unwrap().pods.len(), 1);
        c.add_pod(pod("p1", "a"));
        assert_eq!(c.placement("p1"), Some(("a", false)));
        assert_eq!(c.pod("p1").unwrap().node_name, "a");
        assert!(c.pod("nope").is_none());
        c.forget("p1");
        assert_eq!(c.node("a").unwrap().pods.len(), 1, "confirmed pods stay");
        c.assume(&pod("p2", ""), "b");
        c.forget("p2");
        assert!(c.node("b").unwrap().pods.is_empty());
        assert_eq!(c.pod_count(), 1);
    }

    #[test]
    fn pods_before_their_node_and_node_removal() {
        let mut c = Cache::default();
        c.add_pod(pod("p1", "late"));
        assert!(c.node("late").is_none());
        c.upsert_node(&node("late"));
        assert_eq!(c.node("late").unwrap().pods.len(), 1);
        c.upsert_node(&node("x"));
        c.remove_node("late");
        assert_eq!(c.nodes().len(), 1);
        assert_eq!(c.node_index("x"), Some(0));
        c.remove_pod("p1");
        assert_eq!(c.pod_count(), 0);
        assert!(c.placeholders.is_empty());
    }

    #[test]
    fn nominations() {
        let mut c = Cache::default();
        c.set_nominated(pod("p", ""), "a");
        assert_eq!(c.nominated("a").len(), 1);
        c.set_nominated(pod("p", ""), "b");
        assert!(c.nominated("a").is_empty());
        c.assume(&pod("p", ""), "b");
        assert!(!c.has_nominated());
    }
}
