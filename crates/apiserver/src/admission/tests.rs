//! Quota admission through the real stores: racing creates never take
//! more than the quota has left.

use std::sync::Arc;

use rkube_registry::Target;
use serde_json::json;

use crate::{ApiServer, Config};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_cannot_overrun_a_quota() {
    let dir = tempfile::tempdir().unwrap();
    let store = rkube_storage::sqlite::SqliteStore::open(&dir.path().join("db")).unwrap();
    let server = ApiServer::new(Arc::new(store), &Config::default()).unwrap();
    server.bootstrap().await.unwrap();
    let quotas = server.resource("", "v1", "resourcequotas").unwrap();
    let hard = json!({"count/configmaps": "5"});
    quotas
        .create(
            Some("default"),
            json!({"metadata": {"name": "q"}, "spec": {"hard": hard}}),
            false,
        )
        .await
        .unwrap();
    // What the quota controller would write first.
    let mut q = quotas.get(Some("default"), "q", None).await.unwrap();
    q["status"] = json!({"hard": hard, "used": {"count/configmaps": "0"}});
    quotas
        .update(Some("default"), "q", q, Target::Status, false)
        .await
        .unwrap();

    let cms = server.resource("", "v1", "configmaps").unwrap().clone();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let cms = cms.clone();
            tokio::spawn(async move {
                cms.create(
                    Some("default"),
                    json!({"metadata": {"name": format!("cm-{i}")}}),
                    false,
                )
                .await
            })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => created += 1,
            Err(e) => {
                assert_eq!(e.code(), 403);
                assert!(
                    e.status().message.contains(
                        "exceeded quota: q, requested: count/configmaps=1, used: count/configmaps=5, limited: count/configmaps=5"
                    ),
                    "{}",
                    e.status().message
                );
            }
        }
    }
    assert_eq!(created, 5);
    let q = quotas.get(Some("default"), "q", None).await.unwrap();
    assert_eq!(q["status"]["used"]["count/configmaps"], "5");
    // A dry run is checked but not charged.
    let err = cms
        .create(Some("default"), json!({"metadata": {"name": "dry"}}), true)
        .await
        .unwrap_err();
    assert_eq!(err.code(), 403);
}
