//! Pod status as upstream writes it, computed purely from a snapshot of
//! what the worker knows: phase, conditions, container statuses with
//! state/lastState/restartCount/ready/started, IPs, start time and QoS.
//!
//! Upstream counterpart: `kubelet_pods.go` (`generateAPIPodStatus`,
//! `getPhase`, `convertToAPIContainerStatuses`) and
//! `pkg/kubelet/status/generate.go` (the conditions).

use std::time::SystemTime;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

pub fn time(t: SystemTime) -> Time {
    Time(Timestamp::try_from(t).unwrap_or_else(|_| Timestamp::now()))
}

/// One runtime container as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Run {
    Running {
        id: String,
        started_at: SystemTime,
    },
    Terminated {
        id: String,
        exit_code: i32,
        reason: String,
        message: Option<String>,
        started_at: Option<SystemTime>,
        finished_at: SystemTime,
    },
}

/// What the worker knows about one spec container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerView {
    pub name: String,
    pub image: String,
    pub image_id: String,
    pub current: Option<Run>,
    pub previous: Option<Run>,
    pub restart_count: i32,
    /// Why it is not running (ContainerCreating, CrashLoopBackOff,
    /// ErrImagePull, CreateContainerConfigError, PodInitializing...).
    pub waiting: Option<(String, String)>,
    pub ready: bool,
    pub started: bool,
    /// A restartable init container (sidecar).
    pub sidecar: bool,
}

#[derive(Debug, Clone, Default)]
pub struct PodView {
    pub sandbox_ready: bool,
    pub init: Vec<ContainerView>,
    pub containers: Vec<ContainerView>,
    pub host_ip: String,
    pub pod_ip: String,
    pub start_time: Option<Time>,
    pub restart_policy: String,
    pub qos_class: String,
    /// Set when the pod is being torn down for good.
    pub terminating: bool,
}

fn state_of(run: &Run) -> ContainerState {
    match run {
        Run::Running { started_at, .. } => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(time(*started_at)),
            }),
            ..Default::default()
        },
        Run::Terminated {
            id,
            exit_code,
            reason,
            message,
            started_at,
            finished_at,
        } => ContainerState {
            terminated: Some(ContainerStateTerminated {
                container_id: Some(format!("rkube://{id}")),
                exit_code: *exit_code,
                reason: Some(reason.clone()),
                message: message.clone(),
                started_at: started_at.map(time),
                finished_at: Some(time(*finished_at)),
                ..Default::default()
            }),
            ..Default::default()
        },
    }
}

fn run_id(run: &Run) -> &str {
    match run {
        Run::Running { id, .. } | Run::Terminated { id, .. } => id,
    }
}

pub fn container_status(v: &ContainerView) -> ContainerStatus {
    let state = match (&v.waiting, &v.current) {
        (Some((reason, message)), _) => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.clone()),
                message: (!message.is_empty()).then(|| message.clone()),
            }),
            ..Default::default()
        },
        (None, Some(run)) => state_of(run),
        (None, None) => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("ContainerCreating".into()),
                message: None,
            }),
            ..Default::default()
        },
    };
    // When waiting to restart, the last run is the current record's.
    let last = if v.waiting.is_some() {
        v.current.as_ref().or(v.previous.as_ref())
    } else {
        v.previous.as_ref()
    };
    let id_run = if v.waiting.is_some() {
        None
    } else {
        v.current.as_ref()
    };
    ContainerStatus {
        name: v.name.clone(),
        image: v.image.clone(),
        image_id: v.image_id.clone(),
        container_id: id_run.map(|r| format!("rkube://{}", run_id(r))),
        state: Some(state),
        last_state: Some(last.map(state_of).unwrap_or_default()),
        ready: v.ready,
        started: Some(v.started),
        restart_count: v.restart_count,
        ..Default::default()
    }
}

fn terminated_code(v: &ContainerView) -> Option<i32> {
    match (&v.waiting, &v.current) {
        (None, Some(Run::Terminated { exit_code, .. })) => Some(*exit_code),
        _ => None,
    }
}

fn running(v: &ContainerView) -> bool {
    v.waiting.is_none() && matches!(v.current, Some(Run::Running { .. }))
}

