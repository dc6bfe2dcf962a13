//! `LocalRuntime`: the [`Runtime`] implementation over namespaces,
//! cgroupfs and overlayfs on this node.
//!
//! Upstream counterpart: containerd's CRI runtime service with runc.
//!
//! Why not youki's libcontainer (DESIGN.md's first candidate): it would
//! still need a shim of our own for logs, exit codes and surviving the
//! agent (its init is a child of the caller), its exec and TTY paths go
//! through an OCI bundle on disk, and its create+start measured ~7 ms
//! here. Direct system calls (`sys`, `init`, `shim`, `exec`, `sandbox`:
//! about 1,600 lines with tests) keep every step visible and measured
//! below that (docs/PERF.md).

use std::fs;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::image::{ImageService, RunConfig};

use super::cgroup::{Cgroup, Layout};
use super::config::{
    merge_env, parse_signal, resolve_argv, ContainerConfig, HostEntry, SandboxConfig,
};
use super::exec::{self, ExecConfig, ExecIo};
use super::shim::{self, Shim};
use super::state::{
    write_json, ContainerRecord, ExitRecord, Paths, ProcessRecord, Resolved, Snapshot,
};
use super::{attach, caps, init, io_err, sandbox, sys, user};
use super::{ContainerState, ContainerStatus, Error, Runtime, SandboxStatus, Stats, WindowSize};

/// Where images come from: overlay lowerdirs (top first) and the image
/// config. [`ImageService`] is the real one.
pub trait ImageSource: Send + Sync {
    fn resolve(&self, image: &str) -> Result<(Vec<PathBuf>, RunConfig), String>;
}

impl ImageSource for ImageService {
    fn resolve(&self, image: &str) -> Result<(Vec<PathBuf>, RunConfig), String> {
        let img = self.get(image).map_err(|e| e.to_string())?;
        let config = self.config(&img).map_err(|e| e.to_string())?;
        Ok((self.rootfs_layers(&img), config))
    }
}

#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// State root, e.g. `/var/lib/rkube/agent/containers`.
    pub root: PathBuf,
    /// Mount point of the cgroup hierarchies (`/sys/fs/cgroup`).
    pub cgroup_root: PathBuf,
    /// Parent cgroup of all containers, relative to each hierarchy.
    pub cgroup_parent: PathBuf,
}

impl RuntimeOptions {
    pub fn new(root: &Path) -> RuntimeOptions {
        RuntimeOptions {
            root: root.to_path_buf(),
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            cgroup_parent: PathBuf::from("rkube"),
        }
    }
}

pub struct LocalRuntime {
    paths: Paths,
    images: Arc<dyn ImageSource>,
    layout: Layout,
    cgroup_parent: PathBuf,
}

fn relative_clean(p: &str) -> bool {
    !Path::new(p).components().any(|c| c == Component::ParentDir)
}

