//! One Deployment sync: the ReplicaSets it owns, kept in memory as they
//! are written, and the steps of upstream's sync in the same order —
//! revision bookkeeping, the new ReplicaSet, scaling, the two strategies,
//! history cleanup, status.
//!
//! Upstream counterpart: `pkg/controller/deployment/sync.go`
//! (`getAllReplicaSetsAndSyncRevision`, `getNewReplicaSet`, `sync`,
//! `scaleReplicaSet`, `cleanupDeployment`, `isScalingEvent`),
//! `rolling.go` (`rolloutRolling`), `recreate.go` (`rolloutRecreate`) and
//! `progress.go`.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::Resource;
use serde_json::{json, Value};

use super::status::{self, FAILED_RS_CREATE, FOUND_NEW_RS, NEW_RS_CREATED, PROGRESSING};
use super::util::{self, rs_replicas};
use super::{rolling, Ctx, Error};
use crate::pods;

/// The state of one sync.
pub struct Run<'a> {
    pub ctx: &'a Ctx,
    pub d: Deployment,
    /// The ReplicaSets the Deployment controls, updated as they are written.
    pub rss: Vec<ReplicaSet>,
    pub now: Timestamp,
}

fn name_of(rs: &ReplicaSet) -> String {
    rs.metadata.name.clone().unwrap_or_default()
}

/// Status as a merge patch body: every field present, absent ones as null
/// so the patch clears them.
fn status_patch(s: &DeploymentStatus) -> Value {
    let mut v = serde_json::to_value(s).unwrap_or_else(|_| json!({}));
    for key in [
        "replicas",
        "updatedReplicas",
        "readyReplicas",
        "availableReplicas",
        "unavailableReplicas",
        "conditions",
        "collisionCount",
        "observedGeneration",
    ] {
        if v.get(key).is_none() {
            v[key] = Value::Null;
        }
    }
    json!({ "status": v })
}

