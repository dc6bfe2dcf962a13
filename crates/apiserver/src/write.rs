//! The writing verbs: create, update, patch, delete, deletecollection.

use std::sync::Arc;

use axum::body::Body;
use http::{Request, Response};
use rkube_machinery::{patch, StatusError};
use rkube_registry::{
    meta, DeleteOptions, DeleteOutcome, ListOptions, Propagation, ResourceStore, Target,
};
use serde_json::{json, Value};

use crate::apply;
use crate::decode::{add_warnings, typed, typed_update, FieldValidation};
use crate::request::Query;
use crate::response::ok;
use crate::rest::{body, created, filter};
use crate::ApiServer;

type Result<T, E = StatusError> = std::result::Result<T, E>;

pub(crate) fn dry_run(query: &Query) -> Result<bool> {
    match query.get("dryRun") {
        None => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(StatusError::bad_request(format!(
            "Invalid dry run value: unsupported dry run value {other:?}, supported values: \"All\""
        ))),
    }
}

/// Decode a JSON, YAML or Kubernetes protobuf object body.
pub(crate) fn decode(content_type: &str, bytes: &[u8]) -> Result<Value> {
    let value: Value = match content_type {
        rkube_protobuf::CONTENT_TYPE => rkube_protobuf::decode(bytes)
            .map_err(|e| StatusError::bad_request(format!("error decoding protobuf body: {e}")))?,
        "application/yaml" | "application/apply-patch+yaml" => crate::yaml::from_slice(bytes)
            .map_err(|e| StatusError::bad_request(format!("error decoding YAML: {e}")))?,
        _ => serde_json::from_slice(bytes)
            .map_err(|e| StatusError::bad_request(format!("error decoding JSON: {e}")))?,
    };
    if !value.is_object() {
        return Err(StatusError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    Ok(value)
}

/// The body's apiVersion and kind must name this endpoint's resource.
fn check_kind(rs: &ResourceStore, obj: &Value) -> Result<()> {
    let expected = rs.info.api_version();
    match obj.get("apiVersion").and_then(Value::as_str) {
        Some(v) if !v.is_empty() && v != expected => {
            return Err(StatusError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({expected})"
            )))
        }
        _ => {}
    }
    match obj.get("kind").and_then(Value::as_str) {
        Some(k) if !k.is_empty() && k != rs.info.kind => Err(StatusError::bad_request(format!(
            "the kind in the data ({k}) does not match the expected kind ({})",
            rs.info.kind
        ))),
        _ => Ok(()),
    }
}

/// NamespaceLifecycle admission: no new objects in missing or terminating
/// namespaces.
async fn check_namespace_open(
    server: &ApiServer,
    rs: &ResourceStore,
    ns: Option<&str>,
) -> Result<()> {
    let Some(ns) = ns.filter(|_| rs.info.namespaced) else {
        return Ok(());
    };
    let namespace = server.namespaces().get(None, ns, None).await?;
    if meta::deletion_timestamp(&namespace).is_some() {
        let gr = rs.group_resource();
        return Err(StatusError::forbidden(
            &gr,
            "",
            format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ),
        ));
    }
    Ok(())
}

pub async fn create(
    server: &ApiServer,
    rs: &Arc<ResourceStore>,
    ns: Option<&str>,
    query: &Query,
    req: Request<Body>,
) -> Result<Response<Body>> {
    let validation = FieldValidation::from_query(query)?;
    apply::check_options(query, false)?;
    let manager = apply::manager(query, req.headers());
    let user = req.extensions().get::<crate::User>().cloned();
    let (ct, bytes) = body(req).await?;
    let obj = decode(&ct, &bytes)?;
    check_kind(rs, &obj)?;
    let (mut obj, warnings) = typed(rs, &obj, validation)?;
    check_namespace_open(server, rs, ns).await?;
    server
        .admission
        .admit_create(rs, ns, &mut obj, user.as_ref())
        .await?;
    let obj = apply::record(rs, &Value::Null, obj, &manager, None);
    let obj = rs.create(ns, obj, dry_run(query)?).await?;
    let mut resp = created(&obj);
    add_warnings(&mut resp, &warnings);
    Ok(resp)
}

#[allow(clippy::too_many_arguments)]
pub async fn update(
    server: &ApiServer,
    rs: &Arc<ResourceStore>,
    ns: Option<&str>,
    name: &str,
    target: Target,
    query: &Query,
    req: Request<Body>,
) -> Result<Response<Body>> {
    let _ = server;
    let validation = FieldValidation::from_query(query)?;
    apply::check_options(query, false)?;
    let manager = apply::manager(query, req.headers());
    let (ct, bytes) = body(req).await?;
    let obj = decode(&ct, &bytes)?;
    check_kind(rs, &obj)?;
    let (obj, warnings) = typed(rs, &obj, validation)?;
    let sub = subresource_name(target);
    let obj = rs
        .update_with(ns, name, target, dry_run(query)?, obj, |current, new| {
            record(rs, current, new, &manager, sub)
        })
        .await?;
    let mut resp = ok(&obj);
    add_warnings(&mut resp, &warnings);
    Ok(resp)
}

