//! The request parameters of the REST operations.
//!
//! Upstream counterpart: the parameters kube-apiserver's endpoint installer
//! (k8s.io/apiserver/pkg/endpoints/installer.go) derives from `ListOptions`,
//! `CreateOptions`, `PatchOptions`, `DeleteOptions` and friends. kubectl
//! looks for `fieldValidation` on a kind's PATCH operation to learn whether
//! the server validates fields itself, so that name has to be exact; the
//! descriptions are ours.

/// Where a parameter goes in the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum In {
    Path,
    Query,
}

/// The JSON type of a parameter's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Type {
    String,
    Integer,
    Boolean,
}

impl Type {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Type::String => "string",
            Type::Integer => "integer",
            Type::Boolean => "boolean",
        }
    }
}

#[derive(Debug)]
pub(crate) struct Param {
    pub name: &'static str,
    pub location: In,
    pub ty: Type,
    pub description: &'static str,
    /// Upstream marks every query parameter `uniqueItems: true`; kept so the
    /// documents read the same.
    pub unique_items: bool,
}

const fn query(name: &'static str, ty: Type, description: &'static str) -> Param {
    Param {
        name,
        location: In::Query,
        ty,
        description,
        unique_items: true,
    }
}

const fn path(name: &'static str, description: &'static str) -> Param {
    Param {
        name,
        location: In::Path,
        ty: Type::String,
        description,
        unique_items: true,
    }
}

pub(crate) static NAME: Param = path("name", "name of the object");
pub(crate) static NAMESPACE: Param = path(
    "namespace",
    "object name and auth scope, such as for teams and projects",
);
pub(crate) static PRETTY: Param = query(
    "pretty",
    Type::String,
    "If 'true', then the output is pretty printed.",
);

static ALLOW_WATCH_BOOKMARKS: Param = query(
    "allowWatchBookmarks",
    Type::Boolean,
    "Ask for BOOKMARK watch events, which carry only a resourceVersion. Servers may ignore it; ignored outside watch.",
);
static CONTINUE: Param = query(
    "continue",
    Type::String,
    "The continue token of a previous list response whose limit cut it short; fetches the next chunk.",
);
static FIELD_SELECTOR: Param = query(
    "fieldSelector",
    Type::String,
    "Restrict the returned objects by their fields. Defaults to everything.",
);
static LABEL_SELECTOR: Param = query(
    "labelSelector",
    Type::String,
    "Restrict the returned objects by their labels. Defaults to everything.",
);
static LIMIT: Param = query(
    "limit",
    Type::Integer,
    "The most items a list call returns; when more exist, the list metadata carries a continue token.",
);
static RESOURCE_VERSION: Param = query(
    "resourceVersion",
    Type::String,
    "Which resourceVersion the request must be served at (or start watching from). Defaults to the latest.",
);
static RESOURCE_VERSION_MATCH: Param = query(
    "resourceVersionMatch",
    Type::String,
    "How resourceVersion applies to a list call: Exact or NotOlderThan.",
);
static SEND_INITIAL_EVENTS: Param = query(
    "sendInitialEvents",
    Type::Boolean,
    "With watch=true, start the stream with synthetic ADDED events for the current state, then a bookmark.",
);
static TIMEOUT_SECONDS: Param = query(
    "timeoutSeconds",
    Type::Integer,
    "How long a list or watch call may run, regardless of activity.",
);
static WATCH: Param = query(
    "watch",
    Type::Boolean,
    "Stream add, update and remove notifications instead of returning a list.",
);
static DRY_RUN: Param = query(
    "dryRun",
    Type::String,
    "When present (only value: All), run every stage of the request but do not persist the result.",
);
static FIELD_MANAGER: Param = query(
    "fieldManager",
    Type::String,
    "The name of the actor making the change, recorded in managedFields.",
);
pub(crate) static FIELD_VALIDATION: Param = query(
    "fieldValidation",
    Type::String,
    "How to treat unknown or duplicate fields in the body: Ignore, Warn (the default) or Strict.",
);
static FORCE: Param = query(
    "force",
    Type::Boolean,
    "For apply patches only: take ownership of fields other managers own instead of failing on conflicts.",
);
static GRACE_PERIOD_SECONDS: Param = query(
    "gracePeriodSeconds",
    Type::Integer,
    "Seconds before the object is deleted; zero means immediately.",
);
static ORPHAN_DEPENDENTS: Param = query(
    "orphanDependents",
    Type::Boolean,
    "Deprecated: use propagationPolicy. Whether dependents are orphaned instead of garbage collected.",
);
static PROPAGATION_POLICY: Param = query(
    "propagationPolicy",
    Type::String,
    "How dependents are garbage collected: Orphan, Background or Foreground.",
);
static IGNORE_STORE_READ_ERROR: Param = query(
    "ignoreStoreReadErrorWithClusterBreakingPotential",
    Type::Boolean,
    "Delete an object that cannot be read from storage (corrupt). Dangerous; off by default.",
);

/// Parameters of list and watch calls.
pub(crate) static LIST: &[&Param] = &[
    &ALLOW_WATCH_BOOKMARKS,
    &CONTINUE,
    &FIELD_SELECTOR,
    &LABEL_SELECTOR,
    &LIMIT,
    &RESOURCE_VERSION,
    &RESOURCE_VERSION_MATCH,
    &SEND_INITIAL_EVENTS,
    &TIMEOUT_SECONDS,
    &WATCH,
];

/// Parameters of create and replace.
pub(crate) static WRITE: &[&Param] = &[&DRY_RUN, &FIELD_MANAGER, &FIELD_VALIDATION];

/// Parameters of patch.
pub(crate) static PATCH: &[&Param] = &[&DRY_RUN, &FIELD_MANAGER, &FIELD_VALIDATION, &FORCE];

/// Parameters of delete.
pub(crate) static DELETE: &[&Param] = &[
    &DRY_RUN,
    &GRACE_PERIOD_SECONDS,
    &IGNORE_STORE_READ_ERROR,
    &ORPHAN_DEPENDENTS,
    &PROPAGATION_POLICY,
];

/// Parameters of deletecollection: which objects, and how to delete them.
pub(crate) static DELETE_COLLECTION: &[&Param] = &[
    &CONTINUE,
    &DRY_RUN,
    &FIELD_SELECTOR,
    &GRACE_PERIOD_SECONDS,
    &IGNORE_STORE_READ_ERROR,
    &LABEL_SELECTOR,
    &LIMIT,
    &ORPHAN_DEPENDENTS,
    &PROPAGATION_POLICY,
    &RESOURCE_VERSION,
    &RESOURCE_VERSION_MATCH,
    &SEND_INITIAL_EVENTS,
    &TIMEOUT_SECONDS,
];
