//! Core/v1 and apps/v1 objects encoded by k8s-pb (prost) and decoded by us,
//! compared with the JSON a Go client would have sent for the same object.

mod common;

use common::{envelope, labels, meta};
use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as metav1;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::json;
use std::collections::BTreeMap;

fn quantity(s: &str) -> Quantity {
    Quantity {
        string: Some(s.into()),
    }
}

fn int_port(port: i32) -> Option<IntOrString> {
    Some(IntOrString {
        r#type: Some(0),
        int_val: Some(port),
        str_val: Some(String::new()),
    })
}

fn named_port(name: &str) -> Option<IntOrString> {
    Some(IntOrString {
        r#type: Some(1),
        int_val: Some(0),
        str_val: Some(name.into()),
    })
}

#[test]
fn config_map_with_data_and_binary_data() {
    let object = core::ConfigMap {
        metadata: meta("cfg", "default"),
        data: labels(&[("a", "b"), ("empty", "")]),
        binary_data: BTreeMap::from([("bin".to_string(), vec![0u8, 1, 2, 255])]),
        immutable: Some(false),
    };
    let decoded = common::decode_checked(&envelope("v1", "ConfigMap", &object));
    assert_eq!(
        decoded,
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cfg", "namespace": "default", "creationTimestamp": null},
            "data": {"a": "b", "empty": ""},
            "binaryData": {"bin": "AAEC/w=="},
            // *bool: an explicit false is kept.
            "immutable": false
        })
    );
}

#[test]
fn secret_bytes_are_base64() {
    let object = core::Secret {
        metadata: meta("s", ""),
        data: BTreeMap::from([("k".to_string(), b"v".to_vec())]),
        string_data: BTreeMap::new(),
        r#type: Some("Opaque".into()),
        immutable: None,
    };
    let decoded = common::decode_checked(&envelope("v1", "Secret", &object));
    assert_eq!(
        decoded,
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s", "creationTimestamp": null},
            "data": {"k": "dg=="},
            "type": "Opaque"
        })
    );
}

#[test]
fn namespace_and_service_account() {
    let ns = core::Namespace {
        metadata: meta("team-a", ""),
        spec: Some(core::NamespaceSpec::default()),
        status: Some(core::NamespaceStatus {
            phase: Some(String::new()),
            conditions: vec![],
        }),
    };
    let decoded = common::decode_checked(&envelope("v1", "Namespace", &ns));
    assert_eq!(
        decoded,
        json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "team-a", "creationTimestamp": null},
            "spec": {}, "status": {}
        })
    );

    let sa = core::ServiceAccount {
        metadata: meta("robot", "ns1"),
        automount_service_account_token: Some(false),
        image_pull_secrets: vec![core::LocalObjectReference {
            name: Some("regcred".into()),
        }],
        ..Default::default()
    };
    let decoded = common::decode_checked(&envelope("v1", "ServiceAccount", &sa));
    assert_eq!(
        decoded,
        json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "robot", "namespace": "ns1", "creationTimestamp": null},
            "automountServiceAccountToken": false,
            "imagePullSecrets": [{"name": "regcred"}]
        })
    );
}

#[test]
fn service_ports_and_selector() {
    let object = core::Service {
        metadata: meta("svc", "default"),
        spec: Some(core::ServiceSpec {
            ports: vec![
                core::ServicePort {
                    name: Some("http".into()),
                    protocol: Some("TCP".into()),
                    port: Some(80),
                    target_port: int_port(8080),
                    node_port: Some(0),
                    ..Default::default()
                },
                core::ServicePort {
                    name: Some("metrics".into()),
                    protocol: Some(String::new()),
                    port: Some(9090),
                    target_port: named_port("metrics"),
                    ..Default::default()
                },
            ],
            selector: labels(&[("app", "web")]),
            cluster_ip: Some(String::new()),
            r#type: Some("ClusterIP".into()),
            session_affinity: Some(String::new()),
            publish_not_ready_addresses: Some(false),
            ..Default::default()
        }),
        status: Some(core::ServiceStatus {
            load_balancer: Some(core::LoadBalancerStatus::default()),
            conditions: vec![],
        }),
    };
    let decoded = common::decode_checked(&envelope("v1", "Service", &object));
    assert_eq!(
        decoded,
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "svc", "namespace": "default", "creationTimestamp": null},
            "spec": {
                "ports": [
                    {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080},
                    {"name": "metrics", "port": 9090, "targetPort": "metrics"}
                ],
                "selector": {"app": "web"},
                "type": "ClusterIP"
            },
            "status": {"loadBalancer": {}}
        })
    );
}

