//! The kubelet's paths that reach outside the pod, end to end as root: a
//! real `rkube server` (agent-free) with a real `rkube agent` beside it,
//! real kubectl, and for image pulls a real Debian docker-registry behind
//! htpasswd basic auth on loopback, the image pushed by the project's own
//! registry client.
//!
//! Covered: imagePullSecrets (the pod's and its ServiceAccount's, copied
//! by admission), ErrImagePull/ImagePullBackOff/ErrImageNeverPull with
//! upstream's events, the pull policies; PersistentVolumeClaims bound by
//! the binder to hostPath and local PVs, data outliving pods, readOnly
//! claims, Released volumes; projected serviceAccountTokens (audience,
//! expiry, bound to the pod) checked by TokenReview and `kubectl --token`;
//! configMap and secret changes reaching volumes but not subPath mounts.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use rkube_containers::image::registries::RegistriesConfig;
use support::eventually;
use support::images::{busybox_image, BUSYBOX as IMAGE};
use support::node::LocalNode;

#[path = "../../containers/tests/support/registry.rs"]
mod registry;

/// A server and a Ready node whose agent reads `registries` as its
/// registries.yaml.
fn start(node: &str, registries: &str) -> LocalNode {
    let mut c = LocalNode::new(node, |_| {});
    c.registries = c.server.dir.path().join("registries.yaml");
    std::fs::write(&c.registries, registries).unwrap();
    c.start_agent();
    c.wait_node_ready();
    c
}

/// A pod on `node` running `image` with `extra` spec lines (indented two
/// spaces) and the container's own lines (indented four).
fn pod(name: &str, node: &str, image: &str, container: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: {node}\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {image}\n{container}{extra}"
    )
}

const SLEEP: &str = "    command: [\"sleep\", \"3600\"]\n";

