//! The HorizontalPodAutoscaler table, for both served versions.
//!
//! Upstream counterpart: printHorizontalPodAutoscaler and formatHPAMetrics
//! in pkg/printers/internalversion/printers.go. Upstream prints the internal
//! (v2-shaped) object; an autoscaling/v1 object converts to one CPU resource
//! metric, which is what the v1 row prints.

use super::super::{age, age_column, column, decode, doc, name, name_column, Column, Printer};
use k8s_openapi::api::autoscaling::{v1, v2};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

pub(in crate::table) static HPA: Printer = Printer {
    columns,
    row: |object, now| {
        if object.get("apiVersion").and_then(Value::as_str) == Some("autoscaling/v1") {
            v1_row(object, now)
        } else {
            v2_row(object, now)
        }
    },
};

fn columns() -> Vec<Column> {
    let spec = "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec";
    vec![
        name_column(),
        column("Reference", "string", doc(spec, "scaleTargetRef")),
        column("Targets", "string", doc(spec, "metrics")),
        column("MinPods", "string", doc(spec, "minReplicas")),
        column("MaxPods", "string", doc(spec, "maxReplicas")),
        column(
            "Replicas",
            "string",
            doc(
                "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus",
                "currentReplicas",
            ),
        ),
        age_column(),
    ]
}

/// Go's `(*Quantity).String()`, which prints `<nil>` for a nil pointer.
fn qty(q: Option<&Quantity>) -> String {
    q.map_or_else(|| "<nil>".to_owned(), |q| q.0.clone())
}

fn percent(p: Option<i32>, missing: &str) -> String {
    p.map_or_else(|| missing.to_owned(), |p| format!("{p}%"))
}

/// One metric as "current/target", e.g. `cpu: 40%/80%` or `5/10 (avg)`.
fn format_metric(spec: &v2::MetricSpec, status: Option<&v2::MetricStatus>) -> String {
    const UNKNOWN: &str = "<unknown>";
    match spec.type_.as_str() {
        "External" | "Object" => {
            let (target, current) = if spec.type_ == "External" {
                (
                    spec.external.as_ref().map(|e| &e.target),
                    status.and_then(|s| s.external.as_ref()).map(|e| &e.current),
                )
            } else {
                (
                    spec.object.as_ref().map(|o| &o.target),
                    status.and_then(|s| s.object.as_ref()).map(|o| &o.current),
                )
            };
            let Some(target) = target else {
                return "<unknown type>".to_owned();
            };
            if let Some(average) = &target.average_value {
                let current = current
                    .and_then(|c| c.average_value.as_ref())
                    .map_or_else(|| UNKNOWN.to_owned(), |q| q.0.clone());
                format!("{current}/{} (avg)", average.0)
            } else {
                let current = current.map_or_else(|| UNKNOWN.to_owned(), |c| qty(c.value.as_ref()));
                format!("{current}/{}", qty(target.value.as_ref()))
            }
        }
        "Pods" => {
            let Some(pods) = &spec.pods else {
                return "<unknown type>".to_owned();
            };
            let current = status.and_then(|s| s.pods.as_ref()).map_or_else(
                || UNKNOWN.to_owned(),
                |p| qty(p.current.average_value.as_ref()),
            );
            format!("{current}/{}", qty(pods.target.average_value.as_ref()))
        }
        "Resource" | "ContainerResource" => {
            let (resource, target, current) = if spec.type_ == "Resource" {
                let Some(r) = &spec.resource else {
                    return "<unknown type>".to_owned();
                };
                let current = status.and_then(|s| s.resource.as_ref()).map(|c| &c.current);
                (&r.name, &r.target, current)
            } else {
                let Some(r) = &spec.container_resource else {
                    return "<unknown type>".to_owned();
                };
                let current = status
                    .and_then(|s| s.container_resource.as_ref())
                    .map(|c| &c.current);
                (&r.name, &r.target, current)
            };
            if let Some(average) = &target.average_value {
                let current =
                    current.map_or_else(|| UNKNOWN.to_owned(), |c| qty(c.average_value.as_ref()));
                format!("{resource}: {current}/{}", average.0)
            } else {
                let current = percent(current.and_then(|c| c.average_utilization), UNKNOWN);
                format!(
                    "{resource}: {current}/{}",
                    percent(target.average_utilization, "<auto>")
                )
            }
        }
        _ => "<unknown type>".to_owned(),
    }
}

/// At most two metrics, then " + N more...".
pub(super) fn format_metrics(specs: &[v2::MetricSpec], statuses: &[v2::MetricStatus]) -> String {
    if specs.is_empty() {
        return "<none>".to_owned();
    }
    const MAX: usize = 2;
    let shown: Vec<String> = specs
        .iter()
        .take(MAX)
        .enumerate()
        .map(|(i, spec)| format_metric(spec, statuses.get(i)))
        .collect();
    let shown = shown.join(", ");
    if specs.len() > MAX {
        format!("{shown} + {} more...", specs.len() - MAX)
    } else {
        shown
    }
}

fn row_cells(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    reference: String,
    targets: String,
    min: Option<i32>,
    max: i32,
    current: i32,
    now: Timestamp,
) -> Vec<Value> {
    vec![
        name(meta),
        reference.into(),
        targets.into(),
        min.map_or_else(|| "<unset>".to_owned(), |m| m.to_string())
            .into(),
        max.into(),
        current.into(),
        age(meta, now),
    ]
}

fn v2_row(object: &Value, now: Timestamp) -> Result<Vec<Value>, super::TableError> {
    let hpa: v2::HorizontalPodAutoscaler = decode("HorizontalPodAutoscaler", object)?;
    let spec = hpa.spec.unwrap_or_default();
    let status = hpa.status.unwrap_or_default();
    let targets = format_metrics(
        spec.metrics.as_deref().unwrap_or_default(),
        status.current_metrics.as_deref().unwrap_or_default(),
    );
    let target = &spec.scale_target_ref;
    Ok(row_cells(
        &hpa.metadata,
        format!("{}/{}", target.kind, target.name),
        targets,
        spec.min_replicas,
        spec.max_replicas,
        status.current_replicas.unwrap_or(0),
        now,
    ))
}

fn v1_row(object: &Value, now: Timestamp) -> Result<Vec<Value>, super::TableError> {
    let hpa: v1::HorizontalPodAutoscaler = decode("HorizontalPodAutoscaler", object)?;
    let spec = hpa.spec.unwrap_or_default();
    let status = hpa.status.unwrap_or_default();
    let targets = match spec.target_cpu_utilization_percentage {
        Some(target) => format!(
            "cpu: {}/{target}%",
            percent(status.current_cpu_utilization_percentage, "<unknown>")
        ),
        None => "<none>".to_owned(),
    };
    let target = &spec.scale_target_ref;
    Ok(row_cells(
        &hpa.metadata,
        format!("{}/{}", target.kind, target.name),
        targets,
        spec.min_replicas,
        spec.max_replicas,
        status.current_replicas,
        now,
    ))
}
