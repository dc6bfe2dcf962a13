//! What becomes of each event before it is written: counted on an earlier
//! identical one, folded with similar ones, or dropped as spam.
//!
//! Upstream counterpart: client-go's `tools/record/events_cache.go`
//! (`EventCorrelator` with its `EventAggregator`, `eventLogger` and
//! `EventSourceObjectSpamFilter`), which the legacy recorder of the
//! ReplicaSet and Deployment controllers runs every event through, in
//! this order:
//! 1. aggregation: events from one source about one object with the same
//!    type and reason but different messages are *similar*; once ten
//!    distinct messages were seen within ten minutes, each further one is
//!    replaced by a single "(combined from similar events): <message>"
//!    event;
//! 2. logging: an event identical to an earlier one (or the combined
//!    event again) is written as a patch of the earlier object, its count
//!    one higher;
//! 3. spam filtering: each source may write 25 events about one object at
//!    once, then one per five minutes (a token bucket); the rest are
//!    dropped, though steps 1 and 2 have counted them.
//!
//! A ReplicaSet creating a thousand pods thus writes 9 "Created pod"
//! events, one combined event and 15 patches of it, not a thousand
//! events.
//!
//! The caches are bounded like upstream's LRUs (4,096 entries); here a
//! full cache is emptied, which at worst lets a few more events through.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Distinct messages of similar events before they are combined
/// (upstream's `defaultAggregateMaxEvents`).
pub const MAX_SIMILAR: usize = 10;

/// Similar events further apart than this start afresh (upstream's
/// `defaultAggregateIntervalInSeconds`).
pub const SIMILAR_WINDOW: Duration = Duration::from_secs(600);

/// Events one source may write about one object at once (upstream's
/// `defaultSpamBurst`).
pub const SPAM_BURST: f64 = 25.0;

/// One more event per this long once the burst is spent (upstream's
/// `defaultSpamQPS`, 1/300).
pub const SPAM_REFILL: Duration = Duration::from_secs(300);

/// Entries per cache (upstream's `maxLruCacheEntries`).
const CACHE_LIMIT: usize = 4096;

/// The prefix of a combined event's message.
pub const COMBINED: &str = "(combined from similar events): ";

/// What to write for one event.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Create this event.
    Create(Event),
    /// Patch `count`, `lastTimestamp` and `message` of the existing event
    /// named in this one (created anew if it is gone).
    Patch(Event),
    /// Dropped by the spam filter.
    Skip,
}

struct Similar {
    messages: HashSet<String>,
    last: Instant,
}

struct Observed {
    count: i32,
    first: Option<Time>,
    name: Option<String>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The correlator of one recorder.
#[derive(Default)]
pub struct Correlator {
    similar: HashMap<String, Similar>,
    observed: HashMap<String, Observed>,
    spam: HashMap<String, Bucket>,
}

fn source(ev: &Event) -> (&str, &str) {
    let s = ev.source.as_ref();
    (
        s.and_then(|s| s.component.as_deref()).unwrap_or(""),
        s.and_then(|s| s.host.as_deref()).unwrap_or(""),
    )
}

/// Source and involved object: the spam filter's key (upstream
/// `getSpamKey`).
fn object_key(ev: &Event) -> String {
    let (component, host) = source(ev);
    let o = &ev.involved_object;
    [
        component,
        host,
        o.kind.as_deref().unwrap_or(""),
        o.namespace.as_deref().unwrap_or(""),
        o.name.as_deref().unwrap_or(""),
        o.uid.as_deref().unwrap_or(""),
        o.api_version.as_deref().unwrap_or(""),
    ]
    .join("\0")
}

/// Object, type and reason (and reporter): what similar events share
/// (upstream `EventAggregatorByReasonFunc`).
fn similar_key(ev: &Event) -> String {
    object_key_with(
        ev,
        [
            ev.type_.as_deref(),
            ev.reason.as_deref(),
            ev.reporting_component.as_deref(),
            ev.reporting_instance.as_deref(),
        ],
    )
}

/// Everything that makes two events identical (upstream `getEventKey`).
fn event_key(ev: &Event) -> String {
    object_key_with(
        ev,
        [
            ev.involved_object.field_path.as_deref(),
            ev.type_.as_deref(),
            ev.reason.as_deref(),
            ev.message.as_deref(),
        ],
    )
}

/// The object key followed by `parts`, absent ones as empty strings.
fn object_key_with(ev: &Event, parts: [Option<&str>; 4]) -> String {
    let mut key = object_key(ev);
    for part in parts {
        key.push('\0');
        key.push_str(part.unwrap_or(""));
    }
    key
}

fn bounded<V>(map: &mut HashMap<String, V>, key: &str) {
    if map.len() >= CACHE_LIMIT && !map.contains_key(key) {
        map.clear();
    }
}

impl Correlator {
    /// Decide what to write for `event` (a complete new event, count 1,
    /// stamped `now` on the wall clock), `now` on the monotonic clock.
    pub fn correlate(&mut self, event: Event, now: Instant) -> Outcome {
        let (event, key) = self.aggregate(event, now);
        let event = self.observe(event, key);
        if !self.accept(&event, now) {
            return Outcome::Skip;
        }
        if event.count.unwrap_or(1) > 1 {
            Outcome::Patch(event)
        } else {
            Outcome::Create(event)
        }
    }

