use super::*;

fn doc(path: &str) -> Value {
    serde_json::from_slice(&crate::v3_document(path).unwrap()).unwrap()
}

fn index() -> Value {
    serde_json::from_slice(&crate::v3_index()).unwrap()
}

/// Every `$ref` in `value`, as definition names.
fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(r) = map.get("$ref").and_then(Value::as_str) {
                out.push(r.to_owned());
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn index_lists_every_group_version_with_its_hash() {
    let index = index();
    let paths = index["paths"].as_object().unwrap();
    let expected: Vec<String> = catalog::groups()
        .iter()
        .flat_map(|g| g.versions.iter())
        .map(index_key)
        .collect();
    assert_eq!(paths.len(), expected.len());
    for key in &expected {
        let url = paths[key]["serverRelativeURL"].as_str().unwrap();
        let hash = crate::v3_hash(key).unwrap();
        assert_eq!(url, format!("/openapi/v3/{key}?hash={hash}"));
        assert_eq!(hash.len(), 128);
        assert!(hash
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
        assert_eq!(hash, content_hash(&crate::v3_document(key).unwrap()));
    }
    assert!(paths.contains_key("api/v1"));
    assert!(paths.contains_key("apis/apps/v1"));
    assert_eq!(crate::v3_index_hash(), content_hash(&crate::v3_index()));
}

#[test]
fn unknown_paths_have_no_document() {
    assert!(crate::v3_document("apis/nope/v1").is_none());
    assert!(crate::v3_document("").is_none());
    assert!(crate::v3_document("/api/v1").is_none());
    assert!(crate::v3_hash("apis/apps/v9").is_none());
}

#[test]
fn every_kind_has_a_schema_with_its_gvk_and_every_ref_resolves() {
    for gv in catalog::groups().iter().flat_map(|g| g.versions.iter()) {
        let key = index_key(gv);
        let doc = doc(&key);
        assert_eq!(doc["openapi"], "3.0.0");
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for resource in gv.resources {
            let schema = schemas
                .get(resource.type_name)
                .unwrap_or_else(|| panic!("{key}: no schema {}", resource.type_name));
            let gvk = &schema["x-kubernetes-group-version-kind"];
            assert!(
                gvk.as_array()
                    .unwrap()
                    .iter()
                    .any(|g| g["kind"] == resource.kind
                        && g["group"] == resource.group
                        && g["version"] == resource.version),
                "{key}: {} has GVK {gvk}",
                resource.type_name
            );
        }
        let mut all = Vec::new();
        refs(&doc, &mut all);
        for r in all {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("{key}: foreign ref {r}"));
            assert!(schemas.contains_key(name), "{key}: dangling ref {r}");
        }
    }
}

#[test]
fn refs_with_descriptions_are_wrapped_in_all_of() {
    let doc = doc("api/v1");
    let pod = &doc["components"]["schemas"]["io.k8s.api.core.v1.Pod"];
    let metadata = &pod["properties"]["metadata"];
    assert!(metadata.get("$ref").is_none());
    assert_eq!(
        metadata["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    assert!(metadata["description"]
        .as_str()
        .unwrap()
        .contains("metadata"));
    let required = pod["required"].as_array();
    assert!(required.is_none_or(|r| !r.is_empty()));
    let spec = &doc["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"];
    assert_eq!(spec["required"], json!(["containers"]));
    assert_eq!(
        spec["properties"]["containers"]["x-kubernetes-patch-merge-key"],
        "name"
    );
    assert_eq!(
        spec["properties"]["containers"]["x-kubernetes-patch-strategy"],
        "merge"
    );
    assert_eq!(
        spec["properties"]["containers"]["items"]["$ref"],
        "#/components/schemas/io.k8s.api.core.v1.Container"
    );
}

#[test]
fn int_or_string_is_a_one_of() {
    let doc = doc("apis/apps/v1");
    let schemas = &doc["components"]["schemas"];
    let int_or_string = &schemas[INT_OR_STRING];
    assert_eq!(int_or_string["format"], "int-or-string");
    assert_eq!(
        int_or_string["oneOf"],
        json!([{"type": "integer"}, {"type": "string"}])
    );
    assert!(int_or_string.get("type").is_none());
}

#[test]
fn operations_carry_ids_actions_and_gvks() {
    let doc = doc("apis/apps/v1");
    let item = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
    let patch = &item["patch"];
    assert_eq!(patch["operationId"], "patchAppsV1NamespacedDeployment");
    assert_eq!(patch["x-kubernetes-action"], "patch");
    assert_eq!(
        patch["x-kubernetes-group-version-kind"],
        json!({"group": "apps", "version": "v1", "kind": "Deployment"})
    );
    assert!(patch["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "fieldValidation" && p["in"] == "query"));
    assert!(patch["requestBody"]["content"]
        .get("application/strategic-merge-patch+json")
        .is_some());
    assert_eq!(
        item["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/io.k8s.api.apps.v1.Deployment"
    );
    let path_params: Vec<&str> = item["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(path_params, ["name", "namespace", "pretty"]);
    let list = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]["get"];
    assert_eq!(list["operationId"], "listAppsV1NamespacedDeployment");
    assert_eq!(
        list["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/io.k8s.api.apps.v1.DeploymentList"
    );
    let scale =
        &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["get"];
    assert_eq!(scale["x-kubernetes-group-version-kind"]["kind"], "Scale");
    assert!(doc["components"]["schemas"]
        .get("io.k8s.api.autoscaling.v1.Scale")
        .is_some());
}

#[test]
fn documents_only_carry_the_schemas_they_reach() {
    let apps = doc("apis/apps/v1");
    let schemas = apps["components"]["schemas"].as_object().unwrap();
    assert!(schemas.contains_key("io.k8s.api.core.v1.PodSpec"));
    assert!(!schemas.contains_key("io.k8s.api.core.v1.Node"));
    assert!(!schemas.contains_key("io.k8s.api.rbac.v1.ClusterRole"));
}

#[test]
fn documents_are_generated_once() {
    let first = crate::v3_document("api/v1").unwrap();
    let second = crate::v3_document("api/v1").unwrap();
    assert_eq!(first.as_ptr(), second.as_ptr());
}

#[test]
fn generation_is_deterministic() {
    crate::prepare();
    for gv in catalog::groups().iter().flat_map(|g| g.versions.iter()) {
        let again = Bytes::from(document(gv).to_string());
        assert_eq!(Some(again), crate::v3_document(&index_key(gv)));
    }
}
