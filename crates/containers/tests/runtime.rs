//! Behaviour tests of the process runtime, as root, with real namespaces,
//! cgroups and overlayfs, on images built by `image::build` from Debian's
//! busybox-static, pushed to a real registry (Debian's docker-registry on
//! loopback) and pulled by the image service.

mod support;

use std::fs;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rkube_containers::image::build::{ImageBuilder, LayerBuilder};
use rkube_containers::image::client::Client;
use rkube_containers::image::{ImageService, RegistriesConfig, RunConfig};
use rkube_containers::runtime::logs::{self, Stream};
use rkube_containers::runtime::{
    ContainerConfig, ContainerState, ExecConfig, ExecIo, LocalRuntime, Mount, NetworkMode,
    Resources, Runtime, RuntimeOptions, SandboxConfig, UserSpec,
};
use support::registry::Registry;

struct Fixture {
    rt: LocalRuntime,
    images: Arc<ImageService>,
    image: String,
    options: RuntimeOptions,
    _registry: Registry,
    root: tempfile::TempDir,
}

fn http_mirror(addr: &str) -> RegistriesConfig {
    RegistriesConfig::parse(&format!(
        "mirrors:\n  \"{addr}\":\n    endpoint: [\"http://{addr}\"]\n"
    ))
    .unwrap()
}

/// busybox plus a layer with a user `app` (1000:1000, also in group
/// `staff` 50) and a file in /data.
fn test_image() -> ImageBuilder {
    let users = LayerBuilder::new()
        .dir("etc", 0o755)
        .file(
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n",
            0o644,
        )
        .file("etc/group", "root:x:0:\napp:x:1000:\nstaff:x:50:app\n", 0o644)
        .dir("data", 0o755)
        .file("data/hello", "from the image\n", 0o644);
    ImageBuilder::new()
        .layer(LayerBuilder::busybox(Path::new("/bin/busybox")).unwrap())
        .layer(users)
        .config(RunConfig {
            entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
            cmd: Some(vec!["echo image-cmd".into()]),
            env: Some(vec!["PATH=/bin".into(), "FROM_IMAGE=yes".into()]),
            working_dir: Some("/data".into()),
            ..Default::default()
        })
}

impl Fixture {
    fn new() -> Fixture {
        let registry = Registry::start();
        let root = tempfile::tempdir().unwrap();
        let image = format!("{}/test/rt:1", registry.addr);
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let images = Arc::new(
            ImageService::open(&root.path().join("images"), http_mirror(&registry.addr)).unwrap(),
        );
        tokio.block_on(async {
            let built = test_image().build().unwrap();
            built
                .push(&Client::new(http_mirror(&registry.addr)), &image)
                .await
                .unwrap();
            images.pull(&image, None).await.unwrap();
        });
        let mut options = RuntimeOptions::new(&root.path().join("containers"));
        // Unique per test so parallel tests never share a parent cgroup.
        let name = root
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        options.cgroup_parent = PathBuf::from(format!("rkube-test/{name}"));
        let rt = LocalRuntime::new(options.clone(), images.clone()).unwrap();
        Fixture {
            rt,
            images,
            image,
            options,
            _registry: registry,
            root,
        }
    }

    fn sandbox(&self) -> String {
        self.rt
            .create_sandbox(&SandboxConfig {
                name: "pod".into(),
                namespace: "default".into(),
                uid: "uid-1".into(),
                hostname: "testpod".into(),
                ..Default::default()
            })
            .unwrap()
    }

