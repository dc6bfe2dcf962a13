//! The scheduling loop: applies watch events to the cache and queue, pops
//! pods one at a time, runs the algorithm, assumes the chosen node and
//! binds in the background with many bindings in flight.
//!
//! Upstream counterpart: `pkg/scheduler/scheduler.go` and
//! `schedule_one.go` (`ScheduleOne`, the asynchronous binding cycle,
//! `handleSchedulingFailure`). One task owns the cache and queue, so a
//! scheduling cycle needs neither locks nor a snapshot copy; API writes
//! run as their own tasks and report back over a channel.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::Semaphore;

use crate::api::{self, ClusterApi};
use crate::cache::Cache;
use crate::framework::Framework;
use crate::informers::ClusterEvent;
use crate::message::{fit_error, Diagnosis};
use crate::plugins::{inter_pod_affinity, pod_topology_spread};
use crate::podinfo::PodInfo;
use crate::preemption;
use crate::queue::{QueuedPod, SchedulingQueue};
use crate::schedule::Algorithm;

/// Bindings in flight at once.
const MAX_BINDS_IN_FLIGHT: usize = 128;
/// Condition and event writes in flight at once.
const MAX_REPORTS_IN_FLIGHT: usize = 16;
/// Events waiting to be written before new "Scheduled" events are dropped,
/// as client-go's event broadcaster drops when its 1,000-entry queue is
/// full: under load, bindings matter more than their announcements.
const MAX_PENDING_EVENTS: usize = 1000;
/// Schedule this many pods before letting other tasks run.
const BATCH: usize = 32;
pub const NO_NODES: &str = "no nodes available to schedule pods";
const DEFAULT_SCHEDULER: &str = "default-scheduler";

/// A new pod somewhere can only help pods rejected for pod affinity or
/// spreading (upstream's AssignedPodAdd queueing hints).
const POD_ADDED_HELPS: &[&str] = &[inter_pod_affinity::NAME, pod_topology_spread::NAME];

struct BindResult {
    pod: Arc<PodInfo>,
    error: Option<api::Error>,
}

/// Counters, logged now and then.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub scheduled: u64,
    pub unschedulable: u64,
    pub bind_errors: u64,
}

pub struct Scheduler<A: ClusterApi> {
    cache: Cache,
    queue: SchedulingQueue,
    algo: Algorithm,
    api: Arc<A>,
    binds: Arc<Semaphore>,
    reports: Arc<Semaphore>,
    pending_events: Arc<AtomicUsize>,
    results_tx: UnboundedSender<BindResult>,
    results_rx: UnboundedReceiver<BindResult>,
    /// Unbound pods the watch has shown and not deleted (a failed binding
    /// is retried only while the pod is still among them).
    pending: HashSet<String>,
    pods_synced: bool,
    nodes_synced: bool,
    /// PodDisruptionBudgets, for preemption.
    budgets: crate::preemption_pdb::Budgets,
    pub stats: Stats,
}

impl<A: ClusterApi> Scheduler<A> {
    pub fn new(api: Arc<A>) -> Scheduler<A> {
        let (results_tx, results_rx) = unbounded_channel();
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Scheduler {
            cache: Cache::default(),
            queue: SchedulingQueue::default(),
            algo: Algorithm::new(Framework::default(), seed),
            api,
            binds: Arc::new(Semaphore::new(MAX_BINDS_IN_FLIGHT)),
            reports: Arc::new(Semaphore::new(MAX_REPORTS_IN_FLIGHT)),
            pending_events: Arc::new(AtomicUsize::new(0)),
            results_tx,
            results_rx,
            pending: HashSet::new(),
            pods_synced: false,
            nodes_synced: false,
            budgets: Default::default(),
            stats: Stats::default(),
        }
    }

    /// Preempt with these budgets in mind (none otherwise).
    pub fn with_budgets(mut self, budgets: crate::preemption_pdb::Budgets) -> Scheduler<A> {
        self.budgets = budgets;
        self
    }

    /// Apply one watch event.
    pub fn handle(&mut self, ev: ClusterEvent, now: Instant) {
        match ev {
            ClusterEvent::Pod(p) => self.on_pod(p, now),
            ClusterEvent::PodDeleted(p) => self.on_pod_deleted(&p.uid, now),
            ClusterEvent::PodsResynced(uids) => {
                let gone: Vec<String> = self
                    .cache
                    .pod_uids()
                    .filter(|u| {
                        !uids.contains(*u) && self.cache.placement(u).is_some_and(|(_, a)| !a)
                    })
                    .chain(self.pending.iter().filter(|u| !uids.contains(*u)))
                    .cloned()
                    .collect();
                for uid in gone {
                    self.on_pod_deleted(&uid, now);
                }
                self.pods_synced = true;
            }
            ClusterEvent::Node(n) => {
                if self.cache.upsert_node(&n) {
                    self.queue.move_on_event(None, now);
                }
            }
            ClusterEvent::NodeDeleted(name) => self.cache.remove_node(&name),
            ClusterEvent::NodesResynced(names) => {
                let gone: Vec<String> = self
                    .cache
                    .nodes()
                    .iter()
                    .filter(|n| !names.contains(&n.name))
                    .map(|n| n.name.clone())
                    .collect();
                for n in gone {
                    self.cache.remove_node(&n);
                }
                self.nodes_synced = true;
            }
            ClusterEvent::NamespacesChanged => self
                .queue
                .move_on_event(Some(crate::informers::NAMESPACE_CHANGE_HELPS), now),
            ClusterEvent::BudgetsChanged => self.queue.move_preemptors(now),
            ClusterEvent::VolumesChanged => self
                .queue
                .move_on_event(Some(&[crate::plugins::volume_binding::NAME]), now),
        }
    }

