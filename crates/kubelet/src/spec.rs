//! From the pod spec to what the runtime is asked for: the sandbox
//! (hostname, DNS per dnsPolicy, /etc/hosts, network mode) and each
//! container's process, security settings, resources and log path; and
//! the pod's QoS class.
//!
//! Upstream counterpart: `kuberuntime_sandbox.go`
//! (`generatePodSandboxConfig`), `kuberuntime_container_linux.go`
//! (resources), `pkg/kubelet/network/dns/dns.go` (resolv.conf),
//! `pkg/apis/core/v1/helper/qos` (QoS class).

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};
use rkube_containers::runtime::{
    Capabilities, ContainerConfig, DnsConfig, HostEntry, NetworkMode, Resources, SandboxConfig,
    UserSpec,
};

use crate::quantity;

/// Cluster DNS settings from the kubelet's flags.
#[derive(Debug, Clone)]
pub struct DnsSettings {
    pub servers: Vec<String>,
    pub domain: String,
}

pub fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

/// The pod's hostname: spec.hostname, else its name (at most 63 bytes).
pub fn hostname(pod: &Pod) -> String {
    let spec = pod.spec.as_ref();
    let mut h = spec
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default();
    h.truncate(63);
    h.trim_end_matches(['-', '.']).to_string()
}

/// resolv.conf per dnsPolicy; `None` means the node's own.
pub fn dns(pod: &Pod, settings: &DnsSettings) -> Option<DnsConfig> {
    let spec = pod.spec.as_ref()?;
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let cluster = match policy {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" => !host_network(pod),
        "Default" => false,
        "None" => {
            let c = spec.dns_config.clone().unwrap_or_default();
            return Some(DnsConfig {
                servers: c.nameservers.unwrap_or_default(),
                searches: c.searches.unwrap_or_default(),
                options: options(&c.options.unwrap_or_default()),
            });
        }
        _ => !host_network(pod),
    };
    if !cluster || settings.servers.is_empty() {
        return None;
    }
    let d = &settings.domain;
    let mut cfg = DnsConfig {
        servers: settings.servers.clone(),
        searches: vec![format!("{ns}.svc.{d}"), format!("svc.{d}"), d.clone()],
        options: vec!["ndots:5".into()],
    };
    if let Some(extra) = &spec.dns_config {
        cfg.servers
            .extend(extra.nameservers.clone().unwrap_or_default());
        cfg.searches
            .extend(extra.searches.clone().unwrap_or_default());
        for o in options(&extra.options.clone().unwrap_or_default()) {
            let key = o.split(':').next().unwrap_or(&o).to_string();
            cfg.options.retain(|x| x.split(':').next() != Some(&key));
            cfg.options.push(o);
        }
    }
    Some(cfg)
}

fn options(o: &[k8s_openapi::api::core::v1::PodDNSConfigOption]) -> Vec<String> {
    o.iter()
        .filter_map(|o| {
            let name = o.name.clone()?;
            Some(match &o.value {
                Some(v) => format!("{name}:{v}"),
                None => name,
            })
        })
        .collect()
}

pub fn sandbox(pod: &Pod, settings: &DnsSettings, pod_ip: Option<&str>) -> SandboxConfig {
    let spec = pod.spec.clone().unwrap_or_default();
    let hostname = hostname(pod);
    let mut hosts = Vec::new();
    if let Some(ip) = pod_ip.filter(|ip| !ip.is_empty()) {
        let mut names = Vec::new();
        if let Some(sub) = spec.subdomain.as_deref().filter(|s| !s.is_empty()) {
            let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
            names.push(format!("{hostname}.{sub}.{ns}.svc.{}", settings.domain));
        }
        names.push(hostname.clone());
        hosts.push(HostEntry {
            ip: ip.to_string(),
            names,
        });
    }
    for a in spec.host_aliases.iter().flatten() {
        hosts.push(HostEntry {
            ip: a.ip.clone(),
            names: a.hostnames.clone().unwrap_or_default(),
        });
    }
    SandboxConfig {
        name: pod.metadata.name.clone().unwrap_or_default(),
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        hostname,
        dns: dns(pod, settings),
        hosts,
        network: if host_network(pod) {
            NetworkMode::Host
        } else {
            NetworkMode::Pod
        },
        share_pid: spec.share_process_namespace == Some(true),
        // The worker puts the pod's cgroup here (crate::cm).
        cgroup_parent: None,
    }
}

