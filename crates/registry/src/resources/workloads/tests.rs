//! Workload strategy tests: what kube-apiserver returns for the objects
//! `kubectl create deployment|job|cronjob` send, and the validation rules.

use serde_json::{json, Value};

use super::*;

fn messages(errs: &[FieldError]) -> Vec<String> {
    errs.iter().map(ToString::to_string).collect()
}

fn created(kind: Kind, mut obj: Value) -> Value {
    WorkloadStrategy { kind }.prepare_for_create(&mut obj);
    obj
}

/// The pod spec `kubectl create ...` templates get after defaulting.
fn defaulted_pod_spec(image: &str, pull: &str, restart: &str) -> Value {
    json!({
        "containers": [{
            "name": image, "image": image, "imagePullPolicy": pull, "resources": {},
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
        }],
        "dnsPolicy": "ClusterFirst",
        "restartPolicy": restart,
        "schedulerName": "default-scheduler",
        "securityContext": {},
        "terminationGracePeriodSeconds": 30,
    })
}

#[test]
fn kubectl_create_deployment_matches_dry_run_server() {
    // The body `kubectl create deployment web --image=nginx` sends.
    let sent = json!({
        "kind": "Deployment", "apiVersion": "apps/v1",
        "metadata": {"name": "web", "creationTimestamp": null, "labels": {"app": "web"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx", "resources": {}}]},
            },
            "strategy": {},
        },
        "status": {},
    });
    let got = created(Kind::Deployment, sent);
    let mut pod_spec = defaulted_pod_spec("nginx", "Always", "Always");
    pod_spec["containers"][0]["name"] = json!("nginx");
    let want = json!({
        "kind": "Deployment", "apiVersion": "apps/v1",
        "metadata": {"name": "web", "creationTimestamp": null, "labels": {"app": "web"}},
        "spec": {
            "progressDeadlineSeconds": 600,
            "replicas": 1,
            "revisionHistoryLimit": 10,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}, "type": "RollingUpdate"},
            "template": {
                "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                "spec": pod_spec,
            },
        },
        "status": {},
    });
    assert_eq!(got, want, "{}", serde_json::to_string_pretty(&got).unwrap());
    assert!(WorkloadStrategy {
        kind: Kind::Deployment
    }
    .validate(&got)
    .is_empty());
}

#[test]
fn job_gets_generated_selector_and_defaults() {
    let sent = json!({
        "kind": "Job", "apiVersion": "batch/v1",
        "metadata": {"name": "pi", "uid": "u-1"},
        "spec": {"template": {"metadata": {"creationTimestamp": null},
            "spec": {"containers": [{"name": "pi", "image": "perl:5.34"}], "restartPolicy": "Never"}}},
    });
    let got = created(Kind::Job, sent);
    let spec = &got["spec"];
    for (k, v) in [
        ("parallelism", json!(1)),
        ("completions", json!(1)),
        ("backoffLimit", json!(6)),
        ("completionMode", json!("NonIndexed")),
        ("suspend", json!(false)),
        ("podReplacementPolicy", json!("TerminatingOrFailed")),
        ("manualSelector", json!(false)),
        (
            "selector",
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}}),
        ),
    ] {
        assert_eq!(spec[k], v, "{k}");
    }
    // The Job carries its template's labels, as a read-back shows upstream.
    assert_eq!(
        got["metadata"]["labels"],
        spec["template"]["metadata"]["labels"]
    );
    assert_eq!(
        spec["template"]["metadata"]["labels"],
        json!({"batch.kubernetes.io/controller-uid": "u-1", "batch.kubernetes.io/job-name": "pi",
               "controller-uid": "u-1", "job-name": "pi"})
    );
    assert_eq!(
        spec["template"]["spec"],
        defaulted_pod_spec("pi", "IfNotPresent", "Never").tap_name("pi", "perl:5.34")
    );
    let s = WorkloadStrategy { kind: Kind::Job };
    assert!(s.validate(&got).is_empty(), "{:?}", s.validate(&got));

    // Jobs cannot restart Always (the default a template gets).
    let mut always = got.clone();
    always["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
    assert_eq!(
        messages(&s.validate(&always)),
        [
            r#"spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never""#
        ]
    );
    // A hand-written selector needs manualSelector.
    let mut manual = got.clone();
    manual["spec"]["selector"] = json!({"matchLabels": {"job-name": "pi"}});
    assert_eq!(
        messages(&s.validate(&manual)),
        [
            r#"spec.selector: Invalid value: {"matchLabels":{"job-name":"pi"}}: `selector` not auto-generated"#
        ]
    );
}