pub async fn patch(
    server: &ApiServer,
    rs: &Arc<ResourceStore>,
    ns: Option<&str>,
    name: &str,
    target: Target,
    query: &Query,
    req: Request<Body>,
) -> Result<Response<Body>> {
    let validation = FieldValidation::from_query(query)?;
    let mut warnings = Vec::new();
    let manager = apply::manager(query, req.headers());
    let user = req.extensions().get::<crate::User>().cloned();
    let (ct, bytes) = body(req).await?;
    let kind = match ct.as_str() {
        "application/apply-patch+yaml" => {
            let target_name = (name, target);
            return server_side_apply(
                server,
                rs,
                ns,
                target_name,
                query,
                &manager,
                &bytes,
                user.as_ref(),
            )
            .await;
        }
        "application/merge-patch+json" => PatchKind::Merge,
        "application/json-patch+json" => PatchKind::Json,
        "application/strategic-merge-patch+json" => PatchKind::Strategic,
        other => {
            return Err(StatusError::unsupported_media_type(&[
                format!("{other} is not supported; use"),
                "application/json-patch+json".into(),
                "application/merge-patch+json".into(),
                "application/strategic-merge-patch+json".into(),
            ]))
        }
    };
    apply::check_options(query, false)?;
    let sub = subresource_name(target);
    let patch_doc: Value = serde_json::from_slice(&bytes)
        .map_err(|e| StatusError::bad_request(format!("error decoding patch: {e}")))?;
    let type_name = rs.info.type_name;
    let obj = rs
        .modify(ns, name, target, dry_run(query)?, |current| {
            let patched = match kind {
                PatchKind::Merge => Ok(patch::merge::apply(current, &patch_doc)),
                PatchKind::Json => {
                    patch::json::apply(current, &patch_doc).map_err(|e| e.to_string())
                }
                PatchKind::Strategic => {
                    let schema = crate::patch_schema::TypeSchema { root: type_name };
                    patch::strategic::apply(current, &patch_doc, &schema).map_err(|e| e.to_string())
                }
            };
            let patched = patched.map_err(StatusError::bad_request)?;
            check_kind(rs, &patched)?;
            let (mut patched, unknown) = typed_update(rs, current, patched, target, validation)?;
            warnings = unknown;
            // A resourceVersion the patch did not set is not a precondition.
            if patched.pointer("/metadata/resourceVersion")
                == current.pointer("/metadata/resourceVersion")
                && patch_doc.pointer("/metadata/resourceVersion").is_none()
            {
                meta::remove(&mut patched, "resourceVersion");
            }
            Ok(record(rs, current, patched, &manager, sub))
        })
        .await?;
    let mut resp = ok(&obj);
    add_warnings(&mut resp, &warnings);
    Ok(resp)
}

/// managedFields after an update or patch. A subresource write keeps the
/// stored metadata, managedFields included (the registry's
/// `prepare_update`), so working them out there would be thrown away.
fn record(
    rs: &ResourceStore,
    current: &Value,
    new: Value,
    manager: &str,
    sub: Option<&str>,
) -> Value {
    match sub {
        Some(_) => new,
        None => apply::record(rs, current, new, manager, None),
    }
}

fn subresource_name(target: Target) -> Option<&'static str> {
    match target {
        Target::Main => None,
        Target::Status => Some("status"),
        Target::Finalize => Some("finalize"),
        Target::Approval => Some("approval"),
        Target::EphemeralContainers => Some("ephemeralcontainers"),
        Target::Whole => None,
    }
}

/// PATCH with `application/apply-patch+yaml`: create the object if it does
/// not exist, else merge the applied configuration into it.
#[allow(clippy::too_many_arguments)]
async fn server_side_apply(
    server: &ApiServer,
    rs: &Arc<ResourceStore>,
    ns: Option<&str>,
    (name, target): (&str, Target),
    query: &Query,
    manager: &str,
    bytes: &[u8],
    user: Option<&crate::User>,
) -> Result<Response<Body>> {
    apply::check_options(query, true)?;
    let validation = FieldValidation::from_query(query)?;
    let force = query.flag("force");
    let dry = dry_run(query)?;
    let applied = decode("application/apply-patch+yaml", bytes)?;
    let sub = subresource_name(target);
    let mut warnings = Vec::new();
    let result = rs
        .modify(ns, name, target, dry, |current| {
            let merged = apply::apply(rs, current, &applied, manager, sub, force)?;
            let (mut merged, unknown) = typed(rs, &merged, validation)?;
            warnings = unknown;
            meta::remove(&mut merged, "resourceVersion");
            Ok(merged)
        })
        .await;
    let obj = match result {
        Ok(obj) => obj,
        Err(e) if e.reason() == "NotFound" && target == Target::Main => {
            if meta::name(&applied) != name {
                return Err(StatusError::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    meta::name(&applied)
                )));
            }
            let merged = apply::apply(rs, &Value::Null, &applied, manager, sub, force)?;
            let (mut merged, unknown) = typed(rs, &merged, validation)?;
            warnings = unknown;
            check_namespace_open(server, rs, ns).await?;
            server
                .admission
                .admit_create(rs, ns, &mut merged, user)
                .await?;
            let created = rs.create(ns, merged, dry).await?;
            let mut resp = crate::rest::created(&created);
            add_warnings(&mut resp, &warnings);
            return Ok(resp);
        }
        Err(e) => return Err(e),
    };
    let mut resp = ok(&obj);
    add_warnings(&mut resp, &warnings);
    Ok(resp)
}

