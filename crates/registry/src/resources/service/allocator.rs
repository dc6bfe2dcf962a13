//! Cluster IP and node port allocation, shared by every API server over
//! the store: one bitmap per range, changed only by compare-and-swap.
//!
//! Upstream counterpart: `pkg/registry/core/service/ipallocator`,
//! `portallocator` and `allocator/storage` (the `RangeAllocation` object
//! under `/registry/ranges/serviceips` and `/registry/ranges/servicenodeports`).
//! As upstream, dynamic picks prefer the upper part of a range, leaving the
//! lower part to users who ask for a fixed IP or port.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use futures::future::BoxFuture;
use rkube_machinery::names::{FastRandom, RandomIndex};
use rkube_storage::Store;
use serde_json::{json, Value};

pub const SERVICE_IPS_KEY: &str = "/registry/ranges/serviceips";
pub const NODE_PORTS_KEY: &str = "/registry/ranges/servicenodeports";

/// Why an allocation failed; the texts are upstream's.
#[derive(Debug)]
pub enum AllocError {
    Full,
    IpAllocated,
    IpNotInRange {
        ip: IpAddr,
        range: String,
    },
    PortAllocated,
    PortNotInRange {
        range: String,
    },
    /// The stored bitmap is unreadable or for another range.
    Corrupt(String),
    Storage(rkube_storage::Error),
    /// Compare-and-swap lost too many times in a row.
    Contended,
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllocError::Full => f.write_str("range is full"),
            AllocError::IpAllocated => f.write_str("provided IP is already allocated"),
            AllocError::IpNotInRange { ip, range } => write!(
                f,
                "the provided IP ({ip}) is not in the valid range. The range of valid IPs is {range}"
            ),
            AllocError::PortAllocated => f.write_str("provided port is already allocated"),
            AllocError::PortNotInRange { range } => write!(
                f,
                "provided port is not in the valid range. The range of valid ports is {range}"
            ),
            AllocError::Corrupt(why) => write!(f, "unreadable range allocation: {why}"),
            AllocError::Storage(e) => write!(f, "range allocation storage failed: {e}"),
            AllocError::Contended => f.write_str("range allocation kept conflicting; try again"),
        }
    }
}

impl std::error::Error for AllocError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AllocError::Storage(e) => Some(e),
            _ => None,
        }
    }
}

pub type AllocResult<T> = Result<T, AllocError>;

/// Hands out cluster IPs and node ports. With `dry_run` an allocation is
/// checked (and a free value picked) without being kept.
pub trait Allocator: Send + Sync {
    fn allocate_cluster_ip(
        &self,
        requested: Option<IpAddr>,
        dry_run: bool,
    ) -> BoxFuture<'_, AllocResult<IpAddr>>;
    fn release_cluster_ip(&self, ip: IpAddr) -> BoxFuture<'_, AllocResult<()>>;
    fn allocate_node_port(
        &self,
        requested: Option<u16>,
        dry_run: bool,
    ) -> BoxFuture<'_, AllocResult<u16>>;
    fn release_node_port(&self, port: u16) -> BoxFuture<'_, AllocResult<()>>;
}

/// An IPv4 service CIDR, e.g. 10.43.0.0/16.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Cidr {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Cidr {
    pub fn parse(s: &str) -> Option<Ipv4Cidr> {
        let (ip, prefix) = s.split_once('/')?;
        let ip: Ipv4Addr = ip.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        if prefix > 32 {
            return None;
        }
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        };
        Some(Ipv4Cidr {
            network: Ipv4Addr::from(u32::from(ip) & mask),
            prefix,
        })
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// One bitmap over `size` values, kept in the store under `key`.
struct Bitmap {
    store: Arc<dyn Store>,
    key: String,
    /// How the range is named in the stored object and in errors.
    range: String,
    size: u64,
}

/// How many of the lowest values dynamic allocation leaves for requests
/// (upstream's `calculateRangeOffset`: size/16, at least 16, at most 256).
fn static_band(size: u64) -> u64 {
    const MIN: u64 = 16;
    const MAX: u64 = 256;
    if size < MIN {
        return 0;
    }
    (size / 16).clamp(MIN, MAX)
}

const MAX_CAS_ATTEMPTS: usize = 64;

