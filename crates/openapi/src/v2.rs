//! Swagger 2.0: the `/openapi/v2` document, in JSON and in gnostic's
//! protobuf encoding.
//!
//! Upstream counterpart: k8s.io/kube-openapi/pkg/builder (document) and
//! pkg/handler (which serves the same document as JSON or as protobuf).
//! kubectl's client-side validation downloads this document as protobuf in
//! every version we test (1.27-1.33), and `kubectl explain` of 1.27 reads
//! it, so the protobuf form is not optional.

use crate::operations::{self, Body, Operation, PathItem, Reply};
use crate::params::{In, Param};
use crate::schema::{self, REF_PREFIX};
use crate::{content_hash, protobuf, INFO_VERSION};
use bytes::Bytes;
use rkube_api::catalog;
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

const PRODUCES: &[&str] = &["application/json", "application/yaml"];
const WATCH_PRODUCES: &[&str] = &["application/json", "application/json;stream=watch"];
const PATCH_CONSUMES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];

pub(crate) struct Documents {
    pub json: Bytes,
    pub protobuf: Bytes,
    pub hash: String,
}

pub(crate) fn documents() -> &'static Documents {
    static DOCUMENTS: OnceLock<Documents> = OnceLock::new();
    DOCUMENTS.get_or_init(|| {
        let doc = document();
        let json = Bytes::from(doc.to_string());
        Documents {
            hash: content_hash(&json),
            protobuf: Bytes::from(protobuf::document(&doc)),
            json,
        }
    })
}

pub(crate) fn document() -> Value {
    let mut paths = Map::new();
    for gv in catalog::groups().iter().flat_map(|g| g.versions.iter()) {
        for item in operations::paths(gv) {
            paths.insert(item.path.clone(), path_item(&item));
        }
    }
    let definitions: Map<String, Value> = schema::definitions()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": INFO_VERSION},
        "paths": paths,
        "definitions": definitions,
        "securityDefinitions": {
            "BearerToken": {
                "description": "Bearer Token authentication",
                "type": "apiKey",
                "name": "authorization",
                "in": "header",
            },
        },
        "security": [{"BearerToken": []}],
    })
}

fn parameter(param: &Param) -> Value {
    let mut out = json!({
        "name": param.name,
        "in": match param.location { In::Path => "path", In::Query => "query" },
        "description": param.description,
        "type": param.ty.name(),
    });
    if param.unique_items {
        out["uniqueItems"] = true.into();
    }
    if param.location == In::Path {
        out["required"] = true.into();
    }
    out
}

fn path_item(item: &PathItem) -> Value {
    let mut out = Map::new();
    for op in &item.operations {
        out.insert(op.method.to_owned(), operation(op));
    }
    let parameters: Vec<Value> = item.parameters.iter().map(|p| parameter(p)).collect();
    out.insert("parameters".into(), parameters.into());
    Value::Object(out)
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("{REF_PREFIX}{name}") })
}

fn operation(op: &Operation) -> Value {
    let reply = match &op.reply {
        Reply::Object(name) => reference(name),
        Reply::Text => json!({"type": "string"}),
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
            json!({"description": description, "schema": reply}),
        );
    }
    responses.insert("401".into(), json!({"description": "Unauthorized"}));
    let mut parameters: Vec<Value> = Vec::new();
    let consumes: &[&str] = match &op.body {
        Some(Body::Object(name)) => {
            let required = !name.ends_with(".DeleteOptions");
            parameters.push(json!({"name": "body", "in": "body", "required": required, "schema": reference(name)}));
            &["*/*"]
        }
        Some(Body::Patch) => {
            let patch = format!("{}.Patch", schema::META);
            parameters.push(json!({"name": "body", "in": "body", "required": true, "schema": reference(&patch)}));
            PATCH_CONSUMES
        }
        None => &["*/*"],
    };
    parameters.extend(op.query.iter().map(|p| parameter(p)));
    let produces = match &op.reply {
        Reply::Text => &["*/*"][..],
        Reply::Object(_) if op.is_watch() => WATCH_PRODUCES,
        Reply::Object(_) => PRODUCES,
    };
    let mut out = json!({
        "description": op.description,
        "consumes": consumes,
        "produces": produces,
        "schemes": ["https"],
        "tags": [op.tag],
        "operationId": op.id,
        "responses": responses,
        "x-kubernetes-action": op.action,
        "x-kubernetes-group-version-kind": {"group": op.gvk.0, "kind": op.gvk.2, "version": op.gvk.1},
    });
    if !parameters.is_empty() {
        out["parameters"] = parameters.into();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_has_definitions_and_paths_that_resolve() {
        let doc: Value = serde_json::from_slice(&crate::v2_json()).unwrap();
        assert_eq!(doc["swagger"], "2.0");
        let definitions = doc["definitions"].as_object().unwrap();
        let mut refs = Vec::new();
        schema::references(&doc, &mut refs);
        assert!(refs.len() > 1000);
        for name in refs {
            assert!(definitions.contains_key(&name), "missing {name}");
        }
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(patch["operationId"], "patchAppsV1NamespacedDeployment");
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        assert!(patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation" && p["in"] == "query"));
        assert_eq!(
            definitions["io.k8s.api.core.v1.Pod"]["x-kubernetes-group-version-kind"][0]["kind"],
            "Pod"
        );
    }

    #[test]
    fn hash_is_of_the_json_form_and_stable() {
        assert_eq!(crate::v2_hash(), content_hash(&crate::v2_json()));
        assert_eq!(crate::v2_hash().len(), 128);
        assert_eq!(document().to_string().as_bytes(), &crate::v2_json()[..]);
    }
}
