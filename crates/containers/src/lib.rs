//! rkube's built-in container runtime (the containerd + runc of rkube).
//!
//! This crate currently holds the image half: pulling from OCI distribution
//! registries, the content-addressed blob store, layer snapshots for
//! overlayfs, and OCI / `docker save` archive import and export. The
//! process half (namespaces, cgroups) builds on [`image::ImageService`].

pub mod image;