#[test]
fn image_pull_secrets_policies_and_back_off() {
    let reg = registry::Registry::start_with_basic_auth("puller", "s3cret-pw");
    let addr = reg.addr.clone();
    // Plain HTTP to the registry; the pusher's own credentials are its
    // config's, the node has none (pods bring them).
    let mirrors = format!("mirrors:\n  \"{addr}\":\n    endpoint: [\"http://{addr}\"]\n");
    let push_config = format!(
        "{mirrors}configs:\n  \"{addr}\":\n    auth:\n      username: puller\n      password: s3cret-pw\n"
    );
    let private = format!("{addr}/team/private:1");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(busybox_image().build().unwrap().push(
            &rkube_containers::image::client::Client::new(
                RegistriesConfig::parse(&push_config).unwrap(),
            ),
            &private,
        ))
        .expect("push to the registry");
    let c = start("kv-images", &mirrors);
    let node = c.node.clone();

    // No credentials: 401, ErrImagePull then ImagePullBackOff, with
    // upstream's events.
    c.apply(&pod("nocreds", &node, &private, SLEEP, ""));
    c.wait_waiting("nocreds", &["ErrImagePull", "ImagePullBackOff"]);
    let message = c.get(
        &["pod", "nocreds"],
        "{.status.containerStatuses[0].state.waiting.message}",
    );
    assert!(
        message.contains(&format!("failed to pull and unpack image \"{private}\""))
            && (message.contains("401") || message.to_lowercase().contains("unauthorized")),
        "{message}"
    );
    c.wait_waiting("nocreds", &["ImagePullBackOff"]);
    let events = c.wait_events(
        "nocreds",
        &[
            "Pulling",
            &format!("Failed to pull image \"{private}\""),
            "Error: ErrImagePull",
            "BackOff",
            &format!("Back-off pulling image \"{private}\""),
            "Error: ImagePullBackOff",
        ],
    );
    assert!(
        events.contains("401") || events.to_lowercase().contains("unauthorized"),
        "{events}"
    );
    let table = c.ok(&["get", "pod", "nocreds"]);
    assert!(
        table.contains("ImagePullBackOff") || table.contains("ErrImagePull"),
        "{table}"
    );
    assert!(c
        .get(
            &["pod", "nocreds"],
            "{.status.containerStatuses[0].state.waiting.message}"
        )
        .starts_with(&format!("Back-off pulling image \"{private}\"")),);

    // A dockerconfigjson secret from kubectl; the pod naming it runs.
    c.ok(&[
        "create",
        "secret",
        "docker-registry",
        "regcred",
        &format!("--docker-server={addr}"),
        "--docker-username=puller",
        "--docker-password=s3cret-pw",
    ]);
    c.apply(&pod(
        "withcreds",
        &node,
        &private,
        SLEEP,
        "  imagePullSecrets: [{name: regcred}]\n",
    ));
    c.wait_phase("withcreds", "Running");
    c.wait_events(
        "withcreds",
        &[
            &format!("Successfully pulled image \"{private}\""),
            "Started",
        ],
    );
    assert!(c
        .get(
            &["pod", "withcreds"],
            "{.status.containerStatuses[0].imageID}"
        )
        .contains("@sha256:"));

    // The ServiceAccount's imagePullSecrets go into its pods at admission;
    // Always makes the pod pull (with them) although the image is here.
    c.ok(&["create", "serviceaccount", "builder"]);
    c.ok(&[
        "patch",
        "serviceaccount",
        "builder",
        "-p",
        r#"{"imagePullSecrets":[{"name":"regcred"}]}"#,
    ]);
    c.apply(&pod(
        "viasa",
        &node,
        &private,
        &format!("{SLEEP}    imagePullPolicy: Always\n"),
        "  serviceAccountName: builder\n",
    ));
    assert_eq!(
        c.get(&["pod", "viasa"], "{.spec.imagePullSecrets[*].name}"),
        "regcred"
    );
    c.wait_phase("viasa", "Running");
    c.wait_events("viasa", &["Successfully pulled image"]);

    // Always without credentials pulls, so fails, image present or not.
    c.apply(&pod(
        "always",
        &node,
        &private,
        &format!("{SLEEP}    imagePullPolicy: Always\n"),
        "",
    ));
    c.wait_waiting("always", &["ErrImagePull", "ImagePullBackOff"]);
    // IfNotPresent without credentials uses the image on the node.
    c.apply(&pod(
        "ifnotpresent",
        &node,
        &private,
        &format!("{SLEEP}    imagePullPolicy: IfNotPresent\n"),
        "",
    ));
    c.wait_phase("ifnotpresent", "Running");
    c.wait_events(
        "ifnotpresent",
        &[&format!(
            "Container image \"{private}\" already present on machine"
        )],
    );
    // Never: runs what is here, refuses what is not.
    c.apply(&pod(
        "never-here",
        &node,
        &private,
        &format!("{SLEEP}    imagePullPolicy: Never\n"),
        "",
    ));
    c.wait_phase("never-here", "Running");
    let absent = format!("{addr}/team/absent:1");
    c.apply(&pod(
        "never-absent",
        &node,
        &absent,
        &format!("{SLEEP}    imagePullPolicy: Never\n"),
        "",
    ));
    c.wait_waiting("never-absent", &["ErrImageNeverPull"]);
    let want = format!("Container image \"{absent}\" is not present with pull policy of Never");
    assert_eq!(
        c.get(
            &["pod", "never-absent"],
            "{.status.containerStatuses[0].state.waiting.message}"
        ),
        want
    );
    c.wait_events(
        "never-absent",
        &["ErrImageNeverPull", &want, "Error: ErrImageNeverPull"],
    );
    assert!(c
        .ok(&["get", "pod", "never-absent"])
        .contains("ErrImageNeverPull"));
}

