//! Which fields a field selector may name, per resource, and their values.
//!
//! Upstream counterpart: the `AddFieldLabelConversionFunc` registrations
//! (`pkg/apis/*/v1/conversion.go`, which decide what is accepted and word
//! the error) and each strategy's `GetAttrs`/`ToSelectableFields` (which
//! give the values, e.g. booleans as `true`/`false`, counts as decimal).
//! Resources without their own list accept `metadata.name` and
//! `metadata.namespace` (`DefaultMetaV1FieldSelectorConversion`).

use rkube_api::catalog::ResourceInfo;
use serde_json::Value;

/// Where a field's value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// A string at a JSON pointer ("" when absent).
    Str(&'static str),
    /// A boolean at a JSON pointer, false when absent.
    Bool(&'static str),
    /// An integer at a JSON pointer, 0 when absent.
    Int(&'static str),
    /// The first pod IP (`status.podIPs[0].ip`).
    FirstPodIp,
    /// Accepted by the conversion but not a selectable field upstream:
    /// always "".
    Empty,
}

/// How an unsupported label is reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wording {
    /// `field label not supported: <label>`.
    NotSupported,
    /// `field label "<label>" not supported for "<Kind>"` (batch).
    NotSupportedFor,
    /// `"<label>" is not a known field selector: only "metadata.name", "metadata.namespace"`.
    Default,
}

struct Fields {
    fields: &'static [(&'static str, Source)],
    wording: Wording,
}

const NAME: (&str, Source) = ("metadata.name", Source::Str("/metadata/name"));
const NAMESPACE: (&str, Source) = ("metadata.namespace", Source::Str("/metadata/namespace"));

const POD: &[(&str, Source)] = &[
    NAME,
    NAMESPACE,
    ("spec.nodeName", Source::Str("/spec/nodeName")),
    // What old v1 clients sent for spec.nodeName.
    ("spec.host", Source::Str("/spec/nodeName")),
    ("spec.restartPolicy", Source::Str("/spec/restartPolicy")),
    ("spec.schedulerName", Source::Str("/spec/schedulerName")),
    (
        "spec.serviceAccountName",
        Source::Str("/spec/serviceAccountName"),
    ),
    ("spec.hostNetwork", Source::Bool("/spec/hostNetwork")),
    ("status.phase", Source::Str("/status/phase")),
    ("status.podIP", Source::FirstPodIp),
    ("status.podIPs", Source::Empty),
    (
        "status.nominatedNodeName",
        Source::Str("/status/nominatedNodeName"),
    ),
];

const EVENT: &[(&str, Source)] = &[
    NAME,
    NAMESPACE,
    ("involvedObject.kind", Source::Str("/involvedObject/kind")),
    (
        "involvedObject.namespace",
        Source::Str("/involvedObject/namespace"),
    ),
    ("involvedObject.name", Source::Str("/involvedObject/name")),
    ("involvedObject.uid", Source::Str("/involvedObject/uid")),
    (
        "involvedObject.apiVersion",
        Source::Str("/involvedObject/apiVersion"),
    ),
    (
        "involvedObject.resourceVersion",
        Source::Str("/involvedObject/resourceVersion"),
    ),
    (
        "involvedObject.fieldPath",
        Source::Str("/involvedObject/fieldPath"),
    ),
    ("reason", Source::Str("/reason")),
    ("reportingComponent", Source::Str("/reportingComponent")),
    ("source", Source::Str("/source/component")),
    ("type", Source::Str("/type")),
];

/// events.k8s.io/v1 Events answer the same (internal) labels, read from
/// where that version keeps them.
const EVENT_V1: &[(&str, Source)] = &[
    NAME,
    NAMESPACE,
    ("involvedObject.kind", Source::Str("/regarding/kind")),
    (
        "involvedObject.namespace",
        Source::Str("/regarding/namespace"),
    ),
    ("involvedObject.name", Source::Str("/regarding/name")),
    ("involvedObject.uid", Source::Str("/regarding/uid")),
    (
        "involvedObject.apiVersion",
        Source::Str("/regarding/apiVersion"),
    ),
    (
        "involvedObject.resourceVersion",
        Source::Str("/regarding/resourceVersion"),
    ),
    (
        "involvedObject.fieldPath",
        Source::Str("/regarding/fieldPath"),
    ),
    ("reason", Source::Str("/reason")),
    ("reportingComponent", Source::Str("/reportingController")),
    ("source", Source::Str("/deprecatedSource/component")),
    ("type", Source::Str("/type")),
];

