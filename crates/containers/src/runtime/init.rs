//! The container's init process, between fork and exec: join the cgroup,
//! build the mount namespace (overlay root, /proc, /dev, /sys, the pod's
//! /etc files, bind mounts, masked paths), pivot_root, drop privileges
//! and exec. The mount steps are computed before the fork ([`plan`]) so
//! the child only executes a list.
//!
//! Upstream counterpart: runc's `libcontainer/rootfs_linux.go` and
//! `init_linux.go`, with the default mounts and masked paths containerd's
//! CRI plugin puts in the OCI spec.

use std::ffi::CString;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use super::state::ContainerRecord;
use super::sys::{self, cpath, cstr};
use super::Error;

const NOSUID: libc::c_ulong = libc::MS_NOSUID;
const NODEV: libc::c_ulong = libc::MS_NODEV;
const NOEXEC: libc::c_ulong = libc::MS_NOEXEC;

pub(crate) enum Step {
    Mount {
        src: Option<CString>,
        target: CString,
        fstype: Option<CString>,
        flags: libc::c_ulong,
        data: Option<CString>,
        /// Skip when the target does not exist (masked paths).
        optional: bool,
    },
    Mkdir(PathBuf),
    MkFile(PathBuf),
    Symlink(&'static str, PathBuf),
    Mknod(CString, u32, u32),
}

/// Credentials and the program: what both the init and exec'd processes
/// apply last.
pub(crate) struct Process {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub caps: u64,
    pub no_new_privs: bool,
    pub cwd: CString,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    pub path_dirs: Vec<String>,
    pub tty: bool,
}

pub(crate) struct Plan {
    pub steps: Vec<Step>,
    pub rootfs: CString,
    pub read_only: bool,
    pub cgroup_procs: Vec<PathBuf>,
    pub process: Process,
}

fn mount(
    src: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<Step, Error> {
    let c = |s: &str| cstr(s).map_err(|e| Error::InvalidConfig(format!("{s:?}: {e}")));
    Ok(Step::Mount {
        src: src.map(c).transpose()?,
        target: cpath(target)
            .map_err(|e| Error::InvalidConfig(format!("{}: {e}", target.display())))?,
        fstype: fstype.map(c).transpose()?,
        flags,
        data: data.map(c).transpose()?,
        optional: false,
    })
}

fn optional(step: Step) -> Step {
    match step {
        Step::Mount {
            src,
            target,
            fstype,
            flags,
            data,
            ..
        } => Step::Mount {
            src,
            target,
            fstype,
            flags,
            data,
            optional: true,
        },
        other => other,
    }
}

/// A path inside the rootfs. `..` components are refused at config time
/// (see `local.rs`); symlinks inside the image are not resolved in a
/// chroot-safe way yet.
fn inside(rootfs: &Path, p: &str) -> PathBuf {
    rootfs.join(p.trim_start_matches('/'))
}

pub(crate) fn process(
    rec: &ContainerRecord,
    argv: &[String],
    extra_env: &[String],
    tty: bool,
) -> Result<Process, Error> {
    let c = |s: &String| cstr(s).map_err(|e| Error::InvalidConfig(format!("{s:?}: {e}")));
    let mut env = rec.resolved.env.clone();
    for e in extra_env {
        let key = e.split('=').next().unwrap_or("");
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/bin")
        .to_string();
    Ok(Process {
        uid: rec.resolved.uid,
        gid: rec.resolved.gid,
        groups: rec.resolved.groups.clone(),
        caps: rec.resolved.caps,
        no_new_privs: rec.config.no_new_privs && !rec.config.privileged,
        cwd: c(&rec.resolved.cwd)?,
        argv: argv.iter().map(c).collect::<Result<_, _>>()?,
        envp: env.iter().map(c).collect::<Result<_, _>>()?,
        path_dirs: path.split(':').map(str::to_string).collect(),
        tty,
    })
}

/// The init's plan for a container in `sandbox_dir`, rooted at `dir`.
pub(crate) fn plan(
    rec: &ContainerRecord,
    dir: &Path,
    sandbox_dir: &Path,
    cgroup_procs: Vec<PathBuf>,
) -> Result<Plan, Error> {
    let rootfs = dir.join("rootfs");
    let lower: Vec<String> = rec
        .resolved
        .layers
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        dir.join("upper").display(),
        dir.join("work").display()
    );
    let privileged = rec.config.privileged;
    let mut s = vec![mount(
        Some("overlay"),
        &rootfs,
        Some("overlay"),
        0,
        Some(&data),
    )?];
    let at = |p: &str| inside(&rootfs, p);
    s.push(Step::Mkdir(at("proc")));
    s.push(mount(
        Some("proc"),
        &at("proc"),
        Some("proc"),
        NOSUID | NODEV | NOEXEC,
        None,
    )?);
    s.push(Step::Mkdir(at("sys")));
    let ro = if privileged { 0 } else { libc::MS_RDONLY };
    s.push(mount(
        Some("sysfs"),
        &at("sys"),
        Some("sysfs"),
        NOSUID | NODEV | NOEXEC | ro,
        None,
    )?);
    s.push(Step::Mkdir(at("dev")));
    if privileged {
        s.push(mount(
            Some("/dev"),
            &at("dev"),
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        )?);
    } else {
        s.push(mount(
            Some("tmpfs"),
            &at("dev"),
            Some("tmpfs"),
            NOSUID | libc::MS_STRICTATIME,
            Some("mode=755,size=65536k"),
        )?);
        for (name, major, minor) in [
            ("null", 1, 3),
            ("zero", 1, 5),
            ("full", 1, 7),
            ("random", 1, 8),
            ("urandom", 1, 9),
            ("tty", 5, 0),
        ] {
            s.push(Step::Mknod(
                cpath(&at(&format!("dev/{name}")))
                    .map_err(|e| Error::InvalidConfig(e.to_string()))?,
                major,
                minor,
            ));
        }
        s.push(Step::Mkdir(at("dev/pts")));
        s.push(mount(
            Some("devpts"),
            &at("dev/pts"),
            Some("devpts"),
            NOSUID | NOEXEC,
            Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
        )?);
        s.push(Step::Symlink("pts/ptmx", at("dev/ptmx")));
        s.push(Step::Mkdir(at("dev/shm")));
        s.push(mount(
            Some("shm"),
            &at("dev/shm"),
            Some("tmpfs"),
            NOSUID | NODEV | NOEXEC,
            Some("mode=1777,size=65536k"),
        )?);
        for (link, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            s.push(Step::Symlink(target, at(&format!("dev/{link}"))));
        }
    }
    s.push(Step::Mkdir(at("etc")));
    for f in ["hosts", "hostname", "resolv.conf"] {
        let target = at(&format!("etc/{f}"));
        s.push(Step::MkFile(target.clone()));
        s.push(mount(
            Some(&sandbox_dir.join(f).display().to_string()),
            &target,
            None,
            libc::MS_BIND,
            None,
        )?);
    }
    for m in &rec.config.mounts {
        let target = at(&m.container_path);
        s.push(if m.host_path.is_dir() {
            Step::Mkdir(target.clone())
        } else {
            Step::MkFile(target.clone())
        });
        let src = m.host_path.display().to_string();
        s.push(mount(
            Some(&src),
            &target,
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        )?);
        if m.read_only {
            s.push(mount(
                None,
                &target,
                None,
                libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY,
                None,
            )?);
        }
        let prop = match m.propagation {
            super::Propagation::Private => libc::MS_PRIVATE | libc::MS_REC,
            super::Propagation::HostToContainer => libc::MS_SLAVE | libc::MS_REC,
            super::Propagation::Bidirectional => libc::MS_SHARED | libc::MS_REC,
        };
        s.push(mount(None, &target, None, prop, None)?);
    }
    if !privileged {
        // containerd's default masked and read-only /proc paths.
        for p in [
            "proc/kcore",
            "proc/keys",
            "proc/timer_list",
            "proc/sched_debug",
        ] {
            s.push(optional(mount(
                Some("/dev/null"),
                &at(p),
                None,
                libc::MS_BIND,
                None,
            )?));
        }
        for p in [
            "proc/bus",
            "proc/fs",
            "proc/irq",
            "proc/sys",
            "proc/sysrq-trigger",
        ] {
            s.push(optional(mount(
                Some(&at(p).display().to_string()),
                &at(p),
                None,
                libc::MS_BIND | libc::MS_REC,
                None,
            )?));
            s.push(optional(mount(
                None,
                &at(p),
                None,
                libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY,
                None,
            )?));
        }
    }
    s.push(Step::Mkdir(at(&rec.resolved.cwd)));
    Ok(Plan {
        steps: s,
        rootfs: cpath(&rootfs).map_err(|e| Error::InvalidConfig(e.to_string()))?,
        read_only: rec.config.read_only_rootfs,
        cgroup_procs,
        process: process(rec, &rec.resolved.argv, &[], rec.config.tty)?,
    })
}

/// `rel` under `root`, following symlinks as if `root` were `/`, so an
/// image's symlink (say `/etc -> /root`) cannot send a mount point or a
/// created file outside the container's root. Nothing in the container
/// runs yet, so the image's own files cannot race this.
pub(crate) fn secure_join(root: &Path, rel: &Path) -> Result<PathBuf, String> {
    use std::collections::VecDeque;
    use std::path::Component;
    let parts = |p: &Path| -> VecDeque<std::ffi::OsString> {
        p.components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_os_string()),
                Component::ParentDir => Some("..".into()),
                _ => None,
            })
            .collect()
    };
    let mut out = PathBuf::new();
    let mut pending = parts(rel);
    let mut hops = 0;
    while let Some(c) = pending.pop_front() {
        if c == ".." {
            out.pop();
            continue;
        }
        let candidate = out.join(&c);
        let full = root.join(&candidate);
        match std::fs::read_link(&full) {
            Ok(_) if hops >= 40 => {
                return Err(format!(
                    "{}: too many levels of symbolic links",
                    rel.display()
                ));
            }
            Ok(target) => {
                hops += 1;
                if target.is_absolute() {
                    out = PathBuf::new();
                }
                let mut next = parts(&target);
                next.extend(pending.drain(..));
                pending = next;
            }
            _ => out = candidate,
        }
    }
    Ok(root.join(out))
}

