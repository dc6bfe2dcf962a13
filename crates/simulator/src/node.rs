//! The simulated Node objects: what they say about themselves, their
//! registration, the periodic status report, and registering again when
//! someone deletes one.
//!
//! Upstream counterpart: the kubelet's `registerWithAPIServer`,
//! `initialNode` and the `setNodeStatus` setters
//! (`pkg/kubelet/kubelet_node_status.go`, `pkg/kubelet/nodestatus`):
//! conditions with their reasons and messages, addresses, nodeInfo,
//! daemonEndpoints, capacity and allocatable.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::json;

use crate::ipam::Cidr;
use crate::pod::status::RUNTIME;
use crate::Config;

/// Label every simulated node carries.
pub const SIMULATED_LABEL: &str = "rkube.io/simulated";
/// kubeletVersion: the server's version, as a real kubelet of the same
/// build would report.
pub const KUBELET_VERSION: &str = concat!("v1.33.0+rkube.", env!("CARGO_PKG_VERSION"));

/// Errors of node registration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("registering node {0}: {1}")]
    Register(String, #[source] kube::Error),
    #[error("updating status of node {0}: {1}")]
    Status(String, #[source] kube::Error),
}

/// One simulated node.
#[derive(Debug)]
pub struct SimNode {
    pub name: String,
    pub ip: Ipv4Addr,
    /// podCIDR: ours, or the one the node already had.
    pub cidr: Mutex<Cidr>,
    /// The Node's uid once registered (the Lease's owner).
    pub uid: Mutex<Option<String>>,
}

/// All simulated nodes, by index and by name.
#[derive(Debug)]
pub struct Nodes {
    pub list: Vec<SimNode>,
    by_name: HashMap<String, usize>,
}

impl Nodes {
    pub fn new(cfg: &Config) -> Nodes {
        let list: Vec<SimNode> = (0..cfg.count)
            .map(|i| SimNode {
                name: format!("{}-{i}", cfg.prefix),
                ip: Ipv4Addr::from(u32::from(cfg.node_ip_start).wrapping_add(i)),
                cidr: Mutex::new(cfg.pod_cidr.subnet(i as u64, cfg.node_cidr_prefix)),
                uid: Mutex::new(None),
            })
            .collect();
        let by_name = list
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
        Nodes { list, by_name }
    }

    pub fn index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }
}

