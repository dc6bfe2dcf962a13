//! Issue 7's acceptance on a real 3-node cluster, as root: a server and
//! three agents each in its own network namespace on one test-made bridge
//! (`support/cluster.rs`), pods over VXLAN, each agent running its
//! kubelet, rkube-proxy and DNS server; driven by the real kubectl from the
//! host namespace. One walk through the scenario on one cluster (starting
//! clusters is the slow part): a Deployment of httpd pods spread over the
//! nodes, a Service reaching every backend by DNS name from every node,
//! NodePort from the host at every node address, readiness taking a pod
//! out of rotation and back, ClientIP affinity (and its timeout), hairpin
//! traffic, a headless Service, pod to pod across nodes, a Service in
//! another namespace, an agent restart that keeps rules, connections and
//! pod IPs, and scaling to 0 refusing at once.
//! All traffic stays inside the namespaces and bridge the test made.

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use support::cluster::Cluster;
use support::eventually;
use support::images::{write_busybox, BUSYBOX as IMAGE};

/// httpd answering with the pod's hostname; Ready unless /tmp/unready
/// exists.
const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      topologySpreadConstraints:
      - maxSkew: 1
        topologyKey: kubernetes.io/hostname
        whenUnsatisfiable: DoNotSchedule
        labelSelector: {matchLabels: {app: web}}
      containers:
      - name: web
        image: example.com/test/busybox:1
        imagePullPolicy: Never
        command: ["sh", "-c", "mkdir -p /www; hostname > /www/index.html; exec httpd -f -p 8080 -h /www"]
        readinessProbe:
          exec: {command: ["sh", "-c", "test ! -e /tmp/unready"]}
          periodSeconds: 1
          failureThreshold: 1
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-np}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: sticky}
spec:
  selector: {app: web}
  sessionAffinity: ClientIP
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-headless}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 8080}]
"#;

/// A long-running pod pinned to `node`, labelled `app`, running `cmd`.
fn pod(c: &Cluster, ns: &str, name: &str, node: &str, app: &str, cmd: &str) {
    let yaml = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}, labels: {{app: {app}}}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {IMAGE}
    imagePullPolicy: Never
    command: ["sh", "-c", {cmd:?}]
"#
    );
    c.server.ok_stdin(&["apply", "-f", "-"], &yaml);
}

fn get(c: &Cluster, what: &[&str], path: &str) -> String {
    let jp = format!("jsonpath={path}");
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    args.extend(["-o", &jp]);
    c.server.ok(&args)
}

/// The last lines of every agent's log, routes and neighbours: enough to
/// see why without drowning the failure.
fn diag(c: &Cluster) -> String {
    let logs = c.logs();
    let lines: Vec<&str> = logs.lines().collect();
    let tail = lines[lines.len().saturating_sub(150)..].join("\n");
    format!("{}\n{tail}", c.net_state())
}