/// `<logs>/<ns>_<name>_<uid>/<container>/<attempt>.log`, upstream's
/// /var/log/pods layout.
pub fn log_path(logs: &Path, pod: &Pod, container: &str, attempt: u32) -> PathBuf {
    logs.join(pod_log_dir_name(pod))
        .join(container)
        .join(format!("{attempt}.log"))
}

pub fn pod_log_dir_name(pod: &Pod) -> String {
    format!(
        "{}_{}_{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or(""),
        pod.metadata.uid.as_deref().unwrap_or("")
    )
}

/// The attempt number a log path was made for.
pub fn attempt_of(log: &Path) -> Option<u32> {
    log.file_stem()?.to_str()?.parse().ok()
}

fn quantity_of(c: &Container, limits: bool, name: &str) -> Option<String> {
    let r = c.resources.as_ref()?;
    let m = if limits {
        r.limits.as_ref()
    } else {
        r.requests.as_ref()
    };
    m?.get(name).map(|q| q.0.clone())
}

/// cgroup settings from requests and limits: shares from the CPU request
/// (a limit alone implies the same request), CFS quota from the CPU
/// limit, the memory limit as is.
pub fn resources(c: &Container) -> Resources {
    let cpu_limit = quantity_of(c, true, "cpu").and_then(|q| quantity::milli_cpu(&q));
    let cpu_request = quantity_of(c, false, "cpu")
        .and_then(|q| quantity::milli_cpu(&q))
        .or(cpu_limit);
    let shares = cpu_request.map_or(2, |m| ((m * 1024) / 1000).max(2) as u64);
    Resources {
        cpu_shares: Some(shares),
        cpu_quota: cpu_limit.map(|m| (m * 100).max(1000)),
        cpu_period: cpu_limit.map(|_| 100_000),
        memory_limit: quantity_of(c, true, "memory").and_then(|q| quantity::bytes(&q)),
        pids_limit: None,
    }
}

