//! The kubelet of every simulated node at once: one watch over bound pods,
//! a work queue of pod keys, a fixed pool of workers (which bounds the
//! writes in flight), and one timer heap for every pending exit, restart,
//! readiness and end of grace period.
//!
//! Upstream counterpart: the kubelet's sync loop, pod workers and status
//! manager (`pkg/kubelet/kubelet.go`, `pkg/kubelet/status`), and kwok's
//! pod controller, which likewise serves many nodes from one watch. Each
//! sync is a pure [`plan`] over the pod's record; the worker then writes
//! the status (merge patch of pods/status) or deletes the pod with grace
//! period 0 and a uid precondition, as the kubelet's status manager does.

pub mod run;
pub mod spec;
pub mod status;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::json;
use tokio::sync::Notify;

use crate::ipam::Pool;
use crate::node::Nodes;
use crate::Config;
use run::PodRun;
use spec::SimSpec;
use status::Placement;

type Key = Arc<str>;

/// What the simulator knows of one pod bound to one of its nodes.
struct Record {
    namespace: String,
    name: String,
    uid: String,
    node: usize,
    spec: SimSpec,
    /// The status in the API (or the one we last wrote).
    observed: PodStatus,
    /// When the stop for deletion is due.
    stop_at: Option<Timestamp>,
    run: Option<PodRun>,
    pod_ip: Option<String>,
    /// The final delete went through.
    deleted: bool,
    /// The earliest timer pending for this pod.
    wake: Option<Timestamp>,
    /// Failed syncs in a row (the retry backs off).
    failures: u32,
}

/// What a sync does.
#[derive(Debug, PartialEq)]
enum Action {
    Nothing,
    Status(PodStatus),
    /// Optionally write the final status, then delete.
    Delete(Option<PodStatus>),
}

struct State {
    records: HashMap<Key, Record>,
    queue: VecDeque<Key>,
    queued: HashSet<Key>,
    busy: HashSet<Key>,
    /// Keys whose event came while a worker had them.
    dirty: HashSet<Key>,
    timers: BinaryHeap<Reverse<(Timestamp, Key)>>,
    pools: Vec<Pool>,
    /// Bumped at each relist; records not seen in one are gone.
    generation: u64,
    seen: HashMap<Key, u64>,
}

struct Shared {
    state: Mutex<State>,
    work: Notify,
    timer: Notify,
    nodes: Arc<Nodes>,
    cfg: Arc<Config>,
}

impl Shared {
    fn enqueue(st: &mut State, key: Key) {
        if st.busy.contains(&key) {
            st.dirty.insert(key);
        } else if st.queued.insert(key.clone()) {
            st.queue.push_back(key);
        }
    }

    fn wake_at(&self, st: &mut State, at: Timestamp, key: Key) {
        let Some(rec) = st.records.get_mut(&key) else {
            return;
        };
        // One pending timer per pod, unless this one is sooner.
        if rec.wake.is_some_and(|w| w <= at) {
            return;
        }
        rec.wake = Some(at);
        let earliest = st.timers.peek().map(|Reverse((t, _))| *t);
        st.timers.push(Reverse((at, key)));
        if earliest.is_none_or(|e| at < e) {
            self.timer.notify_one();
        }
    }
}

/// The sync of one pod at `now`: what to write, and when to look again.
fn plan(
    rec: &mut Record,
    pools: &mut [Pool],
    nodes: &Nodes,
    now: Timestamp,
) -> (Action, Option<Timestamp>) {
    if rec.deleted {
        return (Action::Nothing, None);
    }
    let host_ip = nodes.list[rec.node].ip.to_string();
    if rec.run.is_none() {
        rec.run = Some(if rec.observed.start_time.is_some() {
            PodRun::resume(&rec.spec, &rec.observed, now)
        } else {
            PodRun::new(&rec.spec, now)
        });
        let pool = &mut pools[rec.node];
        rec.pod_ip = match rec.observed.pod_ip.clone() {
            _ if rec.spec.host_network => Some(host_ip.clone()),
            Some(ip) if pool.reserve(&ip) => Some(ip),
            _ => pool.allocate().map(|ip| ip.to_string()),
        };
    }
    let run = rec.run.as_mut().expect("set above");
    let terminal = |s: &PodStatus| matches!(s.phase.as_deref(), Some("Succeeded" | "Failed"));
    let mut next = None;
    if let Some(stop_at) = rec.stop_at {
        if now < stop_at {
            return (Action::Nothing, Some(stop_at));
        }
        if !terminal(&rec.observed) {
            run.advance(&rec.spec, now);
            run.stop(now);
        }
    } else {
        next = run.advance(&rec.spec, now);
    }
    let at = Placement {
        namespace: &rec.namespace,
        name: &rec.name,
        uid: &rec.uid,
        host_ip: &host_ip,
        pod_ip: rec.pod_ip.as_deref(),
    };
    let mut desired = status::build(&rec.spec, run, &rec.observed, &at, now);
    if terminal(&rec.observed) && !terminal(&desired) {
        // Someone else wrote a terminal phase. A kubelet never moves a pod
        // out of one (its status manager refuses); it stops the containers.
        run.stop(now);
        desired = status::build(&rec.spec, run, &rec.observed, &at, now);
        desired.phase.clone_from(&rec.observed.phase);
    }
    let changed = !status::same(&desired, &rec.observed);
    let action = match (rec.stop_at.is_some(), changed) {
        (true, true) if !terminal(&rec.observed) => Action::Delete(Some(desired)),
        (true, _) => Action::Delete(None),
        (false, true) => Action::Status(desired),
        (false, false) => Action::Nothing,
    };
    (action, next)
}

