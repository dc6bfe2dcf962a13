//! Which nodes a DaemonSet runs on, and the pod it puts there.
//!
//! Upstream counterpart: `pkg/controller/daemon/daemon_controller.go`
//! (`NodeShouldRunDaemonPod`, `predicates`, `NewPod`) and
//! `pkg/controller/daemon/util` (`AddOrUpdateDaemonPodTolerations`,
//! `ReplaceDaemonSetPodNodeNameNodeAffinity`). The controller decides the
//! node but does not bind: the pod carries a required node affinity on
//! `metadata.name` and the scheduler binds it, so resources and ports are
//! still checked by the scheduler.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PodSpec,
    Taint, Toleration,
};

/// Whether a node should run the daemon pod, and whether a pod already
/// there may stay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fit {
    pub should_run: bool,
    pub should_continue_running: bool,
}

/// The tolerations every daemon pod gets (beyond its own): daemons keep
/// running on nodes that are not ready, unreachable, under pressure or
/// cordoned — they are often what makes the node work again.
pub fn default_tolerations(host_network: bool) -> Vec<Toleration> {
    let mut out = vec![
        tol("node.kubernetes.io/not-ready", "NoExecute"),
        tol("node.kubernetes.io/unreachable", "NoExecute"),
        tol("node.kubernetes.io/disk-pressure", "NoSchedule"),
        tol("node.kubernetes.io/memory-pressure", "NoSchedule"),
        tol("node.kubernetes.io/pid-pressure", "NoSchedule"),
        tol("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        out.push(tol("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    out
}

fn tol(key: &str, effect: &str) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Toleration::default()
    }
}

/// The template's spec with the daemon tolerations added (unless an
/// equal key/effect toleration is there) and the pod pinned to `node` by
/// a required node affinity that replaces any other required terms (the
/// controller already checked them).
pub fn pod_spec_for_node(template: &PodSpec, node: &str) -> PodSpec {
    let mut spec = template.clone();
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for t in default_tolerations(spec.host_network == Some(true)) {
        let present = tolerations
            .iter()
            .any(|have| have.key == t.key && have.effect == t.effect);
        if !present {
            tolerations.push(t);
        }
    }
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.into()]),
            }]),
        }],
    });
    spec
}

/// The node a daemon pod is for: where it is bound, or else the node its
/// affinity pins it to (`GetTargetNodeName`).
pub fn target_node(spec: &PodSpec) -> Option<String> {
    if let Some(n) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|t| {
        t.match_fields.iter().flatten().find_map(|f| {
            (f.key == "metadata.name" && f.operator == "In")
                .then(|| f.values.as_ref()?.first().cloned())
                .flatten()
        })
    })
}

/// Whether `node` should run a pod of `template` (`NodeShouldRunDaemonPod`).
pub fn node_should_run(node: &Node, template: &PodSpec) -> Fit {
    let no = Fit {
        should_run: false,
        should_continue_running: false,
    };
    let name = node.metadata.name.as_deref().unwrap_or_default();
    if template
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != name)
    {
        return no;
    }
    let labels = node.metadata.labels.clone().unwrap_or_default();
    if !node_selector_fits(template, &labels) || !affinity_fits(template, name, &labels) {
        return no;
    }
    let mut tolerations = template.tolerations.clone().unwrap_or_default();
    tolerations.extend(default_tolerations(template.host_network == Some(true)));
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let untolerated = |effects: &[&str]| {
        taints
            .iter()
            .filter(|t| effects.contains(&t.effect.as_str()))
            .any(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
    };
    if untolerated(&["NoSchedule", "NoExecute"]) {
        return Fit {
            should_run: false,
            should_continue_running: !untolerated(&["NoExecute"]),
        };
    }
    Fit {
        should_run: true,
        should_continue_running: true,
    }
}

fn node_selector_fits(spec: &PodSpec, labels: &BTreeMap<String, String>) -> bool {
    spec.node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v))
}

fn affinity_fits(spec: &PodSpec, name: &str, labels: &BTreeMap<String, String>) -> bool {
    let Some(required) = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
    else {
        return true;
    };
    selector_admits(required, name, labels)
}

/// Whether a required NodeSelector admits the node `name` with `labels`:
/// terms are ORed, a term's requirements ANDed, and an empty term matches
/// nothing, as upstream's nodeaffinity helper. Shared with the volume
/// binder (a PersistentVolume's nodeAffinity).
pub(crate) fn selector_admits(
    required: &NodeSelector,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    required.node_selector_terms.iter().any(|term| {
        let exprs = term.match_expressions.as_deref().unwrap_or_default();
        let fields = term.match_fields.as_deref().unwrap_or_default();
        if exprs.is_empty() && fields.is_empty() {
            return false;
        }
        exprs
            .iter()
            .all(|r| requirement_fits(r, labels.get(&r.key).map(String::as_str)))
            && fields.iter().all(|r| {
                let value = (r.key == "metadata.name").then_some(name);
                requirement_fits(r, value)
            })
    })
}

