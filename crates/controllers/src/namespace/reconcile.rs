//! The pure half of namespace deletion: from what a terminating namespace
//! still holds, decide what to delete, which status conditions to show and
//! whether the namespace may be finalized.
//!
//! Upstream counterpart: `pkg/controller/namespace/deletion/
//! namespaced_resources_deleter.go` (`deleteAllContent` and the condition
//! updater in `status_condition_utils.go`). The condition types, reasons and
//! message shapes match upstream, because `kubectl describe namespace`
//! shows them to users stuck on a Terminating namespace.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::NamespaceCondition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The finalizer this controller owns in a namespace's `spec.finalizers`.
pub const FINALIZER: &str = "kubernetes";

pub const DISCOVERY_FAILURE: &str = "NamespaceDeletionDiscoveryFailure";
pub const CONTENT_FAILURE: &str = "NamespaceDeletionContentFailure";
pub const CONTENT_REMAINING: &str = "NamespaceContentRemaining";
pub const FINALIZERS_REMAINING: &str = "NamespaceFinalizersRemaining";
const OURS: [&str; 4] = [
    DISCOVERY_FAILURE,
    CONTENT_FAILURE,
    CONTENT_REMAINING,
    FINALIZERS_REMAINING,
];

/// One object still in the namespace.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Item {
    pub deleting: bool,
    pub finalizers: Vec<String>,
}

/// What one namespaced resource holds in the namespace.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Content {
    /// `plural.group`.
    pub resource: String,
    pub items: Vec<Item>,
    /// Listing or deleting this resource failed with this message.
    pub error: Option<String>,
}

/// Everything reconcile looks at for one namespace.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub deleting: bool,
    pub spec_finalizers: Vec<String>,
    pub failed_groups: BTreeMap<String, String>,
    pub contents: Vec<Content>,
    pub conditions: Vec<NamespaceCondition>,
    pub now: Option<Time>,
}

/// What to do about it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Indices into `Snapshot::contents` whose live objects to delete.
    pub delete: Vec<usize>,
    /// New status conditions, when they differ from the current ones.
    pub conditions: Option<Vec<NamespaceCondition>>,
    /// Remove [`FINALIZER`] from spec.finalizers: the namespace is empty.
    pub finalize: bool,
    /// Content remains: look again later.
    pub requeue: bool,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        *self == Plan::default()
    }
}

/// Decide what the namespace controller does for `snap`.
pub fn reconcile(snap: &Snapshot) -> Plan {
    let mut plan = Plan::default();
    if !snap.deleting || !snap.spec_finalizers.iter().any(|f| f == FINALIZER) {
        return plan;
    }
    plan.delete = snap
        .contents
        .iter()
        .enumerate()
        .filter(|(_, c)| c.items.iter().any(|i| !i.deleting))
        .map(|(i, _)| i)
        .collect();
    let wanted = conditions(snap);
    let (ours, others): (Vec<_>, Vec<_>) = snap
        .conditions
        .iter()
        .cloned()
        .partition(|c| OURS.contains(&c.type_.as_str()));
    if !same_conditions(&wanted, &ours) {
        plan.conditions = Some(others.into_iter().chain(wanted).collect());
    }
    let empty = snap.contents.iter().all(|c| c.items.is_empty());
    let failed = !snap.failed_groups.is_empty() || snap.contents.iter().any(|c| c.error.is_some());
    if empty && !failed {
        plan.finalize = true;
    } else {
        plan.requeue = true;
    }
    plan
}

/// The four deletion conditions for `snap`, keeping each condition's
/// lastTransitionTime when its status did not change.
pub fn conditions(snap: &Snapshot) -> Vec<NamespaceCondition> {
    let discovery = if snap.failed_groups.is_empty() {
        ok(
            DISCOVERY_FAILURE,
            "ResourcesDiscovered",
            "All resources successfully discovered".into(),
        )
    } else {
        let failures: Vec<String> = snap
            .failed_groups
            .iter()
            .map(|(g, e)| format!("{g}: {e}"))
            .collect();
        bad(
            DISCOVERY_FAILURE,
            "DiscoveryFailed",
            format!(
                "Discovery failed for some groups, {} failing: {}",
                failures.len(),
                failures.join(", ")
            ),
        )
    };
    let errors: Vec<String> = snap
        .contents
        .iter()
        .filter_map(|c| c.error.as_ref().map(|e| format!("{}: {e}", c.resource)))
        .collect();
    let content = if errors.is_empty() {
        ok(
            CONTENT_FAILURE,
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization".into(),
        )
    } else {
        bad(
            CONTENT_FAILURE,
            "ContentDeletionFailed",
            format!(
                "Failed to delete all resource types, {} remaining: {}",
                errors.len(),
                errors.join(", ")
            ),
        )
    };
    let mut remaining: Vec<String> = snap
        .contents
        .iter()
        .filter(|c| !c.items.is_empty())
        .map(|c| format!("{} has {} resource instances", c.resource, c.items.len()))
        .collect();
    remaining.sort();
    let remaining = if remaining.is_empty() {
        ok(
            CONTENT_REMAINING,
            "ContentRemoved",
            "All content successfully removed".into(),
        )
    } else {
        bad(
            CONTENT_REMAINING,
            "SomeResourcesRemain",
            format!("Some resources are remaining: {}", remaining.join(", ")),
        )
    };
    let mut by_finalizer: BTreeMap<&str, usize> = BTreeMap::new();
    for item in snap.contents.iter().flat_map(|c| &c.items) {
        for f in &item.finalizers {
            *by_finalizer.entry(f).or_default() += 1;
        }
    }
    let finalizers = if by_finalizer.is_empty() {
        ok(
            FINALIZERS_REMAINING,
            "ContentHasNoFinalizers",
            "All content-preserving finalizers finished".into(),
        )
    } else {
        let list: Vec<String> = by_finalizer
            .iter()
            .map(|(f, n)| format!("{f} in {n} resource instances"))
            .collect();
        bad(
            FINALIZERS_REMAINING,
            "SomeFinalizersRemain",
            format!(
                "Some content in the namespace has finalizers remaining: {}",
                list.join(", ")
            ),
        )
    };
    [discovery, content, remaining, finalizers]
        .into_iter()
        .map(|mut c| {
            let previous = snap.conditions.iter().find(|p| p.type_ == c.type_);
            c.last_transition_time = match previous {
                Some(p) if p.status == c.status => p.last_transition_time.clone(),
                _ => snap.now.clone(),
            };
            c
        })
        .collect()
}

fn ok(type_: &str, reason: &str, message: String) -> NamespaceCondition {
    condition(type_, "False", reason, message)
}

fn bad(type_: &str, reason: &str, message: String) -> NamespaceCondition {
    condition(type_, "True", reason, message)
}

fn condition(type_: &str, status: &str, reason: &str, message: String) -> NamespaceCondition {
    NamespaceCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: None,
    }
}

/// Equal apart from timestamps, so an unchanged state writes nothing.
fn same_conditions(a: &[NamespaceCondition], b: &[NamespaceCondition]) -> bool {
    let key = |c: &NamespaceCondition| {
        (
            c.type_.clone(),
            c.status.clone(),
            c.reason.clone(),
            c.message.clone(),
        )
    };
    let mut a: Vec<_> = a.iter().map(key).collect();
    let mut b: Vec<_> = b.iter().map(key).collect();
    a.sort();
    b.sort();
    a == b
}
