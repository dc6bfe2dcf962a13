//! The Kubernetes API over HTTPS.
//!
//! Upstream counterpart: kube-apiserver (`k8s.io/apiserver/pkg/endpoints`,
//! `pkg/controlplane`). A request goes: TLS and authentication
//! ([`serve`]) → path parsing ([`request`]) → the generic REST handlers
//! ([`rest`]) → the resource's [`rkube_registry::ResourceStore`] → the
//! store. Every built-in resource is served by the same handlers; what
//! differs per resource lives in its strategy.

mod apply;
mod authn;
mod decode;
mod discovery;
mod handler;
mod openapi;
mod patch_schema;
pub mod request;
mod response;
mod rest;
mod scale;
pub mod serve;
mod table;
mod token;
mod watch;
mod write;
mod yaml;

use std::collections::HashMap;
use std::sync::Arc;

use rkube_api::catalog;
use rkube_registry::resources::strategy_for;
use rkube_registry::{Clock, ResourceStore, SystemClock};
use rkube_storage::Store;
use serde_json::json;

pub use handler::router;
pub use serve::{serve, User};

/// Build the large generated documents (OpenAPI, protobuf schema tables)
/// now rather than on the first request; blocking, so run it off the
/// async workers.
pub fn warm_up() {
    rkube_openapi::prepare();
    rkube_protobuf::warm_up();
}

/// The namespaces every cluster has from the start.
pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// The API server's state: a store per served resource.
pub struct ApiServer {
    resources: HashMap<(&'static str, &'static str, &'static str), Arc<ResourceStore>>,
    /// Signs and verifies service account tokens; without it TokenRequest
    /// is unavailable and bearer tokens are not accepted.
    sa_key: Option<Arc<rkube_pki::SaKey>>,
}

impl ApiServer {
    /// Serve every resource of the catalog from `store`.
    pub fn new(store: Arc<dyn Store>) -> ApiServer {
        Self::with_clock(store, Arc::new(SystemClock))
    }

    pub fn with_clock(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> ApiServer {
        let resources = catalog::all()
            .map(|info| {
                let rs = ResourceStore::new(info, strategy_for(info), store.clone(), clock.clone());
                ((info.group, info.version, info.plural), Arc::new(rs))
            })
            .collect();
        ApiServer {
            resources,
            sa_key: None,
        }
    }

    /// Issue and accept service account tokens signed with `key`.
    pub fn with_service_account_key(mut self, key: rkube_pki::SaKey) -> ApiServer {
        self.sa_key = Some(Arc::new(key));
        self
    }

    pub fn resource(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<&Arc<ResourceStore>> {
        let info = catalog::lookup(group, version, plural)?;
        self.resources.get(&(info.group, info.version, info.plural))
    }

    fn namespaces(&self) -> &Arc<ResourceStore> {
        self.resource("", "v1", "namespaces")
            .expect("the catalog serves namespaces")
    }

    /// Create the system namespaces that do not exist yet.
    pub async fn bootstrap(&self) -> Result<(), rkube_machinery::StatusError> {
        for ns in SYSTEM_NAMESPACES {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            match self.namespaces().create(None, obj, false).await {
                Ok(_) => tracing::info!(namespace = ns, "created system namespace"),
                Err(e) if e.reason() == "AlreadyExists" => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
