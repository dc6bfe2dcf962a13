//! rkube's built-in container runtime (the containerd + runc of rkube).
//!
//! The image half ([`image`]): pulling from OCI distribution registries,
//! the content-addressed blob store, layer snapshots for overlayfs, and
//! OCI / `docker save` archive import and export. The process half
//! ([`runtime`]): sandboxes, containers, exec, logs and cgroups, over the
//! image half's snapshots.

pub mod image;
pub mod runtime;
