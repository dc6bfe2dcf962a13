//! The image service: references, registry configuration and auth, the
//! distribution client, the blob store, layer snapshots, image metadata,
//! archives, and a test-image builder.
//!
//! Upstream counterpart: containerd's image, content, snapshot and remotes
//! packages as k3s embeds them. [`ImageService`] is the entry point; the
//! modules are public so `rkube ctr` and tests can reach the pieces.

pub mod archive;
pub mod auth;
pub mod build;
pub mod client;
pub mod content;
pub mod gc;
pub mod oci;
pub mod reference;
pub mod registries;
pub mod service;
pub mod store;
pub mod tls;
pub mod unpack;

pub use auth::DockerConfig;
pub use oci::{Digest, RunConfig};
pub use reference::Reference;
pub use registries::RegistriesConfig;
pub use service::{Error, ImageService, PruneReport};
pub use store::{Image, Layer};
