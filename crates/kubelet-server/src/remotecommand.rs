//! The remote command protocol behind exec and attach: stdin, stdout,
//! stderr, an error/status stream and terminal resizes, carried either as
//! WebSocket channels (`v4.channel.k8s.io`, `v5.channel.k8s.io`: one
//! leading channel byte per message) or as SPDY streams typed by their
//! `streamType` header (`v4.channel.k8s.io`).
//!
//! Upstream counterpart: `pkg/kubelet/cri/streaming/remotecommand`
//! (httpstream.go, websocket.go) and client-go's `tools/remotecommand`
//! (the v4 error decoder reads a `metav1.Status`; its `ExitCode` cause is
//! the command's exit code). v5 adds a close signal (channel 255) so a
//! WebSocket client can half-close stdin, which `kubectl cp` needs.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use crate::runtime::TermSize;
use crate::spdy::{self, Event};

pub const V4: &str = "v4.channel.k8s.io";
pub const V5: &str = "v5.channel.k8s.io";
/// The first channel protocol (upstream's conformance test still speaks
/// it): same framing, but the error channel carries plain text and only
/// on failure.
pub const V1: &str = "channel.k8s.io";

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// What a request asked for (`?command=..&stdin=1&stdout=1&stderr=1&tty=1`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl Options {
    pub fn from_query(query: Option<&str>) -> Options {
        let mut o = Options::default();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let on = matches!(v.as_ref(), "1" | "true" | "True");
            match k.as_ref() {
                "command" => o.command.push(v.into_owned()),
                "input" | "stdin" => o.stdin = on,
                "output" | "stdout" => o.stdout = on,
                "error" | "stderr" => o.stderr = on,
                "tty" => o.tty = on,
                _ => {}
            }
        }
        // With a terminal, stderr is merged into stdout.
        if o.tty {
            o.stderr = false;
        }
        o
    }
}

/// Output towards the client.
#[derive(Debug)]
pub enum Out {
    Stdout(Bytes),
    Stderr(Bytes),
}

/// One client session, whatever carries it.
pub struct Session {
    /// `None` when the client sends no stdin; ends at the client's EOF.
    pub stdin: Option<mpsc::Receiver<Bytes>>,
    pub resize: mpsc::Receiver<TermSize>,
    pub out: mpsc::Sender<Out>,
    /// The final `metav1.Status`; the session ends after writing it.
    pub done: oneshot::Sender<Value>,
    /// Resolves (with an error: its sender is dropped) once the client's
    /// side of the connection has ended; attach ends with it.
    pub gone: oneshot::Receiver<()>,
}

/// The status for a finished command: Success, or NonZeroExitCode with
/// the code as an `ExitCode` cause (what kubectl turns into its own
/// exit code).
pub fn exit_status(command: &[String], code: i32) -> Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!(
            "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
            command.join(" ")
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

/// The status for a command that could not run at all.
pub fn error_status(message: &str) -> Value {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("Internal error occurred: {message}"),
        "reason": "InternalError",
        "code": 500,
        "details": {"causes": [{"message": message}]},
    })
}

/// A session over WebSocket channel messages.
pub fn websocket(pipes: crate::transport::Pipes, protocol: &str, opts: &Options) -> Session {
    let (mut inbound, outbound) = pipes;
    let v5 = protocol == V5;
    let v1 = protocol == V1;
    let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(16);
    let (resize_tx, resize) = mpsc::channel(4);
    let (out, mut out_rx) = mpsc::channel::<Out>(16);
    let (done, done_rx) = oneshot::channel::<Value>();
    let (gone_tx, gone) = oneshot::channel::<()>();
    let mut stdin_tx = opts.stdin.then_some(stdin_tx);
    tokio::spawn(async move {
        let _gone = gone_tx;
        while let Some(msg) = inbound.recv().await {
            let Some((&channel, data)) = msg.split_first() else {
                continue;
            };
            match channel {
                STDIN => {
                    if let Some(tx) = &stdin_tx {
                        if !data.is_empty() && tx.send(msg.slice(1..)).await.is_err() {
                            stdin_tx = None;
                        }
                    }
                }
                RESIZE => {
                    if let Ok(size) = serde_json::from_slice::<TermSize>(data) {
                        let _ = resize_tx.try_send(size);
                    }
                }
                CLOSE if v5 && data.first() == Some(&STDIN) => stdin_tx = None,
                _ => {}
            }
        }
    });
    tokio::spawn(async move {
        let frame = |channel: u8, data: &[u8]| {
            let mut m = Vec::with_capacity(data.len() + 1);
            m.push(channel);
            m.extend_from_slice(data);
            Bytes::from(m)
        };
        let mut done_rx = done_rx;
        let status = loop {
            tokio::select! {
                biased;
                o = out_rx.recv() => match o {
                    Some(Out::Stdout(b)) => { let _ = outbound.send(frame(STDOUT, &b)).await; }
                    Some(Out::Stderr(b)) => { let _ = outbound.send(frame(STDERR, &b)).await; }
                    None => break (&mut done_rx).await.ok(),
                },
                s = &mut done_rx => break s.ok(),
            }
        };
        // Output queued before the status goes first.
        while let Ok(o) = out_rx.try_recv() {
            let (c, b) = match o {
                Out::Stdout(b) => (STDOUT, b),
                Out::Stderr(b) => (STDERR, b),
            };
            let _ = outbound.send(frame(c, &b)).await;
        }
        match status {
            Some(s) if v1 && s["status"] == "Success" => {}
            Some(s) if v1 => {
                let text = s["message"].as_str().unwrap_or("error").to_string();
                let _ = outbound.send(frame(ERROR, text.as_bytes())).await;
            }
            Some(s) => {
                let body = serde_json::to_vec(&s).unwrap_or_default();
                let _ = outbound.send(frame(ERROR, &body)).await;
            }
            None => {}
        }
    });
    Session {
        stdin: opts.stdin.then_some(stdin_rx),
        resize,
        out,
        done,
        gone,
    }
}

