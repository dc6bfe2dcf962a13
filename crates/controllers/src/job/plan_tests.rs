use super::*;
use k8s_openapi::api::batch::v1::JobSpec;
use k8s_openapi::api::core::v1::PodStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn t(s: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_000_000 + s).unwrap()
}

fn job(spec: JobSpec, status: Option<JobStatus>) -> Job {
    Job {
        metadata: ObjectMeta {
            name: Some("j".into()),
            namespace: Some("ns".into()),
            uid: Some("job-uid".into()),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: spec.backoff_limit.or(Some(6)),
            parallelism: spec.parallelism.or(Some(1)),
            completion_mode: spec.completion_mode.clone().or(Some("NonIndexed".into())),
            ..spec
        }),
        status,
    }
}

fn pod(name: &str, phase: &str, index: Option<i32>) -> Arc<Pod> {
    Arc::new(Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            finalizers: Some(vec![TRACKING_FINALIZER.into()]),
            annotations: index.map(|i| [(indexes::INDEX_KEY.to_string(), i.to_string())].into()),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(PodStatus {
            phase: Some(phase.into()),
            ..PodStatus::default()
        }),
    })
}

/// The pod after the controller took its finalizer.
fn released(pod: Arc<Pod>) -> Arc<Pod> {
    let mut p = (*pod).clone();
    p.metadata.finalizers = None;
    Arc::new(p)
}

fn run(job: &Job, pods: &[Arc<Pod>], finish: &[(&str, i64)], now: i64) -> Plan {
    let finish_times = finish
        .iter()
        .map(|(n, s)| (format!("uid-{n}"), t(*s)))
        .collect();
    reconcile(&Snapshot {
        job,
        pods,
        finish_times: &finish_times,
        now: t(now),
    })
}

/// Reconcile, then fold with every released pod, as the executor does
/// when all finalizer removals succeed.
fn settle(plan: &Plan, now: i64) -> JobStatus {
    let released = plan
        .release
        .iter()
        .map(|(_, u)| u.clone())
        .chain(plan.settled.iter().cloned())
        .collect();
    fold(plan.status.clone(), &released, t(now)).0
}

fn has(status: &JobStatus, type_: &str) -> bool {
    condition(status, type_).is_some()
}

#[test]
fn parallel_job_starts_parallelism_pods_then_completes() {
    let j = job(
        JobSpec {
            completions: Some(3),
            parallelism: Some(2),
            ..JobSpec::default()
        },
        None,
    );
    let plan = run(&j, &[], &[], 0);
    assert_eq!(plan.create, vec![None, None]);
    assert_eq!(plan.status.start_time, Some(Time(t(0))));
    // Two done, one running: one more is enough.
    let pods = [pod("a", "Succeeded", None), pod("b", "Succeeded", None)];
    let plan = run(&j, &pods, &[("a", 1), ("b", 1)], 2);
    assert_eq!(plan.create, vec![None]);
    let rec = plan
        .record
        .clone()
        .expect("new finishes are recorded first");
    assert_eq!(
        rec.uncounted_terminated_pods
            .unwrap()
            .succeeded
            .unwrap()
            .len(),
        2
    );
    assert_eq!(plan.release.len(), 2);
    let status = settle(&plan, 2);
    assert_eq!(status.succeeded, Some(2));
    assert_eq!(
        status.uncounted_terminated_pods,
        Some(UncountedTerminatedPods::default())
    );
    assert!(!has(&status, "Complete"));

    let j = job(j.spec.clone().unwrap(), Some(status));
    let pods = [pod("c", "Succeeded", None)];
    let plan = run(&j, &pods, &[("c", 3)], 3);
    assert!(plan.create.is_empty());
    assert!(has(&plan.status, "SuccessCriteriaMet"));
    let status = settle(&plan, 3);
    assert_eq!(status.succeeded, Some(3));
    let complete = condition(&status, "Complete").expect("complete");
    assert_eq!(complete.reason.as_deref(), Some("CompletionsReached"));
    assert_eq!(status.completion_time, Some(Time(t(3))));
}

