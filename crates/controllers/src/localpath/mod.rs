//! Local-path provisioner: dynamic node-local volumes for claims of a
//! class whose provisioner is `rancher.io/local-path` — k3s's default
//! `local-path` class, which `rkube server` creates too, so that a
//! StatefulSet's volumeClaimTemplates or a chart's claim binds without
//! setup.
//!
//! Upstream counterpart: rancher/local-path-provisioner on the
//! external-provisioner library (k3s ships both). How it goes:
//!
//! 1. The class binds on first consumer: the scheduler picks a node for
//!    the claim's pod and names it in the claim's
//!    `volume.kubernetes.io/selected-node` annotation; the PV binder tells
//!    the claim `ExternalProvisioning`.
//! 2. This controller makes the volume `pvc-<claim uid>`: a hostPath
//!    (DirectoryOrCreate) `<base>/pvc-<uid>_<namespace>_<name>` on that
//!    node, pinned there by nodeAffinity on kubernetes.io/hostname, the
//!    claim's size and access modes, the class's reclaim policy, a claimRef
//!    to the claim and `pv.kubernetes.io/provisioned-by`; the claim gets
//!    upstream's `volume.kubernetes.io/storage-provisioner` annotations
//!    and is told `Provisioning` and `ProvisioningSucceeded`. `<base>` is what the
//!    node's agent published in its Node's `rkube.io/local-storage-path`
//!    annotation (`<agent data-dir>/storage` unless `rkube agent
//!    --default-local-storage-path` says otherwise); the controller waits
//!    for a real node that has not published it yet.
//! 3. The binder binds the claim to it; the node's agent creates the
//!    directory (mode 0777, as local-path-provisioner's helper does, so
//!    that pods running as any user can write), and the kubelet mounts it.
//! 4. When the claim goes, the binder marks a Delete-policy volume
//!    Released; the node's agent removes the directory — only ever inside
//!    its own base directory — and deletes the volume (the kubelet crate's
//!    `localpath` module). Retain-policy volumes and their data stay.
//!
//! Claims asking for ReadWriteMany or ReadOnlyMany, or for a Block
//! volume, are refused with a `ProvisioningFailed` event: a directory on
//! one node cannot keep those promises (local-path-provisioner supports
//! only ReadWriteOnce and ReadWriteOncePod too). `rkube server
//! --disable-local-storage` turns off both the class and this controller,
//! for clusters that install their own provisioner under that name.

pub mod plan;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;
use serde_json::json;

use crate::daemonset::common::{event, recorder, Backoff};
use crate::informers::Informers;
use plan::Decision;

/// Errors of the provisioner.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("annotating claim {claim}: {source}")]
    Annotate {
        claim: String,
        #[source]
        source: kube::Error,
    },
    #[error("creating volume {volume} for claim {claim}: {source}")]
    Create {
        volume: String,
        claim: String,
        #[source]
        source: kube::Error,
    },
}

struct Ctx {
    client: kube::Client,
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    classes: Store<StorageClass>,
    nodes: Store<Node>,
    recorder: Recorder,
    backoff: Backoff,
    /// The last thing told per claim uid, so a claim that cannot be served
    /// is told once, not on every change; swept as claims go.
    told: Mutex<HashMap<String, String>>,
}

impl Ctx {
    /// Remember `what` as told for `uid`; whether it is new.
    fn tell(&self, uid: &str, what: &str) -> bool {
        let mut told = self.told.lock().expect("told lock");
        let before = told.insert(uid.to_string(), what.to_string());
        if told.len() > self.claims.len() {
            let live: std::collections::HashSet<String> = self
                .claims
                .state()
                .iter()
                .map(|c| c.uid().unwrap_or_default())
                .collect();
            told.retain(|k, _| live.contains(k));
        }
        before.as_deref() != Some(what)
    }

    async fn warn(&self, claim: &PersistentVolumeClaim, class: &str, why: &str) {
        if self.tell(&claim.uid().unwrap_or_default(), why) {
            let note = format!("failed to provision volume with StorageClass \"{class}\": {why}");
            event(&self.recorder, claim, true, "ProvisioningFailed", note).await;
        }
    }
}

fn claim_key(c: &PersistentVolumeClaim) -> String {
    format!("{}/{}", c.namespace().unwrap_or_default(), c.name_any())
}

