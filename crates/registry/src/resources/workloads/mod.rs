//! Workloads: Deployments, ReplicaSets, StatefulSets, DaemonSets, Jobs,
//! CronJobs and ReplicationControllers. One strategy, parameterized by
//! kind: defaults (their own and their pod template's), validation, a
//! status that only the status subresource writes, and a generation that
//! counts spec changes.
//!
//! Upstream counterpart: `pkg/registry/apps/{deployment,replicaset,
//! statefulset,daemonset}/strategy.go`, `pkg/registry/batch/{job,cronjob}/
//! strategy.go`, `pkg/registry/core/replicationcontroller/strategy.go`.

pub mod defaults;
mod validation;

#[cfg(test)]
mod tests;

use rkube_machinery::FieldError;
use serde_json::{json, Value};

use crate::strategy::copy_field;
use crate::Strategy;

pub use validation::{validate_workload, validate_workload_update};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Deployment,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
    Job,
    CronJob,
    ReplicationController,
}

impl Kind {
    /// The kind served at `group`/`plural`, if it is a workload.
    pub fn of(group: &str, plural: &str) -> Option<Kind> {
        Some(match (group, plural) {
            ("apps", "deployments") => Kind::Deployment,
            ("apps", "replicasets") => Kind::ReplicaSet,
            ("apps", "statefulsets") => Kind::StatefulSet,
            ("apps", "daemonsets") => Kind::DaemonSet,
            ("batch", "jobs") => Kind::Job,
            ("batch", "cronjobs") => Kind::CronJob,
            ("", "replicationcontrollers") => Kind::ReplicationController,
            _ => return None,
        })
    }
}

impl Kind {
    /// The status a new object starts with: Go's zero status struct as it
    /// serializes, counters without `omitempty` included.
    pub fn empty_status(self) -> Value {
        match self {
            Kind::ReplicaSet | Kind::ReplicationController => json!({"replicas": 0}),
            Kind::StatefulSet => json!({"replicas": 0, "availableReplicas": 0}),
            Kind::DaemonSet => json!({
                "currentNumberScheduled": 0,
                "numberMisscheduled": 0,
                "desiredNumberScheduled": 0,
                "numberReady": 0,
            }),
            Kind::Deployment | Kind::Job | Kind::CronJob => json!({}),
        }
    }
}

pub struct WorkloadStrategy {
    pub kind: Kind,
}

impl Strategy for WorkloadStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        defaults::default_workload(self.kind, obj);
        if self.kind == Kind::Job {
            defaults::generate_job_selector(obj);
            // Upstream defaults again when it reads the Job back, so the
            // generated labels show on the Job too: do it once here.
            if let Some(map) = obj.as_object_mut() {
                defaults::job_labels_from_template(map);
            }
        }
        if let Some(map) = obj.as_object_mut() {
            map.insert("status".into(), self.kind.empty_status());
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_workload(self.kind, obj)
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        defaults::default_workload(self.kind, new);
        copy_field(new, old, "status");
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        validate_workload_update(self.kind, new, old)
    }

    fn tracks_generation(&self) -> bool {
        true
    }
}
