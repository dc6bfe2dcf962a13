//! Defaults of the workload controllers' objects.
//!
//! Upstream counterpart: `pkg/apis/apps/v1/defaults.go`
//! (`SetDefaults_Deployment`, `_ReplicaSet`, `_StatefulSet`, `_DaemonSet`),
//! `pkg/apis/batch/v1/defaults.go` (`SetDefaults_Job`, `_CronJob`) and
//! `SetDefaults_ReplicationController` in core/v1. Embedded pod templates
//! get exactly the pod spec defaults ([`default_template`]).

use serde_json::{json, Map, Value};

use super::Kind;
use crate::resources::pod::defaults::default_template;
use crate::resources::util::{child, default, default_str, items_mut, str_field};

/// Apply the defaults of `kind` to `obj`.
pub fn default_workload(kind: Kind, obj: &mut Value) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    let spec = child(map, "spec");
    match kind {
        Kind::Deployment => deployment(spec),
        Kind::ReplicaSet => {
            default(spec, "replicas", 1);
        }
        Kind::ReplicationController => replication_controller(map),
        Kind::StatefulSet => stateful_set(spec),
        Kind::DaemonSet => daemon_set(spec),
        Kind::Job => {
            job(spec);
            job_labels_from_template(map);
        }
        Kind::CronJob => cron_job(spec),
    }
    if let Some(t) = template_mut(kind, obj) {
        default_template(t);
    }
}

/// The pod template of a workload, if it has one.
pub fn template_mut(kind: Kind, obj: &mut Value) -> Option<&mut Map<String, Value>> {
    let pointer = match kind {
        Kind::CronJob => "/spec/jobTemplate/spec/template",
        _ => "/spec/template",
    };
    obj.pointer_mut(pointer).and_then(Value::as_object_mut)
}

fn deployment(spec: &mut Map<String, Value>) {
    default(spec, "replicas", 1);
    let strategy = child(spec, "strategy");
    default_str(strategy, "type", "RollingUpdate");
    if str_field(strategy, "type") == "RollingUpdate" {
        let ru = child(strategy, "rollingUpdate");
        default(ru, "maxUnavailable", "25%");
        default(ru, "maxSurge", "25%");
    }
    default(spec, "revisionHistoryLimit", 10);
    default(spec, "progressDeadlineSeconds", 600);
}

fn replication_controller(map: &mut Map<String, Value>) {
    // An RC without selector or labels takes them from its template.
    let template_labels = map
        .get("spec")
        .and_then(|s| s.pointer("/template/metadata/labels"))
        .and_then(Value::as_object)
        .filter(|l| !l.is_empty())
        .cloned();
    if let Some(labels) = template_labels {
        let spec = child(map, "spec");
        if spec
            .get("selector")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty)
        {
            spec.insert("selector".into(), Value::Object(labels.clone()));
        }
        let meta = child(map, "metadata");
        if meta
            .get("labels")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty)
        {
            meta.insert("labels".into(), Value::Object(labels));
        }
    }
    default(child(map, "spec"), "replicas", 1);
}

fn stateful_set(spec: &mut Map<String, Value>) {
    default_str(spec, "podManagementPolicy", "OrderedReady");
    let strategy = child(spec, "updateStrategy");
    // Only an unset type brings a rollingUpdate block with it; a given
    // RollingUpdate without one stays without.
    if str_field(strategy, "type").is_empty() {
        strategy.insert("type".into(), "RollingUpdate".into());
        default(strategy, "rollingUpdate", json!({}));
    }
    if str_field(strategy, "type") == "RollingUpdate" {
        if let Some(ru) = strategy
            .get_mut("rollingUpdate")
            .and_then(Value::as_object_mut)
        {
            default(ru, "partition", 0);
        }
    }
    let retention = child(spec, "persistentVolumeClaimRetentionPolicy");
    default_str(retention, "whenDeleted", "Retain");
    default_str(retention, "whenScaled", "Retain");
    default(spec, "replicas", 1);
    default(spec, "revisionHistoryLimit", 10);
    for pvc in items_mut(spec, "volumeClaimTemplates") {
        default_str(child(pvc, "spec"), "volumeMode", "Filesystem");
        default(pvc, "status", json!({"phase": "Pending"}));
        child(pvc, "metadata")
            .entry("creationTimestamp")
            .or_insert(Value::Null);
        default_str(pvc, "apiVersion", "v1");
        default_str(pvc, "kind", "PersistentVolumeClaim");
    }
}