impl LocalRuntime {
    pub fn new(
        options: RuntimeOptions,
        images: Arc<dyn ImageSource>,
    ) -> Result<LocalRuntime, Error> {
        let paths = Paths {
            root: options.root.clone(),
        };
        for d in [paths.sandboxes(), paths.containers(), paths.trash()] {
            fs::create_dir_all(&d).map_err(io_err("create", &d))?;
        }
        // Leftovers of a process that died before its delete finished;
        // young entries are still being deleted by their own process.
        let stale = |e: &fs::DirEntry| {
            e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(60))
        };
        if fs::read_dir(paths.trash()).is_ok_and(|d| d.flatten().any(|e| stale(&e))) {
            super::state::empty_trash(&paths);
        }
        Ok(LocalRuntime {
            paths,
            images,
            layout: Layout::detect(&options.cgroup_root),
            cgroup_parent: options.cgroup_parent,
        })
    }

    /// A container's cgroup: below its pod's cgroup when the kubelet
    /// gave the sandbox one (that parent is the kubelet's to remove),
    /// else below the runtime's own parent.
    fn cgroup(&self, id: &str, parent: Option<&Path>) -> Cgroup {
        match parent {
            Some(p) => Cgroup::new(self.layout.clone(), p, id).keep_parents(),
            None => Cgroup::new(self.layout.clone(), &self.cgroup_parent, id),
        }
    }

    fn cgroup_of(&self, rec: &ContainerRecord) -> Cgroup {
        self.cgroup(&rec.id, rec.resolved.cgroup_parent.as_deref())
    }

    fn resolve(
        &self,
        sandbox: &SandboxConfig,
        config: &ContainerConfig,
    ) -> Result<Resolved, Error> {
        let image_err = |message: String| Error::Image {
            image: config.image.clone(),
            message,
        };
        let (layers, image) = self.images.resolve(&config.image).map_err(image_err)?;
        if layers.is_empty() {
            return Err(image_err("has no layers".into()));
        }
        let argv = resolve_argv(&image, &config.command, &config.args);
        if argv.is_empty() {
            return Err(Error::InvalidConfig(
                "no command: the image has no ENTRYPOINT or CMD and none was given".into(),
            ));
        }
        let hostname = if sandbox.hostname.is_empty() {
            &sandbox.name
        } else {
            &sandbox.hostname
        };
        let cwd = config
            .working_dir
            .clone()
            .or(image.working_dir.clone())
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| "/".into());
        if !cwd.starts_with('/') || !relative_clean(&cwd) {
            return Err(Error::InvalidConfig(format!(
                "working directory {cwd:?} must be absolute without .."
            )));
        }
        for m in &config.mounts {
            if !m.container_path.starts_with('/') || !relative_clean(&m.container_path) {
                return Err(Error::InvalidConfig(format!(
                    "mount path {:?} must be absolute without ..",
                    m.container_path
                )));
            }
            if !m.host_path.exists() {
                return Err(Error::InvalidConfig(format!(
                    "mount source {} does not exist",
                    m.host_path.display()
                )));
            }
        }
        // The image's passwd and group: the topmost layer that has them.
        let find = |name: &str| {
            layers
                .iter()
                .find_map(|l| fs::read_to_string(l.join(name)).ok())
                .unwrap_or_default()
        };
        let spec = config
            .user
            .user
            .clone()
            .or(image.user.clone())
            .unwrap_or_default();
        let ids = user::resolve(
            &spec,
            config.user.group,
            &config.user.supplemental_groups,
            &find("etc/passwd"),
            &find("etc/group"),
        )?;
        let mut env = merge_env(&image, &config.env, hostname);
        if !env.iter().any(|e| e.starts_with("HOME=")) {
            env.push(format!("HOME={}", ids.home));
        }
        Ok(Resolved {
            argv,
            env,
            cwd,
            uid: ids.uid,
            gid: ids.gid,
            groups: ids.groups,
            caps: caps::resolve(&config.capabilities, config.privileged)?,
            layers,
            log_path: PathBuf::new(),
            cgroup_parent: None,
            stop_signal: match image.stop_signal.as_deref().filter(|s| !s.is_empty()) {
                None => libc::SIGTERM,
                Some(s) => parse_signal(s).ok_or_else(|| {
                    Error::InvalidConfig(format!("image STOPSIGNAL {s:?} is not a signal"))
                })?,
            },
        })
    }

    fn start_inner(&self, id: &str, snap: &Snapshot) -> Result<(), Error> {
        let rec = &snap.record;
        let dir = self.paths.container(id);
        let sandbox = sandbox::load(&self.paths, &rec.sandbox)?;
        let sandbox_dir = self.paths.sandbox(&rec.sandbox);
        let cgroup = self.cgroup_of(rec);
        let plan = init::plan(rec, &dir, &sandbox_dir, cgroup.procs_files())?;
        let mut namespaces: Vec<(PathBuf, libc::c_int)> = sandbox::namespaces(&sandbox.config)
            .into_iter()
            .map(|(name, kind)| (sandbox_dir.join("ns").join(name), kind))
            .collect();
        if let Some(target) = &rec.config.pid_target {
            // Seen through the target's init while it runs: its processes
            // are what a debug container is there to look at.
            let st = self.status(target)?;
            let pid = st.pid.filter(|_| st.state == ContainerState::Running);
            let Some(pid) = pid else {
                return Err(Error::InvalidConfig(format!(
                    "target container {target} is not running"
                )));
            };
            namespaces.retain(|(_, kind)| *kind != libc::CLONE_NEWPID);
            namespaces.push((
                PathBuf::from(format!("/proc/{pid}/ns/pid")),
                libc::CLONE_NEWPID,
            ));
        }
        let shim = Shim {
            plan,
            namespaces,
            log_path: rec.resolved.log_path.clone(),
            log_max_size: rec.config.log_max_size,
            log_max_files: if rec.config.log_max_files == 0 {
                5
            } else {
                rec.config.log_max_files
            },
            exit_file: dir.join("exit.json"),
            cgroup,
            attach_socket: dir.join(attach::SOCKET),
            stdin: rec.config.stdin,
            stdin_once: rec.config.stdin_once,
        };
        // Taken before the fork: a short-lived container can otherwise
        // finish "before" it started.
        let started_at = SystemTime::now();
        let started = shim::spawn(&shim);
        let (shim_pid, pid, failure) = match started {
            Ok((s, p)) => (s, p, None),
            Err((s, message)) => (s, 0, Some(message)),
        };
        let process = ProcessRecord {
            shim_pid,
            shim_start: sys::start_time(shim_pid).unwrap_or(0),
            pid,
            pid_start: sys::start_time(pid).unwrap_or(0),
            started_at,
        };
        write_json(&dir.join("process.json"), &process)?;
        if let Some(message) = failure {
            // The shim may still be recording the init's exit: wait for
            // it so that our record, written last, is the one that stays.
            let _ = self.wait(id, Some(Duration::from_secs(10)));
            let exit = ExitRecord {
                exit_code: 128,
                oom_killed: false,
                finished_at: SystemTime::now(),
                reason: format!("StartError: {message}"),
            };
            write_json(&dir.join("exit.json"), &exit)?;
            return Err(Error::StartFailed {
                id: id.to_string(),
                message,
            });
        }
        Ok(())
    }

    fn signal(&self, snap: &Snapshot, sig: libc::c_int) {
        if let Some(p) = &snap.process {
            if super::state::alive(p.pid, p.pid_start) {
                let _ = sys::kill(p.pid, sig);
            }
        }
    }
}

