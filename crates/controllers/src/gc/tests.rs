use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use super::graph::{FOREGROUND, ORPHAN};
use super::*;

fn ar(kind: &str) -> ApiResource {
    ApiResource {
        group: String::new(),
        version: "v1".into(),
        api_version: "v1".into(),
        kind: kind.into(),
        plural: format!("{}s", kind.to_lowercase()),
    }
}

fn node(uid: &str) -> Node {
    Node {
        uid: uid.into(),
        ar: Arc::new(ar("ConfigMap")),
        namespace: Some("ns".into()),
        name: format!("cm-{uid}"),
        resource_version: Some("1".into()),
        owners: Vec::new(),
        finalizers: Vec::new(),
        deleting: false,
    }
}

fn owner_ref(uid: &str, block: bool) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: format!("cm-{uid}"),
        uid: uid.into(),
        block_owner_deletion: block.then_some(true),
        controller: None,
    }
}

fn owned_by(uid: &str, owners: &[(&str, bool)]) -> Node {
    let mut n = node(uid);
    n.owners = owners.iter().map(|(o, b)| owner_ref(o, *b)).collect();
    n
}

fn deleting(mut n: Node, finalizer: &str) -> Node {
    n.deleting = true;
    n.finalizers = vec![finalizer.into()];
    n
}

/// Short names for the actions of a plan, so tests read like the rules.
fn summary(plan: &[Action]) -> Vec<String> {
    plan.iter()
        .map(|a| match a {
            Action::Delete {
                node,
                propagation,
                unblock,
                confirm_absent,
            } => format!(
                "delete {} {propagation:?} unblock={unblock:?} confirm={:?}",
                node.uid,
                confirm_absent.iter().map(|o| &o.uid).collect::<Vec<_>>()
            ),
            Action::RemoveOwners { node, owners, .. } => {
                format!("unown {} {owners:?}", node.uid)
            }
            Action::RemoveFinalizer { node, finalizer } => {
                format!("unfinalize {} {finalizer}", node.uid)
            }
        })
        .collect()
}

fn plan(nodes: Vec<Node>) -> Vec<String> {
    summary(&reconcile(&Graph::new(nodes)))
}

#[test]
fn objects_without_owners_or_with_live_owners_stay() {
    assert!(plan(vec![node("a"), owned_by("b", &[("a", false)])]).is_empty());
}

#[test]
fn dependent_of_a_vanished_owner_is_deleted_in_the_background() {
    assert_eq!(
        plan(vec![owned_by("b", &[("a", false)])]),
        ["delete b Background unblock=[] confirm=[\"a\"]"]
    );
}

#[test]
fn owner_with_same_name_but_other_uid_counts_as_absent() {
    // The graph is keyed by uid: a namesake "cm-a" with uid "a2" is not "a".
    let mut namesake = node("a2");
    namesake.name = "cm-a".into();
    assert_eq!(
        plan(vec![namesake, owned_by("b", &[("a", false)])]),
        ["delete b Background unblock=[] confirm=[\"a\"]"]
    );
}

#[test]
fn orphaning_owner_detaches_dependents_then_drops_its_finalizer() {
    let owner = deleting(node("a"), ORPHAN);
    let dep = owned_by("b", &[("a", true)]);
    assert_eq!(plan(vec![owner.clone(), dep]), ["unown b [\"a\"]"]);
    assert_eq!(plan(vec![owner]), ["unfinalize a orphan"]);
}

#[test]
fn foreground_owner_waits_for_blocking_dependents() {
    let owner = deleting(node("a"), FOREGROUND);
    // The dependent has no dependents of its own: plain background delete.
    assert_eq!(
        plan(vec![owner.clone(), owned_by("b", &[("a", true)])]),
        ["delete b Background unblock=[] confirm=[]"]
    );
    // Being deleted, it still blocks the owner.
    let mut going = owned_by("b", &[("a", true)]);
    going.deleting = true;
    assert!(plan(vec![owner.clone(), going]).is_empty());
    // Once gone, the owner's finalizer goes.
    assert_eq!(plan(vec![owner]), ["unfinalize a foregroundDeletion"]);
}

#[test]
fn non_blocking_dependents_do_not_hold_a_foreground_owner() {
    let owner = deleting(node("a"), FOREGROUND);
    let mut going = owned_by("b", &[("a", false)]);
    going.deleting = true;
    assert_eq!(
        plan(vec![owner, going]),
        ["unfinalize a foregroundDeletion"]
    );
}

