//! The measured workloads, each followed by its store baseline so a burst
//! of machine noise tends to hit both sides of a ratio.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use http_body_util::BodyExt;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::json;

use crate::fanout::{self, Fanout, FanoutResult};
use crate::server::{Api, Conn, Server};
use crate::store::StoreBaseline;
use crate::{quantile_ms, Goal, Row, Sizes, CLIENTS, WATCHES_PER_CONN};

const PODS_NS: &str = "bench";
const CONFIGMAPS_NS: &str = "bench-cm";
const WATCH_NS: &str = "bench-watch";
const MIB: f64 = 1024.0 * 1024.0;

pub struct Workloads<'a> {
    pub sizes: Sizes,
    pub api: Api,
    pub server: &'a Server,
    pub base: StoreBaseline,
}

/// The parts of a list response the benchmark checks.
#[derive(Deserialize)]
struct ListShape {
    metadata: ListMeta,
    items: Vec<IgnoredAny>,
}

#[derive(Deserialize)]
struct ListMeta {
    #[serde(rename = "resourceVersion")]
    resource_version: String,
    #[serde(rename = "continue")]
    continue_token: Option<String>,
}

impl Workloads<'_> {
    pub async fn run_all(&self) -> anyhow::Result<Vec<Row>> {
        let mut rows = Vec::new();
        // Let start-up allocations settle before the idle reading.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle = self.server.rss()? as f64 / MIB;
        rows.push(row("server RSS idle, MiB", idle, None, None));

        let conn = self.api.connect().await?;
        for ns in [PODS_NS, CONFIGMAPS_NS, WATCH_NS] {
            let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            conn.create("/api/v1/namespaces", body.to_string().into())
                .await?;
        }
        self.pods(&conn, idle, &mut rows).await?;
        self.configmaps(&conn, &mut rows).await?;
        self.watches(&conn, idle, &mut rows).await?;
        Ok(rows)
    }

    async fn pods(&self, conn: &Conn, idle: f64, rows: &mut Vec<Row>) -> anyhow::Result<()> {
        let n = self.sizes.pods;
        let sample = pod(0).to_string();
        eprintln!("creating {n} pods ({} bytes of JSON each)", sample.len());
        let rate = self.create_pods(n).await?;
        let one = format!("/api/v1/namespaces/{PODS_NS}/pods/{}", pod_name(n / 2));
        let stored = conn.get_ok(&one).await?;
        eprintln!("a stored pod is {} bytes of JSON", stored.len());
        let base_rate = self
            .base
            .creates(&pod_prefix(), n, CLIENTS, &stored)
            .await?;
        rows.push(row(
            &format!("pod creates/s, {CLIENTS} clients"),
            rate,
            None,
            Some(base_rate),
        ));
        let with_pods = self.server.rss()? as f64 / MIB;

        eprintln!("{} GETs of one pod", self.sizes.gets);
        let mut times = Vec::with_capacity(self.sizes.gets);
        for _ in 0..self.sizes.gets {
            let started = Instant::now();
            conn.get_ok(&one).await?;
            times.push(started.elapsed());
        }
        let key = format!("{}{:05}", pod_prefix(), n / 2);
        let mut base_times = self.base.gets(&key, self.sizes.gets).await?;
        for (q, label, goal) in [(0.5, "p50", None), (0.99, "p99", Some(Goal::Below(5.0)))] {
            rows.push(row(
                &format!("GET one pod {label}, ms"),
                quantile_ms(&mut times, q),
                goal,
                Some(quantile_ms(&mut base_times, q)),
            ));
        }

        for (limit, label) in [(0, "one page"), (500, "pages of 500")] {
            eprintln!("LIST all pods, {label}");
            let mut times = Vec::new();
            let mut base_times = Vec::new();
            for _ in 0..self.sizes.list_runs {
                times.push(self.list_pods(conn, limit, n).await?);
                let (t, count) = self.base.list(&pod_prefix(), limit).await?;
                if count != n {
                    bail!("baseline list returned {count} keys, not {n}");
                }
                base_times.push(t);
            }
            rows.push(row(
                &format!("LIST {n} pods ({label}), median ms"),
                quantile_ms(&mut times, 0.5),
                Some(Goal::Below(300.0)),
                Some(quantile_ms(&mut base_times, 0.5)),
            ));
        }
        // Selected lists: a field selector lets the server skip stored
        // objects without the value undecoded (the kubelet's
        // spec.nodeName list, kubectl wait's metadata.name list); a
        // label selector decodes every object.
        let one_name = pod_name(n / 3);
        for (query, label, want) in [
            (
                format!("fieldSelector=metadata.name%3D{one_name}"),
                "fieldSelector metadata.name, 1 match",
                1,
            ),
            (
                "fieldSelector=spec.nodeName%3Dnode-7".to_string(),
                "fieldSelector spec.nodeName, 0 matches",
                0,
            ),
            (
                "labelSelector=shard%3D3".to_string(),
                "labelSelector, 1/16 match",
                (0..n).filter(|i| i % 16 == 3).count(),
            ),
        ] {
            eprintln!("LIST pods, {label}");
            let mut times = Vec::new();
            for _ in 0..self.sizes.list_runs {
                times.push(self.list_selected(conn, &query, want).await?);
            }
            rows.push(row(
                &format!("LIST {n} pods ({label}), median ms"),
                quantile_ms(&mut times, 0.5),
                None,
                None,
            ));
        }
        let after_lists = self.server.rss()? as f64 / MIB;
        rows.push(row(
            &format!("server RSS with {n} pods, MiB"),
            with_pods,
            Some(Goal::Below(150.0)),
            Some(idle),
        ));
        rows.push(row(
            &format!("server RSS with {n} pods after the LISTs, MiB"),
            after_lists,
            Some(Goal::Below(150.0)),
            Some(idle),
        ));
        Ok(())
    }

    /// `n` pods created by [`CLIENTS`] clients, each on its own
    /// connection; creates per second.
    async fn create_pods(&self, n: usize) -> anyhow::Result<f64> {
        let path = format!("/api/v1/namespaces/{PODS_NS}/pods");
        let next = Arc::new(AtomicUsize::new(0));
        let mut conns = Vec::new();
        for _ in 0..CLIENTS {
            conns.push(self.api.connect().await?);
        }
        let started = Instant::now();
        let tasks: Vec<_> = conns
            .into_iter()
            .map(|conn| {
                let (next, path) = (next.clone(), path.clone());
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return anyhow::Ok(());
                        }
                        conn.create(&path, pod(i).to_string().into()).await?;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await??;
        }
        Ok(n as f64 / started.elapsed().as_secs_f64())
    }

    /// One LIST of pods in all namespaces with a selector (`query`); the
    /// time spent waiting for the response.
    async fn list_selected(
        &self,
        conn: &Conn,
        query: &str,
        want: usize,
    ) -> anyhow::Result<Duration> {
        let path = format!("/api/v1/pods?{query}");
        let started = Instant::now();
        let body = conn.get_ok(&path).await?;
        let spent = started.elapsed();
        let list: ListShape =
            serde_json::from_slice(&body).context("the pod list is not a list")?;
        if list.items.len() != want {
            bail!(
                "LIST ?{query} returned {} pods, not {want}",
                list.items.len()
            );
        }
        Ok(spent)
    }

    /// One whole LIST of pods in all namespaces; the time spent waiting
    /// for responses (checking them happens off the clock).
    async fn list_pods(&self, conn: &Conn, limit: usize, want: usize) -> anyhow::Result<Duration> {
        let mut spent = Duration::ZERO;
        let mut count = 0;
        let mut next: Option<String> = None;
        loop {
            let mut path = "/api/v1/pods".to_string();
            if limit > 0 {
                path.push_str(&format!("?limit={limit}"));
            }
            if let Some(token) = &next {
                path.push_str(&format!("&continue={}", percent_encode(token)));
            }
            let started = Instant::now();
            let body = conn.get_ok(&path).await?;
            spent += started.elapsed();
            let list: ListShape =
                serde_json::from_slice(&body).context("the pod list is not a list")?;
            count += list.items.len();
            if list.metadata.resource_version.is_empty() {
                bail!("the pod list has no resourceVersion");
            }
            match list.metadata.continue_token.filter(|t| !t.is_empty()) {
                Some(token) if limit > 0 => next = Some(token),
                _ => break,
            }
        }
        if count != want {
            bail!("LIST returned {count} pods, not {want}");
        }
        Ok(spent)
    }

    async fn configmaps(&self, conn: &Conn, rows: &mut Vec<Row>) -> anyhow::Result<()> {
        let time = self.sizes.configmap_time;
        eprintln!("creating configmaps for {time:?} with {CLIENTS} clients");
        let path = format!("/api/v1/namespaces/{CONFIGMAPS_NS}/configmaps");
        let sample = conn
            .create(&path, configmap("sample").to_string().into())
            .await?;
        let mut conns = Vec::new();
        for _ in 0..CLIENTS {
            conns.push(self.api.connect().await?);
        }
        let started = Instant::now();
        let tasks: Vec<_> = conns
            .into_iter()
            .enumerate()
            .map(|(client, conn)| {
                let path = path.clone();
                tokio::spawn(async move {
                    let mut done = 0usize;
                    while started.elapsed() < time {
                        let body = configmap(&format!("cm-{client}-{done}")).to_string();
                        conn.create(&path, body.into()).await?;
                        done += 1;
                    }
                    anyhow::Ok(done)
                })
            })
            .collect();
        let mut total = 0;
        for task in tasks {
            total += task.await??;
        }
        let rate = total as f64 / started.elapsed().as_secs_f64();
        let prefix = format!("/registry/configmaps/{CONFIGMAPS_NS}/");
        let base = self
            .base
            .creates_for(&prefix, time, CLIENTS, &sample)
            .await?;
        rows.push(row(
            &format!("ConfigMap creates/s, {CLIENTS} clients"),
            rate,
            Some(Goal::AtLeast(2000.0)),
            Some(base),
        ));
        Ok(())
    }

    async fn watches(&self, conn: &Conn, idle: f64, rows: &mut Vec<Row>) -> anyhow::Result<()> {
        let (watchers, writes) = (self.sizes.watchers, self.sizes.watch_writes);
        eprintln!("{watchers} watchers, {writes} writes");
        let path = format!("/api/v1/namespaces/{WATCH_NS}/configmaps");
        let list: ListShape = serde_json::from_slice(&conn.get_ok(&path).await?)?;
        let watch_path = format!(
            "{path}?watch=true&resourceVersion={}",
            list.metadata.resource_version
        );
        let mut tasks = Vec::new();
        let mut rss_watching = 0.0;
        let spawned = &mut tasks;
        let rss = &mut rss_watching;
        let start = move |fan: Arc<Fanout>| async move {
            let mut conns = Vec::new();
            for _ in 0..watchers.div_ceil(WATCHES_PER_CONN) {
                conns.push(self.api.connect().await?);
            }
            for w in 0..watchers {
                let body = conns[w / WATCHES_PER_CONN].stream(&watch_path).await?;
                spawned.push(tokio::spawn(read_watch(body, fan.clone())));
            }
            *rss = self.server.rss()? as f64 / MIB;
            anyhow::Ok(())
        };
        // The writer is a client of its own, as a controller would be.
        let writer = self.api.connect().await?;
        let write = |i: usize| {
            let (conn, path) = (writer.clone(), path.clone());
            async move {
                let body = configmap(&format!("bench-w-{i:05}")).to_string();
                conn.create(&path, body.into()).await?;
                anyhow::Ok(())
            }
        };
        let measured = fanout::run(watchers, writes, start, write).await;
        for task in tasks {
            task.abort();
        }
        let mut measured = measured?;
        let value = configmap("bench-w-00000").to_string().into_bytes();
        let prefix = format!("/registry/configmaps/{WATCH_NS}/");
        let mut base = self.base.fanout(&prefix, watchers, writes, &value).await?;
        for (q, label, goal) in [(0.5, "p50", None), (0.99, "p99", Some(Goal::Below(100.0)))] {
            rows.push(row(
                &format!("watch latency {label}, {watchers} watchers, ms"),
                quantile_ms(&mut measured.latencies, q),
                goal,
                Some(quantile_ms(&mut base.latencies, q)),
            ));
        }
        rows.push(row(
            &format!("watch deliveries missed (of {})", watchers * writes),
            missed(&measured),
            None,
            Some(missed(&base)),
        ));
        rows.push(row(
            &format!("server RSS with {watchers} watchers, MiB"),
            rss_watching,
            None,
            Some(idle),
        ));
        Ok(())
    }
}

