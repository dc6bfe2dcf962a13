//! The scheduling loop against a recording fake of the API.

use std::sync::Mutex;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Node, NodeStatus};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;
use crate::resources::Resources;

/// Records every write; binding fails for pods named `fail-*` once.
#[derive(Default)]
struct Recorder {
    binds: Mutex<Vec<(String, String)>>,
    conditions: Mutex<Vec<(String, String, Option<String>)>>,
    events: Mutex<Vec<(String, String, String)>>,
    deleted: Mutex<Vec<String>>,
}

#[async_trait]
impl ClusterApi for Recorder {
    async fn bind(&self, pod: &PodInfo, node: &str) -> Result<(), api::Error> {
        self.binds
            .lock()
            .unwrap()
            .push((pod.name.clone(), node.to_string()));
        Ok(())
    }

    async fn set_unschedulable(
        &self,
        pod: &PodInfo,
        _reason: &str,
        message: &str,
        nominated: Option<&str>,
    ) -> Result<(), api::Error> {
        self.conditions.lock().unwrap().push((
            pod.name.clone(),
            message.to_string(),
            nominated.map(String::from),
        ));
        Ok(())
    }

    async fn delete_pod(&self, pod: &PodInfo) -> Result<(), api::Error> {
        self.deleted.lock().unwrap().push(pod.name.clone());
        Ok(())
    }

    async fn event(
        &self,
        pod: &PodInfo,
        _type: &str,
        reason: &str,
        _action: &str,
        message: &str,
    ) -> Result<(), api::Error> {
        self.events.lock().unwrap().push((
            pod.name.clone(),
            reason.to_string(),
            message.to_string(),
        ));
        Ok(())
    }
}

fn node(name: &str, cpu: &str) -> ClusterEvent {
    ClusterEvent::Node(Box::new(Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some([("kubernetes.io/hostname".to_string(), name.to_string())].into()),
            ..Default::default()
        },
        spec: None,
        status: Some(NodeStatus {
            allocatable: Some(
                [
                    ("cpu".to_string(), Quantity(cpu.into())),
                    ("pods".to_string(), Quantity("110".into())),
                ]
                .into(),
            ),
            ..Default::default()
        }),
    }))
}

fn pod(name: &str, cpu: i64, priority: i32) -> PodInfo {
    PodInfo {
        uid: name.into(),
        name: name.into(),
        namespace: "default".into(),
        scheduler_name: DEFAULT_SCHEDULER.into(),
        priority,
        requests: Resources {
            milli_cpu: cpu,
            ..Default::default()
        },
        non_zero: (cpu.max(100), 1),
        ..Default::default()
    }
}

fn synced(s: &mut Scheduler<Recorder>, pods: &[&str], now: Instant) {
    s.handle(ClusterEvent::NodesResynced(["a".to_string()].into()), now);
    let uids = pods.iter().map(|p| p.to_string()).collect();
    s.handle(ClusterEvent::PodsResynced(uids), now);
}

/// Pop and schedule everything ready, then let spawned writes finish.
async fn drain(s: &mut Scheduler<Recorder>, now: Instant) {
    while let Some(qp) = s.queue.pop() {
        s.schedule_one(qp, now);
    }
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn binds_fitting_pods_and_reports_the_rest() {
    let api = Arc::new(Recorder::default());
    let mut s = Scheduler::new(api.clone());
    let now = Instant::now();
    s.handle(node("a", "1"), now);
    synced(&mut s, &[], now);
    s.handle(ClusterEvent::Pod(Arc::new(pod("small", 600, 0))), now);
    s.handle(ClusterEvent::Pod(Arc::new(pod("big", 600, 0))), now);
    drain(&mut s, now).await;
    assert_eq!(
        *api.binds.lock().unwrap(),
        vec![("small".to_string(), "a".to_string())]
    );
    let conds = api.conditions.lock().unwrap().clone();
    assert_eq!(conds.len(), 1);
    assert_eq!(
        conds[0].1,
        "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: \
         1 No preemption victims found for incoming pod."
    );
    let events = api.events.lock().unwrap().clone();
    assert!(events
        .iter()
        .any(|e| e.0 == "big" && e.1 == "FailedScheduling"));
    assert!(events.iter().any(|e| e.0 == "small"
        && e.1 == "Scheduled"
        && e.2 == "Successfully assigned default/small to a"));

    // The assumed pod is confirmed by the watch; deleting it frees room
    // and the waiting pod is retried once its backoff has passed.
    let mut bound = pod("small", 600, 0);
    bound.node_name = "a".into();
    s.handle(ClusterEvent::Pod(Arc::new(bound.clone())), now);
    s.handle(
        ClusterEvent::PodDeleted(Arc::new(bound)),
        now + Duration::from_secs(2),
    );
    s.queue.flush(now + Duration::from_secs(2));
    drain(&mut s, now + Duration::from_secs(2)).await;
    assert_eq!(api.binds.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn higher_priority_preempts() {
    let api = Arc::new(Recorder::default());
    let mut s = Scheduler::new(api.clone());
    let now = Instant::now();
    s.handle(node("a", "1"), now);
    let mut low = pod("low", 800, 0);
    low.node_name = "a".into();
    s.handle(ClusterEvent::Pod(Arc::new(low)), now);
    synced(&mut s, &["low"], now);
    s.handle(ClusterEvent::Pod(Arc::new(pod("vip", 500, 1000))), now);
    drain(&mut s, now).await;
    assert_eq!(*api.deleted.lock().unwrap(), vec!["low".to_string()]);
    let conds = api.conditions.lock().unwrap().clone();
    assert_eq!(conds[0].2.as_deref(), Some("a"), "nominatedNodeName set");
    assert_eq!(conds[0].1, "0/1 nodes are available: 1 Insufficient cpu.");
    assert_eq!(s.cache.nominated("a").len(), 1);
}

#[tokio::test]
async fn waits_for_the_initial_lists_and_no_nodes_message() {
    let api = Arc::new(Recorder::default());
    let mut s = Scheduler::new(api.clone());
    let now = Instant::now();
    s.handle(ClusterEvent::Pod(Arc::new(pod("p", 0, 0))), now);
    assert!(!s.ready());
    s.handle(ClusterEvent::NodesResynced(HashSet::new()), now);
    s.handle(ClusterEvent::PodsResynced(["p".to_string()].into()), now);
    assert!(s.ready());
    drain(&mut s, now).await;
    assert_eq!(api.conditions.lock().unwrap()[0].1, NO_NODES);
    // A node arriving moves the pod back (after its 1 s backoff).
    s.handle(node("a", "1"), now + Duration::from_secs(1));
    s.queue.flush(now + Duration::from_secs(1));
    drain(&mut s, now + Duration::from_secs(1)).await;
    assert_eq!(api.binds.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn ignores_other_schedulers_and_bound_pods() {
    let api = Arc::new(Recorder::default());
    let mut s = Scheduler::new(api.clone());
    let now = Instant::now();
    s.handle(node("a", "1"), now);
    synced(&mut s, &[], now);
    let mut other = pod("other", 0, 0);
    other.scheduler_name = "my-scheduler".into();
    s.handle(ClusterEvent::Pod(Arc::new(other)), now);
    let mut terminal = pod("done", 0, 0);
    terminal.terminal = true;
    s.handle(ClusterEvent::Pod(Arc::new(terminal)), now);
    assert!(s.queue.is_empty());
}
