//! The schema definitions behind both OpenAPI documents, in one neutral form.
//!
//! Upstream counterpart: the `GetOpenAPIDefinitions` output of
//! kube-openapi's generator (`zz_generated.openapi.go`) after
//! kube-apiserver's builder has added the `x-kubernetes-group-version-kind`
//! and strategic-merge extensions to it (k8s.io/kube-openapi/pkg/builder and
//! pkg/builder3).
//!
//! The type descriptions come from k8s-openapi's schemars schemas, which are
//! generated from the upstream documents, so descriptions, types, formats and
//! `required` lists cannot drift from the types the server decodes. What the
//! schemars output lacks is added here: list types (`PodList`, ...), the GVK
//! of each kind, and the patch directives that live in Go struct tags.
//!
//! The neutral form is the swagger 2.0 shape (`$ref: #/definitions/<name>`);
//! [`crate::v3`] rewrites it for OpenAPI 3.

use k8s_openapi::api::{authentication::v1 as authn, autoscaling::v1 as autoscaling, policy};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::schemars::generate::SchemaSettings;
use k8s_openapi::schemars::SchemaGenerator;
use rkube_api::catalog::{self, ResourceInfo};
use rkube_api::merge_keys::{self, Strategy};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The `$ref` prefix of the neutral (swagger 2.0) form.
pub(crate) const REF_PREFIX: &str = "#/definitions/";

pub(crate) const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1";
pub(crate) const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
pub(crate) const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";

/// The `x-kubernetes-list-type` annotations (`+listType`) we know of, with
/// the map keys of `map` lists. Like the patch directives they are Go struct
/// tags, absent from the schemars schemas; only the ones clients commonly
/// rely on are listed, and a field without an entry simply has none.
const LIST_TYPES: &[(&str, &str, &str, &[&str])] = &[
    (
        "io.k8s.api.core.v1.Container",
        "ports",
        "map",
        &["containerPort", "protocol"],
    ),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "ports",
        "map",
        &["port", "protocol"],
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "finalizers",
        "set",
        &[],
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "ownerReferences",
        "map",
        &["uid"],
    ),
];

/// Definition name → schema in the neutral form, for every type reachable
/// from the catalog plus the meta types the operations use.
pub(crate) fn definitions() -> &'static BTreeMap<String, Value> {
    static DEFINITIONS: OnceLock<BTreeMap<String, Value>> = OnceLock::new();
    DEFINITIONS.get_or_init(build)
}

fn build() -> BTreeMap<String, Value> {
    let mut generator = SchemaSettings::draft2020_12().into_generator();
    for resource in catalog::all() {
        resource.schema(&mut generator);
    }
    register_extras(&mut generator);
    let mut definitions: BTreeMap<String, Value> = generator
        .take_definitions(false)
        .into_iter()
        .map(|(name, mut schema)| {
            rewrite_refs(&mut schema);
            (name, schema)
        })
        .collect();
    for (name, schema) in definitions.iter_mut() {
        special_forms(name, schema);
        add_patch_extensions(name, schema);
    }
    add_lists_and_kinds(&mut definitions);
    definitions
}

/// Types the operations reference that no catalog kind reaches: the meta
/// types of every API, and the kinds subresources read and write.
fn register_extras(generator: &mut SchemaGenerator) {
    generator.subschema_for::<meta::Status>();
    generator.subschema_for::<meta::DeleteOptions>();
    generator.subschema_for::<meta::Patch>();
    generator.subschema_for::<meta::ListMeta>();
    generator.subschema_for::<meta::WatchEvent<k8s_openapi::api::core::v1::Pod>>();
    generator.subschema_for::<autoscaling::Scale>();
    generator.subschema_for::<policy::v1::Eviction>();
    generator.subschema_for::<authn::TokenRequest>();
}

/// schemars writes draft 2020-12 `$defs` references; swagger 2.0 wants
/// `#/definitions/`.
fn rewrite_refs(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get_mut("$ref") {
                if let Some(name) = reference.strip_prefix("#/$defs/") {
                    *reference = format!("{REF_PREFIX}{name}");
                }
            }
            map.values_mut().for_each(rewrite_refs);
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

/// Types whose JSON form is not what their Go type suggests. Upstream gives
/// them `OpenAPISchemaType`/`OpenAPISchemaFormat` overrides: IntOrString is a
/// string with format `int-or-string`, Quantity a string; the OpenAPI 3 forms
/// (with `oneOf`) are produced by [`crate::v3`]. The apiextensions
/// "X-or-Y" unions carry no type at all upstream (any JSON is accepted).
fn special_forms(name: &str, schema: &mut Value) {
    let Some(map) = schema.as_object_mut() else {
        return;
    };
    match name {
        INT_OR_STRING => {
            map.remove("x-kubernetes-int-or-string");
            map.insert("type".into(), "string".into());
            map.insert("format".into(), "int-or-string".into());
        }
        QUANTITY => {
            map.remove("x-kubernetes-int-or-string");
            map.insert("type".into(), "string".into());
        }
        _ => {
            map.remove("oneOf");
        }
    }
    // k8s-openapi gives a few kinds (TokenReview, SubjectAccessReview, ...)
    // a non-optional `metadata`, which schemars lists as required. Upstream
    // never requires it (nor apiVersion or kind), and kubectl's client-side
    // validation refuses a manifest without `metadata:` if we say so.
    if let Some(Value::Array(required)) = map.get_mut("required") {
        required.retain(|f| !matches!(f.as_str(), Some("metadata" | "apiVersion" | "kind")));
        if required.is_empty() {
            map.remove("required");
        }
    }
}

fn strategy_name(strategy: Strategy) -> &'static str {
    match strategy {
        Strategy::Merge => "merge",
        Strategy::Replace => "replace",
        Strategy::RetainKeys => "retainKeys",
        Strategy::RetainKeysMerge => "merge,retainKeys",
    }
}

