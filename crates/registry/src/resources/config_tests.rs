//! ConfigMap, Secret and Node strategy tests.

use serde_json::{json, Value};

use super::config::{decode_base64, encode_base64, ConfigMapStrategy, SecretStrategy};
use super::node::NodeStrategy;
use crate::Strategy;
use rkube_machinery::FieldError;

fn messages(errs: &[FieldError]) -> Vec<String> {
    errs.iter().map(ToString::to_string).collect()
}

#[test]
fn config_map_keys_follow_is_config_map_key() {
    let s = ConfigMapStrategy;
    let cm = json!({"metadata": {"name": "c"}, "data": {"ok.key": "v", "bad/key": "v", "..x": "v", "dup": "v"},
        "binaryData": {"dup": "AA=="}});
    let got = messages(&s.validate(&cm));
    assert_eq!(
        got,
        [
            r#"data[..x]: Invalid value: "..x": must not start with '..'"#,
            r#"data[bad/key]: Invalid value: "bad/key": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"#,
            r#"data[dup]: Invalid value: "dup": duplicate of key present in binaryData"#,
            r#"binaryData[dup]: Invalid value: "dup": duplicate of key present in data"#,
        ]
    );
}

#[test]
fn immutable_config_maps_and_secrets_keep_their_data() {
    let old = json!({"metadata": {"name": "c"}, "immutable": true, "data": {"a": "1"}});
    let mut new = old.clone();
    new["data"]["a"] = json!("2");
    assert_eq!(
        messages(&ConfigMapStrategy.validate_update(&new, &old)),
        ["data: Forbidden: field is immutable when `immutable` is set"]
    );
    let mut unset = old.clone();
    unset["immutable"] = json!(false);
    assert_eq!(
        messages(&ConfigMapStrategy.validate_update(&unset, &old)),
        ["immutable: Forbidden: field is immutable when `immutable` is set"]
    );
    // Without the flag, data may change.
    let mutable = json!({"metadata": {"name": "c"}, "data": {"a": "1"}});
    assert!(ConfigMapStrategy
        .validate_update(&new.clone(), &mutable)
        .is_empty());

    let mut old_secret =
        json!({"metadata": {"name": "s"}, "immutable": true, "data": {"a": "MQ=="}});
    SecretStrategy.prepare_for_create(&mut old_secret);
    let mut new_secret = old_secret.clone();
    new_secret["data"]["a"] = json!("Mg==");
    new_secret["type"] = json!("kubernetes.io/tls");
    assert_eq!(
        messages(&SecretStrategy.validate_update(&new_secret, &old_secret)),
        [
            "data[tls.crt]: Required value",
            "data[tls.key]: Required value",
            r#"type: Invalid value: "kubernetes.io/tls": field is immutable"#,
            "data: Forbidden: field is immutable when `immutable` is set",
        ]
    );
}

#[test]
fn secrets_default_to_opaque_and_fold_string_data() {
    let mut s = json!({"metadata": {"name": "s"}, "data": {"a": "MQ=="}, "stringData": {"b": "hello", "a": "x"}});
    SecretStrategy.prepare_for_create(&mut s);
    assert_eq!(s["type"], "Opaque");
    assert!(s.get("stringData").is_none());
    assert_eq!(s["data"], json!({"a": "eA==", "b": "aGVsbG8="}));
    assert!(SecretStrategy.validate(&s).is_empty());
}

