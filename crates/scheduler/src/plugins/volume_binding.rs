//! VolumeBinding: a pod's PersistentVolumeClaims decide where it may run.
//!
//! Upstream counterpart: `plugins/volumebinding` (PreFilter, Filter,
//! PreBind) and the PVC/PV/StorageClass informer events that requeue pods
//! it rejected. PreFilter rejects a pod whose claim is missing or being
//! deleted, or that has an unbound claim of an Immediate class (the PV
//! binder must bind it first). For each node, Filter checks that the
//! volumes of bound claims admit the node (their nodeAffinity), and that
//! each WaitForFirstConsumer claim either finds an Available volume that
//! satisfies it and admits the node, or has a class that provisions. On
//! binding, the scheduler names the chosen node in the claims' selected-node
//! annotation, which the PV binder honours ([`claims_to_annotate`]).
//!
//! Matching a volume to a claim is the PV binder's own rule
//! ([`rkube_controllers::persistentvolume::binder::satisfies`]), so the two
//! never disagree about which volumes fit.

use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{NodeSelectorTerm, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;
use rkube_controllers::persistentvolume::binder::{refers_to, satisfies};

use crate::framework::{CycleState, FilterPlugin, Status};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;
use crate::selectors::terms_match;
use crate::watched::{self, Table};

pub const NAME: &str = "VolumeBinding";
pub const UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";
pub const NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
pub const BIND_CONFLICT: &str = "node(s) didn't find available persistent volumes to bind";
pub const PV_NOT_EXIST: &str =
    "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";
/// The annotation naming the node a WaitForFirstConsumer claim's pod went to.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// The provisioner of classes whose volumes are made by hand.
const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

/// The claims, volumes and classes the scheduler sees; clones share them.
#[derive(Clone, Default)]
pub struct VolumeTables {
    pub claims: Table<Arc<PersistentVolumeClaim>>,
    pub volumes: Table<Arc<PersistentVolume>>,
    pub classes: Table<Arc<StorageClass>>,
}

impl std::fmt::Debug for VolumeTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VolumeTables")
    }
}

/// The claims a pending pod uses, with the tables to look them up in.
#[derive(Clone, Debug)]
pub struct PodClaims {
    pub names: Vec<String>,
    pub tables: VolumeTables,
}

