//! InterPodAffinity: required pod affinity and anti-affinity of the
//! incoming pod, the required anti-affinity of pods already placed, and
//! the preferred terms of both as scores.
//!
//! Upstream counterpart: `plugins/interpodaffinity` (`filtering.go`,
//! `scoring.go`). Like upstream, the pre-filter counts matching pods per
//! topology pair (key, value) once, so each node check is a few map
//! lookups; the pass over existing pods is skipped entirely when neither
//! the pod nor any placed pod has affinity terms.

use std::collections::HashMap;

use crate::cache::Cache;
use crate::framework::{CycleState, FilterPlugin, ScorePlugin, Status, MAX_NODE_SCORE};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;

pub const NAME: &str = "InterPodAffinity";
pub const REASON_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const REASON_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub const REASON_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

/// Upstream's `hardPodAffinityWeight` default: how much an existing pod's
/// required affinity to the incoming pod counts in scoring.
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

/// Counts per topology key, then value.
pub type Counts = HashMap<String, HashMap<String, i64>>;

fn bump(c: &mut Counts, key: &str, node: &NodeInfo, delta: i64) {
    if let Some(v) = node.labels.get(key) {
        *c.entry(key.to_string())
            .or_default()
            .entry(v.clone())
            .or_default() += delta;
    }
}

fn count_at(c: &Counts, key: &str, value: &str) -> i64 {
    c.get(key).and_then(|m| m.get(value)).copied().unwrap_or(0)
}

/// Sum of the counts at every (key, value) label of `node`.
fn sum_on(c: &Counts, node: &NodeInfo) -> i64 {
    c.iter()
        .filter_map(|(k, m)| node.labels.get(k).and_then(|v| m.get(v)))
        .sum()
}

#[derive(Clone, Debug, Default)]
pub struct FilterState {
    /// Pairs where a placed pod's required anti-affinity forbids the pod.
    existing_anti: Counts,
    /// Pairs holding pods that match all the pod's required affinity terms.
    affinity: Counts,
    /// Pairs holding pods that match one of its required anti-affinity terms.
    anti: Counts,
}

#[derive(Clone, Debug, Default)]
pub struct ScoreState {
    pairs: Counts,
}

pub struct InterPodAffinity;

fn update(s: &mut FilterState, pod: &PodInfo, other: &PodInfo, node: &NodeInfo, delta: i64) {
    for t in &other.required_anti_affinity {
        if t.matches(pod) {
            bump(&mut s.existing_anti, &t.topology_key, node, delta);
        }
    }
    if !pod.required_affinity.is_empty() && pod.required_affinity.iter().all(|t| t.matches(other)) {
        for t in &pod.required_affinity {
            bump(&mut s.affinity, &t.topology_key, node, delta);
        }
    }
    for t in &pod.required_anti_affinity {
        if t.matches(other) {
            bump(&mut s.anti, &t.topology_key, node, delta);
        }
    }
}

fn has_required(pod: &PodInfo) -> bool {
    !pod.required_affinity.is_empty() || !pod.required_anti_affinity.is_empty()
}

impl FilterPlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        cache: &Cache,
    ) -> Result<(), Status> {
        if !has_required(pod) && cache.pods_with_affinity == 0 {
            state.inter_pod = None;
            return Ok(());
        }
        let mut s = FilterState::default();
        for node in cache.nodes() {
            if !has_required(pod) && node.pods_with_affinity == 0 {
                continue;
            }
            for other in &node.pods {
                if other.uid != pod.uid {
                    update(&mut s, pod, other, node, 1);
                }
            }
        }
        state.inter_pod = Some(s);
        Ok(())
    }

    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = &state.inter_pod else {
            return Status::success();
        };
        if !pod.required_affinity.is_empty() {
            let mut pods_exist = true;
            for t in &pod.required_affinity {
                match node.labels.get(&t.topology_key) {
                    None => return Status::unresolvable(NAME, REASON_AFFINITY),
                    Some(v) => {
                        if count_at(&s.affinity, &t.topology_key, v) <= 0 {
                            pods_exist = false;
                        }
                    }
                }
            }
            // The first pod of a group with affinity to itself may go
            // anywhere its topology keys exist, or it would wait forever.
            let none_anywhere = s
                .affinity
                .values()
                .flat_map(|m| m.values())
                .all(|c| *c <= 0);
            let self_match = pod.required_affinity.iter().all(|t| t.matches(pod));
            if !(pods_exist || (none_anywhere && self_match)) {
                return Status::unresolvable(NAME, REASON_AFFINITY);
            }
        }
        for t in &pod.required_anti_affinity {
            if let Some(v) = node.labels.get(&t.topology_key) {
                if count_at(&s.anti, &t.topology_key, v) > 0 {
                    return Status::unschedulable(NAME, REASON_ANTI_AFFINITY);
                }
            }
        }
        if sum_on(&s.existing_anti, node) > 0 {
            return Status::unschedulable(NAME, REASON_EXISTING_ANTI_AFFINITY);
        }
        Status::success()
    }

    fn add_pod(&self, state: &mut CycleState, pod: &PodInfo, other: &PodInfo, node: &NodeInfo) {
        if let Some(s) = &mut state.inter_pod {
            update(s, pod, other, node, 1);
        }
    }

    fn remove_pod(&self, state: &mut CycleState, pod: &PodInfo, other: &PodInfo, node: &NodeInfo) {
        if let Some(s) = &mut state.inter_pod {
            update(s, pod, other, node, -1);
        }
    }
}

