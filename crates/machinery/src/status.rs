//! `metav1.Status` error responses, worded as kube-apiserver words them.
//!
//! Upstream counterpart: `k8s.io/apimachinery/pkg/api/errors` (`NewNotFound`,
//! `NewConflict`, `NewInvalid`, ...) plus the negotiation errors of
//! `k8s.io/apiserver/pkg/endpoints/handlers/negotiation`. Clients key off
//! `reason` and `code`, and kubectl prints `message` to users, so all three
//! follow upstream to the letter. Internal errors elsewhere in rkube are
//! turned into a [`StatusError`] only at the HTTP edge.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::field::{aggregate_message, FieldError};

/// `status` of a failed request.
pub const STATUS_FAILURE: &str = "Failure";
/// `status` of a successful request (e.g. a delete answered with a Status).
pub const STATUS_SUCCESS: &str = "Success";

/// The reason registries give for a write against a stale resourceVersion.
pub const OPTIMISTIC_LOCK_MESSAGE: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

/// `metav1.Status`. Field order and omission rules match Go's encoding so
/// the JSON is byte-for-byte what kube-apiserver sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub api_version: String,
    /// `ListMeta`; always present, usually `{}`.
    #[serde(default)]
    pub metadata: Map<String, Value>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<StatusDetails>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub code: i32,
}

/// `metav1.StatusDetails`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusDetails {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<StatusCause>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retry_after_seconds: i32,
}

/// `metav1.StatusCause`; note the cause type travels as `reason`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusCause {
    #[serde(rename = "reason", default, skip_serializing_if = "String::is_empty")]
    pub cause_type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub field: String,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// A resource and its API group (`schema.GroupResource`); displays as
/// `pods` or `deployments.apps`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct GroupResource {
    pub group: String,
    pub resource: String,
}

impl GroupResource {
    pub fn new(group: impl Into<String>, resource: impl Into<String>) -> Self {
        GroupResource {
            group: group.into(),
            resource: resource.into(),
        }
    }

    /// A resource of the core ("") group.
    pub fn core(resource: impl Into<String>) -> Self {
        Self::new("", resource)
    }

    pub fn is_empty(&self) -> bool {
        self.group.is_empty() && self.resource.is_empty()
    }
}

impl fmt::Display for GroupResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            f.write_str(&self.resource)
        } else {
            write!(f, "{}.{}", self.resource, self.group)
        }
    }
}

/// A kind and its API group (`schema.GroupKind`); displays as `Pod` or
/// `Deployment.apps`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct GroupKind {
    pub group: String,
    pub kind: String,
}

impl GroupKind {
    pub fn new(group: impl Into<String>, kind: impl Into<String>) -> Self {
        GroupKind {
            group: group.into(),
            kind: kind.into(),
        }
    }

    pub fn core(kind: impl Into<String>) -> Self {
        Self::new("", kind)
    }
}

impl fmt::Display for GroupKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            f.write_str(&self.kind)
        } else {
            write!(f, "{}.{}", self.kind, self.group)
        }
    }
}

impl Status {
    /// A Failure status with the given code, reason and message.
    pub fn failure(code: i32, reason: &str, message: impl Into<String>) -> Self {
        Status {
            kind: "Status".to_owned(),
            api_version: "v1".to_owned(),
            metadata: Map::new(),
            status: STATUS_FAILURE.to_owned(),
            message: message.into(),
            reason: reason.to_owned(),
            details: None,
            code,
        }
    }

    /// The Success status a DELETE answers with when it has no object to
    /// return (`{"status":"Success","details":{name,group,kind,uid}}`).
    pub fn success(details: Option<StatusDetails>) -> Self {
        Status {
            kind: "Status".to_owned(),
            api_version: "v1".to_owned(),
            metadata: Map::new(),
            status: STATUS_SUCCESS.to_owned(),
            message: String::new(),
            reason: String::new(),
            details,
            code: 0,
        }
    }

