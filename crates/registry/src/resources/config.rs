//! ConfigMaps and Secrets: key rules, per-type Secret contents, and the
//! `immutable` flag.
//!
//! Upstream counterpart: `ValidateConfigMap(Update)` and
//! `ValidateSecret(Update)` in `pkg/apis/core/validation/validation.go`,
//! `SetDefaults_Secret`, the v1 conversion that folds `stringData` into
//! `data`, and `pkg/registry/core/{configmap,secret}/strategy.go`.

use rkube_machinery::names::{max_len_error, regex_error};
use rkube_machinery::{FieldError, FieldPath};
use serde_json::{Map, Value};

use crate::resources::util::{default_str, str_at};
use crate::Strategy;

/// Largest total size of a ConfigMap's or Secret's data (1 MiB).
pub const MAX_DATA_BYTES: usize = 1024 * 1024;
const KEY_MAX_LENGTH: usize = 253;
const IMMUTABLE: &str = "field is immutable when `immutable` is set";
const REDACTED: &str = "<secret contents redacted>";

/// Upstream `IsConfigMapKey`: what may name a file in a volume.
pub fn is_config_map_key(key: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if key.len() > KEY_MAX_LENGTH {
        errs.push(max_len_error(KEY_MAX_LENGTH));
    }
    if key.is_empty()
        || !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        errs.push(regex_error(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
            "[-._a-zA-Z0-9]+",
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    match key {
        "." => errs.push("must not be '.'".into()),
        ".." => errs.push("must not be '..'".into()),
        k if k.starts_with("..") => errs.push("must not start with '..'".into()),
        _ => {}
    }
    errs
}

fn keys_of(obj: &Value, field: &str) -> Vec<(String, usize)> {
    obj.get(field)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().map_or(0, str::len)))
                .collect()
        })
        .unwrap_or_default()
}

/// The `immutable` rules shared by ConfigMaps and Secrets.
fn validate_immutable(new: &Value, old: &Value, fields: &[&str]) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return errs;
    }
    if new.get("immutable").and_then(Value::as_bool) != Some(true) {
        errs.push(FieldError::forbidden(
            &FieldPath::new("immutable"),
            IMMUTABLE,
        ));
    }
    for f in fields {
        if new.get(*f) != old.get(*f) {
            errs.push(FieldError::forbidden(&FieldPath::new(*f), IMMUTABLE));
        }
    }
    errs
}

pub struct ConfigMapStrategy;

impl Strategy for ConfigMapStrategy {
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let data = keys_of(obj, "data");
        let binary = keys_of(obj, "binaryData");
        let mut total = 0;
        for (field, mine, other, other_name) in [
            ("data", &data, &binary, "binaryData"),
            ("binaryData", &binary, &data, "data"),
        ] {
            for (key, len) in mine {
                let path = FieldPath::new(field).key(key.as_str());
                for msg in is_config_map_key(key) {
                    errs.push(FieldError::invalid(&path, key.as_str(), msg));
                }
                if other.iter().any(|(k, _)| k == key) {
                    errs.push(FieldError::invalid(
                        &path,
                        key.as_str(),
                        format!("duplicate of key present in {other_name}"),
                    ));
                }
                total += len;
            }
        }
        if total > MAX_DATA_BYTES {
            errs.push(FieldError::too_long(
                &FieldPath::root(),
                Some(MAX_DATA_BYTES),
            ));
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        errs.extend(validate_immutable(new, old, &["data", "binaryData"]));
        errs
    }
}

pub struct SecretStrategy;

/// `SetDefaults_Secret` and the `stringData` fold of the v1 conversion.
pub fn default_secret(obj: &mut Value) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    default_str(map, "type", "Opaque");
    if let Some(Value::Object(strings)) = map.remove("stringData") {
        let data = map
            .entry("data")
            .or_insert_with(|| Value::Object(Map::new()));
        if !data.is_object() {
            *data = Value::Object(Map::new());
        }
        let data = data.as_object_mut().expect("object");
        for (k, v) in strings {
            let text = v.as_str().unwrap_or("");
            data.insert(k, encode_base64(text.as_bytes()).into());
        }
    }
}

