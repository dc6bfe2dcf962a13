//! A minimal plain-HTTP API server on 127.0.0.1 that serves only discovery
//! and the OpenAPI documents, so real kubectl can run `explain`,
//! `api-resources` and client-side validation against them. Anything else
//! answers 404 with a `Status`, which is what kubectl expects for a missing
//! object. Content negotiation follows what the report to the apiserver
//! asks for, so the test doubles as its reference.

use rkube_api::catalog::{self, GroupVersion};
use rkube_openapi::negotiate::{self, Discovery, V3Reply};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub accept: String,
    pub content_type: String,
    pub body: String,
}

pub struct Server {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

/// How the server departs from serving the documents as they are.
#[derive(Clone, Copy, Default)]
pub struct Options {
    /// Drop `fieldValidation` from every PATCH operation of the v3
    /// documents, as a server without server-side field validation would
    /// publish them: kubectl then validates on the client, against the v2
    /// document.
    pub without_field_validation: bool,
    /// Serve [`existing_deployment`] at `default/web` (GET answers with it,
    /// PATCH echoes it), so `kubectl apply` computes a patch.
    pub existing_deployment: bool,
    /// Rename the strategic-merge directives in the v2 and v3 documents
    /// out of kubectl's sight, the control for telling that kubectl's
    /// patches come from them.
    pub without_patch_directives: bool,
}

/// The Deployment `default/web` as a previous `kubectl apply` of one
/// container left it.
pub fn existing_deployment() -> Value {
    let applied = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1"}]},
            },
        },
    });
    let mut live = applied.clone();
    live["metadata"]["annotations"] = json!({
        "kubectl.kubernetes.io/last-applied-configuration": applied.to_string(),
    });
    live["metadata"]["uid"] = "6a1c0f5e-0000-4000-8000-000000000001".into();
    live["metadata"]["resourceVersion"] = "7".into();
    live
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("local addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let log = log.clone();
                thread::spawn(move || serve_connection(stream, log, options));
            }
        });
        Server { port, seen }
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn clear(&self) {
        if let Ok(mut s) = self.seen.lock() {
            s.clear();
        }
    }
}

struct Response {
    status: u16,
    content_type: String,
    body: Vec<u8>,
    headers: Vec<(String, String)>,
}

fn respond(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
    Response {
        status,
        content_type: content_type.to_owned(),
        body: body.into(),
        headers: Vec::new(),
    }
}

