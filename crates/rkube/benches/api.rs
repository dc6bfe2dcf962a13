//! API server benchmark (issue 3): the release `rkube server` on loopback,
//! driven over HTTPS/HTTP/2 by this process, with every number printed
//! next to a baseline measured in the same run — the same operation
//! straight against the embedded SQLite store (`rkube_storage`), or for
//! memory the idle server — because these shared machines are noisy.
//!
//! Upstream counterpart: the API-call latency and watch-latency SLOs of
//! Kubernetes' scalability tests (clusterloader2), cut down to one box.
//!
//! `cargo bench -p rkube --bench api` (about 2 minutes); `BENCH_SCALE=0.1`
//! for a quick run (the goals are stated for scale 1); `BENCH_SERVER_ARGS`
//! adds server flags (e.g. `--disable-controller-manager`). Results and their
//! reading: docs/PERF.md, "API server (issue 3)".

#[path = "api/fanout.rs"]
mod fanout;
#[path = "api/server.rs"]
mod server;
#[path = "api/store.rs"]
mod store;
#[path = "api/workloads.rs"]
mod workloads;

use std::time::Duration;

use anyhow::Context;

use server::Server;
use store::StoreBaseline;
use workloads::Workloads;

/// Concurrent clients of the create workloads.
const CLIENTS: usize = 16;
/// Watch streams multiplexed on one HTTP/2 connection (the server allows
/// 200 concurrent streams per connection, as hyper's default).
const WATCHES_PER_CONN: usize = 100;

/// How much work each workload does.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    pods: usize,
    gets: usize,
    list_runs: usize,
    configmap_time: Duration,
    watchers: usize,
    watch_writes: usize,
}

impl Sizes {
    fn from_env() -> Sizes {
        let scale = match std::env::var("BENCH_SCALE") {
            Err(_) => 1.0,
            Ok(raw) => match raw.parse::<f64>() {
                Ok(v) if v > 0.0 && v.is_finite() => v,
                _ => {
                    eprintln!("ignoring BENCH_SCALE={raw:?}: not a positive number");
                    1.0
                }
            },
        };
        let scaled = |n: f64, min: usize| ((n * scale).round() as usize).max(min);
        Sizes {
            pods: scaled(10_000.0, CLIENTS),
            gets: scaled(2_000.0, 100),
            list_runs: 5,
            configmap_time: Duration::from_secs_f64((10.0 * scale).max(1.0)),
            watchers: scaled(1_000.0, 10),
            watch_writes: scaled(200.0, 20),
        }
    }
}

/// A goal from issue 3.
#[derive(Clone, Copy)]
enum Goal {
    Below(f64),
    AtLeast(f64),
}

struct Row {
    metric: String,
    measured: f64,
    goal: Option<Goal>,
    baseline: Option<f64>,
}

fn main() -> anyhow::Result<()> {
    let sizes = Sizes::from_env();
    eprintln!("api bench: {sizes:?}");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let rows = runtime.block_on(run(sizes))?;
    print_table(&sizes, &rows);
    Ok(())
}

async fn run(sizes: Sizes) -> anyhow::Result<Vec<Row>> {
    let mut server = Server::start()?;
    let api = server.wait_ready().await?;
    let base = StoreBaseline::open()?;
    let result = Workloads {
        sizes,
        api,
        server: &server,
        base,
    }
    .run_all()
    .await;
    result.with_context(|| format!("benchmark failed; server log:\n{}", tail(&server.log())))
}

fn tail(log: &str) -> &str {
    let start = log.len().saturating_sub(4000);
    let start = (start..log.len())
        .find(|i| log.is_char_boundary(*i))
        .unwrap_or(log.len());
    &log[start..]
}

fn print_table(sizes: &Sizes, rows: &[Row]) {
    println!();
    println!(
        "API server benchmark: {} pods, {} watchers, {} clients (goals are for 10000 pods and 1000 watchers)",
        sizes.pods, sizes.watchers, CLIENTS
    );
    println!();
    println!("| metric | measured | goal | met? | baseline | ratio |");
    println!("| --- | ---: | ---: | --- | ---: | ---: |");
    for row in rows {
        let (goal, met) = match row.goal {
            None => ("-".to_string(), "-"),
            Some(Goal::Below(g)) => (format!("< {}", num(g)), yes_no(row.measured < g)),
            Some(Goal::AtLeast(g)) => (format!("≥ {}", num(g)), yes_no(row.measured >= g)),
        };
        let (baseline, ratio) = match row.baseline {
            Some(b) if b > 0.0 => (num(b), format!("{:.2}", row.measured / b)),
            Some(b) => (num(b), "-".to_string()),
            None => ("-".to_string(), "-".to_string()),
        };
        println!(
            "| {} | {} | {goal} | {met} | {baseline} | {ratio} |",
            row.metric,
            num(row.measured)
        );
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// Three significant digits, no exponent.
fn num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The `q` quantile (0..=1) of `times`, in milliseconds.
fn quantile_ms(times: &mut [Duration], q: f64) -> f64 {
    if times.is_empty() {
        return f64::NAN;
    }
    times.sort_unstable();
    let rank = ((q * times.len() as f64).ceil() as usize).clamp(1, times.len());
    times[rank - 1].as_secs_f64() * 1000.0
}