    fn on_pod(&mut self, pod: Arc<PodInfo>, now: Instant) {
        if pod.terminal {
            self.on_pod_deleted(&pod.uid, now);
            return;
        }
        if !pod.node_name.is_empty() {
            self.pending.remove(&pod.uid);
            self.queue.delete(&pod.uid);
            // A new pod, or new labels on a placed one, can change what pod
            // affinity and spreading see.
            let relabelled = match self.cache.pod(&pod.uid) {
                None => true,
                Some(old) => old.labels != pod.labels,
            };
            self.cache.add_pod(pod);
            if relabelled {
                self.queue.move_on_event(Some(POD_ADDED_HELPS), now);
            }
            return;
        }
        if pod.scheduler_name != DEFAULT_SCHEDULER {
            return;
        }
        if pod.deleting {
            self.on_pod_deleted(&pod.uid, now);
            return;
        }
        self.pending.insert(pod.uid.clone());
        if self.cache.placement(&pod.uid).is_some() {
            // Assumed: its binding is in flight.
            return;
        }
        if pod.nominated_node.is_empty() {
            self.cache.clear_nominated(&pod.uid);
        } else {
            self.cache.set_nominated(pod.clone(), &pod.nominated_node);
        }
        self.queue.add_or_update(pod, now);
    }

    fn on_pod_deleted(&mut self, uid: &str, now: Instant) {
        self.pending.remove(uid);
        self.queue.delete(uid);
        self.cache.clear_nominated(uid);
        if self.cache.placement(uid).is_some() {
            self.cache.remove_pod(uid);
            self.queue.move_on_event(None, now);
        }
    }

    fn on_bind_result(&mut self, r: BindResult, now: Instant) {
        let Some(err) = r.error else {
            return;
        };
        self.stats.bind_errors += 1;
        tracing::warn!(pod = %r.pod.key(), error = %err, "binding failed");
        self.cache.forget(&r.pod.uid);
        if !self.pending.contains(&r.pod.uid) {
            return;
        }
        self.queue.add_backoff(r.pod.clone(), now);
        let msg = format!("Binding rejected: {err}");
        self.report(r.pod, "SchedulerError", msg, None);
    }

    /// One scheduling cycle for `qp`.
    pub fn schedule_one(&mut self, qp: QueuedPod, now: Instant) {
        let pod = qp.pod;
        let failure = match self.algo.schedule(&self.cache, &pod) {
            Ok(node) => {
                self.cache.assume(&pod, &node);
                self.queue.done(&pod.uid);
                self.stats.scheduled += 1;
                self.spawn_bind(pod, node);
                return;
            }
            Err(f) => f,
        };
        self.stats.unschedulable += 1;
        let plugins = failure.plugins();
        let (message, nominated) = if failure.num_nodes == 0 {
            (NO_NODES.to_string(), None)
        } else {
            let budgets = self.budgets.snapshot();
            let outcome =
                preemption::preempt(&self.algo.framework, &self.cache, &pod, &failure, &budgets);
            let (post, nominated) = match outcome {
                Ok(c) => {
                    self.spawn_preemption(&pod, &c);
                    (None, Some(c.node))
                }
                Err(m) => (Some(format!("preemption: {m}")), None),
            };
            let prefilter = failure.prefilter.as_ref().map(|s| s.reasons.join(", "));
            let d = Diagnosis {
                num_nodes: failure.num_nodes,
                prefilter: prefilter.as_deref(),
                reasons: failure
                    .statuses
                    .iter()
                    .map(|(_, s)| s.reasons.as_slice())
                    .collect(),
                postfilter: post.as_deref(),
            };
            (fit_error(&d), nominated)
        };
        tracing::debug!(pod = %pod.key(), %message, "unschedulable");
        if let Some(node) = &nominated {
            let mut p = (*pod).clone();
            p.nominated_node = node.clone();
            self.cache.set_nominated(Arc::new(p), node);
        }
        self.queue.failed(&pod.uid, plugins, now);
        self.report(pod, "Unschedulable", message, nominated);
    }