/// When a deleted pod is stopped: its grace period, cut to the
/// simulator's termination delay, counted from the delete request.
fn stop_time(pod: &Pod, cfg: &Config) -> Option<Timestamp> {
    let at = pod.metadata.deletion_timestamp.as_ref()?.0;
    let grace = pod
        .metadata
        .deletion_grace_period_seconds
        .unwrap_or(0)
        .max(0);
    let requested = at - SignedDuration::from_secs(grace);
    let wait = SignedDuration::from_secs(grace)
        .min(SignedDuration::try_from(cfg.termination_delay).unwrap_or(SignedDuration::ZERO));
    Some(requested + wait)
}

/// Takes in a pod from the watch; returns its key when it is ours.
fn ingest(shared: &Shared, st: &mut State, pod: Pod) -> Option<Key> {
    let node_name = pod.spec.as_ref()?.node_name.as_deref()?;
    let node = shared.nodes.index(node_name)?;
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let key: Key = format!("{namespace}/{name}").into();
    let stop_at = stop_time(&pod, &shared.cfg);
    match st.records.get_mut(&key) {
        Some(rec) if rec.uid == uid => {
            rec.observed = pod.status.unwrap_or_default();
            rec.stop_at = stop_at;
        }
        _ => {
            forget(st, &key);
            let rec = Record {
                spec: SimSpec::from_pod(&pod),
                namespace,
                name,
                uid,
                node,
                observed: pod.status.unwrap_or_default(),
                stop_at,
                run: None,
                pod_ip: None,
                deleted: false,
                wake: None,
                failures: 0,
            };
            st.records.insert(key.clone(), rec);
        }
    }
    Some(key)
}

/// Drops a pod's record and frees its address.
fn forget(st: &mut State, key: &Key) {
    if let Some(rec) = st.records.remove(key) {
        if let Some(ip) = &rec.pod_ip {
            st.pools[rec.node].release(ip);
        }
    }
}

/// Runs the kubelet of all simulated nodes until the watch ends.
pub async fn run(client: kube::Client, cfg: Arc<Config>, nodes: Arc<Nodes>) {
    let pools = nodes
        .list
        .iter()
        .map(|n| Pool::new(*n.cidr.lock().unwrap()))
        .collect();
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            records: HashMap::new(),
            queue: VecDeque::new(),
            queued: HashSet::new(),
            busy: HashSet::new(),
            dirty: HashSet::new(),
            timers: BinaryHeap::new(),
            pools,
            generation: 0,
            seen: HashMap::new(),
        }),
        work: Notify::new(),
        timer: Notify::new(),
        nodes,
        cfg: cfg.clone(),
    });
    for _ in 0..cfg.max_in_flight.max(1) {
        tokio::spawn(worker(client.clone(), shared.clone()));
    }
    tokio::spawn(timers(shared.clone()));
    tokio::spawn(report(shared.clone()));
    watch(client, shared).await;
}

/// Feeds pod events into the records and the queue.
async fn watch(client: kube::Client, shared: Arc<Shared>) {
    let api: Api<Pod> = Api::all(client);
    // Only bound pods: the scheduler's pending pods are not ours to see.
    let config = watcher::Config::default().fields("spec.nodeName!=");
    let mut events = watcher(api, config).default_backoff().boxed();
    while let Some(ev) = events.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!(error = %e, "watching pods");
                continue;
            }
        };
        let mut st = shared.state.lock().unwrap();
        let mut woke = false;
        match ev {
            watcher::Event::Init => st.generation += 1,
            watcher::Event::InitApply(pod) | watcher::Event::Apply(pod) => {
                if let Some(key) = ingest(&shared, &mut st, pod) {
                    let generation = st.generation;
                    st.seen.insert(key.clone(), generation);
                    Shared::enqueue(&mut st, key);
                    woke = true;
                }
            }
            watcher::Event::Delete(pod) => {
                let ns = pod.metadata.namespace.unwrap_or_default();
                let key: Key = format!("{ns}/{}", pod.metadata.name.unwrap_or_default()).into();
                forget(&mut st, &key);
                st.seen.remove(&key);
            }
            watcher::Event::InitDone => {
                let generation = st.generation;
                let gone: Vec<Key> = st
                    .seen
                    .iter()
                    .filter(|(_, g)| **g != generation)
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in gone {
                    forget(&mut st, &key);
                    st.seen.remove(&key);
                }
            }
        }
        drop(st);
        if woke {
            shared.work.notify_one();
        }
    }
}