#[test]
fn persistent_volume_claims_bind_and_keep_data() {
    let c = start("kv-claims", "");
    let node = c.node.clone();
    let host_dir = c.server.dir.path().join("pv-host");
    let local_dir = c.server.dir.path().join("pv-local");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::create_dir_all(&local_dir).unwrap();
    c.apply(&format!(
        r#"apiVersion: v1
kind: PersistentVolume
metadata: {{name: pv-host}}
spec:
  capacity: {{storage: 1Gi}}
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  hostPath: {{path: {host}}}
---
apiVersion: v1
kind: PersistentVolume
metadata: {{name: pv-big}}
spec:
  capacity: {{storage: 5Gi}}
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  hostPath: {{path: /nonexistent-rkube-pv}}
---
apiVersion: v1
kind: PersistentVolume
metadata: {{name: pv-local, labels: {{kind: local}}}}
spec:
  capacity: {{storage: 2Gi}}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Delete
  storageClassName: local-storage
  local: {{path: {local}}}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions:
        - {{key: kubernetes.io/hostname, operator: In, values: [{node}]}}
"#,
        host = host_dir.display(),
        local = local_dir.display(),
    ));
    for pv in ["pv-host", "pv-big", "pv-local"] {
        c.wait(&["pv", pv], "{.status.phase}", |p| p == "Available");
    }
    c.apply(
        r#"apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  resources: {requests: {storage: 500Mi}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: fast}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: local-storage
  selector: {matchLabels: {kind: local}}
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: huge}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  resources: {requests: {storage: 100Gi}}
"#,
    );
    // The smallest fitting volume of the claim's class.
    c.wait(&["pvc", "data"], "{.status.phase}", |p| p == "Bound");
    assert_eq!(c.get(&["pvc", "data"], "{.spec.volumeName}"), "pv-host");
    assert_eq!(c.get(&["pvc", "data"], "{.status.capacity.storage}"), "1Gi");
    assert_eq!(
        c.get(
            &["pvc", "data"],
            "{.metadata.annotations.pv\\.kubernetes\\.io/bind-completed}"
        ),
        "yes"
    );
    c.wait(&["pv", "pv-host"], "{.status.phase}", |p| p == "Bound");
    assert_eq!(
        c.get(
            &["pv", "pv-host"],
            "{.spec.claimRef.namespace}/{.spec.claimRef.name}"
        ),
        "default/data"
    );
    c.wait(&["pvc", "fast"], "{.status.phase}", |p| p == "Bound");
    assert_eq!(c.get(&["pvc", "fast"], "{.spec.volumeName}"), "pv-local");
    assert_eq!(c.get(&["pv", "pv-big"], "{.status.phase}"), "Available");
    let table = c.ok(&["get", "pvc"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("data ") && l.contains("Bound") && l.contains("pv-host")),
        "{table}"
    );
    // Nothing fits: Pending, and the event says why.
    assert_eq!(c.get(&["pvc", "huge"], "{.status.phase}"), "Pending");
    c.wait_events(
        "huge",
        &[
            "FailedBinding",
            "no persistent volumes available for this claim and no storage class is set",
        ],
    );

    // A pod writes to the claim; the data outlives it and a second pod
    // reads it, also through a read-only mount that refuses writes.
    let mounts = |ro: bool| {
        format!(
            "    volumeMounts: [{{name: d, mountPath: /data}}]\n  volumes:\n  - name: d\n    persistentVolumeClaim: {{claimName: data, readOnly: {ro}}}\n"
        )
    };
    let writer = pod(
        "writer",
        &node,
        IMAGE,
        "    command: [\"sh\", \"-c\", \"echo kept > /data/hello\"]\n",
        &mounts(false),
    );
    c.apply(&writer);
    c.wait_phase("writer", "Succeeded");
    assert_eq!(
        std::fs::read_to_string(host_dir.join("hello")).unwrap(),
        "kept\n"
    );
    c.ok(&["delete", "pod", "writer", "--wait=true", "--timeout=60s"]);
    assert!(host_dir.join("hello").exists(), "data went with the pod");
    c.apply(&pod(
        "reader",
        &node,
        IMAGE,
        "    command: [\"sh\", \"-c\", \"cat /data/hello; if echo x > /data/ro 2>/dev/null; then echo WROTE; else echo READONLY; fi\"]\n",
        &mounts(true),
    ));
    c.wait_phase("reader", "Succeeded");
    let out = c.logs("reader");
    assert!(
        out.contains("kept\n")
            && out.contains("Read-only file system")
            && out.contains("READONLY\n")
            && !out.contains("WROTE"),
        "{out}"
    );
    assert!(!host_dir.join("ro").exists());

    // The local volume's directory is what the pod writes into.
    c.apply(&pod(
        "local-writer",
        &node,
        IMAGE,
        "    command: [\"sh\", \"-c\", \"echo local > /fast/f\"]\n    volumeMounts: [{name: f, mountPath: /fast}]\n",
        "  volumes:\n  - {name: f, persistentVolumeClaim: {claimName: fast}}\n",
    ));
    c.wait_phase("local-writer", "Succeeded");
    assert_eq!(
        std::fs::read_to_string(local_dir.join("f")).unwrap(),
        "local\n"
    );

    // WaitForFirstConsumer: the claim waits until a pod using it is on a
    // node, then gets a volume whose nodeAffinity admits that node (the
    // smaller volume elsewhere is passed over).
    let wffc_dir = c.server.dir.path().join("pv-wffc");
    std::fs::create_dir_all(&wffc_dir).unwrap();
    let local_pv = |name: &str, size: &str, host: &str, path: &Path| {
        format!(
            "apiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: {name}}}\nspec:\n  capacity: {{storage: {size}}}\n  accessModes: [ReadWriteOnce]\n  storageClassName: late-local\n  local: {{path: {}}}\n  nodeAffinity:\n    required:\n      nodeSelectorTerms:\n      - matchExpressions:\n        - {{key: kubernetes.io/hostname, operator: In, values: [{host}]}}\n",
            path.display()
        )
    };
    c.apply(&format!(
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {{name: late-local}}\nprovisioner: kubernetes.io/no-provisioner\nvolumeBindingMode: WaitForFirstConsumer\n---\n{}---\n{}---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: late}}\nspec:\n  accessModes: [ReadWriteOnce]\n  storageClassName: late-local\n  resources: {{requests: {{storage: 1Gi}}}}\n",
        local_pv("pv-elsewhere", "1Gi", "another-node", Path::new("/nonexistent-rkube-pv")),
        local_pv("pv-here", "3Gi", &node, &wffc_dir),
    ));
    c.wait_events(
        "late",
        &[
            "WaitForFirstConsumer",
            "waiting for first consumer to be created before binding",
        ],
    );
    assert_eq!(c.get(&["pvc", "late"], "{.status.phase}"), "Pending");
    c.apply(&pod(
        "late-user",
        &node,
        IMAGE,
        "    command: [\"sh\", \"-c\", \"echo late > /l/f\"]\n    volumeMounts: [{name: l, mountPath: /l}]\n",
        "  volumes:\n  - {name: l, persistentVolumeClaim: {claimName: late}}\n",
    ));
    c.wait(&["pvc", "late"], "{.status.phase}", |p| p == "Bound");
    assert_eq!(c.get(&["pvc", "late"], "{.spec.volumeName}"), "pv-here");
    c.wait_phase("late-user", "Succeeded");
    assert_eq!(
        std::fs::read_to_string(wffc_dir.join("f")).unwrap(),
        "late\n"
    );

    // A pod whose claim is missing does not start, and says why.
    c.apply(&pod(
        "noclaim",
        &node,
        IMAGE,
        "    command: [\"true\"]\n    volumeMounts: [{name: m, mountPath: /m}]\n",
        "  volumes:\n  - {name: m, persistentVolumeClaim: {claimName: missing}}\n",
    ));
    c.wait_events("noclaim", &["persistentvolumeclaim \"missing\""]);
    assert_eq!(c.get(&["pod", "noclaim"], "{.status.phase}"), "Pending");

    // Released by policy: Retain keeps the volume (and data) Released,
    // Delete without a deleter fails it, as upstream.
    c.ok(&[
        "delete",
        "pod",
        "reader",
        "local-writer",
        "--wait=true",
        "--timeout=60s",
    ]);
    c.ok(&[
        "delete",
        "pvc",
        "data",
        "fast",
        "--wait=true",
        "--timeout=60s",
    ]);
    c.wait(&["pv", "pv-host"], "{.status.phase}", |p| p == "Released");
    c.wait(&["pv", "pv-local"], "{.status.phase}", |p| p == "Failed");
    assert!(host_dir.join("hello").exists());
    let recreated = r#"apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  resources: {requests: {storage: 500Mi}}
