//! Dynamic admission as users meet it: webhooks served by this test over
//! HTTPS on loopback (a certificate from a CA made here, given to the API
//! server as the caBundle), registered with `clientConfig.url` or
//! `clientConfig.service` (a selector-less Service whose EndpointSlice
//! points at the test's server), and the real kubectl creating, changing,
//! deleting and exec'ing into objects.

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::{eventually, free_port, Server};

const LONG: Duration = Duration::from_secs(60);

/// One request a webhook got: path, operation, kind, name.
type Seen = Arc<Mutex<Vec<(String, String, String, String)>>>;

/// The test's webhook server; stops with the test process.
struct Hooks {
    addr: SocketAddr,
    ca_bundle: String,
    seen: Seen,
}

impl Hooks {
    fn start() -> Hooks {
        let now = time::OffsetDateTime::now_utc();
        let ca = rkube_pki::Ca::generate("webhook-ca", now).unwrap();
        let sans = rkube_pki::SubjectAltNames::parse(&["127.0.0.1", "hook.default.svc"]).unwrap();
        let serving =
            rkube_pki::certs::issue_serving_cert(&ca, &sans, time::Duration::days(1), now).unwrap();
        let mut tls = rkube_pki::tls::server_config(&serving, &[]).unwrap();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Seen = Arc::default();
        let recorded = seen.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let (acceptor, seen) = (acceptor.clone(), recorded.clone());
                    tokio::spawn(async move {
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            serve(tls, seen).await;
                        }
                    });
                }
            });
        });
        Hooks {
            addr,
            ca_bundle: base64::engine::general_purpose::STANDARD.encode(ca.cert_pem()),
            seen,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    fn seen(&self, path: &str) -> Vec<(String, String, String, String)> {
        let seen = self.seen.lock().unwrap();
        seen.iter().filter(|s| s.0 == path).cloned().collect()
    }
}

/// One HTTP/1.1 exchange on a connection, then close.
async fn serve<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut conn: S, seen: Seen) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let (head_end, length) = loop {
        let Ok(n) = conn.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break (end + 4, length);
        }
    };
    while buf.len() < head_end + length {
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let path = head
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .split('?')
        .next()
        .unwrap_or("/")
        .to_string();
    let review: Value =
        serde_json::from_slice(&buf[head_end..head_end + length]).unwrap_or_default();
    let req = &review["request"];
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    seen.lock().unwrap().push((
        path.clone(),
        text(&req["operation"]),
        text(&req["kind"]["kind"]),
        text(&req["name"]),
    ));
    if path == "/slow" {
        tokio::time::sleep(Duration::from_secs(20)).await;
    }
    let response = decide(&path, req);
    let body = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                      "response": response})
    .to_string();
    let reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(reply.as_bytes()).await;
    let _ = conn.shutdown().await;
}

/// The webhooks' decisions, by path.
fn decide(path: &str, req: &Value) -> Value {
    let uid = req["uid"].clone();
    let allow = json!({"uid": uid, "allowed": true});
    let deny = |message: &str| {
        json!({"uid": uid, "allowed": false,
               "status": {"code": 403, "reason": "Forbidden", "message": message}})
    };
    let labels = req["object"]["metadata"]["labels"].clone();
    let label_patch = |key: &str, value: &str| {
        let op = if labels.is_object() {
            json!({"op": "add", "path": format!("/metadata/labels/{key}"), "value": value})
        } else {
            json!({"op": "add", "path": "/metadata/labels", "value": {key: value}})
        };
        let patch = base64::engine::general_purpose::STANDARD.encode(json!([op]).to_string());
        json!({"uid": uid, "allowed": true, "patchType": "JSONPatch", "patch": patch})
    };
    match path {
        "/validate" => {
            let kind = req["kind"]["kind"].as_str().unwrap_or("");
            match req["operation"].as_str().unwrap_or("") {
                "CONNECT" => deny(&format!("no {kind} here")),
                "DELETE" if req["name"] == "keep-me" => deny("keep-me stays"),
                "CREATE" | "UPDATE" if req["object"]["data"]["forbidden"].is_string() => {
                    deny("configmaps may not carry the key forbidden")
                }
                _ => {
                    json!({"uid": uid, "allowed": true, "warnings": ["checked by the test webhook"]})
                }
            }
        }
        "/mutate-one" => label_patch("webhook-one", "seen"),
        "/add-init" => {
            let op = json!([{"op": "add", "path": "/spec/initContainers",
                             "value": [{"name": "added", "image": "busybox"}]}]);
            let patch = base64::engine::general_purpose::STANDARD.encode(op.to_string());
            json!({"uid": uid, "allowed": true, "patchType": "JSONPatch", "patch": patch})
        }
        "/mutate-two" => {
            let before = labels["webhook-one"].as_str().unwrap_or("none");
            label_patch("webhook-two", &format!("after-{before}"))
        }
        _ => allow,
    }
}

