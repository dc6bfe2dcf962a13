//! A container's environment: service variables, envFrom, then env with
//! `$(VAR)` expansion and valueFrom (fieldRef, resourceFieldRef,
//! configMapKeyRef, secretKeyRef).
//!
//! Upstream counterpart: `kubelet_pods.go` (`makeEnvironmentVariables`,
//! `podFieldSelectorRuntimeValue`), `pkg/kubelet/envvars` (service
//! variables) and `third_party/forked/golang/expansion`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, Service};

use crate::lookup::Lookup;
use crate::quantity;

/// The environment, in order, or the message of a
/// `CreateContainerConfigError`.
pub async fn resolve(
    pod: &Pod,
    c: &Container,
    lookup: &dyn Lookup,
    node: &NodeFacts,
) -> Result<Vec<(String, String)>, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let spec = pod.spec.as_ref().ok_or("pod has no spec")?;
    let mut out: Vec<(String, String)> = Vec::new();
    let mut services: Vec<Service> = Vec::new();
    if spec.enable_service_links != Some(false) {
        services.extend(lookup.services(ns).iter().map(|s| (**s).clone()));
    }
    // The master service's variables are always there (from `default`).
    if ns != "default" || spec.enable_service_links == Some(false) {
        services.extend(
            lookup
                .services("default")
                .iter()
                .filter(|s| s.metadata.name.as_deref() == Some("kubernetes"))
                .map(|s| (**s).clone()),
        );
    }
    for (k, v) in service_env(&services) {
        set(&mut out, k, v);
    }
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            let optional = r.optional == Some(true);
            match lookup.config_map(ns, &r.name).await? {
                Some(cm) => {
                    for (k, v) in cm.data.unwrap_or_default() {
                        set(&mut out, format!("{prefix}{k}"), v);
                    }
                }
                None if optional => {}
                None => return Err(format!("configmap \"{}\" not found", r.name)),
            }
        }
        if let Some(r) = &from.secret_ref {
            let optional = r.optional == Some(true);
            match lookup.secret(ns, &r.name).await? {
                Some(s) => {
                    for (k, v) in s.data.unwrap_or_default() {
                        set(
                            &mut out,
                            format!("{prefix}{k}"),
                            String::from_utf8_lossy(&v.0).into_owned(),
                        );
                    }
                    for (k, v) in s.string_data.unwrap_or_default() {
                        set(&mut out, format!("{prefix}{k}"), v);
                    }
                }
                None if optional => {}
                None => return Err(format!("secret \"{}\" not found", r.name)),
            }
        }
    }
    for e in c.env.iter().flatten() {
        let value = match (&e.value, &e.value_from) {
            (_, Some(_)) => match value_from(pod, c, e, lookup, node).await? {
                Some(v) => v,
                None => continue,
            },
            (Some(v), None) => expand(v, &out),
            (None, None) => String::new(),
        };
        set(&mut out, e.name.clone(), value);
    }
    Ok(out)
}

fn set(out: &mut Vec<(String, String)>, k: String, v: String) {
    match out.iter_mut().find(|(name, _)| *name == k) {
        Some(e) => e.1 = v,
        None => out.push((k, v)),
    }
}

/// What fieldRef and resourceFieldRef need from the node.
#[derive(Debug, Clone, Default)]
pub struct NodeFacts {
    pub host_ip: String,
    pub pod_ip: String,
    pub allocatable_milli_cpu: i64,
    pub allocatable_memory: i64,
    pub allocatable_ephemeral: i64,
}

async fn value_from(
    pod: &Pod,
    c: &Container,
    e: &EnvVar,
    lookup: &dyn Lookup,
    node: &NodeFacts,
) -> Result<Option<String>, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let from = e.value_from.as_ref().expect("checked by the caller");
    if let Some(f) = &from.field_ref {
        return field_value(pod, &f.field_path, node).map(Some);
    }
    if let Some(r) = &from.resource_field_ref {
        let target = match r.container_name.as_deref().filter(|n| !n.is_empty()) {
            Some(name) => all_containers(pod)
                .find(|x| x.name == name)
                .ok_or_else(|| format!("container {name} not found"))?,
            None => c,
        };
        let divisor = r.divisor.as_ref().map(|d| d.0.as_str()).unwrap_or("1");
        return resource_value(target, &r.resource, divisor, node).map(Some);
    }
    if let Some(r) = &from.config_map_key_ref {
        let optional = r.optional == Some(true);
        return match lookup.config_map(ns, &r.name).await? {
            Some(cm) => match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                Some(v) => Ok(Some(v.clone())),
                None if optional => Ok(None),
                None => Err(format!(
                    "couldn't find key {} in ConfigMap {ns}/{}",
                    r.key, r.name
                )),
            },
            None if optional => Ok(None),
            None => Err(format!("configmap \"{}\" not found", r.name)),
        };
    }
    if let Some(r) = &from.secret_key_ref {
        let optional = r.optional == Some(true);
        return match lookup.secret(ns, &r.name).await? {
            Some(s) => match s.data.as_ref().and_then(|d| d.get(&r.key)) {
                Some(v) => Ok(Some(String::from_utf8_lossy(&v.0).into_owned())),
                None if optional => Ok(None),
                None => Err(format!(
                    "couldn't find key {} in Secret {ns}/{}",
                    r.key, r.name
                )),
            },
            None if optional => Ok(None),
            None => Err(format!("secret \"{}\" not found", r.name)),
        };
    }
    Ok(Some(String::new()))
}

