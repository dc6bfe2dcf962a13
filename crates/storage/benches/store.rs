//! Storage benchmark: the same workload against the embedded SQLite store
//! and a real etcd started by the benchmark, printed side by side with the
//! ratio sqlite/etcd.
//!
//! Upstream counterpart: etcd's `benchmark` tool (put, range, watch-latency)
//! and kine's comparisons against etcd. The machines this runs on are
//! shared and noisy, so absolute numbers mean little; the ratio measured in
//! one run is the result (see docs/PERF.md). Each workload runs on one
//! backend and then the other before the next workload starts, so a burst
//! of noise tends to hit both.
//!
//! `cargo bench -p rkube-storage --bench store`; `BENCH_SCALE=0.1` for a
//! quick run, `BENCH_VALUE_BYTES` for another value size.

#[path = "../tests/support/etcd.rs"]
mod etcd_server;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rkube_storage::etcd::{EtcdConfig, EtcdStore};
use rkube_storage::sqlite::SqliteStore;
use rkube_storage::{ListOptions, Store};

use etcd_server::EtcdServer;

/// Concurrency of the "16 writers" and "16 readers" workloads.
const CONCURRENCY: usize = 16;
/// How long the watcher may wait for one event before the run is abandoned.
const WATCH_DEADLINE: Duration = Duration::from_secs(30);

/// How much work each workload does.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    value_bytes: usize,
    /// Rounds of each throughput workload per backend (median reported).
    rounds: usize,
    /// Writes per round.
    writes_one: usize,
    /// Writes per round; also the number of keys the list workload lists
    /// (those of the first round).
    writes_many: usize,
    /// Reads per round.
    reads: usize,
    list_runs: usize,
    watch_writes: usize,
}

impl Sizes {
    fn from_env() -> Sizes {
        let scale: f64 = env_number("BENCH_SCALE").unwrap_or(1.0);
        let scaled = |n: f64| ((n * scale).round() as usize).max(CONCURRENCY);
        Sizes {
            value_bytes: env_number("BENCH_VALUE_BYTES").map_or(1024, |v: f64| v as usize),
            rounds: env_number("BENCH_ROUNDS").map_or(3, |v: f64| v as usize),
            writes_one: scaled(1_500.0),
            writes_many: scaled(10_000.0),
            reads: scaled(20_000.0),
            list_runs: 7,
            watch_writes: scaled(1_000.0),
        }
    }
}

fn env_number(name: &str) -> Option<f64> {
    let raw = std::env::var(name).ok()?;
    match raw.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Some(v),
        _ => {
            eprintln!("ignoring {name}={raw:?}: not a positive number");
            None
        }
    }
}

/// One measured number per backend, or why it could not be measured.
type Cell = Result<f64, String>;

/// A row of the table: what, how it is better, and the value per backend.
struct Row {
    metric: String,
    higher_is_better: bool,
    cells: Vec<Cell>,
}

fn main() {
    let sizes = Sizes::from_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let rows = runtime.block_on(run(sizes));
    print_table(&sizes, &rows);
}

async fn run(sizes: Sizes) -> Vec<Row> {
    // The SQLite file goes in the same temp directory tree (same disk) as
    // etcd's data dir.
    let dir = tempfile::Builder::new()
        .prefix("rkube-bench-sqlite-")
        .tempdir()
        .expect("temp dir");
    let sqlite = SqliteStore::open(&dir.path().join("state.db")).expect("open sqlite");
    let etcd_server = tokio::task::spawn_blocking(EtcdServer::start)
        .await
        .expect("start etcd");
    let config = EtcdConfig {
        endpoints: vec![etcd_server.endpoint.clone()],
        ..Default::default()
    };
    let etcd = EtcdStore::connect(&config).await.expect("connect to etcd");
    let stores: Vec<Arc<dyn Store>> = vec![Arc::new(sqlite), Arc::new(etcd)];
    let value = vec![b'v'; sizes.value_bytes];

    for store in &stores {
        warm_up(store.as_ref(), &value).await;
    }

    let mut rows = Vec::new();
    let mut row = |metric: String, higher_is_better: bool, cells: Vec<Cell>| {
        rows.push(Row {
            metric,
            higher_is_better,
            cells,
        })
    };

    let rounds = sizes.rounds;
    let cells = alternate("writes/s, 1 writer", &stores, rounds, |store, round| {
        let value = value.clone();
        async move { writes(store, format!("one-{round}"), 1, sizes.writes_one, value).await }
    })
    .await;
    row("writes/s, 1 writer".into(), true, cells);

    let cells = alternate("writes/s, 16 writers", &stores, rounds, |store, round| {
        let (value, n) = (value.clone(), sizes.writes_many);
        async move { writes(store, format!("many-{round}"), CONCURRENCY, n, value).await }
    })
    .await;
    row(format!("writes/s, {CONCURRENCY} writers"), true, cells);

    for readers in [1, CONCURRENCY] {
        let what = format!("point reads/s, {readers} readers");
        let cells = alternate(&what, &stores, rounds, |store, _| {
            reads(store, readers, sizes.reads, sizes.writes_one)
        })
        .await;
        let who = if readers == 1 { "reader" } else { "readers" };
        row(format!("point reads/s, {readers} {who}"), true, cells);
    }

    // In one page, and in pages of 500 (kubectl's default --chunk-size).
    for limit in [0, 500] {
        let mut cells = Vec::new();
        for store in &stores {
            let keys = sizes.writes_many;
            cells.push(list(store.as_ref(), keys, sizes.list_runs, limit).await);
        }
        let how = if limit == 0 {
            "one page".to_string()
        } else {
            format!("pages of {limit}")
        };
        row(
            format!("list {} keys ({how}), median ms", sizes.writes_many),
            false,
            cells,
        );
    }

    let mut p50 = Vec::new();
    let mut p99 = Vec::new();
    for store in &stores {
        match watch_latency(store.clone(), sizes.watch_writes, &value).await {
            Ok((a, b)) => {
                p50.push(Ok(a));
                p99.push(Ok(b));
            }
            Err(e) => {
                p50.push(Err(e.clone()));
                p99.push(Err(e));
            }
        }
    }
    row("watch latency p50, ms".into(), false, p50);
    row("watch latency p99, ms".into(), false, p99);

    drop(stores);
    drop(etcd_server);
    rows
}

