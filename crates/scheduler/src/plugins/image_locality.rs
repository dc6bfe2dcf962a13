//! ImageLocality: prefer nodes that already hold the pod's images, the
//! more so the larger the images and the fewer nodes hold them.
//!
//! Upstream counterpart: `plugins/imagelocality`. Each of the pod's
//! images present on a node adds its size scaled by the share of nodes
//! holding it (so an image everywhere does not pull pods together); the
//! sum is clamped between 23 MiB and 1000 MiB per container and mapped
//! onto 0..=100. Image names without a tag are taken as `:latest`, as the
//! kubelet reports them.

use std::collections::HashMap;

use crate::cache::Cache;
use crate::framework::{CycleState, ScorePlugin, MAX_NODE_SCORE};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;

pub const NAME: &str = "ImageLocality";

const MB: i64 = 1024 * 1024;
const MIN_THRESHOLD: i64 = 23 * MB;
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

/// `name` with `:latest` when it carries no tag (a ':' after the last '/').
pub fn normalize(name: &str) -> String {
    let colon = name.rfind(':');
    let slash = name.rfind('/');
    match (colon, slash) {
        (Some(c), Some(s)) if c > s => name.to_string(),
        (Some(_), None) => name.to_string(),
        _ => format!("{name}:latest"),
    }
}

/// Per pod: how many nodes hold each of its images, and how many nodes
/// there are.
#[derive(Clone, Debug, Default)]
pub struct ScoreState {
    holders: HashMap<String, usize>,
    total: usize,
}

pub struct ImageLocality;

/// The 0..=100 score of `sum` bytes over `containers` containers.
fn priority(sum: i64, containers: usize) -> i64 {
    let max = MAX_CONTAINER_THRESHOLD * containers.max(1) as i64;
    let sum = sum.clamp(MIN_THRESHOLD, max);
    MAX_NODE_SCORE * (sum - MIN_THRESHOLD) / (max - MIN_THRESHOLD)
}

impl ScorePlugin for ImageLocality {
    fn name(&self) -> &'static str {
        NAME
    }

    fn weight(&self) -> i64 {
        1
    }

    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[&NodeInfo],
        cache: &Cache,
    ) {
        if pod.images.is_empty() {
            state.images = None;
            return;
        }
        let mut s = ScoreState::default();
        for node in cache.nodes().iter().filter(|n| n.present) {
            s.total += 1;
            for image in &pod.images {
                if node.images.contains_key(image) {
                    *s.holders.entry(image.clone()).or_default() += 1;
                }
            }
        }
        state.images = Some(s);
    }

    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(s) = &state.images else {
            return 0;
        };
        let sum: i64 = pod
            .images
            .iter()
            .filter_map(|image| {
                let size = *node.images.get(image)?;
                let holders = *s.holders.get(image)?;
                Some((size as f64 * holders as f64 / s.total.max(1) as f64) as i64)
            })
            .sum();
        priority(sum, pod.images.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerImage, Node, NodeStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node(name: &str, images: &[(&str, i64)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: None,
            status: Some(NodeStatus {
                images: Some(
                    images
                        .iter()
                        .map(|(n, size)| ContainerImage {
                            names: Some(vec![n.to_string()]),
                            size_bytes: Some(*size),
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn names_get_latest_when_untagged() {
        assert_eq!(normalize("busybox"), "busybox:latest");
        assert_eq!(normalize("busybox:1.36"), "busybox:1.36");
        assert_eq!(normalize("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(normalize("localhost:5000/app:v1"), "localhost:5000/app:v1");
    }

    #[test]
    fn big_images_on_few_nodes_score_high() {
        let mut c = Cache::default();
        c.upsert_node(&node("has", &[("big:1", 500 * MB), ("common:1", 500 * MB)]));
        c.upsert_node(&node("none", &[("common:1", 500 * MB)]));
        let pod = PodInfo {
            images: vec!["big:1".into()],
            ..Default::default()
        };
        let nodes: Vec<&NodeInfo> = c.nodes().iter().collect();
        let mut st = CycleState::default();
        ImageLocality.pre_score(&mut st, &pod, &nodes, &c);
        let scores: Vec<i64> = nodes
            .iter()
            .map(|n| ImageLocality.score(&st, &pod, n))
            .collect();
        // 500 MiB on half the nodes: 250 MiB of 23..1000.
        assert_eq!(scores, vec![(250 - 23) * 100 / (1000 - 23), 0]);
        // An image every node has still counts in full, but the same for all.
        let everywhere = PodInfo {
            images: vec!["common:1".into()],
            ..Default::default()
        };
        ImageLocality.pre_score(&mut st, &everywhere, &nodes, &c);
        let a = ImageLocality.score(&st, &everywhere, nodes[0]);
        let b = ImageLocality.score(&st, &everywhere, nodes[1]);
        assert_eq!(a, b);
        assert_eq!(priority(0, 1), 0);
        assert_eq!(priority(5000 * MB, 2), 100);
    }
}
