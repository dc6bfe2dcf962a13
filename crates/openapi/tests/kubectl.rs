//! Real kubectl (1.27, 1.29, 1.32, 1.33) against the documents, served over plain
//! HTTP on 127.0.0.1 by the small server in `support`: `explain` reads the
//! field docs, `api-resources` the discovery documents, and client-side
//! validation the v2 protobuf document.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::{Options, Server};

/// Where the kubectl binaries live; `RKUBE_KUBECTL_DIR` overrides it.
fn kubectl_binary(version: &str) -> PathBuf {
    let dir = std::env::var("RKUBE_KUBECTL_DIR")
        .unwrap_or_else(|_| "/usr/lib/google-cloud-sdk/bin".to_owned());
    let path = Path::new(&dir).join(format!("kubectl.{version}"));
    assert!(
        path.exists(),
        "{} is missing: these tests need real kubectl (set RKUBE_KUBECTL_DIR)",
        path.display()
    );
    path
}

struct Kubectl {
    binary: PathBuf,
    dir: tempfile::TempDir,
}

impl Kubectl {
    fn new(version: &str, server: &Server) -> Kubectl {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: http://127.0.0.1:{}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n    namespace: default\nusers:\n- name: test\n  user: {{}}\ncurrent-context: test\n",
            server.port
        );
        std::fs::write(dir.path().join("config"), config).expect("write kubeconfig");
        Kubectl {
            binary: kubectl_binary(version),
            dir,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let output = Command::new(&self.binary)
            .arg("--kubeconfig")
            .arg(self.dir.path().join("config"))
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .arg("--request-timeout=30s")
            .args(args)
            .env("HOME", self.dir.path())
            .env_remove("KUBECONFIG")
            .output()
            .expect("run kubectl");
        output
    }

    fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).expect("write manifest");
        path
    }
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The kubectl versions the tests run. 1.27 reads the v2 document for
/// `explain` and patches, later ones the v3 documents.
const VERSIONS: &[&str] = &["1.27", "1.29", "1.32", "1.33"];

#[test]
fn explain_prints_field_docs() {
    let server = Server::start();
    for version in VERSIONS {
        let kubectl = Kubectl::new(version, &server);
        let output = kubectl.run(&["explain", "pods.spec.containers.ports"]);
        let (stdout, stderr) = text(&output);
        assert!(output.status.success(), "kubectl {version}: {stderr}");
        assert!(
            stdout.contains("KIND:") && stdout.contains("Pod"),
            "kubectl {version}: {stdout}"
        );
        assert!(
            stdout.contains("containerPort"),
            "kubectl {version}: {stdout}"
        );
        assert!(
            stdout.contains("Number of port to expose on the pod's IP address"),
            "kubectl {version}: {stdout}"
        );
        assert!(stdout.contains("-required-"), "kubectl {version}: {stdout}");

        let output = kubectl.run(&["explain", "deployment", "--recursive"]);
        let (stdout, stderr) = text(&output);
        assert!(output.status.success(), "kubectl {version}: {stderr}");
        assert!(
            stdout.contains("DeploymentSpec")
                || stdout.contains("spec\t<Object>")
                || stdout.contains("spec"),
            "{stdout}"
        );
        assert!(
            stdout.contains("terminationGracePeriodSeconds"),
            "kubectl {version}: {stdout}"
        );
        assert!(
            stdout.contains("maxUnavailable"),
            "kubectl {version}: {stdout}"
        );
    }
}

#[test]
fn api_resources_lists_short_names() {
    let server = Server::start();
    for version in VERSIONS {
        let kubectl = Kubectl::new(version, &server);
        let output = kubectl.run(&["api-resources"]);
        let (stdout, stderr) = text(&output);
        assert!(output.status.success(), "kubectl {version}: {stderr}");
        let pods = stdout
            .lines()
            .find(|l| l.starts_with("pods "))
            .unwrap_or_else(|| panic!("kubectl {version}: no pods line in {stdout}"));
        let columns: Vec<&str> = pods.split_whitespace().collect();
        assert_eq!(
            columns,
            ["pods", "po", "v1", "true", "Pod"],
            "kubectl {version}"
        );
        let deployments = stdout
            .lines()
            .find(|l| l.starts_with("deployments "))
            .unwrap_or_else(|| panic!("kubectl {version}: no deployments line"));
        assert!(deployments.contains("apps/v1") && deployments.contains("deploy"));
    }
}

