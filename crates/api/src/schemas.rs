//! The OpenAPI definitions of every catalog kind and everything they
//! reference, generated once from k8s-openapi's schemars schemas.
//!
//! Upstream counterpart: the generated `zz_generated.openapi.go` definitions
//! (and the `SwaggerDoc()` field docs, which carry the same text). Table
//! column descriptions and the strategic-merge type tree are read from here so
//! neither restates what the schema already says.

use crate::catalog;
use k8s_openapi::schemars::generate::SchemaSettings;
use serde_json::{Map, Value};
use std::sync::OnceLock;

/// Definition name → schema object, for all types reachable from the catalog.
pub(crate) fn definitions() -> &'static Map<String, Value> {
    static DEFINITIONS: OnceLock<Map<String, Value>> = OnceLock::new();
    DEFINITIONS.get_or_init(|| {
        let mut generator = SchemaSettings::draft2020_12().into_generator();
        for resource in catalog::all() {
            resource.schema(&mut generator);
        }
        generator.take_definitions(false)
    })
}

/// The schema of `field` in definition `type_name`, if both exist.
pub(crate) fn property(type_name: &str, field: &str) -> Option<&'static Value> {
    definitions().get(type_name)?.get("properties")?.get(field)
}

/// The documented description of a field, as the Go `SwaggerDoc()` gives it.
pub(crate) fn field_description(type_name: &str, field: &str) -> Option<&'static str> {
    property(type_name, field)?.get("description")?.as_str()
}

/// The definition a schema refers to, looking through arrays and maps, so a
/// `[]Container` field and a `map[string]Quantity` field both name their
/// element type.
pub(crate) fn referenced_type(schema: &'static Value) -> Option<&'static str> {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        return reference.rsplit('/').next();
    }
    if let Some(items) = schema.get("items") {
        return referenced_type(items);
    }
    if let Some(values) = schema.get("additionalProperties") {
        return referenced_type(values);
    }
    None
}