/// Paths under the container root are resolved with [`secure_join`].
fn confine(rootfs: &Path, p: &Path) -> Result<PathBuf, String> {
    match p.strip_prefix(rootfs) {
        Ok(rel) if !rel.as_os_str().is_empty() => secure_join(rootfs, rel),
        _ => Ok(p.to_path_buf()),
    }
}

fn confine_c(rootfs: &Path, p: &std::ffi::CStr) -> Result<CString, String> {
    use std::os::unix::ffi::OsStrExt;
    let path = Path::new(std::ffi::OsStr::from_bytes(p.to_bytes()));
    cpath(&confine(rootfs, path)?).map_err(|e| e.to_string())
}

fn run_step(step: &Step, rootfs: &Path) -> Result<(), String> {
    let owned;
    let step = match step {
        Step::Mount {
            src,
            target,
            fstype,
            flags,
            data,
            optional,
        } => {
            let src = match src {
                // Only bind sources inside the root (the /proc
                // read-only binds) are confined; host sources are ours.
                Some(s) if *flags & libc::MS_BIND != 0 => Some(confine_c(rootfs, s)?),
                other => other.clone(),
            };
            owned = Step::Mount {
                src,
                target: confine_c(rootfs, target)?,
                fstype: fstype.clone(),
                flags: *flags,
                data: data.clone(),
                optional: *optional,
            };
            &owned
        }
        Step::Mkdir(p) => {
            owned = Step::Mkdir(confine(rootfs, p)?);
            &owned
        }
        Step::MkFile(p) => {
            owned = Step::MkFile(confine(rootfs, p)?);
            &owned
        }
        other => other,
    };
    match step {
        Step::Mount {
            src,
            target,
            fstype,
            flags,
            data,
            optional,
        } => {
            match sys::mount(
                src.as_deref(),
                target,
                fstype.as_deref(),
                *flags,
                data.as_deref(),
            ) {
                Err(e) if *optional && e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
                r => r.map_err(|e| {
                    format!(
                        "mount {:?} on {:?}: {e}",
                        src.as_deref().unwrap_or(c"none"),
                        target
                    )
                }),
            }
        }
        Step::Mkdir(p) => {
            std::fs::create_dir_all(p).map_err(|e| format!("mkdir {}: {e}", p.display()))
        }
        Step::MkFile(p) => {
            if p.exists() {
                return Ok(());
            }
            // A file mount (a subPath of a file) may land in a directory
            // the image lacks, as runc creates it.
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
            }
            std::fs::File::create(p)
                .map(drop)
                .map_err(|e| format!("create {}: {e}", p.display()))
        }
        Step::Symlink(target, link) => match std::os::unix::fs::symlink(target, link) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                Err(format!("symlink {}: {e}", link.display()))
            }
            _ => Ok(()),
        },
        Step::Mknod(path, major, minor) => {
            sys::mknod(path, libc::S_IFCHR | 0o666, *major, *minor)
                .map_err(|e| format!("mknod {path:?}: {e}"))?;
            // mknod applied the umask; device nodes must be 0666.
            // SAFETY: NUL-terminated path.
            unsafe { libc::chmod(path.as_ptr(), 0o666) };
            Ok(())
        }
    }
}

