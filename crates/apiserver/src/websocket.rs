//! The WebSocket side of WATCH: each watch event one text message.
//!
//! Upstream counterpart: `serveWatch`'s WebSocket path (`HandleWS` in
//! `endpoints/handlers/watch.go`, over golang.org/x/net/websocket), which
//! some clients (the Python client's `watch` over `ws://`, browsers,
//! older tools) use instead of a chunked response. Only what a watch
//! needs of RFC 6455 is here: the handshake, unmasked text frames out,
//! and reading the client's frames for ping and close.

use axum::body::Body;
use base64::Engine;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// The GUID RFC 6455 appends to the client's key.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

const OP_TEXT: u8 = 0x1;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Largest client frame read; a watch client sends only control frames.
const MAX_CLIENT_FRAME: u64 = 64 * 1024;

/// Whether the request asks to switch to WebSocket.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    let has = |name: header::HeaderName, want: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .unwrap_or("")
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case(want))
        })
    };
    has(header::CONNECTION, "upgrade") && has(header::UPGRADE, "websocket")
}

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let mut input = key.trim().as_bytes().to_vec();
    input.extend_from_slice(GUID.as_bytes());
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// One unmasked server frame.
pub fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= u16::MAX as usize => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

/// Switch `req` to WebSocket and send every line from `lines` as a text
/// message until it ends or the client closes. A request without a key
/// is answered 400.
pub fn serve(
    mut req: Request<Body>,
    mut lines: mpsc::Receiver<Bytes>,
) -> Result<Response<Body>, rkube_machinery::StatusError> {
    let Some(key) = req
        .headers()
        .get("sec-websocket-key")
        .and_then(|k| k.to_str().ok())
        .map(accept_key)
    else {
        return Err(rkube_machinery::StatusError::bad_request(
            "websocket upgrade without Sec-WebSocket-Key",
        ));
    };
    // Echo the first offered subprotocol: clients that offer one refuse
    // a handshake that picks none.
    let protocol = req
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|p| p.to_str().ok())
        .and_then(|p| p.split(',').next())
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty());
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let io = TokioIo::new(upgraded);
        let (mut reader, mut writer) = tokio::io::split(io);
        let (control_tx, mut control) = mpsc::channel::<Vec<u8>>(4);
        // The reader answers pings and notices the client going away.
        let read = tokio::spawn(async move {
            while let Ok(Some((opcode, payload))) = read_frame(&mut reader).await {
                let reply = match opcode {
                    OP_PING => frame(OP_PONG, &payload),
                    OP_CLOSE => {
                        let _ = control_tx.send(frame(OP_CLOSE, &payload)).await;
                        return;
                    }
                    _ => continue,
                };
                if control_tx.send(reply).await.is_err() {
                    return;
                }
            }
        });
        loop {
            let out = tokio::select! {
                line = lines.recv() => match line {
                    Some(line) => frame(OP_TEXT, &line),
                    None => {
                        let _ = writer.write_all(&frame(OP_CLOSE, &1000u16.to_be_bytes())).await;
                        break;
                    }
                },
                reply = control.recv() => match reply {
                    Some(reply) => {
                        let closing = reply.first() == Some(&(0x80 | OP_CLOSE));
                        let _ = writer.write_all(&reply).await;
                        if closing {
                            break;
                        }
                        continue;
                    }
                    None => break,
                },
            };
            if writer.write_all(&out).await.is_err() {
                break;
            }
        }
        let _ = writer.flush().await;
        let _ = writer.shutdown().await;
        read.abort();
    });
    let mut resp = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header("sec-websocket-accept", key);
    if let Some(p) = protocol.and_then(|p| HeaderValue::from_str(&p).ok()) {
        resp = resp.header("sec-websocket-protocol", p);
    }
    Ok(resp
        .body(Body::empty())
        .expect("static response parts are valid"))
}

/// Read one client frame: its opcode and unmasked payload. `None` at the
/// end of the stream.
async fn read_frame<R: AsyncReadExt + Unpin>(r: &mut R) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 2];
    if r.read_exact(&mut head).await.is_err() {
        return Ok(None);
    }
    let opcode = head[0] & 0x0F;
    let masked = head[1] & 0x80 != 0;
    let len = match head[1] & 0x7F {
        126 => u64::from(r.read_u16().await?),
        127 => r.read_u64().await?,
        n => u64::from(n),
    };
    if len > MAX_CLIENT_FRAME {
        return Err(std::io::Error::other("websocket frame too large"));
    }
    let mut mask = [0u8; 4];
    if masked {
        r.read_exact(&mut mask).await?;
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload).await?;
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
    }
    Ok(Some((opcode, payload)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn frames_use_the_shortest_length_encoding() {
        assert_eq!(frame(OP_TEXT, b"hi"), [0x81, 2, b'h', b'i']);
        let mid = frame(OP_TEXT, &[0; 300]);
        assert_eq!(&mid[..4], &[0x81, 126, 1, 44]);
        let big = frame(OP_TEXT, &[0; 70_000]);
        assert_eq!(&big[..2], &[0x81, 127]);
        assert_eq!(big.len(), 70_000 + 10);
    }

    #[tokio::test]
    async fn masked_client_frames_are_read() {
        let mask = [1u8, 2, 3, 4];
        let payload: Vec<u8> = b"ping!"
            .iter()
            .zip(mask.iter().cycle())
            .map(|(b, m)| b ^ m)
            .collect();
        let mut wire = vec![0x89, 0x80 | 5];
        wire.extend_from_slice(&mask);
        wire.extend_from_slice(&payload);
        let mut r = &wire[..];
        let (op, data) = read_frame(&mut r).await.unwrap().unwrap();
        assert_eq!(op, OP_PING);
        assert_eq!(data, b"ping!");
        assert!(read_frame(&mut r).await.unwrap().is_none());
    }

    #[test]
    fn upgrade_headers_are_recognised() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, Upgrade".parse().unwrap());
        h.insert(header::UPGRADE, "WebSocket".parse().unwrap());
        assert!(is_upgrade(&h));
        h.remove(header::UPGRADE);
        assert!(!is_upgrade(&h));
    }
}