#[test]
fn failures_beyond_backoff_limit_fail_the_job_after_pods_stop() {
    let spec = JobSpec {
        backoff_limit: Some(1),
        ..JobSpec::default()
    };
    let j = job(spec.clone(), None);
    // One failure: retry, but only after the 10 s backoff.
    let pods = [pod("a", "Failed", None)];
    let plan = run(&j, &pods, &[("a", 0)], 4);
    assert!(plan.create.is_empty());
    assert_eq!(plan.requeue, Some(Duration::from_secs(6)));
    let status = settle(&plan, 4);
    assert_eq!(status.failed, Some(1));
    let j = job(spec.clone(), Some(status));
    let pods = [released(pod("a", "Failed", None))];
    let plan = run(&j, &pods, &[("a", 0)], 11);
    assert_eq!(plan.create, vec![None]);
    // The second failure exceeds the limit.
    let pods = [released(pod("a", "Failed", None)), pod("b", "Failed", None)];
    let plan = run(&j, &pods, &[("a", 0), ("b", 20)], 21);
    assert!(plan.create.is_empty());
    let target = condition(&plan.status, "FailureTarget").expect("failure target");
    assert_eq!(target.reason.as_deref(), Some("BackoffLimitExceeded"));
    let status = settle(&plan, 21);
    assert_eq!(status.failed, Some(2));
    let failed = condition(&status, "Failed").expect("failed");
    assert_eq!(
        failed.message.as_deref(),
        Some("Job has reached the specified backoff limit")
    );
    assert_eq!(status.completion_time, None);
}

#[test]
fn active_deadline_kills_running_pods_and_waits_for_them() {
    let spec = JobSpec {
        active_deadline_seconds: Some(5),
        ..JobSpec::default()
    };
    let j = job(spec.clone(), None);
    let running = [pod("a", "Running", None)];
    let plan = run(&j, &running, &[], 0);
    assert_eq!(plan.requeue, Some(Duration::from_secs(5)));
    let j = job(spec.clone(), Some(plan.status.clone()));
    let plan = run(&j, &running, &[], 6);
    assert_eq!(plan.delete, vec!["a".to_string()]);
    let status = settle(&plan, 6);
    assert!(has(&status, "FailureTarget"));
    assert!(!has(&status, "Failed"), "a pod is still terminating");
    assert_eq!(status.terminating, Some(1));
}

#[test]
fn indexed_jobs_fill_missing_indexes_and_record_completed_ones() {
    let spec = JobSpec {
        completions: Some(4),
        parallelism: Some(2),
        completion_mode: Some("Indexed".into()),
        ..JobSpec::default()
    };
    let j = job(spec.clone(), None);
    assert_eq!(run(&j, &[], &[], 0).create, vec![Some(0), Some(1)]);
    let pods = [
        pod("j-0", "Succeeded", Some(0)),
        pod("j-1", "Running", Some(1)),
        pod("j-2", "Succeeded", Some(2)),
    ];
    let plan = run(&j, &pods, &[("j-0", 1), ("j-2", 1)], 2);
    assert_eq!(plan.create, vec![Some(3)]);
    assert_eq!(plan.status.completed_indexes.as_deref(), Some("0,2"));
}

#[test]
fn suspended_jobs_delete_their_pods_without_counting_failures() {
    let spec = JobSpec {
        suspend: Some(true),
        ..JobSpec::default()
    };
    let j = job(spec, None);
    let plan = run(&j, &[pod("a", "Running", None)], &[], 0);
    assert_eq!(plan.delete, vec!["a".to_string()]);
    assert!(has(&plan.status, "Suspended"));
    assert_eq!(plan.status.start_time, None);
    let mut deleting = (*pod("a", "Running", None)).clone();
    deleting.metadata.deletion_timestamp = Some(Time(t(1)));
    let j = job(j.spec.clone().unwrap(), Some(plan.status.clone()));
    let plan = run(&j, &[Arc::new(deleting)], &[("a", 1)], 1);
    assert_eq!(plan.release.len(), 1);
    assert_eq!(settle(&plan, 1).failed, Some(0));
}

