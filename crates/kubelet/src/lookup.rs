//! The API objects pod workers read besides pods: ConfigMaps and Secrets
//! (fetched when a container starts or a volume refreshes) and Services
//! (kept in one shared watch cache for the service environment
//! variables).
//!
//! Upstream counterpart: the kubelet's configmap/secret managers and its
//! service lister.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolume, PersistentVolumeClaim, Secret, Service, ServiceAccount,
};
use kube::api::Api;
use kube::api::PostParams;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};

/// Reads of cluster objects; errors are user-facing messages.
#[async_trait]
pub trait Lookup: Send + Sync {
    /// `Ok(None)` when it does not exist.
    async fn config_map(&self, ns: &str, name: &str) -> Result<Option<ConfigMap>, String>;
    async fn secret(&self, ns: &str, name: &str) -> Result<Option<Secret>, String>;
    /// Services of a namespace (from a cache; may lag slightly).
    fn services(&self, ns: &str) -> Vec<Arc<Service>>;
    /// A service account token bound to the pod (TokenRequest); returns
    /// the token and its lifetime in seconds.
    async fn token(&self, req: &TokenAsk) -> Result<(String, i64), String>;
    /// The host directory behind a bound PersistentVolumeClaim (hostPath
    /// or local PVs).
    async fn claim_path(&self, ns: &str, claim: &str) -> Result<ClaimPath, String>;
}

/// Where a bound claim's volume lives on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath {
    pub path: std::path::PathBuf,
    /// A hostPath volume's `type` (DirectoryOrCreate, ...), checked and
    /// acted on as for a pod's own hostPath volume; None for local PVs,
    /// whose path must exist.
    pub host_path_type: Option<String>,
    /// A local-path volume (provisioned by `rancher.io/local-path`): its
    /// directory is made mode 0777 if missing, as the node's local-path
    /// loop makes it, so that pods running as any user can write.
    pub local_path: bool,
}

/// What a projected serviceAccountToken source asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenAsk {
    pub namespace: String,
    pub service_account: String,
    pub audience: Option<String>,
    pub expiration_seconds: i64,
    pub pod_name: String,
    pub pod_uid: String,
}

pub struct ClusterLookup {
    client: kube::Client,
    services: Store<Service>,
}

impl ClusterLookup {
    /// Starts the Services watch in the background.
    pub fn start(client: kube::Client) -> ClusterLookup {
        let (store, writer) = reflector::store();
        let api: Api<Service> = Api::all(client.clone());
        let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
            .default_backoff()
            .applied_objects();
        tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(r) = stream.next().await {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "services watch");
                }
            }
        });
        ClusterLookup {
            client,
            services: store,
        }
    }
}

fn missing(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

#[async_trait]
impl Lookup for ClusterLookup {
    async fn config_map(&self, ns: &str, name: &str) -> Result<Option<ConfigMap>, String> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
        match api.get(name).await {
            Ok(c) => Ok(Some(c)),
            Err(e) if missing(&e) => Ok(None),
            Err(e) => Err(format!("cannot get configmap {ns}/{name}: {e}")),
        }
    }

    async fn secret(&self, ns: &str, name: &str) -> Result<Option<Secret>, String> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        match api.get(name).await {
            Ok(s) => Ok(Some(s)),
            Err(e) if missing(&e) => Ok(None),
            Err(e) => Err(format!("cannot get secret {ns}/{name}: {e}")),
        }
    }

    fn services(&self, ns: &str) -> Vec<Arc<Service>> {
        self.services
            .state()
            .into_iter()
            .filter(|s| s.metadata.namespace.as_deref() == Some(ns))
            .collect()
    }

    async fn token(&self, req: &TokenAsk) -> Result<(String, i64), String> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &req.namespace);
        let tr = TokenRequest {
            spec: TokenRequestSpec {
                audiences: req.audience.iter().cloned().collect(),
                expiration_seconds: Some(req.expiration_seconds),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(req.pod_name.clone()),
                    uid: Some(req.pod_uid.clone()),
                }),
            },
            ..Default::default()
        };
        let out: TokenRequest = api
            .create_subresource("token", &req.service_account, &PostParams::default(), &tr)
            .await
            .map_err(|e| {
                format!(
                    "failed to fetch token for service account {}/{}: {e}",
                    req.namespace, req.service_account
                )
            })?;
        let status = out.status.ok_or("token request returned no status")?;
        let ttl = status
            .expiration_timestamp
            .0
            .duration_since(k8s_openapi::jiff::Timestamp::now())
            .as_secs()
            .max(1);
        Ok((status.token, ttl))
    }

    async fn claim_path(&self, ns: &str, claim: &str) -> Result<ClaimPath, String> {
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        let pvc = pvcs
            .get(claim)
            .await
            .map_err(|e| format!("persistentvolumeclaim \"{claim}\": {e}"))?;
        let volume = pvc
            .spec
            .and_then(|s| s.volume_name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("persistentvolumeclaim \"{claim}\" is not bound"))?;
        let pvs: Api<PersistentVolume> = Api::all(self.client.clone());
        let pv = pvs
            .get(&volume)
            .await
            .map_err(|e| format!("persistentvolume \"{volume}\": {e}"))?;
        let local_path = pv
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("pv.kubernetes.io/provisioned-by"))
            .is_some_and(|p| p == crate::localpath::PROVISIONER);
        let spec = pv.spec.unwrap_or_default();
        if let Some(h) = spec.host_path {
            return Ok(ClaimPath {
                path: h.path.into(),
                host_path_type: Some(h.type_.unwrap_or_default()),
                local_path,
            });
        }
        if let Some(l) = spec.local {
            return Ok(ClaimPath {
                path: l.path.into(),
                host_path_type: None,
                local_path: false,
            });
        }
        Err(format!(
            "persistentvolume \"{volume}\" is neither hostPath nor local"
        ))
    }
}
