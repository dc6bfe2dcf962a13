//! OpenAPI 3.0: the `/openapi/v3` index and one document per group/version.
//!
//! Upstream counterpart: k8s.io/kube-openapi/pkg/builder3 (documents) and
//! pkg/handler3 (the index whose `serverRelativeURL`s carry a content hash,
//! so clients may cache a document for good). kubectl explain (1.28+) reads
//! these documents; kubectl's field-validation probe looks for
//! `fieldValidation` among a kind's PATCH parameters here.

use crate::operations::{self, Body, Operation, PathItem, Reply};
use crate::params::{In, Param};
use crate::schema::{self, INT_OR_STRING, QUANTITY, REF_PREFIX};
use crate::{content_hash, INFO_VERSION};
use bytes::Bytes;
use rkube_api::catalog::{self, GroupVersion};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::OnceLock;

const V3_REF_PREFIX: &str = "#/components/schemas/";

/// The media types a JSON-speaking server reads and writes objects in.
const OBJECT_TYPES: &[&str] = &["application/json", "application/yaml"];
const WATCH_TYPES: &[&str] = &["application/json", "application/json;stream=watch"];
const PATCH_TYPES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];

pub(crate) struct Document {
    /// `api/v1`, `apis/apps/v1`.
    pub path: String,
    pub bytes: Bytes,
    pub hash: String,
}

pub(crate) struct Documents {
    pub documents: Vec<Document>,
    pub index: Bytes,
    pub index_hash: String,
}

pub(crate) fn documents() -> &'static Documents {
    static DOCUMENTS: OnceLock<Documents> = OnceLock::new();
    DOCUMENTS.get_or_init(|| {
        let documents: Vec<Document> = catalog::groups()
            .iter()
            .flat_map(|g| g.versions.iter())
            .map(|gv| {
                let bytes = Bytes::from(document(gv).to_string());
                Document {
                    path: index_key(gv),
                    hash: content_hash(&bytes),
                    bytes,
                }
            })
            .collect();
        let mut paths = Map::new();
        for doc in &documents {
            paths.insert(
                doc.path.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{}?hash={}", doc.path, doc.hash)}),
            );
        }
        let index = Bytes::from(json!({ "paths": paths }).to_string());
        Documents {
            index_hash: content_hash(&index),
            documents,
            index,
        }
    })
}

fn index_key(gv: &GroupVersion) -> String {
    operations::base_path(gv.group, gv.version)
        .trim_start_matches('/')
        .to_owned()
}

pub(crate) fn find(path: &str) -> Option<&'static Document> {
    documents().documents.iter().find(|d| d.path == path)
}

/// The OpenAPI 3 document of one group/version: its paths and the schemas
/// they reach.
fn document(gv: &GroupVersion) -> Value {
    let items = operations::paths(gv);
    let mut roots: Vec<String> = gv
        .resources
        .iter()
        .map(|r| r.type_name.to_owned())
        .collect();
    let mut paths = Map::new();
    for item in &items {
        paths.insert(item.path.clone(), path_item(item, &mut roots));
    }
    let schemas: BTreeMap<String, Value> = schema::closure(roots)
        .into_iter()
        .map(|(name, schema)| {
            let converted = convert_definition(&name, schema);
            (name, converted)
        })
        .collect();
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": INFO_VERSION},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "BearerToken": {
                    "type": "apiKey",
                    "description": "Bearer Token authentication",
                    "name": "authorization",
                    "in": "header",
                },
            },
        },
    })
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("{V3_REF_PREFIX}{name}") })
}

fn parameter(param: &Param) -> Value {
    let mut schema = json!({"type": param.ty.name()});
    if param.unique_items {
        schema["uniqueItems"] = true.into();
    }
    let mut out = json!({
        "name": param.name,
        "in": match param.location { In::Path => "path", In::Query => "query" },
        "description": param.description,
        "schema": schema,
    });
    if param.location == In::Path {
        out["required"] = true.into();
    }
    out
}

fn content(types: &[&str], schema: &Value) -> Value {
    let map: Map<String, Value> = types
        .iter()
        .map(|t| ((*t).to_owned(), json!({ "schema": schema })))
        .collect();
    Value::Object(map)
}

