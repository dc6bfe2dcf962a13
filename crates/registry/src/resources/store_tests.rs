//! The strategies driven through the generic store on SQLite: what a
//! client sees from create and update, generation and status handling,
//! and errors as Status messages.

use std::sync::Arc;

use rkube_api::catalog;
use rkube_storage::sqlite::SqliteStore;
use serde_json::{json, Value};

use super::strategy_for;
use crate::{ResourceStore, SystemClock, Target};

fn store(group: &str, version: &str, plural: &str) -> (tempfile::TempDir, ResourceStore) {
    let dir = tempfile::tempdir().unwrap();
    let kv = Arc::new(SqliteStore::open(&dir.path().join("state.db")).unwrap());
    let info = catalog::lookup(group, version, plural).unwrap();
    let rs = ResourceStore::new(info, strategy_for(info), kv, Arc::new(SystemClock));
    (dir, rs)
}

fn deployment() -> Value {
    json!({"metadata": {"name": "web"}, "spec": {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}}})
}

#[tokio::test]
async fn deployments_count_spec_changes_and_keep_status() {
    let (_dir, rs) = store("apps", "v1", "deployments");
    let created = rs
        .create(Some("default"), deployment(), false)
        .await
        .unwrap();
    assert_eq!(created["metadata"]["generation"], 1);
    assert_eq!(created["status"], json!({}));
    assert_eq!(created["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(created["kind"], "Deployment");

    // The controller reports status through the subresource.
    let mut with_status = created.clone();
    with_status["status"] = json!({"replicas": 1});
    rs.update(Some("default"), "web", with_status, Target::Status, false)
        .await
        .unwrap();

    // A PUT of the bare manifest with one more replica: defaults come
    // back, status stays, generation counts the change.
    let mut scaled = deployment();
    scaled["spec"]["replicas"] = json!(3);
    let updated = rs
        .update(Some("default"), "web", scaled, Target::Main, false)
        .await
        .unwrap();
    assert_eq!(updated["metadata"]["generation"], 2);
    assert_eq!(updated["status"], json!({"replicas": 1}));
    assert_eq!(updated["spec"]["revisionHistoryLimit"], 10);

    // The same PUT again changes nothing.
    let mut same = deployment();
    same["spec"]["replicas"] = json!(3);
    let again = rs
        .update(Some("default"), "web", same, Target::Main, false)
        .await
        .unwrap();
    assert_eq!(again["metadata"]["generation"], 2);

    let mut moved = deployment();
    moved["spec"]["selector"] = json!({"matchLabels": {"app": "web", "tier": "x"}});
    moved["spec"]["template"]["metadata"]["labels"]["tier"] = json!("x");
    let err = rs
        .update(Some("default"), "web", moved, Target::Main, false)
        .await
        .unwrap_err();
    assert_eq!(err.code(), 422);
    assert_eq!(
        err.status().message,
        r#"Deployment.apps "web" is invalid: spec.selector: Invalid value: {"matchLabels":{"app":"web","tier":"x"}}: field is immutable"#
    );
}

#[tokio::test]
async fn invalid_workloads_are_refused_with_upstreams_message() {
    let (_dir, rs) = store("apps", "v1", "deployments");
    let mut bad = deployment();
    bad["spec"]["selector"] = json!({"matchLabels": {"app": "other"}});
    let err = rs.create(Some("default"), bad, false).await.unwrap_err();
    assert_eq!(
        err.status().message,
        r#"Deployment.apps "web" is invalid: spec.template.metadata.labels: Invalid value: {"app":"web"}: `selector` does not match template `labels`"#
    );
}

#[tokio::test]
async fn pods_are_born_pending_and_stay_put() {
    let (_dir, rs) = store("", "v1", "pods");
    let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    let created = rs.create(Some("default"), pod, false).await.unwrap();
    assert_eq!(
        created["status"],
        json!({"phase": "Pending", "qosClass": "BestEffort"})
    );
    assert!(created["metadata"].get("generation").is_none());
    assert_eq!(created["spec"]["serviceAccountName"], "default");

    // Changing the image is fine; changing the restart policy is not.
    let mut image = created.clone();
    image["spec"]["containers"][0]["image"] = json!("busybox:1.36");
    let updated = rs
        .update(Some("default"), "p", image, Target::Main, false)
        .await
        .unwrap();
    assert_eq!(updated["spec"]["containers"][0]["image"], "busybox:1.36");
    let mut restart = updated.clone();
    restart["spec"]["restartPolicy"] = json!("Never");
    let err = rs
        .update(Some("default"), "p", restart, Target::Main, false)
        .await
        .unwrap_err();
    assert!(
        err.status().message.starts_with(r#"Pod "p" is invalid: spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`"#),
        "{}",
        err.status().message
    );

    let empty = json!({"metadata": {"name": "q"}, "spec": {}});
    let err = rs.create(Some("default"), empty, false).await.unwrap_err();
    assert_eq!(
        err.status().message,
        r#"Pod "q" is invalid: spec.containers: Required value"#
    );
}

#[tokio::test]
async fn secrets_fold_string_data_through_the_store() {
    let (_dir, rs) = store("", "v1", "secrets");
    let secret = json!({"metadata": {"name": "s"}, "stringData": {"password": "hunter2"}});
    let created = rs.create(Some("default"), secret, false).await.unwrap();
    assert_eq!(created["type"], "Opaque");
    assert_eq!(created["data"], json!({"password": "aHVudGVyMg=="}));
    let read = rs.get(Some("default"), "s", None).await.unwrap();
    assert!(read.get("stringData").is_none());
}

#[test]
fn every_catalog_resource_has_a_strategy() {
    for info in catalog::all() {
        let s = strategy_for(info);
        // Workloads and the resources with their own rules count spec
        // changes exactly when upstream does.
        let expect_generation = matches!(
            (info.group, info.plural),
            (
                "apps",
                "deployments" | "replicasets" | "statefulsets" | "daemonsets"
            ) | ("batch", "jobs" | "cronjobs")
                | ("", "replicationcontrollers")
        );
        if expect_generation {
            assert!(s.tracks_generation(), "{}/{}", info.group, info.plural);
        }
        if matches!(
            info.plural,
            "pods" | "nodes" | "services" | "events" | "configmaps" | "secrets"
        ) && info.group.is_empty()
        {
            assert!(!s.tracks_generation(), "{}", info.plural);
        }
    }
}

#[tokio::test]
async fn unscheduled_pods_go_at_once_and_running_ones_wait() {
    let (_dir, rs) = store("", "v1", "pods");
    let pod = |name: &str| json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    rs.create(Some("default"), pod("idle"), false)
        .await
        .unwrap();
    let gone = rs
        .delete(Some("default"), "idle", &Default::default())
        .await
        .unwrap();
    assert!(matches!(gone, crate::DeleteOutcome::Deleted(_)), "{gone:?}");

    let mut on_node = pod("busy");
    on_node["spec"]["nodeName"] = json!("n1");
    rs.create(Some("default"), on_node, false).await.unwrap();
    let marked = rs
        .delete(Some("default"), "busy", &Default::default())
        .await
        .unwrap();
    let crate::DeleteOutcome::Pending(marked) = marked else {
        panic!("a running pod waits for its kubelet: {marked:?}")
    };
    assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 30);
}
