//! The machine-side effects of the pod network behind one narrow trait:
//! running `ip`/`bridge` (iproute2) in the current or a pod's network
//! namespace, and writing sysctls. The real implementation shells out;
//! tests record the calls.
//!
//! Upstream counterpart: flannel and the CNI plugins use netlink
//! directly; iproute2 speaks the same netlink and keeps this crate free
//! of `unsafe`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Errors of running a network command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("run {cmd}: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{cmd}: {stderr}")]
    Failed { cmd: String, stderr: String },
    #[error("write {path}: {source}")]
    Sysctl {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Whether the command failed because what it creates already exists
    /// (or what it deletes is already gone): retries are then no-ops.
    pub fn is_exists_or_missing(&self) -> bool {
        match self {
            Error::Failed { stderr, .. } => {
                stderr.contains("File exists")
                    || stderr.contains("Cannot find device")
                    || stderr.contains("does not exist")
                    || stderr.contains("No such process")
            }
            _ => false,
        }
    }
}

/// Runs network configuration commands.
pub trait Ip: Send + Sync + std::fmt::Debug {
    /// Runs `program args...`, in `netns` if given; returns stdout.
    fn run(&self, netns: Option<&Path>, program: &str, args: &[&str]) -> Result<String, Error>;
    /// Writes a sysctl under /proc/sys (e.g. `net/ipv4/ip_forward`).
    fn sysctl(&self, key: &str, value: &str) -> Result<(), Error>;
}

/// Runs iproute2 for real (through nsenter for a pod's namespace).
#[derive(Debug, Default)]
pub struct System;

impl Ip for System {
    fn run(&self, netns: Option<&Path>, program: &str, args: &[&str]) -> Result<String, Error> {
        let mut c = match netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", ns.display())).arg(program);
                c
            }
            None => Command::new(program),
        };
        c.args(args);
        let cmd = format!("{program} {}", args.join(" "));
        let out = c.output().map_err(|source| Error::Spawn {
            cmd: cmd.clone(),
            source,
        })?;
        if !out.status.success() {
            return Err(Error::Failed {
                cmd,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn sysctl(&self, key: &str, value: &str) -> Result<(), Error> {
        let path = Path::new("/proc/sys").join(key);
        std::fs::write(&path, value).map_err(|source| Error::Sysctl { path, source })
    }
}

/// Records commands instead of running them (for unit tests of the
/// logic above the machine).
#[derive(Debug, Default)]
pub struct Recorder {
    pub calls: Mutex<Vec<String>>,
}

impl Ip for Recorder {
    fn run(&self, netns: Option<&Path>, program: &str, args: &[&str]) -> Result<String, Error> {
        let prefix = netns
            .map(|n| format!("[{}] ", n.display()))
            .unwrap_or_default();
        self.calls
            .lock()
            .unwrap()
            .push(format!("{prefix}{program} {}", args.join(" ")));
        Ok(String::new())
    }

    fn sysctl(&self, key: &str, value: &str) -> Result<(), Error> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("sysctl {key}={value}"));
        Ok(())
    }
}

/// Runs a command that creates something, treating "already exists" as
/// success.
pub fn ensure(
    ip: &dyn Ip,
    netns: Option<&Path>,
    program: &str,
    args: &[&str],
) -> Result<(), Error> {
    match ip.run(netns, program, args) {
        Err(e) if e.is_exists_or_missing() => Ok(()),
        r => r.map(|_| ()),
    }
}
