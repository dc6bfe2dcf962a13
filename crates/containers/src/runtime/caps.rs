//! Linux capability names and the set a container gets.
//!
//! Upstream counterpart: containerd's `oci.DefaultCapabilities` and
//! `WithCapabilities`/`WithDroppedCapabilities` as the CRI plugin applies
//! Kubernetes' `securityContext.capabilities`.

use super::config::Capabilities;
use super::Error;

const NAMES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The container runtime default set (containerd's and Docker's).
pub const DEFAULT: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Every capability this table knows, as a bit mask.
pub fn all() -> u64 {
    (1u64 << NAMES.len()) - 1
}

/// Capability number for a Kubernetes-style name (`NET_ADMIN` or
/// `CAP_NET_ADMIN`, any case).
pub fn number(name: &str) -> Option<u32> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    NAMES.iter().position(|n| *n == bare).map(|i| i as u32)
}

pub fn name(number: u32) -> Option<&'static str> {
    NAMES.get(number as usize).copied()
}

/// The effective/permitted/bounding mask: privileged gets everything;
/// otherwise the default set, minus `drop` (or everything for `ALL`),
/// plus `add` (or everything for `ALL`). Drops apply before adds, as in
/// containerd, so `drop: [ALL], add: [NET_BIND_SERVICE]` works.
pub fn resolve(caps: &Capabilities, privileged: bool) -> Result<u64, Error> {
    if privileged {
        return Ok(all());
    }
    let mask = |names: &[String]| -> Result<u64, Error> {
        let mut m = 0u64;
        for n in names {
            if n.eq_ignore_ascii_case("ALL") {
                m |= all();
            } else {
                let bit = number(n)
                    .ok_or_else(|| Error::InvalidConfig(format!("unknown capability {n:?}")))?;
                m |= 1 << bit;
            }
        }
        Ok(m)
    };
    let default: u64 = DEFAULT.iter().map(|n| 1u64 << number(n).unwrap_or(0)).sum();
    Ok((default & !mask(&caps.drop)?) | mask(&caps.add)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(add: &[&str], drop: &[&str]) -> Capabilities {
        Capabilities {
            add: add.iter().map(|s| s.to_string()).collect(),
            drop: drop.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn numbers_match_the_kernel() {
        assert_eq!(number("CAP_SYS_ADMIN"), Some(21));
        assert_eq!(number("net_raw"), Some(13));
        assert_eq!(number("CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(name(27), Some("MKNOD"));
        assert_eq!(number("NOPE"), None);
    }

    #[test]
    fn add_and_drop() {
        let d = resolve(&caps(&[], &[]), false).unwrap();
        assert_eq!(d.count_ones() as usize, DEFAULT.len());
        let m = resolve(&caps(&["NET_ADMIN"], &["NET_RAW"]), false).unwrap();
        assert!(m & (1 << 12) != 0 && m & (1 << 13) == 0);
        let only = resolve(&caps(&["NET_BIND_SERVICE"], &["ALL"]), false).unwrap();
        assert_eq!(only, 1 << 10);
        assert_eq!(resolve(&caps(&[], &["ALL"]), true).unwrap(), all());
        assert!(resolve(&caps(&["BOGUS"], &[]), false).is_err());
    }
}
