//! Admission webhook configurations (mutating and validating) and
//! ValidatingAdmissionPolicies with their bindings: stored with upstream's
//! defaults and validation. Calling the webhooks is not done yet.
//!
//! Upstream counterpart: `pkg/registry/admissionregistration/*/
//! strategy.go`, `pkg/apis/admissionregistration/v1/defaults.go`
//! (`SetDefaults_ValidatingWebhook`, `SetDefaults_MutatingWebhook`,
//! `SetDefaults_Rule`, `SetDefaults_ServiceReference`,
//! `SetDefaults_ValidatingAdmissionPolicySpec`, `SetDefaults_MatchResources`)
//! and `pkg/apis/admissionregistration/validation`.

use rkube_machinery::{FieldError, FieldPath};
use serde_json::{json, Map, Value};

use crate::resources::util::{child, default, default_str, items, str_at, str_field};
use crate::strategy::copy_field;
use crate::Strategy;

const FAILURE_POLICIES: [&str; 2] = ["Fail", "Ignore"];
const MATCH_POLICIES: [&str; 2] = ["Exact", "Equivalent"];
const SIDE_EFFECTS: [&str; 2] = ["None", "NoneOnDryRun"];
const REINVOCATION: [&str; 2] = ["Never", "IfNeeded"];
const OPERATIONS: [&str; 5] = ["*", "CREATE", "UPDATE", "DELETE", "CONNECT"];
const SCOPES: [&str; 3] = ["Cluster", "Namespaced", "*"];
const REVIEW_VERSIONS: [&str; 2] = ["v1", "v1beta1"];
const ACTIONS: [&str; 3] = ["Deny", "Warn", "Audit"];

/// Which configuration a webhook list belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum WebhookKind {
    Mutating,
    Validating,
}

fn default_rules(map: &mut Map<String, Value>, key: &str) {
    for r in map
        .get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
    {
        default_str(r, "scope", "*");
    }
}

fn default_webhook(w: &mut Map<String, Value>, kind: WebhookKind) {
    default_str(w, "failurePolicy", "Fail");
    default_str(w, "matchPolicy", "Equivalent");
    default(w, "namespaceSelector", json!({}));
    default(w, "objectSelector", json!({}));
    default(w, "timeoutSeconds", 10);
    if kind == WebhookKind::Mutating {
        default_str(w, "reinvocationPolicy", "Never");
    }
    default_rules(w, "rules");
    if let Some(svc) = w
        .get_mut("clientConfig")
        .and_then(|c| c.get_mut("service"))
        .and_then(Value::as_object_mut)
    {
        default(svc, "port", 443);
    }
}

fn check_one_of(errs: &mut Vec<FieldError>, path: &FieldPath, value: &str, allowed: &[&str]) {
    if !value.is_empty() && !allowed.contains(&value) {
        errs.push(FieldError::not_supported(path, value, allowed));
    }
}

fn validate_rule(r: &Value, path: &FieldPath, errs: &mut Vec<FieldError>) {
    for field in ["operations", "apiGroups", "apiVersions", "resources"] {
        if items(r, field).is_empty() {
            errs.push(FieldError::required(&path.child(field), ""));
        }
    }
    for (i, op) in items(r, "operations").iter().enumerate() {
        check_one_of(
            errs,
            &path.child("operations").index(i),
            op.as_str().unwrap_or("?"),
            &OPERATIONS,
        );
    }
    check_one_of(errs, &path.child("scope"), str_at(r, "/scope"), &SCOPES);
}

fn validate_client_config(c: Option<&Value>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    let c = c.unwrap_or(&Value::Null);
    let url = c.get("url").and_then(Value::as_str);
    let svc = c.get("service").filter(|s| !s.is_null());
    match (url, svc) {
        (Some(_), Some(_)) | (None, None) => errs.push(FieldError::required(
            path,
            "exactly one of url or service is required",
        )),
        (Some(url), None) => {
            if !url.starts_with("https://") {
                errs.push(FieldError::invalid(
                    &path.child("url"),
                    url,
                    "'https' is the only allowed URL scheme",
                ));
            }
        }
        (None, Some(svc)) => {
            let sp = path.child("service");
            if str_at(svc, "/name").is_empty() {
                errs.push(FieldError::required(
                    &sp.child("name"),
                    "service name is required",
                ));
            }
            if str_at(svc, "/namespace").is_empty() {
                errs.push(FieldError::required(
                    &sp.child("namespace"),
                    "service namespace is required",
                ));
            }
            let p = str_at(svc, "/path");
            if !p.is_empty() && !p.starts_with('/') {
                errs.push(FieldError::invalid(
                    &sp.child("path"),
                    p,
                    "must start with a '/'",
                ));
            }
            if let Some(port) = svc.get("port").and_then(Value::as_i64) {
                if !(1..=65535).contains(&port) {
                    errs.push(FieldError::invalid(
                        &sp.child("port"),
                        port,
                        "port is not valid: must be between 1 and 65535, inclusive",
                    ));
                }
            }
        }
    }
}

