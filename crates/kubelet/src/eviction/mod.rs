//! The eviction manager: every 10 s it observes the node's signals
//! against the hard thresholds, keeps the MemoryPressure, DiskPressure
//! and PIDPressure conditions (held for a transition period after the
//! last threshold crossing), evicts pods breaking their local storage
//! limits, and — while a threshold is met — evicts one pod at a time,
//! ranked as upstream ranks them, waiting for it to stop before the
//! next. Pod workers carry an eviction out (kill, then phase Failed,
//! reason Evicted); new pods are refused under pressure.
//!
//! Upstream counterpart: `pkg/kubelet/eviction` (`eviction_manager.go`:
//! `synchronize`, `Admit`, `evictPod`, `waitForPodsCleanup`).

pub mod local;
pub mod observe;
pub mod rank;
pub mod soft;
pub mod threshold;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{NodeCondition, Pod, PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::sync::{watch, Notify};

use crate::events::{pod_ref, Kind};
use crate::Shared;
use observe::{Observer, PodUsage};
use rank::Candidate;
use threshold::{format_quantity, Observation, Resource, Threshold};
pub use threshold::{Signal, Thresholds};

/// How often signals are observed (upstream's monitoring interval).
pub const MONITORING_INTERVAL: Duration = Duration::from_secs(10);
/// How long a condition stays True after its threshold was last met
/// (upstream's `--eviction-pressure-transition-period` default).
pub const PRESSURE_TRANSITION: Duration = Duration::from_secs(300);
/// How long a hard eviction's victim gets to stop (upstream's
/// immediateEvictionGracePeriodSeconds).
const HARD_GRACE: Duration = Duration::from_secs(1);
/// How long an eviction may take before the next one (upstream's
/// podCleanupTimeout).
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The node's pressure conditions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pressure {
    pub memory: bool,
    pub disk: bool,
    pub pid: bool,
}

impl Pressure {
    fn conditions(&self) -> Vec<&'static str> {
        [
            (self.memory, "MemoryPressure"),
            (self.disk, "DiskPressure"),
            (self.pid, "PIDPressure"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }
}

/// What the eviction manager tells pod workers, and the pressure the
/// node status and admission read.
pub struct Evictions {
    /// uid -> (message, grace period of the stop, stopped).
    pending: Mutex<HashMap<String, (String, Duration, bool)>>,
    wakers: Mutex<HashMap<String, Arc<Notify>>>,
    pressure: watch::Sender<Pressure>,
}

impl Default for Evictions {
    fn default() -> Evictions {
        Evictions {
            pending: Mutex::default(),
            wakers: Mutex::default(),
            pressure: watch::Sender::new(Pressure::default()),
        }
    }
}

impl Evictions {
    /// A worker says where to wake it.
    pub fn register(&self, uid: &str, wake: Arc<Notify>) {
        self.wakers.lock().unwrap().insert(uid.to_string(), wake);
    }

    pub fn unregister(&self, uid: &str) {
        self.wakers.lock().unwrap().remove(uid);
        self.pending.lock().unwrap().remove(uid);
    }

    fn request(&self, uid: &str, message: String, grace: Duration) {
        self.pending
            .lock()
            .unwrap()
            .insert(uid.to_string(), (message, grace, false));
        if let Some(w) = self.wakers.lock().unwrap().get(uid) {
            w.notify_one();
        }
    }

    /// The eviction asked of this pod, if any: the message and how long
    /// its containers get to stop.
    pub fn pending(&self, uid: &str) -> Option<(String, Duration)> {
        let p = self.pending.lock().unwrap();
        p.get(uid)
            .filter(|(_, _, done)| !done)
            .map(|(m, g, _)| (m.clone(), *g))
    }

    /// The worker stopped the evicted pod's containers.
    pub fn stopped(&self, uid: &str) {
        if let Some(e) = self.pending.lock().unwrap().get_mut(uid) {
            e.2 = true;
        }
    }

    fn evicting(&self, uid: &str) -> bool {
        self.pending.lock().unwrap().contains_key(uid)
    }

