//! Scenario tests: sequences of applies and updates by several managers,
//! checked against what kube-apiserver answers for the same sequence.

use chrono::DateTime;
use serde_json::{json, Value};

use super::*;

fn schema() -> ApplyTable<'static> {
    ApplyTable::new()
        .list_map("spec.template.spec.containers", &["name"])
        .list_map(
            "spec.template.spec.containers.ports",
            &["containerPort", "protocol"],
        )
        .default_key(
            "spec.template.spec.containers.ports",
            "protocol",
            json!("TCP"),
        )
        .set("metadata.finalizers")
        .mark_atomic_map("spec.selector")
        .mark_always_present("spec.template")
        .mark_always_present("spec.template.spec")
        .mark_always_present("spec.template.spec.containers")
        .reset(None, &["status"])
        .reset(Some("status"), &["spec"])
}

const T0: i64 = 1_700_000_000; // 2023-11-14T22:13:20Z

fn at(manager: &str, secs: i64) -> Writer<'_> {
    Writer {
        manager,
        subresource: None,
        now: DateTime::from_timestamp(T0 + secs, 0).unwrap(),
    }
}

fn cm(labels: Value, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "test-cm", "namespace": "default", "labels": labels},
           "data": data})
}

fn deploy(spec: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "web", "namespace": "default"}, "spec": spec})
}

fn container(c: Value) -> Value {
    deploy(json!({"template": {"spec": {"containers": [c]}}}))
}

/// `(manager, operation, fieldsV1 bytes)` of each entry, in order.
fn owners(obj: &Value) -> Vec<(String, String, String)> {
    let Some(list) = obj["metadata"]["managedFields"].as_array() else {
        return Vec::new();
    };
    list.iter()
        .map(|e| {
            let set = FieldSet::from_fields_v1(&e["fieldsV1"]).unwrap();
            (
                e["manager"].as_str().unwrap().to_owned(),
                e["operation"].as_str().unwrap().to_owned(),
                set.to_fields_v1_string(),
            )
        })
        .collect()
}

fn owner(m: &str, op: &str, fields: &str) -> (String, String, String) {
    (m.to_owned(), op.to_owned(), fields.to_owned())
}

fn run(live: &Value, applied: &Value, w: &Writer, force: bool) -> Result<Value, ApplyError> {
    apply(live, applied, w, force, &schema())
}

#[test]
fn create_by_apply_matches_the_documented_entry() {
    let applied = cm(json!({"test-label": "test"}), json!({"key": "some value"}));
    let obj = run(&Value::Null, &applied, &at("kubectl", 0), false).unwrap();
    assert_eq!(obj["data"]["key"], "some value");
    assert_eq!(obj["metadata"]["labels"]["test-label"], "test");
    // The ConfigMap example of the Server-Side Apply documentation.
    assert_eq!(
        obj["metadata"]["managedFields"],
        json!([{"manager": "kubectl", "operation": "Apply", "apiVersion": "v1",
                "time": "2023-11-14T22:13:20Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {"f:test-label": {}}},
                             "f:data": {"f:key": {}}}}])
    );
    assert_eq!(
        owners(&obj),
        [owner(
            "kubectl",
            "Apply",
            r#"{"f:data":{"f:key":{}},"f:metadata":{"f:labels":{"f:test-label":{}}}}"#
        )]
    );
}

