//! The CronJob reconcile, pure: from the CronJob, its Jobs and the clock
//! to the Job to start, the Jobs to delete and the status.
//!
//! Upstream counterpart: `pkg/controller/cronjob/cronjob_controllerv2.go`
//! (`syncCronJob`, `cleanupFinishedJobs`) and `utils.go`
//! (`mostRecentScheduleTime`, `getJobName`). Jobs are named
//! `<cronjob>-<scheduled time in minutes since the epoch>`, so a schedule
//! time never starts two Jobs even across restarts.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};

use super::schedule::Schedule;

/// The annotation recording which schedule time a Job is for.
pub const SCHEDULED_AT: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// Missed start times beyond this are reported (upstream's limit).
const TOO_MANY_MISSED: usize = 100;

pub struct Snapshot<'a> {
    pub cronjob: &'a CronJob,
    /// Jobs the CronJob controls.
    pub jobs: &'a [Arc<Job>],
    /// Uids in `status.active` confirmed gone from the API server.
    pub gone: &'a HashSet<String>,
    pub now: Timestamp,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// The status to write (before any Job this plan creates).
    pub status: CronJobStatus,
    /// The Job to start and the schedule time it is for.
    pub create: Option<(Job, Timestamp)>,
    /// Jobs to delete: replaced active ones and history beyond the limits.
    pub delete: Vec<String>,
    pub events: Vec<(bool, String, String)>,
    pub requeue: Option<Duration>,
}

fn finished(job: &Job) -> Option<&str> {
    job.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.type_.as_str())
}

fn scheduled_for(job: &Job) -> Option<&String> {
    job.metadata.annotations.as_ref()?.get(SCHEDULED_AT)
}

/// The schedule time to act on now, if any, and how many were missed.
/// `earliest` is exclusive.
pub fn most_recent(
    sched: &Schedule,
    tz: &TimeZone,
    earliest: Timestamp,
    now: Timestamp,
) -> (Option<Timestamp>, usize) {
    let mut last = None;
    let mut missed = 0;
    let mut t = earliest;
    while let Some(n) = sched.next(t, tz).filter(|n| *n <= now) {
        missed += 1;
        last = Some(n);
        t = n;
        if missed > TOO_MANY_MISSED {
            // Dense schedules: find the latest activation near now rather
            // than walking every missed one.
            for back in [3_600i64, 86_400, 31 * 86_400, 366 * 86_400] {
                let from = now - jiff::SignedDuration::from_secs(back);
                if from <= t {
                    break;
                }
                if sched.next(from, tz).is_some_and(|n| n <= now) {
                    t = from;
                    break;
                }
            }
            while let Some(n) = sched.next(t, tz).filter(|n| *n <= now) {
                last = Some(n);
                t = n;
            }
            break;
        }
    }
    (last, missed)
}

/// `<cronjob>-<minutes since the epoch>`.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

fn reference(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        ..ObjectReference::default()
    }
}

fn until(from: Timestamp, to: Timestamp) -> Duration {
    Duration::try_from(to.duration_since(from)).unwrap_or(Duration::ZERO)
}

