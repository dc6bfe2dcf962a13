//! The plugin framework: statuses, the per-cycle state, the filter and
//! score extension points, and the default profile's plugin order.
//!
//! Upstream counterpart: `pkg/scheduler/framework` (`Status`, `CycleState`,
//! `FilterPlugin`, `ScorePlugin`, `PreFilterExtensions.AddPod/RemovePod`)
//! and `apis/config/v1/default_plugins.go` for the order and weights. The
//! cycle state is a typed struct rather than a map of `any`: the plugin set
//! is fixed at compile time.

use crate::cache::Cache;
use crate::nodeinfo::NodeInfo;
use crate::plugins::{
    image_locality, inter_pod_affinity, node_affinity, node_name, node_ports, node_resources,
    node_unschedulable, pod_topology_spread, taint_toleration, volume_binding,
};
use crate::podinfo::PodInfo;

/// Upstream's `framework.MaxNodeScore`.
pub const MAX_NODE_SCORE: i64 = 100;

/// How a filter judged a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    Success,
    /// The node may fit after preemption.
    Unschedulable,
    /// Preempting pods on the node would not help.
    UnschedulableAndUnresolvable,
}

/// A plugin's verdict, with the reasons users see in FailedScheduling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub code: Code,
    pub reasons: Vec<String>,
    pub plugin: &'static str,
}

impl Status {
    pub fn success() -> Status {
        Status {
            code: Code::Success,
            reasons: Vec::new(),
            plugin: "",
        }
    }

    pub fn unschedulable(plugin: &'static str, reason: impl Into<String>) -> Status {
        Status {
            code: Code::Unschedulable,
            reasons: vec![reason.into()],
            plugin,
        }
    }

    pub fn unresolvable(plugin: &'static str, reason: impl Into<String>) -> Status {
        Status {
            code: Code::UnschedulableAndUnresolvable,
            reasons: vec![reason.into()],
            plugin,
        }
    }

    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }
}

/// What the pre-filter and pre-score steps computed for one pod, read by
/// the per-node steps. Cloned for each preemption dry run.
#[derive(Clone, Debug, Default)]
pub struct CycleState {
    pub inter_pod: Option<inter_pod_affinity::FilterState>,
    pub inter_pod_score: Option<inter_pod_affinity::ScoreState>,
    pub spread: Option<pod_topology_spread::FilterState>,
    pub spread_score: Option<pod_topology_spread::ScoreState>,
    pub images: Option<image_locality::ScoreState>,
    pub volumes: Option<volume_binding::State>,
}

/// A filter plugin (with its pre-filter and pre-filter extensions).
pub trait FilterPlugin: Send + Sync {
    fn name(&self) -> &'static str;

    /// Once per pod, before any node: an error rejects every node.
    fn pre_filter(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _cache: &Cache,
    ) -> Result<(), Status> {
        Ok(())
    }

    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status;

    /// Adjust the pre-filter state as if `other` now ran on `node`
    /// (preemption dry runs, nominated pods).
    fn add_pod(&self, _state: &mut CycleState, _pod: &PodInfo, _other: &PodInfo, _node: &NodeInfo) {
    }

    /// Adjust the pre-filter state as if `other` had left `node`.
    fn remove_pod(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _other: &PodInfo,
        _node: &NodeInfo,
    ) {
    }
}

/// A score plugin; scores are normalised to 0..=100 and then weighted.
pub trait ScorePlugin: Send + Sync {
    fn name(&self) -> &'static str;
    fn weight(&self) -> i64;

    /// Once per pod over the feasible nodes.
    fn pre_score(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _nodes: &[&NodeInfo],
        _cache: &Cache,
    ) {
    }

    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64;

    fn normalize(&self, _state: &CycleState, _nodes: &[&NodeInfo], _scores: &mut [i64]) {}
}

/// Scale scores so the largest becomes 100 (or, `reverse`, the smallest),
/// as upstream's `helper.DefaultNormalizeScore`.
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        *s = MAX_NODE_SCORE * *s / max;
        if reverse {
            *s = MAX_NODE_SCORE - *s;
        }
    }
}

/// The default profile: upstream's plugins in upstream's order.
pub struct Framework {
    pub filters: Vec<Box<dyn FilterPlugin>>,
    pub scorers: Vec<Box<dyn ScorePlugin>>,
}

impl Default for Framework {
    fn default() -> Framework {
        Framework {
            filters: vec![
                Box::new(node_unschedulable::NodeUnschedulable),
                Box::new(node_name::NodeName),
                Box::new(taint_toleration::TaintToleration),
                Box::new(node_affinity::NodeAffinity),
                Box::new(node_ports::NodePorts),
                Box::new(node_resources::Fit),
                Box::new(volume_binding::VolumeBinding),
                Box::new(pod_topology_spread::PodTopologySpread),
                Box::new(inter_pod_affinity::InterPodAffinity),
            ],
            scorers: vec![
                Box::new(taint_toleration::TaintToleration),
                Box::new(node_affinity::NodeAffinity),
                Box::new(node_resources::Fit),
                Box::new(node_resources::BalancedAllocation),
                Box::new(pod_topology_spread::PodTopologySpread),
                Box::new(inter_pod_affinity::InterPodAffinity),
                Box::new(image_locality::ImageLocality),
            ],
        }
    }
}

impl Framework {
    pub fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        cache: &Cache,
    ) -> Result<(), Status> {
        for f in &self.filters {
            f.pre_filter(state, pod, cache)?;
        }
        Ok(())
    }

    /// Run the filters in order, stopping at the first that fails.
    pub fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        for f in &self.filters {
            let s = f.filter(state, pod, node);
            if !s.is_success() {
                return s;
            }
        }
        Status::success()
    }

    pub fn add_pod(&self, state: &mut CycleState, pod: &PodInfo, other: &PodInfo, node: &NodeInfo) {
        for f in &self.filters {
            f.add_pod(state, pod, other, node);
        }
    }

    pub fn remove_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        other: &PodInfo,
        node: &NodeInfo,
    ) {
        for f in &self.filters {
            f.remove_pod(state, pod, other, node);
        }
    }

    /// Weighted, normalised total score of each node in `nodes`.
    pub fn score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[&NodeInfo],
        cache: &Cache,
    ) -> Vec<i64> {
        let mut total = vec![0i64; nodes.len()];
        let mut scores = vec![0i64; nodes.len()];
        for s in &self.scorers {
            s.pre_score(state, pod, nodes, cache);
        }
        for s in &self.scorers {
            for (i, n) in nodes.iter().enumerate() {
                scores[i] = s.score(state, pod, n);
            }
            s.normalize(state, nodes, &mut scores);
            let w = s.weight();
            for (t, v) in total.iter_mut().zip(&scores) {
                *t += v * w;
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize() {
        let mut s = vec![0, 5, 10];
        default_normalize(&mut s, false);
        assert_eq!(s, vec![0, 50, 100]);
        let mut s = vec![0, 5, 10];
        default_normalize(&mut s, true);
        assert_eq!(s, vec![100, 50, 0]);
        let mut s = vec![0, 0];
        default_normalize(&mut s, true);
        assert_eq!(s, vec![100, 100]);
    }
}