/// Default signal dispositions and an empty mask, so the container does
/// not inherit e.g. Rust's ignored SIGPIPE.
pub(crate) fn reset_signals() {
    for sig in 1..32 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // SAFETY: setting the default disposition is always valid.
            unsafe { libc::signal(sig, libc::SIG_DFL) };
        }
    }
    // SAFETY: an empty, initialised sigset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

pub(crate) fn join_cgroup(procs: &[PathBuf]) -> Result<(), String> {
    for p in procs {
        std::fs::write(p, "0").map_err(|e| format!("join cgroup {}: {e}", p.display()))?;
    }
    Ok(())
}

/// Session, terminal, capabilities, ids, cwd, exec. Only returns an error.
pub(crate) fn become_process(p: &Process) -> String {
    sys::setsid();
    if p.tty {
        if let Err(e) = sys::set_controlling_tty(0) {
            return format!("set controlling terminal: {e}");
        }
    }
    // Privileged asks for everything; it gets what we hold (a runtime
    // may itself run without some capabilities).
    let caps = p.caps & sys::capget_permitted().unwrap_or(u64::MAX);
    for cap in 0..64u32 {
        if caps & (1 << cap) == 0 {
            // EINVAL past the kernel's last capability is expected.
            let _ = sys::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong);
        }
    }
    if let Err(e) = sys::prctl(libc::PR_SET_KEEPCAPS, 1) {
        return format!("keep capabilities: {e}");
    }
    if let Err(e) = sys::set_ids(p.uid, p.gid, &p.groups) {
        return format!("set uid {} gid {}: {e}", p.uid, p.gid);
    }
    if let Err(e) = sys::capset(caps) {
        return format!("set capabilities: {e}");
    }
    if p.no_new_privs {
        if let Err(e) = sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1) {
            return format!("no_new_privs: {e}");
        }
    }
    if let Err(e) = sys::chdir(&p.cwd) {
        return format!("chdir {:?}: {e}", p.cwd);
    }
    let Some(arg0) = p.argv.first() else {
        return "no command".into();
    };
    let name = arg0.to_string_lossy();
    if name.contains('/') {
        return format!("exec {name}: {}", sys::execve(arg0, &p.argv, &p.envp));
    }
    for dir in &p.path_dirs {
        let Ok(full) = cstr(&format!("{dir}/{name}")) else {
            continue;
        };
        // SAFETY: NUL-terminated path.
        if unsafe { libc::access(full.as_ptr(), libc::X_OK) } == 0 {
            return format!("exec {name}: {}", sys::execve(&full, &p.argv, &p.envp));
        }
    }
    format!("exec {name}: executable file not found in $PATH")
}

