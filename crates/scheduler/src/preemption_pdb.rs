//! PodDisruptionBudgets as preemption sees them: a table kept by a watch,
//! and the split of would-be victims into those whose eviction breaks a
//! budget and those whose does not.
//!
//! Upstream counterpart: `framework/preemption` (`filterPodsWithPDBViolation`)
//! and the PDB lister the DefaultPreemption plugin reads. Budgets are
//! honoured on a best-effort basis, as upstream: preemption prefers nodes
//! whose victims break fewer budgets and gives back budget-protected pods
//! first, but still preempts when nothing else works.

use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::Api;

use crate::podinfo::PodInfo;
use crate::selectors::{selector_is_empty, selector_matches};
use crate::watched::{self, Table};

/// What preemption needs of one budget.
#[derive(Clone, Debug, PartialEq)]
pub struct Budget {
    pub namespace: String,
    pub selector: Option<LabelSelector>,
    pub disruptions_allowed: i32,
    /// Pods whose eviction the API server already counted.
    pub disrupted: HashSet<String>,
}

impl Budget {
    pub fn new(pdb: &PodDisruptionBudget) -> Budget {
        let status = pdb.status.as_ref();
        Budget {
            namespace: pdb.metadata.namespace.clone().unwrap_or_default(),
            selector: pdb.spec.as_ref().and_then(|s| s.selector.clone()),
            disruptions_allowed: status.map_or(0, |s| s.disruptions_allowed),
            disrupted: status
                .and_then(|s| s.disrupted_pods.as_ref())
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default(),
        }
    }

    /// A nil or empty selector matches nothing, as upstream.
    fn covers(&self, pod: &PodInfo) -> bool {
        self.namespace == pod.namespace
            && !pod.labels.is_empty()
            && self
                .selector
                .as_ref()
                .is_some_and(|s| !selector_is_empty(s) && selector_matches(s, &pod.labels))
    }
}

/// The budgets by namespace and name, shared between the watch and the
/// scheduling loop.
#[derive(Clone, Default)]
pub struct Budgets(Table<Budget>);

impl Budgets {
    /// The budgets now.
    pub fn snapshot(&self) -> Vec<Budget> {
        self.0.with_all(|all| all.cloned().collect())
    }

    /// Set the budget `ns`/`name`; whether preemption sees a change.
    pub fn set(&self, ns: &str, name: &str, b: Budget) -> bool {
        self.0.set(ns, name, Some(b))
    }
}

fn budget_of(pdb: &PodDisruptionBudget) -> Option<Budget> {
    Some(Budget::new(pdb))
}

/// Keep `budgets` up to date; after the first list, `changed` runs
/// whenever what preemption weighs changes (a budget came or went, its
/// selector or disruptionsAllowed moved) — not on every status write of
/// the disruption controller. Never returns.
pub async fn watch_budgets(client: kube::Client, budgets: Budgets, changed: impl FnMut() + Send) {
    let api: Api<PodDisruptionBudget> = Api::all(client);
    // Nothing waits for the first list: without budgets preemption still
    // works, only less carefully.
    let (listed, _) = tokio::sync::oneshot::channel();
    watched::keep(api, budgets.0, budget_of, listed, changed).await
}

/// Split `pods` (most important first) into those whose eviction would
/// take a budget below zero and the others, spending each budget in
/// order (`filterPodsWithPDBViolation`).
pub fn split_by_violation(
    pods: Vec<Arc<PodInfo>>,
    budgets: &[Budget],
) -> (Vec<Arc<PodInfo>>, Vec<Arc<PodInfo>>) {
    let mut allowed: Vec<i32> = budgets.iter().map(|b| b.disruptions_allowed).collect();
    let (mut violating, mut fine) = (Vec::new(), Vec::new());
    for pod in pods {
        let mut breaks = false;
        for (i, b) in budgets.iter().enumerate() {
            if !b.covers(&pod) || b.disrupted.contains(&pod.name) {
                continue;
            }
            allowed[i] -= 1;
            if allowed[i] < 0 {
                breaks = true;
            }
        }
        if breaks {
            violating.push(pod);
        } else {
            fine.push(pod);
        }
    }
    (violating, fine)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, app: &str) -> Arc<PodInfo> {
        Arc::new(PodInfo {
            name: name.into(),
            namespace: "default".into(),
            labels: [("app".to_string(), app.to_string())].into(),
            ..PodInfo::default()
        })
    }

    fn budget(app: &str, allowed: i32) -> Budget {
        Budget {
            namespace: "default".into(),
            selector: Some(LabelSelector {
                match_labels: Some([("app".to_string(), app.to_string())].into()),
                ..LabelSelector::default()
            }),
            disruptions_allowed: allowed,
            disrupted: HashSet::new(),
        }
    }

    fn names(v: &[Arc<PodInfo>]) -> Vec<&str> {
        v.iter().map(|p| p.name.as_str()).collect()
    }

    #[test]
    fn budgets_are_spent_in_order() {
        let pods = vec![pod("a1", "a"), pod("a2", "a"), pod("b1", "b")];
        let (bad, ok) = split_by_violation(pods, &[budget("a", 1)]);
        assert_eq!(names(&bad), ["a2"]);
        assert_eq!(names(&ok), ["a1", "b1"]);
    }

    #[test]
    fn already_disrupted_pods_other_namespaces_and_empty_selectors_do_not_count() {
        let mut b = budget("a", 0);
        b.disrupted.insert("a1".into());
        let mut other_ns = budget("a", 0);
        other_ns.namespace = "other".into();
        let mut empty = budget("a", 0);
        empty.selector = Some(LabelSelector::default());
        let (bad, ok) =
            split_by_violation(vec![pod("a1", "a"), pod("a2", "a")], &[b, other_ns, empty]);
        assert_eq!(names(&bad), ["a2"]);
        assert_eq!(names(&ok), ["a1"]);
    }
}
