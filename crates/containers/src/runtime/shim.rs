//! The per-container shim: a double-forked copy of the caller that owns
//! the container's init. It joins the sandbox's namespaces, unshares the
//! PID namespace, forks the init, relays its stdio (output into the CRI
//! log and to attached clients, their input to its stdin: `relay.rs`),
//! and records the exit (code, OOM kill, time) in `exit.json`.
//!
//! Upstream counterpart: containerd-shim-runc-v2 and CRI-O's conmon.
//! Forking instead of re-executing a shim binary keeps `start` to three
//! forks; the shim is detached (own session, stdio on /dev/null, no
//! inherited fds), so it outlives the agent and never holds a caller's
//! pipe open.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::SystemTime;

use super::attach;
use super::cgroup::Cgroup;
use super::init::{self, Plan};
use super::logs::Writer;
use super::relay;
use super::state::{write_json, ExitRecord};
use super::sys::{self, Fork};

pub(crate) struct Shim {
    pub plan: Plan,
    /// Namespace files to join, with their CLONE_NEW* type.
    pub namespaces: Vec<(PathBuf, libc::c_int)>,
    pub log_path: PathBuf,
    pub log_max_size: u64,
    pub log_max_files: u32,
    pub exit_file: PathBuf,
    pub cgroup: Cgroup,
    /// Where attach clients connect (`attach.sock`).
    pub attach_socket: PathBuf,
    /// Keep the process's stdin open for attach clients.
    pub stdin: bool,
    /// Close it once the first stdin client has left.
    pub stdin_once: bool,
}

/// Forks the shim (via a short-lived intermediate) and returns
/// (shim pid, init pid) once the init has exec'd, or the setup error with
/// the shim's pid (0 if there is none) so the caller can wait for it.
pub(crate) fn spawn(shim: &Shim) -> Result<(i32, i32), (i32, String)> {
    let (r, w) = sys::pipe().map_err(|e| (0, format!("pipe: {e}")))?;
    match sys::fork().map_err(|e| (0, format!("fork: {e}")))? {
        Fork::Child => {
            drop(r);
            match sys::fork() {
                Ok(Fork::Child) => run(shim, w),
                // The shim reports its own pid first: if this process
                // wrote it, it could land after the shim's next word.
                Ok(Fork::Parent(_)) => sys::exit_now(0),
                Err(e) => {
                    let _ =
                        sys::write_all(w.as_raw_fd(), format!("\0\0\0\0fork shim: {e}").as_bytes());
                    sys::exit_now(1)
                }
            }
        }
        Fork::Parent(mid) => {
            drop(w);
            let out =
                sys::read_to_end(r.as_raw_fd()).map_err(|e| (0, format!("read start pipe: {e}")));
            let _ = sys::waitpid(mid);
            let out = out?;
            let word = |i: usize| {
                out.get(i * 4..i * 4 + 4)
                    .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            };
            let shim_pid = word(0).filter(|p| *p > 0);
            let pid = word(1).filter(|p| *p > 0);
            let tail = String::from_utf8_lossy(out.get(8..).unwrap_or(&[])).into_owned();
            match (shim_pid, pid) {
                (Some(s), Some(p)) if tail.is_empty() => Ok((s, p)),
                (Some(s), Some(_)) => Err((s, tail)),
                _ => Err((
                    shim_pid.unwrap_or(0),
                    String::from_utf8_lossy(out.get(4..).unwrap_or(&[]))
                        .trim_start_matches('\0')
                        .to_string(),
                )),
            }
        }
    }
}

fn open_devnull() -> Result<OwnedFd, String> {
    File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map(OwnedFd::from)
        .map_err(|e| format!("open /dev/null: {e}"))
}

