//! Scheduler benchmark (issue 5): the release `rkube server` with 1,000
//! simulated nodes (`rkube agent --simulate`), 10,000 pods created by
//! Deployments; prints pods scheduled per second and create-to-bound
//! latency, next to a baseline measured in the same run — how fast the
//! same server takes raw pod creates that nobody schedules — because these
//! shared machines are noisy.
//!
//! Upstream counterpart: the SchedulingThroughput measurement of
//! Kubernetes' scheduler_perf and clusterloader2 density tests.
//!
//! Timing is taken by one watch on the pods: "created" is when the pod's
//! first event arrives, "bound" when an event first shows spec.nodeName;
//! both on the same clock, so the latency includes the watch delivery of
//! the binding but not the client's create call.
//!
//! `cargo bench -p rkube --bench schedule` (a few minutes);
//! `BENCH_SCALE=0.1` for 100 nodes and 1,000 pods. Results and their
//! reading: docs/PERF.md, "Scheduler (issue 5)".

#[allow(dead_code)]
#[path = "api/server.rs"]
mod server;

use std::borrow::Cow;
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use http_body_util::BodyExt;
use serde_json::{json, Value};

use server::{Api, Conn, Server};

const NS: &str = "bench";
const RAW_NS: &str = "bench-raw";
const DEPLOYMENTS: usize = 10;
/// Concurrent clients for the raw create baseline.
const CLIENTS: usize = 16;
const MIB: f64 = 1024.0 * 1024.0;

struct Sizes {
    nodes: usize,
    pods: usize,
    raw_pods: usize,
}

fn sizes() -> Sizes {
    let scale = std::env::var("BENCH_SCALE")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| *v > 0.0 && v.is_finite())
        .unwrap_or(1.0);
    let n = |v: f64, min: usize| ((v * scale).round() as usize).max(min);
    Sizes {
        nodes: n(1000.0, 10),
        pods: n(10_000.0, DEPLOYMENTS),
        raw_pods: n(3000.0, CLIENTS),
    }
}

/// The simulated nodes, killed on drop.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `rkube` binary measured: `BENCH_RKUBE_BIN` (another build, as the
/// server module reads it) or this build's. The simulated nodes run the
/// same binary as the server: a run measures one build throughout.
fn rkube_bin() -> std::ffi::OsString {
    std::env::var_os("BENCH_RKUBE_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_rkube").into())
}

