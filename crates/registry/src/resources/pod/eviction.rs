//! pods/eviction: delete a pod only if its PodDisruptionBudget allows it
//! (what `kubectl drain` calls).
//!
//! Upstream counterpart: `pkg/registry/core/pod/storage/eviction.go`.
//! Pods that already stopped counting (terminal, pending, being deleted)
//! are deleted at once. Otherwise the one PDB selecting the pod must
//! allow a disruption: its `status.disruptionsAllowed` is decremented and
//! the pod recorded in `status.disruptedPods` (a compare-and-swap on the
//! PDB, so two evictions cannot both spend the last disruption), then the
//! pod gets the DisruptionTarget condition and is deleted with the
//! eviction's delete options. The PDB's status itself is the disruption
//! controller's work.

use rkube_machinery::time::{format_time, Timestamp};
use rkube_machinery::{labels, GroupResource, Status, StatusCause, StatusError};
use serde_json::{json, Map, Value};

use crate::resources::pod::binding::set_condition;
use crate::resources::util::{child, str_at};
use crate::{meta, DeleteOptions, ListOptions, ResourceStore, Result, Target};

/// Upstream's `MaxDisruptedPodSize`: evictions the disruption controller
/// has not confirmed yet, beyond which a PDB refuses more.
pub const MAX_DISRUPTED_PODS: usize = 2000;

/// The message of every 429 an eviction answers.
pub const VIOLATES_BUDGET: &str =
    "Cannot evict pod as it would violate the pod's disruption budget.";

/// The message of the failure when several PDBs select the pod.
pub const MANY_BUDGETS: &str =
    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.";

/// A pod that no longer counts toward any budget (upstream `canIgnorePDB`).
pub fn can_ignore_budget(pod: &Value) -> bool {
    matches!(
        str_at(pod, "/status/phase"),
        "Succeeded" | "Failed" | "Pending"
    ) || meta::deletion_timestamp(pod).is_some()
}

/// Whether the delete must be pinned to the pod's resourceVersion, so the
/// pod cannot turn healthy between the check and the delete.
fn should_enforce_resource_version(pod: &Value) -> bool {
    !matches!(str_at(pod, "/status/phase"), "Succeeded" | "Failed")
        && meta::deletion_timestamp(pod).is_none()
}

/// Upstream `IsPodReady`: the Ready condition is True.
pub fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| str_at(c, "/type") == "Ready" && str_at(c, "/status") == "True")
}

/// The PDBs among `pdbs` whose selector selects `pod`. An empty or
/// invalid selector selects nothing.
pub fn matching_budgets<'a>(pod: &Value, pdbs: &'a [Value]) -> Vec<&'a Value> {
    pdbs.iter()
        .filter(|pdb| meta::namespace(pdb) == meta::namespace(pod))
        .filter(
            |pdb| match labels::Selector::from_label_selector(pdb.pointer("/spec/selector")) {
                Ok(sel) => !sel.is_empty() && sel.matches_object(pod),
                Err(_) => false,
            },
        )
        .collect()
}

fn too_many_requests(retry_after: i32, cause: String) -> StatusError {
    let mut status = StatusError::too_many_requests(VIOLATES_BUDGET, retry_after).into_status();
    if let Some(details) = status.details.as_mut() {
        details.causes.push(StatusCause {
            cause_type: "DisruptionBudget".into(),
            message: cause,
            field: String::new(),
        });
    }
    status.into()
}

/// The 429 of a PDB the disruption controller has not caught up with.
fn still_processing(pdb_name: &str) -> StatusError {
    too_many_requests(
        10,
        format!("The disruption budget {pdb_name} is still being processed by the server."),
    )
}

