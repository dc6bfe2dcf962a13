//! rkube-openapi: the OpenAPI v2 and v3 documents and the aggregated
//! discovery documents of the built-in resource catalog.
//!
//! Upstream counterpart: k8s.io/kube-openapi (pkg/builder, pkg/builder3,
//! pkg/handler, pkg/handler3) as kube-apiserver wires it, and
//! k8s.io/apiserver/pkg/endpoints/discovery/aggregated. Everything here is a
//! pure function of [`rkube_api::catalog`]; the HTTP routes, content
//! negotiation and caching headers live in the apiserver.
//!
//! The documents are large (the v2 document is several megabytes), so each is
//! generated once, on first use, and kept as serialized bytes; callers get
//! cheap [`Bytes`] clones.
//!
//! What kubectl asks for (measured with kubectl 1.27 to 1.33 against the
//! recording server in `tests/support`):
//! - `/openapi/v2` with `Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf`
//!   whenever validation is on (`apply`, `create`; every version: the
//!   validator is built from it before anything else) and for `explain` in
//!   1.27: [`v2_protobuf`], answered with [`V2_PROTOBUF_CONTENT_TYPE`]. JSON
//!   ([`v2_json`]) is for other clients.
//! - `/openapi/v3`, then `/openapi/v3/<path>?hash=...` with
//!   `Accept: application/json` only, for `explain` (1.28+), the
//!   field-validation probe (a kind whose PATCH operation lists
//!   `fieldValidation` is validated by the server, not by kubectl) and for
//!   computing strategic merge patches: [`v3_index`], [`v3_document`].
//! - `/api` and `/apis` with an Accept list preferring
//!   `apidiscovery.k8s.io/v2` (1.30+) or `v2beta1` (1.27-1.29):
//!   [`aggregated`], [`aggregated_v2beta1`].

mod discovery;
pub mod negotiate;
mod operations;
mod params;
mod protobuf;
mod schema;
mod v2;
mod v3;

use bytes::Bytes;

pub use discovery::{
    aggregated, aggregated_v2beta1, AGGREGATED_CONTENT_TYPE, AGGREGATED_V2BETA1_CONTENT_TYPE,
};

/// The `info.version` of both documents: the Kubernetes version whose API
/// types the catalog serves (k8s-openapi's `v1_33`).
pub const INFO_VERSION: &str = "v1.33.0";

/// The media type clients put in `Accept` for the protobuf v2 document
/// (gnostic's `openapi.v2.Document`).
pub const V2_PROTOBUF_ACCEPT: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

/// The `Content-Type` to answer a [`V2_PROTOBUF_ACCEPT`] request with. `@` is
/// not a token character, so Go's `mime.ParseMediaType` rejects the Accept
/// form ("mime: unexpected content after media subtype") and client-go fails;
/// upstream answers with this dotted spelling instead.
pub const V2_PROTOBUF_CONTENT_TYPE: &str =
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// Generates and caches every document now. Generation takes a few hundred
/// milliseconds (more in debug builds) and happens once; call this from a
/// blocking task at start-up so the first client does not wait for it.
pub fn prepare() {
    v2::documents();
    v3::documents();
    discovery::aggregated(true);
}

/// The `/openapi/v3` index: `{"paths": {"api/v1": {"serverRelativeURL":
/// "/openapi/v3/api/v1?hash=<HASH>"}, "apis/apps/v1": {...}, ...}}`.
pub fn v3_index() -> Bytes {
    v3::documents().index.clone()
}

/// The hash of the index itself, for its `ETag`.
pub fn v3_index_hash() -> &'static str {
    &v3::documents().index_hash
}

/// The OpenAPI 3.0 document of one group/version, by its index key
/// (`api/v1`, `apis/apps/v1`); `None` for a group/version not served.
pub fn v3_document(path: &str) -> Option<Bytes> {
    v3::find(path).map(|d| d.bytes.clone())
}

/// The content hash of a v3 document (the `hash` query parameter of its
/// `serverRelativeURL` and, quoted, its `ETag`).
pub fn v3_hash(path: &str) -> Option<&'static str> {
    v3::find(path).map(|d| d.hash.as_str())
}

/// The index keys of every v3 document, in discovery order.
pub fn v3_paths() -> impl Iterator<Item = &'static str> {
    v3::documents().documents.iter().map(|d| d.path.as_str())
}

/// The swagger 2.0 document, as JSON.
pub fn v2_json() -> Bytes {
    v2::documents().json.clone()
}

/// The swagger 2.0 document encoded as gnostic's `openapi.v2.Document`
/// protobuf message, which is what client-go's `OpenAPISchema()` requests.
pub fn v2_protobuf() -> Bytes {
    v2::documents().protobuf.clone()
}

/// The `ETag` value (unquoted) of the v2 document, shared by both encodings
/// as upstream does (the hash of the JSON form).
pub fn v2_hash() -> &'static str {
    &v2::documents().hash
}

/// Upper-case hex SHA-512 of `bytes`: the content hash upstream puts in
/// `?hash=` URLs and ETags.
pub(crate) fn content_hash(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    use std::fmt::Write as _;
    let digest = sha2::Sha512::digest(bytes);
    let mut out = String::with_capacity(digest.len() * 2);
    for byte in digest {
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02X}");
    }
    out
}
