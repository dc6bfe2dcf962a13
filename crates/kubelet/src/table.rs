//! The pods this kubelet runs as other parts of the agent see them (the
//! kubelet API on :10250): each worker publishes its pod, sandbox and
//! container attempts here after every pass.
//!
//! Upstream counterpart: the kubelet's pod manager (`pkg/kubelet/pod`)
//! together with the runtime cache the server's HostInterface reads.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::Pod;

/// One pod as published by its worker.
#[derive(Debug, Clone)]
pub struct Entry {
    pub pod: Arc<Pod>,
    /// `Some(None)`: a hostNetwork sandbox; `None`: no sandbox yet.
    pub netns: Option<Option<PathBuf>>,
    /// Runtime container ids of each spec container, oldest first.
    pub containers: HashMap<String, Vec<String>>,
    /// Why a container is not running, when the worker knows.
    pub waiting: HashMap<String, String>,
}

/// Pods by (namespace, name).
#[derive(Default)]
pub struct PodTable {
    inner: RwLock<HashMap<(String, String), Entry>>,
}

fn key(pod: &Pod) -> (String, String) {
    (
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

impl PodTable {
    pub fn publish(&self, entry: Entry) {
        let k = key(&entry.pod);
        self.inner.write().unwrap().insert(k, entry);
    }

    /// Removes the pod, unless a newer pod of the same name (another uid)
    /// took its place.
    pub fn remove(&self, pod: &Pod) {
        let k = key(pod);
        let mut inner = self.inner.write().unwrap();
        if inner
            .get(&k)
            .is_some_and(|e| e.pod.metadata.uid == pod.metadata.uid)
        {
            inner.remove(&k);
        }
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<Entry> {
        self.inner
            .read()
            .unwrap()
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    pub fn all(&self) -> Vec<Entry> {
        self.inner.read().unwrap().values().cloned().collect()
    }
}
