//! One scheduling cycle, pure over the cache: pre-filter, filter nodes
//! (stopping once enough feasible nodes are found), score, pick.
//!
//! Upstream counterpart: `pkg/scheduler/schedule_one.go` (`schedulePod`,
//! `findNodesThatFitPod`, `numFeasibleNodesToFind`, `selectHost`). With
//! many nodes only a share is examined per pod (upstream's adaptive
//! percentageOfNodesToScore), starting where the previous pod stopped so
//! every node gets its turn. Pods nominated to a node (waiting for
//! preemption victims to leave) are counted there for pods of lower or
//! equal priority, as upstream's two-pass filter does.

use crate::cache::Cache;
use crate::framework::{Code, CycleState, Framework, Status};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;

/// Upstream's `minFeasibleNodesToFind` and `minFeasibleNodesPercentageToFind`.
const MIN_FEASIBLE_NODES: usize = 100;
const MIN_FEASIBLE_PERCENT: usize = 5;

/// Why no node was chosen.
#[derive(Debug)]
pub struct Failure {
    pub num_nodes: usize,
    /// A pre-filter rejected the pod for every node.
    pub prefilter: Option<Status>,
    /// Each rejected node (index into the cache's nodes) and why.
    pub statuses: Vec<(usize, Status)>,
    /// The cycle state, for preemption's dry runs.
    pub state: CycleState,
}

impl Failure {
    /// The plugins that rejected the pod, for the queue's event hints.
    pub fn plugins(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        let all = self
            .prefilter
            .iter()
            .chain(self.statuses.iter().map(|(_, s)| s));
        for s in all {
            if !s.plugin.is_empty() && !out.contains(&s.plugin) {
                out.push(s.plugin);
            }
        }
        out
    }
}

/// How many feasible nodes to look for among `all`.
pub fn num_feasible_nodes_to_find(all: usize, percentage: Option<usize>) -> usize {
    if all < MIN_FEASIBLE_NODES {
        return all;
    }
    let percent = percentage
        .unwrap_or_else(|| 50usize.saturating_sub(all / 125))
        .max(MIN_FEASIBLE_PERCENT);
    if percent >= 100 {
        return all;
    }
    (all * percent / 100).max(MIN_FEASIBLE_NODES)
}

/// The scheduling algorithm with its rotating start and tie-breaking.
pub struct Algorithm {
    pub framework: Framework,
    /// `percentageOfNodesToScore`; `None` for upstream's adaptive default.
    pub percentage: Option<usize>,
    next_start: usize,
    rng: u64,
}

impl Algorithm {
    pub fn new(framework: Framework, seed: u64) -> Algorithm {
        Algorithm {
            framework,
            percentage: None,
            next_start: 0,
            rng: seed | 1,
        }
    }

