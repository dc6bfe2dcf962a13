//! TaintToleration: NoSchedule and NoExecute taints the pod does not
//! tolerate exclude the node; untolerated PreferNoSchedule taints lower
//! its score.
//!
//! Upstream counterpart: `plugins/tainttoleration`. The message names the
//! first untolerated taint, as upstream's `FindMatchingUntoleratedTaint`.

use crate::framework::{default_normalize, CycleState, FilterPlugin, ScorePlugin, Status};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;
use crate::selectors::{any_tolerates, tolerates};

pub const NAME: &str = "TaintToleration";

pub struct TaintToleration;

impl FilterPlugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let untolerated = node.taints.iter().find(|t| {
            (t.effect == "NoSchedule" || t.effect == "NoExecute")
                && !any_tolerates(&pod.tolerations, t)
        });
        match untolerated {
            None => Status::success(),
            Some(t) => Status::unresolvable(
                NAME,
                format!(
                    "node(s) had untolerated taint {{{}: {}}}",
                    t.key,
                    t.value.as_deref().unwrap_or_default()
                ),
            ),
        }
    }
}

impl ScorePlugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }

    fn weight(&self) -> i64 {
        3
    }

    /// The number of PreferNoSchedule taints the pod does not tolerate
    /// (only tolerations without an effect or with PreferNoSchedule count).
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        node.taints
            .iter()
            .filter(|t| t.effect == "PreferNoSchedule")
            .filter(|t| {
                !pod.tolerations.iter().any(|tol| {
                    matches!(
                        tol.effect.as_deref(),
                        None | Some("") | Some("PreferNoSchedule")
                    ) && tolerates(tol, t)
                })
            })
            .count() as i64
    }

    fn normalize(&self, _: &CycleState, _: &[&NodeInfo], scores: &mut [i64]) {
        default_normalize(scores, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::plugins::testutil::{node, pod};
    use k8s_openapi::api::core::v1::{Taint, Toleration};

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: Some(value.into()).filter(|v: &String| !v.is_empty()),
            effect: effect.into(),
            time_added: None,
        }
    }

    #[test]
    fn filter_names_the_first_untolerated_taint() {
        let st = CycleState::default();
        let mut n = node("n", &[]);
        n.taints = vec![
            taint("soft", "", "PreferNoSchedule"),
            taint("node.kubernetes.io/unreachable", "", "NoExecute"),
            taint("dedicated", "gpu", "NoSchedule"),
        ];
        let mut p = pod("p", &[]);
        let s = FilterPlugin::filter(&TaintToleration, &st, &p, &n);
        assert_eq!(s.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(
            s.reasons,
            vec!["node(s) had untolerated taint {node.kubernetes.io/unreachable: }"]
        );
        p.tolerations = vec![Toleration {
            key: Some("node.kubernetes.io/unreachable".into()),
            operator: Some("Exists".into()),
            ..Default::default()
        }];
        let s = FilterPlugin::filter(&TaintToleration, &st, &p, &n);
        assert_eq!(
            s.reasons,
            vec!["node(s) had untolerated taint {dedicated: gpu}"]
        );
        p.tolerations.push(Toleration {
            key: Some("dedicated".into()),
            value: Some("gpu".into()),
            ..Default::default()
        });
        assert!(FilterPlugin::filter(&TaintToleration, &st, &p, &n).is_success());
    }

    #[test]
    fn prefer_no_schedule_scores_lower() {
        let st = CycleState::default();
        let clean = node("a", &[]);
        let mut soft = node("b", &[]);
        soft.taints = vec![taint("x", "", "PreferNoSchedule")];
        let mut p = pod("p", &[]);
        let mut scores = vec![
            ScorePlugin::score(&TaintToleration, &st, &p, &clean),
            ScorePlugin::score(&TaintToleration, &st, &p, &soft),
        ];
        TaintToleration.normalize(&st, &[], &mut scores);
        assert_eq!(scores, vec![100, 0]);
        p.tolerations = vec![Toleration {
            key: Some("x".into()),
            operator: Some("Exists".into()),
            effect: Some("PreferNoSchedule".into()),
            ..Default::default()
        }];
        assert_eq!(ScorePlugin::score(&TaintToleration, &st, &p, &soft), 0);
    }
}