    fn config(&self, cmd: &[&str]) -> ContainerConfig {
        ContainerConfig {
            name: "c".into(),
            image: self.image.clone(),
            command: cmd.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    /// Creates, starts and waits (up to 30 s) for a container.
    fn run(
        &self,
        config: &ContainerConfig,
    ) -> (String, rkube_containers::runtime::ContainerStatus) {
        let sb = self.sandbox();
        let id = self.rt.create_container(&sb, config).unwrap();
        self.rt.start(&id).unwrap();
        let st = self.rt.wait(&id, Some(Duration::from_secs(30))).unwrap();
        assert_eq!(st.state, ContainerState::Exited, "container did not finish");
        (id, st)
    }

    /// The F-joined stdout lines of a container's log.
    fn stdout(&self, id: &str) -> Vec<String> {
        let st = self.rt.status(id).unwrap();
        log_lines(&st.log_path, Stream::Stdout)
    }
}

fn log_lines(path: &Path, stream: Stream) -> Vec<String> {
    records(&fs::read_to_string(path).unwrap_or_default(), stream)
}

/// Joins P records up to their F record, for one stream.
fn records(text: &str, stream: Stream) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let r = logs::parse(line).unwrap_or_else(|| panic!("bad CRI log line {line:?}"));
        if r.stream != stream {
            continue;
        }
        cur.push_str(r.content);
        if !r.partial {
            out.push(std::mem::take(&mut cur));
        }
    }
    out
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Ok(list) = self.rt.list() {
            for c in list {
                let _ = self.rt.remove(&c.id);
            }
        }
        if let Ok(dir) = fs::read_dir(self.root.path().join("containers/sandboxes")) {
            for e in dir.flatten() {
                let _ = self.rt.remove_sandbox(&e.file_name().to_string_lossy());
            }
        }
        // The per-test parent cgroups, and rkube-test if now empty.
        for c in ["cpu", "cpuacct", "memory", "pids"] {
            let base = self.options.cgroup_root.join(c);
            let _ = fs::remove_dir(base.join(&self.options.cgroup_parent));
            let _ = fs::remove_dir(base.join("rkube-test"));
        }
    }
}

#[test]
fn env_args_workdir_and_user() {
    let f = Fixture::new();
    let mut c = f.config(&[]);
    c.args = vec![
        "echo \"$FOO $FROM_IMAGE $HOSTNAME\"; pwd; id -u; id -g; id -G; hostname; cat hello".into(),
    ];
    c.env = vec![("FOO".into(), "bar".into())];
    c.user = UserSpec {
        user: Some("app".into()),
        group: None,
        supplemental_groups: vec![7],
    };
    let (id, st) = f.run(&c);
    assert_eq!(
        st.exit_code,
        Some(0),
        "{:?}",
        fs::read_to_string(&st.log_path)
    );
    assert_eq!(
        f.stdout(&id),
        [
            "bar yes testpod",
            "/data",
            "1000",
            "1000",
            "1000 7 50",
            "testpod",
            "from the image"
        ]
    );

    // Image ENTRYPOINT + CMD when nothing is given; workingDir created.
    let mut c = f.config(&[]);
    c.working_dir = Some("/new/dir".into());
    c.user.user = Some("4242:50".into());
    c.args = vec!["echo $0; pwd; id -u; id -g".into(), "zero".into()];
    let (id, _) = f.run(&c);
    assert_eq!(f.stdout(&id), ["zero", "/new/dir", "4242", "50"]);
    let (id, _) = f.run(&f.config(&[]));
    assert_eq!(f.stdout(&id), ["image-cmd"]);
    // A TTY container: one stream, a terminal of its own devpts.
    let mut c = f.config(&["sh", "-c", "tty; echo on-tty >&2"]);
    c.tty = true;
    let (id, st) = f.run(&c);
    assert_eq!(st.exit_code, Some(0));
    assert_eq!(f.stdout(&id), ["/dev/pts/0", "on-tty"]);
    // The container has its own PID namespace and /proc.
    let (id, _) = f.run(&f.config(&["sh", "-c", "echo $$; cat /proc/1/cmdline | tr '\\0' ' '"]));
    assert_eq!(
        f.stdout(&id),
        ["1", "sh -c echo $$; cat /proc/1/cmdline | tr '\\0' ' ' "]
    );
}

#[test]
fn exit_codes_and_start_errors() {
    let f = Fixture::new();
    let (_, st) = f.run(&f.config(&["true"]));
    assert_eq!(
        (st.exit_code, st.reason.as_deref()),
        (Some(0), Some("Completed"))
    );
    let (_, st) = f.run(&f.config(&["sh", "-c", "exit 3"]));
    assert_eq!(
        (st.exit_code, st.reason.as_deref(), st.oom_killed),
        (Some(3), Some("Error"), false)
    );
    assert!(st.finished_at.unwrap() >= st.started_at.unwrap());

    let sb = f.sandbox();
    let id =
        f.rt.create_container(&sb, &f.config(&["/no/such/binary"]))
            .unwrap();
    let err = f.rt.start(&id).unwrap_err().to_string();
    assert!(err.contains("/no/such/binary"), "{err}");
    let st = f.rt.status(&id).unwrap();
    assert_eq!(st.state, ContainerState::Exited);
    assert!(st.reason.unwrap().starts_with("StartError"));
    let id =
        f.rt.create_container(&sb, &f.config(&["nosuchcmd"]))
            .unwrap();
    assert!(f
        .rt
        .start(&id)
        .unwrap_err()
        .to_string()
        .contains("not found in $PATH"));

    // Bad input is refused at create time with a clear error.
    let mut bad = f.config(&["true"]);
    bad.user.user = Some("nosuchuser".into());
    assert!(f
        .rt
        .create_container(&sb, &bad)
        .unwrap_err()
        .to_string()
        .contains("nosuchuser"));
    let mut bad = f.config(&["true"]);
    bad.image = "127.0.0.1:1/missing:1".into();
    assert!(f.rt.create_container(&sb, &bad).is_err());
    assert!(f.rt.status("../etc").is_err());
}