#[derive(Clone, Copy)]
enum PatchKind {
    Merge,
    Json,
    Strategic,
}

/// DeleteOptions from the body and the query (kubectl sends a body).
async fn delete_options(query: &Query, req: Request<Body>) -> Result<DeleteOptions> {
    let (_, bytes) = body(req).await?;
    let body: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| StatusError::bad_request(format!("error decoding DeleteOptions: {e}")))?
    };
    delete_options_from(query, &body)
}

/// DeleteOptions from a decoded `metav1.DeleteOptions` (a DELETE body, or
/// an Eviction's `deleteOptions`) and the query.
pub(crate) fn delete_options_from(query: &Query, body: &Value) -> Result<DeleteOptions> {
    let grace = body
        .get("gracePeriodSeconds")
        .and_then(Value::as_i64)
        .or_else(|| query.get("gracePeriodSeconds").and_then(|g| g.parse().ok()));
    let mut propagation = body
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .or_else(|| query.get("propagationPolicy"))
        .map(|p| match p {
            "Orphan" => Ok(Propagation::Orphan),
            "Background" => Ok(Propagation::Background),
            "Foreground" => Ok(Propagation::Foreground),
            other => Err(StatusError::bad_request(format!(
                "propagationPolicy: Unsupported value: {other:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
            ))),
        })
        .transpose()?;
    let orphan = body
        .get("orphanDependents")
        .and_then(Value::as_bool)
        .or_else(|| query.get("orphanDependents").map(|o| o == "true"));
    if propagation.is_none() {
        propagation = orphan.map(|o| {
            if o {
                Propagation::Orphan
            } else {
                Propagation::Background
            }
        });
    }
    let dry = body
        .get("dryRun")
        .and_then(Value::as_array)
        .is_some_and(|d| d.iter().any(|v| v == "All"))
        || dry_run(query)?;
    Ok(DeleteOptions {
        grace_period_seconds: grace,
        propagation,
        precondition_uid: body
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string),
        precondition_resource_version: body
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string),
        dry_run: dry,
    })
}

pub async fn delete(
    server: &ApiServer,
    rs: &Arc<ResourceStore>,
    ns: Option<&str>,
    name: &str,
    query: &Query,
    req: Request<Body>,
) -> Result<Response<Body>> {
    let opts = delete_options(query, req).await?;
    let webhooks = &server.admission.webhooks;
    webhooks
        .admit_delete_named(rs, ns, name, opts.dry_run)
        .await?;
    let outcome = rs.delete(ns, name, &opts).await?;
    Ok(delete_response(rs, outcome))
}

fn delete_response(rs: &ResourceStore, outcome: DeleteOutcome) -> Response<Body> {
    match outcome {
        DeleteOutcome::Pending(obj) => response_with_code(202, &obj),
        DeleteOutcome::Deleted(obj) if rs.strategy().return_deleted_object() => ok(&obj),
        DeleteOutcome::Deleted(obj) => ok(&json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {
                "name": meta::name(&obj),
                "group": rs.info.group,
                "kind": rs.info.plural,
                "uid": meta::uid(&obj),
            },
        })),
    }
}

fn response_with_code(code: u16, obj: &Value) -> Response<Body> {
    crate::response::json(
        http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::OK),
        obj,
    )
}

pub async fn delete_collection(
    server: &ApiServer,
    rs: &Arc<ResourceStore>,
    ns: Option<&str>,
    query: &Query,
    req: Request<Body>,
) -> Result<Response<Body>> {
    let opts = delete_options(query, req).await?;
    let page = rs
        .list(
            ns,
            &ListOptions {
                filter: filter(rs, query)?,
                ..Default::default()
            },
        )
        .await?;
    let mut deleted = Vec::new();
    for obj in page.items {
        let obj_ns = (!meta::namespace(&obj).is_empty()).then(|| meta::namespace(&obj).to_string());
        let webhooks = &server.admission.webhooks;
        webhooks.admit_delete(rs.info, &obj, opts.dry_run).await?;
        match rs.delete(obj_ns.as_deref(), meta::name(&obj), &opts).await {
            Ok(DeleteOutcome::Deleted(o) | DeleteOutcome::Pending(o)) => deleted.push(o),
            // Gone in between: what the caller wanted.
            Err(e) if e.reason() == "NotFound" => {}
            Err(e) => return Err(e),
        }
    }
    Ok(ok(&json!({
        "kind": rs.info.list_kind(),
        "apiVersion": rs.info.api_version(),
        "metadata": {"resourceVersion": page.revision.to_string()},
        "items": deleted,
    })))
}

#[cfg(test)]
#[path = "write_tests.rs"]
mod tests;
