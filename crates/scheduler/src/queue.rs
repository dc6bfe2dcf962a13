//! The scheduling queue: an active heap ordered by priority then arrival,
//! a backoff heap (1 s doubling to 10 s per attempt) and the unschedulable
//! set, which cluster events move back.
//!
//! Upstream counterpart: `pkg/scheduler/backend/queue/scheduling_queue.go`
//! (`PriorityQueue`): `activeQ`, `podBackoffQ`, `unschedulablePods`,
//! `moveRequestCycle` (a pod that failed while a relevant event arrived
//! goes to backoff rather than waiting for another event), and the 5-minute
//! flush of pods left unschedulable. Events name the plugins they can help
//! (a lite form of upstream's queueing hints): a new pod on some node can
//! only help pods rejected by pod affinity or spreading. Time is passed in,
//! so tests need no clock.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::podinfo::PodInfo;

pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Upstream's `podMaxInUnschedulablePodsDuration`.
pub const MAX_UNSCHEDULABLE: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Active,
    Backoff,
    Unschedulable,
    InFlight,
}

/// A pod in the queue, with its scheduling history.
#[derive(Clone, Debug)]
pub struct QueuedPod {
    pub pod: Arc<PodInfo>,
    pub attempts: u32,
    /// Plugins that rejected it last time (empty: an error, not a fit).
    pub unschedulable_plugins: Vec<&'static str>,
    last_failure: Option<Instant>,
    /// The scheduling cycle it was popped in.
    cycle: u64,
    /// When it went to the unschedulable set.
    parked_at: Option<Instant>,
}

struct Entry {
    qp: QueuedPod,
    place: Place,
    /// Bumped on every (re)insertion; stale heap items are skipped.
    seq: u64,
}