impl Bitmap {
    /// Read the bitmap: its bits and the revision to swap against (None
    /// when the object does not exist yet).
    async fn read(&self) -> AllocResult<(Vec<u8>, Option<i64>)> {
        let (kv, _) = self
            .store
            .get(&self.key, None)
            .await
            .map_err(AllocError::Storage)?;
        let Some(kv) = kv else {
            return Ok((vec![0; self.size.div_ceil(8) as usize], None));
        };
        let obj: Value =
            serde_json::from_slice(&kv.value).map_err(|e| AllocError::Corrupt(e.to_string()))?;
        let range = obj.get("range").and_then(Value::as_str).unwrap_or("");
        if range != self.range {
            return Err(AllocError::Corrupt(format!(
                "{} holds range {range:?}, not {:?}",
                self.key, self.range
            )));
        }
        let data = obj.get("data").and_then(Value::as_str).unwrap_or("");
        let mut bits =
            decode_hex(data).ok_or_else(|| AllocError::Corrupt("data is not hex".into()))?;
        bits.resize(self.size.div_ceil(8) as usize, 0);
        Ok((bits, Some(kv.mod_revision)))
    }

    /// Write the bitmap if nobody changed it since `rev`; false on a lost
    /// race.
    async fn write(&self, bits: &[u8], rev: Option<i64>) -> AllocResult<bool> {
        let obj = json!({
            "kind": "RangeAllocation",
            "apiVersion": "v1",
            "metadata": {"name": self.key.rsplit('/').next().unwrap_or("")},
            "range": self.range,
            "data": encode_hex(bits),
        });
        let value = serde_json::to_vec(&obj).expect("JSON values serialize");
        let res = match rev {
            None => self.store.create(&self.key, value, None).await.map(|_| ()),
            Some(rev) => self
                .store
                .update(&self.key, value, rev, None)
                .await
                .map(|_| ()),
        };
        match res {
            Ok(()) => Ok(true),
            Err(
                rkube_storage::Error::Conflict { .. } | rkube_storage::Error::AlreadyExists { .. },
            ) => Ok(false),
            Err(e) => Err(AllocError::Storage(e)),
        }
    }

    /// Take `offset`, or a free one when `None`. `taken` is the error for
    /// an offset someone holds.
    async fn allocate(
        &self,
        offset: Option<u64>,
        dry_run: bool,
        taken: fn() -> AllocError,
    ) -> AllocResult<u64> {
        for _ in 0..MAX_CAS_ATTEMPTS {
            let (mut bits, rev) = self.read().await?;
            let chosen = match offset {
                Some(o) if get_bit(&bits, o) => return Err(taken()),
                Some(o) => o,
                None => pick_free(&bits, self.size, &mut FastRandom).ok_or(AllocError::Full)?,
            };
            if dry_run {
                return Ok(chosen);
            }
            set_bit(&mut bits, chosen, true);
            if self.write(&bits, rev).await? {
                return Ok(chosen);
            }
        }
        Err(AllocError::Contended)
    }

    async fn release(&self, offset: u64) -> AllocResult<()> {
        for _ in 0..MAX_CAS_ATTEMPTS {
            let (mut bits, rev) = self.read().await?;
            if rev.is_none() || !get_bit(&bits, offset) {
                return Ok(());
            }
            set_bit(&mut bits, offset, false);
            if self.write(&bits, rev).await? {
                return Ok(());
            }
        }
        Err(AllocError::Contended)
    }
}

/// A free offset: a random start in the upper (dynamic) band scanning
/// upwards and wrapping within it, then the lower band.
fn pick_free(bits: &[u8], size: u64, rng: &mut dyn RandomIndex) -> Option<u64> {
    let band = static_band(size);
    let upper = size - band;
    if upper > 0 {
        let start = rng.index(upper as usize) as u64;
        if let Some(o) = (0..upper)
            .map(|i| band + (start + i) % upper)
            .find(|&o| !get_bit(bits, o))
        {
            return Some(o);
        }
    }
    (0..band).find(|&o| !get_bit(bits, o))
}

fn get_bit(bits: &[u8], i: u64) -> bool {
    bits.get((i / 8) as usize)
        .is_some_and(|b| b & (1 << (i % 8)) != 0)
}

