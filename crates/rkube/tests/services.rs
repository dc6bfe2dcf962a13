//! Services and cluster DNS against a real server with real kubectl: the
//! kube-dns Service exists at start, and the built-in DNS server (run
//! here on loopback, watching the server as a node's would) answers for
//! Services created with kubectl — ClusterIP, headless with endpoints,
//! SRV for named ports, ExternalName, PTR — and NXDOMAIN for the rest.

mod support;

use std::net::{IpAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use rkube_dns::wire::{self, Rdata, Response};
use support::{eventually, Server};

fn query(addr: std::net::SocketAddr, name: &str, qtype: u16) -> Response {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sock.send_to(&wire::build_query(42, name, qtype), addr)
        .unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = sock.recv_from(&mut buf).expect("dns answer");
    wire::parse_response(&buf[..n]).unwrap()
}

fn addresses(r: &Response) -> Vec<String> {
    let mut v: Vec<String> = r
        .answers
        .iter()
        .filter_map(|a| match &a.data {
            Rdata::A(ip) => Some(ip.to_string()),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

#[test]
fn kube_dns_service_and_answers_for_kubectl_services() {
    let server = Server::start();
    // The kube-dns Service, as tools look for it.
    let out = server.ok(&[
        "get",
        "service",
        "kube-dns",
        "-n",
        "kube-system",
        "-o",
        "jsonpath={.spec.clusterIP} {.spec.ports[*].port} {.spec.ports[*].protocol}",
    ]);
    assert_eq!(out, "10.43.0.10 53 53 9153 UDP TCP TCP");

    // The DNS server, watching through the admin kubeconfig.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let kubeconfig = server.kubeconfig.clone();
    let addr = rt.block_on(async move {
        let kc = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap();
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        let client = kube::Client::try_from(cfg).unwrap();
        let resolver =
            rkube_dns::Resolver::new(rkube_dns::Zone::build("cluster.local", &[], &[]), vec![]);
        let addr = rkube_dns::serve(resolver.clone(), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        tokio::spawn(rkube_dns::watch::run(
            client,
            "cluster.local".into(),
            Arc::clone(&resolver),
        ));
        addr
    });

    server.ok(&["create", "service", "clusterip", "web", "--tcp=80:8080"]);
    let ip = server.ok(&["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    assert!(
        eventually(Duration::from_secs(20), || {
            addresses(&query(addr, "web.default.svc.cluster.local", wire::TYPE_A)) == [ip.clone()]
        }),
        "web never resolved to {ip}"
    );
    // The port kubectl named 80-8080 has an SRV record.
    let r = query(
        addr,
        "_80-8080._tcp.web.default.svc.cluster.local",
        wire::TYPE_SRV,
    );
    assert!(
        matches!(&r.answers[0].data, Rdata::Srv { port: 80, target, .. } if target == "web.default.svc.cluster.local"),
        "{r:?}"
    );
    // PTR back to the name.
    let parsed: IpAddr = ip.parse().unwrap();
    let r = query(addr, &rkube_dns::zone::reverse_name(parsed), wire::TYPE_PTR);
    assert_eq!(
        r.answers[0].data,
        Rdata::Ptr("web.default.svc.cluster.local".into())
    );

    // A Service in another namespace resolves under its namespace.
    server.ok(&["create", "namespace", "other"]);
    server.ok(&[
        "create",
        "service",
        "clusterip",
        "api",
        "-n",
        "other",
        "--tcp=443",
    ]);
    assert!(eventually(Duration::from_secs(20), || {
        addresses(&query(addr, "api.other.svc.cluster.local", wire::TYPE_A)).len() == 1
    }));

    // Headless, with a user-managed EndpointSlice: ready pod IPs only.
    server.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Service
metadata: {name: db, namespace: default}
spec:
  clusterIP: None
  ports: [{name: sql, port: 5432}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: db-1
  namespace: default
  labels: {kubernetes.io/service-name: db}
addressType: IPv4
ports: [{name: sql, port: 5432, protocol: TCP}]
endpoints:
- addresses: ["10.42.1.5"]
  hostname: db-0
  conditions: {ready: true}
- addresses: ["10.42.2.6"]
  conditions: {ready: false}
"#,
    );
    assert!(
        eventually(Duration::from_secs(20), || {
            addresses(&query(addr, "db.default.svc.cluster.local", wire::TYPE_A)) == ["10.42.1.5"]
        }),
        "headless service never resolved to its ready endpoint"
    );
    assert_eq!(
        addresses(&query(
            addr,
            "db-0.db.default.svc.cluster.local",
            wire::TYPE_A
        )),
        ["10.42.1.5"]
    );

    // ExternalName: a CNAME.
    server.ok(&[
        "create",
        "service",
        "externalname",
        "ext",
        "--external-name",
        "example.org",
    ]);
    assert!(eventually(Duration::from_secs(20), || {
        query(addr, "ext.default.svc.cluster.local", wire::TYPE_A)
            .answers
            .first()
            .map(|a| a.data.clone())
            == Some(Rdata::Cname("example.org".into()))
    }));

    // Deleted: NXDOMAIN.
    server.ok(&["delete", "service", "web"]);
    assert!(eventually(Duration::from_secs(20), || {
        query(addr, "web.default.svc.cluster.local", wire::TYPE_A).rcode == wire::RCODE_NXDOMAIN
    }));
    drop(rt);
}
