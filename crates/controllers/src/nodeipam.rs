//! The node IPAM controller: gives every Node without one a podCIDR (a
//! /24 of `--cluster-cidr`, default 10.42.0.0/16), remembering the ones
//! taken so no two nodes share one, and frees a range when its node goes.
//!
//! Upstream counterpart: `pkg/controller/nodeipam` with the
//! `RangeAllocator` (`cidrset.go`: the next free subnet after the last one
//! handed out; `CIDRNotAvailable` when the cluster CIDR is full).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use futures::StreamExt;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::informers::Informers;

/// The per-node prefix (upstream's `--node-cidr-mask-size`, 24 for IPv4).
pub const NODE_MASK: u8 = 24;

/// Errors of the node IPAM controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid --cluster-cidr {0:?}")]
    ClusterCidr(String),
}

/// The subnets of a cluster CIDR and which are taken (pure).
#[derive(Debug)]
pub struct CidrSet {
    cluster: Ipv4Net,
    used: BTreeSet<Ipv4Net>,
    next: usize,
}

impl CidrSet {
    pub fn new(cluster: Ipv4Net) -> CidrSet {
        CidrSet {
            cluster: cluster.trunc(),
            used: BTreeSet::new(),
            next: 0,
        }
    }

    /// Marks `net` taken (a Node already has it). Ranges outside the
    /// cluster CIDR are ignored.
    pub fn occupy(&mut self, net: Ipv4Net) {
        if self.cluster.contains(&net) {
            self.used.insert(net.trunc());
        }
    }

    pub fn release(&mut self, net: Ipv4Net) {
        self.used.remove(&net.trunc());
    }

    /// The next free subnet after the last one given out, wrapping.
    pub fn allocate(&mut self) -> Option<Ipv4Net> {
        let mask = NODE_MASK.max(self.cluster.prefix_len());
        let subnets: Vec<Ipv4Net> = self.cluster.subnets(mask).ok()?.collect();
        let n = subnets.len();
        for i in 0..n {
            let idx = (self.next + i) % n;
            let s = subnets[idx];
            if !self.used.contains(&s) {
                self.used.insert(s);
                self.next = idx + 1;
                return Some(s);
            }
        }
        None
    }
}

fn pod_cidr(node: &Node) -> Option<Ipv4Net> {
    node.spec.as_ref()?.pod_cidr.as_ref()?.parse().ok()
}

/// Runs the controller over the shared Node informer.
pub async fn run(client: kube::Client, cluster_cidr: String, informers: Arc<Informers>) {
    let cluster: Ipv4Net = match cluster_cidr.parse() {
        Ok(c) => c,
        Err(_) => {
            tracing::error!(error = %Error::ClusterCidr(cluster_cidr), "node-ipam-controller off");
            return;
        }
    };
    let api: Api<Node> = Api::all(client);
    let store = informers.store::<Node>();
    let mut stream = Box::pin(informers.shared_stream::<Node>());
    let _ = store.wait_until_ready().await;
    let mut set = CidrSet::new(cluster);
    for n in store.state() {
        if let Some(c) = pod_cidr(&n) {
            set.occupy(c);
        }
    }
    // Ranges this controller gave, by node uid: the informer may still
    // show a node without its podCIDR after the patch went through, and a
    // node must never get a second range.
    let mut given: HashMap<String, Ipv4Net> = HashMap::new();
    let mut full_logged = false;
    while let Some(node) = stream.next().await {
        let Some(name) = node.metadata.name.clone() else {
            continue;
        };
        // The stream also carries deletions (in their last state): a node
        // no longer in the cache frees its range.
        let live = store
            .get(&kube::runtime::reflector::ObjectRef::from_obj(&*node))
            .is_some_and(|n| n.metadata.uid == node.metadata.uid);
        let uid = node.metadata.uid.clone().unwrap_or_default();
        if !live {
            if let Some(c) = pod_cidr(&node).or_else(|| given.get(&uid).copied()) {
                set.release(c);
            }
            given.remove(&uid);
            continue;
        }
        if let Some(c) = pod_cidr(&node) {
            set.occupy(c);
            continue;
        }
        if given.contains_key(&uid) {
            continue;
        }
        let Some(cidr) = set.allocate() else {
            if !full_logged {
                tracing::warn!(node = %name, cluster = %cluster, "CIDRNotAvailable: the cluster CIDR is full");
                full_logged = true;
            }
            continue;
        };
        let patch = json!({"spec": {"podCIDR": cidr.to_string(), "podCIDRs": [cidr.to_string()]}});
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                given.insert(uid, cidr);
                tracing::info!(node = %name, pod_cidr = %cidr, "podCIDR assigned");
            }
            Err(e) => {
                set.release(cidr);
                tracing::warn!(node = %name, error = %e, "assign podCIDR");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_distinct_24s_skipping_taken_ones() {
        let mut s = CidrSet::new("10.42.0.0/16".parse().unwrap());
        s.occupy("10.42.1.0/24".parse().unwrap());
        assert_eq!(s.allocate().unwrap().to_string(), "10.42.0.0/24");
        assert_eq!(s.allocate().unwrap().to_string(), "10.42.2.0/24");
        s.release("10.42.0.0/24".parse().unwrap());
        // Round-robin: the freed range comes back only after the rest.
        assert_eq!(s.allocate().unwrap().to_string(), "10.42.3.0/24");
    }

    #[test]
    fn a_full_cluster_cidr_gives_none() {
        let mut s = CidrSet::new("10.42.0.0/23".parse().unwrap());
        assert!(s.allocate().is_some());
        assert!(s.allocate().is_some());
        assert!(s.allocate().is_none());
    }
}
