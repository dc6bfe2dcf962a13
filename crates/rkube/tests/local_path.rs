//! Local-path volumes end to end, as k3s users expect them, as root: a
//! real `rkube server` with a real `rkube agent` beside it (its own data
//! dir), real kubectl and the busybox image.
//!
//! Covered: the default StorageClass `local-path` (`kubectl get
//! storageclass` marks it default); a StatefulSet whose
//! volumeClaimTemplate names no class gets it by admission, the claim is
//! provisioned on the scheduler's node in the agent's `<data-dir>/storage`
//! and bound, the pod writes into the directory on the host; deleting the
//! StatefulSet and the claim removes the volume and the directory. Claims
//! asking for ReadWriteMany are refused with ProvisioningFailed, and a
//! Released volume naming a path outside the node's storage directory is
//! refused with VolumeFailedDelete and its directory kept. With
//! `--disable-local-storage` there is no class, and claims keep none.
//! Simulated nodes get volumes too, and give them back without a disk.

mod support;

use std::path::Path;
use std::time::Duration;

use support::eventually;
use support::images::BUSYBOX as IMAGE;
use support::node::LocalNode;

/// How long provisioning, binding and reclaiming get on a loaded machine.
const WAIT: Duration = Duration::from_secs(120);

fn statefulset() -> String {
    format!(
        r#"apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: web}}
spec:
  serviceName: web
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: {IMAGE}
        command: ["sh", "-c", "echo hello-$(hostname) > /data/greeting && sleep 3600"]
        volumeMounts: [{{name: data, mountPath: /data}}]
  volumeClaimTemplates:
  - metadata: {{name: data}}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {{requests: {{storage: 64Mi}}}}
"#
    )
}

#[test]
fn a_statefulset_gets_a_local_path_volume_that_goes_with_its_claim() {
    let c = LocalNode::start("lp-node");
    let table = c.wait(&["storageclass"], "{.items[*].metadata.name}", |n| {
        n.contains("local-path")
    });
    assert_eq!(table, "local-path");
    let printed = c.ok(&["get", "storageclass"]);
    assert!(
        printed.contains("local-path (default)")
            && printed.contains("rancher.io/local-path")
            && printed.contains("Delete")
            && printed.contains("WaitForFirstConsumer"),
        "{printed}"
    );

    c.apply(&statefulset());
    // The claim got the default class by admission, then a volume.
    let claim = ["pvc", "data-web-0"];
    c.wait(&claim, "{.spec.storageClassName}", |s| s == "local-path");
    c.wait_within(&claim, "{.status.phase}", WAIT, |p| p == "Bound");
    let uid = c.get(&claim, "{.metadata.uid}");
    let volume = format!("pvc-{uid}");
    assert_eq!(c.get(&claim, "{.spec.volumeName}"), volume);
    assert_eq!(
        c.get(
            &claim,
            "{.metadata.annotations.volume\\.kubernetes\\.io/selected-node}"
        ),
        "lp-node"
    );
    let pv = ["pv", volume.as_str()];
    let dir = c
        .data
        .join("storage")
        .join(format!("{volume}_default_data-web-0"));
    assert_eq!(
        c.get(&pv, "{.spec.hostPath.path} {.spec.hostPath.type}"),
        format!("{} DirectoryOrCreate", dir.display())
    );
    assert_eq!(
        c.get(
            &pv,
            "{.metadata.annotations.pv\\.kubernetes\\.io/provisioned-by} {.spec.persistentVolumeReclaimPolicy} {.spec.capacity.storage} {.spec.storageClassName}"
        ),
        "rancher.io/local-path Delete 64Mi local-path"
    );
    assert_eq!(
        c.get(
            &pv,
            "{.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]}"
        ),
        "lp-node"
    );
    assert_eq!(
        c.get(
            &claim,
            "{.metadata.annotations.volume\\.kubernetes\\.io/storage-provisioner}"
        ),
        "rancher.io/local-path"
    );
    c.wait_events(
        "data-web-0",
        &[
            "External provisioner is provisioning volume for claim \"default/data-web-0\"",
            "ProvisioningSucceeded",
            &volume,
        ],
    );

    // The pod runs and its write lands in the directory on the host.
    c.wait_running("web-0");
    let greeting = dir.join("greeting");
    let wrote = eventually(WAIT, || {
        std::fs::read_to_string(&greeting).is_ok_and(|s| s.trim() == "hello-web-0")
    });
    assert!(
        wrote,
        "no greeting in {}:\n{}",
        dir.display(),
        c.agent_logs()
    );
    // The scheduler bound the pod only once its claim was bound
    // (VolumeBinding's PreBind), so the kubelet never failed a mount.
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=web-0",
        "-o",
        "custom-columns=REASON:.reason,MESSAGE:.message",
    ]);
    assert!(
        events.contains("Scheduled") && !events.contains("FailedMount"),
        "{events}"
    );

    // Claims outlive their StatefulSet, as upstream; deleting the claim
    // then takes the volume and its data.
    c.ok(&["delete", "statefulset", "web", "--wait=false"]);
    let gone = eventually(WAIT, || {
        !c.ok(&["get", "pods", "-o", "name"]).contains("web-0")
    });
    assert!(gone, "web-0 still there:\n{}", c.ok(&["get", "pods"]));
    assert_eq!(c.get(&pv, "{.status.phase}"), "Bound");
    assert!(dir.exists());
    c.ok(&["delete", "pvc", "data-web-0", "--wait=false"]);
    let reclaimed = eventually(WAIT, || {
        !c.ok(&["get", "pv", "-o", "name"]).contains(&volume) && !dir.exists()
    });
    assert!(
        reclaimed,
        "volume or {} left:\n{}\n{}",
        dir.display(),
        c.ok(&["get", "pv", "-o", "yaml"]),
        c.agent_logs()
    );
    assert!(c.data.join("storage").exists(), "the base directory stays");

    refuses_what_a_node_local_directory_cannot_do(&c);
}

