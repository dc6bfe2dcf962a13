//! `serviceaccounts/<name>/token`: TokenRequest, what `kubectl create
//! token` and the kubelet's projected volumes call.
//!
//! Upstream counterpart: `pkg/registry/core/serviceaccount/storage/token.go`.

use std::sync::Arc;

use axum::body::Body;
use http::{Request, Response, StatusCode};
use rkube_machinery::{FieldError, FieldPath, GroupKind, StatusError};
use rkube_pki::sa_token::ObjectRef;
use rkube_pki::TokenSpec;
use rkube_registry::ResourceStore;
use serde_json::{json, Value};

use crate::response;
use crate::rest::body;
use crate::ApiServer;

type Result<T, E = StatusError> = std::result::Result<T, E>;

/// Shortest lifetime a client may ask for (upstream: 10 minutes).
const MIN_EXPIRATION: i64 = 600;
const DEFAULT_EXPIRATION: i64 = 3600;
const MAX_EXPIRATION: i64 = 48 * 3600;

pub async fn create(
    server: &ApiServer,
    sa_store: &Arc<ResourceStore>,
    ns: &str,
    name: &str,
    req: Request<Body>,
) -> Result<Response<Body>> {
    let Some(key) = server.sa_key.as_ref() else {
        return Err(StatusError::service_unavailable(
            "service account tokens are not configured",
        ));
    };
    let (content_type, bytes) = body(req).await?;
    let mut tr = crate::write::decode(&content_type, &bytes)?;
    let sa = sa_store.get(Some(ns), name, None).await?;
    let spec = tr.get("spec").cloned().unwrap_or_else(|| json!({}));
    let expiration = spec
        .get("expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(DEFAULT_EXPIRATION);
    if expiration < MIN_EXPIRATION {
        let path = FieldPath::new("spec").child("expirationSeconds");
        let err = FieldError::invalid(
            &path,
            expiration,
            "may not specify a duration less than 10 minutes",
        );
        return Err(StatusError::invalid(
            &GroupKind::new("authentication.k8s.io", "TokenRequest"),
            name,
            &[err],
        ));
    }
    let expiration = expiration.min(MAX_EXPIRATION);
    let mut audiences: Vec<String> = spec
        .get("audiences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if audiences.is_empty() {
        audiences.push(key.issuer().to_string());
    }
    let bound = spec.get("boundObjectRef").filter(|b| b.is_object());
    let (mut pod, mut secret) = (None, None);
    if let Some(b) = bound {
        let obj_ref = ObjectRef {
            name: b
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            uid: b
                .get("uid")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        };
        match b.get("kind").and_then(Value::as_str) {
            Some("Pod") => pod = Some(obj_ref),
            Some("Secret") => secret = Some(obj_ref),
            other => {
                return Err(StatusError::bad_request(format!(
                    "cannot bind token to object of kind {}",
                    other.unwrap_or("")
                )))
            }
        }
    }
    let token_spec = TokenSpec {
        namespace: ns.to_string(),
        service_account: name.to_string(),
        service_account_uid: sa
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        audiences: audiences.clone(),
        expiration: time::Duration::seconds(expiration),
        pod,
        secret,
        node: None,
    };
    let now = time::OffsetDateTime::now_utc();
    let token = key
        .issue(&token_spec, now)
        .map_err(|e| StatusError::internal_error(e.to_string()))?;
    let expires = rkube_machinery::time::Timestamp::from(
        std::time::SystemTime::now() + std::time::Duration::from_secs(expiration as u64),
    );
    let expires = rkube_machinery::time::format_time(&expires);
    tr["apiVersion"] = "authentication.k8s.io/v1".into();
    tr["kind"] = "TokenRequest".into();
    tr["metadata"] = json!({"name": name, "namespace": ns, "creationTimestamp": Value::Null});
    tr["spec"]["audiences"] = json!(audiences);
    tr["spec"]["expirationSeconds"] = expiration.into();
    tr["status"] = json!({"token": token, "expirationTimestamp": expires});
    Ok(response::json(StatusCode::CREATED, &tr))
}
