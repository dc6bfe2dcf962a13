//! Container probes (liveness, readiness, startup) and lifecycle hooks:
//! exec in the container, HTTP(S) GET, TCP connect and gRPC health checks
//! from inside the pod's network namespace, with upstream's timing fields
//! (initialDelaySeconds, periodSeconds, timeoutSeconds, successThreshold,
//! failureThreshold).
//!
//! Upstream counterpart: `pkg/kubelet/prober` (worker.go's loop and
//! thresholds, prober.go) and `pkg/probe/{exec,http,tcp,grpc}`;
//! `pkg/kubelet/lifecycle/handlers.go` for postStart/preStop.
//!
//! Network checks dial from inside the pod's network namespace on a
//! throwaway thread (so they work with or without a pod network, and
//! reach 127.0.0.1-bound servers as upstream's pod-IP dial reaches
//! 0.0.0.0-bound ones); hostNetwork pods are dialled on the node's
//! address. Only the dial happens in the namespace: a socket stays in the
//! namespace it was made in, so the gRPC exchange then runs on tokio.

mod grpc;
mod http;

use std::io::Read;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use rkube_containers::runtime::{ExecConfig, ExecIo, Runtime};
use tokio::sync::{watch, Notify};

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Liveness,
    Readiness,
    Startup,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
            Kind::Startup => "Startup",
        }
    }
}

/// What a check does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Exec(Vec<String>),
    Http {
        host: Option<String>,
        port: u16,
        path: String,
        headers: Vec<(String, String)>,
        https: bool,
    },
    Tcp {
        host: Option<String>,
        port: u16,
    },
    Grpc {
        port: u16,
        /// probe.grpc.service: the name sent in HealthCheckRequest.
        service: String,
    },
    Sleep(Duration),
}

fn port(p: &IntOrString, c: &Container) -> Result<u16, String> {
    match p {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("invalid port {n}")),
        IntOrString::String(name) => {
            if let Ok(n) = name.parse::<u16>() {
                return Ok(n);
            }
            c.ports
                .iter()
                .flatten()
                .find(|cp| cp.name.as_deref() == Some(name))
                .and_then(|cp| u16::try_from(cp.container_port).ok())
                .ok_or_else(|| format!("port {name:?} not found in container {}", c.name))
        }
    }
}

fn http_action(
    h: &k8s_openapi::api::core::v1::HTTPGetAction,
    c: &Container,
) -> Result<Action, String> {
    Ok(Action::Http {
        host: h.host.clone().filter(|h| !h.is_empty()),
        port: port(&h.port, c)?,
        path: h
            .path
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".into()),
        headers: h
            .http_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect(),
        https: h.scheme.as_deref() == Some("HTTPS"),
    })
}

pub fn probe_action(p: &Probe, c: &Container) -> Result<Action, String> {
    if let Some(e) = &p.exec {
        return Ok(Action::Exec(e.command.clone().unwrap_or_default()));
    }
    if let Some(h) = &p.http_get {
        return http_action(h, c);
    }
    if let Some(t) = &p.tcp_socket {
        return Ok(Action::Tcp {
            host: t.host.clone().filter(|h| !h.is_empty()),
            port: port(&t.port, c)?,
        });
    }
    if let Some(g) = &p.grpc {
        return Ok(Action::Grpc {
            port: u16::try_from(g.port).map_err(|_| "invalid grpc port")?,
            service: g.service.clone().unwrap_or_default(),
        });
    }
    Err("probe has no handler".into())
}

pub fn hook_action(h: &LifecycleHandler, c: &Container) -> Result<Action, String> {
    if let Some(e) = &h.exec {
        return Ok(Action::Exec(e.command.clone().unwrap_or_default()));
    }
    if let Some(g) = &h.http_get {
        return http_action(g, c);
    }
    if let Some(t) = &h.tcp_socket {
        return Ok(Action::Tcp {
            host: t.host.clone().filter(|h| !h.is_empty()),
            port: port(&t.port, c)?,
        });
    }
    if let Some(s) = &h.sleep {
        return Ok(Action::Sleep(Duration::from_secs(s.seconds.max(0) as u64)));
    }
    Err("lifecycle handler has no action".into())
}

