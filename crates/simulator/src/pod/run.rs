//! The simulated life of a pod's containers: init containers in order,
//! then the app containers; exits, restarts with CrashLoopBackOff back-off,
//! and the stop at deletion. Pure: [`PodRun::advance`] moves the state to
//! a given instant and says when the next thing happens, so one timer
//! wheel drives every pod instead of a task per container.
//!
//! Upstream counterpart: the kubelet's pod workers and
//! `computePodActions` (`pkg/kubelet/kuberuntime/kuberuntime_manager.go`),
//! with the process replaced by [`Exit`]; back-off as upstream's
//! (first restart at once, then 10 s doubling to 5 min).

use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerStatus, PodStatus};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::spec::{ContainerSpec, Exit, RestartPolicy, SimSpec};

const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Exit code of a container stopped at pod deletion (killed).
pub const KILLED_EXIT_CODE: i32 = 137;
/// status.reason of a pod failed by spec.activeDeadlineSeconds.
pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";

/// A finished run of a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Term {
    pub code: i32,
    pub started: Timestamp,
    pub finished: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// Not started yet (waiting for init containers).
    Pending,
    Running {
        since: Timestamp,
    },
    /// Exited; restarts at `until`.
    BackOff {
        until: Timestamp,
    },
    Terminated(Term),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerRun {
    pub restarts: i32,
    pub state: State,
    pub last: Option<Term>,
}

impl ContainerRun {
    fn new() -> ContainerRun {
        ContainerRun {
            restarts: 0,
            state: State::Pending,
            last: None,
        }
    }
}

/// The run state of a whole pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRun {
    pub start: Timestamp,
    pub init: Vec<ContainerRun>,
    pub containers: Vec<ContainerRun>,
    /// When the last init container finished (app containers start then).
    pub initialized: Option<Timestamp>,
    /// The pod was stopped (deletion or deadline).
    pub stopped: bool,
    /// Stopped because spec.activeDeadlineSeconds passed.
    pub deadline_exceeded: bool,
}

/// Whole seconds: API times have no fractions, and a state rebuilt from
/// the API must equal the one that wrote it.
pub fn second(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

fn plus(t: Timestamp, d: Duration) -> Timestamp {
    let d = SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX);
    t.checked_add(d).unwrap_or(Timestamp::MAX)
}

/// Back-off before restart number `restarts` (1-based).
fn backoff(restarts: i32) -> Duration {
    if restarts <= 1 {
        return Duration::ZERO;
    }
    let exp = (restarts - 2).min(16) as u32;
    (Duration::from_secs(10) * 2u32.pow(exp)).min(MAX_BACKOFF)
}

impl PodRun {
    /// A pod first seen at `now`.
    pub fn new(spec: &SimSpec, now: Timestamp) -> PodRun {
        PodRun {
            start: second(now),
            init: spec.init.iter().map(|_| ContainerRun::new()).collect(),
            containers: spec
                .containers
                .iter()
                .map(|_| ContainerRun::new())
                .collect(),
            initialized: None,
            stopped: false,
            deadline_exceeded: false,
        }
    }

    /// Picks up where an earlier simulator (or an earlier run of this one)
    /// left off, from the status in the API.
    pub fn resume(spec: &SimSpec, status: &PodStatus, now: Timestamp) -> PodRun {
        let mut run = PodRun::new(spec, status.start_time.as_ref().map_or(now, |t| t.0));
        let restore =
            |specs: &[ContainerSpec], runs: &mut [ContainerRun], seen: &[ContainerStatus]| {
                for (s, r) in specs.iter().zip(runs.iter_mut()) {
                    if let Some(cs) = seen.iter().find(|cs| cs.name == s.name) {
                        *r = from_status(cs, now);
                    }
                }
            };
        restore(
            &spec.init,
            &mut run.init,
            status
                .init_container_statuses
                .as_deref()
                .unwrap_or_default(),
        );
        restore(
            &spec.containers,
            &mut run.containers,
            status.container_statuses.as_deref().unwrap_or_default(),
        );
        let all_init_done = run
            .init
            .iter()
            .zip(&spec.init)
            .all(|(r, s)| init_done(r, s));
        if all_init_done {
            run.initialized = Some(
                run.init
                    .iter()
                    .filter_map(|r| match &r.state {
                        State::Terminated(t) => Some(t.finished),
                        State::Running { since } => Some(*since),
                        _ => None,
                    })
                    .max()
                    .unwrap_or(run.start),
            );
        }
        if status.reason.as_deref() == Some(DEADLINE_EXCEEDED) {
            run.stopped = true;
            run.deadline_exceeded = true;
        }
        run
    }

    /// Moves every container to its state at `now`; returns when the next
    /// change (exit, restart, readiness) is due.
    pub fn advance(&mut self, spec: &SimSpec, now: Timestamp) -> Option<Timestamp> {
        if self.stopped {
            return None;
        }
        let Some(deadline) = spec.active_deadline.map(|d| second(plus(self.start, d))) else {
            return self.advance_containers(spec, now);
        };
        let next = self.advance_containers(spec, now.min(deadline));
        let finished = matches!(super::status::phase(self), "Succeeded" | "Failed");
        if finished {
            return None;
        }
        if now >= deadline {
            self.stop(deadline);
            self.deadline_exceeded = true;
            return None;
        }
        Some(next.map_or(deadline, |n| n.min(deadline)))
    }

