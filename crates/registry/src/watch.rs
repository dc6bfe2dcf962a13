//! WATCH: store events as API watch events, filtered.
//!
//! Upstream counterpart: the watch path of `Store` and the cacher's
//! filtering. An object that starts to match a filter is ADDED, one that
//! stops matching is DELETED (with its new state), as kube-apiserver does.
//! A streaming list (`sendInitialEvents=true`, the WatchList feature)
//! sends the current objects as ADDED, then a BOOKMARK annotated
//! `k8s.io/initial-events-end`, then the changes after that snapshot.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use rkube_storage::{EventKind, Revision, WatchItem};
use serde_json::Value;

use crate::project::Reads;
use crate::{storage_error, Filter, ListOptions, ResourceStore, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchEventType {
    Added,
    Modified,
    Deleted,
    Bookmark,
    /// How far the watch has got ([`WatchOptions::progress`]): a bookmark
    /// object the caller may send when it sends bookmarks, never an event.
    Progress,
}

impl WatchEventType {
    pub fn as_str(self) -> &'static str {
        match self {
            WatchEventType::Added => "ADDED",
            WatchEventType::Modified => "MODIFIED",
            WatchEventType::Deleted => "DELETED",
            WatchEventType::Bookmark | WatchEventType::Progress => "BOOKMARK",
        }
    }
}

#[derive(Clone, Debug)]
pub struct WatchEvent {
    pub kind: WatchEventType,
    /// The object; `Null` when only [`WatchEvent::raw`] was made.
    pub object: Value,
    /// The object's JSON as stored, resourceVersion included, for watches
    /// that asked for it ([`WatchOptions::raw`]) and could have it.
    pub raw: Option<RawObject>,
}

/// An object's JSON bytes, written to the client as they are.
#[derive(Clone, Debug)]
pub struct RawObject {
    pub json: Vec<u8>,
    pub revision: Revision,
}

pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent>> + Send>>;

/// The annotation of the BOOKMARK that ends a streaming list's initial
/// events.
pub const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

/// Whether a watch starts with the objects that exist.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InitialEvents {
    /// Without `sendInitialEvents`: current objects as ADDED when the
    /// watch names no revision, none when it does.
    #[default]
    Legacy,
    /// `sendInitialEvents=true`: current objects (at a snapshot not older
    /// than the requested revision), then the initial-events-end BOOKMARK.
    Stream,
    /// `sendInitialEvents=false`: only changes, from the requested
    /// revision or from now.
    None,
}

/// What a WATCH asks for.
#[derive(Clone, Default)]
pub struct WatchOptions {
    /// The revision named by the request (`resourceVersion`), if any.
    pub after: Option<Revision>,
    pub initial: InitialEvents,
    pub filter: Option<Filter>,
    /// Where `filter` reads, when the caller knows: events are judged on
    /// objects decoded only there ([`Reads`]), and a raw watch decodes
    /// nothing else. `None` judges on whole objects.
    pub filter_reads: Option<Reads>,
    /// As [`ListOptions::needles`]: events whose object (before and after)
    /// lacks them are dropped without decoding.
    pub needles: Vec<Vec<u8>>,
    /// The caller writes plain JSON: give changes as their stored bytes
    /// ([`WatchEvent::raw`]) and decode only what a filter must judge.
    /// Every watcher of a busy resource otherwise decodes and re-encodes
    /// every event (upstream's cacher likewise serializes an event once
    /// for all watchers rather than once per watcher).
    pub raw: bool,
    /// Give [`WatchEventType::Progress`] items between events, for a
    /// client that takes bookmarks.
    pub progress: bool,
    /// With `raw`: the caller sends only metadata (`PartialObjectMetadata`,
    /// as the garbage collector's informers ask), so [`RawObject::json`] is
    /// the stored object's `metadata` object alone, resourceVersion
    /// spliced in. Nothing else of the object is decoded or copied.
    pub metadata_only: bool,
}

