//! Admission as kubectl users meet it: ResourceQuota refusals worded as
//! upstream's, LimitRange defaults in `kubectl get pod -o yaml`, the
//! Priority plugin resolving and refusing classes, the API server's own
//! `kubernetes` endpoints, and a CSR recording who asked for it.

mod support;

use std::time::Duration;

use support::{eventually, Server};

const LONG: Duration = Duration::from_secs(60);

fn pod_json(name: &str, extra_spec: &str, resources: &str) -> String {
    format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "{name}"}},
  "spec": {{{extra_spec}"containers": [{{"name": "{name}", "image": "busybox", "resources": {resources}}}]}}}}"#
    )
}

#[test]
fn resource_quota_refuses_what_would_exceed_it() {
    let server = Server::start();
    server.ok(&["create", "namespace", "q"]);
    let out = server.ok(&[
        "create",
        "quota",
        "pods",
        "-n",
        "q",
        "--hard=pods=1,services.nodeports=0",
    ]);
    assert_eq!(out, "resourcequota/pods created\n");
    // The quota counts once the quota controller has filled in its status.
    assert!(
        eventually(LONG, || {
            server
                .kubectl(&[
                    "get",
                    "quota",
                    "pods",
                    "-n",
                    "q",
                    "-o",
                    "jsonpath={.status.used.pods}",
                ])
                .stdout
                == b"0"
        }),
        "quota status never filled in"
    );
    server.ok(&["run", "one", "-n", "q", "--image=busybox"]);
    // Admission charged the quota itself, at once.
    let used = server.ok(&[
        "get",
        "quota",
        "pods",
        "-n",
        "q",
        "-o",
        "jsonpath={.status.used.pods}",
    ]);
    assert_eq!(used, "1");
    let err = server.fails(&["run", "two", "-n", "q", "--image=busybox"]);
    assert_eq!(
        err,
        "Error from server (Forbidden): pods \"two\" is forbidden: exceeded quota: pods, \
         requested: pods=1, used: pods=1, limited: pods=1\n"
    );
    let err = server.fails(&[
        "create",
        "service",
        "nodeport",
        "web",
        "-n",
        "q",
        "--tcp=80:80",
    ]);
    assert!(
        err.contains(
            "services \"web\" is forbidden: exceeded quota: pods, requested: services.nodeports=1, \
             used: services.nodeports=0, limited: services.nodeports=0"
        ),
        "{err}"
    );
    // Updates are charged for what they add: a ClusterIP Service turned
    // NodePort wants a node port the quota does not have.
    server.ok(&[
        "create",
        "service",
        "clusterip",
        "inside",
        "-n",
        "q",
        "--tcp=80:80",
    ]);
    let err = server.fails(&[
        "patch",
        "service",
        "inside",
        "-n",
        "q",
        "-p",
        r#"{"spec":{"type":"NodePort"}}"#,
    ]);
    assert_eq!(
        err,
        "Error from server (Forbidden): services \"inside\" is forbidden: exceeded quota: pods, \
         requested: services.nodeports=1, used: services.nodeports=0, limited: services.nodeports=0\n"
    );
    // A quota on compute resources needs them stated per container.
    server.ok(&["create", "namespace", "compute"]);
    server.ok(&[
        "create",
        "quota",
        "cpu",
        "-n",
        "compute",
        "--hard=requests.cpu=1,limits.memory=1Gi",
    ]);
    assert!(eventually(LONG, || {
        !server
            .kubectl(&[
                "get",
                "quota",
                "cpu",
                "-n",
                "compute",
                "-o",
                "jsonpath={.status.used}",
            ])
            .stdout
            .is_empty()
    }));
    let err = server.fails(&["run", "bare", "-n", "compute", "--image=busybox"]);
    assert_eq!(
        err,
        "Error from server (Forbidden): pods \"bare\" is forbidden: failed quota: cpu: \
         must specify limits.memory for: bare; requests.cpu for: bare\n"
    );
    let fits = pod_json(
        "fits",
        "",
        r#"{"requests": {"cpu": "600m"}, "limits": {"memory": "512Mi"}}"#,
    );
    server.ok_stdin(&["create", "-n", "compute", "-f", "-"], &fits);
    let big = pod_json(
        "big",
        "",
        r#"{"requests": {"cpu": "600m"}, "limits": {"memory": "512Mi"}}"#,
    );
    let out = server.kubectl_stdin(&["create", "-n", "compute", "-f", "-"], &big);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Error from server (Forbidden): error when creating \"STDIN\": pods \"big\" is forbidden: \
         exceeded quota: cpu, requested: requests.cpu=600m, used: requests.cpu=600m, limited: requests.cpu=1\n"
    );
    let used = server.ok(&[
        "get",
        "quota",
        "cpu",
        "-n",
        "compute",
        "-o",
        "jsonpath={.status.used}",
    ]);
    assert_eq!(used, r#"{"limits.memory":"512Mi","requests.cpu":"600m"}"#);
}

