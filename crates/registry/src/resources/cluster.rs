//! Small cluster-policy resources: PodDisruptionBudgets, PriorityClasses,
//! Leases, HorizontalPodAutoscalers and RuntimeClasses.
//!
//! Upstream counterpart: `pkg/registry/{policy/poddisruptionbudget,
//! scheduling/priorityclass, coordination/lease, autoscaling/
//! horizontalpodautoscaler}/strategy.go` and the matching
//! `pkg/apis/*/validation` rules and defaults.

use rkube_machinery::{FieldError, FieldPath};
use serde_json::{json, Value};

use crate::resources::util::{child, default, str_at};
use crate::{DefaultStrategy, Strategy};

/// Status subresource, generation counted on spec changes.
const WITH_STATUS: DefaultStrategy = DefaultStrategy {
    has_status: true,
    tracks_generation: true,
    allow_create_on_update: false,
};

/// An IntOrString that must be ≥ 0 (and ≤ 100% as a percentage).
fn check_int_or_percent(v: &Value, path: &FieldPath, errs: &mut Vec<FieldError>) {
    match v {
        Value::Number(n) if n.as_i64().unwrap_or(0) < 0 => errs.push(FieldError::invalid(
            path,
            v,
            "must be greater than or equal to 0",
        )),
        Value::String(s) => match s.strip_suffix('%').map(str::parse::<i64>) {
            Some(Ok(p)) if p < 0 => errs.push(FieldError::invalid(
                path,
                v,
                "must be greater than or equal to 0",
            )),
            Some(Ok(p)) if p > 100 => {
                errs.push(FieldError::invalid(path, v, "must not be greater than 100%"))
            }
            Some(Ok(_)) => {}
            _ => errs.push(FieldError::invalid(
                path,
                v,
                "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
            )),
        },
        _ => {}
    }
}

/// PodDisruptionBudgets (policy/v1).
pub struct PdbStrategy;

impl Strategy for PdbStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        WITH_STATUS.prepare_for_create(obj);
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        WITH_STATUS.prepare_for_update(new, old);
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec_path = FieldPath::new("spec");
        let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
        let min = spec.get("minAvailable").filter(|v| !v.is_null());
        let max = spec.get("maxUnavailable").filter(|v| !v.is_null());
        if min.is_some() && max.is_some() {
            errs.push(FieldError::invalid(
                &spec_path,
                &spec,
                "minAvailable and maxUnavailable cannot be both set",
            ));
        }
        if let Some(v) = min {
            check_int_or_percent(v, &spec_path.child("minAvailable"), &mut errs);
        }
        if let Some(v) = max {
            check_int_or_percent(v, &spec_path.child("maxUnavailable"), &mut errs);
        }
        let policy = str_at(obj, "/spec/unhealthyPodEvictionPolicy");
        if !policy.is_empty() && policy != "IfHealthyBudget" && policy != "AlwaysAllow" {
            errs.push(FieldError::not_supported(
                &spec_path.child("unhealthyPodEvictionPolicy"),
                policy,
                &["AlwaysAllow", "IfHealthyBudget"],
            ));
        }
        if let Some(sel) = spec.get("selector") {
            if let Err(e) = rkube_machinery::labels::Selector::from_label_selector(Some(sel)) {
                errs.push(FieldError::invalid(
                    &spec_path.child("selector"),
                    sel,
                    e.to_string(),
                ));
            }
        }
        errs
    }
}

/// The priority classes every cluster has (upstream
/// `SystemPriorityClasses`), which alone may use the `system-` prefix
/// and values above the user maximum.
pub const SYSTEM_PRIORITY_CLASSES: &[(&str, i64, &str)] = &[
    (
        "system-node-critical",
        2_000_001_000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
    (
        "system-cluster-critical",
        2_000_000_000,
        "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    ),
];

/// Highest priority a user-defined class may have.
pub const HIGHEST_USER_PRIORITY: i64 = 1_000_000_000;

/// PriorityClasses (scheduling.k8s.io/v1).
pub struct PriorityClassStrategy;

impl Strategy for PriorityClassStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(map) = obj.as_object_mut() {
            default(map, "preemptionPolicy", "PreemptLowerPriority");
        }
    }

    fn prepare_for_update(&self, new: &mut Value, _old: &Value) {
        self.prepare_for_create(new);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let name = crate::meta::name(obj);
        let system = SYSTEM_PRIORITY_CLASSES.iter().find(|(n, ..)| *n == name);
        let value = obj.get("value").and_then(Value::as_i64).unwrap_or(0);
        match system {
            Some((_, v, _)) if *v != value => errs.push(FieldError::forbidden(
                &FieldPath::new("value"),
                format!("value of system priority class {name} must be {v}"),
            )),
            Some(_) => {}
            None if name.starts_with("system-") => errs.push(FieldError::invalid(
                &FieldPath::new("metadata").child("name"),
                name,
                "priority class names with 'system-' prefix are reserved",
            )),
            None if value > HIGHEST_USER_PRIORITY => errs.push(FieldError::forbidden(
                &FieldPath::new("value"),
                format!(
                    "maximum allowed value of a user defined priority is {HIGHEST_USER_PRIORITY}"
                ),
            )),
            None => {}
        }
        let policy = str_at(obj, "/preemptionPolicy");
        if !policy.is_empty() && policy != "PreemptLowerPriority" && policy != "Never" {
            errs.push(FieldError::not_supported(
                &FieldPath::new("preemptionPolicy"),
                policy,
                &["Never", "PreemptLowerPriority"],
            ));
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        if new.get("value") != old.get("value") {
            errs.push(FieldError::forbidden(
                &FieldPath::new("value"),
                "may not be changed in an update.",
            ));
        }
        if new.get("preemptionPolicy") != old.get("preemptionPolicy") {
            errs.push(FieldError::invalid(
                &FieldPath::new("preemptionPolicy"),
                new.get("preemptionPolicy").cloned().unwrap_or(Value::Null),
                "field is immutable",
            ));
        }
        errs
    }
}

/// The system priority classes as objects, for bootstrapping.
pub fn system_priority_classes() -> Vec<Value> {
    SYSTEM_PRIORITY_CLASSES
        .iter()
        .map(|(name, value, description)| {
            json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                   "metadata": {"name": name}, "value": value, "description": description})
        })
        .collect()
}

