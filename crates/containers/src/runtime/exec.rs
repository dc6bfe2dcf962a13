//! Running another process in a running container: join its cgroup and
//! namespaces (mount last), fork into its PID namespace, take the
//! container's user and capabilities, exec; optionally on a new terminal
//! whose window size follows the client's.
//!
//! Upstream counterpart: runc's `exec` / `setns` path (nsexec) as the CRI
//! `ExecSync` and `Exec` calls use it.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::mpsc::Receiver;
use std::thread;

use super::attach::WindowSize;
use super::init::{self, Process};
use super::sys::{self, Fork};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecConfig {
    pub cmd: Vec<String>,
    /// Added to the container's environment.
    pub env: Vec<(String, String)>,
    pub tty: bool,
}

/// Where the process's stdio goes. With a TTY, stdout carries the
/// terminal's output and stderr is unused.
pub struct ExecIo {
    /// `None`: /dev/null.
    pub stdin: Option<OwnedFd>,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// Namespaces of a running container, joined in this order.
const NAMESPACES: &[(&str, libc::c_int)] = &[
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
    ("net", libc::CLONE_NEWNET),
    ("pid", libc::CLONE_NEWPID),
    ("mnt", libc::CLONE_NEWNS),
];

/// Runs `process` inside the container whose init is `pid`; returns its
/// exit code, or the setup/exec error.
pub(crate) fn run(
    pid: i32,
    cgroup_procs: &[std::path::PathBuf],
    process: &Process,
    io: ExecIo,
    sizes: Receiver<WindowSize>,
) -> Result<i32, String> {
    let null = File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| format!("open /dev/null: {e}"))?;
    let ns: Vec<(File, libc::c_int)> = NAMESPACES
        .iter()
        .map(|(name, kind)| {
            File::open(format!("/proc/{pid}/ns/{name}"))
                .map(|f| (f, *kind))
                .map_err(|e| format!("open {name} namespace: {e}"))
        })
        .collect::<Result<_, _>>()?;
    let pty = if process.tty {
        let ptmx = std::path::PathBuf::from(format!("/proc/{pid}/root/dev/ptmx"));
        Some(
            sys::openpty_at(&ptmx)
                .or_else(|_| sys::openpty())
                .map_err(|e| format!("openpty: {e}"))?,
        )
    } else {
        None
    };
    if let Some((master, _)) = &pty {
        // Sizes sent before the terminal existed apply before the process
        // starts; later ones as they come, until the client is gone.
        let apply = |fd: RawFd, s: WindowSize| {
            let _ = sys::set_window_size(fd, s.height, s.width);
        };
        while let Ok(s) = sizes.try_recv() {
            apply(master.as_raw_fd(), s);
        }
        if let Ok(m) = master.try_clone() {
            thread::spawn(move || {
                while let Ok(s) = sizes.recv() {
                    apply(m.as_raw_fd(), s);
                }
            });
        }
    }
    let stdin: RawFd = io
        .stdin
        .as_ref()
        .map_or(null.as_raw_fd(), |f| f.as_raw_fd());
    let stdio: [RawFd; 3] = match &pty {
        Some((_, slave)) => [slave.as_raw_fd(); 3],
        None => [stdin, io.stdout.as_raw_fd(), io.stderr.as_raw_fd()],
    };
    let (err_r, err_w) = sys::pipe().map_err(|e| format!("pipe: {e}"))?;
    let child = match sys::fork().map_err(|e| format!("fork: {e}"))? {
        Fork::Child => {
            let fail = |msg: String| -> ! {
                let _ = sys::write_all(err_w.as_raw_fd(), msg.as_bytes());
                sys::exit_now(126)
            };
            let mut keep = vec![err_w.as_raw_fd()];
            keep.extend(stdio);
            keep.extend(ns.iter().map(|(f, _)| f.as_raw_fd()));
            sys::close_fds_except(&keep);
            if let Err(e) = init::join_cgroup(cgroup_procs) {
                fail(e);
            }
            for (f, kind) in &ns {
                if let Err(e) = sys::setns(f.as_raw_fd(), *kind) {
                    fail(format!("join namespace: {e}"));
                }
            }
            match sys::fork() {
                Ok(Fork::Child) => {
                    for (i, fd) in stdio.iter().enumerate() {
                        if let Err(e) = sys::dup2(*fd, i as RawFd) {
                            fail(format!("stdio: {e}"));
                        }
                    }
                    init::reset_signals();
                    fail(init::become_process(process))
                }
                Ok(Fork::Parent(p)) => {
                    // Closing our copies lets the caller see EOF.
                    sys::close_fds_except(&[]);
                    let status = sys::waitpid(p).unwrap_or(255 << 8);
                    sys::exit_now(sys::exit_code(status))
                }
                Err(e) => fail(format!("fork: {e}")),
            }
        }
        Fork::Parent(p) => p,
    };
    drop(err_w);
    drop(ns);
    let copier = pty.map(|(master, slave)| {
        drop(slave);
        let stdout = io.stdout;
        let input = io.stdin;
        let master_in = master.try_clone().ok();
        // stdin -> terminal; left detached: it may block on a quiet stdin.
        if let (Some(input), Some(m)) = (input, master_in) {
            thread::spawn(move || copy(input.as_raw_fd(), m.as_raw_fd()));
        }
        thread::spawn(move || copy(master.as_raw_fd(), stdout.as_raw_fd()))
    });
    let msg = sys::read_to_end(err_r.as_raw_fd()).unwrap_or_default();
    let status = sys::waitpid(child).map_err(|e| format!("wait: {e}"))?;
    if let Some(c) = copier {
        let _ = c.join();
    }
    if !msg.is_empty() {
        return Err(String::from_utf8_lossy(&msg).into_owned());
    }
    Ok(sys::exit_code(status))
}

/// Copies until EOF or an error (a pty master reads EIO at hang-up).
fn copy(from: RawFd, to: RawFd) {
    let mut buf = [0u8; 8192];
    while let Ok(n) = sys::read(from, &mut buf) {
        if n == 0 || sys::write_all(to, &buf[..n]).is_err() {
            break;
        }
    }
}