pub fn reconcile(snap: &Snapshot, sched: &Schedule, tz: &TimeZone) -> Plan {
    let cj = snap.cronjob;
    let spec = cj.spec.clone().unwrap_or_default();
    let name = cj.metadata.name.clone().unwrap_or_default();
    let mut status = cj.status.clone().unwrap_or_default();
    let mut plan = Plan::default();
    let mut note =
        |warning: bool, reason: &str, msg: String| plan.events.push((warning, reason.into(), msg));

    // The active list follows the Jobs.
    let mut active = status.active.take().unwrap_or_default();
    for job in snap.jobs {
        let uid = job.metadata.uid.clone();
        let listed = active.iter().any(|r| r.uid == uid);
        let jname = job.metadata.name.clone().unwrap_or_default();
        match finished(job) {
            // One this controller started but whose status write was
            // lost goes back on the list; others are only reported.
            None if !listed && scheduled_for(job).is_some() => active.push(reference(job)),
            None if !listed => note(
                true,
                "UnexpectedJob",
                format!("Saw a job that the controller did not create or forgot: {jname}"),
            ),
            None => {}
            Some(cond) => {
                if listed {
                    active.retain(|r| r.uid != uid);
                    note(
                        false,
                        "SawCompletedJob",
                        format!("Saw completed job: {jname}, condition: {cond}"),
                    );
                }
                if cond == "Complete" {
                    let done = job.status.as_ref().and_then(|s| s.completion_time.clone());
                    if done.as_ref().map(|t| t.0)
                        > status.last_successful_time.as_ref().map(|t| t.0)
                    {
                        status.last_successful_time = done;
                    }
                }
            }
        }
    }
    active.retain(|r| {
        let gone = r.uid.as_ref().is_some_and(|u| snap.gone.contains(u));
        if gone {
            note(
                true,
                "MissingJob",
                format!(
                    "Active job went missing: {}",
                    r.name.clone().unwrap_or_default()
                ),
            );
        }
        !gone
    });

    // History beyond the limits goes, oldest first.
    for (cond, limit) in [
        ("Complete", spec.successful_jobs_history_limit.unwrap_or(3)),
        ("Failed", spec.failed_jobs_history_limit.unwrap_or(1)),
    ] {
        let mut done: Vec<&Arc<Job>> = snap
            .jobs
            .iter()
            .filter(|j| finished(j) == Some(cond))
            .collect();
        done.sort_by_key(|j| {
            let start = j
                .status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map(|t| t.0);
            (
                start.or(j.metadata.creation_timestamp.as_ref().map(|t| t.0)),
                j.metadata.name.clone(),
            )
        });
        let excess = done.len().saturating_sub(limit.max(0) as usize);
        for j in done.into_iter().take(excess) {
            let jname = j.metadata.name.clone().unwrap_or_default();
            note(false, "SuccessfulDelete", format!("Deleted job {jname}"));
            plan.delete.push(jname);
        }
    }

    let next_after_now = sched.next(snap.now, tz);
    let requeue = next_after_now.map(|n| until(snap.now, n) + Duration::from_millis(100));
    if spec.suspend == Some(true) || cj.metadata.deletion_timestamp.is_some() {
        status.active = Some(active).filter(|a| !a.is_empty());
        plan.status = status;
        return plan;
    }
    plan.requeue = requeue;

    let created = cj
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(snap.now, |t| t.0);
    let mut earliest = status.last_schedule_time.as_ref().map_or(created, |t| t.0);
    if let Some(sds) = spec.starting_deadline_seconds {
        earliest = earliest.max(snap.now - jiff::SignedDuration::from_secs(sds));
    }
    let (scheduled, missed) = most_recent(sched, tz, earliest, snap.now);
    if missed > TOO_MANY_MISSED {
        note(true, "TooManyMissedTimes", format!(
            "too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew"
        ));
    }
    let Some(scheduled) = scheduled else {
        status.active = Some(active).filter(|a| !a.is_empty());
        plan.status = status;
        return plan;
    };
    let too_late = spec
        .starting_deadline_seconds
        .is_some_and(|sds| scheduled + jiff::SignedDuration::from_secs(sds) < snap.now);
    let jname = job_name(&name, scheduled);
    let exists = active
        .iter()
        .any(|r| r.name.as_deref() == Some(jname.as_str()))
        || snap
            .jobs
            .iter()
            .any(|j| j.metadata.name.as_deref() == Some(jname.as_str()));
    let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
    if too_late {
        note(
            true,
            "MissSchedule",
            format!(
                "Missed scheduled time to start a job: {}",
                scheduled.strftime("%a, %d %b %Y %H:%M:%S %z")
            ),
        );
    } else if exists {
        // Started by an earlier sync whose status write was lost.
        if status.last_schedule_time.as_ref().map(|t| t.0) < Some(scheduled) {
            status.last_schedule_time = Some(Time(scheduled));
        }
    } else if policy == "Forbid" && !active.is_empty() {
        // Upstream only logs this; the next schedule time tries again.
    } else {
        if policy == "Replace" {
            for r in active.drain(..) {
                let old = r.name.unwrap_or_default();
                note(false, "SuccessfulDelete", format!("Deleted job {old}"));
                plan.delete.push(old);
            }
        }
        plan.create = Some((new_job(cj, &jname, scheduled, tz), scheduled));
    }
    status.active = Some(active).filter(|a| !a.is_empty());
    plan.status = status;
    plan
}

/// The Job for one schedule time, from the template.
fn new_job(cj: &CronJob, name: &str, scheduled: Timestamp, tz: &TimeZone) -> Job {
    let template = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(
        SCHEDULED_AT.into(),
        scheduled
            .to_zoned(tz.clone())
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string(),
    );
    Job {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: cj.metadata.namespace.clone(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "CronJob".into(),
                name: cj.metadata.name.clone().unwrap_or_default(),
                uid: cj.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// The status once `job`, started for `scheduled`, exists.
pub fn started(mut status: CronJobStatus, job: &Job, scheduled: Timestamp) -> CronJobStatus {
    status
        .active
        .get_or_insert_with(Vec::new)
        .push(reference(job));
    status.last_schedule_time = Some(Time(scheduled));
    status
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
