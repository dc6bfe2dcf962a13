//! The API server driven by the real kubectl: each step checks what kubectl
//! prints, as a user would read it.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{eventually, kubectl_bin, Server};

const APP: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: app-config
  labels: {app: web}
data:
  key: value
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: busybox:1.36
        ports: [{containerPort: 80}]
"#;

fn lines(s: &str) -> Vec<Vec<String>> {
    s.lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[test]
fn system_namespaces_exist_and_are_active() {
    let server = Server::start();
    let out = server.ok(&["get", "namespaces"]);
    let rows = lines(&out);
    assert_eq!(rows[0], ["NAME", "STATUS", "AGE"], "{out}");
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let row = rows
            .iter()
            .find(|r| r[0] == ns)
            .unwrap_or_else(|| panic!("{ns} missing:\n{out}"));
        assert_eq!(row[1], "Active", "{out}");
    }
    let label = server.ok(&[
        "get",
        "ns",
        "kube-system",
        "-o",
        "jsonpath={.metadata.labels.kubernetes\\.io/metadata\\.name}",
    ]);
    assert_eq!(label, "kube-system");
}

#[test]
fn requests_without_credentials_get_401() {
    let server = Server::start();
    // The same cluster and CA, but no client certificate.
    let config = std::fs::read_to_string(&server.kubeconfig).unwrap();
    let users = config.find("users:").expect("kubeconfig has users");
    let anonymous = format!(
        "{}users:\n- name: \"default\"\n  user: {{token: not-a-valid-token}}\n",
        &config[..users]
    );
    let path = server.dir.path().join("anonymous.yaml");
    std::fs::write(&path, anonymous).unwrap();
    let out = kubectl_bin("kubectl", &path, &["get", "configmaps"], None);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("You must be logged in to the server"),
        "{stderr}"
    );
    // Health stays public, as on kube-apiserver.
    let out = kubectl_bin("kubectl", &path, &["get", "--raw", "/healthz"], None);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok");
}

#[test]
fn apply_get_label_patch_delete() {
    let server = Server::start();
    let out = server.ok_stdin(&["apply", "--validate=false", "-f", "-"], APP);
    assert_eq!(
        out,
        "configmap/app-config created\ndeployment.apps/web created\n"
    );
    let out = server.ok_stdin(&["apply", "--validate=false", "-f", "-"], APP);
    assert_eq!(
        out,
        "configmap/app-config unchanged\ndeployment.apps/web unchanged\n"
    );

    let out = server.ok(&["get", "deployments", "-o", "wide"]);
    let rows = lines(&out);
    assert_eq!(
        rows[0],
        [
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]
    );
    assert_eq!(rows[1][0], "web");
    assert_eq!(rows[1][1], "0/2");
    assert_eq!(&rows[1][5..], ["web", "busybox:1.36", "app=web"]);

    let out = server.ok(&["get", "configmaps", "-l", "app=web", "--show-labels"]);
    let rows = lines(&out);
    assert_eq!(rows[0], ["NAME", "DATA", "AGE", "LABELS"]);
    assert_eq!(
        (
            rows[1][0].as_str(),
            rows[1][1].as_str(),
            rows[1][3].as_str()
        ),
        ("app-config", "1", "app=web")
    );
    assert!(!server
        .ok(&["get", "configmaps", "-l", "app!=web", "-o", "name"])
        .contains("app-config"));

    assert_eq!(
        server.ok(&["label", "configmap", "app-config", "tier=front"]),
        "configmap/app-config labeled\n"
    );
    assert_eq!(
        server.ok(&["annotate", "configmap", "app-config", "note=x"]),
        "configmap/app-config annotated\n"
    );
    server.ok(&[
        "patch",
        "configmap",
        "app-config",
        "--type=merge",
        "-p",
        r#"{"data":{"k2":"v2"}}"#,
    ]);
    server.ok(&[
        "patch",
        "configmap",
        "app-config",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/data/k3","value":"v3"}]"#,
    ]);
    let data = server.ok(&["get", "configmap", "app-config", "-o", "jsonpath={.data}"]);
    assert_eq!(data, r#"{"k2":"v2","k3":"v3","key":"value"}"#);
    // Strategic merge: containers merge by name, so the image changes and
    // the ports stay.
    server.ok(&[
        "patch",
        "deployment",
        "web",
        "-p",
        r#"{"spec":{"replicas":3,"template":{"spec":{"containers":[{"name":"web","image":"busybox:1.37"}]}}}}"#,
    ]);
    let got = server.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].ports[0].containerPort} {.metadata.generation}",
    ]);
    assert_eq!(got, "3 busybox:1.37 80 2");
    let labels = server.ok(&[
        "get",
        "cm",
        "app-config",
        "-o",
        "jsonpath={.metadata.labels}",
    ]);
    assert_eq!(labels, r#"{"app":"web","tier":"front"}"#);

    assert_eq!(
        server.ok(&["delete", "configmap", "app-config"]),
        "configmap \"app-config\" deleted\n"
    );
    let err = server.fails(&["get", "configmap", "app-config"]);
    assert!(
        err.contains(r#"configmaps "app-config" not found"#),
        "{err}"
    );
    let out = server.kubectl(&["get", "deployments", "-n", "kube-public"]);
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("No resources found in kube-public namespace."));
}