fn rule(ops: &[&str], resources: &[&str]) -> Value {
    json!({"operations": ops, "apiGroups": [""], "apiVersions": ["v1"], "resources": resources})
}

fn webhook(name: &str, url: &str, ca: &str, rules: Vec<Value>, extra: Value) -> Value {
    let mut hook = json!({
        "name": name,
        "clientConfig": {"url": url, "caBundle": ca},
        "rules": rules,
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
    });
    if let (Some(h), Some(e)) = (hook.as_object_mut(), extra.as_object()) {
        h.extend(e.clone());
    }
    hook
}

fn config(kind: &str, name: &str, hooks: Vec<Value>) -> String {
    json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
           "metadata": {"name": name}, "webhooks": hooks})
    .to_string()
}

/// A selector-less Service `hook` in default whose one EndpointSlice
/// points at the test's webhook server on loopback.
fn service_for(port: u16) -> String {
    json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hook", "namespace": "default"},
         "spec": {"ports": [{"name": "https", "port": 443, "targetPort": port}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "hook-1", "namespace": "default",
                      "labels": {"kubernetes.io/service-name": "hook"}},
         "addressType": "IPv4",
         "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
         "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}]},
    ]})
    .to_string()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn configmap(name: &str, ns: &str, labels: Value, data: Value) -> String {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": ns, "labels": labels}, "data": data})
    .to_string()
}

