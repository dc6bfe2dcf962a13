//! Service strategy tests: the JSON kube-apiserver returns for what
//! `kubectl create service` sends, validation messages, and allocation
//! through the strategy hooks against the SQLite store.

use std::sync::Arc;

use rkube_storage::sqlite::SqliteStore;
use serde_json::{json, Value};

use super::*;

fn messages(errs: &[FieldError]) -> Vec<String> {
    errs.iter().map(ToString::to_string).collect()
}

fn strategy() -> (tempfile::TempDir, ServiceStrategy) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("state.db")).unwrap());
    let s = ServiceStrategy::over_store(store, "10.43.0.0/16", 30000..=32767).unwrap();
    (dir, s)
}

/// What `kubectl create service <type> my-svc --tcp=80:8080` sends.
fn kubectl_create(ty: &str) -> Value {
    json!({
        "kind": "Service", "apiVersion": "v1",
        "metadata": {"name": "my-svc", "creationTimestamp": null, "labels": {"app": "my-svc"}},
        "spec": {
            "ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
            "selector": {"app": "my-svc"},
            "type": ty,
        },
        "status": {"loadBalancer": {}},
    })
}

async fn create(s: &ServiceStrategy, mut svc: Value) -> Result<Value, StatusError> {
    s.prepare_for_create(&mut svc);
    let errs = s.validate(&svc);
    assert!(errs.is_empty(), "{errs:?}");
    s.before_create(&mut svc, false).await?;
    Ok(svc)
}

#[tokio::test]
async fn cluster_ip_service_matches_upstream() {
    let (_dir, s) = strategy();
    let svc = create(&s, kubectl_create("ClusterIP")).await.unwrap();
    let ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();
    assert!(ip.starts_with("10.43."), "{ip}");
    let want = json!({
        "kind": "Service", "apiVersion": "v1",
        "metadata": {"name": "my-svc", "creationTimestamp": null, "labels": {"app": "my-svc"}},
        "spec": {
            "clusterIP": ip, "clusterIPs": [ip],
            "internalTrafficPolicy": "Cluster",
            "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
            "ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
            "selector": {"app": "my-svc"},
            "sessionAffinity": "None",
            "type": "ClusterIP",
        },
        "status": {"loadBalancer": {}},
    });
    assert_eq!(svc, want, "{}", serde_json::to_string_pretty(&svc).unwrap());
}

#[tokio::test]
async fn node_port_and_load_balancer_get_ports_and_policies() {
    let (_dir, s) = strategy();
    let np = create(&s, kubectl_create("NodePort")).await.unwrap();
    let port = np["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
    assert!((30000..=32767).contains(&port));
    assert_eq!(np["spec"]["externalTrafficPolicy"], "Cluster");

    let mut lb = kubectl_create("LoadBalancer");
    lb["metadata"]["name"] = json!("lb");
    lb["spec"]["externalTrafficPolicy"] = json!("Local");
    let lb = create(&s, lb).await.unwrap();
    assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], true);
    let hc = lb["spec"]["healthCheckNodePort"].as_u64().unwrap();
    assert_ne!(hc, lb["spec"]["ports"][0]["nodePort"].as_u64().unwrap());

    // The same node port again is refused in upstream's words.
    let mut clash = kubectl_create("NodePort");
    clash["spec"]["ports"][0]["nodePort"] = json!(port);
    let err = create(&s, clash).await.unwrap_err();
    assert_eq!(err.code(), 422);
    assert!(
        err.status().message.ends_with(&format!(
            "spec.ports[0].nodePort: Invalid value: {port}: provided port is already allocated"
        )),
        "{}",
        err.status().message
    );

    // Deleting gives everything back.
    s.release(&Value::Null, &lb).await.unwrap();
    let mut again = kubectl_create("NodePort");
    again["spec"]["ports"][0]["nodePort"] = json!(hc);
    create(&s, again).await.unwrap();
}