#[test]
fn errors_are_statuses_kubectl_can_print() {
    let server = Server::start();
    // kubectl looks the namespace up after a 404 and reports it.
    let err = server.fails(&["get", "configmaps", "-n", "nope", "x"]);
    assert!(err.contains(r#"namespaces "nope" not found"#), "{err}");
    let err = server.fails(&["get", "configmaps", "x"]);
    assert!(err.contains(r#"configmaps "x" not found"#), "{err}");
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: nope}\n";
    let err = String::from_utf8_lossy(
        &server
            .kubectl_stdin(&["create", "--validate=false", "-f", "-"], cm)
            .stderr,
    )
    .into_owned();
    assert!(err.contains(r#"namespaces "nope" not found"#), "{err}");

    let bad = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Not_Valid}\n";
    let out = server.kubectl_stdin(&["create", "--validate=false", "-f", "-"], bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            r#"ConfigMap "Not_Valid" is invalid: metadata.name: Invalid value: "Not_Valid""#
        ),
        "{err}"
    );

    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: dup}\n";
    server.ok_stdin(&["create", "--validate=false", "-f", "-"], cm);
    let out = server.kubectl_stdin(&["create", "--validate=false", "-f", "-"], cm);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(r#"configmaps "dup" already exists"#), "{err}");

    // A stale resourceVersion is a conflict.
    let current = server.ok(&["get", "cm", "dup", "-o", "json"]);
    server.ok(&["label", "cm", "dup", "x=1"]);
    let out = server.kubectl_stdin(&["replace", "--validate=false", "-f", "-"], &current);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "the object has been modified; please apply your changes to the latest version"
        ),
        "{err}"
    );

    // Malformed JSON is a 400, not a crash.
    let raw = server.dir.path().join("bad.json");
    std::fs::write(&raw, "{not json").unwrap();
    let out = server.kubectl(&[
        "create",
        "--raw",
        "/api/v1/namespaces/default/configmaps",
        "-f",
        raw.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        server.ok(&["get", "--raw", "/healthz"]) == "ok",
        "server survived"
    );
}

#[test]
fn watch_sees_changes() {
    let server = Server::start();
    let mut child = Command::new("kubectl")
        .env("KUBECONFIG", &server.kubeconfig)
        .args(["get", "configmaps", "--watch", "-o", "name"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Creating until the watcher reports it also covers the watch starting
    // after the first create.
    let mut seen = false;
    for i in 0..50 {
        server.ok_stdin(
            &["create", "--validate=false", "-f", "-"],
            &format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: w{i}}}\n"),
        );
        // Other configmaps (kube-root-ca.crt) may come first.
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            if line.starts_with("configmap/w") {
                seen = true;
            }
        }
        if seen {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen, "kubectl get --watch printed nothing");
}

#[test]
fn data_survives_kill_9() {
    let server = Server::start();
    server.ok_stdin(&["apply", "--validate=false", "-f", "-"], APP);
    let dir = server.kill();
    let server = Server::start_in(dir, &[]);
    let got = server.ok(&["get", "cm", "app-config", "-o", "jsonpath={.data.key}"]);
    assert_eq!(got, "value");
    assert!(eventually(Duration::from_secs(5), || server
        .ok(&["get", "deploy", "-o", "name"])
        == "deployment.apps/web\n"));
}

#[test]
fn old_kubectl_versions_work() {
    let server = Server::start();
    for bin in ["kubectl.1.27", "kubectl.1.29"] {
        let name = bin.replace('.', "-");
        let out = kubectl_bin(
            bin,
            &server.kubeconfig,
            &["create", "configmap", &name, "--from-literal=a=b"],
            None,
        );
        assert!(
            out.status.success(),
            "{bin}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("configmap/{name} created\n")
        );
        let out = kubectl_bin(
            bin,
            &server.kubeconfig,
            &["get", "configmap", &name, "-o", "jsonpath={.data.a}"],
            None,
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "b", "{bin}");
    }
}

#[test]
fn service_account_tokens_authenticate_until_the_account_goes() {
    let server = Server::start();
    server.ok_stdin(
        &["apply", "--validate=false", "-f", "-"],
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: bot}\n",
    );
    let create = |duration: &str| {
        kubectl_bin(
            "kubectl.1.29",
            &server.kubeconfig,
            &["create", "token", "bot", duration],
            None,
        )
    };
    let out = create("--duration=20m");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let err = String::from_utf8_lossy(&create("--duration=5m").stderr).into_owned();
    assert!(
        err.contains("may not specify a duration less than 10 minutes"),
        "{err}"
    );

    // A kubeconfig that carries only a token, no client certificate.
    let config = std::fs::read_to_string(&server.kubeconfig).unwrap();
    let users = config.find("users:").unwrap();
    let with_token = |t: &str| {
        let path = server.dir.path().join("token.yaml");
        let user = format!("users:\n- name: \"default\"\n  user: {{token: \"{t}\"}}\n");
        std::fs::write(&path, format!("{}{user}", &config[..users])).unwrap();
        path
    };
    let get = |t: &str| {
        kubectl_bin(
            "kubectl",
            &with_token(t),
            &["get", "namespaces", "-o", "name"],
            None,
        )
    };
    let out = get(&token);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("namespace/default"),
        "{out:?}"
    );
    let out = get("not.a.token");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("You must be logged in"),
        "{out:?}"
    );
    server.ok(&["delete", "serviceaccount", "bot"]);
    let out = get(&token);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("You must be logged in"),
        "{out:?}"
    );
}