/// Whether every init container has finished (sidecars: started).
pub fn initialized(p: &PodView) -> bool {
    p.init.iter().all(|v| {
        if v.sidecar {
            v.started
        } else {
            terminated_code(v) == Some(0)
        }
    })
}

/// The phase, as upstream's getPhase.
pub fn phase(p: &PodView) -> &'static str {
    let never = p.restart_policy == "Never";
    if !initialized(p) {
        let failed = p
            .init
            .iter()
            .any(|v| !v.sidecar && matches!(terminated_code(v), Some(c) if c != 0));
        return if failed && never { "Failed" } else { "Pending" };
    }
    let (mut pending, mut run, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for v in &p.containers {
        if running(v) {
            run += 1;
        } else if let Some(code) = terminated_code(v) {
            stopped += 1;
            if code == 0 {
                succeeded += 1;
            }
        } else if v.waiting.is_some() && v.current.is_some() {
            // Waiting to restart after a previous run.
            stopped += 1;
        } else {
            pending += 1;
        }
    }
    if pending > 0 {
        return "Pending";
    }
    if run > 0 {
        return "Running";
    }
    if stopped > 0 {
        return match p.restart_policy.as_str() {
            "Always" => "Running",
            "OnFailure" if stopped == succeeded => "Succeeded",
            "OnFailure" => "Running",
            _ if stopped == succeeded => "Succeeded",
            _ => "Failed",
        };
    }
    "Pending"
}

fn condition(
    prev: Option<&PodStatus>,
    ty: &str,
    ok: bool,
    reason: Option<String>,
    message: Option<String>,
    now: &Time,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let transition = prev
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == ty && c.status == status))
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    PodCondition {
        type_: ty.into(),
        status: status.into(),
        reason: if ok { None } else { reason },
        message: if ok { None } else { message },
        last_transition_time: Some(transition),
        last_probe_time: None,
        ..Default::default()
    }
}

