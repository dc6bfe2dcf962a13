//! Pod addresses from a node's podCIDR, handed out in order and reused
//! once their pod is gone.
//!
//! Upstream counterpart: the host-local IPAM CNI plugin a real node's
//! network plugin calls; here nothing is configured on any interface.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// An IPv4 CIDR, `10.64.3.0/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub base: u32,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
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
        Some(Cidr {
            base: u32::from(ip) & mask,
            prefix,
        })
    }

    pub fn size(&self) -> u64 {
        1u64 << (32 - self.prefix)
    }

    pub fn nth(&self, i: u64) -> Ipv4Addr {
        Ipv4Addr::from(self.base.wrapping_add(i as u32))
    }

    /// The `i`-th subnet of length `prefix` inside this one (wrapping).
    pub fn subnet(&self, i: u64, prefix: u8) -> Cidr {
        let per = 1u64 << (32 - prefix);
        let count = (self.size() / per).max(1);
        Cidr {
            base: self.base.wrapping_add(((i % count) * per) as u32),
            prefix,
        }
    }

    fn offset(&self, ip: Ipv4Addr) -> Option<u64> {
        let off = u32::from(ip).wrapping_sub(self.base) as u64;
        (off < self.size()).then_some(off)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

/// The addresses in use in one node's podCIDR.
#[derive(Debug)]
pub struct Pool {
    cidr: Cidr,
    used: BTreeSet<u64>,
    next: u64,
}

impl Pool {
    pub fn new(cidr: Cidr) -> Pool {
        Pool {
            cidr,
            used: BTreeSet::new(),
            next: 1,
        }
    }

    /// The next free address after the last one handed out, skipping the
    /// network (.0), the gateway (.1) and broadcast addresses; `None` when
    /// the range is full.
    pub fn allocate(&mut self) -> Option<Ipv4Addr> {
        let size = self.cidr.size();
        if size < 4 {
            return None;
        }
        for _ in 0..size {
            self.next = if self.next + 1 >= size - 1 {
                2
            } else {
                self.next + 1
            };
            if self.used.insert(self.next) {
                return Some(self.cidr.nth(self.next));
            }
        }
        None
    }

    /// Marks an address (one found in the API after a restart) as used.
    pub fn reserve(&mut self, ip: &str) -> bool {
        match ip.parse().ok().and_then(|ip| self.cidr.offset(ip)) {
            Some(off) => {
                self.used.insert(off);
                true
            }
            None => false,
        }
    }

    pub fn release(&mut self, ip: &str) {
        if let Some(off) = ip.parse().ok().and_then(|ip| self.cidr.offset(ip)) {
            self.used.remove(&off);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_reuses_and_wraps() {
        let mut p = Pool::new(Cidr::parse("10.64.1.0/30").unwrap());
        assert_eq!(p.allocate(), Some(Ipv4Addr::new(10, 64, 1, 2)));
        assert_eq!(p.allocate(), None);
        p.release("10.64.1.2");
        assert_eq!(p.allocate(), Some(Ipv4Addr::new(10, 64, 1, 2)));

        let mut p = Pool::new(Cidr::parse("10.64.1.7/24").unwrap());
        assert!(p.reserve("10.64.1.2"));
        assert!(!p.reserve("10.65.1.2"));
        assert_eq!(p.allocate(), Some(Ipv4Addr::new(10, 64, 1, 3)));
    }

    #[test]
    fn subnets() {
        let c = Cidr::parse("10.64.0.0/10").unwrap();
        assert_eq!(c.subnet(0, 24).to_string(), "10.64.0.0/24");
        assert_eq!(c.subnet(257, 24).to_string(), "10.65.1.0/24");
        assert_eq!(c.subnet(16384, 24).to_string(), "10.64.0.0/24");
    }
}
