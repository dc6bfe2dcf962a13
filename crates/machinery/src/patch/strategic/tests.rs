//! Table tests written from upstream's documented semantics (the
//! strategic-merge-patch design doc and `kubectl patch` docs).

use super::*;
use serde_json::json;

/// The patch metadata of the fields these tests touch, as upstream tags
/// them on PodSpec / ObjectMeta.
fn pod_schema() -> SchemaTable {
    SchemaTable::new()
        .merge_key("spec.containers", "name")
        .merge_key("spec.initContainers", "name")
        .merge_key("spec.containers.ports", "containerPort")
        .merge_key("spec.containers.env", "name")
        .merge_key("spec.containers.volumeMounts", "mountPath")
        .merge_key("spec.volumes", "name")
        .retain_keys("spec.volumes")
        .set_list("metadata.finalizers")
        .merge_key("metadata.ownerReferences", "uid")
}

fn deployment_schema() -> SchemaTable {
    SchemaTable::new()
        .mount("spec.template", &pod_schema())
        .retain_keys("spec.strategy")
}

fn pod() -> Value {
    json!({
        "metadata": {"name": "p", "labels": {"app": "web", "tier": "front"},
                     "finalizers": ["a.io/x", "b.io/y"]},
        "spec": {
            "containers": [
                {"name": "web", "image": "nginx:1",
                 "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443}],
                 "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                {"name": "sidecar", "image": "envoy:1"}
            ],
            "tolerations": [{"key": "k1", "operator": "Exists"}],
            "volumes": [{"name": "data", "emptyDir": {}}]
        }
    })
}

fn patched(patch: Value) -> Value {
    apply(&pod(), &patch, &pod_schema()).unwrap_or_else(|e| panic!("{patch}: {e}"))
}

fn failed(patch: Value) -> Error {
    apply(&pod(), &patch, &pod_schema()).unwrap_err()
}

#[test]
fn containers_merge_by_name() {
    let out = patched(json!({"spec": {"containers": [{"name": "sidecar", "image": "envoy:2"}]}}));
    assert_eq!(
        out["spec"]["containers"],
        json!([
            pod()["spec"]["containers"][0],
            {"name": "sidecar", "image": "envoy:2"}
        ])
    );
}

#[test]
fn new_container_goes_first_without_an_order_directive() {
    // Upstream interleaves by live positions; an item the live list does
    // not know takes the first free slot.
    let out = patched(json!({"spec": {"containers": [{"name": "log", "image": "busybox"}]}}));
    let names: Vec<&str> = out["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["log", "web", "sidecar"]);
}

#[test]
fn set_element_order_fixes_the_order() {
    let out = patched(json!({"spec": {
        "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "web"}, {"name": "log"}],
        "containers": [{"name": "log", "image": "busybox"}]
    }}));
    let names: Vec<&str> = out["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sidecar", "web", "log"]);
    assert_eq!(out["spec"]["containers"][1], pod()["spec"]["containers"][0]);
}

#[test]
fn ports_merge_by_container_port_and_env_by_name() {
    let out = patched(json!({"spec": {"containers": [{
        "name": "web",
        "ports": [{"containerPort": 80.0, "name": "web"}, {"containerPort": 8080}],
        "env": [{"name": "B", "value": "3"}, {"name": "A", "$patch": "delete"}]
    }]}}));
    let web = &out["spec"]["containers"][0];
    assert_eq!(
        web["ports"],
        json!([{"containerPort": 80.0, "name": "web"}, {"containerPort": 8080}, {"containerPort": 443}])
    );
    assert_eq!(web["env"], json!([{"name": "B", "value": "3"}]));
    assert_eq!(web["image"], "nginx:1");
}

#[test]
fn lists_without_metadata_are_replaced() {
    let out = patched(
        json!({"spec": {"tolerations": [{"key": "k2", "operator": "Equal", "value": "v"}]}}),
    );
    assert_eq!(
        out["spec"]["tolerations"],
        json!([{"key": "k2", "operator": "Equal", "value": "v"}])
    );
    let out = apply(
        &pod(),
        &json!({"spec": {"containers": [{"name": "only"}]}}),
        &NoSchema,
    )
    .unwrap();
    assert_eq!(out["spec"]["containers"], json!([{"name": "only"}]));
}

#[test]
fn primitive_lists_merge_as_sets() {
    let out = patched(json!({"metadata": {"finalizers": ["c.io/z", "a.io/x"]}}));
    assert_eq!(
        out["metadata"]["finalizers"],
        json!(["c.io/z", "a.io/x", "b.io/y"])
    );
    let out = patched(json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a.io/x"]}}));
    assert_eq!(out["metadata"]["finalizers"], json!(["b.io/y"]));
    let out = patched(json!({"metadata": {
        "$setElementOrder/finalizers": ["b.io/y", "c.io/z"],
        "$deleteFromPrimitiveList/finalizers": ["a.io/x"],
        "finalizers": ["c.io/z"]
    }}));
    assert_eq!(out["metadata"]["finalizers"], json!(["b.io/y", "c.io/z"]));
    // Deleting from a list the object does not have changes nothing.
    let out = patched(json!({"spec": {"$deleteFromPrimitiveList/args": ["x"]}}));
    assert!(out["spec"].get("args").is_none());
}

#[test]
fn null_deletes_and_maps_merge() {
    let out = patched(
        json!({"metadata": {"labels": {"tier": null, "env": "prod"}},
                             "spec": {"tolerations": null}}),
    );
    assert_eq!(
        out["metadata"]["labels"],
        json!({"app": "web", "env": "prod"})
    );
    assert!(out["spec"].get("tolerations").is_none());
    // Deleting what is not there is fine.
    let out = patched(json!({"spec": {"nodeName": null}}));
    assert_eq!(out, pod());
}

#[test]
fn patch_replace_and_delete_on_maps() {
    let out = patched(json!({"metadata": {"labels": {"$patch": "replace", "only": "this"}}}));
    assert_eq!(out["metadata"]["labels"], json!({"only": "this"}));
    let out = patched(json!({"metadata": {"labels": {"$patch": "delete"}}}));
    assert_eq!(out["metadata"]["labels"], json!({}));
    let out = patched(json!({"metadata": {"labels": {"$patch": "merge", "x": "y"}}}));
    assert_eq!(out["metadata"]["labels"]["x"], "y");
    assert_eq!(out["metadata"]["labels"]["app"], "web");
    let out = apply(
        &pod(),
        &json!({"$patch": "replace", "kind": "Pod"}),
        &pod_schema(),
    )
    .unwrap();
    assert_eq!(out, json!({"kind": "Pod"}));
}

#[test]
fn patch_replace_in_a_list_replaces_it() {
    let out = patched(json!({"spec": {"containers": [
        {"name": "new", "image": "x"},
        {"$patch": "replace"}
    ]}}));
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "new", "image": "x"}])
    );
    let out = patched(json!({"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}));
    assert_eq!(out["spec"]["containers"].as_array().unwrap().len(), 1);
    assert_eq!(out["spec"]["containers"][0]["name"], "web");
}

#[test]
fn retain_keys_drops_unlisted_fields() {
    let deploy = json!({"spec": {"strategy": {"type": "RollingUpdate",
                                              "rollingUpdate": {"maxSurge": 1}}}});
    let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate",
                                             "rollingUpdate": null}}});
    let out = apply(&deploy, &patch, &deployment_schema()).unwrap();
    assert_eq!(out, json!({"spec": {"strategy": {"type": "Recreate"}}}));
    // A volume switching source keeps only the listed keys.
    let out = patched(json!({"spec": {"volumes": [
        {"name": "data", "$retainKeys": ["name", "hostPath"], "hostPath": {"path": "/d"}}
    ]}}));
    assert_eq!(
        out["spec"]["volumes"],
        json!([{"name": "data", "hostPath": {"path": "/d"}}])
    );
    let bad =
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 2}}}});
    assert_eq!(
        apply(&deploy, &bad, &deployment_schema()).unwrap_err(),
        Error::BadRetainKeys
    );
    let bad = json!({"spec": {"strategy": {"$retainKeys": "type"}}});
    assert_eq!(
        apply(&deploy, &bad, &deployment_schema()).unwrap_err(),
        Error::BadRetainKeys
    );
}

