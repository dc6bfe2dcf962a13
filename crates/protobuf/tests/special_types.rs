//! Types with a custom JSON form: CRD schemas (JSON, JSONSchemaPropsOr*),
//! RawExtension (embedded JSON or an embedded protobuf object), MicroTime,
//! FieldsV1 in managedFields.

mod common;

use common::{envelope, meta};
use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::core::v1 as core;
use k8s_pb::api::events::v1 as events;
use k8s_pb::apiextensions_apiserver::pkg::apis::apiextensions::v1 as ext;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as metav1;
use k8s_pb::apimachinery::pkg::runtime::RawExtension;
use serde_json::json;
use std::collections::BTreeMap;

fn json_value(text: &str) -> ext::Json {
    ext::Json {
        raw: Some(text.as_bytes().to_vec()),
    }
}

fn typed(t: &str) -> ext::JsonSchemaProps {
    ext::JsonSchemaProps {
        r#type: Some(t.into()),
        // Go writes these non-pointer fields even when zero.
        nullable: Some(false),
        unique_items: Some(false),
        format: Some(String::new()),
        ..Default::default()
    }
}

#[test]
fn custom_resource_definition_schema() {
    let replicas = ext::JsonSchemaProps {
        minimum: Some(0.0),
        maximum: Some(10.5),
        default: Some(json_value("1")),
        ..typed("integer")
    };
    let tags = ext::JsonSchemaProps {
        items: Some(Box::new(ext::JsonSchemaPropsOrArray {
            schema: Some(Box::new(typed("string"))),
            j_son_schemas: vec![],
        })),
        ..typed("array")
    };
    let mode = ext::JsonSchemaProps {
        r#enum: vec![json_value("\"a\""), json_value("\"b\"")],
        ..typed("string")
    };
    let spec = ext::JsonSchemaProps {
        properties: BTreeMap::from([
            ("replicas".to_string(), replicas),
            ("tags".to_string(), tags),
            ("mode".to_string(), mode),
        ]),
        required: vec!["replicas".into()],
        additional_properties: Some(Box::new(ext::JsonSchemaPropsOrBool {
            allows: Some(false),
            schema: None,
        })),
        x_kubernetes_preserve_unknown_fields: Some(true),
        ..typed("object")
    };
    let labels = ext::JsonSchemaProps {
        additional_properties: Some(Box::new(ext::JsonSchemaPropsOrBool {
            allows: Some(true),
            schema: Some(Box::new(typed("string"))),
        })),
        ..typed("object")
    };
    let root = ext::JsonSchemaProps {
        properties: BTreeMap::from([("spec".to_string(), spec), ("labels".to_string(), labels)]),
        ..typed("object")
    };
    let crd = ext::CustomResourceDefinition {
        metadata: meta("widgets.example.com", ""),
        spec: Some(ext::CustomResourceDefinitionSpec {
            group: Some("example.com".into()),
            names: Some(ext::CustomResourceDefinitionNames {
                plural: Some("widgets".into()),
                singular: Some("widget".into()),
                short_names: vec!["wd".into()],
                kind: Some("Widget".into()),
                list_kind: Some("WidgetList".into()),
                categories: vec![],
            }),
            scope: Some("Namespaced".into()),
            versions: vec![ext::CustomResourceDefinitionVersion {
                name: Some("v1".into()),
                served: Some(true),
                storage: Some(true),
                deprecated: Some(false),
                schema: Some(ext::CustomResourceValidation {
                    open_apiv3_schema: Some(root),
                }),
                subresources: Some(ext::CustomResourceSubresources {
                    status: Some(ext::CustomResourceSubresourceStatus {}),
                    scale: None,
                }),
                ..Default::default()
            }],
            conversion: None,
            preserve_unknown_fields: Some(false),
        }),
        status: None,
    };
    let decoded = common::decode_checked(&envelope(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        &crd,
    ));
    assert_eq!(
        decoded["spec"],
        json!({
            "group": "example.com",
            "names": {"plural": "widgets", "singular": "widget", "shortNames": ["wd"],
                      "kind": "Widget", "listKind": "WidgetList"},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "spec": {
                            "type": "object",
                            "required": ["replicas"],
                            "additionalProperties": false,
                            "x-kubernetes-preserve-unknown-fields": true,
                            "properties": {
                                "replicas": {"type": "integer", "minimum": 0, "maximum": 10.5, "default": 1},
                                "tags": {"type": "array", "items": {"type": "string"}},
                                "mode": {"type": "string", "enum": ["a", "b"]}
                            }
                        }
                    }
                }},
                "subresources": {"status": {}}
            }]
        })
    );
}

