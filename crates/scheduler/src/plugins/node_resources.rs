//! NodeResourcesFit (filter: requests against allocatable and the pod
//! count; score: LeastAllocated) and NodeResourcesBalancedAllocation.
//!
//! Upstream counterparts: `plugins/noderesources/fit.go`,
//! `least_allocated.go` and `balanced_allocation.go`, with the default cpu
//! and memory weights of 1. Scores count unset requests at upstream's
//! non-zero defaults so that best-effort pods still spread.

use crate::framework::{CycleState, FilterPlugin, ScorePlugin, Status, MAX_NODE_SCORE};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;

pub const NAME: &str = "NodeResourcesFit";
pub const BALANCED: &str = "NodeResourcesBalancedAllocation";

pub struct Fit;
pub struct BalancedAllocation;

/// Every reason `pod` does not fit on `node`, in upstream's order.
pub fn insufficient(pod: &PodInfo, node: &NodeInfo) -> Vec<String> {
    let mut out = Vec::new();
    if node.pods.len() as i64 + 1 > node.allowed_pods {
        out.push("Too many pods".to_string());
    }
    let req = &pod.requests;
    if req.is_zero() {
        return out;
    }
    let (alloc, used) = (&node.allocatable, &node.requested);
    if req.milli_cpu > 0 && req.milli_cpu > alloc.milli_cpu - used.milli_cpu {
        out.push("Insufficient cpu".into());
    }
    if req.memory > 0 && req.memory > alloc.memory - used.memory {
        out.push("Insufficient memory".into());
    }
    if req.ephemeral_storage > 0
        && req.ephemeral_storage > alloc.ephemeral_storage - used.ephemeral_storage
    {
        out.push("Insufficient ephemeral-storage".into());
    }
    for (name, want) in &req.scalar {
        if *want > 0 && *want > alloc.scalar(name) - used.scalar(name) {
            out.push(format!("Insufficient {name}"));
        }
    }
    out
}

impl FilterPlugin for Fit {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let reasons = insufficient(pod, node);
        if reasons.is_empty() {
            Status::success()
        } else {
            Status {
                code: crate::framework::Code::Unschedulable,
                reasons,
                plugin: NAME,
            }
        }
    }
}

fn least_requested(requested: i64, capacity: i64) -> i64 {
    if capacity <= 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

impl ScorePlugin for Fit {
    fn name(&self) -> &'static str {
        NAME
    }

    fn weight(&self) -> i64 {
        1
    }

    /// LeastAllocated over cpu and memory, weighted equally.
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let cpu = least_requested(
            node.non_zero_requested.0 + pod.non_zero.0,
            node.allocatable.milli_cpu,
        );
        let mem = least_requested(
            node.non_zero_requested.1 + pod.non_zero.1,
            node.allocatable.memory,
        );
        (cpu + mem) / 2
    }
}

impl ScorePlugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        BALANCED
    }

    fn weight(&self) -> i64 {
        1
    }

    /// 100 when cpu and memory are used in the same proportion, less the
    /// further apart they are (one minus their standard deviation).
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let frac = |used: i64, cap: i64| -> f64 {
            if cap <= 0 {
                return 1.0;
            }
            (used as f64 / cap as f64).min(1.0)
        };
        let cpu = frac(
            node.requested.milli_cpu + pod.requests.milli_cpu,
            node.allocatable.milli_cpu,
        );
        let mem = frac(
            node.requested.memory + pod.requests.memory,
            node.allocatable.memory,
        );
        let std = (cpu - mem).abs() / 2.0;
        ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::plugins::testutil::{node, place, pod};
    use crate::resources::Resources;

    fn requesting(name: &str, cpu: i64, mem: i64) -> PodInfo {
        let mut p = pod(name, &[]);
        p.requests = Resources {
            milli_cpu: cpu,
            memory: mem,
            ..Default::default()
        };
        p.non_zero = (cpu, mem);
        p
    }

    #[test]
    fn fit_reasons() {
        let st = CycleState::default();
        let mut n = node("n", &[]);
        place(&mut n, requesting("e", 3000, 1 << 30));
        assert!(FilterPlugin::filter(&Fit, &st, &requesting("p", 1000, 1 << 30), &n).is_success());
        let s = FilterPlugin::filter(&Fit, &st, &requesting("p", 1001, 8 << 30), &n);
        assert_eq!(s.code, Code::Unschedulable);
        assert_eq!(s.reasons, vec!["Insufficient cpu", "Insufficient memory"]);
        n.allowed_pods = 1;
        let s = FilterPlugin::filter(&Fit, &st, &requesting("p", 0, 0), &n);
        assert_eq!(s.reasons, vec!["Too many pods"]);
        let mut gpu = requesting("g", 0, 0);
        gpu.requests.scalar = vec![("example.com/gpu".into(), 1)];
        n.allowed_pods = 110;
        let s = FilterPlugin::filter(&Fit, &st, &gpu, &n);
        assert_eq!(s.reasons, vec!["Insufficient example.com/gpu"]);
    }

    #[test]
    fn least_allocated_prefers_emptier_nodes() {
        let st = CycleState::default();
        let empty = node("a", &[]);
        let mut busy = node("b", &[]);
        place(&mut busy, requesting("e", 2000, 4 << 30));
        let p = requesting("p", 1000, 2 << 30);
        // a: cpu (4000-1000)/4000 = 75, mem 75 -> 75; b: 25, 25 -> 25.
        assert_eq!(ScorePlugin::score(&Fit, &st, &p, &empty), 75);
        assert_eq!(ScorePlugin::score(&Fit, &st, &p, &busy), 25);
    }

    #[test]
    fn balanced_allocation() {
        let st = CycleState::default();
        let n = node("a", &[]);
        // cpu 50%, memory 50%: perfectly balanced.
        assert_eq!(
            BalancedAllocation.score(&st, &requesting("p", 2000, 4 << 30), &n),
            100
        );
        // cpu 100%, memory 0%: std 0.5.
        assert_eq!(
            BalancedAllocation.score(&st, &requesting("p", 4000, 0), &n),
            50
        );
    }
}
