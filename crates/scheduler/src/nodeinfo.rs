//! Per-node aggregates: the node's own fields plus what its pods (bound or
//! assumed) take, kept up to date incrementally.
//!
//! Upstream counterpart: `framework.NodeInfo` (`AddPodInfo`, `RemovePod`,
//! `SetNode`): requested and non-zero requested resources, used host ports
//! and the subsets of pods with affinity terms.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Taint};

use crate::podinfo::{HostPort, PodInfo};
use crate::resources::{value, Resources};
use crate::selectors::Labels;

/// One node and the pods the scheduler counts on it.
#[derive(Clone, Debug, Default)]
pub struct NodeInfo {
    pub name: String,
    /// False while only pods name this node (it is not in the API, or not
    /// yet seen); such nodes are never candidates.
    pub present: bool,
    pub labels: Labels,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub allocatable: Resources,
    pub allowed_pods: i64,
    pub requested: Resources,
    /// (milli cpu, memory) with defaults for unset requests, for scoring.
    pub non_zero_requested: (i64, i64),
    pub pods: Vec<Arc<PodInfo>>,
    pub used_ports: Vec<HostPort>,
    /// Pods per controlling owner uid, for the default topology spreading.
    pub owner_counts: HashMap<String, u32>,
    /// How many of `pods` have pod (anti-)affinity terms.
    pub pods_with_affinity: u32,
    /// Image sizes by every name the node reports (status.images), for
    /// ImageLocality.
    pub images: HashMap<String, i64>,
}

impl NodeInfo {
    pub fn placeholder(name: &str) -> NodeInfo {
        NodeInfo {
            name: name.to_string(),
            ..NodeInfo::default()
        }
    }

    /// Take the node's own fields from `node`, keeping the pods.
    pub fn set_node(&mut self, node: &Node) {
        self.name = node.metadata.name.clone().unwrap_or_default();
        self.present = true;
        self.labels = node.metadata.labels.clone().unwrap_or_default();
        let spec = node.spec.as_ref();
        self.taints = spec.and_then(|s| s.taints.clone()).unwrap_or_default();
        self.unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        let alloc = node
            .status
            .as_ref()
            .and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()));
        self.allocatable = alloc.map(Resources::from_map).unwrap_or_default();
        self.allowed_pods = alloc.and_then(|a| a.get("pods")).map(value).unwrap_or(0);
        self.images = node
            .status
            .as_ref()
            .and_then(|s| s.images.as_ref())
            .into_iter()
            .flatten()
            .flat_map(|i| {
                let size = i.size_bytes.unwrap_or(0);
                i.names.iter().flatten().map(move |n| (n.clone(), size))
            })
            .collect();
    }

    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        self.non_zero_requested.0 += pod.non_zero.0;
        self.non_zero_requested.1 += pod.non_zero.1;
        self.used_ports.extend(pod.host_ports.iter().cloned());
        if let Some(owner) = &pod.controller_uid {
            *self.owner_counts.entry(owner.clone()).or_default() += 1;
        }
        if pod.has_affinity() {
            self.pods_with_affinity += 1;
        }
        self.pods.push(pod);
    }

    /// Remove the pod with `uid`; returns it if it was here.
    pub fn remove_pod(&mut self, uid: &str) -> Option<Arc<PodInfo>> {
        let at = self.pods.iter().position(|p| p.uid == uid)?;
        let pod = self.pods.swap_remove(at);
        self.requested.sub(&pod.requests);
        self.non_zero_requested.0 -= pod.non_zero.0;
        self.non_zero_requested.1 -= pod.non_zero.1;
        for hp in &pod.host_ports {
            if let Some(i) = self.used_ports.iter().position(|u| u == hp) {
                self.used_ports.swap_remove(i);
            }
        }
        if let Some(owner) = &pod.controller_uid {
            if let Some(n) = self.owner_counts.get_mut(owner) {
                *n -= 1;
                if *n == 0 {
                    self.owner_counts.remove(owner);
                }
            }
        }
        if pod.has_affinity() {
            self.pods_with_affinity -= 1;
        }
        Some(pod)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeSpec, NodeStatus};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    #[test]
    fn add_and_remove_keep_sums() {
        let node = Node {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("n1".into()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                unschedulable: Some(true),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                allocatable: Some(
                    [
                        ("cpu".to_string(), Quantity("4".into())),
                        ("memory".to_string(), Quantity("8Gi".into())),
                        ("pods".to_string(), Quantity("110".into())),
                    ]
                    .into(),
                ),
                ..Default::default()
            }),
        };
        let mut n = NodeInfo::placeholder("n1");
        n.set_node(&node);
        assert!(n.present && n.unschedulable);
        assert_eq!((n.allocatable.milli_cpu, n.allowed_pods), (4000, 110));
        let pod = |uid: &str| {
            Arc::new(PodInfo {
                uid: uid.into(),
                requests: Resources {
                    milli_cpu: 500,
                    ..Default::default()
                },
                non_zero: (500, 1),
                controller_uid: Some("rs".into()),
                host_ports: vec![HostPort {
                    protocol: "TCP".into(),
                    ip: "0.0.0.0".into(),
                    port: 80,
                }],
                ..Default::default()
            })
        };
        n.add_pod(pod("a"));
        n.add_pod(pod("b"));
        assert_eq!(n.requested.milli_cpu, 1000);
        assert_eq!(n.owner_counts["rs"], 2);
        assert!(n.remove_pod("a").is_some());
        assert!(n.remove_pod("a").is_none());
        assert_eq!(n.requested.milli_cpu, 500);
        assert_eq!(n.used_ports.len(), 1);
        assert_eq!(n.non_zero_requested, (500, 1));
        n.remove_pod("b");
        assert!(n.owner_counts.is_empty());
    }
}
