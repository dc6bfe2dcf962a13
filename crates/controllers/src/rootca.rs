//! Root CA publisher: a `kube-root-ca.crt` ConfigMap in every namespace.
//!
//! Upstream counterpart: `pkg/controller/certificates/rootcacertpublisher`.
//! Pods verify the API server with this bundle (projected service account
//! volumes mount it), so the ConfigMap is recreated when deleted and its
//! `ca.crt` restored when someone changes it; other keys are dropped as
//! upstream does, since the map belongs to the controller.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::ResourceExt;

/// The ConfigMap's name and its single key.
pub const NAME: &str = "kube-root-ca.crt";
pub const KEY: &str = "ca.crt";

/// Errors of the root CA publisher.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading configmap {0}/kube-root-ca.crt: {1}")]
    Get(String, #[source] kube::Error),
    #[error("writing configmap {0}/kube-root-ca.crt: {1}")]
    Write(String, #[source] kube::Error),
}

/// What reconcile looks at for one namespace.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub namespace: String,
    pub active: bool,
    pub current: Option<ConfigMap>,
    pub ca_pem: String,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    Nothing,
    Create(ConfigMap),
    /// Replace the current map (its resourceVersion kept) with this one.
    Update(ConfigMap),
}

fn wanted_data(snap: &Snapshot) -> BTreeMap<String, String> {
    BTreeMap::from([(KEY.to_string(), snap.ca_pem.clone())])
}

pub fn reconcile(snap: &Snapshot) -> Plan {
    if !snap.active {
        return Plan::Nothing;
    }
    let data = wanted_data(snap);
    match &snap.current {
        None => Plan::Create(ConfigMap {
            metadata: ObjectMeta {
                name: Some(NAME.into()),
                namespace: Some(snap.namespace.clone()),
                ..ObjectMeta::default()
            },
            data: Some(data),
            ..ConfigMap::default()
        }),
        Some(cm) if cm.data.as_ref() == Some(&data) && cm.binary_data.is_none() => Plan::Nothing,
        Some(cm) => {
            let mut fixed = cm.clone();
            fixed.data = Some(data);
            fixed.binary_data = None;
            Plan::Update(fixed)
        }
    }
}

fn is_active(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_none()
        && ns.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating")
}

struct Ctx {
    client: kube::Client,
    ca_pem: String,
}

async fn sync(ctx: &Ctx, ns: &Namespace) -> Result<(), Error> {
    let name = ns.name_any();
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &name);
    let active = is_active(ns);
    let current = if active {
        api.get_opt(NAME)
            .await
            .map_err(|e| Error::Get(name.clone(), e))?
    } else {
        None
    };
    let snap = Snapshot {
        namespace: name.clone(),
        active,
        current,
        ca_pem: ctx.ca_pem.clone(),
    };
    let result = match reconcile(&snap) {
        Plan::Nothing => return Ok(()),
        Plan::Create(cm) => api.create(&PostParams::default(), &cm).await,
        Plan::Update(cm) => api.replace(NAME, &PostParams::default(), &cm).await,
    };
    match result {
        Ok(_) => Ok(()),
        // Terminating namespace: nothing to publish any more.
        Err(kube::Error::Api(s)) if s.code == 403 => Ok(()),
        Err(e) => Err(Error::Write(name, e)),
    }
}

/// Run until the watches end, publishing `ca_pem`.
pub async fn run(client: kube::Client, ca_pem: String) {
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        ca_pem,
    });
    Controller::new(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
    )
    .watches(
        Api::<ConfigMap>::all(client),
        watcher::Config::default(),
        |cm: ConfigMap| {
            (cm.name_any() == NAME)
                .then(|| cm.namespace().map(|ns| ObjectRef::new(&ns)))
                .flatten()
        },
    )
    .run(
        |ns: Arc<Namespace>, ctx: Arc<Ctx>| async move {
            sync(&ctx, &ns).await.map(|_| Action::await_change())
        },
        |ns: Arc<Namespace>, e: &Error, _| {
            tracing::warn!(namespace = %ns.name_any(), error = %e, "root CA publish failed");
            Action::requeue(Duration::from_secs(1))
        },
        ctx,
    )
    .for_each(|_| async {})
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(current: Option<ConfigMap>) -> Snapshot {
        Snapshot {
            namespace: "team".into(),
            active: true,
            current,
            ca_pem: "PEM".into(),
        }
    }

    #[test]
    fn missing_map_is_created_with_the_ca() {
        let Plan::Create(cm) = reconcile(&snap(None)) else {
            panic!("expected a create")
        };
        assert_eq!(cm.metadata.name.as_deref(), Some(NAME));
        assert_eq!(cm.metadata.namespace.as_deref(), Some("team"));
        assert_eq!(cm.data.unwrap()[KEY], "PEM");
    }

    #[test]
    fn changed_map_is_restored_keeping_its_version() {
        let Plan::Create(mut cm) = reconcile(&snap(None)) else {
            panic!()
        };
        assert_eq!(reconcile(&snap(Some(cm.clone()))), Plan::Nothing);
        cm.metadata.resource_version = Some("7".into());
        cm.data = Some(BTreeMap::from([(KEY.into(), "tampered".into())]));
        let Plan::Update(fixed) = reconcile(&snap(Some(cm))) else {
            panic!("expected an update")
        };
        assert_eq!(fixed.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(fixed.data.unwrap()[KEY], "PEM");
    }

    #[test]
    fn terminating_namespace_gets_nothing() {
        let mut s = snap(None);
        s.active = false;
        assert_eq!(reconcile(&s), Plan::Nothing);
    }
}
