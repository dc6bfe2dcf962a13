//! Pod sandboxes without a pause process: a short-lived child unshares
//! the network, IPC and UTS namespaces, sets the hostname and bind-mounts
//! its namespace files into the sandbox directory, which keeps them alive
//! for the containers to join (as `ip netns add` pins a netns).
//!
//! Upstream counterpart: containerd CRI's `sandbox_run.go` (which pins
//! the netns the same way and still runs a pause container; with no
//! shared PID namespace rkube does not need one).

use std::fs;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::SystemTime;

use super::config::{render_hosts, render_resolv, HostEntry, NetworkMode, SandboxConfig};
use super::state::{check_id, read_json, write_json, Paths, SandboxRecord};
use super::sys::{self, cpath, Fork};
use super::{io_err, Error, SandboxStatus};

/// (file name, CLONE_NEW* flag) of the namespaces a sandbox owns.
pub(crate) fn namespaces(config: &SandboxConfig) -> Vec<(&'static str, libc::c_int)> {
    let mut ns = vec![("ipc", libc::CLONE_NEWIPC), ("uts", libc::CLONE_NEWUTS)];
    if config.network == NetworkMode::Pod {
        ns.push(("net", libc::CLONE_NEWNET));
    }
    if config.share_pid {
        ns.push(("pid", libc::CLONE_NEWPID));
    }
    ns
}

pub(crate) fn create(paths: &Paths, config: &SandboxConfig) -> Result<String, Error> {
    let hostname = if config.hostname.is_empty() {
        &config.name
    } else {
        &config.hostname
    };
    if hostname.is_empty() || hostname.len() > 64 {
        return Err(Error::InvalidConfig(format!(
            "hostname {hostname:?} must be 1-64 bytes"
        )));
    }
    let id = sys::random_id();
    let dir = paths.sandbox(&id);
    let result = (|| {
        fs::create_dir_all(dir.join("ns")).map_err(io_err("create", &dir))?;
        let write = |name: &str, data: &str| {
            fs::write(dir.join(name), data).map_err(io_err("write", dir.join(name)))
        };
        write("hostname", &format!("{hostname}\n"))?;
        write("hosts", &render_hosts(&config.hosts))?;
        match &config.dns {
            Some(dns) => write("resolv.conf", &render_resolv(dns))?,
            None => write(
                "resolv.conf",
                &fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            )?,
        }
        let ns = namespaces(config);
        for (name, _) in &ns {
            fs::File::create(dir.join("ns").join(name))
                .map_err(io_err("create", dir.join("ns").join(name)))?;
        }
        let pause =
            pin_namespaces(&dir, hostname, &ns).map_err(|message| Error::SandboxFailed {
                name: config.name.clone(),
                message,
            })?;
        let record = SandboxRecord {
            id: id.clone(),
            config: config.clone(),
            created_at: SystemTime::now(),
            pause: pause.map(|pid| (pid, sys::start_time(pid).unwrap_or(0))),
        };
        write_json(&dir.join("sandbox.json"), &record)
    })();
    if let Err(e) = result {
        let _ = remove(paths, &id);
        return Err(e);
    }
    Ok(id)
}

/// Pins the namespaces; with a shared PID namespace also starts its init
/// (a reaper that outlives us) and returns its pid.
fn pin_namespaces(
    dir: &Path,
    hostname: &str,
    ns: &[(&'static str, libc::c_int)],
) -> Result<Option<i32>, String> {
    let flags = ns.iter().fold(0, |f, (_, flag)| f | flag);
    let targets: Vec<_> = ns
        .iter()
        .map(|(name, _)| {
            // unshare(CLONE_NEWPID) only moves our future children.
            let own = if *name == "pid" {
                "pid_for_children"
            } else {
                name
            };
            Ok((
                cpath(Path::new(&format!("/proc/self/ns/{own}")))?,
                cpath(&dir.join("ns").join(name))?,
            ))
        })
        .collect::<std::io::Result<_>>()
        .map_err(|e| e.to_string())?;
    let (r, w) = sys::pipe().map_err(|e| format!("pipe: {e}"))?;
    match sys::fork().map_err(|e| format!("fork: {e}"))? {
        Fork::Child => {
            let result = (|| {
                sys::unshare(flags).map_err(|e| format!("unshare: {e}"))?;
                sys::sethostname(hostname).map_err(|e| format!("sethostname: {e}"))?;
                // A new PID namespace exists (and can be pinned) only
                // once its init is forked.
                let mut init = 0;
                if flags & libc::CLONE_NEWPID != 0 {
                    match sys::fork().map_err(|e| format!("fork pid namespace init: {e}"))? {
                        Fork::Child => reaper(),
                        Fork::Parent(pid) => init = pid,
                    }
                }
                for (src, target) in &targets {
                    if let Err(e) = sys::mount(Some(src), target, None, libc::MS_BIND, None) {
                        if init > 0 {
                            let _ = sys::kill(init, libc::SIGKILL);
                        }
                        return Err(format!("pin {target:?}: {e}"));
                    }
                }
                Ok::<i32, String>(init)
            })();
            match result {
                Ok(pid) => {
                    // A tag byte first: a bare PID's low byte can be 'E'.
                    let mut out = vec![b'O'];
                    out.extend_from_slice(&pid.to_ne_bytes());
                    let _ = sys::write_all(w.as_raw_fd(), &out);
                    sys::exit_now(0)
                }
                Err(msg) => {
                    let _ = sys::write_all(w.as_raw_fd(), format!("E{msg}").as_bytes());
                    sys::exit_now(1)
                }
            }
        }
        Fork::Parent(pid) => {
            drop(w);
            let msg = sys::read_to_end(r.as_raw_fd()).unwrap_or_default();
            let status = sys::waitpid(pid).map_err(|e| format!("wait: {e}"))?;
            if msg.first() != Some(&b'O') || msg.len() != 5 || sys::exit_code(status) != 0 {
                return Err(String::from_utf8_lossy(msg.get(1..).unwrap_or(&[])).into_owned());
            }
            let pid = i32::from_ne_bytes([msg[1], msg[2], msg[3], msg[4]]);
            Ok((pid > 0).then_some(pid))
        }
    }
}

/// PID 1 of a shared PID namespace (what the pause container does for
/// containerd): keeps the namespace usable and reaps orphans. Never
/// returns; killed by `remove`.
fn reaper() -> ! {
    sys::setsid();
    sys::close_fds_except(&[]);
    let _ = sys::chdir(c"/");
    // SAFETY: signal-mask calls on an initialised set; a blocked SIGCHLD
    // stays pending for sigwaitinfo even though its default is "ignore".
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        loop {
            libc::sigwaitinfo(&set, std::ptr::null_mut());
            while libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) > 0 {}
        }
    }
}

