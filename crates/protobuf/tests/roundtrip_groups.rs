//! Objects of the named API groups (batch, policy, authentication, rbac,
//! networking) encoded by k8s-pb and decoded by us.

mod common;

use common::{envelope, meta};
use k8s_pb::api::authentication::v1 as authn;
use k8s_pb::api::batch::v1 as batch;
use k8s_pb::api::core::v1 as core;
use k8s_pb::api::networking::v1 as networking;
use k8s_pb::api::policy::v1 as policy;
use k8s_pb::api::rbac::v1 as rbac;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as metav1;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::json;

fn pod_template() -> Option<core::PodTemplateSpec> {
    Some(core::PodTemplateSpec {
        metadata: Some(metav1::ObjectMeta {
            creation_timestamp: Some(metav1::Time::default()),
            ..Default::default()
        }),
        spec: Some(core::PodSpec {
            containers: vec![core::Container {
                name: Some("j".into()),
                image: Some("busybox".into()),
                command: vec!["true".into()],
                resources: Some(core::ResourceRequirements::default()),
                ..Default::default()
            }],
            restart_policy: Some("Never".into()),
            ..Default::default()
        }),
    })
}

fn pod_template_json() -> serde_json::Value {
    json!({
        "metadata": {"creationTimestamp": null},
        "spec": {
            "containers": [{"name": "j", "image": "busybox", "command": ["true"], "resources": {}}],
            "restartPolicy": "Never"
        }
    })
}

#[test]
fn job_and_cron_job() {
    let job_spec = batch::JobSpec {
        backoff_limit: Some(0),
        template: pod_template(),
        suspend: Some(false),
        ..Default::default()
    };
    let job = batch::Job {
        metadata: meta("j", "default"),
        spec: Some(job_spec.clone()),
        status: Some(batch::JobStatus {
            active: Some(0),
            ..Default::default()
        }),
    };
    let decoded = common::decode_checked(&envelope("batch/v1", "Job", &job));
    assert_eq!(
        decoded,
        json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "j", "namespace": "default", "creationTimestamp": null},
            "spec": {"backoffLimit": 0, "template": pod_template_json(), "suspend": false},
            "status": {}
        })
    );

    let cron = batch::CronJob {
        metadata: meta("nightly", "default"),
        spec: Some(batch::CronJobSpec {
            schedule: Some("0 3 * * *".into()),
            concurrency_policy: Some(String::new()),
            job_template: Some(batch::JobTemplateSpec {
                metadata: Some(metav1::ObjectMeta {
                    name: Some("nightly".into()),
                    creation_timestamp: Some(metav1::Time::default()),
                    ..Default::default()
                }),
                spec: Some(job_spec),
            }),
            ..Default::default()
        }),
        status: Some(batch::CronJobStatus::default()),
    };
    let decoded = common::decode_checked(&envelope("batch/v1", "CronJob", &cron));
    assert_eq!(
        decoded["spec"],
        json!({
            "schedule": "0 3 * * *",
            "jobTemplate": {
                "metadata": {"name": "nightly", "creationTimestamp": null},
                "spec": {"backoffLimit": 0, "template": pod_template_json(), "suspend": false}
            }
        })
    );
}

#[test]
fn eviction_with_delete_options() {
    let eviction = policy::Eviction {
        metadata: meta("web-1", "default"),
        delete_options: Some(metav1::DeleteOptions {
            grace_period_seconds: Some(0),
            preconditions: Some(metav1::Preconditions {
                uid: Some("1234".into()),
                resource_version: None,
            }),
            propagation_policy: Some("Foreground".into()),
            dry_run: vec!["All".into()],
            ..Default::default()
        }),
    };
    let decoded = common::decode_checked(&envelope("policy/v1", "Eviction", &eviction));
    assert_eq!(
        decoded,
        json!({
            "apiVersion": "policy/v1", "kind": "Eviction",
            "metadata": {"name": "web-1", "namespace": "default", "creationTimestamp": null},
            "deleteOptions": {
                "gracePeriodSeconds": 0,
                "preconditions": {"uid": "1234"},
                "propagationPolicy": "Foreground",
                "dryRun": ["All"]
            }
        })
    );
}