#[test]
fn typed_create_commands_send_protobuf_and_work() {
    let server = Server::start();
    let steps: &[(&[&str], &str)] = &[
        (
            &["create", "configmap", "cfg", "--from-literal=a=b"],
            "configmap/cfg created\n",
        ),
        (
            &["create", "secret", "generic", "sec", "--from-literal=k=v"],
            "secret/sec created\n",
        ),
        (
            &[
                "create",
                "deployment",
                "web",
                "--image=busybox:1.36",
                "--replicas=2",
                "--port=80",
            ],
            "deployment.apps/web created\n",
        ),
        (
            &["create", "service", "clusterip", "svc", "--tcp=80:8080"],
            "service/svc created\n",
        ),
        (
            &[
                "create",
                "job",
                "once",
                "--image=busybox:1.36",
                "--",
                "true",
            ],
            "job.batch/once created\n",
        ),
        (
            &["create", "namespace", "team-a"],
            "namespace/team-a created\n",
        ),
        (
            &["create", "serviceaccount", "robot"],
            "serviceaccount/robot created\n",
        ),
    ];
    for (args, printed) in steps {
        assert_eq!(server.ok(args), *printed, "kubectl {args:?}");
    }
    assert_eq!(
        server.ok(&["get", "cm", "cfg", "-o", "jsonpath={.data.a}"]),
        "b"
    );
    assert_eq!(
        server.ok(&["get", "secret", "sec", "-o", "jsonpath={.data.k}"]),
        "dg=="
    );
    // Defaulting as upstream: the Deployment's strategy and its pod
    // template's policies.
    let got = server.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.replicas} {.spec.strategy.type} {.spec.template.spec.containers[0].imagePullPolicy} {.spec.template.spec.restartPolicy}",
    ]);
    assert_eq!(got, "2 RollingUpdate IfNotPresent Always");
    let got = server.ok(&[
        "get",
        "svc",
        "svc",
        "-o",
        "jsonpath={.spec.ports[0].port} {.spec.ports[0].targetPort} {.spec.type}",
    ]);
    assert_eq!(got, "80 8080 ClusterIP");
    assert!(server.ok(&["get", "ns"]).contains("team-a"));
}