/// `kubectl get quota <name> -n <ns> -o jsonpath={.status.used.<resource>}`.
fn quota_used(server: &Server, ns: &str, name: &str, resource: &str) -> String {
    let path = format!("jsonpath={{.status.used.{}}}", resource.replace('.', "\\."));
    String::from_utf8_lossy(
        &server
            .kubectl(&["get", "quota", name, "-n", ns, "-o", &path])
            .stdout,
    )
    .into_owned()
}

#[test]
fn racing_creates_never_pass_an_object_count_quota() {
    let server = Server::start();
    server.ok(&["create", "namespace", "race"]);
    server.ok(&[
        "create",
        "quota",
        "q",
        "-n",
        "race",
        "--hard=count/configmaps=4,services.nodeports=1",
    ]);
    // The namespace's kube-root-ca.crt counts too.
    assert!(
        eventually(LONG, || quota_used(
            &server,
            "race",
            "q",
            "count/configmaps"
        ) == "1"),
        "quota status never counted kube-root-ca.crt"
    );
    // Eight creates at once against three free slots: exactly three pass,
    // and the quota controller reacting to them must not hand a charge
    // back to a racing create.
    let created = std::thread::scope(|s| {
        let runs: Vec<_> = (0..8)
            .map(|i| {
                let server = &server;
                s.spawn(move || {
                    let name = format!("cm{i}");
                    server
                        .kubectl(&["create", "configmap", &name, "-n", "race"])
                        .status
                        .success()
                })
            })
            .collect();
        runs.into_iter()
            .map(|run| run.join().expect("kubectl thread"))
            .filter(|ok| *ok)
            .count()
    });
    assert_eq!(created, 3, "creates that passed a quota with 3 free");
    let listed = server.ok(&["get", "configmaps", "-n", "race", "-o", "name"]);
    assert_eq!(listed.lines().count(), 4, "{listed}");
    let err = server.fails(&["create", "configmap", "late", "-n", "race"]);
    assert!(err.contains("exceeded quota: q"), "{err}");
    assert_eq!(quota_used(&server, "race", "q", "count/configmaps"), "4");
    // A deletion gives its slot back once the controller recounts.
    let gone = listed
        .lines()
        .find(|l| l.starts_with("configmap/cm"))
        .expect("a created config map");
    server.ok(&["delete", gone, "-n", "race"]);
    assert!(
        eventually(LONG, || quota_used(
            &server,
            "race",
            "q",
            "count/configmaps"
        ) == "3"),
        "deletion never replenished the quota"
    );
    server.ok(&["create", "configmap", "late", "-n", "race"]);
    // So does a NodePort Service turned ClusterIP, for its node port.
    server.ok(&[
        "create",
        "service",
        "nodeport",
        "web",
        "-n",
        "race",
        "--tcp=80:80",
    ]);
    assert_eq!(quota_used(&server, "race", "q", "services.nodeports"), "1");
    server.ok(&[
        "patch",
        "service",
        "web",
        "-n",
        "race",
        "-p",
        r#"{"spec":{"type":"ClusterIP","ports":[{"port":80,"targetPort":80,"nodePort":null}]}}"#,
    ]);
    assert!(
        eventually(LONG, || quota_used(
            &server,
            "race",
            "q",
            "services.nodeports"
        ) == "0"),
        "a Service that gave up its node port still holds it in the quota"
    );
    server.ok(&[
        "create",
        "service",
        "nodeport",
        "web2",
        "-n",
        "race",
        "--tcp=80:80",
    ]);
}