/// `sh -c script` in `pod` through kubectl exec: (success, stdout, stderr).
fn sh(c: &Cluster, pod: &str, script: &str) -> (bool, String, String) {
    let out = c.server.kubectl(&["exec", pod, "--", "sh", "-c", script]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `n` HTTP GETs of `url` from `pod`; the bodies (hostnames) answered.
/// busybox's static wget has no usable -T (it crashes), so each fetch is
/// bounded by `timeout`.
fn fetch(c: &Cluster, pod: &str, url: &str, n: usize) -> Vec<String> {
    let script =
        format!("for i in $(seq {n}); do timeout 5 wget -q -O- {url} 2>/dev/null; echo; done");
    let (_, out, _) = sh(c, pod, &script);
    out.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// Fetches from `pod` until every name in `want` answered.
fn reaches_all(c: &Cluster, pod: &str, url: &str, want: &BTreeSet<String>) {
    let mut seen = BTreeSet::new();
    let ok = eventually(Duration::from_secs(60), || {
        seen.extend(fetch(c, pod, url, 15));
        want.is_subset(&seen)
    });
    assert!(
        ok,
        "{pod} -> {url} reached only {seen:?} of {want:?}\n{}",
        diag(c)
    );
}

/// The addresses an `nslookup` answer lists for the name asked (not the
/// server's own "Address: ip:53" line).
fn lookup(c: &Cluster, pod: &str, name: &str) -> BTreeSet<String> {
    let (_, out, _) = sh(c, pod, &format!("nslookup {name}"));
    let mut in_answer = false;
    let mut found = BTreeSet::new();
    for line in out.lines() {
        if line.starts_with("Name:") {
            in_answer = line.contains(name);
        } else if let Some(a) = line.strip_prefix("Address:") {
            if in_answer {
                found.insert(a.trim().to_string());
            }
        }
    }
    found
}

/// One HTTP GET from the host namespace; the body.
fn host_get(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    Ok(resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim().to_string())
        .unwrap_or_default())
}

/// Web pods by node index: (name, pod IP).
fn web_pods(c: &Cluster) -> Vec<(String, String)> {
    let mut by_node = vec![(String::new(), String::new()); c.nodes.len()];
    let out = get(
        c,
        &["pods", "-l", "app=web"],
        r#"{range .items[*]}{.metadata.name} {.spec.nodeName} {.status.podIP}{"\n"}{end}"#,
    );
    for line in out.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let i = c.nodes.iter().position(|n| n.name == f[1]).unwrap();
        assert!(by_node[i].0.is_empty(), "two web pods on {}:\n{out}", f[1]);
        by_node[i] = (f[0].to_string(), f.get(2).unwrap_or(&"").to_string());
    }
    by_node
}

/// Echo lines over an established connection.
fn echo(conn: &mut BufReader<TcpStream>, msg: &str) -> std::io::Result<String> {
    conn.get_mut().write_all(format!("{msg}\n").as_bytes())?;
    let mut line = String::new();
    conn.read_line(&mut line)?;
    Ok(line.trim().to_string())
}

#[test]
fn three_nodes_services_dns_nodeport_readiness_affinity_and_agent_restart() {
    let mut c = Cluster::start(3, "vxlan", write_busybox);
    let nodes: Vec<String> = c.nodes.iter().map(|n| n.name.clone()).collect();
    let ips: Vec<String> = c.nodes.iter().map(|n| n.ip.clone()).collect();

    // A client pod on every node, the Deployment spread over the nodes.
    for (i, node) in nodes.iter().enumerate() {
        pod(
            &c,
            "default",
            &format!("c-{i}"),
            node,
            "client",
            "sleep 3600",
        );
    }
    c.server.ok_stdin(&["apply", "-f", "-"], WEB);
    c.server
        .ok(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    for i in 0..3 {
        c.server.ok(&[
            "wait",
            "--for=condition=Ready",
            &format!("pod/c-{i}"),
            "--timeout=120s",
        ]);
    }
    let web = web_pods(&c);
    assert!(
        web.iter().all(|(n, ip)| !n.is_empty() && !ip.is_empty()),
        "not one web pod per node: {web:?}"
    );
    let names: BTreeSet<String> = web.iter().map(|(n, _)| n.clone()).collect();
    let cluster_ip = get(&c, &["service", "web"], "{.spec.clusterIP}");

    // By DNS name (short and full) from a client on each node: every
    // backend answers; the name resolves to the ClusterIP.
    for i in 0..3 {
        let client = format!("c-{i}");
        reaches_all(&c, &client, "http://web.default.svc.cluster.local/", &names);
        reaches_all(&c, &client, "http://web/", &names);
        assert_eq!(
            lookup(&c, &client, "web.default.svc.cluster.local"),
            BTreeSet::from([cluster_ip.clone()])
        );
    }

    // Pod to pod across nodes by pod IP.
    for i in 0..3 {
        for (j, (name, ip)) in web.iter().enumerate() {
            if i != j {
                let got = fetch(&c, &format!("c-{i}"), &format!("http://{ip}:8080/"), 1);
                assert_eq!(
                    got,
                    [name.as_str()],
                    "c-{i} -> {name} at {ip}\n{}",
                    diag(&c)
                );
            }
        }
    }

    // Headless: the name is the pods' addresses.
    let pod_ips: BTreeSet<String> = web.iter().map(|(_, ip)| ip.clone()).collect();
    let mut got = BTreeSet::new();
    let ok = eventually(Duration::from_secs(30), || {
        got = lookup(&c, "c-0", "web-headless.default.svc.cluster.local");
        got == pod_ips
    });
    assert!(ok, "headless resolved to {got:?}, pods are {pod_ips:?}");

    // A Service in another namespace, as <svc>.<ns> through the search
    // path and by its full name.
    c.server.ok(&["create", "namespace", "other"]);
    pod(
        &c,
        "other",
        "api",
        &nodes[2],
        "api",
        "mkdir -p /www; echo api-other > /www/index.html; exec httpd -f -p 8080 -h /www",
    );
    c.server.ok(&[
        "-n",
        "other",
        "expose",
        "pod",
        "api",
        "--port=80",
        "--target-port=8080",
    ]);
    c.server.ok(&[
        "-n",
        "other",
        "wait",
        "--for=condition=Ready",
        "pod/api",
        "--timeout=120s",
    ]);
    let api_ip = get(&c, &["-n", "other", "service", "api"], "{.spec.clusterIP}");
    assert!(
        eventually(Duration::from_secs(30), || fetch(
            &c,
            "c-0",
            "http://api.other/",
            1
        ) == ["api-other"]),
        "api.other unreachable from c-0\n{}",
        diag(&c)
    );
    assert_eq!(
        lookup(&c, "c-0", "api.other.svc.cluster.local"),
        BTreeSet::from([api_ip])
    );

    // NodePort from the host namespace at every node's address, reaching
    // every backend through any node.
    let node_port: u16 = get(&c, &["service", "web-np"], "{.spec.ports[0].nodePort}")
        .parse()
        .unwrap();
    let mut seen = BTreeSet::new();
    for ip in &ips {
        let addr: SocketAddr = format!("{ip}:{node_port}").parse().unwrap();
        let mut answered = 0;
        let ok = eventually(Duration::from_secs(30), || {
            match host_get(addr) {
                Ok(body) if names.contains(&body) => {
                    answered += 1;
                    seen.insert(body);
                }
                _ => {}
            }
            answered >= 5
        });
        assert!(ok, "NodePort {addr} did not answer\n{}", diag(&c));
    }
    let ok = eventually(Duration::from_secs(30), || {
        let addr: SocketAddr = format!("{}:{node_port}", ips[0]).parse().unwrap();
        if let Ok(body) = host_get(addr) {
            seen.insert(body);
        }
        seen == names
    });
    assert!(ok, "NodePort reached only {seen:?}");

    // LoadBalancer: the built-in service load balancer publishes node
    // addresses as the ingress, and the Service answers there on its port.
    c.server.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Service\nmetadata: {name: web-lb}\nspec:\n  type: LoadBalancer\n  \
         selector: {app: web}\n  ports: [{port: 8081, targetPort: 8080}]\n",
    );
    let mut ingress = String::new();
    let ok = eventually(Duration::from_secs(60), || {
        ingress = get(
            &c,
            &["service", "web-lb"],
            "{.status.loadBalancer.ingress[*].ip}",
        );
        !ingress.trim().is_empty()
    });
    assert!(ok, "web-lb got no ingress\n{}", diag(&c));
    for lb in ingress.split_whitespace() {
        assert!(
            ips.iter().any(|ip| ip == lb),
            "ingress {lb} is not a node address {ips:?}"
        );
        let addr: SocketAddr = format!("{lb}:8081").parse().unwrap();
        let mut last = None;
        let ok = eventually(Duration::from_secs(30), || {
            last = Some(host_get(addr));
            matches!(&last, Some(Ok(body)) if names.contains(body))
        });
        assert!(
            ok,
            "LoadBalancer {addr} did not answer: {last:?}\n{}",
            diag(&c)
        );
    }

    // externalTrafficPolicy Local: a node's NodePort sends only to the
    // backend on that node (one web pod per node).
    c.server.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Service\nmetadata: {name: web-local}\nspec:\n  type: NodePort\n  \
         externalTrafficPolicy: Local\n  selector: {app: web}\n  ports: [{port: 80, targetPort: 8080}]\n",
    );
    let local_port = get(&c, &["service", "web-local"], "{.spec.ports[0].nodePort}");
    for (i, ip) in ips.iter().enumerate() {
        let addr: SocketAddr = format!("{ip}:{local_port}").parse().unwrap();
        let mut got = BTreeSet::new();
        let ok = eventually(Duration::from_secs(30), || {
            if let Ok(body) = host_get(addr) {
                got.insert(body);
            }
            got.len() == 1 && got.contains(&web[i].0)
        });
        for _ in 0..5 {
            if let Ok(body) = host_get(addr) {
                got.insert(body);
            }
        }
        assert!(
            ok && got.len() == 1,
            "{addr} (Local) answered from {got:?}, its pod is {}",
            web[i].0
        );
    }

    // internalTrafficPolicy Local: a client pod reaches only the backend on
    // its own node.
    c.server.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Service\nmetadata: {name: web-itl}\nspec:\n  \
         internalTrafficPolicy: Local\n  selector: {app: web}\n  ports: [{port: 80, targetPort: 8080}]\n",
    );
    for (i, (own, _)) in web.iter().enumerate() {
        let mut got = Vec::new();
        let ok = eventually(Duration::from_secs(30), || {
            got = fetch(&c, &format!("c-{i}"), "http://web-itl/", 6);
            got.len() >= 4 && got.iter().all(|b| b == own)
        });
        assert!(
            ok,
            "c-{i} via web-itl reached {got:?}, its node's pod is {own}"
        );
    }
    // Hairpin: a web pod reaches itself through that Service (its only
    // endpoint on its node is itself); the reply must come back through
    // the bridge port the request left by.
    for (own, _) in &web {
        let mut got = Vec::new();
        let ok = eventually(Duration::from_secs(30), || {
            got = fetch(&c, own, "http://web-itl/", 3);
            got.len() >= 2 && got.iter().all(|b| b == own)
        });
        assert!(ok, "{own} via web-itl (itself) got {got:?}\n{}", diag(&c));
    }

    // externalIPs: the Service answers at an address it lists.
    c.server.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: web-ext}}\nspec:\n  \
             externalIPs: [{}]\n  selector: {{app: web}}\n  ports: [{{port: 8082, targetPort: 8080}}]\n",
            ips[1]
        ),
    );
    let addr: SocketAddr = format!("{}:8082", ips[1]).parse().unwrap();
    let mut last = None;
    let ok = eventually(Duration::from_secs(30), || {
        last = Some(host_get(addr));
        matches!(&last, Some(Ok(body)) if names.contains(body))
    });
    assert!(
        ok,
        "externalIP {addr} did not answer: {last:?}\n{}",
        diag(&c)
    );

    // Pod egress leaving the cluster network is masqueraded: a host outside
    // it sees the node's address, not the pod's.
    let third = ips[1].rsplit_once('.').unwrap().0.to_string();
    let listener = std::net::TcpListener::bind(format!("{third}.1:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let seen_from = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            if let Ok((mut s, peer)) = listener.accept() {
                let _ = s.set_nonblocking(false);
                let _ = s.write_all(b"HTTP/1.0 200 OK\r\n\r\nmasq\n");
                return Some(peer.ip().to_string());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    });
    let url = format!("http://{third}.1:{port}/");
    let mut body = Vec::new();
    eventually(Duration::from_secs(30), || {
        body = fetch(&c, "c-1", &url, 1);
        body == ["masq"]
    });
    let peer = seen_from.join().unwrap();
    assert_eq!(
        peer.as_deref(),
        Some(ips[1].as_str()),
        "egress from c-1 arrived from {peer:?} (body {body:?})"
    );

    // The nodes themselves (what hostNetwork pods share) reach the
    // ClusterIP: the service range's unreachable route does not stop them.
    for n in &c.nodes {
        let url = format!("http://{cluster_ip}/");
        let mut last = String::new();
        let ok = eventually(Duration::from_secs(30), || {
            let out = std::process::Command::new("ip")
                .args(["netns", "exec", &n.netns, "curl", "-s", "-m", "5", &url])
                .output()
                .unwrap();
            last = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            names.contains(last.trim())
        });
        assert!(
            ok,
            "node {} could not reach {url}: {last}\n{}",
            n.name,
            diag(&c)
        );
    }

    // ClientIP affinity: every request from one client goes to one pod.
    for i in 0..3 {
        let got: BTreeSet<String> = fetch(&c, &format!("c-{i}"), "http://sticky/", 12)
            .into_iter()
            .collect();
        assert_eq!(got.len(), 1, "c-{i} was balanced over {got:?}");
    }
    affinity_timeout(&c, &web);

    readiness(&c, &web, &names);
    agent_restart(&mut c, &web, &names, node_port);
    scale_to_zero(&c, &cluster_ip, node_port);
}

