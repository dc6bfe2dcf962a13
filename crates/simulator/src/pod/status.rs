//! The pod status a kubelet would write for a simulated run: phase,
//! conditions, IPs, start time, QoS class and container statuses.
//!
//! Upstream counterpart: the kubelet's `generateAPIPodStatus`,
//! `getPhase` (`pkg/kubelet/kubelet_pods.go`) and the condition
//! generators in `pkg/kubelet/status/generate.go` (reasons and messages as
//! they word them).

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};

use super::run::{init_done, second, ContainerRun, PodRun, State, Term, DEADLINE_EXCEEDED};
use super::spec::{ContainerSpec, SimSpec};

/// The runtime name in container IDs and the node's
/// containerRuntimeVersion.
pub const RUNTIME: &str = "simulated";

/// Where the pod runs and who it is.
pub struct Placement<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    pub host_ip: &'a str,
    pub pod_ip: Option<&'a str>,
}

const OWN_CONDITIONS: &[&str] = &[
    "PodReadyToStartContainers",
    "Initialized",
    "Ready",
    "ContainersReady",
    "PodScheduled",
];

/// The status of `run` at `now`; condition transition times and foreign
/// conditions are carried over from `prev`.
pub fn build(
    spec: &SimSpec,
    run: &PodRun,
    prev: &PodStatus,
    at: &Placement,
    now: Timestamp,
) -> PodStatus {
    let now = second(now);
    let init: Vec<ContainerStatus> = spec
        .init
        .iter()
        .zip(&run.init)
        .map(|(s, r)| container_status(s, r, at, now, "PodInitializing"))
        .collect();
    let containers: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .zip(&run.containers)
        .map(|(s, r)| container_status(s, r, at, now, "PodInitializing"))
        .collect();
    let phase = phase(run);
    let terminal = phase == "Succeeded" || phase == "Failed";

    let prev_conds = prev.conditions.as_deref().unwrap_or_default();
    let cond = |type_: &str, ok: bool, reason: Option<String>, message: Option<String>| {
        let status = if ok { "True" } else { "False" };
        let since = prev_conds
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        PodCondition {
            type_: type_.into(),
            status: status.into(),
            last_transition_time: Some(since),
            reason,
            message,
            ..Default::default()
        }
    };

    let incomplete: Vec<&str> = spec
        .init
        .iter()
        .zip(&run.init)
        .filter(|(s, r)| !init_done(r, s))
        .map(|(s, _)| s.name.as_str())
        .collect();
    let initialized = run.initialized.is_some() || incomplete.is_empty();
    let unready: Vec<&str> = containers
        .iter()
        .filter(|c| !c.ready)
        .map(|c| c.name.as_str())
        .collect();
    let (containers_ready, not_ready_reason, not_ready_message) = if phase == "Succeeded" {
        (false, Some("PodCompleted".to_string()), None)
    } else if unready.is_empty() {
        (true, None, None)
    } else {
        (
            false,
            Some("ContainersNotReady".to_string()),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        )
    };
    let missing_gate = spec.readiness_gates.iter().find(|g| {
        !prev_conds
            .iter()
            .any(|c| &c.type_ == *g && c.status == "True")
    });
    let (ready, ready_reason, ready_message) = match missing_gate {
        Some(g) if containers_ready => (
            false,
            Some("ReadinessGatesNotReady".to_string()),
            Some(format!(
                "corresponding condition of pod readiness gate \"{g}\" does not exist."
            )),
        ),
        _ => (
            containers_ready,
            not_ready_reason.clone(),
            not_ready_message.clone(),
        ),
    };

    let mut conditions = vec![
        cond("PodReadyToStartContainers", !terminal, None, None),
        if initialized {
            cond("Initialized", true, None, None)
        } else {
            cond(
                "Initialized",
                false,
                Some("ContainersNotInitialized".into()),
                Some(format!(
                    "containers with incomplete status: [{}]",
                    incomplete.join(" ")
                )),
            )
        },
        cond("Ready", ready, ready_reason, ready_message),
        cond(
            "ContainersReady",
            containers_ready,
            not_ready_reason,
            not_ready_message,
        ),
        prev_conds
            .iter()
            .find(|c| c.type_ == "PodScheduled" && c.status == "True")
            .cloned()
            .unwrap_or_else(|| cond("PodScheduled", true, None, None)),
    ];
    conditions.extend(
        prev_conds
            .iter()
            .filter(|c| !OWN_CONDITIONS.contains(&c.type_.as_str()))
            .cloned(),
    );

    let pod_ip = at.pod_ip.map(str::to_string);
    let (reason, message) = if run.deadline_exceeded {
        (
            Some(DEADLINE_EXCEEDED.to_string()),
            Some("Pod was active on the node longer than the specified deadline".to_string()),
        )
    } else {
        (None, None)
    };
    PodStatus {
        reason,
        message,
        phase: Some(phase.into()),
        conditions: Some(conditions),
        host_ip: Some(at.host_ip.into()),
        host_ips: Some(vec![HostIP {
            ip: at.host_ip.into(),
        }]),
        pod_ip: pod_ip.clone(),
        pod_ips: pod_ip.map(|ip| vec![PodIP { ip }]),
        start_time: Some(Time(run.start)),
        qos_class: Some(spec.qos_class.into()),
        init_container_statuses: (!init.is_empty()).then_some(init),
        container_statuses: Some(containers),
        ..Default::default()
    }
}

