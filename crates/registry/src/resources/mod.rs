//! The resources whose rules differ from the default, one module each
//! (upstream: `pkg/registry/<group>/<resource>/strategy.go`).

mod namespace;

use std::sync::Arc;

use rkube_api::catalog::ResourceInfo;

use crate::{DefaultStrategy, Strategy};

/// The strategy of a resource. Resources without their own rules get the
/// default, shaped by whether they have a status subresource.
pub fn strategy_for(info: &'static ResourceInfo) -> Arc<dyn Strategy> {
    match (info.group, info.plural) {
        ("", "namespaces") => Arc::new(namespace::NamespaceStrategy),
        _ => {
            let has_status = info.subresource("status").is_some();
            let tracks_generation = has_status
                && !matches!(
                    info.plural,
                    "pods" | "nodes" | "services" | "persistentvolumes" | "persistentvolumeclaims"
                );
            Arc::new(DefaultStrategy {
                has_status,
                tracks_generation,
                allow_create_on_update: false,
            })
        }
    }
}