fn start_agent(server: &Server, nodes: usize) -> anyhow::Result<Agent> {
    let log = std::fs::File::create(server.dir.path().join("agent.log"))?;
    let child = Command::new(rkube_bin())
        .arg("agent")
        .arg("--kubeconfig")
        .arg(server.kubeconfig())
        .arg("--data-dir")
        .arg(server.dir.path().join("agent"))
        .args(["--simulate", &nodes.to_string(), "--simulate-prefix", "sim"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("cannot start rkube agent --simulate")?;
    Ok(Agent(child))
}

/// Whether `rkube server --help` lists `flag` (the embedded agent's switch
/// must be off: a real kubelet on this host would take pods).
fn server_has_flag(flag: &str) -> bool {
    Command::new(rkube_bin())
        .args(["server", "--help"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(flag))
        .unwrap_or(false)
}

/// CPU time (user + system, all threads) a process has used so far. /proc
/// counts it in USER_HZ ticks, which Linux fixes at 100 per second.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    // The command name (field 2) may hold spaces: count from its ")".
    let rest = stat
        .rsplit_once(')')
        .context("no command name in /proc stat")?
        .1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| -> anyhow::Result<u64> {
        let f = fields.get(i).context("short /proc stat line")?;
        Ok(f.parse()?)
    };
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    Ok((tick(11)? + tick(12)?) as f64 / 100.0)
}

/// The 1-minute load average: how busy the shared machine was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn quantile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

async fn count(conn: &Conn, path: &str) -> anyhow::Result<usize> {
    let body = conn.get_ok(path).await?;
    let v: Value = serde_json::from_slice(&body)?;
    Ok(v["items"].as_array().map_or(0, Vec::len))
}

/// Per pod: when the watch first showed it, and when bound.
#[derive(Default)]
struct Seen {
    created: HashMap<String, Instant>,
    bound: HashMap<String, Instant>,
    /// Times the watch was reopened, and relists after it expired.
    rewatches: usize,
    relists: usize,
}

impl Seen {
    fn observe(&mut self, pod: &Value, now: Instant) {
        let uid = pod["metadata"]["uid"].as_str();
        let node = pod["spec"]["nodeName"].as_str();
        self.mark(uid, node, now);
    }

    fn mark(&mut self, uid: Option<&str>, node: Option<&str>, now: Instant) {
        let Some(uid) = uid else {
            return;
        };
        if !self.created.contains_key(uid) {
            self.created.insert(uid.to_string(), now);
        }
        if node.is_some_and(|n| !n.is_empty()) && !self.bound.contains_key(uid) {
            self.bound.insert(uid.to_string(), now);
        }
    }
}

/// The fields of a watch event the benchmark reads. Decoding only these
/// (serde skips the rest without building it) keeps the benchmark's own
/// CPU small: it shares the machine's cores with the server it measures,
/// and a slow reader falls behind the watch cache's history and relists.
#[derive(serde::Deserialize)]
struct WatchLine<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    object: PodFields<'a>,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct PodFields<'a> {
    #[serde(borrow)]
    metadata: MetaFields<'a>,
    #[serde(borrow)]
    spec: SpecFields<'a>,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct MetaFields<'a> {
    #[serde(borrow)]
    uid: Option<Cow<'a, str>>,
    #[serde(rename = "resourceVersion", borrow)]
    resource_version: Option<Cow<'a, str>>,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct SpecFields<'a> {
    #[serde(rename = "nodeName", borrow)]
    node_name: Option<Cow<'a, str>>,
}

/// Follow pod events in `NS` until `want` pods are bound or `deadline`.
/// A watch the server ends (a watcher more than the watch cache's history
/// behind is dropped, as upstream's cacher drops it) is reopened from the
/// last resourceVersion seen; if that has expired too, a list fills the
/// gap, its pods timed when the list arrives.
async fn watch_pods(conn: Conn, want: usize, deadline: Duration) -> anyhow::Result<Seen> {
    let mut seen = Seen::default();
    let end = Instant::now() + deadline;
    let mut rv: Option<String> = None;
    'watch: while seen.bound.len() < want && Instant::now() < end {
        let path = match &rv {
            Some(rv) => format!("/api/v1/namespaces/{NS}/pods?watch=1&resourceVersion={rv}"),
            None => format!("/api/v1/namespaces/{NS}/pods?watch=1"),
        };
        let mut body = match conn.stream(&path).await {
            Ok(body) => body,
            // 410 Gone: the history no longer reaches back to `rv`.
            Err(_) if rv.is_some() => {
                rv = relist(&conn, &mut seen).await?;
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut buf: Vec<u8> = Vec::new();
        while seen.bound.len() < want {
            let left = end.saturating_duration_since(Instant::now());
            let frame = match tokio::time::timeout(left, body.frame()).await {
                Err(_) => break 'watch,
                Ok(None | Some(Err(_))) => {
                    seen.rewatches += 1;
                    continue 'watch;
                }
                Ok(Some(Ok(f))) => f,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let now = Instant::now();
            buf.extend_from_slice(&data);
            // Whole lines are consumed in place and drained once per frame.
            let mut start = 0;
            let mut expired = false;
            while let Some(nl) = buf[start..].iter().position(|b| *b == b'\n') {
                let line = &buf[start..start + nl];
                start += nl + 1;
                let Ok(ev) = serde_json::from_slice::<WatchLine>(line) else {
                    continue;
                };
                if ev.kind == "ERROR" {
                    expired = true;
                    break;
                }
                let meta = &ev.object.metadata;
                if let Some(v) = &meta.resource_version {
                    rv = Some(v.to_string());
                }
                seen.mark(
                    meta.uid.as_deref(),
                    ev.object.spec.node_name.as_deref(),
                    now,
                );
            }
            buf.drain(..start);
            if expired {
                // Expired: list what the watch missed, then go on.
                rv = relist(&conn, &mut seen).await?;
                continue 'watch;
            }
        }
    }
    Ok(seen)
}

/// List the pods (timing the unseen ones now); the list's resourceVersion.
async fn relist(conn: &Conn, seen: &mut Seen) -> anyhow::Result<Option<String>> {
    let list = conn
        .get_ok(&format!("/api/v1/namespaces/{NS}/pods"))
        .await?;
    let list: Value = serde_json::from_slice(&list)?;
    let now = Instant::now();
    for pod in list["items"].as_array().into_iter().flatten() {
        seen.observe(pod, now);
    }
    seen.relists += 1;
    Ok(list["metadata"]["resourceVersion"]
        .as_str()
        .map(str::to_string))
}

fn deployment(i: usize, replicas: usize) -> Value {
    let name = format!("load-{i}");
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "c", "image": "busybox", "command": ["sleep", "3600"],
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                }]},
            },
        },
    })
}

