//! Allocator tests on the real SQLite store: no two callers get the same
//! value, released values come back, full ranges say so in upstream's
//! words, and requests outside the range are refused.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use rkube_storage::sqlite::SqliteStore;
use rkube_storage::Store;

use super::allocator::{
    AllocError, Allocator, Ipv4Cidr, StoreAllocator, NODE_PORTS_KEY, SERVICE_IPS_KEY,
};

fn open(
    cidr: &str,
    ports: std::ops::RangeInclusive<u16>,
) -> (tempfile::TempDir, Arc<dyn Store>, Arc<StoreAllocator>) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("state.db")).unwrap());
    let alloc = StoreAllocator::new(store.clone(), Ipv4Cidr::parse(cidr).unwrap(), ports);
    (dir, store, Arc::new(alloc))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_allocations_never_collide() {
    let (_dir, _store, alloc) = open("10.43.0.0/27", 30000..=30039);
    let mut tasks = Vec::new();
    for _ in 0..24 {
        let a = alloc.clone();
        tasks.push(tokio::spawn(async move {
            let ip = a.allocate_cluster_ip(None, false).await.unwrap();
            let port = a.allocate_node_port(None, false).await.unwrap();
            (ip, port)
        }));
    }
    let mut ips = HashSet::new();
    let mut ports = HashSet::new();
    for t in tasks {
        let (ip, port) = t.await.unwrap();
        assert!(ips.insert(ip), "{ip} handed out twice");
        assert!(ports.insert(port), "{port} handed out twice");
        assert!((30000..=30039).contains(&port));
    }
    assert_eq!(ips.len(), 24);
}

#[tokio::test]
async fn exhaustion_release_and_reuse() {
    // A /29 has six usable addresses (.1 to .6).
    let (_dir, store, alloc) = open("10.43.0.0/29", 30000..=30001);
    let mut got = HashSet::new();
    for _ in 0..6 {
        got.insert(alloc.allocate_cluster_ip(None, false).await.unwrap());
    }
    let want: HashSet<IpAddr> = (1..=6).map(|i| ip(&format!("10.43.0.{i}"))).collect();
    assert_eq!(got, want);
    let full = alloc.allocate_cluster_ip(None, false).await.unwrap_err();
    assert!(matches!(full, AllocError::Full));
    assert_eq!(full.to_string(), "range is full");

    alloc.release_cluster_ip(ip("10.43.0.4")).await.unwrap();
    assert_eq!(
        alloc.allocate_cluster_ip(None, false).await.unwrap(),
        ip("10.43.0.4")
    );

    // The bitmap lives where upstream keeps it.
    let (kv, _) = store.get(SERVICE_IPS_KEY, None).await.unwrap();
    let obj: serde_json::Value = serde_json::from_slice(&kv.unwrap().value).unwrap();
    assert_eq!(obj["kind"], "RangeAllocation");
    assert_eq!(obj["range"], "10.43.0.0/29");

    assert_eq!(
        alloc.allocate_node_port(Some(30001), false).await.unwrap(),
        30001
    );
    assert_eq!(alloc.allocate_node_port(None, false).await.unwrap(), 30000);
    assert_eq!(
        alloc
            .allocate_node_port(None, false)
            .await
            .unwrap_err()
            .to_string(),
        "range is full"
    );
    alloc.release_node_port(30000).await.unwrap();
    assert_eq!(alloc.allocate_node_port(None, false).await.unwrap(), 30000);
    assert!(store.get(NODE_PORTS_KEY, None).await.unwrap().0.is_some());
}

#[tokio::test]
async fn requested_values_are_checked() {
    let (_dir, _store, alloc) = open("10.43.0.0/16", 30000..=32767);
    assert_eq!(
        alloc
            .allocate_cluster_ip(Some(ip("10.43.0.10")), false)
            .await
            .unwrap(),
        ip("10.43.0.10")
    );
    let taken = alloc
        .allocate_cluster_ip(Some(ip("10.43.0.10")), false)
        .await
        .unwrap_err();
    assert_eq!(taken.to_string(), "provided IP is already allocated");
    for outside in ["1.1.1.1", "10.43.0.0", "10.43.255.255", "::1"] {
        let err = alloc
            .allocate_cluster_ip(Some(ip(outside)), false)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("the provided IP ({outside}) is not in the valid range. The range of valid IPs is 10.43.0.0/16")
        );
    }
    assert_eq!(
        alloc.allocate_node_port(Some(31000), false).await.unwrap(),
        31000
    );
    assert_eq!(
        alloc
            .allocate_node_port(Some(31000), false)
            .await
            .unwrap_err()
            .to_string(),
        "provided port is already allocated"
    );
    assert_eq!(
        alloc
            .allocate_node_port(Some(80), false)
            .await
            .unwrap_err()
            .to_string(),
        "provided port is not in the valid range. The range of valid ports is 30000-32767"
    );
    // A dry run checks and picks but keeps nothing.
    assert_eq!(
        alloc
            .allocate_cluster_ip(Some(ip("10.43.0.11")), true)
            .await
            .unwrap(),
        ip("10.43.0.11")
    );
    assert_eq!(
        alloc
            .allocate_cluster_ip(Some(ip("10.43.0.11")), false)
            .await
            .unwrap(),
        ip("10.43.0.11")
    );
    // Releasing what was never allocated is harmless.
    alloc.release_cluster_ip(ip("10.43.9.9")).await.unwrap();
    alloc.release_cluster_ip(ip("1.1.1.1")).await.unwrap();
}

#[tokio::test]
async fn dynamic_picks_prefer_the_upper_band() {
    // 254 addresses: the lowest 16 are left for fixed requests while
    // the upper part has room.
    let (_dir, _store, alloc) = open("10.43.0.0/24", 30000..=30010);
    for _ in 0..20 {
        let IpAddr::V4(v4) = alloc.allocate_cluster_ip(None, false).await.unwrap() else {
            panic!("IPv4 range")
        };
        assert!(v4.octets()[3] > 16, "{v4} is in the static band");
    }
}

#[test]
fn cidrs_parse_to_their_network() {
    assert_eq!(
        Ipv4Cidr::parse("10.43.1.2/16").unwrap().to_string(),
        "10.43.0.0/16"
    );
    assert!(Ipv4Cidr::parse("10.43.0.0/33").is_none());
    assert!(Ipv4Cidr::parse("10.43.0.0").is_none());
    assert!(Ipv4Cidr::parse("fd00::/64").is_none());
}