#[test]
fn oom_kill_under_memory_limit() {
    let f = Fixture::new();
    let mut c = f.config(&[
        "sh",
        "-c",
        "exec dd if=/dev/zero of=/dev/null bs=64M count=1",
    ]);
    c.resources = Resources {
        memory_limit: Some(16 << 20),
        ..Default::default()
    };
    let (_, st) = f.run(&c);
    assert_eq!(
        st.exit_code,
        Some(137),
        "{:?}",
        fs::read_to_string(&st.log_path)
    );
    assert!(st.oom_killed);
    assert_eq!(st.reason.as_deref(), Some("OOMKilled"));

    // Under the limit it just works.
    let mut c = f.config(&[
        "sh",
        "-c",
        "exec dd if=/dev/zero of=/dev/null bs=1M count=1",
    ]);
    c.resources = Resources {
        memory_limit: Some(64 << 20),
        ..Default::default()
    };
    let (_, st) = f.run(&c);
    assert_eq!((st.exit_code, st.oom_killed), (Some(0), false));
}

#[test]
fn capabilities_and_no_new_privs() {
    let f = Fixture::new();
    let script = "grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status | tr -s '\\t' ' '";
    let caps = |c: &ContainerConfig| {
        let (id, st) = f.run(c);
        assert_eq!(st.exit_code, Some(0));
        f.stdout(&id)
    };
    // Docker's and containerd's well-known default set.
    let default = caps(&f.config(&["sh", "-c", script]));
    assert_eq!(
        default,
        [
            "CapEff: 00000000a80425fb",
            "CapBnd: 00000000a80425fb",
            "NoNewPrivs: 0"
        ]
    );
    let mut c = f.config(&["sh", "-c", script]);
    c.capabilities.drop = vec!["ALL".into()];
    c.capabilities.add = vec!["NET_ADMIN".into()];
    c.no_new_privs = true;
    assert_eq!(
        caps(&c),
        [
            "CapEff: 0000000000001000",
            "CapBnd: 0000000000001000",
            "NoNewPrivs: 1"
        ]
    );
    let mut c = f.config(&["sh", "-c", script]);
    c.privileged = true;
    // Everything the runtime itself holds.
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let ours = status.lines().find(|l| l.starts_with("CapPrm:")).unwrap();
    assert_eq!(caps(&c)[0], ours.replace("CapPrm:\t", "CapEff: "));
    // A non-root user keeps none after exec.
    let mut c = f.config(&["sh", "-c", script]);
    c.user.user = Some("app".into());
    assert_eq!(caps(&c)[0], "CapEff: 0000000000000000");
}

#[test]
fn pids_limit_and_cpu_settings() {
    let f = Fixture::new();
    let script = "for i in 1 2 3 4 5 6 7 8; do sleep 1 & done; wait; echo done";
    let mut c = f.config(&["sh", "-c", script]);
    c.resources = Resources {
        pids_limit: Some(4),
        cpu_shares: Some(256),
        cpu_quota: Some(50_000),
        ..Default::default()
    };
    let (_, st) = f.run(&c);
    let err = log_lines(&st.log_path, Stream::Stderr).join("\n");
    assert!(err.contains("fork"), "expected fork failures, got {err:?}");
    // The same script without the limit forks all eight.
    let (id, st) = f.run(&f.config(&["sh", "-c", script]));
    assert!(log_lines(&st.log_path, Stream::Stderr).is_empty());
    assert_eq!(f.stdout(&id), ["done"]);
}

