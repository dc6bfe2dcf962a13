//! Eviction against PDBs: the pure budget arithmetic, then whole
//! evictions through the pods and PDB stores on SQLite.

use std::sync::Arc;

use rkube_api::catalog;
use rkube_machinery::time::parse_time;
use rkube_storage::sqlite::SqliteStore;
use serde_json::{json, Value};

use super::*;
use crate::resources::strategy_for;
use crate::SystemClock;

fn now() -> Timestamp {
    parse_time("2026-01-02T03:04:05Z").unwrap()
}

fn pdb(allowed: i64) -> Value {
    json!({"metadata": {"name": "budget", "namespace": "default", "generation": 1},
           "spec": {"selector": {"matchLabels": {"app": "web"}}, "minAvailable": 1},
           "status": {"observedGeneration": 1, "disruptionsAllowed": allowed,
                      "currentHealthy": 2, "desiredHealthy": 1, "expectedPods": 2}})
}

#[test]
fn decrement_spends_one_disruption_and_records_the_pod() {
    let out = check_and_decrement(&pdb(1), "p", &now(), false).unwrap();
    assert_eq!(out["status"]["disruptionsAllowed"], 0);
    assert_eq!(
        out["status"]["disruptedPods"],
        json!({"p": "2026-01-02T03:04:05Z"})
    );
    let cond = &out["status"]["conditions"][0];
    assert_eq!(cond["type"], "DisruptionAllowed");
    assert_eq!(cond["status"], "False");
    assert_eq!(cond["reason"], "InsufficientPods");
    // A dry run spends nothing it records.
    let dry = check_and_decrement(&pdb(2), "p", &now(), true).unwrap();
    assert_eq!(dry["status"]["disruptionsAllowed"], 1);
    assert!(dry["status"].get("disruptedPods").is_none());
    assert!(dry["status"].get("conditions").is_none());
}

#[test]
fn exhausted_or_unprocessed_budgets_answer_429() {
    let err = check_and_decrement(&pdb(0), "p", &now(), false).unwrap_err();
    assert_eq!(err.code(), 429);
    assert_eq!(err.status().message, VIOLATES_BUDGET);
    let cause = &err.status().details.as_ref().unwrap().causes[0];
    assert_eq!(cause.cause_type, "DisruptionBudget");
    assert_eq!(
        cause.message,
        "The disruption budget budget needs 1 healthy pods and has 2 currently"
    );

    let mut stale = pdb(1);
    stale["metadata"]["generation"] = json!(2);
    let err = check_and_decrement(&stale, "p", &now(), false).unwrap_err();
    assert_eq!(err.code(), 429);
    assert_eq!(
        err.status().details.as_ref().unwrap().retry_after_seconds,
        10
    );

    let err = check_and_decrement(&pdb(-1), "p", &now(), false).unwrap_err();
    assert_eq!(err.code(), 403);
}

#[test]
fn budgets_select_by_labels_and_empty_selects_nothing() {
    let pod = json!({"metadata": {"name": "p", "namespace": "default", "labels": {"app": "web"}}});
    let mut empty = pdb(1);
    empty["spec"]["selector"] = json!({});
    let mut other_ns = pdb(1);
    other_ns["metadata"]["namespace"] = json!("other");
    let pdbs = vec![pdb(1), empty, other_ns];
    assert_eq!(matching_budgets(&pod, &pdbs).len(), 1);
}

#[test]
fn terminal_pending_and_deleted_pods_ignore_budgets() {
    for phase in ["Succeeded", "Failed", "Pending"] {
        assert!(can_ignore_budget(&json!({"status": {"phase": phase}})));
    }
    assert!(!can_ignore_budget(&json!({"status": {"phase": "Running"}})));
    assert!(can_ignore_budget(&json!({"metadata": {
        "deletionTimestamp": "2026-01-01T00:00:00Z"}, "status": {"phase": "Running"}})));
}

struct Fixture {
    _dir: tempfile::TempDir,
    pods: ResourceStore,
    pdbs: ResourceStore,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let kv = Arc::new(SqliteStore::open(&dir.path().join("state.db")).unwrap());
    let open = |group, version, plural| {
        let info = catalog::lookup(group, version, plural).unwrap();
        ResourceStore::new(info, strategy_for(info), kv.clone(), Arc::new(SystemClock))
    };
    Fixture {
        pods: open("", "v1", "pods"),
        pdbs: open("policy", "v1", "poddisruptionbudgets"),
        _dir: dir,
    }
}

