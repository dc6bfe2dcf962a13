//! What the scheduler keeps of a pod: the fields its plugins read, parsed
//! once when the pod arrives, so each node check is cheap.
//!
//! Upstream counterpart: `framework.PodInfo` (pre-parsed affinity terms)
//! plus the cached requests of `NodeInfo.update`. The full Pod object is
//! not kept: at 10,000 pods only this summary stays in memory.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    NodeAffinity, Pod, PodAffinityTerm, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::namespaces::NamespaceLabels;
use crate::plugins::service_selectors::ServiceSelectors;
use crate::resources::{pod_requests, Resources};
use crate::selectors::{selector_matches, Labels};

/// The namespaces an affinity term looks at.
#[derive(Clone, Debug, PartialEq)]
pub enum Namespaces {
    All,
    List(Vec<String>),
    /// The listed ones and those whose labels `selector` matches, read
    /// from the namespace watch when a pod is checked (so a namespace
    /// relabelled later counts as it is then).
    Selected {
        listed: Vec<String>,
        selector: LabelSelector,
        labels: NamespaceLabels,
    },
}

/// A pod (anti-)affinity term with its namespaces resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct AffinityTerm {
    pub namespaces: Namespaces,
    /// `None` (no labelSelector) matches no pod, as upstream.
    pub selector: Option<LabelSelector>,
    pub topology_key: String,
}

impl AffinityTerm {
    fn new(owner_ns: &str, t: &PodAffinityTerm, ns_labels: &NamespaceLabels) -> AffinityTerm {
        let listed = t.namespaces.clone().unwrap_or_default();
        let namespaces = match &t.namespace_selector {
            // An empty namespaceSelector selects every namespace.
            Some(sel) if crate::selectors::selector_is_empty(sel) => Namespaces::All,
            Some(sel) => Namespaces::Selected {
                listed,
                selector: sel.clone(),
                labels: ns_labels.clone(),
            },
            None if listed.is_empty() => Namespaces::List(vec![owner_ns.to_string()]),
            None => Namespaces::List(listed),
        };
        AffinityTerm {
            namespaces,
            selector: t.label_selector.clone(),
            topology_key: t.topology_key.clone(),
        }
    }

    /// Whether `pod` is one of the pods this term selects.
    pub fn matches(&self, pod: &PodInfo) -> bool {
        let ns_ok = match &self.namespaces {
            Namespaces::All => true,
            Namespaces::List(l) => l.contains(&pod.namespace),
            Namespaces::Selected {
                listed,
                selector,
                labels,
            } => {
                listed.contains(&pod.namespace)
                    || labels.with(&pod.namespace, |l| selector_matches(selector, l))
            }
        };
        ns_ok
            && self
                .selector
                .as_ref()
                .is_some_and(|s| selector_matches(s, &pod.labels))
    }
}

/// The cluster state parsing a pod consults besides the pod: namespace
/// labels for affinity namespaceSelectors, Service selectors for the
/// default spreading.
#[derive(Clone, Default)]
pub struct Listers {
    pub namespaces: NamespaceLabels,
    pub services: ServiceSelectors,
    /// Claims, volumes and classes, for VolumeBinding.
    pub volumes: crate::plugins::volume_binding::VolumeTables,
}

/// A host port a pod's container takes on its node.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub protocol: String,
    pub ip: String,
    pub port: i32,
}

impl HostPort {
    /// Two ports clash on the same protocol and port when either binds
    /// every address or both bind the same one.
    pub fn conflicts(&self, o: &HostPort) -> bool {
        self.port == o.port
            && self.protocol == o.protocol
            && (self.ip == "0.0.0.0" || o.ip == "0.0.0.0" || self.ip == o.ip)
    }
}

