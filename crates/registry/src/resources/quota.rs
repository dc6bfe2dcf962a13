//! LimitRanges and ResourceQuotas: a namespace's resource policy.
//!
//! Upstream counterpart: `pkg/registry/core/{limitrange,resourcequota}/
//! strategy.go`, `SetDefaults_LimitRangeItem` in `pkg/apis/core/v1/
//! defaults.go`, and `ValidateLimitRange`, `ValidateResourceQuota`
//! (with its spec, status and scope rules) in `pkg/apis/core/validation`.
//! A quota's status belongs to the quota controller and admission
//! (status subresource); quotas keep no generation.

use rkube_machinery::{FieldError, FieldPath};
use serde_json::{Map, Value};

use crate::resources::quantity::{self, QUANTITY_ERROR};
use crate::resources::util::{items, str_at};
use crate::strategy::copy_field;
use crate::Strategy;

const LIMIT_TYPES: [&str; 3] = ["Pod", "Container", "PersistentVolumeClaim"];

/// Resource names a quota may limit besides qualified (`a/b`) and
/// prefixed ones (upstream `standardQuotaResources`).
const QUOTA_RESOURCES: [&str; 19] = [
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.storage",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "services.nodeports",
    "services.loadbalancers",
];

const SCOPES: [&str; 6] = [
    "Terminating",
    "NotTerminating",
    "BestEffort",
    "NotBestEffort",
    "PriorityClass",
    "CrossNamespacePodAffinity",
];

/// The resources a scoped quota may track (pod compute resources and the
/// pod count).
fn pod_scoped_resource(name: &str) -> bool {
    matches!(
        name,
        "pods" | "count/pods" | "cpu" | "memory" | "ephemeral-storage"
    ) || name.starts_with("requests.")
        || name.starts_with("limits.")
        || name.starts_with("hugepages-")
}

/// Each value of a resource list must be a valid, non-negative quantity.
fn check_list(list: Option<&Value>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    for (name, v) in list.and_then(Value::as_object).into_iter().flatten() {
        let p = path.key(name.clone());
        match quantity::parse_value(v) {
            None => errs.push(FieldError::invalid(&p, v, QUANTITY_ERROR)),
            Some(q) if q < quantity::Quantity::default() => errs.push(FieldError::invalid(
                &p,
                v,
                "must be greater than or equal to 0",
            )),
            Some(_) => {}
        }
    }
}

fn quantity_at(list: Option<&Value>, name: &str) -> Option<(quantity::Quantity, String)> {
    let v = list?.get(name)?;
    let q = quantity::parse_value(v)?;
    Some((q, v.as_str().map_or_else(|| v.to_string(), str::to_string)))
}

