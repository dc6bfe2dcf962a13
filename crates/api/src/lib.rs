//! rkube-api: the catalog of built-in Kubernetes resources over the
//! k8s-openapi types.
//!
//! Upstream counterpart: k8s.io/api together with the parts of pkg/apis,
//! pkg/registry and pkg/printers that describe resources rather than store
//! them: which resources exist and how discovery lists them ([`catalog`]),
//! how `kubectl get` tables render them ([`table`]), and the strategic merge
//! patch directives of each type ([`merge_keys`]). Nothing here does IO.

pub mod catalog;
pub mod merge_keys;
mod schemas;
pub mod table;

pub use catalog::{ApiGroup, GroupVersion, ResourceInfo, Subresource};