#[test]
fn reapplying_without_a_label_removes_it() {
    let v1 = cm(json!({"a": "1", "b": "2"}), json!({"k": "v"}));
    let obj = run(&Value::Null, &v1, &at("kubectl", 0), false).unwrap();
    let v2 = cm(json!({"a": "1"}), json!({"k": "v"}));
    let obj = run(&obj, &v2, &at("kubectl", 5), false).unwrap();
    assert_eq!(obj["metadata"]["labels"], json!({"a": "1"}));
    // Dropping every label leaves no empty labels map behind.
    let v3 = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "test-cm"}, "data": {"k": "v"}});
    let obj = run(&obj, &v3, &at("kubectl", 9), false).unwrap();
    assert!(obj["metadata"].get("labels").is_none(), "{obj}");
    assert_eq!(obj["metadata"]["namespace"], "default");
    assert_eq!(
        owners(&obj),
        [owner("kubectl", "Apply", r#"{"f:data":{"f:k":{}}}"#)]
    );
    // Unchanged objects keep the applier's time.
    let again = run(&obj, &v3, &at("kubectl", 60), false).unwrap();
    assert_eq!(again, obj);
}

#[test]
fn two_appliers_own_different_fields() {
    let obj = run(
        &Value::Null,
        &cm(json!({"a": "1"}), json!({})),
        &at("a", 0),
        false,
    )
    .unwrap();
    let obj = run(&obj, &cm(json!({"b": "2"}), json!({})), &at("b", 1), false).unwrap();
    assert_eq!(obj["metadata"]["labels"], json!({"a": "1", "b": "2"}));
    assert_eq!(
        owners(&obj),
        [
            owner(
                "a",
                "Apply",
                r#"{"f:data":{},"f:metadata":{"f:labels":{"f:a":{}}}}"#
            ),
            owner(
                "b",
                "Apply",
                r#"{"f:data":{},"f:metadata":{"f:labels":{"f:b":{}}}}"#
            ),
        ]
    );
    // b stops applying its label: only b's label goes.
    let obj = run(&obj, &cm(json!({}), json!({})), &at("b", 2), false).unwrap();
    assert_eq!(obj["metadata"]["labels"], json!({"a": "1"}));
}

#[test]
fn conflicts_name_the_manager_and_field_as_upstream() {
    let created = record_update(
        &Value::Null,
        &deploy(json!({"replicas": 3})),
        &at("kubectl-client-side-apply", 0),
        &schema(),
    );
    let err = run(
        &created,
        &deploy(json!({"replicas": 5})),
        &at("kubectl", 1),
        false,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
    );
    let status = err.to_status();
    assert_eq!(status.code(), 409);
    assert_eq!(
        status.status().to_json(),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": err.to_string(), "reason": "Conflict",
               "details": {"causes": [{"reason": "FieldManagerConflict",
                  "message": "conflict with \"kubectl-client-side-apply\" using apps/v1",
                  "field": ".spec.replicas"}]},
               "code": 409})
    );

    // Two fields of an applier: grouped, applier printed without version.
    let a = run(
        &Value::Null,
        &deploy(json!({"replicas": 1, "paused": false})),
        &at("helm", 0),
        false,
    )
    .unwrap();
    let err = run(
        &a,
        &deploy(json!({"replicas": 2, "paused": true})),
        &at("argo", 1),
        false,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 2 conflicts: conflicts with \"helm\":\n- .spec.paused\n- .spec.replicas"
    );
    // The same value is no conflict: both own the field.
    // argo changed nothing, so its entry has no time and sorts first.
    let shared = run(&a, &deploy(json!({"replicas": 1})), &at("argo", 1), false).unwrap();
    assert_eq!(
        owners(&shared),
        [
            owner("argo", "Apply", r#"{"f:spec":{"f:replicas":{}}}"#),
            owner(
                "helm",
                "Apply",
                r#"{"f:spec":{"f:paused":{},"f:replicas":{}}}"#
            ),
        ]
    );
    assert!(shared["metadata"]["managedFields"][0].get("time").is_none());
}

