//! Cell formatting shared by the printers: label maps, label selectors,
//! container lists.
//!
//! Upstream counterpart: labels.FormatLabels, metav1.FormatLabelSelector and
//! LabelSelectorAsSelector(...).String(), and printers.go's
//! layoutContainerCells.

use k8s_openapi::api::core::v1::{Container, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

/// `k=v,k2=v2` sorted by key, `<none>` when empty.
pub(super) fn labels(map: Option<&BTreeMap<String, String>>) -> String {
    match map {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
        _ => "<none>".to_owned(),
    }
}

/// The selector in label-query syntax (`app=web,tier in (a,b),!legacy`),
/// requirements sorted by key; `""` for an empty or absent selector; `None`
/// if an expression is invalid (unknown operator, wrong number of values).
pub(super) fn selector_string(selector: Option<&LabelSelector>) -> Option<String> {
    let Some(selector) = selector else {
        return Some(String::new());
    };
    let mut requirements: Vec<(String, String)> = Vec::new();
    for (k, v) in selector.match_labels.iter().flatten() {
        requirements.push((k.clone(), format!("{k}={v}")));
    }
    for e in selector.match_expressions.iter().flatten() {
        let mut values = e.values.clone().unwrap_or_default();
        values.sort();
        let key = &e.key;
        let text = match (e.operator.as_str(), values.is_empty()) {
            ("In", false) => format!("{key} in ({})", values.join(",")),
            ("NotIn", false) => format!("{key} notin ({})", values.join(",")),
            ("Exists", true) => key.clone(),
            ("DoesNotExist", true) => format!("!{key}"),
            _ => return None,
        };
        requirements.push((key.clone(), text));
    }
    requirements.sort_by(|a, b| a.0.cmp(&b.0));
    Some(
        requirements
            .into_iter()
            .map(|(_, text)| text)
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// `metav1.FormatLabelSelector`: `<none>` for empty, `<error>` for invalid.
pub(super) fn label_selector(selector: Option<&LabelSelector>) -> String {
    match selector_string(selector) {
        Some(s) if s.is_empty() => "<none>".to_owned(),
        Some(s) => s,
        None => "<error>".to_owned(),
    }
}

/// Container names and images, each comma-joined.
pub(super) fn containers(containers: &[Container]) -> (String, String) {
    let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
    let images: Vec<&str> = containers
        .iter()
        .map(|c| c.image.as_deref().unwrap_or(""))
        .collect();
    (names.join(","), images.join(","))
}

/// The containers of a pod template, empty if it has no spec.
pub(super) fn template_containers(template: Option<&PodTemplateSpec>) -> (String, String) {
    let list = template
        .and_then(|t| t.spec.as_ref())
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    containers(list)
}

pub(super) fn int_or_string(v: &IntOrString) -> String {
    match v {
        IntOrString::Int(i) => i.to_string(),
        IntOrString::String(s) => s.clone(),
    }
}

/// Go's printBool / printBoolPtr: `True`, `False`, or `<unset>`.
pub(super) fn bool_ptr(v: Option<bool>) -> String {
    match v {
        Some(true) => "True".to_owned(),
        Some(false) => "False".to_owned(),
        None => "<unset>".to_owned(),
    }
}

/// Up to `max` items joined by `,`, then ` + N more...`; `<unset>` if none.
pub(super) fn list_with_more(items: &[String], max: usize) -> String {
    if items.is_empty() {
        return "<unset>".to_owned();
    }
    let shown = items[..items.len().min(max)].join(",");
    if items.len() > max {
        format!("{shown} + {} more...", items.len() - max)
    } else {
        shown
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn requirement(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn selectors_print_in_label_query_syntax() {
        let selector = LabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            match_expressions: Some(vec![
                requirement("tier", "In", &["fe", "be"]),
                requirement("legacy", "DoesNotExist", &[]),
                requirement("zone", "Exists", &[]),
                requirement("env", "NotIn", &["dev"]),
            ]),
        };
        assert_eq!(
            label_selector(Some(&selector)),
            "app=web,env notin (dev),!legacy,tier in (be,fe),zone"
        );
        assert_eq!(label_selector(None), "<none>");
        assert_eq!(label_selector(Some(&LabelSelector::default())), "<none>");
        assert_eq!(selector_string(None).as_deref(), Some(""));
        let bad = LabelSelector {
            match_expressions: Some(vec![requirement("a", "In", &[])]),
            ..Default::default()
        };
        assert_eq!(label_selector(Some(&bad)), "<error>");
        assert_eq!(selector_string(Some(&bad)), None);
    }

    #[test]
    fn label_maps_and_lists() {
        let m: BTreeMap<String, String> =
            [("b".into(), "2".into()), ("a".into(), "1".into())].into();
        assert_eq!(labels(Some(&m)), "a=1,b=2");
        assert_eq!(labels(None), "<none>");
        let items: Vec<String> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(list_with_more(&items, 3), "a,b,c + 2 more...");
        assert_eq!(list_with_more(&items[..2], 3), "a,b");
        assert_eq!(list_with_more(&[], 3), "<unset>");
    }
}
