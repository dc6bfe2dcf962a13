//! PV protection: a volume being deleted keeps its
//! `kubernetes.io/pv-protection` finalizer (added by the API server's
//! StorageObjectInUseProtection admission) while a claim is bound to it.
//!
//! Upstream counterpart: `pkg/controller/volume/pvprotection`: a volume is
//! in use while its phase is Bound; once the binder marks it Released (its
//! claim went) or it was never bound, the finalizer goes.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::PersistentVolume;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::ResourceExt;

use super::pvc_protection::{finalizers_patch, without};
use crate::endpoints::Backoff;
use crate::informers::Informers;

pub const FINALIZER: &str = "kubernetes.io/pv-protection";

/// Errors of the pv-protection controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("removing the finalizer of volume {0}: {1}")]
    RemoveFinalizer(String, #[source] kube::Error),
}

/// The finalizers to write when `pv` is deleted and free, else None.
pub fn release(pv: &PersistentVolume) -> Option<Vec<String>> {
    pv.metadata.deletion_timestamp.as_ref()?;
    let bound = pv
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Bound");
    if bound {
        return None;
    }
    without(pv.metadata.finalizers.as_ref(), FINALIZER)
}

async fn sync(pv: Arc<PersistentVolume>, client: &kube::Client) -> Result<Action, Error> {
    let Some(rest) = release(&pv) else {
        return Ok(Action::await_change());
    };
    let api: Api<PersistentVolume> = Api::all(client.clone());
    let patch = finalizers_patch(pv.metadata.resource_version.as_ref(), rest);
    match api
        .patch(
            &pv.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(Action::await_change()),
        Err(e) => Err(Error::RemoveFinalizer(pv.name_any(), e)),
    }
}

struct Ctx {
    client: kube::Client,
    backoff: Backoff,
}

/// Run until the informers stop.
pub async fn run(client: kube::Client, informers: Arc<Informers>) {
    let ctx = Arc::new(Ctx {
        client,
        backoff: Backoff::default(),
    });
    Controller::for_shared_stream(
        informers.shared_stream::<PersistentVolume>(),
        informers.store::<PersistentVolume>(),
    )
    .run(
        |pv, ctx: Arc<Ctx>| async move {
            let k = pv.name_any();
            let out = sync(pv, &ctx.client).await;
            if out.is_ok() {
                ctx.backoff.succeeded(&k);
            }
            out
        },
        |pv, err, ctx| {
            tracing::warn!(volume = %pv.name_any(), error = %err, "pv protection failed");
            Action::requeue(ctx.backoff.failed(&pv.name_any()))
        },
        ctx,
    )
    .for_each(|_| async {})
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PersistentVolumeStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    #[test]
    fn a_bound_volume_keeps_its_finalizer() {
        let mut pv = PersistentVolume::default();
        pv.metadata.finalizers = Some(vec![FINALIZER.into()]);
        pv.status = Some(PersistentVolumeStatus {
            phase: Some("Bound".into()),
            ..Default::default()
        });
        assert_eq!(release(&pv), None, "not being deleted");
        pv.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        assert_eq!(release(&pv), None, "still bound");
        pv.status.as_mut().unwrap().phase = Some("Released".into());
        assert_eq!(release(&pv), Some(vec![]));
        pv.metadata.finalizers = Some(vec!["other".into()]);
        assert_eq!(release(&pv), None, "nothing of ours to remove");
    }
}
