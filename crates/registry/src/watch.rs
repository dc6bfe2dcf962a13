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
use rkube_storage::{EventKind, Revision};
use serde_json::Value;

use crate::{storage_error, Filter, ListOptions, ResourceStore, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchEventType {
    Added,
    Modified,
    Deleted,
    Bookmark,
}

impl WatchEventType {
    pub fn as_str(self) -> &'static str {
        match self {
            WatchEventType::Added => "ADDED",
            WatchEventType::Modified => "MODIFIED",
            WatchEventType::Deleted => "DELETED",
            WatchEventType::Bookmark => "BOOKMARK",
        }
    }
}

#[derive(Clone, Debug)]
pub struct WatchEvent {
    pub kind: WatchEventType,
    pub object: Value,
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
    /// As [`ListOptions::needles`]: events whose object (before and after)
    /// lacks them are dropped without decoding.
    pub needles: Vec<Vec<u8>>,
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
            needles,
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
                    }));
                }
                (events, page.revision)
            }
        };
        let events = self
            .store
            .watch(&prefix, after)
            .await
            .map_err(|e| storage_error(self, "", e))?;
        let rs = self.clone();
        let finders: Vec<memchr::memmem::Finder<'static>> = needles
            .iter()
            .map(|n| memchr::memmem::Finder::new(n).into_owned())
            .collect();
        let live = events.filter_map(move |event| {
            let out = match event {
                Ok(event) => rs.translate(event, filter.as_ref(), &finders),
                Err(e) => Some(Err(storage_error(&rs, "", e))),
            };
            futures::future::ready(out)
        });
        Ok(Box::pin(futures::stream::iter(initial).chain(live)))
    }

    fn translate(
        &self,
        event: rkube_storage::WatchEvent,
        filter: Option<&Filter>,
        finders: &[memchr::memmem::Finder<'static>],
    ) -> Option<Result<WatchEvent>> {
        let possible = |bytes: &[u8]| finders.iter().all(|f| f.find(bytes).is_some());
        let now_possible = possible(&event.kv.value);
        let was_possible = match &event.prev {
            Some(prev) => possible(&prev.value),
            None => event.kind == EventKind::Update,
        };
        if !now_possible && !was_possible {
            return None;
        }
        let object = match self.decode(&event.kv) {
            Ok(obj) => obj,
            Err(e) => return Some(Err(e)),
        };
        let matches = |obj: &Value| filter.is_none_or(|f| f(obj));
        let now = now_possible && matches(&object);
        let kind = match event.kind {
            EventKind::Create => now.then_some(WatchEventType::Added)?,
            EventKind::Delete => {
                // Judge a delete by the state that was removed.
                now.then_some(WatchEventType::Deleted)?
            }
            EventKind::Update => {
                let was = match event.prev.as_ref() {
                    Some(_) if !was_possible => false,
                    Some(p) => match self.decode(p) {
                        Ok(prev) => matches(&prev),
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
        Some(Ok(WatchEvent { kind, object }))
    }
}