pub fn all_containers(pod: &Pod) -> impl Iterator<Item = &Container> {
    let spec = pod.spec.as_ref();
    spec.and_then(|s| s.init_containers.as_ref())
        .into_iter()
        .flatten()
        .chain(spec.map(|s| s.containers.iter()).into_iter().flatten())
}

/// The value of a downward-API field path.
pub fn field_value(pod: &Pod, path: &str, node: &NodeFacts) -> Result<String, String> {
    let m = &pod.metadata;
    let spec = pod.spec.as_ref();
    let subscript = |p: &str, prefix: &str| -> Option<String> {
        let rest = p.strip_prefix(prefix)?.strip_prefix("['")?;
        Some(rest.strip_suffix("']")?.to_string())
    };
    let v = match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(m.labels.as_ref()),
        "metadata.annotations" => format_map(m.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => node.host_ip.clone(),
        "status.podIP" | "status.podIPs" => node.pod_ip.clone(),
        p => {
            if let Some(k) = subscript(p, "metadata.labels") {
                m.labels
                    .as_ref()
                    .and_then(|l| l.get(&k))
                    .cloned()
                    .unwrap_or_default()
            } else if let Some(k) = subscript(p, "metadata.annotations") {
                m.annotations
                    .as_ref()
                    .and_then(|l| l.get(&k))
                    .cloned()
                    .unwrap_or_default()
            } else {
                return Err(format!("unsupported fieldPath: {p}"));
            }
        }
    };
    Ok(v)
}