#[test]
fn validating_webhook_denies_creates_updates_deletes_and_exec() {
    let hooks = Hooks::start();
    let server = Server::start();
    let ca = hooks.ca_bundle.clone();
    let deny = webhook(
        "deny.rkube.test",
        &hooks.url("/validate"),
        &ca,
        vec![
            rule(&["CREATE", "UPDATE", "DELETE"], &["configmaps"]),
            rule(&["CONNECT"], &["pods/exec", "pods/attach"]),
        ],
        json!({"namespaceSelector": {"matchExpressions": [
            {"key": "skip-webhooks", "operator": "DoesNotExist"}]}}),
    );
    server.ok_stdin(
        &["create", "-f", "-"],
        &config("ValidatingWebhookConfiguration", "deny", vec![deny]),
    );
    // The server's copy of the configurations follows a watch: wait
    // until the webhook is in force (a dry run is side-effect free).
    assert!(
        eventually(LONG, || !server
            .kubectl(&[
                "create",
                "configmap",
                "probe",
                "--from-literal=forbidden=1",
                "--dry-run=server"
            ])
            .status
            .success()),
        "the webhook never took effect:\n{}",
        server.log_tail(30)
    );

    // CREATE: denied with the webhook's message; others pass.
    let err = server.fails(&["create", "configmap", "bad", "--from-literal=forbidden=1"]);
    assert!(
        err.contains(
            "admission webhook \"deny.rkube.test\" denied the request: configmaps may not carry the key forbidden"
        ),
        "{err}"
    );
    assert!(server.kubectl(&["get", "configmap", "bad"]).status.code() != Some(0));
    let out = server.kubectl(&["create", "configmap", "good", "--from-literal=ok=1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The webhook's warning reaches kubectl.
    assert!(
        stderr(&out).contains("Warning: checked by the test webhook"),
        "{}",
        stderr(&out)
    );

    // UPDATE (a patch): denied the same way, and nothing changed.
    let err = server.fails(&[
        "patch",
        "configmap",
        "good",
        "--type=merge",
        "-p",
        r#"{"data":{"forbidden":"x"}}"#,
    ]);
    assert!(
        err.contains("denied the request: configmaps may not carry"),
        "{err}"
    );
    assert_eq!(
        server.jsonpath(&["get", "configmap", "good"], "{.data}"),
        r#"{"ok":"1"}"#
    );

    // DELETE: the webhook sees the stored object and refuses.
    server.ok(&["create", "configmap", "keep-me"]);
    let err = server.fails(&["delete", "configmap", "keep-me"]);
    assert!(
        err.contains("admission webhook \"deny.rkube.test\" denied the request: keep-me stays"),
        "{err}"
    );
    server.ok(&["get", "configmap", "keep-me"]);
    server.ok(&["delete", "configmap", "good"]);
    let deletes = hooks.seen("/validate");
    assert!(
        deletes
            .iter()
            .any(|s| s.1 == "DELETE" && s.2 == "ConfigMap" && s.3 == "good"),
        "{deletes:?}"
    );

    // A namespace the selector leaves out is not sent to the webhook.
    server.ok(&["create", "namespace", "skipped"]);
    server.ok(&["label", "namespace", "skipped", "skip-webhooks=true"]);
    assert!(
        eventually(LONG, || server
            .kubectl(&[
                "create",
                "configmap",
                "free",
                "-n",
                "skipped",
                "--from-literal=forbidden=1"
            ])
            .status
            .success()),
        "the namespaceSelector did not skip the webhook:\n{}",
        server.log_tail(30)
    );

    // CONNECT: exec and attach are refused before the pod is looked at
    // (it is not even scheduled: there is no node).
    server.ok(&["run", "shell", "--image=busybox", "--", "sleep", "3600"]);
    let err = server.fails(&["exec", "shell", "--", "true"]);
    assert!(
        err.contains(
            "admission webhook \"deny.rkube.test\" denied the request: no PodExecOptions here"
        ),
        "{err}"
    );
    let err = server.fails(&["attach", "shell"]);
    assert!(
        err.contains("denied the request: no PodAttachOptions here"),
        "{err}"
    );
    let connects = hooks.seen("/validate");
    assert!(
        connects
            .iter()
            .any(|s| s.1 == "CONNECT" && s.2 == "PodExecOptions" && s.3 == "shell"),
        "{connects:?}"
    );

    // Webhook configurations themselves never go to webhooks, even to
    // one whose rules name them.
    let all = webhook(
        "all.rkube.test",
        &hooks.url("/record"),
        &ca,
        vec![
            json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"],
                    "resources": ["*"]}),
        ],
        json!({}),
    );
    server.ok_stdin(
        &["create", "-f", "-"],
        &config("ValidatingWebhookConfiguration", "all", vec![all]),
    );
    assert!(
        eventually(LONG, || {
            server.ok(&["label", "configmap", "keep-me", "--overwrite", "poke=yes"]);
            !hooks.seen("/record").is_empty()
        }),
        "the catch-all webhook never took effect"
    );
    server.ok(&["delete", "validatingwebhookconfiguration", "all"]);
    let recorded = hooks.seen("/record");
    assert!(
        !recorded
            .iter()
            .any(|s| s.2.ends_with("WebhookConfiguration")),
        "{recorded:?}"
    );
}

