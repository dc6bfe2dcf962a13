//! Builders for plugin tests.

use std::sync::Arc;

use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;
use crate::resources::Resources;

pub fn node(name: &str, labels: &[(&str, &str)]) -> NodeInfo {
    NodeInfo {
        name: name.into(),
        present: true,
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        allocatable: Resources {
            milli_cpu: 4000,
            memory: 8 << 30,
            ..Default::default()
        },
        allowed_pods: 110,
        ..Default::default()
    }
}

pub fn pod(name: &str, labels: &[(&str, &str)]) -> PodInfo {
    PodInfo {
        uid: format!("uid-{name}"),
        namespace: "default".into(),
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        scheduler_name: "default-scheduler".into(),
        non_zero: (100, 200 << 20),
        ..Default::default()
    }
}

/// Put `pod` on `node` (setting its nodeName).
pub fn place(node: &mut NodeInfo, mut pod: PodInfo) {
    pod.node_name = node.name.clone();
    node.add_pod(Arc::new(pod));
}