/// Adds `x-kubernetes-patch-strategy`/`-merge-key` (what kubectl's strategic
/// merge reads) and the known list types to each property.
fn add_patch_extensions(name: &str, schema: &mut Value) {
    let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
        return;
    };
    for (field, property) in properties.iter_mut() {
        let Some(property) = property.as_object_mut() else {
            continue;
        };
        if let Some(meta) = merge_keys::patch_meta(name, field) {
            if let Some(key) = meta.merge_key {
                property.insert("x-kubernetes-patch-merge-key".into(), key.into());
            }
            property.insert(
                "x-kubernetes-patch-strategy".into(),
                strategy_name(meta.strategy).into(),
            );
        }
        let known = LIST_TYPES
            .iter()
            .find(|(t, f, _, _)| *t == name && f == field);
        if let Some((_, _, list_type, keys)) = known {
            property.insert("x-kubernetes-list-type".into(), (*list_type).into());
            if !keys.is_empty() {
                property.insert("x-kubernetes-list-map-keys".into(), json!(keys));
            }
        }
    }
}

/// `[{group, version, kind}]`, the value of `x-kubernetes-group-version-kind`.
pub(crate) fn gvk_extension(group: &str, version: &str, kind: &str) -> Value {
    json!([{"group": group, "kind": kind, "version": version}])
}

/// The definition name of the object a (group, version, kind) names: the
/// catalog's own name for served kinds, the k8s.io/api package path otherwise
/// (`autoscaling/v1 Scale` → `io.k8s.api.autoscaling.v1.Scale`).
pub(crate) fn type_name(group: &str, version: &str, kind: &str) -> String {
    if let Some(resource) = catalog::by_kind(group, version, kind) {
        return resource.type_name.to_owned();
    }
    let package = if group.is_empty() {
        "core"
    } else {
        group.split('.').next().unwrap_or(group)
    };
    format!("io.k8s.api.{package}.{version}.{kind}")
}

/// The list type name of a resource (`io.k8s.api.core.v1.PodList`).
pub(crate) fn list_type_name(resource: &ResourceInfo) -> String {
    format!("{}List", resource.type_name)
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("{REF_PREFIX}{name}") })
}

/// Marks every catalog kind (and the non-catalog kinds subresources serve)
/// with its GVK, and adds the `<Kind>List` of each listable resource, which
/// k8s-openapi models as a generic `List<T>` without a schema of its own.
fn add_lists_and_kinds(definitions: &mut BTreeMap<String, Value>) {
    let mut kinds: Vec<(String, Value)> = Vec::new();
    for resource in catalog::all() {
        kinds.push((
            resource.type_name.to_owned(),
            gvk_extension(resource.group, resource.version, resource.kind),
        ));
        for sub in resource.subresources {
            let (group, version, kind) = sub.response_kind(resource);
            kinds.push((
                type_name(group, version, kind),
                gvk_extension(group, version, kind),
            ));
        }
        if resource.has_verb("list") {
            let list = list_schema(resource);
            definitions.insert(list_type_name(resource), list);
        }
    }
    kinds.push((format!("{META}.Status"), gvk_extension("", "v1", "Status")));
    for (name, gvk) in kinds {
        if let Some(map) = definitions.get_mut(&name).and_then(Value::as_object_mut) {
            map.entry("x-kubernetes-group-version-kind").or_insert(gvk);
        }
    }
}

fn list_schema(resource: &ResourceInfo) -> Value {
    let common = definitions_field_docs();
    let mut properties = Map::new();
    properties.insert("apiVersion".into(), common["apiVersion"].clone());
    properties.insert(
        "items".into(),
        json!({
            "description": format!("List of {}.", resource.plural),
            "items": reference(resource.type_name),
            "type": "array",
        }),
    );
    properties.insert("kind".into(), common["kind"].clone());
    let mut metadata = reference(&format!("{META}.ListMeta"));
    metadata["description"] = "Standard list metadata.".into();
    properties.insert("metadata".into(), metadata);
    json!({
        "description": format!("{}List is a list of {} objects.", resource.kind, resource.kind),
        "properties": properties,
        "required": ["items"],
        "type": "object",
        "x-kubernetes-group-version-kind":
            gvk_extension(resource.group, resource.version, &resource.list_kind()),
    })
}