fn container() -> core::Container {
    core::Container {
        name: Some("web".into()),
        image: Some("nginx:1.27".into()),
        command: vec!["nginx".into()],
        args: vec!["-g".into(), "daemon off;".into()],
        working_dir: Some(String::new()),
        ports: vec![core::ContainerPort {
            name: Some("http".into()),
            host_port: Some(0),
            container_port: Some(80),
            protocol: Some(String::new()),
            host_ip: Some(String::new()),
        }],
        env: vec![
            core::EnvVar {
                name: Some("MODE".into()),
                value: Some("prod".into()),
                value_from: None,
            },
            core::EnvVar {
                name: Some("PASSWORD".into()),
                value: Some(String::new()),
                value_from: Some(core::EnvVarSource {
                    secret_key_ref: Some(core::SecretKeySelector {
                        local_object_reference: Some(core::LocalObjectReference {
                            name: Some("db".into()),
                        }),
                        key: Some("password".into()),
                        optional: Some(false),
                    }),
                    ..Default::default()
                }),
            },
        ],
        resources: Some(core::ResourceRequirements {
            limits: BTreeMap::from([("memory".to_string(), quantity("128Mi"))]),
            requests: BTreeMap::from([
                ("cpu".to_string(), quantity("250m")),
                ("memory".to_string(), quantity("64Mi")),
            ]),
            claims: vec![],
        }),
        volume_mounts: vec![core::VolumeMount {
            name: Some("data".into()),
            read_only: Some(true),
            mount_path: Some("/data".into()),
            sub_path: Some(String::new()),
            ..Default::default()
        }],
        liveness_probe: Some(core::Probe {
            handler: Some(core::ProbeHandler {
                http_get: Some(core::HttpGetAction {
                    path: Some("/healthz".into()),
                    port: named_port("http"),
                    host: Some(String::new()),
                    scheme: Some("HTTP".into()),
                    http_headers: vec![],
                }),
                ..Default::default()
            }),
            initial_delay_seconds: Some(5),
            timeout_seconds: Some(0),
            period_seconds: Some(10),
            success_threshold: Some(0),
            failure_threshold: Some(3),
            termination_grace_period_seconds: None,
        }),
        readiness_probe: Some(core::Probe {
            handler: Some(core::ProbeHandler {
                tcp_socket: Some(core::TcpSocketAction {
                    port: int_port(80),
                    host: Some(String::new()),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        termination_message_path: Some(String::new()),
        image_pull_policy: Some("IfNotPresent".into()),
        stdin: Some(false),
        stdin_once: Some(false),
        tty: Some(false),
        ..Default::default()
    }
}

#[test]
fn deployment_with_full_pod_template() {
    let object = apps::Deployment {
        metadata: meta("web", "prod"),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(0),
            selector: Some(metav1::LabelSelector {
                match_labels: labels(&[("app", "web")]),
                match_expressions: vec![],
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(metav1::ObjectMeta {
                    labels: labels(&[("app", "web")]),
                    creation_timestamp: Some(metav1::Time::default()),
                    ..Default::default()
                }),
                spec: Some(core::PodSpec {
                    volumes: vec![core::Volume {
                        name: Some("data".into()),
                        volume_source: Some(core::VolumeSource {
                            empty_dir: Some(core::EmptyDirVolumeSource {
                                medium: Some(String::new()),
                                size_limit: Some(quantity("1Gi")),
                            }),
                            ..Default::default()
                        }),
                    }],
                    containers: vec![container()],
                    restart_policy: Some(String::new()),
                    termination_grace_period_seconds: Some(0),
                    dns_policy: Some(String::new()),
                    service_account_name: Some(String::new()),
                    host_network: Some(false),
                    ..Default::default()
                }),
            }),
            strategy: Some(apps::DeploymentStrategy {
                r#type: Some("RollingUpdate".into()),
                rolling_update: Some(apps::RollingUpdateDeployment {
                    max_unavailable: named_port("25%"),
                    max_surge: int_port(1),
                }),
            }),
            min_ready_seconds: Some(0),
            revision_history_limit: None,
            paused: Some(false),
            progress_deadline_seconds: None,
        }),
        status: Some(apps::DeploymentStatus {
            observed_generation: Some(0),
            replicas: Some(0),
            ..Default::default()
        }),
    };
    let decoded = common::decode_checked(&envelope("apps/v1", "Deployment", &object));
    let expected = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "prod", "creationTimestamp": null},
        "spec": {
            // *int32: zero replicas stays.
            "replicas": 0,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}, "creationTimestamp": null},
                "spec": {
                    // Volume.volumeSource is inlined into the volume.
                    "volumes": [{"name": "data", "emptyDir": {"sizeLimit": "1Gi"}}],
                    "containers": [{
                        "name": "web",
                        "image": "nginx:1.27",
                        "command": ["nginx"],
                        "args": ["-g", "daemon off;"],
                        "ports": [{"name": "http", "containerPort": 80}],
                        "env": [
                            {"name": "MODE", "value": "prod"},
                            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {
                                "name": "db", "key": "password", "optional": false
                            }}}
                        ],
                        "resources": {
                            "limits": {"memory": "128Mi"},
                            "requests": {"cpu": "250m", "memory": "64Mi"}
                        },
                        "volumeMounts": [{"name": "data", "readOnly": true, "mountPath": "/data"}],
                        "livenessProbe": {
                            "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
                            "initialDelaySeconds": 5,
                            "periodSeconds": 10,
                            "failureThreshold": 3
                        },
                        "readinessProbe": {"tcpSocket": {"port": 80}},
                        "imagePullPolicy": "IfNotPresent"
                    }],
                    "terminationGracePeriodSeconds": 0
                }
            },
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 1}
            }
        },
        "status": {}
    });
    assert_eq!(decoded, expected);
}

#[test]
fn set_timestamps_are_rfc3339() {
    let mut metadata = meta("x", "ns").unwrap();
    metadata.creation_timestamp = Some(metav1::Time {
        seconds: Some(1_795_322_828),
        nanos: Some(123_456_789),
    });
    metadata.deletion_grace_period_seconds = Some(0);
    let object = core::ConfigMap {
        metadata: Some(metadata),
        ..Default::default()
    };
    let decoded = common::decode_checked(&envelope("v1", "ConfigMap", &object));
    assert_eq!(
        decoded["metadata"],
        json!({
            "name": "x", "namespace": "ns",
            "creationTimestamp": "2026-11-22T04:47:08Z",
            "deletionGracePeriodSeconds": 0
        })
    );
}
