//! The kubelet API against a fake `PodRuntime` whose exec runs real
//! processes on this machine, over real TLS on loopback, with WebSocket
//! and SPDY clients written here from the wire formats.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use rkube_containers::runtime::logs::{Stream, Writer};
use rkube_kubelet_server::spdy::{Codec, Frame, FLAG_FIN};
use rkube_kubelet_server::ws;
use serde_json::Value;
use support::start;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

fn write_log(path: &std::path::Path, lines: &[(Stream, &str)]) {
    let mut w = Writer::open(path, 0, 1).unwrap();
    for (s, l) in lines {
        w.record(*s, false, l.as_bytes()).unwrap();
    }
}

#[tokio::test]
async fn anonymous_clients_are_rejected_and_plain_endpoints_answer() {
    let h = start().await;
    let resp = h.request(false, "GET", "/pods", &[]).await;
    assert_eq!(resp.status(), 401);
    let unknown = [("authorization", "Bearer nope")];
    let resp = h.request(false, "GET", "/pods", &unknown).await;
    assert_eq!(resp.status(), 401);
    // A token the API server accepts: authorized per subresource.
    let viewer = [("authorization", "Bearer viewer-token")];
    let resp = h.request(false, "GET", "/stats/summary", &viewer).await;
    assert_eq!(resp.status(), 200);
    let resp = h.request(false, "GET", "/pods", &viewer).await;
    assert_eq!(resp.status(), 403);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        String::from_utf8_lossy(&body),
        "Forbidden (user=viewer, verb=get, resource=nodes, subresource=proxy)"
    );
    assert_eq!(h.get_text("/healthz").await, (200, "ok".into()));
    let (code, body) = h.get_text("/pods").await;
    assert_eq!(code, 200);
    let pods: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(pods["kind"], "PodList");
    assert_eq!(pods["items"][0]["metadata"]["name"], "web");
    let (_, body) = h.get_text("/stats/summary").await;
    let summary: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(summary["node"]["nodeName"], "node-1");
    assert_eq!(
        summary["pods"][0]["containers"][0]["memory"]["workingSetBytes"],
        1 << 20
    );
    let (_, body) = h.get_text("/metrics/resource").await;
    assert!(body.contains(
        "container_cpu_usage_seconds_total{container=\"app\",namespace=\"default\",pod=\"web\"} 3 "
    ));
    let (_, body) = h.get_text("/metrics").await;
    assert!(body.contains("kubelet_running_pods 1"), "{body}");
    assert_eq!(h.get_text("/nothing").await.0, 404);
}

#[tokio::test]
async fn container_logs_with_options() {
    let h = start().await;
    let log = h.fake.dir.join("app.log");
    write_log(
        &log,
        &[
            (Stream::Stdout, "one"),
            (Stream::Stderr, "two"),
            (Stream::Stdout, "three"),
        ],
    );
    let base = "/containerLogs/default/web/app";
    assert_eq!(h.get_text(base).await, (200, "one\ntwo\nthree\n".into()));
    assert_eq!(
        h.get_text(&format!("{base}?tailLines=2")).await.1,
        "two\nthree\n"
    );
    assert_eq!(
        h.get_text(&format!("{base}?limitBytes=5")).await.1,
        "one\nt"
    );
    let (_, stamped) = h
        .get_text(&format!("{base}?timestamps=true&tailLines=1"))
        .await;
    let (ts, rest) = stamped.split_once(' ').unwrap();
    assert_eq!(rest, "three\n");
    assert!(ts.parse::<jiff::Timestamp>().is_ok(), "{ts}");
    let (code, msg) = h.get_text(&format!("{base}?previous=true")).await;
    assert_eq!(code, 400);
    assert_eq!(
        msg,
        "previous terminated container \"app\" in pod \"web\" not found"
    );
    let (code, msg) = h.get_text("/containerLogs/default/web/nope").await;
    assert_eq!(
        (code, msg.as_str()),
        (400, "container nope is not valid for pod web")
    );
    assert_eq!(h.get_text(&format!("{base}?tailLines=-1")).await.0, 400);

    // follow: new lines arrive, across a rotation, until the container stops.
    let resp = h
        .request(true, "GET", &format!("{base}?follow=true&tailLines=1"), &[])
        .await;
    let mut body = resp.into_body();
    let mut seen = String::new();
    while !seen.contains("three\n") {
        seen.push_str(&next_text(&mut body).await.unwrap());
    }
    // Three rotations before the follower looks again.
    let mut w = Writer::open(&log, 60, 4).unwrap();
    w.record(Stream::Stdout, false, b"four").unwrap();
    w.record(Stream::Stdout, false, b"five-after-rotation")
        .unwrap();
    w.record(Stream::Stdout, false, b"six").unwrap();
    assert!(h.fake.dir.join("app.log.1").exists(), "the writer rotated");
    while !seen.contains("six\n") {
        seen.push_str(&next_text(&mut body).await.unwrap());
    }
    assert_eq!(seen, "three\nfour\nfive-after-rotation\nsix\n");
    h.fake.running.store(false, Ordering::SeqCst);
    assert!(
        next_text(&mut body).await.is_none(),
        "follow ends when the container stops"
    );
}

