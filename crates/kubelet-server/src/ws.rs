//! A minimal RFC 6455 WebSocket: the upgrade handshake and the frame
//! codec, enough for Kubernetes' channel protocols (binary messages, ping,
//! close). Both ends are here (servers send unmasked frames, clients
//! masked ones) so tests can speak it too.
//!
//! Upstream counterpart: `golang.org/x/net/websocket` as
//! `k8s.io/apimachinery/pkg/util/httpstream/wsstream` uses it on the
//! kubelet side, and gorilla/websocket in client-go.

use base64::Engine;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncReadExt};

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Largest message accepted; kubectl's frames are at most 32 KiB.
pub const MAX_MESSAGE: usize = 16 << 20;

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("read websocket frame: {0}")]
    Io(#[from] std::io::Error),
    #[error("websocket message of {0} bytes is too large")]
    TooLarge(u64),
    #[error("websocket protocol error: {0}")]
    Protocol(&'static str),
}

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.trim().as_bytes());
    h.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// Whether a request asks for a WebSocket upgrade.
pub fn is_upgrade(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(http::header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.eq_ignore_ascii_case("websocket"))
}

/// The subprotocols a client offers, in its order.
pub fn offered_protocols(headers: &http::HeaderMap) -> Vec<String> {
    headers
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// One frame as encoded on the wire; `mask` for client frames.
pub fn encode(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x80 | opcode);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(m) => {
            out.extend_from_slice(&m);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A close frame with a status code (1000: normal closure).
pub fn close_frame(code: u16, mask: Option<[u8; 4]>) -> Vec<u8> {
    encode(OP_CLOSE, &code.to_be_bytes(), mask)
}

/// A complete message: its opcode (text, binary, close, ping, pong) and
/// payload, with fragments joined and masking removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub opcode: u8,
    pub data: Vec<u8>,
}

/// Reads messages off a stream, keeping a fragmented message's parts
/// across the control frames that may arrive between them.
pub struct Reader<R> {
    inner: R,
    data: Vec<u8>,
    opcode: Option<u8>,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    pub fn new(inner: R) -> Reader<R> {
        Reader {
            inner,
            data: Vec::new(),
            opcode: None,
        }
    }

    /// The next message; `None` at a clean end of the stream. Control
    /// frames arriving between fragments are returned on their own.
    pub async fn next(&mut self) -> Result<Option<Message>, Error> {
        let r = &mut self.inner;
        loop {
            let mut head = [0u8; 2];
            match r.read_exact(&mut head).await {
                Ok(_) => {}
                Err(e)
                    if e.kind() == std::io::ErrorKind::UnexpectedEof && self.opcode.is_none() =>
                {
                    return Ok(None)
                }
                Err(e) => return Err(e.into()),
            }
            let fin = head[0] & 0x80 != 0;
            let opcode = head[0] & 0x0F;
            let masked = head[1] & 0x80 != 0;
            let len = match head[1] & 0x7F {
                126 => {
                    let mut b = [0u8; 2];
                    r.read_exact(&mut b).await?;
                    u64::from(u16::from_be_bytes(b))
                }
                127 => {
                    let mut b = [0u8; 8];
                    r.read_exact(&mut b).await?;
                    u64::from_be_bytes(b)
                }
                n => u64::from(n),
            };
            if len + self.data.len() as u64 > MAX_MESSAGE as u64 {
                return Err(Error::TooLarge(len));
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
            if opcode >= OP_CLOSE {
                if !fin {
                    return Err(Error::Protocol("fragmented control frame"));
                }
                return Ok(Some(Message {
                    opcode,
                    data: payload,
                }));
            }
            match (self.opcode, opcode) {
                (None, OP_CONTINUATION) => {
                    return Err(Error::Protocol("continuation without start"))
                }
                (None, op) => self.opcode = Some(op),
                (Some(_), OP_CONTINUATION) => {}
                (Some(_), _) => return Err(Error::Protocol("new message inside a fragmented one")),
            }
            self.data.extend_from_slice(&payload);
            if fin {
                let opcode = self.opcode.take().unwrap_or(OP_BINARY);
                return Ok(Some(Message {
                    opcode,
                    data: std::mem::take(&mut self.data),
                }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[tokio::test]
    async fn masked_fragments_round_trip() {
        let mut wire = Vec::new();
        let mut first = encode(OP_BINARY, b"hel", Some([1, 2, 3, 4]));
        first[0] &= 0x7F; // not final
        wire.extend(first);
        wire.extend(encode(OP_PING, b"p", Some([9, 9, 9, 9])));
        wire.extend(encode(OP_CONTINUATION, b"lo", Some([5, 6, 7, 8])));
        let big = vec![7u8; 70_000];
        wire.extend(encode(OP_BINARY, &big, None));
        let mut r = Reader::new(&wire[..]);
        let ping = r.next().await.unwrap().unwrap();
        assert_eq!((ping.opcode, ping.data), (OP_PING, b"p".to_vec()));
        let m = r.next().await.unwrap().unwrap();
        assert_eq!((m.opcode, m.data), (OP_BINARY, b"hello".to_vec()));
        assert_eq!(r.next().await.unwrap().unwrap().data, big);
        assert!(r.next().await.unwrap().is_none());
    }
}