impl Run<'_> {
    fn ns(&self) -> String {
        self.d.metadata.namespace.clone().unwrap_or_default()
    }

    fn name(&self) -> String {
        self.d.metadata.name.clone().unwrap_or_default()
    }

    fn rs_api(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.ctx.client.clone(), &self.ns())
    }

    fn d_api(&self) -> Api<Deployment> {
        Api::namespaced(self.ctx.client.clone(), &self.ns())
    }

    fn paused(&self) -> bool {
        self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false)
    }

    pub fn event(&self, warning: bool, reason: &str, note: String) {
        self.ctx
            .recorder
            .publish(&self.d.object_ref(&()), warning, reason, note);
    }

    /// (new, old) ReplicaSet indexes; creates the new one if asked and
    /// missing; brings revisions up to date (upstream
    /// `getAllReplicaSetsAndSyncRevision`).
    pub async fn sets(&mut self, create: bool) -> Result<(Option<usize>, Vec<usize>), Error> {
        let found = util::find_new(&self.d, &self.rss);
        let olds: Vec<usize> = (0..self.rss.len()).filter(|i| Some(*i) != found).collect();
        let old_refs: Vec<&ReplicaSet> = olds.iter().map(|i| &self.rss[*i]).collect();
        let new_revision = util::max_revision(&old_refs) + 1;
        let new = match found {
            Some(i) => {
                self.sync_existing_new(i, new_revision).await?;
                Some(i)
            }
            None if create => self.create_new(new_revision).await?,
            None => None,
        };
        let olds = (0..self.rss.len()).filter(|i| Some(*i) != new).collect();
        Ok((new, olds))
    }

    async fn sync_existing_new(&mut self, i: usize, new_revision: i64) -> Result<(), Error> {
        let mut rs = self.rss[i].clone();
        let changed = util::set_new_rs_annotations(&self.d, &mut rs, new_revision, true);
        let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
        let min_ready_changed = rs.spec.as_ref().and_then(|s| s.min_ready_seconds) != min_ready;
        if changed || min_ready_changed {
            let body = json!({
                "metadata": {
                    "annotations": rs.metadata.annotations,
                    "resourceVersion": rs.metadata.resource_version,
                },
                "spec": { "minReadySeconds": min_ready },
            });
            self.patch_rs(i, body).await?;
        }
        let revision = util::annotation(&self.rss[i].metadata, util::REVISION)
            .unwrap_or_default()
            .to_string();
        self.set_deployment_revision(&revision).await?;
        let mut st = self.d.status.clone().unwrap_or_default();
        if status::condition(&st, PROGRESSING).is_none()
            && status::progress_deadline(&self.d).is_some()
        {
            let msg = format!("Found new replica set \"{}\"", name_of(&self.rss[i]));
            status::set_condition(
                &mut st,
                status::new_condition(PROGRESSING, "True", FOUND_NEW_RS, msg, self.now),
            );
            self.write_status(st).await?;
        }
        Ok(())
    }

    /// Put the revision annotation on the Deployment (kubectl rollout
    /// history and undo read it).
    async fn set_deployment_revision(&mut self, revision: &str) -> Result<(), Error> {
        if revision.is_empty()
            || util::annotation(&self.d.metadata, util::REVISION) == Some(revision)
        {
            return Ok(());
        }
        let body = json!({ "metadata": { "annotations": { util::REVISION: revision } } });
        let d = self
            .d_api()
            .patch(&self.name(), &PatchParams::default(), &Patch::Merge(body))
            .await
            .map_err(|e| Error::Write(self.name(), e))?;
        self.d.metadata = d.metadata;
        Ok(())
    }

    async fn create_new(&mut self, new_revision: i64) -> Result<Option<usize>, Error> {
        let spec = self.d.spec.clone().unwrap_or_default();
        let collision = self.d.status.as_ref().and_then(|s| s.collision_count);
        let hash = pods::template_hash(&spec.template, collision);
        let mut template: PodTemplateSpec = spec.template.clone();
        let meta = template.metadata.get_or_insert_with(ObjectMeta::default);
        let labels = util::with_hash(meta.labels.as_ref(), &hash);
        meta.labels = Some(labels.clone());
        let mut selector: LabelSelector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(pods::POD_TEMPLATE_HASH.into(), hash.clone());
        let rs_name = format!("{}-{}", self.name(), hash);
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(rs_name.clone()),
                namespace: Some(self.ns()),
                labels: Some(labels),
                owner_references: Some(vec![pods::controller_ref(
                    "apps/v1",
                    "Deployment",
                    &self.d.metadata,
                )]),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let replicas = {
            let all: Vec<&ReplicaSet> = self.rss.iter().chain([&rs]).collect();
            rolling::new_rs_replicas(&self.d, &all, &rs)
        };
        rs.spec.as_mut().expect("spec set above").replicas = Some(replicas);
        util::set_new_rs_annotations(&self.d, &mut rs, new_revision, false);
        let created = match self.rs_api().create(&PostParams::default(), &rs).await {
            Ok(created) => {
                if replicas > 0 {
                    self.event(
                        false,
                        "ScalingReplicaSet",
                        format!("Scaled up replica set {rs_name} from 0 to {replicas}"),
                    );
                }
                created
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                return self.on_name_taken(&rs_name).await;
            }
            Err(e) => {
                if status::progress_deadline(&self.d).is_some() {
                    let msg = format!("Failed to create new replica set \"{rs_name}\": {e}");
                    self.event(true, FAILED_RS_CREATE, msg.clone());
                    let mut st = self.d.status.clone().unwrap_or_default();
                    status::set_condition(
                        &mut st,
                        status::new_condition(
                            PROGRESSING,
                            "False",
                            FAILED_RS_CREATE,
                            msg,
                            self.now,
                        ),
                    );
                    self.write_status(st).await?;
                }
                return Err(Error::Write(rs_name, e));
            }
        };
        self.rss.push(created);
        let i = self.rss.len() - 1;
        self.set_deployment_revision(&new_revision.to_string())
            .await?;
        if status::progress_deadline(&self.d).is_some() {
            let mut st = self.d.status.clone().unwrap_or_default();
            let msg = format!("Created new replica set \"{rs_name}\"");
            status::set_condition(
                &mut st,
                status::new_condition(PROGRESSING, "True", NEW_RS_CREATED, msg, self.now),
            );
            self.write_status(st).await?;
        }
        Ok(Some(i))
    }

    /// The name is taken: either our own ReplicaSet the cache has not
    /// shown yet, or a hash collision, which bumps collisionCount so the
    /// next try picks another name.
    async fn on_name_taken(&mut self, rs_name: &str) -> Result<Option<usize>, Error> {
        let existing = self
            .rs_api()
            .get(rs_name)
            .await
            .map_err(|e| Error::Read(rs_name.into(), e))?;
        let ours = pods::controller_of(&existing.metadata)
            .is_some_and(|r| Some(&r.uid) == self.d.metadata.uid.as_ref());
        let same = existing
            .spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .zip(self.d.spec.as_ref())
            .is_some_and(|(t, s)| util::equal_ignore_hash(t, &s.template));
        if ours && same {
            self.rss.push(existing);
            return Ok(Some(self.rss.len() - 1));
        }
        let mut st = self.d.status.clone().unwrap_or_default();
        st.collision_count = Some(st.collision_count.unwrap_or(0).saturating_add(1));
        self.write_status(st).await?;
        Err(Error::Collision(rs_name.into()))
    }

    async fn patch_rs(&mut self, i: usize, body: Value) -> Result<(), Error> {
        let name = name_of(&self.rss[i]);
        let rs = self
            .rs_api()
            .patch(&name, &PatchParams::default(), &Patch::Merge(body))
            .await
            .map_err(|e| Error::Write(name, e))?;
        self.rss[i] = rs;
        Ok(())
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.rss
            .iter()
            .position(|rs| rs.metadata.name.as_deref() == Some(name))
    }

    /// Resize one ReplicaSet and record the replica annotations on it
    /// (upstream `scaleReplicaSet`). True when its size changed.
    pub async fn scale_rs(&mut self, i: usize, to: i32) -> Result<bool, Error> {
        let from = rs_replicas(&self.rss[i]);
        let desired = util::replicas(&self.d);
        let max = desired + util::max_surge(&self.d);
        let mut probe = self.rss[i].clone();
        let annotations_changed = util::set_replicas_annotations(&mut probe, desired, max);
        if from == to && !annotations_changed {
            return Ok(false);
        }
        let body = json!({
            "metadata": {
                "annotations": { util::DESIRED_REPLICAS: desired.to_string(), util::MAX_REPLICAS: max.to_string() },
                "resourceVersion": self.rss[i].metadata.resource_version,
            },
            "spec": { "replicas": to },
        });
        self.patch_rs(i, body).await?;
        if from != to {
            let op = if to > from { "up" } else { "down" };
            let msg = format!(
                "Scaled {op} replica set {} from {from} to {to}",
                name_of(&self.rss[i])
            );
            self.event(false, "ScalingReplicaSet", msg);
        }
        Ok(from != to)
    }

    async fn apply(&mut self, steps: Vec<rolling::Step>) -> Result<bool, Error> {
        let mut any = false;
        for (name, to) in steps {
            if let Some(i) = self.index_of(&name) {
                any |= self.scale_rs(i, to).await?;
            }
        }
        Ok(any)
    }

    pub async fn write_status(&mut self, st: DeploymentStatus) -> Result<(), Error> {
        let d = self
            .d_api()
            .patch_status(
                &self.name(),
                &PatchParams::default(),
                &Patch::Merge(status_patch(&st)),
            )
            .await
            .map_err(|e| Error::Write(self.name(), e))?;
        self.d.status = d.status;
        self.d.metadata.resource_version = d.metadata.resource_version;
        Ok(())
    }

    fn split(&self, new: Option<usize>) -> (Vec<&ReplicaSet>, Option<&ReplicaSet>) {
        let olds = (0..self.rss.len())
            .filter(|i| Some(*i) != new)
            .map(|i| &self.rss[i])
            .collect();
        (olds, new.map(|i| &self.rss[i]))
    }

    /// Write the status if it changed; when to look again for the deadline.
    async fn sync_rollout_status(&mut self, new: Option<usize>) -> Result<Action, Error> {
        let st = {
            let all: Vec<&ReplicaSet> = self.rss.iter().collect();
            status::rollout(&self.d, &all, new.map(|i| &self.rss[i]), self.now)
        };
        let requeue = status::recheck_after(&self.d, &st, self.now);
        if Some(&st) != self.d.status.as_ref() {
            self.write_status(st).await?;
        }
        Ok(match requeue {
            Some(after) => Action::requeue(after.unsigned_abs()),
            None => Action::await_change(),
        })
    }

    /// Status without rollout conditions (upstream `syncDeploymentStatus`).
    pub async fn sync_status(&mut self, new: Option<usize>) -> Result<Action, Error> {
        let st = {
            let all: Vec<&ReplicaSet> = self.rss.iter().collect();
            status::calculate(&self.d, &all, new.map(|i| &self.rss[i]), self.now)
        };
        if Some(&st) != self.d.status.as_ref() {
            self.write_status(st).await?;
        }
        Ok(Action::await_change())
    }

    /// Record paused/resumed on Progressing.
    pub async fn check_paused(&mut self) -> Result<(), Error> {
        let mut st = self.d.status.clone().unwrap_or_default();
        if status::paused_conditions(&self.d, &mut st, self.now) {
            self.write_status(st).await?;
        }
        Ok(())
    }

    /// Some active ReplicaSet was sized for another spec.replicas.
    pub async fn is_scaling_event(&mut self) -> Result<bool, Error> {
        let (new, olds) = self.sets(false).await?;
        let desired = util::replicas(&self.d);
        Ok(olds
            .into_iter()
            .chain(new)
            .map(|i| &self.rss[i])
            .filter(|rs| rs_replicas(rs) > 0)
            .any(|rs| util::desired_annotation(rs).is_some_and(|n| n != desired)))
    }

    /// Resize without rolling out (paused, or spec.replicas changed).
    pub async fn sync_scale(&mut self) -> Result<Action, Error> {
        let (new, _) = self.sets(false).await?;
        let steps = {
            let (olds, new_rs) = self.split(new);
            rolling::scale(&self.d, new_rs, &olds)
        };
        self.apply(steps).await?;
        if self.paused() {
            self.cleanup(new).await?;
        }
        self.sync_status(new).await
    }

    pub async fn rolling(&mut self) -> Result<Action, Error> {
        let (new, _) = self.sets(true).await?;
        let Some(n) = new else {
            return self.sync_rollout_status(new).await;
        };
        let step = {
            let all: Vec<&ReplicaSet> = self.rss.iter().collect();
            rolling::reconcile_new(&self.d, &all, &self.rss[n])
        };
        if self.apply(step.into_iter().collect()).await? {
            return self.sync_rollout_status(new).await;
        }
        let steps = {
            let (olds, new_rs) = self.split(new);
            let active: Vec<&ReplicaSet> =
                olds.into_iter().filter(|rs| rs_replicas(rs) > 0).collect();
            rolling::reconcile_old(&self.d, &active, new_rs.expect("new set exists"))
        };
        if self.apply(steps).await? {
            return self.sync_rollout_status(new).await;
        }
        let st = self.d.status.clone().unwrap_or_default();
        if status::complete(&self.d, &st) {
            self.cleanup(new).await?;
        }
        self.sync_rollout_status(new).await
    }

    pub async fn recreate(&mut self) -> Result<Action, Error> {
        let (mut new, olds) = self.sets(false).await?;
        let active: Vec<usize> = olds
            .into_iter()
            .filter(|i| rs_replicas(&self.rss[*i]) > 0)
            .collect();
        let mut scaled = false;
        for i in active {
            scaled |= self.scale_rs(i, 0).await?;
        }
        if scaled || self.old_pods_running(new) {
            return self.sync_rollout_status(new).await;
        }
        if new.is_none() {
            new = self.sets(true).await?.0;
        }
        if let Some(n) = new {
            let desired = util::replicas(&self.d);
            self.scale_rs(n, desired).await?;
        }
        let st = self.d.status.clone().unwrap_or_default();
        if status::complete(&self.d, &st) {
            self.cleanup(new).await?;
        }
        self.sync_rollout_status(new).await
    }

    /// Old ReplicaSets still have pods that are not finished (upstream
    /// `oldPodsRunning`): Recreate waits for them to be gone.
    fn old_pods_running(&self, new: Option<usize>) -> bool {
        let olds: Vec<&ReplicaSet> = self.split(new).0;
        if olds.iter().any(|rs| util::rs_actual(rs) > 0) {
            return true;
        }
        let uids: Vec<&str> = olds
            .iter()
            .filter_map(|rs| rs.metadata.uid.as_deref())
            .collect();
        if uids.is_empty() {
            return false;
        }
        let ns = self.ns();
        self.ctx
            .pods
            .find(|p: &Pod| {
                p.metadata.namespace.as_deref() == Some(ns.as_str())
                    && pods::controller_of(&p.metadata)
                        .is_some_and(|r| uids.contains(&r.uid.as_str()))
                    && !pods::is_terminal(p)
            })
            .is_some()
    }

    /// Delete old ReplicaSets beyond revisionHistoryLimit, lowest revision
    /// first, only those fully scaled down and settled (upstream
    /// `cleanupDeployment`).
    async fn cleanup(&mut self, new: Option<usize>) -> Result<(), Error> {
        let Some(limit) = self.d.spec.as_ref().and_then(|s| s.revision_history_limit) else {
            return Ok(());
        };
        let mut olds: Vec<&ReplicaSet> = self
            .split(new)
            .0
            .into_iter()
            .filter(|rs| rs.metadata.deletion_timestamp.is_none())
            .collect();
        let excess = olds.len() as i64 - i64::from(limit);
        if excess <= 0 {
            return Ok(());
        }
        olds.sort_by(|a, b| util::by_revision(a, b));
        let doomed: Vec<String> = olds
            .iter()
            .take(excess as usize)
            .filter(|rs| {
                util::rs_actual(rs) == 0
                    && rs_replicas(rs) == 0
                    && rs.metadata.generation.unwrap_or(0)
                        <= rs
                            .status
                            .as_ref()
                            .and_then(|s| s.observed_generation)
                            .unwrap_or(0)
            })
            .map(|rs| name_of(rs))
            .collect();
        for name in doomed {
            // The set stays in `rss` (indexes must hold); at size zero it
            // counts for nothing in the status.
            match self.rs_api().delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(Error::Write(name, e)),
            }
        }
        Ok(())
    }
}

/// How long to back off after a failed sync.
pub const RETRY: Duration = Duration::from_secs(1);