fn validate_webhook(w: &Value, path: &FieldPath, kind: WebhookKind, errs: &mut Vec<FieldError>) {
    let name = str_at(w, "/name");
    if name.is_empty() {
        errs.push(FieldError::required(&path.child("name"), ""));
    } else if name.split('.').count() < 3 {
        errs.push(FieldError::invalid(
            &path.child("name"),
            name,
            "should be a domain with at least three segments separated by dots",
        ));
    }
    for (i, r) in items(w, "rules").iter().enumerate() {
        validate_rule(r, &path.child("rules").index(i), errs);
    }
    check_one_of(
        errs,
        &path.child("failurePolicy"),
        str_at(w, "/failurePolicy"),
        &FAILURE_POLICIES,
    );
    check_one_of(
        errs,
        &path.child("matchPolicy"),
        str_at(w, "/matchPolicy"),
        &MATCH_POLICIES,
    );
    let side = str_at(w, "/sideEffects");
    if side.is_empty() {
        errs.push(FieldError::not_supported(
            &path.child("sideEffects"),
            "",
            &SIDE_EFFECTS,
        ));
    } else {
        check_one_of(errs, &path.child("sideEffects"), side, &SIDE_EFFECTS);
    }
    if kind == WebhookKind::Mutating {
        check_one_of(
            errs,
            &path.child("reinvocationPolicy"),
            str_at(w, "/reinvocationPolicy"),
            &REINVOCATION,
        );
    }
    if let Some(t) = w.get("timeoutSeconds").and_then(Value::as_i64) {
        if !(1..=30).contains(&t) {
            errs.push(FieldError::invalid(
                &path.child("timeoutSeconds"),
                t,
                "the timeout value must be between 1 and 30 seconds",
            ));
        }
    }
    let versions = items(w, "admissionReviewVersions");
    if versions.is_empty() {
        errs.push(FieldError::required(
            &path.child("admissionReviewVersions"),
            "must specify one of v1, v1beta1",
        ));
    } else if !versions
        .iter()
        .any(|v| REVIEW_VERSIONS.contains(&v.as_str().unwrap_or("")))
    {
        errs.push(FieldError::invalid(
            &path.child("admissionReviewVersions"),
            Value::Array(versions.to_vec()),
            "must include at least one of v1, v1beta1",
        ));
    }
    validate_client_config(w.get("clientConfig"), &path.child("clientConfig"), errs);
}

/// MutatingWebhookConfigurations and ValidatingWebhookConfigurations.
pub struct WebhookConfigurationStrategy {
    pub kind: WebhookKind,
}

impl WebhookConfigurationStrategy {
    fn defaults(&self, obj: &mut Value) {
        for w in obj
            .get_mut("webhooks")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object_mut)
        {
            default_webhook(w, self.kind);
        }
    }
}

impl Strategy for WebhookConfigurationStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        self.defaults(obj);
    }

    fn prepare_for_update(&self, new: &mut Value, _old: &Value) {
        self.defaults(new);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let path = FieldPath::new("webhooks");
        let mut names: Vec<&str> = Vec::new();
        for (i, w) in items(obj, "webhooks").iter().enumerate() {
            let name = str_at(w, "/name");
            if !name.is_empty() && names.contains(&name) {
                errs.push(FieldError::duplicate(&path.index(i).child("name"), name));
            }
            names.push(name);
            validate_webhook(w, &path.index(i), self.kind, &mut errs);
        }
        errs
    }
}

fn default_match_resources(spec: &mut Map<String, Value>) {
    let Some(m) = spec
        .get_mut("matchConstraints")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    default_str(m, "matchPolicy", "Equivalent");
    default(m, "namespaceSelector", json!({}));
    default(m, "objectSelector", json!({}));
    default_rules(m, "resourceRules");
    default_rules(m, "excludeResourceRules");
}

/// ValidatingAdmissionPolicies (status subresource, generation counted)
/// and their bindings.
pub struct PolicyStrategy {
    pub binding: bool,
}