async fn next_text(body: &mut hyper::body::Incoming) -> Option<String> {
    let f = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .expect("log frame in time");
    f.map(|f| String::from_utf8(f.unwrap().into_data().unwrap().to_vec()).unwrap())
}

/// Reads WebSocket messages until the status channel (3) arrives.
async fn ws_collect<R: AsyncRead + Unpin>(r: R) -> (String, String, Value) {
    let mut reader = ws::Reader::new(r);
    let (mut out, mut err) = (String::new(), String::new());
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), reader.next())
            .await
            .expect("message in time")
            .unwrap()
            .expect("status before the end");
        let Some((&ch, data)) = m.data.split_first() else {
            continue;
        };
        match ch {
            1 => out.push_str(std::str::from_utf8(data).unwrap()),
            2 => err.push_str(std::str::from_utf8(data).unwrap()),
            3 => return (out, err, serde_json::from_slice(data).unwrap()),
            _ => {}
        }
    }
}

const MASK: Option<[u8; 4]> = Some([1, 2, 3, 4]);

#[tokio::test]
async fn exec_over_websocket_v5_with_stdin_close() {
    let h = start().await;
    let path = "/exec/default/web/app?command=sh&command=-c&command=cat%3B+echo+oops+%3E%262%3B+exit+3&stdin=true&stdout=true&stderr=true";
    let io = h
        .upgrade(
            "GET",
            path,
            &[
                ("connection", "Upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-version", "13"),
                ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
                (
                    "sec-websocket-protocol",
                    "v5.channel.k8s.io, v4.channel.k8s.io",
                ),
            ],
        )
        .await;
    let (r, mut w) = tokio::io::split(io);
    w.write_all(&ws::encode(ws::OP_BINARY, b"\0hello ", MASK))
        .await
        .unwrap();
    w.write_all(&ws::encode(ws::OP_BINARY, b"\0world", MASK))
        .await
        .unwrap();
    // v5's close signal: no more stdin.
    w.write_all(&ws::encode(ws::OP_BINARY, &[255, 0], MASK))
        .await
        .unwrap();
    let (out, err, status) = ws_collect(r).await;
    assert_eq!(out, "hello world");
    assert_eq!(err, "oops\n");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "3");
}

#[tokio::test]
async fn exec_websocket_v4_success_and_refusals() {
    let h = start().await;
    let ws_headers = [
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "x3JJHMbDL1EzLkh9GBhXDw=="),
        ("sec-websocket-protocol", "v4.channel.k8s.io"),
    ];
    let io = h
        .upgrade(
            "GET",
            "/exec/default/web/app?command=echo&command=hi&stdout=1",
            &ws_headers,
        )
        .await;
    let (out, _, status) = ws_collect(io).await;
    assert_eq!(
        (out.as_str(), status["status"].as_str()),
        ("hi\n", Some("Success"))
    );
    // Not an upgrade, unknown container, unknown protocol.
    let resp = h
        .request(
            true,
            "POST",
            "/exec/default/web/app?command=ls&stdout=1",
            &[],
        )
        .await;
    assert_eq!(resp.status(), 400);
    let resp = h
        .request(
            true,
            "GET",
            "/exec/default/web/db?command=ls&stdout=1",
            &ws_headers,
        )
        .await;
    assert_eq!(resp.status(), 400);
    // The first channel protocol: the error channel is text, on failure.
    let mut v1 = ws_headers;
    v1[4] = ("sec-websocket-protocol", "channel.k8s.io");
    let io = h
        .upgrade(
            "GET",
            "/exec/default/web/app?command=sh&command=-c&command=echo+v1%3B+exit+4&stdout=1",
            &v1,
        )
        .await;
    let (mut out, mut err) = (String::new(), String::new());
    let mut reader = ws::Reader::new(io);
    while let Some(m) = reader.next().await.unwrap() {
        if m.opcode == ws::OP_CLOSE {
            break;
        }
        match m.data.split_first() {
            Some((1, d)) => out.push_str(std::str::from_utf8(d).unwrap()),
            Some((3, d)) => err.push_str(std::str::from_utf8(d).unwrap()),
            _ => {}
        }
    }
    assert_eq!(out, "v1\n");
    assert!(
        err.starts_with("command terminated with non-zero exit code"),
        "{err}"
    );
    let mut old = ws_headers;
    old[4] = ("sec-websocket-protocol", "base64.channel.k8s.io");
    let resp = h
        .request(
            true,
            "GET",
            "/exec/default/web/app?command=ls&stdout=1",
            &old,
        )
        .await;
    assert_eq!(resp.status(), 400);
}

