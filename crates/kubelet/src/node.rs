//! The Node object: registration with capacity, allocatable, addresses,
//! nodeInfo, conditions and the kubelet endpoint; a status refresh now and
//! then; and the Lease in kube-node-lease renewed every 10 s (the
//! heartbeat the node lifecycle controller watches).
//!
//! Upstream counterpart: `kubelet_node_status.go` (registerWithAPIServer,
//! tryUpdateNodeStatus), `pkg/kubelet/nodestatus/setters.go`,
//! `pkg/kubelet/nodelease` (component-helpers' lease controller).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    ContainerImage, DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints,
    NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::env::NodeFacts;
use crate::images::Images;
use crate::sysinfo::{Host, Machine};
use crate::{Config, Error, KUBELET_VERSION};

mod network;

/// Hard eviction thresholds: memory.available and nodefs.available (as
/// a percentage of the filesystem), upstream's `--eviction-hard`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub memory: u64,
    pub disk_percent: u64,
}

impl Default for Thresholds {
    /// Upstream's defaults: memory.available<100Mi, nodefs.available<10%.
    fn default() -> Thresholds {
        Thresholds {
            memory: 100 << 20,
            disk_percent: 10,
        }
    }
}

impl Thresholds {
    /// Parses `memory.available<100Mi,nodefs.available<10%`; signals not
    /// given keep their defaults.
    pub fn parse(s: &str) -> Result<Thresholds, String> {
        let mut t = Thresholds::default();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (signal, value) = item
                .split_once('<')
                .ok_or_else(|| format!("eviction threshold {item:?}: expected SIGNAL<VALUE"))?;
            match signal.trim() {
                "memory.available" => {
                    t.memory = crate::quantity::bytes(value)
                        .filter(|v| *v >= 0)
                        .ok_or_else(|| format!("invalid quantity {value:?}"))?
                        as u64
                }
                "nodefs.available" => {
                    t.disk_percent = value
                        .trim()
                        .strip_suffix('%')
                        .and_then(|v| v.parse().ok())
                        .filter(|v| *v <= 100)
                        .ok_or_else(|| {
                            format!("nodefs.available wants a percentage, got {value:?}")
                        })?
                }
                other => return Err(format!("unsupported eviction signal {other:?}")),
            }
        }
        Ok(t)
    }
}

#[derive(Clone)]
pub struct Reporter {
    client: kube::Client,
    config: Config,
    host: Host,
    images: Arc<dyn Images>,
    /// The eviction manager's verdict on the pressure conditions.
    pressure: Option<tokio::sync::watch::Receiver<crate::eviction::Pressure>>,
}

fn quantities(
    m: &Machine,
    max_pods: u32,
    allocatable: Option<Thresholds>,
) -> BTreeMap<String, Quantity> {
    let mem = match allocatable {
        Some(t) => m.memory_bytes.saturating_sub(t.memory),
        None => m.memory_bytes,
    };
    let disk = if let Some(t) = allocatable {
        m.disk_bytes - m.disk_bytes * t.disk_percent / 100
    } else {
        m.disk_bytes
    };
    [
        ("cpu", m.cpus.to_string()),
        ("memory", format!("{}Ki", mem / 1024)),
        ("pods", max_pods.to_string()),
        ("ephemeral-storage", format!("{}Ki", disk / 1024)),
        ("hugepages-2Mi", "0".into()),
        ("hugepages-1Gi", "0".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Quantity(v)))
    .collect()
}

