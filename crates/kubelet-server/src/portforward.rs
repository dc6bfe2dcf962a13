//! `/portForward/{namespace}/{pod}`: each forwarded connection is a pair
//! of SPDY streams (`streamType: error` and `streamType: data`, sharing
//! `port` and `requestID` headers); the data stream is joined to a TCP
//! connection to 127.0.0.1:PORT inside the pod's network namespace.
//!
//! Upstream counterpart: `pkg/kubelet/cri/streaming/portforward`
//! (httpstream.go) and the runtime's `PortForward` (a dial from inside
//! the sandbox's netns). The SPDY connection arrives either on the
//! upgraded socket (`portforward.k8s.io`, kubectl ≤ 1.29) or tunnelled in
//! WebSocket binary messages (`v2.portforward.k8s.io`, kubectl 1.30+).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::runtime::{PodNetwork, PodRuntime};
use crate::spdy::{self, Event};

pub const SPDY_PROTOCOL: &str = "portforward.k8s.io";
/// The WebSocket subprotocols of the tunnel: kubectl 1.30+ offers the
/// first (client-go's `portforward.v2`); the second is its older name.
pub const WS_TUNNEL_PROTOCOLS: &[&str] = &["SPDY/3.1+portforward.k8s.io", "v2.portforward.k8s.io"];

/// The channel protocol over WebSocket (the Python client's, and
/// upstream kubelet's `websocket.go`): ports from `?ports=`, channels
/// 2i (data) and 2i+1 (error) for the i-th port, each opened by the
/// server with the port number (two bytes, little endian).
pub const WS_CHANNEL_PROTOCOL: &str = "v4.channel.k8s.io";

/// `?ports=80,443` (or repeated `ports=`); upstream's messages.
pub fn ports_from_query(query: Option<&str>) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if k != "ports" && k != "port" {
            continue;
        }
        for p in v.split(',').filter(|p| !p.is_empty()) {
            match p.trim().parse::<u16>() {
                Ok(n) if n > 0 => ports.push(n),
                _ => return Err(format!("unable to parse \"{p}\" as a port: invalid port")),
            }
        }
    }
    if ports.is_empty() {
        return Err("query parameter \"port\" is required".into());
    }
    Ok(ports)
}

/// Serves the channel protocol: one connection to each port for the
/// WebSocket's lifetime.
pub async fn serve_channels(
    rt: Arc<dyn PodRuntime>,
    namespace: String,
    pod: String,
    uid: String,
    ports: Vec<u16>,
    pipes: crate::transport::Pipes,
) {
    let (mut inbound, outbound) = pipes;
    let message = |channel: usize, data: &[u8]| {
        let mut m = Vec::with_capacity(data.len() + 1);
        m.push(channel as u8);
        m.extend_from_slice(data);
        Bytes::from(m)
    };
    for (i, p) in ports.iter().enumerate() {
        for c in [2 * i, 2 * i + 1] {
            if outbound.send(message(c, &p.to_le_bytes())).await.is_err() {
                return;
            }
        }
    }
    let network = rt.network(&namespace, &pod).await;
    let mut writers = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let conn = match &network {
            Ok(n) => dial(n, *port).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match conn {
            Ok(tcp) => {
                let (mut r, w) = tcp.into_split();
                writers.push(Some(w));
                let out = outbound.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 32 * 1024];
                    while let Ok(n) = r.read(&mut buf).await {
                        if n == 0 || out.send(message(2 * i, &buf[..n])).await.is_err() {
                            break;
                        }
                    }
                });
            }
            Err(e) => {
                writers.push(None);
                let msg = format!("error forwarding port {port} to pod {pod}, uid {uid}: {e}");
                let _ = outbound.send(message(2 * i + 1, msg.as_bytes())).await;
            }
        }
    }
    drop(outbound);
    while let Some(msg) = inbound.recv().await {
        let Some((&channel, data)) = msg.split_first() else {
            continue;
        };
        let channel = channel as usize;
        if !channel.is_multiple_of(2) || data.is_empty() {
            continue;
        }
        if let Some(Some(w)) = writers.get_mut(channel / 2) {
            if w.write_all(data).await.is_err() {
                writers[channel / 2] = None;
            }
        }
    }
}

/// Connects to `port` on the pod's loopback. A namespace dial happens on
/// a thread of its own that exits afterwards, so no pooled thread is
/// left in the pod's namespace; the socket stays in it.
pub async fn dial(network: &PodNetwork, port: u16) -> std::io::Result<TcpStream> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let path = match network {
        PodNetwork::Host => return TcpStream::connect(addr).await,
        PodNetwork::Namespace(p) => p.clone(),
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(dial_in(&path, addr));
    });
    let stream = rx
        .await
        .map_err(|_| std::io::Error::other("namespace dial thread died"))??;
    stream.set_nonblocking(true)?;
    TcpStream::from_std(stream)
}