impl Strategy for PolicyStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        let Some(map) = obj.as_object_mut() else {
            return;
        };
        if !self.binding {
            map.remove("status");
            default_str(child(map, "spec"), "failurePolicy", "Fail");
        }
        default_match_resources(child(map, "spec"));
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        if !self.binding {
            copy_field(new, old, "status");
        }
        if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
            if !self.binding {
                default_str(spec, "failurePolicy", "Fail");
            }
            default_match_resources(spec);
        }
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = FieldPath::new("spec");
        let s = obj
            .get("spec")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if self.binding {
            if str_field(&s, "policyName").is_empty() {
                errs.push(FieldError::required(&spec.child("policyName"), ""));
            }
            let actions = s.get("validationActions").and_then(Value::as_array);
            match actions {
                None => errs.push(FieldError::required(&spec.child("validationActions"), "")),
                Some(a) if a.is_empty() => {
                    errs.push(FieldError::required(&spec.child("validationActions"), ""))
                }
                Some(a) => {
                    for (i, act) in a.iter().enumerate() {
                        check_one_of(
                            &mut errs,
                            &spec.child("validationActions").index(i),
                            act.as_str().unwrap_or("?"),
                            &ACTIONS,
                        );
                    }
                }
            }
        } else {
            check_one_of(
                &mut errs,
                &spec.child("failurePolicy"),
                str_field(&s, "failurePolicy"),
                &FAILURE_POLICIES,
            );
            let has_validations = s
                .get("validations")
                .and_then(Value::as_array)
                .is_some_and(|v| !v.is_empty());
            let has_audit = s
                .get("auditAnnotations")
                .and_then(Value::as_array)
                .is_some_and(|v| !v.is_empty());
            if !has_validations && !has_audit {
                errs.push(FieldError::required(
                    &spec.child("validations"),
                    "validations or auditAnnotations must contain at least one item",
                ));
            }
            if s.get("matchConstraints").is_none_or(Value::is_null) {
                errs.push(FieldError::required(&spec.child("matchConstraints"), ""));
            }
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn webhooks_get_upstream_defaults() {
        let s = WebhookConfigurationStrategy {
            kind: WebhookKind::Mutating,
        };
        let mut obj = json!({"webhooks": [{"name": "a.b.c", "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "clientConfig": {"service": {"name": "s", "namespace": "n"}},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]}]});
        s.prepare_for_create(&mut obj);
        let w = &obj["webhooks"][0];
        assert_eq!(w["failurePolicy"], "Fail");
        assert_eq!(w["matchPolicy"], "Equivalent");
        assert_eq!(w["timeoutSeconds"], 10);
        assert_eq!(w["namespaceSelector"], json!({}));
        assert_eq!(w["objectSelector"], json!({}));
        assert_eq!(w["reinvocationPolicy"], "Never");
        assert_eq!(w["rules"][0]["scope"], "*");
        assert_eq!(w["clientConfig"]["service"]["port"], 443);
        assert!(
            s.validate(&obj).is_empty(),
            "{:?}",
            messages(&s.validate(&obj))
        );
    }

    #[test]
    fn webhook_validation_names_the_field() {
        let s = WebhookConfigurationStrategy {
            kind: WebhookKind::Validating,
        };
        let obj = json!({"webhooks": [{"name": "short", "timeoutSeconds": 60,
            "clientConfig": {"url": "http://x"}, "rules": [{"operations": ["PATCH"]}]}]});
        assert_eq!(
            messages(&s.validate(&obj)),
            [
                r#"webhooks[0].name: Invalid value: "short": should be a domain with at least three segments separated by dots"#,
                "webhooks[0].rules[0].apiGroups: Required value",
                "webhooks[0].rules[0].apiVersions: Required value",
                "webhooks[0].rules[0].resources: Required value",
                r#"webhooks[0].rules[0].operations[0]: Unsupported value: "PATCH": supported values: "*", "CREATE", "UPDATE", "DELETE", "CONNECT""#,
                r#"webhooks[0].sideEffects: Unsupported value: "": supported values: "None", "NoneOnDryRun""#,
                "webhooks[0].timeoutSeconds: Invalid value: 60: the timeout value must be between 1 and 30 seconds",
                "webhooks[0].admissionReviewVersions: Required value: must specify one of v1, v1beta1",
                r#"webhooks[0].clientConfig.url: Invalid value: "http://x": 'https' is the only allowed URL scheme"#,
            ]
        );
    }

    #[test]
    fn policies_and_bindings() {
        let p = PolicyStrategy { binding: false };
        let mut obj = json!({"spec": {"matchConstraints": {"resourceRules": [{"operations": ["CREATE"]}]},
                                      "validations": [{"expression": "true"}]}});
        p.prepare_for_create(&mut obj);
        assert_eq!(obj["spec"]["failurePolicy"], "Fail");
        assert_eq!(obj["spec"]["matchConstraints"]["matchPolicy"], "Equivalent");
        assert!(p.validate(&obj).is_empty());
        let b = PolicyStrategy { binding: true };
        assert_eq!(
            messages(&b.validate(&json!({"spec": {}}))),
            [
                "spec.policyName: Required value",
                "spec.validationActions: Required value"
            ]
        );
    }
}