#[test]
fn raw_extension_holds_json_or_an_embedded_protobuf_object() {
    let revision = apps::ControllerRevision {
        metadata: meta("web-1", "default"),
        data: Some(RawExtension {
            raw: Some(br#"{"spec":{"template":{"x":1}}}"#.to_vec()),
        }),
        revision: Some(1),
    };
    let decoded = common::decode_checked(&envelope("apps/v1", "ControllerRevision", &revision));
    assert_eq!(decoded["data"], json!({"spec": {"template": {"x": 1}}}));
    assert_eq!(decoded["revision"], 1);

    let inner = core::ConfigMap {
        metadata: meta("inner", ""),
        data: BTreeMap::from([("k".to_string(), "v".to_string())]),
        ..Default::default()
    };
    let revision = apps::ControllerRevision {
        metadata: meta("web-2", "default"),
        data: Some(RawExtension {
            raw: Some(envelope("v1", "ConfigMap", &inner)),
        }),
        revision: Some(2),
    };
    let decoded = common::decode_checked(&envelope("apps/v1", "ControllerRevision", &revision));
    assert_eq!(
        decoded["data"],
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "inner", "creationTimestamp": null}, "data": {"k": "v"}})
    );
}

#[test]
fn micro_time_and_managed_fields() {
    let mut metadata = meta("e1", "default").unwrap();
    metadata.managed_fields = vec![metav1::ManagedFieldsEntry {
        manager: Some("kubectl".into()),
        operation: Some("Update".into()),
        api_version: Some("events.k8s.io/v1".into()),
        time: Some(metav1::Time {
            seconds: Some(1_795_322_828),
            nanos: Some(0),
        }),
        fields_type: Some("FieldsV1".into()),
        fields_v1: Some(metav1::FieldsV1 {
            raw: Some(br#"{"f:note":{}}"#.to_vec()),
        }),
        subresource: Some(String::new()),
    }];
    let event = events::Event {
        metadata: Some(metadata),
        event_time: Some(metav1::MicroTime {
            seconds: Some(1_795_322_828),
            nanos: Some(123_456_789),
        }),
        reporting_controller: Some("rkube/test".into()),
        reporting_instance: Some("node-1".into()),
        action: Some("Pulled".into()),
        reason: Some("Pulled".into()),
        regarding: Some(core::ObjectReference {
            kind: Some("Pod".into()),
            name: Some("web-1".into()),
            ..Default::default()
        }),
        note: Some("pulled image".into()),
        r#type: Some("Normal".into()),
        deprecated_first_timestamp: Some(metav1::Time::default()),
        deprecated_count: Some(0),
        ..Default::default()
    };
    let decoded = common::decode_checked(&envelope("events.k8s.io/v1", "Event", &event));
    assert_eq!(
        decoded,
        json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {
                "name": "e1", "namespace": "default", "creationTimestamp": null,
                "managedFields": [{
                    "manager": "kubectl", "operation": "Update", "apiVersion": "events.k8s.io/v1",
                    "time": "2026-11-22T04:47:08Z", "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:note": {}}
                }]
            },
            "eventTime": "2026-11-22T04:47:08.123456Z",
            "reportingController": "rkube/test",
            "reportingInstance": "node-1",
            "action": "Pulled",
            "reason": "Pulled",
            "regarding": {"kind": "Pod", "name": "web-1"},
            "note": "pulled image",
            "type": "Normal",
            "deprecatedFirstTimestamp": null
        })
    );
}
