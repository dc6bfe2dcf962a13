//! The Services' selectors, for the default spreading of pods that have
//! no topologySpreadConstraints of their own.
//!
//! Upstream counterpart: the Service lister behind `helper.DefaultSelector`
//! (`pkg/scheduler/framework/plugins/helper/spread.go`), which
//! PodTopologySpread's system defaults and SelectorSpread use to find a
//! pod's siblings. A pod's Services are looked up once, when the
//! scheduler parses the pod; the pods counted against it are matched by
//! labels when it is scheduled.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::Api;

use crate::selectors::Labels;

/// Selectors by namespace, then by Service name; Services without a
/// selector are left out (they select nothing).
#[derive(Clone, Default)]
pub struct ServiceSelectors(Arc<RwLock<HashMap<String, HashMap<String, Labels>>>>);

impl ServiceSelectors {
    pub fn set(&self, ns: &str, name: &str, selector: Option<Labels>) {
        let mut map = self.0.write().expect("service selectors lock");
        match selector.filter(|s| !s.is_empty()) {
            Some(s) => {
                map.entry(ns.to_string())
                    .or_default()
                    .insert(name.to_string(), s);
            }
            None => {
                if let Some(m) = map.get_mut(ns) {
                    m.remove(name);
                }
            }
        }
    }

    fn retain(&self, keys: &HashSet<(String, String)>) {
        let mut map = self.0.write().expect("service selectors lock");
        for (ns, m) in map.iter_mut() {
            m.retain(|name, _| keys.contains(&(ns.clone(), name.clone())));
        }
        map.retain(|_, m| !m.is_empty());
    }

    /// The selectors of every Service in `ns` selecting `labels`, merged
    /// into one; None when no Service selects them.
    pub fn selecting(&self, ns: &str, labels: &Labels) -> Option<Labels> {
        let map = self.0.read().expect("service selectors lock");
        let mut merged: Option<Labels> = None;
        for sel in map.get(ns)?.values() {
            if sel.iter().all(|(k, v)| labels.get(k) == Some(v)) {
                merged
                    .get_or_insert_with(Labels::new)
                    .extend(sel.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        merged
    }
}

fn parts(svc: &Service) -> (String, String, Option<Labels>) {
    (
        svc.metadata.namespace.clone().unwrap_or_default(),
        svc.metadata.name.clone().unwrap_or_default(),
        svc.spec.as_ref().and_then(|s| s.selector.clone()),
    )
}

/// Keep `table` up to date; `listed` fires once the first list is in.
/// Never returns.
pub async fn watch_services(
    client: kube::Client,
    table: ServiceSelectors,
    listed: tokio::sync::oneshot::Sender<()>,
) {
    let mut listed = Some(listed);
    let api: Api<Service> = Api::all(client);
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut listing = HashSet::new();
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(Event::Init) => listing.clear(),
            Ok(Event::InitApply(svc)) | Ok(Event::Apply(svc)) => {
                let (ns, name, sel) = parts(&svc);
                listing.insert((ns.clone(), name.clone()));
                table.set(&ns, &name, sel);
            }
            Ok(Event::InitDone) => {
                table.retain(&std::mem::take(&mut listing));
                if let Some(tx) = listed.take() {
                    let _ = tx.send(());
                }
            }
            Ok(Event::Delete(svc)) => {
                let (ns, name, _) = parts(&svc);
                table.set(&ns, &name, None);
            }
            Err(e) => tracing::warn!(error = %e, "service watch failed"),
        }
    }
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
