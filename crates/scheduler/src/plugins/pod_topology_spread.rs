//! PodTopologySpread: `whenUnsatisfiable: DoNotSchedule` constraints filter
//! nodes whose domain would exceed maxSkew; `ScheduleAnyway` constraints
//! (or, for pods without any, the cluster defaults) score nodes by how few
//! matching pods their domains hold.
//!
//! Upstream counterpart: `plugins/podtopologyspread`. The system default
//! constraints are upstream's (hostname maxSkew 3, zone maxSkew 5, both
//! ScheduleAnyway). Upstream selects the pod's siblings through the
//! Services, ReplicaSets and StatefulSets that select it; here the
//! controllers' part is the pod's controlling owner (the same set for
//! workload-created pods, and one map lookup per node), and the Services
//! selecting the pod ([`super::service_selectors`]) narrow it to the pods
//! their selectors match — or, for a pod without an owner, make the set.

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::TopologySpreadConstraint;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::cache::Cache;
use crate::framework::{CycleState, FilterPlugin, ScorePlugin, Status, MAX_NODE_SCORE};
use crate::nodeinfo::NodeInfo;
use crate::plugins::node_affinity::required_matches;
use crate::podinfo::PodInfo;
use crate::selectors::selector_matches;

pub const NAME: &str = "PodTopologySpread";
pub const REASON: &str = "node(s) didn't match pod topology spread constraints";
pub const REASON_MISSING_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

const HOSTNAME: &str = "kubernetes.io/hostname";
const ZONE: &str = "topology.kubernetes.io/zone";

/// Which pods a constraint counts.
#[derive(Clone, Debug)]
enum Matcher {
    Selector(Option<LabelSelector>),
    Owner(String),
    /// The default spreading of a pod some Service selects: pods with
    /// all these labels (and the same owner, if any).
    Default {
        owner: Option<String>,
        labels: crate::selectors::Labels,
    },
}

#[derive(Clone, Debug)]
struct Constraint {
    max_skew: i64,
    key: String,
    min_domains: usize,
    matcher: Matcher,
}

impl Constraint {
    fn from_api(pod: &PodInfo, c: &TopologySpreadConstraint) -> Constraint {
        // matchLabelKeys: the pod's own values for those keys join the
        // selector.
        let mut selector = c.label_selector.clone();
        if let Some(sel) = selector.as_mut() {
            for key in c.match_label_keys.iter().flatten() {
                if let Some(v) = pod.labels.get(key) {
                    sel.match_labels
                        .get_or_insert_with(Default::default)
                        .insert(key.clone(), v.clone());
                }
            }
        }
        Constraint {
            max_skew: i64::from(c.max_skew),
            key: c.topology_key.clone(),
            min_domains: c.min_domains.unwrap_or(1).max(1) as usize,
            matcher: Matcher::Selector(selector),
        }
    }

    fn matches(&self, ns: &str, other: &PodInfo) -> bool {
        if other.namespace != ns || other.deleting {
            return false;
        }
        match &self.matcher {
            Matcher::Selector(s) => s
                .as_ref()
                .is_some_and(|s| selector_matches(s, &other.labels)),
            Matcher::Owner(uid) => other.controller_uid.as_deref() == Some(uid),
            Matcher::Default { owner, labels } => {
                owner
                    .as_ref()
                    .is_none_or(|o| other.controller_uid.as_ref() == Some(o))
                    && labels.iter().all(|(k, v)| other.labels.get(k) == Some(v))
            }
        }
    }

    fn count_on(&self, ns: &str, node: &NodeInfo) -> i64 {
        match &self.matcher {
            Matcher::Owner(uid) => node.owner_counts.get(uid).copied().unwrap_or(0) as i64,
            Matcher::Selector(_) | Matcher::Default { .. } => {
                node.pods.iter().filter(|p| self.matches(ns, p)).count() as i64
            }
        }
    }
}

fn constraints(pod: &PodInfo, when: &str) -> Vec<Constraint> {
    pod.spread_constraints
        .iter()
        .filter(|c| c.when_unsatisfiable == when)
        .map(|c| Constraint::from_api(pod, c))
        .collect()
}

fn has_keys(cs: &[Constraint], node: &NodeInfo) -> bool {
    cs.iter().all(|c| node.labels.contains_key(&c.key))
}

#[derive(Clone, Debug, Default)]
pub struct FilterState {
    constraints: Vec<Constraint>,
    /// Per constraint: matching pods per domain (topology value).
    counts: Vec<HashMap<String, i64>>,
    /// Per constraint: the smallest count over domains (0 when there are
    /// fewer domains than minDomains).
    mins: Vec<i64>,
}