async fn sync(claim: Arc<PersistentVolumeClaim>, ctx: &Ctx) -> Result<Action, Error> {
    let class_name = claim
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .unwrap_or_default();
    let class = ctx.classes.get(&ObjectRef::new(&class_name));
    let name = plan::volume_name(&claim);
    let exists = ctx.volumes.get(&ObjectRef::new(&name)).is_some();
    let node_name = match plan::decide(&claim, class.as_deref(), exists) {
        Decision::Skip => return Ok(Action::await_change()),
        Decision::Refuse(why) => {
            ctx.warn(&claim, &class_name, &why).await;
            return Ok(Action::await_change());
        }
        Decision::Provision { node } => node,
    };
    let class = class.expect("decide provisions only for a class");
    let Some(node) = ctx.nodes.get(&ObjectRef::new(&node_name)) else {
        let why = format!("node \"{node_name}\" not found");
        ctx.warn(&claim, &class_name, &why).await;
        return Ok(Action::requeue(Duration::from_secs(5)));
    };
    let Some(base) = plan::base_of(&node) else {
        // Its agent publishes the directory right after registering.
        tracing::debug!(node = %node_name, "no local storage path on the node yet");
        return Ok(Action::requeue(Duration::from_secs(2)));
    };
    let key = claim_key(&claim);
    if !plan::names_provisioner(&claim) {
        // What upstream's PV controller writes before handing a claim to
        // an external provisioner (`setClaimProvisioner`).
        let api: Api<PersistentVolumeClaim> =
            Api::namespaced(ctx.client.clone(), &claim.namespace().unwrap_or_default());
        let patch = json!({"metadata": {"annotations": {
            plan::STORAGE_PROVISIONER: plan::PROVISIONER,
            plan::BETA_STORAGE_PROVISIONER: plan::PROVISIONER,
        }}});
        match api
            .patch(
                &claim.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Action::await_change()),
            Err(source) => return Err(Error::Annotate { claim: key, source }),
        }
    }
    if ctx.tell(&claim.uid().unwrap_or_default(), "Provisioning") {
        let note = format!("External provisioner is provisioning volume for claim \"{key}\"");
        event(&ctx.recorder, &*claim, false, "Provisioning", note).await;
    }
    let pv = plan::build_volume(&claim, &class, &plan::hostname_of(&node), &base);
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    match api.create(&PostParams::default(), &pv).await {
        Ok(_) => {}
        // An earlier attempt made it; the cache had not shown it yet.
        Err(kube::Error::Api(s)) if s.code == 409 => return Ok(Action::await_change()),
        Err(source) => {
            ctx.warn(&claim, &class_name, &source.to_string()).await;
            return Err(Error::Create {
                volume: name,
                claim: key,
                source,
            });
        }
    }
    ctx.told
        .lock()
        .expect("told lock")
        .remove(&claim.uid().unwrap_or_default());
    let note = format!("Successfully provisioned volume {name}");
    event(&ctx.recorder, &*claim, false, "ProvisioningSucceeded", note).await;
    Ok(Action::await_change())
}

/// The claims a volume change may concern: the one it was made for (its
/// volume went away before binding: make it again).
fn claim_of_volume(pv: &PersistentVolume) -> Option<ObjectRef<PersistentVolumeClaim>> {
    let r = pv.spec.as_ref()?.claim_ref.as_ref()?;
    Some(ObjectRef::new(r.name.as_deref()?).within(r.namespace.as_deref()?))
}

/// Run until the informers stop.
pub async fn run(client: kube::Client, informers: Arc<Informers>) {
    let claims = informers.store::<PersistentVolumeClaim>();
    let volumes = informers.store::<PersistentVolume>();
    let classes = informers.store::<StorageClass>();
    let nodes = informers.store::<Node>();
    for ready in [
        claims.wait_until_ready().await,
        volumes.wait_until_ready().await,
        classes.wait_until_ready().await,
        nodes.wait_until_ready().await,
    ] {
        if ready.is_err() {
            return;
        }
    }
    let ctx = Arc::new(Ctx {
        recorder: recorder(&client, plan::PROVISIONER),
        client,
        claims: claims.clone(),
        volumes,
        classes,
        nodes,
        backoff: Backoff::default(),
        told: Mutex::new(HashMap::new()),
    });
    Controller::for_shared_stream(informers.shared_stream::<PersistentVolumeClaim>(), claims)
        .watches_shared_stream(informers.shared_stream::<PersistentVolume>(), |pv| {
            claim_of_volume(&pv)
        })
        .run(
            |claim, ctx: Arc<Ctx>| async move {
                let key = claim_key(&claim);
                let out = sync(claim, &ctx).await;
                if out.is_ok() {
                    ctx.backoff.succeeded(&key);
                }
                out
            },
            |claim, err, ctx| {
                tracing::warn!(claim = %claim_key(&claim), error = %err, "provisioning failed");
                Action::requeue(ctx.backoff.failed(&claim_key(&claim)))
            },
            ctx,
        )
        .for_each(|_| async {})
        .await;
}
