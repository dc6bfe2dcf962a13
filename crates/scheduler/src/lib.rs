//! rkube's scheduler: assigns pods to nodes, as an ordinary API client.
//!
//! Upstream counterpart: `cmd/kube-scheduler` and `pkg/scheduler`. Only the
//! holder of the `kube-system/kube-scheduler` Lease schedules when leader
//! election is on. Pods with `spec.schedulerName: default-scheduler` and no
//! `spec.nodeName` are queued ([`queue`]), run through the default
//! profile's filter and score plugins ([`framework`], [`plugins`]) over a
//! cache of nodes and pods ([`cache`]), assumed on the chosen node and bound
//! through `pods/binding` in the background ([`scheduler`]); pods that fit
//! nowhere get upstream's FailedScheduling event and PodScheduled=False
//! condition ([`message`]) and may preempt lower-priority pods
//! ([`preemption`]).

pub mod api;
pub mod cache;
pub mod framework;
pub mod informers;
pub mod message;
pub mod namespaces;
pub mod nodeinfo;
pub mod plugins;
pub mod podinfo;
pub mod preemption;
pub mod preemption_pdb;
pub mod queue;
pub mod resources;
pub mod schedule;
pub mod scheduler;
pub mod selectors;
pub mod watched;

use std::sync::Arc;

use rkube_controllers::leader_election::{run_leading, KubeLeaseStore, LeaseConfig};
use tokio::task::JoinHandle;

/// What the user asked of the scheduler.
#[derive(Clone, Debug)]
pub struct Options {
    /// `--leader-elect`: act only while holding the Lease.
    pub leader_elect: bool,
    /// This instance's identity in the Lease (upstream: hostname_uuid).
    pub identity: String,
}

/// Errors of the scheduler.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("leader election: {0}")]
    LeaderElection(#[from] rkube_controllers::leader_election::Error),
    #[error("the pod and node watches ended")]
    WatchesEnded,
}

/// Aborts the watch tasks when the scheduling loop is dropped (on lost
/// leadership `run_leading` drops it).
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

async fn schedule(client: kube::Client) -> Error {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let classes = informers::PriorityClasses::default();
    let (listed_tx, listed_rx) = tokio::sync::oneshot::channel();
    let mut tasks = Tasks(vec![tokio::spawn(informers::watch_priority_classes(
        client.clone(),
        classes.clone(),
        listed_tx,
    ))]);
    let _ = listed_rx.await;
    // Pods are parsed against namespace labels and Service selectors:
    // both listed before the first pod.
    let listers = podinfo::Listers::default();
    let (ns_listed_tx, ns_listed_rx) = tokio::sync::oneshot::channel();
    let (svc_listed_tx, svc_listed_rx) = tokio::sync::oneshot::channel();
    let ns_tx = tx.clone();
    tasks.0.push(tokio::spawn(namespaces::watch_namespaces(
        client.clone(),
        listers.namespaces.clone(),
        ns_listed_tx,
        move || {
            let _ = ns_tx.send(informers::ClusterEvent::NamespacesChanged);
        },
    )));
    tasks
        .0
        .push(tokio::spawn(plugins::service_selectors::watch_services(
            client.clone(),
            listers.services.clone(),
            svc_listed_tx,
        )));
    let (vol_listed_tx, vol_listed_rx) = tokio::sync::oneshot::channel();
    let vol_tx = tx.clone();
    tasks
        .0
        .push(tokio::spawn(plugins::volume_binding::watch_volumes(
            client.clone(),
            listers.volumes.clone(),
            vol_listed_tx,
            move || {
                let _ = vol_tx.send(informers::ClusterEvent::VolumesChanged);
            },
        )));
    let _ = futures::future::join3(ns_listed_rx, svc_listed_rx, vol_listed_rx).await;
    tasks.0.push(tokio::spawn(informers::watch_nodes(
        client.clone(),
        tx.clone(),
    )));
    let budgets = preemption_pdb::Budgets::default();
    let pdb_tx = tx.clone();
    tasks.0.push(tokio::spawn(preemption_pdb::watch_budgets(
        client.clone(),
        budgets.clone(),
        move || {
            let _ = pdb_tx.send(informers::ClusterEvent::BudgetsChanged);
        },
    )));
    tasks.0.push(tokio::spawn(informers::watch_pods(
        client.clone(),
        classes,
        listers,
        tx,
    )));
    let api = Arc::new(api::KubeApi::new(client));
    scheduler::Scheduler::new(api)
        .with_budgets(budgets)
        .run(rx)
        .await;
    Error::WatchesEnded
}

/// Run the scheduler. Returns only on failure (e.g. a lost Lease).
pub async fn run(client: kube::Client, opts: Options) -> Result<(), Error> {
    if !opts.leader_elect {
        return Err(schedule(client).await);
    }
    let cfg = LeaseConfig::new("kube-scheduler", &opts.identity);
    let store = KubeLeaseStore::new(client.clone(), &cfg);
    Err(run_leading(&store, &cfg, schedule(client)).await?)
}
