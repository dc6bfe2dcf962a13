//! Real kubectl bodies: a plain-HTTP server on loopback records what
//! `kubectl create ...` posts (protobuf, since kubectl 1.32 prefers it for
//! typed commands), answers with our decoding of it, and the test checks the
//! decoded JSON.

mod common;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const KUBECTL_1_32: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.32";
const KUBECTL_1_33: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";

#[derive(Clone, Debug)]
struct Recorded {
    path: String,
    content_type: String,
    body: Vec<u8>,
}

type Log = Arc<Mutex<Vec<Recorded>>>;

async fn handle(
    State(log): State<Log>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method == Method::GET {
        // `create role` maps its --resource through discovery first.
        return match discovery(uri.path()) {
            Some(document) => (
                StatusCode::OK,
                [("content-type", "application/json")],
                document.to_string(),
            )
                .into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        };
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    log.lock().unwrap().push(Recorded {
        path: uri.path().to_owned(),
        content_type: content_type.clone(),
        body: body.to_vec(),
    });
    let decoded = if content_type.starts_with(rkube_protobuf::CONTENT_TYPE) {
        rkube_protobuf::decode(&body).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice::<Value>(&body).map_err(|e| e.to_string())
    };
    match decoded {
        Ok(mut object) => {
            if uri.path().ends_with("/token") {
                // kubectl create token insists on a token in the answer.
                object["status"] = json!({"token": "t", "expirationTimestamp": null});
            }
            (
                StatusCode::CREATED,
                [("content-type", "application/json")],
                object.to_string(),
            )
                .into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}

/// Unaggregated discovery documents built from the resource catalog.
fn discovery(path: &str) -> Option<Value> {
    use rkube_api::catalog;
    let group_version = |gv: &catalog::GroupVersion| json!({"groupVersion": gv.api_version(), "version": gv.version});
    let resources = |gv: &catalog::GroupVersion| {
        let resources: Vec<Value> = gv
            .resources
            .iter()
            .map(|r| {
                json!({
                    "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                    "kind": r.kind, "verbs": r.verbs
                })
            })
            .collect();
        json!({"kind": "APIResourceList", "apiVersion": "v1",
               "groupVersion": gv.api_version(), "resources": resources})
    };
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["api"] => Some(json!({"kind": "APIVersions", "versions": ["v1"]})),
        ["apis"] => {
            let groups: Vec<Value> = catalog::groups()
                .iter()
                .filter(|g| !g.name.is_empty())
                .map(|g| {
                    json!({
                        "name": g.name,
                        "versions": g.versions.iter().map(group_version).collect::<Vec<_>>(),
                        "preferredVersion": group_version(g.preferred())
                    })
                })
                .collect();
            Some(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
        }
        ["api", version] => catalog::group_version("", version).map(resources),
        ["apis", group, version] => catalog::group_version(group, version).map(resources),
        _ => None,
    }
}

struct Harness {
    kubectl: &'static str,
    _dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    cache: PathBuf,
    log: Log,
}

impl Harness {
    async fn start(kubectl: &'static str) -> Self {
        let log = Log::default();
        let app = axum::Router::new().fallback(handle).with_state(log.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\n\
                 clusters: [{{name: t, cluster: {{server: \"http://127.0.0.1:{port}\"}}}}]\n\
                 users: [{{name: u, user: {{}}}}]\n\
                 contexts: [{{name: c, context: {{cluster: t, user: u, namespace: default}}}}]\n\
                 current-context: c\n"
            ),
        )
        .unwrap();
        let cache = dir.path().join("cache");
        Harness {
            kubectl,
            _dir: dir,
            kubeconfig,
            cache,
            log,
        }
    }

    /// Runs kubectl and returns the one request it posted, decoded.
    async fn create(&self, args: &[&str]) -> (Recorded, Value) {
        self.log.lock().unwrap().clear();
        // Global flags first: everything after `--` is the container command.
        let output = tokio::process::Command::new(self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args)
            .env("HOME", self.cache.parent().unwrap_or(Path::new("/tmp")))
            .output()
            .await
            .expect("run kubectl");
        assert!(
            output.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut log = self.log.lock().unwrap().clone();
        assert_eq!(log.len(), 1, "kubectl {args:?} posted {log:?}");
        let recorded = log.remove(0);
        // Exactly the media type, no parameters: what the server matches on.
        assert_eq!(
            recorded.content_type,
            rkube_protobuf::CONTENT_TYPE,
            "kubectl {args:?}"
        );
        let decoded = common::decode_checked(&recorded.body);
        (recorded, decoded)
    }
}

#[tokio::test]
async fn kubectl_1_32_create_bodies_decode() {
    create_bodies_decode(KUBECTL_1_32).await;
}

#[tokio::test]
async fn kubectl_1_33_create_bodies_decode() {
    create_bodies_decode(KUBECTL_1_33).await;
}

async fn create_bodies_decode(kubectl: &'static str) {
    if !Path::new(kubectl).exists() {
        eprintln!("skipping: {kubectl} is not installed");
        return;
    }
    let h = Harness::start(kubectl).await;

    let (req, cm) = h
        .create(&[
            "create",
            "configmap",
            "x",
            "--from-literal=a=b",
            "--from-literal=c=d",
        ])
        .await;
    assert_eq!(req.path, "/api/v1/namespaces/default/configmaps");
    assert_eq!(
        cm,
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "x", "creationTimestamp": null},
            "data": {"a": "b", "c": "d"}
        })
    );

    let (req, secret) = h
        .create(&["create", "secret", "generic", "s", "--from-literal=k=v"])
        .await;
    assert_eq!(req.path, "/api/v1/namespaces/default/secrets");
    assert_eq!(secret["data"], json!({"k": "dg=="}));
    assert_eq!(secret["metadata"]["name"], "s");

    let (req, deploy) = h
        .create(&[
            "create",
            "deployment",
            "web",
            "--image=busybox",
            "--replicas=2",
            "--port=80",
        ])
        .await;
    assert_eq!(req.path, "/apis/apps/v1/namespaces/default/deployments");
    assert_eq!(deploy["apiVersion"], "apps/v1");
    assert_eq!(deploy["kind"], "Deployment");
    assert_eq!(deploy["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(deploy["spec"]["replicas"], 2);
    assert_eq!(
        deploy["spec"]["selector"],
        json!({"matchLabels": {"app": "web"}})
    );
    assert_eq!(
        deploy["spec"]["template"]["spec"]["containers"],
        json!([{"name": "busybox", "image": "busybox", "ports": [{"containerPort": 80}], "resources": {}}])
    );
    assert_eq!(deploy["spec"]["strategy"], json!({}));
    assert_eq!(deploy["status"], json!({}));

    let (req, svc) = h
        .create(&["create", "service", "clusterip", "svc", "--tcp=80:8080"])
        .await;
    assert_eq!(req.path, "/api/v1/namespaces/default/services");
    assert_eq!(
        svc["spec"],
        json!({
            "ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
            "selector": {"app": "svc"},
            "type": "ClusterIP"
        })
    );

    let (req, job) = h
        .create(&["create", "job", "j", "--image=busybox", "--", "true"])
        .await;
    assert_eq!(req.path, "/apis/batch/v1/namespaces/default/jobs");
    assert_eq!(job["kind"], "Job");
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(
        pod["containers"],
        json!([{"name": "j", "image": "busybox", "command": ["true"], "resources": {}}])
    );
}

/// Every other typed `kubectl create` posts protobuf too; each body decodes
/// to its kind with the name and the fields the command sets.
#[tokio::test]
async fn kubectl_other_create_commands_decode() {
    if !Path::new(KUBECTL_1_32).exists() {
        eprintln!("skipping: {KUBECTL_1_32} is not installed");
        return;
    }
    let h = Harness::start(KUBECTL_1_32).await;
    let cases: &[(&[&str], &str, Value)] = &[
        (
            &["create", "namespace", "ns1"],
            "/api/v1/namespaces",
            json!({"kind": "Namespace", "metadata": {"name": "ns1", "creationTimestamp": null},
                   "spec": {}, "status": {}}),
        ),
        (
            &["create", "serviceaccount", "sa1"],
            "/api/v1/namespaces/default/serviceaccounts",
            json!({"kind": "ServiceAccount", "metadata": {"name": "sa1", "creationTimestamp": null}}),
        ),
        (
            &[
                "create",
                "cronjob",
                "cj",
                "--image=busybox",
                "--schedule=*/1 * * * *",
                "--",
                "date",
            ],
            "/apis/batch/v1/namespaces/default/cronjobs",
            json!({"spec": {
                "schedule": "*/1 * * * *",
                "jobTemplate": {
                    "metadata": {"name": "cj", "creationTimestamp": null},
                    "spec": {"template": {
                        "metadata": {"creationTimestamp": null},
                        "spec": {
                            "containers": [{"name": "cj", "image": "busybox",
                                            "command": ["date"], "resources": {}}],
                            "restartPolicy": "OnFailure"
                        }
                    }}
                }
            }}),
        ),
        (
            &["create", "quota", "q", "--hard=cpu=1,pods=2"],
            "/api/v1/namespaces/default/resourcequotas",
            json!({"kind": "ResourceQuota", "spec": {"hard": {"cpu": "1", "pods": "2"}}}),
        ),
        (
            &["create", "role", "r", "--verb=get", "--resource=pods"],
            "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles",
            json!({"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
        ),
        (
            &["create", "rolebinding", "rb", "--role=r", "--user=alice"],
            "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings",
            json!({
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]
            }),
        ),
        (
            &[
                "create",
                "clusterrole",
                "cr",
                "--verb=get",
                "--resource=nodes",
            ],
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            json!({"kind": "ClusterRole",
                   "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]}),
        ),
        (
            &[
                "create",
                "clusterrolebinding",
                "crb",
                "--clusterrole=cr",
                "--user=alice",
            ],
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cr"}}),
        ),
        (
            &[
                "create",
                "pdb",
                "p",
                "--selector=app=web",
                "--min-available=1",
            ],
            "/apis/policy/v1/namespaces/default/poddisruptionbudgets",
            json!({
                "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}},
                // These status counters lack omitempty in Go, so JSON has them too.
                "status": {"currentHealthy": 0, "desiredHealthy": 0,
                           "disruptionsAllowed": 0, "expectedPods": 0}
            }),
        ),
        (
            &["create", "priorityclass", "pc", "--value=1000"],
            "/apis/scheduling.k8s.io/v1/priorityclasses",
            json!({"value": 1000, "preemptionPolicy": "PreemptLowerPriority"}),
        ),
        (
            &["create", "ingress", "ing", "--rule=foo.com/bar=svc1:8080"],
            "/apis/networking.k8s.io/v1/namespaces/default/ingresses",
            json!({"spec": {"rules": [{"host": "foo.com", "http": {"paths": [{
                "path": "/bar", "pathType": "Exact",
                "backend": {"service": {"name": "svc1", "port": {"number": 8080}}}
            }]}}]}}),
        ),
        (
            &["create", "token", "sa1", "--duration=10m"],
            "/api/v1/namespaces/default/serviceaccounts/sa1/token",
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest"}),
        ),
        (
            &[
                "create",
                "secret",
                "docker-registry",
                "d",
                "--docker-server=x",
                "--docker-username=u",
                "--docker-password=p",
            ],
            "/api/v1/namespaces/default/secrets",
            json!({"type": "kubernetes.io/dockerconfigjson"}),
        ),
    ];
    for (args, path, expected) in cases {
        let (req, decoded) = h.create(args).await;
        println!("{args:?} {decoded}");
        if args[1] == "token" {
            assert_eq!(decoded["spec"]["expirationSeconds"], 600);
        }
        if args[1] == "secret" {
            let encoded = decoded["data"][".dockerconfigjson"].as_str().unwrap();
            use base64::Engine as _;
            let config = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .unwrap();
            let config: Value = serde_json::from_slice(&config).unwrap();
            assert_eq!(config["auths"]["x"]["username"], "u");
        }
        assert_eq!(&req.path, path, "{args:?}");
        for (key, value) in expected.as_object().unwrap() {
            assert_eq!(&decoded[key], value, "{args:?}: {key} in {decoded}");
        }
    }
}