/// Upstream `getPhase`, over simulated runs.
pub fn phase(run: &PodRun) -> &'static str {
    let ok = |r: &ContainerRun| matches!(&r.state, State::Terminated(t) if t.code == 0);
    let ended = |r: &ContainerRun| matches!(r.state, State::Terminated(_));
    if run.init_failed() {
        return "Failed";
    }
    if run.stopped {
        return if run.initialized.is_some() && run.containers.iter().all(ok) {
            "Succeeded"
        } else {
            "Failed"
        };
    }
    if run.initialized.is_none() {
        return "Pending";
    }
    if run.containers.iter().all(ended) {
        return if run.containers.iter().all(ok) {
            "Succeeded"
        } else {
            "Failed"
        };
    }
    "Running"
}

fn terminated(t: &Term, id: String) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: t.code,
        reason: Some(if t.code == 0 { "Completed" } else { "Error" }.into()),
        started_at: Some(Time(t.started)),
        finished_at: Some(Time(t.finished)),
        container_id: Some(id),
        ..Default::default()
    }
}

fn container_status(
    s: &ContainerSpec,
    r: &ContainerRun,
    at: &Placement,
    now: Timestamp,
    pending_reason: &str,
) -> ContainerStatus {
    let id = |restarts: i32| {
        format!(
            "{RUNTIME}://{}",
            hex_digest(&format!("{}/{}/{restarts}", at.uid, s.name))
        )
    };
    let after = |since: Timestamp, d: std::time::Duration| {
        since + SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX) <= now
    };
    let (state, ready, started, ran) = match &r.state {
        State::Pending => (
            ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(pending_reason.into()),
                    message: None,
                }),
                ..Default::default()
            },
            false,
            false,
            false,
        ),
        State::Running { since } => {
            let started = after(*since, s.started_after);
            (
                ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: Some(Time(*since)),
                    }),
                    ..Default::default()
                },
                started && after(*since, s.ready_after),
                started,
                true,
            )
        }
        State::BackOff { until } => {
            let wait = until.duration_since(r.last.as_ref().map_or(*until, |l| l.finished));
            (
                ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some("CrashLoopBackOff".into()),
                        message: Some(format!(
                            "back-off {}s restarting failed container={} pod={}_{}({})",
                            wait.as_secs(),
                            s.name,
                            at.name,
                            at.namespace,
                            at.uid
                        )),
                    }),
                    ..Default::default()
                },
                false,
                false,
                true,
            )
        }
        State::Terminated(t) => (
            ContainerState {
                terminated: Some(terminated(t, id(r.restarts))),
                ..Default::default()
            },
            false,
            false,
            true,
        ),
    };
    let last_state = match &r.last {
        Some(t) => ContainerState {
            terminated: Some(terminated(t, id(r.restarts - 1))),
            ..Default::default()
        },
        None => ContainerState::default(),
    };
    ContainerStatus {
        name: s.name.clone(),
        image: s.image.clone(),
        image_id: if ran {
            image_id(&s.image)
        } else {
            String::new()
        },
        container_id: ran.then(|| id(r.restarts)),
        ready,
        started: Some(started),
        restart_count: r.restarts,
        state: Some(state),
        last_state: Some(last_state),
        ..Default::default()
    }
}

fn hex_digest(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `docker.io/library/nginx@sha256:...` for `nginx:1.25`, as a runtime
/// reports the digest it pulled.
pub fn image_id(image: &str) -> String {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n.to_string(), d.to_string()),
        None => (image.to_string(), format!("sha256:{}", hex_digest(image))),
    };
    // Drop the tag: a ':' after the last '/'.
    let slash = name.rfind('/').map_or(0, |i| i + 1);
    let repo = match name[slash..].find(':') {
        Some(i) => &name[..slash + i],
        None => &name[..],
    };
    let first = repo.split('/').next().unwrap_or("");
    let has_registry =
        repo.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let full = if has_registry {
        repo.to_string()
    } else if repo.contains('/') {
        format!("docker.io/{repo}")
    } else {
        format!("docker.io/library/{repo}")
    };
    format!("{full}@{digest}")
}

/// What must match for a status in the API to need no rewrite: the
/// things a kubelet decides, not the way they are formatted.
pub fn same(a: &PodStatus, b: &PodStatus) -> bool {
    fn conds(s: &PodStatus) -> Vec<(&str, &str, Option<&str>)> {
        let mut v: Vec<_> = s
            .conditions
            .iter()
            .flatten()
            .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_deref()))
            .collect();
        v.sort();
        v
    }
    fn containers(
        l: &Option<Vec<ContainerStatus>>,
    ) -> Vec<(&str, bool, Option<bool>, i32, String)> {
        l.iter()
            .flatten()
            .map(|c| {
                let state = c.state.as_ref().map(|s| {
                    if let Some(r) = &s.running {
                        format!(
                            "running {:?}",
                            r.started_at.as_ref().map(|t| t.0.as_second())
                        )
                    } else if let Some(t) = &s.terminated {
                        format!(
                            "terminated {} {:?}",
                            t.exit_code,
                            t.finished_at.as_ref().map(|t| t.0.as_second())
                        )
                    } else if let Some(w) = &s.waiting {
                        format!("waiting {:?}", w.reason)
                    } else {
                        String::new()
                    }
                });
                (
                    c.name.as_str(),
                    c.ready,
                    c.started,
                    c.restart_count,
                    state.unwrap_or_default(),
                )
            })
            .collect()
    }
    a.phase == b.phase
        && a.reason == b.reason
        && a.pod_ip == b.pod_ip
        && a.host_ip == b.host_ip
        && a.qos_class == b.qos_class
        && a.start_time.as_ref().map(|t| t.0.as_second())
            == b.start_time.as_ref().map(|t| t.0.as_second())
        && conds(a) == conds(b)
        && containers(&a.container_statuses) == containers(&b.container_statuses)
        && containers(&a.init_container_statuses) == containers(&b.init_container_statuses)
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