/// The ClientIP affinity timeout of the `sticky-short` Service.
const AFFINITY_SECS: u64 = 6;

/// Node `node`'s affinity entries for Service `svc` (default namespace):
/// (backend pod IP, client IP, seconds until it expires), read from the
/// proxy's nft sets (`affinity-<ns>/<svc>/<proto>/<port>__<ip>/<port>`).
fn affinity_entries(c: &Cluster, node: usize, svc: &str) -> Vec<(String, String, u64)> {
    let out = c.exec_in(node, &["nft", "-j", "list", "sets", "ip"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let prefix = format!("affinity-default/{svc}/");
    let mut found = Vec::new();
    for item in v["nftables"].as_array().into_iter().flatten() {
        let set = &item["set"];
        let Some(name) = set["name"].as_str().filter(|n| n.starts_with(&prefix)) else {
            continue;
        };
        let backend = name
            .rsplit_once("__")
            .and_then(|(_, ep)| ep.split_once('/'))
            .map(|(ip, _)| ip.to_string())
            .unwrap_or_default();
        for e in set["elem"].as_array().into_iter().flatten() {
            let client = e["elem"]["val"].as_str().unwrap_or_default().to_string();
            let expires = e["elem"]["expires"].as_u64().unwrap_or(0);
            found.push((backend.clone(), client, expires));
        }
    }
    found
}

/// sessionAffinityConfig.clientIP.timeoutSeconds: a client sticks to one
/// backend while it keeps talking (each new connection refreshes the
/// timeout, as upstream's `update @set`), its entry in the node's
/// affinity set expires once it has been quiet for the timeout, and new
/// connections are then balanced afresh (another backend is reached).
fn affinity_timeout(c: &Cluster, web: &[(String, String)]) {
    c.server.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: sticky-short}}\nspec:\n  \
             selector: {{app: web}}\n  sessionAffinity: ClientIP\n  \
             sessionAffinityConfig: {{clientIP: {{timeoutSeconds: {AFFINITY_SECS}}}}}\n  \
             ports: [{{port: 80, targetPort: 8080}}]\n"
        ),
    );
    let client_ip = get(c, &["pod", "c-0"], "{.status.podIP}");
    let by_ip = |ip: &str| web.iter().find(|(_, i)| i == ip).map(|(n, _)| n.clone());
    // Wait until the rules are in force (the first answer).
    let mut first = Vec::new();
    let ok = eventually(Duration::from_secs(60), || {
        first = fetch(c, "c-0", "http://sticky-short/", 1);
        first.len() == 1
    });
    assert!(ok, "sticky-short unreachable from c-0\n{}", diag(c));
    // Ten connections a second apart span longer than the timeout: each
    // refreshes the entry, so all reach one backend.
    let n = 2 * AFFINITY_SECS;
    let script = format!(
        "for i in $(seq {n}); do timeout 5 wget -q -O- http://sticky-short/ 2>/dev/null; echo; sleep 1; done"
    );
    let started = Instant::now();
    let (_, out, _) = sh(c, "c-0", &script);
    let got: Vec<&str> = out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let spread: BTreeSet<&str> = got.iter().copied().collect();
    assert!(
        got.len() as u64 >= n - 2 && spread.len() == 1,
        "c-0 over {:?} -> sticky-short answered {got:?}",
        started.elapsed()
    );
    let stuck = got[0].to_string();
    // c-0's node remembers the client for that backend, for at most the
    // timeout.
    let entries = affinity_entries(c, 0, "sticky-short");
    let mine: Vec<_> = entries.iter().filter(|e| e.1 == client_ip).collect();
    assert!(
        mine.len() == 1
            && by_ip(&mine[0].0).as_deref() == Some(stuck.as_str())
            && mine[0].2 <= AFFINITY_SECS,
        "node-0's affinity entries for {client_ip} (stuck to {stuck}): {entries:?}"
    );
    // Quiet for the timeout: the entry expires, and a new connection is
    // balanced afresh; with three backends one of the next few reaches
    // another pod (each attempt waits for the entry to expire again).
    let mut tried = Vec::new();
    let ok = eventually(Duration::from_secs(150), || {
        let quiet = Instant::now();
        let expired = eventually(Duration::from_secs(3 * AFFINITY_SECS + 30), || {
            !affinity_entries(c, 0, "sticky-short")
                .iter()
                .any(|e| e.1 == client_ip)
        });
        assert!(
            expired,
            "c-0's affinity entry did not expire in {:?}: {:?}",
            quiet.elapsed(),
            affinity_entries(c, 0, "sticky-short")
        );
        let got = fetch(c, "c-0", "http://sticky-short/", 1);
        tried.extend(got.iter().cloned());
        got.iter().any(|b| *b != stuck)
    });
    assert!(
        ok,
        "after the affinity expired c-0 still reached only {stuck}: {tried:?}"
    );
}