/// The scheduling algorithm alone, in this process: the same node and pod
/// counts through `rkube_scheduler`'s cache and default profile, each pod
/// assumed on its node as the scheduler does before binding. The ceiling
/// the end-to-end number is measured against.
fn algorithm_rate(nodes: usize, pods: usize) -> f64 {
    use k8s_openapi::api::core::v1::{Node, Pod};
    use rkube_scheduler::cache::Cache;
    use rkube_scheduler::framework::Framework;
    use rkube_scheduler::podinfo::PodInfo;
    use rkube_scheduler::schedule::Algorithm;

    let mut cache = Cache::default();
    for i in 0..nodes {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": format!("sim-{i}"),
                "labels": {"kubernetes.io/hostname": format!("sim-{i}")}},
            "status": {"allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"}},
        }))
        .expect("node");
        cache.upsert_node(&node);
    }
    let infos: Vec<PodInfo> = (0..pods)
        .map(|i| {
            let pod: Pod = serde_json::from_value(json!({
                "metadata": {"name": format!("p-{i}"), "namespace": NS, "uid": format!("uid-{i}"),
                    "labels": {"app": format!("load-{}", i % DEPLOYMENTS)},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                        "name": "rs", "uid": format!("rs-{}", i % DEPLOYMENTS), "controller": true}]},
                "spec": {"containers": [{"name": "c", "image": "busybox",
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]},
            }))
            .expect("pod");
            PodInfo::new(&pod, |_| None)
        })
        .collect();
    let mut algo = Algorithm::new(Framework::default(), 1);
    let start = Instant::now();
    for p in &infos {
        if let Ok(node) = algo.schedule(&cache, p) {
            cache.assume(p, &node);
        }
    }
    pods as f64 / start.elapsed().as_secs_f64()
}

/// Raw creates of pods no scheduler takes: the server's own pace, and its
/// CPU time per create (server `pid`).
async fn raw_create_rate(api: &Api, pods: usize, pid: u32) -> anyhow::Result<(f64, f64)> {
    let conn = api.connect().await?;
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": RAW_NS}});
    conn.create("/api/v1/namespaces", ns.to_string().into())
        .await?;
    let per = pods / CLIENTS;
    let cpu = cpu_seconds(pid)?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let conn = api.connect().await?;
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                let pod = json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": format!("raw-{c}-{i}")},
                    "spec": {
                        "schedulerName": "nobody",
                        "containers": [{"name": "c", "image": "busybox",
                            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}],
                    },
                });
                conn.create(
                    &format!("/api/v1/namespaces/{RAW_NS}/pods"),
                    pod.to_string().into(),
                )
                .await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let n = (per * CLIENTS) as f64;
    let rate = n / start.elapsed().as_secs_f64();
    Ok((rate, (cpu_seconds(pid)? - cpu) * 1000.0 / n))
}