    /// Step 1: the event itself and its own key, or the combined event
    /// and the key all similar ones share.
    fn aggregate(&mut self, event: Event, now: Instant) -> (Event, String) {
        let key = similar_key(&event);
        bounded(&mut self.similar, &key);
        let rec = self.similar.entry(key.clone()).or_insert_with(|| Similar {
            messages: HashSet::new(),
            last: now,
        });
        if now.duration_since(rec.last) > SIMILAR_WINDOW {
            rec.messages.clear();
        }
        rec.messages
            .insert(event.message.clone().unwrap_or_default());
        rec.last = now;
        if rec.messages.len() < MAX_SIMILAR {
            let own = event_key(&event);
            return (event, own);
        }
        // Keep the set at its limit: the next new message combines again.
        if let Some(any) = rec.messages.iter().next().cloned() {
            rec.messages.remove(&any);
        }
        // Upstream's combined event carries the object, type, reason and
        // source only (no reporting controller), named and stamped now.
        let combined = Event {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: event.metadata.name.clone(),
                namespace: event.metadata.namespace.clone(),
                ..Default::default()
            },
            count: Some(1),
            first_timestamp: event.last_timestamp.clone(),
            last_timestamp: event.last_timestamp.clone(),
            message: Some(format!(
                "{COMBINED}{}",
                event.message.as_deref().unwrap_or("")
            )),
            type_: event.type_.clone(),
            reason: event.reason.clone(),
            source: event.source.clone(),
            involved_object: event.involved_object,
            ..Default::default()
        };
        (combined, key)
    }

    /// Step 2: a repeat of `key` becomes the earlier event, counted once
    /// more.
    fn observe(&mut self, mut event: Event, key: String) -> Event {
        bounded(&mut self.observed, &key);
        match self.observed.get_mut(&key) {
            Some(seen) => {
                seen.count += 1;
                event.count = Some(seen.count);
                event.first_timestamp = seen.first.clone();
                event.metadata.name = seen.name.clone();
            }
            None => {
                self.observed.insert(
                    key,
                    Observed {
                        count: event.count.unwrap_or(1),
                        first: event.first_timestamp.clone(),
                        name: event.metadata.name.clone(),
                    },
                );
            }
        }
        event
    }

    /// Step 3: whether the source may write about this object now.
    fn accept(&mut self, event: &Event, now: Instant) -> bool {
        let key = object_key(event);
        bounded(&mut self.spam, &key);
        let b = self.spam.entry(key).or_insert(Bucket {
            tokens: SPAM_BURST,
            at: now,
        });
        let refill = now.duration_since(b.at).as_secs_f64() / SPAM_REFILL.as_secs_f64();
        b.tokens = (b.tokens + refill).min(SPAM_BURST);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
#[path = "correlator_tests.rs"]
mod tests;
