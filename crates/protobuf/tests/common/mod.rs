//! Helpers shared by the integration tests: wrapping a k8s-pb message in the
//! `k8s\0` + `runtime.Unknown` envelope the way client-go's protobuf
//! serializer does.

use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use prost::Message;

/// `k8s\0` + Unknown{typeMeta, raw, contentEncoding: "", contentType: ""};
/// Go writes the two empty strings because they are non-pointer fields.
#[allow(dead_code)] // not every test binary uses it
pub fn envelope<M: Message>(api_version: &str, kind: &str, object: &M) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(object.encode_to_vec()),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut body = b"k8s\0".to_vec();
    body.extend(unknown.encode_to_vec());
    body
}

/// ObjectMeta as a Go client fills it: the non-pointer strings written even
/// when empty and the zero creationTimestamp as an empty message.
#[allow(dead_code)] // not every test binary uses it
pub fn meta(name: &str, namespace: &str) -> Option<meta::ObjectMeta> {
    Some(meta::ObjectMeta {
        name: Some(name.into()),
        generate_name: Some(String::new()),
        namespace: Some(namespace.into()),
        self_link: Some(String::new()),
        uid: Some(String::new()),
        resource_version: Some(String::new()),
        generation: Some(0),
        creation_timestamp: Some(meta::Time::default()),
        ..Default::default()
    })
}

#[allow(dead_code)] // not every test binary uses it
pub fn labels(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Decodes and checks that the result deserializes as its k8s-openapi type
/// (kinds outside the catalog, such as TokenRequest, only decode).
#[allow(dead_code)] // not every test binary uses it
pub fn decode_checked(body: &[u8]) -> serde_json::Value {
    let object = rkube_protobuf::decode(body).unwrap();
    let api_version = object["apiVersion"].as_str().unwrap();
    let kind = object["kind"].as_str().unwrap();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    if let Some(resource) = rkube_api::catalog::by_kind(group, version, kind) {
        resource
            .decode_check(&object)
            .unwrap_or_else(|e| panic!("{kind} does not decode as its type: {e}: {object}"));
    }
    object
}
