//! Pods: defaulted as kube-apiserver defaults them (plus the default
//! admission plugins' additions), born Pending with their QoS class,
//! almost immutable, deleted gracefully once they run on a node.
//!
//! Upstream counterpart: `pkg/registry/core/pod/strategy.go`
//! (`PrepareForCreate`, `PrepareForUpdate`, `CheckGracefulDelete`,
//! `PodToSelectableFields`) and `pkg/apis/core/v1/helper/qos`.

pub mod admission;
pub mod binding;
pub mod defaults;
pub mod ephemeral;
pub mod eviction;
mod update;
pub mod validation;

#[cfg(test)]
mod tests;

use rkube_machinery::{FieldError, FieldPath};
use serde_json::{json, Map, Value};

use crate::resources::quantity;
use crate::resources::util::{items, str_at};
use crate::strategy::copy_field;
use crate::{DeletePolicy, Strategy};

pub use update::POD_UPDATE_FORBIDDEN;

/// `terminationGracePeriodSeconds` when a pod names none.
pub const DEFAULT_GRACE_SECONDS: i64 = 30;

pub struct PodStrategy;

/// The defaults a pod gets on every write (upstream decodes every request
/// body through `SetDefaults_Pod`).
pub fn default_pod(pod: &mut Value) {
    let Some(map) = pod.as_object_mut() else {
        return;
    };
    let spec = crate::resources::util::child(map, "spec");
    defaults::default_pod_only(spec);
    defaults::default_pod_spec(spec);
}

impl Strategy for PodStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        default_pod(obj);
        admission::admit(obj);
        let qos = qos_class(obj);
        if let Some(map) = obj.as_object_mut() {
            map.insert(
                "status".into(),
                json!({"phase": "Pending", "qosClass": qos}),
            );
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = validate_spec(obj);
        errs.extend(ephemeral::validate_create(obj));
        errs
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        default_pod(new);
        copy_field(new, old, "status");
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = validate_spec(new);
        errs.extend(update::validate_pod_update(new, old));
        errs
    }

    fn prepare_target_update(&self, target: crate::Target, new: &mut Value) {
        if target == crate::Target::EphemeralContainers {
            default_pod(new);
        }
    }

    fn validate_target_update(
        &self,
        target: crate::Target,
        new: &Value,
        old: &Value,
    ) -> Vec<FieldError> {
        match target {
            crate::Target::EphemeralContainers => ephemeral::validate_update(new, old),
            _ => Vec::new(),
        }
    }

    fn delete_policy(&self) -> DeletePolicy {
        DeletePolicy::Graceful
    }

    fn default_grace_period(&self, obj: &Value) -> i64 {
        // The same answer `grace_period` gives a request that names none,
        // so a store that only asks this one deletes unscheduled pods at
        // once too.
        self.grace_period(obj, None)
    }

    fn grace_period(&self, obj: &Value, requested: Option<i64>) -> i64 {
        // A pod no kubelet runs has nobody to wait for.
        if str_at(obj, "/spec/nodeName").is_empty() {
            return 0;
        }
        if matches!(str_at(obj, "/status/phase"), "Succeeded" | "Failed") {
            return 0;
        }
        let period = requested.unwrap_or_else(|| {
            obj.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(DEFAULT_GRACE_SECONDS)
        });
        // Upstream turns a negative period into the shortest real one.
        if period < 0 {
            1
        } else {
            period
        }
    }

    fn return_deleted_object(&self) -> bool {
        true
    }
}

fn validate_spec(pod: &Value) -> Vec<FieldError> {
    let spec = pod.get("spec").cloned().unwrap_or(Value::Null);
    validation::validate_pod_spec(&spec, &FieldPath::new("spec"))
}

/// The QoS class of a pod (upstream `GetPodQOS`): BestEffort without any
/// cpu/memory request or limit, Guaranteed when every container limits
/// both and requests equal limits, else Burstable.
pub fn qos_class(pod: &Value) -> &'static str {
    const COMPUTE: [&str; 2] = ["cpu", "memory"];
    let null = Value::Null;
    let spec = pod.get("spec").unwrap_or(&null);
    let mut requests: Map<String, Value> = Map::new();
    let mut limits: Map<String, Value> = Map::new();
    let sum = |into: &mut Map<String, Value>, list: Option<&Value>| -> Vec<String> {
        let mut found = Vec::new();
        for (name, v) in list.and_then(Value::as_object).into_iter().flatten() {
            let Some(q) = quantity::parse_value(v).filter(|q| !q.is_zero()) else {
                continue;
            };
            if !COMPUTE.contains(&name.as_str()) {
                continue;
            }
            found.push(name.clone());
            // Kept as the sum in nano-units; only equality matters.
            let prev = into
                .get(name)
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<i128>().ok());
            let nanos = q.nanos() + prev.unwrap_or(0);
            into.insert(name.clone(), nanos.to_string().into());
        }
        found
    };
    let mut guaranteed = true;
    for key in ["initContainers", "containers"] {
        for c in items(spec, key) {
            sum(&mut requests, c.pointer("/resources/requests"));
            let found = sum(&mut limits, c.pointer("/resources/limits"));
            if !COMPUTE.iter().all(|r| found.iter().any(|f| f == r)) {
                guaranteed = false;
            }
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed
        && requests.iter().all(|(k, v)| limits.get(k) == Some(v))
        && requests.len() == limits.len()
    {
        return "Guaranteed";
    }
    "Burstable"
}
