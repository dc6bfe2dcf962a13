//! Automatic compaction: every `interval`, discard history older than the
//! newest `retain` revisions. The apiserver does the same for etcd (its
//! compactor runs every 5 minutes); kine keeps the last 1000 revisions.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::{Revision, Store};

/// How much history to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactionPolicy {
    /// How often to compact; `Duration::ZERO` turns compaction off.
    pub interval: Duration,
    /// How many of the newest revisions to keep readable.
    pub retain: Revision,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        CompactionPolicy {
            interval: Duration::from_secs(300),
            retain: 1000,
        }
    }
}

impl CompactionPolicy {
    /// The revision to compact to, given the current one; `None` when there
    /// is not yet more history than the policy keeps.
    pub fn target(&self, current: Revision, last_compacted: Revision) -> Option<Revision> {
        let target = current - self.retain;
        (target > last_compacted && target > 0).then_some(target)
    }
}

/// Run compaction in the background until the returned task is aborted.
pub fn spawn(store: Arc<dyn Store>, policy: CompactionPolicy) -> Option<JoinHandle<()>> {
    if policy.interval.is_zero() {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut last: Revision = 0;
        let mut tick = tokio::time::interval(policy.interval);
        tick.tick().await;
        loop {
            tick.tick().await;
            let current = match store.current_revision().await {
                Ok(rev) => rev,
                Err(err) => {
                    tracing::warn!(%err, "compaction: cannot read current revision");
                    continue;
                }
            };
            let Some(target) = policy.target(current, last) else {
                continue;
            };
            match store.compact(target).await {
                Ok(()) => {
                    tracing::debug!(revision = target, "compacted");
                    last = target;
                }
                Err(err) => tracing::warn!(%err, revision = target, "compaction failed"),
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_keeps_retained_revisions() {
        let p = CompactionPolicy {
            interval: Duration::from_secs(1),
            retain: 100,
        };
        assert_eq!(p.target(50, 0), None);
        assert_eq!(p.target(150, 0), Some(50));
        assert_eq!(p.target(150, 50), None);
        assert_eq!(p.target(151, 50), Some(51));
    }
}