fn has_preferred(pod: &PodInfo) -> bool {
    !pod.preferred_affinity.is_empty() || !pod.preferred_anti_affinity.is_empty()
}

impl ScorePlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn weight(&self) -> i64 {
        2
    }

    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo, _: &[&NodeInfo], cache: &Cache) {
        let mine = has_preferred(pod);
        if !mine && cache.pods_with_affinity == 0 {
            state.inter_pod_score = None;
            return;
        }
        let mut pairs = Counts::new();
        for node in cache.nodes() {
            if !mine && node.pods_with_affinity == 0 {
                continue;
            }
            for e in &node.pods {
                if e.uid == pod.uid || (!mine && !e.has_affinity()) {
                    continue;
                }
                for (w, t) in &pod.preferred_affinity {
                    if t.matches(e) {
                        bump(&mut pairs, &t.topology_key, node, i64::from(*w));
                    }
                }
                for (w, t) in &pod.preferred_anti_affinity {
                    if t.matches(e) {
                        bump(&mut pairs, &t.topology_key, node, -i64::from(*w));
                    }
                }
                for t in &e.required_affinity {
                    if t.matches(pod) {
                        bump(&mut pairs, &t.topology_key, node, HARD_POD_AFFINITY_WEIGHT);
                    }
                }
                for (w, t) in &e.preferred_affinity {
                    if t.matches(pod) {
                        bump(&mut pairs, &t.topology_key, node, i64::from(*w));
                    }
                }
                for (w, t) in &e.preferred_anti_affinity {
                    if t.matches(pod) {
                        bump(&mut pairs, &t.topology_key, node, -i64::from(*w));
                    }
                }
            }
        }
        state.inter_pod_score = Some(ScoreState { pairs });
    }

    fn score(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> i64 {
        state
            .inter_pod_score
            .as_ref()
            .map_or(0, |s| sum_on(&s.pairs, node))
    }

    fn normalize(&self, _: &CycleState, _: &[&NodeInfo], scores: &mut [i64]) {
        let min = scores.iter().copied().min().unwrap_or(0);
        let max = scores.iter().copied().max().unwrap_or(0);
        let diff = max - min;
        for s in scores.iter_mut() {
            *s = if diff > 0 {
                MAX_NODE_SCORE * (*s - min) / diff
            } else {
                0
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::plugins::testutil::pod;
    use crate::podinfo::{AffinityTerm, Namespaces};
    use k8s_openapi::api::core::v1::Node;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
    use std::sync::Arc;

    fn term(app: &str, key: &str) -> AffinityTerm {
        AffinityTerm {
            namespaces: Namespaces::List(vec!["default".into()]),
            selector: Some(LabelSelector {
                match_labels: Some([("app".to_string(), app.to_string())].into()),
                match_expressions: None,
            }),
            topology_key: key.into(),
        }
    }

    const HOST: &str = "kubernetes.io/hostname";

    /// A cache with nodes a (zone z1), b (zone z1) and c (zone z2), and the
    /// given pods placed.
    fn cluster(pods: Vec<(PodInfo, &str)>) -> Cache {
        let mut c = Cache::default();
        for (name, zone) in [("a", "z1"), ("b", "z1"), ("c", "z2")] {
            c.upsert_node(&Node {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    labels: Some(
                        [
                            (HOST.to_string(), name.to_string()),
                            ("zone".to_string(), zone.to_string()),
                        ]
                        .into(),
                    ),
                    ..Default::default()
                },
                ..Default::default()
            });
        }
        for (mut p, n) in pods {
            p.node_name = n.into();
            c.add_pod(Arc::new(p));
        }
        c
    }

    fn run(c: &Cache, p: &PodInfo) -> Vec<Status> {
        let mut st = CycleState::default();
        InterPodAffinity.pre_filter(&mut st, p, c).unwrap();
        c.nodes()
            .iter()
            .map(|n| FilterPlugin::filter(&InterPodAffinity, &st, p, n))
            .collect()
    }

    #[test]
    fn required_anti_affinity_spreads() {
        let c = cluster(vec![(pod("web-1", &[("app", "web")]), "a")]);
        let mut p = pod("web-2", &[("app", "web")]);
        p.required_anti_affinity = vec![term("web", HOST)];
        let s = run(&c, &p);
        assert_eq!(s[0].code, Code::Unschedulable);
        assert_eq!(s[0].reasons, vec![REASON_ANTI_AFFINITY]);
        assert!(s[1].is_success() && s[2].is_success());
        // By zone: a and b share z1.
        p.required_anti_affinity = vec![term("web", "zone")];
        let s = run(&c, &p);
        assert!(!s[0].is_success() && !s[1].is_success() && s[2].is_success());
    }

    #[test]
    fn existing_pods_anti_affinity() {
        let mut guard = pod("guard", &[("app", "guard")]);
        guard.required_anti_affinity = vec![term("web", HOST)];
        let c = cluster(vec![(guard, "b")]);
        let s = run(&c, &pod("web", &[("app", "web")]));
        assert!(s[0].is_success());
        assert_eq!(s[1].reasons, vec![REASON_EXISTING_ANTI_AFFINITY]);
    }

    #[test]
    fn required_affinity_and_first_of_group() {
        let c = cluster(vec![(pod("db", &[("app", "db")]), "c")]);
        let mut p = pod("api", &[("app", "api")]);
        p.required_affinity = vec![term("db", "zone")];
        let s = run(&c, &p);
        assert_eq!(s[0].code, Code::UnschedulableAndUnresolvable);
        assert_eq!(s[0].reasons, vec![REASON_AFFINITY]);
        assert!(s[2].is_success());
        // A pod with affinity to its own kind, none placed yet: anywhere.
        let mut first = pod("cache-0", &[("app", "cache")]);
        first.required_affinity = vec![term("cache", "zone")];
        assert!(run(&c, &first).iter().all(Status::is_success));
    }

    #[test]
    fn preemption_extensions() {
        let c = cluster(vec![(pod("web-1", &[("app", "web")]), "a")]);
        let mut p = pod("web-2", &[("app", "web")]);
        p.required_anti_affinity = vec![term("web", HOST)];
        let mut st = CycleState::default();
        InterPodAffinity.pre_filter(&mut st, &p, &c).unwrap();
        let a = c.node("a").unwrap();
        let victim = a.pods[0].clone();
        InterPodAffinity.remove_pod(&mut st, &p, &victim, a);
        assert!(FilterPlugin::filter(&InterPodAffinity, &st, &p, a).is_success());
        InterPodAffinity.add_pod(&mut st, &p, &victim, a);
        assert!(!FilterPlugin::filter(&InterPodAffinity, &st, &p, a).is_success());
    }

    #[test]
    fn preferred_scores() {
        let c = cluster(vec![(pod("db", &[("app", "db")]), "c")]);
        let mut p = pod("api", &[("app", "api")]);
        p.preferred_affinity = vec![(10, term("db", "zone"))];
        let mut st = CycleState::default();
        let nodes: Vec<&NodeInfo> = c.nodes().iter().collect();
        InterPodAffinity.pre_score(&mut st, &p, &nodes, &c);
        let mut scores: Vec<i64> = nodes
            .iter()
            .map(|n| ScorePlugin::score(&InterPodAffinity, &st, &p, n))
            .collect();
        assert_eq!(scores, vec![0, 0, 10]);
        InterPodAffinity.normalize(&st, &nodes, &mut scores);
        assert_eq!(scores, vec![0, 0, 100]);
        p.preferred_affinity.clear();
        p.preferred_anti_affinity = vec![(10, term("db", "zone"))];
        InterPodAffinity.pre_score(&mut st, &p, &nodes, &c);
        let mut scores: Vec<i64> = nodes
            .iter()
            .map(|n| ScorePlugin::score(&InterPodAffinity, &st, &p, n))
            .collect();
        InterPodAffinity.normalize(&st, &nodes, &mut scores);
        assert_eq!(scores, vec![100, 100, 0]);
    }
}
