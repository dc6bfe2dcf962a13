//! Cluster DNS queries per second on one core: the server runs on a
//! single-threaded runtime (one core) on loopback with a zone of 1,000
//! Services; client threads keep a window of queries in flight for a few
//! seconds. Baseline in the same run: a UDP echo server on the same kind
//! of runtime (the loopback and syscall ceiling any UDP server has).
//!
//! cargo bench -p rkube-dns --bench dns_qps

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use rkube_dns::{wire, Resolver, Zone};

const CLIENTS: usize = 2;
const WINDOW: usize = 32;
const RUN: Duration = Duration::from_secs(3);

fn zone() -> Zone {
    let services: Vec<Service> = (0..1000)
        .map(|i| {
            serde_json::from_value(serde_json::json!({
                "metadata": {"namespace": "bench", "name": format!("svc-{i}")},
                "spec": {"clusterIP": format!("10.43.{}.{}", i / 250, i % 250 + 1),
                         "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
            }))
            .unwrap()
        })
        .collect();
    Zone::build("cluster.local", &services, &[])
}

/// Starts a one-core runtime on its own thread running `f`'s server;
/// returns its address.
fn one_core<F, Fut>(f: F) -> SocketAddr
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = SocketAddr>,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            tx.send(f().await).unwrap();
            std::future::pending::<()>().await;
        });
    });
    rx.recv().unwrap()
}

fn blast(server: SocketAddr) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for c in 0..CLIENTS {
        let (done, stop) = (done.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            sock.connect(server).unwrap();
            let queries: Vec<Vec<u8>> = (0..WINDOW)
                .map(|i| {
                    wire::build_query(
                        i as u16,
                        &format!("svc-{}.bench.svc.cluster.local", (c * 97 + i) % 1000),
                        wire::TYPE_A,
                    )
                })
                .collect();
            for q in &queries {
                sock.send(q).unwrap();
            }
            let mut buf = [0u8; 512];
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                match sock.recv(&mut buf) {
                    Ok(_) => {
                        n += 1;
                        let id = u16::from_be_bytes([buf[0], buf[1]]) as usize % WINDOW;
                        let _ = sock.send(&queries[id]);
                    }
                    // A lost datagram: refill the window.
                    Err(_) => {
                        for q in &queries {
                            let _ = sock.send(q);
                        }
                    }
                }
            }
            done.fetch_add(n, Ordering::Relaxed);
        }));
    }
    let t = Instant::now();
    std::thread::sleep(RUN);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let dns = one_core(|| async {
        let resolver = Resolver::new(zone(), vec![]);
        rkube_dns::serve(resolver, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap()
    });
    // Sanity: a real answer.
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.send_to(
        &wire::build_query(1, "svc-5.bench.svc.cluster.local", wire::TYPE_A),
        dns,
    )
    .unwrap();
    let mut buf = [0u8; 512];
    let (n, _) = s.recv_from(&mut buf).unwrap();
    assert_eq!(wire::parse_response(&buf[..n]).unwrap().answers.len(), 1);

    let echo = one_core(|| async {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            loop {
                if let Ok((n, peer)) = sock.recv_from(&mut buf).await {
                    let _ = sock.send_to(&buf[..n], peer).await;
                }
            }
        });
        addr
    });

    let base = blast(echo);
    let qps = blast(dns);
    println!(
        "dns qps: one server core, {CLIENTS} clients x {WINDOW} in flight, {}s each",
        RUN.as_secs()
    );
    println!("  baseline UDP echo:   {base:>10.0} /s");
    println!(
        "  rkube-dns A queries: {qps:>10.0} /s  (goal >= 20,000; {:.0}% of echo)",
        qps / base * 100.0
    );
}