/// Guaranteed, Burstable or BestEffort.
pub fn qos_class(pod: &Pod) -> &'static str {
    let Some(spec) = &pod.spec else {
        return "BestEffort";
    };
    let all: Vec<&Container> = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &all {
        for res in ["cpu", "memory"] {
            let req = quantity_of(c, false, res);
            let lim = quantity_of(c, true, res);
            let zero = |q: &Option<String>| {
                q.as_deref()
                    .and_then(crate::quantity::bytes)
                    .is_none_or(|v| v == 0)
            };
            if !zero(&req) || !zero(&lim) {
                any = true;
            }
            // Requests default to limits, so a limit alone is enough.
            let req = req.or(lim.clone());
            match (&req, &lim) {
                (Some(r), Some(l)) if !zero(&lim) => {
                    let (r, l) = if res == "cpu" {
                        (quantity::milli_cpu(r), quantity::milli_cpu(l))
                    } else {
                        (quantity::bytes(r), quantity::bytes(l))
                    };
                    if r != l {
                        guaranteed = false;
                    }
                }
                _ => guaranteed = false,
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Everything about the container process except env, mounts and image
/// (the worker adds those).
pub fn container(pod: &Pod, c: &Container) -> ContainerConfig {
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.clone());
    let sc = c.security_context.clone().unwrap_or_default();
    let run_as_user = sc.run_as_user.or(psc.as_ref().and_then(|p| p.run_as_user));
    let run_as_group = sc
        .run_as_group
        .or(psc.as_ref().and_then(|p| p.run_as_group));
    let caps = sc.capabilities.clone().unwrap_or_default();
    ContainerConfig {
        name: c.name.clone(),
        command: c.command.clone().unwrap_or_default(),
        args: c.args.clone().unwrap_or_default(),
        working_dir: c.working_dir.clone().filter(|w| !w.is_empty()),
        user: UserSpec {
            user: run_as_user.map(|u| u.to_string()),
            group: run_as_group.map(|g| g as u32),
            supplemental_groups: psc
                .as_ref()
                .and_then(|p| p.supplemental_groups.clone())
                .unwrap_or_default()
                .into_iter()
                .chain(psc.as_ref().and_then(|p| p.fs_group))
                .map(|g| g as u32)
                .collect(),
        },
        capabilities: Capabilities {
            add: caps.add.unwrap_or_default(),
            drop: caps.drop.unwrap_or_default(),
        },
        privileged: sc.privileged == Some(true),
        no_new_privs: sc.allow_privilege_escalation == Some(false),
        read_only_rootfs: sc.read_only_root_filesystem == Some(true),
        resources: resources(c),
        log_max_size: 10 << 20,
        log_max_files: 5,
        tty: c.tty == Some(true),
        stdin: c.stdin == Some(true),
        stdin_once: c.stdin_once == Some(true),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn pod_with(containers: Vec<Container>) -> Pod {
        Pod {
            metadata: kube::api::ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns1".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn with_res(req: &[(&str, &str)], lim: &[(&str, &str)]) -> Container {
        let m = |v: &[(&str, &str)]| {
            (!v.is_empty()).then(|| {
                v.iter()
                    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                    .collect()
            })
        };
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: m(req),
                limits: m(lim),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn qos_classes() {
        assert_eq!(qos_class(&pod_with(vec![with_res(&[], &[])])), "BestEffort");
        assert_eq!(
            qos_class(&pod_with(vec![with_res(
                &[],
                &[("cpu", "1"), ("memory", "64Mi")]
            )])),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&pod_with(vec![with_res(&[("cpu", "100m")], &[])])),
            "Burstable"
        );
        assert_eq!(
            qos_class(&pod_with(vec![with_res(
                &[("cpu", "500m"), ("memory", "64Mi")],
                &[("cpu", "1"), ("memory", "64Mi")]
            )])),
            "Burstable"
        );
    }

    #[test]
    fn cgroup_values() {
        let r = resources(&with_res(
            &[("cpu", "250m")],
            &[("cpu", "500m"), ("memory", "64Mi")],
        ));
        assert_eq!(r.cpu_shares, Some(256));
        assert_eq!(r.cpu_quota, Some(50_000));
        assert_eq!(r.cpu_period, Some(100_000));
        assert_eq!(r.memory_limit, Some(64 << 20));
        assert_eq!(resources(&with_res(&[], &[])).cpu_shares, Some(2));
    }

    #[test]
    fn cluster_first_dns() {
        let settings = DnsSettings {
            servers: vec!["10.43.0.10".into()],
            domain: "cluster.local".into(),
        };
        let pod = pod_with(vec![]);
        let d = dns(&pod, &settings).unwrap();
        assert_eq!(d.servers, ["10.43.0.10"]);
        assert_eq!(
            d.searches,
            [
                "ns1.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local"
            ]
        );
        assert_eq!(d.options, ["ndots:5"]);
        let mut host = pod.clone();
        host.spec.as_mut().unwrap().host_network = Some(true);
        assert!(dns(&host, &settings).is_none());
        host.spec.as_mut().unwrap().dns_policy = Some("ClusterFirstWithHostNet".into());
        assert!(dns(&host, &settings).is_some());
    }

    #[test]
    fn log_paths() {
        let p = log_path(Path::new("/l"), &pod_with(vec![]), "c", 3);
        assert_eq!(p, Path::new("/l/ns1_web_u1/c/3.log"));
        assert_eq!(attempt_of(&p), Some(3));
    }
}