/// Where checks run.
#[derive(Clone)]
pub struct Target {
    pub runtime: Arc<dyn Runtime>,
    pub container_id: String,
    /// The pod's network namespace; `None` for hostNetwork pods.
    pub netns: Option<PathBuf>,
    /// Address dialled when the check names no host.
    pub default_host: IpAddr,
}

/// Runs one check with a timeout. `Err` carries the failure message.
pub async fn run(action: &Action, target: &Target, timeout: Duration) -> Result<(), String> {
    match action {
        Action::Sleep(d) => {
            tokio::time::sleep(*d).await;
            Ok(())
        }
        Action::Exec(cmd) => exec(cmd.clone(), target, timeout).await,
        Action::Http {
            host,
            port,
            path,
            headers,
            https,
        } => {
            let (host, port, path, headers) = (host.clone(), *port, path.clone(), headers.clone());
            let (default, https) = (target.default_host, *https);
            in_netns(target.netns.clone(), timeout, move || {
                http::get(&http::Get {
                    host,
                    default,
                    port,
                    path: &path,
                    headers: &headers,
                    https,
                    timeout,
                })
            })
            .await
        }
        Action::Tcp { host, port } => {
            let (host, port) = (host.clone(), *port);
            let default = target.default_host;
            in_netns(target.netns.clone(), timeout, move || {
                http::dial(host.as_deref(), default, port, timeout).map(|_| ())
            })
            .await
        }
        Action::Grpc { port, service } => {
            let (port, default) = (*port, target.default_host);
            let started = std::time::Instant::now();
            let tcp = in_netns(target.netns.clone(), timeout, move || {
                let s = http::dial(None, default, port, timeout).map_err(|e| {
                    format!(
                        "timeout: failed to connect service \"{default}:{port}\" within {}s: {e}",
                        timeout.as_secs()
                    )
                })?;
                s.set_nonblocking(true).map_err(|e| e.to_string())?;
                Ok(s)
            })
            .await?;
            let tcp = tokio::net::TcpStream::from_std(tcp).map_err(|e| e.to_string())?;
            let left = timeout.saturating_sub(started.elapsed());
            let authority = format!("{default}:{port}");
            grpc::check(tcp, &authority, service, left.max(Duration::from_millis(1))).await
        }
    }
}

async fn exec(cmd: Vec<String>, target: &Target, timeout: Duration) -> Result<(), String> {
    let rt = target.runtime.clone();
    let id = target.container_id.clone();
    let job = tokio::task::spawn_blocking(move || -> Result<(i32, String), String> {
        let (mut reader, writer) = std::io::pipe().map_err(|e| e.to_string())?;
        let writer2 = writer.try_clone().map_err(|e| e.to_string())?;
        let io = ExecIo {
            stdin: None,
            stdout: writer.into(),
            stderr: writer2.into(),
        };
        // Read concurrently so a chatty command cannot fill the pipe.
        let collector = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = (&mut reader).take(10 << 10).read_to_end(&mut buf);
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
            buf
        });
        let config = ExecConfig {
            cmd,
            env: Vec::new(),
            tty: false,
        };
        let code = rt.exec(&id, &config, io).map_err(|e| e.to_string())?;
        let out = collector.join().unwrap_or_default();
        Ok((code, String::from_utf8_lossy(&out).into_owned()))
    });
    match tokio::time::timeout(timeout, job).await {
        Err(_) => Err(format!("command timed out after {}s", timeout.as_secs())),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(Err(e))) => Err(e),
        Ok(Ok(Ok((0, _)))) => Ok(()),
        Ok(Ok(Ok((code, out)))) => Err(if out.trim().is_empty() {
            format!("command exited with {code}")
        } else {
            out.trim_end().to_string()
        }),
    }
}

/// Runs `f` on a fresh thread that first enters `netns` (so the process's
/// other threads keep their namespace), bounded by `timeout`.
async fn in_netns<F, T>(netns: Option<PathBuf>, timeout: Duration, f: F) -> Result<T, String>
where
    F: FnOnce() -> Result<T, String> + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let r = (|| {
            if let Some(path) = netns {
                let file = std::fs::File::open(&path)
                    .map_err(|e| format!("open {}: {e}", path.display()))?;
                rustix::thread::move_into_link_name_space(
                    std::os::fd::AsFd::as_fd(&file),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .map_err(|e| format!("enter pod network namespace: {e}"))?;
            }
            f()
        })();
        let _ = tx.send(r);
    });
    match tokio::time::timeout(timeout + Duration::from_millis(500), rx).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err("probe thread died".into()),
        Err(_) => Err(format!("timed out after {}s", timeout.as_secs())),
    }
}