    pub fn to_json(&self) -> Value {
        // A struct of strings, maps and integers always serializes.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

fn resource_details(gr: &GroupResource, name: &str) -> StatusDetails {
    StatusDetails {
        name: name.to_owned(),
        group: gr.group.clone(),
        kind: gr.resource.clone(),
        ..StatusDetails::default()
    }
}

/// An error that is a `metav1.Status` (`errors.StatusError`).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{}", .0.message)]
pub struct StatusError(Box<Status>);

impl From<Status> for StatusError {
    fn from(s: Status) -> Self {
        StatusError(Box::new(s))
    }
}

impl StatusError {
    pub fn status(&self) -> &Status {
        &self.0
    }

    pub fn into_status(self) -> Status {
        *self.0
    }

    /// The HTTP status code to answer with.
    pub fn code(&self) -> i32 {
        self.0.code
    }

    pub fn reason(&self) -> &str {
        &self.0.reason
    }

    fn build(code: i32, reason: &str, message: String, details: Option<StatusDetails>) -> Self {
        let mut s = Status::failure(code, reason, message);
        s.details = details;
        s.into()
    }

    /// 404 `pods "foo" not found`.
    pub fn not_found(gr: &GroupResource, name: &str) -> Self {
        let msg = format!("{gr} {} not found", crate::quote::go_quote(name));
        Self::build(404, "NotFound", msg, Some(resource_details(gr, name)))
    }

    /// 409 `pods "foo" already exists`.
    pub fn already_exists(gr: &GroupResource, name: &str) -> Self {
        let msg = format!("{gr} {} already exists", crate::quote::go_quote(name));
        Self::build(409, "AlreadyExists", msg, Some(resource_details(gr, name)))
    }

    /// 409 when generateName kept colliding; tells the client to retry.
    pub fn generate_name_conflict(
        gr: &GroupResource,
        name: &str,
        retry_after_seconds: i32,
    ) -> Self {
        let msg = format!(
            "{gr} {} already exists, the server was not able to generate a unique name for the object",
            crate::quote::go_quote(name)
        );
        let mut d = resource_details(gr, name);
        d.retry_after_seconds = retry_after_seconds;
        Self::build(409, "AlreadyExists", msg, Some(d))
    }

    /// 409 `Operation cannot be fulfilled on pods "foo": <reason>`.
    pub fn conflict(gr: &GroupResource, name: &str, reason: impl fmt::Display) -> Self {
        let msg = format!(
            "Operation cannot be fulfilled on {gr} {}: {reason}",
            crate::quote::go_quote(name)
        );
        Self::build(409, "Conflict", msg, Some(resource_details(gr, name)))
    }

    /// The 409 of an update against a stale resourceVersion.
    pub fn conflict_modified(gr: &GroupResource, name: &str) -> Self {
        Self::conflict(gr, name, OPTIMISTIC_LOCK_MESSAGE)
    }

    /// 422 `Pod "foo" is invalid: spec.containers[0].image: Required value`,
    /// with one cause per field error.
    pub fn invalid(gk: &GroupKind, name: &str, errors: &[FieldError]) -> Self {
        let causes = errors
            .iter()
            .map(|e| StatusCause {
                cause_type: e.error_type.cause_type().to_owned(),
                message: e.body(),
                field: e.field.clone(),
            })
            .collect();
        let quoted = crate::quote::go_quote(name);
        let msg = match aggregate_message(errors) {
            Some(agg) => format!("{gk} {quoted} is invalid: {agg}"),
            None => format!("{gk} {quoted} is invalid"),
        };
        let details = StatusDetails {
            name: name.to_owned(),
            group: gk.group.clone(),
            kind: gk.kind.clone(),
            causes,
            ..StatusDetails::default()
        };
        Self::build(422, "Invalid", msg, Some(details))
    }

    /// 400 with the given message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::build(400, "BadRequest", message.into(), None)
    }

    /// 401; an empty message becomes `not authorized`.
    pub fn unauthorized(message: &str) -> Self {
        let msg = if message.is_empty() {
            "not authorized"
        } else {
            message
        };
        Self::build(401, "Unauthorized", msg.to_owned(), None)
    }

    /// 403 `pods "foo" is forbidden: <reason>` (or `pods is forbidden: ...`
    /// without a name, `forbidden: ...` without a resource).
    pub fn forbidden(gr: &GroupResource, name: &str, reason: impl fmt::Display) -> Self {
        let msg = if gr.is_empty() {
            format!("forbidden: {reason}")
        } else if name.is_empty() {
            format!("{gr} is forbidden: {reason}")
        } else {
            format!(
                "{gr} {} is forbidden: {reason}",
                crate::quote::go_quote(name)
            )
        };
        Self::build(403, "Forbidden", msg, Some(resource_details(gr, name)))
    }

    /// 405 `<action> is not supported on resources of kind "pods"`.
    pub fn method_not_supported(gr: &GroupResource, action: &str) -> Self {
        let msg = format!(
            "{action} is not supported on resources of kind {}",
            crate::quote::go_quote(&gr.to_string())
        );
        Self::build(405, "MethodNotAllowed", msg, Some(resource_details(gr, "")))
    }

    /// 406 for an Accept header we cannot serve.
    pub fn not_acceptable<S: AsRef<str>>(accepted: &[S]) -> Self {
        let list: Vec<&str> = accepted.iter().map(AsRef::as_ref).collect();
        let msg = format!(
            "only the following media types are accepted: {}",
            list.join(", ")
        );
        Self::build(406, "NotAcceptable", msg, None)
    }

    /// 410 Gone (deprecated upstream in favour of [`Self::expired`]).
    pub fn gone(message: impl Into<String>) -> Self {
        Self::build(410, "Gone", message.into(), None)
    }

    /// 410 Expired: the requested content is no longer retained.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::build(410, "Expired", message.into(), None)
    }