async fn run() -> anyhow::Result<()> {
    let sizes = sizes();
    if server_has_flag("--disable-agent") {
        let mut args = std::env::var("BENCH_SERVER_ARGS").unwrap_or_default();
        args.push_str(" --disable-agent");
        std::env::set_var("BENCH_SERVER_ARGS", args);
    }
    let mut server = Server::start()?;
    let api = server.wait_ready().await?;
    let conn = api.connect().await?;
    let agent = start_agent(&server, sizes.nodes)?;
    // For a profiler to attach to (`perf record -p`).
    println!("server pid {}, agent pid {}", server.pid(), agent.0.id());
    let registering = Instant::now();
    loop {
        let n = count(&conn, "/api/v1/nodes").await?;
        if n >= sizes.nodes {
            break;
        }
        if registering.elapsed() > Duration::from_secs(180) {
            bail!("only {n} of {} simulated nodes registered", sizes.nodes);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "{} simulated nodes registered in {:.1} s",
        sizes.nodes,
        registering.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = server.rss()? as f64 / MIB;

    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}});
    conn.create("/api/v1/namespaces", ns.to_string().into())
        .await?;
    let watcher = tokio::spawn(watch_pods(
        api.connect().await?,
        sizes.pods,
        Duration::from_secs(600),
    ));
    // Let the watch register before the first pod exists.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let per = sizes.pods / DEPLOYMENTS;
    let load_before = load_average();
    let cpu_before = (cpu_seconds(server.pid())?, cpu_seconds(agent.0.id())?);
    // A profiler started on this line sees the scheduling phase only.
    println!("creating {DEPLOYMENTS} Deployments");
    for i in 0..DEPLOYMENTS {
        conn.create(
            &format!("/apis/apps/v1/namespaces/{NS}/deployments"),
            deployment(i, per).to_string().into(),
        )
        .await?;
    }
    let seen = watcher.await??;
    let cpu_server = cpu_seconds(server.pid())? - cpu_before.0;
    let cpu_agent = cpu_seconds(agent.0.id())? - cpu_before.1;
    println!("scheduling phase over");
    let load_after = load_average();
    let want = per * DEPLOYMENTS;
    let busy_rss = server.rss()? as f64 / MIB;
    if seen.bound.len() < want {
        eprintln!(
            "only {} of {want} pods bound ({} created) before the deadline; server log tail:\n{}",
            seen.bound.len(),
            seen.created.len(),
            tail(&server.log(), 30)
        );
    }
    let first_created = seen
        .created
        .values()
        .min()
        .copied()
        .context("no pods were created")?;
    let last_created = seen
        .created
        .values()
        .max()
        .copied()
        .unwrap_or(first_created);
    let last_bound = seen.bound.values().max().copied().unwrap_or(first_created);
    let mut latencies: Vec<Duration> = seen
        .bound
        .iter()
        .filter_map(|(uid, b)| {
            seen.created
                .get(uid)
                .map(|c| b.saturating_duration_since(*c))
        })
        .collect();
    latencies.sort();
    let span = last_bound.duration_since(first_created).as_secs_f64();
    let scheduled_rate = seen.bound.len() as f64 / span;
    let created_rate = seen.created.len() as f64
        / last_created
            .duration_since(first_created)
            .as_secs_f64()
            .max(1e-3);

    let (raw_rate, raw_cpu_ms) = raw_create_rate(&api, sizes.raw_pods, server.pid()).await?;
    let algo_rate = algorithm_rate(sizes.nodes, want);

    println!();
    println!(
        "scheduler benchmark: {} nodes, {} pods from {DEPLOYMENTS} Deployments",
        sizes.nodes, want
    );
    println!("{:<46} {:>12}", "measure", "value");
    let row = |name: &str, v: String| println!("{name:<46} {v:>12}");
    row("pods bound", format!("{}/{want}", seen.bound.len()));
    row(
        "pods scheduled per second (goal >= 1000)",
        format!("{scheduled_rate:.0}"),
    );
    row(
        "pods created per second (by the controllers)",
        format!("{created_rate:.0}"),
    );
    row(
        "create-to-bound p50, ms",
        format!("{:.0}", quantile_ms(&latencies, 0.5)),
    );
    row(
        "create-to-bound p99, ms",
        format!("{:.0}", quantile_ms(&latencies, 0.99)),
    );
    // On a shared machine the rate follows how much CPU the server got;
    // its CPU time per pod is the steadier measure of its own cost.
    let bound = seen.bound.len().max(1) as f64;
    row(
        "server CPU per pod bound, ms",
        format!("{:.2}", cpu_server * 1000.0 / bound),
    );
    row(
        "server CPU used while scheduling, cores",
        format!("{:.2}", cpu_server / span.max(1e-3)),
    );
    row(
        "simulated nodes' CPU per pod bound, ms",
        format!("{:.2}", cpu_agent * 1000.0 / bound),
    );
    row(
        "pod watch reopened / relisted (see watch_pods)",
        format!("{} / {}", seen.rewatches, seen.relists),
    );
    row(
        "load average before / after",
        format!("{load_before} / {load_after}"),
    );
    row(
        "baseline: raw pod creates per second",
        format!("{raw_rate:.0}"),
    );
    row(
        "scheduled/s as a share of raw creates/s",
        format!("{:.2}", scheduled_rate / raw_rate),
    );
    row(
        "baseline: server CPU per raw create, ms",
        format!("{raw_cpu_ms:.2}"),
    );
    row(
        "server CPU per pod bound / per raw create",
        format!("{:.2}", cpu_server * 1000.0 / bound / raw_cpu_ms),
    );
    row(
        "baseline: the algorithm alone, pods/s",
        format!("{algo_rate:.0}"),
    );
    row(
        "server RSS with nodes, before pods, MiB",
        format!("{idle_rss:.0}"),
    );
    row(
        "server RSS, all pods bound, MiB (goal < 500)",
        format!("{busy_rss:.0}"),
    );
    Ok(())
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = rt.block_on(run()) {
        eprintln!("scheduler benchmark failed: {e:#}");
        std::process::exit(1);
    }
}
