//! Watches: history from the log, then live events from the writer.
//!
//! A watch subscribes to the writer's broadcast *before* reading history,
//! so nothing committed after the history snapshot can be missed; events
//! it has already delivered (revision ≤ the last one sent) are skipped, so
//! nothing is sent twice. A watcher that falls behind the broadcast buffer
//! goes back to reading the log from its last revision.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use rusqlite::{params, Connection};
use tokio::sync::{broadcast, mpsc};

use super::Shared;
use crate::{prefix_end, Error, EventKind, KeyValue, Result, Revision, WatchEvent, WatchStream};

const PAGE: i64 = 1000;

pub(super) fn start(shared: Arc<Shared>, prefix: &str, after: Revision) -> Result<WatchStream> {
    let (tx, rx) = mpsc::channel(256);
    let filter = Filter {
        lo: prefix.as_bytes().to_vec(),
        hi: prefix_end(prefix).unwrap_or_else(|| vec![0xff; 8]),
    };
    tokio::spawn(async move {
        if let Err(err) = run(shared, filter, after, &tx).await {
            let _ = tx.send(Err(err)).await;
        }
    });
    Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })))
}

struct Filter {
    lo: Vec<u8>,
    hi: Vec<u8>,
}

impl Filter {
    fn matches(&self, key: &str) -> bool {
        let k = key.as_bytes();
        k >= self.lo.as_slice() && k < self.hi.as_slice()
    }
}

type Sink = mpsc::Sender<Result<WatchEvent>>;

/// Deliver events until the receiver goes away (Ok) or the watch fails.
async fn run(shared: Arc<Shared>, filter: Filter, after: Revision, tx: &Sink) -> Result<()> {
    let compacted = shared.compacted.load(Ordering::Acquire);
    if after + 1 < compacted {
        return Err(Error::Compacted {
            requested: after + 1,
            compacted,
        });
    }
    let filter = Arc::new(filter);
    let mut last = after;
    loop {
        let Some(mut live) = shared.subscribe() else {
            return Err(Error::Closed);
        };
        // History up to a snapshot; loop while pages are full.
        loop {
            let (events, upto) = history(&shared, &filter, last).await?;
            let full = events.len() as i64 == PAGE;
            for event in events {
                last = event.revision();
                if tx.send(Ok(event)).await.is_err() {
                    return Ok(());
                }
            }
            if !full {
                last = last.max(upto);
                break;
            }
        }
        loop {
            let received = tokio::select! {
                received = live.recv() => received,
                // The stream was dropped: stop without waiting for an event.
                _ = tx.closed() => return Ok(()),
            };
            match received {
                Ok(batch) => {
                    for event in batch.iter() {
                        if event.revision() <= last {
                            continue;
                        }
                        last = event.revision();
                        if filter.matches(&event.kv.key)
                            && tx.send(Ok(event.clone())).await.is_err()
                        {
                            return Ok(());
                        }
                    }
                }
                // Fell behind the buffer: catch up from the log.
                Err(broadcast::error::RecvError::Lagged(_)) => break,
                Err(broadcast::error::RecvError::Closed) => return Err(Error::Closed),
            }
        }
    }
}

/// Up to one page of events after `after`, and the snapshot revision read.
async fn history(
    shared: &Arc<Shared>,
    filter: &Arc<Filter>,
    after: Revision,
) -> Result<(Vec<WatchEvent>, Revision)> {
    let shared = shared.clone();
    let filter = filter.clone();
    tokio::task::spawn_blocking(move || {
        shared.with_reader(|conn| {
            let out = read_page(conn, &filter, after);
            let _ = conn.execute_batch("COMMIT");
            let (events, upto) = out.map_err(Error::sqlite("watch"))?;
            // Compaction may have removed what we were about to read.
            let compacted = shared.compacted.load(Ordering::Acquire);
            if after + 1 < compacted {
                return Err(Error::Compacted {
                    requested: after + 1,
                    compacted,
                });
            }
            Ok((events, upto))
        })
    })
    .await
    .map_err(|e| Error::Unavailable(format!("sqlite watch task failed: {e}")))?
}

fn read_page(
    conn: &Connection,
    filter: &Filter,
    after: Revision,
) -> rusqlite::Result<(Vec<WatchEvent>, Revision)> {
    conn.execute_batch("BEGIN")?;
    let upto: Revision =
        conn.query_row("SELECT value FROM meta WHERE name = 'revision'", [], |r| {
            r.get(0)
        })?;
    let mut stmt = conn.prepare_cached(
        "SELECT l.rev, l.key, l.create_rev, l.deleted, l.value, p.rev, p.create_rev, p.value \
         FROM log l LEFT JOIN log p ON p.rev = l.prev_rev \
         WHERE l.rev > ?1 AND l.rev <= ?2 AND l.key >= ?3 AND l.key < ?4 ORDER BY l.rev LIMIT ?5",
    )?;
    let rows = stmt.query_map(params![after, upto, filter.lo, filter.hi, PAGE], |r| {
        let rev: Revision = r.get(0)?;
        let key: Vec<u8> = r.get(1)?;
        let key = String::from_utf8_lossy(&key).into_owned();
        let create_rev: Revision = r.get(2)?;
        let deleted: bool = r.get(3)?;
        let prev = match r.get::<_, Option<Revision>>(5)? {
            Some(prev_rev) => Some(KeyValue {
                key: key.clone(),
                mod_revision: prev_rev,
                create_revision: r.get(6)?,
                value: r.get(7)?,
            }),
            None => None,
        };
        let (kind, value) = if deleted {
            (
                EventKind::Delete,
                prev.as_ref().map(|p| p.value.clone()).unwrap_or_default(),
            )
        } else if prev.is_none() && create_rev == rev {
            (EventKind::Create, r.get(4)?)
        } else {
            (EventKind::Update, r.get(4)?)
        };
        let kv = KeyValue {
            key,
            value,
            create_revision: create_rev,
            mod_revision: rev,
        };
        Ok(WatchEvent {
            kind,
            kv: Arc::new(kv),
            prev: prev.map(Arc::new),
        })
    })?;
    let events = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok((events, upto))
}
