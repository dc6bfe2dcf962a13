//! The static catalog of built-in resources: what kube-apiserver's discovery
//! documents (`/api/v1`, `/apis/<group>/<version>`) list for each resource.
//!
//! Upstream counterpart: the `APIResourceList`s kube-apiserver builds from its
//! registered storage (pkg/controlplane, pkg/registry/*/rest), the short names
//! and categories each REST storage declares, and the group priorities of the
//! aggregator (cmd/kube-apiserver/app/aggregator.go), which fix the order of
//! groups in `/apis`.
//!
//! Kind, plural and scope come from k8s-openapi's `Resource` constants (which
//! are generated from the upstream OpenAPI spec), so they cannot drift from the
//! types the server decodes; verbs, short names, categories and subresources
//! are written out here because they are server behaviour, not schema.

mod core;
mod groups;

use k8s_openapi::schemars::{JsonSchema, Schema, SchemaGenerator};
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// One resource as discovery lists it, plus the typed hooks the server needs.
#[derive(Clone, Copy)]
pub struct ResourceInfo {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The URL path segment, e.g. `pods`.
    pub plural: &'static str,
    /// Lower-cased kind, as discovery's `singularName`.
    pub singular: &'static str,
    pub namespaced: bool,
    pub verbs: &'static [&'static str],
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub subresources: &'static [Subresource],
    /// The OpenAPI definition name, e.g. `io.k8s.api.core.v1.Pod`.
    pub type_name: &'static str,
    decode: fn(&Value) -> Result<Value, serde_json::Error>,
    empty: fn() -> Value,
    schema: fn(&mut SchemaGenerator) -> Schema,
}

impl std::fmt::Debug for ResourceInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceInfo")
            .field("group", &self.group)
            .field("version", &self.version)
            .field("kind", &self.kind)
            .field("plural", &self.plural)
            .finish_non_exhaustive()
    }
}

/// A subresource (`pods/status`, `deployments/scale`, ...). `group`, `version`
/// and `kind` name the object the subresource serves when it differs from the
/// parent's (e.g. `autoscaling/v1 Scale`); `None` means "same as the parent".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subresource {
    pub name: &'static str,
    pub group: Option<&'static str>,
    pub version: Option<&'static str>,
    pub kind: Option<&'static str>,
    pub verbs: &'static [&'static str],
}

/// One served group/version and its resources, in discovery order.
#[derive(Debug)]
pub struct GroupVersion {
    pub group: &'static str,
    pub version: &'static str,
    pub resources: &'static [ResourceInfo],
}

impl GroupVersion {
    /// `v1` for the core group, `<group>/<version>` otherwise.
    pub fn api_version(&self) -> String {
        api_version(self.group, self.version)
    }
}

/// One API group with its versions, the preferred (first) version first.
#[derive(Debug)]
pub struct ApiGroup {
    /// Empty for the legacy core group served under `/api`.
    pub name: &'static str,
    pub versions: &'static [GroupVersion],
}

impl ApiGroup {
    pub fn preferred(&self) -> &'static GroupVersion {
        // Every group in the catalog has at least one version; the test
        // `every_group_has_a_version` keeps it so.
        &self.versions[0]
    }
}

/// The verbs of an ordinary resource, in the order discovery lists them.
pub const CRUD: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// Review-style resources (tokenreviews, subjectaccessreviews): create only.
pub const CREATE: &[&str] = &["create"];
/// Verbs of `status`-like subresources.
pub const GET_PATCH_UPDATE: &[&str] = &["get", "patch", "update"];

const CATEGORY_ALL: &[&str] = &["all"];
const CATEGORY_API_EXTENSIONS: &[&str] = &["api-extensions"];

const STATUS: Subresource = Subresource::same("status", GET_PATCH_UPDATE);
const SCALE: Subresource = Subresource {
    name: "scale",
    group: Some("autoscaling"),
    version: Some("v1"),
    kind: Some("Scale"),
    verbs: GET_PATCH_UPDATE,
};