#[tokio::test]
async fn requested_cluster_ips_are_checked() {
    let (_dir, s) = strategy();
    let mut a = kubectl_create("ClusterIP");
    a["spec"]["clusterIP"] = json!("10.43.0.10");
    let a = create(&s, a).await.unwrap();
    assert_eq!(a["spec"]["clusterIPs"], json!(["10.43.0.10"]));
    let mut b = kubectl_create("ClusterIP");
    b["spec"]["clusterIP"] = json!("10.43.0.10");
    let err = create(&s, b).await.unwrap_err();
    assert!(err.status().message.ends_with(
        r#"spec.clusterIPs: Invalid value: ["10.43.0.10"]: failed to allocate IP 10.43.0.10: provided IP is already allocated"#
    ), "{}", err.status().message);
    let mut c = kubectl_create("ClusterIP");
    c["spec"]["clusterIP"] = json!("1.1.1.1");
    let err = create(&s, c).await.unwrap_err();
    assert!(err.status().message.ends_with(
        "failed to allocate IP 1.1.1.1: the provided IP (1.1.1.1) is not in the valid range. The range of valid IPs is 10.43.0.0/16"
    ), "{}", err.status().message);

    // Headless services get no address, but the family fields.
    let mut headless = kubectl_create("ClusterIP");
    headless["spec"]["clusterIP"] = json!("None");
    let headless = create(&s, headless).await.unwrap();
    assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
    assert_eq!(headless["spec"]["ipFamilyPolicy"], "SingleStack");
}

