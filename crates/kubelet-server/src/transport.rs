//! Turning an upgraded connection into two channels of byte chunks, so the
//! stream protocols above do not care what carries them: a raw socket
//! (SPDY) or WebSocket messages (the channel protocols, and SPDY tunnelled
//! through binary messages for port-forward).
//!
//! Upstream counterpart: the `net.Conn` plumbing in
//! `k8s.io/apimachinery/pkg/util/httpstream` and client-go's
//! `portforward/tunneling_connection.go` (one binary message per write).

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::ws;

/// Chunks read from the peer, and a sender for chunks to write. Dropping
/// every clone of the sender ends our side of the connection.
pub type Pipes = (mpsc::Receiver<Bytes>, mpsc::Sender<Bytes>);

/// A raw byte stream.
pub fn raw<T>(io: T) -> Pipes
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut r, mut w) = tokio::io::split(io);
    let (in_tx, in_rx) = mpsc::channel::<Bytes>(32);
    let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(32);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if in_tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    tokio::spawn(async move {
        while let Some(chunk) = out_rx.recv().await {
            if w.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = w.flush().await;
        let _ = w.shutdown().await;
    });
    (in_rx, out_tx)
}

/// A server-side WebSocket: each binary (or text) message in is one
/// chunk, each chunk out one binary message. Pings are answered; a close
/// from the peer ends the inbound side; ours is sent when the outbound
/// side is dropped.
pub fn websocket<T>(io: T) -> Pipes
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (r, mut w) = tokio::io::split(io);
    let (in_tx, in_rx) = mpsc::channel::<Bytes>(32);
    let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(32);
    let (ctl_tx, mut ctl_rx) = mpsc::channel::<Vec<u8>>(4);
    tokio::spawn(async move {
        let mut reader = ws::Reader::new(r);
        loop {
            let m = match reader.next().await {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(err) => {
                    tracing::debug!(%err, "websocket read ended");
                    break;
                }
            };
            let delivered = match m.opcode {
                ws::OP_BINARY | ws::OP_TEXT => in_tx.send(Bytes::from(m.data)).await.is_ok(),
                ws::OP_PING => {
                    let _ = ctl_tx.send(ws::encode(ws::OP_PONG, &m.data, None)).await;
                    true
                }
                ws::OP_CLOSE => false,
                _ => true,
            };
            if !delivered {
                break;
            }
        }
    });
    tokio::spawn(async move {
        loop {
            tokio::select! {
                chunk = out_rx.recv() => match chunk {
                    Some(chunk) => {
                        if w.write_all(&ws::encode(ws::OP_BINARY, &chunk, None)).await.is_err() {
                            return;
                        }
                    }
                    None => break,
                },
                Some(ctl) = ctl_rx.recv() => {
                    if w.write_all(&ctl).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = w.write_all(&ws::close_frame(1000, None)).await;
        let _ = w.flush().await;
        // Only our half closes: the reader keeps reading until the peer
        // answers the close, so nothing it sends meanwhile meets a reset.
        let _ = w.shutdown().await;
    });
    (in_rx, out_tx)
}
