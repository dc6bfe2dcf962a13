//! EndpointSlice change to rule in force, with 1,000 Services × 10
//! endpoints in the table: the time from the changed slice to `nft -f`
//! returning (the kernel has committed the transaction). Baselines in the
//! same run: an empty nft transaction (process start, the floor of any
//! nft-driven proxy) and a full-table replacement (what a non-incremental
//! proxy pays). Runs inside a network namespace it creates; needs root.
//!
//! cargo bench -p rkube-proxy --bench proxy_sync

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use rkube_proxy::nft::Nft;
use rkube_proxy::{rules, service_ports, Config, Proxier, System};

const SERVICES: usize = 1000;
const ENDPOINTS: usize = 10;
const ROUNDS: usize = 20;

fn service(i: usize) -> Service {
    serde_json::from_value(serde_json::json!({
        "metadata": {"namespace": "bench", "name": format!("svc-{i}")},
        "spec": {"clusterIP": format!("10.43.{}.{}", i / 250, i % 250 + 1),
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
    }))
    .unwrap()
}

fn slice(i: usize, generation: usize) -> EndpointSlice {
    let eps: Vec<serde_json::Value> = (0..ENDPOINTS)
        .map(|e| {
            serde_json::json!({
            "addresses": [format!("10.42.{}.{}", i / 25, (i % 25) * 10 + e + 1)],
            "conditions": {"ready": !(e + generation).is_multiple_of(ENDPOINTS)}, "nodeName": "n1"})
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "metadata": {"namespace": "bench", "name": format!("svc-{i}-x"),
                     "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
        "addressType": "IPv4",
        "endpoints": eps,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }))
    .unwrap()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let ns = format!("rkp-bench-{}", std::process::id());
    let st = Command::new("ip")
        .args(["netns", "add", &ns])
        .status()
        .unwrap();
    assert!(st.success(), "ip netns add (root needed)");
    let nft = Arc::new(System {
        netns: Some(ns.clone()),
    });
    let cfg = Config {
        cluster_cidr: "10.42.0.0/16".into(),
    };
    let services: Vec<Service> = (0..SERVICES).map(service).collect();
    let mut slices: Vec<EndpointSlice> = (0..SERVICES).map(|i| slice(i, 0)).collect();

    let mut proxier = Proxier::new(cfg.clone(), nft.clone());
    let t = Instant::now();
    proxier
        .sync(&service_ports(&services, &slices, "n1"))
        .unwrap();
    let first = t.elapsed();

    let mut incremental = Vec::new();
    let mut compute = Vec::new();
    for round in 1..=ROUNDS {
        let i = (round * 37) % SERVICES;
        let t = Instant::now();
        // Generation 1..=9: a pattern the slice has not had.
        slices[i] = slice(i, round % 9 + 1);
        let ports = service_ports(&services, &slices, "n1");
        let c = t.elapsed();
        let script = proxier.sync(&ports).unwrap();
        assert!(!script.is_empty(), "round {round}: nothing to apply");
        assert!(
            !script.contains("delete table"),
            "round {round}: full resync"
        );
        incremental.push(t.elapsed());
        compute.push(c);
    }

    let mut empty = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        nft.apply("list tables\n").unwrap();
        empty.push(t.elapsed());
    }
    let mut full = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let ports = service_ports(&services, &slices, "n1");
        nft.apply(&rules::full(&cfg, &rules::fragments(&cfg, &ports)))
            .unwrap();
        full.push(t.elapsed());
    }
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();

    println!("proxy sync: {SERVICES} services x {ENDPOINTS} endpoints, {ROUNDS} slice changes");
    println!(
        "  initial full table:                 {:>8.1} ms",
        first.as_secs_f64() * 1e3
    );
    println!(
        "  slice change -> rule in force (p50): {:>8.1} ms  (goal < 100 ms)",
        median(incremental.clone()).as_secs_f64() * 1e3
    );
    println!(
        "  slice change -> rule in force (max): {:>8.1} ms",
        incremental.iter().max().unwrap().as_secs_f64() * 1e3
    );
    println!(
        "    of which computing rules (p50):    {:>8.1} ms",
        median(compute).as_secs_f64() * 1e3
    );
    println!(
        "  baseline empty nft run (p50):        {:>8.1} ms",
        median(empty).as_secs_f64() * 1e3
    );
    println!(
        "  baseline full replacement (p50):     {:>8.1} ms",
        median(full).as_secs_f64() * 1e3
    );
}