/// Unpins the namespaces (containers still inside keep theirs) and
/// deletes the directory. Removing a missing sandbox is not an error.
pub(crate) fn remove(paths: &Paths, id: &str) -> Result<(), Error> {
    check_id("sandbox", id)?;
    let dir = paths.sandbox(id);
    if let Ok(Some(r)) = read_json::<SandboxRecord>(&dir.join("sandbox.json")) {
        if let Some((pid, start)) = r.pause {
            if super::state::alive(pid, start) {
                let _ = sys::kill(pid, libc::SIGKILL);
            }
        }
    }
    for name in ["ipc", "uts", "net", "pid"] {
        let p = dir.join("ns").join(name);
        if let Ok(c) = cpath(&p) {
            let _ = sys::umount_detach(&c);
        }
    }
    super::state::discard(paths, &dir)
}

pub(crate) fn load(paths: &Paths, id: &str) -> Result<SandboxRecord, Error> {
    check_id("sandbox", id)?;
    read_json(&paths.sandbox(id).join("sandbox.json"))?.ok_or_else(|| Error::NotFound {
        kind: "sandbox",
        id: id.to_string(),
    })
}

/// Rewrites the sandbox's /etc/hosts, in place: containers bind-mount
/// the file, and a rename would leave them the old inode. The record
/// keeps the entries so an adopted sandbox reports them.
pub(crate) fn set_hosts(paths: &Paths, id: &str, hosts: &[HostEntry]) -> Result<(), Error> {
    let mut record = load(paths, id)?;
    let dir = paths.sandbox(id);
    let file = dir.join("hosts");
    fs::write(&file, render_hosts(hosts)).map_err(io_err("write", &file))?;
    record.config.hosts = hosts.to_vec();
    write_json(&dir.join("sandbox.json"), &record)
}

pub(crate) fn status(paths: &Paths, id: &str) -> Result<SandboxStatus, Error> {
    let r = load(paths, id)?;
    Ok(SandboxStatus {
        netns: (r.config.network == NetworkMode::Pod).then(|| paths.sandbox(id).join("ns/net")),
        id: r.id,
        config: r.config,
        created_at: r.created_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn set_hosts_rewrites_the_file_in_place() {
        let t = tempfile::tempdir().unwrap();
        let paths = Paths {
            root: t.path().to_path_buf(),
        };
        let dir = paths.sandbox("sb1");
        fs::create_dir_all(&dir).unwrap();
        let record = SandboxRecord {
            id: "sb1".into(),
            config: SandboxConfig {
                name: "web".into(),
                ..Default::default()
            },
            created_at: SystemTime::now(),
            pause: None,
        };
        write_json(&dir.join("sandbox.json"), &record).unwrap();
        fs::write(dir.join("hosts"), render_hosts(&[])).unwrap();
        let inode = fs::metadata(dir.join("hosts")).unwrap().ino();
        let entry = HostEntry {
            ip: "10.42.0.7".into(),
            names: vec!["web.sub.default.svc.cluster.local".into(), "web".into()],
        };
        set_hosts(&paths, "sb1", std::slice::from_ref(&entry)).unwrap();
        let hosts = fs::read_to_string(dir.join("hosts")).unwrap();
        assert!(
            hosts.starts_with("# Kubernetes-managed hosts file.\n"),
            "{hosts}"
        );
        assert!(
            hosts.ends_with("10.42.0.7\tweb.sub.default.svc.cluster.local\tweb\n"),
            "{hosts}"
        );
        // Same inode: containers bind-mount this file.
        assert_eq!(fs::metadata(dir.join("hosts")).unwrap().ino(), inode);
        assert_eq!(load(&paths, "sb1").unwrap().config.hosts, vec![entry]);
        assert!(set_hosts(&paths, "missing", &[]).is_err());
    }
}