    fn done(&self, uid: &str) -> bool {
        self.pending.lock().unwrap().get(uid).is_none_or(|e| e.2)
    }

    pub fn pressure(&self) -> Pressure {
        *self.pressure.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<Pressure> {
        self.pressure.subscribe()
    }

    /// Why a new pod may not start here now (upstream's `Admit`): under
    /// memory pressure only BestEffort pods that do not tolerate it are
    /// refused; under disk or pid pressure every pod is; critical pods
    /// always start.
    pub fn admit(&self, pod: &Pod) -> Result<(), String> {
        let p = self.pressure();
        let conditions = p.conditions();
        if conditions.is_empty() || rank::critical(pod) || is_static(pod) {
            return Ok(());
        }
        let only_memory = p.memory && !p.disk && !p.pid;
        if only_memory
            && (crate::spec::qos_class(pod) != "BestEffort"
                || tolerates(pod, "node.kubernetes.io/memory-pressure"))
        {
            return Ok(());
        }
        Err(format!(
            "The node had condition: [{}]. ",
            conditions.join(" ")
        ))
    }
}

fn tolerates(pod: &Pod, key: &str) -> bool {
    let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.as_ref());
    tolerations.into_iter().flatten().any(|t| {
        let key_ok = match t.key.as_deref() {
            None | Some("") => t.operator.as_deref() == Some("Exists"),
            Some(k) => k == key,
        };
        key_ok && matches!(t.effect.as_deref(), None | Some("") | Some("NoSchedule"))
    })
}

/// Sets MemoryPressure, DiskPressure and PIDPressure to the manager's
/// verdict; `prev` (the Node's conditions) keeps transition times.
pub fn apply_pressure(all: &mut Vec<NodeCondition>, p: Pressure, prev: &[NodeCondition]) {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let table = [
        (
            "MemoryPressure",
            p.memory,
            "KubeletHasInsufficientMemory",
            "KubeletHasSufficientMemory",
            "kubelet has insufficient memory available",
            "kubelet has sufficient memory available",
        ),
        (
            "DiskPressure",
            p.disk,
            "KubeletHasDiskPressure",
            "KubeletHasNoDiskPressure",
            "kubelet has disk pressure",
            "kubelet has no disk pressure",
        ),
        (
            "PIDPressure",
            p.pid,
            "KubeletHasInsufficientPID",
            "KubeletHasSufficientPID",
            "kubelet has insufficient PID available",
            "kubelet has sufficient PID available",
        ),
    ];
    for (ty, on, reason_on, reason_off, msg_on, msg_off) in table {
        let status = if on { "True" } else { "False" };
        let transition = prev
            .iter()
            .find(|c| c.type_ == ty && c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        let c = NodeCondition {
            type_: ty.to_string(),
            status: status.to_string(),
            reason: Some(if on { reason_on } else { reason_off }.to_string()),
            message: Some(if on { msg_on } else { msg_off }.to_string()),
            last_heartbeat_time: Some(now.clone()),
            last_transition_time: Some(transition),
        };
        match all.iter_mut().find(|x| x.type_ == ty) {
            Some(x) => *x = c,
            None => all.push(c),
        }
    }
}

/// Turns the status a worker computed into an evicted pod's: phase
/// Failed, reason Evicted, the message, and (for evictions, not
/// admission refusals) the DisruptionTarget condition.
pub fn mark_evicted(status: &mut PodStatus, message: &str, disruption: Option<&Time>) {
    status.phase = Some("Failed".into());
    status.reason = Some("Evicted".into());
    status.message = Some(message.to_string());
    if let Some(at) = disruption {
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        conditions.retain(|c| c.type_ != "DisruptionTarget");
        conditions.push(PodCondition {
            type_: "DisruptionTarget".into(),
            status: "True".into(),
            reason: Some("TerminationByKubelet".into()),
            message: Some(message.to_string()),
            last_transition_time: Some(at.clone()),
            ..Default::default()
        });
    }
}

/// "The node was low on resource: memory. Threshold quantity: 100Mi,
/// available: 50Mi. Container c was using 70Mi, request is 0, has
/// larger consumption of memory. " — upstream's wording.
pub fn pressure_message(t: &Threshold, obs: Observation, pod: &Pod, usage: &PodUsage) -> String {
    let resource = t.signal.resource();
    let bytes = matches!(resource, Resource::Memory | Resource::EphemeralStorage);
    let mut m = format!(
        "The node was low on resource: {resource}. Threshold quantity: {}, available: {}. ",
        t.quantity_string(obs.capacity),
        format_quantity(obs.available, bytes)
    );
    let (used, request_name) = match resource {
        Resource::Memory => (&usage.memory, "memory"),
        Resource::EphemeralStorage => (&usage.storage.containers, "ephemeral-storage"),
        _ => return m,
    };
    for c in pod.spec.iter().flat_map(|s| &s.containers) {
        let Some(u) = used.get(&c.name) else { continue };
        let request = c
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get(request_name));
        let req_bytes = request
            .and_then(|q| crate::quantity::bytes(&q.0))
            .unwrap_or(0);
        if *u > req_bytes {
            m.push_str(&format!(
                "Container {} was using {}, request is {}, has larger consumption of {resource}. ",
                c.name,
                format_quantity(*u, true),
                request.map_or("0".to_string(), |q| q.0.clone()),
            ));
        }
    }
    m
}

fn active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded") | Some("Failed"))
        && pod.metadata.deletion_timestamp.is_none()
}

