//! The DNS server answering over loopback: cluster records from Services
//! and EndpointSlices, negative answers as CoreDNS gives them, TCP, and
//! forwarding of other names to a fake upstream on loopback.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use rkube_dns::wire::{self, Rdata, Response};
use rkube_dns::{Resolver, Zone};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;

fn service(ns: &str, name: &str, spec: serde_json::Value) -> Service {
    serde_json::from_value(serde_json::json!({
        "metadata": {"namespace": ns, "name": name},
        "spec": spec,
    }))
    .unwrap()
}

fn slice(
    ns: &str,
    svc: &str,
    endpoints: serde_json::Value,
    ports: serde_json::Value,
) -> EndpointSlice {
    serde_json::from_value(serde_json::json!({
        "metadata": {"namespace": ns, "name": format!("{svc}-abc"),
                     "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports,
    }))
    .unwrap()
}

fn zone() -> Zone {
    let services = vec![
        service(
            "default",
            "web",
            serde_json::json!({
            "clusterIP": "10.43.0.20", "clusterIPs": ["10.43.0.20"],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}),
        ),
        service(
            "db",
            "pg",
            serde_json::json!({
            "clusterIP": "None",
            "ports": [{"name": "sql", "port": 5432, "protocol": "TCP"}]}),
        ),
        service(
            "default",
            "ext",
            serde_json::json!({
            "type": "ExternalName", "externalName": "example.org"}),
        ),
    ];
    let slices = vec![slice(
        "db",
        "pg",
        serde_json::json!([
            {"addresses": ["10.42.1.5"], "hostname": "pg-0", "conditions": {"ready": true}},
            {"addresses": ["10.42.2.6"], "conditions": {"ready": true}},
            {"addresses": ["10.42.3.7"], "conditions": {"ready": false}},
        ]),
        serde_json::json!([{"name": "sql", "port": 5432, "protocol": "TCP"}]),
    )];
    Zone::build("cluster.local", &services, &slices)
}

async fn udp(server: SocketAddr, name: &str, qtype: u16) -> Response {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&wire::build_query(0x1234, name, qtype), server)
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .expect("answer within 5 s")
        .unwrap();
    let r = wire::parse_response(&buf[..n]).unwrap();
    assert_eq!(r.id, 0x1234);
    r
}

