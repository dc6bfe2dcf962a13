//! Which webhooks a request is sent to: the rules (operations, API
//! groups, versions, resources with their subresources, scope), then the
//! namespace and object selectors.
//!
//! Upstream counterpart: `k8s.io/apiserver/pkg/admission/plugin/webhook/
//! predicates/rules` (`Matcher`), `predicates/namespace` and
//! `predicates/object`. Pure functions over the configuration objects as
//! JSON; the plugin looks up the namespace labels they need.

use std::sync::Arc;

use rkube_machinery::labels::Selector;
use serde_json::{Map, Value};

/// The admission operation of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

/// What a rule is matched against.
#[derive(Clone, Debug)]
pub struct Attributes<'a> {
    pub operation: Operation,
    pub group: &'a str,
    pub version: &'a str,
    pub resource: &'a str,
    /// Empty for the resource itself.
    pub subresource: &'a str,
    pub namespaced: bool,
}

/// One webhook of a configuration, in the order it is called.
#[derive(Clone, Debug)]
pub struct Hook {
    /// The configuration object's name.
    pub config: String,
    /// The `webhooks[]` entry.
    pub spec: Value,
}

impl Hook {
    pub fn name(&self) -> &str {
        self.spec.get("name").and_then(Value::as_str).unwrap_or("")
    }
}

fn strings(v: Option<&Value>) -> impl Iterator<Item = &str> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

fn lists(list: Option<&Value>, want: &str) -> bool {
    strings(list).any(|s| s == "*" || s == want)
}

/// Whether one `rules[]` entry covers the request.
pub fn rule_matches(rule: &Value, attrs: &Attributes) -> bool {
    if !lists(rule.get("operations"), attrs.operation.as_str())
        || !lists(rule.get("apiGroups"), attrs.group)
        || !lists(rule.get("apiVersions"), attrs.version)
    {
        return false;
    }
    let scope_ok = match rule.get("scope").and_then(Value::as_str).unwrap_or("*") {
        "Cluster" => !attrs.namespaced,
        "Namespaced" => attrs.namespaced,
        _ => true,
    };
    scope_ok
        && strings(rule.get("resources")).any(|r| {
            // "pods" is the resource alone; "pods/*" it and every
            // subresource; "*/status" every resource's status.
            let (res, sub) = r.split_once('/').unwrap_or((r, ""));
            (res == "*" || res == attrs.resource) && (sub == "*" || sub == attrs.subresource)
        })
}

/// The webhooks of `configs` (in name order already) whose rules cover the
/// request, configurations by name, webhooks in their listed order.
pub fn candidates(configs: &[Arc<Value>], attrs: &Attributes) -> Vec<Hook> {
    let mut hooks = Vec::new();
    for config in configs {
        let name = config
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let listed = config.get("webhooks").and_then(Value::as_array);
        for spec in listed.into_iter().flatten() {
            let rules = spec.get("rules").and_then(Value::as_array);
            if rules.into_iter().flatten().any(|r| rule_matches(r, attrs)) {
                hooks.push(Hook {
                    config: name.to_string(),
                    spec: spec.clone(),
                });
            }
        }
    }
    hooks
}

/// A webhook's selector; absent means everything (the API's default `{}`).
fn selector(spec: &Value, field: &str) -> Result<Selector, String> {
    match spec.get(field) {
        None | Some(Value::Null) => Ok(Selector::everything()),
        s => Selector::from_label_selector(s).map_err(|e| format!("invalid {field}: {e}")),
    }
}

/// Whether the webhook's namespaceSelector needs the namespace's labels
/// at all (an empty one selects everything).
pub fn needs_namespace(spec: &Value) -> bool {
    spec.get("namespaceSelector")
        .and_then(Value::as_object)
        .is_some_and(|s| s.values().any(|v| !v.is_null()))
}

/// The namespaceSelector against `labels`: those of the object's
/// namespace, of a Namespace object itself, or `None` for cluster-scoped
/// objects, which every namespaceSelector lets through.
pub fn namespace_selected(
    spec: &Value,
    labels: Option<&Map<String, Value>>,
) -> Result<bool, String> {
    let Some(labels) = labels else {
        return Ok(true);
    };
    Ok(selector(spec, "namespaceSelector")?.matches(labels))
}

/// The objectSelector: either the new or the old object's labels match.
pub fn object_selected(
    spec: &Value,
    object: Option<&Value>,
    old: Option<&Value>,
) -> Result<bool, String> {
    let sel = selector(spec, "objectSelector")?;
    if sel.is_empty() {
        return Ok(true);
    }
    Ok([object, old]
        .into_iter()
        .flatten()
        .filter(|o| o.is_object())
        .any(|o| sel.matches_object(o)))
}
