//! Watches over etcd: one etcd watch per store watch, its responses turned
//! into [`WatchEvent`]s.
//!
//! Upstream counterpart: `k8s.io/apiserver/pkg/storage/etcd3/watcher.go`,
//! which likewise asks etcd for previous values (`WithPrevKV`) so that a
//! delete event can carry the object that was deleted.
//!
//! The stream never reconnects on its own: etcd-client does not resume a
//! broken watch, and resuming here could repeat or skip events. It ends
//! with an `Err` instead, and the caller re-watches from the last revision
//! it saw, as the apiserver's reflector does.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, EventType, WatchOptions, WatchResponse};
use futures::stream;

use super::key_value;
use crate::{Error, EventKind, KeyValue, Result, Revision, WatchEvent, WatchStream};

/// How long to wait for etcd to cancel a probe watch with its compact
/// revision; etcd reports it within its 100 ms sync cycle.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Open an etcd watch on `[start, end)` for changes after revision `after`
/// and wait until etcd has accepted it.
pub(super) async fn open(
    client: &Client,
    start: Vec<u8>,
    end: Vec<u8>,
    after: Revision,
) -> Result<WatchStream> {
    // Revision 0 would mean "from now" to etcd, not "after revision -1".
    let from = after.saturating_add(1).max(1);
    let options = WatchOptions::new()
        .with_range(end)
        .with_start_revision(from)
        .with_prev_key();
    let inner = client
        .watch_client()
        .max_decoding_message_size(super::MAX_RESPONSE_BYTES)
        .watch(start, Some(options))
        .await
        .map_err(Error::etcd("watch"))?;

    let mut state = State {
        inner,
        pending: VecDeque::new(),
        done: false,
        requested: after,
    };
    // The first answer confirms the watch (or refuses it); an event-less
    // confirmation is simply consumed.
    match state.inner.message().await {
        Ok(Some(response)) => {
            if response.canceled() && response.compact_revision() == 0 {
                return Err(canceled(&response));
            }
            state.absorb(response);
        }
        Ok(None) => return Err(closed()),
        Err(e) => return Err(Error::etcd("watch")(e)),
    }
    Ok(Box::pin(stream::unfold(state, next)))
}

/// The revision etcd has compacted to, learnt from a watch from revision 1
/// that etcd cancels at once with it; `None` if etcd does not say in time
/// (nothing compacted, or etcd unreachable).
pub(super) async fn probe_compacted(client: &Client) -> Option<Revision> {
    let probe = async {
        let options = WatchOptions::new().with_start_revision(1);
        let mut watch = client
            .watch_client()
            .watch(b"\0".to_vec(), Some(options))
            .await
            .ok()?;
        loop {
            let response = watch.message().await.ok()??;
            if response.compact_revision() > 0 {
                return Some(response.compact_revision());
            }
            if response.canceled() {
                return None;
            }
        }
    };
    tokio::time::timeout(PROBE_TIMEOUT, probe)
        .await
        .ok()
        .flatten()
}

struct State {
    inner: etcd_client::WatchStream,
    /// Events (or the final error) decoded but not yet handed out: one etcd
    /// response can carry many events.
    pending: VecDeque<Result<WatchEvent>>,
    /// Set once the final item is queued; the stream then drains and ends.
    done: bool,
    /// The revision the caller asked to watch after, for `Compacted`.
    requested: Revision,
}

impl State {
    /// Queue what one etcd response says.
    fn absorb(&mut self, response: WatchResponse) {
        if response.compact_revision() > 0 {
            // etcd cancels a watch whose start revision was compacted away.
            self.finish(Error::Compacted {
                requested: self.requested,
                compacted: response.compact_revision(),
            });
            return;
        }
        self.pending
            .extend(response.events().iter().map(|event| Ok(watch_event(event))));
        if response.canceled() {
            self.finish(canceled(&response));
        }
    }

    fn finish(&mut self, err: Error) {
        self.pending.push_back(Err(err));
        self.done = true;
    }
}

async fn next(mut state: State) -> Option<(Result<WatchEvent>, State)> {
    loop {
        if let Some(item) = state.pending.pop_front() {
            return Some((item, state));
        }
        if state.done {
            return None;
        }
        match state.inner.message().await {
            Ok(Some(response)) => state.absorb(response),
            // A watch stream only ends when the member goes away (or we
            // cancel it, which we never do while the stream is alive).
            Ok(None) => state.finish(closed()),
            Err(e) => state.finish(Error::etcd("watch")(e)),
        }
    }
}

/// One etcd event as a store event. Deletes carry the deleted value and
/// its create revision (from `prev_kv`) at the delete's revision.
fn watch_event(event: &etcd_client::Event) -> WatchEvent {
    let prev = event.prev_kv().map(key_value);
    let current = event.kv().map(key_value).unwrap_or_else(|| KeyValue {
        key: String::new(),
        value: Vec::new(),
        create_revision: 0,
        mod_revision: 0,
    });
    let (kind, kv, prev) = match event.event_type() {
        EventType::Delete => {
            let (value, create_revision) = match &prev {
                Some(prev) => (prev.value.clone(), prev.create_revision),
                None => (Vec::new(), 0),
            };
            let kv = KeyValue {
                value,
                create_revision,
                ..current
            };
            (EventKind::Delete, kv, prev)
        }
        EventType::Put if current.create_revision == current.mod_revision => {
            (EventKind::Create, current, None)
        }
        EventType::Put => (EventKind::Update, current, prev),
    };
    WatchEvent {
        kind,
        kv: Arc::new(kv),
        prev: prev.map(Arc::new),
    }
}

fn canceled(response: &WatchResponse) -> Error {
    let reason = match response.cancel_reason() {
        "" => "no reason given",
        reason => reason,
    };
    Error::etcd("watch")(etcd_client::Error::WatchError(format!(
        "cancelled by etcd: {reason}"
    )))
}

fn closed() -> Error {
    Error::etcd("watch")(etcd_client::Error::WatchError(
        "etcd closed the watch stream".into(),
    ))
}