const LIMITS: &str = r#"{"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "limits"},
  "spec": {"limits": [{"type": "Container", "max": {"cpu": "1"},
                       "default": {"cpu": "500m", "memory": "256Mi"},
                       "defaultRequest": {"cpu": "100m"}}]}}"#;

#[test]
fn limit_range_defaults_and_bounds_pods() {
    let server = Server::start();
    server.ok(&["create", "namespace", "lr"]);
    server.ok_stdin(&["create", "-n", "lr", "-f", "-"], LIMITS);
    // The range's own defaults: the default memory limit is also the
    // default memory request.
    let item = server.ok(&[
        "get",
        "limits",
        "limits",
        "-n",
        "lr",
        "-o",
        "jsonpath={.spec.limits[0].defaultRequest}",
    ]);
    assert_eq!(item, r#"{"cpu":"100m","memory":"256Mi"}"#);
    // Admission reads LimitRanges from a watch-fed copy: a dry run shows
    // when it has the new one.
    assert!(
        eventually(LONG, || {
            server
                .kubectl(&[
                    "run",
                    "probe",
                    "-n",
                    "lr",
                    "--image=busybox",
                    "--dry-run=server",
                    "-o",
                    "jsonpath={.spec.containers[0].resources.limits.cpu}",
                ])
                .stdout
                == b"500m"
        }),
        "LimitRange defaults never applied"
    );
    server.ok(&["run", "web", "-n", "lr", "--image=busybox"]);
    let note = server.ok(&[
        "get",
        "pod",
        "web",
        "-n",
        "lr",
        "-o",
        r"jsonpath={.metadata.annotations.kubernetes\.io/limit-ranger}",
    ]);
    assert_eq!(
        note,
        "LimitRanger plugin set: cpu, memory request for container web; cpu, memory limit for container web"
    );
    let yaml = server.ok(&["get", "pod", "web", "-n", "lr", "-o", "yaml"]);
    assert!(
        yaml.contains(
            "    resources:\n      limits:\n        cpu: 500m\n        memory: 256Mi\n      requests:\n        cpu: 100m\n        memory: 256Mi\n"
        ),
        "{yaml}"
    );
    // Burstable now, as upstream computes QoS after admission.
    assert!(yaml.contains("  qosClass: Burstable\n"), "{yaml}");
    let big = pod_json("big", "", r#"{"limits": {"cpu": "2"}}"#);
    let out = server.kubectl_stdin(&["create", "-n", "lr", "-f", "-"], &big);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Error from server (Forbidden): error when creating \"STDIN\": pods \"big\" is forbidden: \
         maximum cpu usage per Container is 1, but limit is 2\n"
    );
    let bad = r#"{"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "bad"},
      "spec": {"limits": [{"type": "Container", "min": {"cpu": "2"}, "max": {"cpu": "1"}}]}}"#;
    let out = server.kubectl_stdin(&["create", "-n", "lr", "-f", "-"], bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("The LimitRange \"bad\" is invalid")
            && err.contains("spec.limits[0].min[cpu]: Invalid value: \"2\": min value 2 is greater than max value 1"),
        "{err}"
    );
}