#[test]
fn kubectl_apply_shaped_patch_on_a_deployment() {
    let live = json!({"metadata": {"name": "web", "annotations": {"x": "1"}},
        "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
            "containers": [{"name": "web", "image": "nginx:1",
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}]}}}});
    // What kubectl apply sends after the image changed and env B was removed.
    let patch = json!({"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "web"}],
            "containers": [{"$setElementOrder/env": [{"name": "A"}],
                            "env": [{"$patch": "delete", "name": "B"}],
                            "image": "nginx:2", "name": "web"}]}}}});
    let out = apply(&live, &patch, &deployment_schema()).unwrap();
    assert_eq!(
        out,
        json!({"metadata": {"name": "web", "annotations": {"x": "1",
                  "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
               "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                  "containers": [{"name": "web", "image": "nginx:2",
                                  "env": [{"name": "A", "value": "1"}]}]}}}})
    );
}

#[test]
fn new_values_are_cleaned_of_directives_and_nulls() {
    let out = patched(json!({"spec": {
        "initContainers": [{"name": "init", "image": "busybox", "args": null},
                           {"name": "gone", "$patch": "delete"}],
        "securityContext": {"runAsUser": 1000, "fsGroup": null, "sysctls": {"$patch": "replace"}},
        "$setElementOrder/readinessGates": [{"conditionType": "x"}]
    }}));
    assert_eq!(
        out["spec"]["initContainers"],
        json!([{"name": "init", "image": "busybox"}])
    );
    assert_eq!(
        out["spec"]["securityContext"],
        json!({"runAsUser": 1000, "sysctls": {}})
    );
    assert!(out["spec"].get("readinessGates").is_none());
    // A value of another type is replaced, and cleaned too.
    let out = patched(json!({"metadata": {"labels": [{"a": null, "b": 1}]}}));
    assert_eq!(out["metadata"]["labels"], json!([{"b": 1}]));
    let out = patched(json!({"metadata": {"name": {"first": "p", "x": null}}}));
    assert_eq!(out["metadata"]["name"], json!({"first": "p"}));
}

