#!/usr/bin/env python3
"""Server memory benchmark (issues 3 and 5): RSS of `rkube server` with
10,000 pods stored, component by component.

Upstream counterpart: the memory figures of Kubernetes' scalability tests
(clusterloader2's resource-usage gatherer), cut down to one process.

For each configuration it starts the release binary on a fresh data dir
(loopback only), reads VmRSS idle, creates the pods with 16 keep-alive
HTTPS clients, waits until the RSS stops moving (the controllers and the
scheduler have caught up), and prints idle and loaded RSS. The first
configuration is the API server alone (the baseline), then the controller
manager, then the scheduler are added; the agent stays off (10,000 pods on
a real kubelet is a different benchmark). Pods are left unscheduled: no
node exists, so the scheduler keeps them all queued, its worst case.

    python3 bench/memory.py                  # all configurations, 10,000 pods
    PODS=1000 python3 bench/memory.py        # quick run
    RKUBE_BIN=/tmp/rkube CONFIGS=api,cm python3 bench/memory.py

To compare builds, name several binaries; the first is the baseline and
every row also gets its ratio to the baseline's row, in the same run (the
machine's load changes from run to run, so readings from different runs
do not compare well):

    BINS=before=/tmp/rkube-old,after=target/release/rkube python3 bench/memory.py

Each row also shows the 1-minute load average when it was read: other
builds on a shared machine slow the creates, and bursts that pile up
in buffers leave more resident memory behind.

An ad-hoc configuration is `CONFIG_<name>="<flags>"` plus its name in
CONFIGS, e.g. to see what the garbage collector costs:

    CONFIG_nogc="--disable-scheduler --disable-agent --controllers=*,-garbagecollector" \
        CONFIGS=api,cm,nogc python3 bench/memory.py

Where the memory goes:

    TRIM=1      after settling, call glibc's malloc_trim(0) in the server
                through gdb and read RSS again: the drop is memory glibc
                held freed but not returned (fragmentation, arena caches)
    HOLD=300    keep watching for 300 s more after settling and report
                the highest RSS (growth while the scheduler keeps retrying)
    TRACE=1     print RSS once a second while settling and holding
    ENV_<label>="MALLOC_ARENA_MAX=2 ..."
                environment for one binary of BINS, e.g. to compare glibc
                settings on the same build:
                BINS=glibc=target/release/rkube,arena2=target/release/rkube \
                    ENV_arena2=MALLOC_ARENA_MAX=2 python3 bench/memory.py

Only the Python standard library is needed (gdb for TRIM). Results:
docs/PERF.md, "Memory".
"""
import base64
import http.client
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("RKUBE_BIN", os.path.join(ROOT, "target/release/rkube"))
# label=path pairs; the first is the baseline.
BINS = [tuple(b.split("=", 1)) for b in os.environ.get("BINS", "release=" + BIN).split(",")]
PODS = int(os.environ.get("PODS", "10000"))
CLIENTS = 16
NS = "bench"
MIB = 1024 * 1024

# name -> server flags; each adds one component to the previous.
ALL_CONFIGS = {
    "api": ["--disable-controller-manager", "--disable-scheduler", "--disable-agent"],
    "cm": ["--disable-scheduler", "--disable-agent"],
    "sched": ["--disable-agent"],
}