#[tokio::test]
async fn updates_keep_allocations_and_refuse_a_new_cluster_ip() {
    let (_dir, s) = strategy();
    let old = create(&s, kubectl_create("NodePort")).await.unwrap();
    // A replace that leaves out clusterIP and nodePort keeps them.
    let mut new = kubectl_create("NodePort");
    s.prepare_for_update(&mut new, &old);
    assert_eq!(new["spec"]["clusterIP"], old["spec"]["clusterIP"]);
    assert_eq!(
        new["spec"]["ports"][0]["nodePort"],
        old["spec"]["ports"][0]["nodePort"]
    );
    assert!(s.validate_update(&new, &old).is_empty());
    s.before_update(&mut new, &old, false).await.unwrap();
    assert_eq!(
        new["spec"]["ports"][0]["nodePort"],
        old["spec"]["ports"][0]["nodePort"]
    );

    let mut moved = new.clone();
    moved["spec"]["clusterIP"] = json!("10.43.0.99");
    moved["spec"]["clusterIPs"] = json!(["10.43.0.99"]);
    assert_eq!(
        messages(&s.validate_update(&moved, &old)),
        [r#"spec.clusterIPs[0]: Invalid value: ["10.43.0.99"]: may not change once set"#]
    );

    let mut headless = new.clone();
    headless["spec"]["clusterIP"] = json!("None");
    headless["spec"]["clusterIPs"] = json!(["None"]);
    headless["spec"]["type"] = json!("ClusterIP");
    headless["spec"]["ports"][0]
        .as_object_mut()
        .unwrap()
        .remove("nodePort");
    headless["spec"]
        .as_object_mut()
        .unwrap()
        .remove("externalTrafficPolicy");
    assert_eq!(
        messages(&s.validate_update(&headless, &old)),
        [r#"spec.clusterIPs[0]: Invalid value: ["None"]: may not change once set"#]
    );

    // Turning into an ExternalName drops the address and families.
    let mut external = old.clone();
    external["spec"]["type"] = json!("ExternalName");
    external["spec"]["externalName"] = json!("example.com");
    external["spec"]["ports"][0]
        .as_object_mut()
        .unwrap()
        .remove("nodePort");
    external["spec"]
        .as_object_mut()
        .unwrap()
        .remove("externalTrafficPolicy");
    s.prepare_for_update(&mut external, &old);
    for gone in [
        "clusterIP",
        "clusterIPs",
        "ipFamilies",
        "ipFamilyPolicy",
        "externalTrafficPolicy",
        "internalTrafficPolicy",
    ] {
        assert!(external["spec"].get(gone).is_none(), "{gone}");
    }
    assert!(
        s.validate_update(&external, &old).is_empty(),
        "{:?}",
        s.validate_update(&external, &old)
    );

    // NodePort -> ClusterIP drops the node port, and releasing after the
    // update frees it for others.
    // A patch of the live object (`kubectl patch -p '{"spec":{"type":"ClusterIP"}}'`)
    // still carries the NodePort-only fields: they go.
    let mut patched = old.clone();
    patched["spec"]["type"] = json!("ClusterIP");
    s.prepare_for_update(&mut patched, &old);
    assert!(patched["spec"]["ports"][0].get("nodePort").is_none());
    assert!(patched["spec"].get("externalTrafficPolicy").is_none());
    assert!(
        s.validate_update(&patched, &old).is_empty(),
        "{:?}",
        s.validate_update(&patched, &old)
    );

    let mut to_cluster_ip = kubectl_create("ClusterIP");
    s.prepare_for_update(&mut to_cluster_ip, &old);
    assert!(to_cluster_ip["spec"]["ports"][0].get("nodePort").is_none());
    assert!(to_cluster_ip["spec"].get("externalTrafficPolicy").is_none());
    assert!(s.validate_update(&to_cluster_ip, &old).is_empty());
    s.release(&to_cluster_ip, &old).await.unwrap();
    let mut reuse = kubectl_create("NodePort");
    reuse["spec"]["ports"][0]["nodePort"] = old["spec"]["ports"][0]["nodePort"].clone();
    create(&s, reuse).await.unwrap();
}

#[test]
fn session_affinity_defaults() {
    let mut client_ip = json!({"spec": {"sessionAffinity": "ClientIP", "ports": [{"port": 80}]}});
    default_service(&mut client_ip);
    assert_eq!(
        client_ip["spec"]["sessionAffinityConfig"],
        json!({"clientIP": {"timeoutSeconds": 10800}})
    );
    let mut none = json!({"spec": {"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 5}}}});
    default_service(&mut none);
    assert!(none["spec"].get("sessionAffinityConfig").is_none());
    let mut ext = json!({"spec": {"type": "ExternalName", "externalName": "example.com"}});
    default_service(&mut ext);
    assert!(ext["spec"].get("internalTrafficPolicy").is_none());
}

#[test]
fn validation_messages_match_upstream() {
    let s = ServiceStrategy::without_allocation();
    let mut svc = json!({"metadata": {"name": "1abc"}, "spec": {
        "type": "Magic", "sessionAffinity": "None",
        "ports": [
            {"port": 0, "protocol": "TCP", "targetPort": 80},
            {"name": "a", "port": 80, "protocol": "HTTP", "targetPort": 80, "nodePort": 30000},
        ],
        "selector": {"app": "bad value!"},
    }});
    default_service(&mut svc);
    let got = messages(&s.validate(&svc));
    assert_eq!(
        got,
        [
            r#"metadata.name: Invalid value: "1abc": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"#,
            r#"spec.type: Unsupported value: "Magic": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort""#,
            "spec.ports[0].name: Required value",
            "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
            r#"spec.ports[1].protocol: Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP""#,
            r#"spec.selector: Invalid value: "bad value!": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"#,
        ]
    );
    let mut ext = json!({"metadata": {"name": "ext"}, "spec": {"type": "ExternalName", "externalName": "Not A Name"}});
    default_service(&mut ext);
    assert_eq!(
        messages(&s.validate(&ext)),
        [
            r#"spec.externalName: Invalid value: "Not A Name": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"#
        ]
    );
    let mut ext_ips = json!({"metadata": {"name": "ext"}, "spec": {"type": "ExternalName",
        "externalName": "example.com.", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack"}});
    default_service(&mut ext_ips);
    assert_eq!(
        messages(&s.validate(&ext_ips)),
        [
            "spec.ipFamilies: Forbidden: may not be set for ExternalName services",
            "spec.ipFamilyPolicy: Forbidden: may not be set for ExternalName services",
        ]
    );
    let mut none_np = json!({"metadata": {"name": "n"}, "spec": {"type": "NodePort", "clusterIP": "None",
        "ports": [{"port": 80}]}});
    default_service(&mut none_np);
    assert_eq!(
        messages(&s.validate(&none_np)),
        [
            r#"spec.clusterIPs[0]: Invalid value: "None": may not be set to 'None' for NodePort services"#
        ]
    );
    let mut no_ports = json!({"metadata": {"name": "n"}, "spec": {}});
    default_service(&mut no_ports);
    assert_eq!(
        messages(&s.validate(&no_ports)),
        ["spec.ports: Required value"]
    );
    let mut cip_np =
        json!({"metadata": {"name": "n"}, "spec": {"ports": [{"port": 80, "nodePort": 30001}]}});
    default_service(&mut cip_np);
    assert_eq!(
        messages(&s.validate(&cip_np)),
        ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]
    );
}
