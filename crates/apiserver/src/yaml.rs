//! YAML request bodies (`application/yaml`, server-side apply's
//! `application/apply-patch+yaml`) decoded into JSON values.

use serde_json::Value;

pub fn from_slice(bytes: &[u8]) -> Result<Value, serde_yaml_ng::Error> {
    serde_yaml_ng::from_slice(bytes)
}
