//! Aggregated discovery: every group, version and resource in one document,
//! so a client learns the whole API in two requests (`/api`, `/apis`)
//! instead of one per group/version.
//!
//! Upstream counterpart: k8s.io/apiserver/pkg/endpoints/discovery/aggregated
//! (the `APIGroupDiscoveryList` of apidiscovery.k8s.io/v2, KEP-3352). Groups
//! keep the catalog's order, which is the aggregator's group priority order,
//! and each group's versions are listed preferred first.

use bytes::Bytes;
use rkube_api::catalog::{self, ApiGroup, ResourceInfo};
use serde_json::{json, Value};
use std::sync::OnceLock;

/// The `Content-Type` of an aggregated v2 response. Serve it when the
/// request's Accept list names `g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList`.
pub const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// The same for v2beta1, which kubectl 1.27-1.29 ask for and kube-apiserver
/// 1.33 still serves.
pub const AGGREGATED_V2BETA1_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

struct Cached {
    legacy: Bytes,
    named: Bytes,
    legacy_beta: Bytes,
    named_beta: Bytes,
}

fn cached() -> &'static Cached {
    static CACHED: OnceLock<Cached> = OnceLock::new();
    CACHED.get_or_init(|| Cached {
        legacy: document("v2", true),
        named: document("v2", false),
        legacy_beta: document("v2beta1", true),
        named_beta: document("v2beta1", false),
    })
}

/// The apidiscovery.k8s.io/v2 `APIGroupDiscoveryList` for `/api`
/// (`legacy = true`: the core group only) or `/apis` (every named group).
pub fn aggregated(legacy: bool) -> Bytes {
    let c = cached();
    if legacy {
        c.legacy.clone()
    } else {
        c.named.clone()
    }
}

/// [`aggregated`] as apidiscovery.k8s.io/v2beta1 (the same shape).
pub fn aggregated_v2beta1(legacy: bool) -> Bytes {
    let c = cached();
    if legacy {
        c.legacy_beta.clone()
    } else {
        c.named_beta.clone()
    }
}

fn document(version: &str, legacy: bool) -> Bytes {
    let items: Vec<Value> = catalog::groups()
        .iter()
        .filter(|g| g.name.is_empty() == legacy)
        .map(group)
        .collect();
    let doc = json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    });
    Bytes::from(doc.to_string())
}

fn group(group: &ApiGroup) -> Value {
    let mut metadata = json!({"creationTimestamp": null});
    if !group.name.is_empty() {
        metadata["name"] = group.name.into();
    }
    let versions: Vec<Value> = group
        .versions
        .iter()
        .map(|gv| {
            json!({
                "version": gv.version,
                "resources": gv.resources.iter().map(resource).collect::<Vec<_>>(),
                "freshness": "Current",
            })
        })
        .collect();
    json!({"metadata": metadata, "versions": versions})
}

fn kind(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "version": version, "kind": kind})
}

fn resource(info: &ResourceInfo) -> Value {
    let mut out = json!({
        "resource": info.plural,
        "responseKind": kind(info.group, info.version, info.kind),
        "scope": if info.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": info.singular,
        "verbs": info.verbs,
    });
    if !info.short_names.is_empty() {
        out["shortNames"] = json!(info.short_names);
    }
    if !info.categories.is_empty() {
        out["categories"] = json!(info.categories);
    }
    if !info.subresources.is_empty() {
        let subs: Vec<Value> = info
            .subresources
            .iter()
            .map(|sub| {
                let (g, v, k) = sub.response_kind(info);
                json!({"subresource": sub.name, "responseKind": kind(g, v, k), "verbs": sub.verbs})
            })
            .collect();
        out["subresources"] = subs.into();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: Bytes) -> Value {
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn legacy_document_is_the_core_group() {
        let doc = parse(aggregated(true));
        assert_eq!(doc["apiVersion"], "apidiscovery.k8s.io/v2");
        assert_eq!(doc["kind"], "APIGroupDiscoveryList");
        let items = doc["items"].as_array().unwrap();
        assert_eq!(items.len(), 1);
        assert!(items[0]["metadata"].get("name").is_none());
        let v1 = &items[0]["versions"][0];
        assert_eq!(v1["version"], "v1");
        assert_eq!(v1["freshness"], "Current");
        let pods = v1["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "pods")
            .unwrap();
        assert_eq!(pods["scope"], "Namespaced");
        assert_eq!(pods["singularResource"], "pod");
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        assert_eq!(pods["responseKind"], kind("", "v1", "Pod"));
        let eviction = pods["subresources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["subresource"] == "eviction")
            .unwrap();
        assert_eq!(eviction["responseKind"], kind("policy", "v1", "Eviction"));
        assert_eq!(eviction["verbs"], json!(["create"]));
    }

    #[test]
    fn named_groups_follow_catalog_order_preferred_version_first() {
        let doc = parse(aggregated(false));
        let names: Vec<&str> = doc["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["metadata"]["name"].as_str().unwrap())
            .collect();
        let expected: Vec<&str> = catalog::groups()
            .iter()
            .filter(|g| !g.name.is_empty())
            .map(|g| g.name)
            .collect();
        assert_eq!(names, expected);
        assert!(!names.contains(&""));
        let autoscaling = doc["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["metadata"]["name"] == "autoscaling")
            .unwrap();
        assert_eq!(
            autoscaling["versions"][0]["version"],
            catalog::group("autoscaling").unwrap().preferred().version
        );
        let nodes = parse(aggregated(true))["items"][0]["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "nodes")
            .cloned()
            .unwrap();
        assert_eq!(nodes["scope"], "Cluster");
    }

    #[test]
    fn beta_document_differs_only_in_api_version() {
        let mut beta = parse(aggregated_v2beta1(false));
        assert_eq!(beta["apiVersion"], "apidiscovery.k8s.io/v2beta1");
        beta["apiVersion"] = "apidiscovery.k8s.io/v2".into();
        assert_eq!(beta, parse(aggregated(false)));
        assert!(AGGREGATED_CONTENT_TYPE.contains("v=v2;"));
    }
}