#[test]
fn replace_strategy_objects_are_not_merged() {
    let schema = pod_schema().replace("spec.securityContext");
    let live = json!({"spec": {"securityContext": {"runAsUser": 1, "fsGroup": 2}}});
    let out = apply(
        &live,
        &json!({"spec": {"securityContext": {"runAsUser": 3}}}),
        &schema,
    )
    .unwrap();
    assert_eq!(out, json!({"spec": {"securityContext": {"runAsUser": 3}}}));
}

#[test]
fn errors() {
    assert_eq!(
        failed(json!({"spec": {"containers": [{"image": "x"}]}})).to_string(),
        r#"map: {"image":"x"} does not contain declared merge key: name"#
    );
    assert_eq!(
        failed(json!({"spec": {"containers": [{"$patch": "delete", "image": "x"}]}})).to_string(),
        r#"map: {"$patch":"delete","image":"x"} does not contain declared merge key: name"#
    );
    assert_eq!(
        failed(json!({"spec": {"containers": [{"name": "web", "$patch": "merge"}]}})),
        Error::ListMergeDirective
    );
    assert_eq!(
        failed(json!({"metadata": {"labels": {"$patch": "frob"}}})).to_string(),
        r#"unknown patch type: frob in map: {"$patch":"frob"}"#
    );
    assert!(matches!(
        failed(json!({"spec": {"containers": [{"name": "x", "$patch": 1}]}})),
        Error::UnknownDirective { .. }
    ));
    assert_eq!(
        failed(json!({"metadata": {"finalizers": [["a"]]}})),
        Error::ListOfLists
    );
    assert!(matches!(
        failed(json!({"metadata": {"finalizers": [1]}})),
        Error::MixedList(_)
    ));
    assert_eq!(
        apply(
            &json!({"spec": {}}),
            &json!({"spec": {"args": [{"a": 1}]}}),
            &SchemaTable::new().set_list("spec.args")
        )
        .unwrap_err(),
        Error::ObjectsWithoutMergeKey {
            field: "spec.args".into()
        }
    );
    assert_eq!(
        failed(json!({"spec": {"$setElementOrder/containers": {"name": "web"}}})),
        Error::BadSetElementOrder
    );
    assert_eq!(
        failed(json!({"spec": {"$setElementOrder/": []}})),
        Error::BadSetElementOrder
    );
    assert_eq!(
        failed(json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a.io/x"}})),
        Error::BadPrimitiveList
    );
    let mismatch = failed(json!({"spec": {
        "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
        "containers": [{"name": "sidecar", "image": "a"}, {"name": "web", "image": "b"}]
    }}));
    assert!(
        matches!(mismatch, Error::OrderMismatch { .. }),
        "{mismatch}"
    );
    assert_eq!(
        apply(&json!([]), &json!({}), &NoSchema).unwrap_err(),
        Error::NotAnObject
    );
    assert_eq!(
        apply(&json!({}), &json!("x"), &NoSchema).unwrap_err(),
        Error::NotAnObject
    );
    assert!(Error::NotAnObject.is_bad_request());
    assert!(!Error::ListOfLists.is_bad_request());
}

#[test]
fn empty_patch_changes_nothing() {
    assert_eq!(patched(json!({})), pod());
    assert_eq!(
        patched(json!({"spec": {"containers": []}}))["spec"]["containers"],
        pod()["spec"]["containers"]
    );
}

#[test]
fn three_way_patch_keeps_server_only_items_in_place() {
    // Live has an injected sidecar the user never applied; the user drops
    // the "log" container from the manifest.
    let live = json!({"spec": {"containers": [
        {"name": "web", "image": "nginx:1"},
        {"name": "proxy", "image": "envoy"},
        {"name": "log", "image": "busybox"}
    ]}});
    let patch = json!({"spec": {
        "$setElementOrder/containers": [{"name": "web"}],
        "containers": [{"name": "log", "$patch": "delete"}]
    }});
    let out = apply(&live, &patch, &pod_schema()).unwrap();
    assert_eq!(
        out,
        json!({"spec": {"containers": [
            {"name": "web", "image": "nginx:1"},
            {"name": "proxy", "image": "envoy"}
        ]}})
    );
    // A reorder in the manifest reorders the applied items; the server-only
    // one goes before any applied item it preceded in the live list.
    let patch = json!({"spec": {
        "$setElementOrder/containers": [{"name": "log"}, {"name": "web"}]
    }});
    let out = apply(&live, &patch, &pod_schema()).unwrap();
    let names: Vec<&str> = out["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["proxy", "log", "web"]);
}

#[test]
fn nested_lists_inside_list_elements_merge_with_their_own_keys() {
    let live = json!({"spec": {"containers": [{"name": "web", "volumeMounts": [
        {"mountPath": "/a", "name": "va"}, {"mountPath": "/b", "name": "vb"}
    ]}]}});
    let patch = json!({"spec": {"containers": [{"name": "web", "volumeMounts": [
        {"mountPath": "/b", "readOnly": true}, {"mountPath": "/a", "$patch": "delete"}
    ]}]}});
    let out = apply(&live, &patch, &pod_schema()).unwrap();
    assert_eq!(
        out["spec"]["containers"][0]["volumeMounts"],
        json!([{"mountPath": "/b", "name": "vb", "readOnly": true}])
    );
}

#[test]
fn set_lists_deduplicate_and_keep_numbers_equal_by_value() {
    let schema = SchemaTable::new().set_list("ints");
    let out = apply(
        &json!({"ints": [1, 2]}),
        &json!({"ints": [2.0, 3, 3]}),
        &schema,
    )
    .unwrap();
    assert_eq!(out, json!({"ints": [1, 2, 3]}));
}