/// `key="value"` lines, sorted by key (the downward API's map format).
pub fn format_map(m: Option<&BTreeMap<String, String>>) -> String {
    m.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `limits.cpu` etc. of a container divided by `divisor`, rounded up;
/// limits default to the node's allocatable, as upstream.
pub fn resource_value(
    c: &Container,
    resource: &str,
    divisor: &str,
    node: &NodeFacts,
) -> Result<String, String> {
    let res = c.resources.as_ref();
    let get = |limits: bool, name: &str| -> Option<String> {
        let m = if limits {
            res.and_then(|r| r.limits.as_ref())
        } else {
            res.and_then(|r| r.requests.as_ref())
        };
        m.and_then(|m| m.get(name)).map(|q| q.0.clone())
    };
    let (is_cpu, value) = match resource {
        "limits.cpu" => (
            true,
            get(true, "cpu")
                .and_then(|q| quantity::milli_cpu(&q))
                .unwrap_or(node.allocatable_milli_cpu),
        ),
        "requests.cpu" => (
            true,
            get(false, "cpu")
                .and_then(|q| quantity::milli_cpu(&q))
                .unwrap_or(0),
        ),
        "limits.memory" => (
            false,
            get(true, "memory")
                .and_then(|q| quantity::bytes(&q))
                .unwrap_or(node.allocatable_memory),
        ),
        "requests.memory" => (
            false,
            get(false, "memory")
                .and_then(|q| quantity::bytes(&q))
                .unwrap_or(0),
        ),
        "limits.ephemeral-storage" => (
            false,
            get(true, "ephemeral-storage")
                .and_then(|q| quantity::bytes(&q))
                .unwrap_or(node.allocatable_ephemeral),
        ),
        "requests.ephemeral-storage" => (
            false,
            get(false, "ephemeral-storage")
                .and_then(|q| quantity::bytes(&q))
                .unwrap_or(0),
        ),
        other => return Err(format!("unsupported container resource: {other}")),
    };
    let divisor = if is_cpu {
        quantity::milli_cpu(divisor)
    } else {
        quantity::bytes(divisor)
    }
    .filter(|d| *d > 0)
    .ok_or_else(|| format!("invalid divisor {divisor:?}"))?;
    // CPU requests round up to at least 1 as upstream does for
    // limits/requests.cpu with the default divisor.
    let mut v = (value + divisor - 1) / divisor;
    if is_cpu && v == 0 && value > 0 {
        v = 1;
    }
    Ok(v.to_string())
}

/// `$(VAR)` from earlier variables; `$$` escapes; unknown references stay
/// as written.
pub fn expand(s: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            if b[i + 1] == b'$' {
                out.push('$');
                i += 2;
                continue;
            }
            if b[i + 1] == b'(' {
                if let Some(end) = s[i + 2..].find(')') {
                    let name = &s[i + 2..i + 2 + end];
                    match env.iter().rev().find(|(k, _)| k == name) {
                        Some((_, v)) => out.push_str(v),
                        None => out.push_str(&s[i..i + 3 + end]),
                    }
                    i += 3 + end;
                    continue;
                }
            }
        }
        let ch = s[i..].chars().next().unwrap();
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// Docker-links style variables for Services with a cluster IP.
pub fn service_env(services: &[Service]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut sorted: Vec<&Service> = services.iter().collect();
    sorted.sort_by_key(|s| s.metadata.name.clone());
    for s in sorted {
        let Some(spec) = &s.spec else { continue };
        let ip = spec.cluster_ip.clone().unwrap_or_default();
        if ip.is_empty() || ip == "None" {
            continue;
        }
        let name = s
            .metadata
            .name
            .clone()
            .unwrap_or_default()
            .to_uppercase()
            .replace('-', "_");
        let ports = spec.ports.clone().unwrap_or_default();
        out.push((format!("{name}_SERVICE_HOST"), ip.clone()));
        if let Some(first) = ports.first() {
            out.push((format!("{name}_SERVICE_PORT"), first.port.to_string()));
        }
        for p in &ports {
            if let Some(pn) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.push((
                    format!(
                        "{name}_SERVICE_PORT_{}",
                        pn.to_uppercase().replace('-', "_")
                    ),
                    p.port.to_string(),
                ));
            }
        }
        if let Some(first) = ports.first() {
            let proto = first.protocol.clone().unwrap_or_else(|| "TCP".into());
            out.push((
                format!("{name}_PORT"),
                format!("{}://{ip}:{}", proto.to_lowercase(), first.port),
            ));
        }
        for p in &ports {
            let proto = p.protocol.clone().unwrap_or_else(|| "TCP".into());
            let prefix = format!("{name}_PORT_{}_{}", p.port, proto.to_uppercase());
            out.push((
                prefix.clone(),
                format!("{}://{ip}:{}", proto.to_lowercase(), p.port),
            ));
            out.push((format!("{prefix}_PROTO"), proto.to_lowercase()));
            out.push((format!("{prefix}_PORT"), p.port.to_string()));
            out.push((format!("{prefix}_ADDR"), ip.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn kv(v: &[(String, String)], k: &str) -> Option<String> {
        v.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn expansion() {
        let env = vec![("A".to_string(), "x".to_string())];
        assert_eq!(expand("$(A)-$(B)-$$(A)", &env), "x-$(B)-$(A)");
        assert_eq!(expand("plain $", &env), "plain $");
    }

    #[test]
    fn service_variables() {
        let svc = Service {
            metadata: kube::api::ObjectMeta {
                name: Some("my-svc".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some("10.43.0.5".into()),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = service_env(&[svc]);
        assert_eq!(kv(&v, "MY_SVC_SERVICE_HOST").unwrap(), "10.43.0.5");
        assert_eq!(kv(&v, "MY_SVC_SERVICE_PORT").unwrap(), "80");
        assert_eq!(kv(&v, "MY_SVC_SERVICE_PORT_HTTP").unwrap(), "80");
        assert_eq!(kv(&v, "MY_SVC_PORT").unwrap(), "tcp://10.43.0.5:80");
        assert_eq!(kv(&v, "MY_SVC_PORT_80_TCP_ADDR").unwrap(), "10.43.0.5");
    }

    #[test]
    fn resources_with_divisor() {
        let c = Container {
            name: "c".into(),
            resources: Some(k8s_openapi::api::core::v1::ResourceRequirements {
                limits: Some(
                    [
                        ("cpu".to_string(), Quantity("250m".into())),
                        ("memory".to_string(), Quantity("64Mi".into())),
                    ]
                    .into(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        };
        let node = NodeFacts {
            allocatable_milli_cpu: 2000,
            ..Default::default()
        };
        assert_eq!(resource_value(&c, "limits.cpu", "1", &node).unwrap(), "1");
        assert_eq!(
            resource_value(&c, "limits.cpu", "1m", &node).unwrap(),
            "250"
        );
        assert_eq!(
            resource_value(&c, "limits.memory", "1Mi", &node).unwrap(),
            "64"
        );
        assert_eq!(resource_value(&c, "requests.cpu", "1", &node).unwrap(), "0");
        assert!(resource_value(&c, "limits.gpu", "1", &node).is_err());
    }
}
