//! SPDY/3.1 as Kubernetes uses it: a server connection whose client opens
//! streams (odd ids) typed by headers, each replied to at once, with data
//! and half-closes (FIN) in both directions.
//!
//! Upstream counterpart: `github.com/moby/spdystream` and
//! `k8s.io/apimachinery/pkg/util/httpstream/spdy` (the upgrade: `Upgrade:
//! SPDY/3.1` and `X-Stream-Protocol-Version`). The connection runs over
//! byte chunks ([`crate::transport`]) so the same code serves a raw
//! upgraded socket and the WebSocket tunnel kubectl 1.30+ uses for
//! port-forward.

pub mod dict;
pub mod frame;

use std::collections::HashSet;

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

pub use frame::{header, Codec, Frame, Headers, FLAG_FIN};

/// What the client did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new stream and its headers (already replied to).
    Stream {
        id: u32,
        headers: Headers,
    },
    Data {
        id: u32,
        data: Bytes,
    },
    /// The client will send no more on this stream.
    Fin {
        id: u32,
    },
    /// The client reset the stream.
    Reset {
        id: u32,
    },
}

/// Sends on a connection's streams; cheap to clone. The connection ends
/// once every writer (and the [`Connection`]) is dropped.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Frame>,
}

impl Writer {
    /// Sends `data` on stream `id`; false once the connection is gone.
    pub async fn data(&self, id: u32, data: Bytes) -> bool {
        self.tx
            .send(Frame::Data {
                stream_id: id,
                flags: 0,
                data,
            })
            .await
            .is_ok()
    }

    /// Half-closes stream `id` from our side.
    pub async fn fin(&self, id: u32) -> bool {
        self.tx
            .send(Frame::Data {
                stream_id: id,
                flags: FLAG_FIN,
                data: Bytes::new(),
            })
            .await
            .is_ok()
    }
}

/// The server side of one SPDY connection.
pub struct Connection {
    pub events: mpsc::Receiver<Event>,
    pub writer: Writer,
}

/// Runs a server connection over `inbound` chunks (bytes as they arrive)
/// and `outbound` (bytes to send; dropped when the connection is over).
pub fn serve(inbound: mpsc::Receiver<Bytes>, outbound: mpsc::Sender<Bytes>) -> Connection {
    let (event_tx, events) = mpsc::channel(64);
    let (frame_tx, frame_rx) = mpsc::channel(64);
    tokio::spawn(drive(inbound, outbound, event_tx, frame_rx));
    Connection {
        events,
        writer: Writer { tx: frame_tx },
    }
}

async fn drive(
    mut inbound: mpsc::Receiver<Bytes>,
    outbound: mpsc::Sender<Bytes>,
    events: mpsc::Sender<Event>,
    mut frames: mpsc::Receiver<Frame>,
) {
    let mut codec = Codec::new();
    let mut buf = BytesMut::new();
    let mut open: HashSet<u32> = HashSet::new();
    loop {
        tokio::select! {
            chunk = inbound.recv() => {
                let Some(chunk) = chunk else { break };
                buf.extend_from_slice(&chunk);
                loop {
                    let frame = match codec.decode(&mut buf) {
                        Ok(Some(f)) => f,
                        Ok(None) => break,
                        Err(err) => {
                            tracing::debug!(%err, "bad spdy frame; closing");
                            return;
                        }
                    };
                    let mut reply = Vec::new();
                    let evs = handle(frame, &mut codec, &mut reply, &mut open);
                    if !reply.is_empty() && outbound.send(Bytes::from(reply)).await.is_err() {
                        return;
                    }
                    for ev in evs {
                        // A session that stopped listening still lets the
                        // connection answer pings and drain.
                        let _ = events.send(ev).await;
                    }
                }
            }
            frame = frames.recv() => {
                let Some(frame) = frame else {
                    // Our side is done: close it; the peer closes its side.
                    let mut out = Vec::new();
                    codec.encode(&Frame::GoAway { last_good: 0, status: 0 }, &mut out);
                    let _ = outbound.send(Bytes::from(out)).await;
                    break;
                };
                let mut out = Vec::new();
                codec.encode(&frame, &mut out);
                if outbound.send(Bytes::from(out)).await.is_err() {
                    return;
                }
            }
        }
    }
    drop(outbound);
    drop(events);
    // Keep reading until the peer closes, so our last frames are not
    // lost to a reset of a socket with unread data.
    let drain = async { while inbound.recv().await.is_some() {} };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), drain).await;
}

fn handle(
    frame: Frame,
    codec: &mut Codec,
    reply: &mut Vec<u8>,
    open: &mut HashSet<u32>,
) -> Vec<Event> {
    match frame {
        Frame::SynStream {
            stream_id,
            flags,
            headers,
            ..
        } => {
            codec.encode(
                &Frame::SynReply {
                    stream_id,
                    flags: 0,
                    headers: Vec::new(),
                },
                reply,
            );
            open.insert(stream_id);
            let mut evs = vec![Event::Stream {
                id: stream_id,
                headers,
            }];
            if flags & FLAG_FIN != 0 {
                evs.push(Event::Fin { id: stream_id });
            }
            evs
        }
        Frame::Data {
            stream_id,
            flags,
            data,
        } => {
            let mut evs = Vec::new();
            if !data.is_empty() {
                evs.push(Event::Data {
                    id: stream_id,
                    data,
                });
            }
            if flags & FLAG_FIN != 0 {
                evs.push(Event::Fin { id: stream_id });
            }
            evs
        }
        Frame::Ping(id) => {
            codec.encode(&Frame::Ping(id), reply);
            Vec::new()
        }
        Frame::RstStream { stream_id, .. } => {
            open.remove(&stream_id);
            vec![Event::Reset { id: stream_id }]
        }
        Frame::Headers { stream_id, .. } if !open.contains(&stream_id) => Vec::new(),
        _ => Vec::new(),
    }
}
