//! Walks the protobuf records of a message against its schema and builds the
//! JSON object Go's `encoding/json` would produce for the same Go value.
//!
//! Upstream counterpart: the protobuf serializer's `Decode`
//! (k8s.io/apimachinery/pkg/runtime/serializer/protobuf) unwrapping
//! `runtime.Unknown`, followed by `json.Marshal` of the decoded object: proto
//! presence and Go's `omitempty` disagree for non-pointer fields, which Go
//! always writes to protobuf but drops from JSON when zero.

use crate::names::{self, JsonField};
use crate::schema::{self, FieldDef, Kind, Label, MessageDef, Zero};
use crate::special;
use crate::wire::{self, WireType};
use crate::{Error, MAGIC};
use base64::Engine as _;
use serde_json::{Map, Number, Value};

/// Deepest message nesting accepted; a hostile body could otherwise recurse
/// until the stack overflows.
pub const MAX_DEPTH: usize = 200;

/// Decodes `k8s\0` + `runtime.Unknown`; `depth` counts enclosing messages
/// when the envelope sits inside a `RawExtension`.
pub(crate) fn decode_envelope(body: &[u8], depth: usize) -> Result<Value, Error> {
    let envelope = body.strip_prefix(MAGIC).ok_or(Error::BadMagic)?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    for record in wire::records(envelope) {
        match record.map_err(Error::Envelope)? {
            (1, wire::Value::Len(type_meta)) => {
                for record in wire::records(type_meta) {
                    match record.map_err(Error::Envelope)? {
                        (1, wire::Value::Len(v)) => api_version = lossy(v),
                        (2, wire::Value::Len(v)) => kind = lossy(v),
                        _ => {}
                    }
                }
            }
            (2, wire::Value::Len(v)) => raw = v,
            (3, wire::Value::Len(v)) if !v.is_empty() => {
                return Err(Error::ContentEncoding(lossy(v)));
            }
            _ => {}
        }
    }
    if kind.is_empty() {
        return Err(Error::MissingKind);
    }
    let index = message_for(&api_version, &kind).ok_or_else(|| Error::UnknownKind {
        api_version: api_version.clone(),
        kind: kind.clone(),
    })?;
    let body = message(index, raw, depth + 1)?;
    let mut object = Map::new();
    object.insert("apiVersion".into(), Value::String(api_version));
    object.insert("kind".into(), Value::String(kind));
    if let Value::Object(fields) = body {
        object.extend(fields);
    }
    Ok(Value::Object(object))
}

/// The message of a kind: the group version's own package first, then the
/// meta/v1 types (`DeleteOptions`, `Status`, ...) every group version serves.
fn message_for(api_version: &str, kind: &str) -> Option<usize> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let own = schema::package_of(group, version).and_then(|p| schema::find(p, kind));
    own.or_else(|| schema::find(schema::META_V1, kind))
}

/// Transcodes one message.
pub(crate) fn message(index: usize, bytes: &[u8], depth: usize) -> Result<Value, Error> {
    if depth > MAX_DEPTH {
        return Err(Error::TooDeep);
    }
    let def = schema::message(index);
    let mut records = records(def, bytes)?;
    if let Some(value) = special::transcode(def, &records, depth)? {
        return Ok(value);
    }
    // Stable: repeated values and "last one wins" keep their wire order.
    records.sort_by_key(|(tag, _)| *tag);
    let json_fields = names::fields(index);
    let mut object = Map::new();
    for (field, json) in def.fields.iter().zip(json_fields) {
        let start = records.partition_point(|(tag, _)| *tag < field.tag);
        let values: Vec<&wire::Value<'_>> = records[start..]
            .iter()
            .take_while(|(tag, _)| *tag == field.tag)
            .map(|(_, v)| v)
            .collect();
        if values.is_empty() {
            continue;
        }
        let path = || format!("{}.{}", def.full_name(), field.name);
        match field_value(field, json, &values, depth, &path)? {
            Some(Value::Object(inner)) if field.inline => object.extend(inner),
            Some(value) => {
                object.insert(json.name.clone(), value);
            }
            None => {}
        }
    }
    Ok(Value::Object(object))
}

pub(crate) type Records<'a> = Vec<(u32, wire::Value<'a>)>;

fn records<'a>(def: &MessageDef, bytes: &'a [u8]) -> Result<Records<'a>, Error> {
    wire::records(bytes)
        .collect::<Result<_, _>>()
        .map_err(|source| Error::Malformed {
            path: def.full_name(),
            source,
        })
}