/// A SPDY client over an upgraded connection.
struct SpdyClient<T> {
    io: T,
    codec: Codec,
    buf: BytesMut,
}

impl<T: AsyncRead + AsyncWrite + Unpin> SpdyClient<T> {
    fn new(io: T) -> Self {
        SpdyClient {
            io,
            codec: Codec::new(),
            buf: BytesMut::new(),
        }
    }

    async fn send(&mut self, f: Frame) {
        let mut out = Vec::new();
        self.codec.encode(&f, &mut out);
        self.io.write_all(&out).await.unwrap();
    }

    async fn open(&mut self, id: u32, headers: &[(&str, &str)], fin: bool) {
        let headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.send(Frame::SynStream {
            stream_id: id,
            associated: 0,
            priority: 0,
            flags: if fin { FLAG_FIN } else { 0 },
            headers,
        })
        .await;
    }

    async fn data(&mut self, id: u32, data: &[u8], fin: bool) {
        self.send(Frame::Data {
            stream_id: id,
            flags: if fin { FLAG_FIN } else { 0 },
            data: Bytes::copy_from_slice(data),
        })
        .await;
    }

    /// The next frame, or `None` at the end of the connection.
    async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = self.codec.decode(&mut self.buf).unwrap() {
                return Some(f);
            }
            let mut chunk = [0u8; 8192];
            let n = tokio::time::timeout(Duration::from_secs(10), self.io.read(&mut chunk))
                .await
                .expect("spdy frame in time")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

#[tokio::test]
async fn exec_over_spdy() {
    let h = start().await;
    let path = "/exec/default/web/app?command=sh&command=-c&command=tr+a-z+A-Z%3B+echo+bad+%3E%262%3B+exit+2&input=1&output=1&error=1";
    let io = h
        .upgrade(
            "POST",
            path,
            &[
                ("connection", "Upgrade"),
                ("upgrade", "SPDY/3.1"),
                ("x-stream-protocol-version", "v4.channel.k8s.io"),
                ("x-stream-protocol-version", "v3.channel.k8s.io"),
            ],
        )
        .await;
    let mut c = SpdyClient::new(io);
    c.open(1, &[("streamType", "error")], true).await;
    c.open(3, &[("streamType", "stdin")], false).await;
    c.open(5, &[("streamType", "stdout")], true).await;
    c.open(7, &[("streamType", "stderr")], true).await;
    c.data(3, b"spdy ", false).await;
    c.data(3, b"works", true).await;
    let (mut out, mut err, mut status, mut replies) = (Vec::new(), Vec::new(), Vec::new(), 0);
    let mut ping_seen = false;
    c.send(Frame::Ping(1)).await;
    while let Some(f) = c.next().await {
        match f {
            Frame::SynReply { .. } => replies += 1,
            Frame::Ping(1) => ping_seen = true,
            Frame::Data {
                stream_id: 5, data, ..
            } => out.extend_from_slice(&data),
            Frame::Data {
                stream_id: 7, data, ..
            } => err.extend_from_slice(&data),
            Frame::Data {
                stream_id: 1, data, ..
            } => status.extend_from_slice(&data),
            Frame::GoAway { .. } => break,
            _ => {}
        }
    }
    assert_eq!(replies, 4);
    assert!(ping_seen, "pings are answered");
    assert_eq!(String::from_utf8(out).unwrap(), "SPDY WORKS");
    assert_eq!(String::from_utf8(err).unwrap(), "bad\n");
    let status: Value = serde_json::from_slice(&status).unwrap();
    assert_eq!(status["details"]["causes"][0]["message"], "2");
}

async fn echo_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let _ = s.read_to_end(&mut buf).await;
                let _ = s.write_all(&buf.to_ascii_uppercase()).await;
            });
        }
    });
    port
}

