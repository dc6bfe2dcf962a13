//! Controller events pass upstream's event correlator (client-go's
//! `EventCorrelator`): a ReplicaSet creating 40 pods records nine
//! "Created pod" events, then one "(combined from similar events)" event
//! whose count rises until the spam filter's burst of 25 writes about the
//! object is spent.

mod support;

use std::time::Duration;

use support::{eventually, Server};

const WAIT: Duration = Duration::from_secs(90);

const RS: &str = r#"{
  "apiVersion": "apps/v1", "kind": "ReplicaSet",
  "metadata": {"name": "many"},
  "spec": {
    "replicas": 40,
    "selector": {"matchLabels": {"app": "many"}},
    "template": {
      "metadata": {"labels": {"app": "many"}},
      "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}
    }
  }
}"#;

/// (message, count) of the ReplicaSet's SuccessfulCreate events.
fn creates(server: &Server) -> Vec<(String, u32)> {
    let out = server.jsonpath(
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=many,involvedObject.kind=ReplicaSet",
        ],
        "{range .items[?(@.reason==\"SuccessfulCreate\")]}{.count}|{.message}\n{end}",
    );
    out.lines()
        .filter_map(|l| l.split_once('|'))
        .map(|(c, m)| (m.to_string(), c.parse().unwrap_or(0)))
        .collect()
}

#[test]
fn similar_events_are_combined_and_an_objects_events_are_rate_limited() {
    let server = Server::start();
    server.ok_stdin(&["apply", "-f", "-"], RS);
    server.wait_jsonpath(
        WAIT,
        &["get", "rs", "many"],
        "{.status.replicas}",
        "40",
        || server.ok(&["get", "rs,pods"]),
    );
    // 9 distinct events, the combined one created (count 1) and patched 15
    // times: the 25 writes the burst allows; the other 15 pods' events are
    // counted by the correlator but never written.
    let mut seen = Vec::new();
    let settled = eventually(WAIT, || {
        seen = creates(&server);
        seen.iter().any(|(m, c)| {
            m.starts_with("(combined from similar events): Created pod: many-") && *c == 16
        })
    });
    assert!(settled, "{seen:?}");
    let plain: Vec<_> = seen
        .iter()
        .filter(|(m, _)| m.starts_with("Created pod: many-"))
        .collect();
    assert_eq!(plain.len(), 9, "{seen:?}");
    assert!(plain.iter().all(|(_, c)| *c == 1), "{seen:?}");
    assert_eq!(seen.len(), 10, "{seen:?}");
    // kubectl shows the combined event like any other.
    let table = server.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=many",
    ]);
    assert!(table.contains("(combined from similar events)"), "{table}");
}
