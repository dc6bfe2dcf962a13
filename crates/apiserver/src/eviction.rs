//! `pods/<name>/eviction`: POST a policy/v1 (or v1beta1) Eviction, as
//! `kubectl drain` does.
//!
//! Upstream counterpart: `EvictionREST.Create` in
//! `pkg/registry/core/pod/storage/eviction.go`; the rules live in
//! [`rkube_registry::resources::pod::eviction`]. Success is a Status with
//! code 201, as the create handler writes it.

use std::sync::Arc;

use axum::body::Body;
use http::{Request, Response, StatusCode};
use rkube_machinery::{Status, StatusError};
use rkube_registry::meta;
use rkube_registry::resources::pod::eviction::Evictor;
use serde_json::{json, Value};

use crate::request::Query;
use crate::rest::body;
use crate::write::{decode, delete_options_from, dry_run};
use crate::{response, ApiServer};

type Result<T, E = StatusError> = std::result::Result<T, E>;

pub async fn create(
    server: &Arc<ApiServer>,
    ns: &str,
    name: &str,
    query: &Query,
    req: Request<Body>,
) -> Result<Response<Body>> {
    let query_dry_run = dry_run(query)?;
    let (content_type, bytes) = body(req).await?;
    let obj = decode(&content_type, &bytes)?;
    check_kind(&obj)?;
    if meta::name(&obj) != name {
        return Err(StatusError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    let body_ns = meta::namespace(&obj);
    if !body_ns.is_empty() && body_ns != ns {
        return Err(StatusError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let delete = obj
        .get("deleteOptions")
        .cloned()
        .unwrap_or_else(|| json!({}));
    if !delete.is_object() && !delete.is_null() {
        return Err(StatusError::bad_request(
            "deleteOptions must be a DeleteOptions object",
        ));
    }
    // Query options other than dryRun belong to the create, not the delete.
    let mut opts = delete_options_from(&Query::parse(None), &delete)?;
    opts.dry_run |= query_dry_run;
    let pods = server
        .resource("", "v1", "pods")
        .expect("the catalog serves pods");
    let budgets = server
        .resource("policy", "v1", "poddisruptionbudgets")
        .expect("the catalog serves poddisruptionbudgets");
    Evictor { pods, budgets }.evict(ns, name, &opts).await?;
    let mut status = Status::success(None);
    status.code = StatusCode::CREATED.as_u16().into();
    Ok(response::json(StatusCode::CREATED, &status.to_json()))
}

fn check_kind(obj: &Value) -> Result<()> {
    match obj.get("apiVersion").and_then(Value::as_str) {
        Some("policy/v1" | "policy/v1beta1") | None => {}
        Some(other) => {
            return Err(StatusError::bad_request(format!(
                "the API version in the data ({other}) does not match the expected API version (policy/v1)"
            )))
        }
    }
    match obj.get("kind").and_then(Value::as_str) {
        Some("Eviction") | None => Ok(()),
        Some(other) => Err(StatusError::bad_request(format!(
            "the kind in the data ({other}) does not match the expected kind (Eviction)"
        ))),
    }
}
