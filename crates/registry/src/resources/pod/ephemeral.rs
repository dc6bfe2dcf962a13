//! The `pods/{name}/ephemeralcontainers` subresource: debug containers
//! are added to a running pod, never changed or removed.
//!
//! Upstream counterpart: `podEphemeralContainersStrategy` in
//! `pkg/registry/core/pod/strategy.go` (only spec.ephemeralContainers is
//! taken from the request) and `ValidatePodEphemeralContainersUpdate` /
//! `validateEphemeralContainers` in `pkg/apis/core/validation`. The
//! messages are upstream's, without the Go struct diff it appends to
//! "may not be changed".

use std::collections::{HashMap, HashSet};

use rkube_machinery::names::is_dns1123_label;
use rkube_machinery::{FieldError, FieldPath};
use serde_json::Value;

use crate::resources::util::{items, str_at};

/// Fields a container may have that an ephemeral container may not: it
/// holds no resources, serves nothing and is never probed or restarted.
const FORBIDDEN_FIELDS: &[&str] = &[
    "lifecycle",
    "livenessProbe",
    "ports",
    "readinessProbe",
    "resizePolicy",
    "resources",
    "restartPolicy",
    "startupProbe",
];

/// Field errors of changing pod `old` into `new` through the subresource
/// (everything but spec.ephemeralContainers is already the old pod's).
pub fn validate_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let path = FieldPath::new("spec").child("ephemeralContainers");
    let mut errs = validate_list(new, &path);
    let null = Value::Null;
    let new_list = items(new.get("spec").unwrap_or(&null), "ephemeralContainers");
    let by_name: HashMap<&str, &Value> = new_list
        .iter()
        .map(|c| (c.get("name").and_then(Value::as_str).unwrap_or(""), c))
        .collect();
    for c in items(old.get("spec").unwrap_or(&null), "ephemeralContainers") {
        let name = c.get("name").and_then(Value::as_str).unwrap_or("");
        // Patches do not keep the order, so each old one is looked up.
        match by_name.get(name) {
            None => errs.push(FieldError::forbidden(
                &path,
                format!("existing ephemeral containers {name:?} may not be removed\n"),
            )),
            Some(now) if *now != c => errs.push(FieldError::forbidden(
                &path,
                format!("existing ephemeral containers {name:?} may not be changed\n"),
            )),
            Some(_) => {}
        }
    }
    errs
}

/// Each ephemeral container of `pod`: a unique name across all its
/// containers, an image, a target that exists, no forbidden field.
fn validate_list(pod: &Value, path: &FieldPath) -> Vec<FieldError> {
    let null = Value::Null;
    let spec = pod.get("spec").unwrap_or(&null);
    let mut errs = Vec::new();
    let others: HashSet<&str> = ["containers", "initContainers"]
        .iter()
        .flat_map(|k| items(spec, k))
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    let mut seen = HashSet::new();
    for (i, c) in items(spec, "ephemeralContainers").iter().enumerate() {
        let cpath = path.index(i);
        let name = str_at(c, "/name");
        if name.is_empty() {
            errs.push(FieldError::required(&cpath.child("name"), ""));
        } else {
            for msg in is_dns1123_label(name) {
                errs.push(FieldError::invalid(&cpath.child("name"), name, msg));
            }
            if others.contains(name) || !seen.insert(name) {
                errs.push(FieldError::duplicate(&cpath.child("name"), name));
            }
        }
        if str_at(c, "/image").is_empty() {
            errs.push(FieldError::required(&cpath.child("image"), ""));
        }
        let target = str_at(c, "/targetContainerName");
        if !target.is_empty() && !others.contains(target) {
            errs.push(FieldError::not_found(
                &cpath.child("targetContainerName"),
                target,
            ));
        }
        for field in FORBIDDEN_FIELDS {
            let set = c.get(*field).is_some_and(|v| match v {
                Value::Null => false,
                Value::Object(m) => !m.is_empty(),
                Value::Array(a) => !a.is_empty(),
                _ => true,
            });
            if set {
                errs.push(FieldError::forbidden(
                    &cpath.child(*field),
                    "cannot be set for an Ephemeral Container",
                ));
            }
        }
    }
    errs
}

/// Upstream refuses ephemeral containers in a new pod: they only come
/// through the subresource.
pub fn validate_create(pod: &Value) -> Option<FieldError> {
    let path = FieldPath::new("spec").child("ephemeralContainers");
    (!items(
        pod.get("spec").unwrap_or(&Value::Null),
        "ephemeralContainers",
    )
    .is_empty())
    .then(|| FieldError::forbidden(&path, "cannot be set on create"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(ephemeral: Value) -> Value {
        json!({"spec": {"containers": [{"name": "app", "image": "i"}],
                        "ephemeralContainers": ephemeral}})
    }

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn adding_is_allowed_changing_and_removing_are_not() {
        let dbg = json!({"name": "dbg", "image": "busybox", "targetContainerName": "app"});
        let old = pod(json!([dbg.clone()]));
        let added = pod(json!([dbg.clone(), {"name": "dbg2", "image": "busybox"}]));
        assert!(validate_update(&added, &old).is_empty());
        let changed = pod(json!([{"name": "dbg", "image": "other"}]));
        let errs = messages(&validate_update(&changed, &old));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].contains(
            "spec.ephemeralContainers: Forbidden: existing ephemeral containers \"dbg\" may not be changed"
        ));
        let errs = messages(&validate_update(&pod(json!([])), &old));
        assert!(errs[0].contains("may not be removed"), "{errs:?}");
    }

    #[test]
    fn names_targets_and_forbidden_fields() {
        let new = pod(json!([
            {"name": "app", "image": "i"},
            {"name": "d", "image": "i", "targetContainerName": "nope",
             "ports": [{"containerPort": 80}], "resources": {}}
        ]));
        let errs = messages(&validate_update(&new, &pod(json!([]))));
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].contains("spec.ephemeralContainers[0].name: Duplicate value: \"app\""));
        assert!(errs[1].contains("spec.ephemeralContainers[1].targetContainerName: Not found"));
        assert!(errs[2].contains(
            "spec.ephemeralContainers[1].ports: Forbidden: cannot be set for an Ephemeral Container"
        ));
    }

    #[test]
    fn not_on_create() {
        assert!(validate_create(&pod(json!([{"name": "d", "image": "i"}]))).is_some());
        assert!(validate_create(&pod(json!([]))).is_none());
    }
}
