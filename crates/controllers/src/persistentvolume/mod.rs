//! PersistentVolume binder: binds claims to matching volumes and keeps
//! both sides' phases (volumes Available/Bound/Released/Failed, claims
//! Pending/Bound/Lost).
//!
//! Upstream counterpart: the binding half of
//! `pkg/controller/volume/persistentvolume` (the
//! `persistentvolume-binder-controller`); it has no in-tree provisioner
//! or deleter, so claims naming a StorageClass wait for a volume to
//! appear (made by hand, or by a provisioner outside it such as
//! [`crate::localpath`]), volumes such a provisioner made wait Released
//! for it to delete them, and other volumes with the Delete or Recycle
//! policy go Failed when released, as upstream does for plugins without
//! a deleter.
//!
//! A binding is written in upstream's order — the volume's claimRef, the
//! volume's phase, the claim's volumeName, the claim's phase — so a crash
//! between steps leaves a state the next sync finishes. The claimRef
//! write carries the cached resourceVersion: of two claims racing for one
//! volume, the later write fails and its claim looks again.

pub mod binder;
pub mod pv_protection;
pub mod pvc_protection;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::endpoints::Backoff;
use crate::informers::Informers;
use binder::{ClaimPlan, ClassInfo, Consumer, VolumePlan, BIND_COMPLETED, BOUND_BY_CONTROLLER};

/// The node upstream's scheduler chose for a WaitForFirstConsumer claim.
const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";

/// Errors of the binder.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("binding volume {volume} to claim {claim}: {source}")]
    Bind {
        volume: String,
        claim: String,
        #[source]
        source: kube::Error,
    },
    #[error("updating claim {0}: {1}")]
    Claim(String, #[source] kube::Error),
    #[error("updating volume {0}: {1}")]
    Volume(String, #[source] kube::Error),
}

struct Ctx {
    client: kube::Client,
    volumes: Store<PersistentVolume>,
    claims: Store<PersistentVolumeClaim>,
    classes: Store<StorageClass>,
    pods: Store<Pod>,
    nodes: Store<Node>,
    recorder: Recorder,
    backoff: Backoff,
    /// Volume -> claim key, for bindings written but maybe not cached yet.
    taken: Mutex<HashMap<String, String>>,
    /// One binding at a time, so `taken` is read and written atomically.
    bind_lock: tokio::sync::Mutex<()>,
    /// The last Pending reason told per claim, so a claim that waits is
    /// not told again on every volume change. Entries go when the claim
    /// stops waiting; those of deleted claims are swept ([`Ctx::tell`]).
    told: Mutex<HashMap<String, &'static str>>,
}

fn claim_key(c: &PersistentVolumeClaim) -> String {
    format!(
        "{}/{}",
        c.metadata.namespace.as_deref().unwrap_or(""),
        c.metadata.name.as_deref().unwrap_or("")
    )
}

fn conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 || s.code == 404)
}

impl Ctx {
    /// Remember `reason` as told for the claim `key`; whether it is new.
    fn tell(&self, key: &str, reason: &'static str) -> bool {
        remember(
            &mut self.told.lock().expect("told lock"),
            key,
            reason,
            &self.claims,
        )
    }

    async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        note: String,
    ) {
        crate::daemonset::common::event(&self.recorder, obj, warning, reason, note).await
    }

    fn class(&self, claim: &PersistentVolumeClaim) -> Option<ClassInfo> {
        let name = claim.spec.as_ref()?.storage_class_name.as_deref()?;
        let sc = self.classes.get(&ObjectRef::new(name))?;
        Some(ClassInfo {
            provisioner: sc.provisioner.clone(),
            wait_for_first_consumer: sc.volume_binding_mode.as_deref()
                == Some("WaitForFirstConsumer"),
        })
    }
}

/// Record `reason` as told for the claim `key`; whether it differs from
/// what was told before. Deleted claims are never synced again, so when
/// the map outgrows the cached claims it keeps only claims that still
/// exist: it never holds more entries than there are claims, plus one.
fn remember(
    told: &mut HashMap<String, &'static str>,
    key: &str,
    reason: &'static str,
    claims: &Store<PersistentVolumeClaim>,
) -> bool {
    let before = told.insert(key.to_string(), reason);
    if told.len() > claims.len() {
        let live: std::collections::HashSet<String> =
            claims.state().iter().map(|c| claim_key(c)).collect();
        told.retain(|k, _| live.contains(k));
    }
    before != Some(reason)
}

