//! Checks before the agent builds its pod network, so that a machine
//! that cannot have one says so at start, in words, instead of the
//! agent failing later on each pod: building the bridge, routes and
//! rules needs root (CAP_NET_ADMIN), and the VXLAN backend needs the
//! kernel's vxlan driver.
//!
//! Upstream counterpart: flannel's start-up failing with "failed to
//! create VXLAN device", k3s' agent preflight (`pkg/agent/config`), and
//! the kubelet's refusal to start without the privileges it needs.

use crate::cmd::{ensure, Ip};
use crate::node::{Backend, VXLAN_PORT};

/// A device made only to learn whether the kernel can make VXLAN
/// devices, and removed at once.
const PROBE: &str = "rkube.probe";

/// Why the pod network cannot be built on this machine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the {backend} pod network needs root (CAP_NET_ADMIN) to build the node bridge, routes and rules; \
         run the agent as root, or pass --network-backend none"
    )]
    NotRoot { backend: &'static str },
    #[error(
        "the vxlan pod network needs the kernel's vxlan module, which is not available ({detail}); \
         load it (modprobe vxlan), or pass --network-backend host-gw (nodes on one L2 network) or none"
    )]
    NoVxlan { detail: String },
}

fn name(b: Backend) -> &'static str {
    match b {
        Backend::Vxlan => "vxlan",
        Backend::HostGw => "host-gw",
        Backend::Cni => "cni",
        Backend::None => "none",
    }
}

/// The effective uid of this process, from /proc (no libc call needed).
pub fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    // Uid: real effective saved filesystem
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Checks that `backend` can be built here. `euid` is the process's
/// effective uid (`None` when unknown: not refused on a guess).
pub fn check(ip: &dyn Ip, backend: Backend, euid: Option<u32>) -> Result<(), Error> {
    match backend {
        // The CNI plugins check their own privileges; their errors reach
        // the pods' events.
        Backend::None | Backend::Cni => return Ok(()),
        Backend::Vxlan | Backend::HostGw => {}
    }
    if euid.is_some_and(|u| u != 0) {
        return Err(Error::NotRoot {
            backend: name(backend),
        });
    }
    if backend == Backend::Vxlan {
        // Creating a device loads the driver on demand where modules can
        // be loaded; an existing VTEP (agent restart) proves it anyway.
        if ip
            .run(None, "ip", &["link", "show", crate::node::VTEP])
            .is_ok()
        {
            return Ok(());
        }
        let port = VXLAN_PORT.to_string();
        ip.run(
            None,
            "ip",
            &[
                "link", "add", PROBE, "type", "vxlan", "id", "4242", "dstport", &port,
            ],
        )
        .map_err(|e| Error::NoVxlan {
            detail: e.to_string(),
        })?;
        let _ = ensure(ip, None, "ip", &["link", "del", PROBE]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd;
    use std::path::Path;
    use std::sync::Mutex;

    /// Fails the commands whose text contains one of `fail`.
    #[derive(Debug, Default)]
    struct Host {
        fail: Vec<(&'static str, &'static str)>,
        calls: Mutex<Vec<String>>,
    }

    impl Ip for Host {
        fn run(
            &self,
            _: Option<&Path>,
            program: &str,
            args: &[&str],
        ) -> Result<String, cmd::Error> {
            let line = format!("{program} {}", args.join(" "));
            self.calls.lock().unwrap().push(line.clone());
            match self.fail.iter().find(|(m, _)| line.contains(m)) {
                Some((_, stderr)) => Err(cmd::Error::Failed {
                    cmd: line,
                    stderr: stderr.to_string(),
                }),
                None => Ok(String::new()),
            }
        }
        fn sysctl(&self, _: &str, _: &str) -> Result<(), cmd::Error> {
            Ok(())
        }
    }

    #[test]
    fn non_root_is_refused_with_the_way_out() {
        let h = Host::default();
        let e = check(&h, Backend::Vxlan, Some(1000))
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs root"), "{e}");
        assert!(e.contains("--network-backend none"), "{e}");
        assert!(check(&h, Backend::None, Some(1000)).is_ok());
        assert!(check(&h, Backend::Cni, Some(1000)).is_ok());
        assert!(h.calls.lock().unwrap().is_empty());
    }

    #[test]
    fn vxlan_is_probed_unless_the_vtep_exists() {
        let h = Host {
            fail: vec![("link show rkube.1", "Device \"rkube.1\" does not exist.")],
            ..Default::default()
        };
        check(&h, Backend::Vxlan, Some(0)).unwrap();
        let calls = h.calls.lock().unwrap().clone();
        assert_eq!(
            calls[1..],
            [
                "ip link add rkube.probe type vxlan id 4242 dstport 8472",
                "ip link del rkube.probe"
            ]
        );
        let h = Host::default();
        check(&h, Backend::Vxlan, Some(0)).unwrap();
        assert_eq!(h.calls.lock().unwrap().len(), 1, "the VTEP exists");
    }

    #[test]
    fn a_kernel_without_vxlan_is_named() {
        let h = Host {
            fail: vec![
                ("link show", "Device \"rkube.1\" does not exist."),
                ("type vxlan", "Error: Unknown device type."),
            ],
            ..Default::default()
        };
        let e = check(&h, Backend::Vxlan, Some(0)).unwrap_err().to_string();
        assert!(e.contains("vxlan module"), "{e}");
        assert!(e.contains("Unknown device type"), "{e}");
        assert!(e.contains("host-gw"), "{e}");
        // host-gw needs no driver.
        assert!(check(&h, Backend::HostGw, Some(0)).is_ok());
    }

    #[test]
    fn effective_uid_reads_proc() {
        assert!(effective_uid().is_some());
    }
}