/// The eviction manager's loop state.
pub struct Manager {
    shared: Arc<Shared>,
    observer: Arc<dyn Observer>,
    thresholds: Thresholds,
    soft: soft::Soft,
    soft_tracker: soft::Tracker,
    min_reclaim: threshold::MinReclaim,
    /// The signals whose hard / soft thresholds were met in the last pass.
    hard_met_last: HashSet<Signal>,
    soft_met_last: HashSet<Signal>,
    interval: Duration,
    transition: Duration,
    /// Condition -> when one of its thresholds was last met.
    last_met: HashMap<&'static str, Instant>,
}

impl Manager {
    pub fn new(shared: Arc<Shared>, observer: Arc<dyn Observer>) -> Manager {
        Manager {
            thresholds: shared.config.eviction_hard.clone(),
            soft: shared.config.eviction_soft.clone(),
            soft_tracker: soft::Tracker::default(),
            min_reclaim: shared.config.eviction_minimum_reclaim.clone(),
            hard_met_last: HashSet::new(),
            soft_met_last: HashSet::new(),
            shared,
            observer,
            interval: MONITORING_INTERVAL,
            transition: PRESSURE_TRANSITION,
            last_met: HashMap::new(),
        }
    }

    pub async fn run(mut self) {
        loop {
            if let Some(uid) = self.synchronize().await {
                let deadline = Instant::now() + CLEANUP_TIMEOUT;
                while !self.shared.evictions.done(&uid) && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            tokio::time::sleep(self.interval).await;
        }
    }

    /// One pass; returns the uid of the pod evicted for node pressure.
    async fn synchronize(&mut self) -> Option<String> {
        let observer = self.observer.clone();
        let entries: Vec<_> = self
            .shared
            .table
            .all()
            .into_iter()
            .filter(|e| active(&e.pod))
            .collect();
        let (node, pods) = tokio::task::spawn_blocking(move || {
            let node = observer.node();
            let pods: Vec<_> = entries
                .into_iter()
                .map(|e| {
                    let usage = observer.pod(&e.pod, &e.containers);
                    (e.pod, usage)
                })
                .collect();
            (node, pods)
        })
        .await
        .ok()?;
        if let Some(cm) = &self.shared.cgroups {
            let all: Vec<&Pod> = pods.iter().map(|(p, _)| p.as_ref()).collect();
            if let Err(e) = cm.update_burstable(&all) {
                tracing::debug!(error = %e, "burstable cgroup");
            }
        }
        let observe = |s| node.get(&s).copied();
        // A threshold met last time stays met until its signal has
        // recovered its minimum reclaim past it.
        let with_reclaim = |thresholds, last: &HashSet<Signal>| {
            let mut met = threshold::met(thresholds, observe);
            for t in threshold::not_yet_resolved(thresholds, last, &self.min_reclaim, observe) {
                if !met.contains(&t) {
                    met.push(t);
                }
            }
            met
        };
        let met = with_reclaim(&self.thresholds, &self.hard_met_last);
        let soft_met = with_reclaim(&self.soft.thresholds, &self.soft_met_last);
        self.hard_met_last = met.iter().map(|t| t.signal).collect();
        self.soft_met_last = soft_met.iter().map(|t| t.signal).collect();
        let now = Instant::now();
        // Conditions follow soft thresholds at once; evictions wait for
        // their grace periods.
        for t in met.iter().chain(&soft_met) {
            self.last_met.insert(t.signal.condition(), now);
        }
        let soft_due = self.soft_tracker.due(&self.soft, &soft_met, now);
        let on = |c: &str| {
            self.last_met
                .get(c)
                .is_some_and(|t| now.duration_since(*t) < self.transition)
        };
        let pressure = Pressure {
            memory: on("MemoryPressure"),
            disk: on("DiskPressure"),
            pid: on("PIDPressure"),
        };
        self.shared.evictions.pressure.send_if_modified(|p| {
            let changed = *p != pressure;
            *p = pressure;
            changed
        });
        let pods: Vec<_> = pods
            .into_iter()
            .filter(|(p, _)| !self.shared.evictions.evicting(uid(p)))
            .collect();
        // Local storage limits first; any eviction there ends the pass.
        let mut any = false;
        for (pod, usage) in &pods {
            if let Some(message) = local::violation(pod, &usage.storage) {
                self.evict(pod, message, HARD_GRACE);
                any = true;
            }
        }
        if any {
            return None;
        }
        // Memory before disk before pids, as upstream orders them; a hard
        // threshold before a soft one of the same signal.
        let (t, hard) = met
            .iter()
            .map(|t| (*t, true))
            .chain(soft_due.iter().map(|t| (*t, false)))
            .min_by_key(|(t, hard)| (t.signal, !hard))?;
        let obs = node.get(&t.signal).copied()?;
        if t.signal.resource() != Resource::Memory && t.signal != Signal::PidAvailable {
            // Disk: node-level resources first (upstream's
            // reclaimNodeLevelResources: unused images); the next pass
            // observes again and evicts only if that was not enough.
            let freed = self.shared.image_gc.delete_unused(&self.shared).await;
            if freed > 0 {
                tracing::info!(
                    freed,
                    signal = t.signal.name(),
                    "reclaimed unused images instead of evicting"
                );
                return None;
            }
        }
        let mut candidates: Vec<Candidate> = pods
            .iter()
            .filter(|(p, _)| !rank::critical(p) && !is_static(p))
            .map(|(pod, u)| Candidate {
                pod,
                memory: u.memory.values().sum(),
                disk: u.storage.total(),
                processes: u.processes,
            })
            .collect();
        rank::rank(&mut candidates, t.signal.resource());
        let victim = candidates.first()?.pod;
        let usage = &pods.iter().find(|(p, _)| uid(p) == uid(victim))?.1;
        let message = pressure_message(t, obs, victim, usage);
        let grace = if hard {
            HARD_GRACE
        } else {
            let own = victim
                .spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds);
            self.soft.pod_grace(own)
        };
        tracing::info!(pod = ?victim.metadata.name, signal = t.signal.name(), hard, "evicting pod");
        self.evict(victim, message, grace);
        Some(uid(victim).to_string())
    }

    fn evict(&self, pod: &Pod, message: String, grace: Duration) {
        self.shared.recorder.emit(
            pod_ref(pod, None),
            Kind::Warning,
            "Evicted",
            message.clone(),
        );
        self.shared.evictions.request(uid(pod), message, grace);
    }
}

/// Static pods (from manifest files) are critical to upstream's
/// eviction manager: never evicted, always admitted.
fn is_static(p: &Pod) -> bool {
    p.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(crate::static_pods::SOURCE))
        .is_some_and(|s| s != "api")
}

fn uid(p: &Pod) -> &str {
    p.metadata.uid.as_deref().unwrap_or_default()
}

#[cfg(test)]
mod tests;