/// A container's probe results, published to its pod worker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Results {
    /// The startup probe passed (or there is none).
    pub started: bool,
    pub ready: bool,
    /// Set once liveness (or startup) failed: the container must restart.
    pub failed: Option<String>,
}

/// Timing fields with upstream's defaults and minimums.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Timing {
    pub fn of(p: &Probe) -> Timing {
        let secs =
            |v: Option<i32>, d: i32, min: i32| Duration::from_secs(v.unwrap_or(d).max(min) as u64);
        Timing {
            initial_delay: secs(p.initial_delay_seconds, 0, 0),
            period: secs(p.period_seconds, 10, 1),
            timeout: secs(p.timeout_seconds, 1, 1),
            success_threshold: p.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: p.failure_threshold.unwrap_or(3).max(1) as u32,
        }
    }
}

/// Reports an Unhealthy event.
pub type OnFailure = Arc<dyn Fn(Kind, String) + Send + Sync>;

/// Runs one probe until it decides something final (liveness or startup
/// failed, startup passed) or is aborted with its container.
pub async fn probe_loop(
    kind: Kind,
    action: Action,
    timing: Timing,
    target: Target,
    results: Arc<watch::Sender<Results>>,
    wake: Arc<Notify>,
    on_failure: OnFailure,
) {
    tokio::time::sleep(timing.initial_delay).await;
    if kind != Kind::Startup {
        let mut rx = results.subscribe();
        let _ = rx.wait_for(|r| r.started).await;
    }
    let (mut ok_run, mut fail_run) = (0u32, 0u32);
    loop {
        match run(&action, &target, timing.timeout).await {
            Ok(()) => {
                ok_run += 1;
                fail_run = 0;
                if ok_run >= timing.success_threshold {
                    match kind {
                        Kind::Readiness => {
                            results.send_if_modified(|r| !std::mem::replace(&mut r.ready, true));
                            wake.notify_one();
                        }
                        Kind::Startup => {
                            results.send_modify(|r| r.started = true);
                            wake.notify_one();
                            return;
                        }
                        Kind::Liveness => {}
                    }
                }
            }
            Err(msg) => {
                fail_run += 1;
                ok_run = 0;
                on_failure(kind, format!("{} probe failed: {msg}", kind.label()));
                if fail_run >= timing.failure_threshold {
                    match kind {
                        Kind::Readiness => {
                            if results.send_if_modified(|r| std::mem::replace(&mut r.ready, false))
                            {
                                wake.notify_one();
                            }
                        }
                        Kind::Liveness | Kind::Startup => {
                            let what = if kind == Kind::Liveness {
                                "liveness"
                            } else {
                                "startup"
                            };
                            results.send_modify(|r| {
                                r.failed = Some(format!("failed {what} probe, will be restarted"))
                            });
                            wake.notify_one();
                            return;
                        }
                    }
                }
            }
        }
        tokio::time::sleep(timing.period).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_ports_and_defaults() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "c", "ports": [{"name": "http", "containerPort": 8080}]
        }))
        .unwrap();
        let p: Probe = serde_json::from_value(serde_json::json!({
            "httpGet": {"port": "http"}, "periodSeconds": 0
        }))
        .unwrap();
        match probe_action(&p, &c).unwrap() {
            Action::Http { port, path, .. } => {
                assert_eq!(port, 8080);
                assert_eq!(path, "/");
            }
            other => panic!("{other:?}"),
        }
        let t = Timing::of(&p);
        assert_eq!(t.period, Duration::from_secs(1));
        assert_eq!(t.failure_threshold, 3);
        let bad: Probe =
            serde_json::from_value(serde_json::json!({"tcpSocket": {"port": "nope"}})).unwrap();
        assert!(probe_action(&bad, &c).is_err());
        let g: Probe = serde_json::from_value(serde_json::json!({
            "grpc": {"port": 9000, "service": "liveness"}
        }))
        .unwrap();
        assert_eq!(
            probe_action(&g, &c).unwrap(),
            Action::Grpc {
                port: 9000,
                service: "liveness".into()
            }
        );
    }
}
