//! Rule generation against golden nft scripts: a full table and the
//! incremental script of one endpoint change. `UPDATE_GOLDEN=1` rewrites
//! the files (review the diff!).

mod common;

use std::sync::Arc;

use common::{cfg, service, slice};
use rkube_proxy::nft::Recorder;
use rkube_proxy::{service_ports, Proxier};

fn golden(name: &str, got: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        got,
        want,
        "{} differs (UPDATE_GOLDEN=1 to rewrite)",
        path.display()
    );
}

fn world(web_eps: &[(&str, bool, &str)]) -> Vec<rkube_proxy::ServicePort> {
    let services = vec![
        service(
            "web",
            serde_json::json!({"clusterIP": "10.43.0.20", "clusterIPs": ["10.43.0.20"],
            "type": "NodePort", "externalIPs": ["192.0.2.10"],
            "ports": [{"name": "http", "port": 80, "nodePort": 30080, "protocol": "TCP"}]}),
        ),
        service(
            "empty",
            serde_json::json!({"clusterIP": "10.43.0.21",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}),
        ),
        service(
            "sticky",
            serde_json::json!({"clusterIP": "10.43.0.22", "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}),
        ),
        service(
            "local",
            serde_json::json!({"clusterIP": "10.43.0.23", "type": "LoadBalancer",
            "externalTrafficPolicy": "Local",
            "ports": [{"name": "http", "port": 80, "nodePort": 30081, "protocol": "TCP"}]}),
        ),
        service(
            "headless",
            serde_json::json!({"clusterIP": "None",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}),
        ),
        service(
            "ext",
            serde_json::json!({"type": "ExternalName", "externalName": "example.org"}),
        ),
    ];
    let slices = vec![
        slice("web", web_eps, "http", 8080),
        slice("sticky", &[("10.42.0.5", true, "n1")], "http", 8080),
        slice(
            "local",
            &[("10.42.0.6", true, "n1"), ("10.42.1.6", true, "n2")],
            "http",
            8080,
        ),
        slice("headless", &[("10.42.0.7", true, "n1")], "http", 8080),
    ];
    service_ports(&services, &slices, "n1")
}

#[test]
fn full_table() {
    let ports = world(&[
        ("10.42.0.3", true, "n1"),
        ("10.42.1.4", true, "n2"),
        ("10.42.1.9", false, "n2"),
    ]);
    // Headless and ExternalName Services get no rules.
    assert_eq!(ports.len(), 4);
    let script = rkube_proxy::script::full(&cfg(), &rkube_proxy::rules::fragments(&cfg(), &ports));
    // Not-ready endpoints take no traffic.
    assert!(!script.contains("10.42.1.9"));
    golden("full.nft", &script);
}

#[test]
fn endpoint_change_touches_only_its_service() {
    let rec = Arc::new(Recorder::default());
    let mut p = Proxier::new(cfg(), rec.clone());
    p.sync(&world(&[
        ("10.42.0.3", true, "n1"),
        ("10.42.1.4", true, "n2"),
    ]))
    .unwrap();
    // Nothing changed: nothing applied.
    assert_eq!(
        p.sync(&world(&[
            ("10.42.0.3", true, "n1"),
            ("10.42.1.4", true, "n2")
        ]))
        .unwrap(),
        ""
    );
    let script = p.sync(&world(&[("10.42.0.3", true, "n1")])).unwrap();
    assert!(
        !script.contains("sticky") && !script.contains("local"),
        "{script}"
    );
    golden("endpoint-removed.nft", &script);
    // All endpoints gone: the service rejects instead.
    let script = p.sync(&world(&[])).unwrap();
    assert!(script.contains("add element ip rkube-proxy no-endpoint-services { 10.43.0.20 . tcp . 80 : goto reject-chain }"), "{script}");
    assert!(
        script.contains("delete element ip rkube-proxy service-ips { 10.43.0.20 . tcp . 80 }"),
        "{script}"
    );
    assert_eq!(rec.scripts.lock().unwrap().len(), 3);
}

#[test]
fn cluster_dns_port_53_goes_to_the_node_server() {
    let services = vec![service(
        "kube-dns",
        serde_json::json!({"clusterIP": "10.43.0.10",
        "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "metrics", "port": 9153, "protocol": "TCP"}]}),
    )];
    let ports = rkube_proxy::watch::with_local_dns(
        service_ports(&services, &[], "n1"),
        Some((
            "10.43.0.10".parse().unwrap(),
            "192.168.1.5".parse().unwrap(),
        )),
    );
    let dns = ports.iter().find(|p| p.port == 53).unwrap();
    assert_eq!(dns.endpoints.len(), 1);
    assert_eq!(dns.endpoints[0].ip.to_string(), "192.168.1.5");
    // Other ports keep their (absent) endpoints and reject.
    assert!(ports
        .iter()
        .find(|p| p.port == 9153)
        .unwrap()
        .endpoints
        .is_empty());
}

#[test]
fn partial_sync_sends_what_a_full_comparison_sends() {
    let before = world(&[("10.42.0.3", true, "n1"), ("10.42.1.4", true, "n2")]);
    let after = world(&[("10.42.0.3", true, "n1")]);
    let mut all = Proxier::new(cfg(), Arc::new(Recorder::default()));
    let mut part = Proxier::new(cfg(), Arc::new(Recorder::default()));
    // Nothing in force yet: a partial sync is refused, not guessed.
    assert!(matches!(
        part.sync_services(&["default/web".to_string()].into(), &[]),
        Err(rkube_proxy::nft::Error::OutOfSync)
    ));
    all.sync(&before).unwrap();
    part.sync(&before).unwrap();
    let web: Vec<_> = after.iter().filter(|p| p.name == "web").cloned().collect();
    let a = all.sync(&after).unwrap();
    let p = part
        .sync_services(&["default/web".to_string()].into(), &web)
        .unwrap();
    assert!(!a.is_empty());
    assert_eq!(a, p);
    // The Service gone: its chains and elements go, its cluster IP too.
    let gone = part
        .sync_services(&["default/web".to_string()].into(), &[])
        .unwrap();
    assert!(
        gone.contains("delete chain ip rkube-proxy service-default/web/tcp/http"),
        "{gone}"
    );
    assert!(
        gone.contains("delete element ip rkube-proxy cluster-ips { 10.43.0.20 }"),
        "{gone}"
    );
    assert!(!gone.contains("sticky"), "{gone}");
}

#[test]
fn shared_elements_go_with_the_last_fragment_holding_them() {
    let two_ports =
        |ports: serde_json::Value, slices: Vec<k8s_openapi::api::discovery::v1::EndpointSlice>| {
            let services = vec![
                service(
                    "a",
                    serde_json::json!({"clusterIP": "10.43.0.30", "ports": ports}),
                ),
                service(
                    "b",
                    serde_json::json!({"clusterIP": "10.43.0.31",
                "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}),
                ),
            ];
            service_ports(&services, &slices, "n1")
        };
    let ep = [("10.42.0.9", true, "n1")];
    let slices = || {
        let mut a = slice("a", &ep, "http", 8080);
        a.ports.as_mut().unwrap().push(
            serde_json::from_value(
                serde_json::json!({"name": "admin", "port": 9090, "protocol": "TCP"}),
            )
            .unwrap(),
        );
        vec![a, slice("b", &ep, "http", 8080)]
    };
    let both = serde_json::json!([{"name": "http", "port": 80, "protocol": "TCP"},
        {"name": "admin", "port": 90, "protocol": "TCP"}]);
    let one = serde_json::json!([{"name": "http", "port": 80, "protocol": "TCP"}]);
    let mut p = Proxier::new(cfg(), Arc::new(Recorder::default()));
    p.sync(&two_ports(both, slices())).unwrap();
    // One of a's two ports goes: its cluster IP stays (the other port
    // holds it), and the endpoint stays in the hairpin set (b holds it).
    let s = p.sync(&two_ports(one.clone(), slices())).unwrap();
    assert!(
        s.contains("delete element ip rkube-proxy service-ips { 10.43.0.30 . tcp . 90 }"),
        "{s}"
    );
    assert!(!s.contains("cluster-ips"), "{s}");
    assert!(!s.contains("hairpin"), "{s}");
    // a loses its endpoint: b still holds the hairpin pair.
    let s = p
        .sync(&two_ports(one.clone(), vec![slice("b", &ep, "http", 8080)]))
        .unwrap();
    assert!(!s.contains("hairpin"), "{s}");
    // b loses it too: now it goes.
    let s = p.sync(&two_ports(one, vec![])).unwrap();
    assert!(
        s.contains("delete element ip rkube-proxy hairpin { 10.42.0.9 . 10.42.0.9 }"),
        "{s}"
    );
}
