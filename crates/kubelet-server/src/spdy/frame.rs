//! SPDY/3.1 frames and their codec: 8-byte headers, control frames with
//! zlib-compressed name/value header blocks, data frames.
//!
//! Upstream counterpart: `github.com/moby/spdystream/spdy` (read.go,
//! write.go, types.go), the framer under client-go's and the kubelet's
//! SPDY connections. Like spdystream, flow control (WINDOW_UPDATE) is
//! read and ignored: TCP's own window is the only back-pressure.

use bytes::{Buf, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::dict::dictionary;

pub const FLAG_FIN: u8 = 0x01;
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

/// Largest frame payload accepted (the length field allows 16 MiB).
const MAX_FRAME: usize = 16 << 20;

/// Header names and values; names are lower case on the wire.
pub type Headers = Vec<(String, String)>;

/// The value of header `name` (compared without case).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        associated: u32,
        priority: u8,
        flags: u8,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings {
        flags: u8,
        entries: Vec<(u8, u32, u32)>,
    },
    Ping(u32),
    GoAway {
        last_good: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        flags: u8,
        data: Bytes,
    },
    /// A control frame type this codec does not know (skipped by readers).
    Unknown(u16),
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("spdy frame of {0} bytes is too large")]
    TooLarge(usize),
    #[error("spdy control frame version {0} is not 3")]
    Version(u16),
    #[error("spdy frame is truncated")]
    Truncated,
    #[error("spdy header block: {0}")]
    Headers(String),
}

/// Encodes and decodes frames of one connection. Each direction has one
/// zlib stream for all header blocks, seeded with the SPDY dictionary.
pub struct Codec {
    deflate: Compress,
    inflate: Decompress,
}

impl Default for Codec {
    fn default() -> Self {
        Self::new()
    }
}

impl Codec {
    pub fn new() -> Codec {
        let mut deflate = Compress::new(Compression::default(), true);
        deflate
            .set_dictionary(dictionary())
            .expect("a fresh zlib stream accepts a dictionary");
        Codec {
            deflate,
            inflate: Decompress::new(true),
        }
    }

