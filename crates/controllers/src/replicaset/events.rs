//! Events of the workload controllers, through the events.k8s.io API.
//!
//! Upstream counterpart: client-go's event recorder with its correlator
//! (`tools/record`): one event per distinct message, a repeat of the same
//! message within a while counted on the first instead of stored again.
//! kube-rs' `Recorder` folds every event with the same reason into one
//! series whatever the message, so "Created pod: a" and "Created pod: b"
//! would show as one; this recorder keys on the message too.
//!
//! Like upstream's broadcaster, publishing never waits for the API: events
//! go to a bounded queue written by a background task and are dropped when
//! it is full, so a burst of pod creations is not slowed by as many event
//! writes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

/// A repeat within this window counts on the earlier event.
const SERIES_WINDOW: Duration = Duration::from_secs(600);

/// Entries kept before the oldest are dropped.
const CACHE_LIMIT: usize = 4096;

/// Events waiting to be written before new ones are dropped (upstream's
/// broadcaster queue length).
const QUEUE: usize = 1000;

/// Events written at once.
const WRITERS: usize = 8;

#[derive(Clone, Hash, PartialEq, Eq)]
struct Key {
    uid: String,
    reason: String,
    note: String,
}

struct Seen {
    name: String,
    namespace: String,
    count: i32,
    at: Instant,
}

/// One event waiting to be written.
struct Pending {
    regarding: ObjectReference,
    warning: bool,
    reason: String,
    note: String,
}

/// Publishes events for one controller.
pub struct Recorder {
    queue: tokio::sync::mpsc::Sender<Pending>,
}

impl Recorder {
    /// A recorder and its writer task (call within the runtime).
    pub fn new(client: kube::Client, controller: &str) -> Recorder {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let writer = std::sync::Arc::new(Writer {
            client,
            controller: controller.into(),
            instance: format!("{controller}-{}", host.trim()),
            seen: Mutex::new(HashMap::new()),
        });
        let (queue, mut rx) = tokio::sync::mpsc::channel::<Pending>(QUEUE);
        tokio::spawn(async move {
            futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
                .for_each_concurrent(WRITERS, |p| {
                    let writer = writer.clone();
                    async move {
                        writer
                            .publish(&p.regarding, p.warning, &p.reason, p.note)
                            .await
                    }
                })
                .await;
        });
        Recorder { queue }
    }

    /// Record `reason`/`note` about `regarding`, without waiting; dropped
    /// when the queue is full. Failures are logged only, as upstream (an
    /// event is never worth failing a sync for).
    pub fn publish(&self, regarding: &ObjectReference, warning: bool, reason: &str, note: String) {
        let pending = Pending {
            regarding: regarding.clone(),
            warning,
            reason: reason.into(),
            note,
        };
        if self.queue.try_send(pending).is_err() {
            tracing::debug!(reason, "event queue full; event dropped");
        }
    }
}

/// Writes events and remembers recent ones to count repeats.
struct Writer {
    client: kube::Client,
    controller: String,
    instance: String,
    seen: Mutex<HashMap<Key, Seen>>,
}

impl Writer {
    async fn publish(
        &self,
        regarding: &ObjectReference,
        warning: bool,
        reason: &str,
        note: String,
    ) {
        let key = Key {
            uid: regarding.uid.clone().unwrap_or_default(),
            reason: reason.into(),
            note: note.clone(),
        };
        let now = Timestamp::now();
        let repeat = {
            let mut seen = self.seen.lock().expect("event cache lock");
            seen.retain(|_, s| s.at.elapsed() < SERIES_WINDOW);
            match seen.get_mut(&key) {
                Some(s) => {
                    s.count += 1;
                    s.at = Instant::now();
                    Some((s.name.clone(), s.namespace.clone(), s.count))
                }
                None => None,
            }
        };
        let result = match repeat {
            Some((name, ns, count)) => {
                let series = EventSeries {
                    count,
                    last_observed_time: MicroTime(now),
                };
                Api::<Event>::namespaced(self.client.clone(), &ns)
                    .patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({ "series": series })),
                    )
                    .await
                    .map(|_| ())
            }
            None => {
                self.create(regarding, warning, reason, note, key, now)
                    .await
            }
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, reason, "event not recorded");
        }
    }

    async fn create(
        &self,
        regarding: &ObjectReference,
        warning: bool,
        reason: &str,
        note: String,
        key: Key,
        now: Timestamp,
    ) -> Result<(), kube::Error> {
        let ns = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        // Upstream names events <object>.<hex nanoseconds>.
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or("object"),
            now.as_nanosecond()
        );
        let ev = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some(reason.into()),
            reason: Some(reason.into()),
            note: Some(note),
            type_: Some(if warning { "Warning" } else { "Normal" }.into()),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Event::default()
        };
        Api::<Event>::namespaced(self.client.clone(), &ns)
            .create(&PostParams::default(), &ev)
            .await?;
        let mut seen = self.seen.lock().expect("event cache lock");
        if seen.len() >= CACHE_LIMIT {
            seen.clear();
        }
        seen.insert(
            key,
            Seen {
                name,
                namespace: ns,
                count: 1,
                at: Instant::now(),
            },
        );
        Ok(())
    }
}