fn set_bit(bits: &mut [u8], i: u64, on: bool) {
    if let Some(b) = bits.get_mut((i / 8) as usize) {
        if on {
            *b |= 1 << (i % 8);
        } else {
            *b &= !(1 << (i % 8));
        }
    }
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// The allocator over a [`Store`]: the service CIDR (network and
/// broadcast addresses excluded) and a node port range.
pub struct StoreAllocator {
    cidr: Ipv4Cidr,
    ips: Bitmap,
    first_port: u16,
    ports: Bitmap,
}

impl StoreAllocator {
    /// `ports` is inclusive, e.g. 30000..=32767.
    pub fn new(
        store: Arc<dyn Store>,
        cidr: Ipv4Cidr,
        ports: std::ops::RangeInclusive<u16>,
    ) -> StoreAllocator {
        let host_bits = 32 - u32::from(cidr.prefix);
        let ip_count = (1u64 << host_bits).saturating_sub(2);
        let (first, last) = (*ports.start(), *ports.end());
        StoreAllocator {
            cidr,
            ips: Bitmap {
                store: store.clone(),
                key: SERVICE_IPS_KEY.into(),
                range: cidr.to_string(),
                size: ip_count,
            },
            first_port: first,
            ports: Bitmap {
                store,
                key: NODE_PORTS_KEY.into(),
                range: format!("{first}-{last}"),
                size: u64::from(last.saturating_sub(first)) + u64::from(last >= first),
            },
        }
    }

    fn ip_offset(&self, ip: IpAddr) -> AllocResult<u64> {
        let not_in_range = || AllocError::IpNotInRange {
            ip,
            range: self.ips.range.clone(),
        };
        let IpAddr::V4(v4) = ip else {
            return Err(not_in_range());
        };
        let base = u32::from(self.cidr.network);
        let n = u32::from(v4);
        // The network address itself is offset -1: outside, as upstream.
        match n.checked_sub(base).and_then(|d| d.checked_sub(1)) {
            Some(o) if u64::from(o) < self.ips.size => Ok(u64::from(o)),
            _ => Err(not_in_range()),
        }
    }

    fn ip_at(&self, offset: u64) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(
            u32::from(self.cidr.network) + 1 + offset as u32,
        ))
    }

    fn port_offset(&self, port: u16) -> AllocResult<u64> {
        match port.checked_sub(self.first_port) {
            Some(o) if u64::from(o) < self.ports.size => Ok(u64::from(o)),
            _ => Err(AllocError::PortNotInRange {
                range: self.ports.range.clone(),
            }),
        }
    }
}

impl Allocator for StoreAllocator {
    fn allocate_cluster_ip(
        &self,
        requested: Option<IpAddr>,
        dry_run: bool,
    ) -> BoxFuture<'_, AllocResult<IpAddr>> {
        Box::pin(async move {
            let offset = requested.map(|ip| self.ip_offset(ip)).transpose()?;
            let o = self
                .ips
                .allocate(offset, dry_run, || AllocError::IpAllocated)
                .await?;
            Ok(self.ip_at(o))
        })
    }

    fn release_cluster_ip(&self, ip: IpAddr) -> BoxFuture<'_, AllocResult<()>> {
        Box::pin(async move {
            match self.ip_offset(ip) {
                Ok(o) => self.ips.release(o).await,
                // Never ours (e.g. the range changed): nothing to give back.
                Err(_) => Ok(()),
            }
        })
    }

    fn allocate_node_port(
        &self,
        requested: Option<u16>,
        dry_run: bool,
    ) -> BoxFuture<'_, AllocResult<u16>> {
        Box::pin(async move {
            let offset = requested.map(|p| self.port_offset(p)).transpose()?;
            let o = self
                .ports
                .allocate(offset, dry_run, || AllocError::PortAllocated)
                .await?;
            Ok(self.first_port + o as u16)
        })
    }

    fn release_node_port(&self, port: u16) -> BoxFuture<'_, AllocResult<()>> {
        Box::pin(async move {
            match self.port_offset(port) {
                Ok(o) => self.ports.release(o).await,
                Err(_) => Ok(()),
            }
        })
    }
}