#[test]
fn read_only_rootfs_and_bind_mounts() {
    let f = Fixture::new();
    let host = tempfile::tempdir().unwrap();
    fs::write(host.path().join("in"), "host data\n").unwrap();
    let ro = tempfile::tempdir().unwrap();
    let mut c = f.config(&[
        "sh",
        "-c",
        "touch /x && echo root-writable; cat /mnt/rw/in; echo written > /mnt/rw/out; touch /mnt/ro/y || echo ro-refused; cat /etc/hostname",
    ]);
    c.read_only_rootfs = true;
    c.mounts = vec![
        Mount {
            host_path: host.path().into(),
            container_path: "/mnt/rw".into(),
            ..Default::default()
        },
        Mount {
            host_path: ro.path().into(),
            container_path: "/mnt/ro".into(),
            read_only: true,
            ..Default::default()
        },
    ];
    let (id, _) = f.run(&c);
    assert_eq!(f.stdout(&id), ["host data", "ro-refused", "testpod"]);
    assert_eq!(
        fs::read_to_string(host.path().join("out")).unwrap(),
        "written\n"
    );
    assert!(!ro.path().join("y").exists());

    // Without read_only_rootfs, writes land in the container's upper dir.
    let (id, st) = f.run(&f.config(&["sh", "-c", "touch /x && echo root-writable"]));
    assert_eq!(
        (f.stdout(&id), st.exit_code),
        (vec!["root-writable".to_string()], Some(0))
    );
}

fn pipe() -> (fs::File, OwnedFd) {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: fds is a valid two-element array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 just returned both fds; nothing else owns them.
    unsafe { (fs::File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn exec(rt: &LocalRuntime, id: &str, cmd: &[&str], tty: bool) -> (i32, String, String) {
    let (mut out_r, out_w) = pipe();
    let (mut err_r, err_w) = pipe();
    let config = ExecConfig {
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        env: vec![("X".into(), "1".into())],
        tty,
    };
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        out_r.read_to_string(&mut s).unwrap();
        s
    });
    let code = rt
        .exec(
            id,
            &config,
            ExecIo {
                stdin: None,
                stdout: out_w,
                stderr: err_w,
            },
        )
        .unwrap();
    let mut err = String::new();
    err_r.read_to_string(&mut err).unwrap();
    (code, reader.join().unwrap(), err)
}

#[test]
fn exec_output_and_exit_code() {
    let f = Fixture::new();
    let sb = f.sandbox();
    let mut c = f.config(&["sleep", "60"]);
    c.user.user = Some("app".into());
    let id = f.rt.create_container(&sb, &c).unwrap();
    f.rt.start(&id).unwrap();
    let (code, out, err) = exec(
        &f.rt,
        &id,
        &[
            "sh",
            "-c",
            "echo out $X $(id -u) $(hostname); echo err >&2; cat /proc/1/cmdline; exit 7",
        ],
        false,
    );
    assert_eq!(code, 7);
    assert_eq!(out, "out 1 1000 testpod\nsleep\u{0}60\u{0}");
    assert_eq!(err, "err\n");
    let (code, out, _) = exec(&f.rt, &id, &["sh", "-c", "tty; echo hi"], true);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("/dev/pts/") && out.ends_with("hi\r\n"),
        "{out:?}"
    );
    assert!(f
        .rt
        .exec(
            &id,
            &ExecConfig {
                cmd: vec!["/missing".into()],
                ..Default::default()
            },
            null_io()
        )
        .is_err());

    let stats = f.rt.stats(&id).unwrap();
    assert!(
        stats.memory_usage > 0 && stats.cpu_usage_ns > 0,
        "{stats:?}"
    );
    f.rt.stop(&id, Duration::from_secs(0)).unwrap();
    let st = f.rt.status(&id).unwrap();
    assert_eq!(
        (st.state, st.exit_code),
        (ContainerState::Exited, Some(137))
    );
    assert!(f
        .rt
        .exec(
            &id,
            &ExecConfig {
                cmd: vec!["true".into()],
                ..Default::default()
            },
            null_io()
        )
        .is_err());
}

fn null_io() -> ExecIo {
    let null = || OwnedFd::from(fs::File::options().write(true).open("/dev/null").unwrap());
    ExecIo {
        stdin: None,
        stdout: null(),
        stderr: null(),
    }
}