/// The claims a pod on a node uses (they may be waiting for it).
fn claims_of_pod(pod: &Pod) -> Vec<ObjectRef<PersistentVolumeClaim>> {
    let Some(spec) = pod.spec.as_ref().filter(|s| s.node_name.is_some()) else {
        return Vec::new();
    };
    let ns = pod.namespace().unwrap_or_default();
    spec.volumes
        .iter()
        .flatten()
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| ObjectRef::new(&c.claim_name).within(&ns))
        .collect()
}

impl Ctx {
    /// Where the claim's first consumer is: the scheduler's selected
    /// node, else the node of a pod using it.
    fn consumer(&self, claim: &PersistentVolumeClaim) -> Option<Consumer> {
        let node = claim
            .annotations()
            .get(SELECTED_NODE)
            .cloned()
            .or_else(|| {
                let me = ObjectRef::from_obj(claim);
                self.pods.state().iter().find_map(|p| {
                    let done = p
                        .status
                        .as_ref()
                        .and_then(|s| s.phase.as_deref())
                        .is_some_and(|ph| ph == "Succeeded" || ph == "Failed");
                    (!done && claims_of_pod(p).contains(&me))
                        .then(|| p.spec.as_ref().and_then(|s| s.node_name.clone()))
                        .flatten()
                })
            })?;
        let labels = self
            .nodes
            .get(&ObjectRef::new(&node))
            .and_then(|n| n.metadata.labels.clone())
            .unwrap_or_default();
        Some(Consumer { node, labels })
    }
}

async fn sync_claim(claim: Arc<PersistentVolumeClaim>, ctx: &Ctx) -> Result<Action, Error> {
    let key = claim_key(&claim);
    let volumes = ctx.volumes.state();
    let taken = ctx.taken.lock().expect("taken lock").clone();
    let class = ctx.class(&claim);
    let consumer = class
        .as_ref()
        .filter(|c| c.wait_for_first_consumer)
        .and_then(|_| ctx.consumer(&claim));
    let plan = binder::plan_claim(&claim, &volumes, &taken, class.as_ref(), consumer.as_ref());
    if !matches!(plan, ClaimPlan::Pending(_)) {
        ctx.told.lock().expect("told lock").remove(&key);
    }
    match plan {
        ClaimPlan::Nothing => {}
        ClaimPlan::Pending(why) => {
            if let Some((warning, reason, note)) = why {
                if ctx.tell(&key, reason) {
                    ctx.event(&*claim, warning, reason, note).await;
                }
            }
        }
        ClaimPlan::Bind(volume) => {
            return bind(&claim, &volume, ctx).await;
        }
        ClaimPlan::Lost(why) => {
            let api: Api<PersistentVolumeClaim> =
                Api::namespaced(ctx.client.clone(), &claim.namespace().unwrap_or_default());
            api.patch_status(
                &claim.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": "Lost"}})),
            )
            .await
            .map_err(|e| Error::Claim(key.clone(), e))?;
            ctx.event(&*claim, true, "ClaimLost", why).await;
        }
    }
    Ok(Action::await_change())
}