/// The claim names of a pod's volumes: persistentVolumeClaim volumes, and
/// generic ephemeral volumes (`<pod>-<volume>`).
pub fn claim_names(pod: &k8s_openapi::api::core::v1::Pod) -> Vec<String> {
    let pod_name = pod.metadata.name.as_deref().unwrap_or("");
    let mut out: Vec<String> = Vec::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let name = match (&v.persistent_volume_claim, &v.ephemeral) {
            (Some(c), _) => c.claim_name.clone(),
            (None, Some(_)) => format!("{pod_name}-{}", v.name),
            _ => continue,
        };
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// A WaitForFirstConsumer claim still to be bound.
#[derive(Clone, Debug)]
pub struct Waiting {
    pub claim: String,
    /// Volumes that satisfy it, smallest first (the binder's preference).
    pub candidates: Vec<Arc<PersistentVolume>>,
    /// Its class makes volumes, so a node without a free one still fits.
    pub provisions: bool,
}

/// What PreFilter found for the pod.
#[derive(Clone, Debug, Default)]
pub struct State {
    /// Bound claims' volumes: their required node terms (None: no
    /// affinity), or Err when the volume does not exist.
    pub bound: Vec<Result<Option<Vec<NodeSelectorTerm>>, ()>>,
    pub waiting: Vec<Waiting>,
}

fn class_name(c: &PersistentVolumeClaim) -> &str {
    c.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

fn volume_name(c: &PersistentVolumeClaim) -> &str {
    c.spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or("")
}

fn required_terms(v: &PersistentVolume) -> Option<Vec<NodeSelectorTerm>> {
    v.spec
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required
        .as_ref()
        .map(|r| r.node_selector_terms.clone())
}

fn size(v: &PersistentVolume) -> i64 {
    v.spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .map_or(0, crate::resources::value)
}

/// Whether a volume is free for `c`: unclaimed and Available, or
/// pre-bound to it by a user.
fn free_for(v: &PersistentVolume, c: &PersistentVolumeClaim) -> bool {
    let claimed = v.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).is_some();
    let phase = v.status.as_ref().and_then(|s| s.phase.as_deref());
    let available = matches!(phase, None | Some("Available") | Some("Pending"));
    if claimed {
        refers_to(v, c) && satisfies(v, c)
    } else {
        available && satisfies(v, c)
    }
}

/// Pre-filter the pod's claims (upstream's PreFilter plus the claim part
/// of `GetPodVolumeClaims`). Ok(None) when the pod has nothing to check.
pub fn pre_filter(claims: &PodClaims, namespace: &str) -> Result<Option<State>, Status> {
    let t = &claims.tables;
    let mut state = State::default();
    let mut unbound_immediate = false;
    for name in &claims.names {
        let Some(c) = t.claims.with(namespace, name, |c| c.cloned()) else {
            return Err(Status::unresolvable(
                NAME,
                format!("persistentvolumeclaim \"{name}\" not found"),
            ));
        };
        if c.metadata.deletion_timestamp.is_some() {
            return Err(Status::unresolvable(
                NAME,
                format!("persistentvolumeclaim \"{name}\" is being deleted"),
            ));
        }
        let bound = volume_name(&c);
        if !bound.is_empty() {
            let terms = t.volumes.with("", bound, |v| v.map(|v| required_terms(v)));
            state.bound.push(terms.ok_or(()));
            continue;
        }
        let class = class_name(&c);
        let sc = (!class.is_empty())
            .then(|| t.classes.with("", class, |s| s.cloned()))
            .flatten();
        let delayed = sc
            .as_ref()
            .is_some_and(|s| s.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"));
        if !delayed {
            unbound_immediate = true;
            continue;
        }
        let mut candidates: Vec<Arc<PersistentVolume>> = t
            .volumes
            .with_all(|vs| vs.filter(|v| free_for(v, &c)).cloned().collect());
        // Pre-bound volumes first, then the smallest, as the binder picks.
        candidates.sort_by_key(|v| (!refers_to(v, &c), size(v)));
        state.waiting.push(Waiting {
            claim: name.clone(),
            candidates,
            provisions: sc.is_some_and(|s| s.provisioner != NO_PROVISIONER),
        });
    }
    if unbound_immediate {
        return Err(Status::unresolvable(NAME, UNBOUND_IMMEDIATE));
    }
    if state.bound.is_empty() && state.waiting.is_empty() {
        return Ok(None);
    }
    Ok(Some(state))
}

/// Filter one node against what PreFilter found.
pub fn filter_node(state: &State, node: &NodeInfo) -> Status {
    let mut reasons: Vec<String> = Vec::new();
    for b in &state.bound {
        match b {
            Err(()) => reasons.push(PV_NOT_EXIST.into()),
            Ok(Some(terms)) if !terms_match(terms, &node.name, &node.labels) => {
                reasons.push(NODE_CONFLICT.into())
            }
            Ok(_) => {}
        }
    }
    // Each waiting claim takes its own volume.
    let mut taken: HashSet<&str> = HashSet::new();
    let mut unmatched = false;
    for w in &state.waiting {
        let found = w.candidates.iter().find(|v| {
            let name = v.metadata.name.as_deref().unwrap_or("");
            !taken.contains(name)
                && required_terms(v).is_none_or(|t| terms_match(&t, &node.name, &node.labels))
        });
        match found {
            Some(v) => {
                taken.insert(v.metadata.name.as_deref().unwrap_or(""));
            }
            None if w.provisions => {}
            None => unmatched = true,
        }
    }
    if unmatched {
        reasons.push(BIND_CONFLICT.into());
    }
    reasons.dedup();
    if reasons.is_empty() {
        return Status::success();
    }
    Status {
        code: crate::framework::Code::UnschedulableAndUnresolvable,
        reasons,
        plugin: NAME,
    }
}

/// The pod's unbound WaitForFirstConsumer claims not yet naming `node`:
/// the scheduler annotates them with it when it binds the pod.
pub fn claims_to_annotate(pod: &PodInfo, node: &str) -> Vec<String> {
    let Some(claims) = &pod.volumes else {
        return Vec::new();
    };
    let t = &claims.tables;
    claims
        .names
        .iter()
        .filter(|name| {
            t.claims.with(&pod.namespace, name, |c| {
                c.is_some_and(|c| {
                    volume_name(c).is_empty()
                        && c.metadata
                            .annotations
                            .as_ref()
                            .and_then(|a| a.get(SELECTED_NODE))
                            .is_none_or(|n| n != node)
                        && t.classes.with("", class_name(c), |s| {
                            s.is_some_and(|s| {
                                s.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer")
                            })
                        })
                })
            })
        })
        .cloned()
        .collect()
}

/// Where a pod's claims stand once the scheduler has chosen `node`.
#[derive(Debug, PartialEq)]
pub enum ClaimsState {
    /// Every claim is bound to a volume.
    Bound,
    /// This claim is not bound yet; whether it names the node (always
    /// true unless WaitForFirstConsumer). A claim that named the node and
    /// stops naming it was given up by its provisioner: the pod must be
    /// scheduled again. (Right after the scheduler's own annotation, its
    /// watch may not show the node yet.)
    Waiting { claim: String, names_node: bool },
}

/// The pod's claims as the scheduler's watch sees them.
pub fn claims_state(pod: &PodInfo, node: &str) -> ClaimsState {
    let Some(claims) = &pod.volumes else {
        return ClaimsState::Bound;
    };
    let t = &claims.tables;
    for name in &claims.names {
        let state = t.claims.with(&pod.namespace, name, |c| {
            let Some(c) = c else {
                return Some(ClaimsState::Waiting {
                    claim: name.clone(),
                    names_node: true,
                });
            };
            if !volume_name(c).is_empty() {
                return None;
            }
            let late = t.classes.with("", class_name(c), |s| {
                s.is_some_and(|s| s.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"))
            });
            let selected = c
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(SELECTED_NODE))
                .map(String::as_str);
            Some(ClaimsState::Waiting {
                claim: name.clone(),
                names_node: !late || selected == Some(node),
            })
        });
        if let Some(s) = state {
            return s;
        }
    }
    ClaimsState::Bound
}

pub struct VolumeBinding;

impl FilterPlugin for VolumeBinding {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _cache: &crate::cache::Cache,
    ) -> Result<(), Status> {
        state.volumes = match &pod.volumes {
            Some(claims) => pre_filter(claims, &pod.namespace)?,
            None => None,
        };
        Ok(())
    }

    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Status {
        match &state.volumes {
            Some(s) => filter_node(s, node),
            None => Status::success(),
        }
    }
}

/// What the tables keep of an object: all of it but the fields every
/// write changes, so a write the plugin cannot see wakes no pod.
fn view<K: kube::Resource + Clone>(obj: &K) -> Option<Arc<K>> {
    let mut o = obj.clone();
    let meta = o.meta_mut();
    meta.managed_fields = None;
    meta.resource_version = None;
    Some(Arc::new(o))
}

/// Keep `tables` up to date; `listed` fires once all three are listed, and
/// `changed` whenever a table changes after that. Never returns.
pub async fn watch_volumes(
    client: kube::Client,
    tables: VolumeTables,
    listed: tokio::sync::oneshot::Sender<()>,
    changed: impl Fn() + Clone + Send,
) {
    let (c_tx, c_rx) = tokio::sync::oneshot::channel();
    let (v_tx, v_rx) = tokio::sync::oneshot::channel();
    let (s_tx, s_rx) = tokio::sync::oneshot::channel();
    let all_listed = async move {
        let _ = futures::future::join3(c_rx, v_rx, s_rx).await;
        let _ = listed.send(());
    };
    let (c1, c2, c3) = (changed.clone(), changed.clone(), changed);
    futures::join!(
        watched::keep(
            Api::<PersistentVolumeClaim>::all(client.clone()),
            tables.claims,
            view,
            c_tx,
            c1
        ),
        watched::keep(
            Api::<PersistentVolume>::all(client.clone()),
            tables.volumes,
            view,
            v_tx,
            c2
        ),
        watched::keep(
            Api::<StorageClass>::all(client),
            tables.classes,
            view,
            s_tx,
            c3
        ),
        all_listed,
    );
}

#[cfg(test)]
#[path = "volume_binding_tests.rs"]
mod tests;
