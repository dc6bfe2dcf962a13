//! The write path through the router: a kubelet's pod status merge patch
//! (what every simulated node sends once per pod), its managedFields and
//! response, and a timing of it (`--ignored`).

use std::time::Instant;

use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::router;
use crate::test_fixture::{admin, fixture, Fixture};

impl Fixture {
    async fn send(&self, method: &str, uri: &str, ct: &str, agent: &str, body: &Value) -> Value {
        let (code, _, value) = self.raw(method, uri, ct, agent, body).await;
        assert!(
            code == StatusCode::OK || code == StatusCode::CREATED,
            "{method} {uri}: {code} {value}"
        );
        value
    }

    /// The code, Warning headers and body of a request.
    async fn raw(
        &self,
        method: &str,
        uri: &str,
        ct: &str,
        agent: &str,
        body: &Value,
    ) -> (StatusCode, Vec<String>, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header(http::header::CONTENT_TYPE, ct)
            .header(http::header::USER_AGENT, agent)
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap();
        req.extensions_mut().insert(admin());
        let resp = router(self.server.clone()).oneshot(req).await.unwrap();
        let code = resp.status();
        let warnings = resp
            .headers()
            .get_all(http::header::WARNING)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        (code, warnings, value)
    }

    /// A Deployment's pod as the ReplicaSet controller creates it, bound
    /// by the scheduler.
    async fn bound_pod(&self, name: &str) -> Value {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": name, "namespace": "default",
                "labels": {"app": "web", "pod-template-hash": "5d8f7c9b6"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "web-5d8f7c9b6", "uid": "5e0ed7a4-53b4-4d2a-9a52-6b1f0a1f3c11",
                    "controller": true, "blockOwnerDeletion": true}],
            },
            "spec": {"containers": [{"name": "web", "image": "nginx:1.25",
                "ports": [{"containerPort": 80}],
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]},
        });
        let uri = "/api/v1/namespaces/default/pods";
        self.send(
            "POST",
            uri,
            "application/json",
            "kube-controller-manager/v1.32",
            &pod,
        )
        .await;
        let binding = json!({"apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": name, "namespace": "default"},
            "target": {"apiVersion": "v1", "kind": "Node", "name": "sim-0001"}});
        let uri = format!("/api/v1/namespaces/default/pods/{name}/binding");
        self.send(
            "POST",
            &uri,
            "application/json",
            "kube-scheduler/v1.32",
            &binding,
        )
        .await;
        let uri = format!("/api/v1/namespaces/default/pods/{name}");
        self.send("GET", &uri, "", "test", &Value::Null).await
    }

    async fn patch_status(&self, name: &str, status: &Value) -> Value {
        let uri = format!("/api/v1/namespaces/default/pods/{name}/status");
        let patch = json!({ "status": status });
        self.send(
            "PATCH",
            &uri,
            "application/merge-patch+json",
            "kube-rs/0.99",
            &patch,
        )
        .await
    }
}

/// The status a simulated kubelet writes for a running pod; `n` varies
/// the start time so that successive patches change the object.
fn running_status(n: u32) -> Value {
    let t = format!("2026-11-22T19:{:02}:{:02}Z", (n / 60) % 60, n % 60);
    json!({
        "phase": "Running",
        "conditions": [
            {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": t},
            {"type": "Initialized", "status": "True", "lastTransitionTime": t},
            {"type": "Ready", "status": "True", "lastTransitionTime": t},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": t},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-22T19:00:00Z"},
        ],
        "hostIP": "10.0.0.1", "hostIPs": [{"ip": "10.0.0.1"}],
        "podIP": "10.42.1.7", "podIPs": [{"ip": "10.42.1.7"}],
        "startTime": t,
        "qosClass": "Burstable",
        "containerStatuses": [{
            "name": "web", "ready": true, "restartCount": 0, "started": true,
            "image": "docker.io/library/nginx:1.25",
            "imageID": "docker.io/library/nginx@sha256:0d17b565c37bcbd895e9d92315a05c1c3c9a29f762b011a10c54a66cd53c9b31",
            "containerID": "simulated://4f1c2a9d0e8b7c6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a",
            "state": {"running": {"startedAt": t}},
            "lastState": {},
        }],
    })
}

