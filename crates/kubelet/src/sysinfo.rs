//! What the node reports about itself: CPU and memory from /proc, disk
//! from statvfs of the data dir, kernel and OS names, the default-route
//! address, and the pressure signals behind the node conditions.
//!
//! Upstream counterpart: cAdvisor's machine info and the kubelet's
//! `nodestatus` setters (MachineInfo, NodeAddress, VersionInfo) plus the
//! eviction manager's signals (memory.available, nodefs.available).

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};

/// Files the facts are read from; tests point it at a temp dir.
#[derive(Debug, Clone)]
pub struct Host {
    pub proc_root: PathBuf,
    pub etc_root: PathBuf,
}

impl Default for Host {
    fn default() -> Host {
        Host {
            proc_root: PathBuf::from("/proc"),
            etc_root: PathBuf::from("/etc"),
        }
    }
}

/// A snapshot of the machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Machine {
    pub cpus: u32,
    pub memory_bytes: u64,
    pub memory_available: u64,
    pub disk_bytes: u64,
    pub disk_available: u64,
    pub kernel: String,
    pub os_image: String,
    pub machine_id: String,
    pub boot_id: String,
}

impl Host {
    fn read(&self, root: &Path, rel: &str) -> String {
        std::fs::read_to_string(root.join(rel))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }

    /// Reads everything; missing files leave zeros or empty strings rather
    /// than failing registration.
    pub fn machine(&self, data_dir: &Path) -> Machine {
        let cpuinfo = self.read(&self.proc_root, "cpuinfo");
        let cpus = cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count() as u32;
        let cpus = if cpus == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
        } else {
            cpus
        };
        let meminfo = self.read(&self.proc_root, "meminfo");
        let (disk_bytes, disk_available) = disk(data_dir);
        Machine {
            cpus,
            memory_bytes: meminfo_kb(&meminfo, "MemTotal") * 1024,
            memory_available: meminfo_kb(&meminfo, "MemAvailable") * 1024,
            disk_bytes,
            disk_available,
            kernel: self.read(&self.proc_root, "sys/kernel/osrelease"),
            os_image: os_image(&self.read(&self.etc_root, "os-release")),
            machine_id: self.read(&self.etc_root, "machine-id"),
            boot_id: self.read(&self.proc_root, "sys/kernel/random/boot_id"),
        }
    }
}

fn meminfo_kb(meminfo: &str, key: &str) -> u64 {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// PRETTY_NAME from os-release, as the kubelet reports osImage.
fn os_image(os_release: &str) -> String {
    os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

/// Size and free space (for unprivileged users) of the filesystem holding
/// `dir`.
fn disk(dir: &Path) -> (u64, u64) {
    let mut p = dir.to_path_buf();
    // The data dir may not exist yet on first start: ask its parent.
    while !p.exists() {
        if !p.pop() {
            return (0, 0);
        }
    }
    match rustix::fs::statvfs(&p) {
        Ok(s) => (s.f_blocks * s.f_frsize, s.f_bavail * s.f_frsize),
        Err(_) => (0, 0),
    }
}

/// The address of the interface holding the default route: connecting a
/// UDP socket picks the source address without sending anything.
pub fn default_route_ip() -> IpAddr {
    let probe = || -> std::io::Result<IpAddr> {
        let s = UdpSocket::bind("0.0.0.0:0")?;
        s.connect("192.0.2.1:9")?;
        Ok(s.local_addr()?.ip())
    };
    probe().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// This machine's hostname.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_lowercase())
        .unwrap_or_else(|_| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_and_etc() {
        let dir = tempfile::tempdir().unwrap();
        let proc_root = dir.path().join("proc");
        let etc_root = dir.path().join("etc");
        std::fs::create_dir_all(proc_root.join("sys/kernel/random")).unwrap();
        std::fs::create_dir_all(&etc_root).unwrap();
        std::fs::write(
            proc_root.join("cpuinfo"),
            "processor\t: 0\nmodel\t: x\n\nprocessor\t: 1\n",
        )
        .unwrap();
        std::fs::write(
            proc_root.join("meminfo"),
            "MemTotal:        2048 kB\nMemFree: 1 kB\nMemAvailable:    1024 kB\n",
        )
        .unwrap();
        std::fs::write(proc_root.join("sys/kernel/osrelease"), "6.1.0-test\n").unwrap();
        std::fs::write(
            etc_root.join("os-release"),
            "NAME=\"Debian\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
        )
        .unwrap();
        let host = Host {
            proc_root,
            etc_root,
        };
        let m = host.machine(dir.path());
        assert_eq!(m.cpus, 2);
        assert_eq!(m.memory_bytes, 2048 * 1024);
        assert_eq!(m.memory_available, 1024 * 1024);
        assert_eq!(m.kernel, "6.1.0-test");
        assert_eq!(m.os_image, "Debian GNU/Linux 12 (bookworm)");
        assert!(m.disk_bytes > 0);
    }
}
