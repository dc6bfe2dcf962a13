//! Pod strategy tests: the JSON kube-apiserver returns for a minimal pod,
//! QoS classes, validation messages, update rules, graceful deletion.

use serde_json::{json, Value};

use super::*;
use crate::resources::pod::admission::API_ACCESS_VOLUME_PREFIX;

fn messages(errs: &[FieldError]) -> Vec<String> {
    errs.iter().map(ToString::to_string).collect()
}

/// A pod as `kubectl run nginx --image=nginx` sends it.
fn kubectl_run() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "nginx", "labels": {"run": "nginx"}},
        "spec": {
            "containers": [{"name": "nginx", "image": "nginx", "resources": {}}],
            "dnsPolicy": "ClusterFirst", "restartPolicy": "Always",
        },
        "status": {},
    })
}

fn created(mut pod: Value) -> Value {
    PodStrategy.prepare_for_create(&mut pod);
    pod
}

/// The generated token volume name, checked and replaced by a fixed one.
fn fix_volume_name(pod: &mut Value) {
    let name = pod
        .pointer("/spec/volumes/0/name")
        .and_then(Value::as_str)
        .unwrap()
        .to_string();
    let suffix = name
        .strip_prefix(API_ACCESS_VOLUME_PREFIX)
        .expect("kube-api-access- prefix");
    assert_eq!(suffix.len(), 5, "{name}");
    let s = serde_json::to_string(pod)
        .unwrap()
        .replace(&name, "kube-api-access-xxxxx");
    *pod = serde_json::from_str(&s).unwrap();
}

