//! rkube-protobuf: decodes Kubernetes protobuf request bodies
//! (`Content-Type: application/vnd.kubernetes.protobuf`) into the JSON object
//! the same request would have carried as `application/json`.
//!
//! Upstream counterpart: k8s.io/apimachinery/pkg/runtime/serializer/protobuf
//! (the `k8s\0` + `runtime.Unknown` envelope) together with the generated
//! `Unmarshal` methods and custom JSON marshalling of the Go types
//! (`resource.Quantity`, `intstr.IntOrString`, `metav1.Time`, ...). Only
//! decoding is needed: the server answers in JSON, which every client's
//! `Accept: application/vnd.kubernetes.protobuf,application/json` allows.
//!
//! The message schemas come from the k8s-pb crate's prost sources, read at
//! build time into a table (see build.rs); JSON names come from k8s-openapi's
//! OpenAPI schemas ([`names`]); [`transcode`] walks the wire records against
//! both.

mod names;
mod schema;
mod special;
mod transcode;
mod wire;

use serde_json::Value;
use thiserror::Error;

pub use transcode::MAX_DEPTH;
pub use wire::WireError;

/// The media type of Kubernetes protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The four bytes every Kubernetes protobuf body starts with.
pub const MAGIC: &[u8; 4] = b"k8s\0";

#[derive(Debug, Error)]
pub enum Error {
    #[error("body does not start with the kubernetes protobuf prefix \"k8s\\x00\"")]
    BadMagic,
    #[error("reading the runtime.Unknown envelope: {0}")]
    Envelope(#[source] WireError),
    #[error("unsupported content encoding {0:?} in the protobuf envelope")]
    ContentEncoding(String),
    #[error("the protobuf envelope names no kind")]
    MissingKind,
    #[error("no protobuf message is known for apiVersion {api_version:?}, kind {kind:?}")]
    UnknownKind { api_version: String, kind: String },
    #[error("decoding {path}: {source}")]
    Malformed {
        path: String,
        #[source]
        source: WireError,
    },
    #[error("decoding {path}: wire type {found} where {expected} was expected")]
    WireType {
        path: String,
        found: &'static str,
        expected: &'static str,
    },
    #[error("decoding {path}: embedded JSON is invalid: {source}")]
    EmbeddedJson {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("decoding {path}: {reason}")]
    Value { path: String, reason: String },
    #[error("messages nest deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

/// Decodes a `k8s\0`-prefixed protobuf body into the JSON object a client
/// would have sent, `apiVersion` and `kind` included.
pub fn decode(body: &[u8]) -> Result<Value, Error> {
    transcode::decode_envelope(body, 0)
}

/// Builds the JSON-name table from the OpenAPI schemas now (about 50 ms in
/// a debug build) instead of on the first [`decode`]; call it at start-up.
pub fn warm_up() {
    let _ = names::fields(0);
}

/// Whether `body` carries the protobuf prefix (a cheap check before
/// [`decode`]).
pub fn is_protobuf(body: &[u8]) -> bool {
    body.starts_with(MAGIC)
}