/// The node's conditions at `now`, all healthy.
pub fn conditions(now: Timestamp, since: Timestamp) -> Vec<NodeCondition> {
    let c = |type_: &str, status: &str, reason: &str, message: &str| NodeCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(Time(now)),
        last_transition_time: Some(Time(since)),
    };
    vec![
        c(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        c(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
        ),
        c(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
        c(
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status",
        ),
    ]
}

/// The labels a kubelet puts on its node, plus the user's.
pub fn labels(cfg: &Config, name: &str) -> BTreeMap<String, String> {
    let mut l: BTreeMap<String, String> = [
        ("beta.kubernetes.io/arch", "amd64"),
        ("beta.kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
        ("kubernetes.io/hostname", name),
        ("kubernetes.io/os", "linux"),
        ("node.kubernetes.io/instance-type", "simulated"),
        (SIMULATED_LABEL, "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    l.extend(cfg.labels.clone());
    l
}

/// The status part a kubelet owns.
pub fn status(cfg: &Config, node: &SimNode, now: Timestamp) -> NodeStatus {
    let quantities: BTreeMap<String, Quantity> = cfg
        .capacity
        .iter()
        .map(|(k, v)| (k.clone(), Quantity(v.clone())))
        .collect();
    let id = format!("{:032x}", fnv(&node.name));
    NodeStatus {
        capacity: Some(quantities.clone()),
        allocatable: Some(quantities),
        conditions: Some(conditions(now, now)),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: node.ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: node.name.clone(),
            },
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port: 10250 }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: "amd64".into(),
            boot_id: id.clone(),
            container_runtime_version: format!("{RUNTIME}://{}", env!("CARGO_PKG_VERSION")),
            kernel_version: "simulated".into(),
            kube_proxy_version: String::new(),
            kubelet_version: KUBELET_VERSION.into(),
            machine_id: id.clone(),
            operating_system: "linux".into(),
            os_image: "rkube simulated node".into(),
            system_uuid: id,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A stable 128-bit id from a name (FNV-1a, twice), for machine IDs.
fn fnv(s: &str) -> u128 {
    let h = |seed: u64| {
        s.bytes()
            .fold(seed, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
    };
    ((h(0xcbf29ce484222325) as u128) << 64) | h(0x84222325cbf29ce4) as u128
}

/// The whole Node as first registered.
pub fn node_object(cfg: &Config, node: &SimNode, now: Timestamp) -> Node {
    let cidr = node.cidr.lock().unwrap().to_string();
    Node {
        metadata: ObjectMeta {
            name: Some(node.name.clone()),
            labels: Some(labels(cfg, &node.name)),
            annotations: Some(
                [("node.alpha.kubernetes.io/ttl".to_string(), "0".to_string())].into(),
            ),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: Some(cidr.clone()),
            pod_cidrs: Some(vec![cidr]),
            provider_id: Some(format!("{RUNTIME}://{}", node.name)),
            taints: (!cfg.taints.is_empty()).then(|| cfg.taints.clone()),
            ..Default::default()
        }),
        status: Some(status(cfg, node, now)),
    }
}

/// Registers one node; one that exists already gets our labels and
/// status, and we adopt its podCIDR.
pub async fn register(client: &kube::Client, cfg: &Config, node: &SimNode) -> Result<(), Error> {
    let api: Api<Node> = Api::all(client.clone());
    let err = |e| Error::Register(node.name.clone(), e);
    let obj = node_object(cfg, node, Timestamp::now());
    let created = match api.create(&PostParams::default(), &obj).await {
        Ok(n) => n,
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let patch = json!({"metadata": {"labels": labels(cfg, &node.name)}});
            api.patch(&node.name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map_err(err)?;
            let existing = api
                .patch_status(
                    &node.name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": obj.status})),
                )
                .await
                .map_err(err)?;
            let cidr = existing.spec.as_ref().and_then(|s| s.pod_cidr.as_deref());
            if let Some(c) = cidr.and_then(Cidr::parse) {
                *node.cidr.lock().unwrap() = c;
            }
            existing
        }
        Err(e) => return Err(err(e)),
    };
    *node.uid.lock().unwrap() = created.metadata.uid;
    Ok(())
}

/// Registers every node, a few at a time.
pub async fn register_all(client: &kube::Client, cfg: &Config, nodes: &Nodes) -> Result<(), Error> {
    futures::stream::iter(&nodes.list)
        .map(|n| register(client, cfg, n))
        .buffer_unordered(cfg.max_in_flight.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Posts fresh conditions for one node.
async fn report(client: &kube::Client, node: &SimNode, since: Timestamp) -> Result<(), Error> {
    let api: Api<Node> = Api::all(client.clone());
    let patch = json!({"status": {"conditions": conditions(Timestamp::now(), since)}});
    api.patch_status(&node.name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map_err(|e| Error::Status(node.name.clone(), e))?;
    Ok(())
}

/// Watches the simulated nodes: a deleted one is registered again, one
/// whose Ready condition someone else changed gets ours back; and every
/// `status_report_interval` each node reports its status.
pub async fn run(client: kube::Client, cfg: Arc<Config>, nodes: Arc<Nodes>) {
    let since = Timestamp::now();
    let reporter = {
        let (client, cfg, nodes) = (client.clone(), cfg.clone(), nodes.clone());
        async move {
            let mut tick = tokio::time::interval(cfg.status_report_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                futures::stream::iter(0..nodes.list.len())
                    .map(|i| {
                        let (client, nodes) = (client.clone(), nodes.clone());
                        async move { report(&client, &nodes.list[i], since).await }
                    })
                    .buffer_unordered(cfg.max_in_flight.max(1))
                    .for_each(|r| async {
                        if let Err(e) = r {
                            tracing::warn!(error = %e, "node status report failed");
                        }
                    })
                    .await;
            }
        }
    };
    let api: Api<Node> = Api::all(client.clone());
    let selector = format!("{SIMULATED_LABEL}=true");
    let events = watcher(api, watcher::Config::default().labels(&selector)).default_backoff();
    let watch = events.for_each(|ev| {
        let (client, cfg, nodes) = (client.clone(), cfg.clone(), nodes.clone());
        async move {
            let ev = match ev {
                Ok(ev) => ev,
                Err(e) => {
                    tracing::warn!(error = %e, "watching simulated nodes");
                    return;
                }
            };
            match ev {
                watcher::Event::Delete(n) => {
                    let Some(i) = nodes.index(&n.metadata.name.unwrap_or_default()) else {
                        return;
                    };
                    let node = &nodes.list[i];
                    tracing::info!(node = %node.name, "simulated node deleted, registering it again");
                    *node.uid.lock().unwrap() = None;
                    if let Err(e) = register(&client, &cfg, node).await {
                        tracing::warn!(error = %e, "registering deleted node again");
                    }
                }
                watcher::Event::Apply(n) | watcher::Event::InitApply(n) => {
                    let Some(i) = nodes.index(n.metadata.name.as_deref().unwrap_or_default()) else {
                        return;
                    };
                    let node = &nodes.list[i];
                    if n.metadata.deletion_timestamp.is_none() {
                        *node.uid.lock().unwrap() = n.metadata.uid.clone();
                    }
                    let ready = n
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                        .is_some_and(|c| c.status == "True");
                    if !ready {
                        if let Err(e) = report(&client, node, Timestamp::now()).await {
                            tracing::warn!(error = %e, "restoring node status");
                        }
                    }
                }
                _ => {}
            }
        }
    });
    tokio::join!(reporter, watch);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_object_is_what_a_kubelet_registers() {
        let mut cfg = Config::new("sim", 3);
        cfg.labels.insert("zone".into(), "a".into());
        let nodes = Nodes::new(&cfg);
        let n = node_object(&cfg, &nodes.list[2], Timestamp::UNIX_EPOCH);
        let v = serde_json::to_value(&n).unwrap();
        assert_eq!(v["metadata"]["name"], "sim-2");
        assert_eq!(v["metadata"]["labels"]["kubernetes.io/hostname"], "sim-2");
        assert_eq!(v["metadata"]["labels"]["zone"], "a");
        assert_eq!(v["spec"]["podCIDR"], "10.64.2.0/24");
        assert_eq!(v["status"]["addresses"][0]["address"], "172.16.0.4");
        assert_eq!(v["status"]["capacity"]["pods"], "110");
        assert_eq!(v["status"]["conditions"][3]["type"], "Ready");
        assert_eq!(v["status"]["conditions"][3]["status"], "True");
        assert_eq!(
            v["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"],
            10250
        );
        assert_eq!(v["status"]["nodeInfo"]["kubeletVersion"], KUBELET_VERSION);
        assert_eq!(nodes.index("sim-1"), Some(1));
        assert_eq!(nodes.index("other-1"), None);
    }
}

/// `key=value:Effect` or `key:Effect`, as `kubectl taint` writes them.
pub fn parse_taint(s: &str) -> Option<k8s_openapi::api::core::v1::Taint> {
    let (kv, effect) = s.trim().rsplit_once(':')?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return None;
    }
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (kv, None),
    };
    (!key.is_empty()).then(|| k8s_openapi::api::core::v1::Taint {
        key: key.into(),
        value,
        effect: effect.into(),
        time_added: None,
    })
}

#[cfg(test)]
mod taint_tests {
    use super::parse_taint;

    #[test]
    fn taints() {
        let t = parse_taint("rkube.io/simulated=true:NoSchedule").unwrap();
        assert_eq!(
            (t.key.as_str(), t.value.as_deref(), t.effect.as_str()),
            ("rkube.io/simulated", Some("true"), "NoSchedule")
        );
        assert_eq!(parse_taint("dedicated:NoExecute").unwrap().value, None);
        assert!(parse_taint("x=y:Sometimes").is_none());
        assert!(parse_taint("=y:NoSchedule").is_none());
    }
}