#[test]
fn dependent_with_its_own_dependents_goes_in_the_foreground_unblocking_its_owner() {
    let owner = deleting(node("a"), FOREGROUND);
    assert_eq!(
        plan(vec![
            owner,
            owned_by("b", &[("a", true)]),
            owned_by("c", &[("b", true)])
        ]),
        ["delete b Foreground unblock=[\"a\"] confirm=[]"]
    );
}

#[test]
fn multiple_owners_one_alive_keeps_the_dependent_without_the_dead_ones() {
    let deleted_fg = deleting(node("a"), FOREGROUND);
    assert_eq!(
        plan(vec![
            deleted_fg,
            node("z"),
            owned_by("b", &[("a", true), ("z", false), ("gone", false)])
        ]),
        ["unown b [\"a\", \"gone\"]"]
    );
}

#[test]
fn preset_finalizers_choose_the_dependents_propagation() {
    let mut b = owned_by("b", &[("a", false)]);
    b.finalizers = vec![ORPHAN.into()];
    assert_eq!(
        plan(vec![b]),
        ["delete b Orphan unblock=[] confirm=[\"a\"]"]
    );
}

/// Simulates the API server over a graph: deletes honour the same
/// finalizer semantics (foreground/orphan add a finalizer, the last
/// finalizer removed deletes) so cycles can be run to completion.
#[derive(Default)]
struct Cluster {
    nodes: Mutex<BTreeMap<String, Node>>,
    present_elsewhere: BTreeSet<String>,
    calls: Mutex<Vec<String>>,
}

impl Cluster {
    fn with(nodes: Vec<Node>) -> Cluster {
        Cluster {
            nodes: Mutex::new(nodes.into_iter().map(|n| (n.uid.clone(), n)).collect()),
            ..Cluster::default()
        }
    }

    fn graph(&self) -> Graph {
        Graph::new(self.nodes.lock().unwrap().values().cloned())
    }

    fn log(&self, s: String) {
        self.calls.lock().unwrap().push(s);
    }
}

#[async_trait]
impl GcApi for Cluster {
    async fn owner_absent(&self, _: &Node, owner: &OwnerReference) -> Result<bool, Error> {
        self.log(format!("get {}", owner.uid));
        Ok(!self.present_elsewhere.contains(&owner.uid)
            && !self.nodes.lock().unwrap().contains_key(&owner.uid))
    }
    async fn delete(&self, node: &Node, p: Propagation) -> Result<(), Error> {
        self.log(format!("delete {} {p:?}", node.uid));
        let mut nodes = self.nodes.lock().unwrap();
        match p {
            Propagation::Background => {
                nodes.remove(&node.uid);
            }
            Propagation::Foreground | Propagation::Orphan => {
                let f = if p == Propagation::Orphan {
                    ORPHAN
                } else {
                    FOREGROUND
                };
                if let Some(n) = nodes.get_mut(&node.uid) {
                    n.deleting = true;
                    n.finalizers.push(f.into());
                }
            }
        }
        Ok(())
    }
    async fn set_owners(&self, node: &Node, owners: Vec<OwnerReference>) -> Result<(), Error> {
        self.log(format!("owners {}", node.uid));
        if let Some(n) = self.nodes.lock().unwrap().get_mut(&node.uid) {
            n.owners = owners;
        }
        Ok(())
    }
    async fn set_finalizers(&self, node: &Node, finalizers: Vec<String>) -> Result<(), Error> {
        self.log(format!("finalizers {} {finalizers:?}", node.uid));
        let mut nodes = self.nodes.lock().unwrap();
        if finalizers.is_empty() && node.deleting {
            nodes.remove(&node.uid);
        } else if let Some(n) = nodes.get_mut(&node.uid) {
            n.finalizers = finalizers;
        }
        Ok(())
    }
}

/// Sweep until nothing changes (bounded, so a livelock fails the test).
async fn settle(c: &Cluster) {
    for _ in 0..20 {
        let plan = reconcile(&c.graph());
        if plan.is_empty() {
            return;
        }
        assert_eq!(execute(c, plan).await, 0);
    }
    panic!("no fixed point: {:?}", c.calls.lock().unwrap());
}

#[tokio::test]
async fn dependency_cycle_deleted_in_the_foreground_is_fully_collected() {
    // a owned by c, b owned by a, c owned by b, all blocking; a deleted
    // with foreground propagation.
    let c = Cluster::with(vec![
        deleting(owned_by("a", &[("c", true)]), FOREGROUND),
        owned_by("b", &[("a", true)]),
        owned_by("c", &[("b", true)]),
    ]);
    settle(&c).await;
    assert!(
        c.nodes.lock().unwrap().is_empty(),
        "{:?}",
        c.calls.lock().unwrap()
    );
}