fn i64_at(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// The PDB after spending one disruption on `pod_name` (upstream
/// `checkAndDecrement`), or why it cannot.
pub fn check_and_decrement(
    pdb: &Value,
    pod_name: &str,
    now: &Timestamp,
    dry_run: bool,
) -> Result<Value> {
    let name = meta::name(pdb);
    if i64_at(pdb, "/status/observedGeneration") < meta::generation(pdb) {
        return Err(still_processing(name));
    }
    let gr = GroupResource::new("policy", "poddisruptionbudget");
    let allowed = i64_at(pdb, "/status/disruptionsAllowed");
    if allowed < 0 {
        return Err(StatusError::forbidden(
            &gr,
            name,
            "pdb disruptions allowed is negative",
        ));
    }
    let disrupted = pdb
        .pointer("/status/disruptedPods")
        .and_then(Value::as_object)
        .map_or(0, Map::len);
    if disrupted > MAX_DISRUPTED_PODS {
        return Err(StatusError::forbidden(
            &gr,
            name,
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
        ));
    }
    if allowed == 0 {
        return Err(too_many_requests(
            0,
            format!(
                "The disruption budget {name} needs {} healthy pods and has {} currently",
                i64_at(pdb, "/status/desiredHealthy"),
                i64_at(pdb, "/status/currentHealthy")
            ),
        ));
    }
    let mut pdb = pdb.clone();
    let Some(map) = pdb.as_object_mut() else {
        return Ok(pdb);
    };
    let status = child(map, "status");
    status.insert("disruptionsAllowed".into(), (allowed - 1).into());
    if allowed - 1 == 0 {
        set_disruption_allowed(status, now);
    }
    if !dry_run {
        child(status, "disruptedPods").insert(pod_name.into(), format_time(now).into());
    }
    Ok(pdb)
}

/// The DisruptionAllowed condition, as upstream's
/// `UpdateDisruptionAllowedCondition` sets it through `SetStatusCondition`.
fn set_disruption_allowed(status: &mut Map<String, Value>, now: &Timestamp) {
    let allowed = status
        .get("disruptionsAllowed")
        .and_then(Value::as_i64)
        .unwrap_or(0)
        > 0;
    let (state, reason) = if allowed {
        ("True", "SufficientPods")
    } else {
        ("False", "InsufficientPods")
    };
    let observed = status.get("observedGeneration").cloned();
    let conditions = status
        .entry("conditions")
        .or_insert_with(|| Value::Array(Vec::new()));
    if !conditions.is_array() {
        *conditions = Value::Array(Vec::new());
    }
    let list = conditions.as_array_mut().expect("made an array");
    let at = list
        .iter()
        .position(|c| str_at(c, "/type") == "DisruptionAllowed");
    let mut cond = json!({"type": "DisruptionAllowed", "status": state, "reason": reason,
                          "message": "", "lastTransitionTime": format_time(now)});
    if let Some(g) = observed.filter(|g| g.as_i64().unwrap_or(0) != 0) {
        cond["observedGeneration"] = g;
    }
    match at {
        Some(i) => {
            if str_at(&list[i], "/status") == state {
                if let Some(t) = list[i].get("lastTransitionTime") {
                    cond["lastTransitionTime"] = t.clone();
                }
            }
            list[i] = cond;
        }
        None => list.push(cond),
    }
}

/// What an eviction needs: the pods, and the PDBs that guard them.
pub struct Evictor<'a> {
    pub pods: &'a ResourceStore,
    pub budgets: &'a ResourceStore,
}

const RETRIES: usize = 5;

