//! rkube's cluster DNS: an authoritative server for the cluster domain
//! built from Services and EndpointSlices, forwarding every other name to
//! the node's resolvers.
//!
//! Upstream counterpart: CoreDNS with the kubernetes and forward plugins
//! (the kube-dns replacement every distribution ships).

pub mod server;
pub mod watch;
pub mod wire;
pub mod zone;

pub use server::{serve, upstreams_from_resolv_conf, Resolver};
pub use zone::{Answer, Zone};