/// The decoded bytes of `data[key]`, when present and valid base64.
fn data_value(obj: &Value, key: &str) -> Option<Option<Vec<u8>>> {
    let v = obj.get("data")?.get(key)?;
    Some(v.as_str().and_then(decode_base64))
}

fn validate_secret(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let data_path = FieldPath::new("data");
    let mut total = 0;
    for (key, len) in keys_of(obj, "data") {
        let path = data_path.key(key.as_str());
        for msg in is_config_map_key(&key) {
            errs.push(FieldError::invalid(&path, key.as_str(), msg));
        }
        match obj
            .pointer("/data")
            .and_then(|d| d.get(&key))
            .and_then(Value::as_str)
            .map(decode_base64)
        {
            Some(None) => errs.push(FieldError::invalid(&path, REDACTED, "illegal base64 data")),
            _ => total += len / 4 * 3,
        }
    }
    if total > MAX_DATA_BYTES {
        errs.push(FieldError::too_long(&data_path, Some(MAX_DATA_BYTES)));
    }
    let required = |key: &str, errs: &mut Vec<FieldError>| {
        if data_value(obj, key).is_none() {
            errs.push(FieldError::required(&data_path.key(key), ""));
        }
    };
    let json_valid = |key: &str, errs: &mut Vec<FieldError>| {
        if let Some(Some(bytes)) = data_value(obj, key) {
            if let Err(e) = serde_json::from_slice::<Value>(&bytes) {
                errs.push(FieldError::invalid(
                    &data_path.key(key),
                    REDACTED,
                    e.to_string(),
                ));
            }
        }
    };
    match str_at(obj, "/type") {
        "kubernetes.io/service-account-token" => {
            let annotations = obj
                .pointer("/metadata/annotations")
                .and_then(Value::as_object);
            let name = annotations
                .and_then(|a| a.get("kubernetes.io/service-account.name"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if name.is_empty() {
                let path = FieldPath::new("metadata")
                    .child("annotations")
                    .key("kubernetes.io/service-account.name");
                errs.push(FieldError::required(&path, ""));
            }
        }
        "kubernetes.io/dockercfg" => {
            required(".dockercfg", &mut errs);
            json_valid(".dockercfg", &mut errs);
        }
        "kubernetes.io/dockerconfigjson" => {
            required(".dockerconfigjson", &mut errs);
            json_valid(".dockerconfigjson", &mut errs);
        }
        "kubernetes.io/basic-auth"
            if data_value(obj, "username").is_none() && data_value(obj, "password").is_none() =>
        {
            required("username", &mut errs);
            required("password", &mut errs);
        }
        "kubernetes.io/ssh-auth" => required("ssh-privatekey", &mut errs),
        "kubernetes.io/tls" => {
            required("tls.crt", &mut errs);
            required("tls.key", &mut errs);
        }
        _ => {}
    }
    errs
}

impl Strategy for SecretStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        default_secret(obj);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_secret(obj)
    }

    fn prepare_for_update(&self, new: &mut Value, _old: &Value) {
        default_secret(new);
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = validate_secret(new);
        let (nt, ot) = (str_at(new, "/type"), str_at(old, "/type"));
        if nt != ot {
            errs.push(FieldError::invalid(
                &FieldPath::new("type"),
                nt,
                "field is immutable",
            ));
        }
        errs.extend(validate_immutable(new, old, &["data"]));
        errs
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard, padded base64 (what Go's `[]byte` JSON encoding uses).
pub fn encode_base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decode standard, padded base64; `None` when malformed.
pub fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if !s.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    for (ci, chunk) in s.chunks(4).enumerate() {
        let last = ci == s.len() / 4 - 1;
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            let v = if i >= 4 - pad {
                0
            } else {
                B64.iter().position(|&b| b == c)? as u32
            };
            n |= v << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}
