//! Image garbage collection: when the image filesystem fills past the high
//! threshold, images no container uses are removed, least recently used
//! first, until usage is back under the low threshold.
//!
//! Upstream counterpart: `pkg/kubelet/images/image_gc_manager.go`
//! (`ImageGCPolicy`: `--image-gc-high-threshold` 85,
//! `--image-gc-low-threshold` 80, `--minimum-image-ttl-duration` 2m; a
//! pass every 5 minutes). As upstream, an image counts as in use while
//! any container of the runtime (running or exited) was made from it,
//! "last used" is when a pass last saw it in use, and an image younger
//! than the minimum age since the kubelet first saw it is spared — a pod
//! about to start may have just pulled it. A high threshold of 100 turns
//! the periodic collection off. Under disk pressure the eviction manager
//! first removes every unused image old enough ([`Collector::delete_unused`],
//! upstream's `DeleteUnusedImages`) before it evicts a pod.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::images::ImageInfo;
use crate::Shared;

/// When to collect, as the upstream flags set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Percent of the image filesystem in use that starts a collection.
    pub high_percent: u8,
    /// Percent a collection frees down to.
    pub low_percent: u8,
    /// Images the kubelet has known for less than this are kept.
    pub min_age: Duration,
    /// How often usage is checked (upstream's fixed 5 minutes).
    pub period: Duration,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            high_percent: 85,
            low_percent: 80,
            min_age: Duration::from_secs(120),
            period: Duration::from_secs(300),
        }
    }
}

impl Policy {
    /// Checks the thresholds as upstream's kubelet does at start-up.
    pub fn validate(&self) -> Result<(), String> {
        if self.high_percent > 100 {
            return Err(format!(
                "invalid HighThresholdPercent {}, must be in range [0-100]",
                self.high_percent
            ));
        }
        if self.low_percent > 100 {
            return Err(format!(
                "invalid LowThresholdPercent {}, must be in range [0-100]",
                self.low_percent
            ));
        }
        if self.low_percent > self.high_percent {
            return Err(format!(
                "LowThresholdPercent {} can not be higher than HighThresholdPercent {}",
                self.low_percent, self.high_percent
            ));
        }
        Ok(())
    }
}

/// The image filesystem's size and free space, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub capacity: u64,
    pub available: u64,
}

impl Usage {
    fn percent_used(&self) -> u64 {
        if self.capacity == 0 {
            return 0;
        }
        let used = self.capacity.saturating_sub(self.available);
        (u128::from(used) * 100 / u128::from(self.capacity)) as u64
    }
}

/// What the collector remembers of an image between passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub first_seen: Instant,
    pub last_used: Instant,
}

/// The images to remove, in order, to bring `usage` under the low
/// threshold; empty while under the high one.
pub fn plan(
    policy: &Policy,
    usage: Usage,
    images: &[ImageInfo],
    in_use: &HashSet<String>,
    records: &HashMap<String, Record>,
    now: Instant,
) -> Vec<ImageInfo> {
    if policy.high_percent >= 100 || usage.percent_used() < u64::from(policy.high_percent) {
        return Vec::new();
    }
    let target_available = usage.capacity / 100 * (100 - u64::from(policy.low_percent));
    let mut to_free = target_available.saturating_sub(usage.available);
    let mut out = Vec::new();
    for image in unused(policy, images, in_use, records, now) {
        if to_free == 0 {
            break;
        }
        to_free = to_free.saturating_sub(image.size);
        out.push(image);
    }
    out
}

