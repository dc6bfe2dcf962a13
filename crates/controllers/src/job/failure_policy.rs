//! A Job's podFailurePolicy applied to one failed pod.
//!
//! Upstream counterpart: `pkg/controller/job/pod_failure_policy.go`
//! (`matchPodFailurePolicy`, `matchOnExitCodes`, `matchOnPodConditions`).
//! Rules are tried in order; the first that matches decides. Containers
//! that exited 0 never match an exit-code rule.

use k8s_openapi::api::batch::v1::{PodFailurePolicy, PodFailurePolicyRule};
use k8s_openapi::api::core::v1::Pod;

/// What a matching rule says about a failed pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Fail the whole Job, with this condition message.
    FailJob(String),
    /// Do not count the failure against backoffLimit.
    Ignore,
    /// Fail the pod's completion index at once (backoffLimitPerIndex).
    FailIndex,
    /// Count it (also what happens when no rule matches).
    Count,
}

pub fn evaluate(policy: Option<&PodFailurePolicy>, pod: &Pod) -> Verdict {
    let Some(policy) = policy else {
        return Verdict::Count;
    };
    for (i, rule) in policy.rules.iter().enumerate() {
        let Some(what) = matches(rule, pod) else {
            continue;
        };
        let pod_name = format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default()
        );
        return match rule.action.as_str() {
            "FailJob" => Verdict::FailJob(match what {
                Match::Exit(container, code) => format!(
                    "Container {container} for pod {pod_name} failed with exit code {code} matching FailJob rule at index {i}"
                ),
                Match::Condition(cond) => format!(
                    "Pod {pod_name} has condition {cond} matching FailJob rule at index {i}"
                ),
            }),
            "Ignore" => Verdict::Ignore,
            "FailIndex" => Verdict::FailIndex,
            _ => Verdict::Count,
        };
    }
    Verdict::Count
}

enum Match {
    Exit(String, i32),
    Condition(String),
}

fn matches(rule: &PodFailurePolicyRule, pod: &Pod) -> Option<Match> {
    let status = pod.status.as_ref()?;
    if let Some(req) = &rule.on_exit_codes {
        let statuses = status
            .init_container_statuses
            .iter()
            .flatten()
            .chain(status.container_statuses.iter().flatten());
        for cs in statuses {
            if req.container_name.as_ref().is_some_and(|n| *n != cs.name) {
                continue;
            }
            let Some(code) = cs
                .state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .map(|t| t.exit_code)
            else {
                continue;
            };
            if code == 0 {
                continue;
            }
            let listed = req.values.contains(&code);
            let hit = match req.operator.as_str() {
                "In" => listed,
                "NotIn" => !listed,
                _ => false,
            };
            if hit {
                return Some(Match::Exit(cs.name.clone(), code));
            }
        }
        return None;
    }
    for want in rule.on_pod_conditions.iter().flatten() {
        let want_status = want.status.as_str();
        let has = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == want.type_ && c.status == want_status);
        if has {
            return Some(Match::Condition(want.type_.clone()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{
        PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyOnPodConditionsPattern,
    };
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStatus, PodCondition, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn failed(code: i32, condition: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some("Failed".into()),
                container_statuses: Some(vec![ContainerStatus {
                    name: "main".into(),
                    state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code: code,
                            ..ContainerStateTerminated::default()
                        }),
                        ..ContainerState::default()
                    }),
                    ..ContainerStatus::default()
                }]),
                conditions: condition.map(|c| {
                    vec![PodCondition {
                        type_: c.into(),
                        status: "True".into(),
                        ..PodCondition::default()
                    }]
                }),
                ..PodStatus::default()
            }),
        }
    }

    fn policy() -> PodFailurePolicy {
        PodFailurePolicy {
            rules: vec![
                PodFailurePolicyRule {
                    action: "FailJob".into(),
                    on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                        container_name: None,
                        operator: "In".into(),
                        values: vec![42],
                    }),
                    on_pod_conditions: None,
                },
                PodFailurePolicyRule {
                    action: "Ignore".into(),
                    on_exit_codes: None,
                    on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                        type_: "DisruptionTarget".into(),
                        status: "True".into(),
                    }]),
                },
            ],
        }
    }

    #[test]
    fn first_matching_rule_decides() {
        assert_eq!(
            evaluate(Some(&policy()), &failed(42, None)),
            Verdict::FailJob(
                "Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 0"
                    .into()
            )
        );
        assert_eq!(
            evaluate(Some(&policy()), &failed(1, Some("DisruptionTarget"))),
            Verdict::Ignore
        );
        assert_eq!(evaluate(Some(&policy()), &failed(1, None)), Verdict::Count);
        assert_eq!(evaluate(None, &failed(42, None)), Verdict::Count);
    }
}
