//! Stopping containers and tearing a pod down: preStop hook, then the
//! runtime's stop signal, the rest of the grace period, SIGKILL; app
//! containers first and sidecars after them; then the sandbox, volumes
//! and logs go, and the pod object is deleted with grace 0.
//!
//! Upstream counterpart: `kuberuntime_container.go` (`killContainer`,
//! `executePreStopHook`), `pod_workers.go` (the terminating phase) and
//! the status manager's final delete.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::{Api, DeleteParams, Preconditions};
use rkube_containers::runtime::ContainerState;

use super::Worker;
use crate::events::Kind;
use crate::probes;
use crate::volumes::PodVolumes;

impl Worker {
    /// preStop (bounded by the grace period), then stop with what is left.
    pub(super) async fn kill_container(
        &mut self,
        pod: &Pod,
        c: &Container,
        id: &str,
        grace: Duration,
    ) {
        self.probes.remove(id);
        let job = self.kill_job(c, id, grace);
        let _ = pod;
        job.await;
    }

    fn kill_job(
        &self,
        c: &Container,
        id: &str,
        grace: Duration,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let deadline = Instant::now() + grace;
        let pre_stop = c
            .lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.as_ref())
            .and_then(|h| probes::hook_action(h, c).ok());
        let target = self.target(id);
        let rt = self.shared.runtime.clone();
        let id = id.to_string();
        async move {
            if let Some(action) = pre_stop {
                if grace > Duration::ZERO {
                    let _ = tokio::time::timeout(grace, probes::run(&action, &target, grace)).await;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let _ = tokio::task::spawn_blocking(move || rt.stop(&id, left)).await;
        }
    }

    /// Stops every running container of the pod: app and ephemeral
    /// containers first (in parallel), then sidecars.
    pub(super) async fn stop_all(&mut self, pod: &Pod, grace: Duration, events: bool) {
        let spec = pod.spec.clone().unwrap_or_default();
        let deadline = Instant::now() + grace;
        let sidecars: Vec<Container> = spec
            .init_containers
            .iter()
            .flatten()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"))
            .cloned()
            .collect();
        let others: Vec<Container> = spec
            .containers
            .iter()
            .chain(
                spec.init_containers
                    .iter()
                    .flatten()
                    .filter(|c| c.restart_policy.as_deref() != Some("Always")),
            )
            .cloned()
            .chain(
                spec.ephemeral_containers
                    .iter()
                    .flatten()
                    .map(super::ephemeral::as_container),
            )
            .collect();
        for group in [others, sidecars] {
            let mut jobs = Vec::new();
            for c in &group {
                let Some(a) = self.latest(&c.name).cloned() else {
                    continue;
                };
                let running = self
                    .container_status(&a.id)
                    .await
                    .is_some_and(|s| s.state == ContainerState::Running);
                if !running {
                    continue;
                }
                if events {
                    self.event(
                        pod,
                        Some(&c.name),
                        Kind::Normal,
                        "Killing",
                        format!("Stopping container {}", c.name),
                    );
                }
                self.probes.remove(&a.id);
                let left = deadline.saturating_duration_since(Instant::now());
                jobs.push(tokio::spawn(self.kill_job(c, &a.id, left)));
            }
            for j in jobs {
                let _ = j.await;
            }
        }
        self.probes.clear();
    }

    /// Stops everything, writes the final status (when the pod is still
    /// there) and removes the pod's containers, sandbox, volumes and logs.
    pub(super) async fn teardown(&mut self, pod: Option<&Arc<Pod>>, grace: Duration) {
        if let Some(pod) = pod {
            self.stop_all(pod, grace, true).await;
            let view = self.view(pod).await;
            self.write_status(pod, &view).await;
        } else {
            // Gone from the API: no spec to order by; stop all at once.
            let ids: Vec<String> = self.runs.values().flatten().map(|a| a.id.clone()).collect();
            self.probes.clear();
            let rt = self.shared.runtime.clone();
            let _ = tokio::task::spawn_blocking(move || {
                std::thread::scope(|s| {
                    for id in &ids {
                        let rt = &rt;
                        s.spawn(move || rt.stop(id, grace));
                    }
                });
            })
            .await;
        }
        if let Some(p) = pod {
            self.shared.table.remove(p);
        } else if let Some(p) = self.last_pod.clone() {
            self.shared.table.remove(&p);
        }
        let ids: Vec<String> = self
            .runs
            .drain()
            .flat_map(|(_, v)| v)
            .map(|a| a.id)
            .collect();
        super::net::detach_network(&self.shared, &self.uid).await;
        let sandbox = self.sandbox.take().map(|s| s.id);
        let rt = self.shared.runtime.clone();
        let pod_dir = self.pod_dir.clone();
        let known = pod.cloned().or_else(|| self.last_pod.clone());
        let (shared, uid) = (self.shared.clone(), self.uid.clone());
        let logs = known.as_ref().map(|p| {
            self.shared
                .config
                .logs_dir()
                .join(crate::spec::pod_log_dir_name(p))
        });
        let _ = tokio::task::spawn_blocking(move || {
            for id in ids {
                if let Err(e) = rt.remove(&id) {
                    tracing::debug!(container = %id, error = %e, "remove container");
                }
            }
            if let Some(sb) = sandbox {
                if let Err(e) = rt.remove_sandbox(&sb) {
                    tracing::debug!(sandbox = %sb, error = %e, "remove sandbox");
                }
            }
            super::evict::remove_pod_cgroup(&shared, &uid);
            PodVolumes::cleanup(&pod_dir);
            let _ = std::fs::remove_dir_all(&pod_dir);
            if let Some(l) = logs {
                let _ = std::fs::remove_dir_all(l);
            }
        })
        .await;
    }

    /// The final delete (grace 0, only this uid) once everything is down.
    pub(super) async fn delete(&self, pod: &Pod) {
        let api: Api<Pod> = Api::namespaced(
            self.shared.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        let name = pod.metadata.name.clone().unwrap_or_default();
        match api.delete(&name, &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => tracing::warn!(pod = %name, error = %e, "final pod delete failed"),
        }
    }
}

/// Removes what a pod left on the node when the pod is no longer known
/// (deleted while the agent was down).
pub(crate) async fn cleanup_orphan(shared: Arc<crate::Shared>, uid: String) {
    let pod_dir = shared.config.pods_dir().join(&uid);
    let sandbox = std::fs::read_to_string(pod_dir.join("sandbox")).ok();
    let rt = shared.runtime.clone();
    super::net::detach_network(&shared, &uid).await;
    let logs = shared.config.logs_dir();
    let _ = tokio::task::spawn_blocking(move || {
        if let Some(sb) = sandbox.map(|s| s.trim().to_string()) {
            for c in rt.list().unwrap_or_default() {
                if c.sandbox == sb {
                    let _ = rt.stop(&c.id, Duration::from_secs(2));
                    let _ = rt.remove(&c.id);
                }
            }
            let _ = rt.remove_sandbox(&sb);
        }
        super::evict::remove_pod_cgroup(&shared, &uid);
        PodVolumes::cleanup(&pod_dir);
        let _ = std::fs::remove_dir_all(&pod_dir);
        for e in std::fs::read_dir(&logs).into_iter().flatten().flatten() {
            if e.file_name()
                .to_string_lossy()
                .ends_with(&format!("_{uid}"))
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    })
    .await;
}