    /// 410 Expired `too old resource version: 5 (100)`, as the watch cache
    /// answers a watch or list from a compacted revision.
    pub fn too_old_resource_version(requested: i64, current: i64) -> Self {
        Self::expired(format!("too old resource version: {requested} ({current})"))
    }

    /// 413 `Request entity too large: <message>`.
    pub fn request_entity_too_large(message: &str) -> Self {
        let msg = format!("Request entity too large: {message}");
        Self::build(413, "RequestEntityTooLarge", msg, None)
    }

    /// 415 for a request body in a format we cannot decode.
    pub fn unsupported_media_type<S: AsRef<str>>(accepted: &[S]) -> Self {
        let list: Vec<&str> = accepted.iter().map(AsRef::as_ref).collect();
        let msg = format!(
            "the body of the request was in an unknown format - accepted media types include: {}",
            list.join(", ")
        );
        Self::build(415, "UnsupportedMediaType", msg, None)
    }

    /// 429 with the message as given and `details.retryAfterSeconds`.
    pub fn too_many_requests(message: impl Into<String>, retry_after_seconds: i32) -> Self {
        let details = StatusDetails {
            retry_after_seconds,
            ..StatusDetails::default()
        };
        Self::build(429, "TooManyRequests", message.into(), Some(details))
    }

    /// 500 `Internal error occurred: <err>`, the error also as the cause.
    pub fn internal_error(err: impl fmt::Display) -> Self {
        let text = err.to_string();
        let details = StatusDetails {
            causes: vec![StatusCause {
                message: text.clone(),
                ..StatusCause::default()
            }],
            ..StatusDetails::default()
        };
        let msg = format!("Internal error occurred: {text}");
        Self::build(500, "InternalError", msg, Some(details))
    }