async fn forward_one<T: AsyncRead + AsyncWrite + Unpin>(
    c: &mut SpdyClient<T>,
    port: u16,
    req: &str,
    base: u32,
) -> String {
    let p = port.to_string();
    c.open(
        base,
        &[("streamType", "error"), ("port", &p), ("requestID", req)],
        true,
    )
    .await;
    c.open(
        base + 2,
        &[("streamType", "data"), ("port", &p), ("requestID", req)],
        false,
    )
    .await;
    c.data(base + 2, format!("hello {req}").as_bytes(), true)
        .await;
    let mut got = Vec::new();
    while let Some(f) = c.next().await {
        match f {
            Frame::Data {
                stream_id,
                data,
                flags,
            } if stream_id == base + 2 => {
                got.extend_from_slice(&data);
                if flags & FLAG_FIN != 0 {
                    break;
                }
            }
            Frame::Data {
                stream_id, data, ..
            } if stream_id == base && !data.is_empty() => {
                panic!("port-forward error: {}", String::from_utf8_lossy(&data))
            }
            _ => {}
        }
    }
    String::from_utf8(got).unwrap()
}

#[tokio::test]
async fn port_forward_over_spdy_and_websocket_tunnel() {
    let h = start().await;
    let port = echo_server().await;
    let io = h
        .upgrade(
            "POST",
            "/portForward/default/web",
            &[
                ("connection", "Upgrade"),
                ("upgrade", "SPDY/3.1"),
                ("x-stream-protocol-version", "portforward.k8s.io"),
            ],
        )
        .await;
    let mut c = SpdyClient::new(io);
    assert_eq!(forward_one(&mut c, port, "0", 1).await, "HELLO 0");
    assert_eq!(forward_one(&mut c, port, "1", 5).await, "HELLO 1");

    // kubectl 1.30+: the same SPDY bytes inside WebSocket binary messages.
    let io = h
        .upgrade(
            "GET",
            "/portForward/default/web",
            &[
                ("connection", "Upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-version", "13"),
                ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("sec-websocket-protocol", "SPDY/3.1+portforward.k8s.io"),
            ],
        )
        .await;
    let (mut to_peer, from_peer) = tokio::io::duplex(1 << 16);
    // Bridge: bytes written by the SPDY client become masked messages;
    // messages from the server become bytes for it.
    let (r, mut w) = tokio::io::split(io);
    let (mut br, mut bw) = tokio::io::split(from_peer);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 8192];
        loop {
            let n = br.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            w.write_all(&ws::encode(ws::OP_BINARY, &buf[..n], MASK))
                .await
                .unwrap();
        }
    });
    tokio::spawn(async move {
        let mut reader = ws::Reader::new(r);
        while let Ok(Some(m)) = reader.next().await {
            if m.opcode == ws::OP_BINARY && bw.write_all(&m.data).await.is_err() {
                break;
            }
        }
    });
    let mut c = SpdyClient::new(&mut to_peer);
    assert_eq!(forward_one(&mut c, port, "0", 1).await, "HELLO 0");

    // A server that speaks first and closes: both our streams end without
    // the client closing its side (kubectl waits for the error stream).
    let greeter = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gport = greeter.local_addr().unwrap().port().to_string();
    tokio::spawn(async move {
        let (mut s, _) = greeter.accept().await.unwrap();
        s.write_all(b"welcome").await.unwrap();
    });
    c.open(
        13,
        &[
            ("streamType", "error"),
            ("port", &gport),
            ("requestID", "3"),
        ],
        true,
    )
    .await;
    c.open(
        15,
        &[("streamType", "data"), ("port", &gport), ("requestID", "3")],
        false,
    )
    .await;
    let (mut got, mut fins) = (Vec::new(), Vec::new());
    while fins.len() < 2 {
        match c.next().await.expect("frames until both streams end") {
            Frame::Data {
                stream_id,
                data,
                flags,
            } if stream_id == 13 || stream_id == 15 => {
                got.extend_from_slice(&data);
                if flags & FLAG_FIN != 0 {
                    fins.push(stream_id);
                }
            }
            _ => {}
        }
    }
    assert_eq!(got, b"welcome");
    fins.sort();
    assert_eq!(fins, [13, 15]);

    // A port nobody listens on: the error stream says so.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = closed.local_addr().unwrap().port();
    drop(closed);
    let p = dead.to_string();
    c.open(
        9,
        &[("streamType", "error"), ("port", &p), ("requestID", "2")],
        true,
    )
    .await;
    c.open(
        11,
        &[("streamType", "data"), ("port", &p), ("requestID", "2")],
        false,
    )
    .await;
    let mut msg = Vec::new();
    while let Some(f) = c.next().await {
        if let Frame::Data {
            stream_id: 9,
            data,
            flags,
        } = f
        {
            msg.extend_from_slice(&data);
            if flags & FLAG_FIN != 0 {
                break;
            }
        }
    }
    let msg = String::from_utf8(msg).unwrap();
    assert!(
        msg.starts_with(&format!(
            "error forwarding port {dead} to pod web, uid uid-1:"
        )),
        "{msg}"
    );
}

