//! CronJob controller: starts a Job at each schedule time (in the
//! CronJob's time zone), honouring concurrencyPolicy,
//! startingDeadlineSeconds and suspend, and keeps the history of finished
//! Jobs within its limits.
//!
//! Upstream counterpart: `pkg/controller/cronjob` (the v2 controller).
//! Each sync runs the pure [`plan::reconcile`] and comes back at the next
//! schedule time; Job changes (they are owned) bring it back earlier.

pub mod plan;
pub mod schedule;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::tz::TimeZone;
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use kube::api::{Api, DeleteParams, PostParams, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::Recorder;
use kube::runtime::reflector::Store;
use kube::ResourceExt;

use crate::daemonset::common::{self, Backoff};
use crate::informers::Informers;

const COMPONENT: &str = "cronjob-controller";

/// Errors of the CronJob controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("creating job {0}: {1}")]
    CreateJob(String, #[source] kube::Error),
    #[error("deleting job {0}: {1}")]
    DeleteJob(String, #[source] kube::Error),
    #[error("reading job {0}: {1}")]
    GetJob(String, #[source] kube::Error),
    #[error("updating status of cronjob {0}: {1}")]
    Status(String, #[source] kube::Error),
}

struct Ctx {
    client: kube::Client,
    jobs: Store<Job>,
    backoff: Backoff,
    recorder: Recorder,
}

/// Run until the shared informers stop.
pub async fn run(client: kube::Client, informers: Arc<Informers>) {
    let cronjobs = informers.store::<CronJob>();
    let ctx = Arc::new(Ctx {
        jobs: informers.store::<Job>(),
        backoff: Backoff::default(),
        recorder: common::recorder(&client, COMPONENT),
        client,
    });
    let (a, b) =
        futures::future::join(cronjobs.wait_until_ready(), ctx.jobs.wait_until_ready()).await;
    if a.is_err() || b.is_err() {
        return;
    }
    Controller::for_shared_stream(informers.shared_stream::<CronJob>(), cronjobs)
        .owns_shared_stream(informers.shared_stream::<Job>())
        .run(
            |cj, ctx| async move {
                let key = key(&cj);
                let out = sync(&cj, &ctx).await;
                if out.is_ok() {
                    ctx.backoff.succeeded(&key);
                }
                out
            },
            |cj, err, ctx| {
                tracing::warn!(cronjob = %key(&cj), error = %err, "cronjob sync failed");
                Action::requeue(ctx.backoff.failed(&key(&cj)))
            },
            ctx,
        )
        .for_each(|_| async {})
        .await;
}

fn key(cj: &CronJob) -> String {
    format!("{}/{}", cj.namespace().unwrap_or_default(), cj.name_any())
}

async fn sync(cj: &CronJob, ctx: &Ctx) -> Result<Action, Error> {
    let ns = cj.namespace().unwrap_or_default();
    let uid = cj.metadata.uid.clone().unwrap_or_default();
    let Some(spec) = cj.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let tz = match spec.time_zone.as_deref() {
        None => TimeZone::system(),
        Some(name) => match TimeZone::get(name) {
            Ok(tz) => tz,
            Err(e) => {
                let msg = format!("invalid timeZone: {name:?}: {e}");
                common::event(&ctx.recorder, cj, true, "UnknownTimeZone", msg).await;
                return Ok(Action::await_change());
            }
        },
    };
    let sched: schedule::Schedule = match spec.schedule.parse() {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("unparseable schedule: {:?} : {e}", spec.schedule);
            common::event(&ctx.recorder, cj, true, "UnparseableSchedule", msg).await;
            return Ok(Action::await_change());
        }
    };
    let jobs: Vec<Arc<Job>> = ctx
        .jobs
        .state()
        .into_iter()
        .filter(|j| j.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|j| common::controller_of(&j.metadata).is_some_and(|r| r.uid == uid))
        .collect();
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    // Active Jobs the cache lacks may be new rather than gone: ask.
    let mut gone = HashSet::new();
    for r in cj.status.iter().flat_map(|s| s.active.iter().flatten()) {
        let Some(ruid) = &r.uid else { continue };
        if jobs.iter().any(|j| j.metadata.uid.as_ref() == Some(ruid)) {
            continue;
        }
        let name = r.name.clone().unwrap_or_default();
        match jobs_api.get_opt(&name).await {
            Ok(Some(j)) if j.metadata.uid.as_ref() == Some(ruid) => {}
            Ok(_) => {
                gone.insert(ruid.clone());
            }
            Err(e) => return Err(Error::GetJob(name, e)),
        }
    }
    let todo = plan::reconcile(
        &plan::Snapshot {
            cronjob: cj,
            jobs: &jobs,
            gone: &gone,
            now: jiff::Timestamp::now(),
        },
        &sched,
        &tz,
    );
    let background = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    for name in &todo.delete {
        match jobs_api.delete(name, &background).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(Error::DeleteJob(name.clone(), e)),
        }
    }
    let mut status = todo.status.clone();
    if let Some((job, scheduled)) = &todo.create {
        let name = job.name_any();
        match jobs_api.create(&PostParams::default(), job).await {
            Ok(created) => {
                common::event(
                    &ctx.recorder,
                    cj,
                    false,
                    "SuccessfulCreate",
                    format!("Created job {name}"),
                )
                .await;
                status = plan::started(status, &created, *scheduled);
            }
            // Made by a sync whose status write was lost: adopt it.
            Err(kube::Error::Api(s)) if s.code == 409 => {
                if let Some(existing) = jobs_api
                    .get_opt(&name)
                    .await
                    .map_err(|e| Error::GetJob(name.clone(), e))?
                {
                    let ours =
                        common::controller_of(&existing.metadata).is_some_and(|r| r.uid == uid);
                    if ours
                        && !status
                            .active
                            .iter()
                            .flatten()
                            .any(|r| r.uid == existing.metadata.uid)
                    {
                        status = plan::started(status, &existing, *scheduled);
                    }
                }
            }
            Err(e) => {
                common::event(
                    &ctx.recorder,
                    cj,
                    true,
                    "FailedCreate",
                    format!("Error creating job: {e}"),
                )
                .await;
                return Err(Error::CreateJob(name, e));
            }
        }
    }
    for (warning, reason, note) in &todo.events {
        common::event(&ctx.recorder, cj, *warning, reason, note.clone()).await;
    }
    write_status(ctx, cj, status).await?;
    Ok(match todo.requeue {
        Some(after) => Action::requeue(after.max(Duration::from_millis(100))),
        None => Action::await_change(),
    })
}

async fn write_status(ctx: &Ctx, cj: &CronJob, status: CronJobStatus) -> Result<(), Error> {
    if cj.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<CronJob> =
        Api::namespaced(ctx.client.clone(), &cj.namespace().unwrap_or_default());
    let mut next = cj.clone();
    next.status = Some(status);
    api.replace_status(&cj.name_any(), &PostParams::default(), &next)
        .await
        .map_err(|e| Error::Status(key(cj), e))?;
    Ok(())
}