#[test]
fn logs_are_cri_formatted_and_rotate() {
    let f = Fixture::new();
    let logdir = tempfile::tempdir().unwrap();
    let mut c = f.config(&[
        "sh",
        "-c",
        "seq 1 300; echo to-stderr >&2; head -c 20000 /dev/zero | tr '\\0' x; echo; printf tail",
    ]);
    c.log_path = Some(logdir.path().join("c.log"));
    c.log_max_size = 4096;
    c.log_max_files = 3;
    let (_, st) = f.run(&c);
    assert_eq!(st.exit_code, Some(0));
    let live = logdir.path().join("c.log");
    assert!(logdir.path().join("c.log.1").exists());
    assert!(logdir.path().join("c.log.2").exists());
    assert!(!logdir.path().join("c.log.3").exists());
    let mut all = String::new();
    for p in ["c.log.2", "c.log.1", "c.log"] {
        let text = fs::read_to_string(logdir.path().join(p)).unwrap();
        // A single record longer than the limit still goes in whole.
        assert!(
            text.len() <= 4096 || text.lines().count() == 1,
            "{p} is {} bytes",
            text.len()
        );
        all.push_str(&text);
    }
    for line in all.lines() {
        let ts = line.split(' ').next().unwrap();
        // 2026-01-02T03:04:05.123456789Z
        assert_eq!(ts.len(), 30, "{line:?}");
        assert!(
            ts.ends_with('Z') && &ts[10..11] == "T" && &ts[19..20] == ".",
            "{ts}"
        );
    }
    let last = all.lines().last().unwrap();
    assert!(last.ends_with(" stdout F tail"), "{last:?}");
    assert!(
        all.lines().any(|l| l.contains(" stdout P xxxx")),
        "long line split into P records"
    );
    assert!(fs::metadata(&live).unwrap().len() <= 4096);
    let out = records(&all, Stream::Stdout);
    assert!(out
        .iter()
        .any(|l| l.len() == 20000 && l.bytes().all(|b| b == b'x')));
    assert!(all.contains(" stderr F to-stderr\n"));
    assert!(all.contains(" stdout F 300\n"));
}

#[test]
fn stop_honours_grace_period() {
    let f = Fixture::new();
    let sb = f.sandbox();
    let trap =
        f.rt.create_container(
            &sb,
            &f.config(&[
                "sh",
                "-c",
                "trap 'echo got-term; exit 3' TERM; echo ready; while true; do sleep 0.1; done",
            ]),
        )
        .unwrap();
    let deaf =
        f.rt.create_container(&sb, &f.config(&["sleep", "600"]))
            .unwrap();
    f.rt.start(&trap).unwrap();
    f.rt.start(&deaf).unwrap();
    // The trap must be installed before we signal.
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.stdout(&trap).is_empty() {
        assert!(Instant::now() < deadline, "container never became ready");
        std::thread::sleep(Duration::from_millis(10));
    }

    let t = Instant::now();
    f.rt.stop(&trap, Duration::from_secs(10)).unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "trapping container took {:?}",
        t.elapsed()
    );
    let st = f.rt.status(&trap).unwrap();
    assert_eq!(st.exit_code, Some(3));
    assert_eq!(f.stdout(&trap), ["ready", "got-term"]);

    // sleep as PID 1 has no SIGTERM handler: the kernel drops the signal,
    // so only SIGKILL after the grace period ends it.
    let t = Instant::now();
    f.rt.stop(&deaf, Duration::from_millis(700)).unwrap();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(f.rt.status(&deaf).unwrap().exit_code, Some(137));
}

#[test]
fn containers_survive_and_are_readopted_after_restart() {
    let f = Fixture::new();
    let sb = f.sandbox();
    let id =
        f.rt.create_container(&sb, &f.config(&["sh", "-c", "echo before; sleep 600"]))
            .unwrap();
    f.rt.start(&id).unwrap();
    let pid = f.rt.status(&id).unwrap().pid.unwrap();

    // A new runtime object over the same root: the agent restarted.
    let again = LocalRuntime::new(f.options.clone(), f.images.clone()).unwrap();
    let list = again.recover().unwrap();
    let st = list.iter().find(|s| s.id == id).unwrap();
    assert_eq!((st.state, st.pid), (ContainerState::Running, Some(pid)));
    let (code, out, _) = exec(&again, &id, &["echo", "still-here"], false);
    assert_eq!((code, out.as_str()), (0, "still-here\n"));
    again.stop(&id, Duration::ZERO).unwrap();
    assert_eq!(again.status(&id).unwrap().exit_code, Some(137));

    // A container whose processes died unobserved is settled as Unknown.
    let id2 =
        f.rt.create_container(&sb, &f.config(&["sleep", "600"]))
            .unwrap();
    f.rt.start(&id2).unwrap();
    let st = f.rt.status(&id2).unwrap();
    let state_dir = f.options.root.join("containers").join(&id2);
    // Simulate losing the shim's record: kill everything, then drop exit.json.
    f.rt.stop(&id2, Duration::ZERO).unwrap();
    fs::remove_file(state_dir.join("exit.json")).unwrap();
    assert!(st.pid.is_some());
    let list = again.recover().unwrap();
    let st = list.iter().find(|s| s.id == id2).unwrap();
    assert_eq!(
        (st.state, st.exit_code, st.reason.as_deref()),
        (ContainerState::Exited, Some(255), Some("Unknown"))
    );
    assert!(state_dir.join("exit.json").exists());
}