/// A pod failing readiness leaves the rotation and comes back.
fn readiness(c: &Cluster, web: &[(String, String)], names: &BTreeSet<String>) {
    let victim = &web[0].0;
    c.server
        .ok(&["exec", victim, "--", "touch", "/tmp/unready"]);
    c.server.ok(&[
        "wait",
        "--for=condition=Ready=false",
        &format!("pod/{victim}"),
        "--timeout=60s",
    ]);
    // Out of rotation once the rules catch up, and it stays out.
    let mut last = Vec::new();
    let ok = eventually(Duration::from_secs(30), || {
        last = fetch(c, "c-1", "http://web/", 15);
        last.len() == 15 && !last.contains(victim)
    });
    assert!(ok, "{victim} still served while unready: {last:?}");
    let again = fetch(c, "c-2", "http://web/", 15);
    // (Some fetches may time out on a loaded machine; none may reach it.)
    assert!(!again.contains(victim) && again.len() >= 10, "{again:?}");
    c.server.ok(&["exec", victim, "--", "rm", "/tmp/unready"]);
    reaches_all(c, "c-1", "http://web/", names);
}

/// An agent restart keeps the node's rules, established connections and
/// its pods' addresses; new connections work during and after it.
fn agent_restart(
    c: &mut Cluster,
    web: &[(String, String)],
    names: &BTreeSet<String>,
    web_port: u16,
) {
    // An echo server on node-2, reached through node-1's NodePort: the
    // connection crosses node-1's DNAT and the VXLAN.
    let nodes: Vec<String> = c.nodes.iter().map(|n| n.name.clone()).collect();
    pod(
        c,
        "default",
        "echo",
        &nodes[2],
        "echo",
        "exec nc -ll -p 9000 -e cat",
    );
    c.server
        .ok(&["expose", "pod", "echo", "--port=9000", "--type=NodePort"]);
    c.server.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/echo",
        "--timeout=120s",
    ]);
    let echo_port = get(c, &["service", "echo"], "{.spec.ports[0].nodePort}");
    let addr: SocketAddr = format!("{}:{echo_port}", c.nodes[1].ip).parse().unwrap();
    let mut conn = None;
    let ok = eventually(Duration::from_secs(30), || {
        let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
            return false;
        };
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut r = BufReader::new(s);
        let ok = echo(&mut r, "before").ok().as_deref() == Some("before");
        conn = Some(r);
        ok
    });
    assert!(ok, "echo through {addr} failed\n{}", diag(c));
    let mut conn = conn.unwrap();
    let ips_before = get(
        c,
        &["pods"],
        r#"{range .items[*]}{.metadata.name}={.status.podIP} {end}"#,
    );
    let restarts_before = get(
        c,
        &["pods"],
        "{.items[*].status.containerStatuses[0].restartCount}",
    );

    c.kill_agent(1);
    // Without its agent the node keeps forwarding: the table stays, the
    // connection lives, new NodePort connections are balanced.
    let tables = c.exec_in(1, &["nft", "list", "tables"]);
    assert!(
        String::from_utf8_lossy(&tables.stdout).contains("rkube-proxy"),
        "rules gone with the agent"
    );
    assert_eq!(echo(&mut conn, "during").unwrap(), "during");
    let web_addr: SocketAddr = format!("{}:{web_port}", c.nodes[1].ip).parse().unwrap();
    let body = host_get(web_addr).unwrap();
    assert!(names.contains(&body), "{body:?}");

    c.start_agent(1);
    c.wait_ready(1);
    let start = Instant::now();
    // The restarted agent's first syncs must not break what runs.
    while start.elapsed() < Duration::from_secs(5) {
        assert_eq!(echo(&mut conn, "after").unwrap(), "after");
        std::thread::sleep(Duration::from_millis(500));
    }
    reaches_all(c, "c-1", "http://web/", names);
    let mut seen = BTreeSet::new();
    let ok = eventually(Duration::from_secs(30), || {
        if let Ok(body) = host_get(web_addr) {
            seen.insert(body);
        }
        &seen == names
    });
    assert!(ok, "NodePort on the restarted node reached only {seen:?}");
    // Pod to pod from the restarted node, by address.
    let got = fetch(c, "c-1", &format!("http://{}:8080/", web[0].1), 1);
    assert_eq!(got, [web[0].0.as_str()]);
    // Nothing restarted, nothing renumbered.
    assert_eq!(
        get(
            c,
            &["pods"],
            r#"{range .items[*]}{.metadata.name}={.status.podIP} {end}"#
        ),
        ips_before
    );
    assert_eq!(
        get(
            c,
            &["pods"],
            "{.items[*].status.containerStatuses[0].restartCount}"
        ),
        restarts_before
    );
}