    /// Appends the wire form of `frame` to `out`.
    pub fn encode(&mut self, frame: &Frame, out: &mut Vec<u8>) {
        match frame {
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                out.extend_from_slice(&(stream_id & 0x7FFF_FFFF).to_be_bytes());
                out.extend_from_slice(&length_word(*flags, data.len()));
                out.extend_from_slice(data);
            }
            Frame::SynStream {
                stream_id,
                associated,
                priority,
                flags,
                headers,
            } => {
                let mut body = Vec::new();
                body.extend_from_slice(&stream_id.to_be_bytes());
                body.extend_from_slice(&associated.to_be_bytes());
                body.push((priority & 0x7) << 5);
                body.push(0);
                self.headers(headers, &mut body);
                control(out, SYN_STREAM, *flags, &body);
            }
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            }
            | Frame::Headers {
                stream_id,
                flags,
                headers,
            } => {
                let kind = match frame {
                    Frame::SynReply { .. } => SYN_REPLY,
                    _ => HEADERS,
                };
                let mut body = stream_id.to_be_bytes().to_vec();
                self.headers(headers, &mut body);
                control(out, kind, *flags, &body);
            }
            Frame::RstStream { stream_id, status } => {
                let mut body = stream_id.to_be_bytes().to_vec();
                body.extend_from_slice(&status.to_be_bytes());
                control(out, RST_STREAM, 0, &body);
            }
            Frame::Settings { flags, entries } => {
                let mut body = (entries.len() as u32).to_be_bytes().to_vec();
                for (f, id, value) in entries {
                    body.push(*f);
                    body.extend_from_slice(&id.to_be_bytes()[1..]);
                    body.extend_from_slice(&value.to_be_bytes());
                }
                control(out, SETTINGS, *flags, &body);
            }
            Frame::Ping(id) => control(out, PING, 0, &id.to_be_bytes()),
            Frame::GoAway { last_good, status } => {
                let mut body = last_good.to_be_bytes().to_vec();
                body.extend_from_slice(&status.to_be_bytes());
                control(out, GOAWAY, 0, &body);
            }
            Frame::WindowUpdate { stream_id, delta } => {
                let mut body = stream_id.to_be_bytes().to_vec();
                body.extend_from_slice(&delta.to_be_bytes());
                control(out, WINDOW_UPDATE, 0, &body);
            }
            Frame::Unknown(_) => {}
        }
    }

    fn headers(&mut self, headers: &Headers, out: &mut Vec<u8>) {
        let mut raw = (headers.len() as u32).to_be_bytes().to_vec();
        for (k, v) in headers {
            let k = k.to_ascii_lowercase();
            raw.extend_from_slice(&(k.len() as u32).to_be_bytes());
            raw.extend_from_slice(k.as_bytes());
            raw.extend_from_slice(&(v.len() as u32).to_be_bytes());
            raw.extend_from_slice(v.as_bytes());
        }
        let mut input = &raw[..];
        loop {
            out.reserve(input.len() + 64);
            let before = self.deflate.total_in();
            // Sync flush: the block ends on a byte boundary so the peer can
            // decode it now, while the stream (and its history) continues.
            let _ = self
                .deflate
                .compress_vec(input, out, FlushCompress::Sync)
                .expect("deflate into a growing buffer cannot fail");
            let used = (self.deflate.total_in() - before) as usize;
            input = &input[used..];
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
    }

    /// Takes one complete frame off the front of `buf`, or `None` when
    /// more bytes are needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, Error> {
        if buf.len() < 8 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([0, buf[5], buf[6], buf[7]]) as usize;
        if len > MAX_FRAME {
            return Err(Error::TooLarge(len));
        }
        if buf.len() < 8 + len {
            return Ok(None);
        }
        let head = buf.split_to(8);
        let mut body = buf.split_to(len).freeze();
        let flags = head[4];
        if head[0] & 0x80 == 0 {
            let stream_id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            return Ok(Some(Frame::Data {
                stream_id,
                flags,
                data: body,
            }));
        }
        let version = u16::from_be_bytes([head[0] & 0x7F, head[1]]);
        if version != 3 {
            return Err(Error::Version(version));
        }
        let kind = u16::from_be_bytes([head[2], head[3]]);
        let need = |n: usize, body: &Bytes| {
            if body.len() < n {
                Err(Error::Truncated)
            } else {
                Ok(())
            }
        };
        let frame = match kind {
            SYN_STREAM => {
                need(10, &body)?;
                let stream_id = body.get_u32() & 0x7FFF_FFFF;
                let associated = body.get_u32() & 0x7FFF_FFFF;
                let priority = body.get_u8() >> 5;
                body.advance(1);
                Frame::SynStream {
                    stream_id,
                    associated,
                    priority,
                    flags,
                    headers: self.read_headers(&body)?,
                }
            }
            SYN_REPLY | HEADERS => {
                need(4, &body)?;
                let stream_id = body.get_u32() & 0x7FFF_FFFF;
                let headers = self.read_headers(&body)?;
                if kind == SYN_REPLY {
                    Frame::SynReply {
                        stream_id,
                        flags,
                        headers,
                    }
                } else {
                    Frame::Headers {
                        stream_id,
                        flags,
                        headers,
                    }
                }
            }
            RST_STREAM => {
                need(8, &body)?;
                Frame::RstStream {
                    stream_id: body.get_u32() & 0x7FFF_FFFF,
                    status: body.get_u32(),
                }
            }
            SETTINGS => {
                need(4, &body)?;
                let n = body.get_u32() as usize;
                need(n.saturating_mul(8), &body)?;
                let entries = (0..n)
                    .map(|_| {
                        let word = body.get_u32();
                        ((word >> 24) as u8, word & 0xFF_FFFF, body.get_u32())
                    })
                    .collect();
                Frame::Settings { flags, entries }
            }
            PING => {
                need(4, &body)?;
                Frame::Ping(body.get_u32())
            }
            GOAWAY => {
                need(4, &body)?;
                let last_good = body.get_u32() & 0x7FFF_FFFF;
                let status = if body.len() >= 4 { body.get_u32() } else { 0 };
                Frame::GoAway { last_good, status }
            }
            WINDOW_UPDATE => {
                need(8, &body)?;
                Frame::WindowUpdate {
                    stream_id: body.get_u32() & 0x7FFF_FFFF,
                    delta: body.get_u32() & 0x7FFF_FFFF,
                }
            }
            other => Frame::Unknown(other),
        };
        Ok(Some(frame))
    }

    fn read_headers(&mut self, block: &[u8]) -> Result<Headers, Error> {
        let raw = self.inflate_block(block)?;
        let mut r = &raw[..];
        let word = |r: &mut &[u8]| -> Result<u32, Error> {
            if r.len() < 4 {
                return Err(Error::Headers("truncated name/value block".into()));
            }
            Ok(r.get_u32())
        };
        let string = |r: &mut &[u8]| -> Result<String, Error> {
            let n = word(r)? as usize;
            if r.len() < n {
                return Err(Error::Headers("truncated name/value block".into()));
            }
            let s = String::from_utf8_lossy(&r[..n]).into_owned();
            r.advance(n);
            Ok(s)
        };
        let count = word(&mut r)?;
        let mut headers = Vec::new();
        for _ in 0..count {
            let name = string(&mut r)?;
            let value = string(&mut r)?;
            // Several values of one name are joined by NUL bytes.
            for v in value.split('\0') {
                headers.push((name.clone(), v.to_string()));
            }
        }
        Ok(headers)
    }

    fn inflate_block(&mut self, mut input: &[u8]) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(input.len() * 4 + 64);
        loop {
            let before = self.inflate.total_in();
            let res = self
                .inflate
                .decompress_vec(input, &mut out, FlushDecompress::Sync);
            let used = (self.inflate.total_in() - before) as usize;
            input = &input[used..];
            match res {
                Ok(Status::Ok | Status::BufError) => {
                    if input.is_empty() && out.len() < out.capacity() {
                        return Ok(out);
                    }
                    if out.len() == out.capacity() {
                        out.reserve(out.capacity().max(256));
                    } else if used == 0 {
                        return Err(Error::Headers("zlib made no progress".into()));
                    }
                }
                Ok(Status::StreamEnd) => return Ok(out),
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(dictionary())
                        .map_err(|e| Error::Headers(e.to_string()))?;
                }
                Err(e) => return Err(Error::Headers(e.to_string())),
            }
        }
    }
}

