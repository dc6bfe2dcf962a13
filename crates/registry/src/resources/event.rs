//! Core v1 Events: they name the object they are about, in its namespace,
//! and expire an hour after their last write.
//!
//! Upstream counterpart: `pkg/registry/core/event/strategy.go` and
//! `ValidateEventCreate` (the legacy core/v1 rules) in
//! `pkg/apis/core/validation/events.go`; the TTL is kube-apiserver's
//! `--event-ttl` default.

use std::time::Duration;

use rkube_machinery::{FieldError, FieldPath};
use serde_json::Value;

use crate::resources::util::str_at;
use crate::Strategy;

/// How long an Event lives after its last write.
pub const EVENT_TTL: Duration = Duration::from_secs(60 * 60);

pub struct EventStrategy;

fn validate_event(ev: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let involved = FieldPath::new("involvedObject");
    if !ev.get("involvedObject").is_some_and(Value::is_object) {
        errs.push(FieldError::required(&involved, ""));
        return errs;
    }
    let ns = crate::meta::namespace(ev);
    let involved_ns = str_at(ev, "/involvedObject/namespace");
    // Events about cluster-scoped objects live in "default" (or nowhere,
    // for old clients); others live with their object.
    let agrees = if involved_ns.is_empty() {
        ns.is_empty() || ns == "default"
    } else {
        ns == involved_ns
    };
    if !agrees {
        errs.push(FieldError::invalid(
            &involved.child("namespace"),
            involved_ns,
            "does not match event.namespace",
        ));
    }
    let ty = str_at(ev, "/type");
    if !ty.is_empty() && ty != "Normal" && ty != "Warning" {
        errs.push(FieldError::not_supported(
            &FieldPath::new("type"),
            ty,
            &["Normal", "Warning"],
        ));
    }
    errs
}

impl Strategy for EventStrategy {
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_event(obj)
    }

    fn ttl(&self) -> Option<Duration> {
        Some(EVENT_TTL)
    }
}

/// `events.k8s.io/v1` Events: the same objects seen through the newer
/// API; they expire the same way.
pub struct EventsV1Strategy;

impl Strategy for EventsV1Strategy {
    fn ttl(&self) -> Option<Duration> {
        Some(EVENT_TTL)
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
    fn events_need_an_involved_object_in_their_namespace() {
        let s = EventStrategy;
        let missing = json!({"metadata": {"name": "e", "namespace": "default"}});
        assert_eq!(
            messages(&s.validate(&missing)),
            ["involvedObject: Required value"]
        );
        let ok = json!({"metadata": {"name": "e", "namespace": "a"},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "a"}, "type": "Normal"});
        assert!(s.validate(&ok).is_empty());
        let node_event = json!({"metadata": {"name": "e", "namespace": "default"},
            "involvedObject": {"kind": "Node", "name": "n"}});
        assert!(s.validate(&node_event).is_empty());
        let wrong = json!({"metadata": {"name": "e", "namespace": "b"},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "a"}, "type": "Odd"});
        assert_eq!(
            messages(&s.validate(&wrong)),
            [
                r#"involvedObject.namespace: Invalid value: "a": does not match event.namespace"#,
                r#"type: Unsupported value: "Odd": supported values: "Normal", "Warning""#,
            ]
        );
        assert_eq!(s.ttl(), Some(Duration::from_secs(3600)));
        assert_eq!(EventsV1Strategy.ttl(), Some(Duration::from_secs(3600)));
    }
}
