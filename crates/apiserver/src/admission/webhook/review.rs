//! The AdmissionReview (admission.k8s.io/v1) a webhook is sent, and what
//! its answer means: allowed or denied (with the webhook's status), and
//! for mutating webhooks a JSON Patch to apply.
//!
//! Upstream counterpart: `k8s.io/apiserver/pkg/admission/plugin/webhook/
//! request/admissionreview.go` (`CreateV1AdmissionReview`,
//! `VerifyAdmissionResponse`) and `webhook/errors` (`ToStatusErr`).

use base64::Engine;
use rkube_machinery::{patch, Status, StatusError};
use serde_json::{json, Value};

use super::matching::Operation;
use crate::User;

const API_VERSION: &str = "admission.k8s.io/v1";

/// Everything a review request tells the webhook.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    pub uid: String,
    pub operation: Operation,
    /// group, version, kind of the object sent.
    pub kind: (&'a str, &'a str, &'a str),
    /// group, version, resource.
    pub resource: (&'a str, &'a str, &'a str),
    pub subresource: &'a str,
    pub name: &'a str,
    pub namespace: &'a str,
    pub user: Option<&'a User>,
    pub object: Option<&'a Value>,
    pub old_object: Option<&'a Value>,
    pub dry_run: bool,
    pub options: Option<Value>,
}

/// The AdmissionReview body.
pub fn review(req: &Request) -> Value {
    let kind = json!({"group": req.kind.0, "version": req.kind.1, "kind": req.kind.2});
    let resource =
        json!({"group": req.resource.0, "version": req.resource.1, "resource": req.resource.2});
    let mut request = json!({
        "uid": req.uid,
        "kind": kind,
        "resource": resource,
        "requestKind": kind,
        "requestResource": resource,
        "name": req.name,
        "namespace": req.namespace,
        "operation": req.operation.as_str(),
        "userInfo": match req.user {
            Some(u) => json!({"username": u.name, "groups": u.groups}),
            None => json!({}),
        },
        "object": req.object.cloned().unwrap_or(Value::Null),
        "oldObject": req.old_object.cloned().unwrap_or(Value::Null),
        "dryRun": req.dry_run,
        "options": req.options.clone().unwrap_or(Value::Null),
    });
    if !req.subresource.is_empty() {
        request["subResource"] = req.subresource.into();
        request["requestSubResource"] = req.subresource.into();
    }
    if req.namespace.is_empty() {
        request.as_object_mut().map(|r| r.remove("namespace"));
    }
    json!({"apiVersion": API_VERSION, "kind": "AdmissionReview", "request": request})
}

/// A webhook's answer that did not make sense; with failurePolicy Fail
/// it fails the request, with Ignore the webhook is skipped.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    #[error("received invalid webhook response: {0}")]
    Decode(String),
    #[error("expected webhook response of {API_VERSION}, Kind=AdmissionReview, got {0}")]
    WrongKind(String),
    #[error("expected response.uid={expected:?}, got {got:?}")]
    Uid { expected: String, got: String },
    #[error("webhook returned invalid patchType: {0:?}")]
    PatchType(String),
    #[error("invalid patch: {0}")]
    Patch(String),
}

/// What the webhook decided.
#[derive(Debug)]
pub enum Verdict {
    /// Allowed, with the patch a mutating webhook returned (if any) and
    /// its warnings.
    Allowed {
        patch: Option<Value>,
        warnings: Vec<String>,
    },
    /// Denied: the error the client gets.
    Denied(StatusError),
}

/// Read a webhook's response body for the request with `uid`.
pub fn verdict(name: &str, uid: &str, body: &[u8]) -> Result<Verdict, Error> {
    let review: Value = serde_json::from_slice(body).map_err(|e| Error::Decode(e.to_string()))?;
    let api_version = review
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = review.get("kind").and_then(Value::as_str).unwrap_or("");
    if api_version != API_VERSION || kind != "AdmissionReview" {
        return Err(Error::WrongKind(format!("{api_version}, Kind={kind}")));
    }
    let resp = review.get("response").cloned().unwrap_or(Value::Null);
    let got = resp.get("uid").and_then(Value::as_str).unwrap_or("");
    if got != uid {
        return Err(Error::Uid {
            expected: uid.to_string(),
            got: got.to_string(),
        });
    }
    let warnings = resp
        .get("warnings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    if !resp
        .get("allowed")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        return Ok(Verdict::Denied(denied(name, resp.get("status"))));
    }
    let patch = match resp.get("patch").and_then(Value::as_str) {
        None | Some("") => None,
        Some(encoded) => {
            let patch_type = resp.get("patchType").and_then(Value::as_str).unwrap_or("");
            if patch_type != "JSONPatch" {
                return Err(Error::PatchType(patch_type.to_string()));
            }
            let raw = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| Error::Patch(e.to_string()))?;
            Some(serde_json::from_slice(&raw).map_err(|e| Error::Patch(e.to_string()))?)
        }
    };
    Ok(Verdict::Allowed { patch, warnings })
}

/// Apply a mutating webhook's JSON Patch to `obj`.
pub fn apply_patch(obj: &Value, patch_doc: &Value) -> Result<Value, Error> {
    patch::json::apply(obj, patch_doc).map_err(|e| Error::Patch(e.to_string()))
}

/// The error of a denial: the webhook's own status (code 400 or more,
/// reason kept), its message behind `admission webhook "<name>" denied
/// the request`.
pub fn denied(name: &str, status: Option<&Value>) -> StatusError {
    let status = status.cloned().unwrap_or(Value::Null);
    let field = |f: &str| status.get(f).and_then(Value::as_str).unwrap_or("");
    let code = status
        .get("code")
        .and_then(Value::as_i64)
        .filter(|c| (400..600).contains(c))
        .unwrap_or(400) as i32;
    let by = format!("admission webhook {name:?} denied the request");
    let message = match (field("message"), field("reason")) {
        ("", "") => format!("{by} without explanation"),
        ("", reason) => format!("{by}: {reason}"),
        (message, _) => format!("{by}: {message}"),
    };
    let mut out = Status::failure(code, field("reason"), message);
    if let Some(details) = status.get("details") {
        if let Ok(d) = serde_json::from_value(details.clone()) {
            out.details = Some(d);
        }
    }
    out.into()
}

/// The error of a failed call under failurePolicy Fail.
pub fn call_failed(name: &str, reason: impl std::fmt::Display) -> StatusError {
    StatusError::internal_error(format!("failed calling webhook {name:?}: {reason}"))
}