impl ResourceStore {
    /// Watch a namespace (or all).
    pub async fn watch(
        self: &std::sync::Arc<Self>,
        namespace: Option<&str>,
        opts: WatchOptions,
    ) -> Result<WatchStream> {
        let prefix = self.list_prefix(namespace);
        let WatchOptions {
            after,
            initial,
            filter,
            filter_reads,
            needles,
            raw,
            progress,
            metadata_only,
        } = opts;
        let (initial, after) = match (initial, after) {
            (InitialEvents::Legacy, Some(rev)) | (InitialEvents::None, Some(rev)) => {
                (Vec::new(), rev)
            }
            (InitialEvents::None, None) => (Vec::new(), self.current_revision().await?),
            (mode, _) => {
                // A snapshot at the latest revision is never older than
                // the one asked for.
                let page = self
                    .list(
                        namespace,
                        &ListOptions {
                            filter: filter.clone(),
                            needles: needles.clone(),
                            ..Default::default()
                        },
                    )
                    .await?;
                let mut events: Vec<Result<WatchEvent>> = page
                    .items
                    .into_iter()
                    .map(|object| {
                        Ok(WatchEvent {
                            kind: WatchEventType::Added,
                            object,
                            raw: None,
                        })
                    })
                    .collect();
                if mode == InitialEvents::Stream {
                    events.push(Ok(WatchEvent {
                        kind: WatchEventType::Bookmark,
                        object: serde_json::json!({
                            "kind": self.info.kind,
                            "apiVersion": self.api_version(),
                            "metadata": {
                                "resourceVersion": page.revision.to_string(),
                                "annotations": {INITIAL_EVENTS_END: "true"},
                            },
                        }),
                        raw: None,
                    }));
                }
                (events, page.revision)
            }
        };
        let events = if progress {
            self.store.watch_with_progress(&prefix, after).await
        } else {
            let events = self.store.watch(&prefix, after).await;
            events.map(|s| -> rkube_storage::ProgressStream {
                Box::pin(s.map(|e| e.map(WatchItem::Event)))
            })
        }
        .map_err(|e| storage_error(self, "", e))?;
        let rs = self.clone();
        let finders: Vec<memchr::memmem::Finder<'static>> = needles
            .iter()
            .map(|n| memchr::memmem::Finder::new(n).into_owned())
            .collect();
        let live = events.filter_map(move |event| {
            let out = match event {
                Ok(WatchItem::Event(event)) => {
                    let judge = Judge {
                        filter: filter.as_ref(),
                        reads: filter_reads.as_ref(),
                        finders: &finders,
                    };
                    let raw = match (raw, metadata_only) {
                        (false, _) => RawForm::None,
                        (true, false) => RawForm::Object,
                        (true, true) => RawForm::Metadata,
                    };
                    rs.translate(event, &judge, raw)
                }
                Ok(WatchItem::Progress(rev)) => Some(Ok(WatchEvent {
                    kind: WatchEventType::Progress,
                    object: rs.bookmark(rev),
                    raw: None,
                })),
                Err(e) => Some(Err(storage_error(&rs, "", e))),
            };
            futures::future::ready(out)
        });
        Ok(Box::pin(futures::stream::iter(initial).chain(live)))
    }

    /// A BOOKMARK's object: the kind and the revision, nothing else.
    pub fn bookmark(&self, revision: Revision) -> Value {
        serde_json::json!({
            "kind": self.info.kind,
            "apiVersion": self.api_version(),
            "metadata": {"resourceVersion": revision.to_string()},
        })
    }