#[tokio::test]
async fn a_status_patch_changes_status_and_records_its_manager() {
    let f = fixture().await;
    let before = f.bound_pod("p").await;
    let after = f.patch_status("p", &running_status(1)).await;
    assert_eq!(after["status"]["phase"], "Running");
    assert_eq!(after["status"]["podIP"], "10.42.1.7");
    assert_eq!(after["spec"], before["spec"]);
    assert_ne!(
        after["metadata"]["resourceVersion"],
        before["metadata"]["resourceVersion"]
    );
    // Other managers' entries are what they were.
    let entries = |obj: &Value| -> Vec<Value> {
        obj["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["manager"] != "kube-rs")
            .cloned()
            .collect()
    };
    assert_eq!(entries(&after), entries(&before));
    assert_eq!(entries(&before).len(), 1, "{}", before["metadata"]);
    // What was returned is what is stored.
    let got = f
        .send(
            "GET",
            "/api/v1/namespaces/default/pods/p",
            "",
            "test",
            &Value::Null,
        )
        .await;
    assert_eq!(got, after);
}

/// Unknown fields in a status patch are warned about, or refused under
/// Strict, as when the whole object was decoded; changes outside status
/// are dropped but still decoded.
#[tokio::test]
async fn a_status_patch_with_unknown_fields() {
    let f = fixture().await;
    let before = f.bound_pod("p").await;
    let uri = "/api/v1/namespaces/default/pods/p/status";
    let ct = "application/merge-patch+json";
    let patch = json!({"status": {"phase": "Running", "bogus": 1,
        "containerStatuses": [{"name": "web", "ready": false, "restartCount": 0,
            "image": "nginx", "imageID": "", "nope": true}]}});
    let (code, warnings, got) = f.raw("PATCH", uri, ct, "t", &patch).await;
    assert_eq!(code, StatusCode::OK, "{got}");
    assert_eq!(
        warnings,
        [
            "299 - \"unknown field \\\"status.bogus\\\"\"",
            "299 - \"unknown field \\\"status.containerStatuses[0].nope\\\"\"",
        ]
    );
    assert_eq!(got["status"]["phase"], "Running");
    assert!(got["status"].get("bogus").is_none(), "{got}");

    let strict = format!("{uri}?fieldValidation=Strict");
    let (code, _, got) = f.raw("PATCH", &strict, ct, "t", &patch).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{got}");
    assert!(
        got["message"]
            .as_str()
            .unwrap()
            .contains("unknown field \"status.bogus\""),
        "{got}"
    );

    let bad = json!({"status": {"conditions": "not a list"}});
    let (code, _, got) = f.raw("PATCH", uri, ct, "t", &bad).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{got}");

    // Spec through the status endpoint: decoded, warned, not stored.
    let both =
        json!({"spec": {"bogus": 1, "nodeName": "elsewhere"}, "status": {"phase": "Failed"}});
    let (code, warnings, got) = f.raw("PATCH", uri, ct, "t", &both).await;
    assert_eq!(code, StatusCode::OK, "{got}");
    assert_eq!(warnings, ["299 - \"unknown field \\\"spec.bogus\\\"\""]);
    assert_eq!(got["status"]["phase"], "Failed");
    assert_eq!(got["spec"], before["spec"]);
}

/// µs per pod status patch through the router (run with `--ignored
/// --nocapture`, in release for numbers worth comparing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn time_pod_status_patch() {
    let f = fixture().await;
    let pods = 200u32;
    for i in 0..pods {
        f.bound_pod(&format!("p{i}")).await;
    }
    let mut best = f64::MAX;
    for round in 0..5u32 {
        let start = Instant::now();
        for i in 0..pods {
            f.patch_status(&format!("p{i}"), &running_status(round + 1))
                .await;
        }
        let us = start.elapsed().as_secs_f64() * 1e6 / f64::from(pods);
        best = best.min(us);
        println!("round {round}: {us:.1} µs per pod status patch");
    }
    println!("best: {best:.1} µs per pod status patch");
}