#[test]
fn minimal_pod_gets_upstreams_defaults() {
    let mut pod = created(kubectl_run());
    fix_volume_name(&mut pod);
    let want = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "nginx", "labels": {"run": "nginx"}},
        "spec": {
            "containers": [{
                "name": "nginx", "image": "nginx", "imagePullPolicy": "Always",
                "resources": {},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "volumeMounts": [{
                    "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                    "name": "kube-api-access-xxxxx", "readOnly": true,
                }],
            }],
            "dnsPolicy": "ClusterFirst",
            "enableServiceLinks": true,
            "preemptionPolicy": "PreemptLowerPriority",
            "priority": 0,
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "securityContext": {},
            "serviceAccount": "default",
            "serviceAccountName": "default",
            "terminationGracePeriodSeconds": 30,
            "tolerations": [
                {"effect": "NoExecute", "key": "node.kubernetes.io/not-ready", "operator": "Exists", "tolerationSeconds": 300},
                {"effect": "NoExecute", "key": "node.kubernetes.io/unreachable", "operator": "Exists", "tolerationSeconds": 300},
            ],
            "volumes": [{
                "name": "kube-api-access-xxxxx",
                "projected": {
                    "defaultMode": 420,
                    "sources": [
                        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                        {"configMap": {"items": [{"key": "ca.crt", "path": "ca.crt"}], "name": "kube-root-ca.crt"}},
                        {"downwardAPI": {"items": [{"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}, "path": "namespace"}]}},
                    ],
                },
            }],
        },
        "status": {"phase": "Pending", "qosClass": "BestEffort"},
    });
    assert_eq!(pod, want, "{}", serde_json::to_string_pretty(&pod).unwrap());
    assert!(
        PodStrategy.validate(&pod).is_empty(),
        "{:?}",
        PodStrategy.validate(&pod)
    );
}

#[test]
fn no_token_volume_when_automount_is_off() {
    let mut pod = kubectl_run();
    pod["spec"]["automountServiceAccountToken"] = json!(false);
    pod["spec"]["serviceAccountName"] = json!("builder");
    let pod = created(pod);
    assert!(pod.pointer("/spec/volumes").is_none());
    assert!(pod.pointer("/spec/containers/0/volumeMounts").is_none());
    assert_eq!(pod["spec"]["serviceAccount"], "builder");
}

#[test]
fn container_and_volume_defaults() {
    let pod = created(json!({
        "metadata": {"name": "p"},
        "spec": {
            "hostNetwork": true,
            "containers": [{
                "name": "c", "image": "registry:5000/app:1.2",
                "ports": [{"containerPort": 8080}],
                "livenessProbe": {"httpGet": {"port": 8080}},
                "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
            }],
            "initContainers": [{"name": "i", "image": "busybox@sha256:abcd"}],
            "volumes": [
                {"name": "a"},
                {"name": "b", "configMap": {"name": "cm"}},
                {"name": "c", "secret": {"secretName": "s"}},
                {"name": "d", "hostPath": {"path": "/tmp"}},
            ],
        },
    }));
    let c = &pod["spec"]["containers"][0];
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    assert_eq!(
        c["ports"][0],
        json!({"containerPort": 8080, "hostPort": 8080, "protocol": "TCP"})
    );
    assert_eq!(
        c["livenessProbe"],
        json!({"httpGet": {"port": 8080, "path": "/", "scheme": "HTTP"},
            "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
    );
    assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
    // Requests default to limits, which makes the pod... Burstable, since
    // the init container asks for nothing.
    assert_eq!(
        c["resources"]["requests"],
        json!({"cpu": "1", "memory": "1Gi"})
    );
    assert_eq!(
        pod["spec"]["initContainers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
    let vols = &pod["spec"]["volumes"];
    assert_eq!(vols[0]["emptyDir"], json!({}));
    assert_eq!(vols[1]["configMap"]["defaultMode"], 420);
    assert_eq!(vols[2]["secret"]["defaultMode"], 420);
    assert_eq!(vols[3]["hostPath"]["type"], "");
    assert_eq!(pod["status"]["qosClass"], "Burstable");
}

#[test]
fn image_pull_policy_follows_the_tag() {
    use defaults::pulls_always;
    assert!(pulls_always("nginx"));
    assert!(pulls_always("nginx:latest"));
    assert!(pulls_always("localhost:5000/nginx"));
    assert!(!pulls_always("localhost:5000/nginx:1.25"));
    assert!(!pulls_always("nginx@sha256:0123"));
    assert!(pulls_always("nginx:latest@sha256:0123"));
}

#[test]
fn qos_classes() {
    let pod = |containers: Value| json!({"spec": {"containers": containers}});
    assert_eq!(qos_class(&pod(json!([{"name": "a"}]))), "BestEffort");
    let guaranteed = json!([{"resources": {
        "limits": {"cpu": "500m", "memory": "128Mi"},
        "requests": {"cpu": "0.5", "memory": "128Mi"}}}]);
    assert_eq!(qos_class(&pod(guaranteed)), "Guaranteed");
    let unequal = json!([{"resources": {
        "limits": {"cpu": "1", "memory": "128Mi"}, "requests": {"cpu": "500m", "memory": "128Mi"}}}]);
    assert_eq!(qos_class(&pod(unequal)), "Burstable");
    let cpu_only = json!([{"resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "1"}}}]);
    assert_eq!(qos_class(&pod(cpu_only)), "Burstable");
    // Other resources do not count.
    let storage = json!([{"resources": {"requests": {"ephemeral-storage": "1Gi"}}}]);
    assert_eq!(qos_class(&pod(storage)), "BestEffort");
}

#[test]
fn validation_messages_match_upstream() {
    let pod = json!({
        "metadata": {"name": "p"},
        "spec": {
            "containers": [
                {"name": "a", "image": "x", "imagePullPolicy": "Sometimes",
                 "terminationMessagePolicy": "File",
                 "ports": [{"containerPort": 70000, "protocol": "TCP"},
                           {"name": "web", "containerPort": 80, "protocol": "TCP"},
                           {"name": "web", "containerPort": 81, "protocol": "TCP"},
                           {"name": "Web--", "containerPort": 82, "protocol": "TCP"}],
                 "volumeMounts": [{"name": "missing", "mountPath": "/m"}],
                 "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "2"}}},
                {"name": "a", "image": "", "imagePullPolicy": "Always", "terminationMessagePolicy": "File"},
                {"name": "Bad_Name", "image": "x", "imagePullPolicy": "Always", "terminationMessagePolicy": "File"},
            ],
            "volumes": [{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}],
            "restartPolicy": "Sometimes",
            "dnsPolicy": "Nope",
        },
    });
    let got = messages(&PodStrategy.validate(&pod));
    let want = [
        r#"spec.volumes[1].name: Duplicate value: "v""#,
        r#"spec.containers[0].imagePullPolicy: Unsupported value: "Sometimes": supported values: "Always", "IfNotPresent", "Never""#,
        "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
        r#"spec.containers[0].ports[2].name: Duplicate value: "web""#,
        r#"spec.containers[0].ports[3].name: Invalid value: "Web--": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"#,
        r#"spec.containers[0].ports[3].name: Invalid value: "Web--": must not contain consecutive hyphens"#,
        r#"spec.containers[0].ports[3].name: Invalid value: "Web--": must not begin or end with a hyphen"#,
        r#"spec.containers[0].volumeMounts[0].name: Not found: "missing""#,
        r#"spec.containers[0].resources.requests[cpu]: Invalid value: "2": must be less than or equal to cpu limit of 1"#,
        r#"spec.containers[1].name: Duplicate value: "a""#,
        "spec.containers[1].image: Required value",
        r#"spec.containers[2].name: Invalid value: "Bad_Name": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"#,
        r#"spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never""#,
        r#"spec.dnsPolicy: Unsupported value: "Nope": supported values: "ClusterFirst", "ClusterFirstWithHostNet", "Default", "None""#,
    ];
    assert_eq!(got, want);
    let empty = json!({"metadata": {"name": "p"}, "spec": {"restartPolicy": "Always", "dnsPolicy": "ClusterFirst"}});
    assert_eq!(
        messages(&PodStrategy.validate(&empty)),
        ["spec.containers: Required value"]
    );
}

#[test]
fn updates_may_change_only_images_deadline_and_new_tolerations() {
    let old = created(kubectl_run());
    let mut new = old.clone();
    new["spec"]["containers"][0]["image"] = json!("nginx:1.27");
    new["spec"]["activeDeadlineSeconds"] = json!(60);
    new["spec"]["tolerations"]
        .as_array_mut()
        .unwrap()
        .push(json!({"key": "k", "operator": "Exists"}));
    PodStrategy.prepare_for_update(&mut new, &old);
    assert!(
        PodStrategy.validate_update(&new, &old).is_empty(),
        "{:?}",
        PodStrategy.validate_update(&new, &old)
    );

    let mut changed = old.clone();
    changed["spec"]["restartPolicy"] = json!("Never");
    changed["spec"]["tolerations"] = json!([]);
    let got = messages(&PodStrategy.validate_update(&changed, &old));
    assert_eq!(
        got,
        [
            "spec.tolerations[0]: Forbidden: existing toleration can not be modified except its tolerationSeconds".to_string(),
            "spec.tolerations[1]: Forbidden: existing toleration can not be modified except its tolerationSeconds".to_string(),
            format!("spec: Forbidden: {POD_UPDATE_FORBIDDEN}"),
        ]
    );

    let mut with_deadline = old.clone();
    with_deadline["spec"]["activeDeadlineSeconds"] = json!(30);
    let mut longer = with_deadline.clone();
    longer["spec"]["activeDeadlineSeconds"] = json!(40);
    assert_eq!(
        messages(&PodStrategy.validate_update(&longer, &with_deadline)),
        ["spec.activeDeadlineSeconds: Invalid value: 40: must be less than or equal to previous value"]
    );
}

#[test]
fn update_keeps_status_and_applies_defaults() {
    let mut old = created(kubectl_run());
    old["status"] = json!({"phase": "Running"});
    let mut new = old.clone();
    new["status"] = json!({"phase": "Failed"});
    new["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("terminationMessagePath");
    PodStrategy.prepare_for_update(&mut new, &old);
    assert_eq!(new["status"], json!({"phase": "Running"}));
    assert_eq!(
        new["spec"]["containers"][0]["terminationMessagePath"],
        "/dev/termination-log"
    );
}

#[test]
fn graceful_deletion_waits_only_for_running_pods() {
    let s = PodStrategy;
    assert_eq!(s.delete_policy(), DeletePolicy::Graceful);
    assert!(s.return_deleted_object());
    assert!(!s.tracks_generation());
    let pod = created(kubectl_run());
    // Not scheduled: nothing to wait for.
    assert_eq!(s.default_grace_period(&pod), 0);
    assert_eq!(s.grace_period(&pod, None), 0);
    assert_eq!(s.grace_period(&pod, Some(10)), 0);
    let mut scheduled = pod.clone();
    scheduled["spec"]["nodeName"] = json!("n1");
    scheduled["spec"]["terminationGracePeriodSeconds"] = json!(45);
    assert_eq!(s.grace_period(&scheduled, None), 45);
    assert_eq!(s.default_grace_period(&scheduled), 45);
    assert_eq!(s.grace_period(&scheduled, Some(5)), 5);
    assert_eq!(s.grace_period(&scheduled, Some(-3)), 1);
    scheduled["status"]["phase"] = json!("Succeeded");
    assert_eq!(s.grace_period(&scheduled, None), 0);
}
