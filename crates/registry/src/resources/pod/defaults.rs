//! Pod defaulting: what kube-apiserver fills in before a pod (or a pod
//! template inside a workload) is validated and stored.
//!
//! Upstream counterpart: `pkg/apis/core/v1/defaults.go` (`SetDefaults_Pod`,
//! `SetDefaults_PodSpec`, `SetDefaults_Container`, the probe, port, volume
//! and field-selector defaults) plus the v1 conversion that mirrors
//! `serviceAccountName` into the deprecated `serviceAccount`. The zero
//! structs Go always serializes (`resources: {}`, a template's
//! `creationTimestamp: null`) are added too, so clients see the same JSON.

use serde_json::{json, Map, Value};

use crate::resources::util::{child, default, default_str, items_mut, str_field};

/// Mode bits of projected, secret, configMap and downwardAPI files (0644).
pub const DEFAULT_MODE: i64 = 420;

/// Defaults shared by pods and pod templates (`SetDefaults_PodSpec` and
/// everything below it).
pub fn default_pod_spec(spec: &mut Map<String, Value>) {
    default_str(spec, "dnsPolicy", "ClusterFirst");
    default_str(spec, "restartPolicy", "Always");
    default(spec, "securityContext", json!({}));
    default(spec, "terminationGracePeriodSeconds", 30);
    default_str(spec, "schedulerName", "default-scheduler");
    // The v1 conversion keeps the deprecated field in step.
    let sa = str_field(spec, "serviceAccountName").to_string();
    if sa.is_empty() {
        let deprecated = str_field(spec, "serviceAccount").to_string();
        if !deprecated.is_empty() {
            spec.insert("serviceAccountName".into(), deprecated.into());
        }
    } else {
        spec.insert("serviceAccount".into(), sa.into());
    }
    for key in ["containers", "initContainers", "ephemeralContainers"] {
        for c in items_mut(spec, key) {
            default_container(c);
        }
    }
    for v in items_mut(spec, "volumes") {
        default_volume(v);
    }
}

/// Pod-only defaults (`SetDefaults_Pod`): requests default to limits,
/// service links are on, host-network pods publish their ports.
pub fn default_pod_only(spec: &mut Map<String, Value>) {
    for key in ["containers", "initContainers"] {
        for c in items_mut(spec, key) {
            let resources = child(c, "resources");
            let Some(limits) = resources.get("limits").and_then(Value::as_object).cloned() else {
                continue;
            };
            let requests = child(resources, "requests");
            for (name, q) in limits {
                requests.entry(name).or_insert(q);
            }
        }
    }
    default(spec, "enableServiceLinks", true);
    // Only pods, not templates (the DefaultHostNetworkHostPortsInPodTemplates
    // gate is off upstream).
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        for key in ["containers", "initContainers"] {
            for c in items_mut(spec, key) {
                default_host_network_ports(c);
            }
        }
    }
}

/// A pod template (`PodTemplateSpec`) inside a workload.
pub fn default_template(template: &mut Map<String, Value>) {
    // Go serializes the zero metav1.Time of a template as null.
    child(template, "metadata")
        .entry("creationTimestamp")
        .or_insert(Value::Null);
    default_pod_spec(child(template, "spec"));
}

fn default_host_network_ports(c: &mut Map<String, Value>) {
    for p in items_mut(c, "ports") {
        if p.get("hostPort").and_then(Value::as_i64).unwrap_or(0) == 0 {
            if let Some(port) = p.get("containerPort").cloned() {
                p.insert("hostPort".into(), port);
            }
        }
    }
}

fn default_container(c: &mut Map<String, Value>) {
    if !str_field(c, "image").is_empty() && str_field(c, "imagePullPolicy").is_empty() {
        let policy = if pulls_always(str_field(c, "image")) {
            "Always"
        } else {
            "IfNotPresent"
        };
        c.insert("imagePullPolicy".into(), policy.into());
    }
    default_str(c, "terminationMessagePath", "/dev/termination-log");
    default_str(c, "terminationMessagePolicy", "File");
    default(c, "resources", json!({}));
    for p in items_mut(c, "ports") {
        default_str(p, "protocol", "TCP");
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).and_then(Value::as_object_mut) {
            default(p, "timeoutSeconds", 1);
            default(p, "periodSeconds", 10);
            default(p, "successThreshold", 1);
            default(p, "failureThreshold", 3);
            default_handler(p);
        }
    }
    if let Some(lifecycle) = c.get_mut("lifecycle").and_then(Value::as_object_mut) {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = lifecycle.get_mut(hook).and_then(Value::as_object_mut) {
                default_handler(h);
            }
        }
    }
    for e in items_mut(c, "env") {
        if let Some(field_ref) = e
            .get_mut("valueFrom")
            .and_then(|v| v.get_mut("fieldRef"))
            .and_then(Value::as_object_mut)
        {
            default_str(field_ref, "apiVersion", "v1");
        }
    }
}

/// `SetDefaults_HTTPGetAction` on a probe or lifecycle handler.
fn default_handler(h: &mut Map<String, Value>) {
    if let Some(get) = h.get_mut("httpGet").and_then(Value::as_object_mut) {
        default_str(get, "path", "/");
        default_str(get, "scheme", "HTTP");
    }
}

/// Whether an image reference means "always pull": its tag is `latest`,
/// or it has neither tag nor digest (which means `latest`).
pub fn pulls_always(image: &str) -> bool {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    // A ':' after the last '/' starts the tag; before it, a registry port.
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.split_once(':') {
        Some((_, tag)) => tag == "latest",
        None => digest.is_none(),
    }
}

/// Every volume source a volume may name; a volume naming none of them is
/// an emptyDir (`SetDefaults_Volume`).
const VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "emptyDir",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
];

fn default_volume(v: &mut Map<String, Value>) {
    if !VOLUME_SOURCES
        .iter()
        .any(|s| v.get(*s).is_some_and(|x| !x.is_null()))
    {
        v.insert("emptyDir".into(), json!({}));
    }
    for source in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(s) = v.get_mut(source).and_then(Value::as_object_mut) {
            default(s, "defaultMode", DEFAULT_MODE);
        }
    }
    if let Some(h) = v.get_mut("hostPath").and_then(Value::as_object_mut) {
        default(h, "type", "");
    }
    if let Some(d) = v.get_mut("downwardAPI").and_then(Value::as_object_mut) {
        default_downward_items(d);
    }
    if let Some(p) = v.get_mut("projected").and_then(Value::as_object_mut) {
        for s in items_mut(p, "sources") {
            if let Some(d) = s.get_mut("downwardAPI").and_then(Value::as_object_mut) {
                default_downward_items(d);
            }
            if let Some(t) = s
                .get_mut("serviceAccountToken")
                .and_then(Value::as_object_mut)
            {
                default(t, "expirationSeconds", 3600);
            }
        }
    }
}

fn default_downward_items(d: &mut Map<String, Value>) {
    for item in items_mut(d, "items") {
        if let Some(f) = item.get_mut("fieldRef").and_then(Value::as_object_mut) {
            default_str(f, "apiVersion", "v1");
        }
    }
}
