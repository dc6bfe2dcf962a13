//! One stored object, several API versions: conversions between the
//! version a request speaks and the version objects are stored in.
//!
//! Upstream counterpart: the storage version of a resource and the
//! generated/handwritten conversions (`pkg/apis/events/v1/conversion.go`:
//! events.k8s.io/v1 Events are core Events renamed;
//! `pkg/apis/autoscaling/v1/conversion.go`: an autoscaling/v1 HPA is the
//! v2 object with its CPU target lifted out and everything v1 cannot say
//! kept in `autoscaling.alpha.kubernetes.io/*` annotations). A resource
//! with a conversion shares the key prefix of its storage version, so a
//! write through either version is seen by both.

use serde_json::{json, Map, Value};

/// How a served version maps onto the stored one.
pub trait Conversion: Send + Sync {
    /// The request version's object as it is stored.
    fn to_storage(&self, obj: Value) -> Value;
    /// A stored object as the request version shows it.
    fn to_served(&self, obj: Value) -> Value;
}

/// The conversion of a served resource and the key prefix of its storage
/// version; `None` for resources stored as they are served.
pub fn for_resource(
    group: &str,
    version: &str,
    plural: &str,
) -> Option<(&'static dyn Conversion, &'static str)> {
    match (group, version, plural) {
        ("events.k8s.io", "v1", "events") => Some((&EventsV1, "/registry/events/")),
        ("autoscaling", "v1", "horizontalpodautoscalers") => {
            Some((&HpaV1, "/registry/autoscaling/horizontalpodautoscalers/"))
        }
        _ => None,
    }
}

fn set_type(obj: &mut Map<String, Value>, api_version: &str, kind: &str) {
    obj.insert("apiVersion".into(), api_version.into());
    obj.insert("kind".into(), kind.into());
}

/// Move `from` to `to`, dropping nulls.
fn rename(obj: &mut Map<String, Value>, from: &str, to: &str) {
    match obj.remove(from) {
        Some(Value::Null) | None => {}
        Some(v) => {
            obj.insert(to.into(), v);
        }
    }
}

/// events.k8s.io/v1 over core/v1 storage.
pub struct EventsV1;

/// (core/v1 name, events.k8s.io/v1 name).
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
];

impl Conversion for EventsV1 {
    fn to_storage(&self, mut obj: Value) -> Value {
        if let Some(map) = obj.as_object_mut() {
            for (core, v1) in EVENT_FIELDS {
                rename(map, v1, core);
            }
            set_type(map, "v1", "Event");
        }
        obj
    }

    fn to_served(&self, mut obj: Value) -> Value {
        if let Some(map) = obj.as_object_mut() {
            for (core, v1) in EVENT_FIELDS {
                rename(map, core, v1);
            }
            set_type(map, "events.k8s.io/v1", "Event");
        }
        obj
    }
}

/// autoscaling/v1 HorizontalPodAutoscalers over autoscaling/v2 storage.
pub struct HpaV1;

const METRICS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/metrics";
const CURRENT_METRICS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
const CONDITIONS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/conditions";
const BEHAVIOR_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/behavior";

fn is_cpu_utilization(metric: &Value, which: &str) -> bool {
    metric.get("type").and_then(Value::as_str) == Some("Resource")
        && metric.pointer("/resource/name").and_then(Value::as_str) == Some("cpu")
        && metric
            .pointer(&format!("/resource/{which}/averageUtilization"))
            .is_some()
}

fn annotations(obj: &mut Map<String, Value>) -> &mut Map<String, Value> {
    let meta = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    let ann = meta
        .as_object_mut()
        .expect("made an object")
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    if !ann.is_object() {
        *ann = Value::Object(Map::new());
    }
    ann.as_object_mut().expect("made an object")
}

fn drop_empty_annotations(obj: &mut Map<String, Value>) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if meta
            .get("annotations")
            .and_then(Value::as_object)
            .is_some_and(Map::is_empty)
        {
            meta.remove("annotations");
        }
    }
}

/// Take an annotation holding JSON out of the object.
fn take_json(obj: &mut Map<String, Value>, key: &str) -> Option<Value> {
    let text = annotations(obj).remove(key)?;
    serde_json::from_str(text.as_str()?).ok()
}

fn put_json(obj: &mut Map<String, Value>, key: &str, value: &Value) {
    let text = serde_json::to_string(value).expect("JSON values serialize");
    annotations(obj).insert(key.into(), text.into());
}

