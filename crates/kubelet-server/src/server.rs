//! The HTTPS listener and the routes of the kubelet API.
//!
//! Upstream counterpart: `pkg/kubelet/server/server.go` (`InstallDefaultHandlers`,
//! `InstallDebuggingHandlers`). Every request passes [`crate::auth`]
//! first: a client certificate from the cluster's client CA or a bearer
//! token the API server accepts, then a SubjectAccessReview; anonymous
//! requests get 401, denied ones 403.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use crate::auth::{self, Auth, UserInfo, Verdict};
use crate::logs::{self, LogOptions};
use crate::remotecommand::{self, Options};
use crate::runtime::{LookupError, PodRuntime};
use crate::stats::{self, CpuRates};
use crate::{attach, exec, portforward, spdy, transport, ws};

pub type Body = BoxBody<Bytes, std::io::Error>;

/// What the kubelet API serves from.
pub struct Config {
    pub node_name: String,
    /// The kubelet's serving certificate and key.
    pub serving: rkube_pki::CertKey,
    /// The CA client certificates must chain to.
    pub client_ca_pem: String,
    /// TokenReviews and SubjectAccessReviews (the API server).
    pub auth: Arc<dyn crate::auth::Delegate>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubelet TLS config: {0}")]
    Tls(#[from] rkube_pki::tls::Error),
}

struct State {
    rt: Arc<dyn PodRuntime>,
    node_name: String,
    boot: SystemTime,
    rates: CpuRates,
    requests: Mutex<HashMap<String, u64>>,
}

/// Serves the kubelet API on `listener` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    rt: Arc<dyn PodRuntime>,
) -> Result<(), Error> {
    let mut tls = rkube_pki::tls::server_config(&config.serving, &[&config.client_ca_pem])?;
    // Upgrades (SPDY, WebSocket) are HTTP/1.1 only.
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let auth = Arc::new(Auth::new(config.auth, config.node_name.clone()));
    let state = Arc::new(State {
        rt,
        node_name: config.node_name,
        boot: SystemTime::now(),
        rates: CpuRates::default(),
        requests: Mutex::new(HashMap::new()),
    });
    tokio::spawn(sample(Arc::downgrade(&state)));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(err) => {
                tracing::warn!(%err, "kubelet accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let state = state.clone();
        let auth = auth.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(err) => {
                    tracing::debug!(%peer, %err, "kubelet TLS handshake failed");
                    return;
                }
            };
            let cert_user = rkube_pki::tls::peer_identity(tls.get_ref().1.peer_certificates())
                .ok()
                .flatten()
                .map(|id| UserInfo::authenticated(id.common_name, String::new(), id.organizations));
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (state, auth, cert_user) = (state.clone(), auth.clone(), cert_user.clone());
                async move {
                    let token = auth::bearer(req.headers().get(header::AUTHORIZATION));
                    let verdict = auth
                        .check(cert_user, token, req.method(), req.uri().path())
                        .await;
                    Ok::<_, Infallible>(match verdict {
                        Verdict::Allowed(_) => route(state, req).await,
                        Verdict::Unauthenticated => text(StatusCode::UNAUTHORIZED, "Unauthorized"),
                        Verdict::Forbidden(msg) => text(StatusCode::FORBIDDEN, msg),
                        Verdict::Failed(e) => {
                            tracing::warn!(error = %e, "kubelet SubjectAccessReview failed");
                            text(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
                        }
                    })
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .with_upgrades();
            if let Err(err) = conn.await {
                tracing::debug!(%peer, %err, "kubelet connection ended with an error");
            }
        });
    }
}

