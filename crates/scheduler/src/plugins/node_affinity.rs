//! NodeAffinity (which also enforces spec.nodeSelector): the node must
//! match the pod's nodeSelector and required node affinity; preferred
//! terms add their weights to the node's score.
//!
//! Upstream counterpart: `plugins/nodeaffinity` (the NodeSelector
//! predicate was folded into it upstream as well).

use crate::framework::{default_normalize, CycleState, FilterPlugin, ScorePlugin, Status};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;
use crate::selectors::{term_matches, terms_match};

pub const NAME: &str = "NodeAffinity";
pub const REASON: &str = "node(s) didn't match Pod's node affinity/selector";

pub struct NodeAffinity;

/// Whether `node` satisfies the pod's nodeSelector and required affinity.
pub fn required_matches(pod: &PodInfo, node: &NodeInfo) -> bool {
    if pod
        .node_selector
        .iter()
        .any(|(k, v)| node.labels.get(k) != Some(v))
    {
        return false;
    }
    let required = pod.node_affinity.as_ref().and_then(|a| {
        a.required_during_scheduling_ignored_during_execution
            .as_ref()
    });
    match required {
        Some(sel) => terms_match(&sel.node_selector_terms, &node.name, &node.labels),
        None => true,
    }
}

impl FilterPlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if required_matches(pod, node) {
            Status::success()
        } else {
            Status::unresolvable(NAME, REASON)
        }
    }
}

impl ScorePlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn weight(&self) -> i64 {
        2
    }

    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let preferred = pod.node_affinity.as_ref().and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        });
        preferred
            .into_iter()
            .flatten()
            .filter(|t| t.weight != 0 && term_matches(&t.preference, &node.name, &node.labels))
            .map(|t| i64::from(t.weight))
            .sum()
    }

    fn normalize(&self, _: &CycleState, _: &[&NodeInfo], scores: &mut [i64]) {
        default_normalize(scores, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::plugins::testutil::{node, pod};
    use k8s_openapi::api::core::v1::{
        NodeAffinity as Aff, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
        PreferredSchedulingTerm,
    };

    fn term(key: &str, value: &str) -> NodeSelectorTerm {
        NodeSelectorTerm {
            match_expressions: Some(vec![NodeSelectorRequirement {
                key: key.into(),
                operator: "In".into(),
                values: Some(vec![value.into()]),
            }]),
            match_fields: None,
        }
    }

    #[test]
    fn selector_and_required_terms() {
        let st = CycleState::default();
        let a = node("a", &[("disk", "ssd"), ("zone", "z1")]);
        let b = node("b", &[("disk", "hdd"), ("zone", "z1")]);
        let mut p = pod("p", &[]);
        p.node_selector = [("disk".to_string(), "ssd".to_string())].into();
        assert!(NodeAffinity.filter(&st, &p, &a).is_success());
        let s = NodeAffinity.filter(&st, &p, &b);
        assert_eq!(s.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(s.reasons, vec![REASON]);

        p.node_affinity = Some(Aff {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![term("zone", "z2"), term("zone", "z1")],
            }),
            ..Default::default()
        });
        assert!(
            NodeAffinity.filter(&st, &p, &a).is_success(),
            "terms are ORed"
        );
        p.node_affinity = Some(Aff {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![term("zone", "z2")],
            }),
            ..Default::default()
        });
        assert!(!NodeAffinity.filter(&st, &p, &a).is_success());
    }

    #[test]
    fn preferred_scores() {
        let st = CycleState::default();
        let a = node("a", &[("disk", "ssd")]);
        let b = node("b", &[("disk", "hdd")]);
        let mut p = pod("p", &[]);
        p.node_affinity = Some(Aff {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                PreferredSchedulingTerm {
                    weight: 10,
                    preference: term("disk", "ssd"),
                },
                PreferredSchedulingTerm {
                    weight: 5,
                    preference: term("disk", "hdd"),
                },
            ]),
            ..Default::default()
        });
        let mut scores = vec![
            ScorePlugin::score(&NodeAffinity, &st, &p, &a),
            ScorePlugin::score(&NodeAffinity, &st, &p, &b),
        ];
        assert_eq!(scores, vec![10, 5]);
        NodeAffinity.normalize(&st, &[], &mut scores);
        assert_eq!(scores, vec![100, 50]);
    }
}
