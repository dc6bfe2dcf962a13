//! The per-container shim: a double-forked copy of the caller that owns
//! the container's init. It joins the sandbox's namespaces, unshares the
//! PID namespace, forks the init, copies its output into the CRI log, and
//! records the exit (code, OOM kill, time) in `exit.json`.
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

use super::cgroup::Cgroup;
use super::init::{self, Plan};
use super::logs::{LineSplitter, Stream, Writer};
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
    // The init reports setup errors here, so they cannot interleave with
    // the pid this process writes to `ack`.
    let (init_err_r, init_err_w) = sys::pipe().unwrap_or_else(|e| fail(format!("pipe: {e}")));
    let mut keep: Vec<RawFd> = vec![
        ack.as_raw_fd(),
        null.as_raw_fd(),
        init_err_r.as_raw_fd(),
        init_err_w.as_raw_fd(),
    ];
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
    let stdio = match &pipes {
        Some((o, e)) => [null.as_raw_fd(), o.1.as_raw_fd(), e.1.as_raw_fd()],
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
    let (out_r, err_r) = match (pipes, master) {
        (Some((o, e)), _) => (Some(o.0), Some(e.0)),
        (None, Some(m)) => (m, None),
        (None, None) => (None, None),
    };
    if let Some(out_r) = &out_r {
        copy_logs(shim, pid, out_r, err_r.as_ref());
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

/// Copies output into the CRI log until every writer has closed it. In
/// its own PID namespace everything dies with the init; in a shared one
/// the init's leftovers (which may hold the pipes) are killed via the
/// cgroup once the init exits.
fn copy_logs(shim: &Shim, init: i32, out: &OwnedFd, err: Option<&OwnedFd>) {
    let mut init_fd = sys::pidfd_open(init).ok();
    let mut writer = Writer::open(&shim.log_path, shim.log_max_size, shim.log_max_files).ok();
    let mut streams: Vec<(RawFd, Stream, LineSplitter, bool)> = vec![(
        out.as_raw_fd(),
        Stream::Stdout,
        LineSplitter::default(),
        true,
    )];
    if let Some(e) = err {
        streams.push((e.as_raw_fd(), Stream::Stderr, LineSplitter::default(), true));
    }
    let mut buf = vec![0u8; 32 * 1024];
    while streams.iter().any(|s| s.3) {
        let mut open: Vec<RawFd> = streams.iter().filter(|s| s.3).map(|s| s.0).collect();
        open.extend(init_fd.as_ref().map(|f| f.as_raw_fd()));
        let Ok(revents) = sys::poll_read(&open, -1) else {
            break;
        };
        if let Some(f) = &init_fd {
            if revents.last().is_some_and(|r| *r != 0) && open.last() == Some(&f.as_raw_fd()) {
                shim.cgroup.kill_all();
                init_fd = None;
            }
        }
        for (fd, rev) in open.iter().zip(revents) {
            if rev == 0 {
                continue;
            }
            let Some(s) = streams.iter_mut().find(|s| s.0 == *fd) else {
                continue;
            };
            // A pty master reports EIO once the last slave closes.
            let n = sys::read(*fd, &mut buf).unwrap_or(0);
            let stream = s.1;
            let mut emit = |partial: bool, line: &[u8]| {
                if let Some(w) = writer.as_mut() {
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    let _ = w.record(stream, partial, line);
                }
            };
            if n == 0 {
                s.2.finish(&mut emit);
                s.3 = false;
            } else {
                s.2.push(&buf[..n], &mut emit);
            }
        }
    }
}
