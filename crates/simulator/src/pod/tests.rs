use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use super::*;
use crate::ipam::Cidr;
use crate::pod::run::tests::t;

fn setup() -> (Config, Nodes, Vec<Pool>) {
    let cfg = Config::new("sim", 2);
    let nodes = Nodes::new(&cfg);
    let pools = nodes
        .list
        .iter()
        .map(|n| Pool::new(*n.cidr.lock().unwrap()))
        .collect();
    (cfg, nodes, pools)
}

fn record(pod: serde_json::Value, cfg: &Config) -> Record {
    let pod: Pod = serde_json::from_value(pod).unwrap();
    Record {
        namespace: "default".into(),
        name: pod.metadata.name.clone().unwrap(),
        uid: "u1".into(),
        node: 1,
        spec: SimSpec::from_pod(&pod),
        observed: pod.status.clone().unwrap_or_default(),
        stop_at: stop_time(&pod, cfg),
        run: None,
        pod_ip: None,
        deleted: false,
        wake: None,
        failures: 0,
    }
}

#[test]
fn a_bound_pod_gets_a_running_status_once() {
    let (cfg, nodes, mut pools) = setup();
    let mut rec = record(
        json!({"metadata": {"name": "web"}, "spec": {"nodeName": "sim-1",
            "containers": [{"name": "a", "image": "nginx"}]}}),
        &cfg,
    );
    let (action, next) = plan(&mut rec, &mut pools, &nodes, t(0));
    let Action::Status(st) = action else {
        panic!("{action:?}")
    };
    assert_eq!(next, None);
    assert_eq!(st.phase.as_deref(), Some("Running"));
    assert_eq!(st.pod_ip.as_deref(), Some("10.64.1.2"));
    assert_eq!(st.host_ip.as_deref(), Some("172.16.0.3"));
    rec.observed = st;
    let (action, _) = plan(&mut rec, &mut pools, &nodes, t(30));
    assert_eq!(action, Action::Nothing);
}

#[test]
fn deletion_waits_then_writes_the_end_and_deletes() {
    let (mut cfg, nodes, mut pools) = setup();
    cfg.termination_delay = Duration::from_secs(2);
    // Deleted at t(0) with 30 s of grace: deletionTimestamp is t(30).
    let mut rec = record(
        json!({"metadata": {"name": "web", "deletionTimestamp": t(30).to_string(),
                "deletionGracePeriodSeconds": 30},
            "spec": {"nodeName": "sim-1", "containers": [{"name": "a", "image": "nginx"}]},
            "status": {"phase": "Running", "startTime": t(-5).to_string(), "podIP": "10.64.1.9"}}),
        &cfg,
    );
    assert_eq!(rec.stop_at, Some(t(2)));
    let (action, next) = plan(&mut rec, &mut pools, &nodes, t(1));
    assert_eq!((action, next), (Action::Nothing, Some(t(2))));
    let (action, _) = plan(&mut rec, &mut pools, &nodes, t(2));
    let Action::Delete(Some(st)) = action else {
        panic!("{action:?}")
    };
    assert_eq!(st.phase.as_deref(), Some("Failed"));
    // The address it had is kept.
    assert_eq!(st.pod_ip.as_deref(), Some("10.64.1.9"));
    let term = st.container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(term.exit_code, run::KILLED_EXIT_CODE);
}

#[test]
fn a_phase_failed_written_by_someone_else_is_kept_and_the_run_stops() {
    let (cfg, nodes, mut pools) = setup();
    let mut rec = record(
        json!({"metadata": {"name": "web"}, "spec": {"nodeName": "sim-1",
            "containers": [{"name": "a", "image": "nginx"}]}}),
        &cfg,
    );
    let Action::Status(mut st) = plan(&mut rec, &mut pools, &nodes, t(0)).0 else {
        panic!("no status")
    };
    st.phase = Some("Failed".into());
    rec.observed = st;
    let action = plan(&mut rec, &mut pools, &nodes, t(5)).0;
    let Action::Status(st) = action else {
        panic!("{action:?}")
    };
    assert_eq!(st.phase.as_deref(), Some("Failed"));
    let state = st.container_statuses.as_ref().unwrap()[0].state.clone();
    assert!(state.unwrap().terminated.is_some(), "{st:?}");
    rec.observed = st;
    assert_eq!(plan(&mut rec, &mut pools, &nodes, t(30)).0, Action::Nothing);
}

#[test]
fn a_finished_pod_is_deleted_without_a_status_write() {
    let (cfg, nodes, mut pools) = setup();
    let mut rec = record(
        json!({"metadata": {"name": "job", "deletionTimestamp": t(0).to_string(),
                "deletionGracePeriodSeconds": 0},
            "spec": {"nodeName": "sim-1", "restartPolicy": "Never",
                "containers": [{"name": "a", "image": "busybox", "command": ["true"]}]},
            "status": {"phase": "Succeeded", "startTime": t(-5).to_string()}}),
        &cfg,
    );
    let (action, _) = plan(&mut rec, &mut pools, &nodes, t(0));
    assert_eq!(action, Action::Delete(None));
    rec.deleted = true;
    assert_eq!(plan(&mut rec, &mut pools, &nodes, t(1)).0, Action::Nothing);
}

#[test]
fn host_network_pods_use_the_node_address() {
    let (cfg, nodes, mut pools) = setup();
    let mut rec = record(
        json!({"metadata": {"name": "ds"}, "spec": {"nodeName": "sim-1", "hostNetwork": true,
            "containers": [{"name": "a", "image": "agent"}]}}),
        &cfg,
    );
    let (Action::Status(st), _) = plan(&mut rec, &mut pools, &nodes, t(0)) else {
        panic!()
    };
    assert_eq!(st.pod_ip.as_deref(), Some("172.16.0.3"));
    assert_eq!(
        Cidr::parse("10.64.1.0/24").unwrap(),
        *nodes.list[1].cidr.lock().unwrap()
    );
}

#[test]
fn retries_back_off_to_a_minute() {
    assert_eq!(retry_delay(1), SignedDuration::from_secs(1));
    assert_eq!(retry_delay(2), SignedDuration::from_secs(2));
    assert_eq!(retry_delay(6), SignedDuration::from_secs(32));
    assert_eq!(retry_delay(7), SignedDuration::from_secs(60));
    assert_eq!(retry_delay(u32::MAX), SignedDuration::from_secs(60));
}