impl FilterState {
    fn recompute_min(&mut self, i: usize) {
        let c = &self.counts[i];
        self.mins[i] = if c.len() < self.constraints[i].min_domains {
            0
        } else {
            c.values().copied().min().unwrap_or(0)
        };
    }

    fn update(&mut self, pod: &PodInfo, other: &PodInfo, node: &NodeInfo, delta: i64) {
        if !has_keys(&self.constraints, node) || !required_matches(pod, node) {
            return;
        }
        for i in 0..self.constraints.len() {
            if self.constraints[i].matches(&pod.namespace, other) {
                let v = &node.labels[&self.constraints[i].key];
                *self.counts[i].entry(v.clone()).or_default() += delta;
                self.recompute_min(i);
            }
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct ScoreState {
    constraints: Vec<Constraint>,
    /// Per constraint: matching pods per domain (not used for hostname).
    counts: Vec<HashMap<String, i64>>,
    weights: Vec<f64>,
    ignored: HashSet<String>,
}

pub struct PodTopologySpread;

impl FilterPlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        cache: &Cache,
    ) -> Result<(), Status> {
        let cs = constraints(pod, "DoNotSchedule");
        if cs.is_empty() {
            state.spread = None;
            return Ok(());
        }
        let mut s = FilterState {
            counts: vec![HashMap::new(); cs.len()],
            mins: vec![0; cs.len()],
            constraints: cs,
        };
        for node in cache.nodes() {
            if !has_keys(&s.constraints, node) || !required_matches(pod, node) {
                continue;
            }
            for (i, c) in s.constraints.iter().enumerate() {
                let n = c.count_on(&pod.namespace, node);
                *s.counts[i].entry(node.labels[&c.key].clone()).or_default() += n;
            }
        }
        for i in 0..s.constraints.len() {
            s.recompute_min(i);
        }
        state.spread = Some(s);
        Ok(())
    }

    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = &state.spread else {
            return Status::success();
        };
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(v) = node.labels.get(&c.key) else {
                return Status::unresolvable(NAME, REASON_MISSING_LABEL);
            };
            let self_match = i64::from(c.matches(&pod.namespace, pod));
            let count = s.counts[i].get(v).copied().unwrap_or(0);
            if count + self_match - s.mins[i] > c.max_skew {
                return Status::unschedulable(NAME, REASON);
            }
        }
        Status::success()
    }

    fn add_pod(&self, state: &mut CycleState, pod: &PodInfo, other: &PodInfo, node: &NodeInfo) {
        if let Some(s) = &mut state.spread {
            s.update(pod, other, node, 1);
        }
    }

    fn remove_pod(&self, state: &mut CycleState, pod: &PodInfo, other: &PodInfo, node: &NodeInfo) {
        if let Some(s) = &mut state.spread {
            s.update(pod, other, node, -1);
        }
    }
}

/// The constraints a pod is scored by, and whether nodes lacking a key are
/// ignored (only for the pod's own constraints, as upstream).
fn score_constraints(pod: &PodInfo) -> (Vec<Constraint>, bool) {
    if !pod.spread_constraints.is_empty() {
        return (constraints(pod, "ScheduleAnyway"), true);
    }
    let matcher = match (&pod.controller_uid, pod.service_selector()) {
        (None, None) => return (Vec::new(), false),
        (Some(owner), None) => Matcher::Owner(owner.clone()),
        (owner, Some(labels)) => Matcher::Default {
            owner: owner.clone(),
            labels,
        },
    };
    let default = |key: &str, max_skew| Constraint {
        max_skew,
        key: key.into(),
        min_domains: 1,
        matcher: matcher.clone(),
    };
    (vec![default(HOSTNAME, 3), default(ZONE, 5)], false)
}