fn daemon_set(spec: &mut Map<String, Value>) {
    let strategy = child(spec, "updateStrategy");
    default_str(strategy, "type", "RollingUpdate");
    if str_field(strategy, "type") == "RollingUpdate" {
        let ru = child(strategy, "rollingUpdate");
        default(ru, "maxUnavailable", 1);
        default(ru, "maxSurge", 0);
    }
    default(spec, "revisionHistoryLimit", 10);
}

fn job(spec: &mut Map<String, Value>) {
    let unset = |spec: &Map<String, Value>, k: &str| spec.get(k).is_none_or(Value::is_null);
    if unset(spec, "completions") && unset(spec, "parallelism") {
        spec.insert("completions".into(), 1.into());
        spec.insert("parallelism".into(), 1.into());
    }
    default(spec, "parallelism", 1);
    if unset(spec, "backoffLimit") {
        // Per-index limits make the global one effectively unlimited.
        let limit = if unset(spec, "backoffLimitPerIndex") {
            6
        } else {
            i64::from(i32::MAX)
        };
        spec.insert("backoffLimit".into(), limit.into());
    }
    default_str(spec, "completionMode", "NonIndexed");
    default(spec, "suspend", false);
    if unset(spec, "podReplacementPolicy") {
        let policy = if unset(spec, "podFailurePolicy") {
            "TerminatingOrFailed"
        } else {
            "Failed"
        };
        spec.insert("podReplacementPolicy".into(), policy.into());
    }
    default(spec, "manualSelector", false);
}

/// A Job without labels takes its template's (`SetDefaults_Job`).
pub fn job_labels_from_template(map: &mut Map<String, Value>) {
    let labels = map
        .get("spec")
        .and_then(|s| s.pointer("/template/metadata/labels"))
        .filter(|l| l.is_object())
        .cloned();
    if let Some(labels) = labels {
        let meta = child(map, "metadata");
        if meta
            .get("labels")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty)
        {
            meta.insert("labels".into(), labels);
        }
    }
}

fn cron_job(spec: &mut Map<String, Value>) {
    default_str(spec, "concurrencyPolicy", "Allow");
    default(spec, "suspend", false);
    default(spec, "successfulJobsHistoryLimit", 3);
    default(spec, "failedJobsHistoryLimit", 1);
    child(child(spec, "jobTemplate"), "metadata")
        .entry("creationTimestamp")
        .or_insert(Value::Null);
}

/// The labels and selector a Job without `manualSelector: true` gets,
/// keyed to its uid (upstream `generateSelector` in the job strategy).
pub fn generate_job_selector(job: &mut Value) {
    if job.pointer("/spec/manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    let uid = crate::meta::uid(job).to_string();
    let name = crate::meta::name(job).to_string();
    let Some(map) = job.as_object_mut() else {
        return;
    };
    let spec = child(map, "spec");
    let labels = child(child(child(spec, "template"), "metadata"), "labels");
    for (k, v) in [
        ("batch.kubernetes.io/controller-uid", &uid),
        ("batch.kubernetes.io/job-name", &name),
        ("controller-uid", &uid),
        ("job-name", &name),
    ] {
        labels.entry(k).or_insert_with(|| v.clone().into());
    }
    if spec.get("selector").is_none_or(Value::is_null) {
        spec.insert(
            "selector".into(),
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
        );
    }
}
