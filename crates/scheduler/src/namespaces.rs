//! Namespace labels for the namespaceSelector of pod (anti-)affinity
//! terms, kept by a watch.
//!
//! Upstream counterpart: the namespace lister InterPodAffinity reads in
//! `plugins/interpodaffinity` (`mergeAffinityTermNamespacesIfNotEmpty`,
//! `GetNamespaceLabelsSnapshot`) and the Namespace events InterPodAffinity
//! registers for. Only labels are kept ([`crate::watched`]).

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;

use crate::selectors::Labels;
use crate::watched::{self, Table};

/// Labels by namespace name, shared by the watch and every affinity term
/// with a namespaceSelector (equal when they are the same table).
#[derive(Clone, Default)]
pub struct NamespaceLabels(Table<Labels>);

impl PartialEq for NamespaceLabels {
    fn eq(&self, other: &Self) -> bool {
        self.0.same(&other.0)
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
        self.0.with("", ns, |l| match l {
            Some(l) => f(l),
            None => f(&Labels::new()),
        })
    }

    /// Set a namespace's labels; whether they changed.
    pub fn set(&self, ns: &str, labels: Labels) -> bool {
        self.0.set("", ns, Some(labels))
    }
}

/// A namespace is kept even without labels: it exists.
fn labels_of(ns: &Namespace) -> Option<Labels> {
    Some(ns.metadata.labels.clone().unwrap_or_default())
}

/// Keep `table` up to date; `listed` fires once the first list is in, then
/// `changed` runs whenever a namespace's labels change or a namespace
/// comes or goes (upstream's Namespace add and label-update events, which
/// InterPodAffinity registers for). Never returns.
pub async fn watch_namespaces(
    client: kube::Client,
    table: NamespaceLabels,
    listed: tokio::sync::oneshot::Sender<()>,
    changed: impl FnMut() + Send,
) {
    let api: Api<Namespace> = Api::all(client);
    watched::keep(api, table.0, labels_of, listed, changed).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podinfo::{AffinityTerm, Namespaces, PodInfo};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    #[test]
    fn selected_namespaces_follow_their_labels() {
        let table = NamespaceLabels::default();
        assert!(table.set("prod", [("env".to_string(), "prod".to_string())].into()));
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
        assert!(
            !table.set("dev", [("env".to_string(), "prod".to_string())].into()),
            "the same labels again are no change"
        );
    }
}
