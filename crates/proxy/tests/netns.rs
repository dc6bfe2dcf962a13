//! The rules in force: applied with nft inside a network namespace this
//! test creates, with busybox httpd backends on a veth interface, a
//! ClusterIP reaches every ready backend, ClientIP affinity sticks (and
//! expires after its timeout unless traffic refreshes it), a
//! Service without endpoints refuses at once, a NodePort answers on a
//! node address, and incremental changes take effect.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::{cfg, service, slice};
use rkube_proxy::{service_ports, Proxier, System};

struct Netns {
    name: String,
    children: Vec<std::process::Child>,
    dir: std::path::PathBuf,
}

fn run(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Netns {
    fn new() -> Netns {
        let name = format!("rkp-test-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run(&["ip", "netns", "add", &name]);
        let ns = |a: &[&str]| {
            let mut v = vec!["ip", "netns", "exec", &name];
            v.extend_from_slice(a);
            run(&v);
        };
        ns(&["ip", "link", "set", "lo", "up"]);
        // A veth pair stands in for the node's interface (the dummy
        // module may be absent).
        ns(&[
            "ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1",
        ]);
        ns(&["ip", "link", "set", "d0", "up"]);
        ns(&["ip", "link", "set", "d1", "up"]);
        for a in ["10.42.0.11/32", "10.42.0.12/32", "192.168.77.1/24"] {
            ns(&["ip", "addr", "add", a, "dev", "d0"]);
        }
        // Service IPs route somewhere so connects reach the output hook.
        ns(&["ip", "route", "add", "10.43.0.0/16", "dev", "d0"]);
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut me = Netns {
            name,
            children: Vec::new(),
            dir,
        };
        for (i, ip) in ["10.42.0.11", "10.42.0.12"].iter().enumerate() {
            let root = me.dir.join(format!("b{}", i + 1));
            std::fs::create_dir_all(&root).unwrap();
            std::fs::write(root.join("index.html"), format!("b{}\n", i + 1)).unwrap();
            let child = Command::new("ip")
                .args(["netns", "exec", &me.name, "busybox", "httpd", "-f", "-p"])
                .arg(format!("{ip}:8080"))
                .arg("-h")
                .arg(&root)
                .spawn()
                .unwrap();
            me.children.push(child);
        }
        me
    }

    /// GETs `url` from inside the namespace: Ok(body) or Err(stderr).
    fn get(&self, url: &str) -> Result<String, String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "curl", "-sS", "-m", "3", url])
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn world(web: &[(&str, bool, &str)]) -> Vec<rkube_proxy::ServicePort> {
    let services = vec![
        service(
            "web",
            serde_json::json!({"clusterIP": "10.43.0.50", "type": "NodePort",
            "ports": [{"name": "http", "port": 80, "nodePort": 30080, "protocol": "TCP"}]}),
        ),
        service(
            "empty",
            serde_json::json!({"clusterIP": "10.43.0.51",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}),
        ),
        service(
            "sticky",
            serde_json::json!({"clusterIP": "10.43.0.52", "sessionAffinity": "ClientIP",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}),
        ),
        service(
            "brief",
            serde_json::json!({"clusterIP": "10.43.0.53", "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": BRIEF_SECS}},
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}),
        ),
    ];
    let both = [("10.42.0.11", true, "n1"), ("10.42.0.12", true, "n1")];
    let slices = vec![
        slice("web", web, "http", 8080),
        slice("sticky", &both, "http", 8080),
        slice("brief", &both, "http", 8080),
    ];
    service_ports(&services, &slices, "n1")
}

/// The `brief` Service's ClientIP affinity timeout.
const BRIEF_SECS: u64 = 2;

