//! Namespace labels for the namespaceSelector of pod (anti-)affinity
//! terms, kept by a watch.
//!
//! Upstream counterpart: the namespace lister InterPodAffinity reads in
//! `plugins/interpodaffinity` (`mergeAffinityTermNamespacesIfNotEmpty`,
//! `GetNamespaceLabelsSnapshot`). Only labels are kept.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::Api;

use crate::selectors::Labels;

/// Labels by namespace name, shared by the watch and every affinity term
/// with a namespaceSelector (equal when they are the same table).
#[derive(Clone, Default)]
pub struct NamespaceLabels(Arc<RwLock<HashMap<String, Labels>>>);

impl PartialEq for NamespaceLabels {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::fmt::Debug for NamespaceLabels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NamespaceLabels")
    }
}

impl NamespaceLabels {
    /// `f` of the namespace's labels (empty when it is unknown).
    pub fn with<T>(&self, ns: &str, f: impl FnOnce(&Labels) -> T) -> T {
        let map = self.0.read().expect("namespace labels lock");
        match map.get(ns) {
            Some(l) => f(l),
            None => f(&Labels::new()),
        }
    }

    pub fn set(&self, ns: &str, labels: Labels) {
        self.0
            .write()
            .expect("namespace labels lock")
            .insert(ns.to_string(), labels);
    }

    fn remove(&self, ns: &str) {
        self.0.write().expect("namespace labels lock").remove(ns);
    }

    fn retain(&self, names: &HashSet<String>) {
        self.0
            .write()
            .expect("namespace labels lock")
            .retain(|k, _| names.contains(k));
    }
}

fn labels_of(ns: &Namespace) -> (String, Labels) {
    (
        ns.metadata.name.clone().unwrap_or_default(),
        ns.metadata.labels.clone().unwrap_or_default(),
    )
}

/// Keep `table` up to date; `listed` fires once the first list is in.
/// Never returns.
pub async fn watch_namespaces(
    client: kube::Client,
    table: NamespaceLabels,
    listed: tokio::sync::oneshot::Sender<()>,
) {
    let mut listed = Some(listed);
    let api: Api<Namespace> = Api::all(client);
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut listing = HashSet::new();
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(Event::Init) => listing.clear(),
            Ok(Event::InitApply(ns)) | Ok(Event::Apply(ns)) => {
                let (name, labels) = labels_of(&ns);
                listing.insert(name.clone());
                table.set(&name, labels);
            }
            Ok(Event::InitDone) => {
                table.retain(&std::mem::take(&mut listing));
                if let Some(tx) = listed.take() {
                    let _ = tx.send(());
                }
            }
            Ok(Event::Delete(ns)) => table.remove(&labels_of(&ns).0),
            Err(e) => tracing::warn!(error = %e, "namespace watch failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podinfo::{AffinityTerm, Namespaces, PodInfo};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    #[test]
    fn selected_namespaces_follow_their_labels() {
        let table = NamespaceLabels::default();
        table.set("prod", [("env".to_string(), "prod".to_string())].into());
        let term = AffinityTerm {
            namespaces: Namespaces::Selected {
                listed: vec!["listed".into()],
                selector: LabelSelector {
                    match_labels: Some([("env".to_string(), "prod".to_string())].into()),
                    ..LabelSelector::default()
                },
                labels: table.clone(),
            },
            selector: Some(LabelSelector::default()),
            topology_key: "kubernetes.io/hostname".into(),
        };
        let in_ns = |ns: &str| PodInfo {
            namespace: ns.into(),
            ..PodInfo::default()
        };
        assert!(term.matches(&in_ns("prod")));
        assert!(term.matches(&in_ns("listed")));
        assert!(!term.matches(&in_ns("dev")));
        table.set("dev", [("env".to_string(), "prod".to_string())].into());
        assert!(term.matches(&in_ns("dev")), "relabelled namespaces count");
    }
}