#[test]
fn host_network_sandbox_and_removal() {
    let f = Fixture::new();
    let sb =
        f.rt.create_sandbox(&SandboxConfig {
            name: "hostnet".into(),
            hostname: "hn".into(),
            network: NetworkMode::Host,
            ..Default::default()
        })
        .unwrap();
    assert!(f.rt.sandbox_status(&sb).unwrap().netns.is_none());
    let pod = f.sandbox();
    let netns = f.rt.sandbox_status(&pod).unwrap().netns.unwrap();
    let host_net = fs::read_link("/proc/self/ns/net").unwrap();
    let id =
        f.rt.create_container(
            &sb,
            &f.config(&["sh", "-c", "readlink /proc/self/ns/net; hostname"]),
        )
        .unwrap();
    f.rt.start(&id).unwrap();
    f.rt.wait(&id, Some(Duration::from_secs(30))).unwrap();
    assert_eq!(
        f.stdout(&id),
        [host_net.display().to_string(), "hn".to_string()]
    );
    assert!(fs::metadata(&netns).is_ok());

    let cg = f
        .options
        .cgroup_root
        .join("memory")
        .join(&f.options.cgroup_parent)
        .join(&id);
    assert!(cg.exists());
    f.rt.remove(&id).unwrap();
    assert!(!cg.exists(), "container cgroup removed");
    assert!(f.rt.status(&id).is_err());
    f.rt.remove_sandbox(&pod).unwrap();
    assert!(!netns.exists());
    // Bad input: a hostname the kernel would refuse.
    assert!(f
        .rt
        .create_sandbox(&SandboxConfig {
            name: "x".repeat(65),
            ..Default::default()
        })
        .is_err());
}

#[test]
fn shared_pid_namespace() {
    let f = Fixture::new();
    let sb =
        f.rt.create_sandbox(&SandboxConfig {
            name: "shared".into(),
            hostname: "shared".into(),
            share_pid: true,
            ..Default::default()
        })
        .unwrap();
    // The first container also leaves a background child behind: in a
    // shared namespace it is not killed by the kernel, so the runtime
    // must, or its log would never close.
    let a =
        f.rt.create_container(&sb, &f.config(&["sh", "-c", "sleep 600 & exec sleep 500"]))
            .unwrap();
    f.rt.start(&a).unwrap();
    let mut c = f.config(&[
        "sh",
        "-c",
        "echo $$; cat /proc/1/cmdline; echo; for p in /proc/[0-9]*; do cat $p/cmdline; echo; done",
    ]);
    c.name = "b".into();
    let (b, st) = {
        let id = f.rt.create_container(&sb, &c).unwrap();
        f.rt.start(&id).unwrap();
        (
            id.clone(),
            f.rt.wait(&id, Some(Duration::from_secs(30))).unwrap(),
        )
    };
    assert_eq!(st.exit_code, Some(0));
    let out = f.stdout(&b);
    assert_ne!(out[0], "1", "a shared namespace's PID 1 is its reaper");
    assert!(out.iter().any(|l| l == "sleep\u{0}500\u{0}"), "{out:?}");
    assert!(out.iter().any(|l| l == "sleep\u{0}600\u{0}"), "{out:?}");

    let t = Instant::now();
    f.rt.stop(&a, Duration::from_secs(5)).unwrap();
    let st = f.rt.status(&a).unwrap();
    // Not PID 1 any more: SIGTERM's default action applies.
    assert_eq!(st.exit_code, Some(143), "{st:?}");
    assert!(t.elapsed() < Duration::from_secs(4));
    let cg = f
        .options
        .cgroup_root
        .join("pids")
        .join(&f.options.cgroup_parent)
        .join(&a);
    // The background sleep was SIGKILLed; it leaves the cgroup as it exits.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = fs::read_to_string(cg.join("cgroup.procs")).unwrap_or_default();
        if left.trim().is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "leftover processes {left:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    f.rt.remove_sandbox(&sb).unwrap();
}
