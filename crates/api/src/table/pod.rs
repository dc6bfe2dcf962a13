//! The pod table: READY, STATUS, RESTARTS as kubectl users know them.
//!
//! Upstream counterpart: printPod in pkg/printers/internalversion/printers.go.
//! STATUS is the pod's phase or reason, overridden by the first init
//! container still in progress ("Init:0/2", "Init:CrashLoopBackOff") and then
//! by the last regular container with a waiting or terminated reason
//! ("CrashLoopBackOff", "Completed", "ExitCode:1"); a pod being deleted reads
//! "Terminating". RESTARTS adds "(2m ago)" from the latest termination.

use super::{
    age, column, decode, doc, human_duration, name, name_column, wide, Column, Printer, TableError,
};
use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod, PodCondition};
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

const POD_STATUS: &str = "io.k8s.api.core.v1.PodStatus";
const POD_SPEC: &str = "io.k8s.api.core.v1.PodSpec";

/// The reason the node lifecycle controller sets on pods of a lost node.
const NODE_LOST: &str = "NodeLost";

pub(super) fn printer(group: &str, kind: &str) -> Option<&'static Printer> {
    (group.is_empty() && kind == "Pod").then_some(&POD)
}

static POD: Printer = Printer {
    columns: pod_columns,
    row: pod_row,
};

fn pod_columns() -> Vec<Column> {
    vec![
        name_column(),
        column(
            "Ready",
            "string",
            "The aggregate readiness state of this pod for accepting traffic.",
        ),
        column(
            "Status",
            "string",
            "The aggregate status of the containers in this pod.",
        ),
        column(
            "Restarts",
            "string",
            "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
        ),
        super::age_column(),
        wide(column("IP", "string", doc(POD_STATUS, "podIP"))),
        wide(column("Node", "string", doc(POD_SPEC, "nodeName"))),
        wide(column("Nominated Node", "string", doc(POD_STATUS, "nominatedNodeName"))),
        wide(column("Readiness Gates", "string", doc(POD_SPEC, "readinessGates"))),
    ]
}

/// `Completed` for pods in a terminal phase, as printPod sets on the row.
pub(super) fn row_conditions(object: &Value) -> Vec<Value> {
    let phase = object
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let message = match phase {
        "Succeeded" => "The pod has completed successfully.",
        "Failed" => "The pod failed.",
        _ => return Vec::new(),
    };
    vec![serde_json::json!({
        "type": "Completed",
        "status": "True",
        "reason": phase,
        "message": message,
    })]
}

fn is_restartable(container: Option<&Container>) -> bool {
    container.and_then(|c| c.restart_policy.as_deref()) == Some("Always")
}