impl Fixture {
    fn evictor(&self) -> Evictor<'_> {
        Evictor {
            pods: &self.pods,
            budgets: &self.pdbs,
        }
    }

    /// A running, ready pod on a node.
    async fn running_pod(&self, name: &str) {
        let pod = json!({"metadata": {"name": name, "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]}});
        let mut pod = self.pods.create(Some("default"), pod, false).await.unwrap();
        pod["status"] = json!({"phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}]});
        self.pods
            .update(Some("default"), name, pod, Target::Status, false)
            .await
            .unwrap();
    }

    async fn budget(&self, allowed: i64) {
        let created = self
            .pdbs
            .create(
                Some("default"),
                json!({"metadata": {"name": "budget"}, "spec": pdb(allowed)["spec"]}),
                false,
            )
            .await
            .unwrap();
        let mut with_status = created;
        with_status["status"] = pdb(allowed)["status"].clone();
        self.pdbs
            .update(
                Some("default"),
                "budget",
                with_status,
                Target::Status,
                false,
            )
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn eviction_spends_the_budget_then_refuses() {
    let f = fixture();
    f.running_pod("a").await;
    f.running_pod("b").await;
    f.budget(1).await;
    let opts = DeleteOptions {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    f.evictor().evict("default", "a", &opts).await.unwrap();
    let gone = f.pods.get(Some("default"), "a", None).await.unwrap_err();
    assert_eq!(gone.code(), 404);
    let budget = f.pdbs.get(Some("default"), "budget", None).await.unwrap();
    assert_eq!(budget["status"]["disruptionsAllowed"], 0);
    assert!(budget["status"]["disruptedPods"]["a"].is_string());

    let err = f.evictor().evict("default", "b", &opts).await.unwrap_err();
    assert_eq!(err.code(), 429);
    assert_eq!(err.status().message, VIOLATES_BUDGET);
    f.pods.get(Some("default"), "b", None).await.unwrap();
}

#[tokio::test]
async fn graceful_eviction_marks_the_pod_as_a_disruption_target() {
    let f = fixture();
    f.running_pod("a").await;
    f.evictor()
        .evict("default", "a", &DeleteOptions::default())
        .await
        .unwrap();
    let pod = f.pods.get(Some("default"), "a", None).await.unwrap();
    assert!(meta::deletion_timestamp(&pod).is_some());
    assert_eq!(pod["metadata"]["deletionGracePeriodSeconds"], 30);
    let cond = pod["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "DisruptionTarget")
        .expect("DisruptionTarget condition");
    assert_eq!(cond["reason"], "EvictionByEvictionAPI");
}

#[tokio::test]
async fn two_budgets_are_an_error_and_pending_pods_go_directly() {
    let f = fixture();
    f.running_pod("a").await;
    f.budget(1).await;
    let second = json!({"metadata": {"name": "second"}, "spec": pdb(1)["spec"]});
    f.pdbs.create(Some("default"), second, false).await.unwrap();
    let err = f
        .evictor()
        .evict("default", "a", &DeleteOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), 500);
    assert_eq!(err.status().message, MANY_BUDGETS);

    // Pending: not running, so no budget applies.
    let pending = json!({"metadata": {"name": "p", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    f.pods
        .create(Some("default"), pending, false)
        .await
        .unwrap();
    f.evictor()
        .evict("default", "p", &DeleteOptions::default())
        .await
        .unwrap();
    assert!(f.pods.get(Some("default"), "p", None).await.is_err());
}

#[tokio::test]
async fn unready_pods_go_without_spending_when_the_budget_is_healthy() {
    let f = fixture();
    let pod = json!({"metadata": {"name": "sick", "labels": {"app": "web"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]}});
    let mut pod = f.pods.create(Some("default"), pod, false).await.unwrap();
    pod["status"] =
        json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]});
    f.pods
        .update(Some("default"), "sick", pod, Target::Status, false)
        .await
        .unwrap();
    f.budget(0).await;
    let opts = DeleteOptions {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    f.evictor().evict("default", "sick", &opts).await.unwrap();
    assert!(f.pods.get(Some("default"), "sick", None).await.is_err());
    let budget = f.pdbs.get(Some("default"), "budget", None).await.unwrap();
    assert_eq!(budget["status"]["disruptionsAllowed"], 0);
}
