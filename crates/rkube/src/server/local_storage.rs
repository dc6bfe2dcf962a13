//! The default StorageClass `local-path`, created on start (unless
//! `--disable-local-storage`), so that claims naming no class — and
//! those written for k3s, naming `local-path` — get node-local volumes
//! from the built-in provisioner (rkube-controllers' `localpath`).
//!
//! Upstream counterpart: k3s's `local-storage` manifest (the class, with
//! rancher/local-path-provisioner behind it). As there, a class that
//! exists is left as the user made it; a deleted one comes back on the
//! next start.

use std::time::Duration;

use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, PostParams};
use serde_json::json;

pub const CLASS: &str = "local-path";

fn class() -> StorageClass {
    serde_json::from_value(json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": rkube_controllers::localpath::plan::PROVISIONER,
        "volumeBindingMode": "WaitForFirstConsumer",
        "reclaimPolicy": "Delete",
    }))
    .expect("a valid StorageClass")
}

/// Create the class if absent, retrying until the API answers.
pub async fn ensure_class(client: kube::Client) {
    let api: Api<StorageClass> = Api::all(client);
    loop {
        match api.create(&PostParams::default(), &class()).await {
            Ok(_) => {
                tracing::info!(class = CLASS, "default StorageClass created");
                return;
            }
            Err(kube::Error::Api(s)) if s.code == 409 => return,
            Err(e) => tracing::warn!(error = %e, "cannot create StorageClass local-path yet"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