/// The scheduler's view of one pod.
#[derive(Clone, Debug, Default)]
pub struct PodInfo {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    pub priority: i32,
    /// `preemptionPolicy: Never`.
    pub never_preempt: bool,
    pub scheduler_name: String,
    pub node_name: String,
    pub nominated_node: String,
    pub deleting: bool,
    /// Succeeded or Failed: holds nothing on its node any more.
    pub terminal: bool,
    pub requests: Resources,
    /// (milli cpu, memory) with upstream's defaults for unset requests.
    pub non_zero: (i64, i64),
    pub host_ports: Vec<HostPort>,
    pub tolerations: Vec<Toleration>,
    pub node_selector: BTreeMap<String, String>,
    pub node_affinity: Option<NodeAffinity>,
    pub required_affinity: Vec<AffinityTerm>,
    pub required_anti_affinity: Vec<AffinityTerm>,
    pub preferred_affinity: Vec<(i32, AffinityTerm)>,
    pub preferred_anti_affinity: Vec<(i32, AffinityTerm)>,
    pub spread_constraints: Vec<TopologySpreadConstraint>,
    /// The uid of the controlling owner (ReplicaSet, StatefulSet, ...);
    /// the default spreading groups pods by it.
    pub controller_uid: Option<String>,
    /// The Services, for a pod still to be placed: the default spreading
    /// counts the pods they select too ([`PodInfo::service_selector`]).
    pub services: Option<ServiceSelectors>,
    /// The normalized images of its init and app containers, for
    /// ImageLocality (kept only while the pod waits to be placed).
    pub images: Vec<String>,
    /// Seconds since the epoch the pod started (or was created).
    pub start_time: i64,
    /// The PodScheduled condition as last seen: (status, reason, message).
    pub scheduled_condition: Option<(String, String, String)>,
    /// The claims of a pod still to be placed, for VolumeBinding.
    /// Boxed: most pods have none, and the scheduler keeps every pod.
    pub volumes: Option<Box<crate::plugins::volume_binding::PodClaims>>,
}

impl PodInfo {
    /// Parse `pod`. `class_priority` resolves a priorityClassName the API
    /// server left unresolved (only the built-in classes are resolved
    /// there).
    pub fn new(pod: &Pod, class_priority: impl Fn(&str) -> Option<i32>) -> PodInfo {
        Self::with_listers(pod, class_priority, &Listers::default())
    }

