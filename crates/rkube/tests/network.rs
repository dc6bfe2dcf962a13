//! The pod network end to end (issue 7), as root: a server and agents
//! each in its own network namespace joined by a test-made bridge (see
//! `support/cluster.rs`); pods on different nodes reach each other by
//! pod IP over VXLAN and host-gw, addresses come from each node's
//! podCIDR, survive an agent restart and are released on pod deletion.
//! All traffic stays inside the namespaces and bridge the test made.

mod support;

use std::time::Duration;

use support::cluster::Cluster;
use support::eventually;
use support::images::{write_busybox, BUSYBOX as IMAGE};

/// Deadlines are generous: these tests run while the rest of the suite
/// (and other builds) load the machine; every wait polls, so a fast run
/// stays fast.
const WAIT: Duration = Duration::from_secs(120);

fn get(c: &Cluster, what: &[&str], path: &str) -> String {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    let jp = format!("jsonpath={path}");
    args.extend(["-o", &jp]);
    let out = c.server.kubectl(&args);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An httpd pod on `node` answering with its own name.
fn web(c: &Cluster, name: &str, node: &str) {
    let yaml = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: {IMAGE}
    imagePullPolicy: Never
    command: ["sh", "-c", "echo hello-{name} > /tmp/index.html; exec httpd -f -p 8080 -h /tmp"]
"#
    );
    c.server.ok_stdin(&["apply", "-f", "-"], &yaml);
}

/// A pod on `node` that asks `target`:8080 over HTTP (busybox nc; its
/// static wget crashes) until the answer has `want`, then exits 0; it
/// gives up after about 200 tries (minutes on a loaded machine).
fn client(c: &Cluster, name: &str, node: &str, target: &str, want: &str) {
    let yaml = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  nodeName: {node}
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: fetch
    image: {IMAGE}
    imagePullPolicy: Never
    command: ["sh", "-c", "for i in $(seq 200); do printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {target} 8080 | grep -q {want} && exit 0; sleep 1; done; exit 1"]
"#
    );
    c.server.ok_stdin(&["apply", "-f", "-"], &yaml);
}

fn running_ip(c: &Cluster, pod: &str) -> String {
    let mut ip = String::new();
    let ok = eventually(WAIT, || {
        ip = get(c, &["pod", pod], "{.status.podIP}");
        get(c, &["pod", pod], "{.status.phase}") == "Running" && !ip.is_empty()
    });
    assert!(
        ok,
        "{pod} not Running with an IP: {}\n{}",
        get(c, &["pod", pod], "{.status}"),
        c.logs()
    );
    ip
}

fn succeeds(c: &Cluster, pod: &str) {
    let mut phase = String::new();
    // The client itself retries for minutes; wait for it to end.
    let ok = eventually(Duration::from_secs(300), || {
        phase = get(c, &["pod", pod], "{.status.phase}");
        phase == "Succeeded" || phase == "Failed"
    });
    assert!(
        ok && phase == "Succeeded",
        "{pod} ended {phase:?}:\n{}\n{}",
        c.net_state(),
        c.logs()
    );
}

fn in_cidr(ip: &str, cidr: &str) -> bool {
    let net: ipnet::Ipv4Net = cidr.parse().unwrap();
    net.contains(&ip.parse::<std::net::Ipv4Addr>().unwrap())
}

fn cross_node(backend: &str) {
    let mut c = Cluster::start(2, backend, write_busybox);
    // Every node gets a distinct /24 of the cluster CIDR.
    let cidr0 = get(&c, &["node", "node-0"], "{.spec.podCIDR}");
    let cidr1 = get(&c, &["node", "node-1"], "{.spec.podCIDR}");
    assert!(
        cidr0.starts_with("10.42.") && cidr0.ends_with("/24"),
        "{cidr0}"
    );
    assert!(cidr1.starts_with("10.42.") && cidr0 != cidr1, "{cidr1}");
    // Each agent publishes its address (and VTEP) as flannel does.
    let published = eventually(WAIT, || {
        get(
            &c,
            &["node", "node-1"],
            "{.metadata.annotations.flannel\\.alpha\\.coreos\\.com/public-ip}",
        ) == c.nodes[1].ip
    });
    assert!(
        published,
        "node-1 has no public-ip annotation:\n{}",
        c.logs()
    );

    web(&c, "web", "node-0");
    let ip = running_ip(&c, "web");
    assert!(in_cidr(&ip, &cidr0), "{ip} not in node-0's {cidr0}");

    // node-1 routes node-0's podCIDR (via the VTEP or node-0's address).
    let routed = eventually(WAIT, || {
        let r = c.exec_in(1, &["ip", "route", "show", &cidr0]);
        let r = String::from_utf8_lossy(&r.stdout).into_owned();
        match backend {
            "vxlan" => r.contains("dev rkube.1"),
            _ => r.contains(&format!("via {}", c.nodes[0].ip)),
        }
    });
    assert!(routed, "no route to {cidr0} on node-1:\n{}", c.net_state());

    // Pod to pod across nodes, by pod IP.
    client(&c, "fetch", "node-1", &ip, "hello-web");
    succeeds(&c, "fetch");
    let fetch_ip = get(&c, &["pod", "fetch"], "{.status.podIP}");
    assert!(in_cidr(&fetch_ip, &cidr1), "{fetch_ip} not in {cidr1}");

    // The allocation is on disk under the agent's data dir.
    let store = c.nodes[0]
        .data
        .join("agent/ipam")
        .join(cidr0.replace('/', "-"))
        .join(&ip);
    let uid = get(&c, &["pod", "web"], "{.metadata.uid}");
    assert_eq!(std::fs::read_to_string(&store).unwrap().trim(), uid);

    // The node's namespace routes the cluster and service ranges nowhere
    // but to pods.
    let routes = c.exec_in(0, &["ip", "route", "show", "type", "unreachable"]);
    let routes = String::from_utf8_lossy(&routes.stdout).into_owned();
    assert!(
        routes.contains("10.42.0.0/16") && routes.contains("10.43.0.0/16"),
        "{routes}"
    );

    // An agent restart keeps the pod and its address, still reachable.
    c.kill_agent(0);
    c.start_agent(0);
    c.wait_ready(0);
    client(&c, "fetch2", "node-1", &ip, "hello-web");
    succeeds(&c, "fetch2");
    assert_eq!(get(&c, &["pod", "web"], "{.status.podIP}"), ip);
    assert_eq!(std::fs::read_to_string(&store).unwrap().trim(), uid);
    // A second pod on the restarted node gets a different address.
    web(&c, "web2", "node-0");
    let ip2 = running_ip(&c, "web2");
    assert!(in_cidr(&ip2, &cidr0) && ip2 != ip, "{ip2} vs {ip}");

    // Deleting the pod releases its address.
    c.server
        .ok(&["delete", "pod", "web", "--wait=true", "--timeout=120s"]);
    assert!(
        eventually(WAIT, || !store.exists()),
        "{} still allocated:\n{}",
        store.display(),
        c.logs()
    );
    c.server
        .ok(&["delete", "pod", "--all", "--wait=true", "--timeout=120s"]);
}

#[test]
fn pods_on_different_nodes_reach_each_other_over_vxlan() {
    cross_node("vxlan");
}

#[test]
fn pods_on_different_nodes_reach_each_other_over_host_gw() {
    cross_node("host-gw");
}