/// Every image no container uses and known for the minimum age, least
/// recently used first: the order images are removed in.
pub fn unused(
    policy: &Policy,
    images: &[ImageInfo],
    in_use: &HashSet<String>,
    records: &HashMap<String, Record>,
    now: Instant,
) -> Vec<ImageInfo> {
    let mut candidates: Vec<(&ImageInfo, Record)> = images
        .iter()
        .filter(|i| !in_use.contains(&i.id))
        .filter_map(|i| records.get(&i.id).map(|r| (i, *r)))
        .filter(|(_, r)| now.duration_since(r.first_seen) >= policy.min_age)
        .collect();
    candidates.sort_by_key(|(i, r)| (r.last_used, r.first_seen, i.name.clone()));
    candidates.into_iter().map(|(i, _)| i.clone()).collect()
}

/// Remembers when each image was first seen and last used; forgets
/// images that are gone.
pub fn observe(
    records: &mut HashMap<String, Record>,
    images: &[ImageInfo],
    in_use: &HashSet<String>,
    now: Instant,
) {
    let present: HashSet<&str> = images.iter().map(|i| i.id.as_str()).collect();
    records.retain(|id, _| present.contains(id.as_str()));
    for image in images {
        let r = records.entry(image.id.clone()).or_insert(Record {
            first_seen: now,
            last_used: now,
        });
        if in_use.contains(&image.id) {
            r.last_used = now;
        }
    }
}

/// The ids (`repo@digest`) of the images the runtime's containers use.
fn images_in_use(shared: &Shared) -> HashSet<String> {
    let containers = shared.runtime.list().unwrap_or_default();
    containers
        .iter()
        .filter_map(|c| shared.images.present(&c.image))
        .map(|i| i.id)
        .collect()
}

fn usage_of(path: &std::path::Path) -> Option<Usage> {
    let s = rustix::fs::statvfs(path).ok()?;
    Some(Usage {
        capacity: s.f_blocks * s.f_frsize,
        available: s.f_bavail * s.f_frsize,
    })
}

/// The collector: its policy and what it remembers of each image, shared
/// by its own loop and the eviction manager.
pub struct Collector {
    policy: Policy,
    records: Mutex<HashMap<String, Record>>,
    /// One pass at a time.
    pass: tokio::sync::Mutex<()>,
}

impl Collector {
    pub fn new(policy: Policy) -> Collector {
        Collector {
            policy,
            records: Mutex::default(),
            pass: tokio::sync::Mutex::new(()),
        }
    }

    /// Runs a pass every `policy.period` for the kubelet's life.
    pub async fn run(self: Arc<Self>, shared: Arc<Shared>) {
        if self.policy.high_percent >= 100 {
            return;
        }
        let imagefs = shared.config.root.join("images");
        let mut tick = tokio::time::interval(self.policy.period);
        loop {
            tick.tick().await;
            let Some(usage) = usage_of(&imagefs) else {
                continue;
            };
            self.collect(&shared, Some(usage)).await;
        }
    }

    /// Removes every unused image past the minimum age, whatever the
    /// usage; returns the bytes freed.
    pub async fn delete_unused(&self, shared: &Arc<Shared>) -> u64 {
        self.collect(shared, None).await
    }