/// Without endpoints a Service refuses at once, in pods and at NodePorts.
fn scale_to_zero(c: &Cluster, cluster_ip: &str, node_port: u16) {
    c.server.ok(&["scale", "deployment/web", "--replicas=0"]);
    let ok = eventually(Duration::from_secs(60), || {
        get(
            c,
            &["endpointslices", "-l", "kubernetes.io/service-name=web"],
            "{.items[*].endpoints[*].addresses[*]}",
        )
        .is_empty()
    });
    assert!(ok, "web still has endpoints");
    let mut last = (false, String::new(), String::new());
    let ok = eventually(Duration::from_secs(30), || {
        let start = Instant::now();
        last = sh(c, "c-0", "nc -w 10 web 80 </dev/null");
        // Refused, not a timeout: well under nc's 10 s.
        last.2.contains("Connection refused") && start.elapsed() < Duration::from_secs(8)
    });
    assert!(ok, "{cluster_ip}:80 did not refuse: {last:?}\n{}", diag(c));
    for n in &c.nodes {
        let addr: SocketAddr = format!("{}:{node_port}", n.ip).parse().unwrap();
        let mut err = None;
        let ok = eventually(Duration::from_secs(30), || {
            err = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .err()
                .map(|e| e.kind());
            err == Some(std::io::ErrorKind::ConnectionRefused)
        });
        assert!(ok, "NodePort {addr}: {err:?}");
    }
}

