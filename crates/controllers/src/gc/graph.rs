//! The pure half of garbage collection: a graph of ownerReferences and what
//! it calls for.
//!
//! Upstream counterpart: `pkg/controller/garbagecollector/graph.go` and the
//! decisions of `attemptToDeleteItem`, `processDeletingDependentsItem` and
//! `orphanDependents` in `garbagecollector.go`. Each object's owner
//! references are sorted into
//! - *solid*: the owner (same uid) exists and is not being deleted in the
//!   foreground;
//! - *waiting*: the owner is being deleted in the foreground
//!   (`foregroundDeletion` finalizer) and waits for its dependents;
//! - *dangling*: no object with that uid is known. The graph may lag
//!   behind the server, so the executor confirms with a live read before
//!   acting on a dangling owner.
//!
//! An object with a solid owner stays (references to other owners are
//! dropped); one whose owners are all gone is deleted; one whose owners
//! wait for it is deleted too — in the foreground when it has dependents
//! of its own, after clearing `blockOwnerDeletion` towards the waiting
//! owners so that ownership cycles cannot deadlock.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::discovery::ApiResource;

pub const ORPHAN: &str = "orphan";
pub const FOREGROUND: &str = "foregroundDeletion";

/// One object as the collector sees it: identity and metadata only.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub uid: String,
    /// Shared by every node of a resource: sweeps rebuild the graph, and
    /// cloning five strings per object made that most of a sweep's work.
    pub ar: Arc<ApiResource>,
    pub namespace: Option<String>,
    pub name: String,
    pub resource_version: Option<String>,
    pub owners: Vec<OwnerReference>,
    pub finalizers: Vec<String>,
    pub deleting: bool,
}

impl Node {
    pub fn has_finalizer(&self, f: &str) -> bool {
        self.finalizers.iter().any(|x| x == f)
    }

    /// `kind namespace/name`, for logs.
    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.ar.kind, self.name),
            None => format!("{} {}", self.ar.kind, self.name),
        }
    }
}

/// How a deletion propagates to the deleted object's own dependents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

/// One step the collector takes.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Delete `node` (preconditioned on its uid), first setting
    /// blockOwnerDeletion=false on its references to the `unblock` uids.
    /// `confirm_absent` owners must be confirmed gone by a live read first.
    Delete {
        node: Node,
        propagation: Propagation,
        unblock: Vec<String>,
        confirm_absent: Vec<OwnerReference>,
    },
    /// Drop `node`'s references to the `owners` uids (after confirming the
    /// `confirm_absent` ones are gone).
    RemoveOwners {
        node: Node,
        owners: Vec<String>,
        confirm_absent: Vec<OwnerReference>,
    },
    /// Remove `finalizer` from `node`: its work is done.
    RemoveFinalizer { node: Node, finalizer: &'static str },
}

/// All known objects, by uid, with the reverse (owner → dependents) edges.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    nodes: BTreeMap<String, Node>,
    dependents: BTreeMap<String, BTreeSet<String>>,
}

impl Graph {
    pub fn new(nodes: impl IntoIterator<Item = Node>) -> Graph {
        let mut g = Graph::default();
        for n in nodes {
            g.upsert(n);
        }
        g
    }

    /// Add or replace one object; returns the uids whose decision may
    /// have changed with it (upstream's `GraphBuilder.processGraphChanges`
    /// likewise queues the object, its owners and its dependents).
    pub fn upsert(&mut self, node: Node) -> Vec<String> {
        let uid = node.uid.clone();
        let mut touched = Vec::new();
        match self.nodes.get_mut(&uid) {
            Some(old)
                if old.owners == node.owners
                    && old.finalizers == node.finalizers
                    && old.deleting == node.deleting =>
            {
                // Nothing a decision reads changed (a status write): keep
                // the newest resourceVersion for the guarded writes only.
                *old = node;
                return touched;
            }
            Some(_) => {
                let old = self.nodes.remove(&uid).expect("present");
                self.unlink(&old);
                touched.extend(old.owners.iter().map(|o| o.uid.clone()));
            }
            None => {}
        }
        for o in &node.owners {
            self.dependents
                .entry(o.uid.clone())
                .or_default()
                .insert(uid.clone());
            touched.push(o.uid.clone());
        }
        touched.extend(self.dependents.get(&uid).into_iter().flatten().cloned());
        touched.push(uid.clone());
        self.nodes.insert(uid, node);
        touched
    }

    /// Forget one object; returns the uids whose decision may have changed
    /// (its owners and its dependents).
    pub fn remove(&mut self, uid: &str) -> Vec<String> {
        let Some(old) = self.nodes.remove(uid) else {
            return Vec::new();
        };
        self.unlink(&old);
        let mut touched: Vec<String> = old.owners.iter().map(|o| o.uid.clone()).collect();
        touched.extend(self.dependents.get(uid).into_iter().flatten().cloned());
        touched
    }

