//! Serving the zone over UDP and TCP, and forwarding names outside it to
//! the node's upstream resolvers.
//!
//! Upstream counterpart: CoreDNS's server with the kubernetes and forward
//! plugins (`forward . /etc/resolv.conf`). Upstreams are a parameter so
//! tests forward to a fake resolver on loopback.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use crate::wire::{self, Query};
use crate::zone::{Answer, Zone};

/// Errors of running the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("read resolv.conf {path}: {source}")]
    ResolvConf {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Largest UDP answer without EDNS (RFC 1035); larger ones are truncated
/// so the client retries over TCP.
const UDP_MAX: usize = 512;

/// The shared, swappable zone and the forwarding configuration.
#[derive(Debug)]
pub struct Resolver {
    zone: RwLock<Arc<Zone>>,
    upstreams: Vec<SocketAddr>,
    forward_timeout: Duration,
}

/// What to do with one query.
pub enum Outcome {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// Not a cluster name: forward the raw query upstream.
    Forward,
}

impl Resolver {
    /// A resolver over `zone` forwarding other names to `upstreams`.
    pub fn new(zone: Zone, upstreams: Vec<SocketAddr>) -> Arc<Resolver> {
        Arc::new(Resolver {
            zone: RwLock::new(Arc::new(zone)),
            upstreams,
            forward_timeout: Duration::from_secs(2),
        })
    }

    /// Replaces the zone (after Services or EndpointSlices changed).
    pub fn set_zone(&self, zone: Zone) {
        *self.zone.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(zone);
    }

    fn zone(&self) -> Arc<Zone> {
        self.zone.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Answers a raw query from the zone, or says to forward it.
    pub fn handle(&self, raw: &[u8]) -> Outcome {
        let q: Query = match wire::parse_query(raw) {
            Ok(q) => q,
            Err(wire::Error::NotQuery) => return Outcome::Reply(Vec::new()),
            Err(_) => return Outcome::Reply(wire::error_response(raw, wire::RCODE_FORMERR)),
        };
        if q.opcode != 0 {
            return Outcome::Reply(wire::error_response(raw, wire::RCODE_NOTIMP));
        }
        let zone = self.zone();
        let (rcode, answers, authority) = match zone.answer(&q.name, q.qtype) {
            Answer::NotOurs => {
                if self.upstreams.is_empty() {
                    return Outcome::Reply(wire::error_response(raw, wire::RCODE_SERVFAIL));
                }
                return Outcome::Forward;
            }
            Answer::Records(r) => (wire::RCODE_NOERROR, r, Vec::new()),
            Answer::NoData => (wire::RCODE_NOERROR, Vec::new(), vec![zone.soa_record()]),
            Answer::NxDomain => (wire::RCODE_NXDOMAIN, Vec::new(), vec![zone.soa_record()]),
        };
        Outcome::Reply(wire::response(raw, &q, rcode, true, &answers, &authority))
    }

    /// Sends `raw` to the upstreams in turn until one answers.
    pub async fn forward(&self, raw: &[u8]) -> Vec<u8> {
        for up in &self.upstreams {
            let bind: SocketAddr = if up.is_ipv4() {
                "0.0.0.0:0".parse().expect("literal")
            } else {
                "[::]:0".parse().expect("literal")
            };
            let Ok(sock) = UdpSocket::bind(bind).await else {
                continue;
            };
            if sock.send_to(raw, up).await.is_err() {
                continue;
            }
            let mut buf = vec![0u8; 4096];
            match tokio::time::timeout(self.forward_timeout, sock.recv_from(&mut buf)).await {
                Ok(Ok((n, from))) if from == *up && n >= 2 && buf[..2] == raw[..2] => {
                    buf.truncate(n);
                    return buf;
                }
                Ok(_) | Err(_) => {
                    tracing::debug!(upstream = %up, "upstream did not answer");
                }
            }
        }
        wire::error_response(raw, wire::RCODE_SERVFAIL)
    }
}

/// Binds UDP and TCP on `addr` and serves until the task is dropped.
/// Returns the bound address (useful with port 0).
pub async fn serve(resolver: Arc<Resolver>, addr: SocketAddr) -> Result<SocketAddr, Error> {
    // With port 0 the kernel picks a free UDP port, which TCP may still
    // hold elsewhere: pick again rather than fail.
    let attempts = if addr.port() == 0 { 16 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        let bound = udp
            .local_addr()
            .map_err(|source| Error::Bind { addr, source })?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => {
                tokio::spawn(serve_udp(Arc::new(udp), resolver.clone()));
                tokio::spawn(serve_tcp(tcp, resolver));
                return Ok(bound);
            }
            Err(source) => {
                last = Some(Error::Bind {
                    addr: bound,
                    source,
                })
            }
        }
    }
    Err(last.expect("at least one attempt"))
}

async fn serve_udp(sock: Arc<UdpSocket>, resolver: Arc<Resolver>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(error = %e, "dns udp receive");
                continue;
            }
        };
        let raw = &buf[..n];
        match resolver.handle(raw) {
            Outcome::Reply(out) if out.is_empty() => {}
            Outcome::Reply(out) => {
                let _ = sock.send_to(&truncate_udp(out), peer).await;
            }
            Outcome::Forward => {
                // Upstream round trips must not stall cluster answers.
                let (raw, sock, resolver) = (raw.to_vec(), sock.clone(), resolver.clone());
                tokio::spawn(async move {
                    let out = resolver.forward(&raw).await;
                    let _ = sock.send_to(&out, peer).await;
                });
            }
        }
    }
}

/// Over UDP an answer past 512 bytes becomes its header and question with
/// the TC bit set.
fn truncate_udp(mut out: Vec<u8>) -> Vec<u8> {
    if out.len() <= UDP_MAX {
        return out;
    }
    let qend = wire::parse_query_end(&out).unwrap_or(12).min(out.len());
    out.truncate(qend);
    out[2] |= 0x02;
    out[6..12].fill(0);
    out
}

async fn serve_tcp(listener: TcpListener, resolver: Arc<Resolver>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(serve_conn(stream, resolver.clone()));
    }
}

async fn serve_conn(mut stream: TcpStream, resolver: Arc<Resolver>) {
    loop {
        let mut len = [0u8; 2];
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut len));
        if !matches!(read.await, Ok(Ok(_))) {
            return;
        }
        let mut raw = vec![0u8; u16::from_be_bytes(len) as usize];
        if stream.read_exact(&mut raw).await.is_err() {
            return;
        }
        let out = match resolver.handle(&raw) {
            Outcome::Reply(out) if out.is_empty() => continue,
            Outcome::Reply(out) => out,
            Outcome::Forward => resolver.forward(&raw).await,
        };
        let mut framed = Vec::with_capacity(out.len() + 2);
        framed.extend_from_slice(&(out.len() as u16).to_be_bytes());
        framed.extend_from_slice(&out);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}

/// The nameservers of a resolv.conf (port 53), skipping our own address
/// so the server never forwards to itself.
pub fn upstreams_from_resolv_conf(
    path: &str,
    own: &[std::net::IpAddr],
) -> Result<Vec<SocketAddr>, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::ResolvConf {
        path: path.to_string(),
        source,
    })?;
    Ok(text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
        .filter(|ip| !own.contains(ip))
        .map(|ip| SocketAddr::new(ip, 53))
        .collect())
}
