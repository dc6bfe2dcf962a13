//! pods/binding: the scheduler's way of putting a pod on a node.
//!
//! Upstream counterpart: `BindingREST` in
//! `pkg/registry/core/pod/storage/storage.go` (`assignPod`,
//! `setPodNodeAndMetadata`) and `ValidatePodBinding`. A binding sets
//! spec.nodeName of a pod that has none, adds the binding's annotations
//! and marks the pod PodScheduled=True, in one compare-and-swap; the
//! binding's uid and resourceVersion are preconditions on the pod.

use rkube_machinery::time::{format_time, Timestamp};
use rkube_machinery::{FieldError, FieldPath, GroupKind, GroupResource, StatusError};
use serde_json::{json, Map, Value};

use crate::resources::util::{child, str_at};
use crate::{meta, ResourceStore, Result, Target};

/// Field errors of a Binding (upstream `ValidatePodBinding`).
pub fn validate_binding(binding: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let target = FieldPath::new("target");
    let kind = str_at(binding, "/target/kind");
    if !kind.is_empty() && kind != "Node" {
        errs.push(FieldError::not_supported(
            &target.child("kind"),
            kind,
            &["Node", "<empty>"],
        ));
    }
    if str_at(binding, "/target/name").is_empty() {
        errs.push(FieldError::required(&target.child("name"), ""));
    }
    errs
}

/// Why a pod cannot be bound; reported as a Conflict on `pods/binding`.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    #[error("pod {pod} is being deleted, cannot be assigned to a host")]
    BeingDeleted { pod: String },
    #[error("pod {pod} is already assigned to node {node:?}")]
    AlreadyAssigned { pod: String, node: String },
    #[error("pod {pod} has non-empty .spec.schedulingGates")]
    SchedulingGated { pod: String },
}

/// The pod bound to `node` at `now`: spec.nodeName, the binding's
/// annotations, and the PodScheduled condition.
pub fn bind_pod(
    pod: &Value,
    node: &str,
    annotations: Option<&Map<String, Value>>,
    now: &Timestamp,
) -> Result<Value, BindError> {
    let name = meta::name(pod).to_string();
    if meta::deletion_timestamp(pod).is_some() {
        return Err(BindError::BeingDeleted { pod: name });
    }
    let assigned = str_at(pod, "/spec/nodeName");
    if !assigned.is_empty() {
        return Err(BindError::AlreadyAssigned {
            pod: name,
            node: assigned.to_string(),
        });
    }
    let gated = pod
        .pointer("/spec/schedulingGates")
        .and_then(Value::as_array)
        .is_some_and(|g| !g.is_empty());
    if gated {
        return Err(BindError::SchedulingGated { pod: name });
    }
    let mut pod = pod.clone();
    let Some(map) = pod.as_object_mut() else {
        return Ok(pod);
    };
    child(map, "spec").insert("nodeName".into(), node.into());
    if let Some(extra) = annotations.filter(|a| !a.is_empty()) {
        let annotations = child(child(map, "metadata"), "annotations");
        for (k, v) in extra {
            annotations.insert(k.clone(), v.clone());
        }
    }
    set_condition(
        child(map, "status"),
        json!({"type": "PodScheduled", "status": "True"}),
        now,
    );
    Ok(pod)
}

/// Put `condition` into status.conditions as upstream's
/// `UpdatePodCondition` does: the transition time moves only when the
/// condition's status changes; reason and message are replaced.
pub fn set_condition(status: &mut Map<String, Value>, mut condition: Value, now: &Timestamp) {
    let kind = str_at(&condition, "/type").to_string();
    let conditions = status
        .entry("conditions")
        .or_insert_with(|| Value::Array(Vec::new()));
    if !conditions.is_array() {
        *conditions = Value::Array(Vec::new());
    }
    let list = conditions.as_array_mut().expect("made an array");
    let existing = list.iter().position(|c| str_at(c, "/type") == kind);
    let mut transition = Value::String(format_time(now));
    if let Some(i) = existing {
        if str_at(&list[i], "/status") == str_at(&condition, "/status") {
            if let Some(t) = list[i].get("lastTransitionTime") {
                transition = t.clone();
            }
        }
    }
    if let Some(c) = condition.as_object_mut() {
        c.entry("lastProbeTime").or_insert(Value::Null);
        c.insert("lastTransitionTime".into(), transition);
    }
    match existing {
        Some(i) => list[i] = condition,
        None => list.push(condition),
    }
}