fn key(workload: &str, i: usize) -> String {
    format!("/registry/bench/{workload}/k{i:08}")
}

/// Open connections and fill caches before anything is timed.
async fn warm_up(store: &dyn Store, value: &[u8]) {
    for i in 0..50 {
        let kv = store
            .create(&key("warm", i), value.to_vec(), None)
            .await
            .expect("warm-up write");
        store.get(&kv.key, None).await.expect("warm-up read");
    }
}

/// Run `measure` `rounds` times on each store, alternating between them so
/// that a burst of noise from other work on the machine hits both, and
/// keep each store's median (or its first error).
async fn alternate<F, Fut>(
    what: &str,
    stores: &[Arc<dyn Store>],
    rounds: usize,
    mut measure: F,
) -> Vec<Cell>
where
    F: FnMut(Arc<dyn Store>, usize) -> Fut,
    Fut: Future<Output = Cell>,
{
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); stores.len()];
    let mut errors: Vec<Option<String>> = vec![None; stores.len()];
    for round in 0..rounds {
        for (i, store) in stores.iter().enumerate() {
            if errors[i].is_none() {
                match measure(store.clone(), round).await {
                    Ok(v) => {
                        // Every sample on stderr, to judge the noise.
                        eprintln!("{what}, round {round}: {} {v:.1}", store.backend());
                        samples[i].push(v)
                    }
                    Err(e) => errors[i] = Some(e),
                }
            }
        }
    }
    samples
        .into_iter()
        .zip(errors)
        .map(|(mut samples, error)| match error {
            Some(e) => Err(e),
            None => {
                samples.sort_by(f64::total_cmp);
                Ok(samples[samples.len() / 2])
            }
        })
        .collect()
}

