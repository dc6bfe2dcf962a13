//! The pod network's part in the Node's Ready condition: while the
//! network cannot attach pods (CNI mode without a config), Ready is False
//! with the runtime's NetworkReady message, as a kubelet on containerd
//! reports it; a change of that state is written at once, not at the
//! next periodic status update, so a node turns Ready as soon as an
//! operator drops its CNI config in.
//!
//! Upstream counterpart: `pkg/kubelet/runtime.go` (runtimeState's
//! networkError, "container runtime network not ready: ...") and
//! `nodestatus/setters.go` ReadyCondition.

use std::time::Duration;

use k8s_openapi::api::core::v1::NodeCondition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::Reporter;

/// How often the network's readiness is looked at.
const POLL: Duration = Duration::from_secs(2);

/// Why the network keeps the node from Ready, worded as upstream; None
/// when it is ready (or the node has no pod network of ours).
pub(super) fn not_ready(net: Option<&dyn rkube_network::PodNetwork>) -> Option<String> {
    let e = net?.ready().err()?;
    Some(format!(
        "container runtime network not ready: NetworkReady=false \
         reason:NetworkPluginNotReady message:Network plugin returns error: {e}"
    ))
}

/// Turns the Ready condition False with `why` (keeping its transition
/// time when it was already False), as upstream's setter does when the
/// runtime reports an error.
pub(super) fn apply(
    conditions: &mut [NodeCondition],
    why: Option<&str>,
    prev: &[NodeCondition],
    now: &Time,
) {
    let Some(why) = why else {
        return;
    };
    let Some(ready) = conditions.iter_mut().find(|c| c.type_ == "Ready") else {
        return;
    };
    ready.status = "False".into();
    ready.reason = Some("KubeletNotReady".into());
    ready.message = Some(why.to_string());
    ready.last_transition_time = Some(
        prev.iter()
            .find(|c| c.type_ == "Ready" && c.status == "False")
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone()),
    );
}

impl Reporter {
    /// Writes the node status whenever the network's readiness changes.
    pub async fn network_loop(self) {
        let Some(net) = self.config.network.clone() else {
            return;
        };
        let mut last = not_ready(Some(net.as_ref()));
        loop {
            tokio::time::sleep(POLL).await;
            let now = not_ready(Some(net.as_ref()));
            if now == last {
                continue;
            }
            let m = self.host.machine(&self.config.root);
            match self.update_status(&m).await {
                Ok(()) => {
                    tracing::info!(ready = now.is_none(), "pod network readiness changed");
                    last = now;
                }
                Err(e) => tracing::warn!(error = %e, "node status update failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{conditions, Thresholds};
    use crate::sysinfo::Machine;
    use k8s_openapi::jiff::Timestamp;

    #[derive(Debug)]
    struct NoConfig;

    impl rkube_network::PodNetwork for NoConfig {
        fn attach(
            &self,
            _: &rkube_network::PodRef<'_>,
            _: &std::path::Path,
        ) -> Result<rkube_network::PodIps, rkube_network::Error> {
            Err(rkube_network::Error::NoPodCidr)
        }
        fn detach(&self, _: &rkube_network::PodRef<'_>) -> Result<(), rkube_network::Error> {
            Ok(())
        }
        fn ready(&self) -> Result<(), String> {
            Err("cni plugin not initialized".into())
        }
    }

    #[test]
    fn a_network_not_ready_makes_the_node_not_ready_with_upstreams_message() {
        let m = Machine {
            memory_bytes: 8 << 30,
            memory_available: 4 << 30,
            disk_bytes: 100,
            disk_available: 50,
            ..Default::default()
        };
        let t0 = Time(Timestamp::from_second(1000).unwrap());
        let t1 = Time(Timestamp::from_second(2000).unwrap());
        let why = not_ready(Some(&NoConfig));
        assert_eq!(
            why.as_deref(),
            Some(
                "container runtime network not ready: NetworkReady=false \
                 reason:NetworkPluginNotReady message:Network plugin returns error: \
                 cni plugin not initialized"
            )
        );
        assert_eq!(not_ready(None), None);

        let ready = conditions(&m, Thresholds::default(), &[], &t0);
        let mut first = conditions(&m, Thresholds::default(), &ready, &t1);
        apply(&mut first, why.as_deref(), &ready, &t1);
        let r = first.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(
            (r.status.as_str(), r.reason.as_deref()),
            ("False", Some("KubeletNotReady"))
        );
        assert_eq!(r.message, why);
        assert_eq!(r.last_transition_time, Some(t1.clone()));
        // Still not ready later: the transition time stays.
        let t2 = Time(Timestamp::from_second(3000).unwrap());
        let mut again = conditions(&m, Thresholds::default(), &first, &t2);
        apply(&mut again, why.as_deref(), &first, &t2);
        let r = again.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(r.last_transition_time, Some(t1.clone()));
        assert_eq!(r.last_heartbeat_time, Some(t2.clone()));
        // Ready again: True from now on.
        let mut back = conditions(&m, Thresholds::default(), &again, &t2);
        apply(&mut back, None, &again, &t2);
        let r = back.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(r.status, "True");
        assert_eq!(r.last_transition_time, Some(t2));
    }
}