trait TapName {
    fn tap_name(self, name: &str, image: &str) -> Value;
}

impl TapName for Value {
    fn tap_name(mut self, name: &str, image: &str) -> Value {
        self["containers"][0]["name"] = json!(name);
        self["containers"][0]["image"] = json!(image);
        self
    }
}

#[test]
fn other_kinds_defaults() {
    let tpl = json!({"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
    let sts = created(
        Kind::StatefulSet,
        json!({"spec": {"selector": {"matchLabels": {"a": "b"}}, "template": tpl,
        "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]}}),
    );
    assert_eq!(sts["spec"]["podManagementPolicy"], "OrderedReady");
    assert_eq!(
        sts["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    );
    assert_eq!(sts["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(sts["spec"]["replicas"], 1);
    assert_eq!(
        sts["spec"]["persistentVolumeClaimRetentionPolicy"],
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
    );
    // Containers may mount the claim templates' volumes.
    let mut mounted = sts.clone();
    mounted["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "www", "mountPath": "/www"}]);
    assert!(validate_workload(Kind::StatefulSet, &mounted).is_empty());
    mounted["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["name"] = json!("nope");
    assert_eq!(validate_workload(Kind::StatefulSet, &mounted).len(), 1);
    let pvc = &sts["spec"]["volumeClaimTemplates"][0];
    assert_eq!(pvc["kind"], "PersistentVolumeClaim");
    assert_eq!(pvc["spec"]["volumeMode"], "Filesystem");
    assert_eq!(pvc["status"], json!({"phase": "Pending"}));

    // A RollingUpdate given without its block stays without one.
    let given = created(
        Kind::StatefulSet,
        json!({"spec": {"updateStrategy": {"type": "RollingUpdate"}}}),
    );
    assert_eq!(
        given["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate"})
    );

    // Host ports are defaulted on pods only, not in templates.
    let host = created(
        Kind::DaemonSet,
        json!({"spec": {"template": {"spec": {"hostNetwork": true,
        "containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 53}]}]}}}}),
    );
    assert!(
        host["spec"]["template"]["spec"]["containers"][0]["ports"][0]
            .get("hostPort")
            .is_none()
    );

    let ds = created(Kind::DaemonSet, json!({"spec": {"template": tpl.clone()}}));
    assert_eq!(
        ds["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
    );
    assert_eq!(ds["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(
        ds["status"],
        json!({"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0, "numberReady": 0})
    );
    assert_eq!(
        sts["status"],
        json!({"replicas": 0, "availableReplicas": 0})
    );

    let cj = created(
        Kind::CronJob,
        json!({"spec": {"schedule": "*/1 * * * *",
        "jobTemplate": {"metadata": {"name": "t"}, "spec": {"template": tpl.clone()}}}}),
    );
    for (k, v) in [
        ("concurrencyPolicy", json!("Allow")),
        ("suspend", json!(false)),
        ("successfulJobsHistoryLimit", json!(3)),
        ("failedJobsHistoryLimit", json!(1)),
    ] {
        assert_eq!(cj["spec"][k], v, "{k}");
    }
    assert_eq!(
        cj["spec"]["jobTemplate"]["metadata"],
        json!({"name": "t", "creationTimestamp": null})
    );
    // The job template is not a Job: no Job defaults inside it.
    assert!(cj["spec"]["jobTemplate"]["spec"]
        .get("backoffLimit")
        .is_none());
    assert_eq!(
        cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["dnsPolicy"],
        "ClusterFirst"
    );

    let rc = created(
        Kind::ReplicationController,
        json!({"metadata": {"name": "r"}, "spec": {"template": tpl}}),
    );
    assert_eq!(rc["spec"]["selector"], json!({"a": "b"}));
    assert_eq!(rc["metadata"]["labels"], json!({"a": "b"}));
    assert_eq!(rc["spec"]["replicas"], 1);
    assert_eq!(rc["status"], json!({"replicas": 0}));
    assert!(WorkloadStrategy {
        kind: Kind::ReplicationController
    }
    .validate(&rc)
    .is_empty());
}

#[test]
fn validation_messages_match_upstream() {
    let s = WorkloadStrategy {
        kind: Kind::Deployment,
    };
    let mut d = created(
        Kind::Deployment,
        json!({
            "metadata": {"name": "web"},
            "spec": {"replicas": -1, "selector": {"matchLabels": {"app": "other"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "i"}], "restartPolicy": "OnFailure"}}},
        }),
    );
    assert_eq!(
        messages(&s.validate(&d)),
        [
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            r#"spec.template.metadata.labels: Invalid value: {"app":"web"}: `selector` does not match template `labels`"#,
            r#"spec.template.spec.restartPolicy: Unsupported value: "OnFailure": supported values: "Always""#,
        ]
    );
    d["spec"].as_object_mut().unwrap().remove("selector");
    d["spec"]["replicas"] = json!(2);
    d["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
    assert_eq!(messages(&s.validate(&d)), ["spec.selector: Required value"]);
    d["spec"]["selector"] = json!({});
    assert_eq!(
        messages(&s.validate(&d)),
        ["spec.selector: Invalid value: {}: empty selector is invalid for deployment"]
    );
    d["spec"]["selector"] = json!({"matchLabels": {"app": "web"}});
    d["spec"]["strategy"]["rollingUpdate"] = json!({"maxSurge": 0, "maxUnavailable": "0%"});
    assert_eq!(
        messages(&s.validate(&d)),
        [
            r#"spec.strategy.rollingUpdate.maxUnavailable: Invalid value: "0%": may not be 0 when `maxSurge` is 0"#
        ]
    );
}

#[test]
fn updates_keep_status_bump_nothing_and_guard_selectors() {
    let s = WorkloadStrategy {
        kind: Kind::ReplicaSet,
    };
    assert!(s.tracks_generation());
    let mut old = created(
        Kind::ReplicaSet,
        json!({"metadata": {"name": "rs"},
        "spec": {"selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b", "c": "d"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
    );
    old["status"] = json!({"replicas": 3});
    let mut new = old.clone();
    new["status"] = json!({});
    new["spec"]["selector"] = json!({"matchLabels": {"c": "d"}});
    s.prepare_for_update(&mut new, &old);
    assert_eq!(new["status"], json!({"replicas": 3}));
    assert_eq!(
        messages(&s.validate_update(&new, &old)),
        [r#"spec.selector: Invalid value: {"matchLabels":{"c":"d"}}: field is immutable"#]
    );

    let sts = WorkloadStrategy {
        kind: Kind::StatefulSet,
    };
    let old = created(
        Kind::StatefulSet,
        json!({"spec": {"selector": {"matchLabels": {"a": "b"}}, "serviceName": "x",
        "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
    );
    let mut scaled = old.clone();
    scaled["spec"]["replicas"] = json!(5);
    assert!(sts.validate_update(&scaled, &old).is_empty());
    let mut renamed = old.clone();
    renamed["spec"]["serviceName"] = json!("y");
    assert_eq!(
        messages(&sts.validate_update(&renamed, &old)),
        ["spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"]
    );
}

#[test]
fn kinds_map_from_resources() {
    assert_eq!(Kind::of("apps", "deployments"), Some(Kind::Deployment));
    assert_eq!(Kind::of("batch", "cronjobs"), Some(Kind::CronJob));
    assert_eq!(
        Kind::of("", "replicationcontrollers"),
        Some(Kind::ReplicationController)
    );
    assert_eq!(Kind::of("", "pods"), None);
}