impl Evictor<'_> {
    /// Evict pod `name`, deleting it with `opts` when its budget allows.
    pub async fn evict(&self, namespace: &str, name: &str, opts: &DeleteOptions) -> Result<()> {
        let pinned = opts.precondition_resource_version.is_some();
        let mut attempt = 0;
        // Pods past caring about budgets go directly; a conflict (the pod
        // changed under us) is retried unless the caller pinned a version.
        let pod = loop {
            attempt += 1;
            let pod = self.pods.get(Some(namespace), name, None).await?;
            if !can_ignore_budget(&pod) {
                break pod;
            }
            let mut direct = opts.clone();
            if should_enforce_resource_version(&pod) && !pinned {
                direct.precondition_resource_version = Some(meta::resource_version(&pod).into());
            }
            match self.mark_and_delete(namespace, name, &direct).await {
                Err(e) if e.reason() == "Conflict" && !pinned && attempt < RETRIES => continue,
                other => return other,
            }
        };

        let pdbs = self
            .budgets
            .list(Some(namespace), &ListOptions::default())
            .await?
            .items;
        let budgets = matching_budgets(&pod, &pdbs);
        let mut pin_to_pod = false;
        let mut budget_name = None;
        match budgets.as_slice() {
            [] => {}
            [pdb] => {
                let pdb_name = meta::name(pdb).to_string();
                if !is_ready(&pod) && self.unhealthy_may_go(pdb) {
                    // An unready pod guarded by a budget that lets it go
                    // does not spend a disruption.
                    pin_to_pod = true;
                } else {
                    self.spend_disruption(namespace, &pdb_name, name, opts.dry_run)
                        .await?;
                }
                budget_name = Some(pdb_name);
            }
            _ => return Err(Status::failure(500, "", MANY_BUDGETS).into()),
        }
        let mut delete = opts.clone();
        if pin_to_pod {
            delete.precondition_resource_version = Some(meta::resource_version(&pod).into());
        }
        match self.mark_and_delete(namespace, name, &delete).await {
            // The pod changed since it was judged unhealthy: let the
            // client retry rather than delete a pod that may be ready now.
            Err(e) if e.reason() == "Conflict" && pin_to_pod && !pinned => {
                Err(still_processing(budget_name.as_deref().unwrap_or_default()))
            }
            other => other,
        }
    }

    /// Whether an unready pod may go without spending a disruption
    /// (`unhealthyPodEvictionPolicy`).
    fn unhealthy_may_go(&self, pdb: &Value) -> bool {
        if str_at(pdb, "/spec/unhealthyPodEvictionPolicy") == "AlwaysAllow" {
            return true;
        }
        // IfHealthyBudget (the default): only while the guarded
        // application is not disrupted already.
        let desired = i64_at(pdb, "/status/desiredHealthy");
        i64_at(pdb, "/status/currentHealthy") >= desired && desired > 0
    }

    async fn spend_disruption(
        &self,
        namespace: &str,
        pdb_name: &str,
        pod_name: &str,
        dry_run: bool,
    ) -> Result<()> {
        let now = self.budgets.now();
        // `modify` retries on the latest PDB after a conflict, running the
        // check again: the last disruption is spent once.
        self.budgets
            .modify(
                Some(namespace),
                pdb_name,
                Target::Status,
                dry_run,
                |current| {
                    let mut pdb = check_and_decrement(current, pod_name, &now, dry_run)?;
                    meta::remove(&mut pdb, "resourceVersion");
                    Ok(pdb)
                },
            )
            .await?;
        Ok(())
    }

    /// Add the DisruptionTarget condition (unless dry-run), then delete.
    async fn mark_and_delete(
        &self,
        namespace: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<()> {
        let mut opts = opts.clone();
        if !opts.dry_run {
            let now = self.pods.now();
            let gr = GroupResource::new("", "Pod");
            let updated = self
                .pods
                .modify(Some(namespace), name, Target::Status, false, |current| {
                    check_preconditions(current, &opts, &gr)?;
                    let mut pod = current.clone();
                    if let Some(map) = pod.as_object_mut() {
                        let condition = json!({"type": "DisruptionTarget", "status": "True",
                            "reason": "EvictionByEvictionAPI", "message": "Eviction API: evicting"});
                        set_condition(child(map, "status"), condition, &now);
                    }
                    meta::remove(&mut pod, "resourceVersion");
                    Ok(pod)
                })
                .await?;
            // Our own write moved the version the caller pinned.
            if opts.precondition_resource_version.is_some() {
                opts.precondition_resource_version =
                    Some(meta::resource_version(&updated).to_string());
            }
        }
        self.pods.delete(Some(namespace), name, &opts).await?;
        Ok(())
    }
}

fn check_preconditions(pod: &Value, opts: &DeleteOptions, gr: &GroupResource) -> Result<()> {
    let name = meta::name(pod);
    if let Some(uid) = opts.precondition_uid.as_deref().filter(|u| !u.is_empty()) {
        if uid != meta::uid(pod) {
            return Err(StatusError::conflict(gr, name, format!(
                "the UID in the precondition ({uid}) does not match the UID in record ({}). The object might have been deleted and then recreated",
                meta::uid(pod)
            )));
        }
    }
    if let Some(rv) = opts
        .precondition_resource_version
        .as_deref()
        .filter(|r| !r.is_empty())
    {
        if rv != meta::resource_version(pod) {
            return Err(StatusError::conflict(gr, name, format!(
                "the ResourceVersion in the precondition ({rv}) does not match the ResourceVersion in record ({}). The object might have been modified",
                meta::resource_version(pod)
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "eviction_tests.rs"]
mod tests;