/// Which plugins an event may help; `None` means every pod.
pub type Hint<'a> = Option<&'a [&'static str]>;

#[derive(Default)]
pub struct SchedulingQueue {
    entries: HashMap<String, Entry>,
    /// (priority, earliest arrival first, uid).
    active: BinaryHeap<(i32, Reverse<u64>, String)>,
    backoff: BinaryHeap<Reverse<(Instant, u64, String)>>,
    unschedulable: HashSet<String>,
    seq: u64,
    cycle: u64,
    move_request_cycle: u64,
}

impl SchedulingQueue {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn active_len(&self) -> usize {
        self.entries
            .values()
            .filter(|e| e.place == Place::Active)
            .count()
    }

    pub fn contains(&self, uid: &str) -> bool {
        self.entries.contains_key(uid)
    }

    fn push_active(&mut self, uid: &str) {
        self.seq += 1;
        let e = self.entries.get_mut(uid).expect("entry exists");
        e.place = Place::Active;
        e.seq = self.seq;
        self.active
            .push((e.qp.pod.priority, Reverse(self.seq), uid.to_string()));
    }

    fn push_backoff(&mut self, uid: &str, until: Instant) {
        self.seq += 1;
        let e = self.entries.get_mut(uid).expect("entry exists");
        e.place = Place::Backoff;
        e.seq = self.seq;
        self.backoff
            .push(Reverse((until, self.seq, uid.to_string())));
    }

    fn backoff_until(qp: &QueuedPod) -> Option<Instant> {
        let last = qp.last_failure?;
        let shift = qp.attempts.saturating_sub(1).min(8);
        let d = INITIAL_BACKOFF.saturating_mul(1 << shift).min(MAX_BACKOFF);
        Some(last + d)
    }

    /// A new pending pod, or an update of one already queued.
    pub fn add_or_update(&mut self, pod: Arc<PodInfo>, now: Instant) {
        let uid = pod.uid.clone();
        let Some(e) = self.entries.get_mut(&uid) else {
            self.entries.insert(
                uid.clone(),
                Entry {
                    qp: QueuedPod {
                        pod,
                        attempts: 0,
                        unschedulable_plugins: Vec::new(),
                        last_failure: None,
                        cycle: 0,
                        parked_at: None,
                    },
                    place: Place::Active,
                    seq: 0,
                },
            );
            self.push_active(&uid);
            return;
        };
        let changed = !same_inputs(&e.qp.pod, &pod);
        e.qp.pod = pod;
        // An update that changes what the scheduler looks at may make an
        // unschedulable pod fit; status-only updates (our own condition
        // writes among them) must not, or the pod would spin.
        if changed && e.place == Place::Unschedulable {
            self.unschedulable.remove(&uid);
            self.requeue_after_event(&uid, now);
        }
    }

    pub fn delete(&mut self, uid: &str) {
        if self.entries.remove(uid).is_some() {
            self.unschedulable.remove(uid);
        }
    }

    /// Take the next pod to schedule: highest priority, then earliest.
    pub fn pop(&mut self) -> Option<QueuedPod> {
        while let Some((_, Reverse(seq), uid)) = self.active.pop() {
            let Some(e) = self.entries.get_mut(&uid) else {
                continue;
            };
            if e.seq != seq || e.place != Place::Active {
                continue;
            }
            self.cycle += 1;
            e.place = Place::InFlight;
            e.qp.attempts += 1;
            e.qp.cycle = self.cycle;
            return Some(e.qp.clone());
        }
        None
    }

    /// The popped pod was assumed on a node: it leaves the queue.
    pub fn done(&mut self, uid: &str) {
        if self
            .entries
            .get(uid)
            .is_some_and(|e| e.place == Place::InFlight)
        {
            self.entries.remove(uid);
        }
    }

    /// The popped pod did not fit (`plugins` rejected it) or hit an error
    /// (`plugins` empty). Pods deleted meanwhile are dropped.
    pub fn failed(&mut self, uid: &str, plugins: Vec<&'static str>, now: Instant) {
        let move_request_cycle = self.move_request_cycle;
        let Some(e) = self.entries.get_mut(uid) else {
            return;
        };
        e.qp.last_failure = Some(now);
        let error = plugins.is_empty();
        e.qp.unschedulable_plugins = plugins;
        if error || move_request_cycle >= e.qp.cycle {
            // Something changed while it was being scheduled: retry after
            // its backoff rather than wait for another event.
            let until = Self::backoff_until(&e.qp).unwrap_or(now);
            self.push_backoff(uid, until);
        } else {
            e.place = Place::Unschedulable;
            e.qp.parked_at = Some(now);
            self.unschedulable.insert(uid.to_string());
        }
    }

    /// A bound pod was handed back (its binding failed): retry after backoff.
    pub fn add_backoff(&mut self, pod: Arc<PodInfo>, now: Instant) {
        let uid = pod.uid.clone();
        self.add_or_update(pod, now);
        if let Some(e) = self.entries.get_mut(&uid) {
            e.qp.last_failure = Some(now);
            e.qp.attempts = e.qp.attempts.max(1);
            let until = Self::backoff_until(&e.qp).unwrap_or(now);
            self.push_backoff(&uid, until);
        }
    }

    fn requeue_after_event(&mut self, uid: &str, now: Instant) {
        let until = self
            .entries
            .get(uid)
            .and_then(|e| Self::backoff_until(&e.qp));
        match until {
            Some(t) if t > now => self.push_backoff(uid, t),
            _ => self.push_active(uid),
        }
    }

    /// A cluster event: move the unschedulable pods it may help.
    pub fn move_on_event(&mut self, hint: Hint, now: Instant) {
        self.move_request_cycle = self.cycle;
        if self.unschedulable.is_empty() {
            return;
        }
        let helped: Vec<String> = self
            .unschedulable
            .iter()
            .filter(|uid| {
                let Some(plugins) = hint else {
                    return true;
                };
                self.entries.get(*uid).is_some_and(|e| {
                    e.qp.unschedulable_plugins
                        .iter()
                        .any(|p| plugins.contains(p))
                })
            })
            .cloned()
            .collect();
        for uid in helped {
            self.unschedulable.remove(&uid);
            self.requeue_after_event(&uid, now);
        }
    }

    /// A PodDisruptionBudget changed: move the unschedulable pods that
    /// failed on some node and may preempt, since the budgets steer which
    /// victims (and so which node) preemption picks.
    pub fn move_preemptors(&mut self, now: Instant) {
        self.move_request_cycle = self.cycle;
        let helped: Vec<String> = self
            .unschedulable
            .iter()
            .filter(|uid| {
                self.entries.get(*uid).is_some_and(|e| {
                    !e.qp.pod.never_preempt && !e.qp.unschedulable_plugins.is_empty()
                })
            })
            .cloned()
            .collect();
        for uid in helped {
            self.unschedulable.remove(&uid);
            self.requeue_after_event(&uid, now);
        }
    }

    /// Move pods whose backoff ended to the active heap, and pods left
    /// unschedulable too long back into play.
    pub fn flush(&mut self, now: Instant) {
        while let Some(Reverse((until, seq, uid))) = self.backoff.peek().cloned() {
            if until > now {
                break;
            }
            self.backoff.pop();
            if self
                .entries
                .get(&uid)
                .is_some_and(|e| e.seq == seq && e.place == Place::Backoff)
            {
                self.push_active(&uid);
            }
        }
        let stale: Vec<String> = self
            .unschedulable
            .iter()
            .filter(|uid| {
                self.entries
                    .get(*uid)
                    .and_then(|e| e.qp.parked_at)
                    .is_some_and(|t| now.duration_since(t) >= MAX_UNSCHEDULABLE)
            })
            .cloned()
            .collect();
        for uid in stale {
            self.unschedulable.remove(&uid);
            self.requeue_after_event(&uid, now);
        }
    }

    /// When [`SchedulingQueue::flush`] next has work: the earliest backoff
    /// expiry (the unschedulable flush is checked on every wake-up anyway).
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.backoff.peek().map(|Reverse((t, _, _))| *t)
    }
}

