//! The Job reconcile, pure: from the Job and its pods to the status, the
//! pods to create and delete, and the tracking finalizers to drop.
//!
//! Upstream counterpart: `pkg/controller/job/job_controller.go`
//! (`syncJob`, `manageJob`, `trackJobStatusAndRemoveFinalizers`,
//! `enactJobFinished`) and `backoff_utils.go`. Pods carry the
//! `batch.kubernetes.io/job-tracking` finalizer so none is lost before it
//! is counted: a finished pod first goes into
//! `status.uncountedTerminatedPods`, then loses its finalizer, then moves
//! into `succeeded`/`failed` ([`fold`]). As in 1.33 the Job first gets
//! `SuccessCriteriaMet` or `FailureTarget`, and `Complete` or `Failed`
//! only when no pod is left terminating.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::failure_policy::{evaluate, Verdict};
use super::indexes;
use super::per_index;
use crate::daemonset::common::{is_pod_ready, phase};

pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";

/// First retry delay after a pod failure, doubled per further failure.
const BACKOFF_BASE: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(600);

pub struct Snapshot<'a> {
    pub job: &'a Job,
    /// The Job's pods, any state.
    pub pods: &'a [Arc<Pod>],
    /// When each finished pod (by uid) finished.
    pub finish_times: &'a HashMap<String, jiff::Timestamp>,
    pub now: jiff::Timestamp,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Status recording newly finished pods as uncounted; written before
    /// any finalizer goes. None when nothing finished since last time.
    pub record: Option<JobStatus>,
    /// Pods (name, uid) whose tracking finalizer may go now.
    pub release: Vec<(String, String)>,
    /// Uncounted uids whose pods already lost the finalizer (or are
    /// gone): counted at the next fold whatever happens to `release`.
    pub settled: Vec<String>,
    /// The status to write after the finalizers went (see [`fold`]).
    pub status: JobStatus,
    /// Pods to create: their completion index, None when NonIndexed.
    pub create: Vec<Option<i32>>,
    /// With backoffLimitPerIndex: the failure count each created index's
    /// pod carries ([`per_index::FAILURE_COUNT_KEY`]).
    pub index_failures: BTreeMap<i32, i32>,
    /// Active pods to delete, by name.
    pub delete: Vec<String>,
    /// Come back after this long (backoff or deadline), if set.
    pub requeue: Option<Duration>,
    /// Events: warning?, reason, message.
    pub events: Vec<(bool, String, String)>,
}

fn has_finalizer(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == TRACKING_FINALIZER)
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

fn name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

fn condition(status: &JobStatus, type_: &str) -> Option<JobCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_ && c.status == "True")
        .cloned()
}

fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: jiff::Timestamp,
) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Set a condition, replacing one of the same type (its transition time
/// kept when the status did not change).
fn set_condition(status: &mut JobStatus, cond: JobCondition) {
    let conds = status.conditions.get_or_insert_with(Vec::new);
    match conds.iter_mut().find(|c| c.type_ == cond.type_) {
        Some(c) if c.status == cond.status => {}
        Some(c) => *c = cond,
        None => conds.push(cond),
    }
}

/// Whether the Job already reached Complete or Failed.
pub fn is_finished(job: &Job) -> bool {
    job.status
        .as_ref()
        .is_some_and(|s| condition(s, "Complete").is_some() || condition(s, "Failed").is_some())
}

pub fn reconcile(snap: &Snapshot) -> Plan {
    let job = snap.job;
    let spec = job.spec.clone().unwrap_or_default();
    let mut status = job.status.clone().unwrap_or_default();
    let mut plan = Plan::default();
    let with_finalizer = || {
        snap.pods
            .iter()
            .filter(|p| has_finalizer(p))
            .map(|p| (name(p), uid(p)))
    };
    if is_finished(job) || job.metadata.deletion_timestamp.is_some() {
        plan.release = with_finalizer().collect();
        plan.status = status;
        return plan;
    }
    let suspended = spec.suspend == Some(true);
    let only_failed = spec.pod_replacement_policy.as_deref() == Some("Failed");
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let mut uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
    let mut counted_succeeded: HashSet<String> =
        uncounted.succeeded.iter().flatten().cloned().collect();
    let mut counted_failed: HashSet<String> = uncounted.failed.iter().flatten().cloned().collect();
    let mut done_indexes = indexes::parse(
        status.completed_indexes.as_deref().unwrap_or_default(),
        spec.completions.unwrap_or(0),
    );
    // backoffLimitPerIndex only means something for Indexed Jobs.
    let per_index_limit = spec.backoff_limit_per_index.filter(|_| indexed);
    let mut failed_indexes = indexes::parse(
        status.failed_indexes.as_deref().unwrap_or_default(),
        spec.completions.unwrap_or(0),
    );

    let mut active: Vec<&Arc<Pod>> = Vec::new();
    let mut terminating = 0;
    let mut fail_job: Option<String> = None;
    let mut ignored = Vec::new();
    for pod in snap.pods {
        let p = phase(pod);
        let deleting = pod.metadata.deletion_timestamp.is_some();
        if deleting && p != "Succeeded" && p != "Failed" {
            terminating += 1;
        }
        if !deleting && p != "Succeeded" && p != "Failed" {
            active.push(pod);
            continue;
        }
        if !has_finalizer(pod) {
            continue;
        }
        let id = uid(pod);
        if counted_succeeded.contains(&id) || counted_failed.contains(&id) {
            continue;
        }
        if p == "Succeeded" {
            counted_succeeded.insert(id.clone());
            uncounted.succeeded.get_or_insert_with(Vec::new).push(id);
            if let Some(i) = indexes::of_pod(pod).filter(|i| Some(*i) < spec.completions) {
                done_indexes.insert(i);
            }
            continue;
        }
        // A deleted pod that never reached a phase counts as failed, unless
        // only Failed pods count or the Job was suspended on purpose.
        if p != "Failed" && (only_failed || suspended) {
            ignored.push((name(pod), uid(pod)));
            continue;
        }
        let mut fail_index = false;
        match evaluate(spec.pod_failure_policy.as_ref(), pod) {
            Verdict::Ignore => {
                ignored.push((name(pod), uid(pod)));
                continue;
            }
            Verdict::FailJob(msg) => {
                fail_job.get_or_insert(msg);
            }
            Verdict::FailIndex => fail_index = true,
            Verdict::Count => {}
        }
        if let (Some(limit), Some(i)) = (per_index_limit, indexes::of_pod(pod)) {
            if i < spec.completions.unwrap_or(0)
                && !done_indexes.contains(&i)
                && per_index::fails_index(pod, fail_index, limit)
            {
                failed_indexes.insert(i);
            }
        }
        counted_failed.insert(id.clone());
        uncounted.failed.get_or_insert_with(Vec::new).push(id);
    }
    let newly = uncounted != status.uncounted_terminated_pods.clone().unwrap_or_default();

    let succeeded = status.succeeded.unwrap_or(0) + counted_succeeded.len() as i32;
    let failed = status.failed.unwrap_or(0) + counted_failed.len() as i32;
    let now = snap.now;

    // Suspension, and the clock activeDeadlineSeconds runs against.
    if suspended {
        if condition(&status, "Suspended").is_none() {
            set_condition(
                &mut status,
                new_condition("Suspended", "True", "JobSuspended", "Job suspended", now),
            );
            plan.events
                .push((false, "Suspended".into(), "Job suspended".into()));
        }
        status.start_time = None;
    } else {
        if condition(&status, "Suspended").is_some() {
            set_condition(
                &mut status,
                new_condition("Suspended", "False", "JobResumed", "Job resumed", now),
            );
            plan.events
                .push((false, "Resumed".into(), "Job resumed".into()));
        }
        status.start_time.get_or_insert(Time(now));
    }

    // Has the Job met its end?
    let mut target =
        condition(&status, "FailureTarget").or_else(|| condition(&status, "SuccessCriteriaMet"));
    if target.is_none() {
        let deadline = spec.active_deadline_seconds.and_then(|s| {
            let start = status.start_time.as_ref()?.0;
            Some(start + jiff::SignedDuration::from_secs(s))
        });
        let by_index = per_index_limit.and_then(|_| {
            per_index::failure(
                &failed_indexes,
                &done_indexes,
                spec.max_failed_indexes,
                spec.completions.unwrap_or(0),
            )
        });
        let failure = if let Some(msg) = fail_job {
            Some(("PodFailurePolicy", msg))
        } else if let Some((reason, msg)) = by_index {
            Some((reason, msg))
        } else if failed > spec.backoff_limit.unwrap_or(6) {
            Some((
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit".into(),
            ))
        } else if !suspended && deadline.is_some_and(|d| d <= now) {
            Some((
                "DeadlineExceeded",
                "Job was active longer than specified deadline".into(),
            ))
        } else {
            if let Some(d) = deadline.filter(|_| !suspended) {
                plan.requeue = Some(until(now, d));
            }
            None
        };
        let complete = match (indexed, spec.completions) {
            (true, Some(c)) => done_indexes.len() as i32 >= c,
            (false, Some(c)) => succeeded >= c,
            (_, None) => succeeded > 0 && active.is_empty(),
        };
        let by_policy = indexed
            .then(|| {
                per_index::success(
                    spec.success_policy.as_ref(),
                    &done_indexes,
                    spec.completions.unwrap_or(0),
                )
            })
            .flatten();
        target = match failure {
            Some((reason, msg)) => Some(new_condition("FailureTarget", "True", reason, &msg, now)),
            None if by_policy.is_some() && !complete => Some(new_condition(
                "SuccessCriteriaMet",
                "True",
                "SuccessPolicy",
                by_policy.as_deref().unwrap_or_default(),
                now,
            )),
            None if complete => Some(new_condition(
                "SuccessCriteriaMet",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                now,
            )),
            None => None,
        };
        if let Some(t) = &target {
            set_condition(&mut status, t.clone());
        }
    }

    // Pods to delete and create.
    if target.is_some() || suspended {
        plan.delete = active.iter().map(|p| name(p)).collect();
    } else {
        plan_pods(
            snap,
            &spec,
            indexed,
            parallelism,
            succeeded,
            &done_indexes,
            &failed_indexes,
            &active,
            terminating,
            only_failed,
            &mut plan,
        );
    }

    let ready = active.iter().filter(|p| is_pod_ready(p)).count() as i32;
    status.active = Some((active.len() as i32 - plan.delete.len() as i32).max(0));
    status.ready = Some(ready);
    status.terminating = Some(terminating + plan.delete.len() as i32);
    status.succeeded = status.succeeded.or(Some(0));
    status.failed = status.failed.or(Some(0));
    if indexed {
        status.completed_indexes = Some(indexes::format(&done_indexes));
    }
    if per_index_limit.is_some() {
        status.failed_indexes = Some(indexes::format(&failed_indexes));
    }
    status.uncounted_terminated_pods = Some(uncounted);
    if newly {
        plan.record = Some(status.clone());
    }
    let mut release: Vec<(String, String)> = with_finalizer()
        .filter(|(_, id)| counted_succeeded.contains(id) || counted_failed.contains(id))
        .collect();
    release.extend(ignored);
    plan.release = release;
    let holding: HashSet<String> = with_finalizer().map(|(_, u)| u).collect();
    plan.settled = counted_succeeded
        .iter()
        .chain(&counted_failed)
        .filter(|u| !holding.contains(*u))
        .cloned()
        .collect();
    plan.status = status;
    plan
}

#[allow(clippy::too_many_arguments)]
fn plan_pods(
    snap: &Snapshot,
    spec: &k8s_openapi::api::batch::v1::JobSpec,
    indexed: bool,
    parallelism: i32,
    succeeded: i32,
    done_indexes: &BTreeSet<i32>,
    failed_indexes: &BTreeSet<i32>,
    active: &[&Arc<Pod>],
    terminating: i32,
    only_failed: bool,
    plan: &mut Plan,
) {
    let busy = active.len() as i32 + if only_failed { terminating } else { 0 };
    let mut to_create: Vec<Option<i32>> = Vec::new();
    if indexed {
        let completions = spec.completions.unwrap_or(0);
        let mut seen = BTreeSet::new();
        let mut keep = 0;
        for pod in active {
            match indexes::of_pod(pod) {
                Some(i)
                    if i < completions
                        && !done_indexes.contains(&i)
                        && !failed_indexes.contains(&i)
                        && seen.insert(i) =>
                {
                    keep += 1
                }
                _ => plan.delete.push(name(pod)),
            }
        }
        let room = (parallelism - keep - if only_failed { terminating } else { 0 }).max(0) as usize;
        to_create = (0..completions)
            .filter(|i| {
                !done_indexes.contains(i) && !failed_indexes.contains(i) && !seen.contains(i)
            })
            .take(room)
            .map(Some)
            .collect();
        if spec.backoff_limit_per_index.is_some() {
            per_index_create(snap, spec, to_create, plan);
            return;
        }
    } else {
        let want = match spec.completions {
            Some(c) => parallelism.min((c - succeeded).max(0)),
            None if succeeded > 0 => parallelism.min(active.len() as i32),
            None => parallelism,
        };
        if busy < want {
            to_create = vec![None; (want - busy) as usize];
        } else if active.len() as i32 > want {
            // Drop the least advanced pods first: not ready, then newest.
            let mut extra: Vec<&&Arc<Pod>> = active.iter().collect();
            extra.sort_by_key(|p| {
                (
                    is_pod_ready(p),
                    std::cmp::Reverse(p.metadata.creation_timestamp.as_ref().map(|t| t.0)),
                )
            });
            plan.delete.extend(
                extra
                    .iter()
                    .take(active.len() - want as usize)
                    .map(|p| name(p)),
            );
        }
    }
    if to_create.is_empty() {
        return;
    }
    match retry_delay(snap, |_| true) {
        Some(wait) if !wait.is_zero() => {
            plan.requeue = Some(plan.requeue.map_or(wait, |r| r.min(wait)));
        }
        _ => plan.create = to_create,
    }
}

/// How long new pods must still wait after recent failures: 10 s doubled
/// per failure since the last success, capped at 10 min, counted from the
/// last failure (upstream `getRemainingTimeForPodCreation`).
fn retry_delay(snap: &Snapshot, of: impl Fn(&Pod) -> bool) -> Option<Duration> {
    let when = |p: &Pod| snap.finish_times.get(&uid(p)).copied();
    let last_success = snap
        .pods
        .iter()
        .filter(|p| of(p))
        .filter(|p| phase(p) == "Succeeded")
        .filter_map(|p| when(p))
        .max();
    let failures: Vec<jiff::Timestamp> = snap
        .pods
        .iter()
        .filter(|p| of(p))
        .filter(|p| {
            phase(p) == "Failed"
                || (p.metadata.deletion_timestamp.is_some() && phase(p) != "Succeeded")
        })
        .filter_map(|p| when(p))
        .filter(|t| last_success.is_none_or(|s| *t > s))
        .collect();
    let last = failures.iter().max()?;
    let n = failures.len().min(16) as u32;
    let delay = BACKOFF_BASE.saturating_mul(1 << (n - 1)).min(BACKOFF_MAX);
    let elapsed = until(*last, snap.now);
    Some(delay.saturating_sub(elapsed))
}

/// Create the indexes of a Job with backoffLimitPerIndex whose own
/// backoff is over, each pod carrying its index's failure count; the
/// others come back when their backoff ends.
fn per_index_create(
    snap: &Snapshot,
    spec: &k8s_openapi::api::batch::v1::JobSpec,
    indexes_wanted: Vec<Option<i32>>,
    plan: &mut Plan,
) {
    let only_failed = spec.pod_replacement_policy.as_deref() == Some("Failed");
    let suspended = spec.suspend == Some(true);
    for i in indexes_wanted.into_iter().flatten() {
        let of_index = |p: &Pod| indexes::of_pod(p) == Some(i);
        match retry_delay(snap, of_index) {
            Some(wait) if !wait.is_zero() => {
                plan.requeue = Some(plan.requeue.map_or(wait, |r| r.min(wait)));
                continue;
            }
            _ => {}
        }
        // The latest failed pod of the index tells how many failures
        // came before; its own failure adds one unless a rule ignored it.
        let count = snap
            .pods
            .iter()
            .filter(|p| of_index(p))
            .filter_map(|p| {
                let ph = phase(p);
                let gone = p.metadata.deletion_timestamp.is_some() && ph != "Succeeded";
                if ph != "Failed" && !gone {
                    return None;
                }
                let counts = (ph == "Failed" || !(only_failed || suspended))
                    && evaluate(spec.pod_failure_policy.as_ref(), p) != Verdict::Ignore;
                Some(per_index::failure_count(p) + i32::from(counts))
            })
            .max()
            .unwrap_or(0);
        plan.index_failures.insert(i, count);
        plan.create.push(Some(i));
    }
}

/// The time from `from` to `to`, zero if `to` is not later.
fn until(from: jiff::Timestamp, to: jiff::Timestamp) -> Duration {
    Duration::try_from(to.duration_since(from)).unwrap_or(Duration::ZERO)
}

/// The status after the tracking finalizers of `released` pods went:
/// their uids move from uncounted into the counters, and a Job whose
/// end is decided becomes Complete or Failed once nothing is left
/// uncounted or terminating.
pub fn fold(
    mut status: JobStatus,
    released: &HashSet<String>,
    now: jiff::Timestamp,
) -> (JobStatus, Option<(bool, String, String)>) {
    let mut uncounted = status.uncounted_terminated_pods.take().unwrap_or_default();
    let take = |list: &mut Option<Vec<String>>| {
        let before = list.as_ref().map_or(0, Vec::len);
        if let Some(l) = list.as_mut() {
            l.retain(|u| !released.contains(u));
        }
        let after = list.as_ref().map_or(0, Vec::len);
        if after == 0 {
            *list = None;
        }
        (before - after) as i32
    };
    status.succeeded = Some(status.succeeded.unwrap_or(0) + take(&mut uncounted.succeeded));
    status.failed = Some(status.failed.unwrap_or(0) + take(&mut uncounted.failed));
    let empty = uncounted == UncountedTerminatedPods::default();
    status.uncounted_terminated_pods = Some(uncounted);
    let mut event = None;
    if empty && status.terminating.unwrap_or(0) == 0 && status.active.unwrap_or(0) == 0 {
        if let Some(t) = condition(&status, "FailureTarget") {
            let reason = t.reason.clone().unwrap_or_default();
            let msg = t.message.clone().unwrap_or_default();
            set_condition(
                &mut status,
                new_condition("Failed", "True", &reason, &msg, now),
            );
            event = Some((true, reason, msg));
        } else if let Some(t) = condition(&status, "SuccessCriteriaMet") {
            let reason = t.reason.clone().unwrap_or_default();
            let msg = t.message.clone().unwrap_or_default();
            set_condition(
                &mut status,
                new_condition("Complete", "True", &reason, &msg, now),
            );
            status.completion_time = Some(Time(now));
            event = Some((false, "Completed".into(), "Job completed".into()));
        }
    }
    (status, event)
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
