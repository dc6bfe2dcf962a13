use super::*;
use serde_json::{json, Value};

fn now() -> k8s_openapi::jiff::Timestamp {
    "2024-05-01T12:00:00Z".parse().unwrap()
}

fn template() -> Value {
    json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
        {"name": "web", "image": "nginx:1.27"}, {"name": "log", "image": "busybox"}
    ]}})
}

#[test]
fn deployment_row() {
    let d = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "creationTimestamp": "2024-05-01T11:57:00Z"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template()},
        "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
    });
    assert_eq!(
        DEPLOYMENT.row(&d, now()).unwrap(),
        vec![
            json!("web"),
            json!("2/3"),
            json!(3),
            json!(2),
            json!("3m"),
            json!("web,log"),
            json!("nginx:1.27,busybox"),
            json!("app=web"),
        ]
    );
    let names: Vec<_> = (DEPLOYMENT.columns)().iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        [
            "Name",
            "Ready",
            "Up-to-date",
            "Available",
            "Age",
            "Containers",
            "Images",
            "Selector"
        ]
    );
}

#[test]
fn fresh_deployment_defaults_to_one_replica_and_zero_counts() {
    let d = json!({"metadata": {"name": "web"}, "spec": {"selector": {}, "template": template()}});
    let cells = DEPLOYMENT.row(&d, now()).unwrap();
    assert_eq!(cells[1..4], [json!("0/1"), json!(0), json!(0)]);
    assert_eq!(
        cells[7], "",
        "an empty deployment selector prints empty, not <none>"
    );
}

#[test]
fn replica_set_and_stateful_set_rows() {
    let rs = json!({"metadata": {"name": "web-5d"}, "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": template()},
        "status": {"replicas": 2, "readyReplicas": 1}});
    assert_eq!(
        REPLICA_SET.row(&rs, now()).unwrap()[1..4],
        [json!(2), json!(2), json!(1)]
    );
    let sts = json!({"metadata": {"name": "db"}, "spec": {"replicas": 3, "serviceName": "db", "selector": {}, "template": template()},
        "status": {"replicas": 3, "readyReplicas": 3}});
    assert_eq!(STATEFUL_SET.row(&sts, now()).unwrap()[1], "3/3");
}

#[test]
fn job_status_completions_and_duration() {
    let job = |spec: Value, status: Value| {
        let mut spec = spec;
        spec["template"] = template();
        JOB.row(
            &json!({"metadata": {"name": "j"}, "spec": spec, "status": status}),
            now(),
        )
        .unwrap()
    };
    let cells = job(
        json!({"completions": 3}),
        json!({"succeeded": 3, "startTime": "2024-05-01T11:00:00Z", "completionTime": "2024-05-01T11:02:05Z",
               "conditions": [{"type": "Complete", "status": "True"}]}),
    );
    assert_eq!(
        cells[1..4],
        [json!("Complete"), json!("3/3"), json!("2m5s")]
    );
    let cells = job(
        json!({"parallelism": 4}),
        json!({"succeeded": 1, "startTime": "2024-05-01T11:59:30Z"}),
    );
    assert_eq!(
        cells[1..4],
        [json!("Running"), json!("1/1 of 4"), json!("30s")]
    );
    let cells = job(
        json!({}),
        json!({"conditions": [{"type": "Failed", "status": "True"}]}),
    );
    assert_eq!(cells[1..4], [json!("Failed"), json!("0/1"), json!("")]);
    let cells = job(
        json!({"suspend": true}),
        json!({"conditions": [{"type": "Suspended", "status": "True"}]}),
    );
    assert_eq!(cells[1], "Suspended");
}

#[test]
fn cron_job_row() {
    let cj = json!({"metadata": {"name": "nightly"}, "spec": {"schedule": "0 3 * * *", "suspend": false,
        "jobTemplate": {"spec": {"template": template()}}},
        "status": {"active": [{"name": "nightly-1"}], "lastScheduleTime": "2024-05-01T03:00:00Z"}});
    let cells = CRON_JOB.row(&cj, now()).unwrap();
    assert_eq!(
        cells[1..6],
        [
            json!("0 3 * * *"),
            json!("<none>"),
            json!("False"),
            json!(1),
            json!("9h")
        ]
    );
}

#[test]
fn controller_revision_names_its_owner() {
    let cr = json!({"metadata": {"name": "web-7c", "ownerReferences": [
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "u", "controller": true}
    ]}, "revision": 2});
    let cells = CONTROLLER_REVISION.row(&cr, now()).unwrap();
    assert_eq!(cells[1..3], [json!("statefulset.apps/web"), json!(2)]);
}

#[test]
fn hpa_targets_for_both_versions() {
    let v2 = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web"},
    "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 5, "metrics": [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}},
        {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "10"}}},
        {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "1Gi"}}}
    ]},
    "status": {"currentReplicas": 2, "desiredReplicas": 2, "currentMetrics": [
        {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 40}}}
    ]}});
    let cells = hpa::HPA.row(&v2, now()).unwrap();
    assert_eq!(
        cells[1..6],
        [
            json!("Deployment/web"),
            json!("cpu: 40%/80%, <unknown>/10 + 1 more..."),
            json!("1"),
            json!(5),
            json!(2)
        ]
    );
    let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web"},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 3, "targetCPUUtilizationPercentage": 50},
        "status": {"currentReplicas": 1, "desiredReplicas": 1}});
    let cells = hpa::HPA.row(&v1, now()).unwrap();
    assert_eq!(cells[2..4], [json!("cpu: <unknown>/50%"), json!("<unset>")]);
}

#[test]
fn pdb_row() {
    let pdb = json!({"metadata": {"name": "web"}, "spec": {"minAvailable": "50%"},
        "status": {"disruptionsAllowed": 1, "currentHealthy": 2, "desiredHealthy": 1, "expectedPods": 2}});
    assert_eq!(
        PDB.row(&pdb, now()).unwrap()[1..4],
        [json!("50%"), json!("N/A"), json!(1)]
    );
}