impl Subresource {
    const fn same(name: &'static str, verbs: &'static [&'static str]) -> Self {
        Subresource {
            name,
            group: None,
            version: None,
            kind: None,
            verbs,
        }
    }

    const fn other(
        name: &'static str,
        group: &'static str,
        version: &'static str,
        kind: &'static str,
        verbs: &'static [&'static str],
    ) -> Self {
        Subresource {
            name,
            group: Some(group),
            version: Some(version),
            kind: Some(kind),
            verbs,
        }
    }

    /// The (group, version, kind) this subresource reads and writes.
    pub fn response_kind(
        &self,
        parent: &ResourceInfo,
    ) -> (&'static str, &'static str, &'static str) {
        (
            self.group.unwrap_or(parent.group),
            self.version.unwrap_or(parent.version),
            self.kind.unwrap_or(parent.kind),
        )
    }
}

/// Maps k8s-openapi's scope marker types to a flag usable in const context.
pub trait ScopeFlag {
    const NAMESPACED: bool;
}
impl ScopeFlag for NamespaceResourceScope {
    const NAMESPACED: bool = true;
}
impl ScopeFlag for ClusterResourceScope {
    const NAMESPACED: bool = false;
}

fn decode_as<T: DeserializeOwned + Serialize>(value: &Value) -> Result<Value, serde_json::Error> {
    serde_json::to_value(T::deserialize(value)?)
}

fn empty_as<T: Default + Serialize>() -> Value {
    // k8s-openapi types serialize infallibly to JSON; Null only if that
    // invariant ever broke, which the catalog tests would catch.
    serde_json::to_value(T::default()).unwrap_or(Value::Null)
}

impl ResourceInfo {
    /// An ordinary resource of type `T`: full CRUD verbs, no short names,
    /// categories or subresources until the builder methods add them.
    const fn of<T>(singular: &'static str, type_name: &'static str) -> Self
    where
        T: Resource + DeserializeOwned + Serialize + Default + JsonSchema,
        T::Scope: ScopeFlag,
    {
        ResourceInfo {
            group: T::GROUP,
            version: T::VERSION,
            kind: T::KIND,
            plural: T::URL_PATH_SEGMENT,
            singular,
            namespaced: <T::Scope as ScopeFlag>::NAMESPACED,
            verbs: CRUD,
            short_names: &[],
            categories: &[],
            subresources: &[],
            type_name,
            decode: decode_as::<T>,
            empty: empty_as::<T>,
            schema: SchemaGenerator::subschema_for::<T>,
        }
    }

