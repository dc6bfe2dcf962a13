use super::*;
use serde_json::json;

fn now() -> Timestamp {
    "2024-05-01T12:00:00Z".parse().unwrap()
}

fn pod(spec: Value, status: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default", "creationTimestamp": "2024-05-01T11:55:00Z"},
        "spec": spec,
        "status": status,
    })
}

fn cells(object: &Value) -> Vec<Value> {
    pod_row(object, now()).unwrap()
}

fn two_containers() -> Value {
    json!({"containers": [{"name": "a", "image": "busybox"}, {"name": "b", "image": "nginx"}]})
}

#[test]
fn running_pod_has_all_wide_cells() {
    let p = pod(
        json!({"containers": [{"name": "a", "image": "busybox"}], "nodeName": "node1"}),
        json!({
            "phase": "Running",
            "podIPs": [{"ip": "10.42.0.5"}],
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{
                "name": "a", "ready": true, "restartCount": 0, "image": "busybox", "imageID": "",
                "state": {"running": {"startedAt": "2024-05-01T11:55:05Z"}}
            }]
        }),
    );
    assert_eq!(
        cells(&p),
        vec![
            json!("web"),
            json!("1/1"),
            json!("Running"),
            json!("0"),
            json!("5m"),
            json!("10.42.0.5"),
            json!("node1"),
            json!("<none>"),
            json!("<none>"),
        ]
    );
    assert_eq!(pod_columns().len(), cells(&p).len());
}

#[test]
fn crash_looping_container_shows_reason_and_last_restart() {
    let p = pod(
        two_containers(),
        json!({
            "phase": "Running",
            "containerStatuses": [
                {
                    "name": "a", "ready": false, "restartCount": 3, "image": "", "imageID": "",
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:58:00Z"}}
                },
                {
                    "name": "b", "ready": true, "restartCount": 1, "image": "", "imageID": "",
                    "state": {"running": {}},
                    "lastState": {"terminated": {"exitCode": 0, "finishedAt": "2024-05-01T11:50:00Z"}}
                }
            ]
        }),
    );
    let c = cells(&p);
    assert_eq!(c[1], "1/2");
    assert_eq!(c[2], "CrashLoopBackOff");
    assert_eq!(c[3], "4 (2m ago)");
}

