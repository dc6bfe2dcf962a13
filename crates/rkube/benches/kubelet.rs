//! Kubelet benchmark (issue 6): pod startup latency — create to the
//! Running phase seen on a watch, image present — p50/p99 over 100 pods,
//! and the agent's RSS with 30 pods running. Each number is printed next
//! to a baseline from the same run: one `rkube ctr run -d` (a whole
//! process creating a sandbox and starting the same container through
//! the same runtime), because these shared machines are noisy.
//!
//! Upstream counterpart: the pod startup latency SLO of Kubernetes'
//! scalability tests (clusterloader2's pod-startup measurement).
//!
//! `cargo bench -p rkube --bench kubelet` (as root; about a minute).
//! Results and their reading: docs/PERF.md, "Kubelet (issue 6)".

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::watcher;
use rkube_containers::image::build::{ImageBuilder, LayerBuilder};
use rkube_containers::image::RunConfig;

const IMAGE: &str = "example.com/bench/busybox:1";
const PODS: usize = 100;
const RSS_AT: usize = 30;
const NODE: &str = "bench-kubelet";

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn rkube() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rkube"))
}

fn ctr(data: &Path, cgroup: &str) -> Command {
    let mut c = rkube();
    c.arg("ctr")
        .arg("--root")
        .arg(data.join("agent/containers"))
        .arg("--images")
        .arg(data.join("agent/images"))
        .args(["--registries", "/nonexistent", "--cgroup-parent", cgroup]);
    c
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"bench": "kubelet"}},
        "spec": {
            "nodeName": NODE,
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "c", "image": IMAGE, "command": ["sleep", "3600"]}]
        }
    }))
    .unwrap()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    rkube_pki::install_crypto_provider();
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("agent-data");
    let images = data.join("agent/images");
    std::fs::create_dir_all(&images)?;
    ImageBuilder::new()
        .layer(LayerBuilder::busybox(Path::new("/bin/busybox"))?)
        .config(RunConfig {
            env: Some(vec!["PATH=/bin".into()]),
            ..Default::default()
        })
        .build()?
        .write_oci_archive(IMAGE, &images.join("busybox.tar"))?;
    let cgroup = format!(
        "rkube-bench/{}",
        dir.path().file_name().unwrap().to_string_lossy()
    );

    let port = free_port();
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    let _server = Proc(
        rkube()
            .arg("server")
            .arg("--data-dir")
            .arg(dir.path())
            .args([
                "--bind-address",
                "127.0.0.1",
                "--https-listen-port",
                &port.to_string(),
            ])
            .arg("--write-kubeconfig")
            .arg(&kubeconfig)
            .args(["--disable-agent", "--disable-scheduler"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("server.log"))?)
            .spawn()?,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !kubeconfig.exists() {
        if Instant::now() > deadline {
            bail!("server did not start");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let client = {
        let kc = kube::config::Kubeconfig::read_from(&kubeconfig)?;
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
        kube::Client::try_from(cfg)?
    };
    // Pods get their token volume from the default service account.
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    while sas.get_opt("default").await.ok().flatten().is_none() {
        if Instant::now() > deadline {
            bail!("no default service account");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let agent = Proc(
        rkube()
            .arg("agent")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--data-dir")
            .arg(&data)
            .args(["--node-name", NODE, "--node-ip", "127.0.0.1"])
            .args(["--kubelet-port", &free_port().to_string()])
            .args(["--registries", "/nonexistent", "--cgroup-parent", &cgroup])
            .args(["--network-backend", "none"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("agent.log"))?)
            .spawn()?,
    );
    let result = run(&client, &data, &cgroup, agent.0.id()).await;
    // Cleanup: the agent first (so it does not restart anything), then
    // every container it left.
    drop(agent);
    let ps = ctr(&data, &cgroup).arg("ps").output()?;
    let ids: Vec<String> = String::from_utf8_lossy(&ps.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    for chunk in ids.chunks(50) {
        let _ = ctr(&data, &cgroup).args(["rm", "-f"]).args(chunk).output();
    }
    for c in ["cpu", "cpuacct", "memory", "pids"] {
        let _ = std::fs::remove_dir(PathBuf::from("/sys/fs/cgroup").join(c).join(&cgroup));
    }
    if result.is_err() {
        eprintln!(
            "agent log:\n{}",
            std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default()
        );
    }
    result
}

async fn run(
    client: &kube::Client,
    data: &Path,
    cgroup: &str,
    agent_pid: u32,
) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // Running times as the watch sees them.
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let notify = Arc::new(tokio::sync::Notify::new());
    {
        let (seen, notify, pods) = (seen.clone(), notify.clone(), pods.clone());
        tokio::spawn(async move {
            let stream = watcher(pods, watcher::Config::default().labels("bench=kubelet"));
            futures::pin_mut!(stream);
            while let Some(ev) = stream.next().await {
                if let Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) = ev {
                    let running =
                        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
                    if running {
                        let name = p.metadata.name.clone().unwrap_or_default();
                        seen.lock()
                            .unwrap()
                            .entry(name)
                            .or_insert_with(Instant::now);
                        notify.notify_waiters();
                    }
                }
            }
        });
    }
    // Wait for the node (its first pod would otherwise pay for start-up).
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    while nodes.get_opt(NODE).await?.is_none() {
        if Instant::now() > deadline {
            bail!("node did not register");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Warm-up pod (first container start pays for page cache and cgroups).
    let mut latencies = Vec::new();
    let mut rss_30 = 0;
    for i in 0..=PODS {
        let name = format!("bench-{i}");
        let t0 = Instant::now();
        pods.create(&PostParams::default(), &pod(&name)).await?;
        let deadline = t0 + Duration::from_secs(30);
        loop {
            let wait = notify.notified();
            if let Some(t) = seen.lock().unwrap().get(&name) {
                if i > 0 {
                    latencies.push(t.duration_since(t0));
                }
                break;
            }
            if Instant::now() > deadline {
                bail!("pod {name} not Running after 30s");
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), wait).await;
        }
        if i == RSS_AT {
            // Let the workers settle (status written, probes none).
            tokio::time::sleep(Duration::from_secs(2)).await;
            rss_30 = rss_kib(agent_pid);
        }
    }
    latencies.sort();

    // Baseline: a fresh `rkube ctr run -d` of the same image, 20 times.
    let mut base = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let out = ctr(data, cgroup)
            .args(["run", "-d", IMAGE, "--", "sleep", "3600"])
            .output()
            .context("rkube ctr run")?;
        if !out.status.success() {
            bail!("ctr run: {}", String::from_utf8_lossy(&out.stderr));
        }
        base.push(t.elapsed());
    }
    base.sort();
    let b50 = percentile(&base, 0.5);
    let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
    println!(
        "kubelet pod startup (create -> Running on a watch), {} pods, image present:",
        latencies.len()
    );
    println!(
        "  p50 {:7.1} ms  ({:.1}x `rkube ctr run -d` p50 {:.1} ms)",
        ms(p50),
        ms(p50) / ms(b50),
        ms(b50)
    );
    println!("  p99 {:7.1} ms  (goal <= 300 ms)", ms(p99));
    println!("  max {:7.1} ms", ms(*latencies.last().unwrap()));
    println!(
        "agent RSS with {RSS_AT} running pods: {:.1} MiB (goal < 40 MiB); with {} pods: {:.1} MiB",
        rss_30 as f64 / 1024.0,
        PODS + 1,
        rss_kib(agent_pid) as f64 / 1024.0
    );
    let _ = pods
        .delete_collection(
            &DeleteParams::default().grace_period(0),
            &Default::default(),
        )
        .await;
    Ok(())
}