#[test]
fn force_transfers_ownership() {
    let a = run(
        &Value::Null,
        &deploy(json!({"replicas": 1, "paused": false})),
        &at("a", 0),
        false,
    )
    .unwrap();
    let b = run(&a, &deploy(json!({"replicas": 4})), &at("b", 1), true).unwrap();
    assert_eq!(b["spec"]["replicas"], 4);
    assert_eq!(
        owners(&b),
        [
            owner("a", "Apply", r#"{"f:spec":{"f:paused":{}}}"#),
            owner("b", "Apply", r#"{"f:spec":{"f:replicas":{}}}"#),
        ]
    );
    // a lost replicas, so dropping it from a's configuration keeps b's value.
    let a2 = run(&b, &deploy(json!({"paused": false})), &at("a", 2), false).unwrap();
    assert_eq!(a2["spec"]["replicas"], 4);
    // Taking a manager's last field drops its entry.
    let c = run(&a2, &deploy(json!({"paused": true})), &at("c", 3), true).unwrap();
    let names: Vec<String> = owners(&c).into_iter().map(|o| o.0).collect();
    assert_eq!(names, ["b", "c"]);
}

#[test]
fn a_field_two_appliers_own_stays_until_both_drop_it() {
    let cfg = |v: Value| deploy(json!({"replicas": 2, "minReadySeconds": v}));
    let obj = run(&Value::Null, &cfg(json!(5)), &at("a", 0), false).unwrap();
    let obj = run(&obj, &cfg(json!(5)), &at("b", 1), false).unwrap();
    let obj = run(&obj, &deploy(json!({"replicas": 2})), &at("a", 2), false).unwrap();
    assert_eq!(obj["spec"]["minReadySeconds"], 5);
    let obj = run(&obj, &deploy(json!({"replicas": 2})), &at("b", 3), false).unwrap();
    assert!(obj["spec"].get("minReadySeconds").is_none(), "{obj}");
    assert_eq!(obj["spec"]["replicas"], 2);
}

#[test]
fn containers_merge_by_name_and_ports_by_port_and_protocol() {
    let web = json!({"name": "web", "image": "nginx:1",
                     "ports": [{"containerPort": 53, "protocol": "UDP"}, {"containerPort": 53}]});
    let obj = run(&Value::Null, &container(web), &at("a", 0), false).unwrap();
    assert_eq!(
        owners(&obj)[0].2,
        concat!(
            r#"{"f:spec":{"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"web\"}":{".":{},"f:image":{},"f:name":{},"f:ports":{"#,
            r#""k:{\"containerPort\":53,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{}},"#,
            r#""k:{\"containerPort\":53,\"protocol\":\"UDP\"}":{".":{},"f:containerPort":{},"f:protocol":{}}}}}}}}}"#
        )
    );
    let log = json!({"name": "log", "image": "busybox"});
    let obj = run(&obj, &container(log), &at("b", 1), false).unwrap();
    let names: Vec<&str> = obj["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web", "log"]);
    let ports = &obj["spec"]["template"]["spec"]["containers"][0]["ports"];
    assert_eq!(ports.as_array().unwrap().len(), 2);

    let err = run(
        &obj,
        &container(json!({"name": "web", "image": "nginx:2"})),
        &at("b", 2),
        false,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"a\": .spec.template.spec.containers[name=\"web\"].image"
    );
    // a drops its UDP port; the defaulted-protocol one stays.
    let web2 = json!({"name": "web", "image": "nginx:1", "ports": [{"containerPort": 53}]});
    let obj = run(&obj, &container(web2), &at("a", 3), false).unwrap();
    assert_eq!(
        obj["spec"]["template"]["spec"]["containers"][0]["ports"],
        json!([{"containerPort": 53}])
    );
    // a drops the whole container; b's container is untouched.
    let obj = run(&obj, &deploy(json!({"replicas": 1})), &at("a", 4), false).unwrap();
    assert_eq!(
        obj["spec"]["template"]["spec"]["containers"],
        json!([{"name": "log", "image": "busybox"}])
    );
}

#[test]
fn finalizers_are_a_set() {
    let fin = |f: Value| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "x", "finalizers": f}})
    };
    let obj = run(&Value::Null, &fin(json!(["a.io/x"])), &at("a", 0), false).unwrap();
    let obj = run(&obj, &fin(json!(["b.io/y"])), &at("b", 1), false).unwrap();
    assert_eq!(obj["metadata"]["finalizers"], json!(["a.io/x", "b.io/y"]));
    assert_eq!(
        owners(&obj)[1].2,
        r#"{"f:metadata":{"f:finalizers":{"v:\"b.io/y\"":{}}}}"#
    );
    let obj = run(&obj, &fin(json!([])), &at("a", 2), false).unwrap();
    assert_eq!(obj["metadata"]["finalizers"], json!(["b.io/y"]));
    let obj = run(&obj, &fin(json!([])), &at("b", 3), false).unwrap();
    assert!(obj["metadata"].get("finalizers").is_none(), "{obj}");
}