#[test]
fn init_containers_in_progress() {
    let spec = json!({
        "initContainers": [{"name": "i1"}, {"name": "i2"}],
        "containers": [{"name": "a"}]
    });
    let status = |second: Value| {
        json!({
            "phase": "Pending",
            "initContainerStatuses": [
                {"name": "i1", "ready": true, "restartCount": 0, "image": "", "imageID": "",
                 "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                second
            ],
            "containerStatuses": [
                {"name": "a", "ready": false, "restartCount": 0, "image": "", "imageID": "",
                 "state": {"waiting": {"reason": "PodInitializing"}}}
            ]
        })
    };
    let running = status(
        json!({"name": "i2", "ready": false, "restartCount": 0, "image": "", "imageID": "",
        "state": {"running": {}}}),
    );
    let c = cells(&pod(spec.clone(), running));
    assert_eq!(c[1], "0/1");
    assert_eq!(c[2], "Init:1/2");

    let crashing = status(
        json!({"name": "i2", "ready": false, "restartCount": 2, "image": "", "imageID": "",
        "state": {"waiting": {"reason": "CrashLoopBackOff"}}}),
    );
    let c = cells(&pod(spec.clone(), crashing));
    assert_eq!(c[2], "Init:CrashLoopBackOff");
    assert_eq!(c[3], "2", "no termination time, so no 'ago'");

    let failed = status(
        json!({"name": "i2", "ready": false, "restartCount": 0, "image": "", "imageID": "",
        "state": {"terminated": {"exitCode": 3}}}),
    );
    assert_eq!(cells(&pod(spec.clone(), failed))[2], "Init:ExitCode:3");

    let signalled = status(
        json!({"name": "i2", "ready": false, "restartCount": 0, "image": "", "imageID": "",
        "state": {"terminated": {"exitCode": 137, "signal": 9}}}),
    );
    assert_eq!(cells(&pod(spec, signalled))[2], "Init:Signal:9");
}

#[test]
fn sidecar_init_containers_count_toward_ready() {
    let spec = json!({
        "initContainers": [{"name": "proxy", "restartPolicy": "Always"}],
        "containers": [{"name": "a"}]
    });
    let status = json!({
        "phase": "Running",
        "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
        "initContainerStatuses": [
            {"name": "proxy", "ready": true, "started": true, "restartCount": 1, "image": "", "imageID": "",
             "state": {"running": {}}}
        ],
        "containerStatuses": [
            {"name": "a", "ready": true, "restartCount": 0, "image": "", "imageID": "", "state": {"running": {}}}
        ]
    });
    let c = cells(&pod(spec, status));
    assert_eq!(c[1], "2/2");
    assert_eq!(c[2], "Running");
    assert_eq!(c[3], "1");
}

#[test]
fn completed_and_terminating() {
    let done = json!({
        "phase": "Succeeded",
        "containerStatuses": [
            {"name": "a", "ready": false, "restartCount": 0, "image": "", "imageID": "",
             "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
        ]
    });
    let spec = json!({"containers": [{"name": "a"}]});
    assert_eq!(cells(&pod(spec.clone(), done.clone()))[2], "Completed");

    let mut deleting = pod(spec.clone(), done);
    deleting["metadata"]["deletionTimestamp"] = json!("2024-05-01T11:59:00Z");
    assert_eq!(
        cells(&deleting)[2],
        "Completed",
        "terminal pods keep their status"
    );

    let mut running = pod(
        spec.clone(),
        json!({"phase": "Running", "containerStatuses": [
            {"name": "a", "ready": true, "restartCount": 0, "image": "", "imageID": "", "state": {"running": {}}}
        ]}),
    );
    running["metadata"]["deletionTimestamp"] = json!("2024-05-01T11:59:00Z");
    assert_eq!(cells(&running)[2], "Terminating");

    let mut lost = pod(spec, json!({"phase": "Running", "reason": "NodeLost"}));
    lost["metadata"]["deletionTimestamp"] = json!("2024-05-01T11:59:00Z");
    assert_eq!(cells(&lost)[2], "Unknown");
}

#[test]
fn completed_container_beside_a_running_one_is_not_completed() {
    let status = |ready_condition: &str| {
        json!({
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": ready_condition}],
            "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 0, "image": "", "imageID": "", "state": {"running": {}}},
                {"name": "b", "ready": false, "restartCount": 0, "image": "", "imageID": "",
                 "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
            ]
        })
    };
    assert_eq!(cells(&pod(two_containers(), status("True")))[2], "Running");
    assert_eq!(
        cells(&pod(two_containers(), status("False")))[2],
        "NotReady"
    );
}

#[test]
fn pending_pods_and_readiness_gates() {
    let spec = json!({
        "containers": [{"name": "a"}],
        "readinessGates": [{"conditionType": "example.com/lb"}, {"conditionType": "example.com/dns"}]
    });
    let status = json!({
        "phase": "Pending",
        "nominatedNodeName": "node2",
        "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"},
            {"type": "example.com/lb", "status": "True"}
        ]
    });
    let c = cells(&pod(spec, status));
    assert_eq!(c[1], "0/1");
    assert_eq!(c[2], "SchedulingGated");
    assert_eq!(c[5], "<none>");
    assert_eq!(c[7], "node2");
    assert_eq!(c[8], "1/2");
}

#[test]
fn malformed_pod_is_an_error_not_a_panic() {
    let bad = json!({"metadata": {"name": 5}});
    assert!(matches!(
        pod_row(&bad, now()),
        Err(TableError::Decode { kind: "Pod", .. })
    ));
    let empty = json!({});
    assert_eq!(cells(&empty)[4], "<unknown>");
}

#[test]
fn finished_pods_carry_a_completed_row_condition() {
    let spec = json!({"containers": [{"name": "a"}]});
    let succeeded = pod(spec.clone(), json!({"phase": "Succeeded"}));
    let conditions = row_conditions(&succeeded);
    assert_eq!(conditions.len(), 1);
    assert_eq!(conditions[0]["type"], "Completed");
    assert_eq!(conditions[0]["reason"], "Succeeded");
    assert_eq!(
        row_conditions(&pod(spec.clone(), json!({"phase": "Failed"})))[0]["reason"],
        "Failed"
    );
    assert!(row_conditions(&pod(spec, json!({"phase": "Running"}))).is_empty());
    assert!(super::super::row_conditions("apps", "Deployment", &succeeded).is_empty());
    assert_eq!(
        super::super::row_conditions("", "Pod", &succeeded),
        conditions
    );
}
