//! What the replica controller needs of its two kinds: ReplicaSet (a label
//! selector) and ReplicationController (a plain label map). Upstream runs
//! the ReplicationController through the ReplicaSet code by converting it
//! (`pkg/controller/replication/conversion.go`); here both implement one
//! trait instead.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{PodTemplateSpec, ReplicationController};
use serde_json::{json, Value};

use crate::informers::Kind;
use crate::pods;

/// A condition of a replica set's status (ReplicaFailure is the only one).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Condition {
    pub type_: String,
    pub status: String,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub last_transition_time: Option<String>,
}

/// The status fields the two kinds share.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Status {
    pub replicas: i32,
    pub fully_labeled_replicas: i32,
    pub ready_replicas: i32,
    pub available_replicas: i32,
    pub observed_generation: i64,
    pub conditions: Vec<Condition>,
}

impl Status {
    /// The status as the API writes it (zero counts omitted, as upstream's
    /// `omitempty`).
    pub fn to_json(&self) -> Value {
        let conditions: Vec<Value> = self
            .conditions
            .iter()
            .map(|c| {
                json!({
                    "type": c.type_,
                    "status": c.status,
                    "reason": c.reason,
                    "message": c.message,
                    "lastTransitionTime": c.last_transition_time,
                })
            })
            .collect();
        let nz = |n: i32| (n != 0).then_some(n);
        json!({
            "replicas": self.replicas,
            "fullyLabeledReplicas": nz(self.fully_labeled_replicas),
            "readyReplicas": nz(self.ready_replicas),
            "availableReplicas": nz(self.available_replicas),
            "observedGeneration": self.observed_generation,
            "conditions": (!conditions.is_empty()).then_some(conditions),
        })
    }
}

/// A kind the replica controller manages.
pub trait Replicated:
    Kind + serde::Serialize + kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
{
    const API_VERSION: &'static str;
    const KIND: &'static str;
    /// The controller name events report (upstream's component names).
    const REPORTER: &'static str;

    /// spec.replicas, defaulting to 1.
    fn desired(&self) -> i32;
    fn min_ready_seconds(&self) -> i32;
    fn template(&self) -> Option<&PodTemplateSpec>;
    /// Whether the selector selects these labels. A selector that is
    /// missing selects nothing, so a broken object never grabs pods.
    fn selects(&self, labels: Option<&BTreeMap<String, String>>) -> bool;
    fn status(&self) -> Status;
}

fn template_labels(t: Option<&PodTemplateSpec>) -> Option<&BTreeMap<String, String>> {
    t?.metadata.as_ref()?.labels.as_ref()
}

/// [`Status`] from either kind's status: `ReplicaSetStatus` and
/// `ReplicationControllerStatus` (and their conditions) have the same
/// fields under different types.
macro_rules! status_of {
    ($status:expr) => {
        match $status {
            None => Status::default(),
            Some(s) => Status {
                replicas: s.replicas,
                fully_labeled_replicas: s.fully_labeled_replicas.unwrap_or(0),
                ready_replicas: s.ready_replicas.unwrap_or(0),
                available_replicas: s.available_replicas.unwrap_or(0),
                observed_generation: s.observed_generation.unwrap_or(0),
                conditions: s
                    .conditions
                    .iter()
                    .flatten()
                    .map(|c| Condition {
                        type_: c.type_.clone(),
                        status: c.status.clone(),
                        reason: c.reason.clone(),
                        message: c.message.clone(),
                        last_transition_time: c
                            .last_transition_time
                            .as_ref()
                            .map(|t| t.0.to_string()),
                    })
                    .collect(),
            },
        }
    };
}

impl Replicated for ReplicaSet {
    const API_VERSION: &'static str = "apps/v1";
    const KIND: &'static str = "ReplicaSet";
    const REPORTER: &'static str = "replicaset-controller";

    fn desired(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }
    fn selects(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        match self.spec.as_ref() {
            Some(spec) => pods::selector_matches(&spec.selector, labels),
            None => false,
        }
    }
    fn status(&self) -> Status {
        status_of!(&self.status)
    }
}

impl Replicated for ReplicationController {
    const API_VERSION: &'static str = "v1";
    const KIND: &'static str = "ReplicationController";
    const REPORTER: &'static str = "replication-controller";

    fn desired(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }
    fn selects(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        // The API server defaults an empty selector to the template's
        // labels; do the same here in case an object predates that.
        let selector = self
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .filter(|s| !s.is_empty())
            .or_else(|| template_labels(self.template()).filter(|l| !l.is_empty()));
        match selector {
            Some(sel) => pods::map_selects(sel, labels),
            None => false,
        }
    }
    fn status(&self) -> Status {
        status_of!(&self.status)
    }
}
