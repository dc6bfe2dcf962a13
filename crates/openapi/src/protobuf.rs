//! Encodes the swagger 2.0 JSON document as gnostic's `openapi.v2.Document`
//! protobuf message, the form client-go's `OpenAPISchema()` downloads
//! (`Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf`).
//!
//! Upstream counterpart: github.com/google/gnostic-models openapiv2
//! (`OpenAPIv2.proto` and its JSON-to-message compiler), as kube-openapi's
//! handler uses it. Only the messages and fields our documents use are
//! encoded; field numbers follow `OpenAPIv2.proto`. Vendor extensions travel
//! as `Any.yaml` text, which readers YAML-decode; JSON is valid YAML, so the
//! extension value's JSON text is written.

use serde_json::{Map, Value};

/// A protobuf message being written: fields are appended in the order the
/// caller emits them, which is how gnostic writes them too (field order).
#[derive(Default)]
struct Message(Vec<u8>);

impl Message {
    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.0.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.0.push(value as u8);
    }

    fn key(&mut self, field: u32, wire_type: u8) {
        self.varint(u64::from(field) << 3 | u64::from(wire_type));
    }

    fn bytes(&mut self, field: u32, bytes: &[u8]) {
        self.key(field, 2);
        self.varint(bytes.len() as u64);
        self.0.extend_from_slice(bytes);
    }

    /// A proto3 string: the default (empty) is not written.
    fn string(&mut self, field: u32, value: &str) {
        if !value.is_empty() {
            self.bytes(field, value.as_bytes());
        }
    }

    fn opt_string(&mut self, field: u32, value: Option<&Value>) {
        if let Some(s) = value.and_then(Value::as_str) {
            self.string(field, s);
        }
    }

    fn strings(&mut self, field: u32, value: Option<&Value>) {
        for s in value.and_then(Value::as_array).into_iter().flatten() {
            if let Some(s) = s.as_str() {
                // Repeated strings keep empty elements.
                self.bytes(field, s.as_bytes());
            }
        }
    }

    /// A proto3 bool: only `true` is written.
    fn boolean(&mut self, field: u32, value: Option<&Value>) {
        if value.and_then(Value::as_bool) == Some(true) {
            self.key(field, 0);
            self.varint(1);
        }
    }

    fn message(&mut self, field: u32, build: impl FnOnce(&mut Message)) {
        let mut inner = Message::default();
        build(&mut inner);
        self.bytes(field, &inner.0);
    }
}

/// The encoded `openapi.v2.Document` of a swagger 2.0 JSON document.
pub(crate) fn document(doc: &Value) -> Vec<u8> {
    let mut m = Message::default();
    m.opt_string(1, doc.get("swagger"));
    if let Some(info) = doc.get("info") {
        m.message(2, |i| {
            i.opt_string(1, info.get("title"));
            i.opt_string(2, info.get("version"));
        });
    }
    if let Some(paths) = doc.get("paths").and_then(Value::as_object) {
        m.message(8, |p| {
            for (name, item) in paths {
                p.message(2, |named| {
                    named.string(1, name);
                    named.message(2, |v| path_item(v, item));
                });
            }
        });
    }
    if let Some(definitions) = doc.get("definitions").and_then(Value::as_object) {
        m.message(9, |d| named_schemas(d, 1, definitions));
    }
    for requirement in doc
        .get("security")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.message(12, |r| {
            for (name, scopes) in requirement.as_object().into_iter().flatten() {
                r.message(1, |named| {
                    named.string(1, name);
                    named.message(2, |array| array.strings(1, Some(scopes)));
                });
            }
        });
    }
    if let Some(definitions) = doc.get("securityDefinitions").and_then(Value::as_object) {
        m.message(13, |d| {
            for (name, scheme) in definitions {
                d.message(1, |named| {
                    named.string(1, name);
                    // SecurityDefinitionsItem.api_key_security: the only kind
                    // the server declares.
                    named.message(2, |item| {
                        item.message(2, |api_key| {
                            api_key.opt_string(1, scheme.get("type"));
                            api_key.opt_string(2, scheme.get("name"));
                            api_key.opt_string(3, scheme.get("in"));
                            api_key.opt_string(4, scheme.get("description"));
                        })
                    });
                });
            }
        });
    }
    m.0
}

/// `repeated NamedSchema` at `field`.
fn named_schemas(m: &mut Message, field: u32, schemas: &Map<String, Value>) {
    for (name, value) in schemas {
        m.message(field, |named| {
            named.string(1, name);
            named.message(2, |s| schema(s, value));
        });
    }
}

