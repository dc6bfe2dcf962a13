//! ControllerRevisions: the template history of DaemonSets and
//! StatefulSets, which `kubectl rollout history|undo` read and write back.
//!
//! Upstream counterpart: `pkg/controller/history/controller_history.go`
//! and the callers in `daemon/update.go` (`constructHistory`,
//! `cleanupHistory`) and `statefulset/stateful_set_control.go`
//! (`getStatefulSetRevisions`, `truncateHistory`). A revision's data is a
//! strategic merge patch replacing the whole template, so kubectl's
//! rollback is "apply the data as a patch".

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use serde_json::{json, Value};

use super::common::{controller_of, revision_hash};

/// The label on revisions and pods naming the revision's hash.
pub const HASH_LABEL: &str = "controller-revision-hash";

/// The revision data for a template: `{"spec":{"template":{...,
/// "$patch":"replace"}}}`.
pub fn revision_data(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Some(map) = t.as_object_mut() {
        map.insert("$patch".into(), "replace".into());
    }
    json!({"spec": {"template": t}})
}

/// `<prefix>-<hash>`, the prefix cut so the name stays a valid name.
pub fn revision_name(prefix: &str, hash: &str) -> String {
    let keep = prefix.len().min(223);
    format!("{}-{hash}", &prefix[..keep])
}

/// The revisions of one owner, from the cache of all revisions.
pub fn owned_revisions(
    all: impl IntoIterator<Item = Arc<ControllerRevision>>,
    namespace: &str,
    owner_uid: &str,
) -> Vec<Arc<ControllerRevision>> {
    let mut out: Vec<_> = all
        .into_iter()
        .filter(|r| r.metadata.namespace.as_deref() == Some(namespace))
        .filter(|r| controller_of(&r.metadata).is_some_and(|o| o.uid == owner_uid))
        .collect();
    out.sort_by_key(|r| r.revision);
    out
}

/// What to do with an owner's history for its current template.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// The current revision's name and hash.
    pub current: String,
    pub hash: String,
    /// A revision to create for a template not seen before.
    pub create: Option<ControllerRevision>,
    /// An existing revision that becomes current again (a rollback):
    /// its name and new revision number.
    pub bump: Option<(String, i64)>,
    /// Old revisions beyond the history limit.
    pub delete: Vec<String>,
}

/// Plan the history for `template`. `live_hashes` are the revision
/// hashes live pods carry: their revisions are kept whatever the limit.
pub fn plan(
    owner_name: &str,
    owner_ref: &OwnerReference,
    template: &PodTemplateSpec,
    collision_count: Option<i32>,
    revisions: &[Arc<ControllerRevision>],
    history_limit: i32,
    live_hashes: &HashSet<String>,
) -> Plan {
    let data = revision_data(template);
    let hash = revision_hash(&data, collision_count);
    let max = revisions.iter().map(|r| r.revision).max().unwrap_or(0);
    let equal = revisions
        .iter()
        .filter(|r| r.data.as_ref().map(|d| &d.0) == Some(&data))
        .max_by_key(|r| r.revision);
    let mut out = Plan {
        hash: hash.clone(),
        ..Plan::default()
    };
    match equal {
        Some(r) => {
            let name = r.metadata.name.clone().unwrap_or_default();
            out.hash = r
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(HASH_LABEL).cloned())
                .unwrap_or(hash);
            if r.revision < max {
                out.bump = Some((name.clone(), max + 1));
            }
            out.current = name;
        }
        None => {
            let name = revision_name(owner_name, &hash);
            let mut labels: BTreeMap<String, String> = template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            labels.insert(HASH_LABEL.into(), hash.clone());
            out.create = Some(ControllerRevision {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    labels: Some(labels),
                    owner_references: Some(vec![owner_ref.clone()]),
                    ..ObjectMeta::default()
                },
                data: Some(RawExtension(data)),
                revision: max + 1,
            });
            out.current = name;
        }
    }
    let mut old: Vec<_> = revisions
        .iter()
        .filter(|r| r.metadata.name.as_deref() != Some(out.current.as_str()))
        .filter(|r| {
            let h = r.metadata.labels.as_ref().and_then(|l| l.get(HASH_LABEL));
            !h.is_some_and(|h| live_hashes.contains(h))
        })
        .collect();
    old.sort_by_key(|r| r.revision);
    let excess = old.len().saturating_sub(history_limit.max(0) as usize);
    out.delete = old
        .iter()
        .take(excess)
        .filter_map(|r| r.metadata.name.clone())
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("app".to_string(), "d".to_string())].into()),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some(image.into()),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
        }
    }

    fn owner() -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "DaemonSet".into(),
            name: "d".into(),
            uid: "u".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    fn created(p: &Plan) -> Arc<ControllerRevision> {
        Arc::new(p.create.clone().expect("a new revision"))
    }

    #[test]
    fn new_templates_get_the_next_revision_and_rollbacks_bump_the_old_one() {
        let none = HashSet::new();
        let p1 = plan("d", &owner(), &template("a"), None, &[], 10, &none);
        let r1 = created(&p1);
        assert_eq!(r1.revision, 1);
        assert_eq!(p1.current, format!("d-{}", p1.hash));
        assert_eq!(r1.metadata.labels.as_ref().unwrap()[HASH_LABEL], p1.hash);
        assert_eq!(
            r1.data.as_ref().unwrap().0["spec"]["template"]["$patch"],
            "replace"
        );
        let p2 = plan(
            "d",
            &owner(),
            &template("b"),
            None,
            std::slice::from_ref(&r1),
            10,
            &none,
        );
        let r2 = created(&p2);
        assert_eq!(r2.revision, 2);
        let back = plan("d", &owner(), &template("a"), None, &[r1, r2], 10, &none);
        assert_eq!(back.create, None);
        assert_eq!(back.bump, Some((p1.current.clone(), 3)));
        assert_eq!(back.hash, p1.hash);
    }

    #[test]
    fn history_beyond_the_limit_goes_unless_pods_use_it() {
        let none = HashSet::new();
        let mut revs = Vec::new();
        for image in ["a", "b", "c", "d"] {
            let p = plan("d", &owner(), &template(image), None, &revs, 10, &none);
            revs.push(created(&p));
        }
        let hash_a = revs[0].metadata.labels.as_ref().unwrap()[HASH_LABEL].clone();
        let p = plan("d", &owner(), &template("d"), None, &revs, 1, &none);
        assert_eq!(p.delete.len(), 2);
        assert!(p.delete.contains(revs[0].metadata.name.as_ref().unwrap()));
        let live: HashSet<String> = [hash_a].into();
        let p = plan("d", &owner(), &template("d"), None, &revs, 1, &live);
        assert_eq!(p.delete, vec![revs[1].metadata.name.clone().unwrap()]);
    }
}
