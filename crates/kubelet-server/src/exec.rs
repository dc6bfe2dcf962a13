//! Running exec sessions: pipes between a [`Session`] and the runtime's
//! process, then the final status. Attach is in [`crate::attach`].
//!
//! Upstream counterpart: `pkg/kubelet/cri/streaming/remotecommand/exec.go`
//! (`ServeExec`), with the runtime's part behind [`PodRuntime::exec`].

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rkube_containers::runtime::{ExecConfig, ExecIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::mpsc;

use crate::remotecommand::{error_status, exit_status, Options, Out, Session};
use crate::runtime::{ContainerInfo, PodRuntime};

/// How long output may keep draining after the command exited (a
/// background child may hold the pipe open forever).
const DRAIN: Duration = Duration::from_secs(2);

fn pipe_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    Ok((r, w))
}

fn dev_null() -> std::io::Result<OwnedFd> {
    Ok(std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?
        .into())
}

/// Copies a pipe's read end to the session as `wrap`ped output.
fn pump_out(
    fd: OwnedFd,
    out: mpsc::Sender<Out>,
    wrap: fn(Bytes) -> Out,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let mut rx = pipe::Receiver::from_owned_fd(fd)?;
    Ok(tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rx.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if out
                        .send(wrap(Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    }))
}

/// Runs `opts.command` in `container` for the session's client.
pub async fn exec(
    rt: Arc<dyn PodRuntime>,
    container: ContainerInfo,
    opts: Options,
    session: Session,
) {
    let Session {
        stdin,
        resize,
        out,
        done,
        ..
    } = session;
    let status = match run(rt, &container, &opts, stdin, resize, out).await {
        Ok(code) => exit_status(&opts.command, code),
        Err(msg) => error_status(&msg),
    };
    let _ = done.send(status);
}

async fn run(
    rt: Arc<dyn PodRuntime>,
    container: &ContainerInfo,
    opts: &Options,
    stdin: Option<mpsc::Receiver<Bytes>>,
    resize: mpsc::Receiver<crate::runtime::TermSize>,
    out: mpsc::Sender<Out>,
) -> Result<i32, String> {
    let io_err = |e: std::io::Error| format!("set up exec streams: {e}");
    let mut pumps = Vec::new();
    let stdout = if opts.stdout {
        let (r, w) = pipe_pair().map_err(io_err)?;
        pumps.push(pump_out(r, out.clone(), Out::Stdout).map_err(io_err)?);
        w
    } else {
        dev_null().map_err(io_err)?
    };
    let stderr = if opts.stderr {
        let (r, w) = pipe_pair().map_err(io_err)?;
        pumps.push(pump_out(r, out.clone(), Out::Stderr).map_err(io_err)?);
        w
    } else {
        dev_null().map_err(io_err)?
    };
    drop(out);
    let mut stdin_task = None;
    let stdin_fd = match stdin {
        Some(mut input) => {
            let (r, w) = pipe_pair().map_err(io_err)?;
            let mut tx = pipe::Sender::from_owned_fd(w).map_err(io_err)?;
            stdin_task = Some(tokio::spawn(async move {
                while let Some(chunk) = input.recv().await {
                    if tx.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
                // Dropping the write end is the process's EOF.
            }));
            Some(r)
        }
        None => None,
    };
    let config = ExecConfig {
        cmd: opts.command.clone(),
        env: Vec::new(),
        tty: opts.tty,
    };
    let io = ExecIo {
        stdin: stdin_fd,
        stdout,
        stderr,
    };
    let result = rt.exec(&container.id, config, io, resize).await;
    if let Some(t) = stdin_task {
        t.abort();
    }
    let drain = futures::future::join_all(pumps);
    let _ = tokio::time::timeout(DRAIN, drain).await;
    result
}
