//! Applying a script: the one side effect of the proxy, behind a narrow
//! trait. The real implementation pipes the script to `nft -f -`
//! (optionally inside a named network namespace); tests record scripts.
//!
//! Upstream counterpart: knftables' `Interface.Run` (sigs.k8s.io/knftables),
//! which also drives the nft binary.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// Errors of applying rules.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("run nft: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("nft -f: {0}")]
    Failed(String),
    #[error("partial sync without a table in force: sync all Services first")]
    OutOfSync,
}

/// Applies nft scripts as single transactions.
pub trait Nft: Send + Sync {
    fn apply(&self, script: &str) -> Result<(), Error>;
}

/// Runs the nft binary, in the named netns (`ip netns exec`) if given.
#[derive(Debug, Default, Clone)]
pub struct System {
    pub netns: Option<String>,
}

impl Nft for System {
    fn apply(&self, script: &str) -> Result<(), Error> {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "nft", "-f", "-"]);
                c
            }
            None => {
                let mut c = Command::new("nft");
                c.args(["-f", "-"]);
                c
            }
        };
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(Error::Spawn)?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(script.as_bytes()).map_err(Error::Spawn)?;
        }
        let out = child.wait_with_output().map_err(Error::Spawn)?;
        if !out.status.success() {
            return Err(Error::Failed(
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ));
        }
        Ok(())
    }
}

/// Records scripts instead of applying them.
#[derive(Debug, Default)]
pub struct Recorder {
    pub scripts: Mutex<Vec<String>>,
}

impl Nft for Recorder {
    fn apply(&self, script: &str) -> Result<(), Error> {
        self.scripts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(script.to_string());
        Ok(())
    }
}
