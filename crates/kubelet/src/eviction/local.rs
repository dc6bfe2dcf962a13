//! Per-pod local storage limits, enforced whether or not the node is
//! short of disk: a disk-backed emptyDir over its sizeLimit, a pod over
//! the sum of its containers' ephemeral-storage limits, a container
//! (writable layer plus logs) over its own limit. Memory-backed emptyDirs
//! are not measured here: their tmpfs is mounted with sizeLimit as size.
//!
//! Upstream counterpart: `eviction_manager.go` (`localStorageEviction`,
//! `emptyDirLimitEviction`, `podEphemeralStorageLimitEviction`,
//! `containerEphemeralStorageLimitEviction`) and the message formats in
//! `helpers.go`.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;

use super::threshold::format_quantity;

/// A pod's measured local storage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageUsage {
    /// Disk-backed emptyDir volumes by volume name, bytes.
    pub volumes: HashMap<String, i64>,
    /// Writable layer plus logs of each container, bytes.
    pub containers: HashMap<String, i64>,
}

impl StorageUsage {
    /// What counts against the pod's ephemeral-storage: its containers
    /// and its local ephemeral volumes.
    pub fn total(&self) -> i64 {
        self.volumes.values().sum::<i64>() + self.containers.values().sum::<i64>()
    }
}

fn storage_limit(c: &k8s_openapi::api::core::v1::Container) -> Option<(i64, &str)> {
    let q = c
        .resources
        .as_ref()?
        .limits
        .as_ref()?
        .get("ephemeral-storage")?;
    Some((crate::quantity::bytes(&q.0)?, q.0.as_str()))
}

fn binary(s: &str) -> bool {
    s.ends_with('i')
}

/// The first limit the pod breaks, as the eviction message upstream
/// writes for it; `None` when it keeps to all of them.
pub fn violation(pod: &Pod, usage: &StorageUsage) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    for v in spec.volumes.iter().flatten() {
        let Some(e) = &v.empty_dir else { continue };
        if e.medium.as_deref() == Some("Memory") {
            continue;
        }
        let Some(limit) = &e.size_limit else { continue };
        let Some(bytes) = crate::quantity::bytes(&limit.0).filter(|b| *b > 0) else {
            continue;
        };
        if usage.volumes.get(&v.name).is_some_and(|used| *used > bytes) {
            return Some(format!(
                "Usage of EmptyDir volume {:?} exceeds the limit {:?}. ",
                v.name, limit.0
            ));
        }
    }
    // The pod's limit: the sum over containers that state one (upstream's
    // PodLimits, which also takes the largest init container if more).
    let apps: Vec<(i64, &str)> = spec.containers.iter().filter_map(storage_limit).collect();
    let inits = spec
        .init_containers
        .iter()
        .flatten()
        .filter_map(storage_limit);
    if !apps.is_empty() || inits.clone().next().is_some() {
        let sum: i64 = apps.iter().map(|(b, _)| b).sum();
        let init_max = inits.clone().map(|(b, _)| b).max().unwrap_or(0);
        let limit = sum.max(init_max);
        let bin = apps
            .iter()
            .chain(inits.collect::<Vec<_>>().iter())
            .all(|(_, s)| binary(s));
        if usage.total() > limit {
            return Some(format!(
                "Pod ephemeral local storage usage exceeds the total limit of containers {}. ",
                format_quantity(limit, bin)
            ));
        }
    }
    for c in spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
    {
        let Some((bytes, text)) = storage_limit(c) else {
            continue;
        };
        if usage
            .containers
            .get(&c.name)
            .is_some_and(|used| *used > bytes)
        {
            return Some(format!(
                "Container {} exceeded its local ephemeral storage limit {:?}. ",
                c.name, text
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
    }

    fn usage(volumes: &[(&str, i64)], containers: &[(&str, i64)]) -> StorageUsage {
        StorageUsage {
            volumes: volumes.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            containers: containers
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
        }
    }

    #[test]
    fn empty_dir_over_its_size_limit() {
        let p = pod(json!({
            "containers": [{"name": "c"}],
            "volumes": [
                {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
                {"name": "scratch", "emptyDir": {"sizeLimit": "1Mi"}},
                {"name": "free", "emptyDir": {}}
            ]
        }));
        assert_eq!(violation(&p, &usage(&[("scratch", 1 << 20)], &[])), None);
        assert_eq!(
            violation(&p, &usage(&[("mem", 5 << 20), ("free", 9 << 30)], &[])),
            None
        );
        assert_eq!(
            violation(&p, &usage(&[("scratch", (1 << 20) + 4096)], &[])).as_deref(),
            Some("Usage of EmptyDir volume \"scratch\" exceeds the limit \"1Mi\". ")
        );
    }

    #[test]
    fn pod_total_then_container_limits() {
        let lim = |n: &str, l: &str| json!({"name": n, "resources": {"limits": {"ephemeral-storage": l}}});
        let p = pod(json!({"containers": [lim("a", "4Mi"), lim("b", "4Mi"), {"name": "c"}]}));
        // 8Mi in total: a container's own limit is checked after the pod's.
        assert_eq!(
            violation(&p, &usage(&[], &[("a", 3 << 20), ("c", 6 << 20)])).as_deref(),
            Some("Pod ephemeral local storage usage exceeds the total limit of containers 8Mi. ")
        );
        assert_eq!(
            violation(&p, &usage(&[], &[("a", 5 << 20), ("b", 1 << 20)])).as_deref(),
            Some("Container a exceeded its local ephemeral storage limit \"4Mi\". ")
        );
        assert_eq!(violation(&p, &usage(&[], &[("a", 4 << 20)])), None);
        let unlimited = pod(json!({"containers": [{"name": "c"}]}));
        assert_eq!(violation(&unlimited, &usage(&[], &[("c", 1 << 40)])), None);
        let decimal = pod(json!({"containers": [lim("a", "2M")]}));
        assert_eq!(
            violation(&decimal, &usage(&[("v", 3_000_000)], &[])).as_deref(),
            Some("Pod ephemeral local storage usage exceeds the total limit of containers 2M. ")
        );
    }
}