/// The shim's body; never returns.
fn run(shim: &Shim, ack: OwnedFd) -> ! {
    let fail = |msg: String| -> ! {
        let _ = sys::write_all(ack.as_raw_fd(), format!("\0\0\0\0{msg}").as_bytes());
        sys::exit_now(1)
    };
    let me = std::process::id() as i32;
    let _ = sys::write_all(ack.as_raw_fd(), &me.to_ne_bytes());
    sys::setsid();
    let null = open_devnull().unwrap_or_else(|e| fail(e));
    let mut ns_files = Vec::new();
    for (path, kind) in &shim.namespaces {
        let f = File::open(path).unwrap_or_else(|e| fail(format!("open {}: {e}", path.display())));
        ns_files.push((f, *kind));
    }
    // Output: one pipe per stream, or for a TTY a terminal the init
    // opens in its own devpts and hands back over `tty`.
    let (pipes, tty) = if shim.plan.process.tty {
        let pair = sys::socketpair().unwrap_or_else(|e| fail(format!("socketpair: {e}")));
        (None, Some(pair))
    } else {
        let o = sys::pipe().unwrap_or_else(|e| fail(format!("pipe: {e}")));
        let e = sys::pipe().unwrap_or_else(|e| fail(format!("pipe: {e}")));
        (Some((o, e)), None)
    };
    // Stdin without a terminal: a pipe whose write end the relay feeds.
    let stdin_pipe = (shim.stdin && tty.is_none())
        .then(|| sys::pipe().unwrap_or_else(|e| fail(format!("pipe: {e}"))));
    // Made before any namespace is joined; attach works without it.
    let listener = attach::listen(&shim.attach_socket).ok();
    // The init reports setup errors here, so they cannot interleave with
    // the pid this process writes to `ack`.
    let (init_err_r, init_err_w) = sys::pipe().unwrap_or_else(|e| fail(format!("pipe: {e}")));
    let mut keep: Vec<RawFd> = vec![
        ack.as_raw_fd(),
        null.as_raw_fd(),
        init_err_r.as_raw_fd(),
        init_err_w.as_raw_fd(),
    ];
    if let Some((r, w)) = &stdin_pipe {
        keep.extend([r.as_raw_fd(), w.as_raw_fd()]);
    }
    keep.extend(listener.as_ref().map(|l| l.as_raw_fd()));
    if let Some((o, e)) = &pipes {
        keep.extend([&o.0, &o.1, &e.0, &e.1].map(|f| f.as_raw_fd()));
    }
    if let Some((a, b)) = &tty {
        keep.extend([a.as_raw_fd(), b.as_raw_fd()]);
    }
    keep.extend(ns_files.iter().map(|(f, _)| f.as_raw_fd()));
    sys::close_fds_except(&keep);
    for fd in 0..3 {
        let _ = sys::dup2(null.as_raw_fd(), fd);
    }
    for (f, kind) in &ns_files {
        if let Err(e) = sys::setns(f.as_raw_fd(), *kind) {
            fail(format!("join sandbox namespace: {e}"));
        }
    }
    // A shared PID namespace was joined above (setns with CLONE_NEWPID
    // applies to our children); otherwise the container gets its own.
    let shared_pid = ns_files.iter().any(|(_, k)| *k == libc::CLONE_NEWPID);
    drop(ns_files);
    if !shared_pid {
        if let Err(e) = sys::unshare(libc::CLONE_NEWPID) {
            fail(format!("unshare pid namespace: {e}"));
        }
    }
    let stdin_fd = stdin_pipe
        .as_ref()
        .map_or(null.as_raw_fd(), |(r, _)| r.as_raw_fd());
    let stdio = match &pipes {
        Some((o, e)) => [stdin_fd, o.1.as_raw_fd(), e.1.as_raw_fd()],
        None => [null.as_raw_fd(); 3],
    };
    let tty_init = tty.as_ref().map(|(_, b)| b.as_raw_fd());
    let pid = match sys::fork() {
        Ok(Fork::Child) => init::run(&shim.plan, stdio, tty_init, init_err_w.as_raw_fd()),
        Ok(Fork::Parent(pid)) => pid,
        Err(e) => fail(format!("fork init: {e}")),
    };
    let _ = sys::write_all(ack.as_raw_fd(), &pid.to_ne_bytes());
    drop(init_err_w);
    // The terminal arrives before the init execs (or never, if it fails).
    let master = tty.map(|(ours, theirs)| {
        drop(theirs);
        sys::recv_fd(ours.as_raw_fd()).ok()
    });
    // EOF here means the init exec'd (close-on-exec) or died.
    let init_err = sys::read_to_end(init_err_r.as_raw_fd()).unwrap_or_default();
    let _ = sys::write_all(ack.as_raw_fd(), &init_err);
    drop(init_err_r);
    drop(ack);
    // Only the init reads stdin: the pipe's EOF must follow our write end.
    let stdin_w = stdin_pipe.map(|(_, w)| w);
    let (out_r, err_r) = match (pipes, master) {
        (Some((o, e)), _) => (Some(o.0), Some(e.0)),
        (None, Some(m)) => (m, None),
        (None, None) => (None, None),
    };
    if let Some(out) = out_r {
        let tty = err_r.is_none();
        let stdin = match stdin_w {
            Some(w) => Some(w),
            None if tty && shim.stdin => out.try_clone().ok(),
            None => None,
        };
        let io = relay::Io {
            out,
            err: err_r,
            tty,
            stdin,
            stdin_once: shim.stdin_once,
            listener,
        };
        let sink = relay::Sink {
            log: Writer::open(&shim.log_path, shim.log_max_size, shim.log_max_files).ok(),
            cgroup: &shim.cgroup,
        };
        relay::run(pid, io, sink);
    }
    let status = sys::waitpid(pid).unwrap_or(255 << 8);
    let exit_code = sys::exit_code(status);
    let oom_killed = shim.cgroup.oom_killed()
        && libc::WIFSIGNALED(status)
        && libc::WTERMSIG(status) == libc::SIGKILL;
    let reason = if oom_killed {
        "OOMKilled"
    } else if exit_code == 0 {
        "Completed"
    } else {
        "Error"
    };
    let record = ExitRecord {
        exit_code,
        oom_killed,
        finished_at: SystemTime::now(),
        reason: reason.into(),
    };
    let _ = write_json(&shim.exit_file, &record);
    sys::exit_now(0)
}