    fn random(&mut self) -> u64 {
        // xorshift64: cheap, good enough to break ties between nodes.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// Filter one node, counting pods nominated there of at least the
    /// pod's priority (their room is promised).
    pub fn filter_node(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
        cache: &Cache,
    ) -> Status {
        let nominated: Vec<_> = cache
            .nominated(&node.name)
            .iter()
            .filter(|n| n.uid != pod.uid && n.priority >= pod.priority)
            .cloned()
            .collect();
        if nominated.is_empty() {
            return self.framework.filter(state, pod, node);
        }
        let mut with = node.clone();
        let mut st = state.clone();
        for n in nominated {
            self.framework.add_pod(&mut st, pod, &n, node);
            with.add_pod(n);
        }
        let s = self.framework.filter(&st, pod, &with);
        if !s.is_success() {
            return s;
        }
        self.framework.filter(state, pod, node)
    }

    /// Choose a node for `pod`, or say why none fits.
    pub fn schedule(&mut self, cache: &Cache, pod: &PodInfo) -> Result<String, Box<Failure>> {
        let nodes = cache.nodes();
        let n = nodes.len();
        let mut state = CycleState::default();
        if n == 0 {
            return Err(Box::new(Failure {
                num_nodes: 0,
                prefilter: None,
                statuses: Vec::new(),
                state,
            }));
        }
        if let Err(s) = self.framework.pre_filter(&mut state, pod, cache) {
            return Err(Box::new(Failure {
                num_nodes: n,
                prefilter: Some(s),
                statuses: Vec::new(),
                state,
            }));
        }
        // A pod that preempted goes where it made room, if it still fits.
        if let Some(i) = cache.node_index(&pod.nominated_node) {
            if self.filter_node(&state, pod, &nodes[i], cache).is_success() {
                return Ok(nodes[i].name.clone());
            }
        }
        let want = num_feasible_nodes_to_find(n, self.percentage);
        let mut feasible: Vec<&NodeInfo> = Vec::with_capacity(want.min(n));
        let mut statuses = Vec::new();
        let mut processed = 0;
        for k in 0..n {
            let i = (self.next_start + k) % n;
            processed += 1;
            let s = self.filter_node(&state, pod, &nodes[i], cache);
            if s.is_success() {
                feasible.push(&nodes[i]);
                if feasible.len() >= want {
                    break;
                }
            } else {
                statuses.push((i, s));
            }
        }
        self.next_start = (self.next_start + processed) % n;
        if feasible.is_empty() {
            return Err(Box::new(Failure {
                num_nodes: n,
                prefilter: None,
                statuses,
                state,
            }));
        }
        if feasible.len() == 1 {
            return Ok(feasible[0].name.clone());
        }
        let scores = self.framework.score(&mut state, pod, &feasible, cache);
        // Highest score wins; ties are broken uniformly at random
        // (reservoir sampling, as upstream's selectHost).
        let mut best = 0;
        let mut ties = 0u64;
        for (i, s) in scores.iter().enumerate() {
            if *s > scores[best] {
                best = i;
                ties = 1;
            } else if *s == scores[best] {
                ties += 1;
                if self.random().is_multiple_of(ties) {
                    best = i;
                }
            }
        }
        Ok(feasible[best].name.clone())
    }
}

/// Whether preemption could help on a node with this status.
pub fn preemption_may_help(s: &Status) -> bool {
    s.code == Code::Unschedulable
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Resources;
    use k8s_openapi::api::core::v1::{Node, NodeStatus};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::sync::Arc;

    pub(crate) fn api_node(name: &str, cpu: &str, labels: &[(&str, &str)]) -> Node {
        let mut l: std::collections::BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        l.insert("kubernetes.io/hostname".into(), name.into());
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(l),
                ..Default::default()
            },
            spec: None,
            status: Some(NodeStatus {
                allocatable: Some(
                    [
                        ("cpu".to_string(), Quantity(cpu.into())),
                        ("memory".to_string(), Quantity("8Gi".into())),
                        ("pods".to_string(), Quantity("110".into())),
                    ]
                    .into(),
                ),
                ..Default::default()
            }),
        }
    }

    fn pending(name: &str, cpu: i64) -> PodInfo {
        PodInfo {
            uid: name.into(),
            namespace: "default".into(),
            name: name.into(),
            requests: Resources {
                milli_cpu: cpu,
                ..Default::default()
            },
            non_zero: (cpu.max(100), 200 << 20),
            ..Default::default()
        }
    }

    #[test]
    fn feasible_nodes_to_find() {
        assert_eq!(num_feasible_nodes_to_find(50, None), 50);
        assert_eq!(num_feasible_nodes_to_find(1000, None), 420);
        assert_eq!(num_feasible_nodes_to_find(5000, None), 500);
        assert_eq!(num_feasible_nodes_to_find(150, None), 100);
        assert_eq!(num_feasible_nodes_to_find(1000, Some(100)), 1000);
    }

    #[test]
    fn picks_the_least_allocated_fitting_node() {
        let mut cache = Cache::default();
        cache.upsert_node(&api_node("small", "1", &[]));
        cache.upsert_node(&api_node("big", "8", &[]));
        cache.upsert_node(&api_node("busy", "8", &[]));
        let mut hog = pending("hog", 6000);
        hog.node_name = "busy".into();
        cache.add_pod(Arc::new(hog));
        let mut algo = Algorithm::new(Framework::default(), 42);
        assert_eq!(algo.schedule(&cache, &pending("p", 1500)).unwrap(), "big");
        let f = algo.schedule(&cache, &pending("p", 9000)).unwrap_err();
        assert_eq!(f.statuses.len(), 3);
        assert_eq!(f.plugins(), vec!["NodeResourcesFit"]);
    }

    #[test]
    fn spreads_equal_pods_and_samples_large_clusters() {
        let mut cache = Cache::default();
        for i in 0..1000 {
            cache.upsert_node(&api_node(&format!("n{i}"), "4", &[]));
        }
        let mut algo = Algorithm::new(Framework::default(), 7);
        let mut used = std::collections::HashSet::new();
        for i in 0..200 {
            let p = pending(&format!("p{i}"), 100);
            let node = algo.schedule(&cache, &p).unwrap();
            cache.assume(&p, &node);
            used.insert(node);
        }
        assert!(used.len() > 150, "pods spread over nodes: {}", used.len());
        assert_eq!(algo.next_start, (200 * 420) % 1000);
    }

    #[test]
    fn nominated_pods_hold_their_room() {
        let mut cache = Cache::default();
        cache.upsert_node(&api_node("a", "1", &[]));
        let mut big = pending("big", 800);
        big.priority = 100;
        cache.set_nominated(Arc::new(big), "a");
        let mut algo = Algorithm::new(Framework::default(), 1);
        assert!(algo.schedule(&cache, &pending("small", 500)).is_err());
        let mut higher = pending("higher", 500);
        higher.priority = 1000;
        assert_eq!(algo.schedule(&cache, &higher).unwrap(), "a");
    }
}