fn path_item(item: &PathItem, roots: &mut Vec<String>) -> Value {
    let mut out = Map::new();
    for op in &item.operations {
        out.insert(op.method.to_owned(), operation(op, roots));
    }
    let parameters: Vec<Value> = item.parameters.iter().map(|p| parameter(p)).collect();
    out.insert("parameters".into(), parameters.into());
    Value::Object(out)
}

fn operation(op: &Operation, roots: &mut Vec<String>) -> Value {
    let (reply_schema, reply_types): (Value, &[&str]) = match &op.reply {
        Reply::Object(name) => {
            roots.push(name.clone());
            let types = if op.is_watch() {
                WATCH_TYPES
            } else {
                OBJECT_TYPES
            };
            (reference(name), types)
        }
        Reply::Text => (json!({"type": "string"}), &["*/*"]),
    };
    let mut responses = Map::new();
    for code in op.codes {
        let description = match *code {
            "201" => "Created",
            "202" => "Accepted",
            _ => "OK",
        };
        responses.insert(
            (*code).to_owned(),
            json!({"description": description, "content": content(reply_types, &reply_schema)}),
        );
    }
    responses.insert("401".into(), json!({"description": "Unauthorized"}));
    let mut out = json!({
        "tags": [op.tag],
        "description": op.description,
        "operationId": op.id,
        "responses": responses,
        "x-kubernetes-action": op.action,
        "x-kubernetes-group-version-kind": {"group": op.gvk.0, "version": op.gvk.1, "kind": op.gvk.2},
    });
    if !op.query.is_empty() {
        out["parameters"] = op
            .query
            .iter()
            .map(|p| parameter(p))
            .collect::<Vec<_>>()
            .into();
    }
    match &op.body {
        Some(Body::Object(name)) => {
            roots.push(name.clone());
            let required = !name.ends_with(".DeleteOptions");
            out["requestBody"] =
                json!({"content": content(OBJECT_TYPES, &reference(name)), "required": required});
        }
        Some(Body::Patch) => {
            let patch = format!("{}.Patch", schema::META);
            roots.push(patch.clone());
            out["requestBody"] =
                json!({"content": content(PATCH_TYPES, &reference(&patch)), "required": true});
        }
        None => {}
    }
    out
}

/// The OpenAPI 3 form of a neutral definition: `$ref`s point into
/// `components/schemas`, a `$ref` with a description becomes an `allOf`
/// (3.0 ignores siblings of `$ref`; upstream wraps the same way), and the
/// int-or-string types get the `oneOf` kube-openapi's v3 builder emits.
pub(crate) fn convert_definition(name: &str, schema: &Value) -> Value {
    let mut out = convert(schema);
    if let Some(map) = out.as_object_mut() {
        match name {
            INT_OR_STRING => {
                map.remove("type");
                map.insert(
                    "oneOf".into(),
                    json!([{"type": "integer"}, {"type": "string"}]),
                );
            }
            QUANTITY => {
                map.remove("type");
                map.insert(
                    "oneOf".into(),
                    json!([{"type": "string"}, {"type": "number"}]),
                );
            }
            _ => {}
        }
    }
    out
}

fn convert(schema: &Value) -> Value {
    let Some(map) = schema.as_object() else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (key, value) in map {
        let converted = match key.as_str() {
            "$ref" => match value.as_str().and_then(|r| r.strip_prefix(REF_PREFIX)) {
                Some(name) => Value::String(format!("{V3_REF_PREFIX}{name}")),
                None => value.clone(),
            },
            "properties" => match value.as_object() {
                Some(props) => {
                    Value::Object(props.iter().map(|(k, v)| (k.clone(), convert(v))).collect())
                }
                None => value.clone(),
            },
            "items" | "additionalProperties" => convert(value),
            "allOf" | "oneOf" | "anyOf" => match value.as_array() {
                Some(items) => items.iter().map(convert).collect::<Vec<_>>().into(),
                None => value.clone(),
            },
            _ => value.clone(),
        };
        out.insert(key.clone(), converted);
    }
    if out.len() > 1 {
        if let Some(reference) = out.remove("$ref") {
            out.insert("allOf".into(), json!([{ "$ref": reference }]));
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests;