/// Bind pod `name` in `namespace` as `binding` says, on the pods store.
pub async fn bind(
    pods: &ResourceStore,
    namespace: &str,
    name: &str,
    binding: &Value,
    dry_run: bool,
) -> Result<()> {
    let errs = validate_binding(binding);
    if !errs.is_empty() {
        return Err(StatusError::invalid(
            &GroupKind::core("Binding"),
            name,
            &errs,
        ));
    }
    let node = str_at(binding, "/target/name").to_string();
    let uid = meta::uid(binding).to_string();
    let rv = meta::resource_version(binding).to_string();
    let annotations = binding
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .cloned();
    let now = pods.now();
    let gr = GroupResource::new("", "pods/binding");
    pods.modify(Some(namespace), name, Target::Whole, dry_run, |current| {
        if !uid.is_empty() && uid != meta::uid(current) {
            let msg = format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                meta::uid(current)
            );
            return Err(StatusError::conflict(&pods.group_resource(), name, msg));
        }
        let mut pod = bind_pod(current, &node, annotations.as_ref(), &now)
            .map_err(|e| StatusError::conflict(&gr, name, e))?;
        // Without a precondition the write retries on the latest pod.
        if rv.is_empty() {
            meta::remove(&mut pod, "resourceVersion");
        } else {
            meta::set(&mut pod, "resourceVersion", rv.clone());
        }
        Ok(pod)
    })
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rkube_machinery::time::parse_time;

    fn now() -> Timestamp {
        parse_time("2026-01-02T03:04:05Z").unwrap()
    }

    #[test]
    fn binding_sets_node_and_scheduled_condition() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {}, "status": {"phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                            "lastTransitionTime": "2020-01-01T00:00:00Z"}]}});
        let mut ann = Map::new();
        ann.insert("a".into(), "b".into());
        let bound = bind_pod(&pod, "n1", Some(&ann), &now()).unwrap();
        assert_eq!(bound["spec"]["nodeName"], "n1");
        assert_eq!(bound["metadata"]["annotations"]["a"], "b");
        assert_eq!(
            bound["status"]["conditions"],
            json!([{"type": "PodScheduled", "status": "True", "lastProbeTime": null,
                    "lastTransitionTime": "2026-01-02T03:04:05Z"}])
        );
    }

    #[test]
    fn binding_keeps_transition_time_when_status_is_unchanged() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {}, "status": {"conditions": [
            {"type": "Ready", "status": "False"},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}]}});
        let bound = bind_pod(&pod, "n1", None, &now()).unwrap();
        assert_eq!(
            bound["status"]["conditions"][1]["lastTransitionTime"],
            "2020-01-01T00:00:00Z"
        );
        assert_eq!(bound["status"]["conditions"][0]["type"], "Ready");
    }

    #[test]
    fn assigned_deleted_and_gated_pods_are_refused() {
        let assigned = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n0"}});
        assert_eq!(
            bind_pod(&assigned, "n1", None, &now())
                .unwrap_err()
                .to_string(),
            "pod p is already assigned to node \"n0\""
        );
        let deleted = json!({"metadata": {"name": "p", "deletionTimestamp": "2026-01-01T00:00:00Z"}, "spec": {}});
        assert!(matches!(
            bind_pod(&deleted, "n1", None, &now()),
            Err(BindError::BeingDeleted { .. })
        ));
        let gated =
            json!({"metadata": {"name": "p"}, "spec": {"schedulingGates": [{"name": "g"}]}});
        assert!(matches!(
            bind_pod(&gated, "n1", None, &now()),
            Err(BindError::SchedulingGated { .. })
        ));
    }

    #[test]
    fn binding_needs_a_node_target() {
        let errs = validate_binding(&json!({"target": {"kind": "Pod"}}));
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["target.kind", "target.name"]);
    }
}