/// `SetDefaults_LimitRangeItem`: a Container item's default limit falls
/// back to its max, its default request to the default limit, then min.
pub fn default_limit_range(obj: &mut Value) {
    let Some(limits) = obj
        .pointer_mut("/spec/limits")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for item in limits.iter_mut().filter_map(Value::as_object_mut) {
        if item.get("type").and_then(Value::as_str) != Some("Container") {
            continue;
        }
        let get = |item: &Map<String, Value>, k: &str| {
            item.get(k)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        let (max, min) = (get(item, "max"), get(item, "min"));
        let mut default = get(item, "default");
        for (k, v) in &max {
            default.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let mut request = get(item, "defaultRequest");
        for (k, v) in default.iter().chain(&min) {
            request.entry(k.clone()).or_insert_with(|| v.clone());
        }
        if !default.is_empty() {
            item.insert("default".into(), Value::Object(default));
        }
        if !request.is_empty() {
            item.insert("defaultRequest".into(), Value::Object(request));
        }
    }
}

fn validate_limit_range(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let path = FieldPath::new("spec").child("limits");
    let mut seen = Vec::new();
    for (i, item) in items(obj.get("spec").unwrap_or(&Value::Null), "limits")
        .iter()
        .enumerate()
    {
        let ip = path.index(i);
        let kind = str_at(item, "/type");
        if seen.contains(&kind) {
            errs.push(FieldError::duplicate(&ip.child("type"), kind));
        }
        seen.push(kind);
        if kind.is_empty() {
            errs.push(FieldError::required(&ip.child("type"), ""));
        } else if !LIMIT_TYPES.contains(&kind) && !kind.contains('/') {
            errs.push(FieldError::not_supported(
                &ip.child("type"),
                kind,
                &LIMIT_TYPES,
            ));
        }
        for field in [
            "max",
            "min",
            "default",
            "defaultRequest",
            "maxLimitRequestRatio",
        ] {
            check_list(item.get(field), &ip.child(field), &mut errs);
        }
        if kind == "Pod" {
            for field in ["default", "defaultRequest"] {
                if item
                    .get(field)
                    .and_then(Value::as_object)
                    .is_some_and(|m| !m.is_empty())
                {
                    errs.push(FieldError::forbidden(
                        &ip.child(field),
                        "may not be specified when `type` is 'Pod'",
                    ));
                }
            }
        }
        let mut names: Vec<&String> = Vec::new();
        for field in ["max", "min", "default", "defaultRequest"] {
            names.extend(
                item.get(field)
                    .and_then(Value::as_object)
                    .into_iter()
                    .flat_map(|m| m.keys()),
            );
        }
        names.sort();
        names.dedup();
        for name in names {
            let at = |f: &str| quantity_at(item.get(f), name);
            let (min, max, def, req) = (at("min"), at("max"), at("default"), at("defaultRequest"));
            let p = |f: &str| ip.child(f).key(name.clone());
            if let (Some(mn), Some(mx)) = (&min, &max) {
                if mn.0 > mx.0 {
                    errs.push(FieldError::invalid(
                        &p("min"),
                        mn.1.as_str(),
                        format!("min value {} is greater than max value {}", mn.1, mx.1),
                    ));
                }
            }
            if let Some(r) = &req {
                if let Some(mn) = min.as_ref().filter(|mn| mn.0 > r.0) {
                    errs.push(FieldError::invalid(
                        &p("defaultRequest"),
                        r.1.as_str(),
                        format!(
                            "min value {} is greater than default request value {}",
                            mn.1, r.1
                        ),
                    ));
                }
                if let Some(mx) = max.as_ref().filter(|mx| r.0 > mx.0) {
                    errs.push(FieldError::invalid(
                        &p("defaultRequest"),
                        r.1.as_str(),
                        format!(
                            "default request value {} is greater than max value {}",
                            r.1, mx.1
                        ),
                    ));
                }
                if let Some(d) = def.as_ref().filter(|d| r.0 > d.0) {
                    errs.push(FieldError::invalid(
                        &p("defaultRequest"),
                        r.1.as_str(),
                        format!(
                            "default request value {} is greater than default limit value {}",
                            r.1, d.1
                        ),
                    ));
                }
            }
            if let Some(d) = &def {
                if let Some(mn) = min.as_ref().filter(|mn| mn.0 > d.0) {
                    errs.push(FieldError::invalid(
                        &p("default"),
                        d.1.as_str(),
                        format!("min value {} is greater than default value {}", mn.1, d.1),
                    ));
                }
                if let Some(mx) = max.as_ref().filter(|mx| d.0 > mx.0) {
                    errs.push(FieldError::invalid(
                        &p("default"),
                        d.1.as_str(),
                        format!("default value {} is greater than max value {}", d.1, mx.1),
                    ));
                }
            }
        }
        for (name, v) in item
            .get("maxLimitRequestRatio")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let one = quantity::Quantity::count(1);
            if quantity::parse_value(v).is_some_and(|q| q < one) {
                let shown = v.as_str().unwrap_or_default();
                errs.push(FieldError::invalid(
                    &ip.child("maxLimitRequestRatio").key(name.clone()),
                    shown,
                    format!("ratio {shown} is less than 1"),
                ));
            }
        }
    }
    errs
}

pub struct LimitRangeStrategy;

impl Strategy for LimitRangeStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        default_limit_range(obj);
    }

    fn prepare_for_update(&self, new: &mut Value, _old: &Value) {
        default_limit_range(new);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_limit_range(obj)
    }
}

/// Whether a quota resource name is one quota understands.
fn valid_quota_name(name: &str) -> bool {
    QUOTA_RESOURCES.contains(&name)
        || name.contains('/')
        || name.starts_with("requests.")
        || name.starts_with("limits.")
        || name.starts_with("hugepages-")
}

fn validate_quota_spec(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec_path = FieldPath::new("spec");
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let hard = spec.get("hard");
    for name in hard
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|m| m.keys())
    {
        if !valid_quota_name(name) {
            errs.push(FieldError::invalid(
                &spec_path.child("hard").key(name.clone()),
                name.as_str(),
                "must be a standard resource for quota",
            ));
        }
    }
    check_list(hard, &spec_path.child("hard"), &mut errs);
    let mut scopes: Vec<&str> = items(spec, "scopes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let scopes_path = spec_path.child("scopes");
    for e in items(
        spec.get("scopeSelector").unwrap_or(&Value::Null),
        "matchExpressions",
    ) {
        scopes.push(str_at(e, "/scopeName"));
    }
    for s in &scopes {
        if !SCOPES.contains(s) {
            errs.push(FieldError::invalid(&scopes_path, *s, "unsupported scope"));
        }
    }
    let has = |s: &str| scopes.contains(&s);
    if (has("Terminating") && has("NotTerminating")) || (has("BestEffort") && has("NotBestEffort"))
    {
        errs.push(FieldError::invalid(
            &scopes_path,
            scopes.join(","),
            "conflicting scopes",
        ));
    }
    if !scopes.is_empty() {
        for name in hard
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|m| m.keys())
        {
            let ok = if has("BestEffort") {
                matches!(name.as_str(), "pods" | "count/pods")
            } else {
                pod_scoped_resource(name)
            };
            if !ok {
                errs.push(FieldError::invalid(
                    &spec_path.child("hard").key(name.clone()),
                    name.as_str(),
                    "unsupported scope applied to resource",
                ));
            }
        }
    }
    errs
}

