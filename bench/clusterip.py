#!/usr/bin/env python3
"""ClusterIP vs direct pod-IP traffic, on rkube-proxy's real nft rules.

Two "nodes" (network namespaces n1, n2, each with a bridge holding its pod
range, joined by a veth pair with host-gw routes) and three "pods" (netns,
veth into the bridge): a client and a server on n1, a server on n2. The
rules rkube-proxy renders (crates/proxy/examples/nft_rules.rs) for
ClusterIP Services pointing at each server are applied on both nodes.
Then, from the client, alternating so load drifts hit both sides alike:
  stream  TCP throughput for a few seconds (one connection);
  rr      1-byte request/response round trips on one connection;
  crr     connect, 1-byte request/response, close (a new conntrack entry
          and a pass through the nat chains each time);
each against the ClusterIP and directly against the pod IP, same node and
across nodes. Ratios are ClusterIP/direct for throughput and
direct/ClusterIP for latency, so 1.0 is "no cost" and the goal is >= 0.9.
The "paired" lines are the median over rounds of each round's own ratio
(direct and ClusterIP measured back to back), which shared, loaded
machines disturb less than the pooled percentiles. Also checks hairpin traffic (a pod reaching itself through its Service).

Needs root, nft, ip, cargo. Usage: sudo bench/clusterip.py [--seconds 3]
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

SINK, ECHO = 8080, 8081
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


# ---- servers and clients (run inside pod namespaces) ----

def serve():
    def sink(c):
        buf = bytearray(1 << 20)
        n = 0
        with c:
            while True:
                r = c.recv_into(buf)
                if not r:
                    break
                n += r

    def echo(c):
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with c:
            while True:
                d = c.recv(64)
                if not d:
                    break
                c.sendall(d)

    def listen(port, handler):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(512)
        while True:
            c, _ = s.accept()
            threading.Thread(target=handler, args=(c,), daemon=True).start()

    threading.Thread(target=listen, args=(SINK, sink), daemon=True).start()
    print("ready", flush=True)
    listen(ECHO, echo)


def client(mode, host, port, amount):
    port = int(port)
    if mode == "stream":
        secs = float(amount)
        s = socket.create_connection((host, port), timeout=10)
        data = b"\0" * (1 << 20)
        n = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < secs:
            s.sendall(data)
            n += len(data)
        s.shutdown(socket.SHUT_WR)
        s.recv(1)  # the server closes once it has read everything
        dt = time.perf_counter() - t0
        s.close()
        print(json.dumps({"gbps": n * 8 / dt / 1e9}))
    elif mode == "rr":
        count = int(amount)
        s = socket.create_connection((host, port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        lat = []
        for _ in range(count):
            t = time.perf_counter()
            s.sendall(b"x")
            if s.recv(1) != b"x":
                raise SystemExit("rr: bad reply")
            lat.append(time.perf_counter() - t)
        s.close()
        print(json.dumps({"lat": lat}))
    elif mode == "crr":
        count = int(amount)
        lat = []
        for _ in range(count):
            t = time.perf_counter()
            s = socket.create_connection((host, port), timeout=10)
            s.sendall(b"x")
            if s.recv(1) != b"x":
                raise SystemExit("crr: bad reply")
            s.close()
            lat.append(time.perf_counter() - t)
        print(json.dumps({"lat": lat}))


# ---- the test bed ----

class Bed:
    def __init__(self):
        self.pre = f"rkcip{os.getpid()}"
        self.ns = []
        self.procs = []

    def name(self, n):
        return f"{self.pre}-{n}"

    def sh(self, ns, *args, input=None):
        cmd = (["ip", "netns", "exec", self.name(ns)] if ns else []) + list(args)
        # Bounded: a stuck run fails loudly instead of hanging the bench.
        r = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)}: {r.stderr.strip()}")
        return r.stdout

    def add_ns(self, n):
        subprocess.run(["ip", "netns", "add", self.name(n)], check=True)
        self.ns.append(n)
        self.sh(n, "ip", "link", "set", "lo", "up")

    def node(self, n, cidr_gw):
        self.add_ns(n)
        self.sh(n, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.sh(n, "ip", "link", "add", "br0", "type", "bridge")
        self.sh(n, "ip", "addr", "add", cidr_gw, "dev", "br0")
        self.sh(n, "ip", "link", "set", "br0", "up")

    def pod(self, p, node, ip, gw):
        self.add_ns(p)
        host = f"v{p}"
        self.sh(node, "ip", "link", "add", host, "type", "veth", "peer",
                "name", "eth0", "netns", self.name(p))
        self.sh(node, "ip", "link", "set", host, "master", "br0", "up")
        # As crates/network does: hairpin traffic leaves by the port it
        # came in on.
        self.sh(node, "ip", "link", "set", host, "type", "bridge_slave", "hairpin", "on")
        self.sh(p, "ip", "addr", "add", f"{ip}/24", "dev", "eth0")
        self.sh(p, "ip", "link", "set", "eth0", "up")
        self.sh(p, "ip", "route", "add", "default", "via", gw)

    def build(self):
        self.node("n1", "10.42.1.1/24")
        self.node("n2", "10.42.2.1/24")
        self.sh("n1", "ip", "link", "add", "nl", "type", "veth", "peer",
                "name", "nl", "netns", self.name("n2"))
        for n, a, peer, other in (("n1", "192.168.250.1", "192.168.250.2", "10.42.2.0/24"),
                                  ("n2", "192.168.250.2", "192.168.250.1", "10.42.1.0/24")):
            self.sh(n, "ip", "addr", "add", f"{a}/24", "dev", "nl")
            self.sh(n, "ip", "link", "set", "nl", "up")
            self.sh(n, "ip", "route", "add", other, "via", peer)
        self.pod("c1", "n1", "10.42.1.2", "10.42.1.1")
        self.pod("s1", "n1", "10.42.1.3", "10.42.1.1")
        self.pod("s2", "n2", "10.42.2.2", "10.42.2.1")
        for p in ("s1", "s2"):
            pr = subprocess.Popen(["ip", "netns", "exec", self.name(p), sys.executable,
                                   os.path.abspath(__file__), "serve"],
                                  stdout=subprocess.PIPE, text=True)
            self.procs.append(pr)
            if pr.stdout.readline().strip() != "ready":
                raise SystemExit(f"server in {p} did not start")

    def rules(self):
        def svc(name, ip, target):
            return {"metadata": {"namespace": "bench", "name": name},
                    "spec": {"clusterIP": ip, "ports": [
                        {"name": "sink", "port": 80, "protocol": "TCP"},
                        {"name": "echo", "port": 81, "protocol": "TCP"}]}}

        def eps(name, ip, node):
            return {"metadata": {"namespace": "bench", "name": f"{name}-x",
                                 "labels": {"kubernetes.io/service-name": name}},
                    "addressType": "IPv4",
                    "endpoints": [{"addresses": [ip], "conditions": {"ready": True},
                                   "nodeName": node}],
                    "ports": [{"name": "sink", "port": SINK, "protocol": "TCP"},
                              {"name": "echo", "port": ECHO, "protocol": "TCP"}]}

        world = {"clusterCIDR": "10.42.0.0/16",
                 "services": [svc("local", "10.43.0.100", "s1"), svc("remote", "10.43.0.101", "s2")],
                 "endpointSlices": [eps("local", "10.42.1.3", "n1"), eps("remote", "10.42.2.2", "n2")]}
        for node in ("n1", "n2"):
            world["node"] = node
            script = subprocess.run(rules_cmd(), cwd=REPO, input=json.dumps(world),
                                    capture_output=True, text=True)
            if script.returncode != 0:
                raise SystemExit(f"nft_rules: {script.stderr}")
            self.sh(node, "nft", "-f", "-", input=script.stdout)

    def client(self, pod, mode, host, port, amount):
        out = self.sh(pod, sys.executable, os.path.abspath(__file__), "client",
                      mode, host, str(port), str(amount))
        return json.loads(out)

    def close(self):
        for p in self.procs:
            p.kill()
            p.wait()
        for n in self.ns:
            subprocess.run(["ip", "netns", "del", self.name(n)], capture_output=True)


def rules_cmd():
    """The renderer: the built example when it is newer than the proxy's
    sources (cargo run would wait for the shared build lock), else cargo."""
    exe = os.path.join(REPO, "target", "debug", "examples", "nft_rules")
    src = os.path.join(REPO, "crates", "proxy")
    newest = max(os.path.getmtime(os.path.join(d, f))
                 for d, _, fs in os.walk(src) for f in fs if f.endswith((".rs", ".toml")))
    if os.path.exists(exe) and os.path.getmtime(exe) > newest:
        return [exe]
    return ["cargo", "run", "-q", "-p", "rkube-proxy", "--example", "nft_rules"]


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round((len(v) - 1) * p)))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0, help="per stream run")
    ap.add_argument("--rounds", type=int, default=3, help="alternating runs per pair")
    ap.add_argument("--rr", type=int, default=3000, help="round trips per rr run")
    ap.add_argument("--crr", type=int, default=500, help="connections per crr run")
    a = ap.parse_args()
    bed = Bed()
    try:
        bed.build()
        bed.rules()
        # Hairpin: the server pod reaching itself through its Service.
        r = bed.client("s1", "crr", "10.43.0.100", 81, 20)
        print(f"hairpin (pod -> own Service): {len(r['lat'])} connections ok")
        cases = [("same node", "10.42.1.3", "10.43.0.100"),
                 ("across nodes", "10.42.2.2", "10.43.0.101")]
        print(f"{'':14}{'':8}{'direct':>12}{'ClusterIP':>12}{'ratio':>8}")
        for label, pod_ip, cip in cases:
            res = {k: {"direct": [], "cip": []} for k in ("stream", "rr", "crr")}
            # Per round, the direct and ClusterIP runs sit next to each
            # other in time; their ratio cancels most of the load drift
            # that pooled percentiles across rounds suffer from.
            paired = {"stream": [], "rr": [], "crr": []}
            # The same pairs as a difference: what the ClusterIP adds to a
            # round trip or a new connection, in µs (the client's own
            # per-connection cost, large in Python, cancels out).
            extra = {"rr": [], "crr": []}
            for rnd in range(a.rounds):
                order = [("direct", pod_ip), ("cip", cip)]
                if rnd % 2:
                    order.reverse()
                this = {}
                for kind, host in order:
                    print(f"  {label} round {rnd + 1}: {kind}", file=sys.stderr, flush=True)
                    g = bed.client("c1", "stream", host, SINK if kind == "direct" else 80,
                                   a.seconds)["gbps"]
                    rr = bed.client("c1", "rr", host, ECHO if kind == "direct" else 81, a.rr)["lat"]
                    crr = bed.client("c1", "crr", host, ECHO if kind == "direct" else 81,
                                     a.crr)["lat"]
                    res["stream"][kind].append(g)
                    res["rr"][kind] += rr
                    res["crr"][kind] += crr
                    this[kind] = (g, statistics.median(rr), statistics.median(crr))
                paired["stream"].append(this["cip"][0] / this["direct"][0])
                paired["rr"].append(this["direct"][1] / this["cip"][1])
                paired["crr"].append(this["direct"][2] / this["cip"][2])
                extra["rr"].append((this["cip"][1] - this["direct"][1]) * 1e6)
                extra["crr"].append((this["cip"][2] - this["direct"][2]) * 1e6)
            d, c = statistics.median(res["stream"]["direct"]), statistics.median(res["stream"]["cip"])
            print(f"{label:14}{'Gbit/s':8}{d:12.2f}{c:12.2f}{c / d:8.2f}")
            for k in ("rr", "crr"):
                for p, pn in ((0.5, "p50"), (0.99, "p99")):
                    dl, cl = pct(res[k]["direct"], p) * 1e6, pct(res[k]["cip"], p) * 1e6
                    print(f"{label:14}{k + ' ' + pn:8}{dl:10.0f}us{cl:10.0f}us{dl / cl:8.2f}")
            for k in ("stream", "rr", "crr"):
                v = paired[k]
                print(f"{label:14}{k:8}{'paired':>24}{statistics.median(v):8.2f}"
                      f"  (median of {len(v)} rounds; min {min(v):.2f}, max {max(v):.2f})")
            for k in ("rr", "crr"):
                v = extra[k]
                print(f"{label:14}{k:8}{'ClusterIP adds':>24}{statistics.median(v):6.0f}us"
                      f"  (median of {len(v)} rounds; min {min(v):.0f}, max {max(v):.0f})")
    finally:
        bed.close()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve()
    elif len(sys.argv) > 1 and sys.argv[1] == "client":
        client(*sys.argv[2:6])
    else:
        main()
