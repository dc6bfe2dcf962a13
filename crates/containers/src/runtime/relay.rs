//! The shim's I/O loop: the container's output into the CRI log and to
//! every attached client, attached clients' stdin into the container
//! (when it was created with `stdin`), and their window sizes onto its
//! terminal. One single-threaded poll loop: the shim is a forked copy of
//! a multi-threaded process and must not start threads.
//!
//! Upstream counterpart: conmon's main loop (`ctr_stdio` to the log and
//! the attach sockets, `conn_sock` input, the control FIFO's window
//! sizes) and containerd-shim's console/stdio copiers.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use super::attach::{Decoder, Message};
use super::cgroup::Cgroup;
use super::logs::{LineSplitter, Stream, Writer};
use super::sys;

/// A client that cannot take output for this long is dropped, so one
/// stuck reader cannot stall the container's logging.
const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// Stop reading clients' stdin while this much waits for the process.
const MAX_PENDING: usize = 256 * 1024;

/// EOT: what "end of input" is on a terminal in canonical mode.
const VEOF: u8 = 4;

/// What the relay works with.
pub(crate) struct Io {
    /// Standard output, or the terminal's master side.
    pub out: OwnedFd,
    /// Standard error; `None` with a terminal (merged into `out`).
    pub err: Option<OwnedFd>,
    /// `out` is a terminal master.
    pub tty: bool,
    /// Where stdin goes: a pipe's write end, or a duplicate of the
    /// master; `None` without `stdin`.
    pub stdin: Option<OwnedFd>,
    pub stdin_once: bool,
    /// The attach socket; `None` if it could not be made.
    pub listener: Option<UnixListener>,
}

/// Where the log goes and what dies with the init.
pub(crate) struct Sink<'a> {
    pub log: Option<Writer>,
    pub cgroup: &'a Cgroup,
}

struct Source {
    fd: OwnedFd,
    stream: Stream,
    lines: LineSplitter,
    open: bool,
}

struct Client {
    sock: UnixStream,
    decoder: Decoder,
    stdin: bool,
    dead: bool,
}

/// The process's stdin as the relay feeds it.
struct Input {
    fd: OwnedFd,
    pending: Vec<u8>,
    /// Close once `pending` is written (stdinOnce).
    closing: bool,
    tty: bool,
}

enum Role {
    Source(usize),
    Init,
    Listener,
    Client(usize),
    Input,
}