fn validate_quota_status(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let path = FieldPath::new("status");
    check_list(obj.pointer("/status/hard"), &path.child("hard"), &mut errs);
    check_list(obj.pointer("/status/used"), &path.child("used"), &mut errs);
    errs
}

pub struct ResourceQuotaStrategy;

impl Strategy for ResourceQuotaStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(map) = obj.as_object_mut() {
            map.remove("status");
        }
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        copy_field(new, old, "status");
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_quota_spec(obj)
    }

    fn validate_target_update(
        &self,
        target: crate::Target,
        new: &Value,
        _old: &Value,
    ) -> Vec<FieldError> {
        match target {
            crate::Target::Status => validate_quota_status(new),
            _ => Vec::new(),
        }
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
    fn container_limit_defaults_follow_max_then_default_then_min() {
        let mut lr = json!({"spec": {"limits": [{"type": "Container",
            "max": {"cpu": "2"}, "default": {"memory": "256Mi"}, "min": {"ephemeral-storage": "1Gi"}}]}});
        default_limit_range(&mut lr);
        let item = &lr["spec"]["limits"][0];
        assert_eq!(item["default"], json!({"cpu": "2", "memory": "256Mi"}));
        assert_eq!(
            item["defaultRequest"],
            json!({"cpu": "2", "memory": "256Mi", "ephemeral-storage": "1Gi"})
        );
    }

    #[test]
    fn limit_range_rules() {
        let lr = json!({"spec": {"limits": [
            {"type": "Container", "min": {"cpu": "2"}, "max": {"cpu": "1"}},
            {"type": "Container"},
            {"type": "Pod", "default": {"cpu": "1"}, "maxLimitRequestRatio": {"cpu": "500m"}},
            {"type": "Node", "max": {"memory": "lots"}},
        ]}});
        assert_eq!(
            messages(&LimitRangeStrategy.validate(&lr)),
            [
                r#"spec.limits[0].min[cpu]: Invalid value: "2": min value 2 is greater than max value 1"#,
                r#"spec.limits[1].type: Duplicate value: "Container""#,
                "spec.limits[2].default: Forbidden: may not be specified when `type` is 'Pod'",
                r#"spec.limits[2].maxLimitRequestRatio[cpu]: Invalid value: "500m": ratio 500m is less than 1"#,
                r#"spec.limits[3].type: Unsupported value: "Node": supported values: "Pod", "Container", "PersistentVolumeClaim""#,
                &format!(r#"spec.limits[3].max[memory]: Invalid value: "lots": {QUANTITY_ERROR}"#),
            ]
        );
    }

    #[test]
    fn quota_spec_rules_and_status_split() {
        let bad = json!({"spec": {"hard": {"pods": "-1", "widgets": "3", "services": "1"},
                                  "scopes": ["BestEffort", "NotBestEffort", "Sometimes"]}});
        assert_eq!(
            messages(&ResourceQuotaStrategy.validate(&bad)),
            [
                r#"spec.hard[widgets]: Invalid value: "widgets": must be a standard resource for quota"#,
                r#"spec.hard[pods]: Invalid value: "-1": must be greater than or equal to 0"#,
                r#"spec.scopes: Invalid value: "Sometimes": unsupported scope"#,
                r#"spec.scopes: Invalid value: "BestEffort,NotBestEffort,Sometimes": conflicting scopes"#,
                r#"spec.hard[services]: Invalid value: "services": unsupported scope applied to resource"#,
                r#"spec.hard[widgets]: Invalid value: "widgets": unsupported scope applied to resource"#,
            ]
        );
        let mut created =
            json!({"spec": {"hard": {"pods": "1"}}, "status": {"used": {"pods": "9"}}});
        ResourceQuotaStrategy.prepare_for_create(&mut created);
        assert!(created.get("status").is_none());
        let old = json!({"status": {"used": {"pods": "1"}}});
        let mut new = json!({"spec": {"hard": {"pods": "2"}}, "status": {}});
        ResourceQuotaStrategy.prepare_for_update(&mut new, &old);
        assert_eq!(new["status"], old["status"]);
    }
}
