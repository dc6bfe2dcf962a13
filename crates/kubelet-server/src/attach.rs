//! Attach sessions: a client joins a container's main process. Through
//! the runtime's attach connection ([`PodRuntime::attach`]) it gets the
//! output as the process writes it, feeds its stdin (when the container
//! has `stdin`) and resizes its terminal (with `tty`); without one (a
//! runtime or container that has none) it gets the output by following
//! the container's log from its current end.
//!
//! Upstream counterpart: `pkg/kubelet/cri/streaming/remotecommand/attach.go`
//! (`ServeAttach`) and the CRI runtime's Attach (containerd's
//! `container_attach.go`); the connection's frames are
//! `rkube_containers::runtime::attach`.

use std::sync::Arc;

use bytes::Bytes;
use rkube_containers::runtime::attach::{Decoder, Message, WindowSize};
use rkube_containers::runtime::logs::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use crate::logs::{self, LogOptions};
use crate::remotecommand::{exit_status, Options, Out, Session};
use crate::runtime::{ContainerInfo, PodRuntime};

/// Attaches the session to the container until its process exits or the
/// client leaves.
pub async fn attach(
    rt: Arc<dyn PodRuntime>,
    target: (String, String, String),
    info: ContainerInfo,
    opts: Options,
    session: Session,
) {
    match rt.attach(&info.id).await {
        Ok(Some(conn)) => live(conn, &opts, session).await,
        Ok(None) => follow_log(rt, target, info, opts, session).await,
        Err(err) => {
            tracing::debug!(%err, id = %info.id, "attach failed");
            let _ = session.done.send(crate::remotecommand::error_status(&err));
        }
    }
}

/// Which output a client asked for gets through; with a terminal
/// everything is stdout.
fn pick(opts: &Options, msg: Message) -> Option<Out> {
    match msg {
        Message::Stdout(d) if opts.stdout || opts.tty => Some(Out::Stdout(Bytes::from(d))),
        Message::Stderr(d) if opts.tty && opts.stdout => Some(Out::Stdout(Bytes::from(d))),
        Message::Stderr(d) if opts.stderr && !opts.tty => Some(Out::Stderr(Bytes::from(d))),
        _ => None,
    }
}

async fn send(w: &mut OwnedWriteHalf, msg: Message) -> bool {
    w.write_all(&msg.encode()).await.is_ok()
}

/// Client to process: the hello, stdin (then its end), window sizes.
/// Never returns by itself: dropping the write half would half-close the
/// connection, which the runtime takes as the client leaving.
async fn forward(
    mut w: OwnedWriteHalf,
    mut stdin: Option<mpsc::Receiver<Bytes>>,
    mut resize: mpsc::Receiver<crate::runtime::TermSize>,
) {
    let mut open = send(
        &mut w,
        Message::Hello {
            stdin: stdin.is_some(),
        },
    )
    .await;
    while open {
        tokio::select! {
            chunk = async { stdin.as_mut()?.recv().await }, if stdin.is_some() => {
                open = match chunk {
                    Some(data) => send(&mut w, Message::Stdin(data.to_vec())).await,
                    None => {
                        stdin = None;
                        send(&mut w, Message::CloseStdin).await
                    }
                };
            }
            Some(size) = resize.recv() => {
                let size = WindowSize { width: size.width, height: size.height };
                open = send(&mut w, Message::Resize(size)).await;
            }
            else => break,
        }
    }
    std::future::pending::<()>().await;
}

async fn live(conn: UnixStream, opts: &Options, session: Session) {
    let Session {
        stdin,
        resize,
        out,
        done,
        mut gone,
    } = session;
    let (mut r, w) = conn.into_split();
    let forwarder = tokio::spawn(forward(w, stdin, resize));
    let mut decoder = Decoder::default();
    let mut buf = vec![0u8; 32 * 1024];
    'session: loop {
        let n = tokio::select! {
            n = r.read(&mut buf) => n,
            _ = &mut gone => break,
        };
        match n {
            Ok(0) | Err(_) => break,
            Ok(n) => decoder.push(&buf[..n]),
        }
        loop {
            let msg = match decoder.next_message() {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(err) => {
                    tracing::debug!(%err, "attach connection");
                    break 'session;
                }
            };
            if let Some(o) = pick(opts, msg) {
                if out.send(o).await.is_err() {
                    break 'session;
                }
            }
        }
    }
    // Closing our end tells the runtime this client left.
    forwarder.abort();
    drop(r);
    drop(out);
    let _ = done.send(exit_status(&[], 0));
}

/// Output only, from the log: for containers the runtime cannot attach
/// to live (made before it could).
async fn follow_log(
    rt: Arc<dyn PodRuntime>,
    target: (String, String, String),
    info: ContainerInfo,
    opts: Options,
    session: Session,
) {
    let Session { out, done, .. } = session;
    let (tx, mut rx) = mpsc::channel::<logs::Chunk>(16);
    let log_opts = LogOptions {
        follow: true,
        from_end: true,
        ..LogOptions::default()
    };
    let follower = tokio::spawn(logs::stream(rt, target, info, log_opts, tx));
    while let Some(chunk) = rx.recv().await {
        let o = match chunk.stream {
            Stream::Stderr if !opts.tty && opts.stderr => Out::Stderr(chunk.data),
            _ if opts.stdout || opts.tty => Out::Stdout(chunk.data),
            _ => continue,
        };
        if out.send(o).await.is_err() {
            break;
        }
    }
    follower.abort();
    drop(out);
    let _ = done.send(exit_status(&[], 0));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_goes_where_the_client_asked() {
        let o = |q: &str| Options::from_query(Some(q));
        let out = |opts: &Options, m: Message| match pick(opts, m) {
            Some(Out::Stdout(b)) => format!("out:{}", String::from_utf8_lossy(&b)),
            Some(Out::Stderr(b)) => format!("err:{}", String::from_utf8_lossy(&b)),
            None => "none".into(),
        };
        let both = o("stdout=1&stderr=1");
        assert_eq!(out(&both, Message::Stdout(b"a".to_vec())), "out:a");
        assert_eq!(out(&both, Message::Stderr(b"b".to_vec())), "err:b");
        let only_err = o("stderr=1");
        assert_eq!(out(&only_err, Message::Stdout(b"a".to_vec())), "none");
        let tty = o("stdout=1&stderr=1&tty=1");
        assert_eq!(out(&tty, Message::Stderr(b"b".to_vec())), "out:b");
    }
}