fn requirement_fits(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), Some(bound)) = (
                value.and_then(number),
                values.first().and_then(|s| number(s)),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                have > bound
            } else {
                have < bound
            }
        }
        _ => false,
    }
}

/// Whether `tol` tolerates `taint` (`Toleration.ToleratesTaint`).
pub fn tolerates(tol: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = tol.effect.as_deref().filter(|e| !e.is_empty()) {
        if effect != taint.effect {
            return false;
        }
    }
    let key = tol.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match tol.operator.as_deref().unwrap_or("Equal") {
        // An empty key with Exists tolerates everything.
        "Exists" => true,
        "Equal" | "" => {
            tol.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default()
                && !key.is_empty()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node(name: &str, labels: &[(&str, &str)], taints: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec {
                taints: Some(
                    taints
                        .iter()
                        .map(|(k, e)| Taint {
                            key: k.to_string(),
                            effect: e.to_string(),
                            ..Taint::default()
                        })
                        .collect(),
                ),
                ..NodeSpec::default()
            }),
            status: None,
        }
    }

    fn run(should_run: bool, should_continue_running: bool) -> Fit {
        Fit {
            should_run,
            should_continue_running,
        }
    }

    #[test]
    fn node_selector_picks_nodes() {
        let spec = PodSpec {
            node_selector: Some([("disk".to_string(), "ssd".to_string())].into()),
            ..PodSpec::default()
        };
        assert_eq!(
            node_should_run(&node("a", &[("disk", "ssd")], &[]), &spec),
            run(true, true)
        );
        assert_eq!(
            node_should_run(&node("b", &[("disk", "hdd")], &[]), &spec),
            run(false, false)
        );
    }

    #[test]
    fn required_affinity_terms_are_ored_and_fields_match_the_name() {
        let spec = pod_spec_for_node(&PodSpec::default(), "a");
        assert!(node_should_run(&node("a", &[], &[]), &spec).should_run);
        assert!(!node_should_run(&node("b", &[], &[]), &spec).should_run);
        assert_eq!(target_node(&spec).as_deref(), Some("a"));
        let gt = PodSpec {
            affinity: Some(Affinity {
                node_affinity: Some(NodeAffinity {
                    required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                        node_selector_terms: vec![NodeSelectorTerm {
                            match_expressions: Some(vec![NodeSelectorRequirement {
                                key: "cores".into(),
                                operator: "Gt".into(),
                                values: Some(vec!["4".into()]),
                            }]),
                            match_fields: None,
                        }],
                    }),
                    ..NodeAffinity::default()
                }),
                ..Affinity::default()
            }),
            ..PodSpec::default()
        };
        assert!(node_should_run(&node("a", &[("cores", "8")], &[]), &gt).should_run);
        assert!(!node_should_run(&node("a", &[("cores", "2")], &[]), &gt).should_run);
        assert!(!node_should_run(&node("a", &[], &[]), &gt).should_run);
    }

    #[test]
    fn daemon_pods_tolerate_cordons_and_pressure_but_not_other_taints() {
        let spec = PodSpec::default();
        for (key, effect) in [
            ("node.kubernetes.io/unschedulable", "NoSchedule"),
            ("node.kubernetes.io/not-ready", "NoExecute"),
            ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ] {
            assert_eq!(
                node_should_run(&node("a", &[], &[(key, effect)]), &spec),
                run(true, true),
                "{key}"
            );
        }
        // A NoSchedule taint keeps new pods off but lets running ones stay.
        assert_eq!(
            node_should_run(&node("a", &[], &[("dedicated", "NoSchedule")]), &spec),
            run(false, true)
        );
        assert_eq!(
            node_should_run(&node("a", &[], &[("dedicated", "NoExecute")]), &spec),
            run(false, false)
        );
        let tolerant = PodSpec {
            tolerations: Some(vec![Toleration {
                key: Some("dedicated".into()),
                operator: Some("Exists".into()),
                ..Toleration::default()
            }]),
            ..PodSpec::default()
        };
        assert_eq!(
            node_should_run(&node("a", &[], &[("dedicated", "NoExecute")]), &tolerant),
            run(true, true)
        );
    }

    #[test]
    fn pinned_spec_carries_default_tolerations_once() {
        let spec = pod_spec_for_node(&pod_spec_for_node(&PodSpec::default(), "x"), "a");
        let tols = spec.tolerations.unwrap();
        assert_eq!(tols.len(), 6);
        assert_eq!(
            target_node(&PodSpec {
                node_name: Some("bound".into()),
                ..PodSpec::default()
            })
            .as_deref(),
            Some("bound")
        );
    }
}
