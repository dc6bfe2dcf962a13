//! The review resources, create-only and never stored: TokenReview
//! (`authentication.k8s.io/v1`) and SubjectAccessReview,
//! LocalSubjectAccessReview and SelfSubjectAccessReview
//! (`authorization.k8s.io/v1`). The kubelet asks them about every request
//! to its own API, as upstream's does with webhook authn/authz.
//!
//! Upstream counterpart: `pkg/registry/authentication/tokenreview` and
//! `pkg/registry/authorization/{subjectaccessreview,
//! localsubjectaccessreview,selfsubjectaccessreview}` with the validation
//! of `pkg/apis/authorization/validation`.
//!
//! The decision: until RBAC is enforced, any authenticated subject
//! (groups `system:authenticated` or `system:masters`) may do
//! everything, as the API server itself lets every authenticated request
//! through; anything else is denied without an opinion, as upstream when
//! no authorizer allows.

use axum::body::Body;
use http::{Request, Response, StatusCode};
use rkube_api::ResourceInfo;
use rkube_machinery::{FieldError, FieldPath, GroupKind, StatusError};
use serde_json::{json, Value};

use crate::request::RequestInfo;
use crate::rest::body;
use crate::{response, ApiServer, User};

type Result<T, E = StatusError> = std::result::Result<T, E>;

const ALLOWED_REASON: &str =
    "rkube: every authenticated user may do everything until RBAC is enforced";

/// Whether `info` is a review resource this module serves.
pub fn is_review(info: &ResourceInfo) -> bool {
    matches!(
        (info.group, info.plural),
        ("authentication.k8s.io", "tokenreviews")
            | ("authorization.k8s.io", "subjectaccessreviews")
            | ("authorization.k8s.io", "localsubjectaccessreviews")
            | ("authorization.k8s.io", "selfsubjectaccessreviews")
    )
}

pub async fn create(
    server: &ApiServer,
    rs: &ResourceInfo,
    info: &RequestInfo,
    req: Request<Body>,
) -> Result<Response<Body>> {
    if info.verb != "create" || info.subresource.is_some() {
        return Err(StatusError::method_not_supported(
            &rkube_machinery::GroupResource::new(rs.group, rs.plural),
            info.verb,
        ));
    }
    let requester = req.extensions().get::<User>().cloned();
    let (content_type, bytes) = body(req).await?;
    let mut review = crate::write::decode(&content_type, &bytes)?;
    if !review.is_object() {
        return Err(StatusError::bad_request("the review must be an object"));
    }
    let status = match rs.plural {
        "tokenreviews" => token_review(server, &review).await,
        "selfsubjectaccessreviews" => {
            let user = requester.unwrap_or(User {
                name: String::new(),
                groups: Vec::new(),
            });
            review["spec"]["user"] = user.name.clone().into();
            review["spec"]["groups"] = json!(user.groups);
            access(rs, &review, true)?
        }
        _ => {
            if let Some(ns) = info.namespace.as_deref() {
                let asked = review.pointer("/spec/resourceAttributes/namespace");
                if asked.and_then(Value::as_str) != Some(ns) {
                    let path = FieldPath::new("spec")
                        .child("resourceAttributes")
                        .child("namespace");
                    let err = FieldError::invalid(
                        &path,
                        asked.and_then(Value::as_str).unwrap_or(""),
                        "must match metadata.namespace",
                    );
                    return Err(invalid(rs, &[err]));
                }
            }
            access(rs, &review, false)?
        }
    };
    review["apiVersion"] = format!("{}/v1", rs.group).into();
    review["kind"] = rs.kind.into();
    let mut meta = json!({"creationTimestamp": Value::Null});
    if let Some(ns) = &info.namespace {
        meta["namespace"] = ns.clone().into();
    }
    review["metadata"] = meta;
    review["status"] = status;
    Ok(response::json(StatusCode::CREATED, &review))
}

fn invalid(rs: &ResourceInfo, errs: &[FieldError]) -> StatusError {
    StatusError::invalid(&GroupKind::new(rs.group, rs.kind), "", errs)
}

async fn token_review(server: &ApiServer, review: &Value) -> Value {
    let token = review
        .pointer("/spec/token")
        .and_then(Value::as_str)
        .unwrap_or("");
    let Some(key) = server.sa_key.as_ref() else {
        return json!({"user": {}, "error": "service account tokens are not configured"});
    };
    // The audiences asked for, else the API server's own (its issuer).
    let mut asked: Vec<String> = review
        .pointer("/spec/audiences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    if asked.is_empty() {
        asked.push(key.issuer().to_string());
    }
    match crate::authn::service_account_user_for(server, key, token, &asked).await {
        Some(user) => {
            // Which of the asked audiences the token is for.
            let now = time::OffsetDateTime::now_utc();
            let claims = key.verify(token, &asked, now).ok();
            let aud = claims.as_ref().map(|c| c.aud.clone()).unwrap_or_default();
            let matched: Vec<&String> = asked.iter().filter(|a| aud.contains(a)).collect();
            let mut out = json!({
                "authenticated": true,
                "user": {"username": user.name, "groups": user.groups},
                "audiences": matched,
            });
            // Upstream tells the bound pod as extras of the user.
            if let Some(pod) = claims.as_ref().and_then(|c| c.kubernetes.pod.as_ref()) {
                out["user"]["extra"] = json!({
                    "authentication.kubernetes.io/pod-name": [pod.name],
                    "authentication.kubernetes.io/pod-uid": [pod.uid],
                });
            }
            out
        }
        None => json!({"user": {}, "error": "invalid bearer token"}),
    }
}

/// Validates a (Local)SubjectAccessReview's spec and decides it.
fn access(rs: &ResourceInfo, review: &Value, self_review: bool) -> Result<Value> {
    let spec = review.get("spec").cloned().unwrap_or_else(|| json!({}));
    let present = |k: &str| spec.get(k).is_some_and(|v| !v.is_null());
    let mut errs = Vec::new();
    let path = FieldPath::new("spec");
    match (
        present("resourceAttributes"),
        present("nonResourceAttributes"),
    ) {
        (true, true) => errs.push(FieldError::invalid(
            &path.child("nonResourceAttributes"),
            "",
            "cannot be specified in combination with resourceAttributes",
        )),
        (false, false) => errs.push(FieldError::invalid(
            &path.child("resourceAttributes"),
            "null",
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )),
        _ => {}
    }
    let user = spec.get("user").and_then(Value::as_str).unwrap_or("");
    let groups: Vec<&str> = spec
        .get("groups")
        .and_then(Value::as_array)
        .map(|g| g.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !self_review && user.is_empty() && groups.is_empty() {
        errs.push(FieldError::invalid(
            &path.child("user"),
            "",
            "at least one of user or group must be specified",
        ));
    }
    if !errs.is_empty() {
        return Err(invalid(rs, &errs));
    }
    Ok(decide(&groups))
}

fn decide(groups: &[&str]) -> Value {
    let authenticated = groups
        .iter()
        .any(|g| matches!(*g, "system:authenticated" | "system:masters"));
    if authenticated {
        json!({"allowed": true, "reason": ALLOWED_REASON})
    } else {
        json!({"allowed": false})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        assert_eq!(decide(&["system:authenticated"])["allowed"], true);
        assert_eq!(decide(&["system:masters"])["allowed"], true);
        assert_eq!(decide(&["system:unauthenticated"])["allowed"], false);
        assert_eq!(decide(&[])["allowed"], false);
    }
}
