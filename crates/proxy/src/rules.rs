//! Rule generation, pure: Service ports in, fragments out. Each Service
//! port becomes a fragment (its chains, affinity sets and map elements);
//! `script` turns fragments into one `nft -f` transaction, so a change is
//! in force atomically.
//!
//! Upstream counterpart: pkg/proxy/nftables/proxier.go (table `kube-proxy`
//! with the service-ips / service-nodeports verdict maps, per-service
//! chains, `numgen random` balancing, affinity sets with timeouts,
//! no-endpoint-services rejects and the masquerade mark).
//!
//! One deliberate difference: upstream gives every endpoint its own chain;
//! here a Service chain DNATs through an inline `numgen` map of endpoint
//! addresses, and endpoint chains exist only for ClientIP affinity (which
//! needs a per-endpoint `update @set`). nft 1.0 dumps every chain of the
//! table before it applies even a one-line change, so the chain count sets
//! the cost of every sync: 11,000 chains for 1,000 Services × 10 endpoints
//! took ~100 ms per change, 1,000 chains ~30 ms. Hairpin traffic (a pod
//! reaching itself through its Service), which upstream marks in the
//! endpoint chain, is caught after DNAT by the `hairpin` set of
//! `endpoint . endpoint` pairs.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::model::{Endpoint, ServicePort};

/// The table every rule lives in.
pub const TABLE: &str = "rkube-proxy";

/// What the rules need to know about the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Pod CIDR of the whole cluster: traffic from outside it to a Service
    /// is masqueraded.
    pub cluster_cidr: String,
}

/// One map (or set) element: map name, key, and verdict for maps.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Element {
    pub map: &'static str,
    pub key: String,
    pub verdict: Option<String>,
}

/// The rules of one Service port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fragment {
    /// Chain name to its rules, in order.
    pub chains: BTreeMap<String, Vec<String>>,
    /// Affinity set name to its timeout in seconds.
    pub sets: BTreeMap<String, u32>,
    pub elements: BTreeSet<Element>,
}

/// The base of the table: hooks, maps and helper chains.
pub(crate) fn base(cfg: &Config) -> String {
    let _ = cfg;
    let mut s = String::new();
    s.push_str(&format!("table ip {TABLE} {{\n"));
    s.push_str("\tset cluster-ips { type ipv4_addr; }\n");
    s.push_str("\tmap service-ips { type ipv4_addr . inet_proto . inet_service : verdict; }\n");
    s.push_str("\tmap service-nodeports { type inet_proto . inet_service : verdict; }\n");
    s.push_str(
        "\tmap no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict; }\n",
    );
    s.push_str("\tmap no-endpoint-nodeports { type inet_proto . inet_service : verdict; }\n");
    s.push_str("\tset hairpin { type ipv4_addr . ipv4_addr; }\n");
    let chains: [(&str, &str, &[&str]); 16] = [
        ("filter-input", "type filter hook input priority -110; policy accept;",
         &["ct state new jump nodeport-endpoints-check", "ct state new jump service-endpoints-check"]),
        ("filter-forward", "type filter hook forward priority -110; policy accept;",
         &["ct state new jump service-endpoints-check", "ct state new jump cluster-ips-check"]),
        ("filter-output", "type filter hook output priority -110; policy accept;",
         &["ct state new jump service-endpoints-check"]),
        // After DNAT: whatever still goes to a cluster IP hit no port.
        ("filter-output-post-dnat", "type filter hook output priority -90; policy accept;",
         &["ct state new jump cluster-ips-check"]),
        // Traffic from pods, after DNAT: what still goes to a Service
        // without endpoints, or to a cluster IP on no port, is refused
        // here, before routing would answer "no route to host" from the
        // service range's unreachable route (forward never sees it).
        ("filter-prerouting-post-dnat", "type filter hook prerouting priority -90; policy accept;",
         &["ct state new jump service-endpoints-check", "ct state new jump cluster-ips-check"]),
        ("nat-prerouting", "type nat hook prerouting priority -100; policy accept;", &["jump services"]),
        ("nat-output", "type nat hook output priority -100; policy accept;", &["jump services"]),
        ("nat-postrouting", "type nat hook postrouting priority 100; policy accept;",
         // After DNAT, source == destination: a pod reached itself through
         // a Service; the reply must come back through the node.
         &["ct status dnat ip saddr . ip daddr @hairpin jump mark-for-masquerade", "jump masquerading"]),
        ("nodeport-endpoints-check", "",
         &["ip daddr != 127.0.0.0/8 fib daddr type local meta l4proto . th dport vmap @no-endpoint-nodeports"]),
        ("service-endpoints-check", "", &["ip daddr . meta l4proto . th dport vmap @no-endpoint-services"]),
        ("cluster-ips-check", "", &["ip daddr @cluster-ips reject"]),
        ("reject-chain", "", &["reject"]),
        ("masquerading", "",
         &["meta mark & 0x00004000 == 0x00000000 return", "meta mark set meta mark ^ 0x00004000",
           "masquerade fully-random"]),
        ("mark-for-masquerade", "", &["meta mark set meta mark | 0x00004000"]),
        ("services", "",
         &["ip daddr . meta l4proto . th dport vmap @service-ips",
           "ip daddr != 127.0.0.0/8 fib daddr type local meta l4proto . th dport vmap @service-nodeports"]),
        ("drop-chain", "", &["drop"]),
    ];
    for (name, hook, rules) in chains {
        s.push_str(&format!("\tchain {name} {{\n"));
        if !hook.is_empty() {
            s.push_str(&format!("\t\t{hook}\n"));
        }
        for r in rules {
            s.push_str(&format!("\t\t{r}\n"));
        }
        s.push_str("\t}\n");
    }
    s.push_str("}\n");
    s
}

