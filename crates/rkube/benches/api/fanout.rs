//! Watch fan-out latency: one writer, many watchers, and for every
//! (watcher, write) pair the delay from just before the write call to the
//! watcher holding the event.
//!
//! Upstream counterpart: the watch-latency SLI of Kubernetes' scalability
//! tests (clusterloader2 measures how long an object change takes to reach
//! watchers). Writes go one at a time: the next starts only when every
//! watcher has seen the previous one (or a deadline passed), so the number
//! is delivery latency rather than queueing behind a write burst.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

/// How long one write may take to reach every watcher before the rest
/// count as missed.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(10);

/// Shared between the writer and the watchers.
pub struct Fanout {
    sent: Vec<OnceLock<Instant>>,
    seen: mpsc::UnboundedSender<(usize, Duration)>,
}

impl Fanout {
    /// Watchers call this when they receive write `index`.
    pub fn seen(&self, index: usize) {
        if let Some(sent) = self.sent.get(index).and_then(OnceLock::get) {
            let _ = self.seen.send((index, sent.elapsed()));
        }
    }
}

/// What one fan-out run measured.
pub struct FanoutResult {
    /// One latency per (watcher, write) pair that arrived in time.
    pub latencies: Vec<Duration>,
    /// Pairs that did not arrive within the deadline.
    pub missed: usize,
}

/// Run `writes` writes through `write(index)`, each awaited and then
/// waited for until `watchers` watchers reported it via [`Fanout::seen`].
/// `start_watchers` gets the shared [`Fanout`] and must return only once
/// every watcher is registered.
pub async fn run<S, SF, W, WF>(
    watchers: usize,
    writes: usize,
    start_watchers: S,
    mut write: W,
) -> anyhow::Result<FanoutResult>
where
    S: FnOnce(Arc<Fanout>) -> SF,
    SF: Future<Output = anyhow::Result<()>>,
    W: FnMut(usize) -> WF,
    WF: Future<Output = anyhow::Result<()>>,
{
    let (tx, mut rx) = mpsc::unbounded_channel();
    let fanout = Arc::new(Fanout {
        sent: (0..writes).map(|_| OnceLock::new()).collect(),
        seen: tx,
    });
    start_watchers(fanout.clone()).await?;
    let mut latencies = Vec::with_capacity(watchers * writes);
    let mut missed = 0;
    for index in 0..writes {
        let _ = fanout.sent[index].set(Instant::now());
        write(index).await?;
        let deadline = tokio::time::Instant::now() + DELIVERY_DEADLINE;
        let mut got = 0;
        while got < watchers {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((i, latency))) if i == index => {
                    latencies.push(latency);
                    got += 1;
                }
                // A late delivery of an earlier write: already counted
                // as missed.
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        missed += watchers - got;
    }
    Ok(FanoutResult { latencies, missed })
}

/// The index in a name like `<prefix>00042` found in `text`.
pub fn index_after(text: &[u8], prefix: &[u8]) -> Option<usize> {
    let at = text.windows(prefix.len()).position(|w| w == prefix)? + prefix.len();
    let digits = text[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&text[at..at + digits])
        .ok()?
        .parse()
        .ok()
}
