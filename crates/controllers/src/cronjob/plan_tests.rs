use super::*;
use k8s_openapi::api::batch::v1::{CronJobSpec, JobCondition, JobSpec, JobStatus, JobTemplateSpec};

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn cronjob(schedule: &str, f: impl FnOnce(&mut CronJobSpec)) -> CronJob {
    let mut spec = CronJobSpec {
        schedule: schedule.into(),
        job_template: JobTemplateSpec {
            metadata: None,
            spec: Some(JobSpec::default()),
        },
        ..CronJobSpec::default()
    };
    f(&mut spec);
    CronJob {
        metadata: ObjectMeta {
            name: Some("cj".into()),
            namespace: Some("ns".into()),
            uid: Some("cj-uid".into()),
            creation_timestamp: Some(Time(t("2024-01-01T00:00:10Z"))),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

fn job(name: &str, cond: Option<&str>, start: &str) -> Arc<Job> {
    Arc::new(Job {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            uid: Some(format!("uid-{name}")),
            annotations: Some([(SCHEDULED_AT.to_string(), start.to_string())].into()),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(JobStatus {
            start_time: Some(Time(t(start))),
            completion_time: cond.filter(|c| *c == "Complete").map(|_| Time(t(start))),
            conditions: cond.map(|c| {
                vec![JobCondition {
                    type_: c.into(),
                    status: "True".into(),
                    ..JobCondition::default()
                }]
            }),
            ..JobStatus::default()
        }),
    })
}

fn run(cj: &CronJob, jobs: &[Arc<Job>], now: &str) -> Plan {
    let sched: Schedule = cj.spec.as_ref().unwrap().schedule.parse().unwrap();
    let tz = match cj.spec.as_ref().unwrap().time_zone.as_deref() {
        Some(name) => TimeZone::get(name).unwrap(),
        None => TimeZone::UTC,
    };
    reconcile(
        &Snapshot {
            cronjob: cj,
            jobs,
            gone: &HashSet::new(),
            now: t(now),
        },
        &sched,
        &tz,
    )
}

#[test]
fn fires_at_the_schedule_time_with_the_upstream_job_name() {
    let cj = cronjob("*/1 * * * *", |_| {});
    let plan = run(&cj, &[], "2024-01-01T00:00:50Z");
    assert!(plan.create.is_none());
    assert_eq!(plan.requeue, Some(Duration::from_millis(10_100)));
    let plan = run(&cj, &[], "2024-01-01T00:01:02Z");
    let (job, at) = plan.create.expect("a job");
    assert_eq!(at, t("2024-01-01T00:01:00Z"));
    assert_eq!(job.metadata.name.as_deref(), Some("cj-28401121"));
    assert_eq!(
        job.metadata.annotations.as_ref().unwrap()[SCHEDULED_AT],
        "2024-01-01T00:01:00+00:00"
    );
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("CronJob", Some(true))
    );
    let created = Job {
        metadata: ObjectMeta {
            uid: Some("new".into()),
            ..job.metadata.clone()
        },
        ..Job::default()
    };
    let status = started(plan.status, &created, at);
    assert_eq!(status.active.as_ref().unwrap().len(), 1);
    assert_eq!(status.last_schedule_time, Some(Time(at)));
}

#[test]
fn time_zone_moves_the_activation() {
    let cj = cronjob("0 9 * * *", |s| s.time_zone = Some("Asia/Tokyo".into()));
    // 09:00 in Tokyo is 00:00 UTC.
    let plan = run(&cj, &[], "2024-01-02T00:00:30Z");
    let (job, at) = plan.create.expect("a job");
    assert_eq!(at, t("2024-01-02T00:00:00Z"));
    assert_eq!(
        job.metadata.annotations.unwrap()[SCHEDULED_AT],
        "2024-01-02T09:00:00+09:00"
    );
}

#[test]
fn forbid_waits_for_the_running_job_and_replace_deletes_it() {
    let running = job("cj-28401121", None, "2024-01-01T00:01:00Z");
    let mut cj = cronjob("*/1 * * * *", |s| {
        s.concurrency_policy = Some("Forbid".into())
    });
    cj.status = Some(started(
        CronJobStatus::default(),
        &running,
        t("2024-01-01T00:01:00Z"),
    ));
    let plan = run(&cj, std::slice::from_ref(&running), "2024-01-01T00:02:01Z");
    assert!(plan.create.is_none());
    cj.spec.as_mut().unwrap().concurrency_policy = Some("Replace".into());
    let plan = run(&cj, std::slice::from_ref(&running), "2024-01-01T00:02:01Z");
    assert_eq!(plan.delete, vec!["cj-28401121".to_string()]);
    assert_eq!(
        plan.create.unwrap().0.metadata.name.as_deref(),
        Some("cj-28401122")
    );
    cj.spec.as_mut().unwrap().concurrency_policy = Some("Allow".into());
    let plan = run(&cj, std::slice::from_ref(&running), "2024-01-01T00:02:01Z");
    assert!(plan.delete.is_empty() && plan.create.is_some());
}

#[test]
fn starting_deadline_skips_late_starts_and_suspend_stops_them() {
    let cj = cronjob("0 * * * *", |s| s.starting_deadline_seconds = Some(30));
    // Due at 01:00, and it is 01:00:45: too late.
    let plan = run(&cj, &[], "2024-01-01T01:00:45Z");
    assert!(plan.create.is_none());
    let cj = cronjob("0 * * * *", |s| s.starting_deadline_seconds = Some(60));
    assert!(run(&cj, &[], "2024-01-01T01:00:45Z").create.is_some());
    let cj = cronjob("0 * * * *", |s| s.suspend = Some(true));
    let plan = run(&cj, &[], "2024-01-01T01:00:45Z");
    assert!(plan.create.is_none() && plan.requeue.is_none());
}

#[test]
fn finished_jobs_leave_the_active_list_and_old_history_goes() {
    let done: Vec<Arc<Job>> = (0..5)
        .map(|i| {
            job(
                &format!("ok-{i}"),
                Some("Complete"),
                &format!("2024-01-01T00:0{i}:00Z"),
            )
        })
        .chain([
            job("bad-0", Some("Failed"), "2024-01-01T00:00:00Z"),
            job("bad-1", Some("Failed"), "2024-01-01T00:01:00Z"),
        ])
        .collect();
    let mut cj = cronjob("0 0 1 1 *", |_| {});
    cj.status = Some(started(
        CronJobStatus::default(),
        &done[4],
        t("2024-01-01T00:04:00Z"),
    ));
    let plan = run(&cj, &done, "2024-01-01T00:10:00Z");
    assert_eq!(plan.status.active, None);
    assert_eq!(
        plan.status.last_successful_time,
        Some(Time(t("2024-01-01T00:04:00Z")))
    );
    assert_eq!(
        plan.delete,
        vec!["ok-0".to_string(), "ok-1".to_string(), "bad-0".to_string()]
    );
    assert!(plan
        .events
        .iter()
        .any(|(_, r, m)| r == "SawCompletedJob"
            && m == "Saw completed job: ok-4, condition: Complete"));
}

#[test]
fn many_missed_times_are_reported_and_the_latest_runs() {
    let cj = cronjob("* * * * *", |_| {});
    let plan = run(&cj, &[], "2024-01-03T00:00:30Z");
    assert!(plan
        .events
        .iter()
        .any(|(w, r, _)| *w && r == "TooManyMissedTimes"));
    assert_eq!(plan.create.unwrap().1, t("2024-01-03T00:00:00Z"));
}
