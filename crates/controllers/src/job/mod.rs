//! Job controller: runs a Job's pods to completion — completions,
//! parallelism, retries with backoff up to backoffLimit,
//! activeDeadlineSeconds, Indexed completion, podFailurePolicy, suspend —
//! and tracks every finished pod through the job-tracking finalizer.
//!
//! Upstream counterpart: `pkg/controller/job`. The decisions are in
//! [`plan`]; this module reads the shared caches, writes status (with
//! optimistic concurrency: a stale cache gets a conflict and a retry),
//! removes finalizers, creates and deletes pods.

pub mod failure_policy;
pub mod indexes;
pub mod per_index;
pub mod plan;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::{Job, JobStatus};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;
use serde_json::json;

use crate::daemonset::common::{self, Backoff, Expectations};
use crate::informers::Informers;
use crate::replicaset::index::PodIndex;
use plan::TRACKING_FINALIZER;

const COMPONENT: &str = "job-controller";

/// Errors of the Job controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("creating pod for job {0}: {1}")]
    CreatePod(String, #[source] kube::Error),
    #[error("deleting pod {0}: {1}")]
    DeletePod(String, #[source] kube::Error),
    #[error("updating status of job {0}: {1}")]
    Status(String, #[source] kube::Error),
}

struct Ctx {
    client: kube::Client,
    index: Arc<PodIndex>,
    expectations: Expectations,
    backoff: Backoff,
    recorder: Recorder,
    /// When this controller first saw a pod finished, for pods whose
    /// status carries no finish time.
    seen_finished: Mutex<HashMap<String, jiff::Timestamp>>,
}

/// Run until the shared informers stop.
pub async fn run(client: kube::Client, informers: Arc<Informers>) {
    let jobs = informers.store::<Job>();
    let pods = informers.store::<Pod>();
    let (a, b) = futures::future::join(jobs.wait_until_ready(), pods.wait_until_ready()).await;
    if a.is_err() || b.is_err() {
        return;
    }
    let ctx = Arc::new(Ctx {
        index: common::pod_index(pods),
        expectations: Expectations::default(),
        backoff: Backoff::default(),
        recorder: common::recorder(&client, COMPONENT),
        seen_finished: Mutex::new(HashMap::new()),
        client: client.clone(),
    });
    let owners = common::pod_owners(jobs.clone(), ctx.index.clone(), |j: &Job| {
        j.spec.as_ref().and_then(|s| s.selector.as_ref())
    });
    let orphans = jobs.clone();
    let pod_trigger = move |pod: Arc<Pod>| {
        release_orphan(&client, &orphans, &pod);
        owners(pod)
    };
    Controller::for_shared_stream(informers.shared_stream::<Job>(), jobs.clone())
        .watches_shared_stream(informers.shared_stream::<Pod>(), pod_trigger)
        .run(
            |job, ctx| async move {
                let key = key(&job);
                let out = sync(&job, &ctx).await;
                if out.is_ok() {
                    ctx.backoff.succeeded(&key);
                }
                out
            },
            |job, err, ctx| {
                tracing::warn!(job = %key(&job), error = %err, "job sync failed");
                Action::requeue(ctx.backoff.failed(&key(&job)))
            },
            ctx,
        )
        .for_each(|_| async {})
        .await;
}

fn key(job: &Job) -> String {
    format!("{}/{}", job.namespace().unwrap_or_default(), job.name_any())
}

/// A finished or deleted pod still holding the tracking finalizer whose
/// Job is gone would never go away: drop the finalizer (upstream does
/// this in its pod event handlers too).
fn release_orphan(client: &kube::Client, jobs: &Store<Job>, pod: &Pod) {
    let finished = pod.metadata.deletion_timestamp.is_some() || common::is_terminal(pod);
    let holds = pod
        .metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == TRACKING_FINALIZER);
    if !finished || !holds {
        return;
    }
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let owner_alive = common::controller_of(&pod.metadata).is_some_and(|r| {
        r.kind == "Job"
            && jobs
                .get(&ObjectRef::new(&r.name).within(&ns))
                .is_some_and(|j| j.metadata.uid.as_deref() == Some(r.uid.as_str()))
    });
    if owner_alive {
        return;
    }
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod = pod.clone();
    tokio::spawn(async move {
        let _ = remove_finalizer(&api, &pod).await;
    });
}

/// Remove the tracking finalizer; the resourceVersion in the patch makes
/// it fail rather than overwrite a finalizer list changed meanwhile.
async fn remove_finalizer(api: &Api<Pod>, pod: &Pod) -> Result<(), kube::Error> {
    let rest: Vec<&String> = pod
        .metadata
        .finalizers
        .iter()
        .flatten()
        .filter(|f| *f != TRACKING_FINALIZER)
        .collect();
    // null rather than [] when none is left: the field then goes, as
    // upstream's strategic merge patch leaves it.
    let rest = if rest.is_empty() {
        serde_json::Value::Null
    } else {
        json!(rest)
    };
    let patch = json!({"metadata": {
        "finalizers": rest,
        "resourceVersion": pod.metadata.resource_version,
    }});
    match api
        .patch(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// When a finished pod finished: its containers' latest termination,
/// else when this controller first saw it finished.
fn finish_time(ctx: &Ctx, pod: &Pod, now: jiff::Timestamp) -> jiff::Timestamp {
    let from_status = pod.status.as_ref().and_then(|s| {
        s.container_statuses
            .iter()
            .flatten()
            .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
            .map(|t| t.0)
            .max()
    });
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let mut seen = ctx.seen_finished.lock().expect("finish times lock");
    from_status.unwrap_or_else(|| *seen.entry(uid).or_insert(now))
}

async fn sync(job: &Job, ctx: &Ctx) -> Result<Action, Error> {
    let ns = job.namespace().unwrap_or_default();
    let key = key(job);
    let Some(spec) = job.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    // A Job managed by another controller is left to it (spec.managedBy).
    if spec
        .managed_by
        .as_deref()
        .is_some_and(|m| m != "kubernetes.io/job-controller")
    {
        return Ok(Action::await_change());
    }
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let owner_ref = common::controller_ref("batch/v1", "Job", &job.metadata);
    let candidates = common::candidate_pods(&ctx.index, &job.metadata);
    let claim = common::claim(&job.metadata, spec.selector.as_ref(), candidates);
    let owned = common::apply_claim(&pods_api, &owner_ref, claim).await;
    if !ctx.expectations.satisfied(&key, &owned) {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let now = jiff::Timestamp::now();
    let finish_times: HashMap<String, jiff::Timestamp> = owned
        .iter()
        .filter(|p| common::is_terminal(p) || p.metadata.deletion_timestamp.is_some())
        .map(|p| {
            (
                p.metadata.uid.clone().unwrap_or_default(),
                finish_time(ctx, p, now),
            )
        })
        .collect();
    let todo = plan::reconcile(&plan::Snapshot {
        job,
        pods: &owned,
        finish_times: &finish_times,
        now,
    });

    let mut current = job.clone();
    if let Some(record) = &todo.record {
        current = write_status(&jobs_api, &current, record.clone()).await?;
    }
    let mut released: HashSet<String> = todo.settled.iter().cloned().collect();
    for (name, uid) in &todo.release {
        let Some(pod) = owned
            .iter()
            .find(|p| p.metadata.uid.as_deref() == Some(uid))
        else {
            continue;
        };
        match remove_finalizer(&pods_api, pod).await {
            Ok(()) => {
                released.insert(uid.clone());
            }
            Err(e) => {
                tracing::debug!(pod = %name, error = %e, "removing job-tracking finalizer failed")
            }
        }
    }
    let (status, finished) = plan::fold(todo.status.clone(), &released, now);
    if current.status.as_ref() != Some(&status) {
        write_status(&jobs_api, &current, status).await?;
    }
    for name in &todo.delete {
        let uid = owned
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
            .and_then(|p| p.metadata.uid.clone());
        match pods_api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {
                ctx.expectations.expect_deletes(&key, uid);
                common::event(
                    &ctx.recorder,
                    job,
                    false,
                    "SuccessfulDelete",
                    format!("Deleted pod: {name}"),
                )
                .await;
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(Error::DeletePod(name.clone(), e)),
        }
    }
    for index in &todo.create {
        match pods_api
            .create(
                &PostParams::default(),
                &new_pod(job, *index, &todo.index_failures, &owner_ref),
            )
            .await
        {
            Ok(pod) => {
                let name = pod.name_any();
                ctx.expectations.expect_creates(&key, [name.clone()]);
                common::event(
                    &ctx.recorder,
                    job,
                    false,
                    "SuccessfulCreate",
                    format!("Created pod: {name}"),
                )
                .await;
            }
            Err(e) => {
                common::event(
                    &ctx.recorder,
                    job,
                    true,
                    "FailedCreate",
                    format!("Error creating: {e}"),
                )
                .await;
                return Err(Error::CreatePod(key, e));
            }
        }
    }
    for (warning, reason, note) in todo.events.into_iter().chain(finished) {
        common::event(&ctx.recorder, job, warning, &reason, note).await;
    }
    Ok(match todo.requeue {
        Some(after) => Action::requeue(after.max(Duration::from_millis(100))),
        None => Action::await_change(),
    })
}

async fn write_status(api: &Api<Job>, job: &Job, status: JobStatus) -> Result<Job, Error> {
    let mut next = job.clone();
    next.status = Some(status);
    api.replace_status(&job.name_any(), &PostParams::default(), &next)
        .await
        .map_err(|e| Error::Status(key(job), e))
}

/// The pod the Job runs next (for `index`, when Indexed).
fn new_pod(
    job: &Job,
    index: Option<i32>,
    index_failures: &std::collections::BTreeMap<i32, i32>,
    owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
) -> Pod {
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    let mut finalizers = meta.finalizers.unwrap_or_default();
    finalizers.push(TRACKING_FINALIZER.into());
    let mut spec = template.spec.unwrap_or_default();
    let mut generate_name = format!("{}-", job.name_any());
    if let Some(i) = index {
        labels.insert(indexes::INDEX_KEY.into(), i.to_string());
        annotations.insert(indexes::INDEX_KEY.into(), i.to_string());
        if let Some(n) = index_failures.get(&i) {
            annotations.insert(per_index::FAILURE_COUNT_KEY.into(), n.to_string());
        }
        generate_name = format!("{}-{i}-", job.name_any());
        spec.hostname = Some(format!("{}-{i}", job.name_any()));
        // The kubelet fills it from the annotation, as upstream.
        let env = EnvVar {
            name: "JOB_COMPLETION_INDEX".into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: Some("v1".into()),
                    field_path: format!("metadata.annotations['{}']", indexes::INDEX_KEY),
                }),
                ..EnvVarSource::default()
            }),
        };
        let containers = spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten());
        for c in containers {
            let vars = c.env.get_or_insert_with(Vec::new);
            if !vars.iter().any(|v| v.name == env.name) {
                vars.push(env.clone());
            }
        }
    }
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            namespace: job.namespace(),
            labels: Some(labels),
            annotations: Some(annotations).filter(|a| !a.is_empty()),
            finalizers: Some(finalizers),
            owner_references: Some(vec![owner.clone()]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}
