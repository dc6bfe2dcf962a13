//! Which pods the pod garbage collector deletes — pure.
//!
//! Upstream counterpart: `gcTerminated` (with `byEvictionAndCreationTimestamp`)
//! and `gcUnscheduledTerminating` in `pkg/controller/podgc/gc_controller.go`.

use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use crate::endpoints::index::{is_terminal, phase};

/// A pod's namespace and name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodId {
    pub namespace: String,
    pub name: String,
}

impl PodId {
    pub fn of(pod: &Pod) -> PodId {
        PodId {
            namespace: pod.namespace().unwrap_or_default(),
            name: pod.name_any(),
        }
    }
}

impl fmt::Display for PodId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

fn evicted(pod: &Pod) -> bool {
    phase(pod) == "Failed"
        && pod.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("Evicted")
}

/// The terminated pods beyond `threshold`: evicted ones first, then the
/// oldest. Nothing when `threshold` is 0 or less.
pub fn terminated_to_delete(pods: &[Arc<Pod>], threshold: i64) -> Vec<PodId> {
    if threshold <= 0 {
        return Vec::new();
    }
    let mut terminated: Vec<&Arc<Pod>> = pods
        .iter()
        .filter(|p| is_terminal(p) && p.metadata.deletion_timestamp.is_none())
        .collect();
    let excess = terminated.len() as i64 - threshold;
    if excess <= 0 {
        return Vec::new();
    }
    terminated.sort_by(|a, b| {
        evicted(b).cmp(&evicted(a)).then_with(|| {
            let t = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            t(a).cmp(&t(b))
                .then_with(|| a.name_any().cmp(&b.name_any()))
        })
    });
    terminated
        .into_iter()
        .take(excess as usize)
        .map(|p| PodId::of(p))
        .collect()
}

/// A pod being deleted that no node will ever finish off.
pub fn is_unscheduled_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
        && pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_none_or(str::is_empty)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, phase: &str, created: &str, extra: serde_json::Value) -> Arc<Pod> {
        let mut v = json!({
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": created},
            "spec": {"nodeName": "n1", "containers": []},
            "status": {"phase": phase}
        });
        crate::endpoints::tests::merge(&mut v, extra);
        Arc::new(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn the_oldest_terminated_pods_beyond_the_threshold_go_evicted_first() {
        let pods = vec![
            pod("new", "Succeeded", "2024-01-03T00:00:00Z", json!({})),
            pod("old", "Failed", "2024-01-01T00:00:00Z", json!({})),
            pod("running", "Running", "2023-01-01T00:00:00Z", json!({})),
            pod(
                "evicted",
                "Failed",
                "2024-01-05T00:00:00Z",
                json!({"status": {"reason": "Evicted"}}),
            ),
        ];
        let names = |ids: Vec<PodId>| ids.into_iter().map(|i| i.name).collect::<Vec<_>>();
        assert_eq!(names(terminated_to_delete(&pods, 1)), ["evicted", "old"]);
        assert!(terminated_to_delete(&pods, 3).is_empty());
        assert!(terminated_to_delete(&pods, 0).is_empty(), "0 turns it off");
    }

    #[test]
    fn only_unbound_terminating_pods_are_force_deleted() {
        let going = json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}});
        let unbound = pod("a", "Pending", "2024-01-01T00:00:00Z", going.clone());
        let mut v = serde_json::to_value(&*unbound).unwrap();
        v["spec"]["nodeName"] = serde_json::Value::Null;
        let unbound: Pod = serde_json::from_value(v).unwrap();
        assert!(is_unscheduled_terminating(&unbound));
        let bound = pod("b", "Running", "2024-01-01T00:00:00Z", going);
        assert!(!is_unscheduled_terminating(&bound));
    }
}