#[test]
fn token_request() {
    let request = authn::TokenRequest {
        metadata: meta("", ""),
        spec: Some(authn::TokenRequestSpec {
            audiences: vec!["https://kubernetes.default.svc".into()],
            expiration_seconds: Some(3600),
            bound_object_ref: Some(authn::BoundObjectReference {
                kind: Some("Pod".into()),
                api_version: Some("v1".into()),
                name: Some("web-1".into()),
                u_id: Some("abc".into()),
            }),
        }),
        status: Some(authn::TokenRequestStatus {
            token: Some(String::new()),
            expiration_timestamp: Some(metav1::Time::default()),
        }),
    };
    let decoded = common::decode_checked(&envelope(
        "authentication.k8s.io/v1",
        "TokenRequest",
        &request,
    ));
    assert_eq!(
        decoded,
        json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "metadata": {"creationTimestamp": null},
            "spec": {
                "audiences": ["https://kubernetes.default.svc"],
                "expirationSeconds": 3600,
                "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web-1", "uid": "abc"}
            },
            // Both status fields lack omitempty in Go.
            "status": {"token": "", "expirationTimestamp": null}
        })
    );
}

#[test]
fn pod_disruption_budget() {
    let pdb = policy::PodDisruptionBudget {
        metadata: meta("pdb", "default"),
        spec: Some(policy::PodDisruptionBudgetSpec {
            min_available: Some(IntOrString {
                r#type: Some(0),
                int_val: Some(0),
                str_val: Some(String::new()),
            }),
            selector: Some(metav1::LabelSelector {
                match_labels: Default::default(),
                match_expressions: vec![metav1::LabelSelectorRequirement {
                    key: Some("app".into()),
                    operator: Some("In".into()),
                    values: vec!["web".into(), "api".into()],
                }],
            }),
            ..Default::default()
        }),
        status: None,
    };
    let decoded = common::decode_checked(&envelope("policy/v1", "PodDisruptionBudget", &pdb));
    assert_eq!(
        decoded["spec"],
        json!({
            "minAvailable": 0,
            "selector": {"matchExpressions": [
                {"key": "app", "operator": "In", "values": ["web", "api"]}
            ]}
        })
    );
}

#[test]
fn role_and_role_binding() {
    let role = rbac::Role {
        metadata: meta("reader", "default"),
        rules: vec![rbac::PolicyRule {
            verbs: vec!["get".into(), "list".into()],
            api_groups: vec![String::new()],
            resources: vec!["pods".into()],
            resource_names: vec![],
            non_resource_ur_ls: vec![],
        }],
    };
    let decoded = common::decode_checked(&envelope("rbac.authorization.k8s.io/v1", "Role", &role));
    assert_eq!(
        decoded["rules"],
        json!([{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}])
    );

    let binding = rbac::RoleBinding {
        metadata: meta("read-pods", "default"),
        subjects: vec![rbac::Subject {
            kind: Some("ServiceAccount".into()),
            api_group: Some(String::new()),
            name: Some("robot".into()),
            namespace: Some("default".into()),
        }],
        role_ref: Some(rbac::RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: Some("Role".into()),
            name: Some("reader".into()),
        }),
    };
    let decoded = common::decode_checked(&envelope(
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        &binding,
    ));
    assert_eq!(
        decoded,
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "read-pods", "namespace": "default", "creationTimestamp": null},
            "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": "default"}],
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"}
        })
    );
}

#[test]
fn ingress() {
    let ingress = networking::Ingress {
        metadata: meta("web", "default"),
        spec: Some(networking::IngressSpec {
            ingress_class_name: Some(String::new()),
            tls: vec![networking::IngressTls {
                hosts: vec!["example.com".into()],
                secret_name: Some("tls".into()),
            }],
            rules: vec![networking::IngressRule {
                host: Some("example.com".into()),
                ingress_rule_value: Some(networking::IngressRuleValue {
                    http: Some(networking::HttpIngressRuleValue {
                        paths: vec![networking::HttpIngressPath {
                            path: Some("/".into()),
                            path_type: Some("Prefix".into()),
                            backend: Some(networking::IngressBackend {
                                service: Some(networking::IngressServiceBackend {
                                    name: Some("web".into()),
                                    port: Some(networking::ServiceBackendPort {
                                        name: Some(String::new()),
                                        number: Some(80),
                                    }),
                                }),
                                resource: None,
                            }),
                        }],
                    }),
                }),
            }],
            ..Default::default()
        }),
        status: Some(networking::IngressStatus::default()),
    };
    let decoded = common::decode_checked(&envelope("networking.k8s.io/v1", "Ingress", &ingress));
    assert_eq!(
        decoded["spec"],
        json!({
            // *string: an explicit empty class name is kept.
            "ingressClassName": "",
            "tls": [{"hosts": ["example.com"], "secretName": "tls"}],
            // IngressRule.ingressRuleValue is inlined into the rule.
            "rules": [{"host": "example.com", "http": {"paths": [{
                "path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "web", "port": {"number": 80}}}
            }]}}]
        })
    );
}
