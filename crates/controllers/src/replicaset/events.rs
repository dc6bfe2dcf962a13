//! Events of the workload controllers, written as core/v1 Events.
//!
//! Upstream counterpart: client-go's legacy recorder (`tools/record`,
//! `EventBroadcaster` with `recordToSink`), which the ReplicaSet and
//! Deployment controllers use: every event passes the
//! [`correlator`](super::correlator) (repeats counted, similar events
//! combined, spam dropped), then a create or a count patch is written.
//!
//! Like upstream's broadcaster, publishing never waits for the API: events
//! go to a bounded queue written by a background task and are dropped when
//! it is full, so a burst of pod creations is not slowed by event writes.
//! One task writes them in order, as upstream's sink goroutine does: a
//! patch of an event must not overtake its creation.

use std::sync::Mutex;
use std::time::Instant;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use super::correlator::{Correlator, Outcome};

/// Events waiting to be written before new ones are dropped (upstream's
/// broadcaster queue length).
const QUEUE: usize = 1000;

/// Publishes events for one controller.
pub struct Recorder {
    controller: String,
    correlator: Mutex<Correlator>,
    queue: tokio::sync::mpsc::Sender<Outcome>,
}

impl Recorder {
    /// A recorder and its writer task (call within the runtime).
    pub fn new(client: kube::Client, controller: &str) -> Recorder {
        let (queue, mut rx) = tokio::sync::mpsc::channel::<Outcome>(QUEUE);
        tokio::spawn(async move {
            while let Some(outcome) = rx.recv().await {
                if let Err(e) = write(&client, outcome).await {
                    tracing::debug!(error = %e, "event not recorded");
                }
            }
        });
        Recorder {
            controller: controller.into(),
            correlator: Mutex::default(),
            queue,
        }
    }

    /// Record `reason`/`note` about `regarding`, without waiting; dropped
    /// when the queue is full. Failures are logged only, as upstream (an
    /// event is never worth failing a sync for).
    pub fn publish(&self, regarding: &ObjectReference, warning: bool, reason: &str, note: String) {
        // Upstream's broadcaster drops a full queue's events before they
        // reach the correlator, so they are not counted either.
        let Ok(permit) = self.queue.try_reserve() else {
            tracing::debug!(reason, "event queue full; event dropped");
            return;
        };
        let event = self.event(regarding, warning, reason, note, Timestamp::now());
        let outcome = self
            .correlator
            .lock()
            .expect("event correlator lock")
            .correlate(event, Instant::now());
        if outcome != Outcome::Skip {
            permit.send(outcome);
        }
    }

    /// A new event as upstream's `makeEvent` builds it: named
    /// `<object>.<hex nanoseconds>`, count 1, this controller as source
    /// and reporter.
    fn event(
        &self,
        regarding: &ObjectReference,
        warning: bool,
        reason: &str,
        note: String,
        now: Timestamp,
    ) -> Event {
        let ns = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        Event {
            metadata: ObjectMeta {
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or("object"),
                    now.as_nanosecond()
                )),
                namespace: Some(ns),
                ..ObjectMeta::default()
            },
            involved_object: regarding.clone(),
            reason: Some(reason.into()),
            message: Some(note),
            type_: Some(if warning { "Warning" } else { "Normal" }.into()),
            source: Some(EventSource {
                component: Some(self.controller.clone()),
                host: None,
            }),
            reporting_component: Some(self.controller.clone()),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            ..Event::default()
        }
    }
}

/// Write one outcome; a patch of an event that is gone (expired) creates
/// it again with its count, as upstream's `recordEvent`.
async fn write(client: &kube::Client, outcome: Outcome) -> Result<(), kube::Error> {
    let (event, patch) = match outcome {
        Outcome::Create(e) => (e, false),
        Outcome::Patch(e) => (e, true),
        Outcome::Skip => return Ok(()),
    };
    let ns = event.metadata.namespace.clone().unwrap_or_default();
    let api = Api::<Event>::namespaced(client.clone(), &ns);
    if patch {
        let name = event.metadata.name.clone().unwrap_or_default();
        let body = json!({
            "count": event.count,
            "lastTimestamp": event.last_timestamp,
            "message": event.message,
        });
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&body))
            .await
        {
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            other => return other.map(|_| ()),
        }
    }
    api.create(&PostParams::default(), &event).await.map(|_| ())
}