#[test]
fn atomic_lists_and_maps_are_replaced_and_owned_whole() {
    let args = |a: Value| container(json!({"name": "web", "args": a}));
    let obj = run(&Value::Null, &args(json!(["x", "y"])), &at("a", 0), false).unwrap();
    assert!(owners(&obj)[0].2.contains(r#""f:args":{}"#));
    let obj = run(&obj, &args(json!(["z"])), &at("a", 1), false).unwrap();
    assert_eq!(
        obj["spec"]["template"]["spec"]["containers"][0]["args"],
        json!(["z"])
    );
    let err = run(&obj, &args(json!(["z", "w"])), &at("b", 2), false).unwrap_err();
    assert!(err.to_string().ends_with("[name=\"web\"].args"), "{err}");

    let sel = |m: Value| deploy(json!({"selector": {"matchLabels": m}}));
    let obj = run(
        &Value::Null,
        &sel(json!({"app": "a", "tier": "t"})),
        &at("a", 0),
        false,
    )
    .unwrap();
    assert_eq!(owners(&obj)[0].2, r#"{"f:spec":{"f:selector":{}}}"#);
    let obj = run(&obj, &sel(json!({"app": "b"})), &at("a", 1), false).unwrap();
    assert_eq!(
        obj["spec"]["selector"],
        json!({"matchLabels": {"app": "b"}})
    );
}

#[test]
fn kubectl_label_owns_the_label_it_added() {
    let created = record_update(
        &Value::Null,
        &cm(json!({"app": "web"}), json!({"k": "v"})),
        &at("kubectl-client-side-apply", 0),
        &schema(),
    );
    assert_eq!(
        owners(&created),
        [owner(
            "kubectl-client-side-apply",
            "Update",
            r#"{"f:data":{".":{},"f:k":{}},"f:metadata":{"f:labels":{".":{},"f:app":{}}}}"#
        )]
    );
    let mut labelled = created.clone();
    labelled["metadata"]["labels"]["env"] = json!("prod");
    let obj = record_update(&created, &labelled, &at("kubectl-label", 30), &schema());
    assert_eq!(
        owners(&obj),
        [
            owner(
                "kubectl-client-side-apply",
                "Update",
                r#"{"f:data":{".":{},"f:k":{}},"f:metadata":{"f:labels":{".":{},"f:app":{}}}}"#
            ),
            owner(
                "kubectl-label",
                "Update",
                r#"{"f:metadata":{"f:labels":{"f:env":{}}}}"#
            ),
        ]
    );
    assert_eq!(
        obj["metadata"]["managedFields"][1]["time"],
        "2023-11-14T22:13:50Z"
    );
    assert_eq!(obj["metadata"]["managedFields"][1]["apiVersion"], "v1");

    // Overwriting the label moves it; the first manager keeps the rest.
    let mut relabelled = obj.clone();
    relabelled["metadata"]["labels"]["app"] = json!("api");
    let obj2 = record_update(&obj, &relabelled, &at("kubectl-edit", 40), &schema());
    assert_eq!(
        owners(&obj2)[0].2,
        r#"{"f:data":{".":{},"f:k":{}},"f:metadata":{"f:labels":{}}}"#
    );
    assert_eq!(
        owners(&obj2)[2],
        owner(
            "kubectl-edit",
            "Update",
            r#"{"f:metadata":{"f:labels":{"f:app":{}}}}"#
        )
    );
    // A no-op write changes nothing, not even times.
    assert_eq!(
        record_update(&obj2, &obj2, &at("kubectl-edit", 99), &schema()),
        obj2
    );
}

#[test]
fn update_managed_fields_sources() {
    let old = record_update(
        &Value::Null,
        &cm(json!({}), json!({"k": "v"})),
        &at("a", 0),
        &schema(),
    );
    // A write without managedFields keeps the stored ones.
    let mut new = old.clone();
    new["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("managedFields");
    new["data"]["k2"] = json!("v2");
    let out = record_update(&old, &new, &at("b", 1), &schema());
    assert_eq!(owners(&out).len(), 2);
    // `[{}]` clears them: only this write is tracked.
    new["metadata"]["managedFields"] = json!([{}]);
    let out = record_update(&old, &new, &at("b", 1), &schema());
    assert_eq!(
        owners(&out),
        [owner("b", "Update", r#"{"f:data":{"f:k2":{}}}"#)]
    );
    // Unreadable stored managedFields count as none.
    let mut broken = old.clone();
    broken["metadata"]["managedFields"] = json!([{"operation": "Bogus"}]);
    new["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("managedFields");
    let out = record_update(&broken, &new, &at("b", 1), &schema());
    assert_eq!(
        owners(&out),
        [owner("b", "Update", r#"{"f:data":{"f:k2":{}}}"#)]
    );
    assert!(decode_managed_fields(&broken).is_err());
}

#[test]
fn status_writes_are_tracked_per_subresource() {
    let obj = run(
        &Value::Null,
        &deploy(json!({"replicas": 1})),
        &at("a", 0),
        false,
    )
    .unwrap();
    let mut new = obj.clone();
    new["status"] = json!({"replicas": 1});
    new["spec"]["replicas"] = json!(9); // reset by the status strategy: not tracked
    let w = Writer {
        subresource: Some("status"),
        ..at("kube-controller-manager", 5)
    };
    let out = record_update(&obj, &new, &w, &schema());
    let mf = &out["metadata"]["managedFields"];
    assert_eq!(mf[1]["subresource"], "status");
    assert_eq!(mf[1]["fieldsV1"], json!({"f:status": {"f:replicas": {}}}));
    assert_eq!(mf[0]["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
    // And an apply to the main resource does not own status.
    let with_status = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"}, "spec": {"replicas": 1}, "status": {"replicas": 7}});
    let out = run(&obj, &with_status, &at("a", 6), false).unwrap();
    assert_eq!(owners(&out)[0].2, r#"{"f:spec":{"f:replicas":{}}}"#);
}

#[test]
fn objects_without_managed_fields_belong_to_before_first_apply() {
    let live = json!({"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": "test-cm", "uid": "u1"}, "data": {"k": "old"}});
    let err = run(
        &live,
        &cm(json!({}), json!({"k": "new"})),
        &at("kubectl", 0),
        false,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"before-first-apply\" using v1: .data.k"
    );
    let ok = run(
        &live,
        &cm(json!({}), json!({"k": "old"})),
        &at("kubectl", 0),
        false,
    )
    .unwrap();
    let names: Vec<String> = owners(&ok).into_iter().map(|o| o.0).collect();
    assert_eq!(names, ["kubectl", BEFORE_FIRST_APPLY]);
    assert_eq!(ok["metadata"]["uid"], "u1");
}

#[test]
fn bad_apply_patches_are_refused() {
    let name = json!({"name": "x"});
    let cases: Vec<(Value, Value, &str)> = vec![
        (Value::Null, json!([1]), "apply patch must be an object"),
        (Value::Null, json!({"metadata": name}), "invalid object type: /, Kind="),
        (
            Value::Null,
            json!({"apiVersion": "apps/v1", "metadata": name}),
            "invalid object type: apps/v1, Kind=",
        ),
        (
            deploy(json!({})),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": name}),
            "invalid object type: /v1, Kind=Pod",
        ),
        (
            Value::Null,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}),
            "metadata.name: Required value: name is required in an apply patch",
        ),
        (
            Value::Null,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "x", "managedFields": []}}),
            "metadata.managedFields must be nil",
        ),
        (
            Value::Null,
            container(json!({"image": "nginx"})),
            "failed to create typed patch object: .spec.template.spec.containers: element 0: associative list with keys has an element that omits key field \"name\" (and doesn't have default value)",
        ),
        (
            Value::Null,
            deploy(json!({"template": {"spec": {"containers": [{"name": "a"}, {"name": "a"}]}}})),
            "failed to create typed patch object: .spec.template.spec.containers: duplicate entries for key [name=\"a\"]",
        ),
    ];
    for (live, applied, want) in cases {
        let err = run(&live, &applied, &at("m", 0), false).unwrap_err();
        assert_eq!(err.to_string(), want, "{applied}");
        assert_eq!(err.to_status().code(), 400);
    }
    // managedFields: null is allowed.
    let ok = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "x", "managedFields": null}, "data": {"a": "b"}});
    assert!(run(&Value::Null, &ok, &at("m", 0), false).is_ok());
}

#[test]
fn entries_are_ordered_and_capped_as_upstream() {
    let mut obj = run(
        &Value::Null,
        &cm(json!({}), json!({"k0": "v"})),
        &at("applier", 100),
        false,
    )
    .unwrap();
    for i in 1..=12 {
        let mut next = obj.clone();
        next["data"][format!("k{i}")] = json!("v");
        obj = record_update(&obj, &next, &at(&format!("m{i:02}"), i), &schema());
    }
    let names: Vec<String> = owners(&obj).into_iter().map(|o| o.0).collect();
    // Apply first, then updates oldest first. The 11th updater merged the
    // two oldest into ancient-changes, the 12th merged the next one in.
    assert_eq!(
        names,
        [
            "applier",
            "ancient-changes",
            "m04",
            "m05",
            "m06",
            "m07",
            "m08",
            "m09",
            "m10",
            "m11",
            "m12"
        ]
    );
    assert_eq!(
        owners(&obj)[1].2,
        r#"{"f:data":{"f:k1":{},"f:k2":{},"f:k3":{}}}"#
    );
    assert_eq!(
        obj["metadata"]["managedFields"][1]["time"],
        "2023-11-14T22:13:23Z"
    );
}

#[test]
fn field_manager_from_user_agent() {
    assert_eq!(
        manager_or_user_agent(None, "kubectl/v1.29.0 (linux/amd64) kubernetes/3f7a50f"),
        "kubectl"
    );
    assert_eq!(manager_or_user_agent(Some("helm"), "kubectl/v1"), "helm");
    assert_eq!(
        manager_or_user_agent(Some(""), "Go-http-client/1.1"),
        "Go-http-client"
    );
    assert_eq!(manager_or_user_agent(None, &"x".repeat(300)).len(), 128);
    assert_eq!(manager_or_user_agent(None, "a\u{7}b/1"), "ab");
}

#[test]
fn field_set_leaves_out_unowned_metadata() {
    let obj = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "d", "uid": "u", "resourceVersion": "1",
                     "generation": 1, "creationTimestamp": null, "labels": {"a": "b"},
                     "managedFields": [{"manager": "x"}]},
        "spec": {"nodeName": null, "affinity": {}}});
    let set = field_set(&obj, &schema());
    assert_eq!(
        set.to_fields_v1_string(),
        r#"{"f:metadata":{"f:labels":{"f:a":{}}},"f:spec":{"f:affinity":{},"f:nodeName":{}}}"#
    );
}

