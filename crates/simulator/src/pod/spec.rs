//! What a simulated pod does, read once from its spec: for each container
//! whether and when it exits and with which code, when its probes first
//! pass, and the pod's restart policy and QoS class.
//!
//! Upstream counterpart: none directly — a real kubelet runs the process.
//! kwok describes behaviour with Stage objects; we read it from what the
//! pod already says (`command: ["true"]`, `sh -c "sleep 5; exit 1"`) or
//! from the annotations [`EXIT_CODE_ANNOTATION`] and
//! [`DURATION_ANNOTATION`], so unmodified Job manifests finish.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, Probe};

/// Exit code every app container of the pod ends with.
pub const EXIT_CODE_ANNOTATION: &str = "rkube.io/simulate-exit-code";
/// How long every app container of the pod runs before it exits
/// (`30`, `30s`, `500ms`, `2m`, `1h`).
pub const DURATION_ANNOTATION: &str = "rkube.io/simulate-duration";

/// How a simulated process ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// A server: runs until the pod is deleted.
    Never,
    /// Exits with `code` after running for `after`.
    After { code: i32, after: Duration },
}

/// One container as the simulation sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub exit: Exit,
    /// Ready this long after it starts (readinessProbe.initialDelaySeconds;
    /// zero without a probe).
    pub ready_after: Duration,
    /// Started this long after it starts (startupProbe.initialDelaySeconds).
    pub started_after: Duration,
    /// An init container with restartPolicy Always (a sidecar).
    pub sidecar: bool,
}

/// Pod restart policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    /// Whether a container that exited with `code` is started again.
    pub fn restarts(self, code: i32) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => code != 0,
            RestartPolicy::Never => false,
        }
    }
}

/// Everything the simulation needs from a pod's spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimSpec {
    pub restart_policy: RestartPolicy,
    pub init: Vec<ContainerSpec>,
    pub containers: Vec<ContainerSpec>,
    pub qos_class: &'static str,
    pub host_network: bool,
    /// Condition types from spec.readinessGates.
    pub readiness_gates: Vec<String>,
    /// spec.activeDeadlineSeconds: the pod is failed this long after it
    /// started.
    pub active_deadline: Option<Duration>,
}

impl SimSpec {
    pub fn from_pod(pod: &Pod) -> SimSpec {
        let spec = pod.spec.clone().unwrap_or_default();
        let restart_policy = match spec.restart_policy.as_deref() {
            Some("Never") => RestartPolicy::Never,
            Some("OnFailure") => RestartPolicy::OnFailure,
            _ => RestartPolicy::Always,
        };
        let empty = BTreeMap::new();
        let annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
        let overridden = annotation_exit(annotations);
        let init = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| {
                let sidecar = c.restart_policy.as_deref() == Some("Always");
                let mut s = container(c, None);
                // An init container that would never end blocks the pod
                // for ever; simulated ones are taken to finish their job.
                if !sidecar && s.exit == Exit::Never {
                    s.exit = Exit::After {
                        code: 0,
                        after: Duration::ZERO,
                    };
                }
                s.sidecar = sidecar;
                s
            })
            .collect();
        let containers = spec
            .containers
            .iter()
            .map(|c| container(c, overridden))
            .collect();
        SimSpec {
            restart_policy,
            init,
            containers,
            qos_class: qos_class(&spec.containers, spec.init_containers.as_deref()),
            host_network: spec.host_network.unwrap_or(false),
            readiness_gates: spec
                .readiness_gates
                .iter()
                .flatten()
                .map(|g| g.condition_type.clone())
                .collect(),
            active_deadline: spec
                .active_deadline_seconds
                .map(|s| Duration::from_secs(s.max(0) as u64)),
        }
    }
}

