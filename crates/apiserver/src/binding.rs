//! `pods/<name>/binding` and the legacy `bindings` resource: POST a v1
//! Binding to put a pod on a node (what the scheduler does).
//!
//! Upstream counterpart: `BindingREST` and `LegacyBindingREST` in
//! `pkg/registry/core/pod/storage/storage.go`; the create handler answers
//! a Status of Success with code 201. The rules live in
//! [`rkube_registry::resources::pod::binding`].

use std::sync::Arc;

use axum::body::Body;
use http::{Request, Response, StatusCode};
use rkube_machinery::{Status, StatusError};
use rkube_registry::meta;
use rkube_registry::resources::pod::binding;
use serde_json::Value;

use crate::request::Query;
use crate::rest::body;
use crate::write::{decode, dry_run};
use crate::{response, ApiServer};

type Result<T, E = StatusError> = std::result::Result<T, E>;

/// POST a Binding. `url_name` is the pod named in a `pods/<name>/binding`
/// path; the legacy `bindings` resource takes it from the body.
pub async fn create(
    server: &Arc<ApiServer>,
    ns: &str,
    url_name: Option<&str>,
    query: &Query,
    req: Request<Body>,
) -> Result<Response<Body>> {
    let dry_run = dry_run(query)?;
    let (content_type, bytes) = body(req).await?;
    let obj = decode(&content_type, &bytes)?;
    check_kind(&obj)?;
    let body_ns = meta::namespace(&obj);
    if !body_ns.is_empty() && body_ns != ns {
        return Err(StatusError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let name = meta::name(&obj);
    if let Some(url_name) = url_name {
        if name != url_name {
            return Err(StatusError::bad_request(
                "name in URL does not match name in Binding object",
            ));
        }
    } else if name.is_empty() {
        return Err(StatusError::bad_request("name or generateName is required"));
    }
    let pods = server
        .resource("", "v1", "pods")
        .expect("the catalog serves pods");
    binding::bind(pods, ns, name, &obj, dry_run).await?;
    let mut status = Status::success(None);
    status.code = StatusCode::CREATED.as_u16().into();
    Ok(response::json(StatusCode::CREATED, &status.to_json()))
}

fn check_kind(obj: &Value) -> Result<()> {
    match obj.get("apiVersion").and_then(Value::as_str) {
        Some("v1") | None => {}
        Some(other) => {
            return Err(StatusError::bad_request(format!(
                "the API version in the data ({other}) does not match the expected API version (v1)"
            )))
        }
    }
    match obj.get("kind").and_then(Value::as_str) {
        Some("Binding") | None => Ok(()),
        Some(other) => Err(StatusError::bad_request(format!(
            "the kind in the data ({other}) does not match the expected kind (Binding)"
        ))),
    }
}