#[test]
fn patch_options_are_validated_as_upstream() {
    let msgs = |errs: Vec<crate::field::FieldError>| -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    };
    assert!(validate_patch_options(true, "kubectl", Some(true)).is_empty());
    assert!(validate_patch_options(false, "", None).is_empty());
    assert_eq!(
        msgs(validate_patch_options(true, "", None)),
        ["fieldManager: Required value: is required for apply patch"]
    );
    assert_eq!(
        msgs(validate_patch_options(false, "x", Some(false))),
        ["force: Forbidden: may not be specified for non-apply patch"]
    );
    assert_eq!(
        msgs(validate_patch_options(false, &"m".repeat(129), None)),
        ["fieldManager: Too long: may not be more than 128 bytes"]
    );
    assert_eq!(
        msgs(validate_field_manager("a\tb")),
        ["fieldManager: Invalid value: \"a\\tb\": invalid character U+0009 (at position 1)"]
    );
}

#[test]
fn live_list_order_is_kept_around_applied_items() {
    let schema = ApplyTable::new().list_map("items", &["name"]);
    let named = |names: &[&str]| -> Value {
        json!({"items": names.iter().map(|n| json!({"name": n})).collect::<Vec<_>>()})
    };
    for (live, config, want) in [
        (&["a", "b", "c"][..], &["c", "a"][..], &["b", "c", "a"][..]),
        (&["a", "b"], &["x"], &["a", "b", "x"]),
        (&["a", "b"], &["x", "b"], &["a", "x", "b"]),
        (&[], &["a"], &["a"]),
    ] {
        let got = merge(&named(live), &named(config), &schema);
        assert_eq!(got, named(want), "{live:?} + {config:?}");
    }
}

