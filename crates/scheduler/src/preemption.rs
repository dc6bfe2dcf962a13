//! DefaultPreemption: when no node fits, find a node where evicting pods
//! of lower priority makes room, choose the victims (as few and as
//! unimportant as possible), and nominate the node.
//!
//! Upstream counterpart: `plugins/defaultpreemption` and
//! `framework/preemption` (`findCandidates`, `SelectVictimsOnNode` with its
//! reprieve loop, `pickOneNodeForPreemption`). PodDisruptionBudgets
//! count as upstream ([`crate::preemption_pdb`]): budget-protected pods
//! are given back first, and the node whose victims break the fewest
//! budgets wins. Not modelled: clearing lower-priority nominations on the
//! chosen node.

use std::sync::Arc;

use crate::cache::Cache;
use crate::framework::{Code, CycleState, Framework, Status};
use crate::message::nodes_unavailable;
use crate::podinfo::PodInfo;
use crate::preemption_pdb::{split_by_violation, Budget};
use crate::schedule::Failure;

pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";
pub const NEVER: &str = "not eligible due to preemptionPolicy=Never.";
pub const TERMINATING: &str = "not eligible due to a terminating pod on the nominated node.";

/// A node and the pods to evict from it.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub node: String,
    pub victims: Vec<Arc<PodInfo>>,
    /// How many victims' evictions break a PodDisruptionBudget.
    pub pdb_violations: usize,
}

/// Upstream's candidate budget: 10% of the nodes, at least 100.
fn max_candidates(n: usize) -> usize {
    (n / 10).max(100).min(n)
}

/// The victims on one node and how many of them break a budget, or why
/// there are none.
fn select_victims(
    fw: &Framework,
    state: &CycleState,
    pod: &PodInfo,
    node_idx: usize,
    cache: &Cache,
    budgets: &[Budget],
) -> Result<(Vec<Arc<PodInfo>>, usize), Status> {
    let node = &cache.nodes()[node_idx];
    let mut lower: Vec<Arc<PodInfo>> = node
        .pods
        .iter()
        .filter(|p| p.priority < pod.priority)
        .cloned()
        .collect();
    if lower.is_empty() {
        return Err(Status::unresolvable("DefaultPreemption", NO_VICTIMS));
    }
    let mut info = node.clone();
    let mut st = state.clone();
    for v in &lower {
        info.remove_pod(&v.uid);
        fw.remove_pod(&mut st, pod, v, node);
    }
    let s = fw.filter(&st, pod, &info);
    if !s.is_success() {
        return Err(s);
    }
    // Give back the most important pods first, those a budget protects
    // before the rest; whatever no longer fits afterwards is a victim.
    lower.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then(a.start_time.cmp(&b.start_time))
    });
    let (violating, fine) = split_by_violation(lower, budgets);
    let mut victims = Vec::new();
    let mut violations = 0;
    let protected = violating.len();
    for (i, v) in violating.into_iter().chain(fine).enumerate() {
        info.add_pod(v.clone());
        fw.add_pod(&mut st, pod, &v, node);
        if !fw.filter(&st, pod, &info).is_success() {
            info.remove_pod(&v.uid);
            fw.remove_pod(&mut st, pod, &v, node);
            victims.push(v);
            if i < protected {
                violations += 1;
            }
        }
    }
    Ok((victims, violations))
}

/// Upstream's ranking: fewest budget violations, then the lowest
/// highest-priority victim, then the lowest sum
/// of priorities, then the fewest victims, then the victims that started
/// last; the first candidate wins remaining ties.
fn pick(candidates: &[Candidate]) -> usize {
    let key = |c: &Candidate| {
        let highest = c
            .victims
            .iter()
            .map(|v| v.priority)
            .max()
            .unwrap_or(i32::MIN);
        let sum: i64 = c
            .victims
            .iter()
            .map(|v| i64::from(v.priority) + i64::from(i32::MAX) + 1)
            .sum();
        let earliest_of_highest = c
            .victims
            .iter()
            .filter(|v| v.priority == highest)
            .map(|v| v.start_time)
            .min()
            .unwrap_or(0);
        (
            c.pdb_violations,
            highest,
            sum,
            c.victims.len(),
            std::cmp::Reverse(earliest_of_highest),
        )
    };
    (0..candidates.len())
        .min_by_key(|i| key(&candidates[*i]))
        .unwrap_or(0)
}