/// Every pid in cgroup `parent` and below, in any mounted hierarchy.
fn cgroup_pids(parent: &str) -> BTreeSet<String> {
    let mut pids = BTreeSet::new();
    let mut stack: Vec<std::path::PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .flatten()
        .map(|h| h.path().join(parent))
        .collect();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        pids.extend(procs.lines().map(String::from));
    }
    pids
}

fn rkube_cluster(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_rkube"))
        .arg("cluster")
        .args(args)
        .output()
        .expect("run rkube cluster")
}

/// `rkube cluster down` if the test fails half-way.
struct Down<'a>(&'a str, &'a Path);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let state = self.1.display().to_string();
        let _ = rkube_cluster(&["down", "--name", self.0, "--state-dir", &state]);
    }
}

#[test]
fn cluster_up_returns_with_nodes_ready_and_down_removes_everything() {
    let state = tempfile::tempdir().unwrap();
    // Bad input: clear errors before anything is made.
    for (args, want) in [
        (&["--nodes", "0"][..], "--nodes must be at least 1"),
        (
            &["--name", "no-dash"],
            "--name must be 1-8 letters or digits",
        ),
        (
            &["--name", "waytoolongname"],
            "--name must be 1-8 letters or digits",
        ),
    ] {
        let mut all = vec!["up", "--state-dir", state.path().to_str().unwrap()];
        all.extend_from_slice(args);
        let out = rkube_cluster(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(want),
            "{args:?}: {err}"
        );
    }
    let name = format!("mt{}", std::process::id() % 100_000);
    let dir = state.path().join(&name);
    for i in 0..2 {
        write_busybox(&dir.join(format!("node-{i}")));
    }
    let kubeconfig = state.path().join("admin.yaml");
    let (state_arg, kc_arg) = (
        state.path().display().to_string(),
        kubeconfig.display().to_string(),
    );
    let _down = Down(&name, state.path());
    let up = rkube_cluster(&[
        "up",
        "--nodes",
        "2",
        "--name",
        &name,
        "--state-dir",
        &state_arg,
        "--write-kubeconfig",
        &kc_arg,
        // These shared machines run with little free disk.
        "--agent-arg=--eviction-hard=nodefs.available<1%",
        "--agent-arg=--image-gc-high-threshold=100",
    ]);
    let logs = || {
        let mut s = String::new();
        for f in ["server.log", "node-0.log", "node-1.log"] {
            s.push_str(&std::fs::read_to_string(dir.join(f)).unwrap_or_default());
        }
        s
    };
    assert!(
        up.status.success(),
        "cluster up: {}\n{}",
        String::from_utf8_lossy(&up.stderr),
        logs()
    );
    assert!(
        String::from_utf8_lossy(&up.stdout).contains("2 nodes Ready"),
        "{}",
        String::from_utf8_lossy(&up.stdout)
    );
    let kubectl = |args: &[&str]| {
        support::check(
            support::kubectl_bin("kubectl", &kubeconfig, args, None),
            args,
        )
    };
    // Ready as soon as `up` returns: no waiting here.
    let ready = kubectl(&[
        "get",
        "nodes",
        "-o",
        r#"jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status} {end}"#,
    ]);
    assert_eq!(
        ready.trim(),
        format!("{name}-agent-1=True {name}-server=True"),
        "{}",
        logs()
    );
    // Node addresses are reachable from the host: each kubelet answers.
    let addrs = kubectl(&[
        "get",
        "nodes",
        "-o",
        r#"jsonpath={.items[*].status.addresses[?(@.type=="InternalIP")].address}"#,
    ]);
    for a in addrs.split_whitespace() {
        let addr: SocketAddr = format!("{a}:10250").parse().unwrap();
        TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("kubelet at {addr}: {e}"));
    }
    // A pod on the agent: its container runs in the cluster's cgroups.
    let agent = format!("{name}-agent-1");
    let pod = format!(r#"{{"spec":{{"nodeName":"{agent}","terminationGracePeriodSeconds":1}}}}"#);
    kubectl(&[
        "run",
        "sleeper",
        "--image",
        IMAGE,
        "--image-pull-policy=Never",
        "--overrides",
        &pod,
        "--",
        "sleep",
        "3600",
    ]);
    kubectl(&[
        "wait",
        "--for=condition=Ready",
        "pod/sleeper",
        "--timeout=120s",
    ]);
    let procs = cgroup_pids(&format!("rkube-{name}"));
    assert!(!procs.is_empty(), "no container in rkube-{name}");
    let server_pids = std::fs::read_to_string(dir.join("pids")).unwrap();

    let down = rkube_cluster(&["down", "--name", &name, "--state-dir", &state_arg]);
    assert!(
        down.status.success(),
        "cluster down: {}",
        String::from_utf8_lossy(&down.stderr)
    );
    for pid in procs.iter().chain(
        server_pids
            .lines()
            .map(String::from)
            .collect::<Vec<_>>()
            .iter(),
    ) {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} outlived cluster down"
        );
    }
    assert!(cgroup_pids(&format!("rkube-{name}")).is_empty());
    for i in 0..2 {
        let ns = format!("/run/netns/rk-{name}-{i}");
        assert!(!Path::new(&ns).exists(), "{ns} left behind");
    }
    let bridge = format!("/sys/class/net/rk-{name}");
    assert!(!Path::new(&bridge).exists(), "{bridge} left behind");
    assert!(!dir.exists(), "{} left behind", dir.display());
    // Its unreachable routes go with the last local cluster.
    let others = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .any(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_prefix("rk-").is_some_and(|r| !r.contains('-'))
        });
    if !others {
        let routes = std::process::Command::new("ip")
            .args(["route", "show", "type", "unreachable"])
            .output()
            .unwrap();
        let routes = String::from_utf8_lossy(&routes.stdout).into_owned();
        assert!(!routes.contains("metric 4242"), "{routes}");
    }
    // Down again: a clear error, not a crash.
    let again = rkube_cluster(&["down", "--name", &name, "--state-dir", &state_arg]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains(&format!("no cluster {name}")),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}