    const fn verbs(mut self, verbs: &'static [&'static str]) -> Self {
        self.verbs = verbs;
        self
    }

    const fn short(mut self, names: &'static [&'static str]) -> Self {
        self.short_names = names;
        self
    }

    const fn categories(mut self, categories: &'static [&'static str]) -> Self {
        self.categories = categories;
        self
    }

    const fn subresources(mut self, subresources: &'static [Subresource]) -> Self {
        self.subresources = subresources;
        self
    }

    /// `v1` for the core group, `<group>/<version>` otherwise.
    pub fn api_version(&self) -> String {
        api_version(self.group, self.version)
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    pub fn has_verb(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }

    pub fn subresource(&self, name: &str) -> Option<&'static Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }

    /// Checks that `object` decodes as this resource's k8s-openapi type, which
    /// catches wrong field types the way the Go server's decoder does.
    pub fn decode_check(&self, object: &Value) -> Result<(), serde_json::Error> {
        (self.decode)(object).map(drop)
    }

    /// `object` decoded as this resource's k8s-openapi type and encoded
    /// again: what the Go server stores after decoding a request (unknown
    /// fields and nulls gone, quantities as strings).
    pub fn normalize(&self, object: &Value) -> Result<Value, serde_json::Error> {
        (self.decode)(object)
    }

    /// The object k8s-openapi's `Default` gives, with `apiVersion` and `kind`
    /// set: what a client sees for a type with every optional field unset.
    pub fn empty_object(&self) -> Value {
        (self.empty)()
    }

    /// The (group, version, kind) objects of this resource are stored as.
    /// Events of events.k8s.io are core events in storage, every
    /// HorizontalPodAutoscaler is stored at autoscaling/v2, and
    /// CustomResourceDefinitions are still written as v1beta1 for downgrade
    /// safety; discovery's hash names the storage version, not the served one.
    pub fn storage_version(&self) -> (&'static str, &'static str, &'static str) {
        match (self.group, self.kind) {
            ("events.k8s.io", "Event") => ("", "v1", "Event"),
            ("autoscaling", "HorizontalPodAutoscaler") => ("autoscaling", "v2", self.kind),
            ("apiextensions.k8s.io", "CustomResourceDefinition") => {
                ("apiextensions.k8s.io", "v1beta1", self.kind)
            }
            _ => (self.group, self.version, self.kind),
        }
    }

    /// Discovery's `storageVersionHash`: base64 of the first 8 bytes of the
    /// SHA-256 of `group/version/kind` of the storage version. `None` for
    /// resources that are not stored (reviews, bindings, component statuses),
    /// which are exactly those that cannot be watched.
    pub fn storage_version_hash(&self) -> Option<String> {
        use base64::Engine as _;
        use sha2::Digest as _;
        if !self.has_verb("watch") {
            return None;
        }
        let (group, version, kind) = self.storage_version();
        let digest = sha2::Sha256::digest(format!("{group}/{version}/{kind}"));
        Some(base64::engine::general_purpose::STANDARD.encode(&digest[..8]))
    }

    /// Registers this kind's schema (and everything it references) in
    /// `generator` and returns a `$ref` to it.
    pub fn schema(&self, generator: &mut SchemaGenerator) -> Schema {
        (self.schema)(generator)
    }
}

fn api_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    }
}

/// Every served group, in the order kube-apiserver's discovery lists them:
/// the legacy core group first, then by the aggregator's group priority
/// (apiregistration, apps, events, authentication, ...); ties by name.
pub fn groups() -> &'static [ApiGroup] {
    groups::GROUPS
}

/// Every resource of every served version, in discovery order.
pub fn all() -> impl Iterator<Item = &'static ResourceInfo> {
    groups()
        .iter()
        .flat_map(|g| g.versions.iter())
        .flat_map(|gv| gv.resources.iter())
}

pub fn group(name: &str) -> Option<&'static ApiGroup> {
    groups().iter().find(|g| g.name == name)
}

pub fn group_version(group_name: &str, version: &str) -> Option<&'static GroupVersion> {
    group(group_name)?
        .versions
        .iter()
        .find(|gv| gv.version == version)
}

/// The resource served at `/apis/<group>/<version>/<plural>` (or `/api/v1/<plural>`).
pub fn lookup(group_name: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    group_version(group_name, version)?
        .resources
        .iter()
        .find(|r| r.plural == plural)
}

pub fn by_kind(group_name: &str, version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    group_version(group_name, version)?
        .resources
        .iter()
        .find(|r| r.kind == kind)
}

/// Resources with this short name across all groups, in discovery order
/// (`ev` names both core and events.k8s.io events; clients take the first).
pub fn by_short_name(short: &str) -> Vec<&'static ResourceInfo> {
    all().filter(|r| r.short_names.contains(&short)).collect()
}

/// Resources in a category (`kubectl get all`), in discovery order, taking
/// only each group's preferred version as kubectl does.
pub fn in_category(category: &str) -> Vec<&'static ResourceInfo> {
    groups()
        .iter()
        .flat_map(|g| g.preferred().resources.iter())
        .filter(|r| r.categories.contains(&category))
        .collect()
}

#[cfg(test)]
mod tests;