fn container(c: &Container, overridden: Option<Exit>) -> ContainerSpec {
    let argv: Vec<&str> = c
        .command
        .iter()
        .flatten()
        .chain(c.args.iter().flatten())
        .map(String::as_str)
        .collect();
    ContainerSpec {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        exit: overridden.unwrap_or_else(|| exit_of(&argv)),
        ready_after: probe_delay(c.readiness_probe.as_ref()),
        started_after: probe_delay(c.startup_probe.as_ref()),
        sidecar: false,
    }
}

fn probe_delay(probe: Option<&Probe>) -> Duration {
    let secs = probe.and_then(|p| p.initial_delay_seconds).unwrap_or(0);
    Duration::from_secs(secs.max(0) as u64)
}

/// The annotations' behaviour, if the pod has either of them.
fn annotation_exit(annotations: &BTreeMap<String, String>) -> Option<Exit> {
    let code = annotations.get(EXIT_CODE_ANNOTATION);
    let after = annotations.get(DURATION_ANNOTATION);
    if code.is_none() && after.is_none() {
        return None;
    }
    Some(Exit::After {
        code: code.and_then(|c| c.trim().parse().ok()).unwrap_or(0),
        after: after.and_then(|d| parse_duration(d)).unwrap_or_default(),
    })
}

/// `30`, `30s`, `500ms`, `2m`, `1h`, `1.5s`.
pub use rkube_machinery::duration::parse as parse_duration;

/// What a command line would do, for the few programs whose behaviour is
/// obvious without running them; anything else is a server that runs on.
pub fn exit_of(argv: &[&str]) -> Exit {
    let Some((prog, rest)) = argv.split_first() else {
        return Exit::Never;
    };
    match basename(prog) {
        "true" => done(0, Duration::ZERO),
        "false" => done(1, Duration::ZERO),
        "sleep" => match rest.first().map(|s| parse_duration(s)) {
            Some(Some(d)) => done(0, d),
            _ => Exit::Never,
        },
        "sh" | "bash" | "ash" | "dash" if rest.first() == Some(&"-c") => rest
            .get(1)
            .map_or(Exit::Never, |script| script_exit(script)),
        _ => Exit::Never,
    }
}