/// `repeated NamedAny vendor_extension` at `field`, for every `x-` key.
fn vendor_extensions(m: &mut Message, field: u32, object: &Map<String, Value>) {
    for (name, value) in object.iter().filter(|(k, _)| k.starts_with("x-")) {
        m.message(field, |named| {
            named.string(1, name);
            named.message(2, |any| any.string(2, &value.to_string()));
        });
    }
}

fn schema(m: &mut Message, value: &Value) {
    let Some(s) = value.as_object() else {
        return;
    };
    m.opt_string(1, s.get("$ref"));
    m.opt_string(2, s.get("format"));
    m.opt_string(3, s.get("title"));
    m.opt_string(4, s.get("description"));
    m.boolean(16, s.get("uniqueItems"));
    m.strings(19, s.get("required"));
    match s.get("additionalProperties") {
        Some(Value::Bool(b)) => m.message(21, |a| a.boolean(2, Some(&Value::Bool(*b)))),
        Some(inner @ Value::Object(_)) => m.message(21, |a| a.message(1, |s| schema(s, inner))),
        _ => {}
    }
    if let Some(ty) = s.get("type") {
        m.message(22, |t| match ty {
            Value::String(single) => t.string(1, single),
            other => t.strings(1, Some(other)),
        });
    }
    if let Some(items) = s.get("items") {
        m.message(23, |i| i.message(1, |s| schema(s, items)));
    }
    for sub in s
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.message(24, |s| schema(s, sub));
    }
    if let Some(properties) = s.get("properties").and_then(Value::as_object) {
        m.message(25, |p| named_schemas(p, 1, properties));
    }
    m.boolean(27, s.get("readOnly"));
    vendor_extensions(m, 31, s);
}

fn path_item(m: &mut Message, item: &Value) {
    const METHODS: &[(&str, u32)] = &[
        ("get", 2),
        ("put", 3),
        ("post", 4),
        ("delete", 5),
        ("patch", 8),
    ];
    for (method, field) in METHODS {
        if let Some(op) = item.get(*method) {
            m.message(*field, |o| operation(o, op));
        }
    }
    for param in item
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.message(9, |p| parameters_item(p, param));
    }
}

fn operation(m: &mut Message, op: &Value) {
    m.strings(1, op.get("tags"));
    m.opt_string(3, op.get("description"));
    m.opt_string(5, op.get("operationId"));
    m.strings(6, op.get("produces"));
    m.strings(7, op.get("consumes"));
    for param in op
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.message(8, |p| parameters_item(p, param));
    }
    if let Some(responses) = op.get("responses").and_then(Value::as_object) {
        m.message(9, |r| {
            for (code, response) in responses {
                r.message(1, |named| {
                    named.string(1, code);
                    // ResponseValue.response → Response.
                    named.message(2, |value| {
                        value.message(1, |resp| {
                            resp.opt_string(1, response.get("description"));
                            if let Some(s) = response.get("schema") {
                                resp.message(2, |item| item.message(1, |inner| schema(inner, s)));
                            }
                        })
                    });
                });
            }
        });
    }
    m.strings(10, op.get("schemes"));
    if let Some(object) = op.as_object() {
        vendor_extensions(m, 13, object);
    }
}

/// `ParametersItem.parameter`: a body parameter, or a query/path one.
fn parameters_item(m: &mut Message, param: &Value) {
    m.message(1, |p| match param.get("in").and_then(Value::as_str) {
        Some("body") => p.message(1, |body| {
            body.opt_string(1, param.get("description"));
            body.opt_string(2, param.get("name"));
            body.string(3, "body");
            body.boolean(4, param.get("required"));
            if let Some(s) = param.get("schema") {
                body.message(5, |inner| schema(inner, s));
            }
        }),
        Some(location) => p.message(2, |non_body| {
            // QueryParameterSubSchema is oneof field 3, PathParameterSubSchema
            // field 4; their numbering differs after `name` because only
            // query parameters have `allow_empty_value`.
            let (which, type_field, unique_field) = match location {
                "path" => (4, 5, 19),
                _ => (3, 6, 20),
            };
            non_body.message(which, |sub| {
                sub.boolean(1, param.get("required"));
                sub.string(2, location);
                sub.opt_string(3, param.get("description"));
                sub.opt_string(4, param.get("name"));
                sub.opt_string(type_field, param.get("type"));
                sub.boolean(unique_field, param.get("uniqueItems"));
            })
        }),
        None => {}
    });
}

#[cfg(test)]
mod tests;
