//! Types whose JSON form is not their protobuf structure: Go gives them
//! custom `MarshalJSON` methods, so the generic field walk would be wrong.
//!
//! Upstream counterparts: `resource.Quantity` (api/resource/quantity.go),
//! `intstr.IntOrString`, `metav1.Time`, `MicroTime`, `Duration`, `FieldsV1`
//! and `Verbs` (apis/meta/v1), the `ExtraValue` string lists of the
//! authentication, authorization and certificates groups,
//! `runtime.RawExtension`, and apiextensions'
//! `JSON` and `JSONSchemaPropsOr{Array,Bool,StringArray}`.

use crate::schema::{Kind, MessageDef, META_V1};
use crate::transcode::{self, expect_len, lossy, Records};
use crate::wire;
use crate::{Error, MAGIC};
use serde_json::Value;

/// The JSON of `def` if it is one of the special types, `None` otherwise.
pub(crate) fn transcode(
    def: &MessageDef,
    records: &Records<'_>,
    depth: usize,
) -> Result<Option<Value>, Error> {
    let r = Fields { def, records };
    let value = match (def.package, def.name) {
        ("apimachinery.pkg.api.resource", "Quantity" | "QuantityValue") => {
            // A zero Quantity marshals as "0".
            Value::String(r.string(1)?.unwrap_or_else(|| "0".into()))
        }
        ("apimachinery.pkg.util.intstr", "IntOrString") => {
            if r.varint(1)? == Some(1) {
                Value::String(r.string(3)?.unwrap_or_default())
            } else {
                Value::from(r.varint(2)?.unwrap_or(0) as i64 as i32)
            }
        }
        (META_V1, "Time") => time(&r, false)?,
        (META_V1, "MicroTime") => time(&r, true)?,
        (META_V1, "Duration") => Value::String(go_duration(r.varint(1)?.unwrap_or(0) as i64)),
        (META_V1, "FieldsV1") => r.embedded_json(1)?,
        // Named Go slice types (`type Verbs []string`, `type ExtraValue
        // []string`) are wrapped in a message on the wire but are plain
        // arrays in JSON.
        (META_V1, "Verbs")
        | (
            "api.authentication.v1"
            | "api.authentication.v1beta1"
            | "api.authorization.v1"
            | "api.authorization.v1beta1"
            | "api.certificates.v1"
            | "api.certificates.v1beta1",
            "ExtraValue",
        ) => Value::Array(
            r.all_len(1)?
                .into_iter()
                .map(|v| Value::String(lossy(v)))
                .collect(),
        ),
        ("apimachinery.pkg.runtime", "RawExtension") => match r.bytes(1)? {
            // An embedded object the protobuf serializer wrote as protobuf.
            Some(raw) if raw.starts_with(MAGIC) => transcode::decode_envelope(raw, depth)?,
            _ => r.embedded_json(1)?,
        },
        (package, name) if package.starts_with("apiextensions_apiserver.") => {
            match name {
                "Json" => r.embedded_json(1)?,
                // An array of schemas if there are any, else the one schema.
                "JsonSchemaPropsOrArray" => {
                    let schemas = r.messages(2, depth)?;
                    if !schemas.is_empty() {
                        Value::Array(schemas)
                    } else {
                        r.message(1, depth)?.unwrap_or(Value::Null)
                    }
                }
                // A schema if there is one, else the boolean.
                "JsonSchemaPropsOrBool" => match r.message(2, depth)? {
                    Some(schema) => schema,
                    None => Value::Bool(r.varint(1)?.is_some_and(|v| v != 0)),
                },
                "JsonSchemaPropsOrStringArray" => {
                    let strings = r.all_len(2)?;
                    if !strings.is_empty() {
                        Value::Array(
                            strings
                                .into_iter()
                                .map(|v| Value::String(lossy(v)))
                                .collect(),
                        )
                    } else {
                        r.message(1, depth)?.unwrap_or(Value::Null)
                    }
                }
                _ => return Ok(None),
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(value))
}

/// Typed access to the records of one special message.
struct Fields<'r, 'a> {
    def: &'r MessageDef,
    records: &'r Records<'a>,
}

impl<'a> Fields<'_, 'a> {
    fn path(&self, tag: u32) -> String {
        format!("{}#{tag}", self.def.full_name())
    }

    fn last(&self, tag: u32) -> Option<&wire::Value<'a>> {
        self.records
            .iter()
            .rev()
            .find(|(t, _)| *t == tag)
            .map(|(_, v)| v)
    }

    fn varint(&self, tag: u32) -> Result<Option<u64>, Error> {
        match self.last(tag) {
            None => Ok(None),
            Some(wire::Value::Varint(v)) => Ok(Some(*v)),
            Some(other) => Err(Error::WireType {
                path: self.path(tag),
                found: other.wire_type().name(),
                expected: wire::WireType::Varint.name(),
            }),
        }
    }

    fn bytes(&self, tag: u32) -> Result<Option<&'a [u8]>, Error> {
        self.last(tag)
            .map(|v| expect_len(v, &|| self.path(tag)))
            .transpose()
    }

    fn string(&self, tag: u32) -> Result<Option<String>, Error> {
        Ok(self.bytes(tag)?.map(lossy))
    }

    fn all_len(&self, tag: u32) -> Result<Vec<&'a [u8]>, Error> {
        self.records
            .iter()
            .filter(|(t, _)| *t == tag)
            .map(|(_, v)| expect_len(v, &|| self.path(tag)))
            .collect()
    }

    fn message_index(&self, tag: u32) -> Result<usize, Error> {
        match self.def.field(tag).map(|f| f.kind) {
            Some(Kind::Message(index)) => Ok(index),
            _ => Err(Error::Value {
                path: self.path(tag),
                reason: "schema has no message field here".into(),
            }),
        }
    }

    fn messages(&self, tag: u32, depth: usize) -> Result<Vec<Value>, Error> {
        let parts = self.all_len(tag)?;
        if parts.is_empty() {
            return Ok(Vec::new());
        }
        let index = self.message_index(tag)?;
        parts
            .into_iter()
            .map(|bytes| transcode::message(index, bytes, depth + 1))
            .collect()
    }

    /// A singular message field (pieces merge by concatenation).
    fn message(&self, tag: u32, depth: usize) -> Result<Option<Value>, Error> {
        let parts = self.all_len(tag)?;
        if parts.is_empty() {
            return Ok(None);
        }
        let index = self.message_index(tag)?;
        let merged: Vec<u8> = parts.concat();
        transcode::message(index, &merged, depth + 1).map(Some)
    }

    /// Raw JSON bytes embedded in a bytes field; absent or empty is `null`.
    fn embedded_json(&self, tag: u32) -> Result<Value, Error> {
        match self.bytes(tag)? {
            None | Some([]) => Ok(Value::Null),
            Some(raw) => serde_json::from_slice(raw).map_err(|source| Error::EmbeddedJson {
                path: self.path(tag),
                source,
            }),
        }
    }
}