/// Try to make room for `pod`. `Err` carries the message that follows
/// "preemption: " in the FailedScheduling event.
pub fn preempt(
    fw: &Framework,
    cache: &Cache,
    pod: &PodInfo,
    failure: &Failure,
    budgets: &[Budget],
) -> Result<Candidate, String> {
    if pod.never_preempt {
        return Err(NEVER.into());
    }
    if let Some(node) = cache.node(&pod.nominated_node) {
        if node
            .pods
            .iter()
            .any(|p| p.deleting && p.priority < pod.priority)
        {
            return Err(TERMINATING.into());
        }
    }
    let nodes = cache.nodes();
    // What each rejected node's status says about preemption.
    let mut reasons: Vec<String> = Vec::new();
    let mut potential = Vec::new();
    if let Some(pre) = &failure.prefilter {
        if pre.code == Code::UnschedulableAndUnresolvable {
            reasons = vec![NOT_HELPFUL.to_string(); nodes.len()];
        } else {
            potential = (0..nodes.len()).collect();
        }
    } else {
        for (i, s) in &failure.statuses {
            if s.code == Code::Unschedulable {
                potential.push(*i);
            } else {
                reasons.push(NOT_HELPFUL.to_string());
            }
        }
    }
    let budget = max_candidates(nodes.len());
    let mut candidates = Vec::new();
    for i in potential {
        if candidates.len() >= budget {
            break;
        }
        match select_victims(fw, &failure.state, pod, i, cache, budgets) {
            Ok((victims, pdb_violations)) => candidates.push(Candidate {
                node: nodes[i].name.clone(),
                victims,
                pdb_violations,
            }),
            Err(s) => reasons.extend(s.reasons),
        }
    }
    if candidates.is_empty() {
        return Err(nodes_unavailable(
            failure.num_nodes,
            reasons.iter().map(String::as_str),
        ));
    }
    Ok(candidates.swap_remove(pick(&candidates)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Resources;
    use crate::schedule::Algorithm;
    use k8s_openapi::api::core::v1::{Node, NodeSpec, NodeStatus, Taint};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node(name: &str, tainted: bool) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: tainted.then(|| {
                    vec![Taint {
                        key: "node.kubernetes.io/unreachable".into(),
                        effect: "NoSchedule".into(),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                allocatable: Some(
                    [
                        ("cpu".to_string(), Quantity("1".into())),
                        ("pods".to_string(), Quantity("110".into())),
                    ]
                    .into(),
                ),
                ..Default::default()
            }),
        }
    }

    fn pod(name: &str, cpu: i64, priority: i32, node: &str) -> PodInfo {
        PodInfo {
            uid: name.into(),
            name: name.into(),
            namespace: "default".into(),
            priority,
            node_name: node.into(),
            requests: Resources {
                milli_cpu: cpu,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn attempt(cache: &Cache, p: &PodInfo) -> Result<Candidate, String> {
        attempt_with(cache, p, &[])
    }

    fn attempt_with(cache: &Cache, p: &PodInfo, budgets: &[Budget]) -> Result<Candidate, String> {
        let fw = Framework::default();
        let mut algo = Algorithm::new(Framework::default(), 3);
        let failure = algo.schedule(cache, p).unwrap_err();
        preempt(&fw, cache, p, &failure, budgets)
    }

    #[test]
    fn evicts_the_fewest_lowest_priority_pods() {
        let mut c = Cache::default();
        c.upsert_node(&node("a", false));
        c.upsert_node(&node("b", false));
        c.upsert_node(&node("t", true));
        for (name, cpu, prio, n) in [
            ("a-low", 400, 1, "a"),
            ("a-mid", 400, 5, "a"),
            ("b-mid1", 500, 5, "b"),
            ("b-mid2", 500, 5, "b"),
        ] {
            c.add_pod(Arc::new(pod(name, cpu, prio, n)));
        }
        let cand = attempt(&c, &pod("p", 500, 10, "")).unwrap();
        // a: evicting a-low frees 600m, enough (highest victim priority 1);
        // b: one priority-5 pod must go.
        assert_eq!(cand.node, "a");
        let names: Vec<&str> = cand.victims.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, vec!["a-low"]);
    }

    #[test]
    fn messages_when_preemption_cannot_help() {
        let mut c = Cache::default();
        c.upsert_node(&node("a", false));
        c.upsert_node(&node("t", true));
        c.add_pod(Arc::new(pod("same", 800, 10, "a")));
        let err = attempt(&c, &pod("p", 500, 10, "")).unwrap_err();
        assert_eq!(
            err,
            "0/2 nodes are available: 1 No preemption victims found for incoming pod, \
             1 Preemption is not helpful for scheduling"
        );
        let mut never = pod("p", 500, 100, "");
        never.never_preempt = true;
        assert_eq!(attempt(&c, &never).unwrap_err(), NEVER);
    }

    #[test]
    fn victims_that_are_not_enough_give_the_filter_reason() {
        let mut c = Cache::default();
        c.upsert_node(&node("a", false));
        c.add_pod(Arc::new(pod("high", 800, 100, "a")));
        c.add_pod(Arc::new(pod("low", 100, 1, "a")));
        let err = attempt(&c, &pod("p", 500, 10, "")).unwrap_err();
        assert_eq!(err, "0/1 nodes are available: 1 Insufficient cpu");
    }

    #[test]
    fn ranking() {
        let v = |prio, start| {
            Arc::new(PodInfo {
                priority: prio,
                start_time: start,
                ..Default::default()
            })
        };
        let cands = vec![
            Candidate {
                node: "x".into(),
                victims: vec![v(5, 0)],
                pdb_violations: 0,
            },
            Candidate {
                node: "y".into(),
                victims: vec![v(1, 0), v(1, 0)],
                pdb_violations: 0,
            },
            Candidate {
                node: "z".into(),
                victims: vec![v(1, 0)],
                pdb_violations: 0,
            },
        ];
        assert_eq!(cands[pick(&cands)].node, "z");
        let later = vec![
            Candidate {
                node: "old".into(),
                victims: vec![v(1, 10)],
                pdb_violations: 0,
            },
            Candidate {
                node: "new".into(),
                victims: vec![v(1, 20)],
                pdb_violations: 0,
            },
        ];
        assert_eq!(later[pick(&later)].node, "new");
    }

    #[test]
    fn budgets_steer_preemption_to_unprotected_pods() {
        let mut c = Cache::default();
        c.upsert_node(&node("a", false));
        c.upsert_node(&node("b", false));
        let labelled = |name: &str, app: &str, n: &str| {
            let mut p = pod(name, 600, 1, n);
            p.labels = [("app".to_string(), app.to_string())].into();
            Arc::new(p)
        };
        c.add_pod(labelled("a-db", "db", "a"));
        c.add_pod(labelled("b-web", "web", "b"));
        let budget = Budget {
            namespace: "default".into(),
            selector: Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                    match_labels: Some([("app".to_string(), "db".to_string())].into()),
                    ..Default::default()
                },
            ),
            disruptions_allowed: 0,
            disrupted: Default::default(),
        };
        let p = pod("p", 500, 10, "");
        let cand = attempt_with(&c, &p, std::slice::from_ref(&budget)).unwrap();
        assert_eq!(cand.node, "b", "a's victim is protected by a budget");
        assert_eq!(cand.pdb_violations, 0);
        // With only the protected pod to take, preemption still happens.
        let mut c = Cache::default();
        c.upsert_node(&node("a", false));
        c.add_pod(labelled("a-db", "db", "a"));
        let cand = attempt_with(&c, &p, &[budget]).unwrap();
        assert_eq!(cand.node, "a");
        assert_eq!(cand.pdb_violations, 1);
    }
}
