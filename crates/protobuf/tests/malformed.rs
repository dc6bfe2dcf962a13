//! Bad input gives clear errors and never panics: wrong prefix, unknown
//! kinds, wrong wire types, truncation at every byte, random corruption and
//! hostile nesting.

mod common;

use common::{envelope, meta};
use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use prost::Message;
use rkube_protobuf::{decode, Error, WireError, MAX_DEPTH};

fn deployment_body() -> Vec<u8> {
    let deployment = apps::Deployment {
        metadata: meta("web", "default"),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(3),
            template: Some(core::PodTemplateSpec {
                spec: Some(core::PodSpec {
                    containers: vec![core::Container {
                        name: Some("c".into()),
                        image: Some("busybox".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    };
    envelope("apps/v1", "Deployment", &deployment)
}

/// Envelope around hand-made raw bytes.
fn raw_envelope(api_version: &str, kind: &str, raw: Vec<u8>, encoding: &str) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        content_encoding: Some(encoding.into()),
        content_type: None,
    };
    let mut body = b"k8s\0".to_vec();
    body.extend(unknown.encode_to_vec());
    body
}

#[test]
fn clear_errors() {
    for body in [&b""[..], b"{}", b"k8s", b"K8S\0"] {
        assert!(matches!(decode(body), Err(Error::BadMagic)), "{body:?}");
    }
    assert!(!rkube_protobuf::is_protobuf(b"{\"kind\":\"Pod\"}"));
    assert!(matches!(
        decode(&raw_envelope("v1", "", vec![], "")),
        Err(Error::MissingKind)
    ));
    let err = decode(&raw_envelope("v1", "Nope", vec![], "")).unwrap_err();
    assert!(matches!(err, Error::UnknownKind { .. }));
    assert_eq!(
        err.to_string(),
        "no protobuf message is known for apiVersion \"v1\", kind \"Nope\""
    );
    assert!(matches!(
        decode(&raw_envelope("example.com/v1", "Widget", vec![], "")),
        Err(Error::UnknownKind { .. })
    ));
    assert!(matches!(
        decode(&raw_envelope("v1", "ConfigMap", vec![], "gzip")),
        Err(Error::ContentEncoding(e)) if e == "gzip"
    ));
    // ConfigMap.data (field 2, a map) sent as a varint.
    let err = decode(&raw_envelope("v1", "ConfigMap", vec![0x10, 0x01], "")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "decoding api.core.v1.ConfigMap.data: wire type varint where length-delimited was expected"
    );
    // A record whose length runs past the end.
    let err = decode(&raw_envelope("v1", "ConfigMap", vec![0x12, 0x09, 0x0a], "")).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Malformed {
                source: WireError::Length(9),
                ..
            }
        ),
        "{err}"
    );
    // Embedded JSON that is not JSON (ControllerRevision.data is a RawExtension).
    let raw_extension = [0x0a, 0x01, b'{'];
    let mut revision = vec![0x12, raw_extension.len() as u8];
    revision.extend(raw_extension);
    let err = decode(&raw_envelope("apps/v1", "ControllerRevision", revision, "")).unwrap_err();
    assert!(matches!(err, Error::EmbeddedJson { .. }), "{err}");
}

#[test]
fn empty_raw_is_an_empty_object() {
    assert_eq!(
        decode(&raw_envelope("v1", "ConfigMap", vec![], "")).unwrap(),
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap"})
    );
}

#[test]
fn every_truncation_inside_the_object_fails() {
    let body = deployment_body();
    let full = decode(&body).unwrap();
    // Where the raw record starts: after the prefix and the typeMeta record.
    let type_meta_only = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some("apps/v1".into()),
            kind: Some("Deployment".into()),
        }),
        ..Default::default()
    };
    let raw_start = 4 + type_meta_only.encoded_len();
    let raw_end = body.len() - 4; // then two empty strings, 2 bytes each
    for len in 0..body.len() {
        let result = decode(&body[..len]);
        if len > raw_start && len < raw_end {
            assert!(result.is_err(), "prefix of {len} bytes decoded");
        } else if len >= raw_end && (len - raw_end).is_multiple_of(2) {
            // Cut between the trailing (empty) records: still whole.
            assert_eq!(result.unwrap(), full);
        } else if len >= raw_end {
            assert!(result.is_err(), "prefix of {len} bytes decoded");
        }
    }
}

/// xorshift64: a fixed-seed generator so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_corruption_never_panics() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let base = deployment_body();
    let mut errors = 0;
    for _ in 0..3000 {
        let mut body = base.clone();
        for _ in 0..1 + rng.below(4) {
            // Keep the prefix so the decoder gets past the magic check.
            let at = 4 + rng.below(body.len() - 4);
            body[at] = rng.next() as u8;
        }
        errors += usize::from(decode(&body).is_err());
    }
    assert!(errors > 100, "only {errors} corrupt bodies were rejected");
    for _ in 0..3000 {
        let mut body = b"k8s\0".to_vec();
        body.extend((0..rng.below(64)).map(|_| rng.next() as u8));
        let _ = decode(&body);
    }
    // Random raw bytes under every kind of a few interesting types.
    for (api_version, kind) in [
        ("v1", "Pod"),
        ("apps/v1", "Deployment"),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
        ("v1", "Event"),
    ] {
        for _ in 0..500 {
            let raw: Vec<u8> = (0..rng.below(48)).map(|_| rng.next() as u8).collect();
            let _ = decode(&raw_envelope(api_version, kind, raw, ""));
        }
    }
}

/// `JSONSchemaProps.not` (field 28) nested `levels` deep.
fn nested_schema(levels: usize) -> Vec<u8> {
    let mut inner = Vec::new();
    for _ in 0..levels {
        let mut outer = vec![0xe2, 0x01];
        let mut len = inner.len();
        loop {
            let byte = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                outer.push(byte);
                break;
            }
            outer.push(byte | 0x80);
        }
        outer.extend(inner);
        inner = outer;
    }
    inner
}

#[test]
fn hostile_nesting_is_refused_within_a_small_stack() {
    // Decode on a 1 MiB stack, half of a tokio worker's, to show the depth
    // limit keeps recursion well inside it.
    let handle = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(|| {
            let ok = decode(&raw_envelope(
                "apiextensions.k8s.io/v1",
                "JSONSchemaProps",
                nested_schema(MAX_DEPTH - 2),
                "",
            ));
            let deep = decode(&raw_envelope(
                "apiextensions.k8s.io/v1",
                "JSONSchemaProps",
                nested_schema(MAX_DEPTH + 50),
                "",
            ));
            (ok.map(|v| v.to_string().matches("\"not\"").count()), deep)
        })
        .unwrap();
    let (ok, deep) = handle.join().unwrap();
    assert_eq!(ok.unwrap(), MAX_DEPTH - 2);
    assert!(matches!(deep, Err(Error::TooDeep)), "{deep:?}");
}