def pod(i):
    """The pod of crates/rkube/benches/api/workloads.rs (a Deployment's pod)."""
    env = [{"name": k, "value": v} for k, v in [
        ("LOG_LEVEL", "info"), ("LOG_FORMAT", "json"), ("HTTP_PORT", "8080"),
        ("METRICS_PORT", "9102"), ("CACHE_SIZE_MB", "64"),
        ("UPSTREAM_URL", "http://backend.bench.svc.cluster.local:8080"),
        ("FEATURE_FLAGS", "new-checkout,fast-search,dark-mode"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel-collector.observability:4317"),
    ]] + [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    ]

    def probe(path):
        return {"httpGet": {"path": path, "port": 8080, "scheme": "HTTP"},
                "initialDelaySeconds": 5, "periodSeconds": 10, "timeoutSeconds": 1,
                "successThreshold": 1, "failureThreshold": 3}

    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": "bench-pod-%05d" % i, "namespace": NS,
            "labels": {"app.kubernetes.io/name": "web", "app.kubernetes.io/instance": "web-bench",
                       "app.kubernetes.io/version": "1.27.3", "tier": "frontend",
                       "pod-template-hash": "5d8f7c9b4", "shard": str(i % 16)},
            "annotations": {"kubectl.kubernetes.io/default-container": "web",
                            "prometheus.io/scrape": "true", "prometheus.io/port": "9102"},
        },
        "spec": {
            "containers": [{
                "name": "web", "image": "registry.example.com/team/web:1.27.3",
                "imagePullPolicy": "IfNotPresent", "command": ["/app/server"],
                "args": ["--port=8080", "--metrics-port=9102", "--config=/etc/web/config.yaml"],
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"},
                          {"name": "metrics", "containerPort": 9102, "protocol": "TCP"}],
                "env": env,
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                              "limits": {"cpu": "500m", "memory": "256Mi"}},
                "volumeMounts": [{"name": "config", "mountPath": "/etc/web", "readOnly": True}],
                "readinessProbe": probe("/readyz"), "livenessProbe": probe("/healthz"),
            }],
            "volumes": [{"name": "config", "configMap": {"name": "web-config", "defaultMode": 420}}],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst", "nodeSelector": {"kubernetes.io/os": "linux"},
        },
    }


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS for pid %d" % pid)


TRACE = os.environ.get("TRACE") == "1"
HOLD = float(os.environ.get("HOLD", "0"))
TRIM = os.environ.get("TRIM") == "1"


def bin_env(label):
    env = dict(os.environ)
    for kv in os.environ.get("ENV_" + label, "").split():
        k, _, v = kv.partition("=")
        env[k] = v
    return env


class Server:
    def __init__(self, binary, flags, env=None):
        self.dir = tempfile.mkdtemp(prefix="rkube-mem-")
        self.port = free_port()
        kubeconfig = os.path.join(self.dir, "kubeconfig.yaml")
        self.log = open(os.path.join(self.dir, "server.log"), "w")
        self.proc = subprocess.Popen(
            [binary, "server", "--data-dir", self.dir, "--bind-address", "127.0.0.1",
             "--https-listen-port", str(self.port), "--write-kubeconfig", kubeconfig] + flags,
            stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + float(os.environ.get("READY_TIMEOUT", "60"))
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited: see %s/server.log" % self.dir)
            if time.time() > deadline:
                raise RuntimeError("server not ready: see %s/server.log" % self.dir)
            if os.path.exists(kubeconfig):
                try:
                    self.ctx = self._tls(kubeconfig)
                    if self.request("GET", "/readyz")[0] == 200:
                        break
                except (OSError, ValueError, http.client.HTTPException):
                    pass
            time.sleep(0.2)

    def _tls(self, kubeconfig):
        text = open(kubeconfig).read()

        def field(name):
            m = re.search(r"%s:\s*(\S+)" % name, text)
            if not m:
                raise ValueError("kubeconfig has no " + name)
            path = os.path.join(self.dir, name + ".pem")
            with open(path, "wb") as f:
                f.write(base64.b64decode(m.group(1)))
            return path

        ctx = ssl.create_default_context(cafile=field("certificate-authority-data"))
        ctx.check_hostname = False
        ctx.load_cert_chain(field("client-certificate-data"), field("client-key-data"))
        return ctx

    def conn(self):
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=60)

    def request(self, method, path, body=None, conn=None):
        c = conn or self.conn()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        c.request(method, path, body=body, headers=headers)
        r = c.getresponse()
        data = r.read()
        if conn is None:
            c.close()
        return r.status, data

    def rss(self):
        return rss_mib(self.proc.pid)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def create_pods(server, n):
    errors = []

    def worker(k):
        c = server.conn()
        try:
            for i in range(k, n, CLIENTS):
                status, data = server.request(
                    "POST", "/api/v1/namespaces/%s/pods" % NS, json.dumps(pod(i)), conn=c)
                if status != 201:
                    errors.append("pod %d: %d %s" % (i, status, data[:200]))
                    return
        finally:
            c.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(CLIENTS)]
    started = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(errors[0])
    return n / (time.time() - started)


def settle(server, quiet=5.0, limit=120.0):
    """Poll RSS once a second until it moved < 1 MiB for `quiet` seconds."""
    started = time.time()
    last, since = server.rss(), time.time()
    while time.time() - started < limit:
        time.sleep(1)
        now = server.rss()
        if TRACE:
            print("  t=%3.0fs rss=%.0f MiB" % (time.time() - started, now), file=sys.stderr)
        if abs(now - last) >= 1.0:
            last, since = now, time.time()
        elif time.time() - since >= quiet:
            break
    return server.rss()


