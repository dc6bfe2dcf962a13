//! Typed decoding of request objects and `fieldValidation`.
//!
//! Upstream counterpart: the apiserver's strict/lenient decoding
//! (`fieldValidation=Strict|Warn|Ignore`). An object is decoded into its
//! k8s-openapi type and encoded again, as the Go server decodes into its
//! structs; what the round trip lost (besides nulls) are unknown fields.

use rkube_machinery::StatusError;
use rkube_registry::{ResourceStore, Target};
use serde_json::{Map, Value};

use crate::request::Query;

/// What `fieldValidation` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

impl FieldValidation {
    pub fn from_query(query: &Query) -> Result<FieldValidation, StatusError> {
        match query.get("fieldValidation") {
            None | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some(other) => Err(StatusError::bad_request(format!(
                "fieldValidation parameter unsupported: {other:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
            ))),
        }
    }
}

/// The object as its type keeps it, and warnings for unknown fields (or a
/// 400 under Strict).
pub fn typed(
    rs: &ResourceStore,
    obj: &Value,
    mode: FieldValidation,
) -> Result<(Value, Vec<String>), StatusError> {
    let kind = rs.info.kind;
    let cannot = |detail: String| {
        StatusError::bad_request(format!(
            "{kind} in version \"{}\" cannot be handled as a {kind}: {detail}",
            rs.info.version
        ))
    };
    let normalized = rs.info.normalize(obj).map_err(|e| cannot(e.to_string()))?;
    let mut unknown = Vec::new();
    if mode != FieldValidation::Ignore {
        unknown_fields(obj, &normalized, &mut String::new(), &mut unknown);
    }
    let messages: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    if mode == FieldValidation::Strict && !messages.is_empty() {
        return Err(cannot(format!(
            "strict decoding error: {}",
            messages.join(", ")
        )));
    }
    Ok((normalized, messages))
}

/// [`typed`] for an update of `current` into `new`. A write through the
/// status subresource that changed nothing outside `status` (every kubelet
/// status patch) decodes only its status: the rest equals the stored
/// object, which went through [`typed`] when it was written, and the
/// status subresource keeps the stored rest anyway. Round-tripping the
/// whole pod through its k8s-openapi type for that showed in profiles.
pub fn typed_update(
    rs: &ResourceStore,
    current: &Value,
    mut new: Value,
    target: Target,
    mode: FieldValidation,
) -> Result<(Value, Vec<String>), StatusError> {
    if target != Target::Status || !only_status_differs(current, &new) {
        return typed(rs, &new, mode);
    }
    let Some(obj) = new.as_object_mut() else {
        return typed(rs, &new, mode);
    };
    let mut slim = Map::new();
    for key in ["apiVersion", "kind"] {
        if let Some(v) = obj.get(key) {
            slim.insert(key.into(), v.clone());
        }
    }
    if let Some(status) = obj.remove("status") {
        slim.insert("status".into(), status);
    }
    let mut slim = Value::Object(slim);
    match typed(rs, &slim, mode) {
        Ok((mut normalized, warnings)) => {
            if let Some(status) = normalized.as_object_mut().and_then(|m| m.remove("status")) {
                obj.insert("status".into(), status);
            }
            Ok((new, warnings))
        }
        // A type that cannot be decoded from its status alone (a required
        // spec): the whole object, for the same answer as before.
        Err(_) => {
            if let Some(status) = slim.as_object_mut().and_then(|m| m.remove("status")) {
                obj.insert("status".into(), status);
            }
            typed(rs, &new, mode)
        }
    }
}

/// Whether `new` equals `current` outside the top-level `status`.
fn only_status_differs(current: &Value, new: &Value) -> bool {
    let (Some(a), Some(b)) = (current.as_object(), new.as_object()) else {
        return false;
    };
    let others = |m: &Map<String, Value>| m.len() - usize::from(m.contains_key("status"));
    others(a) == others(b) && b.iter().all(|(k, v)| k == "status" || a.get(k) == Some(v))
}

/// Paths present in `input` (and not null) but absent after the round trip.
/// `path` is the walk's position, extended and cut back in place: every
/// write passes here, and a string per field visited showed in profiles.
fn unknown_fields(input: &Value, kept: &Value, path: &mut String, out: &mut Vec<String>) {
    let len = path.len();
    match (input, kept) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                match b.get(key) {
                    Some(k @ (Value::Object(_) | Value::Array(_))) => {
                        if len > 0 {
                            path.push('.');
                        }
                        path.push_str(key);
                        unknown_fields(value, k, path, out);
                        path.truncate(len);
                    }
                    Some(_) => {}
                    None if value.is_null() || is_empty(value) => {}
                    None if len == 0 => out.push(key.clone()),
                    None => out.push(format!("{path}.{key}")),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                if matches!(x, Value::Object(_) | Value::Array(_)) {
                    use std::fmt::Write;
                    let _ = write!(path, "[{i}]");
                    unknown_fields(x, y, path, out);
                    path.truncate(len);
                }
            }
        }
        _ => {}
    }
}

/// Go drops empty optional collections on encode; they are not unknown.
fn is_empty(v: &Value) -> bool {
    matches!(v, Value::Object(m) if m.is_empty()) || matches!(v, Value::Array(a) if a.is_empty())
}

/// Add `Warning: 299 - "<text>"` headers, as kube-apiserver does.
pub fn add_warnings(resp: &mut http::Response<axum::body::Body>, warnings: &[String]) {
    for w in warnings {
        let text = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = http::HeaderValue::from_str(&format!("299 - \"{text}\"")) {
            resp.headers_mut().append(http::header::WARNING, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_unknown_nested_fields() {
        let input = json!({"spec": {"replicas": 1, "bogus": 2, "template": {"spec": {"containers": [{"name": "a", "nope": 1}]}}}, "x": null});
        let kept =
            json!({"spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "a"}]}}}});
        let mut out = Vec::new();
        unknown_fields(&input, &kept, &mut String::new(), &mut out);
        assert_eq!(
            out,
            vec!["spec.bogus", "spec.template.spec.containers[0].nope"]
        );
    }
}