fn table(info: &ResourceInfo) -> Fields {
    use Wording::*;
    let (fields, wording): (&'static [(&'static str, Source)], Wording) =
        match (info.group, info.plural) {
            ("", "pods") => (POD, NotSupported),
            ("", "nodes") => (
                &[
                    NAME,
                    ("spec.unschedulable", Source::Bool("/spec/unschedulable")),
                ],
                NotSupported,
            ),
            ("", "replicationcontrollers") | ("apps", "replicasets") => (
                &[
                    NAME,
                    NAMESPACE,
                    ("status.replicas", Source::Int("/status/replicas")),
                ],
                NotSupported,
            ),
            ("", "events") => (EVENT, NotSupported),
            ("events.k8s.io", "events") => (EVENT_V1, NotSupported),
            ("", "namespaces") => (
                &[NAME, ("status.phase", Source::Str("/status/phase"))],
                NotSupported,
            ),
            ("", "secrets") => (
                &[NAME, NAMESPACE, ("type", Source::Str("/type"))],
                NotSupported,
            ),
            ("", "services") => (
                &[
                    NAME,
                    NAMESPACE,
                    ("spec.clusterIP", Source::Str("/spec/clusterIP")),
                    ("spec.type", Source::Str("/spec/type")),
                ],
                NotSupported,
            ),
            ("batch", "jobs") => (
                &[
                    NAME,
                    NAMESPACE,
                    ("status.successful", Source::Int("/status/succeeded")),
                ],
                NotSupportedFor,
            ),
            // Accepted, but a CronJob has no such field to select on.
            ("batch", "cronjobs") => (
                &[NAME, NAMESPACE, ("status.successful", Source::Empty)],
                NotSupportedFor,
            ),
            ("certificates.k8s.io", "certificatesigningrequests") => (
                &[NAME, ("spec.signerName", Source::Str("/spec/signerName"))],
                NotSupported,
            ),
            _ => (&[NAME, NAMESPACE], Default),
        };
    Fields { fields, wording }
}

fn source(info: &ResourceInfo, label: &str) -> Option<Source> {
    table(info)
        .fields
        .iter()
        .find(|(l, _)| *l == label)
        .map(|(_, s)| *s)
}

