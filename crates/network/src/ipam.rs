//! Host-local address management: each pod gets one address of the
//! node's podCIDR, recorded as a file named after the address holding the
//! pod's uid, so allocations survive agent restarts, a retried attach
//! gets the same address, and a release frees it.
//!
//! Upstream counterpart: the CNI `host-local` IPAM plugin (its disk
//! store, one file per address, and its round-robin from the last
//! reserved address).

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ipnet::Ipv4Net;

const LAST: &str = "last_reserved_ip";

/// Errors of address management.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("ipam store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no free address left in {0}")]
    Exhausted(Ipv4Net),
    #[error("podCIDR {0} is too small for pods")]
    TooSmall(Ipv4Net),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The addresses of one podCIDR, kept under a directory.
#[derive(Debug)]
pub struct HostLocal {
    dir: PathBuf,
    net: Ipv4Net,
    /// Serialises allocations within this process; the files' O_EXCL
    /// creation keeps two processes from taking one address.
    lock: Mutex<()>,
}

impl HostLocal {
    /// Opens (creating) the store of `net` under `dir/<network>-<prefix>`.
    pub fn open(dir: &Path, net: Ipv4Net) -> Result<HostLocal, Error> {
        let net = net.trunc();
        if net.prefix_len() > 30 {
            return Err(Error::TooSmall(net));
        }
        let dir = dir.join(format!("{}-{}", net.network(), net.prefix_len()));
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(HostLocal {
            dir,
            net,
            lock: Mutex::new(()),
        })
    }

    pub fn net(&self) -> Ipv4Net {
        self.net
    }

    /// The bridge's address: the first host of the range.
    pub fn gateway(&self) -> Ipv4Addr {
        first_host(self.net)
    }

    /// The address held by `id`, if any.
    pub fn lookup(&self, id: &str) -> Result<Option<Ipv4Addr>, Error> {
        Ok(self
            .entries()?
            .into_iter()
            .find(|(_, v)| v == id)
            .map(|(ip, _)| ip))
    }

    /// All allocations: (address, owner id).
    pub fn entries(&self) -> Result<Vec<(Ipv4Addr, String)>, Error> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let e = e.map_err(io(&self.dir))?;
            let Some(ip) = e
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            let id = std::fs::read_to_string(e.path()).map_err(io(&e.path()))?;
            out.push((ip, id.trim().to_string()));
        }
        Ok(out)
    }

    /// Gives `id` an address (the one it already holds, if any), the
    /// next free after the last one handed out, as host-local does, so a
    /// released address is not reused at once.
    pub fn allocate(&self, id: &str) -> Result<Ipv4Addr, Error> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ip) = self.lookup(id)? {
            return Ok(ip);
        }
        let gw = self.gateway();
        let hosts: Vec<Ipv4Addr> = self.net.hosts().filter(|h| *h != gw).collect();
        let last = std::fs::read_to_string(self.dir.join(LAST))
            .ok()
            .and_then(|s| s.trim().parse::<Ipv4Addr>().ok());
        let start = last
            .and_then(|l| hosts.iter().position(|h| *h == l))
            .map_or(0, |i| i + 1);
        for i in 0..hosts.len() {
            let ip = hosts[(start + i) % hosts.len()];
            let path = self.dir.join(ip.to_string());
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    f.write_all(id.as_bytes()).map_err(io(&path))?;
                    let last = self.dir.join(LAST);
                    std::fs::write(&last, ip.to_string()).map_err(io(&last))?;
                    return Ok(ip);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io(&path)(e)),
            }
        }
        Err(Error::Exhausted(self.net))
    }

    /// Frees whatever `id` holds; returns it.
    pub fn release(&self, id: &str) -> Result<Option<Ipv4Addr>, Error> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let held = self.lookup(id)?;
        if let Some(ip) = held {
            let path = self.dir.join(ip.to_string());
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&path)(e)),
                _ => {}
            }
        }
        Ok(held)
    }
}

/// The first usable address of `net` (network address + 1).
pub fn first_host(net: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn allocates_after_the_gateway_and_is_idempotent() {
        let d = tempfile::tempdir().unwrap();
        let h = HostLocal::open(d.path(), net("10.42.1.0/24")).unwrap();
        assert_eq!(h.gateway(), Ipv4Addr::new(10, 42, 1, 1));
        let a = h.allocate("pod-a").unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 42, 1, 2));
        assert_eq!(
            h.allocate("pod-a").unwrap(),
            a,
            "retry gets the same address"
        );
        let b = h.allocate("pod-b").unwrap();
        assert_eq!(b, Ipv4Addr::new(10, 42, 1, 3));
    }

    #[test]
    fn allocations_survive_reopening_and_release_frees() {
        let d = tempfile::tempdir().unwrap();
        let a = {
            let h = HostLocal::open(d.path(), net("10.42.1.0/24")).unwrap();
            h.allocate("pod-a").unwrap()
        };
        let h = HostLocal::open(d.path(), net("10.42.1.0/24")).unwrap();
        assert_eq!(h.lookup("pod-a").unwrap(), Some(a));
        assert_eq!(h.release("pod-a").unwrap(), Some(a));
        assert_eq!(h.lookup("pod-a").unwrap(), None);
        assert_eq!(h.release("pod-a").unwrap(), None, "release twice is fine");
        // Round-robin: the freed address is not handed out next.
        assert_ne!(h.allocate("pod-b").unwrap(), a);
    }

    #[test]
    fn exhausts_a_small_range_and_wraps_around() {
        let d = tempfile::tempdir().unwrap();
        // /29: hosts .1-.6, .1 is the gateway: five addresses for pods.
        let h = HostLocal::open(d.path(), net("10.42.2.0/29")).unwrap();
        for i in 0..5 {
            h.allocate(&format!("p{i}")).unwrap();
        }
        assert!(matches!(h.allocate("p5"), Err(Error::Exhausted(_))));
        let freed = h.release("p0").unwrap().unwrap();
        assert_eq!(h.allocate("p5").unwrap(), freed);
    }

    #[test]
    fn rejects_ranges_without_room() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(
            HostLocal::open(d.path(), net("10.42.0.0/31")),
            Err(Error::TooSmall(_))
        ));
    }
}