    fn translate(
        &self,
        event: rkube_storage::WatchEvent,
        judge: &Judge<'_>,
        want_raw: RawForm,
    ) -> Option<Result<WatchEvent>> {
        let Judge {
            filter,
            reads,
            finders,
        } = *judge;
        // Converted objects are judged as served, so only in whole.
        let reads = reads.filter(|_| self.conversion.is_none());
        let possible = |bytes: &[u8]| finders.iter().all(|f| f.find(bytes).is_some());
        let now_possible = possible(&event.kv.value);
        let was_possible = match &event.prev {
            Some(prev) => possible(&prev.value),
            None => event.kind == EventKind::Update,
        };
        if !now_possible && !was_possible {
            return None;
        }
        // Converted objects are shown in another version than stored.
        let raw = match want_raw {
            _ if self.conversion.is_some() => None,
            RawForm::None => None,
            RawForm::Object => Self::raw_with_rv(&event.kv),
            RawForm::Metadata => metadata_with_rv(&event.kv),
        }
        .map(|json| RawObject {
            json,
            revision: event.kv.mod_revision,
        });
        if raw.is_some() && filter.is_none() && finders.is_empty() {
            let kind = match event.kind {
                EventKind::Create => WatchEventType::Added,
                EventKind::Update => WatchEventType::Modified,
                EventKind::Delete => WatchEventType::Deleted,
            };
            return Some(Ok(WatchEvent {
                kind,
                object: Value::Null,
                raw,
            }));
        }
        let matches = |obj: &Value| filter.is_none_or(|f| f(obj));
        // What the filter reads of a state, decoded only there if it can.
        let judged = |kv: &rkube_storage::KeyValue| -> Result<bool> {
            match reads {
                Some(r) => r.decode(&kv.value).map(|o| matches(&o)).map_err(|e| {
                    rkube_machinery::StatusError::internal_error(format!(
                        "stored object {} is not valid JSON: {e}",
                        kv.key
                    ))
                }),
                None => self.decode(kv).map(|o| matches(&o)),
            }
        };
        // A raw event's object goes out as its bytes: decode none of it
        // beyond what the filter reads.
        let (object, now) = if raw.is_some() && reads.is_some() {
            let now = match now_possible.then(|| judged(&event.kv)) {
                None => false,
                Some(Ok(now)) => now,
                Some(Err(e)) => return Some(Err(e)),
            };
            (Value::Null, now)
        } else {
            let object = match self.decode(&event.kv) {
                Ok(obj) => obj,
                Err(e) => return Some(Err(e)),
            };
            let now = now_possible && matches(&object);
            (object, now)
        };
        let kind = match event.kind {
            EventKind::Create => now.then_some(WatchEventType::Added)?,
            EventKind::Delete => {
                // Judge a delete by the state that was removed.
                now.then_some(WatchEventType::Deleted)?
            }
            EventKind::Update => {
                let was = match event.prev.as_ref() {
                    Some(_) if !was_possible => false,
                    Some(p) => match judged(p) {
                        Ok(was) => was,
                        Err(e) => return Some(Err(e)),
                    },
                    None => true,
                };
                match (was, now) {
                    (true, true) => WatchEventType::Modified,
                    (false, true) => WatchEventType::Added,
                    (true, false) => WatchEventType::Deleted,
                    (false, false) => return None,
                }
            }
        };
        Some(Ok(WatchEvent { kind, object, raw }))
    }
}

/// What a watch sends of an event's object as stored bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RawForm {
    /// Nothing: the object is decoded.
    None,
    /// The whole object.
    Object,
    /// Its `metadata` object only.
    Metadata,
}

/// The stored object's top-level `metadata` object with its resourceVersion
/// spliced in, found by scanning as [`ResourceStore::raw_with_rv`] does;
/// `None` when the bytes are not an object with a `metadata` object.
fn metadata_with_rv(kv: &rkube_storage::KeyValue) -> Option<Vec<u8>> {
    let json = &kv.value[..];
    let at = crate::top_level_object(json, b"metadata")?;
    let end = crate::value_end(json, at - 1)?;
    Some(crate::splice_rv(b"{", &json[at..end], kv.mod_revision))
}