    /// One pass: brings `usage` under the low threshold, or with `None`
    /// removes all it may. Returns the bytes freed.
    async fn collect(&self, shared: &Arc<Shared>, usage: Option<Usage>) -> u64 {
        let _one = self.pass.lock().await;
        let s = shared.clone();
        let images = s.images.list();
        let in_use = tokio::task::spawn_blocking(move || images_in_use(&s))
            .await
            .unwrap_or_default();
        let now = Instant::now();
        let doomed = {
            let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
            observe(&mut records, &images, &in_use, now);
            match usage {
                Some(u) => plan(&self.policy, u, &images, &in_use, &records, now),
                None => unused(&self.policy, &images, &in_use, &records, now),
            }
        };
        let mut freed = 0u64;
        let mut failed = Vec::new();
        for image in &doomed {
            match shared.images.remove(&image.name).await {
                Ok(()) => {
                    freed += image.size;
                    tracing::info!(image = %image.name, size = image.size, "image garbage-collected");
                }
                Err(e) => failed.push(format!("{}: {e}", image.name)),
            }
        }
        if !failed.is_empty() {
            let message = format!(
                "Failed to garbage collect required amount of images. Freed {freed} bytes; failures: {}",
                failed.join("; ")
            );
            tracing::warn!(%message, "image garbage collection");
            let node = k8s_openapi::api::core::v1::ObjectReference {
                kind: Some("Node".into()),
                name: Some(shared.config.node_name.clone()),
                // Upstream's kubelet names its node as the uid of node events.
                uid: Some(shared.config.node_name.clone()),
                ..Default::default()
            };
            shared
                .recorder
                .emit(node, crate::events::Kind::Warning, "ImageGCFailed", message);
        }
        freed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(name: &str, size: u64) -> ImageInfo {
        ImageInfo {
            name: name.into(),
            id: format!("{name}@sha256:{name}"),
            size,
        }
    }

    const GB: u64 = 1 << 30;

    #[test]
    fn frees_unused_images_least_recently_used_first_down_to_the_low_threshold() {
        let t0 = Instant::now();
        let policy = Policy::default();
        let (old, newer, busy, young) = (
            image("old", 6 * GB),
            image("newer", 4 * GB),
            image("busy", 5 * GB),
            image("young", 6 * GB),
        );
        let images = vec![newer.clone(), busy.clone(), old.clone(), young.clone()];
        let mut records = HashMap::new();
        let in_use: HashSet<String> = [busy.id.clone()].into();
        // All seen at t0; "newer" was last used later than "old".
        observe(&mut records, &images[..3], &in_use, t0);
        let t1 = t0 + Duration::from_secs(600);
        observe(
            &mut records,
            &images,
            &HashSet::from([newer.id.clone()]),
            t1,
        );
        let t2 = t1 + Duration::from_secs(60);
        observe(&mut records, &images, &in_use, t2);

        // 90% used of 100 GB: 10 GB must go to reach 80%.
        let full = Usage {
            capacity: 100 * GB,
            available: 10 * GB,
        };
        let names = |v: Vec<ImageInfo>| v.into_iter().map(|i| i.name).collect::<Vec<_>>();
        // "young" is only 60 s old (under the 2 min minimum age), "busy" in
        // use: "old" (least recently used) goes first, then "newer", which
        // together free the 10 GB.
        assert_eq!(
            names(plan(&policy, full, &images, &in_use, &records, t2)),
            ["old", "newer"]
        );
        // Under the high threshold (82% used): nothing.
        let nearly = Usage {
            capacity: 100 * GB,
            available: 18 * GB,
        };
        assert!(plan(&policy, nearly, &images, &in_use, &records, t2).is_empty());
        // 86% used, 6 GB to free: the least recently used one is enough.
        let over = Usage {
            capacity: 100 * GB,
            available: 14 * GB,
        };
        assert_eq!(
            names(plan(&policy, over, &images, &in_use, &records, t2)),
            ["old"]
        );
        // A threshold of 100 never collects.
        let off = Policy {
            high_percent: 100,
            ..policy
        };
        assert!(plan(&off, full, &images, &in_use, &records, t2).is_empty());
    }

    #[test]
    fn records_follow_the_images_present() {
        let t0 = Instant::now();
        let a = image("a", 1);
        let mut records = HashMap::new();
        observe(&mut records, std::slice::from_ref(&a), &HashSet::new(), t0);
        assert_eq!(records[&a.id].first_seen, t0);
        observe(&mut records, &[], &HashSet::new(), t0);
        assert!(records.is_empty(), "a removed image is forgotten");
    }

    #[test]
    fn thresholds_are_checked_as_upstream() {
        assert!(Policy::default().validate().is_ok());
        let bad = Policy {
            high_percent: 70,
            low_percent: 80,
            ..Policy::default()
        };
        assert_eq!(
            bad.validate().unwrap_err(),
            "LowThresholdPercent 80 can not be higher than HighThresholdPercent 70"
        );
    }
}