#[test]
fn mutating_webhooks_change_objects_in_order() {
    let hooks = Hooks::start();
    let server = Server::start();
    let ca = hooks.ca_bundle.clone();
    let selector = json!({"objectSelector": {"matchExpressions": [
        {"key": "no-mutate", "operator": "DoesNotExist"}]}});
    let mut one_extra = selector.clone();
    one_extra["matchConditions"] =
        json!([{"name": "not-skip-me", "expression": "object.metadata.name != 'skip-me'"}]);
    one_extra["reinvocationPolicy"] = "IfNeeded".into();
    let one = webhook(
        "one.rkube.test",
        &hooks.url("/mutate-one"),
        &ca,
        vec![rule(&["CREATE"], &["pods", "configmaps"])],
        one_extra,
    );
    let two = webhook(
        "two.rkube.test",
        &hooks.url("/mutate-two"),
        &ca,
        vec![rule(&["CREATE"], &["pods", "configmaps"])],
        selector,
    );
    let init = webhook(
        "init.rkube.test",
        &hooks.url("/add-init"),
        &ca,
        vec![rule(&["CREATE"], &["pods"])],
        json!({}),
    );
    server.ok_stdin(
        &["create", "-f", "-"],
        &config("MutatingWebhookConfiguration", "c-init", vec![init]),
    );
    // Configurations run by name: b-second's webhook sees a-first's label.
    server.ok_stdin(
        &["create", "-f", "-"],
        &config("MutatingWebhookConfiguration", "b-second", vec![two]),
    );
    server.ok_stdin(
        &["create", "-f", "-"],
        &config("MutatingWebhookConfiguration", "a-first", vec![one]),
    );
    let labels = |args: &[&str]| server.jsonpath(args, "{.metadata.labels}");
    let want = r#""webhook-one":"seen","webhook-two":"after-seen""#;
    assert!(
        eventually(LONG, || labels(&[
            "create",
            "configmap",
            "probe",
            "--dry-run=server"
        ])
        .contains(want)),
        "the mutating webhooks never took effect:\n{}",
        server.log_tail(30)
    );

    server.ok(&["create", "configmap", "m1", "--from-literal=a=b"]);
    let got = labels(&["get", "configmap", "m1"]);
    assert!(got.contains(want), "{got}");
    server.ok(&["run", "web", "--image=busybox"]);
    let got = labels(&["get", "pod", "web"]);
    assert!(got.contains(want), "{got}");
    assert!(got.contains(r#""run":"web""#), "{got}");
    // The container a webhook added got the server's defaults.
    let added = server.jsonpath(
        &["get", "pod", "web"],
        "{.spec.initContainers[0].name}/{.spec.initContainers[0].terminationMessagePolicy}",
    );
    assert_eq!(added, "added/File");
    // Shown by kubectl get, as users see it.
    let shown = server.ok(&["get", "pod", "web", "-L", "webhook-two"]);
    assert!(shown.contains("after-seen"), "{shown}");

    // The first webhook (IfNeeded) was called again after the second
    // changed the object; the second (Never) once.
    let calls = |path: &str, name: &str| hooks.seen(path).iter().filter(|s| s.3 == name).count();
    assert_eq!(calls("/mutate-one", "m1"), 2);
    assert_eq!(calls("/mutate-two", "m1"), 1);

    // The first webhook's matchCondition skips this name; the second
    // still runs and sees no label from the first.
    server.ok(&["create", "configmap", "skip-me"]);
    assert_eq!(
        labels(&["get", "configmap", "skip-me"]),
        r#"{"webhook-two":"after-none"}"#
    );

    // The objectSelector leaves labelled objects alone.
    server.ok_stdin(
        &["create", "-f", "-"],
        &configmap("plain", "default", json!({"no-mutate": "true"}), json!({})),
    );
    assert_eq!(
        labels(&["get", "configmap", "plain"]),
        r#"{"no-mutate":"true"}"#
    );
    let names: Vec<String> = hooks.seen("/mutate-one").into_iter().map(|s| s.3).collect();
    assert!(!names.contains(&"plain".to_string()), "{names:?}");
    assert!(names.contains(&"m1".to_string()), "{names:?}");
}

#[test]
fn failure_policy_and_timeout_decide_when_a_webhook_cannot_answer() {
    let hooks = Hooks::start();
    let server = Server::start();
    let ca = hooks.ca_bundle.clone();
    // Nobody listens there.
    let dead = format!("https://127.0.0.1:{}/dead", free_port());
    let only = |value: &str| json!({"objectSelector": {"matchLabels": {"target": value}}});
    let fail = webhook(
        "fail.rkube.test",
        &dead,
        &ca,
        vec![rule(&["CREATE"], &["configmaps"])],
        only("fail"),
    );
    let mut ignore_extra = only("ignore");
    ignore_extra["failurePolicy"] = "Ignore".into();
    let ignore = webhook(
        "ignore.rkube.test",
        &dead,
        &ca,
        vec![rule(&["CREATE"], &["configmaps"])],
        ignore_extra,
    );
    let mut slow_extra = only("slow");
    slow_extra["timeoutSeconds"] = 1.into();
    let slow = webhook(
        "slow.rkube.test",
        &hooks.url("/slow"),
        &ca,
        vec![rule(&["CREATE"], &["configmaps"])],
        slow_extra,
    );
    // A webhook behind a Service: the server connects to a ready
    // endpoint and checks the certificate for hook.default.svc.
    let mut svc_extra = only("svc");
    svc_extra["clientConfig"] = json!({"caBundle": ca,
        "service": {"namespace": "default", "name": "hook", "path": "/validate", "port": 443}});
    let by_service = webhook(
        "svc.rkube.test",
        "unused",
        &ca,
        vec![rule(&["CREATE"], &["configmaps"])],
        svc_extra,
    );
    // A matchCondition outside what the server evaluates fails closed.
    let mut cel_extra = only("cel");
    cel_extra["matchConditions"] =
        json!([{"name": "uses-authorizer", "expression": "authorizer.group('').check()"}]);
    let cel = webhook(
        "cel.rkube.test",
        &hooks.url("/record"),
        &ca,
        vec![rule(&["CREATE"], &["configmaps"])],
        cel_extra,
    );
    let mut missing_extra = only("missing");
    missing_extra["clientConfig"] = json!({"caBundle": ca,
        "service": {"namespace": "default", "name": "nobody", "path": "/validate"}});
    let missing = webhook(
        "missing.rkube.test",
        "unused",
        &ca,
        vec![rule(&["CREATE"], &["configmaps"])],
        missing_extra,
    );
    // A caBundle that did not sign the webhook's certificate.
    let other_ca = rkube_pki::Ca::generate("other-ca", time::OffsetDateTime::now_utc()).unwrap();
    let other_bundle = base64::engine::general_purpose::STANDARD.encode(other_ca.cert_pem());
    let untrusted = webhook(
        "untrusted.rkube.test",
        &hooks.url("/validate"),
        &other_bundle,
        vec![rule(&["CREATE"], &["configmaps"])],
        only("untrusted"),
    );
    server.ok_stdin(&["create", "-f", "-"], &service_for(hooks.addr.port()));
    server.ok_stdin(
        &["create", "-f", "-"],
        &config(
            "ValidatingWebhookConfiguration",
            "policies",
            vec![fail, ignore, slow, by_service, cel, missing, untrusted],
        ),
    );
    let create = |name: &str, target: &str| {
        server.kubectl_stdin(
            &["create", "-f", "-"],
            &configmap(
                name,
                "default",
                json!({"target": target}),
                json!({"a": "b"}),
            ),
        )
    };
    assert!(
        eventually(LONG, || !create("probe", "fail").status.success()),
        "the failing webhook never took effect"
    );
    let out = create("refused", "fail");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("failed calling webhook \"fail.rkube.test\": failed to call webhook: Post"),
        "{err}"
    );
    let out = create("let-through", "ignore");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = create("untouched", "none");
    assert!(out.status.success(), "{}", stderr(&out));

    let out = server.kubectl_stdin(
        &["create", "-f", "-"],
        &configmap(
            "svc-denied",
            "default",
            json!({"target": "svc"}),
            json!({"forbidden": "b"}),
        ),
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("admission webhook \"svc.rkube.test\" denied the request: configmaps may not carry the key forbidden"),
        "{err}"
    );
    let out = create("cel-refused", "cel");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(
            "failed calling webhook \"cel.rkube.test\": failed to evaluate match conditions"
        ),
        "{err}"
    );
    let out = create("no-service", "missing");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(
            "failed calling webhook \"missing.rkube.test\": failed to call webhook: \
             Post \"https://nobody.default.svc:443/validate?timeout=10s\": services \"nobody\" not found"
        ),
        "{err}"
    );
    let out = create("untrusted", "untrusted");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("failed calling webhook \"untrusted.rkube.test\"")
            && err.contains("invalid peer certificate"),
        "{err}"
    );
    let out = create("svc-allowed", "svc");
    assert!(out.status.success(), "{}", stderr(&out));

    // The slow webhook answers after 20 s; its 1 s timeout fails the
    // request long before.
    let started = Instant::now();
    let out = create("too-slow", "slow");
    let took = started.elapsed();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("failed calling webhook \"slow.rkube.test\"")
            && err.contains("context deadline exceeded"),
        "{err}"
    );
    assert!(took < Duration::from_secs(12), "took {took:?}");
    assert!(!hooks.seen("/slow").is_empty());
    let _ = std::io::stderr().flush();
}
