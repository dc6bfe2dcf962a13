//! Static pods: pod manifests in `<data-dir>/agent/pod-manifests` run
//! without the API server's say, and each is shown in the API as a
//! *mirror pod* (annotation `kubernetes.io/config.mirror`) that the
//! kubelet recreates if someone deletes it.
//!
//! Upstream counterpart: `pkg/kubelet/config/file.go` (the directory
//! source, re-read every 20 s), `config/common.go` (names
//! `<name>-<node>`, uids from a hash of the manifest, the config
//! annotations) and `pkg/kubelet/pod/mirror_client.go`.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, PostParams};

pub const MIRROR: &str = "kubernetes.io/config.mirror";
pub const SOURCE: &str = "kubernetes.io/config.source";
pub const HASH: &str = "kubernetes.io/config.hash";

/// Whether a pod from the API is a mirror of a static pod.
pub fn is_mirror(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(MIRROR))
}

/// Reads every manifest (`*.yaml`, `*.yml`, `*.json`) in `dir`; a bad file
/// is logged and skipped. Keyed by the pod's uid.
pub fn scan(dir: &Path, node: &str) -> HashMap<String, Pod> {
    let mut out = HashMap::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            )
        })
        .collect();
    files.sort();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        match parse(&text, node) {
            Ok(pod) => {
                out.insert(pod.metadata.uid.clone().unwrap_or_default(), pod);
            }
            Err(e) => tracing::warn!(file = %f.display(), error = %e, "bad static pod manifest"),
        }
    }
    out
}

/// A manifest as the pod the kubelet runs.
pub fn parse(text: &str, node: &str) -> Result<Pod, String> {
    let mut pod: Pod = if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| e.to_string())?
    } else {
        serde_saphyr::from_str(text).map_err(|e| e.to_string())?
    };
    let name = pod
        .metadata
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or("metadata.name is required")?;
    if pod.spec.is_none() {
        return Err("spec is required".into());
    }
    let mut h = DefaultHasher::new();
    text.hash(&mut h);
    node.hash(&mut h);
    let a = h.finish();
    name.hash(&mut h);
    let uid = format!("{a:016x}{:016x}", h.finish());
    let m = &mut pod.metadata;
    m.name = Some(format!("{name}-{node}"));
    if m.namespace.as_deref().unwrap_or("").is_empty() {
        m.namespace = Some("default".into());
    }
    m.uid = Some(uid.clone());
    let ann = m.annotations.get_or_insert_with(BTreeMap::new);
    ann.insert(SOURCE.into(), "file".into());
    ann.insert(HASH.into(), uid);
    let spec = pod.spec.as_mut().expect("checked above");
    spec.node_name = Some(node.to_string());
    spec.restart_policy.get_or_insert_with(|| "Always".into());
    spec.dns_policy.get_or_insert_with(|| "ClusterFirst".into());
    spec.termination_grace_period_seconds.get_or_insert(30);
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        if c.image_pull_policy.is_none() {
            let latest = c.image.as_deref().is_some_and(|i| {
                !i.rsplit('/').next().unwrap_or(i).contains(':') || i.ends_with(":latest")
            });
            c.image_pull_policy = Some(if latest { "Always" } else { "IfNotPresent" }.into());
        }
    }
    pod.status = None;
    Ok(pod)
}

/// Creates the mirror pod of `pod` unless it exists, owned by the Node.
pub async fn ensure_mirror(
    client: &kube::Client,
    pod: &Pod,
    node: &str,
) -> Result<(), kube::Error> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let name = pod.metadata.name.clone().unwrap_or_default();
    let hash = pod.metadata.uid.clone().unwrap_or_default();
    if let Some(existing) = api.get_opt(&name).await? {
        let same = existing
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(MIRROR))
            .is_some_and(|h| *h == hash);
        if same && existing.metadata.deletion_timestamp.is_none() {
            return Ok(());
        }
        // A stale mirror (older manifest) or a regular pod of that name.
        let _ = api.delete(&name, &Default::default()).await;
        return Ok(());
    }
    let node_uid = Api::<Node>::all(client.clone())
        .get(node)
        .await?
        .metadata
        .uid
        .unwrap_or_default();
    let mut mirror = pod.clone();
    mirror.metadata.uid = None;
    mirror.metadata.resource_version = None;
    mirror
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(MIRROR.into(), hash);
    mirror.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node.to_string(),
        uid: node_uid,
        controller: Some(true),
        ..Default::default()
    }]);
    match api.create(&PostParams::default(), &mirror).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_become_node_pods() {
        let yaml = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: c\n    image: busybox\n";
        let p = parse(yaml, "n1").unwrap();
        assert_eq!(p.metadata.name.as_deref(), Some("web-n1"));
        assert_eq!(p.metadata.namespace.as_deref(), Some("default"));
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("n1"));
        assert_eq!(
            spec.containers[0].image_pull_policy.as_deref(),
            Some("Always")
        );
        let uid = p.metadata.uid.clone().unwrap();
        assert_eq!(uid.len(), 32);
        assert_eq!(parse(yaml, "n1").unwrap().metadata.uid.unwrap(), uid);
        assert_ne!(parse(yaml, "n2").unwrap().metadata.uid.unwrap(), uid);
        assert_eq!(p.metadata.annotations.unwrap()[HASH], uid);
        assert!(parse("metadata: {}\nspec: {containers: []}\n", "n1").is_err());
        assert!(parse("{not yaml", "n1").is_err());
    }
}