    /// 500 ServerTimeout: `The <op> operation against <res> could not be
    /// completed at this time, please try again.`
    pub fn server_timeout(gr: &GroupResource, operation: &str, retry_after_seconds: i32) -> Self {
        let msg = format!(
            "The {operation} operation against {gr} could not be completed at this time, please try again."
        );
        let mut d = resource_details(gr, operation);
        d.retry_after_seconds = retry_after_seconds;
        Self::build(500, "ServerTimeout", msg, Some(d))
    }

    /// 503 with the given message.
    pub fn service_unavailable(message: impl Into<String>) -> Self {
        Self::build(503, "ServiceUnavailable", message.into(), None)
    }

    /// 504 `Timeout: <message>`.
    pub fn timeout(message: &str, retry_after_seconds: i32) -> Self {
        let details = StatusDetails {
            retry_after_seconds,
            ..StatusDetails::default()
        };
        let msg = format!("Timeout: {message}");
        Self::build(504, "Timeout", msg, Some(details))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::FieldPath;
    use serde_json::json;

    fn pods() -> GroupResource {
        GroupResource::core("pods")
    }

    #[test]
    fn not_found_is_byte_exact() {
        let e = StatusError::not_found(&pods(), "foo");
        assert_eq!(e.to_string(), r#"pods "foo" not found"#);
        assert_eq!(e.code(), 404);
        let wire = serde_json::to_string(e.status()).unwrap();
        assert_eq!(
            wire,
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods \"foo\" not found","reason":"NotFound","details":{"name":"foo","kind":"pods"},"code":404}"#
        );
    }

    #[test]
    fn grouped_resources_are_qualified() {
        let gr = GroupResource::new("apps", "deployments");
        let e = StatusError::already_exists(&gr, "web");
        assert_eq!(e.to_string(), r#"deployments.apps "web" already exists"#);
        assert_eq!(e.reason(), "AlreadyExists");
        assert_eq!(e.code(), 409);
        let d = e.status().details.clone().unwrap();
        assert_eq!((d.group.as_str(), d.kind.as_str()), ("apps", "deployments"));
    }

    #[test]
    fn conflict_wording() {
        let e = StatusError::conflict_modified(&pods(), "foo");
        assert_eq!(
            e.to_string(),
            r#"Operation cannot be fulfilled on pods "foo": the object has been modified; please apply your changes to the latest version and try again"#
        );
        assert_eq!((e.code(), e.reason()), (409, "Conflict"));
    }

    #[test]
    fn invalid_carries_causes() {
        let errs = vec![FieldError::required(
            &FieldPath::new("spec")
                .child("containers")
                .index(0)
                .child("image"),
            "",
        )];
        let e = StatusError::invalid(&GroupKind::core("Pod"), "foo", &errs);
        assert_eq!(
            e.to_string(),
            r#"Pod "foo" is invalid: spec.containers[0].image: Required value"#
        );
        assert_eq!(e.code(), 422);
        assert_eq!(
            e.status().to_json()["details"],
            json!({"name": "foo", "kind": "Pod", "causes": [
                {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.containers[0].image"}
            ]})
        );
    }

    #[test]
    fn invalid_with_many_and_no_errors() {
        let errs = vec![
            FieldError::required(&FieldPath::new("a"), ""),
            FieldError::invalid(&FieldPath::new("b"), "x", "bad"),
        ];
        let e = StatusError::invalid(&GroupKind::new("apps", "Deployment"), "d", &errs);
        assert_eq!(
            e.to_string(),
            r#"Deployment.apps "d" is invalid: [a: Required value, b: Invalid value: "x": bad]"#
        );
        let e = StatusError::invalid(&GroupKind::core("Pod"), "p", &[]);
        assert_eq!(e.to_string(), r#"Pod "p" is invalid"#);
    }

    #[test]
    fn table_of_codes_and_reasons() {
        let cases: Vec<(StatusError, i32, &str, &str)> = vec![
            (StatusError::bad_request("nope"), 400, "BadRequest", "nope"),
            (StatusError::unauthorized(""), 401, "Unauthorized", "not authorized"),
            (
                StatusError::forbidden(&pods(), "", "User \"bob\" cannot list resource \"pods\""),
                403,
                "Forbidden",
                r#"pods is forbidden: User "bob" cannot list resource "pods""#,
            ),
            (
                StatusError::forbidden(&pods(), "p", "no"),
                403,
                "Forbidden",
                r#"pods "p" is forbidden: no"#,
            ),
            (
                StatusError::forbidden(&GroupResource::default(), "", "no"),
                403,
                "Forbidden",
                "forbidden: no",
            ),
            (
                StatusError::method_not_supported(&pods(), "deletecollection"),
                405,
                "MethodNotAllowed",
                r#"deletecollection is not supported on resources of kind "pods""#,
            ),
            (
                StatusError::not_acceptable(&["application/json", "application/yaml"]),
                406,
                "NotAcceptable",
                "only the following media types are accepted: application/json, application/yaml",
            ),
            (StatusError::gone("gone"), 410, "Gone", "gone"),
            (
                StatusError::too_old_resource_version(5, 100),
                410,
                "Expired",
                "too old resource version: 5 (100)",
            ),
            (
                StatusError::request_entity_too_large("limit is 3145728"),
                413,
                "RequestEntityTooLarge",
                "Request entity too large: limit is 3145728",
            ),
            (
                StatusError::unsupported_media_type(&["application/json"]),
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: application/json",
            ),
            (
                StatusError::too_many_requests("slow down", 1),
                429,
                "TooManyRequests",
                "slow down",
            ),
            (
                StatusError::internal_error("disk on fire"),
                500,
                "InternalError",
                "Internal error occurred: disk on fire",
            ),
            (
                StatusError::server_timeout(&pods(), "create", 2),
                500,
                "ServerTimeout",
                "The create operation against pods could not be completed at this time, please try again.",
            ),
            (
                StatusError::service_unavailable("not ready"),
                503,
                "ServiceUnavailable",
                "not ready",
            ),
            (
                StatusError::timeout("request did not complete within 60s", 0),
                504,
                "Timeout",
                "Timeout: request did not complete within 60s",
            ),
        ];
        for (e, code, reason, msg) in cases {
            assert_eq!(
                (e.code(), e.reason(), e.to_string().as_str()),
                (code, reason, msg)
            );
            let s = e.status();
            assert_eq!((s.kind.as_str(), s.api_version.as_str()), ("Status", "v1"));
            assert_eq!(s.status, STATUS_FAILURE);
        }
    }

    #[test]
    fn retry_after_and_internal_cause_serialize() {
        let e = StatusError::too_many_requests("slow down", 3);
        assert_eq!(
            e.status().to_json()["details"],
            json!({"retryAfterSeconds": 3})
        );
        let e = StatusError::internal_error("boom");
        assert_eq!(
            e.status().to_json()["details"],
            json!({"causes": [{"message": "boom"}]})
        );
        // A timeout without retry hint still carries (empty) details, as Go does.
        let e = StatusError::timeout("x", 0);
        assert_eq!(e.status().to_json()["details"], json!({}));
    }

    #[test]
    fn round_trips_and_success() {
        let e = StatusError::not_found(&pods(), "foo");
        let wire = serde_json::to_string(e.status()).unwrap();
        let back: Status = serde_json::from_str(&wire).unwrap();
        assert_eq!(&back, e.status());
        let ok = Status::success(Some(StatusDetails {
            name: "foo".into(),
            kind: "pods".into(),
            uid: "u1".into(),
            ..StatusDetails::default()
        }));
        assert_eq!(
            ok.to_json(),
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                   "details": {"name": "foo", "kind": "pods", "uid": "u1"}})
        );
        assert_eq!(
            StatusError::from(Status::failure(418, "Teapot", "short and stout"))
                .into_status()
                .code,
            418
        );
    }
}