async fn start(upstreams: Vec<SocketAddr>) -> SocketAddr {
    let resolver = Resolver::new(zone(), upstreams);
    rkube_dns::serve(resolver, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn ips(r: &Response) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = r
        .answers
        .iter()
        .filter_map(|a| match &a.data {
            Rdata::A(ip) => Some(IpAddr::V4(*ip)),
            Rdata::Aaaa(ip) => Some(IpAddr::V6(*ip)),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn service_records() {
    let s = start(vec![]).await;
    let r = udp(s, "web.default.svc.cluster.local", wire::TYPE_A).await;
    assert_eq!(r.rcode, 0);
    assert!(r.authoritative);
    assert_eq!(ips(&r), vec![IpAddr::V4(Ipv4Addr::new(10, 43, 0, 20))]);
    assert_eq!(r.answers[0].ttl, 5);
    // Case-insensitive.
    let r = udp(s, "WEB.Default.svc.cluster.local", wire::TYPE_A).await;
    assert_eq!(ips(&r).len(), 1);

    let r = udp(
        s,
        "_http._tcp.web.default.svc.cluster.local",
        wire::TYPE_SRV,
    )
    .await;
    assert_eq!(
        r.answers[0].data,
        Rdata::Srv {
            priority: 0,
            weight: 100,
            port: 80,
            target: "web.default.svc.cluster.local".into()
        }
    );

    let r = udp(s, "20.0.43.10.in-addr.arpa", wire::TYPE_PTR).await;
    assert_eq!(
        r.answers[0].data,
        Rdata::Ptr("web.default.svc.cluster.local".into())
    );

    let r = udp(s, "ext.default.svc.cluster.local", wire::TYPE_A).await;
    assert_eq!(r.answers[0].data, Rdata::Cname("example.org".into()));
}

#[tokio::test]
async fn headless_and_pods() {
    let s = start(vec![]).await;
    let r = udp(s, "pg.db.svc.cluster.local", wire::TYPE_A).await;
    // Ready endpoints only.
    assert_eq!(
        ips(&r),
        vec![
            IpAddr::V4(Ipv4Addr::new(10, 42, 1, 5)),
            IpAddr::V4(Ipv4Addr::new(10, 42, 2, 6))
        ]
    );
    let r = udp(s, "pg-0.pg.db.svc.cluster.local", wire::TYPE_A).await;
    assert_eq!(ips(&r), vec![IpAddr::V4(Ipv4Addr::new(10, 42, 1, 5))]);
    let r = udp(s, "10-42-2-6.pg.db.svc.cluster.local", wire::TYPE_A).await;
    assert_eq!(ips(&r), vec![IpAddr::V4(Ipv4Addr::new(10, 42, 2, 6))]);

    let r = udp(s, "_sql._tcp.pg.db.svc.cluster.local", wire::TYPE_SRV).await;
    let mut targets: Vec<String> = r
        .answers
        .iter()
        .map(|a| match &a.data {
            Rdata::Srv {
                port: 5432, target, ..
            } => target.clone(),
            other => panic!("not SRV 5432: {other:?}"),
        })
        .collect();
    targets.sort();
    assert_eq!(
        targets,
        [
            "10-42-2-6.pg.db.svc.cluster.local",
            "pg-0.pg.db.svc.cluster.local"
        ]
    );

    let r = udp(s, "5.1.42.10.in-addr.arpa", wire::TYPE_PTR).await;
    assert_eq!(
        r.answers[0].data,
        Rdata::Ptr("pg-0.pg.db.svc.cluster.local".into())
    );

    let r = udp(s, "10-42-9-9.db.pod.cluster.local", wire::TYPE_A).await;
    assert_eq!(ips(&r), vec![IpAddr::V4(Ipv4Addr::new(10, 42, 9, 9))]);
}

#[tokio::test]
async fn nxdomain_and_nodata() {
    let s = start(vec![]).await;
    // The search path's first probe: a name that does not exist.
    let r = udp(
        s,
        "web.default.svc.cluster.local.default.svc.cluster.local",
        wire::TYPE_A,
    )
    .await;
    assert_eq!(r.rcode, wire::RCODE_NXDOMAIN);
    assert!(matches!(r.authority[0].data, Rdata::Soa { .. }));
    let r = udp(s, "nope.default.svc.cluster.local", wire::TYPE_A).await;
    assert_eq!(r.rcode, wire::RCODE_NXDOMAIN);
    // Exists, but no AAAA: NODATA.
    let r = udp(s, "web.default.svc.cluster.local", wire::TYPE_AAAA).await;
    assert_eq!(r.rcode, wire::RCODE_NOERROR);
    assert!(r.answers.is_empty());
    assert_eq!(r.authority.len(), 1);
    // Intermediate names exist too.
    let r = udp(s, "default.svc.cluster.local", wire::TYPE_A).await;
    assert_eq!(r.rcode, wire::RCODE_NOERROR);
    assert!(r.answers.is_empty());
    // Without upstreams, other names fail rather than hang.
    let r = udp(s, "example.org", wire::TYPE_A).await;
    assert_eq!(r.rcode, wire::RCODE_SERVFAIL);
}

#[tokio::test]
async fn garbage_gets_formerr() {
    let s = start(vec![]).await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&[0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0, 200], s)
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(buf[3] & 0x0f, wire::RCODE_FORMERR);
    assert_eq!(&buf[..2], &[0x12, 0x34]);
    assert!(n >= 12);
}

#[tokio::test]
async fn tcp_answers() {
    let s = start(vec![]).await;
    let mut c = tokio::net::TcpStream::connect(s).await.unwrap();
    for _ in 0..2 {
        let q = wire::build_query(7, "web.default.svc.cluster.local", wire::TYPE_A);
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&q);
        c.write_all(&framed).await.unwrap();
        let mut len = [0u8; 2];
        c.read_exact(&mut len).await.unwrap();
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        c.read_exact(&mut buf).await.unwrap();
        let r = wire::parse_response(&buf).unwrap();
        assert_eq!(ips(&r), vec![IpAddr::V4(Ipv4Addr::new(10, 43, 0, 20))]);
    }
}

#[tokio::test]
async fn forwards_other_names() {
    // A fake upstream on loopback answering every A query with 192.0.2.1.
    let up = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let up_addr = up.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 512];
        loop {
            let (n, peer) = up.recv_from(&mut buf).await.unwrap();
            let q = wire::parse_query(&buf[..n]).unwrap();
            let rec = wire::Record {
                name: q.name.clone(),
                ttl: 60,
                data: Rdata::A(Ipv4Addr::new(192, 0, 2, 1)),
            };
            let out = wire::response(&buf[..n], &q, 0, false, &[rec], &[]);
            up.send_to(&out, peer).await.unwrap();
        }
    });
    // The first upstream is dead (nothing listens): the second answers.
    let dead = UdpSocket::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let s = start(vec![dead, up_addr]).await;
    let r = udp(s, "example.org", wire::TYPE_A).await;
    assert_eq!(r.rcode, 0);
    assert!(!r.authoritative);
    assert_eq!(ips(&r), vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))]);
    // Cluster names are still answered locally.
    let r = udp(s, "web.default.svc.cluster.local", wire::TYPE_A).await;
    assert!(r.authoritative);
}

#[test]
fn resolv_conf_upstreams_skip_own_address() {
    let dir = std::env::temp_dir().join(format!("rkube-dns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("resolv.conf");
    std::fs::write(
        &p,
        "search x\nnameserver 10.43.0.10\nnameserver 1.1.1.1\noptions ndots:5\n",
    )
    .unwrap();
    let ups = rkube_dns::upstreams_from_resolv_conf(
        p.to_str().unwrap(),
        &["10.43.0.10".parse().unwrap()],
    )
    .unwrap();
    assert_eq!(ups, vec!["1.1.1.1:53".parse::<SocketAddr>().unwrap()]);
    assert!(rkube_dns::upstreams_from_resolv_conf("/nonexistent/resolv.conf", &[]).is_err());
}