/// Writes the four steps of a binding that are not written yet.
async fn bind(claim: &PersistentVolumeClaim, volume: &str, ctx: &Ctx) -> Result<Action, Error> {
    let key = claim_key(claim);
    let _one = ctx.bind_lock.lock().await;
    if ctx
        .taken
        .lock()
        .expect("taken lock")
        .get(volume)
        .is_some_and(|k| *k != key)
    {
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    let Some(pv) = ctx.volumes.get(&ObjectRef::new(volume)) else {
        return Ok(Action::requeue(Duration::from_millis(200)));
    };
    let err = |source| Error::Bind {
        volume: volume.to_string(),
        claim: key.clone(),
        source,
    };
    let pvs: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let claim_ref = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    let ref_done = claim_ref.and_then(|r| r.uid.as_deref()) == claim.metadata.uid.as_deref();
    if !ref_done {
        let mut meta = json!({"resourceVersion": pv.resource_version()});
        if claim_ref.is_none() {
            meta["annotations"] = json!({ BOUND_BY_CONTROLLER: "yes" });
        }
        let patch = json!({
            "metadata": meta,
            "spec": {"claimRef": {
                "kind": "PersistentVolumeClaim",
                "apiVersion": "v1",
                "namespace": claim.namespace(),
                "name": claim.name_any(),
                "uid": claim.metadata.uid,
                "resourceVersion": claim.resource_version(),
            }},
        });
        match pvs
            .patch(volume, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => {}
            // Someone else changed it: the cache brings the new state.
            Err(e) if conflict(&e) => return Ok(Action::requeue(Duration::from_millis(500))),
            Err(e) => return Err(err(e)),
        }
        ctx.taken
            .lock()
            .expect("taken lock")
            .insert(volume.to_string(), key.clone());
    }
    let pv_phase = pv.status.as_ref().and_then(|s| s.phase.as_deref());
    if !ref_done || pv_phase != Some("Bound") {
        pvs.patch_status(
            volume,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Bound", "message": null, "reason": null}})),
        )
        .await
        .map_err(err)?;
    }
    let api: Api<PersistentVolumeClaim> =
        Api::namespaced(ctx.client.clone(), &claim.namespace().unwrap_or_default());
    let named = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref());
    let completed = claim
        .annotations()
        .get(BIND_COMPLETED)
        .is_some_and(|v| v == "yes");
    if named != Some(volume) || !completed {
        let mut annotations = json!({ BIND_COMPLETED: "yes" });
        if named.is_none_or(str::is_empty) {
            annotations[BOUND_BY_CONTROLLER] = json!("yes");
        }
        let patch = json!({
            "metadata": {"annotations": annotations},
            "spec": {"volumeName": volume},
        });
        match api
            .patch(
                &claim.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if conflict(&e) => return Ok(Action::requeue(Duration::from_millis(500))),
            Err(e) => return Err(err(e)),
        }
    }
    let spec = pv.spec.clone().unwrap_or_default();
    let status = json!({"status": {
        "phase": "Bound",
        "accessModes": spec.access_modes,
        "capacity": spec.capacity,
    }});
    api.patch_status(
        &claim.name_any(),
        &PatchParams::default(),
        &Patch::Merge(status),
    )
    .await
    .map_err(err)?;
    ctx.taken.lock().expect("taken lock").remove(volume);
    Ok(Action::await_change())
}

async fn sync_volume(pv: Arc<PersistentVolume>, ctx: &Ctx) -> Result<Action, Error> {
    let name = pv.name_any();
    let claim = match pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
        Some(r) if r.uid.as_deref().is_some_and(|u| !u.is_empty()) => {
            let (ns, cname) = (
                r.namespace.clone().unwrap_or_default(),
                r.name.clone().unwrap_or_default(),
            );
            match ctx.claims.get(&ObjectRef::new(&cname).within(&ns)) {
                Some(c) => Some(Arc::unwrap_or_clone(c)),
                // Not cached: ask the server before calling it gone.
                None => Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), &ns)
                    .get_opt(&cname)
                    .await
                    .map_err(|e| Error::Volume(name.clone(), e))?,
            }
        }
        _ => None,
    };
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    match binder::plan_volume(&pv, claim.as_ref()) {
        VolumePlan::Nothing => {}
        VolumePlan::Phase(phase, message) => {
            let status = json!({"status": {"phase": phase, "message": message}});
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
                .await
                .map_err(|e| Error::Volume(name.clone(), e))?;
            if let Some(m) = message {
                ctx.event(&*pv, true, "VolumeFailedDelete", m).await;
            }
        }
        VolumePlan::Unbind => {
            let patch = json!({
                "metadata": {
                    "resourceVersion": pv.resource_version(),
                    "annotations": { BOUND_BY_CONTROLLER: null },
                },
                "spec": {"claimRef": null},
            });
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                Ok(_) => {}
                Err(e) if conflict(&e) => return Ok(Action::requeue(Duration::from_millis(500))),
                Err(e) => return Err(Error::Volume(name, e)),
            }
            api.patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": "Available"}})),
            )
            .await
            .map_err(|e| Error::Volume(name.clone(), e))?;
        }
    }
    Ok(Action::await_change())
}

/// The claims a volume change may concern: the one it names, or, for a
/// free volume, every claim still waiting.
fn claims_of_volume(
    pv: &PersistentVolume,
    claims: &Store<PersistentVolumeClaim>,
) -> Vec<ObjectRef<PersistentVolumeClaim>> {
    if let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
        if let (Some(ns), Some(name)) = (&r.namespace, &r.name) {
            return vec![ObjectRef::new(name).within(ns)];
        }
    }
    claims
        .state()
        .iter()
        .filter(|c| {
            c.spec
                .as_ref()
                .and_then(|s| s.volume_name.as_deref())
                .is_none_or(str::is_empty)
        })
        .map(|c| ObjectRef::from_obj(&**c))
        .collect()
}

