//! Starting one container of a pod: image per pull policy (with
//! imagePullSecrets), environment, mounts, create and start in the
//! sandbox, postStart hook, then its probes.
//!
//! Upstream counterpart: `kuberuntime_container.go` (`startContainer`)
//! and `pkg/kubelet/images/image_manager.go` (`EnsureImageExists`).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};
use rkube_containers::image::DockerConfig;
use tokio::sync::watch;

use super::{Attempt, Backoff, Probing, Worker, BACKOFF_INITIAL, BACKOFF_MAX};
use crate::events::{pod_ref, Kind};
use crate::images::{self, should_pull};
use crate::probes::{self, Results, Target, Timing};
use crate::{env, spec};

impl Worker {
    /// Starts the next attempt of `c`. On failure the reason is kept for
    /// the status and the returned delay says when to try again.
    pub(super) async fn start(
        &mut self,
        pod: &Arc<Pod>,
        c: &Container,
        pod_ip: &str,
    ) -> Option<Duration> {
        match self.try_start(pod, c, pod_ip).await {
            Ok(()) => {
                self.waiting.remove(&c.name);
                None
            }
            Err((reason, message)) => {
                // Image errors are told by reason ("Error: ErrImagePull"),
                // the pull's own error having had its event; others by
                // message, as upstream.
                let told = if images::is_image_reason(&reason) {
                    &reason
                } else {
                    &message
                };
                self.event(
                    pod,
                    Some(&c.name),
                    Kind::Warning,
                    "Failed",
                    format!("Error: {told}"),
                );
                self.waiting.insert(c.name.clone(), (reason, message));
                Some(Duration::from_secs(5))
            }
        }
    }