/// Whether `label` may be selected on; the error is upstream's message.
pub fn check(info: &ResourceInfo, label: &str) -> Result<(), String> {
    let t = table(info);
    if t.fields.iter().any(|(l, _)| *l == label) {
        return Ok(());
    }
    Err(match t.wording {
        Wording::NotSupported => format!("field label not supported: {label}"),
        Wording::NotSupportedFor => {
            format!("field label {label:?} not supported for {:?}", info.kind)
        }
        Wording::Default => format!(
            "{label:?} is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        ),
    })
}

/// The value of `label` on `obj`, as upstream's selectable field set
/// renders it; `None` for a label the resource does not support.
pub fn value(info: &ResourceInfo, obj: &Value, label: &str) -> Option<String> {
    let text = |p: &str| {
        obj.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    Some(match source(info, label)? {
        Source::Str(p) => text(p),
        Source::Bool(p) => obj
            .pointer(p)
            .and_then(Value::as_bool)
            .unwrap_or(false)
            .to_string(),
        Source::Int(p) => obj
            .pointer(p)
            .and_then(Value::as_i64)
            .unwrap_or(0)
            .to_string(),
        Source::FirstPodIp => text("/status/podIPs/0/ip"),
        Source::Empty => String::new(),
    })
}

/// The JSON pointer [`value`] reads for `label` (the whole `podIPs` list
/// for `status.podIP`); `None` when it reads nothing or the label is not
/// supported. A filtered watch decodes only there (see `crate::project`).
pub fn reads(info: &ResourceInfo, label: &str) -> Option<&'static str> {
    match source(info, label)? {
        Source::Str(p) | Source::Bool(p) | Source::Int(p) => Some(p),
        Source::FirstPodIp => Some("/status/podIPs"),
        Source::Empty => None,
    }
}

/// For `label=value`, bytes every matching object's stored JSON contains:
/// a non-empty string field's value appears as a JSON string. Lets a list
/// skip objects without decoding them (the kubelet lists and watches its
/// pods by `spec.nodeName` among thousands). `None` when no such bytes
/// are certain (booleans, counts, defaults that are not stored).
pub fn needle(info: &ResourceInfo, label: &str, value: &str) -> Option<Vec<u8>> {
    if value.is_empty() {
        return None;
    }
    match source(info, label)? {
        Source::Str(_) | Source::FirstPodIp => {
            Some(serde_json::to_vec(value).expect("strings serialize"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rkube_api::catalog::lookup;
    use serde_json::json;

    #[test]
    fn unsupported_labels_are_worded_as_upstream() {
        let pods = lookup("", "v1", "pods").unwrap();
        assert_eq!(
            check(pods, "spec.foo").unwrap_err(),
            "field label not supported: spec.foo"
        );
        let jobs = lookup("batch", "v1", "jobs").unwrap();
        assert_eq!(
            check(jobs, "x").unwrap_err(),
            r#"field label "x" not supported for "Job""#
        );
        let cms = lookup("", "v1", "configmaps").unwrap();
        assert!(check(cms, "metadata.namespace").is_ok());
        assert_eq!(
            check(cms, "data.x").unwrap_err(),
            r#""data.x" is not a known field selector: only "metadata.name", "metadata.namespace""#
        );
        let nodes = lookup("", "v1", "nodes").unwrap();
        assert!(check(nodes, "metadata.namespace").is_err());
    }

    #[test]
    fn values_render_as_upstream() {
        let pods = lookup("", "v1", "pods").unwrap();
        let pod = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1"},
                         "status": {"podIPs": [{"ip": "10.0.0.1"}]}});
        assert_eq!(value(pods, &pod, "spec.host").unwrap(), "n1");
        assert_eq!(value(pods, &pod, "spec.hostNetwork").unwrap(), "false");
        assert_eq!(value(pods, &pod, "status.podIP").unwrap(), "10.0.0.1");
        assert_eq!(value(pods, &pod, "status.phase").unwrap(), "");
        assert!(value(pods, &pod, "spec.nope").is_none());
        let rs = lookup("apps", "v1", "replicasets").unwrap();
        assert_eq!(value(rs, &json!({}), "status.replicas").unwrap(), "0");
        let ev = lookup("events.k8s.io", "v1", "events").unwrap();
        let e = json!({"regarding": {"name": "web"}, "reportingController": "kubelet"});
        assert_eq!(value(ev, &e, "involvedObject.name").unwrap(), "web");
        assert_eq!(value(ev, &e, "reportingComponent").unwrap(), "kubelet");
    }

    #[test]
    fn reads_where_values_come_from() {
        let pods = lookup("", "v1", "pods").unwrap();
        let pod = json!({"spec": {"nodeName": "n1"}, "status": {"podIPs": [{"ip": "10.0.0.1"}]}});
        for label in ["spec.host", "status.podIP", "metadata.name"] {
            let reads = crate::project::Reads::new(reads(pods, label));
            let part = reads.decode(&serde_json::to_vec(&pod).unwrap()).unwrap();
            assert_eq!(
                value(pods, &part, label),
                value(pods, &pod, label),
                "{label}"
            );
        }
        assert_eq!(reads(pods, "status.podIPs"), None);
        assert_eq!(reads(pods, "spec.nope"), None);
    }

    #[test]
    fn needles_only_for_stored_strings() {
        let pods = lookup("", "v1", "pods").unwrap();
        assert_eq!(
            needle(pods, "spec.nodeName", "n\"1").unwrap(),
            br#""n\"1""#.to_vec()
        );
        assert!(needle(pods, "spec.nodeName", "").is_none());
        assert!(needle(pods, "spec.hostNetwork", "false").is_none());
    }
}