fn serve_connection(stream: TcpStream, log: Arc<Mutex<Vec<Seen>>>, options: Options) {
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut writer = write_half;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let target = parts.next().unwrap_or_default().to_owned();
        let mut accept = String::new();
        let mut content_type = String::new();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                match name.to_ascii_lowercase().as_str() {
                    "accept" => accept = value.trim().to_owned(),
                    "content-type" => content_type = value.trim().to_owned(),
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if let Ok(mut seen) = log.lock() {
            seen.push(Seen {
                method: method.clone(),
                target: target.clone(),
                accept: accept.clone(),
                content_type,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        let response = route(&method, &target, &accept, options);
        let mut head = format!(
            "HTTP/1.1 {} X\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
            response.status,
            response.content_type,
            response.body.len()
        );
        for (name, value) in &response.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        if writer.write_all(head.as_bytes()).is_err() || writer.write_all(&response.body).is_err() {
            return;
        }
    }
}

fn not_found() -> Response {
    let status = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "the server could not find the requested resource", "reason": "NotFound",
        "details": {}, "code": 404,
    });
    respond(404, "application/json", status.to_string())
}

fn json_response(value: Value) -> Response {
    respond(200, "application/json", value.to_string())
}

fn discovery(accept: &str, legacy: bool, legacy_document: Value) -> Response {
    let choice = negotiate::discovery(accept);
    match choice.aggregated_body(legacy) {
        Some((content_type, body)) => respond(200, content_type, body.to_vec()),
        None if choice == Discovery::Legacy => json_response(legacy_document),
        None => respond(406, "text/plain", "not acceptable"),
    }
}

fn route(method: &str, target: &str, accept: &str, options: Options) -> Response {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let is_web = path == "/apis/apps/v1/namespaces/default/deployments/web";
    if options.existing_deployment && is_web && (method == "GET" || method == "PATCH") {
        return json_response(existing_deployment());
    }
    if method != "GET" {
        return not_found();
    }
    match path {
        "/version" => json_response(json!({
            "major": "1", "minor": "33", "gitVersion": "v1.33.0", "gitCommit": "",
            "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z",
            "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64",
        })),
        "/api" => discovery(
            accept,
            true,
            json!({
                "kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
            }),
        ),
        "/apis" => discovery(accept, false, group_list()),
        "/openapi/v2" => {
            let Some((content_type, body)) = negotiate::v2(accept) else {
                return respond(406, "text/plain", "not acceptable");
            };
            let body = if options.without_patch_directives {
                drop_patch_directives(&body)
            } else {
                body.to_vec()
            };
            respond(200, content_type, body)
        }
        "/openapi/v3" => respond(200, "application/json", rkube_openapi::v3_index().to_vec()),
        _ => {
            if let Some(doc_path) = path.strip_prefix("/openapi/v3/") {
                return openapi_v3(doc_path, query, accept, options);
            }
            resource_list(path)
                .map(json_response)
                .unwrap_or_else(not_found)
        }
    }
}

fn openapi_v3(doc_path: &str, query: &str, accept: &str, options: Options) -> Response {
    let hash = query.split('&').find_map(|pair| pair.strip_prefix("hash="));
    match negotiate::v3(doc_path, hash, accept) {
        V3Reply::Document {
            body,
            etag,
            immutable,
        } => {
            let mut doc = body.to_vec();
            if options.without_field_validation {
                doc = strip_field_validation(&doc);
            }
            if options.without_patch_directives {
                doc = drop_patch_directives(&doc);
            }
            let mut response = respond(200, "application/json", doc);
            response
                .headers
                .push(("ETag".into(), format!("\"{etag}\"")));
            if immutable {
                response
                    .headers
                    .push(("Cache-Control".into(), "public, immutable".into()));
            }
            response
        }
        V3Reply::Redirect(location) => {
            let mut redirect = respond(301, "text/plain", Vec::new());
            redirect.headers.push(("Location".into(), location));
            redirect
        }
        V3Reply::NotFound => not_found(),
        V3Reply::NotAcceptable => respond(406, "text/plain", "not acceptable"),
    }
}

/// Renames the patch extensions to unknown ones of the same length, which
/// keeps every protobuf length prefix valid.
fn drop_patch_directives(doc: &[u8]) -> Vec<u8> {
    let mut out = doc.to_vec();
    for (from, to) in [
        (
            &b"x-kubernetes-patch-merge-key"[..],
            &b"x-unknownext-patch-merge-key"[..],
        ),
        (
            b"x-kubernetes-patch-strategy",
            b"x-unknownext-patch-strategy",
        ),
    ] {
        let mut i = 0;
        while i + from.len() <= out.len() {
            if &out[i..i + from.len()] == from {
                out[i..i + from.len()].copy_from_slice(to);
                i += from.len();
            } else {
                i += 1;
            }
        }
    }
    out
}

fn strip_field_validation(doc: &[u8]) -> Vec<u8> {
    let mut doc: Value = serde_json::from_slice(doc).expect("v3 document is JSON");
    if let Some(paths) = doc["paths"].as_object_mut() {
        for item in paths.values_mut() {
            if let Some(params) = item["patch"]["parameters"].as_array_mut() {
                params.retain(|p| p["name"] != "fieldValidation");
            }
        }
    }
    doc.to_string().into_bytes()
}

fn group_list() -> Value {
    let groups: Vec<Value> = catalog::groups()
        .iter()
        .filter(|g| !g.name.is_empty())
        .map(|g| {
            let versions: Vec<Value> = g
                .versions
                .iter()
                .map(|gv| json!({"groupVersion": gv.api_version(), "version": gv.version}))
                .collect();
            json!({"name": g.name, "versions": versions, "preferredVersion": versions[0]})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn find_group_version(path: &str) -> Option<&'static GroupVersion> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["api", version] => catalog::group_version("", version),
        ["apis", group, version] => catalog::group_version(group, version),
        _ => None,
    }
}

/// The legacy `APIResourceList` of `/api/v1` or `/apis/<group>/<version>`.
fn resource_list(path: &str) -> Option<Value> {
    let gv = find_group_version(path)?;
    let mut resources = Vec::new();
    for r in gv.resources {
        let mut entry = json!({
            "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
            "kind": r.kind, "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        resources.push(entry);
        for sub in r.subresources {
            let (group, version, kind) = sub.response_kind(r);
            resources.push(json!({
                "name": format!("{}/{}", r.plural, sub.name), "singularName": "",
                "namespaced": r.namespaced, "group": group, "version": version,
                "kind": kind, "verbs": sub.verbs,
            }));
        }
    }
    Some(json!({
        "kind": "APIResourceList", "apiVersion": "v1",
        "groupVersion": gv.api_version(), "resources": resources,
    }))
}
