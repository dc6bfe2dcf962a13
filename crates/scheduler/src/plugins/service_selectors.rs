//! The Services' selectors, for the default spreading of pods that have
//! no topologySpreadConstraints of their own.
//!
//! Upstream counterpart: the Service lister behind `helper.DefaultSelector`
//! (`pkg/scheduler/framework/plugins/helper/spread.go`), which
//! PodTopologySpread's system defaults and SelectorSpread use to find a
//! pod's siblings. A pod's Services are looked up in each scheduling cycle
//! ([`crate::podinfo::PodInfo::service_selector`]), so a Service created
//! or changed after the pod counts; the pods counted against it are
//! matched by labels.

use k8s_openapi::api::core::v1::Service;
use kube::Api;

use crate::selectors::Labels;
use crate::watched::{self, Table};

/// Selectors by namespace, then by Service name; Services without a
/// selector are left out (they select nothing).
#[derive(Clone, Default)]
pub struct ServiceSelectors(Table<Labels>);

impl std::fmt::Debug for ServiceSelectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServiceSelectors")
    }
}

impl ServiceSelectors {
    pub fn set(&self, ns: &str, name: &str, selector: Option<Labels>) {
        self.0.set(ns, name, selector.filter(|s| !s.is_empty()));
    }

    /// The selectors of every Service in `ns` selecting `labels`, merged
    /// into one; None when no Service selects them.
    pub fn selecting(&self, ns: &str, labels: &Labels) -> Option<Labels> {
        self.0.with_namespace(ns, |sels| {
            let mut merged: Option<Labels> = None;
            for sel in sels {
                if sel.iter().all(|(k, v)| labels.get(k) == Some(v)) {
                    merged
                        .get_or_insert_with(Labels::new)
                        .extend(sel.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
            merged
        })
    }
}

fn selector_of(svc: &Service) -> Option<Labels> {
    svc.spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .filter(|s| !s.is_empty())
}

/// Keep `table` up to date; `listed` fires once the first list is in.
/// Services only steer scores, so their changes wake no pod (upstream's
/// PodTopologySpread registers no Service events either); a pod reads
/// them anew in each scheduling cycle. Never returns.
pub async fn watch_services(
    client: kube::Client,
    table: ServiceSelectors,
    listed: tokio::sync::oneshot::Sender<()>,
) {
    let api: Api<Service> = Api::all(client);
    watched::keep(api, table.0, selector_of, listed, || {}).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(kv: &[(&str, &str)]) -> Labels {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn services_selecting_a_pod_merge_their_selectors() {
        let t = ServiceSelectors::default();
        t.set("ns", "web", Some(labels(&[("app", "web")])));
        t.set(
            "ns",
            "canary",
            Some(labels(&[("app", "web"), ("track", "canary")])),
        );
        t.set("ns", "empty", Some(Labels::new()));
        t.set("other", "web", Some(labels(&[("tier", "x")])));
        let pod = labels(&[("app", "web"), ("track", "stable"), ("tier", "x")]);
        assert_eq!(t.selecting("ns", &pod), Some(labels(&[("app", "web")])));
        let canary = labels(&[("app", "web"), ("track", "canary")]);
        assert_eq!(
            t.selecting("ns", &canary),
            Some(labels(&[("app", "web"), ("track", "canary")]))
        );
        assert_eq!(t.selecting("ns", &labels(&[("app", "db")])), None);
        t.set("ns", "web", None);
        assert_eq!(t.selecting("ns", &pod), None);
    }
}
