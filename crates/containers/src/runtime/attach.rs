//! The attach socket: a live connection to a container's main process.
//! Every container's shim listens on `attach.sock` in the container's
//! state directory; a client (the kubelet's attach endpoint) receives the
//! process's output as it is written, sends its stdin when the container
//! was created with `stdin`, and resizes its terminal when it has one.
//!
//! Upstream counterpart: CRI-O's conmon attach socket (output out, stdin
//! in) and its control FIFO (window sizes), and what containerd's CRI
//! plugin does with a container's stdin FIFO and console
//! (`StdinOnce`: close stdin after the first attach).
//!
//! The wire format is ours: frames of `[kind: u8][length: u32 BE]
//! [payload]` in both directions over a stream socket, so the shim stays a
//! plain poll loop and the client needs no framing library.

use std::borrow::Cow;
use std::io;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// The socket's file name in a container's state directory.
pub const SOCKET: &str = "attach.sock";

/// Largest frame payload accepted; a larger length means a broken peer.
pub const MAX_FRAME: usize = 1 << 20;

/// A terminal size, in character cells.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowSize {
    pub width: u16,
    pub height: u16,
}

const HELLO: u8 = 0;
const STDIN: u8 = 1;
const CLOSE_STDIN: u8 = 2;
const RESIZE: u8 = 3;
const STDOUT: u8 = 4;
const STDERR: u8 = 5;

/// One frame. Clients send the first four, the shim the last two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// The client's first frame: whether it carries stdin. With
    /// `stdinOnce`, a stdin client leaving closes the process's stdin.
    Hello {
        stdin: bool,
    },
    Stdin(Vec<u8>),
    /// The client's stdin ended.
    CloseStdin,
    Resize(WindowSize),
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
}

/// A frame the peer should not have sent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("unknown attach frame kind {0}")]
    UnknownKind(u8),
    #[error("attach frame of {0} bytes exceeds the limit")]
    TooLarge(usize),
    #[error("attach frame kind {kind} has a malformed payload of {len} bytes")]
    Malformed { kind: u8, len: usize },
}

impl Message {
    /// The frame's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let (kind, payload): (u8, Cow<'_, [u8]>) = match self {
            Message::Hello { stdin } => (HELLO, Cow::Owned(vec![u8::from(*stdin)])),
            Message::Stdin(d) => (STDIN, Cow::Borrowed(d)),
            Message::CloseStdin => (CLOSE_STDIN, Cow::Borrowed(&[])),
            Message::Resize(s) => (
                RESIZE,
                Cow::Owned([s.width.to_be_bytes(), s.height.to_be_bytes()].concat()),
            ),
            Message::Stdout(d) => (STDOUT, Cow::Borrowed(d)),
            Message::Stderr(d) => (STDERR, Cow::Borrowed(d)),
        };
        let mut out = Vec::with_capacity(5 + payload.len());
        out.push(kind);
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&payload);
        out
    }

    fn decode(kind: u8, payload: Vec<u8>) -> Result<Message, ProtocolError> {
        let malformed = |len| ProtocolError::Malformed { kind, len };
        Ok(match kind {
            HELLO => match payload[..] {
                [flags] => Message::Hello {
                    stdin: flags & 1 == 1,
                },
                _ => return Err(malformed(payload.len())),
            },
            STDIN => Message::Stdin(payload),
            CLOSE_STDIN => Message::CloseStdin,
            RESIZE => match payload[..] {
                [w0, w1, h0, h1] => Message::Resize(WindowSize {
                    width: u16::from_be_bytes([w0, w1]),
                    height: u16::from_be_bytes([h0, h1]),
                }),
                _ => return Err(malformed(payload.len())),
            },
            STDOUT => Message::Stdout(payload),
            STDERR => Message::Stderr(payload),
            other => return Err(ProtocolError::UnknownKind(other)),
        })
    }
}

/// Splits a byte stream into frames.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame, if one has arrived.
    pub fn next_message(&mut self) -> Result<Option<Message>, ProtocolError> {
        let Some(header) = self.buf.get(..5) else {
            return Ok(None);
        };
        let kind = header[0];
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if len > MAX_FRAME {
            return Err(ProtocolError::TooLarge(len));
        }
        if self.buf.len() < 5 + len {
            return Ok(None);
        }
        let payload = self.buf[5..5 + len].to_vec();
        self.buf.drain(..5 + len);
        Message::decode(kind, payload).map(Some)
    }
}

/// `sun_path` holds 108 bytes: a longer path is reached through the
/// directory's descriptor (`/proc/self/fd/N/name`), kept open meanwhile.
fn short_path(path: &Path) -> io::Result<(Option<std::fs::File>, PathBuf)> {
    if path.as_os_str().len() < 100 {
        return Ok((None, path.to_path_buf()));
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad socket path",
        ));
    };
    let d = std::fs::File::open(dir)?;
    use std::os::fd::AsRawFd;
    let short = PathBuf::from(format!("/proc/self/fd/{}", d.as_raw_fd())).join(name);
    Ok((Some(d), short))
}

/// Listens on `path`, replacing a leftover file.
pub(crate) fn listen(path: &Path) -> io::Result<UnixListener> {
    let _ = std::fs::remove_file(path);
    let (_dir, short) = short_path(path)?;
    let l = UnixListener::bind(short)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Connects to the socket at `path`.
pub fn connect(path: &Path) -> io::Result<UnixStream> {
    let (_dir, short) = short_path(path)?;
    UnixStream::connect(short)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_across_split_reads() {
        let msgs = [
            Message::Hello { stdin: true },
            Message::Stdin(b"hello\n".to_vec()),
            Message::CloseStdin,
            Message::Resize(WindowSize {
                width: 97,
                height: 33,
            }),
            Message::Stdout(Vec::new()),
            Message::Stderr(b"x".to_vec()),
        ];
        let wire: Vec<u8> = msgs.iter().flat_map(Message::encode).collect();
        let mut d = Decoder::default();
        let mut got = Vec::new();
        for b in wire.chunks(3) {
            d.push(b);
            while let Some(m) = d.next_message().unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got, msgs);
    }

    #[test]
    fn bad_frames_are_errors() {
        let mut d = Decoder::default();
        d.push(&[9, 0, 0, 0, 0]);
        assert_eq!(d.next_message(), Err(ProtocolError::UnknownKind(9)));
        let mut d = Decoder::default();
        d.push(&[RESIZE, 0, 0, 0, 1, 7]);
        assert!(matches!(
            d.next_message(),
            Err(ProtocolError::Malformed { kind: RESIZE, .. })
        ));
        let mut d = Decoder::default();
        d.push(&[STDIN, 0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(d.next_message(), Err(ProtocolError::TooLarge(_))));
    }

    #[test]
    fn long_socket_paths_work() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a".repeat(60)).join("b".repeat(60));
        std::fs::create_dir_all(&deep).unwrap();
        let path = deep.join(SOCKET);
        let l = listen(&path).unwrap();
        let _c = connect(&path).unwrap();
        l.set_nonblocking(false).unwrap();
        assert!(l.accept().is_ok());
    }
}
