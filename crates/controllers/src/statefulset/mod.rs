//! StatefulSet controller: pods with stable names `<set>-<ordinal>`,
//! started in order (OrderedReady) or all at once (Parallel), each with
//! its own PersistentVolumeClaims from the volumeClaimTemplates, replaced
//! by a rolling update from the highest ordinal down to the partition.
//!
//! Upstream counterpart: `pkg/controller/statefulset`. Revisions are
//! ControllerRevisions as for DaemonSets (pods carry the revision's name
//! in `controller-revision-hash`); ordering decisions are in [`plan`],
//! pod and claim construction in [`identity`].

pub mod identity;
pub mod plan;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, PodTemplateSpec};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;
use serde_json::json;

use crate::daemonset::common::{self, Backoff, Expectations};
use crate::daemonset::history;
use crate::informers::Informers;
use crate::replicaset::index::PodIndex;

const COMPONENT: &str = "statefulset-controller";

/// Errors of the StatefulSet controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("creating pod {0}: {1}")]
    CreatePod(String, #[source] kube::Error),
    #[error("deleting pod {0}: {1}")]
    DeletePod(String, #[source] kube::Error),
    #[error("creating claim {0}: {1}")]
    CreateClaim(String, #[source] kube::Error),
    #[error("updating claim {0}: {1}")]
    UpdateClaim(String, #[source] kube::Error),
    #[error("revisions: {0}")]
    Revision(#[from] crate::daemonset::Error),
    #[error("updating status of statefulset {0}: {1}")]
    Status(String, #[source] kube::Error),
}

struct Ctx {
    client: kube::Client,
    index: Arc<PodIndex>,
    revisions: Store<ControllerRevision>,
    claims: Store<PersistentVolumeClaim>,
    expectations: Expectations,
    backoff: Backoff,
    recorder: Recorder,
}

/// Run until the shared informers stop.
pub async fn run(client: kube::Client, informers: Arc<Informers>) {
    let sets = informers.store::<StatefulSet>();
    let pods = informers.store::<Pod>();
    let revisions = informers.store::<ControllerRevision>();
    let claims = informers.store::<PersistentVolumeClaim>();
    let ready = futures::future::join4(
        sets.wait_until_ready(),
        pods.wait_until_ready(),
        revisions.wait_until_ready(),
        claims.wait_until_ready(),
    );
    let (a, b, c, d) = ready.await;
    if a.is_err() || b.is_err() || c.is_err() || d.is_err() {
        return;
    }
    let ctx = Arc::new(Ctx {
        index: common::pod_index(pods),
        revisions,
        claims,
        expectations: Expectations::default(),
        backoff: Backoff::default(),
        recorder: common::recorder(&client, COMPONENT),
        client,
    });
    Controller::for_shared_stream(informers.shared_stream::<StatefulSet>(), sets.clone())
        .watches_shared_stream(
            informers.shared_stream::<Pod>(),
            common::pod_owners(sets, ctx.index.clone(), |s: &StatefulSet| {
                s.spec.as_ref().map(|s| &s.selector)
            }),
        )
        .run(
            |set, ctx| async move {
                let key = key(&set);
                let out = sync(&set, &ctx).await;
                if out.is_ok() {
                    ctx.backoff.succeeded(&key);
                }
                out
            },
            |set, err, ctx| {
                tracing::warn!(statefulset = %key(&set), error = %err, "statefulset sync failed");
                Action::requeue(ctx.backoff.failed(&key(&set)))
            },
            ctx,
        )
        .for_each(|_| async {})
        .await;
}

fn key(set: &StatefulSet) -> String {
    format!("{}/{}", set.namespace().unwrap_or_default(), set.name_any())
}

/// The template a revision recorded (its data is a patch replacing it).
fn revision_template(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = rev.data.as_ref()?.0.pointer("/spec/template")?.clone();
    t.as_object_mut()?.remove("$patch");
    serde_json::from_value(t).ok()
}

async fn sync(set: &StatefulSet, ctx: &Ctx) -> Result<Action, Error> {
    let ns = set.namespace().unwrap_or_default();
    let name = set.name_any();
    let key = key(set);
    let Some(spec) = set.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let owner_ref = common::controller_ref("apps/v1", "StatefulSet", &set.metadata);
    let candidates = common::candidate_pods(&ctx.index, &set.metadata);
    let claim = common::claim(&set.metadata, Some(&spec.selector), candidates);
    let owned = common::apply_claim(&pods_api, &owner_ref, claim).await;
    let settled = ctx.expectations.satisfied(&key, &owned);

    // Revisions: the update revision is the current template's.
    let uid = set.metadata.uid.clone().unwrap_or_default();
    let revisions = history::owned_revisions(ctx.revisions.state(), &ns, &uid);
    let prefix = format!("{name}-");
    let live: HashSet<String> = owned
        .iter()
        .filter_map(|p| plan::revision_of(p).strip_prefix(&prefix).map(String::from))
        .collect();
    let status = set.status.as_ref();
    let collision_count = status.and_then(|s| s.collision_count);
    let mut hist = history::plan(
        &name,
        &owner_ref,
        &spec.template,
        collision_count,
        &revisions,
        spec.revision_history_limit.unwrap_or(10),
        &live,
    );
    let current_name = status
        .and_then(|s| s.current_revision.clone())
        .filter(|c| {
            revisions
                .iter()
                .any(|r| r.metadata.name.as_ref() == Some(c))
        })
        .unwrap_or_else(|| hist.current.clone());
    hist.delete.retain(|d| *d != current_name);
    if let Err(e) = crate::daemonset::write_history(&ctx.client, &ns, &hist).await {
        if matches!(e, crate::daemonset::Error::HashCollision(_)) {
            let count = collision_count.unwrap_or(0) + 1;
            crate::daemonset::bump_collision_count::<StatefulSet>(&ctx.client, &ns, &name, count)
                .await?;
        }
        return Err(e.into());
    }
    let current_template = revisions
        .iter()
        .find(|r| r.metadata.name.as_ref() == Some(&current_name))
        .and_then(|r| revision_template(r))
        .unwrap_or_else(|| spec.template.clone());

    let pods: BTreeMap<i32, Arc<Pod>> = owned
        .iter()
        .filter_map(|p| {
            Some((
                plan::ordinal(&name, p.metadata.name.as_deref()?)?,
                p.clone(),
            ))
        })
        .collect();
    let strategy = spec.update_strategy.as_ref();
    let partition = match strategy.and_then(|s| s.type_.as_deref()) {
        Some("OnDelete") => None,
        _ => Some(
            strategy
                .and_then(|s| s.rolling_update.as_ref())
                .and_then(|r| r.partition)
                .unwrap_or(0),
        ),
    };
    let snap = plan::Snapshot {
        replicas: spec.replicas.unwrap_or(1),
        start: spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0),
        ordered: spec.pod_management_policy.as_deref() != Some("Parallel"),
        pods,
        partition,
        current_revision: current_name.clone(),
        update_revision: hist.current.clone(),
        min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
        max_unavailable: strategy
            .and_then(|s| s.rolling_update.as_ref())
            .and_then(|r| r.max_unavailable.as_ref())
            .map(|m| {
                crate::disruption::status::scaled_value(m, spec.replicas.unwrap_or(1), false)
                    .unwrap_or(1)
                    .max(1)
            }),
        now: jiff::Timestamp::now(),
    };
    if settled && set.metadata.deletion_timestamp.is_none() {
        let todo = plan::reconcile(&snap);
        for (pod_name, pod_uid) in &todo.delete {
            let ordinal = plan::ordinal(&name, pod_name).unwrap_or(-1);
            if !(snap.start..snap.start + snap.replicas).contains(&ordinal) {
                release_claims(set, ctx, ordinal, pod_name, pod_uid).await?;
            }
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: Some(pod_uid.clone()),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match pods_api.delete(pod_name, &params).await {
                Ok(_) => {
                    ctx.expectations.expect_deletes(&key, [pod_uid.clone()]);
                    let msg = format!("delete Pod {pod_name} in StatefulSet {name} successful");
                    common::event(&ctx.recorder, set, false, "SuccessfulDelete", msg).await;
                }
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => return Err(Error::DeletePod(pod_name.clone(), e)),
            }
        }
        for (ordinal, updated) in &todo.create {
            let (template, revision) = if *updated {
                (&spec.template, &hist.current)
            } else {
                (&current_template, &current_name)
            };
            create_claims(set, ctx, *ordinal).await?;
            let pod = identity::new_pod(set, template, *ordinal, revision, &owner_ref);
            let pod_name = pod.name_any();
            match pods_api.create(&PostParams::default(), &pod).await {
                Ok(_) => {
                    ctx.expectations.expect_creates(&key, [pod_name.clone()]);
                    let msg = format!("create Pod {pod_name} in StatefulSet {name} successful");
                    common::event(&ctx.recorder, set, false, "SuccessfulCreate", msg).await;
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => {
                    let msg =
                        format!("create Pod {pod_name} in StatefulSet {name} failed error: {e}");
                    common::event(&ctx.recorder, set, true, "FailedCreate", msg).await;
                    return Err(Error::CreatePod(pod_name, e));
                }
            }
        }
    }
    let new_status = plan::status(&snap, set.metadata.generation, collision_count);
    if set.status.as_ref() != Some(&new_status) {
        Api::<StatefulSet>::namespaced(ctx.client.clone(), &ns)
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": new_status })),
            )
            .await
            .map_err(|e| Error::Status(key.clone(), e))?;
    }
    let waiting = snap.min_ready_seconds > 0
        && snap.pods.values().any(|p| {
            common::is_pod_ready(p)
                && !common::is_pod_available(p, snap.min_ready_seconds, snap.now)
        });
    Ok(if waiting {
        Action::requeue(Duration::from_secs(1))
    } else {
        Action::await_change()
    })
}

/// Create the claims of `ordinal` that do not exist yet.
async fn create_claims(set: &StatefulSet, ctx: &Ctx, ordinal: i32) -> Result<(), Error> {
    let ns = set.namespace().unwrap_or_default();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    for claim in identity::claims(set, ordinal) {
        let claim_name = claim.name_any();
        if ctx
            .claims
            .get(&ObjectRef::new(&claim_name).within(&ns))
            .is_some()
        {
            continue;
        }
        match api.create(&PostParams::default(), &claim).await {
            Ok(_) => {
                let msg = format!(
                    "create Claim {claim_name} Pod {}-{ordinal} in StatefulSet {} success",
                    set.name_any(),
                    set.name_any()
                );
                common::event(&ctx.recorder, set, false, "SuccessfulCreate", msg).await;
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(Error::CreateClaim(claim_name, e)),
        }
    }
    Ok(())
}

/// With `whenScaled: Delete`, a condemned pod's claims become the pod's
/// (and stop being the set's), so the garbage collector removes them with
/// the pod.
async fn release_claims(
    set: &StatefulSet,
    ctx: &Ctx,
    ordinal: i32,
    pod_name: &str,
    pod_uid: &str,
) -> Result<(), Error> {
    let policy = set
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    if policy.and_then(|p| p.when_scaled.as_deref()) != Some("Delete") || ordinal < 0 {
        return Ok(());
    }
    let ns = set.namespace().unwrap_or_default();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let set_uid = set.metadata.uid.clone().unwrap_or_default();
    for claim in identity::claims(set, ordinal) {
        let claim_name = claim.name_any();
        let Some(existing) = ctx.claims.get(&ObjectRef::new(&claim_name).within(&ns)) else {
            continue;
        };
        let mut refs: Vec<_> = existing
            .metadata
            .owner_references
            .iter()
            .flatten()
            .filter(|r| r.uid != set_uid && r.uid != pod_uid)
            .cloned()
            .collect();
        refs.push(identity::pod_owner(pod_name, pod_uid));
        let patch = json!({"metadata": {"ownerReferences": refs}});
        match api
            .patch(&claim_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(Error::UpdateClaim(claim_name, e)),
        }
    }
    Ok(())
}