/// `total` creates of new keys under `workload` by `writers` concurrent
/// tasks; writes/s.
async fn writes(
    store: Arc<dyn Store>,
    workload: String,
    writers: usize,
    total: usize,
    value: Vec<u8>,
) -> Cell {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (store, value, workload) = (store.clone(), value.clone(), workload.clone());
        tasks.push(tokio::spawn(async move {
            // Writer w takes every writers-th key, so keys interleave.
            for i in (w..total).step_by(writers) {
                store
                    .create(&key(&workload, i), value.clone(), None)
                    .await
                    .map_err(|e| format!("write: {e}"))?;
            }
            Ok::<(), String>(())
        }));
    }
    for task in tasks {
        task.await.map_err(|e| format!("writer task: {e}"))??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// `total` gets of random existing keys (from the 1-writer workload) by
/// `readers` concurrent tasks; reads/s.
async fn reads(store: Arc<dyn Store>, readers: usize, total: usize, keys: usize) -> Cell {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for r in 0..readers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = XorShift(0x9e37_79b9_7f4a_7c15 ^ (r as u64 + 1));
            for _ in (r..total).step_by(readers) {
                let k = key("one-0", rng.below(keys));
                match store.get(&k, None).await {
                    Ok((Some(_), _)) => {}
                    Ok((None, _)) => return Err(format!("read: {k} is missing")),
                    Err(e) => return Err(format!("read: {e}")),
                }
            }
            Ok(())
        }));
    }
    for task in tasks {
        task.await.map_err(|e| format!("reader task: {e}"))??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// Median time to list the whole prefix the 16-writer workload filled, in
/// pages of `limit` keys (0: one page) pinned to the first page's revision,
/// as the apiserver pages a LIST; ms.
async fn list(store: &dyn Store, expected: usize, runs: usize, limit: usize) -> Cell {
    let prefix = "/registry/bench/many-0/";
    let mut times = Vec::new();
    // One untimed run first, like the warm-up.
    for run in 0..=runs {
        let started = Instant::now();
        let mut opts = ListOptions {
            limit,
            ..Default::default()
        };
        let mut listed = 0;
        loop {
            let page = store
                .list(prefix, opts.clone())
                .await
                .map_err(|e| format!("list: {e}"))?;
            listed += page.items.len();
            if !page.more {
                break;
            }
            opts.start_after = page.items.last().map(|kv| kv.key.clone());
            opts.revision = Some(page.revision);
        }
        let elapsed = started.elapsed();
        if listed != expected {
            return Err(format!("list returned {listed} keys, expected {expected}"));
        }
        if run > 0 {
            times.push(elapsed.as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Time from just before each write call to the watcher receiving its
/// event, over `writes` sequential writes; (p50, p99) in ms.
async fn watch_latency(
    store: Arc<dyn Store>,
    writes: usize,
    value: &[u8],
) -> Result<(f64, f64), String> {
    let prefix = "/registry/bench/watch/";
    let from = store.current_revision().await.map_err(|e| e.to_string())?;
    let mut watch = store
        .watch(prefix, from)
        .await
        .map_err(|e| format!("watch: {e}"))?;
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();

    let watcher = {
        let sent = sent.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(writes);
            while latencies.len() < writes {
                let event = match tokio::time::timeout(WATCH_DEADLINE, watch.next()).await {
                    Ok(Some(Ok(event))) => event,
                    Ok(Some(Err(e))) => return Err(format!("watch: {e}")),
                    Ok(None) => return Err("watch ended".to_string()),
                    Err(_) => return Err(format!("no watch event in {WATCH_DEADLINE:?}")),
                };
                let received = Instant::now();
                let before = sent.lock().unwrap().remove(&event.kv.key);
                let before = before.ok_or_else(|| format!("unexpected event {}", event.kv.key))?;
                latencies.push((received - before).as_secs_f64() * 1e3);
            }
            Ok(latencies)
        })
    };

    for i in 0..writes {
        let k = format!("{prefix}k{i:08}");
        // Recorded before the call: the latency includes the write itself,
        // which is what a client waiting for its own change observes.
        sent.lock().unwrap().insert(k.clone(), Instant::now());
        if let Err(e) = store.create(&k, value.to_vec(), None).await {
            watcher.abort();
            return Err(format!("write: {e}"));
        }
    }
    let mut latencies = watcher.await.map_err(|e| format!("watcher task: {e}"))??;
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Ok((at(0.50), at(0.99)))
}

/// A tiny PRNG: the benchmark needs spread, not quality, and no dependency.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn print_table(sizes: &Sizes, rows: &[Row]) {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!();
    println!(
        "storage benchmark: {} B values, {cpus} CPUs; per round: {} writes (1 writer), \
         {} writes ({CONCURRENCY} writers), {} reads; median of {} rounds; \
         list: median of {} runs; watch: {} writes",
        sizes.value_bytes,
        sizes.writes_one,
        sizes.writes_many,
        sizes.reads,
        sizes.rounds,
        sizes.list_runs,
        sizes.watch_writes
    );
    println!();
    println!("| metric | sqlite | etcd | sqlite/etcd | better |");
    println!("| --- | ---: | ---: | ---: | --- |");
    let mut errors = Vec::new();
    for row in rows {
        let show = |cell: &Cell| match cell {
            Ok(v) if *v >= 100.0 => format!("{v:.0}"),
            Ok(v) => format!("{v:.2}"),
            Err(_) => "error".to_string(),
        };
        let ratio = match (&row.cells[0], &row.cells[1]) {
            (Ok(s), Ok(e)) if *e > 0.0 => format!("{:.2}", s / e),
            _ => "-".to_string(),
        };
        let better = if row.higher_is_better {
            "higher"
        } else {
            "lower"
        };
        println!(
            "| {} | {} | {} | {ratio} | {better} |",
            row.metric,
            show(&row.cells[0]),
            show(&row.cells[1])
        );
        for (backend, cell) in ["sqlite", "etcd"].iter().zip(&row.cells) {
            if let Err(e) = cell {
                errors.push(format!("{backend}, {}: {e}", row.metric));
            }
        }
    }
    for e in &errors {
        println!("error: {e}");
    }
}