/// Leases (coordination.k8s.io/v1).
pub struct LeaseStrategy;

impl Strategy for LeaseStrategy {
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = FieldPath::new("spec");
        if let Some(d) = obj
            .pointer("/spec/leaseDurationSeconds")
            .and_then(Value::as_i64)
        {
            if d <= 0 {
                errs.push(FieldError::invalid(
                    &spec.child("leaseDurationSeconds"),
                    d,
                    "must be greater than 0",
                ));
            }
        }
        if let Some(t) = obj
            .pointer("/spec/leaseTransitions")
            .and_then(Value::as_i64)
        {
            if t < 0 {
                errs.push(FieldError::invalid(
                    &spec.child("leaseTransitions"),
                    t,
                    "must be greater than or equal to 0",
                ));
            }
        }
        errs
    }
}

/// HorizontalPodAutoscalers, both served versions (autoscaling/v2 gets
/// the CPU metric default; in v1 an absent target means the same 80%).
pub struct HpaStrategy {
    pub v2: bool,
}

impl HpaStrategy {
    fn defaults(&self, obj: &mut Value) {
        let Some(map) = obj.as_object_mut() else {
            return;
        };
        let spec = child(map, "spec");
        default(spec, "minReplicas", 1);
        let no_metrics = spec
            .get("metrics")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if self.v2 && no_metrics {
            spec.insert(
                "metrics".into(),
                json!([{"type": "Resource", "resource": {"name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 80}}}]),
            );
        }
    }
}

impl Strategy for HpaStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        WITH_STATUS.prepare_for_create(obj);
        self.defaults(obj);
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        WITH_STATUS.prepare_for_update(new, old);
        self.defaults(new);
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = FieldPath::new("spec");
        let target = spec.child("scaleTargetRef");
        for field in ["kind", "name"] {
            if str_at(obj, &format!("/spec/scaleTargetRef/{field}")).is_empty() {
                errs.push(FieldError::required(&target.child(field), ""));
            }
        }
        let min = obj
            .pointer("/spec/minReplicas")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let max = obj
            .pointer("/spec/maxReplicas")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if min < 1 {
            errs.push(FieldError::invalid(
                &spec.child("minReplicas"),
                min,
                "must be greater than or equal to 1",
            ));
        }
        if max < 1 {
            errs.push(FieldError::invalid(
                &spec.child("maxReplicas"),
                max,
                "must be greater than 0",
            ));
        } else if max < min {
            errs.push(FieldError::invalid(
                &spec.child("maxReplicas"),
                max,
                "must be greater than or equal to `minReplicas`",
            ));
        }
        if let Some(cpu) = obj
            .pointer("/spec/targetCPUUtilizationPercentage")
            .and_then(Value::as_i64)
        {
            if cpu < 1 {
                errs.push(FieldError::invalid(
                    &spec.child("targetCPUUtilizationPercentage"),
                    cpu,
                    "must be greater than or equal to 1",
                ));
            }
        }
        errs
    }
}

/// RuntimeClasses (node.k8s.io/v1): the handler names a CRI runtime
/// configuration and is fixed.
pub struct RuntimeClassStrategy;

impl Strategy for RuntimeClassStrategy {
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if str_at(obj, "/handler").is_empty() {
            errs.push(FieldError::required(&FieldPath::new("handler"), ""));
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        let handler = str_at(new, "/handler");
        if handler != str_at(old, "/handler") {
            errs.push(FieldError::invalid(
                &FieldPath::new("handler"),
                handler,
                "field is immutable",
            ));
        }
        errs
    }
}

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;