    fn spawn_bind(&self, pod: Arc<PodInfo>, node: String) {
        let (api, binds, reports, tx, pending) = (
            self.api.clone(),
            self.binds.clone(),
            self.reports.clone(),
            self.results_tx.clone(),
            self.pending_events.clone(),
        );
        tokio::spawn(async move {
            // PreBind may wait for volumes; it holds no binding permit.
            let result = match api.pre_bind(&pod, &node).await {
                Ok(()) => {
                    let _permit = binds.acquire_owned().await;
                    api.bind(&pod, &node).await
                }
                Err(e) => Err(e),
            };
            let ok = result.is_ok();
            let _ = tx.send(BindResult {
                pod: pod.clone(),
                error: result.err(),
            });
            if ok && pending.fetch_add(1, Ordering::Relaxed) < MAX_PENDING_EVENTS {
                let _permit = reports.acquire_owned().await;
                let msg = format!(
                    "Successfully assigned {}/{} to {node}",
                    pod.namespace, pod.name
                );
                if let Err(e) = api
                    .event(&pod, "Normal", "Scheduled", "Binding", &msg)
                    .await
                {
                    tracing::debug!(error = %e, "scheduled event not recorded");
                }
            }
            if ok {
                pending.fetch_sub(1, Ordering::Relaxed);
            }
        });
    }

    fn spawn_preemption(&self, pod: &PodInfo, c: &preemption::Candidate) {
        for v in &c.victims {
            let (api, victim) = (self.api.clone(), v.clone());
            let msg = format!("Preempted by pod {} on node {}", pod.uid, c.node);
            tokio::spawn(async move {
                if let Err(e) = api.delete_pod(&victim).await {
                    tracing::warn!(error = %e, "preemption victim not deleted");
                    return;
                }
                let _ = api
                    .event(&victim, "Normal", "Preempted", "Preempting", &msg)
                    .await;
            });
        }
    }

    /// Tell the user: a FailedScheduling event, and the PodScheduled
    /// condition (only written when it changes, as upstream).
    fn report(
        &self,
        pod: Arc<PodInfo>,
        reason: &'static str,
        message: String,
        nominated: Option<String>,
    ) {
        let want = ("False".to_string(), reason.to_string(), message.clone());
        let write_condition = pod.scheduled_condition.as_ref() != Some(&want)
            || nominated
                .as_deref()
                .is_some_and(|n| n != pod.nominated_node);
        // Past MAX_PENDING_EVENTS waiting writes the event is dropped, as
        // for "Scheduled": with 10,000 pods retried every 10 s and no node,
        // a task per attempt piled up faster than the API server took the
        // writes (RSS grew about 1 MiB/s without end).
        let pending = self.pending_events.clone();
        let write_event = pending.fetch_add(1, Ordering::Relaxed) < MAX_PENDING_EVENTS;
        if !write_event {
            pending.fetch_sub(1, Ordering::Relaxed);
            if !write_condition {
                return;
            }
        }
        let (api, reports) = (self.api.clone(), self.reports.clone());
        tokio::spawn(async move {
            let _permit = reports.acquire_owned().await;
            if write_event {
                if let Err(e) = api
                    .event(&pod, "Warning", "FailedScheduling", "Scheduling", &message)
                    .await
                {
                    tracing::debug!(error = %e, "FailedScheduling event not recorded");
                }
                pending.fetch_sub(1, Ordering::Relaxed);
            }
            if write_condition {
                if let Err(e) = api
                    .set_unschedulable(&pod, reason, &message, nominated.as_deref())
                    .await
                {
                    tracing::debug!(error = %e, "PodScheduled condition not written");
                }
            }
        });
    }

    fn ready(&self) -> bool {
        self.pods_synced && self.nodes_synced
    }

    /// Run until the watches end.
    pub async fn run(mut self, mut events: UnboundedReceiver<ClusterEvent>) {
        let mut last_log = Instant::now();
        let mut logged = Stats::default();
        loop {
            let mut batch = 0;
            loop {
                let now = Instant::now();
                while let Ok(ev) = events.try_recv() {
                    self.handle(ev, now);
                }
                while let Ok(r) = self.results_rx.try_recv() {
                    self.on_bind_result(r, now);
                }
                self.queue.flush(now);
                if !self.ready() || batch >= BATCH {
                    break;
                }
                let Some(qp) = self.queue.pop() else {
                    break;
                };
                self.schedule_one(qp, now);
                batch += 1;
            }
            if last_log.elapsed() >= Duration::from_secs(10)
                && self.stats.scheduled != logged.scheduled
            {
                tracing::info!(
                    scheduled = self.stats.scheduled,
                    unschedulable = self.stats.unschedulable,
                    bind_errors = self.stats.bind_errors,
                    queued = self.queue.len(),
                    nodes = self.cache.nodes().len(),
                    "scheduler progress"
                );
                last_log = Instant::now();
                logged = self.stats;
            }
            if batch >= BATCH {
                tokio::task::yield_now().await;
                continue;
            }
            let now = Instant::now();
            let wake = self
                .queue
                .next_wakeup()
                .unwrap_or(now + Duration::from_secs(1))
                .min(now + Duration::from_secs(1));
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(ev) => self.handle(ev, Instant::now()),
                    None => return,
                },
                Some(r) = self.results_rx.recv() => self.on_bind_result(r, Instant::now()),
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
        }
    }
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
