//! Prints the full nft script rkube-proxy would apply for the Services
//! and EndpointSlices given as JSON on stdin:
//! `{"clusterCIDR": "10.42.0.0/16", "node": "n1", "services": [...],
//! "endpointSlices": [...]}`. bench/clusterip.py uses it so its
//! measurements run on the real rules.

use std::io::Read;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use rkube_proxy::{rules, script, service_ports, Config};

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Input {
    #[serde(rename = "clusterCIDR")]
    cluster_cidr: String,
    node: String,
    services: Vec<Service>,
    endpoint_slices: Vec<EndpointSlice>,
}

fn main() {
    let mut buf = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut buf) {
        eprintln!("nft_rules: read stdin: {e}");
        std::process::exit(2);
    }
    let input: Input = match serde_json::from_str(&buf) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("nft_rules: bad input: {e}");
            std::process::exit(2);
        }
    };
    let cfg = Config {
        cluster_cidr: input.cluster_cidr,
    };
    let ports = service_ports(&input.services, &input.endpoint_slices, &input.node);
    print!("{}", script::full(&cfg, &rules::fragments(&cfg, &ports)));
}