#[test]
fn uncounted_pods_that_already_lost_the_finalizer_are_counted() {
    let status = JobStatus {
        uncounted_terminated_pods: Some(UncountedTerminatedPods {
            succeeded: Some(vec!["uid-a".into()]),
            failed: None,
        }),
        ..JobStatus::default()
    };
    let j = job(
        JobSpec {
            completions: Some(2),
            ..JobSpec::default()
        },
        Some(status),
    );
    let plan = run(&j, &[released(pod("a", "Succeeded", None))], &[], 1);
    assert_eq!(plan.settled, vec!["uid-a".to_string()]);
    assert_eq!(settle(&plan, 1).succeeded, Some(1));
}

#[test]
fn finished_jobs_only_release_finalizers() {
    let mut status = JobStatus::default();
    set_condition(&mut status, new_condition("Complete", "True", "", "", t(0)));
    let j = job(JobSpec::default(), Some(status));
    let plan = run(&j, &[pod("a", "Succeeded", None)], &[], 1);
    assert_eq!(plan.release.len(), 1);
    assert!(plan.create.is_empty() && plan.record.is_none());
}

fn indexed_pod(name: &str, phase: &str, index: i32, failures: i32) -> Arc<Pod> {
    let mut p = (*pod(name, phase, Some(index))).clone();
    p.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(per_index::FAILURE_COUNT_KEY.into(), failures.to_string());
    Arc::new(p)
}

#[test]
fn backoff_limit_per_index_fails_an_index_and_keeps_the_others_running() {
    let spec = JobSpec {
        completions: Some(3),
        parallelism: Some(3),
        completion_mode: Some("Indexed".into()),
        backoff_limit: Some(i32::MAX),
        backoff_limit_per_index: Some(1),
        ..JobSpec::default()
    };
    let j = job(spec.clone(), None);
    let plan = run(&j, &[], &[], 0);
    assert_eq!(plan.create, vec![Some(0), Some(1), Some(2)]);
    assert_eq!(plan.index_failures.get(&1), Some(&0));
    // Index 1 fails once: retried after its own backoff, carrying count 1.
    let pods = [
        indexed_pod("a0", "Running", 0, 0),
        indexed_pod("a1", "Failed", 1, 0),
        indexed_pod("a2", "Running", 2, 0),
    ];
    let plan = run(&j, &pods, &[("a1", 0)], 1);
    assert!(plan.create.is_empty());
    assert_eq!(plan.requeue, Some(Duration::from_secs(9)));
    assert_eq!(plan.status.failed_indexes.as_deref(), Some(""));
    let status = settle(&plan, 1);
    let j = job(spec.clone(), Some(status));
    let pods = [
        indexed_pod("a0", "Running", 0, 0),
        released(indexed_pod("a1", "Failed", 1, 0)),
        indexed_pod("a2", "Running", 2, 0),
    ];
    let plan = run(&j, &pods, &[("a1", 0)], 11);
    assert_eq!(plan.create, vec![Some(1)]);
    assert_eq!(plan.index_failures.get(&1), Some(&1));
    // The retry fails too: the index is failed, the Job goes on.
    let pods = [
        indexed_pod("a0", "Succeeded", 0, 0),
        released(indexed_pod("a1", "Failed", 1, 0)),
        indexed_pod("b1", "Failed", 1, 1),
        indexed_pod("a2", "Running", 2, 0),
    ];
    let plan = run(&j, &pods, &[("a1", 0), ("a0", 12), ("b1", 12)], 12);
    assert_eq!(plan.status.failed_indexes.as_deref(), Some("1"));
    assert!(plan.create.is_empty() && plan.delete.is_empty());
    assert!(!has(&plan.status, "FailureTarget"));
    let status = settle(&plan, 12);
    assert_eq!(status.failed, Some(2));
    // The last index succeeds: every index is settled, one failed.
    let j = job(spec, Some(status));
    let pods = [indexed_pod("a2", "Succeeded", 2, 0)];
    let plan = run(&j, &pods, &[("a2", 13)], 13);
    let target = condition(&plan.status, "FailureTarget").expect("failure target");
    assert_eq!(target.reason.as_deref(), Some("FailedIndexes"));
    let status = settle(&plan, 13);
    assert_eq!(
        condition(&status, "Failed").and_then(|c| c.message),
        Some("Job has failed indexes".into())
    );
    assert_eq!(status.completed_indexes.as_deref(), Some("0,2"));
}

