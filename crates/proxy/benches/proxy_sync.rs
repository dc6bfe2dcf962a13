//! EndpointSlice change to rule in force, with 1,000 Services × 10
//! endpoints in the table: the time from the changed slice arriving (as a
//! watch event into the proxy's store) to `nft -f` returning (the kernel
//! has committed the transaction), through the same code path as the
//! agent: World → changed Services' ports → Proxier::sync_services.
//! Baselines in the same run: an nft transaction that changes nothing
//! (process start plus one netlink round, the floor of any nft-driven
//! proxy) and a full-table replacement (what a non-incremental proxy
//! pays). Runs itself again inside a network namespace it creates, so nft
//! is spawned directly as on a node; needs root.
//!
//! cargo bench -p rkube-proxy --bench proxy_sync

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::Event;
use rkube_proxy::nft::Nft;
use rkube_proxy::watch::{NodeProxy, World};
use rkube_proxy::{rules, script, service_ports, Config, Proxier, System};

const SERVICES: usize = 1000;
const ENDPOINTS: usize = 10;
const ROUNDS: usize = 30;
const INSIDE: &str = "RKUBE_PROXY_BENCH_NETNS";

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

fn pct(v: &[Duration], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3
}

fn main() {
    if std::env::var_os(INSIDE).is_none() {
        let ns = format!("rkp-bench-{}", std::process::id());
        let st = Command::new("ip")
            .args(["netns", "add", &ns])
            .status()
            .unwrap();
        assert!(st.success(), "ip netns add (root needed)");
        let me = std::env::current_exe().unwrap();
        let st = Command::new("ip")
            .args(["netns", "exec", &ns])
            .arg(me)
            .env(INSIDE, "1")
            .status();
        let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        assert!(st.unwrap().success(), "bench failed");
        return;
    }
    bench();
}

fn bench() {
    let nft = Arc::new(System::default());
    let cfg = Config {
        cluster_cidr: "10.42.0.0/16".into(),
    };
    let node = NodeProxy {
        node_name: "n1".into(),
        rules: cfg.clone(),
        local_dns: None,
    };
    let services: Vec<Service> = (0..SERVICES).map(service).collect();
    let mut slices: Vec<EndpointSlice> = (0..SERVICES).map(|i| slice(i, 0)).collect();

    let mut world = World::default();
    world.service_event(Event::Init);
    for s in &services {
        world.service_event(Event::InitApply(s.clone()));
    }
    world.service_event(Event::InitDone);
    world.slice_event(Event::Init);
    for s in &slices {
        world.slice_event(Event::InitApply(s.clone()));
    }
    world.slice_event(Event::InitDone);

    let mut proxier = Proxier::new(cfg.clone(), nft.clone());
    let t = Instant::now();
    let (all, ports) = world.take_changes(&node, true);
    assert!(all.is_none());
    proxier.sync(&ports).unwrap();
    let first = t.elapsed();

    let mut incremental = Vec::new();
    let mut compute = Vec::new();
    for round in 1..=ROUNDS {
        let i = (round * 37) % SERVICES;
        // Generation 1..=9: a pattern the slice has not had.
        let s = slice(i, round % 9 + 1);
        let t = Instant::now();
        world.slice_event(Event::Apply(s));
        let (changed, ports) = world.take_changes(&node, false);
        let changed = changed.expect("a partial sync");
        assert_eq!(changed.len(), 1);
        let c = t.elapsed();
        let script = proxier.sync_services(&changed, &ports).unwrap();
        assert!(!script.is_empty(), "round {round}: nothing to apply");
        incremental.push(t.elapsed());
        compute.push(c);
    }

    let mut empty = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        // The table exists: a transaction that changes nothing.
        nft.apply(&format!("add table ip {}\n", rules::TABLE))
            .unwrap();
        empty.push(t.elapsed());
    }
    let mut full = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let ports = service_ports(&services, &slices, "n1");
        nft.apply(&script::full(&cfg, &rules::fragments(&cfg, &ports)))
            .unwrap();
        full.push(t.elapsed());
    }
    slices.clear();

    let (inc50, empty50) = (pct(&incremental, 0.5), pct(&empty, 0.5));
    println!("proxy sync: {SERVICES} services x {ENDPOINTS} endpoints, {ROUNDS} slice changes");
    println!(
        "  initial full table:                      {:>8.1} ms",
        first.as_secs_f64() * 1e3
    );
    println!("  slice change -> rule in force p50:       {inc50:>8.1} ms  (goal < 100 ms)");
    println!(
        "  slice change -> rule in force p90/max:   {:>8.1} / {:.1} ms",
        pct(&incremental, 0.9),
        pct(&incremental, 1.0)
    );
    println!(
        "    of which computing the change (p50):   {:>8.3} ms",
        pct(&compute, 0.5)
    );
    println!("  baseline empty nft transaction p50:      {empty50:>8.1} ms");
    println!(
        "  baseline full replacement p50:           {:>8.1} ms",
        pct(&full, 0.5)
    );
    println!(
        "  ratio rule-in-force / empty transaction: {:>8.2}x",
        inc50 / empty50
    );
}