def hold(server, seconds):
    """The highest RSS over `seconds` more."""
    top = server.rss()
    started = time.time()
    while time.time() - started < seconds:
        time.sleep(1)
        now = server.rss()
        top = max(top, now)
        if TRACE:
            print("  hold t=%3.0fs rss=%.0f MiB" % (time.time() - started, now), file=sys.stderr)
    return top


def trimmed(server):
    """RSS after glibc's malloc_trim(0), called in the server through gdb."""
    subprocess.run(["gdb", "-p", str(server.proc.pid), "-batch", "-ex",
                    "call (int) malloc_trim(0)"], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=120)
    time.sleep(1)
    return server.rss()


def config_flags(name):
    if name in ALL_CONFIGS:
        return ALL_CONFIGS[name]
    extra = os.environ.get("CONFIG_" + name)
    if extra is None:
        raise SystemExit("unknown configuration %r: set CONFIG_%s" % (name, name))
    return extra.split()


LABELS = {"api": "API server alone", "cm": "+ controller manager", "sched": "+ scheduler"}


def measure(label, binary, name, flags):
    server = Server(binary, flags, bin_env(label))
    try:
        idle = settle(server, quiet=3.0, limit=30.0)
        status, data = server.request("POST", "/api/v1/namespaces", json.dumps(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}))
        if status != 201:
            raise RuntimeError("namespace: %d %s" % (status, data[:200]))
        rate = create_pods(server, PODS)
        after = server.rss()
        loaded = settle(server)
        held = hold(server, HOLD) if HOLD > 0 else None
        trim = trimmed(server) if TRIM else None
        status, data = server.request("GET", "/api/v1/namespaces/%s/pods/bench-pod-%05d" % (NS, PODS // 2))
        if status != 200:
            raise RuntimeError("get: %d" % status)
        row = {"bin": label, "config": name, "idle": idle, "after_creates": after, "settled": loaded,
               "creates_per_s": rate, "pod_bytes": len(data), "held_max": held,
               "after_trim": trim, "load": os.getloadavg()[0]}
        print(json.dumps(row), file=sys.stderr, flush=True)
        return row
    finally:
        server.stop()


def main():
    names = os.environ.get("CONFIGS", ",".join(ALL_CONFIGS)).split(",")
    # Interleave the binaries per configuration so a change in the
    # machine's load hits both sides of a comparison alike.
    rows = {}
    for n in names:
        for label, binary in BINS:
            rows[(label, n)] = measure(label, binary, n, config_flags(n))
    base_label = BINS[0][0]
    print("| binary | server | RSS idle, MiB | RSS with %d pods, MiB | added by the component, MiB "
          "| ratio to %s | pod creates/s | load average |" % (PODS, base_label))
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, _ in BINS:
        prev = None
        for n in names:
            r = rows[(label, n)]
            added = "-" if prev is None else "%.0f" % (r["settled"] - prev)
            ratio = r["settled"] / rows[(base_label, n)]["settled"]
            print("| %s | %s | %.0f | %.0f | %s | %.2f | %.0f | %.1f |" % (
                label, LABELS.get(n, n), r["idle"], r["settled"], added, ratio,
                r["creates_per_s"], r["load"]))
            prev = r["settled"]
    if HOLD > 0 or TRIM:
        print()
        print("| binary | server | RSS settled, MiB | highest in %.0f s more, MiB "
              "| after malloc_trim, MiB |" % HOLD)
        print("| --- | --- | ---: | ---: | ---: |")
        for label, _ in BINS:
            for n in names:
                r = rows[(label, n)]
                fmt = lambda v: "-" if v is None else "%.0f" % v
                print("| %s | %s | %.0f | %s | %s |" % (
                    label, LABELS.get(n, n), r["settled"], fmt(r["held_max"]),
                    fmt(r["after_trim"])))
    for label, _ in BINS:
        base = rows[(label, names[0])]["settled"]
        print("%s: ratio to %s alone: %s" % (label, names[0], ", ".join(
            "%s %.2f" % (n, rows[(label, n)]["settled"] / base) for n in names)))


if __name__ == "__main__":
    main()