#[test]
fn max_failed_indexes_fails_the_job_and_deletes_its_pods() {
    let spec = JobSpec {
        completions: Some(4),
        parallelism: Some(4),
        completion_mode: Some("Indexed".into()),
        backoff_limit: Some(i32::MAX),
        backoff_limit_per_index: Some(0),
        max_failed_indexes: Some(0),
        ..JobSpec::default()
    };
    let j = job(spec, None);
    let pods = [
        indexed_pod("a0", "Failed", 0, 0),
        indexed_pod("a1", "Running", 1, 0),
    ];
    let plan = run(&j, &pods, &[("a0", 1)], 1);
    let target = condition(&plan.status, "FailureTarget").expect("failure target");
    assert_eq!(target.reason.as_deref(), Some("MaxFailedIndexesExceeded"));
    assert_eq!(plan.delete, vec!["a1".to_string()]);
    assert_eq!(plan.status.failed_indexes.as_deref(), Some("0"));
}

#[test]
fn fail_index_rule_fails_the_index_at_once() {
    use k8s_openapi::api::batch::v1::{
        PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyRule,
    };
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated, ContainerStatus};
    let spec = JobSpec {
        completions: Some(2),
        parallelism: Some(2),
        completion_mode: Some("Indexed".into()),
        backoff_limit: Some(i32::MAX),
        backoff_limit_per_index: Some(5),
        pod_failure_policy: Some(PodFailurePolicy {
            rules: vec![PodFailurePolicyRule {
                action: "FailIndex".into(),
                on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                    container_name: None,
                    operator: "In".into(),
                    values: vec![3],
                }),
                on_pod_conditions: None,
            }],
        }),
        ..JobSpec::default()
    };
    let j = job(spec, None);
    let mut failing = (*indexed_pod("a0", "Failed", 0, 0)).clone();
    failing.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
        name: "c".into(),
        state: Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: 3,
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        }),
        ..ContainerStatus::default()
    }]);
    let pods = [Arc::new(failing), indexed_pod("a1", "Running", 1, 0)];
    let plan = run(&j, &pods, &[("a0", 1)], 1);
    assert_eq!(plan.status.failed_indexes.as_deref(), Some("0"));
    assert!(plan.create.is_empty(), "a failed index is not retried");
    assert!(!has(&plan.status, "FailureTarget"));
}

#[test]
fn success_policy_meets_the_criteria_early_and_stops_the_rest() {
    use k8s_openapi::api::batch::v1::{SuccessPolicy, SuccessPolicyRule};
    let spec = JobSpec {
        completions: Some(5),
        parallelism: Some(5),
        completion_mode: Some("Indexed".into()),
        success_policy: Some(SuccessPolicy {
            rules: vec![SuccessPolicyRule {
                succeeded_indexes: Some("0".into()),
                succeeded_count: None,
            }],
        }),
        ..JobSpec::default()
    };
    let j = job(spec, None);
    let pods = [
        pod("a0", "Succeeded", Some(0)),
        pod("a1", "Running", Some(1)),
        pod("a2", "Running", Some(2)),
    ];
    let plan = run(&j, &pods, &[("a0", 1)], 1);
    let met = condition(&plan.status, "SuccessCriteriaMet").expect("criteria met");
    assert_eq!(met.reason.as_deref(), Some("SuccessPolicy"));
    assert_eq!(met.message.as_deref(), Some("Matched rules at index 0"));
    assert_eq!(plan.delete.len(), 2);
    assert!(plan.create.is_empty());
    let status = settle(&plan, 1);
    assert!(!has(&status, "Complete"), "pods are still terminating");
    // Once they are gone the Job is Complete, with the policy's reason.
    let j = job(j.spec.clone().unwrap(), Some(status));
    let plan = run(&j, &[released(pod("a0", "Succeeded", Some(0)))], &[], 2);
    let status = settle(&plan, 2);
    let complete = condition(&status, "Complete").expect("complete");
    assert_eq!(complete.reason.as_deref(), Some("SuccessPolicy"));
}
