//! RBAC: Roles and ClusterRoles hold rules; RoleBindings and
//! ClusterRoleBindings point at one role, for good.
//!
//! Upstream counterpart: `pkg/registry/rbac/*/strategy.go` and
//! `pkg/apis/rbac/validation/validation.go` (`ValidatePolicyRule`,
//! `ValidateRoleBindingSubject`, the `roleRef` checks). A binding's
//! roleRef cannot change: to point elsewhere, delete and recreate.

use rkube_machinery::{FieldError, FieldPath};
use serde_json::Value;

use crate::resources::util::{items, str_at};
use crate::Strategy;

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Which RBAC resource a strategy serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RbacKind {
    Role,
    ClusterRole,
    RoleBinding,
    ClusterRoleBinding,
}

impl RbacKind {
    pub fn of(group: &str, plural: &str) -> Option<RbacKind> {
        if group != RBAC_GROUP {
            return None;
        }
        Some(match plural {
            "roles" => RbacKind::Role,
            "clusterroles" => RbacKind::ClusterRole,
            "rolebindings" => RbacKind::RoleBinding,
            "clusterrolebindings" => RbacKind::ClusterRoleBinding,
            _ => return None,
        })
    }
}

pub struct RbacStrategy {
    pub kind: RbacKind,
}

/// Field errors of one policy rule (upstream `ValidatePolicyRule`).
fn validate_rule(rule: &Value, namespaced: bool, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let non_empty = |key: &str| !items(rule, key).is_empty();
    if !non_empty("verbs") {
        errs.push(FieldError::required(
            &path.child("verbs"),
            "verbs must contain at least one value",
        ));
    }
    if non_empty("nonResourceURLs") {
        let urls = rule.get("nonResourceURLs").cloned().unwrap_or(Value::Null);
        if namespaced {
            errs.push(FieldError::invalid(
                &path.child("nonResourceURLs"),
                &urls,
                "namespaced rules cannot apply to non-resource URLs",
            ));
        }
        if non_empty("apiGroups") || non_empty("resources") || non_empty("resourceNames") {
            errs.push(FieldError::invalid(
                &path.child("nonResourceURLs"),
                &urls,
                "rules cannot apply to both regular resources and non-resource URLs",
            ));
        }
        return errs;
    }
    if !non_empty("apiGroups") {
        errs.push(FieldError::required(
            &path.child("apiGroups"),
            "resource rules must supply at least one api group",
        ));
    }
    if !non_empty("resources") {
        errs.push(FieldError::required(
            &path.child("resources"),
            "resource rules must supply at least one resource",
        ));
    }
    errs
}

fn validate_rules(obj: &Value, namespaced: bool) -> Vec<FieldError> {
    let rules = FieldPath::new("rules");
    items(obj, "rules")
        .iter()
        .enumerate()
        .flat_map(|(i, r)| validate_rule(r, namespaced, &rules.index(i)))
        .collect()
}

fn validate_binding(obj: &Value, kind: RbacKind) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let role_ref = FieldPath::new("roleRef");
    let group = str_at(obj, "/roleRef/apiGroup");
    if group != RBAC_GROUP {
        errs.push(FieldError::not_supported(
            &role_ref.child("apiGroup"),
            group,
            &[RBAC_GROUP],
        ));
    }
    let ref_kind = str_at(obj, "/roleRef/kind");
    let kinds: &[&str] = match kind {
        RbacKind::RoleBinding => &["Role", "ClusterRole"],
        _ => &["ClusterRole"],
    };
    if !kinds.contains(&ref_kind) {
        errs.push(FieldError::not_supported(
            &role_ref.child("kind"),
            ref_kind,
            kinds,
        ));
    }
    if str_at(obj, "/roleRef/name").is_empty() {
        errs.push(FieldError::required(&role_ref.child("name"), ""));
    }
    let subjects = FieldPath::new("subjects");
    for (i, s) in items(obj, "subjects").iter().enumerate() {
        let path = subjects.index(i);
        if str_at(s, "/name").is_empty() {
            errs.push(FieldError::required(&path.child("name"), ""));
        }
        match str_at(s, "/kind") {
            "ServiceAccount" => {
                let group = str_at(s, "/apiGroup");
                if !group.is_empty() {
                    errs.push(FieldError::not_supported(
                        &path.child("apiGroup"),
                        group,
                        &[""],
                    ));
                }
                if kind == RbacKind::ClusterRoleBinding && str_at(s, "/namespace").is_empty() {
                    errs.push(FieldError::required(&path.child("namespace"), ""));
                }
            }
            "User" | "Group" => {
                let group = str_at(s, "/apiGroup");
                if group != RBAC_GROUP {
                    errs.push(FieldError::not_supported(
                        &path.child("apiGroup"),
                        group,
                        &[RBAC_GROUP],
                    ));
                }
            }
            other => errs.push(FieldError::not_supported(
                &path.child("kind"),
                other,
                &["ServiceAccount", "User", "Group"],
            )),
        }
    }
    errs
}

impl Strategy for RbacStrategy {
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        match self.kind {
            RbacKind::Role => validate_rules(obj, true),
            RbacKind::ClusterRole => validate_rules(obj, false),
            kind => validate_binding(obj, kind),
        }
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        let binding = matches!(
            self.kind,
            RbacKind::RoleBinding | RbacKind::ClusterRoleBinding
        );
        if binding && new.get("roleRef") != old.get("roleRef") {
            errs.push(FieldError::invalid(
                &FieldPath::new("roleRef"),
                new.get("roleRef").cloned().unwrap_or(Value::Null),
                "cannot change roleRef",
            ));
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn rules_need_verbs_groups_and_resources() {
        let s = RbacStrategy {
            kind: RbacKind::Role,
        };
        let role = json!({"rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]},
                                     {"resources": ["pods"]},
                                     {"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]});
        assert_eq!(
            messages(&s.validate(&role)),
            [
                "rules[1].verbs: Required value: verbs must contain at least one value",
                "rules[1].apiGroups: Required value: resource rules must supply at least one api group",
                r#"rules[2].nonResourceURLs: Invalid value: ["/healthz"]: namespaced rules cannot apply to non-resource URLs"#,
            ]
        );
        let cluster = RbacStrategy {
            kind: RbacKind::ClusterRole,
        };
        let ok = json!({"rules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]});
        assert!(cluster.validate(&ok).is_empty());
    }

    #[test]
    fn bindings_name_a_role_and_may_not_change_it() {
        let s = RbacStrategy {
            kind: RbacKind::RoleBinding,
        };
        let binding = json!({"roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": "r"},
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "x"},
                         {"kind": "User", "apiGroup": RBAC_GROUP, "name": "jane"}]});
        assert!(s.validate(&binding).is_empty());
        let mut moved = binding.clone();
        moved["roleRef"]["name"] = json!("other");
        let errs = messages(&s.validate_update(&moved, &binding));
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("roleRef: Invalid value: ")
                && errs[0].ends_with(": cannot change roleRef"),
            "{errs:?}"
        );
        let crb = RbacStrategy {
            kind: RbacKind::ClusterRoleBinding,
        };
        let bad = json!({"roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": "r"},
            "subjects": [{"kind": "ServiceAccount", "name": "default"}, {"kind": "Robot", "name": "x"}]});
        assert_eq!(
            messages(&crb.validate(&bad)),
            [
                r#"roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole""#,
                "subjects[0].namespace: Required value",
                r#"subjects[1].kind: Unsupported value: "Robot": supported values: "ServiceAccount", "User", "Group""#,
            ]
        );
    }
}
