use k8s_openapi::api::core::v1::PodStatus;
use serde_json::json;

use super::*;
use crate::pod::run::tests::{spec, t};
use crate::pod::run::PodRun;

fn at() -> Placement<'static> {
    Placement {
        namespace: "default",
        name: "web",
        uid: "uid-1",
        host_ip: "172.16.0.2",
        pod_ip: Some("10.64.0.2"),
    }
}

fn cond<'a>(s: &'a PodStatus, type_: &str) -> &'a k8s_openapi::api::core::v1::PodCondition {
    s.conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap()
}

#[test]
fn running_and_ready() {
    let s = spec(json!({"containers": [{"name": "a", "image": "nginx:1.25"}]}));
    let mut r = PodRun::new(&s, t(0));
    r.advance(&s, t(1));
    let st = build(&s, &r, &PodStatus::default(), &at(), t(1));
    assert_eq!(st.phase.as_deref(), Some("Running"));
    assert_eq!(st.pod_ip.as_deref(), Some("10.64.0.2"));
    assert_eq!(st.pod_ips.as_ref().unwrap()[0].ip, "10.64.0.2");
    assert_eq!(st.host_ip.as_deref(), Some("172.16.0.2"));
    assert_eq!(st.qos_class.as_deref(), Some("BestEffort"));
    assert_eq!(st.start_time.as_ref().unwrap().0, t(0));
    for c in [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ] {
        assert_eq!(cond(&st, c).status, "True", "{c}");
    }
    let cs = &st.container_statuses.as_ref().unwrap()[0];
    assert!(cs.ready);
    assert_eq!(cs.started, Some(true));
    assert_eq!(
        cs.image_id,
        "docker.io/library/nginx@sha256:".to_string() + &hex_digest("nginx:1.25")
    );
    assert!(cs
        .container_id
        .as_deref()
        .unwrap()
        .starts_with("simulated://"));
    assert!(cs.state.as_ref().unwrap().running.is_some());
    // Built again later from its own output: nothing to write.
    let again = build(&s, &r, &st, &at(), t(50));
    assert!(same(&again, &st));
    assert_eq!(
        cond(&again, "Ready").last_transition_time,
        cond(&st, "Ready").last_transition_time
    );
}

#[test]
fn not_ready_until_the_probe_delay() {
    let s = spec(json!({"containers": [{"name": "a", "image": "nginx",
        "readinessProbe": {"initialDelaySeconds": 10, "httpGet": {"port": 80}}}]}));
    let mut r = PodRun::new(&s, t(0));
    r.advance(&s, t(3));
    let st = build(&s, &r, &PodStatus::default(), &at(), t(3));
    let ready = cond(&st, "Ready");
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason.as_deref(), Some("ContainersNotReady"));
    assert_eq!(
        ready.message.as_deref(),
        Some("containers with unready status: [a]")
    );
    let later = build(&s, &r, &st, &at(), t(10));
    assert_eq!(cond(&later, "Ready").status, "True");
    assert!(!same(&later, &st));
}

#[test]
fn completed_and_failed() {
    let s = spec(json!({"restartPolicy": "Never",
        "containers": [{"name": "a", "image": "busybox", "command": ["true"]}]}));
    let mut r = PodRun::new(&s, t(0));
    r.advance(&s, t(0));
    let st = build(&s, &r, &PodStatus::default(), &at(), t(0));
    assert_eq!(st.phase.as_deref(), Some("Succeeded"));
    assert_eq!(cond(&st, "Ready").reason.as_deref(), Some("PodCompleted"));
    let term = st.container_statuses.as_ref().unwrap()[0]
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(
        (term.exit_code, term.reason.as_deref()),
        (0, Some("Completed"))
    );

    let s = spec(json!({"restartPolicy": "Never",
        "containers": [{"name": "a", "image": "busybox", "command": ["false"]}]}));
    let mut r = PodRun::new(&s, t(0));
    r.advance(&s, t(0));
    let st = build(&s, &r, &PodStatus::default(), &at(), t(0));
    assert_eq!(st.phase.as_deref(), Some("Failed"));
    let term = st.container_statuses.as_ref().unwrap()[0]
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!((term.exit_code, term.reason.as_deref()), (1, Some("Error")));
}

#[test]
fn crash_loop_is_worded_as_upstream() {
    let s = spec(json!({"containers": [{"name": "a", "image": "busybox", "command": ["false"]}]}));
    let mut r = PodRun::new(&s, t(0));
    r.advance(&s, t(0));
    let st = build(&s, &r, &PodStatus::default(), &at(), t(0));
    assert_eq!(st.phase.as_deref(), Some("Running"));
    let cs = &st.container_statuses.as_ref().unwrap()[0];
    assert_eq!(cs.restart_count, 2);
    let waiting = cs.state.clone().unwrap().waiting.unwrap();
    assert_eq!(waiting.reason.as_deref(), Some("CrashLoopBackOff"));
    assert_eq!(
        waiting.message.as_deref(),
        Some("back-off 10s restarting failed container=a pod=web_default(uid-1)")
    );
    assert_eq!(
        cs.last_state.clone().unwrap().terminated.unwrap().exit_code,
        1
    );
}

#[test]
fn pending_init_and_foreign_conditions() {
    let s = spec(json!({
        "initContainers": [{"name": "i", "image": "busybox", "command": ["sleep", "9"]}],
        "containers": [{"name": "a", "image": "nginx"}],
        "readinessGates": [{"conditionType": "example.com/gate"}]}));
    let mut r = PodRun::new(&s, t(0));
    r.advance(&s, t(1));
    let prev: PodStatus = serde_json::from_value(json!({"conditions": [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"},
        {"type": "example.com/gate", "status": "False"}]}))
    .unwrap();
    let st = build(&s, &r, &prev, &at(), t(1));
    assert_eq!(st.phase.as_deref(), Some("Pending"));
    let init = cond(&st, "Initialized");
    assert_eq!(init.status, "False");
    assert_eq!(
        init.message.as_deref(),
        Some("containers with incomplete status: [i]")
    );
    assert_eq!(
        cond(&st, "PodScheduled")
            .last_transition_time
            .as_ref()
            .unwrap()
            .0
            .to_string(),
        "2020-01-01T00:00:00Z"
    );
    assert_eq!(cond(&st, "example.com/gate").status, "False");
    let app = &st.container_statuses.as_ref().unwrap()[0];
    assert_eq!(
        app.state
            .clone()
            .unwrap()
            .waiting
            .unwrap()
            .reason
            .as_deref(),
        Some("PodInitializing")
    );
    assert_eq!(app.image_id, "");

    r.advance(&s, t(9));
    let st = build(&s, &r, &st, &at(), t(9));
    assert_eq!(cond(&st, "ContainersReady").status, "True");
    assert_eq!(
        cond(&st, "Ready").reason.as_deref(),
        Some("ReadinessGatesNotReady")
    );
}

#[test]
fn image_ids() {
    assert!(image_id("busybox").starts_with("docker.io/library/busybox@sha256:"));
    assert!(image_id("bitnami/redis:7").starts_with("docker.io/bitnami/redis@sha256:"));
    assert!(image_id("localhost:5000/app:v1").starts_with("localhost:5000/app@sha256:"));
    assert_eq!(image_id("quay.io/x/y@sha256:abc"), "quay.io/x/y@sha256:abc");
}