impl ScorePlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }

    fn weight(&self) -> i64 {
        2
    }

    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo, nodes: &[&NodeInfo], cache: &Cache) {
        let (cs, require_all) = score_constraints(pod);
        if cs.is_empty() {
            state.spread_score = None;
            return;
        }
        let mut s = ScoreState {
            counts: vec![HashMap::new(); cs.len()],
            weights: vec![0.0; cs.len()],
            ..ScoreState::default()
        };
        let mut domains: Vec<HashSet<&str>> = vec![HashSet::new(); cs.len()];
        for n in nodes {
            if require_all && !has_keys(&cs, n) {
                s.ignored.insert(n.name.clone());
                continue;
            }
            for (i, c) in cs.iter().enumerate() {
                // Hostname domains are the nodes themselves: counted
                // below, not hashed per node and pod.
                if c.key == HOSTNAME {
                    continue;
                }
                if let Some(v) = n.labels.get(&c.key) {
                    if domains[i].insert(v) {
                        s.counts[i].insert(v.clone(), 0);
                    }
                }
            }
        }
        for (i, d) in domains.iter().enumerate() {
            // Upstream sizes the hostname topology as the candidate nodes
            // not ignored (`initPreScoreState`).
            let size = if cs[i].key == HOSTNAME {
                nodes.len() - s.ignored.len()
            } else {
                d.len()
            };
            s.weights[i] = ((size + 2) as f64).ln();
        }
        let needs_counts = cs
            .iter()
            .enumerate()
            .any(|(i, c)| c.key != HOSTNAME && !s.counts[i].is_empty());
        if needs_counts {
            for node in cache.nodes() {
                if (require_all && !has_keys(&cs, node)) || !required_matches(pod, node) {
                    continue;
                }
                for (i, c) in cs.iter().enumerate() {
                    if c.key == HOSTNAME {
                        continue;
                    }
                    let Some(v) = node.labels.get(&c.key) else {
                        continue;
                    };
                    if let Some(slot) = s.counts[i].get_mut(v) {
                        *slot += c.count_on(&pod.namespace, node);
                    }
                }
            }
        }
        s.constraints = cs;
        state.spread_score = Some(s);
    }

    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(s) = &state.spread_score else {
            return 0;
        };
        if s.ignored.contains(&node.name) {
            return 0;
        }
        let mut score = 0.0;
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(v) = node.labels.get(&c.key) else {
                continue;
            };
            let count = if c.key == HOSTNAME {
                c.count_on(&pod.namespace, node)
            } else {
                s.counts[i].get(v).copied().unwrap_or(0)
            };
            score += count as f64 * s.weights[i] + (c.max_skew - 1) as f64;
        }
        score.round() as i64
    }

    /// Fewer matching pods score higher: 100 * (max + min - s) / max.
    fn normalize(&self, state: &CycleState, nodes: &[&NodeInfo], scores: &mut [i64]) {
        let Some(s) = &state.spread_score else {
            scores.iter_mut().for_each(|v| *v = 0);
            return;
        };
        let ignored = |i: usize| nodes.get(i).is_some_and(|n| s.ignored.contains(&n.name));
        let (mut min, mut max) = (i64::MAX, 0i64);
        for (i, v) in scores.iter().enumerate() {
            if !ignored(i) {
                min = min.min(*v);
                max = max.max(*v);
            }
        }
        for (i, v) in scores.iter_mut().enumerate() {
            *v = if ignored(i) {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - *v) / max
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::plugins::testutil::pod;
    use k8s_openapi::api::core::v1::Node;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::sync::Arc;

    fn cluster(nodes: &[(&str, Option<&str>)], pods: Vec<(PodInfo, &str)>) -> Cache {
        let mut c = Cache::default();
        for (name, zone) in nodes {
            let mut labels: std::collections::BTreeMap<String, String> =
                [(HOSTNAME.to_string(), name.to_string())].into();
            if let Some(z) = zone {
                labels.insert(ZONE.into(), z.to_string());
            }
            c.upsert_node(&Node {
                metadata: ObjectMeta {
                    name: Some(name.to_string()),
                    labels: Some(labels),
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

    fn web(name: &str) -> PodInfo {
        pod(name, &[("app", "web")])
    }

    fn constraint(key: &str, max_skew: i32, when: &str) -> TopologySpreadConstraint {
        TopologySpreadConstraint {
            max_skew,
            topology_key: key.into(),
            when_unsatisfiable: when.into(),
            label_selector: Some(LabelSelector {
                match_labels: Some([("app".to_string(), "web".to_string())].into()),
                match_expressions: None,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn do_not_schedule_skew() {
        let c = cluster(
            &[("a", Some("z1")), ("b", Some("z2")), ("c", None)],
            vec![(web("w1"), "a"), (web("w2"), "a")],
        );
        let mut p = web("w3");
        p.spread_constraints = vec![constraint(ZONE, 1, "DoNotSchedule")];
        let mut st = CycleState::default();
        PodTopologySpread.pre_filter(&mut st, &p, &c).unwrap();
        let f = |st: &CycleState, n: &str| {
            FilterPlugin::filter(&PodTopologySpread, st, &p, c.node(n).unwrap())
        };
        // z1 holds 2, z2 holds 0: z1 would make skew 3.
        assert_eq!(f(&st, "a").reasons, vec![REASON]);
        assert_eq!(f(&st, "a").code, Code::Unschedulable);
        assert!(f(&st, "b").is_success());
        let missing = f(&st, "c");
        assert_eq!(missing.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(missing.reasons, vec![REASON_MISSING_LABEL]);
        // Removing one pod from z1 (a preemption dry run) brings skew to 2.
        let a = c.node("a").unwrap();
        let victim = a.pods[0].clone();
        PodTopologySpread.remove_pod(&mut st, &p, &victim, a);
        assert_eq!(f(&st, "a").code, Code::Unschedulable);
        PodTopologySpread.remove_pod(&mut st, &p, &a.pods[1].clone(), a);
        assert!(f(&st, "a").is_success());
    }

    #[test]
    fn min_domains_treats_missing_domains_as_empty() {
        let c = cluster(&[("a", Some("z1"))], vec![(web("w1"), "a")]);
        let mut p = web("w2");
        let mut con = constraint(ZONE, 1, "DoNotSchedule");
        p.spread_constraints = vec![con.clone()];
        let mut st = CycleState::default();
        PodTopologySpread.pre_filter(&mut st, &p, &c).unwrap();
        let a = c.node("a").unwrap();
        assert!(FilterPlugin::filter(&PodTopologySpread, &st, &p, a).is_success());
        con.min_domains = Some(2);
        p.spread_constraints = vec![con];
        PodTopologySpread.pre_filter(&mut st, &p, &c).unwrap();
        assert!(!FilterPlugin::filter(&PodTopologySpread, &st, &p, a).is_success());
    }

    fn scores(c: &Cache, p: &PodInfo) -> Vec<i64> {
        let nodes: Vec<&NodeInfo> = c.nodes().iter().collect();
        let mut st = CycleState::default();
        PodTopologySpread.pre_score(&mut st, p, &nodes, c);
        let mut s: Vec<i64> = nodes
            .iter()
            .map(|n| ScorePlugin::score(&PodTopologySpread, &st, p, n))
            .collect();
        PodTopologySpread.normalize(&st, &nodes, &mut s);
        s
    }

    #[test]
    fn schedule_anyway_prefers_emptier_domains() {
        let c = cluster(
            &[("a", Some("z1")), ("b", Some("z2"))],
            vec![(web("w1"), "a"), (web("w2"), "a")],
        );
        let mut p = web("w3");
        p.spread_constraints = vec![constraint(HOSTNAME, 1, "ScheduleAnyway")];
        let s = scores(&c, &p);
        assert!(s[1] > s[0], "{s:?}");
    }

    #[test]
    fn default_constraints_group_by_owner() {
        let owned = |name: &str, owner: &str| {
            let mut p = pod(name, &[]);
            p.controller_uid = Some(owner.into());
            p
        };
        let c = cluster(
            &[("a", Some("z1")), ("b", Some("z1")), ("c", Some("z2"))],
            vec![
                (owned("r1", "rs1"), "a"),
                (owned("r2", "rs1"), "a"),
                (owned("o1", "other"), "c"),
                (owned("o2", "other"), "c"),
            ],
        );
        let s = scores(&c, &owned("r3", "rs1"));
        // c holds no rs1 pods and is in the other zone: best; a worst.
        assert!(s[2] > s[1] && s[1] > s[0], "{s:?}");
        // A pod without an owner gets no default spreading.
        assert_eq!(scores(&c, &pod("lone", &[])), vec![0, 0, 0]);
    }

    #[test]
    fn default_constraints_follow_the_services_selecting_the_pod() {
        let c = cluster(
            &[("a", Some("z1")), ("b", Some("z2"))],
            vec![(web("w1"), "a"), (web("w2"), "a"), (pod("x", &[]), "b")],
        );
        // Without the Service (and without an owner) nothing spreads it.
        let services = crate::plugins::service_selectors::ServiceSelectors::default();
        let mut p = web("w3");
        p.services = Some(services.clone());
        assert_eq!(scores(&c, &p), vec![0, 0]);
        // A Service created while the pod waits counts in its next cycle:
        // the bare pod now spreads away from its siblings.
        services.set(&p.namespace, "web", Some(p.labels.clone()));
        let s = scores(&c, &p);
        assert!(s[1] > s[0], "{s:?}");
        // And no longer once the Service is gone.
        services.set(&p.namespace, "web", None);
        assert_eq!(scores(&c, &p), vec![0, 0]);
    }
}
