//! What kube-apiserver's default admission plugins add to every new pod,
//! done here because rkube has no separate mutating admission chain for
//! them: the service account and its token volume, the priority, and the
//! not-ready/unreachable tolerations.
//!
//! Upstream counterparts: `plugin/pkg/admission/serviceaccount`
//! (`kube-api-access-*` projected volume), `plugin/pkg/admission/priority`
//! and `plugin/pkg/admission/defaulttolerationseconds`. Pod templates in
//! workloads do not get these; the pods created from them do.

use rkube_machinery::names::{generate_name, FastRandom};
use serde_json::{json, Map, Value};

use super::defaults::DEFAULT_MODE;
use crate::resources::util::{items_mut, str_field};

pub const SERVICE_ACCOUNT_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
pub const API_ACCESS_VOLUME_PREFIX: &str = "kube-api-access-";
/// The token lifetime the plugin asks for: an hour plus seven seconds, so
/// the kubelet can tell a projected token from a legacy one.
const TOKEN_EXPIRATION_SECONDS: i64 = 3607;
const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";
const TOLERATION_SECONDS: i64 = 300;

/// Apply the admission defaults to a new pod.
pub fn admit(pod: &mut Value) {
    let mirror = pod
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .is_some_and(|a| a.contains_key(MIRROR_POD_ANNOTATION));
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if !mirror {
        service_account(spec);
    }
    priority(spec);
    default_tolerations(spec);
}

fn service_account(spec: &mut Map<String, Value>) {
    if str_field(spec, "serviceAccountName").is_empty() {
        spec.insert("serviceAccountName".into(), "default".into());
        spec.insert("serviceAccount".into(), "default".into());
    }
    if spec
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        == Some(false)
    {
        return;
    }
    let existing = items_mut(spec, "volumes")
        .find(|v| {
            str_field(v, "name").starts_with(API_ACCESS_VOLUME_PREFIX)
                && v.contains_key("projected")
        })
        .map(|v| str_field(v, "name").to_string());
    let name = match existing {
        Some(name) => name,
        None => {
            let name = generate_name(API_ACCESS_VOLUME_PREFIX, &mut FastRandom);
            let volume = api_access_volume(&name);
            let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
            if !volumes.is_array() {
                *volumes = json!([]);
            }
            volumes.as_array_mut().expect("array").push(volume);
            name
        }
    };
    for key in ["initContainers", "containers"] {
        for c in items_mut(spec, key) {
            let mounted = c
                .get("volumeMounts")
                .and_then(Value::as_array)
                .is_some_and(|m| {
                    m.iter().any(|m| {
                        m.get("mountPath").and_then(Value::as_str)
                            == Some(SERVICE_ACCOUNT_MOUNT_PATH)
                    })
                });
            if mounted {
                continue;
            }
            let mounts = c.entry("volumeMounts").or_insert_with(|| json!([]));
            if let Some(m) = mounts.as_array_mut() {
                m.push(json!({
                    "name": name,
                    "readOnly": true,
                    "mountPath": SERVICE_ACCOUNT_MOUNT_PATH,
                }));
            }
        }
    }
}

/// The projected volume holding the token, the cluster CA and the
/// namespace, as the plugin builds it.
pub fn api_access_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "sources": [
                {"serviceAccountToken": {
                    "expirationSeconds": TOKEN_EXPIRATION_SECONDS,
                    "path": "token",
                }},
                {"configMap": {
                    "name": "kube-root-ca.crt",
                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                }},
                {"downwardAPI": {
                    "items": [{
                        "path": "namespace",
                        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                    }],
                }},
            ],
            "defaultMode": DEFAULT_MODE,
        },
    })
}

/// The built-in priority classes; others would be read from the API,
/// which a strategy cannot, so their pods keep what they were given.
fn builtin_priority(class: &str) -> Option<i64> {
    match class {
        "system-node-critical" => Some(2_000_001_000),
        "system-cluster-critical" => Some(2_000_000_000),
        _ => None,
    }
}

fn priority(spec: &mut Map<String, Value>) {
    let class = str_field(spec, "priorityClassName").to_string();
    let value = if class.is_empty() {
        Some(0)
    } else {
        builtin_priority(&class)
    };
    if let Some(value) = value {
        if spec.get("priority").is_none_or(Value::is_null) {
            spec.insert("priority".into(), value.into());
        }
        if spec.get("preemptionPolicy").is_none_or(Value::is_null) {
            spec.insert("preemptionPolicy".into(), "PreemptLowerPriority".into());
        }
    }
}

fn default_tolerations(spec: &mut Map<String, Value>) {
    let mut wanted = Vec::new();
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let tolerated = spec
            .get("tolerations")
            .and_then(Value::as_array)
            .is_some_and(|ts| {
                ts.iter().any(|t| {
                    let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
                    let tkey = t.get("key").and_then(Value::as_str).unwrap_or("");
                    (effect.is_empty() || effect == "NoExecute") && (tkey.is_empty() || tkey == key)
                })
            });
        if !tolerated {
            wanted.push(json!({
                "key": key,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": TOLERATION_SECONDS,
            }));
        }
    }
    if wanted.is_empty() {
        return;
    }
    let list = spec.entry("tolerations").or_insert_with(|| json!([]));
    if !list.is_array() {
        *list = json!([]);
    }
    list.as_array_mut().expect("array").extend(wanted);
}