/// The volumes a claim change may concern: the one it names and any whose
/// claimRef names it.
fn volumes_of_claim(
    c: &PersistentVolumeClaim,
    volumes: &Store<PersistentVolume>,
) -> Vec<ObjectRef<PersistentVolume>> {
    let mut out: Vec<_> = c
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|n| !n.is_empty())
        .map(|n| ObjectRef::new(&n))
        .into_iter()
        .collect();
    for v in volumes.state() {
        if v.spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .is_some_and(|r| r.name == c.metadata.name && r.namespace == c.metadata.namespace)
        {
            out.push(ObjectRef::from_obj(&*v));
        }
    }
    out
}

/// Run until the informers stop.
pub async fn run(client: kube::Client, informers: Arc<Informers>) {
    let volumes = informers.store::<PersistentVolume>();
    let claims = informers.store::<PersistentVolumeClaim>();
    let classes = informers.store::<StorageClass>();
    if volumes.wait_until_ready().await.is_err() || claims.wait_until_ready().await.is_err() {
        return;
    }
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "persistentvolume-controller".into(),
                instance: None,
            },
        ),
        client,
        volumes: volumes.clone(),
        claims: claims.clone(),
        classes,
        pods: informers.store::<Pod>(),
        nodes: informers.store::<Node>(),
        backoff: Backoff::default(),
        taken: Mutex::new(HashMap::new()),
        bind_lock: tokio::sync::Mutex::new(()),
        told: Mutex::new(HashMap::new()),
    });
    let claim_store = claims.clone();
    let claim_loop = Controller::for_shared_stream(
        informers.shared_stream::<PersistentVolumeClaim>(),
        claims.clone(),
    )
    .watches_shared_stream(informers.shared_stream::<PersistentVolume>(), move |pv| {
        claims_of_volume(&pv, &claim_store)
    })
    .watches_shared_stream(informers.shared_stream::<Pod>(), |pod| claims_of_pod(&pod))
    .run(
        |claim, ctx: Arc<Ctx>| async move {
            let key = claim_key(&claim);
            let out = sync_claim(claim, &ctx).await;
            if out.is_ok() {
                ctx.backoff.succeeded(&key);
            }
            out
        },
        |claim, err, ctx| {
            tracing::warn!(claim = %claim_key(&claim), error = %err, "claim sync failed");
            Action::requeue(ctx.backoff.failed(&claim_key(&claim)))
        },
        ctx.clone(),
    )
    .for_each(|_| async {});
    let volume_store = volumes.clone();
    let volume_loop =
        Controller::for_shared_stream(informers.shared_stream::<PersistentVolume>(), volumes)
            .watches_shared_stream(
                informers.shared_stream::<PersistentVolumeClaim>(),
                move |c| volumes_of_claim(&c, &volume_store),
            )
            .run(
                |pv, ctx: Arc<Ctx>| async move {
                    let key = format!("pv/{}", pv.name_any());
                    let out = sync_volume(pv, &ctx).await;
                    if out.is_ok() {
                        ctx.backoff.succeeded(&key);
                    }
                    out
                },
                |pv, err, ctx| {
                    tracing::warn!(volume = %pv.name_any(), error = %err, "volume sync failed");
                    Action::requeue(ctx.backoff.failed(&format!("pv/{}", pv.name_any())))
                },
                ctx,
            )
            .for_each(|_| async {});
    futures::join!(claim_loop, volume_loop);
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher;

    fn claim(name: &str) -> PersistentVolumeClaim {
        let mut c = PersistentVolumeClaim::default();
        c.metadata.name = Some(name.into());
        c.metadata.namespace = Some("ns".into());
        c
    }

    #[test]
    fn told_reasons_of_deleted_claims_are_swept() {
        let mut writer = Writer::<PersistentVolumeClaim>::default();
        let store = writer.as_reader();
        for n in ["a", "b"] {
            writer.apply_watcher_event(&watcher::Event::Apply(claim(n)));
        }
        let mut told = HashMap::new();
        assert!(remember(&mut told, "ns/a", "FailedBinding", &store));
        assert!(
            !remember(&mut told, "ns/a", "FailedBinding", &store),
            "told"
        );
        assert!(remember(&mut told, "ns/a", "WaitForFirstConsumer", &store));
        assert!(remember(&mut told, "ns/b", "FailedBinding", &store));
        // b is deleted; a new claim c waits: b's entry goes.
        writer.apply_watcher_event(&watcher::Event::Delete(claim("b")));
        writer.apply_watcher_event(&watcher::Event::Apply(claim("c")));
        writer.apply_watcher_event(&watcher::Event::Delete(claim("a")));
        assert!(remember(&mut told, "ns/c", "FailedBinding", &store));
        let mut keys: Vec<_> = told.keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, vec!["ns/c"]);
    }
}
