//! WATCH through the router: streaming lists (`sendInitialEvents`), their
//! validation, and WebSocket framing over a real loopback connection.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

use crate::test_fixture::{admin, fixture, Fixture};
use crate::{router, ApiServer, Config};

impl Fixture {
    async fn configmap(&self, name: &str) {
        let cms = self.server.resource("", "v1", "configmaps").unwrap();
        cms.create(Some("default"), json!({"metadata": {"name": name}}), false)
            .await
            .unwrap();
    }

    fn request(&self, uri: &str) -> Request<Body> {
        let mut req = Request::get(uri).body(Body::empty()).unwrap();
        req.extensions_mut().insert(admin());
        req
    }
}

/// Read `n` JSON lines from a streaming body.
async fn lines(body: Body, n: usize) -> Vec<Value> {
    let mut body = body;
    let mut buf = Vec::new();
    let mut out = Vec::new();
    while out.len() < n {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("an event in time")
            .expect("the stream goes on")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
        }
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            out.push(serde_json::from_slice(&line).unwrap());
        }
    }
    out
}

#[tokio::test]
async fn streaming_list_sends_objects_then_the_end_bookmark() {
    let f = fixture().await;
    f.configmap("a").await;
    f.configmap("b").await;
    let uri = "/api/v1/namespaces/default/configmaps?watch=true&sendInitialEvents=true\
               &resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true";
    let resp = router(f.server.clone())
        .oneshot(f.request(uri))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body();
    // ADDED a, ADDED b (the root CA configmap is not there: no controllers).
    let got = lines(body, 3).await;
    let names: Vec<&str> = got[..2]
        .iter()
        .map(|e| e["object"]["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(got[0]["type"], "ADDED");
    assert_eq!(names, ["a", "b"]);
    let bookmark = &got[2];
    assert_eq!(bookmark["type"], "BOOKMARK");
    assert_eq!(
        bookmark["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    assert_eq!(bookmark["object"]["kind"], "ConfigMap");
    let rv: i64 = bookmark["object"]["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let b_rv: i64 = got[1]["object"]["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv >= b_rv, "bookmark {rv} before object {b_rv}");
}

#[tokio::test]
async fn streaming_list_then_changes() {
    let f = fixture().await;
    f.configmap("a").await;
    let uri = "/api/v1/namespaces/default/configmaps?watch=true&sendInitialEvents=true\
               &resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true";
    let resp = router(f.server.clone())
        .oneshot(f.request(uri))
        .await
        .unwrap();
    let first = lines(resp.into_body(), 2).await;
    assert_eq!(first[1]["type"], "BOOKMARK");
    // A fresh watch from "now": only later changes, no initial events.
    let uri = "/api/v1/namespaces/default/configmaps?watch=true&sendInitialEvents=false\
               &resourceVersionMatch=NotOlderThan";
    let resp = router(f.server.clone())
        .oneshot(f.request(uri))
        .await
        .unwrap();
    f.configmap("later").await;
    let got = lines(resp.into_body(), 1).await;
    assert_eq!(got[0]["type"], "ADDED");
    assert_eq!(got[0]["object"]["metadata"]["name"], "later");
}

/// A watch of a resource nobody writes, timing out after writes to another
/// resource: its last BOOKMARK carries a revision past those writes, so
/// the client resumes inside the watch cache's window rather than from
/// its last event.
#[tokio::test]
async fn a_quiet_watch_ends_with_a_bookmark_past_other_writes() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = rkube_storage::sqlite::SqliteStore::open(&dir.path().join("db")).unwrap();
    let cached = rkube_storage::cache::CachedStore::new(Arc::new(sqlite));
    let server = ApiServer::new(Arc::new(cached), &Config::default()).unwrap();
    server.bootstrap().await.unwrap();
    let f = Fixture {
        _dir: dir,
        server: Arc::new(server),
    };
    f.configmap("quiet").await;
    let cms = f.server.resource("", "v1", "configmaps").unwrap();
    let quiet = cms.get(Some("default"), "quiet", None).await.unwrap();
    let start = quiet["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let secrets = f.server.resource("", "v1", "secrets").unwrap();
    let mut written = 0i64;
    for i in 0..200 {
        let s = secrets
            .create(
                Some("default"),
                json!({"metadata": {"name": format!("s{i}")}}),
                false,
            )
            .await
            .unwrap();
        written = s["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
    }

    let uri = format!(
        "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={start}\
         &allowWatchBookmarks=true&timeoutSeconds=5"
    );
    let resp = router(f.server.clone())
        .oneshot(f.request(&uri))
        .await
        .unwrap();
    let body = tokio::time::timeout(Duration::from_secs(60), resp.into_body().collect())
        .await
        .expect("the watch ends on its timeout")
        .unwrap()
        .to_bytes();
    let events: Vec<Value> = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    let last = events.last().expect("a bookmark before the end");
    assert_eq!(last["type"], "BOOKMARK", "{events:?}");
    let rv: i64 = last["object"]["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        rv >= written,
        "bookmark {rv} before the last write {written}"
    );
    assert!(events.iter().all(|e| e["type"] == "BOOKMARK"), "{events:?}");
}

#[tokio::test]
async fn streaming_list_options_are_validated_as_upstream() {
    let f = fixture().await;
    let status = |uri: &'static str| {
        let server = f.server.clone();
        let req = f.request(uri);
        async move {
            let resp = router(server).oneshot(req).await.unwrap();
            let code = resp.status();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (code, serde_json::from_slice::<Value>(&body).unwrap())
        }
    };
    let (code, body) =
        status("/api/v1/configmaps?watch=true&sendInitialEvents=true&allowWatchBookmarks=true")
            .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body["message"],
        "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"
    );
    let (code, body) = status(
        "/api/v1/configmaps?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan",
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body["message"],
        "ListOptions.meta.k8s.io \"\" is invalid: allowWatchBookmarks: Forbidden: sendInitialEvents requires setting allowWatchBookmarks to true"
    );
    let (code, body) =
        status("/api/v1/configmaps?watch=true&resourceVersionMatch=NotOlderThan").await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["message"].as_str().unwrap().contains(
        "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided"
    ));
    let (code, body) = status("/api/v1/configmaps?sendInitialEvents=true").await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("sendInitialEvents: Forbidden: sendInitialEvents is forbidden for list"));
}

/// Serve the router on loopback (plain HTTP/1.1, every request admin).
async fn listen(server: Arc<ApiServer>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(server);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let app = app.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(admin());
                        app.clone().oneshot(req.map(Body::new))
                    });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// The next server frame, within 10 s.