"#;
    c.apply(recreated);
    // A Released volume is not handed to a new claim: the next fit is.
    c.wait(&["pvc", "data"], "{.status.phase}", |p| p == "Bound");
    assert_eq!(c.get(&["pvc", "data"], "{.spec.volumeName}"), "pv-big");
    assert_eq!(c.get(&["pv", "pv-host"], "{.status.phase}"), "Released");
}

/// The JSON claims of a JWT.
fn jwt_claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn projected_tokens_and_volume_updates() {
    let c = start("kv-tokens", "");
    let node = c.node.clone();
    c.ok(&["create", "configmap", "cfg", "--from-literal=color=blue"]);
    c.ok(&[
        "create",
        "secret",
        "generic",
        "sec",
        "--from-literal=pw=one",
    ]);
    c.apply(&pod(
        "tok",
        &node,
        IMAGE,
        &format!(
            "{SLEEP}    volumeMounts:\n    - {{name: tokens, mountPath: /tokens}}\n    - {{name: cfg, mountPath: /cfg}}\n    - {{name: cfg, mountPath: /one/color, subPath: color}}\n    - {{name: sec, mountPath: /sec}}\n    - {{name: scratch, mountPath: /mine, subPathExpr: \"$(POD_NAME)/out\"}}\n    env:\n    - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}\n"
        ),
        r#"  volumes:
  - name: tokens
    projected:
      sources:
      - serviceAccountToken: {audience: vault, expirationSeconds: 600, path: vault-token}
      - serviceAccountToken: {expirationSeconds: 600, path: api-token}
  - {name: cfg, configMap: {name: cfg}}
  - {name: sec, secret: {secretName: sec}}
  - {name: scratch, emptyDir: {}}
"#,
    ));
    c.wait_phase("tok", "Running");
    let uid = c.get(&["pod", "tok"], "{.metadata.uid}");
    let dir = c.data.join(format!(
        "agent/pods/{uid}/volumes/kubernetes.io~projected/tokens"
    ));
    let vault = std::fs::read_to_string(dir.join("vault-token")).unwrap();
    let api = std::fs::read_to_string(dir.join("api-token")).unwrap();
    // subPathExpr took the pod's name from its environment.
    let scratch = c.data.join(format!(
        "agent/pods/{uid}/volumes/kubernetes.io~empty-dir/scratch/tok/out"
    ));
    assert!(scratch.is_dir(), "{} missing", scratch.display());

    // The audience and lifetime asked for, bound to the pod.
    let claims = jwt_claims(&vault);
    assert_eq!(claims["aud"], serde_json::json!(["vault"]), "{claims}");
    let life = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(life, 600, "{claims}");
    assert_eq!(claims["kubernetes.io"]["pod"]["name"], "tok");
    assert_eq!(claims["kubernetes.io"]["pod"]["uid"], uid.as_str());
    assert_eq!(claims["sub"], "system:serviceaccount:default:default");

    // TokenReview accepts it for its audience (and says who it is) but
    // not for the API server's.
    let review = |token: &str, audiences: &str| -> serde_json::Value {
        let body = format!(
            "{{\"apiVersion\":\"authentication.k8s.io/v1\",\"kind\":\"TokenReview\",\"spec\":{{\"token\":\"{token}\"{audiences}}}}}"
        );
        let out = c
            .server
            .ok_stdin(&["create", "-f", "-", "-o", "json"], &body);
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["status"].clone()
    };
    let ok = review(&vault, ",\"audiences\":[\"vault\"]");
    assert_eq!(ok["authenticated"], true, "{ok}");
    assert_eq!(
        ok["user"]["username"],
        "system:serviceaccount:default:default"
    );
    assert_eq!(ok["audiences"], serde_json::json!(["vault"]));
    assert_eq!(
        ok["user"]["extra"]["authentication.kubernetes.io/pod-name"],
        serde_json::json!(["tok"])
    );
    let wrong = review(&vault, "");
    assert_ne!(wrong["authenticated"], true, "{wrong}");

    // The API-audience token works as kubectl's credential; the vault
    // one does not.
    let server = format!("https://127.0.0.1:{}", c.server.port);
    let with_token = |token: &str| {
        Command::new("kubectl")
            .env_remove("KUBECONFIG")
            .args(["--kubeconfig", "/dev/null", "--server", &server])
            .arg("--insecure-skip-tls-verify")
            .args(["--token", token.trim(), "get", "pods", "-o", "name"])
            .output()
            .unwrap()
    };
    let out = with_token(&api);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("pod/tok"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = with_token(&vault);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Unauthorized"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // configMap and secret changes reach the volumes; the subPath file
    // keeps what it had when the container started, as upstream.
    assert_eq!(c.exec_cat("tok", "/one/color"), "blue");
    c.ok(&[
        "patch",
        "configmap",
        "cfg",
        "-p",
        r#"{"data":{"color":"red"}}"#,
    ]);
    c.ok(&[
        "patch",
        "secret",
        "sec",
        "-p",
        r#"{"stringData":{"pw":"two"}}"#,
    ]);
    let ok = eventually(Duration::from_secs(90), || {
        c.exec_cat("tok", "/cfg/color") == "red" && c.exec_cat("tok", "/sec/pw") == "two"
    });
    assert!(
        ok,
        "cfg {:?} sec {:?}",
        c.exec_cat("tok", "/cfg/color"),
        c.exec_cat("tok", "/sec/pw")
    );
    assert_eq!(c.exec_cat("tok", "/one/color"), "blue");

    // Deleting the pod invalidates its tokens.
    c.ok(&["delete", "pod", "tok", "--wait=true", "--timeout=60s"]);
    let gone = review(&vault, ",\"audiences\":[\"vault\"]");
    assert_ne!(gone["authenticated"], true, "{gone}");
    assert!(!with_token(&api).status.success());
}