    async fn try_start(
        &mut self,
        pod: &Arc<Pod>,
        c: &Container,
        pod_ip: &str,
    ) -> Result<(), (String, String)> {
        let image_name = c.image.clone().unwrap_or_default();
        let image = self.ensure_image(pod, c, &image_name).await?;
        self.image_ids
            .insert(c.name.clone(), (image.name.clone(), image.id.clone()));
        let mut facts = self.shared.node.read().unwrap().clone();
        facts.pod_ip = pod_ip.to_string();
        let env = env::resolve(pod, c, self.shared.lookup.as_ref(), &facts)
            .await
            .map_err(|m| ("CreateContainerConfigError".to_string(), m))?;
        let mounts = self
            .volumes
            .mounts_for(c, &env)
            .map_err(|m| ("CreateContainerConfigError".to_string(), m))?;
        let attempt = self.latest(&c.name).map_or(0, |a| a.attempt + 1);
        let mut config = spec::container(pod, c);
        config.image = image.name.clone();
        config.env = env;
        config.mounts = mounts;
        config.pid_target = self.pid_target(&c.name);
        config.log_path = Some(spec::log_path(
            &self.shared.config.logs_dir(),
            pod,
            &c.name,
            attempt,
        ));
        let sandbox = self
            .sandbox
            .as_ref()
            .map(|s| s.id.clone())
            .ok_or(("CreateContainerError".to_string(), "no sandbox".to_string()))?;
        let rt = self.shared.runtime.clone();
        let created = tokio::task::spawn_blocking(move || rt.create_container(&sandbox, &config))
            .await
            .map_err(|e| ("CreateContainerError".to_string(), e.to_string()))?
            .map_err(|e| ("CreateContainerError".to_string(), e.to_string()))?;
        self.event(
            pod,
            Some(&c.name),
            Kind::Normal,
            "Created",
            format!("Created container: {}", c.name),
        );
        self.runs.entry(c.name.clone()).or_default().push(Attempt {
            id: created.clone(),
            attempt,
        });
        let rt = self.shared.runtime.clone();
        let id = created.clone();
        tokio::task::spawn_blocking(move || rt.start(&id))
            .await
            .map_err(|e| ("RunContainerError".to_string(), e.to_string()))?
            .map_err(|e| ("RunContainerError".to_string(), e.to_string()))?;
        self.event(
            pod,
            Some(&c.name),
            Kind::Normal,
            "Started",
            format!("Started container {}", c.name),
        );
        self.forget_old_attempts(&c.name).await;
        if let Some(h) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
            let target = self.target(&created);
            let r = match probes::hook_action(h, c) {
                Ok(a) => probes::run(&a, &target, Duration::from_secs(30)).await,
                Err(e) => Err(e),
            };
            if let Err(msg) = r {
                self.event(
                    pod,
                    Some(&c.name),
                    Kind::Warning,
                    "FailedPostStartHook",
                    format!("PostStartHook failed: {msg}"),
                );
                self.kill_container(pod, c, &created, Duration::from_secs(2))
                    .await;
                return Err(("PostStartHookError".into(), msg));
            }
        }
        self.start_probes(pod, c, &created);
        Ok(())
    }

    /// Keeps the latest finished attempt (lastState, `logs --previous`)
    /// and removes older ones.
    async fn forget_old_attempts(&mut self, name: &str) {
        let Some(list) = self.runs.get_mut(name) else {
            return;
        };
        if list.len() <= 2 {
            return;
        }
        let old: Vec<Attempt> = list.drain(..list.len() - 2).collect();
        let rt = self.shared.runtime.clone();
        let ids: Vec<String> = old.iter().map(|a| a.id.clone()).collect();
        for id in &ids {
            self.probes.remove(id);
        }
        tokio::task::spawn_blocking(move || {
            for id in ids {
                if let Ok(st) = rt.status(&id) {
                    let _ = std::fs::remove_file(&st.log_path);
                }
                let _ = rt.remove(&id);
            }
        });
    }

    pub(super) fn target(&self, container_id: &str) -> Target {
        let netns = self.sandbox.as_ref().and_then(|s| s.netns.clone());
        Target {
            runtime: self.shared.runtime.clone(),
            container_id: container_id.to_string(),
            default_host: if netns.is_some() {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            } else {
                self.shared.config.node_ip
            },
            netns,
        }
    }

    fn start_probes(&mut self, pod: &Arc<Pod>, c: &Container, id: &str) {
        let results = Arc::new(watch::Sender::new(Results {
            started: c.startup_probe.is_none(),
            ready: c.readiness_probe.is_none(),
            failed: None,
        }));
        let mut tasks = Vec::new();
        let kinds = [
            (probes::Kind::Startup, &c.startup_probe),
            (probes::Kind::Liveness, &c.liveness_probe),
            (probes::Kind::Readiness, &c.readiness_probe),
        ];
        for (kind, probe) in kinds {
            let Some(p) = probe else { continue };
            let action = match probes::probe_action(p, c) {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(container = %c.name, error = %e, "invalid probe");
                    continue;
                }
            };
            let recorder = self.shared.recorder.clone();
            let obj = pod_ref(pod, Some(&c.name));
            let on_failure: probes::OnFailure = Arc::new(move |_, msg| {
                recorder.emit(obj.clone(), Kind::Warning, "Unhealthy", msg);
            });
            tasks.push(tokio::spawn(probes::probe_loop(
                kind,
                action,
                Timing::of(p),
                self.target(id),
                results.clone(),
                self.wake.clone(),
                on_failure,
            )));
        }
        self.probes
            .insert(id.to_string(), Probing { results, tasks });
    }

    async fn ensure_image(
        &mut self,
        pod: &Arc<Pod>,
        c: &Container,
        image: &str,
    ) -> Result<crate::images::ImageInfo, (String, String)> {
        let store = self.shared.images.clone();
        let present = store.present(image);
        let pull = match should_pull(image, c.image_pull_policy.as_deref(), present.is_some()) {
            Ok(pull) => pull,
            Err(m) => {
                let reason = "ErrImageNeverPull";
                self.event(pod, Some(&c.name), Kind::Warning, reason, m.clone());
                return Err((reason.to_string(), m));
            }
        };
        if !pull {
            let info = present.expect("checked by should_pull");
            self.event(
                pod,
                Some(&c.name),
                Kind::Normal,
                "Pulled",
                format!("Container image \"{image}\" already present on machine"),
            );
            return Ok(info);
        }
        // Upstream's image back-off (per pod and image, 10 s doubling to
        // 5 min): no pull until it ends, ImagePullBackOff meanwhile.
        let key = format!("{}{}", images::BACKOFF_KEY, c.name);
        let now = Instant::now();
        if let Some(b) = self.backoff.get(&key) {
            if now < b.last_start + b.delay {
                let last = self
                    .waiting
                    .get(&c.name)
                    .map(|w| images::last_pull_error(&w.1).to_string())
                    .unwrap_or_default();
                self.event(
                    pod,
                    Some(&c.name),
                    Kind::Normal,
                    "BackOff",
                    format!("Back-off pulling image \"{image}\""),
                );
                return Err((
                    "ImagePullBackOff".into(),
                    images::backoff_message(image, &last),
                ));
            }
        }
        self.event(
            pod,
            Some(&c.name),
            Kind::Normal,
            "Pulling",
            format!("Pulling image \"{image}\""),
        );
        let auth = self.pull_auth(pod).await;
        let t = Instant::now();
        match store.pull(image, auth.as_ref()).await {
            Ok(info) => {
                self.backoff.remove(&key);
                self.event(
                    pod,
                    Some(&c.name),
                    Kind::Normal,
                    "Pulled",
                    format!(
                        "Successfully pulled image \"{image}\" in {:.3}s. Image size: {} bytes.",
                        t.elapsed().as_secs_f64(),
                        info.size
                    ),
                );
                Ok(info)
            }
            Err(e) => {
                let delay = self
                    .backoff
                    .get(&key)
                    .map_or(BACKOFF_INITIAL, |b| (b.delay * 2).min(BACKOFF_MAX));
                self.backoff.insert(
                    key,
                    Backoff {
                        delay,
                        last_start: now,
                    },
                );
                let message = images::pull_error(image, &e);
                self.event(
                    pod,
                    Some(&c.name),
                    Kind::Warning,
                    "Failed",
                    format!("Failed to pull image \"{image}\": {message}"),
                );
                Err(("ErrImagePull".into(), message))
            }
        }
    }

    /// Registry credentials from the pod's imagePullSecrets
    /// (kubernetes.io/dockerconfigjson secrets).
    async fn pull_auth(&self, pod: &Pod) -> Option<DockerConfig> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let mut configs = Vec::new();
        for r in pod
            .spec
            .as_ref()
            .and_then(|s| s.image_pull_secrets.clone())
            .unwrap_or_default()
        {
            let Ok(Some(secret)) = self.shared.lookup.secret(ns, &r.name).await else {
                tracing::warn!(secret = %r.name, "imagePullSecret not found");
                continue;
            };
            let data = secret.data.unwrap_or_default();
            if let Some(json) = data.get(".dockerconfigjson") {
                match DockerConfig::parse(&json.0) {
                    Ok(c) => configs.push(c),
                    Err(e) => tracing::warn!(secret = %r.name, error = %e, "bad pull secret"),
                }
            }
        }
        (!configs.is_empty()).then(|| DockerConfig::merge(&configs))
    }
}