/// kubectl 1.30+ asks `/api` and `/apis` for apidiscovery v2 first and, when
/// served, needs no per-group-version documents at all.
#[test]
fn new_kubectl_uses_aggregated_discovery() {
    let server = Server::start();
    let kubectl = Kubectl::new("1.32", &server);
    let output = kubectl.run(&["api-resources"]);
    assert!(output.status.success(), "{}", text(&output).1);
    let seen = server.requests();
    let apis = seen
        .iter()
        .find(|s| s.target.starts_with("/apis?") || s.target == "/apis")
        .expect("kubectl asked /apis");
    assert!(
        apis.accept.contains("v=v2;as=APIGroupDiscoveryList"),
        "{}",
        apis.accept
    );
    assert!(
        !seen
            .iter()
            .any(|s| s.target.starts_with("/api/v1") || s.target.starts_with("/apis/apps/v1")),
        "kubectl fell back to legacy discovery: {seen:?}"
    );
}

const DEPLOYMENT_WITH_UNKNOWN_FIELD: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  bogus: true
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx
";

const VALID_DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx
        ports:
        - containerPort: 80
";

/// Against a server whose v3 documents do not advertise `fieldValidation`,
/// `--validate=strict` validates on the client, against the v2 protobuf
/// document: an unknown field fails with kubectl's own message, a valid
/// object passes.
#[test]
fn client_side_validation_reports_unknown_fields() {
    let server = Server::start_with(Options {
        without_field_validation: true,
        ..Options::default()
    });
    for version in VERSIONS {
        let kubectl = Kubectl::new(version, &server);
        let bad = kubectl.write("bad.yaml", DEPLOYMENT_WITH_UNKNOWN_FIELD);
        let output = kubectl.run(&[
            "apply",
            "--dry-run=client",
            "--validate=strict",
            "-f",
            path(&bad),
        ]);
        let (stdout, stderr) = text(&output);
        assert!(
            !output.status.success(),
            "kubectl {version} accepted it: {stdout}"
        );
        assert!(
            stderr.contains(r#"unknown field "bogus" in io.k8s.api.apps.v1.DeploymentSpec"#),
            "kubectl {version}: {stderr}"
        );

        let good = kubectl.write("good.yaml", VALID_DEPLOYMENT);
        let output = kubectl.run(&[
            "apply",
            "--dry-run=client",
            "--validate=strict",
            "-f",
            path(&good),
        ]);
        let (stdout, stderr) = text(&output);
        assert!(output.status.success(), "kubectl {version}: {stderr}");
        assert!(
            stdout.contains("deployment.apps/web created (dry run)"),
            "kubectl {version}: {stdout}"
        );

        // A wrong type is caught the same way.
        let wrong = kubectl.write(
            "wrong.yaml",
            &VALID_DEPLOYMENT.replace("replicas: 1", "replicas: many"),
        );
        let output = kubectl.run(&[
            "create",
            "--dry-run=client",
            "--validate=strict",
            "-f",
            path(&wrong),
        ]);
        let (_, stderr) = text(&output);
        assert!(
            !output.status.success(),
            "kubectl {version} accepted a string replica count"
        );
        assert!(
            stderr.contains(r#"invalid type for io.k8s.api.apps.v1.DeploymentSpec.replicas: got "string", expected "integer""#),
            "kubectl {version}: {stderr}"
        );
    }
}

/// Against the documents as served (PATCH advertises `fieldValidation`, as
/// upstream does), kubectl leaves unknown-field detection to the server: it
/// sends `fieldValidation=Strict` with the write instead of validating
/// locally. So with `--dry-run=client` nothing rejects the unknown field —
/// the same as against kube-apiserver.
#[test]
fn strict_validation_is_delegated_to_the_server() {
    let server = Server::start();
    for version in VERSIONS {
        let kubectl = Kubectl::new(version, &server);
        let bad = kubectl.write("bad.yaml", DEPLOYMENT_WITH_UNKNOWN_FIELD);
        let output = kubectl.run(&[
            "apply",
            "--dry-run=client",
            "--validate=strict",
            "-f",
            path(&bad),
        ]);
        let (stdout, stderr) = text(&output);
        assert!(output.status.success(), "kubectl {version}: {stderr}");
        assert!(
            stdout.contains("created (dry run)"),
            "kubectl {version}: {stdout}"
        );

        server.clear();
        // The test server answers the write with 404; what matters is
        // what kubectl sent.
        let _ = kubectl.run(&["create", "--validate=strict", "-f", path(&bad)]);
        let posts: Vec<_> = server
            .requests()
            .into_iter()
            .filter(|s| s.method == "POST")
            .collect();
        assert!(
            posts.iter().any(|s| s
                .target
                .starts_with("/apis/apps/v1/namespaces/default/deployments?")
                && s.target.contains("fieldValidation=Strict")),
            "kubectl {version} sent {posts:?}"
        );
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// `kubectl apply` of a changed object computes a strategic merge patch
/// from the documents' patch directives: containers merge by `name`, so the
/// patch lists only the changed container and keeps the order with
/// `$setElementOrder/containers`; without the merge key kubectl would send the
/// whole list.
#[test]
fn apply_computes_strategic_merge_patches_from_the_merge_keys() {
    let server = Server::start_with(Options {
        existing_deployment: true,
        ..Options::default()
    });
    for version in VERSIONS {
        let kubectl = Kubectl::new(version, &server);
        let manifest = kubectl.write("web.yaml", TWO_CONTAINERS);
        server.clear();
        let output = kubectl.run(&["apply", "-f", path(&manifest)]);
        let (stdout, stderr) = text(&output);
        assert!(output.status.success(), "kubectl {version}: {stderr}");
        assert!(
            stdout.contains("deployment.apps/web configured"),
            "kubectl {version}: {stdout}"
        );
        let patch = server
            .requests()
            .into_iter()
            .find(|s| s.method == "PATCH")
            .unwrap_or_else(|| panic!("kubectl {version} sent no PATCH"));
        assert_eq!(patch.content_type, "application/strategic-merge-patch+json");
        let body: serde_json::Value = serde_json::from_str(&patch.body).expect("patch is JSON");
        let spec = &body["spec"]["template"]["spec"];
        assert_eq!(
            spec["$setElementOrder/containers"],
            serde_json::json!([{"name": "web"}, {"name": "sidecar"}]),
            "kubectl {version}: {body}"
        );
        let containers = spec["containers"]
            .as_array()
            .expect("containers in the patch");
        assert!(
            containers
                .iter()
                .any(|c| c["name"] == "sidecar" && c["image"] == "busybox"),
            "kubectl {version}: {body}"
        );
        assert!(
            containers
                .iter()
                .any(|c| c["name"] == "web" && c["image"] == "nginx:2"),
            "kubectl {version}: {body}"
        );
    }
}

/// The control: the same apply against documents without the directives
/// replaces the container list wholesale, so the merge above came from the
/// documents rather than from kubectl's compiled-in types.
#[test]
fn without_directives_apply_replaces_the_list() {
    let server = Server::start_with(Options {
        existing_deployment: true,
        without_patch_directives: true,
        ..Options::default()
    });
    for version in VERSIONS {
        let kubectl = Kubectl::new(version, &server);
        let manifest = kubectl.write("web.yaml", TWO_CONTAINERS);
        let output = kubectl.run(&["apply", "-f", path(&manifest)]);
        assert!(
            output.status.success(),
            "kubectl {version}: {}",
            text(&output).1
        );
        let patch = server
            .requests()
            .into_iter()
            .find(|s| s.method == "PATCH")
            .unwrap_or_else(|| panic!("kubectl {version} sent no PATCH"));
        let body: serde_json::Value = serde_json::from_str(&patch.body).expect("patch is JSON");
        let spec = &body["spec"]["template"]["spec"];
        assert!(
            spec.get("$setElementOrder/containers").is_none(),
            "kubectl {version}: {body}"
        );
        assert_eq!(
            spec["containers"].as_array().map(Vec::len),
            Some(2),
            "kubectl {version}: {body}"
        );
    }
}

const TWO_CONTAINERS: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:2
      - name: sidecar
        image: busybox
";