    fn advance_containers(&mut self, spec: &SimSpec, now: Timestamp) -> Option<Timestamp> {
        let policy = spec.restart_policy;
        let mut next: Option<Timestamp> = None;
        let mut soonest = |t: Timestamp| next = Some(next.map_or(t, |n: Timestamp| n.min(t)));
        // Init containers, one after the other.
        let mut at = Some(self.start);
        for (s, r) in spec.init.iter().zip(self.init.iter_mut()) {
            let Some(from) = at else { break };
            if r.state == State::Pending {
                r.state = State::Running { since: from };
            }
            // Init containers restart on failure unless the pod says Never.
            let init_policy = if s.sidecar {
                RestartPolicy::Always
            } else if policy == RestartPolicy::Never {
                RestartPolicy::Never
            } else {
                RestartPolicy::OnFailure
            };
            if let Some(t) = step(s, r, init_policy, now) {
                soonest(t);
            }
            at = match &r.state {
                State::Terminated(t) if t.code == 0 => Some(t.finished),
                State::Running { since } if s.sidecar => {
                    let started = plus(*since, s.started_after);
                    if started > now {
                        soonest(started);
                        None
                    } else {
                        Some(started)
                    }
                }
                _ => None,
            };
        }
        if self.initialized.is_none() {
            self.initialized = at;
        }
        if let Some(from) = self.initialized {
            for (s, r) in spec.containers.iter().zip(self.containers.iter_mut()) {
                if r.state == State::Pending {
                    r.state = State::Running { since: from };
                }
                if let Some(t) = step(s, r, policy, now) {
                    soonest(t);
                }
            }
        }
        next
    }

    /// Stops every container still running (pod deletion).
    pub fn stop(&mut self, now: Timestamp) {
        let now = second(now);
        for r in self.init.iter_mut().chain(self.containers.iter_mut()) {
            if let State::Running { since } = r.state {
                r.state = State::Terminated(Term {
                    code: KILLED_EXIT_CODE,
                    started: since,
                    finished: now,
                });
            } else if matches!(r.state, State::BackOff { .. } | State::Pending) && r.last.is_some()
            {
                r.state = State::Terminated(r.last.clone().unwrap());
            }
        }
        self.stopped = true;
    }

    /// Whether init containers failed for good (restartPolicy Never).
    pub fn init_failed(&self) -> bool {
        self.init
            .iter()
            .any(|r| matches!(&r.state, State::Terminated(t) if t.code != 0))
    }
}

pub(crate) fn init_done(r: &ContainerRun, s: &ContainerSpec) -> bool {
    match &r.state {
        State::Terminated(t) => t.code == 0,
        State::Running { .. } => s.sidecar,
        _ => false,
    }
}

/// Advances one container to `now`; returns its next change.
fn step(
    s: &ContainerSpec,
    r: &mut ContainerRun,
    policy: RestartPolicy,
    now: Timestamp,
) -> Option<Timestamp> {
    loop {
        match r.state.clone() {
            State::Pending | State::Terminated(_) => return None,
            State::Running { since } => {
                let Exit::After { code, after } = s.exit else {
                    let ready = plus(since, s.ready_after.max(s.started_after));
                    return (ready > now).then_some(ready);
                };
                let finished = second(plus(since, after));
                if finished > now {
                    let ready = plus(since, s.ready_after.max(s.started_after));
                    return Some(if ready > now {
                        ready.min(finished)
                    } else {
                        finished
                    });
                }
                let term = Term {
                    code,
                    started: since,
                    finished,
                };
                if policy.restarts(code) {
                    r.restarts += 1;
                    r.last = Some(term);
                    let until = second(plus(finished, backoff(r.restarts)));
                    r.state = if until <= finished {
                        State::Running { since: finished }
                    } else {
                        State::BackOff { until }
                    };
                } else {
                    r.state = State::Terminated(term);
                    return None;
                }
            }
            State::BackOff { until } => {
                if until > now {
                    return Some(until);
                }
                r.state = State::Running { since: until };
            }
        }
    }
}

/// A container's run state from its status in the API.
fn from_status(cs: &ContainerStatus, now: Timestamp) -> ContainerRun {
    let term = |t: &k8s_openapi::api::core::v1::ContainerStateTerminated| Term {
        code: t.exit_code,
        started: t.started_at.as_ref().map_or(now, |x| x.0),
        finished: t.finished_at.as_ref().map_or(now, |x| x.0),
    };
    let last = cs
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .map(term);
    let state = cs.state.clone().unwrap_or_default();
    let state = if let Some(r) = &state.running {
        State::Running {
            since: r.started_at.as_ref().map_or(now, |x| x.0),
        }
    } else if let Some(t) = &state.terminated {
        State::Terminated(term(t))
    } else if let Some(l) = &last {
        State::BackOff {
            until: second(plus(l.finished, backoff(cs.restart_count))),
        }
    } else {
        State::Pending
    };
    ContainerRun {
        restarts: cs.restart_count,
        state,
        last,
    }
}

#[cfg(test)]
#[path = "run_tests.rs"]
pub(crate) mod tests;
