//! Container start latency (issue 4): create + start + wait of a
//! container running /bin/true with the image present, p50 and p99 over
//! 100 runs, each as a ratio to `unshare --fork --pid --mount --uts --ipc
//! --net /bin/true` timed in the same rounds (the floor: five namespaces,
//! a fork and an exec), because these machines are noisy.
//!
//! (a) through the runtime library in this process: sandbox (own net,
//!     IPC, UTS namespaces) + container; also the container alone in an
//!     existing sandbox.
//! (b) a whole `rkube ctr run --rm IMAGE -- /bin/true` process (which also
//!     removes the container and sandbox before exiting).
//!
//! Run as root: `cargo build --release -p rkube && cargo bench -p
//! rkube-containers --bench run` (RKUBE_BIN overrides the binary path).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rkube_containers::image::build::{ImageBuilder, LayerBuilder};
use rkube_containers::image::{ImageService, RegistriesConfig, RunConfig};
use rkube_containers::runtime::{
    ContainerConfig, ContainerState, LocalRuntime, Runtime, RuntimeOptions, SandboxConfig,
};

const RUNS: usize = 100;
const CGROUP_PARENT: &str = "rkube-bench";

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn rkube_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("RKUBE_BIN") {
        return p.into();
    }
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
    let release = target.join("release/rkube");
    if release.exists() {
        release
    } else {
        target.join("debug/rkube")
    }
}

fn unshare() -> Duration {
    let t = Instant::now();
    let ok = Command::new("unshare")
        .args([
            "--fork",
            "--pid",
            "--mount",
            "--uts",
            "--ipc",
            "--net",
            "/bin/true",
        ])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let d = t.elapsed();
    assert!(ok, "unshare failed (run as root)");
    d
}

fn config(image: &str) -> ContainerConfig {
    ContainerConfig {
        name: "bench".into(),
        image: image.into(),
        command: vec!["/bin/true".into()],
        ..Default::default()
    }
}

fn sandbox_config() -> SandboxConfig {
    SandboxConfig {
        name: "bench".into(),
        hostname: "bench".into(),
        ..Default::default()
    }
}

/// Sandbox + container, create to exit; cleanup untimed.
fn library_pod(rt: &LocalRuntime, image: &str) -> Duration {
    let t = Instant::now();
    let sb = rt.create_sandbox(&sandbox_config()).unwrap();
    let id = rt.create_container(&sb, &config(image)).unwrap();
    rt.start(&id).unwrap();
    let st = rt.wait(&id, Some(Duration::from_secs(30))).unwrap();
    let d = t.elapsed();
    assert_eq!((st.state, st.exit_code), (ContainerState::Exited, Some(0)));
    rt.remove(&id).unwrap();
    rt.remove_sandbox(&sb).unwrap();
    d
}

fn library_container(rt: &LocalRuntime, sandbox: &str, image: &str) -> Duration {
    let t = Instant::now();
    let id = rt.create_container(sandbox, &config(image)).unwrap();
    rt.start(&id).unwrap();
    let st = rt.wait(&id, Some(Duration::from_secs(30))).unwrap();
    let d = t.elapsed();
    assert_eq!(st.exit_code, Some(0));
    rt.remove(&id).unwrap();
    d
}

fn ctr_run(bin: &Path, dir: &Path, image: &str) -> Duration {
    let t = Instant::now();
    let out = Command::new(bin)
        .arg("ctr")
        .arg("--root")
        .arg(dir.join("containers"))
        .arg("--images")
        .arg(dir.join("images"))
        .args([
            "--registries",
            "/nonexistent",
            "--cgroup-parent",
            CGROUP_PARENT,
        ])
        .args(["run", "--rm", image, "--", "/bin/true"])
        .output()
        .unwrap();
    let d = t.elapsed();
    assert!(
        out.status.success(),
        "rkube ctr run: {}: {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    d
}

/// Removes whatever a run left (also when a series panics).
struct Cleanup<'a>(&'a LocalRuntime, &'a Path);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for c in self.0.list().unwrap_or_default() {
            let _ = self.0.remove(&c.id);
        }
        let sandboxes = self.1.join("containers/sandboxes");
        for e in std::fs::read_dir(sandboxes).into_iter().flatten().flatten() {
            let _ = self.0.remove_sandbox(&e.file_name().to_string_lossy());
        }
        for c in ["cpu", "cpuacct", "memory", "pids"] {
            let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(c).join(CGROUP_PARENT));
        }
    }
}

fn report(name: &str, mut v: Vec<Duration>, base_p50: Duration, base_p99: Duration) {
    let (p50, p99) = (percentile(&mut v, 0.5), percentile(&mut v, 0.99));
    println!(
        "{name:<44} p50 {:>7.2} ms ({:>4.2}x)   p99 {:>7.2} ms ({:>4.2}x)",
        ms(p50),
        p50.as_secs_f64() / base_p50.as_secs_f64(),
        ms(p99),
        p99.as_secs_f64() / base_p99.as_secs_f64()
    );
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("image.tar");
    ImageBuilder::new()
        .layer(LayerBuilder::busybox(Path::new("/bin/busybox")).unwrap())
        .config(RunConfig {
            env: Some(vec!["PATH=/bin".into()]),
            ..Default::default()
        })
        .build()
        .unwrap()
        .write_oci_archive("example.com/bench/true:1", &archive)
        .unwrap();
    let images = Arc::new(
        ImageService::open(&dir.path().join("images"), RegistriesConfig::default()).unwrap(),
    );
    let tokio = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let image = tokio.block_on(images.import(&archive)).unwrap()[0]
        .name
        .clone();
    let mut options = RuntimeOptions::new(&dir.path().join("containers"));
    options.cgroup_parent = PathBuf::from(CGROUP_PARENT);
    let rt = LocalRuntime::new(options, images).unwrap();
    let _cleanup = Cleanup(&rt, dir.path());
    let bin = rkube_binary();
    println!("rkube binary: {}", bin.display());

    // Warm-up: page cache, binary, cgroup hierarchy.
    for _ in 0..5 {
        unshare();
        library_pod(&rt, &image);
        ctr_run(&bin, dir.path(), &image);
    }
    let sandbox = rt.create_sandbox(&sandbox_config()).unwrap();
    let (mut base, mut pod, mut ctr, mut cont) = (vec![], vec![], vec![], vec![]);
    // Interleaved so that noise hits every series alike.
    for _ in 0..RUNS {
        base.push(unshare());
        pod.push(library_pod(&rt, &image));
        cont.push(library_container(&rt, &sandbox, &image));
        ctr.push(ctr_run(&bin, dir.path(), &image));
    }
    rt.remove_sandbox(&sandbox).unwrap();

    let (b50, b99) = (
        percentile(&mut base.clone(), 0.5),
        percentile(&mut base.clone(), 0.99),
    );
    println!("container start, {RUNS} runs each, ratios to the same-run baseline:");
    report("baseline: unshare (5 namespaces) /bin/true", base, b50, b99);
    report("(a) library: sandbox + container", pod, b50, b99);
    report(
        "(a') library: container in existing sandbox",
        cont,
        b50,
        b99,
    );
    report("(b) rkube ctr run --rm /bin/true", ctr, b50, b99);
}
