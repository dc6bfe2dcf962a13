use super::*;
use serde_json::json;

/// One decoded field: number and either a varint or a length-delimited
/// payload. An independent reader, so the tests do not trust the writer.
#[derive(Debug)]
enum Field<'a> {
    Varint(u32, u64),
    Bytes(u32, &'a [u8]),
}

fn read_varint(buf: &[u8], pos: &mut usize) -> u64 {
    let mut value = 0u64;
    let mut shift = 0;
    loop {
        let byte = buf[*pos];
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return value;
        }
        shift += 7;
    }
}

fn fields(buf: &[u8]) -> Vec<Field<'_>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = read_varint(buf, &mut pos);
        let number = (key >> 3) as u32;
        match key & 7 {
            0 => out.push(Field::Varint(number, read_varint(buf, &mut pos))),
            2 => {
                let len = read_varint(buf, &mut pos) as usize;
                out.push(Field::Bytes(number, &buf[pos..pos + len]));
                pos += len;
            }
            other => panic!("unexpected wire type {other}"),
        }
    }
    out
}

fn all(buf: &[u8], number: u32) -> Vec<&[u8]> {
    fields(buf)
        .into_iter()
        .filter_map(|f| match f {
            Field::Bytes(n, b) if n == number => Some(b),
            _ => None,
        })
        .collect()
}

fn one(buf: &[u8], number: u32) -> &[u8] {
    let found = all(buf, number);
    assert_eq!(found.len(), 1, "field {number}");
    found[0]
}

fn string(buf: &[u8], number: u32) -> String {
    String::from_utf8(one(buf, number).to_vec()).unwrap()
}

/// The value of the `NamedX` entry called `name` among repeated field `number`.
fn named<'a>(buf: &'a [u8], number: u32, name: &str) -> Option<&'a [u8]> {
    all(buf, number)
        .into_iter()
        .find(|entry| string(entry, 1) == name)
        .map(|entry| one(entry, 2))
}

#[test]
fn varints_and_defaults() {
    let mut m = Message::default();
    m.varint(300);
    assert_eq!(m.0, [0xac, 0x02]);
    let mut m = Message::default();
    m.string(1, "");
    m.boolean(2, Some(&json!(false)));
    assert!(m.0.is_empty(), "proto3 defaults are not written");
    m.boolean(2, Some(&json!(true)));
    assert_eq!(m.0, [0x10, 0x01]);
    assert!(matches!(fields(&m.0)[..], [Field::Varint(2, 1)]));
}

#[test]
fn small_document_round_trips_through_the_reader() {
    let doc = json!({
        "swagger": "2.0",
        "info": {"title": "T", "version": "v1"},
        "definitions": {
            "a.B": {
                "type": "object",
                "required": ["x"],
                "properties": {"x": {"type": "string", "description": "the x"}},
                "x-kubernetes-group-version-kind": [{"group": "", "kind": "B", "version": "v1"}],
            }
        },
    });
    let bytes = document(&doc);
    assert_eq!(string(&bytes, 1), "2.0");
    assert_eq!(string(one(&bytes, 2), 2), "v1");
    let b = named(one(&bytes, 9), 1, "a.B").unwrap();
    assert_eq!(string(one(b, 22), 1), "object");
    assert_eq!(string(b, 19), "x");
    let x = named(one(b, 25), 1, "x").unwrap();
    assert_eq!(string(x, 4), "the x");
    let gvk = named(b, 31, "x-kubernetes-group-version-kind").unwrap();
    let yaml: serde_json::Value = serde_json::from_slice(one(gvk, 2)).unwrap();
    assert_eq!(yaml[0]["kind"], "B");
}

#[test]
fn served_document_has_kinds_and_field_validation() {
    let bytes = crate::v2_protobuf();
    let definitions = one(&bytes, 9);
    let pod = named(definitions, 1, "io.k8s.api.core.v1.Pod").expect("Pod definition");
    assert!(named(pod, 31, "x-kubernetes-group-version-kind").is_some());
    let containers = named(
        one(
            named(definitions, 1, "io.k8s.api.core.v1.PodSpec").unwrap(),
            25,
        ),
        1,
        "containers",
    )
    .unwrap();
    let merge_key = named(containers, 31, "x-kubernetes-patch-merge-key").unwrap();
    assert_eq!(one(merge_key, 2), br#""name""#);
    // items → ItemsItem.schema[0].$ref
    assert_eq!(
        string(one(one(containers, 23), 1), 1),
        "#/definitions/io.k8s.api.core.v1.Container"
    );

    let paths = one(&bytes, 8);
    let item = named(
        paths,
        2,
        "/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
    )
    .unwrap();
    let patch = one(item, 8);
    assert_eq!(string(patch, 5), "patchAppsV1NamespacedDeployment");
    let query_names: Vec<String> = all(patch, 8)
        .into_iter()
        .filter_map(|p| {
            let non_body = all(one(p, 1), 2);
            let query = all(non_body.first()?, 3);
            Some(string(query.first()?, 4))
        })
        .collect();
    assert!(
        query_names.iter().any(|n| n == "fieldValidation"),
        "{query_names:?}"
    );
    let gvk = named(patch, 13, "x-kubernetes-group-version-kind").unwrap();
    let gvk: serde_json::Value = serde_json::from_slice(one(gvk, 2)).unwrap();
    assert_eq!(
        gvk,
        json!({"group": "apps", "kind": "Deployment", "version": "v1"})
    );
}
