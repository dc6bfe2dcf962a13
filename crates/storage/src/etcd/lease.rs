//! Leases for keys with a TTL, shared by writes close together in time.
//!
//! Upstream counterpart: the apiserver's etcd3 `leaseManager`. A lease per
//! write would make etcd track one lease per Event object; instead a lease
//! is granted for a little longer than asked (5% of the TTL, at most a
//! minute) and handed to every write with the same TTL while it still
//! outlives that write's TTL. A key then lives between its TTL and its TTL
//! plus that slack, which is what Kubernetes promises for Events.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The slack is this fraction of the TTL...
const SLACK_PERCENT: u64 = 5;
/// ...but never more than this.
const MAX_SLACK_SECONDS: u64 = 60;
/// How many keys one lease may carry; revoking or expiring a lease with very
/// many keys is one big etcd transaction.
const MAX_KEYS_PER_LEASE: u32 = 1000;

/// The lease last granted, if it can still be handed out.
#[derive(Default)]
pub(super) struct LeaseCache {
    current: Mutex<Option<Shared>>,
}

struct Shared {
    id: i64,
    /// The TTL (seconds) writes asked for when it was granted.
    ttl: u64,
    /// No later than the moment etcd lets it expire.
    expires: Instant,
    keys: u32,
}

/// What to do for a write with a TTL.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Plan {
    /// Attach the write to this existing lease.
    Reuse(i64),
    /// Grant a lease of `grant` seconds, then [`LeaseCache::granted`] it.
    Grant { ttl: u64, grant: u64 },
}

/// Whole seconds for a TTL: rounded up, at least one (etcd's granularity).
pub(super) fn ttl_seconds(ttl: Duration) -> u64 {
    (ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0)).max(1)
}

impl LeaseCache {
    /// Reuse the current lease for a write with `ttl` seconds, or say what
    /// to grant.
    pub(super) fn plan(&self, ttl: u64, now: Instant) -> Plan {
        let slack = (ttl * SLACK_PERCENT / 100).min(MAX_SLACK_SECONDS);
        if slack > 0 {
            let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(shared) = current.as_mut() {
                let outlives = now + Duration::from_secs(ttl) < shared.expires;
                if shared.ttl == ttl && outlives && shared.keys < MAX_KEYS_PER_LEASE {
                    shared.keys += 1;
                    return Plan::Reuse(shared.id);
                }
            }
        }
        Plan::Grant {
            ttl,
            grant: ttl + slack,
        }
    }

    /// Remember a lease granted after [`Plan::Grant`]; `asked_at` is when the
    /// grant was requested, so the recorded expiry errs early.
    pub(super) fn granted(&self, id: i64, ttl: u64, grant: u64, asked_at: Instant) {
        if grant == ttl {
            // No slack: a lease that cannot outlive a second write's TTL is
            // not worth remembering.
            return;
        }
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        *current = Some(Shared {
            id,
            ttl,
            expires: asked_at + Duration::from_secs(grant),
            keys: 1,
        });
    }

    /// Stop handing out `id` (etcd no longer knows it, e.g. it was revoked).
    pub(super) fn forget(&self, id: i64) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.as_ref().is_some_and(|shared| shared.id == id) {
            *current = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_rounds_up_to_whole_seconds() {
        assert_eq!(ttl_seconds(Duration::ZERO), 1);
        assert_eq!(ttl_seconds(Duration::from_millis(300)), 1);
        assert_eq!(ttl_seconds(Duration::from_secs(2)), 2);
        assert_eq!(ttl_seconds(Duration::from_millis(2001)), 3);
    }

    #[test]
    fn short_ttls_never_share() {
        let cache = LeaseCache::default();
        let now = Instant::now();
        assert_eq!(cache.plan(10, now), Plan::Grant { ttl: 10, grant: 10 });
        cache.granted(1, 10, 10, now);
        assert_eq!(cache.plan(10, now), Plan::Grant { ttl: 10, grant: 10 });
    }

    #[test]
    fn a_lease_is_shared_while_it_outlives_the_ttl() {
        let cache = LeaseCache::default();
        let now = Instant::now();
        // One hour (an Event's TTL): a minute of slack.
        assert_eq!(
            cache.plan(3600, now),
            Plan::Grant {
                ttl: 3600,
                grant: 3660
            }
        );
        cache.granted(7, 3600, 3660, now);
        assert_eq!(
            cache.plan(3600, now + Duration::from_secs(59)),
            Plan::Reuse(7)
        );
        // A different TTL does not share it.
        assert_eq!(
            cache.plan(1800, now),
            Plan::Grant {
                ttl: 1800,
                grant: 1860
            }
        );
        // Past the slack, the lease would expire before the new key's TTL.
        assert_eq!(
            cache.plan(3600, now + Duration::from_secs(60)),
            Plan::Grant {
                ttl: 3600,
                grant: 3660
            }
        );
    }

    #[test]
    fn a_lease_carries_a_bounded_number_of_keys() {
        let cache = LeaseCache::default();
        let now = Instant::now();
        cache.granted(7, 100, 105, now);
        for _ in 1..MAX_KEYS_PER_LEASE {
            assert_eq!(cache.plan(100, now), Plan::Reuse(7));
        }
        assert!(matches!(cache.plan(100, now), Plan::Grant { .. }));
    }

    #[test]
    fn a_forgotten_lease_is_not_reused() {
        let cache = LeaseCache::default();
        let now = Instant::now();
        cache.granted(7, 100, 105, now);
        cache.forget(8);
        assert_eq!(cache.plan(100, now), Plan::Reuse(7));
        cache.forget(7);
        assert!(matches!(cache.plan(100, now), Plan::Grant { .. }));
    }
}