fn endpoint_chain(sp: &ServicePort, e: &Endpoint) -> String {
    format!("endpoint-{}__{}/{}", sp.id(), e.ip, e.port)
}

fn affinity_set(sp: &ServicePort, e: &Endpoint) -> String {
    format!("affinity-{}__{}/{}", sp.id(), e.ip, e.port)
}

/// Rules balancing over `eps`: with affinity, through endpoint chains
/// (affinity sets first, then random); otherwise one DNAT through an
/// inline map, so no endpoint chain is needed.
fn balance(sp: &ServicePort, eps: &[&Endpoint], rules: &mut Vec<String>) {
    let proto = sp.protocol;
    if sp.affinity_timeout.is_none() {
        if let [e] = eps {
            rules.push(format!(
                "meta l4proto {proto} dnat ip to {}:{}",
                e.ip, e.port
            ));
            return;
        }
        let mut map = String::new();
        for (i, e) in eps.iter().enumerate() {
            if i > 0 {
                map.push_str(", ");
            }
            let _ = write!(map, "{i} : {} . {}", e.ip, e.port);
        }
        rules.push(format!(
            "meta l4proto {proto} dnat ip to numgen random mod {} map {{ {map} }}",
            eps.len()
        ));
        return;
    }
    for e in eps {
        rules.push(format!(
            "ip saddr @{} goto {}",
            affinity_set(sp, e),
            endpoint_chain(sp, e)
        ));
    }
    let mut vmap = String::new();
    for (i, e) in eps.iter().enumerate() {
        if i > 0 {
            vmap.push_str(", ");
        }
        let _ = write!(vmap, "{i} : goto {}", endpoint_chain(sp, e));
    }
    rules.push(format!("numgen random mod {} vmap {{ {vmap} }}", eps.len()));
}