/// Stream ids of a SPDY session, by type.
#[derive(Default)]
struct Streams {
    error: Option<u32>,
    stdin: Option<u32>,
    stdout: Option<u32>,
    stderr: Option<u32>,
    resize: Option<u32>,
}

impl Streams {
    fn complete(&self, o: &Options) -> bool {
        self.error.is_some()
            && (!o.stdin || self.stdin.is_some())
            && (!o.stdout || self.stdout.is_some())
            && (!o.stderr || self.stderr.is_some())
            && (!o.tty || self.resize.is_some())
    }
}

/// A session over a SPDY connection: waits (up to 30 s, as upstream's
/// stream creation timeout) until the client opened every stream the
/// options call for.
pub async fn spdy(mut conn: spdy::Connection, opts: &Options) -> Result<Session, String> {
    let mut streams = Streams::default();
    let mut early = Vec::new();
    let wait = async {
        while !streams.complete(opts) {
            match conn.events.recv().await {
                Some(Event::Stream { id, headers }) => {
                    let slot = match spdy::header(&headers, "streamtype") {
                        Some("error") => &mut streams.error,
                        Some("stdin") => &mut streams.stdin,
                        Some("stdout") => &mut streams.stdout,
                        Some("stderr") => &mut streams.stderr,
                        Some("resize") => &mut streams.resize,
                        _ => continue,
                    };
                    *slot = Some(id);
                }
                Some(ev) => early.push(ev),
                None => return Err("connection closed before all streams were created".to_string()),
            }
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .map_err(|_| "timed out waiting for client to create streams".to_string())??;
    let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(16);
    let (resize_tx, resize) = mpsc::channel(4);
    let (out, mut out_rx) = mpsc::channel::<Out>(16);
    let (done, done_rx) = oneshot::channel::<Value>();
    let (gone_tx, gone) = oneshot::channel::<()>();
    let writer = conn.writer.clone();
    let ids = (streams.stdin, streams.resize);
    let mut events = conn.events;
    tokio::spawn(async move {
        let _gone = gone_tx;
        let mut stdin_tx = ids.0.map(|_| stdin_tx);
        let mut resize_buf = Vec::new();
        let pending = futures::stream::iter(early);
        futures::pin_mut!(pending);
        loop {
            let ev = match futures::StreamExt::next(&mut pending).await {
                Some(ev) => ev,
                None => match events.recv().await {
                    Some(ev) => ev,
                    None => break,
                },
            };
            match ev {
                Event::Data { id, data } if Some(id) == ids.0 => {
                    if let Some(tx) = &stdin_tx {
                        if tx.send(data).await.is_err() {
                            stdin_tx = None;
                        }
                    }
                }
                Event::Fin { id } | Event::Reset { id } if Some(id) == ids.0 => stdin_tx = None,
                Event::Data { id, data } if Some(id) == ids.1 => {
                    // Sizes are JSON objects, one after another.
                    resize_buf.extend_from_slice(&data);
                    let mut de =
                        serde_json::Deserializer::from_slice(&resize_buf).into_iter::<TermSize>();
                    let mut used = 0;
                    while let Some(Ok(size)) = de.next() {
                        used = de.byte_offset();
                        let _ = resize_tx.try_send(size);
                    }
                    resize_buf.drain(..used);
                }
                _ => {}
            }
        }
    });
    tokio::spawn(async move {
        let mut done_rx = done_rx;
        let status = loop {
            tokio::select! {
                biased;
                o = out_rx.recv() => match o {
                    Some(o) => send_out(&writer, &streams, o).await,
                    None => break (&mut done_rx).await.ok(),
                },
                s = &mut done_rx => break s.ok(),
            }
        };
        while let Ok(o) = out_rx.try_recv() {
            send_out(&writer, &streams, o).await;
        }
        if let (Some(status), Some(id)) = (status, streams.error) {
            let body = serde_json::to_vec(&status).unwrap_or_default();
            writer.data(id, Bytes::from(body)).await;
        }
        for id in [streams.error, streams.stdout, streams.stderr]
            .into_iter()
            .flatten()
        {
            writer.fin(id).await;
        }
        // Dropping the last writer ends the connection.
    });
    drop(conn.writer);
    Ok(Session {
        stdin: opts.stdin.then_some(stdin_rx),
        resize,
        out,
        done,
        gone,
    })
}

async fn send_out(writer: &spdy::Writer, streams: &Streams, o: Out) {
    let (id, data) = match o {
        Out::Stdout(b) => (streams.stdout, b),
        Out::Stderr(b) => (streams.stderr, b),
    };
    if let Some(id) = id {
        writer.data(id, data).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_from_kubectl_queries() {
        let o = Options::from_query(Some(
            "command=sh&command=-c&command=echo+hi&stdin=true&stdout=true&stderr=true&tty=true",
        ));
        assert_eq!(o.command, ["sh", "-c", "echo hi"]);
        assert!(o.stdin && o.stdout && o.tty && !o.stderr);
        let o = Options::from_query(Some("command=ls&output=1&error=1"));
        assert!(o.stdout && o.stderr && !o.stdin);
    }

    #[test]
    fn exit_status_carries_the_code() {
        let s = exit_status(&["sh".into(), "-c".into(), "exit 3".into()], 3);
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(s["details"]["causes"][0]["message"], "3");
        assert_eq!(exit_status(&[], 0)["status"], "Success");
    }
}