const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800;

/// `metav1.Time` as RFC 3339 in UTC at second precision (`MicroTime`: six
/// fractional digits); the zero time is `null`.
fn time(r: &Fields<'_, '_>, micro: bool) -> Result<Value, Error> {
    let seconds = r.varint(1)?.unwrap_or(0) as i64;
    let nanos = i64::from(r.varint(2)?.unwrap_or(0) as i64 as i32);
    if (seconds == 0 || seconds == GO_ZERO_TIME_SECONDS) && nanos == 0 {
        return Ok(Value::Null);
    }
    // time.Unix normalises nanoseconds outside [0, 1e9).
    let seconds = seconds
        .checked_add(nanos.div_euclid(1_000_000_000))
        .ok_or_else(|| out_of_range(r, seconds))?;
    let nanos = nanos.rem_euclid(1_000_000_000);
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    // Go refuses to marshal years outside 0..=9999.
    if !(0..=9999).contains(&year) {
        return Err(out_of_range(r, seconds));
    }
    let mut text = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    );
    if micro {
        text.push_str(&format!(".{:06}", nanos / 1000));
    }
    text.push('Z');
    Ok(Value::String(text))
}

fn out_of_range(r: &Fields<'_, '_>, seconds: i64) -> Error {
    Error::Value {
        path: r.def.full_name(),
        reason: format!("time {seconds}s since the epoch is outside years 0..=9999"),
    }
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01
/// (the well-known era-based conversion).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Go's `time.Duration.String()`: `1h0m0s`, `5m0s`, `1.5s`, `300ms`, `0s`.
fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    if n < 1_000_000_000 {
        let (unit, scale, digits) = match n {
            0..1_000 => ("ns", 1, 0),
            1_000..1_000_000 => ("µs", 1_000, 3),
            _ => ("ms", 1_000_000, 6),
        };
        return format!("{sign}{}{}{unit}", n / scale, fraction(n % scale, digits));
    }
    let seconds = n / 1_000_000_000;
    let frac = fraction(n % 1_000_000_000, 9);
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    match (h, m) {
        (0, 0) => format!("{sign}{s}{frac}s"),
        (0, _) => format!("{sign}{m}m{s}{frac}s"),
        _ => format!("{sign}{h}h{m}m{s}{frac}s"),
    }
}

/// `.5` for 500 of 3 digits; empty when zero.
fn fraction(value: u64, digits: usize) -> String {
    if value == 0 || digits == 0 {
        return String::new();
    }
    let text = format!("{value:0digits$}");
    format!(".{}", text.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_414), (2025, 11, 22));
        assert_eq!(civil_from_days(GO_ZERO_TIME_SECONDS / 86_400), (1, 1, 1));
    }

    #[test]
    fn durations_match_go() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(1), "1ns");
        assert_eq!(go_duration(1_500), "1.5µs");
        assert_eq!(go_duration(300_000_000), "300ms");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(300 * 1_000_000_000), "5m0s");
        assert_eq!(go_duration(3600 * 1_000_000_000), "1h0m0s");
        assert_eq!(go_duration(-90 * 1_000_000_000), "-1m30s");
        assert_eq!(go_duration(i64::MIN), "-2562047h47m16.854775808s");
    }
}