fn missed(result: &FanoutResult) -> f64 {
    result.missed as f64
}

/// Read a watch stream line by line, reporting each `bench-w-<i>` event.
async fn read_watch(mut body: hyper::body::Incoming, fan: Arc<Fanout>) {
    const MARKER: &[u8] = b"\"name\":\"bench-w-";
    let mut buf: Vec<u8> = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            if let Some(i) = fanout::index_after(&buf[..end], MARKER) {
                fan.seen(i);
            }
            buf.drain(..=end);
        }
    }
}

fn row(metric: &str, measured: f64, goal: Option<Goal>, baseline: Option<f64>) -> Row {
    Row {
        metric: metric.to_string(),
        measured,
        goal,
        baseline,
    }
}

fn pod_prefix() -> String {
    format!("/registry/pods/{PODS_NS}/bench-pod-")
}

fn pod_name(i: usize) -> String {
    format!("bench-pod-{i:05}")
}

/// A pod as a Deployment would create it: one container with ports,
/// environment, resources, probes and a ConfigMap volume (about 2.5 KB of
/// JSON before the server adds its defaults).
fn pod(i: usize) -> serde_json::Value {
    let env: Vec<_> = [
        ("LOG_LEVEL", "info"),
        ("LOG_FORMAT", "json"),
        ("HTTP_PORT", "8080"),
        ("METRICS_PORT", "9102"),
        ("CACHE_SIZE_MB", "64"),
        (
            "UPSTREAM_URL",
            "http://backend.bench.svc.cluster.local:8080",
        ),
        ("FEATURE_FLAGS", "new-checkout,fast-search,dark-mode"),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://otel-collector.observability:4317",
        ),
    ]
    .iter()
    .map(|(k, v)| json!({"name": k, "value": v}))
    .chain([
        json!({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
        json!({"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}),
    ])
    .collect();
    let probe = |path: &str| {
        json!({"httpGet": {"path": path, "port": 8080, "scheme": "HTTP"},
               "initialDelaySeconds": 5, "periodSeconds": 10, "timeoutSeconds": 1,
               "successThreshold": 1, "failureThreshold": 3})
    };
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(i),
            "namespace": PODS_NS,
            "labels": {
                "app.kubernetes.io/name": "web",
                "app.kubernetes.io/instance": "web-bench",
                "app.kubernetes.io/version": "1.27.3",
                "tier": "frontend",
                "pod-template-hash": "5d8f7c9b4",
                "shard": (i % 16).to_string(),
            },
            "annotations": {
                "kubectl.kubernetes.io/default-container": "web",
                "prometheus.io/scrape": "true",
                "prometheus.io/port": "9102",
            },
        },
        "spec": {
            "containers": [{
                "name": "web",
                "image": "registry.example.com/team/web:1.27.3",
                "imagePullPolicy": "IfNotPresent",
                "command": ["/app/server"],
                "args": ["--port=8080", "--metrics-port=9102", "--config=/etc/web/config.yaml"],
                "ports": [
                    {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                    {"name": "metrics", "containerPort": 9102, "protocol": "TCP"},
                ],
                "env": env,
                "resources": {
                    "requests": {"cpu": "100m", "memory": "128Mi"},
                    "limits": {"cpu": "500m", "memory": "256Mi"},
                },
                "volumeMounts": [{"name": "config", "mountPath": "/etc/web", "readOnly": true}],
                "readinessProbe": probe("/readyz"),
                "livenessProbe": probe("/healthz"),
            }],
            "volumes": [{"name": "config", "configMap": {"name": "web-config", "defaultMode": 420}}],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "nodeSelector": {"kubernetes.io/os": "linux"},
        },
    })
}

/// A small ConfigMap, like most real ones.
fn configmap(name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "data": {
            "config.yaml": "listen: :8080\nlog_level: info\ncache_size_mb: 64\n",
            "feature-flags": "new-checkout,fast-search",
        },
    })
}

/// Percent-encode everything but unreserved characters, for a query value.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
