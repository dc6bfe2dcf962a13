//! JSON field names (and `required` flags) for every protobuf field, recovered
//! from the OpenAPI schemas k8s-openapi generates.
//!
//! Upstream counterpart: the `json:"..."` struct tags of the Go types, which
//! also drive their OpenAPI definitions. prost re-cases proto names into
//! snake_case (`podIP` → `pod_ip`), so the JSON name is found by comparing
//! names case-insensitively with everything but letters and digits removed
//! (`pod_ip` ~ `podIP`, `r#ref` ~ `$ref`,
//! `x_kubernetes_list_type` ~ `x-kubernetes-list-type`).

use crate::schema::{self, MessageDef};
use k8s_openapi::schemars::generate::SchemaSettings;
use k8s_openapi::schemars::JsonSchema;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::OnceLock;

/// The JSON side of one protobuf field.
#[derive(Debug, Clone)]
pub struct JsonField {
    pub name: String,
    /// Listed in the definition's `required`: Go writes it even when zero.
    pub required: bool,
}

/// JSON fields of message `index`, in the order of its `fields`.
pub fn fields(index: usize) -> &'static [JsonField] {
    &table()[index]
}

fn table() -> &'static Vec<Vec<JsonField>> {
    static TABLE: OnceLock<Vec<Vec<JsonField>>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let definitions = definitions();
        let by_name: HashMap<String, &Map<String, Value>> = definitions
            .iter()
            .filter_map(|(name, def)| Some((name.to_ascii_lowercase(), def.as_object()?)))
            .collect();
        schema::messages()
            .iter()
            .map(|message| {
                let definition = by_name.get(&definition_name(message).to_ascii_lowercase());
                message
                    .fields
                    .iter()
                    .map(|field| json_field(definition.copied(), field.name))
                    .collect()
            })
            .collect()
    })
}

/// `api.core.v1.Pod` → `io.k8s.api.core.v1.Pod`; Go module names keep their
/// dashes (`io.k8s.apiextensions-apiserver...`), which Rust spelled `_`.
pub fn definition_name(message: &MessageDef) -> String {
    format!(
        "io.k8s.{}.{}",
        message.package.replace('_', "-"),
        message.name
    )
}

/// The field's JSON name from the message's definition, or a camelCase
/// guess for messages no served kind reaches (alpha versions, internal
/// types), which no request can carry anyway.
fn json_field(definition: Option<&Map<String, Value>>, proto_name: &str) -> JsonField {
    definition
        .and_then(|d| from_schema(d, proto_name))
        .unwrap_or_else(|| JsonField {
            name: lower_camel(proto_name),
            required: false,
        })
}

fn from_schema(definition: &Map<String, Value>, proto_name: &str) -> Option<JsonField> {
    let wanted = normalize(proto_name);
    let properties = definition.get("properties")?.as_object()?;
    let name = properties.keys().find(|k| normalize(k) == wanted)?;
    let required = definition
        .get("required")
        .and_then(Value::as_array)
        .is_some_and(|r| r.iter().any(|v| v.as_str() == Some(name)));
    Some(JsonField {
        name: name.clone(),
        required,
    })
}

fn normalize(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn lower_camel(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Definitions of every catalog kind plus the request bodies that are not
/// catalog kinds themselves (subresource and options types).
pub fn definitions() -> &'static Map<String, Value> {
    static DEFINITIONS: OnceLock<Map<String, Value>> = OnceLock::new();
    DEFINITIONS.get_or_init(|| {
        use k8s_openapi::api;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
        let mut generator = SchemaSettings::draft2020_12().into_generator();
        for resource in rkube_api::catalog::all() {
            resource.schema(&mut generator);
        }
        fn add<T: JsonSchema>(generator: &mut k8s_openapi::schemars::SchemaGenerator) {
            generator.subschema_for::<T>();
        }
        add::<api::policy::v1::Eviction>(&mut generator);
        add::<api::authentication::v1::TokenRequest>(&mut generator);
        add::<api::autoscaling::v1::Scale>(&mut generator);
        add::<api::core::v1::Binding>(&mut generator);
        add::<meta::DeleteOptions>(&mut generator);
        add::<meta::Status>(&mut generator);
        generator.take_definitions(false)
    })
}

#[cfg(test)]
mod tests;