/// The four conditions from the machine's state; `prev` keeps
/// lastTransitionTime when a status did not change.
pub fn conditions(
    m: &Machine,
    t: Thresholds,
    prev: &[NodeCondition],
    now: &Time,
) -> Vec<NodeCondition> {
    let mem_pressure = m.memory_available > 0 && m.memory_available < t.memory;
    let disk_pressure = m.disk_bytes > 0 && m.disk_available * 100 < m.disk_bytes * t.disk_percent;
    let mk =
        |ty: &str, on: bool, reason_on: &str, reason_off: &str, msg_on: &str, msg_off: &str| {
            let status = if on { "True" } else { "False" };
            let transition = prev
                .iter()
                .find(|c| c.type_ == ty && c.status == status)
                .and_then(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            NodeCondition {
                type_: ty.to_string(),
                status: status.to_string(),
                reason: Some(if on { reason_on } else { reason_off }.to_string()),
                message: Some(if on { msg_on } else { msg_off }.to_string()),
                last_heartbeat_time: Some(now.clone()),
                last_transition_time: Some(transition),
            }
        };
    vec![
        mk(
            "MemoryPressure",
            mem_pressure,
            "KubeletHasInsufficientMemory",
            "KubeletHasSufficientMemory",
            "kubelet has insufficient memory available",
            "kubelet has sufficient memory available",
        ),
        mk(
            "DiskPressure",
            disk_pressure,
            "KubeletHasDiskPressure",
            "KubeletHasNoDiskPressure",
            "kubelet has disk pressure",
            "kubelet has no disk pressure",
        ),
        mk(
            "PIDPressure",
            false,
            "KubeletHasInsufficientPID",
            "KubeletHasSufficientPID",
            "kubelet has insufficient PID available",
            "kubelet has sufficient PID available",
        ),
        mk(
            "Ready",
            true,
            "KubeletReady",
            "KubeletNotReady",
            "kubelet is posting ready status",
            "kubelet is not ready",
        ),
    ]
}

impl Reporter {
    pub fn new(client: kube::Client, config: Config, host: Host, images: Arc<dyn Images>) -> Self {
        Reporter {
            client,
            config,
            host,
            images,
            pressure: None,
        }
    }

    /// Pressure conditions come from the eviction manager, and a change
    /// is reported at once.
    pub fn with_pressure(
        mut self,
        rx: tokio::sync::watch::Receiver<crate::eviction::Pressure>,
    ) -> Self {
        self.pressure = Some(rx);
        self
    }

    fn status(&self, m: &Machine, prev: &[NodeCondition]) -> NodeStatus {
        let now = Time(Timestamp::now());
        let c = &self.config;
        let mut images: Vec<ContainerImage> = self
            .images
            .list()
            .into_iter()
            .map(|i| ContainerImage {
                names: Some(vec![i.id, i.name]),
                size_bytes: Some(i.size as i64),
            })
            .collect();
        images.sort_by_key(|i| std::cmp::Reverse(i.size_bytes));
        images.truncate(50);
        NodeStatus {
            capacity: Some(quantities(m, c.max_pods, None)),
            allocatable: Some(quantities(m, c.max_pods, Some(c.eviction))),
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".into(),
                    address: c.node_ip.to_string(),
                },
                NodeAddress {
                    type_: "Hostname".into(),
                    address: c.hostname.clone(),
                },
            ]),
            conditions: Some({
                let mut all = conditions(m, c.eviction, prev, &now);
                let why = network::not_ready(c.network.as_deref());
                network::apply(&mut all, why.as_deref(), prev, &now);
                all
            }),
            daemon_endpoints: Some(NodeDaemonEndpoints {
                kubelet_endpoint: Some(DaemonEndpoint {
                    port: c.kubelet_port as i32,
                }),
            }),
            node_info: Some(NodeSystemInfo {
                architecture: "amd64".into(),
                boot_id: m.boot_id.clone(),
                container_runtime_version: format!("rkube://{}", env!("CARGO_PKG_VERSION")),
                kernel_version: m.kernel.clone(),
                kube_proxy_version: KUBELET_VERSION.into(),
                kubelet_version: KUBELET_VERSION.into(),
                machine_id: m.machine_id.clone(),
                operating_system: "linux".into(),
                os_image: m.os_image.clone(),
                system_uuid: m.machine_id.clone(),
                ..Default::default()
            }),
            images: Some(images),
            ..Default::default()
        }
    }

    fn facts(&self, m: &Machine) -> NodeFacts {
        NodeFacts {
            host_ip: self.config.node_ip.to_string(),
            pod_ip: String::new(),
            allocatable_milli_cpu: m.cpus as i64 * 1000,
            allocatable_memory: m.memory_bytes.saturating_sub(self.config.eviction.memory) as i64,
            allocatable_ephemeral: (m.disk_bytes
                - m.disk_bytes * self.config.eviction.disk_percent / 100)
                as i64,
        }
    }

    /// Creates the Node (or adopts an existing one of this name) and
    /// writes its status.
    pub async fn register(&self) -> Result<NodeFacts, Error> {
        let c = &self.config;
        let api: Api<Node> = Api::all(self.client.clone());
        let m = self.host.machine(&c.root);
        let mut labels = BTreeMap::from([
            ("kubernetes.io/hostname".to_string(), c.hostname.clone()),
            ("kubernetes.io/os".to_string(), "linux".to_string()),
            ("kubernetes.io/arch".to_string(), "amd64".to_string()),
            ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
            ("beta.kubernetes.io/arch".to_string(), "amd64".to_string()),
        ]);
        labels.extend(c.labels.clone());
        let err = |source| Error::Register {
            node: c.node_name.clone(),
            source,
        };
        let node = Node {
            metadata: ObjectMeta {
                name: Some(c.node_name.clone()),
                labels: Some(labels.clone()),
                annotations: Some(BTreeMap::from([(
                    "volumes.kubernetes.io/controller-managed-attach-detach".to_string(),
                    "true".to_string(),
                )])),
                ..Default::default()
            },
            ..Default::default()
        };
        let mut attempt = 0;
        loop {
            let r = match api.create(&PostParams::default(), &node).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    // Already registered (a restart): refresh our labels.
                    let patch = json!({"metadata": {"labels": labels}});
                    api.patch(&c.node_name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .map(|_| ())
                }
                Err(e) => Err(e),
            };
            match r {
                Ok(()) => break,
                Err(e) if attempt < 30 => {
                    tracing::warn!(error = %e, "node registration failed; retrying");
                    attempt += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(err(e)),
            }
        }
        self.update_status(&m).await.map_err(err)?;
        tracing::info!(node = %c.node_name, "node registered");
        Ok(self.facts(&m))
    }

    async fn update_status(&self, m: &Machine) -> Result<(), kube::Error> {
        let api: Api<Node> = Api::all(self.client.clone());
        let prev = api
            .get_status(&self.config.node_name)
            .await?
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default();
        let mut status = self.status(m, &prev);
        if let Some(rx) = &self.pressure {
            let pressure = *rx.borrow();
            let all = status.conditions.get_or_insert_with(Vec::new);
            crate::eviction::apply_pressure(all, pressure, &prev);
        }
        api.patch_status(
            &self.config.node_name,
            &PatchParams::default(),
            &Patch::Merge(&json!({ "status": status })),
        )
        .await?;
        Ok(())
    }

    /// Refreshes node status every `node_status_interval`.
    pub async fn status_loop(self) {
        let mut pressure = self.pressure.clone();
        loop {
            let sleep = tokio::time::sleep(self.config.node_status_interval);
            match pressure.as_mut() {
                Some(rx) => tokio::select! {
                    _ = sleep => {}
                    r = rx.changed() => if r.is_err() {
                        pressure = None;
                    },
                },
                None => sleep.await,
            }
            let m = self.host.machine(&self.config.root);
            if let Err(e) = self.update_status(&m).await {
                tracing::warn!(error = %e, "node status update failed");
            }
        }
    }

    /// Creates and renews `kube-node-lease/<node>`, owned by the Node so
    /// it goes away with it.
    pub async fn lease_loop(self) {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), "kube-node-lease");
        let nodes: Api<Node> = Api::all(self.client.clone());
        loop {
            if let Err(e) = self.renew(&leases, &nodes).await {
                tracing::warn!(error = %e, "lease renewal failed");
            }
            tokio::time::sleep(self.config.lease_renew_interval).await;
        }
    }

    async fn renew(&self, leases: &Api<Lease>, nodes: &Api<Node>) -> Result<(), kube::Error> {
        let name = &self.config.node_name;
        let now = MicroTime(Timestamp::now());
        let patch = json!({"spec": {"renewTime": now, "holderIdentity": name,
            "leaseDurationSeconds": self.config.lease_duration_seconds}});
        match leases
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e),
        }
        let node = nodes.get(name).await?;
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some("kube-node-lease".into()),
                owner_references: Some(vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: name.clone(),
                    uid: node.metadata.uid.unwrap_or_default(),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(name.clone()),
                lease_duration_seconds: Some(self.config.lease_duration_seconds),
                renew_time: Some(now),
                ..Default::default()
            }),
        };
        leases.create(&PostParams::default(), &lease).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_keep_transition_times() {
        let m = Machine {
            memory_bytes: 8 << 30,
            memory_available: 4 << 30,
            disk_bytes: 100,
            disk_available: 50,
            ..Default::default()
        };
        let t0 = Time(Timestamp::from_second(1000).unwrap());
        let th = Thresholds::default();
        let first = conditions(&m, th, &[], &t0);
        assert_eq!(first.len(), 4);
        assert!(first
            .iter()
            .all(|c| c.status == if c.type_ == "Ready" { "True" } else { "False" }));
        let t1 = Time(Timestamp::from_second(2000).unwrap());
        let again = conditions(&m, th, &first, &t1);
        assert!(again
            .iter()
            .all(|c| c.last_transition_time == Some(t0.clone())
                && c.last_heartbeat_time == Some(t1.clone())));
        let full = Machine {
            disk_available: 5,
            ..m
        };
        let pressured = conditions(&full, th, &again, &t1);
        let disk = pressured
            .iter()
            .find(|c| c.type_ == "DiskPressure")
            .unwrap();
        assert_eq!(disk.status, "True");
        assert_eq!(disk.last_transition_time, Some(t1.clone()));
        let lax = Thresholds::parse("nodefs.available<1%").unwrap();
        assert_eq!(lax.memory, 100 << 20);
        let relaxed = conditions(&full, lax, &pressured, &t1);
        let disk = relaxed.iter().find(|c| c.type_ == "DiskPressure").unwrap();
        assert_eq!(disk.status, "False");
    }

    #[test]
    fn eviction_thresholds_parse() {
        let t = Thresholds::parse("memory.available<1Gi, nodefs.available<5%").unwrap();
        assert_eq!(
            t,
            Thresholds {
                memory: 1 << 30,
                disk_percent: 5
            }
        );
        assert!(Thresholds::parse("nodefs.available<5Gi").is_err());
        assert!(Thresholds::parse("pid.available<5").is_err());
        assert!(Thresholds::parse("memory.available").is_err());
    }
}
