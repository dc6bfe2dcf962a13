use super::*;
use crate::catalog;
use serde_json::{json, Value};

fn now() -> Timestamp {
    "2024-05-01T12:00:00Z".parse().unwrap()
}

/// Each kind's row has exactly one cell per column, even for an object with
/// every optional field unset, and every column is documented.
#[test]
fn every_catalog_kind_prints_one_cell_per_column() {
    for r in catalog::all() {
        let printer = printer(r.group, r.kind);
        let columns = printer.columns();
        assert!(
            columns.iter().any(|c| c.name == "Name"),
            "{} has no Name column",
            r.kind
        );
        let cells = printer
            .row(&r.empty_object(), now())
            .unwrap_or_else(|e| panic!("{} {}: {e}", r.api_version(), r.kind));
        assert_eq!(cells.len(), columns.len(), "{} {}", r.api_version(), r.kind);
        for c in &columns {
            assert!(
                !c.description.is_empty(),
                "{}: column {} has no description",
                r.kind,
                c.name
            );
            assert!(c.priority == 0 || c.priority == 1);
        }
    }
}

#[test]
fn kinds_without_a_printer_use_name_and_created_at() {
    for (group, kind) in [
        ("rbac.authorization.k8s.io", "Role"),
        ("rbac.authorization.k8s.io", "ClusterRole"),
        ("", "LimitRange"),
        ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ] {
        assert!(std::ptr::eq(printer(group, kind), &DEFAULT), "{kind}");
    }
    let cols = columns("rbac.authorization.k8s.io", "Role");
    let names: Vec<_> = cols.iter().map(|c| c.name).collect();
    assert_eq!(names, ["Name", "Created At"]);
    assert_eq!(cols[0].format, "name");
    assert_eq!(cols[1].column_type, "date");
    assert!(cols[1].description.contains("CreationTimestamp"));
    let role = json!({"metadata": {"name": "reader", "creationTimestamp": "2024-04-30T08:09:10Z"}});
    assert_eq!(
        row("rbac.authorization.k8s.io", "Role", &role, now()).unwrap(),
        vec![json!("reader"), json!("2024-04-30T08:09:10Z")]
    );
}

#[test]
fn columns_serialize_as_table_column_definitions() {
    let c = &columns("", "Pod")[5];
    let v = serde_json::to_value(c).unwrap();
    assert_eq!(v["name"], "IP");
    assert_eq!(v["type"], "string");
    assert_eq!(v["priority"], 1);
    assert!(v["description"].as_str().unwrap().contains("podIP"));
}

#[test]
fn wide_columns_of_nodes_and_services() {
    let wide_names = |group: &str, kind: &str| -> Vec<&'static str> {
        columns(group, kind)
            .into_iter()
            .filter(|c| c.priority == 1)
            .map(|c| c.name)
            .collect()
    };
    assert_eq!(
        wide_names("", "Node"),
        [
            "Internal-IP",
            "External-IP",
            "OS-Image",
            "Kernel-Version",
            "Container-Runtime"
        ]
    );
    assert_eq!(wide_names("", "Service"), ["Selector"]);
    assert_eq!(
        wide_names("", "Pod"),
        ["IP", "Node", "Nominated Node", "Readiness Gates"]
    );
}

#[test]
fn node_row() {
    let node = json!({
        "metadata": {"name": "n1", "creationTimestamp": "2024-04-29T09:00:00Z",
                     "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/master": "true",
                                "kubernetes.io/role": "etcd"}},
        "spec": {"unschedulable": true},
        "status": {
            "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "False"}],
            "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}, {"type": "Hostname", "address": "n1"}],
            "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Debian", "kernelVersion": "6.1",
                         "containerRuntimeVersion": "rkube://0.1", "machineID": "", "systemUUID": "", "bootID": "",
                         "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64"}
        }
    });
    assert_eq!(
        row("", "Node", &node, now()).unwrap(),
        vec![
            json!("n1"),
            json!("NotReady,SchedulingDisabled"),
            json!("control-plane,etcd,master"),
            json!("2d3h"),
            json!("v1.33.0"),
            json!("192.168.1.10"),
            json!("<none>"),
            json!("Debian"),
            json!("6.1"),
            json!("rkube://0.1"),
        ]
    );
}

