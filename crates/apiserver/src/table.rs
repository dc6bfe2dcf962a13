//! `as=Table` responses: what `kubectl get` prints, computed server-side.
//!
//! Upstream counterpart: the table convertors behind
//! `endpoints/handlers/response.go` (`asTable`). The columns and cells come
//! from `rkube_api::table`; each row carries the object's metadata as
//! `PartialObjectMetadata` (or the whole object with
//! `includeObject=Object`), which kubectl needs for `--show-labels`, names
//! and sorting.

use std::sync::Arc;

use axum::body::Body;
use http::{HeaderMap, Response};
use rkube_machinery::StatusError;
use rkube_registry::ResourceStore;
use serde_json::{json, Value};

use crate::request::Query;
use crate::response::ok;

/// How a response carries its objects, by the Accept header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// The objects themselves.
    Object,
    /// A Table of rows (`as=Table`), as `kubectl get` asks.
    Table,
    /// `PartialObjectMetadata`: metadata only (`as=PartialObjectMetadata`
    /// or `...List`), as metadata informers ask.
    Metadata,
}

/// The form the client's Accept header asks for first.
pub fn form(headers: &HeaderMap) -> Form {
    for media in headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let params: Vec<&str> = media.split(';').map(str::trim).collect();
        if !params.contains(&"g=meta.k8s.io") {
            if params
                .first()
                .is_some_and(|m| *m == "application/json" || *m == "*/*")
            {
                return Form::Object;
            }
            continue;
        }
        if params.contains(&"as=Table") {
            return Form::Table;
        }
        if params.contains(&"as=PartialObjectMetadata")
            || params.contains(&"as=PartialObjectMetadataList")
        {
            return Form::Metadata;
        }
    }
    Form::Object
}

/// An object reduced to its metadata.
pub fn partial(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// Whether the client asked for a Table (kubectl get does, with JSON as a
/// fallback).
#[cfg(test)]
fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|media| {
            let params: Vec<&str> = media.split(';').map(str::trim).collect();
            params.contains(&"as=Table") && params.contains(&"g=meta.k8s.io")
        })
}

/// One row for `obj`.
pub fn row(rs: &ResourceStore, obj: Value, include: &str) -> Result<Value, StatusError> {
    let now = jiff::Timestamp::now();
    let cells = rkube_api::table::row(rs.info.group, rs.info.kind, &obj, now)
        .map_err(|e| StatusError::internal_error(e.to_string()))?;
    let object = match include {
        "None" => Value::Null,
        "Object" => obj,
        _ => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
        }),
    };
    let mut row = json!({"cells": cells});
    if !object.is_null() {
        row["object"] = object;
    }
    Ok(row)
}

/// A Table of `items`.
pub fn table(
    rs: &ResourceStore,
    items: Vec<Value>,
    list_meta: Value,
    query: &Query,
) -> Result<Value, StatusError> {
    let include = query.get("includeObject").unwrap_or("Metadata");
    let rows = items
        .into_iter()
        .map(|obj| row(rs, obj, include))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": rkube_api::table::columns(rs.info.group, rs.info.kind),
        "rows": rows,
    }))
}

pub fn objects(
    rs: &Arc<ResourceStore>,
    items: Vec<Value>,
    list_meta: Value,
    query: &Query,
) -> Result<Response<Body>, StatusError> {
    Ok(ok(&table(rs, items, list_meta, query)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::ACCEPT, v.parse().unwrap());
        h
    }

    #[test]
    fn forms_by_accept_header() {
        let kubectl_get = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(form(&accept(kubectl_get)), Form::Table);
        assert!(wants_table(&accept(kubectl_get)));
        let informer =
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";
        assert_eq!(form(&accept(informer)), Form::Metadata);
        assert_eq!(form(&accept("application/json")), Form::Object);
        assert_eq!(form(&HeaderMap::new()), Form::Object);
        assert_eq!(
            partial(&json!({"kind": "Pod", "metadata": {"name": "a"}, "spec": {}}))["metadata"]
                ["name"],
            "a"
        );
    }
}
