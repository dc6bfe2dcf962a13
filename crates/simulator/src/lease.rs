//! Node heartbeats: each simulated node's Lease in `kube-node-lease`,
//! renewed every `renew_interval`, the nodes spread over the interval so
//! 1,000 nodes make a steady 100 writes a second instead of bursts.
//!
//! Upstream counterpart: the kubelet's node lease controller
//! (`pkg/kubelet/nodelease`, `component-helpers/apimachinery/lease`): the
//! Lease is named after the node, held by it, owned by the Node object (so
//! it goes when the node goes) and created again when missing.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::node::{Nodes, SimNode};
use crate::Config;

pub const NAMESPACE: &str = "kube-node-lease";
/// Renewal is spread over this many slots per interval.
const SLOTS: u32 = 10;

/// Errors of lease renewal.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("renewing lease of node {0}: {1}")]
    Renew(String, #[source] kube::Error),
    #[error("creating lease of node {0}: {1}")]
    Create(String, #[source] kube::Error),
}

/// The Lease of `node`, renewed at `now`.
pub fn lease_object(node: &SimNode, uid: &str, duration: Duration, now: Timestamp) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(node.name.clone()),
            namespace: Some(NAMESPACE.into()),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: node.name.clone(),
                uid: uid.into(),
                ..Default::default()
            }]),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(node.name.clone()),
            lease_duration_seconds: Some(duration.as_secs() as i32),
            renew_time: Some(MicroTime(now)),
            ..Default::default()
        }),
    }
}

/// Renews one node's Lease, creating it when it is missing. A node not
/// registered (just deleted) is skipped until it is back.
pub async fn renew(api: &Api<Lease>, cfg: &Config, node: &SimNode) -> Result<(), Error> {
    let now = Timestamp::now();
    let patch = json!({"spec": {
        "holderIdentity": node.name,
        "leaseDurationSeconds": cfg.lease_duration.as_secs(),
        "renewTime": MicroTime(now),
    }});
    match api
        .patch(&node.name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            let Some(uid) = node.uid.lock().unwrap().clone() else {
                return Ok(());
            };
            let lease = lease_object(node, &uid, cfg.lease_duration, now);
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                Err(e) => Err(Error::Create(node.name.clone(), e)),
            }
        }
        Err(e) => Err(Error::Renew(node.name.clone(), e)),
    }
}

/// Renews every Lease every `renew_interval`, node `i` in slot `i % 10`.
pub async fn run(client: kube::Client, cfg: Arc<Config>, nodes: Arc<Nodes>) {
    let api: Api<Lease> = Api::namespaced(client, NAMESPACE);
    let mut tick = tokio::time::interval(cfg.renew_interval / SLOTS);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for slot in (0..SLOTS).cycle() {
        tick.tick().await;
        let due = (slot as usize..nodes.list.len()).step_by(SLOTS as usize);
        let failed = futures::stream::iter(due)
            .map(|i| {
                let (api, cfg, nodes) = (api.clone(), cfg.clone(), nodes.clone());
                async move { renew(&api, &cfg, &nodes.list[i]).await }
            })
            .buffer_unordered(cfg.max_in_flight.max(1))
            .filter_map(|r| async move { r.err() })
            .collect::<Vec<Error>>()
            .await;
        // One line per slot, not one per node, while the server is away.
        if let Some(first) = failed.first() {
            tracing::warn!(failed = failed.len(), error = %first, "renewing node leases");
        }
    }
}
