//! TTL-after-finished controller: Jobs with `ttlSecondsAfterFinished` are
//! deleted that long after they finish.
//!
//! Upstream counterpart: `pkg/controller/ttlafterfinished`. A Job has
//! finished when its Complete or Failed condition is True; the clock
//! starts at that condition's transition time. When it runs out the Job
//! is read again from the server (the cache may be stale: a user may have
//! changed the TTL) and deleted with background propagation, pinned to the
//! uid and resourceVersion just read, so its pods go with it through the
//! garbage collector.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Preconditions, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::ResourceExt;

use crate::endpoints::Backoff;
use crate::informers::Informers;

/// Errors of the TTL-after-finished controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading job {0}: {1}")]
    Get(String, #[source] kube::Error),
    #[error("deleting job {0}: {1}")]
    Delete(String, #[source] kube::Error),
}

/// When the job finished: the transition time of its True Complete or
/// Failed condition (`jobFinishTime`).
pub fn finish_time(job: &Job) -> Option<Timestamp> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref().map(|t| t.0))
}

/// What to do with a job now.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    Nothing,
    Delete,
    /// Look again after this long.
    Wait(Duration),
}

pub fn decide(job: &Job, now: Timestamp) -> Decision {
    if job.metadata.deletion_timestamp.is_some() {
        return Decision::Nothing;
    }
    let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else {
        return Decision::Nothing;
    };
    let Some(finished) = finish_time(job) else {
        return Decision::Nothing;
    };
    let expires = finished + SignedDuration::from_secs(i64::from(ttl));
    let left = expires.duration_since(now);
    if left.is_negative() || left.is_zero() {
        Decision::Delete
    } else {
        Decision::Wait(left.unsigned_abs())
    }
}

struct Ctx {
    client: kube::Client,
    backoff: Backoff,
}

async fn sync(job: Arc<Job>, ctx: &Ctx) -> Result<Action, Error> {
    let ns = job.namespace().unwrap_or_default();
    let name = job.name_any();
    match decide(&job, Timestamp::now()) {
        Decision::Nothing => return Ok(Action::await_change()),
        Decision::Wait(d) => return Ok(Action::requeue(d + Duration::from_millis(10))),
        Decision::Delete => {}
    }
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let key = format!("{ns}/{name}");
    let Some(fresh) = api
        .get_opt(&name)
        .await
        .map_err(|e| Error::Get(key.clone(), e))?
    else {
        return Ok(Action::await_change());
    };
    match decide(&fresh, Timestamp::now()) {
        Decision::Nothing => return Ok(Action::await_change()),
        Decision::Wait(d) => return Ok(Action::requeue(d + Duration::from_millis(10))),
        Decision::Delete => {}
    }
    tracing::info!(job = %key, "ttl after finished expired; deleting job");
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        preconditions: Some(Preconditions {
            uid: fresh.metadata.uid.clone(),
            resource_version: fresh.metadata.resource_version.clone(),
        }),
        ..DeleteParams::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => Ok(Action::await_change()),
        // Gone already, or changed since: the change brings it back here.
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(Action::await_change()),
        Err(e) => Err(Error::Delete(key, e)),
    }
}

/// Run until the informers stop.
pub async fn run(client: kube::Client, informers: Arc<Informers>) {
    let jobs = informers.store::<Job>();
    if jobs.wait_until_ready().await.is_err() {
        return;
    }
    let ctx = Arc::new(Ctx {
        client,
        backoff: Backoff::default(),
    });
    Controller::for_shared_stream(informers.shared_stream::<Job>(), jobs)
        .run(
            |job, ctx: Arc<Ctx>| async move {
                let key = format!("{}/{}", job.namespace().unwrap_or_default(), job.name_any());
                let out = sync(job, &ctx).await;
                if out.is_ok() {
                    ctx.backoff.succeeded(&key);
                }
                out
            },
            |job, err, ctx| {
                let key = format!("{}/{}", job.namespace().unwrap_or_default(), job.name_any());
                tracing::warn!(job = %key, error = %err, "ttl-after-finished sync failed");
                Action::requeue(ctx.backoff.failed(&key))
            },
            ctx,
        )
        .for_each(|_| async {})
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(ttl: Option<i32>, condition: Option<(&str, &str)>) -> Job {
        let conditions: Vec<_> = condition
            .into_iter()
            .map(|(t, s)| json!({"type": t, "status": s, "lastTransitionTime": "2024-01-01T00:00:00Z"}))
            .collect();
        serde_json::from_value(json!({
            "metadata": {"name": "j", "namespace": "default"},
            "spec": {"ttlSecondsAfterFinished": ttl, "template": {"spec": {"containers": []}}},
            "status": {"conditions": conditions}
        }))
        .unwrap()
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn finished_jobs_wait_out_their_ttl_then_go() {
        let j = job(Some(60), Some(("Complete", "True")));
        assert_eq!(
            decide(&j, at("2024-01-01T00:00:20Z")),
            Decision::Wait(Duration::from_secs(40))
        );
        assert_eq!(decide(&j, at("2024-01-01T00:01:00Z")), Decision::Delete);
        let failed = job(Some(0), Some(("Failed", "True")));
        assert_eq!(
            decide(&failed, at("2024-01-01T00:00:00Z")),
            Decision::Delete
        );
    }

    #[test]
    fn running_jobs_and_jobs_without_ttl_stay() {
        let now = at("2030-01-01T00:00:00Z");
        assert_eq!(decide(&job(Some(1), None), now), Decision::Nothing);
        assert_eq!(
            decide(&job(Some(1), Some(("Complete", "False"))), now),
            Decision::Nothing
        );
        assert_eq!(
            decide(&job(None, Some(("Complete", "True"))), now),
            Decision::Nothing
        );
    }
}
