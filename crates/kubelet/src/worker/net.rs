//! The pod's network through the [`rkube_network::PodNetwork`] the agent
//! configured: attached once the sandbox (and its network namespace)
//! exists, detached before the sandbox goes.
//!
//! Upstream counterpart: `kuberuntime_sandbox.go` asking the CRI to run
//! the sandbox, whose network plugin (CNI ADD/DEL) gives the pod its IP.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;

use super::Worker;
use crate::events::Kind;
use crate::spec;

impl Worker {
    /// Gives the sandbox its address if it has none yet; `Some(retry)` on
    /// failure.
    pub(super) async fn attach_network(&mut self, pod: &Arc<Pod>) -> Option<Duration> {
        let net = self.shared.config.network.clone()?;
        if spec::host_network(pod) {
            return None;
        }
        let sb = self.sandbox.as_ref()?;
        if sb.ip.is_some() {
            return None;
        }
        let netns = sb.netns.clone()?;
        let (ns, name) = (
            pod.metadata.namespace.clone().unwrap_or_default(),
            pod.metadata.name.clone().unwrap_or_default(),
        );
        let uid = self.uid.clone();
        let r = tokio::task::spawn_blocking(move || {
            let pod = rkube_network::PodRef {
                namespace: &ns,
                name: &name,
                uid: &uid,
            };
            net.attach(&pod, &netns).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        match r {
            Ok(ips) => {
                let ip = ips.ips.first().map(|ip| ip.to_string())?;
                if let Some(sb) = self.sandbox.as_mut() {
                    sb.ip = Some(ip.clone());
                }
                // The sandbox's hosts file was written before the pod had
                // an address; upstream's names the pod IP with its
                // hostname (and FQDN with a subdomain).
                let hosts = spec::sandbox(pod, &self.dns(), Some(&ip)).hosts;
                let rt = self.shared.runtime.clone();
                let id = self.sandbox.as_ref().map(|s| s.id.clone())?;
                let r =
                    tokio::task::spawn_blocking(move || rt.set_sandbox_hosts(&id, &hosts)).await;
                if let Ok(Err(e)) = r {
                    tracing::warn!(uid = %self.uid, error = %e, "write the pod's /etc/hosts");
                }
                None
            }
            Err(e) => {
                self.event(
                    pod,
                    None,
                    Kind::Warning,
                    "FailedCreatePodSandBox",
                    format!("Failed to set up the pod network: {e}"),
                );
                Some(Duration::from_secs(2))
            }
        }
    }
}

impl Worker {
    /// After an agent restart re-adopted the sandbox: asks the network
    /// whether the pod's attachment is still as it was made (CNI CHECK).
    /// If not, a Warning event, and the attachment is released, so the
    /// sync that follows attaches the sandbox afresh (upstream leaves the
    /// reaction to the runtime; a pod whose interface or address went
    /// missing would otherwise stay cut off).
    pub(super) async fn check_network(&mut self) {
        let Some(net) = self.shared.config.network.clone() else {
            return;
        };
        let Some(pod) = self.rx.borrow().clone() else {
            return;
        };
        if spec::host_network(&pod) || self.sandbox.is_none() {
            return;
        }
        let (ns, name) = (
            pod.metadata.namespace.clone().unwrap_or_default(),
            pod.metadata.name.clone().unwrap_or_default(),
        );
        let uid = self.uid.clone();
        let r = tokio::task::spawn_blocking(move || {
            let pod = rkube_network::PodRef {
                namespace: &ns,
                name: &name,
                uid: &uid,
            };
            let checked = net.check(&pod);
            if checked.is_err() {
                if let Err(e) = net.detach(&pod) {
                    tracing::warn!(error = %e, "release a pod network that failed its check");
                }
            }
            checked
        })
        .await;
        match r {
            Ok(Ok(())) => tracing::debug!(uid = %self.uid, "pod network checked"),
            Ok(Err(e)) => self.event(
                &pod,
                None,
                Kind::Warning,
                "PodNetworkCheckFailed",
                format!("The pod network is not as it was set up ({e}); setting it up again"),
            ),
            Err(e) => tracing::warn!(uid = %self.uid, error = %e, "pod network check"),
        }
    }
}

/// Releases the pod's address and interfaces (idempotent).
pub(crate) async fn detach_network(shared: &crate::Shared, uid: &str) {
    let Some(net) = shared.config.network.clone() else {
        return;
    };
    let uid = uid.to_string();
    let r = tokio::task::spawn_blocking(move || {
        net.detach(&rkube_network::PodRef {
            namespace: "",
            name: "",
            uid: &uid,
        })
    })
    .await;
    if let Ok(Err(e)) = r {
        tracing::warn!(error = %e, "tear down the pod network");
    }
}
