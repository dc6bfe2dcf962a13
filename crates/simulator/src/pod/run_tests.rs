use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::json;

use super::*;
use crate::pod::spec::SimSpec;

pub(crate) fn t(s: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + s).unwrap()
}

pub(crate) fn spec(pod_spec: serde_json::Value) -> SimSpec {
    let pod: Pod =
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": pod_spec})).unwrap();
    SimSpec::from_pod(&pod)
}

#[test]
fn a_server_runs_and_turns_ready_after_its_probe_delay() {
    let s = spec(json!({"containers": [{"name": "a", "image": "nginx",
        "readinessProbe": {"initialDelaySeconds": 5, "tcpSocket": {"port": 80}}}]}));
    let mut r = PodRun::new(&s, t(0));
    assert_eq!(r.advance(&s, t(0)), Some(t(5)));
    assert_eq!(r.containers[0].state, State::Running { since: t(0) });
    assert_eq!(r.advance(&s, t(6)), None);
}

#[test]
fn false_with_never_stays_terminated() {
    let s = spec(json!({"restartPolicy": "Never",
        "containers": [{"name": "a", "image": "busybox", "command": ["false"]}]}));
    let mut r = PodRun::new(&s, t(0));
    assert_eq!(r.advance(&s, t(0)), None);
    assert_eq!(
        r.containers[0].state,
        State::Terminated(Term {
            code: 1,
            started: t(0),
            finished: t(0)
        })
    );
    assert_eq!(r.containers[0].restarts, 0);
}

#[test]
fn crash_loop_backs_off_doubling() {
    let s = spec(json!({"containers": [{"name": "a", "image": "busybox",
        "command": ["sh", "-c", "sleep 1; exit 2"]}]}));
    let mut r = PodRun::new(&s, t(0));
    assert_eq!(r.advance(&s, t(0)), Some(t(1)));
    // Exit at 1, restarted at once, exit at 2, back-off 10 s.
    assert_eq!(r.advance(&s, t(2)), Some(t(12)));
    assert_eq!(r.containers[0].restarts, 2);
    assert_eq!(r.containers[0].state, State::BackOff { until: t(12) });
    assert_eq!(r.containers[0].last.as_ref().unwrap().code, 2);
    // Runs 12..13, then back-off 20 s.
    assert_eq!(r.advance(&s, t(13)), Some(t(33)));
    assert_eq!(r.containers[0].restarts, 3);
    // Much later the back-off is capped at 5 minutes.
    r.advance(&s, t(100_000));
    let c = &r.containers[0];
    match c.state {
        State::BackOff { until } => {
            let wait = until.duration_since(c.last.as_ref().unwrap().finished);
            assert!(wait <= SignedDuration::from_secs(300));
        }
        State::Running { .. } => {}
        ref other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn on_failure_keeps_a_success() {
    let s = spec(json!({"restartPolicy": "OnFailure",
        "containers": [{"name": "a", "image": "busybox", "command": ["sleep", "3"]}]}));
    let mut r = PodRun::new(&s, t(0));
    assert_eq!(r.advance(&s, t(1)), Some(t(3)));
    assert_eq!(r.advance(&s, t(3)), None);
    assert!(matches!(
        r.containers[0].state,
        State::Terminated(Term { code: 0, .. })
    ));
}

#[test]
fn init_containers_run_in_order_before_the_app() {
    let s = spec(json!({
        "initContainers": [
            {"name": "i1", "image": "busybox", "command": ["sleep", "2"]},
            {"name": "i2", "image": "busybox", "command": ["sleep", "3"]}],
        "containers": [{"name": "a", "image": "nginx"}]}));
    let mut r = PodRun::new(&s, t(0));
    assert_eq!(r.advance(&s, t(1)), Some(t(2)));
    assert_eq!(r.containers[0].state, State::Pending);
    assert_eq!(r.advance(&s, t(3)), Some(t(5)));
    assert_eq!(r.init[1].state, State::Running { since: t(2) });
    assert_eq!(r.advance(&s, t(6)), None);
    assert_eq!(r.initialized, Some(t(5)));
    assert_eq!(r.containers[0].state, State::Running { since: t(5) });
}

#[test]
fn a_failed_init_container_with_never_fails_the_pod() {
    let s = spec(json!({"restartPolicy": "Never",
        "initContainers": [{"name": "i", "image": "busybox", "command": ["false"]}],
        "containers": [{"name": "a", "image": "nginx"}]}));
    let mut r = PodRun::new(&s, t(0));
    r.advance(&s, t(0));
    assert!(r.init_failed());
    assert_eq!(r.containers[0].state, State::Pending);
}

#[test]
fn stop_kills_what_runs() {
    let s = spec(json!({"containers": [{"name": "a", "image": "nginx"}]}));
    let mut r = PodRun::new(&s, t(0));
    r.advance(&s, t(0));
    r.stop(t(4));
    assert_eq!(
        r.containers[0].state,
        State::Terminated(Term {
            code: KILLED_EXIT_CODE,
            started: t(0),
            finished: t(4)
        })
    );
    assert_eq!(r.advance(&s, t(9)), None);
}

#[test]
fn resume_from_written_status_gives_the_same_run() {
    let s = spec(json!({"restartPolicy": "Always",
        "initContainers": [{"name": "i", "image": "busybox", "command": ["true"]}],
        "containers": [{"name": "a", "image": "busybox", "command": ["sh", "-c", "sleep 1; exit 2"]},
                       {"name": "b", "image": "nginx"}]}));
    let mut r = PodRun::new(&s, t(0));
    r.advance(&s, t(5));
    let at = crate::pod::status::Placement {
        namespace: "default",
        name: "p",
        uid: "u",
        host_ip: "172.16.0.2",
        pod_ip: Some("10.64.0.2"),
    };
    let status = crate::pod::status::build(&s, &r, &Default::default(), &at, t(5));
    let resumed = PodRun::resume(&s, &status, t(5));
    assert_eq!(resumed, r);
}

#[test]
fn active_deadline_fails_a_running_pod_but_not_a_finished_one() {
    let s = spec(json!({"activeDeadlineSeconds": 5,
        "containers": [{"name": "a", "image": "nginx"}]}));
    let mut r = PodRun::new(&s, t(0));
    assert_eq!(r.advance(&s, t(1)), Some(t(5)));
    assert_eq!(r.advance(&s, t(7)), None);
    assert!(r.deadline_exceeded);
    assert_eq!(
        r.containers[0].state,
        State::Terminated(Term {
            code: KILLED_EXIT_CODE,
            started: t(0),
            finished: t(5)
        })
    );
    let at = crate::pod::status::Placement {
        namespace: "default",
        name: "p",
        uid: "u",
        host_ip: "172.16.0.2",
        pod_ip: None,
    };
    let st = crate::pod::status::build(&s, &r, &Default::default(), &at, t(7));
    assert_eq!(st.phase.as_deref(), Some("Failed"));
    assert_eq!(st.reason.as_deref(), Some(DEADLINE_EXCEEDED));
    assert_eq!(PodRun::resume(&s, &st, t(8)), r);

    let s = spec(json!({"activeDeadlineSeconds": 5, "restartPolicy": "Never",
        "containers": [{"name": "a", "image": "busybox", "command": ["sleep", "2"]}]}));
    let mut r = PodRun::new(&s, t(0));
    assert_eq!(r.advance(&s, t(9)), None);
    assert!(!r.deadline_exceeded);
    assert!(matches!(
        r.containers[0].state,
        State::Terminated(Term { code: 0, .. })
    ));
}
