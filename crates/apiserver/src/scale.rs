//! The `scale` subresource: an `autoscaling/v1 Scale` view of a workload's
//! replicas, as `kubectl scale` and autoscalers use it.
//!
//! Upstream counterpart: the ScaleREST storages of deployments,
//! replicasets, statefulsets and replicationcontrollers.

use std::sync::Arc;

use axum::body::Body;
use http::{Request, Response};
use rkube_machinery::{labels, patch, StatusError};
use rkube_registry::{meta, ResourceStore, Target};
use serde_json::{json, Value};

use crate::request::Query;
use crate::response::ok;
use crate::rest::body;

type Result<T, E = StatusError> = std::result::Result<T, E>;

/// The Scale of a workload object.
pub fn scale_of(obj: &Value) -> Value {
    let m = |f: &str| {
        obj.pointer(&format!("/metadata/{f}"))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let selector = match obj.pointer("/spec/selector") {
        // ReplicationControllers select with a plain map.
        Some(Value::Object(map))
            if !map.contains_key("matchLabels") && !map.contains_key("matchExpressions") =>
        {
            labels::Selector::from_label_selector(Some(&json!({"matchLabels": map})))
        }
        other => labels::Selector::from_label_selector(other),
    }
    .map(|s| s.to_string())
    .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": m("name"),
            "namespace": m("namespace"),
            "uid": m("uid"),
            "resourceVersion": m("resourceVersion"),
            "creationTimestamp": m("creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0)},
        "status": {
            "replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector,
        },
    })
}

#[derive(Clone, Copy)]
enum Change {
    Replace,
    Merge,
    Json,
    Strategic,
}

/// GET, PUT and PATCH of `<resource>/<name>/scale`.
pub async fn handle(
    rs: &Arc<ResourceStore>,
    ns: Option<&str>,
    name: &str,
    verb: &str,
    query: &Query,
    req: Request<Body>,
) -> Result<Response<Body>> {
    if verb == "get" {
        return Ok(ok(&scale_of(&rs.get(ns, name, None).await?)));
    }
    let manager = crate::apply::manager(query, req.headers());
    let (content_type, bytes) = body(req).await?;
    let change = match (verb, content_type.as_str()) {
        ("update", _) => Change::Replace,
        ("patch", "application/merge-patch+json") => Change::Merge,
        ("patch", "application/json-patch+json") => Change::Json,
        ("patch", "application/strategic-merge-patch+json") => Change::Strategic,
        _ => {
            return Err(StatusError::unsupported_media_type(
                &patch::PatchType::MEDIA_TYPES[..3],
            ))
        }
    };
    let doc: Value = serde_json::from_slice(&bytes)
        .map_err(|e| StatusError::bad_request(format!("error decoding body: {e}")))?;
    let dry_run = query.get("dryRun") == Some("All");
    let updated = rs
        .modify(ns, name, Target::Main, dry_run, |current| {
            let scale = scale_of(current);
            let wanted = match change {
                Change::Replace => doc.clone(),
                Change::Merge | Change::Strategic => patch::merge::apply(&scale, &doc),
                Change::Json => patch::json::apply(&scale, &doc)
                    .map_err(|e| StatusError::bad_request(e.to_string()))?,
            };
            let replicas = wanted
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if replicas < 0 {
                return Err(StatusError::bad_request(format!(
                    "spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0"
                )));
            }
            let mut next = current.clone();
            next["spec"]["replicas"] = replicas.into();
            // A resourceVersion in the Scale is a precondition on the object.
            match wanted
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
            {
                Some(rv) if !rv.is_empty() && change == Change::Replace => {
                    meta::set(&mut next, "resourceVersion", rv)
                }
                _ => meta::remove(&mut next, "resourceVersion"),
            }
            Ok(crate::apply::record(
                rs,
                current,
                next,
                &manager,
                Some("scale"),
            ))
        })
        .await?;
    Ok(ok(&scale_of(&updated)))
}

impl PartialEq for Change {
    fn eq(&self, other: &Change) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}
