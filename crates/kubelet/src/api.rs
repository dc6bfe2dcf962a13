//! The kubelet as its HTTPS API (crate `rkube-kubelet-server`) sees it:
//! pods from the [`PodTable`], containers resolved to runtime ids and CRI
//! log files, exec and attach through the runtime, the sandbox's network
//! namespace for port-forward, and per-container usage.
//!
//! Upstream counterpart: the kubelet's implementation of the server's
//! `HostInterface` (`kubelet_pods.go`'s GetContainerLogs, GetExec,
//! GetAttach, GetPortForward) and its stats provider.

use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use rkube_containers::runtime::{ContainerState, ExecConfig, ExecIo, Runtime, WindowSize};
use rkube_kubelet_server::{
    ContainerInfo, ContainerStats, LookupError, PodNetwork, PodRuntime, PodStats, TermSize,
};
use tokio::sync::mpsc;

use crate::table::PodTable;

pub struct KubeletApi {
    pub table: Arc<PodTable>,
    pub runtime: Arc<dyn Runtime>,
}

impl KubeletApi {
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Runtime) -> T + Send + 'static,
    ) -> Option<T> {
        let rt = self.runtime.clone();
        tokio::task::spawn_blocking(move || f(rt.as_ref()))
            .await
            .ok()
    }
}

#[async_trait]
impl PodRuntime for KubeletApi {
    async fn pods(&self) -> Vec<Pod> {
        self.table
            .all()
            .into_iter()
            .map(|e| (*e.pod).clone())
            .collect()
    }

    async fn container(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Result<ContainerInfo, LookupError> {
        let entry = self
            .table
            .get(namespace, pod)
            .ok_or_else(|| LookupError::PodNotFound {
                namespace: namespace.into(),
                pod: pod.into(),
            })?;
        // Debug (ephemeral) containers too: logs, exec and attach reach them.
        let ephemeral = entry
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.ephemeral_containers.as_ref());
        let known = crate::env::all_containers(&entry.pod).any(|c| c.name == container)
            || ephemeral.is_some_and(|l| l.iter().any(|c| c.name == container));
        if !known {
            return Err(LookupError::ContainerNotFound {
                pod: pod.into(),
                container: container.into(),
            });
        }
        let ids = entry.containers.get(container).cloned().unwrap_or_default();
        let pick = if previous {
            ids.len().checked_sub(2).map(|i| ids[i].clone())
        } else {
            ids.last().cloned()
        };
        let Some(id) = pick else {
            return Err(if previous {
                LookupError::NoPrevious {
                    pod: pod.into(),
                    container: container.into(),
                }
            } else {
                LookupError::NotStarted {
                    pod: pod.into(),
                    container: container.into(),
                    reason: entry
                        .waiting
                        .get(container)
                        .cloned()
                        .unwrap_or_else(|| "ContainerCreating".into()),
                }
            });
        };
        let lookup = id.clone();
        let st = self
            .blocking(move |rt| rt.status(&lookup).ok())
            .await
            .flatten()
            .ok_or_else(|| LookupError::ContainerNotFound {
                pod: pod.into(),
                container: container.into(),
            })?;
        Ok(ContainerInfo {
            id,
            log_path: st.log_path,
            running: st.state == ContainerState::Running,
        })
    }

    async fn exec(
        &self,
        id: &str,
        config: ExecConfig,
        io: ExecIo,
        mut resize: mpsc::Receiver<TermSize>,
    ) -> Result<i32, String> {
        let id = id.to_string();
        // The runtime's blocking side takes sizes from a std channel; the
        // relay ends with the session, which drops the sender.
        let (sizes_tx, sizes) = std::sync::mpsc::channel();
        let relay = tokio::spawn(async move {
            while let Some(s) = resize.recv().await {
                let size = WindowSize {
                    width: s.width,
                    height: s.height,
                };
                if sizes_tx.send(size).is_err() {
                    break;
                }
            }
        });
        let result = self
            .blocking(move |rt| {
                rt.exec_resizable(&id, &config, io, sizes)
                    .map_err(|e| e.to_string())
            })
            .await
            .unwrap_or_else(|| Err("exec task failed".into()));
        relay.abort();
        result
    }

    async fn attach(&self, id: &str) -> Result<Option<tokio::net::UnixStream>, String> {
        let id = id.to_string();
        let conn = self
            .blocking(move |rt| match rt.attach(&id) {
                Ok(c) => Ok(Some(c)),
                // Made before containers had an attach socket.
                Err(rkube_containers::runtime::Error::Io { .. }) => Ok(None),
                Err(e) => Err(e.to_string()),
            })
            .await
            .unwrap_or_else(|| Err("attach task failed".into()))?;
        let Some(conn) = conn else {
            return Ok(None);
        };
        conn.set_nonblocking(true)
            .and_then(|()| tokio::net::UnixStream::from_std(conn))
            .map(Some)
            .map_err(|e| format!("attach: {e}"))
    }

    async fn network(&self, namespace: &str, pod: &str) -> Result<PodNetwork, LookupError> {
        let entry = self
            .table
            .get(namespace, pod)
            .ok_or_else(|| LookupError::PodNotFound {
                namespace: namespace.into(),
                pod: pod.into(),
            })?;
        match entry.netns {
            Some(Some(path)) => Ok(PodNetwork::Namespace(path)),
            Some(None) => Ok(PodNetwork::Host),
            None => Err(LookupError::NotStarted {
                pod: pod.into(),
                container: String::new(),
                reason: "ContainerCreating".into(),
            }),
        }
    }

    async fn pod_stats(&self) -> Vec<PodStats> {
        let entries = self.table.all();
        self.blocking(move |rt| {
            let mut out = Vec::new();
            for e in entries {
                let mut containers = Vec::new();
                for (name, ids) in &e.containers {
                    let Some(id) = ids.last() else { continue };
                    let Ok(st) = rt.status(id) else { continue };
                    if st.state != ContainerState::Running {
                        continue;
                    }
                    if let Ok(stats) = rt.stats(id) {
                        containers.push(ContainerStats {
                            name: name.clone(),
                            start_time: st.started_at,
                            stats,
                        });
                    }
                }
                containers.sort_by(|a, b| a.name.cmp(&b.name));
                let m = &e.pod.metadata;
                out.push(PodStats {
                    namespace: m.namespace.clone().unwrap_or_default(),
                    name: m.name.clone().unwrap_or_default(),
                    uid: m.uid.clone().unwrap_or_default(),
                    start_time: e
                        .pod
                        .status
                        .as_ref()
                        .and_then(|s| s.start_time.as_ref())
                        .map(|t| std::time::SystemTime::from(t.0)),
                    containers,
                });
            }
            out
        })
        .await
        .unwrap_or_default()
    }
}
