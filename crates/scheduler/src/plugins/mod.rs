//! The filter and score plugins of the default profile, one file each.
//!
//! Upstream counterpart: `pkg/scheduler/framework/plugins`. Reason strings
//! are upstream's, word for word: users and tools match on them.

pub mod image_locality;
pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod service_selectors;
pub mod taint_toleration;
pub mod volume_binding;

#[cfg(test)]
pub(crate) mod testutil;
