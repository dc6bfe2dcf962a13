//! The FailedScheduling message, worded as upstream's `FitError`:
//! "0/3 nodes are available: 1 node(s) didn't match Pod's node
//! affinity/selector, 2 Insufficient cpu. preemption: 0/3 nodes are
//! available: 3 Preemption is not helpful for scheduling."
//!
//! Upstream counterpart: `framework.FitError.Error()` — each reason is
//! counted over the nodes, printed as "<count> <reason>", and the entries
//! sorted as strings (so "10 ..." sorts before "2 ...", as upstream).

use std::collections::HashMap;

/// What the cycle found, for the message.
pub struct Diagnosis<'a> {
    pub num_nodes: usize,
    /// A pre-filter rejected the pod outright.
    pub prefilter: Option<&'a str>,
    /// The reasons of every rejected node, one slice per node.
    pub reasons: Vec<&'a [String]>,
    /// The preemption outcome, already prefixed "preemption: ".
    pub postfilter: Option<&'a str>,
}

/// "<count> <reason>" entries, sorted, joined with ", ".
pub fn histogram<'a>(reasons: impl IntoIterator<Item = &'a str>) -> String {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for r in reasons {
        *counts.entry(r).or_default() += 1;
    }
    let mut entries: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
    entries.sort();
    entries.join(", ")
}

/// "0/N nodes are available: <histogram>" without the final period, the
/// form preemption's message takes inside the outer one.
pub fn nodes_unavailable<'a>(
    num_nodes: usize,
    reasons: impl IntoIterator<Item = &'a str>,
) -> String {
    format!("0/{num_nodes} nodes are available: {}", histogram(reasons))
}

/// The whole message.
pub fn fit_error(d: &Diagnosis) -> String {
    let mut msg = format!("0/{} nodes are available:", d.num_nodes);
    if let Some(pre) = d.prefilter {
        msg.push_str(&format!(" {pre}."));
    } else {
        let h = histogram(d.reasons.iter().flat_map(|r| r.iter().map(String::as_str)));
        if !h.is_empty() {
            msg.push_str(&format!(" {h}."));
        }
    }
    if let Some(post) = d.postfilter {
        msg.push_str(&format!(" {post}."));
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn upstream_shape() {
        let affinity = v(&["node(s) didn't match Pod's node affinity/selector"]);
        let taint = v(&["node(s) had untolerated taint {node.kubernetes.io/unreachable: }"]);
        let pre = format!(
            "preemption: {}",
            nodes_unavailable(3, ["Preemption is not helpful for scheduling"; 3])
        );
        let d = Diagnosis {
            num_nodes: 3,
            prefilter: None,
            reasons: vec![&taint, &affinity, &taint],
            postfilter: Some(&pre),
        };
        assert_eq!(
            fit_error(&d),
            "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, \
             2 node(s) had untolerated taint {node.kubernetes.io/unreachable: }. \
             preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn several_reasons_per_node_and_string_order() {
        let both = v(&["Insufficient cpu", "Insufficient memory"]);
        let cpu = v(&["Insufficient cpu"]);
        let mut reasons: Vec<&[String]> = vec![&both];
        for _ in 0..9 {
            reasons.push(&cpu);
        }
        let d = Diagnosis {
            num_nodes: 10,
            prefilter: None,
            reasons,
            postfilter: None,
        };
        assert_eq!(
            fit_error(&d),
            "0/10 nodes are available: 1 Insufficient memory, 10 Insufficient cpu."
        );
    }

    #[test]
    fn prefilter_message_replaces_the_histogram() {
        let d = Diagnosis {
            num_nodes: 2,
            prefilter: Some("node(s) didn't match pod topology spread constraints"),
            reasons: vec![],
            postfilter: None,
        };
        assert_eq!(
            fit_error(&d),
            "0/2 nodes are available: node(s) didn't match pod topology spread constraints."
        );
    }
}
