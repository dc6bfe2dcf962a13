//! Running one CNI plugin: the protocol's environment (`CNI_COMMAND`,
//! `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`, `CNI_ARGS`, `CNI_PATH`),
//! the network configuration on stdin, the result or a CNI error object
//! on stdout. [`Invoke`] is the narrow seam: [`Exec`] runs the binaries
//! found in the configured directories, tests script the answers.
//!
//! Upstream counterpart: libcni's `pkg/invoke` (`FindInPath`,
//! `RawExec.ExecPlugin`, its error decoding).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::Error;

/// A CNI operation (`CNI_COMMAND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Del,
    Check,
    Version,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Add => "ADD",
            Op::Del => "DEL",
            Op::Check => "CHECK",
            Op::Version => "VERSION",
        }
    }
}

/// One plugin call: what goes into the environment and onto stdin.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub op: Op,
    pub container_id: &'a str,
    /// Empty for VERSION, and for DEL once the namespace is gone (the
    /// spec lets plugins clean up what they can without it).
    pub netns: &'a str,
    pub ifname: &'a str,
    /// `CNI_ARGS`: `K=V;K=V`.
    pub args: &'a str,
    pub stdin: &'a [u8],
}

/// Runs a plugin by its `type`; returns its stdout on success.
pub trait Invoke: Send + Sync + std::fmt::Debug {
    fn invoke(&self, plugin: &str, req: &Request<'_>) -> Result<Vec<u8>, Error>;
}

/// Runs the real plugin binaries, looked up in `dirs` in order (the
/// same list goes into `CNI_PATH`, so a plugin finds its IPAM plugin).
#[derive(Debug, Clone)]
pub struct Exec {
    pub dirs: Vec<PathBuf>,
}

impl Exec {
    /// The first executable file named `plugin` in the directories.
    pub fn find(&self, plugin: &str) -> Result<PathBuf, Error> {
        // A type is a file name, never a path: a config must not make the
        // kubelet run an arbitrary program.
        if plugin.is_empty() || plugin.contains('/') || plugin == "." || plugin == ".." {
            return Err(Error::BadType(plugin.to_string()));
        }
        for d in &self.dirs {
            let p = d.join(plugin);
            if is_executable(&p) {
                return Ok(p);
            }
        }
        Err(Error::PluginNotFound {
            plugin: plugin.to_string(),
            dirs: self.dirs_joined(),
        })
    }

    fn dirs_joined(&self) -> String {
        self.dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

impl Invoke for Exec {
    fn invoke(&self, plugin: &str, req: &Request<'_>) -> Result<Vec<u8>, Error> {
        let path = self.find(plugin)?;
        let failed = |source| Error::Spawn {
            plugin: plugin.to_string(),
            source,
        };
        let mut child = Command::new(&path)
            .env("CNI_COMMAND", req.op.as_str())
            .env("CNI_CONTAINERID", req.container_id)
            .env("CNI_NETNS", req.netns)
            .env("CNI_IFNAME", req.ifname)
            .env("CNI_ARGS", req.args)
            .env("CNI_PATH", self.dirs_joined())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(failed)?;
        // The config is small (well under a pipe's buffer), so writing it
        // all before reading cannot deadlock against the plugin's output.
        let mut stdin = child.stdin.take().expect("piped stdin");
        let written = stdin.write_all(req.stdin);
        drop(stdin);
        let out = child.wait_with_output().map_err(failed)?;
        if out.status.success() {
            // A plugin that died reading stdin still reports through its
            // exit status; only a clean exit with a failed write is odd.
            written.map_err(failed)?;
            return Ok(out.stdout);
        }
        Err(plugin_error(
            plugin,
            req.op,
            &out.stdout,
            &out.stderr,
            out.status,
        ))
    }
}

/// The error a failed plugin reported: its CNI error object when stdout
/// holds one, else its exit status and stderr.
pub fn plugin_error(
    plugin: &str,
    op: Op,
    stdout: &[u8],
    stderr: &[u8],
    status: std::process::ExitStatus,
) -> Error {
    #[derive(serde::Deserialize)]
    struct CniError {
        code: u32,
        #[serde(default)]
        msg: String,
        #[serde(default)]
        details: String,
    }
    match serde_json::from_slice::<CniError>(stdout) {
        Ok(e) => Error::Plugin {
            plugin: plugin.to_string(),
            op: op.as_str(),
            code: e.code,
            msg: if e.details.is_empty() {
                e.msg
            } else {
                format!("{}: {}", e.msg, e.details)
            },
        },
        Err(_) => Error::Failed {
            plugin: plugin.to_string(),
            op: op.as_str(),
            status: status.to_string(),
            stderr: String::from_utf8_lossy(stderr).trim().to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn error_objects_become_plugin_errors() {
        let e = plugin_error(
            "host-local",
            Op::Add,
            br#"{"cniVersion":"1.0.0","code":11,"msg":"no IP addresses available","details":"range 10.1.0.0/30"}"#,
            b"",
            std::process::ExitStatus::from_raw(1 << 8),
        );
        assert_eq!(
            e.to_string(),
            "plugin type=\"host-local\" failed (ADD): code 11: no IP addresses available: range 10.1.0.0/30"
        );
        let e = plugin_error(
            "bridge",
            Op::Del,
            b"garbage",
            b"panic: boom\n",
            std::process::ExitStatus::from_raw(2 << 8),
        );
        assert!(e.to_string().contains("panic: boom"), "{e}");
        assert!(e.to_string().contains("(DEL)"), "{e}");
    }

    #[test]
    fn finds_plugins_in_order_and_refuses_paths() {
        use std::os::unix::fs::PermissionsExt;
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for d in [a.path(), b.path()] {
            let p = d.join("bridge");
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::write(a.path().join("noexec"), "").unwrap();
        let exec = Exec {
            dirs: vec![a.path().into(), b.path().into()],
        };
        assert_eq!(exec.find("bridge").unwrap(), a.path().join("bridge"));
        assert!(matches!(
            exec.find("noexec"),
            Err(Error::PluginNotFound { .. })
        ));
        assert!(matches!(exec.find("../bridge"), Err(Error::BadType(_))));
    }

    #[test]
    fn runs_a_plugin_with_the_protocol_environment() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("echoenv");
        // Prints its environment and stdin as one JSON-ish line.
        std::fs::write(
            &p,
            "#!/bin/sh\nprintf '%s %s %s %s %s ' \"$CNI_COMMAND\" \"$CNI_CONTAINERID\" \"$CNI_NETNS\" \"$CNI_IFNAME\" \"$CNI_PATH\"\ncat\n",
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        let exec = Exec {
            dirs: vec![d.path().into()],
        };
        let out = exec
            .invoke(
                "echoenv",
                &Request {
                    op: Op::Add,
                    container_id: "c1",
                    netns: "/run/netns/x",
                    ifname: "eth0",
                    args: "",
                    stdin: b"{}",
                },
            )
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("ADD c1 /run/netns/x eth0 {} {{}}", d.path().display())
        );
    }
}
