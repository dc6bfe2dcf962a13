//! Typed decoding of request objects and `fieldValidation`.
//!
//! Upstream counterpart: the apiserver's strict/lenient decoding
//! (`fieldValidation=Strict|Warn|Ignore`). An object is decoded into its
//! k8s-openapi type and encoded again, as the Go server decodes into its
//! structs; what the round trip lost (besides nulls) are unknown fields.

use rkube_machinery::StatusError;
use rkube_registry::ResourceStore;
use serde_json::Value;

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