/// The clients the `brief` Service's affinity sets remember now.
fn brief_entries(ns: &Netns) -> Vec<String> {
    let out = run(&[
        "ip", "netns", "exec", &ns.name, "nft", "-j", "list", "sets", "ip",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut found = Vec::new();
    for item in v["nftables"].as_array().into_iter().flatten() {
        let set = &item["set"];
        if !set["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("affinity-default/brief/"))
        {
            continue;
        }
        for e in set["elem"].as_array().into_iter().flatten() {
            found.push(e["elem"]["val"].as_str().unwrap_or_default().to_string());
        }
    }
    found
}

/// timeoutSeconds: new connections refresh the entry, so a client that
/// keeps connecting for longer than the timeout stays on its backend; a
/// quiet client's entry expires and its next connection is balanced
/// afresh.
fn affinity_expires_unless_refreshed(ns: &Netns) {
    let first = ns.get("http://10.43.0.53/").unwrap();
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(2 * BRIEF_SECS + 1) {
        assert_eq!(ns.get("http://10.43.0.53/").unwrap(), first);
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(brief_entries(ns).len(), 1, "one client remembered");
    // Quiet: the entry goes once the timeout passed, then one of the
    // next connections reaches the other backend (each attempt waits for
    // the entry to expire again).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut answers = Vec::new();
    loop {
        let quiet = std::time::Instant::now();
        while !brief_entries(ns).is_empty() {
            assert!(
                quiet.elapsed() < Duration::from_secs(BRIEF_SECS + 10),
                "affinity entry outlived its timeout"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let b = ns.get("http://10.43.0.53/").unwrap();
        answers.push(b.clone());
        if b != first {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "after expiry still only {first}: {answers:?}"
        );
    }
}

fn wait_ready(ns: &Netns) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    for ip in ["10.42.0.11", "10.42.0.12"] {
        while ns.get(&format!("http://{ip}:8080/")).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "backend {ip} never answered"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn cluster_ip_nodeport_affinity_and_rejects_in_a_netns() {
    let ns = Netns::new();
    wait_ready(&ns);
    let nft = Arc::new(System {
        netns: Some(ns.name.clone()),
    });
    let mut p = Proxier::new(cfg(), nft);
    let both = [
        ("10.42.0.11", true, "n1"),
        ("10.42.0.12", true, "n1"),
        ("10.42.0.13", false, "n1"),
    ];
    p.sync(&world(&both)).unwrap();

    // Random balancing reaches both ready backends (and never the
    // not-ready one, which would time out).
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        seen.insert(ns.get("http://10.43.0.50/").expect("cluster IP answers"));
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["b1", "b2"]);

    // NodePort on a node address.
    assert!(ns
        .get("http://192.168.77.1:30080/")
        .unwrap()
        .starts_with('b'));

    // ClientIP affinity: one client, one backend.
    let first = ns.get("http://10.43.0.52/").unwrap();
    for _ in 0..10 {
        assert_eq!(ns.get("http://10.43.0.52/").unwrap(), first);
    }

    affinity_expires_unless_refreshed(&ns);

    // No endpoints: refused at once rather than hanging.
    let t = std::time::Instant::now();
    let err = ns.get("http://10.43.0.51/").unwrap_err();
    // curl's exit 7: the connection was refused (ICMP port unreachable).
    assert!(err.contains("(7)"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(2));
    // A cluster IP on a port no Service has is refused too.
    assert!(ns.get("http://10.43.0.50:81/").unwrap_err().contains("(7)"));

    // Incremental: b2 drops out of rotation.
    let script = p
        .sync(&world(&[
            ("10.42.0.11", true, "n1"),
            ("10.42.0.12", false, "n1"),
        ]))
        .unwrap();
    assert!(!script.contains("delete table"), "{script}");
    for _ in 0..10 {
        assert_eq!(ns.get("http://10.43.0.50/").unwrap(), "b1");
    }
    // Scaled to zero: refused.
    p.sync(&world(&[])).unwrap();
    assert!(ns.get("http://10.43.0.50/").unwrap_err().contains("(7)"));
    // And back.
    p.sync(&world(&[("10.42.0.12", true, "n1")])).unwrap();
    assert_eq!(ns.get("http://10.43.0.50/").unwrap(), "b2");
}