#[test]
fn field_validation_and_explain_use_the_served_schemas() {
    let server = Server::start();
    let bad = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: bad}\nspec:\n  replicas: 1\n  bogus: 2\n  selector: {matchLabels: {app: bad}}\n  template:\n    metadata: {labels: {app: bad}}\n    spec:\n      containers: [{name: c, image: busybox, nope: 1}]\n";
    let out = server.kubectl_stdin(&["apply", "-f", "-"], bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"strict decoding error: unknown field "spec.bogus", unknown field "spec.template.spec.containers[0].nope""#),
        "{err}"
    );
    let out = server.kubectl_stdin(&["apply", "--validate=warn", "-f", "-"], bad);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(r#"Warning: unknown field "spec.bogus""#));
    assert_eq!(
        server.ok(&["get", "deploy", "bad", "-o", "jsonpath={.spec.bogus}"]),
        ""
    );
    // Quantities are stored in their string form, as the Go types keep them.
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: q}\nspec:\n  containers:\n  - {name: c, image: busybox, resources: {limits: {cpu: 1}}}\n";
    server.ok_stdin(&["apply", "-f", "-"], pod);
    assert_eq!(
        server.ok(&[
            "get",
            "pod",
            "q",
            "-o",
            "jsonpath={.spec.containers[0].resources.limits.cpu}"
        ]),
        "1"
    );
    let out = server.ok(&["get", "pod", "q", "-o", "json"]);
    assert!(out.contains(r#""cpu": "1""#), "{out}");

    let explained = server.ok(&["explain", "deployment.spec.strategy"]);
    assert!(
        explained.contains("KIND:       Deployment")
            && explained.contains("FIELD: strategy <DeploymentStrategy>"),
        "{explained}"
    );
    let resources = server.ok(&["api-resources"]);
    assert!(
        resources.lines().any(
            |l| l.split_whitespace().collect::<Vec<_>>() == ["pods", "po", "v1", "true", "Pod"]
        ),
        "{resources}"
    );
}

#[test]
fn server_side_apply_tracks_owners_and_conflicts() {
    let server = Server::start();
    assert_eq!(
        server.ok_stdin(&["apply", "--server-side", "-f", "-"], APP),
        "configmap/app-config serverside-applied\ndeployment.apps/web serverside-applied\n"
    );
    let managers = server.ok(&[
        "get",
        "deploy",
        "web",
        "--show-managed-fields",
        "-o",
        "jsonpath={range .metadata.managedFields[*]}{.manager}/{.operation}/{.subresource} {end}",
    ]);
    // The deployment controller's writes (its revision annotation, its
    // status) are recorded beside the apply, under its own manager.
    let main: Vec<&str> = managers
        .split_whitespace()
        .filter(|m| m.starts_with("kubectl"))
        .collect();
    assert_eq!(main, ["kubectl/Apply/"], "{managers}");
    server.ok(&["scale", "deploy", "web", "--replicas=3"]);
    let changed = APP.replace("replicas: 2", "replicas: 4");
    let out = server.kubectl_stdin(&["apply", "--server-side", "-f", "-"], &changed);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"Apply failed with 1 conflict: conflict with "kubectl" with subresource "scale" using apps/v1: .spec.replicas"#),
        "{err}"
    );
    server.ok_stdin(
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        &changed,
    );
    assert_eq!(
        server.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
        "4"
    );
    // Dropping a field from the applied configuration removes it.
    let fewer = APP.replace("  labels: {app: web}\n", "");
    server.ok_stdin(
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        &fewer,
    );
    assert_eq!(
        server.ok(&[
            "get",
            "cm",
            "app-config",
            "-o",
            "jsonpath={.metadata.labels}"
        ]),
        ""
    );
    server.ok(&["label", "cm", "app-config", "x=y"]);
    let managers = server.ok(&[
        "get",
        "cm",
        "app-config",
        "--show-managed-fields",
        "-o",
        "jsonpath={range .metadata.managedFields[*]}{.manager}/{.operation} {end}",
    ]);
    assert_eq!(managers, "kubectl/Apply kubectl-label/Update ");
}