#[test]
fn config_maps_secrets_and_quotas() {
    let cm = json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
    assert_eq!(row("", "ConfigMap", &cm, now()).unwrap()[1], 3);
    let secret = json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": "AA=="}});
    assert_eq!(
        row("", "Secret", &secret, now()).unwrap()[1..3],
        [json!("Opaque"), json!(1)]
    );
    let quota = json!({"metadata": {"name": "q"}, "status": {
        "hard": {"limits.cpu": "2", "pods": "10", "requests.memory": "1Gi"},
        "used": {"pods": "3"}
    }});
    let cells = row("", "ResourceQuota", &quota, now()).unwrap();
    assert_eq!(cells[1], "pods: 3/10, requests.memory: 0/1Gi");
    assert_eq!(cells[2], "limits.cpu: 0/2");
}

#[test]
fn endpoints_are_capped_at_three() {
    let ep = json!({"metadata": {"name": "web"}, "subsets": [{
        "addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "fd00::3"}, {"ip": "10.0.0.4"}],
        "ports": [{"port": 80}]
    }]});
    assert_eq!(
        row("", "Endpoints", &ep, now()).unwrap()[1],
        "10.0.0.1:80,10.0.0.2:80,[fd00::3]:80 + 1 more..."
    );
    let empty = json!({"metadata": {"name": "web"}});
    assert_eq!(row("", "Endpoints", &empty, now()).unwrap()[1], "<none>");
}

