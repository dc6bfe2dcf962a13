//! One pod's worker: a task that owns everything about its pod and
//! converges the node on the pod spec each time the pod changes, a
//! container exits, a probe decides, or a back-off expires.
//!
//! Upstream counterpart: `pod_workers.go` (one goroutine per pod, fed the
//! latest spec; termination as its own phase) and
//! `kuberuntime_manager.go` (`SyncPod`: sandbox, init containers in
//! order, then the app containers; `computePodActions`).

mod ephemeral;
mod evict;
mod kill;
pub(crate) use kill::cleanup_orphan;
mod net;
mod start;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::{Container, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use rkube_containers::runtime::{ContainerState, ContainerStatus};
use serde_json::json;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::events::{pod_ref, Kind};
use crate::probes::Results;
use crate::spec;
use crate::status::{self, ContainerView, PodView, Run};
use crate::volumes::PodVolumes;
use crate::Shared;

/// Back-off of restarts: 10 s doubling to 5 min, forgotten after a run of
/// 10 min (upstream's `MaxContainerBackOff` and its reset rule).
const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
const BACKOFF_RESET: Duration = Duration::from_secs(600);
/// How often running containers are checked for exits (upstream's PLEG
/// relists every second).
const POLL: Duration = Duration::from_secs(1);
/// How often kubelet-written volume content is refreshed.
const VOLUME_REFRESH: Duration = Duration::from_secs(10);

/// The latest pod from the API; `None` once it is gone.
pub(crate) type PodRx = watch::Receiver<Option<Arc<Pod>>>;

struct Sandbox {
    id: String,
    netns: Option<PathBuf>,
    /// The address the pod network gave it (none until attached).
    ip: Option<String>,
}

/// One runtime container made for a spec container.
#[derive(Debug, Clone)]
struct Attempt {
    id: String,
    attempt: u32,
}

struct Backoff {
    delay: Duration,
    last_start: Instant,
}

/// A running container's probes; aborted when it goes.
struct Probing {
    results: Arc<watch::Sender<Results>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Probing {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

pub(crate) struct Worker {
    shared: Arc<Shared>,
    uid: String,
    rx: PodRx,
    wake: Arc<Notify>,
    pod_dir: PathBuf,
    sandbox: Option<Sandbox>,
    volumes: PodVolumes,
    volumes_at: Option<Instant>,
    runs: HashMap<String, Vec<Attempt>>,
    backoff: HashMap<String, Backoff>,
    probes: HashMap<String, Probing>,
    /// Why a container is not running: (reason, message).
    waiting: HashMap<String, (String, String)>,
    image_ids: HashMap<String, (String, String)>,
    written: Option<PodStatus>,
    start_time: Option<Time>,
    /// The last pod seen, for cleaning up after it is gone.
    last_pod: Option<Arc<Pod>>,
    /// Set once the pod is evicted or refused (see `evict`).
    evicted: Option<evict::Evicted>,
    /// Ephemeral container name -> the runtime container whose PID
    /// namespace it joins (see `ephemeral`).
    pid_targets: HashMap<String, Option<String>>,
}

/// What a sync pass asks for next.
enum Next {
    In(Duration),
    /// The pod is gone from the node; the worker ends.
    Done,
}

impl Worker {
    pub(crate) fn new(shared: Arc<Shared>, uid: String, rx: PodRx) -> Worker {
        let pod_dir = shared.config.pods_dir().join(&uid);
        Worker {
            volumes: PodVolumes::new(&pod_dir),
            shared,
            uid,
            rx,
            wake: Arc::new(Notify::new()),
            pod_dir,
            sandbox: None,
            volumes_at: None,
            runs: HashMap::new(),
            backoff: HashMap::new(),
            probes: HashMap::new(),
            waiting: HashMap::new(),
            image_ids: HashMap::new(),
            written: None,
            start_time: None,
            last_pod: None,
            evicted: None,
            pid_targets: HashMap::new(),
        }
    }

    pub(crate) async fn run(mut self) {
        let _evictions = self.register_evictions();
        self.adopt().await;
        loop {
            let pod = self.rx.borrow_and_update().clone();
            let next = match pod {
                None => {
                    // Gone from the API without our final delete (a forced
                    // delete): stop everything quickly.
                    self.teardown(None, Duration::from_secs(2)).await;
                    Next::Done
                }
                Some(pod) => {
                    self.last_pod = Some(pod.clone());
                    self.sync(&pod).await
                }
            };
            let wait = match next {
                Next::Done => return,
                Next::In(d) => d,
            };
            tokio::select! {
                r = self.rx.changed() => if r.is_err() {
                    self.teardown(None, Duration::from_secs(2)).await;
                    return;
                },
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    fn sandbox_file(&self) -> PathBuf {
        self.pod_dir.join("sandbox")
    }

    /// After an agent restart: the sandbox this pod had and its
    /// containers, re-read from the runtime, so nothing restarts.
    async fn adopt(&mut self) {
        let Ok(id) = std::fs::read_to_string(self.sandbox_file()) else {
            return;
        };
        let id = id.trim().to_string();
        let rt = self.shared.runtime.clone();
        let found = tokio::task::spawn_blocking(move || {
            let sb = rt.sandbox_status(&id).ok()?;
            let cs: Vec<ContainerStatus> = rt
                .list()
                .ok()?
                .into_iter()
                .filter(|c| c.sandbox == id)
                .collect();
            Some((sb, cs))
        })
        .await
        .ok()
        .flatten();
        let Some((sb, containers)) = found else {
            return;
        };
        for c in containers {
            let attempt = spec::attempt_of(&c.log_path).unwrap_or(0);
            self.runs.entry(c.name.clone()).or_default().push(Attempt {
                id: c.id.clone(),
                attempt,
            });
        }
        for v in self.runs.values_mut() {
            v.sort_by_key(|a| a.attempt);
        }
        tracing::info!(uid = %self.uid, sandbox = %sb.id, "re-adopted pod");
        self.start_time = Some(status::time(sb.created_at));
        self.sandbox = Some(Sandbox {
            id: sb.id,
            netns: sb.netns,
            ip: None,
        });
        self.check_network().await;
    }

    fn latest(&self, name: &str) -> Option<&Attempt> {
        self.runs.get(name).and_then(|v| v.last())
    }

    async fn container_status(&self, id: &str) -> Option<ContainerStatus> {
        let rt = self.shared.runtime.clone();
        let id = id.to_string();
        tokio::task::spawn_blocking(move || rt.status(&id).ok())
            .await
            .ok()
            .flatten()
    }

    fn restart_policy(pod: &Pod) -> String {
        pod.spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".into())
    }

    /// One pass over the pod.
    async fn sync(&mut self, pod: &Arc<Pod>) -> Next {
        if pod.metadata.deletion_timestamp.is_some() {
            let grace = pod
                .metadata
                .deletion_grace_period_seconds
                .or(pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds))
                .unwrap_or(30)
                .max(0);
            self.teardown(Some(pod), Duration::from_secs(grace as u64))
                .await;
            self.delete(pod).await;
            return Next::Done;
        }
        if self.start_time.is_none() {
            self.start_time = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        }
        let mut next = Duration::from_secs(60);
        let terminal = matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded") | Some("Failed")
        ) && self.written.is_some();
        let evicted = self.evicted(pod).await;
        if !terminal && !evicted {
            if let Some(d) = self.converge(pod).await {
                next = next.min(d);
            }
            if self.converge_ephemeral(pod).await {
                next = next.min(POLL);
            }
        }
        let view = self.view(pod).await;
        let phase = status::phase(&view);
        if matches!(phase, "Succeeded" | "Failed") {
            // Done for good: stop what still runs (sidecars) and probes.
            self.stop_all(pod, Duration::from_secs(2), false).await;
        }
        if view
            .containers
            .iter()
            .chain(&view.init)
            .any(|c| matches!(c.current, Some(Run::Running { .. })))
        {
            next = next.min(POLL);
        }
        self.write_status(pod, &view).await;
        self.publish(pod);
        Next::In(next)
    }

    /// Tells the rest of the agent (the kubelet API) where this pod is.
    fn publish(&self, pod: &Arc<Pod>) {
        self.shared.table.publish(crate::table::Entry {
            pod: pod.clone(),
            netns: self.sandbox.as_ref().map(|s| s.netns.clone()),
            containers: self
                .runs
                .iter()
                .map(|(k, v)| (k.clone(), v.iter().map(|a| a.id.clone()).collect()))
                .collect(),
            waiting: self
                .waiting
                .iter()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect(),
        });
    }

    /// Brings the node to the spec; returns when to look again.
    async fn converge(&mut self, pod: &Arc<Pod>) -> Option<Duration> {
        let pod_ip = self.pod_ip(pod);
        let mut facts = self.shared.node.read().unwrap().clone();
        facts.pod_ip = pod_ip.clone();
        // Volumes first: containers cannot start without them.
        let due = self
            .volumes_at
            .is_none_or(|t| t.elapsed() >= VOLUME_REFRESH && PodVolumes::refreshable(pod));
        if due {
            match self
                .volumes
                .setup(pod, self.shared.lookup.as_ref(), &facts)
                .await
            {
                Ok(()) => self.volumes_at = Some(Instant::now()),
                Err(e) if self.volumes_at.is_none() => {
                    self.event(pod, None, Kind::Warning, "FailedMount", e);
                    return Some(Duration::from_secs(2));
                }
                Err(e) => tracing::warn!(uid = %self.uid, error = %e, "volume refresh"),
            }
        }
        if self.sandbox.is_none() {
            let mut config = spec::sandbox(pod, &self.dns(), Some(&pod_ip));
            match self.ensure_pod_cgroup(pod) {
                Ok(parent) => config.cgroup_parent = parent,
                Err(e) => {
                    let msg = format!("Failed to create pod sandbox: {e}");
                    self.event(pod, None, Kind::Warning, "FailedCreatePodSandBox", msg);
                    return Some(Duration::from_secs(2));
                }
            }
            let rt = self.shared.runtime.clone();
            let made = tokio::task::spawn_blocking(move || {
                let id = rt.create_sandbox(&config)?;
                let st = rt.sandbox_status(&id)?;
                Ok::<_, rkube_containers::runtime::Error>((id, st.netns))
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
            match made {
                Ok((id, netns)) => {
                    let _ = std::fs::create_dir_all(&self.pod_dir);
                    if let Err(e) = std::fs::write(self.sandbox_file(), &id) {
                        tracing::warn!(error = %e, "cannot record sandbox id");
                    }
                    self.sandbox = Some(Sandbox {
                        id,
                        netns,
                        ip: None,
                    });
                }
                Err(e) => {
                    self.event(
                        pod,
                        None,
                        Kind::Warning,
                        "FailedCreatePodSandBox",
                        format!("Failed to create pod sandbox: {e}"),
                    );
                    return Some(Duration::from_secs(2));
                }
            }
        }
        if let Some(retry) = self.attach_network(pod).await {
            return Some(retry);
        }
        let pod_ip = self.pod_ip(pod);
        let spec = pod.spec.clone().unwrap_or_default();
        let policy = Self::restart_policy(pod);
        let mut next: Option<Duration> = None;
        let mut soonest = |d: Duration| next = Some(next.map_or(d, |n: Duration| n.min(d)));
        for c in spec.init_containers.iter().flatten() {
            let sidecar = c.restart_policy.as_deref() == Some("Always");
            let st = match self.latest(&c.name) {
                Some(a) => self.container_status(&a.id.clone()).await,
                None => None,
            };
            match st.as_ref().map(|s| s.state) {
                None | Some(ContainerState::Created) => {
                    if let Some(d) = self.start(pod, c, &pod_ip).await {
                        soonest(d);
                    }
                    if !sidecar || !self.started(c) {
                        return next;
                    }
                }
                Some(ContainerState::Running) => {
                    if self.liveness_failed(pod, c, st.as_ref().unwrap()).await {
                        return Some(Duration::ZERO);
                    }
                    if !sidecar || !self.started(c) {
                        return next;
                    }
                }
                Some(ContainerState::Exited) => {
                    let st = st.unwrap();
                    if !sidecar && st.exit_code == Some(0) {
                        continue;
                    }
                    if !sidecar && policy == "Never" {
                        return next;
                    }
                    if let Some(d) = self.restart(pod, c, &st, &pod_ip).await {
                        soonest(d);
                    }
                    if !sidecar || !self.started(c) {
                        return next;
                    }
                }
            }
        }
        for c in &spec.containers {
            let st = match self.latest(&c.name) {
                Some(a) => self.container_status(&a.id.clone()).await,
                None => None,
            };
            match st.as_ref().map(|s| s.state) {
                None | Some(ContainerState::Created) => {
                    if let Some(d) = self.start(pod, c, &pod_ip).await {
                        soonest(d);
                    }
                }
                Some(ContainerState::Running) => {
                    if self.liveness_failed(pod, c, st.as_ref().unwrap()).await {
                        soonest(Duration::ZERO);
                    }
                }
                Some(ContainerState::Exited) => {
                    let st = st.unwrap();
                    let again = match policy.as_str() {
                        "Always" => true,
                        "OnFailure" => st.exit_code != Some(0),
                        _ => false,
                    };
                    if again {
                        if let Some(d) = self.restart(pod, c, &st, &pod_ip).await {
                            soonest(d);
                        }
                    }
                }
            }
        }
        next
    }

    /// Restarts an exited container unless it is backing off; returns
    /// when the back-off ends.
    async fn restart(
        &mut self,
        pod: &Arc<Pod>,
        c: &Container,
        st: &ContainerStatus,
        pod_ip: &str,
    ) -> Option<Duration> {
        let now = Instant::now();
        let ran = match (st.started_at, st.finished_at) {
            (Some(s), Some(f)) => f.duration_since(s).unwrap_or_default(),
            _ => Duration::ZERO,
        };
        if ran >= BACKOFF_RESET {
            self.backoff.remove(&c.name);
        }
        if let Some(b) = self.backoff.get(&c.name) {
            let ready_at = b.last_start + b.delay;
            if now < ready_at {
                let name = pod.metadata.name.clone().unwrap_or_default();
                let ns = pod.metadata.namespace.clone().unwrap_or_default();
                let msg = format!(
                    "back-off {} restarting failed container={} pod={}_{}({})",
                    human(b.delay),
                    c.name,
                    name,
                    ns,
                    self.uid
                );
                if self.waiting.get(&c.name).map(|w| w.0.as_str()) != Some("CrashLoopBackOff") {
                    self.event(
                        pod,
                        Some(&c.name),
                        Kind::Warning,
                        "BackOff",
                        format!(
                            "Back-off restarting failed container {} in pod {}_{}({})",
                            c.name, name, ns, self.uid
                        ),
                    );
                }
                self.waiting
                    .insert(c.name.clone(), ("CrashLoopBackOff".into(), msg));
                return Some(ready_at - now);
            }
        }
        let delay = self
            .backoff
            .get(&c.name)
            .map_or(BACKOFF_INITIAL, |b| (b.delay * 2).min(BACKOFF_MAX));
        self.backoff.insert(
            c.name.clone(),
            Backoff {
                delay,
                last_start: now,
            },
        );
        self.start(pod, c, pod_ip).await
    }

    fn started(&self, c: &Container) -> bool {
        self.latest(&c.name)
            .and_then(|a| self.probes.get(&a.id))
            .is_some_and(|p| p.results.borrow().started)
    }

    /// Kills a running container whose liveness or startup probe failed.
    async fn liveness_failed(
        &mut self,
        pod: &Arc<Pod>,
        c: &Container,
        st: &ContainerStatus,
    ) -> bool {
        let failed = self
            .probes
            .get(&st.id)
            .and_then(|p| p.results.borrow().failed.clone());
        let Some(why) = failed else {
            return false;
        };
        self.event(
            pod,
            Some(&c.name),
            Kind::Normal,
            "Killing",
            format!("Container {} {why}", c.name),
        );
        let grace = pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30)
            .max(0) as u64;
        self.kill_container(pod, c, &st.id, Duration::from_secs(grace))
            .await;
        true
    }

    fn pod_ip(&self, pod: &Pod) -> String {
        if spec::host_network(pod) {
            self.shared.config.node_ip.to_string()
        } else {
            let ip = self.sandbox.as_ref().and_then(|s| s.ip.clone());
            ip.unwrap_or_default()
        }
    }

    fn dns(&self) -> spec::DnsSettings {
        spec::DnsSettings {
            servers: self.shared.config.cluster_dns.clone(),
            domain: self.shared.config.cluster_domain.clone(),
        }
    }

    fn event(&self, pod: &Pod, container: Option<&str>, kind: Kind, reason: &str, msg: String) {
        self.shared
            .recorder
            .emit(pod_ref(pod, container), kind, reason, msg);
    }

    /// The snapshot the status is computed from.
    async fn view(&self, pod: &Pod) -> PodView {
        let spec = pod.spec.clone().unwrap_or_default();
        let mut init = Vec::new();
        for c in spec.init_containers.iter().flatten() {
            let mut v = self.container_view(c).await;
            v.sidecar = c.restart_policy.as_deref() == Some("Always");
            init.push(v);
        }
        let mut containers = Vec::new();
        for c in &spec.containers {
            containers.push(self.container_view(c).await);
        }
        // Containers not reached yet (init containers still running) wait
        // with PodInitializing, as upstream shows.
        if !status::initialized(&PodView {
            init: init.clone(),
            ..Default::default()
        }) {
            for v in containers.iter_mut().filter(|v| v.current.is_none()) {
                v.waiting = Some(("PodInitializing".into(), String::new()));
            }
        }
        PodView {
            sandbox_ready: self.sandbox.is_some(),
            init,
            containers,
            host_ip: self.shared.config.node_ip.to_string(),
            pod_ip: self.pod_ip(pod),
            start_time: self.start_time.clone(),
            restart_policy: Self::restart_policy(pod),
            qos_class: spec::qos_class(pod).into(),
            terminating: false,
        }
    }

    async fn container_view(&self, c: &Container) -> ContainerView {
        let attempts = self.runs.get(&c.name).cloned().unwrap_or_default();
        let (image, image_id) = self
            .image_ids
            .get(&c.name)
            .cloned()
            .unwrap_or_else(|| (c.image.clone().unwrap_or_default(), String::new()));
        let mut v = ContainerView {
            name: c.name.clone(),
            image,
            image_id,
            restart_count: attempts.last().map_or(0, |a| a.attempt as i32),
            ..Default::default()
        };
        let to_run = |s: ContainerStatus| match s.state {
            ContainerState::Running | ContainerState::Created if s.started_at.is_some() => {
                Some(Run::Running {
                    id: s.id,
                    started_at: s.started_at.unwrap_or(s.created_at),
                })
            }
            ContainerState::Exited => Some(Run::Terminated {
                id: s.id,
                exit_code: s.exit_code.unwrap_or(255),
                reason: s.reason.unwrap_or_else(|| "Error".into()),
                message: None,
                started_at: s.started_at,
                finished_at: s.finished_at.unwrap_or_else(SystemTime::now),
            }),
            _ => None,
        };
        if let Some(a) = attempts.last() {
            if let Some(s) = self.container_status(&a.id).await {
                v.current = to_run(s);
            }
        }
        if attempts.len() >= 2 {
            if let Some(s) = self
                .container_status(&attempts[attempts.len() - 2].id)
                .await
            {
                v.previous = to_run(s);
            }
        }
        let running = matches!(v.current, Some(Run::Running { .. }));
        let results = attempts
            .last()
            .and_then(|a| self.probes.get(&a.id))
            .map(|p| p.results.borrow().clone());
        v.started = running && results.as_ref().is_none_or(|r| r.started);
        v.ready = v.started && results.as_ref().is_none_or(|r| r.ready);
        if !running {
            v.waiting = self.waiting.get(&c.name).cloned();
        }
        v
    }

    /// Patches pods/status when it changed since the last write.
    async fn write_status(&mut self, pod: &Pod, view: &PodView) {
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let mut status = status::pod_status(view, pod, &now);
        status.ephemeral_container_statuses = self.ephemeral_statuses(pod).await;
        self.eviction_status(&mut status);
        if self.written.as_ref() == Some(&status) {
            return;
        }
        // What the API already has (after our own write echoes back) needs
        // no write either.
        if pod.status.as_ref() == Some(&status) {
            self.written = Some(status);
            return;
        }
        let api: Api<Pod> = Api::namespaced(
            self.shared.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let name = pod.metadata.name.clone().unwrap_or_default();
        match api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&json!({ "status": status })),
            )
            .await
        {
            Ok(_) => self.written = Some(status),
            Err(e) => tracing::debug!(pod = %name, error = %e, "status update failed"),
        }
    }
}

/// `10s`, `1m20s`, `5m0s` as Go prints durations.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else {
        format!("{}m{}s", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_go() {
        assert_eq!(human(Duration::from_secs(10)), "10s");
        assert_eq!(human(Duration::from_secs(80)), "1m20s");
        assert_eq!(human(Duration::from_secs(300)), "5m0s");
    }
}
