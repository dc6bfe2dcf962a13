//! A loopback stand-in for Docker Hub's auth setup: every `/v2/` request
//! without the right bearer token gets a 401 with a
//! `WWW-Authenticate: Bearer realm=...,service=...,scope=...` challenge; the
//! realm (`/token`) hands out the token, anonymously or only for basic
//! credentials; authorised requests are forwarded to a real registry.

#![allow(dead_code)] // each test binary uses a different subset

use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

const TOKEN: &str = "test-token-42";

#[derive(Clone)]
struct Shared {
    addr: String,
    upstream: String,
    basic: Option<String>,
    http: reqwest::Client,
    token_requests: Arc<Mutex<Vec<String>>>,
}

pub struct TokenProxy {
    /// `127.0.0.1:<port>`.
    pub addr: String,
    token_requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TokenProxy {
    /// Proxies to `upstream` (`host:port`, plain HTTP); `credentials`
    /// makes the token endpoint demand basic auth.
    pub async fn start(upstream: &str, credentials: Option<(&str, &str)>) -> TokenProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let tls = rkube_containers::image::tls::client_config(None).unwrap();
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .build()
            .unwrap();
        let basic = credentials.map(|(u, p)| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        });
        let token_requests = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared {
            addr: addr.clone(),
            upstream: upstream.to_string(),
            basic,
            http,
            token_requests: token_requests.clone(),
        };
        let app = axum::Router::new().fallback(handle).with_state(shared);
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        TokenProxy {
            addr,
            token_requests,
            task,
        }
    }

    /// The `scope` of every token request so far.
    pub fn token_scopes(&self) -> Vec<String> {
        self.token_requests.lock().unwrap().clone()
    }
}

impl Drop for TokenProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn query_param(uri: &Uri, key: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| {
            v.replace("%3A", ":")
                .replace("%2F", "/")
                .replace("%2C", ",")
        })
    })
}

async fn handle(State(s): State<Shared>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let auth = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if parts.uri.path() == "/token" {
        if s.basic.is_some() && auth != s.basic {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        s.token_requests
            .lock()
            .unwrap()
            .push(query_param(&parts.uri, "scope").unwrap_or_default());
        return (
            [(header::CONTENT_TYPE, "application/json")],
            format!(r#"{{"token":"{TOKEN}"}}"#),
        )
            .into_response();
    }
    if auth.as_deref() != Some(&format!("Bearer {TOKEN}")) {
        // Scope from the path, as distribution does: /v2/<repo>/manifests/...
        let path = parts.uri.path().trim_start_matches("/v2/");
        let repo = ["/manifests/", "/blobs/"]
            .iter()
            .find_map(|m| path.split_once(m).map(|(r, _)| r.to_string()));
        let mut challenge = format!(
            r#"Bearer realm="http://{}/token",service="token-proxy""#,
            s.addr
        );
        if let Some(repo) = repo {
            challenge.push_str(&format!(r#",scope="repository:{repo}:pull""#));
        }
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, challenge)],
        )
            .into_response();
    }
    let url = format!(
        "http://{}{}",
        s.upstream,
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let body: Bytes = axum::body::to_bytes(body, 64 << 20).await.unwrap();
    let mut fwd = s.http.request(parts.method.clone(), url).body(body);
    for h in [header::ACCEPT, header::CONTENT_TYPE] {
        if let Some(v) = parts.headers.get(&h) {
            fwd = fwd.header(h, v);
        }
    }
    let resp = match fwd.send().await {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = resp.status();
    let mut headers = HeaderMap::new();
    for h in [
        header::CONTENT_TYPE,
        header::HeaderName::from_static("docker-content-digest"),
    ] {
        if let Some(v) = resp.headers().get(&h) {
            headers.insert(h, v.clone());
        }
    }
    let body = if parts.method == Method::HEAD {
        Bytes::new()
    } else {
        resp.bytes().await.unwrap_or_default()
    };
    (status, headers, Body::from(body)).into_response()
}
