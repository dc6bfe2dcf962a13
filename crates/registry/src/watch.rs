//! WATCH: store events as API watch events, filtered.
//!
//! Upstream counterpart: the watch path of `Store` and the cacher's
//! filtering. An object that starts to match a filter is ADDED, one that
//! stops matching is DELETED (with its new state), as kube-apiserver does.

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

impl ResourceStore {
    /// Watch a namespace (or all). From `after` when given; otherwise the
    /// current objects come first as ADDED events.
    pub async fn watch(
        self: &std::sync::Arc<Self>,
        namespace: Option<&str>,
        after: Option<Revision>,
        filter: Option<Filter>,
    ) -> Result<WatchStream> {
        let prefix = self.list_prefix(namespace);
        let (initial, after) = match after {
            Some(rev) => (Vec::new(), rev),
            None => {
                let page = self
                    .list(
                        namespace,
                        &ListOptions {
                            filter: filter.clone(),
                            ..Default::default()
                        },
                    )
                    .await?;
                let added = page
                    .items
                    .into_iter()
                    .map(|object| {
                        Ok(WatchEvent {
                            kind: WatchEventType::Added,
                            object,
                        })
                    })
                    .collect();
                (added, page.revision)
            }
        };
        let events = self
            .store
            .watch(&prefix, after)
            .await
            .map_err(|e| storage_error(self, "", e))?;
        let rs = self.clone();
        let live = events.filter_map(move |event| {
            let out = match event {
                Ok(event) => rs.translate(event, filter.as_ref()),
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
    ) -> Option<Result<WatchEvent>> {
        let object = match self.decode(&event.kv) {
            Ok(obj) => obj,
            Err(e) => return Some(Err(e)),
        };
        let matches = |obj: &Value| filter.is_none_or(|f| f(obj));
        let kind = match event.kind {
            EventKind::Create => matches(&object).then_some(WatchEventType::Added)?,
            EventKind::Delete => {
                // Judge a delete by the state that was removed.
                matches(&object).then_some(WatchEventType::Deleted)?
            }
            EventKind::Update => {
                let was = match event.prev.as_ref().map(|p| self.decode(p)) {
                    Some(Ok(prev)) => matches(&prev),
                    Some(Err(e)) => return Some(Err(e)),
                    None => true,
                };
                match (was, matches(&object)) {
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