#[test]
fn rbac_bindings_and_storage_classes() {
    let rb = json!({"metadata": {"name": "rb"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "ci", "namespace": "build"},
                     {"kind": "Group", "name": "devs"}]});
    let cells = row("rbac.authorization.k8s.io", "RoleBinding", &rb, now()).unwrap();
    assert_eq!(cells[1], "ClusterRole/view");
    assert_eq!(
        cells[3..],
        [json!("alice"), json!("devs"), json!("build/ci")]
    );
    let sc = json!({"metadata": {"name": "local-path", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"});
    let cells = row("storage.k8s.io", "StorageClass", &sc, now()).unwrap();
    assert_eq!(
        cells[..5],
        [
            json!("local-path (default)"),
            json!("rancher.io/local-path"),
            json!("Delete"),
            json!("WaitForFirstConsumer"),
            json!(false)
        ]
    );
}

#[test]
fn wrong_field_types_are_errors() {
    let bad = json!({"metadata": {"name": "x"}, "spec": {"replicas": "three"}});
    let err = row("apps", "Deployment", &bad, now()).unwrap_err();
    assert!(matches!(
        err,
        TableError::Decode {
            kind: "Deployment",
            ..
        }
    ));
    assert!(err.to_string().contains("Deployment"));
    assert!(row(
        "rbac.authorization.k8s.io",
        "Role",
        &json!({"metadata": 3}),
        now()
    )
    .is_err());
}

#[test]
fn ingress_rows() {
    let ing = |rules: Value, tls: Value| {
        let object = json!({"metadata": {"name": "web"}, "spec": {"ingressClassName": "nginx", "rules": rules, "tls": tls},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.2"}, {"hostname": "lb.example"}]}}});
        row("networking.k8s.io", "Ingress", &object, now()).unwrap()
    };
    let cells = ing(
        json!([{"host": "a.example"}, {}]),
        json!([{"hosts": ["a.example"]}]),
    );
    assert_eq!(
        cells[1..5],
        [
            json!("nginx"),
            json!("a.example"),
            json!("192.0.2.2,lb.example"),
            json!("80, 443")
        ]
    );
    let cells = ing(
        json!([{}, {"host": "a"}, {"host": "b"}, {"host": "c"}]),
        json!([]),
    );
    assert_eq!(
        cells[2..5],
        [json!("a,b,c"), json!("192.0.2.2,lb.example"), json!("80")]
    );
    let cells = ing(
        json!([{"host": "a"}, {"host": "b"}, {"host": "c"}, {"host": "d"}, {"host": "e"}]),
        json!(null),
    );
    assert_eq!(cells[2], "a,b,c + 2 more...");
    assert_eq!(ing(json!([{}]), json!(null))[2], "*");
}

#[test]
fn volumes_and_claims() {
    let pv = json!({"metadata": {"name": "pv1", "creationTimestamp": "2024-05-01T11:00:00Z"},
        "spec": {"capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "local",
                 "claimRef": {"namespace": "default", "name": "data"}, "volumeMode": "Filesystem"},
        "status": {"phase": "Bound"}});
    assert_eq!(
        row("", "PersistentVolume", &pv, now()).unwrap(),
        vec![
            json!("pv1"),
            json!("5Gi"),
            json!("RWO,RWX"),
            json!("Retain"),
            json!("Bound"),
            json!("default/data"),
            json!("local"),
            json!("<unset>"),
            json!(""),
            json!("60m"),
            json!("Filesystem"),
        ]
    );
    let pvc = |volume: Option<&str>| {
        let mut object = json!({"metadata": {"name": "data", "annotations": {"volume.beta.kubernetes.io/storage-class": "legacy"}},
            "spec": {"storageClassName": "local", "resources": {"requests": {"storage": "1Gi"}}},
            "status": {"phase": "Pending", "capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteOnce"]}});
        if let Some(v) = volume {
            object["spec"]["volumeName"] = json!(v);
        }
        row("", "PersistentVolumeClaim", &object, now()).unwrap()
    };
    assert_eq!(
        pvc(None)[1..6],
        [
            json!("Pending"),
            json!(""),
            json!(""),
            json!(""),
            json!("legacy")
        ]
    );
    assert_eq!(
        pvc(Some("pv1"))[2..5],
        [json!("pv1"), json!("5Gi"), json!("RWO")]
    );
}

#[test]
fn csr_lease_and_api_service_rows() {
    let csr = json!({"metadata": {"name": "node-csr"}, "spec": {"request": "", "signerName": "kubernetes.io/kubelet-serving",
        "username": "system:node:n1", "expirationSeconds": 86400},
        "status": {"conditions": [{"type": "Approved", "status": "True"}], "certificate": "Y2VydA=="}});
    let cells = row(
        "certificates.k8s.io",
        "CertificateSigningRequest",
        &csr,
        now(),
    )
    .unwrap();
    assert_eq!(
        cells[2..],
        [
            json!("kubernetes.io/kubelet-serving"),
            json!("system:node:n1"),
            json!("24h"),
            json!("Approved,Issued")
        ]
    );
    let lease =
        json!({"metadata": {"name": "kube-scheduler"}, "spec": {"holderIdentity": "node1_abc"}});
    assert_eq!(
        row("coordination.k8s.io", "Lease", &lease, now()).unwrap()[1],
        "node1_abc"
    );
    let local = json!({"metadata": {"name": "v1.apps"}, "spec": {"group": "apps", "version": "v1", "groupPriorityMinimum": 17800, "versionPriority": 15},
        "status": {"conditions": [{"type": "Available", "status": "True", "reason": "Local"}]}});
    assert_eq!(
        row("apiregistration.k8s.io", "APIService", &local, now()).unwrap()[1..3],
        [json!("Local"), json!("True")]
    );
    let remote = json!({"metadata": {"name": "v1beta1.metrics.k8s.io"},
        "spec": {"service": {"namespace": "kube-system", "name": "metrics-server"}, "groupPriorityMinimum": 100, "versionPriority": 100},
        "status": {"conditions": [{"type": "Available", "status": "False", "reason": "MissingEndpoints"}]}});
    assert_eq!(
        row("apiregistration.k8s.io", "APIService", &remote, now()).unwrap()[1..3],
        [
            json!("kube-system/metrics-server"),
            json!("False (MissingEndpoints)")
        ]
    );
}

#[test]
fn ip_address_parent_reference() {
    let ip = json!({"metadata": {"name": "10.43.0.1"}, "spec": {"parentRef": {"group": "", "resource": "services", "namespace": "default", "name": "kubernetes"}}});
    assert_eq!(
        row("networking.k8s.io", "IPAddress", &ip, now()).unwrap(),
        vec![json!("10.43.0.1"), json!("services/default/kubernetes")]
    );
}
