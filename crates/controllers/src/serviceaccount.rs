//! ServiceAccount controller: a `default` ServiceAccount in every namespace.
//!
//! Upstream counterpart: `pkg/controller/serviceaccount/
//! serviceaccounts_controller.go`. Namespaces and ServiceAccounts are
//! watched; any change to a namespace or to a `default` account enqueues
//! the namespace, and a missing account is created again. Terminating
//! namespaces are skipped: the API server refuses creation there, and the
//! account is meant to go with the namespace.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::ResourceExt;

/// The account every namespace gets.
pub const DEFAULT: &str = "default";

/// Errors of the ServiceAccount controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading service account {0}/default: {1}")]
    Get(String, #[source] kube::Error),
    #[error("creating service account {0}/default: {1}")]
    Create(String, #[source] kube::Error),
}

/// What reconcile looks at for one namespace.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub namespace: String,
    /// The namespace exists and is not terminating.
    pub active: bool,
    pub has_default: bool,
}

/// What to do for one namespace.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    Nothing,
    Create(Box<ServiceAccount>),
}

pub fn reconcile(snap: &Snapshot) -> Plan {
    if !snap.active || snap.has_default {
        return Plan::Nothing;
    }
    Plan::Create(Box::new(ServiceAccount {
        metadata: ObjectMeta {
            name: Some(DEFAULT.into()),
            namespace: Some(snap.namespace.clone()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    }))
}

fn is_active(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_none()
        && ns.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating")
}

async fn sync(client: &kube::Client, ns: &Namespace) -> Result<(), Error> {
    let name = ns.name_any();
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
    let snap = Snapshot {
        active: is_active(ns),
        has_default: is_active(ns)
            && api
                .get_opt(DEFAULT)
                .await
                .map_err(|e| Error::Get(name.clone(), e))?
                .is_some(),
        namespace: name.clone(),
    };
    match reconcile(&snap) {
        Plan::Nothing => Ok(()),
        Plan::Create(sa) => match api.create(&PostParams::default(), &sa).await {
            Ok(_) => Ok(()),
            // Already there (a racing create) or namespace now terminating.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 403 => Ok(()),
            Err(e) => Err(Error::Create(name, e)),
        },
    }
}

/// Run until the watches end.
pub async fn run(client: kube::Client) {
    Controller::new(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
    )
    .watches(
        Api::<ServiceAccount>::all(client.clone()),
        watcher::Config::default(),
        |sa: ServiceAccount| {
            (sa.name_any() == DEFAULT)
                .then(|| sa.namespace().map(|ns| ObjectRef::new(&ns)))
                .flatten()
        },
    )
    .run(
        |ns: Arc<Namespace>, client: Arc<kube::Client>| async move {
            sync(&client, &ns).await.map(|_| Action::await_change())
        },
        |ns: Arc<Namespace>, e: &Error, _| {
            tracing::warn!(namespace = %ns.name_any(), error = %e, "service account sync failed");
            Action::requeue(Duration::from_secs(1))
        },
        Arc::new(client),
    )
    .for_each(|_| async {})
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_default_account_is_created() {
        let snap = Snapshot {
            namespace: "team".into(),
            active: true,
            has_default: false,
        };
        let Plan::Create(sa) = reconcile(&snap) else {
            panic!("expected a create")
        };
        assert_eq!(sa.metadata.name.as_deref(), Some("default"));
        assert_eq!(sa.metadata.namespace.as_deref(), Some("team"));
    }

    #[test]
    fn present_account_or_terminating_namespace_needs_nothing() {
        let mut snap = Snapshot {
            namespace: "team".into(),
            active: true,
            has_default: true,
        };
        assert_eq!(reconcile(&snap), Plan::Nothing);
        snap.active = false;
        snap.has_default = false;
        assert_eq!(reconcile(&snap), Plan::Nothing);
    }
}