/// Whether two versions of a pending pod look the same to the plugins.
fn same_inputs(a: &PodInfo, b: &PodInfo) -> bool {
    a.labels == b.labels
        && a.requests == b.requests
        && a.host_ports == b.host_ports
        && a.tolerations == b.tolerations
        && a.node_selector == b.node_selector
        && a.node_affinity == b.node_affinity
        && a.required_affinity == b.required_affinity
        && a.required_anti_affinity == b.required_anti_affinity
        && a.preferred_affinity == b.preferred_affinity
        && a.preferred_anti_affinity == b.preferred_anti_affinity
        && a.spread_constraints == b.spread_constraints
        && a.priority == b.priority
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, priority: i32) -> Arc<PodInfo> {
        Arc::new(PodInfo {
            uid: uid.into(),
            priority,
            ..Default::default()
        })
    }

    #[test]
    fn priority_then_arrival() {
        let now = Instant::now();
        let mut q = SchedulingQueue::default();
        q.add_or_update(pod("low", 0), now);
        q.add_or_update(pod("high", 100), now);
        q.add_or_update(pod("low2", 0), now);
        let order: Vec<String> = std::iter::from_fn(|| q.pop())
            .map(|p| p.pod.uid.clone())
            .collect();
        assert_eq!(order, vec!["high", "low", "low2"]);
    }

    #[test]
    fn unschedulable_waits_for_a_helpful_event() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::default();
        q.add_or_update(pod("p", 0), t0);
        let p = q.pop().unwrap();
        q.failed(&p.pod.uid, vec!["NodeAffinity"], t0);
        assert!(q.pop().is_none());
        // A pod added elsewhere cannot help a node-affinity failure.
        q.move_on_event(Some(&["InterPodAffinity"]), t0 + Duration::from_secs(5));
        q.flush(t0 + Duration::from_secs(5));
        assert!(q.pop().is_none());
        // A node event can; its 1 s backoff has passed.
        q.move_on_event(None, t0 + Duration::from_secs(5));
        let again = q.pop().unwrap();
        assert_eq!(again.attempts, 2);
    }

    #[test]
    fn backoff_doubles_to_ten_seconds() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::default();
        q.add_or_update(pod("p", 0), t0);
        let mut t = t0;
        let mut waits = Vec::new();
        for _ in 0..6 {
            q.pop().unwrap();
            q.failed("p", vec![], t);
            let until = q.next_wakeup().unwrap();
            waits.push((until - t).as_secs());
            q.flush(until - Duration::from_millis(1));
            assert!(q.pop().is_none(), "not before its backoff");
            q.flush(until);
            t = until;
        }
        assert_eq!(waits, vec![1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn event_during_the_cycle_sends_the_pod_to_backoff() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::default();
        q.add_or_update(pod("p", 0), t0);
        q.pop().unwrap();
        q.move_on_event(None, t0);
        q.failed("p", vec!["NodeResourcesFit"], t0);
        assert!(q.next_wakeup().is_some(), "in backoff, not parked");
        q.flush(t0 + INITIAL_BACKOFF);
        assert!(q.pop().is_some());
    }

    #[test]
    fn updates_and_deletes() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(30);
        let mut q = SchedulingQueue::default();
        q.add_or_update(pod("p", 0), t0);
        q.pop().unwrap();
        q.failed("p", vec!["NodeAffinity"], t0);
        // A status-only update leaves it parked.
        q.add_or_update(pod("p", 0), later);
        assert!(q.pop().is_none());
        let mut changed = (*pod("p", 0)).clone();
        changed.labels.insert("x".into(), "y".into());
        q.add_or_update(Arc::new(changed), later);
        assert!(q.pop().is_some());
        q.delete("p");
        assert!(q.is_empty());
        q.failed("p", vec![], later);
        assert!(q.is_empty(), "a deleted pod does not come back");
    }

    #[test]
    fn a_namespace_change_wakes_only_pods_waiting_on_pod_affinity() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(5);
        let mut q = SchedulingQueue::default();
        for uid in ["affinity", "selector"] {
            q.add_or_update(pod(uid, 0), t0);
        }
        q.pop().unwrap();
        q.pop().unwrap();
        q.failed("affinity", vec!["InterPodAffinity"], t0);
        q.failed("selector", vec!["NodeAffinity"], t0);
        q.move_on_event(Some(crate::informers::NAMESPACE_CHANGE_HELPS), later);
        assert_eq!(
            q.pop().map(|p| p.pod.uid.clone()).as_deref(),
            Some("affinity")
        );
        assert!(q.pop().is_none(), "a node-affinity failure stays parked");
    }

    #[test]
    fn a_budget_change_wakes_pods_that_may_preempt() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(5);
        let mut q = SchedulingQueue::default();
        let mut never = (*pod("never", 10)).clone();
        never.never_preempt = true;
        q.add_or_update(Arc::new(never), t0);
        q.add_or_update(pod("preemptor", 10), t0);
        q.add_or_update(pod("no-nodes", 10), t0);
        for _ in 0..3 {
            q.pop().unwrap();
        }
        q.failed("never", vec!["NodeResourcesFit"], t0);
        q.failed("preemptor", vec!["NodeResourcesFit"], t0);
        q.failed("no-nodes", vec![], t0);
        q.move_preemptors(later);
        q.flush(later);
        let woken: Vec<String> = std::iter::from_fn(|| q.pop())
            .map(|p| p.pod.uid.clone())
            .collect();
        // "no-nodes" failed without a node to judge (an error): it is in
        // backoff and came back by itself; "never" stays parked.
        assert_eq!(woken, vec!["preemptor", "no-nodes"]);
    }

    #[test]
    fn parked_pods_return_after_five_minutes() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::default();
        q.add_or_update(pod("p", 0), t0);
        q.pop().unwrap();
        q.failed("p", vec!["NodeAffinity"], t0);
        q.flush(t0 + Duration::from_secs(299));
        assert!(q.pop().is_none());
        q.flush(t0 + MAX_UNSCHEDULABLE);
        assert!(q.pop().is_some());
    }
}
