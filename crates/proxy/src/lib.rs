//! rkube's kube-proxy: Services as nftables rules.
//!
//! Upstream counterpart: kube-proxy's nftables mode (pkg/proxy/nftables).

pub mod model;
pub mod nft;
pub mod proxier;
pub mod rules;
pub mod script;
pub mod watch;

pub use model::{service_ports, Endpoint, ServicePort};
pub use nft::{Nft, System};
pub use proxier::Proxier;
pub use rules::Config;