fn condition_true(conditions: &[PodCondition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

/// The later of `latest` and the time `status` last terminated.
fn later_termination(latest: Option<Timestamp>, status: &ContainerStatus) -> Option<Timestamp> {
    let finished = status
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .and_then(|t| t.finished_at.as_ref())
        .map(|t| t.0);
    match (latest, finished) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn pod_row(object: &Value, now: Timestamp) -> Result<Vec<Value>, TableError> {
    let pod: Pod = decode("Pod", object)?;
    let spec = pod.spec.unwrap_or_default();
    let status = pod.status.unwrap_or_default();
    let conditions = status.conditions.as_deref().unwrap_or_default();
    let init_specs = spec.init_containers.as_deref().unwrap_or_default();
    let init_spec = |name: &str| init_specs.iter().find(|c| c.name == name);

    let phase = status.phase.clone().unwrap_or_default();
    let mut reason = match status.reason.as_deref() {
        Some(r) if !r.is_empty() => r.to_owned(),
        _ => phase.clone(),
    };
    if conditions
        .iter()
        .any(|c| c.type_ == "PodScheduled" && c.reason.as_deref() == Some("SchedulingGated"))
    {
        reason = "SchedulingGated".to_owned();
    }

    let total = spec.containers.len()
        + init_specs
            .iter()
            .filter(|c| is_restartable(Some(c)))
            .count();
    let mut ready = 0;
    let mut restarts: i64 = 0;
    let mut last_restart: Option<Timestamp> = None;
    let mut sidecar_restarts: i64 = 0;
    let mut sidecar_last_restart: Option<Timestamp> = None;

    let mut initializing = false;
    for (i, c) in status.init_container_statuses.iter().flatten().enumerate() {
        restarts += i64::from(c.restart_count);
        last_restart = later_termination(last_restart, c);
        let restartable = is_restartable(init_spec(&c.name));
        if restartable {
            sidecar_restarts += i64::from(c.restart_count);
            sidecar_last_restart = later_termination(sidecar_last_restart, c);
        }
        let state = c.state.clone().unwrap_or_default();
        let terminated = state.terminated.as_ref();
        let waiting_reason = state
            .waiting
            .as_ref()
            .and_then(|w| w.reason.as_deref())
            .filter(|r| !r.is_empty());
        if terminated.is_some_and(|t| t.exit_code == 0) {
            continue;
        }
        if restartable && c.started == Some(true) {
            if c.ready {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = terminated {
            reason = match t.reason.as_deref().filter(|r| !r.is_empty()) {
                Some(r) => format!("Init:{r}"),
                None => match t.signal.filter(|s| *s != 0) {
                    Some(signal) => format!("Init:Signal:{signal}"),
                    None => format!("Init:ExitCode:{}", t.exit_code),
                },
            };
        } else if let Some(r) = waiting_reason.filter(|r| *r != "PodInitializing") {
            reason = format!("Init:{r}");
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }

    if !initializing || condition_true(conditions, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = sidecar_last_restart;
        let mut has_running = false;
        // Upstream walks the statuses backwards, so the first container's
        // reason wins when several are waiting or terminated.
        for c in status.container_statuses.iter().flatten().rev() {
            restarts += i64::from(c.restart_count);
            last_restart = later_termination(last_restart, c);
            let state = c.state.clone().unwrap_or_default();
            let waiting = state
                .waiting
                .as_ref()
                .and_then(|w| w.reason.as_deref())
                .filter(|r| !r.is_empty());
            if let Some(r) = waiting {
                reason = r.to_owned();
            } else if let Some(t) = state.terminated.as_ref() {
                reason = match t.reason.as_deref().filter(|r| !r.is_empty()) {
                    Some(r) => r.to_owned(),
                    None => match t.signal.filter(|s| *s != 0) {
                        Some(signal) => format!("Signal:{signal}"),
                        None => format!("ExitCode:{}", t.exit_code),
                    },
                };
            } else if c.ready && state.running.is_some() {
                has_running = true;
                ready += 1;
            }
        }
        // A pod with a container still running is not "Completed" yet.
        if reason == "Completed" && has_running {
            reason = if condition_true(conditions, "Ready") {
                "Running".to_owned()
            } else {
                "NotReady".to_owned()
            };
        }
    }

    if pod.metadata.deletion_timestamp.is_some() {
        if status.reason.as_deref() == Some(NODE_LOST) {
            reason = "Unknown".to_owned();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".to_owned();
        }
    }

    let restarts_cell = match last_restart {
        Some(at) if restarts != 0 => format!(
            "{restarts} ({} ago)",
            human_duration(now.duration_since(at))
        ),
        _ => restarts.to_string(),
    };

    let pod_ip = status
        .pod_ips
        .as_ref()
        .and_then(|ips| ips.first())
        .map(|ip| ip.ip.clone());
    let readiness_gates = match spec.readiness_gates.as_deref() {
        Some(gates) if !gates.is_empty() => {
            let passed = gates
                .iter()
                .filter(|g| {
                    conditions
                        .iter()
                        .find(|c| c.type_ == g.condition_type)
                        .is_some_and(|c| c.status == "True")
                })
                .count();
            format!("{passed}/{}", gates.len())
        }
        _ => "<none>".to_owned(),
    };
    Ok(vec![
        name(&pod.metadata),
        format!("{ready}/{total}").into(),
        reason.into(),
        restarts_cell.into(),
        age(&pod.metadata, now),
        super::or_none(pod_ip.as_deref()).into(),
        super::or_none(spec.node_name.as_deref()).into(),
        super::or_none(status.nominated_node_name.as_deref()).into(),
        readiness_gates.into(),
    ])
}

#[cfg(test)]
#[path = "pod_tests.rs"]
mod tests;