/// Takes a CPU sample every 10 s so rates exist before the first scrape.
async fn sample(state: std::sync::Weak<State>) {
    loop {
        let Some(s) = state.upgrade() else { return };
        let node = s.rt.node_stats().await;
        let pods = s.rt.pod_stats().await;
        let _ = stats::summary(&s.node_name, s.boot, &node, &pods, &s.rates);
        drop(s);
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

pub fn text(code: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(full(body.into()));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

fn json_response(v: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(full(serde_json::to_vec(v).unwrap_or_default()));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn lookup_error(e: &LookupError) -> Response<Body> {
    let code = match e {
        LookupError::PodNotFound { .. } => StatusCode::NOT_FOUND,
        _ => StatusCode::BAD_REQUEST,
    };
    text(code, e.to_string())
}

async fn route(state: Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let segments: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    let counted = seg.first().copied().unwrap_or("").to_string();
    *state
        .requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(counted)
        .or_default() += 1;
    let get = req.method() == Method::GET || req.method() == Method::HEAD;
    match seg.as_slice() {
        ["healthz"] if get => text(StatusCode::OK, "ok"),
        ["pods"] if get => {
            let pods: Vec<Pod> = state.rt.pods().await;
            json_response(
                &json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": pods}),
            )
        }
        ["stats", "summary"] | ["stats"] if get => {
            let node = state.rt.node_stats().await;
            let pods = state.rt.pod_stats().await;
            json_response(&stats::summary(
                &state.node_name,
                state.boot,
                &node,
                &pods,
                &state.rates,
            ))
        }
        ["metrics", "resource"] if get => {
            let node = state.rt.node_stats().await;
            let pods = state.rt.pod_stats().await;
            prometheus(stats::resource_metrics(&node, &pods))
        }
        ["metrics"] if get => {
            let pods = state.rt.pod_stats().await;
            let containers = pods.iter().map(|p| p.containers.len()).sum();
            let mut reqs: Vec<(String, u64)> = state
                .requests
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            reqs.sort();
            prometheus(stats::kubelet_metrics(pods.len(), containers, &reqs))
        }
        ["containerLogs", ns, pod, container] if get => {
            container_logs(state.clone(), ns, pod, container, req.uri().query()).await
        }
        ["exec", ns, pod, container] | ["exec", ns, pod, _, container] => {
            let target = (ns.to_string(), pod.to_string(), container.to_string());
            remote_command(state.clone(), target, false, req).await
        }
        ["attach", ns, pod, container] | ["attach", ns, pod, _, container] => {
            let target = (ns.to_string(), pod.to_string(), container.to_string());
            remote_command(state.clone(), target, true, req).await
        }
        ["portForward", ns, pod] | ["portForward", ns, pod, _] => {
            port_forward(state.clone(), ns.to_string(), pod.to_string(), req).await
        }
        _ => text(StatusCode::NOT_FOUND, "404 page not found"),
    }
}

fn percent_decode(s: &str) -> String {
    form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

fn prometheus(body: String) -> Response<Body> {
    let mut r = Response::new(full(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

async fn container_logs(
    state: Arc<State>,
    ns: &str,
    pod: &str,
    container: &str,
    query: Option<&str>,
) -> Response<Body> {
    let opts = match LogOptions::from_query(query, jiff::Timestamp::now()) {
        Ok(o) => o,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let info = match state.rt.container(ns, pod, container, opts.previous).await {
        Ok(i) => i,
        Err(e) => return lookup_error(&e),
    };
    let (tx, rx) = mpsc::channel::<logs::Chunk>(16);
    let target = (ns.to_string(), pod.to_string(), container.to_string());
    tokio::spawn(logs::stream(state.rt.clone(), target, info, opts, tx));
    let body = futures::stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((Ok::<_, std::io::Error>(Frame::data(chunk.data)), rx))
    });
    let mut r = Response::new(StreamBody::new(body).boxed());
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// How a stream request upgrades.
enum Upgrade {
    WebSocket(String),
    Spdy,
}

/// Picks the transport and subprotocol, or the error response upstream
/// gives: 400 without an upgrade, 403 when no protocol is shared.
fn negotiate(
    req: &Request<Incoming>,
    ws_protocols: &[&str],
    spdy_protocols: &[&'static str],
) -> Result<(Upgrade, Response<Body>), (StatusCode, String)> {
    let headers = req.headers();
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if ws::is_upgrade(headers) {
        let offered = ws::offered_protocols(headers);
        let Some(chosen) = offered.iter().find(|p| ws_protocols.contains(&p.as_str())) else {
            return Err((
                StatusCode::BAD_REQUEST,
                format!("unable to upgrade: no supported websocket subprotocol in {offered:?} (server accepts {ws_protocols:?})"),
            ));
        };
        let key = headers
            .get(header::SEC_WEBSOCKET_KEY)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(v) = HeaderValue::from_str(&ws::accept_key(key)) {
            h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        if let Ok(v) = HeaderValue::from_str(chosen) {
            h.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
        }
        return Ok((Upgrade::WebSocket(chosen.clone()), resp));
    }
    let spdy = headers
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.eq_ignore_ascii_case("SPDY/3.1"));
    if !spdy {
        return Err((StatusCode::BAD_REQUEST, "Upgrade request required".into()));
    }
    let offered: Vec<String> = headers
        .get_all("X-Stream-Protocol-Version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .collect();
    let Some(chosen) = spdy_protocols
        .iter()
        .find(|p| offered.iter().any(|o| o == *p))
    else {
        return Err((
            StatusCode::FORBIDDEN,
            format!("unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server accepts {spdy_protocols:?}"),
        ));
    };
    h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    h.insert(
        "X-Stream-Protocol-Version",
        HeaderValue::from_static(chosen),
    );
    Ok((Upgrade::Spdy, resp))
}

async fn upgraded(req: Request<Incoming>) -> Option<TokioIo<hyper::upgrade::Upgraded>> {
    match hyper::upgrade::on(req).await {
        Ok(u) => Some(TokioIo::new(u)),
        Err(err) => {
            tracing::debug!(%err, "upgrade failed");
            None
        }
    }
}

async fn remote_command(
    state: Arc<State>,
    target: (String, String, String),
    attach: bool,
    req: Request<Incoming>,
) -> Response<Body> {
    let opts = Options::from_query(req.uri().query());
    if !attach && opts.command.is_empty() {
        return text(
            StatusCode::BAD_REQUEST,
            "you must specify at least one command for the container",
        );
    }
    if !(opts.stdin || opts.stdout || opts.stderr) {
        return text(
            StatusCode::BAD_REQUEST,
            "you must specify at least 1 of stdin, stdout, stderr",
        );
    }
    let (ns, pod, c) = &target;
    let info = match state.rt.container(ns, pod, c, false).await {
        Ok(i) => i,
        Err(e) => return lookup_error(&e),
    };
    if !info.running {
        return text(
            StatusCode::BAD_REQUEST,
            format!("container {c} is not running in pod {pod}"),
        );
    }
    let (how, resp) = match negotiate(
        &req,
        &[remotecommand::V5, remotecommand::V4, remotecommand::V1],
        &[remotecommand::V4],
    ) {
        Ok(x) => x,
        Err((code, msg)) => return text(code, msg),
    };
    let rt = state.rt.clone();
    tokio::spawn(async move {
        let Some(io) = upgraded(req).await else {
            return;
        };
        let session = match how {
            Upgrade::WebSocket(p) => remotecommand::websocket(transport::websocket(io), &p, &opts),
            Upgrade::Spdy => {
                let (rx, tx) = transport::raw(io);
                match remotecommand::spdy(spdy::serve(rx, tx), &opts).await {
                    Ok(s) => s,
                    Err(err) => {
                        tracing::debug!(%err, "spdy session failed");
                        return;
                    }
                }
            }
        };
        if attach {
            attach::attach(rt, target, info, opts, session).await;
        } else {
            exec::exec(rt, info, opts, session).await;
        }
    });
    resp
}

async fn port_forward(
    state: Arc<State>,
    ns: String,
    pod: String,
    req: Request<Incoming>,
) -> Response<Body> {
    let pods = state.rt.pods().await;
    let Some(p) = pods.iter().find(|p| {
        p.metadata.namespace.as_deref() == Some(&ns) && p.metadata.name.as_deref() == Some(&pod)
    }) else {
        return text(StatusCode::NOT_FOUND, format!("pod {ns}/{pod} not found"));
    };
    let uid = p.metadata.uid.clone().unwrap_or_default();
    let mut ws_protocols = portforward::WS_TUNNEL_PROTOCOLS.to_vec();
    ws_protocols.push(portforward::WS_CHANNEL_PROTOCOL);
    let (how, resp) = match negotiate(&req, &ws_protocols, &[portforward::SPDY_PROTOCOL]) {
        Ok(x) => x,
        Err((code, msg)) => return text(code, msg),
    };
    let channel_ports = match &how {
        Upgrade::WebSocket(p) if p == portforward::WS_CHANNEL_PROTOCOL => {
            match portforward::ports_from_query(req.uri().query()) {
                Ok(ports) => Some(ports),
                Err(msg) => return text(StatusCode::BAD_REQUEST, msg),
            }
        }
        _ => None,
    };
    let rt = state.rt.clone();
    tokio::spawn(async move {
        let Some(io) = upgraded(req).await else {
            return;
        };
        let (rx, tx) = match how {
            Upgrade::WebSocket(_) => transport::websocket(io),
            Upgrade::Spdy => transport::raw(io),
        };
        match channel_ports {
            Some(ports) => portforward::serve_channels(rt, ns, pod, uid, ports, (rx, tx)).await,
            None => portforward::serve(rt, ns, pod, uid, spdy::serve(rx, tx)).await,
        }
    });
    resp
}