impl Runtime for LocalRuntime {
    fn create_sandbox(&self, config: &SandboxConfig) -> Result<String, Error> {
        sandbox::create(&self.paths, config)
    }

    fn remove_sandbox(&self, id: &str) -> Result<(), Error> {
        sandbox::remove(&self.paths, id)
    }

    fn sandbox_status(&self, id: &str) -> Result<SandboxStatus, Error> {
        sandbox::status(&self.paths, id)
    }

    fn set_sandbox_hosts(&self, id: &str, hosts: &[HostEntry]) -> Result<(), Error> {
        sandbox::set_hosts(&self.paths, id, hosts)
    }

    fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
    ) -> Result<String, Error> {
        let sandbox = sandbox::load(&self.paths, sandbox_id)?;
        let mut resolved = self.resolve(&sandbox.config, config)?;
        let id = sys::random_id();
        resolved.cgroup_parent = sandbox.config.cgroup_parent.clone();
        let cgroup = self.cgroup(&id, resolved.cgroup_parent.as_deref());
        let dir = self.paths.container(&id);
        resolved.log_path = config
            .log_path
            .clone()
            .unwrap_or_else(|| dir.join("container.log"));
        let result = (|| {
            for d in ["upper", "work", "rootfs"] {
                fs::create_dir_all(dir.join(d)).map_err(io_err("create", dir.join(d)))?;
            }
            cgroup.create(&config.resources)?;
            let record = ContainerRecord {
                id: id.clone(),
                sandbox: sandbox_id.to_string(),
                config: config.clone(),
                resolved,
                created_at: SystemTime::now(),
            };
            write_json(&dir.join("container.json"), &record)
        })();
        if let Err(e) = result {
            let _ = cgroup.remove();
            let _ = fs::remove_dir_all(&dir);
            return Err(e);
        }
        Ok(id)
    }

    fn start(&self, id: &str) -> Result<(), Error> {
        let snap = Snapshot::load(&self.paths, id)?;
        let state = snap.state();
        if state != ContainerState::Created {
            return Err(Error::WrongState {
                id: id.into(),
                state,
                wanted: "cannot start",
            });
        }
        self.start_inner(id, &snap)
    }

    fn stop(&self, id: &str, grace: Duration) -> Result<(), Error> {
        let snap = Snapshot::load(&self.paths, id)?;
        if snap.state() != ContainerState::Running {
            return Ok(());
        }
        self.signal(&snap, snap.record.resolved.stop_signal);
        if self.wait(id, Some(grace))?.state == ContainerState::Running {
            self.signal(&Snapshot::load(&self.paths, id)?, libc::SIGKILL);
            let st = self.wait(id, Some(Duration::from_secs(30)))?;
            if st.state == ContainerState::Running {
                return Err(Error::WrongState {
                    id: id.into(),
                    state: st.state,
                    wanted: "did not die after SIGKILL",
                });
            }
        }
        Ok(())
    }

    fn remove(&self, id: &str) -> Result<(), Error> {
        let snap = Snapshot::load(&self.paths, id)?;
        if snap.state() == ContainerState::Running {
            self.stop(id, Duration::ZERO)?;
        }
        self.cgroup_of(&snap.record).remove()?;
        super::state::discard(&self.paths, &self.paths.container(id))
    }

    fn status(&self, id: &str) -> Result<ContainerStatus, Error> {
        Ok(Snapshot::load(&self.paths, id)?.status())
    }

    fn wait(&self, id: &str, timeout: Option<Duration>) -> Result<ContainerStatus, Error> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let snap = Snapshot::load(&self.paths, id)?;
            let status = snap.status();
            let Some(p) = snap
                .process
                .as_ref()
                .filter(|_| status.state == ContainerState::Running)
            else {
                return Ok(status);
            };
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if remaining == Some(Duration::ZERO) {
                return Ok(status);
            }
            // The shim exits right after recording the exit, so its pidfd
            // is the notification; opened, then re-checked against reuse.
            let timeout_ms =
                remaining.map_or(-1, |r| r.as_millis().clamp(1, i32::MAX as u128) as i32);
            match sys::pidfd_open(p.shim_pid) {
                Ok(fd) if super::state::alive(p.shim_pid, p.shim_start) => {
                    use std::os::fd::AsRawFd;
                    sys::poll_read(&[fd.as_raw_fd()], timeout_ms).map_err(|source| Error::Sys {
                        op: "poll pidfd",
                        source,
                    })?;
                }
                // Shim gone (or a zombie): the files now tell the story,
                // unless the init outlived it; then fall back to polling.
                _ => std::thread::sleep(Duration::from_millis(timeout_ms.clamp(1, 20) as u64)),
            }
        }
    }

    fn exec(&self, id: &str, config: &ExecConfig, io: ExecIo) -> Result<i32, Error> {
        // No sizes will come: the sender is gone at once.
        let (_, sizes) = std::sync::mpsc::channel();
        self.exec_resizable(id, config, io, sizes)
    }

    fn exec_resizable(
        &self,
        id: &str,
        config: &ExecConfig,
        io: ExecIo,
        sizes: std::sync::mpsc::Receiver<WindowSize>,
    ) -> Result<i32, Error> {
        let snap = Snapshot::load(&self.paths, id)?;
        let status = snap.status();
        let Some(pid) = status
            .pid
            .filter(|_| status.state == ContainerState::Running)
        else {
            return Err(Error::WrongState {
                id: id.into(),
                state: status.state,
                wanted: "cannot exec",
            });
        };
        if config.cmd.is_empty() {
            return Err(Error::InvalidConfig("exec needs a command".into()));
        }
        let env: Vec<String> = config.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let process = init::process(&snap.record, &config.cmd, &env, config.tty)?;
        exec::run(
            pid,
            &self.cgroup_of(&snap.record).procs_files(),
            &process,
            io,
            sizes,
        )
        .map_err(|message| Error::ExecFailed {
            id: id.into(),
            message,
        })
    }

    fn attach(&self, id: &str) -> Result<std::os::unix::net::UnixStream, Error> {
        let snap = Snapshot::load(&self.paths, id)?;
        let state = snap.state();
        if state != ContainerState::Running {
            return Err(Error::WrongState {
                id: id.into(),
                state,
                wanted: "cannot attach",
            });
        }
        let path = self.paths.container(id).join(attach::SOCKET);
        attach::connect(&path).map_err(io_err("connect", path))
    }

    fn stats(&self, id: &str) -> Result<Stats, Error> {
        let snap = Snapshot::load(&self.paths, id)?;
        let (cpu_usage_ns, memory_usage, memory_working_set) = self.cgroup_of(&snap.record).usage();
        Ok(Stats {
            cpu_usage_ns,
            memory_working_set,
            memory_usage,
        })
    }

    fn list(&self) -> Result<Vec<ContainerStatus>, Error> {
        let dir = self.paths.containers();
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err("read", &dir))? {
            let entry = entry.map_err(io_err("read", &dir))?;
            let id = entry.file_name().to_string_lossy().into_owned();
            // A container being created or removed right now is skipped.
            if let Ok(snap) = Snapshot::load(&self.paths, &id) {
                out.push(snap.status());
            }
        }
        out.sort_by_key(|s| s.created_at);
        Ok(out)
    }

    fn writable_layer(&self, id: &str) -> Option<PathBuf> {
        Some(self.paths.container(id).join("upper"))
    }

    fn recover(&self) -> Result<Vec<ContainerStatus>, Error> {
        let list = self.list()?;
        for s in &list {
            if s.state == ContainerState::Exited && s.reason.as_deref() == Some("Unknown") {
                // Died while nobody watched: record it so it stays settled.
                let exit = ExitRecord {
                    exit_code: 255,
                    oom_killed: false,
                    finished_at: SystemTime::now(),
                    reason: "Unknown".into(),
                };
                write_json(&self.paths.container(&s.id).join("exit.json"), &exit)?;
            }
        }
        self.list()
    }
}