#[test]
fn priority_classes_resolve_or_refuse_pods() {
    let server = Server::start();
    server.ok(&[
        "create",
        "priorityclass",
        "high",
        "--value=1000",
        "--preemption-policy=Never",
    ]);
    server.ok_stdin(
        &["create", "-f", "-"],
        &pod_json("urgent", r#""priorityClassName": "high", "#, "{}"),
    );
    let shown = server.ok(&[
        "get",
        "pod",
        "urgent",
        "-o",
        "jsonpath={.spec.priority} {.spec.preemptionPolicy}",
    ]);
    assert_eq!(shown, "1000 Never");
    let out = server.kubectl_stdin(
        &["create", "-f", "-"],
        &pod_json("lost", r#""priorityClassName": "nope", "#, "{}"),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Error from server (Forbidden): error when creating \"STDIN\": pods \"lost\" is forbidden: \
         no PriorityClass with name nope was found\n"
    );
    let out = server.kubectl_stdin(
        &["create", "-f", "-"],
        &pod_json(
            "cheat",
            r#""priorityClassName": "high", "priority": 5, "#,
            "{}",
        ),
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "pods \"cheat\" is forbidden: the integer value of priority (5) must not be provided in pod spec; \
             priority admission controller computed 1000 from the given PriorityClass name"
        ),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A global default class applies to pods naming none.
    server.ok(&[
        "create",
        "priorityclass",
        "usual",
        "--value=7",
        "--global-default",
    ]);
    assert!(
        eventually(LONG, || {
            server
                .kubectl(&[
                    "run",
                    "p",
                    "--image=busybox",
                    "--dry-run=server",
                    "-o",
                    "jsonpath={.spec.priority}",
                ])
                .stdout
                == b"7"
        }),
        "global default class never applied"
    );
    server.ok(&["run", "plain", "--image=busybox"]);
    let shown = server.ok(&[
        "get",
        "pod",
        "plain",
        "-o",
        "jsonpath={.spec.priorityClassName} {.spec.priority}",
    ]);
    assert_eq!(shown, "usual 7");
}

#[test]
fn kubernetes_endpoints_point_at_the_api_server() {
    let server = Server::start();
    let out = server.ok(&["get", "endpoints", "kubernetes"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("NAME         ENDPOINTS"), "{out}");
    assert!(
        lines[1].starts_with(&format!("kubernetes   127.0.0.1:{}   ", server.port)),
        "{out}"
    );
    let slice = server.ok(&[
        "get", "endpointslices", "-l", "kubernetes.io/service-name=kubernetes", "-o",
        "jsonpath={.items[*].metadata.name} {.items[0].endpoints[0].addresses[0]} {.items[0].ports[0].name}:{.items[0].ports[0].port}",
    ]);
    assert_eq!(slice, format!("kubernetes 127.0.0.1 https:{}", server.port));
}

#[test]
fn csr_records_the_requesting_user() {
    let server = Server::start();
    // The request only has to look like a PEM CSR to be stored.
    let request = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0KQUFBQQotLS0tLUVORCBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0K";
    let csr = format!(
        r#"{{"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
  "metadata": {{"name": "mine"}},
  "spec": {{"request": "{request}", "signerName": "kubernetes.io/kube-apiserver-client",
           "usages": ["client auth"], "username": "mallory", "groups": ["system:masters"],
           "uid": "42"}}}}"#
    );
    server.ok_stdin(&["create", "-f", "-"], &csr);
    let who = server.ok(&[
        "get",
        "csr",
        "mine",
        "-o",
        "jsonpath={.spec.username} {.spec.groups} [{.spec.uid}]",
    ]);
    assert_eq!(who, r#"admin ["system:masters","system:authenticated"] []"#);
    let table = server.ok(&["get", "csr", "mine"]);
    let row = table.lines().nth(1).unwrap_or_default().to_string();
    assert!(row.contains(" admin "), "{table}");
}
