//! CustomResourceDefinitions: stored, checked, and reported accepted and
//! established at once, so `kubectl wait --for=condition=Established`
//! (which install scripts and charts run after creating CRDs) returns.
//!
//! Upstream counterpart: `apiextensions-apiserver/pkg/registry/
//! customresourcedefinition/strategy.go`, `ValidateCustomResourceDefinition`
//! and the naming and establishing controllers, whose outcome for a CRD
//! without name conflicts is written here. Serving the custom resources
//! themselves is a later issue.

use rkube_machinery::{FieldError, FieldPath};
use serde_json::{json, Value};

use crate::resources::util::{items, str_at};
use crate::Strategy;

pub struct CrdStrategy;

/// The status the naming and establishing controllers converge to: the
/// requested names accepted, the storage version recorded.
fn accepted_status(obj: &Value, old_status: Option<&Value>) -> Value {
    let now = obj
        .pointer("/metadata/creationTimestamp")
        .cloned()
        .unwrap_or(Value::Null);
    let transition = |kind: &str| {
        old_status
            .and_then(|s| s.get("conditions"))
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| str_at(c, "/type") == kind))
            .and_then(|c| c.get("lastTransitionTime").cloned())
            .unwrap_or_else(|| now.clone())
    };
    let mut stored: Vec<Value> = old_status
        .map(|s| items(s, "storedVersions").to_vec())
        .unwrap_or_default();
    let storage = items(obj.get("spec").unwrap_or(&Value::Null), "versions")
        .iter()
        .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .and_then(|v| v.get("name").cloned());
    if let Some(v) = storage {
        if !stored.contains(&v) {
            stored.push(v);
        }
    }
    json!({
        "acceptedNames": obj.pointer("/spec/names").cloned().unwrap_or(json!({})),
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": transition("NamesAccepted")},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted",
             "lastTransitionTime": transition("Established")},
        ],
        "storedVersions": stored,
    })
}

impl Strategy for CrdStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        let status = accepted_status(obj, None);
        if let Some(map) = obj.as_object_mut() {
            map.insert("status".into(), status);
        }
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        let status = accepted_status(new, old.get("status"));
        if let Some(map) = new.as_object_mut() {
            map.insert("status".into(), status);
        }
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = FieldPath::new("spec");
        let group = str_at(obj, "/spec/group");
        let plural = str_at(obj, "/spec/names/plural");
        if group.is_empty() {
            errs.push(FieldError::required(&spec.child("group"), ""));
        } else if !group.contains('.') {
            errs.push(FieldError::invalid(
                &spec.child("group"),
                group,
                "should be a domain with at least one dot",
            ));
        }
        let names = spec.child("names");
        if plural.is_empty() {
            errs.push(FieldError::required(&names.child("plural"), ""));
        }
        if str_at(obj, "/spec/names/kind").is_empty() {
            errs.push(FieldError::required(&names.child("kind"), ""));
        }
        let name = crate::meta::name(obj);
        if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
            errs.push(FieldError::invalid(
                &FieldPath::new("metadata").child("name"),
                name,
                "must be spec.names.plural+\".\"+spec.group",
            ));
        }
        let scope = str_at(obj, "/spec/scope");
        if scope != "Namespaced" && scope != "Cluster" {
            errs.push(FieldError::not_supported(
                &spec.child("scope"),
                scope,
                &["Cluster", "Namespaced"],
            ));
        }
        let versions = items(obj.get("spec").unwrap_or(&Value::Null), "versions");
        if versions.is_empty() {
            errs.push(FieldError::invalid(
                &spec.child("versions"),
                obj.pointer("/spec/versions").cloned().unwrap_or(json!([])),
                "must have exactly one version marked as storage version",
            ));
        } else {
            let storage = versions
                .iter()
                .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                .count();
            if storage != 1 {
                errs.push(FieldError::invalid(
                    &spec.child("versions"),
                    obj.pointer("/spec/versions").cloned().unwrap_or(json!([])),
                    "must have exactly one version marked as storage version",
                ));
            }
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        for (field, path) in [
            ("/spec/group", "group"),
            ("/spec/names/plural", "names.plural"),
        ] {
            let value = str_at(new, field);
            if value != str_at(old, field) {
                errs.push(FieldError::invalid(
                    &FieldPath::from_dotted(&format!("spec.{path}")),
                    value,
                    "field is immutable",
                ));
            }
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        json!({"metadata": {"name": "widgets.example.com", "creationTimestamp": "2026-01-01T00:00:00Z"},
               "spec": {"group": "example.com", "scope": "Namespaced",
                        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                        "versions": [{"name": "v1", "served": true, "storage": true,
                                      "schema": {"openAPIV3Schema": {"type": "object"}}}]}})
    }

    #[test]
    fn new_crds_are_accepted_and_established() {
        let mut obj = crd();
        CrdStrategy.prepare_for_create(&mut obj);
        assert!(CrdStrategy.validate(&obj).is_empty());
        let status = &obj["status"];
        assert_eq!(status["acceptedNames"]["kind"], "Widget");
        assert_eq!(status["storedVersions"], json!(["v1"]));
        assert_eq!(status["conditions"][1]["type"], "Established");
        assert_eq!(status["conditions"][1]["status"], "True");
        assert_eq!(
            status["conditions"][1]["lastTransitionTime"],
            "2026-01-01T00:00:00Z"
        );
    }

    #[test]
    fn names_group_and_storage_version_are_checked() {
        let mut bad = crd();
        bad["metadata"]["name"] = json!("gadgets.example.com");
        bad["spec"]["versions"][0]["storage"] = json!(false);
        let errs: Vec<String> = CrdStrategy
            .validate(&bad)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert_eq!(
            errs[0],
            r#"metadata.name: Invalid value: "gadgets.example.com": must be spec.names.plural+"."+spec.group"#
        );
        assert!(errs[1].ends_with("must have exactly one version marked as storage version"));
        let mut moved = crd();
        moved["spec"]["group"] = json!("other.example.com");
        moved["metadata"]["name"] = json!("widgets.other.example.com");
        assert_eq!(
            CrdStrategy.validate_update(&moved, &crd())[0].to_string(),
            r#"spec.group: Invalid value: "other.example.com": field is immutable"#
        );
    }
}
