//! Ephemeral (debug) containers: started once each in the pod's sandbox
//! (with a target, in the target container's PID namespace), never
//! restarted, reported in status.ephemeralContainerStatuses.
//!
//! Upstream counterpart: the ephemeral-container part of
//! `computePodActions`/`SyncPod` in `kuberuntime_manager.go` (step 7:
//! "start ephemeral containers" once the sandbox and init containers
//! are done) and `convertToAPIContainerStatuses` for the status list.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, ContainerStatus, EphemeralContainer, Pod};
use rkube_containers::runtime::ContainerState;

use super::Worker;
use crate::status;

/// An ephemeral container as the container it is run as: the same
/// fields, minus what only names its target.
pub(crate) fn as_container(ec: &EphemeralContainer) -> Container {
    let mut v = serde_json::to_value(ec).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        m.remove("targetContainerName");
    }
    serde_json::from_value(v).unwrap_or_else(|_| Container {
        name: ec.name.clone(),
        image: ec.image.clone(),
        ..Default::default()
    })
}

fn ephemeral_of(pod: &Pod) -> &[EphemeralContainer] {
    pod.spec
        .as_ref()
        .and_then(|s| s.ephemeral_containers.as_deref())
        .unwrap_or(&[])
}

impl Worker {
    /// Starts each ephemeral container not started yet (one attempt,
    /// retried only while it could not be created); returns whether one
    /// runs, so exits are noticed soon.
    pub(super) async fn converge_ephemeral(&mut self, pod: &Arc<Pod>) -> bool {
        if self.sandbox.is_none() {
            return false;
        }
        let pod_ip = self.pod_ip(pod);
        let mut running = false;
        for ec in ephemeral_of(pod) {
            let c = as_container(ec);
            if let Some(a) = self.latest(&c.name).cloned() {
                running |= self
                    .container_status(&a.id)
                    .await
                    .is_some_and(|s| s.state == ContainerState::Running);
                continue;
            }
            self.pid_targets.insert(
                c.name.clone(),
                ec.target_container_name
                    .as_ref()
                    .and_then(|t| self.latest(t))
                    .map(|a| a.id.clone()),
            );
            // A failed start keeps its reason in `waiting` and is tried
            // again on the next pass; a started one is never restarted.
            self.start(pod, &c, &pod_ip).await;
            running |= self.latest(&c.name).is_some();
        }
        running
    }

    /// The runtime container whose PID namespace `name` joins, if any.
    pub(super) fn pid_target(&self, name: &str) -> Option<String> {
        self.pid_targets.get(name).cloned().flatten()
    }

    /// status.ephemeralContainerStatuses, in spec order.
    pub(super) async fn ephemeral_statuses(&self, pod: &Pod) -> Option<Vec<ContainerStatus>> {
        let list = ephemeral_of(pod);
        if list.is_empty() {
            return None;
        }
        let mut out = Vec::new();
        for ec in list {
            let mut v = self.container_view(&as_container(ec)).await;
            // Never probed, never ready (upstream reports ready=false).
            v.ready = false;
            let mut st = status::container_status(&v);
            st.restart_count = 0;
            out.push(st);
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ephemeral_container_keeps_its_fields() {
        let ec = EphemeralContainer {
            name: "dbg".into(),
            image: Some("busybox".into()),
            command: Some(vec!["sh".into()]),
            stdin: Some(true),
            tty: Some(true),
            target_container_name: Some("app".into()),
            ..Default::default()
        };
        let c = as_container(&ec);
        assert_eq!(c.name, "dbg");
        assert_eq!(c.image.as_deref(), Some("busybox"));
        assert_eq!(c.command, Some(vec!["sh".to_string()]));
        assert_eq!((c.stdin, c.tty), (Some(true), Some(true)));
    }
}