#[tokio::test]
async fn owner_found_by_a_live_read_saves_the_dependent() {
    let mut c = Cluster::with(vec![owned_by("b", &[("a", false)])]);
    c.present_elsewhere.insert("a".into());
    assert_eq!(execute(&c, reconcile(&c.graph())).await, 0);
    assert_eq!(*c.calls.lock().unwrap(), ["get a"]);
    assert!(c.nodes.lock().unwrap().contains_key("b"));
}

#[tokio::test]
async fn orphan_deletion_keeps_dependents_and_releases_the_owner() {
    let c = Cluster::with(vec![
        deleting(node("a"), ORPHAN),
        owned_by("b", &[("a", true)]),
        owned_by("c", &[("a", false)]),
    ]);
    settle(&c).await;
    let nodes = c.nodes.lock().unwrap();
    assert_eq!(nodes.keys().collect::<Vec<_>>(), ["b", "c"]);
    assert!(nodes.values().all(|n| n.owners.is_empty()));
}

#[tokio::test]
async fn background_chain_is_collected_level_by_level() {
    let c = Cluster::with(vec![
        owned_by("rs", &[("deploy", true)]),
        owned_by("pod1", &[("rs", true)]),
        owned_by("pod2", &[("rs", true)]),
    ]);
    settle(&c).await;
    assert!(c.nodes.lock().unwrap().is_empty());
}

/// Apply one change to `g` the way the watch loop does and check that
/// every decision the change brought about is about a touched object.
fn changed(g: &mut Graph, change: impl FnOnce(&mut Graph) -> Vec<String>) -> Vec<String> {
    let before = summary(&reconcile(g));
    let touched = change(g);
    let after = summary(&reconcile(g));
    let some = summary(&reconcile_some(g, touched.iter().map(String::as_str)));
    for a in after.iter().filter(|a| !before.contains(a)) {
        assert!(some.contains(a), "{a} missed; touched {touched:?}");
    }
    some
}

#[test]
fn incremental_passes_see_what_each_change_brings_about() {
    let mut g = Graph::default();
    let rs = owned_by("rs", &[("deploy", true)]);
    // A dependent whose owner is not known yet, then the owner appears.
    assert_eq!(
        changed(&mut g, |g| g.upsert(rs.clone())),
        ["delete rs Background unblock=[] confirm=[\"deploy\"]"]
    );
    assert!(changed(&mut g, |g| g.upsert(node("deploy"))).is_empty());
    for p in ["p1", "p2"] {
        assert!(changed(&mut g, |g| g.upsert(owned_by(p, &[("rs", true)]))).is_empty());
    }
    // A status write: nothing a decision reads, nothing touched, but the
    // guarded writes get the new resourceVersion.
    let mut newer = owned_by("p1", &[("rs", true)]);
    newer.resource_version = Some("2".into());
    assert!(g.upsert(newer).is_empty());
    assert_eq!(g.get("p1").unwrap().resource_version.as_deref(), Some("2"));
    // The ReplicaSet is deleted in the foreground: it waits for its pods,
    // which go.
    assert_eq!(
        changed(&mut g, |g| g.upsert(deleting(
            owned_by("rs", &[("deploy", true)]),
            FOREGROUND
        ))),
        [
            "delete p1 Background unblock=[] confirm=[]",
            "delete p2 Background unblock=[] confirm=[]"
        ]
    );
    assert!(changed(&mut g, |g| g.remove("p1")).is_empty());
    // The last blocking pod gone: the owner's finalizer can go.
    assert_eq!(
        changed(&mut g, |g| g.remove("p2")),
        ["unfinalize rs foregroundDeletion"]
    );
    // The Deployment removed: nothing depends on it any more.
    assert!(changed(&mut g, |g| g.remove("rs")).is_empty());
    assert!(changed(&mut g, |g| g.remove("deploy")).is_empty());
    assert!(g.is_empty());
}

#[test]
fn incremental_passes_follow_orphaning_and_owner_removal() {
    let mut g = Graph::new(vec![
        node("a"),
        owned_by("b", &[("a", true)]),
        owned_by("c", &[("a", false), ("x", false)]),
        node("x"),
    ]);
    assert_eq!(
        changed(&mut g, |g| g.upsert(deleting(node("a"), ORPHAN))),
        ["unown b [\"a\"]", "unown c [\"a\"]"]
    );
    // b's release landed; the orphaning owner still waits for c's.
    assert_eq!(
        changed(&mut g, |g| g.upsert(node("b"))),
        ["unown c [\"a\"]"]
    );
    // x goes: c drops it (a, orphaning, still owns c).
    let some = changed(&mut g, |g| g.remove("x"));
    assert!(some.iter().any(|a| a.starts_with("unown c")), "{some:?}");
}