/// How a watch judges events: its filter, where the filter reads, and the
/// bytes every object it takes must contain.
#[derive(Clone, Copy)]
struct Judge<'a> {
    filter: Option<&'a Filter>,
    reads: Option<&'a Reads>,
    finders: &'a [memchr::memmem::Finder<'static>],
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures::StreamExt;
    use rkube_api::catalog;
    use rkube_storage::sqlite::SqliteStore;
    use serde_json::{json, Value};

    use super::*;
    use crate::resources::strategy_for;
    use crate::{SystemClock, Target};

    /// Every change of one ConfigMap as a raw watch and as a decoded one
    /// see it: kind, then the object (from the raw bytes when there are).
    async fn changes(raw: bool, filtered: bool) -> Vec<(WatchEventType, Value)> {
        let dir = tempfile::tempdir().unwrap();
        let kv = Arc::new(SqliteStore::open(&dir.path().join("state.db")).unwrap());
        let info = catalog::lookup("", "v1", "configmaps").unwrap();
        let rs = Arc::new(ResourceStore::new(
            info,
            strategy_for(info),
            kv,
            Arc::new(SystemClock),
        ));
        let filter: Option<Filter> = filtered.then(|| {
            let f: Filter = Arc::new(|o: &Value| o["data"]["k"] != "hidden");
            f
        });
        let opts = WatchOptions {
            initial: InitialEvents::None,
            filter,
            // The filter reads data.k only.
            filter_reads: filtered.then(|| Reads::new(["/data/k"])),
            raw,
            ..Default::default()
        };
        let mut events = rs.watch(Some("default"), opts).await.unwrap();
        let cm = json!({"metadata": {"name": "a"}, "data": {"k": "v1"}});
        let created = rs.create(Some("default"), cm, false).await.unwrap();
        let mut next = created.clone();
        next["data"]["k"] = "hidden".into();
        let hidden = rs
            .update(Some("default"), "a", next.clone(), Target::Main, false)
            .await
            .unwrap();
        next["data"]["k"] = "v2".into();
        next["metadata"]["resourceVersion"] = hidden["metadata"]["resourceVersion"].clone();
        rs.update(Some("default"), "a", next, Target::Main, false)
            .await
            .unwrap();
        rs.delete(Some("default"), "a", &Default::default())
            .await
            .unwrap();
        let mut out = Vec::new();
        while out.len() < 4 {
            let ev = events.next().await.unwrap().unwrap();
            let object = match &ev.raw {
                Some(r) => {
                    let v: Value = serde_json::from_slice(&r.json).unwrap();
                    assert_eq!(
                        v["metadata"]["resourceVersion"],
                        r.revision.to_string(),
                        "{v}"
                    );
                    v
                }
                None => ev.object.clone(),
            };
            assert_eq!(ev.raw.is_some(), raw, "{ev:?}");
            out.push((ev.kind, object));
        }
        out
    }

    #[tokio::test]
    async fn raw_events_carry_the_same_objects_as_decoded_ones() {
        for filtered in [false, true] {
            let raw = changes(true, filtered).await;
            let decoded = changes(false, filtered).await;
            let kinds: Vec<_> = raw.iter().map(|(k, _)| *k).collect();
            let expected = if filtered {
                // Hidden by the filter: the object leaves, then comes back.
                [
                    WatchEventType::Added,
                    WatchEventType::Deleted,
                    WatchEventType::Added,
                    WatchEventType::Deleted,
                ]
            } else {
                [
                    WatchEventType::Added,
                    WatchEventType::Modified,
                    WatchEventType::Modified,
                    WatchEventType::Deleted,
                ]
            };
            assert_eq!(kinds, expected, "filtered: {filtered}");
            for ((_, r), (_, d)) in raw.iter().zip(&decoded) {
                let strip = |v: &Value| {
                    let mut v = v.clone();
                    for f in [
                        "uid",
                        "creationTimestamp",
                        "resourceVersion",
                        "managedFields",
                    ] {
                        crate::meta::remove(&mut v, f);
                    }
                    v
                };
                assert_eq!(strip(r), strip(d), "filtered: {filtered}");
            }
        }
    }
}