    fn unlink(&mut self, node: &Node) {
        for o in &node.owners {
            if let Some(set) = self.dependents.get_mut(&o.uid) {
                set.remove(&node.uid);
                if set.is_empty() {
                    self.dependents.remove(&o.uid);
                }
            }
        }
    }

    /// The uids of every object of one resource.
    pub fn uids_of(&self, group: &str, plural: &str) -> Vec<String> {
        self.nodes
            .values()
            .filter(|n| n.ar.group == group && n.ar.plural == plural)
            .map(|n| n.uid.clone())
            .collect()
    }

    pub fn get(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Objects whose ownerReferences name `uid`.
    pub fn dependents(&self, uid: &str) -> impl Iterator<Item = &Node> {
        self.dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|d| self.nodes.get(d))
    }

    /// Dependents whose reference to `uid` blocks the owner's deletion.
    fn blocking_dependents<'a>(&'a self, uid: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.dependents(uid).filter(move |d| {
            d.owners
                .iter()
                .any(|o| o.uid == uid && o.block_owner_deletion == Some(true))
        })
    }
}

/// Everything the graph calls for right now.
pub fn reconcile(g: &Graph) -> Vec<Action> {
    let mut plan = Vec::new();
    for node in g.nodes.values() {
        decide(g, node, &mut plan);
    }
    plan
}

/// What the graph calls for about these objects only (the ones a change
/// touched); unknown uids are skipped.
pub fn reconcile_some<'a>(g: &Graph, uids: impl IntoIterator<Item = &'a str>) -> Vec<Action> {
    let mut plan = Vec::new();
    let uids: BTreeSet<&str> = uids.into_iter().collect();
    for uid in uids {
        if let Some(node) = g.get(uid) {
            decide(g, node, &mut plan);
        }
    }
    plan
}

fn decide(g: &Graph, node: &Node, plan: &mut Vec<Action>) {
    if node.deleting {
        deleting(g, node, plan);
    } else if !node.owners.is_empty() {
        owned(g, node, plan);
    }
}

/// An object being deleted: finish the orphan or foreground work its
/// finalizers ask for.
fn deleting(g: &Graph, node: &Node, plan: &mut Vec<Action>) {
    if node.has_finalizer(ORPHAN) {
        let mut any = false;
        for d in g.dependents(&node.uid) {
            any = true;
            plan.push(Action::RemoveOwners {
                node: d.clone(),
                owners: vec![node.uid.clone()],
                confirm_absent: Vec::new(),
            });
        }
        if !any {
            plan.push(Action::RemoveFinalizer {
                node: node.clone(),
                finalizer: ORPHAN,
            });
        }
    }
    if node.has_finalizer(FOREGROUND) && g.blocking_dependents(&node.uid).next().is_none() {
        plan.push(Action::RemoveFinalizer {
            node: node.clone(),
            finalizer: FOREGROUND,
        });
    }
}

/// A live object with owners: keep it, detach it, or delete it.
fn owned(g: &Graph, node: &Node, plan: &mut Vec<Action>) {
    let mut solid = false;
    let mut waiting = Vec::new();
    let mut dangling = Vec::new();
    for r in &node.owners {
        match g.get(&r.uid) {
            None => dangling.push(r.clone()),
            Some(o) if o.deleting && o.has_finalizer(FOREGROUND) => waiting.push(r.uid.clone()),
            Some(_) => solid = true,
        }
    }
    if solid {
        if !waiting.is_empty() || !dangling.is_empty() {
            let mut owners = waiting;
            owners.extend(dangling.iter().map(|r| r.uid.clone()));
            plan.push(Action::RemoveOwners {
                node: node.clone(),
                owners,
                confirm_absent: dangling,
            });
        }
        return;
    }
    if !waiting.is_empty() && g.dependents(&node.uid).next().is_some() {
        plan.push(Action::Delete {
            node: node.clone(),
            propagation: Propagation::Foreground,
            unblock: waiting,
            confirm_absent: dangling,
        });
        return;
    }
    // Its own finalizers (set by whoever created it) say how it goes.
    let propagation = if node.has_finalizer(ORPHAN) {
        Propagation::Orphan
    } else if node.has_finalizer(FOREGROUND) {
        Propagation::Foreground
    } else {
        Propagation::Background
    };
    plan.push(Action::Delete {
        node: node.clone(),
        propagation,
        unblock: Vec::new(),
        confirm_absent: dangling,
    });
}