/// The fragment of one Service port.
pub fn fragment(cfg: &Config, sp: &ServicePort) -> Fragment {
    let id = sp.id();
    let proto = sp.protocol;
    let mut f = Fragment::default();
    let cluster_chain = format!("service-{id}");
    let external_chain = format!("external-{id}");
    let cluster_eps = sp.cluster_endpoints();
    for ip in &sp.cluster_ips {
        f.elements.insert(Element {
            map: "cluster-ips",
            key: ip.to_string(),
            verdict: None,
        });
    }
    let svc_key = |ip: &std::net::Ipv4Addr| format!("{ip} . {proto} . {}", sp.port);
    let external_keys: Vec<String> = sp
        .external_ips
        .iter()
        .chain(&sp.load_balancer_ips)
        .map(svc_key)
        .collect();
    let nodeport_key = sp.node_port.map(|np| format!("{proto} . {np}"));

    if cluster_eps.is_empty() {
        for ip in &sp.cluster_ips {
            f.elements.insert(Element {
                map: "no-endpoint-services",
                key: svc_key(ip),
                verdict: Some("goto reject-chain".into()),
            });
        }
    } else {
        let mut rules = Vec::new();
        for ip in &sp.cluster_ips {
            rules.push(format!(
                "ip daddr {ip} {proto} dport {} ip saddr != {} jump mark-for-masquerade",
                sp.port, cfg.cluster_cidr
            ));
        }
        balance(sp, &cluster_eps, &mut rules);
        f.chains.insert(cluster_chain.clone(), rules);
        for ip in &sp.cluster_ips {
            f.elements.insert(Element {
                map: "service-ips",
                key: svc_key(ip),
                verdict: Some(format!("goto {cluster_chain}")),
            });
        }
    }

    if sp.has_external() {
        let local_eps = sp.local_endpoints();
        let usable = if sp.external_local {
            !local_eps.is_empty()
        } else {
            !cluster_eps.is_empty()
        };
        if usable {
            let mut rules = Vec::new();
            if sp.external_local {
                // Pods and the node itself keep the cluster policy (and
                // the node's own traffic is masqueraded), as upstream.
                if !cluster_eps.is_empty() {
                    rules.push(format!(
                        "ip saddr {} goto {cluster_chain}",
                        cfg.cluster_cidr
                    ));
                    rules.push("fib saddr type local jump mark-for-masquerade".to_string());
                    rules.push(format!("fib saddr type local goto {cluster_chain}"));
                }
                balance(sp, &local_eps, &mut rules);
            } else {
                rules.push("jump mark-for-masquerade".to_string());
                rules.push(format!("goto {cluster_chain}"));
            }
            f.chains.insert(external_chain.clone(), rules);
            for k in &external_keys {
                f.elements.insert(Element {
                    map: "service-ips",
                    key: k.clone(),
                    verdict: Some(format!("goto {external_chain}")),
                });
            }
            if let Some(k) = &nodeport_key {
                f.elements.insert(Element {
                    map: "service-nodeports",
                    key: k.clone(),
                    verdict: Some(format!("goto {external_chain}")),
                });
            }
        } else {
            // Local policy with no local endpoints drops (the client's
            // load balancer should have steered elsewhere); no endpoints
            // at all rejects.
            let verdict = if cluster_eps.is_empty() {
                "goto reject-chain"
            } else {
                "goto drop-chain"
            };
            for k in &external_keys {
                f.elements.insert(Element {
                    map: "no-endpoint-services",
                    key: k.clone(),
                    verdict: Some(verdict.into()),
                });
            }
            if let Some(k) = &nodeport_key {
                f.elements.insert(Element {
                    map: "no-endpoint-nodeports",
                    key: k.clone(),
                    verdict: Some(verdict.into()),
                });
            }
        }
    }

    // Every endpoint DNATed to above may be reached by itself.
    let mut referenced: Vec<&Endpoint> = cluster_eps.clone();
    if sp.has_external() && sp.external_local {
        referenced.extend(sp.local_endpoints());
    }
    referenced.sort();
    referenced.dedup();
    for e in &referenced {
        f.elements.insert(Element {
            map: "hairpin",
            key: format!("{} . {}", e.ip, e.ip),
            verdict: None,
        });
    }
    // Endpoint chains only where affinity needs them.
    if let Some(t) = sp.affinity_timeout {
        for e in referenced {
            let set = affinity_set(sp, e);
            let rules = vec![
                format!("update @{set} {{ ip saddr }}"),
                format!("meta l4proto {proto} dnat to {}:{}", e.ip, e.port),
            ];
            f.sets.insert(set, t);
            f.chains.insert(endpoint_chain(sp, e), rules);
        }
    }
    f
}

/// The fragments of all Service ports, keyed by id.
pub fn fragments(cfg: &Config, ports: &[ServicePort]) -> BTreeMap<String, Fragment> {
    ports
        .iter()
        .map(|sp| (sp.id(), fragment(cfg, sp)))
        .collect()
}
