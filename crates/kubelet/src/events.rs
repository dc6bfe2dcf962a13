//! Events about pods and the node, written as core/v1 Events (what
//! `kubectl describe` lists). Repeats of the same event bump `count` and
//! `lastTimestamp` on one object instead of creating new ones.
//!
//! Upstream counterpart: client-go's `tools/record` (EventRecorder with
//! its EventCorrelator's aggregation by key).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

/// Normal or Warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Normal,
    Warning,
}

/// (object uid, reason, message): what makes two events the same.
type EventKey = (String, String, String);

#[derive(Clone)]
pub struct Recorder {
    client: kube::Client,
    node: String,
    /// (object uid, reason, message) -> (event name, count).
    seen: Arc<Mutex<HashMap<EventKey, (String, i32)>>>,
}

impl Recorder {
    pub fn new(client: kube::Client, node: &str) -> Recorder {
        Recorder {
            client,
            node: node.to_string(),
            seen: Arc::default(),
        }
    }

    /// Records an event in the background: callers (pod workers) never
    /// wait on the API for it, and a failure is only logged, as upstream.
    pub fn emit(&self, object: ObjectReference, kind: Kind, reason: &str, message: String) {
        let this = self.clone();
        let reason = reason.to_string();
        tokio::spawn(async move {
            if let Err(e) = this.write(object, kind, &reason, &message).await {
                tracing::debug!(error = %e, reason, "cannot record event");
            }
        });
    }

    async fn write(
        &self,
        object: ObjectReference,
        kind: Kind,
        reason: &str,
        message: &str,
    ) -> Result<(), kube::Error> {
        let ns = object.namespace.clone().unwrap_or_else(|| "default".into());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let key = (
            object.uid.clone().unwrap_or_default(),
            reason.to_string(),
            message.to_string(),
        );
        let repeat = {
            let mut seen = self.seen.lock().unwrap();
            seen.get_mut(&key).map(|(name, count)| {
                *count += 1;
                (name.clone(), *count)
            })
        };
        if let Some((name, count)) = repeat {
            let patch = json!({"count": count, "lastTimestamp": now});
            if api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .is_ok()
            {
                return Ok(());
            }
        }
        let base = object.name.clone().unwrap_or_default();
        let stamp = now.0.as_nanosecond();
        let ev = Event {
            metadata: ObjectMeta {
                name: Some(format!("{base}.{stamp:x}")),
                namespace: Some(ns),
                ..Default::default()
            },
            involved_object: object,
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            type_: Some(
                match kind {
                    Kind::Normal => "Normal",
                    Kind::Warning => "Warning",
                }
                .into(),
            ),
            source: Some(EventSource {
                component: Some("kubelet".into()),
                host: Some(self.node.clone()),
            }),
            reporting_component: Some("kubelet".into()),
            reporting_instance: Some(self.node.clone()),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            ..Default::default()
        };
        let created = api.create(&PostParams::default(), &ev).await?;
        let mut seen = self.seen.lock().unwrap();
        // Bounded memory: forget everything once the table grows large.
        if seen.len() > 4096 {
            seen.clear();
        }
        seen.insert(key, (created.metadata.name.unwrap_or_default(), 1));
        Ok(())
    }
}

/// A reference to a pod, or to one of its containers (fieldPath
/// `spec.containers{name}` as upstream).
pub fn pod_ref(pod: &k8s_openapi::api::core::v1::Pod, container: Option<&str>) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        field_path: container.map(|c| {
            let init = pod
                .spec
                .as_ref()
                .and_then(|s| s.init_containers.as_ref())
                .is_some_and(|ics| ics.iter().any(|i| i.name == c));
            if init {
                format!("spec.initContainers{{{c}}}")
            } else {
                format!("spec.containers{{{c}}}")
            }
        }),
    }
}
