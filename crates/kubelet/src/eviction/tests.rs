use super::*;
use serde_json::json;

fn pod(spec: serde_json::Value) -> Pod {
    serde_json::from_value(json!({"metadata": {"name": "p", "uid": "u"}, "spec": spec})).unwrap()
}

#[test]
fn admission_under_pressure() {
    let ev = Evictions::default();
    let best_effort = pod(json!({"containers": [{"name": "c"}]}));
    let burstable = pod(json!({"containers": [
        {"name": "c", "resources": {"requests": {"memory": "1Mi"}}}
    ]}));
    let tolerant = pod(json!({
        "containers": [{"name": "c"}],
        "tolerations": [{"key": "node.kubernetes.io/memory-pressure", "operator": "Exists",
            "effect": "NoSchedule"}]
    }));
    assert!(ev.admit(&best_effort).is_ok());
    ev.pressure.send_replace(Pressure {
        memory: true,
        ..Default::default()
    });
    assert_eq!(
        ev.admit(&best_effort),
        Err("The node had condition: [MemoryPressure]. ".to_string())
    );
    assert!(ev.admit(&burstable).is_ok());
    assert!(ev.admit(&tolerant).is_ok());
    ev.pressure.send_replace(Pressure {
        memory: true,
        disk: true,
        pid: false,
    });
    assert_eq!(
        ev.admit(&burstable),
        Err("The node had condition: [MemoryPressure DiskPressure]. ".to_string())
    );
}

#[test]
fn requests_reach_the_worker_until_it_stopped() {
    let ev = Evictions::default();
    let wake = Arc::new(Notify::new());
    ev.register("u", wake.clone());
    ev.request("u", "gone".into(), Duration::from_secs(3));
    assert_eq!(
        ev.pending("u"),
        Some(("gone".into(), Duration::from_secs(3)))
    );
    assert!(ev.evicting("u") && !ev.done("u"));
    ev.stopped("u");
    assert_eq!(ev.pending("u"), None);
    assert!(ev.done("u"));
    ev.unregister("u");
    assert!(!ev.evicting("u"));
}

#[test]
fn evicted_status() {
    let mut st = PodStatus {
        phase: Some("Running".into()),
        conditions: Some(vec![PodCondition {
            type_: "Ready".into(),
            status: "False".into(),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let at = Time(k8s_openapi::jiff::Timestamp::from_second(1000).unwrap());
    mark_evicted(&mut st, "low", Some(&at));
    mark_evicted(&mut st, "low", Some(&at));
    assert_eq!(st.phase.as_deref(), Some("Failed"));
    assert_eq!(st.reason.as_deref(), Some("Evicted"));
    let conditions = st.conditions.unwrap();
    assert_eq!(conditions.len(), 2);
    let d = conditions
        .iter()
        .find(|c| c.type_ == "DisruptionTarget")
        .unwrap();
    assert_eq!(d.reason.as_deref(), Some("TerminationByKubelet"));
    assert_eq!(d.last_transition_time, Some(at));
}

#[test]
fn memory_pressure_message_names_the_greedy_containers() {
    let p = pod(json!({"containers": [
        {"name": "hog"},
        {"name": "calm", "resources": {"requests": {"memory": "64Mi"}}}
    ]}));
    let usage = PodUsage {
        memory: [("hog".to_string(), 70 << 20), ("calm".to_string(), 1 << 20)]
            .into_iter()
            .collect(),
        ..Default::default()
    };
    let t = Thresholds::parse("memory.available<100Mi").unwrap().0[0];
    let obs = Observation {
        available: 50 << 20,
        capacity: 1 << 30,
    };
    assert_eq!(
        pressure_message(&t, obs, &p, &usage),
        "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. \
         Container hog was using 70Mi, request is 0, has larger consumption of memory. "
    );
    let pids = Thresholds::parse("pid.available<10%").unwrap().0[0];
    let obs = Observation {
        available: 100,
        capacity: 10_000,
    };
    assert_eq!(
        pressure_message(&pids, obs, &p, &usage),
        "The node was low on resource: pids. Threshold quantity: 1k, available: 100. "
    );
}