#[test]
fn typed_secrets_need_their_keys() {
    let check = |ty: &str, data: Value, annotations: Value| {
        let s = json!({"metadata": {"name": "s", "annotations": annotations}, "type": ty, "data": data});
        messages(&SecretStrategy.validate(&s))
    };
    assert_eq!(
        check("kubernetes.io/service-account-token", json!({}), json!({})),
        ["metadata.annotations[kubernetes.io/service-account.name]: Required value"]
    );
    assert!(check(
        "kubernetes.io/service-account-token",
        json!({}),
        json!({"kubernetes.io/service-account.name": "default"})
    )
    .is_empty());
    assert_eq!(
        check("kubernetes.io/dockerconfigjson", json!({}), json!({})),
        ["data[.dockerconfigjson]: Required value"]
    );
    let bad_json = encode_base64(b"{not json");
    let got = check(
        "kubernetes.io/dockerconfigjson",
        json!({".dockerconfigjson": bad_json}),
        json!({}),
    );
    assert_eq!(got.len(), 1);
    assert!(
        got[0].starts_with(
            r#"data[.dockerconfigjson]: Invalid value: "<secret contents redacted>": "#
        ),
        "{got:?}"
    );
    let good = encode_base64(br#"{"auths":{}}"#);
    assert!(check(
        "kubernetes.io/dockerconfigjson",
        json!({".dockerconfigjson": good}),
        json!({})
    )
    .is_empty());
    assert_eq!(
        check("kubernetes.io/basic-auth", json!({}), json!({})),
        [
            "data[username]: Required value",
            "data[password]: Required value"
        ]
    );
    assert!(check(
        "kubernetes.io/basic-auth",
        json!({"password": "cA=="}),
        json!({})
    )
    .is_empty());
    assert_eq!(
        check("kubernetes.io/ssh-auth", json!({}), json!({})),
        ["data[ssh-privatekey]: Required value"]
    );
    assert_eq!(
        check("Opaque", json!({"k": "not base64!"}), json!({})),
        [r#"data[k]: Invalid value: "<secret contents redacted>": illegal base64 data"#]
    );
}

#[test]
fn base64_round_trips() {
    for input in [
        &b""[..],
        b"f",
        b"fo",
        b"foo",
        b"foob",
        b"fooba",
        b"foobar",
        &[0, 255, 128],
    ] {
        let enc = encode_base64(input);
        assert_eq!(decode_base64(&enc).as_deref(), Some(input), "{enc}");
    }
    assert_eq!(encode_base64(b"foobar"), "Zm9vYmFy");
    assert_eq!(encode_base64(b"fo"), "Zm8=");
    for bad in ["Zm9", "Zm==Zm9v", "Z===", "Zm9v!A=="] {
        assert_eq!(decode_base64(bad), None, "{bad}");
    }
}

#[test]
fn nodes_keep_pod_cidr_and_provider_once_set() {
    let s = NodeStrategy;
    let mut node = json!({"metadata": {"name": "n1"}, "spec": {"podCIDR": "10.42.0.0/24"},
        "status": {"capacity": {"cpu": "2"}}});
    s.prepare_for_create(&mut node);
    assert_eq!(node["spec"]["podCIDRs"], json!(["10.42.0.0/24"]));
    assert_eq!(node["status"]["allocatable"], json!({"cpu": "2"}));
    assert!(s.validate(&node).is_empty());
    assert!(!s.tracks_generation());

    let mut moved = node.clone();
    moved["spec"] = json!({"podCIDR": "10.42.1.0/24", "podCIDRs": ["10.42.1.0/24"]});
    moved["status"] = json!({});
    s.prepare_for_update(&mut moved, &node);
    assert_eq!(moved["status"], node["status"]);
    assert_eq!(
        messages(&s.validate_update(&moved, &node)),
        [
            r#"spec.podCIDRs: Forbidden: node updates may not change podCIDR except from "" to valid"#
        ]
    );
    // From none to one is how the IPAM controller assigns it.
    let bare = json!({"metadata": {"name": "n1"}, "spec": {}});
    assert!(s.validate_update(&node, &bare).is_empty());

    let bad = json!({"metadata": {"name": "n"}, "spec": {"podCIDRs": ["10.42.0.0"],
        "taints": [{"key": "k", "effect": "Sometimes"}]}});
    assert_eq!(
        messages(&s.validate(&bad)),
        [
            r#"spec.podCIDRs[0]: Invalid value: "10.42.0.0": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"#,
            r#"spec.taints[0].effect: Unsupported value: "Sometimes": supported values: "NoExecute", "NoSchedule", "PreferNoSchedule""#,
        ]
    );
}
