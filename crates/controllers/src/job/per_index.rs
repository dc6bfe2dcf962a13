//! Per-index retries of Indexed Jobs (`backoffLimitPerIndex`,
//! `maxFailedIndexes`, the `FailIndex` podFailurePolicy action) and the
//! Job `successPolicy`.
//!
//! Upstream counterpart: `pkg/controller/job/indexed_job_utils.go`
//! (`getIndexFailureCount`, `isIndexFailed`, `getNewIndexFailureCounts`)
//! and `pkg/controller/job/success_policy.go` (`matchSuccessPolicy`).
//! Every pod of such a Job carries how many times its index already
//! failed, so the count survives the pods that went before it.

use std::collections::BTreeSet;

use k8s_openapi::api::batch::v1::SuccessPolicy;
use k8s_openapi::api::core::v1::Pod;

use super::indexes;

/// The annotation with the number of earlier counted failures of the
/// pod's index.
pub const FAILURE_COUNT_KEY: &str = "batch.kubernetes.io/job-index-failure-count";

/// How many failures of its index came before this pod (0 when the
/// annotation is missing or malformed, as upstream).
pub fn failure_count(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(FAILURE_COUNT_KEY))
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|n| *n >= 0)
        .unwrap_or(0)
}

/// Whether this counted failure of a pod fails its index: a FailIndex
/// rule matched, or the index has used up its retries.
pub fn fails_index(pod: &Pod, fail_index_rule: bool, limit: i32) -> bool {
    fail_index_rule || failure_count(pod) >= limit
}

/// The reason and message of the Job's FailureTarget once its failed
/// indexes decide it: more than maxFailedIndexes, or every index either
/// succeeded or failed with at least one failed.
pub fn failure(
    failed: &BTreeSet<i32>,
    succeeded: &BTreeSet<i32>,
    max_failed: Option<i32>,
    completions: i32,
) -> Option<(&'static str, String)> {
    if max_failed.is_some_and(|m| failed.len() as i64 > i64::from(m)) {
        return Some((
            "MaxFailedIndexesExceeded",
            "Job has exceeded the specified maximal number of failed indexes".into(),
        ));
    }
    let settled = failed.union(succeeded).count() as i64;
    if !failed.is_empty() && settled >= i64::from(completions) {
        return Some(("FailedIndexes", "Job has failed indexes".into()));
    }
    None
}

/// The first successPolicy rule the succeeded indexes satisfy, as the
/// SuccessCriteriaMet message ("Matched rules at index N").
pub fn success(
    policy: Option<&SuccessPolicy>,
    succeeded: &BTreeSet<i32>,
    completions: i32,
) -> Option<String> {
    for (i, rule) in policy?.rules.iter().enumerate() {
        let met = match (&rule.succeeded_indexes, rule.succeeded_count) {
            (Some(wanted), count) => {
                let wanted = indexes::parse(wanted, completions);
                let done = wanted.intersection(succeeded).count() as i64;
                match count {
                    Some(c) => done >= i64::from(c),
                    None => !wanted.is_empty() && done == wanted.len() as i64,
                }
            }
            (None, Some(c)) => succeeded.len() as i64 >= i64::from(c),
            (None, None) => false,
        };
        if met {
            return Some(format!("Matched rules at index {i}"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::SuccessPolicyRule;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn set(v: &[i32]) -> BTreeSet<i32> {
        v.iter().copied().collect()
    }

    #[test]
    fn failure_count_reads_the_annotation() {
        let mut pod = Pod::default();
        assert_eq!(failure_count(&pod), 0);
        pod.metadata = ObjectMeta {
            annotations: Some([(FAILURE_COUNT_KEY.to_string(), "2".to_string())].into()),
            ..ObjectMeta::default()
        };
        assert_eq!(failure_count(&pod), 2);
        assert!(fails_index(&pod, false, 2));
        assert!(!fails_index(&pod, false, 3));
        assert!(fails_index(&pod, true, 3));
    }

    #[test]
    fn failed_indexes_decide_only_when_over_the_max_or_all_settled() {
        assert_eq!(failure(&set(&[1]), &set(&[0]), None, 3), None);
        assert_eq!(
            failure(&set(&[1]), &set(&[0, 2]), None, 3).map(|f| f.0),
            Some("FailedIndexes")
        );
        assert_eq!(
            failure(&set(&[1, 2]), &set(&[]), Some(1), 5).map(|f| f.0),
            Some("MaxFailedIndexesExceeded")
        );
        assert_eq!(failure(&set(&[]), &set(&[0, 1, 2]), Some(0), 3), None);
    }

    #[test]
    fn success_rules_match_indexes_and_counts() {
        let policy = SuccessPolicy {
            rules: vec![
                SuccessPolicyRule {
                    succeeded_indexes: Some("0-2".into()),
                    succeeded_count: None,
                },
                SuccessPolicyRule {
                    succeeded_indexes: Some("3-9".into()),
                    succeeded_count: Some(2),
                },
                SuccessPolicyRule {
                    succeeded_indexes: None,
                    succeeded_count: Some(4),
                },
            ],
        };
        let p = Some(&policy);
        assert_eq!(success(p, &set(&[0, 1]), 10), None);
        assert_eq!(
            success(p, &set(&[0, 1, 2]), 10).as_deref(),
            Some("Matched rules at index 0")
        );
        assert_eq!(
            success(p, &set(&[4, 7]), 10).as_deref(),
            Some("Matched rules at index 1")
        );
        assert_eq!(
            success(p, &set(&[0, 1, 5, 8]), 10).as_deref(),
            Some("Matched rules at index 1")
        );
        assert_eq!(
            success(p, &set(&[0, 1, 3]), 10).as_deref(),
            None,
            "one of 3-9 is not two"
        );
        assert_eq!(success(None, &set(&[0]), 1), None);
    }
}
