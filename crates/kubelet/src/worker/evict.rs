//! A pod worker's side of eviction: refusing a new pod while the node is
//! under pressure, carrying out the eviction manager's request (stop the
//! containers at once, then phase Failed with reason Evicted), keeping
//! an evicted pod that way across agent restarts, and the pod's cgroup.
//!
//! Upstream counterpart: `kubelet.go`'s `rejectPod` (admission),
//! `eviction_manager.go`'s `evictPod` through the pod killer, and
//! `pod_container_manager_linux.go` (`EnsureExists`, `Destroy`).

use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::Worker;
use crate::events::Kind;
use crate::eviction::{mark_evicted, Evictions};

/// Why the pod is evicted, as its status will say.
#[derive(Debug, Clone)]
pub(super) struct Evicted {
    message: String,
    /// When the eviction manager decided (its DisruptionTarget
    /// condition's time); `None` for an admission refusal.
    at: Option<Time>,
}

/// Unregisters the worker from eviction requests when it ends.
pub(super) struct Registration {
    evictions: Arc<Evictions>,
    uid: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.evictions.unregister(&self.uid);
    }
}

impl Worker {
    pub(super) fn register_evictions(&self) -> Registration {
        self.shared.evictions.register(&self.uid, self.wake.clone());
        Registration {
            evictions: self.shared.evictions.clone(),
            uid: self.uid.clone(),
        }
    }

    /// Whether the pod is (now) evicted, so nothing may start.
    pub(super) async fn evicted(&mut self, pod: &Arc<Pod>) -> bool {
        if self.evicted.is_some() {
            return true;
        }
        let st = pod.status.as_ref();
        if st.and_then(|s| s.phase.as_deref()) == Some("Failed")
            && st.and_then(|s| s.reason.as_deref()) == Some("Evicted")
        {
            // Evicted before an agent restart.
            self.evicted = Some(Evicted {
                message: st.and_then(|s| s.message.clone()).unwrap_or_default(),
                at: st
                    .and_then(|s| s.conditions.as_ref())
                    .and_then(|c| c.iter().find(|c| c.type_ == "DisruptionTarget"))
                    .and_then(|c| c.last_transition_time.clone()),
            });
            return true;
        }
        if let Some((message, grace)) = self.shared.evictions.pending(&self.uid) {
            self.stop_all(pod, grace, true).await;
            self.evicted = Some(Evicted {
                message,
                at: Some(Time(k8s_openapi::jiff::Timestamp::now())),
            });
            self.shared.evictions.stopped(&self.uid);
            return true;
        }
        // Admission: only a pod that has not started here yet.
        let fresh = self.sandbox.is_none()
            && self.runs.is_empty()
            && matches!(st.and_then(|s| s.phase.as_deref()), None | Some("Pending"));
        if fresh {
            if let Err(message) = self.shared.evictions.admit(pod) {
                self.event(pod, None, Kind::Warning, "Evicted", message.clone());
                self.evicted = Some(Evicted { message, at: None });
                return true;
            }
        }
        false
    }

    /// The status the worker computed, as an evicted pod's when it is.
    pub(super) fn eviction_status(&self, status: &mut PodStatus) {
        if let Some(e) = &self.evicted {
            mark_evicted(status, &e.message, e.at.as_ref());
        }
    }

    /// Makes the pod's cgroup before its sandbox; the sandbox's
    /// containers then go below it. `None` without pod cgroups.
    pub(super) fn ensure_pod_cgroup(&self, pod: &Pod) -> Result<Option<PathBuf>, String> {
        let Some(cm) = &self.shared.cgroups else {
            return Ok(None);
        };
        cm.ensure_pod(pod).map(Some).map_err(|e| e.to_string())
    }
}

/// Removes a gone pod's cgroup (after its containers are removed).
pub(crate) fn remove_pod_cgroup(shared: &crate::Shared, uid: &str) {
    if let Some(cm) = &shared.cgroups {
        if let Err(e) = cm.remove_pod(uid) {
            tracing::warn!(%uid, error = %e, "cannot remove pod cgroup");
        }
    }
}