fn length_word(flags: u8, len: usize) -> [u8; 4] {
    let l = (len as u32).to_be_bytes();
    [flags, l[1], l[2], l[3]]
}

fn control(out: &mut Vec<u8>, kind: u16, flags: u8, body: &[u8]) {
    out.extend_from_slice(&(0x8003u16).to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&length_word(flags, body.len()));
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(frames: &[Frame]) -> Vec<Frame> {
        let (mut tx, mut rx) = (Codec::new(), Codec::new());
        let mut wire = Vec::new();
        for f in frames {
            tx.encode(f, &mut wire);
        }
        let mut buf = BytesMut::from(&wire[..]);
        let mut out = Vec::new();
        while let Some(f) = rx.decode(&mut buf).unwrap() {
            out.push(f);
        }
        assert!(buf.is_empty());
        out
    }

    #[test]
    fn frames_round_trip_with_shared_header_compression() {
        let hs = |t: &str| {
            vec![
                ("streamtype".to_string(), t.to_string()),
                ("port".to_string(), "80".to_string()),
            ]
        };
        let frames = vec![
            Frame::SynStream {
                stream_id: 1,
                associated: 0,
                priority: 0,
                flags: 0,
                headers: hs("error"),
            },
            Frame::SynStream {
                stream_id: 3,
                associated: 0,
                priority: 0,
                flags: FLAG_FIN,
                headers: hs("data"),
            },
            Frame::SynReply {
                stream_id: 3,
                flags: 0,
                headers: vec![],
            },
            Frame::Data {
                stream_id: 3,
                flags: FLAG_FIN,
                data: Bytes::from_static(b"hello"),
            },
            Frame::Ping(7),
            Frame::Settings {
                flags: 0,
                entries: vec![(0, 7, 65536)],
            },
            Frame::WindowUpdate {
                stream_id: 3,
                delta: 100,
            },
            Frame::GoAway {
                last_good: 3,
                status: 0,
            },
        ];
        assert_eq!(round_trip(&frames), frames);
    }

    #[test]
    fn partial_input_waits_and_bad_version_fails() {
        let mut c = Codec::new();
        let mut buf = BytesMut::from(&[0u8, 0, 0, 1, 0, 0, 0, 5, b'a'][..]);
        assert!(c.decode(&mut buf).unwrap().is_none());
        let mut bad = BytesMut::from(&[0x80u8, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1][..]);
        assert!(matches!(c.decode(&mut bad), Err(Error::Version(2))));
    }
}