async fn read(s: &mut tokio::net::TcpStream) -> (u8, Vec<u8>) {
    tokio::time::timeout(Duration::from_secs(10), server_frame(s))
        .await
        .expect("a frame in time")
}

/// Read one server frame (unmasked): opcode and payload.
async fn server_frame(s: &mut tokio::net::TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    s.read_exact(&mut head).await.unwrap();
    assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
    let len = match head[1] & 0x7F {
        126 => s.read_u16().await.unwrap() as usize,
        127 => s.read_u64().await.unwrap() as usize,
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await.unwrap();
    (head[0] & 0x0F, payload)
}

#[tokio::test]
async fn websocket_watch_sends_each_event_as_a_text_message() {
    let f = fixture().await;
    f.configmap("a").await;
    let addr = listen(f.server.clone()).await;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let handshake = "GET /api/v1/namespaces/default/configmaps?watch=true HTTP/1.1\r\n\
        Host: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
        Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    s.write_all(handshake.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(s.read_u8().await.unwrap());
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );

    let (op, payload) = read(&mut s).await;
    assert_eq!(op, 0x1, "a text message");
    let event: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(event["type"], "ADDED");
    assert_eq!(event["object"]["metadata"]["name"], "a");

    f.configmap("b").await;
    let (_, payload) = read(&mut s).await;
    let event: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(event["object"]["metadata"]["name"], "b");

    // A masked ping gets a pong; a close gets a close.
    let mask = [9u8, 8, 7, 6];
    let mut ping = vec![0x89, 0x80 | 2];
    ping.extend_from_slice(&mask);
    ping.extend(b"hi".iter().zip(mask).map(|(b, m)| b ^ m));
    s.write_all(&ping).await.unwrap();
    assert_eq!(read(&mut s).await, (0xA, b"hi".to_vec()));
    let mut close = vec![0x88, 0x80];
    close.extend_from_slice(&mask);
    s.write_all(&close).await.unwrap();
    assert_eq!(read(&mut s).await.0, 0x8);
}

/// A metadata watch (`as=PartialObjectMetadata`, as the garbage collector's
/// informers ask) sends each change's metadata as stored, resourceVersion
/// included, the same object a decoded one would make: created, updated
/// (labels), deleted; with and without a label selector that the update
/// makes the object leave.
#[tokio::test]
async fn a_metadata_watch_sends_the_stored_metadata() {
    for selector in ["", "&labelSelector=keep%3Dyes"] {
        let f = fixture().await;
        let uri = format!(
            "/api/v1/namespaces/default/configmaps?watch=true&sendInitialEvents=false\
             &resourceVersionMatch=NotOlderThan{selector}"
        );
        let mut req = f.request(&uri);
        req.headers_mut().insert(
            http::header::ACCEPT,
            "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
                .parse()
                .unwrap(),
        );
        let resp = router(f.server.clone()).oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let cms = f.server.resource("", "v1", "configmaps").unwrap();
        let created = cms
            .create(
                Some("default"),
                json!({"metadata": {"name": "m", "labels": {"keep": "yes"}},
                       "data": {"big": "x".repeat(100)}}),
                false,
            )
            .await
            .unwrap();
        let mut changed = created.clone();
        changed["metadata"]["labels"]["keep"] = "no".into();
        let updated = cms
            .update(
                Some("default"),
                "m",
                changed,
                rkube_registry::Target::Main,
                false,
            )
            .await
            .unwrap();
        cms.delete(Some("default"), "m", &Default::default())
            .await
            .unwrap();
        let got = lines(resp.into_body(), if selector.is_empty() { 3 } else { 2 }).await;
        let partial = |obj: &Value| {
            json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                   "metadata": obj["metadata"].clone()})
        };
        assert_eq!(got[0]["type"], "ADDED", "{selector}");
        assert_eq!(got[0]["object"], partial(&created), "{selector}");
        if selector.is_empty() {
            assert_eq!(got[1]["type"], "MODIFIED");
            assert_eq!(got[1]["object"], partial(&updated));
            assert_eq!(got[2]["type"], "DELETED");
            assert_eq!(got[2]["object"]["metadata"]["name"], "m");
            assert!(got[2]["object"].get("data").is_none(), "{}", got[2]);
        } else {
            // The update took the label away: the object left the watch.
            assert_eq!(got[1]["type"], "DELETED");
            assert_eq!(got[1]["object"], partial(&updated));
        }
    }
}