/// The `apiVersion` and `kind` property schemas every object shares, with
/// their upstream descriptions (taken from `Status`, which has both).
fn definitions_field_docs() -> Value {
    let mut generator = SchemaSettings::draft2020_12().into_generator();
    let status = generator.root_schema_for::<meta::Status>();
    let properties = status.as_value().get("properties").cloned();
    properties
        .unwrap_or_else(|| json!({"apiVersion": {"type": "string"}, "kind": {"type": "string"}}))
}

/// The definition names a schema refers to directly.
pub(crate) fn references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                if let Some(name) = reference.strip_prefix(REF_PREFIX) {
                    out.push(name.to_owned());
                }
            }
            map.values().for_each(|v| references(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| references(v, out)),
        _ => {}
    }
}

/// `roots` and every definition they reach, transitively.
pub(crate) fn closure(roots: impl IntoIterator<Item = String>) -> BTreeMap<String, &'static Value> {
    let all = definitions();
    let mut out = BTreeMap::new();
    let mut pending: Vec<String> = roots.into_iter().collect();
    while let Some(name) = pending.pop() {
        if out.contains_key(&name) {
            continue;
        }
        if let Some(schema) = all.get(&name) {
            out.insert(name, schema);
            references(schema, &mut pending);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalog_kind_has_a_definition_with_its_gvk() {
        let all = definitions();
        for resource in catalog::all() {
            let schema = all
                .get(resource.type_name)
                .unwrap_or_else(|| panic!("no definition {}", resource.type_name));
            let gvks = schema["x-kubernetes-group-version-kind"]
                .as_array()
                .unwrap();
            assert!(
                gvks.iter().any(|g| g["group"] == resource.group
                    && g["version"] == resource.version
                    && g["kind"] == resource.kind),
                "{} lacks its GVK",
                resource.type_name
            );
        }
    }

    #[test]
    fn metadata_is_never_required() {
        let defs = definitions();
        let review = &defs["io.k8s.api.authentication.v1.TokenReview"];
        assert_eq!(review["required"], json!(["spec"]));
        for (name, schema) in defs {
            let required = schema["required"].as_array().cloned().unwrap_or_default();
            assert!(!required.contains(&json!("metadata")), "{name}");
        }
    }

    #[test]
    fn every_reference_resolves() {
        let all = definitions();
        for (name, schema) in all {
            let mut refs = Vec::new();
            references(schema, &mut refs);
            for target in refs {
                assert!(
                    all.contains_key(&target),
                    "{name} refers to missing {target}"
                );
            }
            assert!(
                !schema.to_string().contains("$defs"),
                "{name} kept a $defs ref"
            );
        }
    }

    #[test]
    fn pod_spec_containers_carry_patch_directives() {
        let spec = &definitions()["io.k8s.api.core.v1.PodSpec"]["properties"];
        assert_eq!(spec["containers"]["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(spec["containers"]["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(
            spec["volumes"]["x-kubernetes-patch-strategy"],
            "merge,retainKeys"
        );
        assert!(spec["tolerations"]
            .get("x-kubernetes-patch-strategy")
            .is_none());
        let ports = &definitions()["io.k8s.api.core.v1.Container"]["properties"]["ports"];
        assert_eq!(ports["x-kubernetes-patch-merge-key"], "containerPort");
        assert_eq!(
            ports["x-kubernetes-list-map-keys"],
            json!(["containerPort", "protocol"])
        );
    }

    #[test]
    fn lists_and_subresource_kinds_are_defined() {
        let all = definitions();
        let list = &all["io.k8s.api.apps.v1.DeploymentList"];
        assert_eq!(
            list["properties"]["items"]["items"]["$ref"],
            "#/definitions/io.k8s.api.apps.v1.Deployment"
        );
        assert_eq!(
            list["x-kubernetes-group-version-kind"][0]["kind"],
            "DeploymentList"
        );
        let scale = &all["io.k8s.api.autoscaling.v1.Scale"];
        assert_eq!(
            scale["x-kubernetes-group-version-kind"][0]["group"],
            "autoscaling"
        );
        assert_eq!(all[INT_OR_STRING]["format"], "int-or-string");
        assert_eq!(all[QUANTITY]["type"], "string");
    }

    #[test]
    fn type_names_follow_the_package_layout() {
        assert_eq!(type_name("", "v1", "Pod"), "io.k8s.api.core.v1.Pod");
        assert_eq!(
            type_name("policy", "v1", "Eviction"),
            "io.k8s.api.policy.v1.Eviction"
        );
        assert_eq!(
            type_name("authentication.k8s.io", "v1", "TokenRequest"),
            "io.k8s.api.authentication.v1.TokenRequest"
        );
    }
}