fn dial_in(netns: &Path, addr: SocketAddr) -> std::io::Result<std::net::TcpStream> {
    let ns = std::fs::File::open(netns)?;
    rustix::thread::move_into_link_name_space(
        std::os::fd::AsFd::as_fd(&ns),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )?;
    let connect =
        || std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(10));
    match connect() {
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NETUNREACH.raw_os_error()) => {
            // A sandbox whose loopback is still down (upstream's CNI
            // `loopback` plugin brings it up; the pod network may not have
            // yet). The child runs in this thread's namespace.
            let out = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
                .iter()
                .find(|p| Path::new(p).exists())
                .map(|ip| {
                    std::process::Command::new(ip)
                        .args(["link", "set", "lo", "up"])
                        .output()
                });
            match out {
                Some(Ok(o)) if o.status.success() => connect(),
                Some(Ok(o)) => {
                    let msg = String::from_utf8_lossy(&o.stderr).trim().to_string();
                    tracing::warn!(%msg, "bringing up the pod's loopback failed");
                    Err(e)
                }
                Some(Err(err)) => {
                    tracing::warn!(%err, "bringing up the pod's loopback failed");
                    Err(e)
                }
                None => Err(e),
            }
        }
        other => other,
    }
}

#[derive(Default)]
struct Pair {
    error: Option<u32>,
    data: Option<u32>,
    /// Bytes from the client towards the pod's socket.
    to_pod: Option<mpsc::Sender<Option<Bytes>>>,
}

/// Serves one port-forward connection until the client closes it.
pub async fn serve(
    rt: Arc<dyn PodRuntime>,
    namespace: String,
    pod: String,
    uid: String,
    mut conn: spdy::Connection,
) {
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut by_stream: HashMap<u32, String> = HashMap::new();
    while let Some(ev) = conn.events.recv().await {
        match ev {
            Event::Stream { id, headers } => {
                let request = spdy::header(&headers, "requestid")
                    .unwrap_or("")
                    .to_string();
                let kind = spdy::header(&headers, "streamtype").unwrap_or("");
                let port = spdy::header(&headers, "port").unwrap_or("");
                by_stream.insert(id, request.clone());
                let pair = pairs.entry(request.clone()).or_default();
                match kind {
                    "error" => pair.error = Some(id),
                    "data" => pair.data = Some(id),
                    _ => continue,
                }
                if pair.data.is_none() || pair.to_pod.is_some() {
                    continue;
                }
                let (tx, rx) = mpsc::channel(16);
                pair.to_pod = Some(tx);
                let ctx = Forward {
                    rt: rt.clone(),
                    namespace: namespace.clone(),
                    pod: pod.clone(),
                    uid: uid.clone(),
                    port: port.to_string(),
                    data: id,
                    error: pair.error,
                    writer: conn.writer.clone(),
                };
                tokio::spawn(ctx.run(rx));
            }
            Event::Data { id, data } => {
                if let Some(tx) = to_pod(&pairs, &by_stream, id) {
                    let _ = tx.send(Some(data)).await;
                }
            }
            Event::Fin { id } | Event::Reset { id } => {
                if let Some(tx) = to_pod(&pairs, &by_stream, id) {
                    let _ = tx.send(None).await;
                }
            }
        }
    }
}

fn to_pod(
    pairs: &HashMap<String, Pair>,
    by_stream: &HashMap<u32, String>,
    id: u32,
) -> Option<mpsc::Sender<Option<Bytes>>> {
    let pair = pairs.get(by_stream.get(&id)?)?;
    if pair.data != Some(id) {
        return None;
    }
    pair.to_pod.clone()
}

struct Forward {
    rt: Arc<dyn PodRuntime>,
    namespace: String,
    pod: String,
    uid: String,
    port: String,
    data: u32,
    error: Option<u32>,
    writer: spdy::Writer,
}

impl Forward {
    async fn fail(&self, reason: String) {
        let msg = format!(
            "error forwarding port {} to pod {}, uid {}: {reason}",
            self.port, self.pod, self.uid
        );
        tracing::debug!(%msg, "port-forward failed");
        if let Some(e) = self.error {
            self.writer.data(e, Bytes::from(msg)).await;
            self.writer.fin(e).await;
        }
        self.writer.fin(self.data).await;
    }

    async fn run(self, mut from_client: mpsc::Receiver<Option<Bytes>>) {
        let port: u16 = match self.port.parse() {
            Ok(p) if p > 0 => p,
            _ => return self.fail(format!("invalid port {:?}", self.port)).await,
        };
        let network = match self.rt.network(&self.namespace, &self.pod).await {
            Ok(n) => n,
            Err(e) => return self.fail(e.to_string()).await,
        };
        let tcp = match dial(&network, port).await {
            Ok(s) => s,
            Err(e) => {
                return self
                    .fail(format!(
                        "failed to connect to localhost:{port} inside namespace: {e}"
                    ))
                    .await
            }
        };
        let (mut r, mut w) = tcp.into_split();
        let writer = self.writer.clone();
        let (data, error) = (self.data, self.error);
        // The pod's side ending ends the forward, as upstream: kubectl
        // waits for the error stream to close before it lets go of the
        // local connection (and with it its half of the data stream).
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if !writer.data(data, Bytes::copy_from_slice(&buf[..n])).await {
                            return;
                        }
                    }
                }
            }
            writer.fin(data).await;
            if let Some(e) = error {
                writer.fin(e).await;
            }
        });
        while let Some(Some(chunk)) = from_client.recv().await {
            if w.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = w.shutdown().await;
    }
}