#[tokio::test]
async fn attach_follows_new_output() {
    let h = start().await;
    let log = h.fake.dir.join("app.log");
    write_log(&log, &[(Stream::Stdout, "old line")]);
    let io = h
        .upgrade(
            "GET",
            "/attach/default/web/app?stdout=1&stderr=1",
            &[
                ("connection", "Upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-version", "13"),
                ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("sec-websocket-protocol", "v5.channel.k8s.io"),
            ],
        )
        .await;
    // Attach starts at the end of the log: the process keeps writing
    // until the client has seen its output, then the container stops.
    let (seen_tx, mut seen_rx) = tokio::sync::oneshot::channel::<()>();
    let fake = h.fake.clone();
    let writer = tokio::spawn(async move {
        let mut w = Writer::open(&log, 0, 1).unwrap();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            if seen_rx.try_recv().is_ok() {
                break;
            }
            w.record(Stream::Stdout, false, b"tick").unwrap();
            w.record(Stream::Stderr, false, b"tock").unwrap();
        }
        fake.running.store(false, Ordering::SeqCst);
    });
    let mut reader = ws::Reader::new(io);
    let (mut out, mut err) = (String::new(), String::new());
    let mut seen_tx = Some(seen_tx);
    let status: Value = loop {
        let m = tokio::time::timeout(Duration::from_secs(10), reader.next())
            .await
            .expect("message in time")
            .unwrap()
            .expect("status before the end");
        let Some((&ch, data)) = m.data.split_first() else {
            continue;
        };
        match ch {
            1 => out.push_str(std::str::from_utf8(data).unwrap()),
            2 => err.push_str(std::str::from_utf8(data).unwrap()),
            3 => break serde_json::from_slice(data).unwrap(),
            _ => {}
        }
        if out.contains("tick") && err.contains("tock") {
            if let Some(tx) = seen_tx.take() {
                let _ = tx.send(());
            }
        }
    };
    writer.await.unwrap();
    assert!(
        out.starts_with("tick\n") && !out.contains("old line"),
        "{out}"
    );
    assert!(err.starts_with("tock\n"), "{err}");
    assert_eq!(status["status"], "Success");
}

#[tokio::test]
async fn port_forward_over_websocket_channels() {
    let h = start().await;
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        s.write_all(b"hi").await.unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).await.unwrap();
        s.write_all(&buf.to_ascii_uppercase()).await.unwrap();
    });
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = closed.local_addr().unwrap().port();
    drop(closed);
    let io = h
        .upgrade(
            "GET",
            &format!("/portForward/default/web?ports={port},{dead}"),
            &[
                ("connection", "Upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-version", "13"),
                ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("sec-websocket-protocol", "v4.channel.k8s.io"),
            ],
        )
        .await;
    let (r, mut w) = tokio::io::split(io);
    let mut reader = ws::Reader::new(r);
    let mut by_channel: std::collections::HashMap<u8, Vec<u8>> = Default::default();
    let mut sent = false;
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), reader.next())
            .await
            .expect("message in time")
            .unwrap()
            .expect("messages until the test has all it wants");
        let Some((&ch, data)) = m.data.split_first() else {
            continue;
        };
        by_channel.entry(ch).or_default().extend_from_slice(data);
        let data0 = &by_channel.get(&0).cloned().unwrap_or_default();
        if !sent && data0.ends_with(b"hi") {
            w.write_all(&ws::encode(ws::OP_BINARY, b"\0hello", MASK))
                .await
                .unwrap();
            sent = true;
        }
        let err = by_channel.get(&3).cloned().unwrap_or_default();
        if data0.ends_with(b"HELLO") && err.len() > 2 {
            // Each channel opens with its port, little endian.
            assert_eq!(&data0[..2], &port.to_le_bytes());
            assert_eq!(&by_channel[&1][..2], &port.to_le_bytes());
            assert_eq!(&err[..2], &dead.to_le_bytes());
            let msg = String::from_utf8_lossy(&err[2..]);
            assert!(
                msg.starts_with(&format!("error forwarding port {dead} to pod web")),
                "{msg}"
            );
            break;
        }
    }
    let resp = h
        .request(
            true,
            "GET",
            "/portForward/default/web",
            &[
                ("connection", "Upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-version", "13"),
                ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("sec-websocket-protocol", "v4.channel.k8s.io"),
            ],
        )
        .await;
    assert_eq!(resp.status(), 400, "ports are required");
}