    /// [`PodInfo::new`], consulting the namespace labels (affinity terms'
    /// namespaceSelectors) and the Services selecting the pod.
    pub fn with_listers(
        pod: &Pod,
        class_priority: impl Fn(&str) -> Option<i32>,
        listers: &Listers,
    ) -> PodInfo {
        let ns_labels = &listers.namespaces;
        let meta = &pod.metadata;
        // Borrowed, not cloned: a PodInfo is built for every pod event the
        // scheduler sees, and the spec copy was most of that work.
        let no_spec;
        let spec = match &pod.spec {
            Some(s) => s,
            None => {
                no_spec = k8s_openapi::api::core::v1::PodSpec::default();
                &no_spec
            }
        };
        let status = pod.status.as_ref();
        let namespace = meta.namespace.clone().unwrap_or_default();
        let (requests, non_zero) = pod_requests(spec);
        let mut host_ports = Vec::new();
        for c in &spec.containers {
            for p in c.ports.iter().flatten() {
                if let Some(hp) = p.host_port.filter(|p| *p > 0) {
                    host_ports.push(HostPort {
                        protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                        ip: p
                            .host_ip
                            .clone()
                            .filter(|s| !s.is_empty())
                            .unwrap_or_else(|| "0.0.0.0".into()),
                        port: hp,
                    });
                }
            }
        }
        let priority = spec.priority.unwrap_or_else(|| {
            spec.priority_class_name
                .as_deref()
                .and_then(&class_priority)
                .or_else(|| class_priority(""))
                .unwrap_or(0)
        });
        let no_affinity;
        let affinity = match &spec.affinity {
            Some(a) => a,
            None => {
                no_affinity = k8s_openapi::api::core::v1::Affinity::default();
                &no_affinity
            }
        };
        let terms = |ts: Option<&Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
            ts.into_iter()
                .flatten()
                .map(|t| AffinityTerm::new(&namespace, t, ns_labels))
                .collect()
        };
        let pa = affinity.pod_affinity.as_ref();
        let paa = affinity.pod_anti_affinity.as_ref();
        let weighted = |ts: Option<&Vec<k8s_openapi::api::core::v1::WeightedPodAffinityTerm>>| {
            ts.into_iter()
                .flatten()
                .map(|w| {
                    (
                        w.weight,
                        AffinityTerm::new(&namespace, &w.pod_affinity_term, ns_labels),
                    )
                })
                .collect::<Vec<_>>()
        };
        let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or_default();
        // Only a pod still to be placed is spread by its Services.
        let services = match (&spec.node_name, &meta.labels) {
            (None, Some(_)) => Some(listers.services.clone()),
            _ => None,
        };
        let images = match &spec.node_name {
            None => spec
                .init_containers
                .iter()
                .flatten()
                .chain(&spec.containers)
                .filter_map(|c| c.image.as_deref())
                .map(crate::plugins::image_locality::normalize)
                .collect(),
            Some(_) => Vec::new(),
        };
        let volumes = match &spec.node_name {
            None => Some(crate::plugins::volume_binding::claim_names(pod))
                .filter(|n| !n.is_empty())
                .map(|names| {
                    Box::new(crate::plugins::volume_binding::PodClaims {
                        names,
                        tables: listers.volumes.clone(),
                    })
                }),
            Some(_) => None,
        };
        let start = status
            .and_then(|s| s.start_time.as_ref())
            .or(meta.creation_timestamp.as_ref())
            .map_or(0, |t| t.0.as_second());
        let scheduled_condition = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"))
            .map(|c| {
                (
                    c.status.clone(),
                    c.reason.clone().unwrap_or_default(),
                    c.message.clone().unwrap_or_default(),
                )
            });
        PodInfo {
            uid: meta.uid.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            labels: meta.labels.clone().unwrap_or_default(),
            priority,
            never_preempt: spec.preemption_policy.as_deref() == Some("Never"),
            scheduler_name: spec
                .scheduler_name
                .clone()
                .unwrap_or_else(|| "default-scheduler".into()),
            node_name: spec.node_name.clone().unwrap_or_default(),
            nominated_node: status
                .and_then(|s| s.nominated_node_name.clone())
                .unwrap_or_default(),
            deleting: meta.deletion_timestamp.is_some(),
            terminal: phase == "Succeeded" || phase == "Failed",
            requests,
            non_zero,
            host_ports,
            tolerations: spec.tolerations.clone().unwrap_or_default(),
            node_selector: spec.node_selector.clone().unwrap_or_default(),
            node_affinity: affinity.node_affinity.clone(),
            required_affinity: terms(pa.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            required_anti_affinity: terms(paa.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_affinity: weighted(pa.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_anti_affinity: weighted(paa.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            spread_constraints: spec.topology_spread_constraints.clone().unwrap_or_default(),
            controller_uid: meta
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.controller == Some(true))
                .map(|o| o.uid.clone()),
            services,
            images,
            start_time: start,
            scheduled_condition,
            volumes,
            namespace,
        }
    }

    /// "namespace/name", for logs and messages.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Whether the pod has any pod (anti-)affinity terms.
    pub fn has_affinity(&self) -> bool {
        !self.required_affinity.is_empty()
            || !self.required_anti_affinity.is_empty()
            || !self.preferred_affinity.is_empty()
            || !self.preferred_anti_affinity.is_empty()
    }

    /// The merged selectors of the Services selecting the pod now: read in
    /// each scheduling cycle, so Services created or changed while the pod
    /// waits count (upstream reads its Service lister in PreScore).
    pub fn service_selector(&self) -> Option<Labels> {
        self.services
            .as_ref()?
            .selecting(&self.namespace, &self.labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Affinity, PodAntiAffinity, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn priority_from_class_when_unresolved() {
        let mut pod = Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                priority_class_name: Some("high".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let classes = |c: &str| (c == "high").then_some(1000);
        assert_eq!(PodInfo::new(&pod, classes).priority, 1000);
        pod.spec.as_mut().unwrap().priority = Some(7);
        assert_eq!(
            PodInfo::new(&pod, classes).priority,
            7,
            "spec.priority wins"
        );
        pod.spec.as_mut().unwrap().priority = None;
        pod.spec.as_mut().unwrap().priority_class_name = None;
        let default = |c: &str| c.is_empty().then_some(5);
        assert_eq!(
            PodInfo::new(&pod, default).priority,
            5,
            "globalDefault class"
        );
    }

    #[test]
    fn term_namespaces() {
        let pod = Pod {
            metadata: ObjectMeta {
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                affinity: Some(Affinity {
                    pod_anti_affinity: Some(PodAntiAffinity {
                        required_during_scheduling_ignored_during_execution: Some(vec![
                            PodAffinityTerm {
                                label_selector: Some(LabelSelector::default()),
                                topology_key: "kubernetes.io/hostname".into(),
                                ..Default::default()
                            },
                        ]),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let info = PodInfo::new(&pod, |_| None);
        let term = &info.required_anti_affinity[0];
        assert_eq!(term.namespaces, Namespaces::List(vec!["ns".into()]));
        let other = PodInfo {
            namespace: "other".into(),
            ..Default::default()
        };
        assert!(term.matches(&info));
        assert!(!term.matches(&other));
        assert!(info.has_affinity());
    }

    #[test]
    fn host_ports_conflict() {
        let p = |ip: &str, port| HostPort {
            protocol: "TCP".into(),
            ip: ip.into(),
            port,
        };
        assert!(p("0.0.0.0", 80).conflicts(&p("10.0.0.1", 80)));
        assert!(!p("10.0.0.2", 80).conflicts(&p("10.0.0.1", 80)));
        assert!(!p("0.0.0.0", 80).conflicts(&p("0.0.0.0", 81)));
    }
}