/// On the same node: a ReadWriteMany claim is refused; a Released volume
/// of the provisioner naming a path outside the node's storage directory
/// is neither removed nor deleted.
fn refuses_what_a_node_local_directory_cannot_do(c: &LocalNode) {
    c.apply(&format!(
        r#"apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: shared}}
spec:
  accessModes: [ReadWriteMany]
  resources: {{requests: {{storage: 64Mi}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: sharer}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {IMAGE}
    command: ["sleep", "3600"]
    volumeMounts: [{{name: data, mountPath: /data}}]
  volumes:
  - name: data
    persistentVolumeClaim: {{claimName: shared}}
"#
    ));
    c.wait_events("shared", &["ProvisioningFailed", "ReadWriteMany"]);
    assert_eq!(c.get(&["pvc", "shared"], "{.status.phase}"), "Pending");

    let outside = c.server.dir.path().join("not-storage");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("keep"), b"precious").unwrap();
    c.apply(&format!(
        r#"apiVersion: v1
kind: PersistentVolume
metadata:
  name: stray
  annotations: {{pv.kubernetes.io/provisioned-by: rancher.io/local-path}}
spec:
  capacity: {{storage: 64Mi}}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Delete
  storageClassName: local-path
  hostPath: {{path: {path}, type: DirectoryOrCreate}}
  claimRef: {{namespace: default, name: gone, uid: 00000000-0000-0000-0000-000000000000}}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions:
        - {{key: kubernetes.io/hostname, operator: In, values: [{node}]}}
"#,
        path = outside.display(),
        node = c.node,
    ));
    c.wait_within(&["pv", "stray"], "{.status.phase}", WAIT, |p| {
        p == "Released"
    });
    c.wait_events("stray", &["VolumeFailedDelete", "refusing to remove"]);
    assert_eq!(c.get(&["pv", "stray"], "{.metadata.name}"), "stray");
    assert!(outside.join("keep").exists());
    assert!(Path::new(&outside).is_dir());
}

#[test]
fn disable_local_storage_leaves_no_default_class() {
    let server = support::Server::start_with(&["--disable-local-storage"]);
    // The controller manager is up (it made the default account): the
    // class would have been made before it.
    server.wait_jsonpath(
        WAIT,
        &["get", "serviceaccount", "default"],
        "{.metadata.name}",
        "default",
        || server.log_tail(40),
    );
    assert_eq!(
        server.ok(&["get", "storageclass", "-o", "name"]),
        "",
        "a class was made"
    );
    server.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: plain}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Mi}}\n",
    );
    assert_eq!(
        server.jsonpath(&["get", "pvc", "plain"], "{.spec.storageClassName}"),
        ""
    );
}

#[test]
fn simulated_nodes_get_local_path_volumes_and_give_them_back() {
    let (server, _agent) = support::agent::simulated_cluster("lps", 2, WAIT);
    let sts = statefulset().replace("replicas: 1", "replicas: 2");
    server.ok_stdin(&["apply", "-f", "-"], &sts);
    let context = || server.ok(&["get", "pvc,pv,pods", "-o", "wide"]);
    for i in 0..2 {
        let claim = format!("data-web-{i}");
        server.wait_jsonpath(
            WAIT,
            &["get", "pvc", &claim],
            "{.status.phase}",
            "Bound",
            context,
        );
        let volume = server.jsonpath(&["get", "pvc", &claim], "{.spec.volumeName}");
        let node = server.jsonpath(&["get", "pod", &format!("web-{i}")], "{.spec.nodeName}");
        assert!(node.starts_with("lps-"), "web-{i} on {node:?}");
        let pinned = server.jsonpath(
            &["get", "pv", &volume],
            "{.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]}",
        );
        assert_eq!(pinned, node);
        // Simulated nodes keep nothing on disk: the default data dir's
        // path, never made.
        let path = server.jsonpath(&["get", "pv", &volume], "{.spec.hostPath.path}");
        assert_eq!(
            path,
            format!("/var/lib/rkube/storage/{volume}_default_{claim}")
        );
    }
    server.ok(&["delete", "statefulset", "web", "--wait=false"]);
    server.ok(&["delete", "pvc", "data-web-0", "data-web-1", "--wait=false"]);
    server.wait_jsonpath(
        WAIT,
        &["get", "pv"],
        "{.items[*].metadata.name}",
        "",
        context,
    );
}