#[test]
fn namespaces_are_emptied_then_removed_and_dependents_follow_owners() {
    let server = Server::start();
    server.ok(&["create", "namespace", "doomed"]);
    // The controllers give every namespace its service account and CA.
    assert!(eventually(Duration::from_secs(10), || {
        server
            .kubectl(&[
                "get",
                "-n",
                "doomed",
                "serviceaccount/default",
                "configmap/kube-root-ca.crt",
            ])
            .status
            .success()
    }));
    server.ok(&[
        "create",
        "-n",
        "doomed",
        "configmap",
        "a",
        "--from-literal=x=y",
    ]);
    // kubectl waits until the namespace is gone.
    assert_eq!(
        server.ok(&["delete", "namespace", "doomed", "--timeout=30s"]),
        "namespace \"doomed\" deleted\n"
    );
    assert!(!server
        .ok(&["get", "namespaces", "-o", "name"])
        .contains("doomed"));

    // Background cascade: a dependent goes with its owner.
    server.ok(&["create", "configmap", "owner", "--from-literal=a=b"]);
    let uid = server.ok(&["get", "cm", "owner", "-o", "jsonpath={.metadata.uid}"]);
    let dependent = |name: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  ownerReferences:\n  - {{apiVersion: v1, kind: ConfigMap, name: owner, uid: {uid}}}\n"
        )
    };
    server.ok_stdin(&["create", "-f", "-"], &dependent("child"));
    server.ok(&["delete", "cm", "owner", "--cascade=background"]);
    assert!(eventually(Duration::from_secs(15), || !server
        .kubectl(&["get", "cm", "child"])
        .status
        .success()));

    // Orphan: the dependent stays, without the reference.
    server.ok(&["create", "configmap", "owner", "--from-literal=a=b"]);
    let uid2 = server.ok(&["get", "cm", "owner", "-o", "jsonpath={.metadata.uid}"]);
    server.ok_stdin(
        &["create", "-f", "-"],
        &dependent("orphan").replace(&uid, &uid2),
    );
    server.ok(&["delete", "cm", "owner", "--cascade=orphan"]);
    assert!(eventually(Duration::from_secs(15), || {
        !server.kubectl(&["get", "cm", "owner"]).status.success()
            && server
                .ok(&[
                    "get",
                    "cm",
                    "orphan",
                    "-o",
                    "jsonpath={.metadata.ownerReferences}",
                ])
                .is_empty()
    }));
}

