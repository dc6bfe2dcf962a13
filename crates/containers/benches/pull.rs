//! Pull + unpack throughput of a ~50 MiB image from a local docker-registry
//! (issue 4 target: >= 100 MiB/s), with a same-run baseline: `cp` and a
//! plain read + write + fsync of the same bytes on the same disk, because
//! these machines are noisy.
//!
//! Run: `cargo bench -p rkube-containers --bench pull`.

#[path = "../tests/support/registry.rs"]
mod registry;

use std::path::Path;
use std::time::{Duration, Instant};

use rkube_containers::image::build::{ImageBuilder, LayerBuilder};
use rkube_containers::image::client::Client;
use rkube_containers::image::{ImageService, RegistriesConfig};

const LAYERS: usize = 2;
const FILES_PER_LAYER: usize = 5;
const FILE_SIZE: usize = 5 << 20;
const RUNS: usize = 5;

/// Incompressible bytes (xorshift64*), so gzip cannot shrink the image.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn mib_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn copy_baseline(src: &Path, scratch: &Path) -> (Duration, Duration) {
    let dst = scratch.join("cp-copy");
    let t = Instant::now();
    let ok = std::process::Command::new("cp")
        .arg(src)
        .arg(&dst)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let cp = t.elapsed();
    assert!(ok, "cp failed");
    std::fs::remove_file(&dst).unwrap();
    let t = Instant::now();
    let data = std::fs::read(src).unwrap();
    let f = std::fs::File::create(&dst).unwrap();
    std::io::Write::write_all(&mut &f, &data).unwrap();
    f.sync_all().unwrap();
    let raw = t.elapsed();
    std::fs::remove_file(&dst).unwrap();
    (cp, raw)
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let reg = registry::Registry::start();
    let registries = || {
        RegistriesConfig::parse(&format!(
            "mirrors:\n  \"{0}\":\n    endpoint: [\"http://{0}\"]\n",
            reg.addr
        ))
        .unwrap()
    };
    let mut image = ImageBuilder::new();
    for l in 0..LAYERS {
        let mut layer = LayerBuilder::new().dir(&format!("data{l}"), 0o755);
        for f in 0..FILES_PER_LAYER {
            layer = layer.file(
                &format!("data{l}/f{f}"),
                random_bytes(FILE_SIZE, (l * 100 + f) as u64 + 7),
                0o644,
            );
        }
        image = image.layer(layer);
    }
    let built = image.build().unwrap();
    let reference = format!("{}/bench/random:1", reg.addr);
    rt.block_on(built.push(&Client::new(registries()), &reference))
        .unwrap();
    let bytes: u64 = built.layers.iter().map(|(d, _)| d.size).sum();

    // Baseline input: the layer blobs concatenated into one file.
    let scratch = tempfile::tempdir().unwrap();
    let src = scratch.path().join("blobs");
    let mut all = Vec::with_capacity(bytes as usize);
    for (_, b) in &built.layers {
        all.extend_from_slice(b);
    }
    std::fs::write(&src, &all).unwrap();
    drop(all);

    let mut pulls = Vec::new();
    let mut cps = Vec::new();
    let mut raws = Vec::new();
    for _ in 0..RUNS {
        let root = tempfile::tempdir().unwrap();
        let svc = ImageService::open(root.path(), registries()).unwrap();
        let t = Instant::now();
        let image = rt.block_on(svc.pull(&reference, None)).unwrap();
        pulls.push(t.elapsed());
        assert_eq!(image.layers.len(), LAYERS);
        let (cp, raw) = copy_baseline(&src, scratch.path());
        cps.push(cp);
        raws.push(raw);
    }
    let (pull, cp, raw) = (median(pulls), median(cps), median(raws));
    println!(
        "image: {} layers, {:.1} MiB of layer blobs (gzip of random data)",
        LAYERS,
        bytes as f64 / (1 << 20) as f64
    );
    println!(
        "pull+unpack (fresh store):  {:>8.1} ms  {:>7.1} MiB/s",
        pull.as_secs_f64() * 1e3,
        mib_per_s(bytes, pull)
    );
    println!(
        "baseline cp:                {:>8.1} ms  {:>7.1} MiB/s",
        cp.as_secs_f64() * 1e3,
        mib_per_s(bytes, cp)
    );
    println!(
        "baseline read+write+fsync:  {:>8.1} ms  {:>7.1} MiB/s",
        raw.as_secs_f64() * 1e3,
        mib_per_s(bytes, raw)
    );
    println!(
        "ratio pull/cp: {:.2}x   pull/(read+write+fsync): {:.2}x   (median of {RUNS} runs)",
        pull.as_secs_f64() / cp.as_secs_f64(),
        pull.as_secs_f64() / raw.as_secs_f64()
    );
}
