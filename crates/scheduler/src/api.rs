//! The scheduler's writes to the cluster, behind a narrow trait: bind a
//! pod, mark it unschedulable (PodScheduled=False, nominatedNodeName),
//! evict a preemption victim, record an Event.
//!
//! Upstream counterpart: the scheduler's uses of client-go — the
//! DefaultBinder plugin (`pods/binding`), `updatePod` (a strategic-merge
//! patch of status), `util.DeletePod` and the events recorder. Events go
//! out as core/v1 Events with `reportingComponent: default-scheduler`. A
//! repeat of the same event for the same pod is a series, as in client-go's
//! events broadcaster (`tools/events`, which kube-scheduler uses): the
//! first repeat bumps the written Event's count, later ones are counted
//! here and written at most every [`SERIES_REFRESH`] — a pod that stays
//! unschedulable is retried every few minutes, or on every node change,
//! and each retry used to cost the API server a write.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Binding, Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::json;

use crate::podinfo::PodInfo;

pub const COMPONENT: &str = "default-scheduler";

/// Errors of the scheduler's API writes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("binding pod {0} to {1}: {2}")]
    Bind(String, String, #[source] kube::Error),
    #[error("updating status of pod {0}: {1}")]
    Status(String, #[source] kube::Error),
    #[error("deleting pod {0}: {1}")]
    Delete(String, #[source] kube::Error),
    #[error("recording event for pod {0}: {1}")]
    Event(String, #[source] kube::Error),
    #[error("naming node {1} on claim {0}: {2}")]
    SelectNode(String, String, #[source] kube::Error),
    #[error("{0}")]
    VolumesNotBound(String),
}

impl Error {
    fn source_code(&self) -> Option<u16> {
        let e = match self {
            Error::Bind(_, _, e)
            | Error::Status(_, e)
            | Error::Delete(_, e)
            | Error::Event(_, e)
            | Error::SelectNode(_, _, e) => e,
            Error::VolumesNotBound(_) => return None,
        };
        match e {
            kube::Error::Api(s) => Some(s.code),
            _ => None,
        }
    }

    /// The pod is gone, or someone else bound it: nothing left to do.
    pub fn pod_gone(&self) -> bool {
        matches!(self.source_code(), Some(404) | Some(409))
    }
}

/// What the scheduler writes.
#[async_trait]
pub trait ClusterApi: Send + Sync + 'static {
    /// VolumeBinding's PreBind: name `node` on the pod's WaitForFirstConsumer
    /// claims and wait until all its claims are bound, so that the pod
    /// reaches its kubelet with volumes it can mount.
    async fn pre_bind(&self, _pod: &PodInfo, _node: &str) -> Result<(), Error> {
        Ok(())
    }

    async fn bind(&self, pod: &PodInfo, node: &str) -> Result<(), Error>;

    /// Set PodScheduled=False with `reason` and `message`, and
    /// status.nominatedNodeName when `nominated` is given.
    async fn set_unschedulable(
        &self,
        pod: &PodInfo,
        reason: &str,
        message: &str,
        nominated: Option<&str>,
    ) -> Result<(), Error>;

    async fn delete_pod(&self, pod: &PodInfo) -> Result<(), Error>;

    async fn event(
        &self,
        pod: &PodInfo,
        type_: &str,
        reason: &str,
        action: &str,
        message: &str,
    ) -> Result<(), Error>;
}

/// (pod uid, reason, message): what makes two events the same.
type EventKey = (String, String, String);

/// How often a series' count is written (client-go's events broadcaster
/// refreshes series every 30 minutes).
pub const SERIES_REFRESH: Duration = Duration::from_secs(30 * 60);

/// An Event already written and how often it happened since.
#[derive(Clone, Debug)]
struct Series {
    name: String,
    count: i32,
    /// When the count was last written.
    written: Instant,
}

/// [`ClusterApi`] over the API server.
pub struct KubeApi {
    client: kube::Client,
    /// (pod uid, reason, message) -> the Event written for it.
    seen: Mutex<HashMap<EventKey, Series>>,
}

impl KubeApi {
    pub fn new(client: kube::Client) -> KubeApi {
        KubeApi {
            client,
            seen: Mutex::new(HashMap::new()),
        }
    }

    fn pods(&self, ns: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), ns)
    }
}

/// How long PreBind waits for a pod's claims to be bound (upstream's
/// VolumeBinding bindTimeoutSeconds default).
const BIND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// The seen-events map is bounded: past this many entries it starts over
/// (a repeat then creates a new Event instead of bumping a count).
const MAX_SEEN_EVENTS: usize = 20_000;

#[async_trait]
impl ClusterApi for KubeApi {
    async fn pre_bind(&self, pod: &PodInfo, node: &str) -> Result<(), Error> {
        use crate::plugins::volume_binding::{claims_state, claims_to_annotate, ClaimsState};
        // WaitForFirstConsumer claims learn the node first, so the PV
        // binder (or a provisioner) picks a volume that node can reach.
        for claim in claims_to_annotate(pod, node) {
            let api: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
                Api::namespaced(self.client.clone(), &pod.namespace);
            let patch = json!({"metadata": {"annotations": {
                crate::plugins::volume_binding::SELECTED_NODE: node}}});
            api.patch(&claim, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| Error::SelectNode(claim.clone(), node.into(), e))?;
        }
        // Then wait for the claims to be bound, read from the scheduler's
        // own watch of claims, up to upstream's bindTimeoutSeconds.
        let deadline = std::time::Instant::now() + BIND_TIMEOUT;
        let mut named = std::collections::HashSet::new();
        loop {
            let (claim, names_node) = match claims_state(pod, node) {
                ClaimsState::Bound => return Ok(()),
                ClaimsState::Waiting { claim, names_node } => (claim, names_node),
            };
            if names_node {
                named.insert(claim.clone());
            } else if named.contains(&claim) {
                return Err(Error::VolumesNotBound(format!(
                    "selectedNode annotation reset for PVC \"{claim}\""
                )));
            }
            if std::time::Instant::now() >= deadline {
                return Err(Error::VolumesNotBound(format!(
                    "binding volumes: PVC \"{claim}\" not bound within {}s",
                    BIND_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    async fn bind(&self, pod: &PodInfo, node: &str) -> Result<(), Error> {
        let binding = Binding {
            metadata: ObjectMeta {
                name: Some(pod.name.clone()),
                namespace: Some(pod.namespace.clone()),
                uid: Some(pod.uid.clone()).filter(|u| !u.is_empty()),
                ..ObjectMeta::default()
            },
            target: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(node.into()),
                ..ObjectReference::default()
            },
        };
        self.pods(&pod.namespace)
            .create_subresource::<_, serde_json::Value>(
                "binding",
                &pod.name,
                &PostParams::default(),
                &binding,
            )
            .await
            .map(|_| ())
            .map_err(|e| Error::Bind(pod.key(), node.into(), e))
    }

    async fn set_unschedulable(
        &self,
        pod: &PodInfo,
        reason: &str,
        message: &str,
        nominated: Option<&str>,
    ) -> Result<(), Error> {
        let mut status = json!({
            "conditions": [{
                "type": "PodScheduled",
                "status": "False",
                "reason": reason,
                "message": message,
                "lastProbeTime": null,
                "lastTransitionTime": Timestamp::now().to_string(),
            }],
        });
        if let Some(n) = nominated {
            status["nominatedNodeName"] = json!(n);
        }
        let patch = json!({"metadata": {"uid": pod.uid}, "status": status});
        self.pods(&pod.namespace)
            .patch_status(&pod.name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
            .map(|_| ())
            .map_err(|e| Error::Status(pod.key(), e))
    }

    async fn delete_pod(&self, pod: &PodInfo) -> Result<(), Error> {
        // Upstream marks a victim before deleting it, so its owner (a Job's
        // podFailurePolicy, say) can tell why it went. Best effort: the
        // deletion matters more than the condition.
        let condition = json!({"metadata": {"uid": pod.uid}, "status": {"conditions": [{
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "PreemptionByScheduler",
            "message": "default-scheduler: preempting to accommodate a higher priority pod",
            "lastTransitionTime": Timestamp::now().to_string(),
        }]}});
        if let Err(e) = self
            .pods(&pod.namespace)
            .patch_status(
                &pod.name,
                &PatchParams::default(),
                &Patch::Strategic(condition),
            )
            .await
        {
            tracing::debug!(pod = %pod.key(), error = %e, "DisruptionTarget not set");
        }
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(pod.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        self.pods(&pod.namespace)
            .delete(&pod.name, &dp)
            .await
            .map(|_| ())
            .map_err(|e| Error::Delete(pod.key(), e))
    }

    async fn event(
        &self,
        pod: &PodInfo,
        type_: &str,
        reason: &str,
        action: &str,
        message: &str,
    ) -> Result<(), Error> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &pod.namespace);
        let now = Timestamp::now();
        let key = (pod.uid.clone(), reason.to_string(), message.to_string());
        // Only warnings repeat; one-off events (Scheduled) skip the map.
        let dedupe = type_ == "Warning";
        let previous = if dedupe {
            self.seen.lock().expect("events lock").get(&key).cloned()
        } else {
            None
        };
        if let Some(series) = previous {
            let count = series.count + 1;
            // The first repeat is written at once (it turns the Event into
            // a series); later ones only when the series is due.
            if series.count > 1 && series.written.elapsed() < SERIES_REFRESH {
                if let Some(s) = self.seen.lock().expect("events lock").get_mut(&key) {
                    s.count = s.count.max(count);
                }
                return Ok(());
            }
            let patch = json!({"count": count, "lastTimestamp": Time(now)});
            let bumped = api
                .patch(&series.name, &PatchParams::default(), &Patch::Merge(patch))
                .await;
            if bumped.is_ok() {
                self.seen.lock().expect("events lock").insert(
                    key,
                    Series {
                        name: series.name,
                        count,
                        written: Instant::now(),
                    },
                );
                return Ok(());
            }
            // The event expired or was deleted: write a new one.
        }
        let name = format!("{}.{:x}", pod.name, now.as_nanosecond());
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(pod.namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(pod.name.clone()),
                namespace: Some(pod.namespace.clone()),
                uid: Some(pod.uid.clone()),
                ..ObjectReference::default()
            },
            type_: Some(type_.into()),
            reason: Some(reason.into()),
            action: Some(action.into()),
            message: Some(message.into()),
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: Some(MicroTime(now)),
            reporting_component: Some(COMPONENT.into()),
            reporting_instance: Some(COMPONENT.into()),
            source: Some(EventSource {
                component: Some(COMPONENT.into()),
                host: None,
            }),
            ..Event::default()
        };
        api.create(&PostParams::default(), &event)
            .await
            .map_err(|e| Error::Event(pod.key(), e))?;
        if !dedupe {
            return Ok(());
        }
        let mut seen = self.seen.lock().expect("events lock");
        if seen.len() >= MAX_SEEN_EVENTS {
            seen.clear();
        }
        seen.insert(
            key,
            Series {
                name,
                count: 1,
                written: Instant::now(),
            },
        );
        Ok(())
    }
}