/// Runs in the forked init; never returns. Errors go to `err_fd` (closed
/// on a successful exec) and exit 127.
pub(crate) fn run(plan: &Plan, stdio: [RawFd; 3], tty: Option<RawFd>, err_fd: RawFd) -> ! {
    let fail = |msg: String| -> ! {
        let _ = sys::write_all(err_fd, msg.as_bytes());
        sys::exit_now(127)
    };
    for (i, fd) in stdio.iter().enumerate() {
        if let Err(e) = sys::dup2(*fd, i as RawFd) {
            fail(format!("stdio: {e}"));
        }
    }
    reset_signals();
    if let Err(e) = join_cgroup(&plan.cgroup_procs) {
        fail(e);
    }
    if let Err(e) = sys::unshare(libc::CLONE_NEWNS) {
        fail(format!("unshare mount namespace: {e}"));
    }
    // Host mounts must not see ours, ours may see later host mounts.
    if let Err(e) = sys::mount(None, c"/", None, libc::MS_SLAVE | libc::MS_REC, None) {
        fail(format!("make / rslave: {e}"));
    }
    let rootfs = {
        use std::os::unix::ffi::OsStrExt;
        PathBuf::from(std::ffi::OsStr::from_bytes(plan.rootfs.to_bytes()))
    };
    for step in &plan.steps {
        if let Err(e) = run_step(step, &rootfs) {
            fail(e);
        }
    }
    if let Some(sock) = tty {
        // A terminal of the container's own devpts, so its name resolves
        // inside; the shim gets the master side.
        let ptmx = rootfs.join("dev/ptmx");
        let (master, slave) = match sys::openpty_at(&ptmx) {
            Ok(pair) => pair,
            Err(e) => fail(format!("open terminal {}: {e}", ptmx.display())),
        };
        if let Err(e) = sys::send_fd(sock, master.as_raw_fd()) {
            fail(format!("hand over terminal: {e}"));
        }
        for fd in 0..3 {
            if let Err(e) = sys::dup2(slave.as_raw_fd(), fd) {
                fail(format!("terminal stdio: {e}"));
            }
        }
    }
    if let Err(e) = sys::chdir(&plan.rootfs).and_then(|_| sys::pivot_root_here()) {
        fail(format!("pivot_root: {e}"));
    }
    if plan.read_only {
        let flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY;
        if let Err(e) = sys::mount(None, c"/", None, flags, None) {
            fail(format!("read-only rootfs: {e}"));
        }
    }
    fail(become_process(&plan.process))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_join_keeps_symlinks_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("real/dir")).unwrap();
        std::os::unix::fs::symlink("/real", r.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../..", r.join("up")).unwrap();
        std::os::unix::fs::symlink("/etc", r.join("etc")).unwrap();
        std::os::unix::fs::symlink("loop", r.join("loop")).unwrap();
        let j = |p: &str| secure_join(r, Path::new(p));
        assert_eq!(j("abs/dir/x").unwrap(), r.join("real/dir/x"));
        assert_eq!(j("../../x").unwrap(), r.join("x"));
        assert_eq!(j("real/../abs/dir").unwrap(), r.join("real/dir"));
        // `etc` is itself once re-rooted, `up` climbs to the root and
        // stops there: neither may resolve through to the host.
        assert!(j("etc/hosts").unwrap_err().contains("symbolic links"));
        assert!(j("up/etc/hosts").is_err());
        assert!(j("loop/a").is_err());
        std::fs::create_dir(r.join("real/etc")).unwrap();
        std::os::unix::fs::symlink("../../real", r.join("real/dir/back")).unwrap();
        assert_eq!(j("real/dir/back/etc").unwrap(), r.join("real/etc"));
    }
}