/// Relays until every output stream has closed. In its own PID
/// namespace everything dies with the init; in a shared one the init's
/// leftovers (which may hold the pipes) are killed via the cgroup once
/// the init exits.
pub(crate) fn run(init: i32, io: Io, mut sink: Sink<'_>) {
    sys::ignore_sigpipe();
    let mut init_fd = sys::pidfd_open(init).ok();
    let master = io.tty.then(|| io.out.as_raw_fd());
    let mut sources = vec![Source {
        fd: io.out,
        stream: Stream::Stdout,
        lines: LineSplitter::default(),
        open: true,
    }];
    if let Some(e) = io.err {
        sources.push(Source {
            fd: e,
            stream: Stream::Stderr,
            lines: LineSplitter::default(),
            open: true,
        });
    }
    let mut input = io.stdin.and_then(|fd| {
        sys::set_nonblocking(fd.as_raw_fd()).ok()?;
        Some(Input {
            fd,
            pending: Vec::new(),
            closing: false,
            tty: io.tty,
        })
    });
    let once = io.stdin_once;
    let listener = io.listener;
    let mut clients: Vec<Client> = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    while sources.iter().any(|s| s.open) {
        let mut roles = Vec::new();
        let mut fds = Vec::new();
        let mut want = |fds: &mut Vec<libc::pollfd>, fd: RawFd, events: i16, role: Role| {
            fds.push(libc::pollfd {
                fd,
                events,
                revents: 0,
            });
            roles.push(role);
        };
        for (i, s) in sources.iter().enumerate().filter(|(_, s)| s.open) {
            want(&mut fds, s.fd.as_raw_fd(), libc::POLLIN, Role::Source(i));
        }
        if let Some(f) = &init_fd {
            want(&mut fds, f.as_raw_fd(), libc::POLLIN, Role::Init);
        }
        if let Some(l) = &listener {
            want(&mut fds, l.as_raw_fd(), libc::POLLIN, Role::Listener);
        }
        let backlog = input.as_ref().map_or(0, |i| i.pending.len());
        if backlog < MAX_PENDING {
            for (i, c) in clients.iter().enumerate() {
                want(&mut fds, c.sock.as_raw_fd(), libc::POLLIN, Role::Client(i));
            }
        }
        if let Some(i) = input.as_ref().filter(|i| !i.pending.is_empty()) {
            want(&mut fds, i.fd.as_raw_fd(), libc::POLLOUT, Role::Input);
        }
        if sys::poll(&mut fds, -1).is_err() {
            break;
        }
        for (p, role) in fds.iter().zip(roles) {
            if p.revents == 0 {
                continue;
            }
            match role {
                Role::Source(i) => {
                    let s = &mut sources[i];
                    let data = match sys::read(s.fd.as_raw_fd(), &mut buf) {
                        Ok(0) => None,
                        Ok(n) => Some(&buf[..n]),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                        // A terminal master reads EIO once the last slave
                        // closes: that is its end of file.
                        Err(_) => None,
                    };
                    let stream = s.stream;
                    let mut emit = |partial: bool, line: &[u8]| {
                        if let Some(w) = sink.log.as_mut() {
                            let line = line.strip_suffix(b"\r").unwrap_or(line);
                            let _ = w.record(stream, partial, line);
                        }
                    };
                    match data {
                        None => {
                            s.lines.finish(&mut emit);
                            s.open = false;
                        }
                        Some(data) => {
                            s.lines.push(data, &mut emit);
                            let frame = match stream {
                                Stream::Stdout => Message::Stdout(data.to_vec()),
                                Stream::Stderr => Message::Stderr(data.to_vec()),
                            }
                            .encode();
                            for c in clients.iter_mut().filter(|c| !c.dead) {
                                c.dead = c.sock.write_all(&frame).is_err();
                            }
                        }
                    }
                }
                Role::Init => {
                    sink.cgroup.kill_all();
                    init_fd = None;
                }
                Role::Listener => {
                    if let Some(l) = &listener {
                        accept_all(l, &mut clients);
                    }
                }
                Role::Client(i) => {
                    let c = &mut clients[i];
                    match c.sock.read(&mut buf) {
                        Ok(0) | Err(_) => c.dead = true,
                        Ok(n) => {
                            c.decoder.push(&buf[..n]);
                            handle_messages(c, &mut input, master, once);
                        }
                    }
                }
                Role::Input => {
                    if let Some(i) = &mut input {
                        if !flush(i) {
                            input = None;
                        }
                    }
                }
            }
        }
        // A stdin client leaving is what "stdinOnce" closes stdin on.
        if once && clients.iter().any(|c| c.dead && c.stdin) {
            close_input(&mut input);
        }
        clients.retain(|c| !c.dead);
        if input
            .as_ref()
            .is_some_and(|i| i.closing && i.pending.is_empty())
        {
            finish_input(input.take());
        }
    }
}

fn accept_all(l: &UnixListener, clients: &mut Vec<Client>) {
    while let Ok((sock, _)) = l.accept() {
        if sock.set_nonblocking(false).is_err()
            || sock.set_write_timeout(Some(CLIENT_WRITE_TIMEOUT)).is_err()
        {
            continue;
        }
        clients.push(Client {
            sock,
            decoder: Decoder::default(),
            stdin: false,
            dead: false,
        });
    }
}

fn handle_messages(c: &mut Client, input: &mut Option<Input>, master: Option<RawFd>, once: bool) {
    loop {
        let msg = match c.decoder.next_message() {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(_) => {
                c.dead = true;
                return;
            }
        };
        match msg {
            Message::Hello { stdin } => c.stdin = stdin,
            Message::Stdin(data) => {
                if let Some(i) = input.as_mut().filter(|i| !i.closing) {
                    i.pending.extend_from_slice(&data);
                }
            }
            Message::CloseStdin if once && c.stdin => close_input(input),
            // Without stdinOnce the process's stdin outlives every client.
            Message::CloseStdin => {}
            Message::Resize(size) => {
                if let Some(m) = master {
                    let _ = sys::set_window_size(m, size.height, size.width);
                }
            }
            Message::Stdout(_) | Message::Stderr(_) => {}
        }
    }
}

/// Writes what the process will take now; false once it closed its end.
fn flush(i: &mut Input) -> bool {
    while !i.pending.is_empty() {
        match sys::write(i.fd.as_raw_fd(), &i.pending) {
            Ok(n) => {
                i.pending.drain(..n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
    true
}

fn close_input(input: &mut Option<Input>) {
    if let Some(i) = input {
        i.closing = true;
    }
}

/// Ends the process's stdin: closing the pipe is its EOF; a terminal
/// stays open for output, so it gets the end-of-input character.
fn finish_input(input: Option<Input>) {
    if let Some(i) = input.filter(|i| i.tty) {
        let _ = sys::write(i.fd.as_raw_fd(), &[VEOF]);
    }
}
