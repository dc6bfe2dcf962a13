//! Completion indexes of Indexed Jobs and their compact text form
//! (`status.completedIndexes`: "1,3-5,7").
//!
//! Upstream counterpart: `pkg/controller/job/indexed_job_utils.go`
//! (`orderedIntervals`, `parseIndexesFromString`, `getCompletionIndex`).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Pod;

/// The annotation and label carrying a pod's completion index.
pub const INDEX_KEY: &str = "batch.kubernetes.io/job-completion-index";

/// Parse "1,3-5" into indexes below `completions`; malformed parts are
/// skipped, as upstream does.
pub fn parse(s: &str, completions: i32) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<i32>(), b.parse::<i32>()),
            None => (part.parse::<i32>(), part.parse::<i32>()),
        };
        let (Ok(a), Ok(b)) = (a, b) else { continue };
        for i in a.max(0)..=b.min(completions - 1) {
            out.insert(i);
        }
    }
    out
}

/// Format indexes as ordered intervals.
pub fn format(indexes: &BTreeSet<i32>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = indexes.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end = iter.next().expect("peeked");
        }
        // Upstream writes a run of two as "a,b", not "a-b".
        parts.push(match end - start {
            0 => start.to_string(),
            1 => format!("{start},{end}"),
            _ => format!("{start}-{end}"),
        });
    }
    parts.join(",")
}

/// A pod's completion index: the annotation, else the label.
pub fn of_pod(pod: &Pod) -> Option<i32> {
    let m = &pod.metadata;
    m.annotations
        .as_ref()
        .and_then(|a| a.get(INDEX_KEY))
        .or_else(|| m.labels.as_ref().and_then(|l| l.get(INDEX_KEY)))
        .and_then(|v| v.parse().ok())
        .filter(|i| *i >= 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_round_trip() {
        let set: BTreeSet<i32> = [0, 1, 2, 4, 6, 7].into();
        assert_eq!(format(&set), "0-2,4,6,7");
        assert_eq!(parse("0-2,4,6,7", 10), set);
        assert_eq!(parse("0-2,4,6-7", 10), set);
        assert_eq!(format(&BTreeSet::new()), "");
    }

    #[test]
    fn parse_drops_out_of_range_and_garbage() {
        assert_eq!(parse("1,x,3-9", 5), [1, 3, 4].into());
    }
}