/// The full status. `prev` is what the API has, for transition times and
/// PodScheduled.
pub fn pod_status(p: &PodView, pod: &Pod, now: &Time) -> PodStatus {
    let prev = pod.status.as_ref();
    let phase = phase(p);
    let init_done = initialized(p);
    let unready: Vec<&str> = p
        .containers
        .iter()
        .filter(|c| !c.ready)
        .map(|c| c.name.as_str())
        .collect();
    let incomplete: Vec<&str> = p
        .init
        .iter()
        .filter(|v| {
            if v.sidecar {
                !v.started
            } else {
                terminated_code(v) != Some(0)
            }
        })
        .map(|v| v.name.as_str())
        .collect();
    let done = matches!(phase, "Succeeded" | "Failed");
    let ready = unready.is_empty() && !done && init_done;
    let (not_ready_reason, not_ready_msg) = if done {
        ("PodCompleted".to_string(), None)
    } else {
        (
            "ContainersNotReady".to_string(),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        )
    };
    let mut conditions = vec![
        condition(
            prev,
            "PodReadyToStartContainers",
            p.sandbox_ready,
            None,
            None,
            now,
        ),
        condition(
            prev,
            "Initialized",
            init_done,
            Some(
                if done {
                    "PodCompleted"
                } else {
                    "ContainersNotInitialized"
                }
                .into(),
            ),
            (!done).then(|| {
                format!(
                    "containers with incomplete status: [{}]",
                    incomplete.join(" ")
                )
            }),
            now,
        ),
        condition(
            prev,
            "Ready",
            ready,
            Some(not_ready_reason.clone()),
            not_ready_msg.clone(),
            now,
        ),
        condition(
            prev,
            "ContainersReady",
            ready,
            Some(not_ready_reason),
            not_ready_msg,
            now,
        ),
    ];
    if let Some(sched) = prev
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"))
    {
        conditions.push(sched.clone());
    } else {
        conditions.push(condition(prev, "PodScheduled", true, None, None, now));
    }
    let ips = |ip: &str| (!ip.is_empty()).then(|| ip.to_string());
    PodStatus {
        phase: Some(phase.into()),
        conditions: Some(conditions),
        host_ip: ips(&p.host_ip),
        host_ips: ips(&p.host_ip).map(|ip| vec![HostIP { ip }]),
        pod_ip: ips(&p.pod_ip),
        pod_ips: ips(&p.pod_ip).map(|ip| vec![PodIP { ip }]),
        start_time: p.start_time.clone(),
        qos_class: Some(p.qos_class.clone()),
        init_container_statuses: (!p.init.is_empty())
            .then(|| p.init.iter().map(container_status).collect()),
        container_statuses: Some(p.containers.iter().map(container_status).collect()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> Option<Run> {
        Some(Run::Running {
            id: "a".into(),
            started_at: SystemTime::UNIX_EPOCH,
        })
    }

    fn exited(code: i32) -> Option<Run> {
        Some(Run::Terminated {
            id: "a".into(),
            exit_code: code,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: None,
            started_at: None,
            finished_at: SystemTime::UNIX_EPOCH,
        })
    }

    fn view(policy: &str, init: Vec<ContainerView>, containers: Vec<ContainerView>) -> PodView {
        PodView {
            sandbox_ready: true,
            init,
            containers,
            restart_policy: policy.into(),
            qos_class: "BestEffort".into(),
            ..Default::default()
        }
    }

    fn c(current: Option<Run>, ready: bool) -> ContainerView {
        ContainerView {
            name: "c".into(),
            current,
            ready,
            started: ready,
            ..Default::default()
        }
    }

    #[test]
    fn phases() {
        assert_eq!(
            phase(&view("Always", vec![], vec![c(None, false)])),
            "Pending"
        );
        assert_eq!(
            phase(&view("Always", vec![], vec![c(run(), true)])),
            "Running"
        );
        assert_eq!(
            phase(&view("Never", vec![], vec![c(exited(0), false)])),
            "Succeeded"
        );
        assert_eq!(
            phase(&view("Never", vec![], vec![c(exited(1), false)])),
            "Failed"
        );
        assert_eq!(
            phase(&view("OnFailure", vec![], vec![c(exited(1), false)])),
            "Running"
        );
        assert_eq!(
            phase(&view("Always", vec![], vec![c(exited(0), false)])),
            "Running"
        );
        // Init container still running; failed with Never.
        assert_eq!(
            phase(&view("Always", vec![c(run(), false)], vec![c(None, false)])),
            "Pending"
        );
        assert_eq!(
            phase(&view(
                "Never",
                vec![c(exited(2), false)],
                vec![c(None, false)]
            )),
            "Failed"
        );
        assert_eq!(
            phase(&view(
                "Always",
                vec![c(exited(0), false)],
                vec![c(run(), true)]
            )),
            "Running"
        );
    }

    #[test]
    fn crash_loop_status_shows_last_run() {
        let mut v = c(exited(1), false);
        v.waiting = Some(("CrashLoopBackOff".into(), "back-off 10s".into()));
        v.restart_count = 2;
        let s = container_status(&v);
        let st = s.state.unwrap();
        assert_eq!(
            st.waiting.unwrap().reason.as_deref(),
            Some("CrashLoopBackOff")
        );
        assert_eq!(s.last_state.unwrap().terminated.unwrap().exit_code, 1);
        assert_eq!(s.restart_count, 2);
        assert!(s.container_id.is_none());
    }

    #[test]
    fn conditions_follow_readiness() {
        let pod = Pod::default();
        let now = Time(Timestamp::now());
        let s = pod_status(&view("Always", vec![], vec![c(run(), false)]), &pod, &now);
        let get = |t: &str| {
            s.conditions
                .as_ref()
                .unwrap()
                .iter()
                .find(|c| c.type_ == t)
                .unwrap()
                .clone()
        };
        assert_eq!(get("Ready").status, "False");
        assert_eq!(get("Ready").reason.as_deref(), Some("ContainersNotReady"));
        assert_eq!(get("Initialized").status, "True");
        assert_eq!(get("PodScheduled").status, "True");
        let s2 = pod_status(&view("Always", vec![], vec![c(run(), true)]), &pod, &now);
        assert!(s2.conditions.unwrap().iter().all(|c| c.status == "True"));
    }
}