#[test]
fn compare_reports_added_modified_removed() {
    let schema = schema();
    let old = json!({"spec": {"replicas": 1, "paused": true, "template": {"spec": {"containers": [
        {"name": "a", "image": "x"}]}}}});
    let new = json!({"spec": {"replicas": 2, "minReadySeconds": 3, "template": {"spec": {"containers": [
        {"name": "a", "image": "x"}, {"name": "b"}]}}}});
    let c = compare(Some(&old), Some(&new), &schema);
    assert_eq!(
        c.modified.to_fields_v1_string(),
        r#"{"f:spec":{"f:replicas":{}}}"#
    );
    assert_eq!(
        c.removed.to_fields_v1_string(),
        r#"{"f:spec":{"f:paused":{}}}"#
    );
    assert_eq!(
        c.added.to_fields_v1_string(),
        r#"{"f:spec":{"f:minReadySeconds":{},"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"b\"}":{".":{},"f:name":{}}}}}}}"#
    );
    assert!(compare(Some(&new), Some(&new), &schema).is_empty());
}

#[test]
fn kubectl_takes_over_its_own_client_side_apply() {
    // `kubectl apply` (client-side) created the object: the annotation
    // holds the configuration, kubectl-client-side-apply owns the fields.
    let config = deploy(json!({"replicas": 2, "paused": false}));
    let mut created = config.clone();
    created["metadata"]["annotations"] = json!({
        LAST_APPLIED_ANNOTATION: format!("{}\n", serde_json::to_string(&config).unwrap())});
    let created = record_update(
        &Value::Null,
        &created,
        &at("kubectl-client-side-apply", 0),
        &schema(),
    );
    // Someone scales it; replicas no longer matches the annotation.
    let mut scaled = created.clone();
    scaled["spec"]["replicas"] = json!(5);
    let scaled = record_update(&created, &scaled, &at("kubectl-scale", 1), &schema());

    let next = deploy(json!({"replicas": 3, "paused": true}));
    // Another manager name gets the conflicts.
    let err = run(&scaled, &next, &at("ci", 2), false).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 2 conflicts: conflicts with \"kubectl-client-side-apply\" using apps/v1:\n- .spec.paused\nconflicts with \"kubectl-scale\" using apps/v1:\n- .spec.replicas"
    );
    // kubectl is let through on what it applied itself, not on replicas.
    let err = run(&scaled, &next, &at("kubectl", 2), false).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-scale\" using apps/v1: .spec.replicas"
    );
    let ok = run(
        &scaled,
        &deploy(json!({"replicas": 5, "paused": true})),
        &at("kubectl", 2),
        false,
    )
    .unwrap();
    assert_eq!(ok["spec"]["paused"], true);
    // The annotation now holds the server-side configuration.
    let ann = ok["metadata"]["annotations"][LAST_APPLIED_ANNOTATION]
        .as_str()
        .unwrap();
    assert_eq!(
        ann,
        "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"name\":\"web\",\"namespace\":\"default\"},\"spec\":{\"paused\":true,\"replicas\":5}}\n"
    );
    // Without an annotation nothing is let through.
    let mut bare = scaled.clone();
    bare["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("annotations");
    assert!(run(&bare, &next, &at("kubectl", 2), false).is_err());
}

#[test]
fn strategic_patch_metadata_drives_apply_through_the_adapter() {
    let smp = crate::patch::strategic::SchemaTable::new()
        .merge_key("spec.template.spec.containers", "name")
        .set_list("metadata.finalizers");
    let schema = FromPatchSchema(&smp);
    let a = container(json!({"name": "web", "image": "nginx"}));
    let obj = apply(&Value::Null, &a, &at("a", 0), false, &schema).unwrap();
    let b = container(json!({"name": "log", "image": "busybox"}));
    let obj = apply(&obj, &b, &at("b", 1), false, &schema).unwrap();
    assert_eq!(
        obj["spec"]["template"]["spec"]["containers"],
        json!([{"name": "web", "image": "nginx"}, {"name": "log", "image": "busybox"}])
    );
    // Without metadata the list is atomic: a owns it whole, and b's apply
    // would replace it.
    let none = ApplyTable::new();
    let obj = apply(&Value::Null, &a, &at("a", 0), false, &none).unwrap();
    let err = apply(&obj, &b, &at("b", 1), false, &none).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"a\": .spec.template.spec.containers"
    );
}