#[test]
fn services_get_cluster_ips_and_node_ports_from_their_ranges() {
    let server = Server::start();
    let got = server.ok(&[
        "get",
        "svc",
        "kubernetes",
        "-o",
        "jsonpath={.spec.clusterIP} {.spec.ports[0].port}",
    ]);
    assert_eq!(got, "10.43.0.1 443");
    server.ok(&[
        "create",
        "service",
        "nodeport",
        "web",
        "--tcp=80:8080",
        "--node-port=30080",
    ]);
    let ip = server.ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    assert!(ip.starts_with("10.43.") && ip != "10.43.0.1", "{ip}");
    let err = server.fails(&[
        "create",
        "service",
        "nodeport",
        "other",
        "--tcp=80:8080",
        "--node-port=30080",
    ]);
    assert!(
        err.contains(
            "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
        ),
        "{err}"
    );
    // Deleting the service gives its port back.
    server.ok(&["delete", "svc", "web"]);
    server.ok(&[
        "create",
        "service",
        "nodeport",
        "other",
        "--tcp=80:8080",
        "--node-port=30080",
    ]);
    let rows = server.ok(&["get", "svc", "other"]);
    assert!(rows.contains("80:30080/TCP"), "{rows}");
}

#[test]
fn describe_wait_diff_edit_and_bulk_delete() {
    let server = Server::start();
    server.ok_stdin(&["apply", "-f", "-"], APP);
    let described = server.ok(&["describe", "deployment", "web"]);
    assert!(
        described.contains("Replicas:               2 desired"),
        "{described}"
    );
    assert!(
        described.contains("RollingUpdateStrategy:  25% max unavailable, 25% max surge"),
        "{described}"
    );
    assert_eq!(
        server.ok(&[
            "wait",
            "--for=jsonpath={.spec.replicas}=2",
            "deploy/web",
            "--timeout=10s"
        ]),
        "deployment.apps/web condition met\n"
    );
    // kubectl diff exits 1 when there are differences and prints them.
    let out = server.kubectl_stdin(
        &["diff", "-f", "-"],
        &APP.replace("replicas: 2", "replicas: 3"),
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let diff = String::from_utf8_lossy(&out.stdout);
    assert!(
        diff.contains("-  replicas: 2") && diff.contains("+  replicas: 3"),
        "{diff}"
    );
    // The dry run changed nothing.
    assert_eq!(
        server.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
        "2"
    );

    let out = std::process::Command::new("kubectl")
        .env("KUBECONFIG", &server.kubeconfig)
        .env("EDITOR", "sed -i s/key:\\ value/key:\\ edited/")
        .args(["edit", "configmap", "app-config"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "configmap/app-config edited\n",
        "{out:?}"
    );
    assert_eq!(
        server.ok(&["get", "cm", "app-config", "-o", "jsonpath={.data.key}"]),
        "edited"
    );

    let cols = server.ok(&[
        "get",
        "deploy",
        "-o",
        "custom-columns=NAME:.metadata.name,REPLICAS:.spec.replicas",
    ]);
    assert_eq!(lines(&cols), [["NAME", "REPLICAS"], ["web", "2"]]);
    let all = server.ok(&[
        "get",
        "cm",
        "-A",
        "--field-selector",
        "metadata.name=app-config",
        "-o",
        "name",
    ]);
    assert_eq!(all, "configmap/app-config\n");

    server.ok(&["create", "cm", "a1"]);
    server.ok(&["create", "cm", "a2"]);
    let out = server.ok(&["delete", "cm", "-l", "app=web"]);
    assert_eq!(out, "configmap \"app-config\" deleted\n");
    let out = server.ok(&["delete", "cm", "a1", "a2"]);
    assert_eq!(out, "configmap \"a1\" deleted\nconfigmap \"a2\" deleted\n");
    server.ok(&["delete", "deploy", "--all"]);
    let out = server.kubectl(&["get", "deploy"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No resources found in default namespace.")
    );
}