impl Conversion for HpaV1 {
    fn to_storage(&self, mut obj: Value) -> Value {
        let Some(map) = obj.as_object_mut() else {
            return obj;
        };
        set_type(map, "autoscaling/v2", "HorizontalPodAutoscaler");
        let mut metrics: Vec<Value> = match take_json(map, METRICS_ANNOTATION) {
            Some(Value::Array(m)) => m,
            _ => Vec::new(),
        };
        let behavior = take_json(map, BEHAVIOR_ANNOTATION);
        let conditions = take_json(map, CONDITIONS_ANNOTATION);
        let mut current: Vec<Value> = match take_json(map, CURRENT_METRICS_ANNOTATION) {
            Some(Value::Array(m)) => m,
            _ => Vec::new(),
        };
        drop_empty_annotations(map);
        let spec = crate::resources::util::child(map, "spec");
        if let Some(cpu) = spec.remove("targetCPUUtilizationPercentage") {
            if !cpu.is_null() {
                metrics.insert(
                    0,
                    json!({"type": "Resource", "resource": {"name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": cpu}}}),
                );
            }
        }
        if !metrics.is_empty() {
            spec.insert("metrics".into(), Value::Array(metrics));
        }
        if let Some(b) = behavior {
            spec.insert("behavior".into(), b);
        }
        if let Some(status) = map.get_mut("status").and_then(Value::as_object_mut) {
            if let Some(cpu) = status.remove("currentCPUUtilizationPercentage") {
                if !cpu.is_null() {
                    current.insert(
                        0,
                        json!({"type": "Resource", "resource": {"name": "cpu",
                            "current": {"averageUtilization": cpu}}}),
                    );
                }
            }
            if !current.is_empty() {
                status.insert("currentMetrics".into(), Value::Array(current));
            }
            if let Some(c) = conditions {
                status.insert("conditions".into(), c);
            }
        }
        obj
    }

    fn to_served(&self, mut obj: Value) -> Value {
        let Some(map) = obj.as_object_mut() else {
            return obj;
        };
        set_type(map, "autoscaling/v1", "HorizontalPodAutoscaler");
        let mut extra = Map::new();
        if let Some(spec) = map.get_mut("spec").and_then(Value::as_object_mut) {
            let metrics = match spec.remove("metrics") {
                Some(Value::Array(m)) => m,
                _ => Vec::new(),
            };
            let (cpu, others): (Vec<Value>, Vec<Value>) = metrics
                .into_iter()
                .partition(|m| is_cpu_utilization(m, "target"));
            if let Some(cpu) = cpu.into_iter().next() {
                let pct = cpu.pointer("/resource/target/averageUtilization").cloned();
                spec.insert("targetCPUUtilizationPercentage".into(), pct.into());
            }
            if !others.is_empty() {
                extra.insert(METRICS_ANNOTATION.into(), Value::Array(others));
            }
            if let Some(b) = spec.remove("behavior").filter(|b| !b.is_null()) {
                extra.insert(BEHAVIOR_ANNOTATION.into(), b);
            }
        }
        if let Some(status) = map.get_mut("status").and_then(Value::as_object_mut) {
            let current = match status.remove("currentMetrics") {
                Some(Value::Array(m)) => m,
                _ => Vec::new(),
            };
            let (cpu, others): (Vec<Value>, Vec<Value>) = current
                .into_iter()
                .partition(|m| is_cpu_utilization(m, "current"));
            if let Some(cpu) = cpu.into_iter().next() {
                let pct = cpu.pointer("/resource/current/averageUtilization").cloned();
                status.insert("currentCPUUtilizationPercentage".into(), pct.into());
            }
            if !others.is_empty() {
                extra.insert(CURRENT_METRICS_ANNOTATION.into(), Value::Array(others));
            }
            if let Some(c) = status.remove("conditions").filter(|c| !c.is_null()) {
                extra.insert(CONDITIONS_ANNOTATION.into(), c);
            }
        }
        for (k, v) in &extra {
            put_json(map, k, v);
        }
        obj
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_v1_renames_core_fields_both_ways() {
        let core = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"},
            "involvedObject": {"kind": "Pod", "name": "p"}, "message": "hi", "count": 2,
            "source": {"component": "kubelet"}, "reportingComponent": "kubelet",
            "firstTimestamp": null, "reason": "Started", "type": "Normal"});
        let v1 = EventsV1.to_served(core.clone());
        assert_eq!(v1["apiVersion"], "events.k8s.io/v1");
        assert_eq!(v1["regarding"]["name"], "p");
        assert_eq!(v1["note"], "hi");
        assert_eq!(v1["deprecatedCount"], 2);
        assert_eq!(v1["deprecatedSource"]["component"], "kubelet");
        assert_eq!(v1["reportingController"], "kubelet");
        assert_eq!(v1["reason"], "Started");
        assert!(v1.get("firstTimestamp").is_none());
        let mut back = core;
        back.as_object_mut().unwrap().remove("firstTimestamp");
        assert_eq!(EventsV1.to_storage(v1), back);
    }

    #[test]
    fn hpa_v1_lifts_the_cpu_target_and_keeps_the_rest_in_annotations() {
        let v2 = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "h"},
            "spec": {"minReplicas": 1, "maxReplicas": 5, "scaleTargetRef": {"kind": "Deployment", "name": "web"},
                     "metrics": [
                        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}},
                        {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}}]},
            "status": {"currentReplicas": 2, "desiredReplicas": 2,
                       "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 30}}}],
                       "conditions": [{"type": "AbleToScale", "status": "True"}]}});
        let v1 = HpaV1.to_served(v2.clone());
        assert_eq!(v1["apiVersion"], "autoscaling/v1");
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 60);
        assert!(v1["spec"].get("metrics").is_none());
        assert_eq!(v1["status"]["currentCPUUtilizationPercentage"], 30);
        let ann = &v1["metadata"]["annotations"];
        assert!(ann[METRICS_ANNOTATION].as_str().unwrap().contains("memory"));
        assert!(ann[CONDITIONS_ANNOTATION]
            .as_str()
            .unwrap()
            .contains("AbleToScale"));
        // And back to the same v2 object.
        assert_eq!(HpaV1.to_storage(v1), v2);
    }

    #[test]
    fn a_plain_v1_hpa_gets_a_cpu_metric() {
        let v1 = json!({"metadata": {"name": "h"}, "spec": {"maxReplicas": 3, "targetCPUUtilizationPercentage": 50}});
        let v2 = HpaV1.to_storage(v1);
        assert_eq!(
            v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            50
        );
        assert!(v2["metadata"].get("annotations").is_none());
    }
}