fn done(code: i32, after: Duration) -> Exit {
    Exit::After { code, after }
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// A tiny reading of `sh -c` scripts: statements separated by `;`, `&&`
/// or newlines made of `true`, `false`, `:`, `echo ...`, `sleep N` and
/// `exit N`. Any other statement makes the script a server.
fn script_exit(script: &str) -> Exit {
    let mut after = Duration::ZERO;
    let mut code = 0;
    let mut chained = false;
    for (stmt, and) in statements(script) {
        if chained && code != 0 {
            // `false && ...`: the rest of the chain is skipped.
            chained = and;
            continue;
        }
        let words: Vec<&str> = stmt.split_whitespace().collect();
        match words.as_slice() {
            [] => {}
            ["true"] | [":"] => code = 0,
            ["false"] => code = 1,
            ["echo", ..] => code = 0,
            ["sleep", d] => match parse_duration(d) {
                Some(d) => {
                    after += d;
                    code = 0;
                }
                None => return Exit::Never,
            },
            ["exit"] => return done(code, after),
            ["exit", n] => return done(n.parse().unwrap_or(2), after),
            _ => return Exit::Never,
        }
        chained = and;
    }
    done(code, after)
}

/// Statements and whether each is followed by `&&`.
fn statements(script: &str) -> Vec<(&str, bool)> {
    let mut out = Vec::new();
    let mut rest = script;
    loop {
        let semi = rest.find([';', '\n']);
        let and = rest.find("&&");
        match (semi, and) {
            (None, Some(a)) => {
                out.push((rest[..a].trim(), true));
                rest = &rest[a + 2..];
            }
            (Some(s), Some(a)) if a < s => {
                out.push((rest[..a].trim(), true));
                rest = &rest[a + 2..];
            }
            (Some(s), _) => {
                out.push((rest[..s].trim(), false));
                rest = &rest[s + 1..];
            }
            (None, None) => {
                out.push((rest.trim(), false));
                return out;
            }
        }
    }
}

/// Upstream `GetPodQOS`: BestEffort without any cpu or memory request or
/// limit; Guaranteed when every container limits both and its requests (if
/// given) equal its limits; Burstable otherwise.
fn qos_class(containers: &[Container], init: Option<&[Container]>) -> &'static str {
    let all: Vec<&Container> = containers
        .iter()
        .chain(init.into_iter().flatten())
        .collect();
    let compute = |k: &str| k == "cpu" || k == "memory";
    let mut any = false;
    let mut guaranteed = true;
    for c in &all {
        let res = c.resources.clone().unwrap_or_default();
        let requests = res.requests.unwrap_or_default();
        let limits = res.limits.unwrap_or_default();
        any |= requests.keys().chain(limits.keys()).any(|k| compute(k));
        for k in ["cpu", "memory"] {
            match (requests.get(k), limits.get(k)) {
                (_, None) => guaranteed = false,
                (Some(r), Some(l)) if r.0 != l.0 => guaranteed = false,
                _ => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn commands() {
        assert_eq!(exit_of(&["true"]), done(0, secs(0)));
        assert_eq!(exit_of(&["/bin/false"]), done(1, secs(0)));
        assert_eq!(exit_of(&["sleep", "5"]), done(0, secs(5)));
        assert_eq!(exit_of(&["sleep", "infinity"]), Exit::Never);
        assert_eq!(exit_of(&["nginx", "-g", "daemon off;"]), Exit::Never);
        assert_eq!(exit_of(&[]), Exit::Never);
        assert_eq!(exit_of(&["sh", "-c", "exit 3"]), done(3, secs(0)));
        assert_eq!(
            exit_of(&["/bin/sh", "-c", "echo hi; sleep 2 && exit 1"]),
            done(1, secs(2))
        );
        assert_eq!(exit_of(&["sh", "-c", "false && sleep 9"]), done(1, secs(0)));
        assert_eq!(exit_of(&["sh", "-c", "sleep 1; false"]), done(1, secs(1)));
        assert_eq!(
            exit_of(&["sh", "-c", "while true; do sleep 1; done"]),
            Exit::Never
        );
        assert_eq!(exit_of(&["sh", "-c", "sleep 3600"]), done(0, secs(3600)));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30"), Some(secs(30)));
        assert_eq!(parse_duration("2m"), Some(secs(120)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("-1"), None);
    }

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn annotations_override_commands() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "p", "annotations": {
                EXIT_CODE_ANNOTATION: "4", DURATION_ANNOTATION: "3s"}},
            "spec": {"restartPolicy": "OnFailure", "containers": [
                {"name": "a", "image": "busybox", "command": ["true"]}]}
        }));
        let s = SimSpec::from_pod(&p);
        assert_eq!(s.restart_policy, RestartPolicy::OnFailure);
        assert_eq!(s.containers[0].exit, done(4, secs(3)));
        assert_eq!(s.qos_class, "BestEffort");
    }

    #[test]
    fn qos_and_probes() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {
                "initContainers": [{"name": "i", "image": "busybox", "command": ["wait-for-db"]},
                                   {"name": "s", "image": "proxy", "restartPolicy": "Always"}],
                "containers": [{"name": "a", "image": "nginx",
                "readinessProbe": {"initialDelaySeconds": 7, "httpGet": {"port": 80}},
                "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}
        }));
        let s = SimSpec::from_pod(&p);
        assert_eq!(s.containers[0].ready_after, secs(7));
        assert_eq!(s.containers[0].exit, Exit::Never);
        assert_eq!(s.init[0].exit, done(0, secs(0)));
        assert!(s.init[1].sidecar);
        assert_eq!(s.init[1].exit, Exit::Never);
        // The init containers have no limits, so not Guaranteed.
        assert_eq!(s.qos_class, "Burstable");
    }
}