fn field_value(
    field: &FieldDef,
    json: &JsonField,
    values: &[&wire::Value<'_>],
    depth: usize,
    path: &dyn Fn() -> String,
) -> Result<Option<Value>, Error> {
    match field.label {
        Label::Map => {
            let mut object = Map::new();
            for value in values {
                let entry = expect_len(value, path)?;
                let (key, value) = map_entry(field.kind, entry, depth, path)?;
                object.insert(key, value);
            }
            Ok((!object.is_empty()).then_some(Value::Object(object)))
        }
        Label::Repeated => {
            let mut items = Vec::new();
            for value in values {
                repeated_items(field.kind, value, depth, path, &mut items)?;
            }
            Ok((!items.is_empty()).then_some(Value::Array(items)))
        }
        Label::Single => {
            if let Kind::Message(index) = field.kind {
                // A message field may arrive in several pieces, which merge
                // as if concatenated.
                let mut merged = Vec::new();
                for value in values {
                    merged.extend_from_slice(expect_len(value, path)?);
                }
                return message(index, &merged, depth + 1).map(Some);
            }
            // For scalars the last occurrence wins.
            let last = values[values.len() - 1];
            let (value, zero) = scalar(field.kind, last, path)?;
            let keep = !zero
                || match field.zero {
                    Zero::Emit => true,
                    Zero::Omit => false,
                    Zero::Unknown => json.required,
                };
            Ok(keep.then_some(value))
        }
    }
}

fn repeated_items(
    kind: Kind,
    value: &wire::Value<'_>,
    depth: usize,
    path: &dyn Fn() -> String,
    items: &mut Vec<Value>,
) -> Result<(), Error> {
    let malformed = |source| Error::Malformed {
        path: path(),
        source,
    };
    match (kind, value) {
        (Kind::Message(index), _) => {
            items.push(message(index, expect_len(value, path)?, depth + 1)?)
        }
        // Packed encoding of numeric kinds; Go writes k8s' proto2 fields
        // unpacked, but a decoder must accept both.
        (Kind::Bool | Kind::Int32 | Kind::Int64, wire::Value::Len(bytes)) => {
            for v in wire::packed_varints(bytes).map_err(malformed)? {
                items.push(scalar(kind, &wire::Value::Varint(v), path)?.0);
            }
        }
        (Kind::Double, wire::Value::Len(bytes)) => {
            for v in wire::packed_fixed64(bytes).map_err(malformed)? {
                items.push(scalar(kind, &wire::Value::Fixed64(v), path)?.0);
            }
        }
        _ => items.push(scalar(kind, value, path)?.0),
    }
    Ok(())
}

/// One `map<string, V>` entry: a message {1: key, 2: value}; a missing value
/// is V's zero value.
fn map_entry(
    kind: Kind,
    entry: &[u8],
    depth: usize,
    path: &dyn Fn() -> String,
) -> Result<(String, Value), Error> {
    let mut key = String::new();
    let mut value = None;
    for record in wire::records(entry) {
        let (tag, v) = record.map_err(|source| Error::Malformed {
            path: path(),
            source,
        })?;
        match tag {
            1 => key = lossy(expect_len(&v, path)?),
            2 => value = Some(v),
            _ => {}
        }
    }
    let value = match (kind, value) {
        (Kind::Message(index), Some(v)) => message(index, expect_len(&v, path)?, depth + 1)?,
        (Kind::Message(index), None) => message(index, &[], depth + 1)?,
        (_, Some(v)) => scalar(kind, &v, path)?.0,
        (_, None) => zero_value(kind),
    };
    Ok((key, value))
}

/// A scalar's JSON value and whether it is its kind's zero value.
fn scalar(
    kind: Kind,
    value: &wire::Value<'_>,
    path: &dyn Fn() -> String,
) -> Result<(Value, bool), Error> {
    let wrong = |expected: WireType| Error::WireType {
        path: path(),
        found: value.wire_type().name(),
        expected: expected.name(),
    };
    Ok(match kind {
        Kind::String => {
            let bytes = expect_len(value, path)?;
            (Value::String(lossy(bytes)), bytes.is_empty())
        }
        Kind::Bytes => {
            let bytes = expect_len(value, path)?;
            let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
            (Value::String(encoded), bytes.is_empty())
        }
        Kind::Bool | Kind::Int32 | Kind::Int64 => {
            let wire::Value::Varint(v) = *value else {
                return Err(wrong(WireType::Varint));
            };
            match kind {
                Kind::Bool => (Value::Bool(v != 0), v == 0),
                // int32 values are sign-extended to 64 bits on the wire.
                Kind::Int32 => (Value::from(v as i64 as i32), v as i64 as i32 == 0),
                _ => (Value::from(v as i64), v == 0),
            }
        }
        Kind::Double => {
            let wire::Value::Fixed64(bits) = *value else {
                return Err(wrong(WireType::Fixed64));
            };
            let float = f64::from_bits(bits);
            (json_float(float, path)?, float == 0.0)
        }
        Kind::Message(_) => unreachable_message(path)?,
    })
}

/// Go's encoder writes integral floats without a fraction (`1`, not `1.0`).
fn json_float(float: f64, path: &dyn Fn() -> String) -> Result<Value, Error> {
    const EXACT: f64 = (1u64 << 53) as f64;
    if float.fract() == 0.0 && float.abs() < EXACT {
        return Ok(Value::from(float as i64));
    }
    Number::from_f64(float)
        .map(Value::Number)
        .ok_or_else(|| Error::Value {
            path: path(),
            reason: format!("{float} has no JSON form"),
        })
}

fn unreachable_message(path: &dyn Fn() -> String) -> Result<(Value, bool), Error> {
    // Callers route message kinds to `message`; reaching here is a schema bug,
    // reported instead of panicking.
    Err(Error::Value {
        path: path(),
        reason: "message field read as a scalar".into(),
    })
}

fn zero_value(kind: Kind) -> Value {
    match kind {
        Kind::String | Kind::Bytes => Value::String(String::new()),
        Kind::Bool => Value::Bool(false),
        Kind::Int32 | Kind::Int64 | Kind::Double => Value::from(0),
        Kind::Message(_) => Value::Object(Map::new()),
    }
}

pub(crate) fn expect_len<'a>(
    value: &wire::Value<'a>,
    path: &dyn Fn() -> String,
) -> Result<&'a [u8], Error> {
    match *value {
        wire::Value::Len(bytes) => Ok(bytes),
        _ => Err(Error::WireType {
            path: path(),
            found: value.wire_type().name(),
            expected: WireType::Len.name(),
        }),
    }
}

/// Go's JSON encoder writes invalid UTF-8 as U+FFFD, and so do we.
pub(crate) fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
