//! Discovery documents: `/api`, `/apis`, `/apis/{group}` and the resource
//! list of each group/version, generated from the catalog.
//!
//! Upstream counterpart: `k8s.io/apiserver/pkg/endpoints/discovery`.

use rkube_api::catalog::{self, GroupVersion, ResourceInfo};
use serde_json::{json, Value};

/// `/api`: the versions of the core group.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_json(name: &str, versions: &[GroupVersion]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|gv| json!({"groupVersion": gv.api_version(), "version": gv.version}))
        .collect();
    json!({"name": name, "versions": versions.clone(), "preferredVersion": versions[0]})
}

/// `/apis`: every named group.
pub fn api_group_list() -> Value {
    let groups: Vec<Value> = catalog::groups()
        .iter()
        .filter(|g| !g.name.is_empty())
        .map(|g| group_json(g.name, g.versions))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/{group}`.
pub fn api_group(name: &str) -> Option<Value> {
    let group = catalog::group(name).filter(|g| !g.name.is_empty())?;
    let mut doc = group_json(group.name, group.versions);
    let map = doc.as_object_mut()?;
    map.insert("kind".into(), "APIGroup".into());
    map.insert("apiVersion".into(), "v1".into());
    Some(doc)
}

fn resource_json(info: &ResourceInfo) -> Value {
    let mut r = json!({
        "name": info.plural,
        "singularName": info.singular,
        "namespaced": info.namespaced,
        "kind": info.kind,
        "verbs": info.verbs,
    });
    if !info.short_names.is_empty() {
        r["shortNames"] = json!(info.short_names);
    }
    if !info.categories.is_empty() {
        r["categories"] = json!(info.categories);
    }
    r
}

/// `/api/v1` or `/apis/{group}/{version}`: the resources and subresources.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let gv = catalog::group_version(group, version)?;
    let mut resources = Vec::new();
    for info in gv.resources {
        resources.push(resource_json(info));
        for sub in info.subresources {
            let mut r = json!({
                "name": format!("{}/{}", info.plural, sub.name),
                "singularName": "",
                "namespaced": info.namespaced,
                "kind": sub.kind.unwrap_or(info.kind),
                "verbs": sub.verbs,
            });
            if let Some(g) = sub.group {
                r["group"] = g.into();
            }
            if let Some(v) = sub.version {
                r["version"] = v.into();
            }
            resources.push(r);
        }
    }
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv.api_version(),
        "resources": resources,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_list_has_pods_and_their_subresources() {
        let doc = resource_list("", "v1").unwrap();
        let names: Vec<&str> = doc["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"pods")
                && names.contains(&"pods/status")
                && names.contains(&"configmaps")
        );
        let pods = doc["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "pods")
            .unwrap();
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(doc["groupVersion"], "v1");
    }

    #[test]
    fn group_list_prefers_first_version() {
        let doc = api_group_list();
        let autoscaling = doc["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == "autoscaling")
            .unwrap();
        assert_eq!(autoscaling["preferredVersion"]["version"], "v2");
        assert!(api_group("").is_none());
        assert_eq!(api_group("apps").unwrap()["kind"], "APIGroup");
    }
}
