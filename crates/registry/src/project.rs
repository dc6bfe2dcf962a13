//! Decoding only part of a stored object: the fields a filter reads.
//!
//! Upstream counterpart: the cacher computes an event's selectable fields
//! and labels once (`GetAttrs`) and judges every watcher's filter on those,
//! never on the whole object. Here a filtered watch judges each event on an
//! object decoded only at the JSON pointers its selectors read (a pod's
//! `spec.nodeName`, `metadata.labels`): the rest of the stored bytes is
//! scanned but builds nothing, where a whole decode of a pod allocates
//! hundreds of strings and maps, for the new and the previous state of
//! every event.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Where a filter reads: JSON pointers ("/spec/nodeName"). An object
/// decoded by [`Reads::decode`] holds every one of them as the whole
/// object does, and nothing else.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reads {
    paths: Vec<Vec<String>>,
}

impl Reads {
    /// The pointers' segments (`~1` and `~0` unescaped as RFC 6901 says).
    pub fn new<'a>(pointers: impl IntoIterator<Item = &'a str>) -> Reads {
        let paths = pointers
            .into_iter()
            .map(|p| {
                p.split('/')
                    .skip(1)
                    .map(|s| s.replace("~1", "/").replace("~0", "~"))
                    .collect()
            })
            .collect();
        Reads { paths }
    }

    /// The object at these pointers only.
    pub fn decode(&self, json: &[u8]) -> serde_json::Result<Value> {
        let mut de = serde_json::Deserializer::from_slice(json);
        let paths: Vec<&[String]> = self.paths.iter().map(Vec::as_slice).collect();
        // An empty pointer ("") is the whole object.
        let value = if paths.iter().any(|p| p.is_empty()) {
            serde::Deserialize::deserialize(&mut de)?
        } else {
            Part { paths: &paths }.deserialize(&mut de)?
        };
        de.end()?;
        Ok(value)
    }
}

/// One level of the walk: the remaining segments of every pointer that
/// passes through here (none of them empty).
struct Part<'p, 's> {
    paths: &'p [&'s [String]],
}

impl<'de> DeserializeSeed<'de> for Part<'_, '_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Part<'_, '_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let mut whole = false;
            let below: Vec<&[String]> = self
                .paths
                .iter()
                .filter(|p| p[0] == key)
                .filter_map(|p| {
                    whole |= p.len() == 1;
                    (p.len() > 1).then(|| &p[1..])
                })
                .collect();
            if whole {
                out.insert(key, map.next_value::<Value>()?);
            } else if !below.is_empty() {
                out.insert(key, map.next_value_seed(Part { paths: &below })?);
            } else {
                // Duplicate keys: the last one counts, as in a whole decode.
                map.next_value::<IgnoredAny>()?;
                out.remove(&key);
            }
        }
        Ok(Value::Object(out))
    }

    // A pointer cannot go on through anything but an object (its segments
    // here are field names, never list positions: see `Reads`' callers),
    // so what stands where an object was expected is not kept.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Value::Null)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_str<E>(self, _: &str) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_only_what_the_pointers_name() {
        let pod = json!({
            "metadata": {"name": "p", "labels": {"app": "web"}, "managedFields": [{"x": 1}]},
            "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
            "status": {"podIPs": [{"ip": "10.0.0.1"}], "phase": "Running"},
        });
        let bytes = serde_json::to_vec(&pod).unwrap();
        let reads = Reads::new(["/metadata/labels", "/spec/nodeName", "/status/podIPs"]);
        let part = reads.decode(&bytes).unwrap();
        assert_eq!(
            part,
            json!({
                "metadata": {"labels": {"app": "web"}},
                "spec": {"nodeName": "n1"},
                "status": {"podIPs": [{"ip": "10.0.0.1"}]},
            })
        );
        for p in [
            "/metadata/labels",
            "/spec/nodeName",
            "/status/podIPs/0/ip",
            "/status/phase",
        ] {
            if p != "/status/phase" {
                assert_eq!(part.pointer(p), pod.pointer(p), "{p}");
            }
        }
        assert!(part.pointer("/status/phase").is_none());
    }

    #[test]
    fn agrees_with_a_whole_decode_on_odd_shapes() {
        let reads = Reads::new(["/spec/nodeName", "/metadata/labels"]);
        for text in [
            r#"{"spec": null}"#,
            r#"{"spec": [1, {"nodeName": "x"}], "metadata": "m"}"#,
            r#"{"spec": {"nodeName": "a"}, "spec": {"other": 1}}"#,
            r#"{"spec": {"nodeName": "a\"b"}, "metadata": {"labels": null}}"#,
            r#"{}"#,
        ] {
            let whole: Value = serde_json::from_str(text).unwrap();
            let part = reads.decode(text.as_bytes()).unwrap();
            for p in ["/spec/nodeName", "/metadata/labels"] {
                assert_eq!(part.pointer(p), whole.pointer(p), "{text} {p}");
            }
        }
        assert!(reads.decode(b"{\"spec\": ").is_err());
        assert!(reads.decode(b"{} x").is_err());
    }

    #[test]
    fn an_empty_pointer_is_the_whole_object() {
        let text = br#"{"a": {"b": 1}, "c": [2]}"#;
        let whole: Value = serde_json::from_slice(text).unwrap();
        assert_eq!(Reads::new([""]).decode(text).unwrap(), whole);
    }
}
