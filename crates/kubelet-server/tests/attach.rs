//! Attach through the runtime's live connection: the test plays the
//! runtime's side (the container shim's attach socket) of a socket pair
//! the fake runtime hands the server, and a WebSocket `v5.channel.k8s.io`
//! client the other side.

mod support;

use std::time::Duration;

use rkube_containers::runtime::attach::{Decoder, Message, WindowSize};
use rkube_kubelet_server::ws;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

const MASK: Option<[u8; 4]> = Some([1, 2, 3, 4]);

/// The runtime's side of an attach connection.
struct Shim {
    sock: UnixStream,
    decoder: Decoder,
}

impl Shim {
    async fn next(&mut self) -> Option<Message> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(m) = self.decoder.next_message().unwrap() {
                return Some(m);
            }
            let n = tokio::time::timeout(Duration::from_secs(10), self.sock.read(&mut buf))
                .await
                .expect("frame in time")
                .unwrap();
            if n == 0 {
                return None;
            }
            self.decoder.push(&buf[..n]);
        }
    }
}

async fn attach(
    h: &support::Harness,
    query: &str,
) -> (
    ws::Reader<impl tokio::io::AsyncRead>,
    impl tokio::io::AsyncWrite + Unpin,
    Shim,
) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    *h.fake.attach.lock().unwrap() = Some(theirs);
    let io = h
        .upgrade(
            "GET",
            &format!("/attach/default/web/app?{query}"),
            &[
                ("connection", "Upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-version", "13"),
                ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("sec-websocket-protocol", "v5.channel.k8s.io"),
            ],
        )
        .await;
    let (r, w) = tokio::io::split(io);
    let shim = Shim {
        sock: ours,
        decoder: Decoder::default(),
    };
    (ws::Reader::new(r), w, shim)
}

#[tokio::test]
async fn stdin_resize_and_output_pass_through() {
    let h = support::start().await;
    let (mut reader, mut w, mut shim) = attach(&h, "stdin=1&stdout=1&stderr=1").await;
    assert_eq!(shim.next().await, Some(Message::Hello { stdin: true }));
    w.write_all(&ws::encode(ws::OP_BINARY, b"\0hello", MASK))
        .await
        .unwrap();
    assert_eq!(shim.next().await, Some(Message::Stdin(b"hello".to_vec())));
    let resize = br#"{"Width":97,"Height":33}"#;
    w.write_all(&ws::encode(
        ws::OP_BINARY,
        &[&[4u8][..], resize].concat(),
        MASK,
    ))
    .await
    .unwrap();
    let size = WindowSize {
        width: 97,
        height: 33,
    };
    assert_eq!(shim.next().await, Some(Message::Resize(size)));
    // v5's close signal ends the client's stdin, not the session.
    w.write_all(&ws::encode(ws::OP_BINARY, &[255, 0], MASK))
        .await
        .unwrap();
    assert_eq!(shim.next().await, Some(Message::CloseStdin));
    for m in [
        Message::Stdout(b"out".to_vec()),
        Message::Stderr(b"err".to_vec()),
    ] {
        shim.sock.write_all(&m.encode()).await.unwrap();
    }
    // The process exits: the runtime closes the connection.
    drop(shim);
    let (mut out, mut err) = (String::new(), String::new());
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
    };
    assert_eq!((out.as_str(), err.as_str()), ("out", "err"));
    assert_eq!(status["status"], "Success");
}

#[tokio::test]
async fn the_runtime_sees_a_client_leave() {
    let h = support::start().await;
    let (reader, w, mut shim) = attach(&h, "stdout=1").await;
    assert_eq!(shim.next().await, Some(Message::Hello { stdin: false }));
    // The client goes away without a word: the connection to the runtime
    // closes, which is what stdinOnce counts as the client leaving.
    drop((reader, w));
    assert_eq!(shim.next().await, None);
}
