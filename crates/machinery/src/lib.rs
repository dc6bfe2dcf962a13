//! API machinery shared by the API server and its registries.
//!
//! Upstream counterpart: `k8s.io/apimachinery` — the part of it that is pure
//! logic over JSON objects: `metav1.Status` errors and field error lists
//! (`pkg/api/errors`, `pkg/util/validation/field`), label and field
//! selectors (`pkg/labels`, `pkg/fields`), name validation and generation
//! (`pkg/util/validation`, `apiserver/pkg/storage/names`), the three PATCH
//! formats (`pkg/util/strategicpatch`, evanphx/json-patch), resourceVersion
//! and list continue tokens (`apiserver/pkg/storage`), timestamps
//! (`metav1.Time`, `metav1.MicroTime`) and resource quantities
//! (`pkg/api/resource`).
//!
//! Nothing here does IO. Objects are `serde_json::Value`s because the API
//! server stores and patches JSON; typed views belong to the `api` crate.

pub mod apply;
pub mod duration;
pub mod field;
pub mod fields;
pub mod labels;
pub mod names;
pub mod patch;
pub mod quantity;
pub mod rv;
pub mod status;
pub mod time;

mod quote;

pub use field::{BadValue, ErrorType, FieldError, FieldPath};
pub use status::{GroupKind, GroupResource, Status, StatusCause, StatusDetails, StatusError};
