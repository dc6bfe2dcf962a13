//! Matching of label selectors, node selector terms and tolerations.
//!
//! Upstream counterparts: `metav1.LabelSelectorAsSelector`,
//! `component-helpers/scheduling/corev1/nodeaffinity` and
//! `v1helper.TolerationsTolerateTaint`. Written here rather than borrowed
//! from `machinery` because components see the cluster only as API types.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

pub type Labels = BTreeMap<String, String>;

/// Whether `labels` match `selector`. An empty selector matches everything;
/// callers decide what a missing (nil) selector means (upstream: nothing).
pub fn selector_matches(selector: &LabelSelector, labels: &Labels) -> bool {
    if let Some(ml) = &selector.match_labels {
        if ml.iter().any(|(k, v)| labels.get(k) != Some(v)) {
            return false;
        }
    }
    for e in selector.match_expressions.iter().flatten() {
        let values = e.values.as_deref().unwrap_or_default();
        let got = labels.get(&e.key);
        let ok = match e.operator.as_str() {
            "In" => got.is_some_and(|v| values.contains(v)),
            "NotIn" => got.is_none_or(|v| !values.contains(v)),
            "Exists" => got.is_some(),
            "DoesNotExist" => got.is_none(),
            // Invalid operators select nothing, as upstream's parse error.
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Whether `selector` is empty (matches everything).
pub fn selector_is_empty(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(|m| m.is_empty())
}

fn requirement_matches(r: &NodeSelectorRequirement, got: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" => got.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => got.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => got.is_some(),
        "DoesNotExist" => got.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), [bound]) = (got, values) else {
                return false;
            };
            let (Ok(v), Ok(bound)) = (v.parse::<i64>(), bound.parse::<i64>()) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// One node selector term: all its label and field requirements hold. A
/// term without requirements matches no node (upstream).
pub fn term_matches(term: &NodeSelectorTerm, node_name: &str, labels: &Labels) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| {
            // metadata.name is the only supported field.
            r.key == "metadata.name" && requirement_matches(r, Some(node_name))
        })
}

/// Terms are ORed.
pub fn terms_match(terms: &[NodeSelectorTerm], node_name: &str, labels: &Labels) -> bool {
    terms.iter().any(|t| term_matches(t, node_name, labels))
}

/// Whether `toleration` tolerates `taint`.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty()) {
        if effect != taint.effect {
            return false;
        }
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    let op = toleration.operator.as_deref().unwrap_or("Equal");
    if key.is_empty() {
        // An empty key with Exists tolerates everything.
        return op == "Exists";
    }
    if key != taint.key {
        return false;
    }
    match op {
        "Exists" => true,
        "Equal" | "" => {
            toleration.value.as_deref().unwrap_or_default()
                == taint.value.as_deref().unwrap_or_default()
        }
        _ => false,
    }
}

pub fn any_tolerates(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selectors() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "NotIn".into(),
                values: Some(vec!["db".into()]),
            }]),
        };
        assert!(selector_matches(&sel, &labels(&[("app", "web")])));
        assert!(!selector_matches(
            &sel,
            &labels(&[("app", "web"), ("tier", "db")])
        ));
        assert!(!selector_matches(&sel, &labels(&[("app", "api")])));
        assert!(selector_matches(&LabelSelector::default(), &labels(&[])));
        assert!(selector_is_empty(&LabelSelector::default()));
    }

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn node_selector_terms() {
        let l = labels(&[("zone", "a"), ("cores", "8")]);
        let term = |reqs: Vec<NodeSelectorRequirement>| NodeSelectorTerm {
            match_expressions: Some(reqs),
            match_fields: None,
        };
        assert!(term_matches(
            &term(vec![req("zone", "In", &["a", "b"])]),
            "n",
            &l
        ));
        assert!(!term_matches(
            &term(vec![req("zone", "NotIn", &["a"])]),
            "n",
            &l
        ));
        assert!(term_matches(
            &term(vec![req("cores", "Gt", &["4"])]),
            "n",
            &l
        ));
        assert!(!term_matches(
            &term(vec![req("cores", "Lt", &["4"])]),
            "n",
            &l
        ));
        assert!(!term_matches(
            &term(vec![req("gpu", "Exists", &[])]),
            "n",
            &l
        ));
        assert!(
            !term_matches(&term(vec![]), "n", &l),
            "empty term matches nothing"
        );
        let by_name = NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![req("metadata.name", "In", &["n1"])]),
        };
        assert!(term_matches(&by_name, "n1", &l));
        assert!(!term_matches(&by_name, "n2", &l));
        assert!(terms_match(&[term(vec![]), by_name], "n1", &l));
    }

    #[test]
    fn tolerations() {
        let taint = Taint {
            key: "dedicated".into(),
            value: Some("gpu".into()),
            effect: "NoSchedule".into(),
            time_added: None,
        };
        let tol = |key: &str, op: &str, value: &str, effect: &str| Toleration {
            key: Some(key.into()).filter(|s: &String| !s.is_empty()),
            operator: Some(op.into()),
            value: Some(value.into()).filter(|s: &String| !s.is_empty()),
            effect: Some(effect.into()).filter(|s: &String| !s.is_empty()),
            toleration_seconds: None,
        };
        assert!(tolerates(&tol("dedicated", "Equal", "gpu", ""), &taint));
        assert!(!tolerates(&tol("dedicated", "Equal", "cpu", ""), &taint));
        assert!(tolerates(
            &tol("dedicated", "Exists", "", "NoSchedule"),
            &taint
        ));
        assert!(!tolerates(
            &tol("dedicated", "Exists", "", "NoExecute"),
            &taint
        ));
        assert!(tolerates(&tol("", "Exists", "", ""), &taint));
        assert!(!tolerates(&tol("other", "Exists", "", ""), &taint));
    }
}