/// Moves due timers into the queue.
async fn timers(shared: Arc<Shared>) {
    loop {
        let sleep = {
            let mut st = shared.state.lock().unwrap();
            let now = Timestamp::now();
            let mut due = false;
            while let Some(Reverse((t, _))) = st.timers.peek() {
                if *t > now {
                    break;
                }
                let Reverse((t, key)) = st.timers.pop().expect("peeked");
                if let Some(rec) = st.records.get_mut(&key) {
                    if rec.wake == Some(t) {
                        rec.wake = None;
                    }
                    Shared::enqueue(&mut st, key);
                    due = true;
                }
            }
            if due {
                shared.work.notify_one();
            }
            st.timers
                .peek()
                .map(|Reverse((t, _))| t.duration_since(now).unsigned_abs())
                .unwrap_or(Duration::from_secs(3600))
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = shared.timer.notified() => {}
        }
    }
}

/// Syncs pods from the queue, one API call at a time.
async fn worker(client: kube::Client, shared: Arc<Shared>) {
    loop {
        let key = loop {
            let next = {
                let mut st = shared.state.lock().unwrap();
                let key = st.queue.pop_front();
                if let Some(k) = &key {
                    st.queued.remove(k);
                    st.busy.insert(k.clone());
                    // More work waiting: pass the wake-up on.
                    if !st.queue.is_empty() {
                        shared.work.notify_one();
                    }
                }
                key
            };
            match next {
                Some(k) => break k,
                None => shared.work.notified().await,
            }
        };
        let planned = {
            let mut guard = shared.state.lock().unwrap();
            let st = &mut *guard;
            let now = Timestamp::now();
            st.records.get_mut(&key).map(|rec| {
                let (action, next) = plan(rec, &mut st.pools, &shared.nodes, now);
                let target = (rec.namespace.clone(), rec.name.clone(), rec.uid.clone());
                (action, next, target)
            })
        };
        let mut retry = None;
        let mut next_at = None;
        if let Some((action, next, (ns, name, uid))) = planned {
            next_at = next;
            let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            match execute(&api, &name, &uid, action).await {
                Ok(Some(written)) => {
                    let mut st = shared.state.lock().unwrap();
                    if let Some(rec) = st.records.get_mut(&key).filter(|r| r.uid == uid) {
                        rec.failures = 0;
                        match written {
                            Written::Status(s) => rec.observed = *s,
                            Written::Deleted => rec.deleted = true,
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    let mut st = shared.state.lock().unwrap();
                    if let Some(rec) = st.records.get_mut(&key) {
                        rec.failures = rec.failures.saturating_add(1);
                        retry = Some(retry_delay(rec.failures));
                        // The first failure and then every tenth: a server
                        // that is away must not flood the log.
                        if rec.failures % 10 == 1 {
                            tracing::warn!(pod = %key, error = %e, failures = rec.failures, "syncing simulated pod");
                        }
                    }
                }
            }
        }
        let mut st = shared.state.lock().unwrap();
        st.busy.remove(&key);
        if let Some(delay) = retry {
            let at = Timestamp::now() + delay;
            shared.wake_at(&mut st, at, key.clone());
        } else if let Some(at) = next_at {
            shared.wake_at(&mut st, at, key.clone());
        }
        if st.dirty.remove(&key) {
            Shared::enqueue(&mut st, key);
            shared.work.notify_one();
        }
    }
}

/// 1 s after the first failure, doubling up to a minute.
fn retry_delay(failures: u32) -> SignedDuration {
    SignedDuration::from_secs(1i64 << failures.saturating_sub(1).min(6))
        .min(SignedDuration::from_secs(60))
}

enum Written {
    Status(Box<PodStatus>),
    Deleted,
}

/// Carries out a planned action; a pod already gone is no error.
async fn execute(
    api: &Api<Pod>,
    name: &str,
    uid: &str,
    action: Action,
) -> Result<Option<Written>, kube::Error> {
    let gone = |r: Result<Option<Written>, kube::Error>| match r {
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(None),
        other => other,
    };
    match action {
        Action::Nothing => Ok(None),
        Action::Status(status) => gone(
            api.patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": status})),
            )
            .await
            .map(|p| Some(Written::Status(Box::new(p.status.unwrap_or_default())))),
        ),
        Action::Delete(status) => {
            if let Some(status) = status {
                gone(
                    api.patch_status(
                        name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"status": status})),
                    )
                    .await
                    .map(|_| None),
                )?;
            }
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(uid.into()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            gone(
                api.delete(name, &params)
                    .await
                    .map(|_| Some(Written::Deleted)),
            )
        }
    }
}

/// Logs a summary now and then: how many pods, in which phase.
async fn report(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    loop {
        tick.tick().await;
        let (pods, running, queued, timers) = {
            let st = shared.state.lock().unwrap();
            let running = st
                .records
                .values()
                .filter(|r| r.observed.phase.as_deref() == Some("Running"))
                .count();
            (st.records.len(), running, st.queue.len(), st.timers.len())
        };
        tracing::info!(pods, running, queued, timers, "simulated kubelet");
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
